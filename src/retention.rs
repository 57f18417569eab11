//! Retention: the history database does not grow without end. Rotations are
//! the audit trail and are kept for good; the per-call log and the hook
//! notifications that were delivered or given up are pruned once they are
//! older than `[database] keep_calls` (90 days unless set; `"forever"` keeps
//! them), in small batches, shortly after start and then every hour.

use crate::store::{Pruned, Store};
use chrono::Utc;
use std::future::Future;
use std::time::Duration;

/// Rows per table per batch: a batch holds the store for milliseconds.
pub const BATCH: u32 = 500;
/// How often the pruner looks again.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Pause between batches, so that rotations queued on the store go first.
const BREATHE: Duration = Duration::from_millis(50);

/// Prunes everything older than `keep` now, batch by batch; returns what
/// went. Stops early (what is left waits for the next pass) on a store error.
pub async fn prune(store: &Store, keep: Duration) -> Pruned {
    let mut total = Pruned::default();
    let Some(before) = chrono::Duration::from_std(keep)
        .ok()
        .and_then(|keep| Utc::now().checked_sub_signed(keep))
    else {
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
        if let Err(e) = store.release_free_pages().await {
            tracing::debug!(error = %e, "retention: cannot release free pages");
        }
        tracing::info!(
            calls = total.calls,
            deliveries = total.deliveries,
            "retention: pruned the call log and finished hook notifications"
        );
    }
    total
}

/// Prunes now and then every [`EVERY`] until `shutdown`; `keep` of `None`
/// keeps everything (the task then only waits).
pub async fn run(store: Store, keep: Option<Duration>, shutdown: impl Future<Output = ()>) {
    let Some(keep) = keep else {
        shutdown.await;
        return;
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            _ = prune(&store, keep) => {}
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
