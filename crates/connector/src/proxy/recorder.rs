//! Recording: turns the messages relayed in both directions into statements. No IO, no clock:
//! the relay passes each message and the time its batch arrived.
//!
//! A simple Query is one statement, complete at ReadyForQuery. In the extended protocol each
//! Execute is one statement, with the text of the Parse its portal was bound from, complete at
//! CommandComplete, EmptyQueryResponse or ErrorResponse. An Execute that stops at its row limit
//! (PortalSuspended) leaves the statement open, and the Executes that fetch the rest of that
//! portal (JDBC's fetch size, asyncpg's cursors) continue it: one query, its rows summed,
//! recorded when the portal is done, closed, bound anew or gone with its transaction; an Execute
//! past its end, which the server answers from there, running nothing, is none. Responses come in
//! the order of the requests, so requests wait in a FIFO with the Syncs between them; after an
//! error the server skips to the next Sync, and so does the FIFO.
//!
//! Names change only as the server answers: a Parse names its statement at ParseComplete, a
//! Bind its portal at BindComplete, a Close forgets at CloseComplete, and SQL `DEALLOCATE` at
//! its CommandComplete. A client cannot make the transcript show another text than what ran
//! by sending a Parse that fails, pipelined or not, nor by names that differ only past their
//! 63rd byte, where PostgreSQL stops reading them (see [`name_key`]). A Parse or Bind that fails is recorded as a
//! statement with its SQLSTATE, as a simple query that fails is.
//!
//! Statement text is decoded from the client's encoding, which the server reports in
//! ParameterStatus. Client messages are read leniently: text the encoding cannot decode is
//! recorded with replacement characters, and a malformed message is passed on for the server
//! to reject, never an error here.
//!
//! A password a statement sets (`ALTER ROLE ... PASSWORD`, a connection string's) is recorded
//! as `[redacted]`: it never leaves the connector. Where a plain string literal ends depends on
//! `standard_conforming_strings`, which the server also reports in ParameterStatus: the text is
//! read as the server read it, so that no literal is taken to run on over statements that ran.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::sync::Arc;

use foldhash::HashMap;
use gatehouse_core::sql::{self, StandardStrings, is_copy_to, may_hold_password, redact_passwords};
use gatehouse_pgwire::MessageRef;
use gatehouse_pgwire::backend::{CommandComplete, ErrorResponse};
use gatehouse_pgwire::frontend::FunctionCall;
use smallvec::SmallVec;

use super::encoding::ClientEncoding;
use crate::event::Statement;

/// Statement text: owned for a simple query, shared with the prepared statement otherwise.
#[derive(Debug)]
enum Text {
    Owned(String),
    /// A prepared statement's, as recorded already (see [`Recorder::confirm_front`]), or one
    /// the recorder wrote.
    Shared(Arc<str>),
    /// A simple query as the client sent it, decoded once the server has read it: the
    /// `client_encoding` a statement pipelined behind a `SET client_encoding` is read in is
    /// known only when the server reports the change.
    Sent(Vec<u8>),
}

impl Text {
    fn to_str(&self, encoding: ClientEncoding) -> Cow<'_, str> {
        match self {
            Text::Owned(s) => Cow::Borrowed(s),
            Text::Shared(s) => Cow::Borrowed(s),
            Text::Sent(bytes) => encoding.decode(bytes),
        }
    }

    /// The text as recorded, its plain literals read as `strings` says.
    fn recorded(&self, encoding: ClientEncoding, strings: StandardStrings) -> Cow<'_, str> {
        match self {
            Text::Shared(s) => Cow::Borrowed(s),
            text => recorded(text.to_str(encoding), strings),
        }
    }

    /// [`recorded`](Self::recorded), owned.
    fn into_recorded(self, encoding: ClientEncoding, strings: StandardStrings) -> String {
        match self {
            Text::Owned(s) => recorded(Cow::Owned(s), strings).into_owned(),
            Text::Shared(s) => s.as_ref().to_owned(),
            Text::Sent(bytes) => recorded(Cow::Owned(encoding.decode_owned(bytes)), strings).into_owned(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Text::Owned(s) => s.len(),
            Text::Shared(s) => s.len(),
            Text::Sent(bytes) => bytes.len(),
        }
    }
}

/// A statement sent and not yet complete.
#[derive(Debug)]
struct Pending {
    text: Text,
    start_us: i64,
    /// Statements the client sent before this one: which one the server is on.
    nth: u64,
    /// Rows sent to the client: DataRows, and the rows of a COPY TO STDOUT (its tag's count:
    /// its CopyData may also carry a header or a trailer). Not the rows a command changed
    /// (`DELETE 5000` sends none), which the spec's "rows sent to the client" does not count.
    rows: i64,
    /// In a COPY TO STDOUT (CopyOutResponse seen), until its CommandComplete.
    copy_out: bool,
    /// Streaming (CopyBothResponse seen): a replication stream, which a Terminate ends.
    copy_both: bool,
    /// CopyData messages of that COPY: its rows, as far as they are known when it fails or is
    /// cut short before the CommandComplete that counts them.
    copy_data: i64,
    bytes_sent: i64,
    sqlstate: Option<String>,
    /// Rows its commands inserted, updated, deleted, merged, copied in or selected into a
    /// table, by their tags.
    rows_changed: i64,
    /// `rows` at the last CommandComplete: a simple query's commands each have one.
    rows_before_command: i64,
    /// The `standard_conforming_strings` the server read a simple query's text with, when it
    /// reported a change before the query's end: the query changed it, after the server
    /// had read it whole.
    strings: Option<StandardStrings>,
}

impl Pending {
    fn new(text: Text, start_us: i64) -> Self {
        Self {
            text,
            start_us,
            nth: 0,
            rows: 0,
            copy_out: false,
            copy_both: false,
            copy_data: 0,
            bytes_sent: 0,
            sqlstate: None,
            rows_changed: 0,
            rows_before_command: 0,
            strings: None,
        }
    }

    /// A statement that failed before it ran: its ErrorResponse is all the client got.
    fn failed(text: Text, start_us: i64, sqlstate: Option<String>, bytes_sent: i64) -> Self {
        Self { sqlstate, bytes_sent, ..Self::new(text, start_us) }
    }

    /// The statement as recorded, at `end_us`, its text read as `encoding` and `strings`
    /// say unless the server read it before they changed.
    fn finish(self, end_us: i64, encoding: ClientEncoding, strings: StandardStrings) -> Statement {
        Statement {
            start_us: self.start_us,
            duration_us: (end_us - self.start_us).max(0),
            text: self.text.into_recorded(encoding, self.strings.unwrap_or(strings)),
            rows: self.rows + if self.copy_out { self.copy_data } else { 0 },
            bytes_sent: self.bytes_sent,
            sqlstate: self.sqlstate.unwrap_or_default(),
            rows_changed: self.rows_changed,
        }
    }

    /// Its text as [`finish`](Self::finish) will record it, were the settings to stay.
    fn recorded(&self, encoding: ClientEncoding, strings: StandardStrings) -> Cow<'_, str> {
        self.text.recorded(encoding, self.strings.unwrap_or(strings))
    }
}

/// A statement's text as it is recorded: without the passwords it sets, which would
/// otherwise be shown to anyone who may read the session's transcript. Its plain literals are
/// read as `strings` says, as the server read them.
fn recorded(text: Cow<'_, str>, strings: StandardStrings) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(text) => redact_passwords(text, strings),
        Cow::Owned(text) => match redact_passwords(&text, strings) {
            Cow::Borrowed(_) => Cow::Owned(text),
            Cow::Owned(redacted) => Cow::Owned(redacted),
        },
    }
}

/// A request waiting for its answer.
#[derive(Debug)]
enum Entry {
    /// A simple Query or a FunctionCall: complete at ReadyForQuery.
    Simple(Pending),
    /// Answered by ParseComplete.
    /// Its text as the client sent it, decoded at the answer, in the encoding the server read
    /// it in (see [`Text::Sent`]).
    Parse { name: Name, sql: Box<[u8]>, sent_us: i64 },
    /// Answered by BindComplete.
    Bind { portal: Name, statement: Name, sent_us: i64 },
    /// Answered by CloseComplete.
    Close { statement: bool, name: Name },
    /// Answered by RowDescription or NoData (after a ParameterDescription for a statement):
    /// queued so that its error is not taken for the next request's.
    Describe,
    /// Complete at its CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse,
    /// and only then given its portal's text: the Bind before it is answered by then.
    Execute { portal: Name, max_rows: u32, pending: Pending },
    /// A Sync: answered by ReadyForQuery, records nothing.
    Sync,
}

impl Entry {
    /// A simple query or an Execute: what runs, and is recorded.
    fn is_statement(&self) -> bool {
        matches!(self, Entry::Simple(_) | Entry::Execute { .. })
    }

    /// Statement text this request brought, held here until its answer: a simple query's or
    /// a Parse's (a Bind or an Execute shares a text held already).
    fn text_len(&self) -> usize {
        match self {
            Entry::Simple(p) => p.text.len(),
            Entry::Parse { sql, .. } => sql.len(),
            _ => 0,
        }
    }
}

/// The requests awaiting their answers, in the order sent, and the bytes of statement text
/// they hold: what grows when a client pipelines large statements behind a slow one.
#[derive(Debug, Default)]
struct Awaiting {
    entries: VecDeque<Entry>,
    text_len: usize,
}

impl Awaiting {
    fn push_back(&mut self, entry: Entry) {
        self.text_len += entry.text_len();
        self.entries.push_back(entry);
    }

    fn push_front(&mut self, entry: Entry) {
        self.text_len += entry.text_len();
        self.entries.push_front(entry);
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.text_len -= entry.text_len();
        Some(entry)
    }

    fn remove(&mut self, range: std::ops::Range<usize>) {
        let removed: usize = self.entries.drain(range).map(|entry| entry.text_len()).sum();
        self.text_len -= removed;
    }

    /// Decodes the front simple query's text, as sent, in `encoding`: its length changes.
    fn decode_front(&mut self, encoding: ClientEncoding) {
        if let Some(Entry::Simple(p)) = self.entries.front_mut()
            && let Text::Sent(bytes) = &mut p.text
        {
            let sent = bytes.len();
            p.text = Text::Owned(encoding.decode_owned(std::mem::take(bytes)));
            self.text_len = self.text_len - sent + p.text.len();
        }
    }

    /// Pins the front simple query's reading of plain literals to `strings`: the server read
    /// it whole before it changed the setting.
    fn pin_front_strings(&mut self, strings: StandardStrings) {
        if let Some(Entry::Simple(p)) = self.entries.front_mut() {
            p.strings.get_or_insert(strings);
        }
    }

    /// Bytes of text held behind the front request, which the server has read already.
    fn text_len_behind(&self) -> usize {
        self.text_len - self.entries.front().map_or(0, Entry::text_len)
    }

    /// Mutable access that leaves the counted texts alone: answers add rows, bytes, an error
    /// or a later start, and a Bind's statement name is taken, never a text.
    fn front_mut(&mut self) -> Option<&mut Entry> {
        self.entries.front_mut()
    }

    fn iter_mut(&mut self) -> std::collections::vec_deque::IterMut<'_, Entry> {
        self.entries.iter_mut()
    }
}

impl std::ops::Deref for Awaiting {
    type Target = VecDeque<Entry>;

    fn deref(&self) -> &VecDeque<Entry> {
        &self.entries
    }
}

/// A portal the protocol bound.
#[derive(Debug)]
struct Portal {
    /// What its Executes run.
    text: Arc<str>,
    /// An Execute ran it to its end (CommandComplete): another fetches nothing, and runs
    /// nothing again (the server answers `SELECT 0`, or refuses a command's portal).
    done: bool,
}

/// The recording state of one session.
///
/// Its maps hash with foldhash, randomly seeded per process, rather than SipHash: a prepared
/// statement's name is looked up on every Bind (SipHash cost about 2% of the connector's
/// instructions per transaction under `pgbench -M prepared`).
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// Prepared statements and portals, as the server has confirmed them, by [`name_key`].
    unnamed_statement: Option<Arc<str>>,
    statements: HashMap<Box<[u8]>, Arc<str>>,
    unnamed_portal: Option<Portal>,
    portals: HashMap<Box<[u8]>, Portal>,
    queue: Awaiting,
    /// Statements of suspended portals, with the time their last fetch ended, by [`name_key`].
    suspended: HashMap<Box<[u8]>, (Pending, i64)>,
    /// The server is discarding messages until the next Sync, after an error in an extended
    /// exchange whose Sync the client has not sent yet.
    skipping: bool,
    /// The server is in COPY FROM STDIN, where it ignores Sync and Flush.
    copy_in: bool,
    encoding: ClientEncoding,
    /// `standard_conforming_strings`, as the server last reported it: at the login, and at each
    /// change. PostgreSQL 14 and later report a change only before the next ReadyForQuery, so
    /// a text parsed after the change in the same extended-protocol pipeline (before its
    /// Sync) is read here with the setting before it.
    strings: StandardStrings,
    done: Vec<Statement>,
    /// When the last statement recorded ended: a Parse or Bind that fails behind it in a batch
    /// was read no earlier.
    last_end_us: i64,
    /// Statements sent so far (simple queries, Executes, function calls).
    sent: u64,
    /// An Execute was answered since the last ReadyForQuery: what it changed of the settings
    /// the server reports (`SET standard_conforming_strings`, `SET client_encoding`, or a
    /// function calling `set_config`) is reported only at the pipeline's Sync, so a text the
    /// server parses meanwhile may have been read otherwise than the settings known here say.
    ran_unsynced: bool,
}

/// The SQLSTATE recorded for an error the server sent without one: PostgreSQL's `internal_error`.
const SQLSTATE_UNNAMED_ERROR: &str = "XX000";

