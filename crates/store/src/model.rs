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
            // As the session stood at `now` (see the listing statement): one that has ended
            // since is still active here. The listing shows such a session without its end, as
            // it placed it, even when its end came late and is before `now`; a session read
            // otherwise is taken as ended by its end time alone.
            SortKey::EndTime => session.end.filter(|&end| end <= self.now).unwrap_or(ACTIVE_END_KEY),
            // An active session's is unclamped, as the SQL key expression is (a stored end is
            // never before its start: see [`stored_end`]).
            SortKey::Duration => session.end.filter(|&end| end <= self.now).unwrap_or(self.now) - session.start,
        }
    }
}

/// The end-time sort key of an active session: after every real end time.
pub const ACTIVE_END_KEY: i64 = i64::MAX;

/// The SQLite store's clock, read as it records an end (`sessions.end_recorded_us`) holding the
/// writer, and by [`Store::listing_clock`](crate::Store::listing_clock) for a walk's `now`, so
/// that an end written after a walk began counts as after its `now` however early the end
/// itself. (PostgreSQL's is the database's, behind a lock: see `postgres/connectors.rs`.)
pub(crate) fn recording_clock() -> Micros {
    gatehouse_core::time::now_micros()
}

/// When `session` ended, as stored: never before it started (a connector's clock stepped
/// back), so no duration is negative and every write path agrees with [`ListQuery::key_of`].
/// The end-event updates clamp the same way in SQL.
pub(crate) fn stored_end(session: &gatehouse_core::Session) -> Option<Micros> {
    session.end.map(|end| end.max(session.start))
}

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
    /// Its runs (processes) not taken for gone by the lease sweep, nor taken over by a
    /// successor.
    pub running: i64,
    /// Its previous key's prefix, while a rotation lets it work on, and until when.
    pub old_key_prefix: Option<String>,
    pub old_key_until: Option<Micros>,
    /// When its key was revoked, unless it was given one since.
    pub revoked: Option<Micros>,
}

/// What becomes of a connector's key when [`Store::replace_connector_key`](crate::Store::replace_connector_key)
/// gives it another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReplacement {
    /// The old key stops at once.
    Rotate,
    /// The old key works on until then (`rotate-key --overlap`).
    Overlap { until: Micros },
    /// The new key is one nobody is shown: the connector's key is revoked, since `at`.
    Revoke { at: Micros },
}

impl KeyReplacement {
    /// Until when the old key works, if it does.
    pub fn old_key_until(self) -> Option<Micros> {
        match self {
            KeyReplacement::Overlap { until } => Some(until),
            KeyReplacement::Rotate | KeyReplacement::Revoke { .. } => None,
        }
    }

    /// When the key was revoked, if it was.
    pub fn revoked(self) -> Option<Micros> {
        match self {
            KeyReplacement::Revoke { at } => Some(at),
            KeyReplacement::Rotate | KeyReplacement::Overlap { .. } => None,
        }
    }
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
    /// When the key looked up is the connector's previous one, which
    /// [`Store::replace_connector_key`](crate::Store::replace_connector_key) let work until then.
    pub key_until: Option<Micros>,
    /// When the key looked up was revoked (`connectors revoke`, [`KeyReplacement::Revoke`]): it
    /// works no more. Its `key_until` is then the same time.
    pub revoked: Option<Micros>,
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
    pub status: StatementStatus,
    /// Rows it inserted, updated, deleted, merged or copied in.
    pub rows_changed: i64,
}

/// A statement's place in the order a session's statements started: `(start, seq)`.
pub type StatementKey = (Micros, u64);

impl StatementRecord {
    pub fn key(&self) -> StatementKey {
        (self.start, self.seq)
    }
}

/// Which of a session's statements to read, in the order they started: those after `after`,
/// at most `limit` of them, and only as many as [`StatementsPage::size`] says fit in `bytes`
/// (but always the first), so that a page of long statements stays a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementsPage {
    pub after: Option<StatementKey>,
    pub limit: usize,
    pub bytes: usize,
}

impl StatementsPage {
    /// Every statement.
    pub const ALL: Self = Self { after: None, limit: usize::MAX, bytes: usize::MAX };

    /// What a statement's fields but its text take, as an API sends them, at most (its times,
    /// counts, SQLSTATE and status): a page of many short statements is as large as their
    /// texts several times over.
    pub const FIELD_BYTES: usize = 64;

