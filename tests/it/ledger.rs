//! The tamper-evident ledger against the real binary: rotations make
//! entries, `audit export` signs the head, and every kind of tampering an
//! auditor fears (a code edited with `sqlite3`, a row deleted, rows
//! reordered, the ledger cut back before its last checkpoint) makes
//! `audit verify` exit 1 naming the first broken entry, as does the
//! standalone script in docs/ (which agrees on every case). A bundle
//! verifies offline and fails when any one of its bytes changes.

use crate::common::{REQUIRE_PARTS_VAR, Setup, TestApp, Tuning, real_part, spawn_app};
use invite_rotator::audit::{PublicKey, bundle};
use invite_rotator::emulator::EmulatorOptions;
use std::path::{Path, PathBuf};
use std::process::Output;

/// An app with 3 groups and `[audit] signing_key_file`; the public key's file.
pub(crate) async fn audited_app() -> (TestApp, PathBuf) {
    let app = spawn_app(
        &[Setup::Admin, Setup::Admin, Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let key = app.dir.path().join("audit.key");
    let out = keygen(&key);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let public = app.dir.path().join("audit.pub");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));
    std::fs::write(&public, &out.stdout).unwrap();
    let path = key.display().to_string();
    app.edit_config(|t| format!("{t}\n[audit]\nsigning_key_file = \"{path}\"\n"));
    (app, public)
}

/// `python3` with `cryptography`, or `None` (after one line) on a bare machine.
pub(crate) fn python() -> Option<PathBuf> {
    let python = real_part("python3", "python3-cryptography")?;
    let ok = std::process::Command::new(&python)
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os(REQUIRE_PARTS_VAR).is_none(),
            "python3 lacks cryptography (apt-get install python3-cryptography)"
        );
        eprintln!("skipped: this test needs python3-cryptography");
        return None;
    }
    Some(python)
}

pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/verify-ledger.py")
}

/// `audit verify` and the script on the SQLite file `db`: both exit codes
/// and `audit verify`'s output.
pub(crate) async fn both_verdicts(
    app: &TestApp,
    db: &Path,
    public: &Path,
) -> (Output, Option<Output>) {
    let ours = app
        .run(&[
            "audit",
            "verify",
            "--database",
            db.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
        ])
        .await;
    let theirs = python().map(|py| {
        std::process::Command::new(py)
            .arg(script())
            .args(["--database", db.to_str().unwrap()])
            .args(["--public-key", public.to_str().unwrap()])
            .output()
            .unwrap()
    });
    (ours, theirs)
}

