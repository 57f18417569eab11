//! What audits read: the history (`history`, the console later) and each
//! group's record (`status`), with the plans that prove they use an index.
//! Read-only; SQL only.

use super::dialect::json_ints;
use super::{
    GroupRecord, HistoryQuery, LastRotation, Rotation, Stamp, Status, Store, StoreError, on,
    rotation_columns, run, select_rotation,
};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::QueryBuilder;

impl Store {
    /// How many settled rotations a history without the ledger's tables
    /// holds (`None` when it has the ledger): a history from before the
    /// ledger, or one whose ledger was dropped. Read-only.
    pub async fn settled_without_ledger(&self) -> Result<Option<i64>, StoreError> {
        if self.has_ledger().await? {
            return Ok(None);
        }
        run!(self, |c, _pg| sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM rotations WHERE status != 'pending'"
        )
        .fetch_one(c)
        .await)
        .map(Some)
    }

    /// Each group's reference for being overdue, handed to `each` row by row
    /// as read (100,000 groups cost no memory here): first when the daemon
    /// first saw each group, then, overriding those, when each group's
    /// latest successful rotation finished. Two scans (`groups_seen`, and an
    /// index of the successes), whatever the number of groups: what the
    /// metrics' overdue tracking starts from.
    pub async fn each_overdue_reference(
        &self,
        mut each: impl FnMut(&str, DateTime<Utc>),
    ) -> Result<(), StoreError> {
        on!(self, |c, _pg| {
            for sql in [
                "SELECT group_name, first_seen_at FROM groups_seen",
                "SELECT r.group_name, COALESCE(r.finished_at, r.started_at) FROM rotations r
                 JOIN (SELECT MAX(id) AS id FROM rotations WHERE status = 'succeeded'
                       AND trigger != 'outside' GROUP BY group_name) latest ON latest.id = r.id",
            ] {
                let mut rows = sqlx::query_as::<_, (String, Stamp)>(sql).fetch(&mut *c);
                while let Some((group, at)) = rows.try_next().await.map_err(|e| self.err(e))? {
                    if let Some(at) = at.time() {
                        each(&group, at);
                    }
                }
            }
            Ok(())
        })
    }

    /// Where a reader of new successes starts: the newest rotation's id, and
    /// the rows not settled for good yet (`pending`, or `unknown`, which a
    /// later read may still tell `succeeded`). Index lookups only.
    pub async fn success_cursor(&self) -> Result<(i64, Vec<i64>), StoreError> {
        run!(self, |c, _pg| {
            let last: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM rotations")
                .fetch_one(&mut *c)
                .await?;
            let open: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM rotations WHERE status IN ('pending', 'unknown')",
            )
            .fetch_all(&mut *c)
            .await?;
            Ok((last.unwrap_or(0), open))
        })
    }

    /// Rotations after `after`, and those of `open`, as they stand now:
    /// `(id, group, status, when it finished)`, for following successes made
    /// by any process. Index lookups only.
    pub async fn rotations_after(
        &self,
        after: i64,
        open: &[i64],
    ) -> Result<Vec<(i64, String, Status, Option<DateTime<Utc>>)>, StoreError> {
        let open = self.json(open)?;
        let rows: Vec<(i64, String, String, Option<Stamp>)> = on!(self, |c, pg| {
            let sql = if pg {
                rotations_after_sql!(pg)
            } else {
                rotations_after_sql!(sqlite)
            };
            sqlx::query_as(sql)
                .bind(after)
                .bind(&open)
                .fetch_all(c)
                .await
        })
        .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(id, group, status, at)| {
                let status = Status::parse(&status).ok_or_else(|| {
                    StoreError::invalid(&self.name, format!("rotation {id}: no status {status:?}"))
                })?;
                Ok((id, group, status, at.as_ref().and_then(Stamp::time)))
            })
            .collect()
    }

    /// The rotations matching `q`, oldest first. With a limit, the newest
    /// `limit` of them (still oldest first).
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<Rotation>, StoreError> {
        let mut rows = Vec::new();
        self.each_in_history(q, |r| {
            rows.push(r);
            Ok::<(), StoreError>(())
        })
        .await?;
        Ok(rows)
    }

    /// Hands the rotations matching `q` to `each`, oldest first, as SQLite
    /// reads them: a million rows cost one row of memory. With a limit, the
    /// newest `limit` of them are read first (newest first is what the index
    /// gives) and handed over oldest first. Stops at the first error of `each`.
    pub async fn each_in_history<E: From<StoreError>>(
        &self,
        q: &HistoryQuery,
        mut each: impl FnMut(Rotation) -> Result<(), E>,
    ) -> Result<(), E> {
        on!(self, |c, _pg| {
            let mut sql = history_sql!(q, "");
            if q.limit.is_some() {
                let mut rows: Vec<Rotation> = sql
                    .build_query_as()
                    .fetch_all(&mut *c)
                    .await
                    .map_err(|e| self.err(e))?;
                rows.reverse();
                return rows.into_iter().try_for_each(each);
            }
            let mut rows = sql.build_query_as::<Rotation>().fetch(&mut *c);
            while let Some(row) = rows.try_next().await.map_err(|e| self.err(e))? {
                each(row)?;
            }
            Ok(())
        })
    }

    /// The database's plan for the query [`Store::history`] runs for `q`
    /// (SQLite's `EXPLAIN QUERY PLAN`, PostgreSQL's `EXPLAIN`, one line per
    /// step), to check that audits use an index rather than read the whole
    /// history.
    pub async fn explain_history(&self, q: &HistoryQuery) -> Result<Vec<String>, StoreError> {
        run!(self, |c, pg| {
            if pg {
                history_sql!(q, "EXPLAIN ")
                    .build_query_scalar::<String>()
                    .fetch_all(c)
                    .await
            } else {
                let rows: Vec<(i64, i64, i64, String)> = history_sql!(q, "EXPLAIN QUERY PLAN ")
                    .build_query_as()
                    .fetch_all(c)
                    .await?;
                Ok(rows.into_iter().map(|(.., detail)| detail).collect())
            }
        })
    }

    /// What the history says about each of `groups`, in their order, for
    /// `status`: the latest rotation, the latest success, whether the latest
    /// settled rotation failed, and when the daemon first saw the group.
    ///
    /// One statement for any number of groups (the names go in as one JSON
    /// array); each group costs a few index seeks, never a scan of its history.
    pub async fn group_records(&self, groups: &[&str]) -> Result<Vec<GroupRecord>, StoreError> {
        let names = self.json(groups)?;
        let rows: Vec<RecordRow> = on!(self, |c, pg| {
            let sql = if pg {
                group_records_sql!(postgres)
            } else {
                group_records_sql!(sqlite)
            };
            sqlx::query_as(sql).bind(&names).fetch_all(c).await
        })
        .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(RecordRow::into_record).collect())
    }

    /// The database's plan for [`Store::group_records`].
    pub async fn explain_group_records(&self, groups: &[&str]) -> Result<Vec<String>, StoreError> {
        let names = self.json(groups)?;
        run!(self, |c, pg| {
            if pg {
                sqlx::query_scalar(concat!("EXPLAIN ", group_records_sql!(postgres)))
                    .bind(&names)
                    .fetch_all(c)
                    .await
            } else {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(concat!("EXPLAIN QUERY PLAN ", group_records_sql!(sqlite)))
                        .bind(&names)
                        .fetch_all(c)
                        .await?;
                Ok(rows.into_iter().map(|(.., detail)| detail).collect())
            }
        })
    }
}

