//! The SQL endpoint against the real binary: `/api/v1/sql` in JSON, CSV and
//! Arrow IPC; read-only refusals; the PostgreSQL listener with the real
//! `psql` and `psycopg` clients (and basic-auth users); SQL agreeing with
//! PromQL; and DuckDB reading an Ember block directly agreeing with Ember.
//!
//! Data: `temperature{job, instance}` gauges every 15 s for one hour,
//! backfilled into blocks with `ember tsdb create-blocks-from openmetrics`.

mod support;

use std::fmt::Write as _;
use std::process::Command;

use serde_json::Value;
use support::*;

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200;
const JOBS: [&str; 3] = ["api", "db", "web"];

fn value(job: usize, inst: usize, step: i64) -> f64 {
    // Distinct, exactly representable values.
    (job * 100 + inst * 10) as f64 + (step % 17) as f64 * 0.25
}

fn openmetrics() -> String {
    let mut s = String::from("# TYPE temperature gauge\n");
    for step in 0..240 {
        for (j, job) in JOBS.iter().enumerate() {
            for inst in 0..2 {
                let _ = writeln!(
                    s,
                    "temperature{{job=\"{job}\",instance=\"h{inst}:9100\"}} {} {}",
                    value(j, inst, step),
                    T0 + step * 15
                );
            }
        }
    }
    s.push_str("# EOF\n");
    s
}

/// Backfills the data and starts Ember with a free PostgreSQL port.
fn start(extra: &[&str]) -> (Setup, Ember, u16) {
    let (setup, mut ember, pg) = start_unready(extra);
    ember.wait_ready();
    (setup, ember, pg)
}

