//! Compiles a query AST into a SQL boolean expression over `sessions s`.

use std::borrow::Cow;
use std::ops::Bound;
use std::slice;

use gatehouse_query::{Expr, Field, FieldKind, Op, Predicate, Value};

use super::builder::{Arg, Dialect, SqlBuilder};
use super::fold;
use crate::ip;

/// Where a field lives in the `sessions` table (aliased `s`).
enum Column {
    /// A plain column.
    Plain(&'static str),
    /// Text form for display and substring search, 16-byte form for comparisons.
    Ip { text: &'static str, bytes: &'static str },
    /// A many-valued field in `session_values`, by its field code.
    Many(i64),
    /// `active` while `end_us` is NULL, else `completed`.
    Status,
    /// Stored for completed sessions; elapsed up to `now` for active ones.
    Duration,
}

/// Codes of many-valued fields in `session_values.field`.
pub const USER_GROUPS: i64 = 1;
pub const USER_EXTERNAL_IDS: i64 = 2;
pub const END_USER_GROUPS: i64 = 3;

fn column(field: Field) -> Column {
    use Column::*;
    match field {
        Field::Id => Plain("s.id"),
        Field::SessionStatus => Status,
        Field::StartTime => Plain("s.start_us"),
        Field::EndTime => Plain("s.end_us"),
        Field::Duration => Duration,
        Field::ParentSessionId => Plain("s.parent_session_id"),
        Field::ClientIp => Ip { text: "s.client_ip", bytes: "s.client_ip_bin" },
        Field::ServerIp => Ip { text: "s.server_ip", bytes: "s.server_ip_bin" },
        Field::SidecarId => Plain("s.sidecar_id"),
        Field::SidecarName => Plain("s.sidecar_name"),
        Field::SidecarTechnology => Plain("s.sidecar_technology"),
        Field::UserType => Plain("s.user_type"),
        Field::UserUsername => Plain("s.user_username_fold"),
        Field::UserId => Plain("s.user_id"),
        Field::UserName => Plain("s.user_name_fold"),
        Field::UserEmail => Plain("s.user_email_fold"),
        Field::UserFormalType => Plain("s.user_formal_type"),
        Field::UserGroups => Many(USER_GROUPS),
        Field::UserExternalIds => Many(USER_EXTERNAL_IDS),
        Field::EndUserId => Plain("s.end_user_id"),
        Field::EndUserName => Plain("s.end_user_name_fold"),
        Field::EndUserEmail => Plain("s.end_user_email_fold"),
        Field::EndUserType => Plain("s.end_user_type"),
        Field::EndUserGroups => Many(END_USER_GROUPS),
        Field::NativeUsername => Plain("s.native_username_fold"),
        Field::ResourceId => Plain("s.resource_id"),
        Field::ResourceName => Plain("s.resource_name_fold"),
        Field::ResourceType => Plain("s.resource_type"),
        Field::ResourceTechnology => Plain("s.resource_technology"),
        Field::ConnectorId => Plain("s.connector_id"),
        Field::ConnectorName => Plain("s.connector_name_fold"),
    }
}

/// How a filter sees the sessions it tests.
#[derive(Debug, Clone, Copy)]
pub struct AsOf {
    /// The listing's instant: active sessions' durations run to it.
    pub now: i64,
    /// Which sessions the rows are, as the filter may take them.
    pub rows: Rows,
}

/// Which sessions a filter tests, as a listing's arm knows them (see `sql/list.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Any session, ended or not.
    Any,
    /// Sessions ended by `now`: their duration is the stored one, never NULL, so that a
    /// duration predicate is a range of the duration index rather than a filter on every entry
    /// the walk reads.
    Ended,
    /// Sessions open at `now`, as a walk lists them: with no end time, their duration running to
    /// `now`. Those ended since then (their end recorded after `now`) are listed so too.
    Open,
}

impl AsOf {
    /// Sessions as they are, active ones measured to `now`.
    pub fn live(now: i64) -> Self {
        Self { now, rows: Rows::Any }
    }
}

/// Appends `expr` as a boolean SQL expression over sessions seen `as_of`.
pub fn push_filter(b: &mut SqlBuilder, expr: &Expr, as_of: AsOf) {
    match expr {
        Expr::All => {
            b.push("1 = 1");
        }
        Expr::And(parts) => push_joined(b, parts, " AND ", "1 = 1", as_of),
        Expr::Or(parts) => push_joined(b, &with_sets_merged(parts), " OR ", "1 = 0", as_of),
        Expr::Not(inner) => {
            // `IS NOT TRUE` keeps NOT two-valued: an active session has no
            // end time, so it must match `NOT end_time:>X`.
            b.push("((");
            push_filter(b, inner, as_of);
            b.push(") IS NOT TRUE)");
        }
        Expr::Pred(pred) => push_predicate(b, pred, as_of),
    }
}

