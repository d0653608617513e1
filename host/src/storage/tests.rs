use super::*;
use crate::model::sample::stale_nan;
use crate::model::{Labels, MatchOp, Sample};

fn series(name: &str, job: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("job", job)]).unwrap()
}

fn open(dir: &Path, ooo_ms: i64) -> (Storage, ReplayReport) {
    Storage::open(
        dir,
        StorageOptions {
            out_of_order_window_ms: ooo_ms,
            ..StorageOptions::default()
        },
        |_| {},
    )
    .unwrap()
}

/// Small block ranges (1s) so a test crosses many of them quickly.
fn open_small(dir: &Path, retention_ms: Option<i64>, retention_bytes: Option<u64>) -> Storage {
    Storage::open(
        dir,
        StorageOptions {
            out_of_order_window_ms: 0,
            block_range_ms: 1000,
            // As the server derives it: 10% of the retention time, at least one range.
            max_block_range_ms: retention_ms.map_or(9000, |r| (r / 10).max(1000)),
            retention_ms,
            retention_bytes,
            ..StorageOptions::default()
        },
        |_| {},
    )
    .unwrap()
    .0
}

/// 10 series with a sample every 100ms over `[from, to)`.
fn ingest(storage: &Storage, from: i64, to: i64) {
    for t in (from..to).step_by(100) {
        let mut app = storage.appender();
        for j in 0..10 {
            app.append(series("m", &j.to_string()), t, t as f64);
        }
        app.commit().unwrap();
    }
}

fn count_samples(storage: &Storage) -> usize {
    all(storage).iter().map(|s| s.samples.len()).sum()
}

fn all(storage: &Storage) -> Vec<SeriesSamples> {
    let m = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap();
    storage.select(&[m], i64::MIN, i64::MAX).unwrap()
}

#[test]
fn append_select_and_stale_markers() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, _) = open(tmp.path(), 0);
    let mut app = storage.appender();
    app.append(series("up", "a"), 1000, 1.0);
    app.append(series("up", "b"), 1000, 0.0);
    app.append(series("up", "a"), 2000, stale_nan());
    let report = app.commit().unwrap();
    assert_eq!(report.appended, 3);
    let got = storage.select(&[Matcher::eq("job", "a")], 0, 5000).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples[0], Sample { t: 1000, v: 1.0 });
    assert_eq!(got[0].samples[1].v.to_bits(), crate::model::STALE_NAN_BITS);
    // Time range is inclusive on both ends.
    assert_eq!(
        storage
            .select(&[Matcher::eq("job", "a")], 2000, 2000)
            .unwrap()[0]
            .samples
            .len(),
        1
    );
    assert!(
        storage
            .select(&[Matcher::eq("job", "a")], 3000, 4000)
            .unwrap()
            .is_empty()
    );
    assert_eq!(storage.label_values("job"), ["a", "b"]);
}

#[test]
fn duplicate_and_out_of_order_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, _) = open(tmp.path(), 0);
    let mut app = storage.appender();
    app.append(series("x", "a"), 1000, 1.0);
    app.commit().unwrap();

    let mut app = storage.appender();
    app.append(series("x", "a"), 1000, 1.0); // identical: accepted, no-op
    app.append(series("x", "a"), 1000, 2.0); // same time, new value
    app.append(series("x", "a"), 500, 1.0); // older
    app.append(series("x", "a"), 2000, 3.0);
    app.append(series("x", "a"), 2000, 4.0); // duplicate within the batch
    let report = app.commit().unwrap();
    assert_eq!(report.appended, 1);
    assert_eq!(report.duplicates, 1);
    assert_eq!(
        report.rejected,
        vec![
            (1, AppendError::DuplicateTimestamp),
            (2, AppendError::OutOfOrder),
            (4, AppendError::DuplicateTimestamp)
        ]
    );
    assert_eq!(all(&storage)[0].samples.len(), 2);
}

#[test]
fn out_of_order_window() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, _) = open(tmp.path(), 10_000);
    let mut app = storage.appender();
    app.append(series("x", "a"), 100_000, 1.0);
    app.commit().unwrap();
    let mut app = storage.appender();
    app.append(series("x", "a"), 95_000, 2.0); // inside the window
    app.append(series("x", "a"), 95_000, 3.0); // same ooo timestamp twice
    app.append(series("x", "a"), 50_000, 4.0); // too old
    let report = app.commit().unwrap();
    assert_eq!(report.appended, 1);
    assert_eq!(
        report.rejected,
        vec![
            (2, AppendError::TooOld),
            (1, AppendError::DuplicateTimestamp)
        ]
    );
    let samples = &all(&storage)[0].samples;
    assert_eq!(
        samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        [95_000, 100_000]
    );
}

