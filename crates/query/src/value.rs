//! Typed values: parsing times (`RFC 3339`, `now-24h`), durations (`30m`), IP addresses and
//! CIDR networks from the text of a query, and writing them back for `Display`.
//!
//! Every parser returns `None` on bad input rather than an error: the caller knows the field
//! and builds the message. All arithmetic is checked, so `now-99999999999d` is a bad value,
//! not an overflow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use gatehouse_core::time::{FineMicros, parse_rfc3339_unbounded};

const US_PER_MS: i64 = 1_000;
const US_PER_S: i64 = 1_000_000;
const US_PER_M: i64 = 60 * US_PER_S;
const US_PER_H: i64 = 60 * US_PER_M;
const US_PER_D: i64 = 24 * US_PER_H;

/// Duration units, largest first (the order `format_duration` tries them in).
const UNITS: &[(&str, i64)] =
    &[("d", US_PER_D), ("h", US_PER_H), ("m", US_PER_M), ("s", US_PER_S), ("ms", US_PER_MS), ("us", 1)];

/// What a time value looks like, for error messages.
pub const TIME_FORMS: &str = "an RFC 3339 time such as 2024-01-01T00:00:00Z, a date such as 2024-01-01, \
     or now, now-15m, now-24h, now-7d";

/// What a duration value looks like, for error messages.
pub(crate) const DURATION_FORMS: &str = "a duration such as 250ms, 30s, 1.5s, 10m, 2h, 1d or 1h30m";

/// What an IP value looks like, for error messages.
pub(crate) const IP_FORMS: &str = "an IP address such as 10.0.0.1 or \"2001:db8::1\", or a network such as 10.0.0.0/8";

/// Parses a duration: one or more `<number><unit>` pairs with units `d`, `h`, `m`, `s`, `ms`,
/// `us`, e.g. `250ms`, `1h30m`, `1.5h`, `1169.589943s` (as the API writes durations). Returns
/// microseconds, and whether a fraction of one is left over, however many digits it takes.
///
/// A bare number is rejected on purpose: `duration:>30` could mean seconds or milliseconds.
pub fn parse_duration(text: &str) -> Option<FineMicros> {
    let mut rest = text;
    let mut whole: i64 = 0;
    // The digits below the microsecond of the parts so far, summed exactly, so that
    // `0.0000005s0.0000005s` is one microsecond and no fraction.
    let mut below = Vec::new();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let (integer, tail) = split_digits(rest);
        let (fraction, tail) = match tail.strip_prefix('.') {
            // `1.s` and `.5s` are not numbers.
            Some(tail) => match split_digits(tail) {
                ("", _) => return None,
                split => split,
            },
            None => ("", tail),
        };
        if integer.is_empty() {
            return None;
        }
        let unit_end = tail.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let (_, scale) = UNITS.iter().find(|(name, _)| *name == unit)?;
        let amount: i64 = integer.parse().ok()?;
        let (part, part_below) = scale_fraction(*scale, fraction);
        let carry = add_digits(&mut below, &part_below);
        whole = whole.checked_add(amount.checked_mul(*scale)?)?.checked_add(part)?.checked_add(carry)?;
        rest = tail;
    }
    FineMicros::new(whole, below.iter().any(|&digit| digit != 0))
}

/// `scale` microseconds times the decimal fraction `0.<digits>`: whole microseconds, and the
/// digits below the microsecond, exactly (long multiplication from the last digit).
fn scale_fraction(scale: i64, digits: &str) -> (i64, Vec<u8>) {
    let mut below = vec![0; digits.len()];
    // Below `scale` throughout, as the product of the digits so far over their place is.
    let mut carry = 0;
    for (slot, digit) in below.iter_mut().zip(digits.bytes()).rev() {
        let product = scale * i64::from(digit - b'0') + carry;
        *slot = (product % 10) as u8;
        carry = product / 10;
    }
    (carry, below)
}

/// Adds the decimal fraction `addend` to `sum` (digits after the point, first the tenths) and
/// returns what carries into the units.
fn add_digits(sum: &mut Vec<u8>, addend: &[u8]) -> i64 {
    if sum.len() < addend.len() {
        sum.resize(addend.len(), 0);
    }
    let mut carry = 0;
    for (place, digit) in sum.iter_mut().enumerate().rev() {
        let total = *digit + addend.get(place).copied().unwrap_or(0) + carry;
        *digit = total % 10;
        carry = total / 10;
    }
    i64::from(carry)
}

/// The leading ASCII digits of `text`, and the rest.
fn split_digits(text: &str) -> (&str, &str) {
    text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()))
}

