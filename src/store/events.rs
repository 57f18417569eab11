//! RyzeAPI's events in the history database: the inbox, the rotations that
//! removals call for (kept here so that a kill -9 loses none), and each
//! instance's event sources ([`super::outside`] records links changed
//! elsewhere). SQL only; what an event means is [`crate::events`]'s to say.

use super::{EventKind, Stamp, Store, StoreError, Trigger, exec, run, timestamp};
use chrono::{DateTime, Utc};
use sqlx::Connection;

/// An event accepted, to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `webhook` or `websocket`.
    pub channel: &'static str,
    /// The instance it is about.
    pub instance: String,
    /// `group.flow`, `instance.state`.
    pub event: String,
    /// What it says.
    pub kind: EventKind,
    /// The group, for `group.flow`.
    pub group_jid: Option<String>,
    /// SHA-256 of instance, event and data: the same delivery twice is one row.
    pub digest: String,
    /// A repeat of the digest within this window is the same delivery
    /// (dropped); later, a new report with the same data.
    pub repeat_window: std::time::Duration,
    /// The data, token-free, as JSON text (at most 64 KiB).
    pub data: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// An event in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEvent {
    /// `id`.
    pub id: i64,
    /// `received_at`.
    pub received_at: Stamp,
    /// `channel`.
    pub channel: String,
    /// `instance`.
    pub instance: String,
    /// `event`.
    pub event: String,
    /// `kind`.
    #[sqlx(try_from = "String")]
    pub kind: EventKind,
    /// `group_jid`.
    pub group_jid: Option<String>,
    /// `data`.
    pub data: String,
    /// `processed_at`.
    pub processed_at: Option<Stamp>,
    /// `outcome`.
    pub outcome: Option<String>,
}

/// A rotation an event calls for, waiting for its quiet period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRotation {
    /// The group.
    pub group_jid: String,
    /// `member_removed` or `member_left`.
    pub trigger: Trigger,
    /// The first event of the burst: the rotation's `event_id`.
    pub first_event_id: i64,
    /// When the first event arrived: a rotation started since serves the call.
    pub first_at: DateTime<Utc>,
    /// When the quiet period ends.
    pub due_at: DateTime<Utc>,
    /// Rotations with ids up to this one came before the burst's latest
    /// event: they do not answer the call.
    pub watermark: i64,
}

/// What rotations of ours did since a call's watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallProgress {
    /// One succeeded: the call is answered.
    pub succeeded: bool,
    /// How many failed.
    pub failures: u32,
    /// When the latest failure ended.
    pub last_failure: Option<DateTime<Utc>>,
}

/// What the history says of one instance's events, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct EventSource {
    /// The instance.
    pub instance: String,
    /// When the webhook was last registered.
    pub registered_at: Option<Stamp>,
    /// Why the last registration failed, if it did.
    pub register_error: Option<String>,
    /// When the WebSocket last connected.
    pub websocket_at: Option<Stamp>,
    /// Why it last failed, if it did.
    pub websocket_error: Option<String>,
    /// When the last event arrived.
    pub last_event_at: Option<Stamp>,
}

impl Store {
    /// Stores a batch of accepted events, all in one transaction (one
    /// synced commit for many deliveries); returns for each whether it was
    /// new (a repeat of a stored one is dropped).
    pub async fn accept_events(&self, events: &[NewEvent]) -> Result<Vec<bool>, StoreError> {
        self.injected_fault("store::accept_events")?;
        run!(self, |c, _pg| {
            let mut tx = c.begin().await?;
            let mut new = Vec::with_capacity(events.len());
            for e in events {
                let window = chrono::Duration::from_std(e.repeat_window).unwrap_or_default();
                let inserted = sqlx::query(
                    "INSERT INTO events (received_at, channel, instance, event, kind, group_jid, digest, data)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8
                     WHERE NOT EXISTS (SELECT 1 FROM events WHERE digest = $7 AND received_at >= $9)",
                )
                .bind(timestamp(e.received_at))
                .bind(e.channel)
                .bind(&e.instance)
                .bind(&e.event)
                .bind(e.kind.as_str())
                .bind(&e.group_jid)
                .bind(&e.digest)
                .bind(&e.data)
                .bind(timestamp(e.received_at - window))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query(
                    "INSERT INTO event_sources (instance, last_event_at) VALUES ($1, $2)
                     ON CONFLICT (instance) DO UPDATE SET last_event_at = $2",
                )
                .bind(&e.instance)
                .bind(timestamp(e.received_at))
                .execute(&mut *tx)
                .await?;
                new.push(inserted > 0);
            }
            tx.commit().await?;
            Ok(new)
        })
    }

