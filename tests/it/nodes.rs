//! More than one node on one real PostgreSQL database: real binaries, real
//! signals. One node rotates; a kill -9 or a SIGSTOP of it hands the work
//! to another within the lease; the old one, woken, starts nothing; and
//! across all of it no due time is served twice, no group is rotated by two
//! nodes at once, nothing is left pending, and every code is in the history.

use crate::common::{
    Backend, INSTANCE, Setup, TOKEN, TOKEN_VAR, TestApp, Tuning, fast_api, signal, spawn_app_on,
    wait_until,
};
use invite_rotator::config::Database;
use invite_rotator::store::Status;
use sqlx::Connection;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The lease the tests run with: the shortest allowed.
const LEASE: Duration = Duration::from_secs(3);

/// A rotation row with the process that wrote it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    group_name: String,
    scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
    started_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    status: String,
    attempts: i64,
    owner: Option<String>,
}

impl Row {
    /// The writer's pid (owners are `boot/pid/start/nonce`).
    fn pid(&self) -> Option<u32> {
        self.owner.as_deref()?.split('/').nth(1)?.parse().ok()
    }
}

/// Every rotation, as the nodes wrote it; a database that does not answer
/// fails the test (an empty answer would pass every check below).
async fn rows(database: &Database) -> Vec<Row> {
    let Database::Postgres(pg) = database else {
        panic!("the node tests run on PostgreSQL");
    };
    let mut conn = sqlx::PgConnection::connect(pg.url.as_str())
        .await
        .expect("the test database answers");
    sqlx::query_as(
        "SELECT group_name, scheduled_for, started_at, finished_at, status, attempts, owner
         FROM rotations ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the rotations are read")
}

fn spawn_node(app: &TestApp) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(app.daemon_log())
        .expect("the log opens");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&app.config_path)
        .arg("run")
        .env(TOKEN_VAR, TOKEN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("a node starts")
}

/// The latest report of the node `pid` (every tick of its lease loop, a
/// third of the lease): its role and when the database saw it.
async fn report(database: &Database, pid: u32) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
    let Database::Postgres(pg) = database else {
        panic!("the node tests run on PostgreSQL");
    };
    let mut conn = sqlx::PgConnection::connect(pg.url.as_str())
        .await
        .expect("the test database answers");
    sqlx::query_as("SELECT role, seen_at FROM nodes WHERE pid = $1 ORDER BY seen_at DESC LIMIT 1")
        .bind(i64::from(pid))
        .fetch_optional(&mut conn)
        .await
        .expect("the nodes are read")
}

