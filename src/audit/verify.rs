//! `audit verify` on a database: the hash chain recomputed from the first
//! entry, every checkpoint's signature checked and the ledger shown to
//! still reach it, every restatement of a rotation checked to be a step
//! the workflow makes ([`super::transition`]), and the `rotations` table
//! compared with the ledger's last word on each rotation. The first discrepancy is named: which entry
//! or rotation, which field, what the ledger says.

use super::checkpoint::{Checkpoint, PublicKey};
use super::entry::{Entry, EntryRef, GENESIS, hash, hashes_to};
use crate::store::{Store, StoreError};
use std::collections::HashMap;

/// An intact history: what was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries in the ledger.
    pub entries: i64,
    /// The ledger's last hash (the genesis hash while empty).
    pub head: String,
    /// Checkpoints checked (stored and given).
    pub checkpoints: usize,
    /// The newest checkpoint's `seq` and time, if any.
    pub last_checkpoint: Option<(i64, String)>,
    /// Rows of `rotations` compared.
    pub rotations: u64,
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Discrepancy(pub String);

/// Where the chain pass stopped.
struct Chain {
    entries: i64,
    head: String,
    /// Per rotation: its latest entry's `seq` and facts digest.
    latest: HashMap<i64, (i64, [u8; 32])>,
    /// The hashes at the `seq`s checkpoints name.
    wanted: HashMap<i64, String>,
    /// Rotations entered again: the rotation, its entry before, the entry
    /// that restates it (in ledger order).
    restated: Vec<(i64, i64, i64)>,
    /// Per group (JID): its latest entry's `seq` so far.
    by_group: HashMap<String, i64>,
    /// Per entry of an outside change: its group's latest entry before it.
    outside: HashMap<i64, Option<i64>>,
    broken: Option<String>,
}

/// Verifies the history in `store`; `extra` are checkpoint lines kept
/// elsewhere (`--checkpoint FILE`), `trusted` the key they must be signed
/// with (`--public-key`). `Ok(Err(_))` is a history that does not hold
/// (one without the ledger's tables holds only while it has no settled
/// rotation).
///
/// The ledger and the table are read one after the other: a rotation the
/// daemon settles in between looks unentered. A discrepancy found while
/// the ledger grew is checked again (at most three times).
pub async fn database(
    store: &Store,
    trusted: Option<&PublicKey>,
    extra: &[String],
) -> Result<Result<Verified, Discrepancy>, StoreError> {
    if let Some(settled) = store.settled_without_ledger().await?
        && settled > 0
    {
        return Ok(Err(Discrepancy(format!(
            "no ledger: the history holds {settled} settled rotation(s) but not the ledger's tables (a history from before the ledger, or a ledger dropped); nothing in it can be verified. Starting the daemon creates the ledger and enters these rotations as they now stand: only checkpoints kept outside the database can tell whether they were changed"
        ))));
    }
    let mut tries = 0;
    loop {
        let before = store.ledger_head().await?.map_or(0, |(seq, _)| seq);
        let outcome = once(store, trusted, extra).await?;
        let after = store.ledger_head().await?.map_or(0, |(seq, _)| seq);
        tries += 1;
        if outcome.is_ok() || before == after || tries == 3 {
            return Ok(outcome);
        }
    }
}

async fn once(
    store: &Store,
    trusted: Option<&PublicKey>,
    extra: &[String],
) -> Result<Result<Verified, Discrepancy>, StoreError> {
    let mut checkpoints = Vec::new();
    let stored = store.checkpoint_lines().await?;
    for (i, line) in stored.iter().chain(extra).enumerate() {
        let from = if i < stored.len() {
            format!("stored checkpoint {}", i + 1)
        } else {
            format!("given checkpoint {}", i + 1 - stored.len())
        };
        match Checkpoint::verify(line, trusted) {
            Ok(cp) => checkpoints.push((from, cp)),
            Err(e) => return Ok(Err(Discrepancy(format!("{from}: {e}")))),
        }
    }
    // The table is read on a connection of its own, beside the chain: two
    // passes over a million rows each, on two cores.
    let reader = store.another_reader().await?;
    let started = std::time::Instant::now();
    let table_pass = tokio::spawn(async move {
        let rows = digest_rows(&reader).await;
        tracing::debug!(
            took_s = started.elapsed().as_secs_f64(),
            "audit verify: the table's pass"
        );
        rows
    });
    let chain = chain(store, checkpoints.iter().map(|(_, cp)| cp.seq)).await?;
    tracing::debug!(
        took_s = started.elapsed().as_secs_f64(),
        "audit verify: the chain's pass"
    );
    let rows = table_pass.await.map_err(|e| {
        StoreError::invalid(store.name(), format!("the table's pass failed: {e}"))
    })??;
    if let Some(broken) = chain.broken {
        return Ok(Err(Discrepancy(broken)));
    }
    for (from, cp) in &checkpoints {
        if cp.seq > chain.entries {
            return Ok(Err(Discrepancy(format!(
                "{from} (signed {}) covers entries up to {}, but the ledger ends at entry {}: entries were removed",
                cp.at, cp.seq, chain.entries
            ))));
        }
        let at = if cp.seq == 0 {
            Some(GENESIS.to_owned())
        } else {
            chain.wanted.get(&cp.seq).cloned()
        };
        if at.as_deref() != Some(cp.hash.as_str()) {
            return Ok(Err(Discrepancy(format!(
                "ledger entry {} is not the one {from} (signed {}) covers: it hashes to {}, the checkpoint says {}; the ledger was rewritten",
                cp.seq,
                cp.at,
                at.unwrap_or_default(),
                cp.hash
            ))));
        }
    }
    if let Some(problem) = restatements(store, &chain.restated, &chain.outside).await? {
        return Ok(Err(Discrepancy(problem)));
    }
    let (rotations, problem) = table(store, rows, chain.latest).await?;
    if let Some(problem) = problem {
        return Ok(Err(Discrepancy(problem)));
    }
    let last_checkpoint = checkpoints
        .iter()
        .max_by_key(|(_, cp)| (cp.seq, cp.at.clone()))
        .map(|(_, cp)| (cp.seq, cp.at.clone()));
    Ok(Ok(Verified {
        entries: chain.entries,
        head: chain.head,
        checkpoints: checkpoints.len(),
        last_checkpoint,
        rotations,
    }))
}

