//! The typed, backend-neutral query: what `parse` returns and the store compiles.
//!
//! `Display` writes a compact s-expression, e.g.
//! `(and user.formal.user.email="alice@example.com" (not session_status="active"))`, for logs
//! and tests; it is not meant to be parsed back.

use std::fmt;
use std::net::IpAddr;
use std::ops::Bound;

use crate::field::Field;
use crate::value::{cidr_prefix, format_duration, format_time};

/// A query.
///
/// `parse` returns it simplified: `And` and `Or` have at least two children, none of which is
/// an `And` inside an `And` or an `Or` inside an `Or`, and `All` only appears alone or under
/// `Not`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Matches every session (the empty query).
    All,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Pred(Predicate),
}

/// One condition on one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub field: Field,
    pub op: Op,
}

/// A typed value; its variant always matches the field's `FieldKind`
/// (`Str` for `Keyword` and `Text`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    /// Microseconds since the Unix epoch.
    Time(i64),
    /// Microseconds.
    Duration(i64),
    Ip(IpAddr),
}

/// What a predicate tests.
///
/// For a many-valued field (`Field::is_many_valued`) every operator matches when any element of
/// the list matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Equals the value; for `Text` fields the store compares case-insensitively.
    Eq(Value),
    /// Starts with the string (`user.email:alice*`); for `Text` fields case-insensitively, as
    /// `Eq`. Only on `Keyword` and `Text` fields, except
    /// in the expansion of a bare prefix term, where it also targets the `Ip` field's text form.
    Prefix(String),
    /// Contains the string, case-insensitively. Only produced by bare terms, which also search
    /// the `Ip` field's text form.
    Contains(String),
    /// Between the bounds (`[a TO b]`, `{a TO b}`, `>a`, `<=b`); both bounds have the field's type.
    /// Never both `Unbounded` (`[* TO *]` is `Exists`).
    Range { lower: Bound<Value>, upper: Bound<Value> },
    /// Equals any of the values (`technology:IN [postgres mysql]`); may be empty, matching nothing.
    In(Vec<Value>),
    /// The field is present (not null; for lists, not empty).
    Exists,
    /// An address of the network `first..=last` (`client_ip:10.0.0.0/8`); both of one family.
    Cidr { first: IpAddr, last: IpAddr },
}

impl Expr {
    pub(crate) fn pred(field: Field, op: Op) -> Expr {
        Expr::Pred(Predicate { field, op })
    }

    /// Conjunction of `children`, flattened: nested `And`s merge and `All` drops out.
    pub(crate) fn and(children: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(children.len());
        for child in children {
            match child {
                Expr::All => {}
                Expr::And(grandchildren) => flat.extend(grandchildren),
                other => flat.push(other),
            }
        }
        match flat.len() {
            0 => Expr::All,
            1 => flat.pop().unwrap_or(Expr::All),
            _ => Expr::And(flat),
        }
    }

    /// Disjunction of `children`, flattened: nested `Or`s merge and `All` absorbs the rest.
    pub(crate) fn or(children: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(children.len());
        for child in children {
            match child {
                Expr::All => return Expr::All,
                Expr::Or(grandchildren) => flat.extend(grandchildren),
                other => flat.push(other),
            }
        }
        match flat.len() {
            // Only an empty input gets here; an empty disjunction would match nothing, but no
            // caller builds one.
            0 => Expr::All,
            1 => flat.pop().unwrap_or(Expr::All),
            _ => Expr::Or(flat),
        }
    }

    /// Negation, with `NOT NOT a` folded to `a`.
    pub(crate) fn not(inner: Expr) -> Expr {
        match inner {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, head: &str, children: &[Expr]| {
            write!(f, "({head}")?;
            for child in children {
                write!(f, " {child}")?;
            }
            write!(f, ")")
        };
        match self {
            Expr::All => write!(f, "*"),
            Expr::And(children) => list(f, "and", children),
            Expr::Or(children) => list(f, "or", children),
            Expr::Not(inner) => write!(f, "(not {inner})"),
            Expr::Pred(predicate) => write!(f, "{predicate}"),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field;
        match &self.op {
            Op::Eq(value) => write!(f, "{field}={value}"),
            Op::Prefix(prefix) => write!(f, "{field}:{prefix:?}*"),
            Op::Contains(needle) => write!(f, "{field}~{needle:?}"),
            Op::Range { lower, upper } => {
                match lower {
                    Bound::Included(value) => write!(f, "{field}:[{value}")?,
                    Bound::Excluded(value) => write!(f, "{field}:{{{value}")?,
                    Bound::Unbounded => write!(f, "{field}:{{*")?,
                }
                match upper {
                    Bound::Included(value) => write!(f, " TO {value}]"),
                    Bound::Excluded(value) => write!(f, " TO {value}}}"),
                    Bound::Unbounded => write!(f, " TO *}}"),
                }
            }
            Op::In(values) => {
                write!(f, "{field}:IN [")?;
                for (i, value) in values.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    write!(f, "{sep}{value}")?;
                }
                write!(f, "]")
            }
            Op::Exists => write!(f, "{field}:*"),
            Op::Cidr { first, last } => match cidr_prefix(*first, *last) {
                Some(prefix) => write!(f, "{field}:{first}/{prefix}"),
                None => write!(f, "{field}:[{first} TO {last}]"),
            },
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(text) => write!(f, "{text:?}"),
            Value::Time(us) => f.write_str(&format_time(*us)),
            Value::Duration(us) => f.write_str(&format_duration(*us)),
            Value::Ip(address) => write!(f, "{address}"),
        }
    }
}
