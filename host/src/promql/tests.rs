//! Engine tests over a small store; the conformance suite lives in
//! `tests/promqltest.rs`.

use std::sync::Arc;

use super::*;
use crate::model::Labels;
use crate::storage::StorageOptions;

/// Label pairs and samples of one series.
type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn store(series: &[TestSeries]) -> (tempfile::TempDir, Arc<Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let (storage, _) = Storage::open(dir.path(), StorageOptions::default(), |_| {}).unwrap();
    let mut app = storage.appender();
    for (labels, samples) in series {
        let l = Labels::from_pairs(labels.iter().copied()).unwrap();
        for &(t, v) in *samples {
            app.append(l.clone(), t, v);
        }
    }
    app.commit().unwrap();
    (dir, Arc::new(storage))
}

fn engine(storage: Arc<Storage>) -> Engine {
    Engine::new(storage, EngineOptions::default())
}

fn vector(v: Value) -> Vec<(String, f64)> {
    match v {
        Value::Vector(s) => s
            .into_iter()
            .map(|s| (eval::labels_string(&s.labels), s.v))
            .collect(),
        other => panic!("expected a vector, got {other:?}"),
    }
}

#[tokio::test]
async fn selectors_aggregations_and_rates() {
    let samples: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60_000, i as f64 * 60.0)).collect();
    let (_d, s) = store(&[
        (
            &[("__name__", "reqs"), ("job", "a"), ("instance", "1")],
            &samples,
        ),
        (
            &[("__name__", "reqs"), ("job", "a"), ("instance", "2")],
            &samples,
        ),
        (
            &[("__name__", "reqs"), ("job", "b"), ("instance", "1")],
            &samples,
        ),
    ]);
    let e = engine(s);
    let o = QueryOptions::default();
    let r = e
        .instant_query("reqs{job=\"a\"}", 600_000, &o)
        .await
        .unwrap();
    assert_eq!(
        vector(r.value),
        vec![
            (
                "{__name__=\"reqs\", instance=\"1\", job=\"a\"}".to_owned(),
                600.0
            ),
            (
                "{__name__=\"reqs\", instance=\"2\", job=\"a\"}".to_owned(),
                600.0
            )
        ]
    );
    let r = e
        .instant_query("sum by (job) (rate(reqs[5m]))", 600_000, &o)
        .await
        .unwrap();
    assert_eq!(
        vector(r.value),
        vec![
            ("{job=\"a\"}".to_owned(), 2.0),
            ("{job=\"b\"}".to_owned(), 1.0)
        ]
    );
    let r = e.instant_query("1 + 2 * 3", 0, &o).await.unwrap();
    assert!(matches!(r.value, Value::Scalar { v, .. } if v == 7.0));
    let r = e
        .range_query("count(reqs)", 0, 600_000, 60_000, &o)
        .await
        .unwrap();
    match r.value {
        Value::Matrix(m) => assert_eq!(m[0].points.len(), 11),
        other => panic!("{other:?}"),
    }
    let err = e.instant_query("sum(", 0, &o).await.unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let explained = e
        .explain("sum(rate(reqs[5m]))", 0, 0, 0, true)
        .await
        .unwrap();
    assert!(explained.contains("PromRangeWindow"), "{explained}");
    assert!(explained.contains("output_rows"), "{explained}");
}

#[tokio::test]
async fn sort_in_a_range_query_warns_with_position() {
    let (_d, s) = store(&[(&[("__name__", "series")], &[(0, 1.0)])]);
    let e = engine(s);
    let r = e
        .range_query(
            "sum(sort(series))",
            0,
            60_000,
            60_000,
            &QueryOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.warnings,
        vec![
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:5)"
        ]
    );
}

#[tokio::test]
async fn limits_stop_queries_with_prometheus_errors() {
    let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 15_000, i as f64)).collect();
    let names: Vec<String> = (0..2000).map(|i| format!("s{i}")).collect();
    let series: Vec<Vec<(&str, &str)>> = names
        .iter()
        .map(|n| vec![("__name__", "m"), ("id", n.as_str())])
        .collect();
    let input: Vec<TestSeries> = series.iter().map(|l| (&l[..], &samples[..])).collect();
    let (_d, s) = store(&input);

    let small = Engine::new(
        s.clone(),
        EngineOptions {
            max_samples: 1000,
            ..EngineOptions::default()
        },
    );
    let err = small
        .instant_query("sum(m)", 1_000_000, &QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );

    let e = engine(s);
    let opts = QueryOptions {
        timeout: Some(std::time::Duration::from_nanos(1)),
        ..QueryOptions::default()
    };
    let err = e
        .range_query("sum(rate(m[5m]))", 0, 1_500_000, 15_000, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "timeout");
    assert_eq!(err.http_status(), 503);
    assert_eq!(err.to_string(), "query timed out in expression evaluation");
}
