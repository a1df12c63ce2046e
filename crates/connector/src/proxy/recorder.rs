//! Recording: turns the messages relayed in both directions into statements. No IO, no clock:
//! the relay passes each message and the time its batch arrived.
//!
//! A simple Query is one statement, complete at ReadyForQuery. In the extended protocol each
//! Execute is one statement, with the text of the Parse its portal was bound from, complete at
//! CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse. Responses come in
//! the order of the requests, so pending statements wait in a FIFO with the Syncs between
//! them; after an error the server skips to the next Sync, and so does the FIFO.
//!
//! Client messages are read leniently: text that is not UTF-8 is recorded lossily, and a
//! malformed message is passed on for the server to reject, never an error here.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::ffi::CStr;
use std::sync::Arc;

use gatehouse_pgwire::backend::{CommandComplete, ErrorResponse};
use gatehouse_pgwire::{Decode, Message};

use crate::event::Statement;

/// Statement text: owned for a simple query, shared with the prepared statement otherwise.
#[derive(Debug)]
enum Text {
    Owned(String),
    Shared(Arc<str>),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::Owned(s) => s,
            Text::Shared(s) => s.as_ref().to_owned(),
        }
    }
}

/// A statement sent and not yet complete.
#[derive(Debug)]
struct Pending {
    text: Text,
    start_us: i64,
    /// Rows of the commands completed so far (a simple query may hold several).
    rows: i64,
    /// DataRows since the last CommandComplete.
    data_rows: i64,
    bytes_sent: i64,
    sqlstate: Option<String>,
}

impl Pending {
    fn new(text: Text, start_us: i64) -> Self {
        Self { text, start_us, rows: 0, data_rows: 0, bytes_sent: 0, sqlstate: None }
    }

    fn finish(self, end_us: i64) -> Statement {
        Statement {
            start_us: self.start_us,
            duration_us: (end_us - self.start_us).max(0),
            text: self.text.into_string(),
            rows: self.rows + self.data_rows,
            bytes_sent: self.bytes_sent,
            sqlstate: self.sqlstate.unwrap_or_default(),
        }
    }
}

#[derive(Debug)]
enum Entry {
    /// A simple Query or a FunctionCall: complete at ReadyForQuery.
    Simple(Pending),
    /// An Execute: complete at its CommandComplete, EmptyQueryResponse, PortalSuspended or
    /// ErrorResponse.
    Execute(Pending),
    /// A Sync: answered by ReadyForQuery, records nothing.
    Sync,
}

/// The recording state of one session.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    unnamed_statement: Option<Arc<str>>,
    statements: HashMap<Box<str>, Arc<str>>,
    unnamed_portal: Option<Arc<str>>,
    portals: HashMap<Box<str>, Arc<str>>,
    queue: VecDeque<Entry>,
    /// The server is discarding messages until the next Sync, after an error in an extended
    /// exchange whose Sync the client has not sent yet.
    skipping: bool,
    /// The server is in COPY FROM STDIN, where it ignores Sync and Flush.
    copy_in: bool,
    done: Vec<Statement>,
}

