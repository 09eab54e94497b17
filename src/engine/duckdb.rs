//! Embedded DuckDB.

use std::cell::RefCell;

use duckdb::Connection;

/// What DuckDB's own parser says about a query hubforge's parser could not read.
#[derive(Debug, Clone)]
pub struct DuckParse {
    /// DuckDB's serialised AST without source positions: stable under
    /// whitespace, comments and keyword case.
    pub canonical: String,
    /// The tables the query reads (CTE names and table functions excluded), as
    /// identifier parts. DuckDB reports no positions for them.
    pub tables: Vec<crate::sql::TableRef>,
}

thread_local! {
    static PARSER: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

/// Parse `sql` with DuckDB (`json_serialize_sql`), for SQL that DuckDB accepts
/// but hubforge's parser does not. Uses an in-memory database per thread.
pub fn parse_with_duckdb(sql: &str) -> Result<DuckParse, String> {
    PARSER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Connection::open_in_memory().map_err(|e| e.to_string())?);
        }
        let conn = slot.as_ref().expect("connection just opened");
        let json: String = conn
            .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        let mut value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| e.to_string())?;
        if value.get("error").and_then(|e| e.as_bool()) == Some(true) {
            let message = value
                .get("error_message")
                .and_then(|m| m.as_str())
                .unwrap_or("DuckDB could not parse the query");
            return Err(message.to_string());
        }
        let statements = value
            .get("statements")
            .and_then(|s| s.as_array())
            .map_or(0, Vec::len);
        if statements != 1 {
            return Err(format!("expected one SELECT statement, found {statements}"));
        }
        let mut tables = Vec::new();
        collect_tables(&value, &mut Vec::new(), &mut tables);
        strip_locations(&mut value);
        Ok(DuckParse {
            canonical: value.to_string(),
            tables,
        })
    })
}