/// `parts` of an OR with the values sought in each many-valued field gathered in one set:
/// `group:a OR group:b` tests a session's groups once, for either, not once for each (256
/// of them took SQLite 30 s over 50,000 sessions).
fn with_sets_merged(parts: &[Expr]) -> Cow<'_, [Expr]> {
    fn sought(part: &Expr) -> Option<(Field, &[Value])> {
        match part {
            Expr::Pred(Predicate { field, op: Op::Eq(v) }) if field.is_many_valued() => {
                Some((*field, slice::from_ref(v)))
            }
            Expr::Pred(Predicate { field, op: Op::In(vs) }) if field.is_many_valued() => Some((*field, vs.as_slice())),
            _ => None,
        }
    }
    let mut sets: Vec<(Field, Vec<Value>)> = Vec::new();
    let mut rest = Vec::new();
    for part in parts {
        match sought(part) {
            Some((field, values)) => match sets.iter_mut().find(|(f, _)| *f == field) {
                Some((_, set)) => set.extend_from_slice(values),
                None => sets.push((field, values.to_vec())),
            },
            None => rest.push(part.clone()),
        }
    }
    if rest.len() + sets.len() == parts.len() {
        return Cow::Borrowed(parts);
    }
    let sets = sets.into_iter().map(|(field, values)| Expr::Pred(Predicate { field, op: Op::In(values) }));
    Cow::Owned(sets.chain(rest).collect())
}

fn push_joined(b: &mut SqlBuilder, parts: &[Expr], sep: &str, empty: &str, as_of: AsOf) {
    if parts.is_empty() {
        b.push(empty);
        return;
    }
    b.push("(");
    push_balanced(b, parts, sep, as_of);
    b.push(")");
}

/// Joins long lists as nested halves. SQLite's parser nests `a OR b OR c …` one level per
/// operator and refuses expressions over 1,000 levels deep, which 125 bare terms reach (each
/// searches 8 fields); halves keep the depth logarithmic. Parentheses create no nodes, so the
/// planners see the same flat list of terms.
fn push_balanced(b: &mut SqlBuilder, parts: &[Expr], sep: &str, as_of: AsOf) {
    const FLAT: usize = 8;
    if parts.len() <= FLAT {
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                b.push(sep);
            }
            push_filter(b, part, as_of);
        }
        return;
    }
    let (left, right) = parts.split_at(parts.len() / 2);
    b.push("(");
    push_balanced(b, left, sep, as_of);
    b.push(")").push(sep).push("(");
    push_balanced(b, right, sep, as_of);
    b.push(")");
}

