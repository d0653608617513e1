//! The built-in Alertmanager's dispatcher: alerts from the rule manager are
//! routed into aggregation groups (per route and `group_by` labels), and
//! each group is flushed after `group_wait`, then every `group_interval`.
//! A flush drops muted alerts (silenced or inhibited), asks the
//! notification log whether each receiver integration needs to hear about
//! the rest (new firing alerts, resolutions, `repeat_interval`), and
//! delivers the group to the receiver's notifier plugins, retrying with
//! exponential backoff until the group's next flush is due.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::inhibit::{Candidate, inhibited_by};
use super::nflog::{self, NotificationLog};
use super::route::{Route, label_set_string};
use super::silence::Silences;
use crate::config::notifications::{NotificationsConfig, NotifierPluginConfig};
use crate::plugins::{self, AlertStatus, Label, PluginManager, World};
use crate::rules::group::OutgoingAlert;

/// How often due groups are looked for.
const TICK: Duration = Duration::from_millis(100);
/// First retry delay of a failed delivery; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often expired silences and old log entries are forgotten.
const GC_EVERY: Duration = Duration::from_secs(15 * 60);

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Alertmanager's alert fingerprint: FNV-1a 64 over the sorted labels, each
/// name and value followed by 0xff.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in labels {
        add(k.as_bytes());
        add(&[0xff]);
        add(v.as_bytes());
        add(&[0xff]);
    }
    h
}

/// An alert as the dispatcher holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAlert {
    pub fingerprint: u64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub generator_url: String,
    pub updated_at_ms: i64,
}

impl StoredAlert {
    pub fn resolved(&self, now_ms: i64) -> bool {
        self.ends_at_ms <= now_ms
    }
}

/// Why an alert is not delivered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Muted {
    pub silenced_by: Vec<String>,
    pub inhibited_by: Vec<String>,
}

impl Muted {
    pub fn is_muted(&self) -> bool {
        !self.silenced_by.is_empty() || !self.inhibited_by.is_empty()
    }
}

/// Delivery state of one integration (notifier plugin) of a group's receiver.
#[derive(Clone, Debug, Default)]
pub struct IntegrationStatus {
    pub plugin: String,
    pub last_attempt_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub failed_attempts: u64,
}

struct Group {
    route: Arc<Route>,
    key: String,
    labels: BTreeMap<String, String>,
    alerts: HashMap<u64, Arc<StoredAlert>>,
    next_flush_ms: i64,
    has_flushed: bool,
    flushing: bool,
    last_flush_ms: Option<i64>,
    integrations: Vec<IntegrationStatus>,
}

/// A group as the status API shows it.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub receiver: String,
    pub group_key: String,
    pub labels: BTreeMap<String, String>,
    pub alerts: Vec<(Arc<StoredAlert>, Muted)>,
    pub next_flush_ms: i64,
    pub last_flush_ms: Option<i64>,
    pub integrations: Vec<(IntegrationStatus, Option<nflog::Entry>)>,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
}

#[derive(Default)]
struct Inner {
    config: Option<Arc<NotificationsConfig>>,
    tree: Option<Arc<Route>>,
    alerts: HashMap<u64, Arc<StoredAlert>>,
    /// By (route id, group key).
    groups: BTreeMap<(String, String), Group>,
}

#[derive(Clone)]
struct Metrics {
    notifications: IntCounterVec,
    notifications_failed: IntCounterVec,
    requests: IntCounterVec,
    requests_failed: IntCounterVec,
    latency: HistogramVec,
    groups: IntGauge,
    alerts: IntGaugeVec,
    silences: IntGaugeVec,
}

