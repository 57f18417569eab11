//! How a group is doing, for `status`: when it rotates next (the daemon's own
//! timer logic, jitter included), and whether it is overdue or failing.
//!
//! Pure: the history is read by the store and `now` is an argument, so tests
//! give any history at any time.

use crate::config::Group;
use crate::store::{GroupRecord, LastRotation, Status};
use crate::timers;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A group's state, as `status` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// When its next rotation goes (the cron time plus its jitter share), in
    /// its zone; none if the schedule never fires again.
    pub next: Option<DateTime<Tz>>,
    /// Its latest rotation, whatever its status.
    pub last: Option<LastRotation>,
    /// When its latest success finished.
    pub last_success_at: Option<DateTime<Utc>>,
    /// No success within the last two periods of its schedule (see [`assess`]).
    pub overdue: bool,
    /// Its latest settled rotation is `failed` or `unknown`.
    pub failing: bool,
}

impl Health {
    /// Neither overdue nor failing.
    pub fn is_healthy(&self) -> bool {
        !self.overdue && !self.failing
    }
}

/// Assesses `group` at `now` from what the history says of it.
///
/// **Overdue**: no success within two periods of the schedule before now,
/// where a period is the time between the last two fires that went at or
/// before now (so a weekday schedule's period is 3 days on a Monday and 1 day
/// otherwise). A group that never succeeded counts from when the daemon first
/// saw it (`groups_seen`); one the daemon never saw is not overdue. While the
/// rotation of the latest fire is in flight (`pending`), the two periods are
/// counted back from its start, so that a rotation taking its time does not
/// flip the mark.
///
/// **Failing**: the latest settled rotation (not `pending`) failed or ended
/// `unknown`.
pub fn assess(index: usize, group: &Group, record: &GroupRecord, now: DateTime<Utc>) -> Health {
    let next =
        timers::upcoming_fire(index, group, now).map(|f| f.at.with_timezone(&group.timezone));
    Health {
        next,
        last: record.last,
        last_success_at: record.last_success_at,
        overdue: is_overdue(group, record, now),
        failing: record.failing,
    }
}

fn is_overdue(group: &Group, record: &GroupRecord, now: DateTime<Utc>) -> bool {
    let Some((latest_fire, period)) = latest_fire_and_period(group, now) else {
        // A schedule that has not fired twice yet has no period to be late by.
        return false;
    };
    let Some(reference) = record.last_success_at.or(record.first_seen_at) else {
        return false;
    };
    let anchor = match record.last {
        Some(LastRotation {
            started_at,
            status: Status::Pending,
        }) if started_at >= latest_fire => started_at.min(now),
        _ => now,
    };
    period
        .checked_mul(2)
        .and_then(|two| anchor.checked_sub_signed(two))
        .is_some_and(|since| reference < since)
}

/// When the latest fire at or before `now` went (jitter included), and the
/// time between it and the fire before.
fn latest_fire_and_period(
    group: &Group,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, chrono::Duration)> {
    let latest = timers::missed_fire(group, DateTime::<Utc>::MIN_UTC, now)?;
    // Cron times are whole seconds: the fire before is at or before a second earlier.
    let before = group
        .schedule
        .last_at_or_before(latest - chrono::Duration::seconds(1), group.timezone)?
        .with_timezone(&Utc);
    let offset =
        chrono::Duration::from_std(timers::jitter_offset(&group.name, group.jitter)).ok()?;
    Some((latest.checked_add_signed(offset)?, latest - before))
}

#[cfg(test)]
mod tests;
