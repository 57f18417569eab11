//! The failover soak: three real nodes (`run`, the release binary) on one
//! real PostgreSQL database, 30% of API calls faulty, and 20 failovers, each
//! a kill -9 or a SIGSTOP (woken with SIGCONT once another node rotates) of
//! whichever node holds the lease at a random moment. Killed nodes are
//! started again, so three stay in play. Then the faults stop until every
//! group's latest rotation succeeded, every node is stopped, and the history
//! is compared with every code the emulator issued. Run:
//! `cargo bench --bench failover` (about 3 minutes).
//!
//! Prints each failover (from the signal to the first rotation another node
//! starts) and min/median/max. Exits 1 if a code is missing or invented, an
//! old code is not the one before, a due time was served twice, a group was
//! rotated by two nodes at once, a row is left pending, or a woken node wrote
//! a rotation under the term it had lost.

mod common;

use invite_rotator::config::Database;
use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership};
use sqlx::{Connection, PgConnection};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::process::Child;

type Error = Box<dyn std::error::Error>;
type Time = chrono::DateTime<chrono::Utc>;

const FAILOVERS: usize = 20;
const NODES: usize = 3;
const GROUPS: usize = 40;
const LEASE: Duration = Duration::from_secs(3);
const FAULT_RATE: f64 = 0.3;
const TOKEN: &str = "failover-token";

/// A rotation as the nodes wrote it.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    group_name: String,
    group_jid: String,
    scheduled_for: Option<Time>,
    started_at: Time,
    finished_at: Option<Time>,
    status: String,
    attempts: i64,
    owner: Option<String>,
    term: Option<i64>,
    old_invite_code: Option<String>,
    new_invite_code: Option<String>,
    /// Shown (`Debug`) when a check fails.
    #[allow(dead_code)]
    trigger: String,
    /// Shown (`Debug`) when a check fails.
    #[allow(dead_code)]
    error: Option<String>,
}

impl Row {
    /// The writer's pid (owners are `boot/pid/start/nonce`).
    fn pid(&self) -> Option<u32> {
        self.owner.as_deref()?.split('/').nth(1)?.parse().ok()
    }
}

