//! Write an Ember plugin as a trait implementation.
//!
//! Enable exactly one of the features `exporter`, `discoverer` or `notifier`,
//! implement the matching trait ([`Exporter`], [`Discoverer`], [`Notifier`])
//! and name the type in the matching macro:
//!
//! ```ignore
//! use ember_plugin_sdk::{Exporter, MetricFamily, MetricType, PluginInfo, Sample};
//!
//! struct Hello;
//!
//! impl Exporter for Hello {
//!     fn new(_config: &str) -> Result<Self, String> { Ok(Hello) }
//!     fn describe() -> PluginInfo { PluginInfo::new("hello", env!("CARGO_PKG_VERSION")) }
//!     fn collect(&mut self) -> Result<Vec<MetricFamily>, String> {
//!         Ok(vec![MetricFamily::gauge("hello_value", "A constant.", 1.0)])
//!     }
//! }
//!
//! ember_plugin_sdk::export_exporter!(Hello);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and drop the
//! `.wasm` file into Ember's plugin directory.

extern crate self as ember_plugin_sdk;

#[doc(hidden)]
pub use serde_json;
#[doc(hidden)]
pub use wit_bindgen;

#[cfg(any(
    all(feature = "exporter", feature = "discoverer"),
    all(feature = "exporter", feature = "notifier"),
    all(feature = "discoverer", feature = "notifier"),
))]
compile_error!("enable exactly one of the features `exporter`, `discoverer`, `notifier`");

#[cfg(not(any(feature = "exporter", feature = "discoverer", feature = "notifier")))]
compile_error!("enable one of the features `exporter`, `discoverer`, `notifier`");

/// Bindings of the `exporter` world.
#[cfg(feature = "exporter")]
#[allow(clippy::too_many_arguments)]
pub mod exporter {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "exporter",
        pub_export_macro: true,
        default_bindings_module: "ember_plugin_sdk::exporter",
        runtime_path: "ember_plugin_sdk::wit_bindgen::rt",
    });
}
#[cfg(feature = "exporter")]
use exporter as world;

/// Bindings of the `discoverer` world.
#[cfg(feature = "discoverer")]
#[allow(clippy::too_many_arguments)]
pub mod discoverer {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "discoverer",
        pub_export_macro: true,
        default_bindings_module: "ember_plugin_sdk::discoverer",
        runtime_path: "ember_plugin_sdk::wit_bindgen::rt",
    });
}
#[cfg(feature = "discoverer")]
use discoverer as world;

/// Bindings of the `notifier` world.
#[cfg(feature = "notifier")]
#[allow(clippy::too_many_arguments)]
pub mod notifier {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "notifier",
        pub_export_macro: true,
        default_bindings_module: "ember_plugin_sdk::notifier",
        runtime_path: "ember_plugin_sdk::wit_bindgen::rt",
    });
}
#[cfg(feature = "notifier")]
use notifier as world;

pub use world::ember::plugin::types::{
    Alert, AlertGroup, AlertStatus, Label, MetricFamily, MetricType, PluginInfo, Sample,
    TargetGroup,
};

/// Logging into Ember's log, tagged with the plugin's name.
pub mod log {
    use super::world::ember::plugin::host::{self, Level};

    pub fn debug(message: &str) {
        host::log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        host::log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        host::log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        host::log(Level::Error, message);
    }
}

/// Space and inode counts of mounted filesystems (exporters only; needs
/// Ember with `ember:plugin@0.1.1`). The operator grants mount points with
/// `stat_filesystems` (or `read_only_dirs`) in the plugin's config.
#[cfg(feature = "exporter")]
pub mod filesystem {
    pub use super::world::ember::plugin::filesystem_stats::FsStats;

    /// `statfs` of the filesystem mounted at `mount_point`.
    pub fn stat(mount_point: &str) -> Result<FsStats, String> {
        super::world::ember::plugin::filesystem_stats::stat(mount_point)
    }
}

/// Outgoing HTTP through the host (only to hosts on the plugin's allow-list).
pub mod http {
    use super::world::ember::plugin::http::send as host_send;
    pub use super::world::ember::plugin::http::{Header, Request, Response};

    /// Sends a request; the error says why it failed (not allowed, timeout,
    /// connection refused, response too large, ...).
    pub fn send(request: &Request) -> Result<Response, String> {
        host_send(request)
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response, String> {
        send(&Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        })
    }

    /// `POST url` with a JSON body.
    pub fn post_json(
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Response, String> {
        let mut all = vec![Header {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }];
        all.extend(headers.iter().map(|(name, value)| Header {
            name: name.clone(),
            value: value.clone(),
        }));
        send(&Request {
            method: "POST".into(),
            url: url.into(),
            headers: all,
            body,
        })
    }
}

/// DNS lookups through the host (discoverers only; names must be on the
/// plugin's allow-list).
#[cfg(feature = "discoverer")]
pub mod dns {
    use super::discoverer::ember::plugin::dns as host;
    pub use super::discoverer::ember::plugin::dns::Srv;

    /// IPv4 and IPv6 addresses of `name`.
    pub fn lookup_ip(name: &str) -> Result<Vec<String>, String> {
        host::lookup_ip(name)
    }

