//! The in-memory exemplar store: a fixed-size ring of the most recent
//! exemplars of all series, as Prometheus's circular exemplar storage keeps
//! them (`storage.exemplars.max_exemplars`, default 100000, 0 disables).
//!
//! Exemplars reach the store only through an appender commit, which logs
//! them in the WAL (record type 4) with their samples; start-up replays them
//! and checkpoints keep those of live series, so they survive a restart as
//! in Prometheus. They are not written to blocks.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::model::{Labels, Matcher};

/// Prometheus's limit on the characters of an exemplar's label names and
/// values together (OpenMetrics' 128).
pub const MAX_LABELS_RUNES: usize = 128;

#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// Why an exemplar was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExemplarError {
    #[error("out of order exemplar")]
    OutOfOrder,
    #[error("duplicate exemplar")]
    Duplicate,
    #[error("exemplar label set exceeds {MAX_LABELS_RUNES} characters")]
    LabelsTooLong,
    #[error("exemplar storage is disabled (storage.exemplars.max_exemplars is 0)")]
    Disabled,
    #[error("exemplar of a series that has no samples")]
    UnknownSeries,
}

/// One series and its exemplars in the asked range, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesExemplars {
    pub series: Labels,
    pub exemplars: Vec<Exemplar>,
}

struct Slot {
    series: Labels,
    exemplar: Exemplar,
}

/// What the store remembers per series: the newest exemplar (for the
/// duplicate and order checks) and how many ring slots hold the series, so
/// the entry goes when its last exemplar is overwritten.
struct SeriesState {
    newest: Exemplar,
    count: usize,
}

struct Ring {
    slots: Vec<Option<Slot>>,
    /// Where the next exemplar goes; the oldest one when the ring is full.
    next: usize,
    series: HashMap<Labels, SeriesState>,
    appended_total: u64,
    out_of_order_total: u64,
}

impl Ring {
    fn with_capacity(n: usize) -> Ring {
        Ring {
            slots: (0..n).map(|_| None).collect(),
            next: 0,
            series: HashMap::new(),
            appended_total: 0,
            out_of_order_total: 0,
        }
    }

    /// Slots from oldest to newest.
    fn in_order(&self) -> impl Iterator<Item = &Slot> {
        let (newer, older) = self.slots.split_at(self.next);
        older.iter().chain(newer).filter_map(Option::as_ref)
    }

    fn push(&mut self, series: Labels, exemplar: Exemplar) {
        let cap = self.slots.len();
        if cap == 0 {
            return;
        }
        if let Some(old) = self.slots[self.next].take()
            && let Some(state) = self.series.get_mut(&old.series)
        {
            state.count -= 1;
            if state.count == 0 {
                self.series.remove(&old.series);
            }
        }
        self.series
            .entry(series.clone())
            .and_modify(|s| {
                s.newest = exemplar.clone();
                s.count += 1;
            })
            .or_insert(SeriesState {
                newest: exemplar.clone(),
                count: 1,
            });
        self.slots[self.next] = Some(Slot { series, exemplar });
        self.next = (self.next + 1) % cap;
        self.appended_total += 1;
    }
}

/// Counters and sizes for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExemplarStats {
    pub max_exemplars: usize,
    pub exemplars_in_storage: usize,
    pub series_with_exemplars: usize,
    pub appended_total: u64,
    pub out_of_order_total: u64,
}

pub struct ExemplarStore {
    ring: Mutex<Ring>,
}

impl ExemplarStore {
    pub fn new(max_exemplars: usize) -> ExemplarStore {
        ExemplarStore {
            ring: Mutex::new(Ring::with_capacity(max_exemplars)),
        }
    }

    /// Stores an exemplar of `series`: [`ExemplarStore::check`], then
    /// [`ExemplarStore::insert`].
    pub fn add(&self, series: &Labels, exemplar: Exemplar) -> Result<(), ExemplarError> {
        self.check(series, &exemplar, None)?;
        self.insert(series.clone(), exemplar);
        Ok(())
    }

