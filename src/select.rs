//! Graph selectors, dbt style: `name`, `+name`, `name+`, `N+name`, `name+N`,
//! `@name`, `tag:`, `path:`, `kind:`, `product:`; space-separated terms are a
//! union, comma-separated parts of a term an intersection; `--exclude` subtracts.

use std::collections::BTreeSet;

use crate::diagnostics::{Code, Diagnostic, did_you_mean, display_path};
use crate::graph::{Dag, NodeId, NodeKind};
use crate::project::Project;

/// One part of a term: a method with graph operators around it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    method: Method,
    /// `Some(None)`: all ancestors; `Some(Some(n))`: up to n levels.
    ancestors: Option<Option<usize>>,
    descendants: Option<Option<usize>>,
    /// `@name`: descendants and all ancestors of those descendants.
    at: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    Name(String),
    Tag(String),
    Path(String),
    Kind(String),
    Product(String),
}

/// Resolve `select` (empty = every node) minus `exclude`.
pub fn select(
    dag: &Dag,
    project: &Project,
    select: &[String],
    exclude: &[String],
) -> Result<BTreeSet<NodeId>, Diagnostic> {
    let mut chosen: BTreeSet<NodeId> = if select.iter().all(|s| s.trim().is_empty()) {
        (0..dag.len()).collect()
    } else {
        union_of(dag, project, select)?
    };
    let excluded = union_of(dag, project, exclude)?;
    chosen.retain(|i| !excluded.contains(i));
    Ok(chosen)
}

fn union_of(dag: &Dag, project: &Project, args: &[String]) -> Result<BTreeSet<NodeId>, Diagnostic> {
    let mut out = BTreeSet::new();
    for term in args.iter().flat_map(|a| a.split_whitespace()) {
        let mut acc: Option<BTreeSet<NodeId>> = None;
        for part in term.split(',').filter(|p| !p.is_empty()) {
            let set = eval_part(dag, project, &parse_part(part)?)?;
            acc = Some(match acc {
                None => set,
                Some(a) => a.intersection(&set).copied().collect(),
            });
        }
        out.extend(acc.unwrap_or_default());
    }
    Ok(out)
}

fn invalid(text: &str, why: impl std::fmt::Display) -> Diagnostic {
    Diagnostic::error(Code::InvalidSelector, format!("invalid selector `{text}`: {why}")).with_help(
        "selectors: name, +name, name+, 2+name, name+1, @name, tag:x, path:models/marts, kind:incremental, product:true; space = union, comma = intersection",
    )
}

fn parse_part(text: &str) -> Result<Part, Diagnostic> {
    let mut rest = text;
    let mut at = false;
    let mut ancestors = None;
    if let Some(r) = rest.strip_prefix('@') {
        at = true;
        rest = r;
    } else {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Some(r) = rest[digits.len()..].strip_prefix('+') {
            ancestors = Some(if digits.is_empty() {
                None
            } else {
                Some(
                    digits
                        .parse()
                        .map_err(|_| invalid(text, "depth is not a number"))?,
                )
            });
            rest = r;
        }
    }
    let mut descendants = None;
    let trailing: String = rest
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    let without_digits = &rest[..rest.len() - trailing.len()];
    if let Some(r) = without_digits.strip_suffix('+') {
        let depth: String = trailing.chars().rev().collect();
        descendants = Some(if depth.is_empty() {
            None
        } else {
            Some(
                depth
                    .parse()
                    .map_err(|_| invalid(text, "depth is not a number"))?,
            )
        });
        rest = r;
    }
    if rest.is_empty() {
        return Err(invalid(text, "no model name or method"));
    }
    if at && (ancestors.is_some() || descendants.is_some()) {
        return Err(invalid(text, "`@` cannot be combined with `+`"));
    }
    let method = match rest.split_once(':') {
        None => Method::Name(rest.to_string()),
        Some(("tag", v)) => Method::Tag(v.to_string()),
        Some(("path", v)) => Method::Path(v.trim_end_matches('/').to_string()),
        Some(("kind", v)) => Method::Kind(v.to_lowercase()),
        Some(("product", v)) => Method::Product(v.to_string()),
        Some((m, _)) => {
            let hint = did_you_mean(m, ["tag", "path", "kind", "product"])
                .map(|s| format!("; did you mean `{s}:`?"))
                .unwrap_or_default();
            return Err(invalid(text, format!("unknown method `{m}:`{hint}")));
        }
    };
    Ok(Part {
        method,
        ancestors,
        descendants,
        at,
    })
}

