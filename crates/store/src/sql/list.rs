//! The keyset-paged listing statement.
//!
//! Ordering by start time is one index scan. Ordering by end time or duration
//! needs a key that active sessions do not store (they have not ended), so
//! those listings read index-ordered arms, completed and active, and merge
//! them: each arm is itself a bounded, index-ordered scan.
//!
//! Those keys change when a session ends. A walk takes them as they stood at
//! its `now`, so that a session ending mid-walk keeps its place and is listed
//! once: a session whose end was recorded after `now` (`end_recorded_us`, never
//! before its end) still sorts as active, and is listed as active, so that
//! [`ListQuery::key_of`] gives the key it was placed by. Its end time cannot
//! tell: an end may reach the store long after it.

use gatehouse_core::OrgId;
use gatehouse_query::Expr;

use super::builder::{Dialect, SqlBuilder};
use super::filter::{AsOf, Rows, push_filter};
use crate::model::{ACTIVE_END_KEY, Direction, ListQuery, SortKey};

/// The columns of a session but its end, which a listing shows as it stood at its `now`.
macro_rules! session_columns_but_end {
    () => {
        "s.pk, s.id, s.start_us, s.client_ip, s.server_ip, \
         s.sidecar_id, s.sidecar_name, s.sidecar_technology, s.user_type, s.user_username, \
         s.user_id, s.user_name, s.user_email, s.user_formal_type, s.user_groups, s.user_external_ids, \
         s.end_user_id, s.end_user_name, s.end_user_email, s.end_user_type, s.end_user_groups, \
         s.end_user_external_ids, s.native_username, s.resource_type, s.resource_id, s.resource_name, \
         s.resource_technology, s.connector_id, s.connector_name, s.run_id, s.parent_session_id"
    };
}

/// The columns a session is read from; readers find them by name.
pub const SESSION_COLUMNS: &str = concat!(session_columns_but_end!(), ", s.end_us");

/// One arm of a listing: a subset of sessions and its sort key expression.
struct Arm {
    only: Only,
    key: Key,
}

/// Which sessions an arm reads, as they stood at the walk's `now`: ended when their end was
/// recorded by then. An end counts as recorded no earlier than it is (`end_recorded_us >=
/// end_us`), so the end index's range (`end_us <= now`) holds every session ended by `now`.
/// The recording time is written
/// [`RECORDED`] where it only filters, an expression no index serves, so that SQLite does not
/// read the recording index instead of the one the arm is ordered by, and sort every completed
/// session for a first page.
enum Only {
    All,
    /// Ended by `now`, ordered by the end index, whose range this is.
    Ended,
    /// Ended by `now`, ordered by another index (duration's).
    EndedOrderedElsewhere,
    /// Not ended yet.
    Open,
    /// Ended since `now` (its end recorded since): active when the walk began, and listed so.
    EndedSince,
}

enum Key {
    Column(&'static str),
    Constant(i64),
    /// `now - start_us`: the elapsed time of an active session.
    Elapsed,
}

fn arms(sort: SortKey) -> Vec<Arm> {
    match sort {
        SortKey::StartTime => vec![Arm { only: Only::All, key: Key::Column("s.start_us") }],
        SortKey::EndTime => vec![
            Arm { only: Only::Ended, key: Key::Column("s.end_us") },
            Arm { only: Only::Open, key: Key::Constant(ACTIVE_END_KEY) },
            Arm { only: Only::EndedSince, key: Key::Constant(ACTIVE_END_KEY) },
        ],
        SortKey::Duration => vec![
            Arm { only: Only::EndedOrderedElsewhere, key: Key::Column("s.duration_us") },
            Arm { only: Only::Open, key: Key::Elapsed },
            Arm { only: Only::EndedSince, key: Key::Elapsed },
        ],
    }
}

/// How each arm of a listing finds its sessions in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Walk {
    /// Along the index of its sort key, testing each session against the filter until a page
    /// is found: at once when the filter matches many sessions throughout the order.
    #[default]
    Index,
    /// The sessions the filter matches first (through an index of the filter's own, or a
    /// scan), then sorted: the sort key is written so that no index serves the order. For a
    /// filter that matches few sessions, which a walk along the sort key's index tests every
    /// session to find when they lie at its far end (the shortest sessions of one connector,
    /// sorted longest first, took 8 s at a million sessions).
    FilterFirst,
}

/// The subqueries' names; PostgreSQL (before 16) requires one on every subquery in FROM.
const ARM_NAMES: [&str; 3] = ["ended", "open", "ended_since"];

