//! SQL analysis: parsing a model's SELECT, finding the tables it reads, re-printing it
//! canonically, rewriting its table references, and column-level lineage.
//!
//! This is the only module that touches `sqlparser`: its AST changes between versions,
//! so everything else in hubforge sees the plain types defined here. Walks over the AST
//! use sqlparser's `Visitor` wherever they can, so that new AST variants need no change.
//!
//! ```
//! let q = hubforge::sql::parse_query("WITH o AS (SELECT * FROM Stg_Orders) SELECT id FROM o")?;
//! let deps: Vec<String> = q.table_refs().iter().map(|r| r.name()).collect();
//! assert_eq!(deps, ["stg_orders"]);
//! # Ok::<(), hubforge::sql::SqlError>(())
//! ```

mod lineage;
mod names;
mod position;
mod refs;
mod scan;
pub mod spark;
#[cfg(test)]
mod tests;

use std::fmt;

use sqlparser::ast::{self, SetExpr, Statement};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

pub use lineage::{ColumnLineage, ColumnRef, Lineage, SchemaProvider};
pub use names::{Unscannable, identifier_chains};
pub use scan::{Scanned, scan};

use position::LineIndex;

/// A parsed model query: one SELECT (with CTEs, set operations...) in DuckDB's dialect.
#[derive(Debug, Clone)]
pub struct Query {
    sql: String,
    ast: ast::Query,
    refs: Vec<TableRef>,
}

/// Why a model's SQL could not be used as a query; `line`/`column` are 1-based in the SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub kind: SqlErrorKind,
    pub message: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// The parser rejected the text.
    Syntax,
    /// Only whitespace and comments.
    Empty,
    /// A single statement that is not a query (DDL, DML, ...).
    NotAQuery,
    /// More than one statement.
    MultipleStatements,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for SqlError {}

/// One reference to a table in a query, e.g. `main."Stg_Orders"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// Identifier parts, quotes removed, case as written.
    pub parts: Vec<String>,
    /// 1-based position of the reference's first character.
    pub line: usize,
    pub column: usize,
    /// Byte range of the whole reference text in the SQL, excluding any alias.
    pub start: usize,
    pub end: usize,
    /// The reference has no alias of its own but could take one: columns
    /// qualified by its name (`p.amount`) then name the table itself, so a
    /// rewrite to another relation must keep that name as an alias.
    pub bare: bool,
}

impl TableRef {
    /// The table's name: the last part, lowercased (DuckDB matches identifiers
    /// case-insensitively, quoted or not).
    pub fn name(&self) -> String {
        self.parts
            .last()
            .map(|p| p.to_lowercase())
            .unwrap_or_default()
    }

    /// The schema: the part before the name, lowercased.
    pub fn schema(&self) -> Option<String> {
        let n = self.parts.len();
        (n >= 2).then(|| self.parts[n - 2].to_lowercase())
    }

