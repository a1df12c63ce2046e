//! Why a connection stops, as its task learns it: one signal per connection, fired by its
//! listener's shutdown or by an administrator's termination, whichever comes first.
//!
//! The same signal carries the one thing the task is asked without being stopped: to announce
//! the statement its database has been on for a while ([`Signal::AnnounceRunning`]). A
//! statement is reported when it completes, so one that runs for minutes would be missing
//! from the transcript all that time, just when someone watching the session wants to see it.
//! The relay marks since when its database has been on a statement
//! ([`Stopper::set_running_since`]), and a sweep on the control thread
//! ([`crate::live::LiveSessions::announce_running`]) asks those on one for longer than
//! [`ANNOUNCE_AFTER`] ([`Stopper::ask_to_announce`]).
//!
//! The relay polls its signal on every turn of its loop, so until something happens a poll is
//! an atomic load and a comparison of wakers. A `tokio::sync::oneshot` receiver, which this
//! replaces (one for the shutdown, one for the termination), also spends the task's
//! cooperative budget and touches the channel's waker on each poll; a future of its own for
//! the asks cost the relay about 120 instructions per transaction more than riding on this
//! signal. Marking costs the relay, per batch of messages that can change its statement (a
//! client's while it waits for none, a server's while it does), a look at the front of its
//! recorder's queue and a relaxed store when the statement changed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::live::Termination;

/// How long the database is on a statement before it is announced.
pub const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);

/// Why a connection must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Its listener shut down, at this moment (microseconds since the epoch): the end time
    /// of every session the shutdown ends.
    Shutdown { at_us: i64 },
    /// An administrator terminated its session.
    Terminated(Termination),
}

/// What a connection's task learns from its signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Stop, once.
    Stop(StopReason),
    /// Announce the statement marked with [`Stopper::set_running_since`], which is then no
    /// longer marked.
    AnnounceRunning,
}

/// A new signal: the [`Stopper`] fires the [`Stop`].
pub fn signal() -> (Stopper, Stop) {
    let shared = Arc::new(Shared::default());
    (Stopper { shared: Arc::clone(&shared) }, Stop { shared, registered: None, stopped: false })
}

/// Set in `Shared::flags`, under the lock, with `state.reason`, and never cleared: a reason
/// that is gone while this is set was handed out.
const FIRED: u8 = 1;
/// Set in `Shared::flags`, under the lock, when the sweep asks for an announcement; cleared
/// by the poll that sees it.
const ASKED: u8 = 2;

#[derive(Debug, Default)]
struct Shared {
    /// [`FIRED`] and [`ASKED`]: read without the lock on every poll.
    flags: AtomicU8,
    state: Mutex<State>,
    /// Since when (microseconds since the epoch) the database has been on the statement
    /// marked; 0 for none.
    running_since_us: AtomicI64,
    /// The `running_since_us` last asked about: an ask about a statement since replaced is
    /// no ask about the next.
    asked_us: AtomicI64,
}

#[derive(Debug, Default)]
struct State {
    reason: Option<StopReason>,
    /// Whom to wake when the signal fires or an announcement is asked for.
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// Sets `flag` and wakes the task.
    fn raise(&self, state: MutexGuard<'_, State>, flag: u8) {
        self.flags.fetch_or(flag, Ordering::Release);
        let waker = state.waker.clone();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Fires a connection's [`Stop`], and asks it for announcements; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    /// Stops the connection for `reason`. False if it was already stopped, for another
    /// reason or the same: the first one wins.
    pub fn stop(&self, reason: StopReason) -> bool {
        let mut state = self.shared.lock();
        if self.shared.flags.load(Ordering::Acquire) & FIRED != 0 {
            return false;
        }
        state.reason = Some(reason);
        self.shared.raise(state, FIRED);
        true
    }

    /// The relay's side: its database has been on a new statement since `since_us`; 0: on
    /// none.
    pub fn set_running_since(&self, since_us: i64) {
        self.shared.running_since_us.store(since_us, Ordering::Relaxed);
    }

    /// The sweep's side: asks the task to announce its statement if the database has been on
    /// it since `before_us` or earlier, and it was not asked about it yet; says whether it
    /// asked. One sweep at a time (the live sessions' lock), so the read and the store of
    /// `asked_us` need not be one operation.
    pub fn ask_to_announce(&self, before_us: i64) -> bool {
        let since = self.shared.running_since_us.load(Ordering::Relaxed);
        if since <= 0 || since > before_us || self.shared.asked_us.load(Ordering::Relaxed) == since {
            return false;
        }
        self.shared.asked_us.store(since, Ordering::Relaxed);
        let state = self.shared.lock();
        self.shared.raise(state, ASKED);
        true
    }
}

/// A connection's signal: as a future, it resolves once with the reason its connection must
/// stop (polled again after that, it stays pending); [`Stop::poll_signal`] also hands out the
/// asks for announcements.
#[derive(Debug)]
pub struct Stop {
    shared: Arc<Shared>,
    /// The waker last left with the [`Stopper`]: polled again by the same task, nothing to do.
    registered: Option<Waker>,
    /// The reason was handed out: nothing more to hand out.
    stopped: bool,
}

impl Stop {
    /// A handle that fires this signal.
    pub fn stopper(&self) -> Stopper {
        Stopper { shared: Arc::clone(&self.shared) }
    }

