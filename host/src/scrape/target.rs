//! From discovered labels to a scrape target, as Prometheus derives it:
//! job defaults, `relabel_configs`, `__address__` checks, `instance`, and the
//! scrape URL from `__scheme__`, `__metrics_path__` and `__param_*`.

use std::time::Duration;

use crate::config::ScrapeConfig;
use crate::config::duration::PromDuration;
use crate::discovery::target::check_address;
use crate::model::Labels;
use crate::model::relabel::{self, LabelMap};

/// A target to scrape, or why it was dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The labels every scraped series gets (no `__`-prefixed ones).
    pub labels: Labels,
    /// What discovery reported, before relabeling (for the targets page).
    pub discovered: LabelMap,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Active(Target),
    /// Relabeling dropped it: shown as a dropped target, not an error.
    Dropped {
        discovered: LabelMap,
    },
    Invalid {
        discovered: LabelMap,
        error: String,
    },
}

pub fn populate(group: &LabelMap, address_labels: &LabelMap, cfg: &ScrapeConfig) -> Outcome {
    let mut labels: LabelMap = group.clone();
    labels.extend(address_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let defaults = [
        ("job", cfg.job_name.clone()),
        ("__scrape_interval__", cfg.scrape_interval.to_string()),
        ("__scrape_timeout__", cfg.scrape_timeout.to_string()),
        ("__metrics_path__", cfg.metrics_path.clone()),
        ("__scheme__", format!("{:?}", cfg.scheme).to_lowercase()),
    ];
    for (k, v) in defaults {
        labels.entry(k.to_owned()).or_insert(v);
    }
    for (k, values) in &cfg.params {
        if let Some(first) = values.first() {
            labels
                .entry(format!("__param_{k}"))
                .or_insert_with(|| first.clone());
        }
    }
    let discovered = labels.clone();
    if !relabel::process(&mut labels, &cfg.relabel_configs) {
        return Outcome::Dropped { discovered };
    }
    let invalid = |error: String| Outcome::Invalid {
        discovered: discovered.clone(),
        error,
    };
    let address = labels.get("__address__").cloned().unwrap_or_default();
    if let Err(e) = check_address(&address) {
        return invalid(e);
    }
    let duration = |name: &str| -> Result<Duration, String> {
        let v = labels.get(name).cloned().unwrap_or_default();
        v.parse::<PromDuration>()
            .map(Duration::from)
            .map_err(|e| format!("{name} {v:?}: {e}"))
    };
    let interval = match duration("__scrape_interval__") {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return invalid("scrape interval cannot be 0".into()),
        Err(e) => return invalid(e),
    };
    let timeout = match duration("__scrape_timeout__") {
        Ok(d) if !d.is_zero() && d <= interval => d,
        Ok(d) if d.is_zero() => return invalid("scrape timeout cannot be 0".into()),
        Ok(_) => return invalid("scrape timeout cannot be greater than scrape interval".into()),
        Err(e) => return invalid(e),
    };
    let scheme = labels
        .get("__scheme__")
        .cloned()
        .unwrap_or_else(|| "http".into());
    let path = labels
        .get("__metrics_path__")
        .cloned()
        .unwrap_or_else(|| "/metrics".into());
    let mut query: Vec<(String, String)> = Vec::new();
    for (k, values) in &cfg.params {
        // A relabeled __param_ overrides the first value; the others stay.
        let mut values = values.clone();
        if let Some(v) = labels.get(&format!("__param_{k}")) {
            values[0] = v.clone();
        }
        query.extend(values.into_iter().map(|v| (k.clone(), v)));
    }
    for (k, v) in &labels {
        if let Some(name) = k.strip_prefix("__param_")
            && !cfg.params.contains_key(name)
        {
            query.push((name.to_owned(), v.clone()));
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    if !query.is_empty() {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        url.push(if path.contains('?') { '&' } else { '?' });
        url.push_str(&q.join("&"));
    }
    if !labels.contains_key("instance") {
        labels.insert("instance".into(), address.clone());
    }
    labels.retain(|k, _| !k.starts_with("__"));
    let final_labels = match Labels::from_pairs(labels.iter()) {
        Ok(l) => l,
        Err(e) => return invalid(e.to_string()),
    };
    Outcome::Active(Target {
        labels: final_labels,
        discovered,
        url,
        interval,
        timeout,
    })
}

/// Percent-encoding for query components.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn job(yaml: &str) -> ScrapeConfig {
        let cfg = Config::parse(yaml, std::path::Path::new("t.yml")).unwrap();
        cfg.scrape_configs[0].clone()
    }

    fn map(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_instance_and_url() {
        let cfg = job(
            "scrape_configs:\n- job_name: node\n  scrape_interval: 15s\n  params: {module: [http_2xx]}\n",
        );
        let Outcome::Active(t) = populate(
            &map(&[("env", "prod")]),
            &map(&[("__address__", "h:9100")]),
            &cfg,
        ) else {
            panic!()
        };
        assert_eq!(
            t.labels,
            Labels::from_pairs([("instance", "h:9100"), ("job", "node"), ("env", "prod")]).unwrap()
        );
        assert_eq!(t.url, "http://h:9100/metrics?module=http_2xx");
        assert_eq!(
            (t.interval, t.timeout),
            (Duration::from_secs(15), Duration::from_secs(10))
        );
        assert_eq!(
            t.discovered.get("__scheme__").map(String::as_str),
            Some("http")
        );
    }

    #[test]
    fn relabeling_drops_rewrites_and_validates() {
        let cfg = job(
            "scrape_configs:\n- job_name: bb\n  relabel_configs:\n  - {source_labels: [__address__], target_label: __param_target}\n  - {source_labels: [__param_target], target_label: instance}\n  - {target_label: __address__, replacement: 'prober:9115'}\n  - {source_labels: [skip], regex: 'yes', action: drop}\n",
        );
        let Outcome::Active(t) = populate(
            &LabelMap::new(),
            &map(&[("__address__", "example.org")]),
            &cfg,
        ) else {
            panic!()
        };
        assert_eq!(t.url, "http://prober:9115/metrics?target=example.org");
        assert_eq!(t.labels.get("instance"), Some("example.org"));
        assert!(matches!(
            populate(
                &map(&[("skip", "yes")]),
                &map(&[("__address__", "a:1")]),
                &cfg
            ),
            Outcome::Dropped { .. }
        ));
        let plain = job("scrape_configs:\n- job_name: x\n");
        let Outcome::Invalid { error, .. } = populate(
            &LabelMap::new(),
            &map(&[("__address__", "http://a:1/metrics")]),
            &plain,
        ) else {
            panic!()
        };
        assert!(error.contains("not a valid hostname"), "{error}");
    }
}
