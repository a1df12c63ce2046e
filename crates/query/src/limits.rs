//! Bounds on a query, checked before and during lowering so that no input can make the parser
//! or the store do unbounded work: no stack overflow, no quadratic parse, no huge SQL.

use crate::error::QueryError;

/// Longest accepted query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Most leaf clauses a query may lower to. A bare term counts once although it searches several
/// fields; a set counts once per element, as it is shorthand for an `OR` of terms.
pub const MAX_CLAUSES: usize = 256;

/// Deepest accepted nesting of parentheses and `NOT` chains.
///
/// The grammar is a recursive-descent parser: each level costs several kilobytes of stack, so
/// 4 KiB of `a:(a:(a:(…` overflows a 2 MiB thread stack, which aborts the process rather than
/// panicking. Real queries nest a handful of levels.
pub const MAX_NESTING: usize = 64;

/// Most `//` a query may contain.
///
/// The grammar reads `/…/` as a regex, and after a regex it restarts without whitespace and
/// rescans the rest of the text, so a run of slashes costs quadratic time (4 KiB of `/` takes
/// a quarter of a second). Regexes are rejected anyway; this leaves room for a few quoted URLs.
pub const MAX_DOUBLE_SLASHES: usize = 16;

/// Checks length and nesting before the text reaches the parser.
pub(crate) fn check_text(text: &str) -> Result<(), QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError::too_large(format!(
            "query is too long: {} bytes, the limit is {MAX_QUERY_BYTES}",
            text.len()
        )));
    }
    // Counted in quotes too: the grammar's idea of what is quoted is not ours to guess.
    if text.matches("//").count() > MAX_DOUBLE_SLASHES {
        return Err(QueryError::too_large(format!("query has too many `//`: the limit is {MAX_DOUBLE_SLASHES}")));
    }
    if nesting_estimate(text) > MAX_NESTING {
        return Err(nesting_error());
    }
    Ok(())
}

pub(crate) fn nesting_error() -> QueryError {
    QueryError::too_large(format!("query is nested too deeply: the limit is {MAX_NESTING} levels"))
}

/// An upper bound on how deep the parser will recurse for `text`.
///
/// It only needs to be safe, not exact: every `(` counts, even quoted or escaped ones, while a
/// `)` closes a level only outside quotes and unescaped. Runs of `NOT` recurse too, so the
/// longest run is added.
fn nesting_estimate(text: &str) -> usize {
    let mut depth: usize = 0;
    let mut max_depth: usize = 0;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // An escaped character never closes a level or a quote; `\(` still counts.
            '\\' => depth += usize::from(chars.next() == Some('(')),
            '(' => depth += 1,
            ')' if quote.is_none() => depth = depth.saturating_sub(1),
            '"' | '\'' if quote.is_none() => quote = Some(c),
            c if quote == Some(c) => quote = None,
            _ => {}
        }
        max_depth = max_depth.max(depth);
    }

    let mut run: usize = 0;
    let mut max_run: usize = 0;
    for word in text.split_whitespace() {
        run = if word == "NOT" { run + 1 } else { 0 };
        max_run = max_run.max(run);
    }
    max_depth + max_run
}

#[cfg(test)]
mod tests {
    use super::nesting_estimate;

    #[test]
    fn estimates_are_upper_bounds() {
        assert_eq!(nesting_estimate("a"), 0);
        assert_eq!(nesting_estimate("(a) (b)"), 1);
        assert_eq!(nesting_estimate("((a) OR (b))"), 2);
        assert_eq!(nesting_estimate(r#"(a:")))" (b))"#), 2);
        assert_eq!(nesting_estimate(r#"\)\)(a)"#), 1);
        assert_eq!(nesting_estimate("NOT NOT a AND NOT b"), 2);
        assert_eq!(nesting_estimate("NOT (NOT (a))"), 3);
    }
}