fn eval_part(dag: &Dag, project: &Project, part: &Part) -> Result<BTreeSet<NodeId>, Diagnostic> {
    let base = eval_method(dag, project, &part.method)?;
    let mut out = base.clone();
    for &i in &base {
        if part.at {
            let down = dag.reachable(i, false, None);
            for &d in &down {
                out.extend(dag.reachable(d, true, None));
            }
            out.extend(dag.reachable(i, true, None));
            out.extend(down);
        }
        if let Some(depth) = part.ancestors {
            out.extend(dag.reachable(i, true, depth));
        }
        if let Some(depth) = part.descendants {
            out.extend(dag.reachable(i, false, depth));
        }
    }
    Ok(out)
}

fn eval_method(
    dag: &Dag,
    project: &Project,
    method: &Method,
) -> Result<BTreeSet<NodeId>, Diagnostic> {
    let config = |i: NodeId| dag.nodes[i].model.map(|m| &project.models[m].config);
    let matching = |f: &dyn Fn(NodeId) -> bool| -> BTreeSet<NodeId> {
        (0..dag.len()).filter(|&i| f(i)).collect()
    };
    Ok(match method {
        Method::Name(name) if name.contains('*') => {
            let found = matching(&|i| glob_match(&name.to_lowercase(), dag.nodes[i].name.key()));
            if found.is_empty() {
                return Err(invalid(name, "matches no model, seed or source"));
            }
            found
        }
        Method::Name(name) => match dag.lookup(name) {
            Some(i) => BTreeSet::from([i]),
            None => {
                let hint = did_you_mean(name, dag.nodes.iter().map(|n| n.name.as_str()))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(invalid(
                    name,
                    format!("no model, seed or source is called `{name}`{hint}"),
                ));
            }
        },
        Method::Tag(tag) => {
            matching(&|i| config(i).is_some_and(|c| c.tags.iter().any(|t| t == tag)))
        }
        Method::Path(prefix) => {
            let prefix = prefix.trim_start_matches("./");
            matching(&|i| {
                let file = display_path(&dag.nodes[i].file);
                file == prefix
                    || file.starts_with(&format!("{prefix}/"))
                    || glob_match(prefix, &file)
            })
        }
        Method::Kind(kind) => {
            let known = ["view", "table", "incremental", "seed", "source"];
            if !known.contains(&kind.as_str()) {
                return Err(invalid(
                    &format!("kind:{kind}"),
                    format!("kinds are {}", known.join(", ")),
                ));
            }
            matching(&|i| dag.nodes[i].kind.as_str() == kind)
        }
        Method::Product(value) => {
            let destination = project
                .config
                .destinations
                .iter()
                .find(|d| d.name == *value);
            match (value.as_str(), destination) {
                ("true" | "yes" | "*", _) => matching(&|i| config(i).is_some_and(|c| c.product)),
                ("false" | "no", _) => matching(&|i| {
                    dag.nodes[i].kind.is_model() && config(i).is_some_and(|c| !c.product)
                }),
                (_, Some(dest)) => matching(&|i| {
                    config(i).is_some_and(|c| c.product)
                        && (dest
                            .products
                            .iter()
                            .any(|p| p.eq_ignore_ascii_case(&dag.nodes[i].name))
                            || config(i).is_some_and(|c| c.destinations.contains(&dest.name)))
                }),
                (other, None) => {
                    return Err(invalid(
                        &format!("product:{other}"),
                        "expected true, false or the name of a destination",
                    ));
                }
            }
        }
    })
}

/// `*` matches any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Only the model nodes of a selection.
pub fn models_only(dag: &Dag, set: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
    set.iter()
        .copied()
        .filter(|&i| matches!(dag.nodes[i].kind, NodeKind::Model(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_operators() {
        let p = parse_part("2+orders+1").unwrap();
        assert_eq!(p.ancestors, Some(Some(2)));
        assert_eq!(p.descendants, Some(Some(1)));
        assert_eq!(p.method, Method::Name("orders".into()));
        let p = parse_part("+tag:finance").unwrap();
        assert_eq!(p.ancestors, Some(None));
        assert_eq!(p.method, Method::Tag("finance".into()));
        assert!(parse_part("@x+").is_err());
        assert!(
            parse_part("tga:x")
                .unwrap_err()
                .message
                .contains("did you mean `tag:`?")
        );
    }

    #[test]
    fn glob() {
        assert!(glob_match("stg_*", "stg_orders"));
        assert!(glob_match("*_daily", "revenue_daily"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("stg_*", "int_orders"));
    }
}
