//! What the auditors' console reads (see [`crate::console`]): a page of
//! rotations by keyset, rotations per day by result, the hook deliveries.
//! SQL only; each read is an index seek bounded by its page size.

use super::audit::history_filters;
use super::{
    DeliveryState, HistoryQuery, Rotation, Stamp, Store, StoreError, rotation_columns, run,
    select_rotation, timestamp,
};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

/// One hook delivery, as the console lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    /// `hook_name`.
    pub hook_name: String,
    /// `rotation_id`.
    pub rotation_id: i64,
    /// `status`: the rotation's status it tells of.
    pub status: String,
    /// `state`.
    #[sqlx(try_from = "String")]
    pub state: DeliveryState,
    /// `attempts`.
    pub attempts: i64,
    /// `created_at`.
    pub created_at: Stamp,
    /// `last_result`.
    pub last_result: Option<String>,
    /// `last_error`.
    pub last_error: Option<String>,
}

impl Store {
    /// The rotations matching `q` (its `limit` is the page size), newest
    /// first, with ids below `before` (keyset pagination: the next page
    /// starts below the last id shown).
    pub async fn history_page(
        &self,
        q: &HistoryQuery,
        before: Option<i64>,
    ) -> Result<Vec<Rotation>, StoreError> {
        run!(self, |c, _pg| {
            let mut sql = QueryBuilder::new(select_rotation!());
            history_filters!(sql, q);
            if let Some(before) = before {
                sql.push(" AND id < ").push_bind(before);
            }
            let limit = q.limit.map_or(50, |l| i64::try_from(l).unwrap_or(50));
            sql.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            sql.build_query_as::<Rotation>().fetch_all(c).await
        })
    }

    /// Rotations started since `since`, per UTC day and status:
    /// `(YYYY-MM-DD, status, count)`.
    pub async fn rotations_per_day(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        run!(self, |c, pg| {
            let sql = if pg {
                "SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, status, COUNT(*)
                 FROM rotations WHERE started_at >= $1 GROUP BY day, status"
            } else {
                "SELECT substr(started_at, 1, 10) AS day, status, COUNT(*)
                 FROM rotations WHERE started_at >= $1 GROUP BY day, status"
            };
            sqlx::query_as(sql)
                .bind(timestamp(since))
                .fetch_all(c)
                .await
        })
    }

    /// The newest `limit` hook deliveries, newest first.
    pub async fn recent_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRow>, StoreError> {
        run!(self, |c, _pg| {
            sqlx::query_as(
            "SELECT hook_name, rotation_id, status, state, attempts, created_at, last_result, last_error
             FROM hook_deliveries ORDER BY id DESC LIMIT $1"
        )
        .bind(i64::from(limit))
        .fetch_all(c)
        .await
        })
    }

    /// The live code of the group `name`: the newest code issued to it.
    pub async fn live_code_of(&self, name: &str) -> Result<Option<String>, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT new_invite_code FROM rotations
             WHERE group_name = $1 AND new_invite_code IS NOT NULL
             ORDER BY finished_at DESC, id DESC LIMIT 1"
        )
        .bind(name.to_owned())
        .fetch_optional(c)
        .await)
    }

    /// The ledger's head's `seq` (0 while empty): the number of entries in
    /// an intact ledger.
    pub async fn ledger_len(&self) -> Result<i64, StoreError> {
        Ok(self.ledger_head().await?.map_or(0, |(seq, _)| seq))
    }
}
