//! Binary operators: arithmetic, comparison (filtering or `bool`) and set
//! operators, between scalars and vectors, with Prometheus's vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`).

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use super::{Annotations, EvalError, Grid, SeriesData, labels_string};
use crate::model::{FloatHistogram, Label, Labels};
use crate::promql::value::{HPoint, Point};

/// One element's value at a step: a float or a native histogram.
#[derive(Clone, Debug)]
enum Val {
    F(f64),
    H(Arc<FloatHistogram>),
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::F(_) => "float",
            Val::H(_) => "histogram",
        }
    }
}

fn op_symbol(op: BinOp) -> &'static str {
    use BinOp::*;
    match op {
        Add => "+",
        Sub => "-",
        Mul => "*",
        Div => "/",
        Mod => "%",
        Pow => "^",
        Atan2 => "atan2",
        Eq => "==",
        Ne => "!=",
        Gt => ">",
        Lt => "<",
        Ge => ">=",
        Le => "<=",
        And => "and",
        Or => "or",
        Unless => "unless",
    }
}

/// `l op r` where at least one side is a histogram: the result value and
/// whether a comparison keeps the element; `None` when the operation is
/// undefined for these types (reported as Prometheus does).
fn apply_hist(
    op: BinOp,
    l: &Val,
    r: &Val,
    return_bool: bool,
    ann: &mut Annotations,
) -> Option<(Val, bool)> {
    let incompatible = |ann: &mut Annotations| {
        ann.info(format!(
            "incompatible sample types encountered for binary operator {:?}: {} {} {}",
            op_symbol(op),
            l.type_name(),
            op_symbol(op),
            r.type_name()
        ));
        None
    };
    match (l, r) {
        (Val::H(h), Val::F(f)) | (Val::F(f), Val::H(h)) if op == BinOp::Mul => {
            let mut h = (**h).clone();
            h.mul(*f);
            Some((Val::H(Arc::new(h)), true))
        }
        (Val::H(h), Val::F(f)) if op == BinOp::Div => {
            let mut h = (**h).clone();
            h.div(*f);
            Some((Val::H(Arc::new(h)), true))
        }
        (Val::H(a), Val::H(b)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let mut h = (**a).clone();
            let res = if op == BinOp::Add { h.add(b) } else { h.sub(b) };
            match res {
                Ok(reconciled) => {
                    if reconciled {
                        let during = if op == BinOp::Add {
                            "addition"
                        } else {
                            "subtraction"
                        };
                        ann.info(format!(
                            "mismatched custom buckets were reconciled during {during}"
                        ));
                    }
                    h.compact();
                    Some((Val::H(Arc::new(h)), true))
                }
                Err(_) => {
                    ann.warn(format!(
                        "incompatible bucket layout encountered for binary operator {}",
                        op_symbol(op)
                    ));
                    None
                }
            }
        }
        (Val::H(a), Val::H(b)) if matches!(op, BinOp::Eq | BinOp::Ne) => {
            let same = a == b;
            let keep = if op == BinOp::Eq { same } else { !same };
            if return_bool {
                Some((Val::F(f64::from(u8::from(keep))), true))
            } else {
                Some((l.clone(), keep))
            }
        }
        _ => incompatible(ann),
    }
}

