//! Session events to the control plane's wire messages (`gatehouse.connector.v1`).
//! Proto types stop here: the proxy only knows [`SessionEvent`].

use buffa::MessageField;
use buffa_types::google::protobuf::{Duration, Timestamp};
use gatehouse_proto::gatehouse::connector::v1 as pb;
use gatehouse_proto::gatehouse::connector::v1::event::Kind;
use sha2::{Digest, Sha256};

use crate::event::{EventKind, FormalUser, SessionEvent};

/// Statement texts longer than this lose their middle (see [`truncate`]), so a single event
/// always fits in a request the control plane accepts.
pub const MAX_STATEMENT_TEXT: usize = 1024 * 1024;

/// Converts one event; `run_id` marks the session as started by this run.
pub fn event(event: SessionEvent, run_id: &str) -> pb::Event {
    let kind = match event.kind {
        EventKind::Start(s) => Kind::from(pb::SessionStart {
            start_time: MessageField::some(timestamp(s.start_us)),
            run_id: run_id.to_owned(),
            resource_id: s.resource_id,
            client_ip_address: s.client_ip,
            server_ip_address: s.server_ip,
            username: s.username,
            native_username: s.native_username,
            database: s.database,
            application_name: s.application_name,
            user_type: s.user_type,
            formal_user: s.formal_user.map(|u| formal_user(*u)).into(),
            end_user: s.end_user.map(|u| formal_user(*u)).into(),
            ..Default::default()
        }),
        EventKind::Statement(s) => Kind::from(pb::Statement {
            start_time: MessageField::some(timestamp(s.start_us)),
            duration: MessageField::some(duration(s.duration_us)),
            text: truncate(s.text, MAX_STATEMENT_TEXT),
            rows: s.rows,
            bytes_sent: s.bytes_sent,
            sqlstate: s.sqlstate,
            ..Default::default()
        }),
        EventKind::End(e) => Kind::from(pb::SessionEnd {
            end_time: MessageField::some(timestamp(e.end_us)),
            reason: e.reason.as_str().to_owned(),
            ..Default::default()
        }),
    };
    pb::Event { session_id: event.session_id, seq: event.seq, kind: Some(kind), ..Default::default() }
}

fn formal_user(u: FormalUser) -> pb::FormalUser {
    pb::FormalUser {
        id: u.id,
        name: u.name,
        email: u.email,
        r#type: u.kind,
        groups: u.groups,
        external_ids: u.external_ids,
        ..Default::default()
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
fn truncate(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
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
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EndReason, SessionEnd, SessionStart, Statement};

    #[test]
    fn times_keep_microseconds_and_signs() {
        assert_eq!((timestamp(1_500_000).seconds, timestamp(1_500_000).nanos), (1, 500_000_000));
        assert_eq!((timestamp(-1).seconds, timestamp(-1).nanos), (-1, 999_999_000));
        assert_eq!((duration(2_000_001).seconds, duration(2_000_001).nanos), (2, 1_000));
        assert_eq!((duration(-1_500_000).seconds, duration(-1_500_000).nanos), (-1, -500_000_000));
    }

    #[test]
    fn each_kind_maps_to_its_message() {
        let start =
            SessionStart { start_us: 10, resource_id: "res_1".into(), username: "alice".into(), ..Default::default() };
        let e = event(SessionEvent { session_id: "s".into(), seq: 0, kind: EventKind::Start(start) }, "run");
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
        let e = event(SessionEvent { session_id: "s".into(), seq: 0, kind: EventKind::Start(start) }, "run");
        let Some(Kind::Start(s)) = &e.kind else { panic!("{e:?}") };
        assert_eq!((s.user_type.as_str(), s.formal_user.name.as_str()), ("machine", "etl"));
        assert_eq!(
            (s.end_user.email.as_str(), s.end_user.groups.as_slice()),
            ("alice@example.com", &["dba".to_owned()][..])
        );

        let statement = Statement { text: "select 1".into(), rows: 1, sqlstate: "42P01".into(), ..Default::default() };
        let e = event(SessionEvent { session_id: "s".into(), seq: 1, kind: EventKind::Statement(statement) }, "run");
        let Some(Kind::Statement(s)) = &e.kind else { panic!("{e:?}") };
        assert_eq!((s.text.as_str(), s.rows, s.sqlstate.as_str()), ("select 1", 1, "42P01"));

        let end = SessionEnd { end_us: 20, reason: EndReason::Terminated };
        let e = event(SessionEvent { session_id: "s".into(), seq: 2, kind: EventKind::End(end) }, "run");
        let Some(Kind::End(s)) = &e.kind else { panic!("{e:?}") };
        assert_eq!((e.seq, s.reason.as_str()), (2, "terminated"));
    }

    #[test]
    fn long_texts_keep_their_ends_and_say_what_was_cut() {
        let hidden = format!("select 1 /*{}*/; delete from t; select '{}é'", " ".repeat(3000), "x".repeat(3000));
        let cut = truncate(hidden.clone(), 1000);
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
        let cut = truncate(wide.clone(), 500);
        assert!(cut.len() <= 500 && cut.starts_with('é') && cut.ends_with('é'));
        assert_eq!(truncate(wide.clone(), 2000), wide);
        assert!(truncate("x".repeat(MAX_STATEMENT_TEXT + 1), MAX_STATEMENT_TEXT).len() <= MAX_STATEMENT_TEXT);
    }
}
