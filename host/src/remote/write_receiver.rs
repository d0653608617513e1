//! `POST /api/v1/write`: accepts remote-write 1.0 requests into the store.
//!
//! Answers as Prometheus does: 204 when stored; 400 for requests that will
//! never succeed (undecodable, invalid labels, out-of-order or duplicate
//! samples), which senders drop; 5xx when storage failed, which senders retry.
//!
//! Deliberate differences: a sample identical to one already stored (same
//! series, timestamp and value bits) is accepted as a duplicate even when
//! newer samples exist, so a retried request succeeds; Prometheus answers 400.
//! And when some samples of a request are rejected
//! (out of order, duplicate timestamp, too old), Ember still stores the
//! valid ones before answering 400. Prometheus rolls the whole request back,
//! and the sender then drops it, so Prometheus loses the valid samples too.

use prost::Message;

use super::proto::WriteRequest;
use crate::model::Labels;
use crate::storage::exemplars::Exemplar;
use crate::storage::{AppendError, Storage, StorageError};

/// Largest decompressed request accepted; a bigger one is rejected, not buffered.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Not worth retrying: the same request will fail again.
    #[error("{0}")]
    BadRequest(String),
    /// The store could not take the data; a retry may succeed.
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
}

/// What one request did, for metrics and logs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub samples: usize,
    pub duplicates: usize,
    pub exemplars: usize,
    /// Out of order, duplicate or too long: dropped without failing the
    /// request, as Prometheus drops them.
    pub exemplars_rejected: usize,
    pub metadata_ignored: usize,
}

