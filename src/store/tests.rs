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
async fn a_read_only_store_cannot_begin_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    drop(Store::open(&path).await.unwrap());
    let ro = Store::open_read_only(&path).await.unwrap();
    assert!(ro.begin(&new_rotation("vip")).await.is_err());
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
