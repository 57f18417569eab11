//! The daemon loop under tokio's paused clock, with a rotator that records.

use super::*;
use crate::clock::TokioClock;
use crate::config::Purpose;
use chrono::TimeZone;
use std::path::Path;
use std::sync::Mutex;
use tokio::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Fired {
    pub(super) group: String,
    trigger: Trigger,
    pub(super) due: DateTime<Utc>,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
}

/// Records every rotation; each takes `takes` of (paused) time. `starts`
/// holds the groups in the order their rotations started.
#[derive(Clone)]
pub(super) struct Recorder {
    clock: Arc<dyn Clock>,
    takes: Duration,
    pub(super) fired: Arc<Mutex<Vec<Fired>>>,
    starts: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn new(clock: Arc<dyn Clock>, takes: Duration) -> Self {
        Recorder {
            clock,
            takes,
            fired: Arc::default(),
            starts: Arc::default(),
        }
    }
}

impl Rotator for Recorder {
    async fn rotate(&self, group: Group, cause: Cause) {
        self.starts.lock().unwrap().push(group.name.clone());
        let started = self.clock.now();
        let (trigger, due) = (cause.trigger, cause.scheduled_for.unwrap_or(started));
        tokio::time::sleep(self.takes).await;
        let finished = self.clock.now();
        let fired = Fired {
            group: group.name,
            trigger,
            due,
            started,
            finished,
        };
        self.fired.lock().unwrap().push(fired);
    }
}

pub(super) fn config(groups: &[(&str, &str, &str)], extra: &str) -> Config {
    let mut text = String::from("[[instance]]\nname = \"i\"\ntoken = \"t\"\n");
    for (i, (name, schedule, tz)) in groups.iter().enumerate() {
        text.push_str(&format!(
            "[[group]]\nname = \"{name}\"\ninstance = \"i\"\njid = \"{}@g.us\"\nschedule = \"{schedule}\"\ntimezone = \"{tz}\"\n{extra}\n",
            1000 + i
        ));
    }
    Config::parse(&text, Path::new("t.toml"), Purpose::Read).unwrap()
}

/// Pauses tokio's clock and makes a wall clock reading `start` and a recorder
/// whose rotations take `takes`.
pub(super) fn paused(start: DateTime<Utc>, takes: Duration) -> (Arc<dyn Clock>, Recorder) {
    tokio::time::pause();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
    let recorder = Recorder::new(clock.clone(), takes);
    (clock, recorder)
}

/// Runs the daemon with no reloads until `stop`.
async fn run_until(
    config: Config,
    recorder: Recorder,
    store: Store,
    clock: Arc<dyn Clock>,
    stop: impl Future<Output = ()>,
) {
    let (_reloads, reload_rx) = mpsc::channel(1);
    run(
        config,
        recorder,
        store,
        clock,
        &Quiet,
        stop,
        Inputs::reloads(reload_rx),
    )
    .await
    .unwrap();
}

/// Runs the daemon from `start` for `span` of paused time; returns what fired.
async fn run_for(
    config: Config,
    store: Store,
    start: DateTime<Utc>,
    span: Duration,
    takes: Duration,
) -> Vec<Fired> {
    let (clock, recorder) = paused(start, takes);
    let fired = recorder.fired.clone();
    run_until(config, recorder, store, clock, tokio::time::sleep(span)).await;
    let mut fired = fired.lock().unwrap().clone();
    fired.sort_by_key(|f| (f.due, f.group.clone()));
    fired
}

pub(super) async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    (store, dir)
}

