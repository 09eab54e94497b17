//! Fingerprints and model versions.
//!
//! A model's *logic fingerprint* is blake3 over its canonical form — the parsed
//! and re-printed SQL, the header keys that change data, the macros and vars it
//! uses — combined with the sorted logic fingerprints of its parents. The
//! *metadata fingerprint* covers the header keys that never change data. A
//! [`ModelVersion`] records both with the model's column lineage, so that a later
//! version can be compared with the one an interval was built with.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::change::VersionLookup as _;
use crate::config::{KeyRole, SourceConfig};
use crate::graph::{NodeId, NodeKind};
use crate::name::ModelName;
use crate::sql::{self, SchemaProvider, TableRef};
use crate::state::State;
use crate::workspace::{Parsed, Workspace};

/// One version of a node's logic, as stored in state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: ModelName,
    /// `view`, `table`, `incremental`, `source` or `seed`.
    pub kind: String,
    /// Logic fingerprint including the parents' fingerprints.
    pub fingerprint: String,
    /// Logic fingerprint of this node alone.
    pub own: String,
    pub metadata: String,
    /// The data-changing header values (JSON), for explaining header changes.
    pub data_header: BTreeMap<String, serde_json::Value>,
    /// Parent name (lowercase) → the parent's logic fingerprint.
    pub parents: BTreeMap<String, String>,
    pub columns: Vec<ColumnVersion>,
    pub row_hash: String,
    pub row_inputs: BTreeSet<(String, String)>,
    pub row_clauses: BTreeSet<String>,
    /// Why column lineage is unknown, when it is.
    pub lineage_unknown: Option<String>,
    /// The SQL printed over several lines (empty for sources and seeds), for
    /// diffs. Stored apart from the rest of the version.
    #[serde(skip)]
    pub sql: String,
    pub forward_only: bool,
}

/// One output column: the hash of its definition and the upstream columns it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnVersion {
    pub name: String,
    pub hash: String,
    pub inputs: BTreeSet<(String, String)>,
}

