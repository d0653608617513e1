//! Delivers alert groups to a Slack-compatible incoming webhook (Slack,
//! Mattermost, Rocket.Chat), one message per group, titled the way
//! Alertmanager's default Slack template titles it.
//!
//! ```yaml
//! config:
//!   url: https://hooks.slack.com/services/T000/B000/XXXX   # required
//!   channel: "#alerts"                                     # optional
//!   username: ember                                        # optional
//! allow_hosts: [hooks.slack.com]
//! ```

use ember_plugin_sdk::{AlertGroup, AlertStatus, Label, Notifier, PluginInfo};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Serialize)]
struct Message {
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
}

struct Slack {
    config: Config,
}

fn get<'a>(labels: &'a [Label], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

/// `[FIRING:2] HighLatency` plus one line per alert.
fn text(group: &AlertGroup) -> String {
    let firing = group
        .alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .count();
    let mut out = match group.status {
        AlertStatus::Firing => format!("[FIRING:{firing}]"),
        AlertStatus::Resolved => "[RESOLVED]".to_owned(),
    };
    if let Some(name) = get(&group.common_labels, "alertname") {
        out.push(' ');
        out.push_str(name);
    }
    for alert in &group.alerts {
        let summary = get(&alert.annotations, "summary")
            .or_else(|| get(&alert.annotations, "description"))
            .unwrap_or("");
        let labels: Vec<String> = alert
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        out.push_str(&format!("\n• {summary} ({})", labels.join(", ")));
    }
    if group.truncated_alerts > 0 {
        out.push_str(&format!("\n… and {} more", group.truncated_alerts));
    }
    out
}

impl Notifier for Slack {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(format!(
                "config: url {:?} must be http:// or https://",
                config.url
            ));
        }
        Ok(Slack { config })
    }

    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new("slack", env!("CARGO_PKG_VERSION"));
        info.description = "Slack-compatible incoming webhook".into();
        info.wants_hosts = vec!["the host of config.url (hooks.slack.com)".into()];
        info
    }

    fn notify(&mut self, group: AlertGroup) -> Result<(), String> {
        let message = Message {
            text: text(&group),
            channel: self.config.channel.clone(),
            username: self.config.username.clone(),
        };
        let body = serde_json::to_vec(&message).map_err(|e| format!("encoding: {e}"))?;
        let response = ember_plugin_sdk::http::post_json(&self.config.url, &[], body)?;
        if !(200..300).contains(&response.status) {
            let text: String = String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect();
            return Err(format!("webhook returned HTTP {}: {text}", response.status));
        }
        Ok(())
    }
}

ember_plugin_sdk::export_notifier!(Slack);
