//! The soak: the real daemon against the emulator with 30% of calls faulty
//! (stalls past the timeout, 500s before and after the reset took effect,
//! dropped connections, HTML bodies, throttling), killed with SIGKILL at random
//! moments, until 10,000 rotations are recorded; then one uninterrupted minute
//! under faults with its memory sampled, and a calm run that lets the last
//! unknown outcomes resolve. It then compares the history with every code the
//! emulator issued. Run: `cargo bench --bench soak` (a few minutes).
//!
//! Exits 1 if any issued code is missing from the history, any code is
//! invented, or any 429 for the rate limit was received.

mod common;

use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership};
use invite_rotator::store::Status;
use invite_rotator::store::{HistoryQuery, Store};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::process::Child;

const ROTATIONS: i64 = 10_000;
const GROUPS: usize = 300;
const FAULT_RATE: f64 = 0.3;
const TOKEN: &str = "soak-token";

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let emulator = Emulator::new(EmulatorOptions {
        requests_per_minute: 60_000,
        fault_rate: FAULT_RATE,
        fault_stall: Duration::from_millis(600),
        ..EmulatorOptions::default()
    });
    emulator.add_instance("soak", TOKEN);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("history.db");
    let mut config = format!(
        "[api]\nbase_url = \"BASE\"\ntimeout = \"300ms\"\n\
         [rate_limit]\nrequests_per_minute = 60000\nmax_concurrent = 64\n\
         [retry]\nmax_attempts = 3\nbackoff_initial = \"20ms\"\nbackoff_max = \"200ms\"\n\
         [database]\npath = \"{}\"\n\
         [[instance]]\nname = \"soak\"\ntoken_env = \"IR_SOAK_TOKEN\"\n",
        db.display()
    );
    let mut jids = Vec::new();
    for i in 0..GROUPS {
        let jid = format!("1203634{i:011}@g.us");
        emulator.add_group("soak", &jid, Membership::Admin);
        config.push_str(&format!(
            "[[group]]\nname = \"g{i}\"\ninstance = \"soak\"\njid = \"{jid}\"\nschedule = \"* * * * * *\"\n"
        ));
        jids.push(jid);
    }
    let server = emulator.clone().spawn().await?;
    let config = config.replace("BASE", &server.base_url());
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config)?;
    let log = dir.path().join("daemon.log");
    println!(
        "soak: {GROUPS} groups due every second, {:.0}% of calls faulty, machine: {} cores",
        FAULT_RATE * 100.0,
        common::cores()
    );
    let started = Instant::now();

    // Phase 1: kill -9 at random moments until 10,000 rotations are recorded.
    let mut kills = 0;
    let mut peak_kb = 0;
    while last_id(&db).await < ROTATIONS {
        let mut daemon = spawn(&config_path, &log)?;
        let until = Instant::now() + Duration::from_millis(fastrand::u64(1_000..6_000));
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            peak_kb = peak_kb.max(memory_kb(&daemon).1);
        }
        daemon.start_kill()?;
        daemon.wait().await?;
        kills += 1;
    }
    println!(
        "phase 1: {kills} kills (SIGKILL), {} rotations recorded, {:.0} s",
        last_id(&db).await,
        started.elapsed().as_secs_f64()
    );

    // Phase 2: a minute uninterrupted, under the same faults: memory over time.
    let mut daemon = spawn(&config_path, &log)?;
    let mut samples = Vec::new();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (rss, hwm) = memory_kb(&daemon);
        peak_kb = peak_kb.max(hwm);
        samples.push((last_id(&db).await, rss));
    }
    terminate(&mut daemon).await?;
    println!("phase 2: one minute under faults, RSS every 5 s (rotations recorded: RSS kB):");
    for (rows, rss) in &samples {
        println!("  {rows:>6}: {rss}");
    }

    // Phase 3: calm, until every group's latest rotation succeeded after it began.
    emulator.set_fault_rate(0.0);
    let calm_from = last_id(&db).await;
    let mut daemon = spawn(&config_path, &log)?;
    let store = Store::open_read_only(&db).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows = store.history(&HistoryQuery::default()).await?;
        let mut latest = std::collections::HashMap::new();
        for r in &rows {
            latest.insert(r.group_name.clone(), r);
        }
        if latest.len() == GROUPS
            && latest
                .values()
                .all(|r| r.id > calm_from && r.status == Status::Succeeded)
        {
            break;
        }
    }
    terminate(&mut daemon).await?;

    // The comparison.
    let rows = store.history(&HistoryQuery::default()).await?;
    let mut missing = 0;
    let mut invented = 0;
    let mut broken_links = 0;
    for jid in &jids {
        let chain = emulator.code_chain(jid);
        let ours: Vec<&str> = rows
            .iter()
            .filter(|r| &r.group_jid == jid)
            .filter_map(|r| r.new_invite_code.as_deref())
            .collect();
        let issued: HashSet<&str> = chain.iter().skip(1).map(String::as_str).collect();
        let recorded: HashSet<&str> = ours.iter().copied().collect();
        missing += issued.difference(&recorded).count();
        invented += recorded.difference(&issued).count();
        for r in rows
            .iter()
            .filter(|r| &r.group_jid == jid && r.status == Status::Succeeded)
        {
            let at = chain
                .iter()
                .position(|c| Some(c.as_str()) == r.new_invite_code.as_deref());
            let before = at.and_then(|i| i.checked_sub(1)).map(|i| chain[i].as_str());
            broken_links += usize::from(before != r.old_invite_code.as_deref());
        }
    }
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let resets_received = emulator
        .calls()
        .iter()
        .filter(|c| c.route == invite_rotator::emulator::Route::Reset)
        .count();
    let faults = emulator
        .calls()
        .iter()
        .filter(|c| c.fault.is_some())
        .count();
    let too_many = emulator.rate_limited();
    println!(
        "rotations recorded {} (succeeded {}, failed {}, unknown {}, pending {})",
        rows.len(),
        count(Status::Succeeded),
        count(Status::Failed),
        count(Status::Unknown),
        count(Status::Pending)
    );
    println!(
        "resets the API committed {}, reset calls received {resets_received}, calls faulted {faults} of {}",
        emulator.resets_applied(),
        emulator.calls().len()
    );
    println!(
        "codes missing from the history {missing}, invented {invented}, old codes not the one before {broken_links}"
    );
    println!("429s for the rate limit {too_many}");
    println!(
        "peak memory (VmHWM, any daemon process) {} MB; total {:.0} s",
        peak_kb / 1024,
        started.elapsed().as_secs_f64()
    );
    if missing + invented + broken_links + too_many > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn spawn(config: &Path, log: &Path) -> Result<Child, Error> {
    Ok(common::spawn_run(
        config,
        log,
        ("IR_SOAK_TOKEN", TOKEN),
        "warn",
    )?)
}

async fn terminate(child: &mut Child) -> Result<(), Error> {
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(format!("daemon exited with {status}").into());
    }
    Ok(())
}

/// The newest rotation's id: the number of rotations recorded.
async fn last_id(db: &Path) -> i64 {
    let Ok(store) = Store::open_read_only(db).await else {
        return 0;
    };
    let newest = HistoryQuery {
        limit: Some(1),
        ..HistoryQuery::default()
    };
    store
        .history(&newest)
        .await
        .ok()
        .and_then(|rows| rows.first().map(|r| r.id))
        .unwrap_or(0)
}

/// VmRSS and VmHWM of a child, in kB (0 once it has exited).
fn memory_kb(child: &Child) -> (u64, u64) {
    child.id().map_or((0, 0), common::memory_kb)
}
