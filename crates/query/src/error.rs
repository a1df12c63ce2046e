//! The one error type of the crate: a person-readable message plus a coarse kind.
//!
//! Every kind maps to `invalid_argument` at the API edge; the kind exists so that callers and
//! tests can tell the cases apart without matching on text.

use std::fmt;

/// Why a query was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// The text does not parse; `QueryError::position` says where when the parser knows.
    Syntax,
    /// A `field:` names no field; the message lists the closest valid names.
    UnknownField,
    /// A value does not fit its field's type (`duration:abc`), or an operator does not apply to
    /// the field (`duration:abc*`).
    InvalidValue,
    /// Valid Lucene syntax that this language does not support (regex, fuzzy, proximity).
    Unsupported,
    /// The query is over a limit: length, clauses or nesting.
    TooLarge,
}

/// A rejected query. `Display` is the message, fit to show to the person who wrote the query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: QueryErrorKind,
    pub message: String,
    /// For syntax errors: the 0-based character offset in the query text.
    pub position: Option<usize>,
}

impl QueryError {
    pub(crate) fn new(kind: QueryErrorKind, message: impl Into<String>) -> Self {
        QueryError { kind, message: message.into(), position: None }
    }

    /// A syntax error at byte offset `byte_pos` of `text`, reported as a character offset.
    pub(crate) fn syntax_at(text: &str, byte_pos: usize, what: &str) -> Self {
        let position = text.get(..byte_pos).map_or(byte_pos, |head| head.chars().count());
        QueryError {
            kind: QueryErrorKind::Syntax,
            message: format!("syntax error at position {position}: {what}"),
            position: Some(position),
        }
    }

    pub(crate) fn syntax(what: impl fmt::Display) -> Self {
        Self::new(QueryErrorKind::Syntax, format!("syntax error: {what}"))
    }

    pub(crate) fn unsupported(what: impl fmt::Display) -> Self {
        Self::new(QueryErrorKind::Unsupported, what.to_string())
    }

    pub(crate) fn too_large(what: impl fmt::Display) -> Self {
        Self::new(QueryErrorKind::TooLarge, what.to_string())
    }

    /// `field` as written by the user; `value` is quoted and shortened.
    pub(crate) fn invalid_value(field: &str, value: &str, expected: impl fmt::Display) -> Self {
        Self::new(
            QueryErrorKind::InvalidValue,
            format!("invalid value {} for field `{field}`: expected {expected}", Quoted(value)),
        )
    }

    pub(crate) fn unknown_field(field: &str, suggestions: &[&str]) -> Self {
        let mut message = format!("unknown field {}", Quoted(field));
        if let Some((last, rest)) = suggestions.split_last() {
            message.push_str("; did you mean ");
            // `a or b`; `a, b, or c`.
            let separator = if rest.len() > 1 { ", " } else { " " };
            for name in rest {
                message.push_str(&format!("`{name}`{separator}"));
            }
            if !rest.is_empty() {
                message.push_str("or ");
            }
            message.push_str(&format!("`{last}`?"));
        }
        Self::new(QueryErrorKind::UnknownField, message)
    }
}

/// Writes user text in backticks, cut to a readable length (a value may be up to 4 KiB).
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_CHARS: usize = 64;
        let mut chars = self.0.chars();
        let head: String = chars.by_ref().take(MAX_CHARS).collect();
        let ellipsis = if chars.next().is_some() { "…" } else { "" };
        write!(f, "`{}{ellipsis}`", head.escape_debug())
    }
}
