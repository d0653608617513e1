//! PromQL inside SQL: `promql_instant(query, time)` and
//! `promql_range(query, start, end, step)` are table functions whose rows
//! are the PromQL result, one column per label (sorted, `__name__`
//! included when the result has it), then `timestamp` and `value`.
//!
//! DataFusion asks a table function for its table (and so its columns)
//! while planning, synchronously, so the PromQL query runs then. It runs on
//! a helper thread with its own small runtime, so planning never blocks a
//! runtime thread on a future it needs itself.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::prelude::SessionContext;

use super::tables::timestamp_type;
use crate::model::Labels;
use crate::promql::{Engine, QueryOptions, Value};

pub fn register(ctx: &SessionContext, engine: Engine) {
    ctx.register_udtf(
        "promql_instant",
        Arc::new(PromqlFunction {
            engine: engine.clone(),
            range: false,
        }),
    );
    ctx.register_udtf(
        "promql_range",
        Arc::new(PromqlFunction {
            engine,
            range: true,
        }),
    );
}

struct PromqlFunction {
    engine: Engine,
    range: bool,
}

impl std::fmt::Debug for PromqlFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromqlFunction")
            .field("range", &self.range)
            .finish()
    }
}

impl TableFunctionImpl for PromqlFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let name = if self.range {
            "promql_range(query, start, end, step)"
        } else {
            "promql_instant(query, time)"
        };
        let want = if self.range { 4 } else { 2 };
        if args.exprs().len() != want {
            return plan_err!("{name} takes {want} arguments, got {}", args.exprs().len());
        }
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_query_execution_start_time(
                    args.session().execution_props().query_execution_start_time,
                )
                .build(),
        );
        let values: Vec<ScalarValue> = args
            .exprs()
            .iter()
            .map(|e| match simplifier.simplify(e.clone())? {
                Expr::Literal(v, _) => Ok(v),
                other => plan_err!("{name}: argument {other} is not a constant"),
            })
            .collect::<DfResult<_>>()?;
        let query = match &values[0] {
            ScalarValue::Utf8(Some(q))
            | ScalarValue::LargeUtf8(Some(q))
            | ScalarValue::Utf8View(Some(q)) => q.clone(),
            other => return plan_err!("{name}: query must be a string, got {other}"),
        };
        let engine = self.engine.clone();
        let result = if self.range {
            let start = time_ms(&values[1]).map_err(|e| arg_error(name, "start", e))?;
            let end = time_ms(&values[2]).map_err(|e| arg_error(name, "end", e))?;
            let step = duration_ms(&values[3]).map_err(|e| arg_error(name, "step", e))?;
            if end < start {
                return plan_err!("{name}: end is before start");
            }
            if (end - start) / step.max(1) > 11_000 {
                return plan_err!(
                    "{name}: exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                );
            }
            run_blocking(async move {
                engine
                    .range_query(&query, start, end, step, &QueryOptions::default())
                    .await
            })
        } else {
            let time = time_ms(&values[1]).map_err(|e| arg_error(name, "time", e))?;
            run_blocking(async move {
                engine
                    .instant_query(&query, time, &QueryOptions::default())
                    .await
            })
        }?
        .map_err(|e| DataFusionError::Plan(format!("{name}: {e}")))?;
        // The PromQL query's warnings (remote blocks left out, annotations)
        // become the SQL query's.
        if let Some(w) = args
            .session()
            .config()
            .get_extension::<super::QueryWarnings>()
        {
            w.extend(result.warnings.clone());
        }
        Ok(Arc::new(to_table(result.value)?))
    }
}

fn arg_error(func: &str, arg: &str, err: String) -> DataFusionError {
    DataFusionError::Plan(format!("{func}: invalid {arg}: {err}"))
}

/// A time argument: a timestamp, Unix seconds, or text the HTTP API
/// accepts (RFC 3339 or Unix seconds).
fn time_ms(v: &ScalarValue) -> Result<i64, String> {
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => Ok(s * 1000),
        ScalarValue::TimestampMillisecond(Some(ms), _) => Ok(*ms),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Ok(us.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(ns), _) => Ok(ns.div_euclid(1_000_000)),
        ScalarValue::Int64(Some(s)) => Ok(s * 1000),
        ScalarValue::Int32(Some(s)) => Ok(i64::from(*s) * 1000),
        ScalarValue::Float64(Some(s)) if s.is_finite() => Ok((s * 1000.0).round() as i64),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => crate::web::api::parse_time(s),
        other => Err(format!("expected a timestamp, got {other}")),
    }
}

