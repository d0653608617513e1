//! Native histograms end to end through the real binary: remote write of
//! integer and float histograms, the query API's `histogram` and
//! `histograms` JSON, PromQL functions over them, and a restart (WAL
//! replay) keeping them.

mod support;

use std::time::Duration;

use ember::remote::proto::{self, TimeSeries, WriteRequest, encode_request};
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
