//! Fulfillment: the manifest of what a publish changed, for the systems that
//! deliver data products downstream, and the deliveries each destination has
//! pending. The manifest is written into state inside the publish transaction
//! (so it exists if and only if the publish committed) and then to
//! `target/manifests/<run_id>.json`, atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Session, quote_str};
use crate::error::{Error, Result};
use crate::interval::IntervalSet;
use crate::state::SCHEMA;
use crate::workspace::Workspace;

/// The manifest format; bumped on any incompatible change.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// The JSON Schema every manifest validates against.
pub const MANIFEST_SCHEMA: &str = include_str!("../templates/manifest.schema.json");

/// Where manifests are written, relative to the project.
pub const MANIFEST_DIR: &str = "target/manifests";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub run_id: String,
    pub project: String,
    /// The project's git commit, when it is in a repository.
    pub git: Option<GitInfo>,
    pub started_at: String,
    pub finished_at: String,
    pub command: String,
    pub products: Vec<ProductChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitInfo {
    pub commit: String,
    /// Uncommitted changes in the working tree.
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductChange {
    pub name: String,
    pub fingerprint: String,
    pub change: String,
    pub reason: String,
    pub full: bool,
    /// The intervals replaced, merged (empty when `full`).
    pub intervals: IntervalSet,
    pub rows_before: Option<i64>,
    pub rows_after: i64,
    /// Rows and checksum of each batch written.
    pub checksums: Vec<Checksum>,
    pub columns: Vec<Column>,
    /// What validation found (when it ran).
    pub validation: Option<ValidationSummary>,
    pub destinations: Vec<DestinationAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checksum {
    /// `None` for a product rebuilt whole.
    pub interval: Option<String>,
    pub rows: i64,
    pub checksum: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationSummary {
    pub units: usize,
    pub changed_units: usize,
    pub audits_passed: Vec<String>,
    /// Warnings (a blocking finding publishes nothing, so there is no manifest).
    pub findings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationAction {
    pub name: String,
    /// `deliver`, `deliver_full` or `held`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The destination named `name`, or an error that suggests the closest.
pub fn destination<'a>(
    ws: &'a Workspace,
    name: &str,
) -> Result<&'a crate::config::DestinationConfig> {
    let all = &ws.project.config.destinations;
    all.iter().find(|d| d.name == name).ok_or_else(|| {
        let help = crate::diagnostics::did_you_mean(name, all.iter().map(|d| d.name.as_str()))
            .map_or(
                "destinations are declared as [[destinations]] in hubforge.toml".to_string(),
                |s| format!("did you mean `{s}`?"),
            );
        crate::cli::invalid_argument(format!("no destination `{name}`"), help)
    })
}

/// The destinations a product goes to: those listing it, and those its
/// header names.
pub fn destinations_of<'a>(
    ws: &'a Workspace,
    product: &str,
) -> Vec<&'a crate::config::DestinationConfig> {
    let header: Vec<String> = ws
        .project
        .models
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(product))
        .map(|m| m.config.destinations.clone())
        .unwrap_or_default();
    ws.project
        .config
        .destinations
        .iter()
        .filter(|d| {
            d.products.iter().any(|p| p.eq_ignore_ascii_case(product))
                || header.iter().any(|h| h.eq_ignore_ascii_case(&d.name))
        })
        .collect()
}

/// Destinations paused or resumed from the command line (`fulfillment
/// --pause/--resume`): paused or not, who and why. This overrides `paused`
/// in hubforge.toml.
pub type PauseDecisions = BTreeMap<String, (bool, String, String)>;

