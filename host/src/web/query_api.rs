//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query` and
//! `/api/v1/parse_query`: parameters validated as Prometheus validates
//! them, results encoded as Prometheus encodes them.

use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use super::AppState;
use super::api::{
    ApiError, ApiResult, Params, TRUNCATED_WARNING, limit_param, now_ms, parse_duration,
    parse_time, success, success_raw, time_param,
};
use crate::model::Labels;
use crate::promql::{Engine, QueryError, QueryOptions, QueryResult, Value, format_value};

/// Most points a range query may return per series.
const MAX_POINTS_PER_SERIES: i128 = 11_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/parse_query", get(parse_query).post(parse_query))
        .route("/api/v1/explain", get(explain).post(explain))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
}

/// `/api/v1/query_exemplars`: the stored exemplars of the series the
/// query's selectors pick, in `[start, end]`.
async fn query_exemplars(State(state): State<AppState>, params: Params) -> ApiResult {
    let start = super::api::time_param(&params, "start", super::api::MIN_TIME_MS)?;
    let end = super::api::time_param(&params, "end", super::api::MAX_TIME_MS)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let expr = parse_expr(&params)?;
    let sets = selector_matchers(&expr).map_err(|e| ApiError::invalid_param("query", e))?;
    if sets.is_empty() {
        // Prometheus answers a query without selectors (`1+1`) with no data at all.
        return Ok(success_raw("null", &[], &[]));
    }
    let storage = state
        .control
        .storage()
        .ok_or_else(|| ApiError::unavailable("storage not ready"))?;
    let found = storage.exemplars().select(start, end, &sets);
    let mut data = String::from("[");
    for (i, series) in found.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(r#"{"seriesLabels":"#);
        write_labels(&mut data, &series.series);
        data.push_str(r#","exemplars":["#);
        for (j, e) in series.exemplars.iter().enumerate() {
            if j > 0 {
                data.push(',');
            }
            data.push_str(r#"{"labels":"#);
            write_labels(&mut data, &e.labels);
            data.push_str(r#","value":"#);
            write_str(&mut data, &format_value(e.value));
            data.push_str(r#","timestamp":"#);
            write_timestamp(&mut data, e.timestamp_ms);
            data.push('}');
        }
        data.push_str("]}");
    }
    data.push(']');
    Ok(success_raw(&data, &[], &[]))
}

/// The matcher sets of every vector and matrix selector in `expr`, as
/// Prometheus's `ExtractSelectors` finds them.
fn selector_matchers(
    expr: &promql_parser::parser::Expr,
) -> Result<Vec<Vec<crate::model::Matcher>>, String> {
    use promql_parser::parser::Expr;
    use promql_parser::util::{ExprVisitor, walk_expr};
    struct Collect(Vec<Vec<crate::model::Matcher>>);
    impl ExprVisitor for Collect {
        type Error = String;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            self.0.extend(super::api::vector_selector_matchers(vs)?);
            Ok(true)
        }
        fn post_visit(&mut self, _: &Expr) -> Result<bool, String> {
            Ok(true)
        }
    }
    let mut found = Collect(Vec::new());
    walk_expr(&mut found, expr)?;
    Ok(found.0)
}

fn engine(state: &AppState) -> Result<&Engine, ApiError> {
    state
        .control
        .engine()
        .ok_or_else(|| ApiError::unavailable("query engine not ready"))
}

/// `timeout`, `lookback_delta` and `stats`, common to both query endpoints.
struct Common {
    opts: QueryOptions,
    stats: bool,
}

fn common_params(params: &Params, engine: &Engine) -> Result<Common, ApiError> {
    let mut opts = QueryOptions::default();
    match params.get("timeout") {
        "" => {}
        to => {
            let ns = parse_duration(to).map_err(|e| ApiError::invalid_param("timeout", e))?;
            // The request's deadline and --query.timeout both apply.
            let asked = Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
            opts.timeout = Some(asked.min(engine.options().timeout));
        }
    }
    match params.get("lookback_delta") {
        "" => {}
        d => {
            let ns = parse_duration(d).map_err(|e| {
                ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
            })?;
            // 0 means "the engine's default", as in Prometheus.
            if ns > 0 {
                opts.lookback_delta_ms = Some(ns / 1_000_000);
            }
        }
    }
    Ok(Common {
        opts,
        stats: !params.get("stats").is_empty(),
    })
}

/// The error Prometheus's parser gives for an empty query.
fn empty_query_error() -> ApiError {
    ApiError::invalid_param("query", "1:1: parse error: no expression found in input")
}

async fn query(State(state): State<AppState>, params: Params) -> ApiResult {
    let limit = limit_param(&params)?;
    let time = time_param(&params, "time", now_ms())?;
    let engine = engine(&state)?;
    let common = common_params(&params, engine)?;
    let q = params.get("query");
    if q.is_empty() {
        return Err(empty_query_error());
    }
    let result = engine
        .instant_query(q, time, &common.opts)
        .await
        .map_err(query_error)?;
    Ok(render(result, limit, common.stats))
}

/// Ember's own endpoint: the DataFusion plan of a PromQL query, as an
/// instant query at `time` or, with `start`/`end`/`step`, a range query.
/// `analyze=true` runs the query and adds each operator's rows and time.
async fn explain(State(state): State<AppState>, params: Params) -> ApiResult {
    let q = params.get("query");
    if q.is_empty() {
        return Err(empty_query_error());
    }
    let engine = engine(&state)?;
    let (start, end, step) = if params.get("step").is_empty() {
        let t = time_param(&params, "time", now_ms())?;
        (t, t, 0)
    } else {
        let start =
            parse_time(params.get("start")).map_err(|e| ApiError::invalid_param("start", e))?;
        let end = parse_time(params.get("end")).map_err(|e| ApiError::invalid_param("end", e))?;
        let step_ns =
            parse_duration(params.get("step")).map_err(|e| ApiError::invalid_param("step", e))?;
        if step_ns <= 0 || end < start {
            return Err(ApiError::bad_data(
                "explain needs start <= end and a positive step",
            ));
        }
        (start, end, (step_ns / 1_000_000).max(1))
    };
    let analyze = matches!(params.get("analyze"), "1" | "true");
    let plan = engine
        .explain(q, start, end, step, analyze)
        .await
        .map_err(query_error)?;
    Ok(success(
        serde_json::json!({ "plan": plan, "analyzed": analyze }),
    ))
}

async fn query_range(State(state): State<AppState>, params: Params) -> ApiResult {
    let limit = limit_param(&params)?;
    let start = parse_time(params.get("start")).map_err(|e| ApiError::invalid_param("start", e))?;
    let end = parse_time(params.get("end")).map_err(|e| ApiError::invalid_param("end", e))?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_ns =
        parse_duration(params.get("step")).map_err(|e| ApiError::invalid_param("step", e))?;
    if step_ns <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Go divides two time.Durations (nanoseconds), truncating.
    if (i128::from(end) - i128::from(start)) * 1_000_000 / i128::from(step_ns)
        > MAX_POINTS_PER_SERIES
    {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let engine = engine(&state)?;
    let common = common_params(&params, engine)?;
    let q = params.get("query");
    if q.is_empty() {
        return Err(empty_query_error());
    }
    // Storage resolution is milliseconds; a sub-millisecond step is 1 ms.
    let step_ms = (step_ns / 1_000_000).max(1);
    let result = engine
        .range_query(q, start, end, step_ms, &common.opts)
        .await
        .map_err(query_error)?;
    Ok(render(result, limit, common.stats))
}

/// Engine errors as API errors. A `bad_data` error from the engine means
/// the query did not parse or is not valid PromQL, which Prometheus
/// reports as an invalid `query` parameter.
fn query_error(err: QueryError) -> ApiError {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = err.error_type();
    let message = match &err {
        QueryError::BadData(msg) if !msg.starts_with("invalid parameter") => {
            format!("invalid parameter \"query\": {msg}")
        }
        _ => err.to_string(),
    };
    ApiError::new(kind, status, message)
}

/// The `data` object and the envelope of a query result.
fn render(mut result: QueryResult, limit: usize, stats: bool) -> axum::response::Response {
    let mut warnings = std::mem::take(&mut result.warnings);
    if limit > 0 {
        let truncated = match &mut result.value {
            Value::Vector(v) if v.len() > limit => {
                v.truncate(limit);
                true
            }
            Value::Matrix(m) if m.len() > limit => {
                m.truncate(limit);
                true
            }
            _ => false,
        };
        if truncated {
            warnings.push(TRUNCATED_WARNING.to_owned());
        }
    }
    let mut data = String::with_capacity(256);
    data.push_str("{\"resultType\":\"");
    data.push_str(result.value.type_name());
    data.push_str("\",\"result\":");
    write_value(&mut data, &result.value);
    if stats {
        write_stats(&mut data, &result);
    }
    data.push('}');
    success_raw(&data, &warnings, &result.infos)
}

/// A timestamp in seconds as Prometheus writes it: the integer part, then
/// `.` and three digits when there are milliseconds (`1.500`, `-0.250`).
pub fn write_timestamp(out: &mut String, t_ms: i64) {
    let abs = t_ms.unsigned_abs();
    if t_ms < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", abs / 1000);
    let frac = abs % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

fn write_str(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires.
    out.push_str(&serde_json::Value::from(s).to_string());
}

fn write_point(out: &mut String, t: i64, v: &str) {
    out.push('[');
    write_timestamp(out, t);
    out.push(',');
    write_str(out, v);
    out.push(']');
}

/// `[t, {"count": "..", "sum": "..", "buckets": [[rule, "lower", "upper",
/// "count"], ...]}]` as Prometheus's API writes a native histogram. The
/// boundary rule is 0 for `(lower, upper]`, 1 for `[lower, upper)`, 3 for
/// the closed zero bucket; empty buckets are left out.
fn write_histogram_point(out: &mut String, t: i64, h: &crate::model::FloatHistogram) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",{\"count\":");
    write_str(out, &format_value(h.count));
    out.push_str(",\"sum\":");
    write_str(out, &format_value(h.sum));
    let buckets: Vec<_> = h.buckets().into_iter().filter(|b| b.count != 0.0).collect();
    if !buckets.is_empty() {
        out.push_str(",\"buckets\":[");
        for (i, b) in buckets.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let rule = if b.lower < 0.0 && b.upper > 0.0 && !h.uses_custom_buckets() {
                3
            } else if b.upper <= 0.0 && !h.uses_custom_buckets() {
                1
            } else {
                0
            };
            out.push_str(&format!("[{rule},"));
            write_str(out, &format_value(b.lower));
            out.push(',');
            write_str(out, &format_value(b.upper));
            out.push(',');
            write_str(out, &format_value(b.count));
            out.push(']');
        }
        out.push(']');
    }
    out.push_str("}]");
}

fn write_metric(out: &mut String, labels: &Labels) {
    out.push_str("{\"metric\":");
    write_labels(out, labels);
}

/// A label set as a JSON object, in label order.
fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Scalar { t, v } => write_point(out, *t, &format_value(*v)),
        Value::String { t, s } => write_point(out, *t, s),
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_metric(out, &s.labels);
                match &s.h {
                    Some(h) => {
                        out.push_str(",\"histogram\":");
                        write_histogram_point(out, s.t, h);
                    }
                    None => {
                        out.push_str(",\"value\":");
                        write_point(out, s.t, &format_value(s.v));
                    }
                }
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_metric(out, &s.labels);
                // As Prometheus: `values` and `histograms` only when present.
                if !s.points.is_empty() || s.histograms.is_empty() {
                    out.push_str(",\"values\":[");
                    for (j, p) in s.points.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_point(out, p.t, &format_value(p.v));
                    }
                    out.push(']');
                }
                if !s.histograms.is_empty() {
                    out.push_str(",\"histograms\":[");
                    for (j, p) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_histogram_point(out, p.t, &p.h);
                    }
                    out.push(']');
                }
                out.push('}');
            }
            out.push(']');
        }
    }
}

