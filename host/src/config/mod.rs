//! The configuration file: a `prometheus.yml`-compatible model.
//!
//! Loading is two steps. Deserialization checks each section on its own and
//! rejects unknown keys, so YAML and schema errors carry the line and column
//! serde_yaml reports. [`Config::finalize`] then applies the checks that span
//! sections (global defaults inherited by jobs, unique names), which name the
//! job or section they concern.

pub mod alerting;
pub mod duration;
pub mod http_client;
pub mod labels;
pub mod notifications;
pub mod object_store;
pub mod relabel;
pub mod remote;
pub mod scrape;
pub mod yaml;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::alerting::AlertingConfig;
pub use self::duration::PromDuration;
pub use self::labels::LabelSet;
use self::labels::{is_valid_label_name, nullable};
pub use self::remote::{RemoteReadConfig, RemoteWriteConfig};
pub use self::scrape::ScrapeConfig;

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A YAML syntax or schema error at a known position.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A consistency error that spans sections.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GlobalConfig {
    pub scrape_interval: PromDuration,
    pub scrape_timeout: PromDuration,
    pub evaluation_interval: PromDuration,
    /// Prometheus 3's default `query_offset` for rule groups.
    pub rule_query_offset: PromDuration,
    /// Empty when not set: jobs then use the defaults.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scrape_protocols: Vec<scrape::ScrapeProtocol>,
    pub scrape_native_histograms: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub query_log_file: String,
    #[serde(skip_serializing_if = "LabelSet::is_empty")]
    pub external_labels: LabelSet,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: PromDuration::from_secs(60),
            scrape_timeout: PromDuration::from_secs(10),
            evaluation_interval: PromDuration::from_secs(60),
            rule_query_offset: PromDuration::default(),
            scrape_protocols: Vec::new(),
            scrape_native_histograms: false,
            query_log_file: String::new(),
            external_labels: LabelSet::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "GlobalConfig")]
struct RawGlobalConfig {
    scrape_interval: Option<PromDuration>,
    scrape_timeout: Option<PromDuration>,
    evaluation_interval: Option<PromDuration>,
    rule_query_offset: Option<PromDuration>,
    #[serde(default, deserialize_with = "labels::nullable")]
    scrape_protocols: Vec<scrape::ScrapeProtocol>,
    #[serde(default, deserialize_with = "yaml::opt_bool")]
    scrape_native_histograms: Option<bool>,
    query_log_file: Option<String>,
    #[serde(default, deserialize_with = "labels::label_set")]
    external_labels: LabelSet,
}

impl<'de> Deserialize<'de> for GlobalConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Option::<RawGlobalConfig>::deserialize(d)?;
        let Some(raw) = raw else {
            return Ok(GlobalConfig::default());
        };
        let defaults = GlobalConfig::default();
        let scrape_interval = raw
            .scrape_interval
            .filter(|d| !d.is_zero())
            .unwrap_or(defaults.scrape_interval);
        let scrape_timeout = match raw.scrape_timeout.filter(|d| !d.is_zero()) {
            Some(t) => t,
            // An interval shorter than the default timeout shortens the timeout.
            None => defaults.scrape_timeout.min(scrape_interval),
        };
        if scrape_timeout > scrape_interval {
            return Err(serde::de::Error::custom(format!(
                "global scrape_timeout ({scrape_timeout}) is greater than scrape_interval ({scrape_interval})"
            )));
        }
        scrape::check_scrape_protocols(&raw.scrape_protocols).map_err(serde::de::Error::custom)?;
        Ok(GlobalConfig {
            scrape_protocols: raw.scrape_protocols,
            scrape_native_histograms: raw.scrape_native_histograms.unwrap_or(false),
            scrape_interval,
            scrape_timeout,
            evaluation_interval: raw
                .evaluation_interval
                .filter(|d| !d.is_zero())
                .unwrap_or(defaults.evaluation_interval),
            rule_query_offset: raw.rule_query_offset.unwrap_or_default(),
            query_log_file: raw.query_log_file.unwrap_or_default(),
            external_labels: raw.external_labels,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub tsdb: TsdbConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub exemplars: ExemplarsConfig,
    /// Ember's own: blocks shipped to and read from a bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<object_store::ObjectStoreConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TsdbConfig {
    #[serde(default)]
    pub out_of_order_time_window: PromDuration,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    pub max_exemplars: i64,
}

impl Default for ExemplarsConfig {
    fn default() -> Self {
        ExemplarsConfig {
            max_exemplars: 100_000,
        }
    }
}

/// A whole, validated configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub global: GlobalConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub alerting: AlertingConfig,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rule_files: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub scrape_configs: Vec<ScrapeConfig>,
    #[serde(default, deserialize_with = "nullable")]
    pub storage: StorageConfig,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub remote_write: Vec<RemoteWriteConfig>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub remote_read: Vec<RemoteReadConfig>,
    /// Ember extension: built-in alert routing to notifier plugins, in
    /// `alertmanager.yml`'s shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<notifications::NotificationsConfig>,
}

