//! A loaded project: files read, templates rendered, SQL analysed, references
//! resolved and the DAG built. Every command starts from here.
//!
//! `hubforge impact` loads with [`Depth::Deferred`]: parsing every model is most
//! of the cost of loading, and a change reaches only a small part of the DAG.
//! There every model is read and rendered, but only a cheap lexical scan of its
//! SQL is done at first; [`Workspace::analyse`] parses the models that turn out
//! to matter.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::diagnostics::{Code, Diagnostic, Diagnostics, Location, did_you_mean, display_path};
use crate::engine::duckdb::parse_with_duckdb;
use crate::graph::{Dag, Node, NodeId, NodeKind};
use crate::project::{CONFIG_FILE, ModelFile, Project};
use crate::sql::{self, SqlErrorKind, TableRef};
use crate::template::{Templates, Usage, Window};

/// How a model's SQL was understood.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// Parsed by hubforge's SQL parser: dependencies, canonical form and
    /// column lineage are all known. The syntax tree is not kept (it is large);
    /// stages that need it parse `rendered` again.
    Sql { canonical: String },
    /// Only DuckDB's own parser accepts it: dependencies and the canonical form
    /// come from DuckDB; column lineage is unknown.
    DuckDb { canonical: String, reason: String },
    /// Not parsed yet ([`Depth::Deferred`]): the model's `refs` are empty and
    /// `candidates` lists every node its rendered SQL names anywhere, resolved
    /// like a reference (every identifier and dotted name outside strings and
    /// comments, CTE names and columns included). That over-approximates the
    /// nodes it reads, so what a change can reach is bounded without parsing.
    Deferred { candidates: Vec<NodeId> },
}

/// How much of each model [`Workspace::from_project`] analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Parse every model: exact references, every error found.
    Full,
    /// Render every model (templates' errors and usage are known) but leave its
    /// SQL [`Parsed::Deferred`], until [`Workspace::analyse`]. The DAG then has
    /// the edges of analysed models only; deferred models' candidates stand in
    /// for theirs (see [`Workspace::may_read`]).
    Deferred,
}

/// A table reference in a model resolved to a node of the graph.
#[derive(Debug, Clone)]
pub struct ResolvedRef {
    pub node: NodeId,
    pub table: TableRef,
}

/// Everything known about one model after analysis.
#[derive(Debug, Clone)]
pub struct ModelAnalysis {
    /// The model rendered for the fixed analysis window.
    pub rendered: String,
    pub parsed: Parsed,
    /// Every reference, one per occurrence, in source order.
    pub refs: Vec<ResolvedRef>,
    pub usage: Usage,
}

impl ModelAnalysis {
    /// The canonical SQL fingerprints are computed from. Only analysed models
    /// are fingerprinted: a deferred one panics.
    pub fn canonical(&self) -> String {
        match &self.parsed {
            Parsed::Sql { canonical } | Parsed::DuckDb { canonical, .. } => canonical.clone(),
            Parsed::Deferred { .. } => panic!("a deferred model has no canonical form"),
        }
    }
}

/// A project loaded and analysed.
pub struct Workspace {
    pub project: Project,
    pub templates: Templates,
    pub dag: Dag,
    /// Indexed like `project.models`.
    pub models: Vec<ModelAnalysis>,
    /// Problems that do not stop the project from loading.
    pub warnings: Vec<Diagnostic>,
    /// What references resolve against: kept to analyse deferred models later.
    names: NameTable,
}

impl Workspace {
    /// Load the project at `root`. `var_overrides` replace `[vars]` entries
    /// (`--var name=value`; values are read as TOML when they parse, else as text).
    pub fn load(root: &Path, var_overrides: &[(String, String)]) -> Result<Workspace, Diagnostics> {
        Workspace::from_project(Project::load(root)?, var_overrides, None, Depth::Full)
    }

