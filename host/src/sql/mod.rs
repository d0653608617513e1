//! Read-only SQL over Ember's storage, on DataFusion.
//!
//! Every query gets its own `SessionContext` whose `public` schema lists one
//! table per metric plus `samples` and `series` ([`tables`]), with
//! `information_schema` and the PromQL table functions ([`promql_fn`]).
//! Filters on labels and time reach `Storage::select` ([`pushdown`]). The
//! HTTP endpoint (`web/sql_api.rs`) and the PostgreSQL listener
//! ([`pgwire`]) both run queries through [`SqlEngine`].

pub mod format;
pub mod pg_catalog;
pub mod pg_compat;
pub mod pg_connection;
pub mod pgwire;
pub mod promql_fn;
pub mod pushdown;
pub mod tables;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DataFusionError, ParamValues, ScalarValue};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use futures::TryStreamExt;

use crate::promql::Engine;
use crate::storage::Storage;

/// Limits every SQL query runs under.
#[derive(Clone, Debug)]
pub struct SqlOptions {
    /// `--query.timeout`.
    pub timeout: Duration,
    /// `--sql.max-rows`: rows a result may have.
    pub max_rows: usize,
    /// `--sql.max-memory`: bytes a query's operators and scans may hold.
    pub max_memory: usize,
}

impl Default for SqlOptions {
    fn default() -> Self {
        SqlOptions {
            timeout: Duration::from_secs(120),
            max_rows: 1_000_000,
            max_memory: 1 << 30,
        }
    }
}

/// Where in the statement an error is, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement does not parse or plan (`bad_data`).
    #[error("{message}")]
    BadQuery {
        message: String,
        position: Option<Position>,
    },
    /// DDL, DML, COPY, SET and the like (`bad_data`).
    #[error("{0}")]
    ReadOnly(String),
    /// Valid, but failed while running (`execution`).
    #[error("{0}")]
    Execution(String),
    /// The result has more rows than `--sql.max-rows` (`execution`).
    #[error("query result exceeds the limit of {0} rows; aggregate or add a LIMIT")]
    TooManyRows(usize),
    /// `--query.timeout` ran out (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(String),
    /// A bug or a storage failure (`internal`).
    #[error("{0}")]
    Internal(String),
}

impl SqlError {
    /// `errorType` of the Prometheus-style envelope.
    pub fn error_type(&self) -> &'static str {
        match self {
            SqlError::BadQuery { .. } | SqlError::ReadOnly(_) => "bad_data",
            SqlError::Execution(_) | SqlError::TooManyRows(_) => "execution",
            SqlError::Timeout(_) => "timeout",
            SqlError::Internal(_) => "internal",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            SqlError::BadQuery { .. } | SqlError::ReadOnly(_) => 400,
            SqlError::Execution(_) | SqlError::TooManyRows(_) => 422,
            SqlError::Timeout(_) => 503,
            SqlError::Internal(_) => 500,
        }
    }

    pub fn position(&self) -> Option<Position> {
        match self {
            SqlError::BadQuery { position, .. } => *position,
            _ => None,
        }
    }

    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SqlError::BadQuery { message, .. } if message.contains("No field named") => "42703",
            SqlError::BadQuery { message, .. } if message.contains("Invalid function") => "42883",
            SqlError::BadQuery { message, .. } if message.contains("not found") => "42P01",
            SqlError::BadQuery { .. } => "42601",
            SqlError::ReadOnly(_) => "25006",
            SqlError::Execution(_) => "XX000",
            SqlError::TooManyRows(_) => "54000",
            SqlError::Timeout(_) => "57014",
            SqlError::Internal(_) => "XX000",
        }
    }

    /// An error from parsing or planning.
    fn planning(err: DataFusionError) -> SqlError {
        let position = position_of(&err);
        let message = strip_context(&err);
        if message.contains("not supported: ") && is_read_only_refusal(&message) {
            return SqlError::ReadOnly(read_only_message(&message));
        }
        SqlError::BadQuery { message, position }
    }

    /// An error while running.
    fn execution(err: DataFusionError) -> SqlError {
        match err.find_root() {
            DataFusionError::ResourcesExhausted(m) => {
                SqlError::Execution(format!("query exceeds the memory limit: {m}"))
            }
            _ => SqlError::Execution(strip_context(&err)),
        }
    }
}

fn is_read_only_refusal(message: &str) -> bool {
    [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ]
    .iter()
    .any(|p| message.contains(p))
}

fn read_only_message(message: &str) -> String {
    format!("the SQL endpoint is read-only: {message}")
}

/// The root cause's message, without DataFusion's nesting.
fn strip_context(err: &DataFusionError) -> String {
    match err.find_root() {
        DataFusionError::SQL(e, _) => e.to_string(),
        root => root.to_string(),
    }
}

/// Line and column from DataFusion's diagnostic or sqlparser's
/// "at Line: L, Column: C" suffix.
fn position_of(err: &DataFusionError) -> Option<Position> {
    if let Some(span) = err.diagnostic().and_then(|d| d.span) {
        return Some(Position {
            line: span.start.line,
            column: span.start.column,
        });
    }
    let text = err.to_string();
    let at = text.rfind("Line: ")?;
    let rest = &text[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Position {
        line: line.parse().ok()?,
        column: column.parse().ok()?,
    })
}

