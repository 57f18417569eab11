//! SQLite and PostgreSQL side by side, in one run, on this machine:
//!
//! 1. rotations per second with the API unlimited: the engine rotating
//!    2,000 groups against the in-process emulator with no latency and no
//!    limit, so the history's writes (pending row, attempt, outcome, rate
//!    budget) are what costs;
//! 2. `history` over 1,000,000 rotations as a whole process (goal: a median
//!    under 100 ms on both): the SQLite history of `cargo bench --bench
//!    audit`, moved into PostgreSQL by `db copy` (timed too);
//! 3. start-up with 100,000 groups: from spawning `run` until it logs
//!    "daemon started" (on PostgreSQL that includes taking the lease), a
//!    first start and a restart.
//!
//! PostgreSQL is the throwaway cluster the tests use (Debian's `postgresql`
//! package; see `src/testing.rs`) or `INVITE_ROTATOR_TEST_POSTGRES`. Run:
//! `cargo bench --bench backends` (about 5 minutes).

mod common;

use invite_rotator::config::{Config, Database, Purpose};
use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership};
use invite_rotator::engine::Engine;
use invite_rotator::store::{Status, Store, Trigger};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

const ROTATE_GROUPS: usize = 2_000;
const HISTORY_ROTATIONS: u32 = 1_000_000;
const HISTORY_GROUPS: u32 = 1_000;
const START_GROUPS: u32 = 100_000;
const RUNS: usize = 21;
const TARGET: Duration = Duration::from_millis(100);

fn main() -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let fresh_pg = || -> Result<Database, Error> {
        runtime
            .block_on(invite_rotator::testing::database())
            .ok_or_else(|| "this bench needs PostgreSQL: apt-get install postgresql".into())
    };
    println!("machine: {} cores", common::cores());

    println!("\n1. rotations per second, the API unlimited ({ROTATE_GROUPS} groups)");
    let sqlite = Database::Sqlite(dir.path().join("rotate.db"));
    let postgres = fresh_pg()?;
    for (name, database) in [("SQLite", &sqlite), ("PostgreSQL", &postgres)] {
        let (succeeded, took) = runtime.block_on(rotate_all(database, dir.path()))?;
        println!(
            "  {name:<10} {succeeded} rotations succeeded in {:.2} s: {:.0} rotations/s",
            took.as_secs_f64(),
            succeeded as f64 / took.as_secs_f64()
        );
    }

    println!("\n2. history over {HISTORY_ROTATIONS} rotations, as a whole process");
    let db = dir.path().join("history.db");
    let started = Instant::now();
    runtime.block_on(common::fill_history(&db, HISTORY_ROTATIONS, HISTORY_GROUPS))?;
    println!(
        "  SQLite filled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let sqlite_config = dir.path().join("audit-sqlite.toml");
    std::fs::write(
        &sqlite_config,
        common::audit_config(
            &format!("[database]\npath = \"{}\"", db.display()),
            HISTORY_GROUPS,
        ),
    )?;
    let pg_config = dir.path().join("audit-postgres.toml");
    std::fs::write(
        &pg_config,
        common::audit_config(&database_section(&fresh_pg()?)?, HISTORY_GROUPS),
    )?;
    let started = Instant::now();
    let copy = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&pg_config)
        .args(["db", "copy", "--from"])
        .arg(&db)
        .output()?;
    if !copy.status.success() {
        return Err(format!("db copy: {}", String::from_utf8_lossy(&copy.stderr)).into());
    }
    println!(
        "  db copy into PostgreSQL: {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&copy.stdout)
            .lines()
            .find(|l| l.contains("rotations"))
            .unwrap_or("")
            .trim()
    );
    println!(
        "  {:<40} {:<10} {:>6} {:>9} {:>9} {:>9}",
        "command", "backend", "lines", "min", "median", "max"
    );
    let mut slow = Vec::new();
    let queries: [(&str, &[&str]); 2] = [
        (
            "history --group g42 --limit 50",
            &["history", "--group", "g42", "--limit", "50"],
        ),
        (
            "history --since 30d --status failed",
            &["history", "--since", "30d", "--status", "failed"],
        ),
    ];
    for (name, args) in queries {
        for (backend, config) in [("SQLite", &sqlite_config), ("PostgreSQL", &pg_config)] {
            let config = config.to_str().ok_or("path is not UTF-8")?;
            let args = [&["--config", config], args].concat();
            let (lines, times) = common::time_command(&args, RUNS)?;
            let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
            println!(
                "  {name:<40} {backend:<10} {lines:>6} {:>9} {:>9} {:>9}",
                ms(times[0]),
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1])
            );
            if times[times.len() / 2] > TARGET {
                slow.push(format!("{name} on {backend}"));
            }
        }
    }

    println!("\n3. start-up with {START_GROUPS} groups (until \"daemon started\")");
    let groups = start_groups();
    for (name, database) in [
        (
            "SQLite",
            format!(
                "[database]\npath = \"{}\"",
                dir.path().join("start.db").display()
            ),
        ),
        ("PostgreSQL", database_section(&fresh_pg()?)?),
    ] {
        let config = dir.path().join(format!("start-{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[api]\nbase_url = \"http://127.0.0.1:9/api\"\n{database}\n\
                 [[instance]]\nname = \"bench\"\ntoken_env = \"IR_BENCH_TOKEN\"\n{groups}"
            ),
        )?;
        for run in ["first start", "restart"] {
            let took = start_up(&config)?;
            println!("  {name:<10} {run:<12} {:.2} s", took.as_secs_f64());
        }
    }

    if !slow.is_empty() {
        return Err(format!("median over {} ms: {slow:?}", TARGET.as_millis()).into());
    }
    Ok(())
}

