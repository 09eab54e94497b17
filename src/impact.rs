//! The pre-merge impact report: what a change to the project (the working tree
//! against a git ref) will rebuild, for which dates, who downstream receives
//! new data, and what it does not touch.
//!
//! The base version of the project is read from git objects, never checked
//! out: only the files that differ are read, and every other model keeps the
//! analysis of the working tree. Both versions are loaded with their SQL
//! deferred ([`Depth::Deferred`]): only the models a change can reach, and
//! their ancestors, are parsed. Both versions are fingerprinted with the same
//! code as `plan` (only the part of the DAG a change can reach) and compared by
//! the same [`Comparer`], through column lineage. No model SQL runs; a
//! warehouse, when there is one, is opened read-only for what is built and how
//! many rows it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::change::{Affected, Change, ChangeKind, Comparer, VersionLookup};
use crate::config::Kind;
use crate::diagnostics::{Diagnostics, display_path};
use crate::error::{Error, Result};
use crate::fingerprint::{KnownSchemas, ModelVersion};
use crate::graph::{NodeId, NodeKind};
use crate::interval::{IntervalSet, Unit};
use crate::project::{CONFIG_FILE, FileRole, file_role};
use crate::state::State;
use crate::workspace::{Depth, Workspace};

/// The version of the JSON report.
pub const SCHEMA_VERSION: u32 = 1;

/// The Markdown template shipped with hubforge (`--template` overrides it).
pub const DEFAULT_TEMPLATE: &str = include_str!("../templates/impact.md.j2");

/// When `--fail-on` makes the command fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// A breaking change or a removed model.
    Breaking,
    /// Any change of a model's logic or data.
    Any,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub project: String,
    pub base: Base,
    pub summary: Summary,
    /// Project files that differ, hubforge's own only.
    pub files: Vec<FileChange>,
    /// Models whose own logic changed, and new models.
    pub changed: Vec<ModelImpact>,
    /// Models that receive new data because of a change upstream.
    pub affected: Vec<ModelImpact>,
    /// Direct readers of a changed or affected model that the change does not reach.
    pub not_affected: Vec<Unaffected>,
    pub removed: Vec<Removed>,
    pub products: Vec<Product>,
    pub destinations: Vec<DestinationImpact>,
    pub macros: Vec<MacroChange>,
    pub vars: Vec<VarChange>,
    /// The affected part of the DAG as a Mermaid flowchart.
    pub mermaid: String,
    /// Whether built intervals and row counts come from a warehouse's state.
    pub warehouse: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Base {
    /// The ref as given.
    #[serde(rename = "ref")]
    pub reference: String,
    pub commit: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub changed: usize,
    pub affected: usize,
    pub removed: usize,
    pub products: usize,
    pub destinations: Vec<String>,
    /// Units of incremental models plus one per table rebuilt or view recreated.
    pub intervals: i64,
    /// Estimated rows rebuilt, when a warehouse is there to tell.
    pub rows: Option<i64>,
    pub breaking: bool,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: String,
    /// `added`, `removed`, `modified` or `renamed`.
    pub status: &'static str,
    pub from: Option<String>,
    /// What the change does, in a few words.
    pub effect: String,
}

/// One model with work (or, for metadata and forward-only changes, none).
#[derive(Debug, Clone, Serialize)]
pub struct ModelImpact {
    pub name: String,
    pub kind: &'static str,
    pub file: String,
    pub change: &'static str,
    pub reason: String,
    /// Columns whose values change (all of them when rows change).
    pub columns: Vec<String>,
    /// Columns that are new.
    pub added_columns: Vec<String>,
    /// The whole table is rebuilt (or the view recreated).
    pub full: bool,
    pub intervals: IntervalSet,
    /// Units of `intervals`, or 1 for a full rebuild, 0 for none.
    pub interval_count: i64,
    /// Rows of the intervals replaced, from state, when known.
    pub estimated_rows: Option<i64>,
    /// What is rebuilt, in words.
    pub backfill: String,
    pub product: bool,
    pub destinations: Vec<String>,
    pub renamed_from: Option<String>,
    /// A unified diff of the model file (or of its rendered SQL when only a
    /// macro or var changed it); empty for models that are only affected.
    pub diff: String,
    /// `file`, `rendered` (the SQL rendered for its first unit of history,
    /// when only a macro or var changed it) or empty.
    pub diff_of: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unaffected {
    pub name: String,
    pub kind: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub name: String,
    pub kind: &'static str,
    pub file: String,
    pub product: bool,
    pub destinations: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub name: String,
    pub change: &'static str,
    pub destinations: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationImpact {
    pub name: String,
    pub products: Vec<String>,
    pub paused: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MacroChange {
    pub name: String,
    /// `added`, `removed` or `modified`.
    pub change: &'static str,
    /// Models that use it (directly or through other macros).
    pub models: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VarChange {
    pub name: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub models: Vec<String>,
}

impl Report {
    /// Whether `--fail-on` makes this report a failure, and why.
    pub fn failure(&self, fail_on: FailOn) -> Option<String> {
        match fail_on {
            FailOn::Breaking => {
                let breaking: Vec<&str> = self
                    .changed
                    .iter()
                    .filter(|m| m.change == ChangeKind::Breaking.as_str())
                    .map(|m| m.name.as_str())
                    .chain(self.removed.iter().map(|r| r.name.as_str()))
                    .collect();
                (!breaking.is_empty()).then(|| {
                    format!(
                        "breaking changes (--fail-on breaking): {}",
                        breaking.join(", ")
                    )
                })
            }
            FailOn::Any => {
                let n = self.changed.len() + self.affected.len() + self.removed.len();
                (n > 0).then(|| format!("{n} models changed or affected (--fail-on any)"))
            }
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the report serialises")
    }

    /// The report as Markdown, from `template` (minijinja; the report's JSON is its context).
    pub fn to_markdown(&self, template: &str, template_name: &str) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("default delimiters"),
        );
        env.add_filter("cell", |s: String| s.replace('|', "\\|").replace('\n', " "));
        env.add_filter("thousands", thousands);
        env.add_filter("json", |v: minijinja::Value| {
            serde_json::to_string(&v).unwrap_or_default()
        });
        let bad = |e: minijinja::Error| {
            crate::cli::invalid_argument(
                format!("the impact template {template_name} failed: {e:#}"),
                "fix the template; its context is the report of `hubforge impact --format json`",
            )
        };
        env.add_template("impact", template).map_err(bad)?;
        let t = env.get_template("impact").map_err(bad)?;
        t.render(minijinja::Value::from(minijinja::value::Serde(
            self.to_json(),
        )))
        .map_err(bad)
    }
}

/// 1234567 → "1,234,567".
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

// ---------------------------------------------------------------------------
// Reading the base version from git.

fn git(root: &Path, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut child = Command::new("git")
        .current_dir(root)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            crate::cli::invalid_argument(
                format!("cannot run git: {e}"),
                "hubforge impact reads the base version with git; install git and put it on PATH",
            )
        })?;
    // Feed stdin from another thread so a large output never blocks the writer.
    let writer = input.map(|bytes| {
        let bytes = bytes.to_vec();
        let mut stdin = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    });
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("running git", e))?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    if !out.status.success() {
        return Err(crate::cli::invalid_argument(
            format!(
                "git {} failed: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "run hubforge impact inside a git repository, with --base naming a commit of it",
        ));
    }
    Ok(out.stdout)
}

/// What differs between the base commit and the working tree, for hubforge's
/// files: path (relative to the project root) → the text at the base (None
/// when the file is not there) and whether the working tree has it.
struct BaseFiles {
    commit: String,
    config_text: String,
    /// Path → text at the base, None when absent at the base.
    files: BTreeMap<PathBuf, Option<String>>,
    /// Paths present in the working tree (of those in `files`).
    in_head: BTreeSet<PathBuf>,
}

fn read_base(root: &Path, reference: &str) -> Result<BaseFiles> {
    let resolved = git(
        root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{reference}^{{commit}}"),
        ],
        None,
    )
    .map_err(|_| {
        crate::cli::invalid_argument(
            format!("--base: `{reference}` is not a commit of the git repository at {}", display_path(root)),
            "give a branch, tag or commit; in CI fetch the base branch first (git fetch origin main, then --base origin/main)",
        )
    })?;
    let commit = String::from_utf8_lossy(&resolved).trim().to_string();
    let prefix = String::from_utf8_lossy(&git(root, &["rev-parse", "--show-prefix"], None)?)
        .trim()
        .to_string();