/// A query's result, collected.
#[derive(Debug)]
pub struct SqlOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// What the answer lacks (a block in object storage that could not be
    /// read): the `warnings` of the PromQL API.
    pub warnings: Vec<String>,
}

/// Warnings a query's scans report while it runs, reached through the
/// session config (`TaskContext::session_config`), since DataFusion's
/// operators have no other channel back to the caller.
#[derive(Debug, Default)]
pub struct QueryWarnings(parking_lot::Mutex<Vec<String>>);

impl QueryWarnings {
    /// Adds `warnings`, each once.
    pub fn extend(&self, warnings: Vec<String>) {
        let mut all = self.0.lock();
        for w in warnings {
            if !all.contains(&w) {
                all.push(w);
            }
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl SqlOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Runs SQL against a [`Storage`]; cheap to clone.
#[derive(Clone)]
pub struct SqlEngine {
    storage: Arc<Storage>,
    promql: Engine,
    options: SqlOptions,
}

impl SqlEngine {
    pub fn new(storage: Arc<Storage>, promql: Engine, options: SqlOptions) -> SqlEngine {
        SqlEngine {
            storage,
            promql,
            options,
        }
    }

    pub fn options(&self) -> &SqlOptions {
        &self.options
    }

    /// A fresh session: Ember's catalog, `information_schema`, the PromQL
    /// table functions, a memory pool of `max_memory` and no disk manager
    /// (nothing spills, nothing writes files).
    pub fn context(&self) -> Result<SessionContext, SqlError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(self.options.max_memory)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("ember", "public")
            .with_create_default_catalog_and_schema(true)
            .with_target_partitions(2)
            .with_extension(Arc::new(QueryWarnings::default()));
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let catalog = ctx
            .catalog("ember")
            .ok_or_else(|| SqlError::Internal("default catalog missing".into()))?;
        let public: Arc<dyn datafusion::catalog::SchemaProvider> =
            Arc::new(tables::EmberSchema::new(self.storage.clone()));
        catalog
            .register_schema("public", public.clone())
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        pg_catalog::register(&ctx, public).map_err(|e| SqlError::Internal(e.to_string()))?;
        promql_fn::register(&ctx, self.promql.clone());
        Ok(ctx)
    }

    /// Parses and plans one read-only statement. `params` fill `$1`, `$2`, ….
    pub async fn plan(
        &self,
        ctx: &SessionContext,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<LogicalPlan, SqlError> {
        let state = ctx.state();
        let mut statements = datafusion::sql::parser::DFParser::parse_sql_with_dialect(
            sql,
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        )
        .map_err(SqlError::planning)?;
        if statements.len() != 1 {
            return Err(SqlError::BadQuery {
                message: format!(
                    "expected exactly one SQL statement, got {}",
                    statements.len()
                ),
                position: None,
            });
        }
        let mut statement = statements.pop_front().ok_or_else(|| SqlError::BadQuery {
            message: "empty statement".into(),
            position: None,
        })?;
        check_statement(&statement)?;
        rewrite_for_postgres_clients(&mut statement);
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(SqlError::planning)?;
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(SqlError::planning)?;
        match params {
            Some(values) => {
                let values = cast_params(&plan, values)?;
                plan.with_param_values(ParamValues::from(values))
                    .map_err(SqlError::planning)
            }
            None => Ok(plan),
        }
    }

    /// The statements of a multi-statement string, as text (the simple
    /// query protocol sends `SELECT 1; SELECT 2` in one message).
    pub fn split_statements(sql: &str) -> Result<Vec<String>, SqlError> {
        let statements = datafusion::sql::parser::DFParser::parse_sql_with_dialect(
            sql,
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        )
        .map_err(SqlError::planning)?;
        match statements.len() {
            // Only comments (pgx pings with `-- ping`): an empty query.
            0 => return Ok(Vec::new()),
            1 => return Ok(vec![sql.to_owned()]),
            _ => {}
        }
        Ok(statements.iter().map(|s| s.to_string()).collect())
    }

    /// Runs one statement under the timeout and row limit.
    pub async fn query(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<SqlOutput, SqlError> {
        let timeout = self.options.timeout;
        let engine = self.clone();
        let sql = sql.to_owned();
        let mut task =
            sql_runtime()?.spawn(async move { engine.query_unbounded(&sql, params).await });
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(SqlError::Internal(format!("SQL query task failed: {e}"))),
            Err(_) => {
                // Dropping the query's future drops its DataFusion streams,
                // which stops their operators and spawned tasks.
                task.abort();
                Err(SqlError::Timeout(format_duration(timeout)))
            }
        }
    }

    async fn query_unbounded(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<SqlOutput, SqlError> {
        let ctx = self.context()?;
        let plan = self.plan(&ctx, sql, params).await?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(SqlError::planning)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(SqlError::execution)?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = stream.try_next().await.map_err(SqlError::execution)? {
            rows += batch.num_rows();
            if rows > self.options.max_rows {
                return Err(SqlError::TooManyRows(self.options.max_rows));
            }
            batches.push(batch);
        }
        let warnings = ctx
            .state()
            .config()
            .get_extension::<QueryWarnings>()
            .map(|w| w.take())
            .unwrap_or_default();
        Ok(SqlOutput {
            schema,
            batches,
            warnings,
        })
    }

    /// The result schema of a statement and the types DataFusion infers
    /// for `$1`, `$2`, … without running it (Describe).
    pub async fn describe(
        &self,
        sql: &str,
    ) -> Result<(SchemaRef, Vec<Option<DataType>>), SqlError> {
        let ctx = self.context()?;
        let plan = self.plan(&ctx, sql, None).await?;
        let params = param_types(&plan)?;
        Ok((Arc::new(plan.schema().as_arrow().clone()), params))
    }
}

/// The runtime SQL queries execute on: threads of their own at a lower OS
/// priority (nice 10), so a runaway query competes with scraping,
/// ingestion and the HTTP API only for spare CPU instead of occupying the
/// main runtime's workers. Process-wide and never dropped.
fn sql_runtime() -> Result<&'static tokio::runtime::Handle, SqlError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("ember-sql")
            .enable_all()
            .on_thread_start(|| {
                // On Linux the nice value is per thread; who = 0 is the
                // calling thread. Failure only leaves the default priority.
                // SAFETY: setpriority has no memory-safety preconditions.
                let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            })
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => Ok(rt.handle()),
        Err(e) => Err(SqlError::Internal(format!(
            "cannot start the SQL runtime: {e}"
        ))),
    }
}

/// Refuses statements that must not run before planning them: DataFusion
/// plans some (`CREATE EXTERNAL TABLE` infers a schema by reading files)
/// while building the plan.
fn check_statement(statement: &DfStatement) -> Result<(), SqlError> {
    use datafusion::sql::sqlparser::ast::Statement as S;
    let refused = match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            S::Query(_) => None,
            S::Explain { .. } | S::ExplainTable { .. } => None,
            S::ShowTables { .. } | S::ShowColumns { .. } | S::ShowVariable { .. } => None,
            S::Insert(_) | S::Update(_) | S::Delete(_) | S::Merge(_) => Some("DML"),
            S::Copy { .. } => Some("COPY"),
            S::Set(_) => Some("SET"),
            _ => Some("this statement"),
        },
        DfStatement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE"),
        DfStatement::CopyTo(_) => Some("COPY"),
        DfStatement::Explain(e) => return check_statement(&e.statement),
        _ => Some("this statement"),
    };
    match refused {
        Some(what) => Err(SqlError::ReadOnly(format!(
            "the SQL endpoint is read-only: {what} is not allowed (only SELECT, EXPLAIN and SHOW)"
        ))),
        None => Ok(()),
    }
}