#[test]
fn hash_collisions_get_distinct_ids() {
    let mut head = Head::new(0);
    let a = series("a", "x");
    let b = series("b", "x");
    // Simulate a collision: `a` was logged under the id `b` hashes to.
    head.restore_series(b.stable_hash(), a.clone()).unwrap();
    let ib = head.get_or_create(&b);
    assert_eq!(head.series(ib).id, b.stable_hash().wrapping_add(1));
    assert_eq!(head.id_collisions, 1);
    assert_eq!(head.lookup(&a), Some(0));
    assert_eq!(head.lookup(&b), Some(ib));
    assert_ne!(head.series(0).id, head.series(ib).id);
    // A conflicting restore is refused rather than merged.
    assert!(head.restore_series(b.stable_hash(), b.clone()).is_err());
}

#[test]
fn replay_restores_everything_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (storage, _) = open(tmp.path(), 0);
        for t in 0..100 {
            let mut app = storage.appender();
            for job in ["a", "b", "c"] {
                app.append(series("m", job), t * 1000, t as f64);
            }
            app.append(series("m", "a"), t * 1000 + 1, stale_nan());
            app.commit().unwrap();
        }
    }
    let (storage, report) = open(tmp.path(), 0);
    assert_eq!(report.corruption, None);
    let got = all(&storage);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].samples.len(), 200);
    assert_eq!(got[1].samples.len(), 100);
    assert_eq!(got[0].samples[1].v.to_bits(), crate::model::STALE_NAN_BITS);
    // Appending after replay keeps ids stable and data consistent.
    let mut app = storage.appender();
    app.append(series("m", "b"), 1_000_000, 1.0);
    app.commit().unwrap();
    drop(storage);
    let (storage, _) = open(tmp.path(), 0);
    assert_eq!(all(&storage)[1].samples.len(), 101);
}

#[test]
fn corrupt_tail_keeps_the_intact_part() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (storage, _) = open(tmp.path(), 0);
        for t in 0..10 {
            let mut app = storage.appender();
            app.append(series("m", "a"), t, 1.0);
            app.commit().unwrap();
        }
    }
    let seg = tmp.path().join("wal/00000000");
    let mut data = std::fs::read(&seg).unwrap();
    let n = data.len();
    data[n - 3] ^= 0x55;
    std::fs::write(&seg, data).unwrap();
    let (storage, report) = open(tmp.path(), 0);
    assert!(report.corruption.is_some());
    assert_eq!(all(&storage)[0].samples.len(), 9);
}

#[test]
fn head_is_cut_into_blocks_and_reads_span_both() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = open_small(tmp.path(), None, None);
    ingest(&storage, 0, 5000);
    storage.run_maintenance().unwrap();
    let blocks = storage.blocks();
    // Head spans 0..4900: ranges [0,1000), [1000,2000), [2000,3000) are cut
    // (each leaves >= 1.5 ranges behind it), compaction then merges them.
    assert!(!blocks.is_empty());
    assert!(
        storage.head_stats().min_time.unwrap() >= 3000,
        "{:?}",
        storage.head_stats()
    );
    assert_eq!(count_samples(&storage), 50 * 10);
    let s = &all(&storage)[0];
    assert!(
        s.samples.windows(2).all(|w| w[0].t < w[1].t),
        "sorted and without duplicates"
    );
    // Samples older than the cut are now out of bounds.
    let mut app = storage.appender();
    app.append(series("m", "0"), 500, 1.0);
    assert_eq!(
        app.commit().unwrap().rejected,
        vec![(0, AppendError::OutOfBounds)]
    );
}

#[test]
fn restart_after_cut_replays_checkpoint_and_skips_persisted_samples() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let storage = open_small(tmp.path(), None, None);
        ingest(&storage, 0, 5000);
        storage.run_maintenance().unwrap();
        ingest(&storage, 5000, 5500);
    }
    let wal_dir = tmp.path().join("wal");
    let names: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("checkpoint.")),
        "{names:?}"
    );
    assert!(
        !names.contains(&"00000000".to_owned()),
        "segments before the checkpoint are gone: {names:?}"
    );
    let storage = open_small(tmp.path(), None, None);
    assert_eq!(count_samples(&storage), 55 * 10);
}

