//! Forged and abusive deliveries against the real daemon (issue 19, items 1
//! and 4): an event is a report, never a fact. A delivery must carry the
//! named instance's own token, for that instance's groups; a reported link
//! change is recorded only once a read of the live link confirms it, and
//! the join links never follow an unconfirmed one; removals rotate a group
//! at most `max_rotations_per_hour` times an hour; deliveries for instances
//! not in the config are counted, never stored, and what is stored is small.

use crate::common::events::{
    PATH, SECRET, SECRET_VAR, events, events_app, settled, start, stop, with_trigger,
};
use crate::common::{INSTANCE, Setup, TOKEN, TestApp, free_port, wait_until};
use invite_rotator::store::Trigger;
use serde_json::{Value, json};
use std::time::Duration;

/// A second instance, with its own token.
const OTHER: &str = "support";
const OTHER_TOKEN: &str = "tok-SUPPORT-0badf00d42";
const JOIN_PUBLIC: &str = "https://join.example.org";

/// The test's HTTP client. Building one reads the system's root
/// certificates (tens of milliseconds in a debug build, 44 s over the 1,020
/// deliveries below when each made its own), so each test thread builds one
/// (libtest runs every test on a thread of its own). No connection is kept
/// idle: each request goes on a fresh connection, as with a client apiece.
fn http() -> reqwest::Client {
    thread_local! {
        static HTTP: reqwest::Client = {
            // The TLS provider the daemon's own client installs.
            drop(invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None));
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client")
        };
    }
    HTTP.with(reqwest::Client::clone)
}

/// An envelope whose `instanceData` is exactly `instance_data`.
fn envelope(event: &str, data: Value, instance_data: Value) -> Vec<u8> {
    json!({"event": event, "data": data, "instanceData": instance_data})
        .to_string()
        .into_bytes()
}

fn link_change(jid: &str, code: &str) -> Value {
    json!({"JID": jid, "Sender": "5511988887777@s.whatsapp.net",
           "Timestamp": chrono::Utc::now().to_rfc3339(), "Join": null, "Leave": null,
           "NewInviteLink": format!("https://chat.whatsapp.com/{code}")})
}

