//! Models are written in DuckDB's dialect, the one `check` parses and users
//! know; on the Spark engine they run as Spark SQL. This translation rewrites
//! the syntax tree of a rendered model where the two dialects differ, and
//! refuses, with the position of the construct, what it cannot translate
//! exactly, so that `check --engine spark` reports it before any build runs.
//!
//! Identifiers quoted with `"` are quoted with backticks; `x::T` becomes
//! `CAST(x AS T)`, with DuckDB's type names mapped to Spark's; list and struct
//! literals become `array(...)` and `named_struct(...)`; string literals with a
//! quote or a backslash are spelled with `char()` (Spark would read `''` as two
//! adjacent literals and a backslash as an escape); DuckDB-only functions with
//! an exact Spark equivalent are renamed or rewritten; `range(a, b, step)` in
//! FROM becomes `explode()` of a filtered `sequence()`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, SelectFlavor, SelectItem, Spanned, TableFactor, Value, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::{DatabricksDialect, DuckDbDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Span;

/// A construct with no exact Spark SQL equivalent, at its position in the SQL
/// given (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    pub message: String,
    pub line: u64,
    pub column: u64,
}

/// `sql`, a DuckDB query, as Spark SQL; or everything in it that cannot be
/// translated.
pub fn to_spark(sql: &str) -> Result<String, Vec<Untranslatable>> {
    let mut statements = Parser::parse_sql(&DuckDbDialect {}, sql).map_err(|e| {
        vec![Untranslatable {
            message: format!("the SQL does not parse: {e}"),
            line: 1,
            column: 1,
        }]
    })?;
    let mut t = Translator::default();
    for s in &mut statements {
        let _ = s.visit(&mut t);
    }
    if t.problems.is_empty() {
        Ok(statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n"))
    } else {
        t.problems.sort_by_key(|p| (p.line, p.column));
        t.problems.dedup();
        Err(t.problems)
    }
}

/// A DuckDB column type (as `duckdb_columns()` spells it) as Spark SQL spells
/// it, or `None` when Spark has no exact equivalent.
pub fn spark_type(duckdb_type: &str) -> Option<String> {
    let mut ty = Parser::new(&DuckDbDialect {})
        .try_with_sql(duckdb_type)
        .and_then(|mut p| p.parse_data_type())
        .ok()?;
    let mut t = Translator::default();
    t.data_type(Span::empty(), &mut ty);
    if !t.problems.is_empty() {
        return None;
    }
    let text = ty.to_string();
    // Types DuckDB has and Spark lacks (TIME, INTERVAL, nested types) are
    // not read from sources on Spark.
    let known = [
        "STRING",
        "BIGINT",
        "INT",
        "SMALLINT",
        "TINYINT",
        "DOUBLE",
        "FLOAT",
        "BOOLEAN",
        "DATE",
        "TIMESTAMP",
    ];
    (known.contains(&text.as_str()) || text.starts_with("DECIMAL")).then_some(text)
}

/// The DuckDB name of a type Spark describes a column with (`DESCRIBE`): how
/// hubforge records the schema of a table source Spark holds. Types without a
/// DuckDB name of their own keep Spark's.
pub fn duckdb_type(spark_type: &str) -> String {
    let t = spark_type.trim().to_ascii_lowercase();
    let name = match t.as_str() {
        "string" => "VARCHAR",
        "bigint" | "long" => "BIGINT",
        "int" | "integer" => "INTEGER",
        "smallint" | "short" => "SMALLINT",
        "tinyint" | "byte" => "TINYINT",
        "double" => "DOUBLE",
        "float" | "real" => "FLOAT",
        "boolean" => "BOOLEAN",
        "date" => "DATE",
        "timestamp" | "timestamp_ltz" | "timestamp_ntz" => "TIMESTAMP",
        "binary" => "BLOB",
        _ if t.starts_with("varchar") || t.starts_with("char") => "VARCHAR",
        _ => return t.to_uppercase(),
    };
    name.to_string()
}

/// DuckDB functions with no Spark equivalent this translation knows.
const UNKNOWN: &[&str] = &[
    "read_csv",
    "read_csv_auto",
    "read_parquet",
    "read_json",
    "read_json_auto",
    "columns",
    "struct_pack",
    "list_transform",
    "list_filter",
    "string_split",
    "str_split",
    "regexp_split_to_array",
];

fn unknown(name: &str) -> String {
    format!("{name}() has no Spark SQL equivalent this translation knows")
}

#[derive(Default)]
struct Translator {
    problems: Vec<Untranslatable>,
}

/// An expression written in Spark SQL (the translated parts of the tree
/// printed and parsed again by a dialect that reads backticks and lambdas).
fn spark_expr(text: &str) -> Expr {
    Parser::new(&DatabricksDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|e| panic!("a translation wrote SQL that does not parse: {text}: {e}"))
}

/// `name(args...)`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    let mut e = spark_expr(&format!("{name}()"));
    if let Expr::Function(f) = &mut e
        && let FunctionArguments::List(list) = &mut f.args
    {
        list.args = args
            .into_iter()
            .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
            .collect();
    }
    e
}

