//! Wall-clock instants as the platform reports them: milliseconds since the Unix epoch.
//!
//! The core has no clock of its own; every method that needs the time takes a [`Timestamp`]
//! from the platform (a fake clock in tests).

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since 1970-01-01T00:00:00Z, as reported by the platform's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// This instant plus `duration`, saturating at the far future.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// How long after `earlier` this instant is; zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// This instant as a UTC date-time.
    pub fn to_datetime(self) -> OffsetDateTime {
        // Seconds and milliseconds apart: 64-bit arithmetic only (128-bit division is heavy code
        // in the web SDK's wasm module).
        let seconds = i64::try_from(self.0 / 1000).unwrap_or(i64::MAX);
        let millis = Duration::from_millis(self.0 % 1000);
        OffsetDateTime::from_unix_timestamp(seconds)
            .map_or(OffsetDateTime::UNIX_EPOCH, |datetime| datetime + millis)
    }

    /// The instant a date-time denotes, truncated to milliseconds; `None` before 1970.
    pub fn from_datetime(datetime: OffsetDateTime) -> Option<Self> {
        let millis = datetime.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(millis).ok().map(Self)
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-27T10:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        let datetime = self.to_datetime();
        let (year, month, day) = (datetime.year(), u8::from(datetime.month()), datetime.day());
        let (hour, minute, second) = (datetime.hour(), datetime.minute(), datetime.second());
        let millis = datetime.millisecond();
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
    }

    /// Parses an RFC 3339 date-time (any offset).
    ///
    /// # Errors
    /// When `text` is not RFC 3339 or denotes an instant before 1970.
    pub fn parse_rfc3339(text: &str) -> Result<Self, InvalidTimestamp> {
        let datetime = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|error| InvalidTimestamp::NotRfc3339(error.to_string()))?;
        Self::from_datetime(datetime).ok_or(InvalidTimestamp::BeforeEpoch)
    }
}

/// Why a text is not a usable timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTimestamp {
    /// The text is not an RFC 3339 date-time.
    #[error("not an RFC 3339 date-time ({0})")]
    NotRfc3339(String),
    /// The date-time is before 1970-01-01T00:00:00Z.
    #[error("before 1970-01-01T00:00:00Z")]
    BeforeEpoch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_rfc3339_with_milliseconds() {
        let instant = Timestamp::from_unix_millis(1_795_000_000_123);
        let text = instant.to_rfc3339();
        assert_eq!(text, "2026-11-18T11:06:40.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), instant);
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-18T12:06:40.123+01:00").unwrap(),
            instant
        );
    }

    #[test]
    fn rejects_instants_before_the_epoch() {
        assert!(Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").is_err());
        assert!(Timestamp::parse_rfc3339("not a date").is_err());
    }

    #[test]
    fn arithmetic_saturates() {
        let instant = Timestamp::from_unix_millis(10);
        assert_eq!(
            instant.saturating_duration_since(Timestamp::from_unix_millis(20)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::from_unix_millis(u64::MAX - 1).saturating_add(Duration::from_secs(1)),
            Timestamp::from_unix_millis(u64::MAX)
        );
    }
}
