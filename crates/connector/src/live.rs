//! The live sessions of this connector, so that a termination requested at
//! the control plane reaches the connection task that owns the session, and a
//! statement that runs long is announced while it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::event::now_us;
use crate::identity::Access;
use crate::stop::{ANNOUNCE_AFTER, StopReason, Stopper};

/// Why and by whom a session is being ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Termination {
    /// An administrator's request at the control plane.
    Requested {
        /// The id of the termination request, named in the client's error.
        termination_id: String,
        reason: String,
    },
    /// The identity the session logged in as may no longer log in: why, for the client.
    AccessRevoked { why: String },
    /// The report spool is full and the connector does not fail open: the session's statements
    /// could not be recorded any more.
    SpoolFull,
}

impl Termination {
    /// The message of the client's FATAL error.
    pub fn client_message(&self) -> String {
        match self {
            Termination::Requested { termination_id, reason } => {
                let message = format!(
                    "terminating connection: session terminated by an administrator (termination {termination_id})"
                );
                if reason.is_empty() { message } else { format!("{message}: {reason}") }
            }
            Termination::AccessRevoked { why } => format!("terminating connection: access revoked: {why}"),
            Termination::SpoolFull => "terminating connection: Gatehouse cannot record this session any more: \
                 its report spool is full while the control plane does not take the backlog"
                .to_owned(),
        }
    }

    /// The SQLSTATE of the client's FATAL error: 57P01 (`admin_shutdown`) for a session an
    /// administrator or a revocation ended; 53100 (`disk_full`) for one a full spool ended,
    /// an exhausted resource, which a client or pool should not take for a server restart
    /// to reconnect to at once (new sessions are refused with 57P03 until there is room).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Termination::Requested { .. } | Termination::AccessRevoked { .. } => "57P01",
            Termination::SpoolFull => "53100",
        }
    }
}

/// A live session: what stops it, and for an identity login, what it logged in with.
#[derive(Debug)]
struct Live {
    stopper: Stopper,
    access: Option<Arc<Access>>,
}

/// Sessions by id. The connection task registers its session with the [`Stopper`] of its
/// signal, which its relay polls; the report side calls [`LiveSessions::terminate`], a sweep
/// [`LiveSessions::announce_running`], another [`LiveSessions::identities`] to check their
/// access again.
#[derive(Debug, Default)]
pub struct LiveSessions {
    sessions: Mutex<HashMap<String, Live>>,
}

impl LiveSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a session: `stopper` stops its connection if it is terminated, and asks for
    /// its long statements; `access`, for an identity login, is checked again while it lasts.
    pub fn register(&self, session_id: &str, stopper: Stopper, access: Option<Arc<Access>>) {
        self.lock().insert(session_id.to_owned(), Live { stopper, access });
    }

    /// Forgets a session that ended.
    pub fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    /// Asks the session's task to end it; false if it is not registered here or its connection
    /// was already stopped.
    pub fn terminate(&self, session_id: &str, termination: Termination) -> bool {
        let live = self.lock().remove(session_id);
        live.is_some_and(|live| live.stopper.stop(StopReason::Terminated(termination)))
    }

    /// Asks every live session's task to end it; returns how many were asked.
    pub fn terminate_all(&self, termination: &Termination) -> usize {
        let sessions = std::mem::take(&mut *self.lock());
        sessions.into_values().filter(|live| live.stopper.stop(StopReason::Terminated(termination.clone()))).count()
    }

    /// The sessions of identity logins, with what they logged in with.
    pub fn identities(&self) -> Vec<(String, Arc<Access>)> {
        let sessions = self.lock();
        sessions.iter().filter_map(|(id, live)| Some((id.clone(), Arc::clone(live.access.as_ref()?)))).collect()
    }

    /// Asks every session whose statement has run since `before_us` or earlier to announce it;
    /// returns how many were asked.
    pub fn announce_running(&self, before_us: i64) -> usize {
        self.lock().values().filter(|live| live.stopper.ask_to_announce(before_us)).count()
    }

    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        crate::lock(&self.sessions)
    }
}

/// Asks, every half of [`ANNOUNCE_AFTER`], the sessions whose statement has run that long to
/// announce it, until `stop`: a statement shows within about one and a half times that.
pub async fn announce_running(live: Arc<LiveSessions>, stop: CancellationToken) {
    let period = ANNOUNCE_AFTER / 2;
    let mut ticks = crate::timer::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {
                live.announce_running(now_us() - ANNOUNCE_AFTER.as_micros() as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn termination_reaches_the_registered_session_once() {
        let live = LiveSessions::new();
        let (stopper, stop) = crate::stop::signal();
        live.register("s1", stopper, None);
        let t = Termination::Requested { termination_id: "t1".into(), reason: "by admin".into() };
        assert!(live.terminate("s1", t.clone()));
        assert_eq!(stop.await, StopReason::Terminated(t.clone()));
        assert!(!live.terminate("s1", t), "a session ends once");
        assert!(live.is_empty());
    }

    #[test]
    fn only_sessions_running_a_statement_long_enough_are_asked_to_announce_it() {
        let live = LiveSessions::new();
        for (id, since) in [("idle", 0), ("old", 10), ("new", 30)] {
            let stopper = crate::stop::signal().0;
            stopper.set_running_since(since);
            live.register(id, stopper, None);
        }
        assert_eq!(live.announce_running(20), 1);
        assert_eq!(live.announce_running(30), 1, "the old one was asked already");
    }
}
