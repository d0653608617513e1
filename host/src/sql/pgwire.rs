//! The PostgreSQL wire protocol listener (`--sql.listen-address`), on the
//! `pgwire` crate: simple and extended query protocol over the same
//! [`SqlEngine`] as `/api/v1/sql`.
//!
//! - Auth follows `--web.config.file`: with `basic_auth_users`, clients
//!   log in with those users and passwords (cleartext password message,
//!   checked against the bcrypt hashes); without, any user is let in.
//! - TLS follows it too: with `tls_server_config`, clients must negotiate
//!   TLS (`sslmode=require` and up, or PostgreSQL 17's direct TLS); a
//!   plaintext startup gets an error. Certificates, client-certificate
//!   checks and versions are the HTTP listener's, read again for every
//!   connection.
//! - Transactions are accepted and ignored (`BEGIN`, `COMMIT`, `ROLLBACK`;
//!   psycopg opens one by default), as are `SET` of client session settings
//!   (`SET datestyle`, `extra_float_digits`, …). Everything else that is not
//!   a query is refused, as over HTTP.
//! - Types: Utf8 → text, Float64 → float8, Int64 → int8, Boolean → bool,
//!   Timestamp(ms, UTC) → timestamptz, maps (the `labels` columns) → json.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::temporal_conversions::date32_to_datetime;
use datafusion::common::ScalarValue;
use futures::SinkExt;
use futures::sink::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::{ClientInfo, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::format::{Column, text_options};
use super::pg_connection::{self, Admission, ConnectionLimits, ConnectionMetrics};
use super::{SqlEngine, SqlError, SqlOutput};
use crate::server::Control;
use crate::web::security::WebSecurity;

/// Accepts connections until `shutdown`; `tls` says whether the web
/// config has `tls_server_config` (decided at start-up, as for HTTP).
pub async fn serve(
    listener: TcpListener,
    control: Arc<Control>,
    security: Option<Arc<WebSecurity>>,
    tls: bool,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    shutdown: CancellationToken,
) {
    let handlers = Arc::new(Handlers {
        backend: Arc::new(Backend {
            control,
            parser: Arc::new(Parser),
        }),
        startup: Arc::new(Startup::new(security.clone())),
    });
    let admission = Admission::new(limits.max_connections, metrics.clone());
    let startup_timeout = (!limits.startup_timeout.is_zero()).then_some(limits.startup_timeout);
    let idle_timeout = (!limits.idle_timeout.is_zero()).then_some(limits.idle_timeout);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Some(slot) = admission.admit() else {
                        tracing::debug!(peer = %peer, max_connections = limits.max_connections, "PostgreSQL connection refused: too many clients");
                        let Some(refusal) = admission.refusal() else {
                            continue;
                        };
                        let security = security.clone();
                        tokio::spawn(async move {
                            let _refusal = refusal;
                            let acceptor = match (&security, tls) {
                                (Some(sec), true) => match tls_acceptor(&socket, sec, Some(tokio::time::Instant::now() + pg_connection::REFUSAL_WAIT), None).await {
                                    Some(a) => Some(a),
                                    None => return,
                                },
                                _ => None,
                            };
                            pg_connection::refuse_too_many(socket, acceptor, limits.max_connections).await;
                        });
                        continue;
                    };
                    let startup_deadline = startup_timeout.map(|t| tokio::time::Instant::now() + t);
                    let handlers = handlers.clone();
                    let security = security.clone();
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let acceptor = match (&security, tls) {
                            (Some(sec), true) => match tls_acceptor(&socket, sec, startup_deadline, Some(&metrics)).await {
                                Some(a) => Some(a),
                                None => return,
                            },
                            _ => None,
                        };
                        if let Err(err) = pg_connection::serve_connection(socket, acceptor, handlers, startup_deadline, idle_timeout, &metrics).await {
                            tracing::debug!(peer = %peer, err = %err, "PostgreSQL connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(err = %err, "Cannot accept a PostgreSQL connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// The request codes of PostgreSQL's `SSLRequest` and `GSSENCRequest`.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// The TLS acceptor for one connection, from the web config as it is now;
/// `None` (connection closed, client told why) when the client starts in
/// plaintext or the config does not load.
async fn tls_acceptor(
    socket: &tokio::net::TcpStream,
    sec: &Arc<WebSecurity>,
    startup_deadline: Option<tokio::time::Instant>,
    metrics: Option<&ConnectionMetrics>,
) -> Option<pgwire::tokio::TlsAcceptor> {
    let peer = socket.peer_addr().ok();
    match pg_connection::before(startup_deadline, wants_tls(socket)).await {
        Some(Ok(true)) => {}
        Some(Ok(false)) => {
            tracing::debug!(peer = ?peer, "PostgreSQL client without TLS refused");
            refuse_plaintext(socket).await;
            return None;
        }
        Some(Err(err)) => {
            tracing::debug!(peer = ?peer, err = %err, "PostgreSQL connection closed before startup");
            return None;
        }
        None => {
            if let Some(m) = metrics {
                m.startup_timed_out();
            }
            tracing::debug!(peer = ?peer, "PostgreSQL client sent no startup in time");
            return None;
        }
    }
    match sec.load().and_then(|c| c.server_config()) {
        Ok(config) => {
            // The same certificates and checks as HTTP, with PostgreSQL's
            // ALPN name instead of HTTP's (libpq 17 sends it).
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"postgresql".to_vec()];
            Some(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
        }
        Err(err) => {
            tracing::error!(err = %err, "Cannot load TLS configuration; connection closed");
            None
        }
    }
}

/// Whether the client opens with an `SSLRequest` (or GSSAPI encryption
/// request, which pgwire declines before the client asks for TLS) or a
/// TLS ClientHello, by peeking at its first bytes.
async fn wants_tls(socket: &tokio::net::TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 8];
    loop {
        let n = socket.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // 0x16: a TLS handshake record (direct TLS).
        if buf[0] == 0x16 {
            return Ok(true);
        }
        if n == 8 {
            let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            return Ok(code == SSL_REQUEST || code == GSSENC_REQUEST);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Sends a FATAL ErrorResponse before the startup, as PostgreSQL does
/// when `pg_hba.conf` has only `hostssl` lines.
async fn refuse_plaintext(socket: &tokio::net::TcpStream) {
    let msg = pg_connection::fatal_error_message(
        "28000",
        "this server requires TLS (the web config has tls_server_config); connect with sslmode=require",
    );
    let mut written = 0;
    while written < msg.len() {
        if socket.writable().await.is_err() {
            return;
        }
        match socket.try_write(&msg[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
    }
}

struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Startup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

fn server_parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = format!("16.0 (Ember {})", crate::telemetry::VERSION);
    p.default_transaction_read_only = true;
    p.is_superuser = false;
    p
}

/// Password auth when the web config has users, none otherwise; decided
/// per connection, since the web config is re-read like for HTTP.
struct Startup {
    security: Option<Arc<WebSecurity>>,
    password: CleartextPasswordAuthStartupHandler<BasicAuthUsers, DefaultServerParameterProvider>,
    open: NoAuth,
}

impl Startup {
    fn new(security: Option<Arc<WebSecurity>>) -> Startup {
        Startup {
            password: CleartextPasswordAuthStartupHandler::new(
                BasicAuthUsers {
                    security: security.clone(),
                },
                server_parameters(),
            ),
            open: NoAuth {
                params: server_parameters(),
            },
            security,
        }
    }

    fn users(&self) -> Result<BTreeMap<String, String>, String> {
        match &self.security {
            None => Ok(BTreeMap::new()),
            Some(sec) => sec.load().map(|c| c.basic_auth_users),
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let needs_password = match &message {
            PgWireFrontendMessage::Startup(_) => match self.users() {
                Ok(users) => !users.is_empty(),
                Err(err) => {
                    tracing::error!(err = %err, "Unable to parse web configuration");
                    return Err(user_error("XX000", "unable to read the web configuration"));
                }
            },
            _ => true,
        };
        if needs_password {
            self.password.on_startup(client, message).await
        } else {
            self.open.on_startup(client, message).await
        }
    }
}

struct NoAuth {
    params: DefaultServerParameterProvider,
}

#[async_trait]
impl NoopStartupHandler for NoAuth {
    async fn post_startup<C>(
        &self,
        _client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _ = &self.params;
        Ok(())
    }
}

/// Checks passwords against the web config's bcrypt hashes.
struct BasicAuthUsers {
    security: Option<Arc<WebSecurity>>,
}

impl Debug for BasicAuthUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BasicAuthUsers")
    }
}

#[async_trait]
impl AuthSource for BasicAuthUsers {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Only verify_password is used: the stored passwords are hashes.
        Err(user_error("28P01", "password authentication failed"))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<()>> {
        let user = login.user().unwrap_or_default().to_owned();
        let failed = || PgWireError::InvalidPassword(user.clone());
        let Some(sec) = &self.security else {
            return Err(failed());
        };
        let users = sec.load().map_err(|_| failed())?.basic_auth_users;
        let pass = String::from_utf8(presented.to_vec()).map_err(|_| failed())?;
        if sec.verify(&users, user.clone(), pass).await {
            Ok(None)
        } else {
            Err(failed())
        }
    }
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn sql_error(err: &SqlError, sql: &str) -> PgWireError {
    let mut info = ErrorInfo::new(
        "ERROR".to_owned(),
        err.sqlstate().to_owned(),
        err.to_string(),
    );
    if let Some(p) = err.position() {
        // PostgreSQL's position is a 1-based character offset.
        let offset: usize = sql
            .split_inclusive('\n')
            .take(p.line.saturating_sub(1) as usize)
            .map(|l| l.chars().count())
            .sum::<usize>()
            + p.column as usize;
        info.position = Some(offset.to_string());
    }
    PgWireError::UserError(Box::new(info))
}

/// Stores the SQL text; planning happens at Describe and Execute.
#[derive(Debug)]
struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = String;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<String>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(sql.to_owned()))
    }

    fn get_parameter_types(&self, _stmt: &String) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(
        &self,
        _stmt: &String,
        _format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(Vec::new())
    }
}

struct Backend {
    control: Arc<Control>,
    parser: Arc<Parser>,
}

/// What a statement is, before the SQL engine sees it.
enum Special {
    Begin,
    Commit,
    Rollback,
    /// `SET` of a client session setting: accepted, no effect.
    ClientSet,
    Discard,
}

fn special(sql: &str) -> Option<Special> {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .take(3)
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let first = words.first()?.as_str();
    match first {
        "begin" | "start" => Some(Special::Begin),
        "commit" | "end" => Some(Special::Commit),
        "rollback" | "abort" => Some(Special::Rollback),
        "discard" | "deallocate" | "close" => Some(Special::Discard),
        "set" | "reset" => {
            let mut name = words.get(1).map(String::as_str).unwrap_or("");
            if matches!(name, "session" | "local") {
                name = words.get(2).map(String::as_str).unwrap_or("");
            }
            // DataFusion's own options (`datafusion.*`) are refused like
            // every other write; client settings are harmless.
            (!name.is_empty() && !name.contains('.')).then_some(Special::ClientSet)
        }
        _ => None,
    }
}

/// No statement at all, only whitespace or comments (pgx pings with
/// `-- ping`): PostgreSQL answers EmptyQueryResponse.
fn is_blank(sql: &str) -> bool {
    SqlEngine::split_statements(sql).is_ok_and(|s| s.is_empty())
}

fn special_response(s: Special) -> Response {
    match s {
        Special::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Special::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
        Special::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
        Special::ClientSet => Response::Execution(Tag::new("SET")),
        Special::Discard => Response::Execution(Tag::new("DISCARD ALL")),
    }
}

impl Backend {
    fn engine(&self) -> PgWireResult<&SqlEngine> {
        self.control
            .sql()
            .ok_or_else(|| user_error("57P03", "Ember is starting up"))
    }

    /// Runs one statement; its warnings (remote blocks left out) go to
    /// the client first, as `NoticeResponse`s of severity WARNING.
    async fn run<C>(
        &self,
        client: &mut C,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(s) = special(sql) {
            return Ok(special_response(s));
        }
        if is_blank(sql) {
            return Ok(Response::EmptyQuery);
        }
        let mut out = self
            .engine()?
            .query(sql, params)
            .await
            .map_err(|e| sql_error(&e, sql))?;
        for w in std::mem::take(&mut out.warnings) {
            client
                .send(PgWireBackendMessage::NoticeResponse(warning_notice(w)))
                .await?;
        }
        to_response(out, format)
    }
}

/// A notice of severity WARNING with SQLSTATE 01000 (`warning`).
fn warning_notice(message: String) -> NoticeResponse {
    let mut info = ErrorInfo::new("WARNING".to_owned(), "01000".to_owned(), message);
    info.severity_nonlocalized = Some("WARNING".to_owned());
    info.into()
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if query.trim().trim_matches(';').trim().is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let statements = SqlEngine::split_statements(query).map_err(|e| sql_error(&e, query))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(statements.len());
        for sql in statements {
            out.push(self.run(client, &sql, None, &Format::UnifiedText).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = String;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<String>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = &portal.statement.statement;
        let params = decode_params(portal)?;
        let params = (!params.is_empty()).then_some(params);
        self.run(client, sql, params, &portal.result_column_format)
            .await
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        stmt: &StoredStatement<String>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if special(&stmt.statement).is_some() || is_blank(&stmt.statement) {
            return Ok(DescribeStatementResponse::new(Vec::new(), Vec::new()));
        }
        let (schema, inferred) = self
            .engine()?
            .describe(&stmt.statement)
            .await
            .map_err(|e| sql_error(&e, &stmt.statement))?;
        let params = inferred
            .iter()
            .enumerate()
            .map(|(i, t)| match stmt.parameter_types.get(i) {
                Some(Some(given)) => given.clone(),
                _ => t.as_ref().map_or(Type::UNKNOWN, pg_type),
            })
            .collect();
        Ok(DescribeStatementResponse::new(
            params,
            fields(&schema, &Format::UnifiedBinary),
        ))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<String>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = &portal.statement.statement;
        if special(sql).is_some() || is_blank(sql) {
            return Ok(DescribePortalResponse::new(Vec::new()));
        }
        let (schema, _) = self
            .engine()?
            .describe(sql)
            .await
            .map_err(|e| sql_error(&e, sql))?;
        Ok(DescribePortalResponse::new(fields(
            &schema,
            &portal.result_column_format,
        )))
    }
}

/// Bound parameters as DataFusion values; the engine casts them to the
/// placeholder types afterwards.
fn decode_params(portal: &Portal<String>) -> PgWireResult<Vec<ScalarValue>> {
    let mut out = Vec::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let t = portal
            .statement
            .parameter_types
            .get(i)
            .cloned()
            .flatten()
            .unwrap_or(Type::UNKNOWN);
        let v = match t {
            Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, &t)?),
            Type::INT2 => ScalarValue::Int64(portal.parameter::<i16>(i, &t)?.map(i64::from)),
            Type::INT4 => ScalarValue::Int64(portal.parameter::<i32>(i, &t)?.map(i64::from)),
            Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, &t)?),
            Type::FLOAT4 => ScalarValue::Float64(portal.parameter::<f32>(i, &t)?.map(f64::from)),
            Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, &t)?),
            Type::TIMESTAMPTZ => {
                let v = portal.parameter::<chrono::DateTime<chrono::FixedOffset>>(i, &t)?;
                ScalarValue::TimestampMillisecond(
                    v.map(|d| d.timestamp_millis()),
                    Some("UTC".into()),
                )
            }
            Type::TIMESTAMP => {
                let v = portal.parameter::<chrono::NaiveDateTime>(i, &t)?;
                ScalarValue::TimestampMillisecond(
                    v.map(|d| d.and_utc().timestamp_millis()),
                    Some("UTC".into()),
                )
            }
            _ => {
                // Text, varchar, unknown and anything else: the text form.
                let raw = portal
                    .parameters
                    .get(i)
                    .ok_or(PgWireError::ParameterIndexOutOfBound(i))?;
                match raw {
                    None => ScalarValue::Utf8(None),
                    Some(bytes)
                        if !portal.parameter_format.is_binary(i)
                            || t == Type::TEXT
                            || t == Type::VARCHAR
                            || t == Type::UNKNOWN =>
                    {
                        ScalarValue::Utf8(Some(String::from_utf8_lossy(bytes).into_owned()))
                    }
                    Some(_) => {
                        return Err(user_error(
                            "0A000",
                            format!(
                                "parameter ${}: binary {} parameters are not supported",
                                i + 1,
                                t.name()
                            ),
                        ));
                    }
                }
            }
        };
        out.push(v);
    }
    Ok(out)
}

