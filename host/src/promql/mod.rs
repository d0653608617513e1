//! PromQL: parsed by `promql-parser`, lowered onto DataFusion logical plans
//! whose nodes are PromQL operators, executed by native operators over
//! Arrow batches. See ARCHITECTURE.md ("Query engine") for plan shapes.

pub mod eval;
pub mod exec;
pub mod lower;
pub mod plan;
mod source_strings;
pub mod value;

use std::sync::Arc;
use std::time::Duration;

use crate::storage::Storage;
pub use value::{Point, Sample, Series, Value, format_value};

/// Engine-wide settings, from the `--query.*` flags.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// `--query.lookback-delta`, in milliseconds.
    pub lookback_delta_ms: i64,
    /// `--query.timeout`.
    pub timeout: Duration,
    /// `--query.max-samples`: samples a query may hold in memory at once.
    pub max_samples: usize,
    /// Step of subqueries that give none (the global evaluation interval).
    pub default_subquery_step_ms: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            default_subquery_step_ms: 60_000,
        }
    }
}

/// Per-query overrides, from the API's `lookback_delta` and `timeout`.
#[derive(Clone, Debug, Default)]
pub struct QueryOptions {
    pub lookback_delta_ms: Option<i64>,
    pub timeout: Option<Duration>,
}

/// What a query returned, with the annotations Prometheus attaches.
#[derive(Clone, Debug)]
pub struct QueryResult {
    pub value: Value,
    /// `PromQL warning: ...` annotations.
    pub warnings: Vec<String>,
    /// `PromQL info: ...` annotations.
    pub infos: Vec<String>,
    pub stats: QueryStats,
}

/// Numbers for the API's `stats` parameter.
#[derive(Clone, Debug, Default)]
pub struct QueryStats {
    pub total_queryable_samples: u64,
    pub peak_samples: u64,
    pub exec_total_time: Duration,
}

/// Query errors, one variant per `errorType` of the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse or is not valid PromQL (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// The query is valid but failed while running (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// `--query.timeout` or the `timeout` parameter ran out (`timeout`, 503).
    #[error("query timed out in {0}")]
    Timeout(String),
    /// The caller went away (`canceled`, 499).
    #[error("query was canceled in {0}")]
    Canceled(String),
    /// A bug or a storage failure (`internal`, 500).
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    /// `errorType` in the API's JSON.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Canceled(_) => "canceled",
            QueryError::Internal(_) => "internal",
        }
    }

    /// The HTTP status Prometheus answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            QueryError::BadData(_) => 400,
            QueryError::Execution(_) => 422,
            QueryError::Timeout(_) => 503,
            QueryError::Canceled(_) => 499,
            QueryError::Internal(_) => 500,
        }
    }
}

/// Runs PromQL against a [`Storage`].
#[derive(Clone)]
pub struct Engine {
    storage: Arc<Storage>,
    options: EngineOptions,
}

