//! The rules of [`super`]: the workflow's restatements pass, others are named.

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
    assert_eq!(check(&prev, &next, None, None), Ok(()));
    next.status = "failed".into();
    next.attempts = 3;
    assert_eq!(check(&prev, &next, None, None), Ok(()));
    // A late reset of a failed row.
    let mut prev = settled("failed", None);
    prev.error = Some("timeout".into());
    let mut next = prev.clone();
    next.status = "succeeded".into();
    next.new_code = Some("B".into());
    next.new_link = Some("https://chat.whatsapp.com/B".into());
    next.error = Some("timeout; its reset landed late".into());
    assert_eq!(check(&prev, &next, None, None), Ok(()));
    // An outside change placed before a reset of ours.
    let prev = settled("succeeded", Some("C"));
    let mut next = prev.clone();
    next.old_code = Some("X".into());
    next.error = Some("the link was changed outside".into());
    assert_eq!(check(&prev, &next, Some(&outside("X")), Some(1)), Ok(()));
    // ... but not before another rotation than the group's latest, nor
    // one started after it finished, nor one replacing another code.
    for latest in [None, Some(0)] {
        let w = check(&prev, &next, Some(&outside("X")), latest).unwrap_err();
        assert_eq!(w.field, Some("old_code"));
    }
    let mut late = outside("X");
    late.started = "2026-12-01T00:00:02.000Z".into();
    assert!(check(&prev, &next, Some(&late), Some(1)).is_err());
    late.started = "not a time".into();
    assert!(check(&prev, &next, Some(&late), Some(1)).is_err());
    let mut other = outside("X");
    other.old_code = Some("Z".into());
    assert!(check(&prev, &next, Some(&other), Some(1)).is_err());
}

#[test]
fn any_other_restatement_is_named() {
    let prev = settled("succeeded", Some("B"));
    let mut next = prev.clone();
    next.new_code = Some("Forged".into());
    let w = check(&prev, &next, None, None).unwrap_err();
    assert_eq!(
        (w.field, w.was.as_str(), w.now.as_str()),
        (Some("new_code"), "\"B\"", "\"Forged\"")
    );
    assert!(describe(13, 7, 4, &w).starts_with(
        "ledger entry 13 restates rotation 7: its new_code was \"B\" (entry 4), entry 13 says \"Forged\""
    ));
    // Nothing changed.
    assert_eq!(check(&prev, &prev, None, None).unwrap_err().field, None);
    // Pending again.
    let mut pending = prev.clone();
    pending.status = "pending".into();
    assert_eq!(
        check(&prev, &pending, None, None).unwrap_err().field,
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
        let w = check(&prev, &placed, before.as_ref(), None).unwrap_err();
        assert_eq!(w.field, Some("old_code"), "{before:?}");
    }
    let mut elsewhere = outside("X");
    elsewhere.jid = "other@g.us".into();
    assert!(check(&prev, &placed, Some(&elsewhere), None).is_err());
    let mut noted = prev.clone();
    noted.error = Some("first".into());
    let mut replaced = noted.clone();
    replaced.old_code = Some("X".into());
    replaced.error = Some("other".into());
    assert_eq!(
        check(&noted, &replaced, Some(&outside("X")), Some(1))
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
        assert_eq!(
            check(&unknown, &next, None, None).unwrap_err().field,
            Some(field)
        );
    }
    let mut fewer = unknown.clone();
    fewer.status = "failed".into();
    fewer.attempts = 0;
    assert_eq!(
        check(&unknown, &fewer, None, None).unwrap_err().field,
        Some("attempts")
    );
    // A failed row late-reset to anything but succeeded-with-a-code.
    let failed = settled("failed", None);
    let mut late = failed.clone();
    late.status = "unknown".into();
    late.error = Some("note".into());
    assert_eq!(
        check(&failed, &late, None, None).unwrap_err().field,
        Some("status")
    );
    late.status = "succeeded".into();
    assert_eq!(
        check(&failed, &late, None, None).unwrap_err().field,
        Some("new_code")
    );
    // A succeeded row's code, restated as a late reset would: no.
    let mut relate = prev.clone();
    relate.new_code = Some("D".into());
    relate.error = Some("note".into());
    assert_eq!(
        check(&prev, &relate, None, None).unwrap_err().field,
        Some("new_code")
    );
}

#[test]
fn an_unknown_is_settled_once_and_a_link_is_its_codes() {
    let unknown = settled("unknown", None);
    // Unknown again, with a new code: no.
    let mut again = unknown.clone();
    again.attempts = 2;
    again.new_code = Some("B".into());
    again.new_link = Some("https://chat.whatsapp.com/B".into());
    assert_eq!(
        check(&unknown, &again, None, None).unwrap_err().field,
        Some("status")
    );
    // Settled with a link that is not its code's: no.
    let mut elsewhere = again.clone();
    elsewhere.status = "succeeded".into();
    elsewhere.new_link = Some("https://evil.example/B".into());
    assert_eq!(
        check(&unknown, &elsewhere, None, None).unwrap_err().field,
        Some("new_link")
    );
    elsewhere.new_link = Some("https://chat.whatsapp.com/C".into());
    assert_eq!(
        check(&unknown, &elsewhere, None, None).unwrap_err().field,
        Some("new_link")
    );
    // A failed settlement with a link and no code: no.
    let mut failed = unknown.clone();
    failed.status = "failed".into();
    failed.new_link = Some("https://chat.whatsapp.com/B".into());
    assert_eq!(
        check(&unknown, &failed, None, None).unwrap_err().field,
        Some("new_link")
    );
    // A late reset of a failed row, to another group's link: no.
    let late = settled("failed", None);
    let mut next = late.clone();
    next.status = "succeeded".into();
    next.new_code = Some("B".into());
    next.new_link = Some("https://chat.whatsapp.com/X".into());
    next.error = Some("landed late".into());
    assert_eq!(
        check(&late, &next, None, None).unwrap_err().field,
        Some("new_link")
    );
}

/// The store's own steps (an unknown settled, a late reset) restate
/// rotations, and the history (with an outside change) still verifies.
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
            .record_late_reset(
                ids[1],
                "CodeDDDDDDDDDDDDDDDDDD",
                "https://chat.whatsapp.com/CodeDDDDDDDDDDDDDDDDDD"
            )
            .await
            .unwrap()
    );
    let change = OutsideChange {
        group: NewRotation {
            cause: Cause::manual(),
            ..group.clone()
        },
        old_code: None,
        new_code: "CodeXXXXXXXXXXXXXXXXXX",
        new_link: "https://chat.whatsapp.com/CodeXXXXXXXXXXXXXXXXXX",
        at: chrono::Utc::now(),
        notify: false,
    };
    store.record_outside(&change).await.unwrap();
    let v = crate::audit::verify::database(&store, None, &[])
        .await
        .unwrap()
        .unwrap();
    // Three settled, two restated, one outside.
    assert_eq!((v.entries, v.rotations), (6, 4));
    // The same in a bundle, checked offline.
    let key = crate::audit::AuditKey::generate().unwrap();
    let out = dir.path().join("bundle.jsonl");
    let since = chrono::Utc::now() - chrono::Duration::days(1);
    crate::audit::bundle::export(&store, &key, since, &out)
        .await
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let b = crate::audit::bundle::verify(&text, &key.public()).unwrap();
    assert_eq!(b.entries, Some((1, 6)));
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
