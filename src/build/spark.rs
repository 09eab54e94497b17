//! `hubforge build` on Apache Spark, through Spark Connect.
//!
//! Spark has no transaction spanning tables, so a run never changes what
//! anyone reads until it publishes, and publishing is one view swap per model,
//! driven by a journal written before the first swap:
//!
//! - every model or seed with work is staged into a **new** table; a partial
//!   rebuild writes only its intervals there and the table becomes a part of
//!   the model, read with the older parts through a view that leaves out what
//!   it replaces (the untouched history is not rewritten). Past eight parts,
//!   or when a column's type differs between them, the rebuild copies the
//!   untouched intervals into its table instead, which then holds the model;
//! - the run then appends a *journal* to the state log (the view statements
//!   and the state writes of the run), swaps each published view to its new
//!   table, and appends a *commit*; only then are the old tables dropped;
//! - a run killed between its journal and its commit is rolled forward by the
//!   next command that writes: the views are swapped again (the statements are
//!   idempotent) and the commit appended. Each view is all-old or all-new at
//!   any moment; between the first and the last swap of a run, readers can see
//!   some models new and others old (DuckDB publishes all models in one
//!   transaction; Spark cannot).
//!
//! Layout, for `[warehouse] schema = "acme"` (in `catalog` when given):
//! `acme` holds the published views; `acme__data` the tables of models and
//! seeds; `acme__sources` a Parquet copy of each version of each file source;
//! `acme__hubforge.state_log` the state.
//!
//! State is an append-only log of the state store's own statements. Each
//! command replays it into an in-memory DuckDB database and reads state from
//! there, so that planning runs the same code, on the same state, whichever
//! engine holds the data: every machine reading the log sees the same truth.
//! The commands that read state query the replica as they query DuckDB's
//! warehouse ([`replayed`]); those that record a decision append it as one
//! entry under the build's lock ([`write_state`]); `deliver` copies the
//! pending rows into the replica and writes files from there
//! ([`pull_pending`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use super::stage::{self, Mode, Staged, Staging};
use super::{
    BuildOptions, BuildSummary, Prepared, new_run_id, now, prepare_with, render_sql, seeds_to_load,
    user, window_for,
};
use crate::config::Kind;
use crate::engine::duckdb::DuckDbEngine;
use crate::engine::{Engine, Session, Value};
use crate::error::{Error, Result};
use crate::graph::{NodeId, NodeKind};
use crate::interval::Interval;
use crate::observe;
use crate::plan::{ModelWork, PlanOptions};
use crate::progress::Progress;
use crate::sources::{self, Ingest};
use crate::state;
use crate::workspace::Workspace;

/// The schemas of a project on Spark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The published views.
    Published,
    /// Models' and seeds' tables.
    Data,
    /// Copies of file sources.
    Sources,
    /// The state log.
    State,
}

/// Names of the project's schemas and relations on Spark.
pub struct SparkNames {
    catalog: Option<String>,
    schema: String,
}

/// The state log's table.
const LOG: &str = "state_log";

impl SparkNames {
    pub fn of(ws: &Workspace) -> SparkNames {
        let w = &ws.project.config.warehouse;
        SparkNames {
            catalog: w.catalog.clone(),
            schema: w.schema.clone().unwrap_or_else(|| "hubhouse".to_string()),
        }
    }

    fn schema(&self, part: Part) -> String {
        match part {
            Part::Published => self.schema.clone(),
            Part::Data => format!("{}__data", self.schema),
            Part::Sources => format!("{}__sources", self.schema),
            Part::State => format!("{}__hubforge", self.schema),
        }
    }

    /// A schema, quoted for Spark.
    fn namespace(&self, part: Part) -> String {
        match &self.catalog {
            Some(c) => format!("{}.{}", q(c), q(&self.schema(part))),
            None => q(&self.schema(part)),
        }
    }

    /// A relation, quoted for Spark.
    fn spark(&self, part: Part, name: &str) -> String {
        format!("{}.{}", self.namespace(part), q(name))
    }

    /// A relation quoted as DuckDB quotes it: what model SQL refers to before
    /// it is translated.
    fn duck(&self, part: Part, name: &str) -> String {
        let quote = crate::engine::quote_ident;
        let schema = quote(&self.schema(part));
        match &self.catalog {
            Some(c) => format!("{}.{schema}.{}", quote(c), quote(name)),
            None => format!("{schema}.{}", quote(name)),
        }
    }
}

/// A Spark identifier, quoted.
fn q(name: &str) -> String {
    crate::engine::Dialect::Spark.ident(name)
}

/// A Spark string literal (Spark reads backslash escapes, not doubled quotes).
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `column` lies in the half-open interval `iv`.
fn in_window(column: &str, iv: &Interval) -> String {
    crate::engine::Dialect::Spark.in_window(None, column, iv)
}

/// One entry of the state log.
#[derive(Debug, Clone)]
struct Entry {
    run_id: String,
    kind: String,
    body: String,
}

/// A run's publish, written before its first view swap.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Journal {
    /// The view statements, in order; each can run again.
    publish: Vec<String>,
    /// What the run no longer needs once committed.
    drop: Vec<String>,
    /// The state store's statements recording the run (DuckDB SQL, replayed).
    state: String,
}

/// The state log and the local replica of state it was replayed into.
pub struct Replica {
    /// Keeps the in-memory database open.
    _engine: DuckDbEngine,
    pub session: Box<dyn Session>,
    next_seq: i64,
    /// Entries of the log replayed or appended since its last snapshot.
    since_snapshot: usize,
    /// Models staged by runs that failed since the last commit, which a
    /// rerun reuses (`staged` entries of the log).
    staged: Vec<StagedModel>,
}

/// A model a run staged before it failed: its table in the data schema and
/// what it was built from. A rerun that would build the model from the same
/// batches (the same keys: the same logic, upstream data and last committed
/// run) takes the table instead of staging it again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StagedModel {
    model: String,
    table: String,
    /// The keys of its batches, sorted.
    keys: Vec<String>,
    /// Rows and checksum per batch key.
    results: BTreeMap<String, (i64, String)>,
    /// Whether the table holds the rebuilt intervals only (a part of the
    /// model) rather than all its rows.
    part: bool,
}

/// Entries of the state log after which a build first writes the whole state
/// as one `snapshot` entry: every command replays the log from its last
/// snapshot, so the replay stays as long as about this many entries (a build
/// appends four or five) however long the project lives. The log itself only
/// grows: a Parquet table has no atomic rewrite, and losing the log would
/// lose state. `HUBFORGE_SPARK_SNAPSHOT_EVERY` sets another count (tests).
const SNAPSHOT_EVERY: usize = 100;

/// Write the replayed state as a `snapshot` entry when the log has grown by
/// [`SNAPSHOT_EVERY`] entries since the last one. Called with the build lock
/// held and every journal rolled forward, so the replica is the whole truth.
fn snapshot_if_due(spark: &dyn Session, names: &SparkNames, replica: &mut Replica) -> Result<()> {
    let every = std::env::var("HUBFORGE_SPARK_SNAPSHOT_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SNAPSHOT_EVERY)
        .max(1);
    if replica.since_snapshot < every {
        return Ok(());
    }
    let body = state::dump(replica.session.as_ref())?;
    append(spark, names, replica, "", "snapshot", &body)?;
    replica.since_snapshot = 0;
    Ok(())
}

/// Create the project's schemas and the state log where missing.
fn setup(spark: &dyn Session, names: &SparkNames) -> Result<()> {
    let mut sql = String::new();
    for part in [Part::Published, Part::Data, Part::Sources, Part::State] {
        sql.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {};\n",
            names.namespace(part)
        ));
    }
    sql.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {} (seq BIGINT, run_id STRING, kind STRING, \
         state_version INT, body STRING, written_at TIMESTAMP) USING parquet;",
        names.spark(Part::State, LOG)
    ));
    spark
        .execute(&sql)
        .map_err(|e| Error::Engine(format!("setting up hubforge's schemas on Spark: {e}")))
}

/// Read the state log into a fresh in-memory replica. With `roll_forward`, a
/// journal without its commit (a run killed while publishing) is published
/// again and committed; without it (commands that only read) it is taken as
/// the state the next build will roll forward to.
fn replay(spark: &dyn Session, names: &SparkNames, roll_forward: bool) -> Result<Replica> {
    let log = names.spark(Part::State, LOG);
    let engine = DuckDbEngine::in_memory()?;
    let local = engine.session()?;
    state::migrate(local.as_ref())?;
    let mut replica = Replica {
        _engine: engine,
        session: local,
        next_seq: 1,
        since_snapshot: 0,
        staged: Vec::new(),
    };
    if !crate::engine::relation_exists(spark, &log) {
        return Ok(replica);
    }
    // From the last snapshot on: it holds everything before it (it was
    // written with the lock held, after every journal was committed).
    let rows = spark.query(&format!(
        "SELECT seq, run_id, kind, state_version, body FROM {log} \
         WHERE seq >= (SELECT coalesce(max(seq), 0) FROM {log} WHERE kind = 'snapshot') \
         ORDER BY seq"
    ))?;
    let mut entries = Vec::new();
    for row in &rows.rows {
        let version = row[3].as_i64().unwrap_or(0);
        if version > state::SCHEMA_VERSION as i64 {
            return Err(Error::Engine(format!(
                "the state log {log} was written by a newer hubforge (state schema version \
                 {version}, this hubforge knows up to {}); upgrade hubforge",
                state::SCHEMA_VERSION
            )));
        }
        replica.next_seq = replica.next_seq.max(row[0].as_i64().unwrap_or(0) + 1);
        entries.push(Entry {
            run_id: row[1].to_text().unwrap_or_default(),
            kind: row[2].to_text().unwrap_or_default(),
            body: row[4].to_text().unwrap_or_default(),
        });
    }
    let committed: HashSet<&str> = entries
        .iter()
        .filter(|e| e.kind == "commit")
        .map(|e| e.run_id.as_str())
        .collect();
    replica.since_snapshot = entries.iter().filter(|e| e.kind != "snapshot").count();
    for e in &entries {
        let sql = match e.kind.as_str() {
            "state" | "snapshot" => e.body.clone(),
            "commit" | "staged" => {
                fold_staged(&mut replica.staged, e);
                continue;
            }
            "journal" => {
                let journal: Journal = serde_json::from_str(&e.body).map_err(|err| {
                    Error::Engine(format!(
                        "unreadable journal of run {} in {log}: {err}; the log may have been \
                         edited by hand",
                        e.run_id
                    ))
                })?;
                if !committed.contains(e.run_id.as_str()) && roll_forward {
                    if !crate::progress::is_quiet() {
                        eprintln!(
                            "run {} was stopped while publishing: publishing it to the end",
                            e.run_id
                        );
                    }
                    finish_publish(spark, names, &mut replica, &e.run_id, &journal)?;
                    replica.staged.clear();
                }
                journal.state
            }
            _ => continue,
        };
        replica.session.execute(&sql).map_err(|err| {
            Error::Engine(format!(
                "replaying the state written by run {} from {log}: {err}",
                e.run_id
            ))
        })?;
    }
    Ok(replica)
}

