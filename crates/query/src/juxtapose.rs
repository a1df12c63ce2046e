//! Juxtaposition made explicit: `a b OR c` becomes `a AND b OR c` before the grammar sees it.
//!
//! The spec reads juxtaposition as AND, binding tighter than OR. The grammar instead keeps
//! Lucene's occur markers, and in its output `a OR b c OR d` and `a OR b OR c OR d` are the
//! same list of four optional clauses: which terms stood side by side is lost. Writing the
//! `AND` in restores it, and the grammar groups explicit `AND` chains itself.
//!
//! Only the spaces between two operands get an `AND`: not around operators (`AND`, `OR`,
//! `NOT`, `&&`, `||`), not inside quotes, ranges or sets, not after a field's `:` or a
//! comparison, not before a boost (`^2`), and not after a lone `+` or `-`.

use crate::error::QueryError;

/// The query with an explicit `AND` wherever two operands stand side by side, and where each
/// insertion went: its byte offset in the result, and its length.
pub(crate) fn explicit_and(text: &str) -> (String, Vec<(usize, usize)>) {
    let tokens = tokens(text);
    let mut out = String::with_capacity(text.len() + 16);
    let mut inserted = Vec::new();
    let mut copied = 0;
    for pair in tokens.windows(2) {
        let (left, right) = (&pair[0], &pair[1]);
        if !joins(&text[left.start..left.end], &text[right.start..right.end]) {
            continue;
        }
        out.push_str(&text[copied..left.end]);
        // The grammar wants a space on both sides of an operator.
        let and = if text[left.end..].starts_with(' ') { " AND" } else { " AND " };
        inserted.push((out.len(), and.len()));
        out.push_str(and);
        copied = left.end;
    }
    out.push_str(&text[copied..]);
    (out, inserted)
}

/// A byte offset in the rewritten text, as an offset in the original: one inside an
/// insertion is where it was inserted.
pub(crate) fn original_offset(pos: usize, inserted: &[(usize, usize)]) -> usize {
    let mut shift = 0;
    for &(at, len) in inserted {
        if pos < at {
            break;
        }
        shift += (pos - at).min(len);
    }
    pos - shift
}

/// The query's tokens as text, split as `explicit_and` splits them: operands, operators and
/// parentheses, with quoted and bracketed runs kept whole.
pub(crate) fn words(text: &str) -> impl Iterator<Item = &str> {
    tokens(text).into_iter().map(move |token| &text[token.start..token.end])
}

/// Whether `word` is a boolean operator rather than an operand.
pub(crate) fn is_operator(word: &str) -> bool {
    matches!(word, "AND" | "OR" | "NOT" | "&&" | "||")
}

/// Byte range of one token.
struct Token {
    start: usize,
    end: usize,
}

/// Splits at spaces outside quotes and brackets; `(` and `)` are tokens of their own. A
/// backslash keeps the next character in the token. A quote (`"` or `'`) opens where a value
/// starts (see [`starts_value`]), and in brackets where a bound or element does.
fn tokens(text: &str) -> Vec<Token> {
    scan(text).tokens
}

/// The tokens, and what the grammar would pass over without a word.
struct Scan {
    tokens: Vec<Token>,
    /// Where a quote opened that never closes.
    unclosed_quote: Option<usize>,
    /// Where a `"` stands inside a word, unescaped (`alice"`).
    stray_quote: Option<usize>,
    /// Where a `\` ends the text, escaping nothing.
    dangling_escape: Option<usize>,
}

