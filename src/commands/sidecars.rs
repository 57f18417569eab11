//! What runs beside the daemon, in `run` and `demo`: the hooks' worker, the
//! pruner of the call log and the raw events ([`crate::retention`]), the
//! metrics server when `[metrics] listen` is set, and RyzeAPI's events
//! ([`crate::events`]) with `[events]`. They follow reloads and stop at the
//! daemon's stop signal, so the process still exits within 10 s.

use crate::config::{Config, Group};
use crate::events::{self, Managed, Wiring};
use crate::hooks::{self, Settings};
use crate::metrics::{Metrics, server};
use crate::retention;
use crate::store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The tasks beside the daemon.
pub struct Sidecars {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    updater: Updater,
}

/// Keeps the tasks on the running config. Cloning is shallow.
#[derive(Clone)]
pub struct Updater {
    hooks: watch::Sender<Arc<Settings>>,
    groups: Option<watch::Sender<Arc<[Group]>>>,
    managed: Option<watch::Sender<Arc<Managed>>>,
}

impl Sidecars {
    /// Starts the hooks' worker, the metrics server on `metrics`' listener,
    /// and, with `[events]`, the events as `events` wires them.
    pub fn start(
        config: &Config,
        store: &Store,
        metrics: Option<(Metrics, TcpListener)>,
        events: Wiring,
    ) -> Result<Sidecars, reqwest::Error> {
        let (stop, _) = watch::channel(false);
        let (hooks, hooks_rx) = watch::channel(Arc::new(settings(config)));
        let mut tasks = JoinSet::new();
        let worker = hooks::Worker::new(store.clone(), hooks_rx, config.api.proxy.as_ref())?;
        tasks.spawn(worker.run(stopped(&stop)));
        let keep_events = config.events.as_ref().and_then(|e| e.keep);
        tasks.spawn(retention::run(
            store.clone(),
            config.keep_calls,
            keep_events,
            stopped(&stop),
        ));
        let limits = events.limits;
        let managed = config.events.as_ref().map(|settings| {
            events::spawn(
                settings,
                config,
                store,
                events,
                &mut tasks,
                &stop.subscribe(),
            )
        });
        let mut groups = None;
        if let Some((metrics, listener)) = metrics {
            let (tx, rx) = watch::channel(config.groups.clone());
            groups = Some(tx);
            let serving =
                server::serve(listener, limits, metrics, store.clone(), rx, stopped(&stop));
            tasks.spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "the metrics server stopped");
                }
            });
        }
        Ok(Sidecars {
            tasks,
            stop,
            updater: Updater {
                hooks,
                groups,
                managed,
            },
        })
    }

    /// What keeps the tasks on the running config.
    pub fn updater(&self) -> Updater {
        self.updater.clone()
    }

    /// A future that, once polled to its end, tells the tasks to stop: chained
    /// after the daemon's stop signal.
    pub fn stopper(&self) -> impl Future<Output = ()> + use<> {
        let stop = self.stop.clone();
        async move {
            stop.send_replace(true);
        }
    }

    /// Stops the tasks: a second to finish, then they are cut.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(1), all_done)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}

impl Updater {
    /// A reloaded config: new hooks, new groups.
    pub fn reloaded(&self, config: &Config) {
        self.hooks.send_replace(Arc::new(settings(config)));
        if let Some(groups) = &self.groups {
            groups.send_replace(config.groups.clone());
        }
        if let Some(managed) = &self.managed {
            managed.send_replace(Arc::new(Managed::of(config)));
        }
    }
}

fn settings(config: &Config) -> Settings {
    Settings {
        hooks: config.hooks.clone(),
        retry: config.retry.clone(),
    }
}

fn stopped(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
