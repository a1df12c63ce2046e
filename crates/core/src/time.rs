//! Time as microseconds since the Unix epoch, the unit every store column uses.

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

/// Parses an RFC 3339 timestamp (`2023-11-07T05:31:56Z`, offsets allowed)
/// within the range a protobuf `Timestamp` can carry.
pub fn parse_rfc3339(text: &str) -> Option<Micros> {
    let at = DateTime::parse_from_rfc3339(text.trim()).ok()?.with_timezone(&Utc).timestamp_micros();
    (MIN_TIME..=MAX_TIME).contains(&at).then_some(at)
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
        let at = parse_rfc3339("2023-11-07T05:31:56Z").unwrap();
        assert_eq!(at, 1_699_335_116_000_000);
        assert_eq!(format_rfc3339(at), "2023-11-07T05:31:56Z");
        assert_eq!(format_rfc3339(at + 1500), "2023-11-07T05:31:56.001500Z");
        assert_eq!(format_rfc3339_micros(at), "2023-11-07T05:31:56.000000Z");
        assert_eq!(format_rfc3339_micros(at + 576_000), "2023-11-07T05:31:56.576000Z");
        assert_eq!(parse_rfc3339("2023-11-07T06:31:56+01:00"), Some(at));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn rfc3339_keeps_to_the_timestamp_range() {
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Some(MIN_TIME));
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59.999999Z"), Some(MAX_TIME));
        assert_eq!(parse_rfc3339("0000-12-31T23:59:59Z"), None);
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00+01:00"), None);
        assert_eq!(format_rfc3339(MIN_TIME), "0001-01-01T00:00:00Z");
    }
}
