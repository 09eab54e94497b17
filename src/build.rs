//! `hubforge build`: stage every stale (model, interval), then publish all of it
//! in one DuckDB transaction.
//!
//! Staged batches live in the `_hubforge_stage` schema under names derived from
//! what they were built from, and are recorded there as they finish, so that a
//! rerun after a crash or Ctrl-C reuses them. References between models of the
//! same run are rewritten to the staged versions, so descendants see the new
//! upstream data. Until the publish transaction commits, the published tables
//! (schema `main`) and state (schema `_hubforge`) are untouched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use chrono::NaiveDateTime;

use crate::change::VersionLookup as _;
use crate::config::Kind;
use crate::engine::{Engine, Session, quote_ident, quote_str};
use crate::error::{Error, Result};
use crate::fingerprint::{self, ModelVersion};
use crate::graph::{NodeId, NodeKind};
use crate::interval::{Interval, IntervalSet, Unit};
use crate::observe::{self, Observed};
use crate::plan::{self, ChangeKind, ModelWork, Plan, PlanOptions};
use crate::progress::Progress;
use crate::sources::{self, Ingest, SOURCE_SCHEMA};
use crate::sql;
use crate::state::{self, IntervalRecord, PendingRecord, StateWrites};
use crate::template::Window;
use crate::workspace::{Parsed, Workspace};

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
}

/// Everything computed before any work: state, sources, versions, plan.
pub struct Prepared {
    pub observed: Observed,
    pub versions: Vec<ModelVersion>,
    pub plan: Plan,
    /// The end of history the plan was made for.
    pub now: NaiveDateTime,
}

