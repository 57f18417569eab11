//! How large the history grows per rotation: 3,000 real rotations (200
//! groups, 15 rounds) through the engine and the emulator, then the database
//! compacted (`VACUUM INTO`) with everything, and again once the call log
//! is pruned as `keep_calls` does. Run: `cargo bench --bench growth` (about
//! 10 s).

use invite_rotator::config::{Config, Purpose};
use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership};
use invite_rotator::engine::Engine;
use invite_rotator::store::{Store, Trigger};
use sqlx::{ConnectOptions, Connection};
use std::path::Path;

const GROUPS: usize = 200;
const ROUNDS: usize = 15;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::new(EmulatorOptions {
        requests_per_minute: 1_000_000,
        ..EmulatorOptions::default()
    });
    emulator.add_instance("bench", "bench-token");
    let mut groups = String::new();
    for i in 0..GROUPS {
        let jid = format!("1203634{i:011}@g.us");
        emulator.add_group("bench", &jid, Membership::Admin);
        groups.push_str(&format!(
            "[[group]]\nname = \"group-{i}\"\ninstance = \"bench\"\njid = \"{jid}\"\nschedule = \"@daily\"\n"
        ));
    }
    let server = emulator.clone().spawn().await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("history.db");
    let config = format!(
        "[api]\nbase_url = \"{}\"\n[rate_limit]\nrequests_per_minute = 1000000\n[database]\npath = \"{}\"\n[[instance]]\nname = \"bench\"\ntoken = \"bench-token\"\n{groups}",
        server.base_url(),
        db.display()
    );
    let config = Config::parse(&config, &dir.path().join("bench.toml"), Purpose::Run)?;
    let engine = Engine::new(&config, Store::open(&db).await?)?;
    for _ in 0..ROUNDS {
        engine.rotate_many(&config.groups, Trigger::Schedule).await;
    }
    let rotations = (GROUPS * ROUNDS) as f64;

    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .connect()
        .await?;
    let calls: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_calls")
        .fetch_one(&mut conn)
        .await?;
    // The daemon's hooks worker empties this queue as it goes; no worker ran here.
    sqlx::query("DELETE FROM hook_outbox")
        .execute(&mut conn)
        .await?;
    let all = compacted(&mut conn, &dir.path().join("all.db")).await?;
    sqlx::query("DELETE FROM api_calls")
        .execute(&mut conn)
        .await?;
    let pruned = compacted(&mut conn, &dir.path().join("pruned.db")).await?;
    conn.close().await?;

    println!(
        "{rotations} rotations, {calls} API calls ({:.1} per rotation)",
        calls as f64 / rotations
    );
    println!(
        "with the call log:          {:>8.0} bytes per rotation ({:.2} MB in all)",
        all as f64 / rotations,
        all as f64 / 1e6
    );
    println!(
        "call log pruned (rotations): {:>8.0} bytes per rotation ({:.2} MB in all)",
        pruned as f64 / rotations,
        pruned as f64 / 1e6
    );
    Ok(())
}

/// The size of the database copied without free space.
async fn compacted(
    conn: &mut sqlx::sqlite::SqliteConnection,
    to: &Path,
) -> Result<u64, Box<dyn std::error::Error>> {
    let to = to.to_str().ok_or("path is not UTF-8")?;
    sqlx::query("VACUUM INTO $1")
        .bind(to)
        .execute(&mut *conn)
        .await?;
    Ok(std::fs::metadata(to)?.len())
}
