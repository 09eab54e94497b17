//! Staging: the batches of a run, the order they run in, and how each one is
//! built into a table of `_hubforge_data` and recorded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use chrono::NaiveDateTime;

use super::cutoff::Cutoff;
use super::{
    BuildOptions, DATA_SCHEMA, Prepared, REF_SCHEMA, STAGE_SCHEMA, data_table, main_name,
    pause_point, render_sql, window_for,
};
use crate::config::Kind;
use crate::engine::{Engine, Session, quote_ident, quote_str, window_predicate};
use crate::error::{Error, Result};
use crate::graph::{NodeId, NodeKind};
use crate::interval::{Interval, IntervalSet, Unit};
use crate::plan::{self, ModelWork};
use crate::progress::Progress;
use crate::sources;
use crate::state::{self, State};
use crate::workspace::{Parsed, Workspace};

/// The staging registry: one row per finished batch, in the stage schema.
pub(super) const BATCHES: &str = "staged_batches";

/// Marks the error a batch raises for a row outside its window.
const WINDOW_ERROR: &str = "hubforge: a row lies outside the batch window";

/// One unit of staging work: a batch of an incremental model, a table, a seed.
#[derive(Debug, Clone)]
pub(super) struct Task {
    pub node: NodeId,
    /// `None` for seeds and tables (their whole data).
    pub interval: Option<Interval>,
    /// Identifies what the batch is built from; a finished batch with the same
    /// key is reused by a rerun.
    pub key: String,
}

/// How a node's rows are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Every row is rebuilt: the staged table becomes the model's table.
    Full,
    /// Some intervals are rebuilt: they replace those of the model's table.
    Partial,
}

/// A node with rows to stage.
#[derive(Debug, Clone)]
pub(super) struct NodeStage {
    pub mode: Mode,
    /// The staged table in `_hubforge_data`.
    pub table: String,
    pub rebuilt: IntervalSet,
}

/// Everything staging does in a run.
#[derive(Debug, Default)]
pub(super) struct Staging {
    pub tasks: Vec<Task>,
    pub nodes: BTreeMap<NodeId, NodeStage>,
    /// Per node: the relation readers in this run use, as planned.
    pub read: Vec<String>,
    /// What readers use instead, decided while staging (early cutoff).
    pub read_now: std::sync::RwLock<BTreeMap<NodeId, String>>,
    /// Views in the stage schema created once a node's tasks are done: the
    /// published table with the staged intervals for a partial rebuild, or a
    /// view model over staged data. Node → view name.
    pub views: BTreeMap<NodeId, String>,
    /// Nodes read by SQL only DuckDB parses (their references go through
    /// views of the ref schema named like them).
    pub by_name: BTreeSet<NodeId>,
}

impl Staging {
    /// The relation readers of `id` use now.
    pub fn reader(&self, id: NodeId) -> String {
        self.read_now
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .unwrap_or_else(|| self.read[id].clone())
    }

    /// Per node: whether this run changes what it is (staged, a view with
    /// work, a source whose schema changed: `drift`, accepted), or it reads
    /// one of those (through any chain). A view over such a node is created
    /// again at publish, so that its columns take the new types under it:
    /// Spark keeps a view's types as it was created, and DuckDB its catalog's.
    pub fn over_rebuilt(
        &self,
        ws: &Workspace,
        work: &BTreeMap<NodeId, &crate::plan::ModelWork>,
        drift: &BTreeMap<String, crate::diagnostics::Diagnostic>,
    ) -> Vec<bool> {
        let mut over = vec![false; ws.dag.len()];
        for &id in &ws.dag.order {
            let node = &ws.dag.nodes[id];
            over[id] = self.nodes.contains_key(&id)
                || work.contains_key(&id)
                || (node.kind == NodeKind::Source && drift.contains_key(node.name.key()))
                || ws.dag.parents(id).iter().any(|&p| over[p]);
        }
        over
    }
}

/// A finished batch.
#[derive(Debug, Clone, Default)]
pub(super) struct Staged {
    pub rows: i64,
    pub checksum: String,
}

fn hash(parts: &[&str]) -> String {
    crate::hash::hash_parts("", parts.iter().copied())
}

pub(super) fn stage_view(name: &str) -> String {
    format!("{STAGE_SCHEMA}.{}", quote_ident(name))
}

/// Rows of sources a batch of a model without `batch` reads at most, counted
/// by the sources' snapshots, when its batches of the default size are joined
/// (`[warehouse] batch_rows` sets another).
const DEFAULT_BATCH_ROWS: i64 = 10_000_000;

/// The batches of a model's stale intervals. A model that sets `batch` gets
/// batches of that many units. Otherwise batches of the unit's default size
/// (31 days) are joined with their neighbours while the time-partitioned
/// sources under the model hold at most `[warehouse] batch_rows` rows
/// ([`DEFAULT_BATCH_ROWS`]) in the joined window: a batch costs a statement,
/// a commit and its checks whatever its size, and a small project's model is
/// then built in one statement. The rows are the same however a model is
/// batched: an output unit reads its own input units (or its declared
/// `window` of them), which planning by intervals rests on, and batch size is
/// metadata (DESIGN §2).
pub(super) fn batches(
    ws: &Workspace,
    prepared: &Prepared,
    id: NodeId,
    intervals: &IntervalSet,
    unit: Unit,
) -> Vec<Interval> {
    let (file, _) = ws.model(id).expect("model");
    let defaults = intervals.batches(unit, file.config.batch_size());
    if file.config.batch.is_some() {
        return defaults;
    }
    let sources: Vec<&state::SourceSnapshot> = ws
        .dag
        .reachable(id, true, None)
        .into_iter()
        .filter(|&a| ws.dag.nodes[a].kind == NodeKind::Source)
        .filter_map(|a| prepared.observed.sources.get(ws.dag.nodes[a].name.key()))
        .collect();
    // Rows of the source units that start inside a batch.
    let rows_in = |b: &Interval| -> i64 {
        sources
            .iter()
            .flat_map(|s| {
                s.units
                    .iter()
                    .skip_while(|(u, _)| u.start() < b.start())
                    .take_while(|(u, _)| u.start() < b.end())
                    .map(|(_, (rows, _))| rows)
            })
            .sum()
    };
    let most = ws
        .project
        .config
        .warehouse
        .batch_rows
        .unwrap_or(DEFAULT_BATCH_ROWS);
    let mut joined: Vec<(Interval, i64)> = Vec::new();
    for b in defaults {
        let rows = rows_in(&b);
        match joined.last_mut() {
            Some((last, sum)) if last.end() == b.start() && *sum + rows <= most => {
                *last = Interval::new(last.start(), b.end()).expect("batches are in order");
                *sum += rows;
            }
            _ => joined.push((b, rows)),
        }
    }
    joined.into_iter().map(|(b, _)| b).collect()
}

