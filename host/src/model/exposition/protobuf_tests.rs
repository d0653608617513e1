use proptest::prelude::*;
use prost::Message;

use super::MetricType;
use super::protobuf::{ProtoError, go_float, parse, proto};
use crate::model::histogram::{CounterResetHint, Span};

fn label(name: &str, value: &str) -> proto::LabelPair {
    proto::LabelPair {
        name: Some(name.into()),
        value: Some(value.into()),
    }
}

fn family(name: &str, kind: proto::MetricType, metric: Vec<proto::Metric>) -> proto::MetricFamily {
    proto::MetricFamily {
        name: Some(name.into()),
        help: Some(format!("help of {name}")),
        r#type: Some(kind as i32),
        metric,
        unit: None,
    }
}

fn body(families: &[proto::MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        f.encode_length_delimited(&mut out).unwrap();
    }
    out
}

fn series(f: &super::protobuf::ProtoFamily) -> Vec<(String, f64)> {
    f.samples
        .iter()
        .map(|s| (s.labels.to_string(), s.value))
        .collect()
}

fn gauge(v: f64) -> proto::Metric {
    proto::Metric {
        gauge: Some(proto::Gauge { value: Some(v) }),
        ..Default::default()
    }
}

fn span(offset: i32, length: u32) -> proto::BucketSpan {
    proto::BucketSpan {
        offset: Some(offset),
        length: Some(length),
    }
}

