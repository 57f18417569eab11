//! The hooks' outbox: turning rotation events into deliveries, and keeping
//! each delivery's state. SQL only; what a hook wants is the caller's to say.

use super::dialect::{fence, json_texts};
use super::{
    DeliveryState, Fencing, Rotation, Stamp, Store, StoreError, exec, rotation_columns, run,
    timestamp,
};
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
    pub queued_at: Stamp,
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
        let queued = run!(self, |c, _pg| {
            let mut tx = c.begin().await?;
            let events: Vec<(i64, i64, String, String)> = sqlx::query_as(
                "SELECT e.id, e.rotation_id, e.status, r.group_name FROM hook_outbox e
                 JOIN rotations r ON r.id = e.rotation_id ORDER BY e.id LIMIT 1000",
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut queued = 0;
            for (_, rotation, status, group) in &events {
                for to in recipients(group, status) {
                    // One notification per rotation, status told and hook: the
                    // same key however often the event is seen.
                    let key = format!("invite-rotator-{rotation}-{status}-{}", to.key);
                    let inserted = sqlx::query(
                        "INSERT INTO hook_deliveries (idempotency_key, hook_key, hook_name,
                         rotation_id, status, state, created_at, next_attempt_at)
                         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&key)
                    .bind(&to.key)
                    .bind(&to.name)
                    .bind(rotation)
                    .bind(status)
                    .bind(timestamp(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        tracing::debug!(%key, "hooks: notification already queued");
                    }
                    queued += inserted;
                }
            }
            // Exactly the events read: on PostgreSQL ids are not handed out
            // in commit order, so one with a lower id may commit after this
            // read; it is read by the next pass.
            for (id, ..) in &events {
                sqlx::query("DELETE FROM hook_outbox WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await.map(|()| queued)
        })?;
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
        run!(self, |c, pg| {
            let sql = if pg {
                has_work_sql!(pg)
            } else {
                has_work_sql!(sqlite)
            };
            sqlx::query_scalar(sql)
                .bind(&keys)
                .bind(timestamp(now))
                .fetch_one(c)
                .await
        })
    }

    /// Pending deliveries due at `now` for the hooks `keys`, oldest first.
    pub async fn due_deliveries(
        &self,
        keys: &[&str],
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let keys = self.json(keys)?;
        run!(self, |c, pg| {
            let sql = if pg { due_sql!(pg) } else { due_sql!(sqlite) };
            sqlx::query_as(sql)
                .bind(&keys)
                .bind(timestamp(now))
                .bind(i64::from(limit))
                .fetch_all(c)
                .await
        })
    }

    /// Gives up pending deliveries queued before `before` for hooks no longer
    /// configured (not among `keys`); returns how many.
    pub async fn abandon_orphans(
        &self,
        keys: &[&str],
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let keys = self.json(keys)?;
        run!(self, |c, pg| {
            let sql = if pg {
                abandon_sql!(pg)
            } else {
                abandon_sql!(sqlite)
            };
            sqlx::query(sql)
                .bind(&keys)
                .bind(timestamp(before))
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })
    }

    /// Claims delivery `id`, due now, for one attempt that ends by `until`
    /// (a node that dies mid-attempt leaves it to the next active node after
    /// that; one that claimed it already keeps it), and returns whether it
    /// did. Every attempt begins with this write: on
    /// PostgreSQL it checks, in the same statement, that this node still
    /// holds its lease (fencing), so a node paused past its lease delivers
    /// nothing when it wakes.
    pub async fn claim_delivery(&self, id: i64, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let fence = match self.fencing() {
            Fencing::Standby => return Ok(false),
            Fencing::Active(fence) => Some(fence),
            Fencing::Off => None,
        };
        let claimed = run!(self, |c, pg| {
            let sql = if pg {
                claim_sql!(pg)
            } else {
                claim_sql!(sqlite)
            };
            sqlx::query(sql)
                .bind(id)
                .bind(timestamp(until))
                .bind(fence.as_ref().map(|f| f.node.as_str()))
                .bind(fence.as_ref().map(|f| f.term))
                .bind(timestamp(Utc::now()))
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(claimed == 1)
    }

    /// Records an attempt of delivery `id`.
    pub async fn record_delivery(&self, id: i64, a: &Attempt<'_>) -> Result<(), StoreError> {
        let state = match (a.delivered, a.retry_at) {
            (true, _) => DeliveryState::Delivered,
            (false, Some(_)) => DeliveryState::Pending,
            (false, None) => DeliveryState::Abandoned,
        };
        exec!(
            self,
            sqlx::query(
                "UPDATE hook_deliveries SET state = $1, attempts = attempts + 1,
                 next_attempt_at = COALESCE($2, next_attempt_at),
                 delivered_at = CASE WHEN $3 THEN $4 ELSE delivered_at END,
                 last_result = $5, last_error = $6, output = $7 WHERE id = $8",
            )
            .bind(state.as_str())
            .bind(a.retry_at.map(timestamp))
            .bind(a.delivered)
            .bind(timestamp(Utc::now()))
            .bind(a.result.as_deref())
            .bind(a.error.as_deref())
            .bind(a.output)
            .bind(id)
        )
        .map(drop)
    }

    /// Deliveries of the hook `key` by state, for tests and audits:
    /// `(idempotency_key, state, attempts)`, oldest first.
    pub async fn deliveries_of(
        &self,
        key: &str,
    ) -> Result<Vec<(String, DeliveryState, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = run!(self, |c, _pg| {
            sqlx::query_as(
            "SELECT idempotency_key, state, attempts FROM hook_deliveries WHERE hook_key = $1 ORDER BY id",
        )
        .bind(key)
        .fetch_all(c)
        .await
        })?;
        rows.into_iter()
            .map(|(k, state, attempts)| {
                let state = DeliveryState::try_from(state)
                    .map_err(|e| StoreError::invalid(&self.name, e.to_string()))?;
                Ok((k, state, attempts))
            })
            .collect()
    }

    /// Proves the database takes a write (for `/healthz`).
    pub async fn probe_write(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.injected_fault("store::health_probe")?;
        exec!(
            self,
            sqlx::query(
                "INSERT INTO health_probe (id, checked_at) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET checked_at = $1",
            )
            .bind(timestamp(now))
        )
        .map(drop)
    }

    /// Rotations `pending` or `unknown`: waiting to be settled or told.
    pub async fn count_unsettled(&self) -> Result<u64, StoreError> {
        let n: i64 = run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT COUNT(*) FROM rotations WHERE status IN ('pending', 'unknown')",
        )
        .fetch_one(c)
        .await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Due deliveries with their rotations, for the hooks whose keys are `$1`.
macro_rules! due_sql {
    ($d:ident) => {
        concat!(
            "SELECT d.id AS delivery_id, d.idempotency_key, d.hook_key, d.status AS event_status,
             d.attempts AS delivery_attempts, d.created_at AS queued_at, r.*
             FROM hook_deliveries d JOIN (SELECT ",
            rotation_columns!(),
            " FROM rotations) r ON r.id = d.rotation_id
             WHERE d.state = 'pending' AND d.next_attempt_at <= $2
               AND d.hook_key IN (",
            json_texts!($d, "$1"),
            ")
             ORDER BY d.next_attempt_at LIMIT $3"
        )
    };
}
use due_sql;

/// [`Store::outbox_has_work`]'s query.
macro_rules! has_work_sql {
    ($d:ident) => {
        concat!(
            "SELECT EXISTS (SELECT 1 FROM hook_outbox)
                 OR EXISTS (SELECT 1 FROM hook_deliveries WHERE state = 'pending'
                            AND next_attempt_at <= $2 AND hook_key IN (",
            json_texts!($d, "$1"),
            "))"
        )
    };
}
use has_work_sql;

/// [`Store::abandon_orphans`]'s update.
macro_rules! abandon_sql {
    ($d:ident) => {
        concat!(
            "UPDATE hook_deliveries SET state = 'abandoned', last_error = 'the hook is no longer configured'
             WHERE state = 'pending' AND created_at < $2 AND hook_key NOT IN (",
            json_texts!($d, "$1"),
            ")"
        )
    };
}
use abandon_sql;

/// [`Store::claim_delivery`]'s update, fenced by the lease (`$3`, `$4`).
macro_rules! claim_sql {
    ($d:ident) => {
        concat!(
            "UPDATE hook_deliveries SET next_attempt_at = $2 WHERE id = $1 AND state = 'pending'
             AND next_attempt_at <= $5 AND ",
            fence!($d, "$3", "$4")
        )
    };
}
use claim_sql;
