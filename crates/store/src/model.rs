//! Records passed to and from the [`crate::Store`].

use gatehouse_core::{Micros, OrgId, Role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
}

/// A key to store: only the hash of its secret is kept.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub org: OrgId,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub name: String,
    pub role: Role,
    pub created: Micros,
}

/// A key as needed to authenticate a request.
#[derive(Debug, Clone)]
pub struct StoredApiKey {
    pub org: OrgId,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub role: Role,
    pub revoked: bool,
}

/// A key as shown to an administrator: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub prefix: String,
    pub name: String,
    pub role: Role,
    pub created: Micros,
    pub last_used: Option<Micros>,
    pub revoked: Option<Micros>,
}

/// Which time a listing is ordered by. Ties always break on the session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortKey {
    StartTime,
    /// Active sessions have no end yet and sort as if they ended last.
    EndTime,
    /// Active sessions sort by the time elapsed up to the listing's `now`.
    Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Asc,
    Desc,
}

/// A position in a listing's total order: the sort key value and the id of
/// the last session seen. Paging continues strictly after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub key: i64,
    pub id: String,
}

/// One page request, already validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: gatehouse_query::Expr,
    /// Sessions overlapping `[window_start, window_end)`; either bound optional.
    pub window_start: Option<Micros>,
    pub window_end: Option<Micros>,
    pub sort: SortKey,
    pub direction: Direction,
    /// Continue after this position (in the walking direction).
    pub after: Option<Position>,
    /// Walk against `direction` (to fetch the page before a position); rows
    /// are still returned in the walking order.
    pub reverse: bool,
    /// The instant relative times and active durations are measured at.
    pub now: Micros,
    pub limit: usize,
}

impl ListQuery {
    /// The newest `limit` sessions, unfiltered.
    pub fn newest(limit: usize, now: i64) -> Self {
        Self {
            filter: gatehouse_query::Expr::All,
            window_start: None,
            window_end: None,
            sort: SortKey::StartTime,
            direction: Direction::Desc,
            after: None,
            reverse: false,
            now,
            limit,
        }
    }

    /// The sort key value of `session` in this listing.
    pub fn key_of(&self, session: &gatehouse_core::Session) -> i64 {
        match self.sort {
            SortKey::StartTime => session.start,
            SortKey::EndTime => session.end.unwrap_or(ACTIVE_END_KEY),
            // Unclamped, to match the SQL key expression exactly.
            SortKey::Duration => session.end.unwrap_or(self.now) - session.start,
        }
    }
}

/// The end-time sort key of an active session: after every real end time.
pub const ACTIVE_END_KEY: i64 = i64::MAX;

/// A database or host that connectors front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    pub name: String,
    /// `datastore`, `instance`, `aws`.
    pub kind: String,
    /// `postgres`, ...
    pub technology: String,
    pub host: String,
    pub port: u16,
    pub created: Micros,
}

/// A connector as an administrator sees it: never its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorInfo {
    pub id: String,
    pub name: String,
    pub key_prefix: String,
    pub created: Micros,
    pub last_heard: Option<Micros>,
}

/// A connector to create, with the hash of its key.
#[derive(Debug, Clone)]
pub struct NewConnector {
    pub org: OrgId,
    pub id: String,
    pub name: String,
    pub key_prefix: String,
    pub key_hash: Vec<u8>,
    pub created: Micros,
}

/// A connector as needed to authenticate its calls.
#[derive(Debug, Clone)]
pub struct StoredConnector {
    pub org: OrgId,
    pub id: String,
    pub name: String,
    pub key_hash: Vec<u8>,
}

/// One statement of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementRecord {
    pub seq: u64,
    pub start: Micros,
    pub duration: Micros,
    pub text: String,
    pub rows: i64,
    pub bytes_sent: i64,
    pub sqlstate: String,
}

/// What a connector reports, in order. Each is stored at most once: the
/// start by session id, statements by (session, seq), the end once.
#[derive(Debug, Clone)]
pub enum IngestEvent {
    Start(Box<gatehouse_core::Session>),
    Statement { session_id: String, statement: StatementRecord },
    End { session_id: String, end: Micros, reason: String },
}

/// A request to end a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationRecord {
    pub id: String,
    pub session_id: String,
    pub connector_id: String,
    pub reason: String,
    pub created: Micros,
}

/// `end_reason` of sessions completed for a connector that went silent.
pub const LEASE_END_REASON: &str = "lease";
