//! The tamper-evident ledger and the auditors' console over a big history.
//! Run: `cargo bench --bench ledger` (about five minutes; PostgreSQL for
//! the second backend of the append cost, skipped without it).
//!
//! 1. What entering the ledger costs the rotation path, with the ledger and
//!    without (a bench-only switch), interleaved in rounds, on SQLite and
//!    PostgreSQL: the whole rotation (`Engine::rotate`: rate limit, the
//!    old code read, the reset, the history) against the built-in emulator
//!    on loopback with no latency, the fastest a rotation ever is; and the
//!    store's part of it alone (pending row, old code, attempt, call log,
//!    settlement), the worst case, with no API at all.
//! 2. 1,000,000 rotations of 100 groups: entered into the ledger (the
//!    one-time backfill of a history from before it), then `audit verify`
//!    as a whole process.
//! 3. The console over those 1,000,000: `run` serving `[console]`, each
//!    page fetched `PAGE_RUNS` times.

mod common;

use invite_rotator::store::{CallRecord, Cause, NewRotation, Settlement, Status, Store};
use std::time::{Duration, Instant};

const ROTATIONS: u32 = 1_000_000;
const GROUPS: u32 = 100;
const PER_ROUND: usize = 300;
const ROUNDS: usize = 5;
const VERIFY_RUNS: usize = 3;
const PAGE_RUNS: usize = 30;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    println!("machine: {} cores", common::cores());
    runtime.block_on(append_cost())?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("history.db");
    runtime.block_on(big_ledger(&db))?;
    if let Some(keep) = std::env::var_os("LEDGER_BENCH_KEEP") {
        // For working on `audit verify`'s speed: the million, kept.
        std::fs::copy(&db, keep)?;
    }
    verify(&db)?;
    runtime.block_on(console(dir.path(), &db))?;
    Ok(())
}

/// Rotations per second through the store, with and without the ledger.
async fn append_cost() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let sqlite = Store::open(&dir.path().join("append.db")).await?;
    let mut backends = vec![("SQLite", sqlite)];
    match invite_rotator::testing::database().await {
        Some(db) => backends.push(("PostgreSQL", Store::connect(&db).await?)),
        None => println!("PostgreSQL: not here (apt-get install postgresql); SQLite only"),
    }
    let emulator =
        invite_rotator::emulator::Emulator::new(invite_rotator::emulator::EmulatorOptions {
            requests_per_minute: 1_000_000,
            ..Default::default()
        });
    emulator.add_instance("bench", "bench-token");
    for g in 0..20u64 {
        let jid = format!("{}@g.us", 120_363_400_000_000_000u64 + g);
        drop(emulator.add_group("bench", &jid, invite_rotator::emulator::Membership::Admin));
    }
    let server = emulator.clone().spawn().await?;
    // SAFETY: set before anything reads the environment concurrently.
    unsafe { std::env::set_var("IR_BENCH_TOKEN", "bench-token") };
    for (name, store) in &backends {
        let mut text = common::audit_config("[database]\npath = \"/unused.db\"\n", 20);
        text.push_str(&format!(
            "[api]\nbase_url = \"{}\"\n[rate_limit]\nrequests_per_minute = 1000000\n",
            server.base_url()
        ));
        let config = invite_rotator::config::Config::parse(
            &text,
            std::path::Path::new("/bench.toml"),
            invite_rotator::config::Purpose::Run,
        )
        .map_err(|e| e.to_string())?;
        let engine = invite_rotator::engine::Engine::new(&config, store.clone())?;
        let (w, wo) = compare(store, || whole_rotations_per_second(&engine, &config)).await?;
        println!(
            "{name}: the whole rotation (emulator on loopback, no latency), median of {ROUNDS} rounds of {PER_ROUND}: {wo:.0}/s without the ledger, {w:.0}/s with it: {:.1}% more time per rotation",
            (wo / w - 1.0) * 100.0
        );
        let (w, wo) = compare(store, || rotations_per_second(store)).await?;
        println!(
            "{name}: the store's part alone (no API), median of {ROUNDS} rounds of {PER_ROUND}: {wo:.0}/s without the ledger, {w:.0}/s with it: {:.1}% more time per rotation",
            (wo / w - 1.0) * 100.0
        );
    }
    Ok(())
}

/// The median rates of `round` with the ledger and without, over
/// [`ROUNDS`] interleaved rounds (alternating which goes first, so that
/// drift favours neither).
async fn compare<F, Fut>(store: &Store, round: F) -> Result<(f64, f64), Box<dyn std::error::Error>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<f64, Box<dyn std::error::Error>>>,
{
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for off in order {
            store.keep_ledger_for_bench(!off);
            let rate = round().await?;
            if off {
                without.push(rate);
            } else {
                with.push(rate);
            }
        }
    }
    store.keep_ledger_for_bench(true);
    with.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    Ok((with[ROUNDS / 2], without[ROUNDS / 2]))
}

/// Whole rotations, one group after another.
async fn whole_rotations_per_second(
    engine: &invite_rotator::engine::Engine,
    config: &invite_rotator::config::Config,
) -> Result<f64, Box<dyn std::error::Error>> {
    let started = Instant::now();
    for i in 0..PER_ROUND {
        let group = &config.groups[i % config.groups.len()];
        let done = engine.rotate(group, Cause::manual()).await?;
        if done.new_code.is_none() {
            return Err("a rotation issued no code".into());
        }
    }
    Ok(PER_ROUND as f64 / started.elapsed().as_secs_f64())
}