    /// The reference for messages: its parts joined by `.`, quoted only where needed
    /// (`main.Stg_Orders`, `"my table"`). The verbatim text is `&sql[start..end]`.
    pub fn display(&self) -> String {
        self.parts
            .iter()
            .map(|p| display_ident(p))
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn display_ident(part: &str) -> String {
    let plain = part
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        part.to_string()
    } else {
        format!("\"{}\"", part.replace('"', "\"\""))
    }
}

/// The tokens of `sql`, as `Parser::try_with_sql` makes them, in a buffer
/// sized up front (about one token per three bytes, whitespace included):
/// grown a token at a time, it was copied over and over, a twentieth of the
/// time it takes to load a project.
fn parser_tokens(dialect: &DuckDbDialect, sql: &str) -> Result<Vec<TokenWithSpan>, ParserError> {
    let mut tokens = Vec::with_capacity(sql.len() / 3 + 16);
    Tokenizer::new(dialect, sql).tokenize_with_location_into_buf(&mut tokens)?;
    Ok(tokens)
}

/// Parses `sql` as exactly one query.
pub fn parse_query(sql: &str) -> Result<Query, SqlError> {
    let dialect = DuckDbDialect {};
    let index = LineIndex::new(sql);
    let statements = parser_tokens(&dialect, sql)
        .and_then(|tokens| {
            Parser::new(&dialect)
                .with_tokens_with_locations(tokens)
                .parse_statements()
        })
        .map_err(|e| syntax_error(e, sql))?;

    // Positions of statements come from the tokens: statement spans are not always
    // exact. Only errors need them, so the SQL is tokenized again only then.
    let tokens = || {
        Tokenizer::new(&dialect, sql)
            .tokenize_with_location()
            .unwrap_or_default()
    };
    let mut statements = statements.into_iter();
    let Some(statement) = statements.next() else {
        return Err(SqlError {
            kind: SqlErrorKind::Empty,
            message: "the SQL is empty: expected a SELECT query".to_string(),
            line: 1,
            column: 1,
        });
    };
    if statements.next().is_some() {
        let (line, column) = second_statement_start(&tokens()).unwrap_or((1, 1));
        return Err(SqlError {
            kind: SqlErrorKind::MultipleStatements,
            message: "expected one query, found more than one statement".to_string(),
            line,
            column,
        });
    }
    let ast = match statement {
        Statement::Query(q) if is_plain_query(&q) => *q,
        other => {
            let (line, column) = first_token_start(&tokens()).unwrap_or((1, 1));
            return Err(SqlError {
                kind: SqlErrorKind::NotAQuery,
                message: {
                    let what = describe_statement(&other);
                    let article = if what.starts_with(['A', 'E', 'I', 'O', 'U']) {
                        "an"
                    } else {
                        "a"
                    };
                    format!("expected a SELECT query, found {article} {what}")
                },
                line,
                column,
            });
        }
    };
    let refs = refs::collect(&ast, &index);
    let mut ast = ast;
    normalize_identifiers(&mut ast);
    Ok(Query {
        sql: sql.to_string(),
        ast,
        refs,
    })
}

/// DuckDB matches identifiers case-insensitively, quoted or not, and function
/// names too: `COUNT(*)` and `count(*)`, `Amount` and `"amount"` are the same.
/// Lowercasing every identifier (and dropping quotes a plain name does not need)
/// keeps the canonical form, and so fingerprints and lineage hashes, free of
/// that spelling. References were collected before, with the case as written.
fn normalize_identifiers(ast: &mut ast::Query) {
    use std::ops::ControlFlow;

    use sqlparser::ast::{VisitMut, VisitorMut};

    struct Lower;
    impl VisitorMut for Lower {
        type Break = ();
        fn pre_visit_ident(&mut self, ident: &mut ast::Ident) -> ControlFlow<()> {
            ident.value = ident.value.to_lowercase();
            let plain = ident
                .value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && ident
                    .value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if plain && ident.quote_style == Some('"') {
                ident.quote_style = None;
            }
            ControlFlow::Continue(())
        }
    }
    let _ = ast.visit(&mut Lower);
}

impl Query {
    /// The SQL text this query was parsed from.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Every reference to a table, in source order, one per occurrence. Names of CTEs in
    /// scope and table functions (`read_parquet('x')`, `range(10)`) are not references.
    pub fn table_refs(&self) -> Vec<TableRef> {
        self.refs.clone()
    }

    /// The query re-printed by sqlparser: whitespace, comments and keyword case never
    /// change it.
    pub fn canonical(&self) -> String {
        self.ast.to_string()
    }

    /// The canonical form printed over several lines, for showing diffs.
    pub fn pretty(&self) -> String {
        format!("{:#}", self.ast)
    }

    /// The original SQL with each reference for which `f` returns `Some(text)` replaced
    /// by that text; everything else is byte-identical.
    ///
    /// ```
    /// let q = hubforge::sql::parse_query("SELECT * FROM orders -- orders\n")?;
    /// let staged = q.rewrite_refs(&|r| Some(format!("_stage.{}__v2", r.name())));
    /// // A reference without an alias keeps its name for qualified columns.
    /// assert_eq!(staged, "SELECT * FROM _stage.orders__v2 AS \"orders\" -- orders\n");
    /// # Ok::<(), hubforge::sql::SqlError>(())
    /// ```
    pub fn rewrite_refs(&self, f: &dyn Fn(&TableRef) -> Option<String>) -> String {
        splice_refs(&self.sql, &self.refs, f)
    }

