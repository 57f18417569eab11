//! The emulator's HTTP face: routes, headers, and the faults that need the wire.

use super::Emulator;
use super::state::{Body, Reply, Request, Route, State as Inner, error};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

pub(super) fn router(emulator: Emulator) -> Router {
    Router::new()
        .route("/api/group/resetLink/{instance}", post(reset))
        .route("/api/group/info/{instance}", get(info))
        .route("/api/group/participants/{instance}", post(participants))
        .route("/api/events/webhook/{instance}", post(set_webhook))
        .route("/api/events/getWebhook/{instance}", get(get_webhook))
        .route("/api/events/websocket/{instance}", post(set_websocket))
        .route("/ws/{instance}", get(websocket))
        // The emulator's own controls, for trying events by hand: a link
        // reset in WhatsApp itself, an instance's connection changing.
        .route("/emulator/outside-reset/{jid}", post(outside_reset))
        .route("/emulator/state/{instance}", post(instance_state))
        .with_state(emulator)
}

/// A query parameter.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
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
    let identifier = query_param(query.as_deref(), "identifier");
    let req = Request {
        route: Route::Info,
        instance: &instance,
        token: token(&headers),
        identifier: identifier.as_deref(),
    };
    respond(&em, &req).await
}

/// A route of the events module or the members' one: authenticated and
/// paced like the others, then `then` decides on the JSON body (400 when
/// it is not JSON).
async fn json_route(
    em: &Emulator,
    route: Route,
    instance: &str,
    headers: &HeaderMap,
    body: &Bytes,
    then: impl FnOnce(&mut Inner, &Value, bool) -> Reply,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let identifier = parsed
        .as_ref()
        .and_then(|v| v.get("identifier"))
        .and_then(Value::as_str);
    let req = Request {
        route,
        instance,
        token: token(headers),
        identifier,
    };
    let reply = em.state().serve(
        &req,
        em.options.requests_per_minute,
        em.options.auto_create,
        |state, connected| match &parsed {
            Some(body) => (then(state, body, connected), None),
            None => (error(400, "Invalid JSON body"), None),
        },
    );
    finish(em, reply).await
}

async fn participants(
    State(em): State<Emulator>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    json_route(
        &em,
        Route::Participants,
        &instance,
        &headers,
        &body,
        |s, body, connected| s.participants(&instance, body, connected),
    )
    .await
}

async fn set_webhook(
    State(em): State<Emulator>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    json_route(
        &em,
        Route::Webhook,
        &instance,
        &headers,
        &body,
        |s, body, _| s.set_webhook(&instance, body),
    )
    .await
}

async fn set_websocket(
    State(em): State<Emulator>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    json_route(
        &em,
        Route::WebSocket,
        &instance,
        &headers,
        &body,
        |s, body, _| s.set_websocket(&instance, body),
    )
    .await
}

async fn get_webhook(
    State(em): State<Emulator>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let label = query_param(query.as_deref(), "label");
    let req = Request {
        route: Route::Webhook,
        instance: &instance,
        token: token(&headers),
        identifier: None,
    };
    let reply = em.state().serve(
        &req,
        em.options.requests_per_minute,
        em.options.auto_create,
        |s, _| (s.get_webhooks(&instance, label.as_deref()), None),
    );
    finish(&em, reply).await
}

/// `GET /ws/{instance}`: the token in the `token` header (or `?token=`, for
/// browsers); 400 unless enabled; each event one text frame.
async fn websocket(
    State(em): State<Emulator>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let from_query = query_param(query.as_deref(), "token");
    let req = Request {
        route: Route::WebSocket,
        instance: &instance,
        token: token(&headers).or(from_query.as_deref()),
        identifier: None,
    };
    let reply = em.state().serve(
        &req,
        em.options.requests_per_minute,
        em.options.auto_create,
        |s, _| {
            if s.events.websocket.contains_key(&instance) {
                (error(101, ""), None)
            } else {
                let message = format!(
                    "WebSocket is not enabled for this instance. Enable it with POST /api/events/websocket/{instance}"
                );
                (error(400, &message), None)
            }
        },
    );
    if reply.status != 101 {
        return finish(&em, reply).await;
    }
    let (frames, mut queue) = tokio::sync::mpsc::unbounded_channel();
    em.state()
        .events
        .sockets
        .entry(instance)
        .or_default()
        .push(frames);
    upgrade.on_upgrade(move |mut socket: WebSocket| async move {
        loop {
            tokio::select! {
                frame = queue.recv() => match frame {
                    Some(text) => {
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                },
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_) | Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    })
}

/// `POST /emulator/outside-reset/{jid}`: another admin resets the link in
/// WhatsApp itself. No token: the emulator's own control.
async fn outside_reset(State(em): State<Emulator>, Path(jid): Path<String>) -> Response {
    if em.current_code(&jid).is_none() {
        return (StatusCode::NOT_FOUND, "no such group\n").into_response();
    }
    em.reset_outside(&jid);
    (StatusCode::OK, "reset outside invite-rotator\n").into_response()
}

/// `POST /emulator/state/{instance}` with `{"state": "disconnected"}`.
async fn instance_state(
    State(em): State<Emulator>,
    Path(instance): Path<String>,
    body: Bytes,
) -> Response {
    let state = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_owned));
    let Some(state) = state else {
        return (
            StatusCode::BAD_REQUEST,
            "send {\"state\": \"disconnected\"}\n",
        )
            .into_response();
    };
    em.set_instance_state(&instance, &state);
    (StatusCode::OK, "state changed\n").into_response()
}

async fn respond(em: &Emulator, req: &Request<'_>) -> Response {
    // Decide and apply under the lock, then wait outside it.
    let reply: Reply =
        em.state()
            .handle(req, em.options.requests_per_minute, em.options.auto_create);
    finish(em, reply).await
}

/// Sends what the call emitted, lands its late reset at its time, waits
/// the latency (and any stall), and answers.
async fn finish(em: &Emulator, reply: Reply) -> Response {
    em.dispatch();
    if let Some(jid) = reply.late_reset.as_deref() {
        // Lands at its time even if the client has hung up, or earlier if a
        // call comes after that time first.
        let at = tokio::time::Instant::now() + em.options.latency + reply.reset_after;
        em.state().reset_later(jid, at);
        let em = em.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            em.state().land_late_resets();
            em.dispatch();
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
