//! Which SQL filters reach `Storage::select`, and how exactly.
//!
//! A table scan gets the `WHERE` conjuncts DataFusion split out. Those on a
//! label column become label matchers (series pruning through the postings
//! indexes of the head and every block), those on the time column narrow
//! `[mint, maxt]` (block, row-group and chunk pruning). A filter is `Exact`
//! when the matcher selects precisely the rows the SQL predicate keeps, so
//! DataFusion drops it from the plan; `Inexact` when storage returns a
//! superset and DataFusion filters again.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};

use crate::model::{MatchOp, Matcher};

/// How a table's columns relate to storage, for classifying filters.
pub trait ColumnMap {
    /// The label a column holds (`__name__` for a metric-name column).
    fn label_of(&self, column: &str) -> Option<String>;
    /// Whether the column is the sample timestamp.
    fn is_time(&self, column: &str) -> bool;
}

/// What a scan asks storage for.
#[derive(Clone, Debug)]
pub struct Pushdown {
    pub matchers: Vec<Matcher>,
    pub mint: i64,
    pub maxt: i64,
}

impl Default for Pushdown {
    fn default() -> Self {
        Pushdown {
            matchers: Vec::new(),
            mint: i64::MIN,
            maxt: i64::MAX,
        }
    }
}

impl Pushdown {
    /// Folds every filter storage can use into matchers and a time range.
    pub fn from_filters(filters: &[Expr], cols: &dyn ColumnMap) -> Pushdown {
        let mut p = Pushdown::default();
        for f in filters {
            match translate(f, cols) {
                Some(Translated::Matcher(m, _)) => p.matchers.push(m),
                Some(Translated::Time { mint, maxt }) => {
                    p.mint = p.mint.max(mint);
                    p.maxt = p.maxt.min(maxt);
                }
                None => {}
            }
        }
        p
    }

    /// Text for `EXPLAIN`.
    pub fn describe(&self) -> String {
        let matchers: Vec<String> = self
            .matchers
            .iter()
            .map(|m| format!("{}{}{:?}", m.name, m.op, m.value))
            .collect();
        let bound = |t: i64, unbounded: i64| {
            if t == unbounded {
                "*".to_owned()
            } else {
                crate::web::api::rfc3339_ms(t)
            }
        };
        format!(
            "matchers=[{}], time=[{}, {}]",
            matchers.join(", "),
            bound(self.mint, i64::MIN),
            bound(self.maxt, i64::MAX)
        )
    }
}

/// The pushdown support of each filter, for `supports_filters_pushdown`.
pub fn classify(filters: &[&Expr], cols: &dyn ColumnMap) -> Vec<TableProviderFilterPushDown> {
    filters
        .iter()
        .map(|f| match translate(f, cols) {
            Some(Translated::Matcher(_, true)) => TableProviderFilterPushDown::Exact,
            Some(_) => TableProviderFilterPushDown::Inexact,
            None => TableProviderFilterPushDown::Unsupported,
        })
        .collect()
}

enum Translated {
    /// A matcher, and whether it is exact.
    Matcher(Matcher, bool),
    /// Bounds rounded outwards to milliseconds; always inexact, so
    /// DataFusion keeps the precise comparison.
    Time { mint: i64, maxt: i64 },
}

fn translate(expr: &Expr, cols: &dyn ColumnMap) -> Option<Translated> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (col, lit, op) = match (column_name(left), literal(right)) {
                (Some(c), Some(l)) => (c, l, *op),
                _ => (column_name(right)?, literal(left)?, op.swap()?),
            };
            if cols.is_time(&col) {
                return time_bound(op, lit);
            }
            let label = cols.label_of(&col)?;
            let value = string_value(lit)?;
            // Labels with empty values do not exist: `col = ''` is false for
            // every row in SQL but would select unlabelled series here.
            if value.is_empty() {
                return None;
            }
            match op {
                Operator::Eq => Some(Translated::Matcher(Matcher::eq(&label, value), true)),
                // A series without the label has NULL here, which SQL drops
                // and the matcher keeps: a superset.
                Operator::NotEq => Matcher::new(MatchOp::NotEqual, label, value)
                    .ok()
                    .map(|m| Translated::Matcher(m, false)),
                _ => None,
            }
        }
        Expr::Between(b) if !b.negated => {
            let col = column_name(&b.expr)?;
            if !cols.is_time(&col) {
                return None;
            }
            let low = time_bound(Operator::GtEq, literal(&b.low)?)?;
            let high = time_bound(Operator::LtEq, literal(&b.high)?)?;
            match (low, high) {
                (Translated::Time { mint, .. }, Translated::Time { maxt, .. }) => {
                    Some(Translated::Time { mint, maxt })
                }
                _ => None,
            }
        }
        Expr::IsNull(inner) => {
            let label = cols.label_of(&column_name(inner)?)?;
            Some(Translated::Matcher(Matcher::eq(&label, ""), true))
        }
        Expr::IsNotNull(inner) => {
            let label = cols.label_of(&column_name(inner)?)?;
            Matcher::new(MatchOp::RegexMatch, label, ".+")
                .ok()
                .map(|m| Translated::Matcher(m, true))
        }
        Expr::InList(list) if !list.negated => {
            let label = cols.label_of(&column_name(&list.expr)?)?;
            let mut alternatives = Vec::with_capacity(list.list.len());
            for item in &list.list {
                let v = string_value(literal(item)?)?;
                if v.is_empty() {
                    return None;
                }
                alternatives.push(regex::escape(v));
            }
            if alternatives.is_empty() {
                return None;
            }
            Matcher::new(MatchOp::RegexMatch, label, alternatives.join("|"))
                .ok()
                .map(|m| Translated::Matcher(m, true))
        }
        _ => None,
    }
}