impl ModelVersion {
    pub fn column(&self, name: &str) -> Option<&ColumnVersion> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

/// The logic fingerprint: a node's own fingerprint with its parents' (sorted by name).
fn combine(own: &str, parents: &BTreeMap<String, String>) -> String {
    let mut parts = vec![own];
    for (name, fp) in parents {
        parts.push(name);
        parts.push(fp);
    }
    hash_parts("hubforge-logic-v1", parts)
}

impl ModelVersion {
    /// This version as built on top of other parent versions (a parent whose
    /// data is still under an older fingerprint): same logic, other fingerprint.
    pub fn with_parents(&self, parents: BTreeMap<String, String>) -> ModelVersion {
        ModelVersion {
            fingerprint: combine(&self.own, &parents),
            parents,
            ..self.clone()
        }
    }
}

use crate::hash::hash_parts;

/// Schemas of sources and seeds (lowercase name → lowercase columns), read from
/// the warehouse or from state; models' schemas come from their own lineage.
pub type KnownSchemas = BTreeMap<String, Vec<String>>;

/// Compute the current version of every node of the workspace, in topological
/// order, indexed by node id.
/// A model whose logic is stored in `state` with the same upstream columns is
/// not analysed again: its stored lineage is reused.
pub fn versions(ws: &Workspace, schemas: &KnownSchemas, state: &State) -> Vec<ModelVersion> {
    versions_of(ws, schemas, state, &vec![true; ws.dag.len()])
        .into_iter()
        .map(|v| v.expect("every node visited"))
        .collect()
}

/// The versions of the nodes marked in `wanted` (indexed by node id), which
/// must hold every parent of a node it holds; the others are `None`. The same
/// versions [`versions`] computes, for a part of the graph.
pub fn versions_of(
    ws: &Workspace,
    schemas: &KnownSchemas,
    state: &State,
    wanted: &[bool],
) -> Vec<Option<ModelVersion>> {
    versions_sharing(ws, schemas, state, wanted, None).versions
}

/// What a model's lineage asked about the tables it reads, with the answers.
type Asked = Vec<(TableRef, Option<(String, Option<Vec<String>>)>)>;

/// Versions of part of a workspace (as [`versions_of`]), with what the
/// lineage of each model computed here asked about its inputs: another
/// version of the project can take the lineage of a model over when its SQL
/// is the same and every question has the same answer there.
pub struct Traced {
    pub versions: Vec<Option<ModelVersion>>,
    asked: Vec<Option<Asked>>,
}

/// [`versions_of`], taking over the lineage computed in `other` (another
/// version of the same project) for every model whose rendered SQL is the
/// same there and whose inputs have the same columns: lineage depends on
/// nothing else, and it is most of the cost. Models at the same depth of the
/// graph are computed side by side.
pub fn versions_sharing(
    ws: &Workspace,
    schemas: &KnownSchemas,
    state: &State,
    wanted: &[bool],
    other: Option<(&Workspace, &Traced)>,
) -> Traced {
    use rayon::prelude::*;
    // What does not depend on parents, for every model at once.
    let mut own: Vec<Option<OwnLogic>> = (0..ws.dag.len())
        .into_par_iter()
        .map(|id| {
            if wanted[id] {
                ws.dag.nodes[id].model.map(|m| own_logic(ws, m, state))
            } else {
                None
            }
        })
        .collect();
    // Depth: one more than the deepest parent. A node's parents are all at
    // smaller depths, so each depth needs only the ones before it.
    let mut depth = vec![0usize; ws.dag.len()];
    let mut by_depth: Vec<Vec<NodeId>> = Vec::new();
    for &id in ws.dag.order.iter().filter(|&&id| wanted[id]) {
        let d = ws
            .dag
            .parents(id)
            .into_iter()
            .map(|p| depth[p] + 1)
            .max()
            .unwrap_or(0);
        depth[id] = d;
        if by_depth.len() <= d {
            by_depth.resize_with(d + 1, Vec::new);
        }
        by_depth[d].push(id);
    }
    let mut out: Vec<Option<ModelVersion>> = vec![None; ws.dag.len()];
    let mut asked: Vec<Option<Asked>> = vec![None; ws.dag.len()];
    for ids in by_depth {
        let todo: Vec<(NodeId, Option<OwnLogic>)> =
            ids.into_iter().map(|id| (id, own[id].take())).collect();
        let done = &out;
        let computed: Vec<(NodeId, ModelVersion, Option<Asked>)> = todo
            .into_par_iter()
            .map(|(id, own)| {
                let (v, a) = node_version(ws, id, schemas, state, own, done, other);
                (id, v, a)
            })
            .collect();
        for (id, v, a) in computed {
            out[id] = Some(v);
            asked[id] = a;
        }
    }
    Traced {
        versions: out,
        asked,
    }
}

fn node_version(
    ws: &Workspace,
    id: NodeId,
    schemas: &KnownSchemas,
    state: &State,
    own: Option<OwnLogic>,
    done: &[Option<ModelVersion>],
    other: Option<(&Workspace, &Traced)>,
) -> (ModelVersion, Option<Asked>) {
    let node = &ws.dag.nodes[id];
    let key = node.name.key();
    let parents: BTreeMap<String, String> = ws
        .dag
        .parents(id)
        .into_iter()
        .map(|p| {
            let v = done[p]
                .as_ref()
                .expect("parents come first in topological order");
            (
                ws.dag.nodes[p].name.key().to_string(),
                v.fingerprint.clone(),
            )
        })
        .collect();
    let combine = |own: &str| combine(own, &parents);
    let plain = |own: String,
                 data_header: BTreeMap<String, serde_json::Value>,
                 columns: Vec<String>| ModelVersion {
        name: node.name.clone(),
        kind: node.kind.as_str().to_string(),
        fingerprint: combine(&own),
        own,
        metadata: String::new(),
        data_header,
        parents: parents.clone(),
        columns: columns
            .into_iter()
            .map(|c| ColumnVersion {
                hash: hash_parts("hubforge-column-v1", [key, c.as_str()]),
                inputs: BTreeSet::new(),
                name: c,
            })
            .collect(),
        row_hash: String::new(),
        row_inputs: BTreeSet::new(),
        row_clauses: BTreeSet::new(),
        lineage_unknown: None,
        sql: String::new(),
        forward_only: false,
    };
    match node.kind {
        NodeKind::Source => {
            let config = &ws.project.config.sources[node.name.as_str()];
            let v = plain(
                source_own(key, config),
                source_header(config),
                schemas.get(key).cloned().unwrap_or_default(),
            );
            (v, None)
        }
        NodeKind::Seed => {
            let v = plain(
                hash_parts("hubforge-seed-v1", [key]),
                BTreeMap::new(),
                schemas.get(key).cloned().unwrap_or_default(),
            );
            (v, None)
        }
        NodeKind::Model(_) => {
            let m = node.model.expect("model node");
            let own = own.expect("models have their own logic computed");
            model_version(
                ws,
                m,
                parents.clone(),
                &combine,
                schemas,
                state,
                own,
                done,
                other,
            )
        }
    }
}

/// A source's own logic: its definition.
fn source_own(key: &str, config: &SourceConfig) -> String {
    let json = serde_json::to_string(&source_header(config)).expect("json");
    hash_parts("hubforge-source-v1", [key, json.as_str()])
}

/// The fingerprint of a source as defined now (sources have no parents): what
/// state records once it has been read under this definition.
pub fn source_fingerprint(key: &str, config: &SourceConfig) -> String {
    combine(&source_own(key, config), &BTreeMap::new())
}

fn source_header(config: &SourceConfig) -> BTreeMap<String, serde_json::Value> {
    let mut h = BTreeMap::new();
    h.insert("path".to_string(), serde_json::json!(config.path));
    h.insert("table".to_string(), serde_json::json!(config.table));
    h.insert(
        "time_column".to_string(),
        serde_json::json!(config.time_column),
    );
    h.insert("format".to_string(), serde_json::json!(config.format));
    // The unit snapshots are taken by decides which late data is seen (the
    // default is left out, so that fingerprints recorded before stay valid).
    if config.unit != crate::interval::Unit::Day {
        h.insert("unit".to_string(), serde_json::json!(config.unit));
    }
    // Declared types and CSV options change the rows read (left out when unset).
    if let Some(read) = config.read_options() {
        h.insert("read".to_string(), read);
    }
    h
}

/// A model's logic apart from its parents, with the stored versions of the
/// same logic (decoded, for reuse).
struct OwnLogic {
    data_header: BTreeMap<String, serde_json::Value>,
    own: String,
    metadata: String,
    stored: Vec<ModelVersion>,
}

fn own_logic(ws: &Workspace, m: usize, state: &State) -> OwnLogic {
    let file = &ws.project.models[m];
    let analysis = &ws.models[m];
    let config = &file.config;
    let data_header: BTreeMap<String, serde_json::Value> = config
        .values_with_role(KeyRole::Data)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let header_json = serde_json::to_string(&data_header).expect("json");
    let mut parts = vec![analysis.canonical(), header_json];
    for name in &analysis.usage.macros {
        parts.push(format!("macro:{name}"));
        parts.push(
            ws.templates
                .macro_def(name)
                .map(|d| d.source.clone())
                .unwrap_or_default(),
        );
    }
    for name in &analysis.usage.vars {
        parts.push(format!("var:{name}"));
        parts.push(
            ws.templates
                .var_value(name)
                .map(|v| v.to_string())
                .unwrap_or_default(),
        );
    }
    let own = hash_parts("hubforge-own-v1", parts.iter().map(String::as_str));
    let metadata_json =
        serde_json::to_string(&config.values_with_role(KeyRole::Metadata)).expect("json");
    let metadata = hash_parts("hubforge-metadata-v1", [metadata_json.as_str()]);
    let key = file.name.to_lowercase();
    // Decoded apart from state's cache: a reused version becomes this run's version.
    let stored = state
        .by_own
        .get(&(key.clone(), own.clone()))
        .into_iter()
        .flatten()
        .filter_map(|fp| state.versions.get(&(key.clone(), fp.clone()))?.decode())
        .collect();
    OwnLogic {
        data_header,
        own,
        metadata,
        stored,
    }
}

#[allow(clippy::too_many_arguments)]
fn model_version(
    ws: &Workspace,
    m: usize,
    parents: BTreeMap<String, String>,
    combine: &dyn Fn(&str) -> String,
    schemas: &KnownSchemas,
    state: &State,
    own_logic: OwnLogic,
    done: &[Option<ModelVersion>],
    other: Option<(&Workspace, &Traced)>,
) -> (ModelVersion, Option<Asked>) {
    let file = &ws.project.models[m];
    let config = &file.config;
    let OwnLogic {
        data_header,
        own,
        metadata,
        stored,
    } = own_logic;
    if let Some(v) = reuse_stored(ws, state, stored, &parents, done) {
        let v = ModelVersion {
            name: file.name.as_str().into(),
            metadata,
            forward_only: config.forward_only,
            ..v
        };
        return (v, None);
    }

    let provider = Provider { ws, schemas, done };
    let (lineage, asked) = other
        .and_then(|other| shared_lineage(ws, m, other, &provider))
        .unwrap_or_else(|| model_lineage(ws, m, &provider));
    let LineageParts {
        columns,
        row_hash,
        row_inputs,
        row_clauses,
        lineage_unknown,
        sql,
    } = lineage;
    let v = ModelVersion {
        name: file.name.as_str().into(),
        kind: config.kind.as_str().to_string(),
        fingerprint: combine(&own),
        own,
        metadata,
        data_header,
        parents,
        columns,
        row_hash,
        row_inputs,
        row_clauses,
        lineage_unknown,
        sql,
        forward_only: config.forward_only,
    };
    (v, Some(asked))
}

/// The parts of a model's version that come from the lineage of its SQL.
struct LineageParts {
    columns: Vec<ColumnVersion>,
    row_hash: String,
    row_inputs: BTreeSet<(String, String)>,
    row_clauses: BTreeSet<String>,
    lineage_unknown: Option<String>,
    sql: String,
}

/// The lineage of model `m`, with what it asked `provider`.
fn model_lineage(ws: &Workspace, m: usize, provider: &Provider) -> (LineageParts, Asked) {
    let analysis = &ws.models[m];
    // Parsed again here: the workspace does not keep syntax trees.
    let query = match &analysis.parsed {
        Parsed::Sql { .. } => sql::parse_query(&analysis.rendered).ok(),
        Parsed::DuckDb { .. } | Parsed::Deferred { .. } => None,
    };
    let recording = Recording {
        inner: provider,
        asked: RefCell::new(Vec::new()),
    };
    let (columns, row_hash, row_inputs, row_clauses, lineage_unknown) =
        match (&query, &analysis.parsed) {
            (Some(query), _) => {
                let lineage = query.lineage(&recording);
                let pair = |c: &sql::ColumnRef| (c.table.clone(), c.column.clone());
                (
                    lineage
                        .columns
                        .iter()
                        .map(|c| ColumnVersion {
                            name: c.name.clone(),
                            hash: c.hash.clone(),
                            inputs: c.inputs.iter().map(pair).collect(),
                        })
                        .collect(),
                    lineage.row_hash.clone(),
                    lineage.row_inputs.iter().map(pair).collect(),
                    lineage.row_clauses.clone(),
                    lineage.unknown.clone(),
                )
            }
            (None, parsed) => (
                Vec::new(),
                String::new(),
                BTreeSet::new(),
                BTreeSet::new(),
                Some(match parsed {
                    Parsed::DuckDb { reason, .. } => reason.clone(),
                    Parsed::Sql { .. } => "the query no longer parses".to_string(),
                    Parsed::Deferred { .. } => unreachable!("deferred models have no lineage"),
                }),
            ),
        };
    let parts = LineageParts {
        columns,
        row_hash,
        row_inputs,
        row_clauses,
        lineage_unknown,
        sql: match &query {
            Some(query) => query.pretty(),
            None => analysis.rendered.clone(),
        },
    };
    (parts, recording.asked.into_inner())
}

/// The lineage of model `m` as computed in the other version of the project,
/// when it holds here: the same rendered SQL, parsed by hubforge's parser in
/// both, and every table its lineage asked about answering the same here.
fn shared_lineage(
    ws: &Workspace,
    m: usize,
    (other, traced): (&Workspace, &Traced),
    provider: &Provider,
) -> Option<(LineageParts, Asked)> {
    let analysis = &ws.models[m];
    let id = other.dag.lookup(&ws.project.models[m].name)?;
    let (_, theirs) = other.model(id)?;
    let both_sql = matches!(analysis.parsed, Parsed::Sql { .. })
        && matches!(theirs.parsed, Parsed::Sql { .. });
    if !both_sql || theirs.rendered != analysis.rendered {
        return None;
    }
    let asked = traced.asked[id].as_ref()?;
    let v = traced.versions[id].as_ref()?;
    if !asked
        .iter()
        .all(|(table, answer)| provider.resolve(table) == *answer)
    {
        return None;
    }
    let parts = LineageParts {
        columns: v.columns.clone(),
        row_hash: v.row_hash.clone(),
        row_inputs: v.row_inputs.clone(),
        row_clauses: v.row_clauses.clone(),
        lineage_unknown: v.lineage_unknown.clone(),
        sql: v.sql.clone(),
    };
    Some((parts, asked.clone()))
}

/// A schema provider that notes every question and its answer.
struct Recording<'a> {
    inner: &'a dyn SchemaProvider,
    asked: RefCell<Asked>,
}