fn push_predicate(b: &mut SqlBuilder, pred: &Predicate, as_of: AsOf) {
    let kind = pred.field.kind();
    let now = as_of.now;
    match column(pred.field) {
        // Open as the walk lists them: no end, active (and elapsed to `now`, below).
        Column::Plain("s.end_us") if as_of.rows == Rows::Open => push_op(b, &|b| push_text(b, NO_END), kind, &pred.op),
        Column::Status if as_of.rows != Rows::Any => {
            let status = match (as_of.rows, b.dialect()) {
                (Rows::Open, Dialect::Sqlite) => "'active'",
                (Rows::Open, Dialect::Postgres) => "('active' COLLATE \"C\")",
                (_, Dialect::Sqlite) => "'completed'",
                (_, Dialect::Postgres) => "('completed' COLLATE \"C\")",
            };
            push_op(b, &|b| push_text(b, status), FieldKind::Keyword, &pred.op)
        }
        Column::Plain(col) => push_op(b, &|b| push_text(b, col), kind, &pred.op),
        Column::Ip { text, bytes } => match &pred.op {
            // Substring search looks at the address as written.
            Op::Contains(_) | Op::Prefix(_) => push_op(b, &|b| push_text(b, text), FieldKind::Keyword, &pred.op),
            Op::Exists => {
                b.push(bytes).push(" IS NOT NULL");
            }
            _ => push_op(b, &|b| push_text(b, bytes), kind, &pred.op),
        },
        Column::Many(code) => {
            // Correlated, so a paged listing probes only the rows it walks.
            b.push("EXISTS (SELECT 1 FROM session_values v WHERE v.session_pk = s.pk AND v.field = ");
            b.bind_int(code);
            if pred.op != Op::Exists {
                b.push(" AND ");
                // SQLite would seek the index once for each value of a set, for each session;
                // unary `+` keeps it to the session's few values, each looked up in the set.
                let value = match (&pred.op, b.dialect()) {
                    (Op::In(values), Dialect::Sqlite) if values.len() > 1 => "+v.value",
                    _ => "v.value",
                };
                push_op(b, &|b| push_text(b, value), FieldKind::Keyword, &pred.op);
            }
            b.push(")");
        }
        Column::Status => match &pred.op {
            // The common cases in the shape the partial index serves.
            Op::Eq(Value::Str(v)) if v == "active" => {
                b.push("s.end_us IS NULL");
            }
            Op::Eq(Value::Str(v)) if v == "completed" => {
                b.push("s.end_us IS NOT NULL");
            }
            op => {
                // Byte-wise like every stored keyword, whatever the database's locale.
                let status = match b.dialect() {
                    Dialect::Sqlite => "(CASE WHEN s.end_us IS NULL THEN 'active' ELSE 'completed' END)",
                    Dialect::Postgres => {
                        "(CASE WHEN s.end_us IS NULL THEN 'active' ELSE 'completed' END COLLATE \"C\")"
                    }
                };
                push_op(b, &|b| push_text(b, status), FieldKind::Keyword, op)
            }
        },
        Column::Duration => {
            let duration = move |b: &mut SqlBuilder| {
                match as_of.rows {
                    Rows::Ended => b.push("s.duration_us"),
                    Rows::Open => b.push("(").bind_int(now).push(" - s.start_us)"),
                    Rows::Any => b.push("COALESCE(s.duration_us, ").bind_int(now).push(" - s.start_us)"),
                };
            };
            push_op(b, &duration, kind, &pred.op)
        }
    }
}

/// The end of a session listed as open.
const NO_END: &str = "CAST(NULL AS BIGINT)";

fn push_text(b: &mut SqlBuilder, sql: &'static str) {
    b.push(sql);
}

fn push_op(b: &mut SqlBuilder, col: &dyn Fn(&mut SqlBuilder), kind: FieldKind, op: &Op) {
    // A keyword or text a session does not have is stored as `''`: it is in no range, equals
    // no value, and starts with nothing (an empty prefix asks whether there is one).
    if matches!(kind, FieldKind::Keyword | FieldKind::Text) {
        let empty = |v: &Value| matches!(v, Value::Str(s) if s.is_empty());
        match op {
            Op::Eq(v) if empty(v) => {
                b.push("1 = 0");
                return;
            }
            Op::In(values) if values.iter().any(empty) => {
                let present = values.iter().filter(|v| !empty(v)).cloned().collect();
                return push_op(b, col, kind, &Op::In(present));
            }
            Op::Prefix(prefix) if prefix.is_empty() => return push_op(b, col, kind, &Op::Exists),
            Op::Range { .. } => {
                b.push("(");
                col(b);
                b.push(" <> '' AND ");
                push_value_op(b, col, kind, op);
                b.push(")");
                return;
            }
            _ => {}
        }
    }
    push_value_op(b, col, kind, op);
}

/// `op` over the values a column holds, absent ones included.
fn push_value_op(b: &mut SqlBuilder, col: &dyn Fn(&mut SqlBuilder), kind: FieldKind, op: &Op) {
    // Text fields compare their `_fold` columns with folded values.
    let folds = kind == FieldKind::Text;
    let value = |b: &mut SqlBuilder, value: &Value| {
        b.bind(match value {
            Value::Str(s) if folds => Arg::Text(fold(s)),
            other => arg(other),
        });
    };
    match op {
        Op::Eq(v) => {
            col(b);
            b.push(" = ");
            value(b, v);
        }
        Op::In(values) if values.is_empty() => {
            b.push("1 = 0");
        }
        Op::In(values) => {
            col(b);
            b.push(" IN (");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    b.push(", ");
                }
                value(b, v);
            }
            b.push(")");
        }
        Op::Prefix(prefix) => {
            // A range, so an index on the column serves it.
            let prefix = if folds { fold(prefix) } else { prefix.clone() };
            col(b);
            b.push(" >= ").bind_text(prefix.clone()).push(" AND ");
            col(b);
            b.push(" < ").bind_text(format!("{prefix}{}", char::MAX));
        }
        Op::Contains(needle) => {
            let needle = if folds { fold(needle) } else { needle.clone() };
            push_like(b, col, &format!("%{}%", escape_like(&needle)), folds);
        }
        Op::Range { lower, upper } => {
            let mut any = false;
            for (bound, inclusive, exclusive) in [(lower, " >= ", " > "), (upper, " <= ", " < ")] {
                let (v, cmp) = match bound {
                    Bound::Included(v) => (v, inclusive),
                    Bound::Excluded(v) => (v, exclusive),
                    Bound::Unbounded => continue,
                };
                b.push(if any { " AND " } else { "(" });
                any = true;
                col(b);
                b.push(cmp);
                value(b, v);
            }
            if any {
                b.push(")");
            } else {
                col(b);
                b.push(" IS NOT NULL");
            }
        }
        Op::Exists => {
            col(b);
            match kind {
                FieldKind::Keyword | FieldKind::Text => b.push(" <> ''"),
                _ => b.push(" IS NOT NULL"),
            };
        }
        Op::Cidr { first, last } => {
            col(b);
            b.push(" BETWEEN ").bind(Arg::Blob(ip::to_bytes(*first)));
            b.push(" AND ").bind(Arg::Blob(ip::to_bytes(*last)));
        }
    }
}

