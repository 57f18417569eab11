//! The hooks' outbox: turning rotation events into deliveries, and keeping
//! each delivery's state. SQL only; what a hook wants is the caller's to say.

use super::{Rotation, Store, StoreError, rotation_columns, timestamp};
use chrono::{DateTime, Utc};
use sqlx::Connection;

/// A hook a rotation event goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The hook's key (a digest of its target).
    pub key: String,
    /// Its name, for logs.
    pub name: String,
}

/// A delivery that is due, with the rotation it tells of.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    /// `hook_deliveries.id`.
    pub delivery_id: i64,
    /// The same for every attempt of this notification.
    pub idempotency_key: String,
    /// Which hook.
    pub hook_key: String,
    /// The rotation's status this notification tells of.
    pub event_status: String,
    /// Attempts made so far.
    pub delivery_attempts: i64,
    /// When the notification was queued.
    pub queued_at: String,
    /// The rotation, as it stands now.
    #[sqlx(flatten)]
    pub rotation: Rotation,
}

/// How one attempt went.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// Delivered.
    pub delivered: bool,
    /// The HTTP status or exit status, if one came.
    pub result: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
    /// A command's output.
    pub output: Option<&'a str>,
    /// When to try again (if not delivered); none gives up.
    pub retry_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Turns queued rotation events into deliveries, one per hook that
    /// `recipients` names for the event's group and status, and deletes the
    /// events; one transaction. Returns the deliveries queued.
    pub async fn fan_out(
        &self,
        recipients: impl Fn(&str, &str) -> Vec<Recipient>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await.map_err(|e| self.err(e))?;
        let events: Vec<(i64, i64, String, String)> = sqlx::query_as(
            "SELECT e.id, e.rotation_id, e.status, r.group_name FROM rotation_events e
             JOIN rotations r ON r.id = e.rotation_id ORDER BY e.id LIMIT 1000",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let mut queued = 0;
        for (_, rotation, status, group) in &events {
            for to in recipients(group, status) {
                // One notification per rotation, status told and hook: the
                // same key however often the event is seen.
                let key = format!("invite-rotator-{rotation}-{status}-{}", to.key);
                let inserted = sqlx::query(
                    "INSERT OR IGNORE INTO hook_deliveries (idempotency_key, hook_key, hook_name,
                     rotation_id, status, state, created_at, next_attempt_at)
                     VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                )
                .bind(&key)
                .bind(&to.key)
                .bind(&to.name)
                .bind(rotation)
                .bind(status)
                .bind(timestamp(now))
                .bind(timestamp(now))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?
                .rows_affected();
                if inserted == 0 {
                    tracing::debug!(%key, "hooks: notification already queued");
                }
                queued += inserted;
            }
        }
        if let Some((last, ..)) = events.last() {
            sqlx::query("DELETE FROM rotation_events WHERE id <= ?")
                .bind(last)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(usize::try_from(queued).unwrap_or(usize::MAX))
    }

    /// Whether [`Store::fan_out`] or [`Store::due_deliveries`] would find
    /// anything: an event not yet fanned out, or a delivery of one of the
    /// hooks `keys` due at `now`. Two index lookups, for the worker's idle poll.
    pub async fn outbox_has_work(
        &self,
        keys: &[&str],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let keys = self.json(keys)?;
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rotation_events)
                 OR EXISTS (SELECT 1 FROM hook_deliveries WHERE state = 'pending'
                            AND next_attempt_at <= $2
                            AND hook_key IN (SELECT value FROM json_each($1)))",
        )
        .bind(keys)
        .bind(timestamp(now))
        .fetch_one(&mut *self.conn.lock().await)
        .await
        .map_err(|e| self.err(e))
    }

    /// Pending deliveries due at `now` for the hooks `keys`, oldest first.
    pub async fn due_deliveries(
        &self,
        keys: &[&str],
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let keys = self.json(keys)?;
        sqlx::query_as(concat!(
            "SELECT d.id AS delivery_id, d.idempotency_key, d.hook_key, d.status AS event_status,
             d.attempts AS delivery_attempts, d.created_at AS queued_at, r.*
             FROM hook_deliveries d JOIN (SELECT ",
            rotation_columns!(),
            " FROM rotations) r ON r.id = d.rotation_id
             WHERE d.state = 'pending' AND d.next_attempt_at <= ?2
               AND d.hook_key IN (SELECT value FROM json_each(?1))
             ORDER BY d.next_attempt_at LIMIT ?3"
        ))
        .bind(keys)
        .bind(timestamp(now))
        .bind(limit)
        .fetch_all(&mut *self.conn.lock().await)
        .await
        .map_err(|e| self.err(e))
    }

    /// Gives up pending deliveries queued before `before` for hooks no longer
    /// configured (not among `keys`); returns how many.
    pub async fn abandon_orphans(
        &self,
        keys: &[&str],
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let keys = self.json(keys)?;
        sqlx::query(
            "UPDATE hook_deliveries SET state = 'abandoned', last_error = 'the hook is no longer configured'
             WHERE state = 'pending' AND created_at < ?2
               AND hook_key NOT IN (SELECT value FROM json_each(?1))",
        )
        .bind(keys)
        .bind(timestamp(before))
        .execute(&mut *self.conn.lock().await)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| self.err(e))
    }

    /// Records an attempt of delivery `id`.
    pub async fn record_delivery(&self, id: i64, a: &Attempt<'_>) -> Result<(), StoreError> {
        let now = timestamp(Utc::now());
        let state = match (a.delivered, a.retry_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "abandoned",
        };
        self.execute(
            sqlx::query(
                "UPDATE hook_deliveries SET state = ?, attempts = attempts + 1,
                 next_attempt_at = COALESCE(?, next_attempt_at),
                 delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END,
                 last_result = ?, last_error = ?, output = ? WHERE id = ?",
            )
            .bind(state)
            .bind(a.retry_at.map(timestamp))
            .bind(a.delivered)
            .bind(now)
            .bind(a.result.clone())
            .bind(a.error.clone())
            .bind(a.output.map(str::to_owned))
            .bind(id),
        )
        .await
    }

    /// Deliveries of the hook `key` by state, for tests and audits:
    /// `(idempotency_key, state, attempts)`, oldest first.
    pub async fn deliveries_of(&self, key: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT idempotency_key, state, attempts FROM hook_deliveries WHERE hook_key = ? ORDER BY id",
        )
        .bind(key.to_owned())
        .fetch_all(&mut *self.conn.lock().await)
        .await
        .map_err(|e| self.err(e))
    }

    /// Proves the database takes a write (for `/healthz`).
    pub async fn probe_write(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.injected_fault("store::health_probe")?;
        self.execute(
            sqlx::query(
                "INSERT INTO health_probe (id, checked_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET checked_at = ?1",
            )
            .bind(timestamp(now)),
        )
        .await
    }

    /// Rotations `pending` or `unknown`: waiting to be settled or told.
    pub async fn count_unsettled(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM rotations WHERE status IN ('pending', 'unknown')",
        )
        .fetch_one(&mut *self.conn.lock().await)
        .await
        .map_err(|e| self.err(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
