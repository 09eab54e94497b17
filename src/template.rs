//! Templating: minijinja with strict undefined, project macros, `[vars]` and the
//! batch window as SQL literals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use crate::diagnostics::{Code, Diagnostic, Location, did_you_mean};
use crate::interval::Unit;
use crate::project::MacroFile;

/// The half-open batch window a model is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    /// Hourly models get TIMESTAMP literals, every other model DATE literals.
    pub hourly: bool,
}

impl Window {
    pub fn new(start: NaiveDateTime, end: NaiveDateTime, unit: Option<Unit>) -> Self {
        Window {
            start,
            end,
            hourly: unit == Some(Unit::Hour),
        }
    }

    /// The fixed window used to render models for analysis and fingerprinting, so
    /// that neither depends on the dates being built.
    pub fn analysis() -> Self {
        let day = |d| {
            chrono::NaiveDate::from_ymd_opt(1970, 1, d)
                .expect("valid date")
                .and_hms_opt(0, 0, 0)
                .expect("valid time")
        };
        Window {
            start: day(1),
            end: day(2),
            hourly: false,
        }
    }

    pub fn literal(&self, t: NaiveDateTime) -> String {
        if self.hourly {
            format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S"))
        } else {
            format!("DATE '{}'", t.format("%Y-%m-%d"))
        }
    }
}

/// A macro defined in `macros/`.
#[derive(Debug, Clone)]
pub struct MacroDef {
    pub file: PathBuf,
    /// The macro's own source, from `{% macro` to `{% endmacro %}`.
    pub source: String,
}

/// The template environment of a project, shared by every render.
pub struct Templates {
    env: Environment<'static>,
    macros: BTreeMap<String, MacroDef>,
    /// Macro names per macro file, for the import prefix.
    files: Vec<(String, Vec<String>)>,
    vars: BTreeMap<String, serde_json::Value>,
}

/// What a model's template uses, found statically so that it does not depend on
/// which branch a render took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub vars: BTreeSet<String>,
    pub macros: BTreeSet<String>,
}

impl Templates {
    pub fn new(
        macro_files: &[MacroFile],
        vars: BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .expect("default delimiters"),
        );
        let mut macros = BTreeMap::new();
        let mut files = Vec::new();
        let mut problems = Vec::new();
        for file in macro_files {
            let name = template_name(&file.path);
            if let Err(e) = env.add_template_owned(name.clone(), file.text.clone()) {
                problems.push(template_diagnostic(&e, &file.path, &file.text, 0, &[]));
                continue;
            }
            let defs = scan_macros(&file.text);
            let names: Vec<String> = defs.iter().map(|(n, _)| n.clone()).collect();
            for (n, source) in defs {
                macros.insert(
                    n,
                    MacroDef {
                        file: file.path.clone(),
                        source,
                    },
                );
            }
            files.push((name, names));
        }
        let known_vars = vars.clone();
        env.add_function("var", move |name: String, default: Option<Value>| -> Result<Value, Error> {
            match known_vars.get(&name) {
                Some(v) => Ok(Value::from(minijinja::value::Serde(v))),
                None => match default {
                    Some(d) => Ok(d),
                    None => {
                        let hint = did_you_mean(&name, known_vars.keys().map(String::as_str))
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        Err(Error::new(
                            ErrorKind::UndefinedError,
                            format!("unknown var `{name}`: it is not in [vars] of hubforge.toml{hint}"),
                        ))
                    }
                },
            }
        });
        if problems.is_empty() {
            Ok(Templates {
                env,
                macros,
                files,
                vars,
            })
        } else {
            Err(problems)
        }
    }

    pub fn macro_def(&self, name: &str) -> Option<&MacroDef> {
        self.macros.get(name)
    }

    /// Every macro's name, sorted.
    pub fn macro_names(&self) -> impl Iterator<Item = &str> {
        self.macros.keys().map(String::as_str)
    }

    /// Every var with its value, sorted by name.
    pub fn vars(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.vars
    }

    pub fn var_value(&self, name: &str) -> Option<&serde_json::Value> {
        self.vars.get(name)
    }

    /// The vars and macros a template uses, including those used by the macros it
    /// calls, transitively.
    pub fn usage(&self, body: &str) -> Usage {
        let mut usage = Usage::default();
        let mut todo = vec![body.to_string()];
        while let Some(text) = todo.pop() {
            usage.vars.extend(scan_var_calls(&text));
            for name in self.macros.keys() {
                if mentions(&text, name) && usage.macros.insert(name.clone()) {
                    todo.push(self.macros[name].source.clone());
                }
            }
        }
        usage
    }

    /// Render a model's template body for `window`.
    pub fn render(
        &self,
        path: &Path,
        file_text: &str,
        body: &str,
        window: &Window,
    ) -> Result<String, Diagnostic> {
        // Import the macros the body mentions. The prefix has no newline, so
        // lines of the rendered template are the lines of the file.
        let mut prefix = String::new();
        for (file, names) in &self.files {
            let used: Vec<&str> = names
                .iter()
                .filter(|n| mentions(body, n))
                .map(String::as_str)
                .collect();
            if !used.is_empty() {
                prefix.push_str(&format!("{{% from {file:?} import {} %}}", used.join(", ")));
            }
        }
        let source = format!("{prefix}{body}");
        let name = template_name(path);
        let ctx = minijinja::context! {
            start => Value::from_safe_string(window.literal(window.start)),
            end => Value::from_safe_string(window.literal(window.end)),
        };
        let known: Vec<&str> = ["start", "end", "var"]
            .into_iter()
            .chain(self.macros.keys().map(String::as_str))
            .collect();
        self.env
            .template_from_named_str(&name, &source)
            .and_then(|t| t.render(ctx))
            .map_err(|e| {
                let in_macro = e
                    .name()
                    .filter(|n| *n != name)
                    .and_then(|n| self.macro_file(n));
                match in_macro {
                    Some(file) => template_diagnostic(&e, &file.path, &file.text, 0, &known),
                    None => template_diagnostic(&e, path, file_text, prefix.len(), &known),
                }
            })
    }

    fn macro_file(&self, template: &str) -> Option<MacroFile> {
        let (file, _) = self.files.iter().find(|(f, _)| f == template)?;
        let def = self
            .macros
            .values()
            .find(|d| template_name(&d.file) == *file)?;
        let text = self.env.get_template(file).ok()?.source().to_string();
        Some(MacroFile {
            path: def.file.clone(),
            text,
        })
    }
}

