//! ListSessionsV2: request validation, one keyset page, and its metadata.

use connectrpc::ConnectError;
use gatehouse_core::time::{now_micros, parse_rfc3339};
use gatehouse_core::{Micros, OrgId, Session};
use gatehouse_store::{Direction, ListQuery, Position, SortKey, Store};

use crate::cursor::{Cursor, CursorCodec, fingerprint};
use crate::error::{invalid, store_error};

pub const DEFAULT_LIMIT: i32 = 100;
pub const MAX_LIMIT: i32 = 100_000;

/// A ListSessionsV2 request, as its fields arrived.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListRequest<'a> {
    pub limit: i32,
    pub query: &'a str,
    pub sort_by: &'a str,
    pub start_timestamp: &'a str,
    pub end_timestamp: &'a str,
    pub cursor: &'a str,
}

/// One page, in display order, with the cursors around it.
#[derive(Debug)]
pub struct Page {
    pub sessions: Vec<Session>,
    /// Fetches the following page; empty on the last page.
    pub after: String,
    /// Fetches the preceding page; empty on the first page.
    pub before: String,
    /// The instant the walk measures active sessions' durations to, for ordering and for
    /// showing them alike.
    pub now: Micros,
}

pub fn parse_sort(text: &str) -> Result<(SortKey, Direction), ConnectError> {
    let text = text.trim();
    let (field, direction) = match text.rsplit_once(':') {
        Some((field, dir)) => (field, Some(dir)),
        None => (text, None),
    };
    // In any case, as the direction is: `START_TIME`, `startTime`, `start_time`.
    let key = match field.to_ascii_lowercase().as_str() {
        // Absent: the default. (`:asc` alone names no field.)
        "" if direction.is_none() => SortKey::StartTime,
        "start_time" | "starttime" => SortKey::StartTime,
        "end_time" | "endtime" => SortKey::EndTime,
        "duration" => SortKey::Duration,
        _ => {
            return Err(invalid(format!(
                "cannot sort by {field:?}: sort_by takes start_time, end_time or duration, optionally followed by :asc or :desc"
            )));
        }
    };
    let direction = match direction.map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => Direction::Desc,
        Some("asc") => Direction::Asc,
        Some(other) => {
            return Err(invalid(format!("unknown sort direction {other:?}: use asc or desc")));
        }
    };
    Ok((key, direction))
}

/// A window bound, in the microsecond at or above the time given: the window's sessions are
/// those that started before its end and had not ended before its start, and of whole
/// microseconds, those below a time finer than one are those below the one above it.
fn parse_bound(name: &str, text: &str) -> Result<Option<Micros>, ConnectError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_rfc3339(text).map(|at| Some(at.ceil())).ok_or_else(|| {
        invalid(format!("{name} {text:?} is not an RFC 3339 time from year 1 to 9999, such as 2024-01-31T12:00:00Z"))
    })
}

/// The `start_timestamp`/`end_timestamp` window; either bound may be absent.
pub fn parse_window(start: &str, end: &str) -> Result<(Option<Micros>, Option<Micros>), ConnectError> {
    let window = (parse_bound("start_timestamp", start)?, parse_bound("end_timestamp", end)?);
    if let (Some(start), Some(end)) = window
        && start > end
    {
        return Err(invalid("start_timestamp is after end_timestamp"));
    }
    Ok(window)
}

/// A query in the search language, with relative times measured from `now`.
pub fn parse_filter(query: &str, now: Micros) -> Result<gatehouse_query::Expr, ConnectError> {
    gatehouse_query::parse(query, now).map_err(|e| invalid(format!("invalid query: {e}")))
}

/// Runs one ListSessionsV2 page for `org`.
pub async fn list_page(
    store: &dyn Store,
    codec: &CursorCodec,
    org: OrgId,
    req: ListRequest<'_>,
) -> Result<Page, ConnectError> {
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n if (1..=MAX_LIMIT).contains(&n) => n,
        n => {
            return Err(invalid(format!("limit {n} is out of range: use 1 to {MAX_LIMIT}, or 0 for {DEFAULT_LIMIT}")));
        }
    } as usize;
    let (sort, direction) = parse_sort(req.sort_by)?;
    let (window_start, window_end) = parse_window(req.start_timestamp, req.end_timestamp)?;
    let listing = fingerprint(&[
        &org.0.to_string(),
        // As written (its `now-24h` is measured from the first page's clock), but for the
        // spaces around it, which a client may trim on one page and not on the next.
        req.query.trim(),
        &format!("{sort:?}:{direction:?}"),
        &format!("{window_start:?}"),
        &format!("{window_end:?}"),
    ]);
    let cursor = match req.cursor.trim() {
        "" => None,
        text => Some(codec.decode(text, &listing).map_err(|e| invalid(e.to_string()))?),
    };
    let now = match (&cursor, sort) {
        (Some(cursor), _) => cursor.now,
        // Keys that change when a session ends are taken as they stood at `now`: a clock read
        // once every end recorded before it can be seen, or a session could be listed twice.
        (None, SortKey::EndTime | SortKey::Duration) => store.listing_clock().await.map_err(store_error)?,
        (None, SortKey::StartTime) => now_micros(),
    };
    let filter = parse_filter(req.query, now)?;
    let backward = cursor.as_ref().is_some_and(|c| c.backward);
    let query = ListQuery {
        filter,
        window_start,
        window_end,
        sort,
        direction,
        after: cursor.as_ref().map(|c| Position { key: c.key, id: c.id.clone() }),
        reverse: backward,
        now,
        // One more than asked tells whether another page follows.
        limit: limit + 1,
    };
    let mut sessions = store.list_sessions(org, &query).await.map_err(store_error)?;
    let more = sessions.len() > limit;
    sessions.truncate(limit);
    if backward {
        sessions.reverse();
    }
    let mark = |backward: bool, s: &Session| {
        codec.encode(&Cursor { backward, now, key: query.key_of(s), id: s.id.clone() }, &listing)
    };
    let (first, last) = (sessions.first(), sessions.last());
    let (after, before) = if backward {
        (last.map(|s| mark(false, s)), first.filter(|_| more).map(|s| mark(true, s)))
    } else {
        let before = match (&cursor, first) {
            (Some(_), Some(s)) => Some(mark(true, s)),
            // An empty page past a cursor still leads back to where it was.
            (Some(c), None) => Some(codec.encode(&Cursor { backward: true, ..c.clone() }, &listing)),
            (None, _) => None,
        };
        (last.filter(|_| more).map(|s| mark(false, s)), before)
    };
    Ok(Page { sessions, after: after.unwrap_or_default(), before: before.unwrap_or_default(), now })
}
