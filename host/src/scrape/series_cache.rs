//! A scrape loop's memory of the series its target exposes, keyed by the
//! raw series text (`name{labels}` as written in the exposition), so a
//! series already seen costs no parsing, relabeling or allocation.
//!
//! Exporters write their series in the same order scrape after scrape, so
//! the cache remembers the order of the last successful scrape and first
//! compares the series at the same position. Keys live back to back in one
//! arena and entries in one vector, both in the order series first
//! appeared: a scrape then walks memory mostly sequentially instead of
//! probing a hash table at random, which at 1,000 targets × 1,000 series
//! was the largest single cost of scraping. The hash table is only the
//! fallback for series that moved, appeared or repeat.

use hashbrown::HashTable;

use crate::model::Labels;

/// One series as this target exposes it.
pub(super) struct CacheEntry {
    key_start: usize,
    key_len: usize,
    key_hash: u64,
    /// Whether the slot holds a series (freed slots are reused).
    live: bool,
    /// The labels after target labels and metric relabeling; `None` when
    /// relabeling dropped the series.
    pub labels: Option<Labels>,
    /// Number of the last scrape that exposed the series (0 = never), which
    /// is all staleness needs: a series seen in the previous scrape but not
    /// in this one gets a stale marker.
    pub last_seen: u64,
    /// `last_seen` before the current scrape updated it (a failed scrape needs it).
    pub seen_before: u64,
    /// Whether `labels` is the head's own copy (see `Storage::canonical_series`).
    pub canonical: bool,
    /// The series' head slot, so commits skip the series lookup.
    pub head_slot: Option<u32>,
}

pub(super) struct SeriesCache {
    arena: String,
    /// Bytes of `arena` that belong to evicted entries.
    garbage: usize,
    entries: Vec<CacheEntry>,
    free: Vec<u32>,
    /// Entry index by key; foldhash is several times faster than SipHash
    /// here and still randomly seeded.
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// Entries in the order the current scrape exposed them.
    order: Vec<u32>,
    /// The same for the last successful scrape: the prediction.
    predicted: Vec<u32>,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            arena: String::new(),
            garbage: 0,
            entries: Vec::new(),
            free: Vec::new(),
            table: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            order: Vec::new(),
            predicted: Vec::new(),
        }
    }
}

impl SeriesCache {
    fn key_of(&self, e: &CacheEntry) -> &str {
        &self.arena[e.key_start..e.key_start + e.key_len]
    }

    fn hash(&self, key: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    /// Starts collecting the order of a new scrape.
    pub fn begin_scrape(&mut self) {
        self.order.clear();
    }

    /// The entry for the series `key`, the next one in the exposition;
    /// `make` gives its labels the first time the key is seen.
    pub fn find_or_insert(
        &mut self,
        key: &str,
        make: impl FnOnce() -> Result<Option<Labels>, String>,
    ) -> Result<u32, String> {
        let position = self.order.len();
        if let Some(&i) = self.predicted.get(position) {
            let e = &self.entries[i as usize];
            if e.live && self.key_of(e) == key {
                self.order.push(i);
                return Ok(i);
            }
        }
        let hash = self.hash(key);
        let found = self.table.find(hash, |&i| {
            let e = &self.entries[i as usize];
            e.key_hash == hash && self.key_of(e) == key
        });
        let i = match found {
            Some(&i) => i,
            None => self.insert(key, hash, make()?),
        };
        self.order.push(i);
        Ok(i)
    }

    fn insert(&mut self, key: &str, key_hash: u64, labels: Option<Labels>) -> u32 {
        let entry = CacheEntry {
            key_start: self.arena.len(),
            key_len: key.len(),
            key_hash,
            live: true,
            labels,
            last_seen: 0,
            seen_before: 0,
            canonical: false,
            head_slot: None,
        };
        self.arena.push_str(key);
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.table
            .insert_unique(key_hash, i, |&j| entries[j as usize].key_hash);
        i
    }

    /// Ends a scrape: a successful one's order predicts the next.
    pub fn finish_scrape(&mut self, succeeded: bool) {
        if succeeded {
            std::mem::swap(&mut self.order, &mut self.predicted);
        }
        self.order.clear();
    }

    pub fn entry(&self, i: u32) -> &CacheEntry {
        &self.entries[i as usize]
    }

    pub fn entry_mut(&mut self, i: u32) -> &mut CacheEntry {
        &mut self.entries[i as usize]
    }

    /// Every live entry with its index.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &CacheEntry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(i, e)| (i as u32, e))
    }

