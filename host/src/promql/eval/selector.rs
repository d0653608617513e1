//! The two native range-vector primitives: aligning a series to the query
//! grid with a lookback window (instant selectors), and sliding a range
//! window over it (range selectors and subqueries). Both walk the series
//! once, since grid steps and samples are both sorted by time.

use super::Grid;
use crate::model::sample::is_stale_nan;
use crate::promql::value::Point;

/// Where a selector looks: an `offset` (negative allowed) and an optional
/// `@` time that pins every step to one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TimeShift {
    pub offset: i64,
    pub at: Option<i64>,
}

impl TimeShift {
    /// The time a step at `t` reads data at.
    pub fn apply(&self, t: i64) -> i64 {
        self.at.unwrap_or(t) - self.offset
    }

    /// The data interval `[mint, maxt]` the steps of `grid` can read, given
    /// a window of `range` milliseconds before each read time.
    pub fn data_range(&self, grid: Grid, range: i64) -> (i64, i64) {
        let lo = self.apply(grid.start);
        let hi = self.apply(grid.end);
        (lo.min(hi) - range, lo.max(hi))
    }
}

/// One value per grid step: the newest sample in `(T - lookback, T]`,
/// where `T` is the step's read time, unless that sample is a stale
/// marker. With `sample_time`, the value is the sample's timestamp in
/// seconds (what `timestamp()` of a selector returns).
pub fn instant_align(
    raw: &[Point],
    grid: Grid,
    lookback: i64,
    shift: TimeShift,
    sample_time: bool,
) -> Vec<Point> {
    let mut out = Vec::new();
    let mut hi = 0usize; // first sample after the read time
    for t in grid.times() {
        let read = shift.apply(t);
        if shift.at.is_some() {
            hi = raw.partition_point(|p| p.t <= read);
        } else {
            while hi < raw.len() && raw[hi].t <= read {
                hi += 1;
            }
        }
        if hi == 0 {
            continue;
        }
        let p = raw[hi - 1];
        if p.t <= read - lookback || is_stale_nan(p.v) {
            continue;
        }
        let v = if sample_time {
            p.t as f64 / 1000.0
        } else {
            p.v
        };
        out.push(Point { t, v });
    }
    out
}

/// The window one step of a range function sees.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// The step's output timestamp.
    pub t: i64,
    /// The window is `(start, end]`.
    pub start: i64,
    pub end: i64,
}

/// Calls `f` with each grid step's window of samples (stale markers
/// removed) in `(T - range, T]`, collecting the values it returns.
pub fn slide(
    raw: &[Point],
    grid: Grid,
    range: i64,
    shift: TimeShift,
    mut f: impl FnMut(usize, &[Point], Window) -> Option<f64>,
) -> Vec<Point> {
    let owned;
    let samples: &[Point] = if raw.iter().any(|p| is_stale_nan(p.v)) {
        owned = raw
            .iter()
            .copied()
            .filter(|p| !is_stale_nan(p.v))
            .collect::<Vec<_>>();
        &owned
    } else {
        raw
    };
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0usize, 0usize);
    for (i, t) in grid.times().enumerate() {
        let end = shift.apply(t);
        let start = end - range;
        if shift.at.is_some() {
            lo = samples.partition_point(|p| p.t <= start);
            hi = samples.partition_point(|p| p.t <= end);
        } else {
            while lo < samples.len() && samples[lo].t <= start {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < samples.len() && samples[hi].t <= end {
                hi += 1;
            }
        }
        if let Some(v) = f(i, &samples[lo..hi], Window { t, start, end }) {
            out.push(Point { t, v });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, f64)]) -> Vec<Point> {
        v.iter().map(|&(t, v)| Point { t, v }).collect()
    }

    #[test]
    fn lookback_is_left_open_and_stale_hides() {
        let raw = pts(&[(0, 1.0), (10, 2.0), (20, crate::model::sample::stale_nan())]);
        let g = Grid {
            start: 0,
            end: 30,
            step: 5,
        };
        let got = instant_align(&raw, g, 10, TimeShift::default(), false);
        // t=0:1, 5:1, 10:2, 15:2, 20: stale, 25: stale(sample 20 is newest), 30: (20,30] -> stale
        assert_eq!(got, pts(&[(0, 1.0), (5, 1.0), (10, 2.0), (15, 2.0)]));
    }

    #[test]
    fn windows_are_left_open() {
        let raw = pts(&[(0, 1.0), (10, 2.0), (20, 3.0)]);
        let g = Grid::instant(20);
        let mut seen = Vec::new();
        slide(&raw, g, 10, TimeShift::default(), |_, w, _| {
            seen.push(w.len());
            None
        });
        assert_eq!(seen, vec![1]);
    }
}
