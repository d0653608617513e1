//! PromQL latency over blocks in object storage, with a cold and a warm
//! chunk cache, against the same blocks on local disk.
//!
//! ```text
//! cargo bench --bench objstore -- [--runs N] [--store moto|filesystem]
//! ```
//!
//! Four 2-hour blocks of 2,000 gauges at 15 s (3.84M samples) are written
//! twice: into a local data directory, and into one that uploads them to
//! the bucket (moto's S3 server on localhost by default, so every remote
//! read is a real HTTP ranged GET) and then drops its local copies. Each
//! query runs through the PromQL engine:
//!
//! - local: blocks on local disk (after one warm-up run, so the page cache
//!   is warm as it would be on a busy server);
//! - cold: a fresh server view of the bucket per run, empty chunk cache
//!   (the block list and series tables are loaded before the clock starts,
//!   as the server does at start-up);
//! - warm: the same view again, chunks served from the local cache.
//!
//! Median and p90 per query and mode are printed; BENCHMARKS.md records
//! the method and the numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember::config::object_store::ObjectStoreConfig;
use ember::model::{Labels, Sample};
use ember::promql::{Engine, EngineOptions, QueryOptions};
use ember::storage::block::{BlockCompaction, write_block};
use ember::storage::bucket::ObjectStorage;
use ember::storage::bucket::shipper::ship_once;
use ember::storage::{SeriesSamples, Storage, StorageOptions};

const START_MS: i64 = 1_800_000_000_000 / 7_200_000 * 7_200_000;
const SERIES: usize = 2_000;
const BLOCKS: i64 = 4;
const STEP_MS: i64 = 15_000;
const BLOCK_MS: i64 = 7_200_000;

fn series(block: i64) -> Vec<SeriesSamples> {
    (0..SERIES)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("instance", &format!("host-{i:04}")),
                ("job", &format!("job-{}", i % 10)),
            ])
            .expect("labels");
            let from = START_MS + block * BLOCK_MS;
            let samples = (0..BLOCK_MS / STEP_MS)
                .map(|k| {
                    let t = from + k * STEP_MS;
                    // Gauge-like noise: about 7 bytes per sample after zstd, as
                    // real-world float values are, so pruning has bytes to save.
                    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ t as u64;
                    x ^= x >> 29;
                    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    x ^= x >> 32;
                    Sample {
                        t,
                        v: (x % 10_000_000) as f64 / 1000.0,
                    }
                })
                .collect();
            SeriesSamples {
                id: labels.stable_hash(),
                labels,
                samples,
                histograms: Vec::new(),
            }
        })
        .collect()
}

fn write_blocks(dir: &Path) {
    std::fs::create_dir_all(dir).expect("data dir");
    for b in 0..BLOCKS {
        let from = START_MS + b * BLOCK_MS;
        write_block(
            dir,
            &series(b),
            from,
            from + BLOCK_MS,
            BlockCompaction {
                level: 1,
                sources: vec![],
            },
        )
        .expect("write block");
    }
}

fn engine(storage: Arc<Storage>) -> Engine {
    Engine::new(
        storage,
        EngineOptions {
            lookback_delta_ms: 300_000,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            default_subquery_step_ms: 60_000,
        },
    )
}

fn open_storage(dir: &Path) -> Arc<Storage> {
    let (s, _) = Storage::open(dir, StorageOptions::default(), |_| {}).expect("open storage");
    Arc::new(s)
}

struct Query {
    name: &'static str,
    expr: &'static str,
    range: bool,
}

const QUERIES: &[Query] = &[
    Query {
        name: "one series, 8h range",
        expr: r#"rate(http_requests_total{instance="host-0007"}[5m])"#,
        range: true,
    },
    Query {
        name: "job (200 series), instant",
        expr: r#"sum(http_requests_total{job="job-3"})"#,
        range: false,
    },
    Query {
        name: "all 2000 series, 8h range",
        expr: "sum by (job) (rate(http_requests_total[5m]))",
        range: true,
    },
];

async fn run_query(engine: &Engine, q: &Query) -> Duration {
    let end = START_MS + BLOCKS * BLOCK_MS - STEP_MS;
    let opts = QueryOptions::default();
    let started = Instant::now();
    let result = if q.range {
        engine
            .range_query(q.expr, START_MS + 600_000, end, 60_000, &opts)
            .await
    } else {
        engine.instant_query(q.expr, end, &opts).await
    };
    let took = started.elapsed();
    match result {
        Ok(r) => assert!(r.warnings.is_empty(), "{}: {:?}", q.name, r.warnings),
        Err(e) => panic!("{}: {e}", q.name),
    }
    took
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p90 = ((v.len() * 9).div_ceil(10)).clamp(1, v.len()) - 1;
    (ms(v[v.len() / 2]), ms(v[p90]))
}

