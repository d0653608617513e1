//! Helpers shared by the benchmarks that run Ember and Prometheus 2.42
//! side by side: starting either server, waiting for it, sending remote
//! writes, reading its memory.
#![allow(dead_code)] // each bench uses its own subset

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

pub fn wait_ready(port: u16, child: &mut Child, limit: Duration) -> Duration {
    let started = Instant::now();
    let agent = agent();
    loop {
        if let Ok(r) = agent
            .get(&format!("http://127.0.0.1:{port}/-/ready"))
            .call()
            && r.status() == 200
        {
            return started.elapsed();
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "server exited"
        );
        assert!(
            started.elapsed() < limit,
            "server not ready within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Builds the command that starts a server in `dir` on `port`.
pub type Launcher = Box<dyn Fn(&Path, u16) -> Command>;

pub struct Server {
    pub name: &'static str,
    pub command: Launcher,
}

pub fn servers() -> Vec<Server> {
    vec![
        Server {
            name: "ember",
            command: Box::new(|dir, port| {
                let config = dir.join("ember.yml");
                std::fs::write(&config, "global: {}\n").expect("config");
                let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
                c.arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.join("data").display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--sql.listen-address=")
                    .arg("--log.level=warn");
                c
            }),
        },
        Server {
            name: "prometheus",
            command: Box::new(|dir, port| {
                let config = dir.join("prometheus.yml");
                std::fs::write(&config, "global: {}\n").expect("config");
                let mut c = Command::new("prometheus");
                c.arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.join("data").display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--log.level=warn");
                c
            }),
        },
    ]
}

/// Sends one round's requests from `senders` threads and waits for all of them.
pub fn send_round(payloads: &Arc<Vec<Vec<u8>>>, url: &str, senders: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let (payloads, next, url) = (payloads.clone(), next.clone(), url.to_owned());
            std::thread::spawn(move || {
                let agent = agent();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = payloads.get(i) else { return };
                    let r = agent
                        .post(&url)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .send(&body[..])
                        .expect("send");
                    assert!(r.status().is_success(), "status {}", r.status());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("sender");
    }
}

/// Serves N loopback scrape targets from one port (`/metrics?target=tI`),
/// each with M series whose values change on every scrape. Returns the port.
pub fn start_targets(targets: usize, series: usize) -> u16 {
    use std::sync::atomic::AtomicU64;
    let port = free_port();
    let prefixes: Arc<Vec<Vec<String>>> = Arc::new(
        (0..targets)
            .map(|t| {
                (0..series)
                    .map(|s| format!("bench_series_{}{{target=\"t{t}\",series=\"{s}\"}} ", s % 50))
                    .collect()
            })
            .collect(),
    );
    let scrapes: Arc<Vec<AtomicU64>> = Arc::new((0..targets).map(|_| AtomicU64::new(0)).collect());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(
                    move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                        let (prefixes, scrapes) = (prefixes.clone(), scrapes.clone());
                        async move {
                            let t: usize = q
                                .get("target")
                                .and_then(|v| v.trim_start_matches('t').parse().ok())
                                .unwrap_or(0)
                                % prefixes.len();
                            let n = scrapes[t].fetch_add(1, Ordering::Relaxed);
                            let mut body = String::with_capacity(prefixes[t].len() * 48);
                            for (s, p) in prefixes[t].iter().enumerate() {
                                body.push_str(p);
                                body.push_str(&(n * (s as u64 % 7 + 1)).to_string());
                                body.push('\n');
                            }
                            (
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4",
                                )],
                                body,
                            )
                        }
                    },
                ),
            );
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind targets");
            axum::serve(listener, app).await.expect("serve targets");
        });
    });
    port
}

/// A `prometheus.yml` scraping the N targets of [`start_targets`] every
/// 15 s: a blackbox-style relabeling turns N target names into N URLs on
/// one port.
pub fn scrape_config(targets: usize, port: u16) -> String {
    let list: Vec<String> = (0..targets).map(|t| format!("'t{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: [{}]\n    relabel_configs:\n      - {{source_labels: [__address__], target_label: __param_target}}\n      - {{source_labels: [__param_target], target_label: instance}}\n      - {{target_label: __address__, replacement: '127.0.0.1:{port}'}}\n",
        list.join(", ")
    )
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / ticks
}

/// Starts `name` ("ember" or Prometheus) with `config_text` in `dir`,
/// listening on `port`, with `extra` flags; its output is discarded.
pub fn start_server(name: &str, dir: &Path, config_text: &str, port: u16, extra: &[&str]) -> Child {
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
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server")
}

/// Every line of metric family `name` on the server's `/metrics`, summed
/// (Prometheus 2.42 labels some counters by sample type); 0 when the
/// server does not answer.
pub fn metric_sum(port: u16, name: &str) -> f64 {
    let Ok(mut r) = agent()
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
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
