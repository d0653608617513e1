//! `/-/healthy`, `/-/ready`, `/-/reload` and `/-/quit`, answering as Prometheus does.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route(
            "/-/reload",
            get(method_not_allowed).post(reload).put(reload),
        )
        .route("/-/quit", get(method_not_allowed).post(quit).put(quit))
}

async fn healthy() -> &'static str {
    "Ember Server is Healthy.\n"
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.control.is_ready() {
        (StatusCode::OK, "Ember Server is Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    }
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "Only POST or PUT requests allowed",
    )
}

fn lifecycle_disabled() -> axum::response::Response {
    (
        StatusCode::FORBIDDEN,
        "Lifecycle API is not enabled. Start Ember with --web.enable-lifecycle to use it.",
    )
        .into_response()
}

async fn reload(State(state): State<AppState>) -> axum::response::Response {
    if !state.enable_lifecycle {
        return lifecycle_disabled();
    }
    match state.control.request_reload().await {
        Ok(()) => (StatusCode::OK, "").into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {err}"),
        )
            .into_response(),
    }
}

async fn quit(State(state): State<AppState>) -> axum::response::Response {
    if !state.enable_lifecycle {
        return lifecycle_disabled();
    }
    state.control.request_shutdown();
    (StatusCode::OK, "Requesting termination... Goodbye!").into_response()
}
