//! A randomized differential test of *Convergence* (DESIGN.md §5), on the real
//! binary: random small projects (CSV sources with a time column; views, tables
//! and incremental models of hour/day/week/month units, windows, star, explicit
//! and qualified column reads, aggregations) and random sequences of operations
//! (edit a column's expression, add a column, change a WHERE, late or repaired
//! source rows, scoped builds, `mark-current`, builds killed at a pause point and
//! resumed, unscoped builds), checked against a clean full rebuild of the same
//! files in a second warehouse:
//!
//! - after every unscoped build, `plan` lists nothing and every published model
//!   equals the clean rebuild;
//! - after every scoped build and every `mark-current`, every interval `plan`
//!   does not list (in `models` or `out_of_scope`) equals the clean rebuild;
//! - a build killed before its publish commits changes neither published data
//!   nor state.
//!
//! `mark-current` is a user's claim. The test only vouches for what is true: for
//! the models of `m+` (views left out) whose whole units before `--end` already
//! equal the clean rebuild of the current files.
//!
//! Knobs: `HUBFORGE_DIFF_CASES` (default 6), `HUBFORGE_DIFF_SHRINK_SECS` (time
//! spent shrinking a failure, default 300; 0 = none), `HUBFORGE_DIFF_KEEP=1` (keep the
//! directories of failing runs). Shrunk failures are saved in
//! `tests/differential.proptest-regressions` and replayed first.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, Timelike};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

// ---------------------------------------------------------------------------
// The case: a project and the operations applied to it
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceKind {
    /// `order_id, order_date DATE, customer_id, status, amount DOUBLE`.
    Orders,
    /// `event_id, event_time TIMESTAMP, user_id, kind, value BIGINT`.
    Events,
}

impl SourceKind {
    fn name(self) -> &'static str {
        match self {
            SourceKind::Orders => "orders",
            SourceKind::Events => "events",
        }
    }

    fn schema(self) -> Schema {
        let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect();
        match self {
            SourceKind::Orders => Schema {
                tc: Some(("order_date".to_string(), false)),
                dims: s(&["customer_id", "status"]),
                nums: s(&["amount"]),
            },
            SourceKind::Events => Schema {
                tc: Some(("event_time".to_string(), true)),
                dims: s(&["user_id", "kind"]),
                nums: s(&["value"]),
            },
        }
    }
}

#[derive(Clone, Debug)]
struct Source {
    name: String,
    kind: SourceKind,
    /// Seeds the rows (a few a day, at least one on the first of each month).
    seed: u64,
    /// At most this many rows a day.
    density: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    View,
    Table,
    Incremental,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Table => "table",
            Kind::Incremental => "incremental",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Hour,
    Day,
    Week,
    Month,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Unit::Hour => "HOUR",
            Unit::Day => "DAY",
            Unit::Week => "WEEK",
            Unit::Month => "MONTH",
        }
    }

    /// The start of the unit containing `t` (weeks start on Monday).
    fn floor(self, t: NaiveDateTime) -> NaiveDateTime {
        let d = t.date();
        match self {
            Unit::Hour => d.and_hms_opt(t.hour(), 0, 0).unwrap(),
            Unit::Day => d.and_hms_opt(0, 0, 0).unwrap(),
            Unit::Week => (d - Duration::days(d.weekday().num_days_from_monday() as i64))
                .and_hms_opt(0, 0, 0)
                .unwrap(),
            Unit::Month => d.with_day(1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
        }
    }
}

/// How a model reads its parent's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// `SELECT order_date, amount * 1 AS c1_1 FROM orders`
    Explicit,
    /// `SELECT *, amount * 1 AS c1_1 FROM orders`
    Star,
    /// `SELECT orders.order_date, orders.amount * 1 AS c1_1 FROM orders`
    Qualified,
}

#[derive(Clone, Debug)]
enum Shape {
    /// Row level: the parent's time column and dimensions, `keep` of its
    /// numbers (all with `Style::Star`), and the computed columns.
    Select { keep: Vec<String> },
    /// Grouped by the time column truncated to `trunc` (if any) and `dims`.
    Agg {
        trunc: Option<Unit>,
        dims: Vec<String>,
    },
    /// One row per unit, over the `n` units of the parent ending with it.
    Window { n: u32, num: String },
}

/// A computed output column: `agg(expr) AS name`, or `expr AS name`.
#[derive(Clone, Debug)]
struct Col {
    name: String,
    /// `sum`, `max`, `count`, or `wsum` for `coalesce(sum(expr), 0)`.
    agg: Option<String>,
    expr: String,
}

impl Col {
    fn sql(&self) -> String {
        let e = match self.agg.as_deref() {
            None => self.expr.clone(),
            Some("wsum") => format!("coalesce(sum({}), 0)", self.expr),
            Some(f) => format!("{f}({})", self.expr),
        };
        format!("{e} AS {}", self.name)
    }

    fn editable(&self) -> bool {
        self.agg.as_deref() != Some("count")
    }
}

#[derive(Clone, Debug)]
struct Model {
    name: String,
    kind: Kind,
    parent: String,
    shape: Shape,
    style: Style,
    unit: Option<Unit>,
    window: u32,
    batch: Option<u32>,
    start: Option<NaiveDate>,
    cols: Vec<Col>,
    /// An extra row filter on the parent's columns.
    filter: Option<String>,
}

impl Model {
    /// The name of the time column the model computes (aggregations, windows).
    fn own_tc(&self) -> String {
        format!("t{}", &self.name[1..])
    }

    /// A parent column as the model's WHERE refers to it.
    fn filter_ref(&self, col: &str) -> String {
        match self.style {
            Style::Qualified => format!("{}.{col}", self.parent),
            _ => col.to_string(),
        }
    }

