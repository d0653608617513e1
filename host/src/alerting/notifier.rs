//! Sends alerts to Alertmanagers (`POST <am><path_prefix>/api/v2/alerts`),
//! as Prometheus's notifier does: external labels added, then
//! `alert_relabel_configs`; a bounded queue that drops the oldest alerts
//! when full (counted); batches of at most 64 alerts sent to every
//! discovered Alertmanager at once.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, Opts, Registry};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::alerting::{AlertingConfig, AlertmanagerConfig};
use crate::config::scrape::Scheme;
use crate::config::{Config, resolve_path};
use crate::discovery::file::read_target_groups;
use crate::model::relabel::{LabelMap, process};
use crate::rules::group::OutgoingAlert;
use crate::scrape::tls::{TlsFiles, client_config};

/// Alerts per request, as in Prometheus.
const MAX_BATCH: usize = 64;
/// How often file-discovered Alertmanagers are re-read.
const REDISCOVER_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct NotifierMetrics {
    sent: IntCounterVec,
    errors: IntCounterVec,
    latency: GaugeVec,
    dropped: IntCounter,
    queue_length: Gauge,
    queue_capacity: Gauge,
    discovered: Gauge,
}

impl NotifierMetrics {
    fn new(registry: Option<&Registry>, capacity: usize) -> Result<Self, prometheus::Error> {
        let m = NotifierMetrics {
            sent: IntCounterVec::new(
                Opts::new(
                    "ember_notifications_sent_total",
                    "Total number of alerts sent.",
                ),
                &["alertmanager"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "ember_notifications_errors_total",
                    "Total number of sent alerts affected by errors.",
                ),
                &["alertmanager"],
            )?,
            latency: GaugeVec::new(
                Opts::new(
                    "ember_notifications_latency_seconds",
                    "Latency of the last request sending alerts to an Alertmanager.",
                ),
                &["alertmanager"],
            )?,
            dropped: IntCounter::new(
                "ember_notifications_dropped_total",
                "Total number of alerts dropped due to errors when sending to Alertmanager or a full queue.",
            )?,
            queue_length: Gauge::new(
                "ember_notifications_queue_length",
                "The number of alert notifications in the queue.",
            )?,
            queue_capacity: Gauge::new(
                "ember_notifications_queue_capacity",
                "The capacity of the alert notifications queue.",
            )?,
            discovered: Gauge::new(
                "ember_notifications_alertmanagers_discovered",
                "The number of alertmanagers discovered and active.",
            )?,
        };
        m.queue_capacity.set(capacity as f64);
        if let Some(r) = registry {
            r.register(Box::new(m.sent.clone()))?;
            r.register(Box::new(m.errors.clone()))?;
            r.register(Box::new(m.latency.clone()))?;
            r.register(Box::new(m.dropped.clone()))?;
            r.register(Box::new(m.queue_length.clone()))?;
            r.register(Box::new(m.queue_capacity.clone()))?;
            r.register(Box::new(m.discovered.clone()))?;
        }
        Ok(m)
    }
}

/// One `alertmanagers` entry: its client and the Alertmanagers it found.
struct AmSet {
    cfg: AlertmanagerConfig,
    client: Option<reqwest::Client>,
    active: Vec<String>,
    dropped: Vec<String>,
}

struct Settings {
    external_labels: BTreeMap<String, String>,
    alerting: AlertingConfig,
}

pub struct Notifier {
    queue: Mutex<VecDeque<OutgoingAlert>>,
    capacity: usize,
    wake: Notify,
    sets: RwLock<Vec<AmSet>>,
    settings: RwLock<Settings>,
    config_dir: PathBuf,
    metrics: NotifierMetrics,
}

/// An Alertmanager URL as `/api/v1/alertmanagers` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertmanagerView {
    pub active: Vec<String>,
    pub dropped: Vec<String>,
}