impl SchemaProvider for Recording<'_> {
    fn resolve(&self, table: &TableRef) -> Option<(String, Option<Vec<String>>)> {
        let answer = self.inner.resolve(table);
        self.asked
            .borrow_mut()
            .push((table.clone(), answer.clone()));
        answer
    }
}

/// A stored version with the same own logic whose parents had the same columns
/// then as now, re-based on the current parents.
fn reuse_stored(
    ws: &Workspace,
    state: &State,
    stored: Vec<ModelVersion>,
    parents: &BTreeMap<String, String>,
    done: &[Option<ModelVersion>],
) -> Option<ModelVersion> {
    stored.into_iter().find_map(|old| {
        let same_parents = old.parents.len() == parents.len()
            && parents.iter().all(|(p, new_fp)| match old.parents.get(p) {
                Some(old_fp) if old_fp == new_fp => true,
                Some(old_fp) => {
                    let now = ws
                        .dag
                        .lookup(p)
                        .and_then(|id| done[id].as_ref())
                        .map(ModelVersion::column_names);
                    now.is_some() && state.version(p, old_fp).map(ModelVersion::column_names) == now
                }
                None => false,
            });
        same_parents.then(|| {
            if old.parents == *parents {
                old
            } else {
                old.with_parents(parents.clone())
            }
        })
    })
}

/// Resolves table references for lineage: models from their versions computed
/// earlier in topological order, sources and seeds from known schemas.
struct Provider<'a> {
    ws: &'a Workspace,
    schemas: &'a KnownSchemas,
    done: &'a [Option<ModelVersion>],
}

impl SchemaProvider for Provider<'_> {
    fn resolve(&self, table: &TableRef) -> Option<(String, Option<Vec<String>>)> {
        let id = self.ws.resolve(table)?;
        let key = self.ws.dag.nodes[id].name.key();
        let columns = match self.ws.dag.nodes[id].kind {
            NodeKind::Model(_) => self.done[id]
                .as_ref()
                .filter(|v| v.lineage_unknown.is_none() && !v.columns.is_empty())
                .map(ModelVersion::column_names),
            _ => self.schemas.get(key).cloned(),
        };
        Some((key.to_string(), columns))
    }
}
