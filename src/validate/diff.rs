//! `hubforge diff MODEL`: the published model against what building it now
//! would produce, matched row by row on a key. The new rows are built into a
//! temporary table of a read-only connection: nothing is ever published.

use std::fmt::Write as _;

use serde::Serialize;

use crate::diagnostics::{Code, Diagnostic, did_you_mean};
use crate::engine::{Engine as _, Session, Value, quote_ident, window_predicate};
use crate::error::{Error, Result};
use crate::graph::NodeKind;
use crate::interval::{Interval, parse_point};
use crate::template::Window;
use crate::workspace::Workspace;

pub struct DiffOptions<'a> {
    pub model: &'a str,
    pub start: Option<&'a str>,
    pub end: Option<&'a str>,
    pub key: &'a [String],
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnType {
    pub column: String,
    pub published: Option<String>,
    pub rebuilt: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnDiff {
    pub column: String,
    /// Matched rows with the same value (NULLs equal), in percent.
    pub match_rate: f64,
    pub differing_rows: i64,
    /// The largest absolute difference, for numeric columns.
    pub max_abs_difference: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub schema_version: u32,
    pub model: String,
    /// The range compared (the whole model for tables).
    pub interval: Option<String>,
    pub key: Vec<String>,
    /// Whether the key was chosen for lack of a grain (all common columns).
    pub key_is_all_columns: bool,
    /// Columns whose presence or type differs.
    pub schema: Vec<ColumnType>,
    pub published_rows: i64,
    pub rebuilt_rows: i64,
    pub only_published: i64,
    pub only_rebuilt: i64,
    pub matched: i64,
    /// Matched rows with any differing value.
    pub changed: i64,
    pub columns: Vec<ColumnDiff>,
    /// Keys that are not unique on a side.
    pub duplicate_keys_published: i64,
    pub duplicate_keys_rebuilt: i64,
    pub samples_only_published: Sample,
    pub samples_only_rebuilt: Sample,
    pub samples_changed: Sample,
}

fn invalid(message: String, help: &str) -> Error {
    Error::Input(
        Diagnostic::error(Code::InvalidArgument, message)
            .with_help(help)
            .into(),
    )
}

/// What `diff` compares, decided from the project alone (the same on every
/// engine): the model, and the range it is rebuilt for.
pub struct Subject {
    pub id: crate::graph::NodeId,
    pub name: String,
    /// The range compared; `None` for a model without a time column (all of it).
    pub interval: Option<Interval>,
    /// The window the model is rendered for.
    pub window: Window,
    pub time_column: Option<String>,
    pub grain: Vec<String>,
}

/// The model `options` names and the range to compare, or what is wrong
/// with the arguments.
pub fn subject(ws: &Workspace, options: &DiffOptions) -> Result<Subject> {
    let id = ws
        .dag
        .lookup(options.model)
        .filter(|&id| ws.dag.nodes[id].kind.is_model())
        .ok_or_else(|| {
            let names = ws.project.models.iter().map(|m| m.name.as_str());
            let help = did_you_mean(options.model, names)
                .map_or("`hubforge ls` lists the models".to_string(), |s| {
                    format!("did you mean `{s}`?")
                });
            invalid(format!("no model `{}`", options.model), &help)
        })?;
    let (file, _) = ws.model(id).expect("model node");
    let name = ws.dag.nodes[id].name.to_string();
    let now = crate::plan::end_of_history(ws, chrono::Utc::now().naive_utc());
    let history = crate::plan::history(ws, id, now);
    let point = |flag: &str, v: &str| {
        parse_point(v).map_err(|e| invalid(format!("--{flag}: {e}"), "dates are YYYY-MM-DD (UTC)"))
    };
    let interval =
        match (&file.config.time_column, options.start, options.end) {
            (None, None, None) => None,
            (None, _, _) => {
                return Err(invalid(
                    format!("model `{name}` has no time column: --start/--end do not apply"),
                    "compare the whole model: leave out --start and --end",
                ));
            }
            (Some(_), start, end) => {
                let start = start
                    .map(|v| point("start", v))
                    .transpose()?
                    .unwrap_or(history.start());
                let end = end
                    .map(|v| point("end", v))
                    .transpose()?
                    .unwrap_or(history.end());
                Some(Interval::new(start, end).map_err(|e| {
                    invalid(format!("--start/--end: {e}"), "give --start before --end")
                })?)
            }
        };
    let range = interval.unwrap_or(history);
    Ok(Subject {
        id,
        name,
        interval,
        window: Window::new(range.start(), range.end(), file.config.unit),
        time_column: file.config.time_column.clone(),
        grain: file.config.grain.clone(),
    })
}

/// The error for a model that state does not know as built.
pub fn not_built(name: &str, warehouse: bool) -> Error {
    if warehouse {
        invalid(
            format!("model `{name}` is not built yet: nothing to compare with"),
            "run `hubforge build` first",
        )
    } else {
        invalid(
            format!("model `{name}` is not built: there is no warehouse yet"),
            "run `hubforge build` first",
        )
    }
}

/// The error for a model whose SQL could not be built to compare.
pub fn not_rebuilt(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Engine(format!("building model `{name}` to compare: {e}"))
}

/// Build `options.model` for its range into a temporary table of a read-only
/// connection to the DuckDB warehouse and compare it with the published rows.
pub fn diff(ws: &Workspace, options: &DiffOptions) -> Result<DiffReport> {
    let subject = subject(ws, options)?;
    let name = &subject.name;
    let path = ws.project.warehouse_path();
    if !path.exists() {
        return Err(not_built(name, false));
    }
    let engine = crate::engine::duckdb::DuckDbEngine::open(
        &path,
        &crate::engine::duckdb::DuckDbOptions::of(ws, true),
    )?;
    let s = engine.session()?;
    let state = crate::state::read(s.as_ref())?;
    if !state
        .models
        .contains_key(ws.dag.nodes[subject.id].name.key())
    {
        return Err(not_built(name, true));
    }
    // Parents as published; sources as they are now.
    let target = |p: crate::graph::NodeId| -> String {
        let node = &ws.dag.nodes[p];
        match node.kind {
            NodeKind::Source => crate::sources::relation(
                &ws.project.root,
                &ws.project.config.sources[node.name.as_str()],
            ),
            _ => format!("main.{}", quote_ident(&node.name)),
        }
    };
    let (sql, _) = crate::build::render_sql(ws, subject.id, &subject.window, &target)?;
    let filter = match (&subject.time_column, &subject.interval) {
        (Some(tc), Some(iv)) => format!(" WHERE {}", window_predicate(None, tc, iv)),
        _ => String::new(),
    };
    let (old, new) = ("temp.main.hubforge_diff_old", "temp.main.hubforge_diff_new");
    s.execute(&format!(
        "CREATE OR REPLACE TEMP TABLE hubforge_diff_new AS SELECT * FROM ({sql}) q{filter}; \
         CREATE OR REPLACE TEMP VIEW hubforge_diff_old AS SELECT * FROM main.{}{filter}",
        quote_ident(name)
    ))
    .map_err(|e| not_rebuilt(name, e))?;
    let sides = Sides {
        old,
        new,
        old_columns: crate::sources::describe_typed(s.as_ref(), old)?,
        new_columns: crate::sources::describe_typed(s.as_ref(), new)?,
    };
    compare(s.as_ref(), &subject, &sides, options)
}

/// The two relations compared and their columns (names in lowercase, types
/// as DuckDB names them).
pub struct Sides<'a> {
    pub old: &'a str,
    pub new: &'a str,
    pub old_columns: Vec<(String, String)>,
    pub new_columns: Vec<(String, String)>,
}

