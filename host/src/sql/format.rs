//! Result values as JSON, text (CSV and the PostgreSQL text format) and
//! PostgreSQL type names, shared by the HTTP endpoint and the wire protocol.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// The PostgreSQL type a column is sent as (also shown by the HTTP API).
pub fn pg_type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "bool",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "int2",
        DataType::Int32 | DataType::UInt16 => "int4",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "int8",
        DataType::Float16 | DataType::Float32 => "float4",
        DataType::Float64 => "float8",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea",
        DataType::Map(..) | DataType::Struct(_) | DataType::List(_) | DataType::LargeList(_) => {
            "json"
        }
        _ => "text",
    }
}

/// A float the way Prometheus writes one: `NaN`, `+Inf`, `-Inf`, else the
/// shortest round-trip decimal.
fn float_text(v: f64) -> String {
    crate::promql::format_value(v)
}

/// One column, ready to format cell by cell.
pub struct Column<'a> {
    array: &'a ArrayRef,
    formatter: ArrayFormatter<'a>,
}

impl<'a> Column<'a> {
    pub fn new(array: &'a ArrayRef, options: &'a FormatOptions<'a>) -> Result<Column<'a>, String> {
        let formatter =
            ArrayFormatter::try_new(array.as_ref(), options).map_err(|e| e.to_string())?;
        Ok(Column { array, formatter })
    }

    /// The cell as text; `None` for NULL. Maps and lists are JSON.
    pub fn text(&self, row: usize) -> Option<String> {
        if self.array.is_null(row) {
            return None;
        }
        Some(match self.array.data_type() {
            DataType::Float64 => float_text(self.array.as_primitive::<Float64Type>().value(row)),
            DataType::Float32 => float_text(f64::from(
                self.array.as_primitive::<Float32Type>().value(row),
            )),
            DataType::Map(..)
            | DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_) => self.json(row).to_string(),
            _ => self.formatter.value(row).to_string(),
        })
    }

    /// The cell as JSON: numbers stay numbers (non-finite floats become
    /// strings, as JSON has no NaN), maps become objects.
    pub fn json(&self, row: usize) -> serde_json::Value {
        use serde_json::Value as J;
        let a = self.array;
        if a.is_null(row) {
            return J::Null;
        }
        match a.data_type() {
            DataType::Boolean => J::Bool(a.as_boolean().value(row)),
            DataType::Float64 | DataType::Float32 => {
                let v = match a.data_type() {
                    DataType::Float64 => a.as_primitive::<Float64Type>().value(row),
                    _ => f64::from(a.as_primitive::<Float32Type>().value(row)),
                };
                serde_json::Number::from_f64(v).map_or_else(|| J::String(float_text(v)), J::Number)
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => {
                let text = self.formatter.value(row).to_string();
                serde_json::from_str(&text).unwrap_or(J::String(text))
            }
            DataType::Map(..) => {
                let entries = a.as_map().value(row);
                let keys = entries.column(0);
                let values = entries.column(1);
                let options = FormatOptions::default();
                let (Ok(k), Ok(v)) = (Column::new(keys, &options), Column::new(values, &options))
                else {
                    return J::Null;
                };
                let mut obj = serde_json::Map::new();
                for i in 0..entries.len() {
                    obj.insert(k.text(i).unwrap_or_default(), v.json(i));
                }
                J::Object(obj)
            }
            DataType::List(_) => {
                let items = a.as_list::<i32>().value(row);
                let options = FormatOptions::default();
                match Column::new(&items, &options) {
                    Ok(c) => J::Array((0..items.len()).map(|i| c.json(i)).collect()),
                    Err(_) => J::Null,
                }
            }
            _ => J::String(self.formatter.value(row).to_string()),
        }
    }
}

/// Text formatting options: RFC 3339 timestamps, `NULL` never printed
/// (callers handle NULL themselves).
pub fn text_options() -> FormatOptions<'static> {
    FormatOptions::default().with_display_error(true)
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}