/// `stats` as Prometheus's `stats.QueryStats`: timings in seconds, then
/// sample counts. Ember times the whole execution as one span, so the
/// phases it does not separate are 0.
fn write_stats(out: &mut String, result: &QueryResult) {
    // Written by hand for Prometheus's field order.
    let total = go_float(result.stats.exec_total_time.as_secs_f64());
    let _ = write!(
        out,
        ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{total},\"resultSortTime\":0,\
         \"queryPreparationTime\":0,\"innerEvalTime\":{total},\"execQueueTime\":0,\
         \"execTotalTime\":{total}}},\"samples\":{{\"totalQueryableSamples\":{},\"peakSamples\":{}}}}}",
        result.stats.total_queryable_samples, result.stats.peak_samples,
    );
}

/// A float as Go's JSON encoder writes it (`0`, not `0.0`).
fn go_float(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e21 {
        format!("{}", v as i64)
    } else {
        serde_json::Value::from(v).to_string()
    }
}

fn parse_expr(params: &Params) -> Result<promql_parser::parser::Expr, ApiError> {
    let q = params.get("query");
    if q.is_empty() {
        return Err(empty_query_error());
    }
    promql_parser::parser::parse(q).map_err(|e| ApiError::invalid_param("query", e))
}

async fn format_query(params: Params) -> ApiResult {
    let expr = parse_expr(&params)?;
    Ok(success(serde_json::Value::String(expr.prettify())))
}

