//! Guessed identity logins by client address. With [`MAX_FAILURES`] in the last [`WINDOW`]
//! (a window that slides: no moment resets the count), an address's next logins are refused
//! at once until the oldest of them is a window old, with the answer a wrong token gets and
//! without a call to the control plane: a client guessing tokens costs the connector one
//! answer, not a verification and two log lines each.
//!
//! Only guesses count (a token that is no token, a user that does not exist): a revoked or
//! expired token, or a disabled user, is a real credential a pool may retry quickly, and
//! counting it would lock out every identity behind the same NAT. An IPv6 client is counted by
//! its /64, which one machine usually holds whole.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

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
    /// Wakes the logins waiting for checks under way to end.
    checked: Notify,
    /// Keys the hashes of guesses, so that a client cannot make two guesses count as one.
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Window {
    /// Logins refused unchecked since the address last went a [`WINDOW`] without one: the
    /// first [`LOGGED_REFUSALS`] are logged, however often the limit is reached again.
    refused: u32,
    last_refused: Option<Instant>,
    /// When the limit was last said to be reached: once a [`WINDOW`] at most.
    told: Option<Instant>,
    /// Logins being checked: any may be a guess, so failures and these together stay within
    /// the limit (a client opening 200 connections at once gets 20 checks, not 200).
    checking: u32,
    /// The guesses of the last [`WINDOW`], by hash, with when each was found: the same one
    /// again counts once (libpq's default `sslmode=prefer` retries a login refused over TLS
    /// without it, and learns nothing new).
    guesses: Vec<(u64, Instant)>,
}

/// A login from an address, admitted to be checked. Dropped, it no longer holds back others.
#[derive(Debug)]
pub struct Check<'a> {
    throttle: &'a Throttle,
    /// None: not counted (a guess already counted, or an address that found no room).
    ip: Option<IpAddr>,
    guess: u64,
}

impl Throttle {
    /// Admits a login from `ip` with `credentials` (its user name and token) to be checked,
    /// once the checks under way leave room; or refuses it unchecked, counting it and saying
    /// how many were in this window, this one included.
    pub async fn admit(&self, ip: IpAddr, credentials: impl Hash) -> Result<Check<'_>, u32> {
        let guess = self.hasher.hash_one(credentials);
        loop {
            // Listening before looking, so that a check ending in between still wakes us.
            let checked = self.checked.notified();
            tokio::pin!(checked);
            checked.as_mut().enable();
            if let Some(admission) = self.try_admit(ip, guess, Instant::now()) {
                return admission;
            }
            checked.await;
        }
    }

    /// `None` while the login must wait for checks under way.
    fn try_admit(&self, ip: IpAddr, guess: u64, now: Instant) -> Option<Result<Check<'_>, u32>> {
        let ip = source(ip);
        let uncounted = Check { throttle: self, ip: None, guess };
        let mut windows = crate::lock(&self.windows);
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&ip) {
            windows.retain(|_, w| {
                w.forget_before(now);
                w.throttles() || w.checking > 0
            });
            if windows.len() >= MAX_ADDRESSES {
                return Some(Ok(uncounted));
            }
        }
        let window = windows.entry(ip).or_default();
        window.forget_before(now);
        if window.throttles() {
            window.refused += 1;
            window.last_refused = Some(now);
            return Some(Err(window.refused));
        }
        if window.last_refused.is_some_and(|at| now >= at + WINDOW) {
            (window.refused, window.last_refused) = (0, None);
        }
        if window.counted(guess) {
            return Some(Ok(uncounted));
        }
        if window.failures() + window.checking >= MAX_FAILURES {
            return None;
        }
        window.checking += 1;
        Some(Ok(Check { ip: Some(ip), ..uncounted }))
    }
}

