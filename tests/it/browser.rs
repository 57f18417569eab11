//! A real browser on a join link: headless Chromium (Debian's `chromium`),
//! driven over the DevTools protocol, opens a limited link, clicks Join and
//! is sent to `https://chat.whatsapp.com/{live code}`; then opens the link
//! again and is shown the 410 page. Screenshots of both pages go to
//! `target/screenshots/` (not committed).
//!
//! The protocol is spoken directly over a WebSocket (tokio-tungstenite, a
//! dependency already): the handful of commands used here did not justify
//! a browser-driving crate and its dependency tree in the test build.

use crate::common::{Setup, Tuning, real_part, spawn_app};
use crate::events::free_port;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use invite_rotator::emulator::EmulatorOptions;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A DevTools session on one page.
struct Cdp {
    socket: Socket,
    next: u64,
    session: Option<String>,
    events: VecDeque<Value>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let mut message = json!({"id": self.next, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("sent to the browser");
        loop {
            let m = self.read().await;
            if m["id"] == json!(self.next) {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            self.events.push_back(m);
        }
    }

    async fn event(&mut self, method: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i).unwrap_or_default();
        }
        loop {
            let m = self.read().await;
            if m["method"] == method {
                return m;
            }
            self.events.push_back(m);
        }
    }

    async fn read(&mut self) -> Value {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).expect("the browser speaks JSON");
                }
                Some(Ok(_)) => {}
                other => panic!("the browser went away: {other:?}"),
            }
        }
    }

    async fn open(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({ "url": url })).await;
        // Loaded: this URL, complete (an earlier page's load event may
        // still be on its way).
        let done = format!("{url}|complete");
        loop {
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": "location.href + '|' + document.readyState", "returnByValue": true}),
                )
                .await;
            if r["result"]["value"].as_str() == Some(done.as_str()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn screenshot(&mut self, name: &str) {
        let shot = self.call("Page.captureScreenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("a PNG");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn text(&mut self) -> String {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": "document.body.innerText", "returnByValue": true}),
            )
            .await;
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }
}

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

    // The browser, headless, its DevTools on a port it chooses.
    let profile = tempfile::tempdir().unwrap();
    let mut browser = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=412,915",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let stderr = browser.stderr.take().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut endpoint = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                endpoint = Some(url.trim().to_owned());
                break;
            }
        }
        let endpoint = endpoint.expect("chromium prints its DevTools endpoint");
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("DevTools connects");
        let mut cdp = Cdp {
            socket,
            next: 0,
            session: None,
            events: VecDeque::new(),
        };
        let target = cdp
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = cdp
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        cdp.session = attached["sessionId"].as_str().map(str::to_owned);
        cdp.call("Page.enable", json!({})).await;
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
    let _ = browser.kill().await;
    result.expect("the browser session took under a minute");
}
