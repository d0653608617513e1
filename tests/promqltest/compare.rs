//! Comparing what the engine returned with what an `eval` expects.
//!
//! Every check returns `Err` with a short human-readable diff, one mismatch
//! per line, so a failure report says what was expected and what came back.

use std::collections::HashSet;

use ember::model::{FloatHistogram, Labels};
use ember::promql::{QueryError, QueryResult, Sample, Series, Value, format_value};

use super::parse::{Eval, EvalKind, Expected, ExpectedSeries, Millis, Point};

/// Relative tolerance for sample values, as in Prometheus's test runner.
const EPSILON: f64 = 1e-6;

/// Float equality for test expectations, with Prometheus's semantics:
/// a stale marker only equals a stale marker, NaN equals NaN, infinities
/// equal themselves, and otherwise the difference must be within `EPSILON`
/// relative to the magnitudes. Next to zero the allowed difference is
/// `EPSILON` times the smallest normal float, so `0` expects (almost) exact 0.
/// Native histograms compared as Prometheus's promqltest does: both
/// compacted, then schema, zero threshold and spans exactly, counts, sum
/// and buckets within the float tolerance. The counter reset hint is not
/// compared.
pub fn hist_eq(expected: &FloatHistogram, actual: &FloatHistogram) -> bool {
    let (mut e, mut a) = (expected.clone(), actual.clone());
    e.compact();
    a.compact();
    let floats =
        |x: &[f64], y: &[f64]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| float_eq(*p, *q));
    e.schema == a.schema
        && float_eq(e.count, a.count)
        && float_eq(e.sum, a.sum)
        && (!e.uses_custom_buckets() || e.custom_values == a.custom_values)
        && e.zero_threshold == a.zero_threshold
        && float_eq(e.zero_count, a.zero_count)
        && e.positive_spans == a.positive_spans
        && e.negative_spans == a.negative_spans
        && floats(&e.positive_buckets, &a.positive_buckets)
        && floats(&e.negative_buckets, &a.negative_buckets)
}

/// A sample's value as a script writes it.
fn fmt_sample(s: &Sample) -> String {
    match &s.h {
        Some(h) => h.to_string(),
        None => fmt_f(s.v),
    }
}

pub fn float_eq(expected: f64, actual: f64) -> bool {
    use ember::model::sample::is_stale_nan;
    if is_stale_nan(expected) || is_stale_nan(actual) {
        return is_stale_nan(expected) && is_stale_nan(actual);
    }
    if expected.is_nan() || actual.is_nan() {
        return expected.is_nan() && actual.is_nan();
    }
    if expected == actual {
        return true;
    }
    let diff = (expected - actual).abs();
    let sum = expected.abs() + actual.abs();
    if expected == 0.0 || actual == 0.0 || sum < f64::MIN_POSITIVE {
        return diff < EPSILON * f64::MIN_POSITIVE;
    }
    diff / sum.min(f64::MAX) < EPSILON
}

/// Label pairs from a script as a label set (empty values dropped).
pub fn to_labels(pairs: &[(String, String)]) -> Result<Labels, String> {
    Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .map_err(|e| format!("invalid expected labels: {e}"))
}

