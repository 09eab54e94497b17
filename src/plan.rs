//! Planning: the minimal set of (model, interval) that is stale, and why.
//!
//! Pure: it reads the workspace, the current versions, state and the current
//! source snapshots, and touches neither the database nor the clock.
//!
//! `stale = missing ∪ built with a fingerprint whose change reaches the model ∪
//! source data changed since it was built ∪ restated (--backfill) ∪ pending`.
//! Logic changes reach descendants only through column lineage (see
//! [`crate::change`]); data changes (missing, late or repaired source data,
//! restatements) flow down the DAG as date ranges, extended by each child's
//! window and aligned to its unit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;

pub use crate::change::ChangeKind;
use crate::change::{Affected, Comparer, VersionLookup};
use crate::config::Kind;
use crate::fingerprint::ModelVersion;
use crate::graph::{NodeId, NodeKind};
use crate::interval::{Interval, IntervalSet, Unit, expected, last_complete};
use crate::name::ModelName;
use crate::state::{SourceSnapshot, State};
use crate::workspace::Workspace;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Models in scope (from --select / --exclude); `None` = every model.
    pub selected: Option<BTreeSet<NodeId>>,
    /// `--start/--end`, half-open.
    pub range: Option<Interval>,
    /// `--backfill`: restate the scope even where nothing changed.
    pub backfill: bool,
    /// The end of history: the project's `end`, or now.
    pub now: NaiveDateTime,
}

/// Work on one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelWork {
    pub node: NodeId,
    pub name: ModelName,
    pub kind: Kind,
    pub change: ChangeKind,
    pub reason: String,
    /// Columns changed by the model's own change or reached from its parents.
    pub columns: Vec<String>,
    /// Rebuild the whole table / recreate the view.
    pub full: bool,
    /// Intervals to build (incremental models).
    pub intervals: IntervalSet,
    /// Every reason that applies, with the intervals it covers.
    pub reasons: Vec<Reason>,
    /// For a change of the model's own logic: the fingerprint it changed from.
    pub from_fingerprint: Option<String>,
}

/// One reason a model has work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub change: ChangeKind,
    pub text: String,
    /// The intervals it covers; empty for a table or view (all of it).
    pub intervals: IntervalSet,
    /// The parent whose data change this is (a change that flowed down), or
    /// None for the model's own reasons (its logic, missing intervals,
    /// pending work, a restatement).
    pub parent: Option<NodeId>,
}

/// The plan for a run.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Models with work in scope, in topological order.
    pub models: Vec<ModelWork>,
    /// Work outside the scope that stays stale.
    pub out_of_scope: Vec<ModelWork>,
    /// Models whose intervals are current under their new fingerprint because
    /// the change does not reach them: (node, old fingerprint).
    pub rekey: Vec<(NodeId, String)>,
    /// Models whose only change is metadata: (node, reason).
    pub metadata_only: Vec<(NodeId, String)>,
    /// Models in state that the project no longer has.
    pub removed: Vec<String>,
    /// Models whose own logic changed (breaking or non-breaking).
    pub direct: BTreeSet<NodeId>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty() && self.removed.is_empty()
    }

    pub fn interval_count(&self, models: &[ModelWork], ws: &Workspace) -> i64 {
        models
            .iter()
            .map(|m| {
                if m.full {
                    1
                } else {
                    let unit = ws
                        .model(m.node)
                        .and_then(|(f, _)| f.config.unit)
                        .unwrap_or(Unit::Day);
                    m.intervals.count_units(unit)
                }
            })
            .sum()
    }
}

/// Current versions and state versions together.
pub struct Versions<'a> {
    state: &'a State,
    current: HashMap<(String, String), &'a ModelVersion>,
}

impl<'a> Versions<'a> {
    pub fn new(state: &'a State, current: &'a [ModelVersion]) -> Self {
        Versions {
            state,
            current: current
                .iter()
                .map(|v| ((v.name.key().to_string(), v.fingerprint.clone()), v))
                .collect(),
        }
    }
}

impl VersionLookup for Versions<'_> {
    fn version(&self, model: &str, fingerprint: &str) -> Option<&ModelVersion> {
        self.current
            .get(&(model.to_string(), fingerprint.to_string()))
            .copied()
            .or_else(|| self.state.version(model, fingerprint))
    }
}

/// Data staleness a node passes to its children.
#[derive(Debug, Clone, Default)]
struct Flow {
    full: bool,
    set: IntervalSet,
    kind: Option<ChangeKind>,
    reason: String,
}

impl Flow {
    fn is_empty(&self) -> bool {
        !self.full && self.set.is_empty()
    }
}

