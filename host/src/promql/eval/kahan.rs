//! Compensated (Kahan-Babuska) summation, as Prometheus uses for sums and
//! means so that long sums of floats do not drift.

/// Adds `inc` to `sum`, carrying the lost low-order bits in `c`.
pub fn sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// A running compensated sum.
#[derive(Clone, Copy, Debug, Default)]
pub struct KahanSum {
    sum: f64,
    c: f64,
}

impl KahanSum {
    pub fn add(&mut self, v: f64) {
        (self.sum, self.c) = sum_inc(v, self.sum, self.c);
    }

    pub fn value(&self) -> f64 {
        self.sum + self.c
    }
}

/// A mean that stays accurate with many values and switches to an
/// incremental form when the plain sum would overflow.
#[derive(Clone, Copy, Debug, Default)]
pub struct KahanMean {
    sum: f64,
    c: f64,
    mean: f64,
    count: f64,
    incremental: bool,
}

impl KahanMean {
    pub fn add(&mut self, v: f64) {
        self.count += 1.0;
        if !self.incremental {
            let (s, c) = sum_inc(v, self.sum, self.c);
            if self.count == 1.0 || !s.is_infinite() {
                self.sum = s;
                self.c = c;
                return;
            }
            // The sum overflowed: carry on with an incremental mean.
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        let q = (self.count - 1.0) / self.count;
        (self.mean, self.c) = sum_inc(v / self.count, q * self.mean, q * self.c);
    }

    pub fn value(&self) -> f64 {
        if self.incremental {
            self.mean + self.c
        } else {
            self.sum / self.count + self.c / self.count
        }
    }
}
