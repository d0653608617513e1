//! Scraping the protobuf exposition format with the real binary: the real
//! node_exporter scraped as protobuf and as text gives the same series and
//! metadata, and native histograms served as protobuf are stored and
//! answered as Prometheus 2.42 answers them.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use ember::model::exposition::protobuf::{encode, proto};
use ember::model::{Labels, Matcher};
use ember::storage::{Storage, StorageOptions};
use support::*;

/// Series of `job`, without the job label, as `name{labels}` text.
fn series_of(setup: &Setup, job: &str) -> BTreeSet<String> {
    let (storage, _) = Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {}).unwrap();
    storage
        .select(&[Matcher::eq("job", job)], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            let pairs: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|l| &*l.name != "job")
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            Labels::from_pairs(pairs).unwrap().to_string()
        })
        .collect()
}

fn metadata_of(ember: &Ember, job: &str) -> BTreeSet<String> {
    let (code, v) = get_json(&ember.url(&format!(
        "/api/v1/targets/metadata?match_target={}",
        enc(&format!("{{job=\"{job}\"}}"))
    )));
    assert_eq!(code, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {:?}",
                m["metric"], m["type"], m["unit"], m["help"]
            )
        })
        .collect()
}

#[test]
fn node_exporter_as_protobuf_gives_the_series_and_metadata_of_text() {
    if !require_program("prometheus-node-exporter", "prometheus-node-exporter") {
        return;
    }
    let port = free_port();
    let exporter = std::process::Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _exporter = KillOnDrop(exporter);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&format!("http://127.0.0.1:{port}/metrics")).is_err() {
        assert!(Instant::now() < deadline, "node_exporter did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let setup = Setup::new();
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: proto\n    scrape_protocols: [PrometheusProto]\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n  - job_name: text\n    scrape_protocols: [PrometheusText0.0.4]\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    std::thread::sleep(Duration::from_millis(3500));
    let (_, targets) = get_json(&ember.url("/api/v1/targets"));
    for t in targets["data"]["activeTargets"].as_array().unwrap() {
        assert_eq!(t["health"], "up", "{t}");
    }
    let proto_meta = metadata_of(&ember, "proto");
    let text_meta = metadata_of(&ember, "text");
    assert!(proto_meta.len() > 50, "{proto_meta:?}");
    assert_eq!(proto_meta, text_meta);
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));

    let proto = series_of(&setup, "proto");
    let text = series_of(&setup, "text");
    assert!(proto.len() > 200, "{}", proto.len());
    let only_proto: Vec<_> = proto.difference(&text).collect();
    let only_text: Vec<_> = text.difference(&proto).collect();
    assert!(
        only_proto.is_empty() && only_text.is_empty(),
        "only in protobuf: {only_proto:?}\nonly in text: {only_text:?}"
    );
}

type Body = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// A loopback target that answers every request with `body` as protobuf.
fn serve_protobuf(body: Body) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = body.lock().unwrap().clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    addr
}

fn span(offset: i32, length: u32) -> proto::BucketSpan {
    proto::BucketSpan {
        offset: Some(offset),
        length: Some(length),
    }
}

fn plain_family() -> proto::MetricFamily {
    proto::MetricFamily {
        name: Some("plain".into()),
        help: Some("A gauge.".into()),
        r#type: Some(proto::MetricType::Gauge as i32),
        metric: vec![proto::Metric {
            gauge: Some(proto::Gauge { value: Some(7.0) }),
            ..Default::default()
        }],
        unit: None,
    }
}

