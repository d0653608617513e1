//! Remote-write sender throughput: Ember vs Prometheus 2.42 sending the
//! same samples to the same receiver, in two modes.
//!
//! ```text
//! cargo bench --bench remote_write -- [--source push|scrape] [--series N] [--samples K] [--targets T] [--seconds S] [--only ember|prometheus]
//! ```
//!
//! Both modes give each server a `remote_write` entry pointing at a sink
//! inside the benchmark process, which decodes every request and counts
//! its samples. Both get the same queue_config (capacity 10000, min/max
//! shards 1/50, max_samples_per_send 2000, batch_send_deadline 5s, backoff
//! 30ms–100ms), metadata off.
//!
//! `--source push` (the default) measures draining a backlog: the server
//! runs with `--web.enable-remote-write-receiver`, and the benchmark pushes
//! N series × K samples (timestamps 1 s apart, newer than the server's
//! start, values of a random-walk gauge) into it while the sink answers
//! 503, so the samples pile up in the server's WAL. Then the sink opens and
//! we measure, until it has counted every sample:
//! - wall time (throughput in samples per second);
//! - the server's CPU time (`/proc/<pid>/stat`, utime+stime), per million
//!   samples sent;
//! - compressed bytes per sample received.
//!
//! `--source scrape` measures the steady state with scraped data: T
//! loopback targets × N series (values change on every scrape, the same
//! targets and blackbox-style relabeling as the scrape benchmark), scraped
//! every 15 s. Each server runs twice with the same scrape config, once
//! with the `remote_write` entry and once without. After a warm-up round
//! (every target scraped, and with remote write, that round received by
//! the sink), we measure over S seconds: samples appended and received by
//! the sink per second, and the server's CPU seconds per million samples
//! appended. The difference between the two runs is what the sender
//! itself costs per million samples.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    cpu_seconds, free_port, metric_sum, scrape_config, send_round, start_server, start_targets,
    wait_ready,
};
use ember::remote::proto;

#[derive(Clone, Copy, PartialEq)]
enum Source {
    Push,
    Scrape,
}

struct Args {
    source: Source,
    series: Option<usize>,
    samples: usize,
    targets: usize,
    seconds: u64,
    only: Option<String>,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        source: Source::Push,
        series: None,
        samples: 100,
        targets: 1000,
        seconds: 120,
        only: None,
        dir: std::env::temp_dir().join("ember-bench-remote-write"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--source" => {
                a.source = match it.next().as_deref() {
                    Some("push") => Source::Push,
                    Some("scrape") => Source::Scrape,
                    _ => panic!("--source push|scrape"),
                }
            }
            "--series" => {
                a.series = Some(it.next().and_then(|v| v.parse().ok()).expect("--series N"))
            }
            "--samples" => a.samples = it.next().and_then(|v| v.parse().ok()).expect("--samples K"),
            "--targets" => a.targets = it.next().and_then(|v| v.parse().ok()).expect("--targets T"),
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--only" => a.only = it.next(),
            "--dir" => a.dir = it.next().map(PathBuf::from).expect("--dir DIR"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The receiving end: counts samples and bytes of accepted requests;
/// answers 503 while closed.
#[derive(Default)]
struct Sink {
    open: AtomicBool,
    samples: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
}

impl Sink {
    fn reset(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
        self.samples.store(0, Ordering::SeqCst);
        self.bytes.store(0, Ordering::SeqCst);
        self.requests.store(0, Ordering::SeqCst);
    }
}

fn start_sink(sink: Arc<Sink>) -> u16 {
    let port = free_port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/write",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let sink = sink.clone();
                    async move {
                        if !sink.open.load(Ordering::SeqCst) {
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let Ok(req) = ember::remote::write_receiver::decode(&body) else {
                            return axum::http::StatusCode::BAD_REQUEST;
                        };
                        let n: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
                        sink.samples.fetch_add(n as u64, Ordering::SeqCst);
                        sink.bytes.fetch_add(body.len() as u64, Ordering::SeqCst);
                        sink.requests.fetch_add(1, Ordering::SeqCst);
                        axum::http::StatusCode::NO_CONTENT
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind sink");
            axum::serve(listener, app).await.expect("serve sink");
        });
    });
    port
}

/// The `remote_write` section both servers get.
fn remote_write_section(sink_port: u16) -> String {
    format!(
        "remote_write:\n  - url: http://127.0.0.1:{sink_port}/write\n    name: bench\n    \
         queue_config:\n      capacity: 10000\n      min_shards: 1\n      max_shards: 50\n      \
         max_samples_per_send: 2000\n      batch_send_deadline: 5s\n      min_backoff: 30ms\n      \
         max_backoff: 100ms\n    metadata_config:\n      send: false\n"
    )
}

