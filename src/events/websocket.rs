//! The WebSocket, for hosts RyzeAPI cannot reach (`[events] websocket =
//! true`): one outgoing connection per instance, enabled first if RyzeAPI
//! says it is not, reconnected with backoff. Each text frame is an envelope,
//! stored in the same inbox as the webhook's deliveries (a frame that repeats
//! a delivery has its digest, so it is dropped). What happens while it is
//! down is lost (RyzeAPI keeps nothing for it): events are an accelerator,
//! scheduled rotations go on.

use super::inbox::Inbox;
use super::{Accepted, Managed, SUBSCRIBED, classify_from};
use crate::config::RetryPolicy;
use crate::metrics::Metrics;
use crate::ryzeapi::{Client, Upgrade};
use crate::store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A connection that lasted this long was healthy: the backoff starts over.
const HEALTHY: Duration = Duration::from_secs(60);

/// What one instance's WebSocket needs.
pub(crate) struct Feed {
    /// The instance's client (its token, its rate budget).
    pub client: Client,
    /// Its name.
    pub instance: String,
    /// Where frames go.
    pub inbox: Inbox,
    /// What the running config manages.
    pub managed: watch::Receiver<Arc<Managed>>,
    /// For recording how the connection does.
    pub store: Store,
    /// Backoff between reconnections.
    pub retry: RetryPolicy,
    /// Counts events.
    pub metrics: Option<Metrics>,
}

/// Keeps the WebSocket of one instance open until `stop`.
pub(crate) async fn run(feed: Feed, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut failures = 0u32;
    loop {
        let connected = tokio::time::Instant::now();
        let why = tokio::select! {
            () = &mut stop => return,
            why = session(&feed) => why,
        };
        if connected.elapsed() >= HEALTHY {
            failures = 0;
        }
        failures += 1;
        let wait = crate::backoff::ceiling(&feed.retry, failures);
        tracing::warn!(instance = %feed.instance, error = %why, retry_in_s = wait.as_secs(), "events: WebSocket down; reconnecting");
        if let Err(e) = feed
            .store
            .record_websocket(&feed.instance, Some(&why))
            .await
        {
            tracing::debug!(error = %e, "events: cannot record the WebSocket's state");
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One connection, from the upgrade until it ends; returns why it ended.
async fn session(feed: &Feed) -> String {
    let mut socket = match feed.client.open_websocket().await {
        Upgrade::Open(socket) => socket,
        Upgrade::NotEnabled => {
            tracing::info!(instance = %feed.instance, "events: enabling the WebSocket at RyzeAPI");
            if let Err(e) = feed.client.enable_websocket(&SUBSCRIBED).await.result {
                return format!("cannot enable the WebSocket: {e}");
            }
            match feed.client.open_websocket().await {
                Upgrade::Open(socket) => socket,
                Upgrade::NotEnabled => return "still not enabled".into(),
                Upgrade::Failed(why) => return why,
            }
        }
        Upgrade::Failed(why) => return why,
    };
    tracing::info!(instance = %feed.instance, "events: WebSocket connected");
    if let Err(e) = feed.store.record_websocket(&feed.instance, None).await {
        tracing::debug!(error = %e, "events: cannot record the WebSocket's state");
    }
    loop {
        let frame = match socket.next_frame().await {
            Ok(frame) => frame,
            Err(why) => return why.to_string(),
        };
        let managed = feed.managed.borrow().clone();
        match classify_from(
            frame.as_bytes(),
            "websocket",
            Some(&feed.instance),
            &managed,
        ) {
            Err(why) => {
                tracing::warn!(instance = %feed.instance, %why, "events: a WebSocket frame that is not an event; dropped");
            }
            Ok(accepted) => {
                if let Some(m) = &feed.metrics {
                    m.event(accepted.event(), accepted.kind());
                }
                match accepted {
                    Accepted::Store(event) => {
                        if let Err(e) = feed.inbox.store(event).await {
                            // Nothing to answer on this channel: the event is lost.
                            tracing::error!(instance = %feed.instance, error = %e, "events: cannot store a WebSocket event");
                        }
                    }
                    // Counted above; one line per frame would let a flood
                    // push everything else out of the journal.
                    Accepted::Refused { why, .. } => {
                        tracing::debug!(instance = %feed.instance, kind = why.kind(), "events: a WebSocket frame refused");
                    }
                    Accepted::Ignored { .. } => {}
                }
            }
        }
    }
}