impl Metrics {
    fn new(registry: Option<&Registry>) -> Result<Metrics, prometheus::Error> {
        let labels = &["receiver", "integration"];
        let failed_labels = &["receiver", "integration", "reason"];
        let m = Metrics {
            notifications: IntCounterVec::new(
                Opts::new(
                    "ember_alert_notifications_total",
                    "Notifications the built-in Alertmanager attempted to deliver.",
                ),
                labels,
            )?,
            notifications_failed: IntCounterVec::new(
                Opts::new(
                    "ember_alert_notifications_failed_total",
                    "Notifications that could not be delivered, after all retries.",
                ),
                failed_labels,
            )?,
            requests: IntCounterVec::new(
                Opts::new(
                    "ember_alert_notification_requests_total",
                    "Calls into notifier plugins, retries included.",
                ),
                labels,
            )?,
            requests_failed: IntCounterVec::new(
                Opts::new(
                    "ember_alert_notification_requests_failed_total",
                    "Failed calls into notifier plugins, by reason.",
                ),
                failed_labels,
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "ember_alert_notification_latency_seconds",
                    "Duration of successful notifier plugin calls.",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]),
                labels,
            )?,
            groups: IntGauge::new(
                "ember_alert_groups",
                "Aggregation groups of the built-in Alertmanager.",
            )?,
            alerts: IntGaugeVec::new(
                Opts::new(
                    "ember_alerts",
                    "Alerts held by the built-in Alertmanager, by state.",
                ),
                &["state"],
            )?,
            silences: IntGaugeVec::new(
                Opts::new("ember_silences", "Silences by state."),
                &["state"],
            )?,
        };
        if let Some(r) = registry {
            r.register(Box::new(m.notifications.clone()))?;
            r.register(Box::new(m.notifications_failed.clone()))?;
            r.register(Box::new(m.requests.clone()))?;
            r.register(Box::new(m.requests_failed.clone()))?;
            r.register(Box::new(m.latency.clone()))?;
            r.register(Box::new(m.groups.clone()))?;
            r.register(Box::new(m.alerts.clone()))?;
            r.register(Box::new(m.silences.clone()))?;
        }
        Ok(m)
    }
}

/// A group snapshot handed to a flush.
struct Flush {
    id: (String, String),
    key: String,
    labels: BTreeMap<String, String>,
    route: Arc<Route>,
    alerts: Vec<Arc<StoredAlert>>,
    config: Arc<NotificationsConfig>,
}

