//! Applying relabel rules to a label set, with Prometheus's semantics for
//! every action. Used for targets (`relabel_configs`), scraped samples
//! (`metric_relabel_configs`), alerts and remote write.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use crate::config::labels::is_valid_label_name;
use crate::config::relabel::{RelabelAction, RelabelConfig};

/// A label set being rewritten: name → value, empty values removed on output.
pub type LabelMap = BTreeMap<String, String>;

/// Applies `rules` in order. Returns `false` when a rule drops the set.
pub fn process(labels: &mut LabelMap, rules: &[RelabelConfig]) -> bool {
    rules.iter().all(|rule| apply(labels, rule))
}

fn source_value(labels: &LabelMap, rule: &RelabelConfig) -> String {
    let parts: Vec<&str> = rule
        .source_labels
        .iter()
        .map(|name| labels.get(name).map_or("", String::as_str))
        .collect();
    parts.join(&rule.separator)
}

fn set(labels: &mut LabelMap, name: String, value: String) {
    if value.is_empty() {
        labels.remove(&name);
    } else {
        labels.insert(name, value);
    }
}

fn apply(labels: &mut LabelMap, rule: &RelabelConfig) -> bool {
    let regex = rule.regex.regex();
    match rule.action {
        RelabelAction::Replace => {
            let value = source_value(labels, rule);
            let Some(caps) = regex.captures(&value) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&rule.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut replaced = String::new();
            caps.expand(&rule.replacement, &mut replaced);
            set(labels, target, replaced);
        }
        RelabelAction::Lowercase => {
            let value = source_value(labels, rule).to_lowercase();
            set(labels, rule.target_label.clone(), value);
        }
        RelabelAction::Uppercase => {
            let value = source_value(labels, rule).to_uppercase();
            set(labels, rule.target_label.clone(), value);
        }
        RelabelAction::Keep => return regex.is_match(&source_value(labels, rule)),
        RelabelAction::Drop => return !regex.is_match(&source_value(labels, rule)),
        RelabelAction::KeepEqual => {
            let target = labels.get(&rule.target_label).map_or("", String::as_str);
            return source_value(labels, rule) == target;
        }
        RelabelAction::DropEqual => {
            let target = labels.get(&rule.target_label).map_or("", String::as_str);
            return source_value(labels, rule) != target;
        }
        RelabelAction::HashMod => {
            // md5 of the value, last 8 bytes big-endian, as Prometheus computes it,
            // so sharding splits targets the same way.
            let digest = Md5::digest(source_value(labels, rule).as_bytes());
            let mut tail = [0u8; 8];
            tail.copy_from_slice(&digest[8..16]);
            let m = u64::from_be_bytes(tail) % rule.modulus.max(1);
            set(labels, rule.target_label.clone(), m.to_string());
        }
        RelabelAction::LabelMap => {
            let mapped: Vec<(String, String)> = labels
                .iter()
                .filter(|(name, _)| regex.is_match(name))
                .map(|(name, value)| {
                    (
                        regex
                            .replace_all(name, rule.replacement.as_str())
                            .into_owned(),
                        value.clone(),
                    )
                })
                .collect();
            for (name, value) in mapped {
                if is_valid_label_name(&name) {
                    set(labels, name, value);
                }
            }
        }
        RelabelAction::LabelDrop => labels.retain(|name, _| !regex.is_match(name)),
        RelabelAction::LabelKeep => labels.retain(|name, _| regex.is_match(name)),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<RelabelConfig> {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replace_with_captures_and_defaults() {
        let mut l = map(&[("__address__", "10.0.0.1:9100"), ("a", "x")]);
        let r = rules(
            "- source_labels: [__address__]\n  regex: '(.*):(\\d+)'\n  target_label: host\n  replacement: '${1}'\n- source_labels: [a, missing]\n  target_label: joined\n",
        );
        assert!(process(&mut l, &r));
        assert_eq!(l.get("host").unwrap(), "10.0.0.1");
        assert_eq!(l.get("joined").unwrap(), "x;");
        // Non-matching regex: unchanged. Empty replacement: label removed.
        let r = rules(
            "- source_labels: [a]\n  regex: nomatch\n  target_label: a\n  replacement: z\n- source_labels: [a]\n  target_label: a\n  replacement: ''\n",
        );
        assert!(process(&mut l, &r));
        assert!(!l.contains_key("a"));
        // Target label from a capture.
        let mut l = map(&[("k", "env")]);
        assert!(process(
            &mut l,
            &rules(
                "- source_labels: [k]\n  regex: '(.+)'\n  target_label: '${1}'\n  replacement: prod\n"
            )
        ));
        assert_eq!(l.get("env").unwrap(), "prod");
    }

    #[test]
    fn keep_drop_and_equal() {
        let l = map(&[("job", "api"), ("a", "1"), ("b", "1"), ("c", "2")]);
        assert!(process(
            &mut l.clone(),
            &rules("- source_labels: [job]\n  action: keep\n  regex: api|web\n")
        ));
        assert!(!process(
            &mut l.clone(),
            &rules("- source_labels: [job]\n  action: drop\n  regex: a.*\n")
        ));
        assert!(process(
            &mut l.clone(),
            &rules("- source_labels: [a]\n  action: keepequal\n  target_label: b\n")
        ));
        assert!(!process(
            &mut l.clone(),
            &rules("- source_labels: [a]\n  action: keepequal\n  target_label: c\n")
        ));
        assert!(!process(
            &mut l.clone(),
            &rules("- source_labels: [a]\n  action: dropequal\n  target_label: b\n")
        ));
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Values computed with Prometheus's algorithm (md5, bytes 8..16 big-endian).
        let mut l = map(&[("__address__", "foo")]);
        assert!(process(
            &mut l,
            &rules(
                "- source_labels: [__address__]\n  action: hashmod\n  modulus: 1000\n  target_label: shard\n"
            )
        ));
        let digest = Md5::digest(b"foo");
        let want = u64::from_be_bytes(digest[8..16].try_into().unwrap()) % 1000;
        assert_eq!(l.get("shard").unwrap(), &want.to_string());
    }

    #[test]
    fn label_map_drop_keep_case() {
        let mut l = map(&[("__meta_env", "prod"), ("__meta_team", "x"), ("job", "API")]);
        let r = rules(
            "- action: labelmap\n  regex: '__meta_(.+)'\n- action: labeldrop\n  regex: '__meta_.*'\n- source_labels: [job]\n  action: lowercase\n  target_label: job\n",
        );
        assert!(process(&mut l, &r));
        assert_eq!(l, map(&[("env", "prod"), ("team", "x"), ("job", "api")]));
        assert!(process(
            &mut l,
            &rules("- action: labelkeep\n  regex: job\n")
        ));
        assert_eq!(l, map(&[("job", "api")]));
        let mut l = map(&[("job", "api")]);
        assert!(process(
            &mut l,
            &rules("- source_labels: [job]\n  action: uppercase\n  target_label: up\n")
        ));
        assert_eq!(l.get("up").unwrap(), "API");
    }
}