#[tokio::test]
async fn a_week_of_schedules_over_several_zones_fires_exactly_when_croner_says_once() {
    // The week of the European (Oct 25) and American (Nov 1) autumn changes.
    let groups = [
        ("berlin-daily", "0 3 * * *", "Europe/Berlin"),
        ("berlin-hourly", "0 * * * *", "Europe/Berlin"),
        ("berlin-in-repeated-hour", "30 2 * * *", "Europe/Berlin"),
        (
            "new-york-in-repeated-hour",
            "30 1 * * *",
            "America/New_York",
        ),
        ("new-york-every-20-min", "*/20 * * * *", "America/New_York"),
        ("sao-paulo", "0 3 * * *", "America/Sao_Paulo"),
        ("kolkata-seconds", "30 0 12 * * *", "Asia/Kolkata"),
        ("sydney-weekly", "@weekly", "Australia/Sydney"),
    ];
    let config = config(&groups, "");
    let (store, _dir) = store().await;
    let start = Utc.with_ymd_and_hms(2026, 10, 24, 0, 0, 0).unwrap();
    let span = Duration::from_secs(9 * 24 * 3600);
    let end = start + chrono::Duration::from_std(span).unwrap();

    let fired = run_for(config.clone(), store, start, span, Duration::ZERO).await;

    let mut expected = Vec::new();
    for g in config.groups.iter() {
        let mut t = start;
        while let Some(next) = g.schedule.next_after(t, g.timezone) {
            let next = next.with_timezone(&Utc);
            if next >= end {
                break;
            }
            expected.push((next, g.name.clone()));
            t = next;
        }
    }
    expected.sort();
    let got: Vec<_> = fired.iter().map(|f| (f.due, f.group.clone())).collect();
    assert_eq!(got, expected, "every fire croner computes, once");
    for f in &fired {
        assert_eq!(f.trigger, Trigger::Schedule);
        let late = f.started - f.due;
        assert!(
            late >= chrono::Duration::zero() && late < chrono::Duration::seconds(1),
            "{f:?} started {late} late"
        );
    }
    // The DST cases, spelled out: the Berlin 02:30 fire runs once on Oct 25
    // (02:30 happens twice there), and so does New York's 01:30 on Nov 1.
    let on = |name: &str, day: u32| {
        fired
            .iter()
            .filter(|f| f.group == name && f.due.format("%d").to_string() == format!("{day:02}"))
            .count()
    };
    assert_eq!(on("berlin-in-repeated-hour", 25), 1);
    assert_eq!(on("new-york-in-repeated-hour", 1), 1);
    // The hourly schedule runs on each pass of Berlin's repeated hour: 25 fires that day.
    let berlin_day = |f: &&Fired| {
        f.due
            .with_timezone(&chrono_tz::Europe::Berlin)
            .format("%m-%d")
            .to_string()
            == "10-25"
    };
    assert_eq!(
        fired
            .iter()
            .filter(|f| f.group == "berlin-hourly")
            .filter(berlin_day)
            .count(),
        25
    );
}

#[tokio::test]
async fn jitter_delays_each_group_by_its_own_fixed_offset() {
    let config = config(
        &[("a", "0 3 * * *", "UTC"), ("b", "0 3 * * *", "UTC")],
        "jitter = \"10m\"",
    );
    let (store, _dir) = store().await;
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();

    let fired = run_for(
        config,
        store,
        start,
        Duration::from_secs(3 * 24 * 3600),
        Duration::ZERO,
    )
    .await;

    assert_eq!(fired.len(), 6);
    for f in &fired {
        let offset = timers::jitter_offset(&f.group, Duration::from_secs(600));
        let late = (f.started - f.due).to_std().unwrap();
        assert!(
            late >= offset && late < offset + Duration::from_secs(1),
            "{f:?}"
        );
    }
    assert_ne!(
        fired[0].started, fired[1].started,
        "groups on one schedule do not fire together"
    );
}

#[tokio::test]
async fn a_fire_that_finds_its_group_still_rotating_is_coalesced_not_stacked() {
    let config = config(&[("slow", "* * * * *", "UTC")], "");
    let (store, _dir) = store().await;
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 30).unwrap();

    // Each rotation takes 150 s; fires come every 60 s.
    let fired = run_for(
        config,
        store,
        start,
        Duration::from_secs(600),
        Duration::from_secs(150),
    )
    .await;

    for pair in fired.windows(2) {
        assert!(
            pair[1].started >= pair[0].finished,
            "rotations overlapped: {pair:?}"
        );
    }
    let dues: Vec<u32> = fired
        .iter()
        .map(|f| f.due.format("%M").to_string().parse().unwrap())
        .collect();
    assert_eq!(dues, [1, 4, 7], "fires during a rotation are coalesced");
}

#[tokio::test]
async fn ten_thousand_groups_due_in_the_same_second_all_start_in_due_order() {
    // Ten thousand groups due at 03:00:00, plus a hundred due one second
    // before them, listed last in the config.
    let names: Vec<String> = (0..10_100).map(|i| format!("g{i:05}")).collect();
    let groups: Vec<(&str, &str, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.as_str(),
                if i < 10_000 {
                    "0 0 3 * * *"
                } else {
                    "59 59 2 * * *"
                },
                "UTC",
            )
        })
        .collect();
    let config = config(&groups, "");
    let (store, _dir) = store().await;
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 2, 59, 0).unwrap();
    let (clock, recorder) = paused(start, Duration::from_millis(5));
    let (fired, starts) = (recorder.fired.clone(), recorder.starts.clone());

    run_until(
        config,
        recorder,
        store,
        clock,
        tokio::time::sleep(Duration::from_secs(3600)),
    )
    .await;

    assert_eq!(fired.lock().unwrap().len(), 10_100, "none dropped");
    // Started in due order: the hundred due first, then the ten thousand in
    // the order of the config (equal due times keep their order).
    let starts = starts.lock().unwrap().clone();
    let expected: Vec<String> = names[10_000..]
        .iter()
        .chain(&names[..10_000])
        .cloned()
        .collect();
    assert_eq!(starts, expected);
}

