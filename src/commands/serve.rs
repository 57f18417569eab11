//! The daemon on one node, with everything beside it: shared by `run` and
//! `demo`.
//!
//! On SQLite the one daemon is always the active node. On PostgreSQL this
//! node keeps or waits for the lease ([`crate::ha`]): while it stands by it
//! only receives events and serves `/healthz`; each time it takes the
//! lease it settles what the previous active node left, then schedules
//! and rotates until it loses the lease (it stands by again) or is told to
//! stop (it gives the lease up once its rotations in flight are done).

use super::Failure;
use super::sidecars::Sidecars;
use crate::clock::SystemClock;
use crate::config::{Config, Database};
use crate::daemon::{self, Inputs, Lifecycle, Reload};
use crate::engine::Engine;
use crate::events;
use crate::ha::{self, Node, Role};
use crate::listener;
use crate::metrics::Metrics;
use crate::ryzeapi::Holds;
use crate::store::Store;
use std::cell::Cell;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How often a standby tells its supervisor it is alive.
const STANDBY_PULSE: Duration = Duration::from_secs(5);

/// What [`serve`] runs with besides the config and the store.
#[derive(Default)]
pub struct Parts {
    /// The metrics, and the listener of `[metrics] listen`.
    pub metrics: Option<(Metrics, TcpListener)>,
    /// The listener of `[events] listen`.
    pub events: Option<TcpListener>,
    /// The listener of `[join] listen`.
    pub join: Option<TcpListener>,
    /// The listener of `[console] listen`.
    pub console: Option<TcpListener>,
    /// The instances' holds, shared with the engines that reloads build.
    pub holds: Holds,
}

/// Why an active spell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Shutdown,
    SteppedDown,
}

