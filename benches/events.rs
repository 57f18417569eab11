//! RyzeAPI's events, measured on the real daemon (release build), its
//! history on this machine's disk:
//!
//! 1. **Ingest**: deliveries accepted per second, each committed to the
//!    inbox before its 2xx: 20,000 removals (of groups with `rotate_on = []`,
//!    so that only the inbox works) posted by 64 keep-alive connections;
//!    afterwards every accepted one must be in the `events` table.
//! 2. **Bursts**: 1,000 removal events over 100 groups within 10 s, sent by
//!    the emulator as RyzeAPI would (`event_delay = "5s"`, the API at its
//!    real 100 calls a minute): exactly 100 rotations must follow.
//! 3. **Latency**: from the end of a quiet period to the rotation's start,
//!    for 30 removals one second apart (the API unpaced).
//!
//! Run: `cargo bench --bench events` (about three minutes).

mod common;

use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership};
use sqlx::ConnectOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-events-secret-0123456789";
const TOKEN: &str = "bench-token";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("machine: {} cores", common::cores());
    ingest().await?;
    bursts().await?;
    latency().await?;
    Ok(())
}

/// An emulator with `groups` admin groups on instance `bench`.
async fn emulator(groups: usize, rpm: u32) -> Result<(Emulator, String), std::io::Error> {
    let emulator = Emulator::new(EmulatorOptions {
        requests_per_minute: rpm,
        ..EmulatorOptions::default()
    });
    emulator.add_instance("bench", TOKEN);
    for i in 0..groups {
        emulator.add_group("bench", &jid(i), Membership::Admin);
    }
    let server = emulator.clone().spawn().await?;
    let base = server.base_url();
    std::mem::forget(server); // serves until the bench ends
    Ok((emulator, base))
}

