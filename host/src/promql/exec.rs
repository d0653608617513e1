//! Physical execution: each PromQL plan node becomes a [`PromExec`], a
//! DataFusion `ExecutionPlan` whose work is one of the native operators
//! in `eval/`. Series identities travel through the query's
//! [`QueryEnv`] series table; batches carry an index into it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, UInt32Type};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;

use super::eval::functions::Arg;
use super::eval::range_fn::RangeFunc;
use super::eval::{
    self, Annotations, EvalError, SeriesData, aggregate, binary, functions, native, selector,
};
use super::plan::{ArgKind, Op, PromNode, series_schema};
use crate::model::Labels;
use crate::promql::value::{HPoint, Point};
use crate::storage::Storage;

/// What every operator of one query shares.
pub struct QueryEnv {
    pub storage: Arc<Storage>,
    /// Labels (and the delayed-name-drop flag) of every series a batch
    /// refers to, by index.
    series: Mutex<Vec<(Labels, bool)>>,
    pub annotations: Mutex<Annotations>,
    /// Native histograms the batches refer to, by index.
    histograms: Mutex<Vec<Arc<crate::model::FloatHistogram>>>,
    /// Samples loaded so far, against `--query.max-samples`.
    samples: AtomicU64,
    max_samples: u64,
}

impl QueryEnv {
    pub fn new(storage: Arc<Storage>, max_samples: usize) -> QueryEnv {
        QueryEnv {
            storage,
            series: Mutex::new(Vec::new()),
            annotations: Mutex::new(Annotations::default()),
            histograms: Mutex::new(Vec::new()),
            samples: AtomicU64::new(0),
            max_samples: max_samples as u64,
        }
    }

