//! The running node, as a library: the daemon and everything beside it
//! (the events' receiver, the join links, the console, the metrics, the
//! hooks' worker, the ledger's signer, the lease). `run` and `demo` wire it
//! with the system's clock and the listeners the config names; tests start
//! it in their own process, with listeners on port 0.
//!
//! On SQLite the one daemon is always the active node. On PostgreSQL this
//! node keeps or waits for the lease ([`crate::ha`]): while it stands by it
//! only receives events and serves `/healthz`; each time it takes the
//! lease it settles what the previous active node left, then schedules
//! and rotates until it loses the lease (it stands by again) or is told to
//! stop (it gives the lease up once its rotations in flight are done).

mod sidecars;

use crate::clock::Clock;
use crate::config::{Config, Database};
use crate::daemon::{self, Inputs, Lifecycle, Reload};
use crate::engine::{Engine, EngineError};
use crate::events;
use crate::ha::{self, Node, Role};
use crate::listener;
use crate::metrics::Metrics;
use crate::ryzeapi::Holds;
use crate::store::{Store, StoreError};
use crate::systemd::Systemd;
use sidecars::Sidecars;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How often a standby tells its supervisor it is alive.
const STANDBY_PULSE: Duration = Duration::from_secs(5);

/// The node's listeners, bound before it starts (an address in use fails
/// the start, not later; tests bind port 0). Each is served only when the
/// config has its section.
#[derive(Default)]
pub struct Listeners {
    /// `[metrics] listen`'s: `/metrics` and `/healthz`.
    pub metrics: Option<TcpListener>,
    /// `[events] listen`'s: RyzeAPI's webhook and the WebSocket's health.
    pub events: Option<TcpListener>,
    /// `[join] listen`'s: the join links.
    pub join: Option<TcpListener>,
    /// `[console] listen`'s: the auditors' console.
    pub console: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address the config names, logging each.
    pub async fn bind(config: &Config) -> Result<Listeners, NodeError> {
        let events = config.events.as_ref().and_then(|e| e.listen);
        let join = config.join.as_ref().map(|j| j.listen);
        let console = config.console.as_ref().map(|c| c.listen);
        let metrics = config.metrics_listen;
        Ok(Listeners {
            metrics: bind("metrics.listen", metrics, "serving /metrics and /healthz").await?,
            events: bind("events.listen", events, "receiving RyzeAPI's events").await?,
            join: bind("join.listen", join, "serving join links").await?,
            console: bind("console.listen", console, "serving the auditors' console").await?,
        })
    }

    fn count(&self) -> usize {
        [&self.metrics, &self.events, &self.join, &self.console]
            .iter()
            .filter(|l| l.is_some())
            .count()
    }
}

async fn bind(
    key: &'static str,
    listen: Option<SocketAddr>,
    what: &str,
) -> Result<Option<TcpListener>, NodeError> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let listener = listener::bind(listen)
        .await
        .map_err(|source| NodeError::Listen {
            key,
            listen,
            source,
        })?;
    tracing::info!(%listen, "{what}");
    Ok(Some(listener))
}

