//! The engine interface: all SQL hubforge runs goes through it, so that another
//! engine can be added behind the same interface. Embedded DuckDB is the
//! implementation.

pub mod dialect;
pub mod duckdb;
#[cfg(feature = "spark")]
pub mod spark;

pub use dialect::Dialect;

use crate::error::Result;
use crate::interval::Interval;

/// A value read back from the engine. Queries cast anything else (dates,
/// decimals, huge integers) to text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) => Some(*f as i64),
            Value::Text(s) => s.parse().ok(),
            Value::Bool(b) => Some(*b as i64),
            Value::Null => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Text form of any non-null value.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Text(s) => Some(s.clone()),
        }
    }
}

/// The result of a query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A database engine holding the warehouse.
pub trait Engine: Send + Sync {
    /// A new session for one thread of work; sessions see each other's commits.
    fn session(&self) -> Result<Box<dyn Session>>;
    /// Stop every statement running in any session (Ctrl-C).
    fn interrupt(&self);
}

/// One connection to the engine.
pub trait Session: Send {
    /// Run one or more statements.
    fn execute(&self, sql: &str) -> Result<()>;
    /// Run a query and read back all rows.
    fn query(&self, sql: &str) -> Result<Rows>;
}

/// With `HUBFORGE_TRACE_SQL` set, every statement an engine runs is printed
/// to stderr with its duration when it ends: where a slow command spends its
/// time, statement by statement (`HUBFORGE_TRACE_SQL=full`: whole statements).
pub(crate) struct Trace<'a> {
    sql: &'a str,
    started: std::time::Instant,
}

/// `HUBFORGE_TRACE_SQL`: unset, or the statements' first 120 characters, or
/// (`full`) whole statements.
fn trace_width() -> Option<usize> {
    static WIDTH: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *WIDTH.get_or_init(|| {
        std::env::var("HUBFORGE_TRACE_SQL")
            .ok()
            .map(|v| if v == "full" { usize::MAX } else { 120 })
    })
}

impl<'a> Trace<'a> {
    pub(crate) fn start(sql: &'a str) -> Option<Self> {
        trace_width().map(|_| Trace {
            sql,
            started: std::time::Instant::now(),
        })
    }
}

impl Drop for Trace<'_> {
    fn drop(&mut self) {
        let text: String = self.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = text.chars().take(trace_width().unwrap_or(120)).collect();
        eprintln!(
            "sql: {:8.2} ms {short}",
            self.started.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// A SQL string literal.
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A TIMESTAMP literal.
pub fn ts_literal(t: chrono::NaiveDateTime) -> String {
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S"))
}

/// `column` lies in the half-open `interval`: the one predicate every time
/// window is written with (batches, their checks, replacements, metrics).
/// `qualifier` names the relation the column belongs to, when one must.
pub fn window_predicate(qualifier: Option<&str>, column: &str, interval: &Interval) -> String {
    Dialect::DuckDb.in_window(qualifier, column, interval)
}

/// `statements` as one transaction.
pub fn transaction_sql(statements: &[String]) -> String {
    format!("BEGIN TRANSACTION;\n{}\nCOMMIT;", statements.join("\n"))
}

/// Run `statements` in one transaction, rolled back if one fails.
pub fn in_transaction(s: &dyn Session, statements: &[String]) -> Result<()> {
    s.execute(&transaction_sql(statements)).inspect_err(|_| {
        let _ = s.execute("ROLLBACK");
    })
}

/// Whether a table or view exists, by looking its name up: listing
/// `information_schema.tables` reads the whole catalog, a tenth of a second
/// in a warehouse of 10,000 models. Not for use inside a transaction (the
/// failed lookup of a missing relation would abort it).
pub fn relation_exists(s: &dyn Session, qualified: &str) -> bool {
    s.query(&format!("SELECT 1 FROM {qualified} LIMIT 0"))
        .is_ok()
}

/// A SQL identifier, always quoted.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
