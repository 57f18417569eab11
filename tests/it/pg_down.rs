//! PostgreSQL down: a node, in the test's process, reaches its database
//! through a TCP relay the test can cut. While it is cut no rotation starts (its pending row
//! cannot be written, so no reset is sent), `/healthz` fails, nothing is
//! lost; once it is back, work resumes by itself.

use crate::common::node::loopback;
use crate::common::{Backend, Setup, Tuning, fast_api, spawn_app_on, wait_until};
use invite_rotator::config::Database;
use invite_rotator::emulator::Route;
use invite_rotator::node::Listeners;
use invite_rotator::store::Status;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay to `upstream` that can be cut (every connection closed, new ones
/// refused) and restored.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    /// Connections refused while cut.
    refused: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = watch::channel(0u64);
        let refused = Arc::new(AtomicUsize::new(0));
        let relay_up = up.clone();
        let relay_refused = refused.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !relay_up.load(Ordering::SeqCst) {
                    relay_refused.fetch_add(1, Ordering::SeqCst);
                    continue; // refused: dropped at once
                }
                let mut cuts = cuts.clone();
                // Only a cut from now on ends this connection.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Relay {
            port,
            up,
            cut,
            refused,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// What `/metrics` shows (empty when it does not answer).
async fn scrape(port: u16) -> String {
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap();
    match http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn healthz(port: u16) -> u16 {
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap();
    http.get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_cut_no_rotation_starts_healthz_fails_and_work_resumes_when_it_is_back() {
    // Arrange: groups due every second, the database behind the relay.
    let tuning = Tuning {
        schedule: "* * * * * *",
        ..Tuning::default()
    };
    let Some(app) = spawn_app_on(Backend::Postgres, &[Setup::Admin; 2], fast_api(), tuning).await
    else {
        return;
    };
    let Database::Postgres(pg) = &app.database else {
        unreachable!("a PostgreSQL app")
    };
    let upstream = pg.url.port().unwrap_or(5432);
    let relay = Relay::start(upstream).await;
    let (metrics_listener, metrics) = loopback().await;
    let mut relayed = pg.url.clone();
    relayed.set_port(Some(relay.port)).unwrap();
    app.edit_config(|t| {
        format!(
            "{}\n[ha]\nlease = \"3s\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
            t.replace(pg.url.as_str(), relayed.as_str())
        )
    });
    let node = app
        .spawn_node(Listeners {
            metrics: Some(metrics_listener),
            ..Listeners::default()
        })
        .await;
    app.wait_for("rotations", Duration::from_secs(30), |rows| {
        rows.iter()
            .filter(|r| r.status == Status::Succeeded)
            .count()
            >= 2
    })
    .await;
    assert_eq!(healthz(metrics).await, 200);

    // Act: the database goes away for a while: until the node stepped down
    // (it cannot renew its lease: no new work starts), /healthz said so, and
    // the node, down, went on trying the database (its standby's ticks).
    let resets = || {
        app.emulator
            .calls()
            .iter()
            .filter(|c| c.route == Route::Reset)
            .count()
    };
    relay.cut();
    wait_until("the node stepped down", Duration::from_secs(30), || async {
        scrape(metrics).await.contains("invite_rotator_active 0")
    })
    .await;
    let mut unhealthy = healthz(metrics).await;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while unhealthy != 503 && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
        unhealthy = healthz(metrics).await;
    }
    let resets_cut = resets();
    let tried = relay.refused.load(Ordering::SeqCst);
    wait_until(
        "the node trying the database",
        Duration::from_secs(30),
        || async { relay.refused.load(Ordering::SeqCst) >= tried + 2 },
    )
    .await;
    let resets_later = resets();
    let before = app.history().await.len();
    relay.restore();

    // Assert: nothing reset while it was down, /healthz said so, and work
    // resumed by itself.
    assert_eq!(unhealthy, 503, "healthz while the database is down");
    assert_eq!(
        resets_later, resets_cut,
        "no reset was sent without its pending row"
    );
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = app.history().await;
        if rows.len() > before + 2
            && rows
                .iter()
                .rev()
                .take(2)
                .all(|r| r.status != Status::Pending)
        {
            break;
        }
        if tokio::time::Instant::now() > give_up {
            panic!(
                "no rotations after the database came back ({} rows, {before} before)",
                rows.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = node.stop().await;
    assert!(stopped.is_ok(), "{stopped:?}");
    let rows = app.history().await;
    assert!(
        rows.iter().all(|r| r.status != Status::Pending),
        "nothing left pending"
    );
    let store = app.store().await;
    for g in &app.groups {
        app.assert_chain_complete(&store, g).await;
    }
}