/// Checks the result of the query an `eval` describes: an instant query for
/// `eval instant`, a range query for `eval range`.
pub fn check(eval: &Eval, result: &Result<QueryResult, QueryError>) -> Result<(), String> {
    let r = match (result, &eval.fail) {
        (Err(e), Some(m)) => {
            let text = e.to_string();
            return if m.matches(&text) {
                Ok(())
            } else {
                Err(format!(
                    "expected an error matching {m}\n     got error: {text}"
                ))
            };
        }
        (Err(e), None) => return Err(format!("query failed: {e}")),
        (Ok(r), Some(m)) => {
            return Err(format!(
                "expected the query to fail ({m}), but it returned {}",
                summarize(&r.value)
            ));
        }
        (Ok(r), None) => r,
    };
    let mut diffs = check_annotations(eval, r);
    if let Err(d) = compare_value(eval, &r.value) {
        diffs.push(d);
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

/// Checks the range-query re-run of an instant `eval` (one step at
/// `at_ms`): the matrix's points at `at_ms` must match the instant
/// expectations. Annotations are not checked, since some legitimately
/// differ between instant and range queries (`sort` warns in range mode).
pub fn check_range_variant(
    eval: &Eval,
    at_ms: Millis,
    result: &Result<QueryResult, QueryError>,
) -> Result<(), String> {
    let r = result
        .as_ref()
        .map_err(|e| format!("range query failed: {e}"))?;
    let Value::Matrix(series) = &r.value else {
        return Err(format!(
            "a range query must return a matrix, got {}",
            summarize(&r.value)
        ));
    };
    if eval.ordered {
        // Range results are always sorted by labels; order is not comparable.
        return Ok(());
    }
    check_sorted(series)?;
    let samples: Vec<Sample> = series
        .iter()
        .filter_map(|s| {
            let float = s.points.iter().find(|p| p.t == at_ms).map(|p| Sample {
                labels: s.labels.clone(),
                t: p.t,
                v: p.v,
                h: None,
            });
            float.or_else(|| {
                s.histograms.iter().find(|p| p.t == at_ms).map(|p| Sample {
                    labels: s.labels.clone(),
                    t: p.t,
                    v: 0.0,
                    h: Some(p.h.clone()),
                })
            })
        })
        .collect();
    match &eval.expected {
        Expected::Scalar(want) => match samples.first() {
            Some(s) if s.h.is_none() && float_eq(*want, s.v) => Ok(()),
            Some(s) => Err(format!(
                "expected scalar {}, got {}",
                fmt_f(*want),
                fmt_f(s.v)
            )),
            None => Err(format!(
                "expected scalar {}, got no point at {}",
                fmt_f(*want),
                fmt_t(at_ms)
            )),
        },
        Expected::Series(expected) => compare_vector(expected, &samples, false),
        Expected::String(_) => Err("a string result has no range variant".into()),
    }
}

fn check_annotations(eval: &Eval, r: &QueryResult) -> Vec<String> {
    let mut diffs = Vec::new();
    for (kind, expects, no, actual) in [
        ("warn", &eval.warn, eval.no_warn, &r.warnings),
        ("info", &eval.info, eval.no_info, &r.infos),
    ] {
        if !expects.is_empty() {
            if actual.is_empty() {
                diffs.push(format!("expected {kind} annotations, got none"));
                continue;
            }
            for e in expects
                .iter()
                .filter(|e| !actual.iter().any(|a| e.matches(a)))
            {
                diffs.push(format!("no {kind} annotation matches {e}; got {actual:?}"));
            }
            for a in actual
                .iter()
                .filter(|a| !expects.iter().any(|e| e.matches(a)))
            {
                diffs.push(format!("unexpected {kind} annotation: {a}"));
            }
        }
        if no {
            for a in actual {
                diffs.push(format!(
                    "unexpected {kind} annotation (expect no_{kind}): {a}"
                ));
            }
        }
    }
    diffs
}

fn compare_value(eval: &Eval, value: &Value) -> Result<(), String> {
    match (&eval.expected, value) {
        (Expected::String(want), Value::String { s, .. }) => {
            if want == s {
                Ok(())
            } else {
                Err(format!("expected string {want:?}, got {s:?}"))
            }
        }
        (Expected::Scalar(want), Value::Scalar { v, .. }) => {
            if float_eq(*want, *v) {
                Ok(())
            } else {
                Err(format!(
                    "expected scalar {}, got {}",
                    fmt_f(*want),
                    fmt_f(*v)
                ))
            }
        }
        (Expected::Series(expected), Value::Vector(samples)) => {
            compare_vector(expected, samples, eval.ordered)
        }
        (Expected::Series(expected), Value::Matrix(series)) => {
            if eval.ordered {
                return Err("expect ordered, but the query returned a matrix".into());
            }
            let range = match eval.kind {
                EvalKind::Range {
                    start_ms,
                    end_ms,
                    step_ms,
                } => Some((start_ms, end_ms, step_ms)),
                EvalKind::Instant { .. } => {
                    eval.range_vector.map(|r| (r.start_ms, r.end_ms, r.step_ms))
                }
            };
            compare_matrix(expected, series, range)
        }
        (want, got) => {
            let want = match want {
                Expected::String(s) => format!("string {s:?}"),
                Expected::Scalar(v) => format!("scalar {}", fmt_f(*v)),
                Expected::Series(_) => "a vector or matrix".to_string(),
            };
            Err(format!("expected {want}, got {}", summarize(got)))
        }
    }
}

/// Matches result series to expected series by their full label sets.
/// Returns, per expected series, its labels; and reports invalid labels.
fn expected_labels(expected: &[ExpectedSeries]) -> Result<Vec<Labels>, String> {
    expected.iter().map(|e| to_labels(&e.labels)).collect()
}

fn compare_vector(
    expected: &[ExpectedSeries],
    samples: &[Sample],
    ordered: bool,
) -> Result<(), String> {
    let want = expected_labels(expected)?;
    let mut diffs = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    let mut returned: HashSet<&Labels> = HashSet::new();
    for (pos, s) in samples.iter().enumerate() {
        if !returned.insert(&s.labels) {
            diffs.push(format!("series returned twice: {}", s.labels));
            continue;
        }
        let Some(i) = want.iter().position(|l| *l == s.labels) else {
            diffs.push(format!("unexpected: {} {}", s.labels, fmt_sample(s)));
            continue;
        };
        seen.insert(i);
        if ordered && i != pos {
            diffs.push(format!(
                "{}: expected at position {}, got at {}",
                s.labels,
                i + 1,
                pos + 1
            ));
        }
        let ok = match (expected[i].points.first(), &s.h) {
            (Some(Point::Float(v)), None) => float_eq(*v, s.v),
            (Some(Point::Histogram(h)), Some(got)) => hist_eq(h, got),
            _ => false,
        };
        if !ok {
            let want = match expected[i].points.first() {
                Some(Point::Float(v)) => fmt_f(*v),
                Some(Point::Histogram(h)) => h.to_string(),
                Some(Point::Missing) | None => "no value".to_string(),
            };
            diffs.push(format!(
                "{}: expected {want}, got {}",
                s.labels,
                fmt_sample(s)
            ));
        }
    }
    for (i, e) in expected.iter().enumerate() {
        if !seen.contains(&i) {
            diffs.push(format!(
                "missing (line {}): {} {}",
                e.line,
                want[i],
                fmt_points_expected(&e.points)
            ));
        }
    }
    finish(diffs)
}

fn compare_matrix(
    expected: &[ExpectedSeries],
    series: &[Series],
    range: Option<(Millis, Millis, Millis)>,
) -> Result<(), String> {
    check_sorted(series)?;
    let want = expected_labels(expected)?;
    let mut diffs = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    for s in series {
        let got = fmt_series_points(s);
        let Some(i) = want.iter().position(|l| *l == s.labels) else {
            diffs.push(format!("unexpected: {} {got}", s.labels));
            continue;
        };
        if !seen.insert(i) {
            diffs.push(format!("series returned twice: {}", s.labels));
            continue;
        }
        let Some((start, end, step)) = range else {
            diffs.push(format!(
                "{}: the query returned a range vector; expecting one needs `expect range vector`",
                s.labels
            ));
            continue;
        };
        let mut want_points: Vec<(Millis, f64)> = Vec::new();
        let mut want_hists: Vec<(Millis, &FloatHistogram)> = Vec::new();
        let mut problem = None;
        for (k, p) in expected[i].points.iter().enumerate() {
            let t = start.saturating_add(step.saturating_mul(k as i64));
            if t > end {
                problem = Some(format!(
                    "{}: {} points expected, more than the range from {} to {} step {} has",
                    s.labels,
                    expected[i].points.len(),
                    fmt_t(start),
                    fmt_t(end),
                    fmt_t(step)
                ));
                break;
            }
            match p {
                Point::Float(v) => want_points.push((t, *v)),
                Point::Missing => {}
                Point::Histogram(h) => want_hists.push((t, h)),
            }
        }
        if let Some(p) = problem {
            diffs.push(p);
            continue;
        }
        let same = want_points.len() == s.points.len()
            && want_points
                .iter()
                .zip(&s.points)
                .all(|((wt, wv), p)| *wt == p.t && float_eq(*wv, p.v))
            && want_hists.len() == s.histograms.len()
            && want_hists
                .iter()
                .zip(&s.histograms)
                .all(|((wt, wh), p)| *wt == p.t && hist_eq(wh, &p.h));
        if !same {
            diffs.push(format!(
                "{}:\n     expected {}\n          got {got}",
                s.labels,
                fmt_points_expected(&expected[i].points)
            ));
        }
    }
    for (i, e) in expected.iter().enumerate() {
        if !seen.contains(&i) {
            diffs.push(format!(
                "missing (line {}): {} {}",
                e.line,
                want[i],
                fmt_points_expected(&e.points)
            ));
        }
    }
    finish(diffs)
}

fn check_sorted(series: &[Series]) -> Result<(), String> {
    match series.windows(2).find(|w| w[0].labels > w[1].labels) {
        Some(w) => Err(format!(
            "matrix is not sorted by labels: {} comes before {}",
            w[0].labels, w[1].labels
        )),
        None => Ok(()),
    }
}

fn finish(diffs: Vec<String>) -> Result<(), String> {
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

/// A short description of a result, for "expected X, got Y" messages.
pub fn summarize(v: &Value) -> String {
    const MAX: usize = 5;
    match v {
        Value::Scalar { v, .. } => format!("scalar {}", fmt_f(*v)),
        Value::String { s, .. } => format!("string {s:?}"),
        Value::Vector(samples) => {
            let mut parts: Vec<String> = samples
                .iter()
                .take(MAX)
                .map(|s| format!("{} {}", s.labels, fmt_sample(s)))
                .collect();
            if samples.len() > MAX {
                parts.push(format!("... {} more", samples.len() - MAX));
            }
            format!("vector [{}]", parts.join(", "))
        }
        Value::Matrix(series) => {
            let mut parts: Vec<String> = series
                .iter()
                .take(MAX)
                .map(|s| format!("{} {}", s.labels, fmt_series_points(s)))
                .collect();
            if series.len() > MAX {
                parts.push(format!("... {} more", series.len() - MAX));
            }
            format!("matrix [{}]", parts.join(", "))
        }
    }
}

fn fmt_f(v: f64) -> String {
    if ember::model::sample::is_stale_nan(v) {
        "stale".into()
    } else {
        format_value(v)
    }
}

/// A time as a script would write it: `90s`, `1500ms`.
fn fmt_t(t: Millis) -> String {
    if t % 1000 == 0 {
        format!("{}s", t / 1000)
    } else {
        format!("{t}ms")
    }
}

/// A result series' floats and histograms, in time order.
fn fmt_series_points(s: &Series) -> String {
    let mut parts: Vec<(Millis, String)> = s
        .points
        .iter()
        .map(|p| (p.t, format!("{}@{}", fmt_f(p.v), fmt_t(p.t))))
        .chain(
            s.histograms
                .iter()
                .map(|p| (p.t, format!("{}@{}", p.h, fmt_t(p.t)))),
        )
        .collect();
    parts.sort_by_key(|p| p.0);
    let parts: Vec<String> = parts.into_iter().map(|p| p.1).collect();
    format!("[{}]", parts.join(" "))
}

fn fmt_points_expected(points: &[Point]) -> String {
    let parts: Vec<String> = points
        .iter()
        .map(|p| match p {
            Point::Missing => "_".to_string(),
            Point::Float(v) => fmt_f(*v),
            Point::Histogram(h) => h.to_string(),
        })
        .collect();
    parts.join(" ")
}

// The harness-less runner (tests/promqltest.rs) compiles these too but never
// runs them; `cargo test -p ember --test promqltest_units` does.
#[cfg(test)]
#[allow(dead_code, unused_imports)]
mod tests {
    use super::super::parse::{Item, parse_script};
    use super::*;
    use ember::promql::{Point as VPoint, QueryStats};

    fn eval(script: &str) -> Eval {
        match parse_script(script).into_iter().next() {
            Some(Item::Eval(e)) => *e,
            other => panic!("{other:?}"),
        }
    }

    fn ok(value: Value) -> Result<QueryResult, QueryError> {
        Ok(QueryResult {
            value,
            warnings: Vec::new(),
            infos: Vec::new(),
            stats: QueryStats::default(),
        })
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).unwrap()
    }

    fn sample(pairs: &[(&str, &str)], v: f64) -> Sample {
        Sample {
            labels: labels(pairs),
            t: 0,
            v,
            h: None,
        }
    }

    #[test]
    fn floats() {
        assert!(float_eq(1.0, 1.0 + 1e-9));
        assert!(!float_eq(1.0, 1.001));
        assert!(float_eq(f64::NAN, f64::NAN));
        assert!(!float_eq(f64::NAN, 1.0));
        assert!(float_eq(f64::INFINITY, f64::INFINITY));
        assert!(!float_eq(f64::INFINITY, f64::NEG_INFINITY));
        assert!(float_eq(0.0, -0.0));
        assert!(!float_eq(0.0, 1e-12));
        let stale = ember::model::sample::stale_nan();
        assert!(float_eq(stale, stale));
        assert!(!float_eq(stale, f64::NAN));
        assert!(!float_eq(f64::NAN, stale));
    }

    #[test]
    fn vectors_unordered_by_labels() {
        let e = eval("eval instant at 1m x\n  x{a=\"1\"} 1\n  x{a=\"2\"} 2\n");
        let got = ok(Value::Vector(vec![
            sample(&[("__name__", "x"), ("a", "2")], 2.0),
            sample(&[("__name__", "x"), ("a", "1")], 1.0000000001),
        ]));
        assert_eq!(check(&e, &got), Ok(()));
        let bad = ok(Value::Vector(vec![sample(
            &[("__name__", "x"), ("a", "1")],
            3.0,
        )]));
        let diff = check(&e, &bad).unwrap_err();
        assert!(diff.contains("expected 1, got 3"), "{diff}");
        assert!(diff.contains("missing (line 3): x{a=\"2\"} 2"), "{diff}");
    }

    #[test]
    fn ordered_vectors() {
        let e =
            eval("eval instant at 1m sort(x)\n  expect ordered\n  {a=\"1\"} 1\n  {a=\"2\"} 2\n");
        let wrong = ok(Value::Vector(vec![
            sample(&[("a", "2")], 2.0),
            sample(&[("a", "1")], 1.0),
        ]));
        assert!(check(&e, &wrong).unwrap_err().contains("position"));
    }

    #[test]
    fn scalars_and_strings() {
        let e = eval("eval instant at 1m 1+1\n  2\n");
        assert_eq!(check(&e, &ok(Value::Scalar { t: 60_000, v: 2.0 })), Ok(()));
        assert!(check(&e, &ok(Value::Vector(vec![]))).is_err());
        let e = eval("eval instant at 1m \"a\"\n  expect string \"a\"\n");
        assert_eq!(
            check(
                &e,
                &ok(Value::String {
                    t: 0,
                    s: "a".into()
                })
            ),
            Ok(())
        );
        assert!(
            check(
                &e,
                &ok(Value::String {
                    t: 0,
                    s: "b".into()
                })
            )
            .is_err()
        );
    }

    #[test]
    fn range_results_compare_points_and_timestamps() {
        let e = eval("eval range from 0 to 2m step 1m x\n  x 1 _ 3\n");
        let series = |pts: &[(i64, f64)]| {
            ok(Value::Matrix(vec![Series {
                histograms: Vec::new(),
                labels: labels(&[("__name__", "x")]),
                points: pts.iter().map(|&(t, v)| VPoint { t, v }).collect(),
            }]))
        };
        assert_eq!(check(&e, &series(&[(0, 1.0), (120_000, 3.0)])), Ok(()));
        assert!(check(&e, &series(&[(0, 1.0), (60_000, 3.0)])).is_err());
        assert!(check(&e, &series(&[(0, 1.0), (60_000, 2.0), (120_000, 3.0)])).is_err());
    }

    #[test]
    fn failures_and_annotations() {
        let e = eval("eval instant at 1m x\n  expect fail msg: boom\n");
        assert_eq!(
            check(&e, &Err(QueryError::Execution("boom".into()))),
            Ok(())
        );
        assert!(check(&e, &Err(QueryError::Execution("bang".into()))).is_err());
        assert!(check(&e, &ok(Value::Vector(vec![]))).is_err());

        let e = eval("eval instant at 1m x\n  expect warn regex: something\n");
        let mut r = ok(Value::Vector(vec![])).unwrap();
        assert!(check(&e, &Ok(r.clone())).is_err());
        r.warnings
            .push("PromQL warning: something odd (1:1)".into());
        assert_eq!(check(&e, &Ok(r.clone())), Ok(()));
        r.warnings.push("PromQL warning: other".into());
        assert!(check(&e, &Ok(r.clone())).is_err());

        // Without warn/info expectations, annotations are ignored.
        let e = eval("eval instant at 1m x\n");
        assert_eq!(check(&e, &Ok(r)), Ok(()));
    }

    #[test]
    fn range_variant_takes_the_point_at_the_eval_time() {
        let e = eval("eval instant at 1m x\n  x 5\n");
        let r = ok(Value::Matrix(vec![Series {
            histograms: Vec::new(),
            labels: labels(&[("__name__", "x")]),
            points: vec![VPoint { t: 60_000, v: 5.0 }],
        }]));
        assert_eq!(check_range_variant(&e, 60_000, &r), Ok(()));
        assert!(check_range_variant(&e, 0, &r).is_err());
        assert!(check_range_variant(&e, 60_000, &ok(Value::Vector(vec![]))).is_err());
    }
}
