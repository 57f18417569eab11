//! A daemon that receives RyzeAPI's events: its config (`[events]` on a
//! loopback port, the webhook's secret in its environment), its start and
//! stop, and what it stored.

use super::node::{RunningNode, loopback};
use super::{
    INSTANCE, Setup, TOKEN, TestApp, Tuning, fast_api, free_port, signal, spawn_app, wait_until,
};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::node::Listeners;
use invite_rotator::store::{Rotation, Store, StoredEvent, Trigger};
use serde_json::json;
use std::time::Duration;

/// The webhook's secret, distinctive enough to grep for.
pub const SECRET: &str = "ev-SECRET-51c0ffee-0123456789";
pub const SECRET_VAR: &str = "IR_TEST_EVENTS_SECRET";
/// The receiver's path.
pub const PATH: &str = "/ryzeapi/events";

/// An app whose daemon receives events: `[events]` on a free loopback port,
/// `[defaults]` from `defaults` (such as `event_delay = "1s"`), and
/// `group_keys[i]` added to group `i`'s table.
pub async fn events_app(
    setups: &[Setup],
    events: &str,
    defaults: &str,
    group_keys: &[&str],
) -> (TestApp, u16) {
    events_app_with(fast_api(), setups, events, defaults, group_keys).await
}

/// As [`events_app`], with the emulator's `options`.
pub async fn events_app_with(
    options: EmulatorOptions,
    setups: &[Setup],
    events: &str,
    defaults: &str,
    group_keys: &[&str],
) -> (TestApp, u16) {
    let app = spawn_app(setups, options, yearly()).await;
    let port = free_port();
    configure(&app, port, events, defaults, group_keys);
    (app, port)
}

/// As [`events_app`], for a node in the test's process: the receiver's
/// listener is bound here (port 0) and handed to the node in the returned
/// [`Listeners`] (add others to them before [`start_node`]).
pub async fn node_events_app(
    setups: &[Setup],
    events: &str,
    defaults: &str,
    group_keys: &[&str],
) -> (TestApp, Listeners, u16) {
    node_events_app_with(fast_api(), setups, events, defaults, group_keys).await
}

/// As [`node_events_app`], with the emulator's `options`.
pub async fn node_events_app_with(
    options: EmulatorOptions,
    setups: &[Setup],
    events: &str,
    defaults: &str,
    group_keys: &[&str],
) -> (TestApp, Listeners, u16) {
    let app = spawn_app(setups, options, yearly()).await;
    let (listener, port) = loopback().await;
    configure(&app, port, events, defaults, group_keys);
    let listeners = Listeners {
        events: Some(listener),
        ..Listeners::default()
    };
    (app, listeners, port)
}

/// Adds `[events]` on `port`, `[defaults]` and each group's keys.
fn configure(app: &TestApp, port: u16, events: &str, defaults: &str, group_keys: &[&str]) {
    app.edit_config(|mut text| {
        for (i, keys) in group_keys.iter().enumerate() {
            let name = format!("name = \"group-{i}\"\n");
            text = text.replace(&name, &format!("{name}{keys}\n"));
        }
        format!(
            "{text}\n[defaults]\n{defaults}\n\n[events]\nlisten = \"127.0.0.1:{port}\"\n\
             public_url = \"http://127.0.0.1:{port}{PATH}\"\nauthorization_env = \"{SECRET_VAR}\"\n{events}\n"
        )
    });
}

/// Groups that never come due during a test: only events rotate them.
pub fn yearly() -> Tuning {
    Tuning {
        schedule: "0 0 1 1 *",
        ..Tuning::default()
    }
}

/// Starts the daemon with the secret in its environment and waits until
/// it registered its webhook at the emulator.
pub async fn start(app: &TestApp) -> tokio::process::Child {
    let daemon = app.spawn_daemon_with(&[(SECRET_VAR, SECRET)]);
    wait_until(
        "the webhook's registration",
        Duration::from_secs(20),
        || async { !app.emulator.webhooks(INSTANCE).is_empty() },
    )
    .await;
    daemon
}

