//! A small, read-only `pg_catalog` so PostgreSQL clients can look around:
//! `psql`'s `\d`, `\dt`, `\l`, `\dn` and the introspection queries BI
//! tools and Grafana's PostgreSQL data source send.
//!
//! Only what those clients read is here. `pg_namespace`, `pg_class`,
//! `pg_attribute`, `pg_type`, `pg_database`, `pg_settings`, `pg_roles`
//! and `pg_am` describe Ember's real tables and types; catalogs for things
//! Ember has none of (indexes, constraints, triggers, policies, …) are
//! empty tables with PostgreSQL's columns, so client queries over them plan
//! and return nothing. Tables are built per query from the current table
//! list, like `public` itself.
//!
//! Object ids: fixed ones for the namespaces, types and database (the
//! values PostgreSQL uses where it has them); a table's oid is derived from
//! its name, so it stays the same between the two or three queries a
//! client sends to describe one table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float32Builder, Int16Builder, Int32Builder,
    Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// The database name clients see (`current_database()`, `pg_database`).
pub const DATABASE: &str = "ember";
/// The role every client appears as (`current_user`, owners).
pub const ROLE: &str = "ember";
const ROLE_OID: i32 = 10;
const DATABASE_OID: i32 = 16_384;
const PG_CATALOG_OID: i32 = 11;
const PUBLIC_OID: i32 = 2200;
const INFORMATION_SCHEMA_OID: i32 = 13_000;
/// `heap`, the access method of every table.
const HEAP_AM_OID: i32 = 2;
/// Table oids start here, as user objects do in PostgreSQL.
const FIRST_TABLE_OID: u32 = 16_385;

/// The PostgreSQL types Ember's columns map to: (oid, name, length,
/// category), with the same mapping as the wire protocol (`pgwire.rs`).
const TYPES: &[(i32, &str, i16, &str)] = &[
    (16, "bool", 1, "B"),
    (18, "char", 1, "Z"),
    (19, "name", 64, "S"),
    (20, "int8", 8, "N"),
    (21, "int2", 2, "N"),
    (23, "int4", 4, "N"),
    (25, "text", -1, "S"),
    (26, "oid", 4, "N"),
    (114, "json", -1, "U"),
    (700, "float4", 4, "N"),
    (701, "float8", 8, "N"),
    (1043, "varchar", -1, "S"),
    (1082, "date", 4, "D"),
    (1114, "timestamp", 8, "D"),
    (1184, "timestamptz", 8, "D"),
    (1700, "numeric", -1, "N"),
];

/// `format_type` of a type oid: the SQL name PostgreSQL prints.
fn type_display_name(oid: i64) -> Option<&'static str> {
    Some(match oid {
        16 => "boolean",
        18 => "\"char\"",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        25 => "text",
        26 => "oid",
        114 => "json",
        700 => "real",
        701 => "double precision",
        1043 => "character varying",
        1082 => "date",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1700 => "numeric",
        _ => return None,
    })
}

/// The PostgreSQL type oid of an Arrow type (as `pgwire::pg_type` sends it).
fn type_oid(t: &DataType) -> i32 {
    match t {
        DataType::Boolean => 16,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => 20,
        DataType::Float16 | DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::Timestamp(_, None) => 1114,
        DataType::Date32 => 1082,
        DataType::Map(..) | DataType::Struct(_) | DataType::List(_) | DataType::LargeList(_) => 114,
        _ => 25,
    }
}

/// The PostgreSQL name of an Arrow type from its display text (what
/// DataFusion's `information_schema.columns` has in `data_type`).
fn pg_type_name(arrow: &str) -> &'static str {
    let head = arrow.split('(').next().unwrap_or(arrow);
    match head {
        "Boolean" => "boolean",
        "Int8" | "Int16" | "UInt8" => "smallint",
        "Int32" | "UInt16" => "integer",
        "Int64" | "UInt32" | "UInt64" => "bigint",
        "Float16" | "Float32" => "real",
        "Float64" => "double precision",
        "Date32" | "Date64" => "date",
        "Timestamp" if arrow.contains(',') => "timestamp with time zone",
        "Timestamp" => "timestamp without time zone",
        "Map" | "Struct" => "json",
        "List" | "LargeList" | "FixedSizeList" => "ARRAY",
        "Decimal128" | "Decimal256" => "numeric",
        _ => "text",
    }
}

/// A stable oid for a table of `public`, from its name (FNV-1a).
pub fn table_oid(name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let span = i32::MAX as u32 - FIRST_TABLE_OID;
    (FIRST_TABLE_OID + h % span) as i32
}

