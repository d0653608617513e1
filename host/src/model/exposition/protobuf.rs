//! The protobuf exposition format: a body of varint-length-delimited
//! `io.prometheus.client.MetricFamily` messages
//! (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited`).
//!
//! It is the only format in which exporters expose native histograms.
//! [`parse`] turns a body into the samples Ember stores: the same float
//! series the text format gives for counters, gauges, summaries and
//! classic histograms, and a [`FloatHistogram`] for every histogram that
//! carries native-histogram fields.

use crate::model::Labels;
use crate::model::histogram::{CounterResetHint, FloatHistogram, Span};

use super::{Exemplar, MetricType};

/// The `io.prometheus.client` messages (the schema is proto2, so scalar
/// fields are optional and repeated scalars are not packed by default),
/// declared with prost's derive so no `protoc` is needed at build time.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        Counter = 0,
        Gauge = 1,
        Summary = 2,
        Untyped = 3,
        Histogram = 4,
        GaugeHistogram = 5,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Counter {
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
        #[prost(message, optional, tag = "2")]
        pub exemplar: Option<Exemplar>,
        #[prost(message, optional, tag = "3")]
        pub created_timestamp: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Quantile {
        #[prost(double, optional, tag = "1")]
        pub quantile: Option<f64>,
        #[prost(double, optional, tag = "2")]
        pub value: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        pub quantile: Vec<Quantile>,
        #[prost(message, optional, tag = "4")]
        pub created_timestamp: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Untyped {
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        /// Set instead of `sample_count` by float histograms.
        #[prost(double, optional, tag = "4")]
        pub sample_count_float: Option<f64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        /// Classic buckets, cumulative, ascending upper bounds.
        #[prost(message, repeated, tag = "3")]
        pub bucket: Vec<Bucket>,
        #[prost(message, optional, tag = "15")]
        pub created_timestamp: Option<Timestamp>,
        #[prost(sint32, optional, tag = "5")]
        pub schema: Option<i32>,
        #[prost(double, optional, tag = "6")]
        pub zero_threshold: Option<f64>,
        #[prost(uint64, optional, tag = "7")]
        pub zero_count: Option<u64>,
        #[prost(double, optional, tag = "8")]
        pub zero_count_float: Option<f64>,
        #[prost(message, repeated, tag = "9")]
        pub negative_span: Vec<BucketSpan>,
        /// Integer histograms: each count as a delta from the previous one.
        #[prost(sint64, repeated, packed = "false", tag = "10")]
        pub negative_delta: Vec<i64>,
        /// Float histograms: absolute counts.
        #[prost(double, repeated, packed = "false", tag = "11")]
        pub negative_count: Vec<f64>,
        #[prost(message, repeated, tag = "12")]
        pub positive_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, packed = "false", tag = "13")]
        pub positive_delta: Vec<i64>,
        #[prost(double, repeated, packed = "false", tag = "14")]
        pub positive_count: Vec<f64>,
        #[prost(message, repeated, tag = "16")]
        pub exemplars: Vec<Exemplar>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Bucket {
        #[prost(uint64, optional, tag = "1")]
        pub cumulative_count: Option<u64>,
        #[prost(double, optional, tag = "4")]
        pub cumulative_count_float: Option<f64>,
        #[prost(double, optional, tag = "2")]
        pub upper_bound: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub exemplar: Option<Exemplar>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, optional, tag = "1")]
        pub offset: Option<i32>,
        #[prost(uint32, optional, tag = "2")]
        pub length: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(double, optional, tag = "2")]
        pub value: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub timestamp: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Gauge>,
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Counter>,
        #[prost(message, optional, tag = "4")]
        pub summary: Option<Summary>,
        #[prost(message, optional, tag = "5")]
        pub untyped: Option<Untyped>,
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
        #[prost(int64, optional, tag = "6")]
        pub timestamp_ms: Option<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub help: Option<String>,
        #[prost(enumeration = "MetricType", optional, tag = "3")]
        pub r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
        #[prost(string, optional, tag = "5")]
        pub unit: Option<String>,
    }
}

/// The `Content-Type` media type of the format.
pub const MEDIA_TYPE: &str = "application/vnd.google.protobuf";

/// A body that is not a valid protobuf exposition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("metric family #{index} (byte {offset}): cannot decode: {message}")]
    Decode {
        index: usize,
        offset: usize,
        message: String,
    },
    #[error("metric family {family:?}: {message}")]
    Family { family: String, message: String },
}

/// One float sample of a scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtoSample {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar>,
}

