//! The routing tree: which routes (and so receivers and timings) an alert
//! goes to, with Alertmanager's inheritance and `continue` semantics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::matchers::{AlertMatcher, all_match, go_quote, list_to_string};
use crate::config::notifications::{
    DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, GroupBy, RouteConfig,
};

/// A route with every inherited setting resolved.
#[derive(Debug)]
pub struct Route {
    pub receiver: String,
    pub group_by: GroupBy,
    pub matchers: Vec<AlertMatcher>,
    pub continue_: bool,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub routes: Vec<Arc<Route>>,
    /// Alertmanager's route key: the matchers of the path from the root,
    /// `{}/{severity="critical"}`; the first part of group keys.
    pub key: String,
    /// Unique per node (siblings can share a key): the key plus the path of
    /// child indexes.
    pub id: String,
}

impl Route {
    /// The tree for a root route config; Alertmanager's defaults fill what
    /// the root leaves unset.
    pub fn tree(cfg: &RouteConfig) -> Arc<Route> {
        let defaults = Route {
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            matchers: Vec::new(),
            continue_: false,
            group_wait: DEFAULT_GROUP_WAIT.as_duration(),
            group_interval: DEFAULT_GROUP_INTERVAL.as_duration(),
            repeat_interval: DEFAULT_REPEAT_INTERVAL.as_duration(),
            routes: Vec::new(),
            key: String::new(),
            id: String::new(),
        };
        Arc::new(Route::build(cfg, &defaults, None))
    }

    fn build(cfg: &RouteConfig, parent: &Route, path: Option<(&str, usize)>) -> Route {
        let own_key = list_to_string(&cfg.matchers);
        let (key, id) = match path {
            None => (own_key.clone(), "0".to_owned()),
            Some((parent_id, i)) => (
                format!("{}/{own_key}", parent.key),
                format!("{parent_id}/{i}"),
            ),
        };
        let mut route = Route {
            receiver: cfg
                .receiver
                .clone()
                .unwrap_or_else(|| parent.receiver.clone()),
            group_by: cfg
                .group_by
                .clone()
                .unwrap_or_else(|| parent.group_by.clone()),
            matchers: cfg.matchers.clone(),
            continue_: cfg.continue_,
            group_wait: cfg
                .group_wait
                .map_or(parent.group_wait, |d| d.as_duration()),
            group_interval: cfg
                .group_interval
                .map_or(parent.group_interval, |d| d.as_duration()),
            repeat_interval: cfg
                .repeat_interval
                .map_or(parent.repeat_interval, |d| d.as_duration()),
            routes: Vec::new(),
            key,
            id,
        };
        let id = route.id.clone();
        route.routes = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(i, c)| Arc::new(Route::build(c, &route, Some((&id, i)))))
            .collect();
        route
    }

    /// The routes an alert with `labels` is delivered by: the deepest
    /// matching routes, walking siblings until one matches without
    /// `continue`; the node itself when no child matches.
    pub fn matching(self: &Arc<Self>, labels: &BTreeMap<String, String>) -> Vec<Arc<Route>> {
        if !all_match(&self.matchers, labels) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let found = child.matching(labels);
            let matched = !found.is_empty();
            all.extend(found);
            if matched && !child.continue_ {
                break;
            }
        }
        if all.is_empty() {
            all.push(self.clone());
        }
        all
    }

    /// Alertmanager's group key: `<route key>:<group labels>`.
    pub fn group_key(&self, group_labels: &BTreeMap<String, String>) -> String {
        format!("{}:{}", self.key, label_set_string(group_labels))
    }
}

/// A label set as Go's `model.LabelSet.String()` prints it:
/// `{a="1", b="2"}`.
pub fn label_set_string(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tree(yaml: &str) -> Arc<Route> {
        let cfg: RouteConfig = serde_yaml::from_str(yaml).unwrap();
        Route::tree(&cfg)
    }

    const TREE: &str = r#"
receiver: default
group_by: [alertname]
group_wait: 10s
routes:
- match: {team: db}
  receiver: db
  group_interval: 1m
  routes:
  - matchers: ['severity="critical"']
    receiver: db-pager
    group_by: ['...']
- match_re: {severity: "critical|page"}
  receiver: pager
  continue: true
- matchers: ['severity=~"critical|warning"']
  receiver: tickets
  repeat_interval: 1h
"#;

    fn receivers(t: &Arc<Route>, l: &[(&str, &str)]) -> Vec<String> {
        t.matching(&labels(l))
            .iter()
            .map(|r| r.receiver.clone())
            .collect()
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let t = tree(TREE);
        assert_eq!(receivers(&t, &[("alertname", "X")]), ["default"]);
        assert_eq!(receivers(&t, &[("team", "db")]), ["db"]);
        assert_eq!(
            receivers(&t, &[("team", "db"), ("severity", "critical")]),
            ["db-pager"]
        );
        // continue: the pager route matches and the walk goes on.
        assert_eq!(
            receivers(&t, &[("severity", "critical")]),
            ["pager", "tickets"]
        );
        assert_eq!(receivers(&t, &[("severity", "warning")]), ["tickets"]);
        // Regexes are anchored.
        assert_eq!(receivers(&t, &[("severity", "critical2")]), ["default"]);
    }

    #[test]
    fn settings_are_inherited() {
        let t = tree(TREE);
        assert_eq!(t.group_wait, Duration::from_secs(10));
        assert_eq!(t.group_interval, Duration::from_secs(300));
        assert_eq!(t.repeat_interval, Duration::from_secs(4 * 3600));
        let db = &t.routes[0];
        assert_eq!(db.group_wait, Duration::from_secs(10));
        assert_eq!(db.group_interval, Duration::from_secs(60));
        assert_eq!(db.group_by, GroupBy::Labels(vec!["alertname".into()]));
        let pager = &db.routes[0];
        assert_eq!(pager.group_interval, Duration::from_secs(60));
        assert_eq!(pager.group_by, GroupBy::All);
        assert_eq!(t.routes[2].repeat_interval, Duration::from_secs(3600));
        assert_eq!(t.routes[2].receiver, "tickets");
    }

    #[test]
    fn group_keys_as_alertmanager_writes_them() {
        let t = tree(TREE);
        let l = labels(&[("team", "db"), ("severity", "critical"), ("alertname", "A")]);
        let r = &t.matching(&l)[0];
        let g = r.group_by.group_labels(&l);
        assert_eq!(g.len(), 3);
        assert_eq!(
            r.group_key(&g),
            r#"{}/{team="db"}/{severity="critical"}:{alertname="A", severity="critical", team="db"}"#
        );
        let g = t.group_by.group_labels(&l);
        assert_eq!(t.group_key(&g), r#"{}:{alertname="A"}"#);
        // Grouping on a label the alert lacks leaves it out.
        let g = t.group_by.group_labels(&labels(&[("x", "1")]));
        assert_eq!(t.group_key(&g), "{}:{}");
    }
}