fn string(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_string()).with_empty_span())
}

/// The positional arguments of a call, when all are plain expressions.
fn plain_args(f: &ast::Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &f.args else {
        return Some(Vec::new());
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The day of the week counted from Sunday = 0, as DuckDB counts it.
fn day_of_week(e: &Expr) -> Expr {
    spark_expr(&format!("(dayofweek({e}) - 1)"))
}

/// The ISO day of the week (Monday = 1 to Sunday = 7).
fn iso_day_of_week(e: &Expr) -> Expr {
    spark_expr(&format!("(weekday({e}) + 1)"))
}

/// Whether an expression is a list by its form (a literal or constructor).
fn is_list(e: &Expr) -> bool {
    match e {
        Expr::Array(_) => true,
        Expr::Function(f) => matches!(
            f.name.to_string().to_lowercase().as_str(),
            "array" | "list_value" | "list_pack"
        ),
        _ => false,
    }
}

fn literal_text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// A `strftime` format as a Java date-time pattern: None when it uses a
/// specifier with no exact equivalent.
pub fn java_format(fmt: &str) -> Option<String> {
    let mut out = String::new();
    let mut literal = String::new();
    let flush = |out: &mut String, literal: &mut String| {
        if !literal.is_empty() {
            if literal
                .chars()
                .all(|c| !c.is_ascii_alphabetic() && c != '\'')
            {
                out.push_str(literal);
            } else {
                out.push('\'');
                out.push_str(&literal.replace('\'', "''"));
                out.push('\'');
            }
            literal.clear();
        }
    };
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let pattern = match chars.next()? {
            'Y' => "yyyy",
            'y' => "yy",
            'm' => "MM",
            'd' => "dd",
            'H' => "HH",
            'I' => "hh",
            'M' => "mm",
            'S' => "ss",
            'p' => "a",
            'b' => "MMM",
            'B' => "MMMM",
            'a' => "EEE",
            'A' => "EEEE",
            'j' => "DDD",
            '%' => {
                literal.push('%');
                continue;
            }
            _ => return None,
        };
        flush(&mut out, &mut literal);
        out.push_str(pattern);
    }
    flush(&mut out, &mut literal);
    Some(out)
}

impl Translator {
    fn refuse(&mut self, span: Span, message: String) {
        self.problems.push(Untranslatable {
            message,
            line: span.start.line.max(1),
            column: span.start.column.max(1),
        });
    }

    fn data_type(&mut self, at: Span, ty: &mut DataType) {
        let mapped = match ty {
            DataType::Varchar(_)
            | DataType::Text
            | DataType::String(_)
            | DataType::Char(_)
            | DataType::CharVarying(_)
            | DataType::CharacterVarying(_)
            | DataType::Nvarchar(_)
            | DataType::Uuid => Some(DataType::String(None)),
            DataType::HugeInt => Some(DataType::Decimal(ast::ExactNumberInfo::PrecisionAndScale(
                38, 0,
            ))),
            DataType::UBigInt | DataType::UInt64 => Some(DataType::Decimal(
                ast::ExactNumberInfo::PrecisionAndScale(20, 0),
            )),
            DataType::UInt32 | DataType::IntUnsigned(_) | DataType::IntegerUnsigned(_) => {
                Some(DataType::BigInt(None))
            }
            DataType::Integer(_) | DataType::Int4(_) => Some(DataType::Int(None)),
            DataType::Int8(_) => Some(DataType::BigInt(None)),
            DataType::Int2(_) => Some(DataType::SmallInt(None)),
            DataType::Float8 | DataType::DoublePrecision => {
                Some(DataType::Double(ast::ExactNumberInfo::None))
            }
            DataType::Float4 | DataType::Real => Some(DataType::Float(ast::ExactNumberInfo::None)),
            DataType::Bool => Some(DataType::Boolean),
            DataType::Custom(name, _) => {
                let n = name.to_string().to_uppercase();
                self.refuse(at, format!("the type {n} has no Spark SQL equivalent"));
                None
            }
            _ => None,
        };
        if let Some(m) = mapped {
            *ty = m;
        }
    }

    /// A function call in place: renamed or rewritten, or refused.
    fn function(&mut self, e: &mut Expr) {
        let Expr::Function(f) = &*e else { return };
        let name = f.name.to_string().to_lowercase();
        let args = plain_args(f);
        let replacement = match (name.as_str(), args) {
            ("list_value" | "list_pack", Some(args)) => Some(call("array", args)),
            ("today", Some(args)) if args.is_empty() => Some(spark_expr("current_date()")),
            ("now" | "get_current_timestamp", Some(args)) if args.is_empty() => {
                Some(spark_expr("current_timestamp()"))
            }
            ("regexp_matches", Some(args)) if args.len() == 2 => Some(call("regexp_like", args)),
            // In a select list, both make a row per element.
            ("unnest", Some(args)) if args.len() == 1 => Some(call("explode", args)),
            ("strlen", Some(args)) => Some(call("octet_length", args)),
            ("epoch", Some(args)) if args.len() == 1 => Some(spark_expr(&format!(
                "(unix_micros(CAST({} AS TIMESTAMP)) / 1e6)",
                args[0]
            ))),
            ("strftime", Some(args)) if args.len() == 2 => {
                self.formatted(e.span(), "strftime", "date_format", &args)
            }
            ("date_diff" | "datediff", Some(args)) if args.len() == 3 => {
                match literal_text(&args[0]).map(str::to_lowercase).as_deref() {
                    Some("day" | "days" | "d") => {
                        Some(call("datediff", vec![args[2].clone(), args[1].clone()]))
                    }
                    _ => {
                        self.refuse(
                            e.span(),
                            "date_diff counts the unit's boundaries crossed, Spark's timestampdiff \
                             whole units: only date_diff('day', a, b) translates"
                                .to_string(),
                        );
                        None
                    }
                }
            }
            ("list_contains" | "list_has" | "array_contains" | "array_has", Some(args))
                if args.len() == 2 =>
            {
                Some(call("array_contains", args))
            }
            ("arg_max" | "argmax" | "max_by", Some(args)) if args.len() == 2 => {
                Some(call("max_by", args))
            }
            ("arg_min" | "argmin" | "min_by", Some(args)) if args.len() == 2 => {
                Some(call("min_by", args))
            }
            ("starts_with", Some(args)) if args.len() == 2 => Some(call("startswith", args)),
            ("ends_with", Some(args)) if args.len() == 2 => Some(call("endswith", args)),
            // Both count from 1 and give 0 when the text is not there.
            ("strpos" | "instr", Some(args)) if args.len() == 2 => Some(call("instr", args)),
            ("strptime", Some(args)) if args.len() == 2 => {
                self.formatted(e.span(), "strptime", "to_timestamp", &args)
            }
            // DuckDB counts the days of the week from Sunday = 0, Spark from 1.
            ("dayofweek" | "weekday", Some(args)) if args.len() == 1 => Some(day_of_week(&args[0])),
            ("isodow", Some(args)) if args.len() == 1 => Some(iso_day_of_week(&args[0])),
            ("date_part" | "datepart", Some(args)) if args.len() == 2 => {
                match literal_text(&args[0]).map(str::to_lowercase).as_deref() {
                    Some("dow" | "dayofweek" | "weekday") => Some(day_of_week(&args[1])),
                    Some("isodow") => Some(iso_day_of_week(&args[1])),
                    _ => None,
                }
            }
            ("regexp_replace", Some(args)) => self.regexp_replace(e.span(), &args),
            // DuckDB's concat skips NULLs (and casts to text); Spark's gives
            // NULL. Lists are concatenated alike.
            ("concat", Some(args)) if !args.iter().any(is_list) => Some(call(
                "concat",
                args.iter()
                    .map(|a| spark_expr(&format!("coalesce(CAST({a} AS STRING), '')")))
                    .collect(),
            )),
            (name, _) if UNKNOWN.contains(&name) => {
                self.refuse(e.span(), unknown(name));
                None
            }
            _ => None,
        };
        if let Some(r) = replacement {
            *e = r;
        }
    }

    /// `strftime`/`strptime(value, format)` as Spark's `spark(value, pattern)`
    /// with the format as a Java pattern, or refused.
    fn formatted(&mut self, at: Span, duck: &str, spark: &str, args: &[Expr]) -> Option<Expr> {
        match literal_text(&args[1]).and_then(java_format) {
            Some(pattern) => Some(call(spark, vec![args[0].clone(), string(&pattern)])),
            None => {
                self.refuse(
                    at,
                    format!(
                        "{duck} with this format has no exact Spark equivalent: use a literal \
                         format of %Y %m %d %H %M %S and text"
                    ),
                );
                None
            }
        }
    }

    /// `regexp_replace`: DuckDB replaces the first match unless told `'g'`,
    /// Spark every match; backreferences are spelled differently.
    fn regexp_replace(&mut self, at: Span, args: &[Expr]) -> Option<Expr> {
        let problem = match args {
            [_, _, _] => Some(
                "regexp_replace replaces only the first match on DuckDB and every match on \
                 Spark: pass 'g' to replace every match",
            ),
            [_, _, _, options] if literal_text(options) != Some("g") => {
                Some("regexp_replace's options other than 'g' have no Spark SQL equivalent")
            }
            [_, _, replacement, _]
                if literal_text(replacement).is_none_or(|r| r.contains(['\\', '$'])) =>
            {
                Some(
                    "regexp_replace with a replacement other than a literal without \\ or $ \
                     (backreferences are spelled differently on Spark)",
                )
            }
            [_, _, _, _] => None,
            _ => return None,
        };
        match problem {
            Some(p) => {
                self.refuse(at, p.to_string());
                None
            }
            None => Some(call("regexp_replace", args[..3].to_vec())),
        }
    }

    /// `range(...)` in FROM: the rows of `explode()` over a `sequence()` cut
    /// to DuckDB's exclusive end (Spark's `sequence` includes it, and fails
    /// where DuckDB's range is empty).
    fn range(&mut self, tf: &mut TableFactor) {
        let TableFactor::Table {
            name, args, alias, ..
        } = tf
        else {
            return;
        };
        let Some(table_args) = args else { return };
        let fname = name.to_string().to_lowercase();
        if UNKNOWN.contains(&fname.as_str()) {
            self.refuse(name.span(), unknown(&fname));
            return;
        }
        if fname != "range" && fname != "generate_series" {
            return;
        }
        let plain: Option<Vec<String>> = table_args
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.to_string()),
                _ => None,
            })
            .collect();
        let Some(plain) = plain else {
            self.refuse(name.span(), format!("{fname}() with named arguments"));
            return;
        };
        let (start, end, step) = match plain.as_slice() {
            [end] => ("0".to_string(), end.clone(), "1".to_string()),
            [start, end] => (start.clone(), end.clone(), "1".to_string()),
            [start, end, step] => (start.clone(), end.clone(), step.clone()),
            _ => {
                self.refuse(
                    name.span(),
                    format!("{fname}() with {} arguments", plain.len()),
                );
                return;
            }
        };
        // generate_series includes its end, as sequence does.
        let keep = if fname == "range" { "<" } else { "<=" };
        let array = format!(
            "filter(sequence({start}, greatest({start}, {end}), {step}), hubforge_x -> hubforge_x {keep} {end})"
        );
        let mut new_name = ast::ObjectName::from(vec![Ident::new("explode")]);
        std::mem::swap(name, &mut new_name);
        table_args.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(spark_expr(
            &array,
        )))];
        let column = || ast::TableAliasColumnDef::from_name(fname.clone());
        match alias {
            Some(a) if a.columns.is_empty() => {
                a.columns = vec![column()];
            }
            Some(_) => {}
            None => {
                *alias = Some(ast::TableAlias {
                    explicit: true,
                    name: Ident::new(fname.clone()),
                    columns: vec![column()],
                    at: None,
                });
            }
        }
    }
}

