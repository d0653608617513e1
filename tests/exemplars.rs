//! Exemplars end to end: scraped from an OpenMetrics target or received by
//! remote write, kept in the in-memory ring and the WAL (so a SIGKILL loses
//! none), answered by `/api/v1/query_exemplars` in Prometheus's JSON shape,
//! and sent on by remote write with `send_exemplars` to a real Prometheus.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const EXPOSITION: &str = r#"# TYPE http_requests counter
http_requests_total{path="/"} 5 # {trace_id="abc123"} 1.5 1700000000.25
http_requests_total{path="/api"} 2
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 3 # {trace_id="t-fast",span_id="s1"} 0.05
latency_seconds_bucket{le="+Inf"} 4 # {trace_id="t-slow"} 7
latency_seconds_sum 7.15
latency_seconds_count 4
# EOF
"#;

fn exemplars(ember: &Ember, query: &str) -> Value {
    let (status, v) =
        get_json(&ember.url(&format!("/api/v1/query_exemplars?query={}", enc(query))));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

#[test]
fn scraped_openmetrics_exemplars_are_queryable() {
    let target = TestTarget::start(Reply {
        content_type: OPENMETRICS.into(),
        ..Reply::text(EXPOSITION)
    });
    let setup = Setup::new();
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        target.addr
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    target.wait_hits(3);
    // The third scrape's commit may still be in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while exemplars(&ember, "latency_seconds_bucket")
        .as_array()
        .map_or(0, |a| a.len())
        < 2
    {
        assert!(Instant::now() < deadline, "{}", ember.logs());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The exemplar with its own timestamp is stored once, however often it
    // is scraped (the repeats are duplicates), with the series' target labels.
    let instance = target.addr.as_str();
    let data = exemplars(&ember, "http_requests_total");
    assert_eq!(
        data,
        json!([{
            "seriesLabels": {"__name__": "http_requests_total", "instance": instance, "job": "app", "path": "/"},
            "exemplars": [{"labels": {"trace_id": "abc123"}, "value": "1.5", "timestamp": 1700000000.25}]
        }])
    );

    // Exemplars without a timestamp get the scrape's, so each scrape adds one.
    let data = exemplars(&ember, r#"rate(latency_seconds_bucket{le="0.1"}[5m])"#);
    let series = data.as_array().unwrap();
    assert_eq!(series.len(), 1, "{data}");
    assert_eq!(series[0]["seriesLabels"]["le"], "0.1");
    let list = series[0]["exemplars"].as_array().unwrap();
    assert!(list.len() >= 2, "{data}");
    for e in list {
        assert_eq!(
            e["labels"],
            json!({"span_id": "s1", "trace_id": "t-fast"}),
            "{data}"
        );
        assert_eq!(e["value"], "0.05");
        let t = e["timestamp"].as_f64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - 60.0..=now + 1.0).contains(&t), "{t} vs {now}");
    }
    let times: Vec<f64> = list
        .iter()
        .map(|e| e["timestamp"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");

    // Several selectors in one query: every matching series, sorted.
    let data = exemplars(
        &ember,
        "http_requests_total + on() group_left sum(latency_seconds_bucket)",
    );
    assert_eq!(data.as_array().unwrap().len(), 3, "{data}");

    // The time range applies to exemplar timestamps, inclusive.
    let (_, v) = get_json(&ember.url(&format!(
        "/api/v1/query_exemplars?query={}&start=1700000000.25&end=1700000000.25",
        enc("{job=\"app\"}")
    )));
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["data"][0]["seriesLabels"]["path"], "/");
    let (_, v) = get_json(&ember.url(&format!(
        "/api/v1/query_exemplars?query={}&start=0&end=1700000000",
        enc("{job=\"app\"}")
    )));
    assert_eq!(v["data"], json!([]));

    // POST, form-encoded, answers the same as GET.
    let r = post_form(
        &ember.url("/api/v1/query_exemplars"),
        &format!("query={}", enc("http_requests_total")),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"], exemplars(&ember, "http_requests_total"));

    // No selector in the query: Prometheus's `data: null`.
    let (_, v) = get_json(&ember.url("/api/v1/query_exemplars?query=1%2B1"));
    assert_eq!(v, json!({"status": "success", "data": null}));

    // Errors as Prometheus words them.
    let (status, v) = get_json(&ember.url("/api/v1/query_exemplars?query=up&start=10&end=5"));
    assert_eq!(status, 400);
    assert_eq!(
        v,
        json!({"status": "error", "errorType": "bad_data",
               "error": "end timestamp must not be before start timestamp"})
    );
    let (status, v) = get_json(&ember.url("/api/v1/query_exemplars?query=sum("));
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\""),
        "{v}"
    );
    let (status, v) = get_json(&ember.url("/api/v1/query_exemplars?query=up&start=x"));
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("\"start\""), "{v}");

    assert!(
        ember
            .metric("ember_tsdb_exemplar_exemplars_in_storage")
            .unwrap()
            >= 4.0
    );
    assert_eq!(
        ember.metric("ember_tsdb_exemplar_max_exemplars"),
        Some(100_000.0)
    );
}