    /// What `statement` counts for in a page's bytes.
    pub fn size(statement: &StatementRecord) -> usize {
        statement.text.len() + Self::FIELD_BYTES
    }

    /// Whether `statement` is past where the page starts.
    pub fn follows(&self, statement: &StatementRecord) -> bool {
        self.after.is_none_or(|after| statement.key() > after)
    }

    /// How many of `statements` (in order, each past `after`) the page holds.
    pub fn fitting(&self, statements: &[StatementRecord]) -> usize {
        let mut bytes = 0usize;
        let held = statements.iter().take(self.limit).take_while(|statement| {
            bytes = bytes.saturating_add(Self::size(statement));
            bytes <= self.bytes
        });
        held.count().max(usize::from(!statements.is_empty() && self.limit > 0))
    }
}

/// Whether a statement's outcome is known: see [`Store::statements`](crate::Store::statements).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatementStatus {
    /// Reported complete, with its duration, rows and outcome.
    #[default]
    Completed,
    /// Running in an open session: no duration, rows or outcome yet.
    Running,
    /// Running when its connector was lost: it lasts until the session's end, and its rows
    /// and outcome were never reported.
    Unreported,
}

impl StatementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementStatus::Completed => "completed",
            StatementStatus::Running => "running",
            StatementStatus::Unreported => "unreported",
        }
    }
}

/// What a connector reports, in order. Each is stored at most once: the
/// start by session id, statements by (session, seq), the end once.
#[derive(Debug, Clone)]
pub enum IngestEvent {
    Start(Box<gatehouse_core::Session>),
    Statement {
        session_id: String,
        statement: StatementRecord,
    },
    /// A statement still running: its seq, start and text. The transcript of an open session
    /// ends with it until a statement with a later seq is stored; a session keeps the latest.
    Running {
        session_id: String,
        statement: StatementRecord,
    },
    End {
        session_id: String,
        end: Micros,
        reason: String,
    },
}

impl IngestEvent {
    /// The sessions `events` start, in order.
    pub fn started(events: &[IngestEvent]) -> Vec<gatehouse_core::Session> {
        events
            .iter()
            .filter_map(|e| match e {
                IngestEvent::Start(session) => Some((**session).clone()),
                _ => None,
            })
            .collect()
    }

    /// The runs the sessions `events` start belong to, each with its latest start, in order
    /// of run id (the order writers lock runs in).
    pub fn runs(events: &[IngestEvent]) -> Vec<(&str, Micros)> {
        let mut runs: std::collections::BTreeMap<&str, Micros> = std::collections::BTreeMap::new();
        for event in events {
            if let IngestEvent::Start(session) = event
                && !session.connector.run_id.is_empty()
            {
                let latest = runs.entry(session.connector.run_id.as_str()).or_insert(session.start);
                *latest = (*latest).max(session.start);
            }
        }
        runs.into_iter().collect()
    }
}

/// A run a new one takes over from (see [`crate::Store::connector_hello`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousRun {
    pub run_id: String,
    /// When the run last knew itself alive, by its connector's clock: a connector records it
    /// whether or not the control plane hears it. `None` when not said (older connectors).
    pub alive: Option<Micros>,
}

impl PreviousRun {
    /// A run its successor says nothing more of.
    pub fn named(run_id: impl Into<String>) -> Self {
        Self { run_id: run_id.into(), alive: None }
    }

    /// When the open sessions of this run, last heard at `last_heard` and taken over at `at`,
    /// end at the earliest: when it last knew itself alive if that is later than when it was
    /// last heard (it may have lived through an outage of the control plane), but never after
    /// `at`, however far ahead its connector's clock.
    pub(crate) fn ended(&self, last_heard: Micros, at: Micros) -> Micros {
        self.alive.map_or(last_heard, |alive| last_heard.max(alive.min(at)))
    }

    /// The runs of `previous` but `run_id` (the run taking over), once each in run id order
    /// (the order their rows are locked in), with the latest time each was said to be alive.
    pub(crate) fn taken_over(previous: &[PreviousRun], run_id: &str) -> Vec<PreviousRun> {
        let mut runs: Vec<PreviousRun> = previous.iter().filter(|run| run.run_id != run_id).cloned().collect();
        runs.sort_unstable_by(|a, b| a.run_id.cmp(&b.run_id).then(b.alive.cmp(&a.alive)));
        runs.dedup_by(|later, first| later.run_id == first.run_id);
        runs
    }
}

