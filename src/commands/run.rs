//! `run`: the daemon, until SIGTERM or SIGINT; SIGHUP reloads the config.

use super::serve::{Parts, serve};
use super::{Failure, load_config};
use crate::config::{Config, Purpose};
use crate::daemon::{Lifecycle, Reload};
use crate::engine::Engine;
use crate::exit::Exit;
use crate::listener;
use crate::metrics::Metrics;
use crate::ryzeapi::Holds;
use crate::signals;
use crate::store::{LockError, Store};
use crate::systemd::Systemd;
use std::path::{Path, PathBuf};
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
    let join = match &config.join {
        Some(join) => {
            let listen = join.listen;
            let listener = listener::bind(listen).await.map_err(|e| {
                Failure::Runtime(format!("join.listen: cannot listen on {listen}: {e}"))
            })?;
            tracing::info!(%listen, "serving join links");
            Some(listener)
        }
        None => None,
    };
    let console = match &config.console {
        Some(console) => {
            let listen = console.listen;
            let listener = listener::bind(listen).await.map_err(|e| {
                Failure::Runtime(format!("console.listen: cannot listen on {listen}: {e}"))
            })?;
            tracing::info!(%listen, "serving the auditors' console");
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
        join,
        console,
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
