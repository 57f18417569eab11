//! The rows of `rotations` as one rotation goes: written `pending` before
//! anything is sent, its old code and each reset attempt recorded as they
//! happen, settled at the end (or later, from the live link), and the call
//! log beside it. SQL only; the workflow is [`crate::rotation`]'s.

use super::dialect::fence;
use super::{
    Begun, CallRecord, Fencing, NewRotation, Rotation, Settlement, Stamp, Status, Store,
    StoreError, append_ledger, exec, insert_entries, lock_ledger, on, rotation_columns, run,
    select_rotation, timestamp,
};
use chrono::Utc;
use sqlx::Connection;

/// A row just settled, with the ledger's head as the settlement saw it.
#[derive(sqlx::FromRow)]
struct Settled {
    #[sqlx(flatten)]
    rotation: Rotation,
    head_seq: Option<i64>,
    head_hash: Option<String>,
}

impl Store {
    /// Writes the `pending` row of a rotation about to start and returns its
    /// id. Nothing may be sent to the API before this has returned.
    ///
    /// A group has at most one pending rotation across every process using the
    /// database: if one is pending (a daemon and a `rotate` racing), nothing is
    /// written and [`Begun::Busy`] says since when. A unique index on the
    /// pending rows of a group decides, so two processes cannot both pass.
    pub async fn begin(&self, new: &NewRotation<'_>) -> Result<Begun, StoreError> {
        self.injected_fault("store::begin")?;
        let fence = match self.fencing() {
            Fencing::Standby => return Ok(Begun::Fenced),
            Fencing::Active(fence) => Some(fence),
            Fencing::Off => None,
        };
        // `fetch_all`, not `fetch_optional`, with every `RETURNING`: the
        // statement must run to its end, where SQLite commits it. Stopping at
        // the first row leaves the commit to the statement's reset, whose
        // error (a full disk) is lost: the id would come back for a row that
        // was rolled back, and a reset would follow with no record.
        let written = run!(self, |c, pg| {
            // On PostgreSQL, the active node's lease is checked in the same
            // statement (fencing): a node past its lease writes nothing.
            let sql = if pg {
                begin_sql!(pg)
            } else {
                begin_sql!(sqlite)
            };
            let ids: Vec<i64> = sqlx::query_scalar(sql)
                .bind(new.group_name)
                .bind(new.group_jid)
                .bind(new.instance)
                .bind(new.cause.trigger.as_str())
                .bind(new.cause.scheduled_for.map(timestamp))
                .bind(timestamp(Utc::now()))
                .bind(crate::owner::current())
                .bind(new.cause.event_id)
                .bind(fence.as_ref().map(|f| f.term))
                .bind(fence.as_ref().map(|f| f.node.as_str()))
                .fetch_all(&mut *c)
                .await?;
            if let Some(&id) = ids.first() {
                return Ok(Begun::Started(id));
            }
            let pending: Option<(Stamp, Option<String>)> = sqlx::query_as(
                "SELECT started_at, owner FROM rotations WHERE group_jid = $1 AND status = 'pending'
                 ORDER BY id LIMIT 1",
            )
            .bind(new.group_jid)
            .fetch_optional(&mut *c)
            .await?;
            // No row pending: fenced only if the lease is not ours (the
            // pending row may have been settled between the two statements).
            let held = match &fence {
                Some(f) if pending.is_none() => {
                    sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM lease WHERE id = 1 AND holder = $1
                             AND term = $2 AND expires_at > clock_timestamp())",
                    )
                    .bind(&f.node)
                    .bind(f.term)
                    .fetch_one(&mut *c)
                    .await?
                }
                _ => false,
            };
            Ok(match pending {
                Some((since, owner)) => Begun::Busy {
                    since: since.0,
                    owner,
                },
                None if fence.is_some() && !held => Begun::Fenced,
                // Settled in the meantime: the caller may simply try again.
                None => Begun::Busy {
                    since: String::new(),
                    owner: None,
                },
            })
        });
        match written {
            Err(e) if e.violates("rotations_one_per_due") => Ok(Begun::Served),
            other => other,
        }
    }

    /// Records the code the rotation is about to revoke.
    pub async fn record_old_code(&self, id: i64, code: Option<&str>) -> Result<(), StoreError> {
        // Only while the row is pending: a row another process settled
        // meanwhile (a node frozen while reading the link) is not changed
        // behind the ledger's back, and gets no reset.
        let changed = exec!(
            self,
            sqlx::query(
                "UPDATE rotations SET old_invite_code = $1 WHERE id = $2 AND status = 'pending'"
            )
            .bind(code.map(str::to_owned))
            .bind(id)
        )?;
        if changed == 0 {
            return Err(self.settled_elsewhere());
        }
        Ok(())
    }

    /// Records that reset call number `attempts` is about to be made, and
    /// when. Called before each reset, so a crash leaves the count of calls
    /// possibly made and the time of the latest.
    pub async fn record_attempt(&self, id: i64, attempts: u32) -> Result<(), StoreError> {
        // A node that lost its lease sends no more resets: the active node
        // settles its rotation from the live link.
        let fence = match self.fencing() {
            Fencing::Standby => return Err(self.lost_lease()),
            Fencing::Active(fence) => Some(fence),
            Fencing::Off => None,
        };
        let changed = run!(self, |c, pg| {
            // Only while the row is pending: a row another process settled
            // gets no more resets.
            let sql = if pg {
                attempt_sql!(pg)
            } else {
                attempt_sql!(sqlite)
            };
            sqlx::query(sql)
                .bind(i64::from(attempts))
                .bind(timestamp(Utc::now()))
                .bind(id)
                .bind(fence.as_ref().map(|f| f.node.as_str()))
                .bind(fence.as_ref().map(|f| f.term))
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })?;
        match (changed, fence) {
            (0, Some(_)) => Err(self.lost_lease()),
            (0, None) => Err(self.settled_elsewhere()),
            _ => Ok(()),
        }
    }

    fn lost_lease(&self) -> StoreError {
        StoreError::Fenced {
            name: self.name.to_string(),
            what: "this node no longer holds the lease: no reset is sent (the active node settles the rotation from the live link)".to_owned(),
        }
    }

    fn settled_elsewhere(&self) -> StoreError {
        StoreError::Conflict {
            name: self.name.to_string(),
            what: "the rotation was settled by another process: no reset is sent",
        }
    }

    /// Settles a rotation: final status, what the API issued, the last error.
    pub async fn settle(&self, id: i64, s: &Settlement) -> Result<(), StoreError> {
        self.settle_from(id, Status::Pending, s).await.map(drop)
    }

    /// Settles a rotation that is still `from`; returns whether it was (a row
    /// another process settled meanwhile is left as that process wrote it).
    pub async fn settle_from(
        &self,
        id: i64,
        from: Status,
        s: &Settlement,
    ) -> Result<bool, StoreError> {
        self.injected_fault("store::settle")?;
        let keeps = self.keeps_ledger();
        let changed = run!(self, |c, pg| {
            let mut tx = c.begin().await?;
            // Taken before the update, whose snapshot then holds the
            // ledger's head as it is under the lock.
            lock_ledger!(tx, pg, keeps).await?;
            // The settled row and the ledger's head come back from the
            // update itself: entering it costs one more statement.
            let settled: Vec<Settled> = sqlx::query_as(concat!(
                // `attempts` never goes down: a fenced write of another
                // node's attempt that committed after this settlement read
                // the row still counts (a row with a reset call is never
                // taken for one without).
                "UPDATE rotations SET status = $1,
                 attempts = CASE WHEN attempts > $2 THEN attempts ELSE $2 END, new_invite_code = $3,
                 new_invite_link = $4, error = $5, finished_at = $6 WHERE id = $7 AND status = $8
                 RETURNING ",
                rotation_columns!(),
                ", (SELECT seq FROM ledger ORDER BY seq DESC LIMIT 1) AS head_seq,
                 (SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1) AS head_hash"
            ))
            .bind(s.status.as_str())
            .bind(i64::from(s.attempts))
            .bind(s.new_code.clone())
            .bind(s.new_link.clone())
            .bind(s.error.clone())
            .bind(timestamp(Utc::now()))
            .bind(id)
            .bind(from.as_str())
            .fetch_all(&mut *tx)
            .await?;
            if let Some(row) = settled.first()
                && keeps
            {
                let head = row.head_seq.zip(row.head_hash.clone());
                insert_entries!(tx, head, std::slice::from_ref(&row.rotation)).await?;
            }
            crate::failpoint::crash("store::settle::before_commit");
            tx.commit().await.map(|()| settled.len())
        })?;
        Ok(changed > 0)
    }

    /// Records a code that a rotation's own reset issued after another
    /// process had settled the row without one (a node frozen past its
    /// lease, woken after the active node read the link): the row becomes
    /// `succeeded` with it, finished now (when its reply came). Whether it
    /// was recorded (not when the row holds a code already).
    pub async fn record_late_reset(
        &self,
        id: i64,
        code: &str,
        link: &str,
    ) -> Result<bool, StoreError> {
        let keeps = self.keeps_ledger();
        run!(self, |c, pg| {
            let mut tx = c.begin().await?;
            lock_ledger!(tx, pg, keeps).await?;
            let changed = sqlx::query(
                "UPDATE rotations SET status = 'succeeded', new_invite_code = $2, new_invite_link = $3,
                 finished_at = $4,
                 error = COALESCE(error || '; ', '') || 'its reset landed after the row was settled elsewhere; the old code may have changed meanwhile'
                 WHERE id = $1 AND new_invite_code IS NULL AND status IN ('failed', 'unknown')",
            )
            .bind(id)
            .bind(code)
            .bind(link)
            .bind(timestamp(Utc::now()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                append_ledger!(tx, pg, keeps, &[id]).await?;
            }
            tx.commit().await.map(|()| changed > 0)
        })
    }

    /// The latest rotation of the group `jid` before the row `id` that made a
    /// reset call, if any: the last one that may have changed the link.
    pub async fn previous_reset(&self, jid: &str, id: i64) -> Result<Option<Rotation>, StoreError> {
        on!(self, |c, _pg| sqlx::query_as(concat!(
            select_rotation!(),
            " WHERE group_jid = $1 AND id < $2 AND attempts > 0 ORDER BY id DESC LIMIT 1"
        ))
        .bind(jid)
        .bind(id)
        .fetch_optional(c)
        .await)
        .map_err(|e| self.err(e))
    }

    /// Settles an `unknown` row once a later read has told what happened,
    /// keeping its `finished_at` (when the code was issued) and appending
    /// `note` to its error. Does nothing to a row no longer `unknown`.
    pub async fn resolve(
        &self,
        id: i64,
        status: Status,
        new_code: Option<&str>,
        new_link: Option<&str>,
        note: &str,
    ) -> Result<(), StoreError> {
        let keeps = self.keeps_ledger();
        run!(self, |c, pg| {
            let mut tx = c.begin().await?;
            lock_ledger!(tx, pg, keeps).await?;
            let changed = sqlx::query(
                "UPDATE rotations SET status = $1, new_invite_code = $2, new_invite_link = $3,
                 error = COALESCE(error || '; ', '') || $4 WHERE id = $5 AND status = 'unknown'",
            )
            .bind(status.as_str())
            .bind(new_code)
            .bind(new_link)
            .bind(note)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                append_ledger!(tx, pg, keeps, &[id]).await?;
            }
            tx.commit().await
        })
    }

    /// Appends one API call to the call log.
    pub async fn log_call(&self, call: &CallRecord<'_>) -> Result<(), StoreError> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO api_calls (rotation_id, endpoint, started_at, duration_ms, http_status,
                     outcome, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(call.rotation_id)
            .bind(call.endpoint)
            .bind(timestamp(call.started_at))
            .bind(i64::try_from(call.duration.as_millis()).unwrap_or(i64::MAX))
            .bind(call.http_status.map(i64::from))
            .bind(call.outcome)
            .bind(call.error.as_deref())
        )
        .map(drop)
    }

    /// The newest code the history says was issued for the group `jid`, if
    /// any: the one issued last (by `finished_at`: a link changed outside
    /// while a rotation was in flight is recorded after it but happened
    /// before it).
    pub async fn last_issued_code(&self, jid: &str) -> Result<Option<String>, StoreError> {
        on!(self, |c, _pg| sqlx::query_scalar(
            "SELECT new_invite_code FROM rotations
             WHERE group_jid = $1 AND new_invite_code IS NOT NULL
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(jid)
        .fetch_optional(c)
        .await)
        .map_err(|e| self.err(e))
    }

    /// One rotation by id.
    pub async fn rotation(&self, id: i64) -> Result<Option<Rotation>, StoreError> {
        on!(self, |c, _pg| sqlx::query_as(concat!(
            select_rotation!(),
            " WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(c)
        .await)
        .map_err(|e| self.err(e))
    }
}

/// [`Store::begin`]'s insert of the pending row, fenced by the lease
/// (`$10`, `$9`).
macro_rules! begin_sql {
    ($d:ident) => {
        concat!(
            "INSERT INTO rotations (group_name, group_jid, instance, trigger, scheduled_for,
                 started_at, status, owner, event_id, term)
             SELECT $1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9
             WHERE ",
            fence!($d, "$10", "$9"),
            "
             ON CONFLICT (group_jid) WHERE status = 'pending' DO NOTHING
             RETURNING id"
        )
    };
}
use begin_sql;

/// [`Store::record_attempt`]'s update, fenced by the lease (`$4`, `$5`).
macro_rules! attempt_sql {
    ($d:ident) => {
        concat!(
            "UPDATE rotations SET attempts = $1, last_reset_at = $2 WHERE id = $3
             AND status = 'pending' AND ",
            fence!($d, "$4", "$5")
        )
    };
}
use attempt_sql;
