//! Exposition parsing speed on real node_exporter 1.5 output
//! (`benches/data/node_exporter.prom`, captured from Debian's
//! prometheus-node-exporter on the build machine).
//!
//! ```text
//! cargo bench --bench parse
//! ```
//!
//! Three measurements, each the median of 15 runs of 200 parses:
//! - parse: tokenizing every line, as every scrape does;
//! - parse + labels: also building the label set of every sample (a cold cache);
//! - scrape hot path: parse plus a lookup of each raw series text in a cache
//!   that already holds it, which is what a scrape loop does for known series.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use ember::model::Labels;
use ember::model::exposition::{Entry, Format, Parser};

const RUNS: usize = 15;
const PARSES_PER_RUN: usize = 200;

fn median_ns_per_parse(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut samples = 0;
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..PARSES_PER_RUN {
                samples = black_box(f());
            }
            start.elapsed().as_nanos() as f64 / PARSES_PER_RUN as f64
        })
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    (runs[RUNS / 2], samples)
}

fn report(name: &str, ns_per_parse: f64, samples: usize, bytes: usize) {
    println!(
        "{name:<22} {:>8.1} ns/sample  {:>8.1} MB/s  ({:.0} µs per scrape of {samples} samples)",
        ns_per_parse / samples as f64,
        bytes as f64 / ns_per_parse * 1e3,
        ns_per_parse / 1e3
    );
}

fn main() {
    let text = include_str!("data/node_exporter.prom");
    let bytes = text.len();

    let (ns, samples) = median_ns_per_parse(|| {
        Parser::new(text, Format::Text)
            .filter(|e| matches!(e, Ok(Entry::Sample(_))))
            .count()
    });
    report("parse", ns, samples, bytes);

    let (ns, samples) = median_ns_per_parse(|| {
        let mut n = 0;
        for e in Parser::new(text, Format::Text) {
            if let Ok(Entry::Sample(s)) = e {
                black_box(s.labels().expect("valid labels"));
                n += 1;
            }
        }
        n
    });
    report("parse + labels", ns, samples, bytes);

    let mut cache: HashMap<String, Labels> = HashMap::new();
    for e in Parser::new(text, Format::Text) {
        if let Ok(Entry::Sample(s)) = e {
            cache.insert(s.series.to_owned(), s.labels().expect("valid labels"));
        }
    }
    let (ns, samples) = median_ns_per_parse(|| {
        let mut n = 0;
        for e in Parser::new(text, Format::Text) {
            if let Ok(Entry::Sample(s)) = e {
                black_box(cache.get(s.series));
                black_box(s.value);
                n += 1;
            }
        }
        n
    });
    report("scrape hot path", ns, samples, bytes);
}
