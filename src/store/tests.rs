use super::*;
use std::os::unix::fs::PermissionsExt;

async fn started(store: &Store, group: &str) -> i64 {
    match store.begin(&new_rotation(group)).await.unwrap() {
        Begun::Started(id) => id,
        busy => panic!("{busy:?}"),
    }
}

fn failed() -> Settlement {
    Settlement {
        status: Status::Failed,
        attempts: 0,
        new_code: None,
        new_link: None,
        error: None,
    }
}

fn new_rotation(group: &str) -> NewRotation<'_> {
    NewRotation {
        group_name: group,
        group_jid: if group == "b" { "2@g.us" } else { "1@g.us" },
        instance: "sales",
        cause: Cause::manual(),
    }
}

#[tokio::test]
async fn the_database_is_created_with_its_directory_and_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/history.db");
    let store = Store::open(&path).await.unwrap();
    started(&store, "vip").await;
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", path.display());
        if let Ok(meta) = std::fs::metadata(&p) {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{p}");
        }
    }
    assert!(std::fs::metadata(&path).is_ok());
}

#[tokio::test]
async fn a_rotation_is_pending_until_settled_and_then_carries_its_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let id = started(&store, "vip").await;
    assert_eq!(
        store.rotation(id).await.unwrap().unwrap().status,
        Status::Pending
    );
    store.record_old_code(id, Some("OLD")).await.unwrap();
    store.record_attempt(id, 1).await.unwrap();
    let settlement = Settlement {
        status: Status::Succeeded,
        attempts: 1,
        new_code: Some("NEW".into()),
        new_link: Some("https://chat.whatsapp.com/NEW".into()),
        error: None,
    };
    store.settle(id, &settlement).await.unwrap();
    let row = store.rotation(id).await.unwrap().unwrap();
    assert_eq!(row.status, Status::Succeeded);
    assert_eq!(row.old_invite_code.as_deref(), Some("OLD"));
    assert_eq!(row.new_invite_code.as_deref(), Some("NEW"));
    assert!(row.finished_at.is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        store.last_issued_code("1@g.us").await.unwrap().as_deref(),
        Some("NEW")
    );
    assert_eq!(store.last_issued_code("2@g.us").await.unwrap(), None);
}

#[tokio::test]
async fn history_filters_by_group_status_and_keeps_the_newest_under_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let mut ids = Vec::new();
    for group in ["a", "b", "a", "a"] {
        ids.push(started(&store, group).await);
        // Settle it, so the next rotation of the group may begin.
        store.settle(*ids.last().unwrap(), &failed()).await.unwrap();
    }
    let q = HistoryQuery {
        group: Some("a".into()),
        limit: Some(2),
        ..HistoryQuery::default()
    };
    let got: Vec<i64> = store
        .history(&q)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, vec![ids[2], ids[3]]);
    let q = HistoryQuery {
        status: Some(Status::Succeeded),
        ..HistoryQuery::default()
    };
    assert!(store.history(&q).await.unwrap().is_empty());
    let q = HistoryQuery {
        status: Some(Status::Failed),
        ..HistoryQuery::default()
    };
    assert_eq!(store.history(&q).await.unwrap().len(), 4);
    let q = HistoryQuery {
        since: Some(Utc::now() + chrono::Duration::hours(1)),
        ..HistoryQuery::default()
    };
    assert!(store.history(&q).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_read_only_store_cannot_begin_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    drop(Store::open(&path).await.unwrap());
    let ro = Store::open_read_only(&path).await.unwrap();
    assert!(ro.begin(&new_rotation("vip")).await.is_err());
}

#[tokio::test]
async fn a_group_cannot_have_two_pending_rotations_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let first = started(&store, "vip").await;
    // Another process, same database: refused while the first is pending.
    let other = Store::open(&dir.path().join("h.db")).await.unwrap();
    let busy = other.begin(&new_rotation("vip")).await.unwrap();
    assert!(
        matches!(busy, Begun::Busy { ref since, ref owner } if since.ends_with('Z') && owner.as_deref() == Some(crate::owner::current())),
        "{busy:?}"
    );
    store.settle(first, &failed()).await.unwrap();
    assert!(matches!(
        other.begin(&new_rotation("vip")).await.unwrap(),
        Begun::Started(_)
    ));
}

