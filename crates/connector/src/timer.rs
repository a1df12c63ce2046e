//! The connector's timers, kept by a thread of their own ("gatehouse-timers").
//!
//! The relay's runtime is built without tokio's time driver (see `gatehouse connector`): with
//! one, each time the runtime parks, twice per relayed transaction, it locks the timer wheel,
//! scans it and reads the clock, due timer or not: about 800 of the connector's 10,450
//! instructions for a select-only transaction. Its few timeouts (a login's, a connect's, the
//! last flush of a session) are instead registered here, on a runtime that does nothing else
//! and lives as long as the process; when one fires, its task is woken on its own runtime.
//! Every timer in this crate comes from here (clippy refuses `tokio::time`'s), so the crate
//! runs on a runtime with or without a time driver.

use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, Interval, Sleep, Timeout};

static TIMERS: OnceLock<Handle> = OnceLock::new();

/// Starts the timer thread, unless it runs already.
///
/// # Errors
///
/// The thread or its runtime could not be created.
pub fn start() -> std::io::Result<&'static Handle> {
    if let Some(handle) = TIMERS.get() {
        return Ok(handle);
    }
    let (started, handle) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("gatehouse-timers".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(runtime) => {
                _ = started.send(Ok(runtime.handle().clone()));
                runtime.block_on(std::future::pending::<()>());
            }
            Err(error) => _ = started.send(Err(error)),
        }
    })?;
    let handle = handle.recv().map_err(|_| std::io::Error::other("the timer thread ended as it started"))??;
    // Two callers racing here each start a thread; the loser's stays idle.
    Ok(TIMERS.get_or_init(|| handle))
}

fn timers() -> &'static Handle {
    start().expect("the timer thread starts (connector::runtime::run starts it before anything else)")
}

/// [`tokio::time::timeout`], on the timer thread.
#[allow(clippy::disallowed_methods)]
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    let _timers = timers().enter();
    tokio::time::timeout(duration, future)
}

/// [`tokio::time::timeout_at`], on the timer thread.
#[allow(clippy::disallowed_methods)]
pub fn timeout_at<F: IntoFuture>(deadline: Instant, future: F) -> Timeout<F::IntoFuture> {
    let _timers = timers().enter();
    tokio::time::timeout_at(deadline, future)
}

/// [`tokio::time::sleep`], on the timer thread.
#[allow(clippy::disallowed_methods)]
pub fn sleep(duration: Duration) -> Sleep {
    let _timers = timers().enter();
    tokio::time::sleep(duration)
}

/// [`tokio::time::sleep_until`], on the timer thread.
#[allow(clippy::disallowed_methods)]
pub fn sleep_until(deadline: Instant) -> Sleep {
    let _timers = timers().enter();
    tokio::time::sleep_until(deadline)
}

/// [`tokio::time::interval_at`], on the timer thread.
#[allow(clippy::disallowed_methods)]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    let _timers = timers().enter();
    tokio::time::interval_at(start, period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_on_a_runtime_without_a_time_driver() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        runtime.block_on(async {
            let started = Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(started.elapsed() >= Duration::from_millis(20));
            assert!(timeout(Duration::from_millis(10), std::future::pending::<()>()).await.is_err());
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
        });
    }
}