/// Walk DuckDB's JSON AST: `BASE_TABLE` refs not shadowed by a CTE in scope.
fn collect_tables(
    v: &serde_json::Value,
    scope: &mut Vec<String>,
    out: &mut Vec<crate::sql::TableRef>,
) {
    match v {
        serde_json::Value::Object(map) => {
            let ctes: Vec<String> = map
                .get("cte_map")
                .and_then(|c| c.get("map"))
                .and_then(|m| m.as_array())
                .map(|entries| {
                    entries
                        .iter()
                        .filter_map(|e| {
                            e.get("key").and_then(|k| k.as_str()).map(str::to_lowercase)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let pushed = ctes.len();
            scope.extend(ctes);
            if map.get("type").and_then(|t| t.as_str()) == Some("BASE_TABLE") {
                let part = |k: &str| {
                    map.get(k)
                        .and_then(|x| x.as_str())
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                };
                let parts: Vec<String> = [
                    part("catalog_name"),
                    part("schema_name"),
                    part("table_name"),
                ]
                .into_iter()
                .flatten()
                .collect();
                let shadowed = parts.len() == 1 && scope.contains(&parts[0].to_lowercase());
                if !parts.is_empty() && !shadowed {
                    out.push(crate::sql::TableRef {
                        parts,
                        line: 0,
                        column: 0,
                        start: 0,
                        end: 0,
                        bare: false,
                    });
                }
            }
            for (_, child) in map {
                collect_tables(child, scope, out);
            }
            scope.truncate(scope.len() - pushed);
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_tables(item, scope, out);
            }
        }
        _ => {}
    }
}

fn strip_locations(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove("query_location");
            for (_, child) in map.iter_mut() {
                strip_locations(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_locations),
        _ => {}
    }
}

/// The warehouse in an embedded DuckDB file.
pub struct DuckDbEngine {
    conn: std::sync::Mutex<Connection>,
    interrupts: std::sync::Mutex<Vec<std::sync::Arc<duckdb::InterruptHandle>>>,
}

/// Settings for opening the warehouse.
#[derive(Debug, Clone, Default)]
pub struct DuckDbOptions {
    pub threads: Option<usize>,
    pub memory_limit: Option<String>,
    pub read_only: bool,
}

impl DuckDbEngine {
    /// Open (or create) the warehouse file. A warehouse held by another process
    /// is a clear error, never a wait or a corruption.
    pub fn open(path: &std::path::Path, options: &DuckDbOptions) -> crate::Result<Self> {
        let mut config = duckdb::Config::default();
        let map = |e: duckdb::Error| crate::Error::Engine(e.to_string());
        if let Some(t) = options.threads {
            config = config.threads(t as i64).map_err(map)?;
        }
        if let Some(m) = &options.memory_limit {
            config = config.max_memory(m).map_err(map)?;
        }
        // One checkpoint at the end of a build, not one in the middle of it
        // whenever the write-ahead log passes DuckDB's default 16 MB.
        config = config.with("checkpoint_threshold", "1GB").map_err(map)?;
        config = pinned(config).map_err(map)?;
        if options.read_only {
            config = config
                .access_mode(duckdb::AccessMode::ReadOnly)
                .map_err(map)?;
        }
        let conn = Connection::open_with_flags(path, config).map_err(|e| open_error(path, e))?;
        Ok(DuckDbEngine {
            interrupts: std::sync::Mutex::new(vec![conn.interrupt_handle()]),
            conn: std::sync::Mutex::new(conn),
        })
    }

    /// An in-memory database, for tests and scratch work.
    pub fn in_memory() -> crate::Result<Self> {
        let conn = Connection::open_in_memory_with_flags(pinned(duckdb::Config::default())?)?;
        Ok(DuckDbEngine {
            interrupts: std::sync::Mutex::new(vec![conn.interrupt_handle()]),
            conn: std::sync::Mutex::new(conn),
        })
    }
}

/// Settings every warehouse connection has. Time is UTC: the bundled DuckDB
/// has no ICU extension, so TIMESTAMPTZ values are read and cast in UTC and no
/// session can be in another time zone. Nothing is downloaded: a model that
/// needs an extension that is not built in fails at once with DuckDB's message
/// instead of trying the network (`SET TimeZone` alone would try to fetch ICU).
fn pinned(config: duckdb::Config) -> duckdb::Result<duckdb::Config> {
    config.with("autoinstall_known_extensions", "false")
}

fn open_error(path: &std::path::Path, e: duckdb::Error) -> crate::Error {
    let text = e.to_string();
    if text.contains("Could not set lock") || text.contains("Conflicting lock") {
        let pid = text
            .split("PID ")
            .nth(1)
            .map(|r| {
                r.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .filter(|p| !p.is_empty())
            .map(|p| format!(" (PID {p})"))
            .unwrap_or_default();
        crate::Error::Engine(format!(
            "the warehouse {} is in use by another process{pid}; wait for that run to finish and try again",
            path.display()
        ))
    } else {
        crate::Error::Engine(format!(
            "cannot open the warehouse {}: {text}",
            path.display()
        ))
    }
}

impl super::Engine for DuckDbEngine {
    fn session(&self) -> crate::Result<Box<dyn super::Session>> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_clone()?;
        self.interrupts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn.interrupt_handle());
        Ok(Box::new(DuckDbSession { conn }))
    }

    fn interrupt(&self) {
        for handle in self
            .interrupts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            handle.interrupt();
        }
    }
}

struct DuckDbSession {
    conn: Connection,
}

impl super::Session for DuckDbSession {
    fn execute(&self, sql: &str) -> crate::Result<()> {
        let _trace = super::Trace::start(sql);
        Ok(self.conn.execute_batch(sql)?)
    }

    fn query(&self, sql: &str) -> crate::Result<super::Rows> {
        let _trace = super::Trace::start(sql);
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        let mut out = super::Rows::default();
        let mut width = None;
        while let Some(row) = rows.next()? {
            let stmt_ref = row.as_ref();
            let n = *width.get_or_insert_with(|| stmt_ref.column_count());
            if out.columns.is_empty() {
                out.columns = (0..n)
                    .map(|i| {
                        stmt_ref
                            .column_name(i)
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    })
                    .collect();
            }
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(convert(row.get::<_, duckdb::types::Value>(i)?));
            }
            out.rows.push(values);
        }
        Ok(out)
    }
}

fn convert(v: duckdb::types::Value) -> super::Value {
    use super::Value as V;
    use duckdb::types::Value as D;
    match v {
        D::Null => V::Null,
        D::Boolean(b) => V::Bool(b),
        D::TinyInt(i) => V::Int(i.into()),
        D::SmallInt(i) => V::Int(i.into()),
        D::Int(i) => V::Int(i.into()),
        D::BigInt(i) => V::Int(i),
        D::UTinyInt(i) => V::Int(i.into()),
        D::USmallInt(i) => V::Int(i.into()),
        D::UInt(i) => V::Int(i.into()),
        D::UBigInt(i) => i64::try_from(i).map_or_else(|_| V::Text(i.to_string()), V::Int),
        D::HugeInt(i) => i64::try_from(i).map_or_else(|_| V::Text(i.to_string()), V::Int),
        D::UHugeInt(i) => i64::try_from(i).map_or_else(|_| V::Text(i.to_string()), V::Int),
        D::Float(f) => V::Float(f.into()),
        D::Double(f) => V::Float(f),
        D::Text(s) => V::Text(s),
        other => V::Text(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::DuckDbEngine;
    use crate::engine::Engine;

    #[test]
    fn sessions_read_time_in_utc() {
        let engine = DuckDbEngine::in_memory().unwrap();
        let s = engine.session().unwrap();
        let rows = s
            .query(
                "SELECT CAST(CAST(TIMESTAMPTZ '2025-01-01 10:00:00+02' AS TIMESTAMP) AS VARCHAR)",
            )
            .unwrap();
        assert_eq!(rows.rows[0][0].as_str(), Some("2025-01-01 08:00:00"));
    }

    #[test]
    fn nothing_is_downloaded() {
        let engine = DuckDbEngine::in_memory().unwrap();
        let s = engine.session().unwrap();
        let err = s.execute("SET TimeZone = 'Europe/Paris'").unwrap_err();
        // Refused at once, not after an attempt to fetch ICU.
        assert!(err.to_string().contains("icu"), "{err}");
        assert!(!err.to_string().contains("download"), "{err}");
    }
}
