//! The remote-write sender against a real receiver: Prometheus 2.42 with
//! `--web.enable-remote-write-receiver`. Ember scrapes a changing target and
//! every sample it stored must arrive unchanged at the receiver, also when
//! the receiver is down for a while and when Ember is SIGKILLed mid-stream.
//! A receiver answering 4xx gets its samples dropped and counted; one
//! answering 5xx gets them retried. Native histograms arrive with the same
//! buckets in a Prometheus with native histograms on, only from a remote
//! with `send_native_histograms: true`.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// Series → (timestamp ms, value bits), without the external label.
type Samples = BTreeMap<String, Vec<(i64, u64)>>;

const SERIES: usize = 60;

/// A target whose values change every 100 ms until the guard is dropped.
struct ChangingTarget {
    target: TestTarget,
    stop: Arc<AtomicBool>,
}

impl ChangingTarget {
    fn start() -> ChangingTarget {
        let target = TestTarget::start(Reply::text(&exposition(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (reply, flag) = (target.reply.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !flag.load(Ordering::SeqCst) {
                n += 1;
                reply.lock().unwrap().body = exposition(n);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        ChangingTarget { target, stop }
    }
}

impl Drop for ChangingTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn exposition(n: u64) -> String {
    let mut s =
        String::from("# HELP rw_test_gauge A changing gauge.\n# TYPE rw_test_gauge gauge\n");
    for i in 0..SERIES {
        s.push_str(&format!(
            "rw_test_gauge{{i=\"{i}\"}} {}\n",
            (n as f64) * 0.5 + i as f64
        ));
    }
    s.push_str("# TYPE rw_test_total counter\n");
    s.push_str(&format!("rw_test_total {n}\n"));
    s
}

fn ember_config(target: &str, remote: &str) -> String {
    format!(
        "global:\n  scrape_interval: 500ms\n  external_labels:\n    origin: ember-a\n\
         scrape_configs:\n- job_name: src\n  static_configs:\n  - targets: ['{target}']\n\
         remote_write:\n- url: {remote}\n  name: receiver\n  remote_timeout: 5s\n\
         \x20 queue_config:\n    min_shards: 2\n    batch_send_deadline: 500ms\n    min_backoff: 50ms\n    max_backoff: 500ms\n\
         \x20 metadata_config:\n    send_interval: 1s\n\
         \x20 write_relabel_configs:\n  - source_labels: [__name__]\n    regex: scrape_samples_scraped\n    action: drop\n"
    )
}

/// Every raw sample of the test's series in `(end - 1h, end]`, by series.
fn raw_samples(base: &str, end_ms: i64, drop_label: Option<&str>) -> Samples {
    let q = enc("{__name__=~\"rw_test_.*|up\",job=\"src\"}[1h]");
    let url = format!(
        "{base}/api/v1/query?query={q}&time={}.{:03}",
        end_ms / 1000,
        end_ms % 1000
    );
    let (status, v) = get_json(&url);
    assert_eq!(status, 200, "{v}");
    let mut out = Samples::new();
    for s in v["data"]["result"].as_array().cloned().unwrap_or_default() {
        let mut metric: BTreeMap<String, String> =
            serde_json::from_value(s["metric"].clone()).unwrap();
        if let Some(l) = drop_label {
            assert!(metric.remove(l).is_some(), "external label missing: {s}");
        }
        let values = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                (t, v.to_bits())
            })
            .collect();
        out.insert(format!("{metric:?}"), values);
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until the receiver has exactly the samples Ember has up to `end`.
fn assert_all_arrived(ember: &Ember, receiver: &Prometheus, end_ms: i64) {
    let want = raw_samples(&ember.url(""), end_ms, None);
    let total: usize = want.values().map(Vec::len).sum();
    assert!(
        want.len() > SERIES,
        "ember has too few series: {}",
        want.len()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = raw_samples(&receiver.url(""), end_ms, Some("origin"));
        if got == want {
            println!("receiver has all {total} samples of {} series", want.len());
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<String> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .map(|(k, v)| {
                    let g = got.get(k).map(Vec::len).unwrap_or(0);
                    format!("{k}: ember {} receiver {g}", v.len())
                })
                .take(5)
                .collect();
            panic!(
                "receiver is missing samples: {missing:?}\nember logs:\n{}\nreceiver logs:\n{}",
                ember.logs(),
                receiver.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn receiver_config() -> &'static str {
    "global:\n  scrape_interval: 1h\n"
}

fn metric(ember: &Ember, name: &str) -> f64 {
    ember.metric(name).unwrap_or(0.0)
}

#[test]
fn everything_scraped_arrives_even_across_a_receiver_outage() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    let target = ChangingTarget::start();
    let port = free_port();
    let receiver_dir = setup.path().join("receiver");
    std::fs::create_dir_all(&receiver_dir).unwrap();
    let flags = ["--web.enable-remote-write-receiver"];
    let receiver = Prometheus::start_on(&receiver_dir, receiver_config(), port, &flags);
    setup.write_config(&ember_config(
        &target.target.addr,
        &format!("http://127.0.0.1:{port}/api/v1/write"),
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    std::thread::sleep(Duration::from_secs(4));
    assert!(metric(&ember, "ember_remote_storage_samples_total") > 0.0);

    // The receiver goes away for a while; Ember keeps scraping.
    drop(receiver);
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        metric(&ember, "ember_remote_storage_samples_retried_total") > 0.0,
        "{}",
        ember.logs()
    );
    assert!(metric(&ember, "ember_remote_storage_samples_pending") > 0.0);
    let receiver = Prometheus::start_on(&receiver_dir, receiver_config(), port, &flags);
    std::thread::sleep(Duration::from_secs(2));
    let end = now_ms() - 1000;
    assert_all_arrived(&ember, &receiver, end);

    assert_eq!(
        metric(&ember, "ember_remote_storage_samples_failed_total"),
        0.0
    );
    // write_relabel_configs dropped one series per scrape, and only that.
    assert!(metric(&ember, "ember_remote_storage_samples_dropped_total") > 0.0);
    assert!(
        receiver
            .query("scrape_samples_scraped")
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        !get_json(&ember.url("/api/v1/query?query=scrape_samples_scraped")).1["data"]["result"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let sent = receiver.query("scrape_duration_seconds");
    assert_eq!(sent[0]["metric"]["origin"], "ember-a", "{sent}");
    assert!(metric(&ember, "ember_remote_storage_shards") >= 1.0);
    assert!(metric(&ember, "ember_remote_storage_metadata_total") > 0.0);
    let lag = metric(&ember, "ember_remote_storage_highest_timestamp_in_seconds")
        - metric(
            &ember,
            "ember_remote_storage_queue_highest_sent_timestamp_seconds",
        );
    assert!((0.0..5.0).contains(&lag), "lag {lag}");
    assert!(
        setup.data_dir().join("remote_write/receiver.json").exists(),
        "progress file"
    );
}

#[test]
fn sigkill_mid_stream_loses_nothing() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    let target = ChangingTarget::start();
    let receiver_dir = setup.path().join("receiver");
    std::fs::create_dir_all(&receiver_dir).unwrap();
    let receiver = Prometheus::start_with(
        &receiver_dir,
        receiver_config(),
        &["--web.enable-remote-write-receiver"],
    );
    setup.write_config(&ember_config(
        &target.target.addr,
        &receiver.url("/api/v1/write"),
    ));
    for round in 0..3 {
        let mut ember = setup.start(&[]);
        ember.wait_ready();
        std::thread::sleep(Duration::from_millis(2500 + 700 * round));
        ember.signal(libc::SIGKILL);
        ember.wait_exit(Duration::from_secs(10));
    }
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    std::thread::sleep(Duration::from_secs(2));
    let end = now_ms() - 1000;
    assert_all_arrived(&ember, &receiver, end);
    // Samples re-read after a kill that the receiver already had were
    // skipped (or, if accepted in the last moment before the kill, found
    // out by splitting the rejected request), never failed.
    assert_eq!(
        metric(&ember, "ember_remote_storage_samples_failed_total"),
        0.0
    );
    println!(
        "already sent: {}",
        metric(&ember, "ember_remote_storage_samples_already_sent_total")
    );
}

#[test]
fn client_errors_are_dropped_and_server_errors_retried() {
    let setup = Setup::new();
    let target = ChangingTarget::start();
    let rejecting = TestTarget::start(Reply {
        status: 400,
        content_type: "text/plain".into(),
        body: "bad request".into(),
        delay: Duration::ZERO,
    });
    let failing = TestTarget::start(Reply {
        status: 503,
        content_type: "text/plain".into(),
        body: "unavailable".into(),
        delay: Duration::ZERO,
    });
    setup.write_config(&format!(
        "global:\n  scrape_interval: 500ms\n\
         scrape_configs:\n- job_name: src\n  static_configs:\n  - targets: ['{}']\n\
         remote_write:\n\
         - url: http://{}/api/v1/write\n  name: rejecting\n  queue_config: {{batch_send_deadline: 200ms}}\n\
         \x20 metadata_config: {{send: false}}\n\
         - url: http://{}/api/v1/write\n  name: failing\n  queue_config: {{batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 200ms}}\n\
         \x20 metadata_config: {{send: false}}\n",
        target.target.addr, rejecting.addr, failing.addr
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(20);
    let per_remote = |name: &str, remote: &str| -> f64 {
        let body = get(&ember.url("/metrics")).unwrap().body;
        body.lines()
            .find(|l| l.starts_with(&format!("{name}{{remote_name=\"{remote}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    loop {
        let failed = per_remote("ember_remote_storage_samples_failed_total", "rejecting");
        let retried = per_remote("ember_remote_storage_samples_retried_total", "failing");
        if failed > 0.0 && retried > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "failed {failed} retried {retried}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // 4xx: dropped, never retried; 5xx: retried, never dropped.
    assert_eq!(
        per_remote("ember_remote_storage_samples_retried_total", "rejecting"),
        0.0
    );
    assert_eq!(
        per_remote("ember_remote_storage_samples_failed_total", "failing"),
        0.0
    );
    assert_eq!(
        per_remote("ember_remote_storage_samples_total", "failing"),
        0.0
    );
    let logs = ember.logs();
    assert!(
        logs.contains("Non-recoverable error sending samples"),
        "{logs}"
    );
}

/// An integer histogram (schema 0, whose bucket bounds are powers of two
/// and print the same everywhere) at `t_ms`: three positive buckets, a
/// negative one and a zero bucket growing with `n`, delta-encoded.
fn int_histogram(t_ms: i64, n: u64) -> ember::remote::proto::Histogram {
    use ember::remote::proto;
    proto::Histogram {
        count: Some(proto::HistogramCount::CountInt(9 * n)),
        sum: n as f64 * 9.25,
        schema: 0,
        zero_threshold: 0.001,
        zero_count: Some(proto::HistogramZeroCount::ZeroCountInt(n)),
        positive_spans: vec![
            proto::BucketSpan {
                offset: 0,
                length: 2,
            },
            proto::BucketSpan {
                offset: 3,
                length: 1,
            },
        ],
        // Absolute 3n, 2n, n.
        positive_deltas: vec![3 * n as i64, -(n as i64), -(n as i64)],
        negative_spans: vec![proto::BucketSpan {
            offset: -1,
            length: 1,
        }],
        negative_deltas: vec![2 * n as i64],
        reset_hint: 0,
        timestamp: t_ms,
        ..Default::default()
    }
}

/// The matrix `q` selects at `t_ms` (an instant query of a range
/// selector), by series without `drop_label`, as JSON.
fn matrix(base: &str, q: &str, t_ms: i64, drop_label: &str) -> BTreeMap<String, serde_json::Value> {
    let url = format!(
        "{base}/api/v1/query?query={}&time={}.{:03}",
        enc(q),
        t_ms / 1000,
        t_ms % 1000
    );
    let (status, v) = get_json(&url);
    assert_eq!(status, 200, "{v}");
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().cloned().unwrap_or_default() {
        let mut metric: BTreeMap<String, String> =
            serde_json::from_value(s["metric"].clone()).unwrap();
        metric.remove(drop_label);
        let mut points = s.clone();
        points.as_object_mut().unwrap().remove("metric");
        out.insert(format!("{metric:?}"), points);
    }
    out
}

/// Native histograms pushed into Ember arrive in Prometheus 2.42 (started
/// with native histograms on) with the same buckets through the remote
/// that has `send_native_histograms: true`; the remote without it gets
/// the float samples only, as from Prometheus.
#[test]
fn native_histograms_are_sent_only_when_asked_for() {
    use ember::remote::proto::{self, TimeSeries, WriteRequest, encode_request};
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    let receiver_dir = setup.path().join("receiver");
    std::fs::create_dir_all(&receiver_dir).unwrap();
    let receiver = Prometheus::start_with(
        &receiver_dir,
        receiver_config(),
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    );
    let remote = receiver.url("/api/v1/write");
    // Both remotes point at the one receiver; each adds `via` to tell
    // what came through which.
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1h\n\
         remote_write:\n\
         - url: {remote}\n  name: hist\n  send_native_histograms: true\n\
         \x20 queue_config: {{batch_send_deadline: 200ms, min_backoff: 50ms}}\n\
         \x20 metadata_config: {{send: false}}\n\
         \x20 write_relabel_configs: [{{target_label: via, replacement: hist}}]\n\
         - url: {remote}\n  name: plain\n\
         \x20 queue_config: {{batch_send_deadline: 200ms, min_backoff: 50ms}}\n\
         \x20 metadata_config: {{send: false}}\n\
         \x20 write_relabel_configs: [{{target_label: via, replacement: plain}}]\n"
    ));
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    // The queues start at the end of the WAL: give them a moment.
    std::thread::sleep(Duration::from_secs(1));
    let now = now_ms() - 60_000;
    let label = |n: &str, v: &str| proto::Label {
        name: n.into(),
        value: v.into(),
    };
    let req = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![label("__name__", "rw_hist_seconds"), label("job", "api")],
                histograms: (0..6)
                    .map(|i| int_histogram(now + i * 10_000, 1 + i as u64))
                    .collect(),
                ..TimeSeries::default()
            },
            TimeSeries {
                labels: vec![label("__name__", "rw_float"), label("job", "api")],
                samples: (0..6)
                    .map(|i| proto::Sample {
                        value: i as f64 * 0.5,
                        timestamp: now + i * 10_000,
                    })
                    .collect(),
                ..TimeSeries::default()
            },
        ],
        metadata: vec![],
    };
    let r = post_remote_write(&ember.url("/api/v1/write"), &encode_request(&req)).unwrap();
    assert_eq!(r.status, 204, "{}", r.body);

    let end = now + 60_000;
    let want = matrix(&ember.url(""), "{job=\"api\"}[5m]", end, "via");
    assert_eq!(want.len(), 2, "{want:?}");
    let hist_key = want
        .keys()
        .find(|k| k.contains("rw_hist_seconds"))
        .unwrap()
        .clone();
    assert_eq!(
        want[&hist_key]["histograms"].as_array().map(Vec::len),
        Some(6),
        "{want:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let via_hist = matrix(
            &receiver.url(""),
            "{job=\"api\",via=\"hist\"}[5m]",
            end,
            "via",
        );
        let via_plain = matrix(
            &receiver.url(""),
            "{job=\"api\",via=\"plain\"}[5m]",
            end,
            "via",
        );
        if via_hist == want && via_plain.len() == 1 {
            // Same series, same timestamps, same buckets, counts and sums.
            assert!(
                via_plain.keys().all(|k| k.contains("rw_float")),
                "{via_plain:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ember:\n{}\nreceiver via hist:\n{}\nvia plain:\n{via_plain:?}\n{}\n{}",
            serde_json::to_string(&want).unwrap(),
            serde_json::to_string(&via_hist).unwrap(),
            ember.logs(),
            receiver.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let per_remote = |name: &str, remote: &str| -> f64 {
        let body = get(&ember.url("/metrics")).unwrap().body;
        body.lines()
            .find(|l| l.starts_with(&format!("{name}{{remote_name=\"{remote}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        per_remote("ember_remote_storage_histograms_total", "hist"),
        6.0
    );
    assert_eq!(
        per_remote("ember_remote_storage_histograms_total", "plain"),
        0.0
    );
    assert_eq!(
        per_remote("ember_remote_storage_samples_total", "plain"),
        6.0
    );
    // send_native_histograms no longer draws the "not acted on" warning.
    assert!(
        !ember.logs().contains("send_native_histograms"),
        "{}",
        ember.logs()
    );
}
