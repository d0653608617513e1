//! The PromQL logical plan: one DataFusion extension node per PromQL
//! operator. Every node outputs the same Arrow schema (see
//! [`series_schema`]), so DataFusion can show, time and run the tree, and
//! each node's execution is a native operator in `exec.rs`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::logical_expr::{
    Expr as DfExpr, Extension, LogicalPlan, UserDefinedLogicalNodeCore,
};

use super::eval::Grid;
use super::eval::aggregate::{AggOp, Grouping};
use super::eval::binary::{BinOp, Matching};
use super::eval::functions::InstantFunc;
use super::eval::range_fn::RangeFunc;
use super::eval::selector::TimeShift;
use crate::model::{Labels, Matcher};

/// Rows of one or more whole series: `series` indexes the query's series
/// table (labels live there once, not on every row), rows sorted by time
/// within a series.
pub fn series_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("series", DataType::UInt32, false),
                Field::new("timestamp", DataType::Int64, false),
                Field::new("value", DataType::Float64, false),
                // A native histogram point: an index into the query's
                // histogram table (`QueryEnv`); null for float points.
                Field::new("histogram", DataType::UInt32, true),
            ]))
        })
        .clone()
}

fn df_schema() -> DFSchemaRef {
    static SCHEMA: OnceLock<DFSchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(
                DFSchema::try_from(series_schema().as_ref().clone())
                    .unwrap_or_else(|_| DFSchema::empty()),
            )
        })
        .clone()
}

/// How a function argument reaches the operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd)]
pub enum ArgKind {
    /// The next child plan, an instant vector.
    Vector,
    /// The next child plan, a scalar (one series without labels).
    Scalar,
    /// A string literal.
    String(String),
}

/// One PromQL operator.
#[derive(Clone, Debug)]
pub enum Op {
    /// Raw samples of the series the matchers select, in `[mint, maxt]`.
    Scan {
        matchers: Vec<Matcher>,
        mint: i64,
        maxt: i64,
    },
    /// Instant-vector alignment: child is raw samples.
    Instant {
        grid: Grid,
        lookback: i64,
        shift: TimeShift,
        /// Output the sample's timestamp instead of its value (`timestamp()`).
        sample_time: bool,
    },
    /// A range function over sliding windows: first child raw samples (a
    /// scan or a subquery), then scalar arguments.
    Range {
        grid: Grid,
        range: i64,
        shift: TimeShift,
        func: RangeFunc,
    },
    /// The raw samples of a range selector or subquery at one instant,
    /// the result of an instant query like `foo[5m]`.
    Window {
        t: i64,
        range: i64,
        shift: TimeShift,
    },
    /// A number at every step.
    Literal { grid: Grid, value: f64 },
    Call {
        grid: Grid,
        func: InstantFunc,
        args: Vec<ArgKind>,
    },
    Aggregate {
        grid: Grid,
        op: AggOp,
        grouping: Grouping,
        param: Option<ArgKind>,
    },
    Binary {
        grid: Grid,
        op: BinOp,
        return_bool: bool,
        matching: Matching,
        lhs_scalar: bool,
        rhs_scalar: bool,
    },
    /// `absent()`: 1 with `labels` at the steps where the child is empty.
    Absent { grid: Grid, labels: Labels },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Scan { .. } => "PromSeriesScan",
            Op::Instant { .. } => "PromInstantAlign",
            Op::Range { .. } => "PromRangeWindow",
            Op::Window { .. } => "PromMatrixWindow",
            Op::Literal { .. } => "PromLiteral",
            Op::Call { .. } => "PromFunction",
            Op::Aggregate { .. } => "PromAggregate",
            Op::Binary { .. } => "PromBinary",
            Op::Absent { .. } => "PromAbsent",
        }
    }
}

fn fmt_grid(f: &mut fmt::Formatter, g: &Grid) -> fmt::Result {
    if g.start == g.end {
        write!(f, "at={}", g.start)
    } else {
        write!(f, "start={} end={} step={}", g.start, g.end, g.step)
    }
}