/// Appends the full listing statement for `org`. `earliest_start` is a lower
/// bound on the start of any session overlapping the window (see the store),
/// which turns the window into an index range; `walk` says how the arms find their sessions.
pub fn push_list(b: &mut SqlBuilder, org: OrgId, q: &ListQuery, earliest_start: Option<i64>, walk: Walk) {
    // Walking backwards flips the scan, and the caller re-reverses the rows.
    let descending = (q.direction == Direction::Desc) != q.reverse;
    let order = if descending { "DESC" } else { "ASC" };
    let arms = arms(q.sort);
    let merged = arms.len() > 1;
    if merged {
        b.push("SELECT * FROM (");
    }
    for (i, arm) in arms.iter().enumerate() {
        if i > 0 {
            b.push(" UNION ALL ");
        }
        if merged {
            b.push("SELECT * FROM (");
        }
        b.push("SELECT ").push(session_columns_but_end!()).push(", ");
        push_end_as_listed(b, &arm.only);
        b.push(" AS end_us, ");
        push_key(b, &arm.key, q.now, walk);
        b.push(" AS sort_key FROM sessions s WHERE ");
        push_only(b, &arm.only, q.now);
        let as_of = AsOf { now: q.now, rows: arm.only.rows() };
        push_matching(b, org, q.window_start, q.window_end, earliest_start, &q.filter, as_of);
        if let Some(after) = &q.after {
            b.push(" AND (");
            push_key(b, &arm.key, q.now, walk);
            b.push(", s.id) ").push(if descending { "<" } else { ">" }).push(" (");
            b.bind_int(after.key).push(", ").bind_text(after.id.clone()).push(")");
        }
        b.push(" ORDER BY ");
        push_key(b, &arm.key, q.now, walk);
        b.push(" ").push(order).push(", s.id ").push(order);
        b.push(" LIMIT ").bind_int(q.limit as i64);
        if merged {
            b.push(")");
            if b.dialect() == Dialect::Postgres {
                b.push(" AS ").push(ARM_NAMES[i]);
            }
        }
    }
    if merged {
        b.push(")");
        if b.dialect() == Dialect::Postgres {
            b.push(" AS merged");
        }
        b.push(" ORDER BY sort_key ").push(order).push(", id ").push(order);
        b.push(" LIMIT ").bind_int(q.limit as i64);
    }
}

/// Appends a statement selecting the sessions `q` lists, in no order: for the planner's
/// estimate of how many there are, which decides its [`Walk`].
pub fn push_listed(b: &mut SqlBuilder, org: OrgId, q: &ListQuery, earliest_start: Option<i64>) {
    b.push("SELECT 1 FROM sessions s WHERE ");
    push_matching(b, org, q.window_start, q.window_end, earliest_start, &q.filter, AsOf::live(q.now));
}

/// Appends the condition for the sessions of `org` that overlap the window
/// and match `filter`: what a listing walks and aggregations count.
pub fn push_matching(
    b: &mut SqlBuilder,
    org: OrgId,
    window_start: Option<i64>,
    window_end: Option<i64>,
    earliest_start: Option<i64>,
    filter: &Expr,
    as_of: AsOf,
) {
    b.push("s.org_id = ").bind_int(org.0);
    if let Some(end) = window_end {
        b.push(" AND s.start_us < ").bind_int(end);
    }
    if let Some(start) = window_start {
        b.push(" AND (s.end_us IS NULL OR s.end_us >= ").bind_int(start).push(")");
        if let Some(earliest) = earliest_start {
            b.push(" AND s.start_us >= ").bind_int(earliest);
        }
    }
    b.push(" AND ");
    push_filter(b, filter, as_of);
}

impl Only {
    /// The sessions of this arm, as its filter may take them.
    fn rows(&self) -> Rows {
        match self {
            Only::All => Rows::Any,
            Only::Ended | Only::EndedOrderedElsewhere => Rows::Ended,
            Only::Open | Only::EndedSince => Rows::Open,
        }
    }
}

fn push_only(b: &mut SqlBuilder, only: &Only, now: i64) {
    match only {
        Only::All => {}
        Only::Ended => {
            b.push("s.end_us <= ").bind_int(now).push(" AND ").push(RECORDED).push(" <= ").bind_int(now).push(" AND ");
        }
        Only::EndedOrderedElsewhere => {
            // `end_us IS NOT NULL`: the condition of PostgreSQL's partial duration index.
            b.push("s.end_us IS NOT NULL AND ").push(RECORDED).push(" <= ").bind_int(now).push(" AND ");
        }
        Only::Open => {
            b.push("s.end_us IS NULL AND ");
        }
        Only::EndedSince => {
            b.push("s.end_recorded_us > ").bind_int(now).push(" AND ");
        }
    }
}

/// When a session's end was recorded: ends stored before the column was have none, and count
/// as recorded at their end (no backfill rewrites every session of a large store).
const RECORDED: &str = "COALESCE(s.end_recorded_us, s.end_us)";

/// Appends a session's end as the walk saw it at its `now`: none for one ended since, which
/// it placed as active, and whose key [`ListQuery::key_of`] gives from what is listed.
fn push_end_as_listed(b: &mut SqlBuilder, only: &Only) {
    b.push(match only {
        Only::EndedSince => "CAST(NULL AS BIGINT)",
        Only::All | Only::Ended | Only::EndedOrderedElsewhere | Only::Open => "s.end_us",
    });
}

fn push_key(b: &mut SqlBuilder, key: &Key, now: i64, walk: Walk) {
    match key {
        Key::Column(col) if walk == Walk::FilterFirst => {
            b.push("(").push(col).push(" + 0)");
        }
        Key::Column(col) => {
            b.push(col);
        }
        Key::Constant(value) => {
            b.bind_int(*value);
        }
        Key::Elapsed => {
            b.push("(").bind_int(now).push(" - s.start_us)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dialect: Dialect, sort: SortKey) -> String {
        let mut b = SqlBuilder::new(dialect);
        push_list(&mut b, OrgId(1), &ListQuery { sort, ..ListQuery::newest(10, 0) }, None, Walk::Index);
        b.into_parts().0
    }

    #[test]
    fn postgres_names_every_subquery_of_a_merged_listing() {
        let pg = listing(Dialect::Postgres, SortKey::EndTime);
        assert!(pg.contains(") AS ended UNION ALL ") && pg.contains(") AS ended_since) AS merged ORDER BY"), "{pg}");
        let sqlite = listing(Dialect::Sqlite, SortKey::EndTime);
        assert!(!sqlite.contains(" AS ended") && !sqlite.contains(" AS merged"), "{sqlite}");
        assert!(!listing(Dialect::Postgres, SortKey::StartTime).contains(" AS merged"));
    }
}