    /// Every live entry with its index, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut CacheEntry)> {
        self.entries
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(i, e)| (i as u32, e))
    }

    /// Forgets the entries `keep` says no to, and compacts the arena once
    /// most of it belongs to forgotten keys.
    pub fn retain(&mut self, keep: impl Fn(&CacheEntry) -> bool) {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if !e.live || keep(e) {
                continue;
            }
            let hash = e.key_hash;
            let index = i as u32;
            if let Ok(found) = self.table.find_entry(hash, |&j| j == index) {
                found.remove();
            }
            let e = &mut self.entries[i];
            e.live = false;
            e.labels = None;
            self.garbage += e.key_len;
            self.free.push(index);
        }
        if self.garbage > 4096 && self.garbage * 2 > self.arena.len() {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let mut arena = String::with_capacity(self.arena.len() - self.garbage);
        for e in self.entries.iter_mut().filter(|e| e.live) {
            let start = arena.len();
            arena.push_str(&self.arena[e.key_start..e.key_start + e.key_len]);
            e.key_start = start;
        }
        self.arena = arena;
        self.garbage = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Result<Option<Labels>, String> {
        Labels::from_pairs([("__name__", name)])
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn scrape(c: &mut SeriesCache, keys: &[&str]) -> Vec<u32> {
        c.begin_scrape();
        let ids = keys
            .iter()
            .map(|k| c.find_or_insert(k, || labels(k)).unwrap())
            .collect();
        c.finish_scrape(true);
        ids
    }

    #[test]
    fn same_key_same_entry_in_any_order() {
        let mut c = SeriesCache::default();
        let first = scrape(&mut c, &["a", "b", "c"]);
        assert_eq!(scrape(&mut c, &["a", "b", "c"]), first);
        let moved = scrape(&mut c, &["c", "a", "d", "b"]);
        assert_eq!(moved[0], first[2]);
        assert_eq!(moved[1], first[0]);
        assert_eq!(moved[3], first[1]);
        assert_eq!(c.len(), 4);
        let d = c.entry(moved[2]);
        assert_eq!(d.labels.as_ref().unwrap().metric_name(), Some("d"));
    }

    #[test]
    fn make_is_called_once_per_new_key_and_errors_pass_through() {
        let mut c = SeriesCache::default();
        c.begin_scrape();
        assert!(c.find_or_insert("x", || Err("bad".into())).is_err());
        let i = c.find_or_insert("x", || labels("x")).unwrap();
        let j = c
            .find_or_insert("x", || panic!("must not be called"))
            .unwrap();
        assert_eq!(i, j);
    }

    #[test]
    fn retain_frees_slots_and_compacts_the_arena() {
        let mut c = SeriesCache::default();
        let long: Vec<String> = (0..200).map(|i| format!("{i:0>40}")).collect();
        let keys: Vec<&str> = long.iter().map(String::as_str).collect();
        let ids = scrape(&mut c, &keys);
        let keep = ids[0];
        for &i in &ids {
            c.entry_mut(i).last_seen = if i == keep { 5 } else { 1 };
        }
        c.retain(|e| e.last_seen == 5);
        assert_eq!(c.len(), 1);
        assert!(c.arena.len() < 100, "arena compacted: {}", c.arena.len());
        // The survivor is still found by key, and a freed slot is reused.
        c.begin_scrape();
        assert_eq!(c.find_or_insert(keys[0], || labels("x")).unwrap(), keep);
        let new = c.find_or_insert("new", || labels("new")).unwrap();
        assert_ne!(new, keep);
        assert!(ids.contains(&new));
        assert_eq!(c.iter().count(), 2);
    }
}
