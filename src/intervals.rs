//! `hubforge intervals MODEL`: a model's history as merged ranges: current,
//! stale (and why: which change, which parent), marked current (by whom, when,
//! why) or missing, with the fingerprint, run and rows of each range.
//!
//! Staleness comes from the planner itself (a plan of the whole project), so
//! that what `intervals` calls stale is exactly what `build` would rebuild.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDateTime;
use serde_json::json;

use crate::engine::Session;
use crate::error::Result;
use crate::graph::NodeId;
use crate::interval::{Interval, IntervalSet, Unit};
use crate::plan::ModelWork;
use crate::state::{DecisionRecord, IntervalRecord, State};
use crate::workspace::Workspace;

/// What a range of a model's history is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Current,
    MarkedCurrent,
    Stale,
    Missing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Current => "current",
            Status::MarkedCurrent => "marked_current",
            Status::Stale => "stale",
            Status::Missing => "missing",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Status::Current => "current",
            Status::MarkedCurrent => "marked current",
            Status::Stale => "stale",
            Status::Missing => "missing",
        }
    }

    fn glyph(self) -> char {
        match self {
            Status::Current => '█',
            Status::MarkedCurrent => '▓',
            Status::Stale => '▒',
            Status::Missing => '·',
        }
    }
}

/// Why a range is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleReason {
    pub change: String,
    pub text: String,
    pub parent: Option<String>,
}

/// One merged range of a model's history.
#[derive(Debug, Clone)]
pub struct Range {
    pub interval: Interval,
    pub status: Status,
    pub units: Option<i64>,
    /// The record the data is kept under (None when missing).
    pub fingerprint: Option<String>,
    pub built_fingerprint: Option<String>,
    pub run_id: Option<String>,
    /// The run's number in the run log.
    pub run: Option<i64>,
    /// Rows, when every record of the range is whole and measured.
    pub rows: Option<i64>,
    pub reasons: Vec<StaleReason>,
    pub decision: Option<DecisionRecord>,
}

/// A model's history.
#[derive(Debug, Clone)]
pub struct History {
    pub model: String,
    pub kind: String,
    pub unit: Option<Unit>,
    pub span: Interval,
    pub fingerprint: String,
    pub ranges: Vec<Range>,
}

