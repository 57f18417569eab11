//! A whole node in the test's process: `invite_rotator::node::run` with the
//! system's clock, against the in-process emulator, its listeners bound on
//! port 0 by the test and handed over (no port to race for). The binary
//! itself (signals, exit codes, the journal's bytes, file modes, kill -9)
//! is tested through subprocesses instead.
//!
//! The node runs on a thread of its own, on a runtime of its own (two
//! workers, as the binary's): `node::run`'s future is not `Send`, so it
//! cannot be a task of the test's runtime. Its listeners and its store are
//! moved onto that runtime.

use super::TestApp;
use invite_rotator::clock::SystemClock;
use invite_rotator::config::Config;
use invite_rotator::node::{self, Listeners, NodeError};
use invite_rotator::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// A listener on a free loopback port, and that port (for the config).
pub async fn loopback() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback listener");
    let port = listener.local_addr().expect("its address").port();
    (listener, port)
}

/// A node running in this process, until [`RunningNode::stop`] (dropped,
/// it is asked to stop and left to finish).
/// (Its addresses are the test's: it bound the listeners, see [`loopback`].)
pub struct RunningNode {
    /// Held open, as `run` holds its SIGHUP watcher's: configs sent here
    /// would replace the running one.
    _reloads: mpsc::Sender<Config>,
    shutdown: Option<oneshot::Sender<()>>,
    /// The node's thread: what `node::run` returned.
    pub thread: Option<std::thread::JoinHandle<Result<(), NodeError>>>,
}

impl RunningNode {
    /// Asks the node to stop (as SIGTERM does) and waits until it stopped:
    /// what `node::run` returned.
    pub async fn stop(mut self) -> Result<(), NodeError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let thread = self.thread.take().expect("the node's thread");
        let joined = tokio::task::spawn_blocking(move || thread.join());
        tokio::time::timeout(Duration::from_secs(60), joined)
            .await
            .expect("the node stops within 60 s")
            .expect("the join did not panic")
            .expect("the node did not panic")
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl TestApp {
    /// Starts a whole node in this process with this app's config (loaded
    /// as `run` loads it) and `listeners` (each served only where the
    /// config has its section).
    pub async fn spawn_node(&self, listeners: Listeners) -> RunningNode {
        let config = self.config();
        // The config's (a test may have pointed it elsewhere, a relay).
        let database = config.database.clone();
        // Off this runtime, onto the node's.
        let std = |l: Option<TcpListener>| l.map(|l| l.into_std().expect("a std listener"));
        let Listeners {
            metrics: m,
            events: e,
            join: j,
            console: c,
        } = listeners;
        let (m, e, j, c) = (std(m), std(e), std(j), std(c));
        let (reloads, reload_rx) = mpsc::channel(1);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let (started, start) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("node".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the node's runtime");
                runtime.block_on(async move {
                    let tokio = |l: Option<std::net::TcpListener>| {
                        l.map(|l| TcpListener::from_std(l).expect("a tokio listener"))
                    };
                    let listeners = Listeners {
                        metrics: tokio(m),
                        events: tokio(e),
                        join: tokio(j),
                        console: tokio(c),
                    };
                    let store = Store::connect(&database).await.expect("store opens");
                    let _ = started.send(());
                    let stop = async move {
                        let _ = stopped.await;
                    };
                    let clock = Arc::new(SystemClock);
                    node::run(config, store, clock, listeners, stop, reload_rx).await
                })
            })
            .expect("the node's thread starts");
        start.await.expect("the node's store opens");
        RunningNode {
            _reloads: reloads,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}
