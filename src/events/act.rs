//! Acting on the inbox, in the daemon:
//!
//! - a member removed (or one who left, where `rotate_on` says so) calls for
//!   a rotation of the group after its quiet period (`event_delay`, started
//!   again by each further removal, at most 5 minutes after the first). The
//!   call is kept in the database until a rotation of ours that started
//!   after the burst's latest removal has succeeded (told by row ids, not
//!   clocks), so a kill -9 loses none; the daemon starts it like any
//!   rotation (rate budget, history, coalescing with one already running).
//!   A rotation that fails is tried again after a backoff, up to
//!   [`MAX_FAILURES`] times (a group where we are not admin fails for good).
//!   Removals rotate a group at most `[events] max_rotations_per_hour` times
//!   in any hour: beyond that the call waits until the oldest of them is an
//!   hour old (logged and counted once per group and wait), so forged or
//!   mass removals cannot spend the rate budget nor kill published links
//!   again and again; scheduled rotations are not affected;
//! - a link changed: once the group has no rotation in flight, a code the
//!   history knows was invite-rotator's own; any other is recorded (trigger
//!   `outside`, with a warning, and the hooks hear of it) only once a read
//!   of the live link confirms it (at most one read a group every 30 s,
//!   answering every report that came before it);
//! - an instance reported disconnected, logged out, banned or waiting for a
//!   QR scan is held (no calls); reported connected, released at once: what
//!   events called for meanwhile then runs.

use super::Managed;
use super::parse::{self, State};
use crate::config::{RetryPolicy, defaults};
use crate::daemon::Call;
use crate::metrics::Metrics;
use crate::ryzeapi::Holds;
use crate::store::{Cause, EventKind, Store, StoreError, StoredEvent, Trigger};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// How often the inbox and the calls are looked at when nothing wakes the
/// actor (an event from this process wakes it at once).
const POLL: Duration = Duration::from_secs(1);
/// Events read at a time.
const BATCH: u32 = 200;
/// Failed rotations after which a call is given up (logged): the group's
/// schedule goes on.
pub(crate) const MAX_FAILURES: u32 = 3;
/// A call already asked of the daemon is asked again after this long if it
/// is still unanswered (the daemon coalesces it with one in flight).
const ASK_AGAIN: Duration = Duration::from_secs(10);

/// What acting on events needs.
pub(crate) struct Actor {
    /// The history.
    pub store: Store,
    /// The most rotations removals may cause in one group in any hour.
    pub max_rotations_per_hour: u32,
    /// The instances' holds (shared with the engines).
    pub holds: Holds,
    /// How holds probe (the `[retry]` backoff).
    pub retry: RetryPolicy,
    /// What the running config manages.
    pub managed: watch::Receiver<Arc<Managed>>,
    /// Where rotations are asked for.
    pub daemon: mpsc::Sender<Call>,
    /// Woken when events are stored.
    pub wake: Arc<Notify>,
    /// Counts what was done.
    pub metrics: Option<Metrics>,
    /// When each group's call was last asked of the daemon.
    pub asked: std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
    /// Until when each group's calls wait for the hourly cap (told once per
    /// wait).
    pub capped: std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
    /// Each group's latest read confirming a reported link change (at most
    /// one every 30 s a group; see `confirm`).
    pub(crate) reads: super::confirm::Reads,
}