/// One native histogram sample of a scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtoHistogram {
    pub labels: Labels,
    pub histogram: FloatHistogram,
    pub timestamp_ms: Option<i64>,
    pub exemplars: Vec<Exemplar>,
}

/// One metric family with its samples, in the order exposed.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtoFamily {
    pub name: String,
    pub help: String,
    pub unit: String,
    pub kind: MetricType,
    pub samples: Vec<ProtoSample>,
    pub histograms: Vec<ProtoHistogram>,
}

/// Parses a whole body. `classic_histograms` also gives the `_bucket`,
/// `_sum` and `_count` series of histograms that are native, as
/// Prometheus does with `always_scrape_classic_histograms` (2.42:
/// `scrape_classic_histograms`); histograms without native fields always
/// give their classic series.
pub fn parse(body: &[u8], classic_histograms: bool) -> Result<Vec<ProtoFamily>, ProtoError> {
    let mut out = Vec::new();
    let mut buf = body;
    while !buf.is_empty() {
        let offset = body.len() - buf.len();
        let decoded: proto::MetricFamily = prost::Message::decode_length_delimited(&mut buf)
            .map_err(|e| ProtoError::Decode {
                index: out.len(),
                offset,
                message: e.to_string(),
            })?;
        // Families without metrics are skipped unchecked, as in Prometheus.
        if decoded.metric.is_empty() {
            continue;
        }
        out.push(family(decoded, classic_histograms)?);
    }
    Ok(out)
}

/// The body for `families`, as an exporter writes it (for tests and tools).
pub fn encode(families: &[proto::MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        // Writing into a Vec cannot run out of room.
        let _ = prost::Message::encode_length_delimited(f, &mut out);
    }
    out
}

fn family(f: proto::MetricFamily, classic: bool) -> Result<ProtoFamily, ProtoError> {
    let name = f.name.clone().unwrap_or_default();
    let err = |message: String| ProtoError::Family {
        family: name.clone(),
        message,
    };
    if name.is_empty() {
        return Err(err("the family has no name".into()));
    }
    let raw_type = f.r#type.unwrap_or(0);
    let kind = proto::MetricType::try_from(raw_type)
        .map_err(|_| err(format!("unknown metric type {raw_type}")))?;
    let unit = f.unit.clone().unwrap_or_default();
    if !unit.is_empty() {
        let base = match kind {
            proto::MetricType::Counter => name.strip_suffix("_total").unwrap_or(&name),
            _ => &name,
        };
        let suffixed = base
            .strip_suffix(unit.as_str())
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('_'));
        if !suffixed {
            return Err(err(format!("unit {unit:?} is not a suffix of the name")));
        }
    }
    let mut out = ProtoFamily {
        name: name.clone(),
        help: f.help.unwrap_or_default(),
        unit,
        kind: match kind {
            proto::MetricType::Counter => MetricType::Counter,
            proto::MetricType::Gauge => MetricType::Gauge,
            proto::MetricType::Summary => MetricType::Summary,
            proto::MetricType::Untyped => MetricType::Unknown,
            proto::MetricType::Histogram => MetricType::Histogram,
            proto::MetricType::GaugeHistogram => MetricType::GaugeHistogram,
        },
        samples: Vec::new(),
        histograms: Vec::new(),
    };
    for (k, m) in f.metric.iter().enumerate() {
        metric(&mut out, kind, m, classic).map_err(|e| err(format!("metric #{k}: {e}")))?;
    }
    Ok(out)
}

/// The labels of one series of the family: the metric's labels, then
/// `extra` (`le`, `quantile`), then the name.
fn series_labels(
    name: &str,
    m: &proto::Metric,
    extra: Option<(&str, &str)>,
) -> Result<Labels, String> {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(m.label.len() + 2);
    for l in &m.label {
        let n = l.name.as_deref().unwrap_or("");
        if n.is_empty() {
            return Err("a label has an empty name".into());
        }
        if n == "__name__" || Some(n) == extra.map(|e| e.0) {
            return Err(format!("label {n:?} is reserved"));
        }
        if pairs.iter().any(|(seen, _)| *seen == n) {
            return Err(format!("label {n:?} appears twice"));
        }
        pairs.push((n, l.value.as_deref().unwrap_or("")));
    }
    pairs.extend(extra);
    pairs.push(("__name__", name));
    Labels::from_pairs(pairs).map_err(|e| e.to_string())
}

fn timestamp_ms(t: &proto::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos) / 1_000_000)
}

