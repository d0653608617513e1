//! The built-in Alertmanager over HTTP, in Alertmanager's v2 API shape so
//! `amtool --alertmanager.url=http://ember:9090` works: `/api/v2/status`,
//! `/api/v2/silences` (list with `filter`, create/update),
//! `/api/v2/silence/{id}` (get, delete = expire), `/api/v2/alerts` (list;
//! POST takes alerts from other senders, e.g. `amtool alert add`),
//! `/api/v2/receivers`. Plus Ember's `/api/v1/notifications`: groups and
//! their delivery state, for the UI.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{rfc3339_ms, success};
use crate::alerting::dispatch::{Dispatcher, Muted, StoredAlert, now_ms};
use crate::alerting::matchers::{AlertMatcher, parse_matchers, valid_label_name};
use crate::alerting::silence::{NewSilence, Silence, SilenceError, SilenceMatcher, SilenceState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/status", get(status))
        .route("/api/v2/receivers", get(receivers))
        .route("/api/v2/alerts", get(alerts).post(post_alerts))
        .route("/api/v2/silences", get(list_silences).post(post_silence))
        .route(
            "/api/v2/silence/{id}",
            get(get_silence).delete(delete_silence),
        )
        .route("/api/v1/notifications", get(notifications))
}

/// An error answer; Alertmanager sends the message as a JSON string.
struct AmError(StatusCode, String);

impl IntoResponse for AmError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(Value::String(self.1))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> AmError {
    AmError(status, message.into())
}

type AmResult = Result<Response, AmError>;

fn dispatcher(state: &AppState) -> Result<Arc<Dispatcher>, AmError> {
    state
        .control
        .dispatcher()
        .cloned()
        .ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"))
}

fn query_pairs(q: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Every `filter` parameter's matchers.
fn filters(pairs: &[(String, String)]) -> Result<Vec<AlertMatcher>, AmError> {
    let mut out = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "filter") {
        out.extend(
            parse_matchers(v)
                .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad matcher format: {e}")))?,
        );
    }
    Ok(out)
}

fn bool_param(pairs: &[(String, String)], name: &str, default: bool) -> Result<bool, AmError> {
    match pairs.iter().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) => v.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{name} in query must be of type boolean: {v:?}"),
            )
        }),
    }
}

async fn status(State(state): State<AppState>) -> Response {
    let original = state
        .control
        .config()
        .borrow()
        .notifications
        .as_ref()
        .and_then(|n| serde_yaml::to_string(n).ok())
        .unwrap_or_default();
    axum::Json(json!({
        "cluster": { "status": "disabled", "peers": [], "name": "" },
        "config": { "original": original },
        "uptime": rfc3339_ms(state.info.start_ms),
        "versionInfo": {
            "version": crate::telemetry::VERSION,
            "revision": crate::telemetry::REVISION,
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": crate::telemetry::RUSTC_VERSION,
        },
    }))
    .into_response()
}

async fn receivers(State(state): State<AppState>) -> Response {
    let names: Vec<Value> = state
        .control
        .config()
        .borrow()
        .notifications
        .as_ref()
        .map(|n| {
            n.receivers
                .iter()
                .map(|r| json!({ "name": r.name }))
                .collect()
        })
        .unwrap_or_default();
    axum::Json(Value::Array(names)).into_response()
}

fn alert_state(a: &StoredAlert, muted: &Muted, now: i64) -> &'static str {
    if a.resolved(now) {
        "unprocessed"
    } else if muted.is_muted() {
        "suppressed"
    } else {
        "active"
    }
}

pub fn alert_json(a: &StoredAlert, muted: &Muted, receivers: &[String], now: i64) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339_ms(a.starts_at_ms),
        "endsAt": rfc3339_ms(a.ends_at_ms),
        "updatedAt": rfc3339_ms(a.updated_at_ms),
        "generatorURL": a.generator_url,
        "fingerprint": format!("{:016x}", a.fingerprint),
        "receivers": receivers.iter().map(|r| json!({ "name": r })).collect::<Vec<_>>(),
        "status": {
            "state": alert_state(a, muted, now),
            "silencedBy": muted.silenced_by,
            "inhibitedBy": muted.inhibited_by,
        },
    })
}

