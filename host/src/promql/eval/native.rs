//! Native histograms in the engine: selecting series that hold them
//! (alone or mixed with floats), range functions over them, and the
//! `histogram_*` functions. Float-only series never come here, so the
//! float paths stay as they were.

use std::sync::Arc;

use super::range_fn::{RangeFunc, extrapolation_factor};
use super::selector::{TimeShift, Window};
use super::{Annotations, Grid, SeriesData};
use crate::model::FloatHistogram;
use crate::model::histogram::{CounterResetHint, HistogramError};
use crate::model::sample::is_stale_nan;
use crate::promql::value::{HPoint, Point};

/// One value a step yields: a float or a histogram.
pub enum Out {
    Float(f64),
    Hist(FloatHistogram),
}

/// [`super::selector::instant_align`] for a series with histogram points:
/// per step, the newer of the newest float and the newest histogram in
/// the lookback window, unless that is a stale marker.
pub fn instant_align(
    floats: &[Point],
    hists: &[HPoint],
    grid: Grid,
    lookback: i64,
    shift: TimeShift,
    sample_time: bool,
) -> (Vec<Point>, Vec<HPoint>) {
    let (mut fo, mut ho) = (Vec::new(), Vec::new());
    // The source sample of the previous step's histogram.
    let mut last_source: Option<i64> = None;
    for t in grid.times() {
        let read = shift.apply(t);
        let fi = floats.partition_point(|p| p.t <= read);
        let hi = hists.partition_point(|p| p.t <= read);
        let f = fi.checked_sub(1).map(|i| floats[i]);
        let h = hi.checked_sub(1).map(|i| &hists[i]);
        let newest_is_float = match (f, h) {
            (Some(f), Some(h)) => f.t > h.t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => continue,
        };
        if newest_is_float {
            let Some(p) = f else { continue };
            if p.t <= read - lookback || is_stale_nan(p.v) {
                continue;
            }
            let v = if sample_time {
                p.t as f64 / 1000.0
            } else {
                p.v
            };
            fo.push(Point { t, v });
        } else {
            let Some(p) = h else { continue };
            if p.t <= read - lookback || is_stale_nan(p.h.sum) {
                continue;
            }
            if sample_time {
                fo.push(Point {
                    t,
                    v: p.t as f64 / 1000.0,
                });
            } else if last_source == Some(p.t)
                && p.h.counter_reset_hint == CounterResetHint::CounterReset
            {
                // The same sample again (a subquery step finer than the
                // data): its reset was counted once already.
                let mut h = (*p.h).clone();
                h.counter_reset_hint = CounterResetHint::Unknown;
                ho.push(HPoint { t, h: Arc::new(h) });
            } else {
                ho.push(HPoint { t, h: p.h.clone() });
            }
            last_source = Some(p.t);
        }
    }
    (fo, ho)
}

/// Stale markers are floats (or histograms with a stale sum); range
/// functions never see them.
fn without_stale(floats: &[Point], hists: &[HPoint]) -> (Vec<Point>, Vec<HPoint>) {
    (
        floats
            .iter()
            .copied()
            .filter(|p| !is_stale_nan(p.v))
            .collect(),
        hists
            .iter()
            .filter(|p| !is_stale_nan(p.h.sum))
            .cloned()
            .collect(),
    )
}

/// [`super::selector::slide`] for a series with histogram points.
pub fn slide(
    floats: &[Point],
    hists: &[HPoint],
    grid: Grid,
    range: i64,
    shift: TimeShift,
    mut f: impl FnMut(usize, &[Point], &[HPoint], Window) -> Option<Out>,
) -> (Vec<Point>, Vec<HPoint>) {
    let (floats, hists) = without_stale(floats, hists);
    let (mut fo, mut ho) = (Vec::new(), Vec::new());
    for (i, t) in grid.times().enumerate() {
        let end = shift.apply(t);
        let start = end - range;
        let fw = &floats
            [floats.partition_point(|p| p.t <= start)..floats.partition_point(|p| p.t <= end)];
        let hw =
            &hists[hists.partition_point(|p| p.t <= start)..hists.partition_point(|p| p.t <= end)];
        match f(i, fw, hw, Window { t, start, end }) {
            Some(Out::Float(v)) => fo.push(Point { t, v }),
            Some(Out::Hist(h)) => ho.push(HPoint { t, h: Arc::new(h) }),
            None => {}
        }
    }
    (fo, ho)
}

fn mixed_warning(ann: &mut Annotations, name: &str) {
    ann.warn(format!(
        "encountered a mix of histograms and floats for metric name {name:?}"
    ));
}

