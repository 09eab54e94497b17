//! Audits: checks on the staged rows of the intervals a run just built, written
//! in a model header as `name(arguments)`, blocking unless prefixed `warn: `.

use std::path::Path;

use crate::diagnostics::{Code, Diagnostic, Location, did_you_mean};
use crate::engine::{quote_ident, quote_str};
use crate::project::{ModelFile, Project};

/// The audits every project has.
pub const BUILT_IN: &[&str] = &[
    "not_null",
    "unique",
    "accepted_values",
    "relationships",
    "row_count",
    "range",
    "expression",
];

/// Where custom audits live: `audits/NAME.sql`, a query returning the rows
/// that violate it.
pub const AUDIT_DIR: &str = "audits";

/// One argument: `value` or `name = value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Option<String>,
    pub value: ArgValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    /// A quoted string, unquoted.
    Text(String),
    Number(String),
    /// A column or `model.column`.
    Ident(String),
    /// `[a, b]`: its items count as positional arguments.
    List(Vec<ArgValue>),
}

impl ArgValue {
    /// The value as SQL: a string literal, a number or a quoted identifier.
    pub fn sql(&self) -> String {
        match self {
            ArgValue::Text(t) => quote_str(t),
            ArgValue::Number(n) => n.clone(),
            ArgValue::Ident(i) => quote_ident(i),
            ArgValue::List(items) => items
                .iter()
                .map(ArgValue::sql)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn describe(&self) -> String {
        match self {
            ArgValue::Text(t) => format!("'{t}'"),
            ArgValue::Number(n) | ArgValue::Ident(n) => n.clone(),
            ArgValue::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(ArgValue::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// An audit as written in a header.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSpec {
    /// As written, e.g. `warn: unique(order_id)`.
    pub text: String,
    pub name: String,
    pub args: Vec<Arg>,
    /// `warn: `: reported, never blocking.
    pub warn: bool,
}

impl AuditSpec {
    /// The spec without its `warn: ` prefix, to name it in output.
    pub fn display(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| match &a.name {
                Some(n) => format!("{n} = {}", a.value.describe()),
                None => a.value.describe(),
            })
            .collect();
        format!("{}({})", self.name, args.join(", "))
    }

    fn positional(&self) -> Vec<&ArgValue> {
        self.args
            .iter()
            .filter(|a| a.name.is_none())
            .flat_map(|a| match &a.value {
                ArgValue::List(items) => items.iter().collect(),
                v => vec![v],
            })
            .collect()
    }

    fn named(&self, name: &str) -> Option<&ArgValue> {
        self.args
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .map(|a| &a.value)
    }
}

/// Parse `[warn: ]name(arg, name = arg, ...)`; the error says what is wrong.
pub fn parse(text: &str) -> Result<AuditSpec, String> {
    let mut rest = text.trim();
    let warn = match rest.strip_prefix("warn:") {
        Some(r) => {
            rest = r.trim_start();
            true
        }
        None => false,
    };
    let (name, args_text) = match rest.find('(') {
        Some(open) => {
            let Some(inner) = rest[open + 1..].strip_suffix(')') else {
                return Err("the arguments are not closed with `)`".into());
            };
            (rest[..open].trim(), Some(inner))
        }
        None => (rest, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`{name}` is not an audit name; write name(arguments), e.g. not_null(order_id)"
        ));
    }
    let mut args = Vec::new();
    if let Some(inner) = args_text {
        for part in split_args(inner)? {
            let part = part.trim();
            if part.is_empty() {
                return Err("an argument is empty".into());
            }
            let (arg_name, value) = match named_arg(part) {
                Some((n, v)) => (Some(n.to_string()), v.trim()),
                None => (None, part),
            };
            args.push(Arg {
                name: arg_name,
                value: parse_value(value)?,
            });
        }
    }
    Ok(AuditSpec {
        text: text.to_string(),
        name: name.to_string(),
        args,
        warn,
    })
}

/// `name = value` outside quotes (a comparison such as `a >= b` inside an
/// `expression` is quoted, so `=` here always names an argument).
fn named_arg(part: &str) -> Option<(&str, &str)> {
    if part.starts_with('\'') {
        return None;
    }
    let (n, v) = part.split_once('=')?;
    let n = n.trim();
    (!n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some((n, v))
}

fn split_args(inner: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut depth = 0usize;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if quoted && chars.peek() == Some(&'\'') => {
                current.push_str("''");
                chars.next();
            }
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            '[' if !quoted => {
                depth += 1;
                current.push(c);
            }
            ']' if !quoted => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ',' if !quoted && depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if quoted {
        return Err("a quoted argument is not closed".into());
    }
    if depth > 0 {
        return Err("a [list] is not closed".into());
    }
    if !current.trim().is_empty() || !parts.is_empty() {
        parts.push(current);
    }
    Ok(parts)
}

fn parse_value(v: &str) -> Result<ArgValue, String> {
    if let Some(inner) = v.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("`{v}` is not a closed [list]"))?;
        return split_args(inner)?
            .iter()
            .map(|item| parse_value(item.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(ArgValue::List);
    }
    if let Some(inner) = v.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| format!("`{v}` is not a closed 'string'"))?;
        return Ok(ArgValue::Text(inner.replace("''", "'")));
    }
    if v.parse::<f64>().is_ok() {
        return Ok(ArgValue::Number(v.to_string()));
    }
    let ident = v.trim_matches('"');
    if !ident.is_empty()
        && ident
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    {
        return Ok(ArgValue::Ident(ident.to_string()));
    }
    Err(format!(
        "`{v}` is neither a column, a number nor a 'string'"
    ))
}

/// What an audit needs to run, checked before any data is read.
fn check_args(spec: &AuditSpec, project: &Project) -> Result<(), String> {
    let pos = spec.positional();
    let all_idents = |vals: &[&ArgValue]| vals.iter().all(|v| matches!(v, ArgValue::Ident(_)));
    let no_named = || match spec.args.iter().find_map(|a| a.name.as_deref()) {
        Some(n) => Err(format!("{} takes no argument `{n}`", spec.name)),
        None => Ok(()),
    };
    match spec.name.as_str() {
        "not_null" | "unique" => {
            no_named()?;
            if pos.is_empty() || !all_idents(&pos) {
                return Err(format!(
                    "{} takes one or more columns, e.g. {}(order_id)",
                    spec.name, spec.name
                ));
            }
        }
        "accepted_values" => {
            no_named()?;
            if pos.len() < 2 || !matches!(pos[0], ArgValue::Ident(_)) {
                return Err(
                    "accepted_values takes a column and the values, e.g. accepted_values(status, 'paid', 'refunded')".into(),
                );
            }
        }
        "relationships" => {
            no_named()?;
            let ok = pos.len() == 2
                && matches!(pos[0], ArgValue::Ident(c) if !c.contains('.'))
                && matches!(pos[1], ArgValue::Ident(r) if r.split('.').count() == 2);
            if !ok {
                return Err(
                    "relationships takes a column and model.column, e.g. relationships(customer_id, dim_customers.customer_id)".into(),
                );
            }
            let ArgValue::Ident(target) = pos[1] else {
                unreachable!()
            };
            let model = target.split('.').next().unwrap_or_default();
            if !project
                .models
                .iter()
                .any(|m| m.name.eq_ignore_ascii_case(model))
            {
                let hint = did_you_mean(model, project.models.iter().map(|m| m.name.as_str()))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "relationships names `{model}`, which is not a model{hint}"
                ));
            }
        }
        "row_count" => {
            let unknown = spec
                .args
                .iter()
                .find(|a| !matches!(a.name.as_deref(), Some("min" | "max")));
            let numbers = ["min", "max"]
                .iter()
                .filter_map(|n| spec.named(n))
                .all(|v| matches!(v, ArgValue::Number(_)));
            if unknown.is_some() || spec.args.is_empty() || !numbers {
                return Err(
                    "row_count takes min = N and/or max = M, e.g. row_count(min = 1)".into(),
                );
            }
        }
        "range" => {
            let (col, min, max) = range_args(spec);
            let bounds_ok = [min, max]
                .iter()
                .flatten()
                .all(|v| !matches!(v, ArgValue::Ident(_)));
            if !matches!(col, Some(ArgValue::Ident(_)))
                || (min.is_none() && max.is_none())
                || !bounds_ok
            {
                return Err(
                    "range takes a column, a minimum and a maximum, e.g. range(amount, 0, 10000)"
                        .into(),
                );
            }
        }
        "expression" => {
            no_named()?;
            if pos.len() != 1 || !matches!(pos[0], ArgValue::Text(_)) {
                return Err(
                    "expression takes one quoted SQL condition, e.g. expression('amount >= 0')"
                        .into(),
                );
            }
        }
        custom => {
            if !custom_path(&project.root, custom).is_file() {
                let hint = did_you_mean(custom, BUILT_IN.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                return Err(format!(
                    "unknown audit `{custom}`: {hint}built-in audits are {}; a custom audit is a query in {AUDIT_DIR}/{custom}.sql",
                    BUILT_IN.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// `range(c, min, max)` or `range(c, min = .., max = ..)`.
fn range_args(spec: &AuditSpec) -> (Option<&ArgValue>, Option<&ArgValue>, Option<&ArgValue>) {
    let pos = spec.positional();
    (
        pos.first().copied(),
        spec.named("min").or(pos.get(1).copied()),
        spec.named("max").or(pos.get(2).copied()),
    )
}

pub fn custom_path(root: &Path, name: &str) -> std::path::PathBuf {
    root.join(AUDIT_DIR).join(format!("{name}.sql"))
}

/// The audits of a model, parsed; problems as diagnostics at the spec's place
/// in the header.
pub fn model_audits(
    project: &Project,
    file: &ModelFile,
) -> Result<Vec<AuditSpec>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for text in &file.config.audits {
        match parse(text).and_then(|spec| check_args(&spec, project).map(|()| spec)) {
            Ok(spec) => out.push(spec),
            Err(message) => {
                let location = spec_location(file, text);
                problems.push(
                    Diagnostic::error(Code::InvalidAudit, format!("audit \"{text}\": {message}"))
                        .at(location)
                        .with_help(
                            "audits are written name(arguments); prefix one with `warn: ` to report without blocking",
                        ),
                );
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Every model's audits checked (for `check` and before any build).
pub fn check_audits(project: &Project) -> Vec<Diagnostic> {
    project
        .models
        .iter()
        .filter_map(|m| model_audits(project, m).err())
        .flatten()
        .collect()
}

pub fn spec_location(file: &ModelFile, text: &str) -> Location {
    for quoted in [format!("\"{text}\""), format!("'{text}'")] {
        if let Some(off) = file.text.find(&quoted) {
            return Location::at_offset(&file.path, &file.text, off + 1, text.chars().count());
        }
    }
    Location::file(&file.path)
}

/// The relations and bounds an audit query is written against.
pub struct Target<'a> {
    /// The staged rows of the intervals just built.
    pub this: &'a str,
    /// `start`/`end` as SQL literals.
    pub start: String,
    pub end: String,
    /// The relation a `relationships` parent is read from in this run.
    pub parent: &'a dyn Fn(&str) -> Option<String>,
    /// Per unit, for `row_count` of incremental models: the unit expression
    /// over the time column and the starts of the units built, as SQL.
    pub units: Option<(String, Vec<String>)>,
}

/// The query returning the rows that violate `spec`.
pub fn violations_sql(spec: &AuditSpec, target: &Target, root: &Path) -> Result<String, String> {
    let this = target.this;
    let pos = spec.positional();
    let cols = || pos.iter().map(|v| v.sql()).collect::<Vec<_>>();
    Ok(match spec.name.as_str() {
        "not_null" => format!(
            "SELECT * FROM {this} WHERE {}",
            cols()
                .iter()
                .map(|c| format!("{c} IS NULL"))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
        "unique" => {
            let c = cols().join(", ");
            format!(
                "SELECT {c}, count(*) AS duplicates FROM {this} GROUP BY {c} HAVING count(*) > 1"
            )
        }
        "accepted_values" => format!(
            "SELECT * FROM {this} WHERE {} IS NOT NULL AND {} NOT IN ({})",
            pos[0].sql(),
            pos[0].sql(),
            pos[1..]
                .iter()
                .map(|v| v.sql())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "relationships" => {
            let ArgValue::Ident(target_ref) = pos[1] else {
                unreachable!("checked")
            };
            let (model, column) = target_ref.split_once('.').expect("checked");
            let parent = (target.parent)(model)
                .ok_or_else(|| format!("model `{model}` is not built yet"))?;
            format!(
                "SELECT * FROM {this} t WHERE t.{c} IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM {parent} p WHERE p.{pc} = t.{c})",
                c = pos[0].sql(),
                pc = quote_ident(column)
            )
        }
        "row_count" => {
            let cond = [("min", ">="), ("max", "<=")]
                .iter()
                .filter_map(|(n, op)| spec.named(n).map(|v| format!("n {op} {}", v.sql())))
                .collect::<Vec<_>>()
                .join(" AND ");
            match &target.units {
                Some((unit, starts)) if !starts.is_empty() => format!(
                    "SELECT * FROM (SELECT u.unit, coalesce(c.n, 0) AS n \
                     FROM (SELECT unnest([{}]) AS unit) u LEFT JOIN \
                     (SELECT {unit} AS unit, count(*) AS n FROM {this} GROUP BY 1) c \
                     ON c.unit = u.unit) WHERE NOT ({cond})",
                    starts.join(", ")
                ),
                _ => format!("SELECT n FROM (SELECT count(*) AS n FROM {this}) WHERE NOT ({cond})"),
            }
        }
        "range" => {
            let (col, min, max) = range_args(spec);
            let col = col.expect("checked").sql();
            let mut out = Vec::new();
            if let Some(m) = min {
                out.push(format!("{col} < {}", m.sql()));
            }
            if let Some(m) = max {
                out.push(format!("{col} > {}", m.sql()));
            }
            format!("SELECT * FROM {this} WHERE {}", out.join(" OR "))
        }
        "expression" => {
            let ArgValue::Text(cond) = pos[0] else {
                unreachable!("checked")
            };
            format!("SELECT * FROM {this} WHERE NOT ({cond})")
        }
        custom => {
            let path = custom_path(root, custom);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut env = minijinja::Environment::new();
            env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
            let mut ctx = std::collections::BTreeMap::new();
            ctx.insert(
                "this".to_string(),
                minijinja::Value::from_safe_string(this.to_string()),
            );
            ctx.insert(
                "start".to_string(),
                minijinja::Value::from_safe_string(target.start.clone()),
            );
            ctx.insert(
                "end".to_string(),
                minijinja::Value::from_safe_string(target.end.clone()),
            );
            let positional: Vec<minijinja::Value> = pos
                .iter()
                .map(|v| minijinja::Value::from_safe_string(v.sql()))
                .collect();
            ctx.insert("args".to_string(), minijinja::Value::from(positional));
            for a in &spec.args {
                if let Some(n) = &a.name {
                    ctx.insert(n.clone(), minijinja::Value::from_safe_string(a.value.sql()));
                }
            }
            let sql = env
                .render_str(&text, ctx)
                .map_err(|e| format!("{}: {e}", crate::diagnostics::display_path(&path)))?;
            let sql = sql.trim().trim_end_matches(';').to_string();
            format!("SELECT * FROM ({sql})")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positional_named_quoted_and_warn() {
        let s = parse("warn: accepted_values(status, 'it''s', 'b,c')").unwrap();
        assert!(s.warn);
        assert_eq!(s.name, "accepted_values");
        assert_eq!(
            s.args.iter().map(|a| a.value.clone()).collect::<Vec<_>>(),
            [
                ArgValue::Ident("status".into()),
                ArgValue::Text("it's".into()),
                ArgValue::Text("b,c".into())
            ]
        );
        let r = parse("row_count(min = 1, max = 10)").unwrap();
        assert_eq!(r.args[0].name.as_deref(), Some("min"));
        assert_eq!(r.display(), "row_count(min = 1, max = 10)");
        let e = parse("expression('a >= b')").unwrap();
        assert_eq!(e.args[0].value, ArgValue::Text("a >= b".into()));
        assert!(parse("unique(a").is_err());
        assert!(parse("not_null(a b)").is_err());
    }
}
