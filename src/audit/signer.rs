//! The daemon's checkpoints: the active node signs the ledger's head with
//! `[audit] signing_key_file` once it has grown by [`EVERY_ENTRIES`]
//! entries, or [`AT_MOST`] after it first grew, whichever comes first, and
//! at each stop; a head that has not moved is not signed again. Each is
//! stored and published outside the database: a log line (`audit
//! checkpoint {…}`, in the journal) and the hooks whose `on` holds
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

/// A head this many entries past the last checkpoint is signed at once
/// (at the next look).
pub(crate) const EVERY_ENTRIES: i64 = 100;
/// A head that has grown is signed at most this long after the signer
/// first saw it grow.
pub(crate) const AT_MOST: Duration = Duration::from_secs(300);
/// How often the signer looks at the head (one indexed read).
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(10);
/// The newest stored checkpoints searched first for this key's last.
const RECENT: i64 = 64;

/// Signs checkpoints. Cloning is shallow.
#[derive(Clone)]
pub(crate) struct Signer {
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
    pub(crate) fn new(
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

    /// Signs the head until `shutdown`: when it is [`EVERY_ENTRIES`] past
    /// the last checkpoint, or [`AT_MOST`] after it first grew past it
    /// (the stop's own checkpoint is [`Signer::checkpoint`]'s, called once
    /// the daemon has settled). A head never signed by this key counts as
    /// grown from the start.
    pub(crate) async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut signed = match self.last_signed().await {
            Ok(last) => last.map(|(seq, _)| seq),
            Err(e) => {
                tracing::warn!(error = %e, "audit: cannot read the last checkpoint");
                None
            }
        };
        let mut grew_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
            let head = match self.store.ledger_head().await {
                Ok(head) => head.map_or(0, |(seq, _)| seq),
                Err(e) => {
                    tracing::warn!(error = %e, "audit: cannot read the ledger's head");
                    continue;
                }
            };
            // Signed since, by this process (the stop, or another task).
            if let Some((seq, _)) = &*self.last.lock().unwrap_or_else(|p| p.into_inner()) {
                signed = Some(signed.map_or(*seq, |s| s.max(*seq)));
            }
            if signed.is_some_and(|s| head <= s) {
                grew_at = None;
                continue;
            }
            let since = *grew_at.get_or_insert_with(tokio::time::Instant::now);
            let many = head - signed.unwrap_or(0) >= EVERY_ENTRIES;
            if many || since.elapsed() >= AT_MOST {
                if self.checkpoint(3).await.is_some() {
                    grew_at = None;
                } else {
                    // Not signed (logged): tried again after a while.
                    grew_at = Some(tokio::time::Instant::now());
                }
            }
        }
    }

    /// Signs, stores and publishes a checkpoint of the head now; each hook
    /// is tried up to `tries` times. Returns its line (none if it could
    /// not be made: logged).
    pub(crate) async fn checkpoint(&self, tries: u32) -> Option<String> {
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
            .sign(seq, &head_hash, &crate::store::timestamp_text(now))
            .map_err(|e| e.to_string())?;
        self.store
            .record_checkpoint(seq, &head_hash, now, &line)
            .await
            .map_err(|e| e.to_string())?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((seq, head_hash));
        Ok(line)
    }

    /// The last checkpoint this key signed: stored (valid), or signed by
    /// this process, the later of the two.
    async fn last_signed(&self) -> Result<Option<(i64, String)>, String> {
        let mine_only = |lines: &[String]| {
            lines
                .iter()
                .filter_map(|l| Checkpoint::verify(l, None).ok())
                .find(|cp| cp.key == self.key.public_hex())
                .map(|cp| (cp.seq, cp.hash))
        };
        // The newest few first: reading every checkpoint of a long history
        // at each signature would cost more each time.
        let recent = self
            .store
            .recent_checkpoint_lines(RECENT)
            .await
            .map_err(|e| e.to_string())?;
        let mut stored = mine_only(&recent);
        if stored.is_none() && recent.len() as i64 == RECENT {
            let mut all = self
                .store
                .checkpoint_lines()
                .await
                .map_err(|e| e.to_string())?;
            all.reverse();
            stored = mine_only(&all);
        }
        let mine = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(match (stored, mine) {
            (Some(s), Some(m)) => Some(if m.0 > s.0 { m } else { s }),
            (s, m) => s.or(m),
        })
    }

    /// Checks that the entries up to `head` chain on from the last
    /// checkpoint this key signed.
    async fn chains_on(&self, head: i64) -> Result<(), String> {
        let last = self.last_signed().await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Begun, Cause, NewRotation, Settlement, Status};
    use tokio::time::{Instant, sleep};

    /// `n` rotations settled: `n` entries.
    async fn settle(store: &Store, n: usize) {
        for _ in 0..n {
            let new = NewRotation {
                group_name: "vip",
                group_jid: "1@g.us",
                instance: "sales",
                cause: Cause::manual(),
            };
            let Begun::Started(id) = store.begin(&new).await.unwrap() else {
                panic!("busy")
            };
            let settled = Settlement {
                status: Status::Succeeded,
                attempts: 1,
                new_code: Some(format!("Code{id:018}")),
                new_link: Some(format!("https://chat.whatsapp.com/Code{id:018}")),
                error: None,
            };
            store.settle(id, &settled).await.unwrap();
        }
    }

    async fn signed_seqs(store: &Store) -> Vec<i64> {
        let lines = store.checkpoint_lines().await.unwrap();
        lines
            .iter()
            .map(|l| Checkpoint::verify(l, None).unwrap().seq)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_hundred_entries_are_signed_at_once_a_few_after_five_minutes_a_quiet_head_never() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).await.unwrap();
        let settings = Settings {
            hooks: Vec::new(),
            retry: crate::config::RetryPolicy {
                max_attempts: 1,
                backoff_initial: Duration::from_secs(1),
                backoff_max: Duration::from_secs(1),
                read_back_delay: Duration::from_secs(1),
            },
            masker: crate::mask::Masker::default(),
        };
        let (_settings, hooks) = watch::channel(Arc::new(settings));
        let key = Arc::new(AuditKey::generate().unwrap());
        let signer = Signer::new(store.clone(), key, hooks, None).unwrap();
        assert!(signer.checkpoint(1).await.is_some());
        settle(&store, EVERY_ENTRIES as usize).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(signer.clone().run(async move {
            let _ = stopped.await;
        }));

        // 100 entries: signed at the next look, long before five minutes.
        let start = Instant::now();
        while signed_seqs(&store).await != [0, 100] {
            assert!(start.elapsed() < AT_MOST, "{:?}", signed_seqs(&store).await);
            sleep(Duration::from_secs(1)).await;
        }
        assert!(start.elapsed() <= 3 * LOOK_EVERY, "{:?}", start.elapsed());

        // Quiet for two hours: not signed again.
        for _ in 0..120 {
            sleep(Duration::from_secs(60)).await;
        }
        assert_eq!(signed_seqs(&store).await, [0, 100]);

        // A few entries: signed five minutes after they came, not before.
        // (Paused time moves on while SQLite's thread writes them: the
        // signer may see the first one before the last is in, so the five
        // minutes count from before the first, the deadline from after the
        // last.)
        let grew = Instant::now();
        settle(&store, 3).await;
        let settled = Instant::now();
        loop {
            sleep(LOOK_EVERY).await;
            let seqs = signed_seqs(&store).await;
            if grew.elapsed() < AT_MOST {
                assert_eq!(seqs, [0, 100], "at {:?}", grew.elapsed());
            } else if seqs == [0, 100, 103] {
                break;
            }
            assert!(settled.elapsed() < AT_MOST + 3 * LOOK_EVERY, "{seqs:?}");
        }
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}
