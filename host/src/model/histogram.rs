//! Native histograms: Prometheus's sparse, exponentially bucketed
//! histograms (schemas -4..=8) and histograms with custom bucket bounds
//! (schema -53).
//!
//! Ember keeps every native histogram as a float histogram. Integer
//! histograms (from remote write) are converted on ingestion: their counts
//! are exact in an `f64` up to 2^53, and PromQL turns them into float
//! histograms at the first operation anyway.

use std::fmt;

/// The schema of histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// A run of consecutive buckets: `offset` buckets after the previous span
/// (or from index 0 for the first span), `length` buckets long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// What the producer says about counter resets, as in Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    CounterReset,
    NotCounterReset,
    Gauge,
}

impl CounterResetHint {
    pub fn as_u8(self) -> u8 {
        match self {
            CounterResetHint::Unknown => 0,
            CounterResetHint::CounterReset => 1,
            CounterResetHint::NotCounterReset => 2,
            CounterResetHint::Gauge => 3,
        }
    }

    /// The hint of a sum: the same hint stays, a gauge makes a gauge,
    /// anything else is unknown (Prometheus's `Add`).
    pub fn combine(self, other: CounterResetHint) -> CounterResetHint {
        use CounterResetHint::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Gauge, _) | (_, Gauge) => Gauge,
            _ => Unknown,
        }
    }

    pub fn from_u8(v: u8) -> Option<CounterResetHint> {
        Some(match v {
            0 => CounterResetHint::Unknown,
            1 => CounterResetHint::CounterReset,
            2 => CounterResetHint::NotCounterReset,
            3 => CounterResetHint::Gauge,
            _ => return None,
        })
    }
}

/// Why two histograms cannot be combined.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    #[error("histograms with exponential and custom buckets cannot be combined")]
    MixedExponentialCustom,
    #[error("histograms with different custom bucket bounds cannot be combined")]
    MismatchedCustomBuckets,
}

/// A native histogram with float counts.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    /// Absolute counts, one per bucket the spans describe.
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53 only), ascending;
    /// the last bucket, up to +Inf, is implicit.
    pub custom_values: Vec<f64>,
}

/// One bucket as iteration returns it: `(lower, upper]` (the zero bucket
/// is `[-threshold, threshold]`) and its count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub count: f64,
    pub index: i32,
}

/// `(index, count)` of every bucket the spans describe, in index order.
fn expand(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx = 0i32;
    let mut b = buckets.iter();
    for (k, s) in spans.iter().enumerate() {
        idx = if k == 0 { s.offset } else { idx + s.offset };
        for _ in 0..s.length {
            if let Some(c) = b.next() {
                out.push((idx, *c));
            }
            idx += 1;
        }
    }
    out
}

/// Spans and counts for sorted `(index, count)` pairs, empty buckets
/// left out.
fn collapse(pairs: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::new();
    let mut next = 0i32; // index after the last bucket written
    for &(idx, c) in pairs {
        if c == 0.0 {
            continue;
        }
        match spans.last_mut() {
            Some(s) if idx == next => s.length += 1,
            Some(_) => spans.push(Span {
                offset: idx - next,
                length: 1,
            }),
            None => spans.push(Span {
                offset: idx,
                length: 1,
            }),
        }
        counts.push(c);
        next = idx + 1;
    }
    (spans, counts)
}

/// The bounds present in both sorted lists.
pub fn common_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().copied().filter(|x| b.contains(x)).collect()
}

/// Merges sorted `(index, count)` lists, applying `f` to counts of the
/// same index (a missing side counts 0).
fn merge(a: &[(i32, f64)], b: &[(i32, f64)], f: impl Fn(f64, f64) -> f64) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if j >= b.len() || (i < a.len() && a[i].0 < b[j].0) {
            out.push((a[i].0, f(a[i].1, 0.0)));
            i += 1;
        } else if i >= a.len() || b[j].0 < a[i].0 {
            out.push((b[j].0, f(0.0, b[j].1)));
            j += 1;
        } else {
            out.push((a[i].0, f(a[i].1, b[j].1)));
            i += 1;
            j += 1;
        }
    }
    out
}

