//! Aggregation operators (`sum`, `avg`, `topk`, ... with `by`/`without`),
//! evaluated step by step over the grid.

use std::collections::HashMap;

use super::functions::Arg;
use super::kahan::{KahanMean, KahanSum};
use super::range_fn::quantile;
use super::{Annotations, EvalError, Grid, SeriesData};
use crate::model::{Label, Labels};
use crate::promql::value::Point;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
    Limitk,
    LimitRatio,
}

impl AggOp {
    pub fn from_name(name: &str) -> Option<AggOp> {
        use AggOp::*;
        Some(match name {
            "sum" => Sum,
            "avg" => Avg,
            "min" => Min,
            "max" => Max,
            "count" => Count,
            "group" => Group,
            "stddev" => Stddev,
            "stdvar" => Stdvar,
            "topk" => Topk,
            "bottomk" => Bottomk,
            "quantile" => Quantile,
            "count_values" => CountValues,
            "limitk" => Limitk,
            "limit_ratio" => LimitRatio,
            _ => return None,
        })
    }

    /// Operators whose output series are input series, not groups.
    pub fn selects_series(self) -> bool {
        matches!(
            self,
            AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio
        )
    }
}

/// How series are grouped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grouping {
    pub labels: Vec<String>,
    pub without: bool,
}

impl Grouping {
    fn key(&self, s: &SeriesData) -> Labels {
        let keep = |l: &Label| {
            if self.without {
                &*l.name != "__name__" && !self.labels.iter().any(|n| n == &*l.name)
            } else {
                self.labels.iter().any(|n| n == &*l.name)
            }
        };
        Labels::from_pairs(
            s.labels
                .iter()
                .filter(|l| keep(l))
                .map(|l| (l.name.clone(), l.value.clone())),
        )
        .unwrap_or_default()
    }
}

