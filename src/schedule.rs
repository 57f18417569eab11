//! Cron schedules, evaluated in a group's own IANA time zone.

use chrono::{DateTime, Offset, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use std::fmt;
use std::sync::Arc;

/// A parsed cron schedule: 5 fields, or 6 with seconds first, or a nickname such
/// as `@daily`. Vixie cron's rules as croner implements them, DST included.
///
/// Cloning is shallow: a parsed croner pattern takes kilobytes, so groups on
/// the same schedule share one (see [`Schedule::parse_shared`]).
#[derive(Clone)]
pub struct Schedule(Arc<Parsed>);

struct Parsed {
    cron: Cron,
    text: String,
}

/// Why a text is not a schedule (each holds the text as given).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Neither 5 nor 6 fields, nor a nickname.
    #[error("{text:?} has {fields} fields; a schedule has 5, or 6 with seconds first")]
    Fields {
        /// The schedule as given.
        text: String,
        /// How many fields it has.
        fields: usize,
    },
    /// croner refused it, and a field is found wrong: `why` says which and
    /// how (`hour 25 is out of range 0-23`).
    #[error("{text:?} is not a valid cron schedule: {why}")]
    Field {
        /// The schedule as given.
        text: String,
        /// What is wrong with which field, in words.
        why: String,
        /// What croner said.
        #[source]
        source: CronError,
    },
    /// croner refused it, for a reason no field check knows of.
    #[error("{text:?} is not a valid cron schedule: {source}")]
    Cron {
        /// The schedule as given.
        text: String,
        /// What croner said.
        #[source]
        source: CronError,
    },
}

impl Schedule {
    /// Parses a schedule; the error says what croner disliked.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ScheduleError::Fields {
                text: text.to_owned(),
                fields,
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|source| match explain(text) {
                Some(why) => ScheduleError::Field {
                    text: text.to_owned(),
                    why,
                    source,
                },
                None => ScheduleError::Cron {
                    text: text.to_owned(),
                    source,
                },
            })?;
        Ok(Schedule(Arc::new(Parsed {
            cron,
            text: text.trim().to_owned(),
        })))
    }

    /// Parses `text`, or returns the schedule `cache` already holds for it, so
    /// that 100,000 groups on a handful of schedules hold a handful of patterns.
    pub fn parse_shared(
        text: &str,
        cache: &mut std::collections::HashMap<String, Schedule>,
    ) -> Result<Self, ScheduleError> {
        if let Some(s) = cache.get(text) {
            return Ok(s.clone());
        }
        let s = Self::parse(text)?;
        cache.insert(text.to_owned(), s.clone());
        Ok(s)
    }

    /// The first fire time strictly after `after`, in zone `tz`; `None` if the
    /// schedule never fires again (such as a February 30th).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Tz>> {
        self.0
            .cron
            .find_next_occurrence(&in_zone(after, tz)?, false)
            .ok()
    }

    /// The last fire time at or before `at`, in zone `tz`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Tz>> {
        self.0
            .cron
            .find_previous_occurrence(&in_zone(at, tz)?, true)
            .ok()
    }

    /// The next `n` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, tz: Tz, n: usize) -> Vec<DateTime<Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after;
        while out.len() < n {
            let Some(next) = self.next_after(cursor, tz) else {
                break;
            };
            cursor = next.with_timezone(&Utc);
            out.push(next);
        }
        out
    }

    /// Identifies the parsed pattern: schedules parsed once and shared
    /// ([`Schedule::parse_shared`]) have the same id, for grouping work by
    /// schedule.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }
}

/// The fields of a schedule, their names and ranges, in order (seconds
/// first when there are six).
const FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// Which field of `text` is wrong and how, in words (`hour 25 is out of
/// range 0-23`), for a schedule croner refused; `None` when no field is
/// found wrong (croner's own message is used then).
fn explain(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let fields = match parts.len() {
        6 => &FIELDS[..],
        5 => &FIELDS[1..],
        _ => return None,
    };
    parts
        .iter()
        .zip(fields)
        .find_map(|(part, &(name, lo, hi))| explain_field(part, name, lo, hi))
}

