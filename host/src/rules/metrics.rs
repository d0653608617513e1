//! Self-metrics of rule evaluation, named as Prometheus's `prometheus_rule_*`
//! with Ember's prefix.

use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct RuleMetrics {
    pub evaluations: IntCounterVec,
    pub failures: IntCounterVec,
    pub eval_duration: Histogram,
    pub last_duration: GaugeVec,
    pub last_evaluation: GaugeVec,
    pub interval: GaugeVec,
    pub rules: GaugeVec,
    pub iterations: IntCounterVec,
    pub missed: IntCounterVec,
}

impl RuleMetrics {
    pub fn new(registry: Option<&Registry>) -> Result<RuleMetrics, prometheus::Error> {
        let by_group =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["rule_group"]);
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["rule_group"]);
        let m = RuleMetrics {
            evaluations: by_group(
                "ember_rule_evaluations_total",
                "The total number of rule evaluations.",
            )?,
            failures: by_group(
                "ember_rule_evaluation_failures_total",
                "The total number of rule evaluation failures.",
            )?,
            eval_duration: Histogram::with_opts(HistogramOpts::new(
                "ember_rule_evaluation_duration_seconds",
                "The duration for a rule to execute.",
            ))?,
            last_duration: gauge(
                "ember_rule_group_last_duration_seconds",
                "The duration of the last rule group evaluation.",
            )?,
            last_evaluation: gauge(
                "ember_rule_group_last_evaluation_timestamp_seconds",
                "The timestamp of the last rule group evaluation in seconds.",
            )?,
            interval: gauge(
                "ember_rule_group_interval_seconds",
                "The interval of a rule group.",
            )?,
            rules: gauge("ember_rule_group_rules", "The number of rules.")?,
            iterations: by_group(
                "ember_rule_group_iterations_total",
                "The total number of scheduled rule group evaluations, whether executed or missed.",
            )?,
            missed: by_group(
                "ember_rule_group_iterations_missed_total",
                "The total number of rule group evaluations missed due to slow rule group evaluation.",
            )?,
        };
        if let Some(r) = registry {
            r.register(Box::new(m.evaluations.clone()))?;
            r.register(Box::new(m.failures.clone()))?;
            r.register(Box::new(m.eval_duration.clone()))?;
            r.register(Box::new(m.last_duration.clone()))?;
            r.register(Box::new(m.last_evaluation.clone()))?;
            r.register(Box::new(m.interval.clone()))?;
            r.register(Box::new(m.rules.clone()))?;
            r.register(Box::new(m.iterations.clone()))?;
            r.register(Box::new(m.missed.clone()))?;
        }
        Ok(m)
    }

    /// Forgets a removed group's series.
    pub fn remove_group(&self, key: &str) {
        let _ = self.evaluations.remove_label_values(&[key]);
        let _ = self.failures.remove_label_values(&[key]);
        let _ = self.last_duration.remove_label_values(&[key]);
        let _ = self.last_evaluation.remove_label_values(&[key]);
        let _ = self.interval.remove_label_values(&[key]);
        let _ = self.rules.remove_label_values(&[key]);
        let _ = self.iterations.remove_label_values(&[key]);
        let _ = self.missed.remove_label_values(&[key]);
    }
}
