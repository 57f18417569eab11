//! The rotation workflow, top to bottom. A rotation kills a live link, so:
//!
//! 1. the `pending` row is written before anything is sent: if it cannot be,
//!    the API is never called;
//! 2. the live code is read first; it is the `old_invite_code` the reset revokes;
//! 3. the reset is retried only when it surely did not happen: permanent errors
//!    fail at once, transient ones back off, and after an **unknown** outcome
//!    the link is read again before anything else: changed means the reset
//!    happened (that code is recorded), unchanged means it may be retried;
//! 4. the row is settled with what the API issued. If the truth cannot be
//!    learned it stays `unknown`, with the error, until the group's next
//!    rotation reads the link and tells (changed: that code was issued).
//!
//! Failpoints (see [`crate::failpoint`]) mark each step where a crash must
//! leave a history that the next start can settle.

use crate::backoff;
use crate::config::{Group, RetryPolicy};
use crate::ryzeapi::{Call, CallError, RyzeApi};
use crate::store::{Begun, CallRecord, Cause, NewRotation, Status, Store, StoreError};
use crate::whatsapp::{InviteCode, Jid, fingerprint};
use chrono::Utc;
use std::time::Duration;
use tokio::time::Instant;

mod settle;

pub use settle::settle_interrupted;

/// What one rotation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The history row.
    pub id: i64,
    /// The group's name.
    pub group: String,
    /// How it ended.
    pub status: Status,
    /// Reset calls made.
    pub attempts: u32,
    /// The code revoked, when it was readable.
    pub old_code: Option<String>,
    /// The code issued, when one was.
    pub new_code: Option<String>,
    /// The last error.
    pub error: Option<String>,
    /// Wall time from start to settlement.
    pub elapsed: Duration,
}

/// Why a rotation did not run to a settled row.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The history could not be written. No reset was made after the failed
    /// write; a row left `pending` is settled when the daemon next starts.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another rotation of the group is pending (another process, or a crash
    /// the daemon settles at its next start); nothing was done.
    #[error("another rotation of this group is pending since {since}; not started")]
    Busy {
        /// When the pending rotation started.
        since: String,
        /// The process that wrote it (see `owner`: boot, pid and start time).
        owner: Option<String>,
    },
    /// The group names an instance this engine was not built with.
    #[error("instance {0:?} is not configured")]
    NoInstance(String),
    /// A stop came before this rotation started; nothing was done.
    #[error("not started: interrupted")]
    NotStarted,
    /// This node no longer holds the lease (another node is active):
    /// nothing was done.
    #[error("not started: this node does not hold the lease")]
    Fenced,
    /// The due time was served already (by another node): nothing was done.
    #[error("not started: this due time was served already")]
    Served,
}

