//! Long statements, shown while they run.
//!
//! A statement is reported when it completes, with its duration and outcome. One that runs
//! for minutes would be missing from the transcript all that time, just when someone watching
//! a live session wants to see it. So each session's relay marks since when the database has
//! been on the statement it waits for, and a sweep on the control thread
//! ([`LiveSessions::announce_running`]) asks the relays whose statement has been on longer
//! than [`ANNOUNCE_AFTER`] to announce it: an
//! [`EventKind::Running`](crate::event::EventKind::Running) event, which its completed
//! statement replaces at the control plane.
//!
//! The relay pays, per batch of messages that can change the statement it waits for (a
//! client's while it waits for none, a server's while it does), a look at the front of its
//! recorder's queue, and a relaxed store when the statement changed; while one is marked, an
//! atomic load and a waker comparison each time its loop waits, as for its stop signal
//! (`stop.rs`). A statement that completes sooner costs no event and no wake-up.
//!
//! [`LiveSessions::announce_running`]: crate::live::LiveSessions::announce_running

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How long the database is on a statement before it is announced.
pub const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Shared {
    /// Since when (microseconds since the epoch) the database has been on the statement
    /// marked; 0 for none.
    since_us: AtomicI64,
    /// The `since_us` the sweep last asked about: an ask for a statement marked since then is
    /// no ask for this one.
    asked_us: AtomicI64,
    waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn waker(&self) -> MutexGuard<'_, Option<Waker>> {
        self.waker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The relay's side: marks what runs, and learns when to announce it. The live sessions keep
/// its [`Watcher`].
#[derive(Debug, Default)]
pub struct Watch {
    shared: Arc<Shared>,
    /// What `since_us` was last set to.
    marked_us: i64,
    /// The waker last left for the sweep: polled again by the same task, nothing to do.
    registered: Option<Waker>,
}

impl Watch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle the sweep asks through.
    pub fn watcher(&self) -> Watcher {
        Watcher { shared: Arc::clone(&self.shared) }
    }

    /// The database has been on a new statement since `since_us`; 0: on none.
    pub fn set(&mut self, since_us: i64) {
        self.marked_us = since_us;
        self.shared.since_us.store(since_us, Ordering::Relaxed);
    }

    /// Whether a statement is marked, not yet asked for.
    pub fn is_marked(&self) -> bool {
        self.marked_us > 0
    }

    /// Resolves when the sweep asks for the statement marked, which is then no longer marked.
    /// Cancel-safe.
    pub fn asked(&mut self) -> Asked<'_> {
        Asked { watch: self }
    }

    fn take_ask(&mut self) -> Poll<()> {
        if !self.is_marked() || self.shared.asked_us.load(Ordering::Acquire) != self.marked_us {
            return Poll::Pending;
        }
        self.set(0);
        Poll::Ready(())
    }
}

/// The task's waker is not kept alive, by a [`Watcher`] that outlives the relay, for nothing.
impl Drop for Watch {
    fn drop(&mut self) {
        if self.registered.is_some() {
            *self.shared.waker() = None;
        }
    }
}

/// The future [`Watch::asked`] returns.
#[derive(Debug)]
pub struct Asked<'a> {
    watch: &'a mut Watch,
}

impl Future for Asked<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let watch = &mut *self.watch;
        if watch.take_ask().is_ready() {
            return Poll::Ready(());
        }
        if watch.registered.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        *watch.shared.waker() = Some(waker.clone());
        watch.registered = Some(waker);
        // Asked between the load above and the registration: the wake-up went to the waker before.
        watch.take_ask()
    }
}

/// The sweep's side of a session's watch.
#[derive(Debug, Clone)]
pub struct Watcher {
    shared: Arc<Shared>,
}

impl Watcher {
    /// Asks the relay to announce its statement if the database has been on it since
    /// `before_us` or earlier, and it was not asked for it yet; says whether it asked.
    pub fn ask_if_running_since(&self, before_us: i64) -> bool {
        let since = self.shared.since_us.load(Ordering::Relaxed);
        if since <= 0 || since > before_us || self.shared.asked_us.load(Ordering::Relaxed) == since {
            return false;
        }
        self.shared.asked_us.store(since, Ordering::Release);
        if let Some(waker) = self.shared.waker().as_ref() {
            waker.wake_by_ref();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn only_a_statement_running_long_enough_is_asked_for_once() {
        let mut watch = Watch::new();
        let watcher = watch.watcher();
        assert!(!watcher.ask_if_running_since(100), "nothing runs");
        watch.set(50);
        assert!(!watcher.ask_if_running_since(49), "on it since after the cut-off");
        assert!(watch.asked().now_or_never().is_none());
        let waiting = tokio::spawn(async move {
            watch.asked().await;
            watch
        });
        tokio::task::yield_now().await;
        assert!(watcher.ask_if_running_since(50));
        assert!(!watcher.ask_if_running_since(50), "asked already");
        let mut watch = crate::timer::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
        assert!(!watch.is_marked() && watch.asked().now_or_never().is_none(), "one ask, one answer");
        assert!(!watcher.ask_if_running_since(i64::MAX), "announced: asked no more");
    }

    #[tokio::test]
    async fn an_ask_for_a_statement_since_completed_is_no_ask_for_the_next() {
        let mut watch = Watch::new();
        let watcher = watch.watcher();
        watch.set(50);
        assert!(watcher.ask_if_running_since(60));
        // The relay moved on before it polled: the next statement is not a second old.
        watch.set(70);
        assert!(watch.asked().now_or_never().is_none());
        assert!(watch.is_marked());
        assert!(watcher.ask_if_running_since(80));
        assert!(watch.asked().now_or_never().is_some());
    }
}
