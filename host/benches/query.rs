//! PromQL latency, Ember vs Prometheus 2.42, on the same data.
//!
//! ```text
//! cargo bench --bench query -- [--runs N] [--dir DIR] [--only ember|prometheus]
//! ```
//!
//! Both servers get identical remote writes: 30,000 series for 75 minutes
//! at 15 s (10,000 request counters, 10,000 error counters with the same
//! labels, 10,000 histogram buckets: 1,000 histograms of 10 buckets). Then
//! each query group runs against the HTTP API `--runs` times after two
//! warm-up runs, and the median and p90 latency are printed with the
//! ratio Ember / Prometheus. The groups follow Prometheus's own load
//! tests. Results and method are recorded in BENCHMARKS.md.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember::remote::proto::{Label, Sample, TimeSeries, WriteRequest, encode_request};

mod common;
use common::{agent, free_port, send_round, servers, wait_ready};

const START_MS: i64 = 1_800_000_000_000;
const ROUNDS: usize = 300;
const PER_REQUEST: usize = 2000;

fn label(n: &str, v: String) -> Label {
    Label {
        name: n.into(),
        value: v,
    }
}

/// Every series' labels; index i < 30,000.
fn series_labels(i: usize) -> Vec<Label> {
    let kind = i / 10_000;
    let j = i % 10_000;
    match kind {
        0 | 1 => vec![
            label(
                "__name__",
                if kind == 0 {
                    "http_requests_total"
                } else {
                    "http_errors_total"
                }
                .into(),
            ),
            label(
                "code",
                if j.is_multiple_of(2) { "200" } else { "500" }.into(),
            ),
            label("instance", format!("host-{:04}:9100", j / 20)),
            label("job", format!("job-{}", (j / 2) % 10)),
        ],
        _ => {
            let bounds = [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
            ];
            vec![
                label("__name__", "request_duration_seconds_bucket".into()),
                label("instance", format!("host-{:04}:9100", (j / 10) / 10)),
                label("job", format!("job-{}", (j / 10) % 10)),
                label("le", bounds[j % 10].into()),
            ]
        }
    }
}

fn value(i: usize, round: usize) -> f64 {
    let j = i % 10_000;
    match i / 10_000 {
        0 => (round * (1 + j % 13)) as f64,
        1 => (round * (j % 3)) as f64,
        // Cumulative buckets: bucket b has (b+1)/10 of the observations.
        _ => ((round * 10) * (j % 10 + 1) / 10) as f64,
    }
}

