//! The history database: the only module that speaks SQL.
//!
//! SQLite in WAL mode with `synchronous=FULL`, so a rotation the store has
//! acknowledged survives a power cut; a busy timeout so that a `rotate` beside
//! the daemon waits instead of failing. The file is created 0600 with its
//! directory: it holds live invite codes.

mod audit;
mod backend;
mod budget;
mod daemon;
mod events;
mod files;
mod lease;
mod model;
mod outbox;
mod outside;
mod prune;

pub use events::{CallProgress, EventRotation, EventSource, NewEvent, StoredEvent};
pub use files::{LockError, preflight};
pub use lease::{Fence, Fencing, LeaseState, NodeRow};
pub use model::{
    CallRecord, Cause, GroupRecord, HistoryQuery, LastRotation, Leftover, NewRotation, Rotation,
    Settlement, Status, Trigger,
};
pub use outbox::{Attempt, Delivery, Recipient};
pub use outside::OutsideChange;
pub use prune::Pruned;

use crate::config::{Database, PostgresSettings};
pub use backend::{At, Stamp, text as timestamp_text};
use backend::{Db, exec, on, run};
use chrono::{DateTime, Utc};
use sqlx::ConnectOptions;
use sqlx::Connection;
use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
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
    /// This node does not hold the lease (any more): it begins nothing.
    Fenced,
    /// The due time was already served (by another node): nothing written.
    Served,
}

/// A store failure; the message names the database (a SQLite file, or a
/// PostgreSQL database without its password), and the driver's error is
/// kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("history database {name}: {message}")]
pub struct StoreError {
    name: String,
    message: String,
    #[source]
    source: Option<sqlx::Error>,
}

impl StoreError {
    fn new(name: &str, message: impl Into<String>) -> StoreError {
        StoreError {
            name: name.to_owned(),
            message: message.into(),
            source: None,
        }
    }

    /// Whether the database refused a write for the unique constraint
    /// (index) `name`.
    fn violates(&self, name: &str) -> bool {
        matches!(&self.source, Some(sqlx::Error::Database(e)) if e.constraint() == Some(name))
    }
}

/// The history database. Cloning is shallow: clones share the connection
/// (SQLite) or the pool (PostgreSQL).
#[derive(Clone)]
pub struct Store {
    db: Arc<Db>,
    /// The SQLite file; `None` on PostgreSQL.
    path: Option<PathBuf>,
    /// How errors and logs name the database.
    name: Arc<str>,
    /// What writes that begin work check (shared by clones: the lease
    /// keeper sets it as the node becomes active or stands by).
    fence: Arc<std::sync::RwLock<Fencing>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

/// A time as the store binds it (see [`At`]).
pub fn timestamp(t: DateTime<Utc>) -> At {
    At(t)
}

impl Store {
    /// Opens (creating if missing, with its directory) the SQLite database
    /// at `path`, makes it 0600 and applies the migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, BUSY_TIMEOUT).await
    }