    /// A parent column as the model's SELECT list refers to it.
    fn col_ref(&self, col: &str) -> String {
        match self.shape {
            Shape::Window { .. } => format!("p.{col}"),
            _ => self.filter_ref(col),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Schema {
    /// Name, and whether it is a TIMESTAMP (else a DATE).
    tc: Option<(String, bool)>,
    dims: Vec<String>,
    nums: Vec<String>,
}

#[derive(Clone, Debug)]
struct Project {
    start: NaiveDate,
    end: NaiveDate,
    sources: Vec<Source>,
    models: Vec<Model>,
}

impl Project {
    fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    fn schema(&self, rel: &str) -> Schema {
        if let Some(s) = self.sources.iter().find(|s| s.name == rel) {
            return s.kind.schema();
        }
        let m = self.model(rel).expect("known relation");
        let ps = self.schema(&m.parent);
        let computed = m.cols.iter().map(|c| c.name.clone());
        match &m.shape {
            Shape::Select { keep } => Schema {
                tc: ps.tc.clone(),
                dims: ps.dims.clone(),
                nums: if m.style == Style::Star {
                    ps.nums.iter().cloned().chain(computed).collect()
                } else {
                    keep.iter().cloned().chain(computed).collect()
                },
            },
            Shape::Agg { trunc, dims } => Schema {
                tc: trunc.map(|u| (m.own_tc(), u == Unit::Hour)),
                dims: dims.clone(),
                nums: computed.collect(),
            },
            Shape::Window { .. } => Schema {
                tc: Some((m.own_tc(), m.unit == Some(Unit::Hour))),
                dims: Vec::new(),
                nums: computed.collect(),
            },
        }
    }

    /// Every model and source `name` reads, directly or not.
    fn ancestors(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            if let Some(m) = self.model(&n)
                && out.insert(m.parent.clone())
            {
                todo.push(m.parent.clone());
            }
        }
        out
    }

    fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }

    fn toml(&self) -> String {
        let mut t = format!(
            "[project]\nname  = \"diff\"\nstart = \"{}\"\nend   = \"{}\"\n\n[warehouse]\npath    = \"warehouse.duckdb\"\nthreads = 2\n",
            self.start, self.end
        );
        for s in &self.sources {
            let (tc, _) = s.kind.schema().tc.unwrap();
            t.push_str(&format!(
                "\n[sources.{0}]\npath        = \"data/{0}/*.csv\"\ntime_column = \"{tc}\"\n",
                s.name
            ));
        }
        t
    }

    fn render(&self, m: &Model) -> String {
        let ps = self.schema(&m.parent);
        let mut h = format!("/* @hubforge\nkind        = \"{}\"\n", m.kind.as_str());
        if m.kind == Kind::Incremental {
            let tc = self
                .schema(&m.name)
                .tc
                .expect("incremental models have a time column");
            h.push_str(&format!("time_column = \"{}\"\n", tc.0));
            h.push_str(&format!("unit        = \"{}\"\n", m.unit.unwrap().as_str()));
            if m.window > 1 {
                h.push_str(&format!("window      = {}\n", m.window));
            }
            if let Some(b) = m.batch {
                h.push_str(&format!("batch       = {b}\n"));
            }
            if let Some(s) = m.start {
                h.push_str(&format!("start       = \"{s}\"\n"));
            }
        }
        h.push_str("*/\n");
        let cols = m.cols.iter().map(Col::sql);
        let mut conds = Vec::new();
        let body = match &m.shape {
            Shape::Select { keep } => {
                let mut items: Vec<String> = Vec::new();
                if m.style == Style::Star {
                    items.push("*".to_string());
                } else {
                    items.extend(ps.tc.iter().map(|(tc, _)| m.col_ref(tc)));
                    items.extend(ps.dims.iter().map(|d| m.col_ref(d)));
                    items.extend(keep.iter().map(|n| m.col_ref(n)));
                }
                items.extend(cols);
                if m.kind == Kind::Incremental {
                    let tc = m.filter_ref(&ps.tc.as_ref().unwrap().0);
                    conds.push(format!("{tc} >= {{{{ start }}}}"));
                    conds.push(format!("{tc} < {{{{ end }}}}"));
                }
                conds.extend(m.filter.iter().map(|f| format!("({f})")));
                format!(
                    "SELECT\n    {}\nFROM {}\n{}",
                    items.join(",\n    "),
                    m.parent,
                    where_clause(&conds)
                )
            }
            Shape::Agg { trunc, dims } => {
                let mut items = Vec::new();
                let mut group = Vec::new();
                if let Some(u) = trunc {
                    let (tc, _) = ps.tc.as_ref().unwrap();
                    let ty = if *u == Unit::Hour {
                        "TIMESTAMP"
                    } else {
                        "DATE"
                    };
                    let e = format!(
                        "CAST(date_trunc('{}', {}) AS {ty})",
                        u.as_str(),
                        m.col_ref(tc)
                    );
                    items.push(format!("{e} AS {}", m.own_tc()));
                    group.push(e);
                    if m.kind == Kind::Incremental {
                        conds.push(format!("{} >= {{{{ start }}}}", m.filter_ref(tc)));
                        conds.push(format!("{} < {{{{ end }}}}", m.filter_ref(tc)));
                    }
                }
                for d in dims {
                    items.push(m.col_ref(d));
                    group.push(m.col_ref(d));
                }
                items.extend(cols);
                conds.extend(m.filter.iter().map(|f| format!("({f})")));
                let mut sql = format!(
                    "SELECT\n    {}\nFROM {}\n{}",
                    items.join(",\n    "),
                    m.parent,
                    where_clause(&conds)
                );
                if !group.is_empty() {
                    sql.push_str(&format!("GROUP BY {}\n", group.join(", ")));
                }
                sql
            }
            Shape::Window { n, num } => {
                let u = m.unit.unwrap();
                let ty = if u == Unit::Hour { "TIMESTAMP" } else { "DATE" };
                let (tc, _) = ps.tc.as_ref().unwrap();
                let back = n - 1;
                let us = u.sql();
                let extra = m
                    .filter
                    .iter()
                    .map(|f| format!("\n      AND ({f})"))
                    .collect::<String>();
                let mut items = vec![format!("cal.t AS {}", m.own_tc())];
                items.extend(cols);
                format!(
                    "-- each {unit} reads the {n} {unit}s of {parent} ending with it\n\
                     SELECT\n    {items}\n\
                     FROM (\n    SELECT CAST(g.r AS {ty}) AS t\n    FROM range({{{{ start }}}}, {{{{ end }}}}, INTERVAL 1 {us}) AS g(r)\n) AS cal\n\
                     LEFT JOIN (\n    SELECT {tc}, {num}\n    FROM {parent}\n    WHERE {tc} >= {{{{ start }}}} - INTERVAL {back} {us}\n      AND {tc} < {{{{ end }}}}{extra}\n) AS p\n\
                     \x20 ON p.{tc} >= cal.t - INTERVAL {back} {us}\n AND p.{tc} < cal.t + INTERVAL 1 {us}\n\
                     GROUP BY cal.t\n",
                    unit = u.as_str(),
                    parent = m.parent,
                    items = items.join(",\n    "),
                )
            }
        };
        h + &body
    }
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}\n", conds.join("\n  AND "))
    }
}

/// What a build covers.
#[derive(Clone, Debug, Default, PartialEq)]
struct Scope {
    select: Option<String>,
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
    backfill: bool,
}

impl Scope {
    fn is_unscoped(&self) -> bool {
        self.select.is_none() && self.start.is_none() && self.end.is_none()
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec!["build".to_string()];
        if let Some(s) = &self.select {
            a.extend(["--select".to_string(), s.clone()]);
        }
        if let Some(s) = self.start {
            a.extend(["--start".to_string(), s.to_string()]);
        }
        if let Some(e) = self.end {
            a.extend(["--end".to_string(), e.to_string()]);
        }
        if self.backfill {
            a.push("--backfill".to_string());
        }
        a
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.args().join(" "))
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Replace the expression of a computed column.
    EditExpr {
        model: String,
        column: String,
        from: String,
        to: String,
    },
    AddColumn {
        model: String,
        column: Col,
    },
    SetWhere {
        model: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// Append rows for `day` to the source's file of that month.
    LateRows {
        source: String,
        day: NaiveDate,
        rows: u8,
    },
    /// Change the values of every row of `day` in place.
    RepairDay {
        source: String,
        day: NaiveDate,
    },
    Build(Scope),
    /// `mark-current` for the models of `model+` whose data before `end` is right.
    MarkCurrent {
        model: String,
        end: NaiveDate,
    },
    /// A build SIGKILLed at `pause` (`HUBFORGE_PAUSE_AT`), then a build with `then`.
    KillResume {
        pause: String,
        first: Scope,
        then: Scope,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::EditExpr {
                model,
                column,
                from,
                to,
            } => write!(f, "edit {model}.{column}: `{from}` -> `{to}`"),
            Op::AddColumn { model, column } => {
                write!(f, "add column to {model}: `{}`", column.sql())
            }
            Op::SetWhere { model, from, to } => write!(
                f,
                "change the WHERE of {model}: {} -> {}",
                from.as_deref()
                    .map_or("(none)".to_string(), |s| format!("`{s}`")),
                to.as_deref()
                    .map_or("(none)".to_string(), |s| format!("`{s}`"))
            ),
            Op::LateRows { source, day, rows } => {
                write!(f, "late data: {rows} new row(s) of {source} on {day}")
            }
            Op::RepairDay { source, day } => {
                write!(f, "repair {source} on {day} in place (values change)")
            }
            Op::Build(s) => write!(f, "hubforge {s}"),
            Op::MarkCurrent { model, end } => write!(
                f,
                "hubforge mark-current --select <the models of {model}+ whose data before {end} is right> --end {end}"
            ),
            Op::KillResume { pause, first, then } => write!(
                f,
                "HUBFORGE_PAUSE_AT={pause} hubforge {first}  (SIGKILL there), then hubforge {then}"
            ),
        }
    }
}