    /// Column-level lineage of the query's output; see [`Lineage`].
    pub fn lineage(&self, schemas: &dyn SchemaProvider) -> Lineage {
        lineage::analyze(self, schemas)
    }
}

/// `sql` with each reference in `refs` (sorted by position) for which `f`
/// returns `Some(text)` replaced by that text; everything else byte-identical.
pub fn splice_refs(
    sql: &str,
    refs: &[TableRef],
    f: &dyn Fn(&TableRef) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for r in refs {
        if r.start < at || r.end <= r.start {
            continue;
        }
        if let Some(new_text) = f(r) {
            out.push_str(&sql[at..r.start]);
            out.push_str(&new_text);
            if r.bare
                && let Some(name) = r.parts.last()
            {
                out.push_str(" AS ");
                out.push_str(&crate::engine::quote_ident(name));
            }
            at = r.end;
        }
    }
    out.push_str(&sql[at..]);
    out
}

/// A `Statement::Query` that only reads: no `WITH ... INSERT`, no `SELECT ... INTO`.
fn is_plain_query(q: &ast::Query) -> bool {
    fn body_reads(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(s) => s.into.is_none(),
            SetExpr::Query(q) => is_plain_query(q),
            SetExpr::SetOperation { left, right, .. } => body_reads(left) && body_reads(right),
            SetExpr::Values(_) | SetExpr::Table(_) => true,
            _ => false,
        }
    }
    body_reads(&q.body)
}

/// "CREATE TABLE statement", "INSERT statement", ... from the statement's leading keywords.
fn describe_statement(statement: &Statement) -> String {
    let text = match statement {
        // `WITH x AS (...) INSERT ...`: name the inner statement.
        Statement::Query(q) => match &*q.body {
            SetExpr::Select(_) => "SELECT INTO".to_string(),
            body => body.to_string(),
        },
        other => other.to_string(),
    };
    let words: Vec<String> = text
        .split_whitespace()
        .take(8)
        .map(|w| w.to_uppercase())
        .collect();
    let Some(first) = words.first() else {
        return "a statement".to_string();
    };
    const OBJECTS: &[&str] = &[
        "TABLE", "VIEW", "SCHEMA", "INDEX", "SEQUENCE", "MACRO", "FUNCTION", "TYPE", "DATABASE",
        "SECRET",
    ];
    if matches!(first.as_str(), "CREATE" | "DROP" | "ALTER")
        && let Some(object) = words[1..].iter().find(|w| OBJECTS.contains(&w.as_str()))
    {
        return format!("{first} {object} statement");
    }
    if first == "SELECT" && words.get(1).is_some_and(|w| w == "INTO") {
        return "SELECT INTO statement".to_string();
    }
    format!("{first} statement")
}

/// Maps a sqlparser error to a `Syntax` error, moving "at Line: X, Column: Y" from the
/// message into the position (errors at the end of the input have no position).
fn syntax_error(e: ParserError, sql: &str) -> SqlError {
    let raw = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "the query is nested too deeply".to_string(),
    };
    let (message, position) = match raw.rfind(" at Line: ") {
        Some(i) => (
            raw[..i].to_string(),
            parse_line_column(&raw[i + " at Line: ".len()..]),
        ),
        None => (raw.clone(), None),
    };
    let (line, column) = position.unwrap_or_else(|| end_position(sql));
    SqlError {
        kind: SqlErrorKind::Syntax,
        message,
        line,
        column,
    }
}

/// Parses "X, Column: Y".
fn parse_line_column(s: &str) -> Option<(usize, usize)> {
    let (line, rest) = s.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// The 1-based position just after the last character.
fn end_position(sql: &str) -> (usize, usize) {
    let line = sql.matches('\n').count() + 1;
    let last = sql.rsplit('\n').next().unwrap_or("");
    (line, last.chars().count() + 1)
}

fn is_trivia(t: &TokenWithSpan) -> bool {
    matches!(t.token, Token::Whitespace(_) | Token::EOF)
}

fn first_token_start(tokens: &[TokenWithSpan]) -> Option<(usize, usize)> {
    let t = tokens.iter().find(|t| !is_trivia(t))?;
    Some((t.span.start.line as usize, t.span.start.column as usize))
}

/// The start of the first token after a `;` that begins another statement.
fn second_statement_start(tokens: &[TokenWithSpan]) -> Option<(usize, usize)> {
    let mut after_semicolon = false;
    for t in tokens.iter().filter(|t| !is_trivia(t)) {
        match t.token {
            Token::SemiColon => after_semicolon = true,
            _ if after_semicolon => {
                return Some((t.span.start.line as usize, t.span.start.column as usize));
            }
            _ => {}
        }
    }
    None
}
