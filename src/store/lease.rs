//! The lease nodes take turns by, and the node list `status` shows
//! (PostgreSQL; on SQLite one daemon holds the file's lock and these tables
//! stay empty). SQL only; when to take, renew or give up the lease is
//! [`crate::ha`]'s to say. Every time here is the database's own clock
//! (`clock_timestamp()`), so nodes whose clocks differ still agree on who
//! holds the lease.

use super::{Stamp, Store, StoreError, exec, run};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// This node's claim to begin work: the lease of `term`, held by `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The node (see [`crate::ha::Node`]).
    pub node: String,
    /// The lease's term when this node took it.
    pub term: i64,
}

/// Whether a store's writes that begin work are fenced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fencing {
    /// Not a node (SQLite, a `rotate` run): nothing to check.
    #[default]
    Off,
    /// A standby node: begins nothing.
    Standby,
    /// The active node: begins work while it holds this lease.
    Active(Fence),
}

/// The lease as it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaseState {
    /// The active node, if any.
    pub holder: Option<String>,
    /// The term: grows with each takeover.
    pub term: i64,
    /// When the holder took it.
    pub since: Option<Stamp>,
    /// When it runs out unless renewed.
    pub expires_at: Option<Stamp>,
    /// Whether it has run out (by the database's clock).
    pub expired: bool,
}

/// A node as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeRow {
    /// `host/pid/start`.
    pub node: String,
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: i64,
    /// When it started.
    pub started_at: Stamp,
    /// When it last reported.
    pub seen_at: Stamp,
    /// `active`, `standby` or `stopped`.
    pub role: String,
    /// Since when it is active, if it is.
    pub active_since: Option<Stamp>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Takes the lease for `node` if nobody holds it, it has run out, or
    /// `node` holds it still (a node that stepped down after a failed
    /// renewal takes it back at once): the new term, or `None` when another
    /// node holds it.
    pub async fn acquire_lease(
        &self,
        node: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        run!(self, |c, _pg| {
            sqlx::query_scalar(
                "UPDATE lease SET holder = $1, term = term + 1, since = clock_timestamp(),
                 expires_at = clock_timestamp() + make_interval(secs => $2)
             WHERE id = 1 AND (holder IS NULL OR holder = $1 OR expires_at IS NULL
                               OR expires_at < clock_timestamp())
             RETURNING term",
            )
            .bind(node)
            .bind(secs(lease))
            .fetch_all(c)
            .await
            .map(|terms: Vec<i64>| terms.first().copied())
        })
    }

    /// Renews the lease of `term` for `node` while it has not run out:
    /// whether it was (a node whose lease ran out must take it again, under
    /// a new term).
    pub async fn renew_lease(
        &self,
        node: &str,
        term: i64,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        exec!(
            self,
            sqlx::query(
                "UPDATE lease SET expires_at = clock_timestamp() + make_interval(secs => $3)
                 WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > clock_timestamp()",
            )
            .bind(node)
            .bind(term)
            .bind(secs(lease))
        )
        .map(|changed| changed > 0)
    }

    /// Gives the lease of `term` up (a clean stop): a standby takes over at
    /// once instead of after the lease.
    pub async fn release_lease(&self, node: &str, term: i64) -> Result<(), StoreError> {
        exec!(
            self,
            sqlx::query(
                "UPDATE lease SET holder = NULL, expires_at = NULL WHERE id = 1 AND holder = $1 AND term = $2",
            )
            .bind(node)
            .bind(term)
        )
        .map(drop)
    }

    /// The lease as it stands.
    pub async fn lease_state(&self) -> Result<LeaseState, StoreError> {
        run!(self, |c, _pg| sqlx::query_as(
            "SELECT holder, term, since, expires_at,
                    COALESCE(expires_at < clock_timestamp(), true) AS expired
             FROM lease WHERE id = 1",
        )
        .fetch_optional(c)
        .await
        .map(Option::unwrap_or_default))
    }

    /// Records how `node` is doing, for `status`.
    pub async fn report_node(
        &self,
        node: &str,
        host: &str,
        pid: u32,
        started_at: DateTime<Utc>,
        role: &str,
        active_since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO nodes (node, host, pid, started_at, seen_at, role, active_since)
                 VALUES ($1, $2, $3, $4, clock_timestamp(), $5, $6)
                 ON CONFLICT (node) DO UPDATE SET seen_at = clock_timestamp(), role = $5, active_since = $6",
            )
            .bind(node)
            .bind(host)
            .bind(i64::from(pid))
            .bind(super::timestamp(started_at))
            .bind(role)
            .bind(active_since.map(super::timestamp))
        )
        .map(drop)
    }

    /// Nodes seen within `within` (by the database's clock), active first.
    pub async fn nodes_seen(&self, within: Duration) -> Result<Vec<NodeRow>, StoreError> {
        run!(self, |c, _pg| sqlx::query_as(
            "SELECT node, host, pid, started_at, seen_at, role, active_since FROM nodes
             WHERE seen_at > clock_timestamp() - make_interval(secs => $1)
             ORDER BY role = 'active' DESC, started_at",
        )
        .bind(secs(within))
        .fetch_all(c)
        .await)
    }

    /// Forgets nodes not seen for `for_longer` (gone for good).
    pub async fn forget_nodes(&self, for_longer: Duration) -> Result<u64, StoreError> {
        exec!(
            self,
            sqlx::query(
                "DELETE FROM nodes WHERE seen_at < clock_timestamp() - make_interval(secs => $1)",
            )
            .bind(secs(for_longer))
        )
    }

    /// This store's fencing: what its writes that begin work check.
    pub fn fencing(&self) -> Fencing {
        self.fence
            .read()
            .map(|f| f.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Sets this store's fencing (shared by its clones): the lease keeper
    /// does, as the node becomes active or stands by.
    pub fn set_fencing(&self, fencing: Fencing) {
        if !matches!(fencing, Fencing::Active(_)) {
            self.set_lease_until(None);
        }
        let mut f = self.fence.write().unwrap_or_else(|p| p.into_inner());
        *f = fencing;
    }

    /// Until when the active node's lease surely holds, by this process's
    /// monotonic clock (which runs on while the process is frozen): the
    /// keeper sets it from the moment it sent each renewal that succeeded.
    pub fn set_lease_until(&self, until: Option<std::time::Instant>) {
        *self.lease_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }

    /// Whether a reset may leave now: always outside nodes; on a node, only
    /// while active and before its lease's local deadline. Checked right
    /// before a reset is sent (after its rate grant, which may have waited),
    /// so a node frozen or cut off past its lease sends nothing on waking
    /// (the fenced write before the call cannot see a wait after it).
    pub fn may_send(&self) -> bool {
        match self.fencing() {
            Fencing::Off => true,
            Fencing::Standby => false,
            Fencing::Active(_) => self
                .lease_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|until| std::time::Instant::now() < until),
        }
    }
}
