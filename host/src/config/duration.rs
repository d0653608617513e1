//! Prometheus duration strings (`1h30m`, `5m`, `1d`, `500ms`).
//!
//! The grammar follows Prometheus's `model.ParseDuration`: units from largest to
//! smallest, each at most once, integer counts only, and the bare `0`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// A non-negative duration with millisecond resolution, written the Prometheus way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(Duration);

impl PromDuration {
    pub const fn from_secs(secs: u64) -> Self {
        PromDuration(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        PromDuration(Duration::from_millis(ms))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_millis(self) -> u64 {
        self.0.as_millis() as u64
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<PromDuration> for Duration {
    fn from(d: PromDuration) -> Duration {
        d.0
    }
}

/// Why a duration string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    #[error("duration out of range: {0:?}")]
    Overflow(String),
}

impl std::str::FromStr for PromDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

pub fn parse(s: &str) -> Result<PromDuration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(PromDuration::default());
    }
    let invalid = || DurationError::Invalid(s.to_owned());
    let mut rest = s;
    let mut total: u64 = 0;
    // Units must appear in decreasing order, each at most once.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let count: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow(s.to_owned()))?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (idx, unit_len, factor) = UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .map(|(i, (u, f))| (i, u.len(), *f))
            .max_by_key(|(_, len, _)| *len)
            .ok_or_else(invalid)?;
        if idx < next_unit {
            return Err(invalid());
        }
        next_unit = idx + 1;
        rest = &rest[unit_len..];
        total = count
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
    }
    Ok(PromDuration::from_millis(total))
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in UNITS {
            // Prometheus prints weeks and years only when they divide exactly.
            if (unit == "y" || unit == "w") && !ms.is_multiple_of(factor) {
                continue;
            }
            if ms >= factor {
                write!(f, "{}{}", ms / factor, unit)?;
                ms %= factor;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_forms() {
        let cases = [
            ("0", 0),
            ("500ms", 500),
            ("15s", 15_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("2w", 14 * 86_400_000),
            ("1y", 365 * 86_400_000),
            ("1h1m1s1ms", 3_661_001),
        ];
        for (s, ms) in cases {
            assert_eq!(parse(s), Ok(PromDuration::from_millis(ms)), "{s}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "1",
            "1x",
            "-1m",
            "1.5m",
            "m",
            "1s1m",
            "1m1m",
            "1 m",
            "99999999999999999999y",
        ] {
            assert!(parse(s).is_err(), "{s} should be rejected");
        }
    }

    #[test]
    fn displays_like_prometheus() {
        for (ms, s) in [
            (0, "0s"),
            (90_000, "1m30s"),
            (86_400_000, "1d"),
            (14 * 86_400_000, "2w"),
            (8 * 86_400_000, "8d"),
            (1_500, "1s500ms"),
        ] {
            assert_eq!(PromDuration::from_millis(ms).to_string(), s);
        }
    }
}
