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
pub(crate) struct Health {
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
    pub(crate) fn is_healthy(&self) -> bool {
        !self.overdue && !self.failing
    }
}

/// Assesses `group` (at `index` in its list) at `now` from what the history
/// says of it.
///
/// **Overdue**: two fires of its schedule have gone by (jitter included)
/// since its latest success, or since the daemon first saw it if it never
/// succeeded: one missed fire is tolerated, two are not, whatever the
/// schedule's rhythm (a weekday schedule is not overdue over a weekend). A
/// group the daemon never saw is not overdue. While the rotation of the very
/// fire that would make it overdue is in flight (`pending`), it is not yet:
/// a rotation taking its time does not flip the mark.
///
/// **Failing**: the latest settled rotation (not `pending`) failed or ended
/// `unknown`.
pub(crate) fn assess(
    index: usize,
    group: &Group,
    record: &GroupRecord,
    now: DateTime<Utc>,
) -> Health {
    let next =
        timers::upcoming_fire(index, group, now).map(|f| f.at.with_timezone(&group.timezone));
    Health {
        next,
        last: record.last,
        last_success_at: record.last_success_at,
        overdue: is_overdue(index, group, record, now),
        failing: record.failing,
    }
}

/// When `group` becomes overdue if nothing succeeds after `reference` (its
/// latest success, or when the daemon first saw it): when the second fire
/// after it goes. `None` if its schedule has fewer than two fires left.
pub(crate) fn overdue_at(
    index: usize,
    group: &Group,
    reference: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let first = timers::upcoming_fire(index, group, reference)?;
    Some(timers::next_fire(index, group, first.due)?.at)
}

fn is_overdue(index: usize, group: &Group, record: &GroupRecord, now: DateTime<Utc>) -> bool {
    let Some(at) = record
        .last_success_at
        .or(record.first_seen_at)
        .and_then(|reference| overdue_at(index, group, reference))
    else {
        return false;
    };
    if at > now {
        return false;
    }
    // The fire that made it overdue is the latest, and its rotation is running.
    let latest = timers::missed_fire(group, DateTime::<Utc>::MIN_UTC, now).and_then(|due| {
        let offset =
            chrono::Duration::from_std(timers::jitter_offset(&group.name, group.jitter)).ok()?;
        due.checked_add_signed(offset)
    });
    let in_flight = match (record.last, latest) {
        (
            Some(LastRotation {
                started_at,
                status: Status::Pending,
            }),
            Some(latest),
        ) => started_at >= latest && at >= latest,
        _ => false,
    };
    !in_flight
}

#[cfg(test)]
mod tests;
