//! The real binary against the emulator: `rotate`, `history`, `check`, exit
//! codes, and the token never leaking.

use crate::common::{Setup, TOKEN, Tuning, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::store::{Status, Trigger};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_all_fails_the_non_admin_and_the_gone_group_after_one_reset_each_and_rotates_the_rest()
 {
    // Arrange: three admin groups, one where we are a plain member, one gone.
    let setups = [
        Setup::Admin,
        Setup::Member,
        Setup::Admin,
        Setup::Gone,
        Setup::Admin,
    ];
    let app = spawn_app(&setups, EmulatorOptions::default(), Tuning::default()).await;
    let before: Vec<_> = app
        .groups
        .iter()
        .map(|g| app.emulator.current_code(&g.jid))
        .collect();

    // Act
    let out = app.run(&["rotate", "--all"]).await;

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = app.store().await;
    for (i, (group, setup)) in app.groups.iter().zip(setups).enumerate() {
        let rows = app.history_of(&store, group).await;
        assert_eq!(rows.len(), 1, "{}", group.name);
        let row = &rows[0];
        assert_eq!(row.trigger, Trigger::Manual);
        assert_eq!(row.group_jid, group.jid);
        assert_eq!(
            app.emulator.reset_calls(&group.jid),
            1,
            "{}: exactly one reset call",
            group.name
        );
        match setup {
            Setup::Admin => {
                assert_eq!(row.status, Status::Succeeded, "{row:?}");
                assert_eq!(
                    row.old_invite_code, before[i],
                    "old code is what the API had"
                );
                assert_eq!(
                    row.new_invite_code,
                    app.emulator.current_code(&group.jid),
                    "new code is what it issued"
                );
                assert_eq!(
                    row.new_invite_link.as_deref(),
                    Some(
                        format!(
                            "https://chat.whatsapp.com/{}",
                            row.new_invite_code.as_deref().unwrap_or("")
                        )
                        .as_str()
                    )
                );
            }
            Setup::Member | Setup::Gone => {
                assert_eq!(row.status, Status::Failed, "{row:?}");
                assert_eq!(row.attempts, 1);
                assert_eq!(row.new_invite_code, None);
                let expected = if setup == Setup::Member { "403" } else { "404" };
                assert!(
                    row.error.as_deref().unwrap_or("").contains(expected),
                    "{row:?}"
                );
                assert_eq!(
                    app.emulator.current_code(&group.jid),
                    before[i],
                    "nothing rotated that was not meant to"
                );
            }
        }
        app.assert_chain_complete(&store, group).await;
    }
    assert!(
        stdout.contains("succeeded") && stdout.contains("failed"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_by_name_or_jid_rotates_only_those_and_exits_0() {
    let app = spawn_app(
        &[Setup::Admin, Setup::Admin, Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let (g0, g2) = (&app.groups[0], &app.groups[2]);

    let out = app.run(&["rotate", &g0.name, &g2.jid, &g0.jid]).await;

    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        app.emulator.reset_calls(&g0.jid),
        1,
        "named twice, rotated once"
    );
    assert_eq!(app.emulator.reset_calls(&app.groups[1].jid), 0);
    assert_eq!(app.emulator.reset_calls(&g2.jid), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_of_an_unknown_group_is_a_usage_error_and_calls_nothing() {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;

    let out = app.run(&["rotate", "no-such-group"]).await;

    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-group"));
    assert!(app.emulator.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_prints_a_table_json_lines_and_csv_with_the_contract_columns() {
    let app = spawn_app(
        &[Setup::Admin, Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    assert_eq!(app.run(&["rotate", "--all"]).await.status.code(), Some(0));
    let new_code = app
        .emulator
        .current_code(&app.groups[0].jid)
        .unwrap_or_default();

    let table = app.run(&["history", "--group", "group-0"]).await;
    let json = app.run(&["history", "--format", "json"]).await;
    let csv = app
        .run(&[
            "history",
            "--format",
            "csv",
            "--status",
            "succeeded",
            "--since",
            "1h",
        ])
        .await;

    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains(&new_code) && !table.contains("group-1"),
        "{table}"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    for key in [
        "id",
        "group_name",
        "group_jid",
        "instance",
        "trigger",
        "scheduled_for",
        "started_at",
        "finished_at",
        "status",
        "attempts",
        "old_invite_code",
        "new_invite_code",
        "new_invite_link",
        "error",
    ] {
        assert!(lines[0].get(key).is_some(), "JSON lacks {key}");
    }
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.starts_with("id,group_name,group_jid,instance,trigger,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_the_next_rotation_times_as_json_lines() {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;

    let out = app.run(&["check", "--next", "2", "--format", "json"]).await;

    assert_eq!(out.status.code(), Some(0));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["group"], "group-0");
    let next = line["next"].as_array().expect("next is a list");
    assert_eq!(next.len(), 2);
    assert!(
        next[0].as_str().unwrap_or("").ends_with("T03:00:00+00:00"),
        "{next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_appears_in_no_output_log_or_database_file() {
    // Arrange: successes, a refusal and an outcome-unknown fault, debug logging on.
    let app = spawn_app(
        &[Setup::Admin, Setup::Member, Setup::Gone],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    app.emulator.push_fault(
        invite_rotator::emulator::Route::Reset,
        invite_rotator::emulator::Fault::ServerErrorAfterReset,
    );

    // Act: every command that reads the config or the database.
    let mut outputs = Vec::new();
    for args in [
        &["check"][..],
        &["rotate", "--all"],
        &["history"],
        &["history", "--format", "json"],
    ] {
        let out = app.run(args).await;
        outputs.push(out.stdout);
        outputs.push(out.stderr);
    }

    // Assert
    for (i, bytes) in outputs.iter().enumerate() {
        assert!(
            !contains(bytes, TOKEN.as_bytes()),
            "output {i} holds the token"
        );
    }
    let mut files = 0;
    for entry in std::fs::read_dir(app.db_path.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !contains(&bytes, TOKEN.as_bytes()),
            "a database file holds the token"
        );
        files += 1;
    }
    assert!(files >= 1);
    // The logs did say something (the grep is not vacuous).
    assert!(outputs.iter().any(|o| contains(o, b"rotation")));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rotate_finishes_what_it_started_and_starts_nothing_more() {
    // Arrange: six groups, two at a time, each call taking half a second.
    let options = EmulatorOptions {
        latency: std::time::Duration::from_millis(500),
        ..EmulatorOptions::default()
    };
    let tuning = Tuning {
        max_concurrent: 2,
        requests_per_minute: 6000,
        ..Tuning::default()
    };
    let app = spawn_app(&[Setup::Admin; 6], options, tuning).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&app.config_path)
        .args(["rotate", "--all"])
        .env(crate::common::TOKEN_VAR, TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    app.wait_for(
        "rotations in flight",
        std::time::Duration::from_secs(20),
        |rows| rows.iter().any(|r| r.status == Status::Pending),
    )
    .await;

    // Act
    crate::common::signal(&child, "INT");
    let out = child.wait_with_output().await.unwrap();

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let rows = app.history().await;
    assert!(
        rows.iter().all(|r| r.status == Status::Succeeded),
        "in-flight rotations finished: {rows:#?}"
    );
    assert!(rows.len() < 6, "not every group was started: {rows:#?}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" skipped ")).count(),
        6 - rows.len(),
        "{stdout}"
    );
    let store = app.store().await;
    for g in &app.groups {
        app.assert_chain_complete(&store, g).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "the token appears in")]
async fn the_token_search_over_a_test_s_files_finds_a_token_left_in_any_of_them() {
    // Proves the search every test app runs when dropped can fail.
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    std::fs::write(app.dir.path().join("leak.log"), format!("x {TOKEN} y")).unwrap();
    drop(app);
}
