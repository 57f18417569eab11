//! What the benches read off the processes they measure.
#![allow(dead_code)] // each bench uses a different part of this

use sqlx::{ConnectOptions, Connection};
use std::time::{Duration, Instant};

/// VmRSS and VmHWM of process `pid`, in kB (0 when it cannot be read: the
/// process has exited).
pub fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The cores this machine has, for the numbers' context.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// Creates the database through the store (so the migrations are the real
/// ones), then writes every row in one statement: a recursive CTE counts to
/// `rotations`. Rows go back two years from now, one every 63 s, `groups`
/// groups in turn; 3% failed, 1% unknown, the rest succeeded. Bench-only SQL.
pub async fn fill_history(
    db: &std::path::Path,
    rotations: u32,
    groups: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    drop(invite_rotator::store::Store::open(db).await?);
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1),
         t AS (SELECT i, strftime('%Y-%m-%dT%H:%M:%fZ', unixepoch('now') - (?1 - i) * 63, 'unixepoch') AS at,
                      i % ?2 AS g, (i * 7919) % 100 AS dice FROM n)
         INSERT INTO rotations (group_name, group_jid, instance, trigger, scheduled_for, started_at,
                                finished_at, status, attempts, old_invite_code, new_invite_code,
                                new_invite_link, error)
         SELECT 'g' || g, (120363400000000000 + g) || '@g.us', 'bench', 'schedule', at, at, at,
                CASE WHEN dice < 3 THEN 'failed' WHEN dice < 4 THEN 'unknown' ELSE 'succeeded' END,
                1, lower(hex(randomblob(11))),
                CASE WHEN dice < 4 THEN NULL ELSE lower(hex(randomblob(11))) END,
                NULL,
                CASE WHEN dice < 3 THEN 'HTTP 403: must be admin' WHEN dice < 4 THEN 'timed out' END
         FROM t",
    )
    .bind(rotations)
    .bind(groups)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// A config with `database` (its TOML section) naming `groups` groups, `g0`
/// on, as [`fill_history`] names them.
pub fn audit_config(database: &str, groups: u32) -> String {
    let mut text =
        format!("{database}\n[[instance]]\nname = \"bench\"\ntoken_env = \"IR_BENCH_TOKEN\"\n");
    for g in 0..groups {
        text.push_str(&format!(
            "[[group]]\nname = \"g{g}\"\ninstance = \"bench\"\njid = \"{}@g.us\"\nschedule = \"0 */17 * * *\"\n",
            120_363_400_000_000_000u64 + u64::from(g)
        ));
    }
    text
}

/// Runs the release binary with `args` once to warm up, then `runs` times; lines of output and
/// the sorted wall times.
pub fn time_command(
    args: &[&str],
    runs: usize,
) -> Result<(usize, Vec<Duration>), Box<dyn std::error::Error>> {
    let mut times = Vec::with_capacity(runs);
    let mut lines = 0;
    for run in 0..=runs {
        let start = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output()?;
        let took = start.elapsed();
        if out.status.code().is_none_or(|c| c > 1) {
            return Err(format!(
                "{args:?} exited {:?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
        if run > 0 {
            times.push(took);
        }
    }
    times.sort();
    Ok((lines, times))
}

/// Starts `invite-rotator run` on `config` (the release binary), its log
/// appended to `log`, with `token` (variable, value) in its environment and
/// `RUST_LOG=rust_log`, detached from any systemd of the caller; killed when
/// dropped.
pub fn spawn_run(
    config: &std::path::Path,
    log: &std::path::Path,
    token: (&str, &str),
    rust_log: &str,
) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env(token.0, token.1)
        .env("RUST_LOG", rust_log)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
}
