//! `/api/v1/admin/tsdb/*`, only with `--web.enable-admin-api`; otherwise
//! each answers Prometheus's `unavailable` error "admin APIs disabled".
//! POST and PUT, as in Prometheus.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::json;

use super::AppState;
use super::api::{
    ApiError, ApiResult, MAX_TIME_MS, MIN_TIME_MS, Params, parse_match_params, success, time_param,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(delete_series).put(delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(clean_tombstones).put(clean_tombstones),
        )
        .route("/api/v1/admin/tsdb/snapshot", post(snapshot).put(snapshot))
}

fn storage(state: &AppState) -> Result<std::sync::Arc<crate::storage::Storage>, ApiError> {
    if !state.enable_admin_api {
        return Err(ApiError::unavailable("admin APIs disabled"));
    }
    state
        .control
        .storage()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("TSDB not ready"))
}

/// Runs storage work off the async workers.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, crate::storage::StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal(format!("{what}: {e}"))),
        Err(e) => Err(ApiError::internal(format!("{what}: {e}"))),
    }
}

async fn delete_series(State(state): State<AppState>, params: Params) -> ApiResult {
    let storage = storage(&state)?;
    let matches = params.all("match[]");
    if matches.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let start = time_param(&params, "start", MIN_TIME_MS)?;
    let end = time_param(&params, "end", MAX_TIME_MS)?;
    let sets = parse_match_params(&matches)?;
    blocking("delete series", move || {
        storage.delete_series(sets, start, end)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clean_tombstones(State(state): State<AppState>) -> ApiResult {
    let storage = storage(&state)?;
    blocking("clean tombstones", move || storage.clean_tombstones()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn snapshot(State(state): State<AppState>, params: Params) -> ApiResult {
    let storage = storage(&state)?;
    let skip_head = match params.get("skip_head") {
        "" => false,
        v => parse_go_bool(v).ok_or_else(|| {
            ApiError::invalid_param(
                "skip_head",
                format!("strconv.ParseBool: parsing {v:?}: invalid syntax"),
            )
        })?,
    };
    // Prometheus's name: UTC time, then 8 random bytes in hex.
    let name = format!(
        "{}-{:016x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        ulid::Ulid::new().random() as u64
    );
    let dir = storage.dir().join("snapshots").join(&name);
    blocking("create snapshot", move || storage.snapshot(&dir, skip_head)).await?;
    Ok(success(json!({ "name": name })))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}
