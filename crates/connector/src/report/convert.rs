//! Session events to the control plane's wire messages (`gatehouse.connector.v1`), and back.
//! Proto types stop here: the proxy only knows [`EventKind`], and the report pipeline only
//! the bytes.

use std::borrow::Cow;
use std::ops::Range;

use buffa::{DecodeError, Message, MessageFieldView, ViewEncode};
use buffa_types::google::protobuf::{Duration, Timestamp, TimestampView};
use bytes::Bytes;
use gatehouse_core::sql;
use gatehouse_core::time::micros_of;
use gatehouse_proto::gatehouse::connector::v1 as pb;
use gatehouse_proto::gatehouse::connector::v1::__buffa::view::oneof::event::Kind as KindView;
use gatehouse_proto::gatehouse::connector::v1::event::Kind;
use sha2::{Digest, Sha256};

use crate::event::{
    EndReason, EventKind, FormalUser, RunningStatement, SessionEnd, SessionEvent, SessionStart, Statement,
};

/// Statement texts longer than this are abridged (see [`abridge`]), so a single event always
/// fits in a request the control plane accepts.
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
    let text = abridge(&s.text, MAX_STATEMENT_TEXT);
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
    let text = abridge(text, MAX_STATEMENT_TEXT);
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

/// What an abridged text keeps of each end of a span of filler it cuts: enough to show what
/// the span was (`/* ...`, `'...`) and how it ends.
const FILLER_KEPT: usize = 64;

/// Cuts `text` to at most `max` bytes, and says so where it did: a transcript never passes a cut
/// statement off as what ran. What holds no SQL goes first ([`sql::filler`]: the text of
/// comments, literals and quoted names, runs of whitespace), longest first, each span keeping
/// its first and last [`FILLER_KEPT`] bytes, so that a statement hidden between two padded
/// comments stays in the transcript. Only when that is not enough (a text of that many
/// statements) does the rest lose its middle. The first mark also gives the whole text's length
/// and SHA-256, which matches it to a copy kept elsewhere (the database's log, say).
///
/// `max` leaves room for a mark or two: a few hundred bytes.
fn abridge(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let digest = format!("{:x}", Sha256::digest(text.as_bytes()));
    let whole = Whole { len: text.len(), digest: &digest };
    let mut length = text.len() + whole.note_len();
    let mut spans: Vec<Range<usize>> = sql::filler(text, 2 * FILLER_KEPT + Cut::mark_len(0, false))
        .into_iter()
        .map(|span| text.ceil_char_boundary(span.start + FILLER_KEPT)..text.floor_char_boundary(span.end - FILLER_KEPT))
        .filter(|cut| cut.len() > Cut::mark_len(cut.len(), false))
        .collect();
    spans.sort_by_key(|cut| std::cmp::Reverse(cut.len()));
    let mut cuts = Vec::new();
    for span in spans {
        if length <= max {
            break;
        }
        length = length - span.len() + Cut::mark_len(span.len(), false);
        cuts.push(Cut { span, middle: false });
    }
    cuts.sort_by_key(|cut| cut.span.start);
    if length > max {
        let room = max.saturating_sub(whole.note_len() + Cut::mark_len(text.len(), true));
        cuts = cut_middle(text, cuts, room);
    }
    let total = cuts.iter().map(|cut| cut.span.len()).sum();
    let mut out = String::with_capacity(max);
    let mut copied = 0;
    for (n, cut) in cuts.iter().enumerate() {
        out.push_str(&text[copied..cut.span.start]);
        cut.mark((n == 0).then_some((total, &whole)), &mut out);
        copied = cut.span.end;
    }
    out.push_str(&text[copied..]);
    debug_assert!(out.len() <= max, "{} bytes abridged to {} for {max}", text.len(), out.len());
    Cow::Owned(out)
}

/// A span [`abridge`] takes out of a text.
struct Cut {
    span: Range<usize>,
    /// The middle of what filler cuts left, on lines of its own; else a span of filler.
    middle: bool,
}

/// What the first mark adds: how long the whole text was, and its digest.
struct Whole<'a> {
    len: usize,
    digest: &'a str,
}

impl Whole<'_> {
    fn note(&self, total: usize) -> String {
        format!(", {total} of {} in all; SHA-256 of the whole: {}", self.len, self.digest)
    }

    /// The note's length for the largest total: at least its length for any.
    fn note_len(&self) -> usize {
        self.note(self.len).len()
    }
}

impl Cut {
    /// Writes the mark that stands for this cut; given the total of all cuts, with the note on
    /// the whole text.
    fn mark(&self, whole: Option<(usize, &Whole)>, out: &mut String) {
        use std::fmt::Write;
        let note = whole.map(|(total, whole)| whole.note(total)).unwrap_or_default();
        let cut = self.span.len();
        _ = match self.middle {
            true => write!(out, "\n… [Gatehouse cut {cut} bytes here{note}] …\n"),
            false => write!(out, "… [Gatehouse cut {cut} bytes here{note}] …"),
        };
    }

