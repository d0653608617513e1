//! Blocks in object storage (`storage.object_store`): this server's blocks
//! are uploaded by the shipper, and the blocks in the bucket (this server's
//! and, in a global view, every other uploader's) are read by queries next
//! to the local blocks and the head.
//!
//! - `client.rs`: the bucket (layout, verified uploads, listing, ranged reads)
//! - `cache.rs`: the bounded local chunk cache for remote reads
//! - `remote_file.rs`: a remote Parquet file for the Parquet reader
//! - `shipper.rs`: uploads, source clean-up, local retention
//!
//! Which remote blocks a query reads is decided here
//! ([`ObjectStorage::blocks_for_query`]).

pub mod cache;
pub mod client;
pub mod remote_file;
pub mod shipper;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use self::cache::ChunkCache;
use self::client::{Bucket, BucketError};
use super::block::Block;
use crate::config::object_store::ObjectStoreConfig;
use crate::model::Labels;

/// The cache directory inside the data directory.
pub const CACHE_DIR: &str = "bucket-cache";

/// Settings fixed at start-up (a reload does not change the bucket).
#[derive(Clone, Debug)]
pub struct BucketSettings {
    pub upload: bool,
    pub local_retention_ms: Option<i64>,
    pub global_view: bool,
    pub replica_labels: Vec<String>,
    /// This server's `global.external_labels`: the labels its uploads carry.
    pub external_labels: BTreeMap<String, String>,
    pub sync_interval: Duration,
}

#[derive(Default)]
pub struct BucketMetrics {
    pub uploads: AtomicU64,
    pub upload_failures: AtomicU64,
    pub syncs: AtomicU64,
    pub sync_failures: AtomicU64,
    pub local_blocks_removed: AtomicU64,
    pub sources_deleted: AtomicU64,
    /// Remote block reads a query skipped because the bucket failed.
    pub query_failures: AtomicU64,
    pub last_sync_success_seconds: AtomicI64,
}

pub struct ObjectStorage {
    pub bucket: Arc<Bucket>,
    pub cache: Arc<ChunkCache>,
    pub settings: BucketSettings,
    own_labels: Labels,
    /// Complete blocks in the bucket, opened (series index in memory).
    remote: RwLock<Vec<Arc<Block>>>,
    /// Blocks that failed to open, with the error, so each is logged once.
    broken: Mutex<HashSet<String>>,
    pub metrics: BucketMetrics,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// The level-1 blocks a block holds the data of: its sources, or itself.
fn source_set(b: &Block) -> BTreeSet<&str> {
    if b.meta.compaction.sources.is_empty() {
        BTreeSet::from([b.meta.ulid.as_str()])
    } else {
        b.meta
            .compaction
            .sources
            .iter()
            .map(String::as_str)
            .collect()
    }
}

/// True when `b`'s data is all in `other` too (and `other` holds more, or
/// `or_equal`).
fn covered_by(b: &Block, other: &Block, or_equal: bool) -> bool {
    let (mine, theirs) = (source_set(b), source_set(other));
    mine.is_subset(&theirs) && (or_equal || mine.len() < theirs.len())
}

impl ObjectStorage {
    pub fn open(
        cfg: &ObjectStoreConfig,
        external_labels: BTreeMap<String, String>,
        data_dir: &Path,
    ) -> Result<ObjectStorage, BucketError> {
        let bucket = Arc::new(Bucket::new(cfg)?);
        let cache_dir = data_dir.join(CACHE_DIR);
        let cache = ChunkCache::open(&cache_dir, cfg.cache_size_bytes)
            .map_err(|e| BucketError::Setup(format!("block cache {}: {e}", cache_dir.display())))?;
        let own_labels = Labels::from_pairs(external_labels.iter())
            .map_err(|e| BucketError::Setup(format!("external labels: {e}")))?;
        Ok(ObjectStorage {
            bucket,
            cache: Arc::new(cache),
            settings: BucketSettings {
                upload: cfg.upload,
                local_retention_ms: cfg.local_retention.map(|d| d.as_millis() as i64),
                global_view: cfg.global_view,
                replica_labels: cfg.replica_labels.clone(),
                external_labels,
                sync_interval: cfg.sync_interval.as_duration(),
            },
            own_labels,
            remote: RwLock::new(Vec::new()),
            broken: Mutex::new(HashSet::new()),
            metrics: BucketMetrics::default(),
        })
    }

    /// This server's external labels, as a label set.
    pub fn own_labels(&self) -> &Labels {
        &self.own_labels
    }

