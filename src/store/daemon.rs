//! What the daemon reads at its start (the groups it has seen, until when
//! each was served, the rotations left unsettled) and writes at its stop.
//! SQL only.

use super::dialect::json_texts;
use super::{
    Leftover, Stamp, Store, StoreError, append_ledger, lock_ledger, rotation_columns, run,
    times_by_group, timestamp,
};
use chrono::{DateTime, Utc};
use sqlx::Connection;
use std::collections::HashMap;

impl Store {
    /// Records that the daemon has seen these groups (keeping the first time),
    /// and returns when it first saw each.
    pub async fn mark_seen(
        &self,
        names: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        // One statement for any number of groups: the names go in as one JSON array.
        let names = self.json(names)?;
        let rows: Vec<(String, Stamp)> = run!(self, |c, pg| {
            let sql = if pg {
                mark_seen_sql!(pg)
            } else {
                mark_seen_sql!(sqlite)
            };
            sqlx::query(sql)
                .bind(timestamp(now))
                .bind(&names)
                .execute(&mut *c)
                .await?;
            sqlx::query_as("SELECT group_name, first_seen_at FROM groups_seen")
                .fetch_all(&mut *c)
                .await
        })?;
        times_by_group(&self.name, rows)
    }

    /// Until when each group counts as served, for catch-up: the latest due
    /// time its scheduled (or caught-up) rotations served, or the start of its
    /// latest successful rotation of any kind, whichever is later. A fire due
    /// before that needs no making up: a `rotate` after it already gave the
    /// group a fresh link. A rotation that failed before any reset call (cut
    /// by a stop, or the API unreachable) served nothing: catch-up makes it up.
    pub async fn served_until(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, Stamp)> = run!(self, |c, _pg| sqlx::query_as(
            "SELECT group_name, MAX(served) FROM (
                 SELECT group_name, MAX(scheduled_for) AS served FROM rotations
                 WHERE scheduled_for IS NOT NULL AND NOT (status = 'failed' AND attempts = 0)
                 GROUP BY group_name
                 UNION ALL
                 SELECT r.group_name, r.started_at FROM rotations r
                 JOIN (SELECT MAX(id) AS id FROM rotations WHERE status = 'succeeded'
                       GROUP BY group_name) latest ON latest.id = r.id
             ) AS served_by GROUP BY group_name",
        )
        .fetch_all(c)
        .await)?;
        times_by_group(&self.name, rows)
    }

    /// Rotations possibly left unsettled, oldest first (of one group if `jid`
    /// is given), with the process that wrote each: `pending` rows (in
    /// progress, or left by a crash or a kill: the caller tells them apart by
    /// their owner) and rows a stop cut during a reset call, if still their
    /// group's latest. A row is offered once: settling it rewrites its error,
    /// so a failed settlement is not retried at every start.
    pub async fn unsettled(&self, jid: Option<&str>) -> Result<Vec<Leftover>, StoreError> {
        run!(self, |c, _pg| {
            sqlx::query_as(concat!(
            "SELECT ",
            rotation_columns!(),
            ", owner, last_reset_at, term FROM rotations r WHERE (status = 'pending' OR (status = 'unknown' AND error LIKE 'stopped during a reset call%'
                 AND NOT EXISTS (SELECT 1 FROM rotations later WHERE later.group_jid = r.group_jid AND later.id > r.id)))
               AND ($1 IS NULL OR group_jid = $1) ORDER BY id"
        ))
        .bind(jid)
        .fetch_all(c)
            .await
        })
    }

    /// At a stop, records this process's own rotations that were cut short:
    /// `failed` if no reset call had been made, else `unknown` (the next start
    /// reads the link to settle it). Rows of any other process, a second
    /// daemon reached through another name of the file included, are left
    /// to their writer. Returns how many.
    pub async fn record_stopped(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let keeps = self.keeps_ledger();
        run!(self, |c, pg| {
            let mut tx = c.begin().await?;
            lock_ledger!(tx, pg, keeps).await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "UPDATE rotations SET finished_at = $1,
                    status = CASE WHEN attempts = 0 THEN 'failed' ELSE 'unknown' END,
                    error = CASE WHEN attempts = 0 THEN 'stopped before any reset'
                            ELSE 'stopped during a reset call; settled from the live link at next start' END
                 WHERE status = 'pending' AND trigger IN ('schedule', 'catch_up', 'member_removed', 'member_left')
                   AND owner = $2
                 RETURNING id",
            )
            .bind(timestamp(now))
            .bind(crate::owner::current())
            .fetch_all(&mut *tx)
            .await?;
            let mut ids = ids;
            ids.sort_unstable();
            append_ledger!(tx, pg, keeps, &ids).await?;
            tx.commit().await?;
            Ok(ids.len() as u64)
        })
    }
}

/// [`Store::mark_seen`]'s insert (`WHERE true`: SQLite's parser needs it
/// between a `SELECT` and its upsert clause).
macro_rules! mark_seen_sql {
    ($d:ident) => {
        concat!(
            "INSERT INTO groups_seen (group_name, first_seen_at)
             SELECT value, $1 FROM (",
            json_texts!($d, "$2"),
            ") AS names WHERE true ON CONFLICT DO NOTHING"
        )
    };
}
use mark_seen_sql;