/// The `[database]` section naming `database`.
fn database_section(database: &Database) -> Result<String, Error> {
    match database {
        Database::Sqlite(path) => Ok(format!("[database]\npath = \"{}\"", path.display())),
        Database::Postgres(pg) => Ok(format!("[database]\nurl = \"{}\"", pg.url)),
    }
}

/// Rotates every one of `ROTATE_GROUPS` groups once through the engine on
/// `database`; how many succeeded, and how long it took.
async fn rotate_all(database: &Database, dir: &Path) -> Result<(usize, Duration), Error> {
    let emulator = Emulator::new(EmulatorOptions {
        requests_per_minute: u32::MAX,
        latency: Duration::ZERO,
        auto_create: false,
        ..EmulatorOptions::default()
    });
    emulator.add_instance("bench", "bench-token");
    let mut groups = String::new();
    for i in 0..ROTATE_GROUPS {
        let jid = format!("1203634{i:011}@g.us");
        emulator.add_group("bench", &jid, Membership::Admin);
        groups.push_str(&format!(
            "[[group]]\nname = \"g{i}\"\ninstance = \"bench\"\njid = \"{jid}\"\nschedule = \"@daily\"\n"
        ));
    }
    let server = emulator.clone().spawn().await?;
    let text = format!(
        "[api]\nbase_url = \"{}\"\n[rate_limit]\nrequests_per_minute = 100000000\nmax_concurrent = 16\n\
         {}\n[[instance]]\nname = \"bench\"\ntoken = \"bench-token\"\n{groups}",
        server.base_url(),
        database_section(database)?
    );
    let config = Config::parse(&text, &dir.join("rotate.toml"), Purpose::Run)?;
    let engine = Engine::new(&config, Store::connect(&config.database).await?)?;
    let start = Instant::now();
    let reports = engine.rotate_many(&config.groups, Trigger::Manual).await;
    let took = start.elapsed();
    let succeeded = reports
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status == Status::Succeeded))
        .count();
    Ok((succeeded, took))
}

/// `START_GROUPS` groups whose schedules fire on January 1st only.
fn start_groups() -> String {
    let mut text = String::new();
    for i in 0..START_GROUPS {
        text.push_str(&format!(
            "[[group]]\nname = \"g{i}\"\ninstance = \"bench\"\njid = \"{}@g.us\"\nschedule = \"{} {} 1 1 *\"\n",
            120_363_400_000_000_000u64 + u64::from(i),
            i % 60,
            (i / 60) % 24,
        ));
    }
    text
}

/// Spawns `run` on `config` and times it until it logs "daemon started";
/// then stops it with SIGTERM.
fn start_up(config: &Path) -> Result<Duration, Error> {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("IR_BENCH_TOKEN", "bench-token")
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut took = None;
    let mut tail = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.contains("daemon started") {
            took = Some(start.elapsed());
            break;
        }
        tail.push(line);
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    took.ok_or_else(|| format!("the daemon never started: {}", tail.join("\n")).into())
}
