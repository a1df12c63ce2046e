//! The session search language: turns query text such as
//! `user.email:alice@example.com AND start_time:>=now-24h` into a typed, backend-neutral
//! [`Expr`] that the store compiles to SQL with every value bound as a parameter.
//!
//! The syntax is Lucene's, as parsed by `tantivy-query-grammar`; see
//! `shared/spec/query-language.md` for the language. Parsing has two steps, as in tantivy:
//! the grammar turns text into an untyped `UserInputAst` (field names are plain strings), then
//! `lower` resolves the names against the field table and types every value.
//!
//! This crate does no IO and knows nothing of SQL.
//!
//! # Layout
//!
//! - `field`: the field table (names, aliases, camelCase and snake_case spellings, kinds).
//! - `value`: time, duration, IP and CIDR values.
//! - `ast`: the output types and their compact `Display`.
//! - `prepare`: escapes what the grammar would split a value at (a quoted bound's spaces, a
//!   time's `:`), and writes Lucene's `*:*` as `*`.
//! - `juxtapose`: writes the `AND` between operands side by side, which the grammar drops.
//! - `lower`: `UserInputAst` to `Expr`.
//! - `limits`: length, clause and nesting bounds.
//! - `error`: `QueryError`.
//!
//! # Notes on writing queries
//!
//! - A value containing `:` must be quoted or escaped, or the grammar reports a syntax error:
//!   `client_ip:"2001:db8::1"`, `client_ip:2001\:db8\:\:1`. A time needs no quoting
//!   (`start_time:2024-01-01T00:00:00Z`), nor does any value inside ranges and comparisons:
//!   `start_time:>=2024-01-01T00:00:00Z`, `client_ip:[::1 TO ::ff]`.
//! - A quoted bound of a range or comparison is the whole value, spaces included:
//!   `user.name:>"Bob Jones"`, `user.name:["Bob Jones" TO "Carol Garcia"]`.
//! - Inside double quotes, `\` escapes the next character; escaping every `"` and `\` is all
//!   the quoting any value needs.
//! - Tabs, line breaks and other whitespace read as plain spaces, inside quotes too.
//! - Juxtaposition is AND and binds tighter than OR: `a b OR c` is `(a AND b) OR c`.
//!   `+a` beside alternatives makes them optional, as in Lucene: `+a OR b` is `a`.
//!
//! # Choices the spec leaves open
//!
//! - Times also accept `now+1h`, and a bare date (`2024-01-01`), which in a query is its whole
//!   day (UTC): a term matches the day, `<=` and `]` run through it, `>` and `{` start after it.
//! - Durations also accept `us`, compounds (`1h30m`) and fractions (`1.5h`, `12.345678s` as the
//!   API writes them); a bare number is rejected, because
//!   `duration:>30` could mean seconds or milliseconds.
//! - Keywords from a fixed lowercase vocabulary (`session_status`, technologies, user and
//!   resource types) and session UUIDs are matched in any case; other keywords (the ids a
//!   registry or an identity provider chose, groups, external ids) as written, as the spec says.
//! - `field:[* TO *]` is `Exists`, and `*:*` is `*`, as in Lucene. Boosts (`^2`) are accepted
//!   and ignored. Regexes, fuzzy terms (`a~1`), proximity (`"a b"~2`), inner wildcards (`a*b`)
//!   and the one-character wildcard (`a?c`; `a\?c` is the literal `?`) are rejected.
//! - For the clause limit a bare term counts once and a set once per element, and clauses count
//!   as written: `id:a OR id:a` is two, although the grammar keeps one.
//! - Syntax error positions are 0-based character offsets.

use std::borrow::Cow;

mod ast;
mod error;
mod field;
mod juxtapose;
mod limits;
mod lower;
mod prepare;
mod value;

pub use ast::{Expr, Op, Predicate, Value};
pub use error::{QueryError, QueryErrorKind};
pub use field::{BARE_TERM_FIELDS, Field, FieldKind};
pub use limits::{MAX_CLAUSES, MAX_DOUBLE_SLASHES, MAX_NESTING, MAX_QUERY_BYTES};
pub use value::{TIME_FORMS, parse_duration, parse_time};