impl Check<'_> {
    /// The check is over: `guessed` says whether it found a guess, counted once per distinct
    /// one. True when this one reached the limit, and it was not reached in the [`WINDOW`]
    /// before (a guesser that keeps at it is told of once a window).
    pub fn done(mut self, guessed: bool, now: Instant) -> bool {
        self.settle(guessed, now)
    }

    /// Frees this login's place among the checks under way, counting its guess if it was one,
    /// and wakes the logins waiting for a place. Once: later calls do nothing.
    fn settle(&mut self, guessed: bool, now: Instant) -> bool {
        let Some(ip) = self.ip.take() else { return false };
        let mut windows = crate::lock(&self.throttle.windows);
        let reached = windows.get_mut(&ip).is_some_and(|window| {
            window.checking = window.checking.saturating_sub(1);
            window.forget_before(now);
            if !guessed || window.counted(self.guess) {
                return false;
            }
            window.guesses.push((self.guess, now));
            let tell = window.failures() == MAX_FAILURES && window.told.is_none_or(|at| now >= at + WINDOW);
            if tell {
                window.told = Some(now);
            }
            tell
        });
        drop(windows);
        self.throttle.checked.notify_waiters();
        reached
    }
}

impl Drop for Check<'_> {
    /// A check dropped unfinished (its login gone) is no guess.
    fn drop(&mut self) {
        self.settle(false, Instant::now());
    }
}

impl Window {
    /// Forgets the guesses a window old at `now`.
    fn forget_before(&mut self, now: Instant) {
        self.guesses.retain(|(_, at)| now < *at + WINDOW);
    }

    fn failures(&self) -> u32 {
        self.guesses.len() as u32
    }

    fn counted(&self, guess: u64) -> bool {
        self.guesses.iter().any(|(counted, _)| *counted == guess)
    }

