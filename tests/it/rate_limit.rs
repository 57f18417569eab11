//! Many groups at once against the emulator's own per-token limit: no 429.

use crate::common::{Setup, Tuning, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::store::{Status, Trigger};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_all_over_150_groups_stays_under_the_api_limit_and_records_every_code() {
    // Arrange: a fast limit so the test is quick; the pacing is the same at any rate.
    let options = EmulatorOptions {
        requests_per_minute: 6000,
        window: Duration::from_secs(60),
        latency: Duration::from_millis(20),
        ..EmulatorOptions::default()
    };
    let tuning = Tuning {
        requests_per_minute: 6000,
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin; 150], options, tuning).await;
    let (config, engine) = app.engine().await;

    // Act
    let reports = engine.rotate_many(&config.groups, Trigger::Manual).await;

    // Assert
    assert_eq!(app.emulator.rate_limited(), 0, "the API answered 429");
    assert_eq!(
        app.emulator.calls().len(),
        300,
        "one read and one reset per group, no retries"
    );
    let store = app.store().await;
    for (group, report) in app.groups.iter().zip(reports) {
        assert_eq!(report.unwrap().status, Status::Succeeded);
        app.assert_chain_complete(&store, group).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_keeps_more_calls_than_one_window_allows_under_the_api_limit() {
    // The API allows 10 calls per 1-second window (a minute's limit, scaled down
    // so the test is quick). 40 groups need 80 calls: unpaced, the first window
    // would see 16 concurrent rotations' calls at once and the API would refuse.
    // The engine is told 540/min, one call every 113 ms: at most 9 per second.
    let options = EmulatorOptions {
        requests_per_minute: 10,
        window: Duration::from_secs(1),
        latency: Duration::from_millis(5),
        ..EmulatorOptions::default()
    };
    let tuning = Tuning {
        requests_per_minute: 540,
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin; 40], options, tuning).await;
    let (config, engine) = app.engine().await;

    let reports = engine.rotate_many(&config.groups, Trigger::Manual).await;

    assert_eq!(app.emulator.rate_limited(), 0, "the API answered 429");
    assert_eq!(app.emulator.calls().len(), 80);
    for r in reports {
        assert_eq!(r.unwrap().status, Status::Succeeded);
    }
}
