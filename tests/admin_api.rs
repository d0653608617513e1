//! `/api/v1/admin/tsdb/*`: disabled without `--web.enable-admin-api`;
//! delete_series hides data from queries, clean_tombstones keeps it hidden,
//! snapshot writes a copy that opens as a data directory.

mod support;

use support::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn disabled_by_default() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    for path in ["delete_series?match[]=up", "clean_tombstones", "snapshot"] {
        let r = post(&ember.url(&format!("/api/v1/admin/tsdb/{path}"))).unwrap();
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(
            r.body,
            r#"{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}"#
        );
    }
}

fn count(ember: &Ember, selector: &str) -> usize {
    let (status, v) = get_json(&ember.url(&format!(
        "/api/v1/query?query={}",
        enc(&format!("count_over_time({selector}[1h])"))
    )));
    assert_eq!(status, 200, "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<usize>().unwrap())
        .sum()
}

#[test]
fn delete_clean_and_snapshot() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[
        "--web.enable-admin-api",
        "--web.enable-remote-write-receiver",
    ]);
    ember.wait_ready();
    let t0 = now_ms() - 1_200_000;
    let samples: Vec<(i64, f64)> = (0..60).map(|i| (t0 + i * 15_000, i as f64)).collect();
    write_series(
        &ember,
        &[
            (&[("__name__", "m"), ("job", "x")], &samples),
            (&[("__name__", "m"), ("job", "y")], &samples),
        ],
    );
    assert_eq!(count(&ember, "m"), 120);

    // Errors first.
    let r = post(&ember.url("/api/v1/admin/tsdb/delete_series")).unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("no match[] parameter provided"),
        "{}",
        r.body
    );
    let r = post(&ember.url("/api/v1/admin/tsdb/snapshot?skip_head=maybe")).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);

    // Delete the first 20 samples of job x (start and end inclusive).
    let end = (t0 + 19 * 15_000) as f64 / 1000.0;
    let r = post_form(
        &ember.url("/api/v1/admin/tsdb/delete_series"),
        &format!("match[]={}&start=0&end={end}", enc("m{job=\"x\"}")),
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(count(&ember, "m{job=\"x\"}"), 40);
    assert_eq!(count(&ember, "m{job=\"y\"}"), 60);
    // Whole series: gone from /series too.
    let r = post(&ember.url(&format!(
        "/api/v1/admin/tsdb/delete_series?match[]={}",
        enc("m{job=\"y\"}")
    )))
    .unwrap();
    assert_eq!(r.status, 204);
    let (_, v) = get_json(&ember.url(&format!("/api/v1/series?match[]={}", enc("m"))));
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");

    let r = post(&ember.url("/api/v1/admin/tsdb/clean_tombstones")).unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(count(&ember, "m"), 40);

    let r = post(&ember.url("/api/v1/admin/tsdb/snapshot")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let name = v["data"]["name"].as_str().unwrap().to_owned();
    assert!(
        name.len() == 16 + 1 + 16 && name.as_bytes()[8] == b'T',
        "{name}"
    );
    let snap = setup.data_dir().join("snapshots").join(&name);
    assert!(snap.is_dir());
    // The snapshot serves as a data directory with the same answers.
    drop(ember);
    let snap_setup = Setup::new();
    snap_setup.write_config(MINIMAL_CONFIG);
    let port = free_port();
    let mut copy = spawn(
        snap_setup.path(),
        &[
            format!(
                "--config.file={}",
                snap_setup.path().join("ember.yml").display()
            ),
            format!("--storage.tsdb.path={}", snap.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--push.listen-address=".to_owned(),
            "--sql.listen-address=".to_owned(),
        ],
        port,
        |_| {},
    );
    copy.wait_ready();
    assert_eq!(count(&copy, "m"), 40);
    assert_eq!(count(&copy, "m{job=\"y\"}"), 0);
}
