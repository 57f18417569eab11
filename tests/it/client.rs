//! The RyzeAPI client against a wiremock server: what it sends, and how every
//! documented (and a few undocumented) replies are classified.

use invite_rotator::ratelimit::RateLimiter;
use invite_rotator::ryzeapi::{
    Call, CallError, Client, GroupInfo, MAX_BODY_BYTES, MAX_RATE_WAIT, ResetReply, RyzeApi,
    http_client,
};
use invite_rotator::secret::Token;
use invite_rotator::whatsapp::{InviteCode, Jid};
use serde_json::{Value, json};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wiremock::matchers::{any, body_json, header, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

const TOKEN: &str = "sk-test-9f8e7d6c5b4a";
const INSTANCE: &str = "rotator-1";
const JID: &str = "120363406289005073@g.us";
const RESET_PATH: &str = "/api/group/resetLink/rotator-1";
const INFO_PATH: &str = "/api/group/info/rotator-1";
const TIMEOUT: Duration = Duration::from_secs(5);

fn jid() -> Jid {
    Jid::parse(JID).unwrap()
}

fn limiter() -> Arc<RateLimiter> {
    Arc::new(RateLimiter::per_minute(6000))
}

/// A client of `base` + "/api" with its own `limiter`.
fn client_at(base: &str, timeout: Duration, limiter: Arc<RateLimiter>) -> Client {
    let url = reqwest::Url::parse(&format!("{base}/api")).unwrap();
    let http = http_client(timeout, None).unwrap();
    Client::new(http, url, INSTANCE, Token::new(TOKEN), limiter)
}

fn client(server: &MockServer) -> Client {
    client_at(&server.uri(), TIMEOUT, limiter())
}

/// Asserts the call's outcome as the call log names it ("ok" for a success).
#[track_caller]
fn assert_outcome<T: Debug>(call: &Call<T>, expected: &str) {
    let outcome = call
        .result
        .as_ref()
        .map_or_else(CallError::outcome, |_| "ok");
    let status = call.http_status;
    assert_eq!(outcome, expected, "HTTP {status:?}: {:?}", call.result);
}

fn error_reply(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({ "success": false, "error": { "message": message } }))
}

