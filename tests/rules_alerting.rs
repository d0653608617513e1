//! Rules end to end: alerts from Ember reach a real Alertmanager 0.25 and
//! resolve there; recording rules give the same series as Prometheus 2.42
//! over the same scraped data; the rules and alerts APIs.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    KillOnDrop, Prometheus, Reply, Setup, TestTarget, enc, free_port, get, get_json,
    require_program,
};

struct Alertmanager {
    port: u16,
    _process: KillOnDrop,
    log: std::path::PathBuf,
}

impl Alertmanager {
    fn start(dir: &std::path::Path) -> Alertmanager {
        let port = free_port();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .expect("write alertmanager.yml");
        let log = dir.join("alertmanager.log");
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("am log"))
            .spawn()
            .expect("spawn alertmanager");
        let am = Alertmanager {
            port,
            _process: KillOnDrop(child),
            log,
        };
        wait_for(Duration::from_secs(30), "alertmanager ready", || {
            get(&am.url("/-/ready")).map(|r| r.status).unwrap_or(0) == 200
        });
        am
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// `amtool alert query` output (active alerts).
    fn amtool_query(&self) -> String {
        let out = Command::new("amtool")
            .arg(format!("--alertmanager.url={}", self.url("")))
            .args(["alert", "query"])
            .output()
            .expect("run amtool");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn wait_for(timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn metrics_body(value: f64) -> String {
    format!("# TYPE test_value gauge\ntest_value{{kind=\"a\"}} {value}\n")
}

#[test]
fn alert_reaches_alertmanager_then_resolves() {
    if !require_program("prometheus-alertmanager", "prometheus-alertmanager")
        || !require_program("amtool", "prometheus-alertmanager")
    {
        return;
    }
    let setup = Setup::new();
    let am = Alertmanager::start(setup.path());
    let target = TestTarget::start(Reply::text(&metrics_body(1.0)));
    std::fs::write(
        setup.path().join("rules.yml"),
        "groups:\n- name: test\n  interval: 1s\n  rules:\n  - alert: EmberTestAlert\n    expr: test_value > 0\n    labels:\n      severity: page\n    annotations:\n      summary: 'kind {{ $labels.kind }} is {{ $value }}'\n",
    )
    .expect("write rules");
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\n  external_labels: {{cluster: test}}\nrule_files: [rules.yml]\nscrape_configs:\n- job_name: t\n  static_configs: [{{targets: ['{}']}}]\nalerting:\n  alertmanagers:\n  - static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
        target.addr, am.port
    ));
    let mut ember = setup.start(&["--rules.alert.resend-delay=1s"]);
    ember.wait_ready();

    let (_, v) = get_json(&ember.url("/api/v1/alertmanagers"));
    assert_eq!(
        v["data"]["activeAlertmanagers"][0]["url"],
        format!("http://127.0.0.1:{}/api/v2/alerts", am.port)
    );

    wait_for(Duration::from_secs(30), "alert in amtool", || {
        am.amtool_query().contains("EmberTestAlert")
    });
    let listed = am.amtool_query();
    assert!(listed.contains("kind a is 1"), "{listed}");
    // External labels and the generator URL made it to Alertmanager.
    let (_, alerts) = get_json(&am.url("/api/v2/alerts"));
    let a = &alerts[0];
    assert_eq!(a["labels"]["cluster"], "test");
    assert_eq!(a["labels"]["severity"], "page");
    let gen_url = a["generatorURL"].as_str().unwrap_or("");
    assert!(
        gen_url.ends_with("/graph?g0.expr=test_value+%3E+0&g0.tab=1"),
        "{gen_url}"
    );

    // Alertmanager may hear of the alert before this evaluation's state and
    // ALERTS samples are visible: wait for them instead of racing.
    wait_for(
        Duration::from_secs(10),
        "firing alert and ALERTS in Ember",
        || {
            let (_, a) = get_json(&ember.url("/api/v1/alerts"));
            let (_, q) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc("ALERTS"))));
            a["data"]["alerts"][0]["state"] == "firing"
                && q["data"]["result"][0]["metric"]["alertstate"] == "firing"
        },
    );
    let (_, v) = get_json(&ember.url("/api/v1/alerts"));
    assert_eq!(v["data"]["alerts"][0]["state"], "firing");
    assert_eq!(v["data"]["alerts"][0]["value"], "1e+00");
    let (_, v) = get_json(&ember.url("/api/v1/rules?type=alert"));
    let rule = &v["data"]["groups"][0]["rules"][0];
    assert_eq!(rule["state"], "firing");
    assert_eq!(rule["health"], "ok");
    let (_, v) = get_json(&ember.url("/api/v1/rules?type=record"));
    assert_eq!(v["data"]["groups"], serde_json::json!([]));
    let (_, v) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc("ALERTS"))));
    assert_eq!(v["data"]["result"][0]["metric"]["alertstate"], "firing");

    // The condition clears: the alert is sent resolved and leaves amtool.
    target.set(Reply::text(&metrics_body(0.0)));
    wait_for(Duration::from_secs(30), "alert resolved in amtool", || {
        !am.amtool_query().contains("EmberTestAlert")
    });
    let (_, v) = get_json(&ember.url("/api/v1/alerts"));
    assert_eq!(
        v["data"]["alerts"],
        serde_json::json!([]),
        "{}",
        ember.logs()
    );
    let _ = std::fs::read_to_string(&am.log);
}

