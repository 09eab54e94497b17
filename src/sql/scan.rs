//! A token-level reading of SQL the parser does not understand (DuckDB's PIVOT
//! and UNPIVOT statements, for instance): the tables it reads and a canonical
//! form, from sqlparser's tokenizer alone. It knows less than the parser: no
//! lineage, CTE scoping by name only. Callers use it only after DuckDB itself
//! accepted the SQL.

use sqlparser::dialect::DuckDbDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::position::LineIndex;
use super::{SqlError, SqlErrorKind, TableRef};

/// What a token-level reading finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Tables read, in order, one per occurrence (CTE names and table functions excluded).
    pub refs: Vec<TableRef>,
    /// The tokens without whitespace and comments, keywords upper case and
    /// identifiers lower case: stable under reformatting.
    pub canonical: String,
}

/// Statements that read data; anything else is refused as not a query.
const QUERY_STARTS: &[Keyword] = &[
    Keyword::SELECT,
    Keyword::WITH,
    Keyword::FROM,
    Keyword::PIVOT,
    Keyword::UNPIVOT,
    Keyword::VALUES,
    Keyword::TABLE,
];

/// Keywords after which a table name follows.
const TABLE_BEFORE: &[Keyword] = &[
    Keyword::FROM,
    Keyword::JOIN,
    Keyword::PIVOT,
    Keyword::UNPIVOT,
    Keyword::TABLE,
];

/// Read `sql` at the token level.
pub fn scan(sql: &str) -> Result<Scanned, SqlError> {
    let tokens = Tokenizer::new(&DuckDbDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError {
            kind: SqlErrorKind::Syntax,
            message: e.message.clone(),
            line: e.location.line as usize,
            column: e.location.column as usize,
        })?;
    let tokens: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let first = tokens.iter().find(|t| !matches!(t.token, Token::LParen));
    let Some(first) = first else {
        return Err(SqlError {
            kind: SqlErrorKind::Empty,
            message: "the SQL is empty: expected a SELECT query".to_string(),
            line: 1,
            column: 1,
        });
    };
    let starts_query = matches!(&first.token, Token::Word(w) if QUERY_STARTS.contains(&w.keyword));
    if !starts_query {
        return Err(SqlError {
            kind: SqlErrorKind::NotAQuery,
            message: format!(
                "expected a SELECT query, found a statement starting with {}",
                first.token
            ),
            line: first.span.start.line as usize,
            column: first.span.start.column as usize,
        });
    }
    let index = LineIndex::new(sql);
    let ctes = cte_names(&tokens);
    let mut refs = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_keyword =
            matches!(&tokens[i].token, Token::Word(w) if TABLE_BEFORE.contains(&w.keyword));
        i += 1;
        if !after_keyword {
            continue;
        }
        // `FROM a, b JOIN c`: a list of names, each with an optional alias.
        while let Some((parts, end)) = object_name(&tokens, i) {
            let is_function = matches!(tokens.get(end).map(|t| &t.token), Some(Token::LParen));
            let is_cte = parts.len() == 1 && ctes.contains(&parts[0].0.to_lowercase());
            if !is_function && !is_cte {
                let (first, last) = (tokens[i], tokens[end - 1]);
                if let (Some(start), Some(stop)) =
                    (index.offset(first.span.start), index.offset(last.span.end))
                {
                    refs.push(TableRef {
                        parts: parts.iter().map(|(p, _)| p.clone()).collect(),
                        line: first.span.start.line as usize,
                        column: first.span.start.column as usize,
                        start,
                        end: stop,
                        bare: skip_alias(&tokens, end) == end,
                    });
                }
            }
            i = skip_alias(&tokens, end);
            if !matches!(tokens.get(i).map(|t| &t.token), Some(Token::Comma)) {
                break;
            }
            i += 1;
        }
    }
    Ok(Scanned {
        refs,
        canonical: canonical(&tokens),
    })
}

/// `name` or `schema.name` starting at token `i`: the parts (with whether
/// each was quoted) and the index after it.
fn object_name(tokens: &[&TokenWithSpan], mut i: usize) -> Option<(Vec<(String, bool)>, usize)> {
    let mut parts = Vec::new();
    loop {
        match tokens.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) if w.quote_style.is_some() || !is_reserved(w.keyword) => {
                parts.push((w.value.clone(), w.quote_style.is_some()));
                i += 1;
            }
            _ => return None,
        }
        if matches!(tokens.get(i).map(|t| &t.token), Some(Token::Period)) {
            i += 1;
        } else {
            return Some((parts, i));
        }
    }
}

