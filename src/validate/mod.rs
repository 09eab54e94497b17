//! Validation between staging and publish: before/after metrics of every
//! rebuilt model per unit of its time column, thresholds on them, and audits
//! on the staged rows. A blocking finding publishes nothing.

pub mod audit;
pub mod diff;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{ThresholdSeverity, ValidateConfig};
use crate::engine::{Session, quote_ident, window_predicate};
use crate::error::Result;
use crate::interval::{Interval, IntervalSet, Unit, parse_point};
use audit::AuditSpec;

/// One model to validate.
pub struct Subject {
    pub model: String,
    /// The staged rows (a relation).
    pub after: String,
    /// The published rows they replace; `None` for a model never built.
    pub before: Option<String>,
    /// Columns (lowercase) and types of `after` and `before`, when the caller
    /// read them already (one catalog query for a whole run).
    pub columns: Option<(Columns, Option<Columns>)>,
    /// Metrics of those rows as the runs that wrote them measured them, when
    /// every unit replaced was measured so (see [`stored_before`]); used
    /// instead of reading `before` again if they have its columns.
    pub stored_before: Option<BTreeMap<Option<String>, Metrics>>,
    /// The intervals replaced; `None` when the whole model is.
    pub intervals: Option<IntervalSet>,
    pub time_column: Option<String>,
    pub unit: Option<Unit>,
    pub grain: Vec<String>,
    pub thresholds: ValidateConfig,
    pub audits: Vec<AuditSpec>,
    /// `{{ start }}`/`{{ end }}` of custom audits, as SQL literals.
    pub start: String,
    pub end: String,
}

/// Column names and types of a relation.
pub type Columns = Vec<(String, String)>;

/// The SQL validation writes. Its queries are DuckDB's; on Spark the engine
/// translates them, and the few forms with no translation are written the
/// way Spark reads them.
pub use crate::engine::Dialect;

/// Metrics of one side of one unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Metrics {
    pub rows: i64,
    /// Distinct values of the grain (of whole rows without a grain).
    pub distinct: i64,
    /// Numeric column → sum, as DuckDB prints it (`None`: all NULL).
    pub sums: BTreeMap<String, Option<String>>,
    /// Column → NULL count.
    pub nulls: BTreeMap<String, i64>,
}

/// Before and after of one unit (the whole model for tables).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct UnitReport {
    /// `None` for a table (the whole model).
    pub interval: Option<String>,
    pub before: Option<Metrics>,
    pub after: Option<Metrics>,
}

impl UnitReport {
    pub fn changed(&self) -> bool {
        let empty = Metrics::default();
        let before = self.before.as_ref().unwrap_or(&empty);
        let after = self.after.as_ref().unwrap_or(&empty);
        before.rows != after.rows
            || before.distinct != after.distinct
            || before.nulls != after.nulls
            || before.sums.len() != after.sums.len()
            || after
                .sums
                .iter()
                .any(|(c, s)| sum_changed(before.sums.get(c).cloned().flatten(), s.clone()))
    }
}

/// Two sums differ beyond the rounding of floating-point addition.
fn sum_changed(before: Option<String>, after: Option<String>) -> bool {
    match (before, after) {
        (Some(a), Some(b)) if a != b => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => (x - y).abs() > 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => true,
        },
        (a, b) => a != b,
    }
}

/// The relative change from `before` to `after`, in percent.
pub fn change_pct(before: f64, after: f64) -> Option<f64> {
    if before == 0.0 {
        return (after != 0.0).then_some(f64::INFINITY);
    }
    Some((after - before) / before.abs() * 100.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingKind {
    Audit,
    Threshold,
}

/// A failed audit or a breached threshold.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The audit as written (without `warn: `) or the threshold's key.
    pub name: String,
    pub blocking: bool,
    /// The intervals it concerns (merged), when known.
    pub intervals: Option<String>,
    /// Violating rows (audits) or units (thresholds).
    pub count: i64,
    pub message: String,
    /// Up to five violating rows: column names, then values as text.
    pub sample_columns: Vec<String>,
    pub sample: Vec<Vec<Option<String>>>,
}

/// What validation found for one model.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ModelReport {
    pub model: String,
    pub full: bool,
    pub unit: Option<String>,
    pub units: Vec<UnitReport>,
    pub findings: Vec<Finding>,
    /// Audits passed (as written).
    pub passed: Vec<String>,
    /// Content checksum of the rows after, per unit (the sum of each row's
    /// `hash`, as staging defines a batch's checksum), measured along the
    /// metrics so that a build need not scan its batches once more for them.
    #[serde(skip)]
    pub checksums: Option<BTreeMap<Option<String>, String>>,
}