fn pg_type(t: &DataType) -> Type {
    match t {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 => Type::DATE,
        DataType::Map(..) | DataType::Struct(_) | DataType::List(_) | DataType::LargeList(_) => {
            Type::JSON
        }
        _ => Type::TEXT,
    }
}

fn fields(schema: &datafusion::arrow::datatypes::Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format.format_for(i),
            )
        })
        .collect()
}

fn to_response(out: SqlOutput, format: &Format) -> PgWireResult<Response> {
    let schema = Arc::new(fields(&out.schema, format));
    let mut rows: Vec<PgWireResult<DataRow>> = Vec::with_capacity(out.num_rows());
    let mut encoder = DataRowEncoder::new(schema.clone());
    for batch in &out.batches {
        encode_batch(batch, &schema, &mut encoder, &mut rows)?;
    }
    Ok(Response::Query(QueryResponse::new(
        schema,
        futures::stream::iter(rows),
    )))
}

fn encode_batch(
    batch: &RecordBatch,
    schema: &[FieldInfo],
    encoder: &mut DataRowEncoder,
    rows: &mut Vec<PgWireResult<DataRow>>,
) -> PgWireResult<()> {
    let options = text_options();
    let columns: Vec<Column> = batch
        .columns()
        .iter()
        .map(|a| Column::new(a, &options))
        .collect::<Result<_, _>>()
        .map_err(|e| user_error("XX000", e))?;
    for row in 0..batch.num_rows() {
        for (i, (array, field)) in batch.columns().iter().zip(schema).enumerate() {
            encode_cell(encoder, array, &columns[i], row, field)?;
        }
        rows.push(Ok(encoder.take_row()));
    }
    Ok(())
}

