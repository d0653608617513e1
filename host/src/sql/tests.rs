use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Float64Type;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::*;
use crate::model::Labels;
use crate::promql::EngineOptions;
use crate::storage::StorageOptions;

/// `up{job, instance}` and `temp{job, room?}` every 10 s for 1000 s; with
/// a small block range, part of the data is in blocks and part in the head.
fn fixture() -> (tempfile::TempDir, SqlEngine) {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        block_range_ms: 200_000,
        retention_ms: None,
        ..StorageOptions::default()
    };
    let (storage, _) = Storage::open(tmp.path(), opts, |_| {}).unwrap();
    for t in (0..1_000_000).step_by(10_000) {
        let mut app = storage.appender();
        for (job, inst) in [("api", "a:1"), ("api", "a:2"), ("db", "d:1")] {
            app.append(
                Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", inst)]).unwrap(),
                t,
                1.0,
            );
        }
        app.append(
            Labels::from_pairs([("__name__", "temp"), ("job", "sensor"), ("room", "kitchen")])
                .unwrap(),
            t,
            (t / 1000) as f64,
        );
        app.append(
            Labels::from_pairs([("__name__", "temp"), ("job", "sensor")]).unwrap(),
            t,
            -1.0,
        );
        app.commit().unwrap();
    }
    storage.run_maintenance().unwrap();
    assert!(
        !storage.blocks().is_empty(),
        "fixture wants blocks and head"
    );
    let storage = Arc::new(storage);
    let engine = Engine::new(storage.clone(), EngineOptions::default());
    (tmp, SqlEngine::new(storage, engine, SqlOptions::default()))
}

async fn text(engine: &SqlEngine, sql: &str) -> String {
    let out = engine.query(sql, None).await.unwrap();
    pretty_format_batches(&out.batches).unwrap().to_string()
}

#[tokio::test]
async fn metric_tables_have_a_column_per_label() {
    let (_tmp, engine) = fixture();
    let got = text(
        &engine,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
         WHERE table_name = 'temp' ORDER BY ordinal_position",
    )
    .await;
    assert!(got.contains("| job  "), "{got}");
    assert!(got.contains("| room "), "{got}");
    assert!(got.contains("timestamp with time zone"), "{got}");
    let tables = text(&engine, "SHOW TABLES").await;
    for t in ["up", "temp", "samples", "series"] {
        assert!(tables.contains(&format!("| {t} ")), "{tables}");
    }
}

#[tokio::test]
async fn aggregation_over_blocks_and_head() {
    let (_tmp, engine) = fixture();
    let got = text(
        &engine,
        "SELECT job, count(*) AS n, sum(value) AS s FROM up \
         WHERE timestamp >= TIMESTAMP '1970-01-01T00:01:40Z' GROUP BY job ORDER BY job",
    )
    .await;
    // 100 s..990 s: 90 samples per series.
    assert!(got.contains("| api | 180 | 180.0 |"), "{got}");
    assert!(got.contains("| db  | 90  | 90.0  |"), "{got}");
    let nulls = text(&engine, "SELECT count(*) AS n FROM temp WHERE room IS NULL").await;
    assert!(nulls.contains("| 100 |"), "{nulls}");
}

#[tokio::test]
async fn samples_and_series_tables() {
    let (_tmp, engine) = fixture();
    let out = engine
        .query(
            "SELECT sum(value) FROM samples WHERE metric = 'temp' AND labels['room'] = 'kitchen'",
            None,
        )
        .await
        .unwrap();
    let sum = out.batches[0]
        .column(0)
        .as_primitive::<Float64Type>()
        .value(0);
    assert_eq!(sum, (0..100).map(|i| (i * 10) as f64).sum::<f64>());
    let series = text(
        &engine,
        "SELECT metric, labels['instance'] AS i, first_timestamp, last_timestamp FROM series \
         WHERE metric = 'up' ORDER BY i",
    )
    .await;
    assert!(
        series.contains("| up     | a:1 | 1970-01-01T00:00:00Z | 1970-01-01T00:16:30Z |"),
        "{series}"
    );
}