    /// [`Workspace::load`] with every model's SQL left [`Parsed::Deferred`].
    pub fn load_deferred(
        root: &Path,
        var_overrides: &[(String, String)],
    ) -> Result<Workspace, Diagnostics> {
        Workspace::from_project(Project::load(root)?, var_overrides, None, Depth::Deferred)
    }

    /// Analyse a project read already. With `reuse`, a model whose file, and
    /// the macros and vars it uses, are the same as in that workspace keeps its
    /// analysis there (its references resolved again): another version of a
    /// project costs only the files that differ. That analysis may be deferred
    /// there, whatever `depth` says here.
    pub fn from_project(
        project: Project,
        var_overrides: &[(String, String)],
        reuse: Option<&Workspace>,
        depth: Depth,
    ) -> Result<Workspace, Diagnostics> {
        let mut vars: BTreeMap<String, serde_json::Value> = project
            .config
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect();
        for (k, v) in var_overrides {
            vars.insert(k.clone(), parse_var_value(v));
        }
        let templates = Templates::new(&project.macros, vars).map_err(Diagnostics)?;
        let nodes = graph_nodes(&project);
        let names = NameTable::new(&project, &nodes);
        let carry = reuse.and_then(|other| names.carried_from(&other.names));

        let results: Vec<Result<ModelAnalysis, Vec<Diagnostic>>> = project
            .models
            .par_iter()
            .map(|m| {
                reuse
                    .and_then(|other| {
                        reused_analysis(other, m, &templates, &names, carry.as_deref())
                    })
                    .map_or_else(|| analyse_model(m, &templates, &names, depth), Ok)
            })
            .collect();
        let mut problems = Diagnostics::default();
        let mut models = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(a) => models.push(a),
                Err(ds) => problems.extend(ds),
            }
        }
        problems.extend(check_destinations(&project));
        problems.extend(crate::validate::audit::check_audits(&project));
        if problems.has_errors() {
            return Err(problems.sorted());
        }
        let dag = build_dag(&project, &nodes, &names, &models, &mut problems)?;
        Ok(Workspace {
            project,
            templates,
            dag,
            models,
            warnings: problems.0,
            names,
        })
    }

    /// Parse the deferred models among `models` (indices into
    /// `project.models`), taking over `reuse`'s analysis of those it has
    /// analysed (as [`Workspace::from_project`] does), and rebuild the DAG with
    /// their references. An error is what loading the model fully reports.
    /// Returns whether any model was deferred.
    pub fn analyse(
        &mut self,
        models: impl IntoIterator<Item = usize>,
        reuse: Option<&Workspace>,
    ) -> Result<bool, Diagnostics> {
        let todo: Vec<usize> = models
            .into_iter()
            .filter(|&m| matches!(self.models[m].parsed, Parsed::Deferred { .. }))
            .collect();
        if todo.is_empty() {
            return Ok(false);
        }
        let results: Vec<(usize, Result<ModelAnalysis, Vec<Diagnostic>>)> = todo
            .into_par_iter()
            .map(|m| {
                let file = &self.project.models[m];
                let analysis = &self.models[m];
                // No candidates carried: a deferred analysis there is no help here.
                let reused = reuse.and_then(|other| {
                    reused_analysis(other, file, &self.templates, &self.names, None)
                });
                let analysed = reused.map_or_else(
                    || {
                        parse_rendered(
                            file,
                            analysis.rendered.clone(),
                            analysis.usage.clone(),
                            &self.names,
                        )
                    },
                    Ok,
                );
                (m, analysed)
            })
            .collect();
        let mut problems = Diagnostics::default();
        for (m, r) in results {
            match r {
                Ok(a) => self.models[m] = a,
                Err(ds) => problems.extend(ds),
            }
        }
        if problems.has_errors() {
            return Err(problems.sorted());
        }
        self.dag = build_dag(
            &self.project,
            &self.dag.nodes,
            &self.names,
            &self.models,
            &mut problems,
        )?;
        Ok(true)
    }

    /// The nodes `node` may read: its parents in the DAG, or for a deferred
    /// model its candidates (a superset of what it reads).
    pub fn may_read(&self, node: NodeId) -> Vec<NodeId> {
        match self.model(node) {
            Some((
                _,
                ModelAnalysis {
                    parsed: Parsed::Deferred { candidates },
                    ..
                },
            )) => candidates.clone(),
            _ => self.dag.parents(node),
        }
    }

    /// What of each model's SQL the Spark engine cannot run: every construct of
    /// DuckDB's dialect with no exact Spark SQL translation, at its place in the
    /// model's file.
    pub fn untranslatable_for_spark(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for (file, analysis) in self.project.models.iter().zip(&self.models) {
            let Err(problems) = crate::sql::spark::to_spark(&analysis.rendered) else {
                continue;
            };
            for p in problems {
                out.push(
                    Diagnostic::error(
                        Code::Untranslatable,
                        format!("model `{}` cannot run on Spark: {}", file.name, p.message),
                    )
                    .at(rendered_location(
                        file,
                        &analysis.rendered,
                        p.line as usize,
                        p.column as usize,
                        1,
                    ))
                    .with_help(
                        "rewrite it with constructs both engines share; `hubforge check --engine \
                         duckdb` still accepts it",
                    ),
                );
            }
        }
        out
    }

    /// The node of model `m` (an index into `project.models`).
    pub fn model_node(&self, m: usize) -> NodeId {
        self.dag
            .lookup(&self.project.models[m].name)
            .expect("every model is a node")
    }

    /// The node a table reference in a model's SQL names.
    pub fn resolve(&self, table: &TableRef) -> Option<NodeId> {
        resolve_ref(
            table,
            |n| self.dag.lookup(n),
            |t| {
                let (name, _) = self.project.config.sources.iter().find(|(_, s)| {
                    s.table
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(t))
                })?;
                self.dag.lookup(name)
            },
        )
    }

    /// The model file and analysis of a node, when it is a model.
    pub fn model(&self, node: NodeId) -> Option<(&ModelFile, &ModelAnalysis)> {
        self.dag.nodes[node]
            .model
            .map(|m| (&self.project.models[m], &self.models[m]))
    }
}