/// Writes one sample of `jobs_total` at `sample_t` with `exemplars`; the status.
fn write_with_exemplars(ember: &Ember, sample_t: i64, exemplars: &[(&str, i64)]) -> u16 {
    use ember::remote::proto;
    let label = |n: &str, v: &str| proto::Label {
        name: n.into(),
        value: v.into(),
    };
    let ts = proto::TimeSeries {
        labels: vec![label("__name__", "jobs_total"), label("job", "batch")],
        samples: vec![proto::Sample {
            value: 1.0,
            timestamp: sample_t,
        }],
        exemplars: exemplars
            .iter()
            .map(|&(trace, t)| proto::Exemplar {
                labels: vec![label("trace_id", trace)],
                value: 1.0,
                timestamp: t,
            })
            .collect(),
        ..proto::TimeSeries::default()
    };
    let body = proto::encode_request(&proto::WriteRequest {
        timeseries: vec![ts],
        metadata: vec![],
    });
    let r = post_remote_write(&ember.url("/api/v1/write"), &body).unwrap();
    r.status
}

#[test]
fn remote_write_exemplars_and_the_ring_size() {
    let setup = Setup::new();
    setup.write_config("storage:\n  exemplars:\n    max_exemplars: 2\n");
    let mut ember = setup.start(&[
        "--web.enable-remote-write-receiver",
        "--web.enable-lifecycle",
    ]);
    ember.wait_ready();
    assert_eq!(
        write_with_exemplars(&ember, 3000, &[("a", 1000), ("b", 2000), ("c", 3000)]),
        204
    );
    // An out-of-order exemplar is dropped without failing the request.
    assert_eq!(write_with_exemplars(&ember, 3500, &[("old", 500)]), 204);
    let data = exemplars(&ember, "jobs_total");
    let traces: Vec<&str> = data[0]["exemplars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["labels"]["trace_id"].as_str().unwrap())
        .collect();
    // Only the newest two fit.
    assert_eq!(traces, ["b", "c"], "{data}");
    assert_eq!(
        data[0]["seriesLabels"],
        json!({"__name__": "jobs_total", "job": "batch"})
    );
    assert_eq!(ember.metric("ember_tsdb_exemplar_max_exemplars"), Some(2.0));

    // A reload with max_exemplars 0 turns the store off and empties it.
    setup.write_config("storage:\n  exemplars:\n    max_exemplars: 0\n");
    assert_eq!(post(&ember.url("/-/reload")).unwrap().status, 200);
    assert_eq!(exemplars(&ember, "jobs_total"), json!([]));
    assert_eq!(write_with_exemplars(&ember, 4000, &[("d", 4000)]), 204);
    assert_eq!(exemplars(&ember, "jobs_total"), json!([]));
}

/// Prometheus 2.42 scrapes the same OpenMetrics target and sends its
/// exemplars to Ember by remote write (`send_exemplars`): Ember then answers
/// `query_exemplars` exactly as Prometheus does.
#[test]
fn prometheus_remote_writes_exemplars_and_answers_alike() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let target = TestTarget::start(Reply {
        content_type: OPENMETRICS.into(),
        ..Reply::text(EXPOSITION)
    });
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let prom = Prometheus::start_with(
        setup.path(),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{}']}}]\nremote_write:\n  - url: {}\n    send_exemplars: true\n    queue_config: {{batch_send_deadline: 1s}}\n",
            target.addr,
            ember.url("/api/v1/write")
        ),
        &["--enable-feature=exemplar-storage"],
    );
    let query = "/api/v1/query_exemplars?query=http_requests_total";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, from_ember) = get_json(&ember.url(query));
        let (_, from_prom) = get_json(&prom.url(query));
        if from_ember["data"].as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(from_ember, from_prom);
            assert_eq!(
                from_ember["data"][0]["exemplars"][0]["labels"],
                json!({"trace_id": "abc123"})
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exemplars reached Ember; prometheus log:\n{}",
            prom.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `query_exemplars` of `{job="app"}` or `jobs_total` with timestamps in
/// `[0, end_ms]` from `base` (Ember or Prometheus).
fn exemplars_until(base: &str, end_ms: i64) -> Value {
    let url = format!(
        "{base}/api/v1/query_exemplars?query={}&start=0&end={}.{:03}",
        enc("{job=\"app\"} or jobs_total"),
        end_ms / 1000,
        end_ms % 1000
    );
    let (status, v) = get_json(&url);
    assert_eq!(status, 200, "{v}");
    v["data"].clone()
}

/// How many exemplars the `le="0.1"` bucket has in `data`: one per scrape,
/// since they carry the scrape's timestamp.
fn fast_bucket_exemplars(data: &Value) -> usize {
    data.as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["seriesLabels"]["le"] == "0.1")
        .map(|s| s["exemplars"].as_array().map_or(0, Vec::len))
        .sum()
}

