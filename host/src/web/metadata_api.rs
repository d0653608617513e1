//! Metadata endpoints that need no PromQL: `/api/v1/series`, `labels`,
//! `label/<name>/values`, `metadata`, `targets` and `targets/metadata`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Value as Json, json};

use super::AppState;
use super::api::{
    ApiError, ApiResult, MAX_TIME_MS, MIN_TIME_MS, Params, TRUNCATED_WARNING, limit_param,
    parse_match_params, parse_selector, rfc3339_ms, success, success_with_warnings, time_param,
};
use crate::model::{Labels, Matcher};
use crate::scrape::manager::TargetView;
use crate::scrape::scrape_loop::Health;
use crate::storage::Storage;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/metadata", get(targets_metadata))
}

fn storage(state: &AppState) -> Result<Arc<Storage>, ApiError> {
    state
        .control
        .storage()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("TSDB not ready"))
}

fn labels_json(labels: &Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|l| (l.name.to_string(), Json::from(&*l.value)))
            .collect(),
    )
}

/// The distinct label sets of series matching any of `sets` with samples
/// in `[start, end]`, sorted; selection runs off the async workers.
async fn matching_series(
    storage: Arc<Storage>,
    sets: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
) -> Result<Vec<Labels>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut out = BTreeSet::new();
        for set in &sets {
            for s in storage
                .select(set, start, end)
                .map_err(|e| ApiError::internal(e.to_string()))?
            {
                out.insert(s.labels);
            }
        }
        Ok(out.into_iter().collect())
    })
    .await
    .map_err(|e| ApiError::internal(format!("series selection failed: {e}")))?
}

/// `start` and `end` with the "unbounded" defaults of the metadata endpoints.
fn time_range(params: &Params) -> Result<(i64, i64), ApiError> {
    Ok((
        time_param(params, "start", MIN_TIME_MS)?,
        time_param(params, "end", MAX_TIME_MS)?,
    ))
}

async fn series(State(state): State<AppState>, params: Params) -> ApiResult {
    let matches = params.all("match[]");
    if matches.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let limit = limit_param(&params)?;
    let (start, end) = time_range(&params)?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let sets = parse_match_params(&matches)?;
    let mut found = matching_series(storage(&state)?, sets, start, end).await?;
    let mut warnings = Vec::new();
    if limit > 0 && found.len() > limit {
        found.truncate(limit);
        warnings.push(TRUNCATED_WARNING.to_owned());
    }
    let data: Vec<Json> = found.iter().map(labels_json).collect();
    Ok(success_with_warnings(Json::from(data), &warnings))
}

fn truncated(mut items: Vec<String>, limit: usize) -> Result<axum::response::Response, ApiError> {
    let mut warnings = Vec::new();
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push(TRUNCATED_WARNING.to_owned());
    }
    Ok(success_with_warnings(Json::from(items), &warnings))
}

async fn labels(State(state): State<AppState>, params: Params) -> ApiResult {
    let limit = limit_param(&params)?;
    let (start, end) = time_range(&params)?;
    let sets = parse_match_params(&params.all("match[]"))?;
    let storage = storage(&state)?;
    let names = if sets.is_empty() {
        storage.label_names()
    } else {
        let series = matching_series(storage, sets, start, end).await?;
        let names: BTreeSet<String> = series
            .iter()
            .flat_map(|s| s.iter().map(|l| l.name.to_string()))
            .collect();
        names.into_iter().collect()
    };
    truncated(names, limit)
}

/// Prometheus 3's `U__` escaping of label names in URLs: `__` is `_`, and
/// `_<hex>_` is the code point; anything malformed is taken literally.
fn unescape_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_owned();
    };
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                None => return name.to_owned(),
                Some('_') if hex.is_empty() => {
                    out.push('_');
                    break;
                }
                Some('_') => {
                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) => out.push(ch),
                        None => return name.to_owned(),
                    }
                    break;
                }
                Some(h) if h.is_ascii_hexdigit() && hex.len() < 6 => hex.push(h),
                Some(_) => return name.to_owned(),
            }
        }
    }
    out
}