    fn is_own(&self, b: &Block) -> bool {
        b.external_labels == self.own_labels
    }

    /// Lists the bucket and opens blocks that appeared, forgets those that
    /// went. On failure the last known list stays in use.
    pub fn sync_catalog(&self) -> Result<(), BucketError> {
        let result = self.sync_catalog_inner();
        self.metrics.syncs.fetch_add(1, Relaxed);
        match &result {
            Ok(()) => self
                .metrics
                .last_sync_success_seconds
                .store(chrono::Utc::now().timestamp(), Relaxed),
            Err(_) => {
                self.metrics.sync_failures.fetch_add(1, Relaxed);
            }
        }
        result
    }

    fn sync_catalog_inner(&self) -> Result<(), BucketError> {
        let listed = self.bucket.list_blocks()?;
        let complete: HashSet<&str> = listed
            .iter()
            .filter(|b| b.complete)
            .map(|b| b.ulid.as_str())
            .collect();
        let known: HashSet<String> = self
            .remote
            .read()
            .iter()
            .map(|b| b.meta.ulid.clone())
            .collect();
        let mut opened = Vec::new();
        for ulid in complete.iter().filter(|u| !known.contains(**u)) {
            let meta = match self.bucket.get_meta(ulid) {
                Ok(m) => m,
                // Deleted between listing and reading: gone, not broken.
                Err(BucketError::Store { source, .. })
                    if matches!(*source, object_store::Error::NotFound { .. }) =>
                {
                    continue;
                }
                Err(e @ BucketError::Invalid { .. }) => {
                    self.note_broken(ulid, &e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match Block::open_remote(&self.bucket, &self.cache, meta) {
                Ok(b) => opened.push(Arc::new(b)),
                Err(e @ BucketError::Invalid { .. }) => self.note_broken(ulid, &e),
                Err(e) => return Err(e),
            }
        }
        let mut remote = self.remote.write();
        let before = remote.len();
        remote.retain(|b| complete.contains(b.meta.ulid.as_str()));
        let gone = before - remote.len();
        let added = opened.len();
        remote.extend(opened);
        remote.sort_by_key(|b| b.meta.min_time);
        if added > 0 || gone > 0 {
            tracing::info!(bucket = %self.bucket.name(), added, gone, blocks = remote.len(), "Synced the block list of the bucket");
        }
        Ok(())
    }

    fn note_broken(&self, ulid: &str, err: &BucketError) {
        if self.broken.lock().insert(ulid.to_owned()) {
            tracing::warn!(bucket = %self.bucket.name(), block = ulid, err = %err, "Skipping a block in the bucket that cannot be read");
        }
    }

    /// Every complete block in the bucket, as last listed.
    pub fn remote_blocks(&self) -> Vec<Arc<Block>> {
        self.remote.read().clone()
    }

    /// Whether the bucket held `ulid` at the last listing.
    pub fn has_block(&self, ulid: &str) -> bool {
        self.remote.read().iter().any(|b| b.meta.ulid == ulid)
    }

    /// The remote blocks a read over `[mint, maxt]` needs besides `local`:
    /// this server's uploads whose data is not in a local block any more,
    /// and in a global view every other uploader's blocks; a block whose
    /// data a compacted block of the same uploader also holds is left out.
    pub fn blocks_for_query(&self, local: &[Arc<Block>], mint: i64, maxt: i64) -> Vec<Arc<Block>> {
        let remote = self.remote.read();
        remote
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .filter(|b| self.settings.global_view || self.is_own(b))
            .filter(|b| !(self.is_own(b) && local.iter().any(|l| covered_by(b, l, true))))
            .filter(|b| {
                !remote.iter().any(|o| {
                    !Arc::ptr_eq(o, b)
                        && o.external_labels == b.external_labels
                        && covered_by(b, o, false)
                })
            })
            .cloned()
            .collect()
    }

    /// Own blocks in the bucket whose data `block` holds in full (to delete
    /// once `block` is uploaded).
    pub fn superseded_by(&self, block: &Block) -> Vec<Arc<Block>> {
        self.remote
            .read()
            .iter()
            .filter(|b| {
                b.meta.ulid != block.meta.ulid && self.is_own(b) && covered_by(b, block, false)
            })
            .cloned()
            .collect()
    }

    /// Names of labels a global view adds to series: every uploader's
    /// external labels and this server's, plus the replica labels.
    pub fn added_label_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.settings.external_labels.keys().cloned().collect();
        names.extend(self.settings.replica_labels.iter().cloned());
        for b in self.remote.read().iter() {
            names.extend(b.external_labels.iter().map(|l| l.name.to_string()));
        }
        names
    }

    /// Forgets a block deleted from the bucket by this server.
    pub fn forget(&self, ulid: &str) {
        self.remote.write().retain(|b| b.meta.ulid != ulid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Matcher, Sample};
    use crate::storage::block::{BlockCompaction, write_block};
    use crate::storage::{SeriesSamples, Storage, StorageOptions};

    fn data(from: i64, to: i64) -> Vec<SeriesSamples> {
        (0..3)
            .map(|i| {
                let labels =
                    Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]).unwrap();
                SeriesSamples {
                    id: labels.stable_hash(),
                    labels,
                    samples: (from..to)
                        .step_by(1000)
                        .map(|t| Sample { t, v: t as f64 })
                        .collect(),
                    histograms: Vec::new(),
                }
            })
            .collect()
    }

    fn config(bucket: &Path, extra: &str) -> ObjectStoreConfig {
        serde_yaml::from_str(&format!(
            "type: filesystem\ndirectory: {}\n{extra}",
            bucket.display()
        ))
        .unwrap()
    }

    fn count(storage: &Storage) -> usize {
        storage
            .select(&[Matcher::eq("__name__", "m")], i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|s| s.samples.len())
            .sum()
    }

    #[test]
    fn ship_read_back_and_replace_by_compacted_block() {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = tmp.path().join("bucket");
        let dir = tmp.path().join("a");
        std::fs::create_dir_all(&dir).unwrap();
        let level1 = BlockCompaction {
            level: 1,
            sources: vec![],
        };
        let b1 = write_block(&dir, &data(0, 100_000), 0, 100_000, level1.clone()).unwrap();
        let b2 = write_block(&dir, &data(100_000, 200_000), 100_000, 200_000, level1).unwrap();
        let (storage, _) = Storage::open(&dir, StorageOptions::default(), |_| {}).unwrap();
        let os = Arc::new(
            ObjectStorage::open(
                &config(&bucket, "local_retention: 0s\n"),
                BTreeMap::new(),
                &dir,
            )
            .unwrap(),
        );
        storage.attach_bucket(os.clone());
        let report = shipper::ship_once(&storage, &os).unwrap();
        assert_eq!(
            (report.uploaded, report.local_removed),
            (2, 2),
            "{report:?}"
        );
        assert!(storage.blocks().is_empty());
        assert_eq!(os.remote_blocks().len(), 2);
        // Everything now comes from the bucket, pruned reads included.
        assert_eq!(count(&storage), 600);
        let one = storage
            .select(&[Matcher::eq("i", "1")], 150_000, 160_000)
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].samples.len(), 11);

