//! The history database: the only module that speaks SQL.
//!
//! SQLite in WAL mode with `synchronous=FULL`, so a rotation the store has
//! acknowledged survives a power cut; a busy timeout so that a `rotate` beside
//! the daemon waits instead of failing. The file is created 0600 with its
//! directory: it holds live invite codes.

mod audit;
mod budget;
mod daemon;
mod events;
mod files;
mod model;
mod outbox;
mod outside;
mod prune;

pub use events::{CallProgress, EventRotation, EventSource, NewEvent, StoredEvent};
pub use files::{LockError, preflight};
pub use model::{
    CallRecord, Cause, GroupRecord, HistoryQuery, LastRotation, Leftover, NewRotation, Rotation,
    Settlement, Status, Trigger,
};
pub use outbox::{Attempt, Delivery, Recipient};
pub use outside::OutsideChange;
pub use prune::Pruned;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long a write waits for another writer (a `rotate` beside the daemon).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening waits for another process to finish migrating the same
/// database (a first start takes milliseconds; this long means it is stuck).
const MIGRATION_PATIENCE: Duration = Duration::from_secs(60);

/// What [`Store::begin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// The pending row was written, with this id.
    Started(i64),
    /// Another rotation of the group is pending (started at `since`); nothing written.
    Busy {
        /// `started_at` of the pending row.
        since: String,
        /// The process that wrote it (see `owner`: boot, pid and start time).
        owner: Option<String>,
    },
}

/// A store failure; the message names the database file.
#[derive(Debug, thiserror::Error)]
#[error("history database {path}: {message}")]
pub struct StoreError {
    path: PathBuf,
    message: String,
}

/// The history database. Cloning is shallow: clones share one connection.
///
/// One connection, not a pool: SQLite takes one writer at a time anyway, and a
/// connection sets no timers, so the store also works under tokio's paused
/// test clock (a pool's acquire timeout fires there while a query runs).
/// Callers queue on a fair mutex.
#[derive(Clone, Debug)]
pub struct Store {
    conn: Arc<Mutex<SqliteConnection>>,
    path: PathBuf,
}

