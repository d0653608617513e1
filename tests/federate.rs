//! `/federate`: the exposition Ember writes, and Prometheus 2.42 scraping
//! it with `honor_labels: true`.

mod support;

use std::time::{Duration, Instant};

use support::*;

const CONFIG: &str = "global:\n  scrape_interval: 15s\n  external_labels:\n    site: ember1\n";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn exposition_of_latest_samples() {
    let setup = Setup::new();
    setup.write_config(CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let t = now_ms();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    write_series(
        &ember,
        &[
            (
                &[("__name__", "temp"), ("job", "app"), ("instance", "h:1")],
                &[(t - 20_000, 20.0), (t - 5_000, 21.5)],
            ),
            (
                &[("__name__", "temp"), ("job", "app"), ("site", "own")],
                &[(t - 1_000, 1e6)],
            ),
            (
                &[("__name__", "gone"), ("job", "app")],
                &[(t - 3_000, 1.0), (t - 2_000, stale)],
            ),
            (
                &[("__name__", "old"), ("job", "app")],
                &[(t - 600_000, 1.0)],
            ),
            (&[("__name__", "other"), ("job", "db")], &[(t - 1_000, 2.0)]),
        ],
    );
    let r = get(&ember.url(&format!("/federate?match[]={}", enc("{job=\"app\"}")))).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        r.body,
        format!(
            "# TYPE temp untyped\n\
             temp{{instance=\"h:1\",job=\"app\",site=\"ember1\"}} 21.5 {}\n\
             temp{{job=\"app\",site=\"own\",instance=\"\"}} 1e+06 {}\n",
            t - 5_000,
            t - 1_000
        )
    );
    // Two selectors: union, each series once, families by name.
    let r = get(&ember.url(&format!(
        "/federate?match[]={}&match[]={}&match[]={}",
        enc("temp"),
        enc("other"),
        enc("{__name__=~\"t.*\"}")
    )))
    .unwrap();
    assert_eq!(r.body.matches("# TYPE").count(), 2, "{}", r.body);
    assert_eq!(r.body.matches("temp{").count(), 2, "{}", r.body);
    // No selector: nothing. A bad one: 400.
    assert_eq!(get(&ember.url("/federate")).unwrap().body, "");
    assert_eq!(
        get(&ember.url("/federate?match[]=%7B")).unwrap().status,
        400
    );
}

#[test]
fn prometheus_federates_from_ember() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    setup.write_config(CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    // Keep the series fresh while Prometheus scrapes.
    let feed = |ember: &Ember| {
        let t = now_ms();
        write_series(
            ember,
            &[
                (
                    &[
                        ("__name__", "ember_temp"),
                        ("job", "app"),
                        ("instance", "h:1"),
                        ("room", "a"),
                    ],
                    &[(t, 21.5)],
                ),
                (
                    &[("__name__", "ember_nameless_instance"), ("job", "batch")],
                    &[(t, 7.0)],
                ),
            ],
        );
    };
    feed(&ember);
    let prom_dir = setup.path().join("peer");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = Prometheus::start(
        &prom_dir,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]': ['{{job=~\"app|batch\"}}']\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            ember.port
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        feed(&ember);
        let temp = prom.query("ember_temp");
        let batch = prom.query("ember_nameless_instance");
        if temp.as_array().is_some_and(|a| !a.is_empty())
            && batch.as_array().is_some_and(|a| !a.is_empty())
        {
            // honor_labels keeps Ember's job and instance; the external label comes along.
            assert_eq!(
                temp[0]["metric"],
                serde_json::json!({"__name__": "ember_temp", "job": "app", "instance": "h:1", "room": "a", "site": "ember1"}),
            );
            assert_eq!(temp[0]["value"][1], "21.5");
            // The empty instance keeps the scraper's own instance off.
            assert_eq!(
                batch[0]["metric"],
                serde_json::json!({"__name__": "ember_nameless_instance", "job": "batch", "site": "ember1"}),
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not get the series: {temp} {batch}\n{}",
            prom.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let up = prom.query("up{job=\"federate\"}");
    assert_eq!(up[0]["value"][1], "1", "{up}");
}
