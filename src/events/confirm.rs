//! The read that confirms a reported link change: after a report the read
//! did not confirm, at most one per group every [`READ_EVERY`].
//!
//! Each report of a new code would otherwise cost a `group/info` call: a
//! flood of reports (forged by a holder of the instance's token, or a
//! gateway repeating itself) would spend the token's rate budget that
//! scheduled rotations need. So each group's latest read is kept, and:
//! - a read made after a report arrived answers it, whatever it said: the
//!   live code then was the reported one (confirmed) or not (refuted), so a
//!   thousand reports waiting on one group are settled by one read;
//! - a report that came after the latest read is read at once if that read
//!   confirmed a change; if it refuted one (a forged or stale report) or
//!   failed, the report waits (it stays in the inbox) until that read is
//!   [`READ_EVERY`] old, then a new read answers it: a genuine change just
//!   after a forged one is never lost, only up to 30 s late;
//! - a read that fails (rate limit, instance held, no reply) leaves the
//!   report waiting for the next read, for [`GIVE_UP`] after it arrived;
//!   then it is kept unconfirmed.

use super::Managed;
use super::act::Actor;
use super::links::parse_time;
use crate::config::Group;
use crate::ryzeapi::GroupInfo;
use crate::store::{StoreError, StoredEvent};
use crate::whatsapp::InviteCode;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The least time between two confirming reads of one group.
pub(crate) const READ_EVERY: Duration = Duration::from_secs(30);
/// How long a report waits for a read that works.
pub(crate) const GIVE_UP: Duration = Duration::from_secs(600);

/// What a report comes to.
pub(super) enum Confirmation {
    /// The live link is the reported code: record it, as read.
    Confirmed(InviteCode),
    /// It is not: keep the report as an event, with why.
    Refuted(String),
    /// Not known yet: the report waits in the inbox.
    Later,
}

/// What to do with a report, given the group's latest read.
#[derive(Debug, PartialEq)]
enum Step {
    /// A read made after the report came answers it.
    Answer(Result<Option<InviteCode>, String>),
    /// Read the live link now.
    Read,
    /// Wait for the next read.
    Wait,
    /// Waited too long for a read that works.
    GiveUp,
}

/// The decision, for a report that came at `received` and has waited
/// `waited`, the group's latest read being `latest`.
fn decide(latest: Option<&Read>, received: DateTime<Utc>, waited: Duration) -> Step {
    match latest {
        Some(read) if read.sent >= received && read.live.is_ok() => Step::Answer(read.live.clone()),
        Some(read) if !read.confirmed && read.at.elapsed() < READ_EVERY => {
            if waited < GIVE_UP {
                Step::Wait
            } else {
                Step::GiveUp
            }
        }
        _ => Step::Read,
    }
}

/// Each group's latest confirming read, by JID.
#[derive(Default)]
pub(crate) struct Reads(Mutex<HashMap<String, Read>>);

#[derive(Clone)]
struct Read {
    /// When it went, on the runtime's clock (for [`READ_EVERY`]).
    at: Instant,
    /// When it went, on the wall clock (to compare with reports' arrival).
    sent: DateTime<Utc>,
    /// The live code, `Ok(None)` for no link, `Err` why it failed.
    live: Result<Option<InviteCode>, String>,
    /// Whether it confirmed the report it was made for: then the next
    /// report may be read at once (only refuted or failed reads hold the
    /// group's next read back).
    confirmed: bool,
}

impl Reads {
    fn latest(&self, jid: &str) -> Option<Read> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(jid)
            .cloned()
    }

    fn keep(&self, jid: &str, read: Read) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(jid.to_owned(), read);
    }
}

