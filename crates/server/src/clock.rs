//! The clock lease decisions and terminations are timed by: the store's, so that replicas
//! sharing a PostgreSQL store agree on them however far their own clocks drift apart. A
//! replica whose clock ran ahead would otherwise take connectors heard through the others for
//! silent, and end their live sessions.
//!
//! Read without asking the store each time: this process's clock plus the offset to the
//! store's, measured at start and every [`MEASURE_PERIOD`].

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use gatehouse_core::time::{Micros, now_micros};
use gatehouse_store::{Store, StoreError};

/// How often the offset is measured again: clocks drift by milliseconds a day, and a
/// stepped clock (an NTP correction) is followed within this long.
pub const MEASURE_PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct StoreClock {
    /// The store's clock minus this process's, in microseconds.
    offset: AtomicI64,
}

impl StoreClock {
    /// The store's time now.
    pub fn now(&self) -> Micros {
        now_micros().saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Measures the offset to the clock `read` reads: against the middle of the time the
    /// reading took, so a round trip's delay is halved.
    pub async fn measure<F>(&self, read: F) -> Result<Micros, StoreError>
    where
        F: Future<Output = Result<Micros, StoreError>>,
    {
        let before = now_micros();
        let theirs = read.await?;
        let after = now_micros();
        let offset = theirs - (before + (after - before) / 2);
        self.offset.store(offset, Ordering::Relaxed);
        Ok(offset)
    }

    /// Measures the offset to `store`'s clock every [`MEASURE_PERIOD`], the first time one
    /// period from now (the caller measured it at start); a failed measure keeps the last offset.
    pub async fn follow(&self, store: &dyn Store) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + MEASURE_PERIOD, MEASURE_PERIOD);
        let mut warned = false;
        loop {
            tick.tick().await;
            match self.measure(store.clock()).await {
                Ok(offset) => {
                    if offset.abs() > 1_000_000 && !warned {
                        tracing::warn!(
                            offset_ms = offset / 1000,
                            "this host's clock differs from the store's by over a second: leases and \
                             terminations follow the store's"
                        );
                    }
                    warned = offset.abs() > 1_000_000;
                }
                Err(err) => tracing::debug!(%err, "cannot read the store's clock; keeping the last offset"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_the_measured_clock_without_asking_it_again() {
        let clock = StoreClock::default();
        let ahead = 300_000_000;
        let offset = clock.measure(async { Ok(now_micros() + ahead) }).await.unwrap();
        assert!((ahead - 1_000..=ahead + 1_000).contains(&offset), "{offset}");
        let now = clock.now();
        assert!((now - now_micros() - ahead).abs() < 5_000, "{}", now - now_micros());

        // A failed measure keeps the offset.
        let failed = clock.measure(async { Err(StoreError::Invalid("down".into())) }).await;
        assert!(failed.is_err());
        assert!((clock.now() - now_micros() - ahead).abs() < 5_000);
    }
}