/// The universe of an incremental model: every complete unit from its start to now.
pub fn universe(ws: &Workspace, node: NodeId, now: NaiveDateTime) -> Option<(Unit, IntervalSet)> {
    let (file, _) = ws.model(node)?;
    let unit = file.config.unit?;
    let start = file.config.start.unwrap_or(ws.project.config.project.start);
    let start = start.and_hms_opt(0, 0, 0).expect("midnight");
    Some((unit, expected(start, last_complete(now, unit), unit)))
}

/// A model's whole history to now: what a table or view covers.
pub fn history(ws: &Workspace, node: NodeId, now: NaiveDateTime) -> Interval {
    let start = ws
        .model(node)
        .and_then(|(f, _)| f.config.start)
        .unwrap_or(ws.project.config.project.start)
        .and_hms_opt(0, 0, 0)
        .expect("midnight");
    let end = last_complete(now, Unit::Day).max(start + chrono::Days::new(1));
    Interval::new(start, end).expect("start before end")
}

/// The end of history: `HUBFORGE_NOW` (tests, replays), else the project's `end`,
/// else the current time.
pub fn end_of_history(ws: &Workspace, clock_now: NaiveDateTime) -> NaiveDateTime {
    if let Some(t) = std::env::var("HUBFORGE_NOW")
        .ok()
        .and_then(|v| crate::interval::parse_point(&v).ok())
    {
        return t;
    }
    match ws.project.config.project.end {
        Some(end) => end.and_hms_opt(0, 0, 0).expect("midnight").min(clock_now),
        None => clock_now,
    }
}

/// Source units whose rows or content changed since the snapshot in state.
pub fn changed_source_units(before: &SourceSnapshot, now: &SourceSnapshot) -> (bool, IntervalSet) {
    if before == &SourceSnapshot::default() {
        // Never recorded: nothing to compare with; models built from it are
        // new or missing anyway.
        return (false, IntervalSet::new());
    }
    let whole_changed = before.whole.is_some() && before.whole != now.whole;
    let keys: BTreeSet<&Interval> = before.units.keys().chain(now.units.keys()).collect();
    let changed = keys
        .into_iter()
        .filter(|k| before.units.get(*k) != now.units.get(*k))
        .copied();
    (whole_changed, IntervalSet::from_intervals(changed))
}

/// Compute the plan.
pub fn plan(
    ws: &Workspace,
    current: &[ModelVersion],
    state: &State,
    sources_now: &BTreeMap<String, SourceSnapshot>,
    options: &PlanOptions,
) -> Plan {
    let versions = Versions::new(state, current);
    let mut comparer = Comparer::new(&versions);
    let unscoped = walk(
        ws,
        current,
        state,
        sources_now,
        options,
        None,
        &mut comparer,
    );
    let selected = options
        .selected
        .clone()
        .unwrap_or_else(|| (0..ws.dag.len()).collect());
    let scoped = walk(
        ws,
        current,
        state,
        sources_now,
        options,
        Some(&selected),
        &mut comparer,
    );

    let mut plan = Plan {
        models: scoped.work.clone(),
        rekey: scoped.rekey,
        metadata_only: scoped.metadata_only,
        direct: scoped.direct,
        ..Plan::default()
    };
    let scheduled: HashMap<NodeId, &ModelWork> = scoped.work.iter().map(|w| (w.node, w)).collect();
    for w in unscoped.work {
        let left = match scheduled.get(&w.node) {
            None => Some(w),
            Some(done) if done.full => None,
            Some(done) => {
                let rest = w.intervals.subtract(&done.intervals);
                (!rest.is_empty()).then(|| ModelWork {
                    intervals: rest.clone(),
                    reasons: w
                        .reasons
                        .iter()
                        .map(|r| Reason {
                            intervals: r.intervals.intersect(&rest),
                            ..r.clone()
                        })
                        .filter(|r| !r.intervals.is_empty())
                        .collect(),
                    ..w
                })
            }
        };
        plan.out_of_scope.extend(left);
    }
    let known: BTreeSet<String> = ws
        .dag
        .nodes
        .iter()
        .map(|n| n.name.key().to_string())
        .collect();
    plan.removed = state
        .models
        .keys()
        .filter(|m| !known.contains(*m))
        .cloned()
        .collect();
    plan
}

struct Walk {
    work: Vec<ModelWork>,
    rekey: Vec<(NodeId, String)>,
    metadata_only: Vec<(NodeId, String)>,
    direct: BTreeSet<NodeId>,
}

