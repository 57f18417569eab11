//! The daemon's checkpoints: every hour, and at each stop, the active node
//! signs the ledger's head with `[audit] signing_key_file`, stores the
//! checkpoint, and publishes it outside the database: a log line
//! (`audit checkpoint {…}`, in the journal) and the hooks whose `on` holds
//! `checkpoint`. Before signing, the entries since the last checkpoint
//! (stored, or signed by this process) are checked to chain on from it: an
//! edit since then is not signed over. An edit before the first checkpoint
//! a process knows is `audit verify`'s to find.

use super::checkpoint::{AuditKey, Checkpoint};
use super::entry::{Entry, GENESIS, hash};
use crate::hooks::Settings;
use crate::store::Store;
use chrono::Utc;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A head signed earlier.
struct Head {
    seq: i64,
    hash: String,
}

/// How often the head is signed.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Signs checkpoints. Cloning is shallow.
#[derive(Clone)]
pub struct Signer {
    store: Store,
    key: Arc<AuditKey>,
    hooks: watch::Receiver<Arc<Settings>>,
    http: reqwest::Client,
    /// The head this process signed last: checked too, so that emptying
    /// the stored checkpoints does not let an edit be signed over.
    last: Arc<std::sync::Mutex<Option<(i64, String)>>>,
}

impl Signer {
    /// A signer on `store` with `key`, telling the hooks `hooks` holds.
    pub fn new(
        store: Store,
        key: Arc<AuditKey>,
        hooks: watch::Receiver<Arc<Settings>>,
        proxy: Option<&reqwest::Url>,
    ) -> Result<Signer, reqwest::Error> {
        Ok(Signer {
            store,
            key,
            hooks,
            http: crate::hooks::client(proxy)?,
            last: Arc::default(),
        })
    }

    /// Signs every [`EVERY`] until `shutdown` (the stop's own checkpoint is
    /// [`Signer::checkpoint`]'s, called once the daemon has settled).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(EVERY) => {
                    self.checkpoint(3).await;
                }
            }
        }
    }

    /// Signs, stores and publishes a checkpoint of the head now; each hook
    /// is tried up to `tries` times. Returns its line (none if it could
    /// not be made: logged).
    pub async fn checkpoint(&self, tries: u32) -> Option<String> {
        match self.sign().await {
            Ok(line) => {
                tracing::info!("audit checkpoint {line}");
                let seq_at = Checkpoint::verify(&line, None)
                    .map(|cp| format!("checkpoint-{}-{}", cp.seq, cp.at))
                    .unwrap_or_default();
                let hooks = self.hooks.borrow().clone();
                crate::hooks::announce_checkpoint(&self.http, &hooks, &line, &seq_at, tries).await;
                Some(line)
            }
            Err(e) => {
                tracing::error!(error = %e, "audit: no checkpoint signed");
                None
            }
        }
    }

    async fn sign(&self) -> Result<String, String> {
        let head = self.store.ledger_head().await.map_err(|e| e.to_string())?;
        let (seq, head_hash) = head.unwrap_or((0, GENESIS.to_owned()));
        self.chains_on(seq).await?;
        let now = Utc::now();
        let line = self
            .key
            .sign(seq, &head_hash, &crate::store::timestamp_text(now))?;
        self.store
            .record_checkpoint(seq, &head_hash, now, &line)
            .await
            .map_err(|e| e.to_string())?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((seq, head_hash));
        Ok(line)
    }

    /// Checks that the entries up to `head` chain on from the last
    /// checkpoint this key signed.
    async fn chains_on(&self, head: i64) -> Result<(), String> {
        let lines = self
            .store
            .checkpoint_lines()
            .await
            .map_err(|e| e.to_string())?;
        let stored = lines
            .iter()
            .rev()
            .filter_map(|l| Checkpoint::verify(l, None).ok())
            .find(|cp| cp.key == self.key.public_hex())
            .map(|cp| (cp.seq, cp.hash));
        let mine = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let last = match (stored, mine) {
            (Some(s), Some(m)) => Some(if m.0 > s.0 { m } else { s }),
            (s, m) => s.or(m),
        };
        let Some((last_seq, last_hash)) = last else {
            return Ok(());
        };
        let last = Head {
            seq: last_seq,
            hash: last_hash,
        };
        if last.seq > head {
            return Err(format!(
                "the ledger ends at entry {head}, before the last checkpoint ({}): entries were removed",
                last.seq
            ));
        }
        let mut prev = if last.seq == 0 {
            GENESIS.to_owned()
        } else {
            String::new()
        };
        let mut broken = None;
        self.store
            .each_ledger_row(last.seq.max(1), |row| {
                if row.seq == last.seq {
                    if row.hash != last.hash {
                        broken = Some(format!(
                            "ledger entry {} is not the one the last checkpoint covers",
                            row.seq
                        ));
                        return false;
                    }
                    prev = row.hash;
                    return true;
                }
                let ok = Entry::parse(&row.entry).is_ok_and(|e| {
                    e.prev == prev && e.seq == row.seq && hash(&row.entry) == row.hash
                });
                if !ok {
                    broken = Some(format!(
                        "ledger entry {} does not chain on from the last checkpoint",
                        row.seq
                    ));
                    return false;
                }
                prev = row.hash;
                row.seq < head
            })
            .await
            .map_err(|e| e.to_string())?;
        broken.map_or(Ok(()), Err)
    }
}