pub fn paused_in_state(s: &dyn Session) -> Result<PauseDecisions> {
    if !crate::engine::relation_exists(s, &format!("{SCHEMA}.destinations")) {
        return Ok(BTreeMap::new());
    }
    let rows = s.query(&format!(
        "SELECT destination, paused, user_name, note FROM {SCHEMA}.destinations"
    ))?;
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            (
                r[0].to_text().unwrap_or_default(),
                (
                    matches!(r[1], crate::engine::Value::Bool(true)),
                    r[2].to_text().unwrap_or_default(),
                    r[3].to_text().unwrap_or_default(),
                ),
            )
        })
        .collect())
}

/// How many units of `unit` a set of intervals covers.
pub fn unit_count(set: &IntervalSet, unit: Option<crate::interval::Unit>) -> usize {
    let Some(unit) = unit else {
        return set.len();
    };
    set.iter()
        .map(|iv| {
            let mut n = 0;
            let mut t = iv.start();
            while t < iv.end() {
                n += 1;
                t = crate::interval::Interval::unit_at(unit, t).end();
            }
            n
        })
        .sum()
}

/// Why a destination holds deliveries now, if it does: a pause or resume
/// from the command line wins over `paused` in hubforge.toml.
pub fn held_reason(
    dest: &crate::config::DestinationConfig,
    decisions: &PauseDecisions,
) -> Option<String> {
    match decisions.get(&dest.name) {
        Some((true, who, note)) => Some(if note.is_empty() {
            format!("paused by {who}")
        } else {
            format!("paused by {who}: {note}")
        }),
        Some((false, _, _)) => None,
        None => dest.paused.then(|| "paused in hubforge.toml".to_string()),
    }
}

/// The project's git commit and whether the working tree has changes; `None`
/// outside a repository or without git.
pub fn git_info(root: &Path) -> Option<GitInfo> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--", "."]).is_some_and(|s| !s.is_empty());
    Some(GitInfo { commit, dirty })
}

/// The state statements recording a manifest and each destination's pending
/// delivery (inside the publish transaction).
pub fn state_statements(manifest: &Manifest, created_at: &str) -> Vec<String> {
    let mut out = vec![format!(
        "INSERT INTO {SCHEMA}.manifests VALUES ({}, TIMESTAMP {}, {});",
        quote_str(&manifest.run_id),
        quote_str(created_at),
        quote_str(&serde_json::to_string(manifest).expect("manifest serialises"))
    )];
    for p in &manifest.products {
        for d in &p.destinations {
            out.push(format!(
                "INSERT INTO {SCHEMA}.fulfillment VALUES ({}, {}, {}, {}, {}, {}, 'pending', TIMESTAMP {}, NULL);",
                quote_str(&manifest.run_id),
                quote_str(&p.name),
                quote_str(&d.name),
                quote_str(&d.action),
                quote_str(d.reason.as_deref().unwrap_or_default()),
                quote_str(&if p.full {
                    "full".to_string()
                } else {
                    serde_json::to_string(&p.intervals).expect("json")
                }),
                quote_str(created_at)
            ));
        }
    }
    out
}

