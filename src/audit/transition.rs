//! Which restatements of a settled rotation the workflow itself makes. A
//! rotation is entered when it is settled; it is entered again only when
//! one of these steps changes its row (src/store/rotations.rs and
//! src/store/outside.rs make them, each in the transaction that appends
//! the entry):
//!
//! - an `unknown` settled: its status, `attempts` (never fewer),
//!   `new_code`, `new_link`, `error` and `finished` may change (a later read
//!   of the link, a leftover settled at the next start, a late reset);
//! - a late reset: a `failed` row without a code becomes `succeeded` with
//!   one (`new_code`, `new_link`, `finished`), a note appended to `error`;
//! - an outside change placed before a reset of ours: `old_code` becomes
//!   the code the outside change issued, a note appended to `error`, and
//!   the entry just before it is that outside change (trigger `outside`,
//!   same group, its `new_code` the new `old_code`).
//!
//! Nothing else is ever restated: the group, JID, instance, trigger, due
//! and start time of a rotation never change, a settled rotation is never
//! pending again, and an entry that changes nothing is not made. Any other
//! restatement was appended by hand. docs/verify-ledger.py applies the
//! same rules.

use super::entry::Entry;

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
/// as the workflow does; `before` is the entry just before `next`.
pub(crate) fn check(prev: &Entry, next: &Entry, before: Option<&Entry>) -> Result<(), Wrong> {
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
    });
    if changed.contains(&"old_code") && within(&PLACED) {
        if prev.trigger == "outside" || !placed {
            return Err(wrong(
                "old_code",
                "only an outside change placed just before it (the entry before) changes a rotation's old code",
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
    if unknown {
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
mod tests {
    use super::*;
    use crate::audit::entry::GENESIS;

    fn settled(status: &str, new_code: Option<&str>) -> Entry {
        Entry {
            at: "2026-12-01T00:00:00.000Z".into(),
            attempts: 1,
            due: None,
            error: None,
            finished: Some("2026-12-01T00:00:01.000Z".into()),
            group: "vip".into(),
            instance: "i1".into(),
            jid: "1203@g.us".into(),
            new_code: new_code.map(Into::into),
            new_link: new_code.map(|c| format!("https://chat.whatsapp.com/{c}")),
            old_code: Some("A".into()),
            prev: GENESIS.into(),
            rotation: 7,
            seq: 1,
            started: "2026-12-01T00:00:00.000Z".into(),
            status: status.into(),
            trigger: "schedule".into(),
        }
    }

    fn outside(code: &str) -> Entry {
        Entry {
            rotation: 8,
            trigger: "outside".into(),
            new_code: Some(code.into()),
            ..settled("succeeded", Some(code))
        }
    }

    #[test]
    fn the_workflows_restatements_pass() {
        // An unknown settled, either way.
        let prev = settled("unknown", None);
        let mut next = prev.clone();
        next.status = "succeeded".into();
        next.new_code = Some("B".into());
        next.new_link = Some("https://chat.whatsapp.com/B".into());
        next.error = Some("the next rotation found the link changed".into());
        assert_eq!(check(&prev, &next, None), Ok(()));
        next.status = "failed".into();
        next.attempts = 3;
        assert_eq!(check(&prev, &next, None), Ok(()));
        // A late reset of a failed row.
        let mut prev = settled("failed", None);
        prev.error = Some("timeout".into());
        let mut next = prev.clone();
        next.status = "succeeded".into();
        next.new_code = Some("B".into());
        next.new_link = Some("https://chat.whatsapp.com/B".into());
        next.error = Some("timeout; its reset landed late".into());
        assert_eq!(check(&prev, &next, None), Ok(()));
        // An outside change placed before a reset of ours.
        let prev = settled("succeeded", Some("C"));
        let mut next = prev.clone();
        next.old_code = Some("X".into());
        next.error = Some("the link was changed outside".into());
        assert_eq!(check(&prev, &next, Some(&outside("X"))), Ok(()));
    }

    #[test]
    fn any_other_restatement_is_named() {
        let prev = settled("succeeded", Some("B"));
        let mut next = prev.clone();
        next.new_code = Some("Forged".into());
        let w = check(&prev, &next, None).unwrap_err();
        assert_eq!(
            (w.field, w.was.as_str(), w.now.as_str()),
            (Some("new_code"), "\"B\"", "\"Forged\"")
        );
        assert!(describe(13, 7, 4, &w).starts_with(
            "ledger entry 13 restates rotation 7: its new_code was \"B\" (entry 4), entry 13 says \"Forged\""
        ));
        // Nothing changed.
        assert_eq!(check(&prev, &prev, None).unwrap_err().field, None);
        // Pending again.
        let mut pending = prev.clone();
        pending.status = "pending".into();
        assert_eq!(
            check(&prev, &pending, None).unwrap_err().field,
            Some("status")
        );
        // The old code, without an outside change just before it, or
        // another group's, or with the error replaced.
        let mut placed = prev.clone();
        placed.old_code = Some("X".into());
        placed.error = Some("note".into());
        for before in [
            None,
            Some(outside("Y")),
            Some(settled("succeeded", Some("X"))),
        ] {
            let w = check(&prev, &placed, before.as_ref()).unwrap_err();
            assert_eq!(w.field, Some("old_code"), "{before:?}");
        }
        let mut elsewhere = outside("X");
        elsewhere.jid = "other@g.us".into();
        assert!(check(&prev, &placed, Some(&elsewhere)).is_err());
        let mut noted = prev.clone();
        noted.error = Some("first".into());
        let mut replaced = noted.clone();
        replaced.old_code = Some("X".into());
        replaced.error = Some("other".into());
        assert_eq!(
            check(&noted, &replaced, Some(&outside("X")))
                .unwrap_err()
                .field,
            Some("error")
        );
        // Fixed facts of an unknown.
        let unknown = settled("unknown", None);
        for (field, edit) in [
            (
                "group",
                (|e: &mut Entry| e.group = "other".into()) as fn(&mut Entry),
            ),
            ("trigger", |e| e.trigger = "manual".into()),
            ("started", |e| e.started = "2026-12-02T00:00:00.000Z".into()),
            ("old_code", |e| e.old_code = Some("Z".into())),
        ] {
            let mut next = unknown.clone();
            next.status = "succeeded".into();
            edit(&mut next);
            assert_eq!(check(&unknown, &next, None).unwrap_err().field, Some(field));
        }
        let mut fewer = unknown.clone();
        fewer.status = "failed".into();
        fewer.attempts = 0;
        assert_eq!(
            check(&unknown, &fewer, None).unwrap_err().field,
            Some("attempts")
        );
        // A failed row late-reset to anything but succeeded-with-a-code.
        let failed = settled("failed", None);
        let mut late = failed.clone();
        late.status = "unknown".into();
        late.error = Some("note".into());
        assert_eq!(
            check(&failed, &late, None).unwrap_err().field,
            Some("status")
        );
        late.status = "succeeded".into();
        assert_eq!(
            check(&failed, &late, None).unwrap_err().field,
            Some("new_code")
        );
        // A succeeded row's code, restated as a late reset would: no.
        let mut relate = prev.clone();
        relate.new_code = Some("D".into());
        relate.error = Some("note".into());
        assert_eq!(
            check(&prev, &relate, None).unwrap_err().field,
            Some("new_code")
        );
    }

    /// The store's own steps (an unknown settled, a late reset, an outside
    /// change placed) restate rotations, and the history still verifies.
    #[tokio::test]
    async fn the_stores_restatements_verify() {
        use crate::store::{Begun, Cause, NewRotation, OutsideChange, Settlement, Status, Store};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).await.unwrap();
        let group = NewRotation {
            group_name: "vip",
            group_jid: "1@g.us",
            instance: "sales",
            cause: Cause::manual(),
        };
        let settle = |status: Status, code: Option<&str>| Settlement {
            status,
            attempts: 1,
            new_code: code.map(Into::into),
            new_link: code.map(|c| format!("https://chat.whatsapp.com/{c}")),
            error: Some("first".into()),
        };
        let mut ids = Vec::new();
        for (status, code) in [
            (Status::Unknown, None),
            (Status::Failed, None),
            (Status::Succeeded, Some("CodeCCCCCCCCCCCCCCCCCC")),
        ] {
            let Begun::Started(id) = store.begin(&group).await.unwrap() else {
                panic!("busy")
            };
            store.settle(id, &settle(status, code)).await.unwrap();
            ids.push(id);
        }
        let code = Some("CodeBBBBBBBBBBBBBBBBBB");
        let link = "https://chat.whatsapp.com/CodeBBBBBBBBBBBBBBBBBB";
        store
            .resolve(
                ids[0],
                Status::Succeeded,
                code,
                Some(link),
                "it had happened",
            )
            .await
            .unwrap();
        assert!(
            store
                .record_late_reset(ids[1], "CodeDDDDDDDDDDDDDDDDDD", link)
                .await
                .unwrap()
        );
        let placed = OutsideChange {
            group: NewRotation {
                cause: Cause::manual(),
                ..group.clone()
            },
            old_code: None,
            new_code: "CodeXXXXXXXXXXXXXXXXXX",
            new_link: "https://chat.whatsapp.com/CodeXXXXXXXXXXXXXXXXXX",
            at: chrono::Utc::now(),
            revoked_by: Some(ids[2]),
            notify: false,
        };
        store.record_outside(&placed).await.unwrap();
        let v = crate::audit::verify::database(&store, None, &[])
            .await
            .unwrap()
            .unwrap();
        // Three settled, three restated, one outside.
        assert_eq!((v.entries, v.rotations), (7, 4));
        // The same in a bundle, checked offline.
        let key = crate::audit::AuditKey::generate().unwrap();
        let out = dir.path().join("bundle.jsonl");
        let since = chrono::Utc::now() - chrono::Duration::days(1);
        crate::audit::bundle::export(&store, &key, since, &out)
            .await
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let b = crate::audit::bundle::verify(&text, &key.public()).unwrap();
        assert_eq!(b.entries, Some((1, 7)));
        // And the script agrees, where it can run.
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/verify-ledger.py");
        if let Ok(o) = std::process::Command::new("python3")
            .args([script, "--database"])
            .arg(dir.path().join("h.db"))
            .output()
            && !String::from_utf8_lossy(&o.stderr).contains("No module named")
        {
            assert!(o.status.success(), "{o:?}");
        }
    }
}