/// Recomputes the chain from entry 1.
async fn chain(store: &Store, wanted: impl Iterator<Item = i64>) -> Result<Chain, StoreError> {
    let mut chain = Chain {
        entries: 0,
        head: GENESIS.to_owned(),
        // Sized ahead from the head's `seq`, at most a few million (a
        // forged `seq` must not make it allocate without end).
        latest: HashMap::with_capacity(
            usize::try_from(store.ledger_len().await?).map_or(0, |n| n.min(1 << 22)),
        ),
        wanted: wanted.map(|seq| (seq, String::new())).collect(),
        restated: Vec::new(),
        by_group: HashMap::new(),
        outside: HashMap::new(),
        broken: None,
    };
    store
        .each_ledger_row(1, |row| {
            let expected = chain.entries + 1;
            match link(&row, expected, &chain.head) {
                Ok(entry) => {
                    let facts = entry.facts();
                    let (rotation, digest) = (facts.rotation, facts.digest());
                    let group = match chain.by_group.get_mut(facts.jid) {
                        Some(seq) => Some(std::mem::replace(seq, row.seq)),
                        None => {
                            chain.by_group.insert(facts.jid.to_owned(), row.seq);
                            None
                        }
                    };
                    if facts.trigger == "outside" {
                        chain.outside.insert(row.seq, group);
                    }
                    chain.entries = expected;
                    if let Some((earlier, _)) = chain.latest.insert(rotation, (row.seq, digest)) {
                        chain.restated.push((rotation, earlier, row.seq));
                    }
                    if let Some(h) = chain.wanted.get_mut(&row.seq) {
                        h.clone_from(&row.hash);
                    }
                    chain.head = row.hash;
                    true
                }
                Err(e) => {
                    chain.broken = Some(e);
                    false
                }
            }
        })
        .await?;
    chain.wanted.retain(|_, h| !h.is_empty());
    Ok(chain)
}

/// The first restatement (of `restated`: rotation, entry before, entry)
/// that the workflow does not make (see [`super::transition`]).
async fn restatements(
    store: &Store,
    restated: &[(i64, i64, i64)],
    outside: &HashMap<i64, Option<i64>>,
) -> Result<Option<String>, StoreError> {
    for &(rotation, earlier, seq) in restated {
        let (Some(prev), Some(next)) =
            (entry_at(store, earlier).await?, entry_at(store, seq).await?)
        else {
            return Ok(Some(format!(
                "ledger entry {seq} (rotation {rotation}) changed while it was being verified"
            )));
        };
        let before = entry_at(store, seq - 1).await?;
        let group_latest = outside.get(&(seq - 1)).copied().flatten();
        if let Err(w) = super::transition::check(&prev, &next, before.as_ref(), group_latest) {
            return Ok(Some(super::transition::describe(
                seq, rotation, earlier, &w,
            )));
        }
    }
    Ok(None)
}