/// Server settings clients ask for (`current_setting`, `SHOW`, `pg_settings`).
pub fn settings() -> Vec<(&'static str, String)> {
    vec![
        ("server_version", "16.0".to_owned()),
        ("server_version_num", "160000".to_owned()),
        ("server_encoding", "UTF8".to_owned()),
        ("client_encoding", "UTF8".to_owned()),
        ("search_path", "\"$user\", public".to_owned()),
        ("TimeZone", "UTC".to_owned()),
        ("DateStyle", "ISO, MDY".to_owned()),
        ("IntervalStyle", "postgres".to_owned()),
        ("integer_datetimes", "on".to_owned()),
        ("standard_conforming_strings", "on".to_owned()),
        ("default_transaction_read_only", "on".to_owned()),
        ("transaction_read_only", "on".to_owned()),
        ("max_identifier_length", "63".to_owned()),
        ("lc_collate", "C.UTF-8".to_owned()),
        ("lc_ctype", "C.UTF-8".to_owned()),
        ("is_superuser", "off".to_owned()),
        ("ember_version", crate::telemetry::VERSION.to_string()),
    ]
}

pub fn setting(name: &str) -> Option<String> {
    settings()
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The catalog tables (those in [`always_empty`] have no rows).
const TABLES: &[&str] = &[
    "pg_am",
    "pg_attrdef",
    "pg_attribute",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_database",
    "pg_description",
    "pg_enum",
    "pg_extension",
    "pg_index",
    "pg_inherits",
    "pg_namespace",
    "pg_partitioned_table",
    "pg_policy",
    "pg_proc",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_roles",
    "pg_rewrite",
    "pg_settings",
    "pg_statistic_ext",
    "pg_tables",
    "pg_trigger",
    "pg_tablespace",
    "pg_type",
    "pg_user",
];

/// Whether `name` is one of the `pg_catalog` tables.
pub fn is_catalog_table(name: &str) -> bool {
    TABLES.contains(&name)
}

/// Catalog tables Ember keeps empty: a scalar subquery joining one of
/// them is NULL (see `pg_compat`).
pub fn always_empty(table: &str) -> bool {
    matches!(
        table,
        "pg_attrdef"
            | "pg_collation"
            | "pg_constraint"
            | "pg_description"
            | "pg_enum"
            | "pg_extension"
            | "pg_index"
            | "pg_inherits"
            | "pg_partitioned_table"
            | "pg_policy"
            | "pg_proc"
            | "pg_publication"
            | "pg_publication_namespace"
            | "pg_publication_rel"
            | "pg_rewrite"
            | "pg_statistic_ext"
            | "pg_trigger"
    )
}

/// The schema `pg_catalog`, over the tables of `public`.
#[derive(Debug)]
pub struct PgCatalogSchema {
    public: Arc<dyn SchemaProvider>,
}

impl PgCatalogSchema {
    pub fn new(public: Arc<dyn SchemaProvider>) -> PgCatalogSchema {
        PgCatalogSchema { public }
    }

    /// The tables of `public` with their schemas, sorted by name.
    async fn public_tables(&self) -> DfResult<Vec<(String, SchemaRef)>> {
        let mut names = self.public.table_names();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(t) = self.public.table(&name).await? {
                out.push((name, t.schema()));
            }
        }
        Ok(out)
    }

    /// Table names only, when the columns are not needed.
    fn public_names(&self) -> Vec<String> {
        let mut names = self.public.table_names();
        names.sort();
        names
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "pg_namespace" => pg_namespace(),
            "pg_class" => pg_class(&self.public_names()),
            "pg_tables" => pg_tables(&self.public_names()),
            "pg_attribute" => pg_attribute(&self.public_tables().await?),
            "pg_type" => pg_type(),
            "pg_database" => pg_database(),
            "pg_settings" => pg_settings(),
            "pg_roles" | "pg_user" => pg_roles(name),
            "pg_am" => pg_am(),
            "pg_tablespace" => pg_tablespace(),
            other if always_empty(other) => empty(other),
            _ => return Ok(None),
        }?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

fn oid() -> DataType {
    DataType::Int32
}

fn text_array() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// Columns of a catalog table: (name, type).
type Columns = &'static [(&'static str, fn() -> DataType)];

fn utf8() -> DataType {
    DataType::Utf8
}
fn boolean() -> DataType {
    DataType::Boolean
}
fn int2() -> DataType {
    DataType::Int16
}
fn int4() -> DataType {
    DataType::Int32
}
fn float4() -> DataType {
    DataType::Float32
}