impl Engine {
    pub fn new(storage: Arc<Storage>, options: EngineOptions) -> Engine {
        Engine { storage, options }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` at one instant (`time_ms`).
    pub async fn instant_query(
        &self,
        query: &str,
        time_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        self.run(query, time_ms, time_ms, 0, opts).await
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`; the
    /// result is always a matrix. `step_ms` must be positive.
    pub async fn range_query(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        self.run(query, start_ms, end_ms, step_ms, opts).await
    }

    /// The DataFusion plan of `query` as text; with `analyze`, the query
    /// runs and each operator reports its output rows and compute time.
    pub async fn explain(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        analyze: bool,
    ) -> Result<String, QueryError> {
        let prepared = self.prepare(query, start_ms, end_ms, step_ms, &QueryOptions::default())?;
        let Prepared::Plan { plan, env, .. } = prepared else {
            return Ok("PromStringLiteral".into());
        };
        let state = exec::session(env);
        let physical = state
            .create_physical_plan(&plan)
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let mut out = format!("Logical plan:\n{}\n", plan.display_indent());
        if analyze {
            datafusion::physical_plan::collect(physical.clone(), state.task_ctx())
                .await
                .map_err(df_to_query_error)?;
            let shown = datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(
                physical.as_ref(),
            );
            out.push_str(&format!(
                "Physical plan (analysed):\n{}",
                shown.indent(true)
            ));
        } else {
            let shown = datafusion::physical_plan::displayable(physical.as_ref());
            out.push_str(&format!("Physical plan:\n{}", shown.indent(true)));
        }
        Ok(out)
    }

    /// Parses and lowers a query onto its grid.
    fn prepare(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<Prepared, QueryError> {
        let expr = promql_parser::parser::parse(query).map_err(QueryError::BadData)?;
        let range_query = step_ms > 0;
        let grid = if range_query {
            eval::Grid {
                start: start_ms,
                end: end_ms,
                step: step_ms,
            }
        } else {
            eval::Grid::instant(start_ms)
        };
        let lowering = lower::Lowering {
            query,
            annotations: Default::default(),
            start: start_ms,
            end: end_ms,
            step: step_ms,
            lookback: opts
                .lookback_delta_ms
                .unwrap_or(self.options.lookback_delta_ms),
            default_subquery_step: self.options.default_subquery_step_ms,
            invalid_utf8: source_strings::invalid_utf8_literals(query),
        };
        let (plan, kind) = match lowering.lower(&expr, grid)? {
            lower::Lowered::String(s) => {
                if range_query {
                    return Err(QueryError::BadData(
                        "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
                    ));
                }
                return Ok(Prepared::String(s));
            }
            lower::Lowered::Vector(p) => (p, ResultKind::Vector),
            lower::Lowered::Scalar(p) => (p, ResultKind::Scalar),
            lower::Lowered::Matrix {
                raw, range, shift, ..
            } => {
                if range_query {
                    return Err(QueryError::BadData(
                        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                    ));
                }
                (
                    plan::PromNode::plan(
                        plan::Op::Window {
                            t: start_ms,
                            range,
                            shift,
                        },
                        vec![raw],
                    ),
                    ResultKind::Matrix,
                )
            }
        };
        let env = Arc::new(exec::QueryEnv::new(
            self.storage.clone(),
            self.options.max_samples,
        ));
        env.annotations
            .lock()
            .merge(lowering.annotations.into_inner(), "");
        Ok(Prepared::Plan {
            plan,
            env,
            kind,
            grid,
            ordered: keeps_order(&expr),
        })
    }

    async fn run(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let started = std::time::Instant::now();
        let prepared = self.prepare(query, start_ms, end_ms, step_ms, opts)?;
        let (plan, env, kind, grid, ordered) = match prepared {
            Prepared::String(s) => {
                return Ok(QueryResult {
                    value: Value::String { t: start_ms, s },
                    warnings: Vec::new(),
                    infos: Vec::new(),
                    stats: QueryStats::default(),
                });
            }
            Prepared::Plan {
                plan,
                env,
                kind,
                grid,
                ordered,
            } => (plan, env, kind, grid, ordered),
        };
        let state = exec::session(env.clone());
        let execute = async {
            let physical = state
                .create_physical_plan(&plan)
                .await
                .map_err(df_to_query_error)?;
            datafusion::physical_plan::collect(physical, state.task_ctx())
                .await
                .map_err(df_to_query_error)
        };
        let timeout = opts.timeout.unwrap_or(self.options.timeout);
        let batches = tokio::time::timeout(timeout, execute)
            .await
            .map_err(|_| QueryError::Timeout("expression evaluation".into()))??;
        let series = env.decode(&batches);
        let value = finish(series, kind, grid, step_ms > 0, ordered)?;
        let annotations = std::mem::take(&mut *env.annotations.lock());
        Ok(QueryResult {
            value,
            warnings: annotations.warnings,
            infos: annotations.infos,
            stats: QueryStats {
                total_queryable_samples: env.samples_loaded(),
                peak_samples: env.samples_loaded(),
                exec_total_time: started.elapsed(),
            },
        })
    }
}

enum Prepared {
    String(String),
    Plan {
        plan: datafusion::logical_expr::LogicalPlan,
        env: Arc<exec::QueryEnv>,
        kind: ResultKind,
        grid: eval::Grid,
        ordered: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ResultKind {
    Vector,
    Scalar,
    Matrix,
}

/// Whether the outermost operation gives the result its order (`sort`,
/// `topk`, ...), which an instant query must then keep.
fn keeps_order(expr: &promql_parser::parser::Expr) -> bool {
    use promql_parser::parser::Expr;
    match expr {
        Expr::Paren(p) => keeps_order(&p.expr),
        Expr::Call(c) => matches!(
            c.func.name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ),
        Expr::Aggregate(a) => matches!(a.op.to_string().as_str(), "topk" | "bottomk"),
        _ => false,
    }
}

/// Maps a DataFusion error to the API's error kinds: evaluation errors are
/// `execution`, anything else is `internal`.
fn df_to_query_error(e: datafusion::error::DataFusionError) -> QueryError {
    use datafusion::error::DataFusionError;
    let root = e.find_root();
    if let DataFusionError::External(inner) = root {
        if let Some(ev) = inner.downcast_ref::<eval::EvalError>() {
            return QueryError::Execution(ev.0.clone());
        }
        if let Some(se) = inner.downcast_ref::<crate::storage::StorageError>() {
            return QueryError::Internal(se.to_string());
        }
    }
    QueryError::Internal(root.to_string())
}

/// Turns the root operator's series into the API value: drops metric
/// names marked for removal, rejects duplicate label sets, and orders.
fn finish(
    series: Vec<eval::SeriesData>,
    kind: ResultKind,
    grid: eval::Grid,
    range_query: bool,
    ordered: bool,
) -> Result<Value, QueryError> {
    if kind == ResultKind::Scalar && !range_query {
        let v = series
            .first()
            .and_then(|s| s.points.first())
            .map(|p| p.v)
            .unwrap_or(f64::NAN);
        return Ok(Value::Scalar { t: grid.start, v });
    }
    // Merge series that end up with the same labels; two points at one
    // step make the result ambiguous.
    let mut merged: Vec<Series> = Vec::with_capacity(series.len());
    let mut index: std::collections::HashMap<crate::model::Labels, usize> =
        std::collections::HashMap::new();
    let same_labelset =
        || QueryError::Execution("vector cannot contain metrics with the same labelset".into());
    for s in series {
        let labels = if s.drop_name {
            eval::drop_metric_name(&s.labels)
        } else {
            s.labels
        };
        let points: Vec<Point> = s.points;
        match index.get(&labels) {
            Some(&i) => {
                let m = &mut merged[i];
                for p in points {
                    if m.points.iter().any(|e| e.t == p.t)
                        || m.histograms.iter().any(|e| e.t == p.t)
                    {
                        return Err(same_labelset());
                    }
                    m.points.push(p);
                }
                for h in s.hists {
                    if m.points.iter().any(|e| e.t == h.t)
                        || m.histograms.iter().any(|e| e.t == h.t)
                    {
                        return Err(same_labelset());
                    }
                    m.histograms.push(h);
                }
                m.points.sort_by_key(|p| p.t);
                m.histograms.sort_by_key(|p| p.t);
            }
            None => {
                index.insert(labels.clone(), merged.len());
                merged.push(Series {
                    labels,
                    points,
                    histograms: s.hists,
                });
            }
        }
    }
    if kind == ResultKind::Matrix || range_query {
        merged.sort_by(|a, b| a.labels.cmp(&b.labels));
        return Ok(Value::Matrix(merged));
    }
    let mut samples: Vec<Sample> = merged
        .into_iter()
        .filter_map(|s| {
            if let Some(p) = s.points.first() {
                return Some(Sample {
                    labels: s.labels,
                    t: grid.start,
                    v: p.v,
                    h: None,
                });
            }
            let h = s.histograms.into_iter().next()?;
            Some(Sample {
                labels: s.labels,
                t: grid.start,
                v: 0.0,
                h: Some(h.h),
            })
        })
        .collect();
    if !ordered {
        samples.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    Ok(Value::Vector(samples))
}

#[cfg(test)]
mod tests;