fn combine_warning(ann: &mut Annotations, e: HistogramError, name: &str) {
    match e {
        HistogramError::MixedExponentialCustom => ann.warn(format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
        )),
        HistogramError::MismatchedCustomBuckets => ann.warn(format!(
            "vector contains histograms with incompatible custom buckets for metric name {name:?}"
        )),
    }
}

/// A range function over a window holding histograms (and maybe floats).
#[allow(clippy::too_many_arguments)]
pub fn range_eval(
    func: RangeFunc,
    fw: &[Point],
    hw: &[HPoint],
    w: Window,
    range_ms: i64,
    args: &[f64],
    name: &str,
    ann: &mut Annotations,
) -> Option<Out> {
    use RangeFunc::*;
    if hw.is_empty() {
        return func.eval(fw, w, range_ms, args).map(Out::Float);
    }
    let mixed = !fw.is_empty();
    let newest_hist = fw.last().is_none_or(|f| hw[hw.len() - 1].t > f.t);
    let oldest_hist = fw.first().is_none_or(|f| hw[0].t < f.t);
    match func {
        Rate | Increase | Delta => {
            if mixed {
                mixed_warning(ann, name);
                return None;
            }
            histogram_rate(func, hw, w, range_ms, name, ann).map(Out::Hist)
        }
        Irate | Idelta => {
            // Only the last two samples count, whatever came before.
            let floats_after = |t: i64| fw.iter().filter(|p| p.t > t).count();
            if hw.len() + fw.len() < 2 {
                return None;
            }
            if hw.len() < 2 || floats_after(hw[hw.len() - 2].t) > 0 {
                if newest_hist || fw.len() < 2 || floats_after(hw[hw.len() - 1].t) < 2 {
                    mixed_warning(ann, name);
                    return None;
                }
                return func.eval(fw, w, range_ms, args).map(Out::Float);
            }
            let (prev, last) = (&hw[hw.len() - 2], &hw[hw.len() - 1]);
            let mut h = (*last.h).clone();
            if func == Irate
                && (last.h.counter_reset_hint == CounterResetHint::Gauge
                    || prev.h.counter_reset_hint == CounterResetHint::Gauge)
            {
                ann.warn(format!(
                    "this native histogram metric is not a counter: {name:?}"
                ));
            }
            if func == Idelta
                && (last.h.counter_reset_hint != CounterResetHint::Gauge
                    || prev.h.counter_reset_hint != CounterResetHint::Gauge)
            {
                ann.warn(format!(
                    "this native histogram metric is not a gauge: {name:?}"
                ));
            }
            if func == Irate && last.h.detect_reset(&prev.h) {
                // After a reset the last sample is the whole increase.
            } else {
                match h.sub(&prev.h) {
                    Ok(true) => reconciled_info(ann, "subtraction"),
                    Ok(false) => {}
                    Err(e) => {
                        combine_warning(ann, e, name);
                        return None;
                    }
                }
            }
            if func == Irate {
                let dt = (last.t - prev.t) as f64 / 1000.0;
                if dt == 0.0 {
                    return None;
                }
                h.div(dt);
            }
            h.counter_reset_hint = CounterResetHint::Gauge;
            h.compact();
            Some(Out::Hist(h))
        }
        SumOverTime | AvgOverTime => {
            if mixed {
                mixed_warning(ann, name);
                return None;
            }
            let mut sum = match kahan_sum(hw.iter().map(|p| &*p.h)) {
                Ok((h, reconciled)) => {
                    if reconciled {
                        reconciled_info(ann, "aggregation");
                    }
                    h
                }
                Err(e) => {
                    combine_warning(ann, e, name);
                    return None;
                }
            };
            if func == AvgOverTime {
                sum.div(hw.len() as f64);
            }
            Some(Out::Hist(sum))
        }
        CountOverTime => Some(Out::Float((fw.len() + hw.len()) as f64)),
        PresentOverTime | AbsentOverTime => Some(Out::Float(1.0)),
        LastOverTime => Some(if newest_hist {
            Out::Hist((*hw[hw.len() - 1].h).clone())
        } else {
            Out::Float(fw[fw.len() - 1].v)
        }),
        FirstOverTime => Some(if oldest_hist {
            Out::Hist((*hw[0].h).clone())
        } else {
            Out::Float(fw[0].v)
        }),
        TsOfLastOverTime => {
            let t = hw[hw.len() - 1].t.max(fw.last().map_or(i64::MIN, |p| p.t));
            Some(Out::Float(t as f64 / 1000.0))
        }
        TsOfFirstOverTime => {
            let t = hw[0].t.min(fw.first().map_or(i64::MAX, |p| p.t));
            Some(Out::Float(t as f64 / 1000.0))
        }
        Changes | Resets => {
            // Samples of both kinds in time order.
            let mut all: Vec<(i64, Option<&FloatHistogram>, f64)> = fw
                .iter()
                .map(|p| (p.t, None, p.v))
                .chain(hw.iter().map(|p| (p.t, Some(&*p.h), 0.0)))
                .collect();
            all.sort_by_key(|x| x.0);
            let n = all
                .windows(2)
                .filter(|pair| {
                    let (a, b) = (&pair[0], &pair[1]);
                    match (a.1, b.1, func) {
                        (Some(x), Some(y), Changes) => x != y,
                        (Some(x), Some(y), _) => y.detect_reset(x),
                        (None, None, Changes) => !(a.2 == b.2 || (a.2.is_nan() && b.2.is_nan())),
                        (None, None, _) => b.2 < a.2,
                        (_, _, Changes) => true,
                        // A switch between floats and histograms starts over.
                        _ => true,
                    }
                })
                .count();
            Some(Out::Float(n as f64))
        }
        // The rest work on floats only; histograms are left out.
        _ => {
            if fw.is_empty() {
                return None;
            }
            ann.info(format!(
                "ignored histograms in a range containing both floats and histograms for metric name {name:?}"
            ));
            func.eval(fw, w, range_ms, args).map(Out::Float)
        }
    }
}

