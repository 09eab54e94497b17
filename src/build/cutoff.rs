//! Early cutoff: a rebuilt table or interval whose content is identical to
//! what is published changes nothing for its readers, so the batches of
//! readers that were only stale because of that data are not built.
//!
//! The plan says, for every reason a model has work, which parent's data
//! change it comes from. While staging, once a node's batches are done their
//! checksums are compared with the published rows of the same intervals; when
//! a reader becomes ready, the batches it needs are those its own reasons
//! (logic, missing intervals, pending work, restatements) cover, and those
//! that read parent data that actually changed. The others are dropped, and
//! why is recorded. A view passes on what its parents' data did.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::stage::{Mode, Staged, Staging};
use super::{data_table, main_name};
use crate::config::Kind;
use crate::engine::{Dialect, Session};
use crate::error::Result;
use crate::graph::{NodeId, NodeKind};
use crate::interval::{Interval, IntervalSet, Unit};
use crate::plan::ModelWork;
use crate::state::State;
use crate::workspace::Workspace;

/// What a node's data does in this run, as its readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    /// Not known to be identical: readers build everything planned.
    Unknown,
    /// These intervals change; the rest is identical.
    Changed(IntervalSet),
}

impl Effect {
    fn none() -> Self {
        Effect::Changed(IntervalSet::new())
    }
}

/// Batches of one model not built because the data they read did not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutOff {
    pub model: String,
    /// The intervals not rebuilt; empty with `full` for a table.
    pub intervals: IntervalSet,
    pub full: bool,
    pub reason: String,
    /// A model outside the scope that is not left stale after all.
    pub outside_scope: bool,
}

/// The early-cutoff bookkeeping of one run.
pub(super) struct Cutoff<'a> {
    ws: &'a Workspace,
    state: &'a State,
    work: &'a BTreeMap<NodeId, &'a ModelWork>,
    /// Nodes whose change some reader's reason comes from.
    watched: BTreeSet<NodeId>,
    /// Per node staged in this run, once its batches are done.
    changed: BTreeMap<NodeId, Effect>,
    /// Tasks dropped, by index into the staging tasks.
    pub cut: BTreeSet<usize>,
    /// Nodes with every batch dropped: readers read the published data.
    pub skipped: BTreeSet<NodeId>,
    /// Nodes planned as a full rebuild that now replace some intervals only.
    pub partial: BTreeSet<NodeId>,
    decisions: Vec<CutOff>,
}

impl<'a> Cutoff<'a> {
    pub fn new(
        ws: &'a Workspace,
        state: &'a State,
        work: &'a BTreeMap<NodeId, &'a ModelWork>,
        out_of_scope: &[ModelWork],
    ) -> Self {
        // A parent is compared only when a reader could skip something
        // because of it: work the reader's own reasons cover is built anyway.
        let mut watched = BTreeSet::new();
        for w in work.values() {
            let own: Vec<&IntervalSet> = w
                .reasons
                .iter()
                .filter(|r| r.parent.is_none())
                .map(|r| &r.intervals)
                .collect();
            let own_all = w.full && !own.is_empty();
            let own = own.into_iter().fold(IntervalSet::new(), |a, s| a.union(s));
            for r in &w.reasons {
                if let Some(p) = r.parent
                    && !own_all
                    && (w.full || !r.intervals.subtract(&own).is_empty())
                {
                    watch(ws, p, &mut watched);
                }
            }
        }
        // Readers outside the scope would be left stale by a change of data:
        // when that data turns out identical, they are not.
        for w in out_of_scope {
            for r in &w.reasons {
                if let Some(p) = r.parent {
                    watch(ws, p, &mut watched);
                }
            }
        }
        Cutoff {
            ws,
            state,
            work,
            watched,
            changed: BTreeMap::new(),
            cut: BTreeSet::new(),
            skipped: BTreeSet::new(),
            partial: BTreeSet::new(),
            decisions: Vec::new(),
        }
    }