/// Starts a node in the test's process (the secret in the environment, as
/// [`start`] gives it) and waits until it registered its webhook.
pub async fn start_node(app: &TestApp, listeners: Listeners) -> RunningNode {
    // SAFETY: every test sets this variable to the same value.
    unsafe { std::env::set_var(SECRET_VAR, SECRET) };
    let node = app.spawn_node(listeners).await;
    wait_until(
        "the webhook's registration",
        Duration::from_secs(20),
        || async { !app.emulator.webhooks(INSTANCE).is_empty() },
    )
    .await;
    node
}

/// Stops a node started by [`start_node`]: it stops cleanly (what SIGTERM
/// and exit 0 are to the binary), no live code in its log.
pub async fn stop_node(app: &TestApp, node: RunningNode) {
    let stopped = node.stop().await;
    assert!(stopped.is_ok(), "{stopped:?}");
    app.assert_no_code_in(
        &std::fs::read(app.node_log()).unwrap_or_default(),
        "the node's log",
    );
}

/// The events stored so far, oldest first.
pub async fn events(app: &TestApp) -> Vec<StoredEvent> {
    match Store::connect_read_only(&app.database).await {
        Ok(store) => store.recent_events(10_000).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Rotations of `trigger` in the history.
pub fn with_trigger(rows: &[Rotation], trigger: Trigger) -> Vec<Rotation> {
    rows.iter()
        .filter(|r| r.trigger == trigger)
        .cloned()
        .collect()
}

/// Waits until every stored event has been acted on.
pub async fn settled(app: &TestApp) {
    wait_until("every event acted on", Duration::from_secs(20), || async {
        let all = events(app).await;
        !all.is_empty() && all.iter().all(|e| e.processed_at.is_some())
    })
    .await;
}

/// An envelope as RyzeAPI sends it, the instance's token inside.
pub fn envelope(event: &str, data: serde_json::Value) -> Vec<u8> {
    json!({
        "event": event,
        "data": data,
        "instanceData": {"baseUrl": "https://ryzeapi.cloud", "instance": INSTANCE, "token": TOKEN},
    })
    .to_string()
    .into_bytes()
}

/// Posts `body` to the receiver; returns the status.
pub async fn deliver(port: u16, authorization: Option<&str>, body: Vec<u8>) -> u16 {
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None)
        .expect("an HTTP client");
    let mut request = http
        .post(format!("http://127.0.0.1:{port}{PATH}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    request.send().await.map_or(0, |r| r.status().as_u16())
}

/// The `Authorization` the receiver wants.
pub fn bearer() -> String {
    format!("Bearer {SECRET}")
}

/// Delivers a `group.flow` of group `jid` in no known shape (stored as
/// unparsed, acted on as nothing), numbered `n` so that no two are one
/// event, and waits until it was acted on: a mark the actor's loop passed.
pub async fn mark(app: &TestApp, port: u16, jid: &str, n: u32) {
    let body = envelope("group.flow", json!({"JID": jid, "Mark": n}));
    assert_eq!(deliver(port, Some(&bearer()), body).await, 200, "mark {n}");
    wait_until("the mark acted on", Duration::from_secs(20), || async {
        events(app).await.iter().any(|e| {
            e.kind == "unparsed"
                && e.data.contains(&format!("\"Mark\":{n}"))
                && e.processed_at.is_some()
        })
    })
    .await;
}

/// Waits until nothing more can come of the events so far: every stored
/// event acted on and no rotation called for (a removal's call stays in the
/// database until a rotation of ours that started after it has succeeded, or
/// the call was given up). The positive signal a test waits for before it
/// asserts that the events caused no further rotation.
pub async fn quiet(app: &TestApp) {
    settled(app).await;
    wait_until(
        "no rotation called for",
        Duration::from_secs(30),
        || async {
            match Store::connect_read_only(&app.database).await {
                Ok(store) => store.event_rotations().await.is_ok_and(|c| c.is_empty()),
                Err(_) => false,
            }
        },
    )
    .await;
    settled(app).await;
}

/// Stops the daemon with SIGTERM: it exits 0, no live code in its log.
pub async fn stop(app: &TestApp, mut daemon: tokio::process::Child) {
    signal(&daemon, "TERM");
    let status = daemon.wait().await.expect("the daemon ends");
    assert!(status.success(), "{status:?}");
    app.assert_no_code_in(
        &std::fs::read(app.daemon_log()).unwrap_or_default(),
        "the daemon's log",
    );
}
