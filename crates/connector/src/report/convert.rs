//! Session events to the control plane's wire messages (`gatehouse.connector.v1`), and back.
//! Proto types stop here: the proxy only knows [`EventKind`], and the report pipeline only
//! the bytes.

use std::borrow::Cow;

use buffa::{DecodeError, Message, MessageFieldView, ViewEncode};
use buffa_types::google::protobuf::{Duration, Timestamp, TimestampView};
use bytes::Bytes;
use gatehouse_core::time::micros_of;
use gatehouse_proto::gatehouse::connector::v1 as pb;
use gatehouse_proto::gatehouse::connector::v1::__buffa::view::oneof::event::Kind as KindView;
use gatehouse_proto::gatehouse::connector::v1::event::Kind;
use sha2::{Digest, Sha256};

use crate::event::{
    EndReason, EventKind, FormalUser, RunningStatement, SessionEnd, SessionEvent, SessionStart, Statement,
};

/// Statement texts longer than this lose their middle (see [`truncate`]), so a single event
/// always fits in a request the control plane accepts.
pub const MAX_STATEMENT_TEXT: usize = 1024 * 1024;

/// Encodes one event of session `session_id` as a `pb::Event`; `run_id` marks a start as
/// this run's. Nothing is copied into an owned message first: a start or an end is encoded
/// from views that borrow its texts (buffa's `ViewEncode`), a statement by
/// [`encode_statement`].
pub fn encode(session_id: &str, seq: u64, kind: &EventKind, run_id: &str) -> Bytes {
    let (formal_user, end_user);
    let kind = match kind {
        EventKind::Statement(s) => return encode_statement(session_id, seq, s),
        EventKind::Start(s) => {
            formal_user = s.formal_user.as_deref().map(formal_user_view);
            end_user = s.end_user.as_deref().map(formal_user_view);
            KindView::Start(Box::new(pb::SessionStartView {
                start_time: MessageFieldView::set(timestamp_view(s.start_us)),
                run_id,
                resource_id: &s.resource_id,
                client_ip_address: &s.client_ip,
                server_ip_address: &s.server_ip,
                username: &s.username,
                native_username: &s.native_username,
                database: &s.database,
                application_name: &s.application_name,
                user_type: &s.user_type,
                formal_user: formal_user.map_or_else(MessageFieldView::unset, MessageFieldView::set),
                end_user: end_user.map_or_else(MessageFieldView::unset, MessageFieldView::set),
                ..Default::default()
            }))
        }
        EventKind::Running(r) => return encode_running(session_id, seq, r.start_us, &r.text),
        EventKind::End(e) => KindView::End(Box::new(pb::SessionEndView {
            end_time: MessageFieldView::set(timestamp_view(e.end_us)),
            reason: e.reason.as_str(),
            ..Default::default()
        })),
    };
    pb::EventView { session_id, seq, kind: Some(kind), ..Default::default() }.encode_to_bytes()
}

/// A statement event, laid out here with buffa's field writers. There is one per statement,
/// and buffa's generated encoder (a box per sub-message view, a first pass that caches sizes)
/// spends about 1,400 instructions on it: an eighth of all the connector does to relay a
/// simple transaction. This writes the same bytes (see the tests) for about half of that,
/// with no box, no size cache and no owned copy.
fn encode_statement(session_id: &str, seq: u64, s: &Statement) -> Bytes {
    use buffa::types::{put_int64_field, put_string_field};
    let text = truncate(&s.text, MAX_STATEMENT_TEXT);
    let start = Time::from(timestamp(s.start_us));
    let duration = Time::from(duration(s.duration_us));
    let statement_len = start.field_len()
        + duration.field_len()
        + string_field_len(&text)
        + int64_field_len(s.rows)
        + int64_field_len(s.bytes_sent)
        + string_field_len(&s.sqlstate)
        + int64_field_len(s.rows_changed);
    encode_event(session_id, seq, 11, statement_len, |out| {
        start.put(1, out);
        duration.put(2, out);
        if !text.is_empty() {
            put_string_field(3, &text, out);
        }
        if s.rows != 0 {
            put_int64_field(4, s.rows, out);
        }
        if s.bytes_sent != 0 {
            put_int64_field(5, s.bytes_sent, out);
        }
        if !s.sqlstate.is_empty() {
            put_string_field(6, &s.sqlstate, out);
        }
        if s.rows_changed != 0 {
            put_int64_field(7, s.rows_changed, out);
        }
    })
}