impl StagedModel {
    /// Its batches' rows and checksums, as staging measured them.
    fn staged(&self) -> HashMap<String, Staged> {
        self.results
            .iter()
            .map(|(key, (rows, checksum))| {
                let staged = Staged {
                    rows: *rows,
                    checksum: checksum.clone(),
                };
                (key.clone(), staged)
            })
            .collect()
    }
}

/// How long a model's staging takes before the run records it in the log as
/// soon as it is done rather than when the run stops: a run killed outright
/// (SIGKILL, a lost machine) records nothing, and such a model is worth the
/// log write (a fraction of a second) to be reused by the rerun.
/// `HUBFORGE_SPARK_RECORD_AFTER` sets other seconds (tests).
fn record_after() -> std::time::Duration {
    let seconds = std::env::var("HUBFORGE_SPARK_RECORD_AFTER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30.0_f64);
    std::time::Duration::from_secs_f64(seconds.max(0.0))
}

/// Fold a `commit` or `staged` entry of the log into the models failed runs
/// left staged: a commit ends them all (what it publishes is never reused,
/// and batch keys name the last committed run), a `staged` entry adds its
/// models, in place of older ones of the same model. An unreadable entry
/// only costs the reuse.
fn fold_staged(staged: &mut Vec<StagedModel>, e: &Entry) {
    match e.kind.as_str() {
        "commit" => staged.clear(),
        "staged" => {
            if let Ok(models) = serde_json::from_str::<Vec<StagedModel>>(&e.body) {
                staged.retain(|m| !models.iter().any(|n| n.model == m.model));
                staged.extend(models);
            }
        }
        _ => {}
    }
}

/// Append an entry to the state log.
fn append(
    spark: &dyn Session,
    names: &SparkNames,
    replica: &mut Replica,
    run_id: &str,
    kind: &str,
    body: &str,
) -> Result<()> {
    let seq = replica.next_seq;
    replica.since_snapshot += 1;
    spark.execute(&format!(
        "INSERT INTO {} VALUES ({seq}, {}, {}, {}, {}, current_timestamp())",
        names.spark(Part::State, LOG),
        lit(run_id),
        lit(kind),
        state::SCHEMA_VERSION,
        lit(body)
    ))?;
    replica.next_seq += 1;
    Ok(())
}

/// The lock that keeps two builds of a project on Spark apart, as entries of
/// the state log (Spark has no lock of its own; a build that ran beside
/// another would drop the tables the other staged). A build appends a `lock`
/// entry, then reads the log: it goes on only if no other lock is held, and
/// otherwise releases its own and stops. Of two builds that start together at
/// least one sees the other's entry (each reads after its own append), so at
/// most one goes on. A lock is held until its `unlock` entry, or until its
/// process is seen to be gone (on the same machine), or `--break-lock`.
struct BuildLock<'a> {
    spark: &'a dyn Session,
    names: &'a SparkNames,
    id: String,
}

/// Who holds a lock, as its entry records it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LockHolder {
    host: String,
    pid: u32,
    /// The process's start time (Linux: clock ticks since boot), so that a
    /// pid used again by another process does not hold the lock.
    start: Option<String>,
    /// This boot of the machine's kernel: two machines (or containers) of one
    /// host name are told apart by it.
    #[serde(default)]
    boot: Option<String>,
    user: String,
    since: String,
    /// The command holding it (`hubforge build`, `hubforge deliver`, ...).
    #[serde(default)]
    command: Option<String>,
}

impl LockHolder {
    fn me() -> LockHolder {
        LockHolder {
            command: Some(super::command_line()),
            host: host_name(),
            pid: std::process::id(),
            start: process_start(std::process::id()),
            boot: boot_id(),
            user: user(),
            since: now().format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        }
    }

    /// Whether the process is known to be gone: only a process of this
    /// machine can be looked at.
    fn is_gone(&self) -> bool {
        self.host == host_name()
            && self.boot.is_some()
            && self.boot == boot_id()
            && process_start(self.pid) != self.start
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|b| b.trim().to_string())
}

/// When process `pid` started (field 22 of `/proc/PID/stat`), if it runs.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

impl<'a> BuildLock<'a> {
    fn acquire(
        spark: &'a dyn Session,
        names: &'a SparkNames,
        break_lock: bool,
    ) -> Result<BuildLock<'a>> {
        let log = names.spark(Part::State, LOG);
        let append = |id: &str, kind: &str, body: &str| {
            spark.execute(&format!(
                "INSERT INTO {log} SELECT coalesce(max(seq), 0) + 1, {}, {}, {}, {}, \
                 current_timestamp() FROM {log}",
                lit(id),
                lit(kind),
                state::SCHEMA_VERSION,
                lit(body)
            ))
        };
        let held = || -> Result<Vec<(String, LockHolder)>> {
            let rows = spark.query(&format!(
                "SELECT run_id, kind, body FROM {log} WHERE kind IN ('lock', 'unlock') ORDER BY seq"
            ))?;
            let mut held: Vec<(String, LockHolder)> = Vec::new();
            for row in rows.rows {
                let id = row[0].to_text().unwrap_or_default();
                match row[1].to_text().as_deref() {
                    Some("lock") => {
                        if let Ok(h) = serde_json::from_str(&row[2].to_text().unwrap_or_default()) {
                            held.push((id, h));
                        }
                    }
                    _ => held.retain(|(other, _)| *other != id),
                }
            }
            Ok(held)
        };
        if break_lock {
            for (id, _) in held()? {
                append(&id, "unlock", "broken by --break-lock")?;
            }
        }
        let me = LockHolder::me();
        let lock = BuildLock {
            spark,
            names,
            id: format!("lock-{}", new_run_id()),
        };
        append(
            &lock.id,
            "lock",
            &serde_json::to_string(&me).expect("lock holder serialises"),
        )?;
        let others: Vec<LockHolder> = held()?
            .into_iter()
            .filter(|(id, h)| *id != lock.id && !h.is_gone())
            .map(|(_, h)| h)
            .collect();
        if let Some(other) = others.first() {
            return Err(Error::Engine(format!(
                "another command writing this project's state is running on Spark (`{}`): \
                 started {} by {} on {} (pid {}); wait for it to end, or, if it no longer \
                 runs, `hubforge build --break-lock`",
                other.command.as_deref().unwrap_or("hubforge build"),
                other.since,
                other.user,
                other.host,
                other.pid
            )));
        }
        Ok(lock)
    }
}

impl Drop for BuildLock<'_> {
    fn drop(&mut self) {
        // Not released (the server gone): the next build on this machine sees
        // the process has ended.
        let log = self.names.spark(Part::State, LOG);
        let _ = self.spark.execute(&format!(
            "INSERT INTO {log} SELECT coalesce(max(seq), 0) + 1, {}, 'unlock', {}, '', \
             current_timestamp() FROM {log}",
            lit(&self.id),
            state::SCHEMA_VERSION,
        ));
    }
}

/// Swap the views of a journal, commit it, and drop what it replaced.
fn finish_publish(
    spark: &dyn Session,
    names: &SparkNames,
    replica: &mut Replica,
    run_id: &str,
    journal: &Journal,
) -> Result<()> {
    for (i, statement) in journal.publish.iter().enumerate() {
        spark.execute(statement).map_err(|e| {
            Error::Engine(format!(
                "publishing run {run_id} on Spark stopped at view {} of {}: {e}; the next \
                 build publishes the rest",
                i + 1,
                journal.publish.len()
            ))
        })?;
        super::pause_point("publish", i + 1);
    }
    append(spark, names, replica, run_id, "commit", "")?;
    for statement in &journal.drop {
        // What a drop leaves behind is removed by the next run's cleanup.
        let _ = spark.execute(statement);
    }
    Ok(())
}

/// Observe and plan from the replayed state: planning is the same code as on
/// DuckDB, the sources snapshotted by Spark as it reads them (file sources'
/// columns and bad rows are read on this machine). A build (`progress` given)
/// copies file sources into the sources schema; `plan` writes nothing.
fn prepare(
    ws: &Workspace,
    spark: &dyn Session,
    names: &SparkNames,
    replica: &Replica,
    options: &PlanOptions,
    progress: Option<&Progress>,
) -> Result<Prepared> {
    let reader = SparkSources {
        spark,
        names,
        ws,
        copy: progress.is_some(),
    };
    prepare_with(
        replica.session.as_ref(),
        ws,
        options,
        Ingest::Temp,
        progress,
        Some(&reader),
    )
}

/// State, sources and the plan, read without changing anything (`plan`).
pub fn prepare_read_only(
    ws: &Workspace,
    engine: &dyn Engine,
    options: &PlanOptions,
) -> Result<(Replica, Prepared)> {
    let names = SparkNames::of(ws);
    let spark = engine.session()?;
    let replica = replay(spark.as_ref(), &names, false)?;
    let prepared = prepare(ws, spark.as_ref(), &names, &replica, options, None)?;
    Ok((replica, prepared))
}

/// State as the log says it is, without changing anything (the empty state,
/// without a schema version, when nothing was ever built).
pub fn read_state(ws: &Workspace) -> Result<state::State> {
    let engine =
        crate::engine::spark::SparkEngine::connect(ws.project.config.warehouse.spark_url())?;
    let replica = replayed(ws, &engine)?;
    if replica.next_seq == 1 {
        // Nothing was ever built there.
        return Ok(state::State::default());
    }
    state::read(replica.session.as_ref())
}

/// The state log replayed without changing anything, for the commands that
/// read state (`runs`, `validation`, `fulfillment`): they run their queries
/// on the replica, as they run them on DuckDB's warehouse. A publish that was
/// stopped is read as the state the next build rolls forward to.
pub fn replayed(ws: &Workspace, engine: &dyn Engine) -> Result<Replica> {
    let spark = engine.session()?;
    replay(spark.as_ref(), &SparkNames::of(ws), false)
}

/// `hubforge diff` on Spark: the model rebuilt for its range from its parents
/// as published into a cached temporary view of one session (nothing is
/// written to the warehouse), compared with its published rows by the same
/// SQL as on DuckDB, translated.
pub fn diff(
    ws: &Workspace,
    engine: &dyn Engine,
    options: &crate::validate::diff::DiffOptions,
) -> Result<crate::validate::diff::DiffReport> {
    use crate::validate::diff;
    let subject = diff::subject(ws, options)?;
    let name = &subject.name;
    let names = SparkNames::of(ws);
    let replica = replayed(ws, engine)?;
    if replica.next_seq == 1 {
        return Err(diff::not_built(name, false));
    }
    let state = state::read(replica.session.as_ref())?;
    if !state
        .models
        .contains_key(ws.dag.nodes[subject.id].name.key())
    {
        return Err(diff::not_built(name, true));
    }
    // Parents as published; sources as the last build read them.
    let target = |p: NodeId| {
        let node = &ws.dag.nodes[p];
        match node.kind {
            NodeKind::Source => names.duck(Part::Sources, &node.name),
            _ => names.duck(Part::Published, &node.name),
        }
    };
    let sql = rendered_for_spark(ws, subject.id, &subject.window, &target)?;
    let filter = match (&subject.time_column, &subject.interval) {
        (Some(tc), Some(iv)) => format!(" WHERE {}", in_window(tc, iv)),
        _ => String::new(),
    };
    let s = crate::engine::spark::TranslatedSession(engine.session()?);
    let (old, new) = ("hubforge_diff_old", "hubforge_diff_new");
    let compared = s
        .raw()
        .execute(&format!(
            "CACHE TABLE {new} AS SELECT * FROM ({sql}) q{filter}; \
             CREATE OR REPLACE TEMPORARY VIEW {old} AS SELECT * FROM {}{filter}",
            names.spark(Part::Published, name)
        ))
        .map_err(|e| diff::not_rebuilt(name, e))
        .and_then(|()| {
            let sides = diff::Sides {
                old,
                new,
                old_columns: typed_columns(s.raw(), old)?,
                new_columns: typed_columns(s.raw(), new)?,
            };
            diff::compare(&s, &subject, &sides, options)
        });
    // The cached rows stay on the server as long as the session: freed now.
    let _ = s.raw().execute(&format!(
        "UNCACHE TABLE IF EXISTS {new}; DROP VIEW IF EXISTS {new}; DROP VIEW IF EXISTS {old}"
    ));
    compared
}

