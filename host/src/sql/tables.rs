//! The SQL catalog: one table per metric, `samples`, `series`.
//!
//! All three read through `Storage` (blocks and head, tombstones applied),
//! so SQL sees exactly what PromQL sees. See ARCHITECTURE.md ("SQL") for the
//! column types and how label sets map to columns.

use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, MapBuilder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::QueryWarnings;
use super::pushdown::{ColumnMap, Pushdown, classify};
use crate::model::{Labels, MatchOp, Matcher};
use crate::storage::{SeriesInfo, SeriesSamples, Storage};

/// Rows per output batch.
const BATCH_ROWS: usize = 65_536;

/// Names of the built-in tables; a metric with one of these names is
/// reachable through `samples` only.
pub const SAMPLES_TABLE: &str = "samples";
pub const SERIES_TABLE: &str = "series";

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// `Map<Utf8, Utf8>` as the block format writes it (`entries`, `keys`, `values`).
pub fn labels_map_type() -> DataType {
    static TYPE: OnceLock<DataType> = OnceLock::new();
    TYPE.get_or_init(|| {
        use datafusion::arrow::array::Array;
        MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
            .finish()
            .data_type()
            .clone()
    })
    .clone()
}

/// The schema `public`: its table list is read from storage every time,
/// so new metrics appear without a restart.
#[derive(Debug)]
pub struct EmberSchema {
    storage: Arc<Storage>,
}

impl EmberSchema {
    pub fn new(storage: Arc<Storage>) -> EmberSchema {
        EmberSchema { storage }
    }
}

#[async_trait]
impl SchemaProvider for EmberSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = vec![SAMPLES_TABLE.to_owned(), SERIES_TABLE.to_owned()];
        names.extend(
            self.storage
                .label_values("__name__")
                .into_iter()
                .filter(|n| n != SAMPLES_TABLE && n != SERIES_TABLE),
        );
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = match name {
            SAMPLES_TABLE => StorageTable::samples(self.storage.clone()),
            SERIES_TABLE => StorageTable::series(self.storage.clone()),
            metric => {
                let storage = self.storage.clone();
                let metric_owned = metric.to_owned();
                let infos = tokio::task::spawn_blocking(move || {
                    storage.series_info(&[Matcher::eq("__name__", &metric_owned)])
                })
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
                if infos.is_empty() {
                    return Ok(None);
                }
                StorageTable::metric(self.storage.clone(), metric, &infos)
            }
        };
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        name == SAMPLES_TABLE
            || name == SERIES_TABLE
            || self
                .storage
                .label_values("__name__")
                .iter()
                .any(|n| n == name)
    }
}

/// What a column holds.
#[derive(Clone, Debug, PartialEq)]
enum Column {
    /// The value of one label (NULL when the series lacks it).
    Label(String),
    /// `__name__`.
    Metric,
    /// Every label but `__name__`, as a map.
    Labels,
    Timestamp,
    Value,
    /// First and last sample time of a series (`series` table).
    FirstTime,
    LastTime,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// One row per sample.
    Samples,
    /// One row per series.
    Series,
}

/// A table over storage: a metric table, `samples` or `series`.
#[derive(Debug)]
pub struct StorageTable {
    storage: Arc<Storage>,
    kind: Kind,
    /// The metric of a metric table; its matcher is always applied.
    metric: Option<String>,
    columns: Vec<Column>,
    schema: SchemaRef,
}

