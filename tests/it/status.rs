//! `status` through the real binary: marks, exit codes, JSON Lines, and
//! reading beside a running daemon.

use crate::common::{Setup, TestApp, Tuning, spawn_app};
use chrono::{Duration, Utc};
use invite_rotator::emulator::EmulatorOptions;

async fn app(setups: &[Setup]) -> TestApp {
    spawn_app(setups, EmulatorOptions::default(), Tuning::default()).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The table line of `group` (a name is its line's first word).
fn line_of<'a>(stdout: &'a str, group: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(group))
        .unwrap_or_else(|| panic!("no line for {group} in:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_seen_for_days_and_never_rotated_is_marked_overdue_and_status_exits_1() {
    // Arrange: a daily schedule; group-0 first seen 10 days ago, group-1 just now.
    let app = app(&[Setup::Admin, Setup::Admin]).await;
    let store = app.store().await;
    let now = Utc::now();
    store
        .mark_seen(&["group-0"], now - Duration::days(10))
        .await
        .unwrap();
    store.mark_seen(&["group-1"], now).await.unwrap();

    // Act
    let out = app.run(&["status"]).await;

    // Assert
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("GROUP "), "{stdout}");
    let overdue = line_of(&stdout, "group-0");
    assert!(overdue.ends_with("overdue"), "{overdue}");
    assert!(overdue.contains("never"), "{overdue}");
    let fresh = line_of(&stdout, "group-1");
    assert!(!fresh.contains("overdue"), "{fresh}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_0_when_every_group_rotated_and_shows_the_next_due_time() {
    let app = app(&[Setup::Admin, Setup::Admin]).await;
    assert_eq!(app.run(&["rotate", "--all"]).await.status.code(), Some(0));

    let out = app.run(&["status"]).await;

    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for g in &app.groups {
        let line = line_of(&stdout, &g.name);
        assert!(line.contains("succeeded"), "{line}");
        assert!(
            line.contains(" 03:00:00 UTC"),
            "the daily 03:00 fire: {line}"
        );
        assert!(
            !line.contains("overdue") && !line.contains("failing"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_every_group_shows_never_and_status_exits_0() {
    let app = app(&[Setup::Admin]).await;

    let out = app.run(&["status"]).await;

    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(line_of(&stdout, "group-0").contains("never"), "{stdout}");
    assert!(!app.db_path.exists(), "status does not create the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_latest_rotation_failed_is_marked_failing_and_status_exits_1() {
    // group-1: we are a plain member, so its rotation fails (403).
    let app = app(&[Setup::Admin, Setup::Member]).await;
    assert_eq!(app.run(&["rotate", "--all"]).await.status.code(), Some(1));

    let out = app.run(&["status"]).await;

    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let failing = line_of(&stdout, "group-1");
    assert!(
        failing.contains("failed") && failing.ends_with("failing"),
        "{failing}"
    );
    assert!(!line_of(&stdout, "group-0").contains("failing"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_lines_parse_with_the_documented_keys() {
    let app = app(&[Setup::Admin, Setup::Member]).await;
    assert_eq!(app.run(&["rotate", "--all"]).await.status.code(), Some(1));

    let out = app.run(&["status", "--format", "json"]).await;

    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        for key in [
            "group",
            "timezone",
            "next_due",
            "last_started_at",
            "last_status",
            "last_success_at",
            "overdue",
            "failing",
        ] {
            assert!(line.get(key).is_some(), "{line} lacks {key}");
        }
    }
    assert_eq!(lines[0]["group"], "group-0");
    assert_eq!(lines[0]["last_status"], "succeeded");
    assert_eq!(lines[0]["failing"], false);
    assert!(
        lines[0]["next_due"]
            .as_str()
            .is_some_and(|t| t.ends_with("T03:00:00+00:00")),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["last_status"], "failed");
    assert_eq!(lines[1]["last_success_at"], serde_json::Value::Null);
    assert_eq!(lines[1]["failing"], true);
    assert_eq!(lines[1]["overdue"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_history_while_the_daemon_runs() {
    let app = app(&[Setup::Admin]).await;
    let mut daemon = app.spawn_daemon();
    app.wait_for(
        "the daemon started",
        std::time::Duration::from_secs(20),
        |_| {
            std::fs::read_to_string(app.daemon_log())
                .is_ok_and(|log| log.contains("daemon started"))
        },
    )
    .await;

    let out = app.run(&["status", "--format", "json"]).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["group"], "group-0");
    crate::common::signal(&daemon, "TERM");
    assert_eq!(daemon.wait().await.unwrap().code(), Some(0));
}
