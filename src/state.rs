//! The state store: what hubforge knows about the warehouse, kept in the
//! warehouse itself (schema `_hubforge`) so that data and the record of it
//! commit in the same transaction.
//!
//! State is read once per command into a [`State`] value; writes are SQL
//! statements that the build runs inside its publish transaction.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;

use crate::engine::{Session, Value, quote_str};
use crate::error::{Error, Result};
use crate::fingerprint::ModelVersion;
use crate::interval::{Interval, IntervalSet, parse_point};

pub const SCHEMA: &str = "_hubforge";
/// The state schema this hubforge reads and writes.
pub const SCHEMA_VERSION: u32 = 5;

/// Migrations, in order: entry `i` takes state from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the initial layout.
    r#"
    CREATE SCHEMA IF NOT EXISTS _hubforge;
    CREATE TABLE _hubforge.meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
    CREATE TABLE _hubforge.model_versions (
        model VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, own VARCHAR NOT NULL,
        metadata VARCHAR NOT NULL, version VARCHAR NOT NULL, sql VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL, PRIMARY KEY (model, fingerprint));
    CREATE TABLE _hubforge.models (
        model VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL,
        metadata VARCHAR NOT NULL, columns VARCHAR NOT NULL, data_table VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL);
    CREATE TABLE _hubforge.intervals (
        model VARCHAR NOT NULL, start_ts TIMESTAMP NOT NULL, end_ts TIMESTAMP NOT NULL,
        fingerprint VARCHAR NOT NULL, built_fingerprint VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL, row_count BIGINT NOT NULL, checksum VARCHAR NOT NULL);
    CREATE TABLE _hubforge.source_snapshots (
        source VARCHAR NOT NULL, start_ts TIMESTAMP, end_ts TIMESTAMP,
        row_count BIGINT NOT NULL, content_hash VARCHAR NOT NULL, run_id VARCHAR NOT NULL);
    CREATE TABLE _hubforge.source_files (
        source VARCHAR NOT NULL, path VARCHAR NOT NULL, size BIGINT NOT NULL,
        modified_ns BIGINT NOT NULL, run_id VARCHAR NOT NULL);
    CREATE TABLE _hubforge.schemas (node VARCHAR PRIMARY KEY, columns VARCHAR NOT NULL);
    CREATE TABLE _hubforge.runs (
        run_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL, command VARCHAR NOT NULL,
        user_name VARCHAR NOT NULL, plan VARCHAR NOT NULL, summary VARCHAR NOT NULL);
    CREATE TABLE _hubforge.pending (
        model VARCHAR NOT NULL, start_ts TIMESTAMP NOT NULL, end_ts TIMESTAMP NOT NULL,
        reason VARCHAR NOT NULL, change VARCHAR NOT NULL, run_id VARCHAR NOT NULL);
    CREATE TABLE _hubforge.decisions (
        run_id VARCHAR NOT NULL, model VARCHAR NOT NULL, start_ts TIMESTAMP, end_ts TIMESTAMP,
        action VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, user_name VARCHAR NOT NULL,
        decided_at TIMESTAMP NOT NULL, note VARCHAR NOT NULL);
    CREATE TABLE _hubforge.fulfillment (
        run_id VARCHAR NOT NULL, product VARCHAR NOT NULL, destination VARCHAR NOT NULL,
        action VARCHAR NOT NULL, reason VARCHAR NOT NULL, intervals VARCHAR NOT NULL,
        status VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, released_at TIMESTAMP);
    "#,
    // 1 → 2: sources' column types, to find columns whose type changed.
    r#"
    ALTER TABLE _hubforge.schemas ADD COLUMN types VARCHAR DEFAULT '[]';
    "#,
    // 2 → 3: validation of each run: metrics before/after per model and unit,
    // and what audits and thresholds found.
    r#"
    CREATE TABLE _hubforge.validations (
        run_id VARCHAR NOT NULL, model VARCHAR NOT NULL, start_ts TIMESTAMP, end_ts TIMESTAMP,
        full_rebuild BOOLEAN NOT NULL, unit VARCHAR, before VARCHAR, after VARCHAR);
    CREATE TABLE _hubforge.validation_findings (
        run_id VARCHAR NOT NULL, model VARCHAR NOT NULL, finding VARCHAR NOT NULL);
    "#,
    // 3 → 4: fulfillment manifests, and destinations paused from the command line.
    r#"
    CREATE TABLE _hubforge.manifests (
        run_id VARCHAR PRIMARY KEY, created_at TIMESTAMP NOT NULL, manifest VARCHAR NOT NULL);
    CREATE TABLE _hubforge.destinations (
        destination VARCHAR PRIMARY KEY, paused BOOLEAN NOT NULL, user_name VARCHAR NOT NULL,
        note VARCHAR NOT NULL, changed_at TIMESTAMP NOT NULL);
    "#,
    // 4 → 5: a model's rows kept as parts (tables) under one view, so that a
    // partial rebuild publishes its rows without copying them.
    r#"
    CREATE TABLE _hubforge.data_parts (
        model VARCHAR NOT NULL, seq INTEGER NOT NULL, part VARCHAR NOT NULL,
        covers VARCHAR, excluded VARCHAR NOT NULL);
    "#,
];

/// One built interval of a model (for tables and views: the whole model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalRecord {
    pub interval: Interval,
    /// The logic fingerprint the data is current under.
    pub fingerprint: String,
    /// The fingerprint it was actually built with (differs after a change that
    /// did not reach this model, or an explicit decision to keep it).
    pub built_fingerprint: String,
    pub run_id: String,
    pub rows: i64,
    pub checksum: String,
}