impl StorageTable {
    fn new(
        storage: Arc<Storage>,
        kind: Kind,
        metric: Option<String>,
        columns: Vec<(String, Column)>,
    ) -> StorageTable {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, c)| match c {
                Column::Label(_) => Field::new(name, DataType::Utf8, true),
                Column::Metric => Field::new(name, DataType::Utf8, true),
                Column::Labels => Field::new(name, labels_map_type(), false),
                Column::Timestamp | Column::FirstTime | Column::LastTime => {
                    Field::new(name, timestamp_type(), false)
                }
                Column::Value => Field::new(name, DataType::Float64, false),
            })
            .collect();
        StorageTable {
            storage,
            kind,
            metric,
            columns: columns.into_iter().map(|(_, c)| c).collect(),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// `metric, labels, timestamp, value`.
    pub fn samples(storage: Arc<Storage>) -> StorageTable {
        StorageTable::new(
            storage,
            Kind::Samples,
            None,
            vec![
                ("metric".into(), Column::Metric),
                ("labels".into(), Column::Labels),
                ("timestamp".into(), Column::Timestamp),
                ("value".into(), Column::Value),
            ],
        )
    }

    /// `metric, labels, first_timestamp, last_timestamp`.
    pub fn series(storage: Arc<Storage>) -> StorageTable {
        StorageTable::new(
            storage,
            Kind::Series,
            None,
            vec![
                ("metric".into(), Column::Metric),
                ("labels".into(), Column::Labels),
                ("first_timestamp".into(), Column::FirstTime),
                ("last_timestamp".into(), Column::LastTime),
            ],
        )
    }

    /// One column per label seen on the metric's series (sorted), then
    /// `timestamp` and `value`. A label called `timestamp` or `value`
    /// becomes `label_timestamp` / `label_value`.
    pub fn metric(storage: Arc<Storage>, metric: &str, infos: &[SeriesInfo]) -> StorageTable {
        let mut names: Vec<&str> = infos
            .iter()
            .flat_map(|i| i.labels.iter().map(|l| &*l.name))
            .filter(|n| *n != "__name__")
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut columns: Vec<(String, Column)> = names
            .into_iter()
            .map(|n| {
                let column = match n {
                    "timestamp" | "value" => format!("label_{n}"),
                    _ => n.to_owned(),
                };
                (column, Column::Label(n.to_owned()))
            })
            .collect();
        columns.push(("timestamp".into(), Column::Timestamp));
        columns.push(("value".into(), Column::Value));
        StorageTable::new(storage, Kind::Samples, Some(metric.to_owned()), columns)
    }

    fn column(&self, name: &str) -> Option<&Column> {
        let i = self.schema.index_of(name).ok()?;
        self.columns.get(i)
    }
}

impl ColumnMap for StorageTable {
    fn label_of(&self, column: &str) -> Option<String> {
        match self.column(column)? {
            Column::Label(l) => Some(l.clone()),
            Column::Metric => Some("__name__".into()),
            _ => None,
        }
    }

    fn is_time(&self, column: &str) -> bool {
        // Time bounds prune samples; the series table has none to prune.
        self.kind == Kind::Samples && self.column(column) == Some(&Column::Timestamp)
    }
}

#[async_trait]
impl TableProvider for StorageTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(classify(filters, self))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut pushdown = Pushdown::from_filters(filters, self);
        if let Some(metric) = &self.metric {
            pushdown.matchers.insert(0, Matcher::eq("__name__", metric));
        }
        if pushdown.matchers.is_empty() {
            // Every series (a matcher that also matches the empty value
            // selects series without the label).
            pushdown.matchers.push(
                Matcher::new(MatchOp::RegexMatch, "__name__", ".*")
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
            );
        }
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&indices)?);
        let columns = indices.iter().map(|&i| self.columns[i].clone()).collect();
        Ok(Arc::new(StorageScanExec::new(
            self.storage.clone(),
            self.kind,
            self.metric.clone(),
            pushdown,
            columns,
            schema,
            limit,
        )))
    }
}

/// Reads series from storage and lays them out as rows.
#[derive(Debug)]
pub struct StorageScanExec {
    storage: Arc<Storage>,
    kind: Kind,
    table: String,
    pushdown: Pushdown,
    columns: Vec<Column>,
    schema: SchemaRef,
    limit: Option<usize>,
    props: Arc<PlanProperties>,
}

impl StorageScanExec {
    fn new(
        storage: Arc<Storage>,
        kind: Kind,
        metric: Option<String>,
        pushdown: Pushdown,
        columns: Vec<Column>,
        schema: SchemaRef,
        limit: Option<usize>,
    ) -> StorageScanExec {
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        let table = match (kind, metric) {
            (_, Some(m)) => m,
            (Kind::Samples, None) => SAMPLES_TABLE.to_owned(),
            (Kind::Series, None) => SERIES_TABLE.to_owned(),
        };
        StorageScanExec {
            storage,
            kind,
            table,
            pushdown,
            columns,
            schema,
            limit,
            props: Arc::new(props),
        }
    }
}