/// A step argument: an interval, seconds, or a Prometheus duration (`15s`).
fn duration_ms(v: &ScalarValue) -> Result<i64, String> {
    let ms = match v {
        ScalarValue::IntervalDayTime(Some(d)) => {
            i64::from(d.days) * 86_400_000 + i64::from(d.milliseconds)
        }
        ScalarValue::IntervalMonthDayNano(Some(d)) if d.months == 0 => {
            i64::from(d.days) * 86_400_000 + d.nanoseconds / 1_000_000
        }
        ScalarValue::DurationSecond(Some(s)) => s * 1000,
        ScalarValue::DurationMillisecond(Some(ms)) => *ms,
        ScalarValue::DurationMicrosecond(Some(us)) => us / 1000,
        ScalarValue::DurationNanosecond(Some(ns)) => ns / 1_000_000,
        ScalarValue::Int64(Some(s)) => s * 1000,
        ScalarValue::Int32(Some(s)) => i64::from(*s) * 1000,
        ScalarValue::Float64(Some(s)) if s.is_finite() => (s * 1000.0).round() as i64,
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => crate::web::api::parse_duration(s)? / 1_000_000,
        other => return Err(format!("expected an interval, got {other}")),
    };
    if ms <= 0 {
        return Err("zero or negative query resolution step widths are not accepted".into());
    }
    Ok(ms)
}

/// Runs a future to completion on a helper thread with its own runtime.
fn run_blocking<F>(fut: F) -> DfResult<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let run = move || {
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    Ok(rt.block_on(fut))
                })
                .join()
                .map_err(|_| DataFusionError::Internal("PromQL evaluation panicked".into()))?
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(run)
        }
        _ => run(),
    }
}

/// The PromQL value as a table.
fn to_table(value: Value) -> DfResult<MemTable> {
    let rows: Vec<(Option<&Labels>, i64, f64)>;
    let owned;
    match &value {
        Value::Scalar { t, v } => {
            rows = vec![(None, *t, *v)];
        }
        Value::String { .. } => {
            return plan_err!("a PromQL string result cannot be a table");
        }
        Value::Vector(samples) => {
            // Native histogram samples have no single value; the SQL
            // functions return float samples only.
            rows = samples
                .iter()
                .filter(|s| s.h.is_none())
                .map(|s| (Some(&s.labels), s.t, s.v))
                .collect();
        }
        Value::Matrix(series) => {
            owned = series;
            rows = owned
                .iter()
                .flat_map(|s| s.points.iter().map(move |p| (Some(&s.labels), p.t, p.v)))
                .collect();
        }
    }
    let names: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.0)
        .flat_map(|l| l.iter().map(|l| &*l.name))
        .collect();
    let mut fields: Vec<Field> = names
        .iter()
        .map(|n| {
            let column = match *n {
                "timestamp" | "value" => format!("label_{n}"),
                _ => (*n).to_owned(),
            };
            Field::new(column, DataType::Utf8, true)
        })
        .collect();
    fields.push(Field::new("timestamp", timestamp_type(), false));
    fields.push(Field::new("value", DataType::Float64, false));
    let schema = Arc::new(Schema::new(fields));
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len() + 2);
    for name in &names {
        let mut b = StringBuilder::new();
        for (labels, _, _) in &rows {
            b.append_option(labels.and_then(|l| l.get(name)));
        }
        columns.push(Arc::new(b.finish()));
    }
    let mut ts = TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    let mut vs = Float64Builder::with_capacity(rows.len());
    for (_, t, v) in &rows {
        ts.append_value(*t);
        vs.append_value(*v);
    }
    columns.push(Arc::new(ts.finish()));
    columns.push(Arc::new(vs.finish()));
    let batch = datafusion::arrow::array::RecordBatch::try_new(schema.clone(), columns)?;
    MemTable::try_new(schema, vec![vec![batch]])
}