fn template_name(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// Turn a minijinja error into a diagnostic at the file position it points to.
/// `prefix_len` bytes at the start of the rendered source are not in the file.
fn template_diagnostic(
    e: &Error,
    path: &Path,
    file_text: &str,
    prefix_len: usize,
    known: &[&str],
) -> Diagnostic {
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    let range = e
        .range()
        .map(|r| r.start.saturating_sub(prefix_len)..r.end.saturating_sub(prefix_len));
    let location = match (&range, e.line()) {
        (Some(r), _) if r.end <= file_text.len() && r.start < r.end => {
            let width = file_text[r.clone()]
                .lines()
                .next()
                .map_or(1, |l| l.chars().count());
            Location::at_offset(path, file_text, r.start, width)
        }
        (_, Some(line)) => Location::in_text(path, file_text, line, 1, 1),
        _ => Location::file(path),
    };
    let snippet = range
        .as_ref()
        .and_then(|r| file_text.get(r.clone()))
        .unwrap_or("");
    match e.kind() {
        ErrorKind::UndefinedError if detail.starts_with("unknown var") => {
            Diagnostic::error(Code::TemplateUndefined, detail)
                .at(location)
                .with_help("add it under [vars] in hubforge.toml, pass --var name=value, or give a default: var(\"name\", default)")
        }
        ErrorKind::UndefinedError => {
            let ident = snippet.split(|c: char| !(c.is_alphanumeric() || c == '_')).find(|s| !s.is_empty()).unwrap_or(snippet);
            let help = match did_you_mean(ident, known.iter().copied()) {
                Some(s) if s != ident => format!("did you mean `{s}`?"),
                _ => format!(
                    "templates know: {}; read project vars with var(\"name\")",
                    known.join(", ")
                ),
            };
            let message = if ident.is_empty() {
                format!("undefined value in template: {detail}")
            } else {
                format!("undefined template variable `{ident}`")
            };
            Diagnostic::error(Code::TemplateUndefined, message).at(location).with_help(help)
        }
        ErrorKind::SyntaxError => Diagnostic::error(Code::TemplateSyntax, format!("template syntax error: {detail}"))
            .at(location)
            .with_help("see https://docs.rs/minijinja for the template syntax"),
        _ => Diagnostic::error(Code::TemplateError, format!("template error: {detail}")).at(location),
    }
}

/// `{% macro name(...) %} ... {% endmacro %}` definitions in a macro file.
fn scan_macros(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(open) = text[pos..].find("{%").map(|i| pos + i) {
        let after = text[open + 2..].trim_start_matches(['-', '+']).trim_start();
        pos = open + 2;
        let Some(rest) = after.strip_prefix("macro") else {
            continue;
        };
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let rest = rest.trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        let end = find_endmacro(text, pos).unwrap_or(text.len());
        out.push((name, text[open..end].to_string()));
        pos = end.max(pos);
    }
    out
}

fn find_endmacro(text: &str, from: usize) -> Option<usize> {
    let mut pos = from;
    while let Some(open) = text[pos..].find("{%").map(|i| pos + i) {
        let close = text[open..].find("%}").map(|i| open + i + 2)?;
        let inner = text[open + 2..close - 2].trim_matches(['-', '+', ' ', '\t', '\n', '\r']);
        if inner == "endmacro" || inner.starts_with("endmacro ") {
            return Some(close);
        }
        pos = close;
    }
    None
}

/// Names passed as string literals to `var(...)`.
fn scan_var_calls(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut pos = 0;
    while let Some(i) = text[pos..].find("var(").map(|i| pos + i) {
        pos = i + 4;
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
            continue;
        }
        let args = text[pos..].trim_start();
        let Some(quote) = args.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(end) = args[1..].find(quote) {
            out.insert(args[1..1 + end].to_string());
        }
    }
    out
}