impl DisplayAs for StorageScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "EmberStorageScan: table={}, {}",
            self.table,
            self.pushdown.describe()
        )?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StorageScanExec {
    fn name(&self) -> &str {
        "EmberStorageScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let storage = self.storage.clone();
        let pushdown = self.pushdown.clone();
        let kind = self.kind;
        let layout = Layout {
            columns: self.columns.clone(),
            schema: self.schema.clone(),
        };
        let limit = self.limit.unwrap_or(usize::MAX);
        let pool = ctx.memory_pool().clone();
        let report = ctx.session_config().get_extension::<QueryWarnings>();
        let fut = async move {
            let rows = tokio::task::spawn_blocking(move || -> DfResult<Rows> {
                let Pushdown {
                    matchers,
                    mint,
                    maxt,
                } = pushdown;
                // Remote blocks that cannot be read are left out and named
                // in the query's warnings, as PromQL does.
                let mut warnings = Vec::new();
                let rows = match kind {
                    Kind::Samples => storage
                        .select_reporting(&matchers, mint, maxt, &mut warnings)
                        .map(Rows::Samples)
                        .map_err(|e| DataFusionError::External(Box::new(e))),
                    Kind::Series => Ok(Rows::Series(
                        storage.series_info_reporting(&matchers, &mut warnings),
                    )),
                };
                match &report {
                    Some(r) => r.extend(warnings),
                    None => {
                        for w in warnings {
                            tracing::warn!(warning = %w, "SQL query answered without some remote data");
                        }
                    }
                }
                rows
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
            // The selected samples count against the query's memory limit.
            let reservation = MemoryConsumer::new("EmberStorageScan").register(&pool);
            reservation.try_grow(rows.heap_bytes())?;
            let batches = rows.into_batches(layout, limit);
            Ok::<_, DataFusionError>(futures::stream::iter(batches).map(move |b| {
                let _keep = &reservation;
                b
            }))
        };
        let stream = futures::stream::once(fut).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream.boxed(),
        )))
    }
}

enum Rows {
    Samples(Vec<SeriesSamples>),
    Series(Vec<SeriesInfo>),
}

impl Rows {
    fn heap_bytes(&self) -> usize {
        match self {
            Rows::Samples(s) => s.iter().map(|s| s.samples.len() * 16 + 64).sum(),
            Rows::Series(s) => s.len() * 64,
        }
    }

    /// Batches of at most [`BATCH_ROWS`] rows, built as they are pulled.
    fn into_batches(
        self,
        layout: Layout,
        limit: usize,
    ) -> Box<dyn Iterator<Item = DfResult<RecordBatch>> + Send> {
        match self {
            Rows::Samples(series) => Box::new(SampleBatches {
                series,
                next_series: 0,
                next_sample: 0,
                left: limit,
                layout,
            }),
            Rows::Series(infos) => {
                let infos: Vec<SeriesInfo> = infos.into_iter().take(limit).collect();
                let mut out = Vec::new();
                for chunk in infos.chunks(BATCH_ROWS) {
                    let mut b = layout.builders(chunk.len());
                    for info in chunk {
                        b.push_series(&info.labels, &layout.columns, 1, info);
                    }
                    out.push(b.finish(&layout, chunk.len()));
                }
                Box::new(out.into_iter())
            }
        }
    }
}

struct Layout {
    columns: Vec<Column>,
    schema: SchemaRef,
}

impl Layout {
    fn builders(&self, capacity: usize) -> Builders {
        Builders {
            cols: self
                .columns
                .iter()
                .map(|c| match c {
                    Column::Label(_) | Column::Metric => {
                        ColBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 8))
                    }
                    Column::Labels => ColBuilder::Map(Box::new(MapBuilder::new(
                        None,
                        StringBuilder::new(),
                        StringBuilder::new(),
                    ))),
                    Column::Timestamp | Column::FirstTime | Column::LastTime => ColBuilder::Time(
                        TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC"),
                    ),
                    Column::Value => ColBuilder::Float(Float64Builder::with_capacity(capacity)),
                })
                .collect(),
        }
    }
}