    /// The published data table of a model, if it has one.
    fn published(&self, id: NodeId) -> Option<&str> {
        let key = self.ws.dag.nodes[id].name.key();
        self.state
            .models
            .get(key)
            .map(|m| m.data_table.as_str())
            .filter(|t| !t.is_empty())
    }

    /// What `id`'s data does in this run, for its readers.
    fn effect(&self, id: NodeId) -> Effect {
        let node = &self.ws.dag.nodes[id];
        match node.kind {
            NodeKind::Source | NodeKind::Seed => Effect::Unknown,
            NodeKind::Model(Kind::View) => {
                let mut all = IntervalSet::new();
                for p in self.ws.dag.parents(id) {
                    match self.effect(p) {
                        Effect::Unknown => return Effect::Unknown,
                        Effect::Changed(s) => all = all.union(&s),
                    }
                }
                Effect::Changed(all)
            }
            NodeKind::Model(_) if self.skipped.contains(&id) => Effect::none(),
            NodeKind::Model(_) => match self.changed.get(&id) {
                Some(e) => e.clone(),
                None if self.work.contains_key(&id) => Effect::Unknown,
                None => Effect::none(),
            },
        }
    }

    /// Before the batches of `id` are dispatched: drop those of `pending`
    /// that only parent data which turned out identical made stale. `started`
    /// says whether some batch of the node already exists (reused).
    pub fn prune(
        &mut self,
        id: NodeId,
        staging: &Staging,
        pending: &mut Vec<usize>,
        started: bool,
    ) {
        let Some(work) = self.work.get(&id) else {
            return;
        };
        if work.kind == Kind::View
            || self.published(id).is_none()
            || !work.reasons.iter().any(|r| r.parent.is_some())
        {
            return;
        }
        let (file, _) = self.ws.model(id).expect("model");
        let unit = file.config.unit.unwrap_or(Unit::Day);
        let window = file.config.window;
        let mut needed = IntervalSet::new();
        let mut all = false;
        let mut quiet: BTreeSet<String> = BTreeSet::new();
        for r in &work.reasons {
            let effect = match r.parent {
                None => Effect::Unknown,
                Some(p) => self.effect(p),
            };
            match effect {
                Effect::Unknown if work.full || r.intervals.is_empty() => all = true,
                Effect::Unknown => needed = needed.union(&r.intervals),
                Effect::Changed(set) if set.is_empty() => {
                    quiet.insert(
                        self.ws.dag.nodes[r.parent.expect("a parent")]
                            .name
                            .to_string(),
                    );
                }
                Effect::Changed(_) if work.full => all = true,
                Effect::Changed(set) => {
                    let reach = set.extend_end(unit, window).align_outward(unit);
                    needed = needed.union(&r.intervals.intersect(&reach));
                    quiet.insert(
                        self.ws.dag.nodes[r.parent.expect("a parent")]
                            .name
                            .to_string(),
                    );
                }
            }
        }
        if all {
            return;
        }
        let tasks = &staging.tasks;
        let (keep, drop): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| {
            tasks[i]
                .interval
                .is_some_and(|iv| !needed.intersect(&IntervalSet::single(iv)).is_empty())
        });
        if drop.is_empty() {
            return;
        }
        let intervals = IntervalSet::from_intervals(drop.iter().filter_map(|&i| tasks[i].interval));
        self.decisions.push(CutOff {
            model: work.name.to_string(),
            full: work.full,
            intervals,
            reason: format!(
                "the data it reads from {} is identical to what was published",
                quiet.into_iter().collect::<Vec<_>>().join(", ")
            ),
            outside_scope: false,
        });
        self.cut.extend(drop);
        *pending = keep;
        if pending.is_empty() && !started {
            self.skipped.insert(id);
        } else if staging.nodes.get(&id).is_some_and(|s| s.mode == Mode::Full) {
            self.partial.insert(id);
        }
    }

    /// Whether the data of `id`, rebuilt in this run, is known to be
    /// identical to what was published.
    fn quiet(&self, id: NodeId) -> bool {
        self.skipped.contains(&id)
            || matches!(self.changed.get(&id), Some(Effect::Changed(s)) if s.is_empty())
    }

    /// Models outside the scope whose data reasons all come from parents
    /// whose data turned out identical (or from such models): nothing is left
    /// stale in them. Recorded as decisions; returned so that no pending work
    /// is written for them.
    fn settle_out_of_scope(&mut self, out_of_scope: &[ModelWork]) -> BTreeSet<NodeId> {
        let mut settled: BTreeSet<NodeId> = BTreeSet::new();
        let stale: BTreeSet<NodeId> = out_of_scope.iter().map(|w| w.node).collect();
        for w in out_of_scope {
            let data: Vec<_> = w
                .reasons
                .iter()
                .filter(|r| r.change.propagates_as_data())
                .collect();
            let quiet = |p: NodeId| self.passes_nothing(p, &stale, &settled);
            if data.is_empty() || !data.iter().all(|r| r.parent.is_some_and(quiet)) {
                continue;
            }
            if data.len() == w.reasons.len() {
                let parents: BTreeSet<String> = data
                    .iter()
                    .filter_map(|r| r.parent)
                    .map(|p| self.ws.dag.nodes[p].name.to_string())
                    .collect();
                self.decisions.push(CutOff {
                    model: w.name.to_string(),
                    intervals: w.intervals.clone(),
                    full: w.full,
                    reason: format!(
                        "the data it reads from {} is identical to what was published",
                        parents.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                    outside_scope: true,
                });
                settled.insert(w.node);
            }
        }
        settled
    }

    /// Whether `id` passes no change of data to its readers after this run:
    /// rebuilt identical, settled, or a view over such nodes and nodes that
    /// are not stale at all.
    fn passes_nothing(
        &self,
        id: NodeId,
        stale: &BTreeSet<NodeId>,
        settled: &BTreeSet<NodeId>,
    ) -> bool {
        if self.quiet(id) || settled.contains(&id) {
            return true;
        }
        if self.ws.dag.nodes[id].kind != NodeKind::Model(Kind::View) {
            return false;
        }
        self.ws.dag.parents(id).into_iter().all(|p| {
            let node = &self.ws.dag.nodes[p];
            self.passes_nothing(p, stale, settled)
                || (node.kind.is_model()
                    && node.kind != NodeKind::Model(Kind::View)
                    && !self.work.contains_key(&p)
                    && !stale.contains(&p))
        })
    }

    /// After staging: what was dropped is not published. Models with no batch
    /// left leave the run (`staging`, `work`), dropped batches leave the
    /// tasks; models outside the scope are settled. The decisions and the
    /// settled models.
    pub fn finish(
        &mut self,
        staging: &mut Staging,
        work: &mut BTreeMap<NodeId, &ModelWork>,
        out_of_scope: &[ModelWork],
    ) -> (Vec<CutOff>, BTreeSet<NodeId>) {
        for id in &self.skipped {
            staging.nodes.remove(id);
            staging.views.remove(id);
            work.remove(id);
        }
        staging.tasks = std::mem::take(&mut staging.tasks)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !self.cut.contains(i))
            .map(|(_, t)| t)
            .collect();
        let settled = self.settle_out_of_scope(out_of_scope);
        (std::mem::take(&mut self.decisions), settled)
    }

    /// The intervals of `id` rebuilt in this run: its batches not dropped.
    pub fn rebuilt(&self, id: NodeId, staging: &Staging) -> IntervalSet {
        IntervalSet::from_intervals(
            staging
                .tasks
                .iter()
                .enumerate()
                .filter(|(i, t)| t.node == id && !self.cut.contains(i))
                .filter_map(|(_, t)| t.interval),
        )
    }

    /// What the readers of `id` read during the run, when a drop changed it.
    pub fn reader(&self, id: NodeId, staging: &Staging) -> Option<String> {
        if self.skipped.contains(&id) {
            Some(main_name(&self.ws.dag.nodes[id].name))
        } else if self.partial.contains(&id) {
            Some(super::stage::stage_view(&overlay_name(staging, id)))
        } else {
            None
        }
    }

    /// Whether the batches of `id`, once done, are to be compared with its
    /// published rows ([`Cutoff::observe`]): a reader could skip something
    /// because of it, and it has published rows.
    pub fn wants(&self, id: NodeId) -> bool {
        self.watched.contains(&id) && !self.skipped.contains(&id) && self.published(id).is_some()
    }

    /// After the batches of `id` are done: compare each with the published
    /// rows of its interval (or the whole table), when a reader can use it.
    pub fn observe(
        &mut self,
        s: &dyn Session,
        id: NodeId,
        staging: &Staging,
        results: &mut HashMap<String, Staged>,
    ) -> Result<()> {
        if !self.wants(id) {
            return Ok(());
        }
        let table = self.published(id).map(data_table).expect("published");
        let time_column = self
            .ws
            .model(id)
            .and_then(|(f, _)| f.config.time_column.clone());
        // Staging leaves checksums to validation: these are needed now.
        let missing: Vec<usize> = staging
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, t)| t.node == id && !self.cut.contains(i))
            .filter(|(_, t)| results.get(&t.key).is_some_and(|r| r.checksum.is_empty()))
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() {
            for (i, checksum) in super::stage::batch_checksums(self.ws, s, staging, &missing)? {
                if let Some(r) = results.get_mut(&staging.tasks[i].key) {
                    r.checksum = checksum;
                }
            }
        }
        // The published rows of every batch's interval, by one scan.
        let tasks: Vec<&super::stage::Task> = staging
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, t)| t.node == id && !self.cut.contains(i))
            .map(|(_, t)| t)
            .collect();
        let windows: Option<Vec<Interval>> = tasks.iter().map(|t| t.interval).collect();
        let published = match (&time_column, &windows) {
            (Some(tc), Some(windows)) => {
                crate::engine::dialect::measure(s, Dialect::DuckDb, &table, Some((tc, windows)))?
            }
            _ => {
                let whole = crate::engine::dialect::measure(s, Dialect::DuckDb, &table, None)?;
                vec![whole[0].clone(); tasks.len()]
            }
        };
        let by_key: HashMap<&str, (i64, String)> = tasks
            .iter()
            .map(|t| t.key.as_str())
            .zip(published)
            .collect();
        self.compare(id, staging, results, |t| Ok(by_key[t.key.as_str()].clone()))
    }

    /// Compare each batch of `id` done in this run (`results`) with the
    /// published rows of its interval, as `published` measures them (rows
    /// and checksum, computed as the batch's own); what `id` changes follows.
    pub fn compare(
        &mut self,
        id: NodeId,
        staging: &Staging,
        results: &HashMap<String, Staged>,
        published: impl Fn(&super::stage::Task) -> Result<(i64, String)>,
    ) -> Result<()> {
        let mut changed = IntervalSet::new();
        for (i, t) in staging.tasks.iter().enumerate() {
            if t.node != id || self.cut.contains(&i) {
                continue;
            }
            let Some(staged) = results.get(&t.key) else {
                self.changed.insert(id, Effect::Unknown);
                return Ok(());
            };
            let (rows, checksum) = published(t)?;
            if rows != staged.rows || checksum != staged.checksum {
                match t.interval {
                    Some(iv) => changed = changed.union(&IntervalSet::single(iv)),
                    None => {
                        self.changed.insert(id, Effect::Unknown);
                        return Ok(());
                    }
                }
            }
        }
        self.changed.insert(id, Effect::Changed(changed));
        Ok(())
    }
}

/// The node itself and, through views, the models and sources under it.
fn watch(ws: &Workspace, id: NodeId, out: &mut BTreeSet<NodeId>) {
    if !out.insert(id) {
        return;
    }
    if ws.dag.nodes[id].kind == NodeKind::Model(Kind::View) {
        for p in ws.dag.parents(id) {
            watch(ws, p, out);
        }
    }
}

/// The staged view of a node planned as a full rebuild that replaces some
/// intervals only.
pub(super) fn overlay_name(staging: &Staging, id: NodeId) -> String {
    format!("{}_ov", staging.nodes[&id].table)
}
