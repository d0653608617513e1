//! The time-series store: the data directory and its lock, the write-ahead
//! log, the in-memory head with its postings index, and the appender every
//! ingest path writes through. Parquet blocks, compaction and retention build
//! on this (see ARCHITECTURE.md).

pub mod appender;
pub mod backfill;
pub mod batches;
pub mod block;
pub mod bucket;
pub mod chunk;
pub mod compact;
pub mod dedup;
pub mod exemplars;
pub mod head;
pub mod index;
pub mod lock;
pub mod stats;
pub mod tombstones;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

pub use self::appender::{Appender, CommitReport};
use self::block::{Block, BlockCompaction, BlockError};
use self::head::Head;
pub use self::head::{AppendError, SeriesSamples};
pub use self::lock::{DataDir, LockError};
use self::wal::{Record, ReplayReport, Wal, WalError};
use crate::model::{Labels, Matcher};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("building an Arrow batch: {0}")]
    Arrow(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub const DEFAULT_BLOCK_RANGE_MS: i64 = 2 * 3600 * 1000;

#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// `storage.tsdb.out_of_order_time_window`, in milliseconds.
    pub out_of_order_window_ms: i64,
    /// The head is cut into blocks of this many milliseconds (2h).
    pub block_range_ms: i64,
    /// Compaction never builds blocks longer than this.
    pub max_block_range_ms: i64,
    /// Delete blocks entirely older than this (milliseconds), if set.
    pub retention_ms: Option<i64>,
    /// Delete the oldest blocks while blocks + WAL exceed this many bytes, if set.
    pub retention_bytes: Option<u64>,
    /// `storage.exemplars.max_exemplars`: the exemplar ring's size (0 disables).
    pub max_exemplars: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            out_of_order_window_ms: 0,
            block_range_ms: DEFAULT_BLOCK_RANGE_MS,
            max_block_range_ms: 31 * 24 * 3600 * 1000,
            retention_ms: Some(15 * 24 * 3600 * 1000),
            retention_bytes: None,
            max_exemplars: 100_000,
        }
    }
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
    pub blocks_cut: std::sync::atomic::AtomicU64,
    pub compactions: std::sync::atomic::AtomicU64,
    pub blocks_deleted_by_retention: std::sync::atomic::AtomicU64,
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

/// How many closed WAL segments a lagging follower may hold back from a
/// checkpoint. Beyond this the WAL is truncated anyway (the follower counts
/// and logs what it lost), so a remote that is gone for good cannot fill the
/// disk. Segments close at 128 MiB or at every head cut, so this is at least
/// a few block ranges at low volume and half a GiB at high volume.
pub const MAX_HELD_WAL_SEGMENTS: u32 = 4;

/// The oldest WAL segment each follower (a remote-write queue) still needs.
/// Checkpoints do not delete those segments, within [`MAX_HELD_WAL_SEGMENTS`].
#[derive(Debug, Default)]
pub struct WalHolds {
    holds: Mutex<std::collections::HashMap<String, u32>>,
}

impl WalHolds {
    /// `who` still needs segment `segment` and all later ones.
    pub fn set(&self, who: &str, segment: u32) {
        self.holds.lock().insert(who.to_owned(), segment);
    }

    pub fn release(&self, who: &str) {
        self.holds.lock().remove(who);
    }

    pub fn lowest(&self) -> Option<u32> {
        self.holds.lock().values().min().copied()
    }
}

/// Which segments a checkpoint taken after closing segment `closed` may
/// replace, given the oldest segment a follower still needs: `None` when
/// it must not replace any.
fn checkpoint_upto(closed: u32, needed: Option<u32>) -> Option<u32> {
    match needed {
        Some(needed) if needed <= closed && closed - needed < MAX_HELD_WAL_SEGMENTS => {
            needed.checked_sub(1)
        }
        Some(needed) if needed <= closed => {
            tracing::warn!(
                needed,
                closed,
                max_held = MAX_HELD_WAL_SEGMENTS,
                "A remote-write queue is too far behind; truncating the WAL past what it has sent"
            );
            Some(closed)
        }
        _ => Some(closed),
    }
}