/// `GET /api/v2/alerts`: `active`, `silenced`, `inhibited` (default true),
/// `filter` matchers, `receiver` (a regex).
async fn alerts(State(state): State<AppState>, RawQuery(q): RawQuery) -> AmResult {
    let d = dispatcher(&state)?;
    let pairs = query_pairs(q);
    let filter = filters(&pairs)?;
    let active = bool_param(&pairs, "active", true)?;
    let silenced = bool_param(&pairs, "silenced", true)?;
    let inhibited = bool_param(&pairs, "inhibited", true)?;
    let receiver = match pairs.iter().find(|(k, _)| k == "receiver") {
        None => None,
        Some((_, r)) => match regex::Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("failed to parse receiver param: {e}"),
                ));
            }
        },
    };
    let now = now_ms();
    let mut out = Vec::new();
    for (a, receivers, muted) in d.alerts_with_state(now) {
        if a.resolved(now) || !filter.iter().all(|m| m.matches(&a.labels)) {
            continue;
        }
        if let Some(re) = &receiver
            && !receivers.iter().any(|r| re.is_match(r))
        {
            continue;
        }
        let keep = (active || muted.is_muted())
            && (silenced || muted.silenced_by.is_empty())
            && (inhibited || muted.inhibited_by.is_empty());
        if keep {
            out.push(alert_json(&a, &muted, &receivers, now));
        }
    }
    Ok(axum::Json(Value::Array(out)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
}

/// `POST /api/v2/alerts`: alerts from another sender (a Prometheus, amtool)
/// into the built-in routing, with Alertmanager's defaults: no start means
/// now, no end means now + `resolve_timeout`.
async fn post_alerts(State(state): State<AppState>, body: axum::body::Bytes) -> AmResult {
    let d = dispatcher(&state)?;
    let Some(config) = d.config() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "built-in alert routing is not configured (add a notifications: section)",
        ));
    };
    let posted: Vec<PostableAlert> = serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid alerts: {e}")))?;
    let now = now_ms();
    let mut alerts = Vec::with_capacity(posted.len());
    let mut problems = Vec::new();
    for (i, a) in posted.into_iter().enumerate() {
        // Go clients send the zero time (0001-01-01T00:00:00Z) for "unset".
        const GO_ZERO_TIME_MS: i64 = -62_135_596_800_000;
        let time = |what: &str, v: &Option<String>| match v.as_deref() {
            None | Some("") => Ok(None),
            Some(t) => parse_time(what, t).map(|ms| (ms != GO_ZERO_TIME_MS).then_some(ms)),
        };
        let (starts, ends) = match (time("startsAt", &a.starts_at), time("endsAt", &a.ends_at)) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(e), _) | (_, Err(e)) => {
                problems.push(format!("alert {i}: {e}"));
                continue;
            }
        };
        let starts_at_ms = starts.or(ends).unwrap_or(now);
        let ends_at_ms = ends.unwrap_or(now + config.resolve_timeout.as_millis() as i64);
        if a.labels.is_empty() {
            problems.push(format!("alert {i}: at least one label pair required"));
        } else if let Some(bad) = a.labels.keys().find(|k| !valid_label_name(k)) {
            problems.push(format!("alert {i}: invalid label name {bad:?}"));
        } else if ends_at_ms < starts_at_ms {
            problems.push(format!("alert {i}: end time must not be before start time"));
        } else {
            alerts.push(crate::rules::group::OutgoingAlert {
                labels: a.labels,
                annotations: a.annotations,
                starts_at_ms,
                ends_at_ms,
                generator_url: a.generator_url,
            });
        }
    }
    // Valid alerts are taken even when others in the batch are not, as
    // Alertmanager does.
    d.put(&alerts);
    if problems.is_empty() {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(error(StatusCode::BAD_REQUEST, problems.join("; ")))
    }
}

