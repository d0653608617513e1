//! The one write path every ingester uses (scrape, push, remote write, rules,
//! plugins): buffer samples, then commit them as a batch.

use crate::model::{Labels, Sample};

use super::head::{AppendError, Placement};
use super::wal::Record;
use super::{Storage, StorageError};

/// Samples waiting to be committed. Dropping it without `commit` discards them.
pub struct Appender<'a> {
    storage: &'a Storage,
    pending: Vec<(Labels, Sample, Option<u32>)>,
}

/// What a commit did. Rejections keep the position of the sample in the batch
/// so callers can count or report them per reason.
#[derive(Debug, Default, PartialEq)]
pub struct CommitReport {
    pub appended: usize,
    pub duplicates: usize,
    pub rejected: Vec<(usize, AppendError)>,
}

impl<'a> Appender<'a> {
    pub(super) fn new(storage: &'a Storage) -> Appender<'a> {
        Appender {
            storage,
            pending: Vec::new(),
        }
    }

    pub fn append(&mut self, labels: Labels, t: i64, v: f64) {
        self.pending.push((labels, Sample { t, v }, None));
    }

    /// [`Appender::append`] with the head slot [`Storage::canonical_series`]
    /// gave for these labels, so the commit can skip the series lookup.
    /// A stale hint is harmless: it is checked against the labels.
    pub fn append_hinted(&mut self, labels: Labels, t: i64, v: f64, hint: Option<u32>) {
        self.pending.push((labels, Sample { t, v }, hint));
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Checks every sample against Prometheus's ordering rules, writes the
    /// accepted ones to the WAL, then makes them visible. When this returns
    /// `Ok`, the accepted samples survive a crash of the process.
    pub fn commit(self) -> Result<CommitReport, StorageError> {
        let storage = self.storage;
        // One commit at a time: the WAL order is the order samples are applied in.
        let mut wal = storage.wal.lock();
        let mut head = storage.head.write();

        let mut report = CommitReport::default();
        let mut new_series = Vec::new();
        let mut accepted: Vec<(u32, Sample, usize)> = Vec::with_capacity(self.pending.len());
        let batch = head.begin_batch();
        // Whether any series has two samples in this batch; usually not
        // (a scrape or a remote-write request), and then no sorting is needed.
        let mut repeated = false;
        for (i, (labels, sample, hint)) in self.pending.into_iter().enumerate() {
            let idx = head.resolve(&labels, hint);
            let series = head.series_mut(idx);
            if !series.logged {
                // Marked now so the series is logged once per batch; undone
                // below if the WAL write fails.
                series.logged = true;
                new_series.push((series.id, labels));
            }
            // The newest sample of this series accepted earlier in the batch,
            // so a batch is checked in order.
            let pending_last =
                (series.batch == batch).then(|| accepted[series.batch_pos as usize].1);
            match head.place(idx, sample, pending_last) {
                Ok(Placement::Duplicate) => report.duplicates += 1,
                Ok(_) => {
                    let series = head.series_mut(idx);
                    match pending_last {
                        Some(last) => {
                            repeated = true;
                            if sample.t >= last.t {
                                series.batch_pos = accepted.len() as u32;
                            }
                        }
                        None => {
                            series.batch = batch;
                            series.batch_pos = accepted.len() as u32;
                        }
                    }
                    accepted.push((idx, sample, i));
                }
                Err(e) => report.rejected.push((i, e)),
            }
        }
        // Within a batch, out-of-order inserts may also collide with each other.
        if repeated {
            accepted.sort_by_key(|(idx, s, i)| (*idx, s.t, *i));
        }
        accepted.dedup_by(|b, a| {
            if a.0 == b.0 && a.1.t == b.1.t {
                report.rejected.push((b.2, AppendError::DuplicateTimestamp));
                true
            } else {
                false
            }
        });

        let mut records = Vec::with_capacity(2);
        if !new_series.is_empty() {
            records.push(Record::Series(new_series.clone()));
        }
        if !accepted.is_empty() {
            records.push(Record::Samples(
                accepted
                    .iter()
                    .map(|(idx, s, _)| (head.series(*idx).id, *s))
                    .collect(),
            ));
        }
        if !records.is_empty()
            && let Err(e) = wal.log(&records)
        {
            for (id, _) in &new_series {
                if let Some(idx) = head.index_of(*id) {
                    head.series_mut(idx).logged = false;
                }
            }
            return Err(e.into());
        }
        for (idx, s, _) in &accepted {
            head.insert(*idx, *s);
        }
        report.appended = accepted.len();
        storage.metrics.record_commit(&report);
        Ok(report)
    }
}
