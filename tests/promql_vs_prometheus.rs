//! The same data backfilled into Ember and into Prometheus 2.42, the same
//! PromQL asked of both HTTP APIs, the answers compared (relative
//! tolerance 1e-6). Evaluation times, subquery steps included, sit between
//! samples (which are 3 s off the minute), so the window edges Prometheus 3
//! made left-open (and 2.42 has closed) never matter.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::*;

/// Start of the data: a 2h block boundary.
const START: i64 = 1_700_006_400;
/// Four hours at 15s.
const STEPS: i64 = 960;

fn write_input(path: &Path) {
    let mut text = String::new();
    text.push_str("# TYPE http_requests counter\n");
    for k in 0..STEPS {
        let t = START + k * 15 + 3;
        for job in ["api", "web", "db"] {
            for inst in 0..20 {
                // Counters with a reset every 97 steps on some series.
                let base = if inst % 3 == 0 { k % 97 } else { k };
                let v = base * (inst + 1) + (k * 7 + inst) % 5;
                for code in ["200", "500"] {
                    let v = if code == "500" { v / 10 } else { v };
                    text.push_str(&format!(
                        "http_requests_total{{job=\"{job}\",instance=\"i{inst}\",code=\"{code}\"}} {v} {t}\n"
                    ));
                }
            }
        }
    }
    text.push_str("# TYPE temperature gauge\n");
    for k in 0..STEPS {
        let t = START + k * 15 + 3;
        for room in 0..30 {
            let v = 20.0 + ((k as f64) / 17.0 + room as f64).sin() * 5.0 + room as f64 / 7.0;
            text.push_str(&format!(
                "temperature{{room=\"r{room}\",floor=\"f{}\"}} {v} {t}\n",
                room % 4
            ));
        }
    }
    text.push_str("# TYPE latency_seconds histogram\n");
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for k in 0..STEPS {
        let t = START + k * 15 + 3;
        for job in ["api", "web"] {
            let mut cum = 0;
            for (i, le) in bounds.iter().enumerate() {
                cum += k * (7 - i as i64) + (k * (i as i64 + 3)) % 11;
                text.push_str(&format!(
                    "latency_seconds_bucket{{job=\"{job}\",le=\"{le}\"}} {cum} {t}\n"
                ));
            }
            text.push_str(&format!(
                "latency_seconds_count{{job=\"{job}\"}} {cum} {t}\n"
            ));
            text.push_str(&format!(
                "latency_seconds_sum{{job=\"{job}\"}} {} {t}\n",
                cum as f64 * 0.3
            ));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(path, text).unwrap();
}

const QUERIES: &[&str] = &[
    "http_requests_total{job=\"api\",code=\"200\"}",
    "rate(http_requests_total[5m])",
    "irate(http_requests_total[5m])",
    "increase(http_requests_total{code=\"500\"}[10m])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum without (instance) (rate(http_requests_total[5m]))",
    "avg by (code) (rate(http_requests_total[1m]))",
    "max by (job) (http_requests_total)",
    "min(temperature)",
    "count by (floor) (temperature > 22)",
    "stddev by (floor) (temperature)",
    "stdvar(temperature)",
    "quantile by (floor) (0.9, temperature)",
    "topk(3, temperature)",
    "bottomk(2, rate(http_requests_total[5m]))",
    "count_values(\"value\", floor(temperature))",
    "group by (job) (http_requests_total)",
    "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(latency_seconds_bucket[10m]))",
    "rate(latency_seconds_sum[5m]) / rate(latency_seconds_count[5m])",
    "rate(http_requests_total{code=\"500\"}[5m]) / ignoring(code) rate(http_requests_total{code=\"200\"}[5m])",
    "sum by (job, instance) (rate(http_requests_total[5m])) / on(job) group_left sum by (job) (rate(http_requests_total[5m]))",
    "temperature > bool 22",
    "temperature * 2 - 1",
    "-temperature",
    "temperature and on(floor) (temperature > 24)",
    "temperature unless temperature > 23",
    "rate(http_requests_total{job=\"db\"}[5m]) or rate(http_requests_total{job=\"api\"}[5m])",
    "delta(temperature[15m])",
    "idelta(temperature[5m])",
    "deriv(temperature[10m])",
    "predict_linear(temperature[10m], 600)",
    "avg_over_time(temperature[10m])",
    "sum_over_time(temperature[5m])",
    "min_over_time(temperature[5m])",
    "max_over_time(temperature[5m])",
    "count_over_time(temperature[5m])",
    "stddev_over_time(temperature[10m])",
    "quantile_over_time(0.25, temperature[10m])",
    "last_over_time(temperature[5m])",
    "changes(temperature[10m])",
    "resets(http_requests_total[30m])",
    "abs(temperature - 22)",
    "clamp(temperature, 18, 23)",
    "clamp_min(temperature, 21)",
    "round(temperature, 0.5)",
    "ceil(temperature)",
    "ln(temperature)",
    "exp(temperature / 10)",
    "sqrt(temperature)",
    "timestamp(temperature)",
    "hour(timestamp(temperature))",
    "label_replace(temperature, \"r\", \"$1\", \"room\", \"r(.*)\")",
    "label_join(temperature, \"where\", \"-\", \"floor\", \"room\")",
    "absent(nonexistent{job=\"x\"})",
    "scalar(sum(temperature))",
    "vector(1) + 1",
    "time()",
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "avg_over_time(sum by (job) (rate(http_requests_total[5m]))[20m:])",
    "temperature offset 10m",
    "rate(http_requests_total[5m] offset 30m)",
    "sum(temperature) by (floor) * on(floor) group_left count(temperature) by (floor)",
    "sort_desc(sum by (job) (http_requests_total))",
    "sum(rate(http_requests_total[5m])) > 10",
    "2 ^ 3 % 5",
];

#[derive(Debug)]
struct Answer {
    series: BTreeMap<String, Vec<(f64, String)>>,
}

fn ask(base: &str, path: &str, params: &[(&str, String)]) -> Result<Answer, String> {
    let mut url = format!("{base}{path}?");
    for (k, v) in params {
        url.push_str(&format!("{k}={}&", enc(v)));
    }
    let body = match get(&url) {
        Ok(r) => r.body,
        Err(e) => return Err(format!("{e}")),
    };
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if v["status"] != "success" {
        return Err(body);
    }
    let data = &v["data"];
    let mut series = BTreeMap::new();
    let point = |p: &serde_json::Value| {
        (
            p[0].as_f64().unwrap_or(f64::NAN),
            p[1].as_str().unwrap_or("").to_owned(),
        )
    };
    match data["resultType"].as_str() {
        Some("scalar") | Some("string") => {
            series.insert("scalar".to_owned(), vec![point(&data["result"])]);
        }
        _ => {
            for s in data["result"].as_array().into_iter().flatten() {
                let key = serde_json::to_string(&s["metric"]).unwrap_or_default();
                let pts = if let Some(vals) = s["values"].as_array() {
                    vals.iter().map(point).collect()
                } else {
                    vec![point(&s["value"])]
                };
                series.insert(key, pts);
            }
        }
    }
    Ok(Answer { series })
}

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            if x.is_nan() && y.is_nan() {
                return true;
            }
            let diff = (x - y).abs();
            diff <= 1e-6 * x.abs().max(y.abs()) || diff < 1e-9
        }
        _ => false,
    }
}

