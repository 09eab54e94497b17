//! `hubforge mark-current`: the user's decision that intervals built with older
//! logic are right under the current logic (a correction that only touched the
//! last three months, say), recorded in state with who decided it and when.
//! hubforge never decides this by itself; it only applies to work stale because
//! of a change of logic, never to missing intervals or changed source data.

use chrono::NaiveDateTime;

use crate::build;
use crate::change::VersionLookup as _;
use crate::graph::NodeId;
use crate::interval::IntervalSet;
use crate::plan::{ChangeKind, PlanOptions};
use crate::state::StateWrites;
use crate::workspace::Workspace;

/// Intervals of one model marked as current.
#[derive(Debug, Clone)]
pub struct Marked {
    pub node: NodeId,
    pub name: String,
    pub change: ChangeKind,
    pub intervals: IntervalSet,
    pub full: bool,
    /// Stale parts of units that the range cuts: left stale, since a decision
    /// covers whole units only.
    pub partial: IntervalSet,
}

/// Mark the logic-stale work of the selected models inside the range as
/// current: what is marked, and the state writes that record it, from a plan
/// made on either engine.
pub fn decide(
    ws: &Workspace,
    prepared: &build::Prepared,
    options: &PlanOptions,
    note: &str,
    user: &str,
    now: NaiveDateTime,
) -> (Vec<Marked>, StateWrites) {
    let state = &prepared.observed.state;
    let decision_id = format!("decision-{}", now.format("%Y%m%dT%H%M%S"));
    let mut w = StateWrites::default();
    let mut marked = Vec::new();
    for work in &prepared.plan.models {
        let logic: Vec<(ChangeKind, &IntervalSet)> = work
            .reasons
            .iter()
            .filter(|r| {
                matches!(
                    r.change,
                    ChangeKind::Breaking | ChangeKind::NonBreaking | ChangeKind::Indirect
                )
            })
            .map(|r| (r.change, &r.intervals))
            .collect();
        let Some(change) = logic.iter().map(|(k, _)| *k).max() else {
            continue;
        };
        let key = work.name.key();
        let set = if work.full {
            // A table or view: its one recorded interval.
            IntervalSet::from_intervals(
                state
                    .intervals
                    .get(key)
                    .into_iter()
                    .flatten()
                    .map(|r| r.interval),
            )
        } else {
            logic
                .iter()
                .fold(IntervalSet::new(), |acc, (_, s)| acc.union(s))
        };
        // The plan's scope widens a range to whole units; a decision narrows it.
        let (set, partial) = match (
            &options.range,
            ws.model(work.node).and_then(|(f, _)| f.config.unit),
        ) {
            (Some(range), Some(unit)) if !work.full => {
                let inside = set.intersect(&IntervalSet::single(*range).align_inward(unit));
                let partial = set.subtract(&inside);
                (inside, partial)
            }
            _ => (set, IntervalSet::new()),
        };
        if set.is_empty() {
            if !partial.is_empty() {
                marked.push(Marked {
                    node: work.node,
                    name: work.name.to_string(),
                    change,
                    intervals: set,
                    full: false,
                    partial,
                });
            }
            continue;
        }
        let version = &prepared.versions[work.node];
        if state.version(key, &version.fingerprint).is_none() {
            w.version(version, &decision_id);
        }
        w.mark_current(key, &set, &version.fingerprint, state);
        for iv in set.iter() {
            w.decision(
                &decision_id,
                key,
                Some(iv),
                "mark_current",
                &version.fingerprint,
                user,
                now,
                note,
            );
        }
        marked.push(Marked {
            node: work.node,
            name: work.name.to_string(),
            change,
            intervals: set,
            full: work.full,
            partial,
        });
    }
    (marked, w)
}
