//! A bounded local disk cache of remote block bytes, in fixed 1 MiB chunks.
//! Parquet reads ask for a footer, page headers and a few pages; caching
//! aligned chunks instead of whole files means a query for a few series
//! fetches (and keeps) only the parts of a block it touched. The least
//! recently used chunks go first when the cache is over its size.
//!
//! The cache starts empty at every start-up: remote blocks are immutable,
//! so nothing is lost but warmth, and there is no index to get out of step
//! with the files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use parking_lot::Mutex;

pub const CHUNK_BYTES: u64 = 1 << 20;

#[derive(Default)]
pub struct CacheMetrics {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub bytes: AtomicU64,
}

pub struct ChunkCache {
    dir: PathBuf,
    capacity: u64,
    state: Mutex<State>,
    pub metrics: CacheMetrics,
}

#[derive(Default)]
struct State {
    /// Chunk key → (size, last use).
    entries: HashMap<String, (u64, u64)>,
    used: u64,
    clock: u64,
}

impl ChunkCache {
    /// A cache in `dir` (emptied now) holding at most `capacity` bytes.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<ChunkCache> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(dir)?;
        Ok(ChunkCache {
            dir: dir.to_owned(),
            capacity,
            state: Mutex::new(State::default()),
            metrics: CacheMetrics::default(),
        })
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The chunk `key`, from disk if cached, else from `fetch` (and kept).
    pub fn get_or_fetch<E>(
        &self,
        key: &str,
        fetch: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let cached = {
            let mut state = self.state.lock();
            state.clock += 1;
            let clock = state.clock;
            state.entries.get_mut(key).map(|e| e.1 = clock).is_some()
        };
        // A failed read: evicted by another reader since the lookup.
        if cached && let Ok(data) = std::fs::read(self.file(key)) {
            self.metrics.hits.fetch_add(1, Relaxed);
            return Ok(Bytes::from(data));
        }
        self.metrics.misses.fetch_add(1, Relaxed);
        let data = fetch()?;
        self.insert(key, &data);
        Ok(data)
    }

    fn insert(&self, key: &str, data: &Bytes) {
        let size = data.len() as u64;
        if size > self.capacity {
            return;
        }
        let path = self.file(key);
        let tmp = path.with_extension("tmp");
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, data))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(err) = written {
            // A cache that cannot write only costs speed.
            tracing::warn!(path = %path.display(), err = %err, "Cannot write to the block cache");
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let mut evict = Vec::new();
        {
            let mut state = self.state.lock();
            state.clock += 1;
            let clock = state.clock;
            if let Some(old) = state.entries.insert(key.to_owned(), (size, clock)) {
                state.used -= old.0;
            }
            state.used += size;
            while state.used > self.capacity {
                let Some(oldest) = state
                    .entries
                    .iter()
                    .filter(|(k, _)| k.as_str() != key)
                    .min_by_key(|(_, e)| e.1)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some((size, _)) = state.entries.remove(&oldest) {
                    state.used -= size;
                }
                evict.push(oldest);
            }
            self.metrics.bytes.store(state.used, Relaxed);
        }
        for key in evict {
            self.metrics.evictions.fetch_add(1, Relaxed);
            let _ = std::fs::remove_file(self.file(&key));
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.state.lock().used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_capacity_evicting_least_recently_used() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(&tmp.path().join("c"), 25).unwrap();
        let fetches = std::cell::Cell::new(0);
        let get = |key: &str| {
            cache
                .get_or_fetch::<()>(key, || {
                    fetches.set(fetches.get() + 1);
                    Ok(Bytes::from(vec![key.as_bytes()[0]; 10]))
                })
                .unwrap()
        };
        assert_eq!(get("a/1")[0], b'a');
        get("b/1");
        get("a/1"); // a is now more recent than b
        assert_eq!(fetches.get(), 2);
        get("c/1"); // over 25 bytes: b goes
        assert_eq!(cache.used(), 20);
        get("a/1");
        assert_eq!(fetches.get(), 3);
        get("b/1");
        assert_eq!(fetches.get(), 4);
        assert!(
            !tmp.path().join("c/c/1").exists(),
            "c was least recently used"
        );
    }
}
