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
        },
        |_| {},
    )
    .unwrap()
}

fn all(storage: &Storage) -> Vec<SeriesSamples> {
    let m = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap();
    storage.select(&[m], i64::MIN, i64::MAX)
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
    let got = storage.select(&[Matcher::eq("job", "a")], 0, 5000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples[0], Sample { t: 1000, v: 1.0 });
    assert_eq!(got[0].samples[1].v.to_bits(), crate::model::STALE_NAN_BITS);
    // Time range is inclusive on both ends.
    assert_eq!(
        storage.select(&[Matcher::eq("job", "a")], 2000, 2000)[0]
            .samples
            .len(),
        1
    );
    assert!(
        storage
            .select(&[Matcher::eq("job", "a")], 3000, 4000)
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
