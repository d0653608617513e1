//! Keeps one scrape loop running per active target, for every job in the
//! configuration in force.
//!
//! Reconciliation is idempotent and runs on start, on every config reload
//! and every few seconds (to pick up `file_sd_configs` changes): targets
//! whose URL and labels are unchanged keep their loop, new ones start, and
//! removed ones stop, writing stale markers for their series.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::scrape_loop::{ScrapeLoop, SharedClient, TargetState};
use super::target::{Outcome, Target, populate};
use super::tls::{TlsFiles, client_config};
use crate::config::{Config, ScrapeConfig};
use crate::discovery::file::read_target_groups;
use crate::model::relabel::LabelMap;
use crate::plugins::{PluginManager, World};
use crate::storage::Storage;

/// How often file-based discovery is re-read.
const REDISCOVER_EVERY: Duration = Duration::from_secs(5);

struct RunningTarget {
    target: Target,
    state: Arc<Mutex<TargetState>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct Pool {
    cfg: Arc<ScrapeConfig>,
    client: SharedClient,
    /// What the client's TLS files held when it was built.
    tls_files: TlsFiles,
    /// The last error re-reading or applying changed TLS files, logged once.
    tls_error: Option<String>,
    running: HashMap<String, RunningTarget>,
    dropped: Vec<LabelMap>,
    invalid: Vec<(LabelMap, String)>,
    /// What discovery returned when the targets were last reconciled, so
    /// the periodic rediscovery skips relabeling every target again when
    /// nothing changed (at 1,000 targets that was a tenth of Ember's CPU).
    discovered: Vec<(LabelMap, LabelMap)>,
}

/// A target as the API and UI show it.
#[derive(Clone, Debug)]
pub struct TargetView {
    pub job: String,
    pub target: Target,
    pub state: TargetState,
}

pub struct ScrapeManager {
    storage: Arc<Storage>,
    config_dir: PathBuf,
    pools: Mutex<HashMap<String, Pool>>,
    plugins: std::sync::OnceLock<Arc<PluginManager>>,
    /// The last answer of every discoverer plugin, by `job/index`, with
    /// when it was asked.
    plugin_sd: Mutex<HashMap<String, (std::time::Instant, Vec<crate::plugins::TargetGroup>)>>,
}

/// How often a discoverer plugin is asked by default.
const PLUGIN_SD_REFRESH: Duration = Duration::from_secs(60);

fn client_for(cfg: &ScrapeConfig, tls_files: &TlsFiles) -> Result<reqwest::Client, String> {
    let http = &cfg.http_client;
    let tls = client_config(&http.tls_config, tls_files)?;
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(if http.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .user_agent(concat!("Ember/", env!("CARGO_PKG_VERSION")));
    if http.proxy_url.is_empty() {
        // Prometheus ignores HTTP_PROXY/HTTPS_PROXY unless configured to use
        // them; reqwest would read them by default.
        b = b.no_proxy();
    } else {
        b = b.proxy(reqwest::Proxy::all(&http.proxy_url).map_err(|e| format!("proxy_url: {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
}

/// Reads the job's TLS files and builds its client from them.
fn build_client(
    cfg: &ScrapeConfig,
    config_dir: &std::path::Path,
) -> Result<(reqwest::Client, TlsFiles), String> {
    let files = TlsFiles::read(&cfg.http_client.tls_config, config_dir)?;
    let client = client_for(cfg, &files)?;
    Ok((client, files))
}

/// Re-reads an unchanged job's TLS files (CA, client certificate and key)
/// and swaps in a new client when their contents changed, so rotated
/// certificates are picked up on reload and within a few seconds otherwise.
/// Running loops keep going; a file that cannot be used keeps the old client.
fn refresh_tls(pool: &mut Pool, config_dir: &std::path::Path) {
    let tls = &pool.cfg.http_client.tls_config;
    if tls.files().next().is_none() {
        return;
    }
    let result = TlsFiles::read(tls, config_dir).and_then(|files| {
        if files == pool.tls_files {
            return Ok(None);
        }
        client_for(&pool.cfg, &files).map(|c| Some((c, files)))
    });
    match result {
        Ok(None) => pool.tls_error = None,
        Ok(Some((client, files))) => {
            tracing::info!(job = %pool.cfg.job_name, "TLS files changed; using them for new connections");
            pool.client.replace(client);
            pool.tls_files = files;
            pool.tls_error = None;
        }
        Err(e) => {
            if pool.tls_error.as_ref() != Some(&e) {
                tracing::error!(job = %pool.cfg.job_name, err = %e, "Cannot use changed TLS files; keeping the previous ones");
            }
            pool.tls_error = Some(e);
        }
    }
}

impl ScrapeManager {
    pub fn new(storage: Arc<Storage>, config_dir: PathBuf) -> Arc<ScrapeManager> {
        Arc::new(ScrapeManager {
            storage,
            config_dir,
            pools: Mutex::new(HashMap::new()),
            plugins: std::sync::OnceLock::new(),
            plugin_sd: Mutex::new(HashMap::new()),
        })
    }

    /// Enables exporter plugins (`plugin:`) and discoverer plugins
    /// (`plugin_sd_configs`).
    pub fn set_plugins(&self, plugins: Arc<PluginManager>) {
        let _ = self.plugins.set(plugins);
    }

    /// Asks every discoverer plugin whose refresh interval has passed for
    /// its targets. A failing discoverer keeps its previous targets.
    async fn refresh_plugin_sd(&self, config: &Config) {
        let Some(plugins) = self.plugins.get() else {
            return;
        };
        let mut wanted = std::collections::HashSet::new();
        let mut due = Vec::new();
        for cfg in &config.scrape_configs {
            for (i, sd) in cfg.plugin_sd_configs.iter().enumerate() {
                let key = format!("{}/{i}", cfg.job_name);
                wanted.insert(key.clone());
                let every = sd
                    .refresh_interval
                    .map_or(PLUGIN_SD_REFRESH, |d| d.as_duration());
                let is_due = self
                    .plugin_sd
                    .lock()
                    .get(&key)
                    .is_none_or(|(at, _)| at.elapsed() >= every);
                if is_due {
                    due.push((key, cfg.job_name.clone(), sd.clone()));
                }
            }
        }
        // Discoverers run concurrently, so a slow one delays the others by
        // no more than its own deadline.
        let results = futures::future::join_all(due.into_iter().map(|(key, job, sd)| async move {
            let groups = match plugins.instance(&sd, None, World::Discoverer) {
                Ok(instance) => instance.discover().await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            (key, job, sd.name, groups)
        }))
        .await;
        {
            let mut cache = self.plugin_sd.lock();
            for (key, job, plugin, groups) in results {
                match groups {
                    Ok(groups) => {
                        cache.insert(key, (std::time::Instant::now(), groups));
                    }
                    Err(e) => {
                        tracing::warn!(job = %job, plugin = %plugin, err = %e, "Discoverer plugin failed; keeping its previous targets");
                        let entry = cache
                            .entry(key)
                            .or_insert_with(|| (std::time::Instant::now(), Vec::new()));
                        entry.0 = std::time::Instant::now();
                    }
                }
            }
        }
        self.plugin_sd.lock().retain(|k, _| wanted.contains(k));
    }

    /// Runs until `stop`: applies every configuration and rediscovers periodically.
    pub async fn run(
        self: Arc<Self>,
        mut config: watch::Receiver<Arc<Config>>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(REDISCOVER_EVERY);
        loop {
            let current = config.borrow_and_update().clone();
            self.refresh_plugin_sd(&current).await;
            self.apply(&current);
            tokio::select! {
                _ = tick.tick() => {}
                changed = config.changed() => if changed.is_err() { break },
                _ = stop.cancelled() => break,
            }
        }
        self.stop_all().await;
    }

    /// Targets discovered for one job: (group labels, address labels) pairs.
    fn discover(&self, cfg: &ScrapeConfig) -> Vec<(LabelMap, LabelMap)> {
        let mut out = Vec::new();
        let address = |t: &str| LabelMap::from([("__address__".to_owned(), t.to_owned())]);
        for sc in &cfg.static_configs {
            let group: LabelMap = sc.labels.clone().into_iter().collect();
            out.extend(sc.targets.iter().map(|t| (group.clone(), address(t))));
        }
        for sd in &cfg.file_sd_configs {
            for pattern in &sd.files {
                let full = crate::config::resolve_path(&self.config_dir, pattern);
                let Ok(paths) = glob::glob(&full.to_string_lossy()) else {
                    continue;
                };
                for path in paths.filter_map(Result::ok) {
                    match read_target_groups(&path) {
                        Ok(groups) => {
                            for g in groups {
                                let mut group: LabelMap = g.labels.into_iter().collect();
                                group.insert("__meta_filepath".into(), path.display().to_string());
                                out.extend(g.targets.iter().map(|t| (group.clone(), address(t))));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(job = %cfg.job_name, err = %e, "Cannot read file_sd target file")
                        }
                    }
                }
            }
        }
        let sd_cache = self.plugin_sd.lock();
        for (i, sd) in cfg.plugin_sd_configs.iter().enumerate() {
            let Some((_, groups)) = sd_cache.get(&format!("{}/{i}", cfg.job_name)) else {
                continue;
            };
            for g in groups {
                let mut group: LabelMap = g
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                group.insert("__meta_plugin".into(), sd.name.clone());
                out.extend(g.targets.iter().map(|t| (group.clone(), address(t))));
            }
        }
        drop(sd_cache);
        // A plugin job without any discovery has one target named after
        // the plugin.
        if let Some(plugin) = &cfg.plugin
            && cfg.static_configs.is_empty()
            && cfg.file_sd_configs.is_empty()
            && cfg.plugin_sd_configs.is_empty()
        {
            out.push((LabelMap::new(), address(&plugin.name)));
        }
        out
    }

    /// Brings running loops in line with `config`.
    pub fn apply(&self, config: &Config) {
        let mut pools = self.pools.lock();
        pools.retain(|job, pool| {
            let keep = config.scrape_configs.iter().any(|c| &c.job_name == job);
            if !keep {
                for (_, t) in pool.running.drain() {
                    t.stop.cancel();
                }
            }
            keep
        });
        for cfg in &config.scrape_configs {
            let changed = pools.get(&cfg.job_name).is_none_or(|p| *p.cfg != *cfg);
            if changed {
                let (client, tls_files) = match build_client(cfg, &self.config_dir) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(job = %cfg.job_name, err = %e, "Cannot build the HTTP client; job not scraped");
                        continue;
                    }
                };
                if let Some(old) = pools.remove(&cfg.job_name) {
                    for (_, t) in old.running {
                        t.stop.cancel();
                    }
                }
                pools.insert(
                    cfg.job_name.clone(),
                    Pool {
                        cfg: Arc::new(cfg.clone()),
                        client: SharedClient::new(client, &self.config_dir),
                        tls_files,
                        tls_error: None,
                        running: HashMap::new(),
                        dropped: Vec::new(),
                        invalid: Vec::new(),
                        discovered: Vec::new(),
                    },
                );
            }
            let discovered = self.discover(cfg);
            let Some(pool) = pools.get_mut(&cfg.job_name) else {
                continue;
            };
            if !changed {
                refresh_tls(pool, &self.config_dir);
                if pool.discovered == discovered {
                    continue;
                }
            }
            let mut wanted: HashMap<String, Target> = HashMap::new();
            pool.dropped.clear();
            pool.invalid.clear();
            for (group, addr) in &discovered {
                match populate(group, addr, &pool.cfg) {
                    Outcome::Active(t) => {
                        wanted.insert(format!("{}|{}", t.url, t.labels), t);
                    }
                    Outcome::Dropped { discovered } => pool.dropped.push(discovered),
                    Outcome::Invalid { discovered, error } => {
                        tracing::warn!(job = %cfg.job_name, err = %error, "Invalid target");
                        pool.invalid.push((discovered, error));
                    }
                }
            }
            pool.running.retain(|key, t| {
                let keep = wanted.contains_key(key);
                if !keep {
                    t.stop.cancel();
                }
                keep
            });
            for (key, target) in wanted {
                if pool.running.contains_key(&key) {
                    continue;
                }
                let stop = CancellationToken::new();
                let lp = ScrapeLoop::new(
                    target.clone(),
                    pool.cfg.clone(),
                    self.storage.clone(),
                    pool.client.clone(),
                )
                .with_plugins(self.plugins.get().cloned());
                let state = lp.state.clone();
                let task = tokio::spawn(lp.run(stop.clone()));
                pool.running.insert(
                    key,
                    RunningTarget {
                        target,
                        state,
                        stop,
                        task,
                    },
                );
            }
            pool.discovered = discovered;
        }
    }

    /// Stops every loop and waits for their stale markers to be written.
    pub async fn stop_all(&self) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut pools = self.pools.lock();
            pools
                .drain()
                .flat_map(|(_, p)| p.running.into_values())
                .map(|t| {
                    t.stop.cancel();
                    t.task
                })
                .collect()
        };
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Targets that relabeling dropped, per job (discovered labels), for the
    /// targets API; jobs are sorted by name.
    pub fn dropped_targets(&self) -> Vec<(String, Vec<LabelMap>)> {
        let pools = self.pools.lock();
        let mut out: Vec<(String, Vec<LabelMap>)> = pools
            .iter()
            .map(|(job, p)| (job.clone(), p.dropped.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every active target with its current state.
    pub fn targets(&self) -> Vec<TargetView> {
        let pools = self.pools.lock();
        let mut out: Vec<TargetView> = pools
            .iter()
            .flat_map(|(job, p)| {
                p.running.values().map(move |t| TargetView {
                    job: job.clone(),
                    target: t.target.clone(),
                    state: t.state.lock().clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.job, &a.target.url).cmp(&(&b.job, &b.target.url)));
        out
    }
}