/// Parses a time: RFC 3339 (any offset), a bare date (midnight UTC), `now`, or `now` plus or
/// minus a duration (`now-24h`, `now+1h`). `now_us` is "now" in microseconds since the epoch.
/// Digits past the microsecond are kept as [`parse_duration`] keeps them.
pub fn parse_time(text: &str, now_us: i64) -> Option<FineMicros> {
    if let Some(offset) = strip_prefix_ignore_case(text, "now") {
        return match offset.as_bytes().first() {
            None => Some(FineMicros::exact(now_us)),
            Some(b'-') => parse_duration(&offset[1..])?.before(now_us),
            Some(b'+') => parse_duration(&offset[1..])?.after(now_us),
            Some(_) => None,
        };
    }
    if let Some(time) = parse_rfc3339_unbounded(text) {
        return Some(time);
    }
    Some(FineMicros::exact(parse_day(text)?.0))
}

/// A bare date (`2024-06-01`): the microseconds of its midnight (UTC) and of the next one.
pub fn parse_day(text: &str) -> Option<(i64, i64)> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let midnight = |date: NaiveDate| Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    Some((midnight(date)?, midnight(date.succ_opt()?)?))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// Parses a single IPv4 or IPv6 address.
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

/// Parses `address/prefix` into the first and last address of the network. Host bits in the
/// address are ignored (`10.1.2.3/8` is `10.0.0.0/8`), as most tools do.
pub(crate) fn parse_cidr(text: &str) -> Option<(IpAddr, IpAddr)> {
    let (address, prefix) = text.split_once('/')?;
    // `u8::from_str` accepts a leading `+`; a prefix length is plain digits.
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u32 = prefix.parse().ok()?;
    match parse_ip(address)? {
        IpAddr::V4(address) => {
            let mask = u32::MAX.checked_shl(32u32.checked_sub(prefix)?).unwrap_or(0);
            let first = u32::from(address) & mask;
            Some((IpAddr::V4(Ipv4Addr::from(first)), IpAddr::V4(Ipv4Addr::from(first | !mask))))
        }
        IpAddr::V6(address) => {
            let mask = u128::MAX.checked_shl(128u32.checked_sub(prefix)?).unwrap_or(0);
            let first = u128::from(address) & mask;
            Some((IpAddr::V6(Ipv6Addr::from(first)), IpAddr::V6(Ipv6Addr::from(first | !mask))))
        }
    }
}

/// The prefix length of the network `first..=last`, if it is one.
pub(crate) fn cidr_prefix(first: IpAddr, last: IpAddr) -> Option<u32> {
    let (host_bits, width) = match (first, last) {
        (IpAddr::V4(first), IpAddr::V4(last)) => {
            let host = u32::from(first) ^ u32::from(last);
            let is_net = host.count_ones() == host.trailing_ones() && u32::from(first) & host == 0;
            (is_net.then_some(host.count_ones()), 32)
        }
        (IpAddr::V6(first), IpAddr::V6(last)) => {
            let host = u128::from(first) ^ u128::from(last);
            let is_net = host.count_ones() == host.trailing_ones() && u128::from(first) & host == 0;
            (is_net.then_some(host.count_ones()), 128)
        }
        _ => (None, 0),
    };
    Some(width - host_bits?)
}

/// Writes a time as RFC 3339 in UTC, or as raw microseconds if chrono cannot represent it.
pub(crate) fn format_time(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("{us}us-since-epoch"),
    }
}

