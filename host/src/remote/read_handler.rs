//! `POST /api/v1/read`: the server side of Prometheus remote read.
//!
//! A snappy-compressed `ReadRequest` holds queries (a time range and label
//! matchers). The answer is either one snappy-compressed `ReadResponse`
//! with raw samples (`SAMPLES`, the default; native histograms in each
//! series' `histograms`), or, when the client lists
//! `STREAMED_XOR_CHUNKS` first, a stream of frames
//! `uvarint(length) | crc32c(message), big endian | ChunkedReadResponse`,
//! at most one series per frame, each series' samples in XOR chunks of at
//! most 120, a series split over several frames once its chunks pass
//! `--storage.remote.read-max-bytes-in-frame`. Streamed answers carry float
//! samples only: Prometheus's histogram chunk encoding is not implemented,
//! so a series' native histograms are left out of them.
//!
//! `--storage.remote.read-sample-limit` bounds the samples of one query in a
//! `SAMPLES` answer (streamed answers are not limited, as in Prometheus).
//!
//! As in Prometheus, equality matchers on this server's external labels are
//! dropped before selecting (the data does not carry them), and the
//! external labels are added to every returned series that lacks them.

use std::collections::BTreeMap;

use prost::Message;

use super::proto::{
    self, ChunkedReadResponse, ChunkedSeries, LabelMatcher, MatcherType, QueryResult, ReadRequest,
    ReadResponse, ResponseType, TimeSeries,
};
use super::write_receiver::MAX_DECOMPRESSED_BYTES;
use crate::model::{Labels, MatchOp, Matcher};
use crate::storage::{SeriesSamples, Storage, StorageError};

pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    BadRequest(String),
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
}

/// Prometheus's remote-read limits (`--storage.remote.read-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Samples one query may return in a `SAMPLES` answer; 0 is no limit.
    pub sample_limit: usize,
    /// Bytes of chunks (after the labels) a streamed frame may carry
    /// before the series continues in the next frame.
    pub max_bytes_in_frame: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            sample_limit: 50_000_000,
            max_bytes_in_frame: 1_048_576,
        }
    }
}

/// The encoded answer and how to label it.
pub struct ReadAnswer {
    pub body: Vec<u8>,
    pub streamed: bool,
}