async fn rotations_per_second(store: &Store) -> Result<f64, Box<dyn std::error::Error>> {
    let started = Instant::now();
    for i in 0..PER_ROUND {
        let group = format!("g{}", i % 20);
        let jid = format!("{}@g.us", 120_363_400_000_000_000u64 + (i % 20) as u64);
        let new = NewRotation {
            group_name: &group,
            group_jid: &jid,
            instance: "bench",
            cause: Cause::manual(),
        };
        let invite_rotator::store::Begun::Started(id) = store.begin(&new).await? else {
            return Err("a rotation did not begin".into());
        };
        store
            .record_old_code(id, Some("OldCodeAAAAAAAAAAAAAAA"))
            .await?;
        store.record_attempt(id, 1).await?;
        store
            .log_call(&CallRecord {
                rotation_id: id,
                endpoint: "resetLink",
                started_at: chrono::Utc::now(),
                duration: Duration::from_millis(120),
                http_status: Some(200),
                outcome: "ok",
                error: None,
            })
            .await?;
        store
            .settle(
                id,
                &Settlement {
                    status: Status::Succeeded,
                    attempts: 1,
                    new_code: Some(format!("NewCode{i:015}")),
                    new_link: Some(format!("https://chat.whatsapp.com/NewCode{i:015}")),
                    error: None,
                },
            )
            .await?;
    }
    Ok(PER_ROUND as f64 / started.elapsed().as_secs_f64())
}

/// Fills 1,000,000 rotations, then enters them in the ledger as a history
/// from before the ledger is at its first open.
async fn big_ledger(db: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use sqlx::{ConnectOptions, Connection};
    let started = Instant::now();
    common::fill_history(db, ROTATIONS, GROUPS).await?;
    println!(
        "filled {ROTATIONS} rotations of {GROUPS} groups in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await?;
    sqlx::query("UPDATE ledger_start SET backfilled = 0")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let started = Instant::now();
    let store = Store::open(db).await?;
    let entries = store.ledger_len().await?;
    println!(
        "entered {entries} rotations in the ledger (the one-time backfill at the first open) in {:.1} s; database {:.0} MB",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(db)?.len() as f64 / 1e6
    );
    Ok(())
}

/// `audit verify --database` over the million, as a whole process.
fn verify(db: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let db = db.to_str().ok_or("path is not UTF-8")?;
    let (lines, times) = common::time_command(&["audit", "verify", "--database", db], VERIFY_RUNS)?;
    let peak = peak_rss(&["audit", "verify", "--database", db])?;
    println!(
        "audit verify over {ROTATIONS} rotations ({lines} line): min {:.2} s, median {:.2} s, max {:.2} s (target < 10 s); peak RSS {peak} MB",
        times[0].as_secs_f64(),
        times[times.len() / 2].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    Ok(())
}

/// The peak memory of one run, in MB (GNU time's view, from /proc).
fn peak_rss(args: &[&str]) -> Result<u64, Box<dyn std::error::Error>> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    let mut peak = 0;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        peak = peak.max(common::memory_kb(pid).1);
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(peak / 1024)
}

/// Each console page over the million, served by `run`.
async fn console(
    dir: &std::path::Path,
    db: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let mut text = common::audit_config(
        &format!("[database]\npath = \"{}\"\n", db.display()),
        GROUPS,
    );
    text.push_str(&format!(
        "[api]\nbase_url = \"http://127.0.0.1:9/api\"\n[defaults]\ncatch_up = false\n[console]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let config = dir.join("console.toml");
    std::fs::write(&config, text)?;
    let _daemon = common::spawn_run(
        &config,
        &dir.join("daemon.log"),
        ("IR_BENCH_TOKEN", "bench-token"),
        "warn",
    )?;
    let base = format!("http://127.0.0.1:{port}");
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(30), None)?;
    // Ready once the first verification of the million is done.
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/ledger")).send().await
            && r.text().await.unwrap_or_default().contains("intact")
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("the console did not verify the history within 2 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "console up, its first verification done, {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    let mid = i64::from(ROTATIONS / 2);
    let pages = [
        "/".to_owned(),
        "/group?name=g42".to_owned(),
        format!("/group?name=g42&before={mid}"),
        "/history".to_owned(),
        "/history?status=failed&since=30d".to_owned(),
        format!("/history?group=g7&before={mid}"),
        "/failures".to_owned(),
        "/events".to_owned(),
        "/ledger".to_owned(),
    ];
    println!(
        "page, over {ROTATIONS} rotations: median / p95 / max of {PAGE_RUNS} (target < 200 ms)"
    );
    for page in &pages {
        let mut times = Vec::with_capacity(PAGE_RUNS);
        for _ in 0..=PAGE_RUNS {
            let t = Instant::now();
            let r = http.get(format!("{base}{page}")).send().await?;
            let ok = r.status().is_success();
            let _ = r.bytes().await?;
            if !ok {
                return Err(format!("{page} did not answer 200").into());
            }
            times.push(t.elapsed());
        }
        times.remove(0);
        times.sort();
        println!(
            "  {page:<40} {:>6.1} / {:>6.1} / {:>6.1} ms",
            ms(times[PAGE_RUNS / 2]),
            ms(times[PAGE_RUNS * 95 / 100]),
            ms(times[PAGE_RUNS - 1])
        );
    }
    let t = Instant::now();
    let csv = http
        .get(format!("{base}/history.csv?group=g42"))
        .send()
        .await?
        .bytes()
        .await?;
    println!(
        "  /history.csv?group=g42 (a download, {} rows): {:.0} ms",
        csv.iter().filter(|b| **b == b'\n').count() - 1,
        ms(t.elapsed())
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