/// Write the manifest file atomically: a temporary file beside it, then a rename.
pub fn write_file(root: &Path, manifest: &Manifest) -> Result<PathBuf> {
    let dir = root.join(MANIFEST_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(format!("{}.json", manifest.run_id));
    let tmp = dir.join(format!(".{}.json.tmp", manifest.run_id));
    let text = serde_json::to_string_pretty(manifest).expect("manifest serialises");
    std::fs::write(&tmp, format!("{text}\n"))
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// Write the files of manifests that are in state but not on disk (a run
/// killed between its commit and writing the file).
pub fn restore_files(s: &dyn Session, root: &Path) -> Result<()> {
    if !crate::engine::relation_exists(s, &format!("{SCHEMA}.manifests")) {
        return Ok(());
    }
    let rows = s.query(&format!(
        "SELECT run_id, manifest FROM {SCHEMA}.manifests ORDER BY created_at DESC LIMIT 20"
    ))?;
    for row in &rows.rows {
        let run = row[0].to_text().unwrap_or_default();
        if root.join(MANIFEST_DIR).join(format!("{run}.json")).exists() {
            continue;
        }
        let manifest: Manifest = serde_json::from_str(&row[1].to_text().unwrap_or_default())
            .map_err(|e| {
                Error::Engine(format!("unreadable manifest of run {run} in state: {e}"))
            })?;
        write_file(root, &manifest)?;
    }
    Ok(())
}

/// What one destination has pending for one product, merged over runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    pub destination: String,
    pub product: String,
    /// Delivered whole: a full rebuild supersedes pending intervals.
    pub full: bool,
    pub intervals: IntervalSet,
    pub runs: Vec<String>,
    /// Why it is held now, if it is.
    pub held: Option<String>,
}

/// Pending deliveries per destination and product, merged: an interval
/// rebuilt twice is delivered once, a full rebuild supersedes intervals.
pub fn pending(s: &dyn Session, ws: &Workspace) -> Result<Vec<Pending>> {
    if crate::state::stored_version(s)?.is_none_or(|v| v < 4) {
        return Ok(Vec::new());
    }
    let paused = paused_in_state(s)?;
    let rows = s.query(&format!(
        "SELECT destination, product, intervals, run_id FROM {SCHEMA}.fulfillment \
         WHERE status = 'pending' ORDER BY created_at, run_id"
    ))?;
    let mut out: BTreeMap<(String, String), Pending> = BTreeMap::new();
    for r in &rows.rows {
        let dest = r[0].to_text().unwrap_or_default();
        let product = r[1].to_text().unwrap_or_default();
        let intervals = r[2].to_text().unwrap_or_default();
        let run = r[3].to_text().unwrap_or_default();
        let entry = out
            .entry((dest.clone(), product.clone()))
            .or_insert_with(|| Pending {
                held: ws
                    .project
                    .config
                    .destinations
                    .iter()
                    .find(|d| d.name == dest)
                    .and_then(|d| held_reason(d, &paused)),
                destination: dest,
                product,
                full: false,
                intervals: IntervalSet::new(),
                runs: Vec::new(),
            });
        if intervals == "full" {
            entry.full = true;
            entry.intervals = IntervalSet::new();
        } else if !entry.full {
            let set: IntervalSet = serde_json::from_str(&intervals)
                .map_err(|e| Error::Engine(format!("unreadable pending delivery in state: {e}")))?;
            entry.intervals = entry.intervals.union(&set);
        }
        if !entry.runs.contains(&run) {
            entry.runs.push(run);
        }
    }
    Ok(out.into_values().collect())
}

/// The state write that pauses or resumes a destination, recorded with who,
/// why and when (a literal time: Spark's state log replays it later).
pub fn paused_sql(destination: &str, paused: bool, user: &str, note: &str) -> String {
    format!(
        "INSERT OR REPLACE INTO {SCHEMA}.destinations VALUES ({}, {paused}, {}, {}, {});",
        quote_str(destination),
        quote_str(user),
        quote_str(note),
        crate::engine::ts_literal(chrono::Utc::now().naive_utc())
    )
}

/// `hubforge fulfillment` for people.
pub fn render_pending(pending: &[Pending]) -> String {
    use std::fmt::Write as _;
    if pending.is_empty() {
        return "Nothing pending: every destination has received every change.\n".to_string();
    }
    let mut out = String::new();
    let mut last = "";
    for p in pending {
        if p.destination != last {
            let _ = writeln!(
                out,
                "{}{}",
                p.destination,
                p.held
                    .as_ref()
                    .map(|h| format!(" (held: {h})"))
                    .unwrap_or_default()
            );
            last = &p.destination;
        }
        let what = if p.full {
            "in full".to_string()
        } else {
            p.intervals.to_string()
        };
        let _ = writeln!(
            out,
            "  {:<28} {what}  (runs {})",
            p.product,
            p.runs.join(", ")
        );
    }
    out
}
