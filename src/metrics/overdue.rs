//! The overdue gauge, kept up to date as rotations end and as time passes,
//! never by rereading the history: each group has the instant it becomes
//! overdue ([`health::overdue_at`]), and a heap of those instants is popped
//! as they go by. A success moves its group's instant on. Idle, it costs
//! nothing; a success costs a heap push.

use crate::config::Group;
use crate::{health, timers};
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Which configured groups are overdue. 100,000 groups cost about 2 MB:
/// instants are whole seconds in a `u32` from [`EPOCH`].
pub(super) struct Overdue {
    groups: Arc<[Group]>,
    /// Group indices in name order, to find a group by name without a map.
    by_name: Vec<u32>,
    /// When each group becomes overdue ([`NEVER`]: never, or not seen yet).
    due: Vec<u32>,
    overdue: Vec<bool>,
    count: usize,
    heap: BinaryHeap<Reverse<(u32, u32)>>,
}

/// Seconds are counted from 2020-01-01T00:00:00Z (a `u32` lasts until 2156).
const EPOCH: i64 = 1_577_836_800;
/// No instant: never overdue.
const NEVER: u32 = u32::MAX;

fn seconds(t: DateTime<Utc>) -> u32 {
    u32::try_from((t.timestamp() - EPOCH).max(0)).unwrap_or(NEVER - 1)
}

impl Overdue {
    /// `groups`, each with its reference: its latest success, or when the
    /// daemon first saw it (in the groups' order); `by_name` is
    /// [`by_name`]`(&groups)`.
    pub(super) fn new(
        groups: Arc<[Group]>,
        by_name: Vec<u32>,
        references: &[Option<DateTime<Utc>>],
    ) -> Overdue {
        let mut tracker = Overdue {
            due: vec![NEVER; groups.len()],
            overdue: vec![false; groups.len()],
            count: 0,
            heap: BinaryHeap::with_capacity(groups.len()),
            by_name,
            groups,
        };
        tracker.due = deadlines(&tracker.groups, references);
        for (i, due) in tracker.due.iter().enumerate() {
            if let (true, Ok(index)) = (*due != NEVER, u32::try_from(i)) {
                tracker.heap.push(Reverse((*due, index)));
            }
        }
        tracker
    }

    fn set_reference(&mut self, i: usize, reference: DateTime<Utc>) {
        let due = health::overdue_at(i, &self.groups[i], reference).map_or(NEVER, seconds);
        self.due[i] = due;
        if let (true, Ok(index)) = (due != NEVER, u32::try_from(i)) {
            self.heap.push(Reverse((due, index)));
        }
    }

    /// A rotation of the group `name` succeeded at `at`.
    pub(super) fn succeeded(&mut self, name: &str, at: DateTime<Utc>) {
        let Some(i) = find(&self.groups, &self.by_name, name) else {
            return; // a group of another config (a reload raced it)
        };
        if std::mem::take(&mut self.overdue[i]) {
            self.count -= 1;
        }
        self.set_reference(i, at);
    }

    /// The groups overdue at `now`: those whose instant went by.
    pub(super) fn at(&mut self, now: DateTime<Utc>) -> usize {
        let now = seconds(now);
        while let Some(Reverse((due, i))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            let i = i as usize;
            // An entry a later success replaced is stale.
            if self.due[i] == due && !self.overdue[i] {
                self.overdue[i] = true;
                self.count += 1;
            }
        }
        self.count
    }
}

/// The indices of `groups` in name order, to find a group by name without a
/// map of names.
pub(super) fn by_name(groups: &[Group]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..groups.len())
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    order.sort_by(|a, b| groups[*a as usize].name.cmp(&groups[*b as usize].name));
    order
}

/// The index of the group `name`, by `order` ([`by_name`]).
pub(super) fn find(groups: &[Group], order: &[u32], name: &str) -> Option<usize> {
    let found = order
        .binary_search_by(|i| groups[*i as usize].name.as_str().cmp(name))
        .ok()?;
    Some(order[found] as usize)
}