fn parse_var_value(text: &str) -> serde_json::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|t| t.get("v").map(toml_to_json))
        .unwrap_or_else(|| serde_json::Value::String(text.to_string()))
}

/// TOML values as JSON; dates and times become their ISO text.
fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => J::from(*f),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Nodes: sources, then seeds, then models, each sorted by name.
fn graph_nodes(project: &Project) -> Vec<Node> {
    let mut nodes: Vec<Node> = project
        .config
        .sources
        .keys()
        .map(|name| Node {
            name: name.as_str().into(),
            kind: NodeKind::Source,
            file: PathBuf::from(CONFIG_FILE),
            model: None,
        })
        .collect();
    nodes.extend(project.seeds.iter().map(|s| Node {
        name: s.name.as_str().into(),
        kind: NodeKind::Seed,
        file: s.path.clone(),
        model: None,
    }));
    nodes.extend(project.models.iter().enumerate().map(|(i, m)| Node {
        name: m.name.as_str().into(),
        kind: NodeKind::Model(m.config.kind),
        file: m.path.clone(),
        model: Some(i),
    }));
    nodes
}

/// The DAG: an edge from every node a model's `refs` name to the model. A
/// model reading itself is an error, and so is a cycle.
fn build_dag(
    project: &Project,
    nodes: &[Node],
    names: &NameTable,
    models: &[ModelAnalysis],
    problems: &mut Diagnostics,
) -> Result<Dag, Diagnostics> {
    let mut edges = BTreeSet::new();
    for (m, analysis) in models.iter().enumerate() {
        let me = names.model_nodes[m];
        for r in &analysis.refs {
            if r.node == me {
                let file = &project.models[m];
                problems.push(
                    Diagnostic::error(
                        Code::SelfReference,
                        format!("model `{}` reads itself", file.name),
                    )
                    .at(ref_location(file, &analysis.rendered, &r.table))
                    .with_help("a model cannot read its own table; read its inputs instead"),
                );
            } else {
                edges.insert((r.node, me));
            }
        }
    }
    if problems.has_errors() {
        return Err(std::mem::take(problems).sorted());
    }
    let locate = |reader: NodeId, read: NodeId| {
        let m = nodes[reader].model?;
        let r = models[m].refs.iter().find(|r| r.node == read)?;
        Some(ref_location(
            &project.models[m],
            &models[m].rendered,
            &r.table,
        ))
    };
    Dag::new(nodes.to_vec(), &edges, &locate).map_err(Diagnostics::from)
}

