//! Every HTTP listener the daemon opens (`/metrics` and `/healthz` today; the
//! event receiver, join links and the console later) is served here, with the
//! same defences, so that no local user can starve the rotations through it:
//!
//! - at most [`Limits::max_connections`] connections at once; past that the
//!   listener stops accepting (the kernel queues the rest), so a flood costs
//!   no descriptor of ours;
//! - a client has [`Limits::header_timeout`] to send each request's headers,
//!   idle keep-alive included: half-sent or silent connections are closed;
//! - no connection lives longer than [`Limits::max_lifetime`];
//! - at most [`Limits::max_headers`] headers per request.
//!
//! At start the soft descriptor limit is raised to the hard one
//! ([`raise_fd_limit`]), and what the listeners may hold together is kept
//! [`RESERVE`] descriptors below it: the rotation path (database, API
//! connections, hooks) always has those.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Descriptors kept for everything that is not a listener's connection.
pub const RESERVE: u64 = 256;

/// How one listener defends itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// To send a request's headers, and between requests of a kept-alive
    /// connection.
    pub header_timeout: Duration,
    /// The longest a connection lives, however busy.
    pub max_lifetime: Duration,
    /// Headers per request.
    pub max_headers: usize,
}

impl Limits {
    /// For a listener of `listeners`: 256 connections each at most, and
    /// fewer if the descriptor limit cannot hold them beside [`RESERVE`].
    pub fn for_listeners(listeners: usize) -> Limits {
        let budget = soft_fd_limit().saturating_sub(RESERVE) / listeners.max(1) as u64;
        Limits {
            max_connections: usize::try_from(budget.clamp(16, 256)).unwrap_or(256),
            header_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(300),
            max_headers: 64,
        }
    }
}

/// Binds `listen` (so that an address in use fails the start, not later).
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Serves `app` on `listener` within `limits` until `shutdown`; then stops
/// accepting and gives open connections a second to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap, nothing more is accepted.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or the peer gave up: wait, retry.
                    tracing::warn!(error = %e, "a listener cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(connection);
            let lifetime = tokio::time::sleep(limits.max_lifetime);
            tokio::pin!(lifetime);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = &mut lifetime => {}
                _ = closed.wait_for(|c| *c) => {}
            }
            // Finish the request in flight, then close.
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
        });
    }
    closing.send_replace(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(2), permits.acquire_many(all)).await;
    Ok(())
}

/// The limit on open descriptors (soft, hard), if it can be read.
fn fd_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// The soft limit on open descriptors.
fn soft_fd_limit() -> u64 {
    fd_limit().map_or(1024, |l| l.rlim_cur)
}

/// Raises the soft limit on open descriptors to the hard one (1024 is a
/// common soft limit; systemd's hard one is 524288). Returns the limit in
/// force. Under a seccomp filter that forbids it (the shipped unit sets
/// `LimitNOFILE=` instead) it stays as it was.
pub fn raise_fd_limit() -> u64 {
    let Some(limit) = fd_limit() else {
        return 1024;
    };
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    limit.rlim_cur
}