    /// SRV records of `name` (empty if it does not exist).
    pub fn lookup_srv(name: &str) -> Result<Vec<Srv>, String> {
        host::lookup_srv(name)
    }
}

/// The plugin's config as JSON, also passed to `new`.
pub fn config() -> String {
    world::ember::plugin::host::config()
}

impl PluginInfo {
    /// Info with a name and version and nothing wanted.
    pub fn new(name: &str, version: &str) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            wants_hosts: Vec::new(),
            wants_directories: Vec::new(),
        }
    }
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Sample {
    /// A sample without suffix or timestamp.
    pub fn new(labels: Vec<Label>, value: f64) -> Self {
        Sample {
            suffix: String::new(),
            labels,
            value,
            timestamp_ms: None,
        }
    }
}

impl MetricFamily {
    /// An empty family of the given type.
    pub fn new(name: &str, kind: MetricType, help: &str) -> Self {
        MetricFamily {
            name: name.into(),
            type_: kind,
            help: help.into(),
            unit: String::new(),
            samples: Vec::new(),
        }
    }

    /// A gauge with one unlabelled sample.
    pub fn gauge(name: &str, help: &str, value: f64) -> Self {
        let mut family = Self::new(name, MetricType::Gauge, help);
        family.samples.push(Sample::new(Vec::new(), value));
        family
    }

    /// Adds a sample with labels; returns `self` for chaining.
    pub fn with(mut self, labels: &[(&str, &str)], value: f64) -> Self {
        self.push(labels, value);
        self
    }

    /// Adds a sample with labels.
    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels = labels.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        self.samples.push(Sample::new(labels, value));
    }
}

/// An exporter: produces metric families on every scrape.
pub trait Exporter: Sized + Send {
    /// Builds the plugin from its config (JSON).
    fn new(config: &str) -> Result<Self, String>;
    fn describe() -> PluginInfo;
    fn collect(&mut self) -> Result<Vec<MetricFamily>, String>;
}

/// A discoverer: returns the current target groups on every refresh.
pub trait Discoverer: Sized + Send {
    fn new(config: &str) -> Result<Self, String>;
    fn describe() -> PluginInfo;
    fn discover(&mut self) -> Result<Vec<TargetGroup>, String>;
}

/// A notifier: delivers a group of alerts.
pub trait Notifier: Sized + Send {
    fn new(config: &str) -> Result<Self, String>;
    fn describe() -> PluginInfo;
    fn notify(&mut self, group: AlertGroup) -> Result<(), String>;
}

#[doc(hidden)]
pub mod __private {
    /// The plugin's state between calls: set by `init`, used by the kind's
    /// function. A plugin instance is single-threaded; the mutex only
    /// satisfies `static`.
    pub struct Slot<T>(std::sync::Mutex<Option<T>>);

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<T> Slot<T> {
        pub const fn new() -> Self {
            Slot(std::sync::Mutex::new(None))
        }
        pub fn set(&self, value: T) {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        }
        pub fn with<R>(&self, f: impl FnOnce(&mut T) -> Result<R, String>) -> Result<R, String> {
            let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_mut() {
                Some(state) => f(state),
                None => Err("plugin called before init".into()),
            }
        }
    }
}

/// Exports a type implementing [`Exporter`] as the component's `exporter` world.
#[cfg(feature = "exporter")]
#[macro_export]
macro_rules! export_exporter {
    ($ty:ty) => {
        static __EMBER_STATE: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();
        struct __EmberExporter;
        impl $crate::exporter::Guest for __EmberExporter {
            fn init(config: String) -> Result<(), String> {
                __EMBER_STATE.set(<$ty as $crate::Exporter>::new(&config)?);
                Ok(())
            }
            fn describe() -> $crate::PluginInfo {
                <$ty as $crate::Exporter>::describe()
            }
            fn collect() -> Result<Vec<$crate::MetricFamily>, String> {
                __EMBER_STATE.with(|state| $crate::Exporter::collect(state))
            }
        }
        $crate::exporter::export!(__EmberExporter);
    };
}

/// Exports a type implementing [`Discoverer`] as the component's `discoverer` world.
#[cfg(feature = "discoverer")]
#[macro_export]
macro_rules! export_discoverer {
    ($ty:ty) => {
        static __EMBER_STATE: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();
        struct __EmberDiscoverer;
        impl $crate::discoverer::Guest for __EmberDiscoverer {
            fn init(config: String) -> Result<(), String> {
                __EMBER_STATE.set(<$ty as $crate::Discoverer>::new(&config)?);
                Ok(())
            }
            fn describe() -> $crate::PluginInfo {
                <$ty as $crate::Discoverer>::describe()
            }
            fn discover() -> Result<Vec<$crate::TargetGroup>, String> {
                __EMBER_STATE.with(|state| $crate::Discoverer::discover(state))
            }
        }
        $crate::discoverer::export!(__EmberDiscoverer);
    };
}

/// Exports a type implementing [`Notifier`] as the component's `notifier` world.
#[cfg(feature = "notifier")]
#[macro_export]
macro_rules! export_notifier {
    ($ty:ty) => {
        static __EMBER_STATE: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();
        struct __EmberNotifier;
        impl $crate::notifier::Guest for __EmberNotifier {
            fn init(config: String) -> Result<(), String> {
                __EMBER_STATE.set(<$ty as $crate::Notifier>::new(&config)?);
                Ok(())
            }
            fn describe() -> $crate::PluginInfo {
                <$ty as $crate::Notifier>::describe()
            }
            fn notify(group: $crate::AlertGroup) -> Result<(), String> {
                __EMBER_STATE.with(|state| $crate::Notifier::notify(state, group))
            }
        }
        $crate::notifier::export!(__EmberNotifier);
    };
}
