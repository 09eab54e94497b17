//! `hubforge runs`: the run log (when, who, command, scope, what was built,
//! rows, duration, outcome) and one run in detail, with its plan as it was.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::state::RunLog;

/// Seconds between two state times, when both read.
fn duration(run: &RunLog) -> Option<f64> {
    let a = crate::interval::parse_point(&run.started_at).ok()?;
    let b = crate::interval::parse_point(&run.finished_at).ok()?;
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

fn number(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// The models a run built (published) or set out to build, with their intervals.
fn planned(run: &RunLog) -> &[Value] {
    run.plan["models"].as_array().map_or(&[], Vec::as_slice)
}

pub fn run_json(run: &RunLog, detail: bool) -> Value {
    let mut v = json!({
        "run": run.seq,
        "run_id": run.run_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "seconds": duration(run),
        "outcome": run.status,
        "user": run.user,
        "command": run.command,
        "scope": run.summary.get("scope").cloned().unwrap_or(Value::Null),
        "models": number(&run.summary["models"]).unwrap_or(planned(run).len() as i64),
        "intervals": run.summary.get("intervals").cloned()
            .unwrap_or_else(|| run.plan["summary"]["intervals"].clone()),
        "rows": run.summary.get("rows").cloned().unwrap_or(Value::Null),
        "error": run.summary.get("error").cloned().unwrap_or(Value::Null),
    });
    if detail {
        v["rows_by_model"] = run
            .summary
            .get("rows_by_model")
            .cloned()
            .unwrap_or(Value::Null);
        v["cutoff"] = run.summary.get("cutoff").cloned().unwrap_or(Value::Null);
        v["plan"] = run.plan.clone();
    }
    v
}

pub fn list_json(runs: &[RunLog]) -> Value {
    json!({
        "schema_version": 1,
        "runs": runs.iter().map(|r| run_json(r, false)).collect::<Vec<_>>(),
    })
}

fn text_or_dash(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn list_text(runs: &[RunLog]) -> String {
    if runs.is_empty() {
        return "No runs yet: `hubforge build` records one per run.\n".to_string();
    }
    let rows: Vec<[String; 9]> = runs
        .iter()
        .map(|r| {
            let j = run_json(r, false);
            [
                format!("#{}", r.seq),
                r.run_id.clone(),
                r.started_at.replace('T', " "),
                r.user.clone(),
                r.status.clone(),
                duration(r).map_or("-".to_string(), |s| format!("{s:.1}s")),
                text_or_dash(&j["models"]),
                text_or_dash(&j["intervals"]),
                text_or_dash(&j["rows"]),
            ]
        })
        .collect();
    let header = [
        "RUN",
        "ID",
        "STARTED (UTC)",
        "USER",
        "OUTCOME",
        "TOOK",
        "MODELS",
        "INTERVALS",
        "ROWS",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String, command: &str| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            // Numbers right-aligned, text left.
            if i >= 5 {
                let _ = write!(l, "{:>w$}  ", c, w = widths[i]);
            } else {
                let _ = write!(l, "{:w$}  ", c, w = widths[i]);
            }
        }
        l.push_str(command);
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out, "COMMAND");
    for (row, run) in rows.iter().zip(runs) {
        line(
            row.iter().map(String::as_str).collect(),
            &mut out,
            &run.command,
        );
    }
    out
}

pub fn detail_text(run: &RunLog) -> String {
    let j = run_json(run, true);
    let mut out = String::new();
    let _ = writeln!(out, "Run #{} {}: {}", run.seq, run.run_id, run.status);
    let _ = writeln!(out, "  command   {}", run.command);
    let _ = writeln!(out, "  user      {}", run.user);
    let _ = writeln!(
        out,
        "  started   {} UTC, finished {}{}",
        run.started_at.replace('T', " "),
        run.finished_at.replace('T', " "),
        duration(run).map_or(String::new(), |s| format!(" ({s:.1}s)"))
    );
    let scope = &j["scope"];
    if !scope.is_null() {
        let mut parts = Vec::new();
        if let (Some(s), Some(e)) = (scope["start"].as_str(), scope["end"].as_str()) {
            parts.push(format!("{s}..{e}"));
        }
        if scope["backfill"] == true {
            parts.push("backfill".to_string());
        }
        if let Some(n) = scope["selected"].as_i64() {
            parts.push(format!("{n} selected models"));
        }
        let _ = writeln!(
            out,
            "  scope     {}",
            if parts.is_empty() {
                "everything stale".to_string()
            } else {
                parts.join(", ")
            }
        );
    }
    if run.status == "published" {
        let _ = writeln!(
            out,
            "  built     {} models, {} intervals, {} rows",
            text_or_dash(&j["models"]),
            text_or_dash(&j["intervals"]),
            text_or_dash(&j["rows"])
        );
    } else {
        let _ = writeln!(
            out,
            "  planned   {} models, {} intervals; nothing was published",
            text_or_dash(&j["models"]),
            text_or_dash(&j["intervals"])
        );
    }
    if let Some(e) = j["error"].as_str() {
        let _ = writeln!(out, "  error     {}", e.replace('\n', "\n            "));
    }
    let models = planned(run);
    if !models.is_empty() {
        let _ = writeln!(out, "Plan as it was:");
        let width = models
            .iter()
            .filter_map(|m| m["name"].as_str())
            .map(str::len)
            .max()
            .unwrap_or(0);
        for m in models {
            let name = m["name"].as_str().unwrap_or("?");
            let what = if m["full"] == true {
                "whole table".to_string()
            } else {
                m["intervals"]
                    .as_array()
                    .map(|ivs| {
                        ivs.iter()
                            .map(|iv| format!("{}..{}", text_or_dash(&iv[0]), text_or_dash(&iv[1])))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let rows = j["rows_by_model"][name]
                .as_i64()
                .map(|r| format!("  {r} rows"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {name:width$}  {:14} {what}{rows}",
                m["change"].as_str().unwrap_or("")
            );
            if let Some(reason) = m["reason"].as_str() {
                let _ = writeln!(out, "  {:width$}  {reason}", "");
            }
        }
    }
    if let Some(cut) = j["cutoff"].as_array().filter(|c| !c.is_empty()) {
        let _ = writeln!(out, "Early cutoff:");
        for c in cut {
            let _ = writeln!(
                out,
                "  {}  {}",
                c["name"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or("")
            );
        }
    }
    out
}
