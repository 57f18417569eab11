use super::*;
use std::os::unix::fs::PermissionsExt;

fn new_rotation(group: &str) -> NewRotation<'_> {
    NewRotation {
        group_name: group,
        group_jid: "1@g.us",
        instance: "sales",
        trigger: Trigger::Manual,
        scheduled_for: None,
    }
}

#[tokio::test]
async fn the_database_is_created_with_its_directory_and_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/history.db");
    let store = Store::open(&path).await.unwrap();
    store.begin(&new_rotation("vip")).await.unwrap();
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
    let id = store.begin(&new_rotation("vip")).await.unwrap();
    assert_eq!(store.rotation(id).await.unwrap().unwrap().status, "pending");
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
    assert_eq!(row.status, "succeeded");
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
        ids.push(store.begin(&new_rotation(group)).await.unwrap());
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
        status: Some(Status::Failed),
        ..HistoryQuery::default()
    };
    assert!(store.history(&q).await.unwrap().is_empty());
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
