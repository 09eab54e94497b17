//! Change categories: comparing the version of a model an interval was built
//! with against its current version, through column-level lineage.
//!
//! The question for every built interval is "does the change since it was built
//! reach this model's data, and which columns?". A model's own change gives its
//! changed columns (or all of them when rows change); a parent's affected columns
//! reach a child only through the child's lineage.

use std::collections::{BTreeSet, HashMap};

use crate::fingerprint::ModelVersion;

/// Which output columns of a model a change reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affected {
    None,
    Columns(BTreeSet<String>),
    /// Every column (rows change, or lineage is unknown), with why.
    All(String),
}

impl Affected {
    pub fn is_none(&self) -> bool {
        matches!(self, Affected::None) || matches!(self, Affected::Columns(c) if c.is_empty())
    }

    fn merge(self, other: Affected) -> Affected {
        match (self, other) {
            (Affected::All(r), _) | (_, Affected::All(r)) => Affected::All(r),
            (Affected::Columns(mut a), Affected::Columns(b)) => {
                a.extend(b);
                Affected::Columns(a)
            }
            (Affected::None, x) | (x, Affected::None) => x,
        }
    }
}

/// The one change vocabulary: how a model changed, or why it has work, in
/// increasing order of precedence when several apply. The first two never
/// rebuild anything; `missing`, `source_changed` and `restate` are changes of
/// data, the rest changes of logic (`new` both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Unchanged,
    MetadataOnly,
    Missing,
    SourceChanged,
    Restate,
    Indirect,
    NonBreaking,
    Breaking,
    New,
}

impl ChangeKind {
    const ALL: [ChangeKind; 9] = [
        ChangeKind::Unchanged,
        ChangeKind::MetadataOnly,
        ChangeKind::Missing,
        ChangeKind::SourceChanged,
        ChangeKind::Restate,
        ChangeKind::Indirect,
        ChangeKind::NonBreaking,
        ChangeKind::Breaking,
        ChangeKind::New,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Unchanged => "unchanged",
            ChangeKind::MetadataOnly => "metadata_only",
            ChangeKind::Missing => "missing",
            ChangeKind::SourceChanged => "source_changed",
            ChangeKind::Restate => "restate",
            ChangeKind::Indirect => "indirect",
            ChangeKind::NonBreaking => "non_breaking",
            ChangeKind::Breaking => "breaking",
            ChangeKind::New => "new",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Data changes flow down the DAG as ranges; logic changes go through lineage.
    pub fn propagates_as_data(self) -> bool {
        matches!(
            self,
            ChangeKind::New | ChangeKind::Missing | ChangeKind::SourceChanged | ChangeKind::Restate
        )
    }

    /// A change of the model's own logic.
    pub fn is_direct(self) -> bool {
        matches!(self, ChangeKind::Breaking | ChangeKind::NonBreaking)
    }
}

/// How a model changed between two of its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub category: ChangeKind,
    pub reason: String,
    /// Whether the model's own data must be rebuilt.
    pub rebuild: bool,
    /// What the change does to the model's columns, as seen by its children.
    pub affected: Affected,
    /// Columns that are new in this version.
    pub added: BTreeSet<String>,
}

impl Change {
    fn unchanged() -> Self {
        Change {
            category: ChangeKind::Unchanged,
            reason: String::new(),
            rebuild: false,
            affected: Affected::None,
            added: BTreeSet::new(),
        }
    }
}

/// Every version of every model that state knows, plus the current ones.
pub trait VersionLookup {
    /// The version of `model` (lowercase) with logic fingerprint `fingerprint`.
    fn version(&self, model: &str, fingerprint: &str) -> Option<&ModelVersion>;
}

/// Compares versions with memoisation; one per plan.
pub struct Comparer<'a> {
    versions: &'a dyn VersionLookup,
    memo: HashMap<(String, String, String), Change>,
}

impl<'a> Comparer<'a> {
    pub fn new(versions: &'a dyn VersionLookup) -> Self {
        Comparer {
            versions,
            memo: HashMap::new(),
        }
    }

