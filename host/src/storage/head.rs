//! The head: recent samples in memory, compressed chunks per series, with
//! the postings index over their labels.

use std::collections::HashMap;

use crate::model::{HistogramSample, Labels, Matcher, Sample};

use super::index::Postings;

/// Hashing for maps keyed by values that are already good 64-bit hashes
/// (label hashes, series ids): pass them through instead of hashing again.
#[derive(Clone, Copy, Default)]
pub struct PassThrough;

#[derive(Default)]
pub struct PassThroughHasher(u64);

impl std::hash::Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are used; fold anything else in for safety.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl std::hash::BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;

    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher::default()
    }
}

/// Why a sample was not appended, worded as Prometheus words it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("out of order sample")]
    OutOfOrder,
    #[error("duplicate sample for timestamp")]
    DuplicateTimestamp,
    #[error("out of bounds")]
    OutOfBounds,
    #[error("too old sample")]
    TooOld,
}

#[derive(Default)]
pub struct MemSeries {
    pub id: u64,
    pub labels: Labels,
    pub samples: super::chunk::ChunkedSamples,
    /// Native histogram samples, sorted by time. Kept uncompressed: they
    /// are rare next to floats, and a chunk format for them can come later.
    pub histograms: Vec<HistogramSample>,
    /// Whether the WAL has this series' record yet.
    pub logged: bool,
    /// False for a freed slot, waiting to be reused by a new series.
    pub alive: bool,
    /// The commit (see [`Head::begin_batch`]) that last accepted a sample for
    /// this series, and that sample's position in the commit's list. Kept
    /// here rather than in a per-commit map so a commit does no hashing per
    /// sample.
    pub batch: u32,
    pub batch_pos: u32,
}

/// A series and its samples in a time range, as reads return them.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    pub id: u64,
    pub labels: Labels,
    pub samples: Vec<Sample>,
    /// Native histogram samples, sorted by time.
    pub histograms: Vec<HistogramSample>,
}

impl SeriesSamples {
    pub fn new(id: u64, labels: Labels, samples: Vec<Sample>) -> SeriesSamples {
        SeriesSamples {
            id,
            labels,
            samples,
            histograms: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.histograms.is_empty()
    }

    pub fn len(&self) -> usize {
        self.samples.len() + self.histograms.len()
    }
}

/// Histogram samples of `all` in `[mint, maxt]`.
pub fn histograms_in(all: &[HistogramSample], mint: i64, maxt: i64) -> Vec<HistogramSample> {
    let lo = all.partition_point(|h| h.t < mint);
    let hi = all.partition_point(|h| h.t <= maxt);
    all[lo..hi.max(lo)].to_vec()
}

/// What a sample does to its series if appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Newer than every sample of the series.
    Append,
    /// Older, but inside the out-of-order window.
    Insert,
    /// Same timestamp and bit-identical value: accepted, nothing changes.
    Duplicate,
}

#[derive(Default)]
pub struct Head {
    series: Vec<MemSeries>,
    by_id: HashMap<u64, u32, PassThrough>,
    /// Label hash → the series with that hash; a second series with the
    /// same hash (a collision) goes to `collided`.
    by_hash: HashMap<u64, u32, PassThrough>,
    collided: HashMap<u64, Vec<u32>, PassThrough>,
    postings: Postings,
    /// Samples older than this belong to persisted blocks.
    pub min_valid_time: i64,
    pub ooo_window_ms: i64,
    max_time: Option<i64>,
    min_time: Option<i64>,
    num_samples: u64,
    /// Series whose natural id was taken by another label set.
    pub id_collisions: u64,
    /// One shared allocation per distinct label name and value.
    symbols: std::collections::HashSet<std::sync::Arc<str>>,
    /// Slots of removed series, reused before the vector grows.
    free: Vec<u32>,
    live: usize,
    /// Number of the current commit, for `MemSeries::batch`.
    batch: u32,
}

impl Head {
    pub fn new(ooo_window_ms: i64) -> Head {
        Head {
            min_valid_time: i64::MIN,
            ooo_window_ms,
            ..Head::default()
        }
    }

    /// Starts a commit: returns its number, never 0, so `MemSeries::batch`
    /// equal to it means "has a sample in this commit".
    pub fn begin_batch(&mut self) -> u32 {
        self.batch = self.batch.wrapping_add(1);
        if self.batch == 0 {
            // Wrapped: forget old numbers so none can match a new commit.
            for s in &mut self.series {
                s.batch = 0;
            }
            self.batch = 1;
        }
        self.batch
    }

