//! Bytes per sample on disk, Ember vs Prometheus, on the same data.
//!
//! ```text
//! cargo bench --bench storage_size -- [--series N] [--hours H] [--dir DIR] [--skip-prometheus]
//! ```
//!
//! 1. Generates node_exporter-like data from a fixed seed: per host, CPU
//!    counters at USER_HZ precision, byte counters, page-aligned memory and
//!    filesystem gauges, load averages, constant info/success series, scraped
//!    every 15s with a few milliseconds of jitter.
//! 2. Ember: appends every scrape through the appender (one commit per host
//!    and scrape, as a scrape loop does), cuts 2h blocks and compacts them,
//!    then reports block bytes / block samples. Append throughput is printed too.
//! 3. Prometheus: writes the same samples as OpenMetrics, runs
//!    `promtool tsdb create-blocks-from openmetrics`, starts Prometheus on the
//!    result so it compacts the blocks, then reports block bytes / samples.
//!
//! Results and method are recorded in BENCHMARKS.md.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ember::model::Labels;
use ember::storage::{Storage, StorageOptions};

const START_MS: i64 = 1_699_920_000_000; // 2023-11-14T00:00:00Z, a day boundary
const INTERVAL_MS: i64 = 15_000;

/// splitmix64: tiny, seedable and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// Counter increasing by `rate ± 50%` per scrape, rounded to `1/precision`.
    Counter { rate: f64, precision: f64 },
    /// Gauge doing a random walk in steps of `step`, bounded below by 0.
    Walk { step: f64, start: f64 },
    /// Gauge around `mean` with 2-decimal noise (load averages).
    Noisy { mean: f64 },
    /// Never changes.
    Constant(f64),
    /// The scrape time in seconds (node_time_seconds).
    Time,
}

struct Series {
    family: &'static str,
    type_: &'static str,
    name: String,
    labels: Labels,
    kind: Kind,
    value: f64,
    host: usize,
}