/// Decide the batches of the run, where each node's staged rows go, and what
/// readers of each node read during the run.
pub(super) fn plan_staging(
    ws: &Workspace,
    prepared: &Prepared,
    work: &BTreeMap<NodeId, &ModelWork>,
    seeds: &[NodeId],
    last_run: Option<&str>,
) -> Staging {
    let n = ws.dag.len();
    let base = last_run.unwrap_or("");
    let state = &prepared.observed.state;
    let mut staging = Staging {
        read: vec![String::new(); n],
        ..Staging::default()
    };
    // What identifies the data readers of each node see in this run.
    let mut data_key = vec![String::new(); n];
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let key = node.name.key();
        let fp = &prepared.versions[id].fingerprint;
        let upstream = ws
            .dag
            .parents(id)
            .iter()
            .map(|&p| data_key[p].as_str())
            .collect::<Vec<_>>()
            .join(",");
        let snapshot = || format!("{:?}", prepared.observed.sources.get(key));
        let mut tasks: Vec<Task> = Vec::new();
        let mut mode = Mode::Full;
        match node.kind {
            NodeKind::Source => {
                staging.read[id] = prepared
                    .observed
                    .relations
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| {
                        sources::relation(
                            &ws.project.root,
                            &ws.project.config.sources[node.name.as_str()],
                        )
                    });
                data_key[id] = hash(&[fp, &snapshot()]);
                continue;
            }
            NodeKind::Seed if seeds.contains(&id) => tasks.push(Task {
                node: id,
                interval: None,
                key: hash(&["seed", &node.name, &snapshot()]),
            }),
            NodeKind::Model(kind) if kind != Kind::View => {
                if let Some(w) = work.get(&id) {
                    let (file, _) = ws.model(id).expect("model");
                    let intervals: Vec<Option<Interval>> = if kind == Kind::Incremental {
                        let unit = file.config.unit.unwrap_or(Unit::Day);
                        let published = state
                            .models
                            .get(key)
                            .is_some_and(|m| !m.data_table.is_empty());
                        if published && !state.built(key).subtract(&w.intervals).is_empty() {
                            mode = Mode::Partial;
                        }
                        batches(ws, prepared, id, &w.intervals, unit)
                            .into_iter()
                            .map(Some)
                            .collect()
                    } else {
                        vec![None]
                    };
                    for iv in intervals {
                        // A table's batch is its whole history: its window's end
                        // moves with time and is part of what it is built from.
                        let window = iv.unwrap_or_else(|| plan::history(ws, id, prepared.now));
                        tasks.push(Task {
                            node: id,
                            interval: iv,
                            key: hash(&[base, &node.name, fp, &window.to_string(), &upstream]),
                        });
                    }
                }
            }
            _ => {}
        }
        if !tasks.is_empty() {
            // The staged table is named after what every batch of the node is
            // built from except its interval, so that a rerun with another
            // scope finds the batches it can reuse in it.
            let table_key = hash(&[base, &node.name, fp, &upstream]);
            let mut table = format!("{key}__{}", &table_key[..16]);
            let mut next = table_key.clone();
            while published_relations(state).any(|t| t == table) {
                // Never a table published now (a run that recorded no run,
                // or a part of a model's rows).
                next = hash(&[&next, "next"]);
                table = format!("{key}__{}", &next[..16]);
            }
            let node_key = hash(&tasks.iter().map(|t| t.key.as_str()).collect::<Vec<_>>());
            staging.read[id] = match mode {
                Mode::Full => data_table(&table),
                Mode::Partial => {
                    let view = format!("{key}__ov_{}", &node_key[..16]);
                    staging.views.insert(id, view.clone());
                    stage_view(&view)
                }
            };
            staging.nodes.insert(
                id,
                NodeStage {
                    mode,
                    table,
                    rebuilt: IntervalSet::from_intervals(tasks.iter().filter_map(|t| t.interval)),
                },
            );
            data_key[id] = node_key;
            staging.tasks.extend(tasks);
            continue;
        }
        let is_view = node.kind == NodeKind::Model(Kind::View);
        let upstream_staged = ws
            .dag
            .parents(id)
            .iter()
            .any(|&p| !staging.read[p].starts_with("main."));
        if is_view && (work.contains_key(&id) || upstream_staged) {
            // A changed view, or a view over staged data: readers in this run
            // read a staged copy of it.
            let view_key = hash(&["view", &node.name, fp, &upstream]);
            let view = format!("{key}__v_{}", &view_key[..16]);
            staging.read[id] = stage_view(&view);
            staging.views.insert(id, view);
            data_key[id] = view_key;
        } else {
            staging.read[id] = main_name(&node.name);
            data_key[id] = hash(&[base, &node.name]);
        }
    }
    for (i, analysis) in ws.models.iter().enumerate() {
        if matches!(analysis.parsed, Parsed::DuckDb { .. }) {
            let id = ws.model_node(i);
            staging.by_name.extend(ws.dag.parents(id));
        }
    }
    staging
}

/// Finished batches recorded in the staging registry: key → result.
pub(super) fn finished_batches(s: &dyn Session) -> Result<HashMap<String, Staged>> {
    Ok(by_key(&s.query(&format!(
        "SELECT key, row_count, checksum FROM {STAGE_SCHEMA}.{BATCHES}"
    ))?))
}

/// Rows of (key, row_count, checksum) of the registry, by key.
fn by_key(rows: &crate::engine::Rows) -> HashMap<String, Staged> {
    rows.rows
        .iter()
        .map(|r| {
            (
                r[0].to_text().unwrap_or_default(),
                Staged {
                    rows: r[1].as_i64().unwrap_or(0),
                    checksum: r[2].to_text().unwrap_or_default(),
                },
            )
        })
        .collect()
}