impl VisitorMut for Translator {
    type Break = ();

    fn pre_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<()> {
        if ident.quote_style == Some('"') {
            ident.quote_style = Some('`');
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        // An escape character must stay a literal: in Spark's spelling.
        if let Expr::Like { escape_char, .. } | Expr::ILike { escape_char, .. } = e
            && let Some(escape) = escape_char
            && let Some(c) = literal_text(escape)
        {
            let spark = format!("'{}'", c.replace('\\', "\\\\").replace('\'', "\\'"));
            **escape = Expr::Value(Value::Placeholder(spark).with_empty_span());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        match e {
            Expr::Cast { .. } => {
                let span = e.span();
                if let Expr::Cast {
                    kind, data_type, ..
                } = e
                {
                    if *kind == CastKind::DoubleColon {
                        *kind = CastKind::Cast;
                    }
                    self.data_type(span, data_type);
                }
            }
            Expr::Array(array) => {
                let elems = std::mem::take(&mut array.elem);
                *e = call("array", elems);
            }
            Expr::Dictionary(fields) => {
                let args = fields
                    .iter()
                    .flat_map(|f| [string(&f.key.value), (*f.value).clone()])
                    .collect();
                *e = call("named_struct", args);
            }
            Expr::Value(v) => {
                if let Value::SingleQuotedString(s) = &v.value
                    && s.contains(['\'', '\\'])
                {
                    let mut parts = Vec::new();
                    let mut piece = String::new();
                    for c in s.chars() {
                        match c {
                            '\'' | '\\' => {
                                if !piece.is_empty() {
                                    parts.push(string(&std::mem::take(&mut piece)));
                                }
                                parts.push(spark_expr(&format!("char({})", c as u32)));
                            }
                            other => piece.push(other),
                        }
                    }
                    if !piece.is_empty() {
                        parts.push(string(&piece));
                    }
                    *e = call("concat", parts);
                }
            }
            Expr::BinaryOp { op, .. } if *op == BinaryOperator::DuckIntegerDivide => {
                *op = BinaryOperator::MyIntegerDivide;
            }
            // A date plus or minus an interval is a TIMESTAMP on DuckDB and
            // a DATE on Spark (a timestamp stays one on both).
            Expr::BinaryOp { left, op, right }
                if matches!(op, BinaryOperator::Plus | BinaryOperator::Minus)
                    && (matches!(**left, Expr::Interval(_))
                        || matches!(**right, Expr::Interval(_))) =>
            {
                *e = spark_expr(&format!("CAST(({e}) AS TIMESTAMP)"));
            }
            Expr::Extract { field, expr, .. } => match field {
                ast::DateTimeField::Dow | ast::DateTimeField::DayOfWeek => {
                    *e = day_of_week(expr);
                }
                ast::DateTimeField::Isodow => *e = iso_day_of_week(expr),
                _ => {}
            },
            Expr::Function(_) => self.function(e),
            Expr::CompoundFieldAccess { root, access_chain } => {
                // DuckDB's lists count from 1, Spark's `[]` from 0: element_at
                // counts from 1. A text key (a map's or struct's) reads alike.
                let mut out = (**root).clone();
                for access in access_chain.iter() {
                    match access {
                        ast::AccessExpr::Subscript(ast::Subscript::Index { index })
                            if literal_text(index).is_none() =>
                        {
                            out = call("element_at", vec![out, index.clone()]);
                        }
                        ast::AccessExpr::Subscript(ast::Subscript::Slice { .. }) => {
                            self.refuse(
                                e.span(),
                                "list slices have no Spark SQL equivalent: use slice()".to_string(),
                            );
                            return ControlFlow::Continue(());
                        }
                        other => {
                            out = Expr::CompoundFieldAccess {
                                root: Box::new(out),
                                access_chain: vec![other.clone()],
                            };
                        }
                    }
                }
                *e = out;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        if let Some(q) = &select.qualify {
            self.refuse(
                q.span(),
                "Spark has no QUALIFY: compute the window function in a subquery and filter \
                 on it outside"
                    .to_string(),
            );
        }
        match select.flavor {
            SelectFlavor::Standard => {}
            SelectFlavor::FromFirst => select.flavor = SelectFlavor::Standard,
            SelectFlavor::FromFirstNoSelect => {
                select.flavor = SelectFlavor::Standard;
                select.projection = vec![SelectItem::Wildcard(Default::default())];
            }
        }
        for item in &mut select.projection {
            if let SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options) = item
            {
                if let Some(exclude) = options.opt_exclude.take() {
                    let names: Vec<Ident> = match exclude {
                        ast::ExcludeSelectItem::Single(n) => vec![last_ident(&n)],
                        ast::ExcludeSelectItem::Multiple(ns) => ns.iter().map(last_ident).collect(),
                    };
                    let mut names = names.into_iter();
                    if let Some(first) = names.next() {
                        options.opt_except = Some(ast::ExceptSelectItem {
                            first_element: first,
                            additional_elements: names.collect(),
                        });
                    }
                }
                if let Some(r) = &options.opt_replace {
                    let r = r.clone();
                    self.refuse(
                        options.wildcard_token.0.span,
                        format!("SELECT * {r} has no Spark SQL equivalent: list the columns"),
                    );
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        self.range(tf);
        ControlFlow::Continue(())
    }
}

fn last_ident(name: &ast::ObjectName) -> Ident {
    match name.0.last() {
        Some(ast::ObjectNamePart::Identifier(i)) => i.clone(),
        _ => Ident::new(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spark(sql: &str) -> String {
        to_spark(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    #[test]
    fn source_column_types_map_to_spark_types() {
        for (duck, spark) in [
            ("BIGINT", Some("BIGINT")),
            ("INTEGER", Some("INT")),
            ("VARCHAR", Some("STRING")),
            ("DOUBLE", Some("DOUBLE")),
            ("TIMESTAMP", Some("TIMESTAMP")),
            ("DATE", Some("DATE")),
            ("BOOLEAN", Some("BOOLEAN")),
            ("DECIMAL(18,3)", Some("DECIMAL(18,3)")),
            ("HUGEINT", Some("DECIMAL(38,0)")),
            ("TIME", None),
            ("INTERVAL", None),
        ] {
            assert_eq!(super::spark_type(duck).as_deref(), spark, "{duck}");
        }
    }

    #[test]
    fn spark_column_types_read_back_as_duckdb_names_them() {
        for (spark, duck) in [
            ("bigint", "BIGINT"),
            ("int", "INTEGER"),
            ("string", "VARCHAR"),
            ("varchar(20)", "VARCHAR"),
            ("timestamp", "TIMESTAMP"),
            ("timestamp_ntz", "TIMESTAMP"),
            ("decimal(18,3)", "DECIMAL(18,3)"),
            ("array<int>", "ARRAY<INT>"),
        ] {
            assert_eq!(super::duckdb_type(spark), duck, "{spark}");
        }
        // What a source's types map to on Spark maps back to the same type.
        for duck in ["BIGINT", "INTEGER", "VARCHAR", "DOUBLE", "DATE", "BOOLEAN"] {
            let there = super::spark_type(duck).unwrap();
            assert_eq!(super::duckdb_type(&there), duck);
        }
    }

    #[test]
    fn translates_what_the_dialects_spell_apart() {
        let cases = [
            ("SELECT \"Order Id\" FROM t", "SELECT `Order Id` FROM t"),
            (
                "SELECT unnest(['a', 'b']) AS unit",
                "SELECT explode(array('a', 'b')) AS unit",
            ),
            (
                "SELECT x::DOUBLE, y::VARCHAR FROM t",
                "SELECT CAST(x AS DOUBLE), CAST(y AS STRING) FROM t",
            ),
            (
                "SELECT CAST(a AS INTEGER), CAST(b AS HUGEINT) FROM t",
                "SELECT CAST(a AS INT), CAST(b AS DECIMAL(38,0)) FROM t",
            ),
            (
                "SELECT [1, 2, 3], list_value(4, 5)",
                "SELECT array(1, 2, 3), array(4, 5)",
            ),
            (
                "SELECT {'a': 1, 'b': 'x'}",
                "SELECT named_struct('a', 1, 'b', 'x')",
            ),
            (
                "SELECT 'it''s', 'a\\b'",
                "SELECT concat('it', char(39), 's'), concat('a', char(92), 'b')",
            ),
            (
                "SELECT strftime(d, '%Y-%m') FROM t",
                "SELECT date_format(d, 'yyyy-MM') FROM t",
            ),
            (
                "SELECT strftime(d, '%d week %H') FROM t",
                "SELECT date_format(d, 'dd'' week ''HH') FROM t",
            ),
            (
                "SELECT date_diff('day', a, b) FROM t",
                "SELECT datediff(b, a) FROM t",
            ),
            ("SELECT 7 // 2", "SELECT 7 DIV 2"),
            (
                "SELECT l[2], m['k'] FROM t",
                "SELECT element_at(l, 2), m['k'] FROM t",
            ),
            (
                "SELECT * EXCLUDE (a, b) FROM t",
                "SELECT * EXCEPT (a, b) FROM t",
            ),
            ("FROM t SELECT a", "SELECT a FROM t"),
            (
                "SELECT regexp_matches(s, 'x+') FROM t",
                "SELECT regexp_like(s, 'x+') FROM t",
            ),
            (
                "SELECT d FROM range(TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-08 00:00:00', INTERVAL 1 DAY) AS t(d)",
                "SELECT d FROM explode(filter(sequence(TIMESTAMP '2024-01-01 00:00:00', greatest(TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-08 00:00:00'), INTERVAL 1 DAY), hubforge_x -> hubforge_x < TIMESTAMP '2024-01-08 00:00:00')) AS t (d)",
            ),
            (
                "SELECT * FROM range(3)",
                "SELECT * FROM explode(filter(sequence(0, greatest(0, 3), 1), hubforge_x -> hubforge_x < 3)) AS range (range)",
            ),
        ];
        for (duck, expected) in cases {
            assert_eq!(spark(duck), expected, "{duck}");
        }
    }

    #[test]
    fn what_has_no_equivalent_is_refused_where_it_is() {
        let err =
            to_spark("SELECT a,\n  row_number() OVER (PARTITION BY a) AS n\nFROM t\nQUALIFY n = 1")
                .unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].message.contains("QUALIFY"), "{err:?}");
        assert_eq!((err[0].line, err[0].column), (4, 9));

        let err =
            to_spark("SELECT strftime(d, '%V'), date_diff('month', a, b)\nFROM read_csv('x.csv')")
                .unwrap_err();
        let messages: Vec<&str> = err.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(err.len(), 3, "{messages:?}");
        assert!(messages[0].contains("strftime"));
        assert!(messages[1].contains("date_diff"));
        assert!(messages[2].contains("read_csv"));
        assert_eq!(err[2].line, 2);

        // What Spark would run, silently, with another result.
        for (sql, says) in [
            ("SELECT regexp_replace(s, 'a', 'b') FROM t", "first match"),
            ("SELECT regexp_replace(s, 'a', 'b', 'gi') FROM t", "options"),
            (
                "SELECT regexp_replace(s, '(a)', '\\1', 'g') FROM t",
                "backreferences",
            ),
            ("SELECT strptime(s, '%V') FROM t", "strptime"),
        ] {
            let err = to_spark(sql).unwrap_err();
            assert!(err[0].message.contains(says), "{sql}: {err:?}");
        }
    }

    #[test]
    fn what_spark_computes_otherwise_is_rewritten_to_duckdbs_result() {
        for (duck, expected) in [
            (
                "SELECT concat(a, NULL, 'b') FROM t",
                "SELECT concat(coalesce(CAST(a AS STRING), ''), coalesce(CAST(NULL AS STRING), ''), \
                 coalesce(CAST('b' AS STRING), '')) FROM t",
            ),
            (
                "SELECT concat([1], [2])",
                "SELECT concat(array(1), array(2))",
            ),
            (
                "SELECT dayofweek(d), extract(dow FROM d), date_part('isodow', d) FROM t",
                "SELECT (dayofweek(d) - 1), (dayofweek(d) - 1), (weekday(d) + 1) FROM t",
            ),
            (
                "SELECT d + INTERVAL 1 DAY FROM t",
                "SELECT CAST((d + INTERVAL 1 DAY) AS TIMESTAMP) FROM t",
            ),
            (
                "SELECT regexp_replace(s, '[0-9]', 'X', 'g') FROM t",
                "SELECT regexp_replace(s, '[0-9]', 'X') FROM t",
            ),
            (
                "SELECT list_contains(l, 2), arg_max(v, t), arg_min(v, t), starts_with(s, 'a'), \
                 ends_with(s, 'b'), strpos(s, 'c') FROM t",
                "SELECT array_contains(l, 2), max_by(v, t), min_by(v, t), startswith(s, 'a'), \
                 endswith(s, 'b'), instr(s, 'c') FROM t",
            ),
            (
                "SELECT strptime(s, '%d/%m/%Y') FROM t",
                "SELECT to_timestamp(s, 'dd/MM/yyyy') FROM t",
            ),
            (
                "SELECT s LIKE 'a\\_c' ESCAPE '\\' FROM t",
                "SELECT s LIKE concat('a', char(92), '_c') ESCAPE '\\\\' FROM t",
            ),
        ] {
            assert_eq!(spark(duck), expected, "{duck}");
        }
    }
}