/// `rate`, `increase` and `delta` over histogram samples, as Prometheus's
/// `histogramRate` plus extrapolation.
fn histogram_rate(
    func: RangeFunc,
    hw: &[HPoint],
    w: Window,
    range_ms: i64,
    name: &str,
    ann: &mut Annotations,
) -> Option<FloatHistogram> {
    if hw.len() < 2 {
        return None;
    }
    let counter = func != RangeFunc::Delta;
    let first = &hw[0];
    let last = &hw[hw.len() - 1];
    let custom = first.h.uses_custom_buckets();
    let mut min_schema = first.h.schema;
    for p in &hw[1..] {
        if p.h.uses_custom_buckets() != custom {
            ann.warn(format!(
                "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
            ));
            return None;
        }
        min_schema = min_schema.min(p.h.schema);
        if counter && p.h.counter_reset_hint == CounterResetHint::Gauge {
            ann.warn(format!(
                "this native histogram metric is not a counter: {name:?}"
            ));
        }
    }
    let mut h = (*last.h).clone();
    h.reduce_to(min_schema);
    match h.sub(&first.h) {
        Ok(true) => reconciled_info(ann, "subtraction"),
        Ok(false) => {}
        Err(e) => {
            combine_warning(ann, e, name);
            return None;
        }
    }
    if counter {
        let mut prev = &first.h;
        for p in &hw[1..] {
            if p.h.detect_reset(prev)
                && let Err(e) = h.add(prev)
            {
                combine_warning(ann, e, name);
                return None;
            }
            prev = &p.h;
        }
    } else if first.h.counter_reset_hint != CounterResetHint::Gauge
        || last.h.counter_reset_hint != CounterResetHint::Gauge
    {
        ann.warn(format!(
            "this native histogram metric is not a gauge: {name:?}"
        ));
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    let zero = (counter && h.count > 0.0 && first.h.count >= 0.0).then(|| first.h.count / h.count);
    let factor = extrapolation_factor(
        first.t,
        last.t,
        hw.len(),
        zero,
        w,
        range_ms,
        func == RangeFunc::Rate,
    );
    h.mul(factor);
    Some(h)
}

/// The native-histogram functions of PromQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NativeFunc {
    Count,
    Sum,
    Avg,
    Stddev,
    Stdvar,
}

impl NativeFunc {
    pub fn from_name(name: &str) -> Option<NativeFunc> {
        Some(match name {
            "histogram_count" => NativeFunc::Count,
            "histogram_sum" => NativeFunc::Sum,
            "histogram_avg" => NativeFunc::Avg,
            "histogram_stddev" => NativeFunc::Stddev,
            "histogram_stdvar" => NativeFunc::Stdvar,
            _ => return None,
        })
    }

    pub fn apply(self, h: &FloatHistogram) -> f64 {
        match self {
            NativeFunc::Count => h.count,
            NativeFunc::Sum => h.sum,
            NativeFunc::Avg => h.sum / h.count,
            NativeFunc::Stddev => h.stdvar().sqrt(),
            NativeFunc::Stdvar => h.stdvar(),
        }
    }
}