/// Whether `code` is a SQLSTATE: five digits or upper-case letters.
fn is_sqlstate(code: &str) -> bool {
    code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// The text of a Bind of the unnamed statement, or an Execute of the unnamed portal, when
/// there is none (a failed Parse or Bind left none): as a comment, it reads as no SQL.
const NO_UNNAMED_STATEMENT: &str = "-- the unnamed prepared statement, which did not exist";
const NO_UNNAMED_PORTAL: &str = "-- the unnamed portal, which did not exist";

impl Recorder {
    /// A message from the client, arrived at `now`.
    pub(crate) fn on_client(&mut self, msg: MessageRef<'_>, now: i64) {
        let payload = msg.payload();
        let mut entry = match msg.tag() {
            // The server discards everything but Sync after an error, up to that Sync.
            b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'F' if self.skipping => return,
            b'Q' => {
                let sql = cstr(payload).map_or(payload, |(s, _)| s);
                Entry::Simple(Pending::new(Text::Sent(sql.to_vec()), now))
            }
            b'P' => {
                let Some((name, rest)) = cstr(payload) else { return };
                let Some((sql, _)) = cstr(rest) else { return };
                Entry::Parse { name: Name::new(name), sql: sql.into(), sent_us: now }
            }
            b'B' => {
                let Some((portal, rest)) = cstr(payload) else { return };
                let Some((statement, _)) = cstr(rest) else { return };
                Entry::Bind { portal: Name::new(portal), statement: Name::new(statement), sent_us: now }
            }
            b'E' => {
                let Some((portal, rest)) = cstr(payload) else { return };
                Entry::Execute {
                    portal: Name::new(portal),
                    max_rows: rest.first_chunk::<4>().map_or(0, |n| u32::from_be_bytes(*n)),
                    pending: Pending::new(Text::Owned(String::new()), now),
                }
            }
            b'D' => Entry::Describe,
            b'C' => {
                let Some((&target @ (b'S' | b'P'), rest)) = payload.split_first() else { return };
                let Some((name, _)) = cstr(rest) else { return };
                Entry::Close { statement: target == b'S', name: Name::new(name) }
            }
            b'S' if !self.copy_in => {
                self.skipping = false;
                Entry::Sync
            }
            // A fast-path function call (libpq's `lo_*`, for one) reads or changes data
            // like any statement; it is answered like a simple query.
            b'F' => Entry::Simple(Pending::new(Text::Owned(function_call_text(msg, self.encoding)), now)),
            b'c' | b'f' => {
                self.copy_in = false;
                return;
            }
            // A client ends a replication stream with Terminate (pg_recvlogical, a standby shut
            // down): the database stops streaming and sends nothing more, as planned.
            b'X' => {
                let streaming =
                    |e: &Entry| matches!(e, Entry::Simple(p) | Entry::Execute { pending: p, .. } if p.copy_both);
                if self.queue.front().is_some_and(streaming) {
                    self.complete_front(now);
                }
                return;
            }
            _ => return,
        };
        if let Entry::Simple(p) | Entry::Execute { pending: p, .. } = &mut entry {
            p.nth = self.sent;
            self.sent += 1;
        }
        self.queue.push_back(entry);
    }

    /// A message from the server, arrived at `now`, of `msg.len()` bytes relayed to the client.
    pub(crate) fn on_server(&mut self, msg: MessageRef<'_>, now: i64) {
        let tag = msg.tag();
        let encoding = self.encoding;
        if matches!(tag, b'C' | b'I' | b's' | b'E') && matches!(self.queue.front(), Some(Entry::Execute { .. })) {
            self.ran_unsynced = true;
        }
        if let Some(Entry::Simple(p) | Entry::Execute { pending: p, .. }) = self.queue.front_mut() {
            p.bytes_sent += msg.len() as i64;
            match tag {
                b'D' => {
                    p.rows += 1;
                    return;
                }
                b'd' if p.copy_out => p.copy_data += 1,
                // Each COPY of a query counts its own rows.
                b'H' => (p.copy_out, p.copy_data) = (true, 0),
                b'W' => p.copy_both = true,
                b'C' => {
                    if std::mem::take(&mut p.copy_out) {
                        p.rows += tag_rows(msg);
                    } else if changes_rows(msg.payload(), p.rows > p.rows_before_command, &p.text, encoding) {
                        p.rows_changed = p.rows_changed.saturating_add(tag_rows(msg));
                    }
                    p.rows_before_command = p.rows;
                }
                _ => {}
            }
        }
        match tag {
            b'1' | b'2' | b'3' => self.confirm_front(),
            // What a Describe gets is sent for the statement it describes, as a simple query's
            // RowDescription is.
            b't' | b'T' | b'n' if matches!(self.queue.front(), Some(Entry::Describe)) => {
                if tag != b't' {
                    self.queue.pop_front();
                }
                if let Some(next) = self.next_statement() {
                    next.bytes_sent += msg.len() as i64;
                }
            }
            b'C' => {
                self.copy_in = false;
                let payload = msg.payload();
                if payload.starts_with(b"DEALLOCATE") || payload.starts_with(b"DISCARD ALL") {
                    self.forget_deallocated(payload);
                }
                if [&b"CLOSE CURSOR"[..], b"DECLARE CURSOR", b"DISCARD ALL"].iter().any(|t| payload.starts_with(t)) {
                    self.forget_cursors(payload);
                }
                // The transaction is over, and its portals with it, though the ReadyForQuery
                // may say another has begun (`commit; begin`). Not at a ROLLBACK TO a savepoint
                // (the same tag): the portals opened before it live on (JDBC's `autosave`
                // rolls back to one after every error, cursors open), and one opened after it
                // and gone with it fails if fetched, with its text and the server's error.
                let ends_transaction = [&b"COMMIT"[..], b"PREPARE TRANSACTION"].iter().any(|t| payload.starts_with(t))
                    || payload.starts_with(b"ROLLBACK")
                        && !self.front_text().is_some_and(|text| rolls_back_to_savepoint(&text));
                // A simple query goes on to ReadyForQuery: it may hold several commands.
                self.complete_execute(now, payload);
                if ends_transaction {
                    self.forget_portals();
                }
            }
            b'I' => {
                if let Some(Entry::Execute { .. }) = self.queue.front() {
                    self.complete_front(now);
                }
            }
            b's' => self.suspend_front(now),
            b'E' => {
                self.copy_in = false;
                // PostgreSQL always names its error's SQLSTATE: one without, or with one that is
                // none (empty, `12`: a broken or hostile server's), is still an error, recorded as
                // PostgreSQL's catch-all, not a success.
                let code = msg
                    .decode::<ErrorResponse>()
                    .ok()
                    .and_then(|e| e.code().filter(|c| is_sqlstate(c)).map(str::to_owned));
                self.on_error(code.unwrap_or_else(|| SQLSTATE_UNNAMED_ERROR.to_owned()), msg.len() as i64, now);
            }
            b'Z' => {
                self.copy_in = false;
                self.ran_unsynced = false;
                // Idle: the transaction is over, and its portals with it.
                if msg.payload() == b"I" {
                    self.forget_portals();
                }
                while let Some(entry) = self.queue.pop_front() {
                    match entry {
                        Entry::Simple(p) => {
                            self.completed(p, now);
                            break;
                        }
                        Entry::Sync => break,
                        // Unanswered, so never run.
                        _ => {}
                    }
                }
            }
            b'S' => {
                let name_and_value = cstr(msg.payload()).and_then(|(name, rest)| Some((name, cstr(rest)?.0)));
                match name_and_value {
                    Some((b"client_encoding", value)) => {
                        // The query that changed it was read in the encoding before.
                        self.queue.decode_front(self.encoding);
                        self.encoding = ClientEncoding::from_name(&String::from_utf8_lossy(value));
                    }
                    Some((b"standard_conforming_strings", value)) => {
                        // So was the query that changed this, with the setting before.
                        self.queue.pin_front_strings(self.strings);
                        self.strings = StandardStrings::reported(value);
                    }
                    _ => {}
                }
            }
            b'G' => {
                // The Syncs the client sent right after this COPY's Execute reach the server in
                // copy-in mode, which ignores them: they will get no ReadyForQuery.
                self.copy_in = true;
                if self.queue.len() > 1 {
                    let syncs = self.queue.iter().skip(1).take_while(|e| matches!(e, Entry::Sync)).count();
                    self.queue.remove(1..1 + syncs);
                }
            }
            _ => {}
        }
    }

    /// A client message of `len` bytes and type `tag` that the connector refused, unrelayed,
    /// with `sqlstate`: what the client asked for is not known, but that it asked, is.
    pub(crate) fn refused(&mut self, tag: Option<u8>, len: usize, now: i64, sqlstate: &str) {
        let what = match tag {
            Some(b'Q') => "a query",
            Some(b'P') => "a Parse",
            Some(b'B') => "a Bind",
            Some(b'F') => "a function call",
            Some(b'd') => "COPY data",
            _ => "a message",
        };
        let text = format!(
            "-- {what} of {len} bytes, refused before it was whole: over the connector's memory for large messages"
        );
        self.done.push(Pending::failed(Text::Owned(text), now, Some(sqlstate.to_owned()), 0).finish(
            now,
            self.encoding,
            self.strings,
        ));
    }

    /// Requests sent and not answered yet.
    pub(crate) fn awaiting(&self) -> usize {
        self.queue.len()
    }

    /// Bytes of statement text the requests awaiting their answers hold, but the first's:
    /// the server has read that one (a query of 16 MiB that enters COPY FROM STDIN waits for
    /// the client's data, not for room).
    pub(crate) fn awaiting_text_len(&self) -> usize {
        self.queue.text_len_behind()
    }

    /// Statements completed since the last call, in order.
    pub(crate) fn done(&mut self) -> std::vec::Drain<'_, Statement> {
        self.done.drain(..)
    }

    /// Whether statements completed since the last [`done`](Self::done).
    pub(crate) fn has_done(&self) -> bool {
        !self.done.is_empty()
    }

    /// Whether a statement was sent and is not complete yet.
    pub(crate) fn is_running(&self) -> bool {
        self.first_statement().is_some()
    }

    /// Whether the database, once the statement it is on ends, writes to the client (a
    /// ReadyForQuery) before it runs another that the client sent ahead: where, directly, a
    /// client that is gone would lose what it queued. A pipeline's statements before its
    /// Sync are answered together, at the Sync (see [`Entry::Sync`]).
    pub(crate) fn queued_behind_a_write(&self) -> bool {
        let mut statements = self.queue.iter().skip_while(|entry| !entry.is_statement());
        // A simple query's ReadyForQuery follows it; an Execute's waits for a Sync.
        let mut written = match statements.next() {
            Some(entry) => matches!(entry, Entry::Simple(_)),
            None => return false,
        };
        for entry in statements {
            match entry {
                Entry::Sync => written = true,
                entry if entry.is_statement() => return written,
                _ => {}
            }
        }
        false
    }

    /// The first statement in the queue (a simple query or an Execute), and where it is.
    fn first_statement(&self) -> Option<(usize, &Pending)> {
        self.queue.iter().enumerate().find_map(|(at, entry)| match entry {
            Entry::Simple(p) | Entry::Execute { pending: p, .. } => Some((at, p)),
            _ => None,
        })
    }

    /// Which statement the server is on, or is about to be: the first one sent and not
    /// complete (or this fetch of it), numbered in the order sent. The Parses and Binds before
    /// it take no time, and the server holds their answers back until it has run it, unless
    /// the client flushes.
    pub(crate) fn running_nth(&self) -> Option<u64> {
        self.first_statement().map(|(_, p)| p.nth)
    }

    /// The statement [`running_nth`](Self::running_nth) names, as its completion will
    /// record it: its start and its text. Its text is read with the settings as last reported:
    /// a statement queued behind one that changes `client_encoding` or
    /// `standard_conforming_strings` was read after the change, which its completion will
    /// know, and this may not yet.
    pub(crate) fn running(&self) -> Option<(i64, Cow<'_, str>)> {
        let (at, _) = self.first_statement()?;
        match &self.queue[at] {
            Entry::Simple(p) => Some((p.start_us, p.recorded(self.encoding, self.strings))),
            Entry::Execute { portal, max_rows, pending } => {
                Some(match portal.key().and_then(|key| self.suspended.get(key)) {
                    Some((first, _)) => (first.start_us, first.recorded(self.encoding, self.strings)),
                    None => (pending.start_us, self.queued_portal_text(at, portal, *max_rows)),
                })
            }
            _ => None,
        }
    }

    /// What an Execute of `portal` at `at` in the queue runs, as recorded: what the Bind and
    /// Parse queued before it will name, or what the server confirmed.
    fn queued_portal_text(&self, at: usize, portal: &Name, max_rows: u32) -> Cow<'_, str> {
        let mut bound: Option<&Name> = None;
        for (parse_at, entry) in self.queue.range(..at).enumerate().rev() {
            match entry {
                Entry::Bind { portal: p, statement, .. } if bound.is_none() && p.is(portal) => {
                    bound = Some(statement);
                }
                Entry::Parse { name, sql, .. } if bound.is_some_and(|bound| bound.is(name)) => {
                    let ran_before = self.queue.range(..parse_at).any(|e| matches!(e, Entry::Execute { .. }));
                    return self.parsed_text(sql, self.ran_unsynced || ran_before);
                }
                _ => {}
            }
        }
        match bound {
            Some(statement) => Cow::Owned(self.statement_text(statement).as_ref().to_owned()),
            None => Cow::Owned(self.portal_text(portal, max_rows).into_recorded(self.encoding, self.strings)),
        }
    }

    /// A Parse's text, as recorded: read with the settings the server last reported, unless
    /// a statement ran before it since the last ReadyForQuery (`ran_before`), which may have
    /// changed them unreported. Then a plain literal is read both ways, and only what both
    /// readings take for a password is taken out; and text past ASCII, which the encoding
    /// before a change would misread, is not redacted at all: what one reading takes for a
    /// literal may be SQL that ran, and a transcript never hides one.
    fn parsed_text<'a>(&self, sql: &'a [u8], ran_before: bool) -> Cow<'a, str> {
        match ran_before {
            false => recorded(self.encoding.decode(sql), self.strings),
            true if sql.is_ascii() => recorded(self.encoding.decode(sql), StandardStrings::Unknown),
            true => self.encoding.decode(sql),
        }
    }

    /// Completes every statement still running when the session ends at `now`, with
    /// `sqlstate` unless the server had already reported an error for it. Requests still
    /// unanswered are taken as done: the server may well have run them. The statements of
    /// suspended portals (a cursor part read) were cut short too unless the client `left`: it
    /// chose not to read the rest.
    pub(crate) fn abandon(&mut self, now: i64, sqlstate: &str, left: bool) {
        while let Some(entry) = self.queue.front_mut() {
            match entry {
                Entry::Simple(p) | Entry::Execute { pending: p, .. } => {
                    p.sqlstate.get_or_insert_with(|| sqlstate.to_owned());
                    self.complete_front(now);
                }
                Entry::Sync | Entry::Describe => drop(self.queue.pop_front()),
                _ => self.confirm_front(),
            }
        }
        if !left {
            for (pending, end_us) in self.suspended.values_mut() {
                pending.sqlstate.get_or_insert_with(|| sqlstate.to_owned());
                *end_us = now;
            }
        }
        self.finish_suspended(|_| true);
    }

    /// The front request's answer came: a Parse, Bind or Close takes effect.
    ///
    /// A Parse's text is recorded here, once for every Execute of it: the server read it now,
    /// under the settings in force, which may change before the statement runs.
    fn confirm_front(&mut self) {
        match self.queue.pop_front() {
            Some(Entry::Parse { name, sql, .. }) => {
                let text = Arc::from(self.parsed_text(&sql, self.ran_unsynced));
                match name.key() {
                    _ if name.is_empty() => self.unnamed_statement = Some(text),
                    Some(key) => drop(self.statements.insert(key.into(), text)),
                    // Not known for sure: its Binds are recorded as `EXECUTE name`.
                    None => {}
                }
            }
            Some(Entry::Bind { portal, statement, .. }) => {
                // Binding a portal's name again replaces the portal.
                self.finish_suspended(|name| portal.key() == Some(name));
                let bound = Portal { text: self.statement_text(&statement), done: false };
                match portal.key() {
                    _ if portal.is_empty() => self.unnamed_portal = Some(bound),
                    Some(key) => drop(self.portals.insert(key.into(), bound)),
                    None => {}
                }
            }
            Some(Entry::Close { statement: true, name }) if name.is_empty() => self.unnamed_statement = None,
            Some(Entry::Close { statement: true, name }) => {
                if let Some(key) = name.key() {
                    self.statements.remove(key);
                }
            }
            Some(Entry::Close { statement: false, name }) => {
                self.finish_suspended(|portal| name.key() == Some(portal));
                match name.key() {
                    _ if name.is_empty() => self.unnamed_portal = None,
                    Some(key) => drop(self.portals.remove(key)),
                    None => {}
                }
            }
            // Not the request this answer is for: leave the queue as it is.
            Some(other) => self.queue.push_front(other),
            None => {}
        }
    }

    /// An ErrorResponse of `bytes`, for the request at the front.
    fn on_error(&mut self, code: String, bytes: i64, now: i64) {
        let code = Some(code);
        let failed = match self.queue.front_mut() {
            Some(Entry::Simple(p)) => {
                // A simple query goes on to ReadyForQuery; its first error is the one.
                if p.sqlstate.is_none() {
                    p.sqlstate = code;
                }
                return;
            }
            Some(Entry::Execute { pending: p, .. }) => {
                p.sqlstate = code;
                self.take_front()
            }
            Some(Entry::Parse { name, sql, sent_us }) => {
                let text = Text::Owned(self.encoding.decode(sql).into_owned());
                let failed = Pending::failed(text, (*sent_us).max(self.last_end_us), code, bytes);
                // PostgreSQL drops the unnamed statement before it parses the new one.
                if name.is_empty() {
                    self.unnamed_statement = None;
                }
                Some(failed)
            }
            Some(Entry::Bind { statement, sent_us, .. }) => {
                let (statement, start) = (std::mem::take(statement), (*sent_us).max(self.last_end_us));
                Some(Pending::failed(Text::Shared(self.statement_text(&statement)), start, code, bytes))
            }
            // A failed Describe or Close: no statement ran.
            Some(Entry::Close { .. } | Entry::Describe | Entry::Sync) => None,
            // An extended exchange failed before any request this records, and before its Sync.
            None => {
                self.skipping = true;
                return;
            }
        };
        // The server skips to the Sync first: the statement after it is the one that starts
        // no earlier than this error (a pipeline of Parse, Bind, Execute, Sync per query).
        self.skip_to_sync();
        if let Some(failed) = failed {
            self.completed(failed, now);
        }
    }

    /// Pops the front statement and records it, an Execute with its portal's text (and with
    /// what earlier fetches of a suspended portal got).
    fn complete_front(&mut self, now: i64) {
        if let Some(pending) = self.take_front() {
            self.completed(pending, now);
        }
    }

    /// Pops the front statement, an Execute with its portal's text (see [`complete_front`]).
    fn take_front(&mut self) -> Option<Pending> {
        match self.queue.pop_front() {
            Some(Entry::Simple(p)) => Some(p),
            Some(Entry::Execute { portal, max_rows, pending }) => Some(self.continued(&portal, max_rows, pending)),
            Some(other) => {
                self.queue.push_front(other);
                None
            }
            None => None,
        }
    }

    /// Records `pending`, answered at `end`. The statement sent after it started no earlier:
    /// a client that pipelines sends both at once, and the database runs them one by one.
    fn completed(&mut self, pending: Pending, end: i64) {
        self.done.push(pending.finish(end, self.encoding, self.strings));
        self.last_end_us = self.last_end_us.max(end);
        self.next_starts_no_earlier_than(end);
    }

    /// The statement next in line starts no earlier than `at`, when the database left the one
    /// before it (done, or suspended at its row limit): so statements are listed in the order
    /// they ran even when the one before is recorded after them (a portal fetched later).
    fn next_starts_no_earlier_than(&mut self, at: i64) {
        if let Some(next) = self.next_statement() {
            next.start_us = next.start_us.max(at);
        }
    }

    /// The first statement awaiting its answers.
    fn next_statement(&mut self) -> Option<&mut Pending> {
        self.queue.iter_mut().find_map(|entry| match entry {
            Entry::Simple(p) | Entry::Execute { pending: p, .. } => Some(p),
            _ => None,
        })
    }

    /// CommandComplete with `tag`, for the Execute at the front: its portal is done. Another
    /// Execute of it, answered from its end, is no statement: the first was recorded with
    /// every row (`SELECT 0` sends none and changes none; an Execute that did, was no such
    /// fetch, and is recorded).
    fn complete_execute(&mut self, now: i64, tag: &[u8]) {
        match self.queue.pop_front() {
            Some(Entry::Execute { portal, max_rows, pending }) => {
                let done_before =
                    self.portal_mut(&portal).is_some_and(|bound| std::mem::replace(&mut bound.done, true));
                let pending = self.continued(&portal, max_rows, pending);
                if done_before && pending.rows == 0 && pending.rows_changed == 0 {
                    self.next_starts_no_earlier_than(now);
                    return;
                }
                self.completed(pending, now);
                if let Some(statement) = self.done.last_mut() {
                    flag_replaced(statement, tag);
                }
            }
            Some(other) => self.queue.push_front(other),
            None => {}
        }
    }

    /// PortalSuspended: the front Execute stopped at its row limit; its statement stays open
    /// for the Executes that fetch the rest.
    fn suspend_front(&mut self, now: i64) {
        match self.queue.pop_front() {
            Some(Entry::Execute { portal, max_rows, pending }) => {
                let pending = self.continued(&portal, max_rows, pending);
                match portal.key() {
                    Some(key) => {
                        self.suspended.insert(key.into(), (pending, now));
                        self.next_starts_no_earlier_than(now);
                    }
                    // Which Executes fetch from it is not known for sure: each is recorded alone.
                    None => self.completed(pending, now),
                }
            }
            Some(other) => self.queue.push_front(other),
            None => {}
        }
    }

    /// An Execute of `portal`, as the continuation of its suspended statement if there is one.
    fn continued(&mut self, portal: &Name, max_rows: u32, mut pending: Pending) -> Pending {
        // Most sessions never suspend a portal: no key to hash then.
        let suspended = match self.suspended.is_empty() {
            true => None,
            false => portal.key().and_then(|key| self.suspended.remove(key)),
        };
        match suspended {
            Some((mut first, _)) => {
                first.rows += pending.rows;
                first.bytes_sent += pending.bytes_sent;
                first.sqlstate = pending.sqlstate.or(first.sqlstate);
                first
            }
            None => {
                pending.text = self.portal_text(portal, max_rows);
                pending
            }
        }
    }

    /// Records the statements of the suspended portals `gone` picks: the portal is closed,
    /// replaced or over, so no fetch will continue them. Each ends with its last fetch.
    fn finish_suspended(&mut self, gone: impl Fn(&[u8]) -> bool) {
        if self.suspended.is_empty() {
            return;
        }
        let mut finished: Vec<(Pending, i64)> =
            self.suspended.extract_if(|name, _| gone(name)).map(|(_, statement)| statement).collect();
        finished.sort_by_key(|(pending, _)| pending.start_us);
        let (encoding, strings) = (self.encoding, self.strings);
        self.done.extend(finished.into_iter().map(|(pending, end_us)| pending.finish(end_us, encoding, strings)));
    }

    /// After an error in an extended exchange, the server discards the rest of it up to Sync.
    fn skip_to_sync(&mut self) {
        while self.queue.front().is_some_and(|entry| !matches!(entry, Entry::Sync)) {
            self.queue.pop_front();
        }
        if self.queue.is_empty() {
            self.skipping = true;
        }
    }

    /// What a Bind of `name` runs.
    fn statement_text(&self, name: &Name) -> Arc<str> {
        if name.is_empty() {
            // None: the server refuses the Bind (26000); the line says what it named.
            return self.unnamed_statement.clone().unwrap_or_else(|| Arc::from(NO_UNNAMED_STATEMENT));
        }
        match name.key().and_then(|key| self.statements.get(key)) {
            Some(text) => Arc::clone(text),
            // Not parsed in this session's protocol: made by SQL `PREPARE`, so the
            // transcript names it as SQL would run it.
            None => Arc::from(format!("EXECUTE {}", quote_ident(&name.shown()))),
        }
    }

    /// What an Execute of `portal`, fetching `max_rows` (0: all), runs. A portal the protocol
    /// did not bind is a cursor SQL declared: the Execute fetches from it, as SQL `FETCH` would.
    fn portal_text(&self, portal: &Name, max_rows: u32) -> Text {
        match self.portal(portal) {
            Some(bound) => Text::Shared(Arc::clone(&bound.text)),
            None if portal.is_empty() => Text::Owned(NO_UNNAMED_PORTAL.to_owned()),
            None if max_rows == 0 => Text::Owned(format!("FETCH ALL FROM {}", quote_ident(&portal.shown()))),
            None => Text::Owned(format!("FETCH FORWARD {max_rows} FROM {}", quote_ident(&portal.shown()))),
        }
    }

    /// The portal `name` the protocol bound, if the server has confirmed it.
    fn portal(&self, name: &Name) -> Option<&Portal> {
        match name.key() {
            _ if name.is_empty() => self.unnamed_portal.as_ref(),
            Some(key) => self.portals.get(key),
            None => None,
        }
    }

    /// [`portal`](Self::portal), to change.
    fn portal_mut(&mut self, name: &Name) -> Option<&mut Portal> {
        match name.key() {
            _ if name.is_empty() => self.unnamed_portal.as_mut(),
            Some(key) => self.portals.get_mut(key),
            None => None,
        }
    }

    /// The text of the statement at the front, which the server is answering.
    fn front_text(&self) -> Option<String> {
        let text = match self.queue.front()? {
            Entry::Simple(p) => p.text.to_str(self.encoding).into_owned(),
            Entry::Execute { portal, max_rows, .. } => {
                self.portal_text(portal, *max_rows).to_str(self.encoding).into_owned()
            }
            _ => return None,
        };
        Some(text)
    }

    /// SQL `DEALLOCATE` or `DISCARD ALL` completed, in the statement at the front.
    fn forget_deallocated(&mut self, tag: &[u8]) {
        let names = match self.front_text() {
            _ if tag.starts_with(b"DISCARD ALL") || tag.starts_with(b"DEALLOCATE ALL") => None,
            Some(text) => named_after(&text, "deallocate", Some("prepare")),
            None => None,
        };
        // SQL cuts a name to 63 bytes where it reads it, as the protocol's are looked up; one
        // past ASCII is cut as the database's encoding cuts it (`x…xé` to the 62 `x`s, an
        // ASCII name the protocol may use), which the connector cannot follow: all go.
        let keys = names.and_then(|names| {
            names.iter().map(|name| name_key(name.as_bytes()).map(<[u8]>::to_vec)).collect::<Option<Vec<_>>>()
        });
        match keys {
            Some(keys) => keys.iter().for_each(|key| {
                self.statements.remove(key.as_slice());
            }),
            None => {
                self.statements.clear();
                self.unnamed_statement = None;
            }
        }
    }

    /// The transaction ended: its portals are gone.
    fn forget_portals(&mut self) {
        self.finish_suspended(|_| true);
        self.portals.clear();
        self.unnamed_portal = None;
    }

    /// SQL `CLOSE`, `DECLARE` or `DISCARD ALL` completed, in the statement at the front: a
    /// portal the protocol bound may be gone, closed by it or by a function or DO block before
    /// it (a `DECLARE` of its name succeeds only then), and its name given to another query.
    fn forget_cursors(&mut self, tag: &[u8]) {
        let keyword = if tag.starts_with(b"DECLARE") { "declare" } else { "close" };
        let names = match self.queue.front() {
            Some(_) if tag.starts_with(b"DISCARD ALL") || tag.starts_with(b"CLOSE CURSOR ALL") => None,
            Some(Entry::Simple(p)) => named_after(&p.text.to_str(self.encoding), keyword, None),
            // One the client prepared: its text is known only if the protocol bound it.
            _ => None,
        };
        // As for DEALLOCATE: a name past ASCII closes all, as far as the connector knows.
        let names = names.filter(|names| names.iter().all(|name| name_key(name.as_bytes()).is_some()));
        let closed = |portal: &[u8]| {
            names.as_ref().is_none_or(|names| names.iter().any(|name| name_key(name.as_bytes()) == Some(portal)))
        };
        self.finish_suspended(|portal| !portal.is_empty() && closed(portal));
        self.portals.retain(|portal, _| !closed(portal));
    }
}

