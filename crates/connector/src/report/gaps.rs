//! What is left of the statements a full spool drops in fail-open mode: in each session that
//! lost some, one statement in their place saying how many are missing. An audit trail with
//! holes must not read as complete; the count alone (`events_dropped_total`) says nothing about
//! which sessions the holes are in.

use bytes::Bytes;

use super::{JournalPin, Record, convert};
use crate::event::{EventKind, Statement};

/// The marker statements for `dropped` (records one append skipped, in order): one per
/// session, numbered as the first statement it stands for (never stored, so its number is
/// free), spanning their time, with their rows and bytes summed. Announcements of running
/// statements need no marker: their statement stands for them.
#[cfg(test)]
fn markers<'a>(dropped: impl IntoIterator<Item = &'a Record>) -> Vec<Bytes> {
    let mut pending = Pending::default();
    pending.add(dropped);
    pending.take(|_| true).into_iter().map(|gap| gap.marker()).collect()
}

/// The gaps not yet written to the spool, one per session however many appends dropped its
/// statements: while an outage lasts, a session's gap grows instead of the spool. Written when
/// the session ends, once the spool is replayed (the outage is over: room for a statement
/// again after an append, or after a replayed batch, is no end to it), and at shutdown.
///
/// Meanwhile each gap's marker, as it stands, is in the journal ([`Pending::journal`]): a
/// connector killed mid-outage would otherwise lose it, and the session read as complete. The
/// journal then holds a marker per growth, all of the same (session, seq), and the control
/// plane keeps the first it is sent: the journal's recovery keeps only the last of them
/// (`journal::superseded`), the count as it stood at the last append that dropped statements
/// (the statements of an append not yet counted are still in the journal themselves).
#[derive(Debug, Default)]
pub(super) struct Pending {
    gaps: Vec<SessionGap>,
}

/// One session's gap.
#[derive(Debug)]
pub(super) struct SessionGap {
    session: String,
    /// The number of the first statement it stands for.
    seq: u64,
    gap: Gap,
    /// Its marker as journaled last; dropped once the marker is in the spool.
    pin: Option<JournalPin>,
}

impl SessionGap {
    /// The marker statement, encoded.
    pub(super) fn marker(&self) -> Bytes {
        convert::encode(&self.session, self.seq, &self.gap.statement(), "")
    }
}

impl Pending {
    /// Counts the statements among `dropped` in their sessions' gaps.
    pub(super) fn add<'a>(&mut self, dropped: impl IntoIterator<Item = &'a Record>) {
        for record in dropped {
            let Ok(event) = record.decode() else { continue };
            let EventKind::Statement(statement) = event.kind else { continue };
            match self.gaps.iter_mut().find(|g| g.session == event.session_id) {
                Some(g) => g.gap.add(&statement),
                None => {
                    self.gaps.push(SessionGap {
                        session: event.session_id,
                        seq: event.seq,
                        gap: Gap::new(&statement),
                        pin: None,
                    });
                }
            }
        }
    }

    /// Journals every gap's marker as it stands, through `write` (which pins it), in place of
    /// the one journaled before: a crash now leaves the count so far. All of them, not only
    /// those that grew, so that no pin holds back the journal's older segments while an
    /// outage lasts. A marker that cannot be journaled keeps the one before.
    pub(super) fn journal(&mut self, write: impl Fn(&[u8]) -> Option<JournalPin>) {
        for gap in &mut self.gaps {
            if let Some(pin) = write(&gap.marker()) {
                gap.pin = Some(pin);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.gaps.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.gaps.len()
    }

    pub(super) fn has(&self, session: &str) -> bool {
        self.gaps.iter().any(|g| g.session == session)
    }

    /// Takes out the gaps of the sessions `which` picks.
    pub(super) fn take(&mut self, which: impl Fn(&str) -> bool) -> Vec<SessionGap> {
        let (taken, kept) = std::mem::take(&mut self.gaps).into_iter().partition(|g| which(&g.session));
        self.gaps = kept;
        taken
    }

    /// Puts back gaps whose markers could not be written.
    pub(super) fn put_back(&mut self, gaps: impl IntoIterator<Item = SessionGap>) {
        self.gaps.extend(gaps);
    }
}

#[derive(Debug)]
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
            text: format!("-- {n} statement{plural} not recorded here: the connector's spool was full"),
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
                text: "-- 2 statements not recorded here: the connector's spool was full".into(),
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
