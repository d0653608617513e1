//! Functions over range vectors (`rate`, `*_over_time`, ...): each takes
//! one window of samples and returns at most one value.

use super::kahan::{KahanMean, KahanSum, sum_inc};
use super::selector::Window;
use crate::promql::value::Point;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeFunc {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    LastOverTime,
    FirstOverTime,
    PresentOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    MadOverTime,
    Changes,
    Resets,
    Deriv,
    PredictLinear,
    DoubleExponentialSmoothing,
    TsOfMinOverTime,
    TsOfMaxOverTime,
    TsOfLastOverTime,
    TsOfFirstOverTime,
    /// Handled by the planner (it needs the selector's matchers); here it
    /// only reports whether the window has samples.
    AbsentOverTime,
}

impl RangeFunc {
    pub fn from_name(name: &str) -> Option<RangeFunc> {
        use RangeFunc::*;
        Some(match name {
            "rate" => Rate,
            "increase" => Increase,
            "delta" => Delta,
            "irate" => Irate,
            "idelta" => Idelta,
            "avg_over_time" => AvgOverTime,
            "sum_over_time" => SumOverTime,
            "count_over_time" => CountOverTime,
            "min_over_time" => MinOverTime,
            "max_over_time" => MaxOverTime,
            "last_over_time" => LastOverTime,
            "first_over_time" => FirstOverTime,
            "present_over_time" => PresentOverTime,
            "stddev_over_time" => StddevOverTime,
            "stdvar_over_time" => StdvarOverTime,
            "quantile_over_time" => QuantileOverTime,
            "mad_over_time" => MadOverTime,
            "changes" => Changes,
            "resets" => Resets,
            "deriv" => Deriv,
            "predict_linear" => PredictLinear,
            "double_exponential_smoothing" => DoubleExponentialSmoothing,
            "ts_of_min_over_time" => TsOfMinOverTime,
            "ts_of_max_over_time" => TsOfMaxOverTime,
            "ts_of_last_over_time" => TsOfLastOverTime,
            "ts_of_first_over_time" => TsOfFirstOverTime,
            "absent_over_time" => AbsentOverTime,
            _ => return None,
        })
    }

    /// Whether the result keeps the input's metric name.
    pub fn keeps_name(self) -> bool {
        matches!(self, RangeFunc::LastOverTime | RangeFunc::FirstOverTime)
    }

    /// Where the range vector is among the arguments.
    pub fn matrix_arg(self) -> usize {
        match self {
            RangeFunc::QuantileOverTime => 1,
            _ => 0,
        }
    }

