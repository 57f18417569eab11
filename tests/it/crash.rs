//! Crash consistency: the process is aborted at each step of a rotation (a
//! failpoint, see src/failpoint.rs), started again, and the history must then
//! hold what the API did: the new code if the reset happened, no second reset
//! where none was needed, nothing left `pending`.

use crate::common::{
    Backend, Setup, TestApp, Tuning, fast_api, on_both_backends, signal, spawn_app_on,
};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::store::Rotation;
use invite_rotator::store::Status;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

on_both_backends!(
    a_crash_right_after_the_pending_row_settles_as_failed_with_no_reset,
    a_crash_before_the_reset_is_sent_settles_as_failed_from_the_unchanged_link,
    a_crash_right_after_the_reset_returned_records_the_issued_code_at_start,
    a_crash_before_the_result_is_recorded_records_the_issued_code_at_start,
    a_crash_during_the_commit_of_the_result_records_the_issued_code_at_start,
    a_rotate_meeting_a_row_its_crashed_predecessor_left_settles_it_first,
    a_daemon_aborted_after_a_reset_records_it_when_started_again_and_goes_on,
    killed_at_random_moments_under_faults_the_history_still_holds_every_issued_code,
    a_reset_still_landing_when_its_process_died_is_read_back_late_enough_to_be_seen,
);

/// A group that never comes due during a test: only `rotate` and the
/// start-up settlement touch it. The API's timeout is also how long a
/// settlement waits after a dead process's reset before reading the link
/// back (`read_back_delay`): 1 s here, where no test is about that wait's
/// length (the emulator answers at once), so that each settlement waits
/// 1 s, not the default 2 s of the other tests.
fn yearly() -> Tuning {
    Tuning {
        schedule: "0 0 1 1 *",
        timeout: "1s",
        ..Tuning::default()
    }
}

/// On PostgreSQL, a lease of 3 s (the shortest allowed) instead of 10 (`[ha] lease`): a daemon
/// that died holding the lease keeps the next one waiting for it to run
/// out, and no test here is about how long that is.
fn short_lease(app: &TestApp, backend: Backend) {
    if backend == Backend::Postgres {
        app.edit_config(|text| format!("{text}\n[ha]\nlease = \"3s\"\n"));
    }
}

/// Aborts `rotate group-0` at the failpoint `point`, then starts the daemon,
/// whose start-up settles what the dead process left. Returns the app and the
/// group's rows once settled.
async fn crash_rotate_at_then_start_the_daemon(
    backend: Backend,
    point: &str,
) -> Option<(TestApp, Vec<Rotation>)> {
    let app = spawn_app_on(backend, &[Setup::Admin], fast_api(), yearly()).await?;
    let failpoints = format!("{point}=return");

    let crashed = app
        .run_with(&["rotate", "group-0"], &[("FAILPOINTS", &failpoints)])
        .await;
    assert_eq!(
        crashed.status.signal(),
        Some(libc::SIGABRT),
        "rotate should die at {point}: {crashed:?}"
    );
    let left = app.history().await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        left[0].status,
        Status::Pending,
        "a crash leaves the row pending"
    );

    let mut daemon = app.spawn_daemon();
    app.wait_for("the start-up settlement", Duration::from_secs(30), |rows| {
        rows.len() == 1 && rows[0].status != Status::Pending
    })
    .await;
    signal(&daemon, "TERM");
    let stopped = daemon.wait().await.unwrap();
    assert!(stopped.success(), "{stopped:?}");

    let store = app.store().await;
    app.assert_chain_complete(&store, &app.groups[0]).await;
    let rows = app.history().await;
    Some((app, rows))
}

/// The crashed rotation's reset happened: its row holds the code the API
/// issued, and the restart made no reset of its own.
fn assert_the_issued_code_was_recorded_without_a_second_reset(app: &TestApp, rows: &[Rotation]) {
    let chain = app.emulator.code_chain(&app.groups[0].jid);
    assert_eq!(rows[0].status, Status::Succeeded);
    assert_eq!(rows[0].new_invite_code.as_ref(), chain.get(1));
    assert_eq!(
        app.emulator.reset_calls(&app.groups[0].jid),
        1,
        "no second reset"
    );
}