pub struct Dispatcher {
    inner: Mutex<Inner>,
    silences: Arc<Silences>,
    nflog: NotificationLog,
    plugins: RwLock<Option<Arc<PluginManager>>>,
    external_url: String,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("cannot open the silences: {0}")]
    Silences(#[from] super::silence::SilenceError),
    #[error("cannot open the notification log in {dir}: {source}")]
    Log {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Dispatcher {
    /// Opens the silences and notification log under `dir`
    /// (`<data>/alerting`).
    pub fn open(
        dir: &std::path::Path,
        external_url: String,
        registry: Option<&Registry>,
    ) -> Result<Arc<Dispatcher>, DispatchError> {
        std::fs::create_dir_all(dir).map_err(|source| DispatchError::Log {
            dir: dir.display().to_string(),
            source,
        })?;
        let silences = Arc::new(Silences::open(dir)?);
        let nflog = NotificationLog::open(dir).map_err(|source| DispatchError::Log {
            dir: dir.display().to_string(),
            source,
        })?;
        Ok(Arc::new(Dispatcher {
            inner: Mutex::new(Inner::default()),
            silences,
            nflog,
            plugins: RwLock::new(None),
            external_url,
            metrics: Metrics::new(registry)?,
        }))
    }

    pub fn set_plugins(&self, plugins: Arc<PluginManager>) {
        *self.plugins.write() = Some(plugins);
    }

    pub fn silences(&self) -> &Arc<Silences> {
        &self.silences
    }

    /// The `notifications` section in force, if any.
    pub fn config(&self) -> Option<Arc<NotificationsConfig>> {
        self.inner.lock().config.clone()
    }

    /// Takes a (re)loaded `notifications` section. A changed section
    /// rebuilds every group from the alerts held, as Alertmanager does on
    /// reload; the notification log keeps that from re-notifying.
    pub fn apply(&self, config: Option<&NotificationsConfig>) {
        let mut inner = self.inner.lock();
        if inner.config.as_deref() == config {
            return;
        }
        inner.config = config.map(|c| Arc::new(c.clone()));
        inner.tree = config.map(|c| Route::tree(&c.route));
        inner.groups.clear();
        if inner.config.is_none() {
            inner.alerts.clear();
        }
        let now = now_ms();
        let alerts: Vec<Arc<StoredAlert>> = inner.alerts.values().cloned().collect();
        for a in alerts {
            route_alert(&mut inner, a, now);
        }
        self.metrics.groups.set(inner.groups.len() as i64);
    }

    /// Takes alerts from the rule manager (after external labels and
    /// `alert_relabel_configs`). Ignored without a `notifications` section.
    pub fn put(&self, alerts: &[OutgoingAlert]) {
        let mut inner = self.inner.lock();
        if inner.tree.is_none() {
            return;
        }
        let now = now_ms();
        for a in alerts {
            let fp = fingerprint(&a.labels);
            let mut stored = StoredAlert {
                fingerprint: fp,
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at_ms: a.starts_at_ms,
                ends_at_ms: a.ends_at_ms,
                generator_url: a.generator_url.clone(),
                updated_at_ms: now,
            };
            // The same alert again while it still fires keeps its start.
            if let Some(old) = inner.alerts.get(&fp)
                && !old.resolved(now)
            {
                stored.starts_at_ms = stored.starts_at_ms.min(old.starts_at_ms);
            }
            let stored = Arc::new(stored);
            inner.alerts.insert(fp, stored.clone());
            route_alert(&mut inner, stored, now);
        }
        self.metrics.groups.set(inner.groups.len() as i64);
    }

    /// Why `alert` is muted right now (empty when it is delivered).
    pub fn muted(&self, alert: &StoredAlert, now_ms: i64) -> Muted {
        let inner = self.inner.lock();
        let config = inner.config.clone();
        let firing: Vec<Arc<StoredAlert>> = inner
            .alerts
            .values()
            .filter(|a| !a.resolved(now_ms))
            .cloned()
            .collect();
        drop(inner);
        self.mute_check(config.as_deref(), &firing, alert, now_ms)
    }

    fn mute_check(
        &self,
        config: Option<&NotificationsConfig>,
        firing: &[Arc<StoredAlert>],
        alert: &StoredAlert,
        now_ms: i64,
    ) -> Muted {
        let mut muted = Muted::default();
        if let Some(config) = config
            && !config.inhibit_rules.is_empty()
        {
            let candidates: Vec<Candidate<'_>> = firing
                .iter()
                .map(|a| Candidate {
                    fingerprint: a.fingerprint,
                    labels: &a.labels,
                })
                .collect();
            let target = Candidate {
                fingerprint: alert.fingerprint,
                labels: &alert.labels,
            };
            if let Some(fp) = inhibited_by(&config.inhibit_rules, &candidates, &target) {
                muted.inhibited_by.push(format!("{fp:016x}"));
            }
        }
        muted.silenced_by = self.silences.silenced_by(&alert.labels, now_ms);
        muted
    }

    /// Every alert held, with its receivers' names and why it is muted.
    pub fn alerts_with_state(&self, now_ms: i64) -> Vec<(Arc<StoredAlert>, Vec<String>, Muted)> {
        let config = self.config();
        let alerts = self.alerts();
        let firing: Vec<Arc<StoredAlert>> = alerts
            .iter()
            .filter(|(a, _)| !a.resolved(now_ms))
            .map(|(a, _)| a.clone())
            .collect();
        alerts
            .into_iter()
            .map(|(a, receivers)| {
                let muted = self.mute_check(config.as_deref(), &firing, &a, now_ms);
                (a, receivers, muted)
            })
            .collect()
    }

    /// Every alert held, with its receivers' names.
    pub fn alerts(&self) -> Vec<(Arc<StoredAlert>, Vec<String>)> {
        let inner = self.inner.lock();
        let mut out: Vec<(Arc<StoredAlert>, Vec<String>)> = inner
            .alerts
            .values()
            .map(|a| {
                let mut receivers: Vec<String> = inner
                    .tree
                    .as_ref()
                    .map(|t| t.matching(&a.labels))
                    .unwrap_or_default()
                    .iter()
                    .map(|r| r.receiver.clone())
                    .collect();
                receivers.dedup();
                (a.clone(), receivers)
            })
            .collect();
        out.sort_by(|a, b| a.0.labels.cmp(&b.0.labels));
        out
    }

    /// The aggregation groups with their alerts and delivery state.
    pub fn groups(&self) -> Vec<GroupView> {
        let now = now_ms();
        let inner = self.inner.lock();
        let config = inner.config.clone();
        let firing: Vec<Arc<StoredAlert>> = inner
            .alerts
            .values()
            .filter(|a| !a.resolved(now))
            .cloned()
            .collect();
        let groups: Vec<GroupView> = inner
            .groups
            .values()
            .map(|g| {
                let mut alerts: Vec<Arc<StoredAlert>> = g.alerts.values().cloned().collect();
                sort_alerts(&mut alerts);
                GroupView {
                    receiver: g.route.receiver.clone(),
                    group_key: g.key.clone(),
                    labels: g.labels.clone(),
                    alerts: alerts.into_iter().map(|a| (a, Muted::default())).collect(),
                    next_flush_ms: g.next_flush_ms,
                    last_flush_ms: g.last_flush_ms,
                    integrations: config
                        .as_ref()
                        .and_then(|c| c.receiver(&g.route.receiver))
                        .map(|r| r.plugin_configs.as_slice())
                        .unwrap_or_default()
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let status = g.integrations.get(i).cloned().unwrap_or_else(|| {
                                IntegrationStatus {
                                    plugin: p.name.clone(),
                                    ..IntegrationStatus::default()
                                }
                            });
                            (status, self.nflog.get(&g.key, &g.route.receiver, i))
                        })
                        .collect(),
                    group_wait_ms: g.route.group_wait.as_millis() as i64,
                    group_interval_ms: g.route.group_interval.as_millis() as i64,
                    repeat_interval_ms: g.route.repeat_interval.as_millis() as i64,
                }
            })
            .collect();
        drop(inner);
        groups
            .into_iter()
            .map(|mut g| {
                for (a, m) in g.alerts.iter_mut() {
                    *m = self.mute_check(config.as_deref(), &firing, a, now);
                }
                g
            })
            .collect()
    }

    /// Flushes due groups until shut down.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_gc = Instant::now();
        let mut last_gauges = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let now = now_ms();
            for flush in self.due(now) {
                let me = self.clone();
                tokio::spawn(async move { me.flush(flush).await });
            }
            if last_gauges.elapsed() >= Duration::from_secs(1) {
                last_gauges = Instant::now();
                self.update_gauges(now);
            }
            if last_gc.elapsed() >= GC_EVERY {
                last_gc = Instant::now();
                if let Err(e) = self.silences.gc(now) {
                    warn!(err = %e, "Forgetting expired silences failed");
                }
                if let Err(e) = self.nflog.gc(now) {
                    warn!(err = %e, "Forgetting old notification log entries failed");
                }
            }
        }
    }

    fn update_gauges(&self, now: i64) {
        for (state, n) in self.silences.counts(now) {
            self.metrics
                .silences
                .with_label_values(&[state.as_str()])
                .set(n as i64);
        }
        let alerts = self.alerts_with_state(now);
        let suppressed = alerts
            .iter()
            .filter(|(a, _, m)| !a.resolved(now) && m.is_muted())
            .count();
        let active = alerts.iter().filter(|(a, _, _)| !a.resolved(now)).count();
        self.metrics
            .alerts
            .with_label_values(&["active"])
            .set((active - suppressed) as i64);
        self.metrics
            .alerts
            .with_label_values(&["suppressed"])
            .set(suppressed as i64);
    }

    /// Groups whose flush is due, marked as flushing; also forgets resolved
    /// alerts no group holds any more.
    fn due(&self, now: i64) -> Vec<Flush> {
        let mut inner = self.inner.lock();
        let Some(config) = inner.config.clone() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, g) in inner.groups.iter_mut() {
            if g.flushing || g.next_flush_ms > now {
                continue;
            }
            g.flushing = true;
            g.has_flushed = true;
            g.next_flush_ms = now + g.route.group_interval.as_millis() as i64;
            let mut alerts: Vec<Arc<StoredAlert>> = g.alerts.values().cloned().collect();
            sort_alerts(&mut alerts);
            out.push(Flush {
                id: id.clone(),
                key: g.key.clone(),
                labels: g.labels.clone(),
                route: g.route.clone(),
                alerts,
                config: config.clone(),
            });
        }
        let held: BTreeSet<u64> = inner
            .groups
            .values()
            .flat_map(|g| g.alerts.keys().copied())
            .collect();
        inner
            .alerts
            .retain(|fp, a| !a.resolved(now) || held.contains(fp));
        out
    }

    async fn flush(&self, flush: Flush) {
        let now = now_ms();
        let firing_all: Vec<Arc<StoredAlert>> = self
            .inner
            .lock()
            .alerts
            .values()
            .filter(|a| !a.resolved(now))
            .cloned()
            .collect();
        let delivered: Vec<Arc<StoredAlert>> = flush
            .alerts
            .iter()
            .filter(|a| {
                !self
                    .mute_check(Some(&flush.config), &firing_all, a, now)
                    .is_muted()
            })
            .cloned()
            .collect();
        let firing: BTreeSet<u64> = delivered
            .iter()
            .filter(|a| !a.resolved(now))
            .map(|a| a.fingerprint)
            .collect();
        let resolved: BTreeSet<u64> = delivered
            .iter()
            .filter(|a| a.resolved(now))
            .map(|a| a.fingerprint)
            .collect();
        let receiver = flush.route.receiver.clone();
        // With every alert muted the pipeline stops here, as Alertmanager's
        // does: the log is left alone, so lifting a silence does not make
        // already-notified alerts new.
        let integrations: Vec<NotifierPluginConfig> = if delivered.is_empty() {
            Vec::new()
        } else {
            flush
                .config
                .receiver(&receiver)
                .map(|r| r.plugin_configs.clone())
                .unwrap_or_default()
        };
        let deadline = Instant::now() + flush.route.group_interval;
        let mut statuses = Vec::with_capacity(integrations.len());
        let mut all_ok = true;
        for (i, integration) in integrations.iter().enumerate() {
            let mut status = IntegrationStatus {
                plugin: integration.name.clone(),
                ..self.integration_status(&flush.id, i)
            };
            let entry = self.nflog.get(&flush.key, &receiver, i);
            let needed = nflog::needs_update(
                entry.as_ref(),
                &firing,
                &resolved,
                integration.send_resolved,
                flush.route.repeat_interval.as_millis() as i64,
                now,
            );
            if needed {
                let alerts: Vec<&Arc<StoredAlert>> = delivered
                    .iter()
                    .filter(|a| integration.send_resolved || !a.resolved(now))
                    .collect();
                let ok = if alerts.is_empty() {
                    true
                } else {
                    let group = self.payload(&flush, &receiver, &alerts, now);
                    self.deliver(&receiver, integration, &group, deadline, &mut status)
                        .await
                };
                if ok {
                    let entry = nflog::Entry {
                        group_key: flush.key.clone(),
                        receiver: receiver.clone(),
                        integration: i,
                        firing: firing.clone(),
                        resolved: resolved.clone(),
                        timestamp_ms: now,
                    };
                    if let Err(e) = self.nflog.log(entry) {
                        warn!(err = %e, "Cannot write the notification log");
                    }
                } else {
                    all_ok = false;
                }
            }
            statuses.push(status);
        }
        let mut inner = self.inner.lock();
        if let Some(g) = inner.groups.get_mut(&flush.id) {
            g.flushing = false;
            g.last_flush_ms = Some(now);
            if !statuses.is_empty() {
                g.integrations = statuses;
            }
            if all_ok {
                // Resolved alerts are done with, unless they changed meanwhile.
                for a in &flush.alerts {
                    if a.resolved(now)
                        && g.alerts
                            .get(&a.fingerprint)
                            .is_some_and(|cur| Arc::ptr_eq(cur, a))
                    {
                        g.alerts.remove(&a.fingerprint);
                    }
                }
            }
            if g.alerts.is_empty() {
                inner.groups.remove(&flush.id);
            }
        }
        self.metrics.groups.set(inner.groups.len() as i64);
    }

    fn integration_status(&self, id: &(String, String), i: usize) -> IntegrationStatus {
        self.inner
            .lock()
            .groups
            .get(id)
            .and_then(|g| g.integrations.get(i).cloned())
            .unwrap_or_default()
    }

    fn payload(
        &self,
        flush: &Flush,
        receiver: &str,
        alerts: &[&Arc<StoredAlert>],
        now: i64,
    ) -> plugins::AlertGroup {
        let labels = |m: &BTreeMap<String, String>| -> Vec<Label> {
            m.iter()
                .map(|(k, v)| Label {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect()
        };
        let common = |get: &dyn Fn(&StoredAlert) -> &BTreeMap<String, String>| {
            let mut it = alerts.iter();
            let mut common = it.next().map(|a| get(a).clone()).unwrap_or_default();
            for a in it {
                let m = get(a);
                common.retain(|k, v| m.get(k) == Some(v));
            }
            common
        };
        let any_firing = alerts.iter().any(|a| !a.resolved(now));
        let status = |firing: bool| {
            if firing {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            }
        };
        plugins::AlertGroup {
            receiver: receiver.to_owned(),
            status: status(any_firing),
            group_key: flush.key.clone(),
            group_labels: labels(&flush.labels),
            common_labels: labels(&common(&|a| &a.labels)),
            common_annotations: labels(&common(&|a| &a.annotations)),
            external_url: self.external_url.clone(),
            truncated_alerts: 0,
            alerts: alerts
                .iter()
                .map(|a| {
                    let resolved = a.resolved(now);
                    plugins::Alert {
                        status: status(!resolved),
                        labels: labels(&a.labels),
                        annotations: labels(&a.annotations),
                        starts_at_ms: a.starts_at_ms,
                        ends_at_ms: resolved.then_some(a.ends_at_ms),
                        generator_url: a.generator_url.clone(),
                        fingerprint: format!("{:016x}", a.fingerprint),
                    }
                })
                .collect(),
        }
    }

    /// Calls the notifier plugin until it succeeds or `deadline` would pass.
    async fn deliver(
        &self,
        receiver: &str,
        integration: &NotifierPluginConfig,
        group: &plugins::AlertGroup,
        deadline: Instant,
        status: &mut IntegrationStatus,
    ) -> bool {
        let name = integration.name.as_str();
        let labels = [receiver, name];
        self.metrics.notifications.with_label_values(&labels).inc();
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.metrics.requests.with_label_values(&labels).inc();
            status.last_attempt_ms = Some(now_ms());
            let start = Instant::now();
            let result = self.call(integration, group).await;
            match result {
                Ok(()) => {
                    self.metrics
                        .latency
                        .with_label_values(&labels)
                        .observe(start.elapsed().as_secs_f64());
                    status.last_success_ms = status.last_attempt_ms;
                    status.last_error = None;
                    info!(receiver, integration = name, group = %group.group_key, alerts = group.alerts.len(), "Notification delivered");
                    return true;
                }
                Err((reason, message)) => {
                    self.metrics
                        .requests_failed
                        .with_label_values(&[receiver, name, reason])
                        .inc();
                    status.failed_attempts += 1;
                    status.last_error = Some(message.clone());
                    if Instant::now() + backoff >= deadline {
                        self.metrics
                            .notifications_failed
                            .with_label_values(&[receiver, name, reason])
                            .inc();
                        warn!(receiver, integration = name, group = %group.group_key, reason, err = %message, "Notification failed; giving up until the next flush");
                        return false;
                    }
                    debug!(receiver, integration = name, reason, err = %message, retry_in = ?backoff, "Notification failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn call(
        &self,
        integration: &NotifierPluginConfig,
        group: &plugins::AlertGroup,
    ) -> Result<(), (&'static str, String)> {
        let Some(manager) = self.plugins.read().clone() else {
            return Err(("no_plugin", "the plugin host is not running".into()));
        };
        let instance = manager
            .instance(&integration.plugin_use(), None, World::Notifier)
            .map_err(|e| ("no_plugin", e))?;
        instance
            .notify(group)
            .await
            .map_err(|e| (e.reason.as_str(), e.message))
    }

    /// Notifier plugin uses of the configuration in force (so the plugin
    /// host keeps their instances across reloads).
    pub fn plugin_uses(config: &NotificationsConfig) -> Vec<crate::plugins::PluginUse> {
        config
            .receivers
            .iter()
            .flat_map(|r| {
                r.plugin_configs
                    .iter()
                    .map(NotifierPluginConfig::plugin_use)
            })
            .collect()
    }
}

/// Puts an alert into the group of each route it matches, creating groups
/// as needed.
fn route_alert(inner: &mut Inner, alert: Arc<StoredAlert>, now: i64) {
    let Some(tree) = inner.tree.clone() else {
        return;
    };
    for route in tree.matching(&alert.labels) {
        let labels = route.group_by.group_labels(&alert.labels);
        let key = route.group_key(&labels);
        let id = (route.id.clone(), key.clone());
        let group = inner.groups.entry(id).or_insert_with(|| {
            debug!(group = %key, receiver = %route.receiver, labels = %label_set_string(&labels), "New aggregation group");
            Group {
                key,
                labels,
                alerts: HashMap::new(),
                next_flush_ms: now + route.group_wait.as_millis() as i64,
                has_flushed: false,
                flushing: false,
                last_flush_ms: None,
                integrations: Vec::new(),
                route: route.clone(),
            }
        });
        // An alert older than group_wait (e.g. after a restart or reload)
        // need not wait: the notification log decides what is new.
        if !group.has_flushed && alert.starts_at_ms + (route.group_wait.as_millis() as i64) < now {
            group.next_flush_ms = group.next_flush_ms.min(now);
        }
        group.alerts.insert(alert.fingerprint, alert.clone());
    }
}

/// Alertmanager's order: by `job`, then `instance`, then the label set.
fn sort_alerts(alerts: &mut [Arc<StoredAlert>]) {
    alerts.sort_by(|a, b| {
        let key = |x: &StoredAlert| {
            (
                x.labels.get("job").cloned(),
                x.labels.get("instance").cloned(),
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.labels.cmp(&b.labels))
    });
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

    #[test]
    fn fingerprints_match_alertmanager() {
        // Values computed with Go's model.LabelSet.Fingerprint().
        // Read from a real Alertmanager 0.25's /api/v2/alerts.
        assert_eq!(
            format!("{:016x}", fingerprint(&labels(&[("alertname", "Foo")]))),
            "f036cc237081686a"
        );
        assert_eq!(
            format!(
                "{:016x}",
                fingerprint(&labels(&[
                    ("alertname", "Foo"),
                    ("instance", "a:9100"),
                    ("severity", "critical")
                ]))
            ),
            "7fed1a9bfcc03f8a"
        );
        assert_eq!(fingerprint(&BTreeMap::new()), 0xcbf29ce484222325);
        assert_ne!(
            fingerprint(&labels(&[("a", "bc")])),
            fingerprint(&labels(&[("ab", "c")]))
        );
    }

    fn alert(l: &[(&str, &str)], starts: i64, ends: i64) -> OutgoingAlert {
        OutgoingAlert {
            labels: labels(l),
            annotations: BTreeMap::new(),
            starts_at_ms: starts,
            ends_at_ms: ends,
            generator_url: String::new(),
        }
    }

    fn dispatcher(yaml: &str) -> (tempfile::TempDir, Arc<Dispatcher>) {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::open(dir.path(), "http://ember".into(), None).unwrap();
        let cfg: NotificationsConfig = serde_yaml::from_str(yaml).unwrap();
        d.apply(Some(&cfg));
        (dir, d)
    }

    #[test]
    fn alerts_are_grouped_by_route_and_labels() {
        let (_dir, d) = dispatcher(
            "route:\n  receiver: a\n  group_by: [alertname]\n  routes:\n  - matchers: [team=db]\n    receiver: b\n    continue: true\nreceivers: [{name: a}, {name: b}]\n",
        );
        let now = now_ms();
        d.put(&[
            alert(&[("alertname", "X"), ("i", "1")], now, now + 60_000),
            alert(&[("alertname", "X"), ("i", "2")], now, now + 60_000),
            alert(&[("alertname", "Y"), ("team", "db")], now, now + 60_000),
        ]);
        let groups = d.groups();
        let summary: Vec<(String, String, usize)> = groups
            .iter()
            .map(|g| (g.receiver.clone(), g.group_key.clone(), g.alerts.len()))
            .collect();
        assert!(
            summary.contains(&("a".into(), "{}:{alertname=\"X\"}".into(), 2)),
            "{summary:?}"
        );
        assert!(
            summary.contains(&("b".into(), "{}/{team=\"db\"}:{alertname=\"Y\"}".into(), 1)),
            "{summary:?}"
        );
        // A matching child takes the alert from its parent, `continue` or not
        // (continue only walks on to the siblings).
        assert_eq!(summary.len(), 2, "{summary:?}");
        // New alerts wait group_wait (30s default); old ones flush at once.
        assert!(d.due(now + 1_000).is_empty());
        d.put(&[alert(&[("alertname", "Z")], now - 3_600_000, now + 60_000)]);
        let due = d.due(now + 1_000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, "{}:{alertname=\"Z\"}");
    }

    #[test]
    fn inhibited_and_silenced_alerts_are_muted() {
        let (_dir, d) = dispatcher(
            "route: {receiver: a}\ninhibit_rules:\n- source_matchers: [severity=critical]\n  target_matchers: [severity=warning]\n  equal: [alertname]\nreceivers: [{name: a}]\n",
        );
        let now = now_ms();
        d.put(&[
            alert(
                &[("alertname", "X"), ("severity", "critical")],
                now,
                now + 60_000,
            ),
            alert(
                &[("alertname", "X"), ("severity", "warning")],
                now,
                now + 60_000,
            ),
            alert(
                &[("alertname", "Y"), ("severity", "warning")],
                now,
                now + 60_000,
            ),
        ]);
        let muted: BTreeMap<String, bool> = d
            .alerts()
            .iter()
            .map(|(a, _)| {
                (
                    format!("{}/{}", a.labels["alertname"], a.labels["severity"]),
                    d.muted(a, now).is_muted(),
                )
            })
            .collect();
        assert!(!muted["X/critical"]);
        assert!(muted["X/warning"]);
        assert!(!muted["Y/warning"]);
        d.silences()
            .set(
                super::super::silence::NewSilence {
                    id: None,
                    matchers: vec![super::super::silence::SilenceMatcher {
                        name: "alertname".into(),
                        value: "Y".into(),
                        is_regex: false,
                        is_equal: true,
                    }],
                    starts_at_ms: now,
                    ends_at_ms: now + 60_000,
                    created_by: "t".into(),
                    comment: "c".into(),
                },
                now,
            )
            .unwrap();
        let y = d
            .alerts()
            .into_iter()
            .find(|(a, _)| a.labels["alertname"] == "Y")
            .unwrap()
            .0;
        assert_eq!(d.muted(&y, now + 1).silenced_by.len(), 1);
    }
}