/// Writes a duration in the largest unit that represents it exactly, e.g. `30m`, `1500ms`.
pub(crate) fn format_duration(us: i64) -> String {
    if us == 0 {
        return "0s".to_owned();
    }
    let (name, scale) = UNITS.iter().find(|(_, scale)| us % scale == 0).unwrap_or(&("us", 1));
    format!("{}{name}", us / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000;

    /// A whole number of microseconds.
    fn exact(us: i64) -> Option<FineMicros> {
        Some(FineMicros::exact(us))
    }

    /// `us` microseconds and a fraction of one.
    fn past(us: i64) -> Option<FineMicros> {
        FineMicros::new(us, true)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), exact(250 * US_PER_MS));
        assert_eq!(parse_duration("30s"), exact(30 * US_PER_S));
        assert_eq!(parse_duration("10m"), exact(10 * US_PER_M));
        assert_eq!(parse_duration("2h"), exact(2 * US_PER_H));
        assert_eq!(parse_duration("1d"), exact(US_PER_D));
        assert_eq!(parse_duration("1h30m"), exact(90 * US_PER_M));
        assert_eq!(parse_duration("7us"), exact(7));
        // Fractions, as the API writes a duration: to the microsecond.
        assert_eq!(parse_duration("1.5h"), exact(90 * US_PER_M));
        assert_eq!(parse_duration("1169.589943s"), exact(1_169_589_943));
        assert_eq!(parse_duration("0.25ms"), exact(250));
        assert_eq!(parse_duration("1.000000000000000000000000s"), exact(US_PER_S));
        assert_eq!(parse_duration("0.0000000000000000000000000001d"), past(0));
        for bad in [
            "",
            "30",
            "m",
            "30x",
            "-5m",
            "30 m",
            "1H",
            "99999999999999999999d",
            "9999999999999d",
            "1.s",
            ".5s",
            "1.5",
            "1..5s",
            "1.5.5s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_keep_what_is_finer_than_a_microsecond() {
        assert_eq!(parse_duration("61.380376001s"), past(61_380_376));
        assert_eq!(parse_duration("0.000001999s"), past(1));
        assert_eq!(parse_duration("1.000000000000000000000001s"), past(US_PER_S));
        assert_eq!(parse_duration("0.1us"), past(0));
        // A third of a microsecond is no decimal fraction of a day, however long.
        assert_eq!(parse_duration("0.00000000000385802469135802469d"), past(0));
        // Fractions of two parts add up exactly.
        assert_eq!(parse_duration("0.0000005s0.0000005s"), exact(1));
        assert_eq!(parse_duration("0.0000005s0.00000050001s"), past(1));
        assert_eq!(parse_duration("1.00000000001m0.0009994ms"), exact(60_000_001));
        assert_eq!(parse_duration("1.00000000001m0.0009993ms"), past(60_000_000));
        assert_eq!(parse_duration("9223372036854775807us"), exact(i64::MAX));
        assert_eq!(parse_duration("9223372036854775806.5us"), past(i64::MAX - 1));
        assert_eq!(parse_duration("9223372036854775807.5us"), None);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("now", NOW), exact(NOW));
        assert_eq!(parse_time("NOW", NOW), exact(NOW));
        assert_eq!(parse_time("now-24h", NOW), exact(NOW - 24 * US_PER_H));
        assert_eq!(parse_time("now+1h", NOW), exact(NOW + US_PER_H));
        assert_eq!(parse_time("2024-01-01T00:00:00Z", NOW), exact(1_704_067_200_000_000));
        assert_eq!(parse_time("2024-01-01T02:00:00+02:00", NOW), exact(1_704_067_200_000_000));
        assert_eq!(parse_time("2024-01-01", NOW), exact(1_704_067_200_000_000));
        for bad in [
            "",
            "yesterday",
            "now-",
            "now-1",
            "now*2",
            "nowish",
            "2024-13-01",
            "now-99999999999d",
            "2024-01-01T00:00:00",
        ] {
            assert_eq!(parse_time(bad, NOW), None, "{bad}");
        }
        assert_eq!(parse_time("now-106751d", i64::MIN + 1), None);
    }

    #[test]
    fn times_keep_what_is_finer_than_a_microsecond() {
        assert_eq!(parse_time("2024-01-01T00:00:00.000000001Z", NOW), past(1_704_067_200_000_000));
        assert_eq!(parse_time("now+0.5us", NOW), past(NOW));
        // Half a microsecond before now is the microsecond before and half of it.
        assert_eq!(parse_time("now-0.5us", NOW), past(NOW - 1));
        assert_eq!(parse_time("now-1.0000001s", NOW), past(NOW - US_PER_S - 1));
    }

    #[test]
    fn cidrs() {
        let net = |s: &str| parse_cidr(s).map(|(a, b)| format!("{a}-{b}"));
        assert_eq!(net("10.0.0.0/8").as_deref(), Some("10.0.0.0-10.255.255.255"));
        assert_eq!(net("10.1.2.3/8").as_deref(), Some("10.0.0.0-10.255.255.255"));
        assert_eq!(net("0.0.0.0/0").as_deref(), Some("0.0.0.0-255.255.255.255"));
        assert_eq!(net("1.2.3.4/32").as_deref(), Some("1.2.3.4-1.2.3.4"));
        assert_eq!(net("2001:db8::/32").as_deref(), Some("2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(net("::/0").as_deref(), Some("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "/8", "x/8", "::/129", "1.2.3.4"] {
            assert_eq!(net(bad), None, "{bad}");
        }
    }

    #[test]
    fn cidr_prefix_round_trips() {
        for text in ["10.0.0.0/8", "0.0.0.0/0", "1.2.3.4/32", "2001:db8::/32", "::/0"] {
            let (first, last) = parse_cidr(text).unwrap();
            let prefix = text.split_once('/').unwrap().1.parse().ok();
            assert_eq!(cidr_prefix(first, last), prefix, "{text}");
        }
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(cidr_prefix(a, b), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(30 * US_PER_M), "30m");
        assert_eq!(format_duration(90 * US_PER_M), "90m");
        assert_eq!(format_duration(1_500 * US_PER_MS), "1500ms");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_time(1_704_067_200_000_000), "2024-01-01T00:00:00Z");
        assert_eq!(format_time(i64::MIN), "-9223372036854775808us-since-epoch");
    }
}