/// The relations of `_hubforge_data` that hold published rows: each model's
/// data relation and its parts.
fn published_relations(state: &State) -> impl Iterator<Item = &str> {
    state
        .models
        .values()
        .map(|m| m.data_table.as_str())
        .chain(state.parts.values().flatten().map(|p| p.table.as_str()))
}

/// Remove what dead runs left that this run will not reuse: registry entries
/// and their rows, tables of `_hubforge_data` nothing refers to, and every
/// staged view (made anew each run).
///
/// The batches of a node share one staged table. A batch this run does not
/// want is deleted from it by its interval (each batch's rows lie inside its
/// window); a wanted batch that overlaps an unwanted one is not reused either.
pub(super) fn cleanup(
    ws: &Workspace,
    s: &dyn Session,
    staging: &Staging,
    state: &State,
) -> Result<()> {
    let wanted: BTreeSet<&str> = staging.tasks.iter().map(|t| t.key.as_str()).collect();
    let mut keep: BTreeSet<String> = published_relations(state).map(str::to_string).collect();
    let time_column: BTreeMap<&str, &str> = staging
        .nodes
        .iter()
        .filter_map(|(&id, stage)| {
            let tc = ws.model(id)?.0.config.time_column.as_deref()?;
            Some((stage.table.as_str(), tc))
        })
        .collect();
    let mut by_table: BTreeMap<String, Vec<(String, Option<Interval>)>> = BTreeMap::new();
    let q = format!(
        "SELECT key, table_name, strftime(start_ts, '%Y-%m-%dT%H:%M:%S'), strftime(end_ts, '%Y-%m-%dT%H:%M:%S') \
         FROM {STAGE_SCHEMA}.{BATCHES}"
    );
    for r in s.query(&q)?.rows {
        let interval = match (r[2].to_text(), r[3].to_text()) {
            (Some(a), Some(b)) => crate::interval::parse_point(&a)
                .ok()
                .zip(crate::interval::parse_point(&b).ok())
                .and_then(|(a, b)| Interval::new(a, b).ok()),
            _ => None,
        };
        by_table
            .entry(r[1].to_text().unwrap_or_default())
            .or_default()
            .push((r[0].to_text().unwrap_or_default(), interval));
    }
    let mut sql = String::new();
    for (table, entries) in by_table {
        let mut reuse: Vec<&(String, Option<Interval>)> = entries
            .iter()
            .filter(|(k, _)| wanted.contains(k.as_str()))
            .collect();
        let mut drop: Vec<&(String, Option<Interval>)> = entries
            .iter()
            .filter(|(k, _)| !wanted.contains(k.as_str()))
            .collect();
        // Rows of an unwanted batch are found by its interval: without one (a
        // whole table), or overlapping a wanted batch, nothing in the table is kept.
        loop {
            let overlaps = |iv: &Option<Interval>| {
                drop.iter().any(|(_, d)| match (d, iv) {
                    (Some(d), Some(iv)) => d.intersect(iv).is_some(),
                    _ => true,
                })
            };
            let (bad, good): (Vec<_>, Vec<_>) = reuse.into_iter().partition(|(_, iv)| overlaps(iv));
            reuse = good;
            if bad.is_empty() {
                break;
            }
            drop.extend(bad);
        }
        let tc = time_column.get(table.as_str());
        if reuse.is_empty() || tc.is_none() && !drop.is_empty() {
            drop = entries.iter().collect();
        } else {
            keep.insert(table.clone());
        }
        for (key, interval) in &drop {
            sql.push_str(&format!(
                "DELETE FROM {STAGE_SCHEMA}.{BATCHES} WHERE key = {};\n",
                quote_str(key)
            ));
            if let (Some(iv), Some(tc), true) = (interval, tc, keep.contains(&table)) {
                sql.push_str(&format!(
                    "DELETE FROM {} WHERE {};\n",
                    data_table(&table),
                    crate::engine::window_predicate(None, tc, iv)
                ));
            }
        }
    }
    let objects = s.query(&format!(
        "SELECT table_schema, table_name, table_type FROM information_schema.tables \
         WHERE table_schema IN ('{DATA_SCHEMA}', '{STAGE_SCHEMA}', '{REF_SCHEMA}')"
    ))?;
    for r in objects.rows {
        let (schema, name) = (
            r[0].to_text().unwrap_or_default(),
            r[1].to_text().unwrap_or_default(),
        );
        let what = if r[2].as_str() == Some("VIEW") {
            "VIEW"
        } else {
            "TABLE"
        };
        let orphan = match schema.as_str() {
            DATA_SCHEMA => !keep.contains(&name),
            _ => what == "VIEW",
        };
        if orphan {
            sql.push_str(&format!(
                "DROP {what} IF EXISTS {schema}.{};\n",
                quote_ident(&name)
            ));
        }
    }
    if !sql.is_empty() {
        s.execute(&format!("BEGIN TRANSACTION;\n{sql}COMMIT;"))?;
    }
    Ok(())
}

