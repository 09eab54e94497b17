//! Column-level lineage: for each output column, the upstream columns it reads and a hash
//! of its definition; for the query's rows, the upstream columns and a hash of the logic
//! that decides which rows exist.
//!
//! Every column reference is replaced by the identity of what it resolves to (recursively
//! through CTEs, derived tables and subqueries, down to upstream `(table, column)` pairs)
//! before an expression is printed and hashed. So the hash of a column changes exactly
//! when its definition, or the definition of something it reads, changes; formatting never
//! counts because the text is sqlparser's re-print.
//!
//! Whatever cannot be analysed soundly makes the whole lineage unknown, with a reason.

mod expr;
mod names;
mod query;
mod scope;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use sqlparser::ast::{self, Cte};

use super::position::LineIndex;
use super::{Query, TableRef};

/// Tells lineage what the tables a query reads are.
pub trait SchemaProvider {
    /// For a table reference: the dependency's name to use in lineage (e.g. the model
    /// name), and its columns (lowercase, in order) when known. None = not a known
    /// dependency.
    fn resolve(&self, table: &TableRef) -> Option<(String, Option<Vec<String>>)>;
}

/// Column-level lineage of a query's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// Output columns, in order (empty only when unknown).
    pub columns: Vec<ColumnLineage>,
    /// Upstream columns read by row-affecting clauses anywhere in the query.
    pub row_inputs: BTreeSet<ColumnRef>,
    /// Which row-affecting clauses exist: "WHERE", "JOIN", "GROUP BY", "DISTINCT",
    /// "HAVING", "QUALIFY", "LIMIT", "OFFSET", "ORDER BY" (with LIMIT or DISTINCT ON),
    /// "UNION", "EXCEPT", "INTERSECT", "UNNEST", "AGGREGATE" (aggregates without GROUP BY).
    pub row_clauses: BTreeSet<String>,
    /// Hex blake3 of the row-affecting logic at every level.
    pub row_hash: String,
    /// Some(reason) when lineage cannot be determined; callers are then conservative.
    pub unknown: Option<String>,
}

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnLineage {
    /// Lowercase. An unaliased expression is named as DuckDB names it for common forms
    /// (`(amount * 2)`, `cast(id as integer)`, `count_star()`), else after sqlparser's
    /// rendering of it, which may differ from DuckDB's.
    pub name: String,
    pub inputs: BTreeSet<ColumnRef>,
    /// Hex blake3 of the column's definition (its name excluded).
    pub hash: String,
}

/// An upstream column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnRef {
    /// The dependency's name, as returned by [`SchemaProvider::resolve`].
    pub table: String,
    /// Lowercase.
    pub column: String,
}

pub(super) fn analyze(query: &Query, schemas: &dyn SchemaProvider) -> Lineage {
    let index = LineIndex::new(&query.sql);
    let mut analyzer = Analyzer {
        schemas,
        index: &index,
        memo: HashMap::new(),
    };
    let result = analyzer
        .query(&query.ast, &[], None)
        .and_then(|rel| match rel.cols {
            Some(cols) => Ok((cols, rel.rows)),
            None => Err(rel.why_unknown()),
        });
    match result {
        Ok((cols, rows)) => Lineage {
            columns: output_columns(cols),
            row_inputs: rows.inputs,
            row_clauses: rows.clauses,
            row_hash: rows.id,
            unknown: None,
        },
        Err(reason) => Lineage {
            columns: Vec::new(),
            row_inputs: BTreeSet::new(),
            row_clauses: BTreeSet::new(),
            row_hash: hash(&["unknown", &query.canonical()]),
            unknown: Some(reason),
        },
    }
}

/// Duplicate output names are suffixed `_1`, `_2`... as DuckDB does when it creates a
/// table from the query.
fn output_columns(cols: Vec<Col>) -> Vec<ColumnLineage> {
    let mut used = HashSet::new();
    cols.into_iter()
        .map(|c| {
            let mut name = c.name.clone();
            let mut n = 0;
            while !used.insert(name.clone()) {
                n += 1;
                name = format!("{}_{n}", c.name);
            }
            ColumnLineage {
                name,
                inputs: c.inputs,
                hash: c.id,
            }
        })
        .collect()
}

type Res<T> = Result<T, String>;

/// blake3 of length-prefixed parts, as hex.
fn hash(parts: &[&str]) -> String {
    crate::hash::hash_parts("", parts.iter().copied())
}

/// A column of a relation: its name, its identity (a hash), and the upstream columns it
/// reads.
#[derive(Debug, Clone)]
struct Col {
    name: String,
    id: String,
    inputs: BTreeSet<ColumnRef>,
}

fn upstream_col(table: &str, column: &str) -> Col {
    Col {
        name: column.to_string(),
        id: hash(&["upstream", table, column]),
        inputs: BTreeSet::from([ColumnRef {
            table: table.to_string(),
            column: column.to_string(),
        }]),
    }
}