    /// How `new` differs from the version of the same model with fingerprint `old_fp`.
    pub fn compare(&mut self, old_fp: &str, new: &ModelVersion) -> Change {
        if old_fp == new.fingerprint {
            return Change::unchanged();
        }
        let key = (
            new.name.key().to_string(),
            old_fp.to_string(),
            new.fingerprint.clone(),
        );
        if let Some(c) = self.memo.get(&key) {
            return c.clone();
        }
        let change = match self.versions.version(&key.0, old_fp).cloned() {
            None => Change {
                category: ChangeKind::Breaking,
                reason: "no record of the version it was built with".to_string(),
                rebuild: true,
                affected: Affected::All("no record of the version it was built with".to_string()),
                added: BTreeSet::new(),
            },
            Some(old) => self.compare_versions(&old, new),
        };
        self.memo.insert(key, change.clone());
        change
    }

    /// Whether data of `parent` built under `old_fp` differs from its current
    /// version in a way `child` reads.
    pub fn reaches(&mut self, old_fp: &str, parent: &ModelVersion, child: &ModelVersion) -> bool {
        let change = self.compare(old_fp, parent);
        !reach_child(child, parent.name.key(), &change.affected).is_none()
    }

    fn compare_versions(&mut self, old: &ModelVersion, new: &ModelVersion) -> Change {
        let own = own_change(old, new).or_else(|| shape_change(old, new));
        let mut inherited = Affected::None;
        let mut reasons = Vec::new();
        for (parent, new_fp) in &new.parents {
            let Some(old_fp) = old.parents.get(parent) else {
                continue;
            };
            if old_fp == new_fp {
                continue;
            }
            let Some(parent_new) = self.versions.version(parent, new_fp).cloned() else {
                continue;
            };
            let parent_change = self.compare(old_fp, &parent_new);
            let reach = reach_child(new, parent, &parent_change.affected);
            if !reach.is_none() {
                reasons.push(match &reach {
                    Affected::All(r) => r.clone(),
                    Affected::Columns(cols) => {
                        let read: BTreeSet<String> = match &parent_change.affected {
                            Affected::Columns(pc) => new
                                .columns
                                .iter()
                                .filter(|c| cols.contains(&c.name))
                                .flat_map(|c| c.inputs.iter())
                                .filter(|(t, col)| t == parent && pc.contains(col))
                                .map(|(t, col)| format!("{t}.{col}"))
                                .collect(),
                            _ => BTreeSet::new(),
                        };
                        format!("reads {}", read.into_iter().collect::<Vec<_>>().join(", "))
                    }
                    Affected::None => unreachable!(),
                });
            }
            inherited = inherited.merge(reach);
        }
        match own {
            Some(own) => {
                let affected = own.affected.clone().merge(inherited);
                Change { affected, ..own }
            }
            None if !inherited.is_none() => Change {
                category: ChangeKind::Indirect,
                reason: reasons.join("; "),
                rebuild: true,
                affected: inherited,
                added: BTreeSet::new(),
            },
            None if old.metadata != new.metadata => Change {
                category: ChangeKind::MetadataOnly,
                reason: "only metadata changed (description, audits, destinations, ...)"
                    .to_string(),
                ..Change::unchanged()
            },
            None => Change::unchanged(),
        }
    }
}