#[test]
fn recording_rules_match_prometheus() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    let body = "# TYPE http_requests gauge\n\
        http_requests{code=\"200\",path=\"/a\"} 10\n\
        http_requests{code=\"200\",path=\"/b\"} 20\n\
        http_requests{code=\"500\",path=\"/a\"} 3\n\
        http_requests{code=\"500\",path=\"/b\"} 0\n\
        # TYPE temp gauge\n\
        temp{room=\"x\"} 21.5\n\
        temp{room=\"y\"} -3\n";
    let target = TestTarget::start(Reply::text(body));
    let rules = [
        "groups:",
        "- name: rec",
        "  interval: 1s",
        "  rules:",
        "  - record: code:http_requests:sum",
        "    expr: sum by (code) (http_requests)",
        "  - record: path:http_errors:ratio",
        "    expr: sum by (path) (http_requests{code=\"500\"}) / sum by (path) (http_requests)",
        "  - record: job:http_requests:count",
        "    expr: count by (job) (http_requests)",
        "    labels:",
        "      source: rules",
        "  - record: temp:celsius:max",
        "    expr: max(temp)",
        "  - record: temp_f",
        "    expr: temp * 9 / 5 + 32",
        "  - record: http_requests:nonzero",
        "    expr: http_requests > 0",
        "  - record: room:renamed",
        "    expr: label_replace(temp, \"space\", \"$1\", \"room\", \"(.*)\")",
        "  - record: constant:scalar",
        "    expr: 42",
        "",
    ]
    .join("\n");
    let rules = rules.as_str();
    std::fs::write(setup.path().join("rules.yml"), rules).expect("write rules");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n- job_name: app\n  static_configs: [{{targets: ['{}']}}]\n",
        target.addr
    );
    setup.write_config(&config);
    let prom_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(prom_dir.path().join("rules.yml"), rules).expect("write rules");
    let prom = Prometheus::start(prom_dir.path(), &config);
    let mut ember = setup.start(&[]);
    ember.wait_ready();

    let names = [
        "code:http_requests:sum",
        "path:http_errors:ratio",
        "job:http_requests:count",
        "temp:celsius:max",
        "temp_f",
        "http_requests:nonzero",
        "room:renamed",
        "constant:scalar",
    ];
    let series = |url: &str, name: &str| -> Vec<(String, String)> {
        let (status, v) = get_json(&format!("{url}/api/v1/query?query={}", enc(name)));
        assert_eq!(status, 200, "{v}");
        let mut out: Vec<(String, String)> = v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| (s["metric"].to_string(), s["value"][1].to_string()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    };
    let ember_base = ember.url("");
    let prom_base = prom.url("");
    wait_for(
        Duration::from_secs(30),
        "every rule's output in both",
        || {
            names
                .iter()
                .all(|n| !series(&ember_base, n).is_empty() && !series(&prom_base, n).is_empty())
        },
    );
    for name in names {
        assert_eq!(
            series(&ember_base, name),
            series(&prom_base, name),
            "{name} differs\nember logs:\n{}",
            ember.logs()
        );
    }
    // Both report the same rules in the same shape.
    let (_, e) = get_json(&ember.url("/api/v1/rules"));
    let (_, p) = get_json(&prom.url("/api/v1/rules"));
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v["data"]["groups"][0]["rules"][0]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(keys(&e), keys(&p));
    let rule_names = |v: &serde_json::Value| -> Vec<String> {
        v["data"]["groups"][0]["rules"]
            .as_array()
            .map(|a| a.iter().map(|r| r["name"].to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(rule_names(&e), rule_names(&p));
}

#[test]
fn invalid_rule_file_fails_start_and_reload_keeps_rules() {
    let setup = Setup::new();
    std::fs::write(
        setup.path().join("rules.yml"),
        "groups:\n- name: g\n  interval: 1s\n  rules:\n  - record: one\n    expr: vector(1)\n",
    )
    .expect("write rules");
    setup.write_config("global:\n  evaluation_interval: 1s\nrule_files: ['rules/*.yml']\n");
    std::fs::create_dir(setup.path().join("rules")).expect("mkdir");
    std::fs::rename(
        setup.path().join("rules.yml"),
        setup.path().join("rules/ok.yml"),
    )
    .expect("mv");
    std::fs::write(
        setup.path().join("rules/bad.yml"),
        "groups:\n- name: x\n  rules:\n  - record: a\n",
    )
    .expect("write");
    let mut bad = setup.start(&[]);
    let status = bad.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert!(
        bad.logs().contains("field 'expr' must be set"),
        "{}",
        bad.logs()
    );

    std::fs::remove_file(setup.path().join("rules/bad.yml")).expect("rm");
    let mut ember = setup.start(&["--web.enable-lifecycle"]);
    ember.wait_ready();
    wait_for(Duration::from_secs(20), "rule evaluated", || {
        let (_, v) = get_json(&ember.url("/api/v1/rules"));
        v["data"]["groups"][0]["rules"][0]["health"] == "ok"
    });
    // A broken file on reload: reload fails, the old rules keep running.
    std::fs::write(
        setup.path().join("rules/bad.yml"),
        "groups:\n- name: x\n  rules:\n  - record: a\n",
    )
    .expect("write");
    let r = support::post(&ember.url("/-/reload"));
    assert!(r.map(|r| r.status).unwrap_or(500) >= 500);
    let (_, v) = get_json(&ember.url("/api/v1/rules"));
    assert_eq!(v["data"]["groups"][0]["name"], "g");
    assert_eq!(
        ember.metric("ember_config_last_reload_successful"),
        Some(0.0)
    );
}