    /// Whether `exemplar` of `series` would be stored. As in Prometheus, an
    /// exemplar equal to the series' newest one is a duplicate, and one not
    /// newer than it is out of order; both are refused. `pending` is the
    /// series' newest exemplar accepted earlier in the same commit, which
    /// the store does not hold yet.
    pub fn check(
        &self,
        series: &Labels,
        exemplar: &Exemplar,
        pending: Option<&Exemplar>,
    ) -> Result<(), ExemplarError> {
        let runes: usize = exemplar
            .labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if runes > MAX_LABELS_RUNES {
            return Err(ExemplarError::LabelsTooLong);
        }
        let mut ring = self.ring.lock();
        if ring.slots.is_empty() {
            return Err(ExemplarError::Disabled);
        }
        let stored = ring.series.get(series).map(|s| &s.newest);
        if let Some(newest) = pending.or(stored) {
            if newest.timestamp_ms == exemplar.timestamp_ms
                && newest.value.to_bits() == exemplar.value.to_bits()
                && newest.labels == exemplar.labels
            {
                return Err(ExemplarError::Duplicate);
            }
            if exemplar.timestamp_ms <= newest.timestamp_ms {
                ring.out_of_order_total += 1;
                return Err(ExemplarError::OutOfOrder);
            }
        }
        Ok(())
    }

    /// Stores an exemplar [`ExemplarStore::check`] accepted (and the WAL has).
    pub fn insert(&self, series: Labels, exemplar: Exemplar) {
        self.ring.lock().push(series, exemplar);
    }

    /// Stores an exemplar replayed from the WAL. A checkpoint and the
    /// segments after it can hold the same exemplar; the repeat is dropped
    /// without counting as out of order.
    pub fn restore(&self, series: Labels, exemplar: Exemplar) {
        let mut ring = self.ring.lock();
        if ring
            .series
            .get(&series)
            .is_some_and(|s| exemplar.timestamp_ms <= s.newest.timestamp_ms)
        {
            return;
        }
        ring.push(series, exemplar);
    }

    /// Every stored exemplar with its series, oldest first, for checkpoints.
    pub fn snapshot(&self) -> Vec<(Labels, Exemplar)> {
        self.ring
            .lock()
            .in_order()
            .map(|s| (s.series.clone(), s.exemplar.clone()))
            .collect()
    }

    /// Exemplars in `[start, end]` (milliseconds) of series matching any of
    /// the matcher sets, sorted by series labels, each series oldest first.
    pub fn select(&self, start: i64, end: i64, sets: &[Vec<Matcher>]) -> Vec<SeriesExemplars> {
        let ring = self.ring.lock();
        // Matching is decided once per series, not once per exemplar.
        let mut wanted: HashMap<&Labels, bool> = HashMap::new();
        let mut found: HashMap<Labels, Vec<Exemplar>> = HashMap::new();
        for slot in ring.in_order() {
            let t = slot.exemplar.timestamp_ms;
            if t < start || t > end {
                continue;
            }
            let matches = *wanted
                .entry(&slot.series)
                .or_insert_with(|| sets.iter().any(|set| matches_all(&slot.series, set)));
            if matches {
                found
                    .entry(slot.series.clone())
                    .or_default()
                    .push(slot.exemplar.clone());
            }
        }
        let mut out: Vec<SeriesExemplars> = found
            .into_iter()
            .map(|(series, exemplars)| SeriesExemplars { series, exemplars })
            .collect();
        out.sort_by(|a, b| a.series.cmp(&b.series));
        out
    }

    /// Changes the capacity (on reload), keeping the newest exemplars that fit.
    pub fn resize(&self, max_exemplars: usize) {
        let mut ring = self.ring.lock();
        if ring.slots.len() == max_exemplars {
            return;
        }
        let kept: Vec<(Labels, Exemplar)> = ring
            .in_order()
            .map(|s| (s.series.clone(), s.exemplar.clone()))
            .collect();
        let skip = kept.len().saturating_sub(max_exemplars);
        let mut fresh = Ring::with_capacity(max_exemplars);
        for (series, exemplar) in kept.into_iter().skip(skip) {
            fresh.push(series, exemplar);
        }
        // Moving exemplars over is not appending them: the counters carry on.
        fresh.appended_total = ring.appended_total;
        fresh.out_of_order_total = ring.out_of_order_total;
        *ring = fresh;
    }

