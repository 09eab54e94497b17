//! sqlparser locations (1-based line, 1-based column counted in characters) to byte
//! offsets in the SQL text.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
use sqlparser::tokenizer::Location;

use super::TableRef;

pub(crate) struct LineIndex<'a> {
    sql: &'a str,
    /// Byte offset where each line starts; sqlparser counts lines by '\n' only.
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(sql: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { sql, line_starts }
    }

    /// The byte offset of `loc`; a column one past the end of its line is the line's end.
    pub(crate) fn offset(&self, loc: Location) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(line)?;
        let end = self
            .line_starts
            .get(line + 1)
            .map_or(self.sql.len(), |next| next - 1);
        let text = &self.sql[start..end];
        match text.char_indices().nth(column) {
            Some((i, _)) => Some(start + i),
            None if text.chars().count() == column => Some(end),
            None => None,
        }
    }

    /// A reference built from identifiers (an object name, or `TABLE schema.name`).
    pub(crate) fn table_ref(&self, idents: &[&Ident], bare: bool) -> Option<TableRef> {
        let (first, last) = (idents.first()?, idents.last()?);
        let start = self.offset(first.span.start)?;
        let end = self.offset(last.span.end)?;
        (start < end).then(|| TableRef {
            parts: idents.iter().map(|i| i.value.clone()).collect(),
            line: first.span.start.line as usize,
            column: first.span.start.column as usize,
            start,
            end,
            bare,
        })
    }
}

/// The identifiers of a plain object name; None when a part is computed by a function.
pub(crate) fn object_idents(name: &ObjectName) -> Option<Vec<&Ident>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i),
            _ => None,
        })
        .collect()
}
