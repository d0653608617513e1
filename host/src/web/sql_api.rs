//! `GET|POST /api/v1/sql`: read-only SQL over HTTP.
//!
//! The statement comes from `query=` (query string or form body), or is the
//! whole POST body when that is not a form (`text/plain`, `application/sql`,
//! or JSON `{"query": "..."}`). The answer is JSON by default, CSV or an
//! Arrow IPC stream when `format=csv|arrow` or the `Accept` header asks.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::sql::format::{Column, csv_field, pg_type_name, text_options};
use crate::sql::{SqlError, SqlOutput};

/// SQL bodies above this are refused.
const BODY_LIMIT: usize = 1 << 20;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/sql",
        get(sql)
            .post(sql)
            .layer(axum::middleware::from_fn_with_state(
                super::limits::BodyLimit {
                    bytes: BODY_LIMIT,
                    json: true,
                },
                super::limits::body_limit,
            )),
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn format_of(param: &str, headers: &HeaderMap) -> Result<Format, String> {
    match param {
        "json" => return Ok(Format::Json),
        "csv" => return Ok(Format::Csv),
        "arrow" => return Ok(Format::Arrow),
        "" => {}
        other => {
            return Err(format!(
                "invalid parameter \"format\": {other:?} is not json, csv or arrow"
            ));
        }
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first listed type Ember serves wins; `*/*` and unknown ones mean JSON.
    for part in accept.split(',') {
        let media = part.split(';').next().unwrap_or("").trim();
        match media {
            "application/json" => return Ok(Format::Json),
            "text/csv" => return Ok(Format::Csv),
            ARROW_STREAM => return Ok(Format::Arrow),
            _ => {}
        }
    }
    Ok(Format::Json)
}

async fn sql(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let bad = |msg: &str| error_response("bad_data", StatusCode::BAD_REQUEST, msg, None);
    let (query, format_param) = match read_request(req).await {
        Ok(q) => q,
        Err(msg) => return bad(&msg),
    };
    let format = match format_of(&format_param, &headers) {
        Ok(f) => f,
        Err(msg) => return bad(&msg),
    };
    if query.trim().is_empty() {
        return error_response(
            "bad_data",
            StatusCode::BAD_REQUEST,
            "invalid parameter \"query\": empty SQL statement",
            None,
        );
    }
    let Some(engine) = state.control.sql() else {
        return error_response(
            "unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            None,
        );
    };
    match engine.query(&query, None).await {
        Ok(out) => match format {
            Format::Json => json_answer(&out),
            Format::Csv => csv_answer(&out),
            Format::Arrow => arrow_answer(&out),
        },
        Err(err) => sql_error(&err),
    }
}

/// The statement and the `format` parameter.
async fn read_request(req: Request) -> Result<(String, String), String> {
    let bad = |msg: String| msg;
    let mut pairs: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut body_query = None;
    if req.method() == axum::http::Method::POST {
        let body = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|e| bad(format!("error reading the request body: {e}")))?;
        match content_type.as_str() {
            "application/x-www-form-urlencoded" => {
                let mut form: Vec<(String, String)> =
                    form_urlencoded::parse(&body).into_owned().collect();
                form.append(&mut pairs);
                pairs = form;
            }
            "application/json" => {
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| bad(format!("invalid JSON body: {e}")))?;
                match v.get("query").and_then(|q| q.as_str()) {
                    Some(q) => body_query = Some(q.to_owned()),
                    None => return Err(bad("JSON body has no \"query\" string".into())),
                }
            }
            _ if !body.is_empty() => {
                body_query = Some(
                    String::from_utf8(body.to_vec())
                        .map_err(|_| bad("the SQL body is not UTF-8".into()))?,
                );
            }
            _ => {}
        }
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let query = body_query.unwrap_or_else(|| get("query"));
    Ok((query, get("format")))
}

fn error_response(
    kind: &str,
    status: StatusCode,
    message: &str,
    position: Option<crate::sql::Position>,
) -> Response {
    let mut body = format!(
        r#"{{"status":"error","errorType":{},"error":{}"#,
        serde_json::Value::from(kind),
        serde_json::Value::from(message),
    );
    if let Some(p) = position {
        body.push_str(&format!(
            r#","position":{{"line":{},"column":{}}}"#,
            p.line, p.column
        ));
    }
    body.push('}');
    super::api::json_response(status, body)
}

fn sql_error(err: &SqlError) -> Response {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut message = err.to_string();
    if let Some(p) = err.position()
        && !message.contains("Line: ")
    {
        message.push_str(&format!(" at line {}, column {}", p.line, p.column));
    }
    error_response(err.error_type(), status, &message, err.position())
}

fn json_answer(out: &SqlOutput) -> Response {
    let columns: Vec<serde_json::Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name(),
                "type": pg_type_name(f.data_type()),
                "arrowType": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })
        })
        .collect();
    let options = text_options();
    let mut rows = Vec::with_capacity(out.num_rows());
    for batch in &out.batches {
        let cols: Result<Vec<Column>, String> = batch
            .columns()
            .iter()
            .map(|a| Column::new(a, &options))
            .collect();
        let cols = match cols {
            Ok(c) => c,
            Err(e) => return sql_error(&SqlError::Internal(e)),
        };
        for row in 0..batch.num_rows() {
            rows.push(serde_json::Value::Array(
                cols.iter().map(|c| c.json(row)).collect(),
            ));
        }
    }
    // Remote blocks left out, as in the PromQL API's `warnings`.
    super::api::success_with_warnings(
        serde_json::json!({ "columns": columns, "rows": rows }),
        &out.warnings,
    )
}

fn csv_answer(out: &SqlOutput) -> Response {
    let mut text = String::new();
    for (i, f) in out.schema.fields().iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        csv_field(&mut text, f.name());
    }
    text.push_str("\r\n");
    let options = text_options();
    for batch in &out.batches {
        let cols: Result<Vec<Column>, String> = batch
            .columns()
            .iter()
            .map(|a| Column::new(a, &options))
            .collect();
        let cols = match cols {
            Ok(c) => c,
            Err(e) => return sql_error(&SqlError::Internal(e)),
        };
        for row in 0..batch.num_rows() {
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                if let Some(v) = c.text(row) {
                    csv_field(&mut text, &v);
                }
            }
            text.push_str("\r\n");
        }
    }
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    resp
}

fn arrow_answer(out: &SqlOutput) -> Response {
    let mut buf = Vec::new();
    let written = (|| {
        let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut buf, &out.schema)?;
        for b in &out.batches {
            w.write(b)?;
        }
        w.finish()
    })();
    if let Err(e) = written {
        return sql_error(&SqlError::Internal(format!("Arrow IPC: {e}")));
    }
    let mut resp = (StatusCode::OK, buf).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ARROW_STREAM));
    resp
}