/// Waits until the node `pid` has reported itself standing by at least
/// `ticks` times after `after` (each report follows a try for the lease).
async fn standing_by(app: &TestApp, pid: u32, after: chrono::DateTime<chrono::Utc>, ticks: u32) {
    let mut since = after;
    for _ in 0..ticks {
        let seen = since;
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((role, at)) = report(&app.database, pid).await
                && role == "standby"
                && at > seen
            {
                since = at;
                break;
            }
            assert!(
                Instant::now() < give_up,
                "node {pid} did not report standing by"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until `pid` has written a rotation that started after `after`;
/// returns when that rotation started.
async fn first_rotation_by(
    app: &TestApp,
    pid: u32,
    after: chrono::DateTime<chrono::Utc>,
    limit: Duration,
) -> chrono::DateTime<chrono::Utc> {
    let give_up = Instant::now() + limit;
    loop {
        if let Some(r) = rows(&app.database)
            .await
            .into_iter()
            .find(|r| r.pid() == Some(pid) && r.started_at > after)
        {
            return r.started_at;
        }
        assert!(
            Instant::now() < give_up,
            "node {pid} rotated nothing within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_fail_over_within_the_lease_and_a_woken_node_starts_nothing() {
    // Arrange: four groups due every second; the API answers fast.
    let options = fast_api();
    let tuning = Tuning {
        timeout: "500ms",
        schedule: "* * * * * *",
        ..Tuning::default()
    };
    let Some(app) = spawn_app_on(Backend::Postgres, &[Setup::Admin; 4], options, tuning).await
    else {
        return;
    };
    app.edit_config(|t| format!("{t}\n[ha]\nlease = \"{}s\"\n", LEASE.as_secs()));
    // The tables, before any node starts (the checks below read them).
    drop(
        invite_rotator::store::Store::connect(&app.database)
            .await
            .expect("the test database opens"),
    );
    let mut a = spawn_node(&app);
    let a_pid = a.id().expect("a runs");
    first_rotation_by(
        &app,
        a_pid,
        chrono::Utc::now() - chrono::Duration::hours(1),
        Duration::from_secs(20),
    )
    .await;
    let mut b = spawn_node(&app);
    let b_pid = b.id().expect("b runs");
    // b tried for the lease twice and stood by both times.
    standing_by(
        &app,
        b_pid,
        chrono::Utc::now() - chrono::Duration::hours(1),
        2,
    )
    .await;
    let standing_by_rows = rows(&app.database).await;
    assert!(
        standing_by_rows.iter().all(|r| r.pid() != Some(b_pid)),
        "only the active node rotates"
    );

    // Act 1: kill -9 the active node.
    a.start_kill().expect("kill -9");
    let _ = a.wait().await;
    let killed = chrono::Utc::now();
    let took_over = first_rotation_by(&app, b_pid, killed, Duration::from_secs(30)).await;
    let failover = (took_over - killed).to_std().unwrap_or_default();
    println!("failover after kill -9: {failover:?}");
    assert!(
        failover <= LEASE + Duration::from_secs(2),
        "the standby started rotating {failover:?} after the kill"
    );

    // Act 2: a third node stands by; the active one (b) is frozen past its
    // lease, the third takes over, and b is woken.
    let mut c = spawn_node(&app);
    let c_pid = c.id().expect("c runs");
    standing_by(
        &app,
        c_pid,
        chrono::Utc::now() - chrono::Duration::hours(1),
        1,
    )
    .await;
    signal(&b, "STOP");
    let frozen = chrono::Utc::now();
    first_rotation_by(&app, c_pid, frozen, Duration::from_secs(30)).await;
    // Every group, those the frozen node left pending included: the new
    // active node settles rows of an earlier term though their writer runs.
    let give_up = Instant::now() + LEASE * 3;
    loop {
        let rows = rows(&app.database).await;
        let idle: Vec<&str> = app
            .groups
            .iter()
            .filter(|g| {
                !rows.iter().any(|r| {
                    r.group_name == g.name && r.pid() == Some(c_pid) && r.started_at > frozen
                })
            })
            .map(|g| g.name.as_str())
            .collect();
        if idle.is_empty() {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "groups the new active node did not rotate while the old one was frozen: {idle:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // b's lease ran out while it was frozen (c could not take it before).
    signal(&b, "CONT");
    let woken = chrono::Utc::now();
    // b, woken, learns it lost the lease and stands by; c rotates every
    // group again after that: whatever b might have started on waking
    // would be in the history by then.
    standing_by(&app, b_pid, woken, 1).await;
    let b_stood_by = chrono::Utc::now();
    wait_until(
        "a round of every group after b stood by",
        Duration::from_secs(30),
        || async {
            let rows = rows(&app.database).await;
            app.groups.iter().all(|g| {
                rows.iter().any(|r| {
                    r.group_name == g.name
                        && r.pid() == Some(c_pid)
                        && r.started_at > b_stood_by
                        && r.status != Status::Pending.as_str()
                })
            })
        },
    )
    .await;

    // Stop: every node cleanly.
    for node in [&mut b, &mut c] {
        signal(node, "TERM");
        let status = tokio::time::timeout(Duration::from_secs(20), node.wait())
            .await
            .expect("a node stops within 20 s")
            .expect("its status");
        assert!(status.success(), "{status:?}");
    }

    // Assert.
    let all = rows(&app.database).await;
    let by_woken_b: Vec<&Row> = all
        .iter()
        .filter(|r| r.pid() == Some(b_pid) && r.started_at > woken)
        .collect();
    assert!(
        by_woken_b.is_empty(),
        "the woken node started rotations: {by_woken_b:#?}"
    );
    // No due time served twice.
    let mut served: HashMap<(String, chrono::DateTime<chrono::Utc>), usize> = HashMap::new();
    for r in all
        .iter()
        .filter(|r| !(r.status == "failed" && r.attempts == 0))
    {
        if let Some(due) = r.scheduled_for {
            *served.entry((r.group_name.clone(), due)).or_default() += 1;
        }
    }
    let twice: Vec<_> = served.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "due times served twice: {twice:?}");
    // No group rotated by two nodes at once.
    for g in &app.groups {
        let mine: Vec<&Row> = all.iter().filter(|r| r.group_name == g.name).collect();
        for pair in mine.windows(2) {
            let (first, next) = (pair[0], pair[1]);
            if first.pid() != next.pid() {
                let ended = first.finished_at.unwrap_or(first.started_at);
                assert!(
                    ended <= next.started_at,
                    "{} rotated by two nodes at once: {pair:#?}",
                    g.name
                );
            }
        }
    }
    assert!(
        all.iter().all(|r| r.status != Status::Pending.as_str()),
        "nothing pending"
    );
    let store = app.store().await;
    for g in &app.groups {
        app.assert_chain_complete(&store, g).await;
    }
    let _ = INSTANCE;
}
