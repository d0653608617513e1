//! Rewrites the PostgreSQL-only syntax that `psql`, Grafana and BI tools
//! put in their catalog queries into what DataFusion plans, on the parsed
//! statement, before planning:
//!
//! - `pg_catalog.f(…)` calls become `f(…)` (the functions live in
//!   [`super::pg_catalog`]), and an unqualified `pg_class` & co. means
//!   `pg_catalog.pg_class`, as `pg_catalog` is first on PostgreSQL's path.
//! - `a OPERATOR(pg_catalog.~) b` becomes `a ~ b`; `COLLATE …` is dropped
//!   (Ember compares strings by code point).
//! - Casts to catalog types: `'name'::regclass` becomes the table's oid,
//!   `x::regtype` becomes `format_type(x, NULL)`, `::oid`, `::regproc` &
//!   co. are dropped, `::pg_catalog.text`, `::name` and `::"char"` are text.
//! - A function in `FROM` with an alias (`generate_series(a, b) AS i` with
//!   computed bounds, `string_to_array(s, ',') s`) is a one-column derived
//!   table named by the alias, as in PostgreSQL, so `s[i]` works.
//! - `array_upper(a, 1)` is `array_length(a, 1)`.
//! - `information_schema.columns` gives PostgreSQL type names.
//! - `ORDER BY` over a subquery is sorted outside an inner projection, and
//!   `x IN (subquery)` inside `CASE` is an `array_has` over a scalar
//!   subquery (Grafana's search_path-aware table list).
//! - A repeated unnamed column (`SELECT NULL, NULL`) gets a suffix.
//! - A scalar subquery over a catalog Ember keeps empty (`pg_attrdef`,
//!   `pg_collation`, …) is NULL, `EXISTS` over one is false, and
//!   `ARRAY(subquery)` is an empty array: DataFusion cannot plan the
//!   correlated forms psql uses, and their value is known.
//!
//! Ember's own tables are unaffected: none of these forms reads them.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Ident, ObjectName, ObjectNamePart, OrderByKind, Query, Select, SelectItem,
    SetExpr, TableFactor, Value, VisitMut, VisitorMut, visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::pg_catalog;

