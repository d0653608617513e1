//! `/api/v1/status/{config,flags,runtimeinfo,buildinfo}`,
//! `/api/v1/alertmanagers`, `/api/v1/rules` and `/api/v1/alerts`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::json;

use super::AppState;
use super::api::{ApiError, ApiResult, Params, rfc3339_ms, success};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/runtimeinfo", get(runtime_info))
        .route("/api/v1/status/buildinfo", get(build_info))
        .route("/api/v1/status/plugins", get(plugins))
        .route("/api/v1/alertmanagers", get(alertmanagers))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
}

/// The configuration in force, with defaults filled in and secrets shown
/// as `<secret>`, as Prometheus shows it.
async fn config(State(state): State<AppState>) -> ApiResult {
    let config = state.control.config().borrow().clone();
    let yaml = serde_yaml::to_string(&*config)
        .map_err(|e| ApiError::internal(format!("cannot encode the configuration: {e}")))?;
    Ok(success(json!({ "yaml": yaml })))
}

/// Ember extension: the plugins in the plugin directory with version,
/// world, health and last error.
async fn plugins(State(state): State<AppState>) -> ApiResult {
    let list = state
        .control
        .plugins()
        .map(|p| p.status())
        .unwrap_or_default();
    Ok(success(json!(list)))
}

async fn flags(State(state): State<AppState>) -> ApiResult {
    Ok(success(json!(state.info.flags)))
}

async fn runtime_info(State(state): State<AppState>) -> ApiResult {
    let rt = tokio::runtime::Handle::current().metrics();
    let reload_ok = state.metrics.config_last_reload_successful.get() == 1;
    let last_config_ms = (state.metrics.config_last_reload_success_timestamp.get() * 1000.0) as i64;
    Ok(success(json!({
        "startTime": rfc3339_ms(state.info.start_ms),
        "CWD": state.info.cwd,
        "hostname": state.info.hostname,
        "serverTime": rfc3339_ms(super::api::now_ms()),
        "reloadConfigSuccess": reload_ok,
        "lastConfigTime": rfc3339_ms(last_config_ms),
        "corruptionCount": 0,
        // Go runtime fields, answered with their Tokio counterparts: live
        // tasks and worker threads. Ember has no garbage collector.
        "goroutineCount": rt.num_alive_tasks(),
        "GOMAXPROCS": rt.num_workers(),
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": state.info.storage_retention,
    })))
}

/// The Prometheus version whose HTTP API Ember answers like. Clients pick
/// features by `version` (Grafana enables newer autocomplete and query
/// endpoints from it), so it carries this, and Ember's own version is in
/// `emberVersion`.
pub const PROMETHEUS_COMPATIBLE_VERSION: &str = "3.0.0";

/// A semver `version` and no `features` key: Grafana reads the absence of
/// `features` as "this is Prometheus", not Mimir or Cortex.
async fn build_info() -> ApiResult {
    Ok(success(json!({
        "version": PROMETHEUS_COMPATIBLE_VERSION,
        "emberVersion": crate::telemetry::VERSION,
        "revision": crate::telemetry::REVISION,
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": crate::telemetry::RUSTC_VERSION,
    })))
}

/// No alert notifier runs yet, so no Alertmanager is active.
async fn alertmanagers() -> ApiResult {
    Ok(success(json!({
        "activeAlertmanagers": [],
        "droppedAlertmanagers": [],
    })))
}

/// Rule evaluation is not built yet: no groups, in Prometheus's shape.
async fn rules(params: Params) -> ApiResult {
    let kind = params.get("type").to_lowercase();
    if !matches!(kind.as_str(), "" | "alert" | "record") {
        return Err(ApiError::invalid_param(
            "type",
            format!("not supported value {kind:?}"),
        ));
    }
    Ok(success(json!({ "groups": [] })))
}

async fn alerts() -> ApiResult {
    Ok(success(json!({ "alerts": [] })))
}