#[test]
fn compaction_merges_aligned_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = open_small(tmp.path(), None, None);
    ingest(&storage, 0, 8000);
    storage.run_maintenance().unwrap();
    let blocks = storage.blocks();
    // [0,3000) is complete and merged into one level-2 block.
    let first = &blocks[0];
    assert_eq!((first.meta.min_time, first.meta.max_time), (0, 3000));
    assert_eq!(first.meta.compaction.level, 2);
    assert_eq!(first.meta.compaction.sources.len(), 3);
    assert_eq!(count_samples(&storage), 80 * 10);
    // Only live block directories remain on disk.
    let dirs = std::fs::read_dir(tmp.path()).unwrap().filter(|e| {
        let e = e.as_ref().unwrap();
        e.path().join("meta.json").exists()
    });
    assert_eq!(dirs.count(), blocks.len());
}

#[test]
fn reads_survive_compaction_deleting_a_block() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = open_small(tmp.path(), None, None);
    ingest(&storage, 0, 2600);
    storage.run_maintenance().unwrap();
    let held = storage.blocks()[0].clone();
    std::fs::remove_dir_all(held.dir()).unwrap();
    let got = held.read_all().unwrap();
    assert_eq!(got.iter().map(|s| s.samples.len()).sum::<usize>(), 10 * 10);
}

#[test]
fn retention_by_time_and_size() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = open_small(tmp.path(), Some(3000), None);
    ingest(&storage, 0, 10_000);
    storage.run_maintenance().unwrap();
    let min_block = storage
        .blocks()
        .iter()
        .map(|b| b.meta.min_time)
        .min()
        .unwrap();
    assert!(
        min_block >= 10_000 - 3000 - 3000,
        "old blocks deleted, got {min_block}"
    );
    assert!(all(&storage)[0].samples[0].t >= min_block);

    let tmp = tempfile::tempdir().unwrap();
    let storage = open_small(tmp.path(), None, Some(1));
    ingest(&storage, 0, 5000);
    storage.run_maintenance().unwrap();
    assert!(storage.blocks().is_empty(), "a 1-byte limit keeps no block");
    assert!(count_samples(&storage) > 0, "the head is never deleted");
}

/// Measures the write pause of a head cut at 1M series (run with
/// `cargo test --release --lib truncate_pause -- --ignored --nocapture`).
#[test]
#[ignore]
fn truncate_pause_at_1m_series() {
    let mut head = Head::new(0);
    for i in 0..1_000_000u32 {
        let labels = Labels::from_pairs([
            ("__name__", format!("m{}", i % 100).as_str()),
            ("instance", format!("h{}", i / 1000).as_str()),
            ("s", format!("{}", i % 1000).as_str()),
        ])
        .unwrap();
        let idx = head.get_or_create(&labels);
        head.insert(idx, Sample { t: 1000, v: 1.0 });
        head.insert(idx, Sample { t: 9000, v: 2.0 });
    }
    let started = std::time::Instant::now();
    head.truncate(5000);
    println!("truncate of 1M series took {:?}", started.elapsed());
    assert_eq!(head.num_series(), 1_000_000);
}

#[test]
fn series_without_samples_after_a_cut_are_forgotten() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = open_small(tmp.path(), None, None);
    // "gone" stops at 900ms; the others keep going.
    let mut app = storage.appender();
    app.append(series("m", "gone"), 100, 1.0);
    app.append(series("m", "gone"), 900, 1.0);
    app.commit().unwrap();
    ingest(&storage, 0, 3000);
    storage.run_maintenance().unwrap();
    assert_eq!(
        storage.head_stats().num_series,
        10,
        "the churned series left the head"
    );
    assert!(
        !storage
            .head
            .read()
            .postings()
            .label_values("job")
            .contains(&"gone".to_owned())
    );
    // Still queryable from its block.
    assert_eq!(
        storage
            .select(&[Matcher::eq("job", "gone")], 0, 10_000)
            .unwrap()[0]
            .samples
            .len(),
        2
    );
    // A new series reuses the freed slot and is found normally.
    let mut app = storage.appender();
    app.append(series("m", "new"), 2950, 5.0);
    app.commit().unwrap();
    let got = storage
        .select(&[Matcher::eq("job", "new")], 0, 10_000)
        .unwrap();
    assert_eq!(got[0].samples, vec![Sample { t: 2950, v: 5.0 }]);
    assert_eq!(storage.head_stats().num_series, 11);
}