pub struct Storage {
    dir: PathBuf,
    opts: StorageOptions,
    head: RwLock<Head>,
    wal: Mutex<Wal>,
    /// Persisted blocks, sorted by time. Readers clone the `Arc`s, so a block
    /// replaced by compaction stays readable until its last reader is done.
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Serializes cuts, compactions and retention with each other.
    maintenance: Mutex<()>,
    /// Deleted intervals, hidden from reads and dropped when blocks are written.
    tombstones: tombstones::Tombstones,
    /// The newest exemplars; logged in the WAL, replayed at start-up.
    exemplars: exemplars::ExemplarStore,
    pub metrics: StorageMetrics,
    /// WAL segments remote-write queues still need.
    pub wal_holds: WalHolds,
    /// Blocks in object storage, when `storage.object_store` is configured.
    bucket: std::sync::OnceLock<Arc<bucket::ObjectStorage>>,
}

/// A series and the time span of its samples, from the indexes alone.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesInfo {
    pub labels: crate::model::Labels,
    pub min_time: i64,
    pub max_time: i64,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("dir", &self.dir).finish()
    }
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
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let blocks = load_blocks(dir)?;
        let tombstones = tombstones::Tombstones::open(dir)?;
        let mut head = Head::new(opts.out_of_order_window_ms);
        // Samples already persisted in a block must not come back from the WAL
        // (a crash between writing a block and checkpointing leaves them there).
        head.min_valid_time = blocks
            .iter()
            .map(|b| b.meta.max_time)
            .max()
            .unwrap_or(i64::MIN);
        let min_valid = head.min_valid_time;
        let started = Instant::now();
        let mut unknown_series_samples = 0u64;
        let mut conflicts = Vec::new();
        let exemplars = exemplars::ExemplarStore::new(opts.max_exemplars);
        let mut exemplars_replayed = 0u64;
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
                            Some(_) if s.t < min_valid => {}
                            Some(idx) => head.insert(idx, s),
                            None => unknown_series_samples += 1,
                        }
                    }
                }
                Record::Histograms(samples) => {
                    for (id, s) in samples {
                        match head.index_of(id) {
                            Some(_) if s.t < min_valid => {}
                            Some(idx) => head.insert_histogram(idx, s),
                            None => unknown_series_samples += 1,
                        }
                    }
                }
                Record::Exemplars(records) => {
                    for (id, e) in records {
                        match head.index_of(id) {
                            Some(idx) => {
                                exemplars.restore(head.series(idx).labels.clone(), e);
                                exemplars_replayed += 1;
                            }
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
            exemplars = exemplars_replayed,
            duration = ?started.elapsed(),
            "WAL replay completed"
        );
        let wal = Wal::open(&wal_dir)?;
        Ok((
            Storage {
                exemplars,
                dir: dir.to_owned(),
                opts,
                head: RwLock::new(head),
                wal: Mutex::new(wal),
                blocks: RwLock::new(blocks),
                maintenance: Mutex::new(()),
                tombstones,
                metrics: StorageMetrics::default(),
                wal_holds: WalHolds::default(),
                bucket: std::sync::OnceLock::new(),
            },
            report,
        ))
    }

    /// The exemplar store scrapes and remote write add to.
    pub fn exemplars(&self) -> &exemplars::ExemplarStore {
        &self.exemplars
    }

    pub fn appender(&self) -> Appender<'_> {
        Appender::new(self)
    }

    /// Series matching all matchers with samples in `[mint, maxt]` across
    /// blocks and head, sorted by labels, each series' samples sorted by time.
    /// Blocks outside the range are not opened.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let mut warnings = Vec::new();
        let out = self.select_reporting(matchers, mint, maxt, &mut warnings)?;
        for w in warnings {
            tracing::warn!(warning = %w, "Query answered without some remote data");
        }
        Ok(out)
    }

    /// Makes blocks in object storage part of every read from now on.
    pub fn attach_bucket(&self, os: Arc<bucket::ObjectStorage>) {
        let _ = self.bucket.set(os);
    }

    pub fn bucket(&self) -> Option<&Arc<bucket::ObjectStorage>> {
        self.bucket.get()
    }

    /// The attached bucket, if it serves a global view (external labels
    /// on every series, replicas merged).
    fn global_view(&self) -> Option<&Arc<bucket::ObjectStorage>> {
        self.bucket.get().filter(|b| b.settings.global_view)
    }

    /// Matchers a block's own index can answer, and matchers on external
    /// labels: in a global view, series carry their source's external
    /// labels, so matchers on those apply after the labels are added.
    fn split_matchers(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<Matcher>, Vec<Matcher>), StorageError> {
        let (mut inner, outer): (Vec<Matcher>, Vec<Matcher>) = match self.global_view() {
            Some(os) => {
                let added = os.added_label_names();
                matchers
                    .iter()
                    .cloned()
                    .partition(|m| !added.contains(m.name.as_str()))
            }
            None => (matchers.to_vec(), Vec::new()),
        };
        if inner.is_empty() {
            inner.push(any_series()?);
        }
        Ok((inner, outer))
    }

    /// [`Storage::select`], also reading blocks in object storage. A remote
    /// block that cannot be read is left out and named in `warnings`
    /// (Prometheus-style partial answer) instead of failing the read.
    pub fn select_reporting(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let all_local = self.blocks();
        let blocks: Vec<&Arc<Block>> = all_local
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .collect();
        let global = self.global_view();
        let (inner, outer) = self.split_matchers(matchers)?;
        let own = global.map(|os| os.own_labels().clone());
        let mut parts = Vec::with_capacity(blocks.len() + 1);
        for b in &blocks {
            let mut part = b.select(&inner, mint, maxt)?;
            if let Some(own) = &own {
                dedup::add_external_labels(&mut part, own);
            }
            parts.push(part);
        }
        let mut head = self.head.read().select(&inner, mint, maxt);
        if let Some(own) = &own {
            dedup::add_external_labels(&mut head, own);
        }
        parts.push(head);
        let mut merged = if let Some(os) = self.bucket.get() {
            let mut remote_parts = Vec::new();
            for b in os.blocks_for_query(&all_local, mint, maxt) {
                match b.select(&inner, mint, maxt) {
                    Ok(mut part) => {
                        // Deletions apply to this server's own data,
                        // local or uploaded.
                        if b.external_labels == *os.own_labels() {
                            self.tombstones.apply(&mut part);
                        }
                        if global.is_some() {
                            dedup::add_external_labels(&mut part, &b.external_labels);
                        }
                        remote_parts.push(part);
                    }
                    Err(err) => {
                        os.metrics
                            .query_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        warnings.push(format!(
                            "object storage: block {} ({}..{}) could not be read and is left out: {err}",
                            b.meta.ulid, b.meta.min_time, b.meta.max_time
                        ));
                    }
                }
            }
            let mut own = compact::merge_series(parts);
            self.tombstones.apply(&mut own);
            remote_parts.push(own);
            compact::merge_series(remote_parts)
        } else {
            let mut merged = compact::merge_series(parts);
            self.tombstones.apply(&mut merged);
            merged
        };
        if !outer.is_empty() {
            merged.retain(|s| {
                outer
                    .iter()
                    .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            });
        }
        if let Some(os) = global
            && !os.settings.replica_labels.is_empty()
        {
            merged = dedup::deduplicate(merged, &os.settings.replica_labels);
        }
        Ok(merged)
    }

    /// Deletes local copies of blocks that are safely in object storage.
    /// Returns how many were removed.
    pub fn remove_local_blocks(&self, ulids: &[String]) -> Result<usize, StorageError> {
        let _guard = self.maintenance.lock();
        let doomed: Vec<Arc<Block>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| ulids.contains(&b.meta.ulid))
            .cloned()
            .collect();
        self.blocks
            .write()
            .retain(|b| !doomed.iter().any(|d| Arc::ptr_eq(d, b)));
        for b in &doomed {
            remove_block_dir(b.dir())?;
            tracing::info!(block = %b.meta.ulid, min_time = b.meta.min_time, max_time = b.meta.max_time, "Removed an uploaded block locally past the local retention; it is read from object storage now");
        }
        Ok(doomed.len())
    }

    /// Series matching all matchers across blocks and head with their first
    /// and last sample time, sorted by labels. Only series indexes are read,
    /// so this is cheap; deletions (tombstones) are not subtracted, so the
    /// times are bounds of what [`Storage::select`] returns.
    pub fn series_info(&self, matchers: &[Matcher]) -> Vec<SeriesInfo> {
        let mut warnings = Vec::new();
        let out = self.series_info_reporting(matchers, &mut warnings);
        for w in warnings {
            tracing::warn!(warning = %w, "Series listed without some remote data");
        }
        out
    }

    /// [`Storage::series_info`], naming remote blocks that could not be
    /// read in `warnings` (see [`Storage::select_reporting`]).
    pub fn series_info_reporting(
        &self,
        matchers: &[Matcher],
        warnings: &mut Vec<String>,
    ) -> Vec<SeriesInfo> {
        let mut merged: std::collections::BTreeMap<crate::model::Labels, (i64, i64)> =
            std::collections::BTreeMap::new();
        let mut add = |infos: Vec<SeriesInfo>| {
            for info in infos {
                merged
                    .entry(info.labels)
                    .and_modify(|(lo, hi)| {
                        *lo = (*lo).min(info.min_time);
                        *hi = (*hi).max(info.max_time);
                    })
                    .or_insert((info.min_time, info.max_time));
            }
        };
        let Some(os) = self.bucket.get() else {
            for b in self.blocks.read().iter() {
                add(b.series_info(matchers));
            }
            add(self.head.read().series_info(matchers));
            return collect_infos(merged);
        };
        // Series indexes only, also for remote blocks (their series tables
        // are loaded at every catalog sync): listing a metric's series must
        // not fetch its samples from the bucket, or every SQL query would
        // read a metric's whole history just to learn its columns.
        let (inner, outer) = match self.split_matchers(matchers) {
            Ok(split) => split,
            Err(e) => {
                warnings.push(e.to_string());
                return Vec::new();
            }
        };
        let global = self.global_view();
        let own = global.map(|os| os.own_labels().clone());
        let labeled = |mut infos: Vec<SeriesInfo>, external: Option<&Labels>| {
            if let Some(external) = external {
                for info in &mut infos {
                    info.labels = dedup::with_external_labels(&info.labels, external);
                }
            }
            infos
        };
        let local = self.blocks();
        for b in local.iter() {
            add(labeled(b.series_info(&inner), own.as_ref()));
        }
        add(labeled(self.head.read().series_info(&inner), own.as_ref()));
        for b in os.blocks_for_query(&local, i64::MIN, i64::MAX) {
            let external = global.map(|_| &b.external_labels);
            add(labeled(b.series_info(&inner), external));
        }
        let replica_labels = global.map_or(&[][..], |os| &os.settings.replica_labels[..]);
        let mut deduplicated: std::collections::BTreeMap<Labels, (i64, i64)> =
            std::collections::BTreeMap::new();
        for (labels, (lo, hi)) in merged {
            if !outer
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            {
                continue;
            }
            deduplicated
                .entry(dedup::without_labels(&labels, replica_labels))
                .and_modify(|(l, h)| {
                    *l = (*l).min(lo);
                    *h = (*h).max(hi);
                })
                .or_insert((lo, hi));
        }
        collect_infos(deduplicated)
    }

    /// Deletes the samples of every series matching one of the matcher sets
    /// in `[mint, maxt]`: a tombstone, durable before this returns.
    pub fn delete_series(
        &self,
        sets: Vec<Vec<Matcher>>,
        mint: i64,
        maxt: i64,
    ) -> Result<(), StorageError> {
        self.tombstones.add(
            sets.into_iter()
                .map(|matchers| tombstones::Tombstone {
                    matchers,
                    mint,
                    maxt,
                })
                .collect(),
        )
    }

    /// Rewrites the blocks tombstones touch without the deleted samples,
    /// then forgets tombstones that can no longer cover head data.
    pub fn clean_tombstones(&self) -> Result<(), StorageError> {
        let _guard = self.maintenance.lock();
        if self.tombstones.is_empty() {
            return Ok(());
        }
        for b in self.blocks() {
            if !self
                .tombstones
                .overlaps(b.meta.min_time, b.meta.max_time - 1)
            {
                continue;
            }
            let mut series = b.read_all()?;
            if !self.tombstones.apply(&mut series) {
                continue;
            }
            let meta = block::write_block(
                &self.dir,
                &series,
                b.meta.min_time,
                b.meta.max_time,
                b.meta.compaction.clone(),
            )?;
            let new = Arc::new(Block::open(&self.dir.join(&meta.ulid))?);
            tracing::info!(old = %b.meta.ulid, new = %meta.ulid, "Rewrote block without deleted samples");
            self.replace_blocks(&[b], new)?;
        }
        // The head holds nothing older than its minimum valid time, and
        // blocks are clean now.
        let min_valid = self.head.read().min_valid_time;
        self.tombstones.retain(|t| t.maxt >= min_valid)
    }

    /// Writes a consistent copy of the store into `dir` (which must not
    /// exist): every block (hard links, blocks are immutable), the
    /// tombstones, and unless `skip_head` the head's samples as one more
    /// block. The result opens as a data directory of its own.
    pub fn snapshot(&self, dir: &Path, skip_head: bool) -> Result<(), StorageError> {
        let _guard = self.maintenance.lock();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StorageError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for b in self.blocks() {
            let target = dir.join(&b.meta.ulid);
            std::fs::create_dir_all(&target).map_err(io(&target))?;
            for entry in std::fs::read_dir(b.dir()).map_err(io(b.dir()))? {
                let entry = entry.map_err(io(b.dir()))?;
                let to = target.join(entry.file_name());
                if std::fs::hard_link(entry.path(), &to).is_err() {
                    std::fs::copy(entry.path(), &to).map_err(io(&to))?;
                }
            }
        }
        let ts = self.dir.join(tombstones::TOMBSTONES_FILE);
        if ts.exists() {
            let to = dir.join(tombstones::TOMBSTONES_FILE);
            std::fs::copy(&ts, &to).map_err(io(&to))?;
        }
        if !skip_head {
            let (series, range) = {
                let head = self.head.read();
                let min_valid = head.min_valid_time;
                match head.time_range() {
                    Some((mint, maxt)) => {
                        let mint = mint.max(min_valid);
                        (head.select_all(mint, maxt), Some((mint, maxt)))
                    }
                    None => (Vec::new(), None),
                }
            };
            if let Some((mint, maxt)) = range
                && !series.is_empty()
            {
                block::write_block(
                    dir,
                    &series,
                    mint,
                    maxt.saturating_add(1),
                    BlockCompaction {
                        level: 1,
                        sources: vec![],
                    },
                )?;
            }
        }
        Ok(())
    }

    /// [`Storage::select`] as Arrow: one record batch per series (`timestamp`,
    /// `value`), series sorted by labels, rows sorted by time.
    pub fn select_batches(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<batches::SeriesBatch>, StorageError> {
        self.select(matchers, mint, maxt)?
            .into_iter()
            .map(|s| batches::to_batch(s).map_err(|e| StorageError::Arrow(e.to_string())))
            .collect()
    }

    /// The head's own copy of a label set, if the series is in the head.
    /// Callers that keep label sets across appends (scrape caches) swap
    /// theirs for it, so later lookups compare a pointer instead of strings.
    /// [`Storage::canonical_labels`] with the series' head slot, a hint for
    /// [`Appender::append_borrowed`].
    pub fn canonical_series(
        &self,
        labels: &crate::model::Labels,
    ) -> Option<(crate::model::Labels, u32)> {
        let head = self.head.read();
        head.lookup(labels)
            .map(|idx| (head.series(idx).labels.clone(), idx))
    }

    pub fn canonical_labels(&self, labels: &crate::model::Labels) -> Option<crate::model::Labels> {
        let head = self.head.read();
        head.lookup(labels)
            .map(|idx| head.series(idx).labels.clone())
    }

    pub fn label_names(&self) -> Vec<String> {
        let mut names = self.head.read().postings().label_names();
        for b in self.blocks.read().iter() {
            names.extend(b.label_names());
        }
        if let Some(os) = self.bucket.get() {
            for b in os.remote_blocks() {
                names.extend(b.label_names());
            }
            if os.settings.global_view {
                names.extend(os.added_label_names());
                names.retain(|n| !os.settings.replica_labels.contains(n));
            }
        }
        names.sort();
        names.dedup();
        names
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values = self.head.read().postings().label_values(name);
        for b in self.blocks.read().iter() {
            values.extend(b.label_values(name));
        }
        if let Some(os) = self.bucket.get() {
            for b in os.remote_blocks() {
                values.extend(b.label_values(name));
                if os.settings.global_view
                    && let Some(v) = b.external_labels.get(name)
                {
                    values.push(v.to_owned());
                }
            }
            if os.settings.global_view
                && let Some(v) = os.own_labels().get(name)
            {
                values.push(v.to_owned());
            }
            if os.settings.global_view && os.settings.replica_labels.iter().any(|r| r == name) {
                values.clear();
            }
        }
        values.sort();
        values.dedup();
        values
    }

    /// Head cardinality for `/api/v1/status/tsdb`.
    pub fn head_cardinality(&self, limit: usize) -> stats::Cardinality {
        stats::cardinality(self.head.read().postings(), limit)
    }

    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &StorageOptions {
        &self.opts
    }

    /// Cuts every full block range out of the head, then compacts and applies
    /// retention. Cheap when there is nothing to do; the server calls it
    /// periodically.
    pub fn run_maintenance(&self) -> Result<(), StorageError> {
        let _guard = self.maintenance.lock();
        while self.cut_once()? {}
        compact::compact(self)?;
        self.apply_retention()?;
        Ok(())
    }

    /// Like Prometheus: cut once the head spans 1.5 block ranges, so recent
    /// data stays in memory and late samples still have somewhere to go.
    fn cut_once(&self) -> Result<bool, StorageError> {
        let range = self.opts.block_range_ms;
        let (start, end) = {
            let mut head = self.head.write();
            let Some((mint, maxt)) = head.time_range() else {
                return Ok(false);
            };
            let start = mint.div_euclid(range) * range;
            if maxt - start < range + range / 2 {
                return Ok(false);
            }
            // From now on nothing older than the cut can enter the head.
            let end = start + range;
            head.min_valid_time = head.min_valid_time.max(end);
            (start, end)
        };
        let started = Instant::now();
        let mut series = self.head.read().select_all(start, end - 1);
        self.tombstones.apply(&mut series);
        let meta = block::write_block(
            &self.dir,
            &series,
            start,
            end,
            BlockCompaction {
                level: 1,
                sources: vec![],
            },
        )?;
        let opened = Arc::new(Block::open(&self.dir.join(&meta.ulid))?);
        {
            let mut blocks = self.blocks.write();
            blocks.push(opened);
            blocks.sort_by_key(|b| b.meta.min_time);
        }
        self.head.write().truncate(end);
        self.checkpoint()?;
        tracing::info!(
            block = %meta.ulid,
            min_time = start,
            max_time = end,
            series = meta.stats.num_series,
            samples = meta.stats.num_samples,
            duration = ?started.elapsed(),
            "Cut head into block"
        );
        self.metrics
            .blocks_cut
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// Replaces the WAL up to now with the head's current state.
    /// Segments a remote-write queue still needs are kept (see [`WalHolds`]);
    /// the checkpoint then replaces fewer segments, or none.
    fn checkpoint(&self) -> Result<(), StorageError> {
        let closed = self.wal.lock().rotate()?;
        let wal_dir = self.dir.join("wal");
        let Some(upto) = checkpoint_upto(closed, self.wal_holds.lowest()) else {
            return Ok(());
        };
        if wal::newest_checkpoint(&wal_dir)?.is_some_and(|(n, _)| n >= upto) {
            return Ok(());
        }
        // Copied in slices so commits are not blocked for the whole write.
        const CHUNK: usize = 10_000;
        let mut records = Vec::new();
        let mut from = 0;
        loop {
            let head = self.head.read();
            let chunk = head.series_range(from, from + CHUNK);
            if chunk.is_empty() {
                break;
            }
            let min_valid = head.min_valid_time;
            let live = || chunk.iter().filter(|s| s.alive);
            records.push(Record::Series(
                live().map(|s| (s.id, s.labels.clone())).collect(),
            ));
            let samples: Vec<(u64, crate::model::Sample)> = live()
                .flat_map(|s| {
                    s.samples
                        .range(min_valid, i64::MAX)
                        .into_iter()
                        .map(move |x| (s.id, x))
                })
                .collect();
            if !samples.is_empty() {
                records.push(Record::Samples(samples));
            }
            let histograms: Vec<(u64, crate::model::HistogramSample)> = live()
                .flat_map(|s| {
                    head::histograms_in(&s.histograms, min_valid, i64::MAX)
                        .into_iter()
                        .map(move |x| (s.id, x))
                })
                .collect();
            if !histograms.is_empty() {
                records.push(Record::Histograms(histograms));
            }
            from += CHUNK;
        }
        // Exemplars of series still in the head, after every series record
        // so replay knows their ids.
        let stored = self.exemplars.snapshot();
        if !stored.is_empty() {
            let head = self.head.read();
            let kept: Vec<(u64, exemplars::Exemplar)> = stored
                .into_iter()
                .filter_map(|(series, e)| {
                    let s = head.series(head.lookup(&series)?);
                    s.alive.then_some((s.id, e))
                })
                .collect();
            if !kept.is_empty() {
                records.push(Record::Exemplars(kept));
            }
        }
        wal::write_checkpoint(&wal_dir, upto, records)?;
        Ok(())
    }

    /// Deletes whole blocks past the retention time or size, oldest first.
    fn apply_retention(&self) -> Result<(), StorageError> {
        let blocks = self.blocks();
        let newest = blocks
            .iter()
            .map(|b| b.meta.max_time)
            .chain(self.head.read().time_range().map(|r| r.1))
            .max();
        let mut doomed: Vec<(Arc<Block>, &'static str)> = Vec::new();
        if let (Some(retention), Some(newest)) = (self.opts.retention_ms, newest) {
            for b in &blocks {
                if b.meta.max_time <= newest - retention {
                    doomed.push((b.clone(), "time"));
                }
            }
        }
        if let Some(limit) = self.opts.retention_bytes {
            let mut total: u64 = blocks.iter().map(|b| b.meta.stats.num_bytes).sum::<u64>()
                + wal::disk_size(&self.dir.join("wal"));
            for b in &blocks {
                if total <= limit {
                    break;
                }
                total = total.saturating_sub(b.meta.stats.num_bytes);
                if !doomed.iter().any(|(d, _)| Arc::ptr_eq(d, b)) {
                    doomed.push((b.clone(), "size"));
                }
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.blocks
            .write()
            .retain(|b| !doomed.iter().any(|(d, _)| Arc::ptr_eq(d, b)));
        for (b, reason) in doomed {
            remove_block_dir(b.dir())?;
            tracing::info!(block = %b.meta.ulid, reason, min_time = b.meta.min_time, max_time = b.meta.max_time, "Deleted block past retention");
            self.metrics
                .blocks_deleted_by_retention
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Removes samples under tombstones before data is written again.
    fn drop_deleted(&self, series: &mut Vec<SeriesSamples>) {
        self.tombstones.apply(series);
    }

    /// Swaps compacted blocks in: `new` replaces `old` for all later readers.
    fn replace_blocks(&self, old: &[Arc<Block>], new: Arc<Block>) -> Result<(), StorageError> {
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !old.iter().any(|o| Arc::ptr_eq(o, b)));
            blocks.push(new);
            blocks.sort_by_key(|b| b.meta.min_time);
        }
        for b in old {
            remove_block_dir(b.dir())?;
        }
        Ok(())
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

fn collect_infos(merged: std::collections::BTreeMap<Labels, (i64, i64)>) -> Vec<SeriesInfo> {
    merged
        .into_iter()
        .map(|(labels, (min_time, max_time))| SeriesInfo {
            labels,
            min_time,
            max_time,
        })
        .collect()
}

/// A matcher every series passes.
fn any_series() -> Result<Matcher, StorageError> {
    Matcher::new(crate::model::MatchOp::RegexMatch, "__name__", ".*")
        .map_err(|e| StorageError::Arrow(e.to_string()))
}

/// Opens every complete block in the data directory and removes leftovers
/// of interrupted writes (`*.tmp`).
fn load_blocks(dir: &Path) -> Result<Vec<Arc<Block>>, StorageError> {
    let io = |source| StorageError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut blocks = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() {
            continue;
        }
        if name.ends_with(".tmp") {
            tracing::warn!(path = %path.display(), "Removing an incomplete block left by an interrupted write");
            remove_block_dir(&path)?;
            continue;
        }
        if ulid::Ulid::from_string(&name).is_ok() && path.join(block::META_FILE).exists() {
            blocks.push(Arc::new(Block::open(&path)?));
        }
    }
    blocks.sort_by_key(|b| b.meta.min_time);
    Ok(blocks)
}

fn remove_block_dir(path: &Path) -> Result<(), StorageError> {
    std::fs::remove_dir_all(path).map_err(|source| StorageError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