/// Compare the published rows (`sides.old`) with the rebuilt ones, in SQL
/// that DuckDB runs as written and Spark after translation.
pub fn compare(
    s: &dyn Session,
    subject: &Subject,
    sides: &Sides,
    options: &DiffOptions,
) -> Result<DiffReport> {
    let (old, new) = (&sides.old_columns, &sides.new_columns);
    let mut schema = Vec::new();
    for (c, t) in old {
        match new.iter().find(|(n, _)| n == c) {
            None => schema.push(ColumnType {
                column: c.clone(),
                published: Some(t.clone()),
                rebuilt: None,
            }),
            Some((_, nt)) if nt != t => schema.push(ColumnType {
                column: c.clone(),
                published: Some(t.clone()),
                rebuilt: Some(nt.clone()),
            }),
            Some(_) => {}
        }
    }
    for (c, t) in new {
        if !old.iter().any(|(o, _)| o == c) {
            schema.push(ColumnType {
                column: c.clone(),
                published: None,
                rebuilt: Some(t.clone()),
            });
        }
    }
    let common: Vec<&(String, String)> = old
        .iter()
        .filter(|(c, _)| new.iter().any(|(n, _)| n == c))
        .collect();
    let (key, all_columns): (Vec<String>, bool) = if !options.key.is_empty() {
        (
            options.key.iter().map(|k| k.to_lowercase()).collect(),
            false,
        )
    } else if !subject.grain.is_empty() {
        (
            subject.grain.iter().map(|k| k.to_lowercase()).collect(),
            false,
        )
    } else {
        (common.iter().map(|(c, _)| c.clone()).collect(), true)
    };
    for k in &key {
        if !common.iter().any(|(c, _)| c == k) {
            return Err(invalid(
                format!(
                    "key column `{k}` is not a column of both the published and the rebuilt model"
                ),
                "name key columns with --key a,b (default: the model's grain)",
            ));
        }
    }
    let on = key
        .iter()
        .map(|k| format!("o.{q} IS NOT DISTINCT FROM n.{q}", q = quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let values: Vec<&(String, String)> = common
        .iter()
        .copied()
        .filter(|(c, _)| !key.contains(c))
        .collect();
    let differs =
        |(c, _): &&(String, String)| format!("o.{q} IS DISTINCT FROM n.{q}", q = quote_ident(c));
    let any_differs = if values.is_empty() {
        "false".to_string()
    } else {
        values.iter().map(differs).collect::<Vec<_>>().join(" OR ")
    };
    let key_list = key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let one = |sql: &str| -> Result<i64> {
        Ok(s.query(sql)?
            .rows
            .first()
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0))
    };
    let (old_rel, new_rel) = (sides.old, sides.new);
    let published_rows = one(&format!("SELECT count(*) FROM {old_rel}"))?;
    let rebuilt_rows = one(&format!("SELECT count(*) FROM {new_rel}"))?;
    let only = |a: &str, b: &str, alias_a: &str, alias_b: &str| {
        format!(
            "SELECT {alias_a}.* FROM {a} {alias_a} WHERE NOT EXISTS (SELECT 1 FROM {b} {alias_b} WHERE {on})"
        )
    };
    let only_old_sql = only(old_rel, new_rel, "o", "n");
    let only_new_sql = only(new_rel, old_rel, "n", "o");
    let only_published = one(&format!("SELECT count(*) FROM ({only_old_sql}) x"))?;
    let only_rebuilt = one(&format!("SELECT count(*) FROM ({only_new_sql}) x"))?;
    let joined = format!("FROM {old_rel} o JOIN {new_rel} n ON {on}");
    let mut agg = vec![
        "count(*)".to_string(),
        format!("count(*) FILTER (WHERE {any_differs})"),
    ];
    for v in &values {
        agg.push(format!("count(*) FILTER (WHERE {})", differs(v)));
        agg.push(
            if super::is_numeric(&v.1) && new.iter().any(|(c, t)| c == &v.0 && super::is_numeric(t))
            {
                format!(
                    "max(abs(CAST(n.{q} AS DOUBLE) - CAST(o.{q} AS DOUBLE)))",
                    q = quote_ident(&v.0)
                )
            } else {
                "CAST(NULL AS DOUBLE)".to_string()
            },
        );
    }
    let row = s.query(&format!("SELECT {} {joined}", agg.join(", ")))?;
    let row = row.rows.first().cloned().unwrap_or_default();
    let get = |i: usize| row.get(i).and_then(Value::as_i64).unwrap_or(0);
    let matched = get(0);
    let changed = get(1);
    let columns = values
        .iter()
        .enumerate()
        .map(|(i, (c, _))| {
            let differing = get(2 + 2 * i);
            ColumnDiff {
                column: c.clone(),
                match_rate: if matched == 0 {
                    100.0
                } else {
                    (matched - differing) as f64 * 100.0 / matched as f64
                },
                differing_rows: differing,
                max_abs_difference: match row.get(3 + 2 * i) {
                    Some(Value::Float(f)) => Some(*f),
                    Some(Value::Int(n)) => Some(*n as f64),
                    Some(Value::Text(t)) => t.parse().ok(),
                    _ => None,
                },
            }
        })
        .collect();
    let duplicates = |rel: &str| {
        one(&format!(
            "SELECT count(*) FROM (SELECT {key_list} FROM {rel} GROUP BY {key_list} HAVING count(*) > 1) d"
        ))
    };
    // Five rows of `sql` (whose columns are `columns`) as text, in order.
    let sample = |sql: String, columns: &[String]| -> Result<Sample> {
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("CAST(x.{q} AS VARCHAR) AS {q}", q = quote_ident(c)))
            .collect();
        let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
        let rows = s.query(&format!(
            "SELECT {} FROM ({sql}) x ORDER BY {} LIMIT 5",
            list.join(", "),
            order.join(", ")
        ))?;
        Ok(Sample {
            columns: rows.columns,
            rows: rows
                .rows
                .iter()
                .map(|r| r.iter().map(|v| v.to_text()).collect())
                .collect(),
        })
    };
    let cast = |alias: &str, c: &str| format!("CAST({alias}.{q} AS VARCHAR)", q = quote_ident(c));
    let mut changed_cols: Vec<String> = key
        .iter()
        .map(|k| format!("{} AS {}", cast("o", k), quote_ident(k)))
        .collect();
    for (c, _) in &values {
        changed_cols.push(format!(
            "{} AS {}",
            cast("o", c),
            quote_ident(&format!("{c} (published)"))
        ));
        changed_cols.push(format!(
            "{} AS {}",
            cast("n", c),
            quote_ident(&format!("{c} (rebuilt)"))
        ));
    }
    let changed_names: Vec<String> = key
        .iter()
        .cloned()
        .chain(
            values
                .iter()
                .flat_map(|(c, _)| [format!("{c} (published)"), format!("{c} (rebuilt)")]),
        )
        .collect();
    let names = |cols: &'_ [(String, String)]| -> Vec<String> {
        cols.iter().map(|(c, _)| c.clone()).collect()
    };
    let (old_names, new_names) = (names(old), names(new));
    Ok(DiffReport {
        schema_version: 1,
        model: subject.name.clone(),
        interval: subject.interval.map(|i| i.to_string()),
        key: key.clone(),
        key_is_all_columns: all_columns,
        schema,
        published_rows,
        rebuilt_rows,
        only_published,
        only_rebuilt,
        matched,
        changed,
        columns,
        duplicate_keys_published: duplicates(old_rel)?,
        duplicate_keys_rebuilt: duplicates(new_rel)?,
        samples_only_published: sample(only_old_sql, &old_names)?,
        samples_only_rebuilt: sample(only_new_sql, &new_names)?,
        samples_changed: sample(
            format!(
                "SELECT {} {joined} WHERE {any_differs}",
                changed_cols.join(", ")
            ),
            &changed_names,
        )?,
    })
}

