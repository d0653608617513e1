//! Functions over instant vectors and scalars: math, clamping, dates,
//! label manipulation, sorting, `absent`, `scalar`/`vector` and the
//! classic-histogram functions.

use std::collections::HashMap;

use super::{Annotations, EvalError, Grid, SeriesData, with_label};
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
    HistogramQuantiles,
    HistogramFraction,
    Time,
    Pi,
    MinOf,
    MaxOf,
    /// `histogram_count` and friends: native histograms only; float
    /// series give nothing, as in Prometheus.
    Native(super::native::NativeFunc),
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
            "histogram_quantiles" => HistogramQuantiles,
            "histogram_fraction" => HistogramFraction,
            "time" => Time,
            "pi" => Pi,
            "min_of" => MinOf,
            "max_of" => MaxOf,
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
            | "histogram_stdvar" => Native(super::native::NativeFunc::from_name(name)?),
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

    /// Whether the function reads native histogram points; the others
    /// get their inputs without them.
    pub fn keeps_histograms(self) -> bool {
        use InstantFunc::*;
        matches!(
            self,
            LabelReplace
                | LabelJoin
                | SortByLabel
                | SortByLabelDesc
                | HistogramQuantile
                | HistogramQuantiles
                | HistogramFraction
                | Native(_)
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
        Native(nf) => {
            super::native::map_histograms(take_vector(&mut args, 0), grid, |_, h| Some(nf.apply(h)))
        }
        MinOf | MaxOf => {
            let a = args
                .first()
                .map(|a| a.scalar().to_vec())
                .unwrap_or_default();
            let b = args.get(1).map(|a| a.scalar().to_vec()).unwrap_or_default();
            vec![scalar_series(grid, |t| {
                let i = grid.index(t).unwrap_or(0);
                let (x, y) = (
                    a.get(i).copied().unwrap_or(f64::NAN),
                    b.get(i).copied().unwrap_or(f64::NAN),
                );
                // NaN wins, as Go's math.Min and math.Max have it.
                if x.is_nan() || y.is_nan() {
                    f64::NAN
                } else if f == MinOf {
                    x.min(y)
                } else {
                    x.max(y)
                }
            })]
        }
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
            let (classic, native) = split_native_checked(take_vector(&mut args, 1), ann);
            let q = args[0].scalar();
            let mut out = super::native::map_histograms(native, grid, |i, h| {
                Some(h.quantile(q.get(i).copied().unwrap_or(f64::NAN)))
            });
            if !out.is_empty() {
                warn_quantile_range(q, ann);
            }
            out.extend(histogram_quantile(classic, q, grid, ann));
            out
        }
        HistogramQuantiles => {
            let (classic, native) = split_native_checked(take_vector(&mut args, 0), ann);
            let label = args.get(1).map(Arg::string).unwrap_or("").to_owned();
            let qs: Vec<Vec<f64>> = args.iter().skip(2).map(|a| a.scalar().to_vec()).collect();
            let mut out = Vec::new();
            for q in &qs {
                let name = quantile_label(q.first().copied().unwrap_or(f64::NAN));
                let mut part = super::native::map_histograms(native.clone(), grid, |i, h| {
                    Some(h.quantile(q.get(i).copied().unwrap_or(f64::NAN)))
                });
                if !part.is_empty() {
                    warn_quantile_range(q, ann);
                }
                for s in &mut part {
                    s.labels = with_label(&s.labels, &label, &name);
                }
                out.extend(part);
            }
            let classic_out = histogram_quantiles(classic, &label, &qs, grid, ann)?;
            out.extend(classic_out);
            let mut seen = std::collections::HashSet::new();
            for s in &out {
                if !seen.insert(super::drop_metric_name(&s.labels)) {
                    return Err(EvalError(
                        "vector cannot contain metrics with the same labelset".into(),
                    ));
                }
            }
            out
        }
        HistogramFraction => {
            let (classic, native) = split_native_checked(take_vector(&mut args, 2), ann);
            let (lower, upper) = (args[0].scalar(), args[1].scalar());
            let mut out = super::native::map_histograms(native, grid, |i, h| {
                let lo = lower.get(i).copied().unwrap_or(f64::NAN);
                let hi = upper.get(i).copied().unwrap_or(f64::NAN);
                Some(h.fraction(lo, hi))
            });
            out.extend(histogram_fraction(classic, lower, upper, grid, ann));
            out
        }
        _ => {
            let input = take_vector(&mut args, 0);
            map_points(input, false, |_, v| f.simple(v), grid)
        }
    })
}