impl Recorder {
    /// A message from the client, arrived at `now`.
    pub(crate) fn on_client(&mut self, msg: &Message, now: i64) {
        let payload = msg.payload();
        match msg.tag() {
            b'Q' if !self.skipping => {
                let sql = cstr(payload).map_or(payload, |(s, _)| s);
                self.queue.push_back(Entry::Simple(Pending::new(Text::Owned(lossy(sql)), now)));
            }
            b'P' if !self.skipping => {
                let Some((name, rest)) = cstr(payload) else { return };
                let Some((sql, _)) = cstr(rest) else { return };
                let text: Arc<str> = Arc::from(name_of(sql).as_ref());
                if name.is_empty() {
                    self.unnamed_statement = Some(text);
                } else {
                    self.statements.insert(name_of(name).into(), text);
                }
            }
            b'B' if !self.skipping => {
                let Some((portal, rest)) = cstr(payload) else { return };
                let Some((statement, _)) = cstr(rest) else { return };
                let text = if statement.is_empty() {
                    self.unnamed_statement.clone()
                } else {
                    let name = name_of(statement);
                    // Not parsed in this session's protocol: made by SQL `PREPARE`, so
                    // the transcript names it as SQL would run it.
                    let text = self.statements.get(name.as_ref()).cloned();
                    Some(text.unwrap_or_else(|| Arc::from(format!("EXECUTE {}", quote_ident(&name)))))
                };
                let text = text.unwrap_or_else(|| Arc::from(""));
                if portal.is_empty() {
                    self.unnamed_portal = Some(text);
                } else {
                    self.portals.insert(name_of(portal).into(), text);
                }
            }
            b'E' if !self.skipping => {
                let Some((portal, _)) = cstr(payload) else { return };
                let text = if portal.is_empty() {
                    self.unnamed_portal.clone()
                } else {
                    self.portals.get(name_of(portal).as_ref()).cloned()
                };
                let text = text.unwrap_or_else(|| Arc::from(""));
                self.queue.push_back(Entry::Execute(Pending::new(Text::Shared(text), now)));
            }
            b'C' if !self.skipping => {
                let Some((&target, rest)) = payload.split_first() else { return };
                let Some((name, _)) = cstr(rest) else { return };
                match (target, name.is_empty()) {
                    (b'S', true) => self.unnamed_statement = None,
                    (b'S', false) => drop(self.statements.remove(name_of(name).as_ref())),
                    (b'P', true) => self.unnamed_portal = None,
                    (b'P', false) => drop(self.portals.remove(name_of(name).as_ref())),
                    _ => {}
                }
            }
            b'S' if !self.copy_in => {
                self.skipping = false;
                self.queue.push_back(Entry::Sync);
            }
            // A fast-path function call (libpq's `lo_*`, for one) reads or changes data
            // like any statement; it is answered like a simple query.
            b'F' if !self.skipping => {
                let text = function_call_text(payload);
                self.queue.push_back(Entry::Simple(Pending::new(Text::Owned(text), now)));
            }
            b'c' | b'f' => self.copy_in = false,
            _ => {}
        }
    }

    /// A message from the server, arrived at `now`, of `msg.len()` bytes relayed to the client.
    pub(crate) fn on_server(&mut self, msg: &Message, now: i64) {
        let tag = msg.tag();
        if let Some(Entry::Simple(p) | Entry::Execute(p)) = self.queue.front_mut() {
            p.bytes_sent += msg.len() as i64;
            if tag == b'D' {
                p.data_rows += 1;
                return;
            }
        }
        match tag {
            b'C' => {
                self.copy_in = false;
                let rows = command_rows(msg);
                match self.queue.front_mut() {
                    Some(Entry::Simple(p)) => {
                        p.rows += rows.unwrap_or(p.data_rows);
                        p.data_rows = 0;
                    }
                    Some(Entry::Execute(p)) => {
                        if let Some(rows) = rows {
                            p.rows = rows;
                            p.data_rows = 0;
                        }
                        self.complete_front(now);
                    }
                    _ => {}
                }
            }
            b'I' | b's' => {
                if let Some(Entry::Execute(_)) = self.queue.front() {
                    self.complete_front(now);
                }
            }
            b'E' => {
                self.copy_in = false;
                let code = msg.decode::<ErrorResponse>().ok().and_then(|e| e.code().map(str::to_owned));
                match self.queue.front_mut() {
                    Some(Entry::Simple(p)) => {
                        if p.sqlstate.is_none() {
                            p.sqlstate = code;
                        }
                    }
                    Some(Entry::Execute(p)) => {
                        p.sqlstate = code;
                        self.complete_front(now);
                        self.skip_to_sync();
                    }
                    Some(Entry::Sync) => {}
                    // An extended exchange failed before any Execute and before its Sync.
                    None => self.skipping = true,
                }
            }
            b'Z' => {
                self.copy_in = false;
                while let Some(entry) = self.queue.pop_front() {
                    match entry {
                        Entry::Simple(p) => {
                            self.done.push(p.finish(now));
                            break;
                        }
                        Entry::Sync => break,
                        // Unanswered, so never run.
                        Entry::Execute(_) => {}
                    }
                }
            }
            b'G' => {
                // The Syncs the client sent right after this COPY's Execute reach the server in
                // copy-in mode, which ignores them: they will get no ReadyForQuery.
                self.copy_in = true;
                if self.queue.len() > 1 {
                    let syncs = self.queue.iter().skip(1).take_while(|e| matches!(e, Entry::Sync)).count();
                    self.queue.drain(1..1 + syncs);
                }
            }
            _ => {}
        }
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
        self.queue.iter().any(|entry| !matches!(entry, Entry::Sync))
    }

