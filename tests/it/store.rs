//! The store's behaviour, the same on both backends: every test here runs
//! on SQLite and on a real PostgreSQL (see `pg`), with the same queries.

use chrono::Utc;
use invite_rotator::config::Database;
use invite_rotator::store::{
    Begun, Cause, HistoryQuery, NewRotation, Recipient, Settlement, Status, Store, StoreError,
    timestamp_text,
};

/// Runs each named test on SQLite and on PostgreSQL: `NAME::on_sqlite`,
/// `NAME::on_postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let db = invite_rotator::config::Database::Sqlite(dir.path().join("h.db"));
                super::$name(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some(db) = crate::pg::database().await else { return };
                super::$name(&db).await;
            }
        }
    )*};
}

on_both_backends!(
    a_rotation_is_pending_until_settled_and_then_carries_its_codes,
    history_filters_by_group_status_and_keeps_the_newest_under_a_limit,
    a_group_cannot_have_two_pending_rotations_at_once,
    group_records_give_each_groups_latest_rotation_success_and_failing_mark_in_order,
    history_hands_rows_over_oldest_first_and_stops_at_the_first_error,
    every_ended_rotation_is_queued_once_per_hook_however_the_events_are_worked,
    a_settlement_applies_only_to_the_status_it_was_made_from,
    a_join_link_is_spent_at_most_max_uses_times_however_many_click_at_once,
);

/// Why a reader stopped.
#[derive(Debug)]
enum Stop {
    #[allow(dead_code)]
    Store(StoreError),
    Reader,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

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

async fn a_rotation_is_pending_until_settled_and_then_carries_its_codes(db: &Database) {
    let store = Store::connect(db).await.unwrap();
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

async fn history_filters_by_group_status_and_keeps_the_newest_under_a_limit(db: &Database) {
    let store = Store::connect(db).await.unwrap();
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

async fn a_group_cannot_have_two_pending_rotations_at_once(db: &Database) {
    let store = Store::connect(db).await.unwrap();
    let first = started(&store, "vip").await;
    // Another process, same database: refused while the first is pending.
    let other = Store::connect(db).await.unwrap();
    let busy = other.begin(&new_rotation("vip")).await.unwrap();
    assert!(
        matches!(busy, Begun::Busy { ref since, ref owner } if since.ends_with('Z') && owner.is_some()),
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

async fn group_records_give_each_groups_latest_rotation_success_and_failing_mark_in_order(
    db: &Database,
) {
    // pending (not failing: the pending one is not settled); nothing for c.
    let store = Store::connect(db).await.unwrap();
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

async fn history_hands_rows_over_oldest_first_and_stops_at_the_first_error(db: &Database) {
    let store = Store::connect(db).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(started(&store, "a").await);
        store.settle(*ids.last().unwrap(), &failed()).await.unwrap();
    }
    let mut seen = Vec::new();
    store
        .each_in_history(&HistoryQuery::default(), |r| {
            seen.push(r.id);
            Ok::<(), Stop>(())
        })
        .await
        .unwrap();
    assert_eq!(seen, ids);

    let mut handed = 0;
    let stopped = store
        .each_in_history(&HistoryQuery::default(), |_| {
            handed += 1;
            Err(Stop::Reader)
        })
        .await;
    assert!(stopped.is_err());
    assert_eq!(handed, 1);
}

async fn every_ended_rotation_is_queued_once_per_hook_however_the_events_are_worked(db: &Database) {
    let store = Store::connect(db).await.unwrap();
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

async fn a_settlement_applies_only_to_the_status_it_was_made_from(db: &Database) {
    let store = Store::connect(db).await.unwrap();
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

/// 20 spends at once of a 3-use link, as 20 visitors clicking Join on any
/// nodes: exactly 3 pass; counted uses of an unlimited link add up;
/// a revoked link spends nothing; the links' groups have their live codes.
async fn a_join_link_is_spent_at_most_max_uses_times_however_many_click_at_once(db: &Database) {
    use invite_rotator::store::{NewJoinLink, Spent};
    let store = Store::connect(db).await.unwrap();
    let link = |name: &'static str, slug: &'static str, max_uses| NewJoinLink {
        name,
        slug,
        group_name: "vip",
        group_jid: "120363400000000001@g.us",
        expires_at: None,
        max_uses,
        note: Some("for the test"),
    };
    assert!(
        store
            .create_join_link(&link("flyer", "s-flyer", Some(3)))
            .await
            .unwrap()
    );
    assert!(
        store
            .create_join_link(&link("poster", "s-poster", None))
            .await
            .unwrap()
    );
    assert!(
        !store
            .create_join_link(&link("flyer", "s-other", None))
            .await
            .unwrap(),
        "names are unique"
    );
    let links = store.join_links().await.unwrap();
    let id = |name: &str| links.iter().find(|l| l.name == name).unwrap().id;

    let clicks = (0..20).map(|_| {
        let (store, flyer) = (store.clone(), id("flyer"));
        tokio::spawn(async move { store.spend_join_link(flyer, Utc::now()).await.unwrap() })
    });
    let mut spent = 0;
    for click in clicks {
        if click.await.unwrap() != Spent::Gone {
            spent += 1;
        }
    }
    assert_eq!(spent, 3);

    let now = Utc::now();
    store
        .add_join_uses(&[(id("poster"), 40, now)])
        .await
        .unwrap();
    store
        .add_join_uses(&[(id("poster"), 2, now)])
        .await
        .unwrap();
    assert!(store.revoke_join_link("poster").await.unwrap());
    assert!(
        !store.revoke_join_link("poster").await.unwrap(),
        "revoked once"
    );
    assert_eq!(
        store
            .spend_join_link(id("poster"), Utc::now())
            .await
            .unwrap(),
        Spent::Gone
    );
    let links = store.join_links().await.unwrap();
    let uses: Vec<(String, i64, bool)> = links
        .iter()
        .map(|l| (l.name.clone(), l.uses, l.revoked_at.is_some()))
        .collect();
    assert_eq!(
        uses,
        [
            ("flyer".to_owned(), 3, false),
            ("poster".to_owned(), 42, true)
        ]
    );
    assert!(links.iter().all(|l| l.last_used_at.is_some()));
    // When: one row per spent use, one per batch of counted uses.
    let used = |id| {
        let store = store.clone();
        async move {
            let rows = store.join_uses(id).await.unwrap();
            rows.into_iter().map(|(_, n)| n).collect::<Vec<i64>>()
        }
    };
    assert_eq!(used(id("flyer")).await, [1, 1, 1]);
    assert_eq!(used(id("poster")).await, [40, 2]);
    assert!(
        store.join_codes().await.unwrap().is_empty(),
        "no rotation yet: no code"
    );
}
