//! Query results as the API returns them: the four PromQL value types.

use std::sync::Arc;

use crate::model::{FloatHistogram, Labels};

/// One point of a float series: timestamp in milliseconds and value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

/// One point of a native histogram series.
#[derive(Clone, Debug, PartialEq)]
pub struct HPoint {
    pub t: i64,
    pub h: Arc<FloatHistogram>,
}

/// One element of an instant vector: a float `v`, or a native histogram
/// `h` (then `v` is meaningless).
#[derive(Clone, Debug)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
    pub h: Option<Arc<FloatHistogram>>,
}

/// One element of a range vector (matrix): a series and its points, oldest
/// first; float points and native histogram points separately, as in
/// Prometheus's API.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<Point>,
    pub histograms: Vec<HPoint>,
}

/// The result of evaluating a query.
#[derive(Clone, Debug)]
pub enum Value {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        s: String,
    },
    /// Instant vector. Sorted by labels unless the query ends in `sort*` or
    /// `topk`/`bottomk`, whose order is meaningful.
    Vector(Vec<Sample>),
    /// Range vector: the result of every range query, and of an instant
    /// query whose expression is a range selector or subquery.
    Matrix(Vec<Series>),
}

impl Value {
    /// `resultType` in the API's JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Formats a sample value the way Prometheus's API does: shortest
/// round-trip decimal, with `NaN`, `+Inf` and `-Inf` spelled out.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Prometheus writes 'f' notation, switching to 'e' below 1e-6 and
        // from 1e21 on, with Go's exponent of at least two digits.
        let abs = v.abs();
        if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
            let s = format!("{v:e}");
            match s.split_once('e') {
                Some((m, e)) => {
                    let (sign, digits) = match e.strip_prefix('-') {
                        Some(d) => ('-', d),
                        None => ('+', e),
                    };
                    format!("{m}e{sign}{digits:0>2}")
                }
                None => s,
            }
        } else {
            format!("{v}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format_value;

    #[test]
    fn values_render_as_prometheus_does() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(-2.25), "-2.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(1.5e-7), "1.5e-07");
        assert_eq!(format_value(0.000001), "0.000001");
        assert_eq!(format_value(123456789.0), "123456789");
    }
}
