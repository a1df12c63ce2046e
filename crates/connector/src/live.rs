//! The live sessions of this connector, so that a termination requested at
//! the control plane reaches the connection task that owns the session, and a
//! statement that runs long is announced while it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::event::now_us;
use crate::stop::{ANNOUNCE_AFTER, StopReason, Stopper};

/// Why and by whom a session is being ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The id of the termination request, named in the client's error.
    pub termination_id: String,
    pub reason: String,
}

/// Sessions by id. The connection task registers its session with the [`Stopper`] of its
/// signal, which its relay polls; the report side calls [`LiveSessions::terminate`], a sweep
/// [`LiveSessions::announce_running`].
#[derive(Debug, Default)]
pub struct LiveSessions {
    sessions: Mutex<HashMap<String, Stopper>>,
}

impl LiveSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a session: `stopper` stops its connection if it is terminated, and asks for
    /// its long statements.
    pub fn register(&self, session_id: &str, stopper: Stopper) {
        self.lock().insert(session_id.to_owned(), stopper);
    }

    /// Forgets a session that ended.
    pub fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    /// Asks the session's task to end it; false if it is not registered here or its connection
    /// was already stopped.
    pub fn terminate(&self, session_id: &str, termination: Termination) -> bool {
        let stopper = self.lock().remove(session_id);
        stopper.is_some_and(|stopper| stopper.stop(StopReason::Terminated(termination)))
    }

    /// Asks every session whose statement has run since `before_us` or earlier to announce it;
    /// returns how many were asked.
    pub fn announce_running(&self, before_us: i64) -> usize {
        self.lock().values().filter(|stopper| stopper.ask_to_announce(before_us)).count()
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stopper>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
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
        live.register("s1", stopper);
        let t = Termination { termination_id: "t1".into(), reason: "by admin".into() };
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
            live.register(id, stopper);
        }
        assert_eq!(live.announce_running(20), 1);
        assert_eq!(live.announce_running(30), 1, "the old one was asked already");
    }
}