fn silence_json(s: &Silence, now: i64) -> Value {
    json!({
        "id": s.id,
        "status": { "state": s.state(now).as_str() },
        "updatedAt": rfc3339_ms(s.updated_at_ms),
        "matchers": s.matchers,
        "startsAt": rfc3339_ms(s.starts_at_ms),
        "endsAt": rfc3339_ms(s.ends_at_ms),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

/// Alertmanager's order: active by end, then pending by start, then
/// expired by end, latest first.
fn sort_silences(list: &mut [Silence], now: i64) {
    let rank = |s: &Silence| match s.state(now) {
        SilenceState::Active => (0, s.ends_at_ms),
        SilenceState::Pending => (1, s.starts_at_ms),
        SilenceState::Expired => (2, -s.ends_at_ms),
    };
    list.sort_by_key(rank);
}

async fn list_silences(State(state): State<AppState>, RawQuery(q): RawQuery) -> AmResult {
    let d = dispatcher(&state)?;
    let filter = filters(&query_pairs(q))?;
    let now = now_ms();
    let mut list = d.silences().list(&filter);
    sort_silences(&mut list, now);
    Ok(axum::Json(Value::Array(
        list.iter().map(|s| silence_json(s, now)).collect(),
    ))
    .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    #[serde(default)]
    id: String,
    matchers: Vec<SilenceMatcher>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

fn parse_time(what: &str, s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{what} in body must be of type date-time: {s:?} ({e})"))
}

async fn post_silence(State(state): State<AppState>, body: axum::body::Bytes) -> AmResult {
    let d = dispatcher(&state)?;
    let p: PostableSilence = serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")))?;
    let starts_at_ms =
        parse_time("startsAt", &p.starts_at).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let ends_at_ms =
        parse_time("endsAt", &p.ends_at).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let new = NewSilence {
        id: (!p.id.is_empty()).then_some(p.id),
        matchers: p.matchers,
        starts_at_ms,
        ends_at_ms,
        created_by: p.created_by,
        comment: p.comment,
    };
    match d.silences().set(new, now_ms()) {
        Ok(id) => {
            tracing::info!(silence = %id, "Silence set");
            Ok(axum::Json(json!({ "silenceID": id })).into_response())
        }
        Err(e @ SilenceError::NotFound(_)) => Err(error(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ SilenceError::Invalid(_)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("silence invalid: {e}"),
        )),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn get_silence(State(state): State<AppState>, Path(id): Path<String>) -> AmResult {
    let d = dispatcher(&state)?;
    match d.silences().get(&id) {
        Some(s) => Ok(axum::Json(silence_json(&s, now_ms())).into_response()),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("silence {id} not found"),
        )),
    }
}

async fn delete_silence(State(state): State<AppState>, Path(id): Path<String>) -> AmResult {
    let d = dispatcher(&state)?;
    match d.silences().expire(&id, now_ms()) {
        Ok(()) => {
            tracing::info!(silence = %id, "Silence expired");
            Ok(StatusCode::OK.into_response())
        }
        Err(e @ SilenceError::NotFound(_)) => Err(error(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ SilenceError::AlreadyExpired(_)) => {
            Err(error(StatusCode::BAD_REQUEST, e.to_string()))
        }
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| Value::String(rfc3339_ms(t)))
}

/// Ember extension: the built-in Alertmanager's aggregation groups, their
/// alerts (with why they are muted) and each integration's delivery state.
async fn notifications(State(state): State<AppState>) -> AmResult {
    let d = dispatcher(&state)?;
    let now = now_ms();
    let configured = d.config().is_some();
    let groups: Vec<Value> = d
        .groups()
        .iter()
        .map(|g| {
            let labels: BTreeMap<&str, &str> = g
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            json!({
                "receiver": g.receiver,
                "groupKey": g.group_key,
                "labels": labels,
                "groupWait": g.group_wait_ms as f64 / 1000.0,
                "groupInterval": g.group_interval_ms as f64 / 1000.0,
                "repeatInterval": g.repeat_interval_ms as f64 / 1000.0,
                "nextFlush": rfc3339_ms(g.next_flush_ms),
                "lastFlush": opt_time(g.last_flush_ms),
                "alerts": g.alerts.iter().map(|(a, m)| alert_json(a, m, std::slice::from_ref(&g.receiver), now)).collect::<Vec<_>>(),
                "integrations": g.integrations.iter().map(|(s, entry)| json!({
                    "plugin": s.plugin,
                    "lastAttempt": opt_time(s.last_attempt_ms),
                    "lastSuccess": opt_time(s.last_success_ms),
                    "lastError": s.last_error,
                    "failedAttempts": s.failed_attempts,
                    "lastNotified": opt_time(entry.as_ref().map(|e| e.timestamp_ms)),
                    "notifiedFiring": entry.as_ref().map_or(0, |e| e.firing.len()),
                    "notifiedResolved": entry.as_ref().map_or(0, |e| e.resolved.len()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(success(
        json!({ "configured": configured, "groups": groups }),
    ))
}
