//! The Pushgateway HTTP API, served on the push listener (`--push.listen-address`)
//! and, for the push endpoints, on the main port too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::grouping;
use super::store::{Method, PushError, PushStore};

/// Pushgateway's own limit on a push body.
const BODY_LIMIT: usize = 16 << 20;

#[derive(Clone)]
pub struct PushState {
    pub store: Arc<PushStore>,
}

/// PUT/POST/DELETE `/metrics/job/...` and `GET /api/v1/metrics`.
pub fn push_routes(state: PushState) -> Router {
    Router::new()
        .route(
            "/metrics/{*grouping}",
            axum::routing::put(put)
                .post(post)
                .delete(delete)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .layer(axum::middleware::from_fn_with_state(
                    crate::web::limits::BodyLimit {
                        bytes: BODY_LIMIT,
                        json: false,
                    },
                    crate::web::limits::body_limit,
                )),
        )
        .route("/api/v1/metrics", get(api_metrics))
        .with_state(state)
}

/// The whole push listener: the push routes plus `GET /metrics` of every
/// pushed group (so an existing Prometheus can keep scraping it) and health.
pub fn listener_routes(state: PushState) -> Router {
    push_routes(state.clone()).merge(
        Router::new()
            .route("/metrics", get(exposition))
            .route("/-/healthy", get(|| async { "OK" }))
            .route("/-/ready", get(|| async { "OK" }))
            .with_state(state),
    )
}

async fn put(
    state: State<PushState>,
    path: Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    push(state, path, headers, body, Method::Put).await
}

async fn post(
    state: State<PushState>,
    path: Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    push(state, path, headers, body, Method::Post).await
}

async fn push(
    State(state): State<PushState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
    method: Method,
) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("protobuf") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "protobuf pushes are not supported by Ember; push the text format",
        )
            .into_response();
    }
    let grouping = match grouping::parse(&path) {
        Ok(g) => g,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.push(grouping, &body, method)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(PushError::BadRequest(msg))) => {
            tracing::info!(group = %path, err = %msg, "Rejected push");
            (StatusCode::BAD_REQUEST, msg).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn delete(State(state): State<PushState>, Path(path): Path<String>) -> Response {
    let grouping = match grouping::parse(&path) {
        Ok(g) => g,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    match state.store.delete(&grouping) {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

fn series(name: &str, labels: &BTreeMap<String, String>) -> String {
    let body: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{name}{{{}}}", body.join(","))
}

/// Every pushed group in the text format, families merged across groups,
/// plus `push_time_seconds` and `push_failure_time_seconds` per group.
pub fn render(store: &PushStore) -> String {
    let groups = store.groups();
    let mut families: BTreeMap<String, (String, String, Vec<String>)> = BTreeMap::new();
    for g in &groups {
        for f in g.families.values() {
            let entry = families
                .entry(f.name.clone())
                .or_insert_with(|| (f.kind.clone(), f.help.clone(), Vec::new()));
            for s in &f.samples {
                let name = s.labels.get("__name__").cloned().unwrap_or_default();
                entry.2.push(format!(
                    "{} {}",
                    series(&name, &s.labels),
                    format_value(f64::from_bits(s.value_bits))
                ));
            }
        }
    }
    let mut out = String::new();
    for (name, (kind, help, lines)) in &families {
        if !help.is_empty() {
            let _ = writeln!(
                out,
                "# HELP {name} {}",
                help.replace('\\', "\\\\").replace('\n', "\\n")
            );
        }
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    for (metric, help) in [
        (
            "push_time_seconds",
            "Last Unix time when changing this group in the Pushgateway succeeded.",
        ),
        (
            "push_failure_time_seconds",
            "Last Unix time when changing this group in the Pushgateway failed.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for g in &groups {
            let v = if metric == "push_time_seconds" {
                g.push_time
            } else {
                g.push_failure_time
            };
            let _ = writeln!(out, "{} {}", series(metric, &g.grouping), format_value(v));
        }
    }
    out
}

async fn exposition(State(state): State<PushState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state.store),
    )
        .into_response()
}

/// Pushgateway's `/api/v1/metrics`: every group with its metrics.
async fn api_metrics(State(state): State<PushState>) -> Response {
    let data: Vec<serde_json::Value> = state
        .store
        .groups()
        .iter()
        .map(|g| {
            let mut obj = serde_json::Map::new();
            obj.insert("labels".into(), serde_json::json!(g.grouping));
            obj.insert("last_push_successful".into(), serde_json::json!(g.push_failure_time <= g.push_time));
            for (name, value) in [("push_time_seconds", g.push_time), ("push_failure_time_seconds", g.push_failure_time)] {
                obj.insert(
                    name.into(),
                    serde_json::json!({"type": "GAUGE", "metrics": [{"labels": g.grouping, "value": format_value(value)}]}),
                );
            }
            for f in g.families.values() {
                let metrics: Vec<serde_json::Value> = f
                    .samples
                    .iter()
                    .map(|s| {
                        let labels: BTreeMap<&String, &String> = s.labels.iter().filter(|(k, _)| *k != "__name__").collect();
                        serde_json::json!({"labels": labels, "value": format_value(f64::from_bits(s.value_bits))})
                    })
                    .collect();
                obj.insert(f.name.clone(), serde_json::json!({"type": f.kind.to_uppercase(), "help": f.help, "metrics": metrics}));
            }
            serde_json::Value::Object(obj)
        })
        .collect();
    axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
}
