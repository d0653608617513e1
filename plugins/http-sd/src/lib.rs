//! Service discovery from an HTTP endpoint serving Prometheus's `http_sd`
//! format: a JSON list of `{"targets": [...], "labels": {...}}`. As in
//! Prometheus, every group gets `__meta_url` with the endpoint's URL.
//!
//! ```yaml
//! config:
//!   url: http://cmdb.example/targets   # required
//!   headers: {Authorization: "Bearer ..."}
//! allow_hosts: [cmdb.example]
//! ```

use std::collections::BTreeMap;

use ember_plugin_sdk::http::{Header, Request};
use ember_plugin_sdk::{Discoverer, Label, PluginInfo, TargetGroup};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

struct HttpSd {
    config: Config,
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Discoverer for HttpSd {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(format!(
                "config: url {:?} must be http:// or https://",
                config.url
            ));
        }
        Ok(HttpSd { config })
    }

    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new("http-sd", env!("CARGO_PKG_VERSION"));
        info.description = "Prometheus http_sd JSON from a URL".into();
        info.wants_hosts = vec!["the host of config.url".into()];
        info
    }

    fn discover(&mut self) -> Result<Vec<TargetGroup>, String> {
        let mut headers = vec![Header {
            name: "Accept".into(),
            value: "application/json".into(),
        }];
        headers.extend(self.config.headers.iter().map(|(n, v)| Header {
            name: n.clone(),
            value: v.clone(),
        }));
        // Prometheus sends this header so endpoints can tell refreshes apart.
        headers.push(Header {
            name: "X-Prometheus-Refresh-Interval-Seconds".into(),
            value: "60".into(),
        });
        let response = ember_plugin_sdk::http::send(&Request {
            method: "GET".into(),
            url: self.config.url.clone(),
            headers,
            body: Vec::new(),
        })?;
        if response.status != 200 {
            return Err(format!(
                "{} returned HTTP {}",
                self.config.url, response.status
            ));
        }
        let content_type = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            .map(|h| h.value.as_str())
            .unwrap_or("");
        if !content_type.starts_with("application/json") {
            return Err(format!("unsupported content type {content_type:?}"));
        }
        let groups: Vec<Group> = serde_json::from_slice(&response.body)
            .map_err(|e| format!("decoding the response: {e}"))?;
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let mut labels = Vec::with_capacity(group.labels.len() + 1);
            for (name, value) in group.labels {
                if !valid_label_name(&name) {
                    return Err(format!("invalid label name {name:?}"));
                }
                labels.push(Label::new(name, value));
            }
            labels.push(Label::new("__meta_url", self.config.url.clone()));
            out.push(TargetGroup {
                targets: group.targets,
                labels,
            });
        }
        Ok(out)
    }
}

ember_plugin_sdk::export_discoverer!(HttpSd);