#[test]
fn deletions_hidden_cut_away_cleaned_and_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_small(dir.path(), None, None);
    let mut app = storage.appender();
    for t in (0..5000).step_by(100) {
        app.append(series("a", "x"), t, 1.0);
        app.append(series("a", "y"), t, 2.0);
    }
    app.commit().unwrap();
    // Cut the first blocks, then delete across block and head data.
    storage.run_maintenance().unwrap();
    assert!(!storage.blocks().is_empty());
    let x = [Matcher::eq("job", "x")];
    storage.delete_series(vec![x.to_vec()], 500, 3999).unwrap();
    let count = |s: &Storage, m: &[Matcher]| -> usize {
        s.select(m, i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|s| s.samples.len())
            .sum()
    };
    assert_eq!(count(&storage, &x), 50 - 35);
    assert_eq!(count(&storage, &[Matcher::eq("job", "y")]), 50);
    // Deletions survive a restart.
    drop(storage);
    let storage = open_small(dir.path(), None, None);
    assert_eq!(count(&storage, &x), 15);
    // Cleaning rewrites blocks: their files no longer hold the samples.
    storage.clean_tombstones().unwrap();
    let in_blocks: usize = storage
        .blocks()
        .iter()
        .flat_map(|b| b.read_all().unwrap())
        .filter(|s| s.labels.get("job") == Some("x"))
        .map(|s| s.samples.len())
        .sum();
    let block_end = storage
        .blocks()
        .iter()
        .map(|b| b.meta.max_time)
        .max()
        .unwrap();
    assert_eq!(
        in_blocks,
        (0..block_end)
            .step_by(100)
            .filter(|t| !(500..4000).contains(t))
            .count()
    );
    assert_eq!(count(&storage, &x), 15);
    // A snapshot opens as a store of its own with the same answers.
    let snap = dir.path().join("snapshots/s1");
    storage.snapshot(&snap, false).unwrap();
    let copy = Storage::open(&snap, StorageOptions::default(), |_| {})
        .unwrap()
        .0;
    assert_eq!(count(&copy, &x), 15);
    assert_eq!(count(&copy, &[Matcher::eq("job", "y")]), 50);
    let snap2 = dir.path().join("snapshots/s2");
    storage.snapshot(&snap2, true).unwrap();
    let copy = Storage::open(&snap2, StorageOptions::default(), |_| {})
        .unwrap()
        .0;
    assert_eq!(
        count(&copy, &[Matcher::eq("job", "y")]) as i64,
        block_end / 100
    );
}

#[test]
fn checkpoints_keep_segments_a_wal_follower_still_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let wal_dir = tmp.path().join("wal");
    let storage = open_small(tmp.path(), None, None);
    storage.wal_holds.set("remote", 0);
    ingest(&storage, 0, 5000);
    storage.run_maintenance().unwrap();
    assert!(
        wal::list_segments(&wal_dir).unwrap().contains(&0),
        "a held segment survives the cut"
    );
    // Released: the next checkpoint replaces it.
    storage.wal_holds.release("remote");
    ingest(&storage, 5000, 8000);
    storage.run_maintenance().unwrap();
    assert!(!wal::list_segments(&wal_dir).unwrap().contains(&0));
    drop(storage);
    let storage = open_small(tmp.path(), None, None);
    assert_eq!(count_samples(&storage), 80 * 10);
}

#[test]
fn a_follower_too_far_behind_does_not_hold_the_wal_forever() {
    assert_eq!(checkpoint_upto(5, None), Some(5));
    assert_eq!(checkpoint_upto(5, Some(3)), Some(2));
    assert_eq!(
        checkpoint_upto(5, Some(0)),
        Some(5),
        "more than the limit behind"
    );
    assert_eq!(checkpoint_upto(2, Some(0)), None, "needs the first segment");
    assert_eq!(
        checkpoint_upto(5, Some(9)),
        Some(5),
        "ahead of the closed segment"
    );
}

fn histogram(count: f64) -> crate::model::FloatHistogram {
    use crate::model::histogram::Span;
    crate::model::FloatHistogram {
        count,
        sum: count * 2.0,
        schema: 1,
        positive_spans: vec![Span {
            offset: -1,
            length: 2,
        }],
        positive_buckets: vec![count / 2.0, count / 2.0],
        ..Default::default()
    }
}