impl Notifier {
    pub fn new(
        capacity: usize,
        config_dir: PathBuf,
        registry: Option<&Registry>,
    ) -> Result<Arc<Notifier>, prometheus::Error> {
        Ok(Arc::new(Notifier {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: Notify::new(),
            sets: RwLock::new(Vec::new()),
            settings: RwLock::new(Settings {
                external_labels: BTreeMap::new(),
                alerting: AlertingConfig::default(),
            }),
            config_dir,
            metrics: NotifierMetrics::new(registry, capacity)?,
        }))
    }

    /// Takes the `alerting` section and external labels of `config`.
    pub fn apply(&self, config: &Config) {
        {
            let mut s = self.settings.write();
            s.external_labels = config.global.external_labels.clone();
            s.alerting = config.alerting.clone();
        }
        let sets = config
            .alerting
            .alertmanagers
            .iter()
            .map(|cfg| {
                let client = match build_client(cfg, &self.config_dir) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        warn!(err = %e, "Cannot build the Alertmanager client");
                        None
                    }
                };
                let (active, dropped) = self.discover(cfg);
                AmSet {
                    cfg: cfg.clone(),
                    client,
                    active,
                    dropped,
                }
            })
            .collect();
        *self.sets.write() = sets;
        self.update_discovered();
    }

    fn update_discovered(&self) {
        let n: usize = self.sets.read().iter().map(|s| s.active.len()).sum();
        self.metrics.discovered.set(n as f64);
    }

    /// Alertmanager URLs from static and file discovery, after `relabel_configs`.
    fn discover(&self, cfg: &AlertmanagerConfig) -> (Vec<String>, Vec<String>) {
        let mut groups = cfg.static_configs.clone();
        for sd in &cfg.file_sd_configs {
            for pattern in &sd.files {
                let full = resolve_path(&self.config_dir, pattern);
                let Ok(paths) = glob::glob(&full.to_string_lossy()) else {
                    continue;
                };
                for path in paths.filter_map(Result::ok) {
                    match read_target_groups(&path) {
                        Ok(g) => groups.extend(g),
                        Err(e) => warn!(err = %e, "Reading Alertmanager targets failed"),
                    }
                }
            }
        }
        let scheme = match cfg.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let alerts_path =
            format!("/{}/api/v2/alerts", cfg.path_prefix.trim_matches('/')).replace("//", "/");
        let (mut active, mut dropped) = (Vec::new(), Vec::new());
        for g in groups {
            for t in &g.targets {
                let mut labels: LabelMap = g.labels.clone();
                labels.insert("__address__".into(), t.clone());
                labels.insert("__scheme__".into(), scheme.into());
                labels.insert("__alerts_path__".into(), alerts_path.clone());
                let url = |l: &LabelMap| {
                    format!(
                        "{}://{}{}",
                        l.get("__scheme__").map_or("http", String::as_str),
                        l.get("__address__").map_or("", String::as_str),
                        l.get("__alerts_path__").map_or("", String::as_str)
                    )
                };
                let before = url(&labels);
                if process(&mut labels, &cfg.relabel_configs)
                    && labels.get("__address__").is_some_and(|a| !a.is_empty())
                {
                    let u = url(&labels);
                    if !active.contains(&u) {
                        active.push(u);
                    }
                } else {
                    dropped.push(before);
                }
            }
        }
        (active, dropped)
    }

    pub fn alertmanagers(&self) -> AlertmanagerView {
        let sets = self.sets.read();
        AlertmanagerView {
            active: sets.iter().flat_map(|s| s.active.clone()).collect(),
            dropped: sets.iter().flat_map(|s| s.dropped.clone()).collect(),
        }
    }

    /// Queues alerts for sending, after external labels and relabeling.
    pub fn send(&self, alerts: Vec<OutgoingAlert>) {
        let alerts = self.prepare(alerts);
        self.enqueue(alerts);
    }

    /// External labels and `alert_relabel_configs` applied, as every
    /// destination (Alertmanagers, the built-in routing) gets them.
    pub fn prepare(&self, alerts: Vec<OutgoingAlert>) -> Vec<OutgoingAlert> {
        let s = self.settings.read();
        alerts
            .into_iter()
            .filter_map(|mut a| {
                for (k, v) in &s.external_labels {
                    a.labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
                if !process(&mut a.labels, &s.alerting.alert_relabel_configs) {
                    return None;
                }
                a.labels.retain(|_, v| !v.is_empty());
                (!a.labels.is_empty()).then_some(a)
            })
            .collect()
    }

    /// Queues prepared alerts for the Alertmanagers.
    pub fn enqueue(&self, mut alerts: Vec<OutgoingAlert>) {
        if alerts.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        if alerts.len() > self.capacity {
            let extra = alerts.len() - self.capacity;
            alerts.drain(..extra);
            self.metrics.dropped.inc_by(extra as u64);
        }
        let overflow = (q.len() + alerts.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            q.drain(..overflow);
            self.metrics.dropped.inc_by(overflow as u64);
            warn!(
                dropped = overflow,
                "Alert notification queue full, dropping alerts"
            );
        }
        q.extend(alerts);
        self.metrics.queue_length.set(q.len() as f64);
        drop(q);
        self.wake.notify_one();
    }

    /// Sends queued alerts until shut down; re-reads file discovery meanwhile.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut rediscover = tokio::time::interval(REDISCOVER_EVERY);
        rediscover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = rediscover.tick() => {
                    self.refresh_discovery();
                }
                _ = shutdown.cancelled() => {
                    // Flush what is queued, briefly.
                    let _ = tokio::time::timeout(Duration::from_secs(5), self.drain()).await;
                    return;
                }
            }
            self.drain().await;
        }
    }

    fn refresh_discovery(&self) {
        let mut sets = self.sets.write();
        for set in sets.iter_mut() {
            if set.cfg.file_sd_configs.is_empty() {
                continue;
            }
            let (active, dropped) = self.discover(&set.cfg);
            set.active = active;
            set.dropped = dropped;
        }
        drop(sets);
        self.update_discovered();
    }

    async fn drain(&self) {
        loop {
            let batch: Vec<OutgoingAlert> = {
                let mut q = self.queue.lock();
                let n = q.len().min(MAX_BATCH);
                let b = q.drain(..n).collect();
                self.metrics.queue_length.set(q.len() as f64);
                b
            };
            if batch.is_empty() {
                return;
            }
            self.send_batch(&batch).await;
        }
    }

    async fn send_batch(&self, batch: &[OutgoingAlert]) {
        let body = serde_json::to_vec(&batch.iter().map(alert_json).collect::<Vec<_>>())
            .unwrap_or_default();
        let targets: Vec<(String, reqwest::Client, AlertmanagerConfig)> = self
            .sets
            .read()
            .iter()
            .filter_map(|s| s.client.clone().map(|c| (s, c)))
            .flat_map(|(s, c)| {
                s.active
                    .iter()
                    .map(move |u| (u.clone(), c.clone(), s.cfg.clone()))
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let sends = targets.into_iter().map(|(url, client, cfg)| {
            let body = body.clone();
            async move {
                let start = Instant::now();
                let res = post(&client, &cfg, &url, body, &self.config_dir).await;
                self.metrics
                    .latency
                    .with_label_values(&[&url])
                    .set(start.elapsed().as_secs_f64());
                match res {
                    Ok(()) => {
                        self.metrics
                            .sent
                            .with_label_values(&[&url])
                            .inc_by(batch.len() as u64);
                        debug!(alertmanager = %url, count = batch.len(), "Sent alerts");
                        true
                    }
                    Err(e) => {
                        self.metrics
                            .errors
                            .with_label_values(&[&url])
                            .inc_by(batch.len() as u64);
                        warn!(alertmanager = %url, count = batch.len(), err = %e, "Error sending alerts");
                        false
                    }
                }
            }
        });
        let results = futures::future::join_all(sends).await;
        if !results.iter().any(|ok| *ok) {
            self.metrics.dropped.inc_by(batch.len() as u64);
        }
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn alert_json(a: &OutgoingAlert) -> serde_json::Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at_ms),
        "endsAt": rfc3339(a.ends_at_ms),
        "generatorURL": a.generator_url,
    })
}