/// Checks one stored row as the entry `expected` following `prev`; the
/// entry.
fn link<'r>(
    row: &'r crate::store::LedgerRow,
    expected: i64,
    prev: &str,
) -> Result<EntryRef<'r>, String> {
    if row.seq != expected {
        return Err(format!(
            "ledger entry {expected} is missing (the next one stored is {}): entries were removed",
            row.seq
        ));
    }
    let entry = EntryRef::parse(&row.entry).map_err(|e| format!("ledger entry {expected}: {e}"))?;
    if entry.seq != row.seq {
        return Err(format!(
            "ledger entry {expected} holds entry {}: entries were reordered",
            entry.seq
        ));
    }
    if entry.prev != prev {
        return Err(format!(
            "ledger entry {expected} does not follow entry {}: it names {} as the hash before it, entry {} hashes to {prev}",
            expected - 1,
            entry.prev,
            expected - 1
        ));
    }
    if !hashes_to(&row.entry, &row.hash) {
        return Err(format!(
            "ledger entry {expected} (rotation {}) was changed: it hashes to {}, not the {} stored with it",
            entry.rotation,
            hash(&row.entry),
            row.hash
        ));
    }
    if entry.rotation != row.rotation_id {
        return Err(format!(
            "ledger entry {expected} is filed under rotation {}, but records rotation {}",
            row.rotation_id, entry.rotation
        ));
    }
    Ok(entry)
}

/// The first problem, by rotation id, of the table against the ledger.
enum Problem {
    /// A row whose facts differ from its latest entry's.
    Differs(i64, i64),
    /// A settled row with no entry.
    Unentered(i64),
    /// A pending row the ledger says was settled.
    Unsettled(i64, i64),
}

/// Every row of `rotations`, by id: whether it is pending, and the digest
/// of its facts.
async fn digest_rows(store: &Store) -> Result<Vec<(i64, bool, [u8; 32])>, StoreError> {
    let mut rows = Vec::new();
    store
        .each_rotation_facts(|pending, facts| {
            rows.push((facts.rotation, pending, facts.digest()));
            true
        })
        .await?;
    Ok(rows)
}

/// Compares every row of `rotations` with its latest entry.
async fn table(
    store: &Store,
    digests: Vec<(i64, bool, [u8; 32])>,
    mut latest: HashMap<i64, (i64, [u8; 32])>,
) -> Result<(u64, Option<String>), StoreError> {
    let rows = digests.len() as u64;
    let mut first: Option<Problem> = None;
    for (id, pending, digest) in digests {
        let entered = latest.remove(&id);
        let problem = match (pending, entered) {
            (true, None) => None,
            (true, Some((seq, _))) => Some(Problem::Unsettled(id, seq)),
            (false, None) => Some(Problem::Unentered(id)),
            (false, Some((seq, d))) => (d != digest).then_some(Problem::Differs(id, seq)),
        };
        if problem.is_some() {
            first = problem;
            break;
        }
    }
    // Rotations the ledger knows and the table no longer has: deleted.
    let deleted = latest.into_iter().min_by_key(|(id, _)| *id);
    let first_id = match &first {
        Some(Problem::Differs(id, _) | Problem::Unentered(id) | Problem::Unsettled(id, _)) => {
            Some(*id)
        }
        None => None,
    };
    if let Some((id, (seq, _))) = deleted
        && first_id.is_none_or(|f| id < f)
    {
        let said = entry_at(store, seq).await?;
        let what = said
            .map(|e| {
                format!(
                    " ({} of group {}, {})",
                    e.trigger,
                    e.group,
                    e.finished.as_deref().unwrap_or(&e.started)
                )
            })
            .unwrap_or_default();
        return Ok((
            rows,
            Some(format!(
                "rotation {id}{what} is in the ledger (entry {seq}) but not in the rotations table: the row was deleted"
            )),
        ));
    }
    let message = match first {
        None => None,
        Some(Problem::Unentered(id)) => {
            let status = store
                .rotation(id)
                .await?
                .map_or("settled".to_owned(), |r| r.status.as_str().to_owned());
            Some(format!(
                "rotation {id} is {status} in the rotations table but has no ledger entry: the row was added or settled outside invite-rotator"
            ))
        }
        Some(Problem::Unsettled(id, seq)) => Some(format!(
            "rotation {id} is pending in the rotations table, but the ledger (entry {seq}) recorded it settled"
        )),
        Some(Problem::Differs(id, seq)) => {
            let said = entry_at(store, seq).await?;
            let row = store.rotation(id).await?;
            Some(match (said, row) {
                (Some(said), Some(row)) => {
                    match said.first_difference(&Entry::of(&row, 0, "", "")) {
                        Some((field, ledger, table)) => format!(
                            "rotation {id}: {field} is {table} in the rotations table, but the ledger (entry {seq}) says {ledger}"
                        ),
                        None => format!("rotation {id} changed while it was being verified"),
                    }
                }
                _ => format!("rotation {id} changed while it was being verified"),
            })
        }
    };
    Ok((rows, message))
}

async fn entry_at(store: &Store, seq: i64) -> Result<Option<Entry>, StoreError> {
    Ok(store
        .ledger_entry(seq)
        .await?
        .and_then(|line| Entry::parse(&line).ok()))
}