/// A copy of the app's history (closed: no WAL left) with `sql` applied by
/// the `sqlite3` tool, as a tamperer would.
fn tampered(app: &TestApp, name: &str, sql: &str) -> Option<PathBuf> {
    let sqlite3 = real_part("sqlite3", "sqlite3")?;
    let copy = app.dir.path().join(format!("{name}.db"));
    std::fs::copy(&app.db_path, &copy).unwrap();
    // With its write-ahead log, if a closing connection has not folded it
    // in yet.
    let wal = app.db_path.with_extension("db-wal");
    if wal.exists() {
        std::fs::copy(&wal, copy.with_extension("db-wal")).unwrap();
    }
    let out = std::process::Command::new(sqlite3)
        .arg(&copy)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {out:?}");
    Some(copy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_is_named_and_the_script_agrees() {
    let (app, public) = audited_app().await;
    for _ in 0..3 {
        let out = app.run(&["rotate", "--all"]).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    // A checkpoint of entries 1..9 (export signs the head), then three more.
    let bundle_path = app.dir.path().join("bundle.jsonl");
    let out = app
        .run(&[
            "audit",
            "export",
            "--since",
            "1d",
            "--output",
            bundle_path.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = app.run(&["rotate", "--all"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let store = app.store().await;
    assert_eq!(store.ledger_head().await.unwrap().unwrap().0, 12);
    drop(store);

    let untouched = tampered(&app, "untouched", "SELECT 1;");
    let cases: [(&str, &str, &str); 5] = [
        (
            "code",
            "UPDATE rotations SET new_invite_code = 'TamperedCodeAAAAAAAAAA' WHERE id = 4;",
            "rotation 4: new_code",
        ),
        (
            "deleted",
            "DELETE FROM rotations WHERE id = 5;",
            "rotation 5",
        ),
        (
            "reordered",
            "UPDATE rotations SET id = -2 WHERE id = 2; UPDATE rotations SET id = 2 WHERE id = 3;
             UPDATE rotations SET id = 3 WHERE id = -2;",
            "rotation 2:",
        ),
        (
            "ledger-reordered",
            "DROP TRIGGER ledger_no_update; UPDATE ledger SET seq = -2 WHERE seq = 2;
             UPDATE ledger SET seq = 2 WHERE seq = 3; UPDATE ledger SET seq = 3 WHERE seq = -2;",
            "ledger entry 2",
        ),
        (
            "truncated",
            "DROP TRIGGER ledger_no_delete; DELETE FROM ledger WHERE seq > 6;",
            "covers entries up to 9, but the ledger ends at entry 6",
        ),
    ];
    let Some(untouched) = untouched else { return };
    let (ours, theirs) = both_verdicts(&app, &untouched, &public).await;
    assert_eq!(ours.status.code(), Some(0), "{ours:?}");
    assert!(
        String::from_utf8_lossy(&ours.stdout).contains("intact: 12 ledger entries"),
        "{ours:?}"
    );
    if let Some(theirs) = theirs {
        assert_eq!(theirs.status.code(), Some(0), "{theirs:?}");
    }
    for (name, sql, named) in cases {
        let db = tampered(&app, name, sql).unwrap();
        let (ours, theirs) = both_verdicts(&app, &db, &public).await;
        let said = String::from_utf8_lossy(&ours.stdout);
        assert_eq!(ours.status.code(), Some(1), "{name}: {ours:?}");
        assert!(said.contains(named), "{name}: {said}");
        if let Some(theirs) = theirs {
            assert_eq!(
                theirs.status.code(),
                Some(1),
                "the script on {name}: {theirs:?}"
            );
        }
    }
    // The code edit names what the ledger says, in rotation 4's entry
    // (whose number depends on the order `rotate --all` settled them in).
    let db = app.dir.path().join("code.db");
    let sqlite3 = real_part("sqlite3", "sqlite3").unwrap();
    let seq = std::process::Command::new(sqlite3)
        .arg(&untouched)
        .arg("SELECT seq FROM ledger WHERE rotation_id = 4")
        .output()
        .unwrap();
    let seq = String::from_utf8_lossy(&seq.stdout).trim().to_owned();
    assert!(!seq.is_empty(), "rotation 4 has a ledger entry");
    let (ours, _) = both_verdicts(&app, &db, &public).await;
    let said = String::from_utf8_lossy(&ours.stdout);
    assert!(
        said.contains(&format!(
            "\"TamperedCodeAAAAAAAAAA\" in the rotations table, but the ledger (entry {seq}) says \""
        )),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_verifies_offline_and_any_changed_byte_fails_it() {
    let (app, public) = audited_app().await;
    for _ in 0..2 {
        let out = app.run(&["rotate", "--all"]).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let path = app.dir.path().join("bundle.jsonl");
    let out = app
        .run(&[
            "audit",
            "export",
            "--since",
            "1h",
            "--output",
            path.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "a bundle holds codes");
    // Offline: the database goes away first.
    std::fs::remove_file(&app.db_path).unwrap();
    let out = verify_bundle(&app, &path, &public).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("entries 1 to 6"));

    let text = std::fs::read(&path).unwrap();
    let key = PublicKey::load(&public).unwrap();
    // Every byte, changed one at a time, breaks it.
    for i in 0..text.len() {
        let mut changed = text.clone();
        changed[i] ^= 0x01;
        let broken = String::from_utf8(changed).map_or(true, |t| bundle::verify(&t, &key).is_err());
        assert!(broken, "changing byte {i} went unnoticed");
    }
    // And through the binary and the script, a few of them.
    let changed = app.dir.path().join("changed.jsonl");
    for i in [10, text.len() / 2, text.len() - 20] {
        let mut bytes = text.clone();
        bytes[i] ^= 0x01;
        std::fs::write(&changed, &bytes).unwrap();
        let out = verify_bundle(&app, &changed, &public).await;
        assert_eq!(out.status.code(), Some(1), "byte {i}");
        if let Some(py) = python() {
            let out = std::process::Command::new(&py)
                .arg(script())
                .args(["--bundle", changed.to_str().unwrap()])
                .args(["--public-key", public.to_str().unwrap()])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "the script, byte {i}: {out:?}");
        }
    }
    if let Some(py) = python() {
        let out = std::process::Command::new(&py)
            .arg(script())
            .args(["--bundle", path.to_str().unwrap()])
            .args(["--public-key", public.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "the script on the bundle: {out:?}"
        );
    }
    // The checkpoints without their entries do not pass for a bundle.
    let only_checkpoints: String = String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.contains("\"signature\":"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(bundle::verify(&only_checkpoints, &key).is_err());
    // Another key's bundle does not pass for this one.
    let other = app.dir.path().join("other.key");
    let out = keygen(&other);
    let other_pub = app.dir.path().join("other.pub");
    std::fs::write(&other_pub, &out.stdout).unwrap();
    let out = app
        .run(&[
            "audit",
            "verify",
            "--bundle",
            path.to_str().unwrap(),
            "--public-key",
            other_pub.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

pub(crate) async fn verify_bundle(app: &TestApp, bundle: &Path, public: &Path) -> Output {
    app.run(&[
        "audit",
        "verify",
        "--bundle",
        bundle.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ])
    .await
}

/// `audit keygen --output path` (a command that reads no config).
fn keygen(path: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(["audit", "keygen", "--output"])
        .arg(path)
        .output()
        .unwrap()
}

crate::common::on_both_backends!(concurrent_writers_keep_one_chain_and_an_edit_is_found);

/// Three `rotate --all` at once, twice, on either database: one unbroken
/// chain (appends are serialised), every settled rotation entered; then a
/// code edited behind the program's back is named.
async fn concurrent_writers_keep_one_chain_and_an_edit_is_found(backend: crate::common::Backend) {
    use crate::common::{Backend, spawn_app_on};
    use invite_rotator::config::Database;
    use sqlx::Connection;
    let Some(app) = spawn_app_on(
        backend,
        &[Setup::Admin, Setup::Admin, Setup::Admin, Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await
    else {
        return;
    };
    for _ in 0..2 {
        let runs = (0..3).map(|_| app.run(&["rotate", "--all"]));
        for out in futures_util::future::join_all(runs).await {
            // A group another process is rotating is skipped (exit 1), and
            // said so; nothing else goes wrong.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.code() == Some(0) || !stderr.contains("error:"),
                "{stderr}"
            );
        }
    }
    let settled = app.history().await.len() as i64;
    assert!(settled >= 8, "{settled}");
    let out = app.run(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("intact: {settled} ledger entries")),
        "{said}"
    );

    // Ids may have gaps on PostgreSQL (a refused insert spends one): the third row.
    let edit = "UPDATE rotations SET new_invite_code = 'EditedCodeAAAAAAAAAAAA'
                WHERE id = (SELECT id FROM rotations ORDER BY id LIMIT 1 OFFSET 2)";
    match (&app.database, backend) {
        (Database::Postgres(pg), Backend::Postgres) => {
            let mut c = sqlx::PgConnection::connect(pg.url.as_str()).await.unwrap();
            sqlx::query(edit).execute(&mut c).await.unwrap();
        }
        _ => {
            let mut c =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db_path.display()))
                    .await
                    .unwrap();
            sqlx::query(edit).execute(&mut c).await.unwrap();
        }
    }
    let out = app.run(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(": new_code is \"EditedCodeAAAAAAAAAAAA\" in the rotations table"),
        "{said}"
    );
}

/// A history from before the ledger (rows written by an older version,
/// migrated up to 0011) is entered once, at the first open by this one,
/// and then verifies; the backfill flag set back by hand re-arms nothing;
/// a ledger emptied later is not refilled from the table.
#[tokio::test]
async fn a_history_from_before_the_ledger_is_entered_once() {
    use invite_rotator::store::Store;
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let url = format!("sqlite://{}", db.display());
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    let mut before_the_ledger = sqlx::migrate!("./migrations/sqlite");
    before_the_ledger.migrations = before_the_ledger
        .migrations
        .iter()
        .filter(|m| m.version < 12)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before_the_ledger.run(&mut c).await.unwrap();
    for i in 0..3 {
        sqlx::query(
            "INSERT INTO rotations (group_name, group_jid, instance, trigger, started_at, finished_at,
                 status, attempts, old_invite_code, new_invite_code, new_invite_link)
             VALUES ('old', '1@g.us', 'i', 'schedule', '2025-01-01T00:00:00.000Z',
                 '2025-01-01T00:00:01.000Z', 'succeeded', 1, $1, $2, 'https://chat.whatsapp.com/x')",
        )
        .bind(format!("Code{i}"))
        .bind(format!("Code{}", i + 1))
        .execute(&mut c)
        .await
        .unwrap();
    }
    c.close().await.unwrap();
    let store = Store::open(&db).await.unwrap();
    let verified = invite_rotator::audit::verify::database(&store, None, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((verified.entries, verified.rotations), (3, 3));
    drop(store);
    // The flag set back: nothing entered again.
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE ledger_start SET backfilled = 0")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let store = Store::open(&db).await.unwrap();
    assert_eq!(store.ledger_head().await.unwrap().unwrap().0, 3);
    drop(store);
    // Emptied behind its back: found, and never refilled.
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("DROP TRIGGER ledger_no_delete")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("DELETE FROM ledger")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let store = Store::open(&db).await.unwrap();
    let found = invite_rotator::audit::verify::database(&store, None, &[])
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        found
            .0
            .contains("rotation 1 is succeeded in the rotations table but has no ledger entry"),
        "{found}"
    );
}