impl Actor {
    /// Whether the live link of `group` confirms that it became `reported`
    /// (event `e`); see the module's documentation.
    pub(super) async fn confirm(
        &self,
        e: &StoredEvent,
        managed: &Managed,
        group: &Group,
        reported: &InviteCode,
    ) -> Result<Confirmation, StoreError> {
        let jid = group.jid.as_str();
        let received = parse_time(&e.received_at);
        let waited = (Utc::now() - received).to_std().unwrap_or_default();
        match decide(self.reads.latest(jid).as_ref(), received, waited) {
            Step::Answer(live) => return self.judge(group, reported, &live).await,
            Step::Wait => return Ok(Confirmation::Later),
            Step::GiveUp => {
                return Ok(Confirmation::Refuted(
                    "not confirmed: no read of the live link worked in time; nothing recorded"
                        .into(),
                ));
            }
            Step::Read => {}
        }
        let Some(engine) = &managed.engine else {
            return Ok(Confirmation::Refuted(
                "not confirmed: the group's instance cannot be read here; nothing recorded".into(),
            ));
        };
        let (at, sent) = (Instant::now(), Utc::now());
        let Some(call) = engine.read_link(group).await else {
            return Ok(Confirmation::Refuted(
                "not confirmed: the group's instance cannot be read here; nothing recorded".into(),
            ));
        };
        let live = match call.result {
            Ok(GroupInfo { code }) => Ok(code),
            Err(e) => Err(format!(
                "{}, {}",
                e.outcome(),
                call.http_status
                    .map_or("no reply".into(), |s| format!("HTTP {s}"))
            )),
        };
        let judged = match &live {
            Err(_) if waited < GIVE_UP => Confirmation::Later,
            Err(why) => Confirmation::Refuted(format!(
                "not confirmed: the live link could not be read ({why}); nothing recorded"
            )),
            Ok(_) => self.judge(group, reported, &live).await?,
        };
        let confirmed = matches!(judged, Confirmation::Confirmed(_));
        self.reads.keep(
            jid,
            Read {
                at,
                sent,
                live,
                confirmed,
            },
        );
        if matches!(judged, Confirmation::Refuted(_)) {
            // Once per read, not per report it answers.
            tracing::info!(group = %group.name, "events: a reported link change that the API does not confirm; kept as an event, nothing recorded");
        }
        Ok(judged)
    }

    /// What a read that worked says of `reported`.
    async fn judge(
        &self,
        group: &Group,
        reported: &InviteCode,
        live: &Result<Option<InviteCode>, String>,
    ) -> Result<Confirmation, StoreError> {
        let why = match live {
            Ok(Some(live)) if live == reported => {
                return Ok(Confirmation::Confirmed(live.clone()));
            }
            Ok(Some(live)) => {
                if self
                    .store
                    .code_issued(group.jid.as_str(), live.as_str())
                    .await?
                {
                    "the live link is invite-rotator's own code"
                } else {
                    "the API shows another live code"
                }
            }
            Ok(None) => "the API shows no link",
            Err(why) => return Ok(Confirmation::Refuted(format!("not confirmed: {why}"))),
        };
        Ok(Confirmation::Refuted(format!(
            "not confirmed: {why}; nothing recorded"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: &str) -> InviteCode {
        InviteCode::parse(c).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn one_read_a_group_every_30_s_answers_every_report_that_came_before_it() {
        let t0 = Utc::now();
        let live = Ok(Some(code("LiveCodeAAAAAAAAAAAAAA")));
        // No read yet: read.
        assert_eq!(decide(None, t0, Duration::ZERO), Step::Read);
        let read = Read {
            at: Instant::now(),
            sent: t0 + chrono::Duration::seconds(1),
            live: live.clone(),
            confirmed: false,
        };
        // A report that came before the read: answered by it, no call.
        assert_eq!(
            decide(Some(&read), t0, Duration::from_secs(1)),
            Step::Answer(live.clone())
        );
        // A flood that came after it waits, whatever its size, until the
        // read is 30 s old; then one read answers them all.
        let later = t0 + chrono::Duration::seconds(2);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            decide(Some(&read), later, Duration::from_secs(28)),
            Step::Wait
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            decide(Some(&read), later, Duration::from_secs(29)),
            Step::Read
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_leaves_the_report_waiting_until_it_gives_up() {
        let t0 = Utc::now();
        let failed = Read {
            at: Instant::now(),
            sent: t0 + chrono::Duration::seconds(1),
            live: Err("transient, HTTP 429".into()),
            confirmed: false,
        };
        // A failed read answers nothing: the report waits, then reads again.
        assert_eq!(
            decide(Some(&failed), t0, Duration::from_secs(1)),
            Step::Wait
        );
        tokio::time::advance(READ_EVERY).await;
        assert_eq!(
            decide(Some(&failed), t0, Duration::from_secs(31)),
            Step::Read
        );
        let again = Read {
            at: Instant::now(),
            ..failed
        };
        assert_eq!(decide(Some(&again), t0, GIVE_UP), Step::GiveUp);
    }
}