fn exemplar(e: &proto::Exemplar) -> Result<Exemplar, String> {
    let labels = Labels::from_pairs(e.label.iter().map(|l| {
        (
            l.name.as_deref().unwrap_or(""),
            l.value.as_deref().unwrap_or(""),
        )
    }))
    .map_err(|err| format!("exemplar: {err}"))?;
    Ok(Exemplar {
        labels,
        value: e.value.unwrap_or(0.0),
        timestamp_ms: e.timestamp.as_ref().map(timestamp_ms),
    })
}

fn metric(
    out: &mut ProtoFamily,
    kind: proto::MetricType,
    m: &proto::Metric,
    classic: bool,
) -> Result<(), String> {
    let name = out.name.clone();
    // Clients cannot tell an unset timestamp from 0; Prometheus reads 0 as unset.
    let ts = m.timestamp_ms.filter(|t| *t != 0);
    let mut push = |suffix: &str, extra: Option<(&str, &str)>, value: f64, ex: Option<Exemplar>| {
        let labels = series_labels(&format!("{name}{suffix}"), m, extra)?;
        out.samples.push(ProtoSample {
            labels,
            value,
            timestamp_ms: ts,
            exemplar: ex,
        });
        Ok::<(), String>(())
    };
    match kind {
        proto::MetricType::Counter => {
            let c = m.counter.clone().unwrap_or_default();
            let ex = c.exemplar.as_ref().map(exemplar).transpose()?;
            push("", None, c.value.unwrap_or(0.0), ex)?;
        }
        proto::MetricType::Gauge => {
            push(
                "",
                None,
                m.gauge.as_ref().and_then(|g| g.value).unwrap_or(0.0),
                None,
            )?;
        }
        proto::MetricType::Untyped => {
            push(
                "",
                None,
                m.untyped.as_ref().and_then(|u| u.value).unwrap_or(0.0),
                None,
            )?;
        }
        proto::MetricType::Summary => {
            let s = m.summary.clone().unwrap_or_default();
            for q in &s.quantile {
                let label = go_float(q.quantile.unwrap_or(0.0));
                push("", Some(("quantile", &label)), q.value.unwrap_or(0.0), None)?;
            }
            push("_sum", None, s.sample_sum.unwrap_or(0.0), None)?;
            push("_count", None, s.sample_count.unwrap_or(0) as f64, None)?;
        }
        proto::MetricType::Histogram | proto::MetricType::GaugeHistogram => {
            let h = m.histogram.clone().unwrap_or_default();
            let native = is_native(&h);
            if native {
                let gauge = kind == proto::MetricType::GaugeHistogram;
                let histogram = native_histogram(&h, gauge)?;
                // Native histograms keep only exemplars with a timestamp,
                // from `exemplars` or else from the classic buckets.
                let listed: Vec<&proto::Exemplar> = if h.exemplars.is_empty() {
                    h.bucket
                        .iter()
                        .filter_map(|b| b.exemplar.as_ref())
                        .collect()
                } else {
                    h.exemplars.iter().collect()
                };
                let exemplars = listed
                    .into_iter()
                    .filter(|e| e.timestamp.is_some())
                    .map(exemplar)
                    .collect::<Result<Vec<_>, _>>()?;
                out.histograms.push(ProtoHistogram {
                    labels: series_labels(&name, m, None)?,
                    histogram,
                    timestamp_ms: ts,
                    exemplars,
                });
            }
            if !native || (classic && !h.bucket.is_empty()) {
                let float = h.sample_count_float.is_some_and(|c| c > 0.0);
                let count = if float {
                    h.sample_count_float.unwrap_or(0.0)
                } else {
                    h.sample_count.unwrap_or(0) as f64
                };
                let mut saw_inf = false;
                for b in &h.bucket {
                    let upper = b.upper_bound.unwrap_or(0.0);
                    saw_inf |= upper == f64::INFINITY;
                    let value = if float {
                        b.cumulative_count_float.unwrap_or(0.0)
                    } else {
                        b.cumulative_count.unwrap_or(0) as f64
                    };
                    let ex = b.exemplar.as_ref().map(exemplar).transpose()?;
                    push("_bucket", Some(("le", &go_float(upper))), value, ex)?;
                }
                // The +Inf bucket is implicit in protobuf; the text format has it.
                if !saw_inf {
                    push("_bucket", Some(("le", "+Inf")), count, None)?;
                }
                push("_sum", None, h.sample_sum.unwrap_or(0.0), None)?;
                push("_count", None, count, None)?;
            }
        }
    }
    Ok(())
}

/// Whether a histogram message carries a native histogram: a span, a zero
/// threshold or an integer zero count, as Prometheus decides. Clients mark
/// an empty native histogram with a zero threshold or an empty span.
fn is_native(h: &proto::Histogram) -> bool {
    h.zero_threshold.is_some_and(|z| z > 0.0)
        || h.zero_count.is_some_and(|z| z > 0)
        || !h.positive_span.is_empty()
        || !h.negative_span.is_empty()
}

