//! `remote_write` and `remote_read` sections.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::duration::PromDuration;
use super::http_client::{HttpClientConfig, with_http_client_fields};
use super::labels::{LabelSet, nullable};
use super::relabel::RelabelConfig;

/// Headers the remote-write protocol sets itself.
const RESERVED_HEADERS: [&str; 5] = [
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
];
const RESERVED_HEADER_PREFIXES: [&str; 2] = [
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
];

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), String> {
    for name in headers.keys() {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || RESERVED_HEADER_PREFIXES.contains(&lower.as_str())
        {
            return Err(format!(
                "{name} is a reserved header. It must not be changed"
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub capacity: u64,
    pub max_shards: u64,
    pub min_shards: u64,
    pub max_samples_per_send: u64,
    pub batch_send_deadline: PromDuration,
    pub min_backoff: PromDuration,
    pub max_backoff: PromDuration,
    #[serde(deserialize_with = "super::yaml::bool")]
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2_000,
            batch_send_deadline: PromDuration::from_secs(5),
            min_backoff: PromDuration::from_millis(30),
            max_backoff: PromDuration::from_secs(5),
            retry_on_http_429: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    #[serde(deserialize_with = "super::yaml::bool")]
    pub send: bool,
    pub send_interval: PromDuration,
    pub max_samples_per_send: u64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: PromDuration::from_secs(60),
            max_samples_per_send: 2_000,
        }
    }
}

/// AWS Signature Version 4 signing for remote write.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Config {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_key: String,
    #[serde(default, skip_serializing_if = "super::http_client::Secret::is_empty")]
    pub secret_key: super::http_client::Secret,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profile: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureManagedIdentity {
    #[serde(default)]
    pub client_id: String,
}

/// Azure AD authentication for remote write.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureAdConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cloud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_identity: Option<AzureManagedIdentity>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RemoteWriteConfig {
    pub url: String,
    pub remote_timeout: PromDuration,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub send_exemplars: bool,
    pub send_native_histograms: bool,
    #[serde(flatten)]
    pub http_client: HttpClientConfig,
    pub queue_config: QueueConfig,
    pub metadata_config: MetadataConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<SigV4Config>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azuread: Option<AzureAdConfig>,
}

with_http_client_fields! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename = "RemoteWriteConfig")]
    struct RawRemoteWriteConfig {
        url: Option<String>,
        remote_timeout: Option<PromDuration>,
        #[serde(default, deserialize_with = "nullable")]
        headers: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "nullable")]
        write_relabel_configs: Vec<RelabelConfig>,
        name: Option<String>,
        #[serde(default, deserialize_with = "super::yaml::opt_bool")]
        send_exemplars: Option<bool>,
        #[serde(default, deserialize_with = "super::yaml::opt_bool")]
        send_native_histograms: Option<bool>,
        queue_config: Option<QueueConfig>,
        metadata_config: Option<MetadataConfig>,
        sigv4: Option<SigV4Config>,
        azuread: Option<AzureAdConfig>,
    }
}

impl<'de> Deserialize<'de> for RemoteWriteConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut raw = RawRemoteWriteConfig::deserialize(d)?;
        let http_client = raw
            .take_http_client()
            .validate()
            .map_err(D::Error::custom)?;
        let url = raw.url.unwrap_or_default();
        if url.is_empty() {
            return Err(D::Error::custom("url for remote_write is empty"));
        }
        super::parse_url(&url)
            .map_err(|e| D::Error::custom(format!("invalid remote_write url {url:?}: {e}")))?;
        check_headers(&raw.headers).map_err(D::Error::custom)?;
        let auth_methods = [
            http_client.basic_auth.is_some(),
            http_client.authorization.is_some(),
            http_client.oauth2.is_some(),
            raw.sigv4.is_some(),
            raw.azuread.is_some(),
        ];
        if auth_methods.iter().filter(|x| **x).count() > 1 {
            return Err(D::Error::custom(
                "at most one of basic_auth, authorization, oauth2, sigv4 & azuread must be configured",
            ));
        }
        Ok(RemoteWriteConfig {
            url,
            remote_timeout: raw.remote_timeout.unwrap_or(PromDuration::from_secs(30)),
            headers: raw.headers,
            write_relabel_configs: raw.write_relabel_configs,
            name: raw.name.unwrap_or_default(),
            send_exemplars: raw.send_exemplars.unwrap_or(false),
            send_native_histograms: raw.send_native_histograms.unwrap_or(false),
            http_client,
            queue_config: raw.queue_config.unwrap_or_default(),
            metadata_config: raw.metadata_config.unwrap_or_default(),
            sigv4: raw.sigv4,
            azuread: raw.azuread,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RemoteReadConfig {
    pub url: String,
    pub remote_timeout: PromDuration,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub read_recent: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "LabelSet::is_empty")]
    pub required_matchers: LabelSet,
    pub filter_external_labels: bool,
    #[serde(flatten)]
    pub http_client: HttpClientConfig,
}

with_http_client_fields! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename = "RemoteReadConfig")]
    struct RawRemoteReadConfig {
        url: Option<String>,
        remote_timeout: Option<PromDuration>,
        #[serde(default, deserialize_with = "nullable")]
        headers: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "super::yaml::opt_bool")]
        read_recent: Option<bool>,
        name: Option<String>,
        #[serde(default, deserialize_with = "super::labels::label_set")]
        required_matchers: LabelSet,
        #[serde(default, deserialize_with = "super::yaml::opt_bool")]
        filter_external_labels: Option<bool>,
    }
}

impl<'de> Deserialize<'de> for RemoteReadConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut raw = RawRemoteReadConfig::deserialize(d)?;
        let http_client = raw
            .take_http_client()
            .validate()
            .map_err(D::Error::custom)?;
        let url = raw.url.unwrap_or_default();
        if url.is_empty() {
            return Err(D::Error::custom("url for remote_read is empty"));
        }
        super::parse_url(&url)
            .map_err(|e| D::Error::custom(format!("invalid remote_read url {url:?}: {e}")))?;
        check_headers(&raw.headers).map_err(D::Error::custom)?;
        Ok(RemoteReadConfig {
            url,
            remote_timeout: raw.remote_timeout.unwrap_or(PromDuration::from_secs(60)),
            headers: raw.headers,
            read_recent: raw.read_recent.unwrap_or(false),
            name: raw.name.unwrap_or_default(),
            required_matchers: raw.required_matchers,
            filter_external_labels: raw.filter_external_labels.unwrap_or(true),
            http_client,
        })
    }
}