pub fn decode(body: &[u8]) -> Result<ReadRequest, ReadError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| ReadError::BadRequest(format!("snappy: {e}")))?;
    if len > MAX_DECOMPRESSED_BYTES {
        return Err(ReadError::BadRequest(format!(
            "request decompresses to {len} bytes, more than the {MAX_DECOMPRESSED_BYTES} accepted"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| ReadError::BadRequest(format!("snappy: {e}")))?;
    ReadRequest::decode(raw.as_slice()).map_err(|e| ReadError::BadRequest(format!("protobuf: {e}")))
}

/// Runs every query of the request and encodes the answer in the first
/// response type Ember supports from the client's list.
pub fn answer(
    storage: &Storage,
    req: &ReadRequest,
    external: &BTreeMap<String, String>,
    limits: ReadLimits,
) -> Result<ReadAnswer, ReadError> {
    // Prometheus picks the first accepted type it supports; an empty list
    // means SAMPLES.
    let streamed = req
        .accepted_response_types
        .iter()
        .find_map(|t| ResponseType::try_from(*t).ok())
        .is_some_and(|t| t == ResponseType::StreamedXorChunks);
    let mut results = Vec::with_capacity(req.queries.len());
    for q in &req.queries {
        let matchers = convert_matchers(&q.matchers, external)?;
        results.push(storage.select(&matchers, q.start_timestamp_ms, q.end_timestamp_ms)?);
    }
    if streamed {
        let mut body = Vec::new();
        for (index, series) in results.into_iter().enumerate() {
            for s in series {
                for part in chunked(&s, external, limits.max_bytes_in_frame) {
                    let frame = ChunkedReadResponse {
                        chunked_series: vec![part],
                        query_index: index as i64,
                    };
                    write_frame(&mut body, &frame.encode_to_vec());
                }
            }
        }
        return Ok(ReadAnswer {
            body,
            streamed: true,
        });
    }
    if limits.sample_limit > 0 {
        for series in &results {
            let n: usize = series
                .iter()
                .map(|s| s.samples.len() + s.histograms.len())
                .sum();
            if n > limits.sample_limit {
                return Err(ReadError::BadRequest(format!(
                    "exceeded sample limit ({})",
                    limits.sample_limit
                )));
            }
        }
    }
    let resp = ReadResponse {
        results: results
            .into_iter()
            .map(|series| QueryResult {
                timeseries: series
                    .into_iter()
                    .map(|s| TimeSeries {
                        labels: with_external(&s.labels, external),
                        samples: s
                            .samples
                            .iter()
                            .map(|x| proto::Sample {
                                value: x.v,
                                timestamp: x.t,
                            })
                            .collect(),
                        histograms: s
                            .histograms
                            .iter()
                            .map(|x| proto::Histogram::from_float(&x.h, x.t))
                            .collect(),
                        ..TimeSeries::default()
                    })
                    .collect(),
            })
            .collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&resp.encode_to_vec())
        .map_err(|e| ReadError::BadRequest(format!("snappy: {e}")))?;
    Ok(ReadAnswer {
        body,
        streamed: false,
    })
}

fn convert_matchers(
    pb: &[LabelMatcher],
    external: &BTreeMap<String, String>,
) -> Result<Vec<Matcher>, ReadError> {
    let mut out = Vec::with_capacity(pb.len());
    for m in pb {
        let op = match MatcherType::try_from(m.r#type) {
            Ok(MatcherType::Eq) => MatchOp::Equal,
            Ok(MatcherType::Neq) => MatchOp::NotEqual,
            Ok(MatcherType::Re) => MatchOp::RegexMatch,
            Ok(MatcherType::Nre) => MatchOp::RegexNoMatch,
            Err(_) => {
                return Err(ReadError::BadRequest(format!(
                    "invalid matcher type {}",
                    m.r#type
                )));
            }
        };
        if op == MatchOp::Equal && external.contains_key(&m.name) {
            continue;
        }
        out.push(
            Matcher::new(op, &m.name, &m.value)
                .map_err(|e| ReadError::BadRequest(format!("invalid regex {:?}: {e}", m.value)))?,
        );
    }
    Ok(out)
}

/// The series' labels with external labels added where missing, sorted.
fn with_external(labels: &Labels, external: &BTreeMap<String, String>) -> Vec<proto::Label> {
    let mut all: BTreeMap<&str, &str> = external
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    for l in labels.iter() {
        all.insert(&l.name, &l.value);
    }
    all.into_iter()
        .map(|(n, v)| proto::Label {
            name: n.to_owned(),
            value: v.to_owned(),
        })
        .collect()
}

/// The series as XOR chunks, in as many parts as `max_bytes` asks for:
/// a part ends once its labels and chunks pass it (by at most one chunk,
/// as in Prometheus).
fn chunked(
    s: &SeriesSamples,
    external: &BTreeMap<String, String>,
    max_bytes: usize,
) -> Vec<ChunkedSeries> {
    let labels = with_external(&s.labels, external);
    let budget = max_bytes as i64 - labels.iter().map(|l| l.encoded_len() as i64).sum::<i64>();
    let mut parts = Vec::new();
    let mut chunks = Vec::new();
    let mut left = budget;
    let mut iter = s.samples.chunks(super::xor::SAMPLES_PER_CHUNK).peekable();
    while let Some(c) = iter.next() {
        let chunk = proto::Chunk {
            min_time_ms: c.first().map_or(0, |x| x.t),
            max_time_ms: c.last().map_or(0, |x| x.t),
            r#type: 1,
            data: super::xor::encode(c),
        };
        left -= chunk.encoded_len() as i64;
        chunks.push(chunk);
        if left <= 0 || iter.peek().is_none() {
            parts.push(ChunkedSeries {
                labels: labels.clone(),
                chunks: std::mem::take(&mut chunks),
            });
            left = budget;
        }
    }
    parts
}

fn write_frame(out: &mut Vec<u8>, msg: &[u8]) {
    let mut len = msg.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageOptions;

    fn storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Storage::open(dir.path(), StorageOptions::default(), |_| {}).unwrap();
        let mut app = s.appender();
        let l = Labels::from_pairs([("__name__", "m"), ("job", "a")]).unwrap();
        for i in 0..250 {
            app.append(l.clone(), i * 1000, i as f64);
        }
        app.commit().unwrap();
        (dir, s)
    }

    fn request(types: &[ResponseType]) -> ReadRequest {
        ReadRequest {
            queries: vec![proto::Query {
                start_timestamp_ms: 10_000,
                end_timestamp_ms: 200_000,
                matchers: vec![
                    LabelMatcher {
                        r#type: MatcherType::Eq as i32,
                        name: "__name__".into(),
                        value: "m".into(),
                    },
                    LabelMatcher {
                        r#type: MatcherType::Eq as i32,
                        name: "site".into(),
                        value: "x".into(),
                    },
                ],
                hints: None,
            }],
            accepted_response_types: types.iter().map(|t| *t as i32).collect(),
        }
    }

    #[test]
    fn samples_and_streamed_chunks() {
        let (_d, s) = storage();
        let ext = BTreeMap::from([("site".to_owned(), "x".to_owned())]);
        let a = answer(&s, &request(&[]), &ext, ReadLimits::default()).unwrap();
        assert!(!a.streamed);
        let raw = snap::raw::Decoder::new().decompress_vec(&a.body).unwrap();
        let resp = ReadResponse::decode(raw.as_slice()).unwrap();
        let ts = &resp.results[0].timeseries[0];
        assert_eq!(ts.samples.len(), 191);
        assert_eq!(ts.labels.len(), 3);
        assert_eq!(ts.labels[2].name, "site");

        let a = answer(
            &s,
            &request(&[ResponseType::StreamedXorChunks, ResponseType::Samples]),
            &ext,
            ReadLimits::default(),
        )
        .unwrap();
        assert!(a.streamed);
        let body = &a.body;
        let (mut len, mut i, mut shift) = (0usize, 0usize, 0);
        loop {
            let b = body[i];
            len |= ((b & 0x7f) as usize) << shift;
            i += 1;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let crc = u32::from_be_bytes(body[i..i + 4].try_into().unwrap());
        let msg = &body[i + 4..i + 4 + len];
        assert_eq!(crc, crc32c::crc32c(msg));
        assert_eq!(i + 4 + len, body.len());
        let frame = ChunkedReadResponse::decode(msg).unwrap();
        let chunks = &frame.chunked_series[0].chunks;
        assert_eq!(chunks.len(), 2);
        let decoded: Vec<_> = chunks
            .iter()
            .flat_map(|c| super::super::xor::tests::decode(&c.data))
            .collect();
        assert_eq!(decoded.len(), 191);
        assert_eq!(decoded[0].t, 10_000);
        assert_eq!(chunks[1].max_time_ms, 200_000);
    }

    #[test]
    fn samples_answer_carries_native_histograms() {
        use crate::model::FloatHistogram;
        use crate::model::histogram::Span;
        let (_d, s) = storage();
        let h = |n: f64| FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            count: 2.0 * n,
            sum: 3.0 * n,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![n, n],
            ..FloatHistogram::default()
        };
        let mut app = s.appender();
        let l = Labels::from_pairs([("__name__", "m"), ("job", "h")]).unwrap();
        app.append_histogram(l.clone(), 20_000, h(4.0));
        app.append_histogram(l, 30_000, h(2.5));
        app.commit().unwrap();
        let ext = BTreeMap::from([("site".to_owned(), "x".to_owned())]);
        let a = answer(&s, &request(&[]), &ext, ReadLimits::default()).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&a.body).unwrap();
        let resp = ReadResponse::decode(raw.as_slice()).unwrap();
        let ts = resp.results[0]
            .timeseries
            .iter()
            .find(|t| t.labels.iter().any(|l| l.value == "h"))
            .unwrap();
        assert!(ts.samples.is_empty());
        assert_eq!(ts.histograms.len(), 2);
        // Whole counts go out as an integer histogram, others as floats.
        assert!(matches!(
            ts.histograms[0].count,
            Some(proto::HistogramCount::CountInt(8))
        ));
        assert!(matches!(
            ts.histograms[1].count,
            Some(proto::HistogramCount::CountFloat(_))
        ));
        assert_eq!(ts.histograms[0].timestamp, 20_000);
        assert_eq!(ts.histograms[0].to_float().unwrap(), h(4.0));
        assert_eq!(ts.histograms[1].to_float().unwrap(), h(2.5));
        // Histograms count towards the sample limit: 191 floats + 2.
        let tight = ReadLimits {
            sample_limit: 192,
            ..ReadLimits::default()
        };
        let err = answer(&s, &request(&[]), &ext, tight).err().unwrap();
        assert_eq!(err.to_string(), "exceeded sample limit (192)");
        // Streamed answers have no histogram chunks: the histogram-only
        // series gets no frame, the float series is answered as before.
        let a = answer(
            &s,
            &request(&[ResponseType::StreamedXorChunks]),
            &ext,
            ReadLimits::default(),
        )
        .unwrap();
        let frames = frames(&a.body);
        assert_eq!(frames.len(), 1);
        assert!(
            frames[0].chunked_series[0]
                .labels
                .iter()
                .any(|l| l.value == "a")
        );
    }

    fn frames(body: &[u8]) -> Vec<ChunkedReadResponse> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let (mut len, mut shift) = (0usize, 0);
            loop {
                let b = body[i];
                len |= ((b & 0x7f) as usize) << shift;
                i += 1;
                shift += 7;
                if b < 0x80 {
                    break;
                }
            }
            out.push(ChunkedReadResponse::decode(&body[i + 4..i + 4 + len]).unwrap());
            i += 4 + len;
        }
        out
    }

    #[test]
    fn limits() {
        let (_d, s) = storage();
        let ext = BTreeMap::from([("site".to_owned(), "x".to_owned())]);
        let tight = ReadLimits {
            sample_limit: 190,
            max_bytes_in_frame: 1,
        };
        let err = answer(&s, &request(&[]), &ext, tight).err().unwrap();
        assert_eq!(err.to_string(), "exceeded sample limit (190)");
        // Streamed answers ignore the sample limit; with a tiny frame size
        // every chunk gets a frame of its own, each with the series' labels.
        let a = answer(
            &s,
            &request(&[ResponseType::StreamedXorChunks]),
            &ext,
            tight,
        )
        .unwrap();
        let frames = frames(&a.body);
        assert_eq!(frames.len(), 2);
        for f in &frames {
            assert_eq!(f.chunked_series.len(), 1);
            assert_eq!(f.chunked_series[0].chunks.len(), 1);
            assert_eq!(f.chunked_series[0].labels.len(), 3);
        }
        let unlimited = ReadLimits {
            sample_limit: 0,
            ..ReadLimits::default()
        };
        assert!(answer(&s, &request(&[]), &ext, unlimited).is_ok());
    }
}
