//! Pushgateway-compatible pushes from the real Python client library
//! (prometheus_client from PyPI): PUT, POST, DELETE, grouping labels, a value
//! containing '/', rejections, persistence and ingestion into storage.

mod support;

use std::process::Command;
use std::time::Duration;

use ember::model::Matcher;
use ember::storage::{Storage, StorageOptions};
use support::*;

fn python(code: &str) {
    let out = Command::new("python3")
        .args(["-c", code])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed:\n{code}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn groups(push: &str) -> serde_json::Value {
    serde_json::from_str(&get(&format!("http://{push}/api/v1/metrics")).unwrap().body).unwrap()
}

#[test]
fn python_client_push_put_post_delete() {
    if !require_python_module("prometheus_client") {
        return;
    }
    let setup = Setup::new();
    setup.write_config("global:\n  scrape_interval: 1s\n");
    let push = format!("127.0.0.1:{}", free_port());
    let mut ember = setup.start(&[&format!("--push.listen-address={push}")]);
    ember.wait_ready();
    let prelude = format!(
        "from prometheus_client import CollectorRegistry, Gauge, Counter, push_to_gateway, pushadd_to_gateway, delete_from_gateway\n\
         gw = '{push}'\nkey = {{'instance': 'a/b'}}\n"
    );

    // PUT: a whole group, with a grouping value the client must base64-encode.
    python(&format!(
        "{prelude}r = CollectorRegistry()\nGauge('batch_last_success', 'Last success.', registry=r).set(42)\n\
         Gauge('batch_items', 'Items.', registry=r).set(7)\npush_to_gateway(gw, job='batch', registry=r, grouping_key=key)\n"
    ));
    let g = groups(&push);
    assert_eq!(g["data"][0]["labels"]["instance"], "a/b");
    assert_eq!(
        g["data"][0]["batch_last_success"]["metrics"][0]["value"],
        "42"
    );

    // POST replaces only the families it carries.
    python(&format!(
        "{prelude}r = CollectorRegistry()\nGauge('batch_items', 'Items.', registry=r).set(8)\npushadd_to_gateway(gw, job='batch', registry=r, grouping_key=key)\n"
    ));
    let g = groups(&push);
    assert_eq!(g["data"][0]["batch_items"]["metrics"][0]["value"], "8");
    assert_eq!(
        g["data"][0]["batch_last_success"]["metrics"][0]["value"], "42",
        "POST keeps other families"
    );

    // The push listener's /metrics is scrapeable like a Pushgateway's.
    let exposition = get(&format!("http://{push}/metrics")).unwrap().body;
    assert!(
        exposition.contains("batch_items{instance=\"a/b\",job=\"batch\"} 8"),
        "{exposition}"
    );
    assert!(
        exposition.contains("push_time_seconds{instance=\"a/b\",job=\"batch\"}"),
        "{exposition}"
    );

    // Rejections: timestamps and type conflicts are 400 with a reason.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .put(&format!("http://{push}/metrics/job/other"))
        .send("m 1 1000\n")
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("timestamps")
    );
    let mut r = agent
        .put(&format!("http://{push}/metrics/job/other"))
        .send("# TYPE batch_items counter\nbatch_items 1\n")
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("already exists as gauge")
    );
    // The main port accepts pushes too.
    let r = agent
        .put(&ember.url("/metrics/job/main_port"))
        .send("via_main 1\n")
        .unwrap();
    assert_eq!(r.status(), 200);

    // Pushed metrics reach Ember's storage within a scrape interval.
    std::thread::sleep(Duration::from_millis(2500));

    // PUT with one family replaces the group; DELETE removes another.
    python(&format!(
        "{prelude}r = CollectorRegistry()\nGauge('batch_items', 'Items.', registry=r).set(9)\npush_to_gateway(gw, job='batch', registry=r, grouping_key=key)\n\
         delete_from_gateway(gw, job='main_port')\n"
    ));
    let g = groups(&push);
    assert_eq!(g["data"].as_array().unwrap().len(), 1, "{g}");
    assert!(
        g["data"][0].get("batch_last_success").is_none(),
        "PUT replaced the group"
    );
    // One more ingestion pass (1s) writes the stale marker for the replaced series.
    std::thread::sleep(Duration::from_millis(1600));

    // Persisted: a restart keeps the group.
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));
    let mut again = setup.start(&[&format!("--push.listen-address={push}")]);
    again.wait_ready();
    assert_eq!(
        groups(&push)["data"][0]["batch_items"]["metrics"][0]["value"],
        "9"
    );
    again.signal(libc::SIGTERM);
    again.wait_exit(Duration::from_secs(20));

    let (storage, _) = Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {}).unwrap();
    let got = storage
        .select(
            &[
                Matcher::eq("__name__", "batch_last_success"),
                Matcher::eq("job", "batch"),
                Matcher::eq("instance", "a/b"),
            ],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(
        got.len(),
        1,
        "pushed metric stored with its grouping labels"
    );
    assert_eq!(got[0].samples[0].v, 42.0);
    assert!(
        got[0].samples.last().unwrap().v.is_nan(),
        "stale once PUT replaced it: {:?}",
        got[0].samples
    );
}

#[test]
fn push_listener_port_in_use_is_named() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let mut ember = setup.start(&[&format!("--push.listen-address={addr}")]);
    assert_eq!(ember.wait_exit(Duration::from_secs(20)).code(), Some(1));
    assert!(ember.logs().contains(&addr), "{}", ember.logs());
}
