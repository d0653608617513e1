//! The WebAssembly plugin host: wasmtime components implementing the
//! `ember:plugin` worlds (`wit/`), sandboxed and limited per call.
//!
//! - `runtime.rs`: the engine (epoch ticker), the on-disk compile cache,
//!   instantiating a component with its grants
//! - `instance.rs`: one configured use of a plugin; calls under limits, the
//!   reason of a failure, replacing a faulted instance
//! - `state.rs`: what a store holds, the `host` and `http` imports
//! - `manager.rs`: the plugin directory, reload, metrics, status
//! - `fs_sandbox.rs`: noticing opens of files outside the grants
//! - `fs_stats.rs`: the `filesystem-stats` import (statfs of granted mounts)
//! - `bindings.rs`: `bindgen!` output for the three worlds

mod bindings;
pub mod config;
mod dns;
mod fs_sandbox;
mod fs_stats;
mod instance;
pub mod manager;
mod runtime;
mod state;

use std::fmt;
use std::time::Duration;

pub use bindings::types::{
    Alert, AlertGroup, AlertStatus, Label, MetricFamily, MetricType, PluginInfo, Sample,
    TargetGroup,
};
pub use config::PluginUse;
pub use instance::PluginInstance;
pub use manager::{PluginManager, PluginStatus};
pub use runtime::{Loaded, Runtime, World};

/// The version of the `ember:plugin` WIT package this host implements
/// (plugins built against any 0.1.x up to it link).
pub const WIT_VERSION: &str = "0.1.1";

/// Per-call limits of a plugin instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Wall-clock time of one call (guest code and host calls together).
    pub timeout: Duration,
    /// Linear memory of the instance.
    pub max_memory_bytes: usize,
    /// Body of one outgoing HTTP response.
    pub max_response_bytes: usize,
    /// Samples of one `collect` (or targets of one `discover`).
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            max_memory_bytes: 64 << 20,
            max_response_bytes: 8 << 20,
            max_samples: 200_000,
        }
    }
}

/// What an instance is built with: identity, config and grants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PluginSettings {
    pub name: String,
    /// The plugin's config as JSON.
    pub config_json: String,
    /// Hosts the plugin may reach over HTTP (`host`, `host:port`, `*.domain`).
    pub allow_hosts: Vec<String>,
    /// Host directories granted read-only, visible under the same path.
    pub read_only_dirs: Vec<String>,
    /// Paths whose mount points the plugin may `statfs` (besides
    /// `read_only_dirs`).
    pub stat_filesystems: Vec<String>,
    /// DNS server (`ip:port`) for SRV lookups; none means the first
    /// `nameserver` of `/etc/resolv.conf`.
    pub dns_server: Option<String>,
    pub limits: Limits,
}

impl PluginSettings {
    /// Whether two settings describe the same use of a plugin, whatever
    /// deadline the caller imposes (an exporter's is capped by its scrape
    /// timeout).
    pub fn same_use(&self, other: &PluginSettings) -> bool {
        self.name == other.name
            && self.config_json == other.config_json
            && self.allow_hosts == other.allow_hosts
            && self.read_only_dirs == other.read_only_dirs
            && self.stat_filesystems == other.stat_filesystems
            && self.dns_server == other.dns_server
            && self.limits.max_memory_bytes == other.limits.max_memory_bytes
            && self.limits.max_response_bytes == other.limits.max_response_bytes
            && self.limits.max_samples == other.limits.max_samples
    }

    pub fn new(name: &str) -> PluginSettings {
        PluginSettings {
            name: name.to_owned(),
            config_json: "{}".to_owned(),
            allow_hosts: Vec::new(),
            read_only_dirs: Vec::new(),
            stat_filesystems: Vec::new(),
            dns_server: None,
            limits: Limits::default(),
        }
    }
}

/// Why a plugin call failed; the `reason` label of
/// `ember_plugin_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The call ran past its deadline.
    Timeout,
    /// The instance hit its memory limit.
    OutOfMemory,
    /// The guest panicked.
    Panic,
    /// Any other trap.
    Trap,
    /// The plugin asked for a host that is not on its allow-list.
    ForbiddenHost,
    /// The plugin tried to open a path outside its granted directories.
    ForbiddenFile,
    /// The plugin returned more than its limits allow.
    OutputLimit,
    /// The plugin returned an error of its own.
    PluginError,
    /// The instance could not be created or its `init` failed.
    Init,
    /// The plugin's output is invalid (names, labels).
    InvalidOutput,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::OutOfMemory => "out_of_memory",
            Reason::Panic => "panic",
            Reason::Trap => "trap",
            Reason::ForbiddenHost => "forbidden_host",
            Reason::ForbiddenFile => "forbidden_file",
            Reason::OutputLimit => "output_limit",
            Reason::PluginError => "plugin_error",
            Reason::Init => "init",
            Reason::InvalidOutput => "invalid_output",
        }
    }

    /// Whether the instance must be thrown away after this failure.
    pub fn replaces_instance(self) -> bool {
        matches!(
            self,
            Reason::Timeout | Reason::OutOfMemory | Reason::Panic | Reason::Trap | Reason::Init
        )
    }
}

/// A failed plugin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub reason: Reason,
    pub message: String,
}