/// What decides the rows of a relation.
#[derive(Debug, Clone, Default)]
struct Rows {
    id: String,
    inputs: BTreeSet<ColumnRef>,
    clauses: BTreeSet<String>,
}

/// A relation (table, CTE, derived table, table function...) as seen by lineage.
#[derive(Debug, Clone)]
struct Rel {
    /// For messages.
    display: String,
    /// None when the column list is not known.
    cols: Option<Vec<Col>>,
    /// When `cols` is None: how a column of it is named on demand (or why not).
    opaque: Opaque,
    rows: Rows,
}

#[derive(Debug, Clone)]
enum Opaque {
    /// Columns are all known.
    None,
    /// An upstream dependency whose columns are not known: any name is one of its columns.
    Upstream(String),
    /// A table function or file: any name is one of its columns, reading the arguments.
    Function {
        id: String,
        inputs: BTreeSet<ColumnRef>,
    },
    /// A relation whose columns cannot be known, and why.
    Unknown(String),
    /// `SELECT *, ...` over relations whose columns are not known: the list is unknown
    /// (for `reason`), but a name is one of the `known` items or passes through a `star`.
    Partial {
        reason: String,
        known: Vec<Col>,
        star: Vec<Rc<Rel>>,
    },
}

enum Lookup {
    Found(Col),
    /// The column list is unknown; this column exists if the query is valid.
    Maybe(Col),
    Missing,
}

/// A relation in a FROM clause, and the names it can be referred to by.
struct Source {
    binding: Option<String>,
    schema: Option<String>,
    rel: Rc<Rel>,
    /// The right side of a SEMI/ANTI join: its columns are not visible after the join.
    hidden: bool,
}

/// The names visible to an expression: FROM sources, merged USING columns, select-list
/// aliases, and the enclosing query's scope (correlated subqueries, implicit LATERAL).
struct Scope<'p> {
    sources: Vec<Source>,
    using: Vec<Col>,
    aliases: Vec<Col>,
    /// ORDER BY prefers select-list names over source columns; other clauses the reverse.
    alias_first: bool,
    parent: Option<&'p Scope<'p>>,
}

/// A CTE visible at some point, with the WITH it belongs to.
#[derive(Clone, Copy)]
struct CteDef<'q> {
    cte: &'q Cte,
    recursive: bool,
}

/// Collects the parts of the row-affecting logic of one query level.
#[derive(Default)]
struct RowsBuilder {
    parts: Vec<String>,
    inputs: BTreeSet<ColumnRef>,
    clauses: BTreeSet<String>,
}

impl RowsBuilder {
    fn part(&mut self, text: impl Into<String>) {
        self.parts.push(text.into());
    }
    fn clause(&mut self, clause: &str) {
        self.clauses.insert(clause.to_string());
    }
    fn expr(&mut self, label: &str, e: &Resolved) {
        self.parts.push(format!("{label} {}", e.text));
        self.inputs.extend(e.inputs.iter().cloned());
    }
    fn col(&mut self, label: &str, c: &Col) {
        self.parts.push(format!("{label} {}", c.id));
        self.inputs.extend(c.inputs.iter().cloned());
    }
    fn absorb(&mut self, label: &str, rows: &Rows) {
        self.parts.push(format!("{label} {}", rows.id));
        self.inputs.extend(rows.inputs.iter().cloned());
        self.clauses.extend(rows.clauses.iter().cloned());
    }
    fn finish(self, kind: &str) -> Rows {
        let mut parts = vec![kind];
        parts.extend(self.parts.iter().map(String::as_str));
        Rows {
            id: hash(&parts),
            inputs: self.inputs,
            clauses: self.clauses,
        }
    }
}

/// An expression with its column references replaced by their identities.
#[derive(Debug, Clone, Default)]
struct Resolved {
    text: String,
    inputs: BTreeSet<ColumnRef>,
    /// Calls a known aggregate function (outside a window).
    aggregate: bool,
    /// Calls `unnest`, which multiplies rows in a select list.
    unnest: bool,
    /// Uses a window defined in the WINDOW clause.
    named_window: bool,
}

/// An output column of a SELECT and what its expression does.
struct Item {
    col: Col,
    aggregate: bool,
    unnest: bool,
}

struct Analyzer<'s> {
    schemas: &'s dyn SchemaProvider,
    index: &'s LineIndex<'s>,
    /// CTEs already analysed, by the address of their query in the AST.
    memo: HashMap<*const ast::Query, Rc<Rel>>,
}

/// What a query's ORDER BY / LIMIT means for the SELECT it applies to.
struct Tail<'q> {
    order_by: Option<&'q ast::OrderBy>,
    limited: bool,
}

/// Known columns and relations a `*` passes through.
type PassThrough = (Vec<Col>, Vec<Rc<Rel>>);

/// A `*` over columns that are not known.
struct UnknownStar {
    reason: String,
    /// None when EXCLUDE / REPLACE / USING make names impossible to pass through.
    pass_through: Option<PassThrough>,
}