/// A node woken after a SIGSTOP: it must write nothing more under `term`.
struct Woken {
    pid: u32,
    term: i64,
    at: Time,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let Some(database) = invite_rotator::testing::database().await else {
        return Err("this bench needs PostgreSQL: apt-get install postgresql".into());
    };
    // The tables, before any node starts.
    drop(invite_rotator::store::Store::connect(&database).await?);
    let Database::Postgres(pg) = database else {
        return Err("the test database is not PostgreSQL".into());
    };
    let url = pg.url.to_string();
    let emulator = Emulator::new(EmulatorOptions {
        requests_per_minute: 60_000,
        fault_rate: FAULT_RATE,
        fault_stall: Duration::from_millis(600),
        ..EmulatorOptions::default()
    });
    emulator.add_instance("soak", TOKEN);
    let server = emulator.clone().spawn().await?;
    let dir = tempfile::tempdir()?;
    let mut config = format!(
        "[api]\nbase_url = \"{}\"\ntimeout = \"300ms\"\n\
         [rate_limit]\nrequests_per_minute = 60000\nmax_concurrent = 64\n\
         [retry]\nmax_attempts = 3\nbackoff_initial = \"20ms\"\nbackoff_max = \"200ms\"\n\
         [database]\nurl = \"{url}\"\n[ha]\nlease = \"{}s\"\n\
         [[instance]]\nname = \"soak\"\ntoken_env = \"IR_SOAK_TOKEN\"\n",
        server.base_url(),
        LEASE.as_secs()
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
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config)?;
    // Outside the temporary directory: kept for a look when a check fails.
    let log = std::env::temp_dir().join("invite-rotator-failover.log");
    std::fs::write(&log, "")?;
    println!(
        "failover soak: {NODES} nodes, lease {} s, {GROUPS} groups due every second, {:.0}% of calls faulty, machine: {} cores",
        LEASE.as_secs(),
        FAULT_RATE * 100.0,
        common::cores()
    );
    let started = Instant::now();
    let mut db = PgConnection::connect(&url).await?;
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(spawn(&config_path, &log)?);
    }
    let began = chrono::Utc::now() - chrono::Duration::hours(1);
    wait_for_rotation_by(&mut db, None, began, Duration::from_secs(60)).await?;

    let mut failovers = Vec::new();
    let mut woken = Vec::new();
    let (mut kills, mut stops) = (0, 0);
    while failovers.len() < FAILOVERS {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1_000..4_000))).await;
        let Some((holder, term)) = lease_holder(&mut db).await? else {
            continue;
        };
        let Some(slot) = nodes.iter().position(|n| n.id() == Some(holder)) else {
            continue;
        };
        let kill = fastrand::bool();
        let at = chrono::Utc::now();
        if kill {
            nodes[slot].start_kill()?;
            nodes[slot].wait().await?;
            kills += 1;
        } else {
            signal(holder, "STOP")?;
            stops += 1;
        }
        let took_over =
            wait_for_rotation_by(&mut db, Some(holder), at, Duration::from_secs(60)).await?;
        let failover = (took_over - at).to_std().unwrap_or_default();
        println!(
            "  failover {:>2}: {} of node {holder} (term {term}): another node rotated after {:.2} s",
            failovers.len() + 1,
            if kill { "kill -9" } else { "SIGSTOP" },
            failover.as_secs_f64()
        );
        failovers.push(failover);
        if kill {
            nodes[slot] = spawn(&config_path, &log)?;
        } else {
            signal(holder, "CONT")?;
            woken.push(Woken {
                pid: holder,
                term,
                at: chrono::Utc::now(),
            });
        }
    }

    // Calm: no faults, until every group's latest rotation succeeded.
    emulator.set_fault_rate(0.0);
    let calm_from: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM rotations")
        .fetch_one(&mut db)
        .await?;
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let calm: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT DISTINCT ON (group_name) id, status FROM rotations
             ORDER BY group_name, id DESC) latest WHERE id > $1 AND status = 'succeeded'",
        )
        .bind(calm_from)
        .fetch_one(&mut db)
        .await?;
        if calm == GROUPS as i64 {
            break;
        }
        if Instant::now() > give_up {
            return Err("the groups did not all succeed within 2 min of calm".into());
        }
    }
    for node in &mut nodes {
        if let Some(pid) = node.id() {
            signal(pid, "TERM")?;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), node.wait()).await??;
        if !status.success() {
            return Err(format!("a node exited with {status}").into());
        }
    }

    // The comparison.
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT group_name, group_jid, scheduled_for, started_at, finished_at, status,
                attempts, owner, term, old_invite_code, new_invite_code, trigger, error
         FROM rotations ORDER BY id",
    )
    .fetch_all(&mut db)
    .await?;
    let (mut missing, mut invented, mut broken) = (0, 0, 0);
    for jid in &jids {
        let chain = emulator.code_chain(jid);
        let mine: Vec<&Row> = rows.iter().filter(|r| &r.group_jid == jid).collect();
        let issued: HashSet<&str> = chain.iter().skip(1).map(String::as_str).collect();
        let recorded: HashSet<&str> = mine
            .iter()
            .filter_map(|r| r.new_invite_code.as_deref())
            .collect();
        missing += issued.difference(&recorded).count();
        invented += recorded.difference(&issued).count();
        for r in mine.iter().filter(|r| r.status == "succeeded") {
            let at = chain
                .iter()
                .position(|c| Some(c.as_str()) == r.new_invite_code.as_deref());
            let before = at.and_then(|i| i.checked_sub(1)).map(|i| chain[i].as_str());
            broken += usize::from(before != r.old_invite_code.as_deref());
        }
    }
    let mut served: HashMap<(&str, Time), usize> = HashMap::new();
    for r in rows
        .iter()
        .filter(|r| !(r.status == "failed" && r.attempts == 0))
    {
        if let Some(due) = r.scheduled_for {
            *served.entry((&r.group_name, due)).or_default() += 1;
        }
    }
    let twice = served.values().filter(|n| **n > 1).count();
    let mut at_once = 0;
    let mut by_group: HashMap<&str, Vec<&Row>> = HashMap::new();
    for r in &rows {
        by_group.entry(&r.group_name).or_default().push(r);
    }
    for mine in by_group.values_mut() {
        mine.sort_by_key(|r| r.started_at);
        for pair in mine.windows(2) {
            let ended = pair[0].finished_at.unwrap_or(pair[0].started_at);
            if pair[0].pid() != pair[1].pid() && ended > pair[1].started_at {
                at_once += 1;
                println!("  rotated by two nodes at once: {pair:#?}");
            }
        }
    }
    let pending = rows.iter().filter(|r| r.status == "pending").count();
    let stale = rows
        .iter()
        .filter(|r| {
            woken.iter().any(|w| {
                r.pid() == Some(w.pid) && r.started_at > w.at && r.term.is_some_and(|t| t <= w.term)
            })
        })
        .count();

    failovers.sort();
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    println!(
        "failovers {} ({kills} kill -9, {stops} SIGSTOP): min {}, median {}, max {} (lease {} s)",
        failovers.len(),
        secs(failovers[0]),
        secs(failovers[failovers.len() / 2]),
        secs(failovers[failovers.len() - 1]),
        LEASE.as_secs()
    );
    let faults = emulator
        .calls()
        .iter()
        .filter(|c| c.fault.is_some())
        .count();
    println!(
        "rotations recorded {} (succeeded {}, failed {}, unknown {}), resets the API committed {}, calls faulted {faults} of {}",
        rows.len(),
        count("succeeded"),
        count("failed"),
        count("unknown"),
        emulator.resets_applied(),
        emulator.calls().len()
    );
    println!(
        "codes missing {missing}, invented {invented}, old code not the one before {broken}, \
         due times served twice {twice}, groups rotated by two nodes at once {at_once}, \
         pending left {pending}, rotations a woken node began under its lost term {stale}"
    );
    println!(
        "total {:.0} s; the nodes' log: {}",
        started.elapsed().as_secs_f64(),
        log.display()
    );
    if missing + invented + broken + twice + at_once + pending + stale > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn spawn(config: &Path, log: &Path) -> Result<Child, Error> {
    Ok(common::spawn_run(
        config,
        log,
        ("IR_SOAK_TOKEN", TOKEN),
        "info",
    )?)
}

