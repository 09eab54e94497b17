//! Finding every table a query reads, with DuckDB's CTE scoping.
//!
//! Scoping, as DuckDB 2.0 binds it:
//! - a CTE is visible in the rest of its query (body, ORDER BY, nested subqueries) and in
//!   the CTEs defined after it in the same WITH, never in earlier ones nor in itself, so
//!   `WITH orders AS (SELECT * FROM orders)` reads the table `orders`;
//! - in `WITH RECURSIVE`, a CTE whose body is `anchor UNION [ALL] recursive_term` also
//!   sees itself, but only inside the recursive term (the right operand of the top-level
//!   UNION); the anchor, and any CTE body that is not such a UNION, reads the table;
//! - a qualified name (`main.orders`) is never a CTE.

use std::ops::ControlFlow;

use sqlparser::ast::{self, Cte, SetExpr, SetOperator, TableFactor, Visit, Visitor};

use super::TableRef;
use super::position::{LineIndex, object_idents};

pub(crate) fn collect(query: &ast::Query, index: &LineIndex) -> Vec<TableRef> {
    let mut collector = Collector {
        index,
        frames: Vec::new(),
        recursive_terms: Vec::new(),
        self_visible: Vec::new(),
        refs: Vec::new(),
    };
    let _ = query.visit(&mut collector);
    collector.refs.sort_by_key(|r| (r.start, r.end));
    collector.refs
}

/// The recursive term of a `WITH RECURSIVE` CTE: the right operand of its body's
/// top-level UNION (looking through redundant parentheses).
pub(crate) fn recursive_term(cte: &Cte) -> Option<&SetExpr> {
    let mut body = &*cte.query.body;
    loop {
        match body {
            SetExpr::Query(q) if q.with.is_none() && q.order_by.is_none() => body = &q.body,
            SetExpr::SetOperation {
                op: SetOperator::Union,
                right,
                ..
            } => return Some(right),
            _ => return None,
        }
    }
}

/// Whether `term` reads a table named `name` (unqualified, any case).
pub(crate) fn mentions_table(term: &SetExpr, name: &str) -> bool {
    struct Finder<'a>(&'a str);
    impl Visitor for Finder<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name, args: None, ..
            } = tf
                && let [ast::ObjectNamePart::Identifier(i)] = name.0.as_slice()
                && i.value.to_lowercase() == self.0
            {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    term.visit(&mut Finder(name)).is_break()
}

/// One query level: the CTEs its WITH defines, and how many of them are visible so far.
struct Frame {
    ctes: Vec<(String, *const ast::Query)>,
    visible: usize,
}

struct Collector<'a> {
    index: &'a LineIndex<'a>,
    frames: Vec<Frame>,
    /// Recursive terms (a `Select` or a parenthesised `Query`) and their CTE's name.
    recursive_terms: Vec<(*const (), String)>,
    /// The recursive terms being visited: inside one, its CTE's name is visible.
    self_visible: Vec<(*const (), String)>,
    refs: Vec<TableRef>,
}

impl Collector<'_> {
    fn is_cte(&self, name: &str) -> bool {
        self.self_visible.iter().any(|(_, n)| n == name)
            || self
                .frames
                .iter()
                .rev()
                .any(|f| f.ctes[..f.visible].iter().any(|(n, _)| n == name))
    }

    fn add(&mut self, idents: &[&ast::Ident], bare: bool) {
        if let [single] = idents {
            // `FROM 'data/x.csv'` reads a file, not a table.
            if single.quote_style == Some('\'') || self.is_cte(&single.value.to_lowercase()) {
                return;
            }
        }
        if let Some(r) = self.index.table_ref(idents, bare) {
            self.refs.push(r);
        }
    }

    /// `TABLE x` operands of a query body (they carry no span of their own, only idents).
    fn add_table_commands(&mut self, body: &SetExpr) {
        match body {
            SetExpr::SetOperation { left, right, .. } => {
                self.add_table_commands(left);
                self.add_table_commands(right);
            }
            SetExpr::Table(t) => {
                let idents: Vec<&ast::Ident> =
                    t.schema_name.iter().chain(t.table_name.iter()).collect();
                // `TABLE x` takes no alias.
                self.add(&idents, false);
            }
            _ => {}
        }
    }

    fn enter_node(&mut self, node: *const ()) {
        if let Some((_, name)) = self.recursive_terms.iter().find(|(p, _)| *p == node) {
            self.self_visible.push((node, name.clone()));
        }
    }

    fn leave_node(&mut self, node: *const ()) {
        if self.self_visible.last().is_some_and(|(p, _)| *p == node) {
            self.self_visible.pop();
        }
    }
}

impl Visitor for Collector<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
        self.enter_node(q as *const ast::Query as *const ());
        let mut ctes = Vec::new();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = cte.alias.name.value.to_lowercase();
                ctes.push((name.clone(), &*cte.query as *const ast::Query));
                if with.recursive {
                    match recursive_term(cte) {
                        Some(SetExpr::Select(s)) => self
                            .recursive_terms
                            .push((&**s as *const ast::Select as *const (), name)),
                        Some(SetExpr::Query(q)) => self
                            .recursive_terms
                            .push((&**q as *const ast::Query as *const (), name)),
                        _ => {}
                    }
                }
            }
        }
        // The body sees all of this query's CTEs; they become visible one by one while
        // the WITH itself is visited.
        let all = ctes.len();
        self.frames.push(Frame { ctes, visible: all });
        self.add_table_commands(&q.body);
        if let Some(frame) = self.frames.last_mut() {
            frame.visible = 0;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
        let ptr = q as *const ast::Query;
        self.frames.pop();
        self.leave_node(ptr as *const ());
        if let Some(frame) = self.frames.last_mut()
            && let Some(i) = frame.ctes.iter().position(|(_, p)| *p == ptr)
        {
            frame.visible = i + 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &ast::Select) -> ControlFlow<()> {
        self.enter_node(s as *const ast::Select as *const ());
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, s: &ast::Select) -> ControlFlow<()> {
        self.leave_node(s as *const ast::Select as *const ());
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        // A name with arguments is a table function: `read_parquet('x')`, `range(10)`.
        if let TableFactor::Table {
            name,
            args: None,
            alias,
            ..
        } = tf
            && let Some(idents) = object_idents(name)
        {
            self.add(&idents, alias.is_none());
        }
        ControlFlow::Continue(())
    }
}
