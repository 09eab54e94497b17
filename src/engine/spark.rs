//! Apache Spark through Spark Connect: the engine for a Hubhouse that outgrew
//! one machine. A session of this engine is a Spark Connect session on the
//! server (its own temporary views and settings), reached with the official
//! Rust client.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_connect::row::Value as SparkValue;

use super::{Rows, Value};
use crate::error::{Error, Result};

/// How long to wait for the server's port before saying it is not there. The
/// client itself retries a refused connection for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Spark Connect server holding the warehouse.
pub struct SparkEngine {
    /// The first session; new sessions are opened from it.
    root: spark_connect::SparkSession,
    /// Every session opened, so that an interrupt reaches all of them.
    sessions: Mutex<Vec<Arc<spark_connect::SparkSession>>>,
}

impl SparkEngine {
    /// Connect to the server at `url` (`sc://host:port[/;options]`). A server
    /// that does not answer is an error at once, naming the URL and what to do.
    pub fn connect(url: &str) -> Result<SparkEngine> {
        let address = host_port(url)?;
        let reachable = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(|a| TcpStream::connect_timeout(&a, CONNECT_TIMEOUT));
        match reachable {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(unreachable_error(url, &e.to_string())),
            None => return Err(unreachable_error(url, "the host name does not resolve")),
        }
        let root = spark_connect::SparkSession::builder()
            .remote(url)
            .get_or_create()
            .map_err(|e| unreachable_error(url, &e.to_string()))?;
        Ok(SparkEngine {
            sessions: Mutex::new(Vec::new()),
            root,
        })
    }
}

fn unreachable_error(url: &str, why: &str) -> Error {
    Error::Engine(format!(
        "cannot reach the Spark Connect server at {url}: {why}; start one (for a local \
         server: scripts/spark-connect.sh start) or fix `url` in [warehouse] of hubforge.toml"
    ))
}

/// `host:port` of an `sc://` URL (port 15002 when none is given).
fn host_port(url: &str) -> Result<String> {
    let rest = url.strip_prefix("sc://").ok_or_else(|| {
        Error::Engine(format!(
            "the Spark Connect URL `{url}` must start with sc://, e.g. sc://localhost:15002"
        ))
    })?;
    let authority = rest.split(['/', ';']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(Error::Engine(format!(
            "the Spark Connect URL `{url}` names no host, e.g. sc://localhost:15002"
        )));
    }
    Ok(if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:15002")
    })
}

impl super::Engine for SparkEngine {
    fn session(&self) -> Result<Box<dyn super::Session>> {
        let session = Arc::new(self.root.new_session());
        // Timestamps without a zone read and compare as in DuckDB only in UTC.
        run(&session, "SET spark.sql.session.timeZone = UTC")?;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&session));
        Ok(Box::new(SparkSession { session }))
    }

    fn interrupt(&self) {
        for s in self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = s.interrupt_all();
        }
    }
}

struct SparkSession {
    session: Arc<spark_connect::SparkSession>,
}

fn engine_error(e: spark_connect::SparkError) -> Error {
    let class = e.get_error_class();
    let message = e.get_message().trim().to_string();
    // The client repeats the error class in front of its message.
    let message = match &class {
        Some(c) => {
            let tag = format!("[{c}]");
            let mut m = message.as_str();
            while let Some(rest) = m.strip_prefix(&tag) {
                m = rest.trim_start();
            }
            format!("{tag} {m}")
        }
        None => message,
    };
    Error::Engine(if message.is_empty() {
        "Spark rejected the statement without a message".to_string()
    } else {
        message
    })
}

/// Run one statement to its end.
fn run(session: &spark_connect::SparkSession, statement: &str) -> Result<()> {
    let _trace = super::Trace::start(statement);
    let df = session.sql(statement).map_err(engine_error)?;
    df.collect().map_err(engine_error)?;
    Ok(())
}

impl super::Session for SparkSession {
    fn execute(&self, sql: &str) -> Result<()> {
        for statement in split_statements(sql) {
            run(&self.session, statement)?;
        }
        Ok(())
    }

    fn query(&self, sql: &str) -> Result<Rows> {
        let _trace = super::Trace::start(sql);
        let df = self.session.sql(sql).map_err(engine_error)?;
        let rows = df.collect().map_err(engine_error)?;
        let columns = match rows.first() {
            Some(r) => r.fields().to_vec(),
            None => df.columns().map_err(engine_error)?,
        };
        Ok(Rows {
            columns,
            rows: rows
                .iter()
                .map(|r| r.values().iter().map(convert).collect())
                .collect(),
        })
    }
}