    // Tracked files that differ from the base, and files git does not track yet.
    let diff = git(
        root,
        &[
            "diff",
            "--name-status",
            "--no-renames",
            "--relative",
            "-z",
            &commit,
            "--",
        ],
        None,
    )?;
    let mut entries: Vec<(char, PathBuf)> = Vec::new();
    let mut fields = diff.split(|&b| b == 0).filter(|f| !f.is_empty());
    while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
        let status = status.first().copied().unwrap_or(b'M') as char;
        entries.push((
            status,
            PathBuf::from(String::from_utf8_lossy(path).as_ref()),
        ));
    }
    let untracked = git(root, &["ls-files", "-o", "--exclude-standard", "-z"], None)?;
    for path in untracked.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        entries.push(('A', PathBuf::from(String::from_utf8_lossy(path).as_ref())));
    }
    entries.retain(|(_, p)| file_role(p).is_some());

    // One git process reads every base blob needed.
    let mut wanted: Vec<PathBuf> = vec![PathBuf::from(CONFIG_FILE)];
    wanted.extend(
        entries
            .iter()
            .filter(|(s, p)| *s != 'A' && p != Path::new(CONFIG_FILE))
            .map(|(_, p)| p.clone()),
    );
    let request: String = wanted
        .iter()
        .map(|p| {
            format!(
                "{commit}:{prefix}{}\n",
                p.to_string_lossy().replace('\\', "/")
            )
        })
        .collect();
    let blobs = git(root, &["cat-file", "--batch"], Some(request.as_bytes()))?;
    let texts = parse_batch(&blobs, wanted.len());
    let mut texts = wanted.into_iter().zip(texts);
    let config_text = match texts.next() {
        Some((_, Some(text))) => text,
        _ => {
            return Err(crate::cli::invalid_argument(
                format!(
                    "the project has no {CONFIG_FILE} at {reference} ({})",
                    &commit[..commit.len().min(12)]
                ),
                "compare with a commit where the project exists",
            ));
        }
    };
    let mut files: BTreeMap<PathBuf, Option<String>> = texts.collect();
    let mut in_head = BTreeSet::new();
    for (status, path) in entries {
        if path == Path::new(CONFIG_FILE) {
            continue;
        }
        if status != 'D' {
            in_head.insert(path.clone());
        }
        files.entry(path).or_insert(None);
    }
    Ok(BaseFiles {
        commit,
        config_text,
        files,
        in_head,
    })
}

/// The contents `git cat-file --batch` printed, one per request (None: missing).
fn parse_batch(mut out: &[u8], n: usize) -> Vec<Option<String>> {
    let mut texts = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(eol) = out.iter().position(|&b| b == b'\n') else {
            texts.push(None);
            continue;
        };
        let header = String::from_utf8_lossy(&out[..eol]).to_string();
        out = &out[eol + 1..];
        let parts: Vec<&str> = header.split(' ').collect();
        match parts.as_slice() {
            [_, kind, size] if *kind == "blob" => {
                let size: usize = size.parse().unwrap_or(0).min(out.len());
                texts.push(Some(String::from_utf8_lossy(&out[..size]).into_owned()));
                out = out.get(size + 1..).unwrap_or_default();
            }
            [_, _, size] => {
                let size: usize = size.parse().unwrap_or(0).min(out.len());
                texts.push(None);
                out = out.get(size + 1..).unwrap_or_default();
            }
            _ => texts.push(None),
        }
    }
    texts
}

// ---------------------------------------------------------------------------
// Comparing the two versions.

/// Base and head versions, looked up by (model, fingerprint).
struct Both {
    versions: HashMap<(String, String), ModelVersion>,
}

impl VersionLookup for Both {
    fn version(&self, model: &str, fingerprint: &str) -> Option<&ModelVersion> {
        self.versions
            .get(&(model.to_string(), fingerprint.to_string()))
    }
}

/// What each node of a workspace may read, and what may read it: the DAG's
/// edges, with a deferred model's candidates standing in for its references.
/// Every true edge is among them, so a walk over them finds at least the
/// nodes the same walk over the true edges finds.
struct Reads {
    parents: Vec<Vec<NodeId>>,
    children: Vec<Vec<NodeId>>,
}

