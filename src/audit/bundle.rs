//! `audit export` writes a bundle, `audit verify --bundle` checks one
//! offline. A bundle is text: ledger entries (canonical lines, in order),
//! then the checkpoints that cover them (the last one covering the last
//! entry, signed at export), one per line, each line ending in `\n`.
//! Every byte counts: a line must be canonical, the entries must chain,
//! the checkpoints must verify with the given key and land on entries of
//! the bundle, so that changing any byte fails the check; a rotation
//! entered twice in it must be restated as the workflow does.

use super::checkpoint::{AuditKey, Checkpoint, KeyError, PublicKey, WriteError};
use super::entry::{Entry, hash};
use super::verify::Discrepancy;
use crate::outfile::{Output, PRIVATE, Replace};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::io::Write;
use std::path::Path;

/// What a bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The first and last entries (`None`: no entries).
    pub entries: Option<(i64, i64)>,
    /// Checkpoints in it.
    pub checkpoints: usize,
}

/// Why an export did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The database could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The history does not verify: it is not signed over.
    #[error("the history does not verify, nothing exported: {0}")]
    Broken(Discrepancy),
    /// The head could not be signed.
    #[error(transparent)]
    Sign(KeyError),
    /// The file could not be written.
    #[error(transparent)]
    Io(#[from] WriteError),
}

/// Writes the entries appended since `since` and the checkpoints covering
/// them to `out` (mode 0600: it holds codes), after verifying the whole
/// history and signing a checkpoint of its head with `key`.
pub async fn export(
    store: &Store,
    key: &AuditKey,
    since: DateTime<Utc>,
    out: &Path,
) -> Result<Bundle, ExportError> {
    if let Err(d) = super::verify::database(store, Some(&key.public()), &[]).await? {
        return Err(ExportError::Broken(d));
    }
    let (head, head_hash) = store
        .ledger_head()
        .await?
        .unwrap_or((0, super::entry::GENESIS.to_owned()));
    let now = Utc::now();
    let signed = key
        .sign(head, &head_hash, &crate::store::timestamp_text(now))
        .map_err(ExportError::Sign)?;
    store
        .record_checkpoint(head, &head_hash, now, &signed)
        .await?;
    // At least the head's entry, so that the new checkpoint lands on one.
    let first = store
        .ledger_seq_since(since)
        .await?
        .unwrap_or(head)
        .min(head)
        .max(1);
    let io = |e: std::io::Error| ExportError::Io(WriteError::io(out, e));
    // A temporary file beside `out`, renamed over it once whole: never
    // through a symlink, 0600 whatever was there (see crate::outfile).
    let file = Output::create(out, PRIVATE, Replace::Yes)?;
    let mut w = std::io::BufWriter::new(file);
    let mut written: std::io::Result<()> = Ok(());
    store
        .each_ledger_row(first, |row| {
            if row.seq > head {
                return false;
            }
            written = writeln!(w, "{}", row.entry);
            written.is_ok()
        })
        .await?;
    written.map_err(io)?;
    let mut checkpoints = 0;
    for line in store.checkpoint_lines().await? {
        let Ok(cp) = Checkpoint::verify(&line, None) else {
            continue;
        };
        if cp.key == key.public_hex() && cp.seq >= first - 1 && cp.seq <= head {
            writeln!(w, "{line}").map_err(io)?;
            checkpoints += 1;
        }
    }
    w.into_inner().map_err(|e| io(e.into_error()))?.commit()?;
    Ok(Bundle {
        entries: (first <= head).then_some((first, head)),
        checkpoints,
    })
}

