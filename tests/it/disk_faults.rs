//! Faults from the disk: the history database read-only, locked by another
//! writer, full, or failing one write. No reset is ever made that cannot be
//! recorded first, and a result that cannot be written is retried or, at
//! worst, settled from the live link by the next process.

use crate::common::{Setup, TestApp, Tuning, fast_api, signal, spawn_app};
use invite_rotator::engine::Engine;
use invite_rotator::rotation::RotateError;
use invite_rotator::store::Store;
use invite_rotator::store::{Cause, Status};
use sqlx::Connection;
use std::time::Duration;

async fn one_group() -> TestApp {
    let tuning = Tuning {
        schedule: "0 0 1 1 *",
        ..Tuning::default()
    };
    spawn_app(&[Setup::Admin], fast_api(), tuning).await
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_pending_row_cannot_be_written_the_api_is_never_called() {
    let app = one_group().await;

    let out = app
        .run_with(
            &["rotate", "group-0"],
            &[("FAILPOINTS", "store::begin=return")],
        )
        .await;

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        app.emulator.calls().is_empty(),
        "{:?}",
        app.emulator.calls()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("disk is full"),
        "the failure is shown: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_fails_to_write_twice_is_retried_and_recorded() {
    let app = one_group().await;

    let out = app
        .run_with(
            &["rotate", "group-0"],
            &[("FAILPOINTS", "store::settle=2*return")],
        )
        .await;

    assert!(out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("retrying"), "{}", stderr(&out));
    let rows = app.history().await;
    assert_eq!(rows[0].status, Status::Succeeded);
    let store = app.store().await;
    app.assert_chain_complete(&store, &app.groups[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_written_is_logged_and_settled_by_the_next_process() {
    // Arrange: every write of an outcome fails.
    let app = one_group().await;
    let out = app
        .run_with(
            &["rotate", "group-0"],
            &[("FAILPOINTS", "store::settle=return")],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let issued = app.emulator.current_code(&app.groups[0].jid).unwrap();
    let shown = invite_rotator::whatsapp::fingerprint(&issued).to_string();
    assert!(
        stderr(&out).contains(&shown) && !stderr(&out).contains(&issued),
        "the issued code's fingerprint is logged (never the live code itself)"
    );
    assert_eq!(app.history().await[0].status, Status::Pending);

    // Act: the next rotate finds the row's writer gone.
    let again = app.run(&["rotate", "group-0"]).await;

    // Assert: the first row got the code it issued; both resets are recorded.
    assert!(again.status.success(), "{again:?}");
    let rows = app.history().await;
    assert_eq!(rows[0].status, Status::Succeeded);
    assert_eq!(rows[0].new_invite_code.as_deref(), Some(issued.as_str()));
    let store = app.store().await;
    app.assert_chain_complete(&store, &app.groups[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reports_an_unwritable_history_loudly_and_keeps_running() {
    // Arrange: due every second; the first three pending rows cannot be written.
    let tuning = Tuning {
        schedule: "* * * * * *",
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin], fast_api(), tuning).await;
    let mut daemon = app.spawn_daemon_with(&[("FAILPOINTS", "store::begin=3*return")]);

    // Act: wait for it to rotate once the fault has passed.
    app.wait_for(
        "rotations after the fault",
        Duration::from_secs(30),
        |rows| {
            rows.iter()
                .filter(|r| r.status == Status::Succeeded)
                .count()
                >= 2
        },
    )
    .await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().await.unwrap().success());

    // Assert: three loud errors, and no reset without its row.
    let log = std::fs::read_to_string(app.daemon_log()).unwrap();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("history cannot be written"))
        .count();
    assert_eq!(errors, 3, "{log}");
    let rows = app.history().await;
    let recorded_resets: i64 = rows.iter().map(|r| r.attempts).sum();
    assert_eq!(
        app.emulator.reset_calls(&app.groups[0].jid) as i64,
        recorded_resets
    );
    let store = app.store().await;
    app.assert_chain_complete(&store, &app.groups[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_history_stops_the_rotation_before_any_call() {
    let app = one_group().await;
    drop(app.store().await); // create it
    let (config, _) = app.engine().await;
    let read_only = Store::open_read_only(&app.db_path).await.unwrap();
    let engine = Engine::new(&config, read_only).unwrap();

    let result = engine.rotate(&config.groups[0], Cause::manual()).await;

    let Err(RotateError::Store(e)) = result else {
        panic!("expected a store error, got {result:?}");
    };
    assert!(e.to_string().contains("readonly"), "{e}");
    assert!(app.emulator.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_locked_by_another_writer_stops_the_rotation_before_any_call() {
    // Arrange: another process holds the write lock.
    let app = one_group().await;
    let (config, _) = app.engine().await;
    let mut other =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", app.db_path.display()))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let store = Store::open_with(&app.db_path, Duration::from_millis(300))
        .await
        .unwrap();
    let engine = Engine::new(&config, store).unwrap();

    // Act
    let locked = engine.rotate(&config.groups[0], Cause::manual()).await;
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let after = engine.rotate(&config.groups[0], Cause::manual()).await;

    // Assert: nothing was sent while locked; it works once the lock is gone.
    let Err(RotateError::Store(e)) = locked else {
        panic!("expected a store error, got {locked:?}");
    };
    assert!(e.to_string().contains("locked"), "{e}");
    assert_eq!(app.emulator.reset_calls(&app.groups[0].jid), 1);
    assert!(after.is_ok_and(|r| r.new_code.is_some()));
}

/// Runs `rotate` with the size of any file it writes capped at `bytes`
/// (`RLIMIT_FSIZE`: writes past it fail as on a full disk).
async fn rotate_with_file_size_limit(app: &TestApp, bytes: u64) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"));
    cmd.arg("--config")
        .arg(&app.config_path)
        .args(["rotate", "--all"])
        .env(crate::common::TOKEN_VAR, crate::common::TOKEN)
        .stdin(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls are made:
    // signal(2) and setrlimit(2).
    unsafe {
        cmd.pre_exec(move || {
            // A write past the limit must fail with EFBIG, not kill the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_any_write_never_loses_a_reset() {
    // Each limit lets the database grow a little further before a write
    // fails, so the failure strikes a different step of the rotation.
    let mut failed_runs = 0;
    for kib in (40..=120).step_by(8) {
        // Arrange: a database that exists, like a daemon's.
        let tuning = Tuning {
            schedule: "0 0 1 1 *",
            ..Tuning::default()
        };
        let app = spawn_app(&[Setup::Admin; 3], fast_api(), tuning).await;
        drop(app.store().await);

        // Act: rotate with the disk "full", then again with room.
        let full = rotate_with_file_size_limit(&app, kib * 1024).await;
        let free = app.run(&["rotate", "--all"]).await;
        failed_runs += usize::from(!full.status.success());

        // Assert: the second run settled whatever the first left, and every
        // code the API issued is in the history.
        assert!(free.status.success(), "{kib} KiB: {free:?}");
        let rows = app.history().await;
        assert!(
            rows.iter().all(|r| r.status != Status::Pending),
            "{kib} KiB: {rows:#?}\n{full:?}"
        );
        let store = app.store().await;
        for g in &app.groups {
            app.assert_chain_complete(&store, g).await;
        }
    }
    assert!(failed_runs >= 5, "the limits hit only {failed_runs} runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_daemon_could_not_write_is_settled_at_the_group_s_next_fire() {
    // Arrange: due every second; the first outcome cannot be written (all of
    // its retries fail), so its row stays pending, written by the daemon itself.
    let tuning = Tuning {
        schedule: "* * * * * *",
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin], fast_api(), tuning).await;
    let mut daemon = app.spawn_daemon_with(&[("FAILPOINTS", "store::settle=5*return")]);

    // Act: the next fires must not be blocked by that row.
    app.wait_for(
        "rotations after the failed write",
        Duration::from_secs(30),
        |rows| {
            rows.iter()
                .filter(|r| r.status == Status::Succeeded)
                .count()
                >= 3
        },
    )
    .await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().await.unwrap().success());

    // Assert: the row left pending was settled with the code its reset issued.
    let rows = app.history().await;
    assert_eq!(rows[0].status, Status::Succeeded, "{:#?}", rows[0]);
    let store = app.store().await;
    app.assert_chain_complete(&store, &app.groups[0]).await;
}
