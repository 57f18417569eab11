//! Many groups at once against the emulator's own per-token limit: no 429.

mod common;

use common::{Setup, Tuning, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::engine::Engine;
use invite_rotator::store::{Status, Trigger};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_all_over_150_groups_stays_under_the_api_limit_and_records_every_code() {
    // Arrange: a fast limit so the test is quick; the pacing is the same at any rate.
    let options = EmulatorOptions {
        requests_per_minute: 6000,
        latency: Duration::from_millis(20),
        auto_create: false,
    };
    let tuning = Tuning {
        requests_per_minute: 6000,
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin; 150], options, tuning).await;
    let config = app.config();
    let engine = Engine::new(&config, app.store().await).unwrap();

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