/// Observe, fingerprint and plan.
pub fn prepare(
    s: &dyn Session,
    ws: &Workspace,
    options: &PlanOptions,
    ingest: Ingest,
) -> Result<Prepared> {
    let t = std::time::Instant::now();
    let observed = observe::observe(s, ws, ingest)?;
    crate::progress::timing("observe sources and state", t.elapsed());
    let t = std::time::Instant::now();
    let versions = fingerprint::versions(ws, &observed.schemas, &observed.state);
    crate::progress::timing("fingerprints and lineage", t.elapsed());
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

/// One unit of staging work.
#[derive(Debug, Clone)]
struct Task {
    node: NodeId,
    /// `None` for seeds, tables and views.
    interval: Option<Interval>,
    key: String,
    table: String,
}

/// Run a build against `engine`.
pub fn build(
    ws: &Workspace,
    engine: &dyn Engine,
    options: &BuildOptions,
    interrupted: &AtomicBool,
) -> Result<BuildSummary> {
    let progress = Progress::new(options.quiet);
    let main = engine.session()?;
    let ingest = if options.dry_run {
        Ingest::Temp
    } else {
        state::migrate(main.as_ref())?;
        setup_schemas(main.as_ref())?;
        Ingest::Warehouse
    };
    let prepared = prepare(main.as_ref(), ws, &options.plan, ingest)?;
    let mut summary = BuildSummary {
        plan: prepared.plan.clone(),
        ..BuildSummary::default()
    };
    if options.dry_run {
        return Ok(summary);
    }
    let state = &prepared.observed.state;
    let seeds: Vec<NodeId> = (0..ws.dag.len())
        .filter(|&i| ws.dag.nodes[i].kind == NodeKind::Seed)
        .filter(|&i| {
            let key = ws.dag.nodes[i].name.to_lowercase();
            // Seeds are compared by content: a copied project has new file times.
            state.sources.get(&key).map(|s| &s.whole)
                != prepared.observed.sources.get(&key).map(|s| &s.whole)
                || !state.models.contains_key(&key)
        })
        .collect();
    let state_changes = state_changes_needed(ws, &prepared);
    if prepared.plan.is_empty() && seeds.is_empty() && !state_changes {
        return Ok(summary);
    }
    let run_id = new_run_id();
    let started = now();
    summary.run_id = Some(run_id.clone());

    let work: BTreeMap<NodeId, &ModelWork> =
        prepared.plan.models.iter().map(|w| (w.node, w)).collect();
    let (tasks, targets) = make_tasks(
        ws,
        &prepared,
        &work,
        &seeds,
        state.last_run.as_ref().map(|r| r.run_id.as_str()),
    );
    cleanup_stale_staging(main.as_ref(), &tasks)?;
    let reusable = staged_keys(main.as_ref())?;
    summary.reused = tasks
        .iter()
        .filter(|t| reusable.contains_key(&t.key))
        .count();
    summary.batches = tasks.len();

    let results = run_tasks(
        ws,
        engine,
        &tasks,
        &targets,
        &reusable,
        options,
        interrupted,
        &progress,
    )?;
    if interrupted.load(Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    pause_point("validate", 0);
    let publish = publish_sql(
        ws,
        &prepared,
        &work,
        &tasks,
        &results,
        &targets,
        &run_id,
        started,
        options,
        main.as_ref(),
    )?;
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
    main.execute("BEGIN TRANSACTION").map_err(publish_error)?;
    for (i, statement) in publish.iter().enumerate() {
        main.execute(statement).map_err(publish_error)?;
        pause_point("publish", i + 1);
    }
    main.execute("COMMIT").map_err(publish_error)?;
    progress.finish();
    summary.models = work.len();
    summary.seeds = seeds.len();
    summary.intervals = prepared.plan.interval_count(&prepared.plan.models, ws);
    summary.rows = results.values().map(|r| r.rows).sum();
    for t in &tasks {
        if let Some(r) = results.get(&t.key) {
            *summary
                .rows_by_model
                .entry(ws.dag.nodes[t.node].name.clone())
                .or_default() += r.rows;
        }
    }
    summary.seconds = progress.elapsed().as_secs_f64();
    Ok(summary)
}

/// Whether state must be written even with no data to build: versions of
/// unaffected models to re-key, metadata changes, new sources.
fn state_changes_needed(ws: &Workspace, prepared: &Prepared) -> bool {
    let state = &prepared.observed.state;
    !prepared.plan.rekey.is_empty()
        || !prepared.plan.metadata_only.is_empty()
        || (0..ws.dag.len()).any(|i| {
            let key = ws.dag.nodes[i].name.to_lowercase();
            match ws.dag.nodes[i].kind {
                NodeKind::Source => {
                    state.models.get(&key).map(|m| &m.fingerprint)
                        != Some(&prepared.versions[i].fingerprint)
                        || state.sources.get(&key) != prepared.observed.sources.get(&key)
                }
                _ => false,
            }
        })
}

/// A test hook: with `HUBFORGE_PAUSE_AT=point:n`, stop at that point forever
/// (announced on stderr), so that a test can kill the process exactly there.
fn pause_point(point: &str, n: usize) {
    if let Ok(at) = std::env::var("HUBFORGE_PAUSE_AT")
        && at == format!("{point}:{n}")
    {
        eprintln!("hubforge: paused at {at}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
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

fn user() -> String {
    std::env::var("HUBFORGE_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The hubforge schemas and the staging registry.
fn setup_schemas(s: &dyn Session) -> Result<()> {
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {SOURCE_SCHEMA};\nCREATE SCHEMA IF NOT EXISTS {STAGE_SCHEMA};\nCREATE SCHEMA IF NOT EXISTS {REF_SCHEMA};\n\
         CREATE TABLE IF NOT EXISTS {STAGE_SCHEMA}.batches (key VARCHAR PRIMARY KEY, table_name VARCHAR NOT NULL, row_count BIGINT NOT NULL, checksum VARCHAR NOT NULL);\n"
    );
    s.execute(&sql)
        .map_err(|e| Error::Engine(format!("setting up hubforge schemas: {e}")))
}

/// Finished staged batches: key → (table, rows, checksum).
fn staged_keys(s: &dyn Session) -> Result<HashMap<String, StagedResult>> {
    let rows = s.query(&format!(
        "SELECT key, table_name, row_count, checksum FROM {STAGE_SCHEMA}.batches"
    ))?;
    Ok(rows
        .rows
        .into_iter()
        .map(|r| {
            (
                r[0].to_text().unwrap_or_default(),
                StagedResult {
                    rows: r[2].as_i64().unwrap_or(0),
                    checksum: r[3].to_text().unwrap_or_default(),
                    columns: Vec::new(),
                },
            )
        })
        .collect())
}

/// Drop staged tables from dead runs that this run will not reuse, and every
/// staged view (recreated each run).
fn cleanup_stale_staging(s: &dyn Session, tasks: &[Task]) -> Result<()> {
    let wanted: BTreeSet<&str> = tasks.iter().map(|t| t.key.as_str()).collect();
    let rows = s.query(&format!(
        "SELECT key, table_name FROM {STAGE_SCHEMA}.batches"
    ))?;
    let mut sql = String::new();
    for r in rows.rows {
        let key = r[0].to_text().unwrap_or_default();
        if !wanted.contains(key.as_str()) {
            let table = r[1].to_text().unwrap_or_default();
            sql.push_str(&format!(
                "DROP TABLE IF EXISTS {STAGE_SCHEMA}.{};\nDELETE FROM {STAGE_SCHEMA}.batches WHERE key = {};\n",
                quote_ident(&table),
                quote_str(&key)
            ));
        }
    }
    let registered: BTreeSet<String> = s
        .query(&format!("SELECT table_name FROM {STAGE_SCHEMA}.batches"))?
        .rows
        .iter()
        .filter_map(|r| r[0].to_text())
        .collect();
    let objects = s.query(&format!(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema IN ('{STAGE_SCHEMA}', '{REF_SCHEMA}') AND table_name <> 'batches'"
    ))?;
    for r in objects.rows {
        let name = r[0].to_text().unwrap_or_default();
        let is_view = r[1].as_str() == Some("VIEW");
        if is_view {
            for schema in [STAGE_SCHEMA, REF_SCHEMA] {
                sql.push_str(&format!(
                    "DROP VIEW IF EXISTS {schema}.{};\n",
                    quote_ident(&name)
                ));
            }
        } else if !registered.contains(&name) {
            // Half-made tables cannot exist (creation and registration commit
            // together), but tables of an older layout may.
            sql.push_str(&format!(
                "DROP TABLE IF EXISTS {STAGE_SCHEMA}.{};\n",
                quote_ident(&name)
            ));
        }
    }
    if !sql.is_empty() {
        s.execute(&format!("BEGIN TRANSACTION;\n{sql}COMMIT;"))?;
    }
    Ok(())
}

/// How readers in this run reach each node.
#[derive(Debug, Clone, Default)]
struct Targets {
    /// Node → SQL name readers use during the run.
    read: Vec<String>,
    /// Nodes that need a staged object (overlay or view copy) created after
    /// their tasks finish: node → (object name, its SQL).
    staged_objects: BTreeMap<NodeId, String>,
    /// Node → hash identifying the data readers will see.
    data_key: Vec<String>,
}

fn hash(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

fn staged_name(node: &str, key: &str) -> String {
    format!("{}__{}", node.to_lowercase(), &key[..16])
}

fn main_name(name: &str) -> String {
    format!("main.{}", quote_ident(name))
}

fn make_tasks(
    ws: &Workspace,
    prepared: &Prepared,
    work: &BTreeMap<NodeId, &ModelWork>,
    seeds: &[NodeId],
    last_run: Option<&str>,
) -> (Vec<Task>, Targets) {
    let n = ws.dag.len();
    let base = last_run.unwrap_or("");
    let mut targets = Targets {
        read: vec![String::new(); n],
        staged_objects: BTreeMap::new(),
        data_key: vec![String::new(); n],
    };
    let mut tasks = Vec::new();
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let fp = &prepared.versions[id].fingerprint;
        let parent_keys: Vec<&str> = ws
            .dag
            .parents(id)
            .iter()
            .map(|&p| targets.data_key[p].as_str())
            .collect();
        let upstream = parent_keys.join(",");
        let mut node_tasks = Vec::new();
        match node.kind {
            NodeKind::Source => {
                let key = node.name.to_lowercase();
                targets.read[id] = match prepared.observed.relations.get(&key) {
                    Some(relation) => relation.clone(),
                    None => {
                        sources::relation(&ws.project.root, &ws.project.config.sources[&node.name])
                    }
                };
                // Source data is identified by its snapshot.
                let snap = prepared.observed.sources.get(&node.name.to_lowercase());
                targets.data_key[id] = hash(&[fp, &format!("{snap:?}")]);
                continue;
            }
            NodeKind::Seed if seeds.contains(&id) => {
                let snap = prepared.observed.sources.get(&node.name.to_lowercase());
                let key = hash(&["seed", &node.name, &format!("{snap:?}")]);
                node_tasks.push(Task {
                    node: id,
                    interval: None,
                    table: staged_name(&node.name, &key),
                    key,
                });
            }
            NodeKind::Seed => {}
            NodeKind::Model(kind) => {
                if let Some(w) = work.get(&id) {
                    let intervals: Vec<Option<Interval>> = match kind {
                        Kind::Incremental => {
                            let (file, _) = ws.model(id).expect("model");
                            let unit = file.config.unit.unwrap_or(Unit::Day);
                            w.intervals
                                .batches(unit, file.config.batch_size())
                                .into_iter()
                                .map(Some)
                                .collect()
                        }
                        _ => vec![None],
                    };
                    for iv in intervals {
                        let shown = iv.map(|i| i.to_string()).unwrap_or_default();
                        let key = hash(&[base, &node.name, fp, &shown, &upstream]);
                        node_tasks.push(Task {
                            node: id,
                            interval: iv,
                            table: staged_name(&node.name, &key),
                            key,
                        });
                    }
                }
            }
        }
        let changed_upstream = ws
            .dag
            .parents(id)
            .iter()
            .any(|&p| !targets.read[p].starts_with("main."));
        if node_tasks.is_empty() {
            let is_view = node.kind == NodeKind::Model(Kind::View);
            if is_view && changed_upstream {
                // An unchanged view over staged data: readers in this run need a copy.
                let key = hash(&["view", &node.name, fp, &upstream]);
                let name = staged_name(&node.name, &key);
                targets.read[id] = format!("{STAGE_SCHEMA}.{}", quote_ident(&name));
                targets.staged_objects.insert(id, name);
                targets.data_key[id] = key;
            } else {
                targets.read[id] = main_name(&node.name);
                targets.data_key[id] = hash(&[base, &node.name]);
            }
            continue;
        }
        let node_key = hash(
            &node_tasks
                .iter()
                .map(|t| t.key.as_str())
                .collect::<Vec<_>>(),
        );
        let object = match node.kind {
            NodeKind::Model(Kind::Incremental) => {
                format!("{}__ov_{}", node.name.to_lowercase(), &node_key[..16])
            }
            NodeKind::Model(Kind::View) => {
                format!("{}__v_{}", node.name.to_lowercase(), &node_key[..16])
            }
            _ => node_tasks[0].table.clone(),
        };
        targets.read[id] = format!("{STAGE_SCHEMA}.{}", quote_ident(&object));
        if matches!(
            node.kind,
            NodeKind::Model(Kind::Incremental) | NodeKind::Model(Kind::View)
        ) {
            targets.staged_objects.insert(id, object);
        }
        targets.data_key[id] = node_key;
        tasks.extend(node_tasks);
    }
    (tasks, targets)
}

/// Render a model for a window with its references pointed at `target(node)`.
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
                    "model `{}` no longer parses for window {:?}: {}",
                    file.name, window, e.message
                ))
            })?;
            let out = q.rewrite_refs(&|r| ws.resolve(r).map(target));
            Ok((out, false))
        }
        // DuckDB-only SQL is run with a search path that resolves its references.
        Parsed::DuckDb { .. } => Ok((rendered, true)),
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
    let unit = file.config.unit;
    match interval {
        Some(iv) => Window::new(iv.start(), iv.end(), unit),
        None => {
            let start = file
                .config
                .start
                .unwrap_or(ws.project.config.project.start)
                .and_hms_opt(0, 0, 0)
                .expect("midnight");
            let end =
                crate::interval::last_complete(now, Unit::Day).max(start + chrono::Days::new(1));
            Window::new(start, end, unit)
        }
    }
}

