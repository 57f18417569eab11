//! Join links against the real binary and the emulator: the redirect
//! follows each rotation within a second; limited links are spent only by
//! the Join button's POST, exactly N times under concurrent clicks;
//! expiry and revocation take effect without a restart; everything else
//! is 404; uses are counted exactly by a clean stop; QR codes decode to the
//! printed URL.

use crate::common::free_port;
use crate::common::{Setup, TestApp, Tuning, real_part, signal, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, LOCATION, REFERRER_POLICY};
use std::time::{Duration, Instant};

const PUBLIC: &str = "https://join.example.org";

/// An app with `[join]` on a free port; the redirector's base URL.
pub(crate) async fn app_with_join() -> (TestApp, String) {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let port = free_port();
    app.edit_config(|t| {
        format!("{t}\n[join]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"{PUBLIC}\"\n")
    });
    (app, format!("http://127.0.0.1:{port}"))
}

/// `join create` with `args`; the printed URL's path (`/j/{slug}`).
async fn create(app: &TestApp, args: &[&str]) -> String {
    let group = app.groups[0].name.clone();
    let out = app
        .run(&[&["join", "create", &group][..], args].concat())
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let url = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let path = url
        .strip_prefix(PUBLIC)
        .expect("the URL starts with public_url");
    assert!(path.starts_with("/j/") && path.len() == 3 + 22, "{url}");
    path.to_owned()
}

fn client() -> reqwest::Client {
    invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap()
}

/// Where `GET base+path` leads now (its Location), once it answers.
async fn location(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client.get(url).send().await.ok()?;
    r.headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
}

