//! `instance.state` reports are claims: against the running daemon, a
//! forged `disconnected` holds a connected instance's calls once, and a
//! forged `connected` then `disconnected` does not hold them again until the
//! API has answered a call. (That reports alone hold calls for at most 10
//! minutes in any hour, and that forged `connected` reports do not call a
//! disconnected instance beyond its backoff, is tested under paused time in
//! `ryzeapi::hold`: the bounds are minutes of real time in the binary.)

use crate::common::events::{PATH, SECRET, events, events_app, start, stop};
use crate::common::wait_until;
use crate::common::{INSTANCE, Setup, TOKEN};
use invite_rotator::store::Status;
use serde_json::json;
use std::time::Duration;

/// Posts an `instance.state` delivery saying `state`, as whoever holds the
/// events secret (and the instance's token) may; returns the HTTP status.
async fn report(port: u16, state: &str) -> u16 {
    let body = json!({
        "event": "instance.state",
        "data": {"instance": INSTANCE, "state": state},
        "instanceData": {"baseUrl": "https://ryzeapi.cloud", "instance": INSTANCE, "token": TOKEN},
    });
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap();
    http.post(format!("http://127.0.0.1:{port}{PATH}"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SECRET}"))
        .body(body.to_string())
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Waits until `n` instance.state events are stored; their outcomes.
async fn outcomes(app: &crate::common::TestApp, n: usize) -> Vec<String> {
    wait_until("the reports", Duration::from_secs(10), || async {
        events(app)
            .await
            .iter()
            .filter(|e| e.outcome.is_some() && e.event == "instance.state")
            .count()
            >= n
    })
    .await;
    events(app)
        .await
        .into_iter()
        .filter(|e| e.event == "instance.state")
        .filter_map(|e| e.outcome)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_connected_then_disconnected_does_not_hold_a_connected_instance_again() {
    let (app, port) = events_app(&[Setup::Admin], "", "event_delay = \"200ms\"", &[]).await;
    let daemon = start(&app).await;
    let group = app.groups[0].clone();

    // Forged: the instance is connected all along.
    assert_eq!(report(port, "disconnected").await, 200);
    let said = outcomes(&app, 1).await;
    assert!(said[0].starts_with("instance held"), "{said:?}");
    assert_eq!(report(port, "connected").await, 200);
    // Another word for it: the same data again would be dropped as a repeat.
    assert_eq!(report(port, "logged_out").await, 200);
    let said = outcomes(&app, 3).await;
    assert!(said[2].starts_with("not held"), "{said:?}");

    // A removal now rotates within its quiet period: the calls go.
    app.emulator
        .remove_member(&group.jid, "5511999990001@s.whatsapp.net");
    app.wait_for(
        "the rotation after the removal",
        Duration::from_secs(15),
        |rows| rows.iter().any(|r| r.status == Status::Succeeded),
    )
    .await;
    stop(&app, daemon).await;
}