/// Whether `text` contains `name` as a whole identifier.
fn mentions(text: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(macros: &str, vars: &[(&str, serde_json::Value)]) -> Templates {
        let files = vec![MacroFile {
            path: PathBuf::from("macros/money.sql"),
            text: macros.to_string(),
        }];
        Templates::new(
            &files,
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
        .unwrap()
    }

    fn window() -> Window {
        let t = |d| {
            chrono::NaiveDate::from_ymd_opt(2025, 3, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
        };
        Window::new(t(1), t(2), Some(Unit::Day))
    }

    #[test]
    fn renders_window_vars_and_macros() {
        let t = templates(
            "{% macro cents(col) %}({{ col }} / 100.0){% endmacro %}",
            &[("vat", serde_json::json!(0.2))],
        );
        let body = "SELECT {{ cents('x') }} * {{ var('vat') }} FROM t WHERE d >= {{ start }} AND d < {{ end }}";
        let sql = t
            .render(Path::new("models/m.sql"), body, body, &window())
            .unwrap();
        assert_eq!(
            sql,
            "SELECT (x / 100.0) * 0.2 FROM t WHERE d >= DATE '2025-03-01' AND d < DATE '2025-03-02'"
        );
        let usage = t.usage(body);
        assert_eq!(usage.vars, BTreeSet::from(["vat".to_string()]));
        assert_eq!(usage.macros, BTreeSet::from(["cents".to_string()]));
    }

    #[test]
    fn undefined_variable_points_at_its_line() {
        let t = templates("", &[]);
        let body = "SELECT 1\nFROM t\nWHERE d >= {{ strat }}";
        let d = t
            .render(Path::new("models/m.sql"), body, body, &window())
            .unwrap_err();
        assert_eq!(d.code, Code::TemplateUndefined);
        assert_eq!(d.message, "undefined template variable `strat`");
        let loc = d.location.unwrap();
        assert_eq!((loc.line, loc.column), (3, 15));
        assert_eq!(d.help.as_deref(), Some("did you mean `start`?"));
    }

    #[test]
    fn unknown_var_suggests_a_known_one() {
        let t = templates("", &[("vat_rate", serde_json::json!(0.2))]);
        let body = "SELECT {{ var('vat_rat') }}";
        let d = t
            .render(Path::new("models/m.sql"), body, body, &window())
            .unwrap_err();
        assert!(
            d.message.contains("did you mean `vat_rate`?"),
            "{}",
            d.message
        );
    }

    #[test]
    fn hourly_windows_render_timestamps() {
        let t = |h| {
            chrono::NaiveDate::from_ymd_opt(2025, 3, 1)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap()
        };
        let w = Window::new(t(1), t(2), Some(Unit::Hour));
        assert_eq!(w.literal(w.start), "TIMESTAMP '2025-03-01 01:00:00'");
    }
}