impl CallError {
    pub fn new(reason: Reason, message: impl Into<String>) -> CallError {
        CallError {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}: {}", self.reason.as_str(), self.message)
    }
}

impl std::error::Error for CallError {}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks what a plugin returned before it is stored: metric, suffix and
/// label names must be valid Prometheus names (a newline in one could
/// otherwise forge another series in every text rendering of it).
pub fn validate_families(families: &[MetricFamily]) -> Result<(), String> {
    for family in families {
        if !valid_metric_name(&family.name) {
            return Err(format!("invalid metric name {:?}", family.name));
        }
        for sample in &family.samples {
            if !sample.suffix.is_empty()
                && !sample
                    .suffix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                return Err(format!(
                    "invalid suffix {:?} in family {}",
                    sample.suffix, family.name
                ));
            }
            for label in &sample.labels {
                if !valid_label_name(&label.name) {
                    return Err(format!(
                        "invalid label name {:?} in family {}",
                        label.name, family.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks target groups' label names.
pub fn validate_groups(groups: &[TargetGroup]) -> Result<(), String> {
    for group in groups {
        for label in &group.labels {
            if !valid_label_name(&label.name) {
                return Err(format!("invalid label name {:?}", label.name));
            }
        }
    }
    Ok(())
}

/// The metadata API's name of a family type ("unknown" for untyped, as
/// Prometheus says).
pub fn type_name(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Untyped => "unknown",
    }
}

/// Writes into `key` a string that identifies the series of `sample` in
/// family `family` within one target, for the scrape loop's series cache.
/// Label names are checked (`[a-zA-Z0-9_]`), so a NUL separates them from
/// values; a NUL inside a value is doubled, which keeps keys unambiguous.
pub fn series_key(key: &mut String, family: &str, sample: &Sample) {
    key.clear();
    key.push_str(family);
    key.push_str(&sample.suffix);
    for label in &sample.labels {
        key.push('\0');
        key.push_str(&label.name);
        key.push('\0');
        if label.value.contains('\0') {
            key.push_str(&label.value.replace('\0', "\0\0"));
        } else {
            key.push_str(&label.value);
        }
    }
}

/// The labels of one sample with its `__name__`, as a scrape parser
/// would produce them (empty values are dropped).
pub fn sample_labels(family: &str, sample: &Sample) -> Result<crate::model::Labels, String> {
    let name = format!("{family}{}", sample.suffix);
    if sample.labels.iter().any(|l| l.name == "__name__") {
        return Err(format!("series {name}: label __name__ is not allowed"));
    }
    let pairs = std::iter::once(("__name__", name.as_str())).chain(
        sample
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str())),
    );
    crate::model::Labels::from_pairs(pairs).map_err(|e| format!("series {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)]) -> Sample {
        Sample {
            suffix: String::new(),
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            value: 1.0,
            timestamp_ms: None,
        }
    }

    #[test]
    fn series_keys_are_unambiguous() {
        let key = |labels: &[(&str, &str)]| {
            let mut k = String::new();
            series_key(&mut k, "m", &sample(labels));
            k
        };
        assert_eq!(key(&[("a", "x")]), key(&[("a", "x")]));
        assert_ne!(key(&[("a", "x\0b\0y")]), key(&[("a", "x"), ("b", "y")]));
        assert_ne!(key(&[("a", "x")]), key(&[("a", "x"), ("b", "")]));
        let mut bucket = sample(&[("le", "1")]);
        bucket.suffix = "_bucket".into();
        let mut k = String::new();
        series_key(&mut k, "h", &bucket);
        assert_ne!(k, key(&[("le", "1")]));
    }

    #[test]
    fn sample_labels_carry_the_series_name() {
        let mut s = sample(&[("b", "2"), ("a", "1"), ("empty", "")]);
        s.suffix = "_total".into();
        let labels = sample_labels("x", &s).unwrap();
        assert_eq!(labels.metric_name(), Some("x_total"));
        assert_eq!(labels.len(), 3, "the empty label is dropped");
        assert!(sample_labels("x", &sample(&[("__name__", "y")])).is_err());
        assert!(sample_labels("x", &sample(&[("a", "1"), ("a", "2")])).is_err());
    }

    #[test]
    fn rejects_names_that_could_inject_lines() {
        let family = |name: &str, label: &str| MetricFamily {
            name: name.into(),
            type_: MetricType::Gauge,
            help: String::new(),
            unit: String::new(),
            samples: vec![Sample {
                suffix: String::new(),
                labels: vec![Label {
                    name: label.into(),
                    value: "v".into(),
                }],
                value: 1.0,
                timestamp_ms: None,
            }],
        };
        assert!(validate_families(&[family("ok:name_1", "l")]).is_ok());
        assert!(validate_families(&[family("x 1\ninjected", "l")]).is_err());
        assert!(validate_families(&[family("x", "a\"}")]).is_err());
        assert!(validate_families(&[family("1x", "l")]).is_err());
    }

    #[test]
    fn same_use_ignores_the_deadline() {
        let a = PluginSettings::new("p");
        let mut b = a.clone();
        b.limits.timeout = Duration::from_secs(1);
        assert!(a.same_use(&b));
        b.allow_hosts.push("x".into());
        assert!(!a.same_use(&b));
    }
}