/// Posts `body` with the right secret; returns the status.
async fn deliver(port: u16, body: Vec<u8>) -> u16 {
    http()
        .post(format!("http://127.0.0.1:{port}{PATH}"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SECRET}"))
        .body(body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn metrics_text(port: u16) -> String {
    let Ok(r) = http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
    else {
        return String::new();
    };
    r.text().await.unwrap_or_default()
}

/// A `SELECT COUNT(*)`, read-only.
async fn count(app: &TestApp, sql: &'static str) -> i64 {
    use sqlx::ConnectOptions;
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&app.db_path)
        .read_only(true)
        .connect()
        .await
        .expect("the history opens");
    sqlx::query_scalar(sql)
        .fetch_one(&mut c)
        .await
        .expect("a count")
}

/// What the hooks were told: their deliveries, once the outbox is drained
/// into them (the hooks' worker does it after each rotation).
async fn heard(app: &TestApp) -> i64 {
    wait_until(
        "the hooks' outbox drained",
        Duration::from_secs(10),
        || async { count(app, "SELECT COUNT(*) FROM hook_outbox").await == 0 },
    )
    .await;
    count(app, "SELECT COUNT(*) FROM hook_deliveries").await
}

/// Where the join link `path` leads now.
async fn location(base: &str, path: &str) -> Option<String> {
    let r = http().get(format!("{base}{path}")).send().await.ok()?;
    r.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
}

fn live_link(app: &TestApp) -> String {
    let code = app
        .emulator
        .current_code(&app.groups[0].jid)
        .expect("a code");
    format!("https://chat.whatsapp.com/{code}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_link_change_moves_no_join_link_and_a_genuine_one_is_recorded_as_read() {
    // Arrange: a second instance with its own token, a join link, and the
    // metrics, and a hook (its deliveries tell what the hooks heard).
    let (app, port) = events_app(&[Setup::Admin], "", "event_delay = \"200ms\"", &[]).await;
    app.emulator.add_instance(OTHER, OTHER_TOKEN);
    let (join, metrics) = (free_port(), free_port());
    app.edit_config(|t| {
        format!(
            "{t}\n[join]\nlisten = \"127.0.0.1:{join}\"\npublic_url = \"{JOIN_PUBLIC}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [[instance]]\nname = \"{OTHER}\"\ntoken = \"{OTHER_TOKEN}\"\n\
             [[hook]]\nname = \"told\"\nkind = \"command\"\ncommand = [\"true\"]\n"
        )
    });
    let secret = [(SECRET_VAR, SECRET)];
    let out = app
        .run_with(&["join", "create", "group-0", "--name", "poster"], &secret)
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let url = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let poster = url
        .strip_prefix(JOIN_PUBLIC)
        .expect("a join URL")
        .to_owned();
    let base = format!("http://127.0.0.1:{join}");
    let daemon = start(&app).await;
    let jid = app.groups[0].jid.clone();
    let out = app.run_with(&["rotate", "group-0"], &secret).await;
    assert!(out.status.success(), "{out:?}");
    wait_until(
        "the redirect to the live code",
        Duration::from_secs(20),
        || async { location(&base, &poster).await.as_deref() == Some(live_link(&app).as_str()) },
    )
    .await;
    settled(&app).await;
    let (_, _, notified) = (
        app.history().await.len(),
        count(&app, "SELECT COUNT(*) FROM ledger").await,
        heard(&app).await,
    );

    // A genuine change elsewhere is recorded with the code the API reads,
    // told to the hooks, and followed by the join link. (First: a report
    // that comes within 30 s of a read that refuted a forged one waits for
    // the next read.)
    let outside = app.emulator.reset_outside(&jid);
    app.wait_for("the outside row", Duration::from_secs(20), |rows| {
        rows.iter().any(|r| r.trigger == Trigger::Outside)
    })
    .await;
    let rows = app.history().await;
    let row = &with_trigger(&rows, Trigger::Outside)[0];
    assert_eq!(row.new_invite_code.as_deref(), Some(outside.as_str()));
    assert_eq!(app.emulator.current_code(&jid), Some(outside.clone()));
    wait_until(
        "the redirect to the outside code",
        Duration::from_secs(10),
        || async {
            location(&base, &poster).await.as_deref()
                == Some(format!("https://chat.whatsapp.com/{outside}").as_str())
        },
    )
    .await;
    wait_until(
        "the hook told of the outside change",
        Duration::from_secs(10),
        || async { heard(&app).await == notified + 1 },
    )
    .await;
    let (rows, entries, notified) = (
        app.history().await.len(),
        count(&app, "SELECT COUNT(*) FROM ledger").await,
        heard(&app).await,
    );

    // Act: link changes to codes of the attacker's choosing.
    let sales = |token: Option<&str>, named: &str| match token {
        Some(t) => json!({"baseUrl": "https://ryzeapi.cloud", "instance": named, "token": t}),
        None => json!({"baseUrl": "https://ryzeapi.cloud", "instance": named}),
    };
    let forged = [
        (
            "a wrong token",
            sales(Some("tok-WRONG-00000000"), INSTANCE),
            403,
        ),
        ("no token", sales(None, INSTANCE), 403),
        (
            "another instance's token, naming it",
            sales(Some(OTHER_TOKEN), OTHER),
            403,
        ),
        (
            "this instance's token, naming another",
            sales(Some(TOKEN), OTHER),
            403,
        ),
        (
            "an unconfigured instance",
            sales(Some("tok-GHOST-00000000"), "ghost"),
            403,
        ),
        // Authentic, but the API does not have the code: kept, not believed.
        (
            "a code the API does not have",
            sales(Some(TOKEN), INSTANCE),
            200,
        ),
    ];
    for (i, (what, instance_data, answer)) in forged.into_iter().enumerate() {
        let code = format!("AttackerCode{i}xxxxxxxxx");
        let body = envelope("group.flow", link_change(&jid, &code), instance_data);
        assert_eq!(deliver(port, body).await, answer, "{what}");
    }
    settled(&app).await;

    // Assert: nothing but the one authentic report was stored, and it moved
    // nothing: no row, no ledger entry, no notification, the same redirect.
    let stored = events(&app).await;
    let link_events: Vec<_> = stored.iter().filter(|e| e.kind == "link_changed").collect();
    assert_eq!(
        link_events.len(),
        3,
        "ours, the genuine change, and the authentic report: {stored:#?}"
    );
    let report = link_events.last().unwrap();
    assert!(
        report
            .outcome
            .as_deref()
            .is_some_and(|o| o.contains("not confirmed")),
        "{report:?}"
    );
    let history = app.history().await;
    assert_eq!(history.len(), rows, "{history:#?}");
    assert_eq!(with_trigger(&history, Trigger::Outside).len(), 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM ledger").await, entries);
    assert_eq!(heard(&app).await, notified);
    assert_eq!(
        location(&base, &poster).await.as_deref(),
        Some(live_link(&app).as_str())
    );
    let text = metrics_text(metrics).await;
    for line in [
        "invite_rotator_events_total{event=\"group.flow\",kind=\"refused_token\"} 4",
        "invite_rotator_events_total{event=\"group.flow\",kind=\"refused_instance\"} 1",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }

    stop(&app, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_for_unconfigured_instances_are_not_stored_and_stored_data_is_small() {
    let (app, port) = events_app(&[Setup::Admin], "", "", &[]).await;
    let daemon = start(&app).await;
    let jid = app.groups[0].jid.clone();
    let size = || {
        ["", "-wal"]
            .iter()
            .map(|s| {
                let path = format!("{}{s}", app.db_path.display());
                std::fs::metadata(path).map_or(0, |m| m.len())
            })
            .sum::<u64>()
    };
    let junk = |i: usize| json!({"JID": jid, "Weird": i, "Blob": "x".repeat(20_000)});

    // Act: 1,000 junk deliveries, each naming an instance of its own.
    let before = size();
    for i in 0..1000 {
        let instance_data =
            json!({"instance": format!("ghost-{i}"), "token": format!("tok-ghost-{i:08}")});
        let answer = deliver(port, envelope("group.flow", junk(i), instance_data)).await;
        assert_eq!(answer, 403, "delivery {i}");
    }
    let after = size();
    eprintln!(
        "database and WAL: {before} bytes before 1,000 deliveries for unconfigured instances, {after} after"
    );

    // Assert: nothing stored, the database did not grow with them.
    assert!(events(&app).await.is_empty());
    assert!(after <= before + 64 * 1024, "{before} -> {after}");

    // Authentic junk is stored, each event cut to at most 8 KiB of JSON.
    for i in 0..20 {
        let instance_data = json!({"instance": INSTANCE, "token": TOKEN});
        let answer = deliver(port, envelope("group.flow", junk(i), instance_data)).await;
        assert_eq!(answer, 200, "delivery {i}");
    }
    settled(&app).await;
    let stored = events(&app).await;
    assert_eq!(stored.len(), 20);
    for e in &stored {
        assert!(e.data.len() <= 8 * 1024, "{} bytes", e.data.len());
        let back: Value = serde_json::from_str(&e.data).expect("valid JSON");
        assert!(back["truncated_bytes"].as_u64().unwrap() > 20_000);
        assert_eq!(back["JID"], jid.as_str());
    }
    stop(&app, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_rotate_a_group_at_most_max_rotations_per_hour() {
    let (app, _) = events_app(
        &[Setup::Admin],
        "max_rotations_per_hour = 2",
        "event_delay = \"100ms\"",
        &[],
    )
    .await;
    let metrics = free_port();
    app.edit_config(|t| format!("{t}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"));
    let daemon = start(&app).await;
    let jid = app.groups[0].jid.clone();
    // Two removals, each seen through: two rotations.
    for i in 0..2 {
        app.emulator
            .remove_member(&jid, &format!("551199999000{i}@s.whatsapp.net"));
        app.wait_for("the removal's rotation", Duration::from_secs(20), |rows| {
            with_trigger(rows, Trigger::MemberRemoved).len() == i + 1
        })
        .await;
    }
    // Five more: the cap bites, once.
    for i in 2..7 {
        app.emulator
            .remove_member(&jid, &format!("551199999000{i}@s.whatsapp.net"));
        wait_until("the removal acted on", Duration::from_secs(20), || async {
            events(&app)
                .await
                .iter()
                .filter(|e| e.kind == "member_removed" && e.processed_at.is_some())
                .count()
                > i
        })
        .await;
    }
    let capped = "invite_rotator_event_rotations_capped_total 1";
    wait_until("the cap's count", Duration::from_secs(20), || async {
        metrics_text(metrics).await.contains(capped)
    })
    .await;

    // Assert: still two; the call waits for the window; one log line.
    let rows = app.history().await;
    assert_eq!(
        with_trigger(&rows, Trigger::MemberRemoved).len(),
        2,
        "{rows:#?}"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM event_rotations").await,
        1,
        "the call still waits"
    );
    let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
    let bites = log.matches("rotations an hour for this group").count();
    assert_eq!(bites, 1, "{log}");
    assert!(metrics_text(metrics).await.contains(capped));

    // Other rotations are neither counted nor held back.
    let out = app
        .run_with(&["rotate", "group-0"], &[(SECRET_VAR, SECRET)])
        .await;
    assert!(out.status.success(), "{out:?}");
    let rows = app.history().await;
    assert_eq!(with_trigger(&rows, Trigger::Manual).len(), 1, "{rows:#?}");
    stop(&app, daemon).await;
}
