//! The plugin directory: loading, reload, per-plugin metrics and status.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::Serialize;

use super::runtime::{Loaded, Runtime, World};
use super::{CallError, PluginInstance, PluginUse};

/// Per-plugin metrics, labelled by plugin name.
#[derive(Clone)]
pub struct PluginMetrics {
    pub calls: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
    pub restarts: IntCounterVec,
    pub memory: IntGaugeVec,
    pub info: IntGaugeVec,
    pub load_errors: IntCounterVec,
}

impl PluginMetrics {
    pub fn new(registry: &Registry) -> Result<PluginMetrics, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "ember_plugin_calls_total",
                "Calls into plugins, by plugin and function.",
            ),
            &["plugin", "function"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "ember_plugin_errors_total",
                "Failed plugin calls, by plugin and reason (timeout, out_of_memory, panic, trap, forbidden_host, output_limit, plugin_error, init, invalid_output).",
            ),
            &["plugin", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ember_plugin_call_duration_seconds",
                "Duration of plugin calls.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
            ]),
            &["plugin", "function"],
        )?;
        let restarts = IntCounterVec::new(
            Opts::new(
                "ember_plugin_instance_restarts_total",
                "Plugin instances thrown away after a fault (replaced on the next call).",
            ),
            &["plugin"],
        )?;
        let memory = IntGaugeVec::new(
            Opts::new(
                "ember_plugin_memory_bytes",
                "Linear memory of the plugin's instance after its last call.",
            ),
            &["plugin"],
        )?;
        let info = IntGaugeVec::new(
            Opts::new(
                "ember_plugin_info",
                "Loaded plugins, with their version and world.",
            ),
            &["plugin", "version", "world"],
        )?;
        let load_errors = IntCounterVec::new(
            Opts::new(
                "ember_plugin_load_errors_total",
                "Plugin files that could not be loaded.",
            ),
            &["plugin"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(memory.clone()))?;
        registry.register(Box::new(info.clone()))?;
        registry.register(Box::new(load_errors.clone()))?;
        Ok(PluginMetrics {
            calls,
            errors,
            duration,
            restarts,
            memory,
            info,
            load_errors,
        })
    }
}

/// How a plugin's calls have gone lately.
#[derive(Default)]
pub struct Health {
    pub last_call: Option<SystemTime>,
    pub last_ok: bool,
    pub last_error: Option<CallError>,
    /// Calls of this version of the plugin (all uses), for the status page.
    pub calls: u64,
    /// Failed calls, including output rejected after a call.
    pub errors: u64,
    /// Time spent in calls, seconds.
    pub call_seconds: f64,
}

struct Entry {
    path: PathBuf,
    loaded: Loaded,
    modified: Option<SystemTime>,
    health: Arc<Mutex<Health>>,
    /// A newer file that failed to load while this version keeps running.
    load_error: Option<String>,
}

/// One row of `/api/v1/status/plugins` and `ember plugin list`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    pub name: String,
    pub file: String,
    pub version: String,
    pub world: Option<World>,
    pub description: String,
    /// `ok`, `failing` (last call failed), `unknown` (never called),
    /// `broken` (the file does not load).
    pub health: &'static str,
    pub last_error: Option<String>,
    pub last_error_reason: Option<&'static str>,
    pub last_call: Option<String>,
    /// Set when a newer file failed to load and this version keeps running.
    pub load_error: Option<String>,
    pub hash: String,
    pub wants_hosts: Vec<String>,
    pub wants_directories: Vec<String>,
    /// Calls since this version loaded (`ember_plugin_calls_total` has them
    /// by function).
    pub calls: u64,
    pub errors: u64,
    /// Mean call duration in seconds; none before the first call.
    pub mean_call_seconds: Option<f64>,
}

pub struct PluginManager {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    metrics: PluginMetrics,
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Files that never loaded: name → (file, error).
    broken: RwLock<BTreeMap<String, (PathBuf, String)>>,
    instances: Mutex<HashMap<String, Arc<PluginInstance>>>,
}

