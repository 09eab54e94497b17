//! The names SQL text mentions, found by a small lexer of its own: every
//! identifier chain (`t`, `s.t`, `"d".s."t"`) outside string literals and
//! comments. `hubforge impact` uses it to over-approximate what a model reads
//! without parsing it: sqlparser's tokenizer costs hundreds of instructions per
//! byte, this lexer a few.
//!
//! It follows the tokenizer of hubforge's parser in DuckDB's dialect: `--` and
//! nested `/* */` comments, `'...'` strings with `''` escapes, `"..."` and
//! `` `...` `` identifiers with doubled-quote escapes, `$$...$$` and
//! `$tag$...$tag$` strings. Where the two could disagree about what is code (an
//! unterminated string or comment, a backslash in a string, which DuckDB reads
//! as an escape in `E'...'`), it refuses the text rather than guess, and callers
//! analyse the model fully.

use std::borrow::Cow;

/// Text the lexer cannot read with certainty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unscannable;

/// Calls `visit` with the parts of every identifier chain in `sql`, quotes
/// removed and escapes undone, case as written. Whitespace and comments may
/// stand around the dots. A string literal right after `FROM` or `JOIN` is
/// passed as a one-part chain too: DuckDB reads `FROM 'x'` as a table named `x`.
pub fn identifier_chains<'a>(
    sql: &'a str,
    visit: &mut dyn FnMut(&[Cow<'a, str>]),
) -> Result<(), Unscannable> {
    let b = sql.as_bytes();
    let mut chain: Vec<Cow<'a, str>> = Vec::new();
    // A dot followed the chain's last part: the next identifier continues it.
    let mut after_dot = false;
    // The last token was the keyword FROM or JOIN.
    let mut after_from = false;
    let mut i = 0;
    fn end<'a>(chain: &mut Vec<Cow<'a, str>>, visit: &mut dyn FnMut(&[Cow<'a, str>])) {
        if !chain.is_empty() {
            visit(chain);
            chain.clear();
        }
    }
    while i < b.len() {
        let c = b[i];
        // Whitespace and comments keep the chain and FROM open.
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = block_comment_end(b, i + 2)?;
                continue;
            }
            _ => {}
        }
        let from = std::mem::take(&mut after_from);
        match c {
            b'\'' => {
                end(&mut chain, visit);
                let close = quoted_end(b, i + 1, b'\'')?;
                let body = &sql[i + 1..close];
                if body.contains('\\') {
                    return Err(Unscannable);
                }
                if from {
                    visit(&[unescape(body, "''", "'")]);
                }
                i = close + 1;
            }
            b'"' | b'`' => {
                let close = quoted_end(b, i + 1, c)?;
                let body = &sql[i + 1..close];
                let part = if c == b'"' {
                    unescape(body, "\"\"", "\"")
                } else {
                    unescape(body, "``", "`")
                };
                push_part(&mut chain, &mut after_dot, part, visit);
                i = close + 1;
            }
            b'$' => {
                end(&mut chain, visit);
                i = dollar_end(sql, i)?;
            }
            b'.' => {
                if chain.is_empty() || after_dot {
                    end(&mut chain, visit);
                } else {
                    after_dot = true;
                }
                i += 1;
            }
            b'0'..=b'9' => {
                end(&mut chain, visit);
                i += b[i..].iter().take_while(|x| x.is_ascii_digit()).count();
            }
            _ => {
                let start = i;
                let (first, len) = char_at(sql, i);
                if first.is_alphabetic() || first == '_' {
                    i += len;
                    // ASCII a byte at a time; other letters a char at a time.
                    while i < b.len() {
                        let x = b[i];
                        if x.is_ascii_alphanumeric() || x == b'_' || x == b'$' {
                            i += 1;
                        } else if x.is_ascii() {
                            break;
                        } else {
                            let (ch, len) = char_at(sql, i);
                            if !ch.is_alphabetic() {
                                break;
                            }
                            i += len;
                        }
                    }
                }
                if i == start {
                    let (ch, len) = char_at(sql, i);
                    i += len;
                    if ch.is_whitespace() {
                        // Whitespace beyond ASCII: it too keeps the chain open.
                        after_from = from;
                    } else {
                        // An operator, a parenthesis, a comma.
                        end(&mut chain, visit);
                    }
                } else {
                    let word = &sql[start..i];
                    after_from =
                        word.eq_ignore_ascii_case("from") || word.eq_ignore_ascii_case("join");
                    push_part(&mut chain, &mut after_dot, Cow::Borrowed(word), visit);
                }
            }
        }
    }
    end(&mut chain, visit);
    Ok(())
}