/// Runs this node until `shutdown`: the sidecars every node runs, and,
/// while it is the active node, the settlement of what was left, the
/// daemon and the active node's work. Reloads reach all of them.
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
        join,
        console,
        holds,
    } = parts;
    let counters = metrics.as_ref().map(|m| m.0.clone());
    let engine =
        Engine::build(&config, store.clone(), counters.clone(), holds).map_err(|e| runtime(&e))?;
    let listeners = usize::from(metrics.is_some())
        + usize::from(events_listener.is_some())
        + usize::from(join.is_some())
        + usize::from(console.is_some());
    let receiving = events::Receiving {
        engine: engine.clone(),
        listener: events_listener,
        limits: listener::Limits::for_listeners(listeners),
        metrics: counters.clone(),
    };
    let listening = super::sidecars::Listening { join, console };
    let sidecars = Sidecars::start(&config, &store, metrics, receiving, listening);

    // This node's role: the lease's, on PostgreSQL; always active on SQLite.
    let (keeper_stop, keeper_stopped) = watch::channel(false);
    let (_always, mut roles, keeper) = match &config.database {
        Database::Postgres(_) => {
            let node = Arc::new(Node::this_process());
            tracing::info!(node = %node.id, lease_s = config.ha.lease.as_secs_f64(), "a node on PostgreSQL: standing by until this node holds the lease");
            let stop = async move {
                let mut stopped = keeper_stopped;
                let _ = stopped.wait_for(|s| *s).await;
            };
            let (roles, task) =
                ha::spawn(store.clone(), node, config.ha.lease, counters.clone(), stop);
            (None, roles, Some(task))
        }
        Database::Sqlite(_) => {
            let (always, roles) = watch::channel(Role::Active {
                term: 0,
                since: chrono::Utc::now(),
            });
            (Some(always), roles, None)
        }
    };

    // Reloads reach the sidecars at once, and the daemon while it runs;
    // a spell started later takes the latest config.
    let latest = Arc::new(Mutex::new((config, engine)));
    let to_daemon: Arc<Mutex<Option<mpsc::Sender<Reload<Engine>>>>> = Arc::default();
    let forwarder = {
        let (latest, to_daemon, updater) = (latest.clone(), to_daemon.clone(), sidecars.updater());
        tokio::spawn(async move {
            while let Some(reload) = reloads.recv().await {
                updater.reloaded(&reload.config, &reload.rotator);
                *latest.lock().unwrap_or_else(|p| p.into_inner()) =
                    (reload.config.clone(), reload.rotator.clone());
                let running = to_daemon.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if let Some(tx) = running {
                    let _ = tx.send(reload).await;
                }
            }
        })
    };

    tokio::pin!(shutdown);
    let mut result = Ok(());
    let mut told_ready = false;
    loop {
        // Standing by: until this node holds the lease, or a stop.
        let mut stopping = false;
        while !roles.borrow().is_active() {
            if !told_ready {
                lifecycle.ready();
                told_ready = true;
            }
            tokio::select! {
                () = &mut shutdown => {
                    stopping = true;
                    break;
                }
                changed = roles.changed() => if changed.is_err() { stopping = true; break },
                () = tokio::time::sleep(STANDBY_PULSE) => lifecycle.alive(),
            }
        }
        if stopping {
            break;
        }
        let (config, engine) = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (calls, call_rx) = mpsc::channel(1024);
        let (reload_tx, reload_rx) = mpsc::channel(1);
        *to_daemon.lock().unwrap_or_else(|p| p.into_inner()) = Some(reload_tx);
        let work = sidecars
            .start_work(&config, &store, &engine, calls, counters.clone())
            .map_err(|e| runtime(&e))?;
        let ended = Cell::new(Ended::Shutdown);
        let mut active_roles = roles.clone();
        let spell_over = async {
            tokio::select! {
                () = &mut shutdown => ended.set(Ended::Shutdown),
                _ = active_roles.wait_for(|r| !r.is_active()) => ended.set(Ended::SteppedDown),
            }
        };
        let inputs = Inputs {
            reloads: reload_rx,
            calls: call_rx,
        };
        let spell =
            active_spell(config, engine, store.clone(), lifecycle, spell_over, inputs).await;
        *to_daemon.lock().unwrap_or_else(|p| p.into_inner()) = None;
        work.stop().await;
        match (spell, keeper.is_some()) {
            (Ok(()), _) => {}
            // One node on SQLite: its daemon's failure is the process's.
            (Err(e), false) => {
                result = Err(runtime(&e));
                break;
            }
            // A node on PostgreSQL: a failing database costs it the lease,
            // and it goes on standing by.
            (Err(e), true) => {
                tracing::error!(error = %e, "the active spell ended with an error; standing by")
            }
        }
        if ended.get() == Ended::Shutdown || keeper.is_none() {
            break;
        }
        tracing::info!("standing by: another node may take the lease");
    }
    // Stopped: the lease goes to a standby now that nothing is in flight.
    keeper_stop.send_replace(true);
    if let Some(keeper) = keeper {
        let _ = tokio::time::timeout(Duration::from_secs(2), keeper).await;
    }
    forwarder.abort();
    sidecars.stop().await;
    result
}

/// One spell as the active node: settles what was left behind (cut short
/// by `over`, what is left then waits for the next spell), then runs the
/// daemon until `over`.
async fn active_spell(
    config: Config,
    engine: Engine,
    store: Store,
    lifecycle: &dyn Lifecycle,
    over: impl Future<Output = ()>,
    inputs: Inputs<Engine>,
) -> Result<(), crate::store::StoreError> {
    tokio::pin!(over);
    // Rows a crash, a kill or the previous active node left behind are
    // settled before any new work; a stop asked for meanwhile cuts that
    // short, so the process still exits within 10 s.
    let settled = tokio::select! {
        settled = engine.settle_leftovers() => Some(settled),
        () = &mut over => None,
    };
    match settled {
        None => {
            tracing::info!("stopped while settling what was left");
            Ok(())
        }
        Some(Err(e)) => Err(e),
        Some(Ok(_)) => {
            daemon::run(
                config,
                engine,
                store,
                Arc::new(SystemClock),
                lifecycle,
                &mut over,
                inputs,
            )
            .await
        }
    }
}