    /// Completes every statement still running when the session ends at `now`, with
    /// `sqlstate` unless the server had already reported an error for it.
    pub(crate) fn abandon(&mut self, now: i64, sqlstate: &str) {
        for entry in self.queue.drain(..) {
            if let Entry::Simple(mut p) | Entry::Execute(mut p) = entry {
                p.sqlstate.get_or_insert_with(|| sqlstate.to_owned());
                self.done.push(p.finish(now));
            }
        }
    }

    fn complete_front(&mut self, now: i64) {
        if let Some(Entry::Execute(p) | Entry::Simple(p)) = self.queue.pop_front() {
            self.done.push(p.finish(now));
        }
    }

    /// After an error in an extended exchange, the server discards the rest of it up to Sync.
    fn skip_to_sync(&mut self) {
        while let Some(Entry::Execute(_)) = self.queue.front() {
            self.queue.pop_front();
        }
        if self.queue.is_empty() {
            self.skipping = true;
        }
    }
}

/// Splits a NUL-terminated string off the front.
fn cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = CStr::from_bytes_until_nul(buf).ok()?.to_bytes();
    Some((s, &buf[s.len() + 1..]))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A statement or portal name, borrowed when it is UTF-8 (always, in practice), so that a
/// lookup on every Bind and Execute allocates nothing.
fn name_of(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A SQL identifier, quoted when it is not a plain lower-case one.
fn quote_ident(name: &str) -> Cow<'_, str> {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { Cow::Borrowed(name) } else { Cow::Owned(format!("\"{}\"", name.replace('"', "\"\""))) }
}

/// How a FunctionCall is shown: PostgreSQL names the function by its oid only.
fn function_call_text(payload: &[u8]) -> String {
    let int16 = |at: usize| payload.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let Some(oid) = payload.first_chunk::<4>().map(|b| u32::from_be_bytes(*b)) else {
        return "-- fast-path function call".to_owned();
    };
    let args = int16(4).and_then(|formats| int16(6 + 2 * formats));
    match args {
        Some(args) => format!("-- fast-path call of the function with oid {oid}, {args} argument(s)"),
        None => format!("-- fast-path call of the function with oid {oid}"),
    }
}