    /// Whether the last window holds the most guesses allowed (as of the last
    /// [`forget_before`](Self::forget_before)).
    fn throttles(&self) -> bool {
        self.failures() >= MAX_FAILURES
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

    /// A login checked at `now` and found a guess (the `n`th); true when it reached the limit.
    fn guess(throttle: &Throttle, ip: IpAddr, n: u64, now: Instant) -> bool {
        let check = throttle.try_admit(ip, n, now).expect("admitted at once").expect("not refused");
        check.done(true, now)
    }

    /// Whether a new login is refused unchecked, and if so the how-manieth.
    fn refuses(throttle: &Throttle, ip: IpAddr, now: Instant) -> Option<u32> {
        throttle.try_admit(ip, u64::MAX, now).expect("not held back").err()
    }

    /// No moment resets the count: guesses spread over the turn of a minute count together.
    #[test]
    fn the_window_slides() {
        let throttle = Throttle::default();
        let (guesser, start) = ("10.0.0.1".parse().unwrap(), Instant::now());
        let late = start + WINDOW - Duration::from_secs(1);
        for i in 1..u64::from(MAX_FAILURES) {
            assert!(!guess(&throttle, guesser, i, late));
        }
        assert!(guess(&throttle, guesser, 100, start + WINDOW + Duration::from_secs(1)), "20 within a minute");
        assert_eq!(refuses(&throttle, guesser, start + WINDOW + Duration::from_secs(2)), Some(1));
        // Refused until the oldest guess is a minute old.
        assert_eq!(refuses(&throttle, guesser, late + WINDOW), None);
    }

    /// A guesser that keeps at it is told of once a window, and its refusals are numbered on
    /// (only the first ones are logged) however often its oldest guess leaves the window.
    #[test]
    fn a_steady_guesser_is_told_of_once_a_window() {
        let throttle = Throttle::default();
        let (guesser, start) = ("10.0.0.1".parse().unwrap(), Instant::now());
        let second = Duration::from_secs(1);
        for i in 1..u64::from(MAX_FAILURES) {
            assert!(!guess(&throttle, guesser, i, start + second * i as u32));
        }
        let full = start + second * MAX_FAILURES;
        assert!(guess(&throttle, guesser, 100, full), "told once");
        assert_eq!(refuses(&throttle, guesser, full), Some(1));
        // The first guess leaves the window: one more is checked, and the limit reached again.
        let slid = start + WINDOW + second + Duration::from_millis(1);
        assert!(!guess(&throttle, guesser, 101, slid), "not told again within the window");
        assert_eq!(refuses(&throttle, guesser, slid), Some(2), "numbered on");
    }

    #[test]
    fn an_address_is_refused_past_its_failures_until_its_window_ends() {
        let throttle = Throttle::default();
        let (guesser, other) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for i in 1..u64::from(MAX_FAILURES) {
            assert!(!guess(&throttle, guesser, i, start));
            assert_eq!(refuses(&throttle, guesser, start), None, "after {i}");
        }
        assert!(guess(&throttle, guesser, 0, start), "the limit is reached once");
        assert_eq!(refuses(&throttle, guesser, start + WINDOW / 2), Some(1));
        assert_eq!(refuses(&throttle, guesser, start + WINDOW / 2), Some(2), "counted");
        assert_eq!(refuses(&throttle, other, start), None, "others are not");
        assert_eq!(refuses(&throttle, guesser, start + WINDOW), None, "the window ended");
        assert!(!guess(&throttle, guesser, 1, start + WINDOW), "a new window counts from one");
    }

    #[test]
    fn the_same_guess_again_counts_once() {
        let throttle = Throttle::default();
        let (guesser, start) = ("10.0.0.1".parse().unwrap(), Instant::now());
        for _ in 0..2 * MAX_FAILURES {
            assert!(!guess(&throttle, guesser, 7, start));
        }
        for i in 1..u64::from(MAX_FAILURES - 1) {
            assert!(!guess(&throttle, guesser, 100 + i, start));
        }
        assert!(guess(&throttle, guesser, 200, start), "the 20th distinct guess");
    }

    #[test]
    fn logins_being_checked_hold_back_those_that_could_pass_the_limit() {
        let throttle = Throttle::default();
        let (ip, now) = ("10.0.0.1".parse().unwrap(), Instant::now());
        let mut checks: Vec<_> = (0..u64::from(MAX_FAILURES))
            .map(|n| throttle.try_admit(ip, n, now).expect("room").expect("not refused"))
            .collect();
        assert!(throttle.try_admit(ip, 99, now).is_none(), "a 21st waits");
        // A login that was no guess makes room; one dropped unfinished does too.
        assert!(!checks.pop().unwrap().done(false, now));
        let admitted = throttle.try_admit(ip, 99, now).expect("room again").expect("not refused");
        drop(admitted);
        assert!(throttle.try_admit(ip, 98, now).expect("room").is_ok());
        // Once the ones under way turn out guesses, the next is refused unchecked.
        let reached: Vec<bool> = checks.into_iter().map(|check| check.done(true, now)).collect();
        assert_eq!(reached.iter().filter(|r| **r).count(), 0, "19 guesses are not 20");
        assert!(guess(&throttle, ip, 20, now));
        assert_eq!(throttle.try_admit(ip, 99, now).map(|a| a.err()), Some(Some(1)));
    }

    #[tokio::test]
    async fn a_waiting_login_goes_on_when_a_check_ends() {
        let throttle = std::sync::Arc::new(Throttle::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        let mut checks: Vec<_> =
            (0..u64::from(MAX_FAILURES)).map(|n| throttle.try_admit(ip, n, now).unwrap().unwrap()).collect();
        let waiting = {
            let throttle = std::sync::Arc::clone(&throttle);
            tokio::spawn(async move { throttle.admit(ip, "another").await.is_ok() })
        };
        crate::timer::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "held back while 20 are checked");
        checks.pop().unwrap().done(false, Instant::now());
        assert!(waiting.await.unwrap(), "admitted once one ended");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            guess(&throttle, format!("2001:db8::{i:x}").parse().unwrap(), i.into(), start);
        }
        assert!(refuses(&throttle, "2001:db8::ffff:1".parse().unwrap(), start).is_some());
        assert!(refuses(&throttle, "2001:db8:0:1::1".parse().unwrap(), start).is_none(), "another /64");
        assert_eq!(source("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_flood_of_addresses_never_frees_a_throttled_one() {
        let throttle = Throttle::default();
        let (guesser, start) = ("10.0.0.1".parse().unwrap(), Instant::now());
        for i in 0..MAX_FAILURES {
            guess(&throttle, guesser, i.into(), start);
        }
        for i in 0..(2 * MAX_ADDRESSES as u32) {
            guess(&throttle, IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)), 0, start);
        }
        assert!(refuses(&throttle, guesser, start).is_some());
    }
}
