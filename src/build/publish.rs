//! Publishing: the statements of the one transaction that makes a run's staged
//! data what `main` shows, and records it in state.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;

use super::stage::{Mode, Staged, Staging, Task};
use super::{
    DATA_SCHEMA, Prepared, STAGE_SCHEMA, data_table, main_name, now, render_sql, user, window_for,
};
use crate::change::VersionLookup as _;
use crate::config::Kind;
use crate::engine::{Session, quote_ident, quote_str};
use crate::error::Result;
use crate::fingerprint::ModelVersion;
use crate::graph::{NodeId, NodeKind};
use crate::interval::{Interval, IntervalSet};
use crate::plan::{ChangeKind, ModelWork, history};
use crate::sources::{self, SOURCE_SCHEMA};
use crate::state::{DataPart, IntervalRecord, PendingRecord, StateWrites};
use crate::workspace::Workspace;

/// What identifies the run in state.
pub(super) struct RunInfo<'a> {
    pub run_id: &'a str,
    /// The run's number in the run log.
    pub seq: i64,
    pub started: NaiveDateTime,
    pub command: &'a str,
    pub cutoffs: &'a [super::CutOff],
    /// What the run was asked to cover, for the run log.
    pub scope: &'a serde_json::Value,
    /// Models outside the scope that early cutoff found not stale.
    pub settled: &'a BTreeSet<NodeId>,
    /// Sources whose schema drift the user accepted (`--accept-schema`).
    pub accepted: &'a [String],
    pub validation: Option<&'a crate::validate::Report>,
    /// Audits skipped on request.
    pub skipped: Vec<String>,
}

