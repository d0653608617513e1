//! A deliberately hostile exporter for Ember's sandbox tests. Its config
//! `{"mode": "..."}` picks the misbehaviour on `collect`:
//!
//! - `loop`: never returns
//! - `grow`: allocates memory until it is stopped
//! - `panic`: panics
//! - `file`: reads `/etc/passwd`, which is never granted
//! - `http`: fetches `url` (default a host not on any allow-list)
//! - `huge`: returns `count` samples (default ten million)
//! - `inject`: returns a metric name with a newline, trying to smuggle a
//!   series into the exposition
//! - anything else: behaves, returning one gauge

use ember_plugin_sdk::{Exporter, MetricFamily, MetricType, PluginInfo};

struct Hostile {
    mode: String,
    url: String,
    count: usize,
}

impl Exporter for Hostile {
    fn new(config: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        Ok(Hostile {
            mode: value["mode"].as_str().unwrap_or("ok").to_owned(),
            url: value["url"]
                .as_str()
                .unwrap_or("http://forbidden.invalid/")
                .to_owned(),
            count: value["count"].as_u64().unwrap_or(10_000_000) as usize,
        })
    }

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile", env!("CARGO_PKG_VERSION"))
    }

    fn collect(&mut self) -> Result<Vec<MetricFamily>, String> {
        match self.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            "file" => {
                let text = std::fs::read_to_string("/etc/passwd")
                    .map_err(|e| format!("reading /etc/passwd: {e}"))?;
                Ok(vec![MetricFamily::gauge(
                    "hostile_read_bytes",
                    "Bytes read from a file it was not granted.",
                    text.len() as f64,
                )])
            }
            "http" => {
                let response = ember_plugin_sdk::http::get(&self.url)?;
                Ok(vec![MetricFamily::gauge(
                    "hostile_http_status",
                    "Status of a request it should not make.",
                    f64::from(response.status),
                )])
            }
            "huge" => {
                let mut family =
                    MetricFamily::new("hostile_huge", MetricType::Gauge, "Many samples.");
                for i in 0..self.count {
                    family.push(&[("i", &i.to_string())], i as f64);
                }
                Ok(vec![family])
            }
            "inject" => Ok(vec![MetricFamily::gauge(
                "hostile_x 1\ninjected_series",
                "Injection.",
                1.0,
            )]),
            _ => Ok(vec![MetricFamily::gauge("hostile_ok", "Behaves.", 1.0)]),
        }
    }
}

ember_plugin_sdk::export_exporter!(Hostile);
