//! The HTTP server on `--web.listen-address`: lifecycle endpoints, `/metrics`,
//! the Prometheus API and the web UI (`ui.rs`).

mod admin_api;
mod alertmanager_api;
pub mod api;
mod cors;
mod federate;
mod instrument;
mod lifecycle;
pub mod limits;
mod metadata_api;
mod query_api;
pub mod security;
mod sql_api;
mod status_api;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::server::Control;
use crate::telemetry::metrics::Metrics;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub control: Arc<Control>,
    pub metrics: Metrics,
    pub enable_lifecycle: bool,
    pub enable_remote_write_receiver: bool,
    pub enable_admin_api: bool,
    pub route_prefix: String,
    pub info: Arc<ServerInfo>,
    pub push: crate::push::http::PushState,
    pub cors: Arc<cors::CorsPolicy>,
    /// `--query.lookback-delta`: how far back `/federate` looks.
    pub lookback_delta_ms: i64,
    pub remote_read: RemoteReadLimits,
}

/// `--storage.remote.read-*`: what one remote read may return, and how many
/// may run at once (the others wait, as behind Prometheus's gate).
#[derive(Clone)]
pub struct RemoteReadLimits {
    pub limits: crate::remote::read_handler::ReadLimits,
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl RemoteReadLimits {
    pub fn new(
        limits: crate::remote::read_handler::ReadLimits,
        concurrent: usize,
    ) -> RemoteReadLimits {
        RemoteReadLimits {
            limits,
            gate: (concurrent > 0).then(|| Arc::new(tokio::sync::Semaphore::new(concurrent))),
        }
    }
}

pub use cors::CorsPolicy;

/// Facts about this process for the status endpoints, fixed at start-up.
#[derive(Debug, Default)]
pub struct ServerInfo {
    /// Every flag by long name, for `/api/v1/status/flags`.
    pub flags: std::collections::BTreeMap<String, String>,
    pub start_ms: i64,
    pub cwd: String,
    pub hostname: String,
    /// `15d`, `512MiB` or `15d or 512MiB`, as Prometheus's runtime info shows it.
    pub storage_retention: String,
}

impl ServerInfo {
    pub fn new(flags: &crate::cli::ServerFlags) -> ServerInfo {
        let mut retention = Vec::new();
        if let Some(t) = flags.effective_retention_time() {
            retention.push(t.to_string());
        }
        if let Some(b) = flags.retention_size.filter(|b| *b > 0) {
            retention.push(base2_bytes(b));
        }
        ServerInfo {
            flags: flags.flag_map(),
            start_ms: api::now_ms(),
            cwd: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            storage_retention: retention.join(" or "),
        }
    }
}

/// Bytes in the largest binary unit that divides them (`512MiB`).
fn base2_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["EiB", "PiB", "TiB", "GiB", "MiB", "KiB"];
    for (i, unit) in UNITS.iter().enumerate() {
        let size = 1u64 << (10 * (6 - i));
        if b >= size && b.is_multiple_of(size) {
            return format!("{}{unit}", b / size);
        }
    }
    format!("{b}B")
}