/// Keys Prometheus knows that Ember deliberately does not (yet) implement.
/// They get a specific message instead of serde's generic "unknown field".
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    (
        "scrape_config_files",
        "list the scrape configs in scrape_configs instead",
    ),
    ("tracing", "Ember does not export traces"),
    ("otlp", "Ember does not accept OTLP"),
    ("runtime", "Ember does not tune the Go runtime"),
];

const UNSUPPORTED_SD: &[&str] = &[
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "dns_sd_configs",
    "ec2_sd_configs",
    "eureka_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "http_sd_configs",
    "ionos_sd_configs",
    "kubernetes_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "openstack_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
];

impl Config {
    /// Reads and validates a configuration file. Nothing else is touched.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let syntax = |e: serde_yaml::Error| match e.location() {
            Some(loc) => ConfigError::Syntax {
                path: path.to_owned(),
                line: loc.line(),
                column: loc.column(),
                message: explain_yaml_error(&e),
            },
            None => ConfigError::Invalid {
                path: path.to_owned(),
                message: explain_yaml_error(&e),
            },
        };
        // An empty file (or only comments) is a valid, all-defaults config.
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
        if value.is_null() {
            return Ok(Config::default());
        }
        // YAML merge keys (`<<: *base`) are common in prometheus.yml files;
        // serde_yaml only resolves them on a Value, which loses positions, so
        // that path is taken only when the file uses them.
        let mut config: Config = if text.contains("<<") {
            let mut value = value;
            value.apply_merge().map_err(syntax)?;
            serde_yaml::from_value(value).map_err(syntax)?
        } else {
            serde_yaml::from_str(text).map_err(syntax)?
        };
        config.finalize().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn finalize(&mut self) -> Result<(), String> {
        for (name, value) in self.global.external_labels.iter_mut() {
            *value = expand_env(value);
            if value.is_empty() {
                tracing::warn!(label = %name, "external label expands to an empty value and is dropped");
            }
        }
        self.global.external_labels.retain(|_, v| !v.is_empty());

        for (i, rf) in self.rule_files.iter().enumerate() {
            // A wildcard is only allowed in the file name, as in Prometheus.
            if rf.find('*').is_some_and(|star| rf[star..].contains('/')) {
                return Err(format!(
                    "rule_files[{i}]: invalid rule file path {rf:?} (a '*' may only appear in the last path element)"
                ));
            }
        }

        let global = self.global.clone();
        let mut jobs = HashSet::new();
        for (i, job) in self.scrape_configs.iter_mut().enumerate() {
            if !jobs.insert(job.job_name.clone()) {
                return Err(format!(
                    "scrape_configs[{i}]: found multiple scrape configs with job_name {:?}",
                    job.job_name
                ));
            }
            if !job.interval_set || job.scrape_interval.is_zero() {
                job.scrape_interval = global.scrape_interval;
            }
            if !job.timeout_set || job.scrape_timeout.is_zero() {
                job.scrape_timeout = global.scrape_timeout.min(job.scrape_interval);
            }
            if !job.native_set {
                job.scrape_native_histograms = global.scrape_native_histograms;
            }
            if job.scrape_protocols.is_empty() {
                job.scrape_protocols = if !global.scrape_protocols.is_empty() {
                    global.scrape_protocols.clone()
                } else if job.scrape_native_histograms {
                    scrape::ScrapeProtocol::PROTO_FIRST.to_vec()
                } else {
                    scrape::ScrapeProtocol::DEFAULT.to_vec()
                };
            }
            if job.scrape_timeout > job.scrape_interval {
                return Err(format!(
                    "scrape_configs[{i}] (job {:?}): scrape_timeout ({}) is greater than scrape_interval ({})",
                    job.job_name, job.scrape_timeout, job.scrape_interval
                ));
            }
        }

        let mut names = HashSet::new();
        for (i, rw) in self.remote_write.iter().enumerate() {
            if !rw.name.is_empty() && !names.insert(rw.name.clone()) {
                return Err(format!(
                    "remote_write[{i}]: found multiple remote_write configs with name {:?}",
                    rw.name
                ));
            }
        }
        let mut names = HashSet::new();
        for (i, rr) in self.remote_read.iter().enumerate() {
            if !rr.name.is_empty() && !names.insert(rr.name.clone()) {
                return Err(format!(
                    "remote_read[{i}]: found multiple remote_read configs with name {:?}",
                    rr.name
                ));
            }
        }
        for name in self.global.external_labels.keys() {
            if !is_valid_label_name(name) {
                return Err(format!(
                    "global.external_labels: {name:?} is not a valid label name"
                ));
            }
        }
        Ok(())
    }

    /// Parts of this config that the running server accepts but does not act
    /// on yet; logged at start-up and on reload so nothing looks like it works
    /// when it does not.
    pub fn not_yet_acted_on(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self
            .scrape_configs
            .iter()
            .any(|c| c.http_client.oauth2.is_some())
        {
            out.push("scrape_configs oauth2 (OAuth2 is not implemented in this build)");
        }
        if self
            .remote_write
            .iter()
            .any(|r| r.http_client.oauth2.is_some())
        {
            out.push("remote_write oauth2 (OAuth2 is not implemented in this build)");
        }
        if self.remote_write.iter().any(|r| r.sigv4.is_some()) {
            out.push("remote_write sigv4 (AWS signing is not implemented in this build)");
        }
        if self.remote_write.iter().any(|r| r.azuread.is_some()) {
            out.push("remote_write azuread (Azure AD is not implemented in this build)");
        }
        if !self.remote_read.is_empty() {
            out.push("remote_read (remote read is not implemented in this build)");
        }
        if !self.global.query_log_file.is_empty() {
            out.push("global.query_log_file (queries are not logged in this build)");
        }
        out
    }
}