fn succeeded(code: &str) -> Settlement {
    Settlement {
        status: Status::Succeeded,
        attempts: 1,
        new_code: Some(code.into()),
        new_link: None,
        error: None,
    }
}

#[tokio::test]
async fn group_records_give_each_groups_latest_rotation_success_and_failing_mark_in_order() {
    // Arrange: a succeeded then failed (failing); b failed then succeeded then
    // pending (not failing: the pending one is not settled); nothing for c.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let t0 = Utc::now();
    store.mark_seen(&["a", "b"], t0).await.unwrap();
    let a1 = started(&store, "a").await;
    store.settle(a1, &succeeded("A1")).await.unwrap();
    let a2 = started(&store, "a").await;
    store.settle(a2, &failed()).await.unwrap();
    let b1 = started(&store, "b").await;
    store.settle(b1, &failed()).await.unwrap();
    let b2 = started(&store, "b").await;
    store.settle(b2, &succeeded("B2")).await.unwrap();
    let b3 = started(&store, "b").await;

    // Act
    let records = store.group_records(&["c", "b", "a"]).await.unwrap();

    // Assert
    let names: Vec<&str> = records.iter().map(|r| r.group_name.as_str()).collect();
    assert_eq!(names, ["c", "b", "a"], "in the order asked");
    let (c, b, a) = (&records[0], &records[1], &records[2]);
    assert_eq!((c.last, c.last_success_at, c.failing), (None, None, false));
    assert_eq!(c.first_seen_at, None);
    assert!(a.failing);
    assert_eq!(a.last.map(|l| l.status), Some(Status::Failed));
    let a1_row = store.rotation(a1).await.unwrap().unwrap();
    assert_eq!(
        a.last_success_at.map(timestamp_text),
        a1_row.finished_at.map(String::from),
        "the success's finish"
    );
    assert_eq!(
        a.first_seen_at.map(timestamp_text),
        Some(timestamp_text(t0))
    );
    assert!(!b.failing, "the latest settled rotation succeeded");
    assert_eq!(b.last.map(|l| l.status), Some(Status::Pending));
    let b3_row = store.rotation(b3).await.unwrap().unwrap();
    assert_eq!(
        b.last.map(|l| timestamp_text(l.started_at)),
        Some(b3_row.started_at.0)
    );
}

/// Plan lines that read a whole table or index.
fn scans_of_rotations(plan: &[String]) -> Vec<&String> {
    // The only scan allowed is of the list of names `status` passes in.
    plan.iter()
        .filter(|l| l.starts_with("SCAN") && !l.contains("json_each"))
        .collect()
}

#[tokio::test]
async fn status_and_audit_queries_seek_in_indexes_and_never_scan_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let audits = [
        HistoryQuery {
            group: Some("vip".into()),
            limit: Some(50),
            ..HistoryQuery::default()
        },
        HistoryQuery {
            since: Some(Utc::now() - chrono::Duration::days(30)),
            status: Some(Status::Failed),
            ..HistoryQuery::default()
        },
    ];
    for q in &audits {
        let plan = store.explain_history(q).await.unwrap();
        assert!(scans_of_rotations(&plan).is_empty(), "{q:?}: {plan:#?}");
        assert!(plan.iter().any(|l| l.contains("USING")), "{plan:#?}");
    }
    let plan = store.explain_group_records(&["a", "b"]).await.unwrap();
    assert!(scans_of_rotations(&plan).is_empty(), "{plan:#?}");
    assert!(
        plan.iter().any(|l| l.contains("rotations_by_group_status")),
        "{plan:#?}"
    );
}

