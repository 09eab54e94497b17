//! The one diagnostic type every stage reports input problems with.
//!
//! A diagnostic has a stable code, a message, a location (file, line, column) with
//! the source line it points into, and a help line. It renders for humans as a
//! snippet with a caret under the spot, and as JSON with the same content.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Stable diagnostic codes. The number never changes meaning once released;
/// the name is the same thing in words, for JSON consumers and search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    ProjectNotFound,
    ConfigSyntax,
    ConfigUnknownKey,
    ConfigInvalid,
    FileRead,
    NotUtf8,
    EmptyModel,
    HeaderSyntax,
    HeaderUnknownKey,
    HeaderInvalid,
    DuplicateName,
    TemplateSyntax,
    TemplateUndefined,
    TemplateError,
    SqlSyntax,
    NotAQuery,
    MultipleStatements,
    UnknownReference,
    ModelRejected,
    Untranslatable,
    Cycle,
    SelfReference,
    InvalidSelector,
    UnknownDestinationProduct,
    InvalidArgument,
    SourceMissing,
    SourceUnreadable,
    SourceBadRows,
    SchemaDrift,
    InvalidAudit,
    AuditFailed,
    ThresholdBreached,
}

impl Code {
    /// The code as printed: `HF` and three digits, grouped by stage.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ProjectNotFound => "HF001",
            Code::ConfigSyntax => "HF002",
            Code::ConfigUnknownKey => "HF003",
            Code::ConfigInvalid => "HF004",
            Code::FileRead => "HF010",
            Code::NotUtf8 => "HF011",
            Code::EmptyModel => "HF012",
            Code::HeaderSyntax => "HF013",
            Code::HeaderUnknownKey => "HF014",
            Code::HeaderInvalid => "HF015",
            Code::DuplicateName => "HF016",
            Code::TemplateSyntax => "HF020",
            Code::TemplateUndefined => "HF021",
            Code::TemplateError => "HF022",
            Code::SqlSyntax => "HF030",
            Code::NotAQuery => "HF031",
            Code::MultipleStatements => "HF032",
            Code::UnknownReference => "HF040",
            Code::ModelRejected => "HF033",
            Code::Untranslatable => "HF034",
            Code::Cycle => "HF041",
            Code::SelfReference => "HF042",
            Code::UnknownDestinationProduct => "HF043",
            Code::InvalidSelector => "HF050",
            Code::InvalidArgument => "HF051",
            Code::SourceMissing => "HF060",
            Code::SourceUnreadable => "HF061",
            Code::SourceBadRows => "HF062",
            Code::SchemaDrift => "HF063",
            Code::InvalidAudit => "HF070",
            Code::AuditFailed => "HF071",
            Code::ThresholdBreached => "HF072",
        }
    }

    /// The code's name in kebab case.
    pub fn name(self) -> &'static str {
        match self {
            Code::ProjectNotFound => "project-not-found",
            Code::ConfigSyntax => "config-syntax",
            Code::ConfigUnknownKey => "config-unknown-key",
            Code::ConfigInvalid => "config-invalid",
            Code::FileRead => "file-read",
            Code::NotUtf8 => "not-utf8",
            Code::EmptyModel => "empty-model",
            Code::HeaderSyntax => "header-syntax",
            Code::HeaderUnknownKey => "header-unknown-key",
            Code::HeaderInvalid => "header-invalid",
            Code::DuplicateName => "duplicate-name",
            Code::TemplateSyntax => "template-syntax",
            Code::TemplateUndefined => "template-undefined",
            Code::TemplateError => "template-error",
            Code::SqlSyntax => "sql-syntax",
            Code::NotAQuery => "not-a-query",
            Code::MultipleStatements => "multiple-statements",
            Code::UnknownReference => "unknown-reference",
            Code::ModelRejected => "model-rejected",
            Code::Untranslatable => "untranslatable",
            Code::Cycle => "cycle",
            Code::SelfReference => "self-reference",
            Code::UnknownDestinationProduct => "unknown-destination-product",
            Code::InvalidSelector => "invalid-selector",
            Code::InvalidArgument => "invalid-argument",
            Code::SourceMissing => "source-missing",
            Code::SourceUnreadable => "source-unreadable",
            Code::SourceBadRows => "source-bad-rows",
            Code::SchemaDrift => "schema-drift",
            Code::InvalidAudit => "invalid-audit",
            Code::AuditFailed => "audit-failed",
            Code::ThresholdBreached => "threshold-breached",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where a diagnostic points: a file relative to the project root, a 1-based line
/// and column, the width of the marked span, and the text of that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub width: usize,
    pub source_line: Option<String>,
}

impl Location {
    /// A location in `file` at `line:column` (1-based), with the line's text taken from `text`.
    pub fn in_text(
        file: impl Into<PathBuf>,
        text: &str,
        line: usize,
        column: usize,
        width: usize,
    ) -> Self {
        let source_line = line
            .checked_sub(1)
            .and_then(|i| text.lines().nth(i))
            .map(|l| l.trim_end_matches('\r').to_string());
        Location {
            file: file.into(),
            line,
            column: column.max(1),
            width: width.max(1),
            source_line,
        }
    }

