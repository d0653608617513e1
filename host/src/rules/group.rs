//! One rule group: its rules, their state, and one evaluation.
//!
//! Semantics follow Prometheus's rules package: recording rules write their
//! result under the rule's name and labels; alerting rules keep one alert per
//! label set and move it inactive → pending → firing (→ inactive, reported
//! as resolved for 15 minutes); `ALERTS` and `ALERTS_FOR_STATE` are written
//! after the first evaluation's `for` state restore; series a rule stops
//! producing get stale markers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::warn;

use super::file::{GroupDef, RuleDef, RuleKind};
use super::template::{self, Template, Val};
use crate::model::matcher::Matcher;
use crate::model::sample::stale_nan;
use crate::model::{FloatHistogram, Labels};
use crate::promql::{Engine, QueryOptions, Value};
use crate::storage::Storage;

/// How long a resolved alert is still sent to Alertmanager (Prometheus's
/// `resolvedRetention`).
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// One element of a rule's result, or of what a rule writes: a float or a
/// native histogram, as in a PromQL instant vector.
#[derive(Clone, Debug)]
pub enum RuleValue {
    Float(f64),
    Histogram(Arc<FloatHistogram>),
}

impl RuleValue {
    /// The value an alert and its templates see. As in Prometheus, a
    /// histogram sample has no float value, so its alert's value is 0.
    fn alert_value(&self) -> f64 {
        match self {
            RuleValue::Float(v) => *v,
            RuleValue::Histogram(_) => 0.0,
        }
    }
}

/// An alert on its way to the notifier.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub generator_url: String,
}

pub type NotifyFn = Arc<dyn Fn(Vec<OutgoingAlert>) + Send + Sync>;

/// What every group of a manager shares.
pub struct Shared {
    pub engine: Engine,
    pub storage: Arc<Storage>,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    pub for_outage_tolerance_ms: i64,
    pub for_grace_period_ms: i64,
    pub resend_delay_ms: i64,
    pub notify: NotifyFn,
    pub metrics: super::metrics::RuleMetrics,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub last_sent_ms: Option<i64>,
    pub valid_until_ms: i64,
    pub keep_firing_since_ms: Option<i64>,
}

impl Alert {
    fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_ms.unwrap_or(i64::MIN);
        if self.resolved_at_ms.is_some_and(|r| r > last) {
            return true;
        }
        self.last_sent_ms.is_none_or(|l| l + resend_delay_ms < ts)
    }
}

#[derive(Clone, Debug)]
pub struct RuleState {
    pub health: Health,
    pub last_error: Option<String>,
    pub last_eval_ms: Option<i64>,
    pub eval_duration: Duration,
    /// Series written by the last successful evaluation (for staleness).
    pub prev_series: HashSet<Labels>,
    /// Alerting rules: active alerts by their label set.
    pub alerts: HashMap<BTreeMap<String, String>, Alert>,
    /// Whether the `for` state restore has run (ALERTS are written after).
    pub restored: bool,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            health: Health::Unknown,
            last_error: None,
            last_eval_ms: None,
            eval_duration: Duration::ZERO,
            prev_series: HashSet::new(),
            alerts: HashMap::new(),
            restored: false,
        }
    }
}

pub struct Rule {
    pub def: RuleDef,
    /// The rule's labels with the group's labels under them.
    pub labels: BTreeMap<String, String>,
    pub state: Mutex<RuleState>,
    label_templates: Vec<(String, Result<Template, String>)>,
    annotation_templates: Vec<(String, Result<Template, String>)>,
}

impl Rule {
    fn new(def: RuleDef, group_labels: &BTreeMap<String, String>) -> Rule {
        let mut labels = group_labels.clone();
        labels.extend(def.labels.clone());
        let name = format!("__alert_{}", def.name);
        let compile = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Template::parse(&name, v).map_err(|e| e.to_string()),
                    )
                })
                .collect()
        };
        Rule {
            label_templates: compile(&labels),
            annotation_templates: compile(&def.annotations),
            labels,
            def,
            state: Mutex::new(RuleState::default()),
        }
    }

    /// Rules keep state across a reload when name, labels and kind match.
    fn identity(&self) -> (RuleKind, String, BTreeMap<String, String>) {
        (self.def.kind, self.def.name.clone(), self.labels.clone())
    }
}