/// Decodes a snappy-compressed `WriteRequest`.
pub fn decode(body: &[u8]) -> Result<WriteRequest, WriteError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| WriteError::BadRequest(format!("snappy: {e}")))?;
    if len > MAX_DECOMPRESSED_BYTES {
        return Err(WriteError::BadRequest(format!(
            "request decompresses to {len} bytes, more than the {MAX_DECOMPRESSED_BYTES} accepted"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WriteError::BadRequest(format!("snappy: {e}")))?;
    WriteRequest::decode(raw.as_slice())
        .map_err(|e| WriteError::BadRequest(format!("protobuf: {e}")))
}

/// Appends a decoded request as one commit.
pub fn write(storage: &Storage, req: WriteRequest) -> Result<WriteOutcome, WriteError> {
    let mut outcome = WriteOutcome {
        metadata_ignored: req.metadata.len(),
        ..WriteOutcome::default()
    };
    let mut app = storage.appender();
    // Which series each pending sample belongs to, for error messages.
    let mut owners: Vec<(usize, i64)> = Vec::new();
    // Histogram samples are numbered after all float samples in a commit.
    let mut hist_owners: Vec<(usize, i64)> = Vec::new();
    let mut series_labels: Vec<Labels> = Vec::with_capacity(req.timeseries.len());
    // The series of each exemplar, in append order, for logs.
    let mut exemplar_owners: Vec<usize> = Vec::new();
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        let labels = Labels::from_pairs(
            ts.labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str())),
        )
        .map_err(|e| WriteError::BadRequest(format!("series {i}: {e}")))?;
        if labels.is_empty() {
            return Err(WriteError::BadRequest(format!("series {i} has no labels")));
        }
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in &ts.exemplars {
            let labels =
                Labels::from_pairs(e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
                    .map_err(|err| {
                        WriteError::BadRequest(format!("series {i}: exemplar: {err}"))
                    })?;
            exemplars.push(Exemplar {
                labels,
                value: e.value,
                timestamp_ms: e.timestamp,
            });
        }
        for s in &ts.samples {
            app.append(labels.clone(), s.timestamp, s.value);
            owners.push((i, s.timestamp));
        }
        // After the series' samples, so a series first seen in this request
        // exists when its exemplars are checked, as in Prometheus.
        for e in exemplars.drain(..) {
            app.append_exemplar(labels.clone(), e);
            exemplar_owners.push(i);
        }
        for (k, h) in ts.histograms.iter().enumerate() {
            let fh = h
                .to_float()
                .map_err(|e| WriteError::BadRequest(format!("series {i}: histogram {k}: {e}")))?;
            app.append_histogram(labels.clone(), h.timestamp, fh);
            hist_owners.push((i, h.timestamp));
        }
        series_labels.push(labels);
    }
    owners.extend(hist_owners);
    let report = app.commit()?;
    outcome.exemplars = report.exemplars;
    outcome.exemplars_rejected = report.exemplar_errors.len();
    for (k, err) in &report.exemplar_errors {
        let series = &series_labels[exemplar_owners[*k]];
        tracing::debug!(series = %series, err = %err, "Remote-write exemplar not stored");
    }
    outcome.samples = report.appended;
    outcome.duplicates = report.duplicates;
    if let Some((idx, err)) = report.rejected.first() {
        let (series, t) = owners[*idx];
        let kind = match err {
            AppendError::OutOfOrder => "out of order sample",
            AppendError::DuplicateTimestamp => "duplicate sample for timestamp",
            AppendError::OutOfBounds => "out of bounds",
            AppendError::TooOld => "too old sample",
        };
        return Err(WriteError::BadRequest(format!(
            "{kind}: {} of {} samples rejected, first for series {} at timestamp {t}",
            report.rejected.len(),
            report.rejected.len() + report.appended + report.duplicates,
            series_labels[series]
        )));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::proto::{self, TimeSeries};
    use crate::storage::StorageOptions;

    fn series(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: vec![
                proto::Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                proto::Label {
                    name: "job".into(),
                    value: "j".into(),
                },
            ],
            samples: samples
                .iter()
                .map(|&(timestamp, value)| proto::Sample { value, timestamp })
                .collect(),
            ..TimeSeries::default()
        }
    }

    #[test]
    fn round_trip_through_snappy_and_protobuf() {
        let tmp = tempfile::tempdir().unwrap();
        let (storage, _) = Storage::open(tmp.path(), StorageOptions::default(), |_| {}).unwrap();
        let req = WriteRequest {
            timeseries: vec![series(
                "a",
                &[(1, 1.0), (2, f64::from_bits(crate::model::STALE_NAN_BITS))],
            )],
            metadata: vec![],
        };
        let body = proto::encode_request(&req);
        let outcome = write(&storage, decode(&body).unwrap()).unwrap();
        assert_eq!(outcome.samples, 2);
        let got = storage
            .select(&[crate::model::Matcher::eq("__name__", "a")], 0, 10)
            .unwrap();
        assert_eq!(got[0].samples[1].v.to_bits(), crate::model::STALE_NAN_BITS);
    }

    #[test]
    fn bad_requests_are_400_material() {
        assert!(matches!(
            decode(b"not snappy at all"),
            Err(WriteError::BadRequest(_))
        ));
        let tmp = tempfile::tempdir().unwrap();
        let (storage, _) = Storage::open(tmp.path(), StorageOptions::default(), |_| {}).unwrap();
        write(
            &storage,
            WriteRequest {
                timeseries: vec![series("a", &[(10, 1.0)])],
                metadata: vec![],
            },
        )
        .unwrap();
        // One out-of-order sample: the valid one is kept, the request is a 400.
        let err = write(
            &storage,
            WriteRequest {
                timeseries: vec![series("a", &[(5, 1.0)]), series("b", &[(5, 2.0)])],
                metadata: vec![],
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("out of order sample: 1 of 2 samples rejected"),
            "{err}"
        );
        assert!(err.to_string().contains("a{job=\"j\"}"), "{err}");
        assert_eq!(
            storage
                .select(&[crate::model::Matcher::eq("__name__", "b")], 0, 10)
                .unwrap()
                .len(),
            1
        );
        let mut dup = series("x", &[(1, 1.0)]);
        dup.labels.push(proto::Label {
            name: "job".into(),
            value: "k".into(),
        });
        let err = write(
            &storage,
            WriteRequest {
                timeseries: vec![dup],
                metadata: vec![],
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("duplicate label name"), "{err}");
    }
}
