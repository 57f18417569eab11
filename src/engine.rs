//! The engine: one RyzeAPI client per instance (instances sharing a token share
//! one rate budget), the store, and rotations of many groups at once, bounded.

use crate::config::{Config, Group, RetryPolicy};
use crate::daemon::Rotator;
use crate::metrics::{Metrics, Observed};
use crate::owner::{self, Liveness};
use crate::ratelimit::RateLimiter;
use crate::rotation::{self, Report, RotateError};
use crate::ryzeapi::{self, Client, Held};
use crate::secret::Token;
use crate::store::{Leftover, Status, Store, StoreError, Trigger};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything a rotation needs, built once from the config. Cloning is shallow.
#[derive(Clone, Debug)]
pub struct Engine {
    store: Store,
    retry: RetryPolicy,
    /// Shared by clones, so that every clone sees an instance's hold.
    clients: HashMap<String, Arc<Api>>,
    max_concurrent: usize,
    metrics: Option<Metrics>,
    /// See [`stale_after`].
    stale: chrono::Duration,
}

/// An instance's API as the engine calls it: counted, held back while the
/// instance is disconnected, paced by its token's budget.
type Api = Held<Observed<Client>>;

/// Who is settling leftovers: the daemon at its start (no other daemon can
/// run: it holds the lock), or a rotation that found its group busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settler {
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
struct Running(String);

