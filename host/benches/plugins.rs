//! Plugin costs: one exporter call returning 1,000 samples against scraping
//! the same 1,000 samples over HTTP from loopback, and start-up of an
//! uncached and a cached plugin.
//!
//! ```text
//! cargo bench --bench plugins -- [--samples N] [--rounds R]
//! ```
//!
//! Builds the hostile test plugin (plugins/build.sh) whose `huge` mode
//! returns N samples `hostile_huge{i="..."}`. Both paths end where the
//! scrape loop's series cache is consulted: the plugin's families go there
//! directly (a series key per sample), the HTTP body is parsed by the scrape
//! parser first (the series text is the key).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::collections::HashSet;

use ember::model::exposition::{Entry, Format, Parser};
use ember::plugins::{MetricFamily, PluginManager, PluginUse, World};

/// The scrape loop's cache is keyed by series; a set of keys stands in for it.
type Seen = HashSet<String, foldhash::fast::RandomState>;

fn arg(name: &str, default: usize) -> usize {
    let mut it = std::env::args();
    while let Some(a) = it.next() {
        if a == name {
            return it.next().and_then(|v| v.parse().ok()).unwrap_or(default);
        }
    }
    default
}

fn build_plugins() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("plugins");
    let out = target.join("dist");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let status = std::process::Command::new("bash")
        .arg(root.join("build.sh"))
        .arg(&out)
        .env("EMBER_PLUGINS_TARGET_DIR", &target)
        .env("EMBER_PLUGINS_HOSTILE", "1")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("run plugins/build.sh");
    assert!(status.success(), "building the plugins failed");
    out
}

/// What the scrape loop does with a body before labeling: parse it and
/// look each series up by its text. Returns the number of known series.
fn parse_and_look_up(body: &str, seen: &Seen) -> usize {
    Parser::new(body, Format::Text)
        .filter(|e| match e {
            Ok(Entry::Sample(s)) => seen.contains(s.series),
            _ => false,
        })
        .count()
}

/// What the scrape loop does with a plugin's families before labeling:
/// build each sample's series key and look it up.
fn look_up_families(families: &[MetricFamily], seen: &Seen) -> usize {
    let mut key = String::new();
    let mut known = 0;
    for family in families {
        for sample in &family.samples {
            ember::plugins::series_key(&mut key, &family.name, sample);
            known += usize::from(seen.contains(key.as_str()));
        }
    }
    known
}

/// The same samples as text format 0.0.4, the body the HTTP server serves.
fn as_text(families: &[MetricFamily]) -> String {
    let mut out = String::new();
    for family in families {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n",
            family.name, family.help, family.name
        ));
        for sample in &family.samples {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name, l.value))
                .collect();
            out.push_str(&format!(
                "{}{}{{{}}} {}\n",
                family.name,
                sample.suffix,
                labels.join(","),
                sample.value
            ));
        }
    }
    out
}

/// Serves `body` on loopback, one connection per request, like an exporter.
fn serve(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    addr
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let n = times.len();
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "{what:<44} mean {:>9.1} µs   p50 {:>9.1} µs   p90 {:>9.1} µs",
        mean.as_secs_f64() * 1e6,
        times[n / 2].as_secs_f64() * 1e6,
        times[n * 9 / 10].as_secs_f64() * 1e6
    );
}

fn main() {
    let samples = arg("--samples", 1000);
    let rounds = arg("--rounds", 300);
    let dist = build_plugins();
    let tmp = std::env::temp_dir().join(format!("ember-bench-plugins-{}", std::process::id()));
    let dir = tmp.join("plugins");
    let cache = tmp.join("cache");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    std::fs::copy(dist.join("hostile.wasm"), dir.join("hostile.wasm")).expect("copy plugin");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Start-up: compile (empty cache), then load from the cache.
        let registry = prometheus::Registry::new();
        let start = Instant::now();
        let manager =
            PluginManager::new(dir.clone(), Some(cache.clone()), &registry).expect("manager");
        assert!(manager.rescan().await.is_empty());
        let uncached = start.elapsed();
        let registry2 = prometheus::Registry::new();
        let start = Instant::now();
        let manager2 =
            PluginManager::new(dir.clone(), Some(cache.clone()), &registry2).expect("manager");
        assert!(manager2.rescan().await.is_empty());
        let cached = start.elapsed();
        drop(manager2);
        println!(
            "plugin start-up (load + describe): uncached {:.1} ms, cached {:.1} ms",
            uncached.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3
        );

        let plugin: PluginUse = serde_yaml::from_str(&format!(
            "name: hostile\nconfig: {{mode: huge, count: {samples}}}\nmax_samples: {}\n",
            samples + 1
        ))
        .expect("plugin use");
        let instance = manager
            .instance(&plugin, None, World::Exporter)
            .expect("instance");
        // First call instantiates and inits.
        let start = Instant::now();
        let families = instance.collect().await.expect("collect");
        println!(
            "first call (instantiate + init + collect): {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        let body = as_text(&families);
        // Warm caches, as in a steady-state scrape loop: every series known.
        let mut family_keys = Seen::default();
        let mut key = String::new();
        for family in &families {
            for sample in &family.samples {
                ember::plugins::series_key(&mut key, &family.name, sample);
                family_keys.insert(key.clone());
            }
        }
        let text_keys: Seen = Parser::new(&body, Format::Text)
            .filter_map(|e| match e {
                Ok(Entry::Sample(s)) => Some(s.series.to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(parse_and_look_up(&body, &text_keys), samples);
        assert_eq!(look_up_families(&families, &family_keys), samples);

        // The guest call alone (lifting the families out of the component),
        // to show what the series keys add on top.
        let mut call_times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            let families = instance.collect().await.expect("collect");
            assert_eq!(families[0].samples.len(), samples);
            call_times.push(start.elapsed());
        }

        let mut plugin_times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            let families = instance.collect().await.expect("collect");
            assert_eq!(look_up_families(&families, &family_keys), samples);
            plugin_times.push(start.elapsed());
        }

        let addr = serve(body.clone());
        // The scrape client's set-up: rustls with ring, no proxy.
        let tls = ember::scrape::tls::client_config(&Default::default(), &Default::default())
            .expect("tls config");
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .expect("client");
        let url = format!("http://{addr}/metrics");
        let mut http_times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            let text = client
                .get(&url)
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("body");
            assert_eq!(parse_and_look_up(&text, &text_keys), samples);
            http_times.push(start.elapsed());
        }
        println!(
            "{samples} samples, {rounds} rounds, {} bytes of text",
            body.len()
        );
        report("exporter plugin call alone", &mut call_times);
        report("exporter plugin call + series keys", &mut plugin_times);
        report("HTTP GET on loopback + parse", &mut http_times);
    });
    let _ = std::fs::remove_dir_all(&tmp);
}
