//! A real browser on a join link: headless Chromium (Debian's `chromium`),
//! driven over the DevTools protocol, opens a limited link, clicks Join and
//! is sent to `https://chat.whatsapp.com/{live code}`; then opens the link
//! again and is shown the 410 page. Screenshots of both pages go to
//! `target/screenshots/` (not committed). The browser is [`crate::cdp`]'s.

use crate::cdp::launch;
use crate::common::free_port;
use crate::common::{Setup, Tuning, real_part, spawn_app};
use base64::Engine;
use invite_rotator::emulator::EmulatorOptions;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_clicks_join_and_lands_on_the_live_invite_then_sees_the_gone_page() {
    let Some(chromium) = real_part("chromium", "chromium") else {
        return;
    };
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let port = free_port();
    app.edit_config(|t| {
        format!(
            "{t}\n[join]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n"
        )
    });
    let out = app.run(&["rotate", "group-0"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = app
        .run(&[
            "join",
            "create",
            "group-0",
            "--name",
            "once",
            "--max-uses",
            "1",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let _daemon = app.spawn_daemon();
    let live = format!(
        "https://chat.whatsapp.com/{}",
        app.emulator.code_chain(&app.groups[0].jid).last().unwrap()
    );
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap();
    for _ in 0..200 {
        if http.head(&url).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut browser = launch(&chromium, 412, 915).await;
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        let cdp = &mut browser.cdp;
        // WhatsApp itself is not reached: the request is caught and answered.
        cdp.call(
            "Fetch.enable",
            json!({"patterns": [{"urlPattern": "https://chat.whatsapp.com/*"}]}),
        )
        .await;

        // The join page: a button, no redirect yet.
        cdp.open(&url).await;
        assert!(cdp.text().await.contains("Join the WhatsApp group"));
        cdp.screenshot("join-page.png").await;
        cdp.call(
            "Runtime.evaluate",
            json!({"expression": "document.querySelector('button').click()"}),
        )
        .await;
        let paused = cdp.event("Fetch.requestPaused").await;
        let landed = paused["params"]["request"]["url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        cdp.call(
            "Fetch.fulfillRequest",
            json!({
                "requestId": paused["params"]["requestId"],
                "responseCode": 200,
                "body": base64::engine::general_purpose::STANDARD.encode("<p>WhatsApp</p>"),
            }),
        )
        .await;
        assert_eq!(landed, live, "the browser was sent to the live invite");

        // Used: the page that says so, once the links are next read.
        while http
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok()
            != Some(410)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cdp.open(&url).await;
        let text = cdp.text().await;
        assert!(text.contains("This link no longer works"), "{text}");
        assert!(text.contains("Ask the person who sent it"), "{text}");
        cdp.screenshot("gone-page.png").await;
    })
    .await;
    let _ = browser.process.kill().await;
    result.expect("the browser session took under a minute");
}
