//! Retention: the history database does not grow without end. Rotations are
//! the audit trail and are kept for good; the per-call log and the hook
//! notifications that were delivered or given up are pruned once they are
//! older than `[database] keep_calls` (90 days unless set; `"forever"` keeps
//! them), and RyzeAPI's raw events once older than `[events] keep` (30 days
//! unless set), in small batches, shortly after start and then every hour.

use crate::store::{Pruned, Store};
use chrono::Utc;
use std::future::Future;
use std::time::Duration;

/// Rows per table per batch: a batch holds the store for milliseconds.
pub(crate) const BATCH: u32 = 500;
/// How often the pruner looks again.
pub(crate) const EVERY: Duration = Duration::from_secs(3600);
/// Pause between batches, so that rotations queued on the store go first.
const BREATHE: Duration = Duration::from_millis(50);

/// Prunes everything older than `keep` now, batch by batch; returns what
/// went. Stops early (what is left waits for the next pass) on a store error.
pub(crate) async fn prune(store: &Store, keep: Duration) -> Pruned {
    let mut total = Pruned::default();
    let Some(before) = cutoff(keep) else {
        return total;
    };
    loop {
        match store.prune_batch(before, BATCH).await {
            Ok(batch) => {
                total.calls += batch.calls;
                total.deliveries += batch.deliveries;
                // A batch looks at the oldest rows by id; young ones among
                // them stay, so only a batch that removed nothing ends it.
                if batch.total() == 0 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot prune the call log; trying again later");
                return total;
            }
        }
        tokio::time::sleep(BREATHE).await;
    }
    if total.total() > 0 {
        release(store).await;
        tracing::info!(
            calls = total.calls,
            deliveries = total.deliveries,
            "retention: pruned the call log and finished hook notifications"
        );
    }
    total
}

/// Prunes RyzeAPI's raw events older than `keep`, batch by batch; returns
/// how many went (or lost their data).
pub(crate) async fn prune_events(store: &Store, keep: Duration) -> u64 {
    let Some(before) = cutoff(keep) else {
        return 0;
    };
    let mut events = 0;
    loop {
        match store.prune_events(before, BATCH).await {
            Ok(0) => break,
            Ok(n) => events += n,
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot prune the events; trying again later");
                break;
            }
        }
        tokio::time::sleep(BREATHE).await;
    }
    if events > 0 {
        tracing::info!(events, "retention: pruned RyzeAPI's raw events");
        release(store).await;
    }
    events
}

fn cutoff(keep: Duration) -> Option<chrono::DateTime<Utc>> {
    chrono::Duration::from_std(keep)
        .ok()
        .and_then(|keep| Utc::now().checked_sub_signed(keep))
}

async fn release(store: &Store) {
    if let Err(e) = store.release_free_pages().await {
        tracing::debug!(error = %e, "retention: cannot release free pages");
    }
}

/// Prunes now and then every [`EVERY`] until `shutdown`: the call log after
/// `keep_calls`, the raw events after `keep_events`; `None` keeps them.
pub(crate) async fn run(
    store: Store,
    keep_calls: Option<Duration>,
    keep_events: Option<Duration>,
    shutdown: impl Future<Output = ()>,
) {
    if keep_calls.is_none() && keep_events.is_none() {
        shutdown.await;
        return;
    }
    tokio::pin!(shutdown);
    loop {
        let pass = async {
            if let Some(keep) = keep_calls {
                prune(&store, keep).await;
            }
            if let Some(keep) = keep_events {
                prune_events(&store, keep).await;
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            () = pass => {}
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