impl Running {
    fn new(jid: &str) -> Running {
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
fn stale_after(config: &Config) -> chrono::Duration {
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

/// The engine could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client: {0}")]
pub struct EngineError(#[from] reqwest::Error);

impl Engine {
    /// Builds the clients for every instance of `config`.
    pub fn new(config: &Config, store: Store) -> Result<Engine, EngineError> {
        Engine::with_metrics(config, store, None)
    }

    /// As [`Engine::new`], counting rotations and calls into `metrics`.
    pub fn with_metrics(
        config: &Config,
        store: Store,
        metrics: Option<Metrics>,
    ) -> Result<Engine, EngineError> {
        let http = ryzeapi::http_client(config.api.timeout)?;
        let mut budgets: Vec<(Token, Arc<RateLimiter>)> = Vec::new();
        let mut clients = HashMap::new();
        for instance in &config.instances {
            let limiter = match budgets.iter().find(|(t, _)| t.same_as(&instance.token)) {
                Some((_, limiter)) => limiter.clone(),
                None => {
                    let limiter = Arc::new(RateLimiter::shared(
                        config.rate_limit.requests_per_minute,
                        store.clone(),
                        &instance.token,
                    ));
                    budgets.push((instance.token.clone(), limiter.clone()));
                    limiter
                }
            };
            let client = Client::new(
                http.clone(),
                config.api.base_url.clone(),
                &instance.name,
                instance.token.clone(),
                limiter,
            );
            let held = Held::new(
                Observed::new(client, metrics.clone()),
                &instance.name,
                config.retry.backoff_initial,
                config.retry.backoff_max,
            );
            clients.insert(instance.name.clone(), Arc::new(held));
        }
        Ok(Engine {
            store,
            retry: config.retry.clone(),
            clients,
            max_concurrent: config.rate_limit.max_concurrent,
            metrics,
            stale: stale_after(config),
        })
    }

    /// The history store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Rotates one group now.
    pub async fn rotate(
        &self,
        group: &Group,
        trigger: Trigger,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Result<Report, RotateError> {
        // The config refuses a group on an undefined instance, so this only
        // happens to a group from another config; nothing is sent or written.
        let client: &Api = self
            .clients
            .get(&group.instance)
            .ok_or_else(|| RotateError::NoInstance(group.instance.clone()))?;
        let rotate = || {
            rotation::rotate(
                &self.store,
                client,
                &self.retry,
                group,
                trigger,
                scheduled_for,
            )
        };
        let _running = Running::new(group.jid.as_str());
        let report = match rotate().await {
            // The pending row's writer is gone (killed, crashed, a `rotate`
            // cut by a second ^C, or a write of this process that failed):
            // settle it from the live link, then go on.
            Err(RotateError::Busy { since, owner })
                if self.writer_gone(owner.as_deref(), &since, group.jid.as_str(), false, 1) =>
            {
                tracing::warn!(group = %group.name, %since, "settling a rotation left pending by a process that is gone");
                self.settle(Settler::BusyGroup, Some(group.jid.as_str()))
                    .await?;
                rotate().await?
            }
            // The pending row was settled between the two looks: go again.
            Err(RotateError::Busy { since, .. }) if since.is_empty() => rotate().await?,
            other => other?,
        };
        if let Some(m) = &self.metrics {
            m.rotation(report.status, trigger);
        }
        tracing::info!(
            group = %report.group,
            trigger = trigger.as_str(),
            status = report.status.as_str(),
            old = report.old_code.as_deref().unwrap_or("-"),
            new = report.new_code.as_deref().unwrap_or("-"),
            attempts = report.attempts,
            duration_s = report.elapsed.as_secs_f64(),
            error = report.error.as_deref(),
            "rotation"
        );
        Ok(report)
    }

    /// Settles what a crash, a kill or a stop left unsettled (see
    /// [`rotation::settle_interrupted`]); runs before the daemon takes new work.
    /// Rows of a `rotate` still running are left to it.
    pub async fn settle_leftovers(&self) -> Result<usize, StoreError> {
        self.settle(Settler::DaemonStart, None).await
    }

    /// Settles the rows left behind (of the group `jid`, or all), a few at a
    /// time, each with a single read of the link: start-up must stay short even
    /// when the API is down (what cannot be read stays `unknown`).
    async fn settle(&self, settler: Settler, jid: Option<&str>) -> Result<usize, StoreError> {
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
            let settling = chunk
                .iter()
                .map(|row| self.settle_one(&once, &row.rotation));
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
        if r.status != Status::Pending.as_str() {
            return true;
        }
        let daemons_own = settler == Settler::DaemonStart && r.trigger != Trigger::Manual.as_str();
        // Settling for a busy group runs inside that group's own rotation.
        let ours = usize::from(settler == Settler::BusyGroup);
        self.writer_gone_at(
            row.owner.as_deref(),
            &r.started_at,
            &r.group_jid,
            daemons_own,
            ours,
            now,
        )
    }

    fn writer_gone(
        &self,
        owner: Option<&str>,
        since: &str,
        jid: &str,
        daemons_own: bool,
        ours: usize,
    ) -> bool {
        self.writer_gone_at(owner, since, jid, daemons_own, ours, Utc::now())
    }

    /// Whether the process that wrote a pending row of `jid` is gone.
    /// `daemons_own`: the row is a previous daemon's, seen by a daemon at its
    /// start (that one surely ended: only one daemon runs at a time). `ours`:
    /// rotations of `jid` the caller itself is counted as running.
    fn writer_gone_at(
        &self,
        owner: Option<&str>,
        since: &str,
        jid: &str,
        daemons_own: bool,
        ours: usize,
        now: DateTime<Utc>,
    ) -> bool {
        match owner::liveness(owner) {
            Liveness::ThisProcess => running_here(jid) <= ours,
            Liveness::Alive => false,
            Liveness::Dead => true,
            Liveness::Unknown => daemons_own || is_stale(since, now, self.stale),
        }
    }

    async fn settle_one(
        &self,
        policy: &RetryPolicy,
        row: &crate::store::Rotation,
    ) -> Result<(), StoreError> {
        let Some(client) = self.clients.get(&row.instance).map(Arc::as_ref) else {
            tracing::warn!(rotation = row.id, instance = %row.instance, "cannot settle: its instance is no longer configured");
            return Ok(());
        };
        let status = rotation::settle_interrupted(&self.store, client, policy, row).await?;
        tracing::info!(rotation = row.id, group = %row.group_name, was = %row.status, now = status.as_str(), "settled a rotation left unsettled");
        Ok(())
    }

    /// Rotates `groups`, at most `max_concurrent` at a time, in the order given
    /// (the rate limiter serves them first come, first served). Results come
    /// back in the same order.
    pub async fn rotate_many(
        &self,
        groups: &[Group],
        trigger: Trigger,
    ) -> Vec<Result<Report, RotateError>> {
        self.rotate_many_until(groups, trigger, std::future::pending())
            .await
            .into_iter()
            .map(|r| r.unwrap_or(Err(RotateError::NotStarted)))
            .collect()
    }

    /// As [`Engine::rotate_many`], but once `stop` completes no further
    /// rotation starts; those in flight finish. A group never started is `None`.
    pub async fn rotate_many_until(
        &self,
        groups: &[Group],
        trigger: Trigger,
        stop: impl std::future::Future<Output = ()>,
    ) -> Vec<Option<Result<Report, RotateError>>> {
        let done: Vec<(usize, Result<Report, RotateError>)> =
            futures_util::stream::iter(groups.iter().enumerate())
                .take_until(stop)
                .map(|(i, g)| async move { (i, self.rotate(g, trigger, None).await) })
                .buffer_unordered(self.max_concurrent.max(1))
                .collect()
                .await;
        let mut results: Vec<Option<Result<Report, RotateError>>> =
            groups.iter().map(|_| None).collect();
        for (i, r) in done {
            results[i] = Some(r);
        }
        results
    }
}

impl Rotator for Engine {
    async fn rotate_due(&self, group: Group, trigger: Trigger, due: DateTime<Utc>) {
        match self.rotate(&group, trigger, Some(due)).await {
            Ok(_) => {}
            Err(e @ RotateError::Busy { .. }) => {
                tracing::warn!(group = %group.name, due = %due, "{e}")
            }
            Err(e) => {
                tracing::error!(group = %group.name, error = %e, "the history cannot be written: no reset is made without its record; a row left pending is settled from the live link")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tokens;
    use std::path::Path;

    #[tokio::test]
    async fn instances_sharing_a_token_share_one_rate_budget() {
        let text = r#"
            [[instance]]
            name = "a"
            token = "shared"
            [[instance]]
            name = "b"
            token = "shared"
            [[instance]]
            name = "c"
            token = "other"
        "#;
        let config = Config::parse(text, Path::new("t.toml"), Tokens::Resolve).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).await.unwrap();
        let engine = Engine::new(&config, store).unwrap();
        let (a, b, c) = (
            &engine.clients["a"],
            &engine.clients["b"],
            &engine.clients["c"],
        );
        let client = |api: &Api| api.inner().inner().clone();
        assert!(client(a).shares_budget_with(&client(b)));
        assert!(!client(a).shares_budget_with(&client(c)));
    }
}
