//! Sources and seeds as data: where their rows come from, what their files look
//! like on disk, and snapshots of their content (row count and content hash per
//! time unit) so that late or repaired data is found without being told.

use std::path::{Path, PathBuf};

use crate::config::{OnBadRows, SourceConfig, SourceFormat};
use crate::diagnostics::{Code, Diagnostic};
use crate::engine::{Dialect, Session, quote_str};
use crate::error::{Error, Result};
use crate::interval::{Interval, Unit, parse_point};
use crate::project::{Project, SeedFile};
use crate::state::{FileSignature, SourceSnapshot};

/// Schema that holds hubforge's views of sources.
pub const SOURCE_SCHEMA: &str = "_hubforge_src";

/// The absolute files a source path or glob matches, sorted (none for a path
/// only the cluster reads: this machine never looks there).
pub fn source_paths(root: &Path, pattern: &str) -> Vec<PathBuf> {
    if crate::config::is_cluster_path(pattern) {
        return Vec::new();
    }
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
        (Some(table), _) => table_relation(table),
        (None, Some(path)) => file_reader(config, &source_paths(root, path), ""),
        (None, None) => "(SELECT NULL WHERE false)".to_string(),
    }
}

pub fn table_relation(table: &str) -> String {
    table
        .split('.')
        .map(crate::engine::quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// A reader over `files` (absolute) with the source's declared options; `extra`
/// is appended to a CSV reader's arguments.
fn file_reader(config: &SourceConfig, files: &[PathBuf], extra: &str) -> String {
    let list = format!(
        "[{}]",
        files
            .iter()
            .map(|f| quote_str(&f.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match config.effective_format() {
        Some(SourceFormat::Parquet) => with_declared_types(
            config,
            &format!("read_parquet({list}, union_by_name = true)"),
        ),
        Some(SourceFormat::Json) => with_declared_types(
            config,
            &format!("read_json_auto({list}, union_by_name = true)"),
        ),
        _ => {
            let mut args = csv_dialect(config);
            if let Some(columns) = &config.columns {
                args.push_str(&format!(", types = {}", struct_literal(columns)));
            }
            // One file at a time when its bad rows are kept aside (DuckDB
            // does not combine that with `union_by_name`).
            let union = if files.len() > 1 {
                ", union_by_name = true"
            } else {
                ""
            };
            format!("read_csv({list}{union}{args}{extra})")
        }
    }
}

/// The CSV dialect options a source declares, as `read_csv` arguments.
fn csv_dialect(config: &SourceConfig) -> String {
    let mut args = String::new();
    let mut text = |name: &str, value: &Option<String>| {
        if let Some(v) = value {
            args.push_str(&format!(", {name} = {}", quote_str(v)));
        }
    };
    text("delim", &config.delimiter);
    text("quote", &config.quote);
    text("dateformat", &config.dateformat);
    text("timestampformat", &config.timestampformat);
    text("encoding", &config.encoding);
    if let Some(header) = config.header {
        args.push_str(&format!(", header = {header}"));
    }
    if let Some(nulls) = &config.null {
        args.push_str(&format!(
            ", nullstr = [{}]",
            nulls
                .iter()
                .map(|n| quote_str(n))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    args
}

fn struct_literal(columns: &std::collections::BTreeMap<String, String>) -> String {
    format!(
        "{{{}}}",
        columns
            .iter()
            .map(|(c, t)| format!("{}: {}", quote_str(c), quote_str(t)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Parquet and JSON carry their own types: declared ones are casts over them.
fn with_declared_types(config: &SourceConfig, reader: &str) -> String {
    match &config.columns {
        Some(columns) if !columns.is_empty() => format!(
            "(SELECT * REPLACE ({}) FROM {reader})",
            columns
                .iter()
                .map(|(c, t)| format!(
                    "CAST({col} AS {t}) AS {col}",
                    col = crate::engine::quote_ident(c)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => reader.to_string(),
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
    Ok(describe_typed(s, relation)?
        .into_iter()
        .map(|(c, _)| c)
        .collect())
}

/// Column names (lowercase) and types of a relation.
pub fn describe_typed(s: &dyn Session, relation: &str) -> Result<Vec<(String, String)>> {
    let rows = s.query(&format!("DESCRIBE SELECT * FROM {relation}"))?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| {
            let name = r.first().and_then(|v| v.as_str())?.to_lowercase();
            let ty = r.get(1).and_then(|v| v.as_str()).unwrap_or_default();
            Some((name, ty.to_string()))
        })
        .collect())
}

/// Columns (names as written) and types of many tables of one schema, by
/// table name, from one catalog query instead of a `DESCRIBE` each.
pub fn table_columns(
    s: &dyn Session,
    schema: &str,
    tables: &[&str],
) -> Result<std::collections::HashMap<String, Vec<(String, String)>>> {
    let mut out: std::collections::HashMap<String, Vec<(String, String)>> =
        std::collections::HashMap::new();
    if tables.is_empty() {
        return Ok(out);
    }
    let list = tables
        .iter()
        .map(|t| quote_str(t))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = s.query(&format!(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() \
         WHERE schema_name = {} AND table_name IN ({list}) ORDER BY table_name, column_index",
        quote_str(schema)
    ))?;
    for r in rows.rows {
        out.entry(r[0].to_text().unwrap_or_default())
            .or_default()
            .push((
                r[1].to_text().unwrap_or_default(),
                r[2].to_text().unwrap_or_default(),
            ));
    }
    Ok(out)
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
pub fn ingested_name(name: &str, config: &SourceConfig, files: &[FileSignature]) -> String {
    let mut parts: Vec<String> = files
        .iter()
        .flat_map(|f| {
            [
                f.path.clone(),
                f.size.to_string(),
                f.modified_ns.to_string(),
            ]
        })
        .collect();
    // Files read another way are another copy (no part when read by default).
    if let Some(read) = config.read_options() {
        parts.push(read.to_string());
    }
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

/// Schema that holds the rows of each source kept out of the build.
pub const REJECTS_SCHEMA: &str = "_hubforge_rejects";

/// The temporary tables DuckDB writes a CSV scan's bad rows to.
const REJECT_ERRORS: &str = "hubforge_reject_errors";
const REJECT_SCANS: &str = "hubforge_reject_scans";
/// Every bad row of one source's files, gathered over its scans.
const REJECTED: &str = "hubforge_rejected";

/// A source as read for a command.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub relation: String,
    /// Rows kept out of the build (`on_bad_rows = "quarantine"`).
    pub rejected: i64,
    /// Problems that do not stop the build (additive schema drift).
    pub warnings: Vec<Diagnostic>,
}

/// One row a CSV reader could not read.
struct BadRow {
    file: String,
    line: i64,
    column: String,
    error: String,
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
) -> Result<Ingested> {
    let Some(pattern) = &config.path else {
        let table = relation(&project.root, config);
        check_table(s, project, name, config, &table)?;
        let found = describe(s, &table)?;
        let warnings = compare_declared(
            project,
            name,
            config,
            &format!("table `{}`", config.table.as_deref().unwrap_or_default()),
            &found,
        )?;
        return Ok(Ingested {
            relation: with_declared_types(config, &table),
            rejected: 0,
            warnings,
        });
    };
    let paths = source_paths(&project.root, pattern);
    if paths.is_empty() {
        return Err(missing_files(project, name, pattern));
    }
    let warnings = check_declared_columns(s, project, name, config, &paths)?;
    let table = ingested_name(name, config, files);
    let quoted = crate::engine::quote_ident(&table);
    let qualified = match mode {
        Ingest::Warehouse => format!("{SOURCE_SCHEMA}.{quoted}"),
        Ingest::Temp => format!("temp.main.{quoted}"),
    };
    let create = match mode {
        Ingest::Warehouse => format!("CREATE TABLE IF NOT EXISTS {qualified}"),
        Ingest::Temp => format!("CREATE TEMP TABLE IF NOT EXISTS {quoted}"),
    };
    // `CREATE ... IF NOT EXISTS ... AS SELECT` would still read the files.
    let exists = crate::engine::relation_exists(s, &qualified);
    let quarantine = config.on_bad_rows == OnBadRows::Quarantine;
    let rejects_table = format!(
        "{REJECTS_SCHEMA}.{}",
        crate::engine::quote_ident(&name.to_lowercase())
    );
    if exists {
        let rejected = match mode {
            Ingest::Warehouse if quarantine => count_rows(s, REJECTS_SCHEMA, &name.to_lowercase())?,
            _ => 0,
        };
        return Ok(Ingested {
            relation: qualified,
            rejected,
            warnings,
        });
    }
    let is_csv = !matches!(
        config.effective_format(),
        Some(SourceFormat::Parquet | SourceFormat::Json)
    );
    let bad = if is_csv {
        read_csv_files(s, project, name, config, &paths, (&create, &qualified))?
    } else {
        s.execute(&format!(
            "{create} AS SELECT * FROM {}",
            file_reader(config, &paths, "")
        ))
        .map_err(|e| unreadable(project, name, &e))?;
        0
    };
    if bad > 0 && !quarantine {
        let rows = bad_rows(s)?;
        // Not kept: the next command reads the files again.
        s.execute(&format!("DROP TABLE IF EXISTS {qualified}"))?;
        return Err(bad_rows_error(project, name, &rows));
    }
    if quarantine && mode == Ingest::Warehouse {
        let rows = if is_csv {
            format!("SELECT * FROM temp.main.{REJECTED} ORDER BY file, line")
        } else {
            "SELECT NULL::VARCHAR AS file, NULL::BIGINT AS line, NULL::VARCHAR AS \"column\", \
             NULL::VARCHAR AS error, NULL::VARCHAR AS row_text, NULL::TIMESTAMP AS unit_start WHERE false"
                .to_string()
        };
        s.execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {REJECTS_SCHEMA}; CREATE OR REPLACE TABLE {rejects_table} AS {rows}"
        ))?;
    }
    Ok(Ingested {
        relation: qualified,
        rejected: if quarantine { bad } else { 0 },
        warnings,
    })
}

fn count_rows(s: &dyn Session, schema: &str, table: &str) -> Result<i64> {
    let qualified = format!("{schema}.{}", crate::engine::quote_ident(table));
    if !crate::engine::relation_exists(s, &qualified) {
        return Ok(0);
    }
    let rows = s.query(&format!(
        "SELECT count(*) FROM {schema}.{}",
        crate::engine::quote_ident(table)
    ))?;
    Ok(rows.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

/// Read CSV files one by one (DuckDB keeps bad rows aside only per scan, not
/// with `union_by_name`), put them together by column name with `create`
/// into `target`, and return how many rows could not be read; those are in
/// `temp.main.hubforge_rejected`. A single file is read straight into `target`.
fn read_csv_files(
    s: &dyn Session,
    project: &Project,
    name: &str,
    config: &SourceConfig,
    paths: &[PathBuf],
    (create, target): (&str, &str),
) -> Result<i64> {
    let root = format!("{}/", project.root.to_string_lossy());
    s.execute(&format!(
        "CREATE OR REPLACE TEMP TABLE {REJECTED} (file VARCHAR, line BIGINT, \"column\" VARCHAR, \
         error VARCHAR, row_text VARCHAR, unit_start TIMESTAMP)"
    ))?;
    let single = paths.len() == 1;
    let mut parts = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let (part, create_part) = if single {
            (target.to_string(), create.to_string())
        } else {
            (
                format!("temp.main.hubforge_part_{i}"),
                format!("CREATE OR REPLACE TEMP TABLE hubforge_part_{i}"),
            )
        };
        s.execute(&format!(
            "DROP TABLE IF EXISTS temp.main.{REJECT_ERRORS}; DROP TABLE IF EXISTS temp.main.{REJECT_SCANS}; \
             {create_part} AS SELECT * FROM {}",
            file_reader(
                config,
                std::slice::from_ref(path),
                &format!(", store_rejects = true, rejects_table = '{REJECT_ERRORS}', rejects_scan = '{REJECT_SCANS}'")
            )
        ))
        .map_err(|e| unreadable(project, name, &e))?;
        let unit = rejected_unit(s, config, &part)?;
        s.execute(&format!(
            "INSERT INTO temp.main.{REJECTED} SELECT replace(s.file_path, {root}, ''), CAST(e.line AS BIGINT), \
             e.column_name, coalesce(e.error_message, CAST(e.error_type AS VARCHAR)), e.csv_line, {unit} \
             FROM temp.main.{REJECT_ERRORS} e JOIN temp.main.{REJECT_SCANS} s \
             ON e.scan_id = s.scan_id AND e.file_id = s.file_id",
            root = quote_str(&root)
        ))?;
        parts.push(part);
    }
    if single {
        return rejected_count(s);
    }
    let union = parts
        .iter()
        .map(|p| format!("SELECT * FROM {p}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL BY NAME ");
    s.execute(&format!("{create} AS {union}"))
        .map_err(|e| unreadable(project, name, &e))?;
    let drop: String = parts
        .iter()
        .map(|p| format!("DROP TABLE IF EXISTS {p};"))
        .collect();
    s.execute(&drop)?;
    rejected_count(s)
}

/// Rows the CSV reads of this command could not read.
fn rejected_count(s: &dyn Session) -> Result<i64> {
    let rows = s.query(&format!("SELECT count(*) FROM temp.main.{REJECTED}"))?;
    Ok(rows.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

/// The unit (of the source's time column) a rejected CSV line belongs to, as
/// an expression over the rejects table's `e.csv_line`: the line's field in
/// the time column's position read as a time, or NULL when that is the
/// unreadable field or the source has no time column.
fn rejected_unit(s: &dyn Session, config: &SourceConfig, part: &str) -> Result<String> {
    let Some(tc) = &config.time_column else {
        return Ok("NULL::TIMESTAMP".into());
    };
    let Some(index) = describe(s, part)?
        .iter()
        .position(|c| *c == tc.to_lowercase())
    else {
        return Ok("NULL::TIMESTAMP".into());
    };
    let delimiter = config.delimiter.as_deref().unwrap_or(",");
    let quote = config.quote.as_deref().unwrap_or("\"");
    let field = format!(
        "trim(string_split(e.csv_line, {})[{}], {})",
        quote_str(delimiter),
        index + 1,
        quote_str(quote)
    );
    let parsed = match (&config.timestampformat, &config.dateformat) {
        (Some(f), _) | (None, Some(f)) => format!(
            "coalesce(try_strptime({field}, {}), TRY_CAST({field} AS TIMESTAMP))",
            quote_str(f)
        ),
        (None, None) => format!("TRY_CAST({field} AS TIMESTAMP)"),
    };
    Ok(format!(
        "CAST(date_trunc('{}', {parsed}) AS TIMESTAMP)",
        unit_sql(config.unit)
    ))
}

/// The rows of a source the CSV reads of this command kept out of the build
/// (`on_bad_rows = "quarantine"`): file, line, column, error, the line's
/// text, and the start of the unit it belongs to (as text), by file and line.
/// Read right after the source is: the next source's reads replace them.
pub fn quarantined_rows(s: &dyn Session) -> Result<crate::engine::Rows> {
    s.query(&format!(
        "SELECT file, line, \"column\", error, row_text, \
         strftime(unit_start, '%Y-%m-%d %H:%M:%S') FROM temp.main.{REJECTED} ORDER BY file, line"
    ))
}

/// [`rejected_units`] of the rows the CSV reads of this command kept out.
pub fn quarantined_units(s: &dyn Session, unit: Unit) -> Result<(Vec<Interval>, i64)> {
    units_of_rejects(s, &format!("temp.main.{REJECTED}"), "unit_start", unit)
}

/// The units of a source's time column holding rows kept out of the build,
/// and how many such rows have no readable time.
pub fn rejected_units(s: &dyn Session, source: &str, unit: Unit) -> Result<(Vec<Interval>, i64)> {
    let table = format!(
        "{REJECTS_SCHEMA}.{}",
        crate::engine::quote_ident(&source.to_lowercase())
    );
    // Kept by an older hubforge, without the unit.
    let has_unit = s.query(&format!(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = {} \
         AND table_name = {} AND column_name = 'unit_start'",
        quote_str(REJECTS_SCHEMA),
        quote_str(&source.to_lowercase())
    ))?;
    let unit_start = match has_unit.rows.first().and_then(|r| r[0].as_i64()) {
        Some(1) => "unit_start",
        _ => "NULL::TIMESTAMP",
    };
    units_of_rejects(s, &table, unit_start, unit)
}

fn units_of_rejects(
    s: &dyn Session,
    table: &str,
    unit_start: &str,
    unit: Unit,
) -> Result<(Vec<Interval>, i64)> {
    let rows = s.query(&format!(
        "SELECT strftime({unit_start}, '%Y-%m-%dT%H:%M:%S'), count(*) FROM {table} GROUP BY 1 ORDER BY 1 NULLS LAST"
    ))?;
    let mut units = Vec::new();
    let mut unknown = 0;
    for row in &rows.rows {
        match row[0].as_str().and_then(|t| parse_point(t).ok()) {
            Some(start) => units.push(Interval::unit_at(unit, start)),
            None => unknown += row[1].as_i64().unwrap_or(0),
        }
    }
    Ok((units, unknown))
}

/// The rows that could not be read, by file and line.
fn bad_rows(s: &dyn Session) -> Result<Vec<BadRow>> {
    let rows = s.query(&format!(
        "SELECT file, line, coalesce(\"column\", ''), coalesce(error, '') FROM temp.main.{REJECTED} ORDER BY 1, 2"
    ))?;
    Ok(rows
        .rows
        .iter()
        .map(|r| BadRow {
            file: r[0].to_text().unwrap_or_default(),
            line: r[1].as_i64().unwrap_or(0),
            column: r[2].to_text().unwrap_or_default(),
            error: r[3].to_text().unwrap_or_default(),
        })
        .collect())
}

fn bad_rows_error(project: &Project, name: &str, bad: &[BadRow]) -> Error {
    let first = &bad[0];
    let error = clean_engine_message(project, &first.error);
    // DuckDB says which column first; the column is named in the message already.
    let error = error
        .split_once(". ")
        .filter(|(head, _)| head.starts_with("Error when converting column"))
        .map_or(error.clone(), |(_, rest)| rest.to_string());
    let mut d = Diagnostic::error(
        Code::SourceBadRows,
        format!(
            "source `{name}`: {}:{} column `{}`: {error}",
            first.file, first.line, first.column
        ),
    )
    .at(crate::config::source_location(&project.config_text, name));
    for row in bad.iter().skip(1).take(4) {
        d = d.with_note(format!(
            "also {}:{} column `{}`",
            row.file, row.line, row.column
        ));
    }
    if bad.len() > 5 {
        d = d.with_note(format!("{} bad rows in all", bad.len()));
    }
    Error::BadData(
        d.with_help(format!(
            "fix the row in the file, declare how to read it (columns, dateformat, null) or set on_bad_rows = \"quarantine\" in [sources.{name}] to build without it"
        ))
        .into(),
    )
}

fn missing_files(project: &Project, name: &str, pattern: &str) -> Error {
    let is_glob = pattern.contains(['*', '?', '[']);
    let message = if is_glob {
        format!("source `{name}`: no file matches `{pattern}`")
    } else {
        format!("source `{name}`: file `{pattern}` does not exist")
    };
    Diagnostic::error(Code::SourceMissing, message)
        .at(crate::config::source_location(&project.config_text, name))
        .with_help(format!(
            "`path` is relative to the directory of hubforge.toml; fix it in [sources.{name}] or add the files"
        ))
        .into()
}

/// A table source's table must exist.
fn check_table(
    s: &dyn Session,
    project: &Project,
    name: &str,
    config: &SourceConfig,
    relation: &str,
) -> Result<()> {
    if s.query(&format!("SELECT * FROM {relation} LIMIT 0"))
        .is_err()
    {
        return Err(Diagnostic::error(
            Code::SourceMissing,
            format!(
                "source `{name}`: table `{}` does not exist in the warehouse",
                config.table.as_deref().unwrap_or_default()
            ),
        )
        .at(crate::config::source_location(&project.config_text, name))
        .with_help(format!(
            "create it, or fix `table` in [sources.{name}] (schema.table)"
        ))
        .into());
    }
    Ok(())
}

/// A read the engine refused, as a diagnostic at the source's declaration.
fn unreadable(project: &Project, name: &str, e: &Error) -> Error {
    let text = match e {
        Error::Engine(m) => m.clone(),
        other => other.to_string(),
    };
    Error::BadData(
        Diagnostic::error(
            Code::SourceUnreadable,
            format!("source `{name}` cannot be read: {}", clean_engine_message(project, &text)),
        )
        .at(crate::config::source_location(&project.config_text, name))
        .with_help(format!(
            "check the files, or declare how to read them in [sources.{name}]: format, delimiter, header, quote, dateformat, columns"
        ))
        .into(),
    )
}

/// The engine's message without the statement it ran, shortened to its first
/// line and with paths relative to the project.
fn clean_engine_message(project: &Project, text: &str) -> String {
    let root = format!("{}/", project.root.to_string_lossy());
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    first
        .replace(&root, "")
        .trim_end_matches(':')
        .trim()
        .to_string()
}

/// With declared columns, each file must have them: a missing column is an
/// error naming the file; columns not declared are reported as warnings.
fn check_declared_columns(
    s: &dyn Session,
    project: &Project,
    name: &str,
    config: &SourceConfig,
    paths: &[PathBuf],
) -> Result<Vec<Diagnostic>> {
    if config.columns.as_ref().is_none_or(|c| c.is_empty()) {
        return Ok(Vec::new());
    }
    let mut warnings = Vec::new();
    for path in paths {
        let rel = path
            .strip_prefix(&project.root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/");
        let mut plain = config.clone();
        plain.columns = None;
        let reader = match config.effective_format() {
            Some(SourceFormat::Parquet | SourceFormat::Json) => {
                file_reader(&plain, std::slice::from_ref(path), "")
            }
            _ => file_reader(&plain, std::slice::from_ref(path), ", all_varchar = true"),
        };
        let found = describe(s, &reader).map_err(|e| unreadable(project, name, &e))?;
        warnings.extend(compare_declared(
            project,
            name,
            config,
            &format!("file {rel}"),
            &found,
        )?);
    }
    Ok(warnings)
}

/// A source's snapshot: rows and content checksum per unit of its time
/// column (or of all its rows), read from `relation` by one scan, in the
/// SQL of the engine that holds it.
pub fn snapshot(
    s: &dyn Session,
    dialect: Dialect,
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
    let hash = dialect.row_hash("s");
    let sum = dialect.hash_sum("h");
    match &config.time_column {
        Some(tc) => {
            let unit = config.unit;
            // Grouped by the truncated time itself; only the result is formatted.
            let q = format!(
                "SELECT {}, count(*), {sum} FROM (\
                 SELECT CAST(date_trunc('{}', {col}) AS TIMESTAMP) AS u, {hash} AS h \
                 FROM (SELECT * FROM {relation}) s WHERE {col} IS NOT NULL) GROUP BY u",
                dialect.iso_time("u"),
                unit_sql(unit),
                col = dialect.ident(tc)
            );
            snap.units = unit_snapshots(name, unit, &s.query(&q).map_err(context)?)?;
        }
        None => {
            let q = format!(
                "SELECT count(*), {sum} FROM (SELECT {hash} AS h FROM (SELECT * FROM {relation}) s)"
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

/// A snapshot's units from rows of (unit start as `YYYY-MM-DDTHH:MM:SS`,
/// row count, content hash), whichever engine computed them.
pub fn unit_snapshots(
    name: &str,
    unit: Unit,
    rows: &crate::engine::Rows,
) -> Result<std::collections::BTreeMap<Interval, (i64, String)>> {
    rows.rows
        .iter()
        .map(|row| {
            let start = row[0]
                .as_str()
                .and_then(|t| parse_point(t).ok())
                .ok_or_else(|| Error::Engine(format!("source `{name}`: unreadable time bucket")))?;
            Ok((
                Interval::unit_at(unit, start),
                (
                    row[1].as_i64().unwrap_or(0),
                    row[2].to_text().unwrap_or_default(),
                ),
            ))
        })
        .collect()
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

/// A file's (or table's) columns against the declared ones: a missing column
/// is an error, an undeclared one a warning.
fn compare_declared(
    project: &Project,
    name: &str,
    config: &SourceConfig,
    what: &str,
    found: &[String],
) -> Result<Vec<Diagnostic>> {
    let Some(columns) = config.columns.as_ref().filter(|c| !c.is_empty()) else {
        return Ok(Vec::new());
    };
    let declared: Vec<String> = columns.keys().map(|c| c.to_lowercase()).collect();
    let mut warnings = Vec::new();
    let missing: Vec<&String> = declared.iter().filter(|c| !found.contains(c)).collect();
    let extra: Vec<&String> = found.iter().filter(|c| !declared.contains(c)).collect();
    let list = |cols: &[&String]| {
        cols.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let location = crate::config::source_location(&project.config_text, name);
    if !missing.is_empty() {
        let mut d = Diagnostic::error(
            Code::SchemaDrift,
            format!(
                "source `{name}`: {what} has no column {} (declared in `columns`)",
                list(&missing)
            ),
        )
        .at(location);
        if !extra.is_empty() {
            d = d.with_note(format!("it has {} instead: renamed?", list(&extra)));
        }
        return Err(Error::BadData(
                d.with_help(format!(
                    "fix the file, or change `columns` of [sources.{name}] if the source changed for good"
                ))
                .into(),
            ));
    }
    if !extra.is_empty() {
        warnings.push(
            Diagnostic::warning(
                Code::SchemaDrift,
                format!(
                    "source `{name}`: {what} has column{} {} not declared in `columns`",
                    crate::diagnostics::plural(extra.len()),
                    list(&extra)
                ),
            )
            .at(location)
            .with_help(format!(
                "declare {} in `columns` of [sources.{name}] to read {} with a known type",
                if extra.len() == 1 { "it" } else { "them" },
                if extra.len() == 1 { "it" } else { "them" }
            )),
        );
    }
    Ok(warnings)
}

/// The columns and types a source had at its last build (types empty when
/// not recorded).
pub struct Recorded<'a> {
    pub columns: &'a [String],
    pub types: &'a [String],
    pub files: &'a [FileSignature],
}

impl Recorded<'_> {
    fn type_of(&self, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.types.get(i).map(String::as_str)
    }
}

/// Schema drift of a source without declared columns, file by file (the files
/// new or changed since the last build) against the columns recorded then:
/// new columns are a warning; a file without a recorded column, or a column
/// whose type changed, changes data already built and is an error.
pub fn drift(
    s: &dyn Session,
    project: &Project,
    name: &str,
    config: &SourceConfig,
    recorded: &Recorded,
    now: &[(String, String)],
) -> Result<(Option<Diagnostic>, Option<Diagnostic>)> {
    // Each file's columns (a table source is one "file": the table).
    let mut files: Vec<(String, Vec<(String, String)>)> = Vec::new();
    match config
        .path
        .as_deref()
        .filter(|_| config.cluster_path().is_none())
    {
        Some(pattern) => {
            let paths = source_paths(&project.root, pattern);
            let changed = paths.iter().filter(|p| {
                !file_signatures(&project.root, std::slice::from_ref(p))
                    .iter()
                    .all(|f| recorded.files.contains(f))
            });
            for path in changed {
                let found = describe_typed(s, &file_reader(config, std::slice::from_ref(path), ""))
                    .map_err(|e| unreadable(project, name, &e))?;
                let rel = path
                    .strip_prefix(&project.root)
                    .unwrap_or(path)
                    .to_string_lossy()
                    .replace('\\', "/");
                files.push((rel, found));
            }
        }
        None => files.push((String::new(), now.to_vec())),
    }
    let list = |cols: &[&String]| {
        cols.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Columns whose type as read now (all files together) is not the one
    // built from: the history would be read differently.
    let retyped: Vec<(&String, &String, &str)> = now
        .iter()
        .filter_map(|(c, ty)| {
            let before = recorded.type_of(c)?;
            (before != ty).then_some((c, ty, before))
        })
        .collect();
    let mut lost_in: Vec<(String, Vec<&String>, Vec<&String>)> = Vec::new();
    let mut added_in: Vec<(String, Vec<&String>)> = Vec::new();
    let mut retyped_in: Vec<(String, String)> = Vec::new();
    for (file, found) in &files {
        let found_names: Vec<&String> = found.iter().map(|(c, _)| c).collect();
        let lost: Vec<&String> = recorded
            .columns
            .iter()
            .filter(|c| !found_names.contains(c))
            .collect();
        let added: Vec<&String> = found_names
            .iter()
            .copied()
            .filter(|c| !recorded.columns.contains(c))
            .collect();
        if !lost.is_empty() {
            lost_in.push((file.clone(), lost, added.clone()));
        }
        if !added.is_empty() {
            added_in.push((file.clone(), added));
        }
        for (c, ty) in found {
            if recorded.type_of(c).is_some_and(|before| before != ty)
                && retyped.iter().any(|(r, _, _)| *r == c)
            {
                retyped_in.push((
                    file.clone(),
                    format!(
                        "`{c}` as {ty} ({} at the last build)",
                        recorded.type_of(c).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    let location = crate::config::source_location(&project.config_text, name);
    let whose = |file: &str| {
        if let Some(path) = config.cluster_path().filter(|_| file.is_empty()) {
            format!("files `{path}`")
        } else if file.is_empty() {
            format!("table `{}`", config.table.as_deref().unwrap_or_default())
        } else {
            format!("file {file}")
        }
    };
    let warning = added_in.first().map(|(file, added)| {
        let mut d = Diagnostic::warning(
            Code::SchemaDrift,
            format!(
                "source `{name}`: {} has new column{} {} since the last build",
                whose(file),
                crate::diagnostics::plural(added.len()),
                list(added)
            ),
        )
        .at(location.clone());
        if added_in.len() > 1 {
            d = d.with_note(format!("and {} more files", added_in.len() - 1));
        }
        d.with_help(format!(
            "declare the source's `columns` in [sources.{name}] to read them with known types"
        ))
    });
    let accept = format!("or accept the new schema with `hubforge build --accept-schema {name}`");
    let lost_error = lost_in.first().map(|(file, lost, added)| {
        let mut d = Diagnostic::error(
            Code::SchemaDrift,
            format!(
                "source `{name}`: {} has no column {} (read at the last build)",
                whose(file),
                list(lost)
            ),
        )
        .at(location.clone());
        if !added.is_empty() {
            d = d.with_note(format!("it has {} instead: renamed?", list(added)));
        }
        for (other, cols, _) in lost_in.iter().skip(1) {
            d = d.with_note(format!("{} has no column {}", whose(other), list(cols)));
        }
        for (other, what) in &retyped_in {
            d = d.with_note(format!("{} reads column {what}", whose(other)));
        }
        d.with_help(format!(
            "fix the file, declare `columns` in [sources.{name}] and adapt the models reading it, {accept}"
        ))
    });
    let retyped_error = || {
        let what = match retyped_in.first() {
            Some((file, what)) => format!("{} reads column {what}", whose(file)),
            None => {
                let (c, ty, before) = retyped[0];
                format!("column `{c}` is now read as {ty} ({before} at the last build)")
            }
        };
        let mut d = Diagnostic::error(Code::SchemaDrift, format!("source `{name}`: {what}"))
            .at(location.clone());
        for (other, what) in retyped_in.iter().skip(1) {
            d = d.with_note(format!("{} reads column {what}", whose(other)));
        }
        d.with_note("the data already built was read with the old type")
            .with_help(format!(
                "fix the file, declare `columns` in [sources.{name}] to read it with one type \
                 (values that do not fit become bad rows), {accept}"
            ))
    };
    let error = lost_error.or_else(|| (!retyped.is_empty()).then(retyped_error));
    Ok((warning, error))
}
