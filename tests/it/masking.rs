//! Outside text on the real daemon: a webhook receiver that answers 400
//! echoing the notification puts no code into the journal, the console's
//! events page or the stored deliveries; event data that quotes another
//! instance's token or the events' secret is stored without them; CSV cells
//! that a spreadsheet would run are neutralised the same way by
//! `history --format csv` and the console's download.

use crate::common::events::{PATH, SECRET, events, events_app, start};
use crate::common::{INSTANCE, Setup, TOKEN, TestApp, Tuning, signal, spawn_app};
use crate::common::{free_port, wait_until};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use invite_rotator::emulator::EmulatorOptions;
use std::time::Duration;

/// A webhook receiver that answers every notification 400, echoing it.
async fn echoing_receiver() -> String {
    let app = Router::new().route(
        "/hook",
        post(
            |body: String| async move { (StatusCode::BAD_REQUEST, format!("bad request: {body}")) },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn http() -> reqwest::Client {
    invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap()
}

/// GETs `url` once the listener answers; the body.
async fn get(url: &str) -> Vec<u8> {
    for _ in 0..400 {
        if let Ok(reply) = http().get(url).send().await {
            assert!(reply.status().is_success(), "{url}: {}", reply.status());
            return reply.bytes().await.unwrap().to_vec();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} did not come up");
}

/// An app with its groups rotated twice by the CLI and `[console]` on a
/// free loopback port (its base URL).
async fn rotated_with_console(app: &TestApp) -> String {
    for _ in 0..2 {
        let out = app.run(&["rotate", "--all"]).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let port = free_port();
    app.edit_config(|t| format!("{t}\n[console]\nlisten = \"127.0.0.1:{port}\"\n"));
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_reply_echoing_the_notification_leaves_no_code_in_the_log_the_console_or_the_database()
 {
    // Arrange: two rotations (old and new codes known), a webhook receiver
    // that echoes each notification in its 400.
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let console = rotated_with_console(&app).await;
    let url = echoing_receiver().await;
    app.edit_config(|t| {
        format!("{t}\n[[hook]]\nname = \"echo\"\nkind = \"webhook\"\nurl = \"{url}\"\non = [\"success\", \"failure\"]\n")
    });
    let codes = app.emulator.issued_codes();
    assert!(codes.len() >= 2, "{codes:?}");

    // Act: the daemon delivers (and fails, and retries) the notifications.
    let daemon = app.spawn_daemon();
    let store = app.store().await;
    wait_until(
        "failed deliveries recorded",
        Duration::from_secs(30),
        || async {
            let rows = store.recent_deliveries(100).await.unwrap_or_default();
            rows.len() == 2
                && rows
                    .iter()
                    .all(|d| d.attempts >= 2 && d.last_error.is_some())
        },
    )
    .await;
    let page = get(&format!("{console}/events")).await;
    signal(&daemon, "TERM");
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());

    // Assert: the error is kept (masked) everywhere, the codes nowhere.
    let log = std::fs::read_to_string(app.daemon_log()).unwrap();
    assert!(log.contains("hook delivery failed"), "{log}");
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("HTTP 400"), "{page}");
    let deliveries = store.recent_deliveries(100).await.unwrap();
    for d in &deliveries {
        let error = d.last_error.as_deref().unwrap();
        assert!(
            error.contains("HTTP 400") && error.contains("[code …"),
            "{error}"
        );
    }
    let stored: String = deliveries
        .iter()
        .filter_map(|d| d.last_error.clone())
        .collect();
    for code in &codes {
        assert!(!log.contains(code), "{code} in the daemon's log");
        assert!(!page.contains(code), "{code} on the console's events page");
        assert!(!stored.contains(code), "{code} in the stored deliveries");
    }
}

const OTHER_TOKEN: &str = "tok-OTHER-instance-0a1b2c3d";
const OTHER_VAR: &str = "IR_TEST_OTHER_TOKEN";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_data_quoting_another_instance_s_token_and_the_events_secret_is_stored_without_them()
{
    // Arrange: a second instance with its own token.
    let (app, port) = events_app(&[Setup::Admin], "", "", &[]).await;
    app.emulator.add_instance("support", OTHER_TOKEN);
    app.edit_config(|t| {
        t.replacen(
            "\n[[group]]",
            &format!(
                "\n[[instance]]\nname = \"support\"\ntoken_env = \"{OTHER_VAR}\"\n\n[[group]]"
            ),
            1,
        )
    });
    // SAFETY: set before the daemon starts, to the same value by every test.
    unsafe { std::env::set_var(OTHER_VAR, OTHER_TOKEN) };
    let daemon = start(&app).await;

    // Act: a delivery with its own instance's token, quoting the other
    // instance's token and the secret in fields not named like a token.
    let body = serde_json::json!({
        "event": "instance.state",
        "instanceData": {"instance": INSTANCE, "token": TOKEN},
        "data": {
            "state": "connected",
            "note": format!("copied from {OTHER_TOKEN}"),
            "detail": [format!("Bearer {SECRET}")],
        },
    });
    let answer = http()
        .post(format!("http://127.0.0.1:{port}{PATH}"))
        .header("authorization", format!("Bearer {SECRET}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    wait_until("the event stored", Duration::from_secs(20), || async {
        !events(&app).await.is_empty()
    })
    .await;
    crate::common::events::stop(&app, daemon).await;

    // Assert
    let stored = events(&app).await;
    let data: String = stored.iter().map(|e| e.data.clone()).collect();
    assert!(data.contains("copied from [redacted]"), "{data}");
    for secret in [OTHER_TOKEN, SECRET, TOKEN] {
        assert!(!data.contains(secret), "{secret} in {data}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_a_spreadsheet_would_run_are_neutralised_alike_by_the_cli_and_the_console() {
    // Arrange: a group whose name is a formula.
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    app.edit_config(|t| t.replace("name = \"group-0\"", "name = \"=1+2\""));
    let console = rotated_with_console(&app).await;
    let daemon = app.spawn_daemon();

    // Act
    let cli = app.run(&["history", "--format", "csv"]).await;
    let download = get(&format!("{console}/history.csv")).await;
    let json = app.run(&["history", "--format", "json"]).await;
    signal(&daemon, "TERM");
    let mut daemon = daemon;
    assert!(daemon.wait().await.unwrap().success());

    // Assert
    assert_eq!(cli.status.code(), Some(0), "{cli:?}");
    let text = String::from_utf8(cli.stdout.clone()).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in rows {
        assert!(row.contains(",'=1+2,"), "{row}");
        assert!(!row.contains(",=1+2,"), "{row}");
    }
    assert_eq!(download, cli.stdout, "the download is the CLI's bytes");
    let json = String::from_utf8(json.stdout).unwrap();
    for line in json.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["group_name"], "=1+2", "{line}");
    }
}

#[tokio::test]
async fn an_api_error_quoting_the_token_and_a_known_code_keeps_neither() {
    // Arrange: a history that knows a code; an API that quotes it back with
    // the instance's token and another configured secret.
    use invite_rotator::mask::Masker;
    use invite_rotator::ryzeapi::{Client, RyzeApi, http_client};
    use invite_rotator::secret::Token;
    use invite_rotator::store::{Begun, Cause, NewRotation, Store};
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const CODE: &str = "KnownCode0123456789abc";
    const API_TOKEN: &str = "sk-api-token-4d5e6f";
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let new = NewRotation {
        group_name: "vip",
        group_jid: "120363406289005073@g.us",
        instance: "sales",
        cause: Cause::manual(),
    };
    let Begun::Started(id) = store.begin(&new).await.unwrap() else {
        panic!("not started")
    };
    store.record_old_code(id, Some(CODE)).await.unwrap();
    let server = MockServer::start().await;
    let message =
        format!("bad token {API_TOKEN} for https://chat.whatsapp.com/{CODE} (secret {SECRET})");
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(
                serde_json::json!({"success": false, "error": {"message": message}}),
            ),
        )
        .mount(&server)
        .await;
    let client = Client::new(
        http_client(Duration::from_secs(5), None).unwrap(),
        reqwest::Url::parse(&format!("{}/api", server.uri())).unwrap(),
        "sales",
        Token::new(API_TOKEN),
        std::sync::Arc::new(invite_rotator::ratelimit::RateLimiter::per_minute(6000)),
    )
    .masking(
        std::sync::Arc::new(Masker::new([API_TOKEN, SECRET])),
        store.clone(),
    );

    // Act
    let jid = invite_rotator::whatsapp::Jid::parse("120363406289005073@g.us").unwrap();
    let call = client.reset_link(&jid).await;

    // Assert: the error says what happened, without the secrets or the code.
    let error = call.result.unwrap_err().to_string();
    assert!(
        error.starts_with("HTTP 403: bad token [redacted]"),
        "{error}"
    );
    assert!(error.contains("chat.whatsapp.com/[code …"), "{error}");
    for secret in [API_TOKEN, SECRET, CODE] {
        assert!(!error.contains(secret), "{secret} in {error}");
    }
}
