//! Reloads of the daemon loop under tokio's paused clock.

use super::tests::{config, paused, store};
use super::*;
use chrono::TimeZone;

/// Tells the test when start-up is over.
struct Ready(Arc<tokio::sync::Notify>);

impl Lifecycle for Ready {
    fn ready(&self) {
        self.0.notify_one();
    }
}

#[tokio::test]
async fn a_reload_adds_removes_and_reschedules_groups_without_a_restart() {
    let before = config(
        &[
            ("kept", "0 3 * * *", "UTC"),
            ("removed", "0 3 * * *", "UTC"),
            ("moved", "0 3 * * *", "UTC"),
        ],
        "",
    );
    let after = config(
        &[
            ("kept", "0 3 * * *", "UTC"),
            ("moved", "0 4 * * *", "UTC"),
            ("added", "0 5 * * *", "UTC"),
        ],
        "",
    );
    let (store, _dir) = store().await;
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
    let (clock, recorder) = paused(start, Duration::ZERO);
    let fired = recorder.fired.clone();
    let (reloads, reload_rx) = mpsc::channel(1);
    let ready = Arc::new(tokio::sync::Notify::new());
    let next = recorder.clone();
    let started = ready.clone();
    // No timer may be pending while the daemon waits on the database, or the
    // paused clock jumps to it: the reload waits for start-up to be over, and
    // the stop is not a timer but the last expected rotation.
    tokio::spawn(async move {
        started.notified().await;
        tokio::time::sleep(Duration::from_secs(3600)).await; // 01:00, before any group is due
        let _ = reloads
            .send(Reload {
                config: after,
                rotator: next,
            })
            .await;
    });
    let watched = fired.clone();
    let clock_for_stop = clock.clone();
    let stop = async move {
        // A short timer, polled with the loop; gives up at noon if "added" never fires.
        let give_up = start + chrono::Duration::hours(12);
        while !watched.lock().unwrap().iter().any(|f| f.group == "added")
            && clock_for_stop.now() < give_up
        {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };

    run(
        before,
        recorder,
        store,
        clock,
        &Ready(ready),
        stop,
        Inputs::reloads(reload_rx),
    )
    .await
    .unwrap();

    let mut got: Vec<(String, u32)> = fired
        .lock()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f.group.clone(),
                f.due.format("%H").to_string().parse().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("added".to_owned(), 5),
            ("kept".to_owned(), 3),
            ("moved".to_owned(), 4)
        ]
    );
}
