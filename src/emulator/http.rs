//! The emulator's HTTP face: routes, headers, and the faults that need the wire.

use super::Emulator;
use super::state::{Body, Reply, Request, Route};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub(super) fn router(emulator: Emulator) -> Router {
    Router::new()
        .route("/api/group/resetLink/{instance}", post(reset))
        .route("/api/group/info/{instance}", get(info))
        .with_state(emulator)
}

fn token(headers: &HeaderMap) -> Option<&str> {
    let direct = headers.get("token").and_then(|v| v.to_str().ok());
    direct.or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    })
}

async fn reset(
    State(em): State<Emulator>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let identifier = parsed
        .as_ref()
        .and_then(|v| v.get("identifier"))
        .and_then(|v| v.as_str());
    let req = Request {
        route: Route::Reset,
        instance: &instance,
        token: token(&headers),
        identifier,
    };
    respond(&em, &req).await
}

async fn info(
    State(em): State<Emulator>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let identifier = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "identifier")
            .map(|(_, v)| v.into_owned())
    });
    let req = Request {
        route: Route::Info,
        instance: &instance,
        token: token(&headers),
        identifier: identifier.as_deref(),
    };
    respond(&em, &req).await
}

async fn respond(em: &Emulator, req: &Request<'_>) -> Response {
    // Decide and apply under the lock, then wait outside it.
    let reply: Reply =
        em.state()
            .handle(req, em.options.requests_per_minute, em.options.auto_create);
    if let Some(jid) = reply.late_reset.as_deref() {
        // Lands at its time even if the client has hung up, or earlier if a
        // call comes after that time first.
        let at = tokio::time::Instant::now() + em.options.latency + reply.reset_after;
        em.state().reset_later(jid, at);
        let em = em.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            em.state().land_late_resets();
        });
    }
    let delay = em.options.latency + reply.stall;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.body {
        Body::Json(v) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        Body::Html => (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        )
            .into_response(),
        Body::Cut => {
            // Headers go out, then the body fails: the client sees a dropped connection.
            let cut = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("emulated dropped connection"))
            });
            (status, axum::body::Body::from_stream(cut)).into_response()
        }
    };
    if let Some(rate) = reply.rate {
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(rate.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(rate.remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(rate.reset_unix));
    }
    response
}