/// Sends `line` and a Host header as they are; the status line answered.
async fn raw(base: &str, line: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!("{line}\r\nHost: join.example.org\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn live_link(app: &TestApp) -> String {
    let chain = app.emulator.code_chain(&app.groups[0].jid);
    format!("https://chat.whatsapp.com/{}", chain.last().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_links_follow_rotations_and_limited_links_are_spent_only_by_their_button() {
    let (app, base) = app_with_join().await;
    let poster = create(&app, &["--name", "poster"]).await;
    let counted = create(&app, &["--name", "counted"]).await;
    let flyer = create(&app, &["--name", "flyer", "--max-uses", "3"]).await;
    let soon = create(&app, &["--name", "soon", "--expires", "3s"]).await;
    let mut daemon = app.spawn_daemon();
    let http = client();
    let give_up = Instant::now() + Duration::from_secs(20);
    // Before any rotation the history knows no code: the live link is read once.
    while location(&http, &format!("{base}{poster}")).await.is_none() {
        assert!(Instant::now() < give_up, "the redirector never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The link with an expiry works until then: its page, a click on it.
    let page = http.get(format!("{base}{soon}")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let click = http.post(format!("{base}{soon}")).send().await.unwrap();
    assert_eq!(click.status(), StatusCode::SEE_OTHER);

    // An unlimited link: 302 to the live invite, never cached.
    let r = http.get(format!("{base}{poster}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()[LOCATION], live_link(&app).as_str());
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(r.headers()[REFERRER_POLICY], "no-referrer");

    // A rotation: the redirect follows it within a second.
    let out = app.run(&["rotate", &app.groups[0].name]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rotated = Instant::now();
    let new = live_link(&app);
    while location(&http, &format!("{base}{poster}")).await.as_deref() != Some(&new) {
        assert!(
            rotated.elapsed() < Duration::from_secs(1),
            "the redirect still leads to the old code 1 s after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "redirect followed the rotation after {:?}",
        rotated.elapsed()
    );

    // A limited link: GET and HEAD show the page, previews spend nothing.
    let page = http.get(format!("{base}{flyer}")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers().get(LOCATION).is_none());
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\">"), "{html}");
    assert!(
        !html.contains("chat.whatsapp.com"),
        "the page shows no invite"
    );
    let head = http.head(format!("{base}{flyer}")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    for agent in [
        "WhatsApp/2.23.20.0 A",
        "TelegramBot (like TwitterBot)",
        "Slackbot-LinkExpanding 1.0",
    ] {
        let preview = http
            .get(format!("{base}{flyer}"))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(preview.status(), StatusCode::OK, "{agent}");
    }
    // 20 clicks at once on a 3-use link: exactly 3 are sent on.
    let clicks = (0..20).map(|_| {
        let (http, url) = (http.clone(), format!("{base}{flyer}"));
        tokio::spawn(async move { http.post(url).send().await.unwrap().status() })
    });
    let mut answers = Vec::new();
    for click in clicks {
        answers.push(click.await.unwrap());
    }
    let sent = answers
        .iter()
        .filter(|s| **s == StatusCode::SEE_OTHER)
        .count();
    let gone = answers.iter().filter(|s| **s == StatusCode::GONE).count();
    assert_eq!((sent, gone), (3, 17), "{answers:?}");
    // Its page says so once the links are next read (every 250 ms).
    let spent = Instant::now();
    while http
        .get(format!("{base}{flyer}"))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::GONE
    {
        assert!(
            spent.elapsed() < Duration::from_secs(1),
            "a used-up link still shows its page"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Revocation and expiry, without a restart; the page in the reader's language.
    let out = app.run(&["join", "revoke", "poster"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let revoked = Instant::now();
    loop {
        let r = http
            .get(format!("{base}{poster}"))
            .header("accept-language", "es-AR,es;q=0.9,en;q=0.5")
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::GONE {
            assert!(r.text().await.unwrap().contains("ya no funciona"));
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still served after revoke"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = app.run(&["join", "revoke", "no-such-link"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let expiry = Instant::now() + Duration::from_secs(10);
    while http
        .get(format!("{base}{soon}"))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::GONE
    {
        assert!(Instant::now() < expiry, "the expired link still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Anything else is 404.
    let unknown = format!("{base}/j/AAAAAAAAAAAAAAAAAAAAAA");
    for url in [
        unknown.as_str(),
        &format!("{base}/metrics"),
        &format!("{base}/healthz"),
        &format!("{base}/j/"),
        &format!("{base}{counted}/x"),
        &format!("{base}/j/../etc/passwd"),
        &format!("{base}/"),
    ] {
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{url}");
    }
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::OPTIONS,
    ] {
        let r = http
            .request(method.clone(), format!("{base}{counted}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method}");
    }

    // Raw requests, as a client that does not tidy its path sends them.
    for line in [
        "GET /j/../etc/passwd HTTP/1.1".to_owned(),
        "GET /j/%FF%FE%FD HTTP/1.1".to_owned(),
        format!("GET {counted}/../../metrics HTTP/1.1"),
    ] {
        let answer = raw(&base, &line).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{line}: {answer}");
    }

    // Every use counted, exactly, by a clean stop; HEADs and link previews
    // are not uses.
    for _ in 0..50 {
        let r = http.get(format!("{base}{counted}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
    }
    for _ in 0..5 {
        let head = http.head(format!("{base}{counted}")).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::FOUND);
        let preview = http
            .get(format!("{base}{counted}"))
            .header("user-agent", "WhatsApp/2.23.20.0 A")
            .send()
            .await
            .unwrap();
        assert_eq!(preview.status(), StatusCode::FOUND);
    }
    signal(&daemon, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), daemon.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let out = app.run(&["join", "list", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let links: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let uses = |name: &str| {
        links
            .iter()
            .find(|l| l["name"] == name)
            .map(|l| (l["uses"].as_i64(), l["state"].as_str().map(str::to_owned)))
    };
    assert_eq!(uses("counted"), Some((Some(50), Some("active".into()))));
    assert_eq!(uses("flyer"), Some((Some(3), Some("used up".into()))));
    assert_eq!(uses("poster").and_then(|u| u.1), Some("revoked".into()));
    assert_eq!(uses("soon").and_then(|u| u.1), Some("expired".into()));
    for key in [
        "name",
        "group",
        "url",
        "uses",
        "max_uses",
        "expires_at",
        "revoked_at",
        "created_at",
        "note",
    ] {
        assert!(
            links[0].get(key).is_some(),
            "join list --format json lacks {key}"
        );
    }
    // Slugs are credentials: never in the daemon's log.
    let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
    for path in [&poster, &flyer, &counted] {
        assert!(!log.contains(&path[3..]), "a slug in the log");
    }
}

#[tokio::test]
async fn a_qr_code_of_a_join_link_decodes_to_exactly_its_url() {
    let Some(zbarimg) = real_part("zbarimg", "zbar-tools") else {
        return;
    };
    let (app, _) = app_with_join().await;
    let png = app.dir.path().join("link.png");
    let group = app.groups[0].name.clone();
    let out = app
        .run(&[
            "join",
            "create",
            &group,
            "--qr",
            "png",
            "--output",
            png.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let decoded = std::process::Command::new(zbarimg)
        .args(["--raw", "--quiet"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(decoded.status.success(), "{decoded:?}");
    assert_eq!(String::from_utf8_lossy(&decoded.stdout).trim(), url);

    let svg = app.dir.path().join("link.svg");
    let out = app
        .run(&[
            "join",
            "create",
            &group,
            "--qr",
            "svg",
            "--output",
            svg.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let out = app
        .run(&["join", "create", &group, "--qr", "terminal"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains('▀'));
    // A file format without a file is a usage error.
    let out = app.run(&["join", "create", &group, "--qr", "png"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn join_create_needs_the_join_table_and_a_known_group() {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let out = app.run(&["join", "create", "group-0"]).await;
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("[join]"));
    let (app, _) = app_with_join().await;
    let out = app.run(&["join", "create", "no-such-group"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = app
        .run(&["join", "create", "group-0", "--max-uses", "0"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = app
        .run(&["join", "create", "group-0", "--expires", "2020-01-01"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = app.run(&["join", "create", "group-0", "--name", "x"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let again = app.run(&["join", "create", "group-0", "--name", "x"]).await;
    assert_eq!(again.status.code(), Some(1), "{again:?}");
}
