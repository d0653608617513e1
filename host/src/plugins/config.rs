//! The YAML shape of a plugin use (`plugin:` in a scrape config,
//! `plugin_sd_configs` entries, `ember plugin notify-test --config`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Limits, PluginSettings};
use crate::config::duration::PromDuration;

/// A plugin by name (the `.wasm` file's stem in the plugin directory) with
/// its config, grants and limits.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginUse {
    #[serde(default)]
    pub name: String,
    /// Handed to the plugin as JSON.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "serialize_masked"
    )]
    pub config: BTreeMap<String, serde_yaml::Value>,
    /// Hosts the plugin may reach: `host`, `host:port`, `*.domain`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// Absolute host directories the plugin may read (same path inside).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only_dirs: Vec<String>,
    /// Absolute paths whose mount points (the path and those below it) the
    /// plugin may ask `statfs` of (`filesystem-stats`), without reading
    /// any file there; `[/]` covers every mount point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stat_filesystems: Vec<String>,
    /// Per-call deadline (default 10s; for exporters at most the scrape timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<PromDuration>,
    /// Linear memory cap in bytes (default 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<usize>,
    /// Cap on one outgoing HTTP response body in bytes (default 8 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<usize>,
    /// Cap on samples (exporter) or targets (discoverer) per call
    /// (default 200000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<usize>,
    /// DNS server (`ip:port`) for SRV lookups (default: the first
    /// `nameserver` of `/etc/resolv.conf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<String>,
    /// Discoverers only: how often `discover` is called (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<PromDuration>,
}

impl PluginUse {
    /// Checks what can be checked without the plugin directory.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("plugin: name is required".into());
        }
        if self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(format!("plugin: invalid name {:?}", self.name));
        }
        for (key, dirs) in [
            ("read_only_dirs", &self.read_only_dirs),
            ("stat_filesystems", &self.stat_filesystems),
        ] {
            for dir in dirs {
                if !std::path::Path::new(dir).is_absolute() {
                    return Err(format!(
                        "plugin {}: {key} entry {dir:?} must be absolute",
                        self.name
                    ));
                }
            }
        }
        for host in &self.allow_hosts {
            if host.is_empty() || host.contains('/') {
                return Err(format!(
                    "plugin {}: invalid allow_hosts entry {host:?}",
                    self.name
                ));
            }
        }
        if let Some(server) = &self.dns_server
            && server.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!(
                "plugin {}: dns_server {server:?} must be ip:port",
                self.name
            ));
        }
        if self.memory_limit_bytes.is_some_and(|m| m < (1 << 20)) {
            return Err(format!(
                "plugin {}: memory_limit_bytes must be at least 1 MiB",
                self.name
            ));
        }
        serde_json::to_string(&self.config)
            .map_err(|e| format!("plugin {}: config cannot be passed as JSON: {e}", self.name))?;
        Ok(())
    }

    /// The instance settings; `max_timeout` caps the deadline (an exporter
    /// must finish within its scrape timeout).
    pub fn settings(&self, max_timeout: Option<std::time::Duration>) -> PluginSettings {
        let mut limits = Limits::default();
        if let Some(t) = self.timeout {
            limits.timeout = t.as_duration();
        }
        if let Some(max) = max_timeout
            && (self.timeout.is_none() || limits.timeout > max)
        {
            limits.timeout = max;
        }
        if let Some(m) = self.memory_limit_bytes {
            limits.max_memory_bytes = m;
        }
        if let Some(m) = self.max_response_bytes {
            limits.max_response_bytes = m;
        }
        if let Some(m) = self.max_samples {
            limits.max_samples = m;
        }
        PluginSettings {
            name: self.name.clone(),
            config_json: serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into()),
            allow_hosts: self.allow_hosts.clone(),
            read_only_dirs: self.read_only_dirs.clone(),
            stat_filesystems: self.stat_filesystems.clone(),
            dns_server: self.dns_server.clone(),
            limits,
        }
    }
}

/// Whether a plugin config key names a secret: such values are shown as
/// `<secret>` wherever the config is displayed (`/api/v1/status/config`),
/// as Prometheus shows its own secrets. The plugin itself gets the real map.
fn is_secret_key(key: &str, urls_are_secret: bool) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "key", "credential"]
        .iter()
        .any(|word| key.contains(word))
        || (urls_are_secret && key.contains("url"))
}

fn masked(
    config: &BTreeMap<String, serde_yaml::Value>,
    urls_are_secret: bool,
) -> BTreeMap<&str, serde_yaml::Value> {
    config
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret_key(k, urls_are_secret) {
                serde_yaml::Value::from("<secret>")
            } else {
                v.clone()
            };
            (k.as_str(), shown)
        })
        .collect()
}

/// For exporter and discoverer plugins: URLs are targets, not secrets.
pub fn serialize_masked<S: serde::Serializer>(
    config: &BTreeMap<String, serde_yaml::Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&masked(config, false), serializer)
}

/// For notifier plugins: webhook URLs carry credentials (Slack's, for one),
/// so they are hidden as Alertmanager hides them.
pub fn serialize_masked_with_urls<S: serde::Serializer>(
    config: &BTreeMap<String, serde_yaml::Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&masked(config, true), serializer)
}

#[cfg(test)]
mod masking_tests {
    use super::*;

    #[test]
    fn secrets_are_masked_when_shown_but_not_for_the_plugin() {
        let mut config = BTreeMap::new();
        config.insert("url".to_owned(), serde_yaml::Value::from("https://hooks/x"));
        config.insert("routing_key".to_owned(), serde_yaml::Value::from("abc"));
        config.insert("channel".to_owned(), serde_yaml::Value::from("#ops"));
        let use_ = PluginUse {
            name: "p".into(),
            config: config.clone(),
            ..PluginUse::default()
        };
        let shown = serde_yaml::to_string(&use_).unwrap();
        assert!(shown.contains("routing_key: <secret>"), "{shown}");
        assert!(shown.contains("url: https://hooks/x"), "{shown}");
        assert!(shown.contains("'#ops'"), "{shown}");
        let notifier = masked(&config, true);
        assert_eq!(notifier["url"], serde_yaml::Value::from("<secret>"));
        assert_eq!(use_.config["routing_key"], serde_yaml::Value::from("abc"));
    }
}