/// [`split_native`], then drops classic and native histograms that share
/// their labels (without `le`): Prometheus refuses to pick one.
fn split_native_checked(
    input: Vec<SeriesData>,
    ann: &mut Annotations,
) -> (Vec<SeriesData>, Vec<SeriesData>) {
    let (mut classic, mut native) = split_native(input);
    if classic.is_empty() || native.is_empty() {
        return (classic, native);
    }
    let native_labels: std::collections::HashSet<Labels> =
        native.iter().map(|s| s.labels.clone()).collect();
    let mut conflicts = std::collections::HashSet::new();
    classic.retain(|s| {
        let base = with_label(&s.labels, "le", "");
        if native_labels.contains(&base) {
            conflicts.insert(base);
            false
        } else {
            true
        }
    });
    native.retain(|s| !conflicts.contains(&s.labels));
    for l in &conflicts {
        ann.warn(format!(
            "vector contains a mix of classic and native histograms for metric name {:?}",
            l.metric_name().unwrap_or("")
        ));
    }
    (classic, native)
}

/// Splits series into their float points (classic buckets) and their
/// native histogram points.
fn split_native(input: Vec<SeriesData>) -> (Vec<SeriesData>, Vec<SeriesData>) {
    let mut classic = Vec::new();
    let mut native = Vec::new();
    for mut s in input {
        if !s.hists.is_empty() {
            let hists = std::mem::take(&mut s.hists);
            native.push(SeriesData {
                labels: s.labels.clone(),
                drop_name: s.drop_name,
                points: Vec::new(),
                hists,
            });
        }
        if !s.points.is_empty() {
            classic.push(s);
        }
    }
    (classic, native)
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
    Ok(input
        .into_iter()
        .map(|mut s| {
            let value = s.labels.get(src).unwrap_or("").to_owned();
            if let Some(caps) = re.captures(&value) {
                let mut out = String::new();
                caps.expand(repl, &mut out);
                s.labels = with_label(&s.labels, dst, &out);
                if dst == "__name__" {
                    s.drop_name = false;
                }
            }
            s
        })
        .collect())
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

/// Classic histograms: bucket series grouped by their labels other than
/// `le` (the metric name stays until the query ends), with each step's
/// `(upper bound, count)` pairs.
struct BucketGroup {
    labels: Labels,
    steps: Vec<Vec<(f64, f64)>>,
}

fn bucket_groups(input: Vec<SeriesData>, grid: Grid, ann: &mut Annotations) -> Vec<BucketGroup> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<BucketGroup> = Vec::new();
    for s in input {
        let le = s.labels.get("le").unwrap_or("");
        let Ok(upper) = parse_le(le) else {
            ann.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of \"{le}\" for metric name \"{}\"",
                s.labels.metric_name().unwrap_or("")
            ));
            continue;
        };
        let base = with_label(&s.labels, "le", "");
        let next = groups.len();
        let g = *index.entry(base.clone()).or_insert_with(|| {
            groups.push(BucketGroup {
                labels: base,
                steps: vec![Vec::new(); grid.len()],
            });
            next
        });
        for p in &s.points {
            if let Some(i) = grid.index(p.t) {
                groups[g].steps[i].push((upper, p.v));
            }
        }
    }
    groups
}

fn warn_quantile_range(q: &[f64], ann: &mut Annotations) {
    if let Some(qv) = q.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        ann.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            crate::promql::format_value(*qv)
        ));
    }
}

/// Evaluates `f` on every group and step with buckets; the output series
/// keep the group's labels plus `extra`, and lose the metric name.
fn per_bucket_group(
    groups: &[BucketGroup],
    grid: Grid,
    extra: Option<(&str, &str)>,
    mut f: impl FnMut(usize, &mut [(f64, f64)], &Labels) -> f64,
) -> Vec<SeriesData> {
    let mut out = Vec::new();
    for g in groups {
        let mut points = Vec::new();
        for (i, b) in g.steps.iter().enumerate() {
            if b.is_empty() {
                continue;
            }
            let mut b = b.clone();
            points.push(Point {
                t: grid.time(i),
                v: f(i, &mut b, &g.labels),
            });
        }
        if !points.is_empty() {
            let labels = match extra {
                Some((n, v)) => with_label(&g.labels, n, v),
                None => g.labels.clone(),
            };
            out.push(SeriesData {
                labels,
                drop_name: true,
                points,
                hists: Vec::new(),
            });
        }
    }
    out
}

fn monotonicity_info(ann: &mut Annotations, labels: &Labels) {
    ann.info(format!(
        "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"{}\"",
        labels.metric_name().unwrap_or("")
    ));
}

