//! Native histograms end to end through the real binary: remote write of
//! integer and float histograms, the query API's `histogram` and
//! `histograms` JSON, PromQL functions over them, and a restart (WAL
//! replay) keeping them. Then, next to Prometheus 2.42 with native
//! histograms enabled: recording and alerting rules over histograms,
//! Prometheus remote-reading histograms from Ember, and `/federate`
//! leaving histograms out of its text answer.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ember::remote::proto::{self, TimeSeries, WriteRequest, encode_request};
use prost::Message;
use support::*;

fn labels(pairs: &[(&str, &str)]) -> Vec<proto::Label> {
    pairs
        .iter()
        .map(|(n, v)| proto::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// An integer histogram (schema 0) with `n` observations per minute:
/// buckets (0.5, 1] and (1, 2] get n/2 each, delta-encoded.
fn int_histogram(t_ms: i64, n: u64) -> proto::Histogram {
    proto::Histogram {
        count: Some(proto::HistogramCount::CountInt(n)),
        sum: n as f64 * 1.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count: Some(proto::HistogramZeroCount::ZeroCountInt(0)),
        positive_spans: vec![proto::BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![(n / 2) as i64, 0],
        timestamp: t_ms,
        ..Default::default()
    }
}

fn float_histogram(t_ms: i64) -> proto::Histogram {
    proto::Histogram {
        count: Some(proto::HistogramCount::CountFloat(4.0)),
        sum: 10.0,
        schema: -53,
        positive_spans: vec![proto::BucketSpan {
            offset: 0,
            length: 3,
        }],
        positive_counts: vec![1.0, 2.0, 1.0],
        custom_values: vec![1.0, 5.0],
        reset_hint: 3,
        timestamp: t_ms,
        ..Default::default()
    }
}

fn write(ember: &Ember) {
    let req = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: labels(&[("__name__", "rpc_seconds"), ("job", "api")]),
                histograms: (0..=10)
                    .map(|i| int_histogram(i * 60_000, 10 * i as u64))
                    .collect(),
                ..TimeSeries::default()
            },
            TimeSeries {
                labels: labels(&[("__name__", "queue_size"), ("job", "api")]),
                histograms: vec![float_histogram(600_000)],
                ..TimeSeries::default()
            },
        ],
        metadata: vec![],
    };
    let r = post_remote_write(&ember.url("/api/v1/write"), &encode_request(&req)).unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
}

fn query(ember: &Ember, q: &str) -> serde_json::Value {
    let (status, v) = get_json(&ember.url(&format!("/api/v1/query?time=600&query={}", enc(q))));
    assert_eq!(status, 200, "{q}: {v}");
    v["data"]["result"].clone()
}

fn check(ember: &Ember) {
    let r = query(ember, "rpc_seconds");
    assert_eq!(r.as_array().map(Vec::len), Some(1), "{r}");
    assert!(r[0].get("value").is_none(), "{r}");
    assert_eq!(
        r[0]["histogram"],
        serde_json::json!([600, {
            "count": "100",
            "sum": "150",
            "buckets": [[0, "0.5", "1", "50"], [0, "1", "2", "50"]]
        }])
    );
    // Custom buckets: (-Inf, 1], (1, 5], (5, +Inf].
    let r = query(ember, "queue_size");
    assert_eq!(
        r[0]["histogram"][1]["buckets"],
        serde_json::json!([
            [0, "-Inf", "1", "1"],
            [0, "1", "5", "2"],
            [0, "5", "+Inf", "1"]
        ]),
        "{r}"
    );
    let scalar = |q: &str| -> String {
        let r = query(ember, q);
        r[0]["value"][1].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(scalar("histogram_count(rpc_seconds)"), "100");
    assert_eq!(scalar("histogram_sum(rpc_seconds)"), "150");
    assert_eq!(scalar("histogram_avg(rpc_seconds)"), "1.5");
    assert_eq!(scalar("histogram_fraction(0, 1, rpc_seconds)"), "0.5");
    // 10 observations a minute, over 5 minutes, per second.
    assert_eq!(
        scalar("histogram_count(rate(rpc_seconds[5m]))"),
        (10.0f64 / 60.0).to_string()
    );
    assert_eq!(scalar("histogram_quantile(0.5, queue_size)"), "3");
    // A range query returns `histograms`, and no `values`.
    let (status, v) = get_json(&ember.url(&format!(
        "/api/v1/query_range?start=540&end=600&step=60&query={}",
        enc("rpc_seconds")
    )));
    assert_eq!(status, 200, "{v}");
    let series = &v["data"]["result"][0];
    assert!(series.get("values").is_none(), "{series}");
    assert_eq!(series["histograms"].as_array().map(Vec::len), Some(2));
    assert_eq!(series["histograms"][0][1]["count"], "90");
    // Mixing floats and histograms in an aggregation is annotated.
    let (_, v) = get_json(&ember.url(&format!(
        "/api/v1/query?time=600&query={}",
        enc("sum(rpc_seconds or vector(1))")
    )));
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("mix of histograms and floats"), "{v}");
}

