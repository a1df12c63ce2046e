//! Long statements, shown while they run.
//!
//! A statement is reported when it completes, with its duration and outcome. One that runs
//! for minutes would be missing from the transcript all that time, just when someone watching
//! a live session wants to see it. So each session's relay marks the start of the statement
//! the database is running, and a sweep on the control thread ([`LiveSessions::announce_running`])
//! asks the relays whose statement has run longer than [`ANNOUNCE_AFTER`] to announce it: an
//! [`EventKind::Running`](crate::event::EventKind::Running) event, which its completed
//! statement replaces at the control plane.
//!
//! The relay pays two relaxed stores per statement (its start, then none); a statement that
//! completes sooner costs no event and no wake-up.
//!
//! [`LiveSessions::announce_running`]: crate::live::LiveSessions::announce_running

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;

/// How long a statement runs before it is announced.
pub const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Shared {
    /// The start of the statement running and not announced yet, microseconds since the
    /// epoch; 0 for none.
    since_us: AtomicI64,
    asked: AtomicBool,
    waker: AtomicWaker,
}

/// The relay's side: marks what runs, and learns when to announce it. The live sessions keep
/// its [`Watcher`].
#[derive(Debug, Default)]
pub struct Watch {
    shared: Arc<Shared>,
}

impl Watch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle the sweep asks through.
    pub fn watcher(&self) -> Watcher {
        Watcher { shared: Arc::clone(&self.shared) }
    }

    /// A statement that started at `since_us` is running, not announced; 0: none is.
    pub fn set(&self, since_us: i64) {
        self.shared.since_us.store(since_us, Ordering::Relaxed);
    }

    /// Resolves when the statement marked should be announced. Cancel-safe.
    pub fn asked(&self) -> Asked<'_> {
        Asked { shared: &self.shared }
    }
}

/// The future [`Watch::asked`] returns.
#[derive(Debug)]
pub struct Asked<'a> {
    shared: &'a Shared,
}

impl Future for Asked<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.asked.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.shared.waker.register(cx.waker());
        // Asked between the swap and the registration: the wake-up went to the waker before.
        match self.shared.asked.swap(false, Ordering::Acquire) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

/// The sweep's side of a session's watch.
#[derive(Debug, Clone)]
pub struct Watcher {
    shared: Arc<Shared>,
}

impl Watcher {
    /// Asks the relay to announce its statement if it has run since before `before_us`; says
    /// whether it asked.
    pub fn ask_if_running_since(&self, before_us: i64) -> bool {
        let since = self.shared.since_us.load(Ordering::Relaxed);
        if since <= 0 || since > before_us {
            return false;
        }
        self.shared.asked.store(true, Ordering::Release);
        self.shared.waker.wake();
        true
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn only_a_statement_running_long_enough_is_asked_for() {
        let watch = Watch::new();
        let watcher = watch.watcher();
        assert!(!watcher.ask_if_running_since(100), "nothing runs");
        watch.set(50);
        assert!(!watcher.ask_if_running_since(49), "started after the cut-off");
        assert!(watch.asked().now_or_never().is_none());
        let waiting = tokio::spawn(async move {
            watch.asked().await;
            watch
        });
        tokio::task::yield_now().await;
        assert!(watcher.ask_if_running_since(50));
        let watch = crate::timer::timeout(Duration::from_secs(5), waiting).await.expect("woken").unwrap();
        assert!(watch.asked().now_or_never().is_none(), "one request, one answer");
        watch.set(0);
        assert!(!watcher.ask_if_running_since(i64::MAX), "announced: asked no more");
    }
}
