//! Which restatements of a settled rotation the workflow itself makes. A
//! rotation is entered when it is settled; it is entered again only when
//! one of these steps changes its row (src/store/rotations.rs and
//! src/store/outside.rs make them, each in the transaction that appends
//! the entry):
//!
//! - an `unknown` settled: its status (to `succeeded` or `failed`, never
//!   `unknown` again), `attempts` (never fewer), `new_code`, `new_link`,
//!   `error` and `finished` may change (a later read of the link, a
//!   leftover settled at the next start, a late reset);
//! - a late reset: a `failed` row without a code becomes `succeeded` with
//!   one (`new_code`, `new_link`, `finished`), a note appended to `error`;
//! - an outside change placed before a reset of ours (made by older
//!   versions only; the store no longer makes this step): `old_code`
//!   becomes the code the outside change issued, a note appended to
//!   `error`, and the entry just before it is that outside change (trigger
//!   `outside`, same group, its `new_code` the new `old_code`), made while
//!   the rotation was in flight (started before the rotation finished),
//!   replacing the code the rotation had replaced (the same `old_code`),
//!   and following the rotation's latest entry directly among the group's
//!   entries (the rotation was the group's latest).
//!
//! Wherever `new_code` or `new_link` changes, `new_link` is the link of
//! `new_code` (`https://chat.whatsapp.com/<code>`, none without a code).
//!
//! Nothing else is ever restated: the group, JID, instance, trigger, due
//! and start time of a rotation never change, a settled rotation is never
//! pending again, and an entry that changes nothing is not made. Any other
//! restatement was appended by hand. docs/verify-ledger.py applies the
//! same rules.

use super::entry::Entry;
use crate::whatsapp::INVITE_LINK_PREFIX;

/// Facts that may change when an `unknown` is settled.
const UNKNOWN_SETTLED: [&str; 6] = [
    "status", "attempts", "new_code", "new_link", "error", "finished",
];
/// Facts that change in a late reset of a `failed` row without a code.
const LATE_RESET: [&str; 5] = ["status", "new_code", "new_link", "error", "finished"];
/// Facts that change when an outside change is placed before the row.
const PLACED: [&str; 2] = ["old_code", "error"];

/// A restatement the workflow does not make: the fact, what the earlier
/// entry said, what the later one says, and why it cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wrong {
    /// The fact (see [`super::entry::FACTS`]); `None` when nothing changed.
    pub field: Option<&'static str>,
    /// Its value in the earlier entry (JSON text).
    pub was: String,
    /// Its value in the restatement (JSON text).
    pub now: String,
    /// Why that is not a step of the workflow.
    pub why: &'static str,
}