    pub fn samples_loaded(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    fn account(&self, n: usize) -> Result<(), EvalError> {
        let total = self.samples.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.max_samples {
            return Err(EvalError(
                "query processing would load too many samples into memory in query execution"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Series as batches: whole series per batch, about 8k rows each.
    /// Float-only batches get an all-null histogram column, so the float
    /// path pays one null buffer per batch and nothing per row.
    pub fn encode(&self, series: Vec<SeriesData>) -> DfResult<Vec<RecordBatch>> {
        const TARGET_ROWS: usize = 8192;
        let mut out = Vec::new();
        let mut cols = Columns::default();
        let mut table = self.series.lock();
        for s in series {
            if s.is_empty() {
                continue;
            }
            let id = table.len() as u32;
            table.push((s.labels, s.drop_name));
            if s.hists.is_empty() {
                for p in &s.points {
                    cols.ids.push(id);
                    cols.ts.push(p.t);
                    cols.vs.push(p.v);
                }
                if let Some(hs) = cols.hs.as_mut() {
                    hs.resize(cols.ids.len(), None);
                }
            } else {
                let mut hist_table = self.histograms.lock();
                let hs = cols.hs.get_or_insert_with(Vec::new);
                hs.resize(cols.ids.len(), None);
                let (mut i, mut j) = (0, 0);
                while i < s.points.len() || j < s.hists.len() {
                    cols.ids.push(id);
                    if j >= s.hists.len() || (i < s.points.len() && s.points[i].t < s.hists[j].t) {
                        cols.ts.push(s.points[i].t);
                        cols.vs.push(s.points[i].v);
                        hs.push(None);
                        i += 1;
                    } else {
                        cols.ts.push(s.hists[j].t);
                        cols.vs.push(0.0);
                        hs.push(Some(hist_table.len() as u32));
                        hist_table.push(s.hists[j].h.clone());
                        j += 1;
                    }
                }
            }
            if cols.ids.len() >= TARGET_ROWS {
                out.push(std::mem::take(&mut cols).into_batch()?);
            }
        }
        if !cols.ids.is_empty() {
            out.push(cols.into_batch()?);
        }
        Ok(out)
    }

    /// Batches back into series, joining runs of the same series.
    pub fn decode(&self, batches: &[RecordBatch]) -> Vec<SeriesData> {
        let table = self.series.lock();
        let hist_table = self.histograms.lock();
        let mut out: Vec<SeriesData> = Vec::new();
        let mut last_id = u32::MAX;
        for b in batches {
            let ids = b.column(0).as_primitive::<UInt32Type>().values();
            let ts = b.column(1).as_primitive::<Int64Type>().values();
            let vs = b.column(2).as_primitive::<Float64Type>().values();
            let hcol = b.column(3).as_primitive::<UInt32Type>();
            let has_hists = hcol.null_count() < hcol.len();
            for i in 0..b.num_rows() {
                if ids[i] != last_id || out.is_empty() {
                    last_id = ids[i];
                    let (labels, drop_name) =
                        table.get(ids[i] as usize).cloned().unwrap_or_default();
                    out.push(SeriesData {
                        labels,
                        drop_name,
                        points: Vec::new(),
                        hists: Vec::new(),
                    });
                }
                let Some(s) = out.last_mut() else { continue };
                if has_hists && hcol.is_valid(i) {
                    if let Some(h) = hist_table.get(hcol.value(i) as usize) {
                        s.hists.push(HPoint {
                            t: ts[i],
                            h: h.clone(),
                        });
                    }
                } else {
                    s.points.push(Point { t: ts[i], v: vs[i] });
                }
            }
        }
        out
    }
}

/// Column buffers of one batch being built.
#[derive(Default)]
struct Columns {
    ids: Vec<u32>,
    ts: Vec<i64>,
    vs: Vec<f64>,
    /// Only once a histogram point was seen.
    hs: Option<Vec<Option<u32>>>,
}

impl Columns {
    fn into_batch(self) -> DfResult<RecordBatch> {
        let n = self.ids.len();
        let hs: Arc<dyn datafusion::arrow::array::Array> = match self.hs {
            Some(mut hs) => {
                hs.resize(n, None);
                Arc::new(UInt32Array::from(hs))
            }
            None => Arc::new(UInt32Array::new_null(n)),
        };
        Ok(RecordBatch::try_new(
            series_schema(),
            vec![
                Arc::new(UInt32Array::from(self.ids)),
                Arc::new(Int64Array::from(self.ts)),
                Arc::new(Float64Array::from(self.vs)),
                hs,
            ],
        )?)
    }
}

fn df_err(e: EvalError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The physical operator for one [`PromNode`].
pub struct PromExec {
    op: Arc<Op>,
    position: Arc<str>,
    children: Vec<Arc<dyn ExecutionPlan>>,
    env: Arc<QueryEnv>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for PromExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)
    }
}

impl PromExec {
    pub fn new(
        op: Arc<Op>,
        position: Arc<str>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        env: Arc<QueryEnv>,
    ) -> PromExec {
        let props = PlanProperties::new(
            EquivalenceProperties::new(series_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        PromExec {
            op,
            position,
            children,
            env,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for PromExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.op)
    }
}

/// Collects a child's output as series.
async fn collect_child(
    child: Arc<dyn ExecutionPlan>,
    ctx: Arc<TaskContext>,
    env: &QueryEnv,
) -> DfResult<Vec<SeriesData>> {
    let batches: Vec<RecordBatch> = child.execute(0, ctx)?.try_collect().await?;
    Ok(env.decode(&batches))
}

/// A scalar child's values, one per grid step.
fn scalar_values(series: &[SeriesData], grid: eval::Grid) -> Vec<f64> {
    let mut out = vec![f64::NAN; grid.len()];
    if let Some(s) = series.first() {
        for p in &s.points {
            if let Some(i) = grid.index(p.t) {
                out[i] = p.v;
            }
        }
    }
    out
}

impl PromExec {
    async fn run(
        op: Arc<Op>,
        position: Arc<str>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        env: Arc<QueryEnv>,
        ctx: Arc<TaskContext>,
    ) -> DfResult<Vec<SeriesData>> {
        let mut inputs = Vec::with_capacity(children.len());
        for c in children {
            inputs.push(collect_child(c, ctx.clone(), &env).await?);
        }
        let mut inputs = inputs.into_iter();
        let mut next = || inputs.next().unwrap_or_default();
        // This operator's annotations, given its position when merged.
        let mut ann = Annotations::default();
        let out = match op.as_ref() {
            Op::Scan {
                matchers,
                mint,
                maxt,
            } => {
                let mut partial = Vec::new();
                let selected = env
                    .storage
                    .select_reporting(matchers, *mint, *maxt, &mut partial)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                // Storage warnings (a remote block left out) are not PromQL
                // annotations: plain text without a position, as Prometheus
                // reports remote-read failures.
                if !partial.is_empty() {
                    let mut all = env.annotations.lock();
                    for w in partial {
                        if !all.warnings.contains(&w) {
                            all.warnings.push(w);
                        }
                    }
                }
                let n: usize = selected.iter().map(|s| s.len()).sum();
                env.account(n).map_err(df_err)?;
                selected
                    .into_iter()
                    .map(|s| {
                        let mut d = SeriesData::new(
                            s.labels,
                            s.samples.iter().map(|x| Point { t: x.t, v: x.v }).collect(),
                        );
                        d.hists = s
                            .histograms
                            .into_iter()
                            .map(|x| HPoint { t: x.t, h: x.h })
                            .collect();
                        d
                    })
                    .collect()
            }
            Op::Instant {
                grid,
                lookback,
                shift,
                sample_time,
            } => {
                let raw = next();
                let mut out = Vec::with_capacity(raw.len());
                for (k, s) in raw.into_iter().enumerate() {
                    yield_sometimes(k).await;
                    let (points, hists) = if s.hists.is_empty() {
                        let p = selector::instant_align(
                            &s.points,
                            *grid,
                            *lookback,
                            *shift,
                            *sample_time,
                        );
                        (p, Vec::new())
                    } else {
                        native::instant_align(
                            &s.points,
                            &s.hists,
                            *grid,
                            *lookback,
                            *shift,
                            *sample_time,
                        )
                    };
                    if !points.is_empty() || !hists.is_empty() {
                        out.push(SeriesData {
                            labels: s.labels,
                            drop_name: s.drop_name || *sample_time,
                            points,
                            hists,
                        });
                    }
                }
                out
            }
            Op::Range {
                grid,
                range,
                shift,
                func,
            } => {
                let raw = next();
                let args: Vec<Vec<f64>> = std::iter::from_fn(|| inputs.next())
                    .map(|s| scalar_values(&s, *grid))
                    .collect();
                check_range_args(*func, &args, &mut ann)?;
                let mut out = Vec::with_capacity(raw.len());
                let mut step_args = Vec::with_capacity(args.len());
                if matches!(func, RangeFunc::Rate | RangeFunc::Increase) {
                    for s in raw.iter().filter(|s| !s.points.is_empty()) {
                        let name = s.labels.metric_name().unwrap_or("");
                        if !["_total", "_sum", "_count", "_bucket"]
                            .iter()
                            .any(|x| name.ends_with(x))
                        {
                            ann.info(format!(
                                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
                            ));
                        }
                    }
                }
                for (k, s) in raw.into_iter().enumerate() {
                    yield_sometimes(k).await;
                    let (points, hists) = if s.hists.is_empty() {
                        let p = selector::slide(&s.points, *grid, *range, *shift, |i, w, win| {
                            step_args.clear();
                            step_args.extend(args.iter().map(|a| a[i]));
                            func.eval(w, win, *range, &step_args)
                        });
                        (p, Vec::new())
                    } else {
                        let name = s.labels.metric_name().unwrap_or("").to_owned();
                        native::slide(
                            &s.points,
                            &s.hists,
                            *grid,
                            *range,
                            *shift,
                            |i, fw, hw, win| {
                                step_args.clear();
                                step_args.extend(args.iter().map(|a| a[i]));
                                native::range_eval(
                                    *func, fw, hw, win, *range, &step_args, &name, &mut ann,
                                )
                            },
                        )
                    };
                    if !points.is_empty() || !hists.is_empty() {
                        out.push(SeriesData {
                            labels: s.labels,
                            drop_name: s.drop_name || !func.keeps_name(),
                            points,
                            hists,
                        });
                    }
                }
                out
            }
            Op::Window { t, range, shift } => {
                let raw = next();
                let end = shift.apply(*t);
                let start = end - range;
                raw.into_iter()
                    .filter_map(|mut s| {
                        s.points.retain(|p| {
                            p.t > start && p.t <= end && !crate::model::is_stale_nan(p.v)
                        });
                        s.hists.retain(|p| {
                            p.t > start && p.t <= end && !crate::model::is_stale_nan(p.h.sum)
                        });
                        (!s.is_empty()).then_some(s)
                    })
                    .collect()
            }
            Op::Literal { grid, value } => vec![functions::scalar_series(*grid, |_| *value)],
            Op::Call { grid, func, args } => {
                let mut evaluated = Vec::with_capacity(args.len());
                let keeps_hists = func.keeps_histograms();
                for a in args {
                    evaluated.push(match a {
                        ArgKind::Vector if keeps_hists => Arg::Vector(next()),
                        ArgKind::Vector => Arg::Vector(
                            next()
                                .into_iter()
                                .filter_map(|mut s| {
                                    s.hists = Vec::new();
                                    (!s.points.is_empty()).then_some(s)
                                })
                                .collect(),
                        ),
                        ArgKind::Scalar => Arg::Scalar(scalar_values(&next(), *grid)),
                        ArgKind::String(s) => Arg::String(s.clone()),
                    });
                }
                functions::eval(*func, *grid, evaluated, &mut ann).map_err(df_err)?
            }
            Op::Aggregate {
                grid,
                op,
                grouping,
                param,
            } => {
                let param = match param {
                    None => None,
                    Some(ArgKind::String(s)) => Some(Arg::String(s.clone())),
                    Some(_) => Some(Arg::Scalar(scalar_values(&next(), *grid))),
                };
                let input = next();
                aggregate::eval(*op, *grid, input, param, grouping, &mut ann).map_err(df_err)?
            }
            Op::Binary {
                grid,
                op,
                return_bool,
                matching,
                lhs_scalar,
                rhs_scalar,
            } => {
                let operand = |s: Vec<SeriesData>, scalar: bool| {
                    if scalar {
                        binary::Operand::Scalar(scalar_values(&s, *grid))
                    } else {
                        binary::Operand::Vector(s)
                    }
                };
                let l = operand(next(), *lhs_scalar);
                let r = operand(next(), *rhs_scalar);
                binary::eval(*op, *return_bool, matching, l, r, *grid, &mut ann).map_err(df_err)?
            }
            Op::Absent { grid, labels } => {
                let input = next();
                let mut present = vec![false; grid.len()];
                for s in &input {
                    let times = s
                        .points
                        .iter()
                        .map(|p| p.t)
                        .chain(s.hists.iter().map(|p| p.t));
                    for t in times {
                        if let Some(i) = grid.index(t) {
                            present[i] = true;
                        }
                    }
                }
                let points: Vec<Point> = present
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !**p)
                    .map(|(i, _)| Point {
                        t: grid.time(i),
                        v: 1.0,
                    })
                    .collect();
                if points.is_empty() {
                    Vec::new()
                } else {
                    vec![SeriesData::new(labels.clone(), points)]
                }
            }
        };
        env.annotations.lock().merge(ann, &position);
        if !matches!(op.as_ref(), Op::Scan { .. }) {
            let n: usize = out.iter().map(|s| s.points.len() + s.hists.len()).sum();
            env.account(n).map_err(df_err)?;
        }
        Ok(out)
    }
}

/// Lets the runtime check the query's deadline (and drop the query) in
/// long loops over series.
async fn yield_sometimes(k: usize) {
    if k % 512 == 511 {
        tokio::task::yield_now().await;
    }
}

fn check_range_args(
    func: super::eval::range_fn::RangeFunc,
    args: &[Vec<f64>],
    ann: &mut Annotations,
) -> DfResult<()> {
    match func {
        RangeFunc::QuantileOverTime => {
            if let Some(q) = args
                .first()
                .and_then(|a| a.iter().find(|q| !(0.0..=1.0).contains(*q)))
            {
                ann.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    super::format_value(*q)
                ));
            }
        }
        RangeFunc::DoubleExponentialSmoothing => {
            for (a, what) in args.iter().zip(["smoothing", "trend"]) {
                if let Some(v) = a.iter().find(|v| !(**v > 0.0 && **v < 1.0)) {
                    return Err(df_err(EvalError(format!(
                        "invalid {what} factor. Expected: 0 < {} < 1, got: {v:.6}",
                        if what == "smoothing" { "sf" } else { "tf" }
                    ))));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

impl ExecutionPlan for PromExec {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.children.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.children.len()]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true; self.children.len()]
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(PromExec::new(
            self.op.clone(),
            self.position.clone(),
            children,
            self.env.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let (op, position, children, env) = (
            self.op.clone(),
            self.position.clone(),
            self.children.clone(),
            self.env.clone(),
        );
        let fut = async move {
            let series: Vec<SeriesData> =
                PromExec::run(op, position, children, env.clone(), ctx).await?;
            let timer = baseline.elapsed_compute().timer();
            let batches: Vec<RecordBatch> = env.encode(series)?;
            timer.done();
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            baseline.record_output(rows);
            baseline.done();
            Ok::<_, DataFusionError>(futures::stream::iter(
                batches.into_iter().map(Ok::<_, DataFusionError>),
            ))
        };
        let stream = futures::stream::once(fut).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            series_schema(),
            stream.boxed(),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Turns [`PromNode`]s into [`PromExec`]s.
struct PromExtensionPlanner {
    env: Arc<QueryEnv>,
}

#[async_trait]
impl ExtensionPlanner for PromExtensionPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<PromNode>() else {
            return Ok(None);
        };
        Ok(Some(Arc::new(PromExec::new(
            node.op.clone(),
            node.position.clone(),
            physical_inputs.to_vec(),
            self.env.clone(),
        ))))
    }
}

#[derive(Debug)]
struct PromQueryPlanner {
    env: Arc<QueryEnv>,
}

impl fmt::Debug for QueryEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueryEnv")
    }
}

#[async_trait]
impl QueryPlanner for PromQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(PromExtensionPlanner {
                env: self.env.clone(),
            })]);
        planner
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

/// A DataFusion session whose planner knows PromQL nodes. One partition:
/// PromQL operators see whole series and need no repartitioning.
pub fn session(env: Arc<QueryEnv>) -> SessionState {
    let config = datafusion::prelude::SessionConfig::new().with_target_partitions(1);
    datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_query_planner(Arc::new(PromQueryPlanner { env }))
        .build()
}