/// Run every task, dependencies first, independent nodes and batches in
/// parallel. The first batch of a node creates its staged table; the others
/// then append to it concurrently.
#[allow(clippy::too_many_arguments)]
pub(super) fn run<'a>(
    ws: &Workspace,
    engine: &dyn Engine,
    staging: &Staging,
    reusable: &HashMap<String, Staged>,
    options: &BuildOptions,
    interrupted: &AtomicBool,
    progress: &Progress,
    cutoff: &mut Cutoff<'a>,
) -> Result<HashMap<String, Staged>> {
    let mut results: HashMap<String, Staged> = HashMap::new();
    let mut pending: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    for (i, t) in staging.tasks.iter().enumerate() {
        if let Some(r) = reusable.get(&t.key) {
            results.insert(t.key.clone(), r.clone());
        } else {
            pending.entry(t.node).or_default().push(i);
        }
    }
    // A staged table exists once one of its batches finished (in any run).
    let mut created: BTreeSet<NodeId> = staging
        .tasks
        .iter()
        .filter(|t| reusable.contains_key(&t.key))
        .map(|t| t.node)
        .collect();
    let active: BTreeSet<NodeId> = staging
        .nodes
        .keys()
        .chain(staging.views.keys())
        .copied()
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
    let todo: usize = pending.values().map(Vec::len).sum();
    progress.start(todo as u64, "staging");

    let main = engine.session()?;
    for id in staging.by_name.iter().filter(|id| !active.contains(id)) {
        create_ref_view(ws, main.as_ref(), *id, staging)?;
    }
    // A chain, whether it creates its table, and `commits` when it was sent.
    let (task_tx, task_rx) = mpsc::channel::<(Vec<usize>, bool, usize)>();
    // Commits of staged data and statements of `main` readers depend on,
    // counted: a worker's open transaction only sees what came before it.
    let commits = AtomicUsize::new(0);
    let task_rx = Arc::new(Mutex::new(task_rx));
    let (done_tx, done_rx) = mpsc::channel::<ChainEvent>();
    let failed = AtomicBool::new(false);
    let now = options.plan.now;
    let outcome = std::thread::scope(|scope| -> Result<()> {
        for _ in 0..options.threads.max(1) {
            let session = engine.session()?;
            let rx = Arc::clone(&task_rx);
            let tx = done_tx.clone();
            let failed = &failed;
            let commits = &commits;
            scope.spawn(move || {
                let stop = || failed.load(Ordering::SeqCst) || interrupted.load(Ordering::SeqCst);
                let mut open = Open::new(commits);
                loop {
                    // While a transaction is open, take the next chain only if
                    // one is waiting; otherwise commit first, so that readers
                    // of the chains in it can start.
                    let next = if open.chains.is_empty() {
                        rx.lock().unwrap_or_else(|e| e.into_inner()).recv().ok()
                    } else {
                        // Never wait for the queue with a transaction open: a
                        // worker holding its lock is waiting for work itself.
                        rx.try_lock().ok().and_then(|rx| rx.try_recv().ok())
                    };
                    let Some((chain, create, sent)) = next else {
                        if open.chains.is_empty() {
                            break;
                        }
                        open.commit(session.as_ref(), staging, &tx, None);
                        continue;
                    };
                    if open.begun && sent > open.since {
                        // Its parents were committed after the open transaction
                        // began, which cannot see them: commit it first.
                        open.commit(session.as_ref(), staging, &tx, None);
                    }
                    stage_chain(
                        ws,
                        session.as_ref(),
                        &chain,
                        staging,
                        create,
                        now,
                        &stop,
                        &tx,
                        &mut open,
                    );
                }
            });
        }
        drop(done_tx);
        let mut in_flight: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut first_error: Option<Error> = None;
        let mut ready: Vec<NodeId> = waiting
            .iter()
            .filter(|(_, w)| **w == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut finished: BTreeSet<NodeId> = BTreeSet::new();
        let mut pruned: BTreeSet<NodeId> = BTreeSet::new();
        let mut staged_count = 0usize;
        // A node's batches run in order on one session, as one chain.
        let dispatch = |id: NodeId,
                        pending: &mut BTreeMap<NodeId, Vec<usize>>,
                        created: &BTreeSet<NodeId>,
                        in_flight: &mut BTreeMap<NodeId, usize>|
         -> Result<()> {
            let Some(list) = pending.get_mut(&id).filter(|l| !l.is_empty()) else {
                return Ok(());
            };
            let chain: Vec<usize> = std::mem::take(list);
            task_tx
                .send((
                    chain,
                    !created.contains(&id),
                    commits.load(Ordering::SeqCst),
                ))
                .map_err(|_| Error::Engine("staging workers stopped".to_string()))?;
            *in_flight.entry(id).or_default() += 1;
            Ok(())
        };
        loop {
            while let Some(id) = ready.pop() {
                if first_error.is_some() {
                    continue;
                }
                if pruned.insert(id) {
                    // Its parents are done: drop the batches whose input did not change.
                    let list = pending.entry(id).or_default();
                    cutoff.prune(id, staging, list, created.contains(&id));
                    if let Some(read) = cutoff.reader(id, staging) {
                        staging
                            .read_now
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id, read);
                    }
                }
                dispatch(id, &mut pending, &created, &mut in_flight)?;
                let busy = in_flight.get(&id).copied().unwrap_or(0) > 0
                    || pending.get(&id).is_some_and(|l| !l.is_empty());
                if !busy && finished.insert(id) {
                    cutoff.observe(main.as_ref(), id, staging, &mut results)?;
                    if finish_node(ws, main.as_ref(), id, staging, cutoff, now)? {
                        commits.fetch_add(1, Ordering::SeqCst);
                    }
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
            if in_flight.values().all(|n| *n == 0) {
                break;
            }
            let Ok(event) = done_rx.recv() else {
                break;
            };
            match event {
                ChainEvent::Batch(i, rows) => {
                    progress.step(&describe_task(ws, &staging.tasks[i], rows));
                }
                ChainEvent::Committed(batches) => {
                    for (i, r) in batches {
                        results.insert(staging.tasks[i].key.clone(), r);
                        created.insert(staging.tasks[i].node);
                        staged_count += 1;
                        pause_point("stage", staged_count);
                    }
                }
                ChainEvent::Finished(first, end) => {
                    let id = staging.tasks[first].node;
                    *in_flight.get_mut(&id).expect("in flight") -= 1;
                    match end {
                        // Dispatch the rest of the node, or finish it.
                        Ok(()) => ready.push(id),
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            if first_error.is_none()
                                || matches!(first_error, Some(Error::Interrupted))
                            {
                                first_error = Some(e);
                            }
                        }
                    }
                }
            }
        }
        drop(task_tx);
        if let Some(e) = first_error {
            return Err(e);
        }
        let unfinished: Vec<&str> = active
            .iter()
            .filter(|id| !finished.contains(id))
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
    });
    // An interrupted statement fails with an engine error: report the interrupt.
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

/// After all tasks of a node: create the view its readers use, and its view in
/// the ref schema when SQL only DuckDB parses reads it.
fn finish_node(
    ws: &Workspace,
    s: &dyn Session,
    id: NodeId,
    staging: &Staging,
    cutoff: &Cutoff,
    now: NaiveDateTime,
) -> Result<bool> {
    let node = &ws.dag.nodes[id];
    let view = if cutoff.skipped.contains(&id) {
        None
    } else if cutoff.partial.contains(&id) {
        Some(super::cutoff::overlay_name(staging, id))
    } else {
        staging.views.get(&id).cloned()
    };
    let wrote = view.is_some();
    if let Some(view) = view {
        let body = match (node.kind, staging.nodes.get(&id)) {
            (NodeKind::Model(Kind::View), _) => {
                // SQL only DuckDB parses keeps its names, which resolve to the
                // published data when the view is read.
                render_sql(ws, id, &window_for(ws, id, None, now), &|n| {
                    staging.reader(n)
                })?
                .0
            }
            (_, Some(stage)) => {
                // A partial rebuild: the published table without the rebuilt
                // intervals, and the staged rows.
                let (file, _) = ws.model(id).expect("model");
                let tc = file.config.time_column.as_deref().unwrap_or_default();
                let published = main_name(&node.name);
                let replaced = cutoff
                    .rebuilt(id, staging)
                    .iter()
                    .map(|iv| format!("({})", window_predicate(None, tc, iv)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                format!(
                    "SELECT * FROM {published} WHERE NOT ({replaced}) UNION ALL BY NAME SELECT * FROM {}",
                    data_table(&stage.table)
                )
            }
            _ => unreachable!("staged views are for views and partial rebuilds"),
        };
        s.execute(&format!(
            "CREATE OR REPLACE VIEW {} AS {body}",
            stage_view(&view)
        ))
        .map_err(|e| Error::Engine(format!("staging `{}` for its readers: {e}", node.name)))?;
    }
    if staging.by_name.contains(&id) {
        create_ref_view(ws, s, id, staging)?;
    }
    Ok(wrote || staging.by_name.contains(&id))
}

/// A view in the ref schema named like `id`, over what readers read of it.
fn create_ref_view(ws: &Workspace, s: &dyn Session, id: NodeId, staging: &Staging) -> Result<()> {
    s.execute(&format!(
        "CREATE OR REPLACE VIEW {REF_SCHEMA}.{} AS SELECT * FROM {};",
        quote_ident(&ws.dag.nodes[id].name),
        staging.reader(id)
    ))
}

/// What a staging worker reports while it runs a chain.
enum ChainEvent {
    /// A batch is written (not yet committed): its task and rows.
    Batch(usize, i64),
    /// Batches now committed, with what they wrote.
    Committed(Vec<(usize, Staged)>),
    /// The chain that starts with this task ended.
    Finished(usize, Result<()>),
}

/// Rows a transaction of staged batches holds before it commits. A batch
/// appended to a table that already has rows is written row by row to the
/// write-ahead log, kept in memory and written again at the checkpoint, unless
/// its transaction appends at least a row group (DuckDB's 122,880 rows): then
/// its row groups, compressed and written while the batch ran, are merged into
/// the table. Each commit leaves one partly filled row group, which the
/// checkpoint rewrites; ten row groups per commit keep that under a tenth of
/// the rows. Smaller batches are therefore committed together (redoing them
/// after a kill costs less than writing them twice), and a batch of ten row
/// groups or more is still committed, and reused by a rerun, on its own.
/// The chains of small nodes waiting side by side share a transaction too:
/// a commit costs milliseconds whatever it holds.
const COMMIT_ROWS: i64 = 10 * 122_880;

/// The transaction a staging worker has open: the batches written in it, and
/// the chains it finished (their first tasks), reported once it commits.
struct Open<'a> {
    /// The run's count of commits, and its value when this one began.
    commits: &'a AtomicUsize,
    since: usize,
    begun: bool,
    batches: Vec<(usize, i64)>,
    rows: i64,
    chains: Vec<usize>,
}

impl<'a> Open<'a> {
    fn new(commits: &'a AtomicUsize) -> Self {
        Open {
            commits,
            since: 0,
            begun: false,
            batches: Vec::new(),
            rows: 0,
            chains: Vec::new(),
        }
    }

    fn begin(&mut self, s: &dyn Session) -> Result<()> {
        if !self.begun {
            self.since = self.commits.load(Ordering::SeqCst);
            s.execute("BEGIN TRANSACTION")?;
            self.begun = true;
        }
        Ok(())
    }

    /// Commit: record the batches, report them and the chains finished. A
    /// failure rolls back and ends every chain in the transaction, `running`
    /// (a chain with batches in it that goes on) first, with the cause.
    fn commit(
        &mut self,
        s: &dyn Session,
        staging: &Staging,
        events: &mpsc::Sender<ChainEvent>,
        running: Option<usize>,
    ) -> bool {
        let done = (|| -> Result<Vec<(usize, Staged)>> {
            let recorded = if self.batches.is_empty() {
                Vec::new()
            } else {
                record(s, &self.batches, staging)?
            };
            if self.begun {
                s.execute("COMMIT")?;
            }
            Ok(recorded)
        })();
        match done {
            Ok(recorded) => {
                self.commits.fetch_add(1, Ordering::SeqCst);
                self.begun = false;
                self.batches.clear();
                self.rows = 0;
                if !recorded.is_empty() {
                    let _ = events.send(ChainEvent::Committed(recorded));
                }
                for c in self.chains.drain(..) {
                    let _ = events.send(ChainEvent::Finished(c, Ok(())));
                }
                true
            }
            Err(e) => {
                self.abort(s, e, running, events);
                false
            }
        }
    }

    /// Roll back: `error` ends `running` and the chains in the transaction.
    fn abort(
        &mut self,
        s: &dyn Session,
        error: Error,
        running: Option<usize>,
        events: &mpsc::Sender<ChainEvent>,
    ) {
        if self.begun {
            let _ = s.execute("ROLLBACK");
        }
        self.begun = false;
        self.batches.clear();
        self.rows = 0;
        let mut error = Some(error);
        for c in running.into_iter().chain(self.chains.drain(..)) {
            // The first is told the cause; the others were rolled back with it.
            let e = error.take().unwrap_or(Error::Interrupted);
            let _ = events.send(ChainEvent::Finished(c, Err(e)));
        }
    }
}

/// Build the batches of one node in order into the worker's transaction,
/// committing whenever it holds [`COMMIT_ROWS`] rows; each batch is recorded
/// in the registry in the transaction that writes it. The chain is reported
/// finished when the transaction holding its last batch commits, or when it
/// fails, with the chains rolled back with it.
#[allow(clippy::too_many_arguments)]
fn stage_chain(
    ws: &Workspace,
    s: &dyn Session,
    chain: &[usize],
    staging: &Staging,
    mut create: bool,
    now: NaiveDateTime,
    stop: &dyn Fn() -> bool,
    events: &mpsc::Sender<ChainEvent>,
    open: &mut Open,
) {
    let first = Some(chain[0]);
    let windowed = |i: usize| {
        let t = &staging.tasks[i];
        t.interval.is_some()
            && ws
                .model(t.node)
                .is_some_and(|(f, _)| f.config.time_column.is_some())
    };
    let mut rest = chain;
    // Rows per batch so far: the first batch runs alone and sizes the groups.
    let (mut written, mut batches) = (0i64, 0i64);
    while !rest.is_empty() {
        // Small batches with windows run as one statement, together about a
        // row group and at most GROUP_BATCHES.
        let size = match written.checked_div(batches) {
            None => 1,
            Some(per) => (GROUP_ROWS / per.max(1)).clamp(1, GROUP_BATCHES as i64) as usize,
        };
        let take = if windowed(rest[0]) {
            rest.iter().take(size).take_while(|&&i| windowed(i)).count()
        } else {
            1
        };
        let (group, after) = rest.split_at(take);
        rest = after;
        if stop() {
            return open.abort(s, Error::Interrupted, first, events);
        }
        if let Err(e) = open.begin(s) {
            return open.abort(s, e, first, events);
        }
        let started = std::time::Instant::now();
        match stage_tasks(ws, s, group, staging, create, now) {
            Ok(counts) => {
                let described: Vec<String> = group
                    .iter()
                    .zip(&counts)
                    .map(|(&i, &n)| describe_task(ws, &staging.tasks[i], n))
                    .collect();
                crate::progress::timing(&described.join(", "), started.elapsed());
                for (&i, &n) in group.iter().zip(&counts) {
                    written += n;
                    batches += 1;
                    let _ = events.send(ChainEvent::Batch(i, n));
                    open.rows += n;
                    open.batches.push((i, n));
                }
                create = false;
            }
            Err(e) => {
                // Told against the model after the rollback.
                let _ = s.execute("ROLLBACK");
                open.begun = false;
                let e = failing_batch(ws, s, group, staging, create, now, e);
                return open.abort(s, e, first, events);
            }
        }
        if open.rows >= COMMIT_ROWS && !open.commit(s, staging, events, first) {
            return;
        }
    }
    open.chains.push(chain[0]);
}

/// The SELECT a task writes, and whether only DuckDB parses it.
fn task_select(
    ws: &Workspace,
    t: &Task,
    staging: &Staging,
    now: NaiveDateTime,
) -> Result<(String, bool)> {
    let node = &ws.dag.nodes[t.node];
    match node.kind {
        NodeKind::Seed => {
            let seed = ws.project.seed(&node.name).expect("seed");
            Ok((
                format!(
                    "SELECT * FROM {}",
                    sources::seed_relation(&ws.project.root, seed)
                ),
                false,
            ))
        }
        _ => render_sql(ws, t.node, &window_for(ws, t.node, t.interval, now), &|n| {
            staging.reader(n)
        }),
    }
}

/// Batches of one model written by one statement (a `UNION ALL` of each
/// batch's own query, each checked against its own window): a statement costs
/// the same planning and start-up whatever its size, and the batches of a
/// daily model are often small. Measured on 958 batches of about 10,000 rows:
/// 10–15 % off a first build. Batches of a row group or more gain nothing and
/// cost memory: they still run one by one.
const GROUP_BATCHES: usize = 12;
const GROUP_ROWS: i64 = 122_880;

/// Build `group` (batches of one node, in order) into its staged table inside
/// the caller's transaction: one statement for batches with windows, then one
/// grouped count of the rows each wrote; the rows of each.
fn stage_tasks(
    ws: &Workspace,
    s: &dyn Session,
    group: &[usize],
    staging: &Staging,
    create: bool,
    now: NaiveDateTime,
) -> Result<Vec<i64>> {
    let tasks: Vec<&Task> = group.iter().map(|&i| &staging.tasks[i]).collect();
    if let [t] = tasks[..] {
        return Ok(vec![stage_task(ws, s, t, staging, create, now)?]);
    }
    let tc = ws
        .model(tasks[0].node)
        .and_then(|(f, _)| f.config.time_column.clone())
        .expect("grouped batches have a time column");
    let mut branches = Vec::new();
    for t in &tasks {
        let (select, duck_only) = task_select(ws, t, staging, now)?;
        if duck_only {
            // Its names resolve through the search path: one statement each.
            return each_alone(ws, s, group, staging, create, now).map_err(|(_, e)| e);
        }
        let iv = t.interval.expect("grouped batches have windows");
        branches.push(checked(&select, &tc, &iv));
    }
    let table = data_table(&staging.nodes[&tasks[0].node].table);
    let union = branches.join(" UNION ALL ");
    s.execute(&if create {
        format!("CREATE TABLE {table} AS {union}")
    } else {
        format!("INSERT INTO {table} BY NAME {union}")
    })?;
    // The rows in a batch's window are the batch's: its table holds no others there.
    let windows: Vec<Interval> = tasks.iter().map(|t| t.interval.expect("window")).collect();
    let span = Interval::new(windows[0].start(), windows[windows.len() - 1].end())
        .expect("batches in order");
    let counted = s.query(&format!(
        "SELECT {}, count(*) FROM {table} WHERE {} GROUP BY 1",
        crate::engine::Dialect::DuckDb.which_window(None, &tc, &windows),
        window_predicate(None, &tc, &span)
    ))?;
    let mut counts = vec![0i64; tasks.len()];
    for r in counted.rows {
        if let (Some(k), Some(n)) = (r[0].as_i64(), r[1].as_i64()) {
            counts[k as usize] = n;
        }
    }
    Ok(counts)
}

/// After a grouped statement failed (and was rolled back): run its batches
/// one by one in a transaction that is rolled back too, and tell the first
/// failure against its batch, as a batch run alone reports it.
fn failing_batch(
    ws: &Workspace,
    s: &dyn Session,
    group: &[usize],
    staging: &Staging,
    create: bool,
    now: NaiveDateTime,
    error: Error,
) -> Error {
    let first = &staging.tasks[group[0]];
    if group.len() == 1 || !matches!(error, Error::Engine(_)) {
        return explain(ws, s, first, staging, now, error);
    }
    // The rollback took the table with it when this transaction created it.
    let table = data_table(&staging.nodes[&first.node].table);
    let create = create || !crate::engine::relation_exists(s, &table);
    if s.execute("BEGIN TRANSACTION").is_ok() {
        let replayed = each_alone(ws, s, group, staging, create, now);
        let _ = s.execute("ROLLBACK");
        if let Err((i, e)) = replayed {
            return explain(ws, s, &staging.tasks[i], staging, now, e);
        }
    }
    explain(ws, s, first, staging, now, error)
}

/// Build `group` one batch per statement; the rows of each, or the batch
/// that failed and why.
fn each_alone(
    ws: &Workspace,
    s: &dyn Session,
    group: &[usize],
    staging: &Staging,
    create: bool,
    now: NaiveDateTime,
) -> std::result::Result<Vec<i64>, (usize, Error)> {
    group
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            stage_task(ws, s, &staging.tasks[i], staging, create && k == 0, now).map_err(|e| (i, e))
        })
        .collect()
}

/// A batch's query with every row checked to lie in its window while it is written.
fn checked(select: &str, tc: &str, iv: &Interval) -> String {
    format!(
        "SELECT * FROM ({select}) AS __hubforge_batch WHERE CASE WHEN {} THEN true ELSE error('{WINDOW_ERROR}') END",
        window_predicate(Some("__hubforge_batch"), tc, iv)
    )
}

/// Build one batch, table or seed into its staged table, inside the caller's
/// transaction; the rows it wrote.
fn stage_task(
    ws: &Workspace,
    s: &dyn Session,
    t: &Task,
    staging: &Staging,
    create: bool,
    now: NaiveDateTime,
) -> Result<i64> {
    let stage = &staging.nodes[&t.node];
    let table = data_table(&stage.table);
    let (select, duck_only) = task_select(ws, t, staging, now)?;
    let time_column = ws
        .model(t.node)
        .and_then(|(f, _)| f.config.time_column.clone());
    // Every row of a batch must lie in its window: checked while it is written.
    let checked = match (t.interval, &time_column) {
        (Some(iv), Some(tc)) => checked(&select, tc, &iv),
        _ => select,
    };
    let write = if create {
        format!("CREATE TABLE {table} AS {checked}")
    } else {
        format!("INSERT INTO {table} BY NAME {checked}")
    };
    if duck_only {
        s.execute(&format!("SET search_path = '{REF_SCHEMA},main'"))?;
    }
    let written = s.query(&write);
    if duck_only {
        let _ = s.execute("SET search_path = 'main'");
    }
    Ok(written?
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_i64())
        .unwrap_or(0))
}

