//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query` and
//! `/api/v1/parse_query` against the real binary: parameter validation,
//! error types, codes and messages, and the JSON envelope, as in
//! Prometheus 3. Data is loaded through the remote-write receiver.

mod support;

use ember::remote::proto::{self, TimeSeries, WriteRequest, encode_request};
use serde_json::{Value, json};
use support::*;

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
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
        ..TimeSeries::default()
    }
}

/// Starts Ember with the remote-write receiver and writes `up` for two
/// targets every 15 s from t=0 to t=300 s (values 1, and 0 for `b` after 150 s).
fn start() -> (Setup, Ember) {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let points = |down_after: i64| -> Vec<(i64, f64)> {
        (0..=20)
            .map(|i| {
                let t = i * 15_000;
                (t, if t > down_after { 0.0 } else { 1.0 })
            })
            .collect()
    };
    let body = encode_request(&WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "up"), ("instance", "a:9100"), ("job", "node")],
                &points(i64::MAX),
            ),
            series(
                &[("__name__", "up"), ("instance", "b:9100"), ("job", "node")],
                &points(150_000),
            ),
        ],
        metadata: vec![],
    });
    let r = post_remote_write(&ember.url("/api/v1/write"), &body).unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    (setup, ember)
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
fn instant_query_parameters() {
    let (_setup, ember) = start();
    let url = |q: &str| ember.url(&format!("/api/v1/query?{q}"));
    let bad = |q: &str, message: &str| assert_error(get_json(&url(q)), 400, "bad_data", message);

    bad(
        "",
        "invalid parameter \"query\": 1:1: parse error: no expression found in input",
    );
    bad(
        "query=up&time=abc",
        "invalid parameter \"time\": Invalid time value for 'time': cannot parse \"abc\" to a valid timestamp",
    );
    bad(
        "query=up&timeout=soon",
        "invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration",
    );
    bad(
        "query=up&lookback_delta=x",
        "error parsing lookback delta duration: cannot parse \"x\" to a valid duration",
    );
    bad(
        "query=up&limit=-3",
        "invalid parameter \"limit\": limit must be non-negative",
    );
    bad(
        "query=up&limit=ten",
        "invalid parameter \"limit\": strconv.Atoi: parsing \"ten\": invalid syntax",
    );
    // Parameters are checked in Prometheus's order: limit before time.
    bad(
        "query=up&limit=x&time=y",
        "invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax",
    );
    // The same through a form-encoded POST, as Grafana sends queries.
    let r = post_form(&ember.url("/api/v1/query"), "query=up&time=abc").unwrap();
    assert_eq!(r.status, 400);
    assert!(r.content_type.starts_with("application/json"));
    assert!(
        r.body.contains("Invalid time value for 'time'"),
        "{}",
        r.body
    );
    // Valid times and durations get past validation (any outcome but bad_data
    // about them).
    for q in [
        "query=up&time=1435781451.781",
        "query=up&time=2015-07-01T20:10:51.781Z",
        "query=up&timeout=1m30s&lookback_delta=1d",
        "query=up&timeout=0.5&lookback_delta=100ms",
        "query=up&timeout=1w&limit=0&stats=all",
    ] {
        let (_, v) = get_json(&url(q));
        assert!(
            !v["error"]
                .as_str()
                .unwrap_or("")
                .contains("invalid parameter \"time"),
            "{q}: {v}"
        );
        assert!(
            !v["error"].as_str().unwrap_or("").contains("duration"),
            "{q}: {v}"
        );
    }
}

