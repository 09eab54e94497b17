//! Rendering plans and build results for people (text) and machines (JSON).

use std::fmt::Write as _;

use serde_json::json;

use crate::change::VersionLookup as _;
use crate::config::Kind;
use crate::fingerprint::ModelVersion;
use crate::interval::{IntervalSet, Unit};
use crate::plan::{ChangeKind, ModelWork, Plan};
use crate::state::State;
use crate::workspace::Workspace;

pub const PLAN_SCHEMA_VERSION: u32 = 1;

fn unit_of(ws: &Workspace, w: &ModelWork) -> Unit {
    ws.model(w.node)
        .and_then(|(f, _)| f.config.unit)
        .unwrap_or(Unit::Day)
}

fn intervals_json(set: &IntervalSet) -> serde_json::Value {
    serde_json::to_value(set).expect("interval sets serialise")
}

fn work_json(ws: &Workspace, w: &ModelWork) -> serde_json::Value {
    json!({
        "name": w.name,
        "kind": w.kind.as_str(),
        "change": w.change.as_str(),
        "reason": w.reason,
        "columns": w.columns,
        "full": w.full,
        "intervals": intervals_json(&w.intervals),
        "units": if w.full { 0 } else { w.intervals.count_units(unit_of(ws, w)) },
        "reasons": w.reasons.iter().map(|r| json!({
            "change": r.change.as_str(), "reason": r.text, "intervals": intervals_json(&r.intervals)
        })).collect::<Vec<_>>(),
    })
}

/// The plan as JSON (DESIGN §10), with a few extra fields.
pub fn plan_json(ws: &Workspace, plan: &Plan) -> serde_json::Value {
    json!({
        "schema_version": PLAN_SCHEMA_VERSION,
        "project": ws.project.config.project.name,
        "models": plan.models.iter().map(|w| work_json(ws, w)).collect::<Vec<_>>(),
        "out_of_scope": plan.out_of_scope.iter().map(|w| work_json(ws, w)).collect::<Vec<_>>(),
        "metadata_only": plan.metadata_only.iter().map(|(id, r)| json!({
            "name": ws.dag.nodes[*id].name, "reason": r
        })).collect::<Vec<_>>(),
        "removed": plan.removed,
        "summary": {
            "models": plan.models.len(),
            "intervals": plan.interval_count(&plan.models, ws),
            "out_of_scope_models": plan.out_of_scope.len(),
            "out_of_scope_intervals": plan.interval_count(&plan.out_of_scope, ws),
        },
    })
}

/// A unified diff of two SQL texts, or None when equal.
pub fn sql_diff(before: &str, after: &str) -> Option<String> {
    if before == after {
        return None;
    }
    let diff = similar::TextDiff::from_lines(before, after);
    Some(
        diff.unified_diff()
            .context_radius(2)
            .header("before", "after")
            .to_string(),
    )
}

fn describe_intervals(ws: &Workspace, w: &ModelWork) -> String {
    if w.full {
        return match w.kind {
            Kind::View => "recreate view".to_string(),
            _ => "full rebuild".to_string(),
        };
    }
    let unit = unit_of(ws, w);
    let n = w.intervals.count_units(unit);
    let shown: Vec<String> = w.intervals.iter().take(4).map(|i| i.to_string()).collect();
    let more = if w.intervals.len() > 4 {
        format!(" and {} more ranges", w.intervals.len() - 4)
    } else {
        String::new()
    };
    format!(
        "{}{more} ({n} {}{})",
        shown.join(", "),
        unit.as_str(),
        if n == 1 { "" } else { "s" }
    )
}

