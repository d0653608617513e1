//! Runs one evaluation task per rule group and reconciles them with the
//! rule files on every reload: unchanged groups keep running, changed ones
//! restart with the state of their unchanged rules, removed ones stop and
//! mark their series stale.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::file::{self, GroupDef};
use super::group::{Group, NotifyFn, Shared};
use super::metrics::RuleMetrics;
use crate::config::Config;
use crate::promql::Engine;
use crate::storage::Storage;

/// Rule files as loaded from a configuration: `(file path, groups)`.
pub type LoadedRules = Vec<(String, Vec<GroupDef>)>;

/// Resolves `rule_files` globs against the config file's folder and loads
/// every file. Any invalid file fails the whole load, as in Prometheus.
pub fn load_rule_files(config: &Config, config_dir: &Path) -> Result<LoadedRules, String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pattern in &config.rule_files {
        let full = crate::config::resolve_path(config_dir, pattern);
        let mut paths: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
            .map_err(|e| format!("rule_files {pattern:?}: {e}"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            if !seen.insert(path.clone()) {
                continue;
            }
            let groups = file::load(&path).map_err(|e| e.to_string())?;
            out.push((path.display().to_string(), groups));
        }
    }
    Ok(out)
}

/// Settings from flags.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    pub external_url: String,
    pub for_outage_tolerance_ms: i64,
    pub for_grace_period_ms: i64,
    pub resend_delay_ms: i64,
}

struct Running {
    group: Arc<Group>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

pub struct RuleManager {
    engine: Engine,
    storage: Arc<Storage>,
    opts: ManagerOptions,
    notify: NotifyFn,
    metrics: RuleMetrics,
    running: tokio::sync::Mutex<BTreeMap<String, Running>>,
    /// The groups as the API lists them, in file then group order.
    view: Mutex<Vec<Arc<Group>>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl RuleManager {
    pub fn new(
        engine: Engine,
        storage: Arc<Storage>,
        opts: ManagerOptions,
        notify: NotifyFn,
        metrics: RuleMetrics,
    ) -> Arc<RuleManager> {
        Arc::new(RuleManager {
            engine,
            storage,
            opts,
            notify,
            metrics,
            running: tokio::sync::Mutex::new(BTreeMap::new()),
            view: Mutex::new(Vec::new()),
        })
    }

    /// The groups in force.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.view.lock().clone()
    }

    /// Applies loaded rule files under `config`'s global settings.
    pub async fn apply(&self, config: &Config, loaded: LoadedRules) {
        let shared = Arc::new(Shared {
            engine: self.engine.clone(),
            storage: self.storage.clone(),
            external_labels: config.global.external_labels.clone(),
            external_url: self.opts.external_url.clone(),
            for_outage_tolerance_ms: self.opts.for_outage_tolerance_ms,
            for_grace_period_ms: self.opts.for_grace_period_ms,
            resend_delay_ms: self.opts.resend_delay_ms,
            notify: self.notify.clone(),
            metrics: self.metrics.clone(),
        });
        let interval = config.global.evaluation_interval.as_millis() as i64;
        let offset = config.global.rule_query_offset.as_millis() as i64;
        let mut running = self.running.lock().await;
        let mut old: HashMap<String, Running> = std::mem::take(&mut *running).into_iter().collect();
        let mut view = Vec::new();
        for (path, groups) in loaded {
            for def in groups {
                let group = Group::new(path.clone(), def, interval, offset, shared.clone());
                let key = group.key();
                if let Some(prev) = old.remove(&key) {
                    let same = prev.group.def == group.def
                        && prev.group.interval_ms == group.interval_ms
                        && prev.group.query_offset_ms == group.query_offset_ms
                        && same_shared(&prev.group, &group);
                    if same && !prev.task.is_finished() {
                        view.push(prev.group.clone());
                        running.insert(key, prev);
                        continue;
                    }
                    // Wait for an evaluation in flight, then take over.
                    prev.stop.cancel();
                    let _ = prev.task.await;
                    group.copy_state(&prev.group);
                }
                let group = Arc::new(group);
                self.metrics
                    .interval
                    .with_label_values(&[&key])
                    .set(group.interval_ms as f64 / 1000.0);
                self.metrics
                    .rules
                    .with_label_values(&[&key])
                    .set(group.rules.len() as f64);
                let stop = CancellationToken::new();
                let task =
                    tokio::spawn(run_group(group.clone(), stop.clone(), self.metrics.clone()));
                view.push(group.clone());
                running.insert(key, Running { group, stop, task });
            }
        }
        // Groups no longer configured: stop, then mark their output stale.
        for (key, prev) in old {
            prev.stop.cancel();
            let _ = prev.task.await;
            prev.group.mark_all_stale(now_ms()).await;
            self.metrics.remove_group(&key);
            info!(group = %key, "Rule group removed");
        }
        *self.view.lock() = view;
    }

    /// Stops every group (at shutdown); their series are left as they are.
    pub async fn stop(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in std::mem::take(&mut *running) {
            r.stop.cancel();
            let _ = r.task.await;
        }
    }
}

fn same_shared(a: &Group, b: &Group) -> bool {
    a.shared().external_labels == b.shared().external_labels
}

/// Evaluates `group` on its interval at its aligned slots until stopped.
async fn run_group(group: Arc<Group>, stop: CancellationToken, metrics: RuleMetrics) {
    let interval = group.interval_ms;
    let key = group.key();
    let mut next = group.eval_timestamp(now_ms()) + interval;
    loop {
        let wait = (next - now_ms()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.cancelled() => return,
        }
        let now = now_ms();
        let missed = ((now - next) / interval).max(0);
        metrics
            .iterations
            .with_label_values(&[&key])
            .inc_by(1 + missed as u64);
        if missed > 0 {
            metrics
                .missed
                .with_label_values(&[&key])
                .inc_by(missed as u64);
            next += missed * interval;
        }
        group.eval(next).await;
        next += interval;
    }
}
