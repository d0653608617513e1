//! PromQL: parsed by `promql-parser`, lowered onto DataFusion logical plans
//! whose nodes are PromQL operators, executed by native operators over
//! Arrow batches. See ARCHITECTURE.md ("Query engine") for plan shapes.

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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
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
    /// runs and each operator reports its metrics.
    pub async fn explain(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        analyze: bool,
    ) -> Result<String, QueryError> {
        let _ = (query, start_ms, end_ms, step_ms, analyze, &self.storage);
        Err(QueryError::Internal("EXPLAIN is not implemented yet".into()))
    }

    async fn run(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let _ = (query, start_ms, end_ms, step_ms, opts, &self.storage);
        Err(QueryError::Internal("the PromQL engine is not implemented yet".into()))
    }
}
