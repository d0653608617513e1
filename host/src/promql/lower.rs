//! Lowering: a parsed PromQL expression becomes a tree of [`PromNode`]s.
//! Here every time is resolved: each node gets the grid of steps it is
//! evaluated at (subqueries get their own), `@`/`offset` become a
//! [`TimeShift`], and scans get the exact data range they must read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::logical_expr::LogicalPlan;
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{
    self as ast, AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality,
};

use promql_parser::parser::value::ValueType;

use super::QueryError;
use super::eval::aggregate::{AggOp, Grouping};
use super::eval::binary::{BinOp, Card, Matching};
use super::eval::functions::InstantFunc;
use super::eval::range_fn::RangeFunc;
use super::eval::selector::TimeShift;
use super::eval::{Grid, with_label};
use super::plan::{ArgKind, Op, PromNode};
use crate::model::{Labels, MatchOp, Matcher};

/// What lowering an expression produced.
pub enum Lowered {
    Vector(LogicalPlan),
    Scalar(LogicalPlan),
    /// A range vector: raw samples plus the window each step reads.
    Matrix {
        raw: LogicalPlan,
        range: i64,
        shift: TimeShift,
        /// The selector's matchers, for `absent_over_time`.
        selector: Option<Vec<Matcher>>,
    },
    String(String),
}

pub struct Lowering<'q> {
    /// The query text, to give annotations their `(line:column)`.
    pub query: &'q str,
    /// Annotations known while lowering (e.g. `sort` in a range query).
    pub annotations: std::cell::RefCell<super::eval::Annotations>,
    /// Query start and end, for `@ start()` and `@ end()`.
    pub start: i64,
    pub end: i64,
    /// Query step (0 for an instant query), for `step()`.
    pub step: i64,
    pub lookback: i64,
    /// Step of subqueries without one (the global evaluation interval).
    pub default_subquery_step: i64,
    /// String literals that are invalid UTF-8 as Prometheus reads them
    /// (see `source_strings`), with their Go-quoted form.
    pub invalid_utf8: std::collections::HashMap<String, String>,
}

fn ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn bad(msg: impl Into<String>) -> QueryError {
    QueryError::BadData(msg.into())
}