#[derive(Clone)]
struct Case {
    project: Project,
    ops: Vec<Op>,
}

/// One line a model, one line an operation: what proptest prints and keeps.
impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.project;
        writeln!(f, "project {} .. {}", p.start, p.end)?;
        for s in &p.sources {
            writeln!(
                f,
                "source {} ({:?}, seed {}, up to {} rows a day)",
                s.name, s.kind, s.seed, s.density
            )?;
        }
        for m in &p.models {
            let sql = p.render(m);
            let (_, body) = sql.split_once("*/").unwrap_or(("", &sql));
            let mut header = vec![m.kind.as_str().to_string()];
            header.extend(m.unit.map(|u| u.as_str().to_string()));
            if m.window > 1 {
                header.push(format!("window={}", m.window));
            }
            header.extend(m.batch.map(|b| format!("batch={b}")));
            header.extend(m.start.map(|s| format!("start={s}")));
            let body: Vec<&str> = body
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .flat_map(str::split_whitespace)
                .collect();
            writeln!(f, "{} [{}]: {}", m.name, header.join(" "), body.join(" "))?;
        }
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "{}. {op}", i + 1)?;
        }
        Ok(())
    }
}

impl Case {
    /// The case as a reader wants it: sources, initial files, operations.
    fn describe(&self) -> String {
        let p = &self.project;
        let mut s = format!("project {} .. {} (end exclusive)\n", p.start, p.end);
        for src in &p.sources {
            s.push_str(&format!(
                "source {} ({:?}): up to {} rows a day, seed {}\n",
                src.name, src.kind, src.density, src.seed
            ));
        }
        for m in &p.models {
            s.push_str(&format!("--- models/{}.sql\n{}", m.name, p.render(m)));
        }
        s.push_str("operations (after an initial `hubforge build`):\n");
        for (i, op) in self.ops.iter().enumerate() {
            s.push_str(&format!("{:>3}. {op}\n", i + 1));
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Source rows
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Row {
    id: u64,
    t: NaiveDateTime,
    a: i64,
    b: &'static str,
    /// Cents of `amount` (orders) or `value` (events).
    v: i64,
}

/// splitmix64: rows from a seed, the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

fn make_row(kind: SourceKind, id: u64, day: NaiveDate, rng: &mut Rng) -> Row {
    match kind {
        SourceKind::Orders => Row {
            id,
            t: day.and_hms_opt(0, 0, 0).unwrap(),
            a: 1 + rng.below(4) as i64,
            b: if rng.below(5) == 0 {
                "cancelled"
            } else {
                "placed"
            },
            v: 500 + rng.below(9500) as i64,
        },
        SourceKind::Events => Row {
            id,
            t: day
                .and_hms_opt(rng.below(24) as u32, rng.below(60) as u32, 0)
                .unwrap(),
            a: 1 + rng.below(3) as i64,
            b: if rng.below(2) == 0 { "view" } else { "click" },
            v: 1 + rng.below(20) as i64,
        },
    }
}

fn initial_rows(src: &Source, start: NaiveDate, end: NaiveDate) -> Vec<Row> {
    let mut rng = Rng(src.seed);
    let mut rows = Vec::new();
    let mut id = 1;
    let mut day = start;
    while day < end {
        let mut n = rng.below(u64::from(src.density) + 1);
        if day.day() == 1 {
            // Every monthly file has a row: CSV types are sniffed per file.
            n = n.max(1);
        }
        for _ in 0..n {
            rows.push(make_row(src.kind, id, day, &mut rng));
            id += 1;
        }
        day += Duration::days(1);
    }
    rows
}

fn csv(kind: SourceKind, rows: &[&Row]) -> String {
    let mut out = match kind {
        SourceKind::Orders => "order_id,order_date,customer_id,status,amount\n".to_string(),
        SourceKind::Events => "event_id,event_time,user_id,kind,value\n".to_string(),
    };
    for r in rows {
        match kind {
            SourceKind::Orders => out.push_str(&format!(
                "{},{},{},{},{}.{:02}\n",
                r.id,
                r.t.date(),
                r.a,
                r.b,
                r.v / 100,
                r.v % 100
            )),
            SourceKind::Events => out.push_str(&format!(
                "{},{},{},{},{}\n",
                r.id,
                r.t.format("%Y-%m-%d %H:%M:%S"),
                r.a,
                r.b,
                r.v
            )),
        }
    }
    out
}

/// Every file of the project, by path.
fn project_files(p: &Project, data: &[Vec<Row>]) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert("hubforge.toml".to_string(), p.toml());
    for m in &p.models {
        files.insert(format!("models/{}.sql", m.name), p.render(m));
    }
    for (src, rows) in p.sources.iter().zip(data) {
        let mut month = p.start;
        while month < p.end {
            let next = month + Months::new(1);
            let in_month: Vec<&Row> = rows
                .iter()
                .filter(|r| r.t.date() >= month && r.t.date() < next)
                .collect();
            files.insert(
                format!("data/{}/{}.csv", src.name, month.format("%Y-%m")),
                csv(src.kind, &in_month),
            );
            month = next;
        }
    }
    files
}

/// Apply an edit of the files (models or source rows); builds are not edits.
fn apply_edit(p: &mut Project, data: &mut [Vec<Row>], op: &Op) {
    match op {
        Op::EditExpr {
            model, column, to, ..
        } => {
            let m = p.models.iter_mut().find(|m| &m.name == model).unwrap();
            let c = m.cols.iter_mut().find(|c| &c.name == column).unwrap();
            c.expr = to.clone();
        }
        Op::AddColumn { model, column } => {
            let m = p.models.iter_mut().find(|m| &m.name == model).unwrap();
            m.cols.push(column.clone());
        }
        Op::SetWhere { model, to, .. } => {
            let m = p.models.iter_mut().find(|m| &m.name == model).unwrap();
            m.filter = to.clone();
        }
        Op::LateRows { source, day, rows } => {
            let i = p.sources.iter().position(|s| &s.name == source).unwrap();
            let next = data[i].iter().map(|r| r.id).max().unwrap_or(0) + 1;
            for k in 0..u64::from(*rows) {
                let id = next + k;
                let mut rng = Rng(p.sources[i].seed ^ id.wrapping_mul(0x2545_F491_4F6C_DD1D));
                data[i].push(make_row(p.sources[i].kind, id, *day, &mut rng));
            }
        }
        Op::RepairDay { source, day } => {
            let i = p.sources.iter().position(|s| &s.name == source).unwrap();
            let kind = p.sources[i].kind;
            let mut first = true;
            for r in data[i].iter_mut().filter(|r| r.t.date() == *day) {
                r.v += if kind == SourceKind::Orders { 125 } else { 1 };
                if first {
                    r.b = match r.b {
                        "placed" => "cancelled",
                        "cancelled" => "placed",
                        "view" => "click",
                        _ => "view",
                    };
                    first = false;
                }
            }
        }
        Op::Build(_) | Op::MarkCurrent { .. } | Op::KillResume { .. } => {}
    }
}

// ---------------------------------------------------------------------------
// Generation: raw random choices turned into a valid case
// ---------------------------------------------------------------------------

/// Random choices for one model; 0 is the simplest choice of each.
#[derive(Clone, Debug)]
struct ModelRaw {
    kind: u8,
    parent: usize,
    shape: u8,
    unit: u8,
    small_batch: bool,
    style: u8,
    extra: u8,
    misc: u8,
}

/// Random choices for one operation.
#[derive(Clone, Debug)]
struct OpRaw {
    kind: u8,
    a: usize,
    b: usize,
    c: u8,
    d: u8,
    e: u8,
    f: usize,
}

fn units_for(ts: bool) -> Vec<Unit> {
    let mut u = vec![Unit::Day, Unit::Week, Unit::Month];
    if ts {
        u.push(Unit::Hour);
    }
    u
}

/// A row filter on the columns of `ps`, as `m` refers to them.
fn predicate(m: &Model, ps: &Schema, pick: usize, k: u8) -> String {
    let n = ps.nums.len() + ps.dims.len();
    let i = pick % n;
    if i < ps.nums.len() {
        format!("{} > {}", m.filter_ref(&ps.nums[i]), k % 20)
    } else {
        let d = &ps.dims[i - ps.nums.len()];
        let r = m.filter_ref(d);
        match d.as_str() {
            "status" => format!("{r} <> 'cancelled'"),
            "kind" => format!("{r} = 'click'"),
            _ => format!("{r} <> {}", 1 + k % 3),
        }
    }
}

fn make_model(p: &Project, idx: usize, raw: &ModelRaw) -> Model {
    let name = format!("m{idx}");
    let kind = match raw.kind % 4 {
        1 => Kind::Table,
        2 => Kind::View,
        _ => Kind::Incremental,
    };
    let rels: Vec<String> = p
        .sources
        .iter()
        .map(|s| s.name.clone())
        .chain(p.models.iter().map(|m| m.name.clone()))
        .collect();
    let candidates: Vec<&String> = rels
        .iter()
        .filter(|r| kind != Kind::Incremental || p.schema(r).tc.is_some())
        .collect();
    // 0 picks the most recent relation: chains are the simplest deep DAGs.
    let parent = candidates[candidates.len() - 1 - raw.parent % candidates.len()].clone();
    let ps = p.schema(&parent);
    let ts = ps.tc.as_ref().is_some_and(|(_, ts)| *ts);
    let units = units_for(ts);
    let pick_unit = |i: u8| units[i as usize % units.len()];
    let mut m = Model {
        name: name.clone(),
        kind,
        parent,
        shape: Shape::Select { keep: Vec::new() },
        style: Style::Explicit,
        unit: None,
        window: 1,
        batch: None,
        start: None,
        cols: Vec::new(),
        filter: None,
    };
    let c = |k: usize| format!("c{}_{k}", idx);
    let num = ps.nums[raw.extra as usize % ps.nums.len()].clone();
    // 0 = select, 1 = aggregate with time, 2 = aggregate without time / window.
    let shape = raw.shape % 3;
    match (kind, shape) {
        (Kind::Incremental, 2) => {
            let unit = pick_unit(raw.unit);
            let n = 2 + u32::from(raw.misc % 3);
            m.shape = Shape::Window {
                n,
                num: num.clone(),
            };
            m.unit = Some(unit);
            m.window = n;
            m.cols = vec![
                Col {
                    name: c(1),
                    agg: Some("count".to_string()),
                    expr: format!("p.{}", ps.tc.as_ref().unwrap().0),
                },
                Col {
                    name: c(2),
                    agg: Some("wsum".to_string()),
                    expr: format!("p.{num}"),
                },
            ];
        }
        (Kind::Incremental, 1) | (Kind::Table, 1) | (Kind::Table, 2) | (Kind::View, 2) => {
            let trunc = if shape == 1 && ps.tc.is_some() {
                Some(pick_unit(raw.unit))
            } else {
                None
            };
            if raw.style % 8 == 7 && std::env::var_os("TMP_NO_QUAL").is_none() {
                m.style = Style::Qualified;
            }
            let dims = if !ps.dims.is_empty() && raw.extra % 2 == 1 {
                vec![ps.dims[(raw.extra as usize / 2) % ps.dims.len()].clone()]
            } else {
                Vec::new()
            };
            m.shape = Shape::Agg { trunc, dims };
            if kind == Kind::Incremental {
                let t = trunc.unwrap();
                // A coarser unit the truncation divides.
                m.unit = Some(match (t, raw.misc % 4) {
                    (Unit::Hour, 3) => Unit::Day,
                    (Unit::Day, 3) => Unit::Week,
                    (Unit::Day, 2) => Unit::Month,
                    _ => t,
                });
            }
            m.cols = vec![
                Col {
                    name: c(1),
                    agg: Some("count".to_string()),
                    expr: "*".to_string(),
                },
                Col {
                    name: c(2),
                    agg: Some("sum".to_string()),
                    expr: m.col_ref(&num),
                },
            ];
        }
        _ => {
            m.style = match raw.style % 8 {
                0..=3 => Style::Explicit,
                4..=6 => Style::Star,
                _ if std::env::var_os("TMP_NO_QUAL").is_some() => Style::Star,
                _ => Style::Qualified,
            };
            if kind == Kind::Incremental {
                m.unit = Some(pick_unit(raw.unit));
            }
            let keep = if m.style == Style::Star {
                Vec::new()
            } else {
                ps.nums
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| (raw.extra >> (j % 8)) & 1 == 0)
                    .map(|(_, n)| n.clone())
                    .collect()
            };
            m.shape = Shape::Select { keep };
            if m.style != Style::Star || raw.extra % 2 == 1 {
                let r = m.col_ref(&num);
                let expr = match raw.misc % 3 {
                    0 => format!("{r} * 1"),
                    1 => format!("{r} + 0"),
                    _ => format!("round({r}, 2)"),
                };
                m.cols = vec![Col {
                    name: c(1),
                    agg: None,
                    expr,
                }];
            }
        }
    }
    if m.unit == Some(Unit::Hour) {
        // Hourly history is kept short: the last few days.
        m.start = Some(p.end - Duration::days(2 + i64::from(raw.misc % 3)));
        if raw.misc.is_multiple_of(2) {
            m.batch = Some(24);
        }
    } else if m.kind == Kind::Incremental && raw.small_batch {
        m.batch = Some(match m.unit.unwrap() {
            Unit::Day => 10,
            Unit::Week => 2,
            _ => 1,
        });
    }
    if raw.misc / 4 % 4 == 3 {
        m.filter = Some(predicate(&m, &ps, raw.extra as usize, raw.misc));
    }
    m
}

fn make_scope(p: &Project, sel: u8, model: usize, range: u8, s: usize, len: usize) -> Scope {
    let days = p.days() as usize;
    let select = match sel % 4 {
        0 => None,
        k => {
            let m = &p.models[model % p.models.len()].name;
            Some(match k {
                1 => m.clone(),
                2 => format!("{m}+"),
                _ => format!("+{m}"),
            })
        }
    };
    let s = s % days;
    let e = (s + 1 + len % days).min(days);
    let at = |d: usize| p.start + Duration::days(d as i64);
    let (start, end) = match range % 4 {
        0 => (None, None),
        1 => (Some(at(s)), None),
        2 => (None, Some(at(1 + len % days))),
        _ => (Some(at(s)), Some(at(e))),
    };
    Scope {
        select,
        start,
        end,
        backfill: false,
    }
}

fn resolve_op(
    p: &Project,
    data: &[Vec<Row>],
    dated: &mut Option<(String, NaiveDate)>,
    r: &OpRaw,
) -> Op {
    let days = p.days() as usize;
    let day_at = |x: usize| p.start + Duration::days((x % days) as i64);
    let n = p.models.len();
    let add_column = |p: &Project| {
        let m = &p.models[r.a % n];
        let ps = p.schema(&m.parent);
        let name = format!("c{}_{}", &m.name[1..], m.cols.len() + 1);
        let column = match &m.shape {
            Shape::Select { .. } => Col {
                name,
                agg: None,
                expr: format!(
                    "{} * {}",
                    m.col_ref(&ps.nums[r.b % ps.nums.len()]),
                    2 + r.c % 3
                ),
            },
            Shape::Agg { .. } => Col {
                name,
                agg: Some("max".to_string()),
                expr: m.col_ref(&ps.nums[r.b % ps.nums.len()]),
            },
            Shape::Window { num, .. } => Col {
                name,
                agg: Some("max".to_string()),
                expr: format!("p.{num}"),
            },
        };
        Op::AddColumn {
            model: m.name.clone(),
            column,
        }
    };
    match r.kind % 10 {
        1 | 2 => {
            let mut s = make_scope(p, r.c, r.a, r.d, r.b, r.f);
            s.backfill = r.e % 8 == 7;
            Op::Build(s)
        }
        3 => {
            let editable: Vec<(usize, usize)> = p
                .models
                .iter()
                .enumerate()
                .flat_map(|(i, m)| {
                    m.cols
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.editable())
                        .map(move |(j, _)| (i, j))
                })
                .collect();
            if editable.is_empty() {
                return add_column(p);
            }
            let (i, j) = editable[r.a % editable.len()];
            let m = &p.models[i];
            let old = m.cols[j].expr.clone();
            let tc = p.schema(&m.parent).tc.map(|(tc, _)| m.col_ref(&tc));
            let to = match (r.c % 5, tc) {
                (0, _) => format!("({old}) * 2"),
                (1, _) => format!("({old}) + 1"),
                (2, _) => format!("round(({old}) * 1.1, 1)"),
                (_, Some(tc)) => {
                    // A correction that only touches rows from `day` on.
                    let day = day_at(r.b);
                    *dated = Some((m.name.clone(), day));
                    format!("CASE WHEN {tc} >= DATE '{day}' THEN ({old}) * 3 ELSE {old} END")
                }
                (_, None) => format!("({old}) * 2"),
            };
            Op::EditExpr {
                model: m.name.clone(),
                column: m.cols[j].name.clone(),
                from: old,
                to,
            }
        }
        4 => add_column(p),
        5 => {
            let m = &p.models[r.a % n];
            let ps = p.schema(&m.parent);
            let to = if r.c.is_multiple_of(3) && m.filter.is_some() {
                None
            } else {
                Some(predicate(m, &ps, r.b, r.d))
            };
            Op::SetWhere {
                model: m.name.clone(),
                from: m.filter.clone(),
                to,
            }
        }
        6 => Op::LateRows {
            source: p.sources[r.a % p.sources.len()].name.clone(),
            day: day_at(r.b),
            rows: 1 + r.c % 3,
        },
        7 => {
            let i = r.a % p.sources.len();
            let with_rows: Vec<NaiveDate> = data[i]
                .iter()
                .map(|row| row.t.date())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            Op::RepairDay {
                source: p.sources[i].name.clone(),
                day: with_rows[r.b % with_rows.len()],
            }
        }
        8 => {
            let pause = match r.c % 3 {
                0 => format!("stage:{}", 1 + r.d % 4),
                1 => "validate:0".to_string(),
                _ => format!("publish:{}", 1 + r.d % 8),
            };
            let first = if r.e.is_multiple_of(3) {
                Scope::default()
            } else {
                make_scope(p, r.e / 3, r.a, r.d / 4, r.b, r.f)
            };
            let then = match r.e / 12 % 4 {
                0 => first.clone(),
                1 => Scope::default(),
                _ => make_scope(p, r.c / 3, r.f, r.e, r.f / 7, r.b / 5),
            };
            Op::KillResume { pause, first, then }
        }
        9 => match dated {
            Some((model, end)) if r.c.is_multiple_of(2) && p.model(model).is_some() => {
                Op::MarkCurrent {
                    model: model.clone(),
                    end: *end,
                }
            }
            _ => Op::MarkCurrent {
                model: p.models[r.a % n].name.clone(),
                end: day_at(1 + r.b % (days - 1)),
            },
        },
        _ => Op::Build(Scope::default()),
    }
}