    /// Events not yet acted on, oldest first.
    pub async fn waiting_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        run!(self, |c, _pg| {
            sqlx::query_as(
            "SELECT id, received_at, channel, instance, event, kind, group_jid, data, processed_at, outcome
             FROM events WHERE processed_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(c)
        .await
        })
    }

    /// Records what was done with event `id`.
    pub async fn mark_event(&self, id: i64, outcome: &str) -> Result<(), StoreError> {
        exec!(
            self,
            sqlx::query("UPDATE events SET processed_at = $1, outcome = $2 WHERE id = $3")
                .bind(timestamp(Utc::now()))
                .bind(outcome)
                .bind(id)
        )
        .map(drop)
    }

    /// The newest `limit` events, oldest first, for `events list`.
    pub async fn recent_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let mut rows: Vec<StoredEvent> = run!(self, |c, _pg| {
            sqlx::query_as(
            "SELECT id, received_at, channel, instance, event, kind, group_jid, data, processed_at, outcome
             FROM events ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(c)
        .await
        })?;
        rows.reverse();
        Ok(rows)
    }

    /// Calls for a rotation of `jid` by event `event_id` at `at`: due `delay`
    /// after it, or after a later removal of the same burst, but never later
    /// than `cap` after the burst's first. A removal outranks a departure.
    /// The watermark moves to the newest rotation: only a rotation that
    /// starts after this event answers the call. Marks the event processed
    /// in the same transaction.
    pub async fn call_for_rotation(
        &self,
        jid: &str,
        trigger: Trigger,
        event_id: i64,
        at: DateTime<Utc>,
        delay: std::time::Duration,
        cap: std::time::Duration,
    ) -> Result<(), StoreError> {
        let due = at + chrono::Duration::from_std(delay).unwrap_or_default();
        let cap = chrono::Duration::from_std(cap).unwrap_or_default();
        run!(self, |c, _pg| {
            let mut tx = c.begin().await?;
            let burst: Option<(Stamp, Stamp)> =
                sqlx::query_as("SELECT first_at, due_at FROM event_rotations WHERE group_jid = $1")
                    .bind(jid)
                    .fetch_optional(&mut *tx)
                    .await?;
            let call = match burst.and_then(|(first, due_at)| Some((first.time()?, due_at.time()?))) {
                // The burst goes on: later, but never past its cap.
                Some((first, called)) => sqlx::query(
                    "UPDATE event_rotations SET
                         trigger = CASE WHEN $2 = 'member_removed' THEN $2 ELSE trigger END,
                         due_at = $3,
                         watermark = (SELECT COALESCE(MAX(id), 0) FROM rotations)
                     WHERE group_jid = $1",
                )
                .bind(jid)
                .bind(trigger.as_str())
                .bind(timestamp(called.max(due).min(first + cap))),
                None => sqlx::query(
                    "INSERT INTO event_rotations (group_jid, trigger, first_event_id, first_at, due_at, watermark)
                     VALUES ($1, $2, $3, $4, $5, (SELECT COALESCE(MAX(id), 0) FROM rotations))
                     ON CONFLICT (group_jid) DO NOTHING",
                )
                .bind(jid)
                .bind(trigger.as_str())
                .bind(event_id)
                .bind(timestamp(at))
                .bind(timestamp(due.min(at + cap))),
            };
            call.execute(&mut *tx).await?;
            sqlx::query("UPDATE events SET processed_at = $1, outcome = $2 WHERE id = $3")
                .bind(timestamp(Utc::now()))
                .bind(format!("{} rotation called for", trigger.as_str()))
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
    }

    /// Rotations events call for, soonest first.
    pub async fn event_rotations(&self) -> Result<Vec<EventRotation>, StoreError> {
        let rows: Vec<(String, String, i64, Stamp, Stamp, i64)> =
            run!(self, |c, _pg| sqlx::query_as(
                "SELECT group_jid, trigger, first_event_id, first_at, due_at, watermark
             FROM event_rotations ORDER BY due_at",
            )
            .fetch_all(c)
            .await)?;
        let bad =
            |what: String| StoreError::invalid(&self.name, format!("event_rotations: {what}"));
        rows.into_iter()
            .map(
                |(group_jid, trigger, first_event_id, first, due, watermark)| {
                    let time = |t: &Stamp| {
                        t.time()
                            .ok_or_else(|| bad(format!("{group_jid}: {:?} is not a time", t.0)))
                    };
                    Ok(EventRotation {
                        trigger: Trigger::parse(&trigger)
                            .ok_or_else(|| bad(format!("{group_jid}: no trigger {trigger:?}")))?,
                        first_event_id,
                        first_at: time(&first)?,
                        due_at: time(&due)?,
                        watermark,
                        group_jid,
                    })
                },
            )
            .collect()
    }

    /// The call for a rotation of `jid` is answered (or dropped): unless a
    /// later burst replaced it meanwhile.
    pub async fn answer_event_rotation(
        &self,
        jid: &str,
        first_event_id: i64,
    ) -> Result<(), StoreError> {
        exec!(
            self,
            sqlx::query("DELETE FROM event_rotations WHERE group_jid = $1 AND first_event_id = $2")
                .bind(jid)
                .bind(first_event_id)
        )
        .map(drop)
    }

    /// What rotations of ours of `jid` above `watermark` came to: one
    /// succeeded (the link the members had is revoked), or how many failed.
    /// An outside change does not count: it may have come before the event.
    pub async fn call_progress(
        &self,
        jid: &str,
        watermark: i64,
    ) -> Result<CallProgress, StoreError> {
        let (succeeded, failures, last): (i64, i64, Option<Stamp>) = run!(self, |c, _pg| {
            sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE status = 'succeeded'), COUNT(*) FILTER (WHERE status = 'failed'),
                    MAX(CASE WHEN status = 'failed' THEN finished_at END)
             FROM rotations WHERE group_jid = $1 AND id > $2 AND trigger != 'outside'",
        )
        .bind(jid)
        .bind(watermark)
        .fetch_one(c)
        .await
        })?;
        Ok(CallProgress {
            succeeded: succeeded > 0,
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            last_failure: last.as_ref().and_then(Stamp::time),
        })
    }