/// The error a failed task reports, told against the model (after the
/// rollback): rows outside the window, DuckDB's message at the model's line,
/// or the engine's message naming the batch.
fn explain(
    ws: &Workspace,
    s: &dyn Session,
    t: &Task,
    staging: &Staging,
    now: NaiveDateTime,
    e: Error,
) -> Error {
    let node = &ws.dag.nodes[t.node];
    let context = |e: Error| match e {
        Error::Engine(m) => Error::Engine(format!(
            "building `{}`{}: {m}",
            node.name,
            t.interval.map(|i| format!(" {i}")).unwrap_or_default()
        )),
        other => other,
    };
    let Error::Engine(message) = &e else {
        return e;
    };
    let Ok((select, duck_only)) = task_select(ws, t, staging, now) else {
        return context(e);
    };
    let time_column = ws
        .model(t.node)
        .and_then(|(f, _)| f.config.time_column.clone());
    match (t.interval, &time_column) {
        (Some(iv), Some(tc)) if message.contains(WINDOW_ERROR) => {
            window_violation(s, node.name.as_str(), &select, iv, tc)
        }
        _ if !duck_only && node.kind.is_model() => {
            query_error(ws, s, t.node, &select, time_column.as_deref())
                .unwrap_or_else(|| context(e))
        }
        _ => context(e),
    }
}

