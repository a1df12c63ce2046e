//! What the grammar would read otherwise than the spec means, written so that it reads it right,
//! before it sees the text:
//!
//! - A quoted bound of a comparison or range (`user.name:>"Bob Jones"`,
//!   `user.name:["Bob Jones" TO "Carol Garcia"]`). The grammar reads a bound as a word, which
//!   ends at the first space (or `)`, `]`, `}`), quotes and all: `>"Bob` and a second term
//!   `Jones"`. Escaping what would end the word keeps it whole, quotes included, and lowering
//!   takes the quotes off (`lower::unquote`).
//! - A time's `:` in a term or set (`start_time:2024-01-01T00:00:00Z`), which the grammar
//!   takes for a field's, the field being what comes before it. Comparisons and ranges read the
//!   same value unquoted; escaped, so does a term.
//! - `*:*`, Lucene's "every document", which the grammar cannot read: as `*`.
//! - A comma between a set's values (`IN [postgres, mysql]`), as many write them: as a space,
//!   which the grammar splits on. Only where it would: a comma quoted or escaped is a value's.
//!
//! Only backslashes are inserted, `*:*` is written `*  ` and a comma ` `, of the same length,
//! so a position in the result maps back to the text as written with
//! [`crate::juxtapose::original_offset`].

use std::borrow::Cow;

use crate::error::QueryError;
use crate::field::{Field, FieldKind};

/// Characters that end a word of the grammar, or that it reads before taking a `\` off: escaped,
/// each is itself (`tantivy_query_grammar`'s `ESCAPE_IN_WORD`, less `\`, which is its own case).
const ENDS_A_WORD: &[char] = &['^', '`', ':', '{', '}', '"', '\'', '[', ']', '(', ')'];

/// Where text went in: its byte offset in the result, and how many bytes.
type Inserted = Vec<(usize, usize)>;

/// The text as the grammar should get it, and where backslashes went in.
pub(crate) fn prepare(text: &str) -> Result<(Cow<'_, str>, Inserted), QueryError> {
    let mut scanner = Scanner { text, at: 0, escapes: Vec::new(), match_all: Vec::new(), commas: Vec::new() };
    scanner.query()?;
    let Scanner { escapes, match_all, commas, .. } = scanner;
    if escapes.is_empty() && match_all.is_empty() && commas.is_empty() {
        return Ok((Cow::Borrowed(text), Vec::new()));
    }
    // Each in order; merged, each edit is where it goes in the text as written.
    let mut edits: Vec<(usize, &str, usize)> = escapes.into_iter().map(|(at, escape)| (at, escape, 0)).collect();
    edits.extend(match_all.into_iter().map(|at| (at, "*  ", "*:*".len())));
    edits.extend(commas.into_iter().map(|at| (at, " ", 1)));
    edits.sort_by_key(|&(at, _, _)| at);
    let mut out = String::with_capacity(text.len() + edits.len() * 2);
    let mut inserted = Vec::with_capacity(edits.len());
    let mut copied = 0;
    for (at, written, replaced) in edits {
        out.push_str(&text[copied..at]);
        if replaced == 0 {
            inserted.push((out.len(), written.len()));
        }
        out.push_str(written);
        copied = at + replaced;
    }
    out.push_str(&text[copied..]);
    Ok((Cow::Owned(out), inserted))
}