/// The names `keyword [optional] name` acts on in `sql` (`DEALLOCATE [PREPARE] s1`, `CLOSE c`),
/// or `None` for all of them: `ALL`, or a name this light reading cannot be sure of (`U&"..."`).
/// Reading the keyword inside a string or comment only forgets a name, and a forgotten name is
/// recorded as SQL names it (`EXECUTE s1`, `FETCH ALL FROM c`): never as another text.
fn named_after(sql: &str, keyword: &str, optional: Option<&str>) -> Option<Vec<String>> {
    let lower = sql.to_ascii_lowercase();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut names = Vec::new();
    for (at, _) in lower.match_indices(keyword) {
        if lower[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let mut rest = lower[at + keyword.len()..].trim_start();
        if let Some(after) = optional.and_then(|word| rest.strip_prefix(word))
            && after.starts_with(char::is_whitespace)
        {
            rest = after.trim_start();
        }
        let start = sql.len() - rest.len();
        let name = match rest.strip_prefix('"') {
            Some(_) => quoted_ident(&sql[start + 1..])?,
            None => {
                let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
                match (&rest[..end], rest[end..].chars().next()) {
                    ("" | "all", _) => return None,
                    // A Unicode-escaped name (`U&"\0073\0031"`), or something else unforeseen.
                    (_, Some(next)) if !(next.is_whitespace() || next == ';') => return None,
                    (name, _) => name.to_owned(),
                }
            }
        };
        names.push(name);
    }
    (!names.is_empty()).then_some(names)
}

/// Whether `sql` holds a `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`, which ends no
/// transaction.
fn rolls_back_to_savepoint(sql: &str) -> bool {
    let is = |word: &str, keyword: &str| word.eq_ignore_ascii_case(keyword);
    let words: Vec<&str> = sql::words(sql).collect();
    words.windows(3).any(|w| {
        let to = is(w[1], "to");
        let work_to = (is(w[1], "work") || is(w[1], "transaction")) && is(w[2], "to");
        is(w[0], "rollback") && (to || work_to)
    })
}

/// Flags `statement`, an Execute the server answered with `tag`, when the tag names another
/// command than its text begins with. A prepared statement's text is the one the client
/// prepared; SQL the connector cannot see (in a function or a DO block) can deallocate it and
/// prepare another under its name, and the transcript must not show a text that did not run.
fn flag_replaced(statement: &mut Statement, tag: &[u8]) {
    // Others answer with tags of their own, or any (a WITH query's is its last command's).
    const TAGS: [(&str, &[u8]); 7] = [
        ("select", b"SELECT"),
        ("values", b"SELECT"),
        ("table", b"SELECT"),
        ("insert", b"INSERT"),
        ("update", b"UPDATE"),
        ("delete", b"DELETE"),
        ("merge", b"MERGE"),
    ];
    let keyword = sql::first_keyword(&statement.text);
    let Some(&(_, expected)) = TAGS.iter().find(|(word, _)| keyword.eq_ignore_ascii_case(word)) else {
        return;
    };
    let ran = tag.split(|&b| b == b' ' || b == 0).next().unwrap_or_default();
    if ran != expected {
        statement.text = format!(
            "-- not what ran: the server answered {}. This statement was replaced by SQL out of the \
             connector's sight (a function or a DO block) after it was prepared as:\n{}",
            String::from_utf8_lossy(tag.strip_suffix(b"\0").unwrap_or(tag)),
            statement.text
        );
    }
}

/// The identifier of a quoted name whose opening quote is already read.
fn quoted_ident(rest: &str) -> Option<String> {
    let mut name = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if chars.peek() == Some(&'"') => {
                chars.next();
                name.push('"');
            }
            '"' => return Some(name),
            c => name.push(c),
        }
    }
    None
}