/// Each group's overdue instant, exactly as [`health::overdue_at`] gives it,
/// computed in bulk: the groups on one schedule and zone walk that
/// schedule's fires once (100,000 groups on a few thousand schedules cost a
/// few thousand cron lookups, not 200,000).
fn deadlines(groups: &[Group], references: &[Option<DateTime<Utc>>]) -> Vec<u32> {
    use std::collections::HashMap;
    let mut due = vec![NEVER; groups.len()];
    // Per schedule and zone: (the instant its fires are searched after, the
    // group's jitter share, the group).
    type Query = (DateTime<Utc>, chrono::Duration, usize);
    let mut buckets: HashMap<(usize, chrono_tz::Tz), Vec<Query>> = HashMap::new();
    for (i, (g, reference)) in groups.iter().zip(references).enumerate() {
        let Some(reference) = reference else { continue };
        let Ok(offset) = chrono::Duration::from_std(timers::jitter_offset(&g.name, g.jitter))
        else {
            continue;
        };
        let Some(after) = reference.checked_sub_signed(offset) else {
            continue;
        };
        buckets
            .entry((g.schedule.id(), g.timezone))
            .or_default()
            .push((after, offset, i));
    }
    for mut queries in buckets.into_values() {
        queries.sort_by_key(|q| q.0);
        let (schedule, tz) = {
            let g = &groups[queries[0].2];
            (g.schedule.clone(), g.timezone)
        };
        let next = |t: DateTime<Utc>| schedule.next_after(t, tz).map(|f| f.with_timezone(&Utc));
        // A window of consecutive fires, moved along as the queries (in
        // order) move on: fires a query no longer needs are dropped, and a
        // query past the window starts a new one, so the walk holds a few
        // fires and costs a few lookups per query however far apart the
        // references are.
        let mut fires: std::collections::VecDeque<DateTime<Utc>> = Default::default();
        for (after, offset, i) in queries {
            while fires.front().is_some_and(|f| *f <= after) {
                fires.pop_front();
            }
            // The first fire strictly after `after`, then the one after it.
            if fires.is_empty()
                && let Some(first) = next(after)
            {
                fires.push_back(first);
            }
            if fires.len() == 1
                && let Some(second) = fires.back().copied().and_then(next)
            {
                fires.push_back(second);
            }
            due[i] = fires
                .get(1)
                .and_then(|second| second.checked_add_signed(offset))
                .map_or(NEVER, seconds);
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;
    use chrono::TimeZone;

    fn daily(name: &str) -> Group {
        Group {
            name: name.into(),
            instance: "i".into(),
            jid: crate::whatsapp::Jid::parse("1@g.us").unwrap(),
            schedule: Schedule::parse("0 3 * * *").unwrap(),
            timezone: chrono_tz::Tz::UTC,
            jitter: std::time::Duration::ZERO,
            catch_up: true,
            events: Default::default(),
        }
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn the_bulk_walk_gives_each_group_the_instant_health_gives_it() {
        let mut cache = std::collections::HashMap::new();
        let schedules = [
            "0 3 * * *",
            "*/7 * * * *",
            "0 9 * * 1-5",
            "30 2 * * *",
            "0 0 1 1 *",
        ];
        let zones = ["UTC", "Europe/Berlin", "America/Sao_Paulo"];
        let mut groups = Vec::new();
        let mut references = Vec::new();
        for i in 0..600 {
            let mut g = daily(&format!("g{i}"));
            g.schedule = Schedule::parse_shared(schedules[i % 5], &mut cache).unwrap();
            g.timezone = zones[i % 3].parse().unwrap();
            g.jitter = std::time::Duration::from_secs([0, 600, 7200][i % 3]);
            groups.push(g);
            // References spread over March, across Berlin's DST change.
            references.push((i % 7 != 0).then(|| {
                Utc.with_ymd_and_hms(2026, 3, 28, 0, 0, 0).unwrap()
                    + chrono::Duration::minutes((i * 37 % 4000) as i64)
            }));
        }

        let bulk = deadlines(&groups, &references);

        for (i, g) in groups.iter().enumerate() {
            let one = references[i]
                .and_then(|r| health::overdue_at(i, g, r))
                .map_or(NEVER, seconds);
            assert_eq!(bulk[i], one, "group {i}: {g:?} from {:?}", references[i]);
        }
    }

    #[test]
    fn groups_turn_overdue_as_time_passes_and_back_with_a_success() {
        let groups: Arc<[Group]> = vec![daily("b"), daily("a"), daily("never")].into();
        let order = by_name(&groups);
        let mut o = Overdue::new(groups, order, &[Some(at(25, 4)), Some(at(26, 4)), None]);

        assert_eq!(o.at(at(27, 2)), 0);
        assert_eq!(o.at(at(27, 3)), 1, "b missed the 26th and the 27th");
        assert_eq!(o.at(at(28, 3)), 2, "a missed the 27th and the 28th");
        o.succeeded("b", at(28, 4));
        assert_eq!(o.at(at(28, 5)), 1);
        o.succeeded("no-such-group", at(28, 4));
        assert_eq!(o.at(at(30, 3)), 2, "b again, two fires after its success");
    }
}