async fn parse_query(params: Params) -> ApiResult {
    let expr = parse_expr(&params)?;
    let mut ast = serde_json::to_value(&expr)
        .map_err(|e| ApiError::internal(format!("cannot encode the syntax tree: {e}")))?;
    add_name_matchers(&mut ast);
    Ok(success(ast))
}

/// Prometheus's parser turns a metric name outside braces into a
/// `__name__` matcher appended to the selector's matchers, and its
/// `parse_query` shows it; promql-parser keeps only the name.
fn add_name_matchers(node: &mut serde_json::Value) {
    match node {
        serde_json::Value::Object(map) => {
            let is_selector = map.get("type").and_then(|t| t.as_str()) == Some("vectorSelector");
            if is_selector && let Some(name) = map.get("name").and_then(|n| n.as_str()) {
                let name = name.to_owned();
                if let Some(serde_json::Value::Array(ms)) = map.get_mut("matchers") {
                    let has = ms
                        .iter()
                        .any(|m| m.get("name").and_then(|n| n.as_str()) == Some("__name__"));
                    if !has {
                        ms.push(
                            serde_json::json!({"name": "__name__", "type": "=", "value": name}),
                        );
                    }
                }
            }
            for v in map.values_mut() {
                add_name_matchers(v);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(add_name_matchers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{Point, Sample, Series};

    fn result(value: Value) -> QueryResult {
        QueryResult {
            value,
            warnings: vec![],
            infos: vec![],
            stats: Default::default(),
        }
    }

    async fn body(resp: axum::response::Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn timestamps_as_prometheus_writes_them() {
        let ts = |t| {
            let mut s = String::new();
            write_timestamp(&mut s, t);
            s
        };
        assert_eq!(ts(4000), "4");
        assert_eq!(ts(1500), "1.500");
        assert_eq!(ts(1_435_781_451_781), "1435781451.781");
        assert_eq!(ts(1005), "1.005");
        assert_eq!(ts(-250), "-0.250");
        assert_eq!(ts(0), "0");
    }

    #[tokio::test]
    async fn envelopes() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]).unwrap();
        let b = body(render(result(Value::Scalar { t: 4000, v: 2.0 }), 0, false)).await;
        assert_eq!(
            b,
            r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
        );
        let b = body(render(
            result(Value::String {
                t: 1500,
                s: "hi".into(),
            }),
            0,
            false,
        ))
        .await;
        assert_eq!(
            b,
            r#"{"status":"success","data":{"resultType":"string","result":[1.500,"hi"]}}"#
        );
        let b = body(render(result(Value::Vector(vec![])), 0, false)).await;
        assert_eq!(
            b,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
        );
        let v = Value::Vector(vec![
            Sample {
                labels: labels.clone(),
                t: 1000,
                v: f64::NAN,
                h: None,
            },
            Sample {
                labels: labels.clone(),
                t: 1000,
                v: 1.0,
                h: None,
            },
        ]);
        let b = body(render(result(v), 1, false)).await;
        assert_eq!(
            b,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"NaN"]}]},"warnings":["results truncated due to limit"]}"#
        );
        let m = Value::Matrix(vec![Series {
            labels,
            points: vec![
                Point { t: 0, v: 1.0 },
                Point {
                    t: 15000,
                    v: f64::INFINITY,
                },
            ],
            histograms: Vec::new(),
        }]);
        let mut r = result(m);
        r.infos.push("PromQL info: x".into());
        let b = body(render(r, 0, true)).await;
        assert!(
            b.starts_with(
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\"b"},"values":[[0,"1"],[15,"+Inf"]]}],"stats":{"timings":{"#
            ),
            "{b}"
        );
        assert!(b.ends_with(r#""infos":["PromQL info: x"]}"#), "{b}");
    }

    #[test]
    fn engine_errors_keep_type_and_status() {
        let e = query_error(QueryError::BadData("1:3: parse error: x".into()));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            "invalid parameter \"query\": 1:3: parse error: x"
        );
        let e = query_error(QueryError::Canceled("expression evaluation".into()));
        assert_eq!(e.status.as_u16(), 499);
        assert_eq!(e.kind, "canceled");
        let e = query_error(QueryError::Timeout("expression evaluation".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.message, "query timed out in expression evaluation");
    }

    #[test]
    fn parse_query_names_the_metric_matcher() {
        let expr = promql_parser::parser::parse(r#"up{job="a"}"#).unwrap();
        let mut ast = serde_json::to_value(&expr).unwrap();
        add_name_matchers(&mut ast);
        assert_eq!(
            ast,
            serde_json::json!({
                "type": "vectorSelector", "name": "up", "offset": 0,
                "startOrEnd": null, "timestamp": null,
                "matchers": [
                    {"name": "job", "type": "=", "value": "a"},
                    {"name": "__name__", "type": "=", "value": "up"}
                ]
            })
        );
    }
}