/// The published record of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedModel {
    pub kind: String,
    pub fingerprint: String,
    pub metadata: String,
    pub columns: Vec<String>,
    /// The relation in `_hubforge_data` holding the model's rows (empty for
    /// views and sources); the published view in `main` reads it. A table, or
    /// a view over the model's [`DataPart`]s.
    pub data_table: String,
    pub run_id: String,
}

/// One table of a model whose rows are kept in parts: a partial rebuild adds
/// its staged table as a part and hides the rows it replaces in the older
/// parts, instead of copying its rows into the model's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPart {
    /// The table in `_hubforge_data`.
    pub table: String,
    /// The intervals its rows lie in (`None`: not known, the model's first table).
    pub covers: Option<IntervalSet>,
    /// The intervals whose rows in it are replaced by a later part.
    pub excluded: IntervalSet,
}

impl DataPart {
    /// Whether every row of the part is replaced by a later one.
    pub fn is_replaced(&self) -> bool {
        self.covers
            .as_ref()
            .is_some_and(|c| c.subtract(&self.excluded).is_empty())
    }
}

/// What was read from a source when it was last built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// Per unit interval (sources with a time column): rows and content hash.
    pub units: BTreeMap<Interval, (i64, String)>,
    /// The whole source (no time column, seeds).
    pub whole: Option<(i64, String)>,
    pub files: Vec<FileSignature>,
}

/// A source file's size and modification time, to skip rescans of unchanged files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileSignature {
    pub path: String,
    pub size: i64,
    pub modified_ns: i64,
}

/// Work left stale by a run whose reason would otherwise be forgotten (late
/// source data or a restatement reaching models outside its scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecord {
    pub interval: Interval,
    pub change: String,
    pub reason: String,
    pub run_id: String,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: String,
    pub seq: i64,
    pub started_at: String,
    pub status: String,
}

/// A stored model version, decoded on first use: planning needs only the few
/// versions a change is compared with.
#[derive(Debug, Clone, Default)]
pub struct StoredVersion {
    pub own: String,
    json: String,
    sql: String,
    decoded: std::sync::OnceLock<Option<ModelVersion>>,
}

impl StoredVersion {
    pub fn new(own: String, json: String, sql: String) -> Self {
        StoredVersion {
            own,
            json,
            sql,
            decoded: std::sync::OnceLock::new(),
        }
    }

    /// A fresh copy of the version, decoded without keeping it here.
    pub fn decode(&self) -> Option<ModelVersion> {
        let mut v: ModelVersion = serde_json::from_str(&self.json).ok()?;
        v.sql = self.sql.clone();
        Some(v)
    }

    /// The version, or None when its record cannot be read (treated as unknown).
    pub fn get(&self) -> Option<&ModelVersion> {
        self.decoded.get_or_init(|| self.decode()).as_ref()
    }
}

/// Everything state holds, read at once.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// `None` when the warehouse has no state yet.
    pub schema_version: Option<u32>,
    /// (model lowercase, fingerprint) → version.
    pub versions: HashMap<(String, String), StoredVersion>,
    /// (model lowercase, own fingerprint) → the fingerprints of versions with that logic.
    pub by_own: HashMap<(String, String), Vec<String>>,
    /// Model lowercase → its published record.
    pub models: BTreeMap<String, PublishedModel>,
    /// Model lowercase → its parts, oldest first, when its `data_table` is a
    /// view over parts (absent when it is a table).
    pub parts: BTreeMap<String, Vec<DataPart>>,
    /// Model lowercase → built intervals, sorted.
    pub intervals: BTreeMap<String, Vec<IntervalRecord>>,
    pub sources: BTreeMap<String, SourceSnapshot>,
    /// Node lowercase → columns, for sources and seeds.
    pub schemas: BTreeMap<String, Vec<String>>,
    /// Node lowercase → the types of `schemas`' columns, in the same order
    /// (empty when recorded by a hubforge that did not keep types).
    pub schema_types: BTreeMap<String, Vec<String>>,
    pub pending: BTreeMap<String, Vec<PendingRecord>>,
    /// The last run that published.
    pub last_run: Option<RunRecord>,
    /// The highest run number in the run log (failed and interrupted runs too).
    pub max_run_seq: i64,
}

impl State {
    /// The intervals of `model` as a set.
    pub fn built(&self, model: &str) -> IntervalSet {
        IntervalSet::from_intervals(
            self.intervals
                .get(model)
                .into_iter()
                .flatten()
                .map(|r| r.interval),
        )
    }

    pub fn next_run_seq(&self) -> i64 {
        self.max_run_seq
            .max(self.last_run.as_ref().map_or(0, |r| r.seq))
            + 1
    }
}

impl crate::change::VersionLookup for State {
    fn version(&self, model: &str, fingerprint: &str) -> Option<&ModelVersion> {
        self.versions
            .get(&(model.to_string(), fingerprint.to_string()))
            .and_then(StoredVersion::get)
    }
}

/// The state schema version in the warehouse, if any.
pub fn stored_version(s: &dyn Session) -> Result<Option<u32>> {
    if !crate::engine::relation_exists(s, &format!("{SCHEMA}.meta")) {
        return Ok(None);
    }
    let rows = s.query(&format!(
        "SELECT value FROM {SCHEMA}.meta WHERE key = 'schema_version'"
    ))?;
    let version = rows
        .rows
        .first()
        .and_then(|r| r[0].as_str().and_then(|v| v.parse().ok()))
        .ok_or_else(|| Error::Engine(format!("{SCHEMA}.meta has no readable schema_version")))?;
    Ok(Some(version))
}

fn newer_state_error(found: u32) -> Error {
    Error::Engine(format!(
        "this warehouse's state was written by a newer hubforge (state schema version {found}, this hubforge knows up to {SCHEMA_VERSION}); upgrade hubforge"
    ))
}

