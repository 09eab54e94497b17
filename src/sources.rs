//! Sources and seeds as data: where their rows come from, what their files look
//! like on disk, and snapshots of their content (row count and content hash per
//! time unit) so that late or repaired data is found without being told.

use std::path::{Path, PathBuf};

use crate::config::{SourceConfig, SourceFormat};
use crate::engine::{Session, quote_str};
use crate::error::{Error, Result};
use crate::interval::{Interval, Unit, parse_point};
use crate::project::{Project, SeedFile};
use crate::state::{FileSignature, SourceSnapshot};

/// Schema that holds hubforge's views of sources.
pub const SOURCE_SCHEMA: &str = "_hubforge_src";

/// The absolute files a source path or glob matches, sorted.
pub fn source_paths(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = root.join(pattern);
    let text = full.to_string_lossy().into_owned();
    let mut out: Vec<PathBuf> = match glob::glob(&text) {
        Ok(paths) => paths
            .filter_map(std::result::Result::ok)
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Size and modification time of each file a source reads; paths relative to
/// `root`, so that a project can move.
pub fn file_signatures(root: &Path, paths: &[PathBuf]) -> Vec<FileSignature> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let modified_ns = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i64);
            FileSignature {
                path: p
                    .strip_prefix(root)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .replace('\\', "/"),
                size: meta.map_or(0, |m| m.len() as i64),
                modified_ns,
            }
        })
        .collect()
}

