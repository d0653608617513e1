//! The scrape hot path allocates nothing per sample for series already seen:
//! parsing hands out the raw series text, the cache lookup borrows it, and a
//! cached label set is shared by reference count. Checked with a counting
//! global allocator over real node_exporter output.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use ember::model::Labels;
use ember::model::exposition::{Entry, Format, Parser};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the measuring thread counts: the test harness's own threads
    // allocate now and then (the first run after a build failed on that).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn known_series_parse_without_allocating() {
    let text = include_str!("../host/benches/data/node_exporter.prom");
    let mut cache: HashMap<String, Labels> = HashMap::new();
    for e in Parser::new(text, Format::Text) {
        if let Ok(Entry::Sample(s)) = e {
            cache.insert(s.series.to_owned(), s.labels().unwrap());
        }
    }
    let mut found = Vec::with_capacity(cache.len());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    for e in Parser::new(text, Format::Text) {
        if let Ok(Entry::Sample(s)) = e {
            found.push((cache.get(s.series).cloned(), s.value));
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert!(found.len() > 400 && found.iter().all(|(l, _)| l.is_some()));
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations for {} known samples",
        found.len()
    );
}
