//! The events' edges: what the receiver answers to bad deliveries, repeats,
//! a kill -9 right after a 2xx, the WebSocket, and the commands that show
//! events. A node in the test's process where the test is about what the
//! node does; the real binary where it is about a kill -9 or the log.
//! Every test's files and logs are searched for the instance's token,
//! which every envelope carries (see `common`).

use crate::common::events::{
    SECRET, SECRET_VAR, bearer, deliver, envelope, events, events_app, node_events_app, quiet,
    settled, start, start_node, stop, stop_node, with_trigger,
};
use crate::common::node::loopback;
use crate::common::{INSTANCE, Setup, TestApp, wait_until};
use invite_rotator::store::{Status, Trigger};
use serde_json::json;
use std::time::Duration;

fn removal(jid: &str, member: &str) -> Vec<u8> {
    envelope(
        "group.flow",
        json!({"JID": jid, "Sender": "5511988887777@s.whatsapp.net",
               "Timestamp": chrono::Utc::now().to_rfc3339(), "Leave": [member]}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_are_refused_and_change_nothing() {
    let (app, mut listeners, port) =
        node_events_app(&[Setup::Admin], "", "event_delay = \"200ms\"", &[]).await;
    let (metrics_listener, metrics) = loopback().await;
    listeners.metrics = Some(metrics_listener);
    app.edit_config(|t| format!("{t}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"));
    let node = start_node(&app, listeners).await;
    let jid = app.groups[0].jid.clone();
    let member = "5511999990001@s.whatsapp.net";

    // Act and assert, one edge at a time.
    assert_eq!(
        deliver(port, None, removal(&jid, member)).await,
        401,
        "no Authorization"
    );
    let wrong = format!("Bearer {}x", &SECRET[..SECRET.len() - 1]);
    assert_eq!(
        deliver(port, Some(&wrong), removal(&jid, member)).await,
        401,
        "a wrong secret"
    );
    assert_eq!(
        deliver(port, Some(SECRET), removal(&jid, member)).await,
        401,
        "no Bearer"
    );
    let whole = removal(&jid, member);
    let truncated = whole[..whole.len() / 2].to_vec();
    assert_eq!(
        deliver(port, Some(&bearer()), truncated).await,
        400,
        "a truncated body"
    );
    assert_eq!(
        deliver(port, Some(&bearer()), b"[1, 2]".to_vec()).await,
        400,
        "not an envelope"
    );
    let big = envelope(
        "group.flow",
        json!({"JID": jid, "pad": "x".repeat(3 << 20)}),
    );
    assert_eq!(deliver(port, Some(&bearer()), big).await, 413, "3 MiB");
    // Not stored: events not used, groups not managed (2xx: RyzeAPI must not retry).
    let unused = envelope("message.exchange", json!({"text": "hello"}));
    assert_eq!(deliver(port, Some(&bearer()), unused).await, 200);
    let elsewhere = removal("120363000000000000@g.us", member);
    assert_eq!(deliver(port, Some(&bearer()), elsewhere).await, 200);
    // No wait: the receiver answers once the event is stored (or refused).
    assert!(events(&app).await.is_empty(), "nothing stored");
    assert!(app.history().await.is_empty(), "nothing rotated");

    // A group.flow in neither known shape: stored as unparsed, acted on as nothing.
    let odd = envelope("group.flow", json!({"JID": jid, "Weird": true}));
    assert_eq!(deliver(port, Some(&bearer()), odd).await, 200);
    settled(&app).await;
    let stored = events(&app).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, "unparsed");
    assert!(stored[0].data.contains("Weird"), "the raw data is kept");
    assert!(app.history().await.is_empty());

    // Counted by event and kind, stored or not; no group in the labels.
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap();
    let text = http
        .get(format!("http://127.0.0.1:{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "invite_rotator_events_total{event=\"group.flow\",kind=\"unmanaged\"} 1",
        "invite_rotator_events_total{event=\"other\",kind=\"unused\"} 1",
        "invite_rotator_events_total{event=\"group.flow\",kind=\"unparsed\"} 1",
        "invite_rotator_events_backlog 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    assert!(
        !text.contains(&jid) && !text.contains("group-0"),
        "no per-group labels"
    );
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_three_times_is_stored_once_and_rotates_once() {
    let (app, listeners, _) =
        node_events_app(&[Setup::Admin], "", "event_delay = \"300ms\"", &[]).await;
    app.emulator.set_delivery_repeats(2);
    let node = start_node(&app, listeners).await;
    let group = app.groups[0].clone();

    app.emulator
        .remove_member(&group.jid, "5511999990001@s.whatsapp.net");
    app.wait_for("the rotation", Duration::from_secs(20), |rows| {
        rows.iter().any(|r| r.status == Status::Succeeded)
    })
    .await;
    wait_until(
        "every repeat delivered",
        Duration::from_secs(10),
        || async {
            app.emulator
                .deliveries()
                .iter()
                .filter(|d| d.event == "group.flow")
                .count()
                >= 6
        },
    )
    .await;
    // Every repeat answered (so stored or found known), then nothing more
    // can come of them.
    quiet(&app).await;

    let removals = events(&app)
        .await
        .into_iter()
        .filter(|e| e.kind == "member_removed")
        .count();
    assert_eq!(removals, 1, "three deliveries, one event");
    assert_eq!(app.history().await.len(), 1);
    assert_eq!(app.emulator.reset_calls(&group.jid), 1);
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_accepted_just_before_a_kill_9_rotates_after_the_restart() {
    // A quiet period long enough for the kill to come first.
    let (app, port) = events_app(&[Setup::Admin], "", "event_delay = \"3s\"", &[]).await;
    let mut daemon = start(&app).await;
    let group = app.groups[0].clone();

    let status = deliver(
        port,
        Some(&bearer()),
        removal(&group.jid, "5511999990001@s.whatsapp.net"),
    )
    .await;
    assert_eq!(status, 200);
    daemon.start_kill().expect("kill -9");
    let _ = daemon.wait().await;
    assert!(
        app.history().await.is_empty(),
        "killed before the quiet period ended"
    );

    let daemon = start(&app).await;
    app.wait_for(
        "the rotation after the restart",
        Duration::from_secs(20),
        |rows| rows.iter().any(|r| r.status == Status::Succeeded),
    )
    .await;
    let rows = app.history().await;
    let called = with_trigger(&rows, Trigger::MemberRemoved);
    assert_eq!(called.len(), 1, "{rows:?}");
    let stored = events(&app).await;
    assert_eq!(called[0].event_id, stored.first().map(|e| e.id));
    stop(&app, daemon).await;
}

/// A config with the WebSocket only (no receiver).
async fn websocket_app() -> TestApp {
    let (app, _) = events_app(
        &[Setup::Admin],
        "websocket = true",
        "event_delay = \"300ms\"",
        &[],
    )
    .await;
    app.edit_config(|text| {
        text.lines()
            .filter(|l| !l.starts_with("listen = \"127.0.0.1") && !l.starts_with("public_url"))
            .filter(|l| !l.starts_with("authorization_env"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_is_enabled_connected_and_its_removals_rotate() {
    let app = websocket_app().await;
    assert!(!app.emulator.websocket_enabled(INSTANCE));
    let daemon = app.spawn_daemon();
    wait_until("the WebSocket", Duration::from_secs(20), || async {
        app.emulator.websockets_open(INSTANCE) == 1
    })
    .await;
    assert!(
        app.emulator.websocket_enabled(INSTANCE),
        "enabled by the daemon"
    );

    app.emulator
        .remove_member(&app.groups[0].jid, "5511999990001@s.whatsapp.net");
    app.wait_for("the rotation", Duration::from_secs(20), |rows| {
        rows.iter().any(|r| r.status == Status::Succeeded)
    })
    .await;
    settled(&app).await;
    let stored = events(&app).await;
    assert!(
        stored.iter().all(|e| e.channel == "websocket"),
        "{stored:?}"
    );
    // The upgrade carried the token in its header, never in the URL.
    let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
    assert!(!log.contains("token="), "{log}");
    stop(&app, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_channels_at_once_store_each_event_once() {
    let (app, listeners, _) = node_events_app(
        &[Setup::Admin],
        "websocket = true",
        "event_delay = \"300ms\"",
        &[],
    )
    .await;
    let node = start_node(&app, listeners).await;
    wait_until("the WebSocket", Duration::from_secs(20), || async {
        app.emulator.websockets_open(INSTANCE) == 1
    })
    .await;

    app.emulator
        .remove_member(&app.groups[0].jid, "5511999990001@s.whatsapp.net");
    app.wait_for("the rotation", Duration::from_secs(20), |rows| {
        rows.iter().any(|r| r.status == Status::Succeeded)
    })
    .await;
    // Both copies of the removal (and of our reset's link change) handled.
    // The webhook's: answered, so stored or found known. The WebSocket's:
    // its reader stores frames one at a time, in order, so a later report
    // stored from the WebSocket (the webhook's copy held back) means every
    // earlier frame was handled.
    wait_until("the webhook's copies", Duration::from_secs(20), || async {
        app.emulator
            .deliveries()
            .iter()
            .filter(|d| d.event == "group.flow" && d.status == Some(200))
            .count()
            >= 2
    })
    .await;
    app.emulator.set_delivery_delay(Duration::from_secs(600));
    app.emulator.set_connected(INSTANCE, true);
    wait_until(
        "a later report by WebSocket",
        Duration::from_secs(20),
        || async {
            events(&app)
                .await
                .iter()
                .any(|e| e.event == "instance.state" && e.channel == "websocket")
        },
    )
    .await;
    quiet(&app).await;

    let removals = events(&app)
        .await
        .into_iter()
        .filter(|e| e.kind == "member_removed")
        .count();
    assert_eq!(removals, 1, "one event from two channels");
    assert_eq!(app.history().await.len(), 1);
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_register_and_status_show_what_arrived_and_where_from() {
    let (app, listeners, _) =
        node_events_app(&[Setup::Admin], "", "event_delay = \"200ms\"", &[]).await;
    let secret = [(SECRET_VAR, SECRET)];

    // `events register`: the webhook, as `run` would upsert it.
    let out = app.run_with(&["events", "register"], &secret).await;
    assert!(out.status.success(), "{out:?}");
    let hooks = app.emulator.webhooks(INSTANCE);
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].label, "invite-rotator");
    assert_eq!(hooks[0].authorization, bearer());
    assert_eq!(hooks[0].events, ["group.flow", "instance.state"]);
    let again = app.run_with(&["events", "register"], &secret).await;
    assert!(again.status.success());
    assert_eq!(
        app.emulator.webhooks(INSTANCE).len(),
        1,
        "upserted, not added"
    );

    let node = start_node(&app, listeners).await;
    app.emulator
        .remove_member(&app.groups[0].jid, "5511999990001@s.whatsapp.net");
    app.wait_for("the rotation", Duration::from_secs(20), |rows| {
        rows.iter().any(|r| r.status == Status::Succeeded)
    })
    .await;
    settled(&app).await;

    let table = app.run(&["events", "list"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{table:?}");
    assert!(
        text.contains("member_removed") && text.contains("group-0"),
        "{text}"
    );
    let json = app.run(&["events", "list", "--format", "json"]).await;
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON Lines"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "member_removed" && l["data"]["Leave"].is_array())
    );
    let status = app.run(&["status"]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("INSTANCE") && text.contains("registered"),
        "{text}"
    );

    // Refused when RyzeAPI cannot be reached: exit 1, the error shown.
    app.edit_config(|t| t.replace(&app.server.base_url(), "http://127.0.0.1:9/api"));
    let failed = app.run_with(&["events", "register"], &secret).await;
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_rotation_is_tried_again_and_one_that_cannot_succeed_is_given_up() {
    use invite_rotator::emulator::{Fault, Route};
    // group-0: its first rotation fails (every attempt a 500); group-1: we
    // are not admin, so every rotation fails for good.
    let (app, listeners, _) = node_events_app(
        &[Setup::Admin, Setup::Member],
        "",
        "event_delay = \"200ms\"",
        &[],
    )
    .await;
    let node = start_node(&app, listeners).await;
    for _ in 0..5 {
        app.emulator.push_fault(Route::Reset, Fault::ServerError);
    }

    app.emulator
        .remove_member(&app.groups[0].jid, "5511999990001@s.whatsapp.net");
    app.emulator
        .remove_member(&app.groups[1].jid, "5511999990002@s.whatsapp.net");
    app.wait_for(
        "group-0's rotation to succeed",
        Duration::from_secs(30),
        |rows| {
            rows.iter()
                .any(|r| r.group_name == "group-0" && r.status == Status::Succeeded)
        },
    )
    .await;
    app.wait_for("group-1 given up", Duration::from_secs(30), |rows| {
        rows.iter().filter(|r| r.group_name == "group-1").count() >= 3
    })
    .await;
    // Given up: the calls answered and nothing more called for (a fourth
    // try would be called for first).
    quiet(&app).await;

    let rows = app.history().await;
    let of = |name: &str, status: Status| {
        rows.iter()
            .filter(|r| r.group_name == name && r.status == status)
            .count()
    };
    assert_eq!(
        (
            of("group-0", Status::Failed),
            of("group-0", Status::Succeeded)
        ),
        (1, 1),
        "{rows:#?}"
    );
    assert_eq!(
        of("group-1", Status::Failed),
        3,
        "given up after three: {rows:#?}"
    );
    let store = app.store().await;
    app.assert_chain_complete(&store, &app.groups[0]).await;
    stop_node(&app, node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_before_the_reset_of_an_event_rotation_does_not_answer_the_removal() {
    let (app, _) = events_app(&[Setup::Admin], "", "event_delay = \"200ms\"", &[]).await;
    let crashing = app.spawn_daemon_with(&[
        (SECRET_VAR, SECRET),
        ("FAILPOINTS", "rotation::after_begin=return"),
    ]);
    wait_until(
        "the webhook's registration",
        Duration::from_secs(20),
        || async { !app.emulator.webhooks(INSTANCE).is_empty() },
    )
    .await;
    let mut crashing = crashing;

    app.emulator
        .remove_member(&app.groups[0].jid, "5511999990001@s.whatsapp.net");
    let died = tokio::time::timeout(Duration::from_secs(20), crashing.wait())
        .await
        .expect("the daemon dies at the failpoint")
        .expect("its status");
    assert!(!died.success());
    let left = app.history().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].status, Status::Pending, "{left:?}");

    let daemon = start(&app).await;
    app.wait_for(
        "the rotation after the restart",
        Duration::from_secs(20),
        |rows| rows.iter().any(|r| r.status == Status::Succeeded),
    )
    .await;
    let rows = app.history().await;
    assert_eq!(
        rows[0].status,
        Status::Failed,
        "settled: no reset was made: {rows:#?}"
    );
    assert_eq!(rows[1].trigger, Trigger::MemberRemoved);
    let store = app.store().await;
    app.assert_chain_complete(&store, &app.groups[0]).await;
    stop(&app, daemon).await;
}
