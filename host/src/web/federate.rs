//! `/federate`: the newest sample of every series matching `match[]`
//! within the lookback window, as text exposition 0.0.4, the way another
//! Prometheus scrapes it (usually with `honor_labels: true`).
//!
//! Prometheus's rules, kept here: stale markers are left out (the format
//! cannot carry them), every metric is `untyped`, families are grouped by
//! metric name, each sample carries its timestamp, and the server's
//! `external_labels` are appended to series that lack them, with an empty
//! `instance` label when no external label sets one (so the scraper's own
//! `instance` does not stick to federated series). A series whose newest
//! sample is a native histogram is left out too: the text format has no
//! way to write one (Prometheus federates histograms only in protobuf).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::api::{Params, now_ms, parse_selector};
use crate::model::Labels;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn federate(State(state): State<AppState>, params: Params) -> Response {
    let Some(storage) = state.control.storage().cloned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    };
    let mut sets = Vec::new();
    for m in params.all("match[]") {
        match parse_selector(m) {
            Ok(parsed) => sets.extend(parsed),
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        }
    }
    let maxt = now_ms();
    let mint = maxt - state.lookback_delta_ms;
    let external = state
        .control
        .config()
        .borrow()
        .global
        .external_labels
        .clone();
    let selected = tokio::task::spawn_blocking(move || {
        // One entry per series, whichever selectors matched it.
        let mut latest: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
        for set in &sets {
            for s in storage.select(set, mint, maxt)? {
                let newest_histogram = s.histograms.last().map(|h| h.t);
                if let Some(last) = s.samples.last()
                    && !crate::model::is_stale_nan(last.v)
                    && newest_histogram.is_none_or(|t| t < last.t)
                {
                    latest.insert(s.labels, (last.t, last.v));
                }
            }
        }
        Ok::<_, crate::storage::StorageError>(latest)
    })
    .await;
    let latest = match selected {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("federation failed: {e}\n"),
            )
                .into_response();
        }
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("federation task failed: {e}\n"),
            )
                .into_response();
        }
    };
    let body = render(latest, &external);
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    resp
}

/// Writes the samples grouped by metric name (a stable sort keeps the
/// label order within a family), external labels appended where missing.
fn render(latest: BTreeMap<Labels, (i64, f64)>, external: &BTreeMap<String, String>) -> String {
    let mut external = external.clone();
    external.entry("instance".to_owned()).or_default();
    let mut samples: Vec<(Labels, (i64, f64))> = latest
        .into_iter()
        .filter(|(l, _)| l.metric_name().is_some_and(|n| !n.is_empty()))
        .collect();
    samples.sort_by(|a, b| a.0.metric_name().cmp(&b.0.metric_name()));
    let mut out = String::new();
    let mut family: Option<String> = None;
    for (labels, (t, v)) in samples {
        let name = labels.metric_name().unwrap_or_default();
        if family.as_deref() != Some(name) {
            let _ = writeln!(out, "# TYPE {name} untyped");
            family = Some(name.to_owned());
        }
        out.push_str(name);
        let mut parts: Vec<String> = labels
            .iter()
            .filter(|l| &*l.name != crate::model::labels::METRIC_NAME && !l.value.is_empty())
            .map(|l| format!("{}=\"{}\"", l.name, escape(&l.value)))
            .collect();
        for (n, v) in &external {
            if labels.get(n).is_none_or(str::is_empty) {
                parts.push(format!("{n}=\"{}\"", escape(v)));
            }
        }
        if !parts.is_empty() {
            out.push('{');
            out.push_str(&parts.join(","));
            out.push('}');
        }
        let _ = writeln!(out, " {} {t}", go_float_g(v));
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it, which
/// is what the text exposition encoder uses: shortest digits, exponent
/// form from 1e+06 and below 1e-04, `+Inf`, `-Inf`, `NaN`.
pub fn go_float_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return format!("{v}");
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        for (v, s) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e21, "1e+21"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(go_float_g(v), s, "{v}");
        }
    }

    #[test]
    fn families_and_external_labels() {
        let mut latest = BTreeMap::new();
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied()).unwrap();
        latest.insert(
            l(&[("__name__", "b"), ("job", "x"), ("region", "eu")]),
            (2000, 2.0),
        );
        latest.insert(l(&[("__name__", "a"), ("instance", "h:1")]), (1000, 1.5));
        latest.insert(l(&[("__name__", "b"), ("job", "\"q\"")]), (2000, 3.0));
        let ext = BTreeMap::from([("region".to_owned(), "us".to_owned())]);
        assert_eq!(
            render(latest, &ext),
            "# TYPE a untyped\na{instance=\"h:1\",region=\"us\"} 1.5 1000\n\
             # TYPE b untyped\nb{job=\"\\\"q\\\"\",instance=\"\",region=\"us\"} 3 2000\n\
             b{job=\"x\",region=\"eu\",instance=\"\"} 2 2000\n"
        );
    }
}
