//! The timer queue: one entry per group, ordered by its next fire time. An idle
//! group costs one heap entry and nothing per tick; the daemon sleeps until the
//! earliest entry.

use crate::clock;
use crate::config::Group;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A group's fire: the cron time it serves and when it actually goes (the
/// cron time plus the group's fixed jitter offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// The group's index in the list the timers were built from (an index, not
    /// a name: 100,000 idle groups cost 40 bytes each here).
    pub group: usize,
    /// The cron time (`scheduled_for` in the history).
    pub due: DateTime<Utc>,
    /// `due` plus the group's jitter offset.
    pub at: DateTime<Utc>,
}

/// The group's fixed share of its `jitter`, derived from its name (FNV-1a,
/// then MurmurHash3's finalizer so that names differing in one letter land far
/// apart), so
/// that it is the same at every fire and across restarts, like systemd's
/// `FixedRandomDelay`.
pub fn jitter_offset(name: &str, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    jitter.mul_f64(hash as f64 / u64::MAX as f64)
}

/// The first fire of `group` (at `index` in its list) whose cron time is
/// after `after`.
pub fn next_fire(index: usize, group: &Group, after: DateTime<Utc>) -> Option<Fire> {
    let due = group
        .schedule
        .next_after(after, group.timezone)?
        .with_timezone(&Utc);
    let at = due.checked_add_signed(offset_of(group)?)?;
    Some(Fire {
        group: index,
        due,
        at,
    })
}

/// The first fire of `group` that goes (jitter included) after `now`: what is
/// still to come, neither a fire already handled nor one skipped.
pub fn upcoming_fire(index: usize, group: &Group, now: DateTime<Utc>) -> Option<Fire> {
    next_fire(index, group, now.checked_sub_signed(offset_of(group)?)?)
}

fn offset_of(group: &Group) -> Option<chrono::Duration> {
    chrono::Duration::from_std(jitter_offset(&group.name, group.jitter)).ok()
}

/// The latest cron time of `group` whose fire (jitter included) went in
/// `(since, now]`: a fire missed while the daemon was down, to be made up once
/// however many were missed. Together with [`upcoming_fire`] this splits time
/// at `now` with nothing counted twice.
pub fn missed_fire(
    group: &Group,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let went_by = now.checked_sub_signed(offset_of(group)?)?;
    let last = group
        .schedule
        .last_at_or_before(went_by, group.timezone)?
        .with_timezone(&Utc);
    (last > since).then_some(last)
}

/// A heap entry: fire time, insertion number (so equal times keep due order),
/// due time, group.
type Entry = (DateTime<Utc>, u64, DateTime<Utc>, usize);

/// Entries ordered by fire time, then by insertion.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl Timers {
    /// The upcoming fire of every group (see [`upcoming_fire`]).
    pub fn new(groups: &[Group], now: DateTime<Utc>) -> Self {
        let mut timers = Timers::default();
        for (i, g) in groups.iter().enumerate() {
            if let Some(fire) = upcoming_fire(i, g, now) {
                timers.push(fire);
            }
        }
        timers
    }

    /// Adds a fire.
    pub fn push(&mut self, fire: Fire) {
        self.seq += 1;
        self.heap
            .push(Reverse((fire.at, self.seq, fire.due, fire.group)));
    }

    /// When the earliest fire goes.
    pub fn next_at(&self) -> Option<DateTime<Utc>> {
        self.heap.peek().map(|Reverse((at, ..))| *at)
    }

    /// How long the daemon may sleep: until the earliest fire, at most `cap`.
    pub fn nap(&self, now: DateTime<Utc>, cap: Duration) -> Duration {
        self.next_at()
            .map_or(cap, |at| clock::until(now, at).min(cap))
    }

    /// Takes the earliest fire if it is due at `now`.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Option<Fire> {
        if self.next_at()? > now {
            return None;
        }
        let Reverse((at, _, due, group)) = self.heap.pop()?;
        Some(Fire { group, due, at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;
    use chrono::TimeZone;

    fn group(name: &str, schedule: &str, tz: &str, jitter: Duration) -> Group {
        Group {
            name: name.into(),
            instance: "i".into(),
            jid: crate::whatsapp::Jid::parse("1@g.us").unwrap(),
            schedule: Schedule::parse(schedule).unwrap(),
            timezone: tz.parse().unwrap(),
            jitter,
            catch_up: true,
            events: Default::default(),
        }
    }

    #[test]
    fn jitter_is_stable_per_group_and_within_bounds() {
        let j = Duration::from_secs(600);
        let a = jitter_offset("vip", j);
        assert_eq!(a, jitter_offset("vip", j));
        assert!(a <= j);
        let offsets: std::collections::HashSet<_> = (0..50)
            .map(|i| jitter_offset(&format!("g{i}"), j))
            .collect();
        assert!(offsets.len() > 45, "groups on one schedule are spread out");
        // Names one letter apart are not bunched together.
        let (a, b) = (jitter_offset("a", j), jitter_offset("b", j));
        assert!(a.abs_diff(b) > Duration::from_secs(1), "{a:?} {b:?}");
        assert_eq!(jitter_offset("vip", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_missed_fire_is_the_latest_one_since_the_reference() {
        let g = group("g", "0 3 * * *", "UTC", Duration::ZERO);
        let since = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        assert_eq!(
            missed_fire(&g, since, now),
            Some(Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap())
        );
        let since = Utc.with_ymd_and_hms(2026, 11, 27, 4, 0, 0).unwrap();
        assert_eq!(missed_fire(&g, since, now), None);
    }

    #[test]
    fn a_fire_whose_jittered_time_is_still_ahead_is_upcoming_not_missed() {
        let g = group("g", "0 3 * * *", "UTC", Duration::from_secs(3600));
        let offset =
            chrono::Duration::from_std(jitter_offset("g", Duration::from_secs(3600))).unwrap();
        let due = Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap();
        let before_it_goes = due + offset - chrono::Duration::seconds(1);
        let since = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        assert_eq!(missed_fire(&g, since, before_it_goes), None);
        assert_eq!(
            upcoming_fire(0, &g, before_it_goes).map(|f| f.due),
            Some(due)
        );
        let after_it_went = due + offset + chrono::Duration::seconds(1);
        assert_eq!(missed_fire(&g, since, after_it_went), Some(due));
        assert!(upcoming_fire(0, &g, after_it_went).is_some_and(|f| f.due > due));
    }

    #[test]
    fn timers_pop_in_fire_order_and_equal_times_in_insertion_order() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        let groups: Vec<_> = (0..5)
            .map(|i| group(&format!("g{i}"), "0 3 * * *", "UTC", Duration::ZERO))
            .collect();
        let mut t = Timers::new(&groups, now);
        let due = Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap();
        assert_eq!(t.next_at(), Some(due));
        assert_eq!(t.pop_due(now), None);
        let order: Vec<String> = std::iter::from_fn(|| t.pop_due(due))
            .map(|f| groups[f.group].name.clone())
            .collect();
        assert_eq!(order, ["g0", "g1", "g2", "g3", "g4"]);
    }
}