/// Native histograms go through every layer: head, WAL replay, a
/// checkpoint, a cut into a block (histograms.parquet) and compaction.
#[test]
fn native_histograms_survive_replay_cuts_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let hseries = series("h", "a");
    let append_hists = |storage: &Storage, from: i64, to: i64| {
        for t in (from..to).step_by(100) {
            let mut app = storage.appender();
            app.append_histogram(hseries.clone(), t, histogram(t as f64));
            app.commit().unwrap();
        }
    };
    let hist_count = |storage: &Storage| -> usize {
        all(storage)
            .iter()
            .filter(|s| s.labels == hseries)
            .map(|s| s.histograms.len())
            .sum()
    };
    {
        let storage = open_small(tmp.path(), None, None);
        ingest(&storage, 0, 5000);
        append_hists(&storage, 0, 5000);
        // A duplicate timestamp with a different histogram is refused.
        let mut app = storage.appender();
        app.append_histogram(hseries.clone(), 4900, histogram(1.0));
        let report = app.commit().unwrap();
        assert_eq!(report.rejected.len(), 1, "{report:?}");
        storage.run_maintenance().unwrap();
        assert!(!storage.blocks().is_empty(), "the head was cut");
        assert!(
            storage
                .blocks()
                .iter()
                .any(|b| b.dir().join(block::HISTOGRAMS_FILE).exists()),
            "blocks hold histograms.parquet"
        );
        assert_eq!(hist_count(&storage), 50);
    }
    // Reopened: blocks plus the checkpointed and replayed head.
    let storage = open_small(tmp.path(), None, None);
    assert_eq!(hist_count(&storage), 50);
    let got = all(&storage);
    let h = got.iter().find(|s| s.labels == hseries).unwrap();
    assert_eq!(*h.histograms[10].h, histogram(1000.0));
    assert!(h.histograms.windows(2).all(|w| w[0].t < w[1].t));
    // More data and another round of cuts and compaction keep them all.
    append_hists(&storage, 5000, 12_000);
    ingest(&storage, 5000, 12_000);
    storage.run_maintenance().unwrap();
    storage.run_maintenance().unwrap();
    assert_eq!(hist_count(&storage), 120);
}

fn exemplar(trace: &str, t: i64) -> exemplars::Exemplar {
    exemplars::Exemplar {
        labels: Labels::from_pairs([("trace_id", trace)]).unwrap(),
        value: 1.0,
        timestamp_ms: t,
    }
}

/// Exemplars are committed with their samples, replayed after a restart,
/// and kept by checkpoints only for series still in the head.
#[test]
fn exemplars_are_logged_replayed_and_checkpointed_for_live_series() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = open_small(tmp.path(), None, None);
    ingest(&storage, 0, 100);
    let mut app = storage.appender();
    app.append(series("m", "gone"), 100, 1.0);
    app.append(series("m", "gone"), 900, 1.0);
    app.append_exemplar(series("m", "gone"), exemplar("g", 100));
    app.append_exemplar(series("m", "0"), exemplar("a", 50));
    app.append_exemplar(series("m", "0"), exemplar("a", 50));
    app.append_exemplar(series("m", "nothing"), exemplar("x", 50));
    let report = app.commit().unwrap();
    assert_eq!(report.exemplars, 2);
    assert_eq!(
        report.exemplar_errors,
        vec![
            (2, exemplars::ExemplarError::Duplicate),
            (3, exemplars::ExemplarError::UnknownSeries)
        ]
    );
    let traces = |s: &Storage| -> Vec<(String, i64)> {
        s.exemplars()
            .select(i64::MIN, i64::MAX, &[vec![]])
            .into_iter()
            .flat_map(|se| {
                let job = se.series.get("job").unwrap_or("").to_owned();
                se.exemplars
                    .into_iter()
                    .map(move |e| (job.clone(), e.timestamp_ms))
            })
            .collect()
    };
    assert_eq!(traces(&storage), [("0".into(), 50), ("gone".into(), 100)]);

    // Replayed from the WAL segments.
    drop(storage);
    let storage = open_small(tmp.path(), None, None);
    assert_eq!(traces(&storage), [("0".into(), 50), ("gone".into(), 100)]);

    // A cut drops "gone" from the head; the checkpoint replacing the
    // segments keeps only the live series' exemplar.
    ingest(&storage, 100, 3000);
    storage.run_maintenance().unwrap();
    assert!(
        !wal::list_segments(&tmp.path().join("wal"))
            .unwrap()
            .contains(&0)
    );
    drop(storage);
    let storage = open_small(tmp.path(), None, None);
    assert_eq!(traces(&storage), [("0".into(), 50)]);
}