fn start_unready(extra: &[&str]) -> (Setup, Ember, u16) {
    let setup = Setup::new();
    let input = setup.path().join("input.om");
    std::fs::write(&input, openmetrics()).unwrap();
    let out = run(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        &input.to_string_lossy(),
        &setup.data_dir().to_string_lossy(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    setup.write_config(MINIMAL_CONFIG);
    let pg = free_port();
    let pg_flag = format!("--sql.listen-address=127.0.0.1:{pg}");
    let mut args = vec!["--storage.tsdb.retention.time=100y", pg_flag.as_str()];
    args.extend_from_slice(extra);
    let ember = setup.start(&args);
    (setup, ember, pg)
}

fn sql_get(ember: &Ember, query: &str, format: &str) -> Response {
    get(&ember.url(&format!("/api/v1/sql?query={}&format={format}", enc(query)))).unwrap()
}

fn sql_json(ember: &Ember, query: &str) -> Value {
    let r = sql_get(ember, query, "json");
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Expected `(job, count, sum)` over every sample.
fn expected_by_job() -> Vec<(String, i64, f64)> {
    JOBS.iter()
        .enumerate()
        .map(|(j, job)| {
            let sum: f64 = (0..240)
                .flat_map(|step| (0..2).map(move |i| value(j, i, step)))
                .sum();
            (job.to_string(), 480, sum)
        })
        .collect()
}

#[test]
fn http_json_csv_and_arrow() {
    let (_setup, ember, _) = start(&[]);
    let q = "SELECT job, count(*) AS n, sum(value) AS s FROM temperature GROUP BY job ORDER BY job";
    let v = sql_json(&ember, q);
    assert_eq!(v["status"], "success");
    let cols: Vec<(&str, &str)> = v["data"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(cols, [("job", "text"), ("n", "int8"), ("s", "float8")]);
    let rows = v["data"]["rows"].as_array().unwrap();
    for (row, (job, n, s)) in rows.iter().zip(expected_by_job()) {
        assert_eq!(row[0], job.as_str());
        assert_eq!(row[1], n);
        assert_eq!(row[2].as_f64().unwrap(), s);
    }

    // Tables, and the metric table's columns with their types.
    let v = sql_json(
        &ember,
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = 'temperature' ORDER BY ordinal_position",
    );
    let described: Vec<String> = v["data"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r[0].as_str().unwrap(), r[1].as_str().unwrap()))
        .collect();
    assert_eq!(
        described,
        [
            "instance Utf8",
            "job Utf8",
            "timestamp Timestamp(ms, \"UTC\")",
            "value Float64"
        ]
    );

    // CSV by Accept, from a POST body.
    let r = into_text(
        agent()
            .post(&ember.url("/api/v1/sql"))
            .header("Accept", "text/csv")
            .header("Content-Type", "text/plain")
            .send(
                "SELECT job, instance, timestamp, value FROM temperature \
                 WHERE job = 'db' ORDER BY instance, timestamp LIMIT 2",
            ),
    );
    assert_eq!(r.0, 200, "{}", r.2);
    assert!(r.1.starts_with("text/csv"), "{}", r.1);
    assert_eq!(
        r.2,
        "job,instance,timestamp,value\r\ndb,h0:9100,2024-01-01T00:00:00Z,100\r\ndb,h0:9100,2024-01-01T00:00:15Z,100.25\r\n"
    );

    // Arrow IPC stream by format=, from a form POST.
    let mut resp = agent()
        .post(&ember.url("/api/v1/sql"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(format!(
            "format=arrow&query={}",
            enc("SELECT job, sum(value) AS s FROM temperature GROUP BY job ORDER BY job")
        ))
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = resp.body_mut().read_to_vec().unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<arrow::array::RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    use arrow::array::AsArray;
    let jobs = batch.column(0).as_string::<i32>();
    let sums = batch
        .column(1)
        .as_primitive::<arrow::datatypes::Float64Type>();
    for (i, (job, _, s)) in expected_by_job().into_iter().enumerate() {
        assert_eq!((jobs.value(i), sums.value(i)), (job.as_str(), s));
    }

    // EXPLAIN shows the filters that reached storage.
    let v = sql_json(
        &ember,
        "EXPLAIN SELECT avg(value) FROM temperature WHERE job = 'api' \
         AND timestamp >= TIMESTAMP '2024-01-01T00:30:00Z'",
    );
    let plan = v["data"]["rows"].to_string();
    assert!(
        plan.contains(r#"EmberStorageScan: table=temperature, matchers=[__name__=\"temperature\", job=\"api\"], time=[2024-01-01T00:30:00Z, *]"#),
        "{plan}"
    );
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn into_text(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String, String) {
    let mut r = r.unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        r.status().as_u16(),
        ct,
        r.body_mut().read_to_string().unwrap(),
    )
}

#[test]
fn read_only_and_errors() {
    let (setup, ember, _) = start(&[]);
    let target = setup.path().join("written.csv");
    for q in [
        "DROP TABLE temperature".to_owned(),
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "INSERT INTO temperature VALUES ('a', 'b', now(), 1.0)".to_owned(),
        format!("COPY (SELECT 1) TO '{}'", target.display()),
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
    ] {
        let r = sql_get(&ember, &q, "");
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["errorType"], "bad_data", "{q}");
        assert!(
            v["error"].as_str().unwrap().contains("read-only"),
            "{q}: {}",
            r.body
        );
    }
    assert!(!target.exists());

    let r = sql_get(&ember, "SELECT job\nFROM temperature GROUP job", "");
    assert_eq!(r.status, 400, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["position"]["line"], 2, "{}", r.body);
    assert_eq!(v["position"]["column"], 18, "{}", r.body);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("sql parser error: Expected"),
        "{}",
        r.body
    );

    let r = sql_get(&ember, "SELECT nope FROM temperature", "");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("nope"), "{}", r.body);

    let r = get(&ember.url("/api/v1/sql")).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let r = sql_get(&ember, "SELECT 1", "xml");
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn row_limit_and_timeout() {
    let (_setup, ember, _) = start(&["--sql.max-rows=100"]);
    let r = sql_get(&ember, "SELECT * FROM temperature", "");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("limit of 100 rows"), "{}", r.body);
    let r = sql_get(&ember, "SELECT * FROM temperature LIMIT 100", "");
    assert_eq!(r.status, 200, "{}", r.body);
}

fn psql(port: u16, user: &str, password: Option<&str>, sql: &str) -> std::process::Output {
    let mut c = Command::new("psql");
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-d",
        "ember",
    ])
    .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
    .env("PGCONNECT_TIMEOUT", "10");
    match password {
        Some(p) => c.env("PGPASSWORD", p),
        None => c.env("PGPASSWORD", "").arg("-w"),
    };
    c.output().unwrap()
}

#[test]
fn psql_lists_tables_and_aggregates() {
    if !require_program("psql", "postgresql-client") {
        return;
    }
    let (_setup, _ember, port) = start(&[]);
    let out = psql(
        port,
        "anyone",
        None,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "samples\nseries\ntemperature\n"
    );

    let out = psql(
        port,
        "anyone",
        None,
        "SELECT job, avg(value) FROM temperature \
         WHERE timestamp BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T00:59:45Z' \
         GROUP BY job ORDER BY job",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: String = expected_by_job()
        .iter()
        .map(|(job, n, s)| format!("{job}|{}\n", s / *n as f64))
        .collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    // Timestamps as timestamptz, several statements in one message.
    let out = psql(
        port,
        "anyone",
        None,
        "SELECT max(timestamp) FROM temperature; SELECT count(*) FROM series",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2024-01-01 00:59:45.000000+00\n6\n"
    );

    // Errors come back as PostgreSQL errors.
    let out = psql(port, "anyone", None, "DELETE FROM temperature");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn psql_needs_a_web_config_user() {
    if !require_program("psql", "postgresql-client") {
        return;
    }
    let setup_dir = tempfile::tempdir().unwrap();
    let web = setup_dir.path().join("web.yml");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
    let web_flag = format!("--web.config.file={}", web.display());
    // /-/ready wants the user too: wait on the PostgreSQL side instead.
    let (_setup, _ember, port) = start_unready(&[&web_flag]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = psql(
            port,
            "alice",
            Some("s3cret"),
            "SELECT count(*) FROM temperature",
        );
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1440\n");
    let out = psql(port, "alice", Some("wrong"), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = psql(port, "mallory", Some("s3cret"), "SELECT 1");
    assert!(!out.status.success());
}

#[test]
fn psycopg_parameterised_query() {
    if !require_python_module("psycopg") {
        return;
    }
    let (_setup, _ember, port) = start(&[]);
    let script = format!(
        r#"
import datetime, json, psycopg
with psycopg.connect(host="127.0.0.1", port={port}, user="ember", dbname="ember", connect_timeout=10) as conn:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT job, count(*), sum(value), max(timestamp) FROM temperature "
            "WHERE job = %s AND timestamp >= %s GROUP BY job",
            ("db", datetime.datetime(2024, 1, 1, 0, 30, tzinfo=datetime.timezone.utc)),
        )
        rows = cur.fetchall()
        out = [[r[0], r[1], r[2], r[3].isoformat()] for r in rows]
        try:
            cur.execute("SELECT nope FROM temperature")
        except psycopg.Error as e:
            out.append(["error", e.sqlstate])
print(json.dumps(out))
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Steps 120..239 of both db instances.
    let sum: f64 = (120..240)
        .flat_map(|step| (0..2).map(move |i| value(1, i, step)))
        .sum();
    assert_eq!(got[0][0], "db");
    assert_eq!(got[0][1], 240);
    assert_eq!(got[0][2].as_f64().unwrap(), sum);
    assert_eq!(got[0][3], "2024-01-01T00:59:45+00:00");
    assert_eq!(got[1][0], "error");
}

#[test]
fn sql_agrees_with_promql() {
    let (_setup, ember, _) = start(&[]);
    let t = T0 + 1800;
    let r = get(&ember.url(&format!(
        "/api/v1/query?query={}&time={t}",
        enc("sum by (job) (temperature)")
    )))
    .unwrap();
    let prom: Value = serde_json::from_str(&r.body).unwrap();
    let mut from_promql: Vec<(String, f64)> = prom["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["job"].as_str().unwrap().to_owned(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    from_promql.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(from_promql.len(), 3);

    let v = sql_json(
        &ember,
        &format!(
            "SELECT job, sum(value) FROM temperature WHERE timestamp = to_timestamp({t}) \
             GROUP BY job ORDER BY job"
        ),
    );
    let from_sql: Vec<(String, f64)> = v["data"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_f64().unwrap()))
        .collect();
    assert_eq!(from_sql, from_promql);

    // The same through the promql_instant table function, joined in SQL.
    let v = sql_json(
        &ember,
        &format!(
            "SELECT p.job, p.value, s.v FROM promql_instant('sum by (job) (temperature)', {t}) p \
             JOIN (SELECT job, sum(value) AS v FROM temperature WHERE timestamp = to_timestamp({t}) GROUP BY job) s \
             USING (job) ORDER BY p.job"
        ),
    );
    let rows = v["data"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r[1], r[2], "{r}");
    }
    let v = sql_json(
        &ember,
        &format!(
            "SELECT count(*) FROM promql_range('temperature{{job=\"api\"}}', {T0}, {}, '1m')",
            T0 + 600
        ),
    );
    assert_eq!(v["data"]["rows"][0][0], 22);
}

#[test]
fn duckdb_reads_the_block_and_agrees() {
    if !require_python_module("duckdb") {
        return;
    }
    let (setup, ember, _) = start(&[]);
    let block = std::fs::read_dir(setup.data_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("samples.parquet").is_file())
        .expect("a block");
    let script = format!(
        r#"
import duckdb, json
rows = duckdb.sql("""
    SELECT r.labels['job'] AS job, count(*) AS n, sum(s.value) AS total
    FROM read_parquet('{dir}/samples.parquet') s
    JOIN read_parquet('{dir}/series.parquet') r USING (series_id)
    WHERE r.metric_name = 'temperature'
      AND s.timestamp >= TIMESTAMPTZ '2024-01-01 00:10:00+00'
    GROUP BY job ORDER BY job
""").fetchall()
print(json.dumps(rows))
"#,
        dir = block.display()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = sql_json(
        &ember,
        "SELECT job, count(*) AS n, sum(value) AS total FROM temperature \
         WHERE timestamp >= TIMESTAMP '2024-01-01T00:10:00Z' GROUP BY job ORDER BY job",
    );
    assert_eq!(v["data"]["rows"], duck, "ember vs duckdb");
}