impl Reads {
    fn of(ws: &Workspace) -> Reads {
        let parents: Vec<Vec<NodeId>> = (0..ws.dag.len()).map(|id| ws.may_read(id)).collect();
        let mut children = vec![Vec::new(); parents.len()];
        for (id, ps) in parents.iter().enumerate() {
            for &p in ps {
                children[p].push(id);
            }
        }
        Reads { parents, children }
    }

    /// Every node marked, plus every ancestor of one.
    fn with_ancestors(&self, marked: &BTreeSet<NodeId>) -> Vec<bool> {
        let mut wanted = vec![false; self.parents.len()];
        let mut todo: Vec<NodeId> = marked.iter().copied().collect();
        while let Some(id) = todo.pop() {
            if !std::mem::replace(&mut wanted[id], true) {
                todo.extend(&self.parents[id]);
            }
        }
        wanted
    }

    /// Every node marked, plus every descendant of one.
    fn with_descendants(&self, marked: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
        let mut out = marked.clone();
        let mut todo: Vec<NodeId> = marked.iter().copied().collect();
        while let Some(id) = todo.pop() {
            for &c in &self.children[id] {
                if out.insert(c) {
                    todo.push(c);
                }
            }
        }
        out
    }
}

/// The part of both versions a change reaches.
struct Scope {
    /// Models of the working tree whose own inputs differ.
    touched_head: BTreeSet<NodeId>,
    /// Their descendants, and the readers of changed seeds.
    reach_head: BTreeSet<NodeId>,
    /// The reach and its ancestors: what needs fingerprints and lineage.
    wanted_head: Vec<bool>,
    wanted_base: Vec<bool>,
}

impl Scope {
    fn of(
        head: &Workspace,
        base: &Workspace,
        changed_files: &BTreeSet<PathBuf>,
        changed_nodes: &BTreeSet<String>,
        changed_seeds: &BTreeSet<String>,
    ) -> Scope {
        let (reads_head, reads_base) = (Reads::of(head), Reads::of(base));
        let touched_head = touched(head, &reads_head, base, changed_files, changed_nodes);
        let touched_base = touched(base, &reads_base, head, changed_files, changed_nodes);
        // Sources and seeds that differ reach their readers too.
        let seeds_head: BTreeSet<NodeId> = changed_seeds
            .iter()
            .filter_map(|s| head.dag.lookup(s))
            .collect();
        let reach_head =
            reads_head.with_descendants(&touched_head.union(&seeds_head).copied().collect());
        let mut reach_base: BTreeSet<NodeId> = reach_head
            .iter()
            .filter_map(|&id| base.dag.lookup(head.dag.nodes[id].name.as_str()))
            .collect();
        reach_base.extend(reads_base.with_descendants(&touched_base));
        Scope {
            wanted_head: reads_head.with_ancestors(&reach_head),
            wanted_base: reads_base.with_ancestors(&reach_base),
            touched_head,
            reach_head,
        }
    }
}

/// The models among `wanted` nodes (indices into `project.models`).
fn wanted_models(ws: &Workspace, wanted: &[bool]) -> Vec<usize> {
    (0..ws.dag.len())
        .filter(|&id| wanted[id])
        .filter_map(|id| ws.dag.nodes[id].model)
        .collect()
}

/// Columns of sources and seeds for lineage: from state, from the declared
/// schema, else (with `read_files`) by reading the files' columns in an
/// in-memory DuckDB (files inside the project only). Only the nodes in `needed`.
fn schemas_for(
    ws: &Workspace,
    needed: &[bool],
    state: &State,
    known: &mut KnownSchemas,
    read_files: bool,
) -> Result<()> {
    use rayon::prelude::*;
    let mut to_read: Vec<(String, String)> = Vec::new();
    for (id, node) in ws.dag.nodes.iter().enumerate() {
        let key = node.name.key();
        if !needed[id] || node.kind.is_model() || known.contains_key(key) {
            continue;
        }
        if let Some(cols) = state.schemas.get(key) {
            known.insert(key.to_string(), cols.clone());
            continue;
        }
        let relation = match node.kind {
            NodeKind::Source => {
                let config = &ws.project.config.sources[node.name.as_str()];
                if let Some(cols) = &config.columns {
                    known.insert(
                        key.to_string(),
                        cols.keys().map(|c| c.to_lowercase()).collect(),
                    );
                    continue;
                }
                // Files of the project only: a pull request cannot make
                // hubforge read files elsewhere on the machine.
                let inside = config.path.as_deref().is_some_and(|p| {
                    let p = Path::new(p);
                    p.is_relative() && !p.components().any(|c| c == std::path::Component::ParentDir)
                });
                let pattern = config.path.as_deref().unwrap_or_default();
                if !inside || crate::sources::source_paths(&ws.project.root, pattern).is_empty() {
                    continue;
                }
                crate::sources::relation(&ws.project.root, config)
            }
            NodeKind::Seed => match ws.project.seed(&node.name) {
                Some(seed) if ws.project.root.join(&seed.path).is_file() => {
                    crate::sources::seed_relation(&ws.project.root, seed)
                }
                _ => continue,
            },
            NodeKind::Model(_) => continue,
        };
        to_read.push((key.to_string(), relation));
    }
    if !read_files || to_read.is_empty() {
        return Ok(());
    }
    use crate::engine::Engine as _;
    let engine = crate::engine::duckdb::DuckDbEngine::in_memory()?;
    // One session per file, side by side: DuckDB's sniffing of a file's
    // columns is most of the cost.
    let read: Vec<(String, Option<Vec<String>>)> = to_read
        .into_par_iter()
        .map(|(key, relation)| {
            let cols = engine
                .session()
                .ok()
                .and_then(|s| crate::sources::describe(s.as_ref(), &relation).ok());
            (key, cols)
        })
        .collect();
    // A file that cannot be read leaves the lineage of its readers unknown.
    for (key, cols) in read {
        if let Some(cols) = cols {
            known.insert(key, cols);
        }
    }
    Ok(())
}

/// The sources and seeds read by a model whose column lineage is unknown.
fn unknown_readers(ws: &Workspace, versions: &[Option<ModelVersion>]) -> Vec<bool> {
    let mut marked = vec![false; ws.dag.len()];
    for (id, v) in versions.iter().enumerate() {
        if v.as_ref().is_some_and(|v| v.lineage_unknown.is_some()) {
            for p in ws.dag.parents(id) {
                marked[p] |= !ws.dag.nodes[p].kind.is_model();
            }
        }
    }
    marked
}