/// Add an identifier: it continues the chain after a dot, else starts a new one.
fn push_part<'a>(
    chain: &mut Vec<Cow<'a, str>>,
    after_dot: &mut bool,
    part: Cow<'a, str>,
    visit: &mut dyn FnMut(&[Cow<'a, str>]),
) {
    if !*after_dot && !chain.is_empty() {
        visit(chain);
        chain.clear();
    }
    *after_dot = false;
    chain.push(part);
}

fn char_at(sql: &str, i: usize) -> (char, usize) {
    let b = sql.as_bytes()[i];
    if b.is_ascii() {
        (b as char, 1)
    } else {
        let ch = sql[i..].chars().next().expect("a char boundary");
        (ch, ch.len_utf8())
    }
}

/// The offset of the quote closing a quoted token whose text starts at
/// `from`; a doubled quote stands for itself.
fn quoted_end(b: &[u8], mut from: usize, quote: u8) -> Result<usize, Unscannable> {
    loop {
        let at = from
            + b[from..]
                .iter()
                .position(|&x| x == quote)
                .ok_or(Unscannable)?;
        if b.get(at + 1) == Some(&quote) {
            from = at + 2;
        } else {
            return Ok(at);
        }
    }
}

fn unescape<'a>(body: &'a str, doubled: &str, single: &str) -> Cow<'a, str> {
    if body.contains(doubled) {
        Cow::Owned(body.replace(doubled, single))
    } else {
        Cow::Borrowed(body)
    }
}

/// The offset after a block comment whose text starts at `from` (comments nest).
fn block_comment_end(b: &[u8], mut from: usize) -> Result<usize, Unscannable> {
    let mut depth = 1;
    while from < b.len() {
        match (b[from], b.get(from + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                from += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                from += 2;
                if depth == 0 {
                    return Ok(from);
                }
            }
            _ => from += 1,
        }
    }
    Err(Unscannable)
}

/// The offset after a token starting with `$` at `at`: a `$$...$$` or
/// `$tag$...$tag$` string, else a placeholder (`$1`, `$name`).
fn dollar_end(sql: &str, at: usize) -> Result<usize, Unscannable> {
    let b = sql.as_bytes();
    let tag_len = b[at + 1..]
        .iter()
        .take_while(|x| x.is_ascii_alphanumeric() || **x == b'_')
        .count();
    let after_tag = at + 1 + tag_len;
    match b.get(after_tag) {
        Some(b'$') => {
            let delimiter = &sql[at..=after_tag];
            let body = after_tag + 1;
            let close = sql[body..].find(delimiter).ok_or(Unscannable)?;
            Ok(body + close + delimiter.len())
        }
        // A tag with letters outside ASCII: rare enough not to follow.
        Some(x) if !x.is_ascii() => Err(Unscannable),
        _ => Ok(after_tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chains(sql: &str) -> Result<Vec<Vec<String>>, Unscannable> {
        let mut out = Vec::new();
        identifier_chains(sql, &mut |parts| {
            out.push(parts.iter().map(|p| p.to_string()).collect())
        })?;
        Ok(out)
    }

    fn flat(sql: &str) -> Vec<String> {
        chains(sql)
            .unwrap()
            .into_iter()
            .map(|c| c.join("."))
            .collect()
    }

    #[test]
    fn chains_are_dotted_names_quoted_or_not() {
        assert_eq!(
            flat("SELECT o.id, \"Db\".main.\"or\"\"ders\" FROM db . s.t AS x"),
            [
                "SELECT",
                "o.id",
                "Db.main.or\"ders",
                "FROM",
                "db.s.t",
                "AS",
                "x"
            ]
        );
        assert_eq!(flat("select `a``b`.c"), ["select", "a`b.c"]);
        assert_eq!(flat("x.*, y"), ["x", "y"]);
        assert_eq!(flat("naïve_名前 + été$1"), ["naïve_名前", "été$1"]);
    }

    #[test]
    fn strings_and_comments_are_not_names() {
        assert_eq!(
            flat("SELECT 'orders ''x''' AS a -- orders\n, b /* c /* nested */ d */ FROM t"),
            ["SELECT", "AS", "a", "b", "FROM", "t"]
        );
        assert_eq!(
            flat("SELECT $$ orders $ x $$, $q$ a $$ b $q$, $1 FROM t"),
            ["SELECT", "FROM", "t"]
        );
        assert_eq!(
            flat("SELECT 1e5, 2.5 FROM t"),
            ["SELECT", "e5", "FROM", "t"]
        );
    }

    #[test]
    fn a_string_read_as_a_table_is_a_name() {
        assert_eq!(
            flat("SELECT 'a' FROM 'orders' JOIN /* c */ 'it''s' ON true"),
            ["SELECT", "FROM", "orders", "JOIN", "it's", "ON", "true"]
        );
    }

    #[test]
    fn doubtful_text_is_refused() {
        assert_eq!(chains("SELECT E'it\\'s', orders"), Err(Unscannable));
        assert_eq!(chains("SELECT 'open"), Err(Unscannable));
        assert_eq!(chains("SELECT \"open"), Err(Unscannable));
        assert_eq!(chains("SELECT /* /* */ orders"), Err(Unscannable));
        assert_eq!(chains("SELECT $$ open"), Err(Unscannable));
    }
}