impl Actor {
    /// Acts until `stop`. Events are an accelerator: a failure here is
    /// logged and tried again, never passed on to the daemon.
    pub(crate) async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.work_inbox().await {
                tracing::warn!(error = %e, "events: cannot work the inbox; trying again");
            }
            let next = match self.serve_calls().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "events: cannot serve the rotations events call for; trying again");
                    None
                }
            };
            let nap = next.map_or(POLL, |at| crate::clock::until(Utc::now(), at).min(POLL));
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Acts on every waiting event (a link change waits for its group's
    /// rotation in flight).
    pub(crate) async fn work_inbox(&self) -> Result<(), StoreError> {
        let events = self.store.waiting_events(BATCH).await?;
        for e in events {
            let managed = self.managed.borrow().clone();
            let outcome = match (e.event.as_str(), e.kind) {
                ("group.flow", EventKind::MemberRemoved | EventKind::MemberLeft) => {
                    self.removal(&e, &managed).await?
                }
                ("group.flow", EventKind::LinkChanged) => self.link_changed(&e, &managed).await?,
                ("instance.state", EventKind::State) => Some(self.state(&e)),
                (_, EventKind::Unparsed) => {
                    Some("unparsed: kept as received, for inspection".to_owned())
                }
                _ => Some("nothing to do".to_owned()),
            };
            if let Some(outcome) = outcome {
                self.store.mark_event(e.id, &outcome).await?;
            }
        }
        // What is left: link changes waiting for a rotation in flight, and
        // whatever came meanwhile.
        if let Some(m) = &self.metrics {
            m.set_events_backlog(self.store.events_backlog().await?);
        }
        Ok(())
    }

    /// A removal or a departure: calls for a rotation if `rotate_on` wants it
    /// (`None`: the call marked the event itself).
    async fn removal(
        &self,
        e: &StoredEvent,
        managed: &Managed,
    ) -> Result<Option<String>, StoreError> {
        let Some(group) = e.group_jid.as_deref().and_then(|jid| managed.group(jid)) else {
            return Ok(Some("the group is no longer configured".into()));
        };
        let (trigger, wanted) = if e.kind == EventKind::MemberRemoved {
            (Trigger::MemberRemoved, group.events.on_removed)
        } else {
            (Trigger::MemberLeft, group.events.on_left)
        };
        if !wanted {
            return Ok(Some(format!(
                "not rotated: rotate_on does not hold {}",
                e.kind
            )));
        }
        let at = DateTime::parse_from_rfc3339(&e.received_at)
            .map_or_else(|_| Utc::now(), |t| t.with_timezone(&Utc));
        self.store
            .call_for_rotation(
                group.jid.as_str(),
                trigger,
                e.id,
                at,
                group.events.delay,
                defaults::EVENT_DELAY_CAP,
            )
            .await?;
        tracing::info!(group = %group.name, trigger = %trigger, delay_s = group.events.delay.as_secs(), "events: a rotation is called for");
        Ok(None)
    }

    /// An instance's state: held, released, or nothing.
    fn state(&self, e: &StoredEvent) -> String {
        let state = serde_json::from_str(&e.data)
            .ok()
            .and_then(|data| parse::instance_state(&data));
        match state {
            Some((State::Down, name)) => {
                if !self.holds.hold(
                    &e.instance,
                    self.retry.backoff_initial,
                    self.retry.backoff_max,
                ) {
                    // Reports alone hold calls for REPORTED_TRUST at most
                    // between two answers of the API, and in any hour (see
                    // ryzeapi/hold).
                    tracing::info!(instance = %e.instance, state = %name, "events: instance reported not connected again; not held: reports hold calls 10 minutes at most, once until RyzeAPI answers a call and 10 minutes an hour in all");
                    return format!(
                        "not held: reports spent until the API answers or for the hour ({name})"
                    );
                }
                tracing::warn!(instance = %e.instance, state = %name, "events: instance reported not connected; its calls are held");
                format!("instance held ({name})")
            }
            Some((State::Connected, _)) => {
                let was = self.holds.is_held(&e.instance);
                if !self.holds.release(&e.instance) {
                    // RyzeAPI itself said not connected: its answer, not an
                    // event, ends the hold (one probe may go now).
                    tracing::info!(instance = %e.instance, "events: instance reported connected; RyzeAPI said it was not, so a probe decides");
                    return "probe due (connected; RyzeAPI said not connected)".into();
                }
                if was {
                    tracing::info!(instance = %e.instance, "events: instance reported connected; its calls resume");
                }
                "instance released (connected)".into()
            }
            Some((State::Other, name)) => format!("nothing to do ({name})"),
            None => "nothing to do".into(),
        }
    }

    /// Asks the daemon for every rotation whose quiet period is over, unless
    /// a rotation of ours since the burst's latest event has succeeded (the
    /// call is answered), the instance is held, the last failure is too
    /// recent, or it was asked a moment ago. Returns when to look again.
    pub(crate) async fn serve_calls(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = Utc::now();
        let managed = self.managed.borrow().clone();
        let mut next: Option<DateTime<Utc>> = None;
        for call in self.store.event_rotations().await? {
            if call.due_at > now {
                next = Some(next.map_or(call.due_at, |n| n.min(call.due_at)));
                break;
            }
            let jid = call.group_jid.as_str();
            let Some(group) = managed.group(jid) else {
                tracing::info!(
                    jid,
                    "events: a called-for rotation of a group no longer configured is dropped"
                );
                self.store
                    .answer_event_rotation(jid, call.first_event_id)
                    .await?;
                continue;
            };
            let progress = self.store.call_progress(jid, call.watermark).await?;
            if progress.succeeded {
                self.store
                    .answer_event_rotation(jid, call.first_event_id)
                    .await?;
                self.forget(jid);
                continue;
            }
            if progress.failures >= MAX_FAILURES {
                tracing::warn!(group = %group.name, failures = progress.failures, "events: the rotation a removal called for failed every time; given up (the schedule goes on)");
                self.store
                    .answer_event_rotation(jid, call.first_event_id)
                    .await?;
                self.forget(jid);
                continue;
            }
            if let Some(failed) = progress.last_failure {
                let wait = crate::backoff::ceiling(&self.retry, progress.failures);
                let again = failed + chrono::Duration::from_std(wait).unwrap_or_default();
                if again > now {
                    next = Some(next.map_or(again, |n| n.min(again)));
                    continue;
                }
            }
            if self.holds.is_held(&group.instance) || self.asked_lately(jid) {
                continue;
            }
            if let Some(until) = self.capped_until(jid, &group.name, now).await? {
                next = Some(next.map_or(until, |n| n.min(until)));
                continue;
            }
            let ask = Call {
                group: group.clone(),
                cause: Cause::event(call.trigger, call.first_event_id),
            };
            // A full queue: the daemon is busy; asked again at the next look.
            if self.daemon.try_send(ask).is_ok() {
                self.note_asked(jid);
            }
        }
        Ok(next)
    }

    /// When group `jid` may rotate on a removal again, if its event
    /// rotations of the last hour reached the cap; told (a warning, a
    /// count) once per wait.
    async fn capped_until(
        &self,
        jid: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let hour = chrono::Duration::hours(1);
        let (count, first) = self.store.event_rotations_since(jid, now - hour).await?;
        let mut capped = self.capped.lock().unwrap_or_else(|p| p.into_inner());
        if count < self.max_rotations_per_hour {
            capped.remove(jid);
            return Ok(None);
        }
        let until = first.map_or(now, |first| first + hour).max(now);
        if capped.get(jid).is_none_or(|told| *told <= now) {
            capped.insert(jid.to_owned(), until);
            tracing::warn!(group = %name, cap = self.max_rotations_per_hour, until = %until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "events: removals reached max_rotations_per_hour rotations an hour for this group; the rotation they call for waits (scheduled rotations go on)");
            if let Some(m) = &self.metrics {
                m.event_rotations_capped();
            }
        }
        Ok(Some(until))
    }

    fn asked_lately(&self, jid: &str) -> bool {
        let asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        asked.get(jid).is_some_and(|at| at.elapsed() < ASK_AGAIN)
    }

    fn note_asked(&self, jid: &str) {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        asked.insert(jid.to_owned(), tokio::time::Instant::now());
    }

    fn forget(&self, jid: &str) {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        asked.remove(jid);
    }
}
