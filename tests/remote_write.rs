//! The remote-write receiver, end to end: protocol answers, crash safety of
//! acknowledged samples (SIGKILL during heavy ingestion), and Prometheus
//! 2.42 as a real sender.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ember::model::{Labels, Matcher};
use ember::remote::proto::{self, TimeSeries, WriteRequest, encode_request};
use ember::storage::{Storage, StorageOptions};
use support::*;

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| proto::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| proto::Sample { value, timestamp })
            .collect(),
        ..TimeSeries::default()
    }
}

fn request(ts: Vec<TimeSeries>) -> Vec<u8> {
    encode_request(&WriteRequest {
        timeseries: ts,
        metadata: vec![],
    })
}

fn open_storage(setup: &Setup) -> Storage {
    Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {})
        .unwrap()
        .0
}

#[test]
fn answers_like_prometheus() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut off = setup.start(&[]);
    off.wait_ready();
    let r = post_remote_write(&off.url("/api/v1/write"), &request(vec![])).unwrap();
    assert_eq!(r.status, 404, "disabled by default");
    assert!(
        r.body.contains("--web.enable-remote-write-receiver"),
        "{}",
        r.body
    );
    drop(off);

    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let url = ember.url("/api/v1/write");
    let stale = f64::from_bits(ember::model::STALE_NAN_BITS);
    let ok = request(vec![series(
        &[("__name__", "m"), ("job", "a")],
        &[(1000, 1.0), (2000, stale)],
    )]);
    assert_eq!(post_remote_write(&url, &ok).unwrap().status, 204);
    // Re-sending identical samples is fine (a retried request).
    assert_eq!(post_remote_write(&url, &ok).unwrap().status, 204);
    let older = request(vec![series(
        &[("__name__", "m"), ("job", "a")],
        &[(500, 1.0)],
    )]);
    let r = post_remote_write(&url, &older).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("out of order sample"), "{}", r.body);
    let r = post_remote_write(&url, b"\xff\xff\xff garbage").unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("snappy"), "{}", r.body);
    assert_eq!(
        get(&ember.url("/-/healthy")).unwrap().status,
        200,
        "bad input does not hurt the server"
    );
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));

    let storage = open_storage(&setup);
    let got = storage
        .select(&[Matcher::eq("__name__", "m")], 0, 10_000)
        .unwrap();
    assert_eq!(got[0].samples.len(), 2);
    assert_eq!(got[0].samples[1].v.to_bits(), ember::model::STALE_NAN_BITS);
}

/// Writers record every request Ember acknowledged with 204; after SIGKILL
/// and a restart, every one of those samples must be there.
#[test]
fn sigkill_during_heavy_ingestion_keeps_every_acknowledged_sample() {
    const SERIES_PER_REQUEST: usize = 500;
    const WRITERS: usize = 3;
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let url = ember.url("/api/v1/write");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = url.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut batch = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let t = 1_000_000 + batch * 1000;
                    let ts = (0..SERIES_PER_REQUEST)
                        .map(|s| {
                            let (w, s) = (w.to_string(), s.to_string());
                            series(
                                &[("__name__", "load"), ("writer", &w), ("s", &s)],
                                &[(t, batch as f64)],
                            )
                        })
                        .collect();
                    match post_remote_write(&url, &request(ts)) {
                        Ok(r) if r.status == 204 => acked.push(t),
                        Ok(r) => panic!("unexpected {} {}", r.status, r.body),
                        Err(_) => break, // the server is gone
                    }
                    batch += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    ember.signal(libc::SIGKILL);
    ember.wait_exit(Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Vec<i64>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(
        total > 10,
        "too little ingestion to mean anything: {total} requests"
    );

    // Restart the real server on the same directory: it must come up and replay.
    let mut again = setup.start(&["--web.enable-remote-write-receiver"]);
    again.wait_ready();
    again.signal(libc::SIGTERM);
    again.wait_exit(Duration::from_secs(20));

    let storage = open_storage(&setup);
    for (w, times) in acked.iter().enumerate() {
        for s in [0, SERIES_PER_REQUEST / 2, SERIES_PER_REQUEST - 1] {
            let labels = Labels::from_pairs([
                ("__name__", "load"),
                ("writer", &w.to_string()),
                ("s", &s.to_string()),
            ])
            .unwrap();
            let ms: Vec<Matcher> = labels
                .iter()
                .map(|l| Matcher::eq(&l.name, &l.value))
                .collect();
            let got = storage.select(&ms, i64::MIN, i64::MAX).unwrap();
            let have: std::collections::HashSet<i64> = got
                .iter()
                .flat_map(|g| g.samples.iter().map(|x| x.t))
                .collect();
            for t in times {
                assert!(
                    have.contains(t),
                    "writer {w} series {s}: acknowledged sample at {t} lost"
                );
            }
        }
    }
    let stats = storage.head_stats();
    assert!(
        stats.num_samples >= (total * SERIES_PER_REQUEST) as u64,
        "{stats:?} < {total} requests"
    );
    println!(
        "{total} acknowledged requests ({} samples) all survived SIGKILL",
        total * SERIES_PER_REQUEST
    );
}

/// Prometheus 2.42 scrapes itself and remote-writes to Ember; the samples
/// Prometheus stored for a series are the samples Ember stored.
#[test]
fn prometheus_remote_writes_into_ember() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();

    let prom_port = free_port();
    let prom_dir = setup.path().join("prometheus");
    let prom_config = setup.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels: {{replica: a}}\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]\nremote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 500}}\n",
            ember.port
        ),
    )
    .unwrap();
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!("--storage.tsdb.path={}", prom_dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(setup.path().join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    // Make sure Prometheus dies with the test even if an assertion fails.
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(self.0.to_string())
                .status();
        }
    }
    let _guard = KillOnDrop(prom.id());

    // Wait until Ember has received a good number of scrapes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tsdb = get(&ember.url("/api/v1/status/tsdb")).unwrap().body;
        let v: serde_json::Value = serde_json::from_str(&tsdb).unwrap();
        if v["data"]["headStats"]["numSeries"].as_u64().unwrap_or(0) > 100
            && v["data"]["headStats"]["maxTime"].as_i64().unwrap_or(0)
                - v["data"]["headStats"]["minTime"].as_i64().unwrap_or(0)
                > 6_000
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Ember received too little; prometheus log:\n{}",
            std::fs::read_to_string(setup.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Prometheus's own raw samples of `up` (a range selector returns them unchanged).
    let q = get(&format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=up%5B5m%5D"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&q.body).unwrap();
    let prom_samples: Vec<(i64, f64)> = v["data"]["result"][0]["values"]
        .as_array()
        .expect("up has samples in Prometheus")
        .iter()
        .map(|p| {
            (
                (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                p[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(prom.id().to_string())
        .status();
    let _ = prom.wait();
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));

    let storage = open_storage(&setup);
    let got = storage
        .select(
            &[
                Matcher::eq("__name__", "up"),
                Matcher::eq("job", "prometheus"),
                Matcher::eq("replica", "a"),
            ],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(
        got.len(),
        1,
        "one up series with Prometheus's external label"
    );
    let ember_samples: Vec<(i64, f64)> = got[0].samples.iter().map(|s| (s.t, s.v)).collect();
    let last = ember_samples.last().unwrap().0;
    let expected: Vec<(i64, f64)> = prom_samples
        .into_iter()
        .filter(|(t, _)| *t <= last)
        .collect();
    assert!(expected.len() >= 5, "{expected:?}");
    assert_eq!(
        &ember_samples[ember_samples.len() - expected.len()..],
        &expected[..]
    );
}
