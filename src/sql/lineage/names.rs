//! The names DuckDB gives unaliased select items, for the common expressions: a column is
//! named after itself, other expressions after DuckDB's own printing of them
//! (`(amount * 2)`, `CAST(id AS INTEGER)`, `count_star()`). Anything else gets sqlparser's
//! rendering, which may differ from DuckDB's; models should alias such columns.

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, UnaryOperator, Value,
};

use super::expr::function_name;

/// Function names DuckDB prints quoted because they are keywords.
const QUOTED_FUNCTIONS: &[&str] = &[
    "day",
    "first",
    "hour",
    "if",
    "last",
    "left",
    "minute",
    "month",
    "nullif",
    "overlay",
    "position",
    "replace",
    "right",
    "second",
    "substring",
    "trim",
    "year",
];

/// The output name of an unaliased select item, lowercased.
pub(super) fn expr_name(e: &Expr) -> String {
    let name = match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(ids) => ids.last().map(|i| i.value.clone()).unwrap_or_default(),
        Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.last() {
            Some(sqlparser::ast::AccessExpr::Dot(Expr::Identifier(i))) => i.value.clone(),
            _ => e.to_string(),
        },
        _ => duckdb_text(e).unwrap_or_else(|| e.to_string()),
    };
    name.to_lowercase()
}

/// DuckDB's printing of `e`, when it is one of the forms this knows.
fn duckdb_text(e: &Expr) -> Option<String> {
    Some(match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(ids) => ids
            .iter()
            .map(|i| i.value.as_str())
            .collect::<Vec<_>>()
            .join("."),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Boolean(b) => b.to_string(),
            Value::Null => "NULL".to_string(),
            _ => return None,
        },
        Expr::Nested(inner) => duckdb_text(inner)?,
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::NotEq => "!=".to_string(),
                other => other.to_string(),
            };
            format!("({} {op} {})", duckdb_text(left)?, duckdb_text(right)?)
        }
        Expr::UnaryOp { op, expr } => match (op, &**expr) {
            (UnaryOperator::Minus, Expr::Value(_)) => format!("-{}", duckdb_text(expr)?),
            (UnaryOperator::Minus, _) => format!("(-({}))", duckdb_text(expr)?),
            (UnaryOperator::Not, _) => format!("(NOT {})", duckdb_text(expr)?),
            _ => return None,
        },
        Expr::IsNull(x) => format!("({} IS NULL)", duckdb_text(x)?),
        Expr::IsNotNull(x) => format!("({} IS NOT NULL)", duckdb_text(x)?),
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => format!(
            "({} BETWEEN {} AND {})",
            duckdb_text(expr)?,
            duckdb_text(low)?,
            duckdb_text(high)?
        ),
        Expr::Cast {
            kind,
            expr,
            data_type,
            format: None,
        } => {
            let cast = match kind {
                CastKind::Cast | CastKind::DoubleColon => "CAST",
                CastKind::TryCast => "TRY_CAST",
                _ => return None,
            };
            format!(
                "{cast}({} AS {})",
                duckdb_text(expr)?,
                duckdb_type(data_type)
            )
        }
        Expr::Function(f)
            if f.over.is_none()
                && f.filter.is_none()
                && f.null_treatment.is_none()
                && f.within_group.is_empty()
                && matches!(f.parameters, FunctionArguments::None) =>
        {
            let name = function_name(&f.name);
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            if !list.clauses.is_empty() {
                return None;
            }
            let distinct = match list.duplicate_treatment {
                None => "",
                Some(DuplicateTreatment::Distinct) => "DISTINCT ",
                Some(DuplicateTreatment::All) => return None,
            };
            if name == "count"
                && matches!(
                    list.args.as_slice(),
                    [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
                )
            {
                return Some("count_star()".to_string());
            }
            let args = list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => duckdb_text(x),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?
                .join(", ");
            let name = match name.as_str() {
                "coalesce" | "ifnull" => "COALESCE".to_string(),
                n if QUOTED_FUNCTIONS.contains(&n) => format!("\"{n}\""),
                n => n.to_string(),
            };
            format!("{name}({distinct}{args})")
        }
        _ => return None,
    })
}

fn duckdb_type(t: &DataType) -> String {
    match t {
        DataType::Int(None) => "INTEGER".to_string(),
        other => other.to_string().replace(',', ", "),
    }
}