fn signal(pid: u32, name: &str) -> Result<(), Error> {
    std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()?;
    Ok(())
}

/// The pid of the node holding an unexpired lease, and its term.
async fn lease_holder(db: &mut PgConnection) -> Result<Option<(u32, i64)>, Error> {
    let held: Option<(Option<String>, i64)> =
        sqlx::query_as("SELECT holder, term FROM lease WHERE expires_at > now()")
            .fetch_optional(db)
            .await?;
    Ok(held.and_then(|(holder, term)| {
        let pid = holder?.split('/').nth(1)?.parse().ok()?;
        Some((pid, term))
    }))
}

/// Waits for a rotation started after `after` by a node other than `not`;
/// returns when it started.
async fn wait_for_rotation_by(
    db: &mut PgConnection,
    not: Option<u32>,
    after: Time,
    limit: Duration,
) -> Result<Time, Error> {
    let give_up = Instant::now() + limit;
    loop {
        let rows: Vec<(Option<String>, Time)> = sqlx::query_as(
            "SELECT owner, started_at FROM rotations WHERE started_at > $1 ORDER BY started_at",
        )
        .bind(after)
        .fetch_all(&mut *db)
        .await?;
        let by_other = rows.into_iter().find(|(owner, _)| {
            let pid: Option<u32> = owner
                .as_deref()
                .and_then(|o| o.split('/').nth(1))
                .and_then(|p| p.parse().ok());
            pid.is_some() && pid != not
        });
        if let Some((_, at)) = by_other {
            return Ok(at);
        }
        if Instant::now() > give_up {
            return Err(format!("no other node rotated within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
