//! Many groups due in the same second, through the real daemon loop, engine,
//! store and shared rate budget, against the emulator with a fast limit.
//!
//! `cargo test` runs 1,000 groups; the same scenario at the full 10,000 is
//! `cargo bench --bench scale` (benches/scale.rs, numbers in BENCHMARKS.md):
//! in a debug build 10,000 rotations took over two minutes of the suite.

use crate::common::{Setup, Tuning, spawn_app};
use chrono::{Timelike, Utc};
use invite_rotator::clock::SystemClock;
use invite_rotator::daemon::{self, Quiet};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::engine::Engine;
use invite_rotator::store::{Status, Trigger};
use std::sync::Arc;
use std::time::Duration;

const GROUPS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_groups_due_in_the_same_second_all_rotate_and_none_is_dropped() {
    // Arrange: 1,000 groups, then every one of them made due at one second,
    // three seconds after the config is written (however long setting up
    // took; the daemon below is started and has set its timers within a
    // fraction of that, even on a loaded machine).
    let fast = 3_000_000; // calls a minute: the limit is not what is measured here
    let options = EmulatorOptions {
        requests_per_minute: fast,
        ..EmulatorOptions::default()
    };
    let tuning = Tuning {
        requests_per_minute: fast,
        max_concurrent: 64,
        ..Tuning::default()
    };
    let app = spawn_app(&vec![Setup::Admin; GROUPS], options, tuning).await;
    let due = Utc::now() + chrono::Duration::seconds(3);
    let schedule = format!("{} {} {} * * *", due.second(), due.minute(), due.hour());
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace("\"0 3 * * *\"", &format!("\"{schedule}\"")),
    )
    .unwrap();
    let config = app.config();
    let store = app.store().await;
    let engine = Engine::new(&config, store.clone()).unwrap();

    // Act: the daemon until every group has a settled rotation.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_reloads, reload_rx) = tokio::sync::mpsc::channel(1);
    let daemon = tokio::spawn(daemon::run(
        config,
        engine,
        store,
        Arc::new(SystemClock),
        &Quiet,
        async {
            let _ = stopped.await;
        },
        daemon::Inputs::reloads(reload_rx),
    ));
    app.wait_for(
        "1,000 settled rotations",
        Duration::from_secs(240),
        |rows| rows.iter().filter(|r| r.status != Status::Pending).count() >= GROUPS,
    )
    .await;
    let _ = stop.send(());
    daemon.await.unwrap().unwrap();

    // Assert
    let rows = app.history().await;
    assert_eq!(rows.len(), GROUPS, "each group once");
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Succeeded && r.trigger == Trigger::Schedule)
    );
    let due = invite_rotator::store::timestamp_text(due.with_nanosecond(0).unwrap());
    assert!(
        rows.iter()
            .all(|r| r.scheduled_for.as_deref() == Some(due.as_str()))
    );
    assert_eq!(app.emulator.rate_limited(), 0);
    let mut groups: Vec<&str> = rows.iter().map(|r| r.group_name.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    assert_eq!(groups.len(), GROUPS, "none dropped");
}
