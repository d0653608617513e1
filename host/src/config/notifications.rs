//! The `notifications` section: Ember's built-in Alertmanager. Its keys are
//! those of `alertmanager.yml` (`route`, `inhibit_rules`, `receivers`, and
//! `global.resolve_timeout`), so an existing file pastes in; receivers
//! deliver through notifier plugins (`plugin_configs`), and Alertmanager's
//! `webhook_configs`, `slack_configs` and `pagerduty_configs` are served by
//! the shipped `webhook`, `slack` and `pagerduty` plugins.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::duration::PromDuration;
use super::labels::nullable;
use crate::alerting::matchers::{AlertMatcher, parse_matchers, valid_label_name};
use crate::model::matcher::MatchOp;
use crate::plugins::PluginUse;

/// Alertmanager's defaults for the root route.
pub const DEFAULT_GROUP_WAIT: PromDuration = PromDuration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: PromDuration = PromDuration::from_secs(5 * 60);
pub const DEFAULT_REPEAT_INTERVAL: PromDuration = PromDuration::from_secs(4 * 3600);

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NotificationsConfig {
    pub resolve_timeout: PromDuration,
    pub route: RouteConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    pub receivers: Vec<ReceiverConfig>,
}

/// Receiver kinds of `alertmanager.yml` that Ember has no built-in
/// integration for; they get a specific message.
const UNSUPPORTED_RECEIVERS: &[&str] = &[
    "email_configs",
    "opsgenie_configs",
    "victorops_configs",
    "pushover_configs",
    "wechat_configs",
    "sns_configs",
    "telegram_configs",
    "webex_configs",
    "discord_configs",
    "msteams_configs",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "NotificationsConfig")]
struct RawNotifications {
    #[serde(default, deserialize_with = "nullable")]
    global: RawGlobal,
    route: Option<RouteConfig>,
    #[serde(default, deserialize_with = "nullable")]
    inhibit_rules: Vec<InhibitRuleConfig>,
    #[serde(default, deserialize_with = "nullable")]
    receivers: Vec<ReceiverConfig>,
    templates: Option<serde_yaml::Value>,
    time_intervals: Option<serde_yaml::Value>,
    mute_time_intervals: Option<serde_yaml::Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename = "GlobalConfig")]
struct RawGlobal {
    resolve_timeout: Option<PromDuration>,
}

impl<'de> Deserialize<'de> for NotificationsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawNotifications::deserialize(d)?;
        if raw.templates.is_some() {
            return Err(D::Error::custom(
                "templates are not supported: notifier plugins format their own messages",
            ));
        }
        if raw.time_intervals.is_some() || raw.mute_time_intervals.is_some() {
            return Err(D::Error::custom(
                "time_intervals and mute_time_intervals are not supported by Ember's built-in routing",
            ));
        }
        let route = raw
            .route
            .ok_or_else(|| D::Error::custom("no route provided in config"))?;
        let config = NotificationsConfig {
            resolve_timeout: raw
                .global
                .resolve_timeout
                .unwrap_or(PromDuration::from_secs(300)),
            route,
            inhibit_rules: raw.inhibit_rules,
            receivers: raw.receivers,
        };
        config.validate().map_err(D::Error::custom)?;
        Ok(config)
    }
}

impl NotificationsConfig {
    fn validate(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for r in &self.receivers {
            if !names.insert(r.name.as_str()) {
                return Err(format!(
                    "notification config name {:?} is not unique",
                    r.name
                ));
            }
        }
        let root = &self.route;
        if root.receiver.is_none() {
            return Err("root route must specify a default receiver".into());
        }
        if !root.matchers.is_empty() {
            return Err("root route must not have any matchers".into());
        }
        if root.continue_ {
            return Err("cannot have continue in root route".into());
        }
        check_receivers(root, &names, "route")
    }

    /// The receiver named `name`.
    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

fn check_receivers(route: &RouteConfig, names: &HashSet<&str>, path: &str) -> Result<(), String> {
    if let Some(r) = &route.receiver
        && !names.contains(r.as_str())
    {
        return Err(format!("{path}: undefined receiver {r:?} used in route"));
    }
    for (i, child) in route.routes.iter().enumerate() {
        check_receivers(child, names, &format!("{path}.routes[{i}]"))?;
    }
    Ok(())
}

/// `group_by`: label names, or `...` for every label.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum GroupBy {
    All,
    Labels(Vec<String>),
}

