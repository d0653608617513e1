//! `ember plugin list | check | notify-test`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::plugins::{
    Alert, AlertGroup, AlertStatus, Label, PluginManager, PluginUse, Runtime, World,
};

/// `--plugins.dir`, or `plugins/` next to the configuration file.
pub fn default_dir(flag: Option<&Path>, config_file: &Path) -> PathBuf {
    match flag {
        Some(dir) => dir.to_path_buf(),
        None => config_file
            .parent()
            .map_or_else(|| PathBuf::from("plugins"), |p| p.join("plugins")),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn report(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn list(plugins_dir: Option<&Path>, config_file: &Path) -> ExitCode {
    let dir = default_dir(plugins_dir, config_file);
    report(runtime().and_then(|rt| {
        rt.block_on(async {
            let manager = PluginManager::new(dir.clone(), None, &prometheus::Registry::new())?;
            let problems = manager.rescan().await;
            let status = manager.status();
            if status.is_empty() {
                println!("no plugins in {}", dir.display());
            }
            for s in &status {
                let world = s.world.map_or("-", World::as_str);
                let version = if s.version.is_empty() {
                    "-"
                } else {
                    &s.version
                };
                println!("{:<20} {:<11} {:<10} {}", s.name, world, version, s.file);
                if let Some(e) = &s.load_error {
                    println!("  error: {e}");
                }
            }
            Ok(problems.is_empty())
        })
    }))
}

pub fn check(file: &Path) -> ExitCode {
    report(runtime().and_then(|rt| {
        rt.block_on(async {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let runtime = Runtime::new(None)?;
            let loaded = runtime
                .load(bytes)
                .await
                .with_context(|| format!("{} does not load", file.display()))?;
            let info = &loaded.info;
            let imports = runtime.imports(&loaded.component);
            // The package version the plugin was built against, from the
            // version of the `ember:plugin` interfaces it imports.
            let built_against = imports
                .iter()
                .filter_map(|i| i.strip_prefix("ember:plugin/"))
                .find_map(|i| i.split_once('@').map(|(_, v)| v.to_owned()))
                .unwrap_or_else(|| crate::plugins::WIT_VERSION.to_owned());
            println!(
                "{}: {} {} implements ember:plugin/{}@{built_against}",
                file.display(),
                info.name,
                info.version,
                loaded.world.as_str()
            );
            if !info.description.is_empty() {
                println!("  {}", info.description);
            }
            println!(
                "  links against this host (ember:plugin@{}): yes",
                crate::plugins::WIT_VERSION
            );
            println!("  imports: {}", imports.join(", "));
            if imports
                .iter()
                .any(|i| i.starts_with("ember:plugin/filesystem-stats"))
            {
                println!("  asks for filesystem stats (grant mount points with stat_filesystems)");
            }
            if !info.wants_hosts.is_empty() {
                println!(
                    "  wants hosts (grant with allow_hosts): {}",
                    info.wants_hosts.join(", ")
                );
            }
            if !info.wants_directories.is_empty() {
                println!(
                    "  wants directories (grant with read_only_dirs): {}",
                    info.wants_directories.join(", ")
                );
            }
            Ok(true)
        })
    }))
}

/// A sample alert group for `notify-test`.
pub fn sample_group() -> AlertGroup {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let label = |n: &str, v: &str| Label {
        name: n.into(),
        value: v.into(),
    };
    AlertGroup {
        receiver: "notify-test".into(),
        status: AlertStatus::Firing,
        group_key: "{}:{alertname=\"EmberNotifyTest\"}".into(),
        group_labels: vec![label("alertname", "EmberNotifyTest")],
        common_labels: vec![
            label("alertname", "EmberNotifyTest"),
            label("severity", "info"),
        ],
        common_annotations: vec![label(
            "summary",
            "A test alert sent by `ember plugin notify-test`.",
        )],
        external_url: "http://localhost:9090".into(),
        truncated_alerts: 0,
        alerts: vec![Alert {
            status: AlertStatus::Firing,
            labels: vec![
                label("alertname", "EmberNotifyTest"),
                label("instance", "localhost:9090"),
                label("severity", "info"),
            ],
            annotations: vec![label(
                "summary",
                "A test alert sent by `ember plugin notify-test`.",
            )],
            starts_at_ms: now,
            ends_at_ms: None,
            generator_url: "http://localhost:9090/graph".into(),
            fingerprint: "0000000000000001".into(),
        }],
    }
}

pub fn notify_test(file: &Path, config: Option<&Path>) -> ExitCode {
    report(runtime().and_then(|rt| {
        rt.block_on(async {
            let mut plugin: PluginUse = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_yaml::from_str(&text)
                        .with_context(|| format!("parsing {}", path.display()))?
                }
                None => PluginUse::default(),
            };
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .context("the plugin file needs a name ending in .wasm")?
                .to_owned();
            plugin.name = stem.clone();
            plugin.validate().map_err(anyhow::Error::msg)?;
            // A one-file plugin directory, so the file loads exactly as the
            // server would load it.
            let dir = tempdir_for(file)?;
            let manager: Arc<PluginManager> =
                PluginManager::new(dir.clone(), None, &prometheus::Registry::new())?;
            let problems = manager.rescan().await;
            let _ = std::fs::remove_dir_all(&dir);
            if let Some(p) = problems.first() {
                anyhow::bail!("{p}");
            }
            let instance = manager
                .instance(&plugin, None, World::Notifier)
                .map_err(anyhow::Error::msg)?;
            instance
                .notify(&sample_group())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("delivered a sample alert group through {}", file.display());
            Ok(true)
        })
    }))
}

/// Copies `file` into a fresh temporary directory.
fn tempdir_for(file: &Path) -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("ember-plugin-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = file.file_name().context("plugin file name")?;
    std::fs::copy(file, dir.join(name)).with_context(|| format!("reading {}", file.display()))?;
    Ok(dir)
}