/// Substring match. Text fields arrive folded, pattern and column: a plain LIKE. Keywords and
/// addresses match as written, but bare-term search should not care about case either:
/// SQLite's LIKE folds ASCII, PostgreSQL needs ILIKE for the same (which costs it several
/// times a LIKE: a bare term took 40 ms at 50,000 sessions).
fn push_like(b: &mut SqlBuilder, col: &dyn Fn(&mut SqlBuilder), pattern: &str, folded: bool) {
    col(b);
    b.push(match b.dialect() {
        Dialect::Postgres if !folded => " ILIKE ",
        _ => " LIKE ",
    });
    b.bind_text(pattern).push(" ESCAPE '\\'");
}

/// Escapes LIKE's wildcards so a user's `%` or `_` matches itself.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn arg(value: &Value) -> Arg {
    match value {
        Value::Str(s) => Arg::Text(s.clone()),
        Value::Time(t) => Arg::Int(*t),
        Value::Duration(d) => Arg::Int(*d),
        Value::Ip(addr) => Arg::Blob(ip::to_bytes(*addr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(query: &str, dialect: Dialect) -> (String, Vec<Arg>) {
        let expr = gatehouse_query::parse(query, 1_000).expect("query parses");
        let mut b = SqlBuilder::new(dialect);
        push_filter(&mut b, &expr, AsOf::live(1_000));
        b.into_parts()
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let (sql, args) = compile(r#"user:"x' OR 1=1 --""#, Dialect::Sqlite);
        assert!(!sql.contains("OR 1=1"), "{sql}");
        assert!(args.contains(&Arg::Text("x' or 1=1 --".into())), "{args:?}");
    }

    #[test]
    fn text_fields_compare_folded() {
        let (sql, args) = compile("user.email:Élodie@Example.com", Dialect::Postgres);
        assert_eq!(sql, "s.user_email_fold = $1");
        assert_eq!(args, vec![Arg::Text("élodie@example.com".into())]);
    }

    #[test]
    fn like_wildcards_are_escaped() {
        let (_, args) = compile("alice%_b", Dialect::Sqlite);
        assert!(args.contains(&Arg::Text("%alice\\%\\_b%".into())), "{args:?}");
    }

    #[test]
    fn a_lists_terms_ored_together_test_its_values_once() {
        let (sql, args) = compile("group:a OR technology:mysql OR group:IN [b c]", Dialect::Sqlite);
        assert_eq!(sql.matches("EXISTS").count(), 1, "{sql}");
        assert!(sql.contains("+v.value IN (?, ?, ?)"), "{sql}");
        assert_eq!(args.iter().filter(|a| matches!(a, Arg::Text(t) if t.len() == 1)).count(), 3, "{args:?}");
        let (sql, _) = compile("group:a OR group:b", Dialect::Postgres);
        assert!(sql.contains("v.value IN ($2, $3)") && !sql.contains("+v"), "{sql}");
    }

    #[test]
    fn absent_keywords_and_texts_are_in_no_range() {
        let (sql, _) = compile("email:<b", Dialect::Sqlite);
        assert_eq!(sql, "(s.user_email_fold <> '' AND (s.user_email_fold < ?))");
        assert_eq!(compile("email:\"\"", Dialect::Sqlite).0, "1 = 0");
        assert_eq!(compile("email:\"\"*", Dialect::Sqlite).0, "s.user_email_fold <> ''");
    }

    #[test]
    fn negation_is_two_valued() {
        let (sql, _) = compile("-end_time:*", Dialect::Sqlite);
        assert!(sql.contains("IS NOT TRUE"), "{sql}");
    }
}
