//! The metadata and status endpoints of the HTTP API against the real
//! binary: `/api/v1/series`, `labels`, `label/<name>/values`, `metadata`,
//! `targets`, `targets/metadata`, `status/*`, `alertmanagers`, `rules`,
//! `alerts`; shapes, parameters, and error codes and messages as in
//! Prometheus 3.

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ember::model::Labels;
use ember::storage::{Storage, StorageOptions};
use serde_json::{Value, json};
use support::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Two samples for each of three series, written into the WAL the way
/// the server would have, ten minutes ago and 15 s later.
fn fill(data: &Path, base: i64) {
    let (storage, _) = Storage::open(data, StorageOptions::default(), |_| {}).unwrap();
    let series = [
        [
            ("__name__", "http_requests_total"),
            ("instance", "a:1"),
            ("job", "api"),
            ("method", "GET"),
        ],
        [
            ("__name__", "http_requests_total"),
            ("instance", "a:1"),
            ("job", "api"),
            ("method", "POST"),
        ],
        [
            ("__name__", "node_load1"),
            ("instance", "n:1"),
            ("job", "node"),
            ("method", ""),
        ],
    ];
    for (i, t) in [base, base + 15_000].into_iter().enumerate() {
        let mut app = storage.appender();
        for s in &series {
            let pairs: Vec<(&str, &str)> =
                s.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
            app.append(Labels::from_pairs(pairs).unwrap(), t, i as f64);
        }
        app.commit().unwrap();
    }
    storage.sync().unwrap();
}

const EXPOSITION: &str = "# HELP demo_temperature_celsius Temperature.\n\
# TYPE demo_temperature_celsius gauge\n\
demo_temperature_celsius 21.5\n\
# HELP demo_events_total Events seen.\n\
# TYPE demo_events_total counter\n\
demo_events_total 7\n";

struct Fixture {
    _setup: Setup,
    _target: TestTarget,
    ember: Ember,
    target_addr: String,
    base: i64,
}

fn start() -> Fixture {
    let setup = Setup::new();
    let target = TestTarget::start(Reply::text(EXPOSITION));
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n\
         - job_name: demo\n\
         \x20 static_configs:\n\
         \x20 - targets: ['{}', 'drop.me:80']\n\
         \x20 relabel_configs:\n\
         \x20 - source_labels: [__address__]\n\
         \x20   regex: 'drop.*'\n\
         \x20   action: drop\n",
        target.addr
    ));
    let base = now_ms() - 600_000;
    fill(&setup.data_dir(), base);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    // Wait for a successful scrape, so target state and metadata exist.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = get_json(&ember.url("/api/v1/targets?state=active"));
        if v["data"]["activeTargets"][0]["health"] == "up" {
            break;
        }
        assert!(Instant::now() < deadline, "target never up: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let target_addr = target.addr.clone();
    Fixture {
        _setup: setup,
        _target: target,
        ember,
        target_addr,
        base,
    }
}

fn assert_error(resp: (u16, Value), status: u16, kind: &str, message: &str) {
    let (code, v) = resp;
    assert_eq!(code, status, "{v}");
    assert_eq!(
        v,
        json!({"status": "error", "errorType": kind, "error": message})
    );
}