/// Walks the text as the grammar reads it: terms, each with its field, and their values.
struct Scanner<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    at: usize,
    /// Where a backslash (or two) goes in, in the text as written, in order.
    escapes: Vec<(usize, &'static str)>,
    /// Where a `*:*` starts.
    match_all: Vec<usize>,
    /// Where a comma between a set's values is.
    commas: Vec<usize>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.at += c.len_utf8();
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// The whole text: terms, with signs, operators and parentheses between them.
    fn query(&mut self) -> Result<(), QueryError> {
        loop {
            self.skip_spaces();
            match self.peek() {
                None => return Ok(()),
                // A group's terms, and its end, are read as the query's.
                Some('(' | ')' | '+' | '-') => self.bump(),
                Some(_) if self.at_match_all() => {
                    self.match_all.push(self.at);
                    self.at += "*:*".len();
                }
                Some(_) => {
                    let start = self.at;
                    let field = self.field();
                    self.value(field)?;
                    // What no value starts with (`^2` after a group) is passed over.
                    if self.at == start {
                        self.bump();
                    }
                }
            }
        }
    }

    /// `*:*` standing alone, as a term.
    fn at_match_all(&self) -> bool {
        self.rest()
            .strip_prefix("*:*")
            .is_some_and(|after| after.chars().next().is_none_or(|c| c.is_whitespace() || c == ')'))
    }

    /// The kind of the field a term names (`name:`), moving past its `:`: none if the term
    /// names none, text if no field has the name (lowering says so).
    fn field(&mut self) -> Option<FieldKind> {
        let name_len = self.rest().find(is_special).unwrap_or(self.rest().len());
        let value = self.rest()[name_len..].trim_start().strip_prefix(':').filter(|_| name_len > 0)?;
        let name = &self.text[self.at..self.at + name_len];
        self.at = self.text.len() - value.len();
        self.skip_spaces();
        Some(Field::lookup(name).map_or(FieldKind::Text, Field::kind))
    }

    /// One term's value.
    fn value(&mut self, field: Option<FieldKind>) -> Result<(), QueryError> {
        match self.peek() {
            // A group: its terms follow.
            Some('(') => self.bump(),
            Some(quote @ ('"' | '\'')) => self.quoted(quote, false)?,
            Some('>' | '<') => {
                self.bump();
                if self.peek() == Some('=') {
                    self.bump();
                }
                self.skip_spaces();
                match self.peek() {
                    Some(quote @ ('"' | '\'')) => self.bound(quote, &[')'])?,
                    _ => self.word(&[')'], false, false),
                }
            }
            Some('[' | '{') => {
                self.bump();
                self.range()?;
            }
            _ if self.at_set() => self.set(field == Some(FieldKind::Time))?,
            _ => self.word(&[')', '^'], field == Some(FieldKind::Time), false),
        }
        Ok(())
    }

    /// A range's bounds, `TO` and its closing bracket, past its opening one.
    fn range(&mut self) -> Result<(), QueryError> {
        loop {
            self.skip_spaces();
            match self.peek() {
                None => return Ok(()),
                Some(']' | '}') => {
                    self.bump();
                    return Ok(());
                }
                Some(quote @ ('"' | '\'')) => self.bound(quote, &[']', '}'])?,
                Some(_) => self.word(&[']', '}'], false, false),
            }
        }
    }

    /// `IN [`: a set, whose quoted elements the grammar reads whole.
    fn at_set(&self) -> bool {
        self.rest().strip_prefix("IN").is_some_and(|after| after.trim_start().starts_with('['))
    }

    /// A set's elements, to its closing bracket; with `colons`, each `:` in an unquoted one is
    /// escaped.
    fn set(&mut self, colons: bool) -> Result<(), QueryError> {
        self.at += self.rest().find('[').map_or(0, |at| at + 1);
        loop {
            self.skip_spaces();
            match self.peek() {
                None => return Ok(()),
                Some(']') => {
                    self.bump();
                    return Ok(());
                }
                Some(quote @ ('"' | '\'')) => self.quoted(quote, false)?,
                Some(_) => self.word(&[']'], colons, true),
            }
        }
    }

    /// A word the grammar reads to a space or to one of `ends`, taking `\` and the character
    /// after it together; with `colons`, each `:` in it is escaped; with `commas` (a set's),
    /// each `,` is a space.
    fn word(&mut self, ends: &[char], colons: bool, commas: bool) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || ends.contains(&c) {
                return;
            }
            if c == ':' && colons {
                self.escapes.push((self.at, "\\"));
            }
            if c == ',' && commas {
                self.commas.push(self.at);
            }
            self.bump();
            if c == '\\' {
                self.bump();
            }
        }
    }

    /// A quoted run, from its opening quote past its closing one; with `escape`, what the
    /// grammar would end a word at, or read an escape in, is escaped.
    fn quoted(&mut self, quote: char, escape: bool) -> Result<(), QueryError> {
        let open = self.at;
        let escaped_before = self.escapes.len();
        self.bump();
        while let Some(c) = self.peek() {
            if c == quote {
                self.bump();
                return Ok(());
            }
            match c {
                // `\\` is one backslash in the value, and must reach lowering as `\\`: the
                // grammar takes one of the two off.
                '\\' if escape && self.rest().starts_with("\\\\") => self.escapes.push((self.at, "\\\\")),
                '\\' => {}
                c if escape && (c.is_whitespace() || ENDS_A_WORD.contains(&c)) => self.escapes.push((self.at, "\\")),
                _ => {}
            }
            self.bump();
            if c == '\\' {
                self.bump();
            }
        }
        self.escapes.truncate(escaped_before);
        Err(QueryError::syntax_at(self.text, open, "this quote is never closed"))
    }

    /// A quoted bound, which must end where the grammar's word would: at a space or one of
    /// `ends`. After its quote, `"a b"c` would be read as the value `"a b"c`, quotes and all.
    fn bound(&mut self, quote: char, ends: &[char]) -> Result<(), QueryError> {
        self.quoted(quote, true)?;
        match self.peek() {
            Some(c) if !c.is_whitespace() && !ends.contains(&c) => Err(QueryError::syntax_at(
                self.text,
                self.at,
                "a quoted bound ends at its closing quote; put a space after it",
            )),
            _ => Ok(()),
        }
    }
}

