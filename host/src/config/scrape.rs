//! `scrape_configs` entries and the target sources Ember knows:
//! `static_configs` and `file_sd_configs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::duration::PromDuration;
use super::http_client::{HttpClientConfig, with_http_client_fields};
use super::labels::{LabelSet, label_set, nullable};
use super::relabel::RelabelConfig;
use crate::plugins::PluginUse;

/// An exposition format a scrape may ask for (`scrape_protocols`), by its
/// Prometheus 3 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum ScrapeProtocol {
    PrometheusProto,
    #[serde(rename = "OpenMetricsText1.0.0")]
    OpenMetricsText1,
    #[serde(rename = "OpenMetricsText0.0.1")]
    OpenMetricsText0,
    #[serde(rename = "PrometheusText0.0.4")]
    PrometheusText0,
}

impl ScrapeProtocol {
    pub fn name(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => "PrometheusProto",
            ScrapeProtocol::OpenMetricsText1 => "OpenMetricsText1.0.0",
            ScrapeProtocol::OpenMetricsText0 => "OpenMetricsText0.0.1",
            ScrapeProtocol::PrometheusText0 => "PrometheusText0.0.4",
        }
    }

    /// The media type offered for it in the `Accept` header.
    pub fn media_type(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => {
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            }
            ScrapeProtocol::OpenMetricsText1 => "application/openmetrics-text;version=1.0.0",
            ScrapeProtocol::OpenMetricsText0 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::PrometheusText0 => "text/plain;version=0.0.4",
        }
    }

    /// The order Prometheus asks in when nothing is configured.
    pub const DEFAULT: [ScrapeProtocol; 3] = [
        ScrapeProtocol::OpenMetricsText1,
        ScrapeProtocol::OpenMetricsText0,
        ScrapeProtocol::PrometheusText0,
    ];

    /// The default when native histograms are scraped: protobuf first,
    /// since only it carries them.
    pub const PROTO_FIRST: [ScrapeProtocol; 4] = [
        ScrapeProtocol::PrometheusProto,
        ScrapeProtocol::OpenMetricsText1,
        ScrapeProtocol::OpenMetricsText0,
        ScrapeProtocol::PrometheusText0,
    ];
}

/// Checks a `scrape_protocols` list: no repeats (unknown names are refused
/// by deserialization).
pub fn check_scrape_protocols(list: &[ScrapeProtocol]) -> Result<(), String> {
    for (i, p) in list.iter().enumerate() {
        if list[..i].contains(p) {
            return Err(format!(
                "duplicated protocol in scrape_protocols, got {}",
                p.name()
            ));
        }
    }
    Ok(())
}

/// One group of statically listed targets.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub targets: Vec<String>,
    #[serde(
        default,
        deserialize_with = "label_set",
        skip_serializing_if = "LabelSet::is_empty"
    )]
    pub labels: LabelSet,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    pub refresh_interval: PromDuration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "FileSdConfig")]
struct RawFileSdConfig {
    #[serde(default, deserialize_with = "nullable")]
    files: Vec<String>,
    refresh_interval: Option<PromDuration>,
}

impl<'de> Deserialize<'de> for FileSdConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawFileSdConfig::deserialize(d)?;
        if raw.files.is_empty() {
            return Err(serde::de::Error::custom(
                "file service discovery config must contain at least one path name",
            ));
        }
        for f in &raw.files {
            if !is_valid_file_sd_pattern(f) {
                return Err(serde::de::Error::custom(format!(
                    "path name {f:?} is not valid for file discovery (it must end in .json, .yml or .yaml, with at most one '*' in the file name)"
                )));
            }
        }
        Ok(FileSdConfig {
            files: raw.files,
            refresh_interval: raw.refresh_interval.unwrap_or(PromDuration::from_secs(300)),
        })
    }
}

/// Files are JSON or YAML; wildcards only in the last path element.
fn is_valid_file_sd_pattern(path: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$")
            .expect("static regex")
    })
    .is_match(path)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    /// Filled from `global` when the job does not set it (see `Config::finalize`).
    pub scrape_interval: PromDuration,
    pub scrape_timeout: PromDuration,
    pub metrics_path: String,
    pub scheme: Scheme,
    pub sample_limit: u64,
    pub target_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// Bytes; 0 means unlimited.
    pub body_size_limit: u64,
    /// The formats offered, most wanted first; filled from `global` (or
    /// the defaults) when the job does not set it (see `Config::finalize`).
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// Store native histograms from protobuf scrapes (Prometheus 3's
    /// `scrape_native_histograms`; 2.42's `native-histograms` feature).
    pub scrape_native_histograms: bool,
    /// Also store the classic series of histograms scraped as native.
    pub always_scrape_classic_histograms: bool,
    #[serde(flatten)]
    pub http_client: HttpClientConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Ember extension: discoverer plugins, a service-discovery kind next to
    /// `static_configs` and `file_sd_configs`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plugin_sd_configs: Vec<PluginUse>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Ember extension: the job's targets are scraped by calling this
    /// exporter plugin instead of over HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginUse>,
    #[serde(skip)]
    pub(super) interval_set: bool,
    #[serde(skip)]
    pub(super) timeout_set: bool,
    #[serde(skip)]
    pub(super) native_set: bool,
}