/// Keywords that cannot start a table name (so `FROM (SELECT ...)` and
/// `FROM LATERAL ...` are not read as tables).
fn is_reserved(k: Keyword) -> bool {
    matches!(
        k,
        Keyword::SELECT
            | Keyword::LATERAL
            | Keyword::WITH
            | Keyword::VALUES
            | Keyword::ON
            | Keyword::USING
            | Keyword::WHERE
            | Keyword::GROUP
            | Keyword::ORDER
    )
}

/// Skip an optional alias (`AS x`, `x`, `x(a, b)`).
fn skip_alias(tokens: &[&TokenWithSpan], mut i: usize) -> usize {
    if matches!(tokens.get(i).map(|t| &t.token), Some(Token::Word(w)) if w.keyword == Keyword::AS) {
        i += 1;
    }
    if matches!(tokens.get(i).map(|t| &t.token), Some(Token::Word(w)) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some())
    {
        i += 1;
        if matches!(tokens.get(i).map(|t| &t.token), Some(Token::LParen)) {
            let mut depth = 0;
            while let Some(t) = tokens.get(i) {
                match t.token {
                    Token::LParen => depth += 1,
                    Token::RParen => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
    }
    i
}

/// Names defined by `name AS (` or `name(cols) AS (` after WITH or a comma.
fn cte_names(tokens: &[&TokenWithSpan]) -> Vec<String> {
    let mut names = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let Token::Word(w) = &t.token else { continue };
        let before = i.checked_sub(1).map(|j| &tokens[j].token);
        let after_with = matches!(before, Some(Token::Word(b)) if b.keyword == Keyword::WITH || b.keyword == Keyword::RECURSIVE)
            || matches!(before, Some(Token::Comma));
        if !after_with {
            continue;
        }
        let mut j = i + 1;
        if matches!(tokens.get(j).map(|t| &t.token), Some(Token::LParen)) {
            while j < tokens.len() && !matches!(tokens[j].token, Token::RParen) {
                j += 1;
            }
            j += 1;
        }
        let is_as = matches!(tokens.get(j).map(|t| &t.token), Some(Token::Word(a)) if a.keyword == Keyword::AS);
        let then_paren = matches!(tokens.get(j + 1).map(|t| &t.token), Some(Token::LParen))
            || matches!(tokens.get(j + 1).map(|t| &t.token), Some(Token::Word(m)) if m.keyword == Keyword::MATERIALIZED || m.keyword == Keyword::NOT);
        if is_as && then_paren {
            names.push(w.value.to_lowercase());
        }
    }
    names
}

fn canonical(tokens: &[&TokenWithSpan]) -> String {
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        out.push(match &t.token {
            Token::Word(w) if w.quote_style.is_none() && w.keyword != Keyword::NoKeyword => {
                w.value.to_uppercase()
            }
            Token::Word(w) => w.value.to_lowercase(),
            other => other.to_string(),
        });
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        scan(sql).unwrap().refs.iter().map(|r| r.name()).collect()
    }

    #[test]
    fn pivot_and_unpivot_statements() {
        assert_eq!(
            names("PIVOT int_orders ON channel USING count(*) GROUP BY order_date"),
            ["int_orders"]
        );
        assert_eq!(
            names("UNPIVOT main.Monthly ON jan, feb INTO NAME month VALUE sales"),
            ["monthly"]
        );
        assert_eq!(
            names("WITH o AS (SELECT * FROM orders) PIVOT o ON channel USING sum(x)"),
            ["orders"]
        );
    }

    #[test]
    fn lists_joins_functions_and_subqueries() {
        assert_eq!(
            names(
                "FROM a, b AS x JOIN c ON a.id = c.id SELECT * LEFT JOIN read_csv('f.csv') f ON true"
            ),
            ["a", "b", "c"]
        );
        assert_eq!(
            names("SELECT * FROM (SELECT 1) s, LATERAL (SELECT * FROM t) u"),
            ["t"]
        );
    }

    #[test]
    fn canonical_ignores_layout_and_case() {
        let a = scan("pivot   Orders on channel\n using COUNT(*) -- note\n")
            .unwrap()
            .canonical;
        let b = scan("PIVOT orders ON channel USING count(*)")
            .unwrap()
            .canonical;
        assert_eq!(a, b);
    }

    #[test]
    fn spans_slice_the_reference() {
        let sql = "PIVOT  main.int_orders ON channel USING count(*)";
        let r = &scan(sql).unwrap().refs[0];
        assert_eq!(&sql[r.start..r.end], "main.int_orders");
    }

    #[test]
    fn ddl_is_not_a_query() {
        assert_eq!(
            scan("CREATE TABLE x AS SELECT 1").unwrap_err().kind,
            SqlErrorKind::NotAQuery
        );
    }
}
