//! The ledger laundered with plain SQL (issue 19, item 2): a code edited
//! under a signed checkpoint and the backfill flag set back, then `audit
//! export` (which must refuse to sign); an entry appended, correctly
//! hashed, that restates a settled rotation with another code (named by
//! `audit verify` and the script alike); and `--public-key` over a history
//! that holds no checkpoint at all (not intact).

use crate::common::{TestApp, real_part};
use crate::ledger::{audited_app, both_verdicts};
use invite_rotator::audit::entry::{Entry, hash};
use sqlx::ConnectOptions;
use std::path::Path;

/// Three `rotate --all` (9 entries), an export (a checkpoint of entry 9),
/// one more `rotate --all` (12 entries).
async fn signed_history(app: &TestApp) {
    for _ in 0..3 {
        let out = app.run(&["rotate", "--all"]).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let bundle = app.dir.path().join("first.jsonl");
    let out = export(app, &bundle).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = app.run(&["rotate", "--all"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

async fn export(app: &TestApp, out: &Path) -> std::process::Output {
    app.run(&[
        "audit",
        "export",
        "--since",
        "1d",
        "--output",
        out.to_str().unwrap(),
    ])
    .await
}

async fn stored_checkpoints(app: &TestApp) -> Vec<String> {
    app.store().await.checkpoint_lines().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_edited_under_a_checkpoint_and_the_backfill_rearmed_is_never_signed() {
    let (app, public) = audited_app().await;
    signed_history(&app).await;
    // The auditors' copy of the checkpoints, kept outside the database.
    let outside = app.dir.path().join("outside.txt");
    let before = stored_checkpoints(&app).await;
    assert_eq!(before.len(), 1);
    std::fs::write(&outside, before.join("\n") + "\n").unwrap();

    let Some(sqlite3) = real_part("sqlite3", "sqlite3") else {
        return;
    };
    let out = std::process::Command::new(sqlite3)
        .args(["-cmd", ".timeout 10000"])
        .arg(&app.db_path)
        .arg(
            "UPDATE rotations SET new_invite_code = 'LaunderedCodeAAAAAAAAA' WHERE id = 2;
             UPDATE ledger_start SET backfilled = 0;",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let bundle = app.dir.path().join("laundered.jsonl");
    let out = export(&app, &bundle).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "export signed it: {out:?}");
    assert!(said.contains("NOT INTACT: rotation 2: new_code"), "{said}");
    assert!(!bundle.exists(), "nothing exported");
    // Nothing re-entered, nothing signed.
    let store = app.store().await;
    assert_eq!(store.ledger_head().await.unwrap().unwrap().0, 12);
    assert_eq!(store.checkpoint_lines().await.unwrap(), before);
    drop(store);

    let out = app
        .run(&[
            "audit",
            "verify",
            "--public-key",
            public.to_str().unwrap(),
            "--checkpoint",
            outside.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rotation 2: new_code"),
        "{out:?}"
    );
    let (_, theirs) = both_verdicts(&app, &app.db_path, &public).await;
    if let Some(theirs) = theirs {
        assert_eq!(theirs.status.code(), Some(1), "the script: {theirs:?}");
    }
}

/// Appends one entry, correctly chained and hashed, that restates
/// rotation `rotation` with `edit` applied, and makes its row agree.
async fn restate(db: &Path, rotation: i64, edit: impl FnOnce(&mut Entry)) -> i64 {
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    let (seq, head): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
            .fetch_one(&mut c)
            .await
            .unwrap();
    let line: String = sqlx::query_scalar(
        "SELECT entry FROM ledger WHERE rotation_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(rotation)
    .fetch_one(&mut c)
    .await
    .unwrap();
    let mut entry = Entry::parse(&line).unwrap();
    edit(&mut entry);
    entry.seq = seq + 1;
    entry.prev = head;
    let line = entry.line().unwrap();
    sqlx::query(
        "INSERT INTO ledger (seq, rotation_id, at, entry, hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(entry.seq)
    .bind(rotation)
    .bind(&entry.at)
    .bind(&line)
    .bind(hash(&line))
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE rotations SET new_invite_code = $1, new_invite_link = $2, old_invite_code = $3,
         status = $4, error = $5 WHERE id = $6",
    )
    .bind(&entry.new_code)
    .bind(&entry.new_link)
    .bind(&entry.old_code)
    .bind(&entry.status)
    .bind(&entry.error)
    .bind(rotation)
    .execute(&mut c)
    .await
    .unwrap();
    entry.seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appended_entry_restating_a_settled_rotation_is_named_and_the_script_agrees() {
    let (app, public) = audited_app().await;
    signed_history(&app).await;
    let seq = restate(&app.db_path, 2, |e| {
        e.new_code = Some("RestatedCodeAAAAAAAAAA".into());
        e.new_link = Some("https://chat.whatsapp.com/RestatedCodeAAAAAAAAAA".into());
    })
    .await;
    assert_eq!(seq, 13);
    let (ours, theirs) = both_verdicts(&app, &app.db_path, &public).await;
    let said = String::from_utf8_lossy(&ours.stdout);
    assert_eq!(ours.status.code(), Some(1), "{ours:?}");
    assert!(
        said.contains("ledger entry 13 restates rotation 2: its new_code was \""),
        "{said}"
    );
    assert!(said.contains("\"RestatedCodeAAAAAAAAAA\""), "{said}");
    let theirs = theirs.map(|t| {
        (
            t.status.code(),
            String::from_utf8_lossy(&t.stdout).into_owned(),
        )
    });
    if let Some((code, text)) = theirs {
        assert_eq!(code, Some(1), "the script: {text}");
        assert!(
            text.contains("ledger entry 13 restates rotation 2: new_code"),
            "the script: {text}"
        );
    }
    // Nor is it exported (signed over).
    let out = export(&app, &app.dir.path().join("b.jsonl")).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_without_any_checkpoint_is_not_intact_for_a_public_key() {
    let (app, public) = audited_app().await;
    let out = app.run(&["rotate", "--all"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (ours, theirs) = both_verdicts(&app, &app.db_path, &public).await;
    let said = String::from_utf8_lossy(&ours.stdout);
    assert_eq!(ours.status.code(), Some(1), "{ours:?}");
    assert!(
        said.contains("NOT INTACT: no checkpoint: nothing in this history is signed"),
        "{said}"
    );
    if let Some(theirs) = theirs {
        assert_eq!(theirs.status.code(), Some(1), "the script: {theirs:?}");
    }
    // Without a key, the chain and the table still agree (and it says so).
    let out = app.run(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no checkpoint"));
    // Once signed (an export), it is.
    let out = export(&app, &app.dir.path().join("b.jsonl")).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (ours, theirs) = both_verdicts(&app, &app.db_path, &public).await;
    assert_eq!(ours.status.code(), Some(0), "{ours:?}");
    if let Some(theirs) = theirs {
        assert_eq!(theirs.status.code(), Some(0), "the script: {theirs:?}");
    }
}

/// Runs `sql` on `db` with the sqlite3 shell; `None` without one.
fn sqlite(db: &Path, sql: &str) -> Option<String> {
    let sqlite3 = real_part("sqlite3", "sqlite3")?;
    let out = std::process::Command::new(sqlite3)
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_dropped_with_its_migrations_is_not_backfilled_by_export() {
    let (app, public) = audited_app().await;
    signed_history(&app).await;
    let outside = app.dir.path().join("outside.txt");
    std::fs::write(&outside, stored_checkpoints(&app).await.join("\n") + "\n").unwrap();
    // A code edited, the ledger and its migrations gone: the next open
    // that migrates would create the ledger again and enter the edit.
    let Some(_) = sqlite(
        &app.db_path,
        "UPDATE rotations SET new_invite_code = 'LaunderedCodeAAAAAAAAA' WHERE id = 2;
         DROP TABLE ledger; DROP TABLE checkpoints; DROP TABLE ledger_start;
         DROP INDEX rotations_issued_by_group; DROP INDEX rotations_by_new_code;
         DROP INDEX rotations_by_old_code;
         DELETE FROM _sqlx_migrations WHERE version IN (12, 13);",
    ) else {
        return;
    };
    let bundle = app.dir.path().join("laundered.jsonl");
    let out = export(&app, &bundle).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "export signed it: {out:?}");
    assert!(
        said.contains("this history has no ledger: start the daemon once, then export"),
        "{said}"
    );
    assert!(!bundle.exists(), "nothing exported");
    // Nothing opened it for writing: the ledger is still absent.
    let tables = sqlite(
        &app.db_path,
        "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('ledger', 'checkpoints')",
    );
    assert_eq!(tables.as_deref(), Some("0"));
    // And verify, read-only, says so, with or without the outside log.
    for args in [
        vec!["audit", "verify"],
        vec![
            "audit",
            "verify",
            "--public-key",
            public.to_str().unwrap(),
            "--checkpoint",
            outside.to_str().unwrap(),
        ],
    ] {
        let out = app.run(&args).await;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.starts_with("NOT INTACT: no ledger"), "{said}");
    }
    let (_, theirs) = both_verdicts(&app, &app.db_path, &public).await;
    if let Some(theirs) = theirs {
        let text = String::from_utf8_lossy(&theirs.stdout);
        assert_eq!(theirs.status.code(), Some(1), "the script: {theirs:?}");
        assert!(text.contains("NOT INTACT: no ledger"), "the script: {text}");
    }
}

/// Appends an outside change of the group of `like` (its latest entry),
/// started at `started`, from `old_code` to `new_code`: a row and its
/// entry, correctly chained and hashed. Returns the entry's `seq`.
async fn append_outside(
    db: &Path,
    like: i64,
    started: &str,
    old_code: Option<&str>,
    new_code: &str,
) -> i64 {
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    let (seq, head): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
            .fetch_one(&mut c)
            .await
            .unwrap();
    let line: String = sqlx::query_scalar(
        "SELECT entry FROM ledger WHERE rotation_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(like)
    .fetch_one(&mut c)
    .await
    .unwrap();
    let mut e = Entry::parse(&line).unwrap();
    e.trigger = "outside".into();
    e.due = None;
    e.started = started.into();
    e.finished = Some(started.into());
    e.status = "succeeded".into();
    e.attempts = 0;
    e.old_code = old_code.map(Into::into);
    e.new_code = Some(new_code.into());
    e.new_link = Some(format!("https://chat.whatsapp.com/{new_code}"));
    e.error = None;
    e.rotation = sqlx::query_scalar(
        "INSERT INTO rotations (group_name, group_jid, instance, trigger, started_at, finished_at,
             status, attempts, old_invite_code, new_invite_code, new_invite_link)
         VALUES ($1, $2, $3, 'outside', $4, $4, 'succeeded', 0, $5, $6, $7) RETURNING id",
    )
    .bind(&e.group)
    .bind(&e.jid)
    .bind(&e.instance)
    .bind(started)
    .bind(&e.old_code)
    .bind(&e.new_code)
    .bind(&e.new_link)
    .fetch_one(&mut c)
    .await
    .unwrap();
    e.seq = seq + 1;
    e.prev = head;
    let line = e.line().unwrap();
    sqlx::query(
        "INSERT INTO ledger (seq, rotation_id, at, entry, hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(e.seq)
    .bind(e.rotation)
    .bind(&e.at)
    .bind(&line)
    .bind(hash(&line))
    .execute(&mut c)
    .await
    .unwrap();
    e.seq
}

/// The latest entry of rotation `id`.
async fn latest_entry(app: &TestApp, id: i64) -> Entry {
    let line = sqlite(
        &app.db_path,
        &format!("SELECT entry FROM ledger WHERE rotation_id = {id} ORDER BY seq DESC LIMIT 1"),
    )
    .unwrap();
    Entry::parse(&line).unwrap()
}

/// An outside change appended, then `rotation` restated as if its reset
/// had revoked that change's code: the two verdicts.
async fn place(
    app: &TestApp,
    public: &Path,
    rotation: i64,
) -> (std::process::Output, Option<std::process::Output>) {
    let ours = latest_entry(app, rotation).await;
    // Started a millisecond before the rotation finished.
    let finished = chrono::DateTime::parse_from_rfc3339(ours.finished.as_deref().unwrap()).unwrap();
    let started = (finished - chrono::Duration::milliseconds(1))
        .to_utc()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let code = "OutsideCodeXXXXXXXXXXX";
    let seq = append_outside(
        &app.db_path,
        rotation,
        &started,
        ours.old_code.as_deref(),
        code,
    )
    .await;
    let next = restate(&app.db_path, rotation, |e| {
        e.old_code = Some(code.into());
        e.error = Some(match e.error.take() {
            Some(was) => format!("{was}; the link was changed outside"),
            None => "the link was changed outside".into(),
        });
    })
    .await;
    assert_eq!(next, seq + 1);
    both_verdicts(app, &app.db_path, public).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_change_placed_before_an_older_rotation_is_named_and_the_script_agrees() {
    let (app, public) = audited_app().await;
    signed_history(&app).await;
    let Some(_) = sqlite(&app.db_path, "SELECT 1") else {
        return;
    };
    // Rotation 2's group has rotated three times since (5, 8, 11).
    let (ours, theirs) = place(&app, &public, 2).await;
    let said = String::from_utf8_lossy(&ours.stdout);
    assert_eq!(ours.status.code(), Some(1), "{said}");
    assert!(
        said.contains("ledger entry 14 restates rotation 2: its old_code was"),
        "{said}"
    );
    if let Some(theirs) = theirs {
        let text = String::from_utf8_lossy(&theirs.stdout);
        assert_eq!(theirs.status.code(), Some(1), "the script: {text}");
        assert!(
            text.contains("ledger entry 14 restates rotation 2: old_code"),
            "the script: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_change_placed_before_the_groups_latest_rotation_verifies() {
    let (app, public) = audited_app().await;
    signed_history(&app).await;
    let Some(_) = sqlite(&app.db_path, "SELECT 1") else {
        return;
    };
    let (ours, theirs) = place(&app, &public, 11).await;
    assert_eq!(ours.status.code(), Some(0), "{ours:?}");
    if let Some(theirs) = theirs {
        assert_eq!(theirs.status.code(), Some(0), "the script: {theirs:?}");
    }
}
