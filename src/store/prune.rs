//! Pruning what is not the audit trail: the per-call log (`api_calls`),
//! hook notifications that were delivered or given up, and RyzeAPI's raw
//! events once acted on. Rotations are never pruned. SQL only; when and how much is [`crate::retention`]'s to say.

use super::{Store, StoreError, run, timestamp};
use chrono::{DateTime, Utc};

/// What one pass of [`Store::prune_batch`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows of `api_calls`.
    pub calls: u64,
    /// Rows of `hook_deliveries`.
    pub deliveries: u64,
}

impl Pruned {
    /// Rows removed in all.
    pub fn total(self) -> u64 {
        self.calls + self.deliveries
    }
}

impl Store {
    /// Removes at most `batch` rows of each table older than `before`, each
    /// table in one short statement, so that the store is never held for
    /// long. Rows are taken oldest first by id (ids grow with time), so a
    /// table whose oldest rows are young is left after one index step, never
    /// scanned. Call again until it removes nothing.
    pub async fn prune_batch(
        &self,
        before: DateTime<Utc>,
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        let calls = run!(self, |c, _pg| sqlx::query(
            "DELETE FROM api_calls WHERE id IN (SELECT id FROM api_calls ORDER BY id LIMIT $2)
             AND started_at < $1",
        )
        .bind(timestamp(before))
        .bind(i64::from(batch))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        let deliveries = run!(self, |c, _pg| sqlx::query(
            "DELETE FROM hook_deliveries WHERE id IN (SELECT id FROM hook_deliveries
                 WHERE state != 'pending' ORDER BY id LIMIT $2)
             AND created_at < $1",
        )
        .bind(timestamp(before))
        .bind(i64::from(batch))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(Pruned { calls, deliveries })
    }

    /// Removes at most `batch` events received before `before` and acted
    /// on, oldest first; an event that a rotation or a waiting call names
    /// keeps its row, its raw `data` replaced by `null`. Call again until it
    /// removes nothing.
    pub async fn prune_events(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, StoreError> {
        // Acted on, older than `before`, oldest first; those a rotation or
        // a waiting call names keep their row without their data.
        run!(self, |c, _pg| {
            let emptied = sqlx::query(
                "UPDATE events SET data = 'null' WHERE id IN (
                     SELECT id FROM events WHERE received_at < $1 AND processed_at IS NOT NULL
                     AND data != 'null'
                     AND (id IN (SELECT event_id FROM rotations WHERE event_id IS NOT NULL)
                          OR id IN (SELECT first_event_id FROM event_rotations))
                     ORDER BY id LIMIT $2)",
            )
            .bind(timestamp(before))
            .bind(i64::from(batch))
            .execute(&mut *c)
            .await?
            .rows_affected();
            let removed = sqlx::query(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events WHERE received_at < $1 AND processed_at IS NOT NULL
                     AND id NOT IN (SELECT event_id FROM rotations WHERE event_id IS NOT NULL)
                     AND id NOT IN (SELECT first_event_id FROM event_rotations)
                     ORDER BY id LIMIT $2)",
            )
            .bind(timestamp(before))
            .bind(i64::from(batch))
            .execute(&mut *c)
            .await?
            .rows_affected();
            Ok(emptied + removed)
        })
    }

    /// Gives free pages back to the file system, on a SQLite database created
    /// with incremental auto-vacuum (new ones are); elsewhere SQLite reuses
    /// the free pages for new rows, so the file stops growing either way.
    /// PostgreSQL's autovacuum does this on its own.
    pub async fn release_free_pages(&self) -> Result<(), StoreError> {
        run!(self, |c, pg| {
            if !pg {
                sqlx::query("PRAGMA incremental_vacuum").execute(c).await?;
            }
            Ok(())
        })
    }

    /// Pages in the SQLite file and free pages in it, for tests and the
    /// README (PostgreSQL: the database's size in 8 KiB pages, none free).
    pub async fn page_counts(&self) -> Result<(i64, i64), StoreError> {
        run!(self, |c, pg| {
            if pg {
                let pages: i64 =
                    sqlx::query_scalar("SELECT pg_database_size(current_database()) / 8192")
                        .fetch_one(&mut *c)
                        .await?;
                return Ok((pages, 0));
            }
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(&mut *c)
                .await?;
            let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
                .fetch_one(&mut *c)
                .await?;
            Ok((pages, free))
        })
    }
}
