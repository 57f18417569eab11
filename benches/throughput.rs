//! Throughput of `rotate --all` against the emulator's per-token limit.
//!
//! 150 groups (300 calls: one read and one reset each), API limit 600/min,
//! 0.3 s latency per reply, the engine configured with the same limit. Prints
//! the achieved call rate as a share of the limit and the number of 429s.
//! Run: `cargo bench --bench throughput` (about 30 s).

use invite_rotator::config::{Config, Purpose};
use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership};
use invite_rotator::engine::Engine;
use invite_rotator::store::{Status, Store, Trigger};
use std::time::{Duration, Instant};

const GROUPS: usize = 150;
const LIMIT: u32 = 600;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::new(EmulatorOptions {
        requests_per_minute: LIMIT,
        window: Duration::from_secs(60),
        latency: Duration::from_millis(300),
        auto_create: false,
        ..EmulatorOptions::default()
    });
    emulator.add_instance("bench", "bench-token");
    let mut text = String::new();
    for i in 0..GROUPS {
        let jid = format!("1203634{i:011}@g.us");
        emulator.add_group("bench", &jid, Membership::Admin);
        text.push_str(&format!(
            "[[group]]\nname = \"g{i}\"\ninstance = \"bench\"\njid = \"{jid}\"\nschedule = \"@daily\"\n"
        ));
    }
    let server = emulator.clone().spawn().await?;
    let dir = tempfile::tempdir()?;
    let config = format!(
        "[api]\nbase_url = \"{}\"\n[rate_limit]\nrequests_per_minute = {LIMIT}\n[database]\npath = \"{}\"\n[[instance]]\nname = \"bench\"\ntoken = \"bench-token\"\n{text}",
        server.base_url(),
        dir.path().join("history.db").display()
    );
    let config = Config::parse(&config, &dir.path().join("bench.toml"), Purpose::Run)?;
    let store = Store::open(&dir.path().join("history.db")).await?;
    let engine = Engine::new(&config, store)?;

    let start = Instant::now();
    let reports = engine.rotate_many(&config.groups, Trigger::Manual).await;
    let elapsed = start.elapsed();

    let succeeded = reports
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status == Status::Succeeded))
        .count();
    let calls = emulator.calls().len();
    // The last call's reply arrives one latency after it was admitted.
    let rate = calls as f64 / (elapsed.as_secs_f64() - 0.3) * 60.0;
    println!("groups           {GROUPS}");
    println!("succeeded        {succeeded}");
    println!("api calls        {calls}");
    println!("429 received     {}", emulator.rate_limited());
    println!("elapsed          {:.2} s", elapsed.as_secs_f64());
    println!(
        "call rate        {rate:.1}/min of {LIMIT}/min = {:.1}% of the limit",
        rate / f64::from(LIMIT) * 100.0
    );
    Ok(())
}
