//! The HTTP client for one RyzeAPI instance.

use super::reply::{self, Endpoint, RateHeaders};
use super::{Call, CallError, GroupInfo, ResetReply, RyzeApi};
use crate::mask::Masker;
use crate::ratelimit::RateLimiter;
use crate::secret::Token;
use crate::store::Store;
use crate::whatsapp::Jid;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// No real reply is near this size; a larger body is cut off and treated as unreadable.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub use crate::ratelimit::MAX_RATE_WAIT;

/// A RyzeAPI client bound to one instance and its token. Every call first takes
/// a grant from the token's [`RateLimiter`] and feeds the reply's
/// `X-RateLimit-*` headers back to it. Cloning is shallow.
#[derive(Clone)]
pub struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base_url: reqwest::Url,
    pub(super) instance: String,
    pub(super) token: Token,
    pub(super) limiter: Arc<RateLimiter>,
    /// What masks error messages, and the history it asks for codes.
    pub(super) masking: Option<(Arc<Masker>, Store)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url.as_str())
            .field("instance", &self.instance)
            .field("token", &self.token)
            .finish()
    }
}

/// Builds the shared HTTP connection pool: rustls with the platform's roots,
/// redirects never followed (the `token` header would go with them), `timeout`
/// for each whole call.
///
/// No proxy, whatever `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` say: a
/// proxy the environment names could read every token. Only `proxy` (the
/// config's `[api] proxy`) is used, and only for HTTPS, through a CONNECT
/// tunnel that it cannot see into; loopback never goes through it.
pub fn http_client(
    timeout: Duration,
    proxy: Option<&reqwest::Url>,
) -> Result<reqwest::Client, reqwest::Error> {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Fails only if another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("invite-rotator/", env!("CARGO_PKG_VERSION")))
        .no_proxy();
    let builder = match proxy {
        Some(url) => builder.proxy(
            reqwest::Proxy::https(url.as_str())?
                .no_proxy(reqwest::NoProxy::from_string("localhost,127.0.0.0/8,::1")),
        ),
        None => builder,
    };
    builder.build()
}

impl Client {
    /// A client for `instance` that shares `http`'s connections and `limiter`'s budget.
    pub fn new(
        http: reqwest::Client,
        base_url: reqwest::Url,
        instance: &str,
        token: Token,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        Client {
            http,
            base_url,
            instance: instance.to_owned(),
            token,
            limiter,
            masking: None,
        }
    }

    /// The same client, its error messages (the API's words, quoted into
    /// the history and the logs) masked by `masker` of every configured
    /// secret and every code `store` knows.
    pub fn masking(mut self, masker: Arc<Masker>, store: Store) -> Self {
        self.masking = Some((masker, store));
        self
    }

    /// Whether both clients draw on one rate budget (they use the same token).
    pub fn shares_budget_with(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.limiter, &other.limiter)
    }

    /// `base_url` + `group/<route>/<instance>`, the instance percent-encoded.
    fn url(&self, route: &str) -> reqwest::Url {
        self.route_url(&["group", route])
    }

    /// `base_url` + `<route...>/<instance>`, the instance percent-encoded.
    pub(super) fn route_url(&self, route: &[&str]) -> reqwest::Url {
        let mut url = self.base_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(route).push(&self.instance);
        }
        url
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        // The config checked that the token is visible ASCII, so this cannot fail;
        // if it ever did, the API answers 401 and nothing leaks.
        if let Ok(mut value) = HeaderValue::from_str(self.token.expose()) {
            value.set_sensitive(true);
            headers.insert("token", value);
        }
        headers
    }

    pub(super) async fn call<T>(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
        parse: impl FnOnce(&[u8]) -> Result<T, CallError>,
    ) -> Call<T> {
        self.limiter.acquire().await;
        let start = Instant::now();
        // A node that lost its lease while this reset waited for its grant
        // (or was frozen) sends nothing: not sent, so safe to tell as such.
        if endpoint == Endpoint::Reset && !self.limiter.may_send() {
            return Call {
                result: Err(CallError::Transient(
                    "not sent: this node no longer holds its lease".into(),
                )),
                http_status: None,
                elapsed: start.elapsed(),
            };
        }
        let (result, http_status) = match request.headers(self.headers()).send().await {
            Err(e) => (Err(transport_error(endpoint, &e)), None),
            Ok(response) => {
                let status = response.status().as_u16();
                let rate = rate_headers(response.headers());
                self.obey(status, rate).await;
                let result = match read_bounded(response).await {
                    Err(e) => Err(endpoint.unclear(e)),
                    Ok(body) if (200..300).contains(&status) => parse(&body),
                    Ok(body) => Err(reply::classify_error(endpoint, status, rate, &body)),
                };
                (result, Some(status))
            }
        };
        let result = match (result, &self.masking) {
            (Err(mut e), Some((masker, store))) => {
                let message = e.message_mut();
                *message = masker.mask_known(store, message).await;
                Err(e)
            }
            (result, _) => result,
        };
        Call {
            result,
            http_status,
            elapsed: start.elapsed(),
        }
    }

    /// Pauses the token when the API says its window is spent.
    async fn obey(&self, status: u16, rate: RateHeaders) {
        if (status == 429 || rate.remaining == Some(0))
            && let Some(wait) = rate.reset_in
        {
            tracing::debug!(instance = %self.instance, wait_s = wait.as_secs_f64(), "rate budget spent; pausing the token");
            self.limiter.pause_for(wait).await;
        }
    }
}

impl RyzeApi for Client {
    async fn reset_link(&self, jid: &Jid) -> Call<ResetReply> {
        let body = serde_json::json!({ "identifier": jid.as_str() }).to_string();
        let request = self
            .http
            .post(self.url("resetLink"))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        self.call(Endpoint::Reset, request, |b| reply::parse_reset(jid, b))
            .await
    }

    async fn group_info(&self, jid: &Jid) -> Call<GroupInfo> {
        let mut url = self.url("info");
        url.query_pairs_mut()
            .append_pair("identifier", jid.as_str())
            .append_pair("participants", "false");
        self.call(Endpoint::Info, self.http.get(url), reply::parse_info)
            .await
    }
}

/// A failure before any reply: refused connections never reached the API (a
/// retry is safe); anything later may have (a reset's outcome is unknown).
fn transport_error(endpoint: Endpoint, e: &reqwest::Error) -> CallError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    // reqwest's text names the URL (instance and JID, never the token).
    let message = format!("{what}: {}", reply::clean(&error_chain(e)));
    if e.is_connect() {
        CallError::Transient(message)
    } else {
        endpoint.unclear(message)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(format!("reply body larger than {MAX_BODY_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("reply cut off: {}", reply::clean(&error_chain(&e)))),
        }
    }
}

fn rate_headers(headers: &HeaderMap) -> RateHeaders {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    RateHeaders {
        limit: number("x-ratelimit-limit"),
        remaining: number("x-ratelimit-remaining"),
        // At least 1 s (a reset in the past still means "not now"), at most MAX_RATE_WAIT.
        reset_in: number("x-ratelimit-reset")
            .map(|reset| Duration::from_secs(reset.saturating_sub(now).max(1)).min(MAX_RATE_WAIT)),
    }
}
