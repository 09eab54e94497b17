//! Resolving expressions: every column reference and subquery is replaced by the
//! identity of what it denotes, then the expression is printed by sqlparser.

use std::collections::HashSet;
use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Visit,
    VisitMut, Visitor, VisitorMut, WindowType,
};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use super::super::position::object_idents;
use super::{Analyzer, CteDef, Res, Resolved, Scope, hash};

/// DuckDB aggregate functions (a name missing here only makes lineage more conservative:
/// GROUP BY ALL then counts that column as a grouping key).
#[rustfmt::skip]
const AGGREGATES: &[&str] = &[
    "any_value", "approx_count_distinct", "approx_quantile", "approx_top_k", "arbitrary",
    "arg_max", "arg_max_null", "arg_min", "arg_min_null", "argmax", "argmin", "array_agg",
    "avg", "bit_and", "bit_or", "bit_xor", "bitstring_agg", "bool_and", "bool_or", "corr",
    "count", "count_if", "count_star", "countif", "covar_pop", "covar_samp", "entropy", "favg",
    "first", "fsum", "geomean", "geometric_mean", "group_concat", "histogram",
    "json_group_array", "json_group_object", "json_group_structure", "kahan_sum", "kurtosis",
    "kurtosis_pop", "last", "list", "listagg", "mad", "max", "max_by", "mean", "median", "min",
    "min_by", "mode", "percentile_cont", "percentile_disc", "product", "quantile",
    "quantile_cont", "quantile_disc", "regr_avgx", "regr_avgy", "regr_count", "regr_intercept",
    "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy", "reservoir_quantile", "sem",
    "skewness", "stddev", "stddev_pop", "stddev_samp", "string_agg", "sum", "sum_no_overflow",
    "sumkahan", "var_pop", "var_samp", "variance", "weighted_avg",
];

pub(super) fn function_name(name: &ObjectName) -> String {
    object_idents(name)
        .and_then(|ids| ids.last().map(|i| i.value.to_lowercase()))
        .unwrap_or_else(|| name.to_string().to_lowercase())
}

impl Analyzer<'_> {
    /// Prints `node` with every column reference and subquery replaced by its identity.
    pub(super) fn resolve<N>(
        &mut self,
        node: &N,
        env: &[CteDef<'_>],
        scope: &Scope<'_>,
    ) -> Res<Resolved>
    where
        N: Visit + VisitMut + Clone + fmt::Display,
    {
        let mut collect = Collect {
            analyzer: self,
            env,
            scope,
            track: Tracker::default(),
            exists: HashSet::new(),
            replacements: Vec::new(),
            out: Resolved::default(),
        };
        if let ControlFlow::Break(reason) = Visit::visit(node, &mut collect) {
            return Err(reason);
        }
        let Collect {
            replacements,
            mut out,
            ..
        } = collect;
        let mut copy = node.clone();
        let mut apply = Apply {
            track: Tracker::default(),
            replacements: replacements.into_iter(),
        };
        let _ = VisitMut::visit(&mut copy, &mut apply);
        out.text = copy.to_string();
        Ok(out)
    }
}

/// Decides, identically in the read-only and the rewriting pass, which expressions are
/// column references: those outside nested queries, not lambda parameters, and not field
/// names after a dot (`l[1].x`) or named-argument names.
#[derive(Default)]
struct Tracker {
    depth: usize,
    lambdas: Vec<Vec<String>>,
    not_columns: Vec<*const Expr>,
}

impl Tracker {
    /// Entering a query: true when it is a subquery of the expression being resolved.
    fn enter_query(&mut self) -> bool {
        self.depth += 1;
        self.depth == 1
    }

    fn leave_query(&mut self) {
        self.depth -= 1;
    }

    fn enter_expr(&mut self, e: &Expr) -> Option<Vec<String>> {
        if self.depth > 0 {
            return None;
        }
        match e {
            Expr::Lambda(l) => {
                let params = match &l.params {
                    ast::OneOrManyWithParens::One(p) => vec![p.name.value.to_lowercase()],
                    ast::OneOrManyWithParens::Many(ps) => {
                        ps.iter().map(|p| p.name.value.to_lowercase()).collect()
                    }
                };
                self.lambdas.push(params);
                None
            }
            Expr::CompoundFieldAccess { access_chain, .. } => {
                for a in access_chain {
                    if let ast::AccessExpr::Dot(field) = a {
                        self.not_columns.push(field as *const Expr);
                    }
                }
                None
            }
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &f.args {
                    for a in &list.args {
                        if let FunctionArg::ExprNamed { name, .. } = a {
                            self.not_columns.push(name as *const Expr);
                        }
                    }
                }
                None
            }
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                let ptr = e as *const Expr;
                if let Some(i) = self.not_columns.iter().position(|p| *p == ptr) {
                    self.not_columns.swap_remove(i);
                    return None;
                }
                let parts: Vec<String> = match e {
                    Expr::Identifier(i) => vec![i.value.to_lowercase()],
                    Expr::CompoundIdentifier(ids) => {
                        ids.iter().map(|i| i.value.to_lowercase()).collect()
                    }
                    _ => unreachable!("matched above"),
                };
                let bound = self.lambdas.iter().any(|ps| ps.contains(&parts[0]));
                (!bound).then_some(parts)
            }
            _ => None,
        }
    }

    fn leave_expr(&mut self, e: &Expr) {
        if self.depth == 0 && matches!(e, Expr::Lambda(_)) {
            self.lambdas.pop();
        }
    }
}