/// State of the warehouse when there is one, read-only; never creates it.
fn read_state(ws: &Workspace) -> Result<Option<State>> {
    use crate::engine::Engine as _;
    if ws.project.config.warehouse.engine == crate::config::EngineKind::Spark {
        return spark_state(ws);
    }
    let path = ws.project.warehouse_path();
    if !path.is_file() {
        return Ok(None);
    }
    let engine = crate::engine::duckdb::DuckDbEngine::open(
        &path,
        &crate::engine::duckdb::DuckDbOptions::of(ws, true),
    )?;
    let session = engine.session()?;
    let state = crate::state::read(session.as_ref())?;
    Ok(state.schema_version.is_some().then_some(state))
}

/// State of a project on Spark, replayed from its state log.
#[cfg(feature = "spark")]
fn spark_state(ws: &Workspace) -> Result<Option<State>> {
    let state = crate::build::spark::read_state(ws)?;
    Ok(state.schema_version.is_some().then_some(state))
}

#[cfg(not(feature = "spark"))]
fn spark_state(_: &Workspace) -> Result<Option<State>> {
    Err(crate::error::Error::Engine(
        "this project is built on Spark ([warehouse] engine = \"spark\"), and this hubforge \
         was compiled without the Spark engine; build hubforge with `--features spark`"
            .to_string(),
    ))
}

/// Models whose own inputs differ between the versions: file, macros or vars
/// used, or a source or seed they read.
fn touched(
    ws: &Workspace,
    reads: &Reads,
    other: &Workspace,
    changed_files: &BTreeSet<PathBuf>,
    changed_nodes: &BTreeSet<String>,
) -> BTreeSet<NodeId> {
    let mut out = BTreeSet::new();
    for (m, file) in ws.project.models.iter().enumerate() {
        let id = ws.model_node(m);
        let usage = &ws.models[m].usage;
        let same_in_other = other
            .dag
            .lookup(&file.name)
            .and_then(|o| other.model(o))
            .is_some_and(|(f, _)| f.path == file.path && f.text == file.text);
        let macros_differ = usage.macros.iter().any(|n| {
            ws.templates.macro_def(n).map(|d| &d.source)
                != other.templates.macro_def(n).map(|d| &d.source)
        });
        let vars_differ = usage
            .vars
            .iter()
            .any(|v| ws.templates.var_value(v) != other.templates.var_value(v));
        let reads_changed = reads.parents[id].iter().any(|&p| {
            !ws.dag.nodes[p].kind.is_model() && changed_nodes.contains(ws.dag.nodes[p].name.key())
        });
        if !same_in_other
            || changed_files.contains(&file.path)
            || macros_differ
            || vars_differ
            || reads_changed
        {
            out.insert(id);
        }
    }
    out
}

/// Sources whose definition differs and seeds whose file differs (lowercase).
fn changed_inputs(
    head: &Workspace,
    base: &Workspace,
    files: &BTreeSet<PathBuf>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut sources = BTreeSet::new();
    let all: BTreeSet<&String> = head
        .project
        .config
        .sources
        .keys()
        .chain(base.project.config.sources.keys())
        .collect();
    for name in all {
        if head.project.config.sources.get(name) != base.project.config.sources.get(name) {
            sources.insert(name.to_lowercase());
        }
    }
    let seeds = head
        .project
        .seeds
        .iter()
        .chain(base.project.seeds.iter())
        .filter(|s| files.contains(&s.path))
        .map(|s| s.name.to_lowercase())
        .collect();
    (sources, seeds)
}

/// Compute the impact of the working tree against `reference`.
pub fn impact(
    root: &Path,
    var_overrides: &[(String, String)],
    reference: &str,
    clock_now: NaiveDateTime,
) -> Result<Report> {
    let t = std::time::Instant::now();
    let base_files = read_base(root, reference)?;
    crate::progress::timing("read base from git", t.elapsed());
    let t = std::time::Instant::now();
    let mut head = Workspace::load_deferred(root, var_overrides)?;
    crate::progress::timing("load project", t.elapsed());
    let t = std::time::Instant::now();
    let short = &base_files.commit[..base_files.commit.len().min(12)];
    let at_base = |ds: Diagnostics| {
        Error::Input(Diagnostics(
            ds.0.into_iter()
                .map(|d| d.with_note(format!("in the project at {reference} ({short})")))
                .collect(),
        ))
    };
    let config_changed = base_files.config_text != head.project.config_text;
    let base_project = head
        .project
        .with_files(
            config_changed.then(|| base_files.config_text.clone()),
            &base_files.files,
        )
        .map_err(at_base)?;
    let mut base =
        Workspace::from_project(base_project, var_overrides, Some(&head), Depth::Deferred)
            .map_err(at_base)?;
    crate::progress::timing("load base version", t.elapsed());

    let t = std::time::Instant::now();
    let now = crate::plan::end_of_history(&head, clock_now);
    let state = read_state(&head)?;
    let empty = State::default();
    let st = state.as_ref().unwrap_or(&empty);
    crate::progress::timing("read state", t.elapsed());
    let t = std::time::Instant::now();

    let changed_files: BTreeSet<PathBuf> = base_files.files.keys().cloned().collect();
    let (changed_sources, changed_seeds) = changed_inputs(&head, &base, &changed_files);
    let changed_nodes: BTreeSet<String> = changed_sources.union(&changed_seeds).cloned().collect();
    // Over deferred models' candidates the scope holds at least the true one.
    // Parse every model in it and compute it again, until it holds no deferred
    // model: then every edge it was computed from is a parsed reference, and
    // it is exactly the scope of a project loaded fully.
    let Scope {
        touched_head,
        reach_head,
        wanted_head,
        wanted_base,
    } = loop {
        let scope = Scope::of(&head, &base, &changed_files, &changed_nodes, &changed_seeds);
        let parsed_head = head.analyse(wanted_models(&head, &scope.wanted_head), None)?;
        let parsed_base = base
            .analyse(wanted_models(&base, &scope.wanted_base), Some(&head))
            .map_err(at_base)?;
        if !parsed_head && !parsed_base {
            break scope;
        }
    };

    crate::progress::timing("what the change reaches", t.elapsed());
    let t = std::time::Instant::now();
    // Columns of sources and seeds from state and declarations first. Lineage
    // never guesses a column's source when one is unknown (it says the lineage
    // is unknown instead), so the files are read only when some version needs them.
    let mut schemas = KnownSchemas::new();
    schemas_for(&head, &wanted_head, st, &mut schemas, false)?;
    schemas_for(&base, &wanted_base, st, &mut schemas, false)?;
    let no_state = State::default();
    // The base takes over the lineage of every model whose SQL and inputs are
    // the same as in the working tree: most of what a change reaches.
    let both_versions = |schemas: &KnownSchemas| {
        use crate::fingerprint::versions_sharing;
        let head_t = versions_sharing(&head, schemas, &no_state, &wanted_head, None);
        let base_t = versions_sharing(
            &base,
            schemas,
            &no_state,
            &wanted_base,
            Some((&head, &head_t)),
        );
        (head_t.versions, base_t.versions)
    };
    let (mut head_v, mut base_v) = both_versions(&schemas);
    // Read the files of the sources and seeds that models of unknown lineage
    // read, until no more columns are learnt.
    loop {
        let before = schemas.len();
        schemas_for(
            &head,
            &unknown_readers(&head, &head_v),
            st,
            &mut schemas,
            true,
        )?;
        schemas_for(
            &base,
            &unknown_readers(&base, &base_v),
            st,
            &mut schemas,
            true,
        )?;
        if schemas.len() == before {
            break;
        }
        (head_v, base_v) = both_versions(&schemas);
    }
    crate::progress::timing("fingerprints and lineage", t.elapsed());

    let t = std::time::Instant::now();
    let both = Both {
        versions: head_v
            .iter()
            .chain(base_v.iter())
            .flatten()
            .map(|v| ((v.name.key().to_string(), v.fingerprint.clone()), v.clone()))
            .collect(),
    };
    let input = Inputs {
        head: &head,
        base: &base,
        head_v: &head_v,
        base_v: &base_v,
        state: state.as_ref(),
        now,
    };
    let mut report = compare(&input, &both, &reach_head, &touched_head, &changed_seeds);
    report.base = Base {
        reference: reference.to_string(),
        commit: base_files.commit.clone(),
    };
    report.files = file_changes(&base_files, &head, &base, &report);
    report.macros = macro_changes(&head, &base);
    report.vars = var_changes(&head, &base);
    report.summary = summarise(&report);
    crate::progress::timing("compare and report", t.elapsed());
    Ok(report)
}