/// The statements of the publish transaction, in order.
pub(super) fn statements(
    ws: &Workspace,
    prepared: &Prepared,
    work: &BTreeMap<NodeId, &ModelWork>,
    staging: &Staging,
    results: &HashMap<String, Staged>,
    run: &RunInfo,
    s: &dyn Session,
) -> Result<Vec<String>> {
    let state = &prepared.observed.state;
    let mut sql: Vec<String> = Vec::new();
    let ingested = table_names(s, SOURCE_SCHEMA)?;
    // Columns of each staged table as written, and of the relations partial
    // rebuilds replace rows of (the model's data relation and its parts): one
    // catalog query.
    let mut tables: Vec<&str> = staging.nodes.values().map(|n| n.table.as_str()).collect();
    for (&id, stage) in &staging.nodes {
        let key = ws.dag.nodes[id].name.key();
        if stage.mode == Mode::Partial {
            tables.extend(state.models.get(key).map(|m| m.data_table.as_str()));
            tables.extend(
                state
                    .parts
                    .get(key)
                    .into_iter()
                    .flatten()
                    .map(|p| p.table.as_str()),
            );
        }
    }
    let mut columns = crate::sources::table_columns(s, DATA_SCHEMA, &tables)?;
    let staged_columns: BTreeMap<NodeId, Vec<(String, String)>> = staging
        .nodes
        .iter()
        .map(|(&id, stage)| (id, columns.remove(&stage.table).unwrap_or_default()))
        .collect();
    // What published views read: sources through their stable view, the rest in `main`.
    let publish_target = |n: NodeId| {
        let node = &ws.dag.nodes[n];
        match node.kind {
            NodeKind::Source => format!("{SOURCE_SCHEMA}.{}", quote_ident(&node.name)),
            _ => main_name(&node.name),
        }
    };
    let over_rebuilt = staging.over_rebuilt(ws, work, &prepared.observed.drift);
    let mut data_tables: BTreeMap<NodeId, String> = BTreeMap::new();
    // Models whose parts change: their parts after the run.
    let mut parts: BTreeMap<NodeId, Vec<DataPart>> = BTreeMap::new();
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let key = node.name.key();
        let old_table = state
            .models
            .get(key)
            .map(|m| m.data_table.clone())
            .unwrap_or_default();
        let old_parts = state.parts.get(key).map(Vec::as_slice);
        let mut drop_old_table = |sql: &mut Vec<String>| {
            if !old_table.is_empty() {
                drop_data(sql, &old_table, old_parts);
            }
            if old_parts.is_some() {
                parts.insert(id, Vec::new());
            }
        };
        match (node.kind, staging.nodes.get(&id)) {
            (NodeKind::Source, _) => {
                // The stable view published views read; older copies of the files go.
                sql.push(format!(
                    "CREATE OR REPLACE VIEW {SOURCE_SCHEMA}.{} AS SELECT * FROM {};",
                    quote_ident(&node.name),
                    staging.read[id]
                ));
                let current = staging.read[id]
                    .rsplit('.')
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string();
                for old in ingested
                    .iter()
                    .filter(|t| sources::is_copy_of(t, key) && **t != current)
                {
                    sql.push(format!(
                        "DROP TABLE IF EXISTS {SOURCE_SCHEMA}.{};",
                        quote_ident(old)
                    ));
                }
            }
            // A changed view, or one over anything this run changes.
            (NodeKind::Model(Kind::View), _) if over_rebuilt[id] => {
                let (body, _) = render_sql(
                    ws,
                    id,
                    &window_for(ws, id, None, prepared.now),
                    &publish_target,
                )?;
                sql.push(format!(
                    "CREATE OR REPLACE VIEW {} AS {body};",
                    main_name(&node.name)
                ));
                drop_old_table(&mut sql);
            }
            (_, Some(stage)) if stage.mode == Mode::Full => {
                // The staged table becomes the model's table: no copy.
                sql.push(format!(
                    "CREATE OR REPLACE VIEW {} AS SELECT * FROM {};",
                    main_name(&node.name),
                    data_table(&stage.table)
                ));
                if old_table != stage.table {
                    drop_old_table(&mut sql);
                }
                data_tables.insert(id, stage.table.clone());
            }
            (_, Some(stage)) => {
                // The rebuilt intervals replace theirs in the model's rows.
                let (file, _) = ws.model(id).expect("model");
                let tc = file.config.time_column.as_deref().unwrap_or_default();
                let published = Published {
                    table: &old_table,
                    parts: old_parts,
                };
                let staged = Part {
                    table: &stage.table,
                    columns: &staged_columns[&id],
                    rebuilt: &stage.rebuilt,
                };
                let kept =
                    replace_intervals(&mut sql, &columns, &node.name, tc, published, staged)?;
                data_tables.insert(id, kept.relation);
                if kept.parts.is_some() || published.parts.is_some() {
                    parts.insert(id, kept.parts.unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    for name in &prepared.plan.removed {
        sql.push(format!("DROP VIEW IF EXISTS {};", main_name(name)));
        if let Some(m) = state.models.get(name)
            && !m.data_table.is_empty()
        {
            drop_data(
                &mut sql,
                &m.data_table,
                state.parts.get(name).map(Vec::as_slice),
            );
        }
    }
    // The staged batches are published: forget them with the same commit.
    if !staging.tasks.is_empty() {
        sql.push(format!(
            "DELETE FROM {STAGE_SCHEMA}.{} WHERE key IN ({});",
            super::stage::BATCHES,
            staging
                .tasks
                .iter()
                .map(|t| quote_str(&t.key))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for view in staging.views.values() {
        sql.push(format!(
            "DROP VIEW IF EXISTS {STAGE_SCHEMA}.{};",
            quote_ident(view)
        ));
    }
    sql.extend(
        state_writes(
            ws,
            prepared,
            work,
            staging,
            results,
            &staged_columns,
            &data_tables,
            run,
        )
        .sql,
    );
    let mut w = StateWrites::default();
    for (id, parts) in &parts {
        w.parts(ws.dag.nodes[*id].name.key(), parts);
    }
    sql.extend(w.sql);
    Ok(sql)
}

/// What holds a model's rows, as (`TABLE` or `VIEW`, name): its table, or
/// its view and parts.
pub(super) fn data_relations<'a>(
    relation: &'a str,
    parts: Option<&'a [DataPart]>,
) -> Vec<(&'static str, &'a str)> {
    match parts {
        None => vec![("TABLE", relation)],
        Some(parts) => std::iter::once(("VIEW", relation))
            .chain(parts.iter().map(|p| ("TABLE", p.table.as_str())))
            .collect(),
    }
}

/// Drop a model's data relation: its table, or its view and parts.
fn drop_data(sql: &mut Vec<String>, relation: &str, parts: Option<&[DataPart]>) {
    for (kind, name) in data_relations(relation, parts) {
        sql.push(format!("DROP {kind} IF EXISTS {};", data_table(name)));
    }
}

/// Parts a model's rows are kept in at most. A partial rebuild that would
/// leave more copies the rows of the newer parts into the oldest, so that the
/// copying a partial rebuild saves is paid once for several of them, and
/// readers never read through many tables.
pub(super) const MAX_PARTS: usize = 8;

/// A model's published rows: a table, or a view over parts.
#[derive(Clone, Copy)]
pub(super) struct Published<'a> {
    pub table: &'a str,
    pub parts: Option<&'a [DataPart]>,
}

/// A model's parts once a partial rebuild's table joins them.
pub(super) struct NextParts {
    /// Parts every row of which the rebuild replaces: dropped with the publish.
    pub replaced: Vec<DataPart>,
    /// The parts the model keeps, oldest first, the rebuild's table last.
    pub kept: Vec<DataPart>,
}

/// The parts of `published` with the `rebuilt` intervals left out of them,
/// and `table` (the rebuilt rows) added.
pub(super) fn next_parts(published: Published, table: &str, rebuilt: &IntervalSet) -> NextParts {
    let mut parts: Vec<DataPart> = published.parts.map(<[_]>::to_vec).unwrap_or_else(|| {
        vec![DataPart {
            table: published.table.to_string(),
            covers: None,
            excluded: IntervalSet::new(),
        }]
    });
    for p in &mut parts {
        p.excluded = p.excluded.union(rebuilt);
        if let Some(covers) = &p.covers {
            p.excluded = p.excluded.intersect(covers);
        }
    }
    let (replaced, mut kept): (Vec<DataPart>, Vec<DataPart>) =
        parts.into_iter().partition(DataPart::is_replaced);
    kept.push(DataPart {
        table: table.to_string(),
        covers: Some(rebuilt.clone()),
        excluded: IntervalSet::new(),
    });
    NextParts { replaced, kept }
}

/// The name of the view over a model's parts: one per set of parts.
pub(super) fn parts_view(key: &str, parts: &[DataPart]) -> String {
    let signature: Vec<String> = parts
        .iter()
        .map(|p| format!("{} {}", p.table, p.excluded))
        .collect();
    format!(
        "{key}__parts_{}",
        &crate::hash::hash_parts("parts", signature.iter().map(String::as_str))[..16]
    )
}

/// The rows a partial rebuild staged.
struct Part<'a> {
    table: &'a str,
    /// Its columns and types, as written.
    columns: &'a [(String, String)],
    rebuilt: &'a IntervalSet,
}

/// Where a model's rows are after a partial rebuild.
struct Kept {
    /// The model's data relation.
    relation: String,
    /// Its parts (`None`: the relation is a table).
    parts: Option<Vec<DataPart>>,
}

/// The statements that replace the rebuilt intervals of a model's rows with
/// the staged ones. The staged table becomes a part of the model and the
/// replaced rows of older parts are filtered out by the view over them: no
/// row is copied. When that would make too many parts, or a column changes
/// its type (a cast that cannot be read back must fail here, not in every
/// later read), the newer parts' rows are copied into the oldest instead.
fn replace_intervals(
    sql: &mut Vec<String>,
    catalog: &HashMap<String, Vec<(String, String)>>,
    model: &crate::name::ModelName,
    tc: &str,
    published: Published,
    staged: Part,
) -> Result<Kept> {
    let NextParts {
        replaced,
        kept: mut parts,
    } = next_parts(published, staged.table, staged.rebuilt);
    // Columns as the model has them now, in its order (a clean rebuild's);
    // one whose type the new logic changed takes the new type (all rows of a
    // relation share one; the rows of other intervals are cast, and stay
    // stale); one only older rows have goes last.
    let relation = data_table(published.table);
    let columns_of = |table: &str| {
        catalog.get(table).ok_or_else(|| {
            crate::Error::Engine(format!(
                "the published rows of `{model}` are missing from the warehouse ({}); \
                 rebuild the model whole: `hubforge build --backfill --select {model}`",
                data_table(table)
            ))
        })
    };
    let mut columns = staged.columns.to_vec();
    let mut retyped = false;
    for (col, ty) in columns_of(published.table)? {
        match columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(col)) {
            None => columns.push((col.clone(), ty.clone())),
            Some((_, new)) if new != ty => retyped = true,
            Some(_) => {}
        }
    }
    let main = main_name(model);
    let keep_out = |p: &DataPart| -> String {
        if p.excluded.is_empty() {
            return String::new();
        }
        let predicates: Vec<String> = p
            .excluded
            .iter()
            .map(|iv| format!("({})", crate::engine::window_predicate(None, tc, iv)))
            .collect();
        format!(" WHERE NOT ({})", predicates.join(" OR "))
    };
    if retyped || parts.len() > MAX_PARTS {
        let base = parts.remove(0);
        let target = data_table(&base.table);
        let types: BTreeMap<String, &String> = columns_of(&base.table)?
            .iter()
            .map(|(c, t)| (c.to_lowercase(), t))
            .collect();
        for (col, ty) in &columns {
            match types.get(&col.to_lowercase()) {
                None => sql.push(format!(
                    "ALTER TABLE {target} ADD COLUMN {} {ty};",
                    quote_ident(col)
                )),
                Some(&old) if old != ty => sql.push(format!(
                    "ALTER TABLE {target} ALTER COLUMN {} SET DATA TYPE {ty};",
                    quote_ident(col)
                )),
                Some(_) => {}
            }
        }
        for iv in base.excluded.iter() {
            sql.push(format!(
                "DELETE FROM {target} WHERE {};",
                crate::engine::window_predicate(None, tc, iv)
            ));
        }
        for p in &parts {
            sql.push(format!(
                "INSERT INTO {target} BY NAME SELECT * FROM {}{};",
                data_table(&p.table),
                keep_out(p)
            ));
        }
        for p in parts.iter().chain(&replaced) {
            sql.push(format!("DROP TABLE {};", data_table(&p.table)));
        }
        // Recreated so that new columns show, in the model's order (those
        // added to the table went last).
        sql.push(format!(
            "CREATE OR REPLACE VIEW {main} AS SELECT {} FROM {target};",
            columns
                .iter()
                .map(|(c, _)| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if published.parts.is_some() {
            sql.push(format!("DROP VIEW IF EXISTS {relation};"));
        }
        return Ok(Kept {
            relation: base.table,
            parts: None,
        });
    }
    let mut selects: Vec<String> = Vec::new();
    for p in &parts {
        let have = if p.table == staged.table {
            staged.columns
        } else {
            columns_of(&p.table)?
        };
        let has: BTreeMap<String, &String> =
            have.iter().map(|(c, _)| (c.to_lowercase(), c)).collect();
        let list: Vec<String> = columns
            .iter()
            .map(|(col, ty)| match has.get(&col.to_lowercase()) {
                Some(&c) if c == col => quote_ident(col),
                Some(c) => format!("{} AS {}", quote_ident(c), quote_ident(col)),
                None => format!("CAST(NULL AS {ty}) AS {}", quote_ident(col)),
            })
            .collect();
        selects.push(format!(
            "SELECT {} FROM {}{}",
            list.join(", "),
            data_table(&p.table),
            keep_out(p)
        ));
    }
    let view = parts_view(model.key(), &parts);
    sql.push(format!(
        "CREATE OR REPLACE VIEW {} AS {};",
        data_table(&view),
        selects.join(" UNION ALL ")
    ));
    sql.push(format!(
        "CREATE OR REPLACE VIEW {main} AS SELECT * FROM {};",
        data_table(&view)
    ));
    if published.parts.is_some() && published.table != view {
        sql.push(format!("DROP VIEW IF EXISTS {relation};"));
    }
    for p in &replaced {
        sql.push(format!("DROP TABLE {};", data_table(&p.table)));
    }
    Ok(Kept {
        relation: view,
        parts: Some(parts),
    })
}

fn table_names(s: &dyn Session, schema: &str) -> Result<Vec<String>> {
    Ok(s.query(&format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = {} AND table_type = 'BASE TABLE'",
        quote_str(schema)
    ))?
    .rows
    .iter()
    .filter_map(|r| r[0].to_text())
    .collect())
}

/// What state records of the run.
#[allow(clippy::too_many_arguments)]
pub(super) fn state_writes(
    ws: &Workspace,
    prepared: &Prepared,
    work: &BTreeMap<NodeId, &ModelWork>,
    staging: &Staging,
    results: &HashMap<String, Staged>,
    staged_columns: &BTreeMap<NodeId, Vec<(String, String)>>,
    data_tables: &BTreeMap<NodeId, String>,
    run: &RunInfo,
) -> StateWrites {
    let state = &prepared.observed.state;
    let post = post_run(ws, prepared, &staging.tasks);
    let mut w = StateWrites::default();
    for name in &prepared.plan.removed {
        w.remove_model(name);
    }
    for v in post.extra_versions.iter().chain(prepared.versions.iter()) {
        if state.version(v.name.key(), &v.fingerprint).is_none() {
            w.version(v, run.run_id);
        }
    }
    for (id, v) in prepared.versions.iter().enumerate() {
        let key = ws.dag.nodes[id].name.key();
        let published = state.models.get(key);
        let columns: Vec<String> = match staged_columns.get(&id) {
            Some(cols) => {
                let mut c: Vec<String> = published.map(|m| m.columns.clone()).unwrap_or_default();
                if staging.nodes[&id].mode == Mode::Full {
                    c.clear();
                }
                for (name, _) in cols {
                    let name = name.to_lowercase();
                    if !c.contains(&name) {
                        c.push(name);
                    }
                }
                c
            }
            None => published
                .map(|m| m.columns.clone())
                .unwrap_or_else(|| v.column_names()),
        };
        let table = data_tables
            .get(&id)
            .cloned()
            .or_else(|| published.map(|m| m.data_table.clone()))
            .unwrap_or_default();
        let table = if ws.dag.nodes[id].kind == NodeKind::Model(Kind::View) {
            String::new()
        } else {
            table
        };
        let unchanged = published.is_some_and(|m| {
            m.fingerprint == v.fingerprint
                && m.metadata == v.metadata
                && m.columns == columns
                && m.data_table == table
        });
        let touched = work.contains_key(&id) || staging.nodes.contains_key(&id);
        let is_model = ws.dag.nodes[id].kind.is_model();
        if !unchanged && (touched || !is_model || published.is_some()) {
            w.published(v, &columns, &table, run.run_id);
        }
    }
    // What each rebuilt model's intervals were is forgotten first (the models'
    // rows are apart, so all the deletes can go before all the inserts).
    let full = |id: NodeId, work: &ModelWork| {
        work.full || staging.nodes.get(&id).is_some_and(|s| s.mode == Mode::Full)
    };
    w.clear_all_intervals(
        work.iter()
            .filter(|&(&id, mw)| full(id, mw))
            .map(|(&id, _)| ws.dag.nodes[id].name.key()),
    );
    for (&id, work) in work.iter().filter(|&(&id, mw)| !full(id, mw)) {
        // Exactly the data replaced: the batches, aligned outward to the unit.
        let replaced = staging
            .nodes
            .get(&id)
            .map_or_else(|| work.intervals.clone(), |s| s.rebuilt.clone());
        w.clear_intervals(ws.dag.nodes[id].name.key(), &replaced, state);
    }
    let mut by_node: BTreeMap<NodeId, Vec<&Task>> = BTreeMap::new();
    for t in &staging.tasks {
        by_node.entry(t.node).or_default().push(t);
    }
    for &id in work.keys() {
        let key = ws.dag.nodes[id].name.key();
        let mine = by_node.remove(&id).unwrap_or_default();
        if mine.is_empty() {
            // A view: recorded as current over the whole history.
            let fp = prepared.versions[id].fingerprint.clone();
            w.interval(
                key,
                &record(
                    history(ws, id, prepared.now),
                    fp,
                    run.run_id,
                    &Staged::default(),
                ),
            );
        }
        for t in mine {
            let staged = results.get(&t.key).cloned().unwrap_or_default();
            let range = t.interval.unwrap_or_else(|| history(ws, id, prepared.now));
            let pieces = post
                .task_fp
                .get(&t.key)
                .cloned()
                .unwrap_or_else(|| vec![(range, prepared.versions[id].fingerprint.clone())]);
            // Rows and checksum are the batch's; pieces of it do not know theirs.
            let unknown = Staged {
                rows: -1,
                checksum: String::new(),
            };
            let measured = if pieces.len() == 1 { &staged } else { &unknown };
            for (piece, fp) in pieces {
                w.interval(key, &record(piece, fp, run.run_id, measured));
            }
        }
    }
    for (id, old) in &prepared.plan.rekey {
        w.rekey(
            ws.dag.nodes[*id].name.key(),
            old,
            &prepared.versions[*id].fingerprint,
        );
    }
    for (key, snap) in &prepared.observed.sources {
        if state.sources.get(key) != Some(snap) {
            w.source_snapshot(key, snap, run.run_id);
        }
    }
    for (key, cols) in &prepared.observed.schemas {
        let types = prepared.observed.types.get(key);
        if state.schemas.get(key) != Some(cols)
            || types.is_some_and(|t| state.schema_types.get(key) != Some(t))
        {
            w.schema(key, cols, types.map_or(&[][..], Vec::as_slice));
        }
    }
    // Late data and restatements reaching models outside the scope would be
    // forgotten once the sources' snapshots are updated: record them.
    for left in prepared
        .plan
        .out_of_scope
        .iter()
        .filter(|w| !run.settled.contains(&w.node))
    {
        let key = left.name.key();
        for r in &left.reasons {
            let (k, reason, set) = (&r.change, &r.text, &r.intervals);
            if !matches!(k, ChangeKind::SourceChanged | ChangeKind::Restate) {
                continue;
            }
            let set = if set.is_empty() {
                IntervalSet::single(history(ws, left.node, prepared.now))
            } else {
                set.clone()
            };
            // One record per (model, interval, cause): what is pending already stays as it is.
            let recorded = IntervalSet::from_intervals(
                state
                    .pending
                    .get(key)
                    .into_iter()
                    .flatten()
                    .filter(|p| p.change == k.as_str())
                    .map(|p| p.interval),
            );
            for iv in set.subtract(&recorded).iter() {
                w.pending(
                    key,
                    &PendingRecord {
                        interval: *iv,
                        change: k.as_str().to_string(),
                        reason: reason.clone(),
                        run_id: run.run_id.to_string(),
                    },
                );
            }
        }
    }
    let mut rows_by_model: BTreeMap<String, i64> = BTreeMap::new();
    for t in &staging.tasks {
        if let Some(r) = results.get(&t.key) {
            *rows_by_model
                .entry(ws.dag.nodes[t.node].name.to_string())
                .or_default() += r.rows;
        }
    }
    let built: Vec<ModelWork> = prepared
        .plan
        .models
        .iter()
        .filter(|m| work.contains_key(&m.node))
        .cloned()
        .collect();
    w.run(
        run.run_id,
        run.seq,
        run.started,
        now(),
        "published",
        run.command,
        &user(),
        &crate::render::plan_json(ws, &prepared.plan),
        &serde_json::json!({
            "models": work.len(),
            "intervals": prepared.plan.interval_count(&built, ws),
            "batches": staging.tasks.len(),
            "rows": rows_by_model.values().sum::<i64>(),
            "rows_by_model": rows_by_model,
            "cutoff": crate::render::cutoffs_json(run.cutoffs),
            "skipped_audits": run.skipped,
            "scope": run.scope,
        }),
    );
    if let Some(report) = run.validation {
        w.validation(run.run_id, report);
    }
    // An accepted schema drift is a decision: who accepted what, and when.
    for (key, drift) in &prepared.observed.drift {
        if run.accepted.iter().any(|a| a.to_lowercase() == *key) {
            // The schema accepted, in place of a fingerprint.
            let schema: Vec<String> = prepared.observed.schemas[key]
                .iter()
                .zip(prepared.observed.types.get(key).into_iter().flatten())
                .map(|(c, t)| format!("{c} {t}"))
                .collect();
            w.decision(
                run.run_id,
                key,
                None,
                "accept_schema",
                &schema.join(", "),
                &user(),
                now(),
                &drift.message,
            );
        }
    }
    w
}

fn record(interval: Interval, fp: String, run_id: &str, staged: &Staged) -> IntervalRecord {
    IntervalRecord {
        interval,
        built_fingerprint: fp.clone(),
        fingerprint: fp,
        run_id: run_id.to_string(),
        rows: staged.rows,
        checksum: staged.checksum.clone(),
    }
}

/// The fingerprints recorded for this run's data. A rebuilt batch is recorded
/// with its model's logic combined with the fingerprints of the parent data it
/// actually read: when a parent's data in that range is still under older logic
/// (its rebuild is outside the scope), the batch is recorded as built on that
/// older data, so the next plan finds it stale once the parent is rebuilt. A
/// view has no data of its own: what a batch reads through it is what the view
/// reads, under the view's logic.
struct PostRun {
    /// Task key → the intervals of its batch and the fingerprint to record
    /// for each (one piece unless parts of it read older data).
    task_fp: HashMap<String, Vec<(Interval, String)>>,
    /// Versions those fingerprints stand for that are not current versions.
    extra_versions: Vec<ModelVersion>,
}

fn post_run(ws: &Workspace, prepared: &Prepared, tasks: &[Task]) -> PostRun {
    let state = &prepared.observed.state;
    let current = &prepared.versions;
    let mut out = PostRun {
        task_fp: HashMap::new(),
        extra_versions: Vec::new(),
    };
    // Per node: the (interval, fingerprint) of its data after the run.
    let mut records: Vec<Vec<(Interval, String)>> = vec![Vec::new(); ws.dag.len()];
    let rekeyed: BTreeSet<(NodeId, &str)> = prepared
        .plan
        .rekey
        .iter()
        .map(|(n, f)| (*n, f.as_str()))
        .collect();
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let key = node.name.key();
        let mine: Vec<&Task> = tasks.iter().filter(|t| t.node == id).collect();
        let rebuilt = IntervalSet::from_intervals(mine.iter().filter_map(|t| t.interval));
        // Data of this node from earlier runs that stays.
        let mut kept: Vec<(Interval, String)> = if mine.iter().any(|t| t.interval.is_none()) {
            Vec::new()
        } else {
            state
                .intervals
                .get(key)
                .into_iter()
                .flatten()
                .flat_map(|r| {
                    let fp = if rekeyed.contains(&(id, r.fingerprint.as_str())) {
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
        let config = ws.model(id).map(|(f, _)| &f.config);
        let window = config.map_or(1, |c| c.window);
        let unit = config.and_then(|c| c.unit);
        // What an interval reads: itself, and `window - 1` units before it.
        let reads = |iv: Interval| {
            let start = unit.map_or(iv.start(), |u| u.add(iv.start(), -(i64::from(window) - 1)));
            Interval::new(start, iv.end()).unwrap_or(iv)
        };
        for t in &mine {
            let fp = read_fp(
                ws,
                prepared,
                &records,
                id,
                t.interval.map(reads),
                &mut out.extra_versions,
            );
            let pieces = match (t.interval, unit) {
                // Some of what the batch read is older data: each unit is
                // recorded with what it read, so that only the units that read
                // the older data are found stale once it is rebuilt.
                (Some(iv), Some(u)) if fp != current[id].fingerprint => {
                    let mut pieces: Vec<(Interval, String)> = Vec::new();
                    for unit_iv in IntervalSet::single(iv).units(u) {
                        let fp = read_fp(
                            ws,
                            prepared,
                            &records,
                            id,
                            Some(reads(unit_iv)),
                            &mut out.extra_versions,
                        );
                        match pieces.last_mut() {
                            Some((last, last_fp))
                                if *last_fp == fp && last.end() == unit_iv.start() =>
                            {
                                *last =
                                    Interval::new(last.start(), unit_iv.end()).expect("ordered");
                            }
                            _ => pieces.push((unit_iv, fp)),
                        }
                    }
                    pieces
                }
                _ => vec![(
                    t.interval.unwrap_or_else(|| history(ws, id, prepared.now)),
                    fp,
                )],
            };
            kept.extend(pieces.iter().cloned());
            out.task_fp.insert(t.key.clone(), pieces);
        }
        records[id] = kept;
    }
    out
}

/// The fingerprint of `node`'s logic over the parent data it reads in `range`
/// (all of it when None) after the run.
fn read_fp(
    ws: &Workspace,
    prepared: &Prepared,
    records: &[Vec<(Interval, String)>],
    node: NodeId,
    range: Option<Interval>,
    extra: &mut Vec<ModelVersion>,
) -> String {
    let current = &prepared.versions[node];
    let parents: BTreeMap<String, String> = ws
        .dag
        .parents(node)
        .into_iter()
        .map(|p| {
            let fp = data_fp(ws, prepared, records, node, p, range, extra);
            (ws.dag.nodes[p].name.key().to_string(), fp)
        })
        .collect();
    if parents == current.parents {
        return current.fingerprint.clone();
    }
    let v = current.with_parents(parents);
    let fp = v.fingerprint.clone();
    if !extra.iter().any(|x| x.fingerprint == fp) {
        extra.push(v);
    }
    fp
}

/// The fingerprint of the data of `parent` that `reader` sees in `range` after
/// the run: the one recorded there, or, where several are, one that is not
/// current and whose change reaches the reader, so that the reader is found
/// stale once that data is rebuilt. A view's data is what it reads.
fn data_fp(
    ws: &Workspace,
    prepared: &Prepared,
    records: &[Vec<(Interval, String)>],
    reader: NodeId,
    parent: NodeId,
    range: Option<Interval>,
    extra: &mut Vec<ModelVersion>,
) -> String {
    let current = &prepared.versions;
    let cur = &current[parent].fingerprint;
    match ws.dag.nodes[parent].kind {
        NodeKind::Source | NodeKind::Seed => cur.clone(),
        NodeKind::Model(Kind::View) => read_fp(ws, prepared, records, parent, range, extra),
        NodeKind::Model(_) => {
            let stale: Vec<&String> = records[parent]
                .iter()
                .filter(|(iv, _)| range.is_none_or(|r| r.intersect(iv).is_some()))
                .map(|(_, fp)| fp)
                .filter(|fp| *fp != cur)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if stale.len() <= 1 {
                return stale
                    .first()
                    .map_or_else(|| cur.clone(), |fp| (*fp).clone());
            }
            let lookup = WithExtra {
                versions: crate::plan::Versions::new(&prepared.observed.state, current),
                extra,
            };
            let mut comparer = crate::change::Comparer::new(&lookup);
            stale
                .iter()
                .find(|fp| comparer.reaches(fp, &current[parent], &current[reader]))
                .unwrap_or(&stale[0])
                .to_string()
        }
    }
}

/// State's and the current versions, and the versions this run records anew.
struct WithExtra<'a> {
    versions: crate::plan::Versions<'a>,
    extra: &'a [ModelVersion],
}

impl crate::change::VersionLookup for WithExtra<'_> {
    fn version(&self, model: &str, fingerprint: &str) -> Option<&ModelVersion> {
        self.versions.version(model, fingerprint).or_else(|| {
            self.extra
                .iter()
                .find(|v| v.fingerprint == fingerprint && v.name.key() == model)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(intervals: &[(&str, &str)]) -> IntervalSet {
        IntervalSet::from_intervals(
            intervals
                .iter()
                .map(|(a, b)| Interval::parse(a, b).expect("interval")),
        )
    }

    fn part(table: &str, covers: Option<IntervalSet>, excluded: IntervalSet) -> DataPart {
        DataPart {
            table: table.to_string(),
            covers,
            excluded,
        }
    }

    #[test]
    fn a_first_partial_rebuild_keeps_the_table_and_hides_its_intervals_there() {
        let march = set(&[("2024-03-01", "2024-04-01")]);
        let next = next_parts(
            Published {
                table: "m__a",
                parts: None,
            },
            "m__b",
            &march,
        );
        assert!(next.replaced.is_empty());
        assert_eq!(
            next.kept,
            vec![
                part("m__a", None, march.clone()),
                part("m__b", Some(march.clone()), IntervalSet::new()),
            ]
        );
    }

    #[test]
    fn a_part_every_row_of_which_is_rebuilt_again_is_replaced() {
        let march = set(&[("2024-03-01", "2024-04-01")]);
        let before = [
            part("m__a", None, march.clone()),
            part("m__b", Some(march.clone()), IntervalSet::new()),
        ];
        let published = Published {
            table: "m__parts_1",
            parts: Some(&before),
        };
        // The same month: the March part goes, the first table hides the same.
        let again = next_parts(published, "m__c", &march);
        let tables = |parts: &[DataPart]| parts.iter().map(|p| p.table.clone()).collect::<Vec<_>>();
        assert_eq!(tables(&again.replaced), ["m__b"]);
        assert_eq!(
            again.kept,
            vec![
                before[0].clone(),
                part("m__c", Some(march.clone()), IntervalSet::new()),
            ]
        );
        // Days inside it: the March part stays, without them.
        let days = set(&[("2024-03-10", "2024-03-20")]);
        let inside = next_parts(published, "m__d", &days);
        assert!(inside.replaced.is_empty());
        assert_eq!(inside.kept[1].excluded, days);
        assert_eq!(inside.kept[0].excluded, march);
        // A wider range: the March part goes; the first table hides all of it,
        // and a part's hidden intervals never reach past what it holds.
        let spring = set(&[("2024-02-01", "2024-05-01")]);
        let wider = next_parts(published, "m__e", &spring);
        assert_eq!(tables(&wider.replaced), ["m__b"]);
        assert_eq!(wider.kept[0].excluded, spring);
        assert_eq!(wider.kept.len(), 2);
    }
}