/// What is wrong with one field, if anything this check knows of: numbers
/// out of range, steps of zero, words that are not numbers. Names (`JAN`,
/// `MON`) and the specials (`L`, `W`, `#`, `?`) are left to croner.
fn explain_field(field: &str, name: &str, lo: u32, hi: u32) -> Option<String> {
    for item in field.split(',') {
        if item.is_empty() {
            return Some(format!("{name} has an empty entry in {field:?}"));
        }
        let special = match name {
            "month" => item.chars().any(|c| c.is_ascii_alphabetic()),
            "day of week" => item
                .chars()
                .any(|c| c.is_ascii_alphabetic() || "#?".contains(c)),
            "day of month" => item.contains(['L', 'W', '?']),
            _ => false,
        };
        if special {
            continue;
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(0) => return Some(format!("{name} step in {item:?} must be at least 1")),
                Ok(_) => {}
                Err(_) => return Some(format!("{name} step in {item:?} is not a whole number")),
            }
        }
        if range == "*" {
            continue;
        }
        let bounds: Vec<&str> = match range.split_once('-') {
            Some((a, b)) => vec![a, b],
            None => vec![range],
        };
        for bound in bounds {
            match bound.parse::<u32>() {
                Ok(n) if n < lo || n > hi => {
                    return Some(format!("{name} {n} is out of range {lo}-{hi}"));
                }
                Ok(_) => {}
                Err(_) => {
                    return Some(format!(
                        "{name} {bound:?} is not a number from {lo} to {hi}, a range such as {lo}-{hi}, a step such as */2, or *"
                    ));
                }
            }
        }
    }
    None
}

/// `at` in zone `tz`, or `None` at the very ends of chrono's range (year
/// ±262,143) where the local time does not fit in a `NaiveDateTime`: croner
/// reads the local time, and chrono panics on one out of range.
fn in_zone(at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Tz>> {
    let local = at.with_timezone(&tz);
    at.naive_utc().checked_add_offset(local.offset().fix())?;
    Some(local)
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.0.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_six_fields_and_nicknames_parse_and_seven_do_not() {
        assert!(Schedule::parse("0 3 * * *").is_ok());
        assert!(Schedule::parse("*/5 * * * * *").is_ok());
        assert!(Schedule::parse("@daily").is_ok());
        assert!(Schedule::parse("0 0 3 * * * 2030").is_err());
        assert!(Schedule::parse("0 3 * *").is_err());
        assert!(Schedule::parse("61 3 * * *").is_err());
    }

    #[test]
    fn a_refused_schedule_names_the_field_and_its_range() {
        let e = |text| Schedule::parse(text).unwrap_err().to_string();
        assert!(
            e("0 25 * * *").ends_with("hour 25 is out of range 0-23"),
            "{}",
            e("0 25 * * *")
        );
        assert!(e("61 3 * * *").ends_with("minute 61 is out of range 0-59"));
        assert!(e("0 0 3 * * *,99").contains("day of week 99 is out of range 0-7"));
        assert!(e("0 3 32 * *").contains("day of month 32 is out of range 1-31"));
        assert!(e("0 3 * 13 *").contains("month 13 is out of range 1-12"));
        assert!(e("*/0 3 * * *").contains("minute step in \"*/0\" must be at least 1"));
        assert!(e("0 x * * *").contains("hour \"x\" is not a number"));
    }

    #[test]
    fn fire_times_follow_the_zone_not_a_fixed_offset() {
        // Sao Paulo has no DST since 2019: 03:00 local is 06:00 UTC all year.
        let s = Schedule::parse("0 3 * * *").unwrap();
        let tz: Tz = "America/Sao_Paulo".parse().unwrap();
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        let next = s.next_after(start, tz).unwrap();
        assert_eq!(
            next.with_timezone(&Utc),
            Utc.with_ymd_and_hms(2026, 11, 27, 6, 0, 0).unwrap()
        );
        // Berlin: the same local time moves by an hour in UTC across the March change.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let start = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let times: Vec<_> = s
            .upcoming(start, tz, 2)
            .iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        assert_eq!(
            times[0],
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()
        );
        assert_eq!(
            times[1],
            Utc.with_ymd_and_hms(2026, 3, 30, 1, 0, 0).unwrap()
        );
    }

    #[test]
    fn the_ends_of_time_give_no_fire_rather_than_a_panic() {
        // Found by tests/properties.rs: east of UTC the last instant chrono
        // holds has no local time, west of it the first has none.
        let s = Schedule::parse("* * * * *").unwrap();
        let east: Tz = "Antarctica/South_Pole".parse().unwrap();
        let west: Tz = "America/Los_Angeles".parse().unwrap();
        assert_eq!(s.next_after(DateTime::<Utc>::MAX_UTC, east), None);
        assert_eq!(s.last_at_or_before(DateTime::<Utc>::MAX_UTC, east), None);
        assert_eq!(s.next_after(DateTime::<Utc>::MIN_UTC, west), None);
        assert_eq!(s.last_at_or_before(DateTime::<Utc>::MIN_UTC, west), None);
        assert!(s.upcoming(DateTime::<Utc>::MAX_UTC, east, 3).is_empty());
    }
}