/// Bucket indexes of `schema` mapped to the coarser `target` schema.
fn reduce(pairs: &[(i32, f64)], schema: i32, target: i32) -> Vec<(i32, f64)> {
    if target >= schema {
        return pairs.to_vec();
    }
    let shift = (schema - target) as u32;
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(pairs.len());
    for &(idx, c) in pairs {
        let t = ((idx - 1) >> shift) + 1;
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

/// 2^(2^-schema), the ratio between neighbouring bucket bounds of schemas
/// 0 to 8, as the bit patterns Prometheus's bound table was built from. Its
/// generator took them from Go's `math.Exp2`, which returns sqrt(2) one ulp
/// below the correctly rounded value; every bound derived from it inherits
/// that. Using the same factors makes Ember's bounds (shown in API answers
/// and used by `histogram_quantile`) equal to Prometheus's to the last bit.
const BOUND_FACTORS: [u64; 9] = [
    0x4000000000000000,
    0x3ff6a09e667f3bcc,
    0x3ff306fe0a31b715,
    0x3ff172b83c7d517b,
    0x3ff0b5586cf9890f,
    0x3ff059b0d3158574,
    0x3ff02c9a3e778061,
    0x3ff0163da9fb3335,
    0x3ff00b1afa5abcbf,
];

/// Per schema 0 to 8, the bound fractions in [0.5, 1) of its 2^schema
/// buckets per power of two. Odd positions step up from their left
/// neighbour by the schema's factor; even ones repeat the coarser schema's
/// value, which keeps the error from piling up along the chain (and is how
/// Prometheus's table was made).
static BOUND_FRACTIONS: std::sync::LazyLock<Vec<Vec<f64>>> = std::sync::LazyLock::new(|| {
    let mut all: Vec<Vec<f64>> = Vec::with_capacity(BOUND_FACTORS.len());
    for (schema, bits) in BOUND_FACTORS.iter().enumerate() {
        let factor = f64::from_bits(*bits);
        let mut fractions = vec![0.5];
        for k in 1..(1usize << schema) {
            let next = if k % 2 == 0 {
                all[schema - 1][k / 2]
            } else {
                fractions[k - 1] * factor
            };
            fractions.push(next);
        }
        all.push(fractions);
    }
    all
});

/// `x` × 2^`exp`, exactly unless the result is subnormal or overflows.
fn ldexp(x: f64, exp: i64) -> f64 {
    let pow2 = |n: i64| f64::from_bits(((n + 1023) as u64) << 52);
    let exp = exp.clamp(-2000, 2000);
    // Two factors so each power of two stays a normal float.
    let half = exp / 2;
    x * pow2(half) * pow2(exp - half)
}

/// The upper bound of exponential bucket `idx` in `schema`.
pub fn exponential_bound(idx: i32, schema: i32) -> f64 {
    // The last finite bucket ends at f64::MAX rather than 2^1024 (+Inf), so
    // that observations of +Inf keep a bucket of their own, as in Prometheus.
    if schema < 0 {
        let exp = (idx as i64) << (-schema).min(62);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let idx = idx as i64;
    let Some(fractions) = BOUND_FRACTIONS.get(schema as usize) else {
        // Finer than any schema Prometheus defines.
        let per = (1i64 << schema.min(30)) as f64;
        return 2f64.powf(idx as f64 / per);
    };
    let per = 1i64 << schema;
    let frac = fractions[idx.rem_euclid(per) as usize];
    let exp = idx.div_euclid(per) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

impl FloatHistogram {
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// The upper bound of bucket `idx` of this histogram's schema.
    pub fn bound(&self, idx: i32) -> f64 {
        if self.uses_custom_buckets() {
            if idx < 0 {
                return f64::NEG_INFINITY;
            }
            return self
                .custom_values
                .get(idx as usize)
                .copied()
                .unwrap_or(f64::INFINITY);
        }
        exponential_bound(idx, self.schema)
    }

    pub fn positive(&self) -> Vec<(i32, f64)> {
        expand(&self.positive_spans, &self.positive_buckets)
    }

    pub fn negative(&self) -> Vec<(i32, f64)> {
        expand(&self.negative_spans, &self.negative_buckets)
    }

    fn set_positive(&mut self, pairs: &[(i32, f64)]) {
        (self.positive_spans, self.positive_buckets) = collapse(pairs);
    }

    fn set_negative(&mut self, pairs: &[(i32, f64)]) {
        (self.negative_spans, self.negative_buckets) = collapse(pairs);
    }

    /// Replaces the buckets with sorted `(index, count)` pairs; empty
    /// buckets are left out.
    pub fn set_buckets(&mut self, positive: &[(i32, f64)], negative: &[(i32, f64)]) {
        self.set_positive(positive);
        self.set_negative(negative);
    }

    /// Drops empty buckets and joins adjacent spans (Prometheus's
    /// `Compact(0)`).
    pub fn compact(&mut self) {
        let p = self.positive();
        let n = self.negative();
        self.set_positive(&p);
        self.set_negative(&n);
    }

    /// Reduces the resolution to `target` (a coarser exponential schema).
    pub fn reduce_to(&mut self, target: i32) {
        if self.uses_custom_buckets() || target >= self.schema {
            return;
        }
        let p = reduce(&self.positive(), self.schema, target);
        let n = reduce(&self.negative(), self.schema, target);
        self.schema = target;
        self.set_positive(&p);
        self.set_negative(&n);
    }

    /// Multiplies every count and the sum by `f`.
    pub fn mul(&mut self, f: f64) {
        self.zero_count *= f;
        self.count *= f;
        self.sum *= f;
        self.positive_buckets.iter_mut().for_each(|c| *c *= f);
        self.negative_buckets.iter_mut().for_each(|c| *c *= f);
    }

    /// Divides every count and the sum by `d`. Division by zero removes
    /// all buckets, as in Prometheus.
    pub fn div(&mut self, d: f64) {
        self.zero_count /= d;
        self.count /= d;
        self.sum /= d;
        if d == 0.0 {
            self.positive_spans.clear();
            self.negative_spans.clear();
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            return;
        }
        self.positive_buckets.iter_mut().for_each(|c| *c /= d);
        self.negative_buckets.iter_mut().for_each(|c| *c /= d);
    }

    /// Moves buckets inside a larger zero threshold into the zero bucket.
    pub fn widen_zero(&mut self, threshold: f64) {
        if threshold <= self.zero_threshold {
            return;
        }
        let mut moved = 0.0;
        let keep = |pairs: Vec<(i32, f64)>, moved: &mut f64, this: &FloatHistogram| {
            pairs
                .into_iter()
                .filter(|&(idx, c)| {
                    if this.bound(idx) <= threshold {
                        *moved += c;
                        false
                    } else {
                        true
                    }
                })
                .collect::<Vec<_>>()
        };
        let p = keep(self.positive(), &mut moved, self);
        let n = keep(self.negative(), &mut moved, self);
        self.zero_count += moved;
        self.zero_threshold = threshold;
        self.set_positive(&p);
        self.set_negative(&n);
    }

    /// Re-buckets a custom-bucket histogram onto `bounds`, a subset of its
    /// own bounds: each bucket goes into the first kept bucket whose upper
    /// bound is at least its own.
    pub fn rebucket_custom(&mut self, bounds: &[f64]) {
        if !self.uses_custom_buckets() || self.custom_values == bounds {
            return;
        }
        let mut pairs: Vec<(i32, f64)> = Vec::new();
        for (idx, c) in self.positive() {
            let upper = self.bound(idx);
            let target = bounds.partition_point(|b| *b < upper) as i32;
            match pairs.last_mut() {
                Some(last) if last.0 == target => last.1 += c,
                _ => pairs.push((target, c)),
            }
        }
        self.custom_values = bounds.to_vec();
        self.set_positive(&pairs);
    }

    /// `self + sign * other`, reconciling schemas and zero thresholds as
    /// Prometheus does. Custom bounds that differ are reduced to the
    /// bounds both have; returns whether that happened.
    fn combine(&mut self, other: &FloatHistogram, sign: f64) -> Result<bool, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::MixedExponentialCustom);
        }
        let mut o = other.clone();
        let mut reconciled = false;
        if self.uses_custom_buckets() && self.custom_values != other.custom_values {
            let common = common_bounds(&self.custom_values, &other.custom_values);
            self.rebucket_custom(&common);
            o.rebucket_custom(&common);
            reconciled = true;
        }
        if !self.uses_custom_buckets() {
            let schema = self.schema.min(o.schema);
            self.reduce_to(schema);
            o.reduce_to(schema);
            let zt = self.zero_threshold.max(o.zero_threshold);
            self.widen_zero(zt);
            o.widen_zero(zt);
        }
        self.counter_reset_hint = self.counter_reset_hint.combine(o.counter_reset_hint);
        self.count += sign * o.count;
        self.sum += sign * o.sum;
        self.zero_count += sign * o.zero_count;
        let p = merge(&self.positive(), &o.positive(), |a, b| a + sign * b);
        let n = merge(&self.negative(), &o.negative(), |a, b| a + sign * b);
        // Keep buckets that became zero out of the spans, as Compact does.
        self.set_positive(&p);
        self.set_negative(&n);
        Ok(reconciled)
    }

    /// Adds `other`; `Ok(true)` when differing custom bounds were
    /// reconciled.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<bool, HistogramError> {
        self.combine(other, 1.0)
    }

    /// Subtracts `other`; `Ok(true)` when differing custom bounds were
    /// reconciled.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<bool, HistogramError> {
        self.combine(other, -1.0)
    }

    /// Whether this histogram, following `prev` in a counter series,
    /// starts over (Prometheus's `DetectReset`).
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() != prev.uses_custom_buckets() {
            return true;
        }
        let mut cur = std::borrow::Cow::Borrowed(self);
        let mut p = prev.clone();
        if self.uses_custom_buckets() {
            // Different bounds are compared on the bounds both have.
            if self.custom_values != prev.custom_values {
                let common = common_bounds(&self.custom_values, &prev.custom_values);
                cur.to_mut().rebucket_custom(&common);
                p.rebucket_custom(&common);
            }
        } else {
            if self.schema > prev.schema || self.zero_threshold < prev.zero_threshold {
                return true;
            }
        }
        if !self.uses_custom_buckets() {
            p.reduce_to(self.schema);
            p.widen_zero(self.zero_threshold);
            if p.zero_threshold != self.zero_threshold {
                return true;
            }
        }
        if self.zero_count < p.zero_count {
            return true;
        }
        let decreased = |cur: Vec<(i32, f64)>, old: Vec<(i32, f64)>| {
            merge(&cur, &old, |c, o| if c < o { -1.0 } else { 0.0 })
                .iter()
                .any(|(_, d)| *d < 0.0)
        };
        decreased(cur.positive(), p.positive()) || decreased(cur.negative(), p.negative())
    }

    /// Every bucket from the most negative to the largest: negative
    /// buckets, the zero bucket (if it has a count or a width), positive
    /// buckets. Custom-bucket histograms have positive buckets only, the
    /// first from -Inf.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        for (idx, c) in self.negative().into_iter().rev() {
            out.push(Bucket {
                lower: -self.bound(idx),
                upper: -self.bound(idx - 1),
                count: c,
                index: idx,
            });
        }
        if !self.uses_custom_buckets() && (self.zero_count != 0.0 || self.zero_threshold != 0.0) {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                count: self.zero_count,
                index: 0,
            });
        }
        for (idx, c) in self.positive() {
            out.push(Bucket {
                lower: self.bound(idx - 1),
                upper: self.bound(idx),
                count: c,
                index: idx,
            });
        }
        out
    }

    /// The `q` quantile, interpolated within its bucket (Prometheus's
    /// `HistogramQuantile` for native histograms).
    pub fn quantile(&self, q: f64) -> f64 {
        if q.is_nan() || self.count == 0.0 {
            return f64::NAN;
        }
        if q < 0.0 {
            return f64::NEG_INFINITY;
        }
        if q > 1.0 {
            return f64::INFINITY;
        }
        let buckets = self.buckets();
        let rank = q * self.count;
        let mut count = 0.0;
        let mut chosen = None;
        for b in &buckets {
            if b.count == 0.0 {
                continue;
            }
            count += b.count;
            chosen = Some(*b);
            if count >= rank {
                break;
            }
        }
        let Some(mut b) = chosen else {
            return f64::NAN;
        };
        self.clamp_zero_bucket(&mut b);
        if b.lower == f64::NEG_INFINITY {
            if b.upper <= 0.0 {
                return b.upper;
            }
            b.lower = 0.0;
        }
        if b.upper == f64::INFINITY {
            return b.lower;
        }
        let fraction = (rank - (count - b.count)) / b.count;
        interpolate(self.uses_custom_buckets(), b, fraction)
    }

    /// A zero bucket next to buckets of one sign only holds values of
    /// that sign.
    fn clamp_zero_bucket(&self, b: &mut Bucket) {
        if self.uses_custom_buckets() || !(b.lower < 0.0 && b.upper > 0.0) {
            return;
        }
        if self.negative_buckets.is_empty() && !self.positive_buckets.is_empty() {
            b.lower = 0.0;
        } else if self.positive_buckets.is_empty() && !self.negative_buckets.is_empty() {
            b.upper = 0.0;
        }
    }

    /// The share of observations in `[lower, upper]`
    /// (Prometheus's `HistogramFraction`).
    pub fn fraction(&self, lower: f64, upper: f64) -> f64 {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return f64::NAN;
        }
        if lower >= upper {
            return 0.0;
        }
        let custom = self.uses_custom_buckets();
        let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        for mut b in self.buckets() {
            self.clamp_zero_bucket(&mut b);
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = rank + b.count * bucket_fraction(custom, b, lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = rank + b.count * bucket_fraction(custom, b, upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        if !lower_set || lower_rank > self.count {
            lower_rank = self.count;
        }
        if !upper_set || upper_rank > self.count {
            upper_rank = self.count;
        }
        (upper_rank - lower_rank) / self.count
    }

    /// The estimated variance of the observations
    /// (Prometheus's `histogram_stdvar`).
    pub fn stdvar(&self) -> f64 {
        if self.count == 0.0 {
            return f64::NAN;
        }
        let mean = self.sum / self.count;
        let (mut variance, mut c) = (0.0, 0.0);
        for b in self.buckets() {
            if b.count == 0.0 {
                continue;
            }
            let val = if self.uses_custom_buckets() {
                if b.lower == f64::NEG_INFINITY {
                    b.upper.min(0.0)
                } else if b.upper == f64::INFINITY {
                    b.lower
                } else {
                    b.lower + (b.upper - b.lower) / 2.0
                }
            } else if b.lower <= 0.0 && b.upper >= 0.0 {
                0.0
            } else {
                let v = (b.upper * b.lower).sqrt();
                if b.upper < 0.0 { -v } else { v }
            };
            let delta = val - mean;
            let term = b.count * delta * delta;
            // Kahan-Babuska (Neumaier) step.
            let t = variance + term;
            if t.is_infinite() {
                // As Prometheus: no compensation once the sum overflows.
                c = 0.0;
            } else if variance.abs() >= term.abs() {
                c += (variance - t) + term;
            } else {
                c += (term - t) + variance;
            }
            variance = t;
        }
        (variance + c) / self.count
    }

    /// Whether every count is finite and non-negative and the buckets add
    /// up to no more than the count, within rounding.
    pub fn validate(&self) -> Result<(), String> {
        if self.uses_custom_buckets() {
            if !self.negative_buckets.is_empty() || !self.negative_spans.is_empty() {
                return Err("custom buckets histogram has negative buckets".into());
            }
            if self.custom_values.windows(2).any(|w| w[0] >= w[1]) {
                return Err("custom bucket bounds must be increasing".into());
            }
        } else if !(-4..=8).contains(&self.schema) {
            return Err(format!("schema {} out of range -4..=8", self.schema));
        }
        let described = |spans: &[Span]| spans.iter().map(|s| s.length as usize).sum::<usize>();
        if described(&self.positive_spans) != self.positive_buckets.len() {
            return Err("positive spans and buckets disagree in length".into());
        }
        if described(&self.negative_spans) != self.negative_buckets.len() {
            return Err("negative spans and buckets disagree in length".into());
        }
        Ok(())
    }
}

fn interpolate(custom: bool, b: Bucket, fraction: f64) -> f64 {
    if custom || (b.lower <= 0.0 && b.upper >= 0.0) {
        return b.lower + (b.upper - b.lower) * fraction;
    }
    let log_lower = b.lower.abs().log2();
    let log_upper = b.upper.abs().log2();
    if b.lower > 0.0 {
        (log_lower + (log_upper - log_lower) * fraction).exp2()
    } else {
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
    }
}

/// The share of bucket `b` below `v`, for `lower < v < upper`.
fn bucket_fraction(custom: bool, mut b: Bucket, v: f64) -> f64 {
    if b.lower == f64::NEG_INFINITY {
        // A bucket from -Inf has no width to interpolate in: below a
        // negative bound everything counts as below `v`.
        if b.upper <= 0.0 {
            return 1.0;
        }
        b.lower = 0.0;
        if v <= 0.0 {
            return 0.0;
        }
    }
    if b.upper == f64::INFINITY {
        return 0.0;
    }
    if custom || (b.lower <= 0.0 && b.upper >= 0.0) {
        return (v - b.lower) / (b.upper - b.lower);
    }
    let (lo, hi, x) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
    if b.lower > 0.0 {
        (x - lo) / (hi - lo)
    } else {
        1.0 - (x - hi) / (lo - hi)
    }
}

/// The binary form of a histogram in the WAL and in block files: all
/// little-endian, `hint u8 | schema i32 | zero_threshold f64 |
/// zero_count f64 | count f64 | sum f64 | spans(+) | buckets(+) | spans(-)
/// | buckets(-) | custom_values`, where a list is a `u32` length followed by
/// its items and a span is `offset i32 | length u32`.
impl FloatHistogram {
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(self.counter_reset_hint.as_u8());
        buf.extend_from_slice(&self.schema.to_le_bytes());
        for v in [self.zero_threshold, self.zero_count, self.count, self.sum] {
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        let spans = |buf: &mut Vec<u8>, spans: &[Span]| {
            buf.extend_from_slice(&(spans.len() as u32).to_le_bytes());
            for s in spans {
                buf.extend_from_slice(&s.offset.to_le_bytes());
                buf.extend_from_slice(&s.length.to_le_bytes());
            }
        };
        let floats = |buf: &mut Vec<u8>, v: &[f64]| {
            buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for x in v {
                buf.extend_from_slice(&x.to_bits().to_le_bytes());
            }
        };
        spans(buf, &self.positive_spans);
        floats(buf, &self.positive_buckets);
        spans(buf, &self.negative_spans);
        floats(buf, &self.negative_buckets);
        floats(buf, &self.custom_values);
    }

    /// Reads one encoded histogram from the start of `buf`; returns it and
    /// the bytes after it, or `None` if `buf` does not hold one.
    pub fn decode(buf: &[u8]) -> Option<(FloatHistogram, &[u8])> {
        let mut r = buf;
        fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if r.len() < n {
                return None;
            }
            let (a, b) = r.split_at(n);
            *r = b;
            Some(a)
        }
        fn u32_(r: &mut &[u8]) -> Option<u32> {
            Some(u32::from_le_bytes(take(r, 4)?.try_into().ok()?))
        }
        fn f64_(r: &mut &[u8]) -> Option<f64> {
            Some(f64::from_bits(u64::from_le_bytes(
                take(r, 8)?.try_into().ok()?,
            )))
        }
        fn spans(r: &mut &[u8]) -> Option<Vec<Span>> {
            let n = u32_(r)? as usize;
            if n > r.len() / 8 {
                return None;
            }
            (0..n)
                .map(|_| {
                    Some(Span {
                        offset: u32_(r)? as i32,
                        length: u32_(r)?,
                    })
                })
                .collect()
        }
        fn floats(r: &mut &[u8]) -> Option<Vec<f64>> {
            let n = u32_(r)? as usize;
            if n > r.len() / 8 {
                return None;
            }
            (0..n).map(|_| f64_(r)).collect()
        }
        let hint = CounterResetHint::from_u8(*take(&mut r, 1)?.first()?)?;
        let schema = u32_(&mut r)? as i32;
        let h = FloatHistogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold: f64_(&mut r)?,
            zero_count: f64_(&mut r)?,
            count: f64_(&mut r)?,
            sum: f64_(&mut r)?,
            positive_spans: spans(&mut r)?,
            positive_buckets: floats(&mut r)?,
            negative_spans: spans(&mut r)?,
            negative_buckets: floats(&mut r)?,
            custom_values: floats(&mut r)?,
        };
        Some((h, r))
    }
}

