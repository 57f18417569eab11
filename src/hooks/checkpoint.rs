//! The ledger's signed checkpoints, told to the hooks whose `on` holds
//! `checkpoint`, so that a copy of each lives outside the database
//! (a receiver keeps the `line`; `audit verify --checkpoint FILE` reads it
//! back). Sent directly, not through the outbox: a checkpoint is also in
//! the log and the database, and the next one covers this one.

use super::{Settings, command, webhook};
use crate::config::HookAction;
use serde::Serialize;
use std::time::Duration;

/// A checkpoint as a webhook's JSON body gives it.
#[derive(Debug, Serialize)]
struct CheckpointNote<'a> {
    /// `ledger.checkpoint`.
    event: &'static str,
    /// The checkpoint, as signed (what `audit verify --checkpoint` reads).
    line: &'a str,
}

/// Tells each hook that wants checkpoints of `line`, each hook tried up to
/// `tries` times (a few seconds apart); failures are logged.
pub async fn announce_checkpoint(
    http: &reqwest::Client,
    settings: &Settings,
    line: &str,
    key: &str,
    tries: u32,
) {
    let note = CheckpointNote {
        event: "ledger.checkpoint",
        line,
    };
    for hook in settings.hooks.iter().filter(|h| h.on_checkpoint) {
        let mut error = None;
        for attempt in 1..=tries.max(1) {
            let outcome = match &hook.action {
                HookAction::Webhook { url, secret } => {
                    webhook::post(http, url, secret.as_ref(), hook.timeout, key, &note).await
                }
                HookAction::Command { argv } => {
                    let vars = [
                        ("EVENT", note.event.to_owned()),
                        ("CHECKPOINT", line.to_owned()),
                        ("IDEMPOTENCY_KEY", key.to_owned()),
                    ];
                    command::run_with(argv, hook.timeout, &vars).await
                }
            };
            if outcome.delivered {
                tracing::info!(hook = %hook.name, "hook told of the ledger's checkpoint");
                error = None;
                break;
            }
            error = outcome.error;
            if attempt < tries {
                tokio::time::sleep(Duration::from_secs(5 * u64::from(attempt))).await;
            }
        }
        // The line holds no code: the receiver's words lose the secrets only.
        if let Some(e) = error.map(|e| settings.masker.mask(&e, &Default::default())) {
            tracing::warn!(hook = %hook.name, error = %e, "cannot tell a hook of the ledger's checkpoint (it is in the log and the database)");
        }
    }
}
