//! A headless Chromium (Debian's `chromium`) driven over the DevTools
//! protocol, for the tests that need a real browser (join links, the
//! console). The protocol is spoken directly over a WebSocket
//! (tokio-tungstenite, a dependency already): the handful of commands used
//! did not justify a browser-driving crate and its dependency tree.

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A DevTools session on one page.
pub struct Cdp {
    pub socket: Socket,
    pub next: u64,
    pub session: Option<String>,
    pub events: VecDeque<Value>,
}

impl Cdp {
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params).await {
            Ok(result) => result,
            Err(m) => panic!("{method}: {m}"),
        }
    }

    /// As [`Cdp::call`], the browser's error returned (a page navigating
    /// away answers an evaluation with one).
    pub async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
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
                if m.get("error").is_some() {
                    return Err(m);
                }
                return Ok(m["result"].clone());
            }
            self.events.push_back(m);
        }
    }

    pub async fn event(&mut self, method: &str) -> Value {
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

    pub async fn read(&mut self) -> Value {
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

    pub async fn open(&mut self, url: &str) {
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

    pub async fn screenshot(&mut self, name: &str) {
        let shot = self.call("Page.captureScreenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("a PNG");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    pub async fn text(&mut self) -> String {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": "document.body.innerText", "returnByValue": true}),
            )
            .await;
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }

    /// The page's text, or `None` while it is navigating away.
    pub async fn try_text(&mut self) -> Option<String> {
        let expression = "document.readyState === 'complete' ? document.body.innerText : null";
        let r = self
            .try_call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await
            .ok()?;
        r["result"]["value"].as_str().map(str::to_owned)
    }
}

/// A running headless Chromium and a DevTools session on a fresh page.
pub struct Browser {
    pub cdp: Cdp,
    pub process: tokio::process::Child,
    /// Held, not read: its profile directory.
    #[allow(dead_code)]
    pub profile: tempfile::TempDir,
}

/// Starts `chromium` headless at `width`x`height` and attaches to a page.
pub async fn launch(chromium: &Path, width: u32, height: u32) -> Browser {
    let profile = tempfile::tempdir().unwrap();
    let mut process = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let stderr = process.stderr.take().unwrap();
    let cdp = tokio::time::timeout(Duration::from_secs(60), async {
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
        cdp
    })
    .await
    .expect("chromium answers within a minute");
    Browser {
        cdp,
        process,
        profile,
    }
}