/// Parses and type-checks a query.
///
/// `now_us` is "now" in microseconds since the Unix epoch, used for `now`, `now-24h` and the
/// like; passing it in keeps parsing pure and testable. Empty or whitespace-only text is
/// [`Expr::All`].
///
/// # Errors
///
/// A [`QueryError`] whose message is fit to show the user: a syntax error with its position,
/// an unknown field with the closest valid names, a value of the wrong type for its field, an
/// unsupported feature (regex, fuzzy), or a query over one of the limits
/// ([`MAX_QUERY_BYTES`], [`MAX_CLAUSES`], [`MAX_NESTING`]).
///
/// # Panics
///
/// Never, on any input.
pub fn parse(text: &str, now_us: i64) -> Result<Expr, QueryError> {
    limits::check_text(text)?;
    // No stored value holds one, and PostgreSQL refuses it in any text parameter.
    if let Some(at) = text.find('\0') {
        return Err(QueryError::syntax_at(text, at, "a NUL character (U+0000) cannot be part of a query"));
    }
    let text = spaces_only(text);
    let text = text.as_ref();
    limits::check_clauses(text)?;
    juxtapose::check(text)?;
    let (prepared, escaped) = prepare::prepare(text)?;
    let (explicit, inserted) = juxtapose::explicit_and(&prepared);
    let (ast, errors) = tantivy_query_grammar::parse_query_lenient(&explicit);
    // The lenient parser recovers from every error and reports them all; the first one is
    // where the user went wrong, the rest are often consequences of it.
    if let Some(error) = errors.into_iter().min_by_key(|error| error.pos) {
        // Through both rewrites, back to the text as written.
        let pos = juxtapose::original_offset(juxtapose::original_offset(error.pos, &inserted), &escaped);
        // Lucene's `!` for NOT, which the grammar takes for part of a field name.
        let message = match text.get(pos..).is_some_and(|rest| rest.starts_with('!')) {
            true => "`!` is not an operator here; write NOT or `-` before the term".to_owned(),
            false => explain(&error.message),
        };
        return Err(QueryError::syntax_at(text, pos, &message));
    }
    lower::lower(ast, now_us)
}

/// Replaces every whitespace character outside quoted values with a plain space.
///
/// The grammar ends a field name only at `' '`, so after each term it scans across tabs, line
/// breaks and other whitespace to the end of the text looking for a `:`: 4 KiB of `a\n`
/// takes a quarter of a second. This also lets a query be wrapped over lines. A quoted value
/// keeps its whitespace as written: a native role's name may hold a tab, a line break or a
/// no-break space, and `user.username:"a\tb"` is that name exactly. A quote starts a value
/// only where a value starts (after `:`, a space, a parenthesis, a sign, a comparison or a
/// range bracket), as in the grammar: the apostrophe in `o'brien` is part of the word. Each
/// character maps to one character, so error positions (in characters) stay right.
fn spaces_only(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_whitespace() && c != ' ') {
        return Cow::Borrowed(text);
    }
    let (mut quote, mut escaped, mut previous) = (None, false, ' ');
    let spaced = text
        .chars()
        .map(|c| {
            let out = match quote {
                None if c.is_whitespace() => ' ',
                _ => c,
            };
            match quote {
                Some(_) if escaped => escaped = false,
                Some(_) if c == '\\' => escaped = true,
                Some(open) if c == open => quote = None,
                None if matches!(c, '"' | '\'') && starts_value(previous) => quote = Some(c),
                _ => {}
            }
            previous = out;
            out
        })
        .collect();
    Cow::Owned(spaced)
}

/// Whether a value may start after `c`.
fn starts_value(c: char) -> bool {
    matches!(c, ' ' | ':' | '(' | '[' | '{' | '+' | '-' | '>' | '<' | '=')
}

/// Rewords the grammar's messages where they would puzzle a user.
fn explain(message: &str) -> String {
    match message {
        "parsed possible invalid field as term" => {
            "unexpected `:` in a value; quote it, as in `client_ip:\"2001:db8::1\"`".to_owned()
        }
        "expected word" => "expected a value".to_owned(),
        // Also for `[a TO]`, where TO is there and the end is not.
        "missing keyword TO" => "a range is written `[low TO high]`, with `*` for an open end".to_owned(),
        other => match other
            .strip_prefix("parsed keyword ")
            .and_then(|rest| rest.strip_suffix(" as term. It should be quoted"))
        {
            Some(keyword) => {
                format!("`{keyword}` needs something to join; to search for the word, quote it: \"{keyword}\"")
            }
            None => other.replace('\\', ""),
        },
    }
}