/// A running statement's event, laid out as [`encode_statement`] lays out a statement: the
/// relay writes one ahead of each statement it forwards ([`Reporter::journal_running`]), from
/// the text it borrows.
///
/// [`Reporter::journal_running`]: super::Reporter::journal_running
pub fn encode_running(session_id: &str, seq: u64, start_us: i64, text: &str) -> Bytes {
    let text = truncate(text, MAX_STATEMENT_TEXT);
    let start = Time::from(timestamp(start_us));
    encode_event(session_id, seq, 13, start.field_len() + string_field_len(&text), |out| {
        start.put(1, out);
        if !text.is_empty() {
            buffa::types::put_string_field(2, &text, out);
        }
    })
}

/// A `pb::Event` of `session_id` and `seq` whose `kind` is field `kind` (a message of
/// `kind_len` bytes, which `put_kind` writes), in a vector of its exact size.
fn encode_event(session_id: &str, seq: u64, kind: u32, kind_len: usize, put_kind: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let len = string_field_len(session_id)
        + if seq == 0 { 0 } else { 1 + buffa::types::uint64_encoded_len(seq) }
        + len_delimited_field_len(kind_len);
    let mut out = Vec::with_capacity(len);
    if !session_id.is_empty() {
        buffa::types::put_string_field(1, session_id, &mut out);
    }
    if seq != 0 {
        buffa::types::put_uint64_field(2, seq, &mut out);
    }
    buffa::types::put_len_delimited_header(kind, kind_len as u64, &mut out);
    put_kind(&mut out);
    debug_assert_eq!(out.len(), len);
    // Its exact capacity: the vector becomes the `Bytes` without another allocation.
    Bytes::from(out)
}

/// A `google.protobuf.Timestamp` or `Duration`: both are seconds (1) and nanos (2).
struct Time {
    seconds: i64,
    nanos: i32,
}

impl From<Timestamp> for Time {
    fn from(t: Timestamp) -> Self {
        Self { seconds: t.seconds, nanos: t.nanos }
    }
}

impl From<Duration> for Time {
    fn from(d: Duration) -> Self {
        Self { seconds: d.seconds, nanos: d.nanos }
    }
}

impl Time {
    fn len(&self) -> usize {
        int64_field_len(self.seconds) + int64_field_len(i64::from(self.nanos))
    }

    /// With its tag and length: always, a set message field however empty.
    fn field_len(&self) -> usize {
        len_delimited_field_len(self.len())
    }

    fn put(&self, field: u32, out: &mut Vec<u8>) {
        buffa::types::put_len_delimited_header(field, self.len() as u64, out);
        if self.seconds != 0 {
            buffa::types::put_int64_field(1, self.seconds, out);
        }
        if self.nanos != 0 {
            buffa::types::put_int32_field(2, self.nanos, out);
        }
    }
}

// Sizes of fields numbered 1 to 15, whose tag is one byte; a default value is left out.

fn string_field_len(value: &str) -> usize {
    if value.is_empty() { 0 } else { 1 + buffa::types::string_encoded_len(value) }
}

fn int64_field_len(value: i64) -> usize {
    if value == 0 { 0 } else { 1 + buffa::types::int64_encoded_len(value) }
}

fn len_delimited_field_len(len: usize) -> usize {
    1 + buffa::encoding::varint_len(len as u64) + len
}

fn formal_user_view(u: &FormalUser) -> pb::FormalUserView<'_> {
    pb::FormalUserView {
        id: &u.id,
        name: &u.name,
        email: &u.email,
        r#type: &u.kind,
        groups: u.groups.iter().map(String::as_str).collect(),
        external_ids: u.external_ids.iter().map(String::as_str).collect(),
        ..Default::default()
    }
}

fn timestamp_view(us: i64) -> TimestampView<'static> {
    let Timestamp { seconds, nanos, .. } = timestamp(us);
    TimestampView { seconds, nanos, ..Default::default() }
}