/// Validation of a whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Report {
    pub models: Vec<ModelReport>,
    /// Audits skipped on request (`--skip-audits`).
    pub skipped_audits: Vec<String>,
    /// Source → rows kept out of the build (quarantined) in this run.
    pub rejected_rows: BTreeMap<String, i64>,
}

impl Report {
    pub fn blocking(&self) -> Vec<(&ModelReport, &Finding)> {
        self.models
            .iter()
            .flat_map(|m| m.findings.iter().map(move |f| (m, f)))
            .filter(|(_, f)| f.blocking)
            .collect()
    }
}

/// Validate every subject: metrics of both sides, thresholds, audits.
pub fn validate(
    engine: &dyn crate::engine::Engine,
    dialect: Dialect,
    threads: usize,
    subjects: &[Subject],
    skip_audits: &[String],
    parent: &(dyn Fn(&str) -> Option<String> + Sync),
    root: &std::path::Path,
) -> Result<Report> {
    // Models are validated side by side, each session taking the next one:
    // the metrics of a small model are a query too small for DuckDB to spread
    // over its threads.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<Option<Result<ModelReport>>>> =
        std::sync::Mutex::new(subjects.iter().map(|_| None).collect());
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..threads.clamp(1, subjects.len().max(1)) {
            let s = engine.session()?;
            let (next, done) = (&next, &done);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(subject) = subjects.get(i) else {
                        break;
                    };
                    let r = validate_model(s.as_ref(), dialect, subject, skip_audits, parent, root);
                    let failed = r.is_err();
                    done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                    if failed {
                        // The others stop at their next model.
                        next.store(subjects.len(), std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
        Ok(())
    })?;
    let mut report = Report {
        skipped_audits: skip_audits.to_vec(),
        ..Report::default()
    };
    // Models left unvalidated follow one that failed, whose error is returned.
    for r in done
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
    {
        report.models.push(r?);
    }
    Ok(report)
}

fn validate_model(
    s: &dyn Session,
    dialect: Dialect,
    subject: &Subject,
    skip_audits: &[String],
    parent: &dyn Fn(&str) -> Option<String>,
    root: &std::path::Path,
) -> Result<ModelReport> {
    let filter = subject.intervals.as_ref().map(|set| {
        let tc = subject
            .time_column
            .as_deref()
            .expect("intervals need a time column");
        set.iter()
            .map(|iv| format!("({})", window_predicate(None, tc, iv)))
            .collect::<Vec<_>>()
            .join(" OR ")
    });
    let (columns, before_columns) = match &subject.columns {
        Some(known) => known.clone(),
        None => (
            describe(s, &subject.after)?,
            match &subject.before {
                Some(rel) => Some(describe(s, rel)?),
                None => None,
            },
        ),
    };
    let unit_ts = match (&subject.time_column, subject.unit) {
        (Some(tc), Some(unit)) => Some(format!(
            "CAST(date_trunc('{}', {}) AS TIMESTAMP)",
            crate::sources::unit_sql(unit),
            quote_ident(tc)
        )),
        _ => None,
    };
    let unit_expr = unit_ts
        .as_ref()
        .map(|u| format!("strftime({u}, '%Y-%m-%dT%H:%M:%S')"));
    let started = std::time::Instant::now();
    let (after, checksums) = side(
        s,
        dialect,
        &subject.after,
        &columns,
        &subject.grain,
        unit_ts.as_deref(),
        filter.as_deref(),
        true,
    )?;
    let before = match (&subject.before, &before_columns) {
        (Some(rel), Some(cols)) => match subject
            .stored_before
            .as_ref()
            .filter(|stored| measures(stored, cols))
            .filter(|stored| {
                // Cheap check that the rows are still those measured: their count.
                let count = s.query(&format!(
                    "SELECT count(*) FROM {rel}{}",
                    filter
                        .as_ref()
                        .map(|f| format!(" WHERE {f}"))
                        .unwrap_or_default()
                ));
                count
                    .ok()
                    .and_then(|c| c.rows.first().and_then(|r| r[0].as_i64()))
                    == Some(stored.values().map(|m| m.rows).sum())
            }) {
            Some(stored) => {
                crate::progress::timing(
                    &format!(
                        "validate {}: before side from stored metrics",
                        subject.model
                    ),
                    std::time::Duration::ZERO,
                );
                stored.clone()
            }
            None => {
                side(
                    s,
                    dialect,
                    rel,
                    cols,
                    &subject.grain,
                    unit_ts.as_deref(),
                    filter.as_deref(),
                    false,
                )?
                .0
            }
        },
        _ => BTreeMap::new(),
    };
    crate::progress::timing(
        &format!("validate {}: metrics", subject.model),
        started.elapsed(),
    );
    let keys: BTreeSet<&Option<String>> = before.keys().chain(after.keys()).collect();
    let units: Vec<UnitReport> = keys
        .into_iter()
        .map(|k| UnitReport {
            interval: k.as_ref().and_then(|start| {
                let unit = subject.unit?;
                Some(Interval::unit_at(unit, parse_point(start).ok()?).to_string())
            }),
            before: before.get(k).cloned(),
            after: after.get(k).cloned(),
        })
        .collect();
    let mut findings = thresholds(subject, &units);
    let mut passed = Vec::new();
    let view = quote_ident(&format!("hubforge_audit_{}", subject.model.to_lowercase()));
    let this = match dialect {
        Dialect::DuckDb => format!("temp.main.{view}"),
        Dialect::Spark => view,
    };
    if subject.audits.iter().any(|a| !skipped(a, skip_audits)) {
        s.execute(&format!(
            "CREATE OR REPLACE TEMPORARY VIEW {this} AS SELECT * FROM {}{}",
            subject.after,
            filter
                .as_ref()
                .map(|f| format!(" WHERE {f}"))
                .unwrap_or_default()
        ))?;
    }
    let units_sql = unit_expr.as_ref().map(|expr| {
        let starts = units
            .iter()
            .filter(|u| u.after.is_some() || u.before.is_some())
            .filter_map(|u| u.interval.as_ref())
            .filter_map(|iv| iv.parse::<Interval>().ok())
            .collect::<Vec<_>>();
        let mut all = Vec::new();
        if let Some(set) = &subject.intervals {
            let unit = subject.unit.expect("unit");
            for iv in set.iter() {
                let mut t = iv.start();
                while t < iv.end() {
                    all.push(t);
                    t = Interval::unit_at(unit, t).end();
                }
            }
        } else {
            all.extend(starts.iter().map(|iv| iv.start()));
        }
        (
            expr.clone(),
            all.iter()
                .map(|t| crate::engine::quote_str(&t.format("%Y-%m-%dT%H:%M:%S").to_string()))
                .collect(),
        )
    });
    for spec in &subject.audits {
        if skipped(spec, skip_audits) {
            continue;
        }
        let target = audit::Target {
            this: &this,
            start: subject.start.clone(),
            end: subject.end.clone(),
            parent,
            units: units_sql.clone(),
        };
        let sql = match audit::violations_sql(spec, &target, root) {
            Ok(sql) => sql,
            Err(message) => {
                findings.push(audit_finding(spec, subject, 0, message, None));
                continue;
            }
        };
        let started = std::time::Instant::now();
        // Duplicates of one integer key (an id) are found by DuckDB's perfect
        // hash aggregate, an array indexed by the key, when the key's range
        // fits in the threshold's bits: 2^20 keys, a few MiB of counts, about
        // a quarter of the time of a hash table. Only for this query: a model's
        // own aggregates may hold wide states.
        let perfect = spec.name == "unique" && dialect == Dialect::DuckDb;
        if perfect {
            s.execute("SET perfect_ht_threshold = 20")?;
        }
        let count = s.query(&format!("SELECT count(*) FROM ({sql})"));
        if perfect {
            s.execute("RESET perfect_ht_threshold")?;
        }
        crate::progress::timing(
            &format!("validate {}: {}", subject.model, spec.display()),
            started.elapsed(),
        );
        match count {
            Err(e) => findings.push(audit_finding(
                spec,
                subject,
                0,
                format!("the audit's query failed: {e}"),
                None,
            )),
            Ok(rows) => {
                let n = rows.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
                if n == 0 {
                    passed.push(spec.display());
                    continue;
                }
                let sample = s.query(&match dialect {
                    Dialect::DuckDb => {
                        format!("SELECT CAST(COLUMNS(*) AS VARCHAR) FROM ({sql}) LIMIT 5")
                    }
                    // Spark's values read back as text already.
                    Dialect::Spark => format!("SELECT * FROM ({sql}) LIMIT 5"),
                })?;
                let message = format!(
                    "{n} row{} violate{} it",
                    crate::diagnostics::plural(n as usize),
                    if n == 1 { "s" } else { "" }
                );
                findings.push(audit_finding(spec, subject, n, message, Some(sample)));
            }
        }
    }
    if subject.audits.iter().any(|a| !skipped(a, skip_audits)) {
        let _ = s.execute(&format!("DROP VIEW IF EXISTS {this}"));
    }
    Ok(ModelReport {
        model: subject.model.clone(),
        full: subject.intervals.is_none(),
        unit: subject.unit.map(|u| u.to_string()),
        units,
        findings,
        passed,
        checksums: Some(checksums),
    })
}

fn skipped(spec: &AuditSpec, skip: &[String]) -> bool {
    skip.iter()
        .any(|n| n == "all" || n.eq_ignore_ascii_case(&spec.name) || *n == spec.display())
}

fn audit_finding(
    spec: &AuditSpec,
    subject: &Subject,
    count: i64,
    message: String,
    sample: Option<crate::engine::Rows>,
) -> Finding {
    let sample = sample.unwrap_or_default();
    Finding {
        kind: FindingKind::Audit,
        name: spec.display(),
        blocking: !spec.warn,
        intervals: subject.intervals.as_ref().map(ToString::to_string),
        count,
        message,
        sample_columns: sample.columns,
        sample: sample
            .rows
            .iter()
            .map(|r| r.iter().map(crate::engine::Value::to_text).collect())
            .collect(),
    }
}

/// Whether stored metrics have exactly the columns of the relation now (a
/// column added or retyped since they were measured makes them stale).
fn measures(stored: &BTreeMap<Option<String>, Metrics>, columns: &[(String, String)]) -> bool {
    let names: BTreeSet<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    let numeric: BTreeSet<&str> = columns
        .iter()
        .filter(|(_, t)| is_numeric(t))
        .map(|(c, _)| c.as_str())
        .collect();
    stored.values().all(|m| {
        m.nulls.keys().map(String::as_str).collect::<BTreeSet<_>>() == names
            && m.sums.keys().map(String::as_str).collect::<BTreeSet<_>>() == numeric
    })
}

/// The "after" metrics that earlier runs stored for a model, per run.
pub type Measured = BTreeMap<String, Vec<(Option<String>, Option<String>, Metrics)>>;

/// What the runs that wrote the current data of `models` measured of it:
/// model → run → (unit start, unit, metrics), for the runs state records as
/// having written some interval of the model.
pub fn measured(s: &dyn Session, models: &[&str]) -> Result<BTreeMap<String, Measured>> {
    let mut out: BTreeMap<String, Measured> = BTreeMap::new();
    if models.is_empty() {
        return Ok(out);
    }
    let list = models
        .iter()
        .map(|m| crate::engine::quote_str(m))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = s.query(&format!(
        "SELECT v.model, v.run_id, strftime(v.start_ts, '%Y-%m-%dT%H:%M:%S'), v.unit, v.after \
         FROM {schema}.validations v \
         JOIN (SELECT DISTINCT model, run_id FROM {schema}.intervals WHERE model IN ({list})) i \
           ON i.model = v.model AND i.run_id = v.run_id",
        schema = crate::state::SCHEMA
    ))?;
    for r in rows.rows {
        let runs = out.entry(r[0].to_text().unwrap_or_default()).or_default();
        let units = runs.entry(r[1].to_text().unwrap_or_default()).or_default();
        // A run that measured the model has a row for it even without units.
        let Some(after) = r[4].to_text() else {
            continue;
        };
        let Ok(metrics) = serde_json::from_str::<Metrics>(&after) else {
            continue;
        };
        units.push((r[2].to_text(), r[3].to_text(), metrics));
    }
    Ok(out)
}

/// The "before" side of a model from what was measured when its data was
/// written: complete only when every interval recorded for it inside `replaced`
/// (all of them for a whole rebuild) was written by a run that measured it,
/// in units of `unit`.
pub fn stored_before(
    records: &[crate::state::IntervalRecord],
    measured: Option<&Measured>,
    replaced: Option<&IntervalSet>,
    unit: Option<Unit>,
) -> Option<BTreeMap<Option<String>, Metrics>> {
    let measured = measured?;
    if records.is_empty() {
        return None;
    }
    let unit = unit.map(|u| u.to_string());
    let mut out = BTreeMap::new();
    for r in records {
        if replaced.is_some_and(|set| IntervalSet::single(r.interval).intersect(set).is_empty()) {
            continue;
        }
        for (start, u, metrics) in measured.get(&r.run_id)? {
            if *u != unit {
                return None;
            }
            let inside = match (start, replaced) {
                (None, _) => true,
                (Some(start), set) => {
                    let t = parse_point(start).ok()?;
                    r.interval.contains_point(t) && set.is_none_or(|set| set.contains_point(t))
                }
            };
            if inside {
                out.insert(start.clone(), metrics.clone());
            }
        }
    }
    Some(out)
}

/// Column names and types of a relation.
fn describe(s: &dyn Session, relation: &str) -> Result<Vec<(String, String)>> {
    crate::sources::describe_typed(s, relation)
}

fn is_numeric(ty: &str) -> bool {
    let t = ty.to_uppercase();
    [
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "DOUBLE",
        "REAL",
    ]
    .contains(&t.as_str())
        || t.starts_with("DECIMAL")
}

/// Metrics per unit (one group for tables) of a relation, and with
/// `checksum` the content checksum of each unit, in one pass.
type Side = (
    BTreeMap<Option<String>, Metrics>,
    BTreeMap<Option<String>, String>,
);

#[allow(clippy::too_many_arguments)]
fn side(
    s: &dyn Session,
    dialect: Dialect,
    relation: &str,
    columns: &[(String, String)],
    grain: &[String],
    unit_ts: Option<&str>,
    filter: Option<&str>,
    checksum: bool,
) -> Result<Side> {
    // Staging on Spark measures its own checksums.
    let checksum = checksum && dialect == Dialect::DuckDb;
    // A hash of the whole row: DuckDB hashes the row as a struct, Spark
    // hashes its columns.
    let row = match dialect {
        Dialect::DuckDb => "t",
        Dialect::Spark => "t.*",
    };
    let names: Vec<&String> = columns.iter().map(|(c, _)| c).collect();
    let numeric: Vec<&String> = columns
        .iter()
        .filter(|(_, t)| is_numeric(t))
        .map(|(c, _)| c)
        .collect();
    let grain: Vec<&String> = grain
        .iter()
        .filter(|g| names.iter().any(|n| n.eq_ignore_ascii_case(g)))
        .collect();
    // Distinct values by HyperLogLog: exact counts cost more than the rest
    // of the metrics together, and the estimate is deterministic (the same
    // rows give the same count), so any difference is a real change.
    let distinct = match grain.as_slice() {
        [] => format!("approx_count_distinct(hash({row}))"),
        [one] => format!("approx_count_distinct(t.{})", quote_ident(one)),
        many => format!(
            "approx_count_distinct(hash({}))",
            many.iter()
                .map(|g| format!("t.{}", quote_ident(g)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    // Grouped by the unit's timestamp; only the result is formatted.
    let mut select = vec![
        unit_ts.map_or("NULL::TIMESTAMP".to_string(), |u| {
            format!("{u} AS hubforge_u")
        }),
        "count(*)".to_string(),
        distinct,
    ];
    for c in &numeric {
        select.push(format!("CAST(sum(t.{}) AS VARCHAR)", quote_ident(c)));
    }
    for c in &names {
        select.push(format!("count(*) - count(t.{})", quote_ident(c)));
    }
    if checksum {
        // As staging measures batches ([`crate::engine::dialect::measure`]).
        select.push(format!(
            "coalesce({}, '0')",
            dialect.hash_sum(&dialect.row_hash("t"))
        ));
    }
    // Spark refuses `t.*` in a select list grouped by position.
    let group = match (unit_ts, dialect) {
        (None, _) => String::new(),
        (Some(_), Dialect::DuckDb) => " GROUP BY 1".to_string(),
        (Some(u), Dialect::Spark) => format!(" GROUP BY {u}"),
    };
    let inner = format!(
        "SELECT {} FROM {relation} t{}{group}",
        select.join(", "),
        filter.map(|f| format!(" WHERE {f}")).unwrap_or_default(),
    );
    let sql = match unit_ts {
        Some(_) => format!(
            "SELECT strftime(hubforge_u, '%Y-%m-%dT%H:%M:%S'), * EXCLUDE (hubforge_u) FROM ({inner})"
        ),
        None => format!(
            "SELECT NULL::VARCHAR, * EXCLUDE (hubforge_u) FROM ({})",
            inner.replacen("NULL::TIMESTAMP", "NULL::TIMESTAMP AS hubforge_u", 1)
        ),
    };
    let mut out = BTreeMap::new();
    let mut checksums = BTreeMap::new();
    for row in s.query(&sql)?.rows {
        let key = row[0].to_text();
        if checksum {
            let h = row[3 + numeric.len() + names.len()].to_text();
            checksums.insert(key.clone(), h.unwrap_or_else(|| "0".to_string()));
        }
        let mut m = Metrics {
            rows: row[1].as_i64().unwrap_or(0),
            distinct: row[2].as_i64().unwrap_or(0),
            ..Metrics::default()
        };
        for (i, c) in numeric.iter().enumerate() {
            m.sums.insert((*c).clone(), row[3 + i].to_text());
        }
        for (i, c) in names.iter().enumerate() {
            m.nulls.insert(
                (*c).clone(),
                row[3 + numeric.len() + i].as_i64().unwrap_or(0),
            );
        }
        out.insert(key, m);
    }
    Ok((out, checksums))
}

/// Thresholds breached, one finding per threshold with the units it fails.
fn thresholds(subject: &Subject, units: &[UnitReport]) -> Vec<Finding> {
    let t = &subject.thresholds;
    let blocking = t.severity == Some(ThresholdSeverity::Error);
    let mut out = Vec::new();
    // Only units that had rows before: new units have nothing to compare with.
    let compared: Vec<(&UnitReport, &Metrics, Metrics)> = units
        .iter()
        .filter_map(|u| {
            let b = u.before.as_ref().filter(|b| b.rows > 0)?;
            Some((u, b, u.after.clone().unwrap_or_default()))
        })
        .collect();
    let mut check = |name: String,
                     limit: f64,
                     what: &dyn Fn(&Metrics, &Metrics) -> Option<f64>,
                     unit_word: &str| {
        let breaches: Vec<(&UnitReport, f64)> = compared
            .iter()
            .filter_map(|(u, b, a)| {
                what(b, a)
                    .filter(|v| v.abs() > limit + 1e-9)
                    .map(|v| (*u, v))
            })
            .collect();
        if breaches.is_empty() {
            return;
        }
        let worst = breaches
            .iter()
            .map(|(_, v)| *v)
            .fold(0.0_f64, |m, v| if v.abs() > m.abs() { v } else { m });
        let set = IntervalSet::from_intervals(
            breaches
                .iter()
                .filter_map(|(u, _)| u.interval.as_ref()?.parse::<Interval>().ok()),
        );
        let mut text = format!(
            "{unit_word} {} by up to {} (limit {limit}%) in {} unit{}",
            if worst < 0.0 { "fell" } else { "changed" },
            pct(worst),
            breaches.len(),
            crate::diagnostics::plural(breaches.len())
        );
        if !set.is_empty() {
            let _ = write!(text, ": {set}");
        }
        out.push(Finding {
            kind: FindingKind::Threshold,
            name,
            blocking,
            intervals: (!set.is_empty()).then(|| set.to_string()),
            count: breaches.len() as i64,
            message: text,
            sample_columns: Vec::new(),
            sample: Vec::new(),
        });
    };
    if let Some(limit) = t.max_row_change {
        check(
            "max_row_change".into(),
            limit.0,
            &|b, a| change_pct(b.rows as f64, a.rows as f64),
            "rows",
        );
    }
    for (column, limit) in &t.max_sum_change {
        let col = column.to_lowercase();
        check(
            format!("max_sum_change.{column}"),
            limit.0,
            &|b, a| {
                let before: f64 = b.sums.get(&col)?.as_ref()?.parse().ok()?;
                let after: f64 = a.sums.get(&col).cloned().flatten()?.parse().ok()?;
                sum_changed(Some(before.to_string()), Some(after.to_string()))
                    .then(|| change_pct(before, after))
                    .flatten()
            },
            &format!("sum of {column}"),
        );
    }
    if let Some(limit) = t.max_null_increase {
        check(
            "max_null_increase".into(),
            limit.0,
            &|b, a| {
                // The largest increase of any column's share of NULLs, in points.
                a.nulls
                    .iter()
                    .filter_map(|(c, n)| {
                        let before = *b.nulls.get(c).unwrap_or(&0) as f64 / b.rows.max(1) as f64;
                        let after = *n as f64 / a.rows.max(1) as f64;
                        let up = (after - before) * 100.0;
                        (up > 1e-9).then_some(up)
                    })
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            },
            "the share of NULLs",
        );
    }
    out
}

/// `+3.2%`, `-100%`, `new`.
pub fn pct(v: f64) -> String {
    if v.is_infinite() {
        return "new".into();
    }
    let rounded = if v.abs() >= 10.0 {
        format!("{v:+.0}")
    } else {
        format!("{v:+.1}")
    };
    format!("{rounded}%")
}

/// The validation part of a build summary, for people.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for m in &report.models {
        let changed: Vec<&UnitReport> = m.units.iter().filter(|u| u.changed()).collect();
        if changed.is_empty() && m.findings.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {}:", m.model);
        let unit_word = m.unit.as_deref().unwrap_or("unit");
        if m.units.iter().all(|u| u.before.is_none()) {
            let rows: i64 = m
                .units
                .iter()
                .filter_map(|u| u.after.as_ref())
                .map(|a| a.rows)
                .sum();
            let _ = writeln!(
                out,
                "    new: {rows} rows{}",
                match &m.unit {
                    Some(_) => format!(
                        " in {} {unit_word}{}",
                        m.units.len(),
                        if m.units.len() == 1 { "" } else { "s" }
                    ),
                    None => String::new(),
                }
            );
            write_findings(&mut out, m);
            continue;
        }
        for u in changed.iter().take(12) {
            let label = u.interval.as_deref().map_or("all rows".to_string(), |iv| {
                iv.parse::<Interval>()
                    .map(|i| unit_label(&i))
                    .unwrap_or_else(|_| iv.to_string())
            });
            let _ = writeln!(out, "    {label:<12} {}", describe_change(u));
        }
        if changed.len() > 12 {
            let _ = writeln!(out, "    ... and {} more changed", changed.len() - 12);
        }
        let unchanged = m.units.len() - changed.len();
        if unchanged > 0 {
            let _ = writeln!(
                out,
                "    {unchanged} of {} {unit_word}{} unchanged",
                m.units.len(),
                if m.units.len() == 1 { "" } else { "s" }
            );
        }
        write_findings(&mut out, m);
    }
    for (source, n) in &report.rejected_rows {
        let _ = writeln!(
            out,
            "  source {source}: {n} bad row{} quarantined",
            crate::diagnostics::plural(*n as usize)
        );
    }
    let passed: usize = report.models.iter().map(|m| m.passed.len()).sum();
    let failed: usize = report
        .models
        .iter()
        .flat_map(|m| &m.findings)
        .filter(|f| f.kind == FindingKind::Audit)
        .count();
    if out.is_empty() && passed + failed == 0 {
        return out;
    }
    let mut head = "Validation (before → after)".to_string();
    if passed + failed > 0 {
        let _ = write!(head, ", audits: {passed} passed, {failed} failed");
    }
    if !report.skipped_audits.is_empty() {
        let _ = write!(head, ", skipped: {}", report.skipped_audits.join(", "));
    }
    format!("{head}\n{out}")
}

fn write_findings(out: &mut String, m: &ModelReport) {
    for f in &m.findings {
        let _ = writeln!(
            out,
            "    {} {} {}: {}",
            if f.blocking { "✗" } else { "!" },
            match f.kind {
                FindingKind::Audit => "audit",
                FindingKind::Threshold => "threshold",
            },
            f.name,
            f.message
        );
    }
}

fn unit_label(iv: &Interval) -> String {
    let s = iv.to_string();
    s.split("..").next().unwrap_or(&s).to_string()
}

/// `rows 120 → 118 (-1.7%), sum revenue +3.1%, nulls email +2`.
pub fn describe_change(u: &UnitReport) -> String {
    let empty = Metrics::default();
    let b = u.before.as_ref().unwrap_or(&empty);
    let a = u.after.as_ref().unwrap_or(&empty);
    let mut parts = Vec::new();
    if u.before.is_none() {
        parts.push(format!("rows {} (new)", a.rows));
    } else if b.rows != a.rows {
        parts.push(format!(
            "rows {} → {} ({})",
            b.rows,
            a.rows,
            change_pct(b.rows as f64, a.rows as f64).map_or_else(String::new, pct)
        ));
    } else {
        parts.push(format!("rows {}", a.rows));
    }
    if u.before.is_some() {
        for (c, after) in &a.sums {
            let before = b.sums.get(c).cloned().flatten();
            if sum_changed(before.clone(), after.clone()) {
                let delta = match (
                    before.as_deref().and_then(|x| x.parse::<f64>().ok()),
                    after.as_deref().and_then(|x| x.parse::<f64>().ok()),
                ) {
                    (Some(x), Some(y)) => change_pct(x, y).map_or_else(String::new, pct),
                    _ => "changed".into(),
                };
                parts.push(format!("sum {c} {delta}"));
            }
        }
        if b.distinct != a.distinct {
            parts.push(format!("distinct ≈{} → ≈{}", b.distinct, a.distinct));
        }
        for (c, n) in &a.nulls {
            let before = *b.nulls.get(c).unwrap_or(&0);
            if before != *n {
                parts.push(format!("nulls {c} {before} → {n}"));
            }
        }
    }
    parts.join(", ")
}

/// Blocking findings as diagnostics: what failed, where, how many rows and a
/// sample of them.
pub fn blocking_error(report: &Report, ws: &crate::workspace::Workspace) -> crate::error::Error {
    let mut ds = Vec::new();
    for (m, f) in report.blocking() {
        let code = match f.kind {
            FindingKind::Audit => crate::diagnostics::Code::AuditFailed,
            FindingKind::Threshold => crate::diagnostics::Code::ThresholdBreached,
        };
        let what = match f.kind {
            FindingKind::Audit => "audit",
            FindingKind::Threshold => "threshold",
        };
        let mut d = crate::diagnostics::Diagnostic::error(
            code,
            format!(
                "{what} {} of model `{}` failed: {}",
                f.name, m.model, f.message
            ),
        );
        if let Some(file) = ws
            .project
            .models
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(&m.model))
        {
            // The audit's place in the header, or the model's thresholds.
            let written = file
                .config
                .audits
                .iter()
                .find(|a| audit::parse(a).is_ok_and(|spec| spec.display() == f.name));
            let header_end = file.text.find("*/").unwrap_or(0);
            d = d.at(match (f.kind, written) {
                (FindingKind::Audit, Some(text)) => audit::spec_location(file, text),
                _ => match file.text[..header_end].find("validate") {
                    Some(off) => crate::diagnostics::Location::at_offset(
                        &file.path,
                        &file.text,
                        off,
                        "validate".len(),
                    ),
                    None => crate::diagnostics::Location::file(&file.path),
                },
            });
        }
        if let Some(iv) = &f.intervals {
            d = d.with_note(format!("intervals: {iv}"));
        }
        if !f.sample.is_empty() {
            let mut table = format!("sample ({}):", f.sample_columns.join(", "));
            for row in &f.sample {
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| c.clone().unwrap_or_else(|| "NULL".into()))
                    .collect();
                let _ = write!(table, "\n       {}", cells.join(" | "));
            }
            d = d.with_note(table);
        }
        ds.push(d.with_help(match f.kind {
            FindingKind::Audit => "nothing was published; fix the data or the model and build again (staged batches are reused), or override with `build --skip-audits NAME`",
            FindingKind::Threshold => "nothing was published; if the change is intended, raise the threshold or set severity = \"warn\" in [validate]",
        }));
    }
    crate::error::Error::BadData(crate::diagnostics::Diagnostics(ds))
}
