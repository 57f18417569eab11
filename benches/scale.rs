//! 10,000 groups due in the same second, through the real daemon loop,
//! engine, store (SQLite) and shared rate budget, against the emulator with
//! a fast limit: the full scale of the integration test
//! `scale::a_thousand_groups_due_in_the_same_second_all_rotate_and_none_is_dropped`,
//! which runs 1,000 groups in `cargo test`. The same checks: every group
//! rotated once, by its schedule, for that second, none refused by the API,
//! none dropped. Printed: the set-up, the daemon's start, and the time from
//! the due second to the last settled rotation.
//!
//! Run: `cargo bench --bench scale` (`SCALE_GROUPS=N` for another count).

use chrono::{Timelike, Utc};
use invite_rotator::clock::SystemClock;
use invite_rotator::config::{Config, Purpose};
use invite_rotator::daemon::{self, Quiet};
use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership};
use invite_rotator::engine::Engine;
use invite_rotator::store::{HistoryQuery, Status, Store, Trigger};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-scale-token";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let groups: usize = std::env::var("SCALE_GROUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    println!(
        "machine: {} cores; {groups} groups due in one second",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Arrange: the emulator and a config, as the test's `spawn_app` makes them.
    let begun = Instant::now();
    let fast = 3_000_000; // calls a minute: the limit is not what is measured here
    let emulator = Emulator::new(EmulatorOptions {
        requests_per_minute: fast,
        ..EmulatorOptions::default()
    });
    emulator.add_instance("bench", TOKEN);
    let jids: Vec<String> = (0..groups)
        .map(|i| format!("1203634{i:011}@g.us"))
        .collect();
    for jid in &jids {
        drop(emulator.add_group("bench", jid, Membership::Admin));
    }
    let server = emulator.clone().spawn().await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("history.db");
    // Due ten seconds from now, however long the set-up below takes.
    let due = Utc::now() + chrono::Duration::seconds(10);
    let schedule = format!("{} {} {} * * *", due.second(), due.minute(), due.hour());
    let mut text = format!(
        "[api]\nbase_url = \"{}\"\ntimeout = \"2s\"\n\n[rate_limit]\nrequests_per_minute = {fast}\n\
         max_concurrent = 64\n\n[retry]\nmax_attempts = 5\nbackoff_initial = \"10ms\"\n\
         backoff_max = \"50ms\"\n\n[database]\npath = \"{}\"\n\n[[instance]]\nname = \"bench\"\n\
         token = \"{TOKEN}\"\n",
        server.base_url(),
        db.display()
    );
    for (i, jid) in jids.iter().enumerate() {
        text.push_str(&format!(
            "\n[[group]]\nname = \"group-{i}\"\ninstance = \"bench\"\njid = \"{jid}\"\nschedule = \"{schedule}\"\n"
        ));
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text)?;
    let config = Config::load(&path, Purpose::Run)?;
    let store = Store::connect(&config.database).await?;
    let engine = Engine::new(&config, store.clone())?;
    println!("set-up (emulator, config, store): {:.2?}", begun.elapsed());

    // Act: the daemon until every group has a settled rotation.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_reloads, reload_rx) = tokio::sync::mpsc::channel(1);
    let started = Instant::now();
    let daemon = tokio::spawn(daemon::run(
        config,
        engine,
        store.clone(),
        Arc::new(SystemClock),
        &Quiet,
        async {
            let _ = stopped.await;
        },
        daemon::Inputs::reloads(reload_rx),
    ));
    let give_up = Instant::now() + Duration::from_secs(600);
    let settled = |rows: &[invite_rotator::store::Rotation]| {
        rows.iter().filter(|r| r.status != Status::Pending).count()
    };
    while settled(&store.history(&HistoryQuery::default()).await?) < groups {
        assert!(
            Instant::now() < give_up,
            "not all settled within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = Utc::now();
    let _ = stop.send(());
    daemon.await??;
    let wall = (done - due).to_std().unwrap_or_default();
    println!(
        "from the due second to {groups} settled rotations: {wall:.2?} ({:.0} rotations/s); \
         the daemon ran {:.2?} in all",
        groups as f64 / wall.as_secs_f64().max(0.001),
        started.elapsed()
    );

    // Assert: the test's checks, at full scale.
    let rows = store.history(&HistoryQuery::default()).await?;
    assert_eq!(rows.len(), groups, "each group once");
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Succeeded && r.trigger == Trigger::Schedule)
    );
    let due = invite_rotator::store::timestamp_text(due.with_nanosecond(0).unwrap_or(due));
    assert!(
        rows.iter()
            .all(|r| r.scheduled_for.as_deref() == Some(due.as_str()))
    );
    assert_eq!(emulator.rate_limited(), 0);
    let mut names: Vec<&str> = rows.iter().map(|r| r.group_name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), groups, "none dropped");
    println!("checks: all {groups} succeeded once, by the schedule, for that second; no 429");
    drop(server);
    Ok(())
}
