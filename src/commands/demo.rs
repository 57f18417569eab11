//! `demo`: the quick tour. The built-in emulator on a loopback port, a few
//! groups on 5-second schedules, the real daemon for N seconds with its log on
//! screen, a stop as SIGTERM would do it, and the history.

use super::{Failure, history, run as daemon};
use crate::config::{Config, Purpose};
use crate::daemon::Quiet;
use crate::emulator::{Emulator, EmulatorOptions, Membership};
use crate::exit::Exit;
use crate::store::{HistoryQuery, Store};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

const INSTANCE: &str = "demo";
const TOKEN: &str = "demo-token";
/// Three groups we administer, and one where we are only a member (its
/// rotations fail with the API's 403, as they would for real).
const GROUPS: [(&str, Membership); 4] = [
    ("announcements", Membership::Admin),
    ("support", Membership::Admin),
    ("vip", Membership::Admin),
    ("not-our-group", Membership::Member),
];

pub async fn run(seconds: u64) -> Result<Exit, Failure> {
    let runtime = |e: &dyn std::fmt::Display| Failure::Runtime(e.to_string());
    let emulator = Emulator::new(EmulatorOptions::default());
    emulator.add_instance(INSTANCE, TOKEN);
    let server = emulator.clone().spawn().await.map_err(|e| runtime(&e))?;
    let dir = std::env::temp_dir().join(format!("invite-rotator-demo-{}", std::process::id()));
    let database = dir.join("history.db");

    let mut text = format!(
        "[api]\nbase_url = \"{}\"\n[database]\npath = \"{}\"\n\
         [[instance]]\nname = \"{INSTANCE}\"\ntoken = \"{TOKEN}\"\n",
        server.base_url(),
        database.display()
    );
    for (i, (name, membership)) in GROUPS.iter().enumerate() {
        let jid = format!("12036340628900{i:04}@g.us");
        emulator.add_group(INSTANCE, &jid, *membership);
        text.push_str(&format!(
            "[[group]]\nname = \"{name}\"\ninstance = \"{INSTANCE}\"\njid = \"{jid}\"\nschedule = \"*/5 * * * * *\"\n"
        ));
    }
    // The demo's own config, so its inline-token warning is not shown.
    let config =
        Config::parse(&text, &dir.join("demo.toml"), Purpose::Run).map_err(Failure::Config)?;
    eprintln!(
        "demo: RyzeAPI emulator on {}, {} groups rotating every 5 s, history in {}; running the daemon for {seconds} s\n",
        server.base_url(),
        GROUPS.len(),
        database.display()
    );

    let store = Store::open(&database).await.map_err(|e| runtime(&e))?;
    let (_reloads, reload_rx) = mpsc::channel(1);
    let stop = tokio::time::sleep(Duration::from_secs(seconds));
    daemon::serve(
        config,
        store.clone(),
        &Quiet,
        stop,
        reload_rx,
        daemon::Parts::default(),
    )
    .await?;

    let rows = store
        .history(&HistoryQuery::default())
        .await
        .map_err(|e| runtime(&e))?;
    println!("\nThe history ({} rotations):\n", rows.len());
    history::write_table(std::io::stdout().lock(), &rows).map_err(|e| runtime(&e))?;
    drop(store);
    // Kept, for the newcomer to open (the system removes old temporary files).
    let me = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let cwd = std::env::current_dir().ok()?;
            Some(
                exe.strip_prefix(&cwd)
                    .map_or(exe.clone(), |p| Path::new(".").join(p)),
            )
        })
        .map_or_else(|| "invite-rotator".to_owned(), |p| p.display().to_string());
    println!(
        "\nThe history is kept in {db}. Read it with\n  {me} history --database {db}\n  sqlite3 {db} 'SELECT group_name, status, old_invite_code, new_invite_code FROM rotations'",
        db = database.display()
    );
    Ok(Exit::Success)
}
