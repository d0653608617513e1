//! Inhibition: a firing alert matching a rule's source matchers mutes the
//! alerts matching its target matchers that carry the same values of the
//! rule's `equal` labels, as in Alertmanager.

use std::collections::BTreeMap;

use super::matchers::all_match;
use crate::config::notifications::InhibitRuleConfig;

/// An alert as inhibition sees it.
pub struct Candidate<'a> {
    pub fingerprint: u64,
    pub labels: &'a BTreeMap<String, String>,
}

/// The fingerprint of a firing alert that inhibits `target`, if any.
/// `firing` are the firing alerts (silenced ones included: a silenced source
/// still inhibits, as in Alertmanager).
pub fn inhibited_by(
    rules: &[InhibitRuleConfig],
    firing: &[Candidate<'_>],
    target: &Candidate<'_>,
) -> Option<u64> {
    for rule in rules {
        if !all_match(&rule.target_matchers, target.labels) {
            continue;
        }
        // An alert matching both sides must not inhibit itself or its
        // peers: sources that are also targets are skipped then.
        let two_sided = all_match(&rule.source_matchers, target.labels);
        for source in firing {
            if source.fingerprint == target.fingerprint
                || !all_match(&rule.source_matchers, source.labels)
                || (two_sided && all_match(&rule.target_matchers, source.labels))
            {
                continue;
            }
            let equal = rule
                .equal
                .iter()
                .all(|n| source.labels.get(n) == target.labels.get(n));
            if equal {
                return Some(source.fingerprint);
            }
        }
    }
    None
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

    fn rules(yaml: &str) -> Vec<InhibitRuleConfig> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn critical_mutes_warning_with_equal_labels() {
        let r = rules(
            "- source_matchers: [severity=critical]\n  target_matchers: [severity=warning]\n  equal: [alertname, instance]\n",
        );
        let crit = labels(&[
            ("alertname", "Up"),
            ("instance", "a"),
            ("severity", "critical"),
        ]);
        let warn_a = labels(&[
            ("alertname", "Up"),
            ("instance", "a"),
            ("severity", "warning"),
        ]);
        let warn_b = labels(&[
            ("alertname", "Up"),
            ("instance", "b"),
            ("severity", "warning"),
        ]);
        let firing = [Candidate {
            fingerprint: 1,
            labels: &crit,
        }];
        let t = |fp, l| Candidate {
            fingerprint: fp,
            labels: l,
        };
        assert_eq!(inhibited_by(&r, &firing, &t(2, &warn_a)), Some(1));
        assert_eq!(inhibited_by(&r, &firing, &t(3, &warn_b)), None);
        // The source is not a target.
        assert_eq!(inhibited_by(&r, &firing, &t(1, &crit)), None);
        // No source firing, nothing muted.
        assert_eq!(inhibited_by(&r, &[], &t(2, &warn_a)), None);
    }

    #[test]
    fn missing_equal_labels_are_equal_and_legacy_matchers_work() {
        let r = rules(
            "- source_match: {alertname: NodeDown}\n  target_match_re: {alertname: '.*'}\n  equal: [zone]\n",
        );
        let down = labels(&[("alertname", "NodeDown")]);
        let other = labels(&[("alertname", "DiskFull")]);
        let zoned = labels(&[("alertname", "DiskFull"), ("zone", "eu")]);
        let firing = [Candidate {
            fingerprint: 1,
            labels: &down,
        }];
        let t = |fp, l| Candidate {
            fingerprint: fp,
            labels: l,
        };
        assert_eq!(inhibited_by(&r, &firing, &t(2, &other)), Some(1));
        assert_eq!(inhibited_by(&r, &firing, &t(3, &zoned)), None);
        // NodeDown matches both sides: it does not mute itself, and another
        // NodeDown (a two-sided match) does not mute it either.
        let down2 = labels(&[("alertname", "NodeDown"), ("x", "2")]);
        let both = [
            Candidate {
                fingerprint: 1,
                labels: &down,
            },
            Candidate {
                fingerprint: 4,
                labels: &down2,
            },
        ];
        assert_eq!(inhibited_by(&r, &both, &t(1, &down)), None);
    }
}
