//! What every `/api/v1` handler shares: request parameters (query string
//! and form body, as Go's `r.FormValue` sees them), the JSON envelope,
//! errors, and Prometheus's parsers for times, durations, limits and
//! series selectors.

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::model::{MatchOp, Matcher};

/// Form bodies above this are refused, as Go's `ParseForm` refuses them.
pub const FORM_BODY_LIMIT: usize = 10 << 20;

/// Earliest time the API accepts, Prometheus's `MinTime` in milliseconds.
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Latest time the API accepts, Prometheus's `MaxTime` in milliseconds.
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;
/// How `MIN_TIME_MS` and `MAX_TIME_MS` are written in RFC 3339; clients
/// (promtool, client_golang) send these for "unbounded".
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";

/// Request parameters: a form-encoded POST body's values first, then the
/// query string's, which is the order Go's `r.Form` keeps them in.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params { pairs }
    }

    /// The first value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name` (for `match[]`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn parse_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Params, ApiError> {
        let query = req.uri().query().map(|q| parse_pairs(q.as_bytes()));
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|m| m.trim() == "application/x-www-form-urlencoded")
            });
        let mut pairs = Vec::new();
        if is_form && matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
            let body = axum::body::to_bytes(req.into_body(), FORM_BODY_LIMIT)
                .await
                .map_err(|e| {
                    if super::limits::is_too_large(&e) {
                        ApiError::new(
                            "bad_data",
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("error parsing form values: the body is larger than the {FORM_BODY_LIMIT} bytes accepted"),
                        )
                    } else {
                        ApiError::bad_data(format!("error parsing form values: {e}"))
                    }
                })?;
            pairs = parse_pairs(&body);
        }
        pairs.extend(query.unwrap_or_default());
        Ok(Params { pairs })
    }
}

/// An API error: `errorType`, HTTP status and message.
#[derive(Debug)]
pub struct ApiError {
    pub kind: &'static str,
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: &'static str, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            status,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> ApiError {
        ApiError::new("bad_data", StatusCode::BAD_REQUEST, message)
    }

    /// Prometheus's `invalidParamError`: `invalid parameter "<name>": <err>`.
    pub fn invalid_param(name: &str, err: impl std::fmt::Display) -> ApiError {
        ApiError::bad_data(format!("invalid parameter {name:?}: {err}"))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new("not_found", StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new("internal", StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new("unavailable", StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Written by hand to keep Prometheus's key order.
        let body = format!(
            r#"{{"status":"error","errorType":{},"error":{}}}"#,
            serde_json::Value::from(self.kind),
            serde_json::Value::from(self.message),
        );
        json_response(self.status, body)
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The success envelope around `data`, which is already JSON text.
/// `warnings` and `infos` appear only when non-empty, as in Prometheus.
pub fn success_raw(data: &str, warnings: &[String], infos: &[String]) -> Response {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str(r#"{"status":"success","data":"#);
    out.push_str(data);
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            out.push_str(&format!(",\"{key}\":"));
            out.push_str(&serde_json::Value::from(list.to_vec()).to_string());
        }
    }
    out.push('}');
    json_response(StatusCode::OK, out)
}

pub fn success(data: serde_json::Value) -> Response {
    success_raw(&data.to_string(), &[], &[])
}

pub fn success_with_warnings(data: serde_json::Value, warnings: &[String]) -> Response {
    success_raw(&data.to_string(), warnings, &[])
}

/// The warning Prometheus adds when `limit` cut a result short.
pub const TRUNCATED_WARNING: &str = "results truncated due to limit";

/// Answers 503 on `/api/v1/*` until the storage is open and the server is
/// ready, as Prometheus's readiness wrapper does.
pub async fn require_ready(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.control.is_ready() {
        next.run(req).await
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    }
}

/// A time parameter: Unix seconds (fractions rounded to milliseconds) or
/// RFC 3339. Returns milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(err());
        }
        let secs = f.trunc();
        let ms = (f.fract() * 1000.0).round();
        let total = secs * 1000.0 + ms;
        if total < MIN_TIME_MS as f64 || total > MAX_TIME_MS as f64 {
            return Err(err());
        }
        return Ok(total as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match s {
        MIN_TIME_TEXT => Ok(MIN_TIME_MS),
        MAX_TIME_TEXT => Ok(MAX_TIME_MS),
        _ => Err(err()),
    }
}

/// An optional time parameter (`start`, `end`, `time`): `default` when
/// absent, else Prometheus's `parseTimeParam` error text.
pub fn time_param(params: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match params.get(name) {
        "" => Ok(default),
        v => parse_time(v).map_err(|e| {
            ApiError::invalid_param(name, format!("Invalid time value for '{name}': {e}"))
        }),
    }
}

/// A duration parameter: float seconds or a Prometheus duration string
/// (`1h30m`, `5m`, `100ms`). Returns nanoseconds, as Go's `time.Duration`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ns = f * 1e9;
        if !ns.is_finite() || ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i64);
    }
    match crate::config::duration::parse(s) {
        Ok(d) => i64::try_from(d.as_duration().as_nanos())
            .map_err(|_| format!("cannot parse {s:?} to a valid duration")),
        Err(_) => Err(format!("cannot parse {s:?} to a valid duration")),
    }
}