fn scan(text: &str) -> Scan {
    let mut tokens = Vec::new();
    let mut start = None;
    let mut quote: Option<(char, usize)> = None;
    let mut stray_quote = None;
    let mut bracketed = false;
    let mut escaped: Option<usize> = None;
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        if escaped.take().is_some() {
            continue;
        }
        match c {
            '\\' => escaped = Some(i),
            _ if quote.is_some_and(|(q, _)| q == c) => quote = None,
            _ if quote.is_some() => {}
            '"' | '\'' if !bracketed && starts_value(start.map_or("", |s| &text[s..i])) => quote = Some((c, i)),
            // A range's bound or a set's element (`["a b" TO "c]d"]`).
            '"' | '\'' if bracketed && text[..i].ends_with(['[', '{', ' ']) => quote = Some((c, i)),
            '"' if !bracketed => _ = stray_quote.get_or_insert(i),
            '[' | '{' => bracketed = true,
            ']' | '}' => bracketed = false,
            _ if bracketed => {}
            ' ' => {
                if let Some(s) = start.take() {
                    tokens.push(Token { start: s, end: i });
                }
                continue;
            }
            '(' | ')' => {
                if let Some(s) = start.take() {
                    tokens.push(Token { start: s, end: i });
                }
                tokens.push(Token { start: i, end });
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        tokens.push(Token { start: s, end: text.len() });
    }
    Scan { tokens, unclosed_quote: quote.map(|(_, at)| at), stray_quote, dangling_escape: escaped }
}

/// Whether a quote after `token`, the part of a token before it, opens a value, as the
/// grammar reads it: at the start of a term (after occur markers, `-"a b"`), or after a
/// field's `:` and a comparison (`user:"a b"`, `resource:>"a b"`). Elsewhere (`o'brien`) it
/// is part of a word.
fn starts_value(token: &str) -> bool {
    let term = token.trim_start_matches(['+', '-']);
    let value_at = term.trim_end_matches(['>', '<', '=']);
    term.is_empty() || (value_at.ends_with(':') && matches!(&term[value_at.len()..], "" | ">" | ">=" | "<" | "<="))
}

/// Refuses what the grammar would read without complaint, but not as written: a quote never
/// closed (`--"`), a `"` inside a word (`alice"`), a `\` at the very end, and a query that
/// starts with `AND` or `OR` or ends with an operator (the grammar names no position for
/// those).
pub(crate) fn check(text: &str) -> Result<(), QueryError> {
    let scan = scan(text);
    if let Some(at) = scan.unclosed_quote {
        return Err(QueryError::syntax_at(text, at, "this quote is never closed"));
    }
    if let Some(at) = scan.stray_quote {
        return Err(QueryError::syntax_at(
            text,
            at,
            "a `\"` inside a value; quote the whole value (`user:\"a b\"`) or escape it (`\\\"`)",
        ));
    }
    if let Some(at) = scan.dangling_escape {
        return Err(QueryError::syntax_at(text, at, "a `\\` at the end escapes nothing; write `\\\\` for a backslash"));
    }
    if let Some(first) = scan.tokens.first().map(|token| &text[token.start..token.end])
        && is_binary(first)
    {
        return Err(QueryError::syntax_at(text, 0, &needs_terms(first)));
    }
    // An operator where a term belongs: `a OR OR b`, `a NOT OR b`, `(AND b)`, `(a OR)`.
    for pair in scan.tokens.windows(2) {
        let (left, right) = (&text[pair[0].start..pair[0].end], &text[pair[1].start..pair[1].end]);
        let misplaced = if is_binary(right) && (is_operator(left) || left == "(") {
            Some((pair[1].start, right))
        } else if is_operator(left) && right == ")" {
            Some((pair[0].start, left))
        } else {
            None
        };
        if let Some((at, word)) = misplaced {
            return Err(QueryError::syntax_at(text, at, &needs_terms(word)));
        }
    }
    // Two signs on one term (`--a`, `NOT -a`): the grammar would take the second for part of
    // the word, and search for `-a`.
    for (at, token) in scan.tokens.iter().enumerate() {
        let word = &text[token.start..token.end];
        // After NOT, or after a sign standing alone (`- -a`).
        let previous = at.checked_sub(1).map(|before| &text[scan.tokens[before].start..scan.tokens[before].end]);
        let operated = matches!(previous, Some("NOT" | "-" | "+"));
        let signs = word.chars().take_while(|c| matches!(c, '-' | '+')).count();
        let rest = &word[signs..];
        if !rest.is_empty() && (signs > 1 || signs == 1 && (operated || rest == "NOT")) {
            return Err(QueryError::syntax_at(
                text,
                token.start,
                "two operators on one term; write one: `-a` or `NOT a` excludes, `+a` requires \
                 (quote a value that starts with a sign: `\"-a\"`)",
            ));
        }
    }
    // (A lone operator is lowered with a hint to quote it.)
    if let [_, .., last] = scan.tokens.as_slice()
        && is_operator(&text[last.start..last.end])
    {
        return Err(QueryError::syntax_at(text, last.start, &needs_terms(&text[last.start..last.end])));
    }
    Ok(())
}

fn is_binary(word: &str) -> bool {
    is_operator(word) && word != "NOT"
}

fn needs_terms(operator: &str) -> String {
    if operator == "NOT" {
        "`NOT` needs a term after it".to_owned()
    } else {
        format!("`{operator}` needs a term on each side")
    }
}

/// Whether `left` and `right`, side by side, are two operands to join with AND.
fn joins(left: &str, right: &str) -> bool {
    let ends_operand = !is_operator(left)
        && left != "("
        && !matches!(left, "+" | "-")
        && !left.ends_with([':', '>', '<', '='])
        && !(right.starts_with('[') && (left == "IN" || left.ends_with(":IN")));
    let starts_operand = !matches!(right, "AND" | "OR" | "&&" | "||" | ")") && !right.starts_with(['^', ':']);
    ends_operand && starts_operand
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(text: &str) -> String {
        explicit_and(text).0
    }

    #[test]
    fn operands_side_by_side_are_joined() {
        assert_eq!(rewrite("a b OR c"), "a AND b OR c");
        assert_eq!(rewrite("a OR b c"), "a OR b AND c");
        assert_eq!(rewrite("a -b +c"), "a AND -b AND +c");
        assert_eq!(rewrite("a NOT b"), "a AND NOT b");
        assert_eq!(rewrite("(a)(b)"), "(a) AND (b)");
        assert_eq!(rewrite("o'brien smith"), "o'brien AND smith");
        assert_eq!(rewrite(r#"user:"a b" c"#), r#"user:"a b" AND c"#);
        assert_eq!(rewrite("a (b OR c) d"), "a AND (b OR c) AND d");
        assert_eq!(rewrite("-(a b)"), "-(a AND b)");
        assert_eq!(rewrite(r#"a:["b]c" TO 'd e'] f"#), r#"a:["b]c" TO 'd e'] AND f"#);
        assert_eq!(rewrite(r#"a:IN ["b]" c] d"#), r#"a:IN ["b]" c] AND d"#);
    }

    #[test]
    fn nothing_else_changes() {
        for text in [
            "a AND b OR c",
            "NOT NOT a",
            "user:(alice)",
            "technology: IN [postgres mysql]",
            "technology:IN [postgres mysql]",
            r#"resource:"prod db" "#,
            "resource.name:'prod db'",
            r#"-"a b""#,
            "start_time:[2024-01-01 TO now}",
            "duration:> 30m",
            "(a OR b)^3",
            r"user:a\ b",
            "a && b",
            "",
        ] {
            assert_eq!(rewrite(text), text, "{text}");
        }
    }

    #[test]
    fn offsets_map_back_to_the_original() {
        let (text, inserted) = explicit_and("é b c");
        assert_eq!(text, "é AND b AND c");
        assert_eq!(inserted, [(2, 4), (8, 4)]);
        let original: Vec<usize> = (0..text.len()).map(|p| original_offset(p, &inserted)).collect();
        // Bytes: `é` 0 and 1; the first " AND" where it went (2), then the space 2 and `b` 3;
        // the second " AND" 4, the space 4 and `c` 5.
        assert_eq!(original, [0, 1, 2, 2, 2, 2, 2, 3, 4, 4, 4, 4, 4, 5]);
    }
}