with_http_client_fields! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename = "ScrapeConfig")]
    struct RawScrapeConfig {
        job_name: Option<String>,
        #[serde(default, deserialize_with = "super::yaml::opt_bool")]
        honor_labels: Option<bool>,
        #[serde(default, deserialize_with = "super::yaml::opt_bool")]
        honor_timestamps: Option<bool>,
        #[serde(default, deserialize_with = "nullable")]
        params: BTreeMap<String, Vec<String>>,
        scrape_interval: Option<PromDuration>,
        scrape_timeout: Option<PromDuration>,
        metrics_path: Option<String>,
        scheme: Option<String>,
        sample_limit: Option<u64>,
        target_limit: Option<u64>,
        label_limit: Option<u64>,
        label_name_length_limit: Option<u64>,
        label_value_length_limit: Option<u64>,
        body_size_limit: Option<String>,
        #[serde(default, deserialize_with = "nullable")]
        scrape_protocols: Vec<ScrapeProtocol>,
        #[serde(default, deserialize_with = "super::yaml::opt_bool")]
        scrape_native_histograms: Option<bool>,
        // `scrape_classic_histograms` is the Prometheus 2.x name, so 2.x
        // configs load unchanged.
        #[serde(
            default,
            alias = "scrape_classic_histograms",
            deserialize_with = "super::yaml::opt_bool"
        )]
        always_scrape_classic_histograms: Option<bool>,
        #[serde(default, deserialize_with = "nullable")]
        static_configs: Vec<StaticConfig>,
        #[serde(default, deserialize_with = "nullable")]
        file_sd_configs: Vec<FileSdConfig>,
        #[serde(default, deserialize_with = "nullable")]
        plugin_sd_configs: Vec<PluginUse>,
        plugin: Option<PluginUse>,
        #[serde(default, deserialize_with = "nullable")]
        relabel_configs: Vec<RelabelConfig>,
        #[serde(default, deserialize_with = "nullable")]
        metric_relabel_configs: Vec<RelabelConfig>,
    }
}

impl<'de> Deserialize<'de> for ScrapeConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Some(mut raw) = Option::<RawScrapeConfig>::deserialize(d)? else {
            return Err(serde::de::Error::custom(
                "empty or null scrape config section",
            ));
        };
        let http_client = raw
            .take_http_client()
            .validate()
            .map_err(serde::de::Error::custom)?;
        let job_name = raw.job_name.unwrap_or_default();
        if job_name.is_empty() {
            return Err(serde::de::Error::custom("job_name is empty"));
        }
        let scheme = match raw.scheme.as_deref() {
            None | Some("") | Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => {
                return Err(serde::de::Error::custom(format!(
                    "unknown scrape config scheme {other:?} (expected http or https)"
                )));
            }
        };
        let body_size_limit = match raw.body_size_limit.as_deref() {
            None | Some("") | Some("0") => 0,
            Some(s) => parse_bytes(s).map_err(serde::de::Error::custom)?,
        };
        check_scrape_protocols(&raw.scrape_protocols).map_err(serde::de::Error::custom)?;
        for plugin in raw.plugin.iter().chain(&raw.plugin_sd_configs) {
            plugin.validate().map_err(serde::de::Error::custom)?;
        }
        Ok(ScrapeConfig {
            job_name,
            honor_labels: raw.honor_labels.unwrap_or(false),
            honor_timestamps: raw.honor_timestamps.unwrap_or(true),
            params: raw.params,
            interval_set: raw.scrape_interval.is_some(),
            timeout_set: raw.scrape_timeout.is_some(),
            scrape_interval: raw.scrape_interval.unwrap_or_default(),
            scrape_timeout: raw.scrape_timeout.unwrap_or_default(),
            metrics_path: raw
                .metrics_path
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/metrics".into()),
            scheme,
            sample_limit: raw.sample_limit.unwrap_or(0),
            target_limit: raw.target_limit.unwrap_or(0),
            label_limit: raw.label_limit.unwrap_or(0),
            label_name_length_limit: raw.label_name_length_limit.unwrap_or(0),
            label_value_length_limit: raw.label_value_length_limit.unwrap_or(0),
            body_size_limit,
            scrape_protocols: raw.scrape_protocols,
            native_set: raw.scrape_native_histograms.is_some(),
            scrape_native_histograms: raw.scrape_native_histograms.unwrap_or(false),
            always_scrape_classic_histograms: raw.always_scrape_classic_histograms.unwrap_or(false),
            http_client,
            static_configs: raw.static_configs,
            file_sd_configs: raw.file_sd_configs,
            plugin_sd_configs: raw.plugin_sd_configs,
            plugin: raw.plugin,
            relabel_configs: raw.relabel_configs,
            metric_relabel_configs: raw.metric_relabel_configs,
        })
    }
}

/// Parses a byte size the way Prometheus's `units.Base2Bytes` does (`10MB`, `1KiB`, `512B`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let invalid = || format!("invalid byte size {s:?} (expected e.g. 512KB, 10MB, 1GiB)");
    if digits == 0 {
        return Err(invalid());
    }
    let n: u64 = s[..digits].parse().map_err(|_| invalid())?;
    let factor: u64 = match &s[digits..] {
        "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        "PB" | "PiB" => 1 << 50,
        "EB" | "EiB" => 1 << 60,
        _ => return Err(invalid()),
    };
    n.checked_mul(factor).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sd_patterns() {
        for ok in [
            "a.json",
            "dir/*.yml",
            "x/targets-*.yaml",
            "A.JSON",
            "sd/x-*-y*.yaml",
            "a*b*.json",
        ] {
            assert!(is_valid_file_sd_pattern(ok), "{ok}");
        }
        for bad in ["a.txt", "*/a.json", "a.json.bak"] {
            assert!(!is_valid_file_sd_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("10MB"), Ok(10 << 20));
        assert_eq!(parse_bytes("512B"), Ok(512));
        assert!(parse_bytes("10 MB").is_err());
        assert!(parse_bytes("ten").is_err());
    }
}