fn host_series(host: usize, rng: &mut Rng) -> Vec<Series> {
    let instance = format!("host-{host:04}:9100");
    let mut out = Vec::new();
    let mut add = |family: &'static str,
                   type_: &'static str,
                   name: &str,
                   extra: &[(&str, String)],
                   kind: Kind| {
        let mut pairs: Vec<(String, String)> = vec![
            ("__name__".into(), name.into()),
            ("instance".into(), instance.clone()),
            ("job".into(), "node".into()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let value = match kind {
            Kind::Walk { start, .. } => start,
            Kind::Constant(v) => v,
            _ => 0.0,
        };
        out.push(Series {
            family,
            type_,
            name: name.into(),
            labels: Labels::from_pairs(pairs).expect("valid labels"),
            kind,
            value,
            host,
        });
    };
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    for cpu in 0..8 {
        for (i, mode) in modes.iter().enumerate() {
            let rate = if i == 0 { 12.0 } else { 3.0 / (i as f64 + 1.0) };
            add(
                "node_cpu_seconds",
                "counter",
                "node_cpu_seconds_total",
                &[("cpu", cpu.to_string()), ("mode", mode.to_string())],
                Kind::Counter {
                    rate,
                    precision: 100.0,
                },
            );
        }
    }
    for dev in ["eth0", "lo"] {
        for dir in ["receive", "transmit"] {
            let name = format!("node_network_{dir}_bytes_total");
            let family: &'static str = if dir == "receive" {
                "node_network_receive_bytes"
            } else {
                "node_network_transmit_bytes"
            };
            add(
                family,
                "counter",
                &name,
                &[("device", dev.into())],
                Kind::Counter {
                    rate: 250_000.0,
                    precision: 1.0,
                },
            );
        }
    }
    for (m, start) in [
        ("MemAvailable", 8e9),
        ("MemFree", 2e9),
        ("Cached", 4e9),
        ("Buffers", 3e8),
        ("Active", 5e9),
        ("Inactive", 2e9),
        ("Dirty", 1e6),
        ("Slab", 4e8),
        ("SwapFree", 1e9),
        ("Committed_AS", 9e9),
    ] {
        let name = format!("node_memory_{m}_bytes");
        add(
            "node_memory",
            "gauge",
            &name,
            &[],
            Kind::Walk {
                step: 4096.0 * 64.0,
                start: (start / 4096.0f64).round() * 4096.0,
            },
        );
    }
    for mp in ["/", "/boot", "/home", "/var"] {
        add(
            "node_filesystem_avail_bytes",
            "gauge",
            "node_filesystem_avail_bytes",
            &[
                ("mountpoint", mp.into()),
                ("device", "/dev/sda1".into()),
                ("fstype", "ext4".into()),
            ],
            Kind::Walk {
                step: 4096.0 * 16.0,
                start: 5e10f64.round() * 4096.0 / 4096.0,
            },
        );
    }
    for (l, mean) in [
        ("node_load1", 1.2),
        ("node_load5", 1.0),
        ("node_load15", 0.9),
    ] {
        add("node_load", "gauge", l, &[], Kind::Noisy { mean });
    }
    for d in ["sda", "sdb"] {
        add(
            "node_disk_io_time_seconds",
            "counter",
            "node_disk_io_time_seconds_total",
            &[("device", d.into())],
            Kind::Counter {
                rate: 0.4,
                precision: 1000.0,
            },
        );
        add(
            "node_disk_read_bytes",
            "counter",
            "node_disk_read_bytes_total",
            &[("device", d.into())],
            Kind::Counter {
                rate: 40_960.0 * 8.0,
                precision: 1.0 / 512.0,
            },
        );
        add(
            "node_disk_written_bytes",
            "counter",
            "node_disk_written_bytes_total",
            &[("device", d.into())],
            Kind::Counter {
                rate: 40_960.0 * 20.0,
                precision: 1.0 / 512.0,
            },
        );
    }
    add(
        "node_procs_running",
        "gauge",
        "node_procs_running",
        &[],
        Kind::Walk {
            step: 1.0,
            start: 3.0,
        },
    );
    add(
        "node_procs_blocked",
        "gauge",
        "node_procs_blocked",
        &[],
        Kind::Walk {
            step: 1.0,
            start: 0.0,
        },
    );
    add(
        "node_time_seconds",
        "gauge",
        "node_time_seconds",
        &[],
        Kind::Time,
    );
    for c in [
        "cpu",
        "diskstats",
        "filesystem",
        "loadavg",
        "meminfo",
        "netdev",
        "stat",
        "time",
        "uname",
        "vmstat",
    ] {
        add(
            "node_scrape_collector_success",
            "gauge",
            "node_scrape_collector_success",
            &[("collector", c.into())],
            Kind::Constant(1.0),
        );
    }
    add(
        "node_exporter_build_info",
        "gauge",
        "node_exporter_build_info",
        &[("version", "1.5.0".into())],
        Kind::Constant(1.0),
    );
    let _ = rng.next();
    out
}

fn step(s: &mut Series, rng: &mut Rng, t_ms: i64) -> f64 {
    s.value = match s.kind {
        Kind::Counter { rate, precision } => {
            let inc = rate * (0.5 + rng.unit());
            ((s.value + inc) * precision).round() / precision
        }
        Kind::Walk { step, .. } => {
            let r = rng.unit();
            let d = if r < 0.3 {
                -step
            } else if r > 0.7 {
                step
            } else {
                0.0
            };
            (s.value + d).max(0.0)
        }
        Kind::Noisy { mean } => ((mean + (rng.unit() - 0.5)) * 100.0).round() / 100.0,
        Kind::Constant(v) => v,
        Kind::Time => (t_ms as f64) / 1000.0 + (rng.unit() * 1e6).round() / 1e9,
    };
    s.value
}

struct Args {
    series: usize,
    hours: i64,
    dir: PathBuf,
    skip_prometheus: bool,
}

fn args() -> Args {
    let mut a = Args {
        series: 10_000,
        hours: 24,
        dir: std::env::temp_dir().join("ember-bench-storage"),
        skip_prometheus: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--series" => a.series = it.next().and_then(|v| v.parse().ok()).expect("--series N"),
            "--hours" => a.hours = it.next().and_then(|v| v.parse().ok()).expect("--hours H"),
            "--dir" => a.dir = it.next().map(PathBuf::from).expect("--dir DIR"),
            "--skip-prometheus" => a.skip_prometheus = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// (bytes, samples) over block directories (those with meta.json) in `dir`.
fn blocks_size(dir: &Path) -> (u64, u64, usize) {
    let mut bytes = 0;
    let mut samples = 0;
    let mut n = 0;
    for e in std::fs::read_dir(dir)
        .expect("read data dir")
        .filter_map(Result::ok)
    {
        let meta = e.path().join("meta.json");
        if let Ok(text) = std::fs::read_to_string(&meta) {
            let v: serde_json::Value = serde_json::from_str(&text).expect("meta.json");
            samples += v["stats"]["numSamples"].as_u64().unwrap_or(0);
            bytes += dir_bytes(&e.path());
            n += 1;
        }
    }
    (bytes, samples, n)
}

fn main() {
    let a = args();
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).expect("bench dir");
    let hosts = a.series.div_ceil(host_series(0, &mut Rng(0)).len());
    let scrapes = (a.hours * 3600 * 1000 / INTERVAL_MS) as usize;

    let mut rng = Rng(42);
    let mut all: Vec<Series> = (0..hosts).flat_map(|h| host_series(h, &mut rng)).collect();
    all.truncate(a.series);
    let n_series = all.len();
    println!(
        "data: {n_series} series on {hosts} hosts, {scrapes} scrapes at 15s ({} h), {} samples",
        a.hours,
        n_series * scrapes
    );

    // Values for every (scrape, series), generated once so both systems get the same numbers.
    let mut times = vec![0i64; hosts * scrapes];
    let mut values = vec![0f64; n_series * scrapes];
    for k in 0..scrapes {
        for h in 0..hosts {
            // A few ms of jitter, as real scrape timestamps have.
            times[k * hosts + h] = START_MS + k as i64 * INTERVAL_MS + (rng.next() % 7) as i64;
        }
        for (i, s) in all.iter_mut().enumerate() {
            let t = times[k * hosts + s.host];
            values[k * n_series + i] = step(s, &mut rng, t);
        }
    }

    // Ember
    let ember_dir = a.dir.join("ember");
    let opts = StorageOptions {
        retention_ms: None,
        max_block_range_ms: 54 * 3600 * 1000,
        ..StorageOptions::default()
    };
    let (storage, _) = Storage::open(&ember_dir, opts, |_| {}).expect("open storage");
    let by_host: Vec<Vec<usize>> = (0..hosts)
        .map(|h| (0..n_series).filter(|&i| all[i].host == h).collect())
        .collect();
    let started = Instant::now();
    let mut maintenance = Duration::ZERO;
    for k in 0..scrapes {
        for (h, members) in by_host.iter().enumerate() {
            let mut app = storage.appender();
            let t = times[k * hosts + h];
            for &i in members {
                app.append(all[i].labels.clone(), t, values[k * n_series + i]);
            }
            app.commit().expect("commit");
        }
        if k % 240 == 239 {
            let m = Instant::now();
            storage.run_maintenance().expect("maintenance");
            maintenance += m.elapsed();
        }
    }
    let m = Instant::now();
    storage.run_maintenance().expect("maintenance");
    maintenance += m.elapsed();
    let total = started.elapsed();
    let appended = (n_series * scrapes) as f64;
    println!(
        "ember append: {:.0} samples/s including WAL writes ({:.1}s total, of which {:.1}s cutting/compacting)",
        appended / (total - maintenance).as_secs_f64(),
        total.as_secs_f64(),
        maintenance.as_secs_f64()
    );
    drop(storage);
    let (eb, es, en) = blocks_size(&ember_dir);
    println!(
        "ember blocks: {en} blocks, {es} samples, {eb} bytes, {:.3} bytes/sample",
        eb as f64 / es.max(1) as f64
    );

    if a.skip_prometheus {
        return;
    }
    // Prometheus: OpenMetrics file → promtool → Prometheus compacts.
    let om = a.dir.join("data.om");
    let started = Instant::now();
    {
        let mut w =
            BufWriter::with_capacity(1 << 20, std::fs::File::create(&om).expect("create om"));
        let mut line = String::new();
        // OpenMetrics forbids interleaving families: write each family whole.
        let mut families: Vec<&'static str> = Vec::new();
        for s in &all {
            if !families.contains(&s.family) {
                families.push(s.family);
            }
        }
        for family in families {
            let members: Vec<usize> = (0..n_series).filter(|&j| all[j].family == family).collect();
            writeln!(w, "# TYPE {family} {}", all[members[0]].type_).expect("write");
            for &j in &members {
                let s = &all[j];
                let mut labels = String::new();
                for l in s.labels.iter().filter(|l| &*l.name != "__name__") {
                    if !labels.is_empty() {
                        labels.push(',');
                    }
                    let _ = write!(labels, "{}=\"{}\"", l.name, l.value);
                }
                for k in 0..scrapes {
                    line.clear();
                    let t = times[k * hosts + s.host];
                    let _ = writeln!(
                        line,
                        "{}{{{labels}}} {} {}.{:03}",
                        s.name,
                        values[k * n_series + j],
                        t / 1000,
                        t % 1000
                    );
                    w.write_all(line.as_bytes()).expect("write");
                }
            }
        }
        writeln!(w, "# EOF").expect("write");
    }
    println!(
        "openmetrics file: {} bytes in {:.1}s",
        std::fs::metadata(&om).map(|m| m.len()).unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    let prom_dir = a.dir.join("prometheus");
    let started = Instant::now();
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&om)
        .arg(&prom_dir)
        .status()
        .expect("run promtool (install the Debian package prometheus)");
    assert!(status.success(), "promtool failed");
    let (pb, ps, pn) = blocks_size(&prom_dir);
    println!(
        "promtool backfill: {:.1}s, {pn} blocks, {ps} samples, {pb} bytes, {:.3} bytes/sample",
        started.elapsed().as_secs_f64(),
        pb as f64 / ps.max(1) as f64
    );
    let _ = std::fs::remove_file(&om);

    // Let Prometheus compact the 2h blocks as it would in production.
    let config = a.dir.join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").expect("write config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", prom_dir.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg("--storage.tsdb.max-block-duration=54h")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    // Compaction runs a minute after start; wait until the block count settles.
    let mut last = usize::MAX;
    let mut stable = 0;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_secs(10));
        let (_, _, n) = blocks_size(&prom_dir);
        if n == last {
            stable += 1;
            if stable >= 9 {
                break;
            }
        } else {
            stable = 0;
            last = n;
        }
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(prom.id().to_string())
        .status();
    let _ = prom.wait();
    let (pb, ps, pn) = blocks_size(&prom_dir);
    println!(
        "prometheus after compaction: {pn} blocks, {ps} samples, {pb} bytes, {:.3} bytes/sample",
        pb as f64 / ps.max(1) as f64
    );
    println!(
        "ratio ember/prometheus bytes per sample: {:.3}",
        (eb as f64 / es.max(1) as f64) / (pb as f64 / ps.max(1) as f64)
    );
}
