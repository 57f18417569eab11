//! The auditors' console on the real daemon: in a real browser (headless
//! Chromium over the DevTools protocol) every page loads and links to the
//! next, the CSV download is byte for byte `history --format csv`, the live
//! code shows only when asked for (and the asking is logged); screenshots
//! of each page at a laptop's and a phone's width go to
//! `target/screenshots/console-*.png` (not committed). Over HTTP: beyond
//! loopback nothing shows without the token's session (401), the cookie is
//! HttpOnly and SameSite=Strict, and anything but GET is refused.

use crate::cdp::launch;
use crate::common::free_port;
use crate::common::{Setup, TestApp, Tuning, real_part, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

pub(crate) const TOKEN_TEXT: &str = "console-token-5c1e9a7b2d";

/// An app with 3 rotated groups and `[console]` on `listen`; its daemon.
pub(crate) async fn app_with_console(
    listen: &str,
    token: bool,
) -> (TestApp, tokio::process::Child) {
    let app = spawn_app(
        &[Setup::Admin, Setup::Admin, Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    for _ in 0..3 {
        let out = app.run(&["rotate", "--all"]).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let token_line = if token {
        let path = app.dir.path().join("console-token");
        std::fs::write(&path, TOKEN_TEXT).unwrap();
        format!("token_file = \"{}\"\n", path.display())
    } else {
        String::new()
    };
    app.edit_config(|t| format!("{t}\n[console]\nlisten = \"{listen}\"\n{token_line}"));
    let daemon = app.spawn_daemon();
    (app, daemon)
}

pub(crate) fn client() -> reqwest::Client {
    invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap()
}

pub(crate) async fn wait_up(http: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        if http.get(format!("{base}/signin")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the console did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_nothing_shows_without_the_token_and_only_get_is_served() {
    let port = free_port();
    let (app, _daemon) = app_with_console(&format!("0.0.0.0:{port}"), true).await;
    let base = format!("http://127.0.0.1:{port}");
    // The API client's settings: no redirect followed.
    let http = client();
    wait_up(&http, &base).await;
    for path in [
        "/",
        "/history",
        "/history.csv",
        "/ledger",
        "/group?name=group-0&reveal=1",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("Console token") && !body.contains("group-0"),
            "{path}: {body}"
        );
    }
    // A wrong token, then the right one.
    let r = http
        .post(format!("{base}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=wrong-token-0000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(format!("{base}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN_TEXT}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN_TEXT), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap().to_owned();
    let live: Vec<String> = app
        .groups
        .iter()
        .map(|g| app.emulator.code_chain(&g.jid).last().unwrap().clone())
        .collect();
    for path in [
        "/",
        "/history",
        "/failures",
        "/events",
        "/ledger",
        "/group?name=group-0",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains(TOKEN_TEXT) && !body.contains(crate::common::TOKEN),
            "{path} leaks a token"
        );
        for code in &live {
            assert!(
                !body.contains(code.as_str()),
                "{path} shows a live code unasked"
            );
        }
    }
    let r = http
        .post(format!("{base}/reveal"))
        .header("cookie", &session)
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=group-0")
        .send()
        .await
        .unwrap();
    assert!(
        r.text().await.unwrap().contains(live[0].as_str()),
        "asked for, it shows"
    );
    // Nothing but GET (and the sign-in's and the live code's POSTs),
    // signed in or not.
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http
            .request(m, format!("{base}/history"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
    assert!(
        log.contains("console: the live code was shown"),
        "the showing is logged"
    );
    assert!(!log.contains(TOKEN_TEXT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_reads_every_page_follows_the_links_and_downloads_the_csv() {
    let Some(chromium) = real_part("chromium", "chromium") else {
        return;
    };
    let port = free_port();
    let (app, _daemon) = app_with_console(&format!("127.0.0.1:{port}"), false).await;
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&client(), &base).await;
    let csv = app.run(&["history", "--format", "csv"]).await;
    assert_eq!(csv.status.code(), Some(0));
    let live = app
        .emulator
        .code_chain(&app.groups[0].jid)
        .last()
        .unwrap()
        .clone();

    let mut browser = launch(&chromium, 1280, 800).await;
    let result = tokio::time::timeout(Duration::from_secs(90), async {
        let cdp = &mut browser.cdp;
        let click = |selector: &str| {
            json!({"expression": format!("document.querySelector({selector:?}).click()")})
        };
        let mut shots = Vec::new();
        // Groups, with the chart; a click on a group opens its timeline.
        cdp.open(&format!("{base}/")).await;
        let text = cdp.text().await;
        assert!(text.contains("group-0") && text.contains("healthy"), "{text}");
        assert_eq!(eval(cdp, "document.querySelectorAll('svg.chart rect').length > 90").await, json!(true));
        shots.push(("groups", format!("{base}/")));
        cdp.call("Runtime.evaluate", click("a[href='/group?name=group-0']")).await;
        wait_text(cdp, "Codes, newest first").await;
        let text = cdp.text().await;
        assert!(!text.contains(&live), "the live code is hidden until asked for");
        shots.push(("group", format!("{base}/group?name=group-0")));
        cdp.call("Runtime.evaluate", click("#reveal")).await;
        wait_text(cdp, "this view was logged").await;
        assert!(cdp.text().await.contains(&live));
        // The nav leads to each other page.
        for (nav, expect, name) in [
            ("History", "Download what", "history"),
            ("Failures", "Failures this week", "failures"),
            ("Events & hooks", "Hook deliveries", "events"),
            ("Ledger", "Last verification", "ledger"),
        ] {
            let go = format!(
                "[...document.querySelectorAll('header a')].find(a => a.textContent === {nav:?}).click()"
            );
            cdp.call("Runtime.evaluate", json!({ "expression": go })).await;
            wait_text(cdp, expect).await;
            let href = eval(cdp, "location.href").await;
            shots.push((name, href.as_str().unwrap_or_default().to_owned()));
        }
        // The ledger verified the history the daemon wrote.
        cdp.open(&format!("{base}/ledger")).await;
        for _ in 0..200 {
            if cdp.text().await.contains("intact") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            cdp.open(&format!("{base}/ledger")).await;
        }
        assert!(cdp.text().await.contains("intact"), "{}", cdp.text().await);
        // The CSV, downloaded by the browser from the page's link, is
        // `history --format csv`.
        let downloads = tempfile::tempdir().unwrap();
        cdp.call(
            "Page.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": downloads.path().to_str().unwrap()}),
        )
        .await;
        cdp.open(&format!("{base}/history")).await;
        cdp.call("Runtime.evaluate", click("#csv")).await;
        let file = downloads.path().join("history.csv");
        for _ in 0..400 {
            if file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            std::fs::read_to_string(&file).unwrap_or_default(),
            String::from_utf8_lossy(&csv.stdout),
            "the console's CSV is history's"
        );
        // Each page at a laptop's width and a phone's.
        for (width, height, mobile, device) in [(1280, 800, false, "laptop"), (390, 844, true, "phone")] {
            cdp.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
            for (name, url) in &shots {
                cdp.open(url).await;
                cdp.screenshot(&format!("console-{name}-{device}.png")).await;
            }
        }
    })
    .await;
    let _ = browser.process.kill().await;
    result.expect("the browser session took under 90 s");
    let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
    assert!(log.contains("console: the live code was shown"));
}

async fn eval(cdp: &mut crate::cdp::Cdp, expression: &str) -> serde_json::Value {
    let r = cdp
        .call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        )
        .await;
    r["result"]["value"].clone()
}

/// Waits for the page (after a click) to show `text`.
async fn wait_text(cdp: &mut crate::cdp::Cdp, text: &str) {
    for _ in 0..200 {
        // A click's navigation may close the page under an evaluation.
        if cdp.try_text().await.is_some_and(|t| t.contains(text)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the page never showed {text:?}: {}", cdp.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_names_are_served() {
    let port = free_port();
    let (_app, _daemon) = app_with_console(&format!("127.0.0.1:{port}"), false).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    wait_up(&http, &base).await;
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A page elsewhere pointing its own name at 127.0.0.1 (DNS rebinding).
    let r = http
        .get(format!("{base}/"))
        .header("host", format!("rebind.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!r.text().await.unwrap().contains("group-0"));
}
