//! Functions over instant vectors and scalars: math, clamping, dates,
//! label manipulation, sorting, `absent`, `scalar`/`vector` and the
//! classic-histogram functions.

use std::collections::HashMap;

use super::{Annotations, EvalError, Grid, SeriesData, drop_metric_name, with_label};
use crate::model::Labels;
use crate::promql::value::Point;
use crate::telemetry::time::utc_parts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstantFunc {
    Abs,
    Ceil,
    Floor,
    Exp,
    Sqrt,
    Ln,
    Log2,
    Log10,
    Sgn,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Deg,
    Rad,
    Neg,
    Round,
    Clamp,
    ClampMin,
    ClampMax,
    Timestamp,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Hour,
    Minute,
    Month,
    Year,
    LabelReplace,
    LabelJoin,
    Sort,
    SortDesc,
    SortByLabel,
    SortByLabelDesc,
    Scalar,
    Vector,
    HistogramQuantile,
    Time,
    Pi,
    /// `histogram_count` and friends read native histograms only, which
    /// Ember does not store yet: over float series they return nothing,
    /// as in Prometheus.
    NativeHistogramOnly,
}

impl InstantFunc {
    pub fn from_name(name: &str) -> Option<InstantFunc> {
        use InstantFunc::*;
        Some(match name {
            "abs" => Abs,
            "ceil" => Ceil,
            "floor" => Floor,
            "exp" => Exp,
            "sqrt" => Sqrt,
            "ln" => Ln,
            "log2" => Log2,
            "log10" => Log10,
            "sgn" => Sgn,
            "sin" => Sin,
            "cos" => Cos,
            "tan" => Tan,
            "asin" => Asin,
            "acos" => Acos,
            "atan" => Atan,
            "sinh" => Sinh,
            "cosh" => Cosh,
            "tanh" => Tanh,
            "asinh" => Asinh,
            "acosh" => Acosh,
            "atanh" => Atanh,
            "deg" => Deg,
            "rad" => Rad,
            "round" => Round,
            "clamp" => Clamp,
            "clamp_min" => ClampMin,
            "clamp_max" => ClampMax,
            "timestamp" => Timestamp,
            "day_of_month" => DayOfMonth,
            "day_of_week" => DayOfWeek,
            "day_of_year" => DayOfYear,
            "days_in_month" => DaysInMonth,
            "hour" => Hour,
            "minute" => Minute,
            "month" => Month,
            "year" => Year,
            "label_replace" => LabelReplace,
            "label_join" => LabelJoin,
            "sort" => Sort,
            "sort_desc" => SortDesc,
            "sort_by_label" => SortByLabel,
            "sort_by_label_desc" => SortByLabelDesc,
            "scalar" => Scalar,
            "vector" => Vector,
            "histogram_quantile" => HistogramQuantile,
            "time" => Time,
            "pi" => Pi,
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_fraction"
            | "histogram_stddev" | "histogram_stdvar" => NativeHistogramOnly,
            _ => return None,
        })
    }

    /// Whether the result keeps the input's metric name.
    pub fn keeps_name(self) -> bool {
        use InstantFunc::*;
        matches!(
            self,
            LabelReplace | LabelJoin | Sort | SortDesc | SortByLabel | SortByLabelDesc
        )
    }

    /// Date functions default to `vector(time())` without an argument.
    pub fn is_date(self) -> bool {
        use InstantFunc::*;
        matches!(
            self,
            DayOfMonth | DayOfWeek | DayOfYear | DaysInMonth | Hour | Minute | Month | Year
        )
    }

    fn simple(self, v: f64) -> Option<f64> {
        use InstantFunc::*;
        Some(match self {
            Abs => v.abs(),
            Ceil => v.ceil(),
            Floor => v.floor(),
            Exp => v.exp(),
            Sqrt => v.sqrt(),
            Ln => v.ln(),
            Log2 => v.log2(),
            Log10 => v.log10(),
            Sgn => {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    v
                }
            }
            Sin => v.sin(),
            Cos => v.cos(),
            Tan => v.tan(),
            Asin => v.asin(),
            Acos => v.acos(),
            Atan => v.atan(),
            Sinh => v.sinh(),
            Cosh => v.cosh(),
            Tanh => v.tanh(),
            Asinh => v.asinh(),
            Acosh => v.acosh(),
            Atanh => v.atanh(),
            Deg => v.to_degrees(),
            Rad => v.to_radians(),
            Neg => -v,
            DayOfMonth | DayOfWeek | DayOfYear | DaysInMonth | Hour | Minute | Month | Year => {
                date_part(self, v)?
            }
            _ => return None,
        })
    }
}

