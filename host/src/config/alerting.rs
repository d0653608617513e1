//! The `alerting` section: where alerts are sent and how they are relabeled.

use serde::{Deserialize, Serialize};

use super::duration::PromDuration;
use super::http_client::{HttpClientConfig, with_http_client_fields};
use super::labels::nullable;
use super::relabel::RelabelConfig;
use super::scrape::{FileSdConfig, Scheme, StaticConfig};

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub alert_relabel_configs: Vec<RelabelConfig>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertmanagerApiVersion {
    V1,
    V2,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertmanagerConfig {
    pub scheme: Scheme,
    pub path_prefix: String,
    pub timeout: PromDuration,
    pub api_version: AlertmanagerApiVersion,
    #[serde(flatten)]
    pub http_client: HttpClientConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
}

with_http_client_fields! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename = "AlertmanagerConfig")]
    struct RawAlertmanagerConfig {
        scheme: Option<String>,
        path_prefix: Option<String>,
        timeout: Option<PromDuration>,
        api_version: Option<String>,
        #[serde(default, deserialize_with = "nullable")]
        static_configs: Vec<StaticConfig>,
        #[serde(default, deserialize_with = "nullable")]
        file_sd_configs: Vec<FileSdConfig>,
        #[serde(default, deserialize_with = "nullable")]
        relabel_configs: Vec<RelabelConfig>,
    }
}

impl<'de> Deserialize<'de> for AlertmanagerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut raw = RawAlertmanagerConfig::deserialize(d)?;
        let http_client = raw
            .take_http_client()
            .validate()
            .map_err(D::Error::custom)?;
        let scheme = match raw.scheme.as_deref() {
            None | Some("") | Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "unknown alertmanager scheme {other:?} (expected http or https)"
                )));
            }
        };
        let api_version = match raw.api_version.as_deref() {
            None | Some("") | Some("v2") => AlertmanagerApiVersion::V2,
            Some("v1") => AlertmanagerApiVersion::V1,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "expected Alertmanager api version to be one of [v1 v2] but got {other:?}"
                )));
            }
        };
        Ok(AlertmanagerConfig {
            scheme,
            path_prefix: raw.path_prefix.unwrap_or_else(|| "/".into()),
            timeout: raw.timeout.unwrap_or(PromDuration::from_secs(10)),
            api_version,
            http_client,
            static_configs: raw.static_configs,
            file_sd_configs: raw.file_sd_configs,
            relabel_configs: raw.relabel_configs,
        })
    }
}