fn compare(query: &str, ours: &Answer, theirs: &Answer) -> Option<String> {
    if ours.series.len() != theirs.series.len() {
        return Some(format!(
            "{query}: {} series vs Prometheus's {}\n  ours:   {:?}\n  theirs: {:?}",
            ours.series.len(),
            theirs.series.len(),
            ours.series.keys().collect::<Vec<_>>(),
            theirs.series.keys().collect::<Vec<_>>()
        ));
    }
    for (k, pts) in &theirs.series {
        let Some(mine) = ours.series.get(k) else {
            return Some(format!("{query}: Prometheus has {k}, Ember does not"));
        };
        if mine.len() != pts.len() {
            return Some(format!(
                "{query}: {k}: {} points vs {}",
                mine.len(),
                pts.len()
            ));
        }
        for (a, b) in mine.iter().zip(pts) {
            if (a.0 - b.0).abs() > 1e-3 || !close(&a.1, &b.1) {
                return Some(format!("{query}: {k}: ours {a:?}, Prometheus {b:?}"));
            }
        }
    }
    None
}

#[test]
fn same_answers_as_prometheus() {
    if !require_program("prometheus", "prometheus") || !require_program("promtool", "prometheus") {
        return;
    }
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
    // Prometheus::start_with serves the data directory `<dir>/prometheus`.
    let prom_dir = setup.path().join("prometheus");
    let status = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&input)
        .arg(&prom_dir)
        .status()
        .unwrap();
    assert!(status.success());

    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--storage.tsdb.retention.time=100y"]);
    ember.wait_ready();

    let prometheus = Prometheus::start_with(
        setup.path(),
        MINIMAL_CONFIG,
        &["--storage.tsdb.retention.time=100y"],
    );
    let prom = prometheus.url("");
    let ember_base = ember.url("");
    let ember_base = ember_base.trim_end_matches('/');

    // Between samples: 1h37m07.5s in, and a range over the third hour.
    let at = format!("{}.5", START + 5827);
    let (from, to) = (
        (START + 7200 + 10).to_string(),
        (START + 3 * 3600 + 10).to_string(),
    );
    let mut failures = Vec::new();
    let mut compared = 0;
    for q in QUERIES {
        let instant = [("query", q.to_string()), ("time", at.clone())];
        let range = [
            ("query", q.to_string()),
            ("start", from.clone()),
            ("end", to.clone()),
            ("step", "60".to_owned()),
        ];
        for (path, params) in [
            ("/api/v1/query", &instant[..]),
            ("/api/v1/query_range", &range[..]),
        ] {
            // sort_desc and topk orders only mean something in instant queries.
            let theirs = ask(&prom, path, params);
            let ours = ask(ember_base, path, params);
            match (ours, theirs) {
                (Ok(o), Ok(t)) => {
                    compared += 1;
                    if let Some(diff) = compare(q, &o, &t) {
                        failures.push(format!("{path}: {diff}"));
                    }
                }
                (Err(o), Ok(_)) => failures.push(format!("{path}: {q}: Ember failed: {o}")),
                (Ok(_), Err(t)) => {
                    failures.push(format!("{path}: {q}: only Prometheus failed: {t}"))
                }
                (Err(_), Err(_)) => compared += 1,
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ from Prometheus 2.42:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