pub fn eval(
    op: AggOp,
    grid: Grid,
    input: Vec<SeriesData>,
    param: Option<Arg>,
    grouping: &Grouping,
    ann: &mut Annotations,
) -> Result<Vec<SeriesData>, EvalError> {
    // Group index per series, groups in order of first appearance.
    let mut group_of: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Labels> = Vec::new();
    let mut member: Vec<usize> = Vec::with_capacity(input.len());
    // A group keeps a metric name marked for removal if any member's was
    // (delayed name removal: names go only when the query finishes).
    let mut group_drops_name: Vec<bool> = Vec::new();
    for s in &input {
        let key = grouping.key(s);
        let next = groups.len();
        let g = *group_of.entry(key.clone()).or_insert_with(|| {
            groups.push(key);
            group_drops_name.push(false);
            next
        });
        group_drops_name[g] |= s.drop_name;
        member.push(g);
    }
    let scalar_param = |i: usize| -> f64 {
        match &param {
            Some(Arg::Scalar(v)) => v.get(i).copied().unwrap_or(f64::NAN),
            _ => f64::NAN,
        }
    };

    if op.selects_series() {
        return select_series(op, grid, input, &member, groups.len(), scalar_param, ann);
    }
    if op == AggOp::CountValues {
        let label = match &param {
            Some(Arg::String(s)) => s.clone(),
            _ => String::new(),
        };
        if label.is_empty() || label.contains(char::is_whitespace) && !label.is_ascii() {
            return Err(EvalError(format!("invalid label name {label:?}")));
        }
        return Ok(count_values(grid, &input, &member, &groups, &label));
    }
    if op == AggOp::Quantile {
        for i in 0..grid.len() {
            let q = scalar_param(i);
            if !(0.0..=1.0).contains(&q) {
                ann.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    crate::promql::format_value(q)
                ));
                break;
            }
        }
    }

    // Values per group per step.
    let steps = grid.len();
    let mut cells: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); steps]; groups.len()];
    for (s, &g) in input.iter().zip(&member) {
        for p in &s.points {
            if let Some(i) = grid.index(p.t) {
                cells[g][i].push(p.v);
            }
        }
    }
    // Histograms per group per step, only when the input has any.
    let any_hists = input.iter().any(|s| !s.hists.is_empty());
    let mut hcells: Vec<Vec<Vec<std::sync::Arc<crate::model::FloatHistogram>>>> = if any_hists {
        vec![vec![Vec::new(); steps]; groups.len()]
    } else {
        Vec::new()
    };
    if any_hists {
        for (s, &g) in input.iter().zip(&member) {
            for p in &s.hists {
                if let Some(i) = grid.index(p.t) {
                    hcells[g][i].push(p.h.clone());
                }
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (g, labels) in groups.into_iter().enumerate() {
        let mut points = Vec::new();
        let mut hists = Vec::new();
        for (i, vals) in cells[g].iter_mut().enumerate() {
            let hs: &[std::sync::Arc<crate::model::FloatHistogram>] =
                if any_hists { &hcells[g][i] } else { &[] };
            if !hs.is_empty() {
                match op {
                    AggOp::Sum | AggOp::Avg => {
                        if !vals.is_empty() {
                            ann.warn(
                                "encountered a mix of histograms and floats for aggregation".into(),
                            );
                        } else if let Some(h) = super::native::aggregate(hs, op == AggOp::Avg, ann)
                        {
                            hists.push(crate::promql::value::HPoint {
                                t: grid.time(i),
                                h: std::sync::Arc::new(h),
                            });
                        }
                        continue;
                    }
                    AggOp::Count | AggOp::Group => {
                        let v = if op == AggOp::Count {
                            (vals.len() + hs.len()) as f64
                        } else {
                            1.0
                        };
                        points.push(Point { t: grid.time(i), v });
                        continue;
                    }
                    _ => {
                        let name = format!("{op:?}").to_lowercase();
                        ann.info(format!("ignored histogram in {name} aggregation"));
                    }
                }
            }
            if vals.is_empty() {
                continue;
            }
            let v = match op {
                AggOp::Sum => {
                    let mut k = KahanSum::default();
                    vals.iter().for_each(|v| k.add(*v));
                    k.value()
                }
                AggOp::Avg => {
                    let mut m = KahanMean::default();
                    vals.iter().for_each(|v| m.add(*v));
                    m.value()
                }
                AggOp::Min => vals[1..]
                    .iter()
                    .fold(vals[0], |m, &v| if m > v || m.is_nan() { v } else { m }),
                AggOp::Max => vals[1..]
                    .iter()
                    .fold(vals[0], |m, &v| if m < v || m.is_nan() { v } else { m }),
                AggOp::Count => vals.len() as f64,
                AggOp::Group => 1.0,
                AggOp::Stdvar | AggOp::Stddev => {
                    let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
                    for &v in vals.iter() {
                        n += 1.0;
                        let delta = v - mean;
                        mean += delta / n;
                        m2 += delta * (v - mean);
                    }
                    let var = m2 / n;
                    if op == AggOp::Stddev { var.sqrt() } else { var }
                }
                AggOp::Quantile => quantile(scalar_param(i), vals),
                _ => unreachable!("handled above"),
            };
            points.push(Point { t: grid.time(i), v });
        }
        if !points.is_empty() || !hists.is_empty() {
            out.push(SeriesData {
                labels,
                drop_name: group_drops_name[g],
                points,
                hists,
            });
        }
    }
    Ok(out)
}

fn count_values(
    grid: Grid,
    input: &[SeriesData],
    member: &[usize],
    groups: &[Labels],
    label: &str,
) -> Vec<SeriesData> {
    // Output series are keyed by their final labels, not by group: the
    // value label may overwrite a grouping label (`count_values by (job)
    // ("job", x)`), and then groups merge, as in Prometheus.
    let mut slot_of: HashMap<(usize, String), usize> = HashMap::new();
    let mut out_of: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<(Labels, Vec<f64>)> = Vec::new();
    for (s, &g) in input.iter().zip(member) {
        // Histograms count by their string form, as in Prometheus.
        let values = s
            .points
            .iter()
            .map(|p| (p.t, crate::promql::format_value(p.v)))
            .chain(s.hists.iter().map(|p| (p.t, p.h.prom_string())));
        for (t, text) in values {
            let Some(i) = grid.index(t) else { continue };
            let slot = match slot_of.get(&(g, text.clone())) {
                Some(&slot) => slot,
                None => {
                    let labels = super::with_label(&groups[g], label, &text);
                    let slot = *out_of.entry(labels.clone()).or_insert_with(|| {
                        out.push((labels, vec![0.0; grid.len()]));
                        out.len() - 1
                    });
                    slot_of.insert((g, text), slot);
                    slot
                }
            };
            out[slot].1[i] += 1.0;
        }
    }
    out.into_iter()
        .map(|(labels, c)| {
            let points = c
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0.0)
                .map(|(i, n)| Point {
                    t: grid.time(i),
                    v: n,
                })
                .collect();
            SeriesData::new(labels, points)
        })
        .collect()
}

/// `topk`, `bottomk`, `limitk`, `limit_ratio`: keep some input series per
/// group and step, with their labels.
fn select_series(
    op: AggOp,
    grid: Grid,
    input: Vec<SeriesData>,
    member: &[usize],
    ngroups: usize,
    param: impl Fn(usize) -> f64,
    ann: &mut Annotations,
) -> Result<Vec<SeriesData>, EvalError> {
    if matches!(op, AggOp::Topk | AggOp::Bottomk) && input.iter().any(|s| !s.hists.is_empty()) {
        let name = format!("{op:?}").to_lowercase();
        ann.info(format!("ignored histogram in {name} aggregation"));
    }
    let steps = grid.len();
    // Per step, per group: (series index, value).
    let mut cells: Vec<Vec<Vec<(usize, f64)>>> = vec![vec![Vec::new(); ngroups]; steps];
    for (si, (s, &g)) in input.iter().zip(member).enumerate() {
        for p in &s.points {
            if let Some(i) = grid.index(p.t) {
                cells[i][g].push((si, p.v));
            }
        }
    }
    let mut keep: Vec<Vec<Point>> = vec![Vec::new(); input.len()];
    let mut rank: Vec<(usize, usize)> = vec![(usize::MAX, 0); input.len()];
    for (i, per_group) in cells.into_iter().enumerate() {
        let p = param(i);
        if p.is_nan() {
            return Err(EvalError(if op == AggOp::LimitRatio {
                "Ratio value is NaN".into()
            } else {
                "Parameter value is NaN".into()
            }));
        }
        if op != AggOp::LimitRatio && p.abs() >= 9.223372036854776e18 {
            return Err(EvalError(format!(
                "Scalar value {} overflows int64",
                crate::promql::format_value(p)
            )));
        }
        for (g, mut members) in per_group.into_iter().enumerate() {
            let chosen: Vec<(usize, f64)> = match op {
                AggOp::Topk | AggOp::Bottomk => {
                    let k = p as i64;
                    if k < 1 {
                        continue;
                    }
                    let top = op == AggOp::Topk;
                    members.sort_by(|a, b| {
                        let (x, y) = (a.1, b.1);
                        // NaN loses in both directions.
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if top => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                            _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                        }
                    });
                    members.truncate(k as usize);
                    members
                }
                AggOp::Limitk => {
                    let k = p as i64;
                    if k < 1 {
                        continue;
                    }
                    members.truncate(k as usize);
                    members
                }
                _ => {
                    // limit_ratio: a stable pseudo-random share of series.
                    let r = p.clamp(-1.0, 1.0);
                    members
                        .into_iter()
                        .filter(|(si, _)| {
                            let h = input[*si].labels.stable_hash() as f64 / u64::MAX as f64;
                            if r >= 0.0 { h < r } else { h >= 1.0 + r }
                        })
                        .collect()
                }
            };
            for (pos, (si, v)) in chosen.into_iter().enumerate() {
                keep[si].push(Point { t: grid.time(i), v });
                if rank[si].0 == usize::MAX {
                    rank[si] = (g, pos);
                }
            }
        }
    }
    let mut out: Vec<(usize, usize, SeriesData)> = Vec::new();
    for (si, s) in input.into_iter().enumerate() {
        let points = std::mem::take(&mut keep[si]);
        if points.is_empty() {
            continue;
        }
        out.push((
            rank[si].0,
            rank[si].1,
            SeriesData {
                labels: s.labels,
                drop_name: s.drop_name,
                points,
                hists: Vec::new(),
            },
        ));
    }
    // Groups in order, then rank inside the group: the order an instant
    // topk query shows.
    out.sort_by_key(|(g, pos, _)| (*g, *pos));
    Ok(out.into_iter().map(|(_, _, s)| s).collect())
}
