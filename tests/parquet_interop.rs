//! A block written by Ember reads back identically with pyarrow, a Parquet
//! reader that knows nothing about Ember.

use std::path::Path;
use std::process::Command;

use ember::model::{Labels, MatchOp, Matcher, Sample};
use ember::storage::SeriesSamples;
use ember::storage::block::{Block, BlockCompaction, write_block};

fn pyarrow_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pyarrow"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("pyarrow is required under CI (tests/setup.sh installs it)");
    }
    ok
}

fn bits(v: f64) -> String {
    format!("{:016x}", v.to_bits())
}

#[test]
fn pyarrow_reads_the_same_samples_ember_returns() {
    if !pyarrow_available() {
        println!("pyarrow not installed; skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    for i in 0..200 {
        let labels = Labels::from_pairs([
            (
                "__name__",
                if i % 3 == 0 {
                    "node_load1"
                } else {
                    "node_cpu_seconds_total"
                },
            ),
            ("instance", &format!("host-{}:9100", i / 10)),
            ("mode", ["idle", "user", "system"][i % 3]),
            ("quote", "a \"b\" \\ c ✓"),
            ("series", &i.to_string()),
        ])
        .unwrap();
        let samples = (0..120)
            .map(|t| Sample {
                t: 1_700_000_000_000 + t * 15_000,
                v: match t {
                    7 => f64::from_bits(ember::model::STALE_NAN_BITS),
                    8 => f64::INFINITY,
                    9 => -0.0,
                    _ => (t as f64) * 1.5 + i as f64,
                },
            })
            .collect();
        input.push(SeriesSamples {
            histograms: Vec::new(),
            id: labels.stable_hash(),
            labels,
            samples,
        });
    }
    let meta = write_block(
        tmp.path(),
        &input,
        1_700_000_000_000,
        1_700_000_000_000 + 2 * 3_600_000,
        BlockCompaction {
            level: 1,
            sources: vec![],
        },
    )
    .unwrap();
    let dir = tmp.path().join(&meta.ulid);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/read_block.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let block = Block::open(&dir).unwrap();
    let any = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap();
    let ours = block.select(&[any], i64::MIN, i64::MAX).unwrap();
    let py_series = py["series"].as_array().unwrap();
    assert_eq!(ours.len(), input.len(), "ember lost series");
    assert_eq!(py_series.len(), ours.len());
    for (p, o) in py_series.iter().zip(&ours) {
        for l in o.labels.iter() {
            assert_eq!(p["labels"][&*l.name], *l.value, "{}", o.labels);
        }
        assert_eq!(p["labels"].as_object().unwrap().len(), o.labels.len());
        let ps = p["samples"].as_array().unwrap();
        assert_eq!(ps.len(), o.samples.len());
        for (ps, os) in ps.iter().zip(&o.samples) {
            assert_eq!(ps[0].as_i64().unwrap(), os.t);
            assert_eq!(ps[1].as_str().unwrap(), bits(os.v));
        }
    }
}
