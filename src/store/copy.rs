//! Moving in: a SQLite history copied into a PostgreSQL database, every
//! table, ids kept, in one transaction. SQL only; `db copy` decides when.

use super::backend::{At, Db};
use super::{Store, StoreError};
use chrono::DateTime;
use futures_util::TryStreamExt;
use sqlx::{Connection, QueryBuilder, Row};

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Time,
}

use Kind::{Int, Text, Time};

/// Every table, parents before children, with its columns. The lease and
/// the node list are a running cluster's own and are not copied.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "events",
        &[
            ("id", Int),
            ("received_at", Time),
            ("channel", Text),
            ("instance", Text),
            ("event", Text),
            ("kind", Text),
            ("group_jid", Text),
            ("digest", Text),
            ("data", Text),
            ("processed_at", Time),
            ("outcome", Text),
        ],
    ),
    (
        "rotations",
        &[
            ("id", Int),
            ("group_name", Text),
            ("group_jid", Text),
            ("instance", Text),
            ("trigger", Text),
            ("scheduled_for", Time),
            ("started_at", Time),
            ("finished_at", Time),
            ("status", Text),
            ("attempts", Int),
            ("old_invite_code", Text),
            ("new_invite_code", Text),
            ("new_invite_link", Text),
            ("error", Text),
            ("owner", Text),
            ("last_reset_at", Time),
            ("event_id", Int),
            ("term", Int),
        ],
    ),
    (
        "api_calls",
        &[
            ("id", Int),
            ("rotation_id", Int),
            ("endpoint", Text),
            ("started_at", Time),
            ("duration_ms", Int),
            ("http_status", Int),
            ("outcome", Text),
            ("error", Text),
        ],
    ),
    (
        "groups_seen",
        &[("group_name", Text), ("first_seen_at", Time)],
    ),
    (
        "rate_budget",
        &[
            ("token_key", Text),
            ("next_grant_us", Int),
            ("paused_until_us", Int),
            ("reserved_at_us", Int),
        ],
    ),
    (
        "hook_outbox",
        &[
            ("id", Int),
            ("rotation_id", Int),
            ("status", Text),
            ("created_at", Time),
        ],
    ),
    (
        "hook_deliveries",
        &[
            ("id", Int),
            ("idempotency_key", Text),
            ("hook_key", Text),
            ("hook_name", Text),
            ("rotation_id", Int),
            ("status", Text),
            ("state", Text),
            ("attempts", Int),
            ("created_at", Time),
            ("next_attempt_at", Time),
            ("delivered_at", Time),
            ("last_result", Text),
            ("last_error", Text),
            ("output", Text),
        ],
    ),
    ("health_probe", &[("id", Int), ("checked_at", Time)]),
    (
        "event_rotations",
        &[
            ("group_jid", Text),
            ("trigger", Text),
            ("first_event_id", Int),
            ("first_at", Time),
            ("due_at", Time),
            ("watermark", Int),
        ],
    ),
    (
        "join_links",
        &[
            ("id", Int),
            ("name", Text),
            ("slug", Text),
            ("group_name", Text),
            ("group_jid", Text),
            ("created_at", Time),
            ("expires_at", Time),
            ("max_uses", Int),
            ("uses", Int),
            ("last_used_at", Time),
            ("revoked_at", Time),
            ("note", Text),
        ],
    ),
    (
        "join_uses",
        &[
            ("id", Int),
            ("link_id", Int),
            ("used_at", Time),
            ("uses", Int),
        ],
    ),
    (
        "ledger",
        &[
            ("seq", Int),
            ("rotation_id", Int),
            ("at", Time),
            ("entry", Text),
            ("hash", Text),
        ],
    ),
    (
        "checkpoints",
        &[
            ("id", Int),
            ("seq", Int),
            ("hash", Text),
            ("signed_at", Time),
            ("line", Text),
        ],
    ),
    (
        "event_sources",
        &[
            ("instance", Text),
            ("registered_at", Time),
            ("register_error", Text),
            ("websocket_at", Time),
            ("websocket_error", Text),
            ("last_event_at", Time),
        ],
    ),
];

/// Rows per insert: well under PostgreSQL's 65,535 parameters.
const CHUNK: usize = 1000;

/// A value in flight.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Time(Option<At>),
}