    pub fn lookup(&self, labels: &Labels) -> Option<u32> {
        let hash = labels.stable_hash();
        let first = *self.by_hash.get(&hash)?;
        if self.series[first as usize].labels == *labels {
            return Some(first);
        }
        self.collided
            .get(&hash)?
            .iter()
            .copied()
            .find(|&i| self.series[i as usize].labels == *labels)
    }

    /// [`Head::get_or_create`] with a slot remembered from an earlier
    /// commit: if that slot still holds this very label set (same
    /// allocation), the hash-table probe is skipped.
    pub fn resolve(&mut self, labels: &Labels, hint: Option<u32>) -> u32 {
        if let Some(idx) = hint
            && self
                .series
                .get(idx as usize)
                .is_some_and(|s| s.labels.same_allocation(labels))
        {
            return idx;
        }
        self.get_or_create(labels)
    }

    /// Finds or creates the series. Its id is the label hash unless another
    /// label set already has that id (a hash collision); then the next free
    /// id is taken, so two series are never merged.
    pub fn get_or_create(&mut self, labels: &Labels) -> u32 {
        if let Some(idx) = self.lookup(labels) {
            return idx;
        }
        let hash = labels.stable_hash();
        let mut id = hash;
        while self.by_id.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        if id != hash {
            self.id_collisions += 1;
        }
        self.create(id, hash, labels.clone(), false)
    }

    /// Re-creates a series from the WAL with the id it was logged under.
    pub fn restore_series(&mut self, id: u64, labels: Labels) -> Result<u32, String> {
        if let Some(&idx) = self.by_id.get(&id) {
            let existing = &self.series[idx as usize].labels;
            return if *existing == labels {
                Ok(idx)
            } else {
                Err(format!(
                    "series id {id:#x} logged for both {existing} and {labels}"
                ))
            };
        }
        let hash = labels.stable_hash();
        Ok(self.create(id, hash, labels, true))
    }