/// moto's S3 server, killed on drop.
struct Moto(std::process::Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto (pip install 'moto[server]')");
    let moto = Moto(child, port);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ureq::get(&url).call().is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    ureq::put(format!("{url}/bench"))
        .send_empty()
        .expect("create bucket");
    moto
}

fn main() {
    let mut runs = 10usize;
    let mut store = "moto".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            "--store" => store = args.next().unwrap_or(store),
            _ => {}
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let _moto;
    let cfg_text = match store.as_str() {
        "moto" => {
            let m = start_moto();
            let text = format!(
                "type: s3\nbucket: bench\nendpoint: http://127.0.0.1:{}\nregion: us-east-1\n\
                 access_key_id: test\nsecret_access_key: test\nlocal_retention: 0s\ncache_size: 4GB\n",
                m.1
            );
            _moto = Some(m);
            text
        }
        _ => {
            _moto = None;
            format!(
                "type: filesystem\ndirectory: {}\nlocal_retention: 0s\ncache_size: 4GB\n",
                tmp.path().join("bucket").display()
            )
        }
    };
    let cfg: ObjectStoreConfig = serde_yaml::from_str(&cfg_text).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    eprintln!("writing {BLOCKS} blocks of {SERIES} series twice ...");
    let local_dir = tmp.path().join("local");
    write_blocks(&local_dir);
    let upload_dir = tmp.path().join("upload");
    write_blocks(&upload_dir);
    let bytes: u64 = std::fs::read_dir(&local_dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::metadata(e.path().join("samples.parquet")).ok())
        .map(|m| m.len())
        .sum();
    eprintln!("samples.parquet total: {:.1} MiB", bytes as f64 / 1048576.0);

    // Upload once, dropping the local copies.
    {
        let storage = open_storage(&upload_dir);
        let os = ObjectStorage::open(&cfg, BTreeMap::new(), &upload_dir).expect("bucket");
        let report = ship_once(&storage, &os).expect("upload");
        assert_eq!(report.uploaded, BLOCKS as usize, "{report:?}");
        assert!(storage.blocks().is_empty());
    }

    let local = engine(open_storage(&local_dir));
    let mut n = 0;
    let mut fresh_view = || -> (Engine, Arc<ObjectStorage>) {
        n += 1;
        let dir: PathBuf = tmp.path().join(format!("reader-{n}"));
        let storage = open_storage(&dir);
        let os = Arc::new(ObjectStorage::open(&cfg, BTreeMap::new(), &dir).expect("bucket"));
        os.sync_catalog().expect("list bucket");
        storage.attach_bucket(os.clone());
        (engine(storage), os)
    };

    println!("store: {store}, runs: {runs}");
    println!(
        "{:<28} {:>16} {:>16} {:>16} {:>12}",
        "query", "local ms (p50/90)", "cold ms (p50/90)", "warm ms (p50/90)", "cold fetched"
    );
    for q in QUERIES {
        rt.block_on(run_query(&local, q));
        let local_t: Vec<Duration> = (0..runs)
            .map(|_| rt.block_on(run_query(&local, q)))
            .collect();
        let mut cold_t = Vec::new();
        let mut fetched = 0u64;
        for _ in 0..runs {
            let (e, os) = fresh_view();
            cold_t.push(rt.block_on(run_query(&e, q)));
            fetched = os.cache.used();
        }
        let (warm_engine, _os) = fresh_view();
        rt.block_on(run_query(&warm_engine, q));
        let warm_t: Vec<Duration> = (0..runs)
            .map(|_| rt.block_on(run_query(&warm_engine, q)))
            .collect();
        let (l50, l90) = stats(local_t);
        let (c50, c90) = stats(cold_t);
        let (w50, w90) = stats(warm_t);
        println!(
            "{:<28} {:>7.1} / {:>6.1} {:>7.1} / {:>6.1} {:>7.1} / {:>6.1} {:>9.1} MiB",
            q.name,
            l50,
            l90,
            c50,
            c90,
            w50,
            w90,
            fetched as f64 / 1048576.0
        );
    }
}
