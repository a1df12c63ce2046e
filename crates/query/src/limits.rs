//! Bounds on a query, checked before and during lowering so that no input can make the parser
//! or the store do unbounded work: no stack overflow, no quadratic parse, no huge SQL.

use crate::error::QueryError;
use crate::juxtapose;

/// Longest accepted query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Most leaf clauses a query may hold, counted as written: a repeated clause counts each time.
/// A bare term counts once although it searches several fields; a set counts once per element,
/// as it is shorthand for an `OR` of terms.
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

/// Checks the clause count of the text as written.
///
/// Counted on the text because the grammar drops a clause identical to one of its siblings, so
/// `id:a OR id:a OR …` reaches lowering as one clause; the spec bounds what the user wrote.
pub(crate) fn check_clauses(text: &str) -> Result<(), QueryError> {
    if written_clauses(text) > MAX_CLAUSES {
        return Err(too_many_clauses());
    }
    Ok(())
}

pub(crate) fn too_many_clauses() -> QueryError {
    QueryError::too_large(format!("query has too many clauses: the limit is {MAX_CLAUSES}"))
}

/// The leaf clauses of `text` as written, each occurrence counted.
fn written_clauses(text: &str) -> usize {
    // The first word has nothing before it.
    let words: Vec<&str> = std::iter::once("").chain(juxtapose::words(text)).collect();
    words.windows(2).map(|pair| clauses_in(pair[0], pair[1])).sum()
}

/// The clauses that `word` adds, `previous` being the word before it.
///
/// Values are what count: `user:` waiting for its value (`user: alice`, `user:(a b)`,
/// `duration:> 30m`) counts nothing, and the value after it counts. A set counts its elements;
/// when its brackets stand apart from `IN`, the word holding `IN` has counted one of them.
fn clauses_in(previous: &str, word: &str) -> usize {
    let awaits_value = word.ends_with([':', '>', '<', '=']);
    if juxtapose::is_operator(word) || matches!(word, "(" | ")" | "+" | "-") || word.starts_with('^') || awaits_value {
        return 0;
    }
    match word.find('[') {
        Some(0) if previous == "IN" || previous.ends_with(":IN") => set_elements(word).saturating_sub(1),
        Some(at) if &word[..at] == "IN" || word[..at].ends_with(":IN") => set_elements(&word[at..]).max(1),
        // A range such as `start_time:[a TO b]` is one clause.
        _ => 1,
    }
}

/// The elements of a set's bracketed list: separated by spaces or commas (see `lower`), with
/// quoted elements kept whole.
fn set_elements(list: &str) -> usize {
    let mut elements = 0;
    let mut in_element = false;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in list.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            _ if quote == Some(c) => quote = None,
            _ if quote.is_some() => {}
            ' ' | ',' | '[' | ']' => {
                in_element = false;
                continue;
            }
            '"' | '\'' if !in_element => quote = Some(c),
            _ => {}
        }
        if !in_element {
            in_element = true;
            elements += 1;
        }
    }
    elements
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
    use super::{nesting_estimate, set_elements, written_clauses as written};

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

    #[test]
    fn sets_count_their_elements() {
        assert_eq!(set_elements("[]"), 0);
        assert_eq!(set_elements("[a b]"), 2);
        assert_eq!(set_elements("[a, b,c]"), 3);
        assert_eq!(set_elements(r#"["prod db" 'it\'s x' c]"#), 3);
    }

    #[test]
    fn values_count_once_whatever_their_spelling() {
        assert_eq!(written("a"), 1);
        assert_eq!(written("user:a -user:b +c NOT d"), 4);
        assert_eq!(written("user: a AND (b OR c)^2"), 3);
        assert_eq!(written("user:(a b)"), 2);
        assert_eq!(written("duration:> 30m duration:<=1h"), 2);
        assert_eq!(written("start_time:[2024-01-01 TO now} start_time: [a TO b]"), 2);
        assert_eq!(written("technology:IN [a b c]"), 3);
        assert_eq!(written("technology: IN [a b c]"), 3);
        assert_eq!(written("technology:IN[a b c]"), 3);
        assert_eq!(written("technology:IN []"), 1);
        assert_eq!(written("id:a OR id:a OR id:a"), 3);
    }
}