/// A character that cannot be part of a field name unescaped (the grammar's `SPECIAL_CHARS`).
fn is_special(c: char) -> bool {
    c.is_whitespace()
        || matches!(c, '+' | '^' | '`' | ':' | '{' | '}' | '"' | '\'' | '[' | ']' | '(' | ')' | '!' | '\\' | '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(text: &str) -> String {
        prepare(text).unwrap().0.into_owned()
    }

    #[test]
    fn quoted_bounds_are_escaped_to_stay_one_word() {
        assert_eq!(rewrite(r#"user.name:>"Bob Jones""#), r#"user.name:>"Bob\ Jones""#);
        assert_eq!(rewrite(r#"user.name:>= 'Bob Jones' OR a"#), r#"user.name:>= 'Bob\ Jones' OR a"#);
        assert_eq!(rewrite(r#"a:["b c" TO "d]e"}"#), r#"a:["b\ c" TO "d\]e"}"#);
        assert_eq!(rewrite(r#"a:<"x\\y""#), r#"a:<"x\\\\y""#);
        assert_eq!(rewrite(r#"a:<"x\"y""#), r#"a:<"x\"y""#);
        assert_eq!(rewrite(r#"(a:<"x y")"#), r#"(a:<"x\ y")"#);
        assert_eq!(rewrite(r#"a:(>"x y")"#), r#"a:(>"x\ y")"#);
    }

    #[test]
    fn colons_of_a_time_term_are_escaped() {
        assert_eq!(rewrite("start_time:2024-01-01T00:00:00Z"), r"start_time:2024-01-01T00\:00\:00Z");
        assert_eq!(rewrite("end_time : 2024-01-01T00:00:00Z)"), r"end_time : 2024-01-01T00\:00\:00Z)");
        assert_eq!(rewrite(r"time:2024-01-01T00\:00:00Z"), r"time:2024-01-01T00\:00\:00Z");
    }

    #[test]
    fn a_sets_commas_are_spaces_unless_quoted_or_escaped() {
        assert_eq!(rewrite("a:IN [b, c,d]"), "a:IN [b  c d]");
        assert_eq!(rewrite(r#"a:IN ["b,c" d\,e]"#), r#"a:IN ["b,c" d\,e]"#);
        assert_eq!(
            rewrite("time:IN [2024-01-01T00:00:00Z,2024-01-02]"),
            r"time:IN [2024-01-01T00\:00\:00Z 2024-01-02]"
        );
        assert_eq!(rewrite("a:b,c"), "a:b,c");
    }

    #[test]
    fn match_all_is_a_star() {
        assert_eq!(rewrite("*:*"), "*  ");
        assert_eq!(rewrite(r#"(*:*) -a:>"b c" *:*"#), r#"(*  ) -a:>"b\ c" *  "#);
    }

    #[test]
    fn nothing_else_changes() {
        for text in [
            r#"user:"a b""#,
            r#"resource:IN ["a b" c]"#,
            "client_ip:2001:db8::1",
            "user:a:b",
            "*:*a",
            "a*:*",
            r#""*:*""#,
            "o'brien",
            "duration:[1m TO 1h]",
            "",
        ] {
            assert_eq!(rewrite(text), text, "{text}");
        }
    }

    #[test]
    fn a_quoted_bound_must_end_at_its_quote() {
        let error = prepare(r#"user:>"a b"c"#).unwrap_err();
        assert_eq!(error.position, Some(11), "{error}");
        let error = prepare(r#"user:["a b" TO "c"d]"#).unwrap_err();
        assert_eq!(error.position, Some(18), "{error}");
        let error = prepare(r#"user:["a b TO c]"#).unwrap_err();
        assert_eq!(error.position, Some(6), "{error}");
    }
}