    fn create(&mut self, id: u64, hash: u64, labels: Labels, logged: bool) -> u32 {
        let symbols = &mut self.symbols;
        let labels = labels.interned(|s| match symbols.get(s) {
            Some(shared) => shared.clone(),
            None => {
                symbols.insert(s.clone());
                s.clone()
            }
        });
        let series = MemSeries {
            id,
            labels,
            samples: super::chunk::ChunkedSamples::default(),
            histograms: Vec::new(),
            logged,
            alive: true,
            batch: 0,
            batch_pos: 0,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.series[idx as usize] = series;
                idx
            }
            None => {
                self.series.push(series);
                (self.series.len() - 1) as u32
            }
        };
        let labels = &self.series[idx as usize].labels;
        self.postings.add(idx, labels);
        self.by_id.insert(id, idx);
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(idx);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.entry(hash).or_default().push(idx)
            }
        }
        self.live += 1;
        idx
    }

    /// Forgets a series that has no samples left, freeing its slot.
    fn remove(&mut self, idx: u32) {
        let s = std::mem::take(&mut self.series[idx as usize]);
        self.postings.remove(idx, &s.labels);
        self.by_id.remove(&s.id);
        let hash = s.labels.stable_hash();
        if self.by_hash.get(&hash) == Some(&idx) {
            // Promote a collided series, if any, to the main map.
            match self.collided.get_mut(&hash).and_then(|v| v.pop()) {
                Some(next) => {
                    self.by_hash.insert(hash, next);
                }
                None => {
                    self.by_hash.remove(&hash);
                }
            }
        } else if let Some(v) = self.collided.get_mut(&hash) {
            v.retain(|&i| i != idx);
        }
        if self.collided.get(&hash).is_some_and(Vec::is_empty) {
            self.collided.remove(&hash);
        }
        self.free.push(idx);
        self.live -= 1;
    }

    pub fn series(&self, idx: u32) -> &MemSeries {
        &self.series[idx as usize]
    }

    pub fn series_mut(&mut self, idx: u32) -> &mut MemSeries {
        &mut self.series[idx as usize]
    }

    pub fn index_of(&self, id: u64) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    /// Where `s` would go in series `idx`, given the series' newest sample
    /// `last` (which may include samples pending in the same commit).
    pub fn place(
        &self,
        idx: u32,
        s: Sample,
        pending_last: Option<Sample>,
    ) -> Result<Placement, AppendError> {
        if s.t < self.min_valid_time {
            return Err(AppendError::OutOfBounds);
        }
        let samples = &self.series[idx as usize].samples;
        let last = match (samples.last(), pending_last) {
            (Some(a), Some(b)) => Some(if b.t >= a.t { b } else { a }),
            (a, b) => a.or(b),
        };
        let Some(last) = last else {
            return Ok(Placement::Append);
        };
        if s.t > last.t {
            return Ok(Placement::Append);
        }
        if s.t == last.t {
            return if s.v.to_bits() == last.v.to_bits() {
                Ok(Placement::Duplicate)
            } else {
                Err(AppendError::DuplicateTimestamp)
            };
        }
        if self.ooo_window_ms <= 0 {
            // A bit-identical sample already stored (a retried request) is a
            // harmless duplicate rather than an error.
            return match samples.at(s.t) {
                Some(x) if x.v.to_bits() == s.v.to_bits() => Ok(Placement::Duplicate),
                _ => Err(AppendError::OutOfOrder),
            };
        }
        let head_max = self.max_time.unwrap_or(last.t).max(last.t);
        if s.t < head_max.saturating_sub(self.ooo_window_ms) {
            return Err(AppendError::TooOld);
        }
        match samples.at(s.t) {
            Some(x) if x.v.to_bits() == s.v.to_bits() => Ok(Placement::Duplicate),
            Some(_) => Err(AppendError::DuplicateTimestamp),
            None => Ok(Placement::Insert),
        }
    }

    /// Where histogram sample `s` goes in series `idx`: the float rules
    /// (bounds, duplicate timestamps, the out-of-order window) applied to
    /// the series' histogram samples.
    pub fn place_histogram(
        &self,
        idx: u32,
        s: &HistogramSample,
        pending_last: Option<i64>,
    ) -> Result<Placement, AppendError> {
        if s.t < self.min_valid_time {
            return Err(AppendError::OutOfBounds);
        }
        let hs = &self.series[idx as usize].histograms;
        let last = hs.last().map(|h| h.t).max(pending_last);
        match last {
            None => return Ok(Placement::Append),
            Some(l) if s.t > l => return Ok(Placement::Append),
            Some(l) => {
                let head_max = self.max_time.unwrap_or(l).max(l);
                let existing = hs.binary_search_by_key(&s.t, |h| h.t).ok().map(|i| &hs[i]);
                match existing {
                    Some(x) if x.h == s.h => return Ok(Placement::Duplicate),
                    Some(_) => return Err(AppendError::DuplicateTimestamp),
                    None if Some(s.t) == pending_last => {
                        return Err(AppendError::DuplicateTimestamp);
                    }
                    None if self.ooo_window_ms <= 0 => return Err(AppendError::OutOfOrder),
                    None if s.t < head_max.saturating_sub(self.ooo_window_ms) => {
                        return Err(AppendError::TooOld);
                    }
                    None => {}
                }
            }
        }
        Ok(Placement::Insert)
    }

    /// Applies a histogram sample that [`Head::place_histogram`] accepted.
    pub fn insert_histogram(&mut self, idx: u32, s: HistogramSample) {
        let hs = &mut self.series[idx as usize].histograms;
        let t = s.t;
        match hs.binary_search_by_key(&t, |h| h.t) {
            Ok(_) => return,
            Err(i) if i == hs.len() => hs.push(s),
            Err(i) => hs.insert(i, s),
        }
        self.num_samples += 1;
        self.max_time = Some(self.max_time.map_or(t, |m| m.max(t)));
        self.min_time = Some(self.min_time.map_or(t, |m| m.min(t)));
    }

    /// Applies a sample that [`Head::place`] accepted.
    pub fn insert(&mut self, idx: u32, s: Sample) {
        if !self.series[idx as usize].samples.insert(s) {
            return;
        }
        self.num_samples += 1;
        self.max_time = Some(self.max_time.map_or(s.t, |m| m.max(s.t)));
        self.min_time = Some(self.min_time.map_or(s.t, |m| m.min(s.t)));
    }

    /// Series matching all matchers with their samples in `[mint, maxt]`;
    /// series without samples in range are left out.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let mint = mint.max(self.min_valid_time);
        let mut out: Vec<SeriesSamples> = self
            .postings
            .select(matchers)
            .iter()
            .filter_map(|idx| {
                let s = &self.series[idx as usize];
                let samples = s.samples.range(mint, maxt);
                let histograms = histograms_in(&s.histograms, mint, maxt);
                (!samples.is_empty() || !histograms.is_empty()).then(|| SeriesSamples {
                    id: s.id,
                    labels: s.labels.clone(),
                    samples,
                    histograms,
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Drops samples before `cut` (they are in a block now) and forgets series
    /// left without samples. Runs under the head's write lock, so it only
    /// drops whole chunks: older samples in a chunk spanning the cut stay in
    /// memory until the chunk goes, hidden from reads by `min_valid_time`.
    pub fn truncate(&mut self, cut: i64) {
        self.min_valid_time = self.min_valid_time.max(cut);
        let (mut min, mut max, mut count) = (None::<i64>, None::<i64>, 0u64);
        let mut empty = Vec::new();
        for (idx, s) in self.series.iter_mut().enumerate().filter(|(_, s)| s.alive) {
            s.samples.drop_chunks_before(cut);
            let keep = s.histograms.partition_point(|h| h.t < cut);
            s.histograms.drain(..keep);
            let first = s
                .samples
                .first_t()
                .into_iter()
                .chain(s.histograms.first().map(|h| h.t))
                .min();
            let last = s
                .samples
                .last()
                .map(|l| l.t)
                .into_iter()
                .chain(s.histograms.last().map(|h| h.t))
                .max();
            match (first, last) {
                (Some(first), Some(last)) => {
                    min = Some(min.map_or(first, |m| m.min(first)));
                    max = Some(max.map_or(last, |m| m.max(last)));
                    count += (s.samples.len() + s.histograms.len()) as u64;
                }
                _ => empty.push(idx as u32),
            }
        }
        for idx in empty {
            self.remove(idx);
        }
        self.min_time = min.map(|m| m.max(cut));
        self.max_time = max;
        self.num_samples = count;
    }

    /// Every series with its samples, for checkpoints; `from..to` indexes.
    /// Slots `from..to` (freed ones included: check `alive`).
    pub fn series_range(&self, from: usize, to: usize) -> &[MemSeries] {
        &self.series[from.min(self.series.len())..to.min(self.series.len())]
    }

    /// Every series' samples in `[mint, maxt]`.
    /// Unlike [`Head::select`], not clamped to `min_valid_time`: a cut raises
    /// that first and then copies out the range it is persisting.
    pub fn select_all(&self, mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        self.series
            .iter()
            .filter(|s| s.alive)
            .filter_map(|s| {
                let samples = s.samples.range(mint, maxt);
                let histograms = histograms_in(&s.histograms, mint, maxt);
                (!samples.is_empty() || !histograms.is_empty()).then(|| SeriesSamples {
                    id: s.id,
                    labels: s.labels.clone(),
                    samples,
                    histograms,
                })
            })
            .collect()
    }

    /// Series matching all matchers with their first and last sample time
    /// (samples before `min_valid_time` are in blocks and not counted).
    /// Reads the index and chunk headers only, no samples.
    pub fn series_info(&self, matchers: &[Matcher]) -> Vec<super::SeriesInfo> {
        self.postings
            .select(matchers)
            .iter()
            .filter_map(|idx| {
                let s = &self.series[idx as usize];
                let first = s
                    .samples
                    .first_t()
                    .into_iter()
                    .chain(s.histograms.first().map(|h| h.t))
                    .min()?
                    .max(self.min_valid_time);
                let last = s
                    .samples
                    .last()
                    .map(|l| l.t)
                    .into_iter()
                    .chain(s.histograms.last().map(|h| h.t))
                    .max()?;
                (first <= last).then(|| super::SeriesInfo {
                    labels: s.labels.clone(),
                    min_time: first,
                    max_time: last,
                })
            })
            .collect()
    }

    pub fn postings(&self) -> &Postings {
        &self.postings
    }

    pub fn num_series(&self) -> usize {
        self.live
    }

    pub fn num_samples(&self) -> u64 {
        self.num_samples
    }

    pub fn time_range(&self) -> Option<(i64, i64)> {
        Some((self.min_time?, self.max_time?))
    }
}
