//! The one write path every ingester uses (scrape, push, remote write, rules,
//! plugins): buffer samples, then commit them as a batch.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{FloatHistogram, HistogramSample, Labels, Sample};

use super::exemplars::{Exemplar, ExemplarError};
use super::head::{AppendError, Placement};
use super::wal::Record;
use super::{Storage, StorageError};

/// Samples waiting to be committed. Dropping it without `commit` discards them.
pub struct Appender<'a> {
    storage: &'a Storage,
    /// Borrowed labels come from a caller's cache (a scrape loop's), which
    /// saves two atomic reference-count updates per sample.
    pending: Vec<(Cow<'a, Labels>, Sample, Option<u32>)>,
    /// Native histogram samples; rejections are numbered after the floats.
    pending_histograms: Vec<(Labels, HistogramSample)>,
    /// Exemplars and the series they belong to; logged in the same WAL
    /// write as the samples.
    pending_exemplars: Vec<(Labels, Exemplar)>,
}

/// What a commit did. Rejections keep the position of the sample in the batch
/// so callers can count or report them per reason.
#[derive(Debug, Default, PartialEq)]
pub struct CommitReport {
    pub appended: usize,
    pub duplicates: usize,
    pub rejected: Vec<(usize, AppendError)>,
    /// Exemplars stored.
    pub exemplars: usize,
    /// Exemplars refused, by position among the batch's exemplars. They do
    /// not fail the commit, as in Prometheus.
    pub exemplar_errors: Vec<(usize, ExemplarError)>,
}

impl<'a> Appender<'a> {
    pub(super) fn new(storage: &'a Storage) -> Appender<'a> {
        Appender {
            storage,
            pending: Vec::new(),
            pending_histograms: Vec::new(),
            pending_exemplars: Vec::new(),
        }
    }

    /// Adds an exemplar of `series`. The series must have a sample in the
    /// head or in this batch; the exemplar is checked against the series'
    /// newest one (duplicates and older ones are refused) at commit.
    pub fn append_exemplar(&mut self, series: Labels, exemplar: Exemplar) {
        self.pending_exemplars.push((series, exemplar));
    }

    /// Adds a native histogram sample. In a commit's report, its position
    /// counts after every float sample of the batch.
    pub fn append_histogram(&mut self, labels: Labels, t: i64, h: FloatHistogram) {
        self.pending_histograms
            .push((labels, HistogramSample { t, h: Arc::new(h) }));
    }

    pub fn append(&mut self, labels: Labels, t: i64, v: f64) {
        self.pending
            .push((Cow::Owned(labels), Sample { t, v }, None));
    }

    /// [`Appender::append`] with borrowed labels and, when known, the head
    /// slot [`Storage::canonical_series`] gave for them, so the commit can
    /// skip the series lookup. A stale hint is harmless: it is checked
    /// against the labels.
    pub fn append_borrowed(&mut self, labels: &'a Labels, t: i64, v: f64, hint: Option<u32>) {
        self.pending
            .push((Cow::Borrowed(labels), Sample { t, v }, hint));
    }

    pub fn len(&self) -> usize {
        self.pending.len() + self.pending_histograms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.pending_histograms.is_empty()
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
        let floats = self.pending.len();
        for (i, (labels, sample, hint)) in self.pending.into_iter().enumerate() {
            let idx = head.resolve(&labels, hint);
            let series = head.series_mut(idx);
            if !series.logged {
                // Marked now so the series is logged once per batch; undone
                // below if the WAL write fails.
                series.logged = true;
                new_series.push((series.id, labels.into_owned()));
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

        let mut hist_accepted: Vec<(u32, HistogramSample)> = Vec::new();
        let mut hist_last: HashMap<u32, i64> = HashMap::new();
        for (k, (labels, sample)) in self.pending_histograms.into_iter().enumerate() {
            let i = floats + k;
            let idx = head.resolve(&labels, None);
            let series = head.series_mut(idx);
            if !series.logged {
                series.logged = true;
                new_series.push((series.id, labels));
            }
            match head.place_histogram(idx, &sample, hist_last.get(&idx).copied()) {
                Ok(Placement::Duplicate) => report.duplicates += 1,
                Ok(_) => {
                    let last = hist_last.entry(idx).or_insert(sample.t);
                    *last = (*last).max(sample.t);
                    hist_accepted.push((idx, sample));
                }
                Err(e) => report.rejected.push((i, e)),
            }
        }

        // Exemplars of series the head has (samples of this batch created
        // theirs above), checked in order against the store and against
        // those accepted earlier in the batch.
        let mut ex_accepted: Vec<(u32, Exemplar)> = Vec::new();
        let mut ex_last: HashMap<u32, usize> = HashMap::new();
        for (k, (labels, exemplar)) in self.pending_exemplars.into_iter().enumerate() {
            let Some(idx) = head.lookup(&labels) else {
                report
                    .exemplar_errors
                    .push((k, ExemplarError::UnknownSeries));
                continue;
            };
            let pending = ex_last.get(&idx).map(|&p| &ex_accepted[p].1);
            match storage.exemplars.check(&labels, &exemplar, pending) {
                Ok(()) => {
                    ex_last.insert(idx, ex_accepted.len());
                    ex_accepted.push((idx, exemplar));
                }
                Err(e) => report.exemplar_errors.push((k, e)),
            }
        }

        let mut records = Vec::with_capacity(4);
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
        if !hist_accepted.is_empty() {
            records.push(Record::Histograms(
                hist_accepted
                    .iter()
                    .map(|(idx, s)| (head.series(*idx).id, s.clone()))
                    .collect(),
            ));
        }
        if !ex_accepted.is_empty() {
            records.push(Record::Exemplars(
                ex_accepted
                    .iter()
                    .map(|(idx, e)| (head.series(*idx).id, e.clone()))
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
        report.appended = accepted.len() + hist_accepted.len();
        for (idx, s) in hist_accepted {
            head.insert_histogram(idx, s);
        }
        report.exemplars = ex_accepted.len();
        for (idx, e) in ex_accepted {
            storage.exemplars.insert(head.series(idx).labels.clone(), e);
        }
        storage.metrics.record_commit(&report);
        Ok(report)
    }
}