struct Inputs<'a> {
    head: &'a Workspace,
    base: &'a Workspace,
    head_v: &'a [Option<ModelVersion>],
    base_v: &'a [Option<ModelVersion>],
    state: Option<&'a State>,
    now: NaiveDateTime,
}

/// How one model of the working tree fares.
enum Outcome {
    Changed(ModelImpact),
    Affected(ModelImpact),
    Untouched,
}

fn compare(
    input: &Inputs,
    both: &Both,
    reach: &BTreeSet<NodeId>,
    touched: &BTreeSet<NodeId>,
    changed_seeds: &BTreeSet<String>,
) -> Report {
    let (head, base) = (input.head, input.base);
    let mut comparer = Comparer::new(both);
    // Removed models and new ones with the same logic are renames.
    let removed_ids: Vec<NodeId> = base
        .dag
        .order
        .iter()
        .copied()
        .filter(|&id| {
            base.dag.nodes[id].kind.is_model()
                && head.dag.lookup(base.dag.nodes[id].name.as_str()).is_none()
        })
        .collect();
    let mut renamed_from: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    for &id in reach {
        let node = &head.dag.nodes[id];
        if !node.kind.is_model() || base.dag.lookup(node.name.as_str()).is_some() {
            continue;
        }
        let (file, _) = head.model(id).expect("model");
        let own = input.head_v[id].as_ref().map(|v| v.own.as_str());
        if let Some(&old) = removed_ids.iter().find(|&&old| {
            !renamed_from.values().any(|&o| o == old)
                && (base.model(old).is_some_and(|(f, _)| f.text == file.text)
                    || input.base_v[old].as_ref().map(|v| v.own.as_str()) == own)
        }) {
            renamed_from.insert(id, old);
        }
    }

    let mut outcomes: HashMap<NodeId, Outcome> = HashMap::new();
    // Nodes whose whole data is new because a seed they read changed.
    let mut data_changed: BTreeMap<NodeId, String> = BTreeMap::new();
    for s in changed_seeds {
        if let Some(id) = head.dag.lookup(s) {
            data_changed.insert(id, format!("seed `{}` changed", head.dag.nodes[id].name));
        }
    }
    let mut changes: HashMap<NodeId, Change> = HashMap::new();
    for &id in head.dag.order.iter().filter(|id| reach.contains(id)) {
        let node = &head.dag.nodes[id];
        let NodeKind::Model(kind) = node.kind else {
            continue;
        };
        let version = input.head_v[id]
            .as_ref()
            .expect("reached nodes have versions");
        let base_id = base.dag.lookup(node.name.as_str());
        let change = match base_id.and_then(|b| input.base_v[b].as_ref()) {
            Some(old) => comparer.compare(&old.fingerprint, version),
            None => Change {
                category: ChangeKind::New,
                reason: match renamed_from.get(&id) {
                    Some(&old) => format!(
                        "renamed from {}: the same logic, built under its new name",
                        base.dag.nodes[old].name
                    ),
                    None => "new model".to_string(),
                },
                rebuild: true,
                affected: Affected::All("new model".to_string()),
                added: version.column_names().into_iter().collect(),
            },
        };
        let from_seed = head
            .dag
            .parents(id)
            .into_iter()
            .find_map(|p| data_changed.get(&p).map(|r| (p, r.clone())));
        let is_touched = touched.contains(&id);
        let outcome = if is_touched
            && change.category != ChangeKind::Unchanged
            && change.category != ChangeKind::Indirect
        {
            Outcome::Changed(model_impact(
                input,
                id,
                kind,
                &change,
                renamed_from.get(&id).copied(),
            ))
        } else if change.rebuild {
            Outcome::Affected(model_impact(input, id, kind, &change, None))
        } else if let Some((parent, root)) = from_seed {
            data_changed.insert(id, root.clone());
            let seeded = Change {
                category: ChangeKind::SourceChanged,
                reason: if head.dag.nodes[parent].kind.is_model() {
                    format!("{root} (through {})", head.dag.nodes[parent].name)
                } else {
                    root
                },
                rebuild: true,
                affected: Affected::All(String::new()),
                added: BTreeSet::new(),
            };
            Outcome::Affected(model_impact(input, id, kind, &seeded, None))
        } else {
            Outcome::Untouched
        };
        changes.insert(id, change);
        outcomes.insert(id, outcome);
    }

    let mut changed = Vec::new();
    let mut affected = Vec::new();
    let mut not_affected = Vec::new();
    let impacted = |id: NodeId, outcomes: &HashMap<NodeId, Outcome>| {
        matches!(
            outcomes.get(&id),
            Some(Outcome::Changed(_) | Outcome::Affected(_))
        )
    };
    for &id in head.dag.order.iter().filter(|id| reach.contains(id)) {
        match outcomes.get(&id) {
            Some(Outcome::Changed(m)) => changed.push(m.clone()),
            Some(Outcome::Affected(m)) => affected.push(m.clone()),
            Some(Outcome::Untouched) => {
                let parents: Vec<NodeId> = head
                    .dag
                    .parents(id)
                    .into_iter()
                    .filter(|&p| impacted(p, &outcomes))
                    .collect();
                if parents.is_empty() || touched.contains(&id) {
                    continue;
                }
                let version = input.head_v[id].as_ref().expect("version");
                let reasons: Vec<String> = parents
                    .iter()
                    .map(|&p| unaffected_reason(head, p, version, changes.get(&p)))
                    .collect();
                not_affected.push(Unaffected {
                    name: head.dag.nodes[id].name.to_string(),
                    kind: head.dag.nodes[id].kind.as_str(),
                    reason: reasons.join("; "),
                });
            }
            None => {}
        }
    }
    let renamed: BTreeSet<NodeId> = renamed_from.values().copied().collect();
    let removed: Vec<Removed> = removed_ids
        .iter()
        .filter(|id| !renamed.contains(id))
        .map(|&id| {
            let (file, _) = base.model(id).expect("model");
            Removed {
                name: file.name.clone(),
                kind: file.config.kind.as_str(),
                file: display_path(&file.path),
                product: file.config.product,
                destinations: destinations_of(base, &file.name, &file.config.destinations),
            }
        })
        .collect();
    let mermaid = mermaid(head, &changed, &affected, &not_affected, &removed);
    let mut products = Vec::new();
    let mut dests: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in changed.iter().chain(affected.iter()) {
        let data = m.full || !m.intervals.is_empty();
        if m.product {
            products.push(Product {
                name: m.name.clone(),
                change: m.change,
                destinations: if data {
                    m.destinations.clone()
                } else {
                    Vec::new()
                },
            });
            if data {
                for d in &m.destinations {
                    dests.entry(d.clone()).or_default().insert(m.name.clone());
                }
            }
        }
    }
    let destinations = dests
        .into_iter()
        .map(|(name, products)| DestinationImpact {
            paused: head
                .project
                .config
                .destinations
                .iter()
                .any(|d| d.name == name && d.paused),
            name,
            products: products.into_iter().collect(),
        })
        .collect();
    Report {
        schema_version: SCHEMA_VERSION,
        project: head.project.config.project.name.clone(),
        base: Base {
            reference: String::new(),
            commit: String::new(),
        },
        summary: Summary {
            changed: 0,
            affected: 0,
            removed: 0,
            products: 0,
            destinations: Vec::new(),
            intervals: 0,
            rows: None,
            breaking: false,
            text: String::new(),
        },
        files: Vec::new(),
        changed,
        affected,
        not_affected,
        removed,
        products,
        destinations,
        macros: Vec::new(),
        vars: Vec::new(),
        mermaid,
        warehouse: input.state.is_some(),
    }
}

