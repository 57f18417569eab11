//! The engine: one RyzeAPI client per instance (instances sharing a token share
//! one rate budget), the store, and rotations of many groups at once, bounded.

use crate::config::{Config, Group, RetryPolicy};
use crate::daemon::Rotator;
use crate::metrics::{Metrics, Observed};
use crate::ratelimit::RateLimiter;
use crate::rotation::{self, Report, RotateError};
use crate::ryzeapi::{self, Client, Held, Holds};
use crate::secret::Token;
use crate::store::{Cause, Fencing, Status, Store, Trigger};
use crate::whatsapp::shown;
use chrono::Utc;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

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
    /// The instances' holds, shared with the engines of later reloads and
    /// with the events that start and end holds.
    holds: Holds,
}

/// An instance's API as the engine calls it: counted, held back while the
/// instance is disconnected, paced by its token's budget.
type Api = Held<Observed<Client>>;

mod leftovers;

use leftovers::{Running, Settler, stale_after};

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
        Engine::build(config, store, metrics, Holds::default())
    }

    /// As [`Engine::with_metrics`], the instances' holds kept in `holds`
    /// (the daemon's: a reload's engine keeps them).
    pub fn build(
        config: &Config,
        store: Store,
        metrics: Option<Metrics>,
        holds: Holds,
    ) -> Result<Engine, EngineError> {
        let http = ryzeapi::http_client(config.api.timeout, config.api.proxy.as_ref())?;
        let mut budgets: Vec<(Token, Arc<RateLimiter>)> = Vec::new();
        let mut clients = HashMap::new();
        let masker = Arc::new(crate::mask::Masker::of(config));
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
            )
            .masking(masker.clone(), store.clone());
            let held = Held::new(
                Observed::new(client, metrics.clone()),
                &instance.name,
                config.retry.backoff_initial,
                config.retry.backoff_max,
                &holds,
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
            holds,
        })
    }

    /// The history store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The instances' holds.
    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    /// The client of `instance`, for calls other than rotations (the events'
    /// registration and WebSocket): same token, same rate budget.
    pub fn client(&self, instance: &str) -> Option<&Client> {
        self.clients.get(instance).map(|api| api.inner().inner())
    }

    /// Reads the live link of `group` as a rotation does: through its
    /// instance's rate budget, counted, held back while the instance is
    /// reported offline. `None` when no instance of this engine is the
    /// group's.
    pub async fn read_link(&self, group: &Group) -> Option<ryzeapi::Call<ryzeapi::GroupInfo>> {
        use ryzeapi::RyzeApi;
        let api = self.clients.get(&group.instance)?;
        Some(api.group_info(&group.jid).await)
    }

    /// Rotates one group now.
    pub async fn rotate(&self, group: &Group, cause: Cause) -> Result<Report, RotateError> {
        let trigger = cause.trigger;
        // The config refuses a group on an undefined instance, so this only
        // happens to a group from another config; nothing is sent or written.
        let client: &Api = self
            .clients
            .get(&group.instance)
            .ok_or_else(|| RotateError::NoInstance(group.instance.clone()))?;
        let rotate = || rotation::rotate(&self.store, client, &self.retry, group, cause);
        let _running = Running::new(group.jid.as_str());
        let report = match rotate().await {
            // The pending row was settled between the two looks: go again.
            Err(RotateError::Busy { since, .. }) if since.is_empty() => rotate().await?,
            // The pending row's writer is gone (killed, crashed, a `rotate`
            // cut by a second ^C, or a write of this process that failed),
            // or, on a node, an earlier active node began it (fenced since,
            // whether or not its process still runs): settle it from the
            // live link, then go on.
            Err(RotateError::Busy { since, owner }) => {
                let jid = group.jid.as_str();
                let gone = self.writer_gone(owner.as_deref(), &since, jid, false, 1, Utc::now());
                let on_node = matches!(self.store.fencing(), Fencing::Active(_));
                let settled = if gone || on_node {
                    self.settle(Settler::BusyGroup, Some(jid)).await?
                } else {
                    0
                };
                if settled == 0 && !gone {
                    return Err(RotateError::Busy { since, owner });
                }
                tracing::warn!(group = %group.name, %since, "settled a rotation left pending by a process that is gone or by an earlier active node");
                rotate().await?
            }
            other => other?,
        };
        if let Some(m) = &self.metrics {
            m.rotation(&group.name, report.status, trigger);
        }
        let (old, new) = (
            shown(report.old_code.as_deref()),
            shown(report.new_code.as_deref()),
        );
        let (status, attempts) = (report.status, report.attempts);
        let seconds = report.elapsed.as_secs_f64();
        if report.status == Status::Succeeded {
            tracing::info!(group = %report.group, %trigger, %status, %old, %new, attempts, duration_s = seconds, "rotation");
        } else {
            tracing::warn!(group = %report.group, %trigger, %status, %old, attempts, duration_s = seconds, error = report.error.as_deref(), "rotation did not succeed");
        }
        Ok(report)
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
                .map(|(i, g)| async move {
                    (
                        i,
                        self.rotate(
                            g,
                            Cause {
                                trigger,
                                ..Cause::manual()
                            },
                        )
                        .await,
                    )
                })
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
    async fn rotate(&self, group: Group, cause: Cause) {
        match Engine::rotate(self, &group, cause).await {
            Ok(_) => {}
            Err(e @ RotateError::Busy { .. }) => {
                let due = cause.scheduled_for.map(crate::telemetry::utc);
                tracing::warn!(group = %group.name, due = due.as_deref(), "{e}")
            }
            Err(e @ (RotateError::Fenced | RotateError::Served)) => {
                let due = cause.scheduled_for.map(crate::telemetry::utc);
                tracing::info!(group = %group.name, due = due.as_deref(), "{e}")
            }
            Err(RotateError::Store(e)) if e.is_fenced() => {
                tracing::warn!(group = %group.name, "this node lost the lease mid-rotation: no further reset is sent; the active node settles the rotation from the live link")
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
    use crate::config::Purpose;
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
            [[group]]
            name = "g"
            instance = "a"
            jid = "1@g.us"
            schedule = "@daily"
        "#;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[database]\npath = \"{}/h.db\"\n{text}",
            dir.path().display()
        );
        let config = Config::parse(&text, Path::new("t.toml"), Purpose::Run).unwrap();
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
