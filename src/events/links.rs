//! A link change reported by `group.flow`: invite-rotator's own reset, or a
//! change made elsewhere, which is recorded where it happened in the group's
//! chain of codes, once an API read of the live link confirms it.
//!
//! An event is a report, never a fact: whoever holds the events' secret and
//! an instance's token could report any code. So a reported code is
//! recorded only if a read of the group's live link (`group/info`, through
//! the instance's rate budget) returns it, or a rotation of ours already
//! read it as the live code; the code recorded is the one read. A report
//! that no read confirms (the API shows another code, no link, or cannot be
//! read) is kept as an event, its outcome saying why, and nothing more: no
//! row, no ledger entry, no hook, no join link follows it.
//!
//! The event of our own reset can arrive before the reset's reply is
//! recorded, so nothing is decided while the group has a rotation in flight.
//! Then a code the history holds as issued is ours (no read needed); any
//! other was changed outside, and it belongs:
//! 1. before the first rotation of ours that read it as the live code (the
//!    event came late, or waited for that rotation): that read confirms it;
//! 2. otherwise, once the read returns it, after everything the history
//!    knows.
//!
//! A code changed outside while a rotation of ours was in flight, between
//! its read and its reset, was revoked by that reset before any read could
//! see it: its report stays unconfirmed, and the chain goes on from the
//! code our rotation read to the one it issued.
//!
//! Only a change whose code is still live is told to the hooks (one placed
//! before a rotation of ours was revoked by it already), and none counts as
//! a rotation of the group's schedule: its health is ours to keep.
//!
//! A latest reset of ours whose outcome is unknown is settled by the event
//! instead: the link moved on from the code it revoked, so it happened.

use super::act::Actor;
use super::confirm::Confirmation;
use super::{Managed, parse};
use crate::store::{
    Begun, Cause, NewRotation, OutsideChange, Status, StoreError, StoredEvent, Trigger,
};
use crate::whatsapp::{InviteCode, fingerprint, shown};
use chrono::{DateTime, Utc};

/// Where an outside change goes.
struct Placement {
    old: Option<String>,
    at: DateTime<Utc>,
    /// Whether its code is the live one (the hooks hear only of those).
    live: bool,
}

impl Actor {
    /// Acts on a link change; `None` while the group has a rotation in
    /// flight (its outcome decides).
    pub(super) async fn link_changed(
        &self,
        e: &StoredEvent,
        managed: &Managed,
    ) -> Result<Option<String>, StoreError> {
        let Some(group) = e.group_jid.as_deref().and_then(|jid| managed.group(jid)) else {
            return Ok(Some("the group is no longer configured".into()));
        };
        let code = serde_json::from_str(&e.data)
            .ok()
            .and_then(|data| parse::group_flow(&data))
            .and_then(|flow| flow.link);
        let Some(code) = code else {
            return Ok(Some("no usable invite link in it".into()));
        };
        let jid = group.jid.as_str();
        if self.store.group_busy(jid).await? {
            return Ok(None);
        }
        if self.store.code_issued(jid, code.as_str()).await? {
            return Ok(Some(
                "a code the history already holds (invite-rotator's own reset)".into(),
            ));
        }
        let reader = self.store.rotation_that_read(jid, code.as_str()).await?;
        let code = match reader {
            // A read of ours saw it live already.
            Some(_) => code,
            None => match self.confirm(e, managed, group, &code).await? {
                Confirmation::Confirmed(read) => read,
                Confirmation::Refuted(why) => return Ok(Some(why)),
                Confirmation::Later => return Ok(None),
            },
        };
        if reader.is_none()
            && let Some(settled) = self.settle_unknown(jid, &group.name, &code).await?
        {
            return Ok(Some(settled));
        }
        let received = parse_time(&e.received_at);
        let place = match reader {
            Some(reader) => Placement {
                old: self
                    .store
                    .issued_before(jid, parse_time(&reader.started_at))
                    .await?,
                at: received
                    .min(parse_time(&reader.started_at) - chrono::Duration::milliseconds(1)),
                live: false,
            },
            None => Placement {
                old: self.store.last_issued_code(jid).await?,
                at: received,
                live: true,
            },
        };
        let link = code.link();
        let change = OutsideChange {
            group: NewRotation {
                group_name: &group.name,
                group_jid: jid,
                instance: &group.instance,
                cause: Cause::event(Trigger::Outside, e.id),
            },
            old_code: place.old.as_deref(),
            new_code: code.as_str(),
            new_link: &link,
            at: place.at,
            notify: place.live,
        };
        match self.store.record_outside(&change).await? {
            Begun::Started(id) => {
                tracing::warn!(group = %group.name, rotation = id, old = %shown(place.old.as_deref()), new = %fingerprint(code.as_str()), "events: the invite link was changed outside invite-rotator; recorded");
                if let Some(m) = &self.metrics {
                    m.counted(Status::Succeeded, Trigger::Outside);
                }
                Ok(Some(format!(
                    "recorded as rotation {id}: changed outside invite-rotator"
                )))
            }
            Begun::Busy { .. } | Begun::Fenced | Begun::Served => Ok(None),
        }
    }

    /// The group's latest reset of ours had an unknown outcome and the link
    /// moved on from the code it revoked: it happened, and issued `code`.
    async fn settle_unknown(
        &self,
        jid: &str,
        name: &str,
        code: &InviteCode,
    ) -> Result<Option<String>, StoreError> {
        let Some(prev) = self.store.previous_reset(jid, i64::MAX).await? else {
            return Ok(None);
        };
        let moved_on = prev
            .old_invite_code
            .as_deref()
            .is_some_and(|old| old != code.as_str());
        if prev.status != Status::Unknown || !moved_on {
            return Ok(None);
        }
        let note = "a link-change event showed that the reset had happened";
        self.store
            .resolve(
                prev.id,
                Status::Succeeded,
                Some(code.as_str()),
                Some(&code.link()),
                note,
            )
            .await?;
        tracing::info!(group = %name, rotation = prev.id, code = %fingerprint(code.as_str()), "events: a reset with an unknown outcome had happened");
        Ok(Some(format!(
            "rotation {}: its reset had happened and issued this code",
            prev.id
        )))
    }
}

pub(super) fn parse_time(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).map_or_else(|_| Utc::now(), |t| t.with_timezone(&Utc))
}