/// `limit`: absent or 0 means unlimited; negative or not a number is an error.
pub fn limit_param(params: &Params) -> Result<usize, ApiError> {
    match params.get("limit") {
        "" => Ok(0),
        s => match s.parse::<i64>() {
            Ok(n) if n < 0 => Err(ApiError::invalid_param(
                "limit",
                "limit must be non-negative",
            )),
            Ok(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(_) => Err(ApiError::invalid_param(
                "limit",
                format!("strconv.Atoi: parsing {s:?}: invalid syntax"),
            )),
        },
    }
}

/// Converts a parsed selector's matchers into storage matchers; the metric
/// name written outside the braces becomes a `__name__` matcher.
fn convert_matchers(
    name: Option<&str>,
    matchers: &[promql_parser::label::Matcher],
) -> Result<Vec<Matcher>, String> {
    use promql_parser::label::MatchOp as P;
    let mut out = Vec::with_capacity(matchers.len() + 1);
    for m in matchers {
        let op = match m.op {
            P::Equal => MatchOp::Equal,
            P::NotEqual => MatchOp::NotEqual,
            P::Re(_) => MatchOp::RegexMatch,
            P::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| format!("invalid regular expression {:?}: {e}", m.value))?,
        );
    }
    if let Some(name) = name {
        out.push(Matcher::eq(crate::model::labels::METRIC_NAME, name));
    }
    Ok(out)
}

/// Parses one series selector (`up{job="x"}`) into matcher sets; a selector
/// with `or` inside its braces gives one set per alternative.
pub fn parse_selector(text: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = promql_parser::parser::parse(text)?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "parse error: {text:?} is not a series selector (a metric name and/or label matchers in braces)"
        ));
    };
    vector_selector_matchers(&vs)
}

/// A selector's matcher sets: one, or one per `or` group.
pub fn vector_selector_matchers(
    vs: &promql_parser::parser::VectorSelector,
) -> Result<Vec<Vec<Matcher>>, String> {
    let name = vs.name.as_deref();
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![convert_matchers(name, &vs.matchers.matchers)?])
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|group| convert_matchers(name, group))
            .collect()
    }
}

