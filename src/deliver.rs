//! `hubforge deliver`: a reference delivery for local destinations. Exactly
//! the pending intervals of each product are written, partitioned by the
//! product's time unit (`<path>/<product>/<unit>=<start>/part.<ext>`); each
//! partition file is written beside its old version and renamed over it, so a
//! killed delivery leaves every partition old or new. Unchanged partitions are
//! never rewritten.

use std::path::Path;

use serde::Serialize;

use crate::config::{DestinationConfig, DestinationFormat};
use crate::engine::{Session, quote_ident, quote_str, window_predicate};
use crate::error::{Error, Result};
use crate::fulfill::Pending;
use crate::interval::{Interval, IntervalSet};
use crate::state::SCHEMA;
use crate::workspace::Workspace;

/// What one delivery of one product writes.
#[derive(Debug, Clone, Serialize)]
pub struct Delivered {
    pub destination: String,
    pub product: String,
    pub full: bool,
    /// The units written (empty when `full`).
    pub intervals: IntervalSet,
    /// Units left for later deliveries (throttled).
    pub left: IntervalSet,
    pub files: Vec<String>,
}

/// The units of `set` for a product's unit, oldest first.
fn units(set: &IntervalSet, unit: crate::interval::Unit) -> Vec<Interval> {
    let mut out = Vec::new();
    for iv in set.iter() {
        let mut t = iv.start();
        while t < iv.end() {
            let u = Interval::unit_at(unit, t);
            out.push(u);
            t = u.end();
        }
    }
    out
}

/// Deliver what `destinations` (all when empty) have pending. `s` holds state
/// and the published products (`main.<product>`); `record` is given, product
/// by product once its files are written, the state write that records the
/// delivery.
pub fn deliver(
    s: &dyn Session,
    ws: &Workspace,
    destinations: &[String],
    dry_run: bool,
    record: &mut dyn FnMut(String) -> Result<()>,
) -> Result<Vec<Delivered>> {
    let mut out = Vec::new();
    for p in &to_deliver(s, ws, destinations)? {
        let dest = crate::fulfill::destination(ws, &p.destination)?;
        let delivered = deliver_one(s, ws, dest, p, dry_run)?;
        if !dry_run {
            record(recorded(dest, p, &delivered.left))?;
        }
        out.push(delivered);
    }
    Ok(out)
}

/// What a delivery to `destinations` (all when empty) writes: their pending
/// products, but for destinations that are held.
pub fn to_deliver(
    s: &dyn Session,
    ws: &Workspace,
    destinations: &[String],
) -> Result<Vec<Pending>> {
    for d in destinations {
        crate::fulfill::destination(ws, d)?;
    }
    Ok(crate::fulfill::pending(s, ws)?
        .into_iter()
        .filter(|p| {
            p.held.is_none() && (destinations.is_empty() || destinations.contains(&p.destination))
        })
        .collect())
}

