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