fn round_payloads(round: usize) -> Vec<Vec<u8>> {
    let t = START_MS + round as i64 * 15_000;
    (0..30_000)
        .step_by(PER_REQUEST)
        .map(|first| {
            let timeseries = (first..first + PER_REQUEST)
                .map(|i| TimeSeries {
                    labels: series_labels(i),
                    samples: vec![Sample {
                        value: value(i, round),
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

/// A query group: an instant or range query.
struct Group {
    name: &'static str,
    query: &'static str,
    range: bool,
}

const GROUPS: &[Group] = &[
    Group {
        name: "range selection, 1h, 500 series",
        query: "http_requests_total{job=\"job-3\"}",
        range: true,
    },
    Group {
        name: "sum by (job) of rate, 10k series, instant",
        query: "sum by (job) (rate(http_requests_total[5m]))",
        range: false,
    },
    Group {
        name: "sum by (job) of rate, 10k series, 1h range",
        query: "sum by (job) (rate(http_requests_total[5m]))",
        range: true,
    },
    Group {
        name: "avg without (instance) of rate, 10k series, 1h range",
        query: "avg without (instance) (rate(http_requests_total[5m]))",
        range: true,
    },
    Group {
        name: "histogram_quantile over sum by (le), 10k buckets, 1h range",
        query: "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        range: true,
    },
    Group {
        name: "binary op between two 10k vectors, instant",
        query: "rate(http_errors_total[5m]) / rate(http_requests_total[5m])",
        range: false,
    },
    Group {
        name: "binary op between two 10k vectors, 1h range",
        query: "rate(http_errors_total[5m]) / rate(http_requests_total[5m])",
        range: true,
    },
    Group {
        name: "topk(10) of rate, 10k series, instant",
        query: "topk(10, rate(http_requests_total[5m]))",
        range: false,
    },
    Group {
        name: "topk(10) of rate, 10k series, 1h range",
        query: "topk(10, rate(http_requests_total[5m]))",
        range: true,
    },
    Group {
        name: "subquery max_over_time(rate[5m])[30m:1m], 10k series, instant",
        query: "max_over_time(rate(http_requests_total[5m])[30m:1m])",
        range: false,
    },
];

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn main() {
    let mut runs = 15usize;
    let mut dir = std::env::temp_dir().join("ember-query-bench");
    let mut only: Option<String> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            "--dir" => dir = it.next().map(PathBuf::from).unwrap_or(dir),
            "--only" => only = it.next(),
            _ => {}
        }
    }
    let rounds: Vec<Arc<Vec<Vec<u8>>>> = (0..ROUNDS).map(|r| Arc::new(round_payloads(r))).collect();
    let end_s = (START_MS + (ROUNDS as i64 - 1) * 15_000) / 1000;
    let start_s = end_s - 3600;

    // results[group] = (name, medians per server, p90s per server)
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); GROUPS.len()];
    let mut names = Vec::new();
    for server in servers() {
        if only.as_deref().is_some_and(|o| o != server.name) {
            continue;
        }
        names.push(server.name);
        let sdir = dir.join(server.name);
        let _ = std::fs::remove_dir_all(&sdir);
        std::fs::create_dir_all(&sdir).expect("bench dir");
        let port = free_port();
        let mut child = (server.command)(&sdir, port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        wait_ready(port, &mut child, Duration::from_secs(60));
        let write = format!("http://127.0.0.1:{port}/api/v1/write");
        let loading = Instant::now();
        for payloads in &rounds {
            send_round(payloads, &write, 2);
        }
        println!(
            "{}: loaded 30,000 series x {ROUNDS} samples in {:.1}s",
            server.name,
            loading.elapsed().as_secs_f64()
        );
        let agent = agent();
        for (g, group) in GROUPS.iter().enumerate() {
            let url = if group.range {
                format!(
                    "http://127.0.0.1:{port}/api/v1/query_range?query={}&start={start_s}&end={end_s}&step=60",
                    urlencode(group.query)
                )
            } else {
                format!(
                    "http://127.0.0.1:{port}/api/v1/query?query={}&time={end_s}",
                    urlencode(group.query)
                )
            };
            let mut times = Vec::with_capacity(runs);
            for i in 0..runs + 2 {
                let started = Instant::now();
                let mut r = agent.get(&url).call().expect("query");
                let body = r
                    .body_mut()
                    .with_config()
                    .limit(1 << 30)
                    .read_to_string()
                    .expect("body");
                let elapsed = started.elapsed().as_secs_f64() * 1000.0;
                assert!(body.contains("\"success\""), "{}: {body}", group.query);
                if i >= 2 {
                    times.push(elapsed);
                }
            }
            times.sort_by(|a, b| a.total_cmp(b));
            results[g].push((percentile(&times, 0.5), percentile(&times, 0.9)));
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
    println!();
    println!(
        "| group | {} |",
        names
            .iter()
            .map(|n| format!("{n} median / p90 ms"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for (g, group) in GROUPS.iter().enumerate() {
        let cells: Vec<String> = results[g]
            .iter()
            .map(|(m, p)| format!("{m:.1} / {p:.1}"))
            .collect();
        let ratio = if results[g].len() == 2 {
            format!(
                " | {:.2} / {:.2}",
                results[g][0].0 / results[g][1].0,
                results[g][0].1 / results[g][1].1
            )
        } else {
            String::new()
        };
        println!("| {} | {}{ratio} |", group.name, cells.join(" | "));
    }
}
