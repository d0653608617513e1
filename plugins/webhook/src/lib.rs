//! Delivers alert groups as Alertmanager's webhook payload, version 4, to
//! one URL. Config:
//!
//! ```yaml
//! config:
//!   url: http://hooks.example:8080/alerts   # required
//!   headers: {Authorization: "Bearer ..."}   # optional
//!   max_alerts: 0                            # 0 = all; more are truncated
//! allow_hosts: [hooks.example:8080]          # the host must be allowed
//! ```

use std::collections::BTreeMap;

use ember_plugin_sdk::{Alert, AlertGroup, AlertStatus, Label, Notifier, PluginInfo};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    max_alerts: usize,
}

struct Webhook {
    config: Config,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    version: &'static str,
    group_key: &'a str,
    truncated_alerts: usize,
    status: &'static str,
    receiver: &'a str,
    group_labels: BTreeMap<&'a str, &'a str>,
    common_labels: BTreeMap<&'a str, &'a str>,
    common_annotations: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    alerts: Vec<AlertJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertJson<'a> {
    status: &'static str,
    labels: BTreeMap<&'a str, &'a str>,
    annotations: BTreeMap<&'a str, &'a str>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: &'a str,
}

fn map(labels: &[Label]) -> BTreeMap<&str, &str> {
    labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

fn status(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    }
}

/// RFC 3339 in UTC with milliseconds, from milliseconds since the epoch.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn alert_json(a: &Alert) -> AlertJson<'_> {
    AlertJson {
        status: status(a.status),
        labels: map(&a.labels),
        annotations: map(&a.annotations),
        starts_at: rfc3339(a.starts_at_ms),
        // Alertmanager sends Go's zero time for alerts without an end.
        ends_at: a
            .ends_at_ms
            .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339),
        generator_url: &a.generator_url,
        fingerprint: &a.fingerprint,
    }
}

impl Notifier for Webhook {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(format!(
                "config: url {:?} must be http:// or https://",
                config.url
            ));
        }
        Ok(Webhook { config })
    }

    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new("webhook", env!("CARGO_PKG_VERSION"));
        info.description = "Alertmanager webhook payload (version 4) to a URL".into();
        info.wants_hosts = vec!["the host of config.url".into()];
        info
    }

    fn notify(&mut self, group: AlertGroup) -> Result<(), String> {
        let max = self.config.max_alerts;
        let keep = if max == 0 {
            group.alerts.len()
        } else {
            group.alerts.len().min(max)
        };
        let payload = Payload {
            version: "4",
            group_key: &group.group_key,
            truncated_alerts: group.truncated_alerts as usize + (group.alerts.len() - keep),
            status: status(group.status),
            receiver: &group.receiver,
            group_labels: map(&group.group_labels),
            common_labels: map(&group.common_labels),
            common_annotations: map(&group.common_annotations),
            external_url: &group.external_url,
            alerts: group.alerts[..keep].iter().map(alert_json).collect(),
        };
        let body = serde_json::to_vec(&payload).map_err(|e| format!("encoding: {e}"))?;
        let headers: Vec<(String, String)> = self.config.headers.clone().into_iter().collect();
        let response = ember_plugin_sdk::http::post_json(&self.config.url, &headers, body)?;
        if !(200..300).contains(&response.status) {
            let text = String::from_utf8_lossy(&response.body);
            let text: String = text.chars().take(200).collect();
            return Err(format!(
                "{} returned HTTP {}: {text}",
                self.config.url, response.status
            ));
        }
        Ok(())
    }
}

ember_plugin_sdk::export_notifier!(Webhook);

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
