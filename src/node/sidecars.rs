//! What runs beside the daemon, in `run` and `demo`:
//!
//! - on every node ([`Sidecars`]): the metrics server when `[metrics]
//!   listen` is set, RyzeAPI's events' receivers with `[events]` (every
//!   node takes deliveries into the shared inbox), and the join links'
//!   redirector with `[join]` (every node serves them);
//! - on the active node only ([`Work`], started each time it takes the
//!   lease): the hooks' worker, the pruner of the call log and the raw
//!   events ([`crate::retention`]), and the events' actor and webhook
//!   registration, and the ledger's checkpoints with `[audit]
//!   signing_key_file` ([`crate::audit::signer`]). With SQLite the one
//!   daemon is always the active node.
//!
//! They follow reloads and stop at the daemon's stop signal, so the process
//! still exits within 10 s.

use crate::config::{Config, Group};
use crate::daemon::Call;
use crate::engine::Engine;
use crate::events::{self, Managed, Received, Receiving};
use crate::hooks::{self, Settings};
use crate::metrics::{Metrics, server};
use crate::retention;
use crate::store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

/// The tasks every node runs.
pub struct Sidecars {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    updater: Updater,
    /// Wakes the events' actor when this node stores events.
    wake: Option<Arc<Notify>>,
}

/// Keeps the tasks on the running config. Cloning is shallow.
#[derive(Clone)]
pub struct Updater {
    hooks: watch::Sender<Arc<Settings>>,
    groups: Option<watch::Sender<Arc<[Group]>>>,
    managed: Option<watch::Sender<Arc<Managed>>>,
    join: Option<watch::Sender<Arc<crate::join::Reader>>>,
    console: Option<watch::Sender<Arc<Config>>>,
}

/// The listeners of the sidecars that serve pages.
#[derive(Default)]
pub struct Listening {
    /// `[join] listen`'s.
    pub join: Option<TcpListener>,
    /// `[console] listen`'s.
    pub console: Option<TcpListener>,
}

impl Sidecars {
    /// Starts the metrics server on `metrics`' listener and, with
    /// `[events]`, the events' receivers as `receiving` wires them.
    pub fn start(
        config: &Config,
        store: &Store,
        metrics: Option<(Metrics, TcpListener)>,
        receiving: Receiving,
        listening: Listening,
    ) -> Sidecars {
        let Listening { join, console } = listening;
        let (stop, _) = watch::channel(false);
        let (hooks, _) = watch::channel(Arc::new(settings(config)));
        let mut tasks = JoinSet::new();
        let limits = receiving.limits;
        let mut join_reader = None;
        if let Some(listener) = join {
            let reader = crate::join::Reader::new(receiving.engine.clone(), &config.groups);
            let (tx, rx) = watch::channel(Arc::new(reader));
            join_reader = Some(tx);
            let serving = crate::join::serve(listener, limits, store.clone(), rx, stopped(&stop));
            tasks.spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "the join links' server stopped");
                }
            });
        }
        let console = match (console, &config.console) {
            (Some(listener), Some(settings)) => {
                let (tx, rx) = watch::channel(Arc::new(config.clone()));
                let serving =
                    crate::console::serve(listener, limits, settings.clone(), rx, stopped(&stop));
                tasks.spawn(async move {
                    if let Err(e) = serving.await {
                        tracing::error!(error = %e, "the auditors' console stopped");
                    }
                });
                Some(tx)
            }
            _ => None,
        };
        let received = config.events.as_ref().map(|settings| {
            events::receive(
                settings,
                config,
                store,
                receiving,
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
        let (managed, wake) = match received {
            Some(Received { managed, wake }) => (Some(managed), Some(wake)),
            None => (None, None),
        };
        Sidecars {
            tasks,
            stop,
            updater: Updater {
                hooks,
                groups,
                managed,
                join: join_reader,
                console,
            },
            wake,
        }
    }

    /// Starts the active node's work: the hooks' worker, the pruner, and
    /// the events' actor (asking `calls` for rotations) and registration.
    pub fn start_work(
        &self,
        config: &Config,
        store: &Store,
        engine: &Engine,
        calls: mpsc::Sender<Call>,
        metrics: Option<Metrics>,
    ) -> Result<Work, reqwest::Error> {
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let worker = hooks::Worker::new(
            store.clone(),
            self.updater.hooks.subscribe(),
            config.api.proxy.as_ref(),
        )?;
        tasks.spawn(worker.run(stopped(&stop)));
        let signer = match &config.audit_key {
            Some(key) => Some(crate::audit::signer::Signer::new(
                store.clone(),
                key.clone(),
                self.updater.hooks.subscribe(),
                config.api.proxy.as_ref(),
            )?),
            None => None,
        };
        if let Some(signer) = &signer {
            tasks.spawn(signer.clone().run(stopped(&stop)));
        }
        let keep_events = config.events.as_ref().and_then(|e| e.keep);
        tasks.spawn(retention::run(
            store.clone(),
            config.keep_calls,
            keep_events,
            stopped(&stop),
        ));
        if let (Some(settings), Some(managed), Some(wake)) =
            (&config.events, &self.updater.managed, &self.wake)
        {
            let acting = events::Acting {
                engine,
                managed: managed.subscribe(),
                wake: wake.clone(),
                calls,
                metrics,
            };
            events::act(
                settings,
                config,
                store,
                acting,
                &mut tasks,
                &stop.subscribe(),
            );
        }
        Ok(Work {
            tasks,
            stop,
            signer,
        })
    }

    /// What keeps the tasks on the running config.
    pub fn updater(&self) -> Updater {
        self.updater.clone()
    }

    /// Stops the tasks: three seconds to finish, then they are cut.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        // The listeners drain their connections (up to 2 s), then the join
        // links write the uses they counted.
        finish(self.tasks, Duration::from_secs(3)).await;
    }
}