fn deliver_one(
    s: &dyn Session,
    ws: &Workspace,
    dest: &DestinationConfig,
    p: &Pending,
    dry_run: bool,
) -> Result<Delivered> {
    let Some(base) = &dest.path else {
        return Err(crate::cli::invalid_argument(
            format!(
                "destination `{}` has no `path`: hubforge cannot deliver to it",
                dest.name
            ),
            format!(
                "give it a path in hubforge.toml, or let the system that delivers it read the manifests and record its deliveries with `hubforge ack RUN {}`",
                dest.name
            ),
        ));
    };
    let root = ws.project.root.join(base);
    let file = ws
        .project
        .models
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(&p.product));
    let time = file.and_then(|f| Some((f.config.time_column.clone()?, f.config.unit?)));
    let relation = format!("main.{}", quote_ident(&p.product));
    // The units to write now, oldest first, within the destination's limit.
    let (write, left): (Vec<Option<Interval>>, IntervalSet) = match (&time, p.full) {
        (None, _) => (vec![None], IntervalSet::new()),
        (Some((tc, unit)), true) => {
            let range = s.query(&format!(
                "SELECT strftime(min({c}), '%Y-%m-%dT%H:%M:%S'), strftime(max({c}), '%Y-%m-%dT%H:%M:%S') FROM {relation}",
                c = quote_ident(tc)
            ))?;
            let row = &range.rows[0];
            match (
                row[0]
                    .as_str()
                    .and_then(|t| crate::interval::parse_point(t).ok()),
                row[1]
                    .as_str()
                    .and_then(|t| crate::interval::parse_point(t).ok()),
            ) {
                (Some(a), Some(b)) => {
                    let all = IntervalSet::from(
                        Interval::new(a, Interval::unit_at(*unit, b).end())
                            .map_err(|e| Error::Engine(e.to_string()))?,
                    );
                    (
                        units(&all, *unit).into_iter().map(Some).collect(),
                        IntervalSet::new(),
                    )
                }
                _ => (Vec::new(), IntervalSet::new()),
            }
        }
        (Some((_, unit)), false) => {
            let all = units(&p.intervals, *unit);
            let n = dest
                .max_intervals_per_delivery
                .map_or(all.len(), |m| (m as usize).min(all.len()));
            let left = IntervalSet::from_intervals(all[n..].iter().copied());
            (all[..n].iter().copied().map(Some).collect(), left)
        }
    };
    let ext = match dest.format {
        DestinationFormat::Parquet => "parquet",
        DestinationFormat::Csv => "csv",
        DestinationFormat::Duckdb => "duckdb",
    };
    // Parquet has no 128-bit integers (DuckDB's sums of integers): DuckDB
    // would write them as DOUBLE, inexact past 2^53; DECIMAL(38, 0) is exact.
    let columns = match dest.format {
        DestinationFormat::Parquet if !dry_run => parquet_columns(s, &relation)?,
        _ => "*".to_string(),
    };
    let mut files = Vec::new();
    if dest.format == DestinationFormat::Duckdb {
        let path = root.join(format!("{}.duckdb", p.product));
        files.push(display(&ws.project.root, &path));
        if !dry_run {
            write_duckdb(
                s,
                &path,
                &p.product,
                &relation,
                time.as_ref().map(|(c, _)| c.as_str()),
                &write,
            )?;
        }
    } else {
        for unit in &write {
            let dir = match (unit, &time) {
                (Some(iv), Some((_, u))) => root
                    .join(&p.product)
                    .join(format!("{u}={}", iv.start().format(partition_format(*u)))),
                _ => root.join(&p.product),
            };
            let path = dir.join(format!("part.{ext}"));
            files.push(display(&ws.project.root, &path));
            if dry_run {
                continue;
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let filter = match (unit, &time) {
                (Some(iv), Some((tc, _))) => format!(" WHERE {}", window_predicate(None, tc, iv)),
                _ => String::new(),
            };
            let tmp = dir.join(format!(".part.{ext}.tmp"));
            let options = match dest.format {
                DestinationFormat::Csv => "FORMAT csv, HEADER true",
                _ => "FORMAT parquet",
            };
            s.execute(&format!(
                "COPY (SELECT {columns} FROM {relation}{filter}) TO {} ({options})",
                quote_str(&tmp.to_string_lossy())
            ))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            // A test hook: stop after this partition until killed.
            crate::build::pause_point("deliver", files.len());
        }
    }
    let delivered = IntervalSet::from_intervals(write.iter().flatten().copied());
    Ok(Delivered {
        destination: dest.name.clone(),
        product: p.product.clone(),
        full: p.full,
        intervals: if p.full {
            IntervalSet::new()
        } else {
            delivered
        },
        left,
        files,
    })
}

/// The select list writing `relation` to Parquet: its columns, those of
/// 128-bit integer types as DECIMAL(38, 0).
fn parquet_columns(s: &dyn Session, relation: &str) -> Result<String> {
    let described = s.query(&format!("DESCRIBE SELECT * FROM {relation}"))?;
    let huge = |ty: &str| matches!(ty, "HUGEINT" | "UHUGEINT");
    if !described
        .rows
        .iter()
        .any(|r| r[1].as_str().is_some_and(huge))
    {
        return Ok("*".to_string());
    }
    Ok(described
        .rows
        .iter()
        .map(|r| {
            let column = quote_ident(r[0].as_str().unwrap_or_default());
            match r[1].as_str().is_some_and(huge) {
                true => format!("CAST({column} AS DECIMAL(38, 0)) AS {column}"),
                false => column,
            }
        })
        .collect::<Vec<_>>()
        .join(", "))
}