/// Names that table references resolve against.
struct NameTable {
    /// Hashed: a deferred model's scan looks up every identifier it meets.
    by_key: HashMap<String, NodeId>,
    /// The lengths of `by_key`'s keys: most identifiers a scan meets are
    /// keywords and columns, passed over without hashing them.
    key_lengths: Lengths,
    /// `schema.table` of table sources → source node.
    source_tables: BTreeMap<String, NodeId>,
    model_nodes: Vec<NodeId>,
    names: Vec<String>,
}

impl NameTable {
    fn new(project: &Project, nodes: &[Node]) -> Self {
        let by_key: HashMap<String, NodeId> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.key().to_string(), i))
            .collect();
        let source_tables = project
            .config
            .sources
            .iter()
            .filter_map(|(name, s)| {
                Some((
                    s.table.as_ref()?.to_lowercase(),
                    by_key[&name.to_lowercase()],
                ))
            })
            .collect();
        let model_nodes = project
            .models
            .iter()
            .map(|m| by_key[&m.name.to_lowercase()])
            .collect();
        NameTable {
            key_lengths: Lengths::of(by_key.keys().map(String::len)),
            by_key,
            source_tables,
            model_nodes,
            names: nodes.iter().map(|n| n.name.to_string()).collect(),
        }
    }

    fn resolve(&self, table: &TableRef) -> Option<NodeId> {
        resolve_ref(
            table,
            |n| self.by_key.get(n).copied(),
            |t| self.source_tables.get(t).copied(),
        )
    }

    /// How the candidates of a deferred analysis in `other` (node ids there)
    /// carry over here: each node there → the node of the same name here, if
    /// any. Only when every name here resolves there to a node of the same
    /// name (a model new here, or one gone, is fine the one way, not the
    /// other): then every node the same SQL names here is the counterpart of
    /// one it names there.
    fn carried_from(&self, other: &NameTable) -> Option<Vec<Option<NodeId>>> {
        let names_there = self.by_key.keys().all(|k| other.by_key.contains_key(k));
        let tables_there = self.source_tables.iter().all(|(t, &id)| {
            other
                .source_tables
                .get(t)
                .is_some_and(|&o| self.names[id].to_lowercase() == other.names[o].to_lowercase())
        });
        (names_there && tables_there).then(|| {
            other
                .names
                .iter()
                .map(|n| self.by_key.get(&n.to_lowercase()).copied())
                .collect()
        })
    }

    /// Every node `sql` names as a reference would, anywhere outside strings
    /// and comments: each part of a dotted name by itself (`x`, and `main.x`,
    /// `db.main.x` through their last part) and each two consecutive parts as a
    /// source's `schema.table`. None when the text cannot be scanned with
    /// certainty.
    fn mentioned(&self, sql: &str) -> Option<Vec<NodeId>> {
        let mut found = BTreeSet::new();
        let mut key = String::new();
        let mut previous = String::new();
        sql::identifier_chains(sql, &mut |parts: &[Cow<str>]| {
            for (k, part) in parts.iter().enumerate() {
                std::mem::swap(&mut key, &mut previous);
                key.clear();
                if part.is_ascii() {
                    key.push_str(part);
                    key.make_ascii_lowercase();
                } else {
                    key.push_str(&part.to_lowercase());
                }
                if self.key_lengths.may_hold(key.len()) {
                    found.extend(self.by_key.get(key.as_str()));
                }
                if k > 0 && !self.source_tables.is_empty() {
                    let pair = format!("{previous}.{key}");
                    found.extend(self.source_tables.get(&pair));
                }
            }
        })
        .ok()?;
        Some(found.into_iter().collect())
    }
}