/// Rotates `group` once, for `cause` (what its row records as its trigger,
/// due time and event).
pub async fn rotate<A: RyzeApi>(
    store: &Store,
    api: &A,
    retry: &RetryPolicy,
    group: &Group,
    cause: Cause,
) -> Result<Report, RotateError> {
    // 1. The record comes first, and only one per group at a time.
    let begun = store
        .begin(&NewRotation {
            group_name: &group.name,
            group_jid: group.jid.as_str(),
            instance: &group.instance,
            cause,
        })
        .await?;
    let id = match begun {
        Begun::Started(id) => id,
        Begun::Busy { since, owner } => return Err(RotateError::Busy { since, owner }),
        Begun::Fenced => return Err(RotateError::Fenced),
        Begun::Served => return Err(RotateError::Served),
    };
    crate::failpoint::crash("rotation::after_begin");
    let mut run = Run {
        store,
        api,
        retry,
        name: &group.name,
        jid: &group.jid,
        id,
        attempts: 0,
        last_error: None,
        old_code: None,
        started: Instant::now(),
        told_by_reply: false,
        from: Status::Pending,
    };

    // 2. The live code, which the reset will revoke.
    let old = match run.read_live_code().await {
        Live::Code(code) => Some(code),
        Live::NoLink => None,
        // Not a member, not allowed to read: the reset's own answer is the
        // authoritative one, so it is still asked, once.
        Live::Refused(_) => None,
        Live::Unreachable(error) => {
            return Ok(run.settle(Status::Failed, None, Some(error)).await?);
        }
    };
    if let Some(old) = &old {
        run.learn_previous_outcome(old).await?;
    }
    run.note_outside_change(old.as_ref()).await?;
    run.old_code = old.as_ref().map(|c| c.as_str().to_owned());
    store.record_old_code(id, run.old_code.as_deref()).await?;

    // 3. Reset, retrying only what surely did not happen.
    // A reset of this rotation whose outcome was unknown may still land: then
    // the link is read again right before the next reset (and before giving
    // up), so a reset landing during a backoff is recorded, never revoked.
    let mut unsure = false;
    while run.attempts < retry.max_attempts {
        if unsure && let Some(report) = run.verify(old.as_ref()).await? {
            return Ok(report);
        }
        run.attempts += 1;
        store.record_attempt(id, run.attempts).await?;
        crate::failpoint::crash("rotation::before_reset");
        let call = api.reset_link(&group.jid).await;
        crate::failpoint::crash("rotation::after_reset");
        run.log("resetLink", &call).await;
        match call.result {
            Ok(reply) => {
                run.told_by_reply = true;
                return Ok(run
                    .settle(Status::Succeeded, Some(reply.code), None)
                    .await?);
            }
            Err(CallError::Permanent(error)) => {
                return Ok(run.settle(Status::Failed, None, Some(error)).await?);
            }
            Err(CallError::Unknown(error)) => {
                run.last_error = Some(error);
                // The reset may still be landing: a gateway can answer 5xx
                // (or nothing) at once while the backend applies it a moment
                // later. Reading too soon would see the old link and invite a
                // second reset, so the read-back waits, whatever the answer.
                tokio::time::sleep(retry.read_back_delay).await;
                if let Some(report) = run.verify(old.as_ref()).await? {
                    return Ok(report);
                }
                unsure = true;
            }
            // The client has paused the token until the API's window resets;
            // the next grant waits for it, no backoff on top.
            Err(CallError::RateLimited { message, .. }) => {
                run.last_error = Some(message);
                continue;
            }
            Err(CallError::Transient(error)) => run.last_error = Some(error),
        }
        if run.attempts < retry.max_attempts || unsure {
            run.back_off(run.attempts).await;
        }
    }
    if unsure && let Some(report) = run.verify(old.as_ref()).await? {
        return Ok(report);
    }
    let error = run.last_error.take();
    Ok(run.settle(Status::Failed, None, error).await?)
}

/// What a read of the live link found.
enum Live {
    Code(InviteCode),
    /// The group exists but its link is not shown (not an admin).
    NoLink,
    /// A permanent refusal (not a member, bad token).
    Refused(String),
    /// Transient failures until the attempts ran out.
    Unreachable(String),
}

/// What a read after an unknown reset tells.
enum Learned {
    /// The link changed: the reset happened and issued this code.
    Happened(InviteCode),
    /// The link is the one before the reset: safe to reset again.
    DidNotHappen,
    /// No way to know; the rotation is left `unknown`.
    CannotTell(String),
}

/// The state of one rotation in progress.
struct Run<'a, A> {
    /// The row's status when this run took it over: it is settled only if
    /// still so.
    from: Status,
    store: &'a Store,
    api: &'a A,
    retry: &'a RetryPolicy,
    name: &'a str,
    jid: &'a Jid,
    id: i64,
    attempts: u32,
    last_error: Option<String>,
    old_code: Option<String>,
    started: Instant,
    /// The code being settled came in the reset's own reply (not from a
    /// read of the live link).
    told_by_reply: bool,
}

