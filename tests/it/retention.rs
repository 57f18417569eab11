//! The history database does not grow without end: the daemon prunes the
//! call log past `keep_calls`, and keeps every rotation.

use crate::common::{Setup, Tuning, signal, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::store::CallRecord;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_prunes_calls_older_than_keep_calls_and_keeps_rotations() {
    // Arrange: a rotation whose calls are old, one whose calls are new.
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    app.edit_config(|text| text.replace("[database]\n", "[database]\nkeep_calls = \"30d\"\n"));
    assert_eq!(app.run(&["rotate", "group-0"]).await.status.code(), Some(0));
    let store = app.store().await;
    let old = app.history().await[0].id;
    for _ in 0..1200 {
        let call = CallRecord {
            rotation_id: old,
            endpoint: "info",
            started_at: chrono::Utc::now() - chrono::Duration::days(31),
            duration: Duration::from_millis(3),
            http_status: Some(200),
            outcome: "success",
            error: None,
        };
        store.log_call(&call).await.unwrap();
    }
    assert_eq!(app.run(&["rotate", "group-0"]).await.status.code(), Some(0));
    let new = app.history().await[1].id;
    let young = store.calls_of(new).await.unwrap().len();
    assert!(young >= 2);

    // Act: the daemon starts; its pruner runs at once.
    let mut daemon = app.spawn_daemon();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    let pruned = || std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
    while !pruned().contains("retention: pruned") {
        assert!(
            tokio::time::Instant::now() < give_up,
            "nothing was pruned:\n{}",
            pruned()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();

    // Assert: the rotations' own calls (made now) are young; only the 1,200 went.
    assert_eq!(store.calls_of(old).await.unwrap().len(), 2);
    assert_eq!(store.calls_of(new).await.unwrap().len(), young);
    assert_eq!(app.history().await.len(), 2, "rotations are never pruned");
    let log = std::fs::read_to_string(app.daemon_log()).unwrap();
    assert!(
        log.contains("retention: pruned") && log.contains("calls=1200"),
        "{log}"
    );
}
