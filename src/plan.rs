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
use serde::Serialize;

use crate::change::{Category, Comparer, VersionLookup};
use crate::config::Kind;
use crate::fingerprint::ModelVersion;
use crate::graph::{NodeId, NodeKind};
use crate::interval::{Interval, IntervalSet, Unit, expected, last_complete};
use crate::state::{SourceSnapshot, State};
use crate::workspace::Workspace;

/// Why a model has work, in increasing order of precedence when several apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Missing,
    SourceChanged,
    Restate,
    Indirect,
    NonBreaking,
    Breaking,
    New,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Missing => "missing",
            ChangeKind::SourceChanged => "source_changed",
            ChangeKind::Restate => "restate",
            ChangeKind::Indirect => "indirect",
            ChangeKind::NonBreaking => "non_breaking",
            ChangeKind::Breaking => "breaking",
            ChangeKind::New => "new",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        [
            ChangeKind::Missing,
            ChangeKind::SourceChanged,
            ChangeKind::Restate,
            ChangeKind::Indirect,
            ChangeKind::NonBreaking,
            ChangeKind::Breaking,
            ChangeKind::New,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Data changes flow down the DAG as ranges; logic changes go through lineage.
    fn propagates_as_data(self) -> bool {
        matches!(
            self,
            ChangeKind::New | ChangeKind::Missing | ChangeKind::SourceChanged | ChangeKind::Restate
        )
    }
}

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
    pub name: String,
    pub kind: Kind,
    pub change: ChangeKind,
    pub reason: String,
    /// Columns changed by the model's own change or reached from its parents.
    pub columns: Vec<String>,
    /// Rebuild the whole table / recreate the view.
    pub full: bool,
    /// Intervals to build (incremental models).
    pub intervals: IntervalSet,
    /// Every reason that applies, by kind, with the intervals it covers.
    pub reasons: Vec<(ChangeKind, String, IntervalSet)>,
    /// For a change of the model's own logic: the fingerprint it changed from.
    pub from_fingerprint: Option<String>,
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
                .map(|v| ((v.name.to_lowercase(), v.fingerprint.clone()), v))
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
                        .map(|(k, r, s)| (*k, r.clone(), s.intersect(&rest)))
                        .filter(|(_, _, s)| !s.is_empty())
                        .collect(),
                    ..w
                })
            }
        };
        plan.out_of_scope.extend(left);
    }
    let known: BTreeSet<String> = ws.dag.nodes.iter().map(|n| n.name.to_lowercase()).collect();
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
    let mut flows: Vec<Flow> = vec![Flow::default(); ws.dag.len()];
    let mut out = Walk {
        work: Vec::new(),
        rekey: Vec::new(),
        metadata_only: Vec::new(),
        direct: BTreeSet::new(),
    };
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        let key = node.name.to_lowercase();
        let version = &current[id];
        let kind = match node.kind {
            NodeKind::Source | NodeKind::Seed => {
                let empty = SourceSnapshot::default();
                let before = state.sources.get(&key).unwrap_or(&empty);
                let now = sources_now.get(&key).unwrap_or(before);
                let (whole, units) = changed_source_units(before, now);
                // A changed definition (path, table, time column) reads other data.
                let redefined = state
                    .models
                    .get(&key)
                    .is_some_and(|p| p.fingerprint != version.fingerprint);
                flows[id] = Flow {
                    full: whole || redefined,
                    set: units,
                    kind: Some(ChangeKind::SourceChanged),
                    reason: if redefined {
                        format!("source `{}` is defined differently", node.name)
                    } else {
                        format!("{} `{}` changed", node.kind.as_str(), node.name)
                    },
                };
                continue;
            }
            NodeKind::Model(k) => k,
        };
        let in_scope = scope.is_none_or(|s| s.contains(&id));
        let published = state.models.get(&key);
        let records = state.intervals.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let mut reasons: Vec<(ChangeKind, String, Option<IntervalSet>)> = Vec::new();
        let mut columns = BTreeSet::new();
        let mut from_fingerprint: Option<String> = None;

        // Logic: compare each group of built intervals with the current version.
        let universe = universe(ws, id, options.now);
        let mut fps: Vec<&str> = records.iter().map(|r| r.fingerprint.as_str()).collect();
        fps.sort_unstable();
        fps.dedup();
        for fp in fps {
            let change = comparer.compare(fp, version);
            // Built intervals outside the model's history (its start moved) are not rebuilt.
            let group = universe.as_ref().map(|(_, u)| {
                IntervalSet::from_intervals(
                    records
                        .iter()
                        .filter(|r| r.fingerprint == fp)
                        .map(|r| r.interval),
                )
                .intersect(u)
            });
            if change.rebuild {
                let ck = match change.category {
                    Category::Breaking => ChangeKind::Breaking,
                    Category::NonBreaking => ChangeKind::NonBreaking,
                    _ => ChangeKind::Indirect,
                };
                if matches!(ck, ChangeKind::Breaking | ChangeKind::NonBreaking) {
                    out.direct.insert(id);
                    from_fingerprint.get_or_insert_with(|| fp.to_string());
                }
                match &change.affected {
                    crate::change::Affected::Columns(c) => columns.extend(c.iter().cloned()),
                    crate::change::Affected::All(_) => columns.extend(version.column_names()),
                    crate::change::Affected::None => {}
                }
                columns.extend(change.added.iter().cloned());
                reasons.push((ck, change.reason.clone(), group));
            } else if fp != version.fingerprint
                && !out.rekey.iter().any(|(n, f)| *n == id && f == fp)
            {
                out.rekey.push((id, fp.to_string()));
                if change.category == Category::MetadataOnly {
                    out.metadata_only.push((id, change.reason.clone()));
                }
            }
        }
        if let Some(p) = published
            && p.fingerprint == version.fingerprint
            && p.metadata != version.metadata
        {
            out.metadata_only.push((
                id,
                "only metadata changed (description, audits, destinations, ...)".to_string(),
            ));
        }

        // Data: missing intervals, parents' data changes, pending work, restatements.
        let is_new = published.is_none() && records.is_empty();
        if let Some((_, u)) = &universe {
            let missing = u.subtract(&state.built(&key));
            if !missing.is_empty() {
                let (k, why) = if is_new {
                    (ChangeKind::New, "new model".to_string())
                } else {
                    (ChangeKind::Missing, "never built".to_string())
                };
                reasons.push((k, why, Some(missing)));
            }
        } else if is_new {
            reasons.push((ChangeKind::New, "new model".to_string(), None));
        } else if records.is_empty() {
            reasons.push((ChangeKind::Missing, "never built".to_string(), None));
        }
        for parent in ws.dag.parents(id) {
            let flow = &flows[parent];
            if flow.is_empty() {
                continue;
            }
            let k = flow.kind.unwrap_or(ChangeKind::SourceChanged);
            let parent_node = &ws.dag.nodes[parent];
            let why = if parent_node.kind.is_model() {
                format!("{} (through {})", flow.reason, parent_node.name)
            } else {
                flow.reason.clone()
            };
            match (&universe, flow.full) {
                (Some((_, u)), true) => reasons.push((k, why, Some(u.clone()))),
                (Some((unit, u)), false) => {
                    let window = ws.model(id).map_or(1, |(f, _)| f.config.window);
                    let reach = flow
                        .set
                        .extend_end(*unit, window)
                        .align_outward(*unit)
                        .intersect(u);
                    if !reach.is_empty() {
                        reasons.push((k, why, Some(reach)));
                    }
                }
                (None, _) if kind == Kind::Table => reasons.push((k, why, None)),
                // A view holds no data: it passes its parents' changes through.
                (None, _) => {}
            }
        }
        for p in state.pending.get(&key).into_iter().flatten() {
            let k = ChangeKind::parse(&p.change).unwrap_or(ChangeKind::SourceChanged);
            let set = universe.as_ref().map(|_| IntervalSet::single(p.interval));
            reasons.push((
                k,
                format!("left stale by run {}: {}", p.run_id, p.reason),
                set,
            ));
        }
        // A restatement is asked for the selected models; the unscoped pass
        // applies it there too and lets it flow to what reads them.
        let restated = options.selected.as_ref().is_none_or(|s| s.contains(&id));
        if options.backfill && restated && kind != Kind::View {
            let set = universe.as_ref().map(|(unit, u)| match &options.range {
                Some(r) => u.intersect(&IntervalSet::single(*r).align_outward(*unit)),
                None => u.clone(),
            });
            if set.as_ref().is_none_or(|s| !s.is_empty()) {
                reasons.push((
                    ChangeKind::Restate,
                    "restated by --backfill".to_string(),
                    set,
                ));
            }
        }

        // Scope: which of this work is scheduled now.
        let reasons: Vec<(ChangeKind, String, Option<IntervalSet>)> = reasons
            .into_iter()
            .filter_map(|(k, r, set)| match (set, scope) {
                (set, None) => Some((k, r, set)),
                (_, Some(_)) if !in_scope => None,
                (Some(s), Some(_)) => {
                    // A range covers whole units of the model: a monthly model
                    // cannot rebuild half a month.
                    let s = match (&options.range, &universe) {
                        (Some(range), Some((unit, _))) => {
                            s.intersect(&IntervalSet::single(*range).align_outward(*unit))
                        }
                        _ => s,
                    };
                    (!s.is_empty()).then_some((k, r, Some(s)))
                }
                (None, Some(_)) => Some((k, r, None)),
            })
            .collect();

        let view_changed = kind == Kind::View
            && reasons.iter().any(|(k, _, _)| {
                matches!(
                    k,
                    ChangeKind::New
                        | ChangeKind::Breaking
                        | ChangeKind::NonBreaking
                        | ChangeKind::Indirect
                )
            });
        // Flow to children: data changes of this model's scheduled work, and for
        // views everything their parents pass on.
        let mut flow = Flow::default();
        if kind == Kind::View {
            for parent in ws.dag.parents(id) {
                let f = &flows[parent];
                flow.full |= f.full;
                flow.set = flow.set.union(&f.set);
                if flow.kind.is_none() && !f.is_empty() {
                    flow.kind = f.kind;
                    flow.reason = f.reason.clone();
                }
            }
        }
        for (k, r, set) in &reasons {
            if !k.propagates_as_data() {
                continue;
            }
            match set {
                Some(s) => flow.set = flow.set.union(s),
                None => flow.full = true,
            }
            // A new model's data reaches its readers as new upstream intervals.
            let k = if *k == ChangeKind::New {
                ChangeKind::Missing
            } else {
                *k
            };
            if flow.kind.is_none_or(|fk| k > fk) {
                flow.kind = Some(k);
                // The root cause travels down unchanged; each child names the parent it reads.
                flow.reason = match k {
                    ChangeKind::Missing => "new upstream intervals".to_string(),
                    _ => r.split(" (through ").next().unwrap_or(r).to_string(),
                };
            }
        }
        flows[id] = flow;

        if reasons.is_empty() || (kind == Kind::View && !view_changed) {
            continue;
        }
        let top = reasons.iter().map(|(k, _, _)| *k).max().expect("non-empty");
        let reason = reasons
            .iter()
            .filter(|(k, _, _)| *k == top)
            .map(|(_, r, _)| r.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join("; ");
        let full = kind != Kind::Incremental;
        let intervals = if full {
            IntervalSet::new()
        } else {
            reasons
                .iter()
                .filter_map(|(_, _, s)| s.clone())
                .fold(IntervalSet::new(), |a, s| a.union(&s))
        };
        if !full && intervals.is_empty() {
            continue;
        }
        out.work.push(ModelWork {
            node: id,
            name: node.name.clone(),
            kind,
            change: top,
            reason,
            columns: columns.into_iter().collect(),
            full,
            intervals,
            reasons: reasons
                .into_iter()
                .map(|(k, r, s)| (k, r, s.unwrap_or_default()))
                .collect(),
            from_fingerprint,
        });
    }
    // One entry per model, even when several groups of its intervals say so.
    out.metadata_only.sort_by_key(|(n, _)| *n);
    out.metadata_only.dedup_by_key(|(n, _)| *n);
    out
}