/// The history of `node` as `prepared` (a plan of the whole project) sees it
/// (`work`: the model's work in that plan).
pub fn history(
    ws: &Workspace,
    prepared: &crate::build::Prepared,
    node: NodeId,
    work: Option<&ModelWork>,
    decisions: &[DecisionRecord],
    runs: &BTreeMap<String, i64>,
) -> History {
    let state = &prepared.observed.state;
    let fingerprint = &prepared.versions[node].fingerprint;
    let now = prepared.now;
    let name = ws.dag.nodes[node].name.clone();
    let key = name.key();
    let (file, _) = ws.model(node).expect("a model");
    let unit = file.config.unit;
    let whole = crate::plan::history(ws, node, now);
    let expected = match crate::plan::universe(ws, node, now) {
        Some((_, set)) => set,
        None => IntervalSet::single(whole),
    };
    let empty = Vec::new();
    let records: &Vec<IntervalRecord> = state.intervals.get(key).unwrap_or(&empty);
    let built = IntervalSet::from_intervals(records.iter().map(|r| r.interval));
    let reasons: Vec<(StaleReason, IntervalSet)> = work
        .map(|w| {
            w.reasons
                .iter()
                .map(|r| {
                    let set = if w.full || r.intervals.is_empty() {
                        expected.union(&built)
                    } else {
                        r.intervals.clone()
                    };
                    (
                        StaleReason {
                            change: r.change.as_str().to_string(),
                            text: r.text.clone(),
                            parent: r.parent.map(|p| ws.dag.nodes[p].name.to_string()),
                        },
                        set,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Every point where something changes.
    let mut points: Vec<NaiveDateTime> = Vec::new();
    let mut add = |set: &IntervalSet| {
        for iv in set.iter() {
            points.push(iv.start());
            points.push(iv.end());
        }
    };
    add(&expected);
    for r in records {
        add(&IntervalSet::single(r.interval));
    }
    for (_, set) in &reasons {
        add(set);
    }
    for d in decisions {
        if let Some(iv) = d.interval {
            add(&IntervalSet::single(iv));
        }
    }
    points.sort();
    points.dedup();
    let covered = expected.union(&built);
    let mut ranges: Vec<(Range, Vec<usize>)> = Vec::new();
    for pair in points.windows(2) {
        let Ok(piece) = Interval::new(pair[0], pair[1]) else {
            continue;
        };
        if !covered.contains_point(piece.start()) {
            continue;
        }
        let record = records.partition_point(|r| r.interval.end() <= piece.start());
        let record = records
            .get(record)
            .is_some_and(|r| r.interval.contains_point(piece.start()))
            .then_some(record);
        let why: Vec<StaleReason> = reasons
            .iter()
            .filter(|(_, set)| set.contains_point(piece.start()))
            .map(|(r, _)| r.clone())
            .collect();
        let r = record.map(|i| &records[i]);
        let decision = r
            .filter(|r| r.fingerprint != r.built_fingerprint)
            .and_then(|r| {
                decisions.iter().rev().find(|d| {
                    d.fingerprint == r.fingerprint
                        && d.interval.is_none_or(|iv| iv.contains_point(piece.start()))
                })
            })
            .cloned();
        let status = match (r, why.is_empty(), &decision) {
            (None, _, _) => Status::Missing,
            (Some(_), false, _) => Status::Stale,
            (Some(_), true, Some(_)) => Status::MarkedCurrent,
            (Some(_), true, None) => Status::Current,
        };
        let why = if status == Status::Missing {
            Vec::new()
        } else {
            why
        };
        let range = Range {
            interval: piece,
            status,
            units: None,
            fingerprint: r.map(|r| r.fingerprint.clone()),
            built_fingerprint: r.map(|r| r.built_fingerprint.clone()),
            run_id: r.map(|r| r.run_id.clone()),
            run: r.and_then(|r| runs.get(&r.run_id).copied()),
            rows: None,
            reasons: why,
            decision: if status == Status::MarkedCurrent {
                decision
            } else {
                None
            },
        };
        // Merge with the previous range when they say the same.
        if let Some((last, recs)) = ranges.last_mut()
            && last.interval.end() == piece.start()
            && last.status == range.status
            && last.fingerprint == range.fingerprint
            && last.built_fingerprint == range.built_fingerprint
            && last.run_id == range.run_id
            && last.reasons == range.reasons
            && last.decision.as_ref().map(|d| (&d.id, &d.note))
                == range.decision.as_ref().map(|d| (&d.id, &d.note))
        {
            last.interval = Interval::new(last.interval.start(), piece.end()).expect("ordered");
            if let Some(i) = record
                && recs.last() != Some(&i)
            {
                recs.push(i);
            }
            continue;
        }
        ranges.push((range, record.into_iter().collect()));
    }
    let ranges = ranges
        .into_iter()
        .map(|(mut range, recs)| {
            // Rows are known when the range holds whole, measured records.
            let whole = !recs.is_empty()
                && recs.iter().all(|&i| {
                    let r = &records[i];
                    r.rows >= 0
                        && r.interval.start() >= range.interval.start()
                        && r.interval.end() <= range.interval.end()
                });
            range.rows = whole.then(|| recs.iter().map(|&i| records[i].rows).sum());
            range.units = unit.map(|u| IntervalSet::single(range.interval).count_units(u));
            range
        })
        .collect();
    History {
        model: name.to_string(),
        kind: file.config.kind.as_str().to_string(),
        unit,
        span: covered.span().unwrap_or(whole),
        fingerprint: fingerprint.to_string(),
        ranges,
    }
}

/// Count the rows of ranges whose records do not know theirs (a batch
/// recorded unit by unit, a range cut by a decision) in the model's data.
/// `count` counts the rows of a model's table (its name in state): all of
/// them, or those whose time column lies in an interval.
pub fn count_rows(
    ws: &Workspace,
    node: NodeId,
    state: &State,
    h: &mut History,
    count: impl Fn(&str, Option<(&str, &Interval)>) -> Option<i64>,
) {
    let key = ws.dag.nodes[node].name.key();
    let Some(table) = state
        .models
        .get(key)
        .map(|m| m.data_table.as_str())
        .filter(|t| !t.is_empty())
    else {
        return;
    };
    let time = ws
        .model(node)
        .and_then(|(f, _)| f.config.time_column.clone());
    for r in h
        .ranges
        .iter_mut()
        .filter(|r| r.rows.is_none() && r.status != Status::Missing)
    {
        let window = match (&time, h.unit) {
            (Some(col), Some(_)) => Some((col.as_str(), &r.interval)),
            (_, None) => None,
            _ => continue,
        };
        r.rows = count(table, window);
    }
}

/// [`count_rows`]' counting in DuckDB's warehouse.
pub fn count_in_warehouse(
    s: &dyn Session,
) -> impl Fn(&str, Option<(&str, &Interval)>) -> Option<i64> + '_ {
    move |table, window| {
        let filter = window
            .map(|(col, iv)| format!(" WHERE {}", crate::engine::window_predicate(None, col, iv)))
            .unwrap_or_default();
        s.query(&format!(
            "SELECT count(*) FROM {}.{}{filter}",
            crate::build::DATA_SCHEMA,
            crate::engine::quote_ident(table)
        ))
        .ok()?
        .rows
        .first()
        .and_then(|row| row[0].as_i64())
    }
}

/// The run log's numbers by run id.
pub fn run_numbers(s: &dyn Session) -> Result<BTreeMap<String, i64>> {
    Ok(crate::state::read_runs(s, None, None)?
        .into_iter()
        .map(|r| (r.run_id, r.seq))
        .collect())
}

pub fn to_json(h: &History) -> serde_json::Value {
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for r in &h.ranges {
        *totals.entry(r.status.as_str()).or_default() += r.units.unwrap_or(1);
    }
    json!({
        "schema_version": 1,
        "model": h.model,
        "kind": h.kind,
        "unit": h.unit.map(|u| u.as_str()),
        "span": h.span,
        "fingerprint": h.fingerprint,
        "ranges": h.ranges.iter().map(|r| json!({
            "start": crate::interval::format_point(r.interval.start()),
            "end": crate::interval::format_point(r.interval.end()),
            "status": r.status.as_str(),
            "units": r.units,
            "fingerprint": r.fingerprint,
            "built_fingerprint": r.built_fingerprint,
            "run_id": r.run_id,
            "run": r.run,
            "rows": r.rows,
            "reasons": r.reasons.iter().map(|s| json!({
                "change": s.change, "reason": s.text, "parent": s.parent,
            })).collect::<Vec<_>>(),
            "marked_current": r.decision.as_ref().map(|d| json!({
                "by": d.user, "at": d.decided_at, "note": d.note, "decision": d.id,
            })),
        })).collect::<Vec<_>>(),
        "summary": totals,
    })
}

const WIDTH: usize = 60;

/// The history as a compact timeline and one line per range.
pub fn to_text(h: &History) -> String {
    let mut out = String::new();
    let unit = h.unit.map_or_else(
        || "whole table".to_string(),
        |u| format!("by {}", u.as_str()),
    );
    let _ = writeln!(
        out,
        "{} ({}, {unit})  {}  fingerprint {}",
        h.model,
        h.kind,
        h.span,
        short(&h.fingerprint)
    );
    if h.ranges.is_empty() {
        out.push_str("  no history yet\n");
        return out;
    }
    // Each character covers an equal share of the span; it shows the worst
    // status found there.
    let (start, end) = (h.span.start(), h.span.end());
    let total = (end - start).num_seconds().max(1) as f64;
    let mut bar = String::new();
    for i in 0..WIDTH {
        let a = start + chrono::Duration::seconds((total * i as f64 / WIDTH as f64) as i64);
        let b = start + chrono::Duration::seconds((total * (i + 1) as f64 / WIDTH as f64) as i64);
        let worst = h
            .ranges
            .iter()
            .filter(|r| {
                r.interval.start() < b.max(a + chrono::Duration::seconds(1)) && r.interval.end() > a
            })
            .map(|r| r.status)
            .max()
            .unwrap_or(Status::Missing);
        bar.push(worst.glyph());
    }
    let _ = writeln!(
        out,
        "  {}  {bar}  {}",
        crate::interval::format_point(start),
        crate::interval::format_point(end)
    );
    let _ = writeln!(
        out,
        "  {} current  {} marked current  {} stale  {} missing",
        Status::Current.glyph(),
        Status::MarkedCurrent.glyph(),
        Status::Stale.glyph(),
        Status::Missing.glyph()
    );
    let width = h
        .ranges
        .iter()
        .map(|r| r.interval.to_string().len())
        .max()
        .unwrap_or(0);
    for r in &h.ranges {
        let mut line = format!(
            "  {:width$}  {:14}",
            r.interval.to_string(),
            r.status.label()
        );
        if let Some(units) = r.units {
            let _ = write!(line, " {units:>5} {}", plural_unit(h.unit, units));
        }
        if let Some(run) = &r.run_id {
            let number = r.run.map(|n| format!("#{n} ")).unwrap_or_default();
            let _ = write!(line, "  run {number}{run}");
        }
        if let Some(fp) = &r.fingerprint {
            let _ = write!(line, "  fp {}", short(fp));
            if let Some(built) = r.built_fingerprint.as_ref().filter(|b| *b != fp) {
                let _ = write!(line, " (built as {})", short(built));
            }
        }
        if let Some(rows) = r.rows {
            let _ = write!(line, "  {rows} rows");
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if let Some(d) = &r.decision {
            let _ = writeln!(
                out,
                "      marked current by {} at {}: \"{}\"",
                d.user, d.decided_at, d.note
            );
        }
        for s in &r.reasons {
            let parent = s
                .parent
                .as_ref()
                .map(|p| format!(" (from {p})"))
                .unwrap_or_default();
            let _ = writeln!(out, "      {}: {}{parent}", s.change, s.text);
        }
    }
    out
}

fn plural_unit(unit: Option<Unit>, n: i64) -> String {
    let name = unit.map_or("unit", |u| u.as_str());
    if n == 1 {
        name.to_string()
    } else {
        format!("{name}s")
    }
}

fn short(fp: &str) -> &str {
    &fp[..fp.len().min(12)]
}