/// An evaluated function argument.
pub enum Arg {
    Vector(Vec<SeriesData>),
    /// One value per grid step.
    Scalar(Vec<f64>),
    String(String),
}

impl Arg {
    fn scalar(&self) -> &[f64] {
        match self {
            Arg::Scalar(v) => v,
            _ => &[],
        }
    }

    fn string(&self) -> &str {
        match self {
            Arg::String(s) => s,
            _ => "",
        }
    }
}

fn date_part(f: InstantFunc, secs: f64) -> Option<f64> {
    use InstantFunc::*;
    if !secs.is_finite() {
        return Some(f64::NAN);
    }
    let t = secs.floor() as i64;
    let (y, m, d, hh, mm, _) = utc_parts(t);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = |m: i64| match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if leap => 29,
        _ => 28,
    };
    Some(match f {
        DayOfMonth => d as f64,
        DayOfWeek => (t.div_euclid(86_400) + 4).rem_euclid(7) as f64,
        DayOfYear => ((1..m).map(days_in).sum::<i64>() + d) as f64,
        DaysInMonth => days_in(m) as f64,
        Hour => hh as f64,
        Minute => mm as f64,
        Month => m as f64,
        Year => y as f64,
        _ => return None,
    })
}

/// Maps every point of every series through `f`.
fn map_points(
    input: Vec<SeriesData>,
    keep_name: bool,
    mut f: impl FnMut(usize, f64) -> Option<f64>,
    grid: Grid,
) -> Vec<SeriesData> {
    input
        .into_iter()
        .map(|mut s| {
            s.points = s
                .points
                .iter()
                .filter_map(|p| {
                    let i = grid.index(p.t).unwrap_or(0);
                    f(i, p.v).map(|v| Point { t: p.t, v })
                })
                .collect();
            if !keep_name {
                s.drop_name = true;
            }
            s
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Evaluates an instant-vector or scalar function.
pub fn eval(
    f: InstantFunc,
    grid: Grid,
    mut args: Vec<Arg>,
    ann: &mut Annotations,
) -> Result<Vec<SeriesData>, EvalError> {
    use InstantFunc::*;
    let take_vector = |args: &mut Vec<Arg>, i: usize| -> Vec<SeriesData> {
        match args.get_mut(i) {
            Some(Arg::Vector(v)) => std::mem::take(v),
            _ => Vec::new(),
        }
    };
    Ok(match f {
        NativeHistogramOnly => Vec::new(),
        Time => vec![scalar_series(grid, |t| t as f64 / 1000.0)],
        Pi => vec![scalar_series(grid, |_| std::f64::consts::PI)],
        Vector => {
            let vals = args
                .first()
                .map(|a| a.scalar().to_vec())
                .unwrap_or_default();
            vec![SeriesData::new(
                Labels::default(),
                grid.times()
                    .zip(vals)
                    .map(|(t, v)| Point { t, v })
                    .collect(),
            )]
        }
        Scalar => {
            let input = take_vector(&mut args, 0);
            let mut per_step: Vec<(usize, f64)> = vec![(0, f64::NAN); grid.len()];
            for s in &input {
                for p in &s.points {
                    if let Some(i) = grid.index(p.t) {
                        per_step[i].0 += 1;
                        per_step[i].1 = p.v;
                    }
                }
            }
            vec![SeriesData::new(
                Labels::default(),
                grid.times()
                    .zip(per_step)
                    .map(|(t, (n, v))| Point {
                        t,
                        v: if n == 1 { v } else { f64::NAN },
                    })
                    .collect(),
            )]
        }
        Round => {
            let input = take_vector(&mut args, 0);
            let to = args.get(1).map(|a| a.scalar().to_vec());
            map_points(
                input,
                false,
                |i, v| {
                    let to = to.as_ref().and_then(|t| t.get(i).copied()).unwrap_or(1.0);
                    // Rounds half up, towards +Inf, as Prometheus does.
                    let inv = 1.0 / to;
                    Some((v * inv + 0.5).floor() / inv)
                },
                grid,
            )
        }
        Clamp | ClampMin | ClampMax => {
            let input = take_vector(&mut args, 0);
            let a = args.get(1).map(|a| a.scalar().to_vec()).unwrap_or_default();
            let b = args.get(2).map(|a| a.scalar().to_vec()).unwrap_or_default();
            map_points(
                input,
                false,
                |i, v| {
                    let x = a.get(i).copied().unwrap_or(f64::NAN);
                    match f {
                        ClampMin => Some(if x.is_nan() || v.is_nan() {
                            f64::NAN
                        } else {
                            v.max(x)
                        }),
                        ClampMax => Some(if x.is_nan() || v.is_nan() {
                            f64::NAN
                        } else {
                            v.min(x)
                        }),
                        _ => {
                            let y = b.get(i).copied().unwrap_or(f64::NAN);
                            if x > y {
                                None
                            } else if x.is_nan() || y.is_nan() || v.is_nan() {
                                Some(f64::NAN)
                            } else {
                                Some(v.max(x).min(y))
                            }
                        }
                    }
                },
                grid,
            )
        }
        Timestamp => {
            // Reached only for expressions other than a plain selector,
            // whose timestamp is the evaluation time.
            let input = take_vector(&mut args, 0);
            map_points(
                input,
                false,
                |i, _| Some(grid.time(i) as f64 / 1000.0),
                grid,
            )
        }
        _ if f.is_date() => {
            if args.is_empty() {
                vec![scalar_series(grid, |t| t as f64 / 1000.0)]
                    .into_iter()
                    .map(|mut s| {
                        s.points
                            .iter_mut()
                            .for_each(|p| p.v = date_part(f, p.v).unwrap_or(f64::NAN));
                        s
                    })
                    .collect()
            } else {
                let input = take_vector(&mut args, 0);
                map_points(input, false, |_, v| f.simple(v), grid)
            }
        }
        LabelReplace => label_replace(take_vector(&mut args, 0), &args)?,
        LabelJoin => label_join(take_vector(&mut args, 0), &args)?,
        Sort | SortDesc => {
            let mut input = take_vector(&mut args, 0);
            let key = |s: &SeriesData| s.points.first().map(|p| p.v).unwrap_or(f64::NAN);
            input.sort_by(|a, b| {
                let (x, y) = (key(a), key(b));
                // NaN always last.
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if f == Sort => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                    _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                }
            });
            input
        }
        SortByLabel | SortByLabelDesc => {
            let mut input = take_vector(&mut args, 0);
            let names: Vec<String> = args[1..].iter().map(|a| a.string().to_owned()).collect();
            input.sort_by(|a, b| {
                let mut ord = std::cmp::Ordering::Equal;
                for n in &names {
                    ord = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if ord != std::cmp::Ordering::Equal {
                        break;
                    }
                }
                if ord == std::cmp::Ordering::Equal {
                    ord = a.labels.cmp(&b.labels);
                }
                if f == SortByLabelDesc {
                    ord.reverse()
                } else {
                    ord
                }
            });
            input
        }
        HistogramQuantile => {
            histogram_quantile(take_vector(&mut args, 1), args[0].scalar(), grid, ann)
        }
        _ => {
            let input = take_vector(&mut args, 0);
            map_points(input, false, |_, v| f.simple(v), grid)
        }
    })
}

/// A scalar as a series: one point per step.
pub fn scalar_series(grid: Grid, f: impl Fn(i64) -> f64) -> SeriesData {
    SeriesData::new(
        Labels::default(),
        grid.times().map(|t| Point { t, v: f(t) }).collect(),
    )
}

/// Compares strings so that runs of digits compare by number, as
/// `sort_by_label` does.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut ai, mut bi) = (a.char_indices().peekable(), b.char_indices().peekable());
    loop {
        match (ai.peek().copied(), bi.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((i, ca)), Some((j, cb))) => {
                if ca.is_ascii_digit() && cb.is_ascii_digit() {
                    let ea = a[i..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(a.len(), |k| i + k);
                    let eb = b[j..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(b.len(), |k| j + k);
                    let (na, nb) = (
                        a[i..ea].trim_start_matches('0'),
                        b[j..eb].trim_start_matches('0'),
                    );
                    let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                    if ord != std::cmp::Ordering::Equal {
                        return ord;
                    }
                    while ai.peek().is_some_and(|&(k, _)| k < ea) {
                        ai.next();
                    }
                    while bi.peek().is_some_and(|&(k, _)| k < eb) {
                        bi.next();
                    }
                } else {
                    if ca != cb {
                        return ca.cmp(&cb);
                    }
                    ai.next();
                    bi.next();
                }
            }
        }
    }
}

fn label_replace(input: Vec<SeriesData>, args: &[Arg]) -> Result<Vec<SeriesData>, EvalError> {
    let dst = args.get(1).map(Arg::string).unwrap_or("");
    let repl = args.get(2).map(Arg::string).unwrap_or("");
    let src = args.get(3).map(Arg::string).unwrap_or("");
    let re_src = args.get(4).map(Arg::string).unwrap_or("");
    let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
        EvalError(format!(
            "invalid regular expression in label_replace(): {re_src}: {e}"
        ))
    })?;
    if !is_valid_label_name(dst) {
        return Err(EvalError(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let template = go_template_to_rust(repl);
    Ok(input
        .into_iter()
        .map(|mut s| {
            let value = s.labels.get(src).unwrap_or("").to_owned();
            if let Some(caps) = re.captures(&value) {
                let mut out = String::new();
                caps.expand(&template, &mut out);
                s.labels = with_label(&s.labels, dst, &out);
                if dst == "__name__" {
                    s.drop_name = false;
                }
            }
            s
        })
        .collect())
}

/// Go's `$1`/`${1}` expansion treats `$1x` as the group named `1x`; Rust's
/// does the same, so only `$$` needs no change. Kept as a seam should the
/// dialects ever differ.
fn go_template_to_rust(s: &str) -> String {
    s.to_owned()
}

fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty() && std::str::from_utf8(s.as_bytes()).is_ok()
}

fn label_join(input: Vec<SeriesData>, args: &[Arg]) -> Result<Vec<SeriesData>, EvalError> {
    let dst = args.get(1).map(Arg::string).unwrap_or("");
    let sep = args.get(2).map(Arg::string).unwrap_or("");
    let srcs: Vec<&str> = args.iter().skip(3).map(Arg::string).collect();
    if !is_valid_label_name(dst) {
        return Err(EvalError(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(input
        .into_iter()
        .map(|mut s| {
            let joined = srcs
                .iter()
                .map(|n| s.labels.get(n).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(sep);
            s.labels = with_label(&s.labels, dst, &joined);
            if dst == "__name__" {
                s.drop_name = false;
            }
            s
        })
        .collect())
}

/// `histogram_quantile` over classic buckets: series grouped by their
/// labels other than `le`, interpolating linearly inside the bucket.
fn histogram_quantile(
    input: Vec<SeriesData>,
    q: &[f64],
    grid: Grid,
    ann: &mut Annotations,
) -> Vec<SeriesData> {
    struct Group {
        labels: Labels,
        buckets: Vec<Vec<(f64, f64)>>, // per step: (upper bound, count)
    }
    let mut groups: HashMap<Labels, Group> = HashMap::new();
    let mut order = Vec::new();
    for s in input {
        let Some(le) = s.labels.get("le") else {
            continue;
        };
        let Ok(upper) = parse_le(le) else {
            ann.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of \"{le}\" for metric name \"{}\"",
                s.labels.metric_name().unwrap_or("")
            ));
            continue;
        };
        let base = drop_metric_name(&with_label(&s.labels, "le", ""));
        let g = groups.entry(base.clone()).or_insert_with(|| {
            order.push(base.clone());
            Group {
                labels: base,
                buckets: vec![Vec::new(); grid.len()],
            }
        });
        for p in &s.points {
            if let Some(i) = grid.index(p.t) {
                g.buckets[i].push((upper, p.v));
            }
        }
    }
    for &qv in q {
        if !(0.0..=1.0).contains(&qv) {
            ann.warn(format!(
                "quantile value should be between 0 and 1, got {}",
                crate::promql::format_value(qv)
            ));
            break;
        }
    }
    let mut out = Vec::new();
    for key in order {
        let Some(g) = groups.remove(&key) else {
            continue;
        };
        let mut points = Vec::new();
        for (i, mut b) in g.buckets.into_iter().enumerate() {
            if b.is_empty() {
                continue;
            }
            let qv = q.get(i).copied().unwrap_or(f64::NAN);
            let (v, fixed) = bucket_quantile(qv, &mut b);
            if fixed {
                ann.info(format!(
                    "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"{}\"",
                    key.metric_name().unwrap_or("")
                ));
            }
            points.push(Point { t: grid.time(i), v });
        }
        if !points.is_empty() {
            let mut s = SeriesData::new(g.labels, points);
            s.drop_name = true;
            out.push(s);
        }
    }
    out
}

fn parse_le(s: &str) -> Result<f64, ()> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t => t.parse::<f64>().map_err(|_| ()),
    }
}

/// The quantile of one step's buckets; also says whether the counts had
/// to be forced monotonic.
pub fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return (f64::NAN, false);
    }
    // Merge buckets with the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    let mut fixed = false;
    let mut prev = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        let cur = b.1;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, 1e-12) {
            b.1 = prev;
            continue;
        }
        if cur < prev {
            b.1 = prev;
            fixed = true;
            continue;
        }
        prev = cur;
    }
    if merged.len() < 2 {
        return (f64::NAN, fixed);
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, fixed);
    }
    let mut rank = q * observations;
    let n = merged.len();
    let b = merged[..n - 1].partition_point(|x| x.1 < rank);
    if b == n - 1 {
        return (merged[n - 2].0, fixed);
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return (merged[0].0, fixed);
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    (start + (end - start) * (rank / count), fixed)
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / (a.abs() + b.abs()).min(f64::MAX) < eps
}
