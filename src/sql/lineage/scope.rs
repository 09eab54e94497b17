//! Relations and name resolution: which column a (possibly qualified) name denotes.

use sqlparser::ast::TableAlias;

use super::{Col, Lookup, Opaque, Rel, Res, Scope, Source, hash, upstream_col};

impl Rel {
    pub(super) fn lookup(&self, name: &str) -> Res<Lookup> {
        if let Some(cols) = &self.cols {
            let mut found = cols.iter().filter(|c| c.name == name);
            return match (found.next(), found.next()) {
                (None, _) => Ok(Lookup::Missing),
                (Some(c), None) => Ok(Lookup::Found(c.clone())),
                (Some(_), Some(_)) => Err(format!(
                    "column `{name}` is ambiguous: {} has more than one",
                    self.display
                )),
            };
        }
        match &self.opaque {
            Opaque::Upstream(table) => Ok(Lookup::Maybe(upstream_col(table, name))),
            Opaque::Function { id, inputs } => Ok(Lookup::Maybe(Col {
                name: name.to_string(),
                id: hash(&["function column", id, name]),
                inputs: inputs.clone(),
            })),
            Opaque::Unknown(reason) => Err(reason.clone()),
            Opaque::Partial { known, star, .. } => {
                let mut definite: Vec<Col> =
                    known.iter().filter(|c| c.name == name).cloned().collect();
                let mut maybe = Vec::new();
                for rel in star {
                    match rel.lookup(name)? {
                        Lookup::Found(c) => definite.push(c),
                        Lookup::Maybe(c) => maybe.push(c),
                        Lookup::Missing => {}
                    }
                }
                match (definite.len(), maybe.len()) {
                    (1, _) => Ok(Lookup::Found(definite.remove(0))),
                    (0, 1) => Ok(Lookup::Maybe(maybe.remove(0))),
                    (0, 0) => Ok(Lookup::Missing),
                    (0, _) => Err(format!(
                        "column `{name}` may come from any of {}, whose columns are not known yet",
                        star.iter()
                            .map(|r| r.display.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    _ => Err(format!("column `{name}` is ambiguous in {}", self.display)),
                }
            }
            Opaque::None => Ok(Lookup::Missing),
        }
    }

    pub(super) fn why_unknown(&self) -> String {
        match &self.opaque {
            Opaque::Unknown(reason) | Opaque::Partial { reason, .. } => reason.clone(),
            _ => format!("the columns of {} are not known yet", self.display),
        }
    }

    pub(super) fn known_cols(&self) -> Res<&Vec<Col>> {
        self.cols.as_ref().ok_or_else(|| self.why_unknown())
    }

    /// `t AS x(a, b)` / `WITH x(a, b) AS ...`: renames the first columns.
    pub(super) fn rename(&mut self, alias: Option<&TableAlias>) -> Res<()> {
        let Some(alias) = alias.filter(|a| !a.columns.is_empty()) else {
            return Ok(());
        };
        let names: Vec<String> = alias
            .columns
            .iter()
            .map(|c| c.name.value.to_lowercase())
            .collect();
        match (&mut self.cols, &self.opaque) {
            (Some(cols), _) => {
                if names.len() > cols.len() {
                    return Err(format!(
                        "{} has {} columns but {} column aliases",
                        self.display,
                        cols.len(),
                        names.len()
                    ));
                }
                for (col, name) in cols.iter_mut().zip(names) {
                    col.name = name;
                }
                Ok(())
            }
            // Columns of a table function are identified by the name used for them.
            (None, Opaque::Function { .. }) => Ok(()),
            (None, _) => Err(format!(
                "column aliases on {}, whose columns are not known yet",
                self.display
            )),
        }
    }
}

impl Source {
    pub(super) fn matches(&self, qualifier: &[String]) -> bool {
        match qualifier {
            [t] => self.binding.as_deref() == Some(t),
            [s, t] => {
                self.schema.as_deref() == Some(s.as_str()) && self.binding.as_deref() == Some(t)
            }
            _ => false,
        }
    }
}

impl<'p> Scope<'p> {
    pub(super) fn new(parent: Option<&'p Scope<'p>>) -> Self {
        Scope {
            sources: Vec::new(),
            using: Vec::new(),
            aliases: Vec::new(),
            alias_first: false,
            parent,
        }
    }

    pub(super) fn visible(&self) -> impl Iterator<Item = &Source> {
        self.sources.iter().filter(|s| !s.hidden)
    }

    /// Resolves a possibly qualified column reference (`c`, `t.c`, `s.t.c`, `c.field`...);
    /// returns the column and how many parts named it (the rest are struct fields).
    pub(super) fn column(&self, parts: &[String]) -> Res<(Col, usize)> {
        for k in (1..parts.len().min(3)).rev() {
            let (qualifier, column) = (&parts[..k], &parts[k]);
            let mut scope = Some(self);
            while let Some(s) = scope {
                let mut matching = s.visible().filter(|src| src.matches(qualifier));
                if let Some(src) = matching.next() {
                    if matching.next().is_some() {
                        return Err(format!("table `{}` is ambiguous", qualifier.join(".")));
                    }
                    return match src.rel.lookup(column)? {
                        Lookup::Found(c) | Lookup::Maybe(c) => Ok((c, k + 1)),
                        Lookup::Missing => Err(format!(
                            "column `{}` not found in {}",
                            column, src.rel.display
                        )),
                    };
                }
                scope = s.parent;
            }
        }
        Ok((self.unqualified(&parts[0], true)?, 1))
    }

    fn unqualified(&self, name: &str, with_aliases: bool) -> Res<Col> {
        if let Some(c) = self.using.iter().find(|c| c.name == name) {
            return Ok(c.clone());
        }
        let alias = if with_aliases {
            self.aliases.iter().find(|c| c.name == name)
        } else {
            None
        };
        if self.alias_first
            && let Some(a) = alias
        {
            return Ok(a.clone());
        }
        let (definite, maybe) = candidates(self.visible(), name)?;
        if definite.len() > 1 {
            return Err(format!(
                "column `{name}` is ambiguous: it is in {}",
                names_of(&definite)
            ));
        }
        // With one certain match, a valid query cannot also have it in a source whose
        // columns are unknown.
        if let Some((_, c)) = definite.into_iter().next() {
            return Ok(c);
        }
        match maybe.len() {
            0 => {
                if let Some(a) = alias {
                    return Ok(a.clone());
                }
                match self.parent {
                    Some(p) => p.unqualified(name, false),
                    None => Err(format!("column `{name}` not found in any source")),
                }
            }
            1 => {
                let (src, col) = maybe.into_iter().next().expect("one candidate");
                if alias.is_some() {
                    return Err(format!(
                        "`{name}` is a select-list alias and may also be a column of {src}, \
                         whose columns are not known yet"
                    ));
                }
                if self.parent.is_some_and(|p| p.certainly_has(name)) {
                    return Err(format!(
                        "column `{name}` may come from {src}, whose columns are not known \
                         yet, or from the enclosing query"
                    ));
                }
                Ok(col)
            }
            _ => Err(format!(
                "column `{name}` may come from any of {}, whose columns are not known yet",
                names_of(&maybe)
            )),
        }
    }

    fn certainly_has(&self, name: &str) -> bool {
        self.using.iter().any(|c| c.name == name)
            || self
                .visible()
                .any(|s| matches!(s.rel.lookup(name), Ok(Lookup::Found(_))))
            || self.parent.is_some_and(|p| p.certainly_has(name))
    }
}

pub(super) type Candidates = Vec<(String, Col)>;

/// Sources that certainly have column `name`, and sources that may have it.
pub(super) fn candidates<'a>(
    sources: impl Iterator<Item = &'a Source>,
    name: &str,
) -> Res<(Candidates, Candidates)> {
    let (mut definite, mut maybe) = (Vec::new(), Vec::new());
    for src in sources {
        match src.rel.lookup(name)? {
            Lookup::Found(c) => definite.push((src.rel.display.clone(), c)),
            Lookup::Maybe(c) => maybe.push((src.rel.display.clone(), c)),
            Lookup::Missing => {}
        }
    }
    Ok((definite, maybe))
}

fn names_of(candidates: &[(String, Col)]) -> String {
    candidates
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
