//! Per-handler request counts and latencies for `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // The route template, never the raw path: raw paths would make label
    // cardinality depend on what clients send.
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    let code = response.status().as_u16().to_string();
    state
        .metrics
        .http_requests
        .with_label_values(&[handler.as_str(), code.as_str()])
        .inc();
    state
        .metrics
        .http_request_duration
        .with_label_values(&[handler.as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}