fn scrape_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// Waits until Ember has at least three scrapes' exemplars older than two
/// seconds, and returns that cut-off: every scrape started before it has
/// committed, so exemplars up to it no longer change.
fn settled_cutoff(ember: &Ember) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cut = now_ms() - 2000;
        if fast_bucket_exemplars(&exemplars_until(&ember.url(""), cut)) >= 3 {
            return cut;
        }
        assert!(Instant::now() < deadline, "{}", ember.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Exemplars are in the WAL with their samples: after a SIGKILL, the
/// restarted Ember answers `query_exemplars` exactly as before.
#[test]
fn exemplars_survive_sigkill_and_restart() {
    let target = TestTarget::start(Reply {
        content_type: OPENMETRICS.into(),
        ..Reply::text(EXPOSITION)
    });
    let setup = Setup::new();
    setup.write_config(&scrape_config(&target.addr));
    let flags = ["--web.enable-remote-write-receiver"];
    let mut ember = setup.start(&flags);
    ember.wait_ready();
    assert_eq!(
        write_with_exemplars(&ember, 3000, &[("a", 1000), ("b", 2000)]),
        204
    );
    let cut = settled_cutoff(&ember);
    let before = exemplars_until(&ember.url(""), cut);
    let series = before.as_array().unwrap();
    // jobs_total, http_requests_total{path="/"} and both buckets.
    assert_eq!(series.len(), 4, "{before}");
    assert!(before.to_string().contains("abc123"), "{before}");

    ember.signal(libc::SIGKILL);
    ember.wait_exit(Duration::from_secs(10));
    let mut ember = setup.start(&flags);
    ember.wait_ready();
    assert_eq!(exemplars_until(&ember.url(""), cut), before);
}

/// With `send_exemplars: true`, exemplars Ember scraped reach Prometheus
/// 2.42 (remote-write receiver, exemplar storage on) with the same series,
/// labels, values and timestamps; a remote without it gets the samples but
/// no exemplars.
#[test]
fn send_exemplars_reaches_prometheus_only_when_asked() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let target = TestTarget::start(Reply {
        content_type: OPENMETRICS.into(),
        ..Reply::text(EXPOSITION)
    });
    let setup = Setup::new();
    let receiver_flags = [
        "--web.enable-remote-write-receiver",
        "--enable-feature=exemplar-storage",
    ];
    let start_receiver = |name: &str| {
        let dir = setup.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Prometheus::start_with(&dir, "global:\n  scrape_interval: 1m\n", &receiver_flags)
    };
    let with = start_receiver("with");
    let without = start_receiver("without");
    setup.write_config(&format!(
        "{}remote_write:\n- url: {}\n  name: with\n  send_exemplars: true\n  queue_config: {{batch_send_deadline: 500ms}}\n- url: {}\n  name: without\n  queue_config: {{batch_send_deadline: 500ms}}\n",
        scrape_config(&target.addr),
        with.url("/api/v1/write"),
        without.url("/api/v1/write"),
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    let cut = settled_cutoff(&ember);
    let want = exemplars_until(&ember.url(""), cut);
    assert!(want.to_string().contains("abc123"), "{want}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = exemplars_until(&with.url(""), cut);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has\n{got}\nEmber has\n{want}\nprometheus log:\n{}\nember log:\n{}",
            with.logs(),
            ember.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let metrics = get(&ember.url("/metrics")).unwrap().body;
    let sent = |remote: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("ember_remote_storage_exemplars_total{")
                    && l.contains(&format!("remote_name=\"{remote}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(sent("with") > 0.0, "{metrics}");
    assert_eq!(sent("without"), 0.0);

    // The other remote has the samples of the same scrapes, not their exemplars.
    while without
        .query("http_requests_total")
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(Instant::now() < deadline, "{}", without.logs());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(exemplars_until(&without.url(""), now_ms()), json!([]));
}