/// The model's own change, when its own logic differs.
fn own_change(old: &ModelVersion, new: &ModelVersion) -> Option<Change> {
    if old.own == new.own {
        return None;
    }
    let breaking_all = |reason: String| Change {
        category: ChangeKind::Breaking,
        reason: reason.clone(),
        rebuild: true,
        affected: Affected::All(reason),
        added: BTreeSet::new(),
    };
    let added = columns_only_in(new, old);
    let header: Vec<&String> = new
        .data_header
        .keys()
        .chain(old.data_header.keys())
        .filter(|k| old.data_header.get(*k) != new.data_header.get(*k))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !header.is_empty() {
        let keys: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
        // Rows of one grain or unit cannot stay under a model of another:
        // forward_only does not apply to these keys.
        let forward = if new.forward_only {
            " (forward_only does not apply to it)"
        } else {
            ""
        };
        return Some(breaking_all(format!(
            "all columns: header {} changed{forward}",
            keys.join(", ")
        )));
    }
    // The same query, output and header (a comment in a macro, say): the
    // data cannot differ, whatever produced the fingerprint.
    if !new.sql.is_empty()
        && old.sql == new.sql
        && old.columns == new.columns
        && old.row_hash == new.row_hash
        && old.lineage_unknown.is_none()
        && new.lineage_unknown.is_none()
    {
        return None;
    }
    if new.forward_only {
        return Some(Change {
            category: ChangeKind::Breaking,
            reason: "forward-only: new logic applies to intervals not yet built".to_string(),
            rebuild: false,
            affected: Affected::None,
            added,
        });
    }
    if let Some(why) = new
        .lineage_unknown
        .as_ref()
        .or(old.lineage_unknown.as_ref())
    {
        return Some(breaking_all(format!(
            "all columns: column lineage unknown ({why})"
        )));
    }
    if old.row_hash != new.row_hash {
        let clauses: BTreeSet<&String> = old
            .row_clauses
            .iter()
            .chain(new.row_clauses.iter())
            .collect();
        let named = if clauses.is_empty() {
            "FROM".to_string()
        } else {
            clauses.into_iter().cloned().collect::<Vec<_>>().join("/")
        };
        return Some(breaking_all(format!("all columns: {named} changed")));
    }
    let changed: BTreeSet<String> = old
        .columns
        .iter()
        .filter(|c| new.column(&c.name).is_none_or(|n| n.hash != c.hash))
        .map(|c| c.name.clone())
        .collect();
    if changed.is_empty() {
        let reason = if added.is_empty() {
            "columns reordered".to_string()
        } else {
            format!("adds {}", list(&added))
        };
        return Some(Change {
            category: ChangeKind::NonBreaking,
            reason,
            rebuild: true,
            affected: Affected::Columns(BTreeSet::new()),
            added,
        });
    }
    let removed: BTreeSet<String> = changed
        .iter()
        .filter(|c| new.column(c).is_none())
        .cloned()
        .collect();
    let modified: BTreeSet<String> = changed.difference(&removed).cloned().collect();
    let mut parts = Vec::new();
    if !modified.is_empty() {
        parts.push(format!("changes {}", list(&modified)));
    }
    if !removed.is_empty() {
        parts.push(format!("removes {}", list(&removed)));
    }
    if !added.is_empty() {
        parts.push(format!("adds {}", list(&added)));
    }
    Some(Change {
        category: ChangeKind::Breaking,
        reason: parts.join("; "),
        rebuild: true,
        affected: Affected::Columns(changed),
        added,
    })
}

/// The same logic with other output columns: a `SELECT *` over a parent whose
/// columns changed. New columns are a non-breaking change of this model (its
/// data gets them); columns gone are breaking for their readers.
fn shape_change(old: &ModelVersion, new: &ModelVersion) -> Option<Change> {
    if old.columns.is_empty() || new.lineage_unknown.is_some() || old.lineage_unknown.is_some() {
        return None;
    }
    let added = columns_only_in(new, old);
    let removed = columns_only_in(old, new);
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("adds {}", list(&added)));
    }
    if !removed.is_empty() {
        parts.push(format!("removes {}", list(&removed)));
    }
    Some(Change {
        category: if removed.is_empty() {
            ChangeKind::NonBreaking
        } else {
            ChangeKind::Breaking
        },
        reason: format!("{} (read through *)", parts.join("; ")),
        rebuild: true,
        affected: Affected::Columns(removed),
        added,
    })
}

/// The output columns of `a` that `b` does not have.
fn columns_only_in(a: &ModelVersion, b: &ModelVersion) -> BTreeSet<String> {
    a.columns
        .iter()
        .filter(|c| b.column(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect()
}

fn list(cols: &BTreeSet<String>) -> String {
    cols.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// What a parent's affected columns do to `child`.
fn reach_child(child: &ModelVersion, parent: &str, affected: &Affected) -> Affected {
    match affected {
        Affected::None => Affected::None,
        Affected::Columns(cols) if cols.is_empty() => Affected::None,
        Affected::All(_) => {
            Affected::All(format!("all columns: reads {parent}, whose rows change"))
        }
        Affected::Columns(cols) => {
            if let Some(why) = &child.lineage_unknown {
                return Affected::All(format!(
                    "all columns: reads {parent} and its column lineage is unknown ({why})"
                ));
            }
            let hits = |inputs: &BTreeSet<(String, String)>| {
                inputs.iter().any(|(t, c)| t == parent && cols.contains(c))
            };
            if hits(&child.row_inputs) {
                let read: Vec<String> = child
                    .row_inputs
                    .iter()
                    .filter(|(t, c)| t == parent && cols.contains(c))
                    .map(|(t, c)| format!("{t}.{c}"))
                    .collect();
                return Affected::All(format!(
                    "all columns: filters, joins or groups on {}",
                    read.join(", ")
                ));
            }
            Affected::Columns(
                child
                    .columns
                    .iter()
                    .filter(|c| hits(&c.inputs))
                    .map(|c| c.name.clone())
                    .collect(),
            )
        }
    }
}
