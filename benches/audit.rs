//! Audits over a big history, as whole processes: the release binary's
//! `history` answering the two everyday audit questions, and `status`, over
//! 1,000,000 rotations of 1,000 groups spread over two years. Run:
//! `cargo bench --bench audit` (about two minutes).
//!
//! Each command runs once to warm the page cache, then `RUNS` times; min,
//! median and max wall time of the whole process (start, config or database
//! open, query, output read through a pipe). The query plans are checked to
//! seek in indexes, never to scan the history.

mod common;

use invite_rotator::store::{HistoryQuery, Status, Store};
use std::path::Path;
use std::time::{Duration, Instant};

const ROTATIONS: u32 = 1_000_000;
const GROUPS: u32 = 1_000;
const RUNS: usize = 21;
const TARGET: Duration = Duration::from_millis(100);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("history.db");
    let runtime = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    runtime.block_on(common::fill_history(&db, ROTATIONS, GROUPS))?;
    println!(
        "filled {ROTATIONS} rotations of {GROUPS} groups over 2 years in {:.1} s ({:.0} MB); {} cores",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&db)?.len() as f64 / 1e6,
        common::cores()
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&db, GROUPS))?;
    // The same history under a config of 100,000 groups (99,000 never rotated).
    let big_config = dir.path().join("config-100k.toml");
    std::fs::write(&big_config, config_text(&db, 100_000))?;

    let db_arg = db.to_str().ok_or("path is not UTF-8")?;
    let failed = vec![
        "history",
        "--database",
        db_arg,
        "--since",
        "30d",
        "--status",
        "failed",
    ];
    let cases: [(&str, Vec<&str>); 6] = [
        (
            "history --group g42 --limit 50",
            vec![
                "history",
                "--database",
                db_arg,
                "--group",
                "g42",
                "--limit",
                "50",
            ],
        ),
        ("history --since 30d --status failed", failed.clone()),
        (
            "  the same, --format csv",
            [failed.as_slice(), &["--format", "csv"]].concat(),
        ),
        (
            "  the same, --format json",
            [failed.as_slice(), &["--format", "json"]].concat(),
        ),
        (
            "status (1,000 groups)",
            vec![
                "--config",
                config.to_str().ok_or("path is not UTF-8")?,
                "status",
            ],
        ),
        (
            "status (100,000 groups)",
            vec![
                "--config",
                big_config.to_str().ok_or("path is not UTF-8")?,
                "status",
            ],
        ),
    ];
    println!(
        "{:<38} {:>6} {:>9} {:>9} {:>9}",
        "command", "lines", "min", "median", "max"
    );
    let mut slow = Vec::new();
    for (name, args) in &cases {
        let (lines, times) = common::time_command(args, RUNS)?;
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        println!(
            "{name:<38} {lines:>6} {:>9} {:>9} {:>9}",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
        if times[times.len() / 2] > TARGET && name.starts_with("history") {
            slow.push(*name);
        }
    }

    let plans = runtime.block_on(plans(&db))?;
    for (name, plan) in &plans {
        println!("plan of {name}:");
        for line in plan {
            println!("  {line}");
        }
    }
    let scans: Vec<&String> = plans
        .iter()
        .flat_map(|(_, plan)| plan)
        .filter(|l| l.starts_with("SCAN") && !l.contains("json_each"))
        .collect();
    if !scans.is_empty() {
        return Err(format!("a query scans instead of seeking: {scans:?}").into());
    }
    if !slow.is_empty() {
        return Err(format!("median over {} ms: {slow:?}", TARGET.as_millis()).into());
    }
    Ok(())
}

/// A config naming `groups` groups, `g0` on, for `status`.
fn config_text(db: &Path, groups: u32) -> String {
    common::audit_config(&format!("[database]\npath = \"{}\"", db.display()), groups)
}

/// The plans of the audited queries, as the store runs them.
async fn plans(db: &Path) -> Result<Vec<(&'static str, Vec<String>)>, Box<dyn std::error::Error>> {
    let store = Store::open_read_only(db).await?;
    let by_group = HistoryQuery {
        group: Some("g42".into()),
        limit: Some(50),
        ..HistoryQuery::default()
    };
    let failed = HistoryQuery {
        since: Some(chrono::Utc::now() - chrono::Duration::days(30)),
        status: Some(Status::Failed),
        ..HistoryQuery::default()
    };
    let names: Vec<String> = (0..GROUPS).map(|g| format!("g{g}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(vec![
        (
            "history --group g42 --limit 50",
            store.explain_history(&by_group).await?,
        ),
        (
            "history --since 30d --status failed",
            store.explain_history(&failed).await?,
        ),
        ("status", store.explain_group_records(&names).await?),
    ])
}
