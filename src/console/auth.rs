//! Who may read the console, and how: beyond loopback, a browser signs in
//! once with the token of `[console] token_file` and gets a session cookie
//! (HttpOnly, SameSite=Strict: no script reads it, no other site sends
//! it). The cookie holds an HMAC of the token, never the token; a token
//! is asked for on loopback too when one is set. Without one, only
//! loopback names are served (`Host`), against DNS rebinding. Every
//! answer carries a strict Content-Security-Policy and is never cached.
//!
//! Wrong tokens slow their address down ([`super::throttle`]); the form is
//! [`FORM_LIMIT`] at most. Secrets are compared by digest
//! (`secret::same_secret`). The one POST that shows something, the live
//! code's, must come from the console's own pages ([`same_origin`]).

use super::Console;
use crate::secret::{Token, same_secret};
use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The session cookie's name.
const COOKIE: &str = "ir_console";
/// The largest form the console reads (the sign-in's, the live code's):
/// 413 beyond.
pub(super) const FORM_LIMIT: usize = 4096;
/// The POSTs the console serves.
const POSTS: [&str; 2] = ["/signin", "/reveal"];

/// The session cookie's value for `token`: hex HMAC-SHA256.
pub(super) fn session_of(token: &Token) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(b"invite-rotator console session v1");
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    failed: bool,
    /// Seconds to wait before the next try.
    wait: Option<u64>,
}

fn sign_in_page(status: StatusCode, failed: bool) -> Response {
    render_sign_in(status, SignInPage { failed, wait: None })
}

fn render_sign_in(status: StatusCode, page: SignInPage) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => status.into_response(),
    }
}

/// 429: the address waits `wait` before its next sign-in.
fn wait_page(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = render_sign_in(
        StatusCode::TOO_MANY_REQUESTS,
        SignInPage {
            failed: false,
            wait: Some(seconds),
        },
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Refuses any method but GET and HEAD (and the POSTs of [`POSTS`]), asks for
/// the session where a token is set, and adds the headers every answer
/// carries.
pub(super) async fn guard(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let signing_in = request.uri().path() == "/signin";
    let method = request.method().clone();
    let allowed = method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && POSTS.contains(&request.uri().path()));
    let mut response = if !allowed {
        let mut r = (StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only\n").into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else if console.session.is_none() && !loopback_host(request.headers()) {
        // Without a token only a browser on this machine, asking for it by
        // a loopback name, is served: a web page elsewhere cannot point a
        // name of its own at 127.0.0.1 and read the console (DNS rebinding).
        (
            StatusCode::FORBIDDEN,
            "this console answers loopback names only; set console.token_file to serve it otherwise\n",
        )
            .into_response()
    } else if let Some(session) = &console.session
        && !signing_in
        && !has_session(request.headers(), session)
    {
        sign_in_page(StatusCode::UNAUTHORIZED, false)
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: with it a browser sends `Origin: null` on the
        // console's own POSTs, and [`same_origin`] could not tell them from
        // another site's. Nothing goes to other sites still.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Whether a POST comes from the console's own pages: not marked
/// cross-site by the browser (`Sec-Fetch-Site`), and its `Origin` (or,
/// without one, its `Referer`) names the host the request is addressed to
/// (`Host`). A request that says neither is refused: a browser always
/// says one on a form's POST (the console's referrer policy is
/// `same-origin`).
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if text(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|site| !matches!(site, "same-origin" | "none"))
    {
        return false;
    }
    let Some(host) = text(header::HOST) else {
        return false;
    };
    let from = text(header::ORIGIN).or_else(|| text(header::REFERER));
    from.and_then(|url| url::Url::parse(url).ok())
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .and_then(|url| {
            let name = url.host_str()?.to_owned();
            Some(match url.port() {
                Some(port) => format!("{name}:{port}"),
                None => name,
            })
        })
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Whether the request's `Host` is a loopback name or address.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn has_session(headers: &HeaderMap, session: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && same_secret(value.as_bytes(), session.as_bytes()))
}

/// `GET /signin`.
pub(super) async fn form() -> Response {
    sign_in_page(StatusCode::OK, false)
}

/// The sign-in form's fields.
#[derive(serde::Deserialize)]
pub(super) struct SignIn {
    token: String,
}

/// `POST /signin`: the right token sets the session and goes to the
/// groups. An address that sent too many wrong ones waits (429, the form
/// unread).
pub(super) async fn sign_in(State(console): State<Arc<Console>>, request: Request) -> Response {
    let (Some(token), Some(session)) = (&console.token, &console.session) else {
        // No token set (loopback): nothing to sign in to.
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Err(wait) = console.throttle.check(peer, tokio::time::Instant::now()) {
        return wait_page(wait);
    }
    let form = match Form::<SignIn>::from_request(request, &()).await {
        Ok(Form(form)) => form,
        Err(rejection) => return rejection.into_response(),
    };
    let given = Token::new(&form.token);
    if !same_secret(given.expose().as_bytes(), token.expose().as_bytes()) {
        if let Some(s) = console.throttle.failed(peer, tokio::time::Instant::now()) {
            super::log_failures(&s);
        }
        return sign_in_page(StatusCode::UNAUTHORIZED, true);
    }
    console.throttle.succeeded(peer);
    tracing::info!("console: a browser signed in");
    let cookie = format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, HeaderValue::from_static("/")),
                (header::SET_COOKIE, cookie),
            ],
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