/// The active node's work (see [`Sidecars::start_work`]).
pub struct Work {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    /// Signs the ledger's checkpoints, with `[audit] signing_key_file`.
    signer: Option<crate::audit::signer::Signer>,
}

impl Work {
    /// Stops it (the daemon has settled what it was doing): the ledger's
    /// head is signed (within 3 s), then the tasks get a second to finish
    /// before they are cut.
    pub async fn stop(self) {
        if let Some(signer) = &self.signer {
            let signed = tokio::time::timeout(Duration::from_secs(3), signer.checkpoint(1)).await;
            if signed.is_err() {
                tracing::warn!("audit: the stop's checkpoint took over 3 s; given up");
            }
        }
        self.stop.send_replace(true);
        finish(self.tasks, Duration::from_secs(1)).await;
    }
}

/// Waits `within` for every task to finish, then cuts the rest and waits
/// for them to be gone: none outlives the node.
async fn finish(mut tasks: JoinSet<()>, within: Duration) {
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(within, all_done).await.is_err() {
        tasks.shutdown().await;
    }
}

impl Updater {
    /// A reloaded config and its engine: new hooks, new groups.
    pub fn reloaded(&self, config: &Config, engine: &Engine) {
        if let Some(join) = &self.join {
            join.send_replace(Arc::new(crate::join::Reader::new(
                engine.clone(),
                &config.groups,
            )));
        }
        self.hooks.send_replace(Arc::new(settings(config)));
        if let Some(groups) = &self.groups {
            groups.send_replace(config.groups.clone());
        }
        if let Some(console) = &self.console {
            console.send_replace(Arc::new(config.clone()));
        }
        if let Some(managed) = &self.managed {
            managed.send_replace(Arc::new(Managed::of(config).reading_with(engine.clone())));
        }
    }
}

fn settings(config: &Config) -> Settings {
    Settings {
        hooks: config.hooks.clone(),
        retry: config.retry.clone(),
        masker: crate::mask::Masker::of(config),
    }
}

fn stopped(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
