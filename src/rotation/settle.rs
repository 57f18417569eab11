//! Settling, in one place: the outcome of a rotation this process ran
//! ([`Run::settle`]), and a rotation that a crash, a kill or a lost lease
//! interrupted ([`settle_interrupted`]: what its row says was done, and the
//! live link, tell how it ended). Which rows were left behind is the
//! engine's to find (`engine/leftovers.rs`).

use super::{Live, Report, Run};
use crate::config::RetryPolicy;
use crate::ryzeapi::RyzeApi;
use crate::store::{Leftover, Settlement, Status, Store, StoreError};
use crate::whatsapp::shown;
use crate::whatsapp::{InviteCode, Jid, fingerprint};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

/// Settles a rotation that a crash, a kill or a stop left unsettled: a
/// `pending` row, or an `unknown` one that is its group's latest. The `attempts`
/// column is written before each reset call, so:
/// - no reset was made: `failed`, nothing to learn;
/// - a reset may have been made: read the live link, no sooner than one
///   `read_back_delay` after the latest reset call was sent (`last_reset_at`:
///   a reset cut off or answered 5xx may still be landing); changed from the
///   old code means it happened (`succeeded`, that code recorded); unchanged
///   means it did not (`failed`); unreadable leaves it `unknown`.
pub async fn settle_interrupted<A: RyzeApi>(
    store: &Store,
    api: &A,
    retry: &RetryPolicy,
    leftover: &Leftover,
) -> Result<Status, StoreError> {
    let row = &leftover.rotation;
    // Only if still as read: two processes may meet the same leftover.
    let from = row.status;
    let jid = match Jid::parse(&row.group_jid) {
        Ok(jid) => jid,
        Err(e) => {
            let settlement = Settlement {
                status: Status::Unknown,
                attempts: u32::try_from(row.attempts).unwrap_or(0),
                new_code: None,
                new_link: None,
                error: Some(format!("cannot settle: {e}")),
            };
            store.settle_from(row.id, from, &settlement).await?;
            return Ok(Status::Unknown);
        }
    };
    let mut run = Run {
        store,
        api,
        retry,
        name: &row.group_name,
        jid: &jid,
        id: row.id,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        last_error: row.error.clone(),
        old_code: row.old_invite_code.clone(),
        started: Instant::now(),
        told_by_reply: false,
        from,
    };
    let was = format!("interrupted while {}", row.status);
    if run.attempts == 0 {
        let error = format!("{was}, before any reset (settled at start)");
        return Ok(run.settle(Status::Failed, None, Some(error)).await?.status);
    }
    let old = row
        .old_invite_code
        .as_deref()
        .and_then(|c| InviteCode::parse(c).ok());
    if let Some(wait) = still_landing(leftover, retry.read_back_delay, Utc::now()) {
        tokio::time::sleep(wait).await;
    }
    let report = match (old, run.read_live_code().await) {
        (Some(old), Live::Code(now)) if now != old => {
            tracing::info!(group = %row.group_name, code = %fingerprint(now.as_str()), "settled at start: the interrupted reset had happened");
            let note = format!(
                "{was}; the live link had changed, so the reset happened (settled at start)"
            );
            run.settle(Status::Succeeded, Some(now), Some(note)).await?
        }
        (Some(_), Live::Code(_)) => {
            let error = format!(
                "{was}; the link is unchanged, so the reset did not happen (settled at start)"
            );
            run.settle(Status::Failed, None, Some(error)).await?
        }
        (_, live) => {
            let why = match live {
                Live::Refused(e) | Live::Unreachable(e) => e,
                _ => "the link before the reset was not readable".to_owned(),
            };
            let error = format!("{was}; outcome unknown: {why}");
            run.settle(Status::Unknown, None, Some(error)).await?
        }
    };
    Ok(report.status)
}

/// How long a reset of `leftover` may still be landing at `now`: until one
/// `read_back_delay` after its latest reset call was sent (never longer than
/// that, whatever a clock says).
fn still_landing(
    leftover: &Leftover,
    read_back_delay: Duration,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let sent = DateTime::parse_from_rfc3339(leftover.last_reset_at.as_deref()?).ok()?;
    let read_from = sent.with_timezone(&Utc) + chrono::Duration::from_std(read_back_delay).ok()?;
    let wait = (read_from - now).to_std().ok()?;
    Some(wait.min(read_back_delay))
}

impl<A: RyzeApi> Run<'_, A> {
    /// Writes the outcome. A result that cannot be written is retried a few
    /// times; if the database stays unwritable the row is left `pending`, to be
    /// settled from the live link by the next process that meets it (the
    /// issued code's fingerprint is logged; the code itself only with
    /// `INVITE_ROTATOR_LOG_CODES=1`: until then it is the group's live link,
    /// which the settlement reads).
    pub(super) async fn settle(
        &mut self,
        status: Status,
        issued: Option<InviteCode>,
        error: Option<String>,
    ) -> Result<Report, StoreError> {
        // The link is rebuilt from the validated code, never taken from a reply.
        let new_link = issued.as_ref().map(InviteCode::link);
        let new_code = issued.map(|code| code.as_str().to_owned());
        let settlement = Settlement {
            status,
            attempts: self.attempts,
            new_code,
            new_link,
            error: error.or_else(|| {
                self.last_error
                    .take()
                    .filter(|_| status != Status::Succeeded)
            }),
        };
        crate::failpoint::crash("rotation::before_settle");
        let mut tries = 0;
        loop {
            let e = match self
                .store
                .settle_from(self.id, self.from, &settlement)
                .await
            {
                Ok(true) => break,
                Ok(false) => {
                    // Another process settled the row meanwhile (the active
                    // node, while this one was frozen past its lease). A
                    // code this reset's reply issued must not be lost: it
                    // goes on the row, unless that process recorded one
                    // already. A code read back is not: the link may have
                    // been changed since by the active node's own rotation.
                    if let (true, Some(code), Some(link)) = (
                        self.told_by_reply,
                        &settlement.new_code,
                        &settlement.new_link,
                    ) {
                        let recorded = self.store.record_late_reset(self.id, code, link).await?;
                        if recorded {
                            tracing::warn!(group = %self.name, rotation = self.id, new = %shown(Some(code.as_str())), "this reset landed after another process had settled its rotation; its code is recorded on the row");
                        }
                    }
                    tracing::info!(group = %self.name, rotation = self.id, "already settled by another process; left as it wrote it");
                    break;
                }
                Err(e) => e,
            };
            tries += 1;
            if tries >= SETTLE_TRIES {
                tracing::error!(
                    group = %self.name,
                    rotation = self.id,
                    status = status.as_str(),
                    new_code = %shown(settlement.new_code.as_deref()),
                    error = %e,
                    "cannot record the rotation's outcome; the row stays pending and is settled from the live link later"
                );
                return Err(e);
            }
            tracing::warn!(group = %self.name, error = %e, "cannot record the rotation's outcome yet; retrying");
            tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(tries)).await;
        }
        Ok(Report {
            id: self.id,
            group: self.name.to_owned(),
            status,
            attempts: self.attempts,
            old_code: self.old_code.clone(),
            new_code: settlement.new_code,
            error: settlement.error,
            elapsed: self.started.elapsed(),
        })
    }
}

/// Writes of an outcome tried before giving up (waits 0.2 s, 0.4 s, ... between).
const SETTLE_TRIES: u32 = 5;