    /// As [`Store::open`], waiting at most `busy_timeout` for another writer.
    pub async fn open_with(path: &Path, busy_timeout: Duration) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        let fail = |message: String| StoreError::new(&name, message);
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
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut conn)
            .await
            .map_err(|e| fail(format!("migration failed: {e}")))?;
        drop(migrating);
        // SQLite gives the WAL files the database's mode; make sure of it.
        files::restrict_companions(&real);
        Ok(Store {
            db: Arc::new(Db::Sqlite(Mutex::new(conn))),
            path: Some(path.to_owned()),
            name: name.into(),
            fence: Arc::default(),
        })
    }

    /// Opens the configured database for a writer (`run`, `rotate`):
    /// a SQLite file as [`Store::open`] does, or a PostgreSQL database,
    /// migrated under the migrator's lock.
    pub async fn connect(database: &Database) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => Store::open(path).await,
            Database::Postgres(pg) => Store::open_postgres(pg, false).await,
        }
    }

    /// Opens the configured database for a reader (`history`, `status`):
    /// a SQLite file read-only, or a PostgreSQL database in read-only
    /// transactions, neither migrated.
    pub async fn connect_read_only(database: &Database) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => Store::open_read_only(path).await,
            Database::Postgres(pg) => Store::open_postgres(pg, true).await,
        }
    }

    async fn open_postgres(
        settings: &PostgresSettings,
        read_only: bool,
    ) -> Result<Store, StoreError> {
        let name = settings.url.to_string();
        let pool = backend::postgres_pool(settings, read_only)
            .await
            .map_err(|e| StoreError::new(&name, e))?;
        if !read_only {
            // sqlx's migrator holds an advisory lock while it applies: two
            // nodes starting at once apply each migration once.
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(|e| StoreError::new(&name, format!("migration failed: {e}")))?;
        }
        Ok(Store {
            db: Arc::new(Db::Postgres(pool)),
            path: None,
            name: name.into(),
            fence: Arc::default(),
        })
    }

    /// Opens an existing SQLite database read-only, for `history`: no
    /// migration, no write.
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT);
        let conn = options
            .connect()
            .await
            .map_err(|e| StoreError::new(&name, e.to_string()))?;
        Ok(Store {
            db: Arc::new(Db::Sqlite(Mutex::new(conn))),
            path: Some(path.to_owned()),
            name: name.into(),
            fence: Arc::default(),
        })
    }

    /// Whether the database holds a history at all (a file just created,
    /// empty, holds none yet; read-only stores are never migrated).
    pub async fn has_history(&self) -> Result<bool, StoreError> {
        let n: i64 = run!(self, |c, pg| {
            let sql = if pg {
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = 'rotations'"
            } else {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'rotations'"
            };
            sqlx::query_scalar(sql).fetch_one(c).await
        })?;
        Ok(n > 0)
    }

    /// The SQLite file; `None` on PostgreSQL.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How the store names its database (a path, or a PostgreSQL URL
    /// without its password).
    pub fn name(&self) -> &str {
        &self.name
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
            return Err(StoreError::new(
                &self.name,
                format!("database or disk is full (injected at failpoint {point})"),
            ));
        }
        Ok(())
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        StoreError {
            name: self.name.to_string(),
            message: e.to_string(),
            source: Some(e),
        }
    }

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
                "INSERT INTO rotations (group_name, group_jid, instance, trigger, scheduled_for,
                     started_at, status, owner, event_id, term)
                 SELECT $1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9
                 WHERE $10::text IS NULL OR EXISTS (SELECT 1 FROM lease WHERE id = 1
                     AND holder = $10 AND term = $9 AND expires_at > clock_timestamp())
                 ON CONFLICT (group_jid) WHERE status = 'pending' DO NOTHING
                 RETURNING id"
            } else {
                "INSERT INTO rotations (group_name, group_jid, instance, trigger, scheduled_for,
                     started_at, status, owner, event_id, term)
                 SELECT $1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9
                 WHERE $10 IS NULL OR $10 IS NOT NULL
                 ON CONFLICT (group_jid) WHERE status = 'pending' DO NOTHING
                 RETURNING id"
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
            Ok(match pending {
                Some((since, owner)) => Begun::Busy {
                    since: since.0,
                    owner,
                },
                // No row pending: the lease was not ours.
                None if fence.is_some() => Begun::Fenced,
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
        exec!(
            self,
            sqlx::query("UPDATE rotations SET old_invite_code = $1 WHERE id = $2")
                .bind(code.map(str::to_owned))
                .bind(id)
        )
        .map(drop)
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
            let sql = if pg {
                "UPDATE rotations SET attempts = $1, last_reset_at = $2 WHERE id = $3
                 AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM lease WHERE id = 1
                     AND holder = $4 AND term = $5 AND expires_at > clock_timestamp()))"
            } else {
                "UPDATE rotations SET attempts = $1, last_reset_at = $2 WHERE id = $3
                 AND ($4 IS NULL OR $5 IS NULL OR true)"
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
        if changed == 0 && fence.is_some() {
            return Err(self.lost_lease());
        }
        Ok(())
    }

    fn lost_lease(&self) -> StoreError {
        StoreError::new(
            &self.name,
            "this node no longer holds the lease: no reset is sent (the active node settles the rotation from the live link)",
        )
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
        let changed = run!(self, |c, _pg| {
            let mut tx = c.begin().await?;
            let changed = sqlx::query(
                "UPDATE rotations SET status = $1, attempts = $2, new_invite_code = $3,
                 new_invite_link = $4, error = $5, finished_at = $6 WHERE id = $7 AND status = $8",
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
            .await?
            .rows_affected();
            crate::failpoint::crash("store::settle::before_commit");
            tx.commit().await.map(|()| changed)
        })?;
        Ok(changed > 0)
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
        exec!(
            self,
            sqlx::query(
                "UPDATE rotations SET status = $1, new_invite_code = $2, new_invite_link = $3,
                 error = COALESCE(error || '; ', '') || $4 WHERE id = $5 AND status = 'unknown'",
            )
            .bind(status.as_str())
            .bind(new_code)
            .bind(new_link)
            .bind(note)
            .bind(id)
        )
        .map(drop)
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

    /// `values` as one JSON array, bound as one parameter (`json_each` on
    /// SQLite, `json_array_elements_text` on PostgreSQL).
    fn json<T: serde::Serialize + ?Sized>(&self, values: &T) -> Result<String, StoreError> {
        serde_json::to_string(values).map_err(|e| StoreError::new(&self.name, e.to_string()))
    }

    /// The call log of one rotation, in order.
    pub async fn calls_of(
        &self,
        rotation_id: i64,
    ) -> Result<Vec<(String, Option<i64>, String)>, StoreError> {
        on!(self, |c, _pg| sqlx::query_as(
            "SELECT endpoint, http_status, outcome FROM api_calls WHERE rotation_id = $1 ORDER BY id"
        )
        .bind(rotation_id)
        .fetch_all(c)
        .await)
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

/// `(group, time)` rows as a map; a time that does not parse (only a
/// hand-edited database has one) is left out.
fn times_by_group(rows: Vec<(String, Stamp)>) -> HashMap<String, DateTime<Utc>> {
    rows.into_iter()
        .filter_map(|(group, t)| Some((group, t.time()?)))
        .collect()
}

#[cfg(test)]
mod tests;