/// A set of lengths, up to 63 exactly, longer ones together.
struct Lengths(u64);

impl Lengths {
    fn of(lengths: impl Iterator<Item = usize>) -> Lengths {
        Lengths(lengths.fold(0, |bits, n| bits | 1 << n.min(63)))
    }

    fn may_hold(&self, n: usize) -> bool {
        self.0 & 1 << n.min(63) != 0
    }
}

/// `x`, `main.x` and `db.main.x` name a node; `schema.x` names a source
/// declared with `table = "schema.x"`.
fn resolve_ref(
    table: &TableRef,
    by_name: impl Fn(&str) -> Option<NodeId>,
    by_source_table: impl Fn(&str) -> Option<NodeId>,
) -> Option<NodeId> {
    let parts: Vec<String> = table.parts.iter().map(|p| p.to_lowercase()).collect();
    match parts.as_slice() {
        [name] => by_name(name),
        [schema, name] | [_, schema, name] if schema == "main" => by_name(name),
        [schema, name] | [_, schema, name] => by_source_table(&format!("{schema}.{name}")),
        _ => None,
    }
}

/// The analysis of the same model file in `other`, when it is valid here: the
/// same text, the same macros and vars, every reference resolving.
/// A deferred analysis holds only with `carry` (see [`NameTable::carried_from`]).
fn reused_analysis(
    other: &Workspace,
    model: &ModelFile,
    templates: &Templates,
    names: &NameTable,
    carry: Option<&[Option<NodeId>]>,
) -> Option<ModelAnalysis> {
    let node = other.dag.lookup(&model.name)?;
    let (file, analysis) = other.model(node)?;
    if file.text != model.text || file.path != model.path {
        return None;
    }
    let same_macros = analysis.usage.macros.iter().all(|m| {
        other.templates.macro_def(m).map(|d| &d.source) == templates.macro_def(m).map(|d| &d.source)
    });
    let same_vars = analysis
        .usage
        .vars
        .iter()
        .all(|v| other.templates.var_value(v) == templates.var_value(v));
    // A macro defined only here could be called where the other version had none.
    let same_macro_names = other.templates.macro_names().eq(templates.macro_names());
    if !(same_macros && same_vars && same_macro_names) {
        return None;
    }
    if let Parsed::Deferred { candidates } = &analysis.parsed {
        let carry = carry?;
        let mut here: Vec<NodeId> = candidates.iter().filter_map(|&c| carry[c]).collect();
        here.sort_unstable();
        return Some(ModelAnalysis {
            parsed: Parsed::Deferred { candidates: here },
            ..analysis.clone()
        });
    }
    let refs = analysis
        .refs
        .iter()
        .map(|r| {
            Some(ResolvedRef {
                node: names.resolve(&r.table)?,
                table: r.table.clone(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ModelAnalysis {
        refs,
        ..analysis.clone()
    })
}

/// Render a model and analyse its SQL, to `depth`. SQL the lexical scan
/// cannot read with certainty is parsed even when deferring.
fn analyse_model(
    model: &ModelFile,
    templates: &Templates,
    names: &NameTable,
    depth: Depth,
) -> Result<ModelAnalysis, Vec<Diagnostic>> {
    let rendered = templates
        .render(&model.path, &model.text, &model.body, &Window::analysis())
        .map_err(|d| vec![d])?;
    let usage = templates.usage(&model.body);
    if depth == Depth::Deferred
        && let Some(candidates) = names.mentioned(&rendered)
    {
        return Ok(ModelAnalysis {
            rendered,
            parsed: Parsed::Deferred { candidates },
            refs: Vec::new(),
            usage,
        });
    }
    parse_rendered(model, rendered, usage, names)
}

/// Parse a model's rendered SQL: its references, resolved, and canonical form.
fn parse_rendered(
    model: &ModelFile,
    rendered: String,
    usage: Usage,
    names: &NameTable,
) -> Result<ModelAnalysis, Vec<Diagnostic>> {
    let (parsed, tables) = match sql::parse_query(&rendered) {
        Ok(q) => {
            let tables = q.table_refs();
            (
                Parsed::Sql {
                    canonical: q.canonical(),
                },
                tables,
            )
        }
        Err(e) if e.kind == SqlErrorKind::Syntax => {
            let reason = format!(
                "hubforge's SQL parser does not understand this query ({})",
                e.message
            );
            match parse_with_duckdb(&rendered) {
                Ok(duck) => (
                    Parsed::DuckDb {
                        canonical: duck.canonical,
                        reason,
                    },
                    duck.tables,
                ),
                // DuckDB parsed it, but it is not a plain SELECT (a PIVOT or
                // UNPIVOT statement, say): read it at the token level.
                Err(m) if m.contains("Only SELECT statements can be serialized") => {
                    match sql::scan(&rendered) {
                        Ok(scanned) => (
                            Parsed::DuckDb {
                                canonical: scanned.canonical,
                                reason,
                            },
                            scanned.refs,
                        ),
                        Err(e) => return Err(vec![sql_error_diagnostic(model, &rendered, &e)]),
                    }
                }
                Err(duck_message) => {
                    let location = rendered_location(model, &rendered, e.line, e.column, 1);
                    return Err(vec![
                        Diagnostic::error(
                            Code::SqlSyntax,
                            format!("SQL syntax error: {}", e.message),
                        )
                        .at(location)
                        .with_note(format!("DuckDB says: {}", first_line(&duck_message)))
                        .with_help("fix the SQL; each model is one SELECT in DuckDB's dialect"),
                    ]);
                }
            }
        }
        Err(e) => return Err(vec![sql_error_diagnostic(model, &rendered, &e)]),
    };
    let mut refs = Vec::with_capacity(tables.len());
    let mut problems = Vec::new();
    for table in tables {
        match names.resolve(&table) {
            Some(node) => refs.push(ResolvedRef { node, table }),
            None => problems.push(unknown_reference(model, &rendered, &table, names)),
        }
    }
    if problems.is_empty() {
        Ok(ModelAnalysis {
            rendered,
            parsed,
            refs,
            usage,
        })
    } else {
        Err(problems)
    }
}

/// A query that is empty, not a query, or several statements.
fn sql_error_diagnostic(model: &ModelFile, rendered: &str, e: &sql::SqlError) -> Diagnostic {
    let (code, help) = match e.kind {
        SqlErrorKind::Empty => (Code::EmptyModel, "write one SELECT statement in the model"),
        SqlErrorKind::NotAQuery => (
            Code::NotAQuery,
            "a model is a single SELECT; hubforge creates and fills its table (use kind = \"table\", \"view\" or \"incremental\")",
        ),
        SqlErrorKind::MultipleStatements => (
            Code::MultipleStatements,
            "a model is exactly one SELECT; move the other statements into models of their own",
        ),
        SqlErrorKind::Syntax => (
            Code::SqlSyntax,
            "fix the SQL; each model is one SELECT in DuckDB's dialect",
        ),
    };
    let location = rendered_location(model, rendered, e.line, e.column, 1);
    Diagnostic::error(code, e.message.clone())
        .at(location)
        .with_help(help)
}

fn unknown_reference(
    model: &ModelFile,
    rendered: &str,
    table: &TableRef,
    names: &NameTable,
) -> Diagnostic {
    let shown = table.display();
    let help = match did_you_mean(&table.name(), names.names.iter().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`?"),
        None => "reference a model (file stem under models/), a seed (file stem under seeds/) or a source from hubforge.toml; read files with read_csv(...) / read_parquet(...)".to_string(),
    };
    Diagnostic::error(
        Code::UnknownReference,
        format!("unknown reference `{shown}`: no model, seed or source has this name"),
    )
    .at(ref_location(model, rendered, table))
    .with_help(help)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Where a reference found in the rendered SQL stands in the model file. The
/// rendered SQL and the file agree line by line unless templates expanded to
/// several lines; the reference text is looked up near its rendered line.
pub fn ref_location(model: &ModelFile, rendered: &str, table: &TableRef) -> Location {
    let text = rendered.get(table.start..table.end).unwrap_or_default();
    let width = text.chars().count().max(1);
    if !text.is_empty() {
        let candidates = word_occurrences(&model.text, text);
        let best = candidates.into_iter().min_by_key(|&off| {
            let (line, _) = crate::diagnostics::line_col(&model.text, off);
            (line.abs_diff(table.line), off)
        });
        if let Some(off) = best {
            return Location::at_offset(&model.path, &model.text, off, width);
        }
    }
    rendered_location(model, rendered, table.line, table.column, width)
}

/// A position in the rendered SQL shown on the same line of the file.
pub fn rendered_location(
    model: &ModelFile,
    rendered: &str,
    line: usize,
    column: usize,
    width: usize,
) -> Location {
    let file_lines = model.text.lines().count().max(1);
    if line == 0 {
        return Location::file(&model.path);
    }
    let same = rendered.lines().nth(line - 1) == model.text.lines().nth(line - 1);
    if same || line <= file_lines {
        Location::in_text(
            &model.path,
            &model.text,
            line.min(file_lines),
            column,
            width,
        )
    } else {
        Location::file(&model.path)
    }
}

/// Byte offsets of `word` in `text` standing as a whole identifier (case-insensitive).
fn word_occurrences(text: &str, word: &str) -> Vec<usize> {
    let lower_text = text.to_lowercase();
    let lower_word = word.to_lowercase();
    if lower_text.len() != text.len() {
        return Vec::new();
    }
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    lower_text
        .match_indices(&lower_word)
        .map(|(i, _)| i)
        .filter(|&i| {
            !text[..i].chars().next_back().is_some_and(is_ident)
                && !text[i + word.len()..].chars().next().is_some_and(is_ident)
        })
        .collect()
}

/// Every product a destination lists must be a model marked `product = true`,
/// and every destination a model names must exist.
fn check_destinations(project: &Project) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let config_loc = |needle: &str| match project.config_text.find(needle) {
        Some(off) => Location::at_offset(
            CONFIG_FILE,
            &project.config_text,
            off,
            needle.chars().count(),
        ),
        None => Location::file(CONFIG_FILE),
    };
    let model_names: Vec<&str> = project.models.iter().map(|m| m.name.as_str()).collect();
    for dest in &project.config.destinations {
        for product in &dest.products {
            match project
                .models
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(product))
            {
                None => {
                    let help = did_you_mean(product, model_names.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "list models marked `product = true`".to_string());
                    out.push(
                        Diagnostic::error(
                            Code::UnknownDestinationProduct,
                            format!(
                                "destination `{}` lists `{product}`, which is not a model",
                                dest.name
                            ),
                        )
                        .at(config_loc(&format!("\"{product}\"")))
                        .with_help(help),
                    );
                }
                Some(m) if !m.config.product => out.push(
                    Diagnostic::error(
                        Code::UnknownDestinationProduct,
                        format!(
                            "destination `{}` lists `{product}`, which is not marked as a product",
                            dest.name
                        ),
                    )
                    .at(config_loc(&format!("\"{product}\"")))
                    .with_help(format!(
                        "add `product = true` to the header of {}",
                        display_path(&m.path)
                    )),
                ),
                Some(_) => {}
            }
        }
    }
    let dest_names: Vec<&str> = project
        .config
        .destinations
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    for m in &project.models {
        for d in &m.config.destinations {
            if !dest_names.contains(&d.as_str()) {
                let help = did_you_mean(d, dest_names.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        "declare it as a [[destinations]] entry in hubforge.toml".to_string()
                    });
                out.push(
                    Diagnostic::error(
                        Code::UnknownDestinationProduct,
                        format!(
                            "model `{}` names destination `{d}`, which is not declared",
                            m.name
                        ),
                    )
                    .at(Location::file(&m.path))
                    .with_help(help),
                );
            }
        }
        if !m.config.destinations.is_empty() && !m.config.product {
            out.push(
                Diagnostic::error(
                    Code::UnknownDestinationProduct,
                    format!(
                        "model `{}` names destinations but is not marked as a product",
                        m.name
                    ),
                )
                .at(Location::file(&m.path))
                .with_help("add `product = true` to its header"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_overrides_parse_as_toml_or_text() {
        assert_eq!(parse_var_value("0.25"), serde_json::json!(0.25));
        assert_eq!(parse_var_value("true"), serde_json::json!(true));
        assert_eq!(
            parse_var_value("2024-07-01"),
            serde_json::json!("2024-07-01")
        );
        assert_eq!(
            parse_var_value("hello world"),
            serde_json::json!("hello world")
        );
    }

    #[test]
    fn deferred_candidates_bound_the_references_until_analysed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join(CONFIG_FILE),
            "[project]\nname = \"t\"\nstart = \"2024-01-01\"\n\n\
             [sources.raw]\ntable = \"ext.raw_orders\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("models")).unwrap();
        let models = [
            ("a", "SELECT 1 AS x FROM ext.raw_orders"),
            // `a` only as a CTE, a column and in a string; `b` in a comment.
            (
                "c",
                "WITH a AS (SELECT x AS a FROM \"EXT\" . raw_orders) SELECT a, 'a' FROM a -- b",
            ),
            ("b", "SELECT x FROM main.a"),
        ];
        for (name, sql) in models {
            std::fs::write(d.join("models").join(format!("{name}.sql")), sql).unwrap();
        }
        let mut ws = Workspace::load_deferred(d, &[]).unwrap();
        let node = |n: &str| ws.dag.lookup(n).unwrap();
        let (raw, a, b, c) = (node("raw"), node("a"), node("b"), node("c"));
        let m = |id: NodeId| ws.dag.nodes[id].model.unwrap();
        assert!(ws.dag.edges().is_empty(), "no model parsed yet");
        assert_eq!(ws.may_read(c), [raw, a]);
        assert_eq!(ws.may_read(b), [a]);
        let (mc, mb) = (m(c), m(b));
        assert!(ws.analyse([mc, mb], None).unwrap());
        assert_eq!(ws.may_read(c), [raw]);
        assert_eq!(ws.may_read(b), [a]);
        assert!(matches!(ws.models[mc].parsed, Parsed::Sql { .. }));
        assert!(!ws.analyse([mc], None).unwrap(), "already parsed");

        // Another version without model `aa` (it sorts before `b` and `c`,
        // whose node ids shift) takes over the deferred analyses by name.
        std::fs::write(d.join("models/aa.sql"), "SELECT 1 AS x").unwrap();
        let head = Workspace::load_deferred(d, &[]).unwrap();
        std::fs::remove_file(d.join("models/aa.sql")).unwrap();
        let base =
            Workspace::from_project(Project::load(d).unwrap(), &[], Some(&head), Depth::Deferred)
                .unwrap();
        let node = |n: &str| base.dag.lookup(n).unwrap();
        assert_eq!(base.may_read(node("c")), [node("raw"), node("a")]);
        assert_eq!(base.may_read(node("b")), [node("a")]);
        assert_ne!(head.dag.lookup("b"), base.dag.lookup("b"));
    }

    #[test]
    fn word_occurrences_are_whole_identifiers() {
        assert_eq!(
            word_occurrences("from orders o join orders_x", "orders"),
            vec![5]
        );
    }
}
