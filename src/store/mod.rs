//! The history database: the only module that speaks SQL.
//!
//! SQLite in WAL mode with `synchronous=FULL`, so a rotation the store has
//! acknowledged survives a power cut; a busy timeout so that a `rotate` beside
//! the daemon waits instead of failing. The file is created 0600 with its
//! directory: it holds live invite codes.

mod audit;
mod backend;
mod budget;
mod codes;
mod console;
mod copy;
mod daemon;
mod dialect;
pub mod entry;
mod error;
mod events;
mod files;
mod join;
mod kinds;
mod lease;
pub(crate) mod ledger;
mod model;
mod outbox;
mod outside;
mod prune;
mod rotations;
mod settings;

pub use console::DeliveryRow;
pub use copy::Copied;
pub use error::StoreError;
pub use events::{CallProgress, EventRotation, EventSource, NewEvent, StoredEvent};
pub use files::{LockError, PreflightError, preflight};
pub use join::{JoinLink, NewJoinLink, Spent};
pub use kinds::{DeliveryState, EventKind};
pub use lease::{Fence, Fencing, LeaseState, NodeRow};
pub use ledger::LedgerRow;
use ledger::{append_ledger, insert_entries, lock_ledger};
pub use model::{
    CallRecord, Cause, GroupRecord, HistoryQuery, LastRotation, Leftover, NewRotation, Rotation,
    Settlement, Status, Trigger, UnknownName,
};
pub use outbox::{Attempt, Delivery, Recipient};
pub use outside::OutsideChange;
pub use prune::Pruned;

pub use backend::{At, Stamp, text as timestamp_text};
use backend::{Db, exec, on, run};
use chrono::{DateTime, Utc};
pub use settings::{Database, PostgresSettings};
use sqlx::ConnectOptions;
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
    /// Until when, by this process's monotonic clock, the active node's
    /// lease surely holds (set by the lease keeper at each renewal).
    lease_until: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Whether settlements are entered in the ledger: always, except in a
    /// benchmark that measures what entering costs (shared by clones).
    keeps_ledger: Arc<std::sync::atomic::AtomicBool>,
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
    /// Whether settlements are entered in the ledger (always, but in the
    /// ledger benchmark's rounds without it).
    fn keeps_ledger(&self) -> bool {
        self.keeps_ledger.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// For `cargo bench --bench ledger` only: this store and its clones
    /// settle without entering the ledger (`false`), to measure the
    /// rotation path with and without it.
    #[cfg(feature = "test-support")]
    pub fn keep_ledger_for_bench(&self, keep: bool) {
        self.keeps_ledger
            .store(keep, std::sync::atomic::Ordering::Relaxed);
    }
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
        let new = files::prepare(path).map_err(|e| {
            StoreError::open(&name, "cannot create it (directory 0700, file 0600)", e)
        })?;
        let real = files::canonical(path).map_err(|e| StoreError::open(&name, "", e))?;
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
        .map_err(|e| StoreError::open(&name, "cannot lock for migrations", e))?;
        let mut conn = options
            .connect()
            .await
            .map_err(|e| StoreError::open(&name, "", e))?;
        // Whether this open creates the ledger: only then is the history
        // from before it entered (nothing stored can ask for that again).
        let had_ledger: i64 = sqlx::query_scalar(ledger::LEDGER_EXISTS_SQLITE)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| StoreError::open(&name, "", e))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::open(&name, "migration failed", e))?;
        drop(migrating);
        // SQLite gives the WAL files the database's mode; make sure of it.
        files::restrict_companions(&real);
        let store = Store {
            db: Arc::new(Db::Sqlite(Mutex::new(conn))),
            path: Some(path.to_owned()),
            name: name.into(),
            fence: Arc::default(),
            lease_until: Arc::default(),
            keeps_ledger: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        if had_ledger == 0 {
            store.backfill_ledger().await?;
        }
        Ok(store)
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
            .map_err(|e| StoreError::open(&name, "", e))?;
        let mut had_ledger = true;
        if !read_only {
            had_ledger = sqlx::query_scalar::<_, i64>(ledger::LEDGER_EXISTS_PG)
                .fetch_one(&pool)
                .await
                .map_err(|e| StoreError::open(&name, "", e))?
                > 0;
            // sqlx's migrator holds an advisory lock while it applies: two
            // nodes starting at once apply each migration once.
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(|e| StoreError::open(&name, "migration failed", e))?;
        }
        let store = Store {
            db: Arc::new(Db::Postgres(pool)),
            path: None,
            name: name.into(),
            fence: Arc::default(),
            lease_until: Arc::default(),
            keeps_ledger: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        if !had_ledger {
            store.backfill_ledger().await?;
        }
        Ok(store)
    }

    /// Opens an existing SQLite database read-only, for `history`: no
    /// migration, no write.
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        // Readers stream millions of rows (`history`, `audit verify`): the
        // driver's worker thread hands them over 1,024 at a time rather
        // than 50, which costs a switch between threads for every 50.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .row_buffer_size(1024)
            .busy_timeout(BUSY_TIMEOUT);
        let conn = options
            .connect()
            .await
            .map_err(|e| StoreError::open(&name, "", e))?;
        Ok(Store {
            db: Arc::new(Db::Sqlite(Mutex::new(conn))),
            path: Some(path.to_owned()),
            name: name.into(),
            fence: Arc::default(),
            lease_until: Arc::default(),
            keeps_ledger: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        })
    }

    /// Another read-only handle on the same database, for a second pass
    /// beside the first: a connection of its own on SQLite, the same pool
    /// on PostgreSQL.
    pub async fn another_reader(&self) -> Result<Store, StoreError> {
        match (&*self.db, &self.path) {
            (Db::Sqlite(_), Some(path)) => Store::open_read_only(path).await,
            _ => Ok(self.clone()),
        }
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
            return Err(StoreError::invalid(
                &self.name,
                format!("database or disk is full (injected at failpoint {point})"),
            ));
        }
        Ok(())
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        StoreError::query(&self.name, e)
    }

    /// `values` as one JSON array, bound as one parameter (`json_each` on
    /// SQLite, `json_array_elements_text` on PostgreSQL).
    fn json<T: serde::Serialize + ?Sized>(&self, values: &T) -> Result<String, StoreError> {
        serde_json::to_string(values).map_err(|e| StoreError::invalid(&self.name, e.to_string()))
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

/// One [`Rotation`] by id (for [`ledger::append_ledger`], whose callers
/// need not import the macros).
const SELECT_ROTATION_BY_ID: &str = concat!(select_rotation!(), " WHERE id = $1");

/// `(group, time)` rows as a map; a time that does not parse (only a
/// hand-edited database has one) is an error naming the group.
fn times_by_group(
    name: &str,
    rows: Vec<(String, Stamp)>,
) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
    rows.into_iter()
        .map(|(group, t)| match t.time() {
            Some(time) => Ok((group, time)),
            None => Err(StoreError::invalid(
                name,
                format!("{group}: {:?} is not a time", t.0),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests;
