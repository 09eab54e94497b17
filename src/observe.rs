//! Observing the world before planning: state from the warehouse, snapshots of
//! every source and seed as they are now, and their schemas. The only reads a
//! plan needs beyond the project's files.

use std::collections::BTreeMap;

use crate::config::SourceConfig;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::engine::Session;
use crate::error::{Error, Result};
use crate::fingerprint::KnownSchemas;
use crate::graph::NodeKind;
use crate::sources::{self, Ingest};
use crate::state::{self, SourceSnapshot, State};
use crate::workspace::Workspace;

/// What planning reads besides the project.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub state: State,
    /// Source or seed (lowercase) → snapshot now.
    pub sources: BTreeMap<String, SourceSnapshot>,
    /// Source or seed (lowercase) → columns now.
    pub schemas: KnownSchemas,
    /// Source (lowercase) → the types of its columns now, in `schemas`' order.
    pub types: BTreeMap<String, Vec<String>>,
    /// Source (lowercase) → the relation its rows are read from, when ingested.
    pub relations: BTreeMap<String, String>,
    /// Source (lowercase) → rows kept out of the build as unreadable.
    pub rejected: BTreeMap<String, i64>,
    /// Source (lowercase) → the relation holding its rows kept out, when
    /// not DuckDB's `_hubforge_rejects.<source>` (on Spark).
    pub rejects_at: BTreeMap<String, String>,
    /// Source (lowercase) → the units of its time column with rows kept out
    /// (their data is incomplete), and how many kept rows have no readable time.
    pub rejected_units: BTreeMap<String, (Vec<crate::interval::Interval>, i64)>,
    /// Source (lowercase) → its columns lost since the last build, which
    /// changes data already built: an error unless the user accepts it.
    pub drift: BTreeMap<String, Diagnostic>,
}

/// Fail on schema drift the user has not accepted with `--accept-schema SOURCE`
/// (once accepted, the build records the new schema in state).
pub fn check_drift(observed: &Observed, accepted: &[String]) -> Result<()> {
    let refused: Vec<Diagnostic> = observed
        .drift
        .iter()
        .filter(|(key, _)| !accepted.iter().any(|a| a.to_lowercase() == **key))
        .map(|(_, d)| d.clone())
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Error::BadData(Diagnostics(refused)))
    }
}

/// An engine that reads the sources itself (Spark): it snapshots every source
/// as it reads it, and describes the tables it holds and the files only its
/// cluster reads (a URL path, [`crate::config::is_cluster_path`]). Files of
/// this machine are still sniffed and checked for bad rows here, so that a
/// model sees the same columns and types on every engine.
pub trait SourceEngine {
    /// The columns of a `table` source, or of a source at a cluster path, and
    /// their types, as DuckDB names them.
    fn describe(&self, name: &str, config: &SourceConfig) -> Result<Vec<(String, String)>>;
    /// The files at a source's cluster path, as the cluster lists them.
    fn files(&self, name: &str, config: &SourceConfig) -> Result<Vec<state::FileSignature>>;
    /// The snapshot of a source as this engine reads it, for the columns and
    /// types it is read with. `local_rows`: the rows this machine read from
    /// the same files (of this machine), which the engine must read too.
    fn snapshot(
        &self,
        name: &str,
        config: &SourceConfig,
        typed: &[(String, String)],
        files: Vec<state::FileSignature>,
        local_rows: Option<i64>,
    ) -> Result<SourceSnapshot>;
    /// Keep the rows of a source this machine kept out of the build
    /// ([`sources::quarantined_rows`]) where the warehouse is; the relation
    /// holding them, or `None` when nothing is written (a plan).
    fn quarantine(&self, name: &str, rows: &crate::engine::Rows) -> Result<Option<String>>;
}

/// Read state once and snapshot every source and seed. Files that did not
/// change since the snapshot in state are not read again. With
/// [`Ingest::Warehouse`] every file source is also copied into the warehouse
/// (once per version of its files) for the build to read.
pub fn observe(s: &dyn Session, ws: &Workspace, mode: Ingest) -> Result<Observed> {
    observe_with(s, ws, mode, None)
}