/// Builds the router, mounted under the route prefix as Prometheus mounts it.
pub fn router(state: AppState) -> Router {
    // Prometheus's API answers 503 until it is ready; only the WAL replay
    // status (how a client watches start-up) is served before that.
    let api_v1 = Router::new()
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .merge(query_api::routes())
        .merge(metadata_api::routes())
        .merge(status_api::routes())
        .merge(admin_api::routes())
        .merge(sql_api::routes())
        .layer(axum::middleware::from_fn_with_state(
            limits::BodyLimit {
                bytes: api::FORM_BODY_LIMIT,
                json: true,
            },
            limits::body_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_ready,
        ));
    // Every `/api/v1` answer carries CORS headers (the WAL replay status
    // too, as in Prometheus); remote write does not.
    let api = Router::new()
        .route("/api/v1/status/walreplay", get(wal_replay))
        .merge(api_v1)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::layer,
        ));
    let federation = Router::new()
        .route("/federate", get(federate::federate))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_ready,
        ));
    let routes = Router::new()
        .merge(ui::routes(&state.route_prefix))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(federation)
        .merge(alertmanager_api::routes())
        .route(
            "/api/v1/write",
            axum::routing::post(remote_write)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .layer(axum::middleware::from_fn_with_state(
                    limits::BodyLimit {
                        bytes: REMOTE_WRITE_BODY_LIMIT,
                        json: false,
                    },
                    limits::body_limit,
                )),
        )
        .route(
            "/api/v1/read",
            axum::routing::post(remote_read)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .layer(axum::middleware::from_fn_with_state(
                    limits::BodyLimit {
                        bytes: REMOTE_READ_BODY_LIMIT,
                        json: false,
                    },
                    limits::body_limit,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    api::require_ready,
                )),
        )
        .merge(lifecycle::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            instrument::record,
        ))
        .with_state(state.clone())
        .merge(crate::push::http::push_routes(state.push.clone()));
    let prefix = state.route_prefix.trim_end_matches('/').to_owned();
    // Prometheus compresses every response when the client accepts gzip or
    // deflate; the layer leaves already-encoded bodies (snappy) alone.
    let compression = tower_http::compression::CompressionLayer::new()
        .gzip(true)
        .deflate(true);
    if prefix.is_empty() {
        routes.layer(compression)
    } else {
        // Prometheus sends a bare `/` to the prefixed UI; `<prefix>/` is the
        // same page as `<prefix>` (axum's nest only matches the latter).
        let target = prefix.clone();
        let target2 = prefix.clone();
        Router::new()
            .route(
                "/",
                get(move || async move { axum::response::Redirect::to(&target) }),
            )
            .route(
                &format!("{prefix}/"),
                get(move || async move { axum::response::Redirect::to(&target2) }),
            )
            .nest(&prefix, routes)
            .layer(compression)
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

/// Compressed remote-write bodies above this are refused (413) rather than buffered.
const REMOTE_WRITE_BODY_LIMIT: usize = 64 << 20;
/// A remote-read request is a few queries; anything near this is not one.
const REMOTE_READ_BODY_LIMIT: usize = 4 << 20;

/// `POST /api/v1/read`: Prometheus remote read (samples or streamed XOR chunks).
async fn remote_read(
    axum::extract::State(state): axum::extract::State<AppState>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use crate::remote::read_handler::{self, ReadError};
    use axum::http::{HeaderValue, StatusCode, header};
    let Some(storage) = state.control.storage().cloned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    };
    let external = state
        .control
        .config()
        .borrow()
        .global
        .external_labels
        .clone();
    // Held until the answer is built; later reads wait for a free slot.
    let _slot = match &state.remote_read.gate {
        Some(gate) => gate.clone().acquire_owned().await.ok(),
        None => None,
    };
    let limits = state.remote_read.limits;
    let result = tokio::task::spawn_blocking(move || {
        let req = read_handler::decode(&body)?;
        read_handler::answer(&storage, &req, &external, limits)
    })
    .await;
    match result {
        Ok(Ok(answer)) => {
            let mut resp = (StatusCode::OK, answer.body).into_response();
            let h = resp.headers_mut();
            if answer.streamed {
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(read_handler::STREAMED_CONTENT_TYPE),
                );
            } else {
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
            }
            resp
        }
        Ok(Err(ReadError::BadRequest(msg))) => (StatusCode::BAD_REQUEST, msg).into_response(),
        Ok(Err(err)) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("remote read task failed: {err}"),
        )
            .into_response(),
    }
}

async fn remote_write(
    axum::extract::State(state): axum::extract::State<AppState>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use crate::remote::write_receiver::{self, WriteError};
    use axum::http::StatusCode;
    if !state.enable_remote_write_receiver {
        return (
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver",
        )
            .into_response();
    }
    let Some(storage) = state.control.storage().cloned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    };
    // Decoding and appending are CPU work under the commit lock: keep them
    // off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let req = write_receiver::decode(&body)?;
        write_receiver::write(&storage, req)
    })
    .await;
    match result {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(WriteError::BadRequest(msg))) => {
            tracing::warn!(err = %msg, "Rejected remote write request");
            (StatusCode::BAD_REQUEST, msg).into_response()
        }
        Ok(Err(err @ WriteError::Storage(_))) => {
            tracing::error!(err = %err, "Remote write could not be stored");
            (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("remote write task failed: {err}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retention_sizes() {
        assert_eq!(super::base2_bytes(512 << 20), "512MiB");
        assert_eq!(super::base2_bytes(10 << 30), "10GiB");
        assert_eq!(super::base2_bytes(1000), "1000B");
    }
}

#[derive(serde::Deserialize)]
struct LimitParam {
    limit: Option<String>,
}

/// Head statistics shaped like Prometheus's `/api/v1/status/tsdb`.
async fn tsdb_status(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Query(params): axum::extract::Query<LimitParam>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let error = |code: StatusCode, kind: &str, msg: String| {
        (
            code,
            axum::Json(serde_json::json!({"status": "error", "errorType": kind, "error": msg})),
        )
            .into_response()
    };
    let limit = match params.limit.as_deref() {
        None | Some("") => 10,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_data",
                    format!("limit must be a positive number, got {l:?}"),
                );
            }
        },
    };
    let Some(storage) = state.control.storage() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "TSDB not ready".into(),
        );
    };
    let stats = storage.head_stats();
    let card = storage.head_cardinality(limit);
    axum::Json(serde_json::json!({
        "status": "success",
        "data": {
            "headStats": {
                "numSeries": stats.num_series,
                "numLabelPairs": card.num_label_pairs,
                // The head keeps one in-memory sample vector per series.
                "chunkCount": stats.num_series,
                "minTime": stats.min_time.unwrap_or(i64::MAX),
                "maxTime": stats.max_time.unwrap_or(i64::MIN),
            },
            "seriesCountByMetricName": card.series_count_by_metric_name,
            "labelValueCountByLabelName": card.label_value_count_by_label_name,
            "memoryInBytesByLabelName": card.memory_in_bytes_by_label_name,
            "seriesCountByLabelValuePair": card.series_count_by_label_value_pair,
        }
    }))
    .into_response()
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