/// Why a reader of `parent` is not affected by its change.
fn unaffected_reason(
    ws: &Workspace,
    parent: NodeId,
    child: &ModelVersion,
    change: Option<&Change>,
) -> String {
    let pname = &ws.dag.nodes[parent].name;
    let pkey = pname.key();
    let read: BTreeSet<&str> = child
        .columns
        .iter()
        .flat_map(|c| c.inputs.iter())
        .chain(child.row_inputs.iter())
        .filter(|(t, _)| t == pkey)
        .map(|(_, c)| c.as_str())
        .collect();
    let changed: Vec<String> = match change.map(|c| (&c.affected, &c.added)) {
        Some((Affected::Columns(cols), added)) => cols
            .iter()
            .chain(added.iter())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        Some((_, added)) => added.iter().cloned().collect(),
        None => Vec::new(),
    };
    let read_text = if read.is_empty() {
        "none of its columns".to_string()
    } else {
        read.into_iter().collect::<Vec<_>>().join(", ")
    };
    if changed.is_empty() {
        format!("reads {read_text} of {pname}, none of which change")
    } else {
        format!(
            "reads {read_text} of {pname}, not the changed {}",
            changed.join(", ")
        )
    }
}

/// The destinations a product is delivered to.
fn destinations_of(ws: &Workspace, name: &str, own: &[String]) -> Vec<String> {
    let mut out: BTreeSet<String> = own.iter().cloned().collect();
    for d in &ws.project.config.destinations {
        if d.products.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            out.insert(d.name.clone());
        }
    }
    out.into_iter().collect()
}