    /// The length of a cut's mark of `cut` bytes, without the note.
    fn mark_len(cut: usize, middle: bool) -> usize {
        let mut out = String::new();
        Cut { span: 0..cut, middle }.mark(None, &mut out);
        out.len()
    }
}

/// `cuts` (in order, none of them a middle) with the middle of what they leave of `text` cut
/// too, so that the rest and the marks take at most `room` bytes (the middle's mark aside):
/// half of it from the start and the rest from the end. A cut of filler the middle reaches
/// goes into it.
fn cut_middle(text: &str, cuts: Vec<Cut>, room: usize) -> Vec<Cut> {
    // The text's pieces in order: what is kept, and the marks of the cuts between.
    let mut kept = Vec::with_capacity(cuts.len() + 1);
    let mut copied = 0;
    for cut in &cuts {
        kept.push(copied..cut.span.start);
        copied = cut.span.end;
    }
    kept.push(copied..text.len());
    let mark = |n: usize| Cut::mark_len(cuts[n].span.len(), false);
    // From the start: the head ends at `from`, before the first cut not kept whole.
    let (mut used, mut head) = (0, 0);
    let half = room / 2;
    let from = loop {
        let piece = &kept[head];
        if used + piece.len() > half {
            let from = text.floor_char_boundary(piece.start + (half - used));
            used += from - piece.start;
            break from;
        }
        used += piece.len();
        if head == cuts.len() || used + mark(head) > half {
            break piece.end;
        }
        used += mark(head);
        head += 1;
    };
    // From the end, likewise, with the room the head left.
    let (mut used, mut tail) = (used, cuts.len());
    let to = loop {
        let piece = &kept[tail];
        if used + piece.len() > room {
            break text.ceil_char_boundary(piece.end - (room - used));
        }
        used += piece.len();
        if tail == 0 || used + mark(tail - 1) > room {
            break piece.start;
        }
        used += mark(tail - 1);
        tail -= 1;
    };
    let mut cuts = cuts;
    let tail_cuts = cuts.split_off(tail.max(head));
    cuts.truncate(head);
    cuts.push(Cut { span: from..to.max(from), middle: true });
    cuts.extend(tail_cuts);
    cuts
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

    /// Checks that `abridged` fits in `max` and is `text` with spans taken out, each where a
    /// mark says how many bytes it took out, and the first mark gives the whole text's length
    /// and SHA-256; returns the number of marks.
    fn check_abridged(text: &str, abridged: &str, max: usize) -> usize {
        assert!(abridged.len() <= max, "{} bytes for {max}", abridged.len());
        // Each mark: where it starts and ends, the bytes it says it stands for, and its note.
        let mut marks = Vec::new();
        let mut from = 0;
        while let Some(n) = abridged[from..].find("… [Gatehouse cut ") {
            let start = from + n;
            let rest = &abridged[start + "… [Gatehouse cut ".len()..];
            let (cut, rest) = rest.split_once(" bytes here").unwrap();
            let (note, _) = rest.split_once("] …").unwrap();
            from = start + "… [Gatehouse cut ".len() + cut.len() + " bytes here".len() + note.len() + "] …".len();
            marks.push((start, from, cut.parse::<usize>().unwrap(), note));
        }
        // Whether the marks stand for spans of `text`, one of them (on a line of its own) its middle.
        let (text, abridged_bytes) = (text.as_bytes(), abridged.as_bytes());
        let fits = |middle: Option<usize>| {
            let (mut at, mut copied) = (0, 0);
            for (n, &(start, end, cut, _)) in marks.iter().enumerate() {
                let (start, end) = match middle == Some(n) {
                    true if abridged_bytes[start - 1] == b'\n' && abridged_bytes.get(end) == Some(&b'\n') => {
                        (start - 1, end + 1)
                    }
                    true => return false,
                    false => (start, end),
                };
                let kept = &abridged_bytes[copied..start];
                if !text[at..].starts_with(kept) {
                    return false;
                }
                at += kept.len() + cut;
                copied = end;
                if at > text.len() {
                    return false;
                }
            }
            text[at..] == abridged_bytes[copied..]
        };
        assert!(fits(None) || (0..marks.len()).any(|n| fits(Some(n))), "{abridged:?}");
        let total: usize = marks.iter().map(|&(_, _, cut, _)| cut).sum();
        let whole = format!(", {total} of {} in all; SHA-256 of the whole: {:x}", text.len(), Sha256::digest(text));
        for (n, &(_, _, _, note)) in marks.iter().enumerate() {
            assert_eq!(note, if n == 0 { whole.as_str() } else { "" });
        }
        marks.len()
    }

    #[test]
    fn long_texts_lose_their_filler_first_and_say_what_was_cut() {
        let hidden = format!("select 1 /*{}*/; delete from t; select '{}é'", " ".repeat(3000), "x".repeat(3000));
        let cut = abridge(&hidden, 1000);
        assert_eq!(check_abridged(&hidden, &cut, 1000), 2, "{cut}");
        assert!(cut.starts_with("select 1 /*   ") && cut.contains("*/; delete from t; select 'xxx"), "{cut}");
        assert!(cut.ends_with("xxxé'"));
        // Only as much as it takes, longest first: a short comment stays whole.
        let text = format!("select 1 /* {} */, 2 /* {} */", "a".repeat(300), "b".repeat(MAX_STATEMENT_TEXT));
        let cut = abridge(&text, MAX_STATEMENT_TEXT);
        assert_eq!(check_abridged(&text, &cut, MAX_STATEMENT_TEXT), 1);
        assert!(cut.contains(&"a".repeat(300)));
        // Filler cut, and still too long: the middle goes too, beside the filler's marks.
        let pad = "x".repeat(300);
        let text = format!("/* {pad} */ {} /* {pad} */", "select 1;".repeat(200));
        let cut = abridge(&text, 1000);
        assert_eq!(check_abridged(&text, &cut, 1000), 3, "{cut}");
        assert!(cut.starts_with("/* xxx") && cut.ends_with("xxx */") && cut.contains("\n… [Gatehouse cut "));
        // No filler: the middle goes, on character boundaries.
        let wide = "é".repeat(1000);
        let cut = abridge(&wide, 500);
        assert_eq!(check_abridged(&wide, &cut, 500), 1);
        assert!(cut.starts_with('é') && cut.ends_with('é') && cut.contains("\n… [Gatehouse cut "));
        assert!(matches!(abridge(&wide, 2000), Cow::Borrowed(_)));
        let long = "x".repeat(MAX_STATEMENT_TEXT + 1);
        check_abridged(&long, &abridge(&long, MAX_STATEMENT_TEXT), MAX_STATEMENT_TEXT);
    }

    /// Found by a review: a statement between two padded comments (or literals, or runs of
    /// whitespace) was in the middle that a long text lost, and so missing from its transcript.
    #[test]
    fn statements_hidden_between_padding_stay_in_the_transcript() {
        let pad = |n: usize| "x".repeat(n);
        let ddl = "drop table victim; create role evil superuser; drop role evil";
        for text in [
            format!("select 1 /* {} */ ; drop table victim ; select 2 /* {} */;", pad(600_000), pad(600_000)),
            format!("select '{}'; {ddl}; select '{}'", pad(700_000), pad(700_000)),
            format!("select E'\\'{}\\\\'; {ddl}; select e'{}'", pad(700_000), pad(700_000)),
            format!("select $p${}$p$; {ddl}; select $${}$$", pad(700_000), pad(700_000)),
            format!("select 1 as \"{}\"; {ddl}; select 2 as \"{}\"", pad(700_000), pad(700_000)),
            format!("select 1 -- {}\n; {ddl}; -- {}\n", pad(700_000), pad(700_000)),
            format!("select 1{}; {ddl};{}select 2", " ".repeat(700_000), "\n".repeat(700_000)),
            format!("select 1 /* /* {} */ */; {ddl}; select 2 /* {} /* */", pad(700_000), pad(700_000)),
            // A plain literal ends at its second quote, unless standard_conforming_strings is off:
            // what runs in either case stays.
            format!("select 'a\\'; /* {} */ {ddl}; /* {} */ select 'b'", pad(700_000), pad(700_000)),
            format!("select 'é{}é'; {ddl}; select 'é{}é'", "é".repeat(350_000), "€".repeat(350_000)),
        ] {
            let cut = abridge(&text, MAX_STATEMENT_TEXT);
            check_abridged(&text, &cut, MAX_STATEMENT_TEXT);
            let ddl = if text.contains("victim ;") { "drop table victim" } else { ddl };
            assert!(cut.contains(ddl), "{}", &cut[..cut.len().min(2000)]);
        }
        // Too many statements to keep: the middle goes.
        let text = "select 1;".repeat(1_000_000);
        let cut = abridge(&text, MAX_STATEMENT_TEXT);
        assert_eq!(check_abridged(&text, &cut, MAX_STATEMENT_TEXT), 1);
        assert!(cut.starts_with("select 1;select 1;") && cut.ends_with("select 1;select 1;"));
        assert!(cut.len() > MAX_STATEMENT_TEXT - 300, "{}", cut.len());
    }

    proptest::proptest! {
        #[test]
        fn an_abridged_text_fits_and_says_what_it_cut(
            pieces in proptest::collection::vec((0usize..14, 1usize..400), 1..40),
            max in 400usize..3000,
        ) {
            const PIECES: [&str; 14] = ["select 1;", " ", "/* x */", "'", "\\", "é", "$$", "$t$", "--", "\n", "€", "\"", "E'", "x"];
            let text: String = pieces.iter().map(|&(piece, times)| PIECES[piece].repeat(times)).collect();
            let cut = abridge(&text, max);
            check_abridged(&text, &cut, max);
        }
    }
}