/// Rewrites `statement` in place.
pub fn rewrite<V: VisitMut>(statement: &mut V) {
    let _ = statement.visit(&mut Rewriter);
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<()> {
        if let [ObjectNamePart::Identifier(id)] = name.0.as_slice()
            && id.quote_style.is_none()
            && pg_catalog::is_catalog_table(&id.value.to_ascii_lowercase())
        {
            let table = id.clone();
            name.0 = vec![
                ObjectNamePart::Identifier(Ident::new("pg_catalog")),
                ObjectNamePart::Identifier(table),
            ];
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        blank_selects_over_empty_catalogs(query.body.as_mut());
        name_repeated_columns(query.body.as_mut());
        if let Some(sorted) = sort_outside(query) {
            *query = sorted;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Some(derived) = function_in_from(factor).or_else(|| columns_with_pg_types(factor)) {
            *factor = derived;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(new) = rewrite_expr(expr) {
            *expr = new;
        }
        ControlFlow::Continue(())
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

fn last_part(name: &ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(ObjectNamePart::as_ident)
        .map(|i| i.value.to_ascii_lowercase())
}

/// `pg_catalog.x` or `x`: the name; anything else qualified: None.
fn catalog_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [_] => last_part(name),
        [schema, _]
            if schema
                .as_ident()
                .is_some_and(|s| s.value.eq_ignore_ascii_case("pg_catalog")) =>
        {
            last_part(name)
        }
        _ => None,
    }
}

fn rewrite_expr(expr: &mut Expr) -> Option<Expr> {
    match expr {
        Expr::Function(f) => {
            let name = catalog_name(&f.name)?;
            if f.name.0.len() == 2 {
                f.name = ObjectName::from(vec![Ident::new(&name)]);
            }
            match (name.as_str(), &f.args) {
                ("array_upper", _) => {
                    f.name = ObjectName::from(vec![Ident::new("array_length")]);
                    None
                }
                // ARRAY(subquery): only psql's reloptions use it.
                ("array", FunctionArguments::Subquery(_)) => parse_expr("make_array()"),
                _ => None,
            }
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                && let Some(plain) = plain_operator(parts)
            {
                *op = plain;
            }
            None
        }
        Expr::Collate { expr: inner, .. } => Some((**inner).clone()),
        Expr::Case { conditions, .. } => {
            for when in conditions {
                let _ = visit_expressions_mut(&mut when.condition, |e| {
                    if let Some(new) = in_subquery_as_array(e) {
                        *e = new;
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
            None
        }
        Expr::Cast {
            expr: inner,
            data_type,
            kind,
            ..
        } => rewrite_cast(inner, data_type, kind),
        Expr::Subquery(q) if over_empty_catalog(q) => Some(Expr::value(Value::Null)),
        Expr::Exists { subquery, negated } if over_empty_catalog(subquery) => {
            Some(Expr::value(Value::Boolean(*negated)))
        }
        _ => None,
    }
}

/// `x [NOT] IN (subquery)` inside `CASE` as `[NOT] array_has((SELECT
/// array_agg(v) FROM (subquery)), x)`: DataFusion plans an uncorrelated
/// scalar subquery anywhere, but `IN (subquery)` only at the top of a
/// filter or projection (Grafana's table list has it in a `CASE`).
fn in_subquery_as_array(expr: &Expr) -> Option<Expr> {
    let Expr::InSubquery {
        expr,
        subquery,
        negated,
    } = expr
    else {
        return None;
    };
    let not = if *negated { "NOT " } else { "" };
    parse_expr(&format!(
        "{not}array_has((SELECT array_agg(__ember_in.v) FROM ({subquery}) AS __ember_in(v)), {expr})"
    ))
}

/// `OPERATOR(pg_catalog.op)` as the plain operator.
fn plain_operator(parts: &[String]) -> Option<BinaryOperator> {
    let op = match parts {
        [op] => op,
        [schema, op] if schema.eq_ignore_ascii_case("pg_catalog") => op,
        _ => return None,
    };
    Some(match op.as_str() {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        _ => return None,
    })
}

fn rewrite_cast(inner: &Expr, data_type: &mut DataType, kind: &CastKind) -> Option<Expr> {
    let name = match data_type {
        DataType::Regclass => "regclass".to_owned(),
        DataType::Custom(name, _) => catalog_name(name)?,
        _ => return None,
    };
    match name.as_str() {
        "regclass" => match inner {
            Expr::Value(v) => {
                let text = match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    _ => return Some(inner.clone()),
                };
                let table = text.rsplit('.').next().unwrap_or(&text).trim_matches('"');
                Some(Expr::value(Value::Number(
                    pg_catalog::table_oid(table).to_string(),
                    false,
                )))
            }
            _ => Some(inner.clone()),
        },
        "regtype" => parse_expr(&format!("format_type({inner}, NULL)")),
        "oid" | "regproc" | "regprocedure" | "regnamespace" | "regrole" | "regoper"
        | "regconfig" => Some(inner.clone()),
        "text" | "name" | "char" | "bpchar" | "varchar" => {
            *data_type = DataType::Text;
            let _ = kind;
            None
        }
        _ => None,
    }
}

/// Whether `q` is a plain select joining a catalog Ember keeps empty, so
/// as a scalar subquery it is NULL and under `EXISTS` false. (Over no
/// rows every aggregate but `count` is NULL too.)
fn over_empty_catalog(q: &Query) -> bool {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    let counts = select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            e.to_string().to_ascii_lowercase().contains("count(")
        }
        _ => false,
    });
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    !counts && !grouped && joins_empty_catalog(select)
}

/// In a `SELECT` that inner-joins an always-empty catalog (so has no rows),
/// subqueries in the projection and filter are never evaluated: NULL and
/// false stand in, since DataFusion cannot plan the correlated ones psql
/// writes there.
fn blank_selects_over_empty_catalogs(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) if joins_empty_catalog(select) => {
            for item in &mut select.projection {
                match item {
                    SelectItem::UnnamedExpr(e) if has_subquery(e) => {
                        *e = Expr::value(Value::Null);
                    }
                    SelectItem::ExprWithAlias { expr, .. } if has_subquery(expr) => {
                        *expr = Expr::value(Value::Null);
                    }
                    _ => {}
                }
            }
            if select.selection.as_ref().is_some_and(has_subquery) {
                select.selection = Some(Expr::value(Value::Boolean(false)));
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            blank_selects_over_empty_catalogs(left);
            blank_selects_over_empty_catalogs(right);
        }
        _ => {}
    }
}

/// DataFusion cannot sort by an expression holding a subquery (Grafana's
/// table list sorts by `CASE WHEN schema IN (SELECT …)`), but computes one
/// in a projection: `SELECT a, b FROM t ORDER BY <sub>, 1` becomes
/// `SELECT c1 AS a, c2 AS b FROM (SELECT a AS c1, b AS c2, <sub> AS o1
/// FROM t) ORDER BY o1, c1`.
fn sort_outside(query: &Query) -> Option<Query> {
    let order_by = query.order_by.as_ref()?;
    let OrderByKind::Expressions(items) = &order_by.kind else {
        return None;
    };
    if query.with.is_some() || !items.iter().any(|o| has_subquery(&o.expr)) {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.distinct.is_some() {
        return None;
    }
    let mut inner = select.as_ref().clone();
    let mut outer = Vec::new();
    let mut inner_names = Vec::new();
    for (i, item) in inner.projection.iter_mut().enumerate() {
        let inner_name = Ident::with_quote('"', format!("__ember_col_{}", i + 1));
        let (expr, output) = match item {
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), alias.clone()),
            SelectItem::UnnamedExpr(e) => (e.clone(), Ident::with_quote('"', e.to_string())),
            _ => return None,
        };
        outer.push(format!("{inner_name} AS {output}"));
        inner_names.push((inner_name.clone(), output));
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: inner_name,
        };
    }
    let mut order = Vec::new();
    for (k, o) in items.iter().enumerate() {
        let mut o = o.clone();
        if has_subquery(&o.expr) {
            let name = Ident::with_quote('"', format!("__ember_order_{}", k + 1));
            inner.projection.push(SelectItem::ExprWithAlias {
                expr: o.expr.clone(),
                alias: name.clone(),
            });
            o.expr = Expr::Identifier(name);
        } else if let Expr::Value(v) = &o.expr
            && let Value::Number(n, _) = &v.value
        {
            let (inner_name, _) = inner_names.get(n.parse::<usize>().ok()?.checked_sub(1)?)?;
            o.expr = Expr::Identifier(inner_name.clone());
        } else if let Expr::Identifier(id) = &o.expr
            && let Some((inner_name, _)) = inner_names.iter().find(|(_, out)| out.value == id.value)
        {
            o.expr = Expr::Identifier(inner_name.clone());
        }
        order.push(o.to_string());
    }
    let limit = query
        .limit_clause
        .as_ref()
        .map(|l| l.to_string())
        .unwrap_or_default();
    let sql = format!(
        "SELECT {} FROM ({inner}) AS __ember_sorted ORDER BY {}{limit}",
        outer.join(", "),
        order.join(", ")
    );
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    match parsed.pop()? {
        datafusion::sql::sqlparser::ast::Statement::Query(q) => Some(*q),
        _ => None,
    }
}

