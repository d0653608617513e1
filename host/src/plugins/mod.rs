//! The WebAssembly plugin host: wasmtime components implementing the
//! `ember:plugin` worlds (`wit/`), sandboxed and limited per call.
//!
//! - `runtime.rs`: the engine (epoch ticker), the on-disk compile cache,
//!   instantiating a component with its grants
//! - `instance.rs`: one configured use of a plugin; calls under limits, the
//!   reason of a failure, replacing a faulted instance
//! - `state.rs`: what a store holds, the `host` and `http` imports
//! - `manager.rs`: the plugin directory, reload, metrics, status
//! - `bindings.rs`: `bindgen!` output for the three worlds

mod bindings;
pub mod config;
mod dns;
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

/// Checks what a plugin returned before it is rendered: names must be valid
/// (a name is written unescaped, so a newline in it could smuggle lines into
/// the exposition).
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

/// Renders metric families as Prometheus text format 0.0.4, the input of
/// the scrape path's parser. Call [`validate_families`] first.
pub fn families_to_text(families: &[MetricFamily]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for family in families {
        let kind = match family.type_ {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        };
        if !family.help.is_empty() {
            let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {} {}", family.name, help);
        }
        let _ = writeln!(out, "# TYPE {} {}", family.name, kind);
        for sample in &family.samples {
            out.push_str(&family.name);
            out.push_str(&sample.suffix);
            if !sample.labels.is_empty() {
                out.push('{');
                for (i, label) in sample.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let value = label
                        .value
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    let _ = write!(out, "{}=\"{}\"", label.name, value);
                }
                out.push('}');
            }
            out.push(' ');
            push_float(&mut out, sample.value);
            if let Some(ts) = sample.timestamp_ms {
                let _ = write!(out, " {ts}");
            }
            out.push('\n');
        }
    }
    out
}

fn push_float(out: &mut String, value: f64) {
    use std::fmt::Write as _;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let mut family = MetricFamily {
            name: "x_total".into(),
            type_: MetricType::Counter,
            help: "Line\nbreak \\ here.".into(),
            unit: String::new(),
            samples: Vec::new(),
        };
        family.samples.push(Sample {
            suffix: String::new(),
            labels: vec![Label {
                name: "a".into(),
                value: "q\"v\n".into(),
            }],
            value: f64::INFINITY,
            timestamp_ms: Some(5),
        });
        family.samples.push(Sample {
            suffix: String::new(),
            labels: Vec::new(),
            value: 1.5,
            timestamp_ms: None,
        });
        assert_eq!(
            families_to_text(&[family]),
            "# HELP x_total Line\\nbreak \\\\ here.\n# TYPE x_total counter\nx_total{a=\"q\\\"v\\n\"} +Inf 5\nx_total 1.5\n"
        );
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