impl GroupBy {
    /// The labels of `alert` the group is keyed on.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match self {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// One node of the routing tree; unset fields are inherited from the parent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
    /// `match`, `match_re` and `matchers` together.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<AlertMatcher>,
    #[serde(rename = "continue")]
    pub continue_: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<PromDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<PromDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<PromDuration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Route")]
struct RawRoute {
    receiver: Option<String>,
    group_by: Option<Vec<String>>,
    #[serde(rename = "match", default, deserialize_with = "nullable")]
    match_: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    match_re: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    matchers: Vec<String>,
    #[serde(rename = "continue", default)]
    continue_: bool,
    group_wait: Option<PromDuration>,
    group_interval: Option<PromDuration>,
    repeat_interval: Option<PromDuration>,
    #[serde(default, deserialize_with = "nullable")]
    routes: Vec<RouteConfig>,
    mute_time_intervals: Option<serde_yaml::Value>,
    active_time_intervals: Option<serde_yaml::Value>,
}

impl<'de> Deserialize<'de> for RouteConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawRoute::deserialize(d)?;
        if raw.mute_time_intervals.is_some() || raw.active_time_intervals.is_some() {
            return Err(D::Error::custom(
                "mute_time_intervals and active_time_intervals are not supported by Ember's built-in routing",
            ));
        }
        let group_by = match raw.group_by {
            None => None,
            Some(names) => Some(parse_group_by(names).map_err(D::Error::custom)?),
        };
        let matchers =
            legacy_matchers(&raw.match_, &raw.match_re, &raw.matchers).map_err(D::Error::custom)?;
        for (what, d) in [
            ("group_interval", raw.group_interval),
            ("repeat_interval", raw.repeat_interval),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(D::Error::custom(format!("{what} cannot be zero")));
            }
        }
        Ok(RouteConfig {
            receiver: raw.receiver.filter(|r| !r.is_empty()),
            group_by,
            matchers,
            continue_: raw.continue_,
            group_wait: raw.group_wait,
            group_interval: raw.group_interval,
            repeat_interval: raw.repeat_interval,
            routes: raw.routes,
        })
    }
}

fn parse_group_by(names: Vec<String>) -> Result<GroupBy, String> {
    if names.iter().any(|n| n == "...") {
        if names.len() > 1 {
            return Err(
                "cannot have wildcard group_by (`...`) and other labels at the same time".into(),
            );
        }
        return Ok(GroupBy::All);
    }
    let mut seen = HashSet::new();
    for n in &names {
        if !valid_label_name(n) {
            return Err(format!("invalid label name {n:?} in group_by list"));
        }
        if !seen.insert(n) {
            return Err(format!("duplicated label {n:?} in group_by"));
        }
    }
    Ok(GroupBy::Labels(names))
}

/// `match` (equality), `match_re` (anchored regexes) and `matchers`
/// (Alertmanager matcher strings) as one list, sorted as Alertmanager
/// sorts them so route keys agree.
fn legacy_matchers(
    eq: &BTreeMap<String, String>,
    re: &BTreeMap<String, String>,
    matchers: &[String],
) -> Result<Vec<AlertMatcher>, String> {
    let mut out = Vec::new();
    for (k, v) in eq {
        out.push(AlertMatcher::new(MatchOp::Equal, k, v).map_err(|e| format!("match: {e}"))?);
    }
    for (k, v) in re {
        out.push(
            AlertMatcher::new(MatchOp::RegexMatch, k, v).map_err(|e| format!("match_re: {e}"))?,
        );
    }
    for m in matchers {
        out.extend(parse_matchers(m).map_err(|e| format!("matchers: {e}"))?);
    }
    out.sort_by(|a, b| {
        (a.name(), a.value(), a.op() as u8).cmp(&(b.name(), b.value(), b.op() as u8))
    });
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InhibitRuleConfig {
    pub source_matchers: Vec<AlertMatcher>,
    pub target_matchers: Vec<AlertMatcher>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub equal: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "InhibitRule")]
struct RawInhibitRule {
    #[serde(default, deserialize_with = "nullable")]
    source_match: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    source_match_re: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    source_matchers: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    target_match: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    target_match_re: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    target_matchers: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    equal: Vec<String>,
}

impl<'de> Deserialize<'de> for InhibitRuleConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawInhibitRule::deserialize(d)?;
        let source_matchers = legacy_matchers(
            &raw.source_match,
            &raw.source_match_re,
            &raw.source_matchers,
        )
        .map_err(|e| D::Error::custom(format!("source: {e}")))?;
        let target_matchers = legacy_matchers(
            &raw.target_match,
            &raw.target_match_re,
            &raw.target_matchers,
        )
        .map_err(|e| D::Error::custom(format!("target: {e}")))?;
        for n in &raw.equal {
            if !valid_label_name(n) {
                return Err(D::Error::custom(format!(
                    "invalid label name {n:?} in equal list"
                )));
            }
        }
        Ok(InhibitRuleConfig {
            source_matchers,
            target_matchers,
            equal: raw.equal,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReceiverConfig {
    pub name: String,
    /// Every integration of the receiver, `webhook_configs` included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plugin_configs: Vec<NotifierPluginConfig>,
}

/// A notifier plugin with its config and grants, as a receiver uses it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierPluginConfig {
    /// The plugin's name (its `.wasm` file's stem in the plugin directory).
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "crate::plugins::config::serialize_masked_with_urls"
    )]
    pub config: BTreeMap<String, serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<PromDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<usize>,
    /// Whether resolved alerts are delivered (Alertmanager's default: yes).
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