/// serde_yaml's message without its trailing position (reported separately),
/// and with a specific explanation for keys Prometheus has and Ember lacks.
fn explain_yaml_error(e: &serde_yaml::Error) -> String {
    let mut msg = e.to_string();
    // The position is reported in front of the message; drop serde_yaml's copies.
    static AT: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let at =
        AT.get_or_init(|| regex::Regex::new(r" at line \d+ column \d+").expect("static regex"));
    msg = at.replace_all(&msg, "").into_owned();
    if let Some(field) = unknown_field(&msg) {
        if UNSUPPORTED_SD.contains(&field) {
            return format!(
                "{field} is a Prometheus service discovery that Ember does not support; \
                 use static_configs or file_sd_configs"
            );
        }
        if let Some((_, why)) = UNSUPPORTED_KEYS.iter().find(|(k, _)| *k == field) {
            return format!("{field} is not supported by Ember: {why}");
        }
    }
    msg
}

fn unknown_field(msg: &str) -> Option<&str> {
    let start = msg.find("unknown field `")? + "unknown field `".len();
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

/// Expands `$VAR` and `${VAR}` from the environment; `$$` is a literal `$`.
/// Unset variables expand to the empty string, as in Prometheus.
pub fn expand_env(s: &str) -> String {
    expand_with(s, |name| std::env::var(name).ok())
}

fn expand_with(s: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            match r.find('}') {
                Some(end) => {
                    out.push_str(&lookup(&r[..end]).unwrap_or_default());
                    rest = &r[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            let len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..len]).unwrap_or_default());
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// A path from the configuration file: relative ones are relative to the
/// file's directory, as in Prometheus.
pub fn resolve_path(config_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        config_dir.join(p)
    }
}

/// A URL as configuration accepts it: absolute, with an http(s) scheme and a host.
pub(crate) fn parse_url(s: &str) -> Result<(), String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| "missing scheme (expected http:// or https://)".to_owned())?;
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "socks5"
    ) {
        return Err(format!("unsupported scheme {scheme:?}"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err("missing host".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_protocols_come_from_the_job_the_global_section_or_native_histograms() {
        use super::scrape::ScrapeProtocol as P;
        let c = parse(
            "global:\n  scrape_native_histograms: true\nscrape_configs:\n- job_name: a\n- job_name: b\n  scrape_native_histograms: false\n- job_name: c\n  scrape_protocols: [PrometheusText0.0.4, PrometheusProto]\n",
        )
        .unwrap();
        assert_eq!(
            c.scrape_configs[0].scrape_protocols,
            P::PROTO_FIRST.to_vec()
        );
        assert!(c.scrape_configs[0].scrape_native_histograms);
        assert_eq!(c.scrape_configs[1].scrape_protocols, P::DEFAULT.to_vec());
        assert_eq!(
            c.scrape_configs[2].scrape_protocols,
            vec![P::PrometheusText0, P::PrometheusProto]
        );
        let c = parse(
            "global:\n  scrape_protocols: [OpenMetricsText1.0.0]\nscrape_configs:\n- job_name: a\n",
        )
        .unwrap();
        assert_eq!(
            c.scrape_configs[0].scrape_protocols,
            vec![P::OpenMetricsText1]
        );
        let e = parse("scrape_configs:\n- job_name: a\n  scrape_protocols: [PrometheusProto, PrometheusProto]\n").unwrap_err().to_string();
        assert!(e.contains("duplicated protocol in scrape_protocols"), "{e}");
        let e = parse("scrape_configs:\n- job_name: a\n  scrape_protocols: [Protobuf]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Protobuf"), "{e}");
    }

    #[test]
    fn prometheus_2_name_of_always_scrape_classic_histograms_is_accepted() {
        let c = parse("scrape_configs:\n- job_name: a\n  scrape_classic_histograms: true\n- job_name: b\n  always_scrape_classic_histograms: true\n- job_name: c\n").unwrap();
        assert!(c.scrape_configs[0].always_scrape_classic_histograms);
        assert!(c.scrape_configs[1].always_scrape_classic_histograms);
        assert!(!c.scrape_configs[2].always_scrape_classic_histograms);
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yml"))
    }

    #[test]
    fn empty_file_is_defaults() {
        let c = parse("# nothing\n").unwrap();
        assert_eq!(c.global.scrape_interval, PromDuration::from_secs(60));
        assert_eq!(c.global.scrape_timeout, PromDuration::from_secs(10));
        assert_eq!(c.global.evaluation_interval, PromDuration::from_secs(60));
    }

    #[test]
    fn send_native_histograms_and_send_exemplars_are_acted_on() {
        for field in ["send_native_histograms", "send_exemplars"] {
            let c = parse(&format!(
                "remote_write:\n- url: http://a/write\n  {field}: true\n"
            ))
            .unwrap();
            assert!(
                c.not_yet_acted_on().is_empty(),
                "{field}: {:?}",
                c.not_yet_acted_on()
            );
        }
    }

    #[test]
    fn jobs_inherit_global() {
        let c = parse(
            "global: {scrape_interval: 5s}\nscrape_configs:\n- job_name: a\n- job_name: b\n  scrape_interval: 30s\n",
        )
        .unwrap();
        assert_eq!(c.global.scrape_timeout, PromDuration::from_secs(5));
        assert_eq!(
            c.scrape_configs[0].scrape_interval,
            PromDuration::from_secs(5)
        );
        assert_eq!(
            c.scrape_configs[0].scrape_timeout,
            PromDuration::from_secs(5)
        );
        assert_eq!(
            c.scrape_configs[1].scrape_timeout,
            PromDuration::from_secs(5)
        );
        assert_eq!(c.scrape_configs[1].metrics_path, "/metrics");
    }

    #[test]
    fn unknown_key_has_position() {
        let err = parse("global:\n  scrape_interval: 15s\n  bogus_key: 1\n").unwrap_err();
        match &err {
            ConfigError::Syntax {
                line,
                column,
                message,
                ..
            } => {
                assert_eq!((*line, *column), (3, 3), "{err}");
                assert!(message.contains("bogus_key"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unsupported_sd_is_explained() {
        let err =
            parse("scrape_configs:\n- job_name: k\n  kubernetes_sd_configs: []\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("kubernetes_sd_configs is a Prometheus service discovery"),
            "{err}"
        );
    }

    #[test]
    fn tls_versions_rustls_lacks() {
        let err = parse("scrape_configs:\n- job_name: a\n  tls_config: {max_version: TLS11}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_version TLS11 is not supported"), "{err}");
        // A minimum below TLS 1.2 is accepted and means TLS 1.2.
        parse("scrape_configs:\n- job_name: a\n  tls_config: {min_version: TLS10}\n").unwrap();
    }

    #[test]
    fn timeout_over_interval() {
        let err =
            parse("scrape_configs:\n- job_name: a\n  scrape_interval: 5s\n  scrape_timeout: 6s\n")
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("scrape_timeout (6s) is greater than scrape_interval (5s)"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_jobs() {
        let err = parse("scrape_configs:\n- job_name: a\n- job_name: a\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("multiple scrape configs with job_name \"a\""),
            "{err}"
        );
    }

    #[test]
    fn merge_keys_and_yaml_1_1_booleans() {
        let c = parse("base: &base\n  scrape_interval: 5s\n  honor_labels: yes\n");
        assert!(c.is_err(), "unknown top-level key stays an error");
        let c = parse(
            "scrape_configs:\n- &a\n  job_name: a\n  scrape_interval: 5s\n  honor_labels: yes\n- <<: *a\n  job_name: b\n",
        )
        .unwrap();
        assert_eq!(
            c.scrape_configs[1].scrape_interval,
            PromDuration::from_secs(5)
        );
        assert!(c.scrape_configs[1].honor_labels);
    }

    #[test]
    fn rule_file_wildcards_only_in_file_names() {
        assert!(parse("rule_files: [\"rules/*.yml\"]\n").is_ok());
        assert!(parse("rule_files: [\"rules/*/a.yml\"]\n").is_err());
    }

    #[test]
    fn env_expansion() {
        let lookup = |k: &str| match k {
            "A" => Some("x".to_owned()),
            _ => None,
        };
        assert_eq!(expand_with("${A}-$A-$$A-${B}-$", lookup), "x-x-$A--$");
    }

    #[test]
    fn secrets_are_hidden_when_serialized() {
        let c = parse(
            "scrape_configs:\n- job_name: a\n  basic_auth: {username: u, password: hunter2}\n",
        )
        .unwrap();
        let out = serde_yaml::to_string(&c).unwrap();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("<secret>"), "{out}");
    }
}
