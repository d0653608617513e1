//! `ember tsdb create-blocks-from openmetrics` against promtool's backfill on
//! the same file, and the resulting blocks served by the real server.

mod support;

use std::path::Path;
use std::time::Duration;

use ember::model::Matcher;
use ember::storage::{Storage, StorageOptions};
use support::*;

/// 3 hours of 200 series at 15s, starting at a block boundary.
fn write_input(path: &Path) {
    let start = 1_700_006_400i64; // 2023-11-15T00:00:00Z
    let mut text = String::from("# HELP jobs_total Jobs.\n# TYPE jobs counter\n");
    for s in 0..200 {
        for k in 0..720 {
            let t = start + k * 15;
            text.push_str(&format!(
                "jobs_total{{queue=\"q{s}\",note=\"a \\\"quoted\\\" \\\\ value\"}} {}.{} {t}.{:03}\n",
                k * (s + 1),
                k % 10,
                (s * 7 + k) % 1000
            ));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(path, text).unwrap();
}

fn block_stats(dir: &Path) -> Vec<(i64, u64)> {
    let mut out: Vec<(i64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("meta.json")).ok())
        .map(|text| {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            // Prometheus's minTime is the first sample, ours the window start: compare windows.
            let window = v["minTime"].as_i64().unwrap().div_euclid(7_200_000) * 7_200_000;
            (window, v["stats"]["numSamples"].as_u64().unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn same_file_same_blocks_as_promtool_and_served_by_ember() {
    let setup = Setup::new();
    let input = setup.path().join("input.om");
    write_input(&input);
    let out = run(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        &input.to_string_lossy(),
        &setup.data_dir().to_string_lossy(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.starts_with("BLOCK ULID"), "{listing}");
    let ours = block_stats(&setup.data_dir());
    assert_eq!(ours.iter().map(|b| b.1).sum::<u64>(), 200 * 720);

    if require_program("promtool", "prometheus") {
        let prom_dir = setup.path().join("prom");
        let status = std::process::Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
            .arg(&input)
            .arg(&prom_dir)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            ours,
            block_stats(&prom_dir),
            "same 2h windows with the same sample counts"
        );
    }

    // Bad input: a clear error naming the line, exit 1.
    let bad = setup.path().join("bad.om");
    std::fs::write(&bad, "m 1 1\nm{x=\"1\" 2 2\n# EOF\n").unwrap();
    let out = run(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        &bad.to_string_lossy(),
        &setup.path().join("x").to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.om") && stderr.contains("line 2"),
        "{stderr}"
    );

    // The server loads the blocks as its own.
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--storage.tsdb.retention.time=100y"]);
    ember.wait_ready();
    assert_eq!(
        ember.metric("ember_tsdb_blocks_loaded"),
        Some(ours.len() as f64)
    );
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));
    let (storage, _) = Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {}).unwrap();
    let got = storage
        .select(&[Matcher::eq("queue", "q3")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels.get("note"), Some("a \"quoted\" \\ value"));
    assert_eq!(got[0].samples.len(), 720);
    // Series q3, sample 1: millisecond part (3 * 7 + 1) % 1000 = 22.
    assert_eq!(got[0].samples[1].t, 1_700_006_415_022);
    assert_eq!(got[0].samples[1].v, 4.1);
}
