//! `ember check config`: the `promtool check config` equivalent.
//!
//! Same exit codes as promtool: 0 when every file is valid, 1 otherwise.
//! Beyond parsing, it checks what the server would trip over at run time:
//! referenced files exist, target files parse, static target addresses are usable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;
use crate::config::http_client::HttpClientConfig;
use crate::config::relabel::RelabelConfig;
use crate::config::scrape::{FileSdConfig, StaticConfig};
use crate::discovery::{file::read_target_groups, target::check_address};

pub fn check_config(files: &[PathBuf], syntax_only: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        println!("Checking {}", file.display());
        match check_one(file, syntax_only) {
            Ok(report) => {
                for warning in &report.warnings {
                    println!("  WARNING: {warning}");
                }
                println!(
                    "  SUCCESS: {} is valid Ember (and Prometheus) config file syntax",
                    file.display()
                );
                if !report.rule_files.is_empty() {
                    println!("  SUCCESS: {} rule files found", report.rule_files.len());
                }
                println!();
                for rf in &report.rule_files {
                    failed |= !check_rule_file(rf);
                }
                continue;
            }
            Err(err) => {
                eprintln!("  FAILED: {err}");
                failed = true;
            }
        }
        println!();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `ember check rules`: promtool's `check rules`, exit code 0 when every
/// file is valid, 1 otherwise. Duplicate recording rules are reported as
/// promtool's default lint reports them, without failing.
pub fn check_rules(files: &[PathBuf]) -> ExitCode {
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        eprintln!(
            "ember: error: path '{}' does not exist, try --help",
            missing.display()
        );
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    for file in files {
        failed |= !check_rule_file(file);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Checks one rule file and prints promtool's report; true when valid.
fn check_rule_file(file: &Path) -> bool {
    println!("Checking {}", file.display());
    let ok = match crate::rules::file::load(file) {
        Ok(groups) => {
            let dups = crate::rules::file::duplicate_rules(&groups);
            if dups.is_empty() {
                let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {n} rules found");
            } else {
                let mut msg = format!("lint error {} duplicate rule(s) found.\n", dups.len());
                for (name, labels) in &dups {
                    msg.push_str(&format!("Metric: {name}\nLabel(s):\n"));
                    for (k, v) in labels {
                        msg.push_str(&format!("\t{k}: {v}\n"));
                    }
                }
                msg.push_str("Might cause inconsistency while recording expressions");
                eprintln!("  FAILED:\n{msg}");
            }
            true
        }
        Err(err) => {
            eprintln!("  FAILED:\n{err}");
            false
        }
    };
    println!();
    ok
}

#[derive(Default)]
struct Report {
    warnings: Vec<String>,
    rule_files: Vec<PathBuf>,
}

fn check_one(file: &Path, syntax_only: bool) -> Result<Report, String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    check_references(file, &config, syntax_only).map_err(|e| format!("{}: {e}", file.display()))
}

fn check_references(file: &Path, config: &Config, syntax_only: bool) -> Result<Report, String> {
    let mut report = Report::default();
    if syntax_only {
        return Ok(report);
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| crate::config::resolve_path(base, p);

    for pattern in &config.rule_files {
        let full = resolve(pattern);
        let matches = glob_files(&full).map_err(|e| format!("rule_files {pattern:?}: {e}"))?;
        if !pattern.contains('*') && matches.is_empty() {
            return Err(format!(
                "rule_files: {pattern:?} does not point to an existing file"
            ));
        }
        report.rule_files.extend(matches);
    }

    for job in &config.scrape_configs {
        let what = format!("scrape_configs job {:?}", job.job_name);
        if job.plugin.is_some() || !job.plugin_sd_configs.is_empty() {
            report.warnings.push(format!(
                "{what} uses Ember plugin keys (plugin, plugin_sd_configs); Prometheus does not accept them"
            ));
        }
        for plugin in job.plugin.iter().chain(&job.plugin_sd_configs) {
            for dir in &plugin.read_only_dirs {
                if !Path::new(dir).is_dir() {
                    report.warnings.push(format!(
                        "{what}: plugin {:?} is granted {dir:?}, which is not a directory here",
                        plugin.name
                    ));
                }
            }
        }
        check_client_files(&what, &job.http_client, &resolve, &mut report);
        check_targets(
            &what,
            &job.static_configs,
            &job.file_sd_configs,
            &job.relabel_configs,
            &resolve,
            &mut report,
        )?;
    }
    if config.notifications.is_some() {
        report.warnings.push(
            "notifications is Ember's built-in alert routing; Prometheus does not accept it (in Alertmanager it is alertmanager.yml)".into(),
        );
    }
    for (i, am) in config.alerting.alertmanagers.iter().enumerate() {
        let what = format!("alerting.alertmanagers[{i}]");
        check_client_files(&what, &am.http_client, &resolve, &mut report);
        check_targets(
            &what,
            &am.static_configs,
            &am.file_sd_configs,
            &am.relabel_configs,
            &resolve,
            &mut report,
        )?;
    }
    for (i, rw) in config.remote_write.iter().enumerate() {
        check_client_files(
            &format!("remote_write[{i}]"),
            &rw.http_client,
            &resolve,
            &mut report,
        );
    }
    for (i, rr) in config.remote_read.iter().enumerate() {
        check_client_files(
            &format!("remote_read[{i}]"),
            &rr.http_client,
            &resolve,
            &mut report,
        );
    }
    Ok(report)
}

fn glob_files(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let pattern = pattern.to_string_lossy();
    let paths = glob::glob(&pattern).map_err(|e| e.to_string())?;
    Ok(paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect())
}

/// Missing credential or certificate files are warnings, as in promtool:
/// the server starts without them and the affected scrapes fail.
fn check_client_files(
    what: &str,
    client: &HttpClientConfig,
    resolve: &dyn Fn(&str) -> PathBuf,
    report: &mut Report,
) {
    for (key, file) in client.files() {
        let path = resolve(file);
        if let Err(e) = std::fs::metadata(&path) {
            report.warnings.push(format!(
                "{what}: {key} {:?}: {e}",
                path.display().to_string()
            ));
        }
    }
}

fn check_targets(
    what: &str,
    static_configs: &[StaticConfig],
    file_sd_configs: &[FileSdConfig],
    relabel_configs: &[RelabelConfig],
    resolve: &dyn Fn(&str) -> PathBuf,
    report: &mut Report,
) -> Result<(), String> {
    // Relabeling may rewrite __address__, so raw addresses are only checked
    // when nothing can change them.
    let check_groups = |source: &str, groups: &[StaticConfig]| -> Result<(), String> {
        if !relabel_configs.is_empty() {
            return Ok(());
        }
        for (g, group) in groups.iter().enumerate() {
            for (t, target) in group.targets.iter().enumerate() {
                check_address(target)
                    .map_err(|e| format!("{what}: {source}: instance {t} in group {g}: {e}"))?;
            }
        }
        Ok(())
    };
    check_groups("static_configs", static_configs)?;
    for sd in file_sd_configs {
        for pattern in &sd.files {
            let matches = glob_files(&resolve(pattern))
                .map_err(|e| format!("{what}: file_sd_configs {pattern:?}: {e}"))?;
            if matches.is_empty() {
                report.warnings.push(format!(
                    "file {pattern:?} for file_sd in {what} does not exist"
                ));
            }
            for path in matches {
                let groups = read_target_groups(&path).map_err(|e| format!("{what}: {e}"))?;
                check_groups(&path.display().to_string(), &groups)?;
            }
        }
    }
    Ok(())
}
