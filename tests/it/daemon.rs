//! The daemon as operators run it: the real binary, killed, stopped,
//! reloaded, under systemd, against the in-process emulator; and a node in
//! the test's process beside a `rotate`.
//!
//! These tests run on real time (the daemon is another process); they poll the
//! history for what they wait for, and assert no speed beyond the contract's
//! 10-second stop.

use crate::common::{Setup, TestApp, Tuning, fast_api, signal, spawn_app, wait_until};
use invite_rotator::emulator::{EmulatorOptions, Fault, Route};
use invite_rotator::node::Listeners;
use invite_rotator::store::Rotation;
use invite_rotator::store::{Status, Trigger};
use std::time::{Duration, Instant};

fn of<'a>(rows: &'a [Rotation], group: &str) -> impl Iterator<Item = &'a Rotation> {
    let group = group.to_owned();
    rows.iter().filter(move |r| r.group_name == group)
}

fn every_group(app: &TestApp, rows: &[Rotation], what: impl Fn(&Rotation) -> bool) -> bool {
    app.groups.iter().all(|g| of(rows, &g.name).any(&what))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_and_two_missed_fires_each_group_is_caught_up_exactly_once() {
    // Arrange: groups rotating every second.
    let tuning = Tuning {
        schedule: "* * * * * *",
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin; 3], fast_api(), tuning).await;
    let mut first = app.spawn_daemon();
    app.wait_for(
        "a scheduled rotation of every group",
        Duration::from_secs(20),
        |rows| {
            every_group(&app, rows, |r| {
                r.trigger == Trigger::Schedule && r.status == Status::Succeeded
            })
        },
    )
    .await;

    // Act: kill -9, stay down over two fires, start again.
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    // Down over two fires: past the second whole second after the latest
    // fire the killed daemon started (the history's latest due time).
    let latest_due = app
        .history()
        .await
        .iter()
        .filter_map(|r| r.scheduled_for.as_ref().and_then(|s| s.time()))
        .max()
        .expect("the killed daemon served fires");
    wait_until("two fires missed", Duration::from_secs(20), || async {
        chrono::Utc::now() > latest_due + chrono::Duration::seconds(2)
    })
    .await;
    let mut second = app.spawn_daemon();
    app.wait_for(
        "a catch-up of every group",
        Duration::from_secs(20),
        |rows| {
            every_group(&app, rows, |r| {
                r.trigger == Trigger::CatchUp && r.status != Status::Pending
            })
        },
    )
    .await;
    signal(&second, "TERM");
    let status = second.wait().await.unwrap();

    // Assert
    assert_eq!(status.code(), Some(0));
    let rows = app.history().await;
    for g in &app.groups {
        assert_eq!(
            of(&rows, &g.name)
                .filter(|r| r.trigger == Trigger::CatchUp)
                .count(),
            1,
            "{}",
            g.name
        );
    }
    assert!(
        rows.iter().all(|r| r.status != Status::Pending),
        "{rows:#?}"
    );
    let store = app.store().await;
    for g in &app.groups {
        app.assert_chain_complete(&store, g).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_resets_in_flight_exits_0_within_10_s_and_leaves_no_row_pending() {
    // Arrange: every group's first reset hangs far past the stop grace (a
    // 5 s timeout, then a 5 s wait before the read-back: 10 s against 8).
    // The next start, more than 5 s after the resets went, reads back at once.
    let tuning = Tuning {
        schedule: "* * * * * *",
        timeout: "5s",
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin; 3], fast_api(), tuning).await;
    for _ in &app.groups {
        app.emulator
            .push_fault(Route::Reset, Fault::Stall(Duration::from_secs(120)));
    }
    let mut daemon = app.spawn_daemon();
    app.wait_for(
        "a reset in flight for every group",
        Duration::from_secs(20),
        |rows| {
            every_group(&app, rows, |r| {
                r.status == Status::Pending && r.attempts == 1
            })
        },
    )
    .await;

    // Act
    let asked = Instant::now();
    signal(&daemon, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait()).await;

    // Assert
    let status = status.expect("the daemon stopped").unwrap();
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    let rows = app.history().await;
    assert!(
        rows.iter().all(|r| r.status != Status::Pending),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.status == Status::Unknown),
        "the cut resets are recorded as unknown"
    );

    // And the next start settles them from the live link: unchanged, so failed.
    let mut again = app.spawn_daemon();
    app.wait_for(
        "the cut rotations settled",
        Duration::from_secs(20),
        |rows| {
            rows.iter()
                .filter(|r| {
                    r.error
                        .as_deref()
                        .is_some_and(|e| e.contains("settled at start"))
                })
                .count()
                >= 3
        },
    )
    .await;
    signal(&again, "TERM");
    assert_eq!(again.wait().await.unwrap().code(), Some(0));
    let store = app.store().await;
    for g in &app.groups {
        app.assert_chain_complete(&store, g).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_and_a_rotate_beside_it_share_one_budget_and_get_no_429() {
    // Arrange: the API allows 10 calls per 1 s window (the minute, scaled
    // down); each process is told 540/min (9 per second). Two processes pacing
    // alone would send 18 a second.
    let options = EmulatorOptions {
        requests_per_minute: 10,
        window: Duration::from_secs(1),
        ..EmulatorOptions::default()
    };
    let tuning = Tuning {
        schedule: "* * * * * *",
        requests_per_minute: 540,
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin; 5], options, tuning).await;
    let node = app.spawn_node(Listeners::default()).await;
    app.wait_for("the daemon rotating", Duration::from_secs(20), |rows| {
        rows.iter()
            .filter(|r| r.status == Status::Succeeded)
            .count()
            >= 3
    })
    .await;

    // Act: a manual rotation of every group (another process) while the
    // daemon (a node in the test's process) runs.
    let manual = app.run(&["rotate", "--all"]).await;
    let stopped = node.stop().await;

    // Assert
    assert!(stopped.is_ok(), "{stopped:?}");
    assert_eq!(app.emulator.rate_limited(), 0, "the API answered 429");
    // Each group was rotated by hand, or skipped because the daemon was
    // rotating it at that moment (never both at once: see the chain check).
    let stdout = String::from_utf8_lossy(&manual.stdout);
    let rows = app.history().await;
    let manual_ok = rows
        .iter()
        .filter(|r| r.trigger == Trigger::Manual && r.status == Status::Succeeded)
        .count();
    let skipped = stdout.lines().filter(|l| l.contains(" skipped ")).count();
    assert_eq!(manual_ok + skipped, 5, "{stdout}");
    assert!(manual_ok > 0, "{stdout}");
    assert_eq!(
        manual.status.code(),
        Some(if skipped == 0 { 0 } else { 1 }),
        "{stdout}"
    );
    let store = app.store().await;
    for g in &app.groups {
        app.assert_chain_complete(&store, g).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_new_config_and_keeps_the_running_one_when_invalid() {
    // Arrange: one group rotating every second; a second one exists on the API
    // but not yet in the config.
    let tuning = Tuning {
        schedule: "* * * * * *",
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin; 2], fast_api(), tuning).await;
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let second_group = text.rfind("[[group]]").unwrap();
    std::fs::write(&app.config_path, &text[..second_group]).unwrap();
    let mut daemon = app.spawn_daemon();
    app.wait_for(
        "the first group rotating",
        Duration::from_secs(20),
        |rows| of(rows, "group-0").any(|r| r.status == Status::Succeeded),
    )
    .await;

    // Act 1: an invalid config, then SIGHUP: logged, the running one kept.
    std::fs::write(
        &app.config_path,
        format!("{}\nbogus_key = 1\n", &text[..second_group]),
    )
    .unwrap();
    signal(&daemon, "HUP");
    let before = app.history().await.len();
    app.wait_for(
        "rotations going on after a refused reload",
        Duration::from_secs(20),
        |rows| rows.len() >= before + 2,
    )
    .await;

    // Act 2: the full config (the second group added), then SIGHUP.
    std::fs::write(&app.config_path, &text).unwrap();
    signal(&daemon, "HUP");
    app.wait_for(
        "the added group rotating",
        Duration::from_secs(20),
        |rows| of(rows, "group-1").any(|r| r.status == Status::Succeeded),
    )
    .await;
    signal(&daemon, "TERM");
    let status = daemon.wait().await.unwrap();

    // Assert
    assert_eq!(status.code(), Some(0));
    let stderr = std::fs::read_to_string(app.daemon_log()).unwrap();
    assert!(
        stderr.contains("reload refused") && stderr.contains("bogus_key"),
        "{stderr}"
    );
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
    // The added group was not caught up at the reload: its first rotation is a scheduled one.
    let rows = app.history().await;
    assert!(
        of(&rows, "group-1").all(|r| r.trigger == Trigger::Schedule),
        "{rows:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_the_daemon_and_prints_a_history_with_rotations() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(["demo", "--seconds", "7"])
        .env_remove("INVITE_ROTATOR_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("The history"), "{stdout}");
    assert!(
        stdout.lines().filter(|l| l.contains(" succeeded ")).count() >= 3,
        "{stdout}"
    );
    assert!(
        stdout.contains("must be admin"),
        "the non-admin group's failure is shown: {stdout}"
    );
    // Events: a removal rotated vip, and an outside reset was recorded.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" vip ") && l.contains("member_removed")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" outside ") && l.contains(" succeeded ")),
        "{stdout}"
    );
    // The history is kept, and the command printed to read it works.
    let db = stdout
        .split("history --database ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no history command printed: {stdout}"));
    let history = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(["history", "--format", "json", "--database", db])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&history.stdout).lines().count() >= 4);
    assert!(stdout.contains(&format!("sqlite3 {db} ")), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("rate budget: 100 calls a minute per token")
            .count(),
        1,
        "the pacing is explained once: {stderr}"
    );
    let _ = std::fs::remove_dir_all(std::path::Path::new(db).parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_database_refuses_to_start() {
    let app = spawn_app(&[Setup::Admin], fast_api(), Tuning::default()).await;
    let mut first = app.spawn_daemon();
    app.wait_for("the first daemon started", Duration::from_secs(20), |_| {
        std::fs::read_to_string(app.daemon_log()).is_ok_and(|log| log.contains("daemon started"))
    })
    .await;

    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&app.config_path)
        .arg("run")
        .env(crate::common::TOKEN_VAR, crate::common::TOKEN)
        .output()
        .await
        .unwrap();

    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another invite-rotator daemon"));
    signal(&first, "TERM");
    assert_eq!(first.wait().await.unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_the_daemon_reports_ready_pings_the_watchdog_and_reports_stopping() {
    let app = spawn_app(&[Setup::Admin], fast_api(), Tuning::default()).await;
    let socket_path = app.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // As systemd does: WATCHDOG_PID names the daemon itself (exec keeps the shell's pid).
    let daemon = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" --config "$1" run"#)
        .arg(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg(&app.config_path)
        .env(crate::common::TOKEN_VAR, crate::common::TOKEN)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "30000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Reads datagrams until one holds `what` (blocking reads, off the runtime).
    let expect = |socket: std::os::unix::net::UnixDatagram, what: &'static str| {
        tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 512];
            loop {
                let n = socket
                    .recv(&mut buf)
                    .unwrap_or_else(|e| panic!("no {what}: {e}"));
                if String::from_utf8_lossy(&buf[..n]).contains(what) {
                    return socket;
                }
            }
        })
    };

    let socket = expect(socket, "READY=1").await.unwrap();
    let socket = expect(socket, "WATCHDOG=1").await.unwrap();
    signal(&daemon, "TERM");
    let _socket = expect(socket, "STOPPING=1").await.unwrap();
    let status = daemon.wait_with_output().await.unwrap().status;
    assert_eq!(status.code(), Some(0));
}
