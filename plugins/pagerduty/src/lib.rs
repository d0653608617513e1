//! Delivers alert groups to PagerDuty's Events API v2: a `trigger` event
//! while the group fires, `resolve` once it is resolved, deduplicated by the
//! group key as Alertmanager does.
//!
//! ```yaml
//! config:
//!   routing_key: "R0UT1NGKEY..."       # required (integration key)
//!   severity: error                    # critical, error, warning or info
//!   url: https://events.pagerduty.com/v2/enqueue   # default
//! allow_hosts: [events.pagerduty.com]
//! ```

use std::collections::BTreeMap;

use ember_plugin_sdk::{AlertGroup, AlertStatus, Label, Notifier, PluginInfo};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    routing_key: String,
    #[serde(default = "default_severity")]
    severity: String,
    #[serde(default = "default_url")]
    url: String,
}

fn default_severity() -> String {
    "error".into()
}

fn default_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

#[derive(Serialize)]
struct Event<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
    client: &'static str,
    client_url: &'a str,
}

#[derive(Serialize)]
struct Payload<'a> {
    summary: String,
    source: &'a str,
    severity: &'a str,
    custom_details: BTreeMap<&'a str, String>,
}

struct PagerDuty {
    config: Config,
}

fn get<'a>(labels: &'a [Label], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

impl Notifier for PagerDuty {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        if config.routing_key.is_empty() {
            return Err("config: routing_key is required".into());
        }
        if !matches!(
            config.severity.as_str(),
            "critical" | "error" | "warning" | "info"
        ) {
            return Err(format!(
                "config: severity {:?} must be critical, error, warning or info",
                config.severity
            ));
        }
        Ok(PagerDuty { config })
    }

    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new("pagerduty", env!("CARGO_PKG_VERSION"));
        info.description = "PagerDuty Events API v2".into();
        info.wants_hosts = vec!["events.pagerduty.com".into()];
        info
    }

    fn notify(&mut self, group: AlertGroup) -> Result<(), String> {
        let firing = group
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count();
        let resolved = group.status == AlertStatus::Resolved;
        let alertname = get(&group.common_labels, "alertname").unwrap_or("alerts");
        let summary = get(&group.common_annotations, "summary")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("[FIRING:{firing}] {alertname}"));
        // PagerDuty caps the summary at 1024 characters.
        let summary: String = summary.chars().take(1024).collect();
        let mut details = BTreeMap::new();
        details.insert("firing", firing.to_string());
        details.insert("num_alerts", group.alerts.len().to_string());
        for label in &group.common_labels {
            details.insert(label.name.as_str(), label.value.clone());
        }
        let event = Event {
            routing_key: &self.config.routing_key,
            event_action: if resolved { "resolve" } else { "trigger" },
            dedup_key: group.group_key.chars().take(255).collect(),
            payload: (!resolved).then(|| Payload {
                summary,
                source: "ember",
                severity: &self.config.severity,
                custom_details: details,
            }),
            client: "Ember",
            client_url: &group.external_url,
        };
        let body = serde_json::to_vec(&event).map_err(|e| format!("encoding: {e}"))?;
        let response = ember_plugin_sdk::http::post_json(&self.config.url, &[], body)?;
        if !(200..300).contains(&response.status) {
            let text: String = String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect();
            return Err(format!(
                "PagerDuty returned HTTP {}: {text}",
                response.status
            ));
        }
        Ok(())
    }
}

ember_plugin_sdk::export_notifier!(PagerDuty);