/// The whole state store as statements that recreate it in a new store of
/// the same version (after [`migrate`]): every table emptied, then its rows
/// as literals of their own types.
pub fn dump(s: &dyn Session) -> Result<String> {
    let columns = s.query(&format!(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() \
         WHERE schema_name = {} ORDER BY table_name, column_index",
        quote_str(SCHEMA)
    ))?;
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for row in &columns.rows {
        let text = |i: usize| row[i].to_text().unwrap_or_default();
        tables.entry(text(0)).or_default().push((text(1), text(2)));
    }
    let mut sql = String::new();
    for (table, columns) in &tables {
        let relation = format!("{SCHEMA}.{}", crate::engine::quote_ident(table));
        sql.push_str(&format!("DELETE FROM {relation};\n"));
        let text_of = columns
            .iter()
            .map(|(c, _)| format!("CAST({} AS VARCHAR)", crate::engine::quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = s.query(&format!("SELECT {text_of} FROM {relation}"))?;
        for chunk in rows.rows.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|row| {
                    let literals: Vec<String> = row
                        .iter()
                        .zip(columns)
                        .map(|(v, (_, ty))| match v.to_text() {
                            None => "NULL".to_string(),
                            Some(t) => format!("CAST({} AS {ty})", quote_str(&t)),
                        })
                        .collect();
                    format!("({})", literals.join(", "))
                })
                .collect();
            sql.push_str(&format!(
                "INSERT INTO {relation} VALUES {};\n",
                values.join(", ")
            ));
        }
    }
    Ok(sql)
}

/// Bring the state schema to [`SCHEMA_VERSION`], in one transaction.
pub fn migrate(s: &dyn Session) -> Result<()> {
    let from = stored_version(s)?.unwrap_or(0);
    if from > SCHEMA_VERSION {
        return Err(newer_state_error(from));
    }
    if from == SCHEMA_VERSION {
        return Ok(());
    }
    let mut sql = String::from("BEGIN TRANSACTION;\n");
    for step in &MIGRATIONS[from as usize..SCHEMA_VERSION as usize] {
        sql.push_str(step);
    }
    sql.push_str(&format!(
        "INSERT OR REPLACE INTO {SCHEMA}.meta VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;"
    ));
    s.execute(&sql).inspect_err(|_| {
        let _ = s.execute("ROLLBACK");
    })
}

fn text(v: &Value) -> String {
    v.to_text().unwrap_or_default()
}

/// A number of state; a value that cannot be read is an error, never zero.
fn number(v: &Value, what: &str) -> Result<i64> {
    v.as_i64().ok_or_else(|| unreadable(what, v))
}

/// A JSON list of names of state.
fn names(v: &Value, what: &str) -> Result<Vec<String>> {
    serde_json::from_str(&text(v)).map_err(|_| unreadable(what, v))
}

/// A JSON list of intervals (`START..END`) of state.
fn interval_set(v: &Value, what: &str) -> Result<IntervalSet> {
    let list = names(v, what)?;
    let intervals: std::result::Result<Vec<Interval>, _> =
        list.iter().map(|i| i.parse::<Interval>()).collect();
    Ok(IntervalSet::from_intervals(
        intervals.map_err(|_| unreadable(what, v))?,
    ))
}

fn interval_list(set: &IntervalSet) -> String {
    let list: Vec<String> = set.iter().map(Interval::to_string).collect();
    serde_json::to_string(&list).expect("json")
}

fn unreadable(what: &str, v: &Value) -> Error {
    Error::Engine(format!(
        "unreadable {what} in the warehouse's state ({SCHEMA}): {v:?}; the warehouse may have been edited by hand"
    ))
}

fn point(v: &Value) -> Result<NaiveDateTime> {
    parse_point(&text(v)).map_err(|e| Error::Engine(format!("unreadable time in state: {e}")))
}

fn interval(start: &Value, end: &Value) -> Result<Interval> {
    Interval::new(point(start)?, point(end)?)
        .map_err(|e| Error::Engine(format!("unreadable interval in state: {e}")))
}

/// A timestamp column as text hubforge parses back.
fn ts(col: &str) -> String {
    format!("strftime({col}, '%Y-%m-%dT%H:%M:%S')")
}

