//! Remote-write ingestion, Ember vs Prometheus 2.42, on identical payloads.
//!
//! ```text
//! cargo bench --bench ingest -- [--series N] [--rounds R] [--senders S] [--dir DIR] [--only ember|prometheus]
//! ```
//!
//! For each server: start it with its remote-write receiver on, send R rounds
//! (one sample per series per round, 15s apart) as 2000-sample snappy
//! protobuf requests from S sender threads (like a remote-write queue's
//! shards), then report
//! - throughput: samples / time spent sending (payloads are encoded before
//!   the clock starts),
//! - resident memory (VmRSS) after ingestion, per active series,
//! - restart time: SIGTERM, start again on the same data, time until
//!   `/-/ready` answers 200 (WAL replay for both).
//!
//! Results and method are recorded in BENCHMARKS.md.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember::remote::proto::{Label, Sample, TimeSeries, WriteRequest, encode_request};

mod common;
use common::{free_port, rss_bytes, send_round, servers, wait_ready};

const PER_REQUEST: usize = 2000;
const START_MS: i64 = 1_800_000_000_000;

struct Args {
    series: usize,
    rounds: usize,
    senders: usize,
    dir: PathBuf,
    only: Option<String>,
    /// Send to an already running server (for profiling) instead of starting one.
    url: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        series: 1_000_000,
        rounds: 10,
        senders: 4,
        dir: std::env::temp_dir().join("ember-bench-ingest"),
        only: None,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--series" => a.series = it.next().and_then(|v| v.parse().ok()).expect("--series N"),
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds R"),
            "--senders" => a.senders = it.next().and_then(|v| v.parse().ok()).expect("--senders S"),
            "--dir" => a.dir = it.next().map(PathBuf::from).expect("--dir DIR"),
            "--only" => a.only = it.next(),
            "--url" => a.url = it.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn labels(i: usize) -> Vec<Label> {
    let l = |n: &str, v: String| Label {
        name: n.into(),
        value: v,
    };
    vec![
        l("__name__", format!("bench_metric_{}", i % 100)),
        l("instance", format!("host-{:05}:9100", i / 1000)),
        l("job", "bench".into()),
        l("series", format!("{}", i % 1000)),
    ]
}

/// Every request of one round, encoded.
fn round_payloads(series: usize, round: usize) -> Vec<Vec<u8>> {
    let t = START_MS + round as i64 * 15_000;
    (0..series)
        .step_by(PER_REQUEST)
        .map(|first| {
            let timeseries = (first..(first + PER_REQUEST).min(series))
                .map(|i| TimeSeries {
                    labels: labels(i),
                    samples: vec![Sample {
                        value: (round * (i % 7)) as f64,
                        timestamp: t,
                    }],
                    ..TimeSeries::default()
                })
                .collect();
            encode_request(&WriteRequest {
                timeseries,
                metadata: vec![],
            })
        })
        .collect()
}

fn main() {
    let a = args();
    println!(
        "{} series, {} rounds, {} senders, {PER_REQUEST} samples per request",
        a.series, a.rounds, a.senders
    );
    let t = Instant::now();
    let rounds: Vec<Arc<Vec<Vec<u8>>>> = (0..a.rounds)
        .map(|r| Arc::new(round_payloads(a.series, r)))
        .collect();
    let bytes: usize = rounds.iter().flat_map(|r| r.iter()).map(Vec::len).sum();
    println!(
        "payloads: {} requests, {} MB compressed, encoded in {:.1}s",
        rounds.iter().map(|r| r.len()).sum::<usize>(),
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );

    if let Some(url) = &a.url {
        let started = Instant::now();
        for payloads in &rounds {
            send_round(payloads, url, a.senders);
        }
        println!(
            "{url}: {:.0} samples/s",
            (a.series * a.rounds) as f64 / started.elapsed().as_secs_f64()
        );
        return;
    }
    for server in servers() {
        if a.only.as_deref().is_some_and(|o| o != server.name) {
            continue;
        }
        let dir = a.dir.join(server.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        let port = free_port();
        let mut child = (server.command)(&dir, port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        wait_ready(port, &mut child, Duration::from_secs(60));
        let url = format!("http://127.0.0.1:{port}/api/v1/write");

        let mut sending = Duration::ZERO;
        for payloads in &rounds {
            let started = Instant::now();
            send_round(payloads, &url, a.senders);
            sending += started.elapsed();
        }
        let samples = (a.series * a.rounds) as f64;
        std::thread::sleep(Duration::from_secs(2));
        let rss = rss_bytes(child.id());
        println!(
            "{}: {:.0} samples/s ({:.1}s sending), RSS {} MB = {:.0} bytes per active series",
            server.name,
            samples / sending.as_secs_f64(),
            sending.as_secs_f64(),
            rss >> 20,
            rss as f64 / a.series as f64
        );
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
        let port = free_port();
        let mut child = (server.command)(&dir, port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart server");
        let replay = wait_ready(port, &mut child, Duration::from_secs(600));
        println!(
            "{}: restart until ready (WAL replay of {} series) {:.2}s, RSS after replay {} MB",
            server.name,
            a.series,
            replay.as_secs_f64(),
            rss_bytes(child.id()) >> 20
        );
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
}