fn encode_cell(
    enc: &mut DataRowEncoder,
    a: &ArrayRef,
    text: &Column,
    row: usize,
    field: &FieldInfo,
) -> PgWireResult<()> {
    if a.is_null(row) {
        return enc.encode_field(&None::<i8>);
    }
    match a.data_type() {
        DataType::Boolean => enc.encode_field(&a.as_boolean().value(row)),
        DataType::Int8 => enc.encode_field(&i16::from(a.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => enc.encode_field(&a.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => enc.encode_field(&i16::from(a.as_primitive::<UInt8Type>().value(row))),
        DataType::Int32 => enc.encode_field(&a.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => enc.encode_field(&i32::from(a.as_primitive::<UInt16Type>().value(row))),
        DataType::Int64 => enc.encode_field(&a.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => enc.encode_field(&i64::from(a.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt64 => {
            let v = a.as_primitive::<UInt64Type>().value(row);
            enc.encode_field(&i64::try_from(v).unwrap_or(i64::MAX))
        }
        DataType::Float32 => enc.encode_field(&a.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => enc.encode_field(&a.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(unit, tz) => {
            let raw = match unit {
                TimeUnit::Second => a
                    .as_primitive::<datafusion::arrow::datatypes::TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000_000),
                TimeUnit::Millisecond => a
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Microsecond => a
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Nanosecond => a
                    .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>()
                    .value(row),
            };
            let utc = chrono::DateTime::from_timestamp_nanos(raw);
            if tz.is_some() {
                enc.encode_field(&utc)
            } else {
                enc.encode_field(&utc.naive_utc())
            }
        }
        DataType::Date32 => {
            let days = a
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
                .value(row);
            match date32_to_datetime(days) {
                Some(d) => enc.encode_field(&d.date()),
                None => enc.encode_field(&text.text(row)),
            }
        }
        _ => {
            let s = text.text(row);
            if *field.datatype() == Type::JSON {
                // Text and binary forms of json are both the JSON text.
                let v: Option<serde_json::Value> =
                    s.as_deref().and_then(|s| serde_json::from_str(s).ok());
                enc.encode_field(&v)
            } else {
                enc.encode_field(&s)
            }
        }
    }
}
