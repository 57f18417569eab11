//! The two databases the history can live in, and what lets one query run
//! on both:
//!
//! - SQLite, the embedded default: one connection in WAL mode with
//!   `synchronous=FULL`, callers queued on a fair mutex (SQLite takes one
//!   writer at a time anyway, and a lone connection sets no timers, so the
//!   store also works under tokio's paused test clock);
//! - PostgreSQL, for several nodes: a pool with connect, acquire and
//!   statement timeouts, so that a database that is down or slow fails a
//!   call instead of hanging it.
//!
//! A query is written once, with `$N` placeholders (SQLite binds them by
//! number), inside [`on!`], which runs it on whichever connection the store
//! has; the few places where the dialects differ fork on the flag `on!`
//! gives (`json_each` against `json_array_elements_text`, `PRAGMA`s). Time
//! goes in as [`At`] (text on SQLite, `timestamptz` on PostgreSQL) and comes
//! out as [`Stamp`] (RFC 3339 UTC text with milliseconds on both).

use super::PostgresSettings;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::postgres::{PgPool, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type, encode::IsNull};
use std::time::Duration;
use tokio::sync::Mutex;

/// The connection(s) of a store.
pub(super) enum Db {
    /// One SQLite connection, shared in turn.
    Sqlite(Mutex<SqliteConnection>),
    /// A pool of PostgreSQL connections.
    Postgres(PgPool),
}

/// How long a PostgreSQL connection may take to open, and a call to get one
/// from the pool: a database that is down fails calls, it never hangs them.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one statement may run, and wait for a lock.
const PG_STATEMENT_TIMEOUT: &str = "30s";
const PG_LOCK_TIMEOUT: &str = "10s";
/// A transaction left open this long is ended by the server: a node frozen
/// (a paused VM, SIGSTOP) in the middle of one would otherwise hold its row
/// locks, and the node that took over would wait on them. The program's
/// transactions never wait on anything outside the database.
const PG_IDLE_IN_TRANSACTION: &str = "3s";
/// Connections in a node's pool: rotations, the hooks' worker, the events,
/// the lease and the metrics each hold one briefly.
const PG_POOL_SIZE: u32 = 10;

/// A pool of connections to the PostgreSQL database of `settings` (TLS as
/// its URL's `sslmode` says, which the config made verifying), every
/// session with statement and lock timeouts; read-only sessions for
/// readers. Connects once, so that a wrong password or host fails now.
pub(super) async fn postgres_pool(
    settings: &PostgresSettings,
    read_only: bool,
) -> Result<PgPool, String> {
    let mut options: PgConnectOptions = settings
        .url
        .as_str()
        .parse()
        .map_err(|e: sqlx::Error| e.to_string())?;
    if let Some(password) = &settings.password {
        options = options.password(password.expose());
    }
    let mut session = vec![
        ("statement_timeout", PG_STATEMENT_TIMEOUT),
        ("lock_timeout", PG_LOCK_TIMEOUT),
        (
            "idle_in_transaction_session_timeout",
            PG_IDLE_IN_TRANSACTION,
        ),
        ("timezone", "UTC"),
    ];
    if read_only {
        session.push(("default_transaction_read_only", "on"));
    }
    options = options.application_name("invite-rotator").options(session);
    PgPoolOptions::new()
        .max_connections(PG_POOL_SIZE)
        .min_connections(0)
        .acquire_timeout(PG_CONNECT_TIMEOUT)
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_before_acquire(true)
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())
}

/// Runs `$body` with `$c` bound to a connection of `$store`'s database and
/// `$pg` telling which (`true`: PostgreSQL). The body is compiled once per
/// backend, so a query built in it is typed by the connection it runs on;
/// its result must not depend on the backend's types.
macro_rules! on {
    ($store:expr, |$c:ident, $pg:ident| $body:expr) => {
        match &*$store.db {
            $crate::store::backend::Db::Sqlite(conn) => {
                #[allow(unused_variables)]
                let $pg = false;
                let mut guard = conn.lock().await;
                #[allow(unused_mut)]
                let mut $c: &mut sqlx::SqliteConnection = &mut *guard;
                $body
            }
            $crate::store::backend::Db::Postgres(pool) => {
                #[allow(unused_variables)]
                let $pg = true;
                let mut pooled = pool.acquire().await.map_err(|e| $store.err(e))?;
                #[allow(unused_mut)]
                let mut $c: &mut sqlx::PgConnection = &mut *pooled;
                $body
            }
        }
    };
}
pub(super) use on;

/// A time as a query parameter: RFC 3339 UTC text with milliseconds on
/// SQLite (so that stored times sort and compare as text), `timestamptz`
/// on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct At(pub DateTime<Utc>);

/// Formats a time as SQLite stores it: RFC 3339, UTC, milliseconds.
pub fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Type<Sqlite> for At {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for At {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(text(self.0), buf)
    }
}

impl Type<Postgres> for At {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for At {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

/// A stored time, as text: RFC 3339 UTC with milliseconds, whichever
/// database it came from (SQLite stores that text; PostgreSQL's
/// `timestamptz` is formatted so), so that every output reads the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Stamp(pub String);

impl Stamp {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The time, unless the text is not one (only a hand-edited SQLite
    /// database holds such text).
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.0)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl std::ops::Deref for Stamp {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Stamp> for String {
    fn from(s: Stamp) -> String {
        s.0
    }
}

impl Type<Sqlite> for Stamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Stamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        <String as Decode<Sqlite>>::decode(value).map(Stamp)
    }
}

impl Type<Postgres> for Stamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Stamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(|t| Stamp(text(t)))
    }
}

/// Executes `$q` (a query built in the macro, so typed for each backend) on
/// `$store`; the rows it changed, or a [`super::StoreError`].
macro_rules! exec {
    ($store:expr, $q:expr) => {
        $crate::store::backend::on!($store, |c, _pg| $q
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| $store.err(e))
    };
}
pub(super) use exec;

/// As [`on!`], for a body that yields `Result<_, sqlx::Error>` and may use
/// `?` on the driver's errors: the result, its error named for `$store`.
macro_rules! run {
    ($store:expr, |$c:ident, $pg:ident| $body:expr) => {
        $crate::store::backend::on!($store, |$c, $pg| {
            let result: Result<_, sqlx::Error> = async { $body }.await;
            result.map_err(|e| $store.err(e))
        })
    };
}
pub(super) use run;
