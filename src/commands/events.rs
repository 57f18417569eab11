//! `events list` (what arrived, and what was done) and `events register`
//! (tell RyzeAPI where to post, as `run` does at start).

use super::{Failure, history_exists, load_config, table};
use crate::cli::StatusFormat;
use crate::config::{Config, Purpose};
use crate::engine::Engine;
use crate::events::register;
use crate::exit::Exit;
use crate::store::{Store, StoredEvent};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// One event in `--format json`. The keys are part of the interface
/// (documented in docs/operations.md): add, never rename.
#[derive(Serialize)]
struct Line<'a> {
    id: i64,
    received_at: &'a str,
    channel: &'a str,
    instance: &'a str,
    group: Option<&'a str>,
    group_jid: Option<&'a str>,
    event: &'a str,
    kind: &'a str,
    processed_at: Option<&'a str>,
    outcome: Option<&'a str>,
    /// `data` as RyzeAPI sent it, every configured token and secret and
    /// every code the history knows masked (`null` once pruned).
    data: serde_json::Value,
}

pub(super) async fn list(
    config_path: &Path,
    limit: u32,
    format: StatusFormat,
) -> Result<Exit, Failure> {
    // Like `history`: the groups and the database, not the tokens.
    let config = load_config(config_path, Purpose::Read)?;
    if let Some(path) = config.database.sqlite_path()
        && !history_exists(path)?
    {
        return Err(Failure::NoInput(format!(
            "no history database at {} (database.path); the daemon creates it when it first starts",
            path.display()
        )));
    }
    let store = Store::connect_read_only(&config.database)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let mut events = store
        .recent_events(limit)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    if format == StatusFormat::Json {
        // Stored with the secrets masked, the codes kept for the actor:
        // shown without the codes the history knows.
        let mut data: Vec<String> = events
            .iter_mut()
            .map(|e| std::mem::take(&mut e.data))
            .collect();
        // Every configured secret too: rows stored by an older version
        // were redacted only as the envelope said.
        crate::mask::Masker::of(&config)
            .mask_known_all(&store, &mut data)
            .await;
        for (e, data) in events.iter_mut().zip(data) {
            e.data = data;
        }
    }
    if events.is_empty() {
        eprintln!("no events yet: {} holds none", config.database.name());
        return Ok(Exit::Success);
    }
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    match write(out, format, &config, &events) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Runtime(format!("cannot write the events: {e}")))
        }
        _ => Ok(Exit::Success),
    }
}

fn write(
    mut out: impl Write,
    format: StatusFormat,
    config: &Config,
    events: &[StoredEvent],
) -> std::io::Result<()> {
    let group_name = |jid: Option<&str>| {
        jid.and_then(|jid| config.groups.iter().find(|g| g.jid.as_str() == jid))
            .map(|g| g.name.as_str())
    };
    match format {
        StatusFormat::Json => {
            for e in events {
                let line = Line {
                    id: e.id,
                    received_at: &e.received_at,
                    channel: &e.channel,
                    instance: &e.instance,
                    group: group_name(e.group_jid.as_deref()),
                    group_jid: e.group_jid.as_deref(),
                    event: &e.event,
                    kind: e.kind.as_str(),
                    processed_at: e.processed_at.as_deref(),
                    outcome: e.outcome.as_deref(),
                    data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null),
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        StatusFormat::Table => {
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        e.received_at.to_string(),
                        e.instance.clone(),
                        group_name(e.group_jid.as_deref())
                            .or(e.group_jid.as_deref())
                            .unwrap_or("-")
                            .to_owned(),
                        e.event.clone(),
                        e.kind.to_string(),
                        e.outcome.clone().unwrap_or_else(|| "waiting".into()),
                    ]
                })
                .collect();
            let headers = [
                "ID", "RECEIVED", "INSTANCE", "GROUP", "EVENT", "KIND", "DONE",
            ];
            out.write_all(table::render(&headers, &rows).as_bytes())?;
        }
    }
    out.flush()
}

pub(super) async fn register(config_path: &Path) -> Result<Exit, Failure> {
    let config = load_config(config_path, Purpose::Run)?;
    let settings = config.events.as_ref();
    let (Some(url), Some(secret)) = (
        settings.and_then(|e| e.public_url.as_ref()),
        settings.and_then(|e| e.secret.as_ref()),
    ) else {
        return Err(Failure::Runtime(format!(
            "{}: nothing to register: [events] needs public_url (with listen) and authorization_env or authorization_file",
            config_path.display()
        )));
    };
    let store = Store::connect(&config.database)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    // The engine's clients: the same tokens and rate budgets as rotations.
    let engine =
        Engine::new(&config, store.clone()).map_err(|e| Failure::Runtime(e.to_string()))?;
    let mut rows = Vec::new();
    let mut all_ok = true;
    for instance in &config.instances {
        let Some(client) = engine.client(&instance.name) else {
            continue;
        };
        let outcome = register::once(client, &instance.name, url, secret, &store).await;
        all_ok &= outcome.is_ok();
        rows.push(vec![
            instance.name.clone(),
            if outcome.is_ok() {
                "registered"
            } else {
                "failed"
            }
            .to_owned(),
            outcome.err().map(|e| e.to_string()).unwrap_or_default(),
        ]);
    }
    print!(
        "{}",
        table::render(&["INSTANCE", "WEBHOOK", "ERROR"], &rows)
    );
    Ok(if all_ok { Exit::Success } else { Exit::Failure })
}