fn build_case(
    months: u32,
    raw_sources: Vec<(bool, u64, u8)>,
    raw_models: Vec<ModelRaw>,
    raw_ops: Vec<OpRaw>,
) -> Case {
    let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let end = start + Months::new(months);
    let mut sources: Vec<Source> = Vec::new();
    for (i, (events, seed, density)) in raw_sources.into_iter().enumerate() {
        let kind = if events {
            SourceKind::Events
        } else {
            SourceKind::Orders
        };
        let name = if sources.iter().any(|s| s.name == kind.name()) {
            format!("{}{}", kind.name(), i + 1)
        } else {
            kind.name().to_string()
        };
        sources.push(Source {
            name,
            kind,
            seed,
            density: 1 + density,
        });
    }
    let mut project = Project {
        start,
        end,
        sources,
        models: Vec::new(),
    };
    for (i, raw) in raw_models.iter().enumerate() {
        let m = make_model(&project, i + 1, raw);
        project.models.push(m);
    }
    let initial = project.clone();
    let mut data: Vec<Vec<Row>> = project
        .sources
        .iter()
        .map(|s| initial_rows(s, start, end))
        .collect();
    let mut ops = Vec::new();
    let mut dated = None;
    for raw in &raw_ops {
        let op = resolve_op(&project, &data, &mut dated, raw);
        apply_edit(&mut project, &mut data, &op);
        ops.push(op);
    }
    if !matches!(ops.last(), Some(Op::Build(s)) if s.is_unscoped()) {
        ops.push(Op::Build(Scope::default()));
    }
    Case {
        project: initial,
        ops,
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    // Small ranges shrink in few steps; 0 is the simplest choice of each.
    let model = (
        (0u8..4, 0usize..8, 0u8..3, 0u8..4),
        (any::<bool>(), 0u8..8, 0u8..16, 0u8..16),
    )
        .prop_map(
            |((kind, parent, shape, unit), (small_batch, style, extra, misc))| ModelRaw {
                kind,
                parent,
                shape,
                unit,
                small_batch,
                style,
                extra,
                misc,
            },
        );
    let op = (
        0u8..10,
        0usize..64,
        0usize..128,
        0u8..16,
        0u8..16,
        0u8..48,
        0usize..128,
    )
        .prop_map(|(kind, a, b, c, d, e, f)| OpRaw {
            kind,
            a,
            b,
            c,
            d,
            e,
            f,
        });
    // Operations first: proptest shrinks a tuple in order, and fewer
    // operations make the shortest story.
    (
        prop::collection::vec(op, 3..=8),
        prop::collection::vec(model, 3..=8),
        prop::collection::vec((any::<bool>(), 0u64..1000, 0u8..3), 1..=2),
        0u32..3,
    )
        .prop_map(|(ops, models, sources, months)| build_case(months + 2, sources, models, ops))
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// A read-only connection to a project's warehouse.
struct Db(duckdb::Connection);

impl Db {
    fn open(dir: &Path) -> Result<Db, String> {
        let config = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .map_err(|e| e.to_string())?;
        duckdb::Connection::open_with_flags(dir.join("warehouse.duckdb"), config)
            .map(Db)
            .map_err(|e| format!("opening the warehouse of {}: {e}", dir.display()))
    }

    fn rows(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let mut stmt = self.0.prepare(sql).map_err(|e| format!("{sql}: {e}"))?;
        let mut rows = stmt.query([]).map_err(|e| format!("{sql}: {e}"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| format!("{sql}: {e}"))? {
            let n = row.as_ref().column_count();
            out.push(
                (0..n)
                    .map(|i| match row.get::<_, duckdb::types::Value>(i) {
                        Ok(duckdb::types::Value::Null) => "NULL".to_string(),
                        Ok(duckdb::types::Value::Text(s)) => s,
                        Ok(v) => format!("{v:?}"),
                        Err(e) => format!("<{e}>"),
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    /// Columns of a published model: (name, type).
    fn columns(&self, name: &str) -> Result<Vec<(String, String)>, String> {
        Ok(self
            .rows(&format!(
                "SELECT column_name, data_type FROM information_schema.columns \
                 WHERE table_schema = 'main' AND table_name = '{name}' ORDER BY ordinal_position"
            ))?
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect())
    }

    /// A model's rows matching `filter`, as sorted text, numbers rounded so that
    /// the order of a summation cannot matter.
    fn model_rows(
        &self,
        name: &str,
        cols: &[(String, String)],
        filter: &str,
    ) -> Result<Vec<String>, String> {
        let items: Vec<String> = cols
            .iter()
            .map(|(c, ty)| {
                let floaty = ["DOUBLE", "FLOAT", "REAL", "DECIMAL"]
                    .iter()
                    .any(|f| ty.starts_with(f));
                let v = if floaty {
                    format!("CAST(round(\"{c}\", 4) AS DECIMAL(18,4))")
                } else {
                    format!("\"{c}\"")
                };
                format!("coalesce(CAST({v} AS VARCHAR), 'NULL')")
            })
            .collect();
        let mut rows: Vec<String> = self
            .rows(&format!(
                "SELECT concat_ws(' | ', {}) FROM main.\"{name}\" WHERE {filter}",
                items.join(", ")
            ))?
            .into_iter()
            .map(|r| r.join(""))
            .collect();
        rows.sort();
        Ok(rows)
    }

    /// Every row users see (`main`) and of hubforge's state, as text. The run
    /// log is left out: it records failed and interrupted runs too.
    fn snapshot(&self) -> Result<Vec<String>, String> {
        let tables = self.rows(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema = 'main' OR (table_schema = '_hubforge' AND table_type = 'BASE TABLE' AND table_name <> 'runs') ORDER BY 1, 2",
        )?;
        let mut out = Vec::new();
        for t in tables {
            let name = format!("\"{}\".\"{}\"", t[0], t[1]);
            out.push(format!("== {name}"));
            let mut rows: Vec<String> = self
                .rows(&format!("SELECT CAST(t AS VARCHAR) FROM {name} t"))?
                .into_iter()
                .map(|r| r.join(""))
                .collect();
            rows.sort();
            out.extend(rows);
        }
        Ok(out)
    }
}

/// What `plan` lists for a model: intervals (or the whole model).
#[derive(Debug, Default)]
struct Listed {
    full: bool,
    intervals: Vec<(String, String)>,
}

fn listed(plan: &serde_json::Value) -> BTreeMap<String, Listed> {
    let mut out: BTreeMap<String, Listed> = BTreeMap::new();
    for list in ["models", "out_of_scope"] {
        for m in plan[list].as_array().into_iter().flatten() {
            let e = out
                .entry(m["name"].as_str().unwrap_or_default().to_lowercase())
                .or_default();
            e.full |= m["full"].as_bool().unwrap_or(false);
            for iv in m["intervals"].as_array().into_iter().flatten() {
                e.intervals.push((
                    iv[0].as_str().unwrap_or_default().to_string(),
                    iv[1].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

fn short_plan(plan: &serde_json::Value) -> String {
    let mut s = String::new();
    for list in ["models", "out_of_scope"] {
        for m in plan[list].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "  {list}: {} {} full={} intervals={} reason: {}\n",
                m["name"].as_str().unwrap_or_default(),
                m["change"].as_str().unwrap_or_default(),
                m["full"],
                m["intervals"],
                m["reason"].as_str().unwrap_or_default()
            ));
        }
    }
    s
}

/// The rows only one side has, at most a few of each.
fn row_diff(published: &[String], clean: &[String]) -> String {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for r in published {
        *count.entry(r).or_default() += 1;
    }
    for r in clean {
        *count.entry(r).or_default() -= 1;
    }
    let only = |sign: i64| {
        count
            .iter()
            .filter(|(_, n)| n.signum() == sign)
            .map(|(r, _)| format!("      {r}\n"))
            .collect::<Vec<_>>()
    };
    let (p, c) = (only(1), only(-1));
    format!(
        "    {} rows published, {} in the clean rebuild\n    only published ({}):\n{}    only in the clean rebuild ({}):\n{}",
        published.len(),
        clean.len(),
        p.len(),
        p.iter().take(6).cloned().collect::<String>(),
        c.len(),
        c.iter().take(6).cloned().collect::<String>()
    )
}

struct Runner {
    project: Project,
    data: Vec<Vec<Row>>,
    dir: tempfile::TempDir,
    written: BTreeMap<String, String>,
    clean: Option<(u64, tempfile::TempDir)>,
    log: Vec<String>,
    /// Sources changed since the last unscoped build.
    touched: BTreeSet<String>,
    /// Columns added by the operations so far.
    added: BTreeSet<String>,
}

impl Runner {
    fn new(case: &Case) -> Runner {
        let data = case
            .project
            .sources
            .iter()
            .map(|s| initial_rows(s, case.project.start, case.project.end))
            .collect();
        Runner {
            project: case.project.clone(),
            data,
            dir: tempfile::tempdir().expect("tempdir"),
            written: BTreeMap::new(),
            clean: None,
            log: Vec::new(),
            touched: BTreeSet::new(),
            added: BTreeSet::new(),
        }
    }

    fn files(&self) -> BTreeMap<String, String> {
        project_files(&self.project, &self.data)
    }

    /// Write the files that changed (the others keep their modification time).
    fn sync(&mut self) {
        let files = self.files();
        for (path, text) in &files {
            if self.written.get(path) != Some(text) {
                write_file(self.dir.path(), path, text);
            }
        }
        self.written = files;
    }

    fn run(&self, dir: &Path, args: &[String]) -> Result<String, String> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = common::hubforge(dir, &args);
        if out.status.success() {
            Ok(common::stdout(&out))
        } else {
            Err(format!(
                "`hubforge {}` failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                common::stdout(&out),
                common::stderr(&out)
            ))
        }
    }

    fn plan(&self) -> Result<serde_json::Value, String> {
        let out = self.run(
            self.dir.path(),
            &[
                "plan".to_string(),
                "--format".to_string(),
                "json".to_string(),
            ],
        )?;
        serde_json::from_str(&out).map_err(|e| format!("plan json: {e}\n{out}"))
    }

    /// A clean full build of the current files in a second warehouse.
    fn clean_dir(&mut self) -> Result<PathBuf, String> {
        let files = self.files();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        files.hash(&mut h);
        let key = h.finish();
        if let Some((k, dir)) = &self.clean
            && *k == key
        {
            return Ok(dir.path().to_path_buf());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in &files {
            write_file(dir.path(), path, text);
        }
        self.run(dir.path(), &["build".to_string()])
            .map_err(|e| format!("the clean rebuild of the current files failed: {e}"))?;
        let path = dir.path().to_path_buf();
        self.clean = Some((key, dir));
        Ok(path)
    }

    /// Compare one published model with the clean rebuild, on rows matching `filter`.
    /// With `all_columns: false` (a model with listed intervals, whose columns
    /// may still change), only the columns both sides have are compared.
    fn compare(
        &self,
        work: &Db,
        clean: &Db,
        name: &str,
        filter: &str,
        what: &str,
        all_columns: bool,
    ) -> Result<(), String> {
        let mut wc = work.columns(name)?;
        let mut cc = clean.columns(name)?;
        if wc.is_empty() {
            return Err(format!("{name} ({what}): not published"));
        }
        if all_columns && wc != cc {
            return Err(format!(
                "{name} ({what}): columns differ\n    published: {wc:?}\n    clean:     {cc:?}"
            ));
        }
        let common = |a: &mut Vec<(String, String)>, b: &[(String, String)]| {
            a.retain(|(n, _)| b.iter().any(|(m, _)| m == n));
            a.sort();
        };
        if !all_columns {
            let w0 = wc.clone();
            common(&mut wc, &cc);
            common(&mut cc, &w0);
        }
        let w = work.model_rows(name, &wc, filter)?;
        let c = clean.model_rows(name, &cc, filter)?;
        if w != c {
            return Err(format!(
                "{name} ({what}): rows differ from the clean rebuild\n{}",
                row_diff(&w, &c)
            ));
        }
        Ok(())
    }

    fn note(&mut self, s: String) {
        self.log.push(s);
    }

    /// After an unscoped build: nothing is stale and everything equals the clean rebuild.
    fn check_converged(&mut self, after: &str) -> Result<(), String> {
        let plan = self.plan()?;
        let clean = self.clean_dir()?;
        let mut problems = Vec::new();
        if plan["models"].as_array().is_none_or(|m| !m.is_empty()) {
            problems.push(format!(
                "plan is not empty after an unscoped build:\n{}",
                short_plan(&plan)
            ));
        }
        let (w, c) = (Db::open(self.dir.path())?, Db::open(&clean)?);
        for m in &self.project.models {
            if let Err(e) = self.compare(
                &w,
                &c,
                &m.name,
                "true",
                &format!("{}, all rows", m.kind.as_str()),
                true,
            ) {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "after {after} (unscoped): the warehouse did not converge\n{}",
                problems.join("\n")
            ))
        }
    }

    /// Between builds: every interval `plan` does not list equals the clean rebuild.
    fn check_unlisted(&mut self, after: &str) -> Result<(), String> {
        let plan = self.plan()?;
        let listed = listed(&plan);
        let clean = self.clean_dir()?;
        let (w, c) = (Db::open(self.dir.path())?, Db::open(&clean)?);
        let mut problems = Vec::new();
        for m in &self.project.models {
            let result = match m.kind {
                Kind::View => {
                    // A view computes from what is published under it now.
                    let under = self.project.ancestors(&m.name);
                    if listed.contains_key(&m.name)
                        || under
                            .iter()
                            .any(|a| listed.contains_key(a) || self.touched.contains(a))
                    {
                        continue;
                    }
                    self.compare(
                        &w,
                        &c,
                        &m.name,
                        "true",
                        "view not listed, nor anything under it",
                        true,
                    )
                }
                Kind::Table => {
                    if listed.contains_key(&m.name) {
                        continue;
                    }
                    self.compare(&w, &c, &m.name, "true", "table not listed", true)
                }
                Kind::Incremental => {
                    let tc = self.project.schema(&m.name).tc.unwrap().0;
                    let ivs = listed
                        .get(&m.name)
                        .map(|l| l.intervals.as_slice())
                        .unwrap_or(&[]);
                    let filter = if ivs.is_empty() {
                        "true".to_string()
                    } else {
                        format!(
                            "NOT ({})",
                            ivs.iter()
                                .map(|(a, b)| format!(
                                    "(\"{tc}\" >= CAST('{a}' AS TIMESTAMP) AND \"{tc}\" < CAST('{b}' AS TIMESTAMP))"
                                ))
                                .collect::<Vec<_>>()
                                .join(" OR ")
                        )
                    };
                    let shown: Vec<String> = ivs.iter().map(|(a, b)| format!("{a}..{b}")).collect();
                    self.compare(
                        &w,
                        &c,
                        &m.name,
                        &filter,
                        &format!(
                            "incremental, rows outside the listed intervals [{}]",
                            shown.join(", ")
                        ),
                        ivs.is_empty(),
                    )
                }
            };
            if let Err(e) = result {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "after {after}: intervals plan does not list differ from the clean rebuild\nplan:\n{}{}",
                short_plan(&plan),
                problems.join("\n")
            ))
        }
    }

    /// A scoped build may refuse a selected model that reads a column its
    /// parent, left out of the scope, has not built yet: DuckDB's binder
    /// stops it before anything is published.
    fn refused(&self, scope: &Scope, error: &str) -> bool {
        !scope.is_unscoped()
            && self
                .added
                .iter()
                .any(|c| error.contains(&format!("Referenced column \"{c}\" not found")))
    }

    /// The models a `--select` of [`make_scope`] names: `m`, `m+`, `+m`.
    fn selected(&self, select: &str) -> Vec<&Model> {
        let name = select.trim_matches('+');
        let models = &self.project.models;
        // Each model reads one parent (a model or a source).
        let ancestors = |m: &Model| -> Vec<String> {
            let mut out = Vec::new();
            let mut at = m.parent.clone();
            while let Some(p) = self.project.model(&at) {
                out.push(p.name.clone());
                at = p.parent.clone();
            }
            out
        };
        models
            .iter()
            .filter(|m| {
                m.name == name
                    || (select.ends_with('+') && ancestors(m).iter().any(|a| a == name))
                    || (select.starts_with('+')
                        && self
                            .project
                            .model(name)
                            .is_some_and(|n| ancestors(n).contains(&m.name)))
            })
            .collect()
    }

    /// `--backfill` of views alone restates nothing, and hubforge says so.
    fn only_views(&self, scope: &Scope, error: &str) -> bool {
        scope.backfill
            && error.contains("no data, so there is nothing to restate")
            && scope.select.as_deref().is_some_and(|s| {
                let chosen = self.selected(s);
                !chosen.is_empty() && chosen.iter().all(|m| m.kind == Kind::View)
            })
    }

    fn build(&mut self, scope: &Scope) -> Result<(), String> {
        let out = match self.run(self.dir.path(), &scope.args()) {
            Ok(out) => out,
            Err(e) if self.refused(scope, &e) => {
                self.note(format!(
                    "    hubforge {scope}: refused, a selected model reads a column not built yet"
                ));
                return Ok(());
            }
            Err(e) if self.only_views(scope, &e) => {
                self.note(format!(
                    "    hubforge {scope}: refused, only views selected"
                ));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let last = out
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        self.note(format!("    hubforge {scope}: {}", last.trim()));
        self.after_build(scope)
    }

    fn after_build(&mut self, scope: &Scope) -> Result<(), String> {
        if scope.is_unscoped() {
            self.touched.clear();
            self.check_converged(&format!("hubforge {scope}"))
        } else {
            self.check_unlisted(&format!("hubforge {scope}"))
        }
    }

    fn kill_resume(&mut self, pause: &str, first: &Scope, then: &Scope) -> Result<(), String> {
        let before = Db::open(self.dir.path())?.snapshot()?;
        let args = first.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reached = match common::kill_at_pause(self.dir.path(), pause, &args) {
            Err(e) if self.refused(first, &e) => {
                self.note(format!(
                    "    hubforge {first}: refused, a selected model reads a column not built yet"
                ));
                return self.build(then);
            }
            other => other?,
        };
        if reached {
            let after = Db::open(self.dir.path())?.snapshot()?;
            if after != before {
                return Err(format!(
                    "a build killed at {pause} changed published data or state"
                ));
            }
            self.note(format!(
                "    killed at {pause}; published data and state unchanged"
            ));
        } else {
            self.note(format!("    {pause} not reached: the build finished"));
            self.after_build(first)?;
        }
        self.build(then)
    }

    fn mark(&mut self, model: &str, end: NaiveDate) -> Result<(), String> {
        if end <= self.project.start {
            self.note("    skipped: --end is the start of history".to_string());
            return Ok(());
        }
        let clean = self.clean_dir()?;
        let (w, c) = (Db::open(self.dir.path())?, Db::open(&clean)?);
        let end_t = end.and_hms_opt(0, 0, 0).unwrap();
        let mut vouched = Vec::new();
        for m in &self.project.models {
            if m.kind == Kind::View
                || (m.name != model && !self.project.ancestors(&m.name).contains(model))
            {
                continue;
            }
            let right = match m.kind {
                Kind::Incremental => {
                    // Only whole units before `end` are covered by the decision.
                    let cutoff = m.unit.unwrap().floor(end_t);
                    let tc = self.project.schema(&m.name).tc.unwrap().0;
                    let filter = format!("\"{tc}\" < TIMESTAMP '{cutoff}'");
                    self.compare(&w, &c, &m.name, &filter, "", true).is_ok()
                }
                _ => self.compare(&w, &c, &m.name, "true", "", true).is_ok(),
            };
            if right {
                vouched.push(m.name.clone());
            }
        }
        drop((w, c));
        if vouched.is_empty() {
            self.note("    skipped: no model of the selection is right before --end".to_string());
            return Ok(());
        }
        let mut args = vec!["mark-current".to_string(), "--select".to_string()];
        args.extend(vouched.iter().cloned());
        args.extend([
            "--end".to_string(),
            end.to_string(),
            "--note".to_string(),
            "differential test".to_string(),
        ]);
        let out = self.run(self.dir.path(), &args)?;
        self.note(format!(
            "    hubforge mark-current --select {} --end {end}:\n{}",
            vouched.join(" "),
            out.lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        ));
        self.check_unlisted(&format!(
            "hubforge mark-current --select {} --end {end}",
            vouched.join(" ")
        ))
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Build(scope) => self.build(scope),
            Op::KillResume { pause, first, then } => self.kill_resume(pause, first, then),
            Op::MarkCurrent { model, end } => self.mark(model, *end),
            edit => {
                if let Op::AddColumn { column, .. } = edit {
                    self.added.insert(column.name.clone());
                }
                apply_edit(&mut self.project, &mut self.data, edit);
                if let Op::LateRows { source, .. } | Op::RepairDay { source, .. } = edit {
                    self.touched.insert(source.clone());
                }
                self.sync();
                Ok(())
            }
        }
    }
}

fn write_file(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
    std::fs::write(&path, text).expect("write");
}

fn run_case(case: &Case) -> Result<(), String> {
    let mut r = Runner::new(case);
    r.sync();
    r.note("  0. hubforge build (the initial build)".to_string());
    let mut result = r.build(&Scope::default());
    if result.is_ok() {
        for (i, op) in case.ops.iter().enumerate() {
            r.note(format!("{:>3}. {op}", i + 1));
            result = r.apply(op);
            if result.is_err() {
                break;
            }
        }
    }
    result.map_err(|e| {
        let kept = if std::env::var_os("HUBFORGE_DIFF_KEEP").is_some() {
            let work = r.dir.keep();
            let clean = r.clean.take().map(|(_, d)| d.keep());
            format!("\nkept: {} (clean rebuild: {clean:?})", work.display())
        } else {
            String::new()
        };
        format!(
            "{e}\n\n=== the case ===\n{}\n=== what happened ===\n{}{kept}",
            case.describe(),
            r.log.join("\n")
        )
    })
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> ProptestConfig {
    let shrink_secs = env_u32("HUBFORGE_DIFF_SHRINK_SECS", 300);
    ProptestConfig {
        cases: env_u32("HUBFORGE_DIFF_CASES", 6),
        // 0 seconds: report the failure as found, without shrinking.
        max_shrink_time: shrink_secs.saturating_mul(1000),
        max_shrink_iters: if shrink_secs == 0 { 0 } else { 10_000 },
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_sequence_of_changes_converges_to_a_clean_rebuild(case in case_strategy()) {
        if let Err(e) = run_case(&case) {
            return Err(TestCaseError::fail(e));
        }
    }
}