/// Why a node could not start, or stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A listener could not be bound.
    #[error("{key}: cannot listen on {listen}: {source}")]
    Listen {
        /// The config key naming the address.
        key: &'static str,
        /// The address.
        listen: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The RyzeAPI clients could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The hooks' or the signer's HTTP client could not be built.
    #[error("cannot build an HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The history failed (on SQLite, the daemon's failure is the node's).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs this node until `shutdown`: the sidecars every node runs, and,
/// while it is the active node, the settlement of what was left, the
/// daemon and the active node's work. Each config received on `reloads`
/// replaces the running one (one naming another database, or whose RyzeAPI
/// clients cannot be built, is refused and logged). Every task it starts
/// is stopped and awaited before it returns.
pub async fn run(
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Config>,
) -> Result<(), NodeError> {
    let limits = listener::Limits::for_listeners(listeners.count());
    let Listeners {
        metrics,
        events: events_listener,
        join,
        console,
    } = listeners;
    let metrics = metrics.map(|listener| (Metrics::new(), listener));
    let counters = metrics.as_ref().map(|m| m.0.clone());
    let lifecycle = Service {
        systemd: Systemd::from_env(),
        metrics: counters.clone(),
        clock: clock.clone(),
    };
    let lifecycle = &lifecycle;
    let holds = Holds::default();
    let engine = Engine::build(&config, store.clone(), counters.clone(), holds.clone())?;
    let receiving = events::Receiving {
        engine: engine.clone(),
        listener: events_listener,
        limits,
        metrics: counters.clone(),
    };
    let listening = sidecars::Listening { join, console };
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
                since: clock.now(),
            });
            (Some(always), roles, None)
        }
    };

    // Reloads reach the sidecars at once, and the daemon while it runs;
    // a spell started later takes the latest config.
    let latest = Arc::new(Mutex::new((config, engine)));
    let to_daemon: Arc<Mutex<Option<mpsc::Sender<Reload<Engine>>>>> = Arc::default();
    let (forwarder_stop, mut forwarder_stopped) = watch::channel(false);
    let forwarder = {
        let (latest, to_daemon, updater) = (latest.clone(), to_daemon.clone(), sidecars.updater());
        let reloading = Reloading {
            store: store.clone(),
            metrics: counters.clone(),
            holds,
        };
        tokio::spawn(async move {
            loop {
                let config = tokio::select! {
                    config = reloads.recv() => match config {
                        Some(config) => config,
                        None => break,
                    },
                    _ = forwarder_stopped.wait_for(|s| *s) => break,
                };
                let Some(reload) = reloading.accept(config) else {
                    continue;
                };
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
        let work = match sidecars.start_work(&config, &store, &engine, calls, counters.clone()) {
            Ok(work) => work,
            Err(e) => {
                result = Err(NodeError::Http(e));
                break;
            }
        };
        // Whether the spell ended because the node stepped down (else a stop).
        let stepped_down = AtomicBool::new(false);
        let mut active_roles = roles.clone();
        let spell_over = async {
            tokio::select! {
                () = &mut shutdown => {}
                _ = active_roles.wait_for(|r| !r.is_active()) => {
                    stepped_down.store(true, Ordering::Relaxed);
                }
            }
        };
        let inputs = Inputs {
            reloads: reload_rx,
            calls: call_rx,
        };
        let spell = active_spell(
            config,
            engine,
            store.clone(),
            clock.clone(),
            lifecycle,
            spell_over,
            inputs,
        )
        .await;
        *to_daemon.lock().unwrap_or_else(|p| p.into_inner()) = None;
        work.stop().await;
        match (spell, keeper.is_some()) {
            (Ok(()), _) => {}
            // One node on SQLite: its daemon's failure is the process's.
            (Err(e), false) => {
                result = Err(NodeError::Store(e));
                break;
            }
            // A node on PostgreSQL: a failing database costs it the lease,
            // and it goes on standing by.
            (Err(e), true) => {
                tracing::error!(error = %e, "the active spell ended with an error; standing by")
            }
        }
        if !stepped_down.load(Ordering::Relaxed) || keeper.is_none() {
            break;
        }
        tracing::info!("standing by: another node may take the lease");
    }
    // Stopped: the lease goes to a standby now that nothing is in flight.
    keeper_stop.send_replace(true);
    if let Some(mut keeper) = keeper {
        // The lease is given up within 2 s, or left to lapse.
        if tokio::time::timeout(Duration::from_secs(2), &mut keeper)
            .await
            .is_err()
        {
            keeper.abort();
            let _ = keeper.await;
        }
    }
    forwarder_stop.send_replace(true);
    let _ = forwarder.await;
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
    clock: Arc<dyn Clock>,
    lifecycle: &dyn Lifecycle,
    over: impl Future<Output = ()>,
    inputs: Inputs<Engine>,
) -> Result<(), StoreError> {
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
            daemon::run(config, engine, store, clock, lifecycle, &mut over, inputs).await
        }
    }
}

/// What a reload needs to build the engine of a new config.
struct Reloading {
    store: Store,
    metrics: Option<Metrics>,
    holds: Holds,
}

impl Reloading {
    /// The reload of `config`, or `None` (logged) when it cannot run.
    fn accept(&self, config: Config) -> Option<Reload<Engine>> {
        if config.database.name() != self.store.name() {
            tracing::error!(
                "reload refused: database.path and database.url changes need a restart; keeping the running configuration"
            );
            return None;
        }
        if config.events.is_some() {
            tracing::info!(
                "[events] settings and the instances events come from are read at start; a restart applies changes to them (groups follow the reload)"
            );
        }
        match Engine::build(
            &config,
            self.store.clone(),
            self.metrics.clone(),
            self.holds.clone(),
        ) {
            Ok(rotator) => Some(Reload { config, rotator }),
            Err(e) => {
                tracing::error!("reload refused: {e}");
                None
            }
        }
    }
}

/// The node under systemd, giving back start-up's transient memory once
/// ready, and telling the metrics of each turn.
struct Service {
    systemd: Systemd,
    metrics: Option<Metrics>,
    clock: Arc<dyn Clock>,
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
            m.turned(groups, next_due, self.clock.now());
        }
    }

    fn stopping(&self) {
        self.systemd.stopping();
    }
}

/// `run`'s future can be spawned as a task: it is `Send` (checked when
/// the tests are built).
#[cfg(test)]
#[allow(dead_code)]
fn run_is_send(
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
    listeners: Listeners,
    reloads: mpsc::Receiver<Config>,
) {
    fn send<F: Future + Send>(_: F) {}
    send(run(
        config,
        store,
        clock,
        listeners,
        std::future::pending(),
        reloads,
    ));
}