fn fmt_shift(f: &mut fmt::Formatter, s: &TimeShift) -> fmt::Result {
    if s.offset != 0 {
        write!(f, " offset={}ms", s.offset)?;
    }
    if let Some(at) = s.at {
        write!(f, " @={at}")?;
    }
    Ok(())
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
        match self {
            Op::Scan {
                matchers,
                mint,
                maxt,
            } => {
                let m: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
                write!(f, "{{{}}} mint={mint} maxt={maxt}", m.join(", "))
            }
            Op::Instant {
                grid,
                lookback,
                shift,
                sample_time,
            } => {
                fmt_grid(f, grid)?;
                write!(f, " lookback={lookback}ms")?;
                fmt_shift(f, shift)?;
                if *sample_time {
                    write!(f, " output=sample_timestamp")?;
                }
                Ok(())
            }
            Op::Range {
                grid,
                range,
                shift,
                func,
            } => {
                write!(f, "func={func:?} range={range}ms ")?;
                fmt_grid(f, grid)?;
                fmt_shift(f, shift)
            }
            Op::Window { t, range, shift } => {
                write!(f, "at={t} range={range}ms")?;
                fmt_shift(f, shift)
            }
            Op::Literal { value, .. } => write!(f, "{}", super::format_value(*value)),
            Op::Call { func, args, .. } => write!(f, "func={func:?} args={args:?}"),
            Op::Aggregate { op, grouping, .. } => {
                let kind = if grouping.without { "without" } else { "by" };
                write!(f, "{op:?} {kind} ({})", grouping.labels.join(", "))
            }
            Op::Binary {
                op,
                return_bool,
                matching,
                ..
            } => {
                write!(f, "{op:?}")?;
                if *return_bool {
                    write!(f, " bool")?;
                }
                if !matching.labels.is_empty() || matching.on {
                    let kind = if matching.on { "on" } else { "ignoring" };
                    write!(f, " {kind}({})", matching.labels.join(", "))?;
                }
                if !matches!(matching.card, super::eval::binary::Card::OneToOne) {
                    write!(f, " {:?}({})", matching.card, matching.include.join(", "))?;
                }
                Ok(())
            }
            Op::Absent { labels, .. } => write!(f, "labels={}", super::eval::labels_string(labels)),
        }
    }
}

/// A PromQL operator as a DataFusion logical plan node.
#[derive(Clone, Debug)]
pub struct PromNode {
    pub op: Arc<Op>,
    pub inputs: Vec<LogicalPlan>,
    /// ` (line:column)` of the expression annotations of this node point
    /// at, as Prometheus appends to warnings and infos.
    pub position: Arc<str>,
}

impl PromNode {
    pub fn plan(op: Op, inputs: Vec<LogicalPlan>) -> LogicalPlan {
        Self::plan_at(op, inputs, "")
    }

    pub fn plan_at(op: Op, inputs: Vec<LogicalPlan>, position: &str) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(PromNode {
                op: Arc::new(op),
                inputs,
                position: position.into(),
            }),
        })
    }

    fn key(&self) -> String {
        format!("{}", self.op)
    }
}

impl PartialEq for PromNode {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.op, &other.op)
            || (self.key() == other.key() && self.inputs == other.inputs)
    }
}

impl Eq for PromNode {}

impl Hash for PromNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
        self.inputs.hash(state);
    }
}

impl PartialOrd for PromNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.key().partial_cmp(&other.key())
    }
}

impl UserDefinedLogicalNodeCore for PromNode {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        self.inputs.iter().collect()
    }

    fn schema(&self) -> &DFSchemaRef {
        static SCHEMA: OnceLock<DFSchemaRef> = OnceLock::new();
        SCHEMA.get_or_init(df_schema)
    }

    fn expressions(&self) -> Vec<DfExpr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.op)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<DfExpr>,
        inputs: Vec<LogicalPlan>,
    ) -> datafusion::common::Result<Self> {
        Ok(PromNode {
            op: self.op.clone(),
            inputs,
            position: self.position.clone(),
        })
    }
}