enum Replacement {
    /// A column: its identity, and how many identifier parts named it.
    Column { id: String, consumed: usize },
    /// A subquery: its identity.
    Query(String),
    /// A name that is not a column (`current_user`): printed as written.
    Keep,
}

/// SQL keywords sqlparser reads as identifiers; they are columns only if one has the name.
const NILADIC: &[&str] = &[
    "current_catalog",
    "current_role",
    "current_schema",
    "current_user",
    "session_user",
    "user",
];

/// First pass, over the original AST: resolves columns, analyses subqueries.
struct Collect<'a, 's, 'e, 'p> {
    analyzer: &'a mut Analyzer<'s>,
    env: &'a [CteDef<'e>],
    scope: &'a Scope<'p>,
    track: Tracker,
    /// Subqueries of EXISTS: only their rows matter.
    exists: HashSet<*const ast::Query>,
    replacements: Vec<Replacement>,
    out: Resolved,
}

impl Visitor for Collect<'_, '_, '_, '_> {
    type Break = String;

    fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<String> {
        if !self.track.enter_query() {
            return ControlFlow::Continue(());
        }
        let rel = match self.analyzer.query(q, self.env, Some(self.scope)) {
            Ok(rel) => rel,
            Err(reason) => return ControlFlow::Break(reason),
        };
        let mut parts = vec!["subquery".to_string(), rel.rows.id.clone()];
        self.out.inputs.extend(rel.rows.inputs.iter().cloned());
        if !self.exists.contains(&(q as *const ast::Query)) {
            let cols = match rel.known_cols() {
                Ok(cols) => cols,
                Err(reason) => return ControlFlow::Break(reason),
            };
            for c in cols {
                parts.push(c.id.clone());
                self.out.inputs.extend(c.inputs.iter().cloned());
            }
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        self.replacements.push(Replacement::Query(hash(&parts)));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<String> {
        self.track.leave_query();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        if self.track.depth == 0
            && let Err(reason) = self.inspect(e)
        {
            return ControlFlow::Break(reason);
        }
        if let Some(parts) = self.track.enter_expr(e) {
            match self.scope.column(&parts) {
                Ok((col, consumed)) => {
                    self.out.inputs.extend(col.inputs);
                    self.replacements.push(Replacement::Column {
                        id: col.id,
                        consumed,
                    });
                }
                Err(_) if parts.len() == 1 && NILADIC.contains(&parts[0].as_str()) => {
                    self.replacements.push(Replacement::Keep);
                }
                Err(reason) => return ControlFlow::Break(reason),
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        self.track.leave_expr(e);
        ControlFlow::Continue(())
    }
}

impl Collect<'_, '_, '_, '_> {
    /// Notes what an expression does, and refuses what lineage cannot follow.
    fn inspect(&mut self, e: &Expr) -> Res<()> {
        match e {
            Expr::Exists { subquery, .. } => {
                self.exists.insert(&**subquery as *const ast::Query);
            }
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                return Err(format!("`{e}` inside an expression is not analysed"));
            }
            Expr::Function(f) => {
                let name = function_name(&f.name);
                if matches!(name.as_str(), "columns" | "unpack") {
                    return Err(format!("{}(...) is not analysed", name.to_uppercase()));
                }
                match &f.over {
                    None if AGGREGATES.contains(&name.as_str()) => self.out.aggregate = true,
                    None if matches!(name.as_str(), "unnest" | "unlist") => self.out.unnest = true,
                    Some(WindowType::NamedWindow(_)) => self.out.named_window = true,
                    _ => {}
                }
                if let FunctionArguments::List(list) = &f.args {
                    for a in &list.args {
                        let (FunctionArg::Unnamed(arg)
                        | FunctionArg::Named { arg, .. }
                        | FunctionArg::ExprNamed { arg, .. }) = a;
                        if matches!(
                            arg,
                            FunctionArgExpr::QualifiedWildcard(_)
                                | FunctionArgExpr::WildcardWithOptions(_)
                        ) && name != "count"
                        {
                            return Err(format!("`{arg}` as a function argument is not analysed"));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Second pass, over a copy: puts the identities in place.
struct Apply {
    track: Tracker,
    replacements: std::vec::IntoIter<Replacement>,
}

impl VisitorMut for Apply {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
        if self.track.enter_query()
            && let Some(Replacement::Query(id)) = self.replacements.next()
            && let Some(placeholder) = placeholder_query(&id)
        {
            *q = placeholder;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut ast::Query) -> ControlFlow<()> {
        self.track.leave_query();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if self.track.enter_expr(e).is_some()
            && let Some(Replacement::Column { id, consumed }) = self.replacements.next()
        {
            let fields: Vec<Ident> = match e {
                Expr::CompoundIdentifier(ids) => ids.iter().skip(consumed).cloned().collect(),
                _ => Vec::new(),
            };
            let column = Ident::with_quote('"', format!("§{id}"));
            *e = if fields.is_empty() {
                Expr::Identifier(column)
            } else {
                Expr::CompoundIdentifier(std::iter::once(column).chain(fields).collect())
            };
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        self.track.leave_expr(e);
        ControlFlow::Continue(())
    }
}

/// `SELECT '<id>'`: stands for an analysed subquery in printed expressions.
fn placeholder_query(id: &str) -> Option<ast::Query> {
    Parser::new(&DuckDbDialect {})
        .try_with_sql(&format!("SELECT '§{id}'"))
        .and_then(|mut p| p.parse_query())
        .ok()
        .map(|q| *q)
}