#[tokio::test]
async fn after_downtime_each_group_is_caught_up_once_and_new_groups_are_not() {
    let (store, _dir) = store().await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
    // The daemon saw "old" and "no-catch-up" on Nov 20, then went down.
    store.mark_seen(&["old", "no-catch-up"], t0).await.unwrap();
    let text = "[[instance]]\nname = \"i\"\ntoken = \"t\"\n\
        [[group]]\nname = \"old\"\ninstance = \"i\"\njid = \"1@g.us\"\nschedule = \"0 3 * * *\"\n\
        [[group]]\nname = \"no-catch-up\"\ninstance = \"i\"\njid = \"2@g.us\"\nschedule = \"0 3 * * *\"\ncatch_up = false\n\
        [[group]]\nname = \"new\"\ninstance = \"i\"\njid = \"3@g.us\"\nschedule = \"0 3 * * *\"\n";
    let config = Config::parse(text, Path::new("t.toml"), Purpose::Read).unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();

    // A short run: only what start-up does.
    let fired = run_for(
        config,
        store,
        start,
        Duration::from_secs(60),
        Duration::ZERO,
    )
    .await;

    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].group, "old");
    assert_eq!(fired[0].trigger, Trigger::CatchUp);
    assert_eq!(
        fired[0].due,
        Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap()
    );
}

#[tokio::test]
async fn in_a_skipped_hour_a_fixed_time_runs_once_after_the_gap_and_an_interval_skips_it() {
    // Berlin springs forward on 2026-03-29: 02:00 CET becomes 03:00 CEST.
    let groups = [
        ("fixed-in-gap", "30 2 * * *", "Europe/Berlin"),
        ("every-30-min", "*/30 * * * *", "Europe/Berlin"),
    ];
    let config = config(&groups, "");
    let (store, _dir) = store().await;
    let start = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();

    let fired = run_for(
        config,
        store,
        start,
        Duration::from_secs(24 * 3600),
        Duration::ZERO,
    )
    .await;

    let fixed: Vec<_> = fired
        .iter()
        .filter(|f| f.group == "fixed-in-gap")
        .map(|f| f.due)
        .collect();
    // 02:30 does not exist that night: it runs once, right after the gap (03:00 CEST = 01:00 UTC).
    assert_eq!(fixed, [Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()]);
    let interval: Vec<_> = fired
        .iter()
        .filter(|f| f.group == "every-30-min")
        .map(|f| f.due)
        .collect();
    // Every real half hour strictly between the two ends (12:30 to 11:30 UTC),
    // once: the local 02:00 and 02:30 that do not exist add nothing.
    assert_eq!(interval.len(), 47);
    assert!(
        interval
            .windows(2)
            .all(|w| w[1] - w[0] == chrono::Duration::minutes(30))
    );
    let mut unique = interval.clone();
    unique.dedup();
    assert_eq!(unique, interval);
}

#[tokio::test]
async fn at_a_stop_rotations_waiting_for_a_slot_never_start() {
    // One slot; three groups due at once; each rotation takes a minute.
    let groups = [
        ("a", "0 3 * * *", "UTC"),
        ("b", "0 3 * * *", "UTC"),
        ("c", "0 3 * * *", "UTC"),
    ];
    let mut config = config(&groups, "");
    config.rate_limit.max_concurrent = 1;
    let (store, _dir) = store().await;
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 2, 59, 59).unwrap();
    let (clock, recorder) = paused(start, Duration::from_secs(60));
    let starts = recorder.starts.clone();

    // Stop 5 s after they came due: "a" is running, "b" and "c" wait.
    let stop_at = Instant::now() + Duration::from_secs(6);
    run_until(
        config,
        recorder,
        store,
        clock,
        tokio::time::sleep_until(stop_at),
    )
    .await;

    assert_eq!(
        *starts.lock().unwrap(),
        ["a"],
        "nothing new starts once a stop is asked for"
    );
    assert!(Instant::now() - stop_at <= STOP_GRACE + Duration::from_millis(10));
}
