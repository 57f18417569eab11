//! `run`: the daemon, until SIGTERM or SIGINT; SIGHUP reloads the config.

use super::{Failure, load_config};
use crate::clock::SystemClock;
use crate::config::{Config, Purpose};
use crate::exit::Exit;
use crate::listener;
use crate::node::{self, Listeners};
use crate::signals;
use crate::store::{LockError, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

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
    let listeners = Listeners::bind(&config)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let (reloads, reload_rx) = mpsc::channel(1);
    let (watcher_stop, watcher_stopped) = oneshot::channel();
    let watcher = tokio::spawn(reload_on_hangup(
        hangups,
        path.to_owned(),
        reloads,
        watcher_stopped,
    ));
    let clock = Arc::new(SystemClock);
    let result = node::run(config, store, clock, listeners, shutdown, reload_rx).await;
    let _ = watcher_stop.send(());
    let _ = watcher.await;
    result
        .map(|()| Exit::Success)
        .map_err(|e| Failure::Runtime(e.to_string()))
}

/// On each SIGHUP, reads the config again; a valid one goes to the node
/// (which may still refuse it), an invalid one is logged and the running
/// one kept.
async fn reload_on_hangup(
    hangups: Option<tokio::signal::unix::Signal>,
    path: PathBuf,
    reloads: mpsc::Sender<Config>,
    stop: oneshot::Receiver<()>,
) {
    let Some(mut hangups) = hangups else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            hangup = hangups.recv() => if hangup.is_none() { return },
            _ = &mut stop => return,
        }
        tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
        let config = match Config::load(&path, Purpose::Run) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration: {e}");
                continue;
            }
        };
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        if reloads.send(config).await.is_err() {
            return;
        }
    }
}