/// Why a model's query failed, told against its file: DuckDB's own message at
/// the model's line (the rendered query keeps the file's lines), or a missing
/// time column. None when the query alone runs (the failure was elsewhere).
fn query_error(
    ws: &Workspace,
    s: &dyn Session,
    node: NodeId,
    select: &str,
    time_column: Option<&str>,
) -> Option<Error> {
    let (file, _) = ws.model(node)?;
    let path = file
        .path
        .strip_prefix(&ws.project.root)
        .unwrap_or(&file.path);
    let (message, line) = match s.query(&format!("DESCRIBE {select}")) {
        Ok(columns) => {
            let tc = time_column?;
            if columns
                .rows
                .iter()
                .any(|r| r[0].as_str().is_some_and(|c| c.eq_ignore_ascii_case(tc)))
            {
                return None;
            }
            (
                format!(
                    "model `{}` does not output its time_column `{tc}`",
                    file.name
                ),
                None,
            )
        }
        Err(Error::Engine(m)) => {
            let line = m
                .split("LINE ")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.trim().parse::<usize>().ok());
            let first = m.split("\n\nLINE ").next().unwrap_or(&m).trim().to_string();
            (
                format!("DuckDB rejected model `{}`: {first}", file.name),
                line,
            )
        }
        Err(other) => return Some(other),
    };
    let location = match line {
        Some(l) => crate::diagnostics::Location::in_text(path, &file.text, l, 1, 1),
        None => crate::diagnostics::Location::file(path),
    };
    Some(
        crate::diagnostics::Diagnostic::error(crate::diagnostics::Code::ModelRejected, message)
            .at(location)
            .with_help(
                "fix the model's SELECT; `hubforge check` and DuckDB's CLI show the rendered query",
            )
            .into(),
    )
}

