//! A session's events, numbered in order: the start (seq 0), its statements (a long one announced
//! while it runs, then recorded), one end.

use uuid::Uuid;

use crate::event::{EndReason, EventKind, RunningStatement, SessionEnd, SessionStart, Statement};
use crate::report::{JournalPin, Reporter};

/// A started session. Ending it consumes it, so it ends once.
pub(crate) struct Session {
    id: String,
    next_seq: u64,
    reporter: Reporter,
}

impl Session {
    /// Starts a session with a new time-ordered id (UUIDv7) and reports its start.
    pub(crate) fn start(reporter: Reporter, start: SessionStart) -> Self {
        let mut session = Self { id: Uuid::now_v7().to_string(), next_seq: 0, reporter };
        session.emit(&EventKind::Start(start));
        session
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn statement(&mut self, statement: Statement) {
        self.emit(&EventKind::Statement(statement));
    }

    /// Announces a statement still running, so that it shows while it runs.
    pub(crate) fn running(&mut self, start_us: i64, text: &str) {
        self.emit(&EventKind::Running(RunningStatement { start_us, text: text.to_owned() }));
    }

    /// Writes the statement the database is now on ahead, as running, to the journal only:
    /// numbered as the next event, which is its announcement or its completion.
    pub(crate) fn journal_running(&self, start_us: i64, text: &str) -> Option<JournalPin> {
        self.reporter.journal_running(&self.id, self.next_seq, start_us, text)
    }

    pub(crate) fn end(mut self, end_us: i64, reason: EndReason) {
        self.emit(&EventKind::End(SessionEnd { end_us, reason }));
    }

    fn emit(&mut self, kind: &EventKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.reporter.send(&self.id, seq, kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SessionEvent;

    #[test]
    fn events_are_numbered_from_zero_under_one_id() {
        let (reporter, mut events) = Reporter::channel();
        let mut session = Session::start(reporter, SessionStart { username: "u".into(), ..Default::default() });
        session.statement(Statement { text: "select 1".into(), ..Default::default() });
        let id = session.id().to_owned();
        session.end(5, EndReason::Client);

        let got: Vec<SessionEvent> =
            std::iter::from_fn(|| events.try_recv().ok()).map(|r| r.decode().unwrap()).collect();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(got.iter().all(|e| e.session_id == id));
        assert!(matches!(got[0].kind, EventKind::Start(_)));
        assert_eq!(got[2].kind, EventKind::End(SessionEnd { end_us: 5, reason: EndReason::Client }));
        assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    }
}