/// The plan for people.
pub fn plan_text(ws: &Workspace, plan: &Plan, state: &State, current: &[ModelVersion]) -> String {
    let mut out = String::new();
    let name_width = plan
        .models
        .iter()
        .chain(plan.out_of_scope.iter())
        .map(|w| w.name.len())
        .max()
        .unwrap_or(0);
    let section = |out: &mut String, title: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = writeln!(out, "{title}:");
            for i in items {
                let _ = writeln!(out, "{i}");
            }
            out.push('\n');
        }
    };
    let new: Vec<String> = plan
        .models
        .iter()
        .filter(|w| w.change == ChangeKind::New)
        .map(|w| format!("  + {}", w.name))
        .collect();
    section(&mut out, "Added", new);
    section(
        &mut out,
        "Removed",
        plan.removed.iter().map(|n| format!("  - {n}")).collect(),
    );
    let mut direct = Vec::new();
    for w in plan.models.iter().chain(plan.out_of_scope.iter()) {
        if !plan.direct.contains(&w.node)
            || direct
                .iter()
                .any(|(n, _): &(String, String)| *n == w.name.as_str())
        {
            continue;
        }
        let mut item = format!("  ~ {}  {}: {}", w.name, w.change.as_str(), w.reason);
        let old_sql = w
            .from_fingerprint
            .as_ref()
            .and_then(|fp| state.version(w.name.key(), fp))
            .map(|v| v.sql.clone());
        if let (Some(old), Some(new)) = (old_sql, current.get(w.node).map(|v| v.sql.clone()))
            && let Some(diff) = sql_diff(&old, &new)
        {
            for line in diff.lines() {
                item.push_str(&format!("\n      {line}"));
            }
        }
        direct.push((w.name.to_string(), item));
    }
    section(
        &mut out,
        "Directly modified",
        direct.into_iter().map(|(_, i)| i).collect(),
    );
    let indirect: Vec<String> = plan
        .models
        .iter()
        .filter(|w| w.change == ChangeKind::Indirect)
        .map(|w| format!("  ~ {}  indirect: {}", w.name, w.reason))
        .collect();
    section(&mut out, "Indirectly affected", indirect);
    section(
        &mut out,
        "Metadata only (nothing to build)",
        plan.metadata_only
            .iter()
            .map(|(id, r)| format!("  = {}  {r}", ws.dag.nodes[*id].name))
            .collect(),
    );
    let work: Vec<String> = plan
        .models
        .iter()
        .map(|w| {
            format!(
                "  {:name_width$}  {:11}  {:14}  {}",
                w.name,
                w.kind.as_str(),
                w.change.as_str(),
                describe_intervals(ws, w)
            )
        })
        .collect();
    section(&mut out, "To build", work);
    let left: Vec<String> = plan
        .out_of_scope
        .iter()
        .map(|w| {
            format!(
                "  {:name_width$}  {:11}  {:14}  {}",
                w.name,
                w.kind.as_str(),
                w.change.as_str(),
                describe_intervals(ws, w)
            )
        })
        .collect();
    section(&mut out, "Outside the scope (stays stale)", left);
    if plan.is_empty() {
        if plan.out_of_scope.is_empty() {
            out.push_str("Nothing to do: everything is up to date.\n");
        } else {
            out.push_str("Nothing to do in the selected scope.\n");
        }
    } else {
        let _ = writeln!(
            out,
            "Summary: {} model{}, {} interval{} to build{}.",
            plan.models.len(),
            crate::diagnostics::plural(plan.models.len()),
            plan.interval_count(&plan.models, ws),
            crate::diagnostics::plural(plan.interval_count(&plan.models, ws) as usize),
            if plan.out_of_scope.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} model{} stay stale outside the scope",
                    plan.out_of_scope.len(),
                    crate::diagnostics::plural(plan.out_of_scope.len())
                )
            }
        );
    }
    out
}

/// A build's result for machines.
/// Early cutoff decisions: batches not built because what they read did not change.
pub fn cutoffs_json(cutoffs: &[crate::build::CutOff]) -> serde_json::Value {
    json!(
        cutoffs
            .iter()
            .map(|c| json!({
                "name": c.model,
                "full": c.full,
                "intervals": intervals_json(&c.intervals),
                "reason": c.reason,
                "outside_scope": c.outside_scope,
            }))
            .collect::<Vec<_>>()
    )
}

pub fn build_json(ws: &Workspace, summary: &crate::build::BuildSummary) -> serde_json::Value {
    json!({
        "schema_version": PLAN_SCHEMA_VERSION,
        "run_id": summary.run_id,
        "up_to_date": summary.run_id.is_none(),
        "plan": plan_json(ws, &summary.plan),
        "models": summary.models,
        "seeds": summary.seeds,
        "intervals": summary.intervals,
        "batches": summary.batches,
        "reused_batches": summary.reused,
        "rows": summary.rows,
        "rows_by_model": summary.rows_by_model,
        "cutoff": cutoffs_json(&summary.cutoffs),
        "validation": summary.validation,
        "rejected_rows": summary.rejected,
        "rejected_intervals": summary.rejected_units.iter().map(|(source, (units, unknown))| {
            let set = crate::interval::IntervalSet::from_intervals(units.iter().copied());
            (source.clone(), serde_json::json!({
                "intervals": set.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "rows_without_time": unknown,
            }))
        }).collect::<serde_json::Map<_, _>>(),
        "seconds": summary.seconds,
    })
}