#[derive(Debug, Clone, Default)]
struct StagedResult {
    rows: i64,
    checksum: String,
    columns: Vec<(String, String)>,
}

#[allow(clippy::too_many_arguments)]
fn run_tasks(
    ws: &Workspace,
    engine: &dyn Engine,
    tasks: &[Task],
    targets: &Targets,
    reusable: &HashMap<String, StagedResult>,
    options: &BuildOptions,
    interrupted: &AtomicBool,
    progress: &Progress,
) -> Result<HashMap<String, StagedResult>> {
    let mut results: HashMap<String, StagedResult> = HashMap::new();
    let mut by_node: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        by_node.entry(t.node).or_default().push(i);
    }
    // Nodes with work this run: tasks or staged objects.
    let active: BTreeSet<NodeId> = by_node
        .keys()
        .copied()
        .chain(targets.staged_objects.keys().copied())
        .collect();
    let mut waiting: BTreeMap<NodeId, usize> = active
        .iter()
        .map(|&id| {
            (
                id,
                ws.dag
                    .parents(id)
                    .iter()
                    .filter(|p| active.contains(p))
                    .count(),
            )
        })
        .collect();
    let mut remaining: BTreeMap<NodeId, usize> = active
        .iter()
        .map(|&id| (id, by_node.get(&id).map_or(0, Vec::len)))
        .collect();
    let todo = tasks
        .iter()
        .filter(|t| !reusable.contains_key(&t.key))
        .count();
    progress.start(todo as u64, "staging");

    let main = engine.session()?;
    let threads = options.threads.max(1);
    let (task_tx, task_rx) = mpsc::channel::<usize>();
    let task_rx = Arc::new(Mutex::new(task_rx));
    let (done_tx, done_rx) = mpsc::channel::<(usize, Result<StagedResult>)>();
    let failed = AtomicBool::new(false);
    let outcome: Result<()> = std::thread::scope(|scope| {
        for _ in 0..threads {
            let session = engine.session()?;
            let rx = Arc::clone(&task_rx);
            let tx = done_tx.clone();
            let failed = &failed;
            scope.spawn(move || {
                loop {
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(i) = next else { break };
                    let result =
                        if failed.load(Ordering::SeqCst) || interrupted.load(Ordering::SeqCst) {
                            Err(Error::Interrupted)
                        } else {
                            stage_task(ws, session.as_ref(), &tasks[i], targets, options.plan.now)
                        };
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut in_flight = 0usize;
        let mut staged_count = 0usize;
        let mut first_error: Option<Error> = None;
        let mut ready: Vec<NodeId> = waiting
            .iter()
            .filter(|(_, w)| **w == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut completed: BTreeSet<NodeId> = BTreeSet::new();
        loop {
            // Dispatch every task of every ready node; finish nodes without tasks.
            while let Some(id) = ready.pop() {
                let mut dispatched = false;
                for &i in by_node.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
                    if let Some(r) = reusable.get(&tasks[i].key) {
                        results.insert(tasks[i].key.clone(), r.clone());
                        *remaining.get_mut(&id).expect("active") -= 1;
                    } else if first_error.is_none() {
                        task_tx
                            .send(i)
                            .map_err(|_| Error::Engine("staging workers stopped".to_string()))?;
                        in_flight += 1;
                        dispatched = true;
                    }
                }
                if !dispatched && remaining[&id] == 0 && first_error.is_none() {
                    finish_node(
                        ws,
                        main.as_ref(),
                        id,
                        tasks,
                        &by_node,
                        targets,
                        options.plan.now,
                    )?;
                    completed.insert(id);
                    for c in ws.dag.children(id) {
                        if let Some(w) = waiting.get_mut(&c) {
                            *w -= 1;
                            if *w == 0 {
                                ready.push(c);
                            }
                        }
                    }
                }
            }
            if in_flight == 0 {
                break;
            }
            let Ok((i, result)) = done_rx.recv() else {
                break;
            };
            in_flight -= 1;
            let id = tasks[i].node;
            match result {
                Ok(r) => {
                    progress.step(&describe_task(ws, &tasks[i], r.rows));
                    staged_count += 1;
                    pause_point("stage", staged_count);
                    results.insert(tasks[i].key.clone(), r);
                    let left = remaining.get_mut(&id).expect("active");
                    *left -= 1;
                    if *left == 0 && first_error.is_none() {
                        ready.push(id);
                        // A node whose tasks all finished is finished once.
                        by_node.insert(id, Vec::new());
                    }
                }
                Err(e) => {
                    failed.store(true, Ordering::SeqCst);
                    if first_error.is_none() || matches!(first_error, Some(Error::Interrupted)) {
                        first_error = Some(e);
                    }
                }
            }
        }
        drop(task_tx);
        match first_error {
            Some(e) => Err(e),
            None => {
                let unfinished: Vec<&str> = active
                    .iter()
                    .filter(|id| !completed.contains(id))
                    .map(|&id| ws.dag.nodes[id].name.as_str())
                    .collect();
                if unfinished.is_empty() {
                    Ok(())
                } else {
                    Err(Error::Engine(format!(
                        "staging did not finish: {}",
                        unfinished.join(", ")
                    )))
                }
            }
        }
    });
    if interrupted.load(Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    outcome?;
    Ok(results)
}

fn describe_task(ws: &Workspace, t: &Task, rows: i64) -> String {
    let name = &ws.dag.nodes[t.node].name;
    match t.interval {
        Some(iv) => format!("{name} {iv}: {rows} rows"),
        None => format!("{name}: {rows} rows"),
    }
}

/// After all tasks of a node: create the object readers use (overlay of the
/// published table with the staged intervals, or the staged view).
fn finish_node(
    ws: &Workspace,
    s: &dyn Session,
    id: NodeId,
    tasks: &[Task],
    by_node: &BTreeMap<NodeId, Vec<usize>>,
    targets: &Targets,
    now: NaiveDateTime,
) -> Result<()> {
    let Some(object) = targets.staged_objects.get(&id) else {
        return Ok(());
    };
    let node = &ws.dag.nodes[id];
    let read = |n: NodeId| targets.read[n].clone();
    let sql = match node.kind {
        NodeKind::Model(Kind::View) => {
            let (body, duck_only) = render_sql(ws, id, &window_for(ws, id, None, now), &read)?;
            if duck_only {
                create_ref_views(ws, s, id, targets)?;
            }
            format!(
                "CREATE OR REPLACE VIEW {STAGE_SCHEMA}.{} AS {body}",
                quote_ident(object)
            )
        }
        _ => {
            let (file, _) = ws.model(id).expect("model");
            let tc = quote_ident(file.config.time_column.as_deref().unwrap_or_default());
            let mine: Vec<&Task> = tasks.iter().filter(|t| t.node == id).collect();
            let _ = by_node;
            let replaced = IntervalSet::from_intervals(mine.iter().filter_map(|t| t.interval));
            let mut parts: Vec<String> = Vec::new();
            if table_exists(s, "main", &node.name)? {
                let keep = replaced
                    .iter()
                    .map(|iv| {
                        format!(
                            "({tc} >= {} AND {tc} < {})",
                            state::ts_literal(iv.start()),
                            state::ts_literal(iv.end())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let filter = if keep.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE NOT ({keep})")
                };
                parts.push(format!("SELECT * FROM {}{filter}", main_name(&node.name)));
            }
            parts.extend(
                mine.iter()
                    .map(|t| format!("SELECT * FROM {STAGE_SCHEMA}.{}", quote_ident(&t.table))),
            );
            format!(
                "CREATE OR REPLACE VIEW {STAGE_SCHEMA}.{} AS {}",
                quote_ident(object),
                parts.join(" UNION ALL BY NAME ")
            )
        }
    };
    s.execute(&sql)
        .map_err(|e| Error::Engine(format!("staging `{}` for its readers: {e}", node.name)))
}

fn table_exists(s: &dyn Session, schema: &str, name: &str) -> Result<bool> {
    let rows = s.query(&format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = {} AND lower(table_name) = lower({})",
        quote_str(schema),
        quote_str(name)
    ))?;
    Ok(rows.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) > 0)
}

/// Views in the ref schema named like each dependency of `id`, for SQL whose
/// references can only be resolved by search path.
fn create_ref_views(ws: &Workspace, s: &dyn Session, id: NodeId, targets: &Targets) -> Result<()> {
    let mut sql = String::new();
    for p in ws.dag.parents(id) {
        sql.push_str(&format!(
            "CREATE OR REPLACE VIEW {REF_SCHEMA}.{} AS SELECT * FROM {};\n",
            quote_ident(&ws.dag.nodes[p].name),
            targets.read[p]
        ));
    }
    s.execute(&sql)
}

/// Build one staged batch, seed or table, and record it, in one transaction.
fn stage_task(
    ws: &Workspace,
    s: &dyn Session,
    t: &Task,
    targets: &Targets,
    now: NaiveDateTime,
) -> Result<StagedResult> {
    let node = &ws.dag.nodes[t.node];
    let staged = format!("{STAGE_SCHEMA}.{}", quote_ident(&t.table));
    let (select, duck_only) = match node.kind {
        NodeKind::Seed => {
            let seed = ws
                .project
                .seeds
                .iter()
                .find(|x| x.name == node.name)
                .expect("seed");
            (
                format!(
                    "SELECT * FROM {}",
                    sources::seed_relation(&ws.project.root, seed)
                ),
                false,
            )
        }
        NodeKind::Model(Kind::View) => return Ok(StagedResult::default()),
        _ => render_sql(ws, t.node, &window_for(ws, t.node, t.interval, now), &|n| {
            targets.read[n].clone()
        })?,
    };
    let context = |e: Error| match e {
        Error::Engine(m) => Error::Engine(format!(
            "building `{}`{}: {m}",
            node.name,
            t.interval.map(|i| format!(" {i}")).unwrap_or_default()
        )),
        other => other,
    };
    if duck_only {
        create_ref_views(ws, s, t.node, targets).map_err(context)?;
        s.execute(&format!("SET search_path = '{REF_SCHEMA},main'"))
            .map_err(context)?;
    }
    let created = s.execute(&format!(
        "BEGIN TRANSACTION;\nCREATE TABLE {staged} AS {select};"
    ));
    if duck_only {
        let _ = s.execute("SET search_path = 'main'");
    }
    if let Err(e) = created {
        let _ = s.execute("ROLLBACK");
        return Err(context(e));
    }
    let result = check_and_record(ws, s, t, &staged);
    match result {
        Ok(r) => {
            s.execute("COMMIT").map_err(context)?;
            Ok(r)
        }
        Err(e) => {
            let _ = s.execute("ROLLBACK");
            Err(context(e))
        }
    }
}

fn check_and_record(
    ws: &Workspace,
    s: &dyn Session,
    t: &Task,
    staged: &str,
) -> Result<StagedResult> {
    let node = &ws.dag.nodes[t.node];
    let columns: Vec<(String, String)> = s
        .query(&format!("DESCRIBE SELECT * FROM {staged}"))?
        .rows
        .iter()
        .map(|r| {
            (
                r[0].to_text().unwrap_or_default(),
                r[1].to_text().unwrap_or_default(),
            )
        })
        .collect();
    if let (Some(iv), Some((file, _))) = (t.interval, ws.model(t.node)) {
        let tc_name = file.config.time_column.clone().unwrap_or_default();
        if !columns
            .iter()
            .any(|(c, _)| c.eq_ignore_ascii_case(&tc_name))
        {
            return Err(Error::Data(format!(
                "model `{}` has no column `{tc_name}` (its time_column); its columns are: {}",
                node.name,
                columns
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let tc = quote_ident(&tc_name);
        let q = format!(
            "SELECT count(*), CAST(min({tc}) AS VARCHAR), CAST(max({tc}) AS VARCHAR) FROM {staged} WHERE {tc} IS NULL OR {tc} < {} OR {tc} >= {}",
            state::ts_literal(iv.start()),
            state::ts_literal(iv.end())
        );
        let rows = s.query(&q)?;
        let outside = rows.rows[0][0].as_i64().unwrap_or(0);
        if outside > 0 {
            return Err(Error::Data(format!(
                "model `{}` batch {iv}: {outside} rows lie outside the batch window (their {tc_name} ranges from {} to {}); \
                 an incremental model must only output rows with {tc_name} in [{{{{ start }}}}, {{{{ end }}}}) — filter its input with them",
                node.name,
                rows.rows[0][1].to_text().unwrap_or_else(|| "NULL".into()),
                rows.rows[0][2].to_text().unwrap_or_else(|| "NULL".into()),
            )));
        }
    }
    let stats = s.query(&format!(
        "SELECT count(*), CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) FROM {staged} t"
    ))?;
    let rows = stats.rows[0][0].as_i64().unwrap_or(0);
    let checksum = stats.rows[0][1].to_text().unwrap_or_default();
    s.execute(&format!(
        "INSERT INTO {STAGE_SCHEMA}.batches VALUES ({}, {}, {rows}, {});",
        quote_str(&t.key),
        quote_str(&t.table),
        quote_str(&checksum)
    ))?;
    Ok(StagedResult {
        rows,
        checksum,
        columns,
    })
}

/// The fingerprints recorded for this run's data. A rebuilt batch is recorded
/// with its model's logic combined with the fingerprints of the parent data it
/// actually read: when a parent's data in that range is still under older logic
/// (its rebuild is outside the scope), the batch is recorded as built on that
/// older data, so the next plan finds it stale once the parent is rebuilt.
struct PostRun {
    /// Task key → fingerprint to record.
    task_fp: HashMap<String, String>,
    /// Versions those fingerprints stand for that are not current versions.
    extra_versions: Vec<ModelVersion>,
    /// Per node: the (interval, fingerprint) of its data after the run.
    records: Vec<Vec<(Interval, String)>>,
}

fn post_run(ws: &Workspace, prepared: &Prepared, tasks: &[Task]) -> PostRun {
    let state = &prepared.observed.state;
    let current = &prepared.versions;
    let mut out = PostRun {
        task_fp: HashMap::new(),
        extra_versions: Vec::new(),
        records: vec![Vec::new(); ws.dag.len()],
    };
    let rekeyed: HashMap<(NodeId, &str), ()> = prepared
        .plan
        .rekey
        .iter()
        .map(|(n, f)| ((*n, f.as_str()), ()))
        .collect();
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let key = node.name.to_lowercase();
        let mine: Vec<&Task> = tasks.iter().filter(|t| t.node == id).collect();
        let rebuilt = IntervalSet::from_intervals(mine.iter().filter_map(|t| t.interval));
        // Data of this node from earlier runs that stays.
        let mut records: Vec<(Interval, String)> = if mine.iter().any(|t| t.interval.is_none()) {
            Vec::new()
        } else {
            state
                .intervals
                .get(&key)
                .into_iter()
                .flatten()
                .flat_map(|r| {
                    let fp = if rekeyed.contains_key(&(id, r.fingerprint.as_str())) {
                        current[id].fingerprint.clone()
                    } else {
                        r.fingerprint.clone()
                    };
                    IntervalSet::single(r.interval)
                        .subtract(&rebuilt)
                        .iter()
                        .map(|iv| (*iv, fp.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let window = ws.model(id).map_or(1, |(f, _)| f.config.window);
        let unit = ws.model(id).and_then(|(f, _)| f.config.unit);
        for t in &mine {
            let read = t.interval.map(|iv| {
                let start =
                    unit.map_or(iv.start(), |u| u.add(iv.start(), -(i64::from(window) - 1)));
                Interval::new(start, iv.end()).unwrap_or(iv)
            });
            let parents: BTreeMap<String, String> = ws
                .dag
                .parents(id)
                .into_iter()
                .map(|p| {
                    (
                        ws.dag.nodes[p].name.to_lowercase(),
                        data_fp(ws, current, &out.records, p, read),
                    )
                })
                .collect();
            let fp = if parents == current[id].parents {
                current[id].fingerprint.clone()
            } else {
                let v = current[id].with_parents(parents);
                let fp = v.fingerprint.clone();
                if !out.extra_versions.iter().any(|x| x.fingerprint == fp) {
                    out.extra_versions.push(v);
                }
                fp
            };
            let range = t
                .interval
                .unwrap_or_else(|| whole_range(ws, id, prepared.now));
            records.push((range, fp.clone()));
            out.task_fp.insert(t.key.clone(), fp);
        }
        if mine.is_empty() && node.kind == NodeKind::Model(Kind::View) {
            // A view's data is its parents' data under its own logic.
            records.push((
                whole_range(ws, id, prepared.now),
                current[id].fingerprint.clone(),
            ));
        }
        out.records[id] = records;
    }
    out
}

/// The fingerprint of the data of `node` a reader of `range` (all when None) sees
/// after the run: its recorded fingerprint where that is one; a non-current one
/// when they differ, so that the reader is later found stale.
fn data_fp(
    ws: &Workspace,
    current: &[ModelVersion],
    records: &[Vec<(Interval, String)>],
    node: NodeId,
    range: Option<Interval>,
) -> String {
    let cur = &current[node].fingerprint;
    match ws.dag.nodes[node].kind {
        NodeKind::Source | NodeKind::Seed => cur.clone(),
        NodeKind::Model(_) => {
            let fps: BTreeSet<&String> = records[node]
                .iter()
                .filter(|(iv, _)| range.is_none_or(|r| r.intersect(iv).is_some()))
                .map(|(_, fp)| fp)
                .collect();
            fps.iter()
                .find(|fp| **fp != cur)
                .map_or_else(|| cur.clone(), |fp| (*fp).clone())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn publish_sql(
    ws: &Workspace,
    prepared: &Prepared,
    work: &BTreeMap<NodeId, &ModelWork>,
    tasks: &[Task],
    results: &HashMap<String, StagedResult>,
    targets: &Targets,
    run_id: &str,
    started: NaiveDateTime,
    options: &BuildOptions,
    main_session: &dyn Session,
) -> Result<Vec<String>> {
    let state = &prepared.observed.state;
    let post = post_run(ws, prepared, tasks);
    let ingested: Vec<String> = main_session
        .query(&format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{SOURCE_SCHEMA}' AND table_type = 'BASE TABLE'"
        ))?
        .rows
        .iter()
        .filter_map(|r| r[0].to_text())
        .collect();
    let main = |name: &str| main_name(name);
    let mut sql: Vec<String> = Vec::new();
    let mut w = StateWrites::default();
    let publish_target = |n: NodeId| {
        let node = &ws.dag.nodes[n];
        match node.kind {
            NodeKind::Source => format!("{SOURCE_SCHEMA}.{}", quote_ident(&node.name)),
            _ => main_name(&node.name),
        }
    };
    let mut existing: BTreeSet<String> = BTreeSet::new();
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let key = node.name.to_lowercase();
        let mine: Vec<&Task> = tasks.iter().filter(|t| t.node == id).collect();
        let published_kind = state.models.get(&key).map(|m| m.kind.clone());
        let drop_old = |sql: &mut Vec<String>| {
            if let Some(k) = &published_kind
                && k != node.kind.as_str()
            {
                let what = if k == "view" { "VIEW" } else { "TABLE" };
                sql.push(format!("DROP {what} IF EXISTS {};\n", main(&node.name)));
            }
        };
        match node.kind {
            NodeKind::Source => {
                // The stable view published views read; older copies of the files go.
                sql.push(format!(
                    "CREATE OR REPLACE VIEW {SOURCE_SCHEMA}.{} AS SELECT * FROM {};",
                    quote_ident(&node.name),
                    targets.read[id]
                ));
                let prefix = format!("{key}__");
                let current = targets.read[id]
                    .rsplit('.')
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string();
                for old in ingested
                    .iter()
                    .filter(|t| t.starts_with(&prefix) && **t != current)
                {
                    sql.push(format!(
                        "DROP TABLE IF EXISTS {SOURCE_SCHEMA}.{};",
                        quote_ident(old)
                    ));
                }
            }
            NodeKind::Seed if !mine.is_empty() => {
                drop_old(&mut sql);
                sql.push(format!(
                    "CREATE OR REPLACE TABLE {} AS SELECT * FROM {STAGE_SCHEMA}.{};\n",
                    main(&node.name),
                    quote_ident(&mine[0].table)
                ));
            }
            NodeKind::Seed => {}
            NodeKind::Model(kind) => {
                let Some(work) = work.get(&id) else { continue };
                drop_old(&mut sql);
                match kind {
                    Kind::View => {
                        let (body, _) = render_sql(
                            ws,
                            id,
                            &window_for(ws, id, None, options.plan.now),
                            &publish_target,
                        )?;
                        sql.push(format!(
                            "CREATE OR REPLACE VIEW {} AS {body};\n",
                            main(&node.name)
                        ));
                    }
                    Kind::Table => {
                        sql.push(format!(
                            "CREATE OR REPLACE TABLE {} AS SELECT * FROM {STAGE_SCHEMA}.{};\n",
                            main(&node.name),
                            quote_ident(&mine[0].table)
                        ));
                    }
                    Kind::Incremental => {
                        publish_incremental(
                            ws,
                            state,
                            id,
                            work,
                            &mine,
                            results,
                            &mut sql,
                            &mut existing,
                        );
                    }
                }
            }
        }
    }
    for name in &prepared.plan.removed {
        let what = match state.models.get(name).map(|m| m.kind.as_str()) {
            Some("view") => "VIEW",
            _ => "TABLE",
        };
        sql.push(format!("DROP {what} IF EXISTS {};\n", main(name)));
        w.remove_model(name);
    }

    // State.
    let finished = now();
    for v in post.extra_versions.iter() {
        if state
            .version(&v.name.to_lowercase(), &v.fingerprint)
            .is_none()
        {
            w.version(v, run_id);
        }
    }
    for (id, v) in prepared.versions.iter().enumerate() {
        let key = ws.dag.nodes[id].name.to_lowercase();
        if state.version(&key, &v.fingerprint).is_none() {
            w.version(v, run_id);
        }
        let columns: Vec<String> = match tasks
            .iter()
            .find(|t| t.node == id)
            .and_then(|t| results.get(&t.key))
        {
            Some(r) if !r.columns.is_empty() => {
                r.columns.iter().map(|(c, _)| c.to_lowercase()).collect()
            }
            _ => state
                .models
                .get(&key)
                .map(|m| m.columns.clone())
                .unwrap_or_else(|| v.column_names()),
        };
        let unchanged = state.models.get(&key).is_some_and(|m| {
            m.fingerprint == v.fingerprint && m.metadata == v.metadata && m.columns == columns
        });
        let built = work.contains_key(&id) || tasks.iter().any(|t| t.node == id);
        let is_model = ws.dag.nodes[id].kind.is_model();
        if !unchanged && (built || !is_model || state.models.contains_key(&key)) {
            w.published(v, &columns, run_id);
        }
    }
    let now_ts = options.plan.now;
    for (&id, work) in work {
        let key = ws.dag.nodes[id].name.to_lowercase();
        let mine: Vec<&Task> = tasks.iter().filter(|t| t.node == id).collect();
        let fp_of = |t: &Task| {
            post.task_fp
                .get(&t.key)
                .cloned()
                .unwrap_or_else(|| prepared.versions[id].fingerprint.clone())
        };
        if work.full {
            let fp = mine
                .first()
                .map(|t| fp_of(t))
                .unwrap_or_else(|| prepared.versions[id].fingerprint.clone());
            w.clear_all_intervals(&key);
            let (rows, checksum) = mine
                .first()
                .and_then(|t| results.get(&t.key))
                .map(|r| (r.rows, r.checksum.clone()))
                .unwrap_or_default();
            w.interval(
                &key,
                &IntervalRecord {
                    interval: whole_range(ws, id, now_ts),
                    fingerprint: fp.clone(),
                    built_fingerprint: fp,
                    run_id: run_id.to_string(),
                    rows,
                    checksum,
                },
            );
        } else {
            w.clear_intervals(&key, &work.intervals, state);
            for t in mine {
                let r = results.get(&t.key).cloned().unwrap_or_default();
                let fp = fp_of(t);
                w.interval(
                    &key,
                    &IntervalRecord {
                        interval: t.interval.expect("incremental batch"),
                        fingerprint: fp.clone(),
                        built_fingerprint: fp,
                        run_id: run_id.to_string(),
                        rows: r.rows,
                        checksum: r.checksum,
                    },
                );
            }
        }
    }
    for (id, old) in &prepared.plan.rekey {
        w.rekey(
            &ws.dag.nodes[*id].name.to_lowercase(),
            old,
            &prepared.versions[*id].fingerprint,
        );
    }
    for (key, snap) in &prepared.observed.sources {
        if state.sources.get(key) != Some(snap) {
            w.source_snapshot(key, snap, run_id);
        }
    }
    for (key, cols) in &prepared.observed.schemas {
        if state.schemas.get(key) != Some(cols) {
            w.schema(key, cols);
        }
    }
    for left in &prepared.plan.out_of_scope {
        let key = left.name.to_lowercase();
        for (k, reason, set) in &left.reasons {
            if !matches!(k, ChangeKind::SourceChanged | ChangeKind::Restate) {
                continue;
            }
            let set = if set.is_empty() {
                IntervalSet::single(whole_range(ws, left.node, now_ts))
            } else {
                set.clone()
            };
            for iv in set.iter() {
                w.pending(
                    &key,
                    &PendingRecord {
                        interval: *iv,
                        change: k.as_str().to_string(),
                        reason: reason.clone(),
                        run_id: run_id.to_string(),
                    },
                );
            }
        }
    }
    let plan_json = crate::render::plan_json(ws, &prepared.plan);
    let rows: i64 = results.values().map(|r| r.rows).sum();
    w.run(
        run_id,
        state.next_run_seq(),
        started,
        finished,
        "success",
        &options.command,
        &user(),
        &plan_json,
        &serde_json::json!({ "models": work.len(), "batches": tasks.len(), "rows": rows }),
    );
    sql.extend(w.sql);
    // The staged batches are published: drop them with the same commit.
    for t in tasks {
        sql.push(format!(
            "DROP TABLE IF EXISTS {STAGE_SCHEMA}.{};\nDELETE FROM {STAGE_SCHEMA}.batches WHERE key = {};\n",
            quote_ident(&t.table),
            quote_str(&t.key)
        ));
    }
    for object in targets.staged_objects.values() {
        sql.push(format!(
            "DROP VIEW IF EXISTS {STAGE_SCHEMA}.{};\n",
            quote_ident(object)
        ));
    }
    Ok(sql)
}

/// The range recorded for a table or view: its whole history to now.
fn whole_range(ws: &Workspace, id: NodeId, now: NaiveDateTime) -> Interval {
    let start = ws
        .model(id)
        .and_then(|(f, _)| f.config.start)
        .unwrap_or(ws.project.config.project.start)
        .and_hms_opt(0, 0, 0)
        .expect("midnight");
    let end = crate::interval::last_complete(now, Unit::Day).max(start + chrono::Days::new(1));
    Interval::new(start, end).expect("start before end")
}

/// Replace the rebuilt intervals of an incremental model.
#[allow(clippy::too_many_arguments)]
fn publish_incremental(
    ws: &Workspace,
    state: &state::State,
    id: NodeId,
    work: &ModelWork,
    mine: &[&Task],
    results: &HashMap<String, StagedResult>,
    sql: &mut Vec<String>,
    _existing: &mut BTreeSet<String>,
) {
    let node = &ws.dag.nodes[id];
    let key = node.name.to_lowercase();
    let (file, _) = ws.model(id).expect("model");
    let tc = quote_ident(file.config.time_column.as_deref().unwrap_or_default());
    let staged: Vec<String> = mine
        .iter()
        .map(|t| format!("SELECT * FROM {STAGE_SCHEMA}.{}", quote_ident(&t.table)))
        .collect();
    let built = state.built(&key);
    let published = state.models.get(&key);
    let covers_all = built.subtract(&work.intervals).is_empty();
    let new_columns: Vec<(String, String)> = mine
        .iter()
        .filter_map(|t| results.get(&t.key))
        .flat_map(|r| r.columns.iter().cloned())
        .filter(|(c, _)| published.is_none_or(|p| !p.columns.contains(&c.to_lowercase())))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let target = main_name(&node.name);
    if published.is_none() || covers_all {
        // First build, or every built interval is rebuilt: replace the table,
        // which also takes any change of columns or types.
        sql.push(format!(
            "CREATE OR REPLACE TABLE {target} AS {};\n",
            if staged.is_empty() {
                format!("SELECT * FROM {target} WHERE false")
            } else {
                staged.join(" UNION ALL BY NAME ")
            }
        ));
        return;
    }
    for (col, ty) in &new_columns {
        sql.push(format!(
            "ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {} {ty};\n",
            quote_ident(col)
        ));
    }
    for iv in work.intervals.iter() {
        sql.push(format!(
            "DELETE FROM {target} WHERE {tc} >= {} AND {tc} < {};\n",
            state::ts_literal(iv.start()),
            state::ts_literal(iv.end())
        ));
    }
    for s in staged {
        sql.push(format!("INSERT INTO {target} BY NAME {s};\n"));
    }
}