/// The diff for people.
pub fn render_text(r: &DiffReport) -> String {
    let mut out = format!(
        "Model {}{}: published {} rows, rebuilt now {} rows (key: {}{})\n",
        r.model,
        r.interval
            .as_ref()
            .map(|i| format!(" {i}"))
            .unwrap_or_default(),
        r.published_rows,
        r.rebuilt_rows,
        r.key.join(", "),
        if r.key_is_all_columns {
            ", all columns: the model has no grain"
        } else {
            ""
        }
    );
    if r.schema.is_empty() {
        out.push_str("  same columns and types\n");
    }
    for c in &r.schema {
        let _ = match (&c.published, &c.rebuilt) {
            (Some(t), None) => writeln!(
                out,
                "  column {} ({t}) only in the published model",
                c.column
            ),
            (None, Some(t)) => {
                writeln!(out, "  column {} ({t}) only in the rebuilt model", c.column)
            }
            (Some(a), Some(b)) => writeln!(out, "  column {} type {a} → {b}", c.column),
            (None, None) => Ok(()),
        };
    }
    let _ = writeln!(
        out,
        "  matched {} rows ({} changed), {} only published, {} only rebuilt",
        r.matched, r.changed, r.only_published, r.only_rebuilt
    );
    for c in r.columns.iter().filter(|c| c.differing_rows > 0) {
        let _ = writeln!(
            out,
            "  {:<20} {:.2}% match, {} differ{}",
            c.column,
            c.match_rate,
            c.differing_rows,
            c.max_abs_difference
                .map(|d| format!(", largest difference {d}"))
                .unwrap_or_default()
        );
    }
    if r.duplicate_keys_published + r.duplicate_keys_rebuilt > 0 {
        let _ = writeln!(
            out,
            "  ! the key is not unique: {} duplicate keys published, {} rebuilt",
            r.duplicate_keys_published, r.duplicate_keys_rebuilt
        );
    }
    for (title, sample) in [
        ("only published", &r.samples_only_published),
        ("only rebuilt", &r.samples_only_rebuilt),
        ("changed", &r.samples_changed),
    ] {
        if sample.rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {title} (up to 5): {}", sample.columns.join(" | "));
        for row in &sample.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                .collect();
            let _ = writeln!(out, "    {}", cells.join(" | "));
        }
    }
    if r.only_published + r.only_rebuilt + r.changed == 0 && r.schema.is_empty() {
        out.push_str("  identical\n");
    }
    out
}