/// The SQL relation a source reads: a file reader over its files, or its table.
pub fn relation(root: &Path, config: &SourceConfig) -> String {
    match (&config.table, &config.path) {
        (Some(table), _) => table
            .split('.')
            .map(crate::engine::quote_ident)
            .collect::<Vec<_>>()
            .join("."),
        (None, Some(path)) => {
            let files = source_paths(root, path);
            let list = if files.is_empty() {
                // Let DuckDB report the missing file with its own message.
                quote_str(&root.join(path).to_string_lossy())
            } else {
                format!(
                    "[{}]",
                    files
                        .iter()
                        .map(|f| quote_str(&f.to_string_lossy()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            match config.format.or_else(|| SourceFormat::from_path(path)) {
                Some(SourceFormat::Parquet) => {
                    format!("read_parquet({list}, union_by_name = true)")
                }
                Some(SourceFormat::Json) => format!("read_json_auto({list})"),
                _ => format!("read_csv({list}, union_by_name = true)"),
            }
        }
        (None, None) => "(SELECT NULL WHERE false)".to_string(),
    }
}

/// The relation a seed reads.
pub fn seed_relation(root: &Path, seed: &SeedFile) -> String {
    format!(
        "read_csv({})",
        quote_str(&root.join(&seed.path).to_string_lossy())
    )
}

/// Column names of a relation, lowercase.
pub fn describe(s: &dyn Session, relation: &str) -> Result<Vec<String>> {
    let rows = s.query(&format!("DESCRIBE SELECT * FROM {relation}"))?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| r.first().and_then(|v| v.as_str()).map(str::to_lowercase))
        .collect())
}

/// Where a source's rows are read from during a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// Copy file sources into the warehouse (schema `_hubforge_src`), one table
    /// per version of the files, kept until a newer version is published.
    Warehouse,
    /// Copy into temporary tables of this connection only (planning never
    /// writes to the warehouse).
    Temp,
}

/// The name of the table holding a file source's rows for one version of its files.
pub fn ingested_name(name: &str, files: &[FileSignature]) -> String {
    let parts: Vec<String> = files
        .iter()
        .flat_map(|f| {
            [
                f.path.clone(),
                f.size.to_string(),
                f.modified_ns.to_string(),
            ]
        })
        .collect();
    let sig = crate::hash::hash_parts("", parts.iter().map(String::as_str));
    format!("{}__{}", name.to_lowercase(), &sig[..16])
}

/// Whether `table` of the source schema is a copy of the files of source `key`
/// (and not of a source whose name starts like it: `x` and `x__y`).
pub fn is_copy_of(table: &str, key: &str) -> bool {
    table
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix("__"))
        .is_some_and(|sig| sig.len() == 16 && sig.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Copy a file source into a table (once per version of its files) and return
/// the relation to read it from; a table source is read where it is.
pub fn ingest(
    s: &dyn Session,
    project: &Project,
    name: &str,
    config: &SourceConfig,
    files: &[FileSignature],
    mode: Ingest,
) -> Result<String> {
    if config.path.is_none() {
        return Ok(relation(&project.root, config));
    }
    let table = ingested_name(name, files);
    let (create, qualified) = match mode {
        Ingest::Warehouse => (
            format!(
                "CREATE TABLE IF NOT EXISTS {SOURCE_SCHEMA}.{}",
                crate::engine::quote_ident(&table)
            ),
            format!("{SOURCE_SCHEMA}.{}", crate::engine::quote_ident(&table)),
        ),
        Ingest::Temp => (
            format!(
                "CREATE TEMP TABLE IF NOT EXISTS {}",
                crate::engine::quote_ident(&table)
            ),
            format!("temp.main.{}", crate::engine::quote_ident(&table)),
        ),
    };
    // `CREATE ... IF NOT EXISTS ... AS SELECT` would still read the files.
    let (schema, catalog) = match mode {
        Ingest::Warehouse => (SOURCE_SCHEMA, None),
        Ingest::Temp => ("main", Some("temp")),
    };
    let exists = s.query(&format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = {} AND table_name = {}{}",
        quote_str(schema),
        quote_str(&table),
        catalog.map(|c| format!(" AND table_catalog = {}", quote_str(c))).unwrap_or_default()
    ))?;
    if exists.rows.first().and_then(|r| r[0].as_i64()) != Some(1) {
        s.execute(&format!(
            "{create} AS SELECT * FROM {}",
            relation(&project.root, config)
        ))
        .map_err(|e| Error::Engine(format!("reading source `{name}`: {e}")))?;
    }
    Ok(qualified)
}

/// Snapshot a source's rows: per unit of its time column, or as a whole.
pub fn snapshot(
    s: &dyn Session,
    name: &str,
    config: &SourceConfig,
    relation: &str,
    files: Vec<FileSignature>,
) -> Result<SourceSnapshot> {
    let context = |e: Error| Error::Engine(format!("reading source `{name}`: {e}"));
    let mut snap = SourceSnapshot {
        files,
        ..SourceSnapshot::default()
    };
    match &config.time_column {
        Some(tc) => {
            let unit = config.unit;
            // Grouped by the truncated time itself; only the result is formatted.
            let q = format!(
                "SELECT strftime(u, '%Y-%m-%dT%H:%M:%S'), n, CAST(h AS VARCHAR) FROM (\
                 SELECT CAST(date_trunc('{}', {col}) AS TIMESTAMP) AS u, count(*) AS n, sum(hash(s)) AS h \
                 FROM (SELECT * FROM {relation}) s WHERE {col} IS NOT NULL GROUP BY 1)",
                unit_sql(unit),
                col = crate::engine::quote_ident(tc)
            );
            for row in s.query(&q).map_err(context)?.rows {
                let start = row[0]
                    .as_str()
                    .and_then(|t| parse_point(t).ok())
                    .ok_or_else(|| {
                        Error::Engine(format!("source `{name}`: unreadable time bucket"))
                    })?;
                snap.units.insert(
                    Interval::unit_at(unit, start),
                    (
                        row[1].as_i64().unwrap_or(0),
                        row[2].to_text().unwrap_or_default(),
                    ),
                );
            }
        }
        None => {
            let q = format!(
                "SELECT count(*), CAST(sum(hash(s)) AS VARCHAR) FROM (SELECT * FROM {relation}) s"
            );
            let rows = s.query(&q).map_err(context)?;
            let row = &rows.rows[0];
            snap.whole = Some((
                row[0].as_i64().unwrap_or(0),
                row[1].to_text().unwrap_or_default(),
            ));
        }
    }
    Ok(snap)
}

/// Size and modification time of the files a source reads (none for table sources).
pub fn source_files(project: &Project, config: &SourceConfig) -> Vec<FileSignature> {
    match &config.path {
        Some(p) => file_signatures(&project.root, &source_paths(&project.root, p)),
        None => Vec::new(),
    }
}

/// A seed's snapshot: its file's content hash (no scan through the engine).
pub fn seed_snapshot(project: &Project, seed: &SeedFile) -> Result<SourceSnapshot> {
    let path = project.root.join(&seed.path);
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::io(format!("reading seed {}", path.display()), e))?;
    let lines = bytes.iter().filter(|b| **b == b'\n').count() as i64;
    Ok(SourceSnapshot {
        whole: Some((lines, blake3::hash(&bytes).to_hex().to_string())),
        files: file_signatures(&project.root, &[path]),
        ..SourceSnapshot::default()
    })
}

/// The `date_trunc` part name of a unit.
pub fn unit_sql(unit: Unit) -> &'static str {
    match unit {
        Unit::Hour => "hour",
        Unit::Day => "day",
        Unit::Week => "week",
        Unit::Month => "month",
        Unit::Year => "year",
    }
}