#[test]
fn remote_write_query_and_restart() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    write(&ember);
    check(&ember);
    // Bad histograms are refused with a 400 that names them.
    let mut bad = float_histogram(700_000);
    bad.positive_counts.pop();
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels(&[("__name__", "queue_size"), ("job", "api")]),
            histograms: vec![bad],
            ..TimeSeries::default()
        }],
        metadata: vec![],
    };
    let r = post_remote_write(&ember.url("/api/v1/write"), &encode_request(&req)).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("histogram 0"), "{}", r.body);

    // The WAL brings everything back after a kill.
    ember.signal(libc::SIGKILL);
    ember.wait_exit(Duration::from_secs(20));
    let mut again = setup.start(&["--web.enable-remote-write-receiver"]);
    again.wait_ready();
    check(&again);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `latency_hist{job="api",instance=a|b}`: integer histograms every 15s
/// over the last 4 minutes, counting up from 1000 (10 and 4 observations
/// per step). Starting far from 0 keeps `rate`'s extrapolation away from
/// the count's zero point, where Prometheus 3 (and Ember) stop
/// extrapolating a histogram and Prometheus 2.42 does not.
fn latency_request(now: i64) -> Vec<u8> {
    encode_request(&WriteRequest {
        timeseries: latency_series(now),
        metadata: vec![],
    })
}

