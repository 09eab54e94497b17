//! Walking queries: WITH, set operations, SELECT clauses, FROM items and joins.

use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;

use sqlparser::ast::{
    self, Distinct, Expr, GroupByExpr, Ident, ObjectName, OrderByKind, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, TableAlias, TableFactor,
    TableWithJoins, WildcardAdditionalOptions,
};

use super::super::position::object_idents;
use super::super::refs::{mentions_table, recursive_term};
use super::expr::function_name;
use super::names::expr_name;
use super::scope::candidates;
use super::{
    Analyzer, Col, CteDef, Item, Opaque, PassThrough, Rel, Res, Resolved, Rows, RowsBuilder, Scope,
    Source, Tail, UnknownStar, hash, upstream_col,
};

/// Table functions known to return one column named after themselves.
const SINGLE_COLUMN_FUNCTIONS: &[&str] = &["range", "generate_series", "unnest"];

impl<'s> Analyzer<'s> {
    pub(super) fn query<'q>(
        &mut self,
        q: &'q ast::Query,
        env: &[CteDef<'q>],
        parent: Option<&Scope<'_>>,
    ) -> Res<Rel> {
        if !q.locks.is_empty()
            || q.for_clause.is_some()
            || q.settings.is_some()
            || q.format_clause.is_some()
            || !q.pipe_operators.is_empty()
        {
            return Err("a query clause that lineage does not analyse".to_string());
        }
        let with_ctes;
        let env = match &q.with {
            Some(with) => {
                with_ctes = env
                    .iter()
                    .copied()
                    .chain(with.cte_tables.iter().map(|cte| CteDef {
                        cte,
                        recursive: with.recursive,
                    }))
                    .collect::<Vec<_>>();
                &with_ctes[..]
            }
            None => env,
        };
        let limited = q.limit_clause.is_some() || q.fetch.is_some();
        let mut rel = match &*q.body {
            SetExpr::Select(s) => {
                let tail = Tail {
                    order_by: q.order_by.as_ref(),
                    limited,
                };
                self.select(s, env, parent, &tail)?
            }
            body => {
                let rel = self.set_expr(body, env, parent)?;
                match (&q.order_by, limited) {
                    (Some(order_by), true) => self.order_by_outputs(rel, order_by, env, parent)?,
                    _ => rel,
                }
            }
        };
        if limited {
            let scope = Scope::new(parent);
            let mut rows = RowsBuilder::default();
            rows.absorb("rows", &rel.rows);
            if let Some(limit) = &q.limit_clause {
                let (has_limit, has_offset) = match limit {
                    ast::LimitClause::LimitOffset { limit, offset, .. } => {
                        (limit.is_some(), offset.is_some())
                    }
                    ast::LimitClause::OffsetCommaLimit { .. } => (true, true),
                };
                if has_limit {
                    rows.clause("LIMIT");
                }
                if has_offset {
                    rows.clause("OFFSET");
                }
                rows.expr("limit", &self.resolve(limit, env, &scope)?);
            }
            if let Some(fetch) = &q.fetch {
                rows.clause("LIMIT");
                rows.expr("fetch", &self.resolve(fetch, env, &scope)?);
            }
            rel.rows = rows.finish("limit");
        }
        Ok(rel)
    }

    /// ORDER BY (with LIMIT) over a set operation or VALUES: output names or positions.
    fn order_by_outputs<'q>(
        &mut self,
        mut rel: Rel,
        order_by: &'q ast::OrderBy,
        env: &[CteDef<'q>],
        parent: Option<&Scope<'_>>,
    ) -> Res<Rel> {
        let cols = rel.known_cols()?.clone();
        let mut scope = Scope::new(parent);
        scope.aliases = cols.clone();
        scope.alias_first = true;
        let mut rows = RowsBuilder::default();
        rows.absorb("rows", &rel.rows);
        self.order_by(order_by, &cols, env, &scope, &mut rows)?;
        rel.rows = rows.finish("ordered");
        Ok(rel)
    }

