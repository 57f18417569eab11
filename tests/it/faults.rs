//! Every emulator fault mode, through the real client and store: no code the API
//! issued is missing from the history, and no reset follows an unknown outcome
//! without a read of the link in between.

use crate::common::{Setup, Tuning, spawn_app};
use invite_rotator::emulator::{EmulatorOptions, Fault, Route};
use invite_rotator::store::{Cause, Status};
use std::time::Duration;

/// Faults whose outcome the client cannot know (the reset may have happened).
fn leaves_outcome_unknown(fault: Fault) -> bool {
    !matches!(fault, Fault::Throttled)
}

/// Rotates one admin group with `faults` queued on `route`; returns the app for checks.
async fn rotate_with(
    route: Route,
    faults: &[Fault],
) -> (crate::common::TestApp, invite_rotator::rotation::Report) {
    let tuning = Tuning {
        timeout: "300ms",
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin], EmulatorOptions::default(), tuning).await;
    for f in faults {
        app.emulator.push_fault(route, *f);
    }
    let (config, engine) = app.engine().await;
    let report = engine
        .rotate(&config.groups[0], Cause::manual())
        .await
        .unwrap();
    (app, report)
}

/// Between any two resets of the group, if the first one's outcome was
/// unknown, the link was read.
fn assert_no_blind_reset(app: &crate::common::TestApp) {
    let calls = app.emulator.calls();
    let resets: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.route == Route::Reset)
        .map(|(i, _)| i)
        .collect();
    for pair in resets.windows(2) {
        let first = &calls[pair[0]];
        if first.fault.is_some_and(leaves_outcome_unknown) {
            let read_between = calls[pair[0] + 1..pair[1]]
                .iter()
                .any(|c| c.route == Route::Info && c.status == 200);
            assert!(
                read_between,
                "reset repeated blindly after {:?}",
                first.fault
            );
        }
    }
}

const STALL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_every_reset_fault_the_history_holds_every_issued_code_and_no_reset_is_blind() {
    let cases = [
        (Fault::ServerError, 2),
        (Fault::ServerErrorAfterReset, 1),
        (Fault::Stall(STALL), 2),
        (Fault::StallAfterReset(STALL), 1),
        (Fault::Drop, 2),
        (Fault::DropAfterReset, 1),
        (Fault::HtmlBody, 2),
        (Fault::HtmlBodyAfterReset, 1),
        (Fault::Throttled, 2),
        // Lands 0.4 s after the call, past the 0.3 s timeout: the read-back
        // waits one timeout, sees the new link, and does not reset again.
        (Fault::LateReset(Duration::from_millis(400)), 1),
        // A gateway's 504 at once, the reset landing 0.2 s later: read back
        // at once, the old link would invite a second reset and lose a code.
        (Fault::GatewayErrorThenReset(Duration::from_millis(200)), 1),
        (Fault::UnavailableThenReset(Duration::from_millis(200)), 1),
    ];
    for (fault, expected_resets) in cases {
        let (app, report) = rotate_with(Route::Reset, &[fault]).await;
        let group = &app.groups[0];

        assert_eq!(report.status, Status::Succeeded, "{fault:?}: {report:?}");
        assert_eq!(
            app.emulator.reset_calls(&group.jid),
            expected_resets,
            "{fault:?}"
        );
        assert_eq!(
            app.emulator.code_chain(&group.jid).len(),
            2,
            "{fault:?}: exactly one code issued"
        );
        app.assert_chain_complete(&app.store().await, group).await;
        assert_no_blind_reset(&app);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_in_a_row_still_end_with_one_new_code_recorded() {
    let faults = [
        Fault::ServerError,
        Fault::Drop,
        Fault::StallAfterReset(STALL),
    ];
    let (app, report) = rotate_with(Route::Reset, &faults).await;

    assert_eq!(report.status, Status::Succeeded, "{report:?}");
    assert_eq!(report.attempts, 3);
    assert_eq!(app.emulator.code_chain(&app.groups[0].jid).len(), 2);
    app.assert_chain_complete(&app.store().await, &app.groups[0])
        .await;
    assert_no_blind_reset(&app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_the_read_are_retried_and_the_old_code_is_still_recorded() {
    for fault in [
        Fault::ServerError,
        Fault::Stall(STALL),
        Fault::Drop,
        Fault::HtmlBody,
        Fault::Throttled,
    ] {
        let (app, report) = rotate_with(Route::Info, &[fault]).await;

        assert_eq!(report.status, Status::Succeeded, "{fault:?}: {report:?}");
        assert!(report.old_code.is_some(), "{fault:?}");
        assert_eq!(app.emulator.reset_calls(&app.groups[0].jid), 1, "{fault:?}");
        app.assert_chain_complete(&app.store().await, &app.groups[0])
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_in_the_call_log_with_its_status_and_outcome() {
    let (app, report) = rotate_with(Route::Reset, &[Fault::ServerErrorAfterReset]).await;

    let calls = app.store().await.calls_of(report.id).await.unwrap();
    let seen: Vec<(&str, Option<i64>, &str)> = calls
        .iter()
        .map(|(e, s, o)| (e.as_str(), *s, o.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("info", Some(200), "success"),
            ("resetLink", Some(500), "unknown"),
            ("info", Some(200), "success")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_instance_fails_after_max_attempts_without_a_reset_taking_effect() {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    app.emulator.set_connected(crate::common::INSTANCE, false);
    let (config, engine) = app.engine().await;

    let report = engine
        .rotate(&config.groups[0], Cause::manual())
        .await
        .unwrap();

    assert_eq!(report.status, Status::Failed);
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not connected to WhatsApp"),
        "{report:?}"
    );
    assert_eq!(app.emulator.code_chain(&app.groups[0].jid).len(), 1);
    assert_eq!(app.emulator.reset_calls(&app.groups[0].jid), 0);
}