impl<A: RyzeApi> Run<'_, A> {
    /// Reads the live code, retrying transient failures up to `max_attempts` reads.
    async fn read_live_code(&mut self) -> Live {
        let mut reads = 0;
        loop {
            reads += 1;
            let call = self.api.group_info(self.jid).await;
            self.log("info", &call).await;
            let error = match call.result {
                Ok(info) => return info.code.map_or(Live::NoLink, Live::Code),
                Err(CallError::Permanent(e)) => return Live::Refused(e),
                Err(CallError::RateLimited { message, .. }) => {
                    if reads < self.retry.max_attempts {
                        continue;
                    }
                    message
                }
                Err(CallError::Transient(e) | CallError::Unknown(e)) => e,
            };
            if reads >= self.retry.max_attempts {
                return Live::Unreachable(format!("could not read the live link: {error}"));
            }
            self.back_off(reads).await;
        }
    }

    /// After a reset with an unknown outcome: reads the link and settles the
    /// rotation if that tells (changed: `succeeded` with the live code;
    /// unreadable: `unknown`); `None` when the link is unchanged, so a reset
    /// may follow.
    async fn verify(&mut self, old: Option<&InviteCode>) -> Result<Option<Report>, StoreError> {
        match self.learn_outcome(old).await {
            Learned::Happened(code) => Ok(Some(
                self.settle(Status::Succeeded, Some(code), None).await?,
            )),
            Learned::DidNotHappen => Ok(None),
            Learned::CannotTell(why) => {
                Ok(Some(self.settle(Status::Unknown, None, Some(why)).await?))
            }
        }
    }

    /// After a reset with an unknown outcome: compares the live code with the
    /// one before the reset.
    async fn learn_outcome(&mut self, old: Option<&InviteCode>) -> Learned {
        let last = self.last_error.clone().unwrap_or_default();
        let Some(old) = old else {
            return Learned::CannotTell(format!(
                "{last}; the link before the reset was not readable, so whether it happened cannot be told (not retried)"
            ));
        };
        match self.read_live_code().await {
            Live::Code(now) if &now != old => {
                tracing::info!(group = %self.name, code = %fingerprint(now.as_str()), "the reset had happened: the live link changed");
                Learned::Happened(now)
            }
            Live::Code(_) => Learned::DidNotHappen,
            Live::NoLink => Learned::CannotTell(format!(
                "{last}; the link is no longer shown, so the outcome is unknown"
            )),
            Live::Refused(e) | Live::Unreachable(e) => {
                Learned::CannotTell(format!("{last}; and the link could not be read back: {e}"))
            }
        }
    }

    /// An earlier rotation of this group left `unknown` (its reset may have
    /// happened; the link could not be read back) is told by this read of the
    /// link, the first since: changed from the code that rotation revoked
    /// means its reset happened and issued the live code; unchanged means it
    /// did not. (Were the link also reset outside invite-rotator in between,
    /// the code recorded is still the one that was live.)
    async fn learn_previous_outcome(&self, live: &InviteCode) -> Result<(), StoreError> {
        let Some(prev) = self
            .store
            .previous_reset(self.jid.as_str(), self.id)
            .await?
        else {
            return Ok(());
        };
        let Some(before) = prev.old_invite_code.as_deref() else {
            return Ok(()); // nothing to compare with: it stays unknown
        };
        if prev.status != Status::Unknown {
            return Ok(());
        }
        if before == live.as_str() {
            let note = "the next rotation found the link unchanged: the reset had not happened";
            self.store
                .resolve(prev.id, Status::Failed, None, None, note)
                .await
        } else {
            tracing::info!(group = %self.name, rotation = prev.id, code = %fingerprint(live.as_str()), "an earlier reset with an unknown outcome had happened");
            let note = "the next rotation found the link changed: the reset had happened (or the link was reset outside invite-rotator meanwhile)";
            let link = live.link();
            self.store
                .resolve(
                    prev.id,
                    Status::Succeeded,
                    Some(live.as_str()),
                    Some(&link),
                    note,
                )
                .await
        }
    }

    /// Warns when the live code is not the one this history last recorded.
    async fn note_outside_change(&self, old: Option<&InviteCode>) -> Result<(), StoreError> {
        let last = self.store.last_issued_code(self.jid.as_str()).await?;
        if let (Some(last), Some(old)) = (last, old)
            && last != old.as_str()
        {
            tracing::warn!(
                group = %self.name,
                recorded = %fingerprint(&last),
                live = %fingerprint(old.as_str()),
                "the invite link was changed outside invite-rotator since its last rotation"
            );
        }
        Ok(())
    }

    async fn back_off(&self, failures: u32) {
        tokio::time::sleep(backoff::full_jitter(self.retry, failures)).await;
    }

    /// Appends a call to the call log. A failure here is logged, not fatal:
    /// the rotation's own row is what must not be lost, and the next write to
    /// it fails loudly if the database is gone.
    async fn log<T>(&self, endpoint: &str, call: &Call<T>) {
        let record = CallRecord {
            rotation_id: self.id,
            endpoint,
            started_at: Utc::now() - call.elapsed,
            duration: call.elapsed,
            http_status: call.http_status,
            outcome: call
                .result
                .as_ref()
                .map_or_else(CallError::outcome, |_| "success"),
            error: call.result.as_ref().err().map(ToString::to_string),
        };
        if let Err(e) = self.store.log_call(&record).await {
            tracing::warn!(group = %self.name, error = %e, "could not log an API call");
        }
        if let Err(e) = &call.result {
            tracing::debug!(group = %self.name, endpoint, outcome = e.outcome(), error = %e, "API call failed");
        }
    }
}