/// Applies `f` to every histogram point; float points are dropped. The
/// output loses the metric name.
pub fn map_histograms(
    input: Vec<SeriesData>,
    grid: Grid,
    mut f: impl FnMut(usize, &FloatHistogram) -> Option<f64>,
) -> Vec<SeriesData> {
    input
        .into_iter()
        .filter_map(|s| {
            let points: Vec<Point> = s
                .hists
                .iter()
                .filter_map(|p| {
                    let i = grid.index(p.t).unwrap_or(0);
                    f(i, &p.h).map(|v| Point { t: p.t, v })
                })
                .collect();
            (!points.is_empty()).then(|| SeriesData {
                labels: s.labels,
                drop_name: true,
                points,
                hists: Vec::new(),
            })
        })
        .collect()
}

/// Sums or averages histograms in one aggregation group at one step.
pub fn aggregate(
    hists: &[Arc<FloatHistogram>],
    avg: bool,
    ann: &mut Annotations,
) -> Option<FloatHistogram> {
    let mut sum = match kahan_sum(hists.iter().map(|h| &**h)) {
        Ok((h, reconciled)) => {
            if reconciled {
                reconciled_info(ann, "aggregation");
            }
            h
        }
        Err(e) => {
            combine_warning(ann, e, "");
            return None;
        }
    };
    if avg {
        sum.div(hists.len() as f64);
    }
    Some(sum)
}

/// The sum of histograms with Kahan-Babuska compensation on every count
/// and the sum, as Prometheus sums histograms: all are first brought to
/// the coarsest schema and the widest zero bucket, or to the custom
/// bounds all have. The flag says whether custom bounds were reconciled.
pub fn kahan_sum<'a>(
    hists: impl Iterator<Item = &'a FloatHistogram> + Clone,
) -> Result<(FloatHistogram, bool), HistogramError> {
    use super::kahan::sum_inc;
    use std::collections::BTreeMap;
    let mut first: Option<FloatHistogram> = None;
    let mut schema = i32::MAX;
    let mut zt = 0f64;
    let mut bounds: Option<Vec<f64>> = None;
    let mut reconciled = false;
    for h in hists.clone() {
        match &first {
            None => first = Some(h.clone()),
            Some(f) => {
                if f.uses_custom_buckets() != h.uses_custom_buckets() {
                    return Err(HistogramError::MixedExponentialCustom);
                }
            }
        }
        if h.uses_custom_buckets() {
            bounds = Some(match bounds {
                None => h.custom_values.clone(),
                Some(b) if b == h.custom_values => b,
                Some(b) => {
                    reconciled = true;
                    crate::model::histogram::common_bounds(&b, &h.custom_values)
                }
            });
        }
        schema = schema.min(h.schema);
        zt = zt.max(h.zero_threshold);
    }
    let Some(mut out) = first else {
        return Ok((FloatHistogram::default(), false));
    };
    type Acc = (f64, f64);
    let add = |acc: &mut Acc, v: f64| *acc = sum_inc(v, acc.0, acc.1);
    let (mut count, mut total, mut zero): (Acc, Acc, Acc) = Default::default();
    let mut pos: BTreeMap<i32, Acc> = BTreeMap::new();
    let mut neg: BTreeMap<i32, Acc> = BTreeMap::new();
    let mut hint = out.counter_reset_hint;
    for (k, h) in hists.enumerate() {
        let mut h = h.clone();
        if !h.uses_custom_buckets() {
            h.reduce_to(schema);
            h.widen_zero(zt);
        } else if let Some(b) = &bounds {
            h.rebucket_custom(b);
        }
        if k > 0 {
            hint = hint.combine(h.counter_reset_hint);
        }
        add(&mut count, h.count);
        add(&mut total, h.sum);
        add(&mut zero, h.zero_count);
        for (i, c) in h.positive() {
            add(pos.entry(i).or_default(), c);
        }
        for (i, c) in h.negative() {
            add(neg.entry(i).or_default(), c);
        }
    }
    let done = |m: BTreeMap<i32, Acc>| {
        m.into_iter()
            .map(|(i, (s, c))| (i, s + c))
            .collect::<Vec<_>>()
    };
    let (pos, neg) = (done(pos), done(neg));
    out.counter_reset_hint = hint;
    if !out.uses_custom_buckets() {
        out.schema = schema;
        out.zero_threshold = zt;
    } else if let Some(b) = bounds {
        out.custom_values = b;
    }
    out.count = count.0 + count.1;
    out.sum = total.0 + total.1;
    out.zero_count = zero.0 + zero.1;
    out.set_buckets(&pos, &neg);
    Ok((out, reconciled))
}

fn reconciled_info(ann: &mut Annotations, during: &str) {
    ann.info(format!(
        "mismatched custom buckets were reconciled during {during}"
    ));
}