#[tokio::test]
async fn explain_shows_pushed_filters() {
    let (_tmp, engine) = fixture();
    let got = text(
        &engine,
        "EXPLAIN SELECT avg(value) FROM up WHERE job = 'api' \
         AND timestamp BETWEEN TIMESTAMP '1970-01-01T00:01:00Z' AND TIMESTAMP '1970-01-01T00:02:00Z'",
    )
    .await;
    assert!(
        got.contains(
            "EmberStorageScan: table=up, matchers=[__name__=\"up\", job=\"api\"], time=[1970-01-01T00:01:00Z, 1970-01-01T00:02:00Z]"
        ),
        "{got}"
    );
    // The label filter is exact (storage applies it alone), time is
    // inexact (DataFusion checks it again).
    assert!(
        got.contains("full_filters=[up.job = Utf8(\"api\")]"),
        "{got}"
    );
    assert!(got.contains("partial_filters=[up.timestamp >="), "{got}");
    assert!(got.contains("FilterExec: timestamp@0 >= 60000"), "{got}");
}

#[tokio::test]
async fn promql_table_functions() {
    let (_tmp, engine) = fixture();
    let got = text(
        &engine,
        "SELECT job, value FROM promql_instant('sum by (job) (up)', 500) ORDER BY job",
    )
    .await;
    assert!(got.contains("| api | 2.0   |"), "{got}");
    assert!(got.contains("| db  | 1.0   |"), "{got}");
    let n = text(
        &engine,
        "SELECT count(*) AS n FROM promql_range('up{job=\"db\"}', 0, 100, '10s')",
    )
    .await;
    assert!(n.contains("| 11 |"), "{n}");
    let joined = text(
        &engine,
        "SELECT p.job, p.value = s.v AS same FROM promql_instant('sum by (job) (up)', TIMESTAMP '1970-01-01T00:08:20Z') p \
         JOIN (SELECT job, sum(value) AS v FROM up WHERE timestamp = TIMESTAMP '1970-01-01T00:08:20Z' GROUP BY job) s \
         ON p.job = s.job ORDER BY p.job",
    )
    .await;
    assert!(joined.contains("| api | true |"), "{joined}");
}

#[tokio::test]
async fn read_only() {
    let (_tmp, engine) = fixture();
    for sql in [
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO up VALUES ('a', 'b', now(), 1.0)",
        "DROP TABLE up",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
        "DELETE FROM up",
        "EXPLAIN COPY (SELECT 1) TO '/tmp/y.csv'",
    ] {
        let err = engine.query(sql, None).await.unwrap_err();
        assert!(matches!(err, SqlError::ReadOnly(_)), "{sql}: {err:?}");
        assert!(err.to_string().contains("read-only"), "{err}");
    }
}

#[tokio::test]
async fn errors_carry_positions_and_limits_hold() {
    let (_tmp, engine) = fixture();
    let err = engine.query("SELECT FROM WHERE", None).await.unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    assert!(err.position().is_some(), "{err:?}");
    let err = engine.query("SELECT nope FROM up", None).await.unwrap_err();
    assert_eq!(err.error_type(), "bad_data", "{err:?}");
    let mut small = engine.clone();
    small.options.max_rows = 10;
    let err = small.query("SELECT * FROM up", None).await.unwrap_err();
    assert!(matches!(err, SqlError::TooManyRows(10)), "{err:?}");
    let ok = small
        .query("SELECT * FROM up LIMIT 10", None)
        .await
        .unwrap();
    assert_eq!(ok.num_rows(), 10);
}

#[tokio::test]
async fn parameters() {
    let (_tmp, engine) = fixture();
    let out = engine
        .query(
            "SELECT count(*) FROM up WHERE job = $1",
            Some(vec![ScalarValue::Utf8(Some("db".into()))]),
        )
        .await
        .unwrap();
    let n = out.batches[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0);
    assert_eq!(n, 100);
}