enum ColBuilder {
    Str(StringBuilder),
    Map(Box<MapBuilder<StringBuilder, StringBuilder>>),
    Time(TimestampMillisecondBuilder),
    Float(Float64Builder),
}

struct Builders {
    cols: Vec<ColBuilder>,
}

impl Builders {
    /// Appends the per-series columns `n` times (and the series table's times).
    fn push_series(&mut self, labels: &Labels, columns: &[Column], n: usize, info: &SeriesInfo) {
        for (b, c) in self.cols.iter_mut().zip(columns) {
            match (b, c) {
                (ColBuilder::Str(b), Column::Label(name)) => match labels.get(name) {
                    Some(v) => (0..n).for_each(|_| b.append_value(v)),
                    None => b.append_nulls(n),
                },
                (ColBuilder::Str(b), Column::Metric) => match labels.metric_name() {
                    Some(v) => (0..n).for_each(|_| b.append_value(v)),
                    None => b.append_nulls(n),
                },
                (ColBuilder::Map(b), Column::Labels) => {
                    for _ in 0..n {
                        for l in labels.iter().filter(|l| &*l.name != "__name__") {
                            b.keys().append_value(&l.name);
                            b.values().append_value(&l.value);
                        }
                        // Cannot fail: keys are never null.
                        let _ = b.append(true);
                    }
                }
                (ColBuilder::Time(b), Column::FirstTime) => b.append_value(info.min_time),
                (ColBuilder::Time(b), Column::LastTime) => b.append_value(info.max_time),
                _ => {}
            }
        }
    }

    fn push_samples(&mut self, columns: &[Column], samples: &[crate::model::Sample]) {
        for (b, c) in self.cols.iter_mut().zip(columns) {
            match (b, c) {
                (ColBuilder::Time(b), Column::Timestamp) => {
                    samples.iter().for_each(|s| b.append_value(s.t))
                }
                (ColBuilder::Float(b), Column::Value) => {
                    samples.iter().for_each(|s| b.append_value(s.v))
                }
                _ => {}
            }
        }
    }

    fn finish(self, layout: &Layout, rows: usize) -> DfResult<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    ColBuilder::Str(mut b) => Arc::new(b.finish()),
                    ColBuilder::Map(mut b) => Arc::new(b.finish()),
                    ColBuilder::Time(mut b) => Arc::new(b.finish()),
                    ColBuilder::Float(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        // The row count matters alone when no column is projected (`count(*)`).
        let options =
            datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(layout.schema.clone(), arrays, &options)
            .map_err(DataFusionError::from)
    }
}

/// Sample rows, series after series, cut into batches.
struct SampleBatches {
    series: Vec<SeriesSamples>,
    next_series: usize,
    next_sample: usize,
    left: usize,
    layout: Layout,
}

impl Iterator for SampleBatches {
    type Item = DfResult<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.next_series >= self.series.len() {
            return None;
        }
        let want = BATCH_ROWS.min(self.left);
        let mut b = self.layout.builders(want);
        let mut rows = 0;
        while rows < want && self.next_series < self.series.len() {
            let s = &self.series[self.next_series];
            let take = (s.samples.len() - self.next_sample).min(want - rows);
            let part = &s.samples[self.next_sample..self.next_sample + take];
            let info = SeriesInfo {
                labels: s.labels.clone(),
                min_time: 0,
                max_time: 0,
            };
            b.push_series(&s.labels, &self.layout.columns, take, &info);
            b.push_samples(&self.layout.columns, part);
            rows += take;
            self.next_sample += take;
            if self.next_sample >= s.samples.len() {
                // Free each series as soon as it is laid out.
                self.series[self.next_series].samples = Vec::new();
                self.next_series += 1;
                self.next_sample = 0;
            }
        }
        self.left -= rows;
        Some(b.finish(&self.layout, rows))
    }
}