    fn order_by<'q>(
        &mut self,
        order_by: &'q ast::OrderBy,
        items: &[Col],
        env: &[CteDef<'q>],
        scope: &Scope<'_>,
        rows: &mut RowsBuilder,
    ) -> Res<()> {
        rows.clause("ORDER BY");
        match &order_by.kind {
            OrderByKind::All(options) => {
                rows.part(format!("order by all {options}"));
                for c in items {
                    rows.col("order", c);
                }
            }
            OrderByKind::Expressions(exprs) => {
                for e in exprs {
                    match ordinal(&e.expr) {
                        Some(n) => rows.col("order", ordinal_item(items, n)?),
                        None => rows.expr("order", &self.resolve(&e.expr, env, scope)?),
                    }
                    rows.part(e.options.to_string());
                }
            }
        }
        Ok(())
    }

    fn set_expr<'q>(
        &mut self,
        body: &'q SetExpr,
        env: &[CteDef<'q>],
        parent: Option<&Scope<'_>>,
    ) -> Res<Rel> {
        let none = Tail {
            order_by: None,
            limited: false,
        };
        match body {
            SetExpr::Select(s) => self.select(s, env, parent, &none),
            SetExpr::Query(q) => self.query(q, env, parent),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let left = self.set_expr(left, env, parent)?;
                let right = self.set_expr(right, env, parent)?;
                set_operation(left, *op, *set_quantifier, right)
            }
            SetExpr::Values(values) => {
                let scope = Scope::new(parent);
                let mut columns: Vec<Vec<Resolved>> = Vec::new();
                for row in &values.rows {
                    for (i, e) in row.content.iter().enumerate() {
                        if columns.len() <= i {
                            columns.push(Vec::new());
                        }
                        columns[i].push(self.resolve(e, env, &scope)?);
                    }
                }
                let cols = columns
                    .iter()
                    .enumerate()
                    .map(|(i, values)| {
                        let mut parts = vec!["values"];
                        parts.extend(values.iter().map(|v| v.text.as_str()));
                        Col {
                            name: format!("col{i}"),
                            id: hash(&parts),
                            inputs: values.iter().flat_map(|v| v.inputs.clone()).collect(),
                        }
                    })
                    .collect();
                let mut rows = RowsBuilder::default();
                rows.part(format!("{} rows", values.rows.len()));
                Ok(Rel {
                    display: "VALUES".to_string(),
                    cols: Some(cols),
                    opaque: Opaque::None,
                    rows: rows.finish("values"),
                })
            }
            SetExpr::Table(t) => {
                let idents: Vec<&Ident> = t.schema_name.iter().chain(t.table_name.iter()).collect();
                let rel = self.named_relation(&idents, env)?;
                if rel.cols.is_none() {
                    return Err(format!(
                        "TABLE {}: its columns are not known yet",
                        rel.display
                    ));
                }
                Ok((*rel).clone())
            }
            other => Err(format!(
                "`{}` is not a query",
                first_words(&other.to_string())
            )),
        }
    }

    /// A table or CTE by name.
    fn named_relation<'q>(&mut self, idents: &[&Ident], env: &[CteDef<'q>]) -> Res<Rc<Rel>> {
        if let [single] = idents {
            let name = single.value.to_lowercase();
            let visible = env
                .iter()
                .rposition(|d| d.cte.alias.name.value.to_lowercase() == name);
            if let Some(k) = visible {
                return self.cte(env, k);
            }
        }
        let table = self
            .index
            .table_ref(idents, false)
            .ok_or_else(|| "a table reference without a position".to_string())?;
        let Some((dep, columns)) = self.schemas.resolve(&table) else {
            return Err(format!(
                "{} is not a known model, seed or source",
                table.display()
            ));
        };
        let cols = columns.map(|cs| {
            cs.iter()
                .map(|c| upstream_col(&dep, &c.to_lowercase()))
                .collect()
        });
        Ok(Rc::new(Rel {
            display: dep.clone(),
            opaque: match cols {
                Some(_) => Opaque::None,
                None => Opaque::Upstream(dep.clone()),
            },
            cols,
            rows: Rows {
                id: hash(&["table", &dep]),
                ..Rows::default()
            },
        }))
    }

    /// The relation of CTE `env[k]`, which sees only `env[..k]`.
    fn cte<'q>(&mut self, env: &[CteDef<'q>], k: usize) -> Res<Rc<Rel>> {
        let def = env[k];
        let key = &*def.cte.query as *const ast::Query;
        if let Some(rel) = self.memo.get(&key) {
            return Ok(rel.clone());
        }
        let name = def.cte.alias.name.value.to_lowercase();
        if def.recursive && recursive_term(def.cte).is_some_and(|t| mentions_table(t, &name)) {
            return Err(format!(
                "recursive CTE `{name}`: lineage through recursion is not analysed"
            ));
        }
        let mut rel = self.query(&def.cte.query, &env[..k], None)?;
        rel.display = name;
        rel.rename(Some(&def.cte.alias))?;
        let rel = Rc::new(rel);
        self.memo.insert(key, rel.clone());
        Ok(rel)
    }

    fn select<'q>(
        &mut self,
        s: &'q ast::Select,
        env: &[CteDef<'q>],
        parent: Option<&Scope<'_>>,
        tail: &Tail<'q>,
    ) -> Res<Rel> {
        if s.into.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.top.is_some()
            || s.exclude.is_some()
            || s.value_table_mode.is_some()
        {
            return Err("a SELECT clause that lineage does not analyse".to_string());
        }
        let mut scope = Scope::new(parent);
        let mut rows = RowsBuilder::default();
        for (i, twj) in s.from.iter().enumerate() {
            if i > 0 {
                rows.clause("JOIN");
                rows.part("cross join");
            }
            self.table_with_joins(twj, env, &mut scope, &mut rows)?;
        }

        let windows = self.named_windows(s, env, &scope)?;
        let (items, unknown_cols, partial) =
            self.projection(s, env, &mut scope, windows.as_ref())?;
        let item_cols = || -> Res<Vec<Col>> {
            match &unknown_cols {
                Some(reason) => Err(reason.clone()),
                None => Ok(items.iter().map(|i| i.col.clone()).collect()),
            }
        };

        if let Some(w) = &s.selection {
            rows.clause("WHERE");
            rows.expr(
                "where",
                &self.resolve_with_windows(w, env, &scope, &windows)?,
            );
        }
        let mut aggregate = items.iter().any(|i| i.aggregate);
        match &s.group_by {
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !exprs.is_empty() || !modifiers.is_empty() {
                    rows.clause("GROUP BY");
                    for e in exprs {
                        match ordinal(e) {
                            Some(n) => rows.col("group", ordinal_item(&item_cols()?, n)?),
                            None => rows.expr("group", &self.resolve(e, env, &scope)?),
                        }
                    }
                    for m in modifiers {
                        rows.part(m.to_string());
                    }
                }
            }
            GroupByExpr::All(modifiers) => {
                item_cols()?;
                rows.clause("GROUP BY");
                rows.part("group by all");
                for item in items.iter().filter(|i| !i.aggregate) {
                    rows.col("group", &item.col);
                }
                for m in modifiers {
                    rows.part(m.to_string());
                }
            }
        }
        if let Some(h) = &s.having {
            let r = self.resolve_with_windows(h, env, &scope, &windows)?;
            aggregate |= r.aggregate;
            rows.clause("HAVING");
            rows.expr("having", &r);
        }
        let grouped =
            !matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
        if aggregate && !grouped {
            rows.clause("AGGREGATE");
            rows.part("aggregate");
        }
        if items.iter().any(|i| i.unnest) {
            rows.clause("UNNEST");
            for item in items.iter().filter(|i| i.unnest) {
                rows.col("unnest", &item.col);
            }
        }
        if let Some(q) = &s.qualify {
            rows.clause("QUALIFY");
            rows.expr(
                "qualify",
                &self.resolve_with_windows(q, env, &scope, &windows)?,
            );
        }
        let mut ordered = tail.limited;
        match &s.distinct {
            Some(Distinct::Distinct) => {
                rows.clause("DISTINCT");
                rows.part("distinct");
                for c in item_cols()? {
                    rows.col("distinct", &c);
                }
            }
            Some(Distinct::On(exprs)) => {
                // Which row of each group is kept depends on ORDER BY.
                ordered = true;
                rows.clause("DISTINCT");
                for e in exprs {
                    rows.expr("distinct on", &self.resolve(e, env, &scope)?);
                }
            }
            Some(Distinct::All) | None => {}
        }
        if let (true, Some(order_by)) = (ordered, tail.order_by) {
            let cols = item_cols()?;
            scope.aliases = cols.clone();
            scope.alias_first = true;
            self.order_by(order_by, &cols, env, &scope, &mut rows)?;
        }

        let rows = rows.finish("select");
        Ok(match unknown_cols {
            None => Rel {
                display: "a subquery".to_string(),
                cols: Some(items.into_iter().map(|i| i.col).collect()),
                opaque: Opaque::None,
                rows,
            },
            Some(reason) => Rel {
                display: "a subquery".to_string(),
                cols: None,
                opaque: match partial {
                    Some((mut known, star)) => {
                        known.extend(items.into_iter().map(|i| i.col));
                        Opaque::Partial {
                            reason,
                            known,
                            star,
                        }
                    }
                    None => Opaque::Unknown(reason),
                },
                rows,
            },
        })
    }

    /// The WINDOW clause, resolved as one unit that any use of a named window reads.
    fn named_windows(
        &mut self,
        s: &ast::Select,
        env: &[CteDef<'_>],
        scope: &Scope<'_>,
    ) -> Res<Option<Resolved>> {
        if s.named_window.is_empty() {
            return Ok(None);
        }
        let mut all = Resolved::default();
        let mut texts = Vec::new();
        for def in &s.named_window {
            let r = self.resolve(def, env, scope)?;
            texts.push(r.text);
            all.inputs.extend(r.inputs);
        }
        all.text = texts.join("; ");
        Ok(Some(all))
    }

    fn resolve_with_windows(
        &mut self,
        e: &Expr,
        env: &[CteDef<'_>],
        scope: &Scope<'_>,
        windows: &Option<Resolved>,
    ) -> Res<Resolved> {
        let mut r = self.resolve(e, env, scope)?;
        if r.named_window {
            let w = windows
                .as_ref()
                .ok_or_else(|| "a named window that is not defined".to_string())?;
            r.text = format!("{} WINDOW {}", r.text, w.text);
            r.inputs.extend(w.inputs.iter().cloned());
        }
        Ok(r)
    }

    /// The select list. When a `*` cannot be expanded: the reason (the items then do not
    /// line up with the output columns) and, when every such `*` is plain, the columns
    /// known besides the items and the relations the `*`s pass through.
    fn projection(
        &mut self,
        s: &ast::Select,
        env: &[CteDef<'_>],
        scope: &mut Scope<'_>,
        windows: Option<&Resolved>,
    ) -> Res<(Vec<Item>, Option<String>, Option<PassThrough>)> {
        let windows = windows.cloned();
        let mut items = Vec::new();
        let mut unknown = None;
        let mut partial = Some((Vec::new(), Vec::new()));
        let mut star_unknown = |u: UnknownStar| {
            unknown = unknown.take().or(Some(u.reason));
            partial = match (partial.take(), u.pass_through) {
                (Some((mut k, mut s)), Some((known, star))) => {
                    k.extend(known);
                    s.extend(star);
                    Some((k, s))
                }
                _ => None,
            };
        };
        let from_only =
            s.projection.is_empty() && matches!(s.flavor, ast::SelectFlavor::FromFirstNoSelect);
        let star = [SelectItem::Wildcard(WildcardAdditionalOptions::default())];
        let projection = if from_only {
            &star[..]
        } else {
            &s.projection[..]
        };
        for item in projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let r = self.resolve_with_windows(e, env, scope, &windows)?;
                    let alias = match item {
                        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
                        _ => None,
                    };
                    let col = Col {
                        name: alias.clone().unwrap_or_else(|| expr_name(e)),
                        id: hash(&["expr", &r.text]),
                        inputs: r.inputs,
                    };
                    if alias.is_some() {
                        // DuckDB lets later items (and WHERE, GROUP BY...) use the alias.
                        scope.aliases.push(col.clone());
                    }
                    items.push(Item {
                        col,
                        aggregate: r.aggregate,
                        unnest: r.unnest,
                    });
                }
                SelectItem::Wildcard(options) => match self.expand(None, options, env, scope)? {
                    Ok(expanded) => items.extend(expanded),
                    Err(u) => star_unknown(u),
                },
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    options,
                ) => {
                    let qualifier = object_idents(n)
                        .ok_or_else(|| format!("`{n}.*` is not analysed"))?
                        .iter()
                        .map(|i| i.value.to_lowercase())
                        .collect::<Vec<_>>();
                    match self.expand(Some(&qualifier), options, env, scope)? {
                        Ok(expanded) => items.extend(expanded),
                        Err(u) => star_unknown(u),
                    }
                }
                other => return Err(format!("`{other}` in a select list is not analysed")),
            }
        }
        let partial = partial.filter(|_| unknown.is_some());
        Ok((items, unknown, partial))
    }

    /// `*` / `t.*` with EXCLUDE / REPLACE. The inner Err is "columns not known".
    fn expand(
        &mut self,
        qualifier: Option<&[String]>,
        options: &WildcardAdditionalOptions,
        env: &[CteDef<'_>],
        scope: &Scope<'_>,
    ) -> Res<Result<Vec<Item>, UnknownStar>> {
        if options.opt_ilike.is_some()
            || options.opt_rename.is_some()
            || options.opt_alias.is_some()
        {
            return Err(format!("`{options}` after * is not analysed"));
        }
        let star = match qualifier {
            Some(q) => format!("{}.*", q.join(".")),
            None => "*".to_string(),
        };
        // Without EXCLUDE / REPLACE, an unknown column list can still pass names through.
        let plain = options.opt_exclude.is_none()
            && options.opt_except.is_none()
            && options.opt_replace.is_none();
        let mut cols: Vec<Col> = Vec::new();
        match qualifier {
            Some(q) => {
                let src = scope
                    .visible()
                    .find(|s| s.matches(q))
                    .ok_or_else(|| format!("`{star}`: no table `{}` in FROM", q.join(".")))?;
                match &src.rel.cols {
                    Some(c) => cols.extend(c.iter().cloned()),
                    None => {
                        return Ok(Err(UnknownStar {
                            reason: star_unknown(&star, &src.rel),
                            pass_through: plain.then(|| (Vec::new(), vec![src.rel.clone()])),
                        }));
                    }
                }
            }
            None => {
                if scope.sources.is_empty() {
                    return Err("SELECT * without FROM".to_string());
                }
                // A USING column appears once, where its left side is.
                let mut merged_done = HashSet::new();
                let mut unknown: Option<UnknownStar> = None;
                for src in scope.visible() {
                    let Some(src_cols) = &src.rel.cols else {
                        let u = unknown.get_or_insert_with(|| UnknownStar {
                            reason: star_unknown(&star, &src.rel),
                            pass_through: (plain && scope.using.is_empty())
                                .then(|| (Vec::new(), Vec::new())),
                        });
                        if let Some((_, star)) = &mut u.pass_through {
                            star.push(src.rel.clone());
                        }
                        continue;
                    };
                    for c in src_cols {
                        match scope.using.iter().find(|u| u.name == c.name) {
                            Some(merged) => {
                                if merged_done.insert(c.name.clone()) {
                                    cols.push(merged.clone());
                                }
                            }
                            None => cols.push(c.clone()),
                        }
                    }
                }
                if let Some(mut u) = unknown {
                    if let Some((known, _)) = &mut u.pass_through {
                        *known = cols;
                    }
                    return Ok(Err(u));
                }
            }
        }
        let mut excluded: Vec<String> = Vec::new();
        if let Some(exclude) = &options.opt_exclude {
            let names: Vec<&ObjectName> = match exclude {
                ast::ExcludeSelectItem::Single(n) => vec![n],
                ast::ExcludeSelectItem::Multiple(ns) => ns.iter().collect(),
            };
            for n in names {
                let last = object_idents(n)
                    .and_then(|ids| ids.last().map(|i| i.value.to_lowercase()))
                    .ok_or_else(|| format!("EXCLUDE ({n}) is not analysed"))?;
                excluded.push(last);
            }
        }
        if let Some(except) = &options.opt_except {
            excluded.push(except.first_element.value.to_lowercase());
            excluded.extend(
                except
                    .additional_elements
                    .iter()
                    .map(|i| i.value.to_lowercase()),
            );
        }
        cols.retain(|c| !excluded.contains(&c.name));
        let mut items: Vec<Item> = cols
            .into_iter()
            .map(|col| Item {
                col,
                aggregate: false,
                unnest: false,
            })
            .collect();
        if let Some(replace) = &options.opt_replace {
            for element in &replace.items {
                let name = element.column_name.value.to_lowercase();
                let r = self.resolve(&element.expr, env, scope)?;
                let item = items
                    .iter_mut()
                    .find(|i| i.col.name == name)
                    .ok_or_else(|| {
                        format!("REPLACE of column `{name}`, which `{star}` does not have")
                    })?;
                *item = Item {
                    col: Col {
                        name,
                        id: hash(&["expr", &r.text]),
                        inputs: r.inputs,
                    },
                    aggregate: r.aggregate,
                    unnest: r.unnest,
                };
            }
        }
        Ok(Ok(items))
    }

    fn table_with_joins<'q>(
        &mut self,
        twj: &'q TableWithJoins,
        env: &[CteDef<'q>],
        scope: &mut Scope<'_>,
        rows: &mut RowsBuilder,
    ) -> Res<()> {
        self.factor(&twj.relation, env, scope, rows)?;
        for join in &twj.joins {
            use ast::JoinOperator as J;
            let (kind, constraint, match_condition) = match &join.join_operator {
                J::Join(c) | J::Inner(c) => ("INNER", c, None),
                J::Left(c) | J::LeftOuter(c) => ("LEFT", c, None),
                J::Right(c) | J::RightOuter(c) => ("RIGHT", c, None),
                J::FullOuter(c) => ("FULL", c, None),
                J::CrossJoin(c) => ("CROSS", c, None),
                J::Semi(c) | J::LeftSemi(c) => ("SEMI", c, None),
                J::Anti(c) | J::LeftAnti(c) => ("ANTI", c, None),
                J::AsOf {
                    match_condition,
                    constraint,
                } => ("ASOF", constraint, Some(match_condition)),
                other => {
                    let kind = format!("{other:?}");
                    let kind = kind.split(['(', ' ']).next().unwrap_or_default();
                    return Err(format!("a {kind} join is not analysed"));
                }
            };
            rows.clause("JOIN");
            rows.part(format!("join {kind}"));
            let left_end = scope.sources.len();
            self.factor(&join.relation, env, scope, rows)?;
            if let Some(m) = match_condition {
                rows.expr("match", &self.resolve(m, env, scope)?);
            }
            match constraint {
                ast::JoinConstraint::On(e) => rows.expr("on", &self.resolve(e, env, scope)?),
                ast::JoinConstraint::Using(names) => {
                    for n in names {
                        let name = object_idents(n)
                            .and_then(|ids| ids.last().map(|i| i.value.to_lowercase()))
                            .ok_or_else(|| format!("USING ({n}) is not analysed"))?;
                        merge_using(scope, left_end, kind, &name, rows)?;
                    }
                }
                ast::JoinConstraint::Natural => {
                    let left: Vec<String> = scope.sources[..left_end]
                        .iter()
                        .filter(|s| !s.hidden)
                        .map(|s| {
                            s.rel
                                .known_cols()
                                .map(|c| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
                        })
                        .collect::<Res<Vec<_>>>()?
                        .concat();
                    let right: Vec<String> = scope.sources[left_end..]
                        .iter()
                        .map(|s| {
                            s.rel
                                .known_cols()
                                .map(|c| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
                        })
                        .collect::<Res<Vec<_>>>()?
                        .concat();
                    rows.part("natural");
                    for name in left.iter().filter(|n| right.contains(n)) {
                        merge_using(scope, left_end, kind, name, rows)?;
                    }
                }
                ast::JoinConstraint::None => {}
                _ => return Err("USING (...) AS alias is not analysed".to_string()),
            }
            if matches!(kind, "SEMI" | "ANTI") {
                for src in &mut scope.sources[left_end..] {
                    src.hidden = true;
                }
            }
        }
        Ok(())
    }

    fn factor<'q>(
        &mut self,
        tf: &'q TableFactor,
        env: &[CteDef<'q>],
        scope: &mut Scope<'_>,
        rows: &mut RowsBuilder,
    ) -> Res<()> {
        let (rel, binding, schema, alias) = match tf {
            TableFactor::Table {
                name,
                alias,
                args: None,
                sample: None,
                version: None,
                ..
            } => {
                let idents = object_idents(name)
                    .ok_or_else(|| format!("table name `{name}` is not analysed"))?;
                if let [file] = idents.as_slice()
                    && file.quote_style == Some('\'')
                {
                    let display = format!("'{}'", file.value);
                    return self.function_source(tf, &display, alias.as_ref(), env, scope, rows);
                }
                let rel = self.named_relation(&idents, env)?;
                let binding = idents.last().map(|i| i.value.to_lowercase());
                let schema =
                    (idents.len() >= 2).then(|| idents[idents.len() - 2].value.to_lowercase());
                (rel, binding, schema, alias.as_ref())
            }
            TableFactor::Table {
                name,
                alias,
                args: Some(_),
                sample: None,
                ..
            }
            | TableFactor::Function { name, alias, .. } => {
                return self.function_source(
                    tf,
                    &function_name(name),
                    alias.as_ref(),
                    env,
                    scope,
                    rows,
                );
            }
            TableFactor::UNNEST { alias, .. } => {
                return self.function_source(tf, "unnest", alias.as_ref(), env, scope, rows);
            }
            TableFactor::Derived {
                subquery,
                alias,
                sample: None,
                ..
            } => {
                // DuckDB binds every subquery in FROM as if LATERAL: it sees earlier sources.
                let mut rel = self.query(subquery, env, Some(&*scope))?;
                if let Some(a) = alias {
                    rel.display = a.name.value.to_lowercase();
                }
                (Rc::new(rel), None, None, alias.as_ref())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => return self.table_with_joins(table_with_joins, env, scope, rows),
            TableFactor::Pivot { .. } => return Err("PIVOT is not analysed".to_string()),
            TableFactor::Unpivot { .. } => return Err("UNPIVOT is not analysed".to_string()),
            other => {
                return Err(format!(
                    "`{}` in FROM is not analysed",
                    first_words(&other.to_string())
                ));
            }
        };
        let rel = match alias.filter(|a| !a.columns.is_empty()) {
            Some(a) => {
                let mut renamed = (*rel).clone();
                renamed.rename(Some(a))?;
                Rc::new(renamed)
            }
            None => rel,
        };
        rows.absorb("from", &rel.rows);
        let (binding, schema) = match alias {
            Some(a) => (Some(a.name.value.to_lowercase()), None),
            None => (binding, schema),
        };
        scope.sources.push(Source {
            binding,
            schema,
            rel,
            hidden: false,
        });
        Ok(())
    }

    /// A table function (`read_parquet(...)`, `range(10)`, `unnest(t.l)`) or a file read by
    /// path (`FROM 'x.csv'`): not a dependency; its arguments may read earlier sources.
    fn function_source(
        &mut self,
        tf: &TableFactor,
        fname: &str,
        alias: Option<&TableAlias>,
        env: &[CteDef<'_>],
        scope: &mut Scope<'_>,
        rows: &mut RowsBuilder,
    ) -> Res<()> {
        let r = self.resolve(tf, env, scope)?;
        let id = hash(&["function", &r.text]);
        let cols = SINGLE_COLUMN_FUNCTIONS.contains(&fname).then(|| {
            vec![Col {
                name: fname.to_string(),
                id: hash(&["function column", &id, fname]),
                inputs: r.inputs.clone(),
            }]
        });
        let mut rel = Rel {
            display: if fname.starts_with('\'') {
                fname.to_string()
            } else {
                format!("{fname}(...)")
            },
            opaque: match cols {
                Some(_) => Opaque::None,
                None => Opaque::Function {
                    id: id.clone(),
                    inputs: r.inputs.clone(),
                },
            },
            cols,
            rows: Rows {
                id,
                inputs: r.inputs.clone(),
                clauses: if fname == "unnest" {
                    BTreeSet::from(["UNNEST".to_string()])
                } else {
                    BTreeSet::new()
                },
            },
        };
        rel.rename(alias)?;
        rows.absorb("from", &rel.rows);
        scope.sources.push(Source {
            binding: alias
                .map(|a| a.name.value.to_lowercase())
                .or_else(|| (!fname.starts_with('\'')).then(|| fname.to_string())),
            schema: None,
            rel: Rc::new(rel),
            hidden: false,
        });
        Ok(())
    }
}

/// `USING (name)`: the merged column is the left one for inner/left joins, the right one
/// for right joins, and both (coalesced) for full joins; the join reads both.
fn merge_using(
    scope: &mut Scope<'_>,
    left_end: usize,
    kind: &str,
    name: &str,
    rows: &mut RowsBuilder,
) -> Res<()> {
    let left = match scope.using.iter().find(|c| c.name == name) {
        Some(c) => c.clone(),
        None => one_candidate(scope.sources[..left_end].iter().filter(|s| !s.hidden), name)?,
    };
    let right = one_candidate(scope.sources[left_end..].iter(), name)?;
    rows.part("using");
    rows.col("left", &left);
    rows.col("right", &right);
    let merged = match kind {
        "RIGHT" => right,
        "FULL" => Col {
            name: name.to_string(),
            id: hash(&["coalesce", &left.id, &right.id]),
            inputs: left.inputs.union(&right.inputs).cloned().collect(),
        },
        _ => left,
    };
    scope.using.retain(|c| c.name != name);
    scope.using.push(merged);
    Ok(())
}

fn one_candidate<'a>(sources: impl Iterator<Item = &'a Source>, name: &str) -> Res<Col> {
    let (definite, maybe) = candidates(sources, name)?;
    match (definite.len(), maybe.len()) {
        (1, _) => Ok(definite.into_iter().next().expect("one").1),
        (0, 1) => Ok(maybe.into_iter().next().expect("one").1),
        (0, 0) => Err(format!("USING column `{name}` not found")),
        _ => Err(format!("USING column `{name}` is ambiguous")),
    }
}

fn star_unknown(star: &str, rel: &Rel) -> String {
    match &rel.opaque {
        Opaque::Unknown(reason) | Opaque::Partial { reason, .. } => reason.clone(),
        _ => format!(
            "SELECT {star} over {}, whose columns are not known yet",
            rel.display
        ),
    }
}

fn set_operation(left: Rel, op: SetOperator, quantifier: SetQuantifier, right: Rel) -> Res<Rel> {
    let op_name = match op {
        SetOperator::Union => "UNION",
        SetOperator::Except | SetOperator::Minus => "EXCEPT",
        SetOperator::Intersect => "INTERSECT",
    };
    let (lc, rc) = (left.known_cols()?, right.known_cols()?);
    let by_name = matches!(
        quantifier,
        SetQuantifier::ByName | SetQuantifier::AllByName | SetQuantifier::DistinctByName
    );
    let pairs: Vec<(String, Option<&Col>, Option<&Col>)> = if by_name {
        let mut names: Vec<String> = lc.iter().map(|c| c.name.clone()).collect();
        for c in rc {
            if !names.contains(&c.name) {
                names.push(c.name.clone());
            }
        }
        names
            .into_iter()
            .map(|n| {
                let l = lc.iter().find(|c| c.name == n);
                let r = rc.iter().find(|c| c.name == n);
                (n, l, r)
            })
            .collect()
    } else {
        if lc.len() != rc.len() {
            return Err(format!(
                "{op_name} of queries with {} and {} columns",
                lc.len(),
                rc.len()
            ));
        }
        lc.iter()
            .zip(rc)
            .map(|(l, r)| (l.name.clone(), Some(l), Some(r)))
            .collect()
    };
    let quantifier = quantifier.to_string();
    let cols: Vec<Col> = pairs
        .into_iter()
        .map(|(name, l, r)| {
            let lid = l.map_or("null", |c| c.id.as_str());
            let rid = r.map_or("null", |c| c.id.as_str());
            let mut inputs = BTreeSet::new();
            for c in [l, r].into_iter().flatten() {
                inputs.extend(c.inputs.iter().cloned());
            }
            Col {
                id: hash(&[op_name, &quantifier, lid, rid]),
                name,
                inputs,
            }
        })
        .collect();
    let mut rows = RowsBuilder::default();
    rows.clause(op_name);
    rows.part(format!("{op_name} {quantifier}"));
    rows.absorb("left", &left.rows);
    rows.absorb("right", &right.rows);
    // Without ALL, which rows survive depends on every column's values.
    let keeps_all =
        op == SetOperator::Union && matches!(quantifier.as_str(), "ALL" | "ALL BY NAME");
    if !keeps_all {
        for c in &cols {
            rows.col("compare", c);
        }
    }
    Ok(Rel {
        display: format!("a {op_name}"),
        cols: Some(cols),
        opaque: Opaque::None,
        rows: rows.finish("set operation"),
    })
}

/// `GROUP BY 2`, `ORDER BY 1`.
fn ordinal(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn ordinal_item(items: &[Col], n: usize) -> Res<&Col> {
    n.checked_sub(1)
        .and_then(|i| items.get(i))
        .ok_or_else(|| format!("position {n} is not in the select list"))
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