/// Reads an encoded event back: the inverse of [`encode`], for tests and for anyone reading a
/// spool.
pub fn decode(bytes: &[u8]) -> Result<SessionEvent, DecodeError> {
    let event = pb::Event::decode_from_slice(bytes)?;
    let kind = match event.kind {
        Some(Kind::Start(s)) => EventKind::Start(SessionStart {
            start_us: micros_of(s.start_time.seconds, s.start_time.nanos),
            resource_id: s.resource_id,
            client_ip: s.client_ip_address,
            server_ip: s.server_ip_address,
            username: s.username,
            native_username: s.native_username,
            database: s.database,
            application_name: s.application_name,
            user_type: s.user_type,
            formal_user: s.formal_user.into_option().map(|u| Box::new(formal_user(u))),
            end_user: s.end_user.into_option().map(|u| Box::new(formal_user(u))),
        }),
        Some(Kind::Statement(s)) => EventKind::Statement(Statement {
            start_us: micros_of(s.start_time.seconds, s.start_time.nanos),
            duration_us: micros_of(s.duration.seconds, s.duration.nanos),
            text: s.text,
            rows: s.rows,
            bytes_sent: s.bytes_sent,
            sqlstate: s.sqlstate,
            rows_changed: s.rows_changed,
        }),
        Some(Kind::Running(r)) => EventKind::Running(RunningStatement {
            start_us: micros_of(r.start_time.seconds, r.start_time.nanos),
            text: r.text,
        }),
        Some(Kind::End(e)) => {
            let reason = EndReason::parse(&e.reason).ok_or(DecodeError::Custom("an unknown end reason"))?;
            EventKind::End(SessionEnd { end_us: micros_of(e.end_time.seconds, e.end_time.nanos), reason })
        }
        None => return Err(DecodeError::Custom("an event of no kind")),
    };
    Ok(SessionEvent { session_id: event.session_id, seq: event.seq, kind })
}

fn formal_user(u: pb::FormalUser) -> FormalUser {
    FormalUser {
        id: u.id,
        name: u.name,
        email: u.email,
        kind: u.r#type,
        groups: u.groups,
        external_ids: u.external_ids,
    }
}

/// Microseconds since the epoch; nanos stay non-negative as the contract asks.
pub fn timestamp(us: i64) -> Timestamp {
    Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
        ..Default::default()
    }
}

/// Seconds and nanos share the sign, per the Duration contract.
pub fn duration(us: i64) -> Duration {
    Duration { seconds: us / 1_000_000, nanos: ((us % 1_000_000) * 1_000) as i32, ..Default::default() }
}

/// Cuts `text` to at most `max` bytes by taking out its middle, and says so where it did, with
/// the full length and a SHA-256 of the whole: a transcript never passes a cut statement off as
/// what ran, the statement's start and end stay readable, and the digest matches it to a copy
/// kept elsewhere (the database's log, say).
fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let digest = Sha256::digest(text.as_bytes());
    let marker = |cut: usize| {
        format!("\n… [Gatehouse cut {cut} of {} bytes here; SHA-256 of the whole: {digest:x}] …\n", text.len())
    };
    // The marker's length depends on the number in it: size it for the largest cut.
    let keep = max.saturating_sub(marker(text.len()).len());
    let mut head = keep / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (keep - head);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    let mut cut = String::with_capacity(max);
    cut.push_str(&text[..head]);
    cut.push_str(&marker(tail - head));
    cut.push_str(&text[tail..]);
    Cow::Owned(cut)
}

#[cfg(test)]
mod tests {
    use buffa::MessageField;

    use super::*;

    #[test]
    fn times_keep_microseconds_and_signs() {
        assert_eq!((timestamp(1_500_000).seconds, timestamp(1_500_000).nanos), (1, 500_000_000));
        assert_eq!((timestamp(-1).seconds, timestamp(-1).nanos), (-1, 999_999_000));
        assert_eq!((duration(2_000_001).seconds, duration(2_000_001).nanos), (2, 1_000));
        assert_eq!((duration(-1_500_000).seconds, duration(-1_500_000).nanos), (-1, -500_000_000));
    }

    /// The wire message of an encoded event.
    fn wire(session_id: &str, seq: u64, kind: &EventKind) -> pb::Event {
        pb::Event::decode_from_slice(&encode(session_id, seq, kind, "run")).unwrap()
    }

