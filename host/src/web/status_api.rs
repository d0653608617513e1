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

/// The Alertmanagers alerts go to, and those relabeling dropped.
async fn alertmanagers(State(state): State<AppState>) -> ApiResult {
    let view = state
        .control
        .notifier()
        .map(|n| n.alertmanagers())
        .unwrap_or(crate::alerting::notifier::AlertmanagerView {
            active: Vec::new(),
            dropped: Vec::new(),
        });
    let urls = |v: &[String]| v.iter().map(|u| json!({ "url": u })).collect::<Vec<_>>();
    Ok(success(json!({
        "activeAlertmanagers": urls(&view.active),
        "droppedAlertmanagers": urls(&view.dropped),
    })))
}

/// Rule groups with their rules' state, in Prometheus's shape. Filters:
/// `type` (alert|record), `rule_name[]`, `rule_group[]`, `file[]`,
/// `exclude_alerts`. Groups left without rules are omitted, as there.
async fn rules(State(state): State<AppState>, params: Params) -> ApiResult {
    use crate::rules::file::RuleKind;
    let kind = params.get("type").to_lowercase();
    let want = match kind.as_str() {
        "" => None,
        "alert" => Some(RuleKind::Alerting),
        "record" => Some(RuleKind::Recording),
        _ => {
            return Err(ApiError::invalid_param(
                "type",
                format!("not supported value {kind:?}"),
            ));
        }
    };
    let exclude_alerts = match params.get("exclude_alerts") {
        "" | "false" => false,
        "true" => true,
        other => {
            return Err(ApiError::invalid_param(
                "exclude_alerts",
                format!("parsing {other:?}: invalid syntax"),
            ));
        }
    };
    let names = params.all("rule_name[]");
    let group_names = params.all("rule_group[]");
    let files = params.all("file[]");
    let Some(manager) = state.control.rules() else {
        return Ok(success(json!({ "groups": [] })));
    };
    let mut groups = Vec::new();
    for g in manager.groups() {
        if !group_names.is_empty() && !group_names.contains(&g.def.name.as_str()) {
            continue;
        }
        if !files.is_empty() && !files.contains(&g.file.as_str()) {
            continue;
        }
        let mut rules = Vec::new();
        for r in &g.rules {
            if want.is_some_and(|k| k != r.def.kind) {
                continue;
            }
            if !names.is_empty() && !names.contains(&r.def.name.as_str()) {
                continue;
            }
            rules.push(rule_json(r, exclude_alerts));
        }
        if rules.is_empty() {
            continue;
        }
        let st = g.state.lock();
        groups.push(json!({
            "name": g.def.name,
            "file": g.file,
            "rules": rules,
            "interval": secs_json(g.interval_ms),
            "limit": g.def.limit,
            "evaluationTime": st.last_duration.as_secs_f64(),
            "lastEvaluation": rfc3339_ms(st.last_eval_ms.unwrap_or(0)),
        }));
    }
    Ok(success(json!({ "groups": groups })))
}

/// Seconds as Go's JSON writes a float64: whole numbers without a fraction.
fn secs_json(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// The canonical text of a rule's expression, as Prometheus prints it.
fn query_text(expr: &str) -> String {
    promql_parser::parser::parse(expr)
        .map(|e| e.to_string())
        .unwrap_or_else(|_| expr.to_owned())
}

fn rule_json(r: &crate::rules::group::Rule, exclude_alerts: bool) -> serde_json::Value {
    use crate::rules::file::RuleKind;
    use crate::rules::group::AlertState;
    let st = r.state.lock();
    let mut out = match r.def.kind {
        RuleKind::Recording => {
            let mut v = json!({
                "name": r.def.name,
                "query": query_text(&r.def.expr),
            });
            if !r.labels.is_empty() {
                v["labels"] = json!(r.labels);
            }
            v
        }
        RuleKind::Alerting => {
            let mut alerts: Vec<&crate::rules::group::Alert> = st
                .alerts
                .values()
                .filter(|a| a.state != AlertState::Inactive)
                .collect();
            alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
            let state = alerts
                .iter()
                .map(|a| a.state)
                .max_by_key(|s| match s {
                    AlertState::Inactive => 0,
                    AlertState::Pending => 1,
                    AlertState::Firing => 2,
                })
                .unwrap_or(AlertState::Inactive);
            let mut v = json!({
                "state": state.as_str(),
                "name": r.def.name,
                "query": query_text(&r.def.expr),
                "duration": secs_json(r.def.for_ms as i64),
                "keepFiringFor": secs_json(r.def.keep_firing_for_ms as i64),
                "labels": r.labels,
                "annotations": r.def.annotations,
            });
            if !exclude_alerts {
                v["alerts"] = json!(alerts.iter().map(|a| alert_json(a)).collect::<Vec<_>>());
            }
            v
        }
    };
    out["health"] = json!(st.health.as_str());
    if let Some(e) = &st.last_error {
        out["lastError"] = json!(e);
    }
    out["evaluationTime"] = json!(st.eval_duration.as_secs_f64());
    out["lastEvaluation"] = json!(rfc3339_ms(st.last_eval_ms.unwrap_or(0)));
    out["type"] = json!(match r.def.kind {
        RuleKind::Recording => "recording",
        RuleKind::Alerting => "alerting",
    });
    out
}

fn alert_json(a: &crate::rules::group::Alert) -> serde_json::Value {
    let mut v = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339_ms(a.active_at_ms),
        "value": go_exp_float(a.value),
    });
    if let Some(k) = a.keep_firing_since_ms {
        v["keepFiringSince"] = json!(rfc3339_ms(k));
    }
    v
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, the alert `value` format.
fn go_exp_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Every pending and firing alert of every alerting rule.
async fn alerts(State(state): State<AppState>) -> ApiResult {
    use crate::rules::group::AlertState;
    let mut out = Vec::new();
    if let Some(manager) = state.control.rules() {
        for g in manager.groups() {
            for r in &g.rules {
                let st = r.state.lock();
                let mut alerts: Vec<_> = st
                    .alerts
                    .values()
                    .filter(|a| a.state != AlertState::Inactive)
                    .collect();
                alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
                out.extend(alerts.into_iter().map(alert_json));
            }
        }
    }
    Ok(success(json!({ "alerts": out })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn alert_values_in_go_exponent_form() {
        assert_eq!(super::go_exp_float(5.0), "5e+00");
        assert_eq!(super::go_exp_float(123456.0), "1.23456e+05");
        assert_eq!(super::go_exp_float(0.01), "1e-02");
    }
}
