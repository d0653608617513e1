//! The evaluation timestamps of a query or subquery.

/// `start`, `start+step`, ..., up to `end` (milliseconds). An instant
/// query is a grid of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn instant(t: i64) -> Grid {
        Grid {
            start: t,
            end: t,
            step: 1,
        }
    }

    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end - self.start) / self.step) as usize + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn time(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(|i| self.time(i))
    }

    /// The step index of `t`, if `t` is on the grid.
    pub fn index(&self, t: i64) -> Option<usize> {
        if t < self.start || t > self.end || (t - self.start) % self.step != 0 {
            None
        } else {
            Some(((t - self.start) / self.step) as usize)
        }
    }
}