async fn a_crash_right_after_the_pending_row_settles_as_failed_with_no_reset(backend: Backend) {
    let Some((app, rows)) =
        crash_rotate_at_then_start_the_daemon(backend, "rotation::after_begin").await
    else {
        return;
    };

    assert_eq!(rows[0].status, Status::Failed);
    assert_eq!(rows[0].attempts, 0);
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("before any reset")
    );
    assert_eq!(app.emulator.reset_calls(&app.groups[0].jid), 0);
}

async fn a_crash_before_the_reset_is_sent_settles_as_failed_from_the_unchanged_link(
    backend: Backend,
) {
    let Some((app, rows)) =
        crash_rotate_at_then_start_the_daemon(backend, "rotation::before_reset").await
    else {
        return;
    };

    assert_eq!(rows[0].status, Status::Failed);
    assert_eq!(
        rows[0].attempts, 1,
        "the attempt was recorded before the call"
    );
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("did not happen")
    );
    assert_eq!(app.emulator.reset_calls(&app.groups[0].jid), 0);
}

async fn a_crash_right_after_the_reset_returned_records_the_issued_code_at_start(backend: Backend) {
    let Some((app, rows)) =
        crash_rotate_at_then_start_the_daemon(backend, "rotation::after_reset").await
    else {
        return;
    };

    assert_the_issued_code_was_recorded_without_a_second_reset(&app, &rows);
}

async fn a_crash_before_the_result_is_recorded_records_the_issued_code_at_start(backend: Backend) {
    let Some((app, rows)) =
        crash_rotate_at_then_start_the_daemon(backend, "rotation::before_settle").await
    else {
        return;
    };

    assert_the_issued_code_was_recorded_without_a_second_reset(&app, &rows);
}

async fn a_crash_during_the_commit_of_the_result_records_the_issued_code_at_start(
    backend: Backend,
) {
    let Some((app, rows)) =
        crash_rotate_at_then_start_the_daemon(backend, "store::settle::before_commit").await
    else {
        return;
    };

    assert_the_issued_code_was_recorded_without_a_second_reset(&app, &rows);
}

async fn a_rotate_meeting_a_row_its_crashed_predecessor_left_settles_it_first(backend: Backend) {
    // Arrange: a `rotate` died right after its reset.
    let Some(app) = spawn_app_on(backend, &[Setup::Admin], fast_api(), yearly()).await else {
        return;
    };
    let crashed = app
        .run_with(
            &["rotate", "group-0"],
            &[("FAILPOINTS", "rotation::after_reset=return")],
        )
        .await;
    assert_eq!(crashed.status.signal(), Some(libc::SIGABRT));

    // Act: rotate again at once (no hour's wait: the writer is known dead).
    let again = app.run(&["rotate", "group-0"]).await;

    // Assert: both resets are in the history, in order; nothing pending.
    assert!(again.status.success(), "{again:?}");
    let rows = app.history().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.status == Status::Succeeded),
        "{rows:?}"
    );
    assert_eq!(app.emulator.reset_calls(&app.groups[0].jid), 2);
    let store = app.store().await;
    app.assert_chain_complete(&store, &app.groups[0]).await;
}

async fn a_daemon_aborted_after_a_reset_records_it_when_started_again_and_goes_on(
    backend: Backend,
) {
    // Arrange: due every second; the first daemon dies at its first reset.
    let tuning = Tuning {
        schedule: "* * * * * *",
        ..yearly()
    };
    let Some(app) = spawn_app_on(backend, &[Setup::Admin; 2], fast_api(), tuning).await else {
        return;
    };
    short_lease(&app, backend);
    let mut first = app.spawn_daemon_with(&[("FAILPOINTS", "rotation::after_reset=return")]);
    let died = tokio::time::timeout(Duration::from_secs(30), first.wait())
        .await
        .expect("the daemon dies at the failpoint")
        .unwrap();
    assert_eq!(died.signal(), Some(libc::SIGABRT), "{died:?}");

    // Act: start it again and let it rotate a few times.
    let mut second = app.spawn_daemon();
    app.wait_for(
        "three more rotations each",
        Duration::from_secs(60),
        |rows| {
            app.groups.iter().all(|g| {
                rows.iter()
                    .filter(|r| r.group_name == g.name && r.status == Status::Succeeded)
                    .count()
                    >= 3
            })
        },
    )
    .await;
    signal(&second, "TERM");
    assert!(second.wait().await.unwrap().success());

    // Assert: the crashed rotation's code is recorded; every chain complete.
    let rows = app.history().await;
    assert!(rows.iter().all(|r| r.status != Status::Pending), "{rows:?}");
    let store = app.store().await;
    for g in &app.groups {
        app.assert_chain_complete(&store, g).await;
    }
}