/// Rows of a model's table on Spark: all of them, or those of one interval.
pub fn count_rows(
    ws: &Workspace,
    spark: &dyn Session,
    table: &str,
    window: Option<(&str, &Interval)>,
) -> Option<i64> {
    let filter = window
        .map(|(column, iv)| format!(" WHERE {}", in_window(column, iv)))
        .unwrap_or_default();
    let relation = SparkNames::of(ws).spark(Part::Data, table);
    spark
        .query(&format!("SELECT count(*) FROM {relation}{filter}"))
        .ok()?
        .rows
        .first()
        .and_then(|row| row[0].as_i64())
}

/// Copy from Spark what a delivery writes into the local DuckDB session
/// `local`, as `main.<product>` typed as Spark holds it: `deliver` then
/// writes the destination's files on this machine, with the same code and
/// the same file formats as on DuckDB. Only pending rows are read: a
/// product's pending intervals, or all of it when it is pending in full.
pub fn pull_pending(
    ws: &Workspace,
    engine: &dyn Engine,
    local: &dyn Session,
    pending: &[crate::fulfill::Pending],
) -> Result<()> {
    let names = SparkNames::of(ws);
    let spark = engine.session()?;
    // Per product: everything, or the union of its pending intervals.
    let mut wanted: BTreeMap<&str, Option<crate::interval::IntervalSet>> = BTreeMap::new();
    for p in pending {
        let entry = wanted
            .entry(p.product.as_str())
            .or_insert_with(|| Some(crate::interval::IntervalSet::new()));
        *entry = match entry.take() {
            Some(set) if !p.full => Some(set.union(&p.intervals)),
            _ => None,
        };
    }
    let dir = ws.project.root.join("target").join("spark-deliver");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    for (product, intervals) in wanted {
        let relation = names.spark(Part::Published, product);
        let columns = typed_columns(spark.as_ref(), &relation)?;
        let time = ws
            .project
            .models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(product))
            .and_then(|m| m.config.time_column.clone());
        let filter = match (&intervals, &time) {
            (Some(set), Some(tc)) => {
                let windows: Vec<String> = set
                    .iter()
                    .map(|iv| format!("({})", in_window(tc, iv)))
                    .collect();
                format!(
                    " WHERE {}",
                    if windows.is_empty() {
                        "false".to_string()
                    } else {
                        windows.join(" OR ")
                    }
                )
            }
            _ => String::new(),
        };
        let rows = spark.query(&format!("SELECT * FROM {relation}{filter}"))?;
        let path = dir.join(format!("{}.jsonl", product.to_lowercase()));
        let mut text = String::new();
        for row in &rows.rows {
            let object: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .zip(row)
                .map(|((name, _), v)| (name.clone(), json_value(v)))
                .collect();
            text.push_str(&serde_json::Value::Object(object).to_string());
            text.push('\n');
        }
        std::fs::write(&path, text)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let table = format!("main.{}", crate::engine::quote_ident(product));
        let mut sql = format!(
            "CREATE OR REPLACE TABLE {table} ({});",
            columns
                .iter()
                .map(|(n, t)| format!("{} {t}", crate::engine::quote_ident(n)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !rows.rows.is_empty() {
            sql.push_str(&format!(
                "\nINSERT INTO {table} SELECT * FROM read_json({}, format = 'newline_delimited', \
                 columns = {{{}}});",
                crate::engine::quote_str(&path.to_string_lossy()),
                columns
                    .iter()
                    .map(|(n, t)| format!(
                        "{}: {}",
                        crate::engine::quote_str(n),
                        crate::engine::quote_str(t)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let loaded = local.execute(&sql);
        let _ = std::fs::remove_file(&path);
        loaded.map_err(|e| {
            Error::Engine(format!(
                "reading product {product} from Spark for delivery: {e}"
            ))
        })?;
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

/// A value read from Spark, as JSON that DuckDB reads back into its column's
/// type (text for dates, times and decimals; non-finite floats as text).
fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(f.to_string())),
        Value::Text(t) => serde_json::Value::String(t.clone()),
    }
}

/// Column types of every published view on Spark, by lowercase name (as the
/// docs site shows DuckDB's): the models, seeds and sources `state` knows of.
pub fn published_types(
    ws: &Workspace,
    engine: &dyn Engine,
    state: &state::State,
) -> Result<BTreeMap<String, Vec<(String, String)>>> {
    let names = SparkNames::of(ws);
    let spark = engine.session()?;
    let mut out = BTreeMap::new();
    for key in state.models.keys() {
        let relation = names.spark(Part::Published, key);
        if let Ok(columns) = typed_columns(spark.as_ref(), &relation) {
            out.insert(key.to_lowercase(), columns);
        }
    }
    Ok(out)
}

/// What a command that records something in state sees on Spark: the state
/// log replayed, with the build lock held and a stopped publish rolled
/// forward, and Spark to plan against.
struct StateWriter<'a> {
    ws: &'a Workspace,
    spark: &'a dyn Session,
    names: &'a SparkNames,
    replica: &'a Replica,
}

impl super::StateView for StateWriter<'_> {
    fn session(&self) -> &dyn Session {
        self.replica.session.as_ref()
    }

    fn prepare(&self, options: &PlanOptions) -> Result<Prepared> {
        prepare(self.ws, self.spark, self.names, self.replica, options, None)
    }
}

/// Record what a command decided (`mark-current`, `ack`, pausing a
/// destination) in the state log, as builds do: under the build lock, after
/// the log is replayed. `decide` reads the replayed state and returns its
/// answer with the state store's statements; they run on the replica first,
/// so that the log never holds a statement its replay would refuse, then are
/// appended as one entry named `id`.
pub fn write_state<T>(
    ws: &Workspace,
    engine: &dyn Engine,
    id: &str,
    decide: impl FnOnce(&dyn super::StateView) -> Result<(T, Vec<String>)>,
) -> Result<T> {
    let names = SparkNames::of(ws);
    let spark = engine.session()?;
    setup(spark.as_ref(), &names)?;
    let _lock = BuildLock::acquire(spark.as_ref(), &names, false)?;
    let mut replica = replay(spark.as_ref(), &names, true)?;
    let (answer, statements) = decide(&StateWriter {
        ws,
        spark: spark.as_ref(),
        names: &names,
        replica: &replica,
    })?;
    if statements.is_empty() {
        return Ok(answer);
    }
    crate::engine::in_transaction(replica.session.as_ref(), &statements)?;
    let body = crate::engine::transaction_sql(&statements);
    append(spark.as_ref(), &names, &mut replica, id, "state", &body)?;
    snapshot_if_due(spark.as_ref(), &names, &mut replica)?;
    Ok(answer)
}

/// Run a build on Spark.
pub fn build(
    ws: &Workspace,
    engine: &dyn Engine,
    options: &BuildOptions,
    interrupted: &AtomicBool,
) -> Result<BuildSummary> {
    let started = now();
    // What cannot run on Spark is found before anything runs, where `check`
    // finds it.
    let untranslatable = ws.untranslatable_for_spark();
    if !untranslatable.is_empty() {
        return Err(Error::Input(
            crate::diagnostics::Diagnostics(untranslatable).sorted(),
        ));
    }
    let progress = Progress::new(options.quiet);
    progress.phase("connecting to Spark");
    let names = SparkNames::of(ws);
    let spark = engine.session()?;
    setup(spark.as_ref(), &names)?;
    let _lock = BuildLock::acquire(spark.as_ref(), &names, options.break_lock)?;
    let mut replica = replay(spark.as_ref(), &names, true)?;
    snapshot_if_due(spark.as_ref(), &names, &mut replica)?;
    // A run killed between its commit and writing its manifest file.
    crate::fulfill::restore_files(replica.session.as_ref(), &ws.project.root)?;
    let prepared = prepare(
        ws,
        spark.as_ref(),
        &names,
        &replica,
        &options.plan,
        Some(&progress),
    )?;
    let mut summary = super::first_summary(&prepared, options)?;
    let seeds = seeds_to_load(ws, &prepared);
    if super::nothing_to_do(ws, &prepared, &seeds) {
        cleanup(spark.as_ref(), &names, &prepared.observed.state, &[])?;
        return Ok(summary);
    }
    let run_id = new_run_id();
    summary.run_id = Some(run_id.clone());
    let run_log = super::RunLog::new(ws, &prepared, options, &run_id, started);
    let seq = run_log.seq;
    let log = |status: &str, summary: &serde_json::Value| run_log.record(status, summary);
    let scope = super::scope_json(ws, &options.plan);
    let running = run_log.running(&scope);
    append(
        spark.as_ref(),
        &names,
        &mut replica,
        &run_id,
        "state",
        &running,
    )?;
    // What failed runs staged is kept until this run knows which it reuses.
    let reusable = std::mem::take(&mut replica.staged);
    cleanup(spark.as_ref(), &names, &prepared.observed.state, &reusable)?;
    let mut staged = Vec::new();
    let outcome = execute(
        ws,
        engine,
        spark.as_ref(),
        &names,
        &mut replica,
        options,
        interrupted,
        &progress,
        &prepared,
        &seeds,
        summary,
        (&run_id, seq, started),
        (&reusable, &mut staged),
    );
    if let Err(e) = &outcome {
        // What was staged is reused by the next run that builds the same.
        if !staged.is_empty() {
            let body = serde_json::to_string(&staged).expect("json");
            let _ = append(
                spark.as_ref(),
                &names,
                &mut replica,
                &run_id,
                "staged",
                &body,
            );
        }
        let status = if matches!(e, Error::Interrupted) {
            "interrupted"
        } else {
            "failed"
        };
        let record = log(
            status,
            &serde_json::json!({ "scope": scope, "error": e.to_string().trim() }),
        );
        let _ = append(
            spark.as_ref(),
            &names,
            &mut replica,
            &run_id,
            "state",
            &record,
        );
    }
    outcome
}

/// Drop the tables and views of the data and source schemas that state does
/// not name: what runs that failed or were killed staged, but the tables of
/// `reusable` (the run drops those it does not reuse once it knows).
fn cleanup(
    spark: &dyn Session,
    names: &SparkNames,
    state: &state::State,
    reusable: &[StagedModel],
) -> Result<()> {
    let kept: HashSet<String> = state
        .models
        .values()
        .map(|m| m.data_table.to_lowercase())
        .chain(
            state
                .parts
                .values()
                .flatten()
                .map(|p| p.table.to_lowercase()),
        )
        .chain(reusable.iter().map(|m| m.table.to_lowercase()))
        .collect();
    let mut sql = String::new();
    for row in spark
        .query(&format!("SHOW TABLES IN {}", names.namespace(Part::Data)))?
        .rows
    {
        let Some(table) = row.get(1).and_then(|v| v.to_text()) else {
            continue;
        };
        // The session's temporary views (the sources' readers) are listed too.
        let temporary = row.get(2) == Some(&Value::Bool(true));
        if !temporary && !kept.contains(&table.to_lowercase()) {
            let what = if is_view(spark, &names.spark(Part::Data, &table))? {
                "VIEW"
            } else {
                "TABLE"
            };
            sql.push_str(&format!(
                "DROP {what} IF EXISTS {};\n",
                names.spark(Part::Data, &table)
            ));
        }
    }
    spark.execute(&sql)
}

fn is_view(spark: &dyn Session, relation: &str) -> Result<bool> {
    let rows = spark.query(&format!("DESCRIBE TABLE EXTENDED {relation}"))?;
    Ok(rows.rows.iter().any(|r| {
        r.first().and_then(|v| v.to_text()).as_deref() == Some("Type")
            && r.get(1).and_then(|v| v.to_text()).as_deref() == Some("VIEW")
    }))
}

/// Stage, publish and record a run that has started.
#[allow(clippy::too_many_arguments)]
fn execute(
    ws: &Workspace,
    engine: &dyn Engine,
    spark: &dyn Session,
    names: &SparkNames,
    replica: &mut Replica,
    options: &BuildOptions,
    interrupted: &AtomicBool,
    progress: &Progress,
    prepared: &Prepared,
    seeds: &[NodeId],
    mut summary: BuildSummary,
    (run_id, seq, started): (&str, i64, chrono::NaiveDateTime),
    (reusable, finished): (&[StagedModel], &mut Vec<StagedModel>),
) -> Result<BuildSummary> {
    let check_interrupt = || {
        if interrupted.load(Ordering::SeqCst) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    };
    let state = &prepared.observed.state;
    let mut work: BTreeMap<NodeId, &ModelWork> =
        prepared.plan.models.iter().map(|w| (w.node, w)).collect();
    let planned = work.clone();
    let mut cutoff = super::cutoff::Cutoff::new(ws, state, &planned, &prepared.plan.out_of_scope);
    // Batches are built from the last committed run's data: what a failed
    // run staged after it is reused only as long as no other run commits.
    let last_run = state.last_run.as_ref().map(|r| r.run_id.as_str());
    let mut staging = stage::plan_staging(ws, prepared, &work, seeds, last_run);
    staging.tasks = whole_ranges(std::mem::take(&mut staging.tasks));
    // New tables get a name of their own in every run: a table whose creation
    // was killed can leave files where Spark would put it.
    let tag = &crate::hash::hash_parts("", [run_id])[..8];
    for node in staging.nodes.values_mut() {
        node.table = format!("{}_{tag}", node.table);
    }
    let reuse = reused_models(ws, spark, names, &mut staging, reusable)?;
    summary.batches = staging.tasks.len();
    summary.reused = staging
        .tasks
        .iter()
        .filter(|t| reuse.contains_key(&t.node))
        .count();
    let t = std::time::Instant::now();
    let mut readers: Vec<String> = vec![String::new(); ws.dag.len()];
    let mut results: HashMap<String, Staged> = HashMap::new();
    let mut staged_columns: BTreeMap<NodeId, Vec<(String, String)>> = BTreeMap::new();
    let mut staged_views: Vec<String> = Vec::new();
    let mut source_tables: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut spark_parts: BTreeMap<NodeId, SparkParts> = BTreeMap::new();
    let published = |id: NodeId| names.duck(Part::Published, &ws.dag.nodes[id].name);
    let mut staged = 0;
    for &id in &ws.dag.order {
        check_interrupt()?;
        let node = &ws.dag.nodes[id];
        match node.kind {
            NodeKind::Source => {
                let config = &ws.project.config.sources[node.name.as_str()];
                if let Some(table) = &config.table {
                    // Read where it is.
                    readers[id] = sources::table_relation(table);
                    continue;
                }
                let key = node.name.key();
                let typed: Vec<(String, String)> = prepared.observed.schemas[key]
                    .iter()
                    .cloned()
                    .zip(prepared.observed.types[key].iter().cloned())
                    .collect();
                let files = &prepared.observed.sources[key].files;
                let table = ingest_source(spark, ws, names, &node.name, &typed, files)?;
                readers[id] = names.duck(Part::Sources, &table);
                source_tables.insert(id, table);
            }
            NodeKind::Seed if staging.nodes.contains_key(&id) => {
                let table = staging.nodes[&id].table.clone();
                progress.note(&format!("loading seed {}", node.name));
                load_seed(spark, replica.session.as_ref(), ws, names, id, &table)?;
                let task = staging
                    .tasks
                    .iter()
                    .find(|t| t.node == id)
                    .expect("seed task");
                results.extend(measure(spark, names, &table, None, &[task])?);
                staged_columns.insert(id, columns_of(spark, &names.spark(Part::Data, &table))?);
                readers[id] = names.duck(Part::Data, &table);
            }
            NodeKind::Model(Kind::View) => {
                let upstream_new = ws
                    .dag
                    .parents(id)
                    .iter()
                    .any(|&p| readers[p] != published(p));
                if work.contains_key(&id) || upstream_new {
                    // Readers in this run see the view over this run's data;
                    // creating it also checks its SQL before anything is published.
                    let view = format!("{}__v_{tag}", node.name.key());
                    let body = spark_sql(ws, id, prepared, &|p| readers[p].clone())?;
                    spark.execute(&format!(
                        "CREATE OR REPLACE VIEW {} AS {body}",
                        names.spark(Part::Data, &view)
                    ))?;
                    readers[id] = names.duck(Part::Data, &view);
                    staged_views.push(view);
                } else {
                    readers[id] = published(id);
                }
            }
            NodeKind::Model(_) if staging.nodes.contains_key(&id) => {
                let reused = reuse.get(&id);
                let mut pending: Vec<usize> = (0..staging.tasks.len())
                    .filter(|&i| staging.tasks[i].node == id)
                    .collect();
                if reused.is_none() {
                    // Early cutoff: batches only parent data that turned out
                    // identical made stale are not built.
                    let planned_batches = pending.len();
                    cutoff.prune(id, &staging, &mut pending, false);
                    if cutoff.skipped.contains(&id) {
                        readers[id] = published(id);
                        continue;
                    }
                    if pending.len() < planned_batches {
                        let rebuilt = crate::interval::IntervalSet::from_intervals(
                            pending.iter().filter_map(|&i| staging.tasks[i].interval),
                        );
                        let stage = staging.nodes.get_mut(&id).expect("staged node");
                        stage.rebuilt = rebuilt;
                        // The rest of a model planned whole is kept as published.
                        stage.mode = Mode::Partial;
                    }
                }
                let stage = &staging.nodes[&id];
                let tasks: Vec<&stage::Task> = pending.iter().map(|&i| &staging.tasks[i]).collect();
                progress.note(&format!(
                    "staging {} ({} batch{})",
                    node.name,
                    tasks.len(),
                    if tasks.len() == 1 { "" } else { "es" }
                ));
                let staging_started = std::time::Instant::now();
                let (columns, parts) = stage_model(
                    spark,
                    ws,
                    names,
                    prepared,
                    (id, stage, &tasks),
                    reused.map(|m| m.part),
                    &|p| readers[p].clone(),
                )?;
                let measured = match reused {
                    Some(m) => m.staged(),
                    None => measure(spark, names, &stage.table, time_column(ws, id), &tasks)?,
                };
                let mut keys: Vec<String> = tasks.iter().map(|t| t.key.clone()).collect();
                keys.sort();
                finished.push(StagedModel {
                    model: node.name.key().to_string(),
                    table: stage.table.clone(),
                    keys,
                    results: measured
                        .iter()
                        .map(|(k, v)| (k.clone(), (v.rows, v.checksum.clone())))
                        .collect(),
                    part: parts.is_some(),
                });
                if reused.is_none() && staging_started.elapsed() >= record_after() {
                    // Recorded at once: a run killed outright does not lose it.
                    let last = std::slice::from_ref(finished.last().expect("just pushed"));
                    let body = serde_json::to_string(last).expect("json");
                    append(spark, names, replica, run_id, "staged", &body)?;
                }
                results.extend(measured);
                if cutoff.wants(id) {
                    // The published rows of the same batches, measured the same way.
                    let data = &state.models[node.name.key()].data_table;
                    let before = measure(spark, names, data, time_column(ws, id), &tasks)?;
                    cutoff.compare(id, &staging, &results, |t| {
                        Ok(before
                            .get(&t.key)
                            .map_or((0, "0".to_string()), |b| (b.rows, b.checksum.clone())))
                    })?;
                }
                staged_columns.insert(id, columns);
                // Readers in this run read the whole model.
                readers[id] =
                    names.duck(Part::Data, parts.as_ref().map_or(&stage.table, |p| &p.view));
                if let Some(parts) = parts {
                    spark_parts.insert(id, parts);
                }
                staged += 1;
                super::pause_point("stage", staged);
            }
            _ => readers[id] = published(id),
        }
    }
    check_interrupt()?;
    let (cutoffs, settled) = cutoff.finish(&mut staging, &mut work, &prepared.plan.out_of_scope);
    summary.cutoffs = cutoffs;
    crate::progress::timing("stage", t.elapsed());
    if !options.skip_validation {
        let t = std::time::Instant::now();
        progress.note("validating before publish");
        let mut report = validate(
            ws, engine, spark, names, replica, prepared, &staging, &readers, options,
        )?;
        report.rejected_rows = prepared.observed.rejected.clone();
        crate::progress::timing("validate", t.elapsed());
        check_interrupt()?;
        if !report.blocking().is_empty() {
            let mut w = state::StateWrites::default();
            w.validation(run_id, &report);
            append(spark, names, replica, run_id, "state", &w.sql.concat())?;
            progress.finish();
            return Err(crate::validate::blocking_error(&report, ws));
        }
        summary.validation = Some(report);
    }

    // The journal: every view statement of the publish, and the state writes.
    let t = std::time::Instant::now();
    let publish_target = |p: NodeId| match ws.dag.nodes[p].kind {
        NodeKind::Source => names.duck(Part::Sources, &ws.dag.nodes[p].name),
        _ => published(p),
    };
    let mut publish = Vec::new();
    let mut drop = Vec::new();
    let mut data_tables: BTreeMap<NodeId, String> = BTreeMap::new();
    // Models whose parts change: their parts after the run.
    let mut part_writes: BTreeMap<NodeId, Vec<state::DataPart>> = BTreeMap::new();
    let over_rebuilt = staging.over_rebuilt(ws, &work, &prepared.observed.drift);
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let old_table = state
            .models
            .get(node.name.key())
            .map(|m| m.data_table.clone())
            .filter(|t| !t.is_empty());
        let old_parts = state.parts.get(node.name.key());
        let mut drop_old = |drop: &mut Vec<String>| {
            if let Some(t) = &old_table {
                drop_data(drop, names, t, old_parts);
            }
            if old_parts.is_some() {
                part_writes.insert(id, Vec::new());
            }
        };
        match node.kind {
            NodeKind::Source => {
                let from = match source_tables.get(&id) {
                    Some(copy) => names.spark(Part::Sources, copy),
                    None => spark_table(
                        ws.project.config.sources[node.name.as_str()]
                            .table
                            .as_deref()
                            .unwrap_or_default(),
                    ),
                };
                publish.push(format!(
                    "CREATE OR REPLACE VIEW {} AS SELECT * FROM {from}",
                    names.spark(Part::Sources, &node.name),
                ));
            }
            // A changed view, or one over anything this run changes.
            NodeKind::Model(Kind::View) if over_rebuilt[id] => {
                let body = spark_sql(ws, id, prepared, &publish_target)?;
                publish.push(format!(
                    "CREATE OR REPLACE VIEW {} AS {body}",
                    names.spark(Part::Published, &node.name)
                ));
                drop_old(&mut drop);
            }
            _ => match (staging.nodes.get(&id), spark_parts.get(&id)) {
                (Some(_), Some(parts)) => {
                    // The view over the parts is the model's data now; the
                    // parts it no longer reads go after the commit.
                    publish.push(format!(
                        "CREATE OR REPLACE VIEW {} AS SELECT * FROM {}",
                        names.spark(Part::Published, &node.name),
                        names.spark(Part::Data, &parts.view)
                    ));
                    if let (Some(t), Some(_)) = (&old_table, old_parts) {
                        drop.push(format!(
                            "DROP VIEW IF EXISTS {}",
                            names.spark(Part::Data, t)
                        ));
                    }
                    for p in &parts.replaced {
                        drop.push(format!(
                            "DROP TABLE IF EXISTS {}",
                            names.spark(Part::Data, &p.table)
                        ));
                    }
                    data_tables.insert(id, parts.view.clone());
                    part_writes.insert(id, parts.parts.clone());
                }
                (Some(stage), None) => {
                    publish.push(format!(
                        "CREATE OR REPLACE VIEW {} AS SELECT * FROM {}",
                        names.spark(Part::Published, &node.name),
                        names.spark(Part::Data, &stage.table)
                    ));
                    drop_old(&mut drop);
                    data_tables.insert(id, stage.table.clone());
                }
                _ => {}
            },
        }
    }
    for name in &prepared.plan.removed {
        publish.push(format!(
            "DROP VIEW IF EXISTS {}",
            names.spark(Part::Published, name)
        ));
        if let Some(m) = state.models.get(name)
            && !m.data_table.is_empty()
        {
            drop_data(&mut drop, names, &m.data_table, state.parts.get(name));
        }
    }
    for view in &staged_views {
        drop.push(format!(
            "DROP VIEW IF EXISTS {}",
            names.spark(Part::Data, view)
        ));
    }
    for (&id, table) in &source_tables {
        let key = ws.dag.nodes[id].name.key();
        for row in spark
            .query(&format!(
                "SHOW TABLES IN {}",
                names.namespace(Part::Sources)
            ))?
            .rows
        {
            if let Some(old) = row.get(1).and_then(|v| v.to_text())
                && sources::is_copy_of(&old, key)
                && old != *table
            {
                drop.push(format!(
                    "DROP TABLE IF EXISTS {}",
                    names.spark(Part::Sources, &old)
                ));
            }
        }
    }
    // The fulfillment manifest: recorded with the run's state, its file
    // written once the run is committed.
    let manifest = super::manifest(
        ws,
        prepared,
        &work,
        &staging,
        &results,
        summary.validation.as_ref(),
        replica.session.as_ref(),
        &|tables| {
            tables
                .iter()
                .map(|t| {
                    Ok((
                        t.to_string(),
                        typed_columns(spark, &names.spark(Part::Data, t))?,
                    ))
                })
                .collect()
        },
        (run_id, started, &options.command),
    )?;
    // Staged whole: a partial rebuild's new table holds every interval.
    let run_staging = Staging {
        tasks: staging.tasks.clone(),
        nodes: std::mem::take(&mut staging.nodes),
        ..Staging::default()
    };
    let mut state_sql = super::publish::state_writes(
        ws,
        prepared,
        &work,
        &run_staging,
        &results,
        &staged_columns,
        &data_tables,
        &super::publish::RunInfo {
            run_id,
            seq,
            started,
            command: &options.command,
            cutoffs: &summary.cutoffs,
            scope: &super::scope_json(ws, &options.plan),
            settled: &settled,
            accepted: &options.accept_schema,
            validation: summary.validation.as_ref(),
            skipped: if options.skip_validation {
                vec!["all (--skip-validation)".to_string()]
            } else {
                options.skip_audits.clone()
            },
        },
    )
    .sql
    .concat();
    let mut w = state::StateWrites::default();
    for (id, parts) in &part_writes {
        w.parts(ws.dag.nodes[*id].name.key(), parts);
    }
    state_sql.push_str(&w.sql.concat());
    if let Some(m) = &manifest {
        state_sql.push_str(&crate::fulfill::state_statements(m, &m.finished_at).concat());
    }
    let journal = Journal {
        publish,
        drop,
        state: state_sql,
    };
    check_interrupt()?;
    progress.note(&format!("publishing {} models", work.len() + seeds.len()));
    append(
        spark,
        names,
        replica,
        run_id,
        "journal",
        &serde_json::to_string(&journal).expect("journal serialises"),
    )?;
    super::pause_point("publish", 0);
    finish_publish(spark, names, replica, run_id, &journal)?;
    crate::progress::timing("publish", t.elapsed());
    if let Some(m) = &manifest {
        summary.manifest = Some(crate::fulfill::write_file(&ws.project.root, m)?);
    }
    progress.finish();

    summary.models = work.len();
    summary.seeds = seeds.len();
    summary.intervals = prepared.plan.interval_count(&prepared.plan.models, ws);
    for t in &run_staging.tasks {
        if let Some(r) = results.get(&t.key) {
            summary.rows += r.rows;
            *summary
                .rows_by_model
                .entry(ws.dag.nodes[t.node].name.to_string())
                .or_default() += r.rows;
        }
    }
    summary.seconds = progress.elapsed().as_secs_f64();
    Ok(summary)
}

/// One batch per contiguous range of a model's stale intervals. The batch
/// size of a model is a knob for DuckDB's memory, never a change of its data
/// (it is metadata); Spark spreads a batch over its executors itself, and
/// each batch it runs costs it a job per source read.
fn whole_ranges(tasks: Vec<stage::Task>) -> Vec<stage::Task> {
    let mut out: Vec<stage::Task> = Vec::new();
    for t in tasks {
        if let Some(last) = out.last_mut()
            && last.node == t.node
            && let (Some(a), Some(b)) = (last.interval, t.interval)
            && a.end() == b.start()
        {
            last.interval = Some(Interval::new(a.start(), b.end()).expect("ordered batches"));
            last.key = crate::hash::hash_parts("", [last.key.as_str(), t.key.as_str()]);
            continue;
        }
        out.push(t);
    }
    out
}

/// Metrics before and after, thresholds and audits, as on DuckDB: the same
/// queries, translated to Spark SQL.
#[allow(clippy::too_many_arguments)]
fn validate(
    ws: &Workspace,
    engine: &dyn Engine,
    spark: &dyn Session,
    names: &SparkNames,
    replica: &Replica,
    prepared: &Prepared,
    staging: &Staging,
    readers: &[String],
    options: &BuildOptions,
) -> Result<crate::validate::Report> {
    let state = &prepared.observed.state;
    let mut columns = HashMap::new();
    for (&id, n) in &staging.nodes {
        let published = state
            .models
            .get(ws.dag.nodes[id].name.key())
            .map(|m| m.data_table.clone())
            .filter(|t| !t.is_empty());
        for table in std::iter::once(n.table.clone()).chain(published) {
            let typed = typed_columns(spark, &names.spark(Part::Data, &table))?;
            columns.insert(table, typed);
        }
    }
    let subjects = super::validation_subjects(
        ws,
        prepared,
        staging,
        replica.session.as_ref(),
        &mut columns,
        &|table| names.duck(Part::Data, table),
    )?;
    // A relationship's parent as this run will publish it.
    let parent = |model: &str| -> Option<String> {
        let id = ws.dag.lookup(model)?;
        let known = staging.nodes.contains_key(&id)
            || state.models.contains_key(ws.dag.nodes[id].name.key());
        known.then(|| readers[id].clone())
    };
    crate::validate::validate(
        &crate::engine::spark::Translated(engine),
        crate::validate::Dialect::Spark,
        options.threads,
        &subjects,
        &options.skip_audits,
        &parent,
        &ws.project.root,
    )
}

/// The columns of a table and their types as DuckDB names them (what
/// validation tells numbers from the rest by).
fn typed_columns(spark: &dyn Session, relation: &str) -> Result<crate::validate::Columns> {
    Ok(described(spark, relation)?
        .into_iter()
        .map(|(name, ty)| {
            let duck = match ty.as_str() {
                "int" => "INTEGER".to_string(),
                "string" => "VARCHAR".to_string(),
                "timestamp" | "timestamp_ntz" => "TIMESTAMP".to_string(),
                other => other.to_uppercase(),
            };
            (name.to_lowercase(), duck)
        })
        .collect())
}

/// The columns of a relation and their types as Spark names them (lowercase).
fn described(spark: &dyn Session, relation: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for row in spark.query(&format!("DESCRIBE TABLE {relation}"))?.rows {
        let (Some(name), Some(ty)) = (row[0].to_text(), row[1].to_text()) else {
            continue;
        };
        if name.is_empty() || name.starts_with('#') {
            break; // partitioning and other sections follow the columns
        }
        out.push((name, ty.to_lowercase()));
    }
    Ok(out)
}

fn time_column(ws: &Workspace, id: NodeId) -> Option<&str> {
    ws.model(id)
        .and_then(|(f, _)| f.config.time_column.as_deref())
}

/// A model rendered for `window` with its references pointed at `target`,
/// translated to Spark SQL; what cannot be translated is an error at the
/// model's line.
fn spark_sql_for(
    ws: &Workspace,
    id: NodeId,
    interval: Option<Interval>,
    prepared: &Prepared,
    target: &dyn Fn(NodeId) -> String,
) -> Result<String> {
    let window = window_for(ws, id, interval, prepared.now);
    rendered_for_spark(ws, id, &window, target)
}

/// A model rendered for `window` with its references pointed at `target`,
/// translated to Spark SQL, or the error of a model that cannot run on Spark.
fn rendered_for_spark(
    ws: &Workspace,
    id: NodeId,
    window: &crate::template::Window,
    target: &dyn Fn(NodeId) -> String,
) -> Result<String> {
    let (file, _) = ws.model(id).expect("model node");
    let (sql, by_name) = render_sql(ws, id, window, target)?;
    if by_name {
        return Err(Error::Engine(format!(
            "model `{}` ({}) is SQL only DuckDB parses: it cannot run on Spark; \
             `hubforge check --engine spark` lists what to change",
            file.name,
            file.path.display()
        )));
    }
    crate::sql::spark::to_spark(&sql).map_err(|problems| {
        let first = &problems[0];
        Error::Engine(format!(
            "model `{}` ({}) cannot run on Spark: {}; `hubforge check --engine spark` \
             shows where",
            file.name,
            file.path.display(),
            first.message
        ))
    })
}

/// A view model's SQL over its whole history.
fn spark_sql(
    ws: &Workspace,
    id: NodeId,
    prepared: &Prepared,
    target: &dyn Fn(NodeId) -> String,
) -> Result<String> {
    spark_sql_for(ws, id, None, prepared, target)
}

/// The models whose staged table a failed run left (the same model, the same
/// batch keys, the table still there): their tables become this run's. The
/// other tables failed runs left are dropped.
fn reused_models<'r>(
    ws: &Workspace,
    spark: &dyn Session,
    names: &SparkNames,
    staging: &mut Staging,
    reusable: &'r [StagedModel],
) -> Result<BTreeMap<NodeId, &'r StagedModel>> {
    let mut out = BTreeMap::new();
    let tasks = &staging.tasks;
    for (&id, node) in staging.nodes.iter_mut() {
        if !ws.dag.nodes[id].kind.is_model() {
            continue; // seeds are loaded again
        }
        let mut keys: Vec<&str> = tasks
            .iter()
            .filter(|t| t.node == id)
            .map(|t| t.key.as_str())
            .collect();
        keys.sort_unstable();
        let key = ws.dag.nodes[id].name.key();
        let Some(m) = reusable
            .iter()
            .find(|m| m.model == key && m.keys.iter().map(String::as_str).eq(keys.iter().copied()))
        else {
            continue;
        };
        if crate::engine::relation_exists(spark, &names.spark(Part::Data, &m.table)) {
            node.table = m.table.clone();
            out.insert(id, m);
        }
    }
    let mut sql = String::new();
    for m in reusable {
        if !out.values().any(|r| r.table == m.table) {
            sql.push_str(&format!(
                "DROP TABLE IF EXISTS {};\n",
                names.spark(Part::Data, &m.table)
            ));
        }
    }
    spark.execute(&sql)?;
    Ok(out)
}

/// Stage a table or incremental model into a new table; its columns. With
/// `reuse`, the table is there already, staged by a failed run (`Some(true)`:
/// it holds the rebuilt intervals, a part of the model; `Some(false)`: all
/// the model's rows).
fn stage_model(
    spark: &dyn Session,
    ws: &Workspace,
    names: &SparkNames,
    prepared: &Prepared,
    (id, stage, tasks): (NodeId, &stage::NodeStage, &[&stage::Task]),
    mut reuse: Option<bool>,
    target: &dyn Fn(NodeId) -> String,
) -> Result<(crate::validate::Columns, Option<SparkParts>)> {
    let (file, _) = ws.model(id).expect("model node");
    let table = names.spark(Part::Data, &stage.table);
    if reuse == Some(false) {
        return Ok((columns_of(spark, &table)?, None));
    }
    let mut branches = Vec::new();
    for task in tasks {
        let sql = spark_sql_for(ws, id, task.interval, prepared, target)?;
        branches.push(match (task.interval, time_column(ws, id)) {
            // A row outside its batch's window stops the run, as on DuckDB.
            (Some(iv), Some(tc)) => format!(
                "SELECT * FROM ({sql}) AS hubforge_batch WHERE CASE WHEN {} THEN true ELSE \
                 raise_error({}) END",
                in_window(tc, &iv),
                lit(&format!(
                    "hubforge: a row of model `{}` lies outside its batch window {iv} \
                     (time column `{tc}`); the model's SQL must filter on {{{{ start }}}} \
                     and {{{{ end }}}}",
                    file.name
                ))
            ),
            _ => format!("SELECT * FROM ({sql}) AS hubforge_batch"),
        });
    }
    let new_rows = branches.join("\nUNION ALL\n");
    let old = prepared
        .observed
        .state
        .models
        .get(ws.dag.nodes[id].name.key())
        .filter(|m| !m.data_table.is_empty());
    let create = |body: &str| {
        spark
            .execute(&format!("CREATE TABLE {table} USING parquet AS {body}"))
            .map_err(|e| match e {
                Error::Engine(m) => Error::Engine(format!(
                    "building model `{}` ({}) on Spark: {m}",
                    file.name,
                    file.path.display()
                )),
                other => other,
            })
    };
    if let (Mode::Partial, Some(old), Some(tc)) = (stage.mode, old, time_column(ws, id)) {
        // Only the rebuilt rows are written: they become a part of the model.
        let key = ws.dag.nodes[id].name.key();
        let published = super::publish::Published {
            table: &old.data_table,
            parts: prepared.observed.state.parts.get(key).map(Vec::as_slice),
        };
        let next = super::publish::next_parts(published, &stage.table, &stage.rebuilt);
        if next.kept.len() <= super::publish::MAX_PARTS {
            if reuse.take().is_none() {
                create(&new_rows)?;
            }
            if let Some(view) =
                create_parts_view(spark, names, key, tc, &old.data_table, &next.kept)?
            {
                let parts = SparkParts {
                    view,
                    parts: next.kept,
                    replaced: next.replaced,
                };
                return Ok((columns_of(spark, &table)?, Some(parts)));
            }
            spark.execute(&format!("DROP TABLE IF EXISTS {table}"))?;
        }
    }
    if reuse.is_some() {
        // A part that cannot be one now: staged again, as a whole table.
        spark.execute(&format!("DROP TABLE IF EXISTS {table}"))?;
    }
    // Otherwise the model's rows are copied into one new table.
    let body = match (stage.mode, old, time_column(ws, id)) {
        (Mode::Partial, Some(old), Some(tc)) => {
            // The published rows outside the rebuilt intervals, then the new
            // ones; columns the new logic adds or drops are NULL on the other side.
            let new_view = format!("hubforge_new_{}", ws.dag.nodes[id].name.key());
            spark.execute(&format!(
                "CREATE OR REPLACE TEMPORARY VIEW {} AS {new_rows}",
                q(&new_view)
            ))?;
            let new_columns = spark
                .query(&format!("SELECT * FROM {} LIMIT 0", q(&new_view)))?
                .columns;
            let mut all: Vec<String> = old.columns.clone();
            for c in &new_columns {
                if !all.iter().any(|a| a.eq_ignore_ascii_case(c)) {
                    all.push(c.clone());
                }
            }
            let pick = |have: &[String]| {
                all.iter()
                    .map(|c| {
                        if have.iter().any(|h| h.eq_ignore_ascii_case(c)) {
                            q(c)
                        } else {
                            format!("NULL AS {}", q(c))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let rebuilt = stage
                .rebuilt
                .iter()
                .map(|iv| format!("({})", in_window(tc, iv)))
                .collect::<Vec<_>>()
                .join(" OR ");
            format!(
                "SELECT {} FROM {} WHERE NOT coalesce({rebuilt}, false)\nUNION ALL\nSELECT {} FROM {}",
                pick(&old.columns),
                names.spark(Part::Data, &old.data_table),
                pick(&new_columns),
                q(&new_view)
            )
        }
        _ => new_rows,
    };
    create(&body)?;
    Ok((columns_of(spark, &table)?, None))
}

/// A partial rebuild published as a part of its model, without copying the
/// untouched intervals (see `publish::next_parts`).
struct SparkParts {
    /// The view over the parts, created while staging, so that its SQL is
    /// checked before anything is published.
    view: String,
    parts: Vec<state::DataPart>,
    /// Parts the rebuild replaces whole: dropped once the run is committed.
    replaced: Vec<state::DataPart>,
}

/// Create the view over a model's parts, each without the intervals later
/// parts replace; `None` (and no view) when a column's type differs between
/// them: the rows are then copied into one table, which casts them once.
fn create_parts_view(
    spark: &dyn Session,
    names: &SparkNames,
    key: &str,
    tc: &str,
    current: &str,
    parts: &[state::DataPart],
) -> Result<Option<String>> {
    let mut columns = described(spark, &names.spark(Part::Data, current))?;
    let mut each = Vec::new();
    for p in parts {
        let have = if p.table == current {
            columns.clone()
        } else {
            described(spark, &names.spark(Part::Data, &p.table))?
        };
        for (c, ty) in &have {
            match columns.iter().find(|(a, _)| a.eq_ignore_ascii_case(c)) {
                None => columns.push((c.clone(), ty.clone())),
                Some((_, t)) if t != ty => return Ok(None),
                Some(_) => {}
            }
        }
        each.push(have);
    }
    let selects: Vec<String> = parts
        .iter()
        .zip(&each)
        .map(|(p, have)| {
            let list: Vec<String> = columns
                .iter()
                .map(|(c, ty)| {
                    if have.iter().any(|(h, _)| h.eq_ignore_ascii_case(c)) {
                        q(c)
                    } else {
                        format!("CAST(NULL AS {ty}) AS {}", q(c))
                    }
                })
                .collect();
            let keep = if p.excluded.is_empty() {
                String::new()
            } else {
                let replaced: Vec<String> = p
                    .excluded
                    .iter()
                    .map(|iv| format!("({})", in_window(tc, iv)))
                    .collect();
                format!(" WHERE NOT coalesce({}, false)", replaced.join(" OR "))
            };
            format!(
                "SELECT {} FROM {}{keep}",
                list.join(", "),
                names.spark(Part::Data, &p.table)
            )
        })
        .collect();
    let view = super::publish::parts_view(key, parts);
    spark.execute(&format!(
        "CREATE OR REPLACE VIEW {} AS {}",
        names.spark(Part::Data, &view),
        selects.join("\nUNION ALL\n")
    ))?;
    Ok(Some(view))
}

/// Drop a model's data relation after a run: its table, or its view and parts.
fn drop_data(
    drop: &mut Vec<String>,
    names: &SparkNames,
    relation: &str,
    parts: Option<&Vec<state::DataPart>>,
) {
    for (kind, name) in super::publish::data_relations(relation, parts.map(Vec::as_slice)) {
        drop.push(format!(
            "DROP {kind} IF EXISTS {}",
            names.spark(Part::Data, name)
        ));
    }
}

/// The columns of a relation (names; state records no types of them).
fn columns_of(spark: &dyn Session, relation: &str) -> Result<Vec<(String, String)>> {
    Ok(spark
        .query(&format!("SELECT * FROM {relation} LIMIT 0"))?
        .columns
        .into_iter()
        .map(|c| (c, String::new()))
        .collect())
}

/// Rows and checksum of each batch of a staged table, by one grouped scan.
/// The checksum sums a hash of every row: equal data, equal checksum, in
/// whatever order Spark wrote it.
fn measure(
    spark: &dyn Session,
    names: &SparkNames,
    table: &str,
    time_column: Option<&str>,
    tasks: &[&stage::Task],
) -> Result<HashMap<String, Staged>> {
    let windows: Option<Vec<Interval>> = tasks.iter().map(|t| t.interval).collect();
    let measured = crate::engine::dialect::measure(
        spark,
        crate::engine::Dialect::Spark,
        &names.spark(Part::Data, table),
        time_column.zip(windows.as_deref()),
    )?;
    Ok(tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (rows, checksum) = measured.get(i).cloned().unwrap_or((0, "0".to_string()));
            (t.key.clone(), Staged { rows, checksum })
        })
        .collect())
}

/// The columns and types of a relation hubforge reads locally, as Spark types.
fn spark_schema(what: &str, columns: &[(String, String)]) -> Result<String> {
    columns
        .iter()
        .map(|(name, ty)| {
            crate::sql::spark::spark_type(ty)
                .map(|t| format!("{} {t}", q(name)))
                .ok_or_else(|| {
                    Error::Engine(format!(
                        "{what}: column `{name}` has type {ty}, which Spark cannot read; \
                         declare another type for it (columns = {{ {name} = \"VARCHAR\" }})"
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()
        .map(|c| c.join(", "))
}

/// A Spark reader of CSV files, with `schema` (the types DuckDB reads them
/// with) when given.
fn csv_reader(view: &str, schema: Option<&str>, path: &str, options: &[(&str, String)]) -> String {
    let mut all = vec![("path", path.to_string())];
    all.extend(options.iter().cloned());
    format!(
        "CREATE OR REPLACE TEMPORARY VIEW {}{} USING csv OPTIONS ({})",
        q(view),
        schema.map(|s| format!(" ({s})")).unwrap_or_default(),
        all.iter()
            .map(|(k, v)| format!("{k} {}", lit(v)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A source's CSV options as Spark's CSV reader names them.
fn csv_options(
    name: &str,
    config: &crate::config::SourceConfig,
) -> Result<Vec<(&'static str, String)>> {
    let refuse = |what: String| {
        Error::Engine(format!(
            "source `{name}`: {what} cannot be read the same way on Spark; change it in \
             [sources.{name}] of hubforge.toml"
        ))
    };
    let mut out = vec![("header", config.header.unwrap_or(true).to_string())];
    if let Some(d) = &config.delimiter {
        out.push(("sep", d.clone()));
    }
    if let Some(q) = &config.quote {
        out.push(("quote", q.clone()));
    }
    for (key, spark_key, format) in [
        ("dateformat", "dateFormat", &config.dateformat),
        (
            "timestampformat",
            "timestampFormat",
            &config.timestampformat,
        ),
    ] {
        if let Some(f) = format {
            let java = crate::sql::spark::java_format(f)
                .ok_or_else(|| refuse(format!("{key} = \"{f}\"")))?;
            out.push((spark_key, java));
        }
    }
    if let Some(e) = &config.encoding {
        let java = match e.to_lowercase().as_str() {
            "utf-8" | "utf8" => "UTF-8",
            "utf-16" | "utf16" => "UTF-16",
            "latin-1" | "latin1" => "ISO-8859-1",
            _ => return Err(refuse(format!("encoding = \"{e}\""))),
        };
        out.push(("encoding", java.to_string()));
    }
    match config.null.as_deref() {
        None => {}
        Some([one]) => out.push(("nullValue", one.clone())),
        Some(many) => {
            return Err(refuse(format!(
                "null = {many:?} (Spark reads one NULL string)"
            )));
        }
    }
    Ok(out)
}

/// Spark reads the sources: file sources from their files (a build copies
/// each version of them into the sources schema; a plan only reads them),
/// table sources where they are, and it snapshots them all. The columns and
/// types of files of this machine are still read here (see
/// [`observe::SourceEngine`]); Spark lists the files at a cluster path and
/// infers their types (a CSV source's declared `columns` replace them).
struct SparkSources<'a> {
    spark: &'a dyn Session,
    names: &'a SparkNames,
    ws: &'a Workspace,
    /// Copy file sources into the sources schema (a build), or leave the
    /// warehouse as it is (a plan).
    copy: bool,
}

impl observe::SourceEngine for SparkSources<'_> {
    fn describe(
        &self,
        name: &str,
        config: &crate::config::SourceConfig,
    ) -> Result<Vec<(String, String)>> {
        let problem = |code, message: String, help: String| {
            source_problem(self.ws, name, code, message, help)
        };
        if let Some(path) = config.cluster_path() {
            let read = |types| {
                source_view(self.spark, name, config, path, types)
                    .and_then(|view| described_as_duckdb(self.spark, &q(&view)))
            };
            // Types are inferred (a pass over every row) unless all are declared.
            let declared = |c: &str| {
                config
                    .columns
                    .iter()
                    .flatten()
                    .any(|(d, _)| d.eq_ignore_ascii_case(c))
            };
            let csv = config.effective_format() == Some(crate::config::SourceFormat::Csv);
            let mut columns = match csv {
                true => read(ReadTypes::Text),
                false => read(ReadTypes::Inferred),
            }
            .and_then(|read_first| {
                if !csv || read_first.iter().all(|(c, _)| declared(c)) {
                    Ok(read_first)
                } else {
                    read(ReadTypes::Inferred)
                }
            })
            .map_err(|e| {
                problem(
                    crate::diagnostics::Code::SourceUnreadable,
                    format!("source `{name}`: Spark cannot read the files at `{path}`: {e}"),
                    format!("fix `path` or the reading options in [sources.{name}]"),
                )
            })?;
            // Declared types replace the inferred ones, column by column.
            for (column, ty) in config.columns.iter().flatten() {
                match columns
                    .iter_mut()
                    .find(|(c, _)| c.eq_ignore_ascii_case(column))
                {
                    Some(found) => found.1 = ty.to_uppercase(),
                    None => {
                        return Err(problem(
                            crate::diagnostics::Code::SourceUnreadable,
                            format!(
                                "source `{name}`: the files at `{path}` have no column `{column}`"
                            ),
                            format!(
                                "they have {}; fix `columns` in [sources.{name}]",
                                columns
                                    .iter()
                                    .map(|(c, _)| format!("`{c}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
            }
            return Ok(columns);
        }
        let table = config.table.as_deref().unwrap_or_default();
        if config.columns.is_some() {
            return Err(problem(
                crate::diagnostics::Code::SourceUnreadable,
                format!("source `{name}`: a table source on Spark takes no `columns`"),
                format!(
                    "give the table `{table}` those types itself, and remove `columns` from [sources.{name}]"
                ),
            ));
        }
        described_as_duckdb(self.spark, &spark_table(table)).map_err(|e| {
            problem(
                crate::diagnostics::Code::SourceMissing,
                format!(
                    "source `{name}`: Spark cannot read the table `{table}`: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
                format!("create it, or fix `table` in [sources.{name}] (schema.table)"),
            )
        })
    }

    fn files(
        &self,
        name: &str,
        config: &crate::config::SourceConfig,
    ) -> Result<Vec<state::FileSignature>> {
        let path = config.cluster_path().unwrap_or_default();
        // `binaryFile` lists the files a path or glob matches without reading
        // their content.
        let view = format!("hubforge_files_{}", name.to_lowercase());
        let listed = self
            .spark
            .execute(&format!(
                "CREATE OR REPLACE TEMPORARY VIEW {} USING binaryFile OPTIONS (path {})",
                q(&view),
                lit(path)
            ))
            .and_then(|()| {
                self.spark.query(&format!(
                    "SELECT path, length, unix_micros(modificationTime) * 1000 FROM {} \
                     ORDER BY path",
                    q(&view)
                ))
            })
            .map_err(|e| {
                source_problem(
                    self.ws,
                    name,
                    crate::diagnostics::Code::SourceMissing,
                    format!(
                        "source `{name}`: Spark finds no files at `{path}`: {}",
                        e.to_string().lines().next().unwrap_or_default()
                    ),
                    format!("fix `path` in [sources.{name}], or add the files"),
                )
            })?;
        Ok(listed
            .rows
            .iter()
            .map(|r| state::FileSignature {
                path: r[0].to_text().unwrap_or_default(),
                size: r[1].as_i64().unwrap_or(0),
                modified_ns: r[2].as_i64().unwrap_or(0),
            })
            .collect())
    }

    fn snapshot(
        &self,
        name: &str,
        config: &crate::config::SourceConfig,
        typed: &[(String, String)],
        files: Vec<state::FileSignature>,
        local_rows: Option<i64>,
    ) -> Result<state::SourceSnapshot> {
        // A file Spark cannot read through is most often a row that does not
        // read with the types.
        let hint = |e: Error| match e {
            Error::Engine(m) if m.contains("FAILED_READ_FILE") => Error::Engine(format!(
                "{m}\n  a row of that file may not read with the source's column types \
                 (declared in `columns`, or inferred by Spark): fix the row, or the types"
            )),
            e => e,
        };
        let context = |e: Error| hint(Error::Engine(format!("reading source `{name}`: {e}")));
        let relation = match &config.table {
            Some(table) => spark_table(table),
            None if self.copy => {
                let copy = ingest_source(self.spark, self.ws, self.names, name, typed, &files)
                    .map_err(context)?;
                self.names.spark(Part::Sources, &copy)
            }
            None => q(&source_reader(self.spark, self.ws, name, typed).map_err(context)?),
        };
        // Spark reads the files of this machine with the types DuckDB read
        // them with, and drops the rows DuckDB refused or kept out; a row one
        // reads and the other does not would make the engines' data differ.
        if let Some(expected) = local_rows {
            let read = self
                .spark
                .query(&format!("SELECT count(*) FROM {relation}"))
                .map_err(context)?;
            let spark_rows = read.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
            if spark_rows != expected {
                return Err(source_problem(
                    self.ws,
                    name,
                    crate::diagnostics::Code::SourceUnreadable,
                    format!(
                        "source `{name}`: Spark reads {spark_rows} rows from its files where \
                         hubforge read {expected} on this machine: Spark parses some row \
                         differently"
                    ),
                    "a value Spark cannot read with its column's type (spaces around a \
                     number, a date or time written another way): fix it in the files, or \
                     declare the column VARCHAR and convert it in a model"
                        .to_string(),
                ));
            }
        }
        sources::snapshot(
            self.spark,
            crate::engine::Dialect::Spark,
            name,
            config,
            &relation,
            files,
        )
        .map_err(hint)
    }

    fn quarantine(&self, name: &str, rows: &crate::engine::Rows) -> Result<Option<String>> {
        if !self.copy {
            return Ok(None);
        }
        let table = format!("rejects__{}", name.to_lowercase());
        let relation = self.names.spark(Part::State, &table);
        // Spark's own catalog cannot replace a table in one statement.
        let mut sql = format!(
            "DROP TABLE IF EXISTS {relation};\n\
             CREATE TABLE {relation} (file STRING, line BIGINT, {} STRING, \
             error STRING, row_text STRING, unit_start TIMESTAMP) USING parquet;\n",
            q("column")
        );
        let value = |v: &Value, ts: bool| match v.to_text() {
            None => "NULL".to_string(),
            Some(t) if ts => format!("TIMESTAMP {}", lit(&t)),
            Some(t) => lit(&t),
        };
        for chunk in rows.rows.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|r| {
                    format!(
                        "({}, {}, {}, {}, {}, {})",
                        value(&r[0], false),
                        r[1].as_i64().map_or("NULL".to_string(), |l| l.to_string()),
                        value(&r[2], false),
                        value(&r[3], false),
                        value(&r[4], false),
                        value(&r[5], true)
                    )
                })
                .collect();
            sql.push_str(&format!(
                "INSERT INTO {relation} VALUES {};\n",
                values.join(", ")
            ));
        }
        self.spark.execute(&sql)?;
        Ok(Some(format!("{}.{table}", self.names.schema(Part::State))))
    }
}

/// A problem with a source, at its section of hubforge.toml.
fn source_problem(
    ws: &Workspace,
    name: &str,
    code: crate::diagnostics::Code,
    message: String,
    help: String,
) -> Error {
    Error::Input(crate::diagnostics::Diagnostics(vec![
        crate::diagnostics::Diagnostic::error(code, message)
            .at(crate::config::source_location(
                &ws.project.config_text,
                name,
            ))
            .with_help(help),
    ]))
}

/// The columns of a relation, with DuckDB's names of their types.
fn described_as_duckdb(spark: &dyn Session, relation: &str) -> Result<Vec<(String, String)>> {
    Ok(described(spark, relation)?
        .into_iter()
        .map(|(c, ty)| (c, crate::sql::spark::duckdb_type(&ty)))
        .collect())
}

/// The column types a source's files are read with.
enum ReadTypes<'a> {
    /// These (DuckDB's names), in the files' order.
    Given(&'a [(String, String)]),
    /// Those Spark infers, from a pass over all the rows (Parquet: those the
    /// files carry).
    Inferred,
    /// CSV: text, only the header is read.
    Text,
}

/// A temporary view of this session reading the files of a source at `path`;
/// its name. Files only the cluster sees fail on a row that does not read
/// (nothing on this machine has checked them), others drop it (DuckDB refused
/// or quarantined it). Parquet and JSON files are read with their own types,
/// then cast to the given ones (as DuckDB casts them to declared types).
fn source_view(
    spark: &dyn Session,
    name: &str,
    config: &crate::config::SourceConfig,
    path: &str,
    types: ReadTypes,
) -> Result<String> {
    use crate::config::SourceFormat;
    let view = format!("hubforge_read_{}", name.to_lowercase());
    let mode = match config.cluster_path() {
        Some(_) => "FAILFAST",
        None => "DROPMALFORMED",
    };
    let options = |options: &[(&str, String)]| {
        options
            .iter()
            .map(|(k, v)| format!("{k} {}", lit(v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let what = format!("source `{name}`");
    let (reader, given) = match (config.effective_format(), &types) {
        (Some(SourceFormat::Csv), _) => {
            let mut all = vec![("path", path.to_string())];
            all.extend(csv_options(name, config)?);
            all.push(("mode", mode.to_string()));
            if let ReadTypes::Inferred = types {
                all.push(("inferSchema", "true".to_string()));
            }
            let schema = match types {
                ReadTypes::Given(typed) => format!(" ({})", spark_schema(&what, typed)?),
                ReadTypes::Inferred | ReadTypes::Text => String::new(),
            };
            spark.execute(&format!(
                "CREATE OR REPLACE TEMPORARY VIEW {}{schema} USING csv OPTIONS ({})",
                q(&view),
                options(&all)
            ))?;
            return Ok(view);
        }
        (Some(SourceFormat::Parquet), _) => ("parquet", vec![("path", path.to_string())]),
        (Some(SourceFormat::Json), _) => {
            let mut all = vec![
                ("path", path.to_string()),
                ("mode", mode.to_string()),
                ("multiLine", json_multiline(name, path)?.to_string()),
            ];
            // Values read as text are cast as DuckDB casts them.
            if let ReadTypes::Given(_) = types {
                all.push(("primitivesAsString", "true".to_string()));
            }
            ("json", all)
        }
        (None, _) => {
            return Err(Error::Engine(format!(
                "{what}: Spark reads CSV, Parquet or JSON files; give its `format`"
            )));
        }
    };
    // Parquet's own types stand but for declared ones; JSON's values are
    // all cast to the types DuckDB read them with.
    let cast = |column: &str| {
        reader == "json"
            || config
                .columns
                .iter()
                .flatten()
                .any(|(d, _)| d.eq_ignore_ascii_case(column))
    };
    let typed = match types {
        ReadTypes::Given(typed) if typed.iter().any(|(c, _)| cast(c)) => typed,
        _ => &[][..],
    };
    if typed.is_empty() {
        spark.execute(&format!(
            "CREATE OR REPLACE TEMPORARY VIEW {} USING {reader} OPTIONS ({})",
            q(&view),
            options(&given)
        ))?;
        return Ok(view);
    }
    let raw = format!("{view}_raw");
    spark.execute(&format!(
        "CREATE OR REPLACE TEMPORARY VIEW {} USING {reader} OPTIONS ({})",
        q(&raw),
        options(&given)
    ))?;
    let casts = typed
        .iter()
        .map(|(column, ty)| {
            if !cast(column) {
                return Ok(q(column));
            }
            let spark_ty = crate::sql::spark::spark_type(ty).ok_or_else(|| {
                Error::Engine(format!(
                    "{what}: column `{column}` has type {ty}, which Spark cannot read; \
                     declare another type for it (columns = {{ {column} = \"VARCHAR\" }})"
                ))
            })?;
            Ok(format!("CAST({c} AS {spark_ty}) AS {c}", c = q(column)))
        })
        .collect::<Result<Vec<_>>>()?;
    spark.execute(&format!(
        "CREATE OR REPLACE TEMPORARY VIEW {} AS SELECT {} FROM {}",
        q(&view),
        casts.join(", "),
        q(&raw)
    ))?;
    Ok(view)
}

/// Whether JSON files are read whole (an array, or objects over several
/// lines) rather than as one object per line, told from the first line of
/// each file on this machine (files only the cluster sees are JSON Lines).
/// Spark reads all the files of a source one way: files of both kinds are an
/// error rather than rows lost.
fn json_multiline(name: &str, path: &str) -> Result<bool> {
    use std::io::BufRead;
    let mut first: Option<(bool, std::path::PathBuf)> = None;
    for file in sources::source_paths(std::path::Path::new("/"), path) {
        let opened = std::fs::File::open(&file)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let line = std::io::BufReader::new(opened)
            .lines()
            .map_while(std::result::Result::ok)
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        let lines = serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| v.is_object());
        match &first {
            None => first = Some((lines, file)),
            Some((kind, seen)) if *kind != lines => {
                let (one_per_line, whole) = if lines { (&file, seen) } else { (seen, &file) };
                return Err(Error::Engine(format!(
                    "source `{name}`: Spark reads the JSON files of a source all one way, but \
                     {} holds one object per line and {} a whole document (an array, or \
                     objects over several lines); write them the same way",
                    one_per_line.display(),
                    whole.display()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.is_some_and(|(lines, _)| !lines))
}

/// A table named in hubforge.toml (`db.table`, `catalog.db.table`), quoted
/// for Spark.
fn spark_table(table: &str) -> String {
    table.split('.').map(q).collect::<Vec<_>>().join(".")
}

/// A temporary view of this session reading a file source's current files
/// with the columns and types it was observed with; its name.
fn source_reader(
    spark: &dyn Session,
    ws: &Workspace,
    name: &str,
    typed: &[(String, String)],
) -> Result<String> {
    let config = &ws.project.config.sources[name];
    let path = config.path.as_deref().expect("a file source");
    let full_path = match config.cluster_path() {
        Some(url) => url.to_string(),
        None => ws.project.root.join(path).display().to_string(),
    };
    source_view(spark, name, config, &full_path, ReadTypes::Given(typed))
}

/// Copy the current files of a source into a Parquet table of the sources
/// schema (once per version of the files); its name.
fn ingest_source(
    spark: &dyn Session,
    ws: &Workspace,
    names: &SparkNames,
    name: &str,
    typed: &[(String, String)],
    files: &[state::FileSignature],
) -> Result<String> {
    let config = &ws.project.config.sources[name];
    let table = sources::ingested_name(name, config, files);
    if crate::engine::relation_exists(spark, &names.spark(Part::Sources, &table)) {
        return Ok(table);
    }
    let reader = source_reader(spark, ws, name, typed)?;
    spark.execute(&format!(
        "CREATE TABLE {} USING parquet AS SELECT * FROM {}",
        names.spark(Part::Sources, &table),
        q(&reader)
    ))?;
    Ok(table)
}

/// Load a seed's CSV file into a new table, with the types DuckDB reads it with.
fn load_seed(
    spark: &dyn Session,
    local: &dyn Session,
    ws: &Workspace,
    names: &SparkNames,
    id: NodeId,
    table: &str,
) -> Result<()> {
    let node = &ws.dag.nodes[id];
    let seed = ws.project.seed(&node.name).expect("seed node");
    let columns = sources::describe_typed(local, &sources::seed_relation(&ws.project.root, seed))?;
    let schema = spark_schema(&format!("seed `{}`", node.name), &columns)?;
    let reader = format!("hubforge_seed_{}", node.name.key());
    let path = ws.project.root.join(&seed.path).display().to_string();
    spark.execute(&csv_reader(
        &reader,
        Some(&schema),
        &path,
        &[
            ("header", "true".to_string()),
            ("mode", "DROPMALFORMED".to_string()),
        ],
    ))?;
    spark.execute(&format!(
        "CREATE TABLE {} USING parquet AS SELECT * FROM {}",
        names.spark(Part::Data, table),
        q(&reader)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, body: &str) -> Entry {
        Entry {
            run_id: "r".into(),
            kind: kind.into(),
            body: body.into(),
        }
    }

    fn staged_entry(models: &[(&str, &str)]) -> Entry {
        let models: Vec<StagedModel> = models
            .iter()
            .map(|(model, table)| StagedModel {
                model: model.to_string(),
                table: table.to_string(),
                keys: vec![format!("{model}-key")],
                results: BTreeMap::new(),
                part: false,
            })
            .collect();
        entry("staged", &serde_json::to_string(&models).unwrap())
    }

    #[test]
    fn what_failed_runs_staged_is_reusable_until_a_commit() {
        let tables = |staged: &[StagedModel]| -> Vec<String> {
            staged.iter().map(|m| m.table.clone()).collect()
        };
        let mut staged = Vec::new();
        // A run staged a and b, the next one a again (another table) and c.
        fold_staged(&mut staged, &staged_entry(&[("a", "a_1"), ("b", "b_1")]));
        fold_staged(&mut staged, &staged_entry(&[("a", "a_2"), ("c", "c_2")]));
        assert_eq!(tables(&staged), ["b_1", "a_2", "c_2"]);
        // Other entries change nothing; an unreadable one costs nothing.
        fold_staged(&mut staged, &entry("state", "INSERT …"));
        fold_staged(&mut staged, &entry("staged", "not json"));
        assert_eq!(tables(&staged), ["b_1", "a_2", "c_2"]);
        // A commit ends them all; a later failed run starts anew.
        fold_staged(&mut staged, &entry("commit", ""));
        assert!(staged.is_empty());
        fold_staged(&mut staged, &staged_entry(&[("b", "b_3")]));
        assert_eq!(tables(&staged), ["b_3"]);
    }

    #[test]
    fn literals_and_names_survive_any_text() {
        assert_eq!(lit("it's a \\ path"), "'it\\'s a \\\\ path'");
        assert_eq!(q("a`b"), "`a``b`");
        let names = SparkNames {
            catalog: Some("lake".into()),
            schema: "acme".into(),
        };
        assert_eq!(names.spark(Part::Data, "m"), "`lake`.`acme__data`.`m`");
        assert_eq!(
            names.duck(Part::State, "x"),
            "\"lake\".\"acme__hubforge\".\"x\""
        );
    }
}