fn ok_json(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh server where `mock` answers `reply`.
async fn serve(mock: MockBuilder, reply: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    mock.respond_with(reply).mount(&server).await;
    server
}

/// A reply to the reset route, as the client reads it.
async fn reset_replying(reply: ResponseTemplate) -> Call<ResetReply> {
    let server = serve(Mock::given(method("POST")).and(path(RESET_PATH)), reply).await;
    client(&server).reset_link(&jid()).await
}

/// A reply to the info route, as the client reads it.
async fn info_replying(reply: ResponseTemplate) -> Call<GroupInfo> {
    let server = serve(Mock::given(method("GET")).and(path(INFO_PATH)), reply).await;
    client(&server).group_info(&jid()).await
}

/// A 429 whose `X-RateLimit-Reset` is `reset` (Unix seconds); returns the wait.
async fn rate_limited_wait(reset: u64) -> Duration {
    let reply = error_reply(429, "Rate limit exceeded. Try again later.")
        .insert_header("X-RateLimit-Limit", "100")
        .insert_header("X-RateLimit-Remaining", "0")
        .insert_header("X-RateLimit-Reset", reset.to_string().as_str());
    let call = reset_replying(reply).await;
    assert_eq!(call.http_status, Some(429));
    match call.result {
        Err(CallError::RateLimited { wait, message }) => {
            assert!(message.contains("Rate limit exceeded"), "{message}");
            wait
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

/// After a good reset whose reply carries these rate headers, how long the
/// token's next grant waits, measured on a paused clock (so not slept), and
/// the limiter's pacing interval.
async fn next_grant_after_a_200(remaining: u64, reset_in_secs: u64) -> (Duration, Duration) {
    let reset = (unix_now() + reset_in_secs).to_string();
    let reply = ok_json(json!({ "success": true, "inviteCode": "NEW123XYZ" }))
        .insert_header("X-RateLimit-Remaining", remaining.to_string().as_str())
        .insert_header("X-RateLimit-Reset", reset.as_str());
    let server = serve(Mock::given(any()), reply).await;
    let limiter = limiter();
    let client = client_at(&server.uri(), TIMEOUT, limiter.clone());
    assert_outcome(&client.reset_link(&jid()).await, "ok");
    tokio::time::pause();
    (limiter.acquire().await, limiter.interval())
}

// ---- What is sent, and the happy paths ----

#[tokio::test]
async fn the_documented_reset_reply_is_parsed_exactly() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(RESET_PATH))
        .and(header("token", TOKEN))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({ "identifier": JID })))
        .respond_with(ok_json(json!({
            "success": true,
            "message": "Group invite link reset successfully",
            "groupJid": JID,
            "inviteCode": "NEW123XYZ",
            "inviteLink": "https://chat.whatsapp.com/NEW123XYZ"
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let call = client(&server).reset_link(&jid()).await;

    // Assert
    assert_eq!(call.http_status, Some(200));
    let expected = ResetReply {
        code: InviteCode::parse("NEW123XYZ").unwrap(),
    };
    assert_eq!(call.result, Ok(expected));
}

#[tokio::test]
async fn the_token_travels_only_in_the_token_header() {
    // Arrange
    let body = json!({ "success": true, "inviteCode": "ABC", "group": { "inviteCode": "ABC" } });
    let server = serve(Mock::given(any()), ok_json(body)).await;
    let client = client(&server);

    // Act
    client.reset_link(&jid()).await;
    client.group_info(&jid()).await;

    // Assert
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let shows_token = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains(TOKEN);
    for request in requests {
        assert!(!request.url.as_str().contains(TOKEN), "in {}", request.url);
        assert!(!shows_token(&request.body), "token in the body");
        assert_eq!(request.headers.get("token").unwrap(), TOKEN);
        for (name, value) in &request.headers {
            assert!(
                name == "token" || !shows_token(value.as_bytes()),
                "in {name}"
            );
        }
    }
}

#[tokio::test]
async fn group_info_reads_the_code_from_group_invite_link() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(INFO_PATH))
        .and(query_param("identifier", JID))
        .and(query_param("participants", "false"))
        .and(header("token", TOKEN))
        .respond_with(ok_json(json!({
            "success": true,
            "group": {
                "jid": JID,
                "name": "Team",
                "inviteLink": "https://chat.whatsapp.com/OLD123abc"
            }
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let call = client(&server).group_info(&jid()).await;

    // Assert
    assert_eq!(call.http_status, Some(200));
    let code = call.result.unwrap().code.expect("a code");
    assert_eq!(code.as_str(), "OLD123abc");
}

#[tokio::test]
async fn a_group_info_reply_without_a_link_gives_no_code() {
    let reply = ok_json(json!({ "success": true, "group": { "jid": JID, "name": "Team" } }));

    let call = info_replying(reply).await;

    assert_eq!(call.result.unwrap().code, None);
}

// ---- Error statuses, as the API notes classify them ----

#[tokio::test]
async fn a_400_identifier_is_required_is_permanent() {
    let call = reset_replying(error_reply(400, "Identifier is required")).await;

    assert_eq!(call.http_status, Some(400));
    assert_outcome(&call, "permanent");
}

#[tokio::test]
async fn a_400_for_a_disconnected_instance_is_transient() {
    let call = reset_replying(error_reply(400, "Instance is not connected to WhatsApp")).await;

    assert_outcome(&call, "transient");
}

#[tokio::test]
async fn a_400_on_info_is_permanent_unless_the_instance_is_disconnected() {
    let invalid = info_replying(error_reply(400, "Identifier is required")).await;
    let disconnected = info_replying(error_reply(400, "Instance is disconnected")).await;

    assert_eq!(invalid.http_status, Some(400));
    assert_outcome(&invalid, "permanent");
    assert_outcome(&disconnected, "transient");
}

#[tokio::test]
async fn a_401_403_404_or_501_is_permanent_on_both_routes() {
    for status in [401, 403, 404, 501] {
        let reset = reset_replying(error_reply(status, "refused")).await;
        let info = info_replying(error_reply(status, "refused")).await;

        assert_outcome(&reset, "permanent");
        assert_outcome(&info, "permanent");
    }
}

#[tokio::test]
async fn a_403_on_reset_is_permanent_and_keeps_the_api_message() {
    let not_admin = "Not authorized to reset group invite link (must be admin)";

    let call = reset_replying(error_reply(403, not_admin)).await;

    let kept = matches!(&call.result, Err(CallError::Permanent(m)) if m.contains(not_admin));
    assert!(kept, "{:?}", call.result);
}

#[tokio::test]
async fn a_409_or_a_not_connected_503_is_transient_on_both_routes() {
    for (status, message) in [
        (409, "try later"),
        (503, "Instance is not connected to WhatsApp"),
    ] {
        let reset = reset_replying(error_reply(status, message)).await;
        let info = info_replying(error_reply(status, message)).await;

        assert_outcome(&reset, "transient");
        assert_outcome(&info, "transient");
    }
}

#[tokio::test]
async fn a_gateway_503_leaves_a_reset_unknown_and_a_read_transient() {
    let reset = reset_replying(error_reply(503, "Service Temporarily Unavailable")).await;
    let info = info_replying(error_reply(503, "Service Temporarily Unavailable")).await;

    assert_outcome(&reset, "unknown");
    assert_outcome(&info, "transient");
}

#[tokio::test]
async fn a_500_or_502_on_reset_leaves_the_outcome_unknown() {
    for status in [500, 502] {
        let call = reset_replying(error_reply(status, "whatsmeow error")).await;

        assert_outcome(&call, "unknown");
    }
}

#[tokio::test]
async fn a_500_on_info_is_transient() {
    let call = info_replying(error_reply(500, "whatsmeow error")).await;

    assert_outcome(&call, "transient");
}

// ---- Rate limits ----

#[tokio::test]
async fn a_429_with_rate_headers_waits_until_the_reset() {
    let wait = rate_limited_wait(unix_now() + 5).await;

    let expected = Duration::from_secs(1)..=Duration::from_secs(5);
    assert!(expected.contains(&wait), "{wait:?}");
    assert!(wait <= MAX_RATE_WAIT);
}

#[tokio::test]
async fn a_429_without_rate_headers_is_transient() {
    let call = reset_replying(error_reply(429, "WhatsApp is throttling")).await;

    assert_outcome(&call, "transient");
}

#[tokio::test]
async fn a_429_on_info_waits_for_the_reset_or_backs_off_without_it() {
    let reset = (unix_now() + 5).to_string();
    let with_headers = error_reply(429, "Rate limit exceeded. Try again later.")
        .insert_header("X-RateLimit-Remaining", "0")
        .insert_header("X-RateLimit-Reset", reset.as_str());

    let limited = info_replying(with_headers).await;
    let throttled = info_replying(error_reply(429, "WhatsApp is throttling")).await;

    assert_eq!(limited.http_status, Some(429));
    assert_outcome(&limited, "rate_limited");
    assert_outcome(&throttled, "transient");
}

#[tokio::test]
async fn a_rate_reset_far_in_the_future_is_capped_at_max_rate_wait() {
    let wait = rate_limited_wait(unix_now() + 86_400).await;

    assert_eq!(wait, MAX_RATE_WAIT);
}

#[tokio::test]
async fn a_rate_reset_in_the_past_still_waits_at_least_a_second() {
    let wait = rate_limited_wait(unix_now() - 60).await;

    assert_eq!(wait, Duration::from_secs(1));
}

#[tokio::test]
async fn a_200_that_spends_the_budget_pauses_the_token() {
    let (waited, _) = next_grant_after_a_200(0, 2).await;

    // Assert: far more than the 10 ms pacing of 6000/min; the reset was 1-2 s away
    // (the paused clock rounds sleeps up to the next millisecond).
    let expected = Duration::from_millis(500)..Duration::from_secs(3);
    assert!(expected.contains(&waited), "{waited:?}");
}

#[tokio::test]
async fn a_200_with_budget_left_does_not_pause_the_token() {
    let (waited, interval) = next_grant_after_a_200(42, 60).await;

    // Only the pacing interval, if anything (the paused clock rounds sleeps up
    // to the next millisecond), nowhere near the 60 s a pause would take.
    assert!(waited <= interval + Duration::from_millis(1), "{waited:?}");
}

// ---- Odd 200s and oversized bodies ----

#[tokio::test]
async fn a_200_with_an_html_body_on_reset_is_unknown() {
    let html =
        ResponseTemplate::new(200).set_body_raw("<html><body>It works!</body></html>", "text/html");

    let call = reset_replying(html).await;

    assert_eq!(call.http_status, Some(200));
    assert_outcome(&call, "unknown");
}

#[tokio::test]
async fn a_200_without_invite_code_or_link_on_reset_is_unknown() {
    let reply = ok_json(json!({ "success": true, "groupJid": JID }));

    let call = reset_replying(reply).await;

    assert_outcome(&call, "unknown");
}

#[tokio::test]
async fn a_200_with_an_empty_invite_code_on_reset_is_unknown() {
    // Even with a good link beside it: the reply contradicts itself.
    for body in [
        json!({ "success": true, "groupJid": JID, "inviteCode": "" }),
        json!({ "success": true, "inviteCode": "", "inviteLink": "https://chat.whatsapp.com/NEW123XYZ" }),
    ] {
        let call = reset_replying(ok_json(body)).await;

        assert_eq!(call.http_status, Some(200));
        assert_outcome(&call, "unknown");
    }
}

#[tokio::test]
async fn a_200_with_an_empty_invite_code_on_info_reads_as_no_code_or_the_links() {
    // An empty code is no code (as for a non-admin); a link beside it still counts.
    let empty = ok_json(json!({ "success": true, "group": { "jid": JID, "inviteCode": "" } }));
    let with_link = ok_json(json!({ "success": true, "group": {
        "inviteCode": "", "inviteLink": "https://chat.whatsapp.com/OLD123abc" } }));

    let empty = info_replying(empty).await;
    let with_link = info_replying(with_link).await;

    assert_eq!(empty.result, Ok(GroupInfo { code: None }));
    let code = with_link.result.unwrap().code.expect("the link's code");
    assert_eq!(code.as_str(), "OLD123abc");
}

#[tokio::test]
async fn an_invite_code_with_sql_or_control_characters_is_unknown() {
    for code in [
        "x'); DROP TABLE rotations;--",
        "ABC\u{1b}[31m\nDEF",
        "ABC\u{0}DEF",
        "ABC DEF",
    ] {
        let reply = ok_json(json!({ "success": true, "inviteCode": code }));

        let call = reset_replying(reply).await;

        assert_outcome(&call, "unknown");
    }
}

#[tokio::test]
async fn a_10_mb_invite_code_is_unknown_on_reset_and_transient_on_info() {
    let huge = "A".repeat(10 * 1024 * 1024);
    let reset = ok_json(json!({ "success": true, "inviteCode": huge }));
    let info = ok_json(json!({ "success": true, "group": { "inviteCode": huge } }));

    let reset = reset_replying(reset).await;
    let info = info_replying(info).await;

    assert_outcome(&reset, "unknown");
    assert_outcome(&info, "transient");
}

#[tokio::test]
async fn a_valid_reply_padded_past_max_body_bytes_is_refused() {
    // A good code, but the body is one byte over the bound: the size alone refuses it.
    let padded = |mut body: serde_json::Value| {
        let len = body.to_string().len() + r#","pad":"""#.len();
        body["pad"] = json!(" ".repeat(MAX_BODY_BYTES + 1 - len));
        assert_eq!(body.to_string().len(), MAX_BODY_BYTES + 1);
        ResponseTemplate::new(200).set_body_string(body.to_string())
    };
    let reset = padded(json!({ "success": true, "inviteCode": "NEW123XYZ" }));
    let info = padded(json!({ "success": true, "group": { "inviteCode": "OLD123" } }));

    let reset = reset_replying(reset).await;
    let info = info_replying(info).await;

    assert_outcome(&reset, "unknown");
    assert_outcome(&info, "transient");
}

// ---- Transport failures ----

#[tokio::test]
async fn a_reply_slower_than_the_timeout_is_unknown_on_reset_and_transient_on_info() {
    // Arrange
    let body = json!({ "success": true, "inviteCode": "ABC", "group": { "inviteCode": "ABC" } });
    let slow = ok_json(body).set_delay(Duration::from_secs(3));
    let server = serve(Mock::given(any()), slow).await;
    let client = client_at(&server.uri(), Duration::from_millis(200), limiter());

    // Act
    let reset = client.reset_link(&jid()).await;
    let info = client.group_info(&jid()).await;

    // Assert
    assert_eq!((reset.http_status, info.http_status), (None, None));
    assert_outcome(&reset, "unknown");
    assert_outcome(&info, "transient");
}

#[tokio::test]
async fn a_refused_connection_on_reset_is_transient_because_nothing_was_sent() {
    // Arrange: a port that was just free and is now closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = client_at(&format!("http://127.0.0.1:{port}"), TIMEOUT, limiter());

    // Act
    let call = client.reset_link(&jid()).await;

    // Assert
    assert_eq!(call.http_status, None);
    assert_outcome(&call, "transient");
}

#[tokio::test]
async fn a_connection_dropped_mid_body_is_unknown_on_reset_and_transient_on_info() {
    // Arrange: a server that sends the headers of a good reply, half of its
    // body, and hangs up.
    let base = serve_cut_off_replies().await;
    let client = client_at(&base, TIMEOUT, limiter());

    // Act
    let reset = client.reset_link(&jid()).await;
    let info = client.group_info(&jid()).await;

    // Assert
    assert_eq!(
        (reset.http_status, info.http_status),
        (Some(200), Some(200))
    );
    assert_outcome(&reset, "unknown");
    assert_outcome(&info, "transient");
    let cut = matches!(&reset.result, Err(CallError::Unknown(m)) if m.contains("cut off"));
    assert!(cut, "{:?}", reset.result);
}

/// A raw HTTP server on port 0 (wiremock always sends whole bodies) that
/// answers every request with 200, a `Content-Length` of 200 and 20 bytes of
/// body, then closes the connection; returns its base URL.
async fn serve_cut_off_replies() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            // Read the whole request first, so that closing sends FIN, not RST.
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let Some(end) = text.find("\r\n\r\n") else {
                    if n == 0 {
                        break;
                    }
                    continue;
                };
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if n == 0 || request.len() >= end + 4 + length {
                    break;
                }
            }
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n";
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(br#"{"success":true,"inv"#).await;
            let _ = socket.shutdown().await;
        }
    });
    base
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed_and_is_permanent() {
    for status in [301, 302, 303, 307, 308] {
        // Arrange: the redirect names another host (localhost, not 127.0.0.1).
        let elsewhere = serve(Mock::given(any()), ResponseTemplate::new(200)).await;
        let port = elsewhere.address().port();
        let location = format!("http://localhost:{port}{RESET_PATH}");
        let redirect = ResponseTemplate::new(status).insert_header("Location", location.as_str());

        // Act
        let call = reset_replying(redirect).await;

        // Assert
        assert_eq!(call.http_status, Some(status));
        assert_outcome(&call, "permanent");
        assert!(elsewhere.received_requests().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_debug_output_of_a_client_never_shows_the_token() {
    let server = MockServer::start().await;

    let text = format!("{:?}", client(&server));

    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains(INSTANCE), "{text}");
}
