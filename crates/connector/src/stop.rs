//! Why a connection stops, as its task learns it: one signal per connection, fired by its
//! listener's shutdown or by an administrator's termination, whichever comes first.
//!
//! The relay polls its signal on every turn of its loop, so until the signal fires a poll is
//! an atomic load and a comparison of wakers. A `tokio::sync::oneshot` receiver, which this
//! replaces (one for the shutdown, one for the termination), also spends the task's
//! cooperative budget and touches the channel's waker on each poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::live::Termination;

/// Why a connection must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Its listener shut down, at this moment (microseconds since the epoch): the end time
    /// of every session the shutdown ends.
    Shutdown { at_us: i64 },
    /// An administrator terminated its session.
    Terminated(Termination),
}

/// A new signal: the [`Stopper`] fires the [`Stop`].
pub fn signal() -> (Stopper, Stop) {
    let shared = Arc::new(Shared::default());
    (Stopper { shared: Arc::clone(&shared) }, Stop { shared, registered: None })
}

#[derive(Debug, Default)]
struct Shared {
    /// Set, under the lock, with `state.reason`, and never cleared: a reason that is gone while
    /// this is set was handed out. Read without the lock on every poll.
    fired: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    reason: Option<StopReason>,
    /// Whom to wake when the signal fires.
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

/// Fires a connection's [`Stop`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    /// Stops the connection for `reason`. False if it was already stopped, for another
    /// reason or the same: the first one wins.
    pub fn stop(&self, reason: StopReason) -> bool {
        let waker = {
            let mut state = self.shared.lock();
            if self.shared.fired() {
                return false;
            }
            state.reason = Some(reason);
            self.shared.fired.store(true, Ordering::Release);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

/// A future that resolves, once, with the reason its connection must stop (polled again after
/// that, it stays pending).
#[derive(Debug)]
pub struct Stop {
    shared: Arc<Shared>,
    /// The waker last left with the [`Stopper`]: polled again by the same task, nothing to do.
    registered: Option<Waker>,
}

impl Stop {
    /// A handle that fires this signal.
    pub fn stopper(&self) -> Stopper {
        Stopper { shared: Arc::clone(&self.shared) }
    }

    /// The reason, once; handed out already, it stays pending, as a finished signal should.
    fn take(&self) -> Poll<StopReason> {
        self.shared.lock().reason.take().map_or(Poll::Pending, Poll::Ready)
    }
}

/// The task's waker is not kept alive, by a [`Stopper`] that outlives the signal, for nothing.
impl Drop for Stop {
    fn drop(&mut self) {
        if self.registered.is_some() {
            self.shared.lock().waker = None;
        }
    }
}

impl Future for Stop {
    type Output = StopReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<StopReason> {
        if self.shared.fired() {
            return self.take();
        }
        if self.registered.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        {
            let mut state = self.shared.lock();
            // Fired between the load above and the lock: the waker would never be woken.
            if self.shared.fired() {
                drop(state);
                return self.take();
            }
            state.waker = Some(waker.clone());
        }
        self.registered = Some(waker);
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn terminated(id: &str) -> StopReason {
        StopReason::Terminated(Termination { termination_id: id.into(), reason: String::new() })
    }

    #[tokio::test]
    async fn the_first_reason_wins_and_is_handed_out_once() {
        let (stopper, mut stop) = signal();
        assert!((&mut stop).now_or_never().is_none());
        let waiting = tokio::spawn(async move {
            let reason = (&mut stop).await;
            (reason, stop)
        });
        tokio::task::yield_now().await;
        assert!(stopper.stop(terminated("t1")));
        assert!(!stopper.clone().stop(StopReason::Shutdown { at_us: 1 }), "already stopped");
        let (reason, mut stop) = waiting.await.unwrap();
        assert_eq!(reason, terminated("t1"));
        assert!((&mut stop).now_or_never().is_none(), "resolves once");
        assert!(!stopper.stop(terminated("t2")));
    }

    #[tokio::test]
    async fn a_signal_fired_before_its_first_poll_resolves_at_once() {
        let (stopper, stop) = signal();
        assert!(stopper.stop(StopReason::Shutdown { at_us: 7 }));
        assert_eq!(stop.now_or_never(), Some(StopReason::Shutdown { at_us: 7 }));
    }

    #[tokio::test]
    async fn a_poll_by_another_task_moves_the_wake_up_there() {
        let (stopper, mut stop) = signal();
        assert!((&mut stop).now_or_never().is_none(), "registers a no-op waker");
        let waiting = tokio::spawn(stop);
        tokio::task::yield_now().await;
        stopper.stop(terminated("t"));
        let reason = crate::timer::timeout(std::time::Duration::from_secs(5), waiting).await.expect("woken").unwrap();
        assert_eq!(reason, terminated("t"));
    }
}
