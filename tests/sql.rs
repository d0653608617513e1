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
            "instance text",
            "job text",
            "timestamp timestamp with time zone",
            "value double precision"
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

    // Errors come back as PostgreSQL errors: writes, COPY, SET of
    // DataFusion's options, reading files.
    for q in [
        "DELETE FROM temperature",
        "COPY (SELECT 1) TO '/tmp/ember-sql-test.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
    ] {
        let out = psql(port, "anyone", None, q);
        assert!(!out.status.success(), "{q}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("read-only"),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!std::path::Path::new("/tmp/ember-sql-test.csv").exists());
    // A syntax error, with psql pointing at the position.
    let out = psql(
        port,
        "anyone",
        None,
        "SELECT job\nFROM temperature GROUP job",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LINE 2: FROM temperature GROUP job"), "{err}");

    // psql's own parameters (-v, interpolated as quoted literals).
    let mut child = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "anyone",
            "-d",
            "ember",
        ])
        .args([
            "-X",
            "-A",
            "-t",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "job=db",
        ])
        .args(["-v", "from=2024-01-01T00:30:00Z", "-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        // psql interpolates variables in scripts, not in -c.
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(
                b"SELECT count(*) FROM temperature WHERE job = :'job' AND timestamp >= :'from';\n",
            )
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "240\n");
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
        conn.rollback()
        try:
            cur.execute("SELECT job\nFROM temperature GROUP job")
        except psycopg.Error as e:
            out.append(["syntax", e.sqlstate, e.diag.statement_position])
        conn.rollback()
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", ("public",))
        out.append([r[0] for r in cur.fetchall()])
        cur.execute(
            "SELECT instance, count(*), avg(value) FROM temperature "
            "WHERE job = %s AND timestamp BETWEEN %s AND %s GROUP BY instance ORDER BY instance",
            ("web", "2024-01-01T00:00:00Z", "2024-01-01T00:14:45Z"),
        )
        out.append(cur.fetchall())
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
    assert_eq!(got[1][1], "42703");
    // 42601 at character 29 (line 2, column 18).
    assert_eq!(got[2], serde_json::json!(["syntax", "42601", "29"]));
    assert_eq!(
        got[3],
        serde_json::json!(["samples", "series", "temperature"])
    );
    // The first 15 minutes (steps 0..59) of each web instance.
    let by_instance: Vec<Value> = (0..2)
        .map(|i| {
            let avg = (0..60).map(|step| value(2, i, step)).sum::<f64>() / 60.0;
            serde_json::json!([format!("h{i}:9100"), 60, avg])
        })
        .collect();
    assert_eq!(got[4], Value::Array(by_instance));
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

/// Runs psql with one backslash command (or query) and returns stdout.
fn psql_ok(port: u16, args: &[&str], command: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "ember"])
        .args(["-d", "ember", "-X", "-w", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .args(["-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn psql_backslash_commands_describe_the_catalog() {
    if !require_program("psql", "postgresql-client") {
        return;
    }
    let (_setup, _ember, port) = start(&[]);
    let a = ["-A", "-t"];
    assert_eq!(
        psql_ok(port, &a, "\\dt"),
        "public|samples|table|ember\npublic|series|table|ember\npublic|temperature|table|ember\n"
    );
    assert_eq!(
        psql_ok(port, &a, "\\d"),
        "public|samples|table|ember\npublic|series|table|ember\npublic|temperature|table|ember\n"
    );
    // Columns with their PostgreSQL types and nullability.
    let described = psql_ok(port, &[], "\\d temperature");
    for line in [
        "Table \"public.temperature\"",
        " instance  | text                     |           |          | ",
        " job       | text                     |           |          | ",
        " timestamp | timestamp with time zone |           | not null | ",
        " value     | double precision         |           | not null | ",
    ] {
        assert!(described.contains(line), "{line:?} not in\n{described}");
    }
    let described = psql_ok(port, &[], "\\d+ samples");
    assert!(described.contains(" labels    | json"), "{described}");
    let databases = psql_ok(port, &a, "\\l");
    assert!(databases.starts_with("ember|ember|UTF8|"), "{databases}");
    assert_eq!(psql_ok(port, &a, "\\dn"), "public|ember\n");
    // The functions psql and drivers call.
    assert_eq!(
        psql_ok(
            port,
            &a,
            "SELECT current_schema(), current_database(), current_user, \
             pg_catalog.format_type(1184, NULL), version() LIKE 'PostgreSQL 16.0 (Ember %'"
        ),
        "public|ember|ember|timestamp with time zone|t\n"
    );
    assert_eq!(psql_ok(port, &a, "SHOW search_path"), "\"$user\", public\n");
}

#[test]
fn grafana_postgres_datasource_queries() {
    if !require_python_module("psycopg") {
        return;
    }
    let (_setup, _ember, port) = start(&[]);
    // The statements Grafana's PostgreSQL data source sends, in its shapes:
    // the health check (pgx pings with a comment, older versions with
    // SELECT 1), version and TimescaleDB detection, the query builder's
    // table and column pickers (search_path-aware), and panel queries after
    // macro expansion ($__timeGroupAlias, $__timeFilter, $__time), read in
    // binary like pgx does.
    let script = format!(
        r#"
import json, psycopg
out = {{}}
in_search_path = """quote_ident(table_schema) IN (
      SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
      FROM generate_series(
             array_lower(string_to_array(current_setting('search_path'), ','), 1),
             array_upper(string_to_array(current_setting('search_path'), ','), 1)
           ) AS i,
           string_to_array(current_setting('search_path'), ',') s)"""
with psycopg.connect(host="127.0.0.1", port={port}, user="grafana", dbname="ember",
                     connect_timeout=10, autocommit=True) as conn:
    out["ping"] = psycopg.pq.ExecStatus(conn.pgconn.exec_(b"-- ping").status).name
    out["select1"] = conn.execute("SELECT 1").fetchall()
    out["version"] = conn.execute(
        "SELECT current_setting('server_version_num')::int/100 AS version").fetchall()
    out["timescaledb"] = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchall()
    out["schemas"] = conn.execute("""SELECT schema_name AS "name"
      FROM information_schema.schemata
      WHERE schema_name NOT IN ('information_schema', 'pg_catalog', 'pg_toast')
      ORDER BY schema_name""").fetchall()
    out["tables"] = conn.execute(f"""SELECT
      CASE WHEN {{in_search_path}}
        THEN quote_ident(table_name)
        ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
      END AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog')
      ORDER BY CASE WHEN {{in_search_path}} THEN 0 ELSE 1 END, 1""").fetchall()
    out["tables_in_public"] = conn.execute("""SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1""").fetchall()
    out["columns"] = conn.execute(f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
      FROM information_schema.columns
      WHERE
        CASE WHEN array_length(parse_ident('temperature'), 1) = 2
          THEN quote_ident(table_schema) = (parse_ident('temperature'))[1]
            AND quote_ident(table_name) = (parse_ident('temperature'))[2]
          ELSE quote_ident(table_name) = 'temperature' AND {{in_search_path}}
        END
      ORDER BY 1""").fetchall()
    cur = conn.cursor(binary=True)
    cur.execute("""SELECT floor(extract(epoch from timestamp)/300)*300 AS "time",
        job AS metric, avg(value) AS value
      FROM temperature
      WHERE timestamp BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T01:00:00Z'
      GROUP BY 1, 2 ORDER BY 1, 2""")
    out["timeseries_types"] = [d.type_code for d in cur.description]
    out["timeseries"] = cur.fetchall()
    cur.execute("""SELECT timestamp AS "time", value
      FROM temperature
      WHERE timestamp BETWEEN '2024-01-01T00:10:00Z' AND '2024-01-01T00:10:30Z'
        AND job = 'web' AND instance = 'h1:9100'
      ORDER BY 1""")
    out["raw_types"] = [d.type_code for d in cur.description]
    out["raw"] = [[t.isoformat(), v] for t, v in cur.fetchall()]
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
    assert_eq!(got["ping"], "EMPTY_QUERY");
    assert_eq!(got["select1"], serde_json::json!([[1]]));
    assert_eq!(got["version"], serde_json::json!([[1600]]));
    assert_eq!(got["timescaledb"], serde_json::json!([]));
    assert_eq!(got["schemas"], serde_json::json!([["public"]]));
    let tables = serde_json::json!([["samples"], ["series"], ["temperature"]]);
    assert_eq!(got["tables"], tables);
    assert_eq!(got["tables_in_public"], tables);
    // PostgreSQL type names: Grafana offers time macros for the timestamp
    // column and number operators for value by these.
    assert_eq!(
        got["columns"],
        serde_json::json!([
            ["instance", "text"],
            ["job", "text"],
            ["timestamp", "timestamp with time zone"],
            ["value", "double precision"]
        ])
    );
    // float8, text, float8; then timestamptz, float8.
    assert_eq!(got["timeseries_types"], serde_json::json!([701, 25, 701]));
    assert_eq!(got["raw_types"], serde_json::json!([1184, 701]));
    let series = got["timeseries"].as_array().unwrap();
    assert_eq!(series.len(), 12 * 3);
    for row in series {
        let bucket = (row[0].as_f64().unwrap() as i64 - T0) / 300;
        let j = JOBS
            .iter()
            .position(|job| row[1] == *job)
            .expect("a known job");
        let steps = bucket * 20..(bucket + 1) * 20;
        let values: Vec<f64> = steps
            .flat_map(|step| (0..2).map(move |i| value(j, i, step)))
            .collect();
        let avg = values.iter().sum::<f64>() / values.len() as f64;
        assert!((row[2].as_f64().unwrap() - avg).abs() < 1e-9, "{row}");
    }
    let raw: Vec<(String, f64)> = (40..=42)
        .map(|step| (chrono_like(T0 + step * 15), value(2, 1, step)))
        .collect();
    let got_raw: Vec<(String, f64)> = got["raw"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_f64().unwrap()))
        .collect();
    assert_eq!(got_raw, raw);
}

/// `2024-01-01T00:10:00+00:00` for a Unix time within 2024-01-01.
fn chrono_like(t: i64) -> String {
    let s = t - T0;
    format!(
        "2024-01-01T{:02}:{:02}:{:02}+00:00",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// A CA and a server certificate for 127.0.0.1: (ca.pem, server.pem, server.key).
fn make_certs(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Ember SQL test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    (
        write("ca.pem", &ca_cert.pem()),
        write("server.pem", &cert.pem()),
        write("server.key", &key.serialize_pem()),
    )
}

fn psql_conn(conninfo: &str, password: &str, command: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            conninfo,
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            command,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap()
}

#[test]
fn postgres_listener_tls_follows_the_web_config() {
    if !require_program("psql", "postgresql-client") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let web = dir.path().join("web.yml");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  alice: {hash}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let web_flag = format!("--web.config.file={}", web.display());
    let (_setup, _ember, port) = start_unready(&[&web_flag, "--sql.max-connections=2"]);
    let conninfo = |mode: &str| {
        format!(
            "host=127.0.0.1 port={port} user=alice dbname=ember sslmode={mode} sslrootcert={}",
            ca.display()
        )
    };
    // verify-full: the certificate is the web config's, valid for 127.0.0.1.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = psql_conn(
            &conninfo("verify-full"),
            "s3cret",
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

    let out = psql_conn(&conninfo("require"), "s3cret", "\\conninfo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("SSL connection (protocol: TLSv1."), "{info}");

    // Basic-auth users still apply over TLS.
    let out = psql_conn(&conninfo("require"), "wrong", "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plaintext is refused, with a reason.
    let out = psql_conn(&conninfo("disable"), "s3cret", "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires TLS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Past --sql.max-connections a TLS client is told so over TLS.
    let _held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let out = psql_conn(&conninfo("verify-full"), "s3cret", "SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sorry, too many clients already"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn runaway_queries_are_cancelled_without_hurting_ingestion() {
    let (_setup, ember, _) = start(&[
        "--query.timeout=3s",
        "--sql.max-memory=2MB",
        "--web.enable-remote-write-receiver",
    ]);
    // Over the memory limit: a join whose sorted result needs ~10 MB, and
    // nothing may spill to disk.
    let r = sql_get(
        &ember,
        "SELECT a.timestamp, b.timestamp FROM temperature a JOIN temperature b \
         ON a.job = b.job ORDER BY 1, 2",
        "",
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("memory limit"), "{}", r.body);

    // A runaway query (1.4·10¹² rows, little memory) while samples keep
    // arriving.
    let url = ember.url(&format!(
        "/api/v1/sql?query={}",
        enc("SELECT sum(t.value + g.value) FROM temperature t CROSS JOIN generate_series(1, 1000000000) g")
    ));
    let started = std::time::Instant::now();
    let runaway = std::thread::spawn(move || get(&url).unwrap());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut slowest = std::time::Duration::ZERO;
    for i in 0..10 {
        let t = std::time::Instant::now();
        write_series(
            &ember,
            &[(
                &[("__name__", "during_runaway"), ("job", "w")],
                &[(now_ms + i * 100, i as f64)],
            )],
        );
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = runaway.join().unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["errorType"], "timeout", "{}", r.body);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(
        slowest < std::time::Duration::from_secs(2),
        "remote write took {slowest:?}"
    );
    // Every sample written during the runaway query is there (PromQL runs
    // on the main runtime), and the SQL endpoint answers again once the
    // cancelled query's last batch is dropped.
    let (status, v) = get_json(&ember.url(&format!(
        "/api/v1/query?query={}&time={}",
        enc("count_over_time(during_runaway[5m])"),
        now_ms / 1000 + 2
    )));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "10", "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = sql_get(
            &ember,
            "SELECT count(*), max(value) FROM during_runaway",
            "",
        );
        if r.status == 200 {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["data"]["rows"], serde_json::json!([[10, 9.0]]));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.body);
    }
}

/// Reads what the server sends on `s` until it closes (or 15 s pass).
fn read_until_closed(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn metric(ember: &Ember, line_start: &str) -> f64 {
    let body = get(&ember.url("/metrics")).unwrap().body;
    body.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in {body}"))
}

#[test]
fn postgres_connection_limit_and_timeouts() {
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    if !require_program("psql", "postgresql-client") || !require_python_module("psycopg") {
        return;
    }
    let (_setup, ember, port) = start(&[
        "--sql.max-connections=3",
        "--sql.startup-timeout=3s",
        "--sql.idle-timeout=2s",
    ]);
    // Three half-open connections (TCP only, no startup message) take
    // every slot.
    let opened = Instant::now();
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Beyond the limit: PostgreSQL's FATAL 53300 after the startup
    // message (protocol 3.0, user "ember"), then closed.
    let mut startup = Vec::new();
    let params = b"user\0ember\0\0";
    startup.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(params);
    for _ in 0..2 {
        let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut extra, &startup).unwrap();
        let answer = read_until_closed(&mut extra);
        assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("SFATAL"), "{text}");
        assert!(text.contains("C53300"), "{text}");
        assert!(
            text.contains("sorry, too many clients already (--sql.max-connections is 3)"),
            "{text}"
        );
    }
    // A real client is told the same.
    let out = psql(port, "anyone", None, "SELECT 1");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sorry, too many clients already"),
        "{stderr}"
    );
    // A flood past the limit: every extra connection is told or closed
    // promptly, and HTTP is unaffected meanwhile.
    let flood_start = Instant::now();
    let flood: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for mut s in flood {
        let answer = read_until_closed(&mut s);
        let text = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || text.contains("C53300"), "{text}");
    }
    assert!(
        flood_start.elapsed() < Duration::from_secs(10),
        "{:?}",
        flood_start.elapsed()
    );
    assert_eq!(sql_json(&ember, "SELECT 1 AS one")["status"], "success");
    // The half-open connections are closed after the startup timeout,
    // without a message (as PostgreSQL does).
    for s in &mut held {
        let answer = read_until_closed(s);
        assert!(answer.is_empty(), "{answer:?}");
    }
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(12),
        "{waited:?}"
    );
    // The slots are free again: psql and psycopg work. psycopg then sits
    // idle past --sql.idle-timeout and is told why it was cut off.
    let out = psql(port, "anyone", None, "SELECT 1 + 1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    let script = format!(
        r#"
import json, time, psycopg
out = []
conn = psycopg.connect(host="127.0.0.1", port={port}, user="ember", dbname="ember", connect_timeout=10, autocommit=True)
out.append(conn.execute("SELECT count(*) FROM temperature").fetchone()[0])
time.sleep(4)
try:
    conn.execute("SELECT 1")
    out.append("still open")
except psycopg.OperationalError as e:
    out.append(str(e))
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
    assert_eq!(got[0], 6 * 240);
    let closed = got[1].as_str().unwrap();
    assert!(
        closed.contains("terminating connection due to idle-session timeout"),
        "{closed}"
    );
    // Counted on /metrics; the server still answers both protocols.
    assert!(metric(&ember, "ember_sql_connections_refused_total ") >= 3.0);
    assert!(
        metric(
            &ember,
            "ember_sql_connection_timeouts_total{phase=\"startup\"} "
        ) >= 3.0
    );
    assert!(
        metric(
            &ember,
            "ember_sql_connection_timeouts_total{phase=\"idle\"} "
        ) >= 1.0
    );
    assert_eq!(metric(&ember, "ember_sql_connections_open "), 0.0);
    let out = psql(port, "anyone", None, "SELECT 3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(&ember.url("/-/healthy")).unwrap().status, 200);
}
