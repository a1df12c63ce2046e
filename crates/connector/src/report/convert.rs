//! Session events to the control plane's wire messages (`gatehouse.connector.v1`).
//! Proto types stop here: the proxy only knows [`SessionEvent`].

use buffa::MessageField;
use buffa_types::google::protobuf::{Duration, Timestamp};
use gatehouse_proto::gatehouse::connector::v1 as pb;
use gatehouse_proto::gatehouse::connector::v1::event::Kind;

use crate::event::{EventKind, FormalUser, SessionEvent};

/// Statement texts longer than this are cut (on a character boundary), so a
/// single event always fits in a request the control plane accepts.
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

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
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
    fn long_texts_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("héllo".into(), 3), "hé");
        assert_eq!(truncate("short".into(), 10), "short");
    }
}