/// Splits a NUL-terminated string off the front.
fn cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = CStr::from_bytes_until_nul(buf).ok()?.to_bytes();
    Some((s, &buf[s.len() + 1..]))
}

/// PostgreSQL keeps prepared statements and portals in hash tables keyed by a buffer of
/// NAMEDATALEN (64) bytes: it looks a name up by its first 63 bytes, byte-wise, so names that
/// share them are one statement or portal.
const NAME_KEY_LEN: usize = 63;

/// A prepared statement's or a portal's name, as the client sent it.
#[derive(Debug, Default)]
struct Name(SmallVec<[u8; NAME_INLINE]>);

/// Names this long are kept in place, not on the heap: a Bind names a statement and a portal,
/// and drivers' names are short (`P_0`, `S_1`, `_pg3_0`, `__asyncpg_stmt_1__`).
const NAME_INLINE: usize = 22;

impl Name {
    fn new(bytes: &[u8]) -> Self {
        Self(SmallVec::from_slice(bytes))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the database tells it from other names by, when the connector can be sure: see
    /// [`name_key`].
    fn key(&self) -> Option<&[u8]> {
        name_key(&self.0)
    }

    /// Whether the database takes both for one name, as far as the connector can be sure.
    fn is(&self, other: &Name) -> bool {
        self.key().is_some_and(|key| other.key() == Some(key))
    }

    /// The name as a transcript shows it.
    fn shown(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

/// What the database looks the statement or portal `name` up by: its first 63 bytes. Keyed by
/// the whole name, two names sharing them were two statements to the connector and one to the
/// database, which then ran one while the transcript showed the other.
///
/// `None` when one of those bytes is not ASCII: the database cuts and compares the name as
/// converted to its own encoding, which the connector cannot follow (a `client_encoding` set
/// in a pipeline is reported only at its end; é is one byte in LATIN1 and two in UTF-8; SJIS
/// and BIG5 have characters twice, and each pair is one in the database). Such a name is never
/// taken for a text: its statement is recorded as SQL names it (`EXECUTE name`). A name that
/// is ASCII in its first 63 bytes is the same 63 bytes in every encoding the database may have.
fn name_key(name: &[u8]) -> Option<&[u8]> {
    let key = &name[..name.len().min(NAME_KEY_LEN)];
    key.is_ascii().then_some(key)
}

/// A SQL identifier, quoted when it is not a plain lower-case one.
fn quote_ident(name: &str) -> Cow<'_, str> {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { Cow::Borrowed(name) } else { Cow::Owned(format!("\"{}\"", name.replace('"', "\"\""))) }
}

/// Whether a CommandComplete's tag counts rows its command changed, for a command that sent
/// rows to the client or none, of a statement whose `text` is read when the tag alone does not
/// say. A `SELECT n` that sent none wrote its rows to a table: `CREATE TABLE AS`, `SELECT
/// INTO`, `CREATE MATERIALIZED VIEW`. A `COPY n` that is no COPY TO STDOUT (told apart before)
/// is a COPY FROM, or a COPY TO a file or a program on the database's host, which changes no row.
fn changes_rows(tag: &[u8], sent_rows: bool, text: &Text, encoding: ClientEncoding) -> bool {
    [&b"INSERT "[..], b"UPDATE ", b"DELETE ", b"MERGE "].iter().any(|command| tag.starts_with(command))
        || !sent_rows && tag.starts_with(b"SELECT ")
        || tag.starts_with(b"COPY ") && !is_copy_to(&text.to_str(encoding))
}

/// The rows a CommandComplete (`COPY n`, `DELETE n`) counts.
fn tag_rows(msg: MessageRef<'_>) -> i64 {
    msg.decode::<CommandComplete>()
        .ok()
        .and_then(|tag| tag.rows())
        .map_or(0, |rows| i64::try_from(rows).unwrap_or(i64::MAX))
}

/// Binary arguments longer than this show their first this many bytes, and their length.
const SHOWN_BINARY_ARGUMENT: usize = 256;
/// Calls larger than this show their size, not their arguments: decoding them takes a copy,
/// which a large `lo_write` should not cost the relay's thread.
const SHOWN_CALL_MAX: usize = 1024 * 1024;

