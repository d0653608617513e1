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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, scrape_config, start_targets};

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

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / ticks;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    (cpu, rss)
}

fn metric(port: u16, name: &str) -> f64 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let Ok(mut r) = agent
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
    else {
        return 0.0;
    };
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    // Prometheus 2.42 labels this counter by sample type: sum every line.
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn start(name: &str, dir: &Path, config_text: &str, port: u16) -> Child {
    std::fs::create_dir_all(dir).expect("dir");
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, config_text).expect("config");
    let mut c = if name == "ember" {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
        c.arg("--push.listen-address=").arg("--sql.listen-address=");
        c
    } else {
        Command::new("prometheus")
    };
    c.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server")
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
        let mut child = start(name, &dir, &scrape_config(a.targets, targets_port), port);
        // Warm up: one full round of scrapes (series creation) before measuring.
        let warm = Instant::now();
        while metric(port, counter) < (a.targets * a.series) as f64 {
            assert!(
                warm.elapsed() < Duration::from_secs(120),
                "{name}: first round did not complete"
            );
            assert!(child.try_wait().expect("wait").is_none(), "{name} exited");
            std::thread::sleep(Duration::from_millis(500));
        }
        let (cpu0, _) = proc_stat(child.id());
        let samples0 = metric(port, counter);
        std::thread::sleep(Duration::from_secs(a.seconds));
        let (cpu1, rss) = proc_stat(child.id());
        let samples1 = metric(port, counter);
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