/// Requests of 10 samples per series each, in time order.
fn payloads(series: usize, samples: usize, t0: i64) -> Vec<Vec<u8>> {
    let per_request = 10;
    let mut out = Vec::new();
    let mut state: Vec<f64> = (0..series).map(|i| (i % 100) as f64).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for start in (0..samples).step_by(per_request) {
        let end = (start + per_request).min(samples);
        let timeseries = (0..series)
            .map(|s| proto::TimeSeries {
                labels: vec![
                    proto::Label {
                        name: "__name__".into(),
                        value: format!("bench_gauge_{}", s % 50),
                    },
                    proto::Label {
                        name: "instance".into(),
                        value: format!("host-{}", s / 100),
                    },
                    proto::Label {
                        name: "job".into(),
                        value: "node".into(),
                    },
                    proto::Label {
                        name: "series".into(),
                        value: s.to_string(),
                    },
                ],
                samples: (start..end)
                    .map(|j| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        state[s] += ((rng % 200) as f64 - 100.0) / 100.0;
                        proto::Sample {
                            value: (state[s] * 100.0).round() / 100.0,
                            timestamp: t0 + j as i64 * 1000,
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        out.push(proto::encode_request(&proto::WriteRequest {
            timeseries,
            metadata: vec![],
        }));
    }
    out
}

fn main() {
    let a = args();
    let sink = Arc::new(Sink::default());
    let sink_port = start_sink(sink.clone());
    match a.source {
        Source::Push => run_push(&a, &sink, sink_port),
        Source::Scrape => run_scrape(&a, &sink, sink_port),
    }
}

fn stop_server(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

fn run_push(a: &Args, sink: &Arc<Sink>, sink_port: u16) {
    let series = a.series.unwrap_or(10_000);
    let total = (series * a.samples) as u64;
    println!(
        "{series} series × {} samples = {total} samples, queued while the receiver is down, then drained",
        a.samples
    );
    for (name, appended) in [
        ("ember", "ember_tsdb_head_samples_appended_total"),
        ("prometheus", "prometheus_tsdb_head_samples_appended_total"),
    ] {
        if a.only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let dir = a.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        sink.reset(false);
        let port = free_port();
        let config = format!("global: {{}}\n{}", remote_write_section(sink_port));
        let mut child = start_server(
            name,
            &dir,
            &config,
            port,
            &["--web.enable-remote-write-receiver"],
        );
        wait_ready(port, &mut child, Duration::from_secs(60));
        // Prometheus only sends samples newer than its queue's start.
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64
            + 1000;
        let bodies = Arc::new(payloads(series, a.samples, t0));
        send_round(&bodies, &format!("http://127.0.0.1:{port}/api/v1/write"), 1);
        let pushed = Instant::now();
        while metric_sum(port, appended) < total as f64 {
            assert!(
                pushed.elapsed() < Duration::from_secs(120),
                "{name}: pushed samples not appended"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Let the sender read what it can and block on the closed sink.
        std::thread::sleep(Duration::from_secs(3));
        let cpu0 = cpu_seconds(child.id());
        let started = Instant::now();
        sink.open.store(true, Ordering::SeqCst);
        while sink.samples.load(Ordering::SeqCst) < total {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{name}: only {} of {total} samples arrived",
                sink.samples.load(Ordering::SeqCst)
            );
            assert!(child.try_wait().expect("wait").is_none(), "{name} exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = started.elapsed();
        let cpu = cpu_seconds(child.id()) - cpu0;
        let batch = format!("{name}_remote_storage_sent_batch_duration_seconds");
        let send_seconds = metric_sum(port, &format!("{batch}_sum"));
        let sends = metric_sum(port, &format!("{batch}_count"));
        let shards = metric_sum(port, &format!("{name}_remote_storage_shards"));
        let got = sink.samples.load(Ordering::SeqCst);
        let bytes = sink.bytes.load(Ordering::SeqCst);
        println!(
            "{name}: {got} samples in {:.2}s = {:.0} samples/s, {:.2} CPU s ({:.2} CPU s per million), \
             {:.2} bytes/sample over {} requests (mean send {:.1} ms, {} shards at the end)",
            took.as_secs_f64(),
            got as f64 / took.as_secs_f64(),
            cpu,
            cpu / (got as f64 / 1e6),
            bytes as f64 / got as f64,
            sink.requests.load(Ordering::SeqCst),
            send_seconds / sends.max(1.0) * 1000.0,
            shards,
        );
        stop_server(child);
    }
}

/// One run of the scrape mode.
struct ScrapeRun {
    name: &'static str,
    remote_write: bool,
    seconds: f64,
    appended: f64,
    received: u64,
    bytes: u64,
    cpu: f64,
}

impl ScrapeRun {
    fn cpu_per_million(&self) -> f64 {
        self.cpu / (self.appended / 1e6).max(1e-9)
    }
}

fn run_scrape(a: &Args, sink: &Arc<Sink>, sink_port: u16) {
    let series = a.series.unwrap_or(1000);
    let targets_port = start_targets(a.targets, series);
    let scrape = scrape_config(a.targets, targets_port);
    let round = (a.targets * series) as f64;
    println!(
        "{} targets × {series} series scraped every 15s, measured over {}s, with and without remote_write",
        a.targets, a.seconds
    );
    let mut runs: Vec<ScrapeRun> = Vec::new();
    for (name, appended) in [
        ("ember", "ember_tsdb_head_samples_appended_total"),
        ("prometheus", "prometheus_tsdb_head_samples_appended_total"),
    ] {
        if a.only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        for remote_write in [false, true] {
            let dir = a.dir.join(format!(
                "{name}-{}",
                if remote_write { "rw" } else { "plain" }
            ));
            let _ = std::fs::remove_dir_all(&dir);
            sink.reset(true);
            let config = if remote_write {
                format!("{scrape}{}", remote_write_section(sink_port))
            } else {
                scrape.clone()
            };
            let port = free_port();
            let mut child = start_server(
                name,
                &dir,
                &config,
                port,
                &["--web.enable-remote-write-receiver"],
            );
            wait_ready(port, &mut child, Duration::from_secs(60));
            // Warm-up: one full round scraped (series creation is not
            // measured) and, with remote write, received.
            let warm = Instant::now();
            while metric_sum(port, appended) < round
                || (remote_write && (sink.samples.load(Ordering::SeqCst) as f64) < round)
            {
                assert!(
                    warm.elapsed() < Duration::from_secs(180),
                    "{name}: the first round was not scraped and sent within 180s"
                );
                assert!(child.try_wait().expect("wait").is_none(), "{name} exited");
                std::thread::sleep(Duration::from_millis(200));
            }
            let cpu0 = cpu_seconds(child.id());
            let appended0 = metric_sum(port, appended);
            let received0 = sink.samples.load(Ordering::SeqCst);
            let bytes0 = sink.bytes.load(Ordering::SeqCst);
            let started = Instant::now();
            std::thread::sleep(Duration::from_secs(a.seconds));
            let cpu1 = cpu_seconds(child.id());
            let appended1 = metric_sum(port, appended);
            let received1 = sink.samples.load(Ordering::SeqCst);
            let bytes1 = sink.bytes.load(Ordering::SeqCst);
            let seconds = started.elapsed().as_secs_f64();
            assert!(child.try_wait().expect("wait").is_none(), "{name} exited");
            stop_server(child);
            let run = ScrapeRun {
                name,
                remote_write,
                seconds,
                appended: appended1 - appended0,
                received: received1 - received0,
                bytes: bytes1 - bytes0,
                cpu: cpu1 - cpu0,
            };
            println!(
                "{name} remote_write={remote_write}: {:.0} samples appended, {} received, {:.2} CPU s",
                run.appended, run.received, run.cpu
            );
            runs.push(run);
        }
    }
    println!();
    println!(
        "| server | remote_write | appended/s | received by sink/s | bytes/sample sent | CPU s | CPU s per million appended | sender CPU s per million |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &runs {
        let sender = if r.remote_write {
            runs.iter()
                .find(|p| p.name == r.name && !p.remote_write)
                .map_or("-".to_owned(), |p| {
                    format!("{:.3}", r.cpu_per_million() - p.cpu_per_million())
                })
        } else {
            "-".to_owned()
        };
        let bytes = if r.received > 0 {
            format!("{:.2}", r.bytes as f64 / r.received as f64)
        } else {
            "-".to_owned()
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {bytes} | {:.2} | {:.3} | {sender} |",
            r.name,
            if r.remote_write { "yes" } else { "no" },
            r.appended / r.seconds,
            r.received as f64 / r.seconds,
            r.cpu,
            r.cpu_per_million(),
        );
    }
}
