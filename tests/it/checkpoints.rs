//! The daemon's signed checkpoints: at its stop it signs the ledger's
//! head, stores it, logs it and tells the hooks that want checkpoints.
//! Those copies outside the database are what catch a history rewritten
//! whole (every hash recomputed, the stored checkpoints deleted): the
//! database alone then looks intact, `--checkpoint` with the journal's
//! copy does not. Bad `[audit]` and `[console]` settings exit 78 naming
//! the key.

use crate::common::{Setup, TestApp, Tuning, signal, spawn_app};
use invite_rotator::audit::entry::{Entry, GENESIS, hash};
use invite_rotator::emulator::EmulatorOptions;
use sqlx::ConnectOptions;
use std::path::Path;
use std::time::Duration;

async fn keyed_app() -> (TestApp, std::path::PathBuf) {
    let app = spawn_app(
        &[Setup::Admin, Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let key = app.dir.path().join("audit.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(["audit", "keygen", "--output"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let public = app.dir.path().join("audit.pub");
    std::fs::write(&public, &out.stdout).unwrap();
    (app, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_signs_the_head_and_its_copy_outside_catches_a_rewrite() {
    let (app, public) = keyed_app().await;
    let key = app.dir.path().join("audit.key");
    let told = app.dir.path().join("told.txt");
    app.edit_config(|t| {
        format!(
            "{t}\n[audit]\nsigning_key_file = \"{}\"\n[[hook]]\nname = \"notary\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo \\\"$INVITE_ROTATOR_EVENT $INVITE_ROTATOR_CHECKPOINT\\\" >> {}\"]\non = [\"checkpoint\"]\ntimeout = \"5s\"\n",
            key.display(),
            told.display()
        )
    });
    for _ in 0..2 {
        let out = app.run(&["rotate", "--all"]).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let daemon = app.spawn_daemon();
    app.wait_for("the daemon started", Duration::from_secs(20), |_| {
        std::fs::read_to_string(app.daemon_log()).is_ok_and(|log| log.contains("daemon started"))
    })
    .await;
    signal(&daemon, "TERM");
    let status = daemon.wait_with_output().await.unwrap().status;
    assert_eq!(status.code(), Some(0));

    // Logged, stored, and told to the hook: the same line.
    let log = std::fs::read_to_string(app.daemon_log()).unwrap();
    let logged = invite_rotator::audit::Checkpoint::lines_in(&log);
    assert_eq!(logged.len(), 1, "{log}");
    let checkpoint = logged[0].to_owned();
    assert!(checkpoint.contains("\"seq\":4"), "{checkpoint}");
    let hook = std::fs::read_to_string(&told).unwrap();
    assert_eq!(hook.trim(), format!("ledger.checkpoint {checkpoint}"));
    let stored = app.store().await.checkpoint_lines().await.unwrap();
    assert_eq!(stored, vec![checkpoint.clone()]);
    let journal = app.dir.path().join("journal.txt");
    std::fs::write(&journal, &log).unwrap();

    let public = public.to_str().unwrap();
    let journal = journal.to_str().unwrap();
    let verify = ["audit", "verify", "--public-key", public];
    let with_journal = [
        "audit",
        "verify",
        "--public-key",
        public,
        "--checkpoint",
        journal,
    ];
    let out = app.run(&with_journal).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A thorough forger: a code changed in the table and the ledger, every
    // later hash recomputed, the stored checkpoints deleted.
    rewrite(&app.db_path, 2).await;
    // With the key, a history with no checkpoint left is not intact.
    let out = app.run(&verify).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOT INTACT: no checkpoint"),
        "{out:?}"
    );
    let out = app.run(&["audit", "verify"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "without the key, the database alone cannot tell: {out:?}"
    );
    let out = app.run(&with_journal).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("ledger entry 4 is not the one given checkpoint 1"),
        "{said}"
    );
}

/// Rewrites entry `seq` (and the row) with another new code, recomputing
/// every hash after it, and deletes the stored checkpoints.
async fn rewrite(db: &Path, seq: i64) {
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    for sql in [
        "DROP TRIGGER ledger_no_update",
        "DROP TRIGGER ledger_no_delete",
        "DROP TRIGGER checkpoints_no_delete",
        "DELETE FROM checkpoints",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT seq, entry FROM ledger ORDER BY seq")
        .fetch_all(&mut c)
        .await
        .unwrap();
    let mut prev = GENESIS.to_owned();
    for (s, line) in rows {
        let mut entry = Entry::parse(&line).unwrap();
        entry.prev = prev.clone();
        if s == seq {
            entry.new_code = Some("ForgedCodeAAAAAAAAAAAA".into());
            sqlx::query("UPDATE rotations SET new_invite_code = $1 WHERE id = $2")
                .bind(&entry.new_code)
                .bind(entry.rotation)
                .execute(&mut c)
                .await
                .unwrap();
        }
        let line = entry.line().unwrap();
        prev = hash(&line);
        sqlx::query("UPDATE ledger SET entry = $1, hash = $2 WHERE seq = $3")
            .bind(&line)
            .bind(&prev)
            .bind(s)
            .execute(&mut c)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn bad_audit_and_console_settings_exit_78_naming_the_key() {
    let (app, _public) = keyed_app().await;
    let key = app.dir.path().join("audit.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let original = std::fs::read_to_string(&app.config_path).unwrap();
    let cases = [
        (
            format!("[audit]\nsigning_key_file = \"{}\"\n", key.display()),
            "audit.signing_key_file",
            "chmod 600",
        ),
        (
            "[audit]\nsigning_key_file = \"/nonexistent/audit.key\"\n".to_owned(),
            "audit.signing_key_file",
            "cannot read",
        ),
        (
            "[console]\nlisten = \"0.0.0.0:9467\"\n".to_owned(),
            "console.listen",
            "token_file",
        ),
        (
            "[console]\nlisten = \"nowhere\"\n".to_owned(),
            "console.listen",
            "not an address",
        ),
    ];
    for (table, key_name, says) in cases {
        std::fs::write(&app.config_path, format!("{original}\n{table}")).unwrap();
        let out = app.run(&["check"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{table}: {stderr}");
        assert!(
            stderr.contains(key_name) && stderr.contains(says),
            "{table}: {stderr}"
        );
        assert!(!stderr.contains("PRIVATE KEY"), "the key never shows");
    }
    std::fs::write(&app.config_path, original).unwrap();
}