/// A request to end a live session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TerminationRecord {
    pub id: String,
    pub session_id: String,
    pub connector_id: String,
    pub reason: String,
    #[sqlx(rename = "created_us")]
    pub created: Micros,
}

/// `end_reason` of sessions completed for a connector that went silent.
pub const LEASE_END_REASON: &str = "lease";

/// How long the lease sweep remembers a run it took for gone: heard again within this time,
/// the run gets its sessions back.
pub const RUN_MEMORY: Micros = 7 * 24 * 3600 * 1_000_000;

/// What ListSessionAggregations counts, already validated. Sessions match
/// exactly as in a listing with the same filter and window.
#[derive(Debug, Clone)]
pub struct AggregateQuery {
    pub filter: gatehouse_query::Expr,
    pub window_start: Option<Micros>,
    pub window_end: Option<Micros>,
    /// The instant relative times and active durations are measured at; also
    /// the end of an open window.
    pub now: Micros,
    pub histogram: Option<HistogramSpec>,
    pub facets: Vec<Facet>,
    /// Keys kept per facet, the most frequent first.
    pub facet_limit: usize,
}

/// Sessions counted by start time (a session that started before the window
/// counts in its first bucket), optionally split by up to three fields.
#[derive(Debug, Clone)]
pub struct HistogramSpec {
    /// Bucket width; `None` picks one giving at most about
    /// [`TARGET_BUCKETS`] buckets.
    pub interval: Option<Micros>,
    pub group_by: Vec<gatehouse_query::Field>,
}

/// Buckets an automatic interval aims for at most.
pub const TARGET_BUCKETS: i64 = 100;
/// Buckets a histogram may have at most, whatever the interval asked for.
pub const MAX_BUCKETS: i64 = 10_000;
/// Nested group-by buckets a histogram may have at most, over all levels.
pub const MAX_GROUP_ROWS: usize = 100_000;

/// A list of the most frequent values of one property of matching sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Facet {
    ResourceTechnology,
    SessionId,
    ClientIp,
    ServerIp,
    ResourceId,
    ResourceName,
    ResourceType,
    ResourceHost,
    ConnectorName,
    ConnectorId,
    UserType,
    UserFormalType,
    UserEmail,
    UserUsername,
    UserId,
    EndUserType,
    EndUserName,
    EndUserEmail,
    /// Normalized statement text, counting sessions that ran it.
    QueryFingerprint,
    /// Statements per session, in decimal ranges (`0`, `1-9`, `10-99`, ...).
    Statements,
    /// Bytes sent to the client per session, in decimal ranges.
    BytesSent,
    /// Rows sent to the client per session, in decimal ranges.
    RowsSent,
}

impl Facet {
    /// Every facet, in the order of the public response's fields.
    pub const ALL: [Facet; 22] = [
        Facet::ResourceTechnology,
        Facet::SessionId,
        Facet::ClientIp,
        Facet::ServerIp,
        Facet::QueryFingerprint,
        Facet::Statements,
        Facet::ResourceId,
        Facet::ResourceName,
        Facet::ResourceType,
        Facet::ResourceHost,
        Facet::ConnectorName,
        Facet::ConnectorId,
        Facet::UserType,
        Facet::UserFormalType,
        Facet::UserEmail,
        Facet::UserUsername,
        Facet::UserId,
        Facet::EndUserType,
        Facet::EndUserName,
        Facet::EndUserEmail,
        Facet::BytesSent,
        Facet::RowsSent,
    ];
}

/// A count of sessions for one key, with its nested split when grouped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCount {
    pub key: String,
    pub count: u64,
    pub groups: Vec<KeyCount>,
}

/// One histogram bucket, starting at `start`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateCount {
    pub start: Micros,
    pub count: u64,
    pub groups: Vec<KeyCount>,
}

/// The answer to an [`AggregateQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    /// Matching sessions.
    pub num_hits: u64,
    /// The bucket width used (chosen when not asked for); 0 without a histogram.
    pub interval: Micros,
    /// Every bucket of the window in order, empty ones included.
    pub histogram: Vec<DateCount>,
    /// One list per requested facet, in the requested order.
    pub facets: Vec<(Facet, Vec<KeyCount>)>,
}
