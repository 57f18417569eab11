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

#[tokio::test]
async fn raw_events_past_keep_go_and_those_a_rotation_names_keep_their_row_without_data() {
    use invite_rotator::store::{Cause, NewEvent, NewRotation, Store, Trigger};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let old = chrono::Utc::now() - chrono::Duration::days(40);
    let event = |n: usize, at| NewEvent {
        channel: "webhook",
        instance: "sales".into(),
        event: "group.flow".into(),
        kind: invite_rotator::store::EventKind::MemberRemoved,
        group_jid: Some("1@g.us".into()),
        digest: format!("digest-{n}"),
        repeat_window: Duration::from_secs(60),
        data: format!("{{\"n\": {n}}}"),
        received_at: at,
    };
    let events: Vec<NewEvent> = (0..1200).map(|n| event(n, old)).collect();
    store.accept_events(&events).await.unwrap();
    store
        .accept_events(&[event(5000, chrono::Utc::now())])
        .await
        .unwrap();
    let all = store.recent_events(10_000).await.unwrap();
    for e in &all {
        store.mark_event(e.id, "done").await.unwrap();
    }
    // A rotation names the first event.
    let named = all[0].id;
    let row = NewRotation {
        group_name: "vip",
        group_jid: "1@g.us",
        instance: "sales",
        cause: Cause::event(Trigger::MemberRemoved, named),
    };
    assert!(matches!(
        store.begin(&row).await.unwrap(),
        invite_rotator::store::Begun::Started(_)
    ));

    let before = chrono::Utc::now() - chrono::Duration::days(30);
    let mut pruned = 0;
    loop {
        match store.prune_events(before, 500).await.unwrap() {
            0 => break,
            n => pruned += n,
        }
    }

    let left = store.recent_events(10_000).await.unwrap();
    assert_eq!(pruned, 1200);
    assert_eq!(left.len(), 2, "the young one and the named one: {left:?}");
    let kept = left.iter().find(|e| e.id == named).unwrap();
    assert_eq!(kept.data, "null");
    assert!(left.iter().any(|e| e.data.contains("5000")));
}