/// A plain column, or a timestamp column cast to another timestamp unit
/// (DataFusion widens `timestamp > now() - interval ...` that way).
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) if matches!(c.field.data_type(), DataType::Timestamp(..)) => {
            column_name(&c.expr)
        }
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn string_value(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

/// Milliseconds of a timestamp literal, rounded down and up.
fn millis(v: &ScalarValue) -> Option<(i64, i64)> {
    let (n, per_ms) = match v {
        ScalarValue::TimestampSecond(Some(s), _) => return Some((s * 1000, s * 1000)),
        ScalarValue::TimestampMillisecond(Some(ms), _) => return Some((*ms, *ms)),
        ScalarValue::TimestampMicrosecond(Some(us), _) => (*us, 1_000),
        ScalarValue::TimestampNanosecond(Some(ns), _) => (*ns, 1_000_000),
        _ => return None,
    };
    let floor = n.div_euclid(per_ms);
    let ceil = if n.rem_euclid(per_ms) == 0 {
        floor
    } else {
        floor + 1
    };
    Some((floor, ceil))
}

fn time_bound(op: Operator, lit: &ScalarValue) -> Option<Translated> {
    let (floor, ceil) = millis(lit)?;
    let (mint, maxt) = match op {
        Operator::Gt | Operator::GtEq => (floor, i64::MAX),
        Operator::Lt | Operator::LtEq => (i64::MIN, ceil),
        Operator::Eq => (floor, ceil),
        _ => return None,
    };
    Some(Translated::Time { mint, maxt })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    struct Cols;
    impl ColumnMap for Cols {
        fn label_of(&self, column: &str) -> Option<String> {
            (column == "job").then(|| "job".to_owned())
        }
        fn is_time(&self, column: &str) -> bool {
            column == "timestamp"
        }
    }

    fn ts(ms: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(
            Some(ms),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn labels_and_time_are_pushed() {
        let filters = vec![
            col("job").eq(lit("api")),
            ts(1000).lt_eq(col("timestamp")),
            col("timestamp").lt(ts(5000)),
            col("value").gt(lit(1.0)),
        ];
        let refs: Vec<&Expr> = filters.iter().collect();
        use TableProviderFilterPushDown::*;
        assert_eq!(
            classify(&refs, &Cols),
            vec![Exact, Inexact, Inexact, Unsupported]
        );
        let p = Pushdown::from_filters(&filters, &Cols);
        assert_eq!((p.mint, p.maxt), (1000, 5000));
        assert_eq!(p.matchers.len(), 1);
        assert_eq!(p.matchers[0].value, "api");
    }

    #[test]
    fn sub_millisecond_bounds_round_outwards() {
        let ns = |n: i64| lit(ScalarValue::TimestampNanosecond(Some(n), None));
        let filters = vec![
            col("timestamp").gt(ns(1_500_000)),
            col("timestamp").lt(ns(7_500_000)),
        ];
        let p = Pushdown::from_filters(&filters, &Cols);
        assert_eq!((p.mint, p.maxt), (1, 8));
    }

    #[test]
    fn nulls_lists_and_empty_strings() {
        use TableProviderFilterPushDown::*;
        let filters = [
            col("job").is_null(),
            col("job").is_not_null(),
            col("job").in_list(vec![lit("a"), lit("b.c")], false),
            col("job").eq(lit("")),
            col("job").not_eq(lit("a")),
        ];
        let refs: Vec<&Expr> = filters.iter().collect();
        assert_eq!(
            classify(&refs, &Cols),
            vec![Exact, Exact, Exact, Unsupported, Inexact]
        );
        let p = Pushdown::from_filters(&filters[2..3], &Cols);
        assert!(p.matchers[0].matches("b.c"));
        assert!(!p.matchers[0].matches("bxc"));
    }
}
