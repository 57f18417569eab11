use super::*;
use crate::schedule::Schedule;
use chrono::TimeZone;
use std::time::Duration;

fn group(schedule: &str, tz: &str, jitter: Duration) -> Group {
    Group {
        name: "vip".into(),
        instance: "sales".into(),
        jid: crate::whatsapp::Jid::parse("1@g.us").unwrap(),
        schedule: Schedule::parse(schedule).unwrap(),
        timezone: tz.parse().unwrap(),
        jitter,
        catch_up: true,
        events: Default::default(),
    }
}

fn daily() -> Group {
    group("0 3 * * *", "UTC", Duration::ZERO)
}

fn at(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, m, s).unwrap()
}

fn succeeded_at(t: DateTime<Utc>) -> GroupRecord {
    GroupRecord {
        group_name: "vip".into(),
        first_seen_at: Some(at(1, 0, 0, 0)),
        last: Some(LastRotation {
            started_at: t,
            status: Status::Succeeded,
        }),
        last_success_at: Some(t),
        failing: false,
    }
}

#[test]
fn a_group_that_missed_one_fire_is_not_overdue_and_one_that_missed_two_is() {
    let now = at(27, 12, 0, 0);
    let one_missed = succeeded_at(at(26, 3, 0, 30));
    let two_missed = succeeded_at(at(25, 3, 0, 30));

    assert!(!assess(0, &daily(), &succeeded_at(at(27, 3, 0, 30)), now).overdue);
    assert!(!assess(0, &daily(), &one_missed, now).overdue);
    let h = assess(0, &daily(), &two_missed, now);
    assert!(h.overdue && !h.is_healthy(), "{h:?}");
}

#[test]
fn a_schedule_is_overdue_after_two_of_its_own_fires_whatever_its_rhythm() {
    // Weekdays at 03:00; a success on Friday the 27th.
    let weekdays = group("0 3 * * 1-5", "UTC", Duration::ZERO);
    let friday = succeeded_at(at(27, 3, 0, 30));
    // The weekend misses nothing.
    assert!(!assess(0, &weekdays, &friday, at(29, 12, 0, 0)).overdue);
    // Monday's fire missed: one.
    assert!(!assess(0, &weekdays, &friday, at(30, 12, 0, 0)).overdue);
    // Tuesday's too: two.
    let tuesday = Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap();
    assert!(assess(0, &weekdays, &friday, tuesday).overdue);
    assert_eq!(overdue_at(0, &weekdays, at(27, 3, 0, 30)), Some(tuesday));
}

#[test]
fn a_group_never_rotated_is_overdue_once_two_fires_went_by_since_it_was_seen() {
    let now = at(27, 12, 0, 0);
    let seen = |t: Option<DateTime<Utc>>| GroupRecord {
        group_name: "vip".into(),
        first_seen_at: t,
        ..GroupRecord::default()
    };

    assert!(!assess(0, &daily(), &seen(None), now).overdue, "never seen");
    // Seen after the 26th's fire: only the 27th's went by since.
    assert!(!assess(0, &daily(), &seen(Some(at(26, 4, 0, 0))), now).overdue);
    // Seen before it: the 26th's and the 27th's went by without a success.
    assert!(assess(0, &daily(), &seen(Some(at(26, 0, 0, 0))), now).overdue);
}

#[test]
fn a_rotation_in_flight_for_the_latest_fire_does_not_flip_the_overdue_mark() {
    // Nov 26 was missed; Nov 27's rotation is running, 40 s in, longer than
    // Nov 25's took.
    let now = at(27, 3, 0, 40);
    let mut record = succeeded_at(at(25, 3, 0, 30));
    assert!(
        assess(0, &daily(), &record, now).overdue,
        "nothing in flight"
    );
    record.last = Some(LastRotation {
        started_at: at(27, 3, 0, 0),
        status: Status::Pending,
    });
    assert!(!assess(0, &daily(), &record, now).overdue);
    // A pending row left from an older fire (a crash) does not hold the mark off.
    record.last = Some(LastRotation {
        started_at: at(26, 3, 0, 0),
        status: Status::Pending,
    });
    assert!(assess(0, &daily(), &record, now).overdue);
}

#[test]
fn the_next_rotation_is_the_daemons_next_fire_jitter_included_in_the_groups_zone() {
    let g = group("0 3 * * *", "America/Sao_Paulo", Duration::from_secs(3600));
    let now = at(27, 12, 0, 0);

    let h = assess(0, &g, &GroupRecord::default(), now);

    let fire = timers::upcoming_fire(0, &g, now).unwrap();
    let next = h.next.unwrap();
    assert_eq!(next.with_timezone(&Utc), fire.at);
    assert!(fire.at > fire.due, "the jitter share is added");
    assert_eq!(next.to_rfc3339().get(..13), Some("2026-11-28T03"));
    assert!(next.to_rfc3339().ends_with("-03:00"), "{next}");
}

#[test]
fn failing_follows_the_latest_settled_rotation() {
    let mut record = succeeded_at(at(27, 3, 0, 30));
    record.failing = true;
    let h = assess(0, &daily(), &record, at(27, 12, 0, 0));
    assert!(h.failing && !h.overdue && !h.is_healthy());
}
