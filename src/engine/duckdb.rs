//! Embedded DuckDB.

use std::cell::RefCell;

use duckdb::{Connection, ffi};

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
///
/// Sessions talk to DuckDB through its C interface directly: a query runs as
/// one `duckdb_query` call, planned once. The `duckdb` crate prepares every
/// query and executes the prepared statement, and DuckDB 2.0 plans a prepared
/// statement that reads tables again when it is executed: every query was
/// planned twice, which for the small queries hubforge runs by the thousand
/// (metrics, state) was most of their cost.
pub struct DuckDbEngine {
    db: std::sync::Arc<RawDatabase>,
    /// The connections of the sessions, to interrupt them.
    sessions: std::sync::Mutex<Vec<std::sync::Weak<RawConnection>>>,
}

/// An open database, closed when the engine and every connection to it are
/// gone.
struct RawDatabase(ffi::duckdb_database);

// SAFETY: DuckDB's database handle may be used from any thread: connecting
// to it is thread-safe.
unsafe impl Send for RawDatabase {}
unsafe impl Sync for RawDatabase {}

impl Drop for RawDatabase {
    fn drop(&mut self) {
        // SAFETY: the handle came from `duckdb_open_ext` and is closed once.
        unsafe { ffi::duckdb_close(&mut self.0) };
    }
}

/// One connection, disconnected when its session and any interrupt holding
/// it are done. Its session runs statements on it; the engine may interrupt
/// it from another thread.
struct RawConnection {
    con: ffi::duckdb_connection,
    _db: std::sync::Arc<RawDatabase>,
}

// SAFETY: one session runs statements on the connection at a time, and
// DuckDB allows interrupting a connection from another thread while it runs
// a statement.
unsafe impl Send for RawConnection {}
unsafe impl Sync for RawConnection {}

impl Drop for RawConnection {
    fn drop(&mut self) {
        // SAFETY: the handle came from `duckdb_connect` and is disconnected
        // once, before its database is released.
        unsafe { ffi::duckdb_disconnect(&mut self.con) };
    }
}

/// Settings for opening the warehouse.
#[derive(Debug, Clone, Default)]
pub struct DuckDbOptions {
    pub threads: Option<usize>,
    pub memory_limit: Option<String>,
    pub read_only: bool,
}

impl DuckDbOptions {
    /// The project's `[warehouse]` settings.
    pub fn of(ws: &crate::workspace::Workspace, read_only: bool) -> Self {
        DuckDbOptions {
            threads: ws.project.config.warehouse.threads,
            memory_limit: ws.project.config.warehouse.memory_limit.clone(),
            read_only,
        }
    }
}

impl DuckDbEngine {
    /// Open (or create) the warehouse file. A warehouse held by another process
    /// is a clear error, never a wait or a corruption.
    pub fn open(path: &std::path::Path, options: &DuckDbOptions) -> crate::Result<Self> {
        let mut settings: Vec<(&str, String)> = Vec::new();
        if let Some(t) = options.threads {
            settings.push(("threads", t.to_string()));
        }
        if let Some(m) = &options.memory_limit {
            settings.push(("max_memory", m.clone()));
        }
        // One checkpoint at the end of a build, not one in the middle of it
        // whenever the write-ahead log passes DuckDB's default 16 MB.
        settings.push(("checkpoint_threshold", "1GB".to_string()));
        if options.read_only {
            settings.push(("access_mode", "READ_ONLY".to_string()));
        }
        let location = path.to_string_lossy();
        Self::open_raw(&location, &settings).map_err(|text| open_error(path, &text))
    }

    /// An in-memory database, for tests and scratch work.
    pub fn in_memory() -> crate::Result<Self> {
        Self::open_raw(":memory:", &[]).map_err(crate::Error::Engine)
    }

    fn open_raw(location: &str, settings: &[(&str, String)]) -> Result<Self, String> {
        let c_string = |s: &str| std::ffi::CString::new(s).map_err(|e| e.to_string());
        let path = c_string(location)?;
        // SAFETY: every pointer passed is valid for the call; the config is
        // destroyed on every path once the database is opened (or not), and
        // an error string from DuckDB is read and then freed.
        unsafe {
            let mut config: ffi::duckdb_config = std::ptr::null_mut();
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                return Err("DuckDB could not create a configuration".to_string());
            }
            let set = |name: &str, value: &str| -> Result<(), String> {
                let (n, v) = (c_string(name)?, c_string(value)?);
                if ffi::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) != ffi::DuckDBSuccess {
                    return Err(format!("DuckDB refused the setting {name} = {value}"));
                }
                Ok(())
            };
            let applied = PINNED
                .iter()
                .copied()
                .chain(settings.iter().map(|(n, v)| (*n, v.as_str())))
                .try_for_each(|(n, v)| set(n, v));
            if let Err(e) = applied {
                ffi::duckdb_destroy_config(&mut config);
                return Err(e);
            }
            let mut db: ffi::duckdb_database = std::ptr::null_mut();
            let mut error: *mut std::os::raw::c_char = std::ptr::null_mut();
            let rc = ffi::duckdb_open_ext(path.as_ptr(), &mut db, config, &mut error);
            ffi::duckdb_destroy_config(&mut config);
            if rc != ffi::DuckDBSuccess {
                let text = c_text(error)
                    .unwrap_or_else(|| "DuckDB could not open the database".to_string());
                if !error.is_null() {
                    ffi::duckdb_free(error.cast());
                }
                return Err(text);
            }
            Ok(DuckDbEngine {
                db: std::sync::Arc::new(RawDatabase(db)),
                sessions: std::sync::Mutex::new(Vec::new()),
            })
        }
    }
}

