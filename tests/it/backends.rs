//! The two backends answer alike: a SQLite history moved into PostgreSQL
//! with `db copy` gives the same `history` (every format), `status` and
//! audit views on both.

use crate::common::{Setup, TOKEN, TOKEN_VAR, TestApp, Tuning, spawn_app};
use invite_rotator::config::Database;
use invite_rotator::emulator::EmulatorOptions;
use sqlx::Connection;
use std::path::Path;

async fn run(config: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env(TOKEN_VAR, TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}

/// A few rotations of three groups, one of which fails (not admin).
async fn history() -> TestApp {
    let app = spawn_app(
        &[Setup::Admin, Setup::Admin, Setup::Member],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    for _ in 0..3 {
        let out = app.run(&["rotate", "--all"]).await;
        assert_eq!(out.status.code(), Some(1), "one group fails: {out:?}");
    }
    app
}

async fn views(url: Option<&str>, sqlite: &Path) -> Vec<String> {
    let queries = [
        "SELECT group_name, invite_code, invite_link, rotation_id FROM current_codes ORDER BY group_name",
        "SELECT month, group_name, rotations, succeeded, failed, unknown, pending FROM rotations_per_month ORDER BY month, group_name",
    ];
    let mut out = Vec::new();
    match url {
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            for q in queries {
                for row in sqlx::query(q).fetch_all(&mut c).await.unwrap() {
                    out.push(format!("{:?}", pg_row(&row)));
                }
            }
        }
        None => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", sqlite.display()))
                .await
                .unwrap();
            for q in queries {
                for row in sqlx::query(q).fetch_all(&mut c).await.unwrap() {
                    out.push(format!("{:?}", sqlite_row(&row)));
                }
            }
        }
    }
    out
}

fn pg_row(row: &sqlx::postgres::PgRow) -> Vec<String> {
    use sqlx::Row;
    (0..row.len())
        .map(|i| {
            row.try_get::<Option<String>, _>(i)
                .map(|v| v.unwrap_or_default())
                .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                .unwrap_or_else(|_| "?".into())
        })
        .collect()
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Vec<String> {
    use sqlx::Row;
    (0..row.len())
        .map(|i| {
            row.try_get::<Option<String>, _>(i)
                .map(|v| v.unwrap_or_default())
                .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                .unwrap_or_else(|_| "?".into())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_history_copied_into_postgresql_reads_the_same_on_both() {
    let Some(Database::Postgres(pg)) = crate::pg::database().await else {
        return;
    };
    let app = history().await;
    let sqlite = app.db_path.clone();
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let with_url = text.replace(
        &format!("path = \"{}\"", sqlite.display()),
        &format!("url = \"{}\"", pg.url),
    );
    let pg_config = app.dir.path().join("postgres.toml");
    std::fs::write(&pg_config, with_url).unwrap();

    // A daemon still running on the file: refused, nothing copied.
    let daemon = invite_rotator::store::Store::lock_daemon(&sqlite).unwrap();
    let refused = run(
        &pg_config,
        &["db", "copy", "--from", sqlite.to_str().unwrap()],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop it first"),
        "{refused:?}"
    );
    drop(daemon);

    // Act: the copy.
    let copied = run(
        &pg_config,
        &["db", "copy", "--from", sqlite.to_str().unwrap()],
    )
    .await;
    assert_eq!(copied.status.code(), Some(0), "{copied:?}");
    assert!(String::from_utf8_lossy(&copied.stdout).contains("rotations"));

    // Assert: the same answers, output for output.
    for args in [
        &["history", "--format", "csv"][..],
        &["history", "--format", "json"],
        &["history"],
        &["history", "--group", "group-0", "--limit", "2"],
        &["history", "--status", "failed", "--format", "json"],
        &["status", "--format", "json"],
    ] {
        let on_sqlite = run(&app.config_path, args).await;
        let on_postgres = run(&pg_config, args).await;
        assert_eq!(
            on_sqlite.status.code(),
            on_postgres.status.code(),
            "{args:?}"
        );
        assert!(!on_sqlite.stdout.is_empty(), "{args:?}: {on_sqlite:?}");
        assert_eq!(
            String::from_utf8_lossy(&on_sqlite.stdout),
            String::from_utf8_lossy(&on_postgres.stdout),
            "{args:?}"
        );
    }
    assert_eq!(
        views(None, &sqlite).await,
        views(Some(pg.url.as_str()), &sqlite).await
    );

    // A second copy is refused: the target holds rotations now.
    let again = run(
        &pg_config,
        &["db", "copy", "--from", sqlite.to_str().unwrap()],
    )
    .await;
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    // And without PostgreSQL configured, there is nothing to copy into.
    let nowhere = run(
        &app.config_path,
        &["db", "copy", "--from", sqlite.to_str().unwrap()],
    )
    .await;
    assert_eq!(nowhere.status.code(), Some(78), "{nowhere:?}");
}
