//! The calls Grafana's Prometheus data source makes, in the order it makes
//! them: "Save & test", version detection, autocomplete in the query
//! editor, exemplars, the alert rules view, and a time series panel.
//! Grafana sends queries as form POSTs (its default `httpMethod`) and falls
//! back to GET on 405/400, so both are checked to answer alike.

mod support;

use serde_json::json;
use support::*;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn json_of(r: Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

#[test]
fn grafana_data_source_sequence() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let now = now_s();
    let samples: Vec<(i64, f64)> = (0..40)
        .map(|i| ((now - 600 + i * 15) * 1000, (i * 10) as f64))
        .collect();
    write_series(
        &ember,
        &[
            (
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", "a:80"),
                ],
                &samples,
            ),
            (
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "web"),
                    ("instance", "b:80"),
                ],
                &samples,
            ),
            (
                &[
                    ("__name__", "node_load1"),
                    ("job", "node"),
                    ("instance", "n:9100"),
                ],
                &samples,
            ),
        ],
    );
    let u = |p: &str| ember.url(p);

    // 1. Save & test: POST query=1+1 at time 4 → scalar 2.
    let v = json_of(post_form(&u("/api/v1/query"), "query=1%2B1&time=4").unwrap());
    assert_eq!(
        v,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
    );

    // 2. Version detection: a Prometheus semver, no `features` (not Mimir/Cortex).
    let v = json_of(get(&u("/api/v1/status/buildinfo")).unwrap());
    assert_eq!(v["data"]["version"], "3.0.0");
    assert!(v["data"].get("features").is_none());
    assert!(v["data"]["emberVersion"].is_string());

    // 3. POST first, GET as the fallback: same answers.
    let q = format!(
        "query={}&time={now}",
        enc("sum by (job) (http_requests_total)")
    );
    let by_post = json_of(post_form(&u("/api/v1/query"), &q).unwrap());
    let by_get = json_of(get(&u(&format!("/api/v1/query?{q}"))).unwrap());
    assert_eq!(by_post, by_get);
    assert_eq!(by_post["data"]["result"].as_array().unwrap().len(), 2);

    // 4. Autocomplete: metric names over the dashboard range.
    let range = format!("start={}&end={now}", now - 3600);
    let v = json_of(get(&u(&format!("/api/v1/label/__name__/values?{range}"))).unwrap());
    assert_eq!(v["data"], json!(["http_requests_total", "node_load1"]));
    // Label names for a metric (Grafana sends match[] with the metric).
    let sel = enc("http_requests_total");
    let v = json_of(get(&u(&format!("/api/v1/labels?match[]={sel}&{range}"))).unwrap());
    assert_eq!(v["data"], json!(["__name__", "instance", "job"]));
    let v = json_of(post_form(&u("/api/v1/labels"), &format!("match[]={sel}&{range}")).unwrap());
    assert_eq!(v["data"], json!(["__name__", "instance", "job"]));
    // Label values for a metric.
    let v = json_of(
        get(&u(&format!(
            "/api/v1/label/job/values?match[]={sel}&{range}"
        )))
        .unwrap(),
    );
    assert_eq!(v["data"], json!(["api", "web"]));
    // Series with a limit (newer Grafana sends one).
    let v = json_of(get(&u(&format!("/api/v1/series?match[]={sel}&{range}&limit=1"))).unwrap());
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    let v = json_of(post_form(&u("/api/v1/series"), &format!("match[]={sel}&{range}")).unwrap());
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    // Metric metadata (HELP/TYPE) for the metrics browser.
    let v = json_of(get(&u("/api/v1/metadata")).unwrap());
    assert!(v["data"].is_object(), "{v}");
    let v = json_of(get(&u("/api/v1/metadata?metric=node_load1&limit=1")).unwrap());
    assert!(v["data"].is_object(), "{v}");

    // 5. Exemplars for a panel: one trace, sent by remote write, shows up
    // with its series; the range applies.
    {
        use ember::remote::proto;
        let label = |n: &str, v: &str| proto::Label {
            name: n.into(),
            value: v.into(),
        };
        let body = proto::encode_request(&proto::WriteRequest {
            timeseries: vec![proto::TimeSeries {
                labels: vec![
                    label("__name__", "http_requests_total"),
                    label("instance", "a:80"),
                    label("job", "api"),
                ],
                exemplars: vec![proto::Exemplar {
                    labels: vec![label("trace_id", "4bf92f3577b34da6")],
                    value: 1.0,
                    timestamp: (now - 300) * 1000,
                }],
                ..proto::TimeSeries::default()
            }],
            metadata: vec![],
        });
        let r = post_remote_write(&u("/api/v1/write"), &body).unwrap();
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let v = json_of(
        post_form(
            &u("/api/v1/query_exemplars"),
            &format!("query={sel}&{range}"),
        )
        .unwrap(),
    );
    assert_eq!(
        v,
        json!({"status": "success", "data": [{
            "seriesLabels": {"__name__": "http_requests_total", "instance": "a:80", "job": "api"},
            "exemplars": [{"labels": {"trace_id": "4bf92f3577b34da6"}, "value": "1", "timestamp": now - 300}]
        }]})
    );
    let v = json_of(
        get(&u(&format!(
            "/api/v1/query_exemplars?query={sel}&start={}&end={now}",
            now - 60
        )))
        .unwrap(),
    );
    assert_eq!(v, json!({"status": "success", "data": []}));
    let r = get(&u("/api/v1/query_exemplars?query=sum(")).unwrap();
    assert_eq!(r.status, 400);

    // 6. Alert rules view.
    let v = json_of(get(&u("/api/v1/rules")).unwrap());
    assert_eq!(v, json!({"status": "success", "data": {"groups": []}}));

    // 7. A time series panel: rate over the last 10 minutes, 30s step.
    let body = format!(
        "query={}&start={}&end={now}&step=30",
        enc("sum by (job) (rate(http_requests_total[2m]))"),
        now - 540
    );
    let v = json_of(post_form(&u("/api/v1/query_range"), &body).unwrap());
    assert_eq!(v["data"]["resultType"], "matrix");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    for s in series {
        // 10 per 15 s is 0.666…/s.
        let last = s["values"].as_array().unwrap().last().unwrap()[1]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap();
        assert!((last - 10.0 / 15.0).abs() < 1e-9, "{s}");
    }
    let by_get = json_of(get(&u(&format!("/api/v1/query_range?{body}"))).unwrap());
    assert_eq!(v, by_get);
    // A bad query in the panel: 400 bad_data, which Grafana shows as is.
    let r = post_form(
        &u("/api/v1/query_range"),
        "query=rate(&start=0&end=60&step=15",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("\"errorType\":\"bad_data\""), "{}", r.body);
}
