//! The ledger's SQL (see [`crate::audit`]): entries appended in the same
//! transaction as the change they record, the checkpoints, and the reads
//! that `audit verify` and `audit export` stream.

use super::{
    Rotation, Stamp, Store, StoreError, rotation_columns, run, select_rotation, timestamp,
};
use crate::store::entry::Facts;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::Connection;

/// On PostgreSQL, takes the ledger's advisory lock, held to the end of the
/// transaction `$tx`: every transaction that appends takes it as its
/// first statement, before any row lock, so that two of them never wait
/// on each other in opposite orders. A no-op on SQLite (one writer).
macro_rules! lock_ledger {
    ($tx:expr, $pg:expr, $keeps:expr) => {
        async {
            if $pg && $keeps {
                sqlx::query($crate::store::ledger::LOCK)
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
    };
}
pub(super) use lock_ledger;

/// Appends the ledger entries of the rotations `ids`, as their rows now
/// are, inside the transaction `$tx` (a pending row has nothing settled
/// to enter and is skipped). The advisory lock is taken again (it nests):
/// the caller has taken it first (see [`lock_ledger!`]). A `Result<(),
/// sqlx::Error>`.
macro_rules! append_ledger {
    ($tx:expr, $pg:expr, $keeps:expr, $ids:expr) => {
        async {
            if !$keeps {
                return Ok::<(), sqlx::Error>(());
            }
            if $pg {
                sqlx::query($crate::store::ledger::LOCK)
                    .execute(&mut *$tx)
                    .await?;
            }
            let head: Option<(i64, String)> = sqlx::query_as($crate::store::ledger::HEAD)
                .fetch_optional(&mut *$tx)
                .await?;
            let mut rows = Vec::new();
            for &id in $ids {
                let row: Option<$crate::store::Rotation> =
                    sqlx::query_as($crate::store::SELECT_ROTATION_BY_ID)
                        .bind(id)
                        .fetch_optional(&mut *$tx)
                        .await?;
                rows.extend(row);
            }
            $crate::store::ledger::insert_entries!($tx, head, &rows).await
        }
    };
}

/// Enters `$rows` (settled ones) after the head `$head` (`Option<(seq,
/// hash)>`, read under the append lock), inside the transaction `$tx`.
macro_rules! insert_entries {
    ($tx:expr, $head:expr, $rows:expr) => {
        async {
            let (mut seq, mut prev) =
                $head.unwrap_or((0, $crate::store::entry::GENESIS.to_owned()));
            let now = chrono::Utc::now();
            let at = $crate::store::timestamp_text(now);
            let rows: &[$crate::store::Rotation] = $rows;
            for row in rows.iter().filter(|r| r.status != $crate::store::Status::Pending) {
                seq += 1;
                let line = $crate::store::entry::Entry::of(row, seq, &prev, &at)
                    .line()
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                let digest = $crate::store::entry::hash(&line);
                sqlx::query(
                    "INSERT INTO ledger (seq, rotation_id, at, entry, hash) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(seq)
                .bind(row.id)
                .bind($crate::store::timestamp(now))
                .bind(&line)
                .bind(&digest)
                .execute(&mut *$tx)
                .await?;
                prev = digest;
            }
            Ok::<(), sqlx::Error>(())
        }
    };
}
pub(super) use insert_entries;

/// Whether the `ledger` table exists (a count), on SQLite.
pub(super) const LEDGER_EXISTS_SQLITE: &str =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'ledger'";
/// Whether the `ledger` table exists (a count), on PostgreSQL.
pub(super) const LEDGER_EXISTS_PG: &str = "SELECT COUNT(*) FROM information_schema.tables
     WHERE table_schema = current_schema() AND table_name = 'ledger'";

/// Serialises appends on PostgreSQL, to the end of the transaction.
pub(super) const LOCK: &str = "SELECT pg_advisory_xact_lock(7264014)";
/// The ledger's head: its last `seq` and `hash`.
pub(super) const HEAD: &str = "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1";

pub(super) use append_ledger;

/// Rows per batch of the SQLite passes over the whole history.
const BATCH: i64 = 4096;

/// A row of `rotations`, the columns of a [`Rotation`] in order (the last,
/// `event_id`, ignored), its times as `T`: text from SQLite's `json_array`
/// (see [`Store::each_rotation_facts`]), [`Stamp`]s from PostgreSQL.
type RowOf<T> = (
    i64,
    String,
    String,
    String,
    String,
    Option<T>,
    T,
    Option<T>,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The facts of a row, borrowed from it, and whether it is pending.
fn facts_of<T: std::ops::Deref<Target = str>>(r: &RowOf<T>) -> (bool, Facts<'_>) {
    let facts = Facts {
        rotation: r.0,
        group: &r.1,
        jid: &r.2,
        instance: &r.3,
        trigger: &r.4,
        due: r.5.as_deref(),
        started: &r.6,
        finished: r.7.as_deref(),
        status: &r.8,
        attempts: r.9,
        old_code: r.10.as_deref(),
        new_code: r.11.as_deref(),
        new_link: r.12.as_deref(),
        error: r.13.as_deref(),
    };
    (r.8 == "pending", facts)
}

/// The ledger rows of a batch framed by lengths (see
/// [`Store::each_ledger_row`]), in their order; `None` if it does not parse.
fn framed(mut text: &str) -> Option<Vec<LedgerRow>> {
    let mut rows = Vec::new();
    while !text.is_empty() {
        let mut number = || -> Option<i64> {
            let (n, rest) = text.split_once(',')?;
            text = rest;
            n.parse().ok()
        };
        let (seq, rotation_id) = (number()?, number()?);
        let (hash_len, entry_len) = (number()?, number()?);
        let hash_len = usize::try_from(hash_len).ok()?;
        let entry_len = usize::try_from(entry_len).ok()?;
        let hash = text.get(..hash_len)?.to_owned();
        let entry = text.get(hash_len..hash_len + entry_len)?.to_owned();
        text = text.get(hash_len + entry_len..)?;
        rows.push(LedgerRow {
            seq,
            rotation_id,
            entry,
            hash,
        });
    }
    rows.sort_unstable_by_key(|r| r.seq);
    Some(rows)
}

/// One stored ledger row, as `audit verify` reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerRow {
    /// `seq`.
    pub seq: i64,
    /// `rotation_id`.
    pub rotation_id: i64,
    /// `entry`: the canonical line.
    pub entry: String,
    /// `hash`.
    pub hash: String,
}

impl Store {
    /// Enters the rotations settled before the ledger existed: called only
    /// by the open that created the ledger (applied migration 0012), so
    /// that nothing stored in the database re-arms it. Returns how many.
    /// Never when the ledger holds an entry or a checkpoint: an emptied
    /// ledger is `audit verify`'s to report, never refilled from the table.
    pub(super) async fn backfill_ledger(&self) -> Result<u64, StoreError> {
        let keeps = self.keeps_ledger();
        run!(self, |c, pg| {
            let mut tx = c.begin().await?;
            lock_ledger!(tx, pg, keeps).await?;
            // Once, even when two nodes created the ledger at once.
            let first = sqlx::query(
                "UPDATE ledger_start SET backfilled = 1 WHERE id = 1 AND backfilled = 0
                 AND NOT EXISTS (SELECT 1 FROM ledger) AND NOT EXISTS (SELECT 1 FROM checkpoints)",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if first == 0 {
                return Ok(0);
            }
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM rotations WHERE status != 'pending' ORDER BY id",
            )
            .fetch_all(&mut *tx)
            .await?;
            append_ledger!(tx, pg, keeps, &ids).await?;
            tx.commit().await?;
            Ok(ids.len() as u64)
        })
    }

    /// Whether the database has the ledger's tables (a history from before
    /// the ledger, not migrated yet, has not).
    pub async fn has_ledger(&self) -> Result<bool, StoreError> {
        run!(self, |c, pg| {
            let sql = if pg {
                LEDGER_EXISTS_PG
            } else {
                LEDGER_EXISTS_SQLITE
            };
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(c)
                .await
                .map(|n| n > 0)
        })
    }

    /// The ledger's head: its last `seq` and `hash`; `None` while empty.
    pub async fn ledger_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        run!(self, |c, _pg| sqlx::query_as(
            "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1"
        )
        .fetch_optional(c)
        .await)
    }

    /// Stores a signed checkpoint of `(seq, hash)`.
    pub async fn record_checkpoint(
        &self,
        seq: i64,
        hash: &str,
        at: DateTime<Utc>,
        line: &str,
    ) -> Result<(), StoreError> {
        run!(self, |c, _pg| sqlx::query(
            "INSERT INTO checkpoints (seq, hash, signed_at, line) VALUES ($1, $2, $3, $4)"
        )
        .bind(seq)
        .bind(hash)
        .bind(timestamp(at))
        .bind(line)
        .execute(c)
        .await
        .map(drop))
    }

    /// The stored checkpoints' lines, oldest first.
    pub async fn checkpoint_lines(&self) -> Result<Vec<String>, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT line FROM checkpoints ORDER BY id"
        )
        .fetch_all(c)
        .await)
    }

    /// The newest `n` stored checkpoints' lines, newest first.
    pub async fn recent_checkpoint_lines(&self, n: i64) -> Result<Vec<String>, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT line FROM checkpoints ORDER BY id DESC LIMIT $1"
        )
        .bind(n)
        .fetch_all(c)
        .await)
    }

    /// The last stored checkpoint: when it was signed and its line.
    pub async fn last_checkpoint(&self) -> Result<Option<(Stamp, String)>, StoreError> {
        run!(self, |c, _pg| sqlx::query_as(
            "SELECT signed_at, line FROM checkpoints ORDER BY id DESC LIMIT 1"
        )
        .fetch_optional(c)
        .await)
    }

    /// Calls `each` with the ledger's rows from `from` on, in order, while
    /// it returns `true`: streamed, a history of millions is never held.
    /// On SQLite, in batches of [`BATCH`] rows, each one JSON array built by
    /// SQLite: handing rows over one by one from the driver's thread costs
    /// more than everything else `audit verify` does with them.
    pub async fn each_ledger_row(
        &self,
        from: i64,
        mut each: impl FnMut(LedgerRow) -> bool,
    ) -> Result<(), StoreError> {
        run!(self, |c, pg| {
            if !pg {
                let mut from = from;
                loop {
                    // Each row framed by lengths, so that no text needs
                    // escaping: `seq,rotation_id,hash bytes,entry bytes,`
                    // then the hash and the entry.
                    let batch: Option<String> = sqlx::query_scalar(
                        "SELECT group_concat(seq || ',' || rotation_id || ',' || length(CAST(hash AS BLOB))
                             || ',' || length(CAST(entry AS BLOB)) || ',' || hash || entry, '')
                         FROM (SELECT seq, rotation_id, COALESCE(entry, '') AS entry,
                                      COALESCE(hash, '') AS hash
                               FROM ledger WHERE seq >= $1 ORDER BY seq LIMIT $2)",
                    )
                    .bind(from)
                    .bind(BATCH)
                    .fetch_one(&mut *c)
                    .await?;
                    let rows = framed(batch.as_deref().unwrap_or_default()).ok_or_else(|| {
                        sqlx::Error::Decode("a ledger batch does not parse".into())
                    })?;
                    let full = rows.len() as i64 == BATCH;
                    for row in rows {
                        from = row.seq + 1;
                        if !each(row) {
                            return Ok(());
                        }
                    }
                    if !full {
                        return Ok(());
                    }
                }
            }
            let mut rows = sqlx::query_as::<_, LedgerRow>(
                "SELECT seq, rotation_id, entry, hash FROM ledger WHERE seq >= $1 ORDER BY seq",
            )
            .bind(from)
            .fetch(c);
            while let Some(row) = rows.try_next().await? {
                if !each(row) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Calls `each` with every rotation, by id, while it returns `true`.
    pub async fn each_rotation(
        &self,
        mut each: impl FnMut(Rotation) -> bool,
    ) -> Result<(), StoreError> {
        run!(self, |c, _pg| {
            let mut rows =
                sqlx::query_as::<_, Rotation>(concat!(select_rotation!(), " ORDER BY id")).fetch(c);
            while let Some(row) = rows.try_next().await? {
                if !each(row) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Calls `each` with the facts of every rotation, by id, and whether it
    /// is pending, while it returns `true`. On SQLite in batches of
    /// [`BATCH`] (as [`Store::each_ledger_row`]); on PostgreSQL streamed,
    /// the text borrowed from the driver's row.
    pub async fn each_rotation_facts(
        &self,
        mut each: impl FnMut(bool, Facts<'_>) -> bool,
    ) -> Result<(), StoreError> {
        run!(self, |c, pg| {
            if !pg {
                let mut after = i64::MIN;
                loop {
                    let batch: String = sqlx::query_scalar(concat!(
                        "SELECT json_group_array(json_array(",
                        rotation_columns!(),
                        ")) FROM (SELECT ",
                        rotation_columns!(),
                        " FROM rotations WHERE id > $1 ORDER BY id LIMIT $2)"
                    ))
                    .bind(after)
                    .bind(BATCH)
                    .fetch_one(&mut *c)
                    .await?;
                    let mut rows: Vec<RowOf<String>> =
                        serde_json::from_str(&batch).map_err(|e| sqlx::Error::Decode(e.into()))?;
                    // In id order already (the subquery's); made sure of.
                    rows.sort_unstable_by_key(|r| r.0);
                    let full = rows.len() as i64 == BATCH;
                    for r in &rows {
                        after = r.0;
                        let (pending, facts) = facts_of(r);
                        if !each(pending, facts) {
                            return Ok(());
                        }
                    }
                    if !full {
                        return Ok(());
                    }
                }
            }
            let mut rows =
                sqlx::query_as::<_, RowOf<Stamp>>(concat!(select_rotation!(), " ORDER BY id"))
                    .fetch(c);
            while let Some(row) = rows.try_next().await? {
                let (pending, facts) = facts_of(&row);
                if !each(pending, facts) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// The ledger entry `seq`'s line.
    pub async fn ledger_entry(&self, seq: i64) -> Result<Option<String>, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT entry FROM ledger WHERE seq = $1"
        )
        .bind(seq)
        .fetch_optional(c)
        .await)
    }

    /// The first entry appended at or after `since`.
    pub async fn ledger_seq_since(&self, since: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        run!(self, |c, _pg| sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(seq) FROM ledger WHERE at >= $1"
        )
        .bind(timestamp(since))
        .fetch_one(c)
        .await)
    }
}