#[test]
fn range_query_parameters() {
    let (_setup, ember) = start();
    let url = |q: &str| ember.url(&format!("/api/v1/query_range?{q}"));
    let bad = |q: &str, message: &str| assert_error(get_json(&url(q)), 400, "bad_data", message);

    bad(
        "query=up&end=10&step=1",
        "invalid parameter \"start\": cannot parse \"\" to a valid timestamp",
    );
    bad(
        "query=up&start=0&step=1",
        "invalid parameter \"end\": cannot parse \"\" to a valid timestamp",
    );
    bad(
        "query=up&start=10&end=5&step=1",
        "invalid parameter \"end\": end timestamp must not be before start time",
    );
    bad(
        "query=up&start=0&end=10",
        "invalid parameter \"step\": cannot parse \"\" to a valid duration",
    );
    bad(
        "query=up&start=0&end=10&step=1x",
        "invalid parameter \"step\": cannot parse \"1x\" to a valid duration",
    );
    for step in ["0", "-15", "0s"] {
        bad(
            &format!("query=up&start=0&end=10&step={step}"),
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        );
    }
    let too_many = "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)";
    bad("query=up&start=0&end=11001&step=1", too_many);
    bad(
        "query=up&start=0&end=1d&step=1",
        "invalid parameter \"end\": cannot parse \"1d\" to a valid timestamp",
    );
    bad(
        "query=up&start=0&end=2w&step=1",
        "invalid parameter \"end\": cannot parse \"2w\" to a valid timestamp",
    );
    bad(
        "query=up&start=2015-07-01T00:00:00Z&end=2015-07-08T00:00:00Z&step=30s",
        too_many,
    );
    // Exactly 11,000 steps is allowed.
    let (_, v) = get_json(&url("query=up&start=0&end=11000&step=1"));
    assert_ne!(v["error"], json!(too_many), "{v}");
    bad(
        "start=0&end=10&step=1",
        "invalid parameter \"query\": 1:1: parse error: no expression found in input",
    );
    bad(
        "query=up&start=0&end=10&step=1&timeout=x",
        "invalid parameter \"timeout\": cannot parse \"x\" to a valid duration",
    );
    bad(
        "query=up&start=0&end=10&step=1&limit=-1",
        "invalid parameter \"limit\": limit must be non-negative",
    );
    let r = post_form(
        &ember.url("/api/v1/query_range"),
        "query=up&start=10&end=5&step=1",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("end timestamp must not be before start time")
    );
}

/// Whatever the engine answers, the envelope and the mapping from
/// `errorType` to HTTP status are Prometheus's.
#[test]
fn engine_answers_use_the_envelope() {
    let (_setup, ember) = start();
    for path in [
        "/api/v1/query?query=up&time=300",
        "/api/v1/query_range?query=up&start=0&end=300&step=15",
    ] {
        let r = get(&ember.url(path)).unwrap();
        assert!(r.content_type.starts_with("application/json"), "{path}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        match v["status"].as_str() {
            Some("success") => {
                assert_eq!(r.status, 200);
                assert!(v["data"]["result"].is_array(), "{v}");
            }
            Some("error") => {
                let want = match v["errorType"].as_str().unwrap() {
                    "bad_data" => 400,
                    "execution" => 422,
                    "timeout" => 503,
                    "canceled" => 499,
                    "internal" => 500,
                    other => panic!("unknown errorType {other}"),
                };
                assert_eq!(r.status, want, "{v}");
                assert!(v["error"].is_string());
                assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
            }
            _ => panic!("{path}: {v}"),
        }
    }
}

#[test]
fn format_and_parse_query() {
    let (_setup, ember) = start();
    let (code, v) = get_json(&ember.url(&format!(
        "/api/v1/format_query?query={}",
        enc("sum(rate(http_requests_total{job=\"api\"}[5m]))by(instance)")
    )));
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v,
        json!({"status": "success",
               "data": "sum by (instance) (rate(http_requests_total{job=\"api\"}[5m]))"})
    );
    let r = post_form(
        &ember.url("/api/v1/format_query"),
        &format!("query={}", enc("1+1")),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"status":"success","data":"1 + 1"}"#);

    let (code, v) = get_json(&ember.url(&format!(
        "/api/v1/parse_query?query={}",
        enc("up{job=\"node\"} offset 5m")
    )));
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({
            "type": "vectorSelector", "name": "up", "offset": 300000,
            "startOrEnd": null, "timestamp": null,
            "matchers": [
                {"name": "job", "type": "=", "value": "node"},
                {"name": "__name__", "type": "=", "value": "up"}
            ]
        })
    );
    let (_, v) = get_json(&ember.url(&format!(
        "/api/v1/parse_query?query={}",
        enc("rate(up[5m]) > bool 1")
    )));
    assert_eq!(v["data"]["type"], "binaryExpr", "{v}");
    assert_eq!(v["data"]["op"], ">");
    assert_eq!(v["data"]["bool"], true);
    assert_eq!(v["data"]["lhs"]["type"], "call");
    assert_eq!(v["data"]["lhs"]["args"][0]["type"], "matrixSelector");
    assert_eq!(v["data"]["lhs"]["args"][0]["range"], 300000);
    assert_eq!(
        v["data"]["rhs"],
        json!({"type": "numberLiteral", "val": "1"})
    );

    for path in ["/api/v1/format_query", "/api/v1/parse_query"] {
        let (code, v) = get_json(&ember.url(&format!("{path}?query={}", enc("sum(up"))));
        assert_eq!(code, 400, "{v}");
        assert_eq!(v["errorType"], "bad_data");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.starts_with("invalid parameter \"query\": "), "{msg}");
        assert!(msg.len() > "invalid parameter \"query\": ".len(), "{msg}");
        assert_error(
            get_json(&ember.url(path)),
            400,
            "bad_data",
            "invalid parameter \"query\": 1:1: parse error: no expression found in input",
        );
    }
}

