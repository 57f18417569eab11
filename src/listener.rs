//! Every HTTP listener the daemon opens (`/metrics` and `/healthz` today; the
//! event receiver, join links and the console later) is served here, with the
//! same defences, so that no local user can starve the rotations through it:
//!
//! - at most [`Limits::max_connections`] connections at once; past that the
//!   listener stops accepting (the kernel queues the rest), so a flood costs
//!   no descriptor of ours;
//! - a client has [`Limits::header_timeout`] to send each request's headers,
//!   idle keep-alive included: half-sent or silent connections are closed;
//! - and then [`Limits::body_timeout`] to send its body: a body still coming
//!   at that bound ends the request with 408 and closes the connection, so
//!   no request holds a connection more than [`REQUEST_TIMEOUT`] while it
//!   arrives, however slowly its bytes trickle (a handler that answers
//!   without reading the body closes the connection too);
//! - no connection lives longer than [`Limits::max_lifetime`];
//! - at most [`Limits::max_headers`] headers per request.
//!
//! Each request carries its peer's address (`ConnectInfo<SocketAddr>`).
//!
//! At start the soft descriptor limit is raised to the hard one
//! ([`raise_fd_limit`]), and what the listeners may hold together is kept
//! [`RESERVE`] descriptors below it: the rotation path (database, API
//! connections, hooks) always has those.

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Descriptors kept for everything that is not a listener's connection.
pub const RESERVE: u64 = 256;
/// To send a request's headers (and to start the next on a kept-alive
/// connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// To send a request's body, once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a request takes to arrive, headers and body.
pub const REQUEST_TIMEOUT: Duration = HEADER_TIMEOUT.saturating_add(BODY_TIMEOUT);

/// How one listener defends itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// To send a request's headers, and between requests of a kept-alive
    /// connection.
    pub header_timeout: Duration,
    /// To send a request's body, from when its headers are in.
    pub body_timeout: Duration,
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
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
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
    let builder = builder(limits);
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
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or the peer gave up: wait, retry.
                    tracing::warn!(error = %e, "a listener cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = connection(
            TokioIo::new(stream),
            peer,
            app.clone(),
            &builder,
            limits,
            closed.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            connection.await;
        });
    }
    closing.send_replace(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(2), permits.acquire_many(all)).await;
    Ok(())
}

/// HTTP/1.1 with `limits`' header bounds.
fn builder(limits: Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers);
    builder
}

/// Serves one connection (`io`, from `peer`) within `limits` until it ends,
/// its lifetime passes or `closed` turns true.
fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    builder: &http1::Builder,
    limits: Limits,
    mut closed: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let app = TowerToHyperService::new(app.clone());
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        let (body, expired) = Deadline::new(body, limits.body_timeout);
        let request = Request::from_parts(parts, Body::new(body));
        async move {
            let response = app.call(request).await?;
            // Whatever the handler made of the failed read (400, 413 ...),
            // the client was too slow; the unread rest closes the connection.
            Ok::<_, Infallible>(if expired.load(Ordering::Relaxed) {
                too_slow()
            } else {
                response
            })
        }
    });
    let connection = builder.serve_connection(io, service);
    async move {
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
    }
}

/// The answer to a body that did not arrive in time.
fn too_slow() -> Response<Body> {
    let mut response = Response::new(Body::from("the request's body came too slowly\n"));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request's body that fails once `deadline` has passed (and raises
/// `expired`), whether it is trickling or silent.
struct Deadline {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl Deadline {
    fn new(inner: Incoming, within: Duration) -> (Deadline, Arc<AtomicBool>) {
        let expired = Arc::new(AtomicBool::new(false));
        let body = Deadline {
            inner,
            deadline: Box::pin(tokio::time::sleep(within)),
            expired: expired.clone(),
        };
        (body, expired)
    }
}

/// A body's bound passed before it was all in.
#[derive(Debug, thiserror::Error)]
#[error("the request's body did not arrive in time")]
struct BodyTimedOut;

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(axum::BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::time::Instant;

    /// One connection to an app that echoes a body's length, served within
    /// the default limits; the client's end.
    fn connect() -> (DuplexStream, watch::Sender<bool>) {
        let app = Router::new().route(
            "/",
            post(|body: Bytes| async move { body.len().to_string() }),
        );
        let limits = Limits::for_listeners(1);
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (closing, closed) = watch::channel(false);
        let peer = SocketAddr::from(([192, 0, 2, 1], 4321));
        let served = connection(
            TokioIo::new(server),
            peer,
            app,
            &builder(limits),
            limits,
            closed,
        );
        tokio::spawn(served);
        (client, closing)
    }

    /// Sends `head`, then a byte every `every` (`bytes` of them at most)
    /// until the server closes; what it answered and how long after `head`.
    async fn trickle(head: &str, every: Duration, bytes: usize) -> (String, Duration) {
        let (mut client, _closing) = connect();
        client.write_all(head.as_bytes()).await.unwrap();
        let sent = Instant::now();
        let (mut reply, mut buf, mut left) = (Vec::new(), [0u8; 512], bytes);
        loop {
            tokio::select! {
                read = client.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(every), if left > 0 => {
                    left -= 1;
                    if client.write_all(b"a").await.is_err() {
                        break;
                    }
                }
            }
        }
        (String::from_utf8_lossy(&reply).into_owned(), sent.elapsed())
    }

    const POST_100: &str = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_is_answered_408_and_closed_at_the_body_bound() {
        let (reply, lived) = trickle(POST_100, Duration::from_millis(100), 100).await;
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(
            lived >= BODY_TIMEOUT && lived < BODY_TIMEOUT + Duration::from_millis(100),
            "{lived:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_answered_408_at_the_body_bound() {
        let (reply, lived) = trickle(POST_100, Duration::from_secs(1), 0).await;
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert_eq!(lived, BODY_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_in_before_the_bound_is_served() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n";
        let (reply, lived) = trickle(head, Duration::from_millis(450), 10).await;
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.ends_with("\r\n\r\n10"),
            "{reply}"
        );
        assert!(lived < BODY_TIMEOUT, "{lived:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn trickled_headers_are_cut_off_at_the_header_bound() {
        let (reply, lived) = trickle(
            "POST / HTTP/1.1\r\nX-Slow: ",
            Duration::from_millis(100),
            1000,
        )
        .await;
        assert!(!reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            lived <= HEADER_TIMEOUT + Duration::from_millis(100),
            "{lived:?}"
        );
        assert_eq!(REQUEST_TIMEOUT, Duration::from_secs(10));
    }
}