/// Checks a bundle's text against `trusted`.
pub fn verify(text: &str, trusted: &PublicKey) -> Result<Bundle, Discrepancy> {
    let fail = |n: usize, why: String| Err(Discrepancy(format!("bundle line {n}: {why}")));
    let Some(body) = text.strip_suffix('\n') else {
        return Err(Discrepancy(
            "the bundle does not end with a newline: it was cut or changed".into(),
        ));
    };
    let mut first: Option<(i64, String)> = None;
    let mut last: Option<(i64, String)> = None;
    let mut hashes: Vec<String> = Vec::new();
    let mut checkpoints: Vec<(usize, Checkpoint)> = Vec::new();
    // Per rotation, its latest entry in the bundle (`seq`, line); and the
    // entry before: a restatement is checked against them.
    let mut latest: std::collections::HashMap<i64, (i64, &str)> = std::collections::HashMap::new();
    let mut before: Option<&str> = None;
    // Per group (JID), its latest entry's `seq`; per outside change, its
    // group's latest entry before it.
    let mut by_group: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut outside: std::collections::HashMap<i64, Option<i64>> = std::collections::HashMap::new();
    for (i, line) in body.split('\n').enumerate() {
        let n = i + 1;
        let is_checkpoint = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .is_some_and(|v| v.get("signature").is_some());
        if is_checkpoint {
            match Checkpoint::verify(line, Some(trusted)) {
                Ok(cp) => checkpoints.push((n, cp)),
                Err(e) => return fail(n, e.to_string()),
            }
            continue;
        }
        if !checkpoints.is_empty() {
            return fail(n, "an entry after the checkpoints".into());
        }
        let entry = match Entry::parse(line) {
            Ok(e) => e,
            Err(e) => return fail(n, e.to_string()),
        };
        match &last {
            None => first = Some((entry.seq, entry.prev.clone())),
            Some((seq, h)) => {
                if seq.checked_add(1) != Some(entry.seq) {
                    return fail(
                        n,
                        format!(
                            "entry {} follows entry {seq}: entries are missing",
                            entry.seq
                        ),
                    );
                }
                if &entry.prev != h {
                    return fail(
                        n,
                        format!(
                            "entry {} does not follow entry {seq}: it names {} as the hash before it, entry {seq} hashes to {h}",
                            entry.seq, entry.prev
                        ),
                    );
                }
            }
        }
        if let Some((earlier, was)) = latest.insert(entry.rotation, (entry.seq, line)) {
            let prev = Entry::parse(was).map_err(|e| Discrepancy(e.to_string()))?;
            let before = before.and_then(|b| Entry::parse(b).ok());
            let group_latest = outside.get(&(entry.seq - 1)).copied().flatten();
            if let Err(w) = super::transition::check(&prev, &entry, before.as_ref(), group_latest) {
                return fail(
                    n,
                    super::transition::describe(entry.seq, entry.rotation, earlier, &w),
                );
            }
        }
        let group = by_group.insert(entry.jid.clone(), entry.seq);
        if entry.trigger == "outside" {
            outside.insert(entry.seq, group);
        }
        before = Some(line);
        let h = hash(line);
        hashes.push(h.clone());
        last = Some((entry.seq, h));
    }
    let Some((last_seq, _)) = last.clone() else {
        // No entries: only the checkpoint of an empty ledger stands alone.
        if checkpoints.is_empty()
            || checkpoints
                .iter()
                .any(|(_, cp)| cp.seq != 0 || cp.hash != super::entry::GENESIS)
        {
            return Err(Discrepancy(
                "the bundle holds no entries for its checkpoints to cover: entries were removed"
                    .into(),
            ));
        }
        return Ok(Bundle {
            entries: None,
            checkpoints: checkpoints.len(),
        });
    };
    let (first_seq, anchor) = first.unwrap_or_default();
    for (n, cp) in &checkpoints {
        let covered = if cp.seq.checked_add(1) == Some(first_seq) {
            Some(&anchor)
        } else {
            cp.seq
                .checked_sub(first_seq)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| hashes.get(i))
        };
        if covered != Some(&cp.hash) {
            return fail(
                *n,
                format!(
                    "the checkpoint signed {} covers entry {} with hash {}, which the bundle's entries do not reach",
                    cp.at, cp.seq, cp.hash
                ),
            );
        }
    }
    if !checkpoints.iter().any(|(_, cp)| cp.seq == last_seq) {
        return Err(Discrepancy(format!(
            "no checkpoint covers the bundle's last entry ({last_seq}): entries were added or the bundle was cut"
        )));
    }
    Ok(Bundle {
        entries: Some((first_seq, last_seq)),
        checkpoints: checkpoints.len(),
    })
}