async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> ApiResult {
    let name = unescape_name(&name);
    // Prometheus 3 accepts any non-empty UTF-8 label name.
    if name.is_empty() {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let limit = limit_param(&params)?;
    let (start, end) = time_range(&params)?;
    let sets = parse_match_params(&params.all("match[]"))?;
    let storage = storage(&state)?;
    let values = if sets.is_empty() {
        storage.label_values(&name)
    } else {
        let series = matching_series(storage, sets, start, end).await?;
        let values: BTreeSet<String> = series
            .iter()
            .filter_map(|s| s.get(&name).filter(|v| !v.is_empty()).map(str::to_owned))
            .collect();
        values.into_iter().collect()
    };
    truncated(values, limit)
}

/// `limit` and `limit_per_metric` of the metadata endpoints: a number, and
/// negative means unlimited.
fn metadata_limit(params: &Params, name: &str) -> Result<Option<usize>, ApiError> {
    match params.get(name) {
        "" => Ok(None),
        s => s
            .parse::<i64>()
            .map(|n| usize::try_from(n).ok())
            .map_err(|_| ApiError::bad_data(format!("{name} must be a number"))),
    }
}

fn metadata_json(kind: &str, help: &str, unit: &str) -> Json {
    let kind = if kind.is_empty() { "unknown" } else { kind };
    json!({"type": kind, "help": help, "unit": unit})
}

fn active_targets(state: &AppState) -> Vec<TargetView> {
    state
        .control
        .scraper()
        .map(|s| s.targets())
        .unwrap_or_default()
}

async fn metadata(State(state): State<AppState>, params: Params) -> ApiResult {
    let limit = metadata_limit(&params, "limit")?;
    let per_metric = metadata_limit(&params, "limit_per_metric")?;
    let metric = params.get("metric");
    let mut families: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for t in active_targets(&state) {
        for (name, md) in &t.state.metadata {
            if !metric.is_empty() && name != metric {
                continue;
            }
            let entry = (md.kind.clone(), md.help.clone(), md.unit.clone());
            let list = families.entry(name.clone()).or_default();
            if !list.contains(&entry) {
                list.push(entry);
            }
        }
    }
    let mut data = serde_json::Map::new();
    for (name, mut list) in families {
        if limit.is_some_and(|l| data.len() >= l) {
            break;
        }
        if let Some(n) = per_metric.filter(|n| *n > 0) {
            list.truncate(n);
        }
        let items: Vec<Json> = list
            .iter()
            .map(|(k, h, u)| metadata_json(k, h, u))
            .collect();
        data.insert(name, Json::from(items));
    }
    Ok(success(Json::Object(data)))
}

/// Prometheus's `getGlobalURL`: a target on localhost is shown with the
/// external URL's host (and, when it is this server itself, its scheme).
fn global_url(scrape_url: &str, external_url: &str, listen_port: &str) -> String {
    let Some((scheme, rest)) = scrape_url.split_once("://") else {
        return scrape_url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p),
        _ => (authority, ""),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
        return scrape_url.to_owned();
    }
    let (ext_scheme, ext_rest) = external_url.split_once("://").unwrap_or(("http", ""));
    let ext_authority = &ext_rest[..ext_rest.find('/').unwrap_or(ext_rest.len())];
    if port == listen_port {
        format!("{ext_scheme}://{ext_authority}{path}")
    } else {
        let ext_host = ext_authority
            .rsplit_once(':')
            .map_or(ext_authority, |(h, _)| h);
        format!("{scheme}://{ext_host}:{port}{path}")
    }
}

fn duration_string(d: std::time::Duration) -> String {
    crate::config::PromDuration::from_millis(d.as_millis() as u64).to_string()
}