fn jid(i: usize) -> String {
    format!("1203634{i:011}@g.us")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// Writes a config and starts the daemon on it; returns it, its port and
/// the database's path.
fn daemon(
    dir: &Path,
    base: &str,
    groups: usize,
    rpm: u32,
    group_keys: &str,
    delay: &str,
) -> Result<(Child, u16, PathBuf), Box<dyn std::error::Error>> {
    let port = free_port();
    let db = dir.join("history.db");
    let mut text = format!(
        "[api]\nbase_url = \"{base}\"\n[rate_limit]\nrequests_per_minute = {rpm}\n\
         [database]\npath = \"{}\"\n[defaults]\nevent_delay = \"{delay}\"\n\
         [events]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}/events\"\n\
         authorization_env = \"BENCH_SECRET\"\n[[instance]]\nname = \"bench\"\ntoken_env = \"BENCH_TOKEN\"\n",
        db.display()
    );
    for i in 0..groups {
        text.push_str(&format!(
            "[[group]]\nname = \"group-{i}\"\ninstance = \"bench\"\njid = \"{}\"\nschedule = \"0 0 1 1 *\"\n{group_keys}\n",
            jid(i)
        ));
    }
    let config = dir.join("bench.toml");
    std::fs::write(&config, text)?;
    let child = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(["--config"])
        .arg(&config)
        .arg("run")
        .env("BENCH_SECRET", SECRET)
        .env("BENCH_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((child, port, db))
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

async fn query_i64(db: &Path, sql: &'static str) -> i64 {
    let Ok(mut conn) = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
    else {
        return -1;
    };
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or(-1)
}

/// Waits until the receiver answers (the daemon is up).
async fn until_listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn removal(group: usize, n: usize) -> String {
    serde_json::json!({
        "event": "group.flow",
        "data": {"JID": jid(group), "Sender": "5511988887777@s.whatsapp.net",
                 "Timestamp": format!("2026-12-01T10:00:00.{n:09}Z"),
                 "Leave": [format!("55119{n:08}@s.whatsapp.net")]},
        "instanceData": {"baseUrl": "https://ryzeapi.cloud", "instance": "bench", "token": TOKEN},
    })
    .to_string()
}

async fn ingest() -> Result<(), Box<dyn std::error::Error>> {
    const DELIVERIES: usize = 20_000;
    const CONNECTIONS: usize = 64;
    const GROUPS: usize = 100;
    let (_emulator, base) = emulator(GROUPS, 100).await?;
    let dir = tempfile::tempdir()?;
    let (child, port, db) = daemon(dir.path(), &base, GROUPS, 100, "rotate_on = []", "30s")?;
    until_listening(port).await;
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(30), None)?;
    let url = format!("http://127.0.0.1:{port}/events");
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..CONNECTIONS {
        let (http, url) = (http.clone(), url.clone());
        workers.spawn(async move {
            let (mut ok, mut other) = (0usize, 0usize);
            for n in (w..DELIVERIES).step_by(CONNECTIONS) {
                let sent = http
                    .post(&url)
                    .header("authorization", format!("Bearer {SECRET}"))
                    .header("content-type", "application/json")
                    .body(removal(n % GROUPS, n))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => other += 1,
                }
            }
            (ok, other)
        });
    }
    let (mut ok, mut other) = (0, 0);
    while let Some(Ok((o, x))) = workers.join_next().await {
        ok += o;
        other += x;
    }
    let elapsed = started.elapsed();
    let stored = query_i64(
        &db,
        "SELECT COUNT(*) FROM events WHERE kind = 'member_removed'",
    )
    .await;
    stop(child);
    println!(
        "ingest: {ok} deliveries answered 2xx ({other} not) in {:.2} s over {CONNECTIONS} connections: {:.0} per second; {stored} in the events table (every 2xx committed: {})",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        stored == ok as i64,
    );
    Ok(())
}

async fn bursts() -> Result<(), Box<dyn std::error::Error>> {
    const GROUPS: usize = 100;
    const PER_GROUP: usize = 10;
    let (emulator, base) = emulator(GROUPS, 100).await?;
    let dir = tempfile::tempdir()?;
    let (child, port, db) = daemon(dir.path(), &base, GROUPS, 100, "", "5s")?;
    until_listening(port).await;
    while emulator.webhooks("bench").is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    for round in 0..PER_GROUP {
        for g in 0..GROUPS {
            emulator.remove_member(&jid(g), &format!("55119{round:03}{g:05}@s.whatsapp.net"));
        }
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    let sent = started.elapsed();
    // Rotations at the API's pace (two calls each, 100 calls a minute).
    let give_up = Instant::now() + Duration::from_secs(240);
    let mut rotations = 0;
    while Instant::now() < give_up {
        rotations = query_i64(
            &db,
            "SELECT COUNT(*) FROM rotations WHERE status = 'succeeded'",
        )
        .await;
        if rotations >= GROUPS as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let done = started.elapsed();
    // Past another quiet period: no second rotation of any group.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let all = query_i64(&db, "SELECT COUNT(*) FROM rotations").await;
    let events = query_i64(
        &db,
        "SELECT COUNT(*) FROM events WHERE kind = 'member_removed'",
    )
    .await;
    let resets: usize = (0..GROUPS).map(|g| emulator.reset_calls(&jid(g))).sum();
    stop(child);
    println!(
        "bursts: {} removals over {GROUPS} groups sent in {:.1} s; {events} stored; {all} rotations ({rotations} succeeded, {resets} reset calls), the last done {:.0} s after the first removal",
        GROUPS * PER_GROUP,
        sent.as_secs_f64(),
        done.as_secs_f64()
    );
    Ok(())
}

async fn latency() -> Result<(), Box<dyn std::error::Error>> {
    const GROUPS: usize = 30;
    let (emulator, base) = emulator(GROUPS, 1_000_000).await?;
    let dir = tempfile::tempdir()?;
    let (child, port, db) = daemon(dir.path(), &base, GROUPS, 1_000_000, "", "1s")?;
    until_listening(port).await;
    while emulator.webhooks("bench").is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for g in 0..GROUPS {
        emulator.remove_member(&jid(g), "5511999990001@s.whatsapp.net");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true)
        .connect()
        .await?;
    // Milliseconds from the quiet period's end (the removal's arrival + 1 s)
    // to the rotation's pending row.
    let mut ms: Vec<f64> = sqlx::query_scalar(
        "SELECT (julianday(r.started_at) - julianday(e.received_at)) * 86400000.0 - 1000.0
         FROM rotations r JOIN events e ON e.id = r.event_id WHERE r.trigger = 'member_removed'",
    )
    .fetch_all(&mut conn)
    .await?;
    stop(child);
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "latency: {} rotations; from the quiet period's end to the rotation's start: min {:.1} ms, median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    Ok(())
}
