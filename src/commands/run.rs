//! `run`: the daemon, until SIGTERM or SIGINT; SIGHUP reloads the config.

use super::sidecars::Sidecars;
use super::{Failure, load_config};
use crate::clock::SystemClock;
use crate::config::{Config, Purpose};
use crate::daemon::{self, Inputs, Lifecycle, Reload};
use crate::engine::Engine;
use crate::events;
use crate::exit::Exit;
use crate::listener;
use crate::metrics::Metrics;
use crate::ryzeapi::Holds;
use crate::signals;
use crate::store::{LockError, Store};
use crate::systemd::Systemd;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub async fn run(path: &Path) -> Result<Exit, Failure> {
    // The handlers come first: from here on a SIGTERM is a clean stop and a
    // SIGHUP a reload (taken once the daemon runs), even during start-up.
    let mut shutdown = Box::pin(signals::shutdown());
    let hangups = signals::hangups();
    let config = load_config(path, Purpose::Run)?;
    crate::memory::release_free_memory();
    let descriptors = listener::raise_fd_limit();
    tracing::debug!(descriptors, "open descriptor limit");
    // One daemon per SQLite file: two would settle and cut each other's
    // rotations. (On PostgreSQL, nodes take turns by a lease instead.)
    let _lock = match config.database.sqlite_path() {
        Some(path) => Some(Store::lock_daemon(path).map_err(|e| match e {
            LockError::Held(_) => Failure::Runtime(format!(
                "another invite-rotator daemon is running on {} ({e})",
                path.display()
            )),
            e => Failure::Runtime(format!("cannot lock {}: {e}", path.display())),
        })?),
        None => None,
    };
    // Opening may wait for another process's migration (logged, bounded).
    let store = tokio::select! {
        store = Store::connect(&config.database) => store.map_err(|e| Failure::Runtime(e.to_string()))?,
        () = &mut shutdown => {
            tracing::info!("stopped during start-up");
            return Ok(Exit::Success);
        }
    };
    // Bound now, so that an address in use fails the start, not later.
    let metrics = match config.metrics_listen {
        Some(listen) => {
            let listener = listener::bind(listen).await.map_err(|e| {
                Failure::Runtime(format!("metrics.listen: cannot listen on {listen}: {e}"))
            })?;
            tracing::info!(%listen, "serving /metrics and /healthz");
            Some((Metrics::new(), listener))
        }
        None => None,
    };
    let events = match config.events.as_ref().and_then(|e| e.listen) {
        Some(listen) => {
            let listener = listener::bind(listen).await.map_err(|e| {
                Failure::Runtime(format!("events.listen: cannot listen on {listen}: {e}"))
            })?;
            tracing::info!(%listen, "receiving RyzeAPI's events");
            Some(listener)
        }
        None => None,
    };
    let lifecycle = Service {
        systemd: Systemd::from_env(),
        metrics: metrics.as_ref().map(|m| m.0.clone()),
    };
    let holds = Holds::default();
    let (reloads, reload_rx) = mpsc::channel(1);
    let watcher = tokio::spawn(reload_on_hangup(
        hangups,
        path.to_owned(),
        store.clone(),
        reloads,
        lifecycle.metrics.clone(),
        holds.clone(),
    ));
    let parts = Parts {
        metrics,
        events,
        holds,
    };
    let result = serve(config, store, &lifecycle, shutdown, reload_rx, parts).await;
    watcher.abort();
    result.map(|()| Exit::Success)
}

/// The daemon under systemd, giving back start-up's transient memory once
/// ready, and telling the metrics of each turn.
struct Service {
    systemd: Systemd,
    metrics: Option<Metrics>,
}

impl Lifecycle for Service {
    fn ready(&self) {
        crate::memory::release_free_memory();
        self.systemd.ready();
    }

    fn alive(&self) {
        self.systemd.alive();
    }

    fn turned(&self, groups: usize, next_due: Option<chrono::DateTime<chrono::Utc>>) {
        if let Some(m) = &self.metrics {
            m.turned(groups, next_due, chrono::Utc::now());
        }
    }

    fn stopping(&self) {
        self.systemd.stopping();
    }
}