async fn targets(State(state): State<AppState>, params: Params) -> ApiResult {
    let which = params.get("state").to_lowercase();
    let show_active = matches!(which.as_str(), "" | "any" | "active");
    let show_dropped = matches!(which.as_str(), "" | "any" | "dropped");
    let pool_filter = params.get("scrapePool");
    let in_pool = |job: &str| pool_filter.is_empty() || job == pool_filter;
    let listen_port = state
        .info
        .flags
        .get("web.listen-address")
        .and_then(|a| a.rsplit_once(':'))
        .map_or("9090", |(_, p)| p)
        .to_owned();
    let mut active = Vec::new();
    if show_active {
        for t in active_targets(&state)
            .into_iter()
            .filter(|t| in_pool(&t.job))
        {
            let health = match t.state.health {
                Health::Up => "up",
                Health::Down => "down",
                Health::Unknown => "unknown",
            };
            active.push(json!({
                "discoveredLabels": t.target.discovered,
                "labels": labels_json(&t.target.labels),
                "scrapePool": t.job,
                "scrapeUrl": t.target.url,
                "globalUrl": global_url(&t.target.url, state.control.external_url(), &listen_port),
                "lastError": t.state.last_error,
                "lastScrape": rfc3339_ms(t.state.last_scrape_ms),
                "lastScrapeDuration": t.state.last_duration.as_secs_f64(),
                "health": health,
                "scrapeInterval": duration_string(t.target.interval),
                "scrapeTimeout": duration_string(t.target.timeout),
            }));
        }
    }
    let mut dropped = Vec::new();
    let mut counts = Json::Null;
    if show_dropped {
        let mut c = serde_json::Map::new();
        if let Some(scraper) = state.control.scraper() {
            for (job, list) in scraper.dropped_targets() {
                if !in_pool(&job) {
                    continue;
                }
                c.insert(job.clone(), Json::from(list.len()));
                for discovered in list {
                    dropped.push(json!({"discoveredLabels": discovered, "scrapePool": job}));
                }
            }
        }
        counts = Json::Object(c);
    }
    Ok(success(json!({
        "activeTargets": active,
        "droppedTargets": dropped,
        "droppedTargetCounts": counts,
    })))
}

async fn targets_metadata(State(state): State<AppState>, params: Params) -> ApiResult {
    let limit = metadata_limit(&params, "limit")?;
    let match_target = params.get("match_target");
    let sets = if match_target.is_empty() {
        Vec::new()
    } else {
        parse_selector(match_target).map_err(|e| ApiError::invalid_param("match_target", e))?
    };
    let metric = params.get("metric");
    let mut out = Vec::new();
    for t in active_targets(&state) {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let matches = sets.is_empty()
            || sets.iter().any(|set| {
                set.iter()
                    .all(|m| m.matches(t.target.labels.get(&m.name).unwrap_or("")))
            });
        if !matches {
            continue;
        }
        let target = labels_json(&t.target.labels);
        let mut names: Vec<&String> = t.state.metadata.keys().collect();
        names.sort();
        for name in names {
            let md = &t.state.metadata[name];
            let kind = if md.kind.is_empty() {
                "unknown"
            } else {
                &md.kind
            };
            if metric.is_empty() {
                out.push(json!({"target": target, "metric": name, "type": kind, "help": md.help, "unit": md.unit}));
            } else if name == metric {
                out.push(json!({"target": target, "type": kind, "help": md.help, "unit": md.unit}));
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::not_found("specified metadata not found"));
    }
    Ok(success(Json::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_label_names() {
        assert_eq!(unescape_name("job"), "job");
        assert_eq!(unescape_name("U__http_2e_method"), "http.method");
        assert_eq!(unescape_name("U__a__b"), "a_b");
        assert_eq!(unescape_name("U__x_1F525_"), "x\u{1F525}");
        assert_eq!(unescape_name("U__bad_zz_"), "U__bad_zz_");
        assert_eq!(unescape_name("U__open_2e"), "U__open_2e");
    }

    #[test]
    fn global_urls() {
        let ext = "http://prom.example:9090";
        assert_eq!(
            global_url("http://10.0.0.1:9100/metrics", ext, "9090"),
            "http://10.0.0.1:9100/metrics"
        );
        assert_eq!(
            global_url("http://localhost:9100/metrics", ext, "9090"),
            "http://prom.example:9100/metrics"
        );
        assert_eq!(
            global_url(
                "http://127.0.0.1:9090/metrics",
                "https://prom.example/ember",
                "9090"
            ),
            "https://prom.example/metrics"
        );
    }
}