fn model_impact(
    input: &Inputs,
    id: NodeId,
    kind: Kind,
    change: &Change,
    renamed_from: Option<NodeId>,
) -> ModelImpact {
    let head = input.head;
    let (file, analysis) = head.model(id).expect("model");
    let version = input.head_v[id].as_ref().expect("version");
    let key = file.name.to_lowercase();
    let columns: Vec<String> = match &change.affected {
        Affected::Columns(c) => c.iter().cloned().collect(),
        Affected::All(_) if change.category == ChangeKind::New => Vec::new(),
        Affected::All(_) => version.column_names(),
        Affected::None => Vec::new(),
    };
    let records = input.state.and_then(|s| s.intervals.get(&key));
    let built = input.state.map(|s| s.built(&key)).filter(|b| !b.is_empty());
    let view_passes = kind == Kind::View
        && !matches!(
            change.category,
            ChangeKind::New | ChangeKind::Breaking | ChangeKind::NonBreaking
        );
    let (full, intervals, backfill) = if view_passes {
        (
            false,
            IntervalSet::new(),
            "nothing: a view, it reads the new data".to_string(),
        )
    } else if !change.rebuild {
        let why = if change.category == ChangeKind::MetadataOnly {
            "nothing: only metadata changed"
        } else if file.config.forward_only {
            "nothing: forward-only, the new logic applies to intervals not yet built"
        } else {
            "nothing"
        };
        (false, IntervalSet::new(), why.to_string())
    } else {
        match kind {
            Kind::Incremental => {
                let universe = crate::plan::universe(head, id, input.now)
                    .map(|(_, u)| u)
                    .unwrap_or_default();
                let set = match (&built, change.category) {
                    (_, ChangeKind::New) => universe,
                    (Some(b), _) => b.intersect(&universe),
                    (None, _) => universe,
                };
                let text = if set.is_empty() {
                    "nothing: no complete interval yet".to_string()
                } else {
                    let unit = file.config.unit.unwrap_or(Unit::Day);
                    format!("{set} ({} {}s)", set.count_units(unit), unit.as_str())
                };
                (false, set, text)
            }
            Kind::Table => (true, IntervalSet::new(), "whole table".to_string()),
            Kind::View => (
                true,
                IntervalSet::new(),
                "view recreated (holds no data)".to_string(),
            ),
        }
    };
    let interval_count = if full {
        1
    } else {
        intervals.count_units(file.config.unit.unwrap_or(Unit::Day))
    };
    let estimated_rows = records.and_then(|recs| {
        if kind == Kind::View || change.category == ChangeKind::New {
            return None;
        }
        if full {
            return (!recs.is_empty()).then(|| recs.iter().map(|r| r.rows).sum());
        }
        if intervals.is_empty() {
            return None;
        }
        Some(
            recs.iter()
                .filter(|r| {
                    !IntervalSet::single(r.interval)
                        .intersect(&intervals)
                        .is_empty()
                })
                .map(|r| r.rows)
                .sum(),
        )
    });
    let backfill = match estimated_rows {
        Some(rows) => format!("{backfill}, ~{} rows", thousands(rows)),
        None => backfill,
    };
    // The file's diff, or its rendered SQL's when a macro or var changed it.
    let base_id = renamed_from.or_else(|| input.base.dag.lookup(&file.name));
    let (diff, diff_of) = match base_id.and_then(|b| input.base.model(b)) {
        Some((old, old_analysis)) => {
            if old.text != file.text {
                (
                    unified(&old.text, &file.text, &old.path, &file.path),
                    "file",
                )
            } else if old_analysis.rendered != analysis.rendered {
                let diff = unified(
                    &for_review(input.base, old),
                    &for_review(head, file),
                    &old.path,
                    &file.path,
                );
                (diff, "rendered")
            } else {
                (String::new(), "")
            }
        }
        None if change.category == ChangeKind::New => (
            unified("", &file.text, Path::new("/dev/null"), &file.path),
            "file",
        ),
        None => (String::new(), ""),
    };
    ModelImpact {
        name: file.name.clone(),
        kind: kind.as_str(),
        file: display_path(&file.path),
        change: change.category.as_str(),
        reason: change.reason.clone(),
        columns,
        added_columns: change.added.iter().cloned().collect(),
        full,
        intervals,
        interval_count,
        estimated_rows,
        backfill,
        product: file.config.product,
        destinations: destinations_of(head, &file.name, &file.config.destinations),
        renamed_from: renamed_from.map(|b| input.base.dag.nodes[b].name.to_string()),
        diff,
        diff_of,
    }
}

/// A model's SQL rendered for its first unit of history, without the blanked
/// header: what a reviewer reads when only a macro or var changed it.
fn for_review(ws: &Workspace, file: &crate::project::ModelFile) -> String {
    let start = file
        .config
        .start
        .unwrap_or(ws.project.config.project.start)
        .and_hms_opt(0, 0, 0)
        .expect("midnight");
    let unit = file.config.unit.unwrap_or(Unit::Day);
    let window = crate::template::Window::new(start, unit.add(start, 1), file.config.unit);
    let rendered = ws
        .templates
        .render(&file.path, &file.text, &file.body, &window)
        .unwrap_or_default();
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim_end)
        .skip_while(|l| l.is_empty())
        .collect();
    lines.join("\n") + "\n"
}

fn unified(old: &str, new: &str, old_path: &Path, new_path: &Path) -> String {
    let a = if old_path == Path::new("/dev/null") {
        "/dev/null".to_string()
    } else {
        format!("a/{}", display_path(old_path))
    };
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&a, &format!("b/{}", display_path(new_path)))
        .to_string()
}

