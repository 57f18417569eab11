//! The ledger's SQL (see [`crate::audit`]): entries appended in the same
//! transaction as the change they record, the checkpoints, and the reads
//! that `audit verify` and `audit export` stream.

use super::{
    Rotation, Stamp, Store, StoreError, rotation_columns, run, select_rotation, timestamp,
};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::Connection;

/// Appends the ledger entries of the rotations `ids`, as their rows now
/// are, inside the transaction `$tx` (a pending row has nothing settled
/// to enter and is skipped). On PostgreSQL an advisory lock held to the
/// end of the transaction keeps appends in one line. A `Result<(),
/// sqlx::Error>`.
macro_rules! append_ledger {
    ($tx:expr, $pg:expr, $ids:expr) => {
        async {
            if !$crate::store::ledger::enabled() {
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
                $head.unwrap_or((0, $crate::audit::entry::GENESIS.to_owned()));
            let now = chrono::Utc::now();
            let at = $crate::store::timestamp_text(now);
            let rows: &[$crate::store::Rotation] = $rows;
            for row in rows.iter().filter(|r| r.status != $crate::store::Status::Pending) {
                seq += 1;
                let line = $crate::audit::entry::Entry::of(row, seq, &prev, &at)
                    .line()
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                let digest = $crate::audit::entry::hash(&line);
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

/// Serialises appends on PostgreSQL, to the end of the transaction.
pub(super) const LOCK: &str = "SELECT pg_advisory_xact_lock(7264014)";
/// The ledger's head: its last `seq` and `hash`.
pub(super) const HEAD: &str = "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1";

pub(super) use append_ledger;

/// Whether settlements are entered in the ledger: always, except in a
/// benchmark that measures what entering costs (`test-support` only).
pub(crate) fn enabled() -> bool {
    #[cfg(feature = "test-support")]
    {
        !BENCH_WITHOUT_LEDGER.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "test-support"))]
    {
        true
    }
}

#[cfg(feature = "test-support")]
static BENCH_WITHOUT_LEDGER: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// For `cargo bench --bench ledger` only: settle without entering the
/// ledger (`true`), to measure the rotation path with and without it.
#[cfg(feature = "test-support")]
pub fn bench_without_ledger(off: bool) {
    BENCH_WITHOUT_LEDGER.store(off, std::sync::atomic::Ordering::Relaxed);
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
    /// Enters, once, the rotations settled before the ledger existed (the
    /// first open after migration 0012): returns how many. An emptied
    /// ledger is never refilled from the table.
    pub async fn backfill_ledger(&self) -> Result<u64, StoreError> {
        run!(self, |c, pg| {
            // A read first: an open beside another writer must not wait for
            // its lock when there is nothing to enter.
            let done: i64 = sqlx::query_scalar("SELECT backfilled FROM ledger_start WHERE id = 1")
                .fetch_one(&mut *c)
                .await?;
            if done != 0 {
                return Ok(0);
            }
            let mut tx = c.begin().await?;
            let first = sqlx::query(
                "UPDATE ledger_start SET backfilled = 1 WHERE id = 1 AND backfilled = 0",
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
            append_ledger!(tx, pg, &ids).await?;
            tx.commit().await?;
            Ok(ids.len() as u64)
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
    pub async fn each_ledger_row(
        &self,
        from: i64,
        mut each: impl FnMut(LedgerRow) -> bool,
    ) -> Result<(), StoreError> {
        run!(self, |c, _pg| {
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
        run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT seq FROM ledger WHERE at >= $1 ORDER BY at, seq LIMIT 1"
        )
        .bind(timestamp(since))
        .fetch_optional(c)
        .await)
    }
}