fn latency_series(now: i64) -> Vec<TimeSeries> {
    let base = now - 240_000;
    let series = |instance: &str, per_step: u64| TimeSeries {
        labels: labels(&[
            ("__name__", "latency_hist"),
            ("instance", instance),
            ("job", "api"),
        ]),
        histograms: (0..=16)
            .map(|i| int_histogram(base + i * 15_000, 1000 + per_step * i as u64))
            .collect(),
        ..TimeSeries::default()
    };
    vec![series("a", 10), series("b", 4)]
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn instant(base: &str, q: &str, time: Option<&str>) -> serde_json::Value {
    let at = time.map(|t| format!("&time={t}")).unwrap_or_default();
    let (status, v) = get_json(&format!("{base}/api/v1/query?query={}{at}", enc(q)));
    assert_eq!(status, 200, "{q}: {v}");
    v["data"]["result"].clone()
}

/// A result as (labels, histogram or value) without timestamps, sorted,
/// so results evaluated at different moments compare.
fn without_time(r: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let v = if s.get("histogram").is_some() {
                        s["histogram"][1].to_string()
                    } else {
                        s["value"][1].to_string()
                    };
                    (s["metric"].to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

const HIST_RULES: &str = r#"groups:
- name: hist
  interval: 1s
  rules:
  - record: job:latency_hist:rate5m
    expr: sum by (job) (rate(latency_hist[5m]))
  - record: job:latency_hist:sum
    expr: sum by (job) (latency_hist)
  - record: instance:latency_hist:count
    expr: histogram_count(latency_hist)
  - alert: LatencyHistogramPresent
    expr: latency_hist
    annotations:
      value: '{{ $value }}'
      query: '{{ with query "latency_hist" }}{{ len . }} {{ . | first | value }}{{ end }}'
"#;

#[test]
fn histogram_rules_match_prometheus() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    std::fs::write(setup.path().join("rules.yml"), HIST_RULES).expect("write rules");
    let config = "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n";
    setup.write_config(config);
    let prom_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(prom_dir.path().join("rules.yml"), HIST_RULES).expect("write rules");
    let prom = Prometheus::start_with(
        prom_dir.path(),
        config,
        &[
            "--enable-feature=native-histograms",
            "--web.enable-remote-write-receiver",
        ],
    );
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let body = latency_request(now_ms());
    for url in [prom.url("/api/v1/write"), ember.url("/api/v1/write")] {
        let r = post_remote_write(&url, &body).expect("remote write");
        assert!(r.status == 204 || r.status == 200, "{url}: {}", r.body);
    }
    let ember_base = ember.url("");
    let prom_base = prom.url("");
    let names = [
        "job:latency_hist:rate5m",
        "job:latency_hist:sum",
        "instance:latency_hist:count",
    ];
    wait_until("every rule's output in both", || {
        names.iter().all(|n| {
            [&ember_base, &prom_base].iter().all(|b| {
                instant(b, n, None)
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            })
        })
    });

    // Sums of the newest histograms (and their counts) do not depend on
    // when each server evaluated: the recorded series are equal.
    for name in ["job:latency_hist:sum", "instance:latency_hist:count"] {
        let e = instant(&ember_base, name, None);
        assert!(
            e[0].get("histogram").is_some() || name.ends_with("count"),
            "{name}: {e}"
        );
        assert_eq!(
            without_time(&e),
            without_time(&instant(&prom_base, name, None)),
            "{name}\nember logs:\n{}",
            ember.logs()
        );
    }

    // A rate depends on the evaluation time, so each server's newest
    // recorded histogram is compared with the other server evaluating
    // the rule's expression at that same time.
    let expr = "sum by (job) (rate(latency_hist[5m]))";
    let newest = |base: &str| -> (String, serde_json::Value) {
        let r = instant(base, "job:latency_hist:rate5m[10s]", None);
        let points = r[0]["histograms"].as_array().cloned().unwrap_or_default();
        let last = points.last().cloned().unwrap_or_default();
        assert!(last[1].is_object(), "no recorded histograms in {base}: {r}");
        (last[0].to_string(), last[1].clone())
    };
    for (recorder, evaluator) in [(&ember_base, &prom_base), (&prom_base, &ember_base)] {
        let (t, recorded) = newest(recorder);
        let evaluated = instant(evaluator, expr, Some(&t));
        assert_eq!(
            evaluated[0]["histogram"][1], recorded,
            "rate recorded by {recorder} at {t} vs evaluated by {evaluator}"
        );
        assert_eq!(evaluated[0]["metric"], serde_json::json!({"job": "api"}));
    }

    // Alerts over histogram samples: one per series, value 0 in both.
    let alerts = |base: &str| -> Vec<(String, String, String)> {
        let (status, v) = get_json(&format!("{base}/api/v1/alerts"));
        assert_eq!(status, 200, "{v}");
        let mut out: Vec<(String, String, String)> = v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["labels"].to_string(),
                            x["value"].to_string(),
                            x["annotations"].to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    };
    let e = alerts(&ember_base);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].2.contains(r#""query":"2 0""#), "{e:?}");
    assert_eq!(e, alerts(&prom_base));
}

/// A snappy `ReadRequest` (SAMPLES) for `__name__=~"latency_hist|queue_size"`.
fn read_request(end_ms: i64) -> Vec<u8> {
    let req = proto::ReadRequest {
        queries: vec![proto::Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: end_ms,
            matchers: vec![proto::LabelMatcher {
                r#type: proto::MatcherType::Re as i32,
                name: "__name__".into(),
                value: "latency_hist|queue_size".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![proto::ResponseType::Samples as i32],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

fn remote_read(url: &str, body: &[u8]) -> Vec<TimeSeries> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .send(body)
        .expect("remote read");
    let raw = r.body_mut().read_to_vec().expect("read body");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{url}: {}",
        String::from_utf8_lossy(&raw)
    );
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&raw)
        .expect("snappy answer");
    let resp = proto::ReadResponse::decode(raw.as_slice()).expect("ReadResponse");
    let mut series = resp
        .results
        .into_iter()
        .next()
        .map(|r| r.timeseries)
        .unwrap_or_default();
    series.sort_by_key(|s| format!("{:?}", s.labels));
    series
}

/// Prometheus 2.42 cannot be the reference here: its remote-read client
/// reads float samples only, and its remote-read server answers a
/// histogram series with an empty `histograms` field. So Ember's answer is
/// checked against what was written: the same series as Prometheus 2.42
/// answers for the same data, each with exactly the histograms written.
#[test]
fn remote_read_answers_native_histograms() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let prom_dir = tempfile::tempdir().expect("tempdir");
    let prom = Prometheus::start_with(
        prom_dir.path(),
        "global:\n  scrape_interval: 1h\n",
        &[
            "--enable-feature=native-histograms",
            "--web.enable-remote-write-receiver",
        ],
    );
    let now = now_ms();
    let mut written = latency_series(now);
    // A float gauge histogram with custom buckets.
    written.push(TimeSeries {
        labels: labels(&[("__name__", "queue_size"), ("job", "api")]),
        histograms: vec![float_histogram(now - 60_000)],
        ..TimeSeries::default()
    });
    let body = encode_request(&WriteRequest {
        timeseries: written.clone(),
        metadata: vec![],
    });
    for url in [prom.url("/api/v1/write"), ember.url("/api/v1/write")] {
        let r = post_remote_write(&url, &body).expect("remote write");
        assert!(r.status == 204 || r.status == 200, "{url}: {}", r.body);
    }
    let req = read_request(now + 1000);
    let ours = remote_read(&ember.url("/api/v1/read"), &req);
    let theirs = remote_read(&prom.url("/api/v1/read"), &req);
    let label_sets = |v: &[TimeSeries]| v.iter().map(|s| s.labels.clone()).collect::<Vec<_>>();
    assert_eq!(label_sets(&ours), label_sets(&theirs));
    assert_eq!(label_sets(&ours), label_sets(&written));
    // Integer histograms come back exactly as written (delta-encoded).
    for (o, w) in ours.iter().zip(&written).take(2) {
        assert!(o.samples.is_empty());
        assert_eq!(o.histograms, w.histograms);
    }
    // The float histogram keeps every count; its counts are whole, so it
    // travels as an integer histogram (as Ember's remote-write sender
    // sends it).
    let got: Vec<_> = ours[2].histograms.iter().map(|h| h.to_float()).collect();
    let want: Vec<_> = written[2].histograms.iter().map(|h| h.to_float()).collect();
    assert_eq!(got, want);
    assert_eq!(ours[2].histograms[0].timestamp, now - 60_000);
    assert_eq!(ours[2].histograms[0].reset_hint, 3);
}

/// With Prometheus 2.42 (native histograms enabled) given the same data,
/// both answer `/federate` with the same text.
#[test]
fn federate_leaves_histograms_out_of_text() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let now = now_ms();
    let mut series = latency_series(now);
    series.push(TimeSeries {
        labels: labels(&[("__name__", "plain"), ("job", "api")]),
        samples: vec![proto::Sample {
            value: 7.0,
            timestamp: now - 1000,
        }],
        ..TimeSeries::default()
    });
    // A series that was a float and is now a histogram: its newest sample
    // is the histogram, so it is left out as well.
    series.push(TimeSeries {
        labels: labels(&[("__name__", "mixed"), ("job", "api")]),
        samples: vec![proto::Sample {
            value: 1.0,
            timestamp: now - 2000,
        }],
        histograms: vec![int_histogram(now - 1000, 4)],
        ..TimeSeries::default()
    });
    let body = encode_request(&WriteRequest {
        timeseries: series,
        metadata: vec![],
    });
    let r = post_remote_write(&ember.url("/api/v1/write"), &body).unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    let r = query(&ember, &format!("mixed @ {}", (now - 500) as f64 / 1000.0));
    assert!(r[0].get("histogram").is_some(), "{r}");
    let path = format!("/federate?match[]={}", enc("{job=\"api\"}"));
    let r = get(&ember.url(&path)).expect("federate");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("latency_hist"), "{}", r.body);
    assert!(!r.body.contains("mixed"), "{}", r.body);
    assert!(
        r.body.contains("# TYPE plain untyped\nplain{"),
        "{}",
        r.body
    );
    // Every line is a comment or `name{labels} value timestamp`.
    for line in r.body.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.rsplitn(3, ' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert!(fields[0].parse::<i64>().is_ok(), "{line}");
        assert!(fields[1].parse::<f64>().is_ok(), "{line}");
    }

    if !require_program("prometheus", "prometheus") {
        return;
    }
    let prom_dir = tempfile::tempdir().expect("tempdir");
    let prom = Prometheus::start_with(
        prom_dir.path(),
        "global:\n  scrape_interval: 1h\n",
        &[
            "--enable-feature=native-histograms",
            "--web.enable-remote-write-receiver",
        ],
    );
    let w = post_remote_write(&prom.url("/api/v1/write"), &body).expect("remote write");
    assert!(w.status == 204 || w.status == 200, "{}", w.body);
    let p = get(&prom.url(&path)).expect("federate");
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(r.body, p.body);
}