/// Spark, for SQL written in DuckDB's dialect (what validation writes, and
/// audits users write): every statement is translated before it runs, and
/// what has no translation is an error naming it.
pub struct Translated<'a>(pub &'a dyn super::Engine);

impl super::Engine for Translated<'_> {
    fn session(&self) -> Result<Box<dyn super::Session>> {
        Ok(Box::new(TranslatedSession(self.0.session()?)))
    }

    fn interrupt(&self) {
        self.0.interrupt();
    }
}

/// A session of Spark for SQL written in DuckDB's dialect, translated before
/// it runs; [`TranslatedSession::raw`] runs Spark SQL on the same session
/// (whose temporary views are its own).
pub struct TranslatedSession(pub Box<dyn super::Session>);

impl TranslatedSession {
    fn translate(sql: &str) -> Result<String> {
        crate::sql::spark::to_spark(sql).map_err(|problems| {
            let what: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
            Error::Engine(format!("cannot run on Spark: {}", what.join("; ")))
        })
    }

    /// The session itself, for Spark SQL.
    pub fn raw(&self) -> &dyn super::Session {
        self.0.as_ref()
    }
}

impl super::Session for TranslatedSession {
    fn execute(&self, sql: &str) -> Result<()> {
        self.0.execute(&Self::translate(sql)?)
    }

    fn query(&self, sql: &str) -> Result<Rows> {
        self.0.query(&Self::translate(sql)?)
    }
}

/// Spark's values as hubforge reads them: dates and timestamps as the text
/// DuckDB casts them to, decimals as text.
fn convert(v: &SparkValue) -> Value {
    match v {
        SparkValue::Null => Value::Null,
        SparkValue::Bool(b) => Value::Bool(*b),
        SparkValue::Byte(i) => Value::Int((*i).into()),
        SparkValue::Short(i) => Value::Int((*i).into()),
        SparkValue::Integer(i) => Value::Int((*i).into()),
        SparkValue::Long(i) => Value::Int(*i),
        SparkValue::Float(f) => Value::Float((*f).into()),
        SparkValue::Double(f) => Value::Float(*f),
        SparkValue::String(s) => Value::Text(s.clone()),
        SparkValue::Date(days) => Value::Text(
            chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                .map_or_else(|| days.to_string(), |d| d.format("%Y-%m-%d").to_string()),
        ),
        SparkValue::Timestamp(micros) => Value::Text(
            chrono::DateTime::from_timestamp_micros(*micros).map_or_else(
                || micros.to_string(),
                |t| {
                    let t = t.naive_utc();
                    if t.and_utc().timestamp_subsec_micros() == 0 {
                        t.format("%Y-%m-%d %H:%M:%S").to_string()
                    } else {
                        t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
                    }
                },
            ),
        ),
        SparkValue::Decimal { value, .. } => Value::Text(value.clone()),
        other => Value::Text(format!("{other:?}")),
    }
}

/// The statements of a script, split at semicolons outside strings, quoted
/// names and comments: Spark runs one statement per request.
fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = sql.as_bytes();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\\' && q == b'\'' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == q {
                        break;
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start.min(sql.len())..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_strings_names_and_comments() {
        let script = "CREATE VIEW a AS SELECT ';' AS x; -- a ; comment\n\
                      INSERT INTO `b;c` VALUES ('it\\'s;'); /* ; */ SELECT \"d;\" FROM t;;";
        assert_eq!(
            split_statements(script),
            vec![
                "CREATE VIEW a AS SELECT ';' AS x",
                "-- a ; comment\nINSERT INTO `b;c` VALUES ('it\\'s;')",
                "/* ; */ SELECT \"d;\" FROM t",
            ]
        );
        assert!(split_statements(" ; \n").is_empty());
    }

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            host_port("sc://localhost:15002").unwrap(),
            "localhost:15002"
        );
        assert_eq!(
            host_port("sc://spark.example.com/;token=abc;use_ssl=true").unwrap(),
            "spark.example.com:15002"
        );
        let err = host_port("http://localhost:15002").unwrap_err().to_string();
        assert!(err.contains("must start with sc://"), "{err}");
        assert!(host_port("sc://").is_err());
    }

    #[test]
    fn a_missing_server_is_an_error_at_once() {
        // A port nothing listens on: refused, not retried for minutes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = SparkEngine::connect(&format!("sc://127.0.0.1:{port}"))
            .err()
            .expect("nothing listens there")
            .to_string();
        assert!(
            err.contains("cannot reach the Spark Connect server"),
            "{err}"
        );
        assert!(err.contains("scripts/spark-connect.sh start"), "{err}");
    }
}
