//! Browser tests of the web UI: a real `ember` with data (remote-written
//! series, a healthy and an unhealthy scrape target, a rule file with a
//! recording and a firing alerting rule, an exporter plugin), driven by
//! `tests/ui/run.mjs` (playwright-core + Debian's Chromium). Screenshots go
//! to `target/tmp/ui_browser/` and are copied to `target/ui-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Ember, Reply, Setup, TestTarget, get, get_json, post_remote_write, require_program};

const METRIC: &str = "ui_test_requests_total";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// node, chromium and playwright-core are there (mandatory under CI).
fn browser_available() -> bool {
    if !require_program("node", "nodejs") || !require_program("chromium", "chromium") {
        return false;
    }
    let playwright = repo_root().join("ui/node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "playwright-core is required under CI (tests/setup.sh runs npm ci in ui/)"
        );
        println!("playwright-core not installed (run `npm ci` in ui/); skipping");
        return false;
    }
    true
}

fn config(healthy: &str, unhealthy: &str, full: bool) -> String {
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         \x20 - job_name: healthy\n    static_configs:\n      - targets: ['{healthy}']\n\
         \x20       labels:\n          team: ui\n\
         \x20 - job_name: unhealthy\n    static_configs:\n      - targets: ['{unhealthy}']\n\
         \x20   relabel_configs:\n      - source_labels: [drop]\n        regex: me\n        action: drop\n\
         \x20 - job_name: relabeled-away\n    static_configs:\n      - targets: ['127.0.0.1:9']\n\
         \x20   relabel_configs:\n      - action: drop\n        source_labels: [__address__]\n        regex: '.*'\n"
    );
    if full {
        // A real rule file (a recording rule and an alerting rule that
        // fires on the remote-written data) and an exporter plugin.
        config += "\x20 - job_name: plugin\n    plugin:\n      name: custom-exporter\n      config: {greeting: ui}\n";
        config += "rule_files: [rules.yml]\n";
    }
    config
}

const RULES: &str = "groups:
  - name: ui-example
    interval: 1s
    rules:
      - record: job:ui_test_requests:rate5m
        expr: sum by (job) (rate(ui_test_requests_total[5m]))
      - alert: UiTestRequestsHigh
        expr: ui_test_requests_total > 100
        labels:
          severity: page
        annotations:
          summary: 'Instance {{ $labels.instance }} served {{ $value }} requests'
";

/// An hour of samples, every 15 s, for three series of a counter, remote
/// written to the ember whose routes start at `prefix`.
fn write_data(ember: &Ember, prefix: &str) {
    use ember::remote::proto;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let start = now - 3_600_000;
    let samples: Vec<Vec<(i64, f64)>> = (0..3)
        .map(|s| {
            (0..=240)
                .map(|i| (start + i * 15_000, (i * (s + 1)) as f64))
                .collect()
        })
        .collect();
    let timeseries = ["a", "b", "c"]
        .iter()
        .zip(&samples)
        .map(|(instance, samples)| proto::TimeSeries {
            labels: [("__name__", METRIC), ("instance", instance), ("job", "ui")]
                .iter()
                .map(|(n, v)| proto::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| proto::Sample { value, timestamp })
                .collect(),
            ..proto::TimeSeries::default()
        })
        .collect();
    let body = proto::encode_request(&proto::WriteRequest {
        timeseries,
        metadata: vec![],
    });
    let r = post_remote_write(&ember.url(&format!("{prefix}/api/v1/write")), &body)
        .expect("remote write");
    assert_eq!(r.status, 204, "remote write: {}", r.body);
}

/// Waits until the targets API reports one healthy and one unhealthy target.
fn wait_for_health(ember: &Ember, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = get_json(&ember.url(&format!("{prefix}/api/v1/targets?state=active")));
        let health: Vec<String> = v["data"]["activeTargets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t["health"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if health.iter().any(|h| h == "up") && health.iter().any(|h| h == "down") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "targets never got healthy/unhealthy: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the alerting rule fires on the remote-written data.
fn wait_for_firing(ember: &Ember) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = get_json(&ember.url("/api/v1/alerts"));
        let firing = v["data"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["state"] == "firing"));
        if firing {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the alert never fired: {v}\n{}",
            ember.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One Chromium at a time: two at once starve a 2-core machine.
static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_browser(base: &str, shots: &Path, extra: &[&str]) {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let _ = std::fs::remove_dir_all(shots);
    let out = Command::new("node")
        .arg(repo_root().join("tests/ui/run.mjs"))
        .arg(base)
        .arg(shots)
        .args(extra)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser checks failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Copies the screenshots where a human finds them: target/ui-screenshots/<name>.
fn publish(shots: &Path, name: &str) {
    let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let Some(target) = target_tmp.parent() else {
        return;
    };
    let dest = target.join("ui-screenshots").join(name);
    let _ = std::fs::remove_dir_all(&dest);
    if std::fs::create_dir_all(&dest).is_err() {
        return;
    }
    for entry in std::fs::read_dir(shots).into_iter().flatten().flatten() {
        let _ = std::fs::copy(entry.path(), dest.join(entry.file_name()));
    }
    println!("screenshots: {}", dest.display());
}

/// Starts ember with two scrape targets; `full` adds the rule file and the
/// exporter plugin (the 0.1.0 custom exporter checked in for the plugin
/// tests).
fn start(setup: &Setup, extra: &[&str], full: bool) -> (Ember, TestTarget, TestTarget) {
    let healthy = TestTarget::start(Reply::text(
        "# HELP ui_scraped_metric A metric from the healthy target.\n# TYPE ui_scraped_metric gauge\nui_scraped_metric 1\n",
    ));
    let unhealthy = TestTarget::start(Reply {
        status: 500,
        ..Reply::text("internal error\n")
    });
    if full {
        std::fs::write(setup.path().join("rules.yml"), RULES).expect("rule file");
        let plugins = setup.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugin dir");
        std::fs::copy(
            repo_root().join("tests/plugins/custom-exporter-0.1.0.wasm"),
            plugins.join("custom-exporter.wasm"),
        )
        .expect("plugin file");
    }
    setup.write_config(&config(&healthy.addr, &unhealthy.addr, full));
    let mut args = vec!["--web.enable-remote-write-receiver"];
    args.extend_from_slice(extra);
    let ember = setup.start(&args);
    let prefix = extra
        .iter()
        .find_map(|a| a.strip_prefix("--web.route-prefix="))
        .unwrap_or("");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&ember.url(&format!("{prefix}/-/ready")))
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "not ready:\n{}", ember.logs());
        std::thread::sleep(Duration::from_millis(25));
    }
    (ember, healthy, unhealthy)
}

#[test]
fn ui_pages_in_chromium() {
    if !browser_available() {
        return;
    }
    let setup = Setup::new();
    let (ember, _healthy, _unhealthy) = start(&setup, &[], true);
    write_data(&ember, "");
    wait_for_health(&ember, "");
    wait_for_firing(&ember);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui_browser/root");
    let result = std::panic::catch_unwind(|| run_browser(&ember.url(""), &shots, &[]));
    publish(&shots, "root");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn ui_under_a_route_prefix() {
    if !browser_available() {
        return;
    }
    let setup = Setup::new();
    let (ember, _healthy, _unhealthy) = start(&setup, &["--web.route-prefix=/ember"], false);
    write_data(&ember, "/ember");
    wait_for_health(&ember, "/ember");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui_browser/prefix");
    let result =
        std::panic::catch_unwind(|| run_browser(&ember.url("/ember"), &shots, &["--smoke"]));
    publish(&shots, "prefix");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