/// `history`'s filters of `$q` (a [`HistoryQuery`]) as the `WHERE` of the
/// query `$sql` is building (also the console's pages').
macro_rules! history_filters {
    ($sql:expr, $q:expr) => {{
        let q: &$crate::store::HistoryQuery = $q;
        $sql.push(" WHERE 1 = 1");
        if let Some(group) = &q.group {
            $sql.push(" AND group_name = ").push_bind(group.clone());
        }
        if let Some(since) = q.since {
            $sql.push(" AND started_at >= ")
                .push_bind($crate::store::timestamp(since));
        }
        if let Some(until) = q.until {
            $sql.push(" AND started_at < ")
                .push_bind($crate::store::timestamp(until));
        }
        if let Some(status) = q.status {
            $sql.push(" AND status = ").push_bind(status.as_str());
        }
    }};
}
pub(super) use history_filters;

/// The query of `history` for `q`, after `prefix`: newest first when limited
/// (so the limit keeps the newest), else oldest first. A macro, so that the
/// builder is typed by the connection it runs on.
macro_rules! history_sql {
    ($q:expr, $prefix:expr) => {{
        let q: &HistoryQuery = $q;
        let mut sql = QueryBuilder::new($prefix);
        sql.push(select_rotation!());
        history_filters!(sql, q);
        match q.limit {
            Some(limit) => {
                sql.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            None => {
                sql.push(" ORDER BY id");
            }
        }
        sql
    }};
}
use history_sql;

/// Per configured group (`$1`, a JSON array of names): its latest rotation,
/// latest success, latest failure or unknown outcome, each found by a seek in
/// `rotations_by_group` or `rotations_by_group_status`; then those rows and
/// `groups_seen`. A macro, so that its `EXPLAIN` stays a `&'static str`; the
/// dialects differ in reading the array and in the larger of two values.
macro_rules! group_records_sql {
    (sqlite) => {
        group_records_sql!(
            "WITH names AS (SELECT key AS pos, value AS group_name FROM json_each($1)),",
            "MAX(COALESCE(ids.failed_id, 0), COALESCE(ids.unknown_id, 0))"
        )
    };
    (postgres) => {
        group_records_sql!(
            "WITH names AS (SELECT pos, group_name
                 FROM json_array_elements_text($1::json) WITH ORDINALITY AS n (group_name, pos)),",
            "GREATEST(COALESCE(ids.failed_id, 0), COALESCE(ids.unknown_id, 0))"
        )
    };
    ($names:literal, $latest_bad:literal) => {
        concat!(
            $names,
            "
ids AS (
    SELECT pos, group_name,
        (SELECT MAX(id) FROM rotations r WHERE r.group_name = names.group_name) AS last_id,
        (SELECT id FROM rotations r WHERE r.group_name = names.group_name AND r.status = 'succeeded'
             AND r.trigger != 'outside' ORDER BY id DESC LIMIT 1) AS success_id,
        (SELECT MAX(id) FROM rotations r WHERE r.group_name = names.group_name AND r.status = 'failed') AS failed_id,
        (SELECT MAX(id) FROM rotations r WHERE r.group_name = names.group_name AND r.status = 'unknown') AS unknown_id
    FROM names
)
SELECT ids.group_name, seen.first_seen_at, last.started_at, last.status,
       COALESCE(success.finished_at, success.started_at) AS last_success_at,
       ",
            $latest_bad,
            " > COALESCE(ids.success_id, 0) AS failing
FROM ids
LEFT JOIN groups_seen seen ON seen.group_name = ids.group_name
LEFT JOIN rotations last ON last.id = ids.last_id
LEFT JOIN rotations success ON success.id = ids.success_id
ORDER BY ids.pos"
        )
    };
}
use group_records_sql;

/// A row of `group_records_sql!()`.
#[derive(sqlx::FromRow)]
struct RecordRow {
    group_name: String,
    first_seen_at: Option<Stamp>,
    started_at: Option<Stamp>,
    status: Option<String>,
    last_success_at: Option<Stamp>,
    failing: bool,
}

impl RecordRow {
    fn into_record(self) -> GroupRecord {
        let time = |t: Option<Stamp>| t.as_ref().and_then(Stamp::time);
        GroupRecord {
            last: time(self.started_at)
                .zip(self.status.as_deref().and_then(Status::parse))
                .map(|(started_at, status)| LastRotation { started_at, status }),
            group_name: self.group_name,
            first_seen_at: time(self.first_seen_at),
            last_success_at: time(self.last_success_at),
            failing: self.failing,
        }
    }
}

/// [`Store::rotations_after`]'s query.
macro_rules! rotations_after_sql {
    ($d:ident) => {
        concat!(
            "SELECT id, group_name, status, COALESCE(finished_at, started_at) FROM rotations
             WHERE (id > $1 OR id IN (",
            json_ints!($d, "$2"),
            ")) AND trigger != 'outside'
             ORDER BY id"
        )
    };
}
use rotations_after_sql;