fn spans(spans: &[proto::BucketSpan]) -> Vec<Span> {
    spans
        .iter()
        .map(|s| Span {
            offset: s.offset.unwrap_or(0),
            length: s.length.unwrap_or(0),
        })
        .collect()
}

/// Bucket indexes far beyond any finite bound would overflow later index
/// arithmetic; no client produces them.
fn check_indexes(spans: &[Span]) -> Result<(), String> {
    const LIMIT: i64 = 1 << 30;
    let mut idx: i64 = 0;
    for (k, s) in spans.iter().enumerate() {
        if k > 0 && s.offset < 0 {
            return Err(format!("span #{k} has a negative offset {}", s.offset));
        }
        idx += i64::from(s.offset);
        let end = idx + i64::from(s.length);
        if idx.abs() > LIMIT || end.abs() > LIMIT {
            return Err(format!(
                "span #{k} reaches bucket index {end}, out of range"
            ));
        }
        idx = end;
    }
    Ok(())
}

/// Absolute counts from deltas; a count below zero is an error.
fn undelta(deltas: &[i64], side: &str) -> Result<Vec<f64>, String> {
    let mut current: i64 = 0;
    deltas
        .iter()
        .map(|d| {
            current = current
                .checked_add(*d)
                .ok_or_else(|| format!("{side} bucket count overflows"))?;
            if current < 0 {
                return Err(format!("{side} bucket count {current} is negative"));
            }
            Ok(current as f64)
        })
        .collect()
}

fn native_histogram(h: &proto::Histogram, gauge: bool) -> Result<FloatHistogram, String> {
    let float = h.sample_count_float.is_some_and(|c| c > 0.0)
        || h.zero_count_float.is_some_and(|c| c > 0.0);
    let schema = h.schema.unwrap_or(0);
    // Finer schemas than 8 are lowered to 8 below, as far as a bucket index
    // shift can go.
    if !(-4..=39).contains(&schema) {
        return Err(format!(
            "native histogram schema {schema} out of range -4..=8"
        ));
    }
    let (count, zero_count, positive, negative) = if float {
        (
            h.sample_count_float.unwrap_or(0.0),
            h.zero_count_float.unwrap_or(0.0),
            h.positive_count.clone(),
            h.negative_count.clone(),
        )
    } else {
        (
            h.sample_count.unwrap_or(0) as f64,
            h.zero_count.unwrap_or(0) as f64,
            undelta(&h.positive_delta, "positive")?,
            undelta(&h.negative_delta, "negative")?,
        )
    };
    let mut out = FloatHistogram {
        counter_reset_hint: if gauge {
            CounterResetHint::Gauge
        } else {
            CounterResetHint::Unknown
        },
        schema,
        zero_threshold: h.zero_threshold.unwrap_or(0.0),
        zero_count,
        count,
        sum: h.sample_sum.unwrap_or(0.0),
        positive_spans: spans(&h.positive_span),
        negative_spans: spans(&h.negative_span),
        positive_buckets: positive,
        negative_buckets: negative,
        custom_values: Vec::new(),
    };
    if out
        .positive_buckets
        .iter()
        .chain(&out.negative_buckets)
        .chain([&out.zero_count, &out.count])
        .any(|c| c.is_nan() || *c < 0.0)
    {
        return Err("native histogram has a negative or NaN count".into());
    }
    for (side, spans) in [
        ("positive", &out.positive_spans),
        ("negative", &out.negative_spans),
    ] {
        check_indexes(spans).map_err(|e| format!("native histogram {side} spans: {e}"))?;
    }
    // Prometheus 3 lowers a finer schema than it supports to the finest it does.
    if schema > 8 {
        let described = |s: &[Span]| s.iter().map(|s| s.length as usize).sum::<usize>();
        if described(&out.positive_spans) == out.positive_buckets.len()
            && described(&out.negative_spans) == out.negative_buckets.len()
        {
            out.reduce_to(8);
        }
    }
    out.validate()
        .map_err(|e| format!("native histogram: {e}"))?;
    // Stored as Prometheus stores it: empty buckets dropped, spans joined.
    out.compact();
    Ok(out)
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it, which
/// is how client libraries write `le` and `quantile` in the text format:
/// the same series must come out of both formats.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as Go's -1 precision does.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go uses the exponent form outside 1e-4 <= |v| < 1e6 for shortest 'g'.
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{v}")
}
