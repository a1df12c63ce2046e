//! The live sessions of this connector, so that a termination requested at
//! the control plane reaches the connection task that owns the session.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Why and by whom a session is being ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The id of the termination request, named in the client's error.
    pub termination_id: String,
    pub reason: String,
}

/// Sessions by id. The connection task registers its session and waits on
/// the receiver alongside its relay; the report side calls [`LiveSessions::terminate`].
#[derive(Debug, Default)]
pub struct LiveSessions {
    sessions: Mutex<HashMap<String, oneshot::Sender<Termination>>>,
}

impl LiveSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a session; the receiver fires if it is terminated.
    pub fn register(&self, session_id: &str) -> oneshot::Receiver<Termination> {
        let (sender, receiver) = oneshot::channel();
        self.lock().insert(session_id.to_owned(), sender);
        receiver
    }

    /// Forgets a session that ended.
    pub fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    /// Asks the session's task to end it; false if it is not live here.
    pub fn terminate(&self, session_id: &str, termination: Termination) -> bool {
        match self.lock().remove(session_id) {
            Some(sender) => sender.send(termination).is_ok(),
            None => false,
        }
    }

    /// Ends every live session (connector shutdown).
    pub fn terminate_all(&self, termination: Termination) {
        for (_, sender) in self.lock().drain() {
            let _ = sender.send(termination.clone());
        }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Termination>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn termination_reaches_the_registered_session_once() {
        let live = LiveSessions::new();
        let receiver = live.register("s1");
        let t = Termination { termination_id: "t1".into(), reason: "by admin".into() };
        assert!(live.terminate("s1", t.clone()));
        assert_eq!(receiver.await.unwrap(), t);
        assert!(!live.terminate("s1", t), "a session ends once");
        assert!(live.is_empty());
    }
}