/// A float as Go's `%g` writes it: shortest digits, exponent form when
/// the decimal exponent is below -4 or at least 6.
fn go_g(v: f64) -> String {
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
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

impl FloatHistogram {
    /// The histogram as Prometheus's `FloatHistogram.String()` writes it
    /// (`{count:2, sum:3, [-2,-1):1, (1,2]:1}`): `count_values` uses it.
    pub fn prom_string(&self) -> String {
        let mut out = format!("{{count:{}, sum:{}", go_g(self.count), go_g(self.sum));
        for b in self.buckets() {
            if b.count == 0.0 {
                continue;
            }
            let zero = !self.uses_custom_buckets()
                && b.lower == -self.zero_threshold
                && b.upper == self.zero_threshold;
            let negative = !self.uses_custom_buckets() && b.upper <= 0.0 && !zero;
            let (open, close) = if zero {
                ('[', ']')
            } else if negative {
                ('[', ')')
            } else {
                ('(', ']')
            };
            out.push_str(&format!(
                ", {open}{},{}{close}:{}",
                go_g(b.lower),
                go_g(b.upper),
                go_g(b.count)
            ));
        }
        out.push('}');
        out
    }
}

impl fmt::Display for FloatHistogram {
    /// The promqltest notation (`{{schema:0 count:3 sum:5 buckets:[1 2]}}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{{")?;
        if self.schema != 0 {
            write!(f, "schema:{} ", self.schema)?;
        }
        write!(f, "count:{} sum:{}", self.count, self.sum)?;
        if self.zero_threshold != 0.0 {
            write!(f, " z_bucket_w:{}", self.zero_threshold)?;
        }
        if self.zero_count != 0.0 {
            write!(f, " z_bucket:{}", self.zero_count)?;
        }
        let list = |v: &[f64]| {
            v.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !self.custom_values.is_empty() {
            write!(f, " custom_values:[{}]", list(&self.custom_values))?;
        }
        for (name, pairs) in [("buckets", self.positive()), ("n_buckets", self.negative())] {
            if pairs.is_empty() {
                continue;
            }
            let first = pairs[0].0;
            let last = pairs[pairs.len() - 1].0;
            let mut dense = vec![0.0; (last - first + 1) as usize];
            for (i, c) in &pairs {
                dense[(i - first) as usize] = *c;
            }
            let off = if name == "buckets" {
                "offset"
            } else {
                "n_offset"
            };
            if first != 0 {
                write!(f, " {off}:{first}")?;
            }
            write!(f, " {name}:[{}]", list(&dense))?;
        }
        match self.counter_reset_hint {
            CounterResetHint::Unknown => {}
            CounterResetHint::CounterReset => write!(f, " counter_reset_hint:reset")?,
            CounterResetHint::NotCounterReset => write!(f, " counter_reset_hint:not_reset")?,
            CounterResetHint::Gauge => write!(f, " counter_reset_hint:gauge")?,
        }
        write!(f, "}}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, offset: i32, buckets: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema,
            count: buckets.iter().sum(),
            sum: 10.0,
            positive_spans: vec![Span {
                offset,
                length: buckets.len() as u32,
            }],
            positive_buckets: buckets.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_follow_the_schema() {
        assert_eq!(exponential_bound(0, 0), 1.0);
        assert_eq!(exponential_bound(1, 0), 2.0);
        assert_eq!(exponential_bound(-1, 0), 0.5);
        assert_eq!(exponential_bound(1, -1), 4.0);
        assert!((exponential_bound(1, 1) - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(exponential_bound(1024, 0), f64::MAX);
        assert_eq!(exponential_bound(1025, 0), f64::INFINITY);
        assert_eq!(exponential_bound(256, -2), f64::MAX);
        assert_eq!(exponential_bound(-1074, 0), f64::from_bits(1));
    }

    /// Bounds as Prometheus 2.42 shows them (its API prints bucket bounds
    /// with Go's shortest float formatting): one ulp below the correctly
    /// rounded 2^(k/2^schema) at some positions.
    #[test]
    fn bounds_match_prometheus_to_the_last_bit() {
        let cases: [(i32, i32, f64); 8] = [
            // One ulp below std::f64::consts::SQRT_2.
            (1, 1, f64::from_bits(0x3ff6a09e667f3bcc)),
            (2, 3, 1.6817928305074288),
            (3, 7, 1.8340080864093422),
            (4, 15, 1.915206561397147),
            (5, 31, 1.9571441241753997),
            (8, 1, 1.0027112750502025),
            (8, 255, 1.9945921121709396),
            (8, -1, 0.9972960560854698),
        ];
        for (schema, idx, want) in cases {
            assert_eq!(
                exponential_bound(idx, schema),
                want,
                "schema {schema} idx {idx}"
            );
        }
    }

    #[test]
    fn adding_reduces_to_the_coarser_schema() {
        let mut a = h(1, 1, &[1.0, 2.0, 3.0, 4.0]); // idx 1..4 at schema 1
        let b = h(0, 1, &[1.0]); // idx 1 at schema 0
        a.add(&b).unwrap();
        assert_eq!(a.schema, 0);
        // schema-1 idx 1,2 -> 1; 3,4 -> 2
        assert_eq!(a.positive(), vec![(1, 4.0), (2, 7.0)]);
        assert_eq!(a.count, 11.0);
    }

    #[test]
    fn subtracting_to_zero_compacts() {
        let mut a = h(0, 0, &[1.0, 2.0]);
        let b = h(0, 0, &[1.0, 0.0]);
        a.sub(&b).unwrap();
        assert_eq!(
            a.positive_spans,
            vec![Span {
                offset: 1,
                length: 1
            }]
        );
    }

    #[test]
    fn quantile_interpolates_exponentially() {
        let a = h(0, 1, &[4.0]); // (1, 2]
        let q = a.quantile(0.5);
        assert!((q - 2f64.sqrt()).abs() < 1e-12, "{q}");
    }

    #[test]
    fn encoding_round_trips() {
        let mut a = h(2, -3, &[1.0, 0.5, 3.0]);
        a.negative_spans = vec![Span {
            offset: 2,
            length: 1,
        }];
        a.negative_buckets = vec![7.0];
        a.counter_reset_hint = CounterResetHint::Gauge;
        let mut buf = Vec::new();
        a.encode(&mut buf);
        buf.push(9);
        let (b, rest) = FloatHistogram::decode(&buf).unwrap();
        assert_eq!(a, b);
        assert_eq!(rest, &[9]);
        assert!(FloatHistogram::decode(&buf[..10]).is_none());
    }

    #[test]
    fn resets_show_in_buckets() {
        let a = h(0, 0, &[1.0, 2.0]);
        let b = h(0, 0, &[2.0, 1.0]);
        assert!(b.detect_reset(&a));
        assert!(!a.detect_reset(&a));
    }
}
