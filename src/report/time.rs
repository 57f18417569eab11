//! The times a reader types: `--since`, `--until`, the console's filters.

use chrono::{DateTime, Utc};

/// A time for `--since`/`--until`: RFC 3339 (`2026-12-01T10:00:00-03:00`),
/// a date and time without an offset (`2026-12-01T10:00`, UTC), a date
/// (`2026-12-01`, midnight UTC), or a span back from now (`7d`, `12h`, `30m`).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, ParseTimeError> {
    if let Some(t) = parse_absolute(s) {
        return Ok(t);
    }
    let span = humantime::parse_duration(s).map_err(|source| ParseTimeError::NotATime {
        text: s.to_owned(),
        source,
    })?;
    let too_long = |source| ParseTimeError::TooLong {
        text: s.to_owned(),
        source,
    };
    let span = chrono::Duration::from_std(span).map_err(|e| too_long(Some(e)))?;
    Utc::now()
        .checked_sub_signed(span)
        .ok_or_else(|| too_long(None))
}

/// Why a text is not a time for [`parse_time`] (each holds the text).
#[derive(Debug, thiserror::Error)]
pub enum ParseTimeError {
    /// Neither a time nor a span.
    #[error(
        "{text:?} is not a time: give a date (2026-12-01), a date and time in UTC (2026-12-01T10:00), RFC 3339 (2026-12-01T10:00:00-03:00) or a span back from now (7d, 12h)"
    )]
    NotATime {
        /// The text.
        text: String,
        /// Why it is not a span.
        source: humantime::DurationError,
    },
    /// A span reaching back before the earliest time there is.
    #[error("{text:?} is too long a span")]
    TooLong {
        /// The text.
        text: String,
        /// When the span does not even fit in a `chrono::Duration`.
        source: Option<chrono::OutOfRangeError>,
    },
}

/// A date, a date and time in UTC, or RFC 3339.
pub fn parse_absolute(s: &str) -> Option<DateTime<Utc>> {
    use chrono::{NaiveDate, NaiveDateTime};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_spans_back_from_now() {
        let t = parse_time("2026-11-27T03:00:00-03:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-27T06:00:00+00:00");
        assert_eq!(
            parse_time("2026-12-01").unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-12-01T10:00").unwrap().to_rfc3339(),
            "2026-12-01T10:00:00+00:00"
        );
        let week_ago = parse_time("7d").unwrap();
        let expected = Utc::now() - chrono::Duration::days(7);
        assert!((week_ago - expected).num_seconds().abs() < 5);
        assert!(parse_time("last tuesday").is_err());
    }
}
