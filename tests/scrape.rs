//! Scraping end to end with the real binary: node_exporter as a real target,
//! and controllable test targets for staleness, failures and labels.

mod support;

use std::time::{Duration, Instant};

use ember::model::{Matcher, STALE_NAN_BITS};
use ember::storage::{SeriesSamples, Storage, StorageOptions};
use support::*;

fn stored(setup: &Setup, matchers: &[Matcher]) -> Vec<SeriesSamples> {
    let (storage, _) = Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {}).unwrap();
    storage.select(matchers, i64::MIN, i64::MAX).unwrap()
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[test]
fn scrapes_real_node_exporter() {
    if !require_program("prometheus-node-exporter", "prometheus-node-exporter") {
        return;
    }
    let port = free_port();
    let mut exporter = std::process::Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&format!("http://127.0.0.1:{port}/metrics")).is_err() {
        assert!(Instant::now() < deadline, "node_exporter did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let setup = Setup::new();
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n        labels: {{env: test}}\n"
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    std::thread::sleep(Duration::from_millis(3500));
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));
    let _ = exporter.kill();
    let _ = exporter.wait();

    let up = stored(
        &setup,
        &[Matcher::eq("__name__", "up"), Matcher::eq("job", "node")],
    );
    assert_eq!(up.len(), 1);
    assert_eq!(
        up[0].labels.get("instance"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(up[0].labels.get("env"), Some("test"));
    let values: Vec<f64> = up[0].samples.iter().map(|s| s.v).collect();
    assert!(values.len() >= 3, "{values:?}");
    assert!(
        values[..values.len() - 1].iter().all(|v| *v == 1.0),
        "{values:?}"
    );
    assert!(
        is_stale(*values.last().unwrap()),
        "a stopped target's series end with a stale marker"
    );
    let cpu = stored(
        &setup,
        &[
            Matcher::eq("__name__", "node_cpu_seconds_total"),
            Matcher::eq("job", "node"),
        ],
    );
    assert!(!cpu.is_empty(), "node_exporter's CPU series are stored");
    assert!(
        cpu.iter()
            .all(|s| s.labels.get("cpu").is_some() && s.labels.get("mode").is_some())
    );
    let scraped = stored(&setup, &[Matcher::eq("__name__", "scrape_samples_scraped")]);
    assert!(
        scraped[0].samples[0].v > 200.0,
        "{:?}",
        scraped[0].samples[0]
    );
}

#[test]
fn staleness_failures_and_labels() {
    let churn = TestTarget::start(Reply::text("# TYPE a gauge\na 1\nb{x=\"1\"} 2\n"));
    let broken = TestTarget::start(Reply {
        status: 500,
        ..Reply::text("oops")
    });
    let garbage = TestTarget::start(Reply::text("ok 1\nthis is { not valid\n"));
    let slow = TestTarget::start(Reply {
        delay: Duration::from_secs(3),
        ..Reply::text("s 1\n")
    });
    let wide = TestTarget::start(Reply::text("w{a=\"1\",b=\"2\",c=\"3\"} 1\n"));
    let labelled = TestTarget::start(Reply::text(
        "c{job=\"exposed\",keep=\"yes\"} 1\nc{job=\"exposed\",keep=\"no\"} 2\n",
    ));
    let setup = Setup::new();
    let config = [
        "global:".to_owned(),
        "  scrape_interval: 1s".to_owned(),
        "  scrape_timeout: 500ms".to_owned(),
        "scrape_configs:".to_owned(),
        "  - job_name: churn".to_owned(),
        format!("    static_configs: [{{targets: ['{}']}}]", churn.addr),
        "  - job_name: broken".to_owned(),
        format!(
            "    static_configs: [{{targets: ['{}', '{}', '{}']}}]",
            broken.addr, garbage.addr, slow.addr
        ),
        "  - job_name: labelled".to_owned(),
        format!("    static_configs: [{{targets: ['{}']}}]", labelled.addr),
        "    metric_relabel_configs:".to_owned(),
        "      - {source_labels: [keep], regex: 'no', action: drop}".to_owned(),
        "  - job_name: wide".to_owned(),
        "    label_limit: 4".to_owned(),
        format!("    static_configs: [{{targets: ['{}']}}]", wide.addr),
    ];
    setup.write_config(&(config.join("\n") + "\n"));
    let mut ember = setup.start(&["--log.level=debug"]);
    ember.wait_ready();
    churn.wait_hits(2);
    churn.set(Reply::text("a 1\n"));
    churn.wait_hits(2);
    garbage.wait_hits(1);
    slow.wait_hits(1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        get(&ember.url("/-/healthy")).unwrap().status,
        200,
        "bad targets do not hurt the server"
    );
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));
    let logs = ember.logs();

    // b disappeared from the exposition: its last sample is a stale marker, a continues.
    let b = stored(&setup, &[Matcher::eq("__name__", "b")]);
    let bs = &b[0].samples;
    assert!(bs.iter().filter(|s| is_stale(s.v)).count() >= 1, "{bs:?}");
    let a = stored(&setup, &[Matcher::eq("__name__", "a")]);
    assert!(a[0].samples.len() > bs.iter().filter(|s| !is_stale(s.v)).count());

    // 500, garbage and timeout: up is 0 and the reason is logged.
    for (addr, why) in [
        (&broken.addr, "500"),
        (&garbage.addr, "line 2"),
        (&slow.addr, "deadline"),
    ] {
        let up = stored(
            &setup,
            &[Matcher::eq("__name__", "up"), Matcher::eq("instance", addr)],
        );
        assert!(
            up[0]
                .samples
                .iter()
                .filter(|s| !is_stale(s.v))
                .all(|s| s.v == 0.0),
            "{addr}: {:?}",
            up[0].samples
        );
        assert!(
            logs.lines()
                .any(|l| l.contains(addr.as_str()) && l.contains(why)),
            "no {why} error for {addr} in logs"
        );
    }
    // label_limit 4 < __name__, a, b, c, instance, job: the scrape fails.
    let up = stored(
        &setup,
        &[Matcher::eq("__name__", "up"), Matcher::eq("job", "wide")],
    );
    assert!(
        up[0]
            .samples
            .iter()
            .filter(|s| !is_stale(s.v))
            .all(|s| s.v == 0.0)
    );
    assert!(
        logs.contains("label_limit exceeded (metric: w, number of labels: 6, limit: 4)"),
        "label limit error logged"
    );
    // A garbage scrape stores nothing from that scrape, not even its valid first line.
    assert!(stored(&setup, &[Matcher::eq("__name__", "ok")]).is_empty());

    // honor_labels: false keeps the exposed job as exported_job; metric relabeling dropped keep="no".
    let c = stored(&setup, &[Matcher::eq("__name__", "c")]);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].labels.get("job"), Some("labelled"));
    assert_eq!(c[0].labels.get("exported_job"), Some("exposed"));
}