pub struct GroupState {
    pub last_eval_ms: Option<i64>,
    pub last_duration: Duration,
    pub should_restore: bool,
}

pub struct Group {
    pub file: String,
    pub def: GroupDef,
    pub interval_ms: i64,
    pub query_offset_ms: i64,
    pub rules: Vec<Rule>,
    pub state: Mutex<GroupState>,
    shared: Arc<Shared>,
}

impl Group {
    pub fn new(
        file: String,
        def: GroupDef,
        default_interval_ms: i64,
        default_offset_ms: i64,
        shared: Arc<Shared>,
    ) -> Group {
        let interval_ms = def
            .interval_ms
            .filter(|i| *i > 0)
            .map(|i| i as i64)
            .unwrap_or(default_interval_ms)
            .max(1);
        let query_offset_ms = def
            .query_offset_ms
            .map(|o| o as i64)
            .unwrap_or(default_offset_ms);
        let rules = def
            .rules
            .iter()
            .map(|r| Rule::new(r.clone(), &def.labels))
            .collect();
        Group {
            file,
            interval_ms,
            query_offset_ms,
            rules,
            def,
            state: Mutex::new(GroupState {
                last_eval_ms: None,
                last_duration: Duration::ZERO,
                should_restore: true,
            }),
            shared,
        }
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// `file;name`, the key groups are known by (as Prometheus's GroupKey).
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.def.name)
    }

    /// Takes over the state of rules that are unchanged in `old`.
    pub fn copy_state(&self, old: &Group) {
        let mut by_identity: HashMap<_, Vec<&Rule>> = HashMap::new();
        for r in &old.rules {
            by_identity.entry(r.identity()).or_default().push(r);
        }
        for r in &self.rules {
            if let Some(list) = by_identity.get_mut(&r.identity())
                && !list.is_empty()
            {
                let old_rule = list.remove(0);
                *r.state.lock() = old_rule.state.lock().clone();
            }
        }
        let old_state = old.state.lock();
        let mut st = self.state.lock();
        st.last_eval_ms = old_state.last_eval_ms;
        st.last_duration = old_state.last_duration;
        st.should_restore = old_state.should_restore;
    }

    /// Where this group's evaluations fall: every interval, shifted by a
    /// stable hash of the group so groups spread out (Prometheus aligns the
    /// same way, with its own hash).
    pub fn eval_timestamp(&self, now_ms: i64) -> i64 {
        let h = xxhash_rust::xxh3::xxh3_64(self.key().as_bytes());
        let offset = (h % self.interval_ms as u64) as i64;
        let adj = now_ms - offset;
        adj - adj.rem_euclid(self.interval_ms) + offset
    }

    /// Evaluates every rule at `ts` and writes the results.
    pub async fn eval(&self, ts: i64) {
        let start = Instant::now();
        let sh = &self.shared;
        let t = ts - self.query_offset_ms;
        for rule in &self.rules {
            let rule_start = Instant::now();
            sh.metrics
                .evaluations
                .with_label_values(&[&self.key()])
                .inc();
            let result = match rule.def.kind {
                RuleKind::Recording => self.eval_recording(rule, t).await,
                RuleKind::Alerting => self.eval_alerting(rule, ts, t).await,
            };
            let elapsed = rule_start.elapsed();
            sh.metrics.eval_duration.observe(elapsed.as_secs_f64());
            let series = match result {
                Ok((series, template_error)) => {
                    let mut st = rule.state.lock();
                    st.health = if template_error.is_some() {
                        Health::Err
                    } else {
                        Health::Ok
                    };
                    st.last_error = template_error;
                    st.last_eval_ms = Some(ts);
                    st.eval_duration = elapsed;
                    series
                }
                Err(err) => {
                    sh.metrics.failures.with_label_values(&[&self.key()]).inc();
                    warn!(group = %self.def.name, rule = %rule.def.name, err = %err, "Evaluating rule failed");
                    let mut st = rule.state.lock();
                    st.health = Health::Err;
                    st.last_error = Some(err);
                    st.last_eval_ms = Some(ts);
                    st.eval_duration = elapsed;
                    continue;
                }
            };
            self.write(rule, series, t).await;
            if rule.def.kind == RuleKind::Alerting {
                self.send_alerts(rule, ts);
            }
        }
        let restore = std::mem::replace(&mut self.state.lock().should_restore, false);
        if restore {
            self.restore_for_state(ts).await;
        }
        let took = start.elapsed();
        let mut st = self.state.lock();
        st.last_eval_ms = Some(ts);
        st.last_duration = took;
        let key = self.key();
        sh.metrics
            .last_duration
            .with_label_values(&[&key])
            .set(took.as_secs_f64());
        sh.metrics
            .last_evaluation
            .with_label_values(&[&key])
            .set(ts as f64 / 1000.0);
    }

    async fn query(&self, expr: &str, t: i64) -> Result<Vec<(Labels, RuleValue)>, String> {
        let res = self
            .shared
            .engine
            .instant_query(expr, t, &QueryOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        match res.value {
            Value::Vector(v) => Ok(v
                .into_iter()
                .map(|s| {
                    let value = match s.h {
                        Some(h) => RuleValue::Histogram(h),
                        None => RuleValue::Float(s.v),
                    };
                    (s.labels, value)
                })
                .collect()),
            Value::Scalar { v, .. } => Ok(vec![(Labels::default(), RuleValue::Float(v))]),
            other => Err(format!(
                "rule result is not a vector or scalar (got {})",
                other.type_name()
            )),
        }
    }

    async fn eval_recording(
        &self,
        rule: &Rule,
        t: i64,
    ) -> Result<(Vec<(Labels, RuleValue)>, Option<String>), String> {
        let samples = self.query(&rule.def.expr, t).await?;
        let mut out = Vec::with_capacity(samples.len());
        let mut seen = HashSet::new();
        for (labels, v) in samples {
            let mut map = to_map(&labels);
            map.insert("__name__".into(), rule.def.name.clone());
            for (k, val) in &rule.labels {
                if val.is_empty() {
                    map.remove(k);
                } else {
                    map.insert(k.clone(), val.clone());
                }
            }
            let labels = Labels::from_pairs(&map).map_err(|e| e.to_string())?;
            if !seen.insert(labels.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
            out.push((labels, v));
        }
        if self.def.limit > 0 && out.len() as u64 > self.def.limit {
            return Err(format!(
                "exceeded limit of {} with {} series",
                self.def.limit,
                out.len()
            ));
        }
        Ok((out, None))
    }

    async fn eval_alerting(
        &self,
        rule: &Rule,
        ts: i64,
        t: i64,
    ) -> Result<(Vec<(Labels, RuleValue)>, Option<String>), String> {
        let samples = self.query(&rule.def.expr, t).await?;
        // Templates first (they may query), outside the state lock.
        let mut template_error = None;
        // (alert labels, annotations, value) per sample.
        type Fresh = (BTreeMap<String, String>, BTreeMap<String, String>, f64);
        let mut fresh: Vec<Fresh> = Vec::new();
        for (labels, value) in &samples {
            let v = value.alert_value();
            let sample_labels = to_map(labels);
            let expand = |tmpls: &[(String, Result<Template, String>)],
                          errs: &mut Option<String>|
             -> BTreeMap<String, String> {
                tmpls
                    .iter()
                    .map(|(k, tmpl)| {
                        let out = match tmpl {
                            Ok(t) => self.expand(t, &sample_labels, v, ts),
                            Err(e) => Err(e.clone()),
                        };
                        let out = out.unwrap_or_else(|e| {
                            errs.get_or_insert_with(|| e.clone());
                            format!("<error expanding template: {e}>")
                        });
                        (k.clone(), out)
                    })
                    .collect()
            };
            let rule_labels = expand(&rule.label_templates, &mut template_error);
            let annotations = expand(&rule.annotation_templates, &mut template_error);
            let mut lb = sample_labels;
            lb.remove("__name__");
            for (k, val) in rule_labels {
                if val.is_empty() {
                    lb.remove(&k);
                } else {
                    lb.insert(k, val);
                }
            }
            lb.insert("alertname".into(), rule.def.name.clone());
            fresh.push((lb, annotations, v));
        }

        let mut st = rule.state.lock();
        let mut result_keys = HashSet::new();
        for (lb, annotations, v) in fresh {
            if !result_keys.insert(lb.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            match st.alerts.get_mut(&lb) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = v;
                    a.annotations = annotations;
                }
                _ => {
                    st.alerts.insert(
                        lb.clone(),
                        Alert {
                            labels: lb,
                            annotations,
                            state: AlertState::Pending,
                            value: v,
                            active_at_ms: ts,
                            fired_at_ms: None,
                            resolved_at_ms: None,
                            last_sent_ms: None,
                            valid_until_ms: 0,
                            keep_firing_since_ms: None,
                        },
                    );
                }
            }
        }

        let hold = rule.def.for_ms as i64;
        let keep_for = rule.def.keep_firing_for_ms as i64;
        let restored = st.restored;
        let mut out = Vec::new();
        let mut active_count = 0u64;
        let mut remove = Vec::new();
        for (key, a) in st.alerts.iter_mut() {
            if !result_keys.contains(key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_for > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts);
                    keep_firing = ts - since < keep_for;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    remove.push(key.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts - a.active_at_ms >= hold {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts);
            }
            if restored {
                out.push(alert_series(a, "ALERTS", a.state.as_str(), 1.0)?);
                out.push(alert_series(
                    a,
                    "ALERTS_FOR_STATE",
                    "",
                    (a.active_at_ms / 1000) as f64,
                )?);
            }
        }
        for k in remove {
            st.alerts.remove(&k);
        }
        if self.def.limit > 0 && active_count > self.def.limit {
            st.alerts.clear();
            return Err(format!(
                "exceeded limit of {} with {} alerts",
                self.def.limit, active_count
            ));
        }
        Ok((out, template_error))
    }

    fn expand(
        &self,
        tmpl: &Template,
        labels: &BTreeMap<String, String>,
        value: f64,
        query_ts: i64,
    ) -> Result<String, String> {
        let sh = &self.shared;
        let to_val = |m: &BTreeMap<String, String>| {
            Val::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Val::Str(v.clone())))
                    .collect(),
            )
        };
        let labels_v = to_val(labels);
        let ext_v = to_val(&sh.external_labels);
        let data = Val::Map(BTreeMap::from([
            ("Labels".to_owned(), labels_v.clone()),
            ("ExternalLabels".to_owned(), ext_v.clone()),
            ("ExternalURL".to_owned(), Val::Str(sh.external_url.clone())),
            ("Value".to_owned(), Val::Float(value)),
        ]));
        let env = QueryEnv {
            engine: &sh.engine,
            ts: query_ts,
            external_url: &sh.external_url,
        };
        tmpl.execute(
            &data,
            &[
                ("$labels", labels_v),
                ("$externalLabels", ext_v),
                ("$externalURL", Val::Str(sh.external_url.clone())),
                ("$value", Val::Float(value)),
            ],
            &env,
        )
        .map_err(|e| e.to_string())
    }

    /// Appends a rule's output and stale markers for what it no longer produces.
    async fn write(&self, rule: &Rule, series: Vec<(Labels, RuleValue)>, t: i64) {
        let current: HashSet<Labels> = series.iter().map(|(l, _)| l.clone()).collect();
        let stale: Vec<Labels> = {
            let mut st = rule.state.lock();
            let stale = st.prev_series.difference(&current).cloned().collect();
            st.prev_series = current;
            stale
        };
        self.append(series, stale, t).await;
    }

    async fn append(&self, series: Vec<(Labels, RuleValue)>, stale: Vec<Labels>, t: i64) {
        if series.is_empty() && stale.is_empty() {
            return;
        }
        let storage = self.shared.storage.clone();
        let group = self.def.name.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut app = storage.appender();
            for (l, v) in series {
                match v {
                    RuleValue::Float(v) => app.append(l, t, v),
                    RuleValue::Histogram(h) => app.append_histogram(l, t, Arc::unwrap_or_clone(h)),
                }
            }
            // A float stale marker ends histogram series too, as in
            // Prometheus.
            for l in stale {
                app.append(l, t, stale_nan());
            }
            app.commit()
        })
        .await;
        match res {
            Ok(Ok(report)) if !report.rejected.is_empty() => {
                warn!(group = %group, rejected = report.rejected.len(), first = ?report.rejected[0].1, "Rule evaluation result discarded by storage");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(group = %group, err = %e, "Writing rule results failed"),
            Err(e) => warn!(group = %group, err = %e, "Writing rule results failed"),
        }
    }

    /// Stale markers for everything this group wrote (it was removed).
    pub async fn mark_all_stale(&self, now_ms: i64) {
        let stale: Vec<Labels> = self
            .rules
            .iter()
            .flat_map(|r| std::mem::take(&mut r.state.lock().prev_series))
            .collect();
        self.append(Vec::new(), stale, now_ms).await;
    }

    fn send_alerts(&self, rule: &Rule, ts: i64) {
        let sh = &self.shared;
        let delta = sh.resend_delay_ms.max(self.interval_ms);
        let generator_url = format!(
            "{}/graph?g0.expr={}&g0.tab=1",
            sh.external_url.trim_end_matches('/'),
            query_escape(&rule.def.expr)
        );
        let mut out = Vec::new();
        let mut st = rule.state.lock();
        for a in st.alerts.values_mut() {
            if !a.needs_sending(ts, sh.resend_delay_ms) {
                continue;
            }
            a.last_sent_ms = Some(ts);
            a.valid_until_ms = ts + 4 * delta;
            out.push(OutgoingAlert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
                ends_at_ms: a.resolved_at_ms.unwrap_or(a.valid_until_ms),
                generator_url: generator_url.clone(),
            });
        }
        drop(st);
        if !out.is_empty() {
            (sh.notify)(out);
        }
    }

    /// Prometheus's `RestoreForState`: pending alerts of rules with a `for`
    /// resume from the `ALERTS_FOR_STATE` written before a restart.
    async fn restore_for_state(&self, ts: i64) {
        let sh = self.shared.clone();
        let mint = ts - sh.for_outage_tolerance_ms;
        for rule in &self.rules {
            if rule.def.kind != RuleKind::Alerting {
                continue;
            }
            let hold = rule.def.for_ms as i64;
            let keys: Vec<BTreeMap<String, String>> = {
                let mut st = rule.state.lock();
                if hold < sh.for_grace_period_ms || st.alerts.is_empty() {
                    st.restored = true;
                    continue;
                }
                st.alerts.keys().cloned().collect()
            };
            let mut restored_at = Vec::new();
            for key in keys {
                let mut matchers = vec![Matcher::eq("__name__", "ALERTS_FOR_STATE")];
                matchers.extend(key.iter().map(|(k, v)| Matcher::eq(k, v)));
                let storage = sh.storage.clone();
                let found =
                    tokio::task::spawn_blocking(move || storage.select(&matchers, mint, ts)).await;
                let series = match found {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        warn!(rule = %rule.def.name, err = %e, "Reading ALERTS_FOR_STATE failed");
                        continue;
                    }
                    Err(_) => continue,
                };
                // Exactly this label set (ALERTS_FOR_STATE carries no extra labels).
                let Some(last) = series
                    .iter()
                    .filter(|s| s.labels.len() == key.len() + 1)
                    .flat_map(|s| s.samples.iter())
                    .filter(|s| !crate::model::sample::is_stale_nan(s.v))
                    .max_by_key(|s| s.t)
                    .copied()
                else {
                    continue;
                };
                let down_at = last.t;
                let mut active_at = (last.v as i64) * 1000;
                let spent = down_at - active_at;
                let remaining = hold - spent;
                if remaining <= 0 {
                    // It would have fired already; keep its original start.
                } else if remaining < sh.for_grace_period_ms {
                    active_at = ts + sh.for_grace_period_ms - hold;
                } else {
                    active_at += ts - down_at;
                }
                restored_at.push((key, active_at));
            }
            let mut st = rule.state.lock();
            for (key, active_at) in restored_at {
                if let Some(a) = st.alerts.get_mut(&key) {
                    a.active_at_ms = active_at;
                    if a.state == AlertState::Firing && ts - active_at < hold {
                        a.state = AlertState::Pending;
                        a.fired_at_ms = None;
                    }
                }
            }
            st.restored = true;
        }
    }
}