fn build_client(
    cfg: &AlertmanagerConfig,
    config_dir: &std::path::Path,
) -> Result<reqwest::Client, String> {
    let http = &cfg.http_client;
    let files = TlsFiles::read(&http.tls_config, config_dir)?;
    let tls = client_config(&http.tls_config, &files)?;
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(cfg.timeout.as_duration())
        .redirect(if http.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .user_agent(concat!("Ember/", env!("CARGO_PKG_VERSION")));
    if http.proxy_url.is_empty() {
        b = b.no_proxy();
    } else {
        b = b.proxy(reqwest::Proxy::all(&http.proxy_url).map_err(|e| format!("proxy_url: {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
}

async fn post(
    client: &reqwest::Client,
    cfg: &AlertmanagerConfig,
    url: &str,
    body: Vec<u8>,
    config_dir: &std::path::Path,
) -> Result<(), String> {
    let http = &cfg.http_client;
    let mut req = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body);
    let read = |f: &str| {
        std::fs::read_to_string(resolve_path(config_dir, f))
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("unable to read {f}: {e}"))
    };
    if let Some(b) = &http.basic_auth {
        let password = if b.password_file.is_empty() {
            b.password.expose().to_owned()
        } else {
            read(&b.password_file)?
        };
        req = req.basic_auth(&b.username, Some(password));
    }
    if let Some(a) = &http.authorization {
        let credentials = if a.credentials_file.is_empty() {
            a.credentials.expose().to_owned()
        } else {
            read(&a.credentials_file)?
        };
        req = req.header("Authorization", format!("{} {credentials}", a.kind));
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("bad response status {status}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str) -> OutgoingAlert {
        OutgoingAlert {
            labels: BTreeMap::from([("alertname".into(), name.into())]),
            annotations: BTreeMap::new(),
            starts_at_ms: 0,
            ends_at_ms: 1,
            generator_url: String::new(),
        }
    }

    #[test]
    fn full_queue_drops_oldest() {
        let n = Notifier::new(2, PathBuf::from("."), None).unwrap();
        n.send(vec![alert("a"), alert("b")]);
        n.send(vec![alert("c")]);
        let q = n.queue.lock();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].labels["alertname"], "b");
        assert_eq!(n.metrics.dropped.get(), 1);
    }

    #[test]
    fn external_labels_and_relabeling() {
        let n = Notifier::new(10, PathBuf::from("."), None).unwrap();
        let config = Config::parse(
            "global:\n  external_labels: {dc: eu, alertname: x}\nalerting:\n  alert_relabel_configs:\n  - source_labels: [alertname]\n    regex: drop\n    action: drop\n  alertmanagers:\n  - path_prefix: /am\n    static_configs: [{targets: ['a:9093', 'b:9093']}]\n    relabel_configs:\n    - source_labels: [__address__]\n      regex: b.*\n      action: drop\n",
            std::path::Path::new("x.yml"),
        )
        .unwrap();
        n.apply(&config);
        n.send(vec![alert("keep"), alert("drop")]);
        let q = n.queue.lock();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].labels["dc"], "eu");
        assert_eq!(q[0].labels["alertname"], "keep");
        let v = n.alertmanagers();
        assert_eq!(v.active, ["http://a:9093/am/api/v2/alerts"]);
        assert_eq!(v.dropped, ["http://b:9093/am/api/v2/alerts"]);
    }
}