/// PostgreSQL syntax in client catalog queries ([`pg_compat`]), and
/// `SHOW` of a PostgreSQL setting as a one-row query.
fn rewrite_for_postgres_clients(statement: &mut DfStatement) {
    use datafusion::sql::sqlparser::ast::Statement as S;
    match statement {
        DfStatement::Statement(s) => {
            if let S::ShowVariable { variable } = s.as_ref() {
                let name = variable
                    .iter()
                    .map(|i| i.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                if let Some(value) = pg_catalog::setting(&name) {
                    let sql = format!(
                        "SELECT '{}' AS \"{}\"",
                        value.replace('\'', "''"),
                        name.to_ascii_lowercase().replace('"', "")
                    );
                    if let Ok(mut parsed) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
                        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                        &sql,
                    ) && let Some(query) = parsed.pop()
                    {
                        **s = query;
                    }
                }
            }
            pg_compat::rewrite(s.as_mut())
        }
        DfStatement::Explain(e) => rewrite_for_postgres_clients(&mut e.statement),
        _ => {}
    }
}

/// Inferred types of `$1` … `$n` in order (`None` where DataFusion cannot tell).
fn param_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, SqlError> {
    let types = plan.get_parameter_types().map_err(SqlError::planning)?;
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(name, t)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|n| (n, t))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let len = numbered.last().map_or(0, |(n, _)| *n);
    let mut out = vec![None; len];
    for (n, t) in numbered {
        if n >= 1 {
            out[n - 1] = t;
        }
    }
    Ok(out)
}

/// Parameters arrive as text or loosely typed (a client sends a time as
/// text); cast each to the type its placeholder has in the plan.
fn cast_params(plan: &LogicalPlan, values: Vec<ScalarValue>) -> Result<Vec<ScalarValue>, SqlError> {
    let types = param_types(plan)?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match types.get(i) {
            Some(Some(t)) if &v.data_type() != t && !v.is_null() => {
                v.cast_to(t).map_err(|e| SqlError::BadQuery {
                    message: format!("parameter ${}: {}", i + 1, e.find_root()),
                    position: None,
                })
            }
            Some(Some(t)) if v.is_null() => ScalarValue::try_from(t).map_err(SqlError::planning),
            _ => Ok(v),
        })
        .collect()
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests;
