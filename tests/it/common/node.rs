//! A whole node in the test's process: `invite_rotator::node::run` with the
//! system's clock, against the in-process emulator, its listeners bound on
//! port 0 by the test and handed over (no port to race for). The binary
//! itself (signals, exit codes, the journal's bytes, file modes, kill -9)
//! is tested through subprocesses instead.
//!
//! The node runs on a thread of its own, on a runtime of its own (two
//! workers, as the binary's): `node::run`'s future is not `Send`, so it
//! cannot be a task of the test's runtime. Its listeners and its store are
//! moved onto that runtime. Its log (what its threads log at `info` and
//! above, in the binary's line format) goes to `node.log` in the app's
//! directory, which the app searches for the token and every issued code
//! when it goes, as it searches a subprocess daemon's.

use super::TestApp;
use invite_rotator::clock::SystemClock;
use invite_rotator::config::Config;
use invite_rotator::node::{self, Listeners, NodeError};
use invite_rotator::store::Store;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};

/// Each node's log file, by the name of its threads.
static LOGS: LazyLock<Mutex<HashMap<String, Arc<std::fs::File>>>> = LazyLock::new(Mutex::default);

/// Installs (once) the test binary's global subscriber: it writes what a
/// node's threads log to that node's file, and drops everything else.
fn capture_node_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let on_a_node =
            filter_fn(|meta| *meta.level() <= tracing::Level::INFO && node_log().is_some());
        let lines = tracing_subscriber::fmt::layer()
            .with_writer(NodeLogs)
            .with_target(false)
            .with_ansi(false)
            .with_filter(on_a_node);
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(lines));
    });
}

/// The log file of the node whose thread this is.
fn node_log() -> Option<Arc<std::fs::File>> {
    let thread = std::thread::current();
    let name = thread.name()?;
    if !name.starts_with("ir-node-") {
        return None;
    }
    LOGS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned()
}

/// Makes writers to the current node's log.
struct NodeLogs;

impl<'a> MakeWriter<'a> for NodeLogs {
    type Writer = NodeLog;

    fn make_writer(&'a self) -> NodeLog {
        NodeLog(node_log())
    }
}

/// A writer to one node's log (or nowhere).
struct NodeLog(Option<Arc<std::fs::File>>);

impl Write for NodeLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(file) => (&**file).write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
    /// Its threads' name, under which its log is found.
    name: String,
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
        let result = tokio::time::timeout(Duration::from_secs(60), joined)
            .await
            .expect("the node stops within 60 s")
            .expect("the join did not panic")
            .expect("the node did not panic");
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
        result
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
    /// Where [`TestApp::spawn_node`]'s nodes write their log.
    pub fn node_log(&self) -> std::path::PathBuf {
        self.dir.path().join("node.log")
    }

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
        capture_node_logs();
        static NODES: AtomicUsize = AtomicUsize::new(0);
        let name = format!("ir-node-{}", NODES.fetch_add(1, Ordering::Relaxed));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_log())
            .expect("the node's log opens");
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), Arc::new(log));
        let thread_name = name.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(name)
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
            name: thread_name,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}