impl Lowering<'_> {
    /// ` (line:column)` of `e` in the query, as Prometheus suffixes
    /// annotations. The parser keeps no positions, so the expression is
    /// printed and looked up; `(1:1)` if it cannot be found.
    fn position(&self, e: &Expr) -> String {
        let text = e.to_string();
        let at = self.query.find(&text).unwrap_or(0);
        let before = &self.query[..at];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" ({line}:{col})")
    }

    fn shift(&self, offset: &Option<Offset>, at: &Option<AtModifier>) -> TimeShift {
        TimeShift {
            offset: match offset {
                Some(Offset::Pos(d)) => ms(d),
                Some(Offset::Neg(d)) => -ms(d),
                None => 0,
            },
            at: at.as_ref().map(|a| match a {
                AtModifier::Start => self.start,
                AtModifier::End => self.end,
                AtModifier::At(t) => system_time_ms(t),
            }),
        }
    }

    fn matchers(vs: &ast::VectorSelector) -> Result<Vec<Matcher>, QueryError> {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(bad("'or' in label matchers is not supported"));
        }
        let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
        if let Some(name) = &vs.name {
            out.push(Matcher::eq("__name__", name));
        }
        for m in &vs.matchers.matchers {
            let op = match m.op {
                PMatchOp::Equal => MatchOp::Equal,
                PMatchOp::NotEqual => MatchOp::NotEqual,
                PMatchOp::Re(_) => MatchOp::RegexMatch,
                PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
            };
            out.push(
                Matcher::new(op, m.name.clone(), m.value.clone())
                    .map_err(|e| bad(format!("invalid regular expression {:?}: {e}", m.value)))?,
            );
        }
        Ok(out)
    }

    fn scan(matchers: Vec<Matcher>, mint: i64, maxt: i64) -> LogicalPlan {
        PromNode::plan(
            Op::Scan {
                matchers,
                mint,
                maxt,
            },
            vec![],
        )
    }

    pub fn lower(&self, expr: &Expr, grid: Grid) -> Result<Lowered, QueryError> {
        Ok(match expr {
            Expr::Paren(p) => self.lower(&p.expr, grid)?,
            Expr::NumberLiteral(n) => {
                Lowered::Scalar(PromNode::plan(Op::Literal { grid, value: n.val }, vec![]))
            }
            Expr::StringLiteral(s) => {
                // Every string argument is a label name, value or regex,
                // none of which may be invalid UTF-8.
                if let Some(quoted) = self.invalid_utf8.get(&s.val) {
                    return Err(bad(format!("invalid label name {quoted}")));
                }
                Lowered::String(s.val.clone())
            }
            Expr::VectorSelector(vs) => Lowered::Vector(self.instant_selector(vs, grid, false)?),
            Expr::MatrixSelector(m) => {
                let shift = self.shift(&m.vs.offset, &m.vs.at);
                let range = ms(&m.range);
                let (lo, hi) = shift.data_range(grid, range);
                let matchers = Self::matchers(&m.vs)?;
                Lowered::Matrix {
                    raw: Self::scan(matchers.clone(), lo + 1, hi),
                    range,
                    shift,
                    selector: Some(matchers),
                }
            }
            Expr::Subquery(sq) => {
                let shift = self.shift(&sq.offset, &sq.at);
                let range = ms(&sq.range);
                let step = sq
                    .step
                    .as_ref()
                    .map(ms)
                    .filter(|s| *s > 0)
                    .unwrap_or(self.default_subquery_step);
                let (lo, hi) = shift.data_range(grid, range);
                // The first step after the window's start aligned to the
                // subquery step, as Prometheus aligns them.
                let mut start = step * (lo / step);
                if start <= lo {
                    start += step;
                }
                let inner = Grid {
                    start,
                    end: hi,
                    step,
                };
                let raw = match self.lower(&sq.expr, inner)? {
                    Lowered::Vector(p) | Lowered::Scalar(p) => p,
                    _ => return Err(bad("subquery is only allowed on instant vector")),
                };
                Lowered::Matrix {
                    raw,
                    range,
                    shift,
                    selector: None,
                }
            }
            Expr::Unary(u) => match self.lower(&u.expr, grid)? {
                Lowered::Vector(p) => Lowered::Vector(PromNode::plan(
                    Op::Call {
                        grid,
                        func: InstantFunc::Neg,
                        args: vec![ArgKind::Vector],
                    },
                    vec![p],
                )),
                Lowered::Scalar(p) => Lowered::Scalar(PromNode::plan(
                    Op::Call {
                        grid,
                        func: InstantFunc::Neg,
                        args: vec![ArgKind::Vector],
                    },
                    vec![p],
                )),
                _ => {
                    return Err(bad(
                        "unary expression only allowed on expressions of type scalar or instant vector",
                    ));
                }
            },
            Expr::Binary(b) => self.binary(b, grid)?,
            Expr::Aggregate(a) => self.aggregate(a, grid)?,
            Expr::Call(c) => self.call(c, grid)?,
            Expr::Extension(_) => return Err(bad("unsupported expression")),
        })
    }

    fn instant_selector(
        &self,
        vs: &ast::VectorSelector,
        grid: Grid,
        sample_time: bool,
    ) -> Result<LogicalPlan, QueryError> {
        let shift = self.shift(&vs.offset, &vs.at);
        let (lo, hi) = shift.data_range(grid, self.lookback);
        let scan = Self::scan(Self::matchers(vs)?, lo + 1, hi);
        Ok(PromNode::plan(
            Op::Instant {
                grid,
                lookback: self.lookback,
                shift,
                sample_time,
            },
            vec![scan],
        ))
    }

    fn vector_or_scalar(&self, e: &Expr, grid: Grid) -> Result<(LogicalPlan, bool), QueryError> {
        match self.lower(e, grid)? {
            Lowered::Vector(p) => Ok((p, false)),
            Lowered::Scalar(p) => Ok((p, true)),
            Lowered::Matrix { .. } => Err(bad(
                "binary expression must contain only scalar and instant vector types",
            )),
            Lowered::String(_) => Err(bad(
                "binary expression must contain only scalar and instant vector types",
            )),
        }
    }

    fn binary(&self, b: &ast::BinaryExpr, grid: Grid) -> Result<Lowered, QueryError> {
        let op = match b.op.to_string().to_lowercase().as_str() {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "^" => BinOp::Pow,
            "atan2" => BinOp::Atan2,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            ">" => BinOp::Gt,
            "<" => BinOp::Lt,
            ">=" => BinOp::Ge,
            "<=" => BinOp::Le,
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "unless" => BinOp::Unless,
            other => return Err(bad(format!("unsupported binary operator {other}"))),
        };
        let (lhs, lhs_scalar) = self.vector_or_scalar(&b.lhs, grid)?;
        let (rhs, rhs_scalar) = self.vector_or_scalar(&b.rhs, grid)?;
        let mut matching = Matching::default();
        let mut return_bool = false;
        if let Some(m) = &b.modifier {
            return_bool = m.return_bool;
            matching.card = match &m.card {
                VectorMatchCardinality::OneToOne => Card::OneToOne,
                VectorMatchCardinality::ManyToOne(l) => {
                    matching.include = l.labels.clone();
                    Card::ManyToOne
                }
                VectorMatchCardinality::OneToMany(l) => {
                    matching.include = l.labels.clone();
                    Card::OneToMany
                }
                VectorMatchCardinality::ManyToMany => Card::ManyToMany,
            };
            matching.fill_lhs = m.fill_values.lhs.map(f64::to_bits);
            matching.fill_rhs = m.fill_values.rhs.map(f64::to_bits);
            if let Some(lm) = &m.matching {
                matching.on = matches!(lm, LabelModifier::Include(_));
                matching.labels = lm.labels().labels.clone();
            }
        }
        if op.is_set() {
            matching.card = Card::ManyToMany;
        }
        let node = PromNode::plan(
            Op::Binary {
                grid,
                op,
                return_bool,
                matching,
                lhs_scalar,
                rhs_scalar,
            },
            vec![lhs, rhs],
        );
        Ok(if lhs_scalar && rhs_scalar {
            Lowered::Scalar(node)
        } else {
            Lowered::Vector(node)
        })
    }

    fn aggregate(&self, a: &ast::AggregateExpr, grid: Grid) -> Result<Lowered, QueryError> {
        let name = a.op.to_string().to_lowercase();
        let op = AggOp::from_name(&name)
            .ok_or_else(|| bad(format!("unsupported aggregation {name}")))?;
        let grouping = match &a.modifier {
            Some(LabelModifier::Include(l)) => Grouping {
                labels: l.labels.clone(),
                without: false,
            },
            Some(LabelModifier::Exclude(l)) => Grouping {
                labels: l.labels.clone(),
                without: true,
            },
            None => Grouping {
                labels: Vec::new(),
                without: false,
            },
        };
        let mut children = Vec::new();
        let param = match &a.param {
            None => None,
            Some(p) => match self.lower(p, grid)? {
                Lowered::String(s) => Some(ArgKind::String(s)),
                Lowered::Scalar(plan) => {
                    children.push(plan);
                    Some(ArgKind::Scalar)
                }
                _ => return Err(bad(format!("expected scalar parameter for {name}"))),
            },
        };
        match self.lower(&a.expr, grid)? {
            Lowered::Vector(p) => children.push(p),
            _ => {
                return Err(bad(format!(
                    "expected type instant vector in aggregation expression for {name}"
                )));
            }
        }
        let position = self.position(a.param.as_deref().unwrap_or(&a.expr));
        Ok(Lowered::Vector(PromNode::plan_at(
            Op::Aggregate {
                grid,
                op,
                grouping,
                param,
            },
            children,
            &position,
        )))
    }

    fn call(&self, c: &ast::Call, grid: Grid) -> Result<Lowered, QueryError> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
        if let Some(func) = RangeFunc::from_name(name) {
            let mi = func.matrix_arg();
            let Some(Lowered::Matrix {
                raw,
                range,
                shift,
                selector,
            }) = args.get(mi).map(|e| self.lower(e, grid)).transpose()?
            else {
                return Err(bad(format!(
                    "expected type range vector in call to function \"{name}\""
                )));
            };
            let mut children = vec![raw];
            for (i, e) in args.iter().enumerate() {
                if i == mi {
                    continue;
                }
                match self.lower(e, grid)? {
                    Lowered::Scalar(p) => children.push(p),
                    _ => {
                        return Err(bad(format!(
                            "expected type scalar in call to function \"{name}\""
                        )));
                    }
                }
            }
            let range_func = if func == RangeFunc::AbsentOverTime {
                RangeFunc::PresentOverTime
            } else {
                func
            };
            let position = args.get(mi).map(|e| self.position(e)).unwrap_or_default();
            let node = PromNode::plan_at(
                Op::Range {
                    grid,
                    range,
                    shift,
                    func: range_func,
                },
                children,
                &position,
            );
            if func == RangeFunc::AbsentOverTime {
                let labels = absent_labels(selector.as_deref().unwrap_or(&[]));
                return Ok(Lowered::Vector(PromNode::plan(
                    Op::Absent { grid, labels },
                    vec![node],
                )));
            }
            return Ok(Lowered::Vector(node));
        }
        let query_constant = match name {
            "step" => Some(self.step),
            "range" => Some(self.end - self.start),
            "start" => Some(self.start),
            "end" => Some(self.end),
            _ => None,
        };
        if let Some(ms) = query_constant {
            let value = ms as f64 / 1000.0;
            return Ok(Lowered::Scalar(PromNode::plan(
                Op::Literal { grid, value },
                vec![],
            )));
        }
        match name {
            "absent" => {
                let arg = args
                    .first()
                    .ok_or_else(|| bad("absent() needs an argument"))?;
                let labels = match arg {
                    Expr::VectorSelector(vs) => absent_labels(&Self::matchers(vs)?),
                    _ => Labels::default(),
                };
                let Lowered::Vector(p) = self.lower(arg, grid)? else {
                    return Err(bad(
                        "expected type instant vector in call to function \"absent\"",
                    ));
                };
                return Ok(Lowered::Vector(PromNode::plan(
                    Op::Absent { grid, labels },
                    vec![p],
                )));
            }
            "timestamp" => {
                // Parentheses do not hide the selector: Prometheus reads the
                // sample's own timestamp through them too.
                let mut arg: Option<&Expr> = args.first().map(|a| &**a);
                while let Some(Expr::Paren(p)) = arg {
                    arg = Some(&*p.expr);
                }
                if let Some(Expr::VectorSelector(vs)) = arg {
                    return Ok(Lowered::Vector(self.instant_selector(vs, grid, true)?));
                }
            }
            _ => {}
        }
        let func = InstantFunc::from_name(name)
            .ok_or_else(|| bad(format!("function {name:?} is not supported")))?;
        let mut kinds = Vec::new();
        let mut children = Vec::new();
        for e in &args {
            match self.lower(e, grid)? {
                Lowered::Vector(p) => {
                    kinds.push(ArgKind::Vector);
                    children.push(p);
                }
                Lowered::Scalar(p) => {
                    kinds.push(ArgKind::Scalar);
                    children.push(p);
                }
                Lowered::String(s) => kinds.push(ArgKind::String(s)),
                Lowered::Matrix { .. } => {
                    return Err(bad(format!(
                        "unexpected range vector in call to function {name:?}"
                    )));
                }
            }
        }
        if matches!(
            name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ) && self.step > 0
        {
            let at = self.position(&Expr::Call(c.clone()));
            self.annotations.borrow_mut().warn(format!(
                "sort is ineffective for range queries since results are always ordered by labels{at}"
            ));
        }
        // Annotations point at the vector argument (the histogram for
        // histogram_quantile).
        let vector_arg = match func {
            InstantFunc::HistogramQuantile => args.get(1),
            InstantFunc::HistogramFraction => args.get(2),
            _ => args.first(),
        };
        let position = vector_arg.map(|e| self.position(e)).unwrap_or_default();
        let node = PromNode::plan_at(
            Op::Call {
                grid,
                func,
                args: kinds,
            },
            children,
            &position,
        );
        Ok(match c.func.return_type {
            ValueType::Scalar => Lowered::Scalar(node),
            _ => Lowered::Vector(node),
        })
    }
}

/// The labels `absent()` reports: those fixed by equality matchers,
/// except the metric name; a label matched twice is left out.
fn absent_labels(matchers: &[Matcher]) -> Labels {
    let mut labels = Labels::default();
    let mut seen: Vec<&str> = Vec::new();
    for m in matchers {
        if m.name == "__name__" {
            continue;
        }
        if seen.contains(&m.name.as_str()) {
            labels = with_label(&labels, &m.name, "");
            continue;
        }
        seen.push(&m.name);
        if m.op == MatchOp::Equal {
            labels = with_label(&labels, &m.name, &m.value);
        }
    }
    labels
}