    /// Evaluates the function over one window. `args` are the scalar
    /// arguments other than the range vector, at this step.
    pub fn eval(self, s: &[Point], w: Window, range_ms: i64, args: &[f64]) -> Option<f64> {
        use RangeFunc::*;
        if s.is_empty() {
            return None;
        }
        let last = s[s.len() - 1];
        Some(match self {
            Rate => extrapolated(s, w, range_ms, true, true)?,
            Increase => extrapolated(s, w, range_ms, true, false)?,
            Delta => extrapolated(s, w, range_ms, false, false)?,
            Irate | Idelta => {
                if s.len() < 2 {
                    return None;
                }
                let prev = s[s.len() - 2];
                let mut d = last.v - prev.v;
                if self == Irate {
                    if last.v < prev.v {
                        d = last.v; // counter reset
                    }
                    let dt = (last.t - prev.t) as f64 / 1000.0;
                    if dt == 0.0 {
                        return None;
                    }
                    d / dt
                } else {
                    d
                }
            }
            AvgOverTime => {
                let mut m = KahanMean::default();
                s.iter().for_each(|p| m.add(p.v));
                m.value()
            }
            SumOverTime => {
                let mut k = KahanSum::default();
                s.iter().for_each(|p| k.add(p.v));
                k.value()
            }
            CountOverTime => s.len() as f64,
            MinOverTime => s
                .iter()
                .fold(f64::NAN, |m, p| if p.v < m || m.is_nan() { p.v } else { m }),
            MaxOverTime => s
                .iter()
                .fold(f64::NAN, |m, p| if p.v > m || m.is_nan() { p.v } else { m }),
            LastOverTime => last.v,
            FirstOverTime => s[0].v,
            PresentOverTime | AbsentOverTime => 1.0,
            StdvarOverTime => stdvar(s),
            StddevOverTime => stdvar(s).sqrt(),
            QuantileOverTime => {
                let mut vals: Vec<f64> = s.iter().map(|p| p.v).collect();
                quantile(args.first().copied().unwrap_or(f64::NAN), &mut vals)
            }
            // A NaN sample makes the deviation NaN rather than being sorted away.
            MadOverTime if s.iter().any(|p| p.v.is_nan()) => f64::NAN,
            MadOverTime => {
                let mut vals: Vec<f64> = s.iter().map(|p| p.v).collect();
                let median = quantile(0.5, &mut vals);
                let mut dev: Vec<f64> = vals.iter().map(|v| (v - median).abs()).collect();
                quantile(0.5, &mut dev)
            }
            Changes => s
                .windows(2)
                .filter(|w| !(w[0].v == w[1].v || (w[0].v.is_nan() && w[1].v.is_nan())))
                .count() as f64,
            Resets => s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64,
            Deriv => {
                if s.len() < 2 {
                    return None;
                }
                linear_regression(s, s[0].t).0
            }
            PredictLinear => {
                if s.len() < 2 {
                    return None;
                }
                let (slope, intercept) = linear_regression(s, w.t);
                intercept + slope * args.first().copied().unwrap_or(0.0)
            }
            DoubleExponentialSmoothing => {
                let sf = args.first().copied().unwrap_or(f64::NAN);
                let tf = args.get(1).copied().unwrap_or(f64::NAN);
                double_exponential_smoothing(s, sf, tf)?
            }
            TsOfMinOverTime => ts_of(s, |a, b| a < b),
            TsOfMaxOverTime => ts_of(s, |a, b| a > b),
            TsOfLastOverTime => last.t as f64 / 1000.0,
            TsOfFirstOverTime => s[0].t as f64 / 1000.0,
        })
    }
}

/// `rate`, `increase` and `delta`: the change over the window,
/// extrapolated towards the window's edges as Prometheus does.
fn extrapolated(
    s: &[Point],
    w: Window,
    range_ms: i64,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.v - first.v;
    if counter {
        for pair in s.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }
    let zero = (counter && result > 0.0 && first.v >= 0.0).then_some(first.v / result);
    let factor = extrapolation_factor(first.t, last.t, s.len(), zero, w, range_ms, per_second);
    Some(result * factor)
}

/// The factor by which `rate`, `increase` and `delta` scale the change
/// between the first and last of `n` samples, extrapolating towards the
/// window's edges. `zero_ratio` is `first / change` for counters that
/// went up: a counter is not extrapolated below zero.
pub fn extrapolation_factor(
    first_t: i64,
    last_t: i64,
    n: usize,
    zero_ratio: Option<f64>,
    w: Window,
    range_ms: i64,
    per_second: bool,
) -> f64 {
    let mut to_start = (first_t - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_step = sampled / (n - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if let Some(ratio) = zero_ratio {
        let to_zero = sampled * ratio;
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= range_ms as f64 / 1000.0;
    }
    factor
}

fn stdvar(s: &[Point]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = sum_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn ts_of(s: &[Point], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best = s[0];
    for p in &s[1..] {
        if better(p.v, best.v) || (best.v.is_nan() && !p.v.is_nan()) {
            best = *p;
        }
    }
    best.t as f64 / 1000.0
}

/// The φ-quantile of `vals` with linear interpolation between ranks.
/// Sorts `vals` in place; NaN sorts first.
pub fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    vals[lower as usize] * (1.0 - weight) + vals[upper as usize] * weight
}

/// Least-squares slope and intercept, with x in seconds relative to
/// `intercept_time`.
pub fn linear_regression(s: &[Point], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init = s[0].v;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_time) as f64 / 1000.0;
        (sx, cx) = sum_inc(x, sx, cx);
        (sy, cy) = sum_inc(p.v, sy, cy);
        (sxy, cxy) = sum_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = sum_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// Holt's linear smoothing; the factors are checked by the caller.
fn double_exponential_smoothing(s: &[Point], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, s[0].v);
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * p.v + (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = next;
    }
    Some(s1)
}
