//! The DAG of sources, seeds and models: deterministic topological order, cycle
//! reporting, and rendering as Mermaid, Graphviz dot or JSON.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

use crate::config::Kind;
use crate::diagnostics::{Code, Diagnostic, Location, display_path};
use crate::name::ModelName;

/// What a node of the graph is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    Source,
    Seed,
    Model(Kind),
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Source => "source",
            NodeKind::Seed => "seed",
            NodeKind::Model(k) => k.as_str(),
        }
    }

    pub fn is_model(self) -> bool {
        matches!(self, NodeKind::Model(_))
    }
}

/// A node: its name as written, kind, defining file, and for models the index
/// into the project's model list.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: ModelName,
    pub kind: NodeKind,
    pub file: PathBuf,
    pub model: Option<usize>,
}

/// Index of a node in [`Dag::nodes`].
pub type NodeId = usize;

/// The project's dependency graph. Edges point from a dependency to its dependents.
#[derive(Debug, Clone)]
pub struct Dag {
    pub nodes: Vec<Node>,
    graph: DiGraph<NodeId, ()>,
    by_key: HashMap<String, NodeId>,
    /// Every node, dependencies before dependents; ties broken by name.
    pub order: Vec<NodeId>,
}

impl Dag {
    /// Build the graph from nodes and `(dependency, dependent)` edges. A cycle is
    /// an error listing every step; `locate(dependent, dependency)` tells where
    /// the dependent reads the dependency.
    pub fn new(
        nodes: Vec<Node>,
        edges: &BTreeSet<(NodeId, NodeId)>,
        locate: &dyn Fn(NodeId, NodeId) -> Option<Location>,
    ) -> Result<Dag, Diagnostic> {
        let mut graph = DiGraph::with_capacity(nodes.len(), edges.len());
        for i in 0..nodes.len() {
            graph.add_node(i);
        }
        for &(from, to) in edges {
            graph.add_edge(NodeIndex::new(from), NodeIndex::new(to), ());
        }
        let by_key = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.key().to_string(), i))
            .collect();
        let mut dag = Dag {
            nodes,
            graph,
            by_key,
            order: Vec::new(),
        };
        dag.order = dag.topological_order(locate)?;
        Ok(dag)
    }

    /// Kahn's algorithm, always taking the ready node with the smallest name.
    fn topological_order(
        &self,
        locate: &dyn Fn(NodeId, NodeId) -> Option<Location>,
    ) -> Result<Vec<NodeId>, Diagnostic> {
        let n = self.nodes.len();
        let mut indegree: Vec<usize> = (0..n)
            .map(|i| {
                self.graph
                    .neighbors_directed(NodeIndex::new(i), Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<(&str, NodeId)>> = (0..n)
            .filter(|&i| indegree[i] == 0)
            .map(|i| Reverse((self.nodes[i].name.as_str(), i)))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse((_, i))) = ready.pop() {
            order.push(i);
            for child in self
                .graph
                .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
            {
                let c = child.index();
                indegree[c] -= 1;
                if indegree[c] == 0 {
                    ready.push(Reverse((self.nodes[c].name.as_str(), c)));
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            Err(self.cycle_diagnostic(locate))
        }
    }

    /// Describe one cycle: the strongly connected component containing the
    /// smallest name, walked from that name back to itself, as "x reads y".
    fn cycle_diagnostic(&self, locate: &dyn Fn(NodeId, NodeId) -> Option<Location>) -> Diagnostic {
        let sccs = petgraph::algo::tarjan_scc(&self.graph);
        let cyclic = sccs
            .into_iter()
            .filter(|c| c.len() > 1 || self.graph.contains_edge(c[0], c[0]))
            .min_by_key(|c| c.iter().map(|i| self.nodes[i.index()].name.clone()).min())
            .expect("a graph without a topological order has a cycle");
        let members: BTreeSet<NodeId> = cyclic.iter().map(|i| i.index()).collect();
        let start = *members
            .iter()
            .min_by_key(|&&i| &self.nodes[i].name)
            .expect("non-empty component");
        // Edges point from a dependency to its reader: walking them backwards
        // from `start` reads "start reads x, which reads y, ...".
        let path = self.path_within(start, &members);
        let mut reads: Vec<NodeId> = vec![start];
        reads.extend(path.iter().skip(1).rev());
        let name = |i: NodeId| format!("`{}`", self.nodes[i].name);
        let mut message = format!(
            "dependency cycle: {} reads {}",
            name(start),
            name(reads[1 % reads.len()])
        );
        for &i in reads.iter().skip(2) {
            message.push_str(&format!(", which reads {}", name(i)));
        }
        if reads.len() > 1 {
            message.push_str(&format!(", which reads {}", name(start)));
        }
        let mut d = Diagnostic::error(Code::Cycle, message).with_help(
            "a model cannot depend on itself, directly or through others; remove one of these references",
        );
        for (k, &reader) in reads.iter().enumerate() {
            let read = reads[(k + 1) % reads.len()];
            let at = locate(reader, read);
            let place = match &at {
                Some(l) if l.line > 0 => {
                    format!("{}:{}:{}", display_path(&l.file), l.line, l.column)
                }
                _ => display_path(&self.nodes[reader].file),
            };
            d = d.with_note(format!("{} reads {} at {place}", name(reader), name(read)));
            if k == 0 {
                d = d.at(at.unwrap_or_else(|| Location::file(&self.nodes[reader].file)));
            }
        }
        d
    }

    /// The shortest path from `start` back to `start` inside `members` (by BFS, ties by name).
    fn path_within(&self, start: NodeId, members: &BTreeSet<NodeId>) -> Vec<NodeId> {
        let mut prev: HashMap<NodeId, NodeId> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(i) = queue.pop_front() {
            let mut next: Vec<NodeId> = self
                .graph
                .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
                .map(|c| c.index())
                .filter(|c| members.contains(c))
                .collect();
            next.sort_by(|a, b| self.nodes[*a].name.cmp(&self.nodes[*b].name));
            for c in next {
                if c == start {
                    let mut path = vec![i];
                    let mut cur = i;
                    while cur != start {
                        cur = prev[&cur];
                        path.push(cur);
                    }
                    path.reverse();
                    return path;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(c) {
                    e.insert(i);
                    queue.push_back(c);
                }
            }
        }
        vec![start]
    }

    pub fn lookup(&self, name: &str) -> Option<NodeId> {
        self.by_key.get(&name.to_lowercase()).copied()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Direct dependencies, sorted by name.
    pub fn parents(&self, id: NodeId) -> Vec<NodeId> {
        self.neighbors(id, Direction::Incoming)
    }

    /// Direct dependents, sorted by name.
    pub fn children(&self, id: NodeId) -> Vec<NodeId> {
        self.neighbors(id, Direction::Outgoing)
    }

    fn neighbors(&self, id: NodeId, dir: Direction) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .graph
            .neighbors_directed(NodeIndex::new(id), dir)
            .map(|n| n.index())
            .collect();
        v.sort_by(|a, b| self.nodes[*a].name.cmp(&self.nodes[*b].name));
        v.dedup();
        v
    }

    /// Nodes reachable from `start` within `depth` steps (None = unlimited),
    /// upstream or downstream, excluding `start` itself.
    pub fn reachable(
        &self,
        start: NodeId,
        upstream: bool,
        depth: Option<usize>,
    ) -> BTreeSet<NodeId> {
        let dir = if upstream {
            Direction::Incoming
        } else {
            Direction::Outgoing
        };
        let mut seen = BTreeSet::new();
        let mut frontier = vec![start];
        let mut level = 0;
        while !frontier.is_empty() && depth.is_none_or(|d| level < d) {
            let mut next = Vec::new();
            for i in frontier {
                for n in self.graph.neighbors_directed(NodeIndex::new(i), dir) {
                    if seen.insert(n.index()) {
                        next.push(n.index());
                    }
                }
            }
            frontier = next;
            level += 1;
        }
        seen.remove(&start);
        seen
    }

    /// Edges as `(dependency, dependent)` pairs, sorted by names.
    pub fn edges(&self) -> Vec<(NodeId, NodeId)> {
        let mut e: Vec<(NodeId, NodeId)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (a.index(), b.index()))
            .collect();
        e.sort_by(|a, b| {
            (&self.nodes[a.0].name, &self.nodes[a.1].name)
                .cmp(&(&self.nodes[b.0].name, &self.nodes[b.1].name))
        });
        e.dedup();
        e
    }

    /// The subgraph of `nodes` (all when None) as a Mermaid flowchart.
    pub fn to_mermaid(&self, nodes: Option<&BTreeSet<NodeId>>) -> String {
        let keep = |i: NodeId| nodes.is_none_or(|s| s.contains(&i));
        let mut out = String::from("flowchart LR\n");
        for &i in &self.order {
            if keep(i) {
                let n = &self.nodes[i];
                let (open, close) = match n.kind {
                    NodeKind::Source => ("[(", ")]"),
                    NodeKind::Seed => ("[/", "/]"),
                    NodeKind::Model(Kind::View) => ("([", "])"),
                    NodeKind::Model(_) => ("[", "]"),
                };
                let _ = writeln!(out, "  {}{open}\"{}\"{close}", mermaid_id(&n.name), n.name);
            }
        }
        for (a, b) in self.edges() {
            if keep(a) && keep(b) {
                let _ = writeln!(
                    out,
                    "  {} --> {}",
                    mermaid_id(&self.nodes[a].name),
                    mermaid_id(&self.nodes[b].name)
                );
            }
        }
        out
    }

    /// The graph in Graphviz dot.
    pub fn to_dot(&self, nodes: Option<&BTreeSet<NodeId>>) -> String {
        let keep = |i: NodeId| nodes.is_none_or(|s| s.contains(&i));
        let mut out = String::from("digraph hubforge {\n  rankdir=LR;\n");
        for &i in &self.order {
            if keep(i) {
                let n = &self.nodes[i];
                let shape = match n.kind {
                    NodeKind::Source => "cylinder",
                    NodeKind::Seed => "note",
                    NodeKind::Model(Kind::View) => "ellipse",
                    NodeKind::Model(_) => "box",
                };
                let _ = writeln!(out, "  {:?} [shape={shape}];", n.name);
            }
        }
        for (a, b) in self.edges() {
            if keep(a) && keep(b) {
                let _ = writeln!(
                    out,
                    "  {:?} -> {:?};",
                    self.nodes[a].name, self.nodes[b].name
                );
            }
        }
        out.push_str("}\n");
        out
    }

    /// The graph as JSON: nodes in topological order with their direct dependencies.
    pub fn to_json(&self, nodes: Option<&BTreeSet<NodeId>>) -> serde_json::Value {
        #[derive(Serialize)]
        struct JsonNode<'a> {
            name: &'a str,
            kind: &'a str,
            file: String,
            depends_on: Vec<&'a str>,
        }
        let keep = |i: NodeId| nodes.is_none_or(|s| s.contains(&i));
        let list: Vec<JsonNode> = self
            .order
            .iter()
            .filter(|&&i| keep(i))
            .map(|&i| JsonNode {
                name: &self.nodes[i].name,
                kind: self.nodes[i].kind.as_str(),
                file: display_path(&self.nodes[i].file),
                depends_on: self
                    .parents(i)
                    .into_iter()
                    .filter(|&p| keep(p))
                    .map(|p| self.nodes[p].name.as_str())
                    .collect(),
            })
            .collect();
        serde_json::json!({ "schema_version": 1, "nodes": list })
    }
}

/// Mermaid ids must be plain words.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            kind: NodeKind::Model(Kind::Table),
            file: PathBuf::from(format!("models/{name}.sql")),
            model: None,
        }
    }

    fn dag(names: &[&str], edges: &[(usize, usize)]) -> Result<Dag, Diagnostic> {
        Dag::new(
            names.iter().map(|n| node(n)).collect(),
            &edges.iter().copied().collect(),
            &|_, _| None,
        )
    }

    #[test]
    fn topological_order_is_deterministic_by_name() {
        let d = dag(&["d", "c", "b", "a"], &[(3, 1), (2, 1), (1, 0)]).unwrap();
        let names: Vec<&str> = d.order.iter().map(|&i| d.nodes[i].name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }

    #[test]
    fn cycle_lists_every_model_with_its_file() {
        let e = dag(&["a", "b", "c", "x"], &[(0, 1), (1, 2), (2, 0), (3, 0)]).unwrap_err();
        assert_eq!(e.code, Code::Cycle);
        // Edges run from a dependency to its reader: c reads b, b reads a, a reads c.
        assert_eq!(
            e.message,
            "dependency cycle: `a` reads `c`, which reads `b`, which reads `a`"
        );
        assert_eq!(
            e.notes,
            [
                "`a` reads `c` at models/a.sql",
                "`c` reads `b` at models/c.sql",
                "`b` reads `a` at models/b.sql"
            ]
        );
    }

    #[test]
    fn reachable_with_depth() {
        let d = dag(&["a", "b", "c"], &[(0, 1), (1, 2)]).unwrap();
        assert_eq!(d.reachable(0, false, Some(1)), BTreeSet::from([1]));
        assert_eq!(d.reachable(0, false, None), BTreeSet::from([1, 2]));
        assert_eq!(d.reachable(2, true, None), BTreeSet::from([0, 1]));
    }
}
