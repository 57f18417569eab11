//! Rotations left unsettled: which ones were left behind (their writer is
//! gone) rather than being worked on right now, and settling them from the
//! live link (see [`rotation::settle_interrupted`]).

use super::Engine;
use crate::config::{Config, RetryPolicy};
use crate::owner::{self, Liveness};
use crate::rotation;
use crate::ryzeapi;
use crate::store::{Fencing, Leftover, Status, StoreError, Trigger};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Who is settling leftovers: the daemon at its start (no other daemon can
/// run: it holds the lock), or a rotation that found its group busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settler {
    DaemonStart,
    BusyGroup,
}

/// Rotations this process is running right now, by group JID, across engines
/// (a reload builds a new engine while the old one's rotations finish). A
/// pending row this process wrote for a group it is not rotating was left
/// behind by a failed write, and is settled like a dead process's.
fn in_flight() -> &'static Mutex<HashMap<String, usize>> {
    static IN_FLIGHT: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    IN_FLIGHT.get_or_init(Mutex::default)
}

fn running_here(jid: &str) -> usize {
    let map = in_flight().lock().unwrap_or_else(|p| p.into_inner());
    map.get(jid).copied().unwrap_or(0)
}

/// Counts a rotation of `jid` as running here while it lives.
pub(super) struct Running(String);

impl Running {
    pub(super) fn new(jid: &str) -> Running {
        let mut map = in_flight().lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(jid.to_owned()).or_default() += 1;
        Running(jid.to_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut map = in_flight().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.0);
            }
        }
    }
}

/// How old a pending row of a writer that cannot be checked must be to be
/// taken as left behind: longer than any rotation can run with `config`
/// (every read and reset retried, each call waiting out a full rate-limit
/// pause and a full backoff), and at least an hour.
pub(super) fn stale_after(config: &Config) -> chrono::Duration {
    let m = config.retry.max_attempts;
    // Reads before the reset, then per reset a call and a read-back's reads.
    let calls = m.saturating_mul(m).saturating_add(m.saturating_mul(2));
    let per_call = config.api.timeout + ryzeapi::MAX_RATE_WAIT + config.retry.backoff_max;
    let longest = per_call
        .saturating_mul(calls)
        .saturating_add(config.retry.read_back_delay.saturating_mul(m))
        .min(std::time::Duration::from_secs(7 * 86_400));
    chrono::Duration::from_std(longest)
        .unwrap_or(chrono::Duration::days(7))
        .max(chrono::Duration::hours(1))
}

fn is_stale(since: &str, now: DateTime<Utc>, stale: chrono::Duration) -> bool {
    DateTime::parse_from_rfc3339(since).is_ok_and(|t| now - t.with_timezone(&Utc) > stale)
}

impl Engine {
    /// Settles what a crash, a kill or a stop left unsettled (see
    /// [`rotation::settle_interrupted`]); runs before the daemon takes new work.
    /// Rows of a `rotate` still running are left to it.
    pub async fn settle_leftovers(&self) -> Result<usize, StoreError> {
        self.settle(Settler::DaemonStart, None).await
    }

    /// Settles the rows left behind (of the group `jid`, or all), a few at a
    /// time, each with a single read of the link: start-up must stay short even
    /// when the API is down (what cannot be read stays `unknown`).
    pub(super) async fn settle(
        &self,
        settler: Settler,
        jid: Option<&str>,
    ) -> Result<usize, StoreError> {
        let now = Utc::now();
        let rows: Vec<Leftover> = self
            .store
            .unsettled(jid)
            .await?
            .into_iter()
            .filter(|row| self.left_behind(row, settler, now))
            .collect();
        let once = RetryPolicy {
            max_attempts: 1,
            ..self.retry.clone()
        };
        for chunk in rows.chunks(self.max_concurrent.max(1)) {
            let settling = chunk.iter().map(|row| self.settle_one(&once, row));
            for result in futures_util::future::join_all(settling).await {
                result?;
            }
        }
        Ok(rows.len())
    }

    /// Whether a row offered by [`Store::unsettled`] was left behind rather
    /// than being worked on right now.
    fn left_behind(&self, row: &Leftover, settler: Settler, now: DateTime<Utc>) -> bool {
        let r = &row.rotation;
        // A row cut by a stop was recorded as such by the process that stopped.
        if r.status != Status::Pending {
            return true;
        }
        // Begun by another node under an earlier lease term: that node,
        // alive or not, on this host or another, can record no further
        // reset (fencing), so the row is this active node's to settle.
        if let (Some(term), Fencing::Active(fence)) = (row.term, self.store.fencing())
            && term < fence.term
            && !matches!(owner::liveness(row.owner.as_deref()), Liveness::ThisProcess)
        {
            return true;
        }
        let daemons_own = settler == Settler::DaemonStart && r.trigger != Trigger::Manual;
        // Settling for a busy group runs inside that group's own rotation.
        let ours = usize::from(settler == Settler::BusyGroup);
        self.writer_gone(
            row.owner.as_deref(),
            &r.started_at,
            &r.group_jid,
            daemons_own,
            ours,
            now,
        )
    }

    /// Whether the process that wrote a pending row of `jid` is gone.
    /// `daemons_own`: the row is a previous daemon's, seen by a daemon at its
    /// start (that one surely ended: only one daemon runs at a time). `ours`:
    /// rotations of `jid` the caller itself is counted as running.
    pub(super) fn writer_gone(
        &self,
        owner: Option<&str>,
        since: &str,
        jid: &str,
        daemons_own: bool,
        ours: usize,
        now: DateTime<Utc>,
    ) -> bool {
        // On PostgreSQL another boot id may be another host: unknown, not gone.
        match owner::liveness_on(owner, self.store.path().is_none()) {
            Liveness::ThisProcess => running_here(jid) <= ours,
            Liveness::Alive => false,
            Liveness::Dead => true,
            Liveness::Unknown => daemons_own || is_stale(since, now, self.stale),
        }
    }

    async fn settle_one(
        &self,
        policy: &RetryPolicy,
        leftover: &Leftover,
    ) -> Result<(), StoreError> {
        let row = &leftover.rotation;
        let Some(client) = self.clients.get(&row.instance).map(Arc::as_ref) else {
            tracing::warn!(rotation = row.id, instance = %row.instance, "cannot settle: its instance is no longer configured");
            return Ok(());
        };
        let status = rotation::settle_interrupted(&self.store, client, policy, leftover).await?;
        tracing::info!(rotation = row.id, group = %row.group_name, was = %row.status, now = status.as_str(), "settled a rotation left unsettled");
        Ok(())
    }
}