        // Files without meta.json are not a block.
        let stray = bucket.join("01ARZ3NDEKTSV4RRFFQ69G5FAV");
        std::fs::create_dir_all(&stray).unwrap();
        std::fs::write(stray.join("samples.parquet"), b"partial").unwrap();
        os.sync_catalog().unwrap();
        assert_eq!(os.remote_blocks().len(), 2);

        // A compacted block of both, uploaded from elsewhere by the same
        // server identity, replaces them in the bucket.
        let dir2 = tmp.path().join("b");
        std::fs::create_dir_all(&dir2).unwrap();
        write_block(
            &dir2,
            &data(0, 200_000),
            0,
            200_000,
            BlockCompaction {
                level: 2,
                sources: vec![b1.ulid.clone(), b2.ulid.clone()],
            },
        )
        .unwrap();
        let (storage2, _) = Storage::open(&dir2, StorageOptions::default(), |_| {}).unwrap();
        let os2 = ObjectStorage::open(&config(&bucket, ""), BTreeMap::new(), &dir2).unwrap();
        // Its local compacted block covers both remote ones: reads skip them.
        os2.sync_catalog().unwrap();
        assert_eq!(os2.remote_blocks().len(), 2);
        assert!(
            os2.blocks_for_query(&storage2.blocks(), i64::MIN, i64::MAX)
                .is_empty()
        );
        let report = shipper::ship_once(&storage2, &os2).unwrap();
        assert_eq!(
            (report.uploaded, report.sources_deleted),
            (1, 2),
            "{report:?}"
        );
        assert!(!bucket.join(&b1.ulid).join("meta.json").exists());
        os.sync_catalog().unwrap();
        assert_eq!(os.remote_blocks().len(), 1);
        assert_eq!(count(&storage), 600);
    }
}
