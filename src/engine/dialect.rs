//! The SQL forms that differ between the engines hubforge runs on, and the
//! measures written once for both with them: source snapshots (in
//! `sources`), the rows and content checksum of batches and of published
//! intervals ([`measure`]), validation's metrics.

use super::{Session, ts_literal};
use crate::error::Result;
use crate::interval::Interval;

/// Which engine's SQL a statement is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DuckDb,
    Spark,
}

impl Dialect {
    /// An identifier, always quoted.
    pub fn ident(self, name: &str) -> String {
        match self {
            Dialect::DuckDb => super::quote_ident(name),
            Dialect::Spark => format!("`{}`", name.replace('`', "``")),
        }
    }

    /// A hash of each whole row of the relation aliased `row` in the FROM
    /// clause: DuckDB hashes the row as a struct, Spark its columns.
    pub fn row_hash(self, row: &str) -> String {
        match self {
            Dialect::DuckDb => format!("hash({row})"),
            Dialect::Spark => format!("xxhash64({row}.*)"),
        }
    }

    /// The exact sum of the row hashes `h` as text (NULL over no rows): a
    /// content checksum that does not depend on the rows' order, and whose
    /// parts add up to the whole (a HUGEINT on DuckDB, a DECIMAL(38, 0) of
    /// signed hashes on Spark; comparable on one engine only).
    pub fn hash_sum(self, h: &str) -> String {
        match self {
            Dialect::DuckDb => format!("CAST(sum({h}) AS VARCHAR)"),
            Dialect::Spark => format!("CAST(sum(CAST({h} AS DECIMAL(38, 0))) AS STRING)"),
        }
    }

    /// A timestamp as `YYYY-MM-DDTHH:MM:SS` text.
    pub fn iso_time(self, ts: &str) -> String {
        match self {
            Dialect::DuckDb => format!("strftime({ts}, '%Y-%m-%dT%H:%M:%S')"),
            Dialect::Spark => format!("date_format({ts}, \"yyyy-MM-dd'T'HH:mm:ss\")"),
        }
    }

    /// `column` (of the relation aliased `qualifier`) lies in the half-open
    /// `interval`.
    pub fn in_window(self, qualifier: Option<&str>, column: &str, interval: &Interval) -> String {
        let col = match qualifier {
            Some(q) => format!("{q}.{}", self.ident(column)),
            None => self.ident(column),
        };
        format!(
            "{col} >= {} AND {col} < {}",
            ts_literal(interval.start()),
            ts_literal(interval.end())
        )
    }

    /// The index in `windows` of the one a row's `column` lies in (NULL for
    /// none).
    pub fn which_window(
        self,
        qualifier: Option<&str>,
        column: &str,
        windows: &[Interval],
    ) -> String {
        let cases: Vec<String> = windows
            .iter()
            .enumerate()
            .map(|(k, iv)| format!("WHEN {} THEN {k}", self.in_window(qualifier, column, iv)))
            .collect();
        format!("CASE {} END", cases.join(" "))
    }
}

/// Rows and content checksum ([`Dialect::hash_sum`], "0" for no rows) of each
/// of `windows` of `relation` by its time column, or of all its rows when
/// `windows` is `None`, by one scan: what staging records for each batch, and
/// what early cutoff measures the published rows of the same intervals with.
pub fn measure(
    s: &dyn Session,
    dialect: Dialect,
    relation: &str,
    windows: Option<(&str, &[Interval])>,
) -> Result<Vec<(i64, String)>> {
    let (which, filter, n) = match windows {
        Some((_, [])) => return Ok(Vec::new()),
        Some((column, windows)) => (
            dialect.which_window(Some("t"), column, windows),
            format!(
                " WHERE {}",
                windows
                    .iter()
                    .map(|iv| format!("({})", dialect.in_window(Some("t"), column, iv)))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            windows.len(),
        ),
        None => ("0".to_string(), String::new(), 1),
    };
    let rows = s.query(&format!(
        "SELECT i, count(*), {} FROM (SELECT {which} AS i, {} AS h FROM {relation} t{filter}) \
         GROUP BY i",
        dialect.hash_sum("h"),
        dialect.row_hash("t"),
    ))?;
    let mut out = vec![(0, "0".to_string()); n];
    for r in &rows.rows {
        if let Some(slot) = r[0].as_i64().and_then(|i| out.get_mut(i as usize)) {
            *slot = (
                r[1].as_i64().unwrap_or(0),
                r[2].to_text().unwrap_or_else(|| "0".to_string()),
            );
        }
    }
    Ok(out)
}
