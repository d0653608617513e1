//! The shipper: one round lists the bucket, uploads local blocks not yet
//! uploaded, deletes from the bucket what a newly uploaded compacted block
//! replaces, and drops uploaded blocks locally past the local retention.
//! `<data>/shipper.json` remembers which blocks went up, so a restart does
//! not upload them again; a block whose upload was interrupted is not in it
//! and is uploaded again from the start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};

use super::ObjectStorage;
use super::client::BucketError;
use crate::storage::Storage;
use crate::storage::block::{HISTOGRAMS_FILE, SAMPLES_FILE, SERIES_FILE, ShippedFile, ShippedMeta};

pub const STATE_FILE: &str = "shipper.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct ShipperState {
    version: u32,
    uploaded: BTreeSet<String>,
}

fn load_state(path: &Path) -> ShipperState {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            // Losing the record only means uploading some blocks again.
            tracing::warn!(path = %path.display(), err = %err, "Ignoring an unreadable shipper state file");
            ShipperState::default()
        }),
        Err(_) => ShipperState::default(),
    }
}

fn save_state(path: &Path, state: &ShipperState) -> Result<(), BucketError> {
    let io = |e: std::io::Error| BucketError::Setup(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec(state).map_err(|e| BucketError::Setup(e.to_string()))?;
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// What one round did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ShipReport {
    pub uploaded: usize,
    pub failed: usize,
    pub sources_deleted: usize,
    pub local_removed: usize,
}

/// One shipper round. An error means the bucket could not be listed; the
/// next round tries again, and local data is never removed unless its
/// upload was verified and the bucket lists it.
pub fn ship_once(storage: &Storage, os: &ObjectStorage) -> Result<ShipReport, BucketError> {
    os.sync_catalog()?;
    let mut report = ShipReport::default();
    let state_path: PathBuf = storage.dir().join(STATE_FILE);
    let mut state = load_state(&state_path);
    let local = storage.blocks();
    let before = state.uploaded.len();
    state
        .uploaded
        .retain(|u| local.iter().any(|b| b.meta.ulid == *u));
    let mut dirty = before != state.uploaded.len();
    if os.settings.upload {
        for block in &local {
            if state.uploaded.contains(&block.meta.ulid) {
                continue;
            }
            let mut meta = block.meta.clone();
            let mut files = Vec::new();
            for name in [SAMPLES_FILE, SERIES_FILE] {
                let path = block.dir().join(name);
                match std::fs::metadata(&path) {
                    Ok(m) => files.push(ShippedFile {
                        rel_path: name.to_owned(),
                        size_bytes: m.len(),
                    }),
                    // Compacted away since the listing; nothing to ship.
                    Err(_) => continue,
                }
            }
            if files.len() < 2 {
                continue;
            }
            // Native histograms are uploaded too, so the bucket has the
            // whole block, though remote reads do not use them yet.
            let hist = block.dir().join(HISTOGRAMS_FILE);
            if let Ok(m) = std::fs::metadata(&hist) {
                files.push(ShippedFile {
                    rel_path: HISTOGRAMS_FILE.to_owned(),
                    size_bytes: m.len(),
                });
            }
            meta.shipped = Some(ShippedMeta {
                labels: os.settings.external_labels.clone(),
                files,
            });
            let started = std::time::Instant::now();
            match os.bucket.upload_block(block.dir(), &meta) {
                Ok(()) => {
                    tracing::info!(bucket = %os.bucket.name(), block = %meta.ulid, min_time = meta.min_time, max_time = meta.max_time, duration = ?started.elapsed(), "Uploaded block");
                    os.metrics.uploads.fetch_add(1, Relaxed);
                    report.uploaded += 1;
                    // Recorded at once: a crash must not forget a finished upload.
                    state.uploaded.insert(meta.ulid.clone());
                    save_state(&state_path, &state)?;
                    dirty = false;
                }
                Err(err) => {
                    tracing::warn!(bucket = %os.bucket.name(), block = %meta.ulid, err = %err, "Block upload failed; will retry");
                    os.metrics.upload_failures.fetch_add(1, Relaxed);
                    report.failed += 1;
                    // The bucket is likely down; the next round retries.
                    break;
                }
            }
        }
    }
    if dirty {
        save_state(&state_path, &state)?;
    }
    if report.uploaded > 0 {
        os.sync_catalog()?;
        // A compacted block replaces the blocks it was built from.
        for block in &local {
            if !state.uploaded.contains(&block.meta.ulid) {
                continue;
            }
            for old in os.superseded_by(block) {
                match os.bucket.delete_block(&old.meta.ulid) {
                    Ok(()) => {
                        tracing::info!(bucket = %os.bucket.name(), block = %old.meta.ulid, replaced_by = %block.meta.ulid, "Deleted a block from the bucket that a compacted block replaces");
                        os.forget(&old.meta.ulid);
                        os.metrics.sources_deleted.fetch_add(1, Relaxed);
                        report.sources_deleted += 1;
                    }
                    Err(err) => {
                        tracing::warn!(bucket = %os.bucket.name(), block = %old.meta.ulid, err = %err, "Cannot delete a replaced block from the bucket; will retry")
                    }
                }
            }
        }
    }
    if let Some(keep) = os.settings.local_retention_ms {
        let newest = local
            .iter()
            .map(|b| b.meta.max_time)
            .chain(storage.head_stats().max_time)
            .max();
        if let Some(newest) = newest {
            let doomed: Vec<String> = local
                .iter()
                .filter(|b| b.meta.max_time <= newest - keep)
                .filter(|b| state.uploaded.contains(&b.meta.ulid) && os.has_block(&b.meta.ulid))
                // Remote reads do not serve native histograms yet: a block
                // with them stays local so queries keep seeing them.
                .filter(|b| !b.dir().join(HISTOGRAMS_FILE).exists())
                .map(|b| b.meta.ulid.clone())
                .collect();
            if !doomed.is_empty() {
                report.local_removed = storage
                    .remove_local_blocks(&doomed)
                    .map_err(|e| BucketError::Setup(format!("removing local blocks: {e}")))?;
                os.metrics
                    .local_blocks_removed
                    .fetch_add(report.local_removed as u64, Relaxed);
            }
        }
    }
    Ok(report)
}
