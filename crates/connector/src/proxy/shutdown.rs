//! A listener's shutdown, as its connections see it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::event::now_us;

/// The shutdown signal of one listener, and the moment it was first seen, which is the end
/// time of every session it ends.
///
/// Each connection holds a oneshot receiver of its own rather than a wait on a shared
/// `CancellationToken`: the relay polls its stop signal on every turn of its loop, and a
/// receiver's poll is an atomic load where a token's wait takes a lock.
#[derive(Default)]
pub(crate) struct Shutdown {
    at: OnceLock<i64>,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_id: u64,
    senders: HashMap<u64, oneshot::Sender<()>>,
    fired: bool,
}

impl Shutdown {
    /// The shutdown moment, fixed by whoever asks first.
    pub(crate) fn at(&self) -> i64 {
        *self.at.get_or_init(now_us)
    }

    /// A signal that resolves once the listener shuts down (at once if it already has).
    pub(crate) fn subscribe(self: &Arc<Self>) -> Stop {
        let (sender, receiver) = oneshot::channel();
        let mut waiting = self.lock();
        let id = waiting.next_id;
        waiting.next_id += 1;
        if waiting.fired {
            let _ = sender.send(());
        } else {
            waiting.senders.insert(id, sender);
        }
        Stop { shutdown: Arc::clone(self), id, receiver }
    }

    /// Fixes the shutdown moment and resolves every connection's [`Stop`].
    pub(crate) fn fire(&self) {
        self.at();
        let mut waiting = self.lock();
        waiting.fired = true;
        for (_, sender) in waiting.senders.drain() {
            let _ = sender.send(());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One connection's view of [`Shutdown`]: a future that resolves when the listener shuts down.
pub(crate) struct Stop {
    shutdown: Arc<Shutdown>,
    id: u64,
    receiver: oneshot::Receiver<()>,
}

impl Stop {
    /// The shutdown moment, once it resolved.
    pub(crate) fn at(&self) -> i64 {
        self.shutdown.at()
    }
}

impl Future for Stop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The sender is only dropped once sent: either way, the listener shut down.
        Pin::new(&mut self.receiver).poll(cx).map(drop)
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.shutdown.lock().senders.remove(&self.id);
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
        assert_eq!(shutdown.lock().senders.len(), 1, "a dropped stop is forgotten");
        shutdown.fire();
        early.await;
        shutdown.subscribe().await;
        assert!(shutdown.lock().senders.is_empty());
    }
}