#[tokio::test]
async fn history_hands_rows_over_oldest_first_and_stops_at_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(started(&store, "a").await);
        store.settle(*ids.last().unwrap(), &failed()).await.unwrap();
    }
    let mut seen = Vec::new();
    store
        .each_in_history(&HistoryQuery::default(), |r| {
            seen.push(r.id);
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
    assert_eq!(seen, ids);

    let mut handed = 0;
    let stopped = store
        .each_in_history(&HistoryQuery::default(), |_| {
            handed += 1;
            Err(StoreError::new("stdout", "reader gone"))
        })
        .await;
    assert!(stopped.is_err());
    assert_eq!(handed, 1);
}

#[tokio::test]
async fn every_ended_rotation_is_queued_once_per_hook_however_the_events_are_worked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let to = |_: &str, _: &str| {
        vec![Recipient {
            key: "k".into(),
            name: "hook".into(),
        }]
    };
    let now = Utc::now();

    // Events worked one batch at a time: the queue is emptied between them.
    let first = started(&store, "a").await;
    store.settle(first, &succeeded("C1")).await.unwrap();
    assert_eq!(store.fan_out(to, now).await.unwrap(), 1);
    let second = started(&store, "a").await;
    store.settle(second, &succeeded("C2")).await.unwrap();
    assert_eq!(store.fan_out(to, now).await.unwrap(), 1);
    assert_eq!(store.fan_out(to, now).await.unwrap(), 0, "nothing twice");

    let keys: Vec<String> = store
        .deliveries_of("k")
        .await
        .unwrap()
        .into_iter()
        .map(|(key, ..)| key)
        .collect();
    assert_eq!(
        keys,
        [
            format!("invite-rotator-{first}-succeeded-k"),
            format!("invite-rotator-{second}-succeeded-k")
        ]
    );
}

#[tokio::test]
async fn a_settlement_applies_only_to_the_status_it_was_made_from() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let id = started(&store, "a").await;

    // Two processes settle the same pending row: the second finds it settled.
    assert!(
        store
            .settle_from(id, Status::Pending, &succeeded("C1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .settle_from(id, Status::Pending, &failed())
            .await
            .unwrap()
    );

    let row = store.rotation(id).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.new_invite_code.as_deref()),
        ("succeeded", Some("C1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_a_new_database_at_once_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");

    let opened = futures_util::future::join_all((0..4).map(|_| Store::open(&path))).await;

    for store in opened {
        store.unwrap();
    }
}

#[tokio::test]
async fn pruning_removes_old_calls_in_batches_keeps_new_ones_and_every_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let id = started(&store, "vip").await;
    store.settle(id, &failed()).await.unwrap();
    let now = Utc::now();
    let log = |age_days: i64| CallRecord {
        rotation_id: id,
        endpoint: "info",
        started_at: now - chrono::Duration::days(age_days),
        duration: Duration::from_millis(5),
        http_status: Some(200),
        outcome: "success",
        error: Some("x".repeat(500)),
    };
    for _ in 0..1200 {
        store.log_call(&log(100)).await.unwrap();
    }
    for _ in 0..3 {
        store.log_call(&log(1)).await.unwrap();
    }
    let (pages_before, _) = store.page_counts().await.unwrap();

    let cutoff = now - chrono::Duration::days(90);
    let first = store.prune_batch(cutoff, 500).await.unwrap();
    let mut total = first.calls;
    loop {
        let next = store.prune_batch(cutoff, 500).await.unwrap();
        total += next.calls;
        if next.calls == 0 {
            break;
        }
    }
    store.release_free_pages().await.unwrap();

    assert_eq!(first.calls, 500, "one batch at a time");
    assert_eq!(total, 1200);
    assert_eq!(
        store.calls_of(id).await.unwrap().len(),
        3,
        "young calls stay"
    );
    assert!(
        store.rotation(id).await.unwrap().is_some(),
        "rotations stay"
    );
    let (pages_after, free) = store.page_counts().await.unwrap();
    assert!(
        pages_after < pages_before / 2 && free == 0,
        "the space goes back: {pages_before} pages, then {pages_after} ({free} free)"
    );
}