fn native_body() -> Vec<u8> {
    let histogram = proto::Histogram {
        sample_count: Some(12),
        sample_sum: Some(31.25),
        schema: Some(1),
        zero_threshold: Some(0.001),
        zero_count: Some(2),
        positive_span: vec![span(0, 2), span(3, 2)],
        positive_delta: vec![1, 2, -1, 0],
        negative_span: vec![span(-1, 1)],
        negative_delta: vec![2],
        exemplars: vec![proto::Exemplar {
            label: vec![proto::LabelPair {
                name: Some("trace_id".into()),
                value: Some("abc".into()),
            }],
            value: Some(6.5),
            timestamp: Some(proto::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        }],
        bucket: vec![proto::Bucket {
            cumulative_count: Some(5),
            upper_bound: Some(1.0),
            ..Default::default()
        }],
        ..Default::default()
    };
    let float = proto::Histogram {
        sample_count_float: Some(4.5),
        sample_sum: Some(-2.0),
        schema: Some(0),
        zero_threshold: Some(0.0),
        zero_count_float: Some(0.5),
        positive_span: vec![span(1, 1)],
        positive_count: vec![4.0],
        ..Default::default()
    };
    encode(&[
        proto::MetricFamily {
            name: Some("request_seconds".into()),
            help: Some("Request latency.".into()),
            r#type: Some(proto::MetricType::Histogram as i32),
            metric: vec![proto::Metric {
                label: vec![proto::LabelPair {
                    name: Some("path".into()),
                    value: Some("/api".into()),
                }],
                histogram: Some(histogram),
                ..Default::default()
            }],
            unit: None,
        },
        proto::MetricFamily {
            name: Some("queue_depth".into()),
            help: Some("Items waiting.".into()),
            r#type: Some(proto::MetricType::GaugeHistogram as i32),
            metric: vec![proto::Metric {
                histogram: Some(float),
                ..Default::default()
            }],
            unit: None,
        },
        plain_family(),
    ])
}

fn result_without_time(mut v: serde_json::Value) -> serde_json::Value {
    for r in v.as_array_mut().unwrap() {
        for key in ["value", "histogram"] {
            if let Some(pair) = r.get_mut(key).and_then(|p| p.as_array_mut()) {
                pair.remove(0);
            }
        }
    }
    v
}

#[test]
fn native_histograms_from_protobuf_are_answered_as_prometheus_answers_them() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let body: Body = std::sync::Arc::new(std::sync::Mutex::new(native_body()));
    let addr = serve_protobuf(body.clone());
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nh\n    scrape_native_histograms: true\n    static_configs:\n      - targets: ['{addr}']\n"
    );
    let setup = Setup::new();
    setup.write_config(&config);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    let prom_dir = tempfile::tempdir().unwrap();
    // 2.42 has no scrape_native_histograms field: the feature flag does it.
    let prom_config = config.replace("    scrape_native_histograms: true\n", "");
    let prom = Prometheus::start_with(
        prom_dir.path(),
        &prom_config,
        &["--enable-feature=native-histograms"],
    );
    // Prometheus starts scraping a few seconds after it is ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom
        .query("request_seconds")
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape:\n{}",
            prom.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    for q in [
        "request_seconds",
        "plain",
        "request_seconds_count",
        "histogram_count(request_seconds)",
        "scrape_series_added",
    ] {
        let (status, v) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc(q))));
        assert_eq!(status, 200, "{q}: {v}");
        let ours = result_without_time(v["data"]["result"].clone());
        let theirs = result_without_time(prom.query(q));
        assert_eq!(
            ours,
            theirs,
            "{q}: Prometheus's targets: {}",
            get_json(&prom.url("/api/v1/targets")).1
        );
    }
    // A native histogram is one sample; 2.42 makes three series of the
    // gauge histogram (see below), so the count is checked on its own.
    let (_, v) = get_json(&ember.url(&format!(
        "/api/v1/query?query={}",
        enc("scrape_samples_scraped")
    )));
    assert_eq!(v["data"]["result"][0]["value"][1], "3", "{v}");
    // 2.42 interpolates linearly inside a bucket; Prometheus 3 (and Ember)
    // exponentially: the 10.8th of 12 observations is 0.4 into (2^2.5, 2^3].
    let (_, v) = get_json(&ember.url(&format!(
        "/api/v1/query?query={}",
        enc("histogram_quantile(0.9, request_seconds)")
    )));
    let q: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((q - 2.7f64.exp2()).abs() < 1e-12, "{v}");
    // Prometheus 2.42 reads neither float nor gauge native histograms
    // from protobuf (it makes classic-looking series of them), so this
    // one is checked against the values the target serves.
    let (_, v) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc("queue_depth"))));
    let ours = result_without_time(v["data"]["result"].clone());
    assert_eq!(
        ours[0]["histogram"][0],
        serde_json::json!({
            "count": "4.5",
            "sum": "-2",
            "buckets": [[1, "-0", "0", "0.5"], [0, "1", "2", "4"]]
        }),
        "{ours}"
    );

    // Histogram series that disappear get stale markers, as float ones do.
    *body.lock().unwrap() = encode(&[plain_family()]);
    std::thread::sleep(Duration::from_millis(2500));
    for q in ["request_seconds", "queue_depth"] {
        let (_, v) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc(q))));
        assert_eq!(v["data"]["result"], serde_json::json!([]), "{q}: {v}");
    }
    assert_eq!(prom.query("request_seconds"), serde_json::json!([]));
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));
}