fn yes() -> bool {
    true
}

impl NotifierPluginConfig {
    /// The plugin use the plugin host instantiates.
    pub fn plugin_use(&self) -> PluginUse {
        PluginUse {
            name: self.name.clone(),
            config: self.config.clone(),
            allow_hosts: self.allow_hosts.clone(),
            timeout: self.timeout,
            memory_limit_bytes: self.memory_limit_bytes,
            max_response_bytes: self.max_response_bytes,
            ..PluginUse::default()
        }
    }
}

/// Alertmanager's `webhook_configs` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhookConfig {
    url: String,
    #[serde(default = "yes")]
    send_resolved: bool,
    #[serde(default)]
    max_alerts: u64,
}

/// Alertmanager's `slack_configs` entry, as far as the `slack` plugin goes
/// (message templates are the plugin's own).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlackConfig {
    api_url: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    username: Option<String>,
    /// Alertmanager's default for Slack is false.
    #[serde(default)]
    send_resolved: bool,
}

/// Alertmanager's `pagerduty_configs` entry (Events API v2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPagerdutyConfig {
    routing_key: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default = "yes")]
    send_resolved: bool,
}

const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A shipped plugin standing in for an Alertmanager integration, allowed to
/// reach the host of `url`.
fn shipped(
    plugin: &str,
    url: &str,
    config: BTreeMap<String, serde_yaml::Value>,
    send_resolved: bool,
) -> Result<NotifierPluginConfig, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("url {url:?} must be http or https"));
    }
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(format!("url {url:?} has no host")),
    };
    Ok(NotifierPluginConfig {
        name: plugin.into(),
        config,
        allow_hosts: vec![host],
        timeout: None,
        memory_limit_bytes: None,
        max_response_bytes: None,
        send_resolved,
    })
}

// No `deny_unknown_fields`: serde cannot combine it with `flatten`, and
// unknown keys are caught in `other` with a better message anyway.
#[derive(Deserialize)]
#[serde(rename = "Receiver")]
struct RawReceiver {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    plugin_configs: Vec<NotifierPluginConfig>,
    #[serde(default, deserialize_with = "nullable")]
    webhook_configs: Vec<RawWebhookConfig>,
    #[serde(default, deserialize_with = "nullable")]
    slack_configs: Vec<RawSlackConfig>,
    #[serde(default, deserialize_with = "nullable")]
    pagerduty_configs: Vec<RawPagerdutyConfig>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml::Value>,
}