/// PostgreSQL allows `SELECT NULL, NULL`; DataFusion wants distinct
/// names, so a repeated unnamed expression gets an alias with a suffix.
fn name_repeated_columns(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let mut seen = std::collections::HashSet::new();
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) = item {
                    let name = e.to_string();
                    if !seen.insert(name.clone()) {
                        let mut n = 2;
                        while !seen.insert(format!("{name}_{n}")) {
                            n += 1;
                        }
                        *item = SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: Ident::with_quote('"', format!("{name}_{n}")),
                        };
                    }
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            name_repeated_columns(left);
            name_repeated_columns(right);
        }
        _ => {}
    }
}

fn has_subquery(expr: &Expr) -> bool {
    visit_expressions(expr, |e| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        Expr::Function(f) if matches!(f.args, FunctionArguments::Subquery(_)) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn joins_empty_catalog(select: &Select) -> bool {
    select.from.iter().any(|t| {
        let inner_joined = std::iter::once(&t.relation).chain(t.joins.iter().filter_map(|j| {
            use datafusion::sql::sqlparser::ast::JoinOperator as J;
            matches!(j.join_operator, J::Inner(_) | J::Join(_) | J::CrossJoin(_))
                .then_some(&j.relation)
        }));
        inner_joined.into_iter().any(|r| match r {
            TableFactor::Table {
                name, args: None, ..
            } => catalog_name(name).is_some_and(|n| pg_catalog::always_empty(&n)),
            _ => false,
        })
    })
}

/// `information_schema.columns` with PostgreSQL type names in `data_type`
/// (`text`, `double precision`, `timestamp with time zone`) instead of
/// DataFusion's Arrow names, as Grafana's column picker and BI tools map
/// types by those names. The inner reference is quoted, which this rewrite
/// leaves alone.
fn columns_with_pg_types(factor: &TableFactor) -> Option<TableFactor> {
    let TableFactor::Table {
        name,
        args: None,
        alias,
        ..
    } = factor
    else {
        return None;
    };
    let [schema, table] = name.0.as_slice() else {
        return None;
    };
    let (schema, table) = (schema.as_ident()?, table.as_ident()?);
    if !schema.value.eq_ignore_ascii_case("information_schema")
        || table.value != "columns"
        || table.quote_style.is_some()
    {
        return None;
    }
    let alias = alias
        .as_ref()
        .map_or_else(|| "columns".to_owned(), |a| a.to_string());
    // `* REPLACE` keeps every column in place; only the generic dialect
    // parses it, and DataFusion plans it whatever the dialect.
    let sql = format!(
        "(SELECT * REPLACE (pg_type_name(data_type) AS data_type) FROM information_schema.\"columns\") AS {alias}"
    );
    Parser::new(&datafusion::sql::sqlparser::dialect::GenericDialect {})
        .try_with_sql(&sql)
        .ok()?
        .parse_table_factor()
        .ok()
}

/// `f(args) AS a` in `FROM`, for a scalar or set-returning function that
/// is not one of Ember's table functions: `(SELECT f(args) AS a) AS a`
/// (`unnest(generate_series(…))` for `generate_series`).
fn function_in_from(factor: &TableFactor) -> Option<TableFactor> {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        ..
    } = factor
    else {
        return None;
    };
    let function = catalog_name(name)?;
    // With constant bounds DataFusion's own generate_series streams its
    // rows (column `value`); only computed bounds need the rewrite.
    if function == "generate_series"
        && args.args.iter().all(|a| {
            matches!(
                a,
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(_)))
            )
        })
    {
        return None;
    }
    let column = alias
        .columns
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| alias.name.clone());
    let args: Vec<String> = args.args.iter().map(ToString::to_string).collect();
    let call = format!("{function}({})", args.join(", "));
    let value = match function.as_str() {
        "generate_series" => format!("unnest({call})"),
        "string_to_array" | "current_schemas" | "parse_ident" | "current_setting"
        | "current_schema" | "current_database" | "version" => call,
        _ => return None,
    };
    let sql = format!("(SELECT {value} AS {column}) AS {}", alias.name);
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .ok()?
        .parse_table_factor()
        .ok()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        for s in &mut statements {
            super::rewrite(s);
        }
        statements[0].to_string()
    }

    #[test]
    fn psql_operators_collations_and_qualified_functions() {
        assert_eq!(
            rewritten(
                "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)"
            ),
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t)$' AND pg_table_is_visible(c.oid)"
        );
    }

    #[test]
    fn functions_in_from_become_derived_tables() {
        assert_eq!(
            rewritten(
                "SELECT s[i] FROM generate_series(1, array_length(s, 1)) AS i, string_to_array('a,b', ',') s"
            ),
            "SELECT s[i] FROM (SELECT unnest(generate_series(1, array_length(s, 1))) AS i) AS i, (SELECT string_to_array('a,b', ',') AS s) AS s"
        );
        assert_eq!(
            rewritten(
                "SELECT a AS x, b FROM t ORDER BY CASE WHEN a IN (SELECT 1) THEN 0 END, 2 LIMIT 5"
            ),
            "SELECT \"__ember_col_1\" AS x, \"__ember_col_2\" AS \"b\" FROM (SELECT a AS \"__ember_col_1\", b AS \"__ember_col_2\", CASE WHEN array_has((SELECT array_agg(__ember_in.v) FROM (SELECT 1) AS __ember_in (v)), a) THEN 0 END AS \"__ember_order_1\" FROM t) AS __ember_sorted ORDER BY \"__ember_order_1\", \"__ember_col_2\" LIMIT 5"
        );
        // Constant bounds: DataFusion's streaming table function.
        assert_eq!(
            rewritten("SELECT g.value FROM generate_series(1, 10) g"),
            "SELECT g.value FROM generate_series(1, 10) g"
        );
    }

    #[test]
    fn unqualified_catalogs_and_empty_subqueries() {
        assert_eq!(
            rewritten(
                "SELECT (SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid), x::regtype, 'temperature'::regclass FROM pg_attribute a"
            ),
            format!(
                "SELECT NULL, format_type(x, NULL), {} FROM pg_catalog.pg_attribute a",
                super::pg_catalog::table_oid("temperature")
            )
        );
    }
}