/// Settings every warehouse connection has. Time is UTC: the bundled DuckDB
/// has no ICU extension, so TIMESTAMPTZ values are read and cast in UTC and no
/// session can be in another time zone. Nothing is downloaded: a model that
/// needs an extension that is not built in fails at once with DuckDB's message
/// instead of trying the network (`SET TimeZone` alone would try to fetch ICU).
const PINNED: &[(&str, &str)] = &[("autoinstall_known_extensions", "false")];

fn open_error(path: &std::path::Path, text: &str) -> crate::Error {
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
        let mut con: ffi::duckdb_connection = std::ptr::null_mut();
        // SAFETY: the database handle is open while `self` lives.
        if unsafe { ffi::duckdb_connect(self.db.0, &mut con) } != ffi::DuckDBSuccess {
            return Err(crate::Error::Engine(
                "cannot open a new connection to the warehouse".to_string(),
            ));
        }
        let raw = std::sync::Arc::new(RawConnection {
            con,
            _db: self.db.clone(),
        });
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the connections of sessions already closed.
        sessions.retain(|c| c.strong_count() > 0);
        sessions.push(std::sync::Arc::downgrade(&raw));
        Ok(Box::new(DuckDbSession { raw }))
    }

    fn interrupt(&self) {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for raw in sessions.iter().filter_map(std::sync::Weak::upgrade) {
            // SAFETY: the connection stays open while `raw` holds it.
            unsafe { ffi::duckdb_interrupt(raw.con) };
        }
    }
}

struct DuckDbSession {
    raw: std::sync::Arc<RawConnection>,
}

/// A result of `duckdb_query`, destroyed when dropped.
struct QueryResult(ffi::duckdb_result);

impl Drop for QueryResult {
    fn drop(&mut self) {
        // SAFETY: filled by `duckdb_query`, destroyed once.
        unsafe { ffi::duckdb_destroy_result(&mut self.0) };
    }
}

impl DuckDbSession {
    /// Run `sql` (one or more statements) and keep the last one's result.
    fn run(&self, sql: &str) -> crate::Result<QueryResult> {
        let _trace = super::Trace::start(sql);
        let text = std::ffi::CString::new(sql)
            .map_err(|_| crate::Error::Engine("a statement contains a NUL character".into()))?;
        // SAFETY: the connection stays open while this session lives; the
        // result is destroyed by `QueryResult` whatever the outcome.
        unsafe {
            let mut result = QueryResult(std::mem::zeroed());
            if ffi::duckdb_query(self.raw.con, text.as_ptr(), &mut result.0) != ffi::DuckDBSuccess {
                let message = c_text(ffi::duckdb_result_error(&mut result.0))
                    .unwrap_or_else(|| "DuckDB failed without a message".to_string());
                return Err(crate::Error::Engine(message));
            }
            Ok(result)
        }
    }
}

impl super::Session for DuckDbSession {
    fn execute(&self, sql: &str) -> crate::Result<()> {
        self.run(sql).map(drop)
    }

    fn query(&self, sql: &str) -> crate::Result<super::Rows> {
        let mut result = self.run(sql)?;
        let r = &mut result.0;
        // SAFETY: `r` is a successful result; columns and rows are read
        // within its counts, text is copied and freed.
        unsafe {
            let width = ffi::duckdb_column_count(r);
            let height = ffi::duckdb_row_count(r);
            let mut out = super::Rows {
                columns: (0..width)
                    .map(|c| c_text(ffi::duckdb_column_name(r, c)).unwrap_or_default())
                    .collect(),
                rows: Vec::with_capacity(height as usize),
            };
            let types: Vec<ffi::duckdb_type> =
                (0..width).map(|c| ffi::duckdb_column_type(r, c)).collect();
            for row in 0..height {
                let values = types
                    .iter()
                    .enumerate()
                    .map(|(c, ty)| value(r, c as ffi::idx_t, row, *ty))
                    .collect();
                out.rows.push(values);
            }
            Ok(out)
        }
    }
}

/// A copy of a C string from DuckDB, `None` for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn c_text(p: *const std::os::raw::c_char) -> Option<String> {
    // SAFETY: as the caller promises.
    (!p.is_null()).then(|| {
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    })
}

/// One value of a result: integers and floating numbers as such (an integer
/// beyond 64 bits as text), anything else as DuckDB writes it as text.
///
/// # Safety
/// `r` is a successful result with that column and row.
unsafe fn value(
    r: &mut ffi::duckdb_result,
    col: ffi::idx_t,
    row: ffi::idx_t,
    ty: ffi::duckdb_type,
) -> super::Value {
    use super::Value as V;
    unsafe {
        if ffi::duckdb_value_is_null(r, col, row) {
            return V::Null;
        }
        match ty {
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => V::Bool(ffi::duckdb_value_boolean(r, col, row)),
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT
            | ffi::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT
            | ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER
            | ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT
            | ffi::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT
            | ffi::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT
            | ffi::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => V::Int(ffi::duckdb_value_int64(r, col, row)),
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT | ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => {
                V::Float(ffi::duckdb_value_double(r, col, row))
            }
            _ => {
                let text = ffi::duckdb_value_varchar(r, col, row);
                let Some(s) = c_text(text) else {
                    return V::Null;
                };
                ffi::duckdb_free(text.cast());
                match ty {
                    ffi::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT
                    | ffi::DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT
                    | ffi::DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT => {
                        s.parse::<i64>().map_or(V::Text(s), V::Int)
                    }
                    _ => V::Text(s),
                }
            }
        }
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