async fn killed_at_random_moments_under_faults_the_history_still_holds_every_issued_code(
    backend: Backend,
) {
    // Arrange: 30% of calls stall past the timeout, fail with 500 (before or
    // after the reset took effect), drop, or answer HTML; groups due every second.
    let options = EmulatorOptions {
        requests_per_minute: 60_000,
        fault_rate: 0.3,
        fault_stall: Duration::from_millis(600),
        ..EmulatorOptions::default()
    };
    let tuning = Tuning {
        timeout: "300ms",
        max_attempts: 3,
        schedule: "* * * * * *",
        ..Tuning::default()
    };
    let Some(app) = spawn_app_on(backend, &[Setup::Admin; 4], options, tuning).await else {
        return;
    };
    short_lease(&app, backend);
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    println!("kill moments seeded with {seed}");

    // Act: start, kill -9 at a random moment, six times over. The moment is
    // a random 0.2 to 2.5 s after the start, or sooner: a few ms after the
    // daemon's first, second, third or fourth call to the API (chosen at
    // random too), so that most kills land amid rotations rather than in
    // the idle wait for the next second.
    for _ in 0..6 {
        let mut daemon = app.spawn_daemon();
        let latest = tokio::time::Instant::now() + Duration::from_millis(rng.u64(200..2500));
        let calls = app.emulator.calls().len() + rng.usize(1..=4);
        while tokio::time::Instant::now() < latest && app.emulator.calls().len() < calls {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..100))).await;
        daemon.start_kill().unwrap();
        daemon.wait().await.unwrap();
    }
    // Then a calm run, until every group's latest rotation has succeeded.
    app.emulator.set_fault_rate(0.0);
    let calm_from = app.history().await.last().map_or(0, |r| r.id);
    let mut last = app.spawn_daemon();
    app.wait_for(
        "a success per group after the faults",
        Duration::from_secs(60),
        |rows| {
            app.groups.iter().all(|g| {
                rows.iter()
                    .rfind(|r| r.group_name == g.name)
                    .is_some_and(|r| r.id > calm_from && r.status == Status::Succeeded)
            })
        },
    )
    .await;
    signal(&last, "TERM");
    assert!(last.wait().await.unwrap().success());

    // Assert: every code the API issued is in the history, in order, with the
    // code it replaced; none invented; nothing pending or unknown.
    let store = app.store().await;
    for g in &app.groups {
        app.assert_chain_complete(&store, g).await;
    }
    let rows = app.history().await;
    let open: Vec<_> = rows
        .iter()
        .filter(|r| r.status == Status::Pending || r.status == Status::Unknown)
        .collect();
    assert!(open.is_empty(), "seed {seed}: {open:#?}");
    assert!(
        app.emulator.resets_applied() >= app.groups.len(),
        "the test rotated nothing"
    );
}

async fn a_reset_still_landing_when_its_process_died_is_read_back_late_enough_to_be_seen(
    backend: Backend,
) {
    // Arrange: the gateway answers 504 at once and the reset lands 0.5 s
    // later; the process dies as the 504 comes back. The read-back waits
    // the default 2 s (the API's timeout), well past the 0.5 s.
    let tuning = Tuning {
        timeout: "2s",
        ..yearly()
    };
    let Some(app) = spawn_app_on(backend, &[Setup::Admin], fast_api(), tuning).await else {
        return;
    };
    app.emulator.push_fault(
        invite_rotator::emulator::Route::Reset,
        invite_rotator::emulator::Fault::GatewayErrorThenReset(Duration::from_millis(500)),
    );
    let crashed = app
        .run_with(
            &["rotate", "group-0"],
            &[("FAILPOINTS", "rotation::after_reset=return")],
        )
        .await;
    assert_eq!(crashed.status.signal(), Some(libc::SIGABRT), "{crashed:?}");

    // Act: at once, another rotation meets the dead process's row.
    let again = app.run(&["rotate", "group-0"]).await;

    // Assert: the late reset was seen (recorded on the first row), and the
    // second rotation's own reset followed it: no code missing.
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let rows = app.history().await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0].status, Status::Succeeded, "{rows:#?}");
    app.assert_chain_complete(&app.store().await, &app.groups[0])
        .await;
}