/// A build's result for people.
pub fn build_text(ws: &Workspace, summary: &crate::build::BuildSummary) -> String {
    let mut text = build_result_text(ws, summary);
    // Quiet output keeps validation only when it found something.
    if let Some(report) = &summary.validation
        && (!crate::progress::is_quiet() || report.models.iter().any(|m| !m.findings.is_empty()))
    {
        text.push_str(&crate::validate::render_text(report));
    }
    for (source, rows) in &summary.rejected {
        let _ = writeln!(
            text,
            "Kept {rows} bad row{} of source {source} out of the build; see {}.",
            crate::diagnostics::plural(*rows as usize),
            summary
                .rejects_at
                .get(source)
                .cloned()
                .unwrap_or_else(|| format!("{}.{source}", crate::sources::REJECTS_SCHEMA))
        );
        if let Some((units, unknown)) = summary.rejected_units.get(source) {
            let set = crate::interval::IntervalSet::from_intervals(units.iter().copied());
            if !set.is_empty() {
                let _ = writeln!(text, "  incomplete: {set}");
            }
            if *unknown > 0 {
                let _ = writeln!(
                    text,
                    "  {unknown} of them without a readable time: any interval may be incomplete"
                );
            }
        }
    }
    text
}

/// Whether a build found nothing to build or remove.
pub fn nothing_built(summary: &crate::build::BuildSummary) -> bool {
    summary.run_id.is_none()
        || summary.models == 0 && summary.seeds == 0 && summary.plan.removed.is_empty()
}

fn build_result_text(ws: &Workspace, summary: &crate::build::BuildSummary) -> String {
    let Some(run_id) = summary.run_id.as_ref().filter(|_| !nothing_built(summary)) else {
        return if summary.plan.out_of_scope.is_empty() {
            "Everything is up to date; nothing to do.\n".to_string()
        } else {
            format!(
                "Nothing to do in the selected scope; {} model{} stay stale outside it (see `hubforge plan`).\n",
                summary.plan.out_of_scope.len(),
                crate::diagnostics::plural(summary.plan.out_of_scope.len())
            )
        };
    };
    let mut out = String::new();
    for w in &summary.plan.models {
        let rows = summary
            .rows_by_model
            .get(w.name.as_str())
            .copied()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "  {:32} {:14} {:>12} rows  {}",
            w.name,
            w.change.as_str(),
            rows,
            describe_intervals(ws, w)
        );
    }
    let _ = writeln!(
        out,
        "Built {} model{}{}, {} interval{} in {} batch{} ({} reused), {} rows written, in {:.1}s. Run {run_id}.",
        summary.models,
        crate::diagnostics::plural(summary.models),
        if summary.seeds > 0 {
            format!(
                " and {} seed{}",
                summary.seeds,
                crate::diagnostics::plural(summary.seeds)
            )
        } else {
            String::new()
        },
        summary.intervals,
        crate::diagnostics::plural(summary.intervals as usize),
        summary.batches,
        if summary.batches == 1 { "" } else { "es" },
        summary.reused,
        summary.rows,
        summary.seconds
    );
    for c in &summary.cutoffs {
        let what = match (c.outside_scope, c.full) {
            (true, _) => "no longer stale".to_string(),
            (false, true) => "not rebuilt".to_string(),
            (false, false) => format!("{} not rebuilt", c.intervals),
        };
        let _ = writeln!(out, "  {:32} early cutoff: {what}: {}", c.model, c.reason);
    }
    let settled = summary.cutoffs.iter().filter(|c| c.outside_scope).count();
    let left = summary.plan.out_of_scope.len().saturating_sub(settled);
    if left > 0 {
        let _ = writeln!(
            out,
            "{left} model{} stay stale outside the scope (see `hubforge plan`).",
            crate::diagnostics::plural(left)
        );
    }
    out
}