/// Formats a time as the database stores it: RFC 3339, UTC, milliseconds.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Store {
    /// Opens (creating if missing, with its directory) the database at `path`,
    /// makes it 0600 and applies the migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, BUSY_TIMEOUT).await
    }

    /// As [`Store::open`], waiting at most `busy_timeout` for another writer.
    pub async fn open_with(path: &Path, busy_timeout: Duration) -> Result<Store, StoreError> {
        let fail = |message: String| StoreError {
            path: path.to_owned(),
            message,
        };
        let new = files::prepare(path)
            .map_err(|e| fail(format!("cannot create it (directory 0700, file 0600): {e}")))?;
        let real = files::canonical(path).map_err(|e| fail(e.to_string()))?;
        let mut options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        if new {
            // Only before the first table (and a no-op later that would still
            // wait for a writer): pruned pages can then be given back (see
            // `release_free_pages`).
            options = options.auto_vacuum(SqliteAutoVacuum::Incremental);
        }
        // Two processes starting on a new database (the daemon, a `rotate`)
        // would both find a migration unapplied and both apply it: one at a
        // time, under a lock beside the database (not on the database file
        // itself: closing any descriptor of that file would drop SQLite's own
        // locks in this process).
        let migrating = files::lock_waiting(
            &real,
            ".migrate.lock",
            "migrating the history database",
            MIGRATION_PATIENCE,
        )
        .await
        .map_err(|e| fail(format!("cannot lock for migrations: {e}")))?;
        let mut conn = options.connect().await.map_err(|e| fail(e.to_string()))?;
        sqlx::migrate!("./migrations")
            .run(&mut conn)
            .await
            .map_err(|e| fail(format!("migration failed: {e}")))?;
        drop(migrating);
        // SQLite gives the WAL files the database's mode; make sure of it.
        files::restrict_companions(&real);
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Opens an existing database read-only, for `history`: no migration, no write.
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT);
        let conn = options.connect().await.map_err(|e| StoreError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Whether the database holds a history at all (a file just created,
    /// empty, holds none yet; read-only stores are never migrated).
    pub async fn has_history(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'rotations'",
        )
        .fetch_one(&mut *self.conn.lock().await)
        .await
        .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the daemon's lock of the database at `path`: one daemon per
    /// database, whatever name (symlink) each was given. Creates the
    /// directory (0700) and the database file (0600) if missing, and the lock
    /// file beside the database's real location (0600). Held until the file
    /// is dropped.
    pub fn lock_daemon(path: &Path) -> Result<std::fs::File, LockError> {
        files::prepare(path).map_err(|e| LockError::Io(path.to_owned(), e))?;
        let real = files::canonical(path).map_err(|e| LockError::Io(path.to_owned(), e))?;
        files::try_lock(&real, ".daemon.lock")
    }

    /// The error a failpoint injects for a write (see [`crate::failpoint`]).
    fn injected_fault(&self, point: &str) -> Result<(), StoreError> {
        if crate::failpoint::fails(point) {
            return Err(StoreError {
                path: self.path.clone(),
                message: format!("database or disk is full (injected at failpoint {point})"),
            });
        }
        Ok(())
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Writes the `pending` row of a rotation about to start and returns its
    /// id. Nothing may be sent to the API before this has returned.
    ///
    /// A group has at most one pending rotation across every process using the
    /// database: if one is pending (a daemon and a `rotate` racing), nothing is
    /// written and [`Begun::Busy`] says since when. The check and the insert are
    /// one statement, so two processes cannot both pass it.
    pub async fn begin(&self, new: &NewRotation<'_>) -> Result<Begun, StoreError> {
        self.injected_fault("store::begin")?;
        let mut conn = self.conn.lock().await;
        // `fetch_all`, not `fetch_optional`, with every `RETURNING`: the
        // statement must run to its end, where SQLite commits it. Stopping at
        // the first row leaves the commit to the statement's reset, whose
        // error (a full disk) is lost: the id would come back for a row that
        // was rolled back, and a reset would follow with no record.
        let ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO rotations (group_name, group_jid, instance, trigger, scheduled_for, started_at, status, owner, event_id)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8
             WHERE NOT EXISTS (SELECT 1 FROM rotations WHERE group_jid = ?2 AND status = 'pending')
             RETURNING id",
        )
        .bind(new.group_name)
        .bind(new.group_jid)
        .bind(new.instance)
        .bind(new.cause.trigger.as_str())
        .bind(new.cause.scheduled_for.map(timestamp))
        .bind(timestamp(Utc::now()))
        .bind(crate::owner::current())
        .bind(new.cause.event_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        if let Some(&id) = ids.first() {
            return Ok(Begun::Started(id));
        }
        let pending: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT started_at, owner FROM rotations WHERE group_jid = ? AND status = 'pending'
             ORDER BY id LIMIT 1",
        )
        .bind(new.group_jid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        // Settled in the meantime: the caller may simply try again.
        let (since, owner) = pending.unwrap_or_default();
        Ok(Begun::Busy { since, owner })
    }

    /// Records the code the rotation is about to revoke.
    pub async fn record_old_code(&self, id: i64, code: Option<&str>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE rotations SET old_invite_code = ? WHERE id = ?")
                .bind(code.map(str::to_owned))
                .bind(id),
        )
        .await
    }

    /// Records that reset call number `attempts` is about to be made, and
    /// when. Called before each reset, so a crash leaves the count of calls
    /// possibly made and the time of the latest.
    pub async fn record_attempt(&self, id: i64, attempts: u32) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE rotations SET attempts = ?, last_reset_at = ? WHERE id = ?")
                .bind(i64::from(attempts))
                .bind(timestamp(Utc::now()))
                .bind(id),
        )
        .await
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
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await.map_err(|e| self.err(e))?;
        let changed = sqlx::query(
            "UPDATE rotations SET status = ?, attempts = ?, new_invite_code = ?, new_invite_link = ?,
             error = ?, finished_at = ? WHERE id = ? AND status = ?",
        )
        .bind(s.status.as_str())
        .bind(i64::from(s.attempts))
        .bind(s.new_code.clone())
        .bind(s.new_link.clone())
        .bind(s.error.clone())
        .bind(timestamp(Utc::now()))
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected();
        crate::failpoint::crash("store::settle::before_commit");
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(changed > 0)
    }

    /// The latest rotation of the group `jid` before the row `id` that made a
    /// reset call, if any: the last one that may have changed the link.
    pub async fn previous_reset(&self, jid: &str, id: i64) -> Result<Option<Rotation>, StoreError> {
        sqlx::query_as(concat!(
            select_rotation!(),
            " WHERE group_jid = ? AND id < ? AND attempts > 0 ORDER BY id DESC LIMIT 1"
        ))
        .bind(jid.to_owned())
        .bind(id)
        .fetch_optional(&mut *self.conn.lock().await)
        .await
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
        self.execute(
            sqlx::query(
                "UPDATE rotations SET status = ?, new_invite_code = ?, new_invite_link = ?,
                 error = COALESCE(error || '; ', '') || ? WHERE id = ? AND status = 'unknown'",
            )
            .bind(status.as_str())
            .bind(new_code.map(str::to_owned))
            .bind(new_link.map(str::to_owned))
            .bind(note.to_owned())
            .bind(id),
        )
        .await
    }

    /// Appends one API call to the call log.
    pub async fn log_call(&self, call: &CallRecord<'_>) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "INSERT INTO api_calls (rotation_id, endpoint, started_at, duration_ms, http_status, outcome, error)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(call.rotation_id)
            .bind(call.endpoint)
            .bind(timestamp(call.started_at))
            .bind(i64::try_from(call.duration.as_millis()).unwrap_or(i64::MAX))
            .bind(call.http_status.map(i64::from))
            .bind(call.outcome)
            .bind(call.error.clone()),
        )
        .await
    }

    /// The newest code the history says was issued for the group `jid`, if
    /// any: the one issued last (by `finished_at`: a link changed outside
    /// while a rotation was in flight is recorded after it but happened
    /// before it).
    pub async fn last_issued_code(&self, jid: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT new_invite_code FROM rotations
             WHERE group_jid = ? AND new_invite_code IS NOT NULL
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(jid.to_owned())
        .fetch_optional(&mut *self.conn.lock().await)
        .await
        .map_err(|e| self.err(e))
    }

    /// One rotation by id.
    pub async fn rotation(&self, id: i64) -> Result<Option<Rotation>, StoreError> {
        sqlx::query_as(concat!(select_rotation!(), " WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *self.conn.lock().await)
            .await
            .map_err(|e| self.err(e))
    }

    /// `values` as one JSON array, bound as one parameter (`json_each`).
    fn json<T: serde::Serialize + ?Sized>(&self, values: &T) -> Result<String, StoreError> {
        serde_json::to_string(values).map_err(|e| StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// The call log of one rotation, in order.
    pub async fn calls_of(
        &self,
        rotation_id: i64,
    ) -> Result<Vec<(String, Option<i64>, String)>, StoreError> {
        sqlx::query_as("SELECT endpoint, http_status, outcome FROM api_calls WHERE rotation_id = ? ORDER BY id")
            .bind(rotation_id)
            .fetch_all(&mut *self.conn.lock().await)
            .await
            .map_err(|e| self.err(e))
    }

    async fn execute(
        &self,
        query: sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<(), StoreError> {
        query
            .execute(&mut *self.conn.lock().await)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

/// The columns of a [`Rotation`], as a literal so that queries stay `&'static str`.
macro_rules! rotation_columns {
    () => {
        "id, group_name, group_jid, instance, trigger, scheduled_for, started_at, finished_at, status,
         attempts, old_invite_code, new_invite_code, new_invite_link, error, event_id"
    };
}
use rotation_columns;

/// `SELECT` of a [`Rotation`] from `rotations`.
macro_rules! select_rotation {
    () => {
        concat!("SELECT ", rotation_columns!(), " FROM rotations")
    };
}
use select_rotation;

/// `(group, timestamp)` rows as a map; a timestamp that does not parse (only
/// a hand-edited database has one) is left out.
fn times_by_group(rows: Vec<(String, String)>) -> HashMap<String, DateTime<Utc>> {
    rows.into_iter()
        .filter_map(|(group, t)| Some((group, parse_timestamp(&t)?)))
        .collect()
}

/// Parses a stored timestamp.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests;