/// Read all state. A warehouse without state gives the empty state.
pub fn read(s: &dyn Session) -> Result<State> {
    let Some(version) = stored_version(s)? else {
        return Ok(State::default());
    };
    if version > SCHEMA_VERSION {
        return Err(newer_state_error(version));
    }
    let mut state = State {
        schema_version: Some(version),
        ..State::default()
    };
    for row in s
        .query(&format!(
            "SELECT model, fingerprint, own, version, sql FROM {SCHEMA}.model_versions"
        ))?
        .rows
    {
        let [model, fp, own, json, sql]: [String; 5] = row
            .into_iter()
            .map(|v| match v {
                Value::Text(t) => t,
                other => other.to_text().unwrap_or_default(),
            })
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| Error::Engine("unreadable model version in state".to_string()))?;
        state
            .by_own
            .entry((model.clone(), own.clone()))
            .or_default()
            .push(fp.clone());
        state
            .versions
            .insert((model, fp), StoredVersion::new(own, json, sql));
    }
    for row in s
        .query(&format!(
            "SELECT model, kind, fingerprint, metadata, columns, data_table, run_id FROM {SCHEMA}.models"
        ))?
        .rows
    {
        state.models.insert(
            text(&row[0]),
            PublishedModel {
                kind: text(&row[1]),
                fingerprint: text(&row[2]),
                metadata: text(&row[3]),
                columns: names(&row[4], "model columns")?,
                data_table: text(&row[5]),
                run_id: text(&row[6]),
            },
        );
    }
    if version >= 5 {
        let q = format!(
            "SELECT model, part, covers, excluded FROM {SCHEMA}.data_parts ORDER BY model, seq"
        );
        for row in s.query(&q)?.rows {
            let covers = match &row[2] {
                Value::Null => None,
                v => Some(interval_set(v, "part intervals")?),
            };
            state
                .parts
                .entry(text(&row[0]))
                .or_default()
                .push(DataPart {
                    table: text(&row[1]),
                    covers,
                    excluded: interval_set(&row[3], "part intervals")?,
                });
        }
    }
    let q = format!(
        "SELECT model, {}, {}, fingerprint, built_fingerprint, run_id, row_count, checksum FROM {SCHEMA}.intervals ORDER BY model, start_ts",
        ts("start_ts"),
        ts("end_ts")
    );
    for row in s.query(&q)?.rows {
        state
            .intervals
            .entry(text(&row[0]))
            .or_default()
            .push(IntervalRecord {
                interval: interval(&row[1], &row[2])?,
                fingerprint: text(&row[3]),
                built_fingerprint: text(&row[4]),
                run_id: text(&row[5]),
                rows: number(&row[6], "interval row count")?,
                checksum: text(&row[7]),
            });
    }
    let q = format!(
        "SELECT source, {}, {}, row_count, content_hash FROM {SCHEMA}.source_snapshots",
        ts("start_ts"),
        ts("end_ts")
    );
    for row in s.query(&q)?.rows {
        let snap = state.sources.entry(text(&row[0])).or_default();
        let stats = (number(&row[3], "source row count")?, text(&row[4]));
        if row[1] == Value::Null {
            snap.whole = Some(stats);
        } else {
            snap.units.insert(interval(&row[1], &row[2])?, stats);
        }
    }
    for row in s
        .query(&format!("SELECT source, path, size, modified_ns FROM {SCHEMA}.source_files ORDER BY source, path"))?
        .rows
    {
        state.sources.entry(text(&row[0])).or_default().files.push(FileSignature {
            path: text(&row[1]),
            size: number(&row[2], "source file size")?,
            modified_ns: number(&row[3], "source file time")?,
        });
    }
    for row in s
        .query(&format!(
            "SELECT node, columns, coalesce(types, '[]') FROM {SCHEMA}.schemas"
        ))?
        .rows
    {
        let types = names(&row[2], "source column types")?;
        let columns = names(&row[1], "source columns")?;
        if types.len() == columns.len() {
            state.schema_types.insert(text(&row[0]), types);
        }
        state.schemas.insert(text(&row[0]), columns);
    }
    let q = format!(
        "SELECT model, {}, {}, change, reason, run_id FROM {SCHEMA}.pending ORDER BY model, start_ts",
        ts("start_ts"),
        ts("end_ts")
    );
    for row in s.query(&q)?.rows {
        state
            .pending
            .entry(text(&row[0]))
            .or_default()
            .push(PendingRecord {
                interval: interval(&row[1], &row[2])?,
                change: text(&row[3]),
                reason: text(&row[4]),
                run_id: text(&row[5]),
            });
    }
    // Runs that failed or were interrupted published nothing: the last run is
    // the last that published.
    let q = format!(
        "SELECT run_id, seq, {}, status FROM {SCHEMA}.runs WHERE status IN ('published', 'success') ORDER BY seq DESC LIMIT 1",
        ts("started_at")
    );
    state.last_run = match s.query(&q)?.rows.first() {
        Some(row) => Some(RunRecord {
            run_id: text(&row[0]),
            seq: number(&row[1], "run number")?,
            started_at: text(&row[2]),
            status: text(&row[3]),
        }),
        None => None,
    };
    state.max_run_seq = match s
        .query(&format!("SELECT max(seq) FROM {SCHEMA}.runs"))?
        .rows
        .first()
    {
        Some(row) if row[0] != Value::Null => number(&row[0], "run number")?,
        _ => 0,
    };
    Ok(state)
}

/// One run of the run log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunLog {
    pub run_id: String,
    pub seq: i64,
    pub started_at: String,
    pub finished_at: String,
    /// published, failed or interrupted (a run whose process died shows as interrupted).
    pub status: String,
    pub command: String,
    pub user: String,
    pub plan: serde_json::Value,
    pub summary: serde_json::Value,
}

/// The run log, newest first: `limit` runs, or the one run `id` (its id or number).
pub fn read_runs(s: &dyn Session, limit: Option<usize>, id: Option<&str>) -> Result<Vec<RunLog>> {
    if stored_version(s)?.is_none() {
        return Ok(Vec::new());
    }
    let filter = match id {
        Some(id) => match id.parse::<i64>() {
            Ok(n) => format!("WHERE seq = {n} OR run_id = {}", quote_str(id)),
            Err(_) => format!("WHERE run_id = {}", quote_str(id)),
        },
        None => String::new(),
    };
    let limit = limit.map(|n| format!("LIMIT {n}")).unwrap_or_default();
    let q = format!(
        "SELECT run_id, seq, {}, {}, status, command, user_name, plan, summary FROM {SCHEMA}.runs {filter} ORDER BY seq DESC {limit}",
        ts("started_at"),
        ts("finished_at")
    );
    let json = |v: &Value| serde_json::from_str(&text(v)).unwrap_or(serde_json::Value::Null);
    s.query(&q)?
        .rows
        .iter()
        .map(|row| {
            let status = match text(&row[4]).as_str() {
                "success" => "published".to_string(),
                // Only one process writes a warehouse at a time: a run still
                // marked running when the log can be read has died.
                "running" => "interrupted".to_string(),
                other => other.to_string(),
            };
            Ok(RunLog {
                run_id: text(&row[0]),
                seq: number(&row[1], "run number")?,
                started_at: text(&row[2]),
                finished_at: text(&row[3]),
                status,
                command: text(&row[5]),
                user: text(&row[6]),
                plan: json(&row[7]),
                summary: json(&row[8]),
            })
        })
        .collect()
}

