//! A listener's shutdown, as its connections see it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use crate::event::now_us;
use crate::stop::{self, Signal, StopReason, Stopper};

/// The shutdown of one listener, and the moment it was first seen, which is the end time of
/// every session it ends. It fires the stop signal of each of the listener's connections.
#[derive(Default)]
pub(crate) struct Shutdown {
    /// Set when the shutdown fires.
    at: OnceLock<i64>,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_id: u64,
    stoppers: HashMap<u64, Stopper>,
}

impl Shutdown {
    /// The shutdown moment, fixed by whoever asks first.
    fn at(&self) -> i64 {
        *self.at.get_or_init(now_us)
    }

    /// A connection's stop signal, fired by this shutdown (at once if it already happened)
    /// or by the termination of the connection's session.
    pub(crate) fn subscribe(self: &Arc<Self>) -> ConnectionStop {
        let (stopper, signal) = stop::signal();
        let mut waiting = self.lock();
        let id = waiting.next_id;
        waiting.next_id += 1;
        // Under the lock: `fire` sets the moment before it takes the stoppers, so a signal is
        // either fired here or taken there.
        if let Some(&at_us) = self.at.get() {
            stopper.stop(StopReason::Shutdown { at_us });
        } else {
            waiting.stoppers.insert(id, stopper);
        }
        ConnectionStop { shutdown: Arc::clone(self), id, signal }
    }

    /// Fixes the shutdown moment and stops every connection.
    pub(crate) fn fire(&self) {
        let at_us = self.at();
        let stoppers: Vec<Stopper> = self.lock().stoppers.drain().map(|(_, stopper)| stopper).collect();
        // Outside the lock: each connection that ends takes it to forget its stop.
        for stopper in stoppers {
            stopper.stop(StopReason::Shutdown { at_us });
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        crate::lock(&self.waiting)
    }
}

/// One connection's stop signal, forgotten by its listener when dropped.
pub(crate) struct ConnectionStop {
    shutdown: Arc<Shutdown>,
    id: u64,
    signal: stop::Stop,
}

impl ConnectionStop {
    /// A handle that stops this connection, for its session's termination.
    pub(crate) fn stopper(&self) -> Stopper {
        self.signal.stopper()
    }

    /// The next signal, asks for announcements included. Cancel-safe.
    pub(crate) fn signal(&mut self) -> impl Future<Output = Signal> + '_ {
        std::future::poll_fn(|cx| self.signal.poll_signal(cx))
    }
}

impl Future for ConnectionStop {
    type Output = StopReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<StopReason> {
        Pin::new(&mut self.signal).poll(cx)
    }
}

impl Drop for ConnectionStop {
    fn drop(&mut self) {
        self.shutdown.lock().stoppers.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn stops_resolve_on_fire_and_after_it() {
        let shutdown = Arc::new(Shutdown::default());
        let mut early = shutdown.subscribe();
        let left = shutdown.subscribe();
        drop(left);
        assert!((&mut early).now_or_never().is_none());
        assert_eq!(shutdown.lock().stoppers.len(), 1, "a dropped stop is forgotten");
        shutdown.fire();
        let at_us = shutdown.at();
        assert_eq!(early.await, StopReason::Shutdown { at_us });
        assert_eq!(shutdown.subscribe().await, StopReason::Shutdown { at_us }, "one moment for all");
        assert!(shutdown.lock().stoppers.is_empty());
    }
}