/// Splits values back into float and histogram points.
fn push_val(s: &mut SeriesData, t: i64, v: Val) {
    match v {
        Val::F(v) => s.points.push(Point { t, v }),
        Val::H(h) => s.hists.push(HPoint { t, h }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    pub fn is_arithmetic(self) -> bool {
        !self.is_comparison() && !self.is_set()
    }

    /// The value and whether a comparison keeps the element.
    pub fn apply(self, l: f64, r: f64) -> (f64, bool) {
        use BinOp::*;
        match self {
            Add => (l + r, true),
            Sub => (l - r, true),
            Mul => (l * r, true),
            Div => (l / r, true),
            Mod => (l % r, true),
            Pow => (l.powf(r), true),
            Atan2 => (l.atan2(r), true),
            Eq => (l, l == r),
            Ne => (l, l != r),
            Gt => (l, l > r),
            Lt => (l, l < r),
            Ge => (l, l >= r),
            Le => (l, l <= r),
            And | Or | Unless => (l, true),
        }
    }
}

/// Vector matching from `on`/`ignoring` and `group_left`/`group_right`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Matching {
    pub card: Card,
    /// `on(...)` rather than `ignoring(...)`.
    pub on: bool,
    pub labels: Vec<String>,
    /// Labels copied from the "one" side (`group_left(...)`).
    pub include: Vec<String>,
    /// `fill_left(v)` / `fill_right(v)` (as bits, to keep the type `Eq`):
    /// the value an unmatched element on the other side is paired with.
    pub fill_lhs: Option<u64>,
    pub fill_rhs: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Card {
    #[default]
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

impl Matching {
    /// The labels two series must share to match.
    fn signature(&self, l: &Labels) -> Labels {
        Labels::from_pairs(
            l.iter()
                .filter(|x| self.keeps(x))
                .map(|x| (x.name.clone(), x.value.clone())),
        )
        .unwrap_or_default()
    }

    fn keeps(&self, x: &Label) -> bool {
        let listed = self.labels.iter().any(|n| n == &*x.name);
        if self.on {
            listed
        } else {
            !listed && &*x.name != "__name__"
        }
    }
}

/// An operand: a scalar (one value per step) or a vector.
pub enum Operand {
    Scalar(Vec<f64>),
    Vector(Vec<SeriesData>),
}

pub fn eval(
    op: BinOp,
    return_bool: bool,
    matching: &Matching,
    lhs: Operand,
    rhs: Operand,
    grid: Grid,
    ann: &mut Annotations,
) -> Result<Vec<SeriesData>, EvalError> {
    match (lhs, rhs) {
        (Operand::Scalar(l), Operand::Scalar(r)) => {
            let points = grid
                .times()
                .zip(l.iter().zip(&r))
                .map(|(t, (&a, &b))| {
                    let (v, keep) = op.apply(a, b);
                    let v = if op.is_comparison() {
                        f64::from(u8::from(keep))
                    } else {
                        v
                    };
                    Point { t, v }
                })
                .collect();
            Ok(vec![SeriesData::new(Labels::default(), points)])
        }
        (Operand::Vector(v), Operand::Scalar(s)) => {
            Ok(vector_scalar(op, return_bool, v, &s, false, grid, ann))
        }
        (Operand::Scalar(s), Operand::Vector(v)) => {
            Ok(vector_scalar(op, return_bool, v, &s, true, grid, ann))
        }
        (Operand::Vector(l), Operand::Vector(r)) => {
            if op.is_set() {
                Ok(set_op(op, matching, l, r, grid))
            } else {
                vector_vector(op, return_bool, matching, l, r, grid, ann)
            }
        }
    }
}

fn vector_scalar(
    op: BinOp,
    return_bool: bool,
    input: Vec<SeriesData>,
    scalar: &[f64],
    scalar_on_left: bool,
    grid: Grid,
    ann: &mut Annotations,
) -> Vec<SeriesData> {
    input
        .into_iter()
        .filter_map(|mut s| {
            if !s.hists.is_empty() {
                let mut hists = Vec::new();
                for p in std::mem::take(&mut s.hists) {
                    let sv = grid
                        .index(p.t)
                        .and_then(|i| scalar.get(i))
                        .copied()
                        .unwrap_or(f64::NAN);
                    let h = Val::H(p.h);
                    let (l, r) = if scalar_on_left {
                        (Val::F(sv), h)
                    } else {
                        (h, Val::F(sv))
                    };
                    match apply_hist(op, &l, &r, return_bool, ann) {
                        Some((Val::H(h), true)) => hists.push(HPoint { t: p.t, h }),
                        Some((Val::F(v), true)) => s.points.push(Point { t: p.t, v }),
                        _ => {}
                    }
                }
                s.hists = hists;
            }
            s.points = s
                .points
                .iter()
                .filter_map(|p| {
                    let sv = grid
                        .index(p.t)
                        .and_then(|i| scalar.get(i))
                        .copied()
                        .unwrap_or(f64::NAN);
                    let (l, r) = if scalar_on_left { (sv, p.v) } else { (p.v, sv) };
                    let (mut v, keep) = op.apply(l, r);
                    if op.is_comparison() && scalar_on_left {
                        v = p.v; // a comparison always yields the vector's value
                    }
                    if return_bool {
                        return Some(Point {
                            t: p.t,
                            v: f64::from(u8::from(keep)),
                        });
                    }
                    keep.then_some(Point { t: p.t, v })
                })
                .collect();
            if op.is_arithmetic() || return_bool {
                s.drop_name = true;
            }
            (!s.is_empty()).then_some(s)
        })
        .collect()
}

/// Points of every series keyed by step, for per-step matching.
fn by_step(series: &[SeriesData], grid: Grid) -> Vec<Vec<(usize, Val)>> {
    let mut steps = vec![Vec::new(); grid.len()];
    for (si, s) in series.iter().enumerate() {
        for p in &s.points {
            if let Some(i) = grid.index(p.t) {
                steps[i].push((si, Val::F(p.v)));
            }
        }
        for p in &s.hists {
            if let Some(i) = grid.index(p.t) {
                steps[i].push((si, Val::H(p.h.clone())));
            }
        }
    }
    steps
}

fn set_op(
    op: BinOp,
    matching: &Matching,
    lhs: Vec<SeriesData>,
    rhs: Vec<SeriesData>,
    grid: Grid,
) -> Vec<SeriesData> {
    let lsig: Vec<Labels> = lhs.iter().map(|s| matching.signature(&s.labels)).collect();
    let rsig: Vec<Labels> = rhs.iter().map(|s| matching.signature(&s.labels)).collect();
    let (lsteps, rsteps) = (by_step(&lhs, grid), by_step(&rhs, grid));
    let mut lkeep: Vec<Vec<(i64, Val)>> = vec![Vec::new(); lhs.len()];
    let mut rkeep: Vec<Vec<(i64, Val)>> = vec![Vec::new(); rhs.len()];
    for i in 0..grid.len() {
        let t = grid.time(i);
        match op {
            BinOp::And | BinOp::Unless => {
                let present: HashSet<&Labels> =
                    rsteps[i].iter().map(|(si, _)| &rsig[*si]).collect();
                for (si, v) in &lsteps[i] {
                    if present.contains(&lsig[*si]) == (op == BinOp::And) {
                        lkeep[*si].push((t, v.clone()));
                    }
                }
            }
            _ => {
                let present: HashSet<&Labels> =
                    lsteps[i].iter().map(|(si, _)| &lsig[*si]).collect();
                for (si, v) in &lsteps[i] {
                    lkeep[*si].push((t, v.clone()));
                }
                for (si, v) in &rsteps[i] {
                    if !present.contains(&rsig[*si]) {
                        rkeep[*si].push((t, v.clone()));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (mut s, vals) in lhs.into_iter().zip(lkeep).chain(rhs.into_iter().zip(rkeep)) {
        if !vals.is_empty() {
            s.points = Vec::new();
            s.hists = Vec::new();
            for (t, v) in vals {
                push_val(&mut s, t, v);
            }
            out.push(s);
        }
    }
    out
}

fn vector_vector(
    op: BinOp,
    return_bool: bool,
    matching: &Matching,
    lhs: Vec<SeriesData>,
    rhs: Vec<SeriesData>,
    grid: Grid,
    ann: &mut Annotations,
) -> Result<Vec<SeriesData>, EvalError> {
    // The "many" side goes first; group_right swaps the operands.
    let swapped = matching.card == Card::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let msig: Vec<Labels> = many.iter().map(|s| matching.signature(&s.labels)).collect();
    let osig: Vec<Labels> = one.iter().map(|s| matching.signature(&s.labels)).collect();
    let (msteps, osteps) = (by_step(&many, grid), by_step(&one, grid));

    // Output series by result labels; points appended step by step.
    let mut out: Vec<SeriesData> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut result_labels: HashMap<(usize, usize), Labels> = HashMap::new();
    for i in 0..grid.len() {
        let t = grid.time(i);
        let mut one_by_sig: HashMap<&Labels, (usize, &Val)> = HashMap::new();
        for (si, v) in &osteps[i] {
            let si = *si;
            if let Some(&(prev, _)) = one_by_sig.get(&osig[si]) {
                let side = if swapped { "left" } else { "right" };
                let matched = matching_labels_string(matching, &one[si].labels);
                return Err(EvalError(format!(
                    "found duplicate series for the match group {matched} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    labels_string(&one[prev].labels),
                    labels_string(&one[si].labels)
                )));
            }
            one_by_sig.insert(&osig[si], (si, v));
        }
        let mut matched: HashMap<&Labels, HashSet<Labels>> = HashMap::new();
        for (mi, mv) in &msteps[i] {
            let mi = *mi;
            let Some(&(oi, ov)) = one_by_sig.get(&msig[mi]) else {
                continue;
            };
            let seen = matched.entry(&msig[mi]).or_default();
            // Checked before comparisons filter, so an ambiguous match is
            // an error whatever the values.
            if matching.card == Card::OneToOne {
                if !seen.is_empty() {
                    return Err(EvalError(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
                seen.insert(Labels::default());
            }
            let (l, r) = if swapped { (ov, mv) } else { (mv, ov) };
            let v = match (l, r) {
                (Val::F(l), Val::F(r)) => {
                    let (mut v, keep) = op.apply(*l, *r);
                    if return_bool {
                        v = f64::from(u8::from(keep));
                    } else if !keep {
                        continue;
                    }
                    Val::F(v)
                }
                _ => match apply_hist(op, l, r, return_bool, ann) {
                    Some((v, true)) => v,
                    _ => continue,
                },
            };
            let labels = result_labels
                .entry((mi, oi))
                .or_insert_with(|| result_metric(&many[mi].labels, &one[oi].labels, matching))
                .clone();
            if matching.card != Card::OneToOne {
                if seen.contains(&labels) {
                    return Err(EvalError(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                seen.insert(labels.clone());
            }
            let drop_name = many[mi].drop_name || op.is_arithmetic() || return_bool;
            let idx = *out_index.entry(labels.clone()).or_insert_with(|| {
                out.push(SeriesData {
                    labels,
                    drop_name,
                    points: Vec::new(),
                    hists: Vec::new(),
                });
                out.len() - 1
            });
            push_val(&mut out[idx], t, v);
        }
        // fill modifiers: elements without a partner meet the fill value.
        // `fill_left` stands in for a missing "many"-side element and
        // `fill_right` for a missing "one"-side one, also under group_right.
        let (fill_many, fill_one) = (matching.fill_lhs, matching.fill_rhs);
        let mut filled: Vec<(Labels, bool, f64)> = Vec::new();
        if let Some(f) = fill_one.map(f64::from_bits) {
            for (mi, mv) in &msteps[i] {
                let mi = *mi;
                let Val::F(mv) = *mv else { continue };
                if one_by_sig.contains_key(&msig[mi]) {
                    continue;
                }
                let (l, r) = if swapped { (f, mv) } else { (mv, f) };
                if let Some(v) = fill_result(op, return_bool, l, r) {
                    let labels = result_metric(&many[mi].labels, &Labels::default(), matching);
                    let drop_name = many[mi].drop_name || op.is_arithmetic() || return_bool;
                    filled.push((labels, drop_name, v));
                }
            }
        }
        if let Some(f) = fill_many.map(f64::from_bits) {
            for (oi, ov) in &osteps[i] {
                let oi = *oi;
                let Val::F(ov) = *ov else { continue };
                if matched.contains_key(&osig[oi]) {
                    continue;
                }
                let (l, r) = if swapped { (ov, f) } else { (f, ov) };
                if let Some(v) = fill_result(op, return_bool, l, r) {
                    // The match group's labels stand for the missing side.
                    filled.push((osig[oi].clone(), true, v));
                }
            }
        }
        for (labels, drop_name, v) in filled {
            let idx = *out_index.entry(labels.clone()).or_insert_with(|| {
                out.push(SeriesData {
                    labels,
                    drop_name,
                    points: Vec::new(),
                    hists: Vec::new(),
                });
                out.len() - 1
            });
            out[idx].points.push(Point { t, v });
        }
    }
    Ok(out)
}

fn fill_result(op: BinOp, return_bool: bool, l: f64, r: f64) -> Option<f64> {
    let (v, keep) = op.apply(l, r);
    if return_bool {
        Some(f64::from(u8::from(keep)))
    } else {
        keep.then_some(v)
    }
}

fn matching_labels_string(matching: &Matching, l: &Labels) -> String {
    labels_string(&matching.signature(l))
}

fn result_metric(many: &Labels, one: &Labels, matching: &Matching) -> Labels {
    let mut pairs: Vec<(String, String)> = many
        .iter()
        .filter(|x| match matching.card {
            Card::OneToOne if matching.on => matching.labels.iter().any(|n| n == &*x.name),
            Card::OneToOne => !matching.labels.iter().any(|n| n == &*x.name),
            _ => true,
        })
        .map(|x| (x.name.to_string(), x.value.to_string()))
        .collect();
    for name in &matching.include {
        pairs.retain(|(n, _)| n != name);
        if let Some(v) = one.get(name) {
            pairs.push((name.clone(), v.to_owned()));
        }
    }
    Labels::from_pairs(pairs).unwrap_or_default()
}