/// [`observe`], with the sources snapshotted by `remote` when the warehouse's
/// engine reads them itself.
pub fn observe_with(
    s: &dyn Session,
    ws: &Workspace,
    mode: Ingest,
    remote: Option<&dyn SourceEngine>,
) -> Result<Observed> {
    let t = std::time::Instant::now();
    let state = state::read(s)?;
    crate::progress::timing("read state", t.elapsed());
    let mut out = Observed {
        state,
        ..Observed::default()
    };
    for node in &ws.dag.nodes {
        let key = node.name.key();
        let previous = out.state.sources.get(key);
        let (files, config) = match node.kind {
            NodeKind::Source => {
                let config = &ws.project.config.sources[node.name.as_str()];
                let files = match (config.cluster_path(), remote) {
                    (Some(_), Some(r)) => r.files(&node.name, config)?,
                    (Some(path), None) => {
                        return Err(Error::Engine(format!(
                            "source `{}`: `{path}` is read by a Spark cluster only; \
                             this command runs on DuckDB",
                            node.name
                        )));
                    }
                    (None, _) => sources::source_files(&ws.project, config),
                };
                (files, Some(config))
            }
            NodeKind::Seed => {
                let seed = ws.project.seed(&node.name).expect("seed node");
                let snap = sources::seed_snapshot(&ws.project, seed)?;
                let columns = match (previous, out.state.schemas.get(key)) {
                    (Some(p), Some(cols)) if p.whole == snap.whole => cols.clone(),
                    _ => sources::describe(s, &sources::seed_relation(&ws.project.root, seed))?,
                };
                out.schemas.insert(key.to_string(), columns);
                out.sources.insert(key.to_string(), snap);
                continue;
            }
            NodeKind::Model(_) => continue,
        };
        let config = config.expect("source config");
        // A snapshot is reused only for the same files read the same way: a
        // new time column or unit splits the data differently.
        let same_definition =
            out.state.models.get(key).is_some_and(|m| {
                m.fingerprint == crate::fingerprint::source_fingerprint(key, config)
            });
        let known = previous
            .filter(|p| same_definition && !files.is_empty() && p.files == files)
            .zip(out.state.schemas.get(key));
        // A table the remote engine holds, or files only its cluster sees,
        // are read there only.
        let remote_only =
            remote.filter(|_| config.table.is_some() || config.cluster_path().is_some());
        let relation = match (mode, known, remote_only) {
            (_, _, Some(_)) | (Ingest::Temp, Some(_), None) => None,
            _ => {
                let ingested = sources::ingest(s, &ws.project, &node.name, config, &files, mode)?;
                for w in &ingested.warnings {
                    if !crate::progress::is_quiet() {
                        eprint!("{}", w.render());
                    }
                }
                if ingested.rejected > 0 {
                    out.rejected.insert(key.to_string(), ingested.rejected);
                    let units = match (remote, mode) {
                        (None, Ingest::Warehouse) => {
                            Some(sources::rejected_units(s, key, config.unit)?)
                        }
                        (None, Ingest::Temp) => None,
                        (Some(_), _) => Some(sources::quarantined_units(s, config.unit)?),
                    };
                    if let Some(units) = units {
                        out.rejected_units.insert(key.to_string(), units);
                    }
                }
                // The rows kept out this time (none when all read), kept
                // where the remote warehouse is.
                if let Some(r) = remote
                    && config.on_bad_rows == crate::config::OnBadRows::Quarantine
                {
                    let rows = match ingested.rejected {
                        0 => crate::engine::Rows::default(),
                        _ => sources::quarantined_rows(s)?,
                    };
                    if let Some(at) = r.quarantine(&node.name, &rows)? {
                        out.rejects_at.insert(key.to_string(), at);
                    }
                }
                Some(ingested.relation)
            }
        };
        let recorded_types = out.state.schema_types.get(key);
        let (snapshot, columns, types) = match (known, &relation) {
            (Some((prev, cols)), _) => (
                prev.clone(),
                cols.clone(),
                recorded_types.cloned().unwrap_or_default(),
            ),
            (None, _) => {
                let typed = match (remote_only, &relation) {
                    (Some(r), _) => r.describe(&node.name, config)?,
                    (None, Some(rel)) => sources::describe_typed(s, rel)?,
                    (None, None) => unreachable!("sources not known from state are read"),
                };
                let snapshot = match (remote, &relation) {
                    (Some(r), Some(rel)) => {
                        let read = s.query(&format!("SELECT count(*) FROM {rel}"))?;
                        let local_rows = read.rows.first().and_then(|r| r[0].as_i64());
                        r.snapshot(&node.name, config, &typed, files, local_rows)?
                    }
                    (Some(r), None) => r.snapshot(&node.name, config, &typed, files, None)?,
                    (None, Some(rel)) => sources::snapshot(
                        s,
                        crate::engine::Dialect::DuckDb,
                        &node.name,
                        config,
                        rel,
                        files,
                    )?,
                    (None, None) => unreachable!("sources not known from state are read"),
                };
                (
                    snapshot,
                    typed.iter().map(|(c, _)| c.clone()).collect(),
                    typed.into_iter().map(|(_, t)| t).collect(),
                )
            }
        };
        if known.is_none()
            && config.columns.is_none()
            && let Some(recorded) = out.state.schemas.get(key)
        {
            let recorded = sources::Recorded {
                columns: recorded,
                types: recorded_types.map_or(&[][..], Vec::as_slice),
                files: previous.map_or(&[][..], |p| p.files.as_slice()),
            };
            let now: Vec<(String, String)> =
                columns.iter().cloned().zip(types.iter().cloned()).collect();
            let (warning, error) =
                sources::drift(s, &ws.project, &node.name, config, &recorded, &now)?;
            if let Some(w) = warning
                && !crate::progress::is_quiet()
            {
                eprint!("{}", w.render());
            }
            if let Some(e) = error {
                out.drift.insert(key.to_string(), e);
            }
        }
        if let Some(rel) = relation {
            out.relations.insert(key.to_string(), rel);
        }
        out.schemas.insert(key.to_string(), columns);
        out.types.insert(key.to_string(), types);
        out.sources.insert(key.to_string(), snapshot);
    }
    Ok(out)
}