/// What [`Store::copy_from`] copied: each table and its rows.
pub type Copied = Vec<(&'static str, u64)>;

impl Store {
    /// Whether this database holds any rotation (a copy target must not).
    pub async fn holds_rotations(&self) -> Result<bool, StoreError> {
        super::run!(self, |c, _pg| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rotations)"
        )
        .fetch_one(c)
        .await)
    }

    /// Copies every table of the SQLite history `from` into this PostgreSQL
    /// database, in one transaction, ids kept (and the identity counters
    /// moved past them), then counts both sides: the copy commits only if
    /// every table's count matches.
    pub async fn copy_from(&self, from: &Store) -> Result<Copied, StoreError> {
        let (Db::Sqlite(source), Db::Postgres(pool)) = (&*from.db, &*self.db) else {
            return Err(StoreError::invalid(
                &self.name,
                "copies go from a SQLite file into PostgreSQL",
            ));
        };
        let mut source = source.lock().await;
        let mut target = pool.acquire().await.map_err(|e| self.err(e))?;
        let mut tx = target.begin().await.map_err(|e| self.err(e))?;
        let mut copied = Vec::new();
        for (table, columns) in TABLES {
            let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
            let select = format!("SELECT {} FROM {table}", names.join(", "));
            // Streamed, a chunk at a time: a history of millions of rows is
            // never held in memory whole.
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *source);
            let mut chunk: Vec<Vec<Value>> = Vec::with_capacity(CHUNK);
            let mut read = 0usize;
            while let Some(row) = rows.try_next().await.map_err(|e| from.err(e))? {
                chunk.push(read_row(&row, table, columns, &from.name)?);
                read += 1;
                if chunk.len() == CHUNK {
                    insert(&mut tx, table, &names, &chunk)
                        .await
                        .map_err(|e| self.err(e))?;
                    chunk.clear();
                }
            }
            drop(rows);
            if !chunk.is_empty() {
                insert(&mut tx, table, &names, &chunk)
                    .await
                    .map_err(|e| self.err(e))?;
            }
            if names.first() == Some(&"id") && *table != "health_probe" {
                let reset = format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                );
                sqlx::query(sqlx::AssertSqlSafe(reset))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
            }
            let count = format!("SELECT COUNT(*) FROM {table}");
            let there: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            if usize::try_from(there).ok() != Some(read) {
                return Err(StoreError::invalid(
                    &self.name,
                    format!(
                        "{table}: {read} rows read, {there} there after the copy; nothing was committed"
                    ),
                ));
            }
            copied.push((*table, u64::try_from(there).unwrap_or(0)));
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        // The planner's statistics for what just arrived: without them it
        // guesses until autovacuum comes by.
        // The copy is committed: a failure here costs only speed.
        if let Err(e) = sqlx::query("ANALYZE").execute(&mut *target).await {
            tracing::warn!(error = %self.err(e), "the copy is committed, but ANALYZE failed: run it by hand");
        }
        Ok(copied)
    }
}

/// One SQLite row as the values PostgreSQL takes (times parsed from their
/// RFC 3339 text).
fn read_row(
    row: &sqlx::sqlite::SqliteRow,
    table: &str,
    columns: &[(&str, Kind)],
    source: &str,
) -> Result<Vec<Value>, StoreError> {
    let mut out = Vec::with_capacity(columns.len());
    for (i, (name, kind)) in columns.iter().enumerate() {
        let bad = |e: sqlx::Error| StoreError::invalid(source, format!("{table}.{name}: {e}"));
        out.push(match kind {
            Int => Value::Int(row.try_get(i).map_err(bad)?),
            Text => Value::Text(row.try_get(i).map_err(bad)?),
            Time => {
                let text: Option<String> = row.try_get(i).map_err(bad)?;
                let time = match text {
                    None => None,
                    Some(t) => Some(At(DateTime::parse_from_rfc3339(&t)
                        .map_err(|e| {
                            StoreError::invalid(
                                source,
                                format!("{table}.{name}: {t:?} is not a time: {e}"),
                            )
                        })?
                        .to_utc())),
                };
                Value::Time(time)
            }
        });
    }
    Ok(out)
}

/// One multi-row `INSERT` of `rows` into `table`, ids kept.
async fn insert(
    tx: &mut sqlx::PgConnection,
    table: &str,
    names: &[&str],
    rows: &[Vec<Value>],
) -> Result<(), sqlx::Error> {
    let mut insert = QueryBuilder::new(format!("INSERT INTO {table} ({}) ", names.join(", ")));
    if table == "hook_outbox" {
        insert.push("OVERRIDING SYSTEM VALUE ");
    }
    insert.push_values(rows, |mut b, row| {
        for value in row {
            match value {
                Value::Int(v) => b.push_bind(*v),
                Value::Text(v) => b.push_bind(v.clone()),
                Value::Time(v) => b.push_bind(*v),
            };
        }
    });
    insert.build().execute(tx).await?;
    Ok(())
}