impl<'de> Deserialize<'de> for ReceiverConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawReceiver::deserialize(d)?;
        let name = raw
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| D::Error::custom("missing name in receiver"))?;
        if let Some(key) = raw.other.keys().next() {
            return Err(D::Error::custom(
                if UNSUPPORTED_RECEIVERS.contains(&key.as_str()) {
                    format!(
                        "receiver {name:?}: {key} are not built into Ember; deliver with a notifier plugin (plugin_configs), webhook_configs, slack_configs or pagerduty_configs"
                    )
                } else {
                    format!(
                        "receiver {name:?}: unknown field `{key}`, expected one of `name`, `plugin_configs`, `webhook_configs`, `slack_configs`, `pagerduty_configs`"
                    )
                },
            ));
        }
        let mut plugin_configs = raw.plugin_configs;
        for p in &plugin_configs {
            p.plugin_use()
                .validate()
                .map_err(|e| D::Error::custom(format!("receiver {name:?}: {e}")))?;
        }
        let in_receiver = |e: String| D::Error::custom(format!("receiver {name:?}: {e}"));
        let text = |v: &str| serde_yaml::Value::from(v.to_owned());
        for w in raw.webhook_configs {
            let mut config = BTreeMap::from([("url".to_owned(), text(&w.url))]);
            if w.max_alerts > 0 {
                config.insert("max_alerts".into(), serde_yaml::Value::from(w.max_alerts));
            }
            plugin_configs.push(
                shipped("webhook", &w.url, config, w.send_resolved)
                    .map_err(|e| in_receiver(format!("webhook_configs: {e}")))?,
            );
        }
        for c in raw.slack_configs {
            let mut config = BTreeMap::from([("url".to_owned(), text(&c.api_url))]);
            if let Some(ch) = &c.channel {
                config.insert("channel".into(), text(ch));
            }
            if let Some(u) = &c.username {
                config.insert("username".into(), text(u));
            }
            plugin_configs.push(
                shipped("slack", &c.api_url, config, c.send_resolved)
                    .map_err(|e| in_receiver(format!("slack_configs: {e}")))?,
            );
        }
        for c in raw.pagerduty_configs {
            let url = c.url.unwrap_or_else(|| PAGERDUTY_URL.to_owned());
            let mut config = BTreeMap::from([
                ("routing_key".to_owned(), text(&c.routing_key)),
                ("url".to_owned(), text(&url)),
            ]);
            if let Some(sev) = &c.severity {
                config.insert("severity".into(), text(sev));
            }
            plugin_configs.push(
                shipped("pagerduty", &url, config, c.send_resolved)
                    .map_err(|e| in_receiver(format!("pagerduty_configs: {e}")))?,
            );
        }
        Ok(ReceiverConfig {
            name,
            plugin_configs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotificationsConfig, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn alertmanager_yml_pastes_in() {
        let c = parse(
            r#"
global: {resolve_timeout: 1m}
route:
  receiver: default
  group_by: [alertname, cluster]
  routes:
  - match: {severity: critical}
    receiver: pager
    continue: true
  - match_re: {service: "^(foo|bar)$"}
    matchers: ['team="x"']
    receiver: default
    group_by: ['...']
inhibit_rules:
- source_match: {severity: critical}
  target_matchers: [severity="warning"]
  equal: [alertname]
receivers:
- name: default
  webhook_configs: [{url: "http://127.0.0.1:5001/hook", send_resolved: false}]
- name: pager
  plugin_configs:
  - name: pagerduty
    config: {routing_key: abc}
    allow_hosts: [events.pagerduty.com]
- name: chat
  slack_configs: [{api_url: "https://hooks.slack.com/services/X", channel: ops}]
  pagerduty_configs: [{routing_key: k}]
"#,
        )
        .unwrap();
        assert_eq!(c.resolve_timeout, PromDuration::from_secs(60));
        assert_eq!(c.route.routes.len(), 2);
        assert!(c.route.routes[0].continue_);
        assert_eq!(c.route.routes[1].group_by, Some(GroupBy::All));
        assert_eq!(c.route.routes[1].matchers.len(), 2);
        let hook = &c.receivers[0].plugin_configs[0];
        assert_eq!(hook.name, "webhook");
        assert_eq!(hook.allow_hosts, ["127.0.0.1:5001"]);
        assert!(!hook.send_resolved);
        assert_eq!(
            c.inhibit_rules[0].source_matchers[0].to_string(),
            "severity=\"critical\""
        );
        let chat = &c.receivers[2].plugin_configs;
        assert_eq!(chat[0].name, "slack");
        assert_eq!(chat[0].allow_hosts, ["hooks.slack.com"]);
        assert_eq!(chat[0].config["channel"], "ops");
        assert!(!chat[0].send_resolved, "Alertmanager's Slack default");
        assert_eq!(chat[1].name, "pagerduty");
        assert_eq!(chat[1].allow_hosts, ["events.pagerduty.com"]);
        assert!(chat[1].send_resolved);
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            (
                "route: {}\nreceivers: []\n",
                "root route must specify a default receiver",
            ),
            ("receivers: [{name: a}]\n", "no route provided"),
            (
                "route: {receiver: a, routes: [{receiver: b}]}\nreceivers: [{name: a}]\n",
                "route.routes[0]: undefined receiver \"b\"",
            ),
            (
                "route: {receiver: a, group_by: ['...', x]}\nreceivers: [{name: a}]\n",
                "wildcard group_by",
            ),
            (
                "route: {receiver: a}\nreceivers: [{name: a}, {name: a}]\n",
                "not unique",
            ),
            (
                "route: {receiver: a}\nreceivers: [{name: a, email_configs: [{to: x}]}]\n",
                "email_configs are not built into Ember",
            ),
            (
                "route: {receiver: a, routes: [{matchers: ['a=~\"(\"']}]}\nreceivers: [{name: a}]\n",
                "invalid regular expression",
            ),
            (
                "route: {receiver: a, repeat_interval: 0s}\nreceivers: [{name: a}]\n",
                "repeat_interval cannot be zero",
            ),
            (
                "route: {receiver: a}\ntemplates: ['*.tmpl']\nreceivers: [{name: a}]\n",
                "templates are not supported",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