/// A reason while walking: its intervals are None for a table or view.
struct Pending {
    change: ChangeKind,
    text: String,
    set: Option<IntervalSet>,
    parent: Option<NodeId>,
}

impl Pending {
    fn own(change: ChangeKind, text: impl Into<String>, set: Option<IntervalSet>) -> Self {
        Pending {
            change,
            text: text.into(),
            set,
            parent: None,
        }
    }
}

/// What one pass over the DAG reads.
struct Inputs<'a> {
    ws: &'a Workspace,
    current: &'a [ModelVersion],
    state: &'a State,
    sources_now: &'a BTreeMap<String, SourceSnapshot>,
    options: &'a PlanOptions,
    scope: Option<&'a BTreeSet<NodeId>>,
}

/// One model being walked.
struct Here<'a> {
    id: NodeId,
    key: String,
    kind: Kind,
    version: &'a ModelVersion,
    /// Unit and every complete unit of its history (incremental models).
    universe: Option<(Unit, IntervalSet)>,
}

/// One pass over the DAG. With `scope`, only work on selected models inside the
/// range is scheduled and only scheduled data changes flow to children.
fn walk(
    ws: &Workspace,
    current: &[ModelVersion],
    state: &State,
    sources_now: &BTreeMap<String, SourceSnapshot>,
    options: &PlanOptions,
    scope: Option<&BTreeSet<NodeId>>,
    comparer: &mut Comparer,
) -> Walk {
    let input = Inputs {
        ws,
        current,
        state,
        sources_now,
        options,
        scope,
    };
    let mut flows: Vec<Flow> = vec![Flow::default(); ws.dag.len()];
    let mut out = Walk {
        work: Vec::new(),
        rekey: Vec::new(),
        metadata_only: Vec::new(),
        direct: BTreeSet::new(),
    };
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let kind = match node.kind {
            NodeKind::Source | NodeKind::Seed => {
                flows[id] = source_flow(&input, id);
                continue;
            }
            NodeKind::Model(k) => k,
        };
        let here = Here {
            id,
            key: node.name.key().to_string(),
            kind,
            version: &current[id],
            universe: universe(ws, id, options.now),
        };
        // 1. The model's logic against the logic each of its intervals was built with.
        let (mut reasons, columns, from_fingerprint) =
            logic_reasons(&input, &here, comparer, &mut out);
        // 2. Its data: missing intervals, parents' data changes, pending work, restatements.
        reasons.extend(data_reasons(&input, &here, &flows));
        // 3. What of it is scheduled now.
        let reasons = in_scope(&input, &here, reasons);
        // 4. What flows on to its children.
        flows[id] = flow_out(&input, &here, &reasons, &flows);
        // 5. The work.
        if let Some(w) = model_work(&here, node.name.clone(), reasons, columns, from_fingerprint) {
            out.work.push(w);
        }
    }
    // One entry per model, even when several groups of its intervals say so.
    out.metadata_only.sort_by_key(|(n, _)| *n);
    out.metadata_only.dedup_by_key(|(n, _)| *n);
    out
}

/// A source's or seed's changes since it was last read: late or repaired units,
/// a changed whole, or a new definition.
fn source_flow(input: &Inputs, id: NodeId) -> Flow {
    let node = &input.ws.dag.nodes[id];
    let key = node.name.key();
    let empty = SourceSnapshot::default();
    let before = input.state.sources.get(key).unwrap_or(&empty);
    let now = input.sources_now.get(key).unwrap_or(before);
    let (whole, units) = changed_source_units(before, now);
    // A changed definition (path, table, time column) reads other data.
    let redefined = input
        .state
        .models
        .get(key)
        .is_some_and(|p| p.fingerprint != input.current[id].fingerprint);
    Flow {
        full: whole || redefined,
        set: units,
        kind: Some(ChangeKind::SourceChanged),
        reason: if redefined {
            format!("source `{}` is defined differently", node.name)
        } else {
            format!("{} `{}` changed", node.kind.as_str(), node.name)
        },
    }
}