/// Prometheus's `parseMatchersParam`: every selector must have a matcher
/// that does not match the empty string.
pub fn parse_match_params(values: &[&str]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for v in values {
        let parsed = parse_selector(v).map_err(|e| {
            // promql-parser applies the rule itself; say it as the API does.
            if e.contains("at least one non-empty matcher") {
                ApiError::bad_data("match[] must contain at least one non-empty matcher")
            } else {
                ApiError::invalid_param("match[]", e)
            }
        })?;
        for set in parsed {
            if set.iter().all(|m| m.matches_empty()) {
                return Err(ApiError::bad_data(
                    "match[] must contain at least one non-empty matcher",
                ));
            }
            sets.push(set);
        }
    }
    Ok(sets)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Go's `time.Time` in JSON (RFC 3339 with trimmed nanoseconds, UTC);
/// 0 is Go's zero time, which Prometheus shows for "never".
pub fn rfc3339_ms(ms: i64) -> String {
    if ms == 0 {
        return "0001-01-01T00:00:00Z".to_owned();
    }
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) {
        Some(t) => {
            let frac = ms.rem_euclid(1000);
            let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            if frac == 0 {
                format!("{base}Z")
            } else {
                let f = format!("{frac:03}");
                format!("{base}.{}Z", f.trim_end_matches('0'))
            }
        }
        None => "0001-01-01T00:00:00Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_prometheus_parses_them() {
        assert_eq!(parse_time("1"), Ok(1000));
        assert_eq!(parse_time("1.5"), Ok(1500));
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_time(MIN_TIME_TEXT), Ok(MIN_TIME_MS));
        assert_eq!(parse_time(MAX_TIME_TEXT), Ok(MAX_TIME_MS));
        assert_eq!(
            parse_time("x"),
            Err("cannot parse \"x\" to a valid timestamp".to_owned())
        );
        assert!(parse_time("").is_err());
        assert!(parse_time("NaN").is_err());
    }

    #[test]
    fn durations_as_prometheus_parses_them() {
        let s = 1_000_000_000;
        assert_eq!(parse_duration("15"), Ok(15 * s));
        assert_eq!(parse_duration("0.5"), Ok(s / 2));
        assert_eq!(parse_duration("1h30m"), Ok(5400 * s));
        assert_eq!(parse_duration("100ms"), Ok(s / 10));
        assert_eq!(parse_duration("1d"), Ok(86400 * s));
        assert_eq!(parse_duration("1w"), Ok(7 * 86400 * s));
        assert_eq!(parse_duration("1y"), Ok(365 * 86400 * s));
        assert_eq!(
            parse_duration("1x"),
            Err("cannot parse \"1x\" to a valid duration".to_owned())
        );
        assert_eq!(
            parse_duration("1e20"),
            Err("cannot parse \"1e20\" to a valid duration. It overflows int64".to_owned())
        );
    }

    #[test]
    fn limits() {
        let p = |v: &str| Params::from_pairs(vec![("limit".into(), v.into())]);
        assert_eq!(limit_param(&p("")).ok(), Some(0));
        assert_eq!(limit_param(&p("5")).ok(), Some(5));
        assert_eq!(
            limit_param(&p("-1")).err().map(|e| e.message),
            Some("invalid parameter \"limit\": limit must be non-negative".to_owned())
        );
        assert_eq!(
            limit_param(&p("x")).err().map(|e| e.message),
            Some(
                "invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax"
                    .to_owned()
            )
        );
    }

    #[test]
    fn selectors_become_matchers() {
        let sets = parse_selector(r#"up{job=~"a|b",x!=""}"#).unwrap();
        assert_eq!(sets.len(), 1);
        let ms: Vec<String> = sets[0].iter().map(|m| m.to_string()).collect();
        assert_eq!(ms, [r#"job=~"a|b""#, r#"x!="""#, r#"__name__="up""#]);
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("up{").is_err());
        let err = parse_match_params(&[r#"{job=~".*"}"#]).unwrap_err();
        assert_eq!(
            err.message,
            "match[] must contain at least one non-empty matcher"
        );
    }

    #[test]
    fn go_time_json() {
        assert_eq!(rfc3339_ms(0), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_435_781_451_781), "2015-07-01T20:10:51.781Z");
        assert_eq!(rfc3339_ms(1_435_781_451_500), "2015-07-01T20:10:51.5Z");
        assert_eq!(rfc3339_ms(1_435_781_451_000), "2015-07-01T20:10:51Z");
    }
}
