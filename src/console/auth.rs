//! Who may read the console, and how: beyond loopback, a browser signs in
//! once with the token of `[console] token_file` and gets a session cookie
//! (HttpOnly, SameSite=Strict: no script reads it, no other site sends
//! it). The cookie holds an HMAC of the token, never the token; a token
//! is asked for on loopback too when one is set. Without one, only
//! loopback names are served (`Host`), against DNS rebinding. Every
//! answer carries a strict Content-Security-Policy and is never cached.

use super::Console;
use crate::secret::Token;
use askama::Template;
use axum::Form;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The session cookie's name.
const COOKIE: &str = "ir_console";

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
}

fn sign_in_page(status: StatusCode, failed: bool) -> Response {
    match (SignInPage { failed }).render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => status.into_response(),
    }
}

/// Refuses any method but GET and HEAD (and the sign-in's POST), asks for
/// the session where a token is set, and adds the headers every answer
/// carries.
pub(super) async fn guard(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let signing_in = request.uri().path() == "/signin";
    let method = request.method().clone();
    let allowed =
        method == Method::GET || method == Method::HEAD || (method == Method::POST && signing_in);
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
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
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
        .any(|(name, value)| {
            name == COOKIE && bool::from(value.as_bytes().ct_eq(session.as_bytes()))
        })
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

/// `POST /signin`: the right token sets the session and goes to the groups.
pub(super) async fn sign_in(
    State(console): State<Arc<Console>>,
    Form(form): Form<SignIn>,
) -> Response {
    let (Some(token), Some(session)) = (&console.token, &console.session) else {
        // No token set (loopback): nothing to sign in to.
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    };
    let given = Token::new(&form.token);
    if !bool::from(given.expose().as_bytes().ct_eq(token.expose().as_bytes())) {
        tracing::warn!("console: a sign-in with a wrong token");
        return sign_in_page(StatusCode::UNAUTHORIZED, true);
    }
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