/// Compare each group of built intervals (by the fingerprint they were built
/// with) with the current version: the logic reasons, the columns they reach,
/// and the fingerprint a direct change changed from. Groups the change does
/// not reach are re-keyed; metadata-only changes are noted.
fn logic_reasons(
    input: &Inputs,
    here: &Here,
    comparer: &mut Comparer,
    out: &mut Walk,
) -> (Vec<Pending>, BTreeSet<String>, Option<String>) {
    let records = input
        .state
        .intervals
        .get(&here.key)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut reasons = Vec::new();
    let mut columns = BTreeSet::new();
    let mut from_fingerprint: Option<String> = None;
    let mut fps: Vec<&str> = records.iter().map(|r| r.fingerprint.as_str()).collect();
    fps.sort_unstable();
    fps.dedup();
    for fp in fps {
        let change = comparer.compare(fp, here.version);
        // Built intervals outside the model's history (its start moved) are not rebuilt.
        let group = here.universe.as_ref().map(|(_, u)| {
            IntervalSet::from_intervals(
                records
                    .iter()
                    .filter(|r| r.fingerprint == fp)
                    .map(|r| r.interval),
            )
            .intersect(u)
        });
        // A view holds no data: it is recreated only when its own definition
        // or its columns change; what it reads is followed through its parents.
        let view_indirect = here.kind == Kind::View && change.category == ChangeKind::Indirect;
        if change.rebuild && !view_indirect {
            if change.category.is_direct() {
                out.direct.insert(here.id);
                from_fingerprint.get_or_insert_with(|| fp.to_string());
            }
            match &change.affected {
                Affected::Columns(c) => columns.extend(c.iter().cloned()),
                Affected::All(_) => columns.extend(here.version.column_names()),
                Affected::None => {}
            }
            columns.extend(change.added.iter().cloned());
            reasons.push(Pending::own(change.category, change.reason.clone(), group));
        } else if fp != here.version.fingerprint
            && !out.rekey.iter().any(|(n, f)| *n == here.id && f == fp)
        {
            out.rekey.push((here.id, fp.to_string()));
            if change.category == ChangeKind::MetadataOnly {
                out.metadata_only.push((here.id, change.reason.clone()));
            }
        }
    }
    if let Some(p) = input.state.models.get(&here.key)
        && p.fingerprint == here.version.fingerprint
        && p.metadata != here.version.metadata
    {
        out.metadata_only.push((
            here.id,
            "only metadata changed (description, audits, destinations, ...)".to_string(),
        ));
    }
    (reasons, columns, from_fingerprint)
}

/// Data reasons: intervals never built, changes of parents' data (extended by
/// the model's window and aligned to its unit), work left pending by earlier
/// runs, and restatements asked for with `--backfill`.
fn data_reasons(input: &Inputs, here: &Here, flows: &[Flow]) -> Vec<Pending> {
    let (ws, state) = (input.ws, input.state);
    let mut reasons = Vec::new();
    let records = state.intervals.get(&here.key).map_or(0, Vec::len);
    let is_new = !state.models.contains_key(&here.key) && records == 0;
    if let Some((_, u)) = &here.universe {
        let missing = u.subtract(&state.built(&here.key));
        if !missing.is_empty() {
            reasons.push(if is_new {
                Pending::own(ChangeKind::New, "new model", Some(missing))
            } else {
                Pending::own(ChangeKind::Missing, "never built", Some(missing))
            });
        }
    } else if is_new {
        reasons.push(Pending::own(ChangeKind::New, "new model", None));
    } else if records == 0 {
        reasons.push(Pending::own(ChangeKind::Missing, "never built", None));
    }
    for parent in ws.dag.parents(here.id) {
        let flow = &flows[parent];
        if flow.is_empty() {
            continue;
        }
        let change = flow.kind.unwrap_or(ChangeKind::SourceChanged);
        let parent_node = &ws.dag.nodes[parent];
        let text = if parent_node.kind.is_model() {
            format!("{} (through {})", flow.reason, parent_node.name)
        } else {
            flow.reason.clone()
        };
        let set = match (&here.universe, flow.full) {
            (Some((_, u)), true) => Some(u.clone()),
            (Some((unit, u)), false) => {
                let window = ws.model(here.id).map_or(1, |(f, _)| f.config.window);
                let reach = flow
                    .set
                    .extend_end(*unit, window)
                    .align_outward(*unit)
                    .intersect(u);
                if reach.is_empty() {
                    continue;
                }
                Some(reach)
            }
            (None, _) if here.kind == Kind::Table => None,
            // A view holds no data: it passes its parents' changes through.
            (None, _) => continue,
        };
        reasons.push(Pending {
            change,
            text,
            set,
            parent: Some(parent),
        });
    }
    for p in state.pending.get(&here.key).into_iter().flatten() {
        let change = ChangeKind::parse(&p.change).unwrap_or(ChangeKind::SourceChanged);
        let set = here
            .universe
            .as_ref()
            .map(|_| IntervalSet::single(p.interval));
        reasons.push(Pending::own(
            change,
            format!("left stale by run {}: {}", p.run_id, p.reason),
            set,
        ));
    }
    // A restatement is asked for the selected models; the unscoped pass
    // applies it there too and lets it flow to what reads them.
    let options = input.options;
    let restated = options
        .selected
        .as_ref()
        .is_none_or(|s| s.contains(&here.id));
    if options.backfill && restated && here.kind != Kind::View {
        let set = here
            .universe
            .as_ref()
            .map(|(unit, u)| match &options.range {
                Some(r) => u.intersect(&IntervalSet::single(*r).align_outward(*unit)),
                None => u.clone(),
            });
        if set.as_ref().is_none_or(|s| !s.is_empty()) {
            reasons.push(Pending::own(
                ChangeKind::Restate,
                "restated by --backfill",
                set,
            ));
        }
    }
    reasons
}

