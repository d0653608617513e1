//! Helpers shared by the benchmarks that run Ember and Prometheus 2.42
//! side by side: starting either server, waiting for it, sending remote
//! writes, reading its memory.
#![allow(dead_code)] // each bench uses its own subset

use std::path::Path;
use std::process::{Child, Command};
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