#[test]
fn series_labels_and_values() {
    let f = start();
    let e = &f.ember;
    let url = |p: &str| e.url(p);

    // /api/v1/series
    assert_error(
        get_json(&url("/api/v1/series")),
        400,
        "bad_data",
        "no match[] parameter provided",
    );
    assert_error(
        get_json(&url(&format!(
            "/api/v1/series?match[]={}",
            enc(r#"{job=~".*"}"#)
        ))),
        400,
        "bad_data",
        "match[] must contain at least one non-empty matcher",
    );
    let (code, v) = get_json(&url(&format!("/api/v1/series?match[]={}", enc("up{"))));
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"match[]\": "),
        "{v}"
    );
    let (code, v) = get_json(&url(&format!(
        "/api/v1/series?match[]={}",
        enc("http_requests_total")
    )));
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!({"status": "success", "data": [
            {"__name__": "http_requests_total", "instance": "a:1", "job": "api", "method": "GET"},
            {"__name__": "http_requests_total", "instance": "a:1", "job": "api", "method": "POST"},
        ]})
    );
    // Several match[] are a union; a series matched twice appears once.
    let (_, v) = get_json(&url(&format!(
        "/api/v1/series?match[]={}&match[]={}&match[]={}",
        enc(r#"{job="node"}"#),
        enc(r#"http_requests_total{method="GET"}"#),
        enc("node_load1")
    )));
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["data"][1]["__name__"], "node_load1");
    // limit truncates and warns.
    let (_, v) = get_json(&url(&format!(
        "/api/v1/series?limit=1&match[]={}",
        enc("http_requests_total")
    )));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // start/end bound the series by their samples.
    let after = (f.base + 60_000) as f64 / 1000.0;
    let (_, v) = get_json(&url(&format!(
        "/api/v1/series?match[]={}&start={after}",
        enc("http_requests_total")
    )));
    assert_eq!(v["data"], json!([]), "{v}");
    assert_error(
        get_json(&url("/api/v1/series?match[]=up&start=x")),
        400,
        "bad_data",
        "invalid parameter \"start\": Invalid time value for 'start': cannot parse \"x\" to a valid timestamp",
    );
    assert_error(
        get_json(&url("/api/v1/series?match[]=up&start=10&end=5")),
        400,
        "bad_data",
        "invalid parameter \"end\": end timestamp must not be before start time",
    );
    assert_error(
        get_json(&url("/api/v1/series?match[]=up&limit=-1")),
        400,
        "bad_data",
        "invalid parameter \"limit\": limit must be non-negative",
    );
    // RFC 3339 times and the "unbounded" times client libraries send.
    let r = get(&url(&format!(
        "/api/v1/series?match[]=node_load1&start={}&end={}",
        enc("-292273086-05-16T16:47:06Z"),
        enc("2100-01-01T00:00:00Z")
    )))
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.content_type.starts_with("application/json"));
    // Form-encoded POST, as Grafana sends it.
    let r = post_form(
        &url("/api/v1/series"),
        &format!("match[]={}&limit=5", enc(r#"{__name__="node_load1"}"#)),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"][0]["job"], "node");

    // /api/v1/labels
    let (code, v) = get_json(&url("/api/v1/labels"));
    assert_eq!(code, 200);
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for want in ["__name__", "instance", "job", "method"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let (_, v) = get_json(&url(&format!(
        "/api/v1/labels?match[]={}",
        enc("node_load1")
    )));
    assert_eq!(v["data"], json!(["__name__", "instance", "job"]));
    let (_, v) = get_json(&url("/api/v1/labels?limit=2"));
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    let r = post_form(&url("/api/v1/labels"), "match[]=http_requests_total").unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"], json!(["__name__", "instance", "job", "method"]));
    assert_error(
        get_json(&url("/api/v1/labels?limit=x")),
        400,
        "bad_data",
        "invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax",
    );

    // /api/v1/label/<name>/values
    let (_, v) = get_json(&url("/api/v1/label/job/values"));
    let jobs = v["data"].as_array().unwrap();
    for want in ["api", "demo", "node"] {
        assert!(jobs.contains(&json!(want)), "{v}");
    }
    let (_, v) = get_json(&url(&format!(
        "/api/v1/label/method/values?match[]={}",
        enc(r#"{job=~"api|node"}"#)
    )));
    assert_eq!(v["data"], json!(["GET", "POST"]));
    let (_, v) = get_json(&url(&format!(
        "/api/v1/label/__name__/values?match[]={}",
        enc(r#"{job="api"}"#)
    )));
    assert_eq!(v["data"], json!(["http_requests_total"]));
    let (_, v) = get_json(&url("/api/v1/label/__name__/values?limit=1"));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // Prometheus 3's escaped names: U__ then `_2e_` for '.', `__` for '_'.
    let (_, v) = get_json(&url("/api/v1/label/U__job/values"));
    assert_eq!(v["data"], json!(jobs));
    let (code, v) = get_json(&url("/api/v1/label/U__http_2e_method/values"));
    assert_eq!((code, &v["data"]), (200, &json!([])));
    let (code, v) = get_json(&url("/api/v1/label/no_such_label/values"));
    assert_eq!((code, &v["data"]), (200, &json!([])), "never null");
}

/// promtool 2.42 (Debian `prometheus`) as a real API client: `query
/// labels|series|instant|range`.
#[test]
fn promtool_queries_series_and_labels() {
    if !require_program("promtool", "prometheus") {
        return;
    }
    let f = start();
    let server = f.ember.url("");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("promtool")
            .args(["query"])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "promtool query {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let labels = run(&["labels", &server, "job"]);
    for want in ["api", "demo", "node"] {
        assert!(labels.lines().any(|l| l == want), "{labels}");
    }
    let series = run(&["series", "--match=http_requests_total", &server]);
    assert_eq!(series.lines().count(), 2, "{series}");
    assert!(series.contains("method=\"POST\""), "{series}");
    let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let instant = run(&[
        "instant",
        &format!("--time={}", secs(f.base + 15_000)),
        &server,
        "sum by (job) (http_requests_total)",
    ]);
    assert!(
        instant.contains(&format!(
            "{{job=\"api\"}} => 2 @[{}]",
            (f.base + 15_000) as f64 / 1000.0
        )),
        "{instant}"
    );
    let range = run(&[
        "range",
        &format!("--start={}", secs(f.base)),
        &format!("--end={}", secs(f.base + 15_000)),
        "--step=15s",
        &server,
        "node_load1",
    ]);
    assert!(
        range.contains("node_load1{instance=\"n:1\", job=\"node\"} =>"),
        "{range}"
    );
    let points: Vec<&str> = range.lines().filter(|l| l.contains(" @[")).collect();
    assert_eq!(points.len(), 2, "{range}");
    assert!(
        points[0].starts_with("0 @[") && points[1].starts_with("1 @["),
        "{range}"
    );
}

#[test]
fn metadata_and_targets() {
    let f = start();
    let e = &f.ember;
    let url = |p: &str| e.url(p);

    // /api/v1/metadata
    let (code, v) = get_json(&url("/api/v1/metadata"));
    assert_eq!(code, 200);
    assert_eq!(
        v["data"]["demo_temperature_celsius"],
        json!([{"type": "gauge", "help": "Temperature.", "unit": ""}])
    );
    assert_eq!(
        v["data"]["demo_events_total"],
        json!([{"type": "counter", "help": "Events seen.", "unit": ""}])
    );
    let (_, v) = get_json(&url("/api/v1/metadata?metric=demo_events_total"));
    assert_eq!(v["data"].as_object().unwrap().len(), 1, "{v}");
    let (_, v) = get_json(&url("/api/v1/metadata?limit=1"));
    assert_eq!(v["data"].as_object().unwrap().len(), 1, "{v}");
    let (_, v) = get_json(&url("/api/v1/metadata?metric=nope"));
    assert_eq!(v, json!({"status": "success", "data": {}}));
    assert_error(
        get_json(&url("/api/v1/metadata?limit=x")),
        400,
        "bad_data",
        "limit must be a number",
    );

    // /api/v1/targets
    let (code, v) = get_json(&url("/api/v1/targets"));
    assert_eq!(code, 200);
    let active = &v["data"]["activeTargets"];
    assert_eq!(active.as_array().unwrap().len(), 1, "{v}");
    let t = &active[0];
    let scrape_url = format!("http://{}/metrics", f.target_addr);
    assert_eq!(t["scrapePool"], "demo");
    assert_eq!(t["scrapeUrl"], scrape_url);
    assert_eq!(t["health"], "up");
    assert_eq!(t["lastError"], "");
    assert_eq!(t["scrapeInterval"], "1s");
    assert_eq!(t["scrapeTimeout"], "1s");
    assert_eq!(
        t["labels"],
        json!({"instance": f.target_addr, "job": "demo"})
    );
    assert_eq!(t["discoveredLabels"]["__address__"], f.target_addr);
    assert_eq!(t["discoveredLabels"]["__metrics_path__"], "/metrics");
    assert_eq!(t["discoveredLabels"]["job"], "demo");
    assert!(t["lastScrapeDuration"].is_f64(), "{t}");
    let last = t["lastScrape"].as_str().unwrap();
    assert!(
        last.ends_with('Z') && last.len() >= 20 && !last.starts_with("0001"),
        "{last}"
    );
    // A target on 127.0.0.1 is shown under the external URL's host.
    let global = t["globalUrl"].as_str().unwrap();
    assert!(
        global.starts_with("http://") && global.ends_with("/metrics"),
        "{global}"
    );
    let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 11, "{keys:?}");
    assert_eq!(
        v["data"]["droppedTargets"],
        json!([{"discoveredLabels": {
            "__address__": "drop.me:80", "__metrics_path__": "/metrics",
            "__scheme__": "http", "__scrape_interval__": "1s",
            "__scrape_timeout__": "1s", "job": "demo"}, "scrapePool": "demo"}])
    );
    assert_eq!(v["data"]["droppedTargetCounts"], json!({"demo": 1}));
    let (_, v) = get_json(&url("/api/v1/targets?state=active"));
    assert_eq!(v["data"]["droppedTargets"], json!([]));
    assert_eq!(v["data"]["droppedTargetCounts"], Value::Null);
    let (_, v) = get_json(&url("/api/v1/targets?state=dropped"));
    assert_eq!(v["data"]["activeTargets"], json!([]));
    assert_eq!(v["data"]["droppedTargets"].as_array().unwrap().len(), 1);
    let (_, v) = get_json(&url("/api/v1/targets?state=any&scrapePool=other"));
    assert_eq!(v["data"]["activeTargets"], json!([]));
    assert_eq!(v["data"]["droppedTargetCounts"], json!({}));

    // /api/v1/targets/metadata
    let (code, v) = get_json(&url("/api/v1/targets/metadata"));
    assert_eq!(code, 200);
    assert!(
        v["data"].as_array().unwrap().contains(&json!({
            "target": {"instance": f.target_addr, "job": "demo"},
            "metric": "demo_events_total", "type": "counter",
            "help": "Events seen.", "unit": ""
        })),
        "{v}"
    );
    let (_, v) = get_json(&url(&format!(
        "/api/v1/targets/metadata?metric=demo_temperature_celsius&match_target={}",
        enc(r#"{job="demo"}"#)
    )));
    assert_eq!(
        v["data"],
        json!([{"target": {"instance": f.target_addr, "job": "demo"},
                "type": "gauge", "help": "Temperature.", "unit": ""}])
    );
    assert_error(
        get_json(&url(&format!(
            "/api/v1/targets/metadata?match_target={}",
            enc(r#"{job="other"}"#)
        ))),
        404,
        "not_found",
        "specified metadata not found",
    );
    let (code, v) = get_json(&url(&format!(
        "/api/v1/targets/metadata?match_target={}",
        enc("{job=")
    )));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"match_target\": ")
    );
}

#[test]
fn status_rules_alerts() {
    let f = start();
    let e = &f.ember;
    let url = |p: &str| e.url(p);

    let (code, v) = get_json(&url("/api/v1/status/config"));
    assert_eq!(code, 200);
    let yaml = v["data"]["yaml"].as_str().unwrap();
    assert!(yaml.contains("job_name: demo"), "{yaml}");
    assert!(yaml.contains("scrape_interval: 1s"), "{yaml}");

    let (_, v) = get_json(&url("/api/v1/status/flags"));
    assert_eq!(v["data"]["query.lookback-delta"], "5m");
    assert_eq!(v["data"]["query.timeout"], "2m");
    assert_eq!(v["data"]["query.max-samples"], "50000000");
    assert_eq!(v["data"]["web.enable-lifecycle"], "false");
    assert!(
        v["data"]["storage.tsdb.path"]
            .as_str()
            .unwrap()
            .ends_with("data")
    );

    let (_, v) = get_json(&url("/api/v1/status/runtimeinfo"));
    let d = &v["data"];
    for key in [
        "startTime",
        "CWD",
        "hostname",
        "serverTime",
        "reloadConfigSuccess",
        "lastConfigTime",
        "corruptionCount",
        "goroutineCount",
        "GOMAXPROCS",
        "GOMEMLIMIT",
        "GOGC",
        "GODEBUG",
        "storageRetention",
    ] {
        assert!(d.get(key).is_some(), "{key} missing: {d}");
    }
    assert_eq!(d["reloadConfigSuccess"], true);
    assert_eq!(d["storageRetention"], "15d");

    let (_, v) = get_json(&url("/api/v1/status/buildinfo"));
    let d = v["data"].as_object().unwrap();
    assert!(d.get("features").is_none());
    let version = d["version"].as_str().unwrap();
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "{version}");
    assert!(parts.iter().all(|p| p.parse::<u64>().is_ok()), "{version}");
    for key in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(d.contains_key(key), "{key}");
    }

    assert_eq!(
        get_json(&url("/api/v1/alertmanagers")),
        (
            200,
            json!({"status": "success", "data": {"activeAlertmanagers": [], "droppedAlertmanagers": []}})
        )
    );
    assert_eq!(
        get_json(&url("/api/v1/rules")),
        (200, json!({"status": "success", "data": {"groups": []}}))
    );
    assert_eq!(get_json(&url("/api/v1/rules?type=alert")).0, 200);
    assert_error(
        get_json(&url("/api/v1/rules?type=bogus")),
        400,
        "bad_data",
        "invalid parameter \"type\": not supported value \"bogus\"",
    );
    assert_eq!(
        get_json(&url("/api/v1/alerts")),
        (200, json!({"status": "success", "data": {"alerts": []}}))
    );
}

/// Until the WAL is replayed, `/api/v1/*` answers 503 (the replay status
/// excepted). 800,000 samples take long enough to replay (hundreds of
/// milliseconds in a debug build) that polling every 2 ms sees the window.
#[test]
fn api_is_unavailable_until_ready() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    {
        let (storage, _) =
            Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {}).unwrap();
        for t in 0..40 {
            let mut app = storage.appender();
            for s in 0..20_000 {
                let labels =
                    Labels::from_pairs([("__name__", "m"), ("i", &s.to_string())]).unwrap();
                app.append(labels, t * 15_000, 1.0);
            }
            app.commit().unwrap();
        }
        storage.sync().unwrap();
    }
    let mut ember = setup.start(&[]);
    let mut saw_unready = false;
    for _ in 0..2000 {
        match get(&ember.url("/api/v1/labels")) {
            Ok(r) if r.status == 503 => {
                saw_unready = true;
                assert_eq!(r.body, "Service Unavailable");
                assert_eq!(
                    get(&ember.url("/api/v1/query?query=1")).unwrap().status,
                    503
                );
                assert_eq!(
                    get(&ember.url("/api/v1/status/walreplay")).unwrap().status,
                    200
                );
                break;
            }
            Ok(r) if r.status == 200 => break,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    assert!(
        saw_unready,
        "never saw a 503 before ready: {}",
        ember.logs()
    );
    ember.wait_ready();
    assert_eq!(get(&ember.url("/api/v1/labels")).unwrap().status, 200);
}
