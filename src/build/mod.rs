//! `hubforge build`: stage every stale (model, interval), then publish all of it
//! in one DuckDB transaction.
//!
//! Every model's rows live in a table of the `_hubforge_data` schema; what users
//! query is a view of the same name in `main` over that table. A run stages new
//! rows into new tables there (recorded as they finish, so that a rerun after a
//! crash or Ctrl-C reuses them), with references between models of the run
//! rewritten to the staged data. Publishing is one transaction: a model rebuilt
//! whole gets its view pointed at its new table (no copy), a model rebuilt for
//! some intervals gets those intervals replaced in place, and state is written.
//! Until that transaction commits, what `main` shows and what state says are
//! untouched.

mod cutoff;
mod publish;
#[cfg(feature = "spark")]
pub mod spark;
mod stage;

pub use cutoff::CutOff;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::NaiveDateTime;

use crate::engine::{Engine, Session};
use crate::error::{Error, Result};
use crate::fingerprint::{self, ModelVersion};
use crate::graph::{NodeId, NodeKind};
use crate::interval::{Interval, IntervalSet};
use crate::observe::{self, Observed};
use crate::plan::{self, ModelWork, Plan, PlanOptions};
use crate::progress::Progress;
use crate::sources::{Ingest, SOURCE_SCHEMA};
use crate::sql;
use crate::state;
use crate::template::Window;
use crate::workspace::{Parsed, Workspace};

/// Where models' rows are stored; `main` holds views over these tables.
pub const DATA_SCHEMA: &str = "_hubforge_data";
/// The staging registry and the views readers use during a run.
pub const STAGE_SCHEMA: &str = "_hubforge_stage";
/// Views named like the nodes they stand for, for models only DuckDB can parse
/// (their references cannot be rewritten, so they are resolved by search path).
const REF_SCHEMA: &str = "_hubforge_ref";

/// What `build` was asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub plan: PlanOptions,
    pub dry_run: bool,
    pub threads: usize,
    pub quiet: bool,
    pub command: String,
    /// Sources whose schema drift the user accepts (`--accept-schema`).
    pub accept_schema: Vec<String>,
    /// Audits not run (`--skip-audits NAME`, `all`).
    pub skip_audits: Vec<String>,
    /// No metrics, thresholds or audits (`--skip-validation`).
    pub skip_validation: bool,
    /// Take over the lock of a build no longer running (`--break-lock`, Spark).
    pub break_lock: bool,
}

/// What a build did.
#[derive(Debug, Clone, Default)]
pub struct BuildSummary {
    pub run_id: Option<String>,
    pub plan: Plan,
    pub models: usize,
    pub intervals: i64,
    pub batches: usize,
    pub reused: usize,
    pub rows: i64,
    pub seeds: usize,
    pub seconds: f64,
    /// Per model: rows written.
    pub rows_by_model: BTreeMap<String, i64>,
    /// Batches not built because the data they read turned out identical.
    pub cutoffs: Vec<CutOff>,
    /// Per source: rows kept out of the build as unreadable (quarantined).
    pub rejected: BTreeMap<String, i64>,
    /// Source → units with rows kept out, and kept rows without a readable time.
    pub rejected_units: BTreeMap<String, (Vec<crate::interval::Interval>, i64)>,
    /// Source → the relation holding its rows kept out, when not DuckDB's
    /// rejects schema.
    pub rejects_at: BTreeMap<String, String>,
    /// Metrics before/after, audits and thresholds; `None` when skipped.
    pub validation: Option<crate::validate::Report>,
    /// The fulfillment manifest written, when products changed.
    pub manifest: Option<std::path::PathBuf>,
}

/// Everything computed before any work: state, sources, versions, plan.
pub struct Prepared {
    pub observed: Observed,
    pub versions: Vec<ModelVersion>,
    pub plan: Plan,
    /// The end of history the plan was made for.
    pub now: NaiveDateTime,
}

/// What a `build` with `options` would answer now, if it found nothing to do:
/// observed and planned like a build, without writing anything but the
/// warehouse's copies of changed sources (as any build would).
pub fn answer_if_nothing_to_do(
    ws: &Workspace,
    engine: &dyn Engine,
    options: &BuildOptions,
) -> Result<Option<BuildSummary>> {
    let main = engine.session()?;
    let prepared = prepare(main.as_ref(), ws, &options.plan, Ingest::Warehouse)?;
    let summary = first_summary(&prepared, options)?;
    let seeds = seeds_to_load(ws, &prepared);
    Ok(nothing_to_do(ws, &prepared, &seeds).then_some(summary))
}

