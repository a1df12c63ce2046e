//! Failed identity logins by client address. Past [`MAX_FAILURES`] in a [`WINDOW`], an
//! address's next logins are refused at once for the rest of the window, with the answer a
//! wrong token gets and without a call to the control plane: a client guessing tokens costs
//! the connector one answer, not a verification and two log lines each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may have in a window before its logins are refused unchecked.
pub const MAX_FAILURES: u32 = 20;
/// How long failures count.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses kept at most; past it, windows that ended are forgotten, then all.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Default)]
pub struct Throttle {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    since: Instant,
    failures: u32,
}

impl Throttle {
    /// Whether logins from `ip` are refused unchecked now.
    pub fn is_throttled(&self, ip: IpAddr, now: Instant) -> bool {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.get(&ip).is_some_and(|w| now < w.since + WINDOW && w.failures >= MAX_FAILURES)
    }

    /// Counts a failed login from `ip`; true when this one reached the limit.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&ip) {
            windows.retain(|_, w| now < w.since + WINDOW);
            if windows.len() >= MAX_ADDRESSES {
                windows.clear();
            }
        }
        let window = windows.entry(ip).or_insert(Window { since: now, failures: 0 });
        if now >= window.since + WINDOW {
            *window = Window { since: now, failures: 0 };
        }
        window.failures += 1;
        window.failures == MAX_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_past_its_failures_until_its_window_ends() {
        let throttle = Throttle::default();
        let (guesser, other) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for i in 1..MAX_FAILURES {
            assert!(!throttle.failed(guesser, start));
            assert!(!throttle.is_throttled(guesser, start), "after {i}");
        }
        assert!(throttle.failed(guesser, start), "the limit is reached once");
        assert!(throttle.is_throttled(guesser, start + WINDOW / 2));
        assert!(!throttle.failed(guesser, start + WINDOW / 2), "said once");
        assert!(!throttle.is_throttled(other, start), "others are not");
        assert!(!throttle.is_throttled(guesser, start + WINDOW), "the window ended");
        assert!(!throttle.failed(guesser, start + WINDOW), "a new window counts from one");
    }
}
