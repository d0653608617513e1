//! The remote-write 1.0 protobuf messages (`prometheus.WriteRequest` and
//! friends), declared with prost's derive so no `protoc` is needed at build
//! time. Field numbers follow Prometheus's `prompb` package.

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histograms, integer or float.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.Histogram`: a native histogram sample. Integer histograms
/// carry delta-encoded bucket counts, float histograms absolute ones.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(oneof = "HistogramCount", tags = "1, 2")]
    pub count: Option<HistogramCount>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(oneof = "HistogramZeroCount", tags = "6, 7")]
    pub zero_count: Option<HistogramZeroCount>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// 0 unknown, 1 reset, 2 not a reset, 3 gauge.
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, prost::Oneof)]
pub enum HistogramCount {
    #[prost(uint64, tag = "1")]
    CountInt(u64),
    #[prost(double, tag = "2")]
    CountFloat(f64),
}

#[derive(Clone, Copy, PartialEq, prost::Oneof)]
pub enum HistogramZeroCount {
    #[prost(uint64, tag = "6")]
    ZeroCountInt(u64),
    #[prost(double, tag = "7")]
    ZeroCountFloat(f64),
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// Counts up to 2^53 are exact in an `f64`.
const MAX_EXACT_COUNT: f64 = 9_007_199_254_740_992.0;

fn is_whole_count(v: f64) -> bool {
    (0.0..=MAX_EXACT_COUNT).contains(&v) && v.fract() == 0.0
}

impl Histogram {
    /// A stored histogram as a remote-write sender sends it at `t_ms`.
    /// Ember keeps every histogram with float counts, so whether it was
    /// an integer histogram is recovered from the counts: whole counts go
    /// out as an integer histogram (delta-encoded buckets, what a
    /// Prometheus scraping the same exporter sends, and the only kind
    /// Prometheus 2.x receivers decode), anything else as a float one.
    pub fn from_float(h: &crate::model::FloatHistogram, t_ms: i64) -> Histogram {
        let spans = |v: &[crate::model::histogram::Span]| {
            v.iter()
                .map(|s| BucketSpan {
                    offset: s.offset,
                    length: s.length,
                })
                .collect()
        };
        let whole = is_whole_count(h.count)
            && is_whole_count(h.zero_count)
            && h.positive_buckets.iter().all(|c| is_whole_count(*c))
            && h.negative_buckets.iter().all(|c| is_whole_count(*c));
        let deltas = |buckets: &[f64]| {
            let mut prev = 0i64;
            buckets
                .iter()
                .map(|c| {
                    let v = *c as i64;
                    let d = v - prev;
                    prev = v;
                    d
                })
                .collect()
        };
        let mut out = Histogram {
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            negative_spans: spans(&h.negative_spans),
            positive_spans: spans(&h.positive_spans),
            reset_hint: i32::from(h.counter_reset_hint.as_u8()),
            timestamp: t_ms,
            custom_values: h.custom_values.clone(),
            ..Default::default()
        };
        if whole {
            out.count = Some(HistogramCount::CountInt(h.count as u64));
            out.zero_count = Some(HistogramZeroCount::ZeroCountInt(h.zero_count as u64));
            out.positive_deltas = deltas(&h.positive_buckets);
            out.negative_deltas = deltas(&h.negative_buckets);
        } else {
            out.count = Some(HistogramCount::CountFloat(h.count));
            out.zero_count = Some(HistogramZeroCount::ZeroCountFloat(h.zero_count));
            out.positive_counts = h.positive_buckets.clone();
            out.negative_counts = h.negative_buckets.clone();
        }
        out
    }

    /// The histogram as Ember stores it: integer counts become floats
    /// (exact up to 2^53), delta-encoded buckets become absolute counts.
    pub fn to_float(&self) -> Result<crate::model::FloatHistogram, String> {
        use crate::model::histogram::{CounterResetHint, Span};
        let is_int = matches!(self.count, Some(HistogramCount::CountInt(_)));
        let undelta = |deltas: &[i64]| {
            let mut acc = 0i64;
            deltas
                .iter()
                .map(|d| {
                    acc = acc.wrapping_add(*d);
                    acc as f64
                })
                .collect::<Vec<f64>>()
        };
        let spans = |v: &[BucketSpan]| {
            v.iter()
                .map(|s| Span {
                    offset: s.offset,
                    length: s.length,
                })
                .collect()
        };
        let h = crate::model::FloatHistogram {
            counter_reset_hint: u8::try_from(self.reset_hint)
                .ok()
                .and_then(CounterResetHint::from_u8)
                .ok_or_else(|| format!("invalid reset hint {}", self.reset_hint))?,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: match self.zero_count {
                Some(HistogramZeroCount::ZeroCountInt(c)) => c as f64,
                Some(HistogramZeroCount::ZeroCountFloat(c)) => c,
                None => 0.0,
            },
            count: match self.count {
                Some(HistogramCount::CountInt(c)) => c as f64,
                Some(HistogramCount::CountFloat(c)) => c,
                None => 0.0,
            },
            sum: self.sum,
            positive_spans: spans(&self.positive_spans),
            negative_spans: spans(&self.negative_spans),
            positive_buckets: if is_int {
                undelta(&self.positive_deltas)
            } else {
                self.positive_counts.clone()
            },
            negative_buckets: if is_int {
                undelta(&self.negative_deltas)
            } else {
                self.negative_counts.clone()
            },
            custom_values: self.custom_values.clone(),
        };
        h.validate()?;
        Ok(h)
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Encodes and snappy-compresses a request, as a remote-write sender does.
pub fn encode_request(req: &WriteRequest) -> Vec<u8> {
    use prost::Message;
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// `prometheus.ReadRequest`: one or more queries, and the response types
/// the client accepts, preferred first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    #[prost(enumeration = "ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseType {
    /// One `ReadResponse` with raw samples.
    Samples = 0,
    /// A stream of `ChunkedReadResponse` frames with XOR chunks.
    StreamedXorChunks = 1,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    #[prost(enumeration = "MatcherType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatcherType {
    Eq = 0,
    Neq = 1,
    Re = 2,
    Nre = 3,
}

/// What the query engine behind the client will do with the data; Ember
/// reads it only for the time range.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    #[prost(string, tag = "2")]
    pub func: String,
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    #[prost(bool, tag = "6")]
    pub by: bool,
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One frame of a streamed remote-read response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// 1 is XOR, Prometheus's float chunk encoding.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}
