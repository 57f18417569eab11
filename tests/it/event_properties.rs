//! Property tests of the event parser, the edge that meets whatever RyzeAPI
//! (or anyone who learns the URL) sends: any JSON and any bytes give an
//! envelope or an error, never a panic; the instance's token never survives
//! parsing; and the `group.flow` shapes keep their promises.

use invite_rotator::config::{Config, Purpose};
use invite_rotator::events::{Accepted, Managed, classify, parse};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::LazyLock;

const JID: &str = "120363406289005073@g.us";

fn cases(n: u32) -> ProptestConfig {
    let from_env = std::env::var("PROPTEST_CASES").ok();
    ProptestConfig {
        cases: from_env.and_then(|v| v.parse().ok()).unwrap_or(n),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What the running config manages: one group (`JID`) on instance `sales`.
static MANAGED: LazyLock<Managed> = LazyLock::new(|| managed("t"));

/// One group (`JID`) on instance `sales`, whose token is `token`.
fn managed(token: &str) -> Managed {
    let text = format!(
        "[[instance]]\nname = \"sales\"\ntoken = \"{token}\"\n[[group]]\nname = \"vip\"\ninstance = \"sales\"\n\
         jid = \"{JID}\"\nschedule = \"0 3 * * *\"\n"
    );
    let config = Config::parse(&text, Path::new("p.toml"), Purpose::Run).expect("a valid config");
    Managed::of(&config)
}

/// Field names the parser looks for, in any case, and some it does not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "event",
            "data",
            "instanceData",
            "instance",
            "token",
            "JID",
            "jid",
            "groupJid",
            "Sender",
            "Leave",
            "Join",
            "NewInviteLink",
            "newinvitelink",
            "action",
            "participants",
            "inviteLink",
            "inviteCode",
            "Timestamp",
            "timestamp",
            "state",
            "State",
            "Authorization",
            "id",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z]{0,8}",
    ]
}

/// Strings the parser gives meaning to, and any others.
fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec![
            JID,
            "group.flow",
            "instance.state",
            "remove",
            "leave",
            "link",
            "add",
            "connected",
            "disconnected",
            "qr_ready",
            "https://chat.whatsapp.com/AbC123",
            "http://evil/x",
            "2026-12-01T10:00:00Z",
            "5511999990001@s.whatsapp.net",
            "sales",
            "",
        ])
        .prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ]
}

/// Any JSON value, biased towards the shapes the parser reads.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text(),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn any_json_is_an_envelope_or_an_error_never_a_panic(value in json_value(), event in text()) {
        // As it comes, and wrapped in an envelope (so the data paths run).
        let wrapped = json!({"event": event, "data": value.clone(), "instanceData": value.clone()});
        for body in [value.to_string(), wrapped.to_string()] {
            if let Ok(envelope) = parse::envelope(body.as_bytes()) {
                let _ = parse::group_flow(&envelope.data);
                let _ = parse::instance_state(&envelope.data);
                prop_assert!(parse::stored_data(&envelope.data).len() <= parse::MAX_DATA_BYTES);
            }
            let _ = classify(body.as_bytes(), "webhook", &MANAGED);
        }
    }

    #[test]
    fn any_bytes_are_an_envelope_or_an_error_never_a_panic(body in vec(any::<u8>(), 0..512)) {
        let _ = parse::envelope(&body);
        let _ = classify(&body, "webhook", &MANAGED);
    }

    #[test]
    fn the_instance_token_never_survives_parsing(
        data in json_value(),
        token in "[A-Za-z0-9]{24}",
        flow in any::<bool>(),
    ) {
        let token = format!("TKN{token}");
        let mut data = data;
        // Also nested where a careless parser would keep it.
        if let Value::Object(map) = &mut data {
            map.insert("token".into(), Value::from(token.clone()));
            map.insert("JID".into(), Value::from(JID));
        }
        let event = if flow { "group.flow" } else { "instance.state" };
        let body = json!({
            "event": event, "data": data,
            "instanceData": {"baseUrl": "https://ryzeapi.cloud", "instance": "sales", "token": token},
        })
        .to_string();

        let envelope = parse::envelope(body.as_bytes()).expect("an envelope");
        let kept = format!("{envelope:?} {}", parse::stored_data(&envelope.data));
        prop_assert!(!kept.contains(&token), "{kept}");
        // Authentic (the configured token): stored, token-free.
        match classify(body.as_bytes(), "webhook", &managed(&token)) {
            Ok(Accepted::Store(stored)) => {
                let kept = format!("{stored:?}");
                prop_assert!(!kept.contains(&token), "{kept}");
            }
            other => prop_assert!(false, "an authentic event is stored: {other:?}"),
        }
        // Anyone else's: refused.
        let refused = matches!(
            classify(body.as_bytes(), "webhook", &MANAGED),
            Ok(Accepted::Refused { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn whatsmeow_leave_entries_are_removed_unless_they_are_the_sender(
        members in vec("55119[0-9]{8}@s\\.whatsapp\\.net", 1..6),
        sender_leaves in any::<bool>(),
    ) {
        let sender = if sender_leaves { members[0].clone() } else { "5511988887777@s.whatsapp.net".into() };
        let flow = parse::group_flow(&json!({"JID": JID, "Sender": sender, "Leave": members}))
            .expect("a GroupInfo");
        let mut all: Vec<String> = flow.removed.iter().chain(&flow.left).cloned().collect();
        all.sort();
        let mut expected = members.clone();
        expected.sort();
        prop_assert_eq!(all, expected);
        prop_assert!(flow.left.iter().all(|m| *m == sender));
        prop_assert!(flow.removed.iter().all(|m| *m != sender));
    }
}
