//! Samples and Prometheus's staleness marker.

/// The NaN bit pattern Prometheus uses to mark a series as stale. It must be
/// stored and returned bit-exact: other NaNs are ordinary values.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample: milliseconds since the Unix epoch and a value.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl PartialEq for Sample {
    /// Bitwise on the value, so stale markers and NaNs compare as stored.
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

impl Eq for Sample {}

/// One native histogram sample. Shared, because a histogram is large and
/// reads hand the same one to several readers.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    pub t: i64,
    pub h: std::sync::Arc<super::FloatHistogram>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(stale_nan().is_nan());
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert_ne!(
            Sample { t: 1, v: f64::NAN },
            Sample {
                t: 1,
                v: stale_nan()
            }
        );
    }
}
