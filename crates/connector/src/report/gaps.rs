//! What is left of the statements a full spool drops in fail-open mode: in each session that
//! lost some, one statement in their place saying how many are missing. An audit trail with
//! holes must not read as complete; the count alone (`events_dropped_total`) says nothing about
//! which sessions the holes are in.

use bytes::Bytes;

use super::{Record, convert};
use crate::event::{EventKind, Statement};

/// The marker statements for `dropped` (records one append skipped, in order): one per
/// session, numbered as the first statement it stands for (never stored, so its number is
/// free), spanning their time, with their rows and bytes summed. Announcements of running
/// statements need no marker: their statement stands for them.
pub(super) fn markers<'a>(dropped: impl IntoIterator<Item = &'a Record>) -> Vec<Bytes> {
    let mut gaps: Vec<(String, u64, Gap)> = Vec::new();
    for record in dropped {
        let Ok(event) = record.decode() else { continue };
        let EventKind::Statement(statement) = event.kind else { continue };
        match gaps.iter_mut().find(|(session, _, _)| *session == event.session_id) {
            Some((_, _, gap)) => gap.add(&statement),
            None => gaps.push((event.session_id, event.seq, Gap::new(&statement))),
        }
    }
    gaps.into_iter().map(|(session, seq, gap)| convert::encode(&session, seq, &gap.statement(), "")).collect()
}

struct Gap {
    statements: u64,
    start_us: i64,
    end_us: i64,
    rows: i64,
    bytes_sent: i64,
    rows_changed: i64,
}

impl Gap {
    fn new(first: &Statement) -> Self {
        let mut gap = Self {
            statements: 0,
            start_us: first.start_us,
            end_us: first.start_us,
            rows: 0,
            bytes_sent: 0,
            rows_changed: 0,
        };
        gap.add(first);
        gap
    }

    fn add(&mut self, statement: &Statement) {
        self.statements += 1;
        self.start_us = self.start_us.min(statement.start_us);
        self.end_us = self.end_us.max(statement.start_us + statement.duration_us);
        self.rows += statement.rows;
        self.bytes_sent += statement.bytes_sent;
        self.rows_changed += statement.rows_changed;
    }

    fn statement(&self) -> EventKind {
        let n = self.statements;
        let plural = if n == 1 { "" } else { "s" };
        EventKind::Statement(Statement {
            start_us: self.start_us,
            duration_us: self.end_us - self.start_us,
            text: format!("-- {n} statement{plural} not recorded here: the connector's spool was full (fail_open)"),
            rows: self.rows,
            bytes_sent: self.bytes_sent,
            sqlstate: String::new(),
            rows_changed: self.rows_changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RunningStatement;

    fn record(session: &str, seq: u64, kind: EventKind) -> Record {
        Record { bytes: convert::encode(session, seq, &kind, ""), statement: true, journal_segment: 0 }
    }

    fn statement(start_us: i64, duration_us: i64, rows: i64) -> EventKind {
        EventKind::Statement(Statement {
            start_us,
            duration_us,
            text: "select 1".into(),
            rows,
            bytes_sent: 10,
            rows_changed: 2 * rows,
            ..Default::default()
        })
    }

    #[test]
    fn each_session_that_lost_statements_gets_one_marker_where_they_were() {
        let dropped = [
            record("a", 4, statement(1_000, 10, 1)),
            record("b", 9, statement(1_005, 1, 0)),
            record("a", 5, EventKind::Running(RunningStatement { start_us: 1_020, text: "select pg_sleep(9)".into() })),
            record("a", 6, statement(1_020, 500, 3)),
        ];
        let markers: Vec<_> = markers(&dropped).iter().map(|bytes| convert::decode(bytes).unwrap()).collect();
        assert_eq!(markers.len(), 2);
        assert_eq!((markers[0].session_id.as_str(), markers[0].seq), ("a", 4));
        assert_eq!(
            markers[0].kind,
            EventKind::Statement(Statement {
                start_us: 1_000,
                duration_us: 520,
                text: "-- 2 statements not recorded here: the connector's spool was full (fail_open)".into(),
                rows: 4,
                bytes_sent: 20,
                sqlstate: String::new(),
                rows_changed: 8,
            })
        );
        assert_eq!((markers[1].session_id.as_str(), markers[1].seq), ("b", 9));
        let EventKind::Statement(b) = &markers[1].kind else { panic!("{:?}", markers[1]) };
        assert!(b.text.starts_with("-- 1 statement not recorded here"), "{}", b.text);
    }

    #[test]
    fn dropped_announcements_alone_need_no_marker() {
        let running = EventKind::Running(RunningStatement { start_us: 1, text: "select 1".into() });
        assert!(markers(&[record("a", 1, running)]).is_empty());
    }
}
