//! The live sessions of this connector, so that a termination requested at
//! the control plane reaches the connection task that owns the session.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::stop::{StopReason, Stopper};

/// Why and by whom a session is being ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The id of the termination request, named in the client's error.
    pub termination_id: String,
    pub reason: String,
}

/// Sessions by id. The connection task registers its session with the [`Stopper`] of its
/// stop signal, which its relay polls; the report side calls [`LiveSessions::terminate`].
#[derive(Debug, Default)]
pub struct LiveSessions {
    sessions: Mutex<HashMap<String, Stopper>>,
}

impl LiveSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a session: `stopper` stops its connection if it is terminated.
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
}
