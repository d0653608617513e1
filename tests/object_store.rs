//! Blocks in object storage against a real S3-compatible server: moto in
//! server mode (PyPI `moto[server]`), reached through a small TCP proxy the
//! tests can slow down or cut off. Blocks are made quickly with
//! `ember tsdb create-blocks-from openmetrics` before Ember starts.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const START: i64 = 1_700_006_400; // 2023-11-15T00:00:00Z, a block boundary
const BUCKET: &str = "ember";

/// moto's S3 server on a free port, with the test bucket created.
struct Moto {
    port: u16,
    _child: KillOnDrop,
}

impl Moto {
    fn start(dir: &Path) -> Option<Moto> {
        if !require_python_module("moto.server") || !require_python_module("boto3") {
            return None;
        }
        let port = free_port();
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start moto");
        let moto = Moto {
            port,
            _child: KillOnDrop(child),
        };
        wait_until(Duration::from_secs(30), "moto to listen", || {
            get(&moto.url("/")).is_ok()
        });
        let r = put(&moto.url(&format!("/{BUCKET}"))).expect("create bucket");
        assert_eq!(r.status, 200, "create bucket: {}", r.body);
        Some(moto)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every object in the bucket with its size (listed with boto3), and
    /// the parsed `meta.json` files.
    fn objects_and_metas(
        &self,
    ) -> (
        std::collections::BTreeMap<String, u64>,
        std::collections::BTreeMap<String, Value>,
    ) {
        let out = python(
            &format!(
                r#"
import boto3, json
s3 = boto3.client("s3", endpoint_url="{}", aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
sizes, metas = {{}}, {{}}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="{BUCKET}"):
    for o in page.get("Contents", []):
        sizes[o["Key"]] = o["Size"]
        if o["Key"].endswith("/meta.json"):
            body = s3.get_object(Bucket="{BUCKET}", Key=o["Key"])["Body"].read()
            metas[o["Key"]] = json.loads(body)
print(json.dumps([sizes, metas]))
"#,
                self.url("")
            ),
            &[],
        );
        serde_json::from_str(&out).unwrap()
    }

    fn objects(&self) -> std::collections::BTreeMap<String, u64> {
        self.objects_and_metas().0
    }

    /// Downloads the bucket into `dir` (same layout).
    fn download(&self, dir: &Path) {
        python(
            &format!(
                r#"
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url="{}", aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="{BUCKET}"):
    for o in page.get("Contents", []):
        path = os.path.join(sys.argv[1], o["Key"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file("{BUCKET}", o["Key"], path)
"#,
                self.url("")
            ),
            &[&dir.to_string_lossy()],
        );
    }

    /// Blocks whose `meta.json` is in the bucket (visible to readers);
    /// asserts each has every file its meta lists, at the listed size.
    fn check_visible_blocks(&self) -> Vec<Value> {
        let (objects, all_metas) = self.objects_and_metas();
        let mut metas = Vec::new();
        for (key, meta) in all_metas {
            let ulid = key.trim_end_matches("/meta.json");
            let files = meta["shipped"]["files"].as_array().expect("shipped.files");
            assert_eq!(files.len(), 2, "{meta}");
            for f in files {
                let name = format!("{ulid}/{}", f["relPath"].as_str().unwrap());
                assert_eq!(
                    objects.get(&name).copied(),
                    f["sizeBytes"].as_u64(),
                    "{name} of a visible block: {objects:?}"
                );
            }
            metas.push(meta);
        }
        metas
    }
}

fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP proxy in front of moto that can be cut off (connections refused
/// and open ones dropped) or made to hold back requests for `meta.json`.
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

struct ProxyState {
    up: AtomicBool,
    hold_meta: AtomicBool,
    held: AtomicU64,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            up: AtomicBool::new(true),
            hold_meta: AtomicBool::new(false),
            held: AtomicU64::new(0),
        });
        let s = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !s.up.load(SeqCst) {
                    continue; // dropped: connection reset
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to, upstream) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let s = s.clone();
                    std::thread::spawn(move || pump(from, to, upstream, &s));
                }
            }
        });
        Proxy { port, state }
    }

    fn set_up(&self, up: bool) {
        self.state.up.store(up, SeqCst);
    }

    fn hold_meta(&self, hold: bool) {
        self.state.hold_meta.store(hold, SeqCst);
    }

    fn held(&self) -> u64 {
        self.state.held.load(SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, upstream: bool, s: &ProxyState) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    loop {
        if !s.up.load(SeqCst) {
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
            return;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        if upstream && s.hold_meta.load(SeqCst) && buf[..n].windows(10).any(|w| w == b"meta.json ")
        {
            s.held.fetch_add(1, SeqCst);
            while s.hold_meta.load(SeqCst) && s.up.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !s.up.load(SeqCst) {
                // Cut off while held: the request never reaches moto.
                continue;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A sample value that compresses badly, so blocks have some size.
fn value(series: usize, step: i64) -> f64 {
    let mut x = (series as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (step as u64);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x % 1_000_000) as f64 / 7.0
}

/// `hours` of `series` series `jobs_total{queue}` at 15s (offset by
/// `offset_s`), made into blocks in `data_dir`.
fn make_blocks(dir: &Path, data_dir: &Path, series: usize, hours: i64, offset_s: i64) {
    let input = dir.join(format!("input-{offset_s}.om"));
    let mut text = String::from("# TYPE jobs counter\n");
    for s in 0..series {
        for k in 0..hours * 240 {
            let t = START + k * 15 + offset_s;
            text.push_str(&format!(
                "jobs_total{{queue=\"q{s}\"}} {} {t}\n",
                value(s, k)
            ));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(&input, text).unwrap();
    let out = run(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        &input.to_string_lossy(),
        &data_dir.to_string_lossy(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn local_blocks(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("meta.json").exists())
                .collect()
        })
        .unwrap_or_default()
}

fn config(endpoint_port: u16, external_labels: &str, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 15s\n  external_labels: {external_labels}\n\
         storage:\n  object_store:\n    type: s3\n    bucket: {BUCKET}\n\
         \x20   endpoint: http://127.0.0.1:{endpoint_port}\n    region: us-east-1\n\
         \x20   access_key_id: test\n    secret_access_key: test\n    sync_interval: 1s\n{extra}"
    )
}

fn query(ember: &Ember, q: &str, time: i64) -> Value {
    let (status, v) = get_json(&ember.url(&format!("/api/v1/query?query={}&time={time}", enc(q))));
    assert_eq!(status, 200, "{q}: {v}");
    v
}

fn scalar_of(v: &Value) -> f64 {
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("no value: {v}"))
        .parse()
        .unwrap()
}

fn sql(ember: &Ember, q: &str) -> Value {
    let (status, v) = get_json(&ember.url(&format!("/api/v1/sql?query={}&format=json", enc(q))));
    assert_eq!(status, 200, "{q}: {v}");
    v
}

const SERIES: usize = 20;
const HOURS: i64 = 4;

#[test]
fn blocks_are_uploaded_removed_locally_and_queried_from_the_bucket() {
    let setup = Setup::new();
    let Some(moto) = Moto::start(setup.path()) else {
        return;
    };
    make_blocks(setup.path(), &setup.data_dir(), SERIES, HOURS, 0);
    assert_eq!(local_blocks(&setup.data_dir()).len(), 2);
    setup.write_config(&config(
        moto.port,
        "{site: a}",
        "    local_retention: 0s\n    cache_size: 64MB\n",
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    wait_until(Duration::from_secs(60), "uploads and local removal", || {
        local_blocks(&setup.data_dir()).is_empty()
    });
    let metas = moto.check_visible_blocks();
    assert_eq!(metas.len(), 2, "{metas:?}");
    for m in &metas {
        assert_eq!(m["shipped"]["labels"], serde_json::json!({"site": "a"}));
        assert_eq!(m["format"], "ember-parquet-v1");
    }
    assert!(ember.metric("ember_objstore_uploads_total").unwrap() >= 2.0);

    // SQL learns a metric's columns from series tables only: a query whose
    // time range misses every block fetches nothing from the bucket.
    let reads = || ember.metric_sum("ember_objstore_cache_requests_total");
    let reads_before = reads();
    // START + HOURS + 1h: after the last uploaded sample.
    let v = sql(
        &ember,
        "SELECT count(*) AS n FROM jobs_total WHERE timestamp >= TIMESTAMP '2023-11-15T05:00:00Z'",
    );
    assert_eq!(v["data"]["rows"][0][0].as_f64(), Some(0.0), "{v}");
    assert_eq!(reads(), reads_before, "chunk reads for a pruned SQL query");

    // PromQL over blocks that are only in the bucket now (cold cache, then warm).
    let end = START + HOURS * 3600;
    let total = (SERIES as i64 * HOURS * 240) as f64;
    for _ in 0..2 {
        let v = query(&ember, "sum(count_over_time(jobs_total[5h]))", end);
        assert_eq!(scalar_of(&v), total, "{v}");
        assert!(v.get("warnings").is_none(), "{v}");
    }
    let v = query(&ember, r#"jobs_total{queue="q3"}"#, START + 3600);
    assert_eq!(scalar_of(&v), value(3, 240), "{v}");
    assert!(
        ember
            .metric("ember_objstore_cache_requests_total")
            .is_some()
    );

    // SQL reads the same blocks.
    let v = sql(&ember, "SELECT count(*) AS n FROM jobs_total");
    assert_eq!(v["data"]["rows"][0][0].as_f64(), Some(total), "{v}");

    // Other engines: DuckDB over the bucket's files as uploaded.
    if require_python_module("duckdb") {
        let copy = setup.path().join("bucket-copy");
        moto.download(&copy);
        let out = python(
            r#"
import duckdb, sys
d = sys.argv[1]
con = duckdb.connect()
n, = con.execute(f"SELECT count(*) FROM read_parquet('{d}/*/samples.parquet')").fetchone()
joined, = con.execute(f"""
    SELECT count(*) FROM read_parquet('{d}/*/samples.parquet', filename = true) s
    JOIN read_parquet('{d}/*/series.parquet', filename = true) r
      ON s.series_id = r.series_id
     AND replace(s.filename, 'samples.parquet', '') = replace(r.filename, 'series.parquet', '')
    WHERE r.metric_name = 'jobs_total'""").fetchone()
listed, = con.execute(f"SELECT sum(num_samples) FROM read_parquet('{d}/*/series.parquet')").fetchone()
print(n, joined, listed)
"#,
            &[&copy.to_string_lossy()],
        );
        let want = format!("{t} {t} {t}", t = total as i64);
        assert_eq!(out.trim(), want);
    }
}

#[test]
fn killed_upload_never_leaves_a_visible_half_written_block() {
    let setup = Setup::new();
    let Some(moto) = Moto::start(setup.path()) else {
        return;
    };
    let proxy = Proxy::start(moto.port);
    make_blocks(setup.path(), &setup.data_dir(), SERIES, HOURS, 0);
    setup.write_config(&config(
        proxy.port,
        "{site: a}",
        "    local_retention: 0s\n",
    ));
    // Ember gets as far as it can: the Parquet files of a block are in the
    // bucket, its meta.json is on the wire. Then it is killed.
    proxy.hold_meta(true);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    wait_until(Duration::from_secs(30), "a meta.json upload", || {
        proxy.held() > 0
    });
    let data_files = |objects: &std::collections::BTreeMap<String, u64>| {
        objects.keys().filter(|k| k.ends_with(".parquet")).count()
    };
    wait_until(
        Duration::from_secs(30),
        "the data files in the bucket",
        || data_files(&moto.objects()) >= 2,
    );
    ember.signal(libc::SIGKILL);
    ember.wait_exit(Duration::from_secs(10));
    // The held request dies with the connection.
    proxy.set_up(false);
    std::thread::sleep(Duration::from_millis(300));
    proxy.hold_meta(false);
    proxy.set_up(true);
    let objects = moto.objects();
    assert_eq!(data_files(&objects), 2, "{objects:?}");
    assert!(
        !objects.keys().any(|k| k.ends_with("meta.json")),
        "{objects:?}"
    );
    assert!(moto.check_visible_blocks().is_empty());
    // Nothing was removed locally that is not safely uploaded.
    assert_eq!(local_blocks(&setup.data_dir()).len(), 2);

    // A reader of the bucket does not see the half-written block.
    let reader = Setup::new();
    reader.write_config(&config(moto.port, "{site: a}", "    upload: false\n"));
    let mut r = reader.start(&[]);
    r.wait_ready();
    wait_until(Duration::from_secs(30), "the reader's listing", || {
        r.metric("ember_objstore_syncs_total").unwrap_or(0.0) >= 1.0
    });
    assert_eq!(r.metric("ember_objstore_remote_blocks"), Some(0.0));
    let v = query(&r, "count(jobs_total)", START + 3600);
    assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");

    // A restart uploads everything again, completely.
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    wait_until(Duration::from_secs(60), "uploads after restart", || {
        local_blocks(&setup.data_dir()).is_empty()
    });
    assert_eq!(moto.check_visible_blocks().len(), 2);
    let v = query(
        &ember,
        "sum(count_over_time(jobs_total[5h]))",
        START + HOURS * 3600,
    );
    assert_eq!(scalar_of(&v), (SERIES as i64 * HOURS * 240) as f64, "{v}");
    // The reader sees the blocks once they are complete.
    wait_until(Duration::from_secs(30), "the reader's next listing", || {
        r.metric("ember_objstore_remote_blocks") == Some(2.0)
    });
    let v = query(&r, "count(jobs_total)", START + 3600);
    assert_eq!(scalar_of(&v), SERIES as f64, "{v}");
}

#[test]
fn unreachable_bucket_keeps_local_data_retries_and_answers_with_a_warning() {
    let setup = Setup::new();
    let Some(moto) = Moto::start(setup.path()) else {
        return;
    };
    let proxy = Proxy::start(moto.port);
    proxy.set_up(false);
    make_blocks(setup.path(), &setup.data_dir(), SERIES, HOURS, 0);
    setup.write_config(&config(
        proxy.port,
        "{site: a}",
        "    local_retention: 0s\n",
    ));
    let pg = free_port();
    let pg_flag = format!("--sql.listen-address=127.0.0.1:{pg}");
    let mut ember = setup.start(&["--web.enable-remote-write-receiver", &pg_flag]);
    ember.wait_ready();
    let end = START + HOURS * 3600;
    let total = (SERIES as i64 * HOURS * 240) as f64;

    // Down from the start: nothing uploaded, nothing removed, queries whole.
    wait_until(Duration::from_secs(30), "failed syncs", || {
        ember
            .metric("ember_objstore_sync_failures_total")
            .unwrap_or(0.0)
            >= 2.0
    });
    assert_eq!(local_blocks(&setup.data_dir()).len(), 2);
    let v = query(&ember, "sum(count_over_time(jobs_total[5h]))", end);
    assert_eq!(scalar_of(&v), total, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");

    // Back: the upload is retried, then local copies go.
    proxy.set_up(true);
    wait_until(Duration::from_secs(60), "retried uploads", || {
        local_blocks(&setup.data_dir()).is_empty()
    });
    assert_eq!(moto.check_visible_blocks().len(), 2);

    // Recent data in the head, then the bucket goes away again (cold cache).
    write_series(
        &ember,
        &[(
            &[("__name__", "jobs_total"), ("queue", "head")],
            &[(end * 1000, 1.0), ((end + 15) * 1000, 2.0)],
        )],
    );
    proxy.set_up(false);
    let started = Instant::now();
    let v = query(&ember, "count(count_over_time(jobs_total[5h]))", end + 30);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(v["status"], "success", "{v}");
    // Only the head's series answered; the warning says what is missing.
    assert_eq!(scalar_of(&v), 1.0, "{v}");
    let warnings = v["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings: {v}"));
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("object storage")),
        "{v}"
    );
    // SQL answers the same way: over HTTP with `warnings`, over the
    // PostgreSQL protocol with WARNING notices.
    let distinct_queues = "SELECT count(DISTINCT queue) AS n FROM jobs_total";
    let v = sql(&ember, distinct_queues);
    assert_eq!(v["data"]["rows"], serde_json::json!([[1]]), "{v}");
    let sql_warnings = v["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no SQL warnings: {v}"));
    assert!(
        sql_warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("object storage")),
        "{v}"
    );
    let pg_answer = pg_notices(pg, distinct_queues);
    if let Some(answer) = &pg_answer {
        assert_eq!(answer["rows"], serde_json::json!([[1]]), "{answer}");
        let notices = answer["notices"].as_array().unwrap();
        assert!(
            notices.iter().any(|n| n[0] == "WARNING"
                && n[1] == "01000"
                && n[2].as_str().unwrap().contains("object storage")),
            "{answer}"
        );
    }
    if require_program("psql", "postgresql-client") {
        // psql's simple-query protocol prints notices on stderr.
        let out = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &pg.to_string(), "-U", "ember"])
            .args(["-d", "ember", "-X", "-A", "-t", "-c", distinct_queues])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        assert!(
            stderr.contains("WARNING:") && stderr.contains("object storage"),
            "{stderr}"
        );
    }

    // Reachable again: the full answer, no warning.
    proxy.set_up(true);
    let v = query(&ember, "count(count_over_time(jobs_total[5h]))", end + 30);
    assert_eq!(scalar_of(&v), (SERIES + 1) as f64, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    let v = sql(&ember, distinct_queues);
    assert_eq!(v["data"]["rows"], serde_json::json!([[SERIES + 1]]), "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    if pg_answer.is_some() {
        let answer = pg_notices(pg, distinct_queues).unwrap();
        assert_eq!(answer["notices"], serde_json::json!([]), "{answer}");
    }
}

/// Runs `q` over the PostgreSQL protocol with psycopg: its rows and the
/// notices received as `[severity, sqlstate, message]`. None without psycopg.
fn pg_notices(port: u16, q: &str) -> Option<Value> {
    if !require_python_module("psycopg") {
        return None;
    }
    let out = python(
        r#"
import json, psycopg, sys
notices = []
with psycopg.connect(host="127.0.0.1", port=int(sys.argv[1]), user="ember",
                     dbname="ember", connect_timeout=10) as conn:
    conn.add_notice_handler(
        lambda d: notices.append([d.severity, d.sqlstate, d.message_primary]))
    rows = [list(r) for r in conn.execute(sys.argv[2]).fetchall()]
print(json.dumps({"rows": rows, "notices": notices}))
"#,
        &[&port.to_string(), q],
    );
    Some(serde_json::from_str(out.trim()).unwrap())
}

#[test]
fn global_view_over_several_uploaders_deduplicates_replicas() {
    let setup = Setup::new();
    let Some(moto) = Moto::start(setup.path()) else {
        return;
    };
    // Shard a runs as a replicated pair (r1, r2, scraping 5s apart); shard
    // b has one replica with different series.
    let uploaders = [
        ("{shard: a, replica: r1}", 0, 10),
        ("{shard: a, replica: r2}", 5, 10),
        ("{shard: b, replica: r1}", 0, 4),
    ];
    for (i, (labels, offset, series)) in uploaders.iter().enumerate() {
        let dir = setup.path().join(format!("uploader-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let up = Setup {
            tmp: tempfile::tempdir_in(&dir).unwrap(),
        };
        make_blocks(up.path(), &up.data_dir(), *series, 2, *offset);
        up.write_config(&config(moto.port, labels, "    local_retention: 0s\n"));
        let mut ember = up.start(&[]);
        ember.wait_ready();
        wait_until(Duration::from_secs(60), "the uploader's blocks", || {
            local_blocks(&up.data_dir()).is_empty()
        });
    }
    assert_eq!(moto.check_visible_blocks().len(), 3);

    // A querier with its own blocks on local disk (4 hours of 3 series,
    // two blocks), its own head data, and no uploads.
    const OWN_SERIES: usize = 3;
    make_blocks(setup.path(), &setup.data_dir(), OWN_SERIES, HOURS, 0);
    assert_eq!(local_blocks(&setup.data_dir()).len(), 2);
    setup.write_config(&config(
        moto.port,
        "{shard: q, replica: r1}",
        "    upload: false\n    global_view: true\n    replica_labels: [replica]\n",
    ));
    let mut q = setup.start(&["--web.enable-remote-write-receiver"]);
    q.wait_ready();
    let t = START + 3600;
    // The head takes only samples newer than the local blocks.
    let t_head = START + HOURS * 3600 + 30;
    write_series(
        &q,
        &[(
            &[("__name__", "jobs_total"), ("queue", "own")],
            &[(t_head * 1000, 42.0)],
        )],
    );
    wait_until(
        Duration::from_secs(30),
        "the querier's bucket listing",
        || q.metric("ember_objstore_remote_blocks") == Some(3.0),
    );
    // Series with samples in the last 5 hours: the bucket's (first two
    // hours), the local blocks' (four hours) and the head's.
    let v = query(
        &q,
        "count by (shard) (count_over_time(jobs_total[5h]))",
        t_head,
    );
    let mut got: Vec<(String, f64)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["shard"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // Shard q: its local blocks' series and the head's.
    assert_eq!(
        got,
        [
            ("a".into(), 10.0),
            ("b".into(), 4.0),
            ("q".into(), (OWN_SERIES + 1) as f64)
        ],
        "{v}"
    );
    // The querier's own block series carry its external labels (but for
    // the replica label) and their own values.
    let v = query(&q, r#"jobs_total{shard="q", queue="q1"}"#, t);
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    assert!(result[0]["metric"].get("replica").is_none(), "{v}");
    assert_eq!(scalar_of(&v), value(1, 240), "{v}");
    // All three sources in one aggregation over time: 2 hours of bucket
    // data per shard-a and shard-b series (shard a's replicas merged into
    // one), 4 hours of local blocks per own series, one head sample.
    let v = query(
        &q,
        r#"sum by (shard) (count_over_time(jobs_total[5h]))"#,
        t_head,
    );
    let mut got: Vec<(String, f64)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["shard"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), 3, "{v}");
    assert_eq!(got[1], ("b".into(), (4 * 480) as f64), "{v}");
    assert_eq!(
        got[2],
        ("q".into(), (OWN_SERIES as i64 * HOURS * 240 + 1) as f64),
        "{v}"
    );
    // Deduplicated: one replica's worth (480 per series, give or take the
    // sample where the 5 s offset replica runs past the other's last).
    let a = got[0].1;
    assert!((10.0 * 480.0..=10.0 * 481.0).contains(&a), "{v}");
    // Replica labels are gone, and a shard's series is one replica's data.
    let v = query(&q, r#"jobs_total{shard="a", queue="q2"}"#, t);
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    assert!(result[0]["metric"].get("replica").is_none(), "{v}");
    assert_eq!(scalar_of(&v), value(2, 240), "{v}");
    // Over two hours the deduplicated series has one replica's sample count.
    let v = query(
        &q,
        r#"count_over_time(jobs_total{shard="a", queue="q2"}[3h])"#,
        START + 2 * 3600 + 60,
    );
    let n = scalar_of(&v);
    assert!((480.0..=481.0).contains(&n), "{v}");

    // SQL sees the same global view.
    let v = sql(
        &q,
        "SELECT shard, count(DISTINCT queue) AS n FROM jobs_total GROUP BY shard ORDER BY shard",
    );
    assert_eq!(
        v["data"]["rows"],
        serde_json::json!([["a", 10], ["b", 4], ["q", OWN_SERIES + 1]]),
        "{v}"
    );
    let v = sql(
        &q,
        "SELECT shard, queue, count(*) AS n FROM jobs_total \
         WHERE queue IN ('q1', 'own') GROUP BY shard, queue ORDER BY shard, queue",
    );
    let rows = v["data"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{v}");
    assert_eq!(rows[0][0], "a", "{v}");
    let n = rows[0][2].as_i64().unwrap();
    assert!((480..=481).contains(&n), "replicas not merged: {v}");
    assert_eq!(
        rows[1..],
        [
            serde_json::json!(["b", "q1", 480]),
            serde_json::json!(["q", "own", 1]),
            serde_json::json!(["q", "q1", HOURS * 240])
        ],
        "{v}"
    );
    assert!(v.get("warnings").is_none(), "{v}");
}