fn native(classic_buckets: bool) -> proto::Histogram {
    proto::Histogram {
        sample_count: Some(7),
        sample_sum: Some(12.5),
        schema: Some(1),
        zero_threshold: Some(0.001),
        zero_count: Some(1),
        positive_span: vec![span(0, 2), span(2, 1)],
        positive_delta: vec![2, -1, 1],
        negative_span: vec![span(1, 1)],
        negative_delta: vec![2],
        bucket: if classic_buckets {
            vec![proto::Bucket {
                cumulative_count: Some(4),
                upper_bound: Some(1.0),
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

#[test]
fn counters_gauges_untyped_and_summaries_give_the_text_format_series() {
    let b = body(&[
        family(
            "requests_total",
            proto::MetricType::Counter,
            vec![proto::Metric {
                label: vec![label("code", "200")],
                counter: Some(proto::Counter {
                    value: Some(3.0),
                    exemplar: Some(proto::Exemplar {
                        label: vec![label("trace_id", "abc")],
                        value: Some(0.5),
                        timestamp: Some(proto::Timestamp {
                            seconds: 10,
                            nanos: 250_000_000,
                        }),
                    }),
                    created_timestamp: None,
                }),
                timestamp_ms: Some(1234),
                ..Default::default()
            }],
        ),
        family(
            "temp",
            proto::MetricType::Gauge,
            vec![proto::Metric {
                gauge: Some(proto::Gauge { value: Some(-1.5) }),
                ..Default::default()
            }],
        ),
        family(
            "thing",
            proto::MetricType::Untyped,
            vec![proto::Metric {
                untyped: Some(proto::Untyped { value: Some(9.0) }),
                ..Default::default()
            }],
        ),
        family(
            "latency",
            proto::MetricType::Summary,
            vec![proto::Metric {
                summary: Some(proto::Summary {
                    sample_count: Some(4),
                    sample_sum: Some(2.0),
                    quantile: vec![proto::Quantile {
                        quantile: Some(0.99),
                        value: Some(0.7),
                    }],
                    created_timestamp: None,
                }),
                ..Default::default()
            }],
        ),
    ]);
    let f = parse(&b, false).unwrap();
    assert_eq!(f.len(), 4);
    assert_eq!(f[0].kind, MetricType::Counter);
    assert_eq!(f[0].help, "help of requests_total");
    assert_eq!(
        series(&f[0]),
        vec![(r#"requests_total{code="200"}"#.to_owned(), 3.0)]
    );
    assert_eq!(f[0].samples[0].timestamp_ms, Some(1234));
    let ex = f[0].samples[0].exemplar.as_ref().unwrap();
    assert_eq!((ex.value, ex.timestamp_ms), (0.5, Some(10_250)));
    assert_eq!(series(&f[1]), vec![("temp{}".to_owned(), -1.5)]);
    assert_eq!(f[2].kind, MetricType::Unknown);
    assert_eq!(series(&f[2]), vec![("thing{}".to_owned(), 9.0)]);
    assert_eq!(
        series(&f[3]),
        vec![
            (r#"latency{quantile="0.99"}"#.to_owned(), 0.7),
            ("latency_sum{}".to_owned(), 2.0),
            ("latency_count{}".to_owned(), 4.0),
        ]
    );
}

#[test]
fn classic_histograms_give_buckets_with_an_implicit_inf_sum_and_count() {
    let b = body(&[family(
        "size",
        proto::MetricType::Histogram,
        vec![proto::Metric {
            histogram: Some(proto::Histogram {
                sample_count: Some(5),
                sample_sum: Some(100.0),
                bucket: vec![
                    proto::Bucket {
                        cumulative_count: Some(2),
                        upper_bound: Some(1.0),
                        ..Default::default()
                    },
                    proto::Bucket {
                        cumulative_count: Some(4),
                        upper_bound: Some(2.5e6),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        }],
    )]);
    let f = parse(&b, false).unwrap();
    assert!(f[0].histograms.is_empty());
    assert_eq!(
        series(&f[0]),
        vec![
            (r#"size_bucket{le="1"}"#.to_owned(), 2.0),
            (r#"size_bucket{le="2.5e+06"}"#.to_owned(), 4.0),
            (r#"size_bucket{le="+Inf"}"#.to_owned(), 5.0),
            ("size_sum{}".to_owned(), 100.0),
            ("size_count{}".to_owned(), 5.0),
        ]
    );
}

#[test]
fn native_histograms_decode_deltas_and_leave_out_classic_series_unless_asked() {
    let metric = proto::Metric {
        label: vec![label("path", "/")],
        histogram: Some(native(true)),
        ..Default::default()
    };
    let b = body(&[family("rt", proto::MetricType::Histogram, vec![metric])]);
    let f = parse(&b, false).unwrap();
    assert!(f[0].samples.is_empty());
    assert_eq!(f[0].histograms.len(), 1);
    let h = &f[0].histograms[0];
    assert_eq!(h.labels.to_string(), r#"rt{path="/"}"#);
    let h = &h.histogram;
    assert_eq!(h.counter_reset_hint, CounterResetHint::Unknown);
    assert_eq!((h.schema, h.zero_threshold, h.zero_count), (1, 0.001, 1.0));
    assert_eq!((h.count, h.sum), (7.0, 12.5));
    assert_eq!(
        h.positive_spans,
        vec![
            Span {
                offset: 0,
                length: 2
            },
            Span {
                offset: 2,
                length: 1
            }
        ]
    );
    assert_eq!(h.positive_buckets, vec![2.0, 1.0, 2.0]);
    assert_eq!(h.negative_buckets, vec![2.0]);

    let f = parse(&b, true).unwrap();
    assert_eq!(f[0].histograms.len(), 1);
    assert_eq!(
        series(&f[0]),
        vec![
            (r#"rt_bucket{le="1", path="/"}"#.to_owned(), 4.0),
            (r#"rt_bucket{le="+Inf", path="/"}"#.to_owned(), 7.0),
            (r#"rt_sum{path="/"}"#.to_owned(), 12.5),
            (r#"rt_count{path="/"}"#.to_owned(), 7.0),
        ]
    );
}

#[test]
fn native_histograms_are_compacted_and_a_zero_timestamp_is_none() {
    let h = proto::Histogram {
        sample_count: Some(3),
        schema: Some(0),
        positive_span: vec![span(0, 3), span(0, 1)],
        positive_delta: vec![1, -1, 1, 1],
        ..Default::default()
    };
    let b = body(&[family(
        "c",
        proto::MetricType::Histogram,
        vec![proto::Metric {
            histogram: Some(h),
            timestamp_ms: Some(0),
            ..Default::default()
        }],
    )]);
    let f = parse(&b, false).unwrap();
    let h = &f[0].histograms[0];
    assert_eq!(h.timestamp_ms, None);
    assert_eq!(h.histogram.positive(), vec![(0, 1.0), (2, 1.0), (3, 2.0)]);
}

#[test]
fn native_histograms_keep_exemplars_with_timestamps() {
    let ex = |v: f64, ts: Option<i64>| proto::Exemplar {
        label: vec![label("trace_id", "t")],
        value: Some(v),
        timestamp: ts.map(|s| proto::Timestamp {
            seconds: s,
            nanos: 0,
        }),
    };
    let mut h = native(true);
    h.bucket[0].exemplar = Some(ex(0.5, Some(5)));
    let one = |h: proto::Histogram| {
        let b = body(&[family(
            "rt",
            proto::MetricType::Histogram,
            vec![proto::Metric {
                histogram: Some(h),
                ..Default::default()
            }],
        )]);
        parse(&b, false).unwrap()[0].histograms[0]
            .exemplars
            .iter()
            .map(|e| (e.value, e.timestamp_ms))
            .collect::<Vec<_>>()
    };
    assert_eq!(one(h.clone()), vec![(0.5, Some(5000))]);
    h.exemplars = vec![ex(1.0, None), ex(2.0, Some(7))];
    assert_eq!(one(h), vec![(2.0, Some(7000))]);
}

#[test]
fn float_and_gauge_native_histograms() {
    let h = proto::Histogram {
        sample_count_float: Some(3.5),
        sample_sum: Some(1.0),
        schema: Some(0),
        zero_threshold: Some(0.0),
        zero_count_float: Some(0.5),
        positive_span: vec![span(-1, 2)],
        positive_count: vec![1.5, 1.5],
        ..Default::default()
    };
    let b = body(&[family(
        "g",
        proto::MetricType::GaugeHistogram,
        vec![proto::Metric {
            histogram: Some(h),
            ..Default::default()
        }],
    )]);
    let f = parse(&b, false).unwrap();
    assert_eq!(f[0].kind, MetricType::GaugeHistogram);
    let h = &f[0].histograms[0].histogram;
    assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
    assert_eq!((h.count, h.zero_count), (3.5, 0.5));
    assert_eq!(h.positive_buckets, vec![1.5, 1.5]);
}

#[test]
fn an_empty_native_histogram_is_marked_by_its_zero_threshold_or_an_empty_span() {
    let h = proto::Histogram {
        schema: Some(3),
        positive_span: vec![span(0, 0)],
        ..Default::default()
    };
    let b = body(&[family(
        "empty",
        proto::MetricType::Histogram,
        vec![proto::Metric {
            histogram: Some(h),
            ..Default::default()
        }],
    )]);
    let f = parse(&b, false).unwrap();
    assert_eq!(f[0].histograms.len(), 1);
    assert_eq!(f[0].histograms[0].histogram.count, 0.0);
}

fn error_of(h: proto::Histogram) -> String {
    let b = body(&[family(
        "bad_hist",
        proto::MetricType::Histogram,
        vec![proto::Metric {
            histogram: Some(h),
            ..Default::default()
        }],
    )]);
    parse(&b, false).unwrap_err().to_string()
}

#[test]
fn bad_native_histograms_are_errors_naming_the_family() {
    let mut h = native(false);
    h.positive_delta = vec![1];
    let e = error_of(h);
    assert!(
        e.contains("\"bad_hist\"") && e.contains("positive spans"),
        "{e}"
    );

    let mut h = native(false);
    h.positive_delta = vec![1, -3, 1];
    let e = error_of(h);
    assert!(e.contains("\"bad_hist\"") && e.contains("negative"), "{e}");

    let mut h = native(false);
    h.positive_span = vec![span(i32::MAX, 1), span(i32::MAX, 1), span(i32::MAX, 1)];
    let e = error_of(h);
    assert!(e.contains("out of range"), "{e}");

    let mut h = native(false);
    h.schema = Some(-9);
    let e = error_of(h);
    assert!(e.contains("schema -9"), "{e}");
}

#[test]
fn bad_families_are_errors() {
    let mut f = family("x", proto::MetricType::Counter, vec![gauge(1.0)]);
    f.r#type = Some(42);
    let e = parse(&body(&[f]), false).unwrap_err().to_string();
    assert!(
        e.contains("\"x\"") && e.contains("unknown metric type 42"),
        "{e}"
    );

    let f = family(
        "y",
        proto::MetricType::Gauge,
        vec![proto::Metric {
            label: vec![label("a", "v"), label("a", "w")],
            ..Default::default()
        }],
    );
    let e = parse(&body(&[f]), false).unwrap_err().to_string();
    assert!(
        e.contains("\"y\"") && e.contains("metric #0") && e.contains("twice"),
        "{e}"
    );

    let f = family("", proto::MetricType::Gauge, vec![gauge(1.0)]);
    let e = parse(&body(&[f]), false).unwrap_err().to_string();
    assert!(e.contains("no name"), "{e}");

    let mut f = family("x_seconds", proto::MetricType::Gauge, vec![gauge(1.0)]);
    f.unit = Some("bytes".into());
    let e = parse(&body(&[f]), false).unwrap_err().to_string();
    assert!(e.contains("unit \"bytes\" is not a suffix"), "{e}");
    let mut f = family("x_seconds_total", proto::MetricType::Counter, vec![]);
    f.metric.push(proto::Metric::default());
    f.unit = Some("seconds".into());
    assert_eq!(parse(&body(&[f]), false).unwrap()[0].unit, "seconds");

    // Families without metrics are skipped, unchecked.
    let f = family("", proto::MetricType::Gauge, vec![]);
    assert_eq!(parse(&body(&[f]), false).unwrap(), vec![]);

    let mut b = body(&[family("z", proto::MetricType::Gauge, vec![gauge(1.0)])]);
    let good = b.len();
    b.extend_from_slice(&[0x20, 0x0a]);
    match parse(&b, false).unwrap_err() {
        ProtoError::Decode { index, offset, .. } => assert_eq!((index, offset), (1, good)),
        e => panic!("{e}"),
    }
}

#[test]
fn floats_are_written_as_go_writes_them() {
    for (v, s) in [
        (1.0, "1"),
        (0.005, "0.005"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (2.5e-7, "2.5e-07"),
        (1e100, "1e+100"),
        (-3.5, "-3.5"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (0.0, "0"),
    ] {
        assert_eq!(go_float(v), s, "{v}");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes, true);
    }

    #[test]
    fn mutated_valid_bodies_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let metric = proto::Metric { histogram: Some(native(true)), ..Default::default() };
        let mut b = body(&[family("rt", proto::MetricType::Histogram, vec![metric])]);
        for (at, byte) in flips {
            let n = b.len();
            b[at % n] = byte;
        }
        let _ = parse(&b, true);
    }
}