impl PluginManager {
    /// A manager for `dir` (not scanned yet). Compiled components are cached
    /// under `cache_dir`.
    pub fn new(
        dir: PathBuf,
        cache_dir: Option<PathBuf>,
        registry: &Registry,
    ) -> anyhow::Result<Arc<PluginManager>> {
        let runtime = Runtime::new(cache_dir)?;
        let metrics = PluginMetrics::new(registry)?;
        Ok(Arc::new(PluginManager {
            runtime,
            dir,
            metrics,
            entries: RwLock::new(BTreeMap::new()),
            broken: RwLock::new(BTreeMap::new()),
            instances: Mutex::new(HashMap::new()),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Scans the directory: loads new and changed `.wasm` files, forgets
    /// removed ones. A file that fails to load is reported (returned and
    /// logged) and the previous version, if any, keeps running.
    pub async fn rescan(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                for entry in rd.flatten() {
                    let path = entry.path();
                    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                        continue;
                    }
                    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                        found.insert(stem.to_owned(), path);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!(
                "reading plugin directory {}: {e}",
                self.dir.display()
            )),
        }

        for (name, path) in &found {
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let unchanged =
                self.entries.read().get(name).is_some_and(|e| {
                    e.path == *path && e.modified == modified && modified.is_some()
                });
            if unchanged {
                continue;
            }
            let result = match std::fs::read(path) {
                Ok(bytes) => self.runtime.load(bytes).await.map_err(|e| format!("{e:#}")),
                Err(e) => Err(format!("reading: {e}")),
            };
            match result {
                Ok(loaded) => {
                    let same = self
                        .entries
                        .read()
                        .get(name)
                        .is_some_and(|e| e.loaded.hash == loaded.hash);
                    tracing::info!(plugin = %name, world = loaded.world.as_str(), version = %loaded.info.version, cached = loaded.cached, "Loaded plugin");
                    self.broken.write().remove(name);
                    let mut entries = self.entries.write();
                    let health = match entries.get(name) {
                        Some(old) if same => old.health.clone(),
                        _ => Arc::default(),
                    };
                    if let Some(old) = entries.get(name) {
                        let _ = self.metrics.info.remove_label_values(&[
                            name,
                            &old.loaded.info.version,
                            old.loaded.world.as_str(),
                        ]);
                    }
                    self.metrics
                        .info
                        .with_label_values(&[name, &loaded.info.version, loaded.world.as_str()])
                        .set(1);
                    entries.insert(
                        name.clone(),
                        Entry {
                            path: path.clone(),
                            loaded,
                            modified,
                            health,
                            load_error: None,
                        },
                    );
                }
                Err(e) => {
                    self.metrics.load_errors.with_label_values(&[name]).inc();
                    let mut entries = self.entries.write();
                    if let Some(old) = entries.get_mut(name) {
                        tracing::error!(plugin = %name, file = %path.display(), err = %e, "Cannot load changed plugin; the previous version keeps running");
                        old.load_error = Some(e.clone());
                        old.modified = modified;
                    } else {
                        tracing::error!(plugin = %name, file = %path.display(), err = %e, "Cannot load plugin");
                        self.broken
                            .write()
                            .insert(name.clone(), (path.clone(), e.clone()));
                    }
                    problems.push(format!("plugin {name} ({}): {e}", path.display()));
                }
            }
        }

        // Removed files.
        let mut entries = self.entries.write();
        let gone: Vec<String> = entries
            .keys()
            .filter(|n| !found.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = entries.remove(&name) {
                tracing::info!(plugin = %name, "Plugin file removed; unloading");
                let _ = self.metrics.info.remove_label_values(&[
                    &name,
                    &old.loaded.info.version,
                    old.loaded.world.as_str(),
                ]);
            }
        }
        self.broken.write().retain(|n, _| found.contains_key(n));
        // Instances of changed or removed plugins are rebuilt on next use.
        self.instances.lock().retain(|_, inst| {
            entries
                .get(inst.name())
                .is_some_and(|e| e.loaded.hash == inst.hash())
        });
        problems
    }

    /// The world of a loaded plugin.
    pub fn world(&self, name: &str) -> Option<World> {
        self.entries.read().get(name).map(|e| e.loaded.world)
    }

    /// The instance for a use of a plugin (shared by identical uses).
    pub fn instance(
        &self,
        plugin: &PluginUse,
        max_timeout: Option<std::time::Duration>,
        want: World,
    ) -> Result<Arc<PluginInstance>, String> {
        let entries = self.entries.read();
        let Some(entry) = entries.get(&plugin.name) else {
            return Err(match self.broken.read().get(&plugin.name) {
                Some((_, e)) => format!("plugin {:?} does not load: {e}", plugin.name),
                None => format!("no plugin {:?} in {}", plugin.name, self.dir.display()),
            });
        };
        if entry.loaded.world != want {
            return Err(format!(
                "plugin {:?} is a {}, not a {}",
                plugin.name,
                entry.loaded.world.as_str(),
                want.as_str()
            ));
        }
        let settings = plugin.settings(max_timeout);
        let key = format!("{}\0{}\0{settings:?}", plugin.name, entry.loaded.hash);
        let mut instances = self.instances.lock();
        let instance = instances
            .entry(key)
            .or_insert_with(|| {
                Arc::new(PluginInstance::new(
                    self.runtime.clone(),
                    entry.loaded.clone(),
                    settings,
                    self.metrics.clone(),
                    entry.health.clone(),
                ))
            })
            .clone();
        Ok(instance)
    }

    /// Drops instances no current config uses (called after a reload).
    pub fn retain_instances(&self, keep: impl Fn(&PluginInstance) -> bool) {
        self.instances.lock().retain(|_, i| keep(i));
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        let mut out = Vec::new();
        for (name, entry) in self.entries.read().iter() {
            let health = entry.health.lock();
            let (state, last_error, reason) =
                match (&health.last_call, health.last_ok, &health.last_error) {
                    (None, _, _) => ("unknown", None, None),
                    (Some(_), true, e) => (
                        "ok",
                        e.as_ref().map(|e| e.message.clone()),
                        e.as_ref().map(|e| e.reason.as_str()),
                    ),
                    (Some(_), false, e) => (
                        "failing",
                        e.as_ref().map(|e| e.message.clone()),
                        e.as_ref().map(|e| e.reason.as_str()),
                    ),
                };
            let info = &entry.loaded.info;
            out.push(PluginStatus {
                name: name.clone(),
                file: entry.path.display().to_string(),
                version: info.version.clone(),
                world: Some(entry.loaded.world),
                description: info.description.clone(),
                health: state,
                last_error,
                last_error_reason: reason,
                last_call: health.last_call.map(|t| {
                    chrono::DateTime::<chrono::Utc>::from(t)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                }),
                load_error: entry.load_error.clone(),
                hash: entry.loaded.hash.clone(),
                wants_hosts: info.wants_hosts.clone(),
                wants_directories: info.wants_directories.clone(),
                calls: health.calls,
                errors: health.errors,
                mean_call_seconds: (health.calls > 0)
                    .then(|| health.call_seconds / health.calls as f64),
            });
        }
        for (name, (file, error)) in self.broken.read().iter() {
            out.push(PluginStatus {
                name: name.clone(),
                file: file.display().to_string(),
                version: String::new(),
                world: None,
                description: String::new(),
                health: "broken",
                last_error: None,
                last_error_reason: None,
                last_call: None,
                load_error: Some(error.clone()),
                hash: String::new(),
                wants_hosts: Vec::new(),
                wants_directories: Vec::new(),
                calls: 0,
                errors: 0,
                mean_call_seconds: None,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}
