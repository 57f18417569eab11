//! Hooks: telling the world of each rotation, so the new link reaches wherever
//! the old one was published (a website, an onboarding flow, a chat).
//!
//! Nothing is sent from the rotation itself. The database queues an event in
//! the same transaction as each rotation's end (a trigger, see migration
//! 0005), and this worker, in the daemon, turns events into deliveries (one per
//! hook that wants it) and delivers them with retries: a receiver down for an
//! hour, or a daemon restart, loses no notification. Each delivery carries an
//! idempotency key that stays the same across retries, so a receiver drops
//! repeats (a delivery cut by a stop is sent again). Hooks are delivered by
//! `run`, for manual rotations too.

mod checkpoint;
mod command;
mod webhook;

pub use checkpoint::announce_checkpoint;

pub use webhook::{client, signature};

use crate::backoff;
use crate::config::{Hook, HookAction, RetryPolicy};
use crate::mask::Masker;
use crate::store::{Attempt, Delivery, Recipient, Store, StoreError};
use crate::whatsapp::InviteCode;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A notification no receiver took within this long is given up (logged).
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// How often the outbox is looked at (an index lookup; the full pass only
/// when there is work).
const POLL: Duration = Duration::from_secs(1);
/// How often deliveries of hooks no longer configured are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Deliveries in flight at once.
const PARALLEL: usize = 8;
/// How long past a hook's timeout a claimed delivery stays with the node
/// that claimed it (see [`Store::claim_delivery`]).
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

/// The facts of a rotation, as a webhook's JSON body and a command's
/// environment give them.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// `rotation.succeeded`, `rotation.failed` or `rotation.unknown`.
    pub event: String,
    /// The history row.
    pub rotation_id: i64,
    /// The group's name.
    pub group: String,
    /// Its JID.
    pub jid: String,
    /// Its instance.
    pub instance: String,
    /// `schedule`, `catch_up` or `manual`.
    pub trigger: String,
    /// The status this notification tells of.
    pub status: String,
    /// The code revoked.
    pub old_code: Option<String>,
    /// Its link.
    pub old_link: Option<String>,
    /// The code issued.
    pub new_code: Option<String>,
    /// Its link.
    pub new_link: Option<String>,
    /// The due time served.
    pub scheduled_for: Option<String>,
    /// When the rotation started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Reset calls made.
    pub attempts: i64,
    /// The last error.
    pub error: Option<String>,
}

impl Notification {
    fn of(d: &Delivery) -> Self {
        let r = &d.rotation;
        // Only codes that parse, and links rebuilt from them: a hand-edited
        // or hostile row cannot put markup or escapes into a website or a
        // command's environment.
        let code = |c: &Option<String>| c.as_deref().and_then(|c| InviteCode::parse(c).ok());
        let (old, new) = (code(&r.old_invite_code), code(&r.new_invite_code));
        Notification {
            event: format!("rotation.{}", d.event_status),
            rotation_id: r.id,
            group: r.group_name.clone(),
            jid: r.group_jid.clone(),
            instance: r.instance.clone(),
            trigger: r.trigger.to_string(),
            status: d.event_status.clone(),
            old_link: old.as_ref().map(InviteCode::link),
            old_code: old.map(|c| c.as_str().to_owned()),
            new_link: new.as_ref().map(InviteCode::link),
            new_code: new.map(|c| c.as_str().to_owned()),
            scheduled_for: r.scheduled_for.clone().map(String::from),
            started_at: r.started_at.to_string(),
            finished_at: r.finished_at.clone().map(String::from),
            attempts: r.attempts,
            error: r.error.clone(),
        }
    }
}

/// How one delivery went.
struct Outcome {
    delivered: bool,
    result: Option<String>,
    error: Option<String>,
    output: Option<String>,
}

impl Outcome {
    /// The receiver's words (error, output) masked of secrets and of the
    /// codes the history knows, before anything logs or stores them.
    async fn mask(&mut self, masker: &Masker, store: &Store) {
        let (had_error, had_output) = (self.error.is_some(), self.output.is_some());
        if !had_error && !had_output {
            return;
        }
        let mut texts = [
            self.error.take().unwrap_or_default(),
            self.output.take().unwrap_or_default(),
        ];
        masker.mask_known_all(store, &mut texts).await;
        let [error, output] = texts;
        self.error = had_error.then_some(error);
        self.output = had_output.then_some(output);
    }
}

/// What the worker works with; replaced when the config is reloaded.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The hooks.
    pub hooks: Vec<Hook>,
    /// Whose backoff spaces the retries of a delivery.
    pub retry: RetryPolicy,
    /// Masks what receivers answer and commands print (a receiver may echo
    /// the notification, codes and all) before it is logged or stored.
    pub masker: Masker,
}

/// Delivers the hooks' notifications until shutdown.
pub struct Worker {
    store: Store,
    settings: watch::Receiver<Arc<Settings>>,
    http: reqwest::Client,
}