/// A user's decision about a model's intervals (`mark-current`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    pub id: String,
    /// None: the whole table.
    pub interval: Option<Interval>,
    pub action: String,
    pub fingerprint: String,
    pub user: String,
    pub decided_at: String,
    pub note: String,
}

/// The decisions recorded about `model` (lowercase; every model when None),
/// by model, oldest first.
pub fn read_decisions(
    s: &dyn Session,
    model: Option<&str>,
) -> Result<BTreeMap<String, Vec<DecisionRecord>>> {
    let mut out: BTreeMap<String, Vec<DecisionRecord>> = BTreeMap::new();
    if stored_version(s)?.is_none() {
        return Ok(out);
    }
    let filter = model
        .map(|m| format!("WHERE model = {}", quote_str(m)))
        .unwrap_or_default();
    let q = format!(
        "SELECT run_id, {}, {}, action, fingerprint, user_name, {}, note, model FROM {SCHEMA}.decisions {filter} ORDER BY decided_at, start_ts",
        ts("start_ts"),
        ts("end_ts"),
        ts("decided_at"),
    );
    for row in s.query(&q)?.rows {
        out.entry(text(&row[8])).or_default().push(DecisionRecord {
            id: text(&row[0]),
            interval: if row[1] == Value::Null {
                None
            } else {
                Some(interval(&row[1], &row[2])?)
            },
            action: text(&row[3]),
            fingerprint: text(&row[4]),
            user: text(&row[5]),
            decided_at: text(&row[6]),
            note: text(&row[7]),
        });
    }
    Ok(out)
}

pub use crate::engine::ts_literal;

/// The validation of run `run_id` (the last run that has one when `None`),
/// with the run's id; `None` when there is none.
pub fn read_validation(
    s: &dyn Session,
    run_id: Option<&str>,
) -> Result<Option<(String, crate::validate::Report)>> {
    use crate::validate::{Metrics, ModelReport, Report, UnitReport};
    if stored_version(s)?.is_none_or(|v| v < 3) {
        return Ok(None);
    }
    let run = match run_id {
        Some(r) => {
            let found = s.query(&format!(
                "SELECT run_id FROM {SCHEMA}.runs WHERE run_id = {} OR run_id LIKE {} ORDER BY seq DESC LIMIT 1",
                quote_str(r),
                quote_str(&format!("{r}%"))
            ))?;
            match found.rows.first() {
                Some(row) => text(&row[0]),
                None => return Ok(None),
            }
        }
        None => {
            let found = s.query(&format!(
                "SELECT r.run_id FROM {SCHEMA}.runs r WHERE EXISTS (SELECT 1 FROM {SCHEMA}.validations v \
                 WHERE v.run_id = r.run_id) ORDER BY r.seq DESC LIMIT 1"
            ))?;
            match found.rows.first() {
                Some(row) => text(&row[0]),
                None => return Ok(None),
            }
        }
    };
    let mut report = Report::default();
    let metrics = |v: &Value| -> Result<Option<Metrics>> {
        match v.to_text() {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|_| unreadable("validation metrics", v)),
        }
    };
    let rows = s.query(&format!(
        "SELECT model, {}, {}, full_rebuild, unit, before, after FROM {SCHEMA}.validations \
         WHERE run_id = {} ORDER BY model, start_ts NULLS FIRST",
        ts("start_ts"),
        ts("end_ts"),
        quote_str(&run)
    ))?;
    for row in &rows.rows {
        let model = text(&row[0]);
        if report.models.last().is_none_or(|m| m.model != model) {
            report.models.push(ModelReport {
                model: model.clone(),
                full: matches!(row[3], Value::Bool(true)),
                unit: row[4].to_text(),
                units: Vec::new(),
                findings: Vec::new(),
                passed: Vec::new(),
                checksums: None,
            });
        }
        let (before, after) = (metrics(&row[5])?, metrics(&row[6])?);
        if before.is_none() && after.is_none() {
            continue;
        }
        let interval = match (row[1].to_text(), row[2].to_text()) {
            (Some(_), Some(_)) => Some(
                Interval::new(point(&row[1])?, point(&row[2])?)
                    .map_err(|e| Error::Engine(format!("unreadable interval in state: {e}")))?
                    .to_string(),
            ),
            _ => None,
        };
        report
            .models
            .last_mut()
            .expect("pushed")
            .units
            .push(UnitReport {
                interval,
                before,
                after,
            });
    }
    let findings = s.query(&format!(
        "SELECT model, finding FROM {SCHEMA}.validation_findings WHERE run_id = {} ORDER BY rowid",
        quote_str(&run)
    ))?;
    for row in &findings.rows {
        let f = serde_json::from_str(&text(&row[1]))
            .map_err(|_| unreadable("validation finding", &row[1]))?;
        if let Some(m) = report.models.iter_mut().find(|m| m.model == text(&row[0])) {
            m.findings.push(f);
        }
    }
    Ok(Some((run, report)))
}

/// Statements that record state; run inside the publish transaction.
///
/// Rows written one after the other into the same table go into one
/// statement: DuckDB spends far more on each statement of a transaction than
/// on each row of it (a first build of 1,000 models writes several thousand
/// rows of state).
#[derive(Debug, Default)]
pub struct StateWrites {
    pub sql: Vec<String>,
    /// The statement rows are being added to: its head, the index of the
    /// statement in `sql`, and the keys of its rows (a key twice in one
    /// `INSERT OR REPLACE` is an error, so a repeated key starts a new one).
    open: Option<(String, usize, std::collections::HashSet<String>)>,
}

