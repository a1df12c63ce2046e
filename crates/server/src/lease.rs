//! The lease sweep: the sessions of connector runs unheard for longer than the lease are
//! completed, unless the store may be why they went unheard.
//!
//! A heartbeat the store could not record leaves its run looking silent. So the sweep holds
//! off for a whole lease after any failure that could have lost one, as it does after the
//! process starts (nothing was recorded while it was down): by then every live connector has
//! been heard again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_store::{Store, StoreError};

use crate::clock::StoreClock;
use crate::metrics::Metrics;

/// When the store last failed in a way that may have lost a heartbeat, by this process's
/// monotonic clock. Starts at its creation: a process just started has recorded nothing yet.
#[derive(Debug)]
pub struct StoreFailures {
    last: Mutex<Instant>,
}

impl Default for StoreFailures {
    fn default() -> Self {
        Self { last: Mutex::new(Instant::now()) }
    }
}

impl StoreFailures {
    /// The store failed now.
    pub fn mark(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Marks `error` when it may have lost what was being recorded: the store could not be
    /// reached, or could not finish in time. A refusal of what was asked (an invalid value, a
    /// conflict) says the store answered, and one a connector can cause at will must not hold
    /// off every other connector's lease.
    pub fn note(&self, error: &StoreError) {
        if matches!(error, StoreError::Unavailable(_) | StoreError::TimedOut(_)) {
            self.mark();
        }
    }

    /// How long since the store last failed.
    fn since(&self) -> Duration {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }
}

/// Completes the sessions of connector runs unheard for longer than `lease`, once the store
/// has answered for at least a lease since it last failed (see [`StoreFailures`]). Every
/// replica runs this; a store shared by replicas lets one sweep at a time, and the others skip
/// their turn.
pub async fn sweep(
    store: Arc<dyn Store>,
    lease: Duration,
    clock: Arc<StoreClock>,
    metrics: Arc<Metrics>,
    failures: Arc<StoreFailures>,
) {
    let mut tick = tokio::time::interval((lease / 6).max(Duration::from_millis(100)));
    // From start, the sweep holds off; it says so only when a failure makes it hold again.
    let mut holding = true;
    loop {
        tick.tick().await;
        if failures.since() < lease {
            if !holding {
                tracing::warn!(
                    ?lease,
                    "the store failed, so heartbeats may have gone unrecorded: no connector's lease runs out \
                     until the store has answered for a whole lease"
                );
                holding = true;
            }
            // A store still down keeps the sweep holding off, whether or not connectors call.
            if !matches!(tokio::time::timeout(crate::HEALTH_TIMEOUT, store.ping()).await, Ok(Ok(()))) {
                failures.mark();
            }
            continue;
        }
        holding = false;
        let heard_before = clock.now() - lease.as_micros() as i64;
        match store.expire_connectors(heard_before).await {
            Ok(0) => {}
            Ok(completed) => {
                Metrics::add(&metrics.lease_sessions_completed_total, completed);
                tracing::info!(completed, "completed sessions of connectors past their lease")
            }
            Err(err) => {
                // Whatever stopped the sweep's own statement, which nothing a connector sends
                // shapes, may be stopping heartbeats too: an error the store gives for an outage
                // need not look like one (a role whose CONNECT was revoked is refused with a
                // privilege error). Holding off costs nothing, since this pass completed nothing.
                failures.mark();
                tracing::warn!(%err, "lease sweep failed; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_that_may_have_lost_a_heartbeat_hold_the_sweep_off() {
        let failures = StoreFailures { last: Mutex::new(Instant::now() - Duration::from_secs(60)) };
        failures.note(&StoreError::Invalid("a NUL in a run id".into()));
        failures.note(&StoreError::Conflict("no such connector".into()));
        assert!(failures.since() >= Duration::from_secs(60), "the store answered");
        failures.note(&StoreError::Unavailable(sqlx::Error::PoolTimedOut));
        assert!(failures.since() < Duration::from_secs(1));
    }
}