/// A build's summary before it does anything; an error when a source's schema
/// drifted without the user accepting it.
fn first_summary(prepared: &Prepared, options: &BuildOptions) -> Result<BuildSummary> {
    observe::check_drift(&prepared.observed, &options.accept_schema)?;
    Ok(BuildSummary {
        plan: prepared.plan.clone(),
        rejected: prepared.observed.rejected.clone(),
        rejected_units: prepared.observed.rejected_units.clone(),
        rejects_at: prepared.observed.rejects_at.clone(),
        ..BuildSummary::default()
    })
}

/// No data to build, no seed to load, no state to write.
fn nothing_to_do(ws: &Workspace, prepared: &Prepared, seeds: &[NodeId]) -> bool {
    prepared.plan.is_empty() && seeds.is_empty() && !state_changes_needed(ws, prepared)
}

/// Observe, fingerprint and plan.
pub fn prepare(
    s: &dyn Session,
    ws: &Workspace,
    options: &PlanOptions,
    ingest: Ingest,
) -> Result<Prepared> {
    prepare_with(s, ws, options, ingest, None, None)
}

/// This command as the user typed it, for the run log and Spark's lock.
pub fn command_line() -> String {
    std::iter::once("hubforge".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The state a command that records a decision (`mark-current`, `ack`,
/// pausing a destination) reads and plans from: DuckDB's warehouse, or the
/// state log replayed on Spark.
pub trait StateView {
    /// The state store, to query.
    fn session(&self) -> &dyn Session;
    /// Observe the sources and plan from this state, as `plan` does.
    fn prepare(&self, options: &PlanOptions) -> Result<Prepared>;
}

struct WarehouseState<'a> {
    ws: &'a Workspace,
    session: &'a dyn Session,
}

impl StateView for WarehouseState<'_> {
    fn session(&self) -> &dyn Session {
        self.session
    }

    fn prepare(&self, options: &PlanOptions) -> Result<Prepared> {
        prepare(self.session, self.ws, options, Ingest::Temp)
    }
}

/// Record a command's decision in DuckDB's warehouse: `decide` reads state and
/// returns its answer with the state store's statements, run in one
/// transaction (Spark: `spark::write_state`).
pub fn write_state<T>(
    ws: &Workspace,
    engine: &dyn Engine,
    decide: impl FnOnce(&dyn StateView) -> Result<(T, Vec<String>)>,
) -> Result<T> {
    let s = engine.session()?;
    crate::state::migrate(s.as_ref())?;
    let (answer, statements) = decide(&WarehouseState {
        ws,
        session: s.as_ref(),
    })?;
    if !statements.is_empty() {
        crate::engine::in_transaction(s.as_ref(), &statements)?;
    }
    Ok(answer)
}

/// [`prepare`], saying on `progress` what it is doing; `remote` snapshots the
/// sources when the warehouse's engine reads them itself.
pub fn prepare_with(
    s: &dyn Session,
    ws: &Workspace,
    options: &PlanOptions,
    ingest: Ingest,
    progress: Option<&Progress>,
    remote: Option<&dyn observe::SourceEngine>,
) -> Result<Prepared> {
    let phase = |what: &str| {
        if let Some(p) = progress {
            p.phase(what);
        }
    };
    phase("reading state and observing sources");
    let t = std::time::Instant::now();
    let observed = observe::observe_with(s, ws, ingest, remote)?;
    crate::progress::timing("observe sources and state", t.elapsed());
    phase("fingerprinting models and column lineage");
    let t = std::time::Instant::now();
    let versions = fingerprint::versions(ws, &observed.schemas, &observed.state);
    crate::progress::timing("fingerprints and lineage", t.elapsed());
    phase("planning");
    let t = std::time::Instant::now();
    let plan = plan::plan(ws, &versions, &observed.state, &observed.sources, options);
    crate::progress::timing("plan", t.elapsed());
    Ok(Prepared {
        observed,
        versions,
        plan,
        now: options.now,
    })
}

/// Run a build against `engine`.
pub fn build(
    ws: &Workspace,
    engine: &dyn Engine,
    options: &BuildOptions,
    interrupted: &AtomicBool,
) -> Result<BuildSummary> {
    // The run log times the whole command: observing and planning too.
    let started = now();
    let progress = Progress::new(options.quiet);
    progress.phase("opening the warehouse");
    let main = engine.session()?;
    let ingest = if options.dry_run {
        Ingest::Temp
    } else {
        state::migrate(main.as_ref())?;
        setup_schemas(main.as_ref())?;
        // A run killed between its commit and writing its manifest file.
        crate::fulfill::restore_files(main.as_ref(), &ws.project.root)?;
        Ingest::Warehouse
    };
    let prepared = prepare_with(
        main.as_ref(),
        ws,
        &options.plan,
        ingest,
        Some(&progress),
        None,
    )?;
    let mut summary = first_summary(&prepared, options)?;
    if options.dry_run {
        return Ok(summary);
    }
    let seeds = seeds_to_load(ws, &prepared);
    if nothing_to_do(ws, &prepared, &seeds) {
        return Ok(summary);
    }
    let run_id = new_run_id();
    summary.run_id = Some(run_id.clone());
    // The run log records every run, whatever its outcome: the run is logged
    // as running now (a run whose process dies stays so, and is shown as
    // interrupted); publishing records it as published in the same
    // transaction as its data, and a failure is recorded after the rollback.
    let run_log = RunLog::new(ws, &prepared, options, &run_id, started);
    let seq = run_log.seq;
    let log = |status: &str, summary: &serde_json::Value| run_log.record(status, summary);
    main.execute(&run_log.running(&scope_json(ws, &options.plan)))?;
    let outcome = execute(
        ws,
        engine,
        options,
        interrupted,
        &progress,
        main.as_ref(),
        &prepared,
        &seeds,
        summary,
        (&run_id, seq, started),
    );
    if let Err(e) = &outcome {
        let status = if matches!(e, Error::Interrupted) {
            "interrupted"
        } else {
            "failed"
        };
        let error = e.to_string();
        let record = log(
            status,
            &serde_json::json!({
                "scope": scope_json(ws, &options.plan),
                "error": error.trim(),
            }),
        );
        // Written on its own session, after the publish transaction rolled
        // back; a run log that cannot be written does not hide the error.
        if let Ok(s) = engine.session() {
            let _ = s.execute("ROLLBACK");
            let _ = s.execute(&record);
        }
    }
    outcome
}

/// What a run was asked to cover, for the run log.
fn scope_json(ws: &Workspace, options: &PlanOptions) -> serde_json::Value {
    serde_json::json!({
        "start": options.range.map(|r| crate::interval::format_point(r.start())),
        "end": options.range.map(|r| crate::interval::format_point(r.end())),
        "backfill": options.backfill,
        "selected": options.selected.as_ref().map(|s| s.len()),
        "models": options.selected.as_ref().map(|s| {
            s.iter().take(50).map(|&id| ws.dag.nodes[id].name.to_string()).collect::<Vec<_>>()
        }),
    })
}

/// Stage and publish the work of a run that has started.
#[allow(clippy::too_many_arguments)]
fn execute(
    ws: &Workspace,
    engine: &dyn Engine,
    options: &BuildOptions,
    interrupted: &AtomicBool,
    progress: &Progress,
    main: &dyn Session,
    prepared: &Prepared,
    seeds: &[NodeId],
    mut summary: BuildSummary,
    (run_id, seq, started): (&str, i64, NaiveDateTime),
) -> Result<BuildSummary> {
    let mut work: BTreeMap<NodeId, &ModelWork> =
        prepared.plan.models.iter().map(|w| (w.node, w)).collect();
    let last_run = prepared
        .observed
        .state
        .last_run
        .as_ref()
        .map(|r| r.run_id.as_str());
    let mut staging = stage::plan_staging(ws, prepared, &work, seeds, last_run);
    stage::cleanup(ws, main, &staging, &prepared.observed.state)?;
    let reusable = stage::finished_batches(main)?;
    summary.reused = staging
        .tasks
        .iter()
        .filter(|t| reusable.contains_key(&t.key))
        .count();
    summary.batches = staging.tasks.len();

    let t = std::time::Instant::now();
    let planned = work.clone();
    let mut cutoff = cutoff::Cutoff::new(
        ws,
        &prepared.observed.state,
        &planned,
        &prepared.plan.out_of_scope,
    );
    let mut results = stage::run(
        ws,
        engine,
        &staging,
        &reusable,
        options,
        interrupted,
        progress,
        &mut cutoff,
    )?;
    if interrupted.load(Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    // What early cutoff dropped is not published: the rest of the run sees
    // the batches built, and models with none left have no work.
    let rebuilt: BTreeMap<NodeId, IntervalSet> = staging
        .nodes
        .keys()
        .map(|&id| (id, cutoff.rebuilt(id, &staging)))
        .collect();
    for (id, set) in rebuilt {
        if cutoff.partial.contains(&id) {
            let overlay = cutoff::overlay_name(&staging, id);
            staging.views.insert(id, overlay);
        }
        let stage = staging.nodes.get_mut(&id).expect("staged node");
        stage.rebuilt = set;
        if cutoff.partial.contains(&id) {
            stage.mode = stage::Mode::Partial;
        }
    }
    let (cutoffs, settled) = cutoff.finish(&mut staging, &mut work, &prepared.plan.out_of_scope);
    summary.cutoffs = cutoffs;
    crate::progress::timing("stage", t.elapsed());
    pause_point("validate", 0);
    if !options.skip_validation {
        let t = std::time::Instant::now();
        progress.note("validating before publish");
        let mut report = validate_run(ws, prepared, &staging, engine, main, options)?;
        report.rejected_rows = prepared.observed.rejected.clone();
        crate::progress::timing("validate", t.elapsed());
        if interrupted.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        if !report.blocking().is_empty() {
            record_findings(main, run_id, &report)?;
            progress.finish();
            return Err(crate::validate::blocking_error(&report, ws));
        }
        summary.validation = Some(report);
    }

    let t = std::time::Instant::now();
    stage::fill_checksums(
        ws,
        main,
        &staging,
        &mut results,
        summary.validation.as_ref(),
    )?;
    let mut statements = publish::statements(
        ws,
        prepared,
        &work,
        &staging,
        &results,
        &publish::RunInfo {
            run_id,
            seq,
            started,
            command: &options.command,
            cutoffs: &summary.cutoffs,
            scope: &scope_json(ws, &options.plan),
            settled: &settled,
            accepted: &options.accept_schema,
            validation: summary.validation.as_ref(),
            skipped: if options.skip_validation {
                vec!["all (--skip-validation)".to_string()]
            } else {
                options.skip_audits.clone()
            },
        },
        main,
    )?;
    let manifest = manifest(
        ws,
        prepared,
        &work,
        &staging,
        &results,
        summary.validation.as_ref(),
        main,
        &|tables| crate::sources::table_columns(main, DATA_SCHEMA, tables),
        (run_id, started, &options.command),
    )?;
    if let Some(m) = &manifest {
        statements.extend(crate::fulfill::state_statements(m, &m.finished_at));
    }
    crate::progress::timing("prepare publish", t.elapsed());
    progress.note(&format!(
        "publishing {} models in one transaction",
        work.len() + seeds.len()
    ));
    let publish_error = |e: Error| {
        let _ = main.execute("ROLLBACK");
        match e {
            _ if interrupted.load(Ordering::SeqCst) => Error::Interrupted,
            Error::Engine(m) => {
                Error::Engine(format!("publish failed, nothing was published: {m}"))
            }
            other => other,
        }
    };
    // Ctrl-C before the commit rolls everything back, as the user was told.
    let check_interrupt = || {
        if interrupted.load(Ordering::SeqCst) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    };
    main.execute("BEGIN TRANSACTION").map_err(publish_error)?;
    for (i, statement) in statements.iter().enumerate() {
        check_interrupt().map_err(publish_error)?;
        main.execute(statement).map_err(publish_error)?;
        pause_point("publish", i + 1);
    }
    check_interrupt().map_err(publish_error)?;
    main.execute("COMMIT").map_err(publish_error)?;
    crate::progress::timing("publish", t.elapsed());
    let t = std::time::Instant::now();
    // Fold the write-ahead log into the warehouse file, so that the file alone
    // holds the published data (it is replayed on the next open otherwise).
    let _ = main.execute("CHECKPOINT");
    crate::progress::timing("checkpoint", t.elapsed());
    if let Some(m) = &manifest {
        summary.manifest = Some(crate::fulfill::write_file(&ws.project.root, m)?);
    }
    progress.finish();

    summary.models = work.len();
    summary.seeds = seeds.len();
    summary.intervals = prepared.plan.interval_count(&prepared.plan.models, ws);
    for t in &staging.tasks {
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

/// The columns of some staged tables: table → columns.
type StagedColumns<'a> =
    &'a dyn Fn(&[&str]) -> Result<std::collections::HashMap<String, crate::validate::Columns>>;

/// The manifest of the products this run changes, with each destination's
/// action; `None` when no product changed. `s` reads state; `columns` the
/// staged tables' columns.
#[allow(clippy::too_many_arguments)]
fn manifest(
    ws: &Workspace,
    prepared: &Prepared,
    work: &BTreeMap<NodeId, &ModelWork>,
    staging: &stage::Staging,
    results: &std::collections::HashMap<String, stage::Staged>,
    validation: Option<&crate::validate::Report>,
    s: &dyn Session,
    columns: StagedColumns,
    (run_id, started, command): (&str, NaiveDateTime, &str),
) -> Result<Option<crate::fulfill::Manifest>> {
    use crate::fulfill::{Checksum, Column, DestinationAction, ProductChange, ValidationSummary};
    let paused = crate::fulfill::paused_in_state(s)?;
    let products_staged: Vec<&str> = work
        .keys()
        .filter(|id| ws.model(**id).is_some_and(|(f, _)| f.config.product))
        .filter_map(|id| staging.nodes.get(id))
        .map(|n| n.table.as_str())
        .collect();
    let staged_columns = columns(&products_staged)?;
    let mut products = Vec::new();
    for (&id, w) in work {
        let Some((file, _)) = ws.model(id) else {
            continue;
        };
        if !file.config.product {
            continue;
        }
        let node_stage = staging.nodes.get(&id);
        let full = w.full || node_stage.is_none_or(|n| n.mode == stage::Mode::Full);
        let intervals = match node_stage {
            Some(n) if !full => n.rebuilt.clone(),
            _ => IntervalSet::new(),
        };
        let tasks: Vec<&stage::Task> = staging.tasks.iter().filter(|t| t.node == id).collect();
        let checksums: Vec<Checksum> = tasks
            .iter()
            .filter_map(|t| {
                let r = results.get(&t.key)?;
                Some(Checksum {
                    interval: t.interval.map(|i| i.to_string()),
                    rows: r.rows,
                    checksum: r.checksum.clone(),
                })
            })
            .collect();
        let report = validation.and_then(|v| {
            v.models
                .iter()
                .find(|m| m.model.eq_ignore_ascii_case(&w.name))
        });
        let columns = match node_stage {
            Some(n) => staged_columns
                .get(&n.table)
                .into_iter()
                .flatten()
                .map(|(name, ty)| Column {
                    name: name.to_lowercase(),
                    ty: ty.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        let destinations = crate::fulfill::destinations_of(ws, &w.name)
            .into_iter()
            .map(|d| {
                let (action, reason) = match crate::fulfill::held_reason(d, &paused) {
                    Some(r) => ("held", Some(r)),
                    None if full => ("deliver_full", None),
                    None => match d.max_intervals_per_delivery {
                        Some(max)
                            if crate::fulfill::unit_count(&intervals, file.config.unit)
                                > max as usize =>
                        (
                            "deliver",
                            Some(format!(
                                "throttled: {max} intervals per delivery, the rest in later deliveries"
                            )),
                        ),
                        _ => ("deliver", None),
                    },
                };
                DestinationAction {
                    name: d.name.clone(),
                    action: action.to_string(),
                    reason,
                }
            })
            .collect();
        products.push(ProductChange {
            name: w.name.to_string(),
            fingerprint: prepared.versions[id].fingerprint.clone(),
            change: w.change.as_str().to_string(),
            reason: w.reason.clone(),
            full,
            intervals,
            rows_before: report.map(|r| {
                r.units
                    .iter()
                    .filter_map(|u| u.before.as_ref())
                    .map(|b| b.rows)
                    .sum()
            }),
            rows_after: checksums.iter().map(|c| c.rows).sum(),
            checksums,
            columns,
            validation: report.map(|r| ValidationSummary {
                units: r.units.len(),
                changed_units: r.units.iter().filter(|u| u.changed()).count(),
                audits_passed: r.passed.clone(),
                findings: r
                    .findings
                    .iter()
                    .map(|f| format!("{}: {}", f.name, f.message))
                    .collect(),
            }),
            destinations,
        });
    }
    if products.is_empty() {
        return Ok(None);
    }
    let fmt = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    Ok(Some(crate::fulfill::Manifest {
        schema_version: crate::fulfill::MANIFEST_SCHEMA_VERSION,
        run_id: run_id.to_string(),
        project: ws.project.config.project.name.clone(),
        git: crate::fulfill::git_info(&ws.project.root),
        started_at: fmt(started),
        finished_at: fmt(now()),
        command: command.to_string(),
        products,
    }))
}

/// Validate what staging produced, model by model, before anything is published.
fn validate_run(
    ws: &Workspace,
    prepared: &Prepared,
    staging: &stage::Staging,
    engine: &dyn Engine,
    s: &dyn Session,
    options: &BuildOptions,
) -> Result<crate::validate::Report> {
    let state = &prepared.observed.state;
    let tables: Vec<&str> = staging
        .nodes
        .iter()
        .flat_map(|(&id, n)| {
            let published = state
                .models
                .get(ws.dag.nodes[id].name.key())
                .map(|m| m.data_table.as_str())
                .filter(|t| !t.is_empty());
            std::iter::once(n.table.as_str()).chain(published)
        })
        .collect();
    let mut columns = crate::sources::table_columns(s, DATA_SCHEMA, &tables)?;
    let subjects = validation_subjects(ws, prepared, staging, s, &mut columns, &data_table)?;
    // A relationship's parent as this run will publish it.
    let parent = |model: &str| -> Option<String> {
        let id = ws.dag.lookup(model)?;
        if staging.nodes.contains_key(&id) || staging.views.contains_key(&id) {
            return Some(staging.reader(id));
        }
        state
            .models
            .contains_key(ws.dag.nodes[id].name.key())
            .then(|| main_name(&ws.dag.nodes[id].name))
    };
    crate::validate::validate(
        engine,
        crate::validate::Dialect::DuckDb,
        options.threads,
        &subjects,
        &options.skip_audits,
        &parent,
        &ws.project.root,
    )
}

/// What validation compares for each staged model: its staged table against
/// the published one, over the intervals rebuilt. `columns` holds the columns
/// of the tables already read (table → columns); `relation` names a table of
/// the data schema; `local` reads state.
fn validation_subjects(
    ws: &Workspace,
    prepared: &Prepared,
    staging: &stage::Staging,
    local: &dyn Session,
    columns: &mut std::collections::HashMap<String, crate::validate::Columns>,
    relation: &dyn Fn(&str) -> String,
) -> Result<Vec<crate::validate::Subject>> {
    let state = &prepared.observed.state;
    // What the runs that wrote the rows being replaced measured of them.
    let replacing: Vec<&str> = staging
        .nodes
        .keys()
        .map(|&id| ws.dag.nodes[id].name.key())
        .filter(|key| {
            state
                .models
                .get(*key)
                .is_some_and(|m| !m.data_table.is_empty())
        })
        .collect();
    let measured = crate::validate::measured(local, &replacing)?;
    let lowercase = |cols: Vec<(String, String)>| -> Vec<(String, String)> {
        cols.into_iter()
            .map(|(c, t)| (c.to_lowercase(), t))
            .collect()
    };
    let mut subjects = Vec::new();
    for (&id, node_stage) in &staging.nodes {
        let Some((file, _)) = ws.model(id) else {
            continue;
        };
        if file.config.kind == crate::config::Kind::View {
            continue;
        }
        let key = ws.dag.nodes[id].name.key();
        let published = state
            .models
            .get(key)
            .map(|m| m.data_table.clone())
            .filter(|t| !t.is_empty());
        let before = published.as_deref().map(relation);
        // Both tables are in the catalog query's answer unless one is missing:
        // then validation describes them itself (and reports what fails).
        let known = match (columns.remove(&node_stage.table), &published) {
            (Some(after), None) => Some((lowercase(after), None)),
            (Some(after), Some(p)) => columns
                .get(p)
                .cloned()
                .map(|b| (lowercase(after), Some(lowercase(b)))),
            (None, _) => None,
        };
        let full = node_stage.mode == stage::Mode::Full || file.config.time_column.is_none();
        let range = if full || node_stage.rebuilt.is_empty() {
            plan::history(ws, id, prepared.now)
        } else {
            let ivs: Vec<Interval> = node_stage.rebuilt.iter().copied().collect();
            Interval::new(ivs[0].start(), ivs[ivs.len() - 1].end()).expect("ordered intervals")
        };
        let window = Window::new(range.start(), range.end(), file.config.unit);
        let stored_before = before.as_ref().and_then(|_| {
            crate::validate::stored_before(
                state.intervals.get(key).map_or(&[][..], Vec::as_slice),
                measured.get(key),
                (!full).then_some(&node_stage.rebuilt),
                file.config.unit,
            )
        });
        subjects.push(crate::validate::Subject {
            model: ws.dag.nodes[id].name.to_string(),
            after: relation(&node_stage.table),
            before,
            columns: known,
            stored_before,
            intervals: (!full).then(|| node_stage.rebuilt.clone()),
            time_column: file.config.time_column.clone(),
            unit: file.config.unit,
            grain: file.config.grain.clone(),
            thresholds: file.config.validate.over(&ws.project.config.validate),
            audits: crate::validate::audit::model_audits(&ws.project, file)
                .map_err(|d| Error::Input(crate::diagnostics::Diagnostics(d)))?,
            start: window.literal(range.start()),
            end: window.literal(range.end()),
        });
    }
    Ok(subjects)
}

/// A run stopped by validation publishes nothing; its findings are kept on
/// their own (the run log records the run as failed).
fn record_findings(s: &dyn Session, run_id: &str, report: &crate::validate::Report) -> Result<()> {
    let mut w = state::StateWrites::default();
    w.validation(run_id, report);
    crate::engine::in_transaction(s, &w.sql)
}

/// Seeds whose content changed or that were never loaded. They are compared by
/// content: a copied project has new file times.
fn seeds_to_load(ws: &Workspace, prepared: &Prepared) -> Vec<NodeId> {
    let state = &prepared.observed.state;
    (0..ws.dag.len())
        .filter(|&i| ws.dag.nodes[i].kind == NodeKind::Seed)
        .filter(|&i| {
            let key = ws.dag.nodes[i].name.key();
            state.sources.get(key).map(|s| &s.whole)
                != prepared.observed.sources.get(key).map(|s| &s.whole)
                || !state.models.contains_key(key)
        })
        .collect()
}

/// Whether state must be written even with no data to build: versions of
/// unaffected models to re-key, metadata changes, sources seen anew.
fn state_changes_needed(ws: &Workspace, prepared: &Prepared) -> bool {
    let state = &prepared.observed.state;
    !prepared.plan.rekey.is_empty()
        || !prepared.plan.metadata_only.is_empty()
        || (0..ws.dag.len()).any(|i| {
            let key = ws.dag.nodes[i].name.key();
            ws.dag.nodes[i].kind == NodeKind::Source
                && (state.models.get(key).map(|m| &m.fingerprint)
                    != Some(&prepared.versions[i].fingerprint)
                    || state.sources.get(key) != prepared.observed.sources.get(key))
        })
}

/// The record of one run in the run log, as its status changes.
pub(crate) struct RunLog<'a> {
    pub run_id: &'a str,
    pub seq: i64,
    pub started: NaiveDateTime,
    pub command: &'a str,
    pub plan_json: serde_json::Value,
}

impl<'a> RunLog<'a> {
    /// The record of a run starting now, numbered after the runs in state.
    pub fn new(
        ws: &Workspace,
        prepared: &Prepared,
        options: &'a BuildOptions,
        run_id: &'a str,
        started: NaiveDateTime,
    ) -> RunLog<'a> {
        RunLog {
            run_id,
            seq: prepared.observed.state.next_run_seq(),
            started,
            command: &options.command,
            plan_json: crate::render::plan_json(ws, &prepared.plan),
        }
    }

    /// The statements recording the run with `status`.
    pub fn record(&self, status: &str, summary: &serde_json::Value) -> String {
        let mut w = state::StateWrites::default();
        w.run(
            self.run_id,
            self.seq,
            self.started,
            now(),
            status,
            self.command,
            &user(),
            &self.plan_json,
            summary,
        );
        w.sql.concat()
    }

    /// The statements recording that the run started: runs still marked as
    /// running were interrupted.
    pub fn running(&self, scope: &serde_json::Value) -> String {
        format!(
            "UPDATE {}.runs SET status = 'interrupted' WHERE status = 'running';\n{}",
            state::SCHEMA,
            self.record("running", &serde_json::json!({ "scope": scope }))
        )
    }
}

/// A test hook: with `HUBFORGE_PAUSE_AT=point:n`, stop at that point (announced
/// on stderr) until killed or interrupted, so that a test can stop the process
/// exactly there.
pub(crate) fn pause_point(point: &str, n: usize) {
    if let Ok(at) = std::env::var("HUBFORGE_PAUSE_AT")
        && at == format!("{point}:{n}")
    {
        eprintln!("hubforge: paused at {at}");
        while !crate::interrupt::flag().load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn new_run_id() -> String {
    let t = chrono::Utc::now();
    let salt = blake3::hash(
        format!(
            "{}{}",
            t.timestamp_nanos_opt().unwrap_or(0),
            std::process::id()
        )
        .as_bytes(),
    );
    format!("{}-{}", t.format("%Y%m%dT%H%M%S"), &salt.to_hex()[..6])
}

static USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Record who runs hubforge (`--user` / `HUBFORGE_USER`), for state.
pub fn set_user(name: &str) {
    let name = name.trim();
    if !name.is_empty() {
        let _ = USER.set(name.to_string());
    }
}

/// Who runs hubforge, for state: `--user` / `HUBFORGE_USER`, else `$USER`
/// (`%USERNAME%`), else the operating system's account name.
pub fn user() -> String {
    if let Some(u) = USER.get() {
        return u.clone();
    }
    ["HUBFORGE_USER", "USER", "USERNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
        .or_else(os_account_name)
        .unwrap_or_else(|| "unknown".to_string())
}

/// The name of the account this process runs as (as `id -un` says).
#[cfg(unix)]
fn os_account_name() -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers given, whose sizes it is told;
    // the name it points to lives in `buf`, read before `buf` is dropped.
    unsafe {
        let uid = libc::geteuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_string_lossy()
            .into_owned();
        (!name.is_empty()).then_some(name)
    }
}

#[cfg(not(unix))]
fn os_account_name() -> Option<String> {
    None
}

/// hubforge's schemas and the staging registry.
fn setup_schemas(s: &dyn Session) -> Result<()> {
    let mut sql = String::new();
    for schema in [SOURCE_SCHEMA, DATA_SCHEMA, STAGE_SCHEMA, REF_SCHEMA] {
        sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {schema};\n"));
    }
    // Batches staged by an older layout of the registry are not reused.
    sql.push_str(&format!(
        "DROP TABLE IF EXISTS {STAGE_SCHEMA}.batches;\n\
         CREATE TABLE IF NOT EXISTS {STAGE_SCHEMA}.{} (key VARCHAR PRIMARY KEY, table_name VARCHAR NOT NULL, \
         start_ts TIMESTAMP, end_ts TIMESTAMP, row_count BIGINT NOT NULL, checksum VARCHAR NOT NULL);\n",
        stage::BATCHES
    ));
    s.execute(&sql)
        .map_err(|e| Error::Engine(format!("setting up hubforge schemas: {e}")))
}

/// A quoted name in the data schema.
fn data_table(name: &str) -> String {
    format!("{DATA_SCHEMA}.{}", crate::engine::quote_ident(name))
}

/// The published view of a node in `main`.
fn main_name(name: &str) -> String {
    format!("main.{}", crate::engine::quote_ident(name))
}

/// Render a model for a window with its references pointed at `target(node)`.
/// The second value says the SQL could only be parsed by DuckDB: its
/// references are then resolved by search path instead.
pub fn render_sql(
    ws: &Workspace,
    node: NodeId,
    window: &Window,
    target: &dyn Fn(NodeId) -> String,
) -> Result<(String, bool)> {
    let (file, analysis) = ws.model(node).expect("model node");
    let rendered = ws
        .templates
        .render(&file.path, &file.text, &file.body, window)
        .map_err(|d| Error::Input(d.into()))?;
    match &analysis.parsed {
        Parsed::Sql { .. } => {
            let q = sql::parse_query(&rendered).map_err(|e| {
                Error::Engine(format!(
                    "model `{}` does not parse for window {:?}: {}",
                    file.name, window, e.message
                ))
            })?;
            Ok((q.rewrite_refs(&|r| ws.resolve(r).map(target)), false))
        }
        // References the token-level reading finds are rewritten; the search
        // path resolves any it misses.
        Parsed::DuckDb { .. } => match sql::scan(&rendered) {
            Ok(scanned) => Ok((
                sql::splice_refs(&rendered, &scanned.refs, &|r| ws.resolve(r).map(target)),
                true,
            )),
            Err(_) => Ok((rendered, true)),
        },
        Parsed::Deferred { .. } => unreachable!("builds load every model fully"),
    }
}

/// The window a model is rendered for: a batch, or its whole history.
fn window_for(
    ws: &Workspace,
    node: NodeId,
    interval: Option<Interval>,
    now: NaiveDateTime,
) -> Window {
    let (file, _) = ws.model(node).expect("model node");
    let iv = interval.unwrap_or_else(|| plan::history(ws, node, now));
    Window::new(iv.start(), iv.end(), file.config.unit)
}
