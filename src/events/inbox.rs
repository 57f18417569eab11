//! The inbox's writer: every accepted event goes into the history database
//! before its delivery is answered, and many deliveries share one commit.
//!
//! SQLite syncs each commit to disk (`synchronous=FULL`), a millisecond or
//! more: one commit per delivery would cap deliveries at a few hundred a
//! second. So one task takes whatever deliveries are waiting, writes them in
//! one transaction, and only then answers each: under load the batches grow,
//! and the rate grows with them, while a lone delivery still waits only for
//! its own commit.
//!
//! Each event's data is masked here, just before it is stored (see
//! [`crate::mask`]): every configured token and secret, whatever field
//! quotes it and whatever the envelope says. Codes stay, even those the
//! history knows: the actor reads the reported link from the stored data,
//! and a link that is invite-rotator's own reset, or the code a rotation in
//! flight read as live, is told apart by that very code (masked, it would
//! be "no usable link" and an outside change would go unrecorded). The
//! database holds every code anyway; what shows the data (`events list`)
//! masks the codes the history knows.

use super::Managed;
use crate::store::{NewEvent, Store, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// The most deliveries one commit takes.
const BATCH: usize = 256;

/// Whether a stored event was new (a repeat is dropped), or why it could
/// not be stored.
pub(crate) type Stored = Result<bool, InboxError>;

/// Why an event could not be stored.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum InboxError {
    /// Every writer is gone (the node is stopping).
    #[error("the inbox is closed")]
    Closed,
    /// The writer stopped before it answered.
    #[error("the inbox writer stopped")]
    Stopped,
    /// The database refused the batch the event was in (shared by every
    /// event of that batch).
    #[error(transparent)]
    Store(Arc<StoreError>),
}

/// Hands events to the writer. Cloning is shallow.
#[derive(Clone)]
pub(crate) struct Inbox {
    to_writer: mpsc::Sender<(NewEvent, oneshot::Sender<Stored>)>,
}

impl Inbox {
    /// Starts the writer on `store`, which wakes `stored` after each commit
    /// of new events, and masks their data with `managed`'s masker; it ends
    /// when every `Inbox` is dropped.
    pub(crate) fn start(
        store: Store,
        stored: Arc<Notify>,
        managed: watch::Receiver<Arc<Managed>>,
    ) -> Inbox {
        let (to_writer, from_callers) = mpsc::channel(4 * BATCH);
        tokio::spawn(write(store, from_callers, stored, managed));
        Inbox { to_writer }
    }

    /// Stores `event`; returns once it is committed (or could not be).
    pub(crate) async fn store(&self, event: NewEvent) -> Stored {
        let (done, answer) = oneshot::channel();
        self.to_writer
            .send((event, done))
            .await
            .map_err(|_| InboxError::Closed)?;
        answer.await.map_err(|_| InboxError::Stopped)?
    }
}

async fn write(
    store: Store,
    mut from_callers: mpsc::Receiver<(NewEvent, oneshot::Sender<Stored>)>,
    stored: Arc<Notify>,
    managed: watch::Receiver<Arc<Managed>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while from_callers.recv_many(&mut batch, BATCH).await > 0 {
        let (mut events, answers): (Vec<NewEvent>, Vec<oneshot::Sender<Stored>>) =
            batch.drain(..).unzip();
        let masker = managed.borrow().masker.clone();
        for event in &mut events {
            event.data = masker.mask(&event.data, &HashSet::new());
        }
        match store.accept_events(&events).await {
            Ok(new) => {
                if new.iter().any(|n| *n) {
                    stored.notify_one();
                }
                for (answer, new) in answers.into_iter().zip(new) {
                    let _ = answer.send(Ok(new));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "events: cannot store accepted events; their deliveries are refused (RyzeAPI retries)");
                let e = Arc::new(e);
                for answer in answers {
                    let _ = answer.send(Err(InboxError::Store(Arc::clone(&e))));
                }
            }
        }
    }
}