fn file_changes(
    files: &BaseFiles,
    head: &Workspace,
    base: &Workspace,
    report: &Report,
) -> Vec<FileChange> {
    let model_effect = |name: &str| {
        report
            .changed
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .map(|m| format!("{}: {}", m.change, m.reason))
    };
    let mut out = Vec::new();
    let added: Vec<&PathBuf> = files
        .files
        .iter()
        .filter(|(p, t)| t.is_none() && files.in_head.contains(*p))
        .map(|(p, _)| p)
        .collect();
    let gone: Vec<&PathBuf> = files
        .files
        .iter()
        .filter(|(p, t)| t.is_some() && !files.in_head.contains(*p))
        .map(|(p, _)| p)
        .collect();
    let mut paired: BTreeSet<&PathBuf> = BTreeSet::new();
    let mut renames: Vec<(&PathBuf, &PathBuf)> = Vec::new();
    for new in &added {
        let new_text = std::fs::read_to_string(head.project.root.join(new)).ok();
        let new_name = new.file_stem();
        let partner = gone.iter().find(|old| {
            !paired.contains(**old)
                && file_role(old) == file_role(new)
                && (files.files[**old].as_deref() == new_text.as_deref()
                    || (file_role(new) == Some(FileRole::Model) && old.file_stem() == new_name)
                    || report.changed.iter().any(|m| {
                        m.renamed_from
                            .as_deref()
                            .is_some_and(|r| Some(std::ffi::OsStr::new(r)) == old.file_stem())
                            && Some(std::ffi::OsStr::new(&m.name)) == new_name
                    }))
        });
        if let Some(old) = partner {
            paired.insert(old);
            paired.insert(new);
            renames.push((old, new));
        }
    }
    for (old, new) in renames {
        let effect = match file_role(new) {
            Some(FileRole::Model) => {
                let name = new
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                model_effect(&name).unwrap_or_else(|| "the same model: no change".to_string())
            }
            _ => "renamed".to_string(),
        };
        out.push(FileChange {
            path: display_path(new),
            status: "renamed",
            from: Some(display_path(old)),
            effect,
        });
    }
    for (path, before) in &files.files {
        if paired.contains(path) {
            continue;
        }
        let status = match (before.is_some(), files.in_head.contains(path)) {
            (false, true) => "added",
            (true, false) => "removed",
            (true, true) => "modified",
            (false, false) => continue,
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let effect = match file_role(path) {
            Some(FileRole::Model) => match status {
                "removed" => format!("model {stem} removed"),
                _ => model_effect(&stem)
                    .unwrap_or_else(|| "no change of logic (formatting or comments)".to_string()),
            },
            Some(FileRole::Seed) => format!("seed {stem}: its readers are rebuilt"),
            Some(FileRole::Macro) => "macros (see below)".to_string(),
            _ => String::new(),
        };
        out.push(FileChange {
            path: display_path(path),
            status,
            from: None,
            effect,
        });
    }
    if head.project.config_text != base.project.config_text {
        out.push(FileChange {
            path: CONFIG_FILE.to_string(),
            status: "modified",
            from: None,
            effect: "project configuration".to_string(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Models (of `ws`) whose templates use macro `name`.
fn users(ws: &Workspace, pick: impl Fn(&crate::template::Usage) -> bool) -> BTreeSet<String> {
    ws.project
        .models
        .iter()
        .zip(&ws.models)
        .filter(|(_, a)| pick(&a.usage))
        .map(|(f, _)| f.name.clone())
        .collect()
}

fn macro_changes(head: &Workspace, base: &Workspace) -> Vec<MacroChange> {
    let names: BTreeSet<&str> = head
        .templates
        .macro_names()
        .chain(base.templates.macro_names())
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let before = base.templates.macro_def(name).map(|d| &d.source);
            let after = head.templates.macro_def(name).map(|d| &d.source);
            let change = match (before, after) {
                (Some(a), Some(b)) if a == b => return None,
                (Some(_), Some(_)) => "modified",
                (None, _) => "added",
                (_, None) => "removed",
            };
            let mut models = users(head, |u| u.macros.contains(name));
            models.extend(users(base, |u| u.macros.contains(name)));
            Some(MacroChange {
                name: name.to_string(),
                change,
                models: models.into_iter().collect(),
            })
        })
        .collect()
}

fn var_changes(head: &Workspace, base: &Workspace) -> Vec<VarChange> {
    let names: BTreeSet<&String> = head
        .templates
        .vars()
        .keys()
        .chain(base.templates.vars().keys())
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let before = base.templates.var_value(name);
            let after = head.templates.var_value(name);
            if before == after {
                return None;
            }
            let mut models = users(head, |u| u.vars.contains(name));
            models.extend(users(base, |u| u.vars.contains(name)));
            Some(VarChange {
                name: name.clone(),
                before: before.cloned(),
                after: after.cloned(),
                models: models.into_iter().collect(),
            })
        })
        .collect()
}

fn summarise(r: &Report) -> Summary {
    let all = || r.changed.iter().chain(r.affected.iter());
    let intervals: i64 = all().map(|m| m.interval_count).sum();
    let rows = r
        .warehouse
        .then(|| all().filter_map(|m| m.estimated_rows).sum::<i64>())
        .filter(|_| all().any(|m| m.estimated_rows.is_some()));
    let destinations: Vec<String> = r.destinations.iter().map(|d| d.name.clone()).collect();
    let breaking = r
        .changed
        .iter()
        .any(|m| m.change == ChangeKind::Breaking.as_str())
        || !r.removed.is_empty();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let text = if r.changed.is_empty() && r.affected.is_empty() && r.removed.is_empty() {
        "No model changes: nothing to rebuild.".to_string()
    } else {
        let mut parts = vec![
            format!("{} changed", plural(r.changed.len(), "model", "models")),
            format!("{} affected downstream", r.affected.len()),
        ];
        if !r.removed.is_empty() {
            parts.push(format!("{} removed", r.removed.len()));
        }
        parts.push(plural(r.products.len(), "product", "products"));
        parts.push(if destinations.is_empty() {
            "no destination receives data".to_string()
        } else {
            format!(
                "data for {}",
                plural(destinations.len(), "destination", "destinations")
            ) + &format!(" ({})", destinations.join(", "))
        });
        parts.push(plural(intervals as usize, "interval", "intervals") + " to rebuild");
        if let Some(rows) = rows {
            parts.push(format!("~{} rows", thousands(rows)));
        }
        parts.join(", ") + "."
    };
    Summary {
        changed: r.changed.len(),
        affected: r.affected.len(),
        removed: r.removed.len(),
        products: r.products.len(),
        destinations,
        intervals,
        rows,
        breaking,
        text,
    }
}

fn mermaid_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The changed, affected and untouched readers, with the edges between them.
fn mermaid(
    ws: &Workspace,
    changed: &[ModelImpact],
    affected: &[ModelImpact],
    unaffected: &[Unaffected],
    removed: &[Removed],
) -> String {
    if changed.is_empty() && affected.is_empty() && removed.is_empty() {
        return String::new();
    }
    let mut class: BTreeMap<String, &str> = BTreeMap::new();
    for m in changed {
        class.insert(m.name.to_lowercase(), "changed");
    }
    for m in affected {
        class.insert(m.name.to_lowercase(), "affected");
    }
    for m in unaffected {
        class.insert(m.name.to_lowercase(), "unaffected");
    }
    let mut out = String::from("flowchart LR\n");
    for &id in &ws.dag.order {
        let node = &ws.dag.nodes[id];
        if let Some(c) = class.get(node.name.key()) {
            out.push_str(&format!(
                "  {}[\"{} ({})\"]:::{c}\n",
                mermaid_id(node.name.key()),
                node.name,
                node.kind.as_str()
            ));
        }
    }
    for r in removed {
        out.push_str(&format!(
            "  {}[\"{} (removed)\"]:::removed\n",
            mermaid_id(&r.name.to_lowercase()),
            r.name
        ));
    }
    for (a, b) in ws.dag.edges() {
        let (na, nb) = (&ws.dag.nodes[a].name, &ws.dag.nodes[b].name);
        if class.contains_key(na.key()) && class.contains_key(nb.key()) {
            out.push_str(&format!(
                "  {} --> {}\n",
                mermaid_id(na.key()),
                mermaid_id(nb.key())
            ));
        }
    }
    out.push_str("  classDef changed fill:#f8d0c0,stroke:#c0392b,stroke-width:2px\n");
    out.push_str("  classDef affected fill:#fdebc8,stroke:#d68910\n");
    out.push_str("  classDef unaffected fill:#e8f6e8,stroke:#7f8c8d,stroke-dasharray:3 3\n");
    out.push_str("  classDef removed fill:#eeeeee,stroke:#7f8c8d,stroke-dasharray:5 5\n");
    out
}