/// The reasons scheduled now: all of them without a scope; with one, those of
/// selected models, inside the range widened to whole units of the model (a
/// monthly model cannot rebuild half a month).
fn in_scope(input: &Inputs, here: &Here, reasons: Vec<Pending>) -> Vec<Pending> {
    let Some(scope) = input.scope else {
        return reasons;
    };
    if !scope.contains(&here.id) {
        return Vec::new();
    }
    reasons
        .into_iter()
        .filter_map(|r| match (&r.set, &input.options.range, &here.universe) {
            (Some(s), Some(range), Some((unit, _))) => {
                let s = s.intersect(&IntervalSet::single(*range).align_outward(*unit));
                (!s.is_empty()).then_some(Pending { set: Some(s), ..r })
            }
            (Some(s), _, _) if s.is_empty() => None,
            _ => Some(r),
        })
        .collect()
}

/// Data staleness this model passes to its children: the data changes of its
/// scheduled work, and for a view everything its parents pass on.
fn flow_out(input: &Inputs, here: &Here, reasons: &[Pending], flows: &[Flow]) -> Flow {
    let mut flow = Flow::default();
    if here.kind == Kind::View {
        for parent in input.ws.dag.parents(here.id) {
            let f = &flows[parent];
            flow.full |= f.full;
            flow.set = flow.set.union(&f.set);
            if flow.kind.is_none() && !f.is_empty() {
                flow.kind = f.kind;
                flow.reason = f.reason.clone();
            }
        }
    }
    for r in reasons {
        if !r.change.propagates_as_data() {
            continue;
        }
        match &r.set {
            Some(s) => flow.set = flow.set.union(s),
            None => flow.full = true,
        }
        // A new model's data reaches its readers as new upstream intervals.
        let k = if r.change == ChangeKind::New {
            ChangeKind::Missing
        } else {
            r.change
        };
        if flow.kind.is_none_or(|fk| k > fk) {
            flow.kind = Some(k);
            // The root cause travels down unchanged; each child names the parent it reads.
            flow.reason = match k {
                ChangeKind::Missing => "new upstream intervals".to_string(),
                _ => r
                    .text
                    .split(" (through ")
                    .next()
                    .unwrap_or(&r.text)
                    .to_string(),
            };
        }
    }
    flow
}

/// The model's work from its scheduled reasons, if any: a view only when its
/// own definition changed; an incremental model only when intervals remain.
fn model_work(
    here: &Here,
    name: ModelName,
    reasons: Vec<Pending>,
    columns: BTreeSet<String>,
    from_fingerprint: Option<String>,
) -> Option<ModelWork> {
    let view_changed = here.kind == Kind::View
        && reasons.iter().any(|r| {
            matches!(
                r.change,
                ChangeKind::New | ChangeKind::Breaking | ChangeKind::NonBreaking
            )
        });
    if reasons.is_empty() || (here.kind == Kind::View && !view_changed) {
        return None;
    }
    let top = reasons.iter().map(|r| r.change).max().expect("non-empty");
    let reason = reasons
        .iter()
        .filter(|r| r.change == top)
        .map(|r| r.text.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join("; ");
    let full = here.kind != Kind::Incremental;
    let intervals = if full {
        IntervalSet::new()
    } else {
        reasons
            .iter()
            .filter_map(|r| r.set.clone())
            .fold(IntervalSet::new(), |a, s| a.union(&s))
    };
    if !full && intervals.is_empty() {
        return None;
    }
    Some(ModelWork {
        node: here.id,
        name,
        kind: here.kind,
        change: top,
        reason,
        columns: columns.into_iter().collect(),
        full,
        intervals,
        reasons: reasons
            .into_iter()
            .map(|r| Reason {
                change: r.change,
                text: r.text,
                intervals: r.set.unwrap_or_default(),
                parent: r.parent,
            })
            .collect(),
        from_fingerprint,
    })
}
