//! Guessed identity logins by client address. Past [`MAX_FAILURES`] in a [`WINDOW`], an
//! address's next logins are refused at once for the rest of the window, with the answer a
//! wrong token gets and without a call to the control plane: a client guessing tokens costs
//! the connector one answer, not a verification and two log lines each.
//!
//! Only guesses count (a token that is no token, a user that does not exist): a revoked or
//! expired token, or a disabled user, is a real credential a pool may retry quickly, and
//! counting it would lock out every identity behind the same NAT. An IPv6 client is counted by
//! its /64, which one machine usually holds whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may have in a window before its logins are refused unchecked.
pub const MAX_FAILURES: u32 = 20;
/// How long failures count.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Refusals of a throttled address logged in a window, as other refusals are (a real user's
/// login may be among them); past them, counted only, so that a guesser cannot fill the log.
pub const LOGGED_REFUSALS: u32 = 10;
/// Addresses kept at most; past it, all but the throttled ones are forgotten, and while
/// throttled ones alone fill it, new addresses are not counted (a flood of addresses must not
/// free the ones it holds back).
const MAX_ADDRESSES: usize = 10_000;

/// Whether the control plane's `denied_reason` says the login was a guess.
pub fn is_guess(reason: &str) -> bool {
    matches!(reason, "bad_token" | "unknown_user")
}

#[derive(Debug, Default)]
pub struct Throttle {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    since: Instant,
    failures: u32,
    /// Logins refused unchecked since the failures reached the limit.
    refused: u32,
}

impl Throttle {
    /// Whether a login from `ip` is refused unchecked now; if so, counts it and says how many
    /// were in this window, this one included.
    pub fn refuses(&self, ip: IpAddr, now: Instant) -> Option<u32> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.get_mut(&source(ip)).filter(|w| w.throttles(now))?;
        window.refused += 1;
        Some(window.refused)
    }

    /// Counts a guessed login from `ip`; true when this one reached the limit.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = source(ip);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&ip) {
            windows.retain(|_, w| w.throttles(now));
            if windows.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let window = windows.entry(ip).or_insert(Window { since: now, failures: 0, refused: 0 });
        if now >= window.since + WINDOW {
            *window = Window { since: now, failures: 0, refused: 0 };
        }
        window.failures += 1;
        window.failures == MAX_FAILURES
    }
}

impl Window {
    fn throttles(&self, now: Instant) -> bool {
        now < self.since + WINDOW && self.failures >= MAX_FAILURES
    }
}

/// What one client is counted as: its IPv4 address, or its IPv6 /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
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
            assert_eq!(throttle.refuses(guesser, start), None, "after {i}");
        }
        assert!(throttle.failed(guesser, start), "the limit is reached once");
        assert_eq!(throttle.refuses(guesser, start + WINDOW / 2), Some(1));
        assert_eq!(throttle.refuses(guesser, start + WINDOW / 2), Some(2), "counted");
        assert!(!throttle.failed(guesser, start + WINDOW / 2), "said once");
        assert_eq!(throttle.refuses(other, start), None, "others are not");
        assert_eq!(throttle.refuses(guesser, start + WINDOW), None, "the window ended");
        assert!(!throttle.failed(guesser, start + WINDOW), "a new window counts from one");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            throttle.failed(format!("2001:db8::{i:x}").parse().unwrap(), start);
        }
        assert!(throttle.refuses("2001:db8::ffff:1".parse().unwrap(), start).is_some());
        assert!(throttle.refuses("2001:db8:0:1::1".parse().unwrap(), start).is_none(), "another /64");
        assert_eq!(source("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_flood_of_addresses_never_frees_a_throttled_one() {
        let throttle = Throttle::default();
        let (guesser, start) = ("10.0.0.1".parse().unwrap(), Instant::now());
        for _ in 0..MAX_FAILURES {
            throttle.failed(guesser, start);
        }
        for i in 0..(2 * MAX_ADDRESSES as u32) {
            throttle.failed(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)), start);
        }
        assert!(throttle.refuses(guesser, start).is_some());
    }
}
