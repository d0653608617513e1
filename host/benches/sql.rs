//! SQL aggregation over 10M samples: Ember's `/api/v1/sql` against DuckDB
//! reading the same Parquet block directly, on the same machine.
//!
//! The block (2,000 series × 5,000 samples of `bench_gauge{job, instance}`)
//! is written with Ember's own block writer into a fresh data directory;
//! Ember (the release binary) serves it, and DuckDB (PyPI) opens its
//! `samples.parquet` and `series.parquet`. Each query runs once to warm up,
//! then `RUNS` times; the median wall time is reported (HTTP round trip
//! included for Ember, `fetchall()` included for DuckDB).
//!
//! `cargo bench -p ember --bench sql`

#[path = "common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use ember::model::{Labels, Sample};
use ember::storage::SeriesSamples;
use ember::storage::block::{BlockCompaction, write_block};

const SERIES: usize = 2_000;
const SAMPLES: usize = 5_000;
const STEP_MS: i64 = 15_000;
const T0: i64 = 1_704_067_200_000;
const RUNS: usize = 5;

struct Query {
    name: &'static str,
    ember: String,
    duckdb: String,
}

fn queries() -> Vec<Query> {
    let from = "read_parquet('{dir}/samples.parquet') s JOIN read_parquet('{dir}/series.parquet') r USING (series_id)";
    vec![
        Query {
            name: "avg/max/count by job, all 10M samples",
            ember: "SELECT job, count(*) AS n, avg(value) AS a, max(value) AS m FROM bench_gauge GROUP BY job ORDER BY job".into(),
            duckdb: format!("SELECT r.labels['job'] AS job, count(*) AS n, avg(s.value) AS a, max(s.value) AS m FROM {from} WHERE r.metric_name = 'bench_gauge' GROUP BY job ORDER BY job"),
        },
        Query {
            name: "one job, last quarter of the time range",
            ember: format!("SELECT count(*) AS n, avg(value) AS a FROM bench_gauge WHERE job = 'job-3' AND timestamp >= to_timestamp_millis({})", T0 + (SAMPLES as i64 * 3 / 4) * STEP_MS),
            duckdb: format!("SELECT count(*) AS n, avg(s.value) AS a FROM {from} WHERE r.metric_name = 'bench_gauge' AND r.labels['job'] = 'job-3' AND s.timestamp >= make_timestamp_ms({})", T0 + (SAMPLES as i64 * 3 / 4) * STEP_MS),
        },
    ]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .map_or(true, |s| !s.success())
    {
        println!("duckdb (PyPI) not installed; run tests/setup.sh. Skipping.");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");

    let started = Instant::now();
    let series: Vec<SeriesSamples> = (0..SERIES)
        .map(|i| {
            let job = format!("job-{}", i % 10);
            let instance = format!("host-{i}:9100");
            let labels = Labels::from_pairs([
                ("__name__", "bench_gauge"),
                ("job", job.as_str()),
                ("instance", instance.as_str()),
            ])
            .expect("labels");
            let samples = (0..SAMPLES)
                .map(|k| Sample {
                    t: T0 + k as i64 * STEP_MS,
                    v: ((i * 7 + k * 13) % 1000) as f64 / 4.0,
                })
                .collect();
            SeriesSamples {
                histograms: Vec::new(),
                id: labels.stable_hash(),
                labels,
                samples,
            }
        })
        .collect();
    let meta = write_block(
        &data,
        &series,
        T0,
        T0 + SAMPLES as i64 * STEP_MS,
        BlockCompaction {
            level: 1,
            sources: vec![],
        },
    )
    .expect("write block");
    drop(series);
    let block = data.join(&meta.ulid);
    println!(
        "block: {} series, {} samples, {:.1} MiB, written in {:?}",
        meta.stats.num_series,
        meta.stats.num_samples,
        meta.stats.num_bytes as f64 / (1 << 20) as f64,
        started.elapsed()
    );

    let port = common::free_port();
    let config = tmp.path().join("ember.yml");
    std::fs::write(&config, "global: {}\n").expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--push.listen-address=")
        .arg("--sql.listen-address=")
        .arg("--storage.tsdb.retention.time=100y")
        .arg("--sql.max-memory=4GB")
        .arg("--log.level=warn")
        .spawn()
        .expect("start ember");
    common::wait_ready(port, &mut child, Duration::from_secs(120));
    let agent = common::agent();

    println!(
        "\n| query | Ember /api/v1/sql (median) | DuckDB on the Parquet files (median) | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    for q in queries() {
        let url = format!("http://127.0.0.1:{port}/api/v1/sql");
        let run = || {
            let t = Instant::now();
            let mut r = agent
                .post(&url)
                .header("Content-Type", "text/plain")
                .send(q.ember.as_str())
                .expect("sql request");
            let body = r.body_mut().read_to_string().expect("body");
            assert_eq!(r.status(), 200, "{body}");
            (t.elapsed(), body)
        };
        let (_, body) = run();
        let ember_times: Vec<Duration> = (0..RUNS).map(|_| run().0).collect();

        let duck_sql = q.duckdb.replace("{dir}", &block.display().to_string());
        let script = format!(
            r#"
import duckdb, json, time
con = duckdb.connect()
q = """{duck_sql}"""
rows = con.sql(q).fetchall()
times = []
for _ in range({RUNS}):
    t = time.perf_counter()
    con.sql(q).fetchall()
    times.append(time.perf_counter() - t)
print(json.dumps({{"rows": rows, "times": times}}))
"#
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let duck: serde_json::Value = serde_json::from_slice(&out.stdout).expect("duckdb json");
        let duck_times: Vec<Duration> = duck["times"]
            .as_array()
            .expect("times")
            .iter()
            .map(|t| Duration::from_secs_f64(t.as_f64().unwrap_or(0.0)))
            .collect();
        // Same answer from both (counts exactly, averages to 1e-9).
        let ours: serde_json::Value = serde_json::from_str(&body).expect("ember json");
        let ours = &ours["data"]["rows"];
        let theirs = &duck["rows"];
        assert_eq!(
            ours.as_array().map(Vec::len),
            theirs.as_array().map(Vec::len)
        );
        for (a, b) in ours
            .as_array()
            .into_iter()
            .flatten()
            .zip(theirs.as_array().into_iter().flatten())
        {
            for (x, y) in a
                .as_array()
                .into_iter()
                .flatten()
                .zip(b.as_array().into_iter().flatten())
            {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => {
                        assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{x} vs {y}")
                    }
                    _ => assert_eq!(x, y),
                }
            }
        }
        let (e, d) = (median(ember_times), median(duck_times));
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.1}× |",
            q.name,
            e.as_secs_f64() * 1000.0,
            d.as_secs_f64() * 1000.0,
            e.as_secs_f64() / d.as_secs_f64()
        );
    }
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}