impl Worker {
    /// A worker on `store`, with the hooks `settings` holds at each pass;
    /// webhooks go through `proxy` if set (the config's `[api] proxy`).
    pub fn new(
        store: Store,
        settings: watch::Receiver<Arc<Settings>>,
        proxy: Option<&reqwest::Url>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Worker {
            store,
            settings,
            http: webhook::client(proxy)?,
        })
    }

    /// Works the outbox until `shutdown`. A delivery cut by the stop stays
    /// pending and goes again at the next start.
    ///
    /// Idle, it costs one index lookup a second ([`Store::outbox_has_work`]);
    /// the full pass runs only when an event or a due delivery waits.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut swept: Option<tokio::time::Instant> = None;
        loop {
            let settings = self.settings.borrow().clone();
            let keys: Vec<&str> = settings.hooks.iter().map(|h| h.key.as_str()).collect();
            if swept.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                self.sweep_orphans(&keys).await;
                swept = Some(tokio::time::Instant::now());
            }
            let work = match self.store.outbox_has_work(&keys, Utc::now()).await {
                Ok(work) => work,
                Err(e) => {
                    tracing::error!(error = %e, "hooks: cannot read the outbox; retrying");
                    false
                }
            };
            if work {
                tokio::select! {
                    biased;
                    () = &mut shutdown => return,
                    result = self.pass() => if let Err(e) = result {
                        tracing::error!(error = %e, "hooks: cannot work the outbox; retrying");
                    },
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Gives up deliveries of hooks no longer configured (removed, or their
    /// target changed) once they are a day old; at start, then hourly.
    async fn sweep_orphans(&self, keys: &[&str]) {
        match self
            .store
            .abandon_orphans(keys, Utc::now() - GIVE_UP_AFTER)
            .await
        {
            Ok(0) => {}
            Ok(orphans) => tracing::warn!(
                orphans,
                "hooks: gave up deliveries of hooks no longer configured"
            ),
            Err(e) => tracing::warn!(error = %e, "hooks: cannot sweep the outbox"),
        }
    }

    /// Queues new events and delivers what is due; returns deliveries made.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        let settings = self.settings.borrow().clone();
        let now = Utc::now();
        self.store
            .fan_out(
                |group, status| recipients(&settings.hooks, group, status),
                now,
            )
            .await?;
        let keys: Vec<&str> = settings.hooks.iter().map(|h| h.key.as_str()).collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let due = self.store.due_deliveries(&keys, now, 64).await?;
        let count = due.len();
        let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(due)
            .map(|d| self.deliver(&settings, d))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), _>>()?;
        Ok(count)
    }

    async fn deliver(&self, settings: &Settings, d: Delivery) -> Result<(), StoreError> {
        let Some(hook) = settings.hooks.iter().find(|h| h.key == d.hook_key) else {
            return Ok(());
        };
        // Fenced: a node that lost its lease starts no delivery.
        let until = Utc::now() + hook.timeout + CLAIM_MARGIN;
        if !self.store.claim_delivery(d.delivery_id, until).await? {
            return Ok(());
        }
        let note = Notification::of(&d);
        let mut outcome = match &hook.action {
            HookAction::Webhook { url, secret } => {
                webhook::post(
                    &self.http,
                    url,
                    secret.as_ref(),
                    hook.timeout,
                    &d.idempotency_key,
                    &note,
                )
                .await
            }
            HookAction::Command { argv } => {
                command::run(argv, hook.timeout, &d.idempotency_key, &note).await
            }
        };
        outcome.mask(&settings.masker, &self.store).await;
        let attempts = u32::try_from(d.delivery_attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let retry_at = (!outcome.delivered)
            .then(|| retry_at(&settings.retry, attempts, &d.queued_at))
            .flatten();
        if outcome.delivered {
            tracing::info!(hook = %hook.name, group = %note.group, event = %note.event, attempts, "hook delivered");
        } else if retry_at.is_some() {
            tracing::warn!(hook = %hook.name, group = %note.group, event = %note.event, attempts, error = outcome.error.as_deref(), "hook delivery failed; will retry");
        } else {
            tracing::error!(hook = %hook.name, group = %note.group, event = %note.event, attempts, error = outcome.error.as_deref(), "hook delivery given up after 24 h");
        }
        self.store
            .record_delivery(
                d.delivery_id,
                &Attempt {
                    delivered: outcome.delivered,
                    result: outcome.result,
                    error: outcome.error,
                    output: outcome.output.as_deref(),
                    retry_at,
                },
            )
            .await
    }
}

/// The hooks that want to hear of a rotation of `group` that ended `status`.
fn recipients(hooks: &[Hook], group: &str, status: &str) -> Vec<Recipient> {
    hooks
        .iter()
        .filter(|h| h.wants(group, status == "succeeded"))
        .map(|h| Recipient {
            key: h.key.clone(),
            name: h.name.clone(),
        })
        .collect()
}

/// When to try again after `attempts` failures: half to all of the backoff
/// ceiling from now; none once a day has passed since it was queued.
fn retry_at(retry: &RetryPolicy, attempts: u32, queued_at: &str) -> Option<DateTime<Utc>> {
    let now = Utc::now();
    let queued = DateTime::parse_from_rfc3339(queued_at).map_or(now, |t| t.with_timezone(&Utc));
    if now - queued > GIVE_UP_AFTER {
        return None;
    }
    let wait = backoff::full_jitter(retry, attempts).max(backoff::ceiling(retry, attempts) / 2);
    Some(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero()))
}

/// The first 4 KiB of `text`, cut at a character boundary.
fn clip(text: &str) -> String {
    let mut end = text.len().min(4096);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