/// The row count of a CommandComplete tag that carries one.
fn command_rows(msg: &Message) -> Option<i64> {
    let tag = CommandComplete::decode_body(msg.payload_bytes()).ok()?;
    tag.rows().map(|rows| i64::try_from(rows).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

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
            r.on_client(m, 10);
        }
        for (i, m) in server.iter().enumerate() {
            r.on_server(m, 20 + i as i64);
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
        msg(b'E', format!("{portal}\0\0\0\0\0").as_bytes())
    }

    fn sync() -> Message {
        msg(b'S', b"")
    }

    fn ready() -> Message {
        msg(b'Z', b"I")
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
    fn simple_query_sums_rows_and_counts_bytes_and_time() {
        let mut r = Recorder::default();
        r.on_client(&msg(b'Q', b"select 1; insert into t values (1), (2)\0"), 100);
        let server = [msg(b'T', b"\0\0"), row(), complete("SELECT 1"), complete("INSERT 0 2"), ready()];
        for m in &server {
            r.on_server(m, 150);
        }
        let got: Vec<_> = r.done().collect();
        assert_eq!(got.len(), 1);
        let st = &got[0];
        assert_eq!(st.text, "select 1; insert into t values (1), (2)");
        assert_eq!((st.rows, st.start_us, st.duration_us), (3, 100, 50));
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
        assert_eq!(run(&client, &server), [s("select $1", 1, ""), s("update t set x = 1", 5, "")]);
    }

    #[test]
    fn portal_suspended_and_empty_query_complete_an_execute() {
        let client = [parse("", "select g from generate_series(1, 5) g"), bind("", ""), execute(""), sync()];
        let got = run(&client, &[row(), row(), msg(b's', b""), ready()]);
        assert_eq!(got, [s("select g from generate_series(1, 5) g", 2, "")]);
        let got = run(&[parse("", ""), bind("", ""), execute(""), sync()], &[msg(b'I', b""), ready()]);
        assert_eq!(got, [s("", 0, "")]);
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
        let server =
            [row(), complete("SELECT 1"), ready(), error("42P01"), ready(), row(), complete("SELECT 1"), ready()];
        assert_eq!(
            run(&client, &server),
            [s("select 1", 1, ""), s("select * from nope", 0, "42P01"), s("select 4", 1, "")]
        );
    }

    #[test]
    fn error_before_the_client_syncs_discards_its_later_executes() {
        let mut r = Recorder::default();
        r.on_client(&parse("", "select 1/0"), 1);
        r.on_client(&bind("", ""), 1);
        r.on_client(&execute(""), 1);
        r.on_client(&msg(b'H', b""), 1);
        r.on_server(&error("22012"), 2);
        // Sent after the error reached the server, which discards it.
        r.on_client(&execute(""), 3);
        r.on_client(&sync(), 3);
        r.on_client(&msg(b'Q', b"select 2\0"), 3);
        r.on_server(&ready(), 4);
        r.on_server(&complete("SELECT 1"), 5);
        r.on_server(&ready(), 5);
        let got: Vec<_> = r.done().map(|s| (s.text, s.sqlstate)).collect();
        assert_eq!(got, [("select 1/0".to_owned(), "22012".to_owned()), ("select 2".to_owned(), String::new())]);
    }

    #[test]
    fn parse_error_without_execute_records_nothing() {
        let client = [parse("s", "selec"), msg(b'D', b"Ss\0"), sync(), msg(b'Q', b"select 1\0")];
        let got = run(&client, &[error("42601"), ready(), complete("SELECT 0"), ready()]);
        assert_eq!(got, [s("select 1", 0, "")]);
    }

    #[test]
    fn closed_statements_and_unknown_portals_have_no_text() {
        let client = [parse("s1", "select 1"), msg(b'C', b"Ss1\0"), bind("", "s1"), execute(""), execute("p9"), sync()];
        let got = run(&client, &[complete("SELECT 0"), complete("SELECT 0"), ready()]);
        // `s1` may be a statement SQL `PREPARE` made: that is what ran.
        assert_eq!(got, [s("EXECUTE s1", 0, ""), s("", 0, "")]);
    }

    #[test]
    fn statements_prepared_in_sql_are_named_as_sql_would_run_them() {
        let client = [bind("", "Mixed Case"), execute(""), bind("", "plain_1"), execute(""), sync()];
        let got = run(&client, &[complete("SELECT 1"), complete("SELECT 1"), ready()]);
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
        assert_eq!(got, [s("-- fast-path call of the function with oid 952, 2 argument(s)", 0, "")]);
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
    fn extended_copy_in_ignores_the_sync_sent_with_the_execute() {
        // tokio-postgres: Bind, Execute, Sync; then, after CopyInResponse, data, CopyDone, Sync.
        let mut r = Recorder::default();
        for m in [parse("s", "copy t from stdin"), bind("", "s"), execute(""), sync()] {
            r.on_client(&m, 1);
        }
        r.on_server(&msg(b'G', b"\0\0\0"), 2);
        for m in [msg(b'd', b"1\n"), msg(b'c', b""), sync(), msg(b'Q', b"select 1\0")] {
            r.on_client(&m, 3);
        }
        for m in [complete("COPY 1"), ready(), row(), complete("SELECT 1"), ready()] {
            r.on_server(&m, 4);
        }
        let got: Vec<_> = r.done().map(|s| (s.text, s.rows)).collect();
        assert_eq!(got, [("copy t from stdin".to_owned(), 1), ("select 1".to_owned(), 1)]);
    }

    #[test]
    fn simple_copy_in_and_out() {
        let got = run(
            &[msg(b'Q', b"copy t from stdin\0"), msg(b'd', b"1\n2\n"), msg(b'c', b"")],
            &[msg(b'G', b"\0\0\0"), complete("COPY 2"), ready()],
        );
        assert_eq!(got, [s("copy t from stdin", 2, "")]);
        let got = run(
            &[msg(b'Q', b"copy t to stdout\0")],
            &[msg(b'H', b"\0\0\0"), msg(b'd', b"1\n"), msg(b'c', b""), complete("COPY 1"), ready()],
        );
        assert_eq!(got, [s("copy t to stdout", 1, "")]);
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
        r.on_client(&msg(b'Q', b"select pg_sleep(30)\0"), 5);
        r.on_client(&parse("", "select 1"), 6);
        r.on_client(&bind("", ""), 6);
        r.on_client(&execute(""), 6);
        r.on_client(&sync(), 6);
        r.abandon(9, "57P01");
        let got: Vec<_> = r.done().map(|s| (s.text, s.sqlstate, s.duration_us)).collect();
        assert_eq!(
            got,
            [("select pg_sleep(30)".to_owned(), "57P01".to_owned(), 4), ("select 1".to_owned(), "57P01".to_owned(), 3)]
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