    /// The next signal. Cancel-safe.
    pub fn poll_signal(&mut self, cx: &mut Context<'_>) -> Poll<Signal> {
        self.poll_with(cx, Self::take)
    }

    /// What `take` hands out, waiting for it with the task's waker left with the [`Stopper`].
    fn poll_with<T>(&mut self, cx: &mut Context<'_>, take: fn(&mut Self) -> Poll<T>) -> Poll<T> {
        if let Poll::Ready(signal) = take(self) {
            return Poll::Ready(signal);
        }
        if self.registered.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        self.shared.lock().waker = Some(waker.clone());
        self.registered = Some(waker);
        // Raised between the load and the registration: the wake-up went to the waker before.
        take(self)
    }

    /// What the flags say, handed out.
    fn take(&mut self) -> Poll<Signal> {
        let flags = self.shared.flags.load(Ordering::Acquire);
        if flags == 0 {
            return Poll::Pending;
        }
        if flags & FIRED != 0 {
            return self.take_stop().map(Signal::Stop);
        }
        self.shared.flags.fetch_and(!ASKED, Ordering::AcqRel);
        let since = self.shared.running_since_us.load(Ordering::Relaxed);
        if since == 0 || self.shared.asked_us.load(Ordering::Relaxed) != since {
            // Asked about a statement since replaced.
            return Poll::Pending;
        }
        self.shared.running_since_us.store(0, Ordering::Relaxed);
        Poll::Ready(Signal::AnnounceRunning)
    }

    /// The reason, once; handed out already, it stays pending, as a finished signal should.
    /// Asks are left for [`Stop::poll_signal`].
    fn take_stop(&mut self) -> Poll<StopReason> {
        if self.stopped || self.shared.flags.load(Ordering::Acquire) & FIRED == 0 {
            return Poll::Pending;
        }
        let reason = self.shared.lock().reason.take();
        self.stopped = reason.is_some();
        reason.map_or(Poll::Pending, Poll::Ready)
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

/// The stop alone: asks for announcements are left for [`Stop::poll_signal`].
impl Future for Stop {
    type Output = StopReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<StopReason> {
        self.poll_with(cx, Self::take_stop)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn terminated(id: &str) -> StopReason {
        StopReason::Terminated(Termination::Requested { termination_id: id.into(), reason: String::new() })
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

    #[tokio::test]
    async fn only_a_statement_running_long_enough_is_asked_about_once() {
        let (stopper, mut stop) = signal();
        let next = |stop: &mut Stop| futures::future::poll_fn(|cx| stop.poll_signal(cx)).now_or_never();
        assert!(!stopper.ask_to_announce(100), "nothing runs");
        stopper.set_running_since(50);
        assert!(!stopper.ask_to_announce(49), "on it since after the cut-off");
        assert_eq!(next(&mut stop), None);
        let waiting = tokio::spawn(async move {
            let signal = futures::future::poll_fn(|cx| stop.poll_signal(cx)).await;
            (signal, stop)
        });
        tokio::task::yield_now().await;
        assert!(stopper.ask_to_announce(50));
        assert!(!stopper.ask_to_announce(50), "asked already");
        let woken = crate::timer::timeout(std::time::Duration::from_secs(5), waiting).await.expect("woken");
        let (signal, mut stop) = woken.unwrap();
        assert_eq!(signal, Signal::AnnounceRunning);
        assert_eq!(next(&mut stop), None, "one ask, one answer");
        assert!(!stopper.ask_to_announce(i64::MAX), "announced: asked no more");
        // An ask about a statement since replaced is no ask about the next.
        stopper.set_running_since(60);
        assert!(stopper.ask_to_announce(70));
        stopper.set_running_since(80);
        assert_eq!(next(&mut stop), None);
        assert!(stopper.ask_to_announce(90));
        assert_eq!(next(&mut stop), Some(Signal::AnnounceRunning));
        // Awaited for its stop alone, the signal leaves an ask for the relay.
        stopper.set_running_since(100);
        assert!(stopper.ask_to_announce(100));
        assert_eq!((&mut stop).now_or_never(), None);
        assert_eq!(next(&mut stop), Some(Signal::AnnounceRunning));
        // A stop still comes, once, whatever was asked.
        stopper.set_running_since(110);
        assert!(stopper.ask_to_announce(110));
        assert!(stopper.stop(terminated("t")));
        assert_eq!(next(&mut stop), Some(Signal::Stop(terminated("t"))));
        assert_eq!(next(&mut stop), None);
        assert_eq!((&mut stop).now_or_never(), None);
    }
}