#[test]
fn classic_series_of_native_histograms_only_when_asked() {
    let body: Body = std::sync::Arc::new(std::sync::Mutex::new(native_body()));
    let addr = serve_protobuf(body);
    let setup = Setup::new();
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: both\n    scrape_native_histograms: true\n    always_scrape_classic_histograms: true\n    static_configs:\n      - targets: ['{addr}']\n  - job_name: classic\n    scrape_protocols: [PrometheusProto]\n    static_configs:\n      - targets: ['{addr}']\n"
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    std::thread::sleep(Duration::from_millis(3000));
    let query = |q: &str| {
        let (status, v) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc(q))));
        assert_eq!(status, 200, "{q}: {v}");
        v["data"]["result"].clone()
    };
    let count = |q: &str| query(q).as_array().map_or(0, Vec::len);
    assert_eq!(count(r#"request_seconds{job="both"}"#), 1);
    assert!(query(r#"request_seconds{job="both"}"#)[0]["histogram"].is_array());
    assert_eq!(count(r#"request_seconds_bucket{job="both"}"#), 2);
    assert_eq!(count(r#"request_seconds{job="classic"}"#), 0);
    let buckets = query(r#"request_seconds_bucket{job="classic"}"#);
    let mut les: Vec<(String, String)> = buckets
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["le"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    les.sort();
    assert_eq!(
        les,
        vec![
            ("+Inf".to_owned(), "12".to_owned()),
            ("1".to_owned(), "5".to_owned())
        ]
    );
    assert_eq!(
        query(r#"request_seconds_count{job="classic"}"#)[0]["value"][1],
        "12"
    );
    assert_eq!(
        query(r#"request_seconds_sum{job="classic"}"#)[0]["value"][1],
        "31.25"
    );
    // Native histogram exemplars are stored with the histogram series.
    let (status, v) = get_json(&ember.url(&format!(
        "/api/v1/query_exemplars?query={}&start=0&end=2000000000",
        enc(r#"request_seconds{job="both"}"#)
    )));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"][0]["exemplars"],
        serde_json::json!([{"labels": {"trace_id": "abc"}, "value": "6.5", "timestamp": 1700000000}]),
        "{v}"
    );
    // Job "both": 2 histograms, the gauge, 4 classic series; "classic": the
    // gauge and 4 classic series (the float gauge histogram has no buckets).
    assert_eq!(
        query(r#"scrape_samples_scraped{job="both"}"#)[0]["value"][1],
        "7"
    );
    assert_eq!(
        query(r#"scrape_samples_scraped{job="classic"}"#)[0]["value"][1],
        "5"
    );
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));
}
