//! The HTTP server on `--web.listen-address`: lifecycle endpoints, `/metrics`,
//! and (with later issues) the Prometheus API and the UI.

mod instrument;
mod lifecycle;

use std::sync::Arc;

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::server::Control;
use crate::telemetry::metrics::Metrics;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub control: Arc<Control>,
    pub metrics: Metrics,
    pub enable_lifecycle: bool,
    pub route_prefix: String,
}

/// Builds the router, mounted under the route prefix as Prometheus mounts it.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/api/v1/status/walreplay", get(wal_replay))
        .merge(lifecycle::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            instrument::record,
        ))
        .with_state(state.clone());
    let prefix = state.route_prefix.trim_end_matches('/');
    if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(prefix, routes)
    }
}

/// Served before the server is ready: it is how a client watches start-up.
async fn wal_replay(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl IntoResponse {
    let p = state.control.replay_progress();
    axum::Json(serde_json::json!({
        "status": "success",
        "data": { "min": 0, "max": p.total, "current": p.done }
    }))
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    if let Some(storage) = state.control.storage() {
        state.metrics.observe_storage(storage);
    }
    match state.metrics.render() {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(err) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {err}"),
        )
            .into_response(),
    }
}

/// A plain landing page until the web UI lands; it says what works today.
async fn index(axum::extract::State(state): axum::extract::State<AppState>) -> Html<String> {
    let p = state.route_prefix.trim_end_matches('/');
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Ember</title></head><body>\
         <h1>Ember {version}</h1>\
         <p>A Prometheus-compatible monitoring server. The query UI is not part of this build yet.</p>\
         <ul>\
         <li><a href=\"{p}/metrics\">{p}/metrics</a>: Ember's own metrics</li>\
         <li><a href=\"{p}/-/healthy\">{p}/-/healthy</a> and <a href=\"{p}/-/ready\">{p}/-/ready</a>: health and readiness</li>\
         </ul></body></html>",
        version = crate::telemetry::VERSION,
    ))
}