/// `histogram_quantile` over classic buckets, interpolating linearly
/// inside the bucket.
fn histogram_quantile(
    input: Vec<SeriesData>,
    q: &[f64],
    grid: Grid,
    ann: &mut Annotations,
) -> Vec<SeriesData> {
    let groups = bucket_groups(input, grid, ann);
    warn_quantile_range(q, ann);
    let mut fixed_for = Vec::new();
    let out = per_bucket_group(&groups, grid, None, |i, b, labels| {
        let (v, fixed) = bucket_quantile(q.get(i).copied().unwrap_or(f64::NAN), b);
        if fixed {
            fixed_for.push(labels.clone());
        }
        v
    });
    for l in fixed_for {
        monotonicity_info(ann, &l);
    }
    out
}

/// `histogram_quantiles(v, "label", q1, q2, ...)`: one output series per
/// quantile, told apart by `label`.
fn histogram_quantiles(
    input: Vec<SeriesData>,
    label: &str,
    qs: &[Vec<f64>],
    grid: Grid,
    ann: &mut Annotations,
) -> Result<Vec<SeriesData>, EvalError> {
    let groups = bucket_groups(input, grid, ann);
    let mut out: Vec<SeriesData> = Vec::new();
    let mut fixed_for = Vec::new();
    for q in qs {
        warn_quantile_range(q, ann);
        let name = quantile_label(q.first().copied().unwrap_or(f64::NAN));
        out.extend(per_bucket_group(
            &groups,
            grid,
            Some((label, &name)),
            |i, b, labels| {
                let (v, fixed) = bucket_quantile(q.get(i).copied().unwrap_or(f64::NAN), b);
                if fixed {
                    fixed_for.push(labels.clone());
                }
                v
            },
        ));
    }
    for l in fixed_for {
        monotonicity_info(ann, &l);
    }
    let mut seen = std::collections::HashSet::new();
    for s in &out {
        if !seen.insert(super::drop_metric_name(&s.labels)) {
            return Err(EvalError(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(out)
}

/// Quantile label values keep a decimal point: `0.0`, `0.25`, `1.0`.
fn quantile_label(q: f64) -> String {
    let s = crate::promql::format_value(q);
    if q.is_finite() && !s.contains(['.', 'e']) {
        format!("{s}.0")
    } else {
        s
    }
}

/// `histogram_fraction(lower, upper, v)` over classic buckets: the share
/// of observations between the bounds.
fn histogram_fraction(
    input: Vec<SeriesData>,
    lower: &[f64],
    upper: &[f64],
    grid: Grid,
    ann: &mut Annotations,
) -> Vec<SeriesData> {
    let groups = bucket_groups(input, grid, ann);
    per_bucket_group(&groups, grid, None, |i, b, _| {
        let lo = lower.get(i).copied().unwrap_or(f64::NAN);
        let hi = upper.get(i).copied().unwrap_or(f64::NAN);
        bucket_fraction(lo, hi, b)
    })
}

/// The share of one step's observations between `lower` and `upper`. The
/// first bucket starts at 0 if its bound is positive.
pub fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [(f64, f64)]) -> f64 {
    let Some((merged, _)) = prepare(buckets) else {
        return f64::NAN;
    };
    let total = merged[merged.len() - 1].1;
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let mut covered = 0.0;
    let mut prev_count = 0.0;
    for (i, &(ub, count)) in merged.iter().enumerate() {
        let lb = if i > 0 {
            merged[i - 1].0
        } else if ub > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let n = count - prev_count;
        prev_count = count;
        // A bucket reaching an infinity counts whole when the bounds
        // reach the same infinity; it cannot be interpolated into.
        let whole = match (lb == f64::NEG_INFINITY, ub == f64::INFINITY) {
            (false, false) => lower <= lb && upper >= ub,
            (true, false) => lower == f64::NEG_INFINITY,
            (false, true) => upper == f64::INFINITY,
            (true, true) => lower == f64::NEG_INFINITY && upper == f64::INFINITY,
        };
        if whole {
            covered += n;
        } else if lb.is_finite() && ub.is_finite() {
            let overlap = upper.min(ub) - lower.max(lb);
            if overlap > 0.0 {
                covered += n * overlap / (ub - lb);
            }
        }
    }
    covered / total
}

/// Sorted, merged by bound, and forced monotonic; `None` without a `+Inf`
/// bucket. The flag says whether counts had to be raised.
fn prepare(buckets: &mut [(f64, f64)]) -> Option<(Vec<(f64, f64)>, bool)> {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return None;
    }
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
    Some((merged, fixed))
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
    let Some((merged, fixed)) = prepare(buckets) else {
        return (f64::NAN, false);
    };
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