#[test]
fn grafana_health_check_scalar() {
    let (_setup, ember) = start();
    // Grafana's data-source health check, byte for byte.
    let r = post_form(&ember.url("/api/v1/query"), "query=1%2B1&time=4").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
    );
    let (_, v) = get_json(&ember.url("/api/v1/query?query=1%2B1&time=1.5"));
    assert_eq!(v["data"]["result"], json!([1.5, "2"]));
}

#[test]
fn string_literal() {
    let (_setup, ember) = start();
    let r = get(&ember.url(&format!("/api/v1/query?time=10&query={}", enc("\"hello\"")))).unwrap();
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"string","result":[10,"hello"]}}"#
    );
}

#[test]
fn instant_vector_limit_and_stats() {
    let (_setup, ember) = start();
    let r = get(&ember.url("/api/v1/query?query=up&time=300")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        concat!(
            r#"{"status":"success","data":{"resultType":"vector","result":["#,
            r#"{"metric":{"__name__":"up","instance":"a:9100","job":"node"},"value":[300,"1"]},"#,
            r#"{"metric":{"__name__":"up","instance":"b:9100","job":"node"},"value":[300,"0"]}]}}"#
        )
    );
    let (_, v) = get_json(&ember.url("/api/v1/query?query=up&time=300&limit=1"));
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    let (_, v) = get_json(&ember.url("/api/v1/query?query=up&time=300&stats=all"));
    let stats = &v["data"]["stats"];
    assert!(stats["timings"]["execTotalTime"].is_number(), "{v}");
    assert!(stats["samples"]["totalQueryableSamples"].is_number(), "{v}");
    // Nothing matches: an empty list, never null.
    let (_, v) = get_json(&ember.url("/api/v1/query?query=nope&time=300"));
    assert_eq!(v["data"], json!({"resultType": "vector", "result": []}));
    // Millisecond timestamps keep three decimals.
    let (_, v) = get_json(&ember.url("/api/v1/query?query=up&time=300.5"));
    assert_eq!(v["data"]["result"][0]["value"][0], json!(300.5));
}

#[test]
fn range_query_matrix() {
    let (_setup, ember) = start();
    let (code, v) = get_json(&ember.url(&format!(
        "/api/v1/query_range?query={}&start=0&end=60&step=30",
        enc("up{instance=\"a:9100\"}")
    )));
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({"resultType": "matrix", "result": [{
            "metric": {"__name__": "up", "instance": "a:9100", "job": "node"},
            "values": [[0, "1"], [30, "1"], [60, "1"]]
        }]})
    );
    let r = post_form(
        &ember.url("/api/v1/query_range"),
        "query=up&start=1970-01-01T00:00:00Z&end=1970-01-01T00:01:00Z&step=1m&limit=1",
    )
    .unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // A scalar range query is a matrix with an empty label set.
    let (_, v) = get_json(&ember.url("/api/v1/query_range?query=1&start=0&end=30&step=15"));
    assert_eq!(
        v["data"]["result"],
        json!([{"metric": {}, "values": [[0, "1"], [15, "1"], [30, "1"]]}])
    );
}

#[test]
fn engine_errors() {
    let (_setup, ember) = start();
    let (code, v) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc("sum(up"))));
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": "),
        "{v}"
    );
    // Many-to-many matching fails at run time: `execution`, 422.
    let (code, v) = get_json(&ember.url(&format!(
        "/api/v1/query?time=300&query={}",
        enc("up + on(job) up")
    )));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["errorType"], "execution");
}

#[test]
fn explain_shows_the_datafusion_plan_and_metrics() {
    let (_setup, ember) = start();
    let q = "sum%20by%20(job)%20(rate(up%5B5m%5D))";
    let (code, v) = get_json(&ember.url(&format!("/api/v1/explain?query={q}&time=300")));
    assert_eq!(code, 200, "{v}");
    let plan = v["data"]["plan"].as_str().unwrap();
    for op in ["PromAggregate", "PromRangeWindow", "PromSeriesScan"] {
        assert!(plan.contains(op), "{plan}");
    }
    let (code, v) = get_json(&ember.url(&format!(
        "/api/v1/explain?query={q}&start=0&end=300&step=15&analyze=true"
    )));
    assert_eq!(code, 200, "{v}");
    let plan = v["data"]["plan"].as_str().unwrap();
    assert!(plan.contains("output_rows="), "{plan}");
    assert!(plan.contains("elapsed_compute="), "{plan}");
    let (code, v) = get_json(&ember.url("/api/v1/explain?query=sum("));
    assert_eq!((code, v["errorType"].as_str()), (400, Some("bad_data")));
}