/// Whether `next` restates the rotation of `prev` (its latest entry before)
/// as the workflow does; `before` is the entry just before `next`, and
/// `group_latest` (when `before` is an outside change) the `seq` of its
/// group's latest entry before it.
pub(crate) fn check(
    prev: &Entry,
    next: &Entry,
    before: Option<&Entry>,
    group_latest: Option<i64>,
) -> Result<(), Wrong> {
    let changed: Vec<&'static str> = super::entry::FACTS
        .iter()
        .copied()
        .filter(|&f| prev.fact(f) != next.fact(f))
        .collect();
    let wrong = |field: &'static str, why: &'static str| Wrong {
        field: Some(field),
        was: prev.fact(field),
        now: next.fact(field),
        why,
    };
    if changed.is_empty() {
        return Err(Wrong {
            field: None,
            was: String::new(),
            now: String::new(),
            why: "it changes nothing, and invite-rotator enters a rotation again only when its row changes",
        });
    }
    let within = |allowed: &[&str]| changed.iter().all(|f| allowed.contains(f));
    if next.status == "pending" {
        return Err(wrong("status", "a settled rotation is never pending again"));
    }
    let appended = match (&prev.error, &next.error) {
        (None, Some(_)) => true,
        (Some(p), Some(n)) => n
            .strip_prefix(p.as_str())
            .is_some_and(|rest| rest.starts_with("; ")),
        _ => false,
    };
    let placed = before.is_some_and(|b| {
        b.trigger == "outside"
            && b.jid == next.jid
            && b.rotation != next.rotation
            && b.new_code.is_some()
            && b.new_code == next.old_code
            && b.old_code == prev.old_code
            && group_latest == Some(prev.seq)
            && earlier(&b.started, prev.finished.as_deref())
    });
    if changed.contains(&"old_code") && within(&PLACED) {
        if prev.trigger == "outside" || !placed {
            return Err(wrong(
                "old_code",
                "only an outside change placed just before it changes a rotation's old code: the entry before is an outside change of its group that issued that code, replaced the code the rotation had replaced, started before the rotation finished, and directly follows the rotation's latest entry among the group's entries",
            ));
        }
        if !appended {
            return Err(wrong(
                "error",
                "placing an outside change appends a note to the error, it does not replace it",
            ));
        }
        return Ok(());
    }
    let unknown = prev.status == "unknown";
    let late = prev.status == "failed" && prev.new_code.is_none();
    let allowed: &[&str] = if unknown {
        &UNKNOWN_SETTLED
    } else if late {
        &LATE_RESET
    } else {
        &[]
    };
    if let Some(&field) = changed.iter().find(|f| !allowed.contains(f)) {
        let why = if prev.status == "unknown" || late {
            "the workflow never changes this fact of a settled rotation"
        } else {
            "a rotation settled as this one was is never restated with another value (only an unknown outcome, a late reset or an outside change placed are)"
        };
        return Err(wrong(field, why));
    }
    if (changed.contains(&"new_code") || changed.contains(&"new_link"))
        && next.new_link
            != next
                .new_code
                .as_ref()
                .map(|c| format!("{INVITE_LINK_PREFIX}{c}"))
    {
        return Err(wrong(
            "new_link",
            "a rotation's new link is the link of its new code",
        ));
    }
    if unknown {
        if next.status == "unknown" {
            return Err(wrong(
                "status",
                "an unknown outcome is settled as succeeded or failed, never restated as unknown again",
            ));
        }
        if next.attempts < prev.attempts {
            return Err(wrong(
                "attempts",
                "the count of reset calls never goes down",
            ));
        }
        return Ok(());
    }
    // A late reset of a `failed` row.
    if next.status != "succeeded" {
        return Err(wrong(
            "status",
            "a failed rotation is restated only as succeeded, by a reset that landed late",
        ));
    }
    if next.new_code.is_none() || next.new_link.is_none() {
        return Err(wrong(
            "new_code",
            "a reset that landed late records the code it issued",
        ));
    }
    if !appended {
        return Err(wrong(
            "error",
            "a reset that landed late appends a note to the error, it does not replace it",
        ));
    }
    Ok(())
}

/// Whether the time `at` is before `finished` (both RFC 3339; `false` when
/// either is missing or unreadable).
fn earlier(at: &str, finished: Option<&str>) -> bool {
    let read = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    matches!((read(at), finished.and_then(read)), (Some(a), Some(f)) if a < f)
}

/// The report of a wrong restatement: entry `seq` restating `rotation`,
/// entered last in entry `earlier`.
pub(crate) fn describe(seq: i64, rotation: i64, earlier: i64, w: &Wrong) -> String {
    match w.field {
        Some(field) => format!(
            "ledger entry {seq} restates rotation {rotation}: its {field} was {} (entry {earlier}), entry {seq} says {}: {}; the ledger was appended to outside invite-rotator",
            w.was, w.now, w.why
        ),
        None => format!(
            "ledger entry {seq} restates rotation {rotation} as entry {earlier} had it: {}; the ledger was appended to outside invite-rotator",
            w.why
        ),
    }
}

#[cfg(test)]
#[path = "transition_tests.rs"]
mod tests;