    pub fn stats(&self) -> ExemplarStats {
        let ring = self.ring.lock();
        ExemplarStats {
            max_exemplars: ring.slots.len(),
            exemplars_in_storage: ring.slots.iter().filter(|s| s.is_some()).count(),
            series_with_exemplars: ring.series.len(),
            appended_total: ring.appended_total,
            out_of_order_total: ring.out_of_order_total,
        }
    }
}

/// Prometheus semantics: a matcher that matches "" also matches a series
/// without the label.
fn matches_all(series: &Labels, set: &[Matcher]) -> bool {
    set.iter()
        .all(|m| m.matches(series.get(&m.name).unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).unwrap()
    }

    fn ex(trace: &str, v: f64, t: i64) -> Exemplar {
        Exemplar {
            labels: labels(&[("trace_id", trace)]),
            value: v,
            timestamp_ms: t,
        }
    }

    #[test]
    fn keeps_the_newest_and_refuses_duplicates_and_old_ones() {
        let store = ExemplarStore::new(3);
        let a = labels(&[("__name__", "a"), ("job", "x")]);
        let b = labels(&[("__name__", "b"), ("job", "x")]);
        store.add(&a, ex("1", 1.0, 10)).unwrap();
        assert_eq!(
            store.add(&a, ex("1", 1.0, 10)),
            Err(ExemplarError::Duplicate)
        );
        assert_eq!(
            store.add(&a, ex("2", 1.0, 5)),
            Err(ExemplarError::OutOfOrder)
        );
        store.add(&b, ex("3", 2.0, 11)).unwrap();
        store.add(&a, ex("4", 3.0, 12)).unwrap();
        // Full: the next one overwrites a's oldest.
        store.add(&a, ex("5", 4.0, 13)).unwrap();
        let all = store.select(i64::MIN, i64::MAX, &[vec![Matcher::eq("job", "x")]]);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].series, a);
        let traces: Vec<&str> = all[0]
            .exemplars
            .iter()
            .filter_map(|e| e.labels.get("trace_id"))
            .collect();
        assert_eq!(traces, ["4", "5"]);
        let only_b = store.select(11, 11, &[vec![Matcher::eq("__name__", "b")]]);
        assert_eq!(only_b.len(), 1);
        assert!(
            store
                .select(0, 10, &[vec![Matcher::eq("__name__", "b")]])
                .is_empty()
        );
        let stats = store.stats();
        assert_eq!(stats.exemplars_in_storage, 3);
        assert_eq!(stats.series_with_exemplars, 2);
        assert_eq!(stats.out_of_order_total, 1);
    }

    #[test]
    fn overwritten_series_are_forgotten_and_resize_keeps_the_newest() {
        let store = ExemplarStore::new(2);
        let a = labels(&[("__name__", "a")]);
        let b = labels(&[("__name__", "b")]);
        store.add(&a, ex("1", 1.0, 1)).unwrap();
        store.add(&b, ex("2", 1.0, 2)).unwrap();
        store.add(&b, ex("3", 1.0, 3)).unwrap();
        assert_eq!(store.stats().series_with_exemplars, 1);
        // a has no exemplar left, so an older timestamp is accepted again.
        store.add(&a, ex("4", 1.0, 0)).unwrap();
        store.resize(1);
        let got = store.select(i64::MIN, i64::MAX, &[vec![]]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].series, a);
        store.resize(0);
        assert_eq!(store.add(&a, ex("5", 1.0, 9)), Err(ExemplarError::Disabled));
    }

    #[test]
    fn long_exemplar_labels_are_refused() {
        let store = ExemplarStore::new(2);
        let long = "x".repeat(130);
        let e = Exemplar {
            labels: labels(&[("trace_id", long.as_str())]),
            value: 1.0,
            timestamp_ms: 1,
        };
        assert_eq!(
            store.add(&labels(&[("__name__", "a")]), e),
            Err(ExemplarError::LabelsTooLong)
        );
    }
}
