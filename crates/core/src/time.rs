//! Time as microseconds since the Unix epoch, the unit every store column uses.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// The current time in microseconds.
pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// A protobuf `Timestamp`'s or `Duration`'s seconds and nanoseconds, in microseconds
/// (saturating: no such value is near the bounds).
pub fn micros_of(seconds: i64, nanos: i32) -> Micros {
    seconds.saturating_mul(1_000_000).saturating_add(i64::from(nanos) / 1_000)
}

/// The earliest time a `google.protobuf.Timestamp` may hold: 0001-01-01T00:00:00Z.
pub const MIN_TIME: Micros = -62_135_596_800_000_000;
/// The latest: 9999-12-31T23:59:59.999999Z (to the microsecond).
pub const MAX_TIME: Micros = 253_402_300_799_999_999;

/// A time or duration as given, which may be finer than the microsecond every store column
/// keeps: its whole microseconds, and whether a fraction of one is left over
/// (`…52.702869001Z` is `…52.702869Z` and a fraction). A bound compared with stored
/// microseconds takes the one below it or the one above, as its comparison needs to stay exact
/// (`s >= t` is `s >= t.ceil()`, `s > t` is `s > t.floor()`), and nothing stored equals a
/// value with a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FineMicros {
    whole: Micros,
    fraction: bool,
}

impl FineMicros {
    /// A whole number of microseconds.
    pub const fn exact(us: Micros) -> Self {
        Self { whole: us, fraction: false }
    }

    /// `whole` microseconds and, if `fraction`, part of the next one; `None` when that next
    /// one is past what `Micros` holds, so that [`FineMicros::ceil`] always is.
    pub fn new(whole: Micros, fraction: bool) -> Option<Self> {
        whole.checked_add(Micros::from(fraction))?;
        Some(Self { whole, fraction })
    }

    /// The whole microsecond at or below it.
    pub fn floor(self) -> Micros {
        self.whole
    }

    /// The whole microsecond at or above it.
    pub fn ceil(self) -> Micros {
        self.whole + Micros::from(self.fraction)
    }

    /// The whole microsecond it is, if it is one.
    pub fn whole(self) -> Option<Micros> {
        (!self.fraction).then_some(self.whole)
    }

    /// `at` plus this duration.
    pub fn after(self, at: Micros) -> Option<Self> {
        Self::new(at.checked_add(self.whole)?, self.fraction)
    }

    /// `at` less this duration: a fraction taken away leaves the microsecond below and a
    /// fraction of it.
    pub fn before(self, at: Micros) -> Option<Self> {
        Self::new(at.checked_sub(self.whole)?.checked_sub(Micros::from(self.fraction))?, self.fraction)
    }
}

/// Parses an RFC 3339 timestamp (`2023-11-07T05:31:56Z`, offsets allowed)
/// within the range a protobuf `Timestamp` can carry, with any digits past the microsecond.
pub fn parse_rfc3339(text: &str) -> Option<FineMicros> {
    let at = parse_rfc3339_unbounded(text.trim())?;
    (MIN_TIME..=MAX_TIME).contains(&at.floor()).then_some(at)
}

/// Parses an RFC 3339 timestamp of any year chrono can hold, with any digits past the
/// microsecond.
pub fn parse_rfc3339_unbounded(text: &str) -> Option<FineMicros> {
    // chrono reads a second's fraction to the nanosecond and drops the digits after, whose
    // fraction of a microsecond a bound needs as much as any other.
    let (text, fraction) = match text.split_once('.') {
        Some((head, tail)) => {
            let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
            let kept = digits.min(6);
            let fraction = tail.as_bytes()[kept..digits].iter().any(|&digit| digit != b'0');
            (Cow::Owned(format!("{head}.{}{}", &tail[..kept], &tail[digits..])), fraction)
        }
        None => (Cow::Borrowed(text), false),
    };
    let at = DateTime::parse_from_rfc3339(&text).ok()?.with_timezone(&Utc).timestamp_micros();
    FineMicros::new(at, fraction)
}

/// Formats as RFC 3339 UTC with the shortest exact fractional part.
pub fn format_rfc3339(at: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(at)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// As [`format_rfc3339`], always with six fractional digits: times of one width, which sort
/// as text (a transcript's lines).
pub fn format_rfc3339_micros(at: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(at)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let at = parse_rfc3339("2023-11-07T05:31:56Z").and_then(FineMicros::whole).unwrap();
        assert_eq!(at, 1_699_335_116_000_000);
        assert_eq!(format_rfc3339(at), "2023-11-07T05:31:56Z");
        assert_eq!(format_rfc3339(at + 1500), "2023-11-07T05:31:56.001500Z");
        assert_eq!(format_rfc3339_micros(at), "2023-11-07T05:31:56.000000Z");
        assert_eq!(format_rfc3339_micros(at + 576_000), "2023-11-07T05:31:56.576000Z");
        assert_eq!(parse_rfc3339("2023-11-07T06:31:56+01:00"), Some(FineMicros::exact(at)));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn rfc3339_keeps_what_is_finer_than_a_microsecond() {
        let at = 1_796_569_732_702_869;
        let exact = |text| parse_rfc3339(text).and_then(FineMicros::whole);
        let bounds = |text| parse_rfc3339(text).map(|t| (t.floor(), t.ceil(), t.whole()));
        assert_eq!(exact("2026-12-06T15:08:52.702869Z"), Some(at));
        assert_eq!(exact("2026-12-06T15:08:52.702869000000000000Z"), Some(at));
        assert_eq!(bounds("2026-12-06T15:08:52.702869001Z"), Some((at, at + 1, None)));
        assert_eq!(bounds("2026-12-06T15:08:52.7028691Z"), Some((at, at + 1, None)));
        // Past the nanosecond, where chrono stops reading.
        assert_eq!(bounds("2026-12-06T15:08:52.7028690000000001Z"), Some((at, at + 1, None)));
        assert_eq!(bounds("2026-12-06T17:08:52.702869001+02:00"), Some((at, at + 1, None)));
        // Before 1970 too, the fraction is above the microsecond below.
        assert_eq!(bounds("1969-12-31T23:59:59.9999995Z"), Some((-1, 0, None)));
        assert_eq!(parse_rfc3339("2026-12-06T15:08:52.Z"), None);
        assert_eq!(parse_rfc3339("2026-12-06T15:08:52.70286900xZ"), None);
    }

    #[test]
    fn fine_micros_offset_a_time_exactly() {
        let (half, at) = (FineMicros::new(10, true).unwrap(), 1_000);
        assert_eq!(half.after(at), FineMicros::new(1_010, true));
        assert_eq!(half.before(at), FineMicros::new(989, true));
        assert_eq!(FineMicros::exact(10).before(at), Some(FineMicros::exact(990)));
        assert_eq!(FineMicros::new(Micros::MAX, true), None);
        assert_eq!(half.before(Micros::MIN + 10), None);
    }

    #[test]
    fn rfc3339_keeps_to_the_timestamp_range() {
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Some(FineMicros::exact(MIN_TIME)));
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59.999999Z"), Some(FineMicros::exact(MAX_TIME)));
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59.999999999Z").map(FineMicros::ceil), Some(MAX_TIME + 1));
        assert_eq!(parse_rfc3339("0000-12-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00+01:00"), None);
        assert_eq!(format_rfc3339(MIN_TIME), "0001-01-01T00:00:00Z");
    }
}