fn schema_of(columns: Columns) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, t)| Field::new(*n, t(), true))
            .collect::<Vec<_>>(),
    ))
}

/// The columns of the catalogs Ember keeps empty (the ones PostgreSQL
/// clients read; PostgreSQL has more).
fn empty_columns(table: &str) -> Columns {
    match table {
        "pg_attrdef" => &[
            ("oid", oid),
            ("adrelid", oid),
            ("adnum", int2),
            ("adbin", utf8),
        ],
        "pg_collation" => &[
            ("oid", oid),
            ("collname", utf8),
            ("collnamespace", oid),
            ("collprovider", utf8),
        ],
        "pg_constraint" => &[
            ("oid", oid),
            ("conname", utf8),
            ("connamespace", oid),
            ("contype", utf8),
            ("condeferrable", boolean),
            ("condeferred", boolean),
            ("convalidated", boolean),
            ("conrelid", oid),
            ("contypid", oid),
            ("conindid", oid),
            ("conparentid", oid),
            ("confrelid", oid),
            ("conislocal", boolean),
            ("coninhcount", int2),
            ("connoinherit", boolean),
            ("conkey", text_array),
            ("confkey", text_array),
        ],
        "pg_description" => &[
            ("objoid", oid),
            ("classoid", oid),
            ("objsubid", int4),
            ("description", utf8),
        ],
        "pg_enum" => &[
            ("oid", oid),
            ("enumtypid", oid),
            ("enumsortorder", float4),
            ("enumlabel", utf8),
        ],
        "pg_extension" => &[
            ("oid", oid),
            ("extname", utf8),
            ("extowner", oid),
            ("extnamespace", oid),
            ("extrelocatable", boolean),
            ("extversion", utf8),
        ],
        "pg_index" => &[
            ("indexrelid", oid),
            ("indrelid", oid),
            ("indnatts", int2),
            ("indisunique", boolean),
            ("indisprimary", boolean),
            ("indisexclusion", boolean),
            ("indimmediate", boolean),
            ("indisclustered", boolean),
            ("indisvalid", boolean),
            ("indisreplident", boolean),
            ("indkey", utf8),
        ],
        "pg_inherits" => &[
            ("inhrelid", oid),
            ("inhparent", oid),
            ("inhseqno", int4),
            ("inhdetachpending", boolean),
        ],
        "pg_partitioned_table" => &[("partrelid", oid), ("partstrat", utf8), ("partnatts", int2)],
        "pg_policy" => &[
            ("oid", oid),
            ("polname", utf8),
            ("polrelid", oid),
            ("polcmd", utf8),
            ("polpermissive", boolean),
            ("polroles", utf8),
            ("polqual", utf8),
            ("polwithcheck", utf8),
        ],
        "pg_proc" => &[
            ("oid", oid),
            ("proname", utf8),
            ("pronamespace", oid),
            ("proowner", oid),
            ("prokind", utf8),
            ("prorettype", oid),
            ("proargtypes", utf8),
        ],
        "pg_publication" => &[
            ("oid", oid),
            ("pubname", utf8),
            ("pubowner", oid),
            ("puballtables", boolean),
            ("pubinsert", boolean),
            ("pubupdate", boolean),
            ("pubdelete", boolean),
            ("pubtruncate", boolean),
            ("pubviaroot", boolean),
        ],
        "pg_publication_namespace" => &[("oid", oid), ("pnpubid", oid), ("pnnspid", oid)],
        "pg_publication_rel" => &[
            ("oid", oid),
            ("prpubid", oid),
            ("prrelid", oid),
            ("prqual", utf8),
            ("prattrs", utf8),
        ],
        "pg_rewrite" => &[
            ("oid", oid),
            ("rulename", utf8),
            ("ev_class", oid),
            ("ev_type", utf8),
            ("ev_enabled", utf8),
            ("is_instead", boolean),
        ],
        "pg_statistic_ext" => &[
            ("oid", oid),
            ("stxrelid", oid),
            ("stxname", utf8),
            ("stxnamespace", oid),
            ("stxowner", oid),
            ("stxstattarget", int4),
            ("stxkeys", utf8),
            ("stxkind", text_array),
        ],
        "pg_trigger" => &[
            ("oid", oid),
            ("tgrelid", oid),
            ("tgparentid", oid),
            ("tgname", utf8),
            ("tgfoid", oid),
            ("tgtype", int2),
            ("tgenabled", utf8),
            ("tgisinternal", boolean),
        ],
        _ => &[],
    }
}

