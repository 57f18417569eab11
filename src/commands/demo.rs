//! `demo`: the quick tour. The built-in emulator on a loopback port, a few
//! groups on 5-second schedules, the real daemon for N seconds with its log on
//! screen, a stop as SIGTERM would do it, and the history. RyzeAPI's events
//! are on: an admin removes a member from `vip` (which has no schedule of
//! its own) and it rotates after its quiet period; then someone resets its
//! link in WhatsApp itself, and the history records it.

use super::Failure;
use crate::clock::SystemClock;
use crate::config::{Config, Purpose};
use crate::emulator::{Emulator, EmulatorOptions, Membership};
use crate::exit::Exit;
use crate::node::{self, Listeners};
use crate::store::{HistoryQuery, Store};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

const INSTANCE: &str = "demo";
const TOKEN: &str = "demo-token";
/// Three groups we administer, and one where we are only a member (its
/// rotations fail with the API's 403, as they would for real); `vip`
/// rotates only when a member is removed.
const GROUPS: [(&str, Membership, &str); 4] = [
    ("announcements", Membership::Admin, "*/5 * * * * *"),
    ("support", Membership::Admin, "*/5 * * * * *"),
    ("vip", Membership::Admin, "0 0 1 1 *"),
    ("not-our-group", Membership::Member, "*/5 * * * * *"),
];
/// The quiet period after a removal.
const EVENT_DELAY: u64 = 2;

pub async fn run(seconds: u64) -> Result<Exit, Failure> {
    let runtime = |e: &dyn std::fmt::Display| Failure::Runtime(e.to_string());
    let emulator = Emulator::new(EmulatorOptions::default());
    emulator.add_instance(INSTANCE, TOKEN);
    let server = emulator.clone().spawn().await.map_err(|e| runtime(&e))?;
    let dir = std::env::temp_dir().join(format!("invite-rotator-demo-{}", std::process::id()));
    let database = dir.join("history.db");
    // The events' receiver, on a loopback port the emulator posts to.
    let events = crate::listener::bind(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| runtime(&e))?;
    let port = events.local_addr().map_err(|e| runtime(&e))?.port();
    let secret = write_secret(&dir).map_err(|e| runtime(&e))?;

    let mut text = format!(
        "[api]\nbase_url = \"{}\"\n[database]\npath = \"{}\"\n\
         [defaults]\nevent_delay = \"{EVENT_DELAY}s\"\n\
         [events]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}/events\"\n\
         authorization_file = \"{}\"\n\
         [[instance]]\nname = \"{INSTANCE}\"\ntoken = \"{TOKEN}\"\n",
        server.base_url(),
        database.display(),
        secret.display(),
    );
    let mut jids = Vec::new();
    for (i, (name, membership, schedule)) in GROUPS.iter().enumerate() {
        let jid = format!("12036340628900{i:04}@g.us");
        emulator.add_group(INSTANCE, &jid, *membership);
        text.push_str(&format!(
            "[[group]]\nname = \"{name}\"\ninstance = \"{INSTANCE}\"\njid = \"{jid}\"\nschedule = \"{schedule}\"\n"
        ));
        jids.push(jid);
    }
    // The demo's own config, so its inline-token warning is not shown.
    let config =
        Config::parse(&text, &dir.join("demo.toml"), Purpose::Run).map_err(Failure::Config)?;
    eprintln!(
        "demo: RyzeAPI emulator on {}, 3 groups rotating every 5 s and vip on events only, history in {}; running the daemon for {seconds} s\n",
        server.base_url(),
        database.display()
    );

    let store = Store::open(&database).await.map_err(|e| runtime(&e))?;
    let (_reloads, reload_rx) = mpsc::channel(1);
    let stop = tokio::time::sleep(Duration::from_secs(seconds));
    let happenings = tokio::spawn(happen(emulator.clone(), jids, seconds));
    let listeners = Listeners {
        events: Some(events),
        ..Listeners::default()
    };
    let clock = std::sync::Arc::new(SystemClock);
    let served = node::run(config, store.clone(), clock, listeners, stop, reload_rx).await;
    happenings.abort();
    let _ = happenings.await;
    served.map_err(|e| runtime(&e))?;

    let rows = store
        .history(&HistoryQuery::default())
        .await
        .map_err(|e| runtime(&e))?;
    println!("\nThe history ({} rotations):\n", rows.len());
    crate::report::write_table(std::io::stdout().lock(), &rows).map_err(|e| runtime(&e))?;
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

/// What happens in the groups meanwhile: a removal from `vip` early on, and
/// its link reset in WhatsApp itself a little later (after its rotation: a
/// group rotating every 5 s could revoke an outside code before the read
/// that confirms it, and an unconfirmed report is not recorded).
async fn happen(emulator: Emulator, jids: Vec<String>, seconds: u64) {
    let removal = Duration::from_secs((seconds / 4).clamp(1, 5));
    tokio::time::sleep(removal).await;
    eprintln!("\ndemo: an admin removes a member from vip; it rotates {EVENT_DELAY} s later\n");
    emulator.remove_member(&jids[2], "5511999990001@s.whatsapp.net");
    tokio::time::sleep(removal).await;
    eprintln!(
        "\ndemo: someone resets the link of vip in WhatsApp itself; the history records it\n"
    );
    emulator.reset_outside(&jids[2]);
}

/// The webhook's secret, in a file only this user reads.
fn write_secret(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("events-secret");
    let secret: String = (0..32)
        .map(|_| char::from(b'a' + fastrand::u8(..26)))
        .collect();
    crate::outfile::write(
        &path,
        secret.as_bytes(),
        crate::outfile::PRIVATE,
        crate::outfile::Replace::Yes,
    )
    .map_err(std::io::Error::other)?;
    Ok(path)
}
