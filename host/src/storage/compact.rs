//! Merging: series from several sources into one sorted answer (reads), and
//! adjacent blocks into larger ones (compaction).
//!
//! Compaction follows Prometheus's shape: block ranges grow by a factor of
//! three (2h → 6h → 18h → 54h …) up to the maximum block range, and a window
//! is compacted only once the data has moved past it, so a compacted block is
//! never rewritten for late data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::block::{self, Block, BlockCompaction};
use super::head::SeriesSamples;
use super::{Storage, StorageError};
use crate::model::Labels;

/// Merges per-source answers into one list sorted by labels; samples of the
/// same series are merged by time, keeping the first source's sample when two
/// share a timestamp.
pub fn merge_series(parts: Vec<Vec<SeriesSamples>>) -> Vec<SeriesSamples> {
    if parts.iter().filter(|p| !p.is_empty()).count() <= 1 {
        return parts
            .into_iter()
            .find(|p| !p.is_empty())
            .unwrap_or_default();
    }
    let mut by_labels: BTreeMap<Labels, SeriesSamples> = BTreeMap::new();
    for part in parts {
        for s in part {
            match by_labels.get_mut(&s.labels) {
                None => {
                    by_labels.insert(s.labels.clone(), s);
                }
                Some(existing) => {
                    let (a, b) = (&existing.samples, &s.samples);
                    let mut merged = Vec::with_capacity(a.len() + b.len());
                    let (mut i, mut j) = (0, 0);
                    while i < a.len() && j < b.len() {
                        if a[i].t < b[j].t {
                            merged.push(a[i]);
                            i += 1;
                        } else if a[i].t > b[j].t {
                            merged.push(b[j]);
                            j += 1;
                        } else {
                            merged.push(a[i]);
                            i += 1;
                            j += 1;
                        }
                    }
                    merged.extend_from_slice(&a[i..]);
                    merged.extend_from_slice(&b[j..]);
                    existing.samples = merged;
                    if !s.histograms.is_empty() {
                        let mut hs = std::mem::take(&mut existing.histograms);
                        hs.extend(s.histograms);
                        // Stable: the first source wins on equal timestamps.
                        hs.sort_by_key(|h| h.t);
                        hs.dedup_by_key(|h| h.t);
                        existing.histograms = hs;
                    }
                }
            }
        }
    }
    by_labels.into_values().collect()
}

/// Compaction windows, smallest first: 3×, 9×, 27× … the block range.
fn windows(block_range: i64, max: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut w = block_range.saturating_mul(3);
    while w <= max {
        out.push(w);
        w = w.saturating_mul(3);
    }
    out
}

/// Runs compaction passes until nothing is left to merge.
pub fn compact(storage: &Storage) -> Result<(), StorageError> {
    let opts = storage.options();
    for window in windows(opts.block_range_ms, opts.max_block_range_ms) {
        loop {
            let blocks = storage.blocks();
            let Some(newest) = blocks.iter().map(|b| b.meta.max_time).max() else {
                return Ok(());
            };
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in &blocks {
                let w = b.meta.min_time.div_euclid(window);
                // Only blocks that fit entirely inside the window.
                if b.meta.max_time <= (w + 1) * window {
                    groups.entry(w).or_default().push(b.clone());
                }
            }
            let candidate = groups
                .into_iter()
                .find(|(w, group)| group.len() >= 2 && (w + 1) * window <= newest);
            let Some((w, group)) = candidate else { break };
            merge_blocks(storage, &group, w * window, (w + 1) * window)?;
        }
    }
    Ok(())
}

fn merge_blocks(
    storage: &Storage,
    group: &[Arc<Block>],
    window_start: i64,
    window_end: i64,
) -> Result<(), StorageError> {
    let started = Instant::now();
    let mut parts = Vec::with_capacity(group.len());
    for b in group {
        parts.push(b.read_all()?);
    }
    let mut merged = merge_series(parts);
    storage.drop_deleted(&mut merged);
    let min_time = group
        .iter()
        .map(|b| b.meta.min_time)
        .min()
        .unwrap_or(window_start);
    let max_time = group
        .iter()
        .map(|b| b.meta.max_time)
        .max()
        .unwrap_or(window_end);
    let level = group
        .iter()
        .map(|b| b.meta.compaction.level)
        .max()
        .unwrap_or(1)
        + 1;
    let mut sources: Vec<String> = group
        .iter()
        .flat_map(|b| {
            if b.meta.compaction.sources.is_empty() {
                vec![b.meta.ulid.clone()]
            } else {
                b.meta.compaction.sources.clone()
            }
        })
        .collect();
    sources.sort();
    let meta = block::write_block(
        storage.dir(),
        &merged,
        min_time,
        max_time,
        BlockCompaction { level, sources },
    )?;
    let new = Arc::new(Block::open(&storage.dir().join(&meta.ulid))?);
    storage.replace_blocks(group, new)?;
    storage
        .metrics
        .compactions
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        block = %meta.ulid,
        merged = group.len(),
        level,
        min_time,
        max_time,
        series = meta.stats.num_series,
        samples = meta.stats.num_samples,
        duration = ?started.elapsed(),
        "Compacted blocks"
    );
    Ok(())
}