fn empty(table: &str) -> DfResult<RecordBatch> {
    Ok(RecordBatch::new_empty(schema_of(empty_columns(table))))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> DfResult<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn nulls(t: DataType, n: usize) -> ArrayRef {
    datafusion::arrow::array::new_null_array(&t, n)
}

fn int32s(values: impl IntoIterator<Item = i32>) -> ArrayRef {
    let mut b = Int32Builder::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

fn int16s(values: impl IntoIterator<Item = i16>) -> ArrayRef {
    let mut b = Int16Builder::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

fn bools(n: usize, v: bool) -> ArrayRef {
    let mut b = BooleanBuilder::new();
    for _ in 0..n {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

fn pg_namespace() -> DfResult<RecordBatch> {
    let rows = [
        (PG_CATALOG_OID, "pg_catalog"),
        (PUBLIC_OID, "public"),
        (INFORMATION_SCHEMA_OID, "information_schema"),
    ];
    batch(vec![
        ("oid", int32s(rows.iter().map(|r| r.0))),
        ("nspname", strings(rows.iter().map(|r| r.1))),
        ("nspowner", int32s(rows.iter().map(|_| ROLE_OID))),
        ("nspacl", nulls(text_array(), rows.len())),
    ])
}

fn pg_class(tables: &[String]) -> DfResult<RecordBatch> {
    let n = tables.len();
    let mut reltuples = Float32Builder::new();
    for _ in 0..n {
        // Unknown, as PostgreSQL says for a table never analysed.
        reltuples.append_value(-1.0);
    }
    batch(vec![
        ("oid", int32s(tables.iter().map(|t| table_oid(t)))),
        ("relname", strings(tables.iter().map(String::as_str))),
        ("relnamespace", int32s(tables.iter().map(|_| PUBLIC_OID))),
        ("reltype", int32s(tables.iter().map(|_| 0))),
        ("reloftype", int32s(tables.iter().map(|_| 0))),
        ("relowner", int32s(tables.iter().map(|_| ROLE_OID))),
        ("relam", int32s(tables.iter().map(|_| HEAP_AM_OID))),
        ("relfilenode", int32s(tables.iter().map(|_| 0))),
        ("reltablespace", int32s(tables.iter().map(|_| 0))),
        ("relpages", int32s(tables.iter().map(|_| 0))),
        ("reltuples", Arc::new(reltuples.finish())),
        ("relallvisible", int32s(tables.iter().map(|_| 0))),
        ("reltoastrelid", int32s(tables.iter().map(|_| 0))),
        ("relhasindex", bools(n, false)),
        ("relisshared", bools(n, false)),
        ("relpersistence", strings(tables.iter().map(|_| "p"))),
        ("relkind", strings(tables.iter().map(|_| "r"))),
        ("relnatts", int16s(tables.iter().map(|_| 0))),
        ("relchecks", int16s(tables.iter().map(|_| 0))),
        ("relhasrules", bools(n, false)),
        ("relhastriggers", bools(n, false)),
        ("relhassubclass", bools(n, false)),
        ("relrowsecurity", bools(n, false)),
        ("relforcerowsecurity", bools(n, false)),
        ("relispopulated", bools(n, true)),
        ("relreplident", strings(tables.iter().map(|_| "d"))),
        ("relispartition", bools(n, false)),
        ("relacl", nulls(text_array(), n)),
        ("reloptions", nulls(text_array(), n)),
        ("relpartbound", nulls(DataType::Utf8, n)),
    ])
}

fn pg_tables(tables: &[String]) -> DfResult<RecordBatch> {
    let n = tables.len();
    batch(vec![
        ("schemaname", strings(tables.iter().map(|_| "public"))),
        ("tablename", strings(tables.iter().map(String::as_str))),
        ("tableowner", strings(tables.iter().map(|_| ROLE))),
        ("tablespace", nulls(DataType::Utf8, n)),
        ("hasindexes", bools(n, false)),
        ("hasrules", bools(n, false)),
        ("hastriggers", bools(n, false)),
        ("rowsecurity", bools(n, false)),
    ])
}

fn pg_attribute(tables: &[(String, SchemaRef)]) -> DfResult<RecordBatch> {
    let mut relid = Vec::new();
    let mut name = Vec::new();
    let mut typid = Vec::new();
    let mut num = Vec::new();
    let mut notnull = BooleanBuilder::new();
    for (table, schema) in tables {
        for (i, f) in schema.fields().iter().enumerate() {
            relid.push(table_oid(table));
            name.push(f.name().as_str());
            typid.push(type_oid(f.data_type()));
            num.push(i16::try_from(i + 1).unwrap_or(i16::MAX));
            notnull.append_value(!f.is_nullable());
        }
    }
    let n = name.len();
    let lens: Vec<i16> = typid
        .iter()
        .map(|t| {
            TYPES
                .iter()
                .find(|(o, ..)| o == t)
                .map_or(-1, |(_, _, len, _)| *len)
        })
        .collect();
    batch(vec![
        ("attrelid", int32s(relid)),
        ("attname", strings(name)),
        ("atttypid", int32s(typid)),
        ("attlen", int16s(lens)),
        ("attnum", int16s(num)),
        ("attndims", int16s((0..n).map(|_| 0))),
        ("atttypmod", int32s((0..n).map(|_| -1))),
        ("attnotnull", Arc::new(notnull.finish())),
        ("atthasdef", bools(n, false)),
        ("atthasmissing", bools(n, false)),
        ("attidentity", strings((0..n).map(|_| ""))),
        ("attgenerated", strings((0..n).map(|_| ""))),
        ("attisdropped", bools(n, false)),
        ("attislocal", bools(n, true)),
        ("attinhcount", int16s((0..n).map(|_| 0))),
        ("attcollation", int32s((0..n).map(|_| 0))),
        ("attstorage", strings((0..n).map(|_| "p"))),
        ("attcompression", strings((0..n).map(|_| ""))),
        ("attstattarget", int16s((0..n).map(|_| -1))),
        ("attacl", nulls(text_array(), n)),
        ("attoptions", nulls(text_array(), n)),
        ("attfdwoptions", nulls(text_array(), n)),
    ])
}

fn pg_type() -> DfResult<RecordBatch> {
    let n = TYPES.len();
    batch(vec![
        ("oid", int32s(TYPES.iter().map(|t| t.0))),
        ("typname", strings(TYPES.iter().map(|t| t.1))),
        ("typnamespace", int32s(TYPES.iter().map(|_| PG_CATALOG_OID))),
        ("typowner", int32s(TYPES.iter().map(|_| ROLE_OID))),
        ("typlen", int16s(TYPES.iter().map(|t| t.2))),
        (
            "typbyval",
            Arc::new(
                TYPES
                    .iter()
                    .map(|t| Some(t.2 > 0 && t.2 <= 8))
                    .collect::<datafusion::arrow::array::BooleanArray>(),
            ),
        ),
        ("typtype", strings(TYPES.iter().map(|_| "b"))),
        ("typcategory", strings(TYPES.iter().map(|t| t.3))),
        ("typispreferred", bools(n, false)),
        ("typisdefined", bools(n, true)),
        ("typdelim", strings(TYPES.iter().map(|_| ","))),
        ("typrelid", int32s(TYPES.iter().map(|_| 0))),
        ("typelem", int32s(TYPES.iter().map(|_| 0))),
        ("typarray", int32s(TYPES.iter().map(|_| 0))),
        ("typnotnull", bools(n, false)),
        ("typbasetype", int32s(TYPES.iter().map(|_| 0))),
        ("typtypmod", int32s(TYPES.iter().map(|_| -1))),
        ("typndims", int32s(TYPES.iter().map(|_| 0))),
        (
            "typcollation",
            int32s(TYPES.iter().map(|t| if t.3 == "S" { 100 } else { 0 })),
        ),
        ("typdefault", nulls(DataType::Utf8, n)),
        ("typacl", nulls(text_array(), n)),
    ])
}

fn pg_database() -> DfResult<RecordBatch> {
    batch(vec![
        ("oid", int32s([DATABASE_OID])),
        ("datname", strings([DATABASE])),
        ("datdba", int32s([ROLE_OID])),
        // 6 is UTF8.
        ("encoding", int32s([6])),
        ("datlocprovider", strings(["c"])),
        ("datistemplate", bools(1, false)),
        ("datallowconn", bools(1, true)),
        ("datconnlimit", int32s([-1])),
        ("dattablespace", int32s([1663])),
        ("datcollate", strings(["C.UTF-8"])),
        ("datctype", strings(["C.UTF-8"])),
        ("daticulocale", nulls(DataType::Utf8, 1)),
        ("daticurules", nulls(DataType::Utf8, 1)),
        ("datcollversion", nulls(DataType::Utf8, 1)),
        ("datacl", nulls(text_array(), 1)),
    ])
}

fn pg_settings() -> DfResult<RecordBatch> {
    let s = settings();
    let n = s.len();
    batch(vec![
        ("name", strings(s.iter().map(|(k, _)| *k))),
        ("setting", strings(s.iter().map(|(_, v)| v.as_str()))),
        ("unit", nulls(DataType::Utf8, n)),
        ("category", strings(s.iter().map(|_| "Ember"))),
        ("short_desc", strings(s.iter().map(|_| ""))),
        ("context", strings(s.iter().map(|_| "internal"))),
        ("vartype", strings(s.iter().map(|_| "string"))),
        ("source", strings(s.iter().map(|_| "default"))),
        ("reset_val", strings(s.iter().map(|(_, v)| v.as_str()))),
        ("pending_restart", bools(n, false)),
    ])
}

fn pg_roles(table: &str) -> DfResult<RecordBatch> {
    let name = if table == "pg_user" {
        "usename"
    } else {
        "rolname"
    };
    let id = if table == "pg_user" {
        "usesysid"
    } else {
        "oid"
    };
    batch(vec![
        (id, int32s([ROLE_OID])),
        (name, strings([ROLE])),
        (
            if table == "pg_user" {
                "usesuper"
            } else {
                "rolsuper"
            },
            bools(1, false),
        ),
        ("rolinherit", bools(1, true)),
        ("rolcreaterole", bools(1, false)),
        ("rolcreatedb", bools(1, false)),
        ("rolcanlogin", bools(1, true)),
        ("rolreplication", bools(1, false)),
        ("rolbypassrls", bools(1, false)),
        ("rolconnlimit", int32s([-1])),
        (
            "rolvaliduntil",
            nulls(
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                1,
            ),
        ),
        ("rolconfig", nulls(text_array(), 1)),
    ])
}

fn pg_tablespace() -> DfResult<RecordBatch> {
    batch(vec![
        ("oid", int32s([1663, 1664])),
        ("spcname", strings(["pg_default", "pg_global"])),
        ("spcowner", int32s([ROLE_OID, ROLE_OID])),
        ("spcacl", nulls(text_array(), 2)),
        ("spcoptions", nulls(text_array(), 2)),
    ])
}

fn pg_am() -> DfResult<RecordBatch> {
    batch(vec![
        ("oid", int32s([HEAP_AM_OID])),
        ("amname", strings(["heap"])),
        ("amhandler", strings(["heap_tableam_handler"])),
        ("amtype", strings(["t"])),
    ])
}

/// The functions PostgreSQL clients call on the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Func {
    /// `pg_table_is_visible(oid)`, `pg_type_is_visible(oid)`: true.
    Visible,
    /// `pg_relation_is_publishable(oid)`: false (no logical replication).
    False,
    /// `format_type(type_oid, typmod)`.
    FormatType,
    /// `current_schema()`.
    CurrentSchema,
    /// `current_schemas(include_implicit)`.
    CurrentSchemas,
    /// `current_database()`, `current_catalog`.
    CurrentDatabase,
    /// `current_user`, `session_user`, `user`, `pg_get_userbyid(oid)`.
    User,
    /// `version()`.
    Version,
    /// `current_setting(name [, missing_ok])`.
    CurrentSetting,
    /// `pg_encoding_to_char(encoding)`.
    EncodingToChar,
    /// `quote_ident(text)`.
    QuoteIdent,
    /// `parse_ident(text)`.
    ParseIdent,
    /// `obj_description`, `col_description`, `shobj_description`,
    /// `pg_get_expr`, `pg_get_indexdef`, `pg_get_constraintdef`,
    /// `pg_get_viewdef`, `pg_get_partkeydef`: NULL (Ember has none).
    Null,
    /// `has_*_privilege(…)`: true for reads.
    HasPrivilege,
    /// `array_lower(array, dim)`: 1 for a non-empty array.
    ArrayLower,
    /// `pg_backend_pid()`.
    BackendPid,
    /// Sizes on disk (`pg_total_relation_size`, `pg_database_size`, …):
    /// 0, Ember does not break its storage down by table.
    Zero,
    /// `pg_size_pretty(bytes)`.
    SizePretty,
    /// `pg_type_name(arrow_type_text)`: the PostgreSQL name of an Arrow
    /// type as `information_schema.columns` prints it (Ember's own, for
    /// `pg_compat`).
    PgTypeName,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgFunction {
    name: &'static str,
    func: Func,
    signature: Signature,
}

impl PgFunction {
    fn udf(name: &'static str, func: Func) -> ScalarUDF {
        ScalarUDF::new_from_impl(PgFunction {
            name,
            func,
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Stable,
            ),
        })
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.func {
            Func::Visible | Func::False | Func::HasPrivilege => DataType::Boolean,
            Func::CurrentSchemas | Func::ParseIdent => text_array(),
            Func::ArrayLower | Func::BackendPid => DataType::Int32,
            Func::Zero => DataType::Int64,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let scalar = |v: ScalarValue| Ok(ColumnarValue::Scalar(v));
        match self.func {
            Func::Visible | Func::HasPrivilege => scalar(ScalarValue::Boolean(Some(true))),
            Func::False => scalar(ScalarValue::Boolean(Some(false))),
            Func::CurrentSchema => scalar(ScalarValue::Utf8(Some("public".into()))),
            Func::CurrentSchemas => {
                let with_implicit = arrays
                    .first()
                    .and_then(|a| a.as_boolean_opt().map(|b| !b.is_empty() && b.value(0)))
                    .unwrap_or(false);
                let mut b = ListBuilder::new(StringBuilder::new());
                if with_implicit {
                    b.values().append_value("pg_catalog");
                }
                b.values().append_value("public");
                b.append(true);
                scalar(ScalarValue::List(Arc::new(b.finish())))
            }
            Func::CurrentDatabase => scalar(ScalarValue::Utf8(Some(DATABASE.into()))),
            Func::User => scalar(ScalarValue::Utf8(Some(ROLE.into()))),
            Func::Version => scalar(ScalarValue::Utf8(Some(format!(
                "PostgreSQL 16.0 (Ember {}) on Rust, read-only SQL over Prometheus data",
                crate::telemetry::VERSION
            )))),
            Func::Null => scalar(ScalarValue::Utf8(None)),
            Func::BackendPid => scalar(ScalarValue::Int32(Some(std::process::id() as i32))),
            Func::Zero => scalar(ScalarValue::Int64(Some(0))),
            Func::PgTypeName => {
                let names = text_arg(&arrays, 0, rows)?;
                let out: StringArray = names.iter().map(|n| n.map(pg_type_name)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Func::SizePretty => {
                let sizes = int64_arg(&arrays, 0, rows)?;
                let out: StringArray = sizes.iter().map(|b| b.map(size_pretty)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Func::FormatType => {
                let oids = int64_arg(&arrays, 0, rows)?;
                let out: StringArray = oids
                    .iter()
                    .map(|o| o.map(|o| type_display_name(o).unwrap_or("???")))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Func::EncodingToChar => {
                let codes = int64_arg(&arrays, 0, rows)?;
                let out: StringArray = codes
                    .iter()
                    .map(|c| c.map(|c| if c == 6 { "UTF8" } else { "SQL_ASCII" }))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Func::CurrentSetting => {
                let names = text_arg(&arrays, 0, rows)?;
                let out: StringArray = names.iter().map(|n| n.and_then(setting)).collect();
                if names.iter().flatten().any(|n| setting(n).is_none()) {
                    let missing_ok = arrays
                        .get(1)
                        .and_then(|a| a.as_boolean_opt().map(|b| !b.is_empty() && b.value(0)))
                        .unwrap_or(false);
                    if !missing_ok {
                        let name = names
                            .iter()
                            .flatten()
                            .find(|n| setting(n).is_none())
                            .unwrap_or_default();
                        return Err(DataFusionError::Execution(format!(
                            "unrecognized configuration parameter \"{name}\""
                        )));
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Func::QuoteIdent => {
                let names = text_arg(&arrays, 0, rows)?;
                let out: StringArray = names.iter().map(|n| n.map(quote_ident)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            Func::ParseIdent => {
                let names = text_arg(&arrays, 0, rows)?;
                let mut b = ListBuilder::new(StringBuilder::new());
                for n in names.iter() {
                    match n {
                        Some(n) => {
                            for part in parse_ident(n) {
                                b.values().append_value(part);
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(b.finish())))
            }
            Func::ArrayLower => {
                let arr = arrays
                    .first()
                    .ok_or_else(|| DataFusionError::Plan("array_lower needs an array".into()))?;
                let mut b = Int32Builder::new();
                for i in 0..arr.len() {
                    let non_empty = match arr.data_type() {
                        DataType::List(_) => {
                            let l = arr.as_list::<i32>();
                            !l.is_null(i) && !l.value(i).is_empty()
                        }
                        _ => false,
                    };
                    if non_empty {
                        b.append_value(1);
                    } else {
                        b.append_null();
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(b.finish())))
            }
        }
    }
}

fn int64_arg(arrays: &[ArrayRef], i: usize, rows: usize) -> DfResult<Int64Array> {
    match arrays.get(i) {
        Some(a) => {
            let cast = datafusion::arrow::compute::cast(a, &DataType::Int64)?;
            Ok(cast.as_primitive::<Int64Type>().clone())
        }
        None => Ok(Int64Array::new_null(rows)),
    }
}

fn text_arg(arrays: &[ArrayRef], i: usize, rows: usize) -> DfResult<StringArray> {
    match arrays.get(i) {
        Some(a) => {
            let cast = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
            Ok(cast.as_string::<i32>().clone())
        }
        None => Ok(StringArray::new_null(rows)),
    }
}

/// PostgreSQL's `pg_size_pretty`: bytes, kB, MB, … (1024-based), rounded.
fn size_pretty(bytes: i64) -> String {
    let mut value = bytes;
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if value.abs() < 10 * 1024 || unit == "TB" {
            return format!("{value} {unit}");
        }
        value = (value + 512) / 1024;
    }
    format!("{value} PB")
}

/// PostgreSQL's `quote_ident`: double quotes unless the name is a plain
/// lower-case identifier.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// PostgreSQL's `parse_ident`: dotted parts, quoted ones kept as written,
/// unquoted ones folded to lower case.
fn parse_ident(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    parts.push(cur);
    parts
}

/// Registers the `pg_catalog` schema and the functions PostgreSQL clients
/// call in `ctx`.
pub fn register(ctx: &SessionContext, public: Arc<dyn SchemaProvider>) -> DfResult<()> {
    let catalog = ctx
        .catalog(DATABASE)
        .ok_or_else(|| DataFusionError::Internal("default catalog missing".into()))?;
    catalog.register_schema("pg_catalog", Arc::new(PgCatalogSchema::new(public)))?;
    for (name, func) in [
        ("pg_table_is_visible", Func::Visible),
        ("pg_type_is_visible", Func::Visible),
        ("pg_function_is_visible", Func::Visible),
        ("pg_relation_is_publishable", Func::False),
        ("format_type", Func::FormatType),
        ("current_schema", Func::CurrentSchema),
        ("current_schemas", Func::CurrentSchemas),
        ("current_database", Func::CurrentDatabase),
        ("current_catalog", Func::CurrentDatabase),
        ("current_user", Func::User),
        ("session_user", Func::User),
        ("user", Func::User),
        ("current_role", Func::User),
        ("pg_get_userbyid", Func::User),
        ("version", Func::Version),
        ("current_setting", Func::CurrentSetting),
        ("pg_encoding_to_char", Func::EncodingToChar),
        ("quote_ident", Func::QuoteIdent),
        ("parse_ident", Func::ParseIdent),
        ("obj_description", Func::Null),
        ("col_description", Func::Null),
        ("shobj_description", Func::Null),
        ("pg_get_expr", Func::Null),
        ("pg_get_indexdef", Func::Null),
        ("pg_get_constraintdef", Func::Null),
        ("pg_get_viewdef", Func::Null),
        ("pg_get_partkeydef", Func::Null),
        ("pg_get_statisticsobjdef_columns", Func::Null),
        ("pg_tablespace_location", Func::Null),
        ("has_table_privilege", Func::HasPrivilege),
        ("has_schema_privilege", Func::HasPrivilege),
        ("has_database_privilege", Func::HasPrivilege),
        ("has_column_privilege", Func::HasPrivilege),
        ("array_lower", Func::ArrayLower),
        ("pg_backend_pid", Func::BackendPid),
        ("pg_total_relation_size", Func::Zero),
        ("pg_relation_size", Func::Zero),
        ("pg_table_size", Func::Zero),
        ("pg_indexes_size", Func::Zero),
        ("pg_database_size", Func::Zero),
        ("pg_size_pretty", Func::SizePretty),
        ("pg_type_name", Func::PgTypeName),
    ] {
        ctx.register_udf(PgFunction::udf(name, func));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_parsing_identifiers() {
        assert_eq!(quote_ident("temperature"), "temperature");
        assert_eq!(quote_ident("Foo_total"), "\"Foo_total\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(parse_ident("public.Temp"), ["public", "temp"]);
        assert_eq!(parse_ident("\"My.Schema\".x"), ["My.Schema", "x"]);
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(
            pg_type_name("Timestamp(ms, \"UTC\")"),
            "timestamp with time zone"
        );
        assert_eq!(pg_type_name("Timestamp(ms)"), "timestamp without time zone");
        assert_eq!(pg_type_name("Float64"), "double precision");
        assert_eq!(pg_type_name("Utf8"), "text");
        assert_eq!(size_pretty(20_000), "20 kB");
        assert_eq!(size_pretty(50 << 20), "50 MB");
    }

    #[test]
    fn table_oids_are_stable_user_oids() {
        let a = table_oid("temperature");
        assert_eq!(a, table_oid("temperature"));
        assert!(a >= FIRST_TABLE_OID as i32);
        assert_ne!(a, table_oid("samples"));
    }
}