/// How a FunctionCall is shown. PostgreSQL names the function by its oid only; its arguments
/// are what it works on (the query `query_to_xml` runs, the data `lo_write` stores), so they
/// are shown as SQL writes them: text as a literal, binary in hex, NULL.
fn function_call_text(msg: MessageRef<'_>, encoding: ClientEncoding) -> String {
    let oid = msg.payload().first_chunk::<4>().map(|oid| u32::from_be_bytes(*oid));
    let call = match msg.len() <= SHOWN_CALL_MAX {
        true => msg.decode::<FunctionCall>().ok(),
        false => None,
    };
    let Some(call) = call else {
        return match oid {
            Some(oid) if msg.len() > SHOWN_CALL_MAX => {
                format!("-- fast-path call of the function with oid {oid} ({} bytes, arguments not shown)", msg.len())
            }
            Some(oid) => format!("-- fast-path call of the function with oid {oid}"),
            None => "-- fast-path function call".to_owned(),
        };
    };
    let mut text = format!("-- fast-path call of the function with oid {}", call.oid);
    let arguments_at = text.len();
    text.push('(');
    for (i, arg) in call.args.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        match arg {
            None => text.push_str("NULL"),
            // A text value in binary is its bytes: one that may hold a password is shown as
            // text, for it to be taken out (`dblink_connect`'s connection string).
            Some(bytes) if call.is_binary(i) && !(may_hold_password(bytes) && std::str::from_utf8(bytes).is_ok()) => {
                text.push_str("'\\x");
                for byte in bytes.iter().take(SHOWN_BINARY_ARGUMENT) {
                    let _ = write!(text, "{byte:02x}");
                }
                text.push('\'');
                if bytes.len() > SHOWN_BINARY_ARGUMENT {
                    let _ = write!(text, " /* first {SHOWN_BINARY_ARGUMENT} of {} bytes */", bytes.len());
                }
            }
            Some(bytes) => {
                text.push('\'');
                text.push_str(&encoding.decode(bytes).replace('\'', "''"));
                text.push('\'');
            }
        }
    }
    text.push(')');
    // The arguments are literals as written here, with standard_conforming_strings on: a
    // connection string among them (`dblink_connect`'s) is taken out of them as out of SQL.
    match redact_passwords(&text[arguments_at..], StandardStrings::On) {
        Cow::Borrowed(_) => text,
        Cow::Owned(arguments) => format!("{}{arguments}", &text[..arguments_at]),
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use gatehouse_pgwire::Message;

    use super::*;

    fn msg(tag: u8, payload: &[u8]) -> Message {
        let mut buf = BytesMut::new();
        buf.put_u8(tag);
        buf.put_i32(i32::try_from(payload.len()).unwrap() + 4);
        buf.put_slice(payload);
        Message::from_frame(buf.freeze()).unwrap()
    }

    fn error(code: &str) -> Message {
        msg(b'E', format!("SERROR\0C{code}\0Mboom\0\0").as_bytes())
    }

    /// Feeds `client` at time 10, then `server` at time 20 + i, and returns the statements as
    /// `(text, rows, sqlstate)`.
    fn run(client: &[Message], server: &[Message]) -> Vec<(String, i64, String)> {
        let mut r = Recorder::default();
        for m in client {
            r.on_client(m.as_message_ref(), 10);
        }
        for (i, m) in server.iter().enumerate() {
            r.on_server(m.as_message_ref(), 20 + i as i64);
        }
        r.done().map(|s| (s.text, s.rows, s.sqlstate)).collect()
    }

    fn parse(name: &str, sql: &str) -> Message {
        msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    fn bind(portal: &str, statement: &str) -> Message {
        msg(b'B', format!("{portal}\0{statement}\0\0\0\0\0\0\0").as_bytes())
    }

    fn execute(portal: &str) -> Message {
        execute_rows(portal, 0)
    }

    fn execute_rows(portal: &str, max_rows: u32) -> Message {
        msg(b'E', &[portal.as_bytes(), b"\0", &max_rows.to_be_bytes()].concat())
    }

    fn sync() -> Message {
        msg(b'S', b"")
    }

    fn ready() -> Message {
        msg(b'Z', b"I")
    }

    fn parsed() -> Message {
        msg(b'1', b"")
    }

    fn bound() -> Message {
        msg(b'2', b"")
    }

    fn complete(tag: &str) -> Message {
        msg(b'C', format!("{tag}\0").as_bytes())
    }

    fn row() -> Message {
        msg(b'D', b"\0\x01\0\0\0\x011")
    }

    fn s(text: &str, rows: i64, code: &str) -> (String, i64, String) {
        (text.to_owned(), rows, code.to_owned())
    }

    #[test]
    fn statements_pipelined_behind_an_encoding_change_are_read_in_the_new_encoding() {
        let latin1 = || msg(b'S', b"client_encoding\0LATIN1\0");
        let client = [
            msg(b'Q', b"set client_encoding to 'LATIN1'\0"),
            msg(b'Q', b"select 'caf\xe9'\0"),
            msg(b'P', b"\0select 'th\xe9'\0\0\0"),
            bind("", ""),
            execute(""),
            sync(),
        ];
        let server = [
            latin1(),
            complete("SET"),
            ready(),
            row(),
            complete("SELECT 1"),
            ready(),
            parsed(),
            bound(),
            row(),
            complete("SELECT 1"),
            ready(),
        ];
        let texts: Vec<_> = run(&client, &server).into_iter().map(|(text, ..)| text).collect();
        assert_eq!(texts, ["set client_encoding to 'LATIN1'", "select 'café'", "select 'thé'"]);
        // A query that changes the encoding was read whole in the one before.
        let client = [msg(b'Q', "set client_encoding to 'LATIN1'; select 'café'\0".as_bytes())];
        let server = [latin1(), complete("SET"), row(), complete("SELECT 1"), ready()];
        assert_eq!(run(&client, &server)[0].0, "set client_encoding to 'LATIN1'; select 'café'");
    }

    #[test]
    fn an_error_without_a_sqlstate_is_recorded_as_one() {
        // A broken server's ErrorResponse: no fields, or a body that is none.
        for server_error in [msg(b'E', b"\0"), msg(b'E', b""), msg(b'E', b"Mboom\0\0"), error(""), error("12")] {
            let simple = run(&[msg(b'Q', b"select 1\0")], &[server_error.clone(), ready()]);
            assert_eq!(simple, [s("select 1", 0, "XX000")]);
            let extended = run(&[parse("", "select 1"), bind("", ""), execute(""), sync()], &[server_error, ready()]);
            assert_eq!(extended, [s("select 1", 0, "XX000")]);
        }
    }

    #[test]
    fn text_is_decoded_from_the_client_encoding_the_server_reports() {
        let mut r = Recorder::default();
        r.on_server(msg(b'S', b"client_encoding\0LATIN1\0").as_message_ref(), 1);
        r.on_client(msg(b'Q', b"select 'caf\xe9'\0").as_message_ref(), 10);
        r.on_client(parse("", "select 'na\u{ef}ve'").as_message_ref(), 10);
        r.on_server(ready().as_message_ref(), 20);
        r.on_server(parsed().as_message_ref(), 20);
        r.on_server(msg(b'S', b"client_encoding\0UTF8\0").as_message_ref(), 30);
        r.on_client(msg(b'Q', "select 'café'\0".as_bytes()).as_message_ref(), 40);
        r.on_server(ready().as_message_ref(), 50);
        let texts: Vec<_> = r.done().map(|s| s.text).collect();
        assert_eq!(texts, ["select 'café'", "select 'café'"]);
        // The Parse above arrived as UTF-8 bytes of ï (C3 AF), read as LATIN1: Ã¯.
        assert_eq!(r.unnamed_statement.as_deref(), Some("select 'naÃ¯ve'"));
    }

    #[test]
    fn the_statement_running_is_the_first_sent_and_not_complete_with_its_text_to_be() {
        let mut r = Recorder::default();
        let running = |r: &Recorder| r.running().map(|(start, text)| (start, text.into_owned()));
        assert_eq!((r.running_nth(), running(&r)), (None, None));
        // Pipelined simple queries: the first, then the second.
        r.on_client(msg(b'Q', b"select 1\0").as_message_ref(), 10);
        r.on_client(msg(b'Q', b"select 2\0").as_message_ref(), 11);
        assert_eq!((r.running_nth(), running(&r)), (Some(0), Some((10, "select 1".to_owned()))));
        r.on_server(ready().as_message_ref(), 12);
        // It started when the database was done with the first.
        assert_eq!((r.running_nth(), running(&r)), (Some(1), Some((12, "select 2".to_owned()))));
        r.on_server(ready().as_message_ref(), 13);
        assert_eq!(running(&r), None);
        // Unnamed, in one go: the server answers the Parse and Bind only with the rows.
        for m in [parse("", "select pg_sleep(9)"), bind("", ""), execute(""), sync()] {
            r.on_client(m.as_message_ref(), 20);
        }
        assert_eq!((r.running_nth(), running(&r)), (Some(2), Some((20, "select pg_sleep(9)".to_owned()))));
        for m in [parsed(), bound(), complete("SELECT 1"), ready()] {
            r.on_server(m.as_message_ref(), 30);
        }
        assert_eq!(r.running_nth(), None);
        // Prepared before, bound now: the text of the statement confirmed.
        for m in [parse("s1", "select $1"), sync()] {
            r.on_client(m.as_message_ref(), 40);
        }
        r.on_server(parsed().as_message_ref(), 41);
        r.on_server(ready().as_message_ref(), 41);
        for m in [bind("p", "s1"), execute("p"), sync()] {
            r.on_client(m.as_message_ref(), 50);
        }
        assert_eq!((r.running_nth(), running(&r)), (Some(3), Some((50, "select $1".to_owned()))));
    }

    #[test]
    fn a_password_a_statement_sets_is_never_recorded() {
        let got = run(&[msg(b'Q', b"ALTER ROLE app PASSWORD 'hunter2'\0")], &[complete("ALTER ROLE"), ready()]);
        assert_eq!(got, [s("ALTER ROLE app PASSWORD '[redacted]'", 0, "")]);
        // Prepared, and still running when reported as such.
        let mut r = Recorder::default();
        for m in
            [parse("", "create user mapping for u server s options (password 'p')"), bind("", ""), execute(""), sync()]
        {
            r.on_client(m.as_message_ref(), 20);
        }
        let (_, text) = r.running().unwrap();
        assert_eq!(text, "create user mapping for u server s options (password '[redacted]')");
    }

    /// Found by a review: read both ways a backslash may be, `'a\'` ran on over the CREATE
    /// TABLE after it, which ran. The server says which way it reads.
    #[test]
    fn literals_are_read_as_the_standard_conforming_strings_the_server_reports() {
        let strings = |value: &str| msg(b'S', format!("standard_conforming_strings\0{value}\0").as_bytes());
        let evading = r"alter role me password 'a\'; create table t(); select 'c'";
        let off = "set standard_conforming_strings = off";
        let ran = [complete("ALTER ROLE"), complete("CREATE TABLE"), row(), complete("SELECT 1")];
        let mut r = Recorder::default();
        // At the login, and for a query that changes it, read whole with the setting before;
        // then for the queries pipelined behind it.
        r.on_server(strings("on").as_message_ref(), 1);
        for sql in [format!("{evading}; {off}"), r"alter role me password 'ab\'S3cret42'".to_owned()] {
            r.on_client(msg(b'Q', format!("{sql}\0").as_bytes()).as_message_ref(), 10);
        }
        for m in ran.iter().chain(&[strings("off"), complete("SET"), ready(), complete("ALTER ROLE"), ready()]) {
            r.on_server(m.as_message_ref(), 20);
        }
        let texts: Vec<_> = r.done().map(|s| s.text).collect();
        assert_eq!(
            texts,
            [
                format!("alter role me password '[redacted]'; create table t(); select 'c'; {off}"),
                "alter role me password '[redacted]'".to_owned()
            ]
        );
        // A prepared statement is read when the server parsed it, under the setting then.
        r.on_server(strings("on").as_message_ref(), 30);
        for m in [parse("s", evading), sync()] {
            r.on_client(m.as_message_ref(), 30);
        }
        for m in [parsed(), ready(), strings("off")] {
            r.on_server(m.as_message_ref(), 40);
        }
        for m in [bind("", "s"), execute(""), sync()] {
            r.on_client(m.as_message_ref(), 50);
        }
        assert_eq!(r.running().unwrap().1, "alter role me password '[redacted]'; create table t(); select 'c'");
        for m in [bound(), complete("ALTER ROLE"), ready()] {
            r.on_server(m.as_message_ref(), 60);
        }
        let texts: Vec<_> = r.done().map(|s| s.text).collect();
        assert_eq!(texts, ["alter role me password '[redacted]'; create table t(); select 'c'"]);
        // Not reported (not PostgreSQL): both ways, and only what both readings find.
        let got = run(&[msg(b'Q', format!("{evading}\0").as_bytes())], &[complete("ALTER ROLE"), ready()]);
        assert_eq!(got[0].0, "alter role me password '[redacted]'; create table t(); select 'c'");
    }

    /// Found by a review: a setting changed by a statement earlier in the same pipeline is
    /// reported at its Sync, after the statements behind it were parsed: a text read with the
    /// setting before had redaction take the statements that ran out of the transcript.
    #[test]
    fn a_text_parsed_behind_a_statement_of_its_pipeline_never_loses_sql_to_redaction() {
        let evading = r"alter role me password 'a\'; create table t(); select 'c'";
        let mut r = Recorder::default();
        r.on_server(msg(b'S', b"standard_conforming_strings\0off\0").as_message_ref(), 1);
        let pipeline =
            [parse("", "set standard_conforming_strings = on"), bind("", ""), execute(""), parse("", evading)];
        for m in pipeline.into_iter().chain([bind("", ""), execute(""), sync()]) {
            r.on_client(m.as_message_ref(), 10);
        }
        let answers = [parsed(), bound(), complete("SET"), parsed(), bound(), complete("ALTER ROLE")];
        for m in answers.into_iter().chain([msg(b'S', b"standard_conforming_strings\0on\0"), ready()]) {
            r.on_server(m.as_message_ref(), 20);
        }
        let texts: Vec<_> = r.done().map(|s| s.text).collect();
        assert_eq!(texts[1], "alter role me password '[redacted]'; create table t(); select 'c'");
        // A text past ASCII may also have been read in another client_encoding than the one
        // known here (SJIS's second bytes hold backslashes): it is not redacted at all.
        let sjis = "select E'\u{8868}', 'user=u password=' || 'k' from t; delete from t";
        let mut r = Recorder::default();
        for m in [parse("", "set client_encoding = 'SJIS'"), bind("", ""), execute(""), parse("", sjis)] {
            r.on_client(m.as_message_ref(), 10);
        }
        for m in [parsed(), bound(), complete("SET"), parsed()] {
            r.on_server(m.as_message_ref(), 20);
        }
        assert_eq!(&*r.statement_text(&Name::new(b"")), sjis);
    }

    #[test]
    fn simple_query_counts_rows_sent_bytes_and_time() {
        let mut r = Recorder::default();
        r.on_client(msg(b'Q', b"select 1; insert into t values (1), (2)\0").as_message_ref(), 100);
        let server = [msg(b'T', b"\0\0"), row(), complete("SELECT 1"), complete("INSERT 0 2"), ready()];
        for m in &server {
            r.on_server(m.as_message_ref(), 150);
        }
        let got: Vec<_> = r.done().collect();
        assert_eq!(got.len(), 1);
        let st = &got[0];
        assert_eq!(st.text, "select 1; insert into t values (1), (2)");
        // The INSERT's two rows were written, not sent: one row reached the client.
        assert_eq!((st.rows, st.start_us, st.duration_us), (1, 100, 50));
        assert_eq!(st.bytes_sent, server.iter().map(|m| m.len() as i64).sum::<i64>());
        assert_eq!(st.sqlstate, "");
    }

    #[test]
    fn rows_without_a_count_in_the_tag_are_counted_from_data_rows() {
        let got = run(&[msg(b'Q', b"fetch all in c\0")], &[row(), row(), complete("SHOW"), ready()]);
        assert_eq!(got, [s("fetch all in c", 2, "")]);
    }

    #[test]
    fn simple_query_error_keeps_the_first_sqlstate() {
        let got = run(&[msg(b'Q', b"select * from nope\0")], &[error("42P01"), ready()]);
        assert_eq!(got, [s("select * from nope", 0, "42P01")]);
    }

    #[test]
    fn empty_query_is_a_statement() {
        assert_eq!(run(&[msg(b'Q', b"\0")], &[msg(b'I', b""), ready()]), [s("", 0, "")]);
    }

    #[test]
    fn extended_named_and_unnamed_statements() {
        let client = [
            parse("s1", "select $1"),
            parse("", "update t set x = 1"),
            bind("p1", "s1"),
            bind("", ""),
            execute("p1"),
            execute(""),
            sync(),
        ];
        let server = [
            msg(b'1', b""),
            msg(b'1', b""),
            msg(b'2', b""),
            msg(b'2', b""),
            row(),
            complete("SELECT 1"),
            complete("UPDATE 5"),
            ready(),
        ];
        assert_eq!(run(&client, &server), [s("select $1", 1, ""), s("update t set x = 1", 0, "")]);
    }

    #[test]
    fn portal_suspended_and_empty_query_complete_an_execute() {
        let client = [parse("", "select g from generate_series(1, 5) g"), bind("", ""), execute(""), sync()];
        // Suspended, then the transaction ends (ReadyForQuery idle): the statement is over.
        let got = run(&client, &[parsed(), bound(), row(), row(), msg(b's', b""), ready()]);
        assert_eq!(got, [s("select g from generate_series(1, 5) g", 2, "")]);
        let got =
            run(&[parse("", ""), bind("", ""), execute(""), sync()], &[parsed(), bound(), msg(b'I', b""), ready()]);
        assert_eq!(got, [s("", 0, "")]);
    }

    /// Two portals executed in one write, the first up to a row limit: the second runs once the
    /// first is suspended, and is recorded first (the first ends with its last fetch). Each
    /// starts when it ran, so that they are listed in that order.
    #[test]
    fn a_statement_run_behind_a_suspended_portal_starts_when_it_was_suspended() {
        let mut r = Recorder::default();
        let limited = msg(b'E', b"p1\0\0\0\0\x02");
        let client = [parse("", "select 'FIRST'"), bind("p1", ""), parse("", "select 'SECOND'"), bind("p2", "")];
        client.into_iter().chain([limited, execute("p2"), sync()]).for_each(|m| r.on_client(m.as_message_ref(), 10));
        let answers = [(parsed(), 20), (bound(), 20), (parsed(), 20), (bound(), 20), (row(), 20), (row(), 20)];
        let answers = answers.into_iter().chain([(msg(b's', b""), 20), (row(), 30), (complete("SELECT 1"), 30)]);
        answers.chain([(msg(b'Z', b"T"), 30)]).for_each(|(m, at)| r.on_server(m.as_message_ref(), at));
        [execute("p1"), sync()].iter().for_each(|m| r.on_client(m.as_message_ref(), 40));
        [(row(), 50), (complete("SELECT 3"), 50), (msg(b'Z', b"T"), 50)]
            .iter()
            .for_each(|(m, at)| r.on_server(m.as_message_ref(), *at));
        [msg(b'Q', b"commit\0")].iter().for_each(|m| r.on_client(m.as_message_ref(), 60));
        [(complete("COMMIT"), 70), (ready(), 70)].iter().for_each(|(m, at)| r.on_server(m.as_message_ref(), *at));
        let got: Vec<_> = r.done().map(|s| (s.text, s.start_us, s.rows)).collect();
        assert_eq!(got[..2], [("select 'SECOND'".to_owned(), 20, 1), ("select 'FIRST'".to_owned(), 10, 3)], "{got:?}");
    }

    #[test]
    fn pipelined_batches_complete_in_order_and_an_error_skips_to_its_sync() {
        let client = [
            parse("", "select 1"),
            bind("", ""),
            execute(""),
            sync(),
            parse("", "select * from nope"),
            bind("", ""),
            execute(""),
            // Skipped by the server after the error: no statement.
            parse("", "select 3"),
            bind("", ""),
            execute(""),
            sync(),
            parse("", "select 4"),
            bind("", ""),
            execute(""),
            sync(),
        ];
        let server = [
            parsed(),
            bound(),
            row(),
            complete("SELECT 1"),
            ready(),
            // The Parse fails: a missing table is found at parse analysis.
            error("42P01"),
            ready(),
            parsed(),
            bound(),
            row(),
            complete("SELECT 1"),
            ready(),
        ];
        assert_eq!(
            run(&client, &server),
            [s("select 1", 1, ""), s("select * from nope", 0, "42P01"), s("select 4", 1, "")]
        );
    }

    #[test]
    fn awaiting_text_counts_the_texts_held_until_their_answers() {
        let mut r = Recorder::default();
        let client = [
            msg(b'Q', b"select 1\0"),
            parse("", "select * from nope"),
            bind("", ""),
            execute(""),
            // Skipped by the server after the error.
            parse("", "select 3"),
            sync(),
        ];
        for m in &client {
            r.on_client(m.as_message_ref(), 10);
        }
        // The first is the server's already: what is held is what waits behind it.
        assert_eq!(r.awaiting_text_len(), "select * from nope".len() + "select 3".len());
        r.on_server(complete("SELECT 1").as_message_ref(), 20);
        r.on_server(ready().as_message_ref(), 20);
        assert_eq!(r.awaiting_text_len(), "select 3".len());
        r.on_server(error("42P01").as_message_ref(), 30);
        assert_eq!((r.awaiting(), r.awaiting_text_len()), (1, 0), "the Sync is left");
        r.on_server(ready().as_message_ref(), 30);
        assert_eq!((r.awaiting(), r.awaiting_text_len()), (0, 0));

        // A query changing the encoding from LATIN1 is decoded longer than it was sent: the
        // count follows, and nothing is left when it is answered.
        r.on_server(msg(b'S', b"client_encoding\0LATIN1\0").as_message_ref(), 40);
        for m in [msg(b'Q', b"set client_encoding to 'UTF8' -- caf\xe9\0"), msg(b'Q', b"select 2\0")] {
            r.on_client(m.as_message_ref(), 40);
        }
        for m in [msg(b'S', b"client_encoding\0UTF8\0"), complete("SET"), ready()] {
            r.on_server(m.as_message_ref(), 50);
        }
        assert_eq!((r.awaiting(), r.awaiting_text_len()), (1, 0));
        for m in [row(), complete("SELECT 1"), ready()] {
            r.on_server(m.as_message_ref(), 60);
        }
        assert_eq!((r.awaiting(), r.awaiting_text_len()), (0, 0));
        let texts: Vec<_> = r.done().map(|s| s.text).collect();
        assert_eq!(texts[texts.len() - 2..], ["set client_encoding to 'UTF8' -- café", "select 2"]);
    }

    #[test]
    fn a_pipelined_statement_starts_when_the_one_before_it_ends() {
        // Three queries in one write at 10; the database answers them at 100, 103 and 250.
        let mut r = Recorder::default();
        for sql in ["select pg_sleep(0.1)", "select 2", "select pg_sleep(0.15)"] {
            r.on_client(msg(b'Q', format!("{sql}\0").as_bytes()).as_message_ref(), 10);
        }
        for end in [100, 103, 250] {
            r.on_server(complete("SELECT 1").as_message_ref(), end);
            r.on_server(ready().as_message_ref(), end);
        }
        let timing: Vec<(i64, i64)> = r.done().map(|s| (s.start_us, s.duration_us)).collect();
        assert_eq!(timing, [(10, 90), (100, 3), (103, 147)]);
    }

    #[test]
    fn error_before_the_client_syncs_discards_its_later_executes() {
        let mut r = Recorder::default();
        r.on_client(parse("", "select 1/0").as_message_ref(), 1);
        r.on_client(bind("", "").as_message_ref(), 1);
        r.on_client(execute("").as_message_ref(), 1);
        r.on_client(msg(b'H', b"").as_message_ref(), 1);
        r.on_server(error("22012").as_message_ref(), 2);
        // Sent after the error reached the server, which discards it.
        r.on_client(execute("").as_message_ref(), 3);
        r.on_client(sync().as_message_ref(), 3);
        r.on_client(msg(b'Q', b"select 2\0").as_message_ref(), 3);
        r.on_server(ready().as_message_ref(), 4);
        r.on_server(complete("SELECT 1").as_message_ref(), 5);
        r.on_server(ready().as_message_ref(), 5);
        let got: Vec<_> = r.done().map(|s| (s.text, s.sqlstate)).collect();
        assert_eq!(got, [("select 1/0".to_owned(), "22012".to_owned()), ("select 2".to_owned(), String::new())]);
    }

    #[test]
    fn a_parse_that_fails_is_a_statement_with_its_error() {
        // asyncpg prepares first: Parse, Describe, Sync.
        let client = [parse("s", "selec"), msg(b'D', b"Ss\0"), sync(), msg(b'Q', b"select 1\0")];
        let got = run(&client, &[error("42601"), ready(), complete("SELECT 0"), ready()]);
        assert_eq!(got, [s("selec", 0, "42601"), s("select 1", 0, "")]);
        // A Bind that fails records the statement it bound.
        let client = [parse("", "select $1::int"), bind("", ""), execute(""), sync()];
        let got = run(&client, &[parsed(), error("22P02"), ready()]);
        assert_eq!(got, [s("select $1::int", 0, "22P02")]);
        // Behind another in one batch (JDBC's `select 1; select 1/0`), it starts when that ended.
        let mut r = Recorder::default();
        let client = [parse("", "select 1"), bind("", ""), execute(""), parse("", "select 1/0"), bind("", ""), sync()];
        client.iter().for_each(|m| r.on_client(m.as_message_ref(), 10));
        let server = [parsed(), bound(), row(), complete("SELECT 1"), parsed(), error("22012"), ready()];
        server.iter().zip([20, 20, 20, 30, 31, 32, 32]).for_each(|(m, at)| r.on_server(m.as_message_ref(), at));
        let got: Vec<_> = r.done().map(|s| (s.start_us, s.duration_us, s.sqlstate)).collect();
        assert_eq!(got, [(10, 20, String::new()), (30, 2, "22012".to_owned())]);
    }

    #[test]
    fn statements_pipelined_after_a_failed_one_start_after_its_error() {
        // postgres.js sends each query as Parse, Bind, Execute, Sync, all in one write: the
        // query after the Sync of one that fails runs after that failure, whether it failed
        // at its Parse, its Bind or its Execute.
        let one = |sql: &str| [parse("", sql), bind("", ""), execute(""), sync()];
        for (failing, answer) in [
            (vec![parse("", "selec"), bind("", ""), execute(""), sync()], vec![error("42601"), ready()]),
            (
                vec![parse("", "select $1::int"), bind("", ""), execute(""), sync()],
                vec![parsed(), error("22P02"), ready()],
            ),
            (
                vec![parse("", "select 1/n"), bind("", ""), execute(""), sync()],
                vec![parsed(), bound(), error("22012"), ready()],
            ),
            // A batch (JDBC's executeBatch) that fails at its first Execute skips the rest.
            (
                vec![parse("", "insert"), bind("", ""), execute(""), bind("", ""), execute(""), sync()],
                vec![parsed(), bound(), error("23505"), ready()],
            ),
        ] {
            let mut r = Recorder::default();
            let client = one("select 1").into_iter().chain(failing).chain(one("select 3"));
            client.for_each(|m| r.on_client(m.as_message_ref(), 10));
            let first = [parsed(), bound(), row(), complete("SELECT 1"), ready()];
            let last = [parsed(), bound(), row(), complete("SELECT 1"), ready()];
            let server =
                first.iter().map(|m| (m, 20)).chain(answer.iter().map(|m| (m, 30))).chain(last.iter().map(|m| (m, 40)));
            server.for_each(|(m, at)| r.on_server(m.as_message_ref(), at));
            let got: Vec<_> = r.done().map(|s| (s.text, s.start_us)).collect();
            assert_eq!(got[0], ("select 1".to_owned(), 10));
            assert_eq!(got[1].1, 20, "{got:?}");
            assert_eq!(got[2], ("select 3".to_owned(), 30), "{got:?}");
        }
    }

    #[test]
    fn a_failed_parse_or_bind_counts_its_error_as_bytes_sent() {
        for (client, server) in [
            (vec![parse("", "selec"), bind("", ""), execute(""), sync()], vec![error("42601"), ready()]),
            (
                vec![parse("", "select $1::int"), bind("", ""), execute(""), sync()],
                vec![parsed(), error("22P02"), ready()],
            ),
        ] {
            let mut r = Recorder::default();
            client.iter().for_each(|m| r.on_client(m.as_message_ref(), 10));
            server.iter().for_each(|m| r.on_server(m.as_message_ref(), 20));
            let done: Vec<Statement> = r.done().collect();
            assert_eq!(done.len(), 1);
            assert_eq!(done[0].bytes_sent, error("00000").len() as i64, "{done:?}");
        }
    }

    #[test]
    fn a_parse_that_fails_names_nothing_even_pipelined() {
        let delete = "delete from t where id < 40";
        let client = [
            parse("s", delete),
            sync(),
            // `s` exists: this Parse fails, and the Bind after its Sync runs the DELETE.
            parse("s", "select 1"),
            sync(),
            bind("", "s"),
            execute(""),
            sync(),
        ];
        let server = [parsed(), ready(), error("42P05"), ready(), bound(), complete("DELETE 20"), ready()];
        assert_eq!(run(&client, &server), [s("select 1", 0, "42P05"), s(delete, 0, "")]);

        // A failed unnamed Parse leaves no unnamed statement, as in PostgreSQL.
        let client = [parse("", delete), sync(), parse("", "selec"), sync(), bind("", ""), execute(""), sync()];
        let server = [parsed(), ready(), error("42601"), ready(), error("26000"), ready()];
        assert_eq!(run(&client, &server), [s("selec", 0, "42601"), s(NO_UNNAMED_STATEMENT, 0, "26000")]);
    }

    #[test]
    fn a_statement_replaced_out_of_sight_is_not_shown_as_what_ran() {
        // A DO block deallocates `s1` and prepares a DELETE under its name: the recorder sees
        // only `DO`, but the server's answer to the Execute names another command.
        let client = [
            parse("s1", "/* hi */ (select 'harmless' as x)"),
            sync(),
            msg(b'Q', b"do $$ begin execute 'deallocate s1; prepare s1 as delete from t'; end $$\0"),
            bind("", "s1"),
            execute(""),
            bind("", "s1"),
            execute(""),
            sync(),
        ];
        let server = [
            parsed(),
            ready(),
            complete("DO"),
            ready(),
            bound(),
            complete("DELETE 5"),
            bound(),
            row(),
            complete("SELECT 1"),
            ready(),
        ];
        let got = run(&client, &server);
        assert!(got[1].0.starts_with("-- not what ran: the server answered DELETE 5."), "{got:?}");
        assert!(got[1].0.ends_with("prepared as:\n/* hi */ (select 'harmless' as x)"), "{got:?}");
        assert_eq!(
            got[2],
            s("/* hi */ (select 'harmless' as x)", 1, ""),
            "a SELECT that answers SELECT is as prepared"
        );
    }

    #[test]
    fn a_portal_gone_with_its_transaction_or_closed_by_sql_is_not_named_by_its_bind() {
        let run_in = |closing: Message, close_answers: &[Message]| {
            let mut client = vec![msg(b'Q', b"begin\0"), parse("", "select 1"), bind("p", ""), sync(), closing];
            client.extend([msg(b'Q', b"declare p cursor for select secret from vault\0"), execute("p"), sync()]);
            let mut server = vec![complete("BEGIN"), msg(b'Z', b"T"), parsed(), bound(), msg(b'Z', b"T")];
            server.extend_from_slice(close_answers);
            server.extend([complete("DECLARE CURSOR"), msg(b'Z', b"T"), row(), complete("FETCH 1"), msg(b'Z', b"T")]);
            run(&client, &server).pop().unwrap()
        };
        let closed = run_in(msg(b'Q', b"close p\0"), &[complete("CLOSE CURSOR"), msg(b'Z', b"T")]);
        assert_eq!(closed, s("FETCH ALL FROM p", 1, ""));
        let do_block = b"do $$ declare c refcursor := 'p'; begin close c; end $$\0";
        let closed_out_of_sight = run_in(msg(b'Q', do_block), &[complete("DO"), msg(b'Z', b"T")]);
        assert_eq!(closed_out_of_sight, s("FETCH ALL FROM p", 1, ""), "the DECLARE of its name says it was gone");
        let committed =
            run_in(msg(b'Q', b"commit; begin\0"), &[complete("COMMIT"), complete("BEGIN"), msg(b'Z', b"T")]);
        assert_eq!(committed, s("FETCH ALL FROM p", 1, ""), "a Z after COMMIT; BEGIN is in a new transaction");
    }

    #[test]
    fn a_rollback_to_a_savepoint_leaves_the_cursors_opened_before_it_open() {
        // JDBC with `autosave`: a cursor read 2 rows at a time, an error, a ROLLBACK TO (sent as a
        // simple query or through the protocol), and the cursor read on to its end.
        let q = "select g from generate_series(1, 3) g";
        let run_with = |rollback: &[Message], answers: &[Message]| {
            let mut client = vec![msg(b'Q', b"begin\0"), parse("", q), bind("C_1", ""), execute("C_1"), sync()];
            client.extend_from_slice(rollback);
            client.extend([execute("C_1"), sync()]);
            let mut server = vec![complete("BEGIN"), msg(b'Z', b"T"), parsed(), bound(), row(), row()];
            server.extend([msg(b's', b""), msg(b'Z', b"T")]);
            server.extend_from_slice(answers);
            server.extend([row(), complete("SELECT 1"), msg(b'Z', b"T")]);
            run(&client, &server)
        };
        let to_savepoint = "ROLLBACK TO SAVEPOINT PGJDBC_AUTOSAVE";
        let simple =
            run_with(&[msg(b'Q', format!("{to_savepoint}\0").as_bytes())], &[complete("ROLLBACK"), msg(b'Z', b"T")]);
        assert_eq!(simple, [s("begin", 0, ""), s(to_savepoint, 0, ""), s(q, 3, "")]);
        let extended = run_with(
            &[parse("", to_savepoint), bind("", ""), execute(""), sync()],
            &[parsed(), bound(), complete("ROLLBACK"), msg(b'Z', b"T")],
        );
        assert_eq!(extended, simple);
        // A ROLLBACK of the transaction ends it, cursors and all.
        let ended =
            run_with(&[msg(b'Q', b"rollback; begin\0")], &[complete("ROLLBACK"), complete("BEGIN"), msg(b'Z', b"T")]);
        let fetched = s("FETCH ALL FROM \"C_1\"", 1, "");
        assert_eq!(ended, [s("begin", 0, ""), s(q, 2, ""), s("rollback; begin", 0, ""), fetched]);
        assert!(rolls_back_to_savepoint("rollback work to s1") && rolls_back_to_savepoint("ROLLBACK TO SAVEPOINT s"));
        assert!(!rolls_back_to_savepoint("rollback; select 'to x'"));
    }

    #[test]
    fn a_commit_run_through_the_protocol_is_recorded_as_bound() {
        // JDBC commits with Parse, Bind, Execute of the unnamed portal.
        let client = [parse("", "COMMIT"), bind("", ""), execute(""), sync(), execute(""), sync()];
        let server = [parsed(), bound(), complete("COMMIT"), ready(), error("34000"), ready()];
        assert_eq!(run(&client, &server), [s("COMMIT", 0, ""), s(NO_UNNAMED_PORTAL, 0, "34000")]);
    }

    #[test]
    fn a_failed_describe_is_no_statement_and_its_answer_counts_for_the_next() {
        let describe = |target: u8, name: &str| msg(b'D', format!("{}{name}\0", target as char).as_bytes());
        let client = [parse("", "select 1"), describe(b'S', "nope"), bind("", ""), execute(""), sync()];
        assert_eq!(run(&client, &[parsed(), error("26000"), ready()]), []);

        let mut r = Recorder::default();
        let client = [parse("", "select 1"), bind("", ""), describe(b'P', ""), execute(""), sync()];
        client.iter().for_each(|m| r.on_client(m.as_message_ref(), 1));
        let description = msg(b'T', b"\0\x01x\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0");
        for m in [parsed(), bound(), description.clone(), row(), complete("SELECT 1"), ready()] {
            r.on_server(m.as_message_ref(), 2);
        }
        let done: Vec<_> = r.done().collect();
        assert_eq!((done.len(), done[0].rows), (1, 1));
        let answered = description.frame().len() + row().frame().len() + complete("SELECT 1").frame().len();
        assert_eq!(done[0].bytes_sent, answered as i64);
    }

    #[test]
    fn a_copy_out_cut_short_counts_the_rows_sent() {
        let copy_data = || msg(b'd', b"1\n");
        let server = [msg(b'H', b"\0\0\0"), copy_data(), copy_data(), copy_data(), error("22012"), ready()];
        assert_eq!(run(&[msg(b'Q', b"copy t to stdout\0")], &server), [s("copy t to stdout", 3, "22012")]);
        // Each COPY of a query counts its own.
        let server = [
            msg(b'H', b"\0\0\0"),
            copy_data(),
            copy_data(),
            complete("COPY 2"),
            msg(b'H', b"\0\0\0"),
            copy_data(),
            error("57014"),
            ready(),
        ];
        let two = "copy a to stdout; copy b to stdout";
        assert_eq!(run(&[msg(b'Q', format!("{two}\0").as_bytes())], &server), [s(two, 3, "57014")]);
        // Whole, it counts what its tag says: the CopyData may carry a header.
        let server = [msg(b'H', b"\0\0\0"), copy_data(), copy_data(), complete("COPY 1"), ready()];
        assert_eq!(
            run(&[msg(b'Q', b"copy t to stdout csv header\0")], &server),
            [s("copy t to stdout csv header", 1, "")]
        );
    }

    #[test]
    fn a_replication_stream_the_client_terminates_completes() {
        let start = msg(b'Q', b"START_REPLICATION SLOT s LOGICAL 0/0\0");
        let streamed = [msg(b'W', b"\0\0\0"), msg(b'd', b"w...")];
        let mut r = Recorder::default();
        r.on_client(start.as_message_ref(), 1);
        streamed.iter().for_each(|m| r.on_server(m.as_message_ref(), 2));
        r.on_client(msg(b'X', b"").as_message_ref(), 7);
        let done: Vec<_> = r.done().map(|s| (s.text, s.duration_us, s.sqlstate)).collect();
        assert_eq!(done, [("START_REPLICATION SLOT s LOGICAL 0/0".to_owned(), 6, String::new())]);
        // A connection lost mid-stream is cut short, as any statement.
        let mut r = Recorder::default();
        r.on_client(start.as_message_ref(), 1);
        streamed.iter().for_each(|m| r.on_server(m.as_message_ref(), 2));
        r.abandon(9, "08006", true);
        assert_eq!(r.done().map(|s| s.sqlstate).collect::<Vec<_>>(), ["08006"]);
        // Terminate ends nothing else: a query the client left running has its outcome awaited.
        let mut r = Recorder::default();
        r.on_client(msg(b'Q', b"select pg_sleep(1)\0").as_message_ref(), 1);
        r.on_client(msg(b'X', b"").as_message_ref(), 2);
        assert_eq!(r.done().count(), 0);
    }

    #[test]
    fn sql_deallocate_forgets_protocol_statements() {
        let mut r = Recorder::default();
        let mut exchange = |client: &[Message], server: &[Message]| {
            client.iter().for_each(|m| r.on_client(m.as_message_ref(), 1));
            server.iter().for_each(|m| r.on_server(m.as_message_ref(), 2));
            r.done().map(|s| s.text).collect::<Vec<_>>()
        };
        exchange(&[parse("x", "select 1"), parse("y", "select 2"), sync()], &[parsed(), parsed(), ready()]);
        exchange(&[msg(b'Q', b"deallocate prepare x\0")], &[complete("DEALLOCATE"), ready()]);
        exchange(&[msg(b'Q', b"prepare x as delete from t\0")], &[complete("PREPARE"), ready()]);
        let run_both = [bind("", "x"), execute(""), bind("", "y"), execute(""), sync()];
        let answers = [bound(), complete("DELETE 3"), bound(), complete("SELECT 1"), ready()];
        assert_eq!(exchange(&run_both, &answers), ["EXECUTE x", "select 2"]);
        exchange(&[msg(b'Q', b"DISCARD ALL\0")], &[complete("DISCARD ALL"), ready()]);
        assert_eq!(exchange(&run_both[2..], &answers[2..]), ["EXECUTE y"]);
    }

    #[test]
    fn names_are_told_apart_by_their_first_63_bytes_as_postgresql_does() {
        let name = |last: &str| format!("s{}{last}", "a".repeat(70));
        let mut r = Recorder::default();
        let mut exchange = |client: &[Message], server: &[Message]| {
            client.iter().for_each(|m| r.on_client(m.as_message_ref(), 1));
            server.iter().for_each(|m| r.on_server(m.as_message_ref(), 2));
            r.done().map(|s| s.text).collect::<Vec<_>>()
        };
        exchange(&[parse(&name("1"), "select 1"), sync()], &[parsed(), ready()]);
        // Bound under another name that shares them: the same statement.
        let got = exchange(&[bind("", &name("2")), execute(""), sync()], &[bound(), complete("SELECT 1"), ready()]);
        assert_eq!(got, ["select 1"]);
        // SQL cuts the names it reads to 63 bytes too.
        let deallocate = format!("deallocate {}\0", name("3"));
        exchange(&[msg(b'Q', deallocate.as_bytes())], &[complete("DEALLOCATE"), ready()]);
        let got = exchange(&[bind("", &name("1")), execute(""), sync()], &[bound(), complete("SELECT 1"), ready()]);
        assert_eq!(got, [format!("EXECUTE {}", name("1"))]);
        // Found by a review: a name SQL reads past ASCII is cut as the database's encoding cuts
        // it (`x…xé` to its 62 `x`s, a name of the protocol's): every name is forgotten.
        let short = "x".repeat(62);
        exchange(&[parse(&short, "select 2"), sync()], &[parsed(), ready()]);
        let deallocate = format!("deallocate \"{short}\u{e9}\"\0");
        exchange(&[msg(b'Q', deallocate.as_bytes())], &[complete("DEALLOCATE"), ready()]);
        let got = exchange(&[bind("", &short), execute(""), sync()], &[bound(), complete("SELECT 1"), ready()]);
        assert_eq!(got, [format!("EXECUTE {short}")]);
    }

    #[test]
    fn deallocate_and_close_names_are_read_as_postgresql_reads_them() {
        let names = |sql| named_after(sql, "deallocate", Some("prepare"));
        assert_eq!(names("DEALLOCATE _pg3_1"), Some(vec!["_pg3_1".to_owned()]));
        assert_eq!(
            names("deallocate Prepare \"A \"\"b\"\"\"; DEALLOCATE s2;"),
            Some(vec!["A \"b\"".into(), "s2".into()])
        );
        assert_eq!(names("DEALLOCATE PREPARE_X"), Some(vec!["prepare_x".to_owned()]));
        assert_eq!(names("deallocate all"), None);
        assert_eq!(names("deallocate prepare all"), None);
        assert_eq!(names("deallocate \"unterminated"), None);
        assert_eq!(names("select 1"), None);
        assert_eq!(names("select my_deallocate(1); deallocate s"), Some(vec!["s".to_owned()]));
        // A Unicode-escaped name is not read as its first letter: every name is forgotten.
        assert_eq!(names("deallocate U&\"\\0073\\0031\""), None);
        assert_eq!(names("deallocate u&\"s1\" uescape '!'"), None);
        let closed = |sql| named_after(sql, "close", None);
        assert_eq!(closed("CLOSE C_1"), Some(vec!["c_1".to_owned()]));
        assert_eq!(closed("close all"), None);
        assert_eq!(closed("close prepare"), Some(vec!["prepare".to_owned()]));
    }

    #[test]
    fn closed_statements_and_unknown_portals_are_named_as_sql_would_run_them() {
        let client = [parse("s1", "select 1"), msg(b'C', b"Ss1\0"), bind("", "s1"), execute(""), execute("p9"), sync()];
        let got =
            run(&client, &[parsed(), msg(b'3', b""), bound(), complete("SELECT 0"), complete("SELECT 0"), ready()]);
        // `s1` may be a statement SQL `PREPARE` made, `p9` a cursor SQL `DECLARE` made: that
        // is what ran.
        assert_eq!(got, [s("EXECUTE s1", 0, ""), s("FETCH ALL FROM p9", 0, "")]);
    }

    #[test]
    fn statements_prepared_in_sql_are_named_as_sql_would_run_them() {
        let client = [bind("", "Mixed Case"), execute(""), bind("", "plain_1"), execute(""), sync()];
        let got = run(&client, &[bound(), row(), complete("SELECT 1"), bound(), row(), complete("SELECT 1"), ready()]);
        assert_eq!(got, [s("EXECUTE \"Mixed Case\"", 1, ""), s("EXECUTE plain_1", 1, "")]);
    }

    #[test]
    fn a_fast_path_function_call_is_a_statement() {
        // lo_open(oid, mode): function 952, 2 binary arguments, binary result.
        let mut call = BytesMut::new();
        call.put_u32(952);
        call.put_u16(1);
        call.put_u16(1);
        call.put_u16(2);
        for arg in [16_385u32, 0x40000] {
            call.put_i32(4);
            call.put_u32(arg);
        }
        call.put_u16(1);
        let result = msg(b'V', b"\0\0\0\x04\0\0\0\0");
        let got = run(&[msg(b'F', &call)], &[result, ready()]);
        assert_eq!(got, [s("-- fast-path call of the function with oid 952('\\x00004001', '\\x00040000')", 0, "")]);
        let got =
            run(&[msg(b'F', b"\0\0"), msg(b'F', &call[..6])], &[error("08P01"), ready(), error("08P01"), ready()]);
        assert_eq!(
            got,
            [
                s("-- fast-path function call", 0, "08P01"),
                s("-- fast-path call of the function with oid 952", 0, "08P01")
            ]
        );
    }

    #[test]
    fn fetching_a_suspended_portal_continues_its_statement() {
        let mut r = Recorder::default();
        let q = "select g from generate_series(1, 5) g";
        // In a transaction: Execute two rows at a time until the portal completes.
        for m in [parse("", q), bind("c", ""), execute("c"), msg(b'H', b"")] {
            r.on_client(m.as_message_ref(), 10);
        }
        for m in [parsed(), bound(), row(), row(), msg(b's', b"")] {
            r.on_server(m.as_message_ref(), 20);
        }
        assert!(!r.has_done() && !r.is_running(), "suspended: open, not running");
        // Another statement between two fetches is recorded on its own.
        r.on_client(msg(b'Q', b"select 1\0").as_message_ref(), 30);
        for m in [row(), complete("SELECT 1"), msg(b'Z', b"T")] {
            r.on_server(m.as_message_ref(), 35);
        }
        for m in [execute("c"), msg(b'H', b""), execute("c"), sync()] {
            r.on_client(m.as_message_ref(), 40);
        }
        for m in [row(), row(), msg(b's', b""), row(), complete("SELECT 1"), msg(b'Z', b"T")] {
            r.on_server(m.as_message_ref(), 50);
        }
        let got: Vec<_> = r.done().map(|s| (s.text, s.rows, s.start_us, s.duration_us)).collect();
        assert_eq!(got, [("select 1".to_owned(), 1, 30, 5), (q.to_owned(), 5, 10, 40)]);

        // A portal closed, bound anew, or gone with its transaction ends its statement at its
        // last fetch.
        for (end, then) in [
            (vec![msg(b'C', b"Pc\0"), sync()], vec![msg(b'3', b""), msg(b'Z', b"T")]),
            (vec![bind("c", ""), sync()], vec![bound(), msg(b'Z', b"T")]),
            (vec![sync()], vec![ready()]),
        ] {
            let mut r = Recorder::default();
            for m in [parse("", q), bind("c", ""), execute("c"), msg(b'H', b"")] {
                r.on_client(m.as_message_ref(), 10);
            }
            for m in [parsed(), bound(), row(), msg(b's', b"")] {
                r.on_server(m.as_message_ref(), 20);
            }
            end.iter().for_each(|m| r.on_client(m.as_message_ref(), 30));
            then.iter().for_each(|m| r.on_server(m.as_message_ref(), 40));
            let got: Vec<_> = r.done().map(|s| (s.text, s.rows, s.duration_us)).collect();
            assert_eq!(got, [(q.to_owned(), 1, 10)]);
        }
        // And at the session's end.
        let mut r = Recorder::default();
        for m in [parse("", q), bind("c", ""), execute("c"), msg(b'H', b"")] {
            r.on_client(m.as_message_ref(), 10);
        }
        for m in [parsed(), bound(), row(), msg(b's', b"")] {
            r.on_server(m.as_message_ref(), 20);
        }
        let mut ended = r;
        let mut left = Recorder::default();
        for m in [parse("", q), bind("c", ""), execute("c"), msg(b'H', b"")] {
            left.on_client(m.as_message_ref(), 10);
        }
        for m in [parsed(), bound(), row(), msg(b's', b"")] {
            left.on_server(m.as_message_ref(), 20);
        }
        // A client that left chose not to read the rest: the statement ends at its last fetch.
        left.abandon(99, "08006", true);
        let got: Vec<_> = left.done().map(|s| (s.rows, s.duration_us, s.sqlstate)).collect();
        assert_eq!(got, [(1, 10, String::new())]);
        // A session ended otherwise (terminated, a connection lost) cut it short.
        ended.abandon(99, "57P01", false);
        let got: Vec<_> = ended.done().map(|s| (s.rows, s.duration_us, s.sqlstate)).collect();
        assert_eq!(got, [(1, 89, "57P01".to_owned())]);
    }

    #[test]
    fn an_execute_of_a_portal_at_its_end_is_no_statement() {
        let q = "select generate_series(1, 5)";
        let mut client = vec![parse("", q), bind("c", "")];
        client.extend((0..4).map(|_| execute_rows("c", 2)));
        client.push(sync());
        let suspended = || msg(b's', b"");
        let server = [
            parsed(),
            bound(),
            row(),
            row(),
            suspended(),
            row(),
            row(),
            suspended(),
            row(),
            complete("SELECT 1"),
            complete("SELECT 0"),
            ready(),
        ];
        assert_eq!(run(&client, &server), [s(q, 5, "")]);
        // Not a query's: its command runs once, and the server refuses another Execute.
        let client = [parse("", "create table t ()"), bind("c", ""), execute("c"), execute("c"), sync()];
        let server = [parsed(), bound(), complete("CREATE TABLE"), error("55000"), ready()];
        assert_eq!(run(&client, &server), [s("create table t ()", 0, ""), s("create table t ()", 0, "55000")]);
    }

    #[test]
    fn a_fast_path_call_shows_its_arguments() {
        // query_to_xml('select card from secret', true, NULL, ''): the query it runs is recorded.
        let mut call = BytesMut::new();
        call.put_u32(2924);
        call.put_u16(0);
        call.put_u16(4);
        for arg in [&b"select 'card' from secret"[..], b"true"] {
            call.put_i32(arg.len() as i32);
            call.put_slice(arg);
        }
        call.put_i32(-1);
        call.put_i32(0);
        call.put_u16(0);
        let got = run(&[msg(b'F', &call)], &[msg(b'V', b"\0\0\0\x01x"), ready()]);
        assert_eq!(
            got,
            [s(
                "-- fast-path call of the function with oid 2924('select ''card'' from secret', 'true', NULL, '')",
                0,
                ""
            )]
        );
        // Found by a review: dblink_connect's connection string was in clear, as text or in
        // binary (one format code, 1).
        for formats in [&[][..], &[1]] {
            let mut call = BytesMut::new();
            call.put_u32(17932);
            call.put_u16(formats.len() as u16);
            formats.iter().for_each(|&format| call.put_u16(format));
            call.put_u16(1);
            let conninfo = b"host=h user=u password=FastPathSecret2 dbname=d";
            call.put_i32(conninfo.len() as i32);
            call.put_slice(conninfo);
            call.put_u16(0);
            let got = run(&[msg(b'F', &call)], &[msg(b'V', b"\0\0\0\x02ok"), ready()]);
            assert_eq!(
                got[0].0,
                "-- fast-path call of the function with oid 17932('host=h user=u password=[redacted] dbname=d')",
                "formats {formats:?}"
            );
        }
        // lo_write(fd, data) in binary: a large value shows its start and its length.
        let mut call = BytesMut::new();
        call.put_u32(955);
        call.put_u16(1);
        call.put_u16(1);
        call.put_u16(1);
        call.put_i32(1000);
        call.put_slice(&[0xab; 1000]);
        call.put_u16(1);
        let got = run(&[msg(b'F', &call)], &[msg(b'V', b"\0\0\0\x04\0\0\x03\xe8"), ready()]);
        let expected = format!(
            "-- fast-path call of the function with oid 955('\\x{}' /* first 256 of 1000 bytes */)",
            "ab".repeat(256)
        );
        assert_eq!(got, [s(&expected, 0, "")]);
        // A call too large to decode without a copy shows its size.
        let len = SHOWN_CALL_MAX;
        let mut call = BytesMut::new();
        call.put_u32(955);
        call.put_u16(0);
        call.put_u16(1);
        call.put_i32(i32::try_from(len).unwrap());
        call.put_slice(&vec![b'x'; len]);
        call.put_u16(0);
        let got = run(&[msg(b'F', &call)], &[msg(b'V', b"\0\0\0\x01x"), ready()]);
        let expected =
            format!("-- fast-path call of the function with oid 955 ({} bytes, arguments not shown)", call.len() + 5);
        assert_eq!(got, [s(&expected, 0, "")]);
    }

    #[test]
    fn extended_copy_in_ignores_the_sync_sent_with_the_execute() {
        // tokio-postgres: Bind, Execute, Sync; then, after CopyInResponse, data, CopyDone, Sync.
        let mut r = Recorder::default();
        for m in [parse("s", "copy t from stdin"), bind("", "s"), execute(""), sync()] {
            r.on_client(m.as_message_ref(), 1);
        }
        for m in [parsed(), bound(), msg(b'G', b"\0\0\0")] {
            r.on_server(m.as_message_ref(), 2);
        }
        for m in [msg(b'd', b"1\n"), msg(b'c', b""), sync(), msg(b'Q', b"select 1\0")] {
            r.on_client(m.as_message_ref(), 3);
        }
        for m in [complete("COPY 1"), ready(), row(), complete("SELECT 1"), ready()] {
            r.on_server(m.as_message_ref(), 4);
        }
        let got: Vec<_> = r.done().map(|s| (s.text, s.rows)).collect();
        assert_eq!(got, [("copy t from stdin".to_owned(), 0), ("select 1".to_owned(), 1)]);
    }

    #[test]
    fn rows_changed_are_counted_from_the_tags_of_commands_that_change_rows() {
        let changed = |client: &[Message], server: &[Message]| {
            let mut r = Recorder::default();
            client.iter().for_each(|m| r.on_client(m.as_message_ref(), 10));
            server.iter().for_each(|m| r.on_server(m.as_message_ref(), 20));
            r.done().map(|s| (s.rows, s.rows_changed)).collect::<Vec<_>>()
        };
        // Every command of a simple query: INSERT's tag has an OID first.
        let query = msg(b'Q', b"insert into t select 1; update t set n = 2; delete from t; merge ...\0");
        let tags = [complete("INSERT 0 3"), complete("UPDATE 2"), complete("DELETE 5"), complete("MERGE 1"), ready()];
        assert_eq!(changed(&[query], &tags), [(0, 11)]);
        // COPY FROM changes rows; COPY TO sends them.
        let copy_in = [msg(b'Q', b"copy t from stdin\0"), msg(b'd', b"1\n2\n"), msg(b'c', b"")];
        assert_eq!(changed(&copy_in, &[msg(b'G', b"\0\0\0"), complete("COPY 2"), ready()]), [(0, 2)]);
        let copy_out = [msg(b'H', b"\0\0\0"), msg(b'd', b"1\n"), msg(b'c', b""), complete("COPY 1"), ready()];
        assert_eq!(changed(&[msg(b'Q', b"copy t to stdout\0")], &copy_out), [(1, 0)]);
        // A COPY on the database's host: from a file changes rows, to a file or program none.
        let server_side = [complete("COPY 7"), ready()];
        assert_eq!(changed(&[msg(b'Q', b"copy t from '/tmp/t.csv'\0")], &server_side), [(0, 7)]);
        assert_eq!(changed(&[msg(b'Q', b"copy (select 1 from t) to '/tmp/t.csv'\0")], &server_side), [(0, 0)]);
        assert_eq!(changed(&[msg(b'Q', b"COPY t TO PROGRAM 'gzip > /tmp/t.gz'\0")], &server_side), [(0, 0)]);
        // A SELECT sends its rows; a `SELECT n` that sent none (CREATE TABLE AS, SELECT INTO)
        // wrote them to a table, in each command of a simple query.
        let select = msg(b'Q', b"select 1\0");
        assert_eq!(changed(&[select], &[row(), complete("SELECT 1"), ready()]), [(1, 0)]);
        let create = msg(b'Q', b"create table u as select 1\0");
        assert_eq!(changed(&[create], &[complete("SELECT 1"), ready()]), [(0, 1)]);
        let both = msg(b'Q', b"select 1; select 2 into u; select 3 where false\0");
        let tags = [row(), complete("SELECT 1"), complete("SELECT 1"), complete("SELECT 0"), ready()];
        assert_eq!(changed(&[both], &tags), [(1, 1)]);
        // An extended statement's Execute.
        let client = [parse("", "delete from t"), bind("", ""), execute(""), msg(b'S', b"")];
        let server = [msg(b'1', b""), msg(b'2', b""), complete("DELETE 7"), ready()];
        assert_eq!(changed(&client, &server), [(0, 7)]);
    }

    #[test]
    fn simple_copy_in_and_out() {
        let got = run(
            &[msg(b'Q', b"copy t from stdin\0"), msg(b'd', b"1\n2\n"), msg(b'c', b"")],
            &[msg(b'G', b"\0\0\0"), complete("COPY 2"), ready()],
        );
        // Rows the client sent: none to it.
        assert_eq!(got, [s("copy t from stdin", 0, "")]);
        let got = run(
            &[msg(b'Q', b"copy t to stdout\0")],
            &[msg(b'H', b"\0\0\0"), msg(b'd', b"1\n"), msg(b'c', b""), complete("COPY 1"), ready()],
        );
        assert_eq!(got, [s("copy t to stdout", 1, "")]);
        // A header line (CSV HEADER; binary COPY's header and trailer) is no row.
        let got = run(
            &[msg(b'Q', b"copy t to stdout (format csv, header)\0")],
            &[msg(b'H', b"\0\0\0"), msg(b'd', b"x\n"), msg(b'd', b"1\n"), msg(b'c', b""), complete("COPY 1"), ready()],
        );
        assert_eq!(got, [s("copy t to stdout (format csv, header)", 1, "")]);
    }

    #[test]
    fn notifications_and_notices_do_not_disturb_the_queue() {
        let got = run(
            &[msg(b'Q', b"listen c\0")],
            &[msg(b'N', b"SNOTICE\0\0"), complete("LISTEN"), msg(b'A', b"\0\0\0\x01c\0\0"), ready()],
        );
        assert_eq!(got, [s("listen c", 0, "")]);
        // A notification while idle changes nothing.
        assert!(run(&[], &[msg(b'A', b"\0\0\0\x01c\0\0")]).is_empty());
    }

    #[test]
    fn abandon_completes_what_is_running() {
        let mut r = Recorder::default();
        r.on_client(msg(b'Q', b"select pg_sleep(30)\0").as_message_ref(), 5);
        r.on_client(parse("", "select 1").as_message_ref(), 6);
        r.on_client(bind("", "").as_message_ref(), 6);
        r.on_client(execute("").as_message_ref(), 6);
        r.on_client(sync().as_message_ref(), 6);
        r.abandon(9, "57P01", false);
        let got: Vec<_> = r.done().map(|s| (s.text, s.sqlstate, s.duration_us)).collect();
        assert_eq!(
            got,
            // The second waited behind the first: it never ran.
            [("select pg_sleep(30)".to_owned(), "57P01".to_owned(), 4), ("select 1".to_owned(), "57P01".to_owned(), 0)]
        );
    }

    #[test]
    fn malformed_client_messages_are_ignored() {
        let client = [msg(b'P', b"no terminator"), msg(b'B', b""), msg(b'E', b"x"), msg(b'C', b""), msg(b'Q', b"abc")];
        let got = run(&client, &[error("08P01"), ready()]);
        // The query without terminator is still recorded, as sent.
        assert_eq!(got, [s("abc", 0, "08P01")]);
    }
}
