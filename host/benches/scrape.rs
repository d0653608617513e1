//! Scraping many targets: Ember vs Prometheus 2.42 on the same loopback targets.
//!
//! ```text
//! cargo bench --bench scrape -- [--targets N] [--series M] [--seconds S] [--only ember|prometheus]
//! ```
//!
//! An in-process HTTP server serves N targets (`/metrics?target=i`), each
//! with M series whose values change on every scrape. Each server scrapes
//! them every 15s (a blackbox-style relabeling turns N target names into
//! N URLs on one port), runs for S seconds after the first full round, and
//! we report:
//! - CPU seconds of the server process per million samples appended
//!   (`*_tsdb_head_samples_appended_total`), from /proc/<pid>/stat;
//! - resident memory at the end.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    cpu_seconds, free_port, metric_sum, rss_bytes, scrape_config, start_server, start_targets,
};

struct Args {
    targets: usize,
    series: usize,
    seconds: u64,
    only: Option<String>,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        targets: 1000,
        series: 1000,
        seconds: 120,
        only: None,
        dir: std::env::temp_dir().join("ember-bench-scrape"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--targets" => a.targets = it.next().and_then(|v| v.parse().ok()).expect("--targets N"),
            "--series" => a.series = it.next().and_then(|v| v.parse().ok()).expect("--series M"),
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--only" => a.only = it.next(),
            "--dir" => a.dir = it.next().map(PathBuf::from).expect("--dir DIR"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() {
    let a = args();
    let targets_port = start_targets(a.targets, a.series);
    println!(
        "{} targets × {} series at 15s, measured over {}s",
        a.targets, a.series, a.seconds
    );
    for (name, counter) in [
        ("ember", "ember_tsdb_head_samples_appended_total"),
        ("prometheus", "prometheus_tsdb_head_samples_appended_total"),
    ] {
        if a.only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let dir = a.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let port = free_port();
        let mut child = start_server(
            name,
            &dir,
            &scrape_config(a.targets, targets_port),
            port,
            &[],
        );
        // Warm up: one full round of scrapes (series creation) before measuring.
        let warm = Instant::now();
        while metric_sum(port, counter) < (a.targets * a.series) as f64 {
            assert!(
                warm.elapsed() < Duration::from_secs(120),
                "{name}: first round did not complete"
            );
            assert!(child.try_wait().expect("wait").is_none(), "{name} exited");
            std::thread::sleep(Duration::from_millis(500));
        }
        let cpu0 = cpu_seconds(child.id());
        let samples0 = metric_sum(port, counter);
        std::thread::sleep(Duration::from_secs(a.seconds));
        let (cpu1, rss) = (cpu_seconds(child.id()), rss_bytes(child.id()));
        let samples1 = metric_sum(port, counter);
        let million = (samples1 - samples0) / 1e6;
        println!(
            "{name}: {:.0} samples appended, {:.2} CPU s, {:.2} CPU s per million samples, RSS {} MB",
            samples1 - samples0,
            cpu1 - cpu0,
            (cpu1 - cpu0) / million.max(1e-9),
            rss >> 20
        );
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
}