impl StateWrites {
    /// Add a row `values` (a parenthesised tuple) to an insert of `head`
    /// (`INSERT … INTO t VALUES `), identified by `key` where the table has one.
    fn row(&mut self, head: String, key: Option<&str>, values: String) {
        if let Some((open_head, at, keys)) = &mut self.open
            && *open_head == head
            && *at + 1 == self.sql.len()
            && key.is_none_or(|k| keys.insert(k.to_string()))
        {
            let statement = &mut self.sql[*at];
            statement.pop(); // the closing `;`
            statement.push_str(", ");
            statement.push_str(&values);
            statement.push(';');
            return;
        }
        self.sql.push(format!("{head}{values};"));
        self.open = Some((
            head,
            self.sql.len() - 1,
            key.map(str::to_string).into_iter().collect(),
        ));
    }

    /// `DELETE FROM t WHERE column = key` for each key, as one statement.
    fn delete_keys<'k>(
        &mut self,
        table: &str,
        column: &str,
        keys: impl IntoIterator<Item = &'k str>,
    ) {
        let list: Vec<String> = keys.into_iter().map(quote_str).collect();
        if !list.is_empty() {
            self.sql.push(format!(
                "DELETE FROM {SCHEMA}.{table} WHERE {column} IN ({});",
                list.join(", ")
            ));
        }
    }

    /// Store a version (idempotent).
    pub fn version(&mut self, v: &ModelVersion, run_id: &str) {
        let json = serde_json::to_string(v).expect("version serialises");
        self.row(
            format!("INSERT OR IGNORE INTO {SCHEMA}.model_versions VALUES "),
            Some(&format!("{}\n{}", v.name.key(), v.fingerprint)),
            format!(
                "({}, {}, {}, {}, {}, {}, {})",
                quote_str(v.name.key()),
                quote_str(&v.fingerprint),
                quote_str(&v.own),
                quote_str(&v.metadata),
                quote_str(&json),
                quote_str(&v.sql),
                quote_str(run_id)
            ),
        );
    }

    /// Record `v` as the published version of its model.
    pub fn published(
        &mut self,
        v: &ModelVersion,
        columns: &[String],
        data_table: &str,
        run_id: &str,
    ) {
        self.row(
            format!("INSERT OR REPLACE INTO {SCHEMA}.models VALUES "),
            Some(v.name.key()),
            format!(
                "({}, {}, {}, {}, {}, {}, {})",
                quote_str(v.name.key()),
                quote_str(&v.kind),
                quote_str(&v.fingerprint),
                quote_str(&v.metadata),
                quote_str(&serde_json::to_string(columns).expect("json")),
                quote_str(data_table),
                quote_str(run_id)
            ),
        );
    }

    /// Record the parts of `model` (none: its data relation is a table).
    pub fn parts(&mut self, model: &str, parts: &[DataPart]) {
        self.sql.push(format!(
            "DELETE FROM {SCHEMA}.data_parts WHERE model = {};",
            quote_str(model)
        ));
        for (seq, part) in parts.iter().enumerate() {
            self.row(
                format!("INSERT INTO {SCHEMA}.data_parts VALUES "),
                None,
                format!(
                    "({}, {seq}, {}, {}, {})",
                    quote_str(model),
                    quote_str(&part.table),
                    part.covers
                        .as_ref()
                        .map_or("NULL".to_string(), |c| quote_str(&interval_list(c))),
                    quote_str(&interval_list(&part.excluded))
                ),
            );
        }
    }

    /// Forget a model, source or seed the project no longer has.
    pub fn remove_model(&mut self, model: &str) {
        for (table, column) in [
            ("models", "model"),
            ("data_parts", "model"),
            ("intervals", "model"),
            ("pending", "model"),
            ("source_snapshots", "source"),
            ("source_files", "source"),
            ("schemas", "node"),
        ] {
            self.sql.push(format!(
                "DELETE FROM {SCHEMA}.{table} WHERE {column} = {};",
                quote_str(model)
            ));
        }
    }

    /// Delete the record of `model` for exactly `interval` from a state table.
    fn delete(&mut self, table: &str, model: &str, interval: &Interval) {
        self.sql.push(format!(
            "DELETE FROM {SCHEMA}.{table} WHERE model = {} AND start_ts = {} AND end_ts = {};",
            quote_str(model),
            ts_literal(interval.start()),
            ts_literal(interval.end())
        ));
    }

    /// Forget every built interval and pending work of `models` (full rebuilds).
    pub fn clear_all_intervals<'m>(&mut self, models: impl IntoIterator<Item = &'m str>) {
        let models: Vec<&str> = models.into_iter().collect();
        for table in ["intervals", "pending"] {
            self.delete_keys(table, "model", models.iter().copied());
        }
    }

    /// Forget what is recorded of `model` inside `set`: built intervals and
    /// pending work overlapping it are cut, keeping their parts outside `set`.
    /// A cut interval's row count and checksum are no longer known (-1, "").
    pub fn clear_intervals(&mut self, model: &str, set: &IntervalSet, state: &State) {
        for r in state.intervals.get(model).into_iter().flatten() {
            let rest = IntervalSet::single(r.interval).subtract(set);
            if rest.len() == 1 && rest.intervals()[0] == r.interval {
                continue;
            }
            self.delete("intervals", model, &r.interval);
            for piece in rest.iter() {
                self.interval(
                    model,
                    &IntervalRecord {
                        interval: *piece,
                        rows: -1,
                        checksum: String::new(),
                        ..r.clone()
                    },
                );
            }
        }
        for p in state.pending.get(model).into_iter().flatten() {
            let rest = IntervalSet::single(p.interval).subtract(set);
            if rest.len() == 1 && rest.intervals()[0] == p.interval {
                continue;
            }
            self.delete("pending", model, &p.interval);
            for piece in rest.iter() {
                self.pending(
                    model,
                    &PendingRecord {
                        interval: *piece,
                        ..p.clone()
                    },
                );
            }
        }
    }

    pub fn interval(&mut self, model: &str, r: &IntervalRecord) {
        self.row(
            format!("INSERT INTO {SCHEMA}.intervals VALUES "),
            None,
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {})",
                quote_str(model),
                ts_literal(r.interval.start()),
                ts_literal(r.interval.end()),
                quote_str(&r.fingerprint),
                quote_str(&r.built_fingerprint),
                quote_str(&r.run_id),
                r.rows,
                quote_str(&r.checksum)
            ),
        );
    }

    /// Mark every interval of `model` as current under `fingerprint` (the change
    /// since it was built does not reach its data).
    pub fn rekey(&mut self, model: &str, from: &str, fingerprint: &str) {
        self.sql.push(format!(
            "UPDATE {SCHEMA}.intervals SET fingerprint = {} WHERE model = {} AND fingerprint = {};",
            quote_str(fingerprint),
            quote_str(model),
            quote_str(from)
        ));
    }

    /// Record the data of `model` inside `set` as current under `fingerprint`
    /// (a decision of the user's): intervals there are cut at its edges; the
    /// fingerprint they were built with stays recorded.
    pub fn mark_current(
        &mut self,
        model: &str,
        set: &IntervalSet,
        fingerprint: &str,
        state: &State,
    ) {
        for r in state.intervals.get(model).into_iter().flatten() {
            let inside = IntervalSet::single(r.interval).intersect(set);
            if inside.is_empty() || r.fingerprint == fingerprint {
                continue;
            }
            self.delete("intervals", model, &r.interval);
            let whole = inside.len() == 1 && inside.intervals()[0] == r.interval;
            let piece = |interval: Interval, fp: &str| IntervalRecord {
                interval,
                fingerprint: fp.to_string(),
                rows: if whole { r.rows } else { -1 },
                checksum: if whole {
                    r.checksum.clone()
                } else {
                    String::new()
                },
                ..r.clone()
            };
            for iv in inside.iter() {
                self.interval(model, &piece(*iv, fingerprint));
            }
            for iv in IntervalSet::single(r.interval).subtract(set).iter() {
                self.interval(model, &piece(*iv, &r.fingerprint));
            }
        }
    }

    pub fn pending(&mut self, model: &str, p: &PendingRecord) {
        self.sql.push(format!(
            "INSERT INTO {SCHEMA}.pending VALUES ({}, {}, {}, {}, {}, {});",
            quote_str(model),
            ts_literal(p.interval.start()),
            ts_literal(p.interval.end()),
            quote_str(&p.reason),
            quote_str(&p.change),
            quote_str(&p.run_id)
        ));
    }

    /// Replace what is recorded about a source with a new snapshot.
    pub fn source_snapshot(&mut self, source: &str, snap: &SourceSnapshot, run_id: &str) {
        for table in ["source_snapshots", "source_files"] {
            self.sql.push(format!(
                "DELETE FROM {SCHEMA}.{table} WHERE source = {};",
                quote_str(source)
            ));
        }
        // One JSON literal rather than a long VALUES list: DuckDB parses SQL
        // text slowly, JSON quickly.
        let mut rows: Vec<serde_json::Value> = Vec::new();
        if let Some((count, hash)) = &snap.whole {
            rows.push(serde_json::json!({ "s": null, "e": null, "n": count, "h": hash }));
        }
        for (iv, (count, hash)) in &snap.units {
            rows.push(serde_json::json!({
                "s": iv.start().format("%Y-%m-%d %H:%M:%S").to_string(),
                "e": iv.end().format("%Y-%m-%d %H:%M:%S").to_string(),
                "n": count,
                "h": hash,
            }));
        }
        if !rows.is_empty() {
            self.sql.push(format!(
                "INSERT INTO {SCHEMA}.source_snapshots SELECT {}, CAST(r.s AS TIMESTAMP), CAST(r.e AS TIMESTAMP), r.n, r.h, {} \
                 FROM (SELECT unnest(from_json({}, '[{{\"s\": \"VARCHAR\", \"e\": \"VARCHAR\", \"n\": \"BIGINT\", \"h\": \"VARCHAR\"}}]')) AS r);",
                quote_str(source),
                quote_str(run_id),
                quote_str(&serde_json::Value::Array(rows).to_string())
            ));
        }
        for f in &snap.files {
            self.sql.push(format!(
                "INSERT INTO {SCHEMA}.source_files VALUES ({}, {}, {}, {}, {});",
                quote_str(source),
                quote_str(&f.path),
                f.size,
                f.modified_ns,
                quote_str(run_id)
            ));
        }
    }

    pub fn schema(&mut self, node: &str, columns: &[String], types: &[String]) {
        self.sql.push(format!(
            "INSERT OR REPLACE INTO {SCHEMA}.schemas VALUES ({}, {}, {});",
            quote_str(node),
            quote_str(&serde_json::to_string(columns).expect("json")),
            quote_str(&serde_json::to_string(types).expect("json"))
        ));
    }

    /// A run's validation: one row per model and unit, one per finding.
    pub fn validation(&mut self, run_id: &str, report: &crate::validate::Report) {
        // One JSON literal for every row: a VALUES list of thousands of rows
        // with JSON text in them takes DuckDB seconds to parse.
        let json = |v: &Option<crate::validate::Metrics>| {
            v.as_ref().map(|m| serde_json::to_string(m).expect("json"))
        };
        let mut rows: Vec<serde_json::Value> = Vec::new();
        let mut findings: Vec<serde_json::Value> = Vec::new();
        for m in &report.models {
            let row = |iv: Option<Interval>, before, after| {
                let at = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
                serde_json::json!({
                    "m": m.model, "s": iv.map(|iv| at(iv.start())), "e": iv.map(|iv| at(iv.end())),
                    "f": m.full, "u": m.unit, "b": before, "a": after,
                })
            };
            for u in &m.units {
                let iv = u
                    .interval
                    .as_deref()
                    .and_then(|i| i.parse::<Interval>().ok());
                rows.push(row(iv, json(&u.before), json(&u.after)));
            }
            if m.units.is_empty() {
                rows.push(row(None, None, None));
            }
            for f in &m.findings {
                findings.push(serde_json::json!({
                    "m": m.model, "f": serde_json::to_string(f).expect("json"),
                }));
            }
        }
        if !rows.is_empty() {
            self.sql.push(format!(
                "INSERT INTO {SCHEMA}.validations SELECT {}, r.m, CAST(r.s AS TIMESTAMP), CAST(r.e AS TIMESTAMP), r.f, r.u, r.b, r.a \
                 FROM (SELECT unnest(from_json({}, '[{{\"m\": \"VARCHAR\", \"s\": \"VARCHAR\", \"e\": \"VARCHAR\", \"f\": \"BOOLEAN\", \"u\": \"VARCHAR\", \"b\": \"VARCHAR\", \"a\": \"VARCHAR\"}}]')) AS r);",
                quote_str(run_id),
                quote_str(&serde_json::Value::Array(rows).to_string())
            ));
        }
        if !findings.is_empty() {
            self.sql.push(format!(
                "INSERT INTO {SCHEMA}.validation_findings SELECT {}, r.m, r.f \
                 FROM (SELECT unnest(from_json({}, '[{{\"m\": \"VARCHAR\", \"f\": \"VARCHAR\"}}]')) AS r);",
                quote_str(run_id),
                quote_str(&serde_json::Value::Array(findings).to_string())
            ));
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        run_id: &str,
        seq: i64,
        started_at: NaiveDateTime,
        finished_at: NaiveDateTime,
        status: &str,
        command: &str,
        user: &str,
        plan: &serde_json::Value,
        summary: &serde_json::Value,
    ) {
        self.sql.push(format!(
            "INSERT OR REPLACE INTO {SCHEMA}.runs VALUES ({}, {seq}, {}, {}, {}, {}, {}, {}, {});",
            quote_str(run_id),
            ts_literal(started_at),
            ts_literal(finished_at),
            quote_str(status),
            quote_str(command),
            quote_str(user),
            quote_str(&plan.to_string()),
            quote_str(&summary.to_string())
        ));
    }

    #[allow(clippy::too_many_arguments)]
    pub fn decision(
        &mut self,
        run_id: &str,
        model: &str,
        interval: Option<&Interval>,
        action: &str,
        fingerprint: &str,
        user: &str,
        at: NaiveDateTime,
        note: &str,
    ) {
        let (start, end) = match interval {
            Some(iv) => (ts_literal(iv.start()), ts_literal(iv.end())),
            None => ("NULL".to_string(), "NULL".to_string()),
        };
        self.sql.push(format!(
            "INSERT INTO {SCHEMA}.decisions VALUES ({}, {}, {start}, {end}, {}, {}, {}, {}, {});",
            quote_str(run_id),
            quote_str(model),
            quote_str(action),
            quote_str(fingerprint),
            quote_str(user),
            ts_literal(at),
            quote_str(note)
        ));
    }

    pub fn is_empty(&self) -> bool {
        self.sql.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::engine::duckdb::DuckDbEngine;

    /// Every table of a store, as text, in a stable order.
    fn contents(s: &dyn Session) -> Vec<Vec<Option<String>>> {
        let tables = s
            .query(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = '_hubforge' ORDER BY 1",
            )
            .unwrap();
        let mut out = Vec::new();
        for t in &tables.rows {
            let t = t[0].to_text().unwrap();
            let rows = s
                .query(&format!(
                    "SELECT '{t}', * FROM _hubforge.\"{t}\" ORDER BY ALL"
                ))
                .unwrap();
            out.extend(
                rows.rows
                    .into_iter()
                    .map(|r| r.iter().map(Value::to_text).collect::<Vec<_>>()),
            );
        }
        out
    }

    #[test]
    fn a_dump_recreates_the_store_exactly() {
        let engine = DuckDbEngine::in_memory().unwrap();
        let s = engine.session().unwrap();
        migrate(s.as_ref()).unwrap();
        s.execute(
            "INSERT INTO _hubforge.runs \
             (run_id, seq, started_at, finished_at, status, command, user_name, plan, summary) \
             VALUES ('r1', 1, TIMESTAMP '2025-01-01 10:00:00', TIMESTAMP '2025-01-01 10:00:05', \
             'published', 'hubforge build --var note=''it''s', 'ana', '{}', '{}'), \
             ('r2', 2, TIMESTAMP '2025-01-02 23:59:59.123456', TIMESTAMP '2025-01-03 00:00:01', \
             'failed', e'line one\\nline two', 'bo', '{\"a\": \"b''c\"}', '{}');
             INSERT INTO _hubforge.decisions VALUES ('r1', 'orders', NULL, NULL, 'mark-current', \
             'fp', 'ana', TIMESTAMP '2025-01-01 10:00:00', '');
             INSERT INTO _hubforge.schemas (node, columns) VALUES ('orders', '[\"a\",\"b\"]');",
        )
        .unwrap();
        let before = contents(s.as_ref());
        assert!(before.len() > 3, "{before:?}");
        let sql = dump(s.as_ref()).unwrap();

        let other = DuckDbEngine::in_memory().unwrap();
        let t = other.session().unwrap();
        migrate(t.as_ref()).unwrap();
        t.execute("INSERT INTO _hubforge.schemas VALUES ('stale', '[]', '[]')")
            .unwrap();
        t.execute(&sql).unwrap();
        assert_eq!(contents(t.as_ref()), before);
    }
}
