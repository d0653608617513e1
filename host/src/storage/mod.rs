//! The time-series store: the data directory and its lock, the write-ahead
//! log, the in-memory head with its postings index, and the appender every
//! ingest path writes through. Parquet blocks, compaction and retention build
//! on this (see ARCHITECTURE.md).

pub mod appender;
pub mod block;
pub mod head;
pub mod index;
pub mod lock;
pub mod wal;

use std::path::Path;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

pub use self::appender::{Appender, CommitReport};
use self::head::Head;
pub use self::head::{AppendError, SeriesSamples};
pub use self::lock::{DataDir, LockError};
use self::wal::{Record, ReplayReport, Wal, WalError};
use crate::model::Matcher;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Wal(#[from] WalError),
}

#[derive(Clone, Debug, Default)]
pub struct StorageOptions {
    /// `storage.tsdb.out_of_order_time_window`, in milliseconds.
    pub out_of_order_window_ms: i64,
}

/// Progress of WAL replay, for logs, `/api/v1/status/walreplay` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    pub done: u32,
    pub total: u32,
}

/// Counters the storage keeps about itself.
#[derive(Default)]
pub struct StorageMetrics {
    samples_appended: std::sync::atomic::AtomicU64,
    samples_rejected: [std::sync::atomic::AtomicU64; 4],
}

impl StorageMetrics {
    fn record_commit(&self, report: &CommitReport) {
        use std::sync::atomic::Ordering::Relaxed;
        self.samples_appended
            .fetch_add(report.appended as u64, Relaxed);
        for (_, e) in &report.rejected {
            let i = match e {
                AppendError::OutOfOrder => 0,
                AppendError::DuplicateTimestamp => 1,
                AppendError::OutOfBounds => 2,
                AppendError::TooOld => 3,
            };
            self.samples_rejected[i].fetch_add(1, Relaxed);
        }
    }

    pub fn samples_appended(&self) -> u64 {
        self.samples_appended
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

pub struct Storage {
    head: RwLock<Head>,
    wal: Mutex<Wal>,
    pub metrics: StorageMetrics,
}

/// Head statistics for status pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadStats {
    pub num_series: usize,
    pub num_samples: u64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
}

impl Storage {
    /// Opens the store in `dir` (already locked through [`DataDir`]) and
    /// rebuilds the head from the WAL, repairing a damaged tail.
    pub fn open(
        dir: &Path,
        opts: StorageOptions,
        mut progress: impl FnMut(ReplayProgress),
    ) -> Result<(Storage, ReplayReport), StorageError> {
        let wal_dir = dir.join("wal");
        let mut head = Head::new(opts.out_of_order_window_ms);
        let started = Instant::now();
        let mut unknown_series_samples = 0u64;
        let mut conflicts = Vec::new();
        let report = wal::replay(
            &wal_dir,
            |record| match record {
                Record::Series(series) => {
                    for (id, labels) in series {
                        if let Err(e) = head.restore_series(id, labels) {
                            conflicts.push(e);
                        }
                    }
                }
                Record::Samples(samples) => {
                    for (id, s) in samples {
                        match head.index_of(id) {
                            Some(idx) => head.insert(idx, s),
                            None => unknown_series_samples += 1,
                        }
                    }
                }
            },
            |done, total| progress(ReplayProgress { done, total }),
        )?;
        if let Some(c) = &report.corruption {
            tracing::warn!(
                segment = c.segment,
                offset = c.offset,
                reason = %c.reason,
                bytes_lost = c.bytes_lost,
                segments_removed = c.segments_removed,
                "WAL was damaged; cut it at the first bad record, later data is lost"
            );
        }
        if unknown_series_samples > 0 {
            tracing::warn!(
                samples = unknown_series_samples,
                "WAL has samples of unknown series; skipped"
            );
        }
        for c in conflicts {
            tracing::warn!(conflict = %c, "WAL series id conflict; kept the first series");
        }
        tracing::info!(
            segments = report.segments,
            records = report.records,
            series = head.num_series(),
            samples = head.num_samples(),
            duration = ?started.elapsed(),
            "WAL replay completed"
        );
        let wal = Wal::open(&wal_dir)?;
        Ok((
            Storage {
                head: RwLock::new(head),
                wal: Mutex::new(wal),
                metrics: StorageMetrics::default(),
            },
            report,
        ))
    }

    pub fn appender(&self) -> Appender<'_> {
        Appender::new(self)
    }

    /// Series matching all matchers with samples in `[mint, maxt]`, sorted by labels.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        self.head.read().select(matchers, mint, maxt)
    }

    pub fn label_names(&self) -> Vec<String> {
        self.head.read().postings().label_names()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.head.read().postings().label_values(name)
    }

    pub fn head_stats(&self) -> HeadStats {
        let head = self.head.read();
        let range = head.time_range();
        HeadStats {
            num_series: head.num_series(),
            num_samples: head.num_samples(),
            min_time: range.map(|r| r.0),
            max_time: range.map(|r| r.1),
        }
    }

    /// Forces the WAL to stable storage (shutdown, tests).
    pub fn sync(&self) -> Result<(), StorageError> {
        Ok(self.wal.lock().sync()?)
    }
}

#[cfg(test)]
mod tests;