fn partition_format(unit: crate::interval::Unit) -> &'static str {
    match unit {
        crate::interval::Unit::Hour => "%Y-%m-%dT%H",
        crate::interval::Unit::Month => "%Y-%m",
        crate::interval::Unit::Year => "%Y",
        _ => "%Y-%m-%d",
    }
}

fn display(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Replace the units in a DuckDB file's table in one transaction.
fn write_duckdb(
    s: &dyn Session,
    path: &Path,
    product: &str,
    relation: &str,
    time_column: Option<&str>,
    write: &[Option<Interval>],
) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let table = format!("hubforge_dest.{}", quote_ident(product));
    let filter = match time_column {
        Some(tc) => write
            .iter()
            .flatten()
            .map(|iv| format!("({})", window_predicate(None, tc, iv)))
            .collect::<Vec<_>>()
            .join(" OR "),
        None => "true".to_string(),
    };
    let filter = if filter.is_empty() {
        "false".to_string()
    } else {
        filter
    };
    s.execute(&format!(
        "ATTACH {} AS hubforge_dest; \
         CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {relation} WHERE false; \
         BEGIN TRANSACTION; DELETE FROM {table} WHERE {filter}; \
         INSERT INTO {table} SELECT * FROM {relation} WHERE {filter}; COMMIT; DETACH hubforge_dest",
        quote_str(&path.to_string_lossy())
    ))
    .inspect_err(|_| {
        let _ = s.execute("ROLLBACK; DETACH DATABASE IF EXISTS hubforge_dest");
    })
}

/// The state write recording that the pending rows of a product for a
/// destination are delivered; what the throttle left stays pending. Times are
/// literals: Spark's state log replays the write later.
fn recorded(dest: &DestinationConfig, p: &Pending, left: &IntervalSet) -> String {
    let now = crate::engine::ts_literal(chrono::Utc::now().naive_utc());
    let mut sql = format!(
        "UPDATE {SCHEMA}.fulfillment SET status = 'delivered', released_at = {now} \
         WHERE destination = {} AND product = {} AND status = 'pending';",
        quote_str(&dest.name),
        quote_str(&p.product)
    );
    if !left.is_empty() {
        sql.push_str(&format!(
            "\nINSERT INTO {SCHEMA}.fulfillment VALUES ({}, {}, {}, 'deliver', 'throttled', {}, 'pending', {now}, NULL);",
            quote_str(p.runs.last().map_or("", String::as_str)),
            quote_str(&p.product),
            quote_str(&dest.name),
            quote_str(&serde_json::to_string(left).expect("json"))
        ));
    }
    sql
}

/// `hubforge ack RUN DEST`: another system delivered what run `RUN` changed.
/// How many pending deliveries that acknowledges, read from state `s`, and
/// the state write that records it (with a literal time: Spark's state log
/// replays it later).
pub fn ack(s: &dyn Session, run: &str, destination: &str) -> Result<(usize, String)> {
    let which = format!(
        "status = 'pending' AND destination = {} AND (run_id = {} OR run_id LIKE {})",
        quote_str(destination),
        quote_str(run),
        quote_str(&format!("{run}%"))
    );
    let n = s.query(&format!(
        "SELECT count(*) FROM {SCHEMA}.fulfillment WHERE {which}"
    ))?;
    let n = n.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) as usize;
    let sql = format!(
        "UPDATE {SCHEMA}.fulfillment SET status = 'acknowledged', released_at = {} WHERE {which};",
        crate::engine::ts_literal(chrono::Utc::now().naive_utc())
    );
    Ok((n, sql))
}

/// What a delivery wrote, for people.
pub fn render(delivered: &[Delivered], dry_run: bool) -> String {
    use std::fmt::Write as _;
    if delivered.is_empty() {
        return "Nothing to deliver.\n".to_string();
    }
    let mut out = String::new();
    for d in delivered {
        let what = if d.full {
            "in full".to_string()
        } else {
            d.intervals.to_string()
        };
        let _ = writeln!(
            out,
            "{} {} → {}: {what}, {} file{}",
            if dry_run {
                "Would deliver"
            } else {
                "Delivered"
            },
            d.product,
            d.destination,
            d.files.len(),
            crate::diagnostics::plural(d.files.len())
        );
        if dry_run {
            for f in &d.files {
                let _ = writeln!(out, "  {f}");
            }
        }
        if !d.left.is_empty() {
            let _ = writeln!(out, "  left for the next delivery (throttled): {}", d.left);
        }
    }
    out
}
