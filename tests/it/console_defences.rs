//! The console's defences on the real daemon: a request's body has a time
//! bound and the sign-in form a size bound, so connections trickling bodies
//! neither hold the console nor live long; a flood of wrong tokens from one
//! address is slowed (429) and logged in aggregate, while the right token
//! from another address still signs in; a weak token beyond loopback is
//! refused at `check` and at start; the live code is shown only on a POST
//! from the console's own pages.

use crate::common::free_port;
use crate::console::{TOKEN_TEXT, app_with_console, client, wait_up};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const FORM: &str = "application/x-www-form-urlencoded";

/// Sends a sign-in POST's headers (announcing 3,000 bytes), then its body a
/// byte every 500 ms until the console closes the connection or `give_up`
/// passes. Returns how long it survived after the headers (None: it outlived
/// `give_up`) and what the console answered.
async fn trickle(port: u16, give_up: Duration) -> (Option<Duration>, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    s.write_all(
        format!("POST /signin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {FORM}\r\nContent-Length: 3000\r\n\r\ntoken=")
            .as_bytes(),
    )
    .await
    .expect("headers sent");
    let start = Instant::now();
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if start.elapsed() > give_up {
            return (None, String::from_utf8_lossy(&reply).into_owned());
        }
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if s.write_all(b"a").await.is_err() {
                    break;
                }
            }
        }
    }
    (
        Some(start.elapsed()),
        String::from_utf8_lossy(&reply).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_are_cut_off_at_the_bound_and_the_console_answers_meanwhile() {
    // Arrange: the console beyond loopback, with a token.
    let port = free_port();
    let (app, _daemon) = app_with_console(&format!("0.0.0.0:{port}"), true).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    wait_up(&http, &base).await;

    // A sign-in form over 4 KiB is refused, unread.
    let r = http
        .post(format!("{base}/signin"))
        .header("content-type", FORM)
        .body(format!("token={}", "a".repeat(5000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Act: 120 connections trickle sign-in bodies.
    let tricklers: Vec<_> = (0..120)
        .map(|_| tokio::spawn(trickle(port, Duration::from_secs(30))))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Assert: meanwhile, a page and a sign-in are answered (a fresh client,
    // a few seconds at most for each).
    let fresh = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let page = fresh.get(format!("{base}/signin")).send().await;
    assert_eq!(page.map(|r| r.status()).ok(), Some(StatusCode::OK));
    let signed_in = fresh
        .post(format!("{base}/signin"))
        .header("content-type", FORM)
        .body(format!("token={TOKEN_TEXT}"))
        .send()
        .await;
    assert_eq!(
        signed_in.map(|r| r.status()).ok(),
        Some(StatusCode::SEE_OTHER)
    );
    // Each trickler was cut off at the bound (5 s for a body), with a 408.
    let mut survived = Vec::new();
    for t in tricklers {
        let (lived, reply) = t.await.unwrap();
        let lived = lived.unwrap_or_else(|| panic!("a trickler outlived 30 s: {reply}"));
        assert!(
            reply.starts_with("HTTP/1.1 408"),
            "the answer is 408: {reply}"
        );
        survived.push(lived);
    }
    let longest = survived.iter().max().unwrap();
    let shortest = survived.iter().min().unwrap();
    eprintln!("tricklers survived {shortest:?} to {longest:?}");
    assert!(
        *shortest >= Duration::from_secs(3) && *longest <= Duration::from_secs(15),
        "cut off at about 5 s: {shortest:?} to {longest:?}"
    );
    let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
    assert!(!log.contains(TOKEN_TEXT));
}

/// A client whose connections come from `from` (any 127.x address is this
/// machine).
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_tokens_is_slowed_and_logged_in_aggregate() {
    // Arrange
    let port = free_port();
    let (app, _daemon) = app_with_console(&format!("0.0.0.0:{port}"), true).await;
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&client(), &base).await;
    let guesser = client_from([127, 0, 0, 1]);

    // Act: 300 wrong guesses, as fast as they are answered.
    const GUESSES: usize = 300;
    let (mut wrong, mut waited) = (0, 0);
    for i in 0..GUESSES {
        let r = guesser
            .post(format!("{base}/signin"))
            .header("content-type", FORM)
            .body(format!("token=guess-{i:020}"))
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::UNAUTHORIZED => wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(r.headers().contains_key("retry-after"));
                waited += 1;
            }
            other => panic!("guess {i}: {other}"),
        }
    }

    // Assert: after a few, the address waits; the right token from there
    // waits too, from another address it signs in.
    assert!(
        wrong <= 10 && waited >= GUESSES - 10,
        "{wrong} checked, {waited} told to wait"
    );
    let r = guesser
        .post(format!("{base}/signin"))
        .header("content-type", FORM)
        .body(format!("token={TOKEN_TEXT}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = client_from([127, 0, 0, 2])
        .post(format!("{base}/signin"))
        .header("content-type", FORM)
        .body(format!("token={TOKEN_TEXT}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Far fewer lines than guesses.
    let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
    let lines = log.lines().filter(|l| l.contains("sign-in")).count();
    assert!(
        (1..10).contains(&lines),
        "{lines} log lines for {GUESSES} guesses:\n{log}"
    );
}

#[tokio::test]
async fn a_weak_console_token_beyond_loopback_exits_78_naming_the_key() {
    // Arrange: an app, its config without [console].
    let app = crate::common::spawn_app(
        &[crate::common::Setup::Admin],
        invite_rotator::emulator::EmulatorOptions::default(),
        crate::common::Tuning::default(),
    )
    .await;
    let original = std::fs::read_to_string(&app.config_path).unwrap();
    let token = app.dir.path().join("console-token");
    let with = |listen: &str, text: &str| {
        std::fs::write(&token, text).unwrap();
        std::fs::write(
            &app.config_path,
            format!(
                "{original}\n[console]\nlisten = \"{listen}\"\ntoken_file = \"{}\"\n",
                token.display()
            ),
        )
        .unwrap();
    };
    // Act, assert: one repeated character, and 20 hex digits (103 bits),
    // are refused beyond loopback, by `check` and by `run`.
    let beyond = format!("0.0.0.0:{}", free_port());
    for weak in [
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "0123456789abcdef0123",
    ] {
        with(&beyond, weak);
        let out = app.run(&["check"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "check {weak}: {stderr}");
        assert!(
            stderr.contains("console.token_file") && stderr.contains("128 bits"),
            "check: {stderr}"
        );
        assert!(!stderr.contains(weak), "the token never shows");
        let _ = std::fs::remove_file(app.daemon_log());
        let mut daemon = app.spawn_daemon();
        let status = tokio::time::timeout(Duration::from_secs(20), daemon.wait())
            .await
            .expect("run exits at once")
            .unwrap();
        let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
        assert_eq!(status.code(), Some(78), "run {weak}: {log}");
        assert!(
            log.contains("console.token_file") && !log.contains(weak),
            "{log}"
        );
    }
    // On loopback a 16-character token is still fine; a strong one beyond.
    with(&format!("127.0.0.1:{}", free_port()), "0123456789abcdef");
    let out = app.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    with(&beyond, TOKEN_TEXT);
    let out = app.run(&["check"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_code_shows_only_on_a_post_from_the_consoles_own_pages() {
    // Arrange: signed in.
    let port = free_port();
    let (app, _daemon) = app_with_console(&format!("0.0.0.0:{port}"), true).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    wait_up(&http, &base).await;
    let r = http
        .post(format!("{base}/signin"))
        .header("content-type", FORM)
        .body(format!("token={TOKEN_TEXT}"))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_owned();
    let live = app
        .emulator
        .code_chain(&app.groups[0].jid)
        .last()
        .unwrap()
        .clone();
    let shown = || {
        std::fs::read_to_string(app.daemon_log())
            .unwrap_or_default()
            .matches("console: the live code was shown")
            .count()
    };
    let reveal = |headers: &[(&str, String)]| {
        let mut request = http
            .post(format!("{base}/reveal"))
            .header("cookie", &session)
            .header("content-type", FORM)
            .body("name=group-0");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send()
    };
    let own = format!("http://127.0.0.1:{port}");

    // Act, assert: the old GET neither shows nor logs.
    let r = http
        .get(format!("{base}/group?name=group-0&reveal=1"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert!(!r.text().await.unwrap().contains(live.as_str()));
    assert_eq!(shown(), 0);
    // A POST from elsewhere, or from nowhere said, is refused unlogged.
    for headers in [
        vec![("origin", "http://evil.example".to_owned())],
        vec![("origin", "null".to_owned())],
        vec![("referer", "http://evil.example/page".to_owned())],
        vec![
            ("origin", own.clone()),
            ("sec-fetch-site", "cross-site".to_owned()),
        ],
        vec![],
    ] {
        let r = reveal(&headers).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(!r.text().await.unwrap().contains(live.as_str()));
    }
    assert_eq!(shown(), 0);
    // From the console's own page (Origin, or Referer alone), it shows.
    for headers in [
        vec![
            ("origin", own.clone()),
            ("sec-fetch-site", "same-origin".to_owned()),
        ],
        vec![("referer", format!("{own}/group?name=group-0"))],
    ] {
        let r = reveal(&headers).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{headers:?}");
        assert!(r.text().await.unwrap().contains(live.as_str()));
    }
    assert_eq!(shown(), 2);
    // Without the session, nothing.
    let r = http
        .post(format!("{base}/reveal"))
        .header("origin", &own)
        .header("content-type", FORM)
        .body("name=group-0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
