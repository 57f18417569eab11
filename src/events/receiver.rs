//! The webhook receiver: RyzeAPI's deliveries, on the path of `public_url`
//! (and that path plus `/{event}`, for `byEvents`), behind every listener's
//! defences ([`crate::listener`]).
//!
//! Answers: 401 without `Authorization: Bearer <secret>` (their SHA-256
//! digests compared in constant time, `secret::same_secret`), 413 over
//! 1 MiB, 408 for a body slower than the listener's bound, 400 for a body
//! that is not an envelope, 403 for an envelope whose `instanceData.token`
//! is not the configured token of the instance it names, or whose instance
//! is not the group's (counted, not stored: see [`super::authentic`]), 503
//! when the event cannot be stored (RyzeAPI retries), and 200 otherwise:
//! once the event is committed to the inbox, or at once for events and
//! groups invite-rotator does not act on (counted, not stored).
//!
//! A refusal is a 403 rather than a 2xx: the secret was right, so either
//! the secret leaked or an instance's token changed at RyzeAPI and not in
//! the config; a 4xx shows in RyzeAPI's delivery log and dead-letter queue
//! where a 2xx would hide it. Its retries cost a digest each, and store
//! nothing.

use super::inbox::Inbox;
use super::{Accepted, Managed, classify};
use crate::metrics::Metrics;
use crate::secret::Token;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use std::sync::Arc;
use tokio::sync::watch;

/// The largest delivery accepted.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
struct Receiver {
    expected: Arc<Vec<u8>>,
    inbox: Inbox,
    managed: watch::Receiver<Arc<Managed>>,
    metrics: Option<Metrics>,
}

/// The receiver's routes, for `path` (the path of `public_url`).
pub(crate) fn router(
    path: &str,
    secret: &Token,
    inbox: Inbox,
    managed: watch::Receiver<Arc<Managed>>,
    metrics: Option<Metrics>,
) -> Router {
    let base = path.trim_end_matches('/');
    let receiver = Receiver {
        expected: Arc::new(format!("Bearer {}", secret.expose()).into_bytes()),
        inbox,
        managed,
        metrics,
    };
    let by_event = format!("{base}/{{event}}");
    let base = if base.is_empty() { "/" } else { base };
    Router::new()
        .route(base, post(deliver))
        .route(&by_event, post(deliver))
        .with_state(receiver)
}

async fn deliver(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, &'static str) {
    let given = headers
        .get(header::AUTHORIZATION)
        .map_or(&b""[..], |v| v.as_bytes());
    if !crate::secret::same_secret(given, &r.expected) {
        return (StatusCode::UNAUTHORIZED, "unauthorized\n");
    }
    // Read only once authorized: a stranger's body is never buffered.
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "over 1 MiB\n");
    };
    let managed = r.managed.borrow().clone();
    let accepted = match classify(&body, "webhook", &managed) {
        Err(_) => return (StatusCode::BAD_REQUEST, "not an event envelope\n"),
        Ok(accepted) => accepted,
    };
    if let Some(m) = &r.metrics {
        m.event(accepted.event(), accepted.kind());
    }
    match accepted {
        Accepted::Ignored { .. } => (StatusCode::OK, "ignored\n"),
        Accepted::Refused { .. } => (
            StatusCode::FORBIDDEN,
            "refused: not the named instance's token, or not its group\n",
        ),
        Accepted::Store(event) => match r.inbox.store(event).await {
            Ok(_) => (StatusCode::OK, "accepted\n"),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the event now\n",
            ),
        },
    }
}