/// What [`serve`] runs with besides the config and the store.
#[derive(Default)]
pub struct Parts {
    /// The metrics, and the listener of `[metrics] listen`.
    pub metrics: Option<(Metrics, TcpListener)>,
    /// The listener of `[events] listen`.
    pub events: Option<TcpListener>,
    /// The instances' holds, shared with the engines that reloads build.
    pub holds: Holds,
}

/// Settles what an earlier run left, then runs the daemon until `shutdown`.
/// Shared by `run` and `demo`.
/// Beside it run the hooks' worker, the metrics server (with a metrics
/// listener) and RyzeAPI's events (with `[events]`).
pub async fn serve(
    config: Config,
    store: Store,
    lifecycle: &dyn Lifecycle,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Reload<Engine>>,
    parts: Parts,
) -> Result<(), Failure> {
    let runtime = |e: &dyn std::fmt::Display| Failure::Runtime(e.to_string());
    let Parts {
        metrics,
        events: events_listener,
        holds,
    } = parts;
    let counters = metrics.as_ref().map(|m| m.0.clone());
    let engine =
        Engine::build(&config, store.clone(), counters.clone(), holds).map_err(|e| runtime(&e))?;
    let (calls, call_rx) = mpsc::channel(1024);
    let listeners = usize::from(metrics.is_some()) + usize::from(events_listener.is_some());
    let wiring = events::Wiring {
        engine: engine.clone(),
        listener: events_listener,
        limits: listener::Limits::for_listeners(listeners),
        calls,
        metrics: counters,
    };
    let sidecars = Sidecars::start(&config, &store, metrics, wiring).map_err(|e| runtime(&e))?;
    // Reloads reach the sidecars on their way to the daemon.
    let (to_daemon, daemon_reloads) = mpsc::channel(1);
    let updater = sidecars.updater();
    let forwarder = tokio::spawn(async move {
        while let Some(reload) = reloads.recv().await {
            updater.reloaded(&reload.config);
            if to_daemon.send(reload).await.is_err() {
                return;
            }
        }
    });
    let stop_sidecars = sidecars.stopper();
    let mut shutdown = Box::pin(async move {
        shutdown.await;
        stop_sidecars.await;
    });
    // Rows a crash or a kill left behind are settled before any new work; a
    // stop asked for meanwhile cuts that short (what is left waits for the
    // next start), so the process still exits within 10 s.
    let settled = tokio::select! {
        settled = engine.settle_leftovers() => Some(settled.map_err(|e| runtime(&e))),
        () = &mut shutdown => None,
    };
    let result = match settled {
        None => {
            tracing::info!("stopped during start-up");
            Ok(())
        }
        Some(Err(e)) => Err(e),
        Some(Ok(_)) => daemon::run(
            config,
            engine,
            store,
            Arc::new(SystemClock),
            lifecycle,
            shutdown,
            Inputs {
                reloads: daemon_reloads,
                calls: call_rx,
            },
        )
        .await
        .map_err(|e| runtime(&e)),
    };
    forwarder.abort();
    sidecars.stop().await;
    result
}

/// On each SIGHUP, reads the config again; a valid one replaces the running
/// one, an invalid one is logged and the running one kept.
async fn reload_on_hangup(
    hangups: Option<tokio::signal::unix::Signal>,
    path: PathBuf,
    store: Store,
    reloads: mpsc::Sender<Reload<Engine>>,
    metrics: Option<Metrics>,
    holds: Holds,
) {
    let Some(mut hangups) = hangups else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
        let config = match Config::load(&path, Purpose::Run) {
            Ok(config) if config.database.name() != store.name() => {
                tracing::error!(
                    "reload refused: database.path and database.url changes need a restart; keeping the running configuration"
                );
                continue;
            }
            Ok(config) => config,
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration: {e}");
                continue;
            }
        };
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        if config.events.is_some() {
            tracing::info!(
                "[events] settings and the instances events come from are read at start; a restart applies changes to them (groups follow the reload)"
            );
        }
        match Engine::build(&config, store.clone(), metrics.clone(), holds.clone()) {
            Ok(rotator) => {
                if reloads.send(Reload { config, rotator }).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!("reload refused: {e}"),
        }
    }
}