    /// A location given as a byte offset into `text`.
    pub fn at_offset(file: impl Into<PathBuf>, text: &str, offset: usize, width: usize) -> Self {
        let (line, column) = line_col(text, offset);
        Location::in_text(file, text, line, column, width)
    }

    /// A whole file without a position inside it.
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Location {
            file: file.into(),
            line: 0,
            column: 0,
            width: 0,
            source_line: None,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One problem found in the user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub location: Option<Box<Location>>,
    pub help: Option<String>,
    /// Further lines shown after the snippet (for instance every step of a cycle).
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            location: None,
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(Box::new(location));
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The human rendering: header line, location arrow, snippet with caret, notes, help.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{severity}[{}]: {}", self.code.as_str(), self.message);
        if let Some(loc) = &self.location {
            let file = display_path(&loc.file);
            if loc.line == 0 {
                let _ = writeln!(out, "  --> {file}");
            } else {
                let gutter = loc.line.to_string().len();
                let pad = " ".repeat(gutter);
                let _ = writeln!(out, "{pad}--> {file}:{}:{}", loc.line, loc.column);
                if let Some(src) = &loc.source_line {
                    let src = src.replace('\t', "    ");
                    let _ = writeln!(out, "{pad} |");
                    let _ = writeln!(out, "{} | {}", loc.line, src);
                    let indent: String = src.chars().take(loc.column - 1).map(|_| ' ').collect();
                    let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(loc.width));
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "   = note: {note}");
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "   = help: {help}");
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let loc = self.location.as_ref();
        serde_json::json!({
            "code": self.code.as_str(),
            "name": self.code.name(),
            "severity": self.severity,
            "message": self.message,
            "file": loc.map(|l| display_path(&l.file)),
            "line": loc.filter(|l| l.line > 0).map(|l| l.line),
            "column": loc.filter(|l| l.line > 0).map(|l| l.column),
            "snippet": loc.and_then(|l| l.source_line.clone()),
            "help": self.help,
            "notes": self.notes,
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Paths are shown with forward slashes so output is the same on every platform.
pub fn display_path(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// A list of diagnostics, as returned by stages that report every problem they find.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(other);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorted by file, line and column so output is deterministic.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| {
            let key = |d: &Diagnostic| {
                d.location
                    .as_ref()
                    .map(|l| (l.file.clone(), l.line, l.column))
            };
            key(a)
                .cmp(&key(b))
                .then(a.code.cmp(&b.code))
                .then(a.message.cmp(&b.message))
        });
        self
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.render());
            out.push('\n');
        }
        let errors = self.0.iter().filter(|d| d.is_error()).count();
        let warnings = self.0.len() - errors;
        match (errors, warnings) {
            (0, 0) => {}
            (e, 0) => {
                let _ = writeln!(out, "{e} error{}", plural(e));
            }
            (e, w) => {
                let _ = writeln!(out, "{e} error{}, {w} warning{}", plural(e), plural(w));
            }
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "diagnostics": self.0.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
        })
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The known name closest to `name` (case-insensitive), when close enough to be a
/// likely typo: a few edits away (a transposition counts as one), or very similar.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let max_edits = (lower.chars().count() / 3).max(1);
    let mut best: Option<(usize, std::cmp::Reverse<u64>, &'a str)> = None;
    for c in candidates {
        let other = c.to_lowercase();
        let edits = strsim::damerau_levenshtein(&lower, &other);
        let similarity = strsim::jaro_winkler(&lower, &other);
        if edits > max_edits && similarity < 0.9 {
            continue;
        }
        let key = (edits, std::cmp::Reverse((similarity * 1e6) as u64), c);
        if best.is_none_or(|b| key < b) {
            best = Some(key);
        }
    }
    best.map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_snippet_with_caret_under_the_column() {
        let text = "SELECT *\nFROM stg_ordrs o\n";
        let d = Diagnostic::error(Code::UnknownReference, "unknown reference `stg_ordrs`")
            .at(Location::in_text("models/a.sql", text, 2, 6, 9))
            .with_help("did you mean `stg_orders`?");
        assert_eq!(
            d.render(),
            "error[HF040]: unknown reference `stg_ordrs`\n --> models/a.sql:2:6\n  |\n2 | FROM stg_ordrs o\n  |      ^^^^^^^^^\n   = help: did you mean `stg_orders`?\n"
        );
    }

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let text = "SELECT 'é'\nFROM x";
        assert_eq!(line_col(text, text.find("x").unwrap()), (2, 6));
        assert_eq!(line_col(text, 8), (1, 9));
    }

    #[test]
    fn did_you_mean_finds_close_names_only() {
        let names = ["stg_orders", "stg_payments", "customers"];
        assert_eq!(did_you_mean("stg_ordrs", names), Some("stg_orders"));
        assert_eq!(did_you_mean("STG_ORDERS", names), Some("stg_orders"));
        assert_eq!(did_you_mean("zzz", names), None);
    }
}