/// Count the rows of a batch outside its window, for the error message.
fn window_violation(s: &dyn Session, model: &str, select: &str, iv: Interval, tc: &str) -> Error {
    let col = quote_ident(tc);
    let q = format!(
        "SELECT count(*), CAST(min({col}) AS VARCHAR), CAST(max({col}) AS VARCHAR) FROM ({select}) AS b \
         WHERE NOT coalesce({}, false)",
        window_predicate(None, tc, &iv)
    );
    let detail = match s.query(&q) {
        Ok(rows) => format!(
            "{} rows lie outside the batch window (their {tc} ranges from {} to {})",
            rows.rows[0][0].as_i64().unwrap_or(0),
            rows.rows[0][1].to_text().unwrap_or_else(|| "NULL".into()),
            rows.rows[0][2].to_text().unwrap_or_else(|| "NULL".into())
        ),
        Err(_) => "rows lie outside the batch window".to_string(),
    };
    Error::Data(format!(
        "model `{model}` batch {iv}: {detail}; an incremental model must only output rows with {tc} in \
         [{{{{ start }}}}, {{{{ end }}}}) — filter its input with them. Nothing was published."
    ))
}

/// Record `tasks` (batches written in the open transaction, with the rows
/// each wrote) in the registry by one statement. Their checksums are not
/// computed here: that would scan every batch again while the transaction
/// holds it. Validation computes them with its metrics, or
/// [`batch_checksums`] when a run needs them first (early cutoff) or
/// validates nothing; the registry keeps an empty checksum until then.
fn record(
    s: &dyn Session,
    tasks: &[(usize, i64)],
    staging: &Staging,
) -> Result<Vec<(usize, Staged)>> {
    let values = tasks
        .iter()
        .map(|&(i, rows)| {
            let t = &staging.tasks[i];
            let (start, end) = match t.interval {
                Some(iv) => (state::ts_literal(iv.start()), state::ts_literal(iv.end())),
                None => ("NULL".to_string(), "NULL".to_string()),
            };
            format!(
                "({}, {}, {start}::TIMESTAMP, {end}::TIMESTAMP, {rows}, '')",
                quote_str(&t.key),
                quote_str(&staging.nodes[&t.node].table)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    s.execute(&format!(
        "INSERT INTO {STAGE_SCHEMA}.{BATCHES} VALUES {values}"
    ))?;
    Ok(tasks
        .iter()
        .map(|&(i, rows)| {
            (
                i,
                Staged {
                    rows,
                    checksum: String::new(),
                },
            )
        })
        .collect())
}

/// Content checksums of `tasks` (committed batches of one node) by one scan
/// of its staged table ([`crate::engine::dialect::measure`]): the sums of a
/// batch's units add up to the batch's (how validation computes them along
/// its metrics).
pub(super) fn batch_checksums(
    ws: &Workspace,
    s: &dyn Session,
    staging: &Staging,
    tasks: &[usize],
) -> Result<Vec<(usize, String)>> {
    let first = &staging.tasks[tasks[0]];
    let stage = &staging.nodes[&first.node];
    let tc = ws
        .model(first.node)
        .and_then(|(f, _)| f.config.time_column.clone());
    let windows: Vec<Interval> = match &tc {
        Some(_) => tasks
            .iter()
            .filter_map(|&i| staging.tasks[i].interval)
            .collect(),
        None => Vec::new(),
    };
    let windows = match &tc {
        Some(tc) if windows.len() == tasks.len() => Some((tc.as_str(), windows.as_slice())),
        _ if tasks.len() == 1 => None,
        _ => unreachable!("batches without windows are one per table"),
    };
    let measured = crate::engine::dialect::measure(
        s,
        crate::engine::Dialect::DuckDb,
        &data_table(&stage.table),
        windows,
    )?;
    Ok(tasks
        .iter()
        .zip(measured)
        .map(|(&i, (_, checksum))| (i, checksum))
        .collect())
}

/// Give every batch of the run its checksum before it is published: those
/// not known yet (written in this run, or reused without one) are summed
/// from the unit checksums validation measured along its metrics, where its
/// units fall inside the node's batches, and read by [`batch_checksums`]
/// otherwise (validation skipped, a seed, units that cross a batch).
pub(super) fn fill_checksums(
    ws: &Workspace,
    s: &dyn Session,
    staging: &Staging,
    results: &mut HashMap<String, Staged>,
    validation: Option<&crate::validate::Report>,
) -> Result<()> {
    for &id in staging.nodes.keys() {
        let missing: Vec<usize> = staging
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.node == id)
            .filter(|(_, t)| results.get(&t.key).is_some_and(|r| r.checksum.is_empty()))
            .map(|(i, _)| i)
            .collect();
        if missing.is_empty() {
            continue;
        }
        let name = ws.dag.nodes[id].name.to_string();
        let measured = validation
            .and_then(|v| v.models.iter().find(|m| m.model == name))
            .and_then(|m| m.checksums.as_ref());
        let unit = ws.model(id).and_then(|(f, _)| f.config.unit);
        let sums = match measured.and_then(|units| sum_units(staging, id, units, unit)) {
            Some(sums) => missing.iter().map(|&i| (i, sums[&i].clone())).collect(),
            None => batch_checksums(ws, s, staging, &missing)?,
        };
        for (i, checksum) in sums {
            if let Some(r) = results.get_mut(&staging.tasks[i].key) {
                r.checksum = checksum;
            }
        }
    }
    Ok(())
}

/// Each batch of `id` (task → checksum) as the sum of the checksums of the
/// units inside it; `None` when a unit does not lie inside exactly one batch
/// or a sum is not a number.
fn sum_units(
    staging: &Staging,
    id: NodeId,
    units: &BTreeMap<Option<String>, String>,
    unit: Option<Unit>,
) -> Option<HashMap<usize, String>> {
    let tasks: Vec<(usize, Option<Interval>)> = staging
        .tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.node == id)
        .map(|(i, t)| (i, t.interval))
        .collect();
    let mut sums: HashMap<usize, i128> = tasks.iter().map(|&(i, _)| (i, 0)).collect();
    for (start, checksum) in units {
        let value: i128 = checksum.parse().ok()?;
        let task = match (&tasks[..], start) {
            // One batch of the whole data (a table): every unit is in it.
            ([(i, None)], _) => *i,
            (_, Some(start)) => {
                let t = crate::interval::parse_point(start).ok()?;
                let u = Interval::unit_at(unit?, t);
                if u.start() != t {
                    return None;
                }
                let inside: Vec<usize> = tasks
                    .iter()
                    .filter(|(_, iv)| {
                        iv.is_some_and(|iv| iv.start() <= u.start() && u.end() <= iv.end())
                    })
                    .map(|&(i, _)| i)
                    .collect();
                match inside[..] {
                    [i] => i,
                    _ => return None,
                }
            }
            _ => return None,
        };
        *sums.get_mut(&task)? += value;
    }
    Some(sums.into_iter().map(|(i, v)| (i, v.to_string())).collect())
}