    #[test]
    fn each_kind_maps_to_its_message() {
        let start =
            SessionStart { start_us: 10, resource_id: "res_1".into(), username: "alice".into(), ..Default::default() };
        let e = wire("s", 0, &EventKind::Start(start));
        let Some(Kind::Start(s)) = &e.kind else { panic!("{e:?}") };
        assert_eq!((s.run_id.as_str(), s.resource_id.as_str(), s.username.as_str()), ("run", "res_1", "alice"));
        assert_eq!(s.start_time.nanos, 10_000);
        assert!(s.formal_user.is_unset() && s.end_user.is_unset());

        let alice = FormalUser {
            id: "usr_1".into(),
            email: "alice@example.com".into(),
            kind: "human".into(),
            groups: vec!["dba".into()],
            ..Default::default()
        };
        let start = SessionStart {
            user_type: "machine".into(),
            formal_user: Some(Box::new(FormalUser {
                name: "etl".into(),
                kind: "machine".into(),
                ..Default::default()
            })),
            end_user: Some(Box::new(alice)),
            ..Default::default()
        };
        let e = wire("s", 0, &EventKind::Start(start));
        let Some(Kind::Start(s)) = &e.kind else { panic!("{e:?}") };
        assert_eq!((s.user_type.as_str(), s.formal_user.name.as_str()), ("machine", "etl"));
        assert_eq!(
            (s.end_user.email.as_str(), s.end_user.groups.as_slice()),
            ("alice@example.com", &["dba".to_owned()][..])
        );

        let statement = Statement { text: "select 1".into(), rows: 1, sqlstate: "42P01".into(), ..Default::default() };
        let e = wire("s", 1, &EventKind::Statement(statement));
        let Some(Kind::Statement(s)) = &e.kind else { panic!("{e:?}") };
        assert_eq!((s.text.as_str(), s.rows, s.sqlstate.as_str()), ("select 1", 1, "42P01"));
        // Set even when zero: the control plane reads a statement's time from them.
        assert!(s.start_time.is_set() && s.duration.is_set());

        let end = SessionEnd { end_us: 20, reason: EndReason::Terminated };
        let e = wire("s", 2, &EventKind::End(end));
        let Some(Kind::End(s)) = &e.kind else { panic!("{e:?}") };
        assert_eq!((e.seq, s.reason.as_str()), (2, "terminated"));
    }