fn to_map(labels: &Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect()
}

fn alert_series(a: &Alert, name: &str, state: &str, v: f64) -> Result<(Labels, RuleValue), String> {
    let mut m = a.labels.clone();
    m.insert("__name__".into(), name.into());
    if !state.is_empty() {
        m.insert("alertstate".into(), state.into());
    }
    Ok((
        Labels::from_pairs(&m).map_err(|e| e.to_string())?,
        RuleValue::Float(v),
    ))
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Runs `query` calls of templates on the engine.
struct QueryEnv<'a> {
    engine: &'a Engine,
    ts: i64,
    external_url: &'a str,
}

impl template::Env for QueryEnv<'_> {
    fn query(&self, q: &str) -> Result<Vec<Val>, String> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let handle = Handle::try_current().map_err(|e| e.to_string())?;
        if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
            return Err("query needs the multi-threaded runtime".into());
        }
        let engine = self.engine.clone();
        let res = tokio::task::block_in_place(|| {
            handle.block_on(engine.instant_query(q, self.ts, &QueryOptions::default()))
        })
        .map_err(|e| e.to_string())?;
        let samples = match res.value {
            // A histogram sample's value is 0 here, as in Prometheus's
            // templates, which see float values only.
            Value::Vector(v) => v
                .into_iter()
                .map(|s| {
                    let v = if s.h.is_some() { 0.0 } else { s.v };
                    (s.labels, v)
                })
                .collect(),
            Value::Scalar { v, .. } => vec![(Labels::default(), v)],
            Value::String { s, .. } => {
                return Ok(vec![template::sample_val(
                    &BTreeMap::from([("__value__".to_owned(), s)]),
                    0.0,
                )]);
            }
            Value::Matrix(_) => return Err("query must return a vector or scalar".into()),
        };
        Ok(samples
            .into_iter()
            .map(|(l, v)| template::sample_val(&to_map(&l), v))
            .collect())
    }

    fn external_url(&self) -> String {
        self.external_url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::EngineOptions;
    use crate::storage::StorageOptions;

    struct Fixture {
        _dir: tempfile::TempDir,
        storage: Arc<Storage>,
        shared: Arc<Shared>,
        sent: Arc<Mutex<Vec<OutgoingAlert>>>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (storage, _) = Storage::open(dir.path(), StorageOptions::default(), |_| {}).unwrap();
        let storage = Arc::new(storage);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = sent.clone();
        let shared = Arc::new(Shared {
            engine: Engine::new(storage.clone(), EngineOptions::default()),
            storage: storage.clone(),
            external_labels: BTreeMap::new(),
            external_url: "http://ember:9090".into(),
            for_outage_tolerance_ms: 3_600_000,
            for_grace_period_ms: 600_000,
            resend_delay_ms: 60_000,
            notify: Arc::new(move |a| s.lock().extend(a)),
            metrics: super::super::metrics::RuleMetrics::new(None).unwrap(),
        });
        Fixture {
            _dir: dir,
            storage,
            shared,
            sent,
        }
    }

    fn write(storage: &Storage, name: &str, t: i64, v: f64) {
        let mut app = storage.appender();
        app.append(Labels::from_pairs([("__name__", name)]).unwrap(), t, v);
        app.commit().unwrap();
    }

    fn group(f: &Fixture, text: &str) -> Group {
        let defs = super::super::file::parse(text).unwrap();
        Group::new("r.yml".into(), defs[0].clone(), 1000, 0, f.shared.clone())
    }

    fn value_at(storage: &Storage, name: &str, t: i64) -> Option<f64> {
        storage
            .select(&[Matcher::eq("__name__", name)], t, t)
            .unwrap()
            .into_iter()
            .flat_map(|s| s.samples)
            .find(|s| s.t == t)
            .map(|s| s.v)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn recording_output_goes_stale() {
        let f = fixture();
        let g = group(
            &f,
            "groups:\n- name: g\n  rules:\n  - record: r\n    expr: m > 0\n",
        );
        write(&f.storage, "m", 1000, 1.0);
        g.eval(2000).await;
        assert_eq!(value_at(&f.storage, "r", 2000), Some(1.0));
        write(&f.storage, "m", 2500, 0.0);
        g.eval(3000).await;
        let v = value_at(&f.storage, "r", 3000).unwrap();
        assert!(crate::model::sample::is_stale_nan(v));
        assert_eq!(g.rules[0].state.lock().health, Health::Ok);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn recording_rules_store_native_histograms() {
        use crate::model::histogram::Span;
        let f = fixture();
        let g = group(
            &f,
            "groups:\n- name: g\n  rules:\n  - record: r\n    expr: sum by (job) (h) and on () (m > 0)\n  - alert: A\n    expr: h\n    annotations:\n      v: '{{ $value }}'\n      q: '{{ with query \"h\" }}{{ len . }} {{ . | first | value }}{{ end }}'\n",
        );
        let h = |n: f64| FloatHistogram {
            zero_threshold: 0.001,
            count: 2.0 * n,
            sum: 3.0 * n,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![n, n],
            ..FloatHistogram::default()
        };
        let mut app = f.storage.appender();
        for (inst, n) in [("a", 1.0), ("b", 3.0)] {
            let l =
                Labels::from_pairs([("__name__", "h"), ("job", "j"), ("instance", inst)]).unwrap();
            app.append_histogram(l, 1000, h(n));
        }
        app.commit().unwrap();
        write(&f.storage, "m", 1000, 1.0);
        g.eval(2000).await;
        let recorded: Vec<_> = f
            .storage
            .select(&[Matcher::eq("__name__", "r")], 2000, 2000)
            .unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            recorded[0].labels,
            Labels::from_pairs([("__name__", "r"), ("job", "j")]).unwrap()
        );
        assert!(recorded[0].samples.is_empty());
        assert_eq!(recorded[0].histograms.len(), 1);
        assert_eq!(recorded[0].histograms[0].t, 2000);
        assert_eq!(*recorded[0].histograms[0].h, h(4.0));
        // An alert over histograms has the value 0, as in Prometheus.
        {
            let st = g.rules[1].state.lock();
            assert_eq!(st.alerts.len(), 2);
            assert!(st.alerts.values().all(|a| a.value == 0.0));
            assert!(st.alerts.values().all(|a| a.annotations["v"] == "0"));
            // So does a template's query over histograms.
            assert!(st.alerts.values().all(|a| a.annotations["q"] == "2 0"));
        }
        assert_eq!(g.rules[0].state.lock().health, Health::Ok);
        // When the result goes away, a float stale marker ends the
        // histogram series: a query right after it finds nothing.
        write(&f.storage, "m", 2500, 0.0);
        g.eval(3000).await;
        let v = value_at(&f.storage, "r", 3000).unwrap();
        assert!(crate::model::sample::is_stale_nan(v));
        let res = f
            .shared
            .engine
            .instant_query("r", 3500, &QueryOptions::default())
            .await
            .unwrap();
        match res.value {
            Value::Vector(v) => assert!(v.is_empty(), "{v:?}"),
            other => panic!("not a vector: {}", other.type_name()),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn alert_lifecycle_with_for_and_keep_firing() {
        let f = fixture();
        let g = group(
            &f,
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0\n    for: 2s\n    keep_firing_for: 2s\n    annotations:\n      s: '{{ $value }}'\n",
        );
        let state = |g: &Group| {
            g.rules[0]
                .state
                .lock()
                .alerts
                .values()
                .next()
                .map(|a| a.state)
        };
        write(&f.storage, "m", 1000, 5.0);
        g.eval(1000).await; // first evaluation: pending, restore runs, no ALERTS yet
        assert_eq!(state(&g), Some(AlertState::Pending));
        assert_eq!(value_at(&f.storage, "ALERTS", 1000), None);
        g.eval(2000).await;
        assert_eq!(state(&g), Some(AlertState::Pending));
        assert_eq!(value_at(&f.storage, "ALERTS", 2000), Some(1.0));
        assert!(f.sent.lock().is_empty(), "pending alerts are not sent");
        g.eval(3000).await;
        assert_eq!(state(&g), Some(AlertState::Firing));
        assert_eq!(value_at(&f.storage, "ALERTS_FOR_STATE", 3000), Some(1.0));
        {
            let sent = f.sent.lock();
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].annotations["s"], "5");
            assert_eq!(sent[0].starts_at_ms, 3000);
            assert_eq!(sent[0].ends_at_ms, 3000 + 4 * 60_000);
        }
        // The condition clears; keep_firing_for holds the alert for 2s.
        write(&f.storage, "m", 3500, 0.0);
        g.eval(4000).await;
        assert_eq!(state(&g), Some(AlertState::Firing));
        g.eval(6000).await;
        assert_eq!(state(&g), Some(AlertState::Inactive));
        let sent = f.sent.lock();
        let last = sent.last().unwrap();
        assert_eq!(last.ends_at_ms, 6000, "resolved alerts end when resolved");
        assert!(crate::model::sample::is_stale_nan(
            value_at(&f.storage, "ALERTS", 6000).unwrap()
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reload_keeps_state_of_unchanged_rules() {
        let f = fixture();
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0\n    for: 1h\n  - record: r\n    expr: m\n";
        let old = group(&f, text);
        write(&f.storage, "m", 1000, 5.0);
        old.eval(1000).await;
        let changed = text.replace("expr: m\n", "expr: m * 2\n");
        let new = group(&f, &changed);
        new.copy_state(&old);
        let a = new.rules[0].state.lock();
        assert_eq!(a.alerts.len(), 1);
        assert_eq!(a.alerts.values().next().unwrap().active_at_ms, 1000);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn for_state_is_restored_after_restart() {
        let f = fixture();
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0\n    for: 1h\n";
        // Before the restart: active since t=0, last seen at 20 min.
        let mut app = f.storage.appender();
        let labels =
            Labels::from_pairs([("__name__", "ALERTS_FOR_STATE"), ("alertname", "A")]).unwrap();
        app.append(labels, 1_200_000, 0.0);
        app.commit().unwrap();
        write(&f.storage, "m", 1_500_000, 1.0);
        // Restarted at 25 min: 40 min were left, the 5 min outage is added.
        let g = group(&f, text);
        g.eval(1_500_000).await;
        let st = g.rules[0].state.lock();
        let a = st.alerts.values().next().unwrap();
        assert_eq!(a.active_at_ms, 300_000);
        assert!(st.restored);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn template_errors_mark_the_rule() {
        let f = fixture();
        let g = group(
            &f,
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1)\n    annotations:\n      q: '{{ query \"sum(\" }}'\n",
        );
        g.eval(1000).await;
        let st = g.rules[0].state.lock();
        assert_eq!(st.health, Health::Err);
        assert!(
            st.last_error
                .as_deref()
                .unwrap_or("")
                .contains("error calling query")
        );
        let a = st.alerts.values().next().unwrap();
        assert!(a.annotations["q"].starts_with("<error expanding template:"));
    }
}