    /// The rotations removals and departures caused in the group `jid` that
    /// started at or after `since`: how many, and when the first of them
    /// started.
    pub async fn event_rotations_since(
        &self,
        jid: &str,
        since: DateTime<Utc>,
    ) -> Result<(u32, Option<DateTime<Utc>>), StoreError> {
        let (count, first): (i64, Option<Stamp>) = run!(self, |c, _pg| {
            sqlx::query_as(
                "SELECT COUNT(*), MIN(started_at) FROM rotations
                 WHERE group_jid = $1 AND trigger IN ('member_removed', 'member_left')
                   AND started_at >= $2",
            )
            .bind(jid)
            .bind(timestamp(since))
            .fetch_one(c)
            .await
        })?;
        Ok((
            u32::try_from(count).unwrap_or(u32::MAX),
            first.as_ref().and_then(Stamp::time),
        ))
    }

    /// The rotation that event `id` called for or reported, if one was written.
    pub async fn rotation_of_event(&self, id: i64) -> Result<Option<i64>, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT id FROM rotations WHERE event_id = $1 ORDER BY id LIMIT 1"
        )
        .bind(id)
        .fetch_optional(c)
        .await)
    }

    /// Whether the group `jid` has a rotation in flight (`pending`).
    pub async fn group_busy(&self, jid: &str) -> Result<bool, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rotations WHERE group_jid = $1 AND status = 'pending')",
        )
        .bind(jid)
        .fetch_one(c)
        .await)
    }

    /// Records how registering the webhook of `instance` went.
    pub async fn record_registration(
        &self,
        instance: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO event_sources (instance, registered_at, register_error)
                 VALUES ($1, CASE WHEN $3 IS NULL THEN $2 END, $3)
                 ON CONFLICT (instance) DO UPDATE SET
                     registered_at = CASE WHEN $3 IS NULL THEN $2 ELSE event_sources.registered_at END,
                     register_error = $3",
            )
            .bind(instance)
            .bind(timestamp(Utc::now()))
            .bind(error)
        )
        .map(drop)
    }

    /// Records how the WebSocket of `instance` is doing.
    pub async fn record_websocket(
        &self,
        instance: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO event_sources (instance, websocket_at, websocket_error)
                 VALUES ($1, CASE WHEN $3 IS NULL THEN $2 END, $3)
                 ON CONFLICT (instance) DO UPDATE SET
                     websocket_at = CASE WHEN $3 IS NULL THEN $2 ELSE event_sources.websocket_at END,
                     websocket_error = $3",
            )
            .bind(instance)
            .bind(timestamp(Utc::now()))
            .bind(error)
        )
        .map(drop)
    }

    /// Every instance's event sources.
    pub async fn event_sources(&self) -> Result<Vec<EventSource>, StoreError> {
        run!(self, |c, _pg| {
            sqlx::query_as(
            "SELECT instance, registered_at, register_error, websocket_at, websocket_error, last_event_at
             FROM event_sources ORDER BY instance",
        )
        .fetch_all(c)
        .await
        })
    }

    /// Events waiting to be acted on.
    pub async fn events_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE processed_at IS NULL"
        )
        .fetch_one(c)
        .await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