    /// What buffa's own encoder makes of a statement event.
    fn buffa_statement(session_id: &str, seq: u64, s: &Statement) -> Vec<u8> {
        pb::Event {
            session_id: session_id.into(),
            seq,
            kind: Some(Kind::from(pb::Statement {
                start_time: MessageField::some(timestamp(s.start_us)),
                duration: MessageField::some(duration(s.duration_us)),
                text: s.text.clone(),
                rows: s.rows,
                bytes_sent: s.bytes_sent,
                sqlstate: s.sqlstate.clone(),
                rows_changed: s.rows_changed,
                ..Default::default()
            })),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// What buffa's own encoder makes of a running statement's event.
    fn buffa_running(session_id: &str, seq: u64, r: &RunningStatement) -> Vec<u8> {
        pb::Event {
            session_id: session_id.into(),
            seq,
            kind: Some(Kind::from(pb::StatementRunning {
                start_time: MessageField::some(timestamp(r.start_us)),
                text: r.text.clone(),
                ..Default::default()
            })),
            ..Default::default()
        }
        .encode_to_vec()
    }

    proptest::proptest! {
        #[test]
        fn running_statements_encode_as_buffa_encodes_them(
            session_id in "[0-9a-f-]{0,40}",
            seq: u64,
            start_us: i64,
            text in ".{0,300}",
        ) {
            for start_us in [start_us, 0, start_us / 1_000_000 * 1_000_000] {
                let r = RunningStatement { start_us, text: text.clone() };
                let ours = encode(&session_id, seq, &EventKind::Running(r.clone()), "run");
                proptest::prop_assert_eq!(&ours[..], &buffa_running(&session_id, seq, &r)[..]);
            }
        }

        #[test]
        fn statements_encode_as_buffa_encodes_them(
            session_id in "[0-9a-f-]{0,40}",
            seq: u64,
            start_us: i64,
            duration_us: i64,
            text in ".{0,300}",
            rows: i64,
            bytes_sent: i64,
            sqlstate in "([0-9A-Z]{5})?",
            rows_changed: i64,
        ) {
            // Whole seconds and zeros too, where fields are left out.
            for (start_us, duration_us, rows, rows_changed) in [(start_us, duration_us, rows, rows_changed), (0, 0, 0, 0), (start_us / 1_000_000 * 1_000_000, -duration_us.abs() % 1_000_000, 1, 1)] {
                let s = Statement { start_us, duration_us, text: text.clone(), rows, bytes_sent, sqlstate: sqlstate.clone(), rows_changed };
                let ours = encode(&session_id, seq, &EventKind::Statement(s.clone()), "run");
                proptest::prop_assert_eq!(&ours[..], &buffa_statement(&session_id, seq, &s)[..]);
            }
        }
    }

    #[test]
    fn decode_reads_back_what_encode_wrote() {
        let machine = FormalUser {
            id: "usr_2".into(),
            name: "etl".into(),
            email: "etl@example.com".into(),
            kind: "machine".into(),
            groups: vec!["jobs".into(), "dba".into()],
            external_ids: vec!["okta|1".into()],
        };
        let kinds = [
            EventKind::Start(SessionStart {
                start_us: -1,
                resource_id: "res_1".into(),
                client_ip: "10.0.0.1".into(),
                server_ip: "::1".into(),
                username: "alice".into(),
                native_username: "app".into(),
                database: "db".into(),
                application_name: "psql".into(),
                user_type: "machine".into(),
                formal_user: Some(Box::new(machine.clone())),
                end_user: Some(Box::new(FormalUser { email: "alice@example.com".into(), ..machine })),
            }),
            EventKind::Statement(Statement {
                start_us: 1_700_000_000_123_456,
                duration_us: 2_000_001,
                text: "select 'é'".into(),
                rows: 7,
                bytes_sent: 1 << 40,
                sqlstate: "57014".into(),
                rows_changed: 3,
            }),
            EventKind::Statement(Statement::default()),
            EventKind::Running(RunningStatement { start_us: 1_700_000_003_000_001, text: "select pg_sleep(9)".into() }),
            EventKind::End(SessionEnd { end_us: 1_700_000_002_000_000, reason: EndReason::Shutdown }),
        ];
        for (seq, kind) in kinds.into_iter().enumerate() {
            let id = "0193c5d2-7b1e-7000-8000-000000000001";
            let bytes = encode(id, seq as u64, &kind, "run");
            assert_eq!(decode(&bytes).unwrap(), SessionEvent { session_id: id.into(), seq: seq as u64, kind });
        }
        assert!(decode(b"\xff").is_err());
        assert!(decode(&pb::Event { session_id: "s".into(), ..Default::default() }.encode_to_vec()).is_err());
    }

    #[test]
    fn long_texts_keep_their_ends_and_say_what_was_cut() {
        let hidden = format!("select 1 /*{}*/; delete from t; select '{}é'", " ".repeat(3000), "x".repeat(3000));
        let cut = truncate(&hidden, 1000);
        assert!(cut.len() <= 1000, "{}", cut.len());
        assert!(cut.starts_with("select 1 /*   "));
        assert!(cut.ends_with("xxxé'"));
        let (head, rest) = cut.split_once('\n').unwrap();
        let (marker, tail) = rest.split_once('\n').unwrap();
        let whole = format!("of {} bytes here; SHA-256 of the whole: {:x}] …", hidden.len(), Sha256::digest(&hidden));
        let count = marker.strip_prefix("… [Gatehouse cut ").and_then(|m| m.strip_suffix(&whole)).unwrap();
        assert_eq!(head.len() + count.trim().parse::<usize>().unwrap() + tail.len(), hidden.len(), "{marker}");
        // On a character boundary, both ends.
        let wide = "é".repeat(1000);
        let cut = truncate(&wide, 500);
        assert!(cut.len() <= 500 && cut.starts_with('é') && cut.ends_with('é'));
        assert_eq!(truncate(&wide, 2000), wide);
        assert!(truncate(&"x".repeat(MAX_STATEMENT_TEXT + 1), MAX_STATEMENT_TEXT).len() <= MAX_STATEMENT_TEXT);
    }
}
