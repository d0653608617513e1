//! The real binary rebuilds its head from the WAL at start-up: it listens
//! first, stays unready until replay is done, and survives a damaged WAL tail.

mod support;

use std::path::Path;
use std::time::Duration;

use ember::model::Labels;
use ember::storage::{Storage, StorageOptions};
use support::*;

/// Writes `series` × `samples` samples into the data directory's WAL, the
/// way the server would have.
fn fill_wal(data: &Path, series: usize, samples: usize) {
    let (storage, _) = Storage::open(data, StorageOptions::default(), |_| {}).unwrap();
    for t in 0..samples {
        let mut app = storage.appender();
        for s in 0..series {
            let labels = Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total"),
                ("instance", &format!("host-{}", s / 8)),
                ("cpu", &format!("{}", s % 8)),
            ])
            .unwrap();
            app.append(labels, (t as i64) * 15_000, (t * s) as f64);
        }
        app.commit().unwrap();
    }
    storage.sync().unwrap();
}

fn position(logs: &str, needle: &str) -> usize {
    logs.find(needle)
        .unwrap_or_else(|| panic!("no {needle:?} in logs:\n{logs}"))
}

#[test]
fn replays_wal_before_becoming_ready() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    fill_wal(&setup.data_dir(), 20_000, 40);
    let mut ember = setup.start(&[]);
    // Best effort: catch the server listening but not ready yet.
    let mut saw_unready = false;
    for _ in 0..2000 {
        match get(&ember.url("/-/ready")) {
            Ok(r) if r.status == 503 => {
                saw_unready = true;
                let replay = get(&ember.url("/api/v1/status/walreplay")).unwrap();
                assert_eq!(replay.status, 200);
                break;
            }
            Ok(r) if r.status == 200 => break,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    ember.wait_ready();
    let logs = ember.logs();
    assert!(position(&logs, "Listening") < position(&logs, "WAL replay completed"));
    assert!(position(&logs, "WAL replay completed") < position(&logs, "Server is ready"));
    let replay: serde_json::Value =
        serde_json::from_str(&get(&ember.url("/api/v1/status/walreplay")).unwrap().body).unwrap();
    assert_eq!(replay["data"]["current"], replay["data"]["max"], "{replay}");
    assert_eq!(ember.metric("ember_tsdb_head_series"), Some(20_000.0));
    let tsdb: serde_json::Value =
        serde_json::from_str(&get(&ember.url("/api/v1/status/tsdb?limit=3")).unwrap().body)
            .unwrap();
    assert_eq!(tsdb["status"], "success");
    assert_eq!(tsdb["data"]["headStats"]["numSeries"], 20_000);
    assert_eq!(tsdb["data"]["headStats"]["minTime"], 0);
    assert_eq!(
        tsdb["data"]["seriesCountByMetricName"][0]["name"],
        "node_cpu_seconds_total"
    );
    assert_eq!(tsdb["data"]["seriesCountByMetricName"][0]["value"], 20_000);
    assert_eq!(
        tsdb["data"]["seriesCountByLabelValuePair"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        get(&ember.url("/api/v1/status/tsdb?limit=x"))
            .unwrap()
            .status,
        400
    );
    println!("observed /-/ready 503 during replay: {saw_unready}");
}

#[test]
fn damaged_wal_tail_is_cut_and_the_server_starts() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    fill_wal(&setup.data_dir(), 100, 10);
    let seg = setup.data_dir().join("wal/00000000");
    let mut data = std::fs::read(&seg).unwrap();
    let n = data.len();
    // Overwrite the last record's tail, as a torn write would leave it.
    for b in &mut data[n - 40..] {
        *b = 0;
    }
    std::fs::write(&seg, data).unwrap();

    let mut ember = setup.start(&[]);
    ember.wait_ready();
    let logs = ember.logs();
    assert!(logs.contains("WAL was damaged"), "{logs}");
    assert!(logs.contains("bytes_lost="), "{logs}");
    // Every series survived: the damage is confined to the last commit's samples.
    assert_eq!(ember.metric("ember_tsdb_head_series"), Some(100.0));
    // And the repaired WAL is clean on the next start.
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));
    let mut again = setup.start(&[]);
    again.wait_ready();
    assert!(
        !again.logs().contains("WAL was damaged"),
        "{}",
        again.logs()
    );
}

#[test]
fn running_server_cuts_blocks_in_the_background() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    // 40 samples 15 minutes apart: 10 hours of data for 50 series.
    {
        let (storage, _) =
            Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {}).unwrap();
        for t in 0..40i64 {
            let mut app = storage.appender();
            for s in 0..50 {
                let labels =
                    Labels::from_pairs([("__name__", "m"), ("s", &s.to_string())]).unwrap();
                app.append(labels, t * 15 * 60_000, t as f64);
            }
            app.commit().unwrap();
        }
    }
    let mut ember = setup.start(&[
        "--storage.tsdb.min-block-duration=1h",
        "--storage.tsdb.retention.time=100y",
    ]);
    ember.wait_ready();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ember.metric("ember_tsdb_head_cuts_total").unwrap_or(0.0) < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no block cut: {}",
            ember.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ember.logs().contains("Cut head into block"),
        "{}",
        ember.logs()
    );
    let blocks = std::fs::read_dir(setup.data_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count();
    assert!(blocks >= 1);
    // Everything is still there after a restart: blocks plus the checkpointed head.
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));

    let data = setup.data_dir().to_string_lossy().into_owned();
    let out = run(&["tsdb", "list", &data]);
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.starts_with("BLOCK ULID\tMIN TIME"), "{listing}");
    let blocks_now = std::fs::read_dir(setup.data_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count();
    assert_eq!(listing.lines().count(), blocks_now + 1, "{listing}");
    let out = run(&["tsdb", "list", "-r", &data]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1970-01-01"));
    let out = run(&["tsdb", "analyze", &data]);
    assert!(out.status.success());
    let analysis = String::from_utf8_lossy(&out.stdout);
    assert!(
        analysis.contains("Highest cardinality metric names:\n50\tm"),
        "{analysis}"
    );
    assert!(analysis.contains("bytes per sample"), "{analysis}");
    let out = run(&["tsdb", "analyze", &data, "01NOSUCHBLOCK"]);
    assert_eq!(out.status.code(), Some(1));

    let (storage, _) = Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {}).unwrap();
    let m = ember::model::Matcher::eq("__name__", "m");
    let got = storage.select(&[m], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|s| s.samples.len() == 40));
}
