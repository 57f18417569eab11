//! RyzeAPI's events module, as a client: registering invite-rotator's
//! webhook, enabling the WebSocket, and opening it. Every call takes a grant
//! of the token's rate budget first (the upgrade counts against the limit
//! too); the token goes in the `token` header, never in a URL.

use super::reply::{self, Endpoint};
use super::{Call, Client};
use futures_util::{SinkExt, StreamExt};
use reqwest::header::CONTENT_TYPE;
use tokio_tungstenite::tungstenite;

/// How the WebSocket upgrade went.
#[derive(Debug)]
pub enum Upgrade {
    /// Connected: text frames come through `next_frame`.
    Open(Box<Socket>),
    /// RyzeAPI says the WebSocket is not enabled for this instance (any
    /// 400 to the upgrade).
    NotEnabled,
    /// Anything else: try again later.
    Failed(String),
}

/// Why an open WebSocket gave no frame: it ended, failed, or stayed silent.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// No frame, and no pong to a ping, for this long.
    #[error("no frame and no pong for {} s", .0.as_secs())]
    Silent(std::time::Duration),
    /// The connection failed (the message cleaned of control characters
    /// and cut short, as RyzeAPI's messages are).
    #[error("{}", cleaned(.0))]
    Failed(#[source] Box<tungstenite::Error>),
    /// A binary frame that is not UTF-8.
    #[error("a binary frame that is not text")]
    NotText(#[source] std::string::FromUtf8Error),
    /// RyzeAPI closed it.
    #[error("closed by RyzeAPI")]
    Closed,
}

fn cleaned(e: &tungstenite::Error) -> String {
    reply::clean(&e.to_string())
}

/// An open WebSocket of one instance.
pub struct Socket(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Socket")
    }
}

/// The largest frame read.
const MAX_FRAME: usize = 1024 * 1024;
/// Silence after which the WebSocket is pinged, and then given up.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// The longest an upgrade may take.
const UPGRADE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Socket {
    /// The next text frame; `Err` when the connection ended, failed, or
    /// stayed silent: after [`IDLE`] without a frame a ping goes out, and
    /// without any answer for another [`IDLE`] the connection is given up
    /// (a half-open TCP connection would otherwise wait for ever). Pings
    /// from RyzeAPI are answered as they come.
    pub async fn next_frame(&mut self) -> Result<String, FrameError> {
        let mut pinged = false;
        loop {
            let Ok(next) = tokio::time::timeout(IDLE, self.0.next()).await else {
                if pinged {
                    return Err(FrameError::Silent(2 * IDLE));
                }
                pinged = true;
                if let Err(e) = self
                    .0
                    .send(tungstenite::Message::Ping(Vec::new().into()))
                    .await
                {
                    return Err(FrameError::Failed(Box::new(e)));
                }
                continue;
            };
            pinged = false;
            match next {
                Some(Ok(tungstenite::Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(tungstenite::Message::Binary(bytes))) => {
                    return String::from_utf8(bytes.to_vec()).map_err(FrameError::NotText);
                }
                Some(Ok(tungstenite::Message::Ping(payload))) => {
                    let _ = self.0.send(tungstenite::Message::Pong(payload)).await;
                }
                Some(Ok(tungstenite::Message::Close(_))) | None => {
                    return Err(FrameError::Closed);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(FrameError::Failed(Box::new(e))),
            }
        }
    }
}

impl Client {
    /// `base_url` + `events/<route>/<instance>`.
    fn events_url(&self, route: &str) -> reqwest::Url {
        self.route_url(&["events", route])
    }

    /// `POST /events/webhook/{instance}`: upserts the webhook labelled
    /// `label` (idempotent), posting `events` to `url` with the
    /// `Authorization` header `authorization`.
    pub async fn register_webhook(
        &self,
        label: &str,
        url: &reqwest::Url,
        authorization: &str,
        events: &[&str],
    ) -> Call<()> {
        let body = serde_json::json!({
            "label": label,
            "enabled": true,
            "url": url.as_str(),
            "authorization": authorization,
            "byEvents": false,
            "events": events,
            "mediaBase64": false,
        })
        .to_string();
        let request = self
            .http
            .post(self.events_url("webhook"))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        self.call(Endpoint::Info, request, |_| Ok(())).await
    }

    /// `POST /events/websocket/{instance}`: enables the WebSocket for `events`.
    pub async fn enable_websocket(&self, events: &[&str]) -> Call<()> {
        let body = serde_json::json!({ "enabled": true, "events": events }).to_string();
        let request = self
            .http
            .post(self.events_url("websocket"))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        self.call(Endpoint::Info, request, |_| Ok(())).await
    }

    /// The instance's WebSocket: `wss://` (or `ws://` to loopback) on the
    /// API's host, `/ws/{instance}` (beside `/api`, not under it).
    pub fn websocket_url(&self) -> reqwest::Url {
        let mut url = self.base_url.clone();
        let secure = url.scheme() == "https";
        let _ = url.set_scheme(if secure { "wss" } else { "ws" });
        let mut path: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if path.last().is_some_and(|s| s == "api") {
            path.pop();
        }
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .clear()
                .extend(&path)
                .extend(["ws", self.instance.as_str()]);
        }
        url.set_query(None);
        url
    }

    /// Opens the instance's WebSocket, the token in the `token` header.
    pub async fn open_websocket(&self) -> Upgrade {
        use tungstenite::client::IntoClientRequest;
        self.limiter.acquire().await;
        let url = self.websocket_url();
        let mut request = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => {
                return Upgrade::Failed(format!(
                    "bad WebSocket URL: {}",
                    reply::clean(&e.to_string())
                ));
            }
        };
        if let Ok(mut token) = tungstenite::http::HeaderValue::from_str(self.token.expose()) {
            token.set_sensitive(true);
            request.headers_mut().insert("token", token);
        }
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        match tokio::time::timeout(UPGRADE_TIMEOUT, connecting).await {
            Err(_) => Upgrade::Failed("the WebSocket upgrade timed out".into()),
            Ok(Ok((stream, _))) => Upgrade::Open(Box::new(Socket(stream))),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body = response.body().as_deref().unwrap_or_default();
                let message = reply::error_message(body);
                // RyzeAPI's word for it is "not enabled"; any 400 is taken
                // so, as enabling is idempotent and tried once per upgrade.
                if status == 400 {
                    Upgrade::NotEnabled
                } else {
                    Upgrade::Failed(format!("HTTP {status}: {message}"))
                }
            }
            Ok(Err(e)) => Upgrade::Failed(reply::clean(&e.to_string())),
        }
    }
}
