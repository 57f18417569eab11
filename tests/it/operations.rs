//! Operating the daemon: `/metrics` scraped and parsed as Prometheus does,
//! `/healthz`, and webhooks that reach a receiver which fails at first,
//! across a daemon restart.

use crate::common::{Setup, TestApp, Tuning, fast_api, free_port, signal, spawn_app};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Datelike, Timelike, Utc};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::store::Status;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A schedule that fires once, at `t` (then a year later).
fn once_at(t: DateTime<Utc>) -> &'static str {
    let text = format!(
        "{} {} {} {} {} *",
        t.second(),
        t.minute(),
        t.hour(),
        t.day(),
        t.month()
    );
    Box::leak(text.into_boxed_str())
}

/// Two groups we administer and one we do not, all due once, in 2 s.
async fn due_soon() -> TestApp {
    let tuning = Tuning {
        schedule: once_at(Utc::now() + chrono::Duration::seconds(2)),
        ..Tuning::default()
    };
    spawn_app(
        &[Setup::Admin, Setup::Admin, Setup::Member],
        fast_api(),
        tuning,
    )
    .await
}

fn append_config(app: &TestApp, text: &str) {
    let mut config = std::fs::read_to_string(&app.config_path).unwrap();
    config.push_str(text);
    std::fs::write(&app.config_path, config).unwrap();
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum()
}

/// The outbox key of the app's first hook (its secret is not needed for it).
fn hook_key(app: &TestApp) -> String {
    let config = invite_rotator::config::Config::load(
        &app.config_path,
        invite_rotator::config::Purpose::Read,
    )
    .unwrap();
    config.hooks[0].key.clone()
}

/// An HTTP client as the binary builds one (its TLS provider installed).
fn http() -> reqwest::Client {
    invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None).unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let reply = http().get(url).send().await.unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_count_the_rotations_done() {
    // Arrange
    let app = due_soon().await;
    let port = free_port();
    append_config(
        &app,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut daemon = app.spawn_daemon();

    // Act: let the three rotations happen, then scrape.
    app.wait_for("three settled rotations", Duration::from_secs(30), |rows| {
        rows.len() == 3 && rows.iter().all(|r| r.status != Status::Pending)
    })
    .await;
    let (status, text) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
    let (health, why) = get(&format!("http://127.0.0.1:{port}/healthz")).await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().await.unwrap().success());

    // Assert: the counters match the history and the API's own count.
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let rotations = "invite_rotator_rotations_total";
    assert_eq!(
        sample(
            &scrape,
            rotations,
            &[("result", "succeeded"), ("trigger", "schedule")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        sample(&scrape, rotations, &[("result", "failed")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&scrape, "invite_rotator_api_calls_total", &[]),
        app.emulator.calls().len() as f64,
        "{text}"
    );
    assert_eq!(
        sample(
            &scrape,
            "invite_rotator_api_calls_total",
            &[("endpoint", "resetLink"), ("status", "403")]
        ),
        1.0
    );
    assert_eq!(
        sample(&scrape, "invite_rotator_groups_configured", &[]),
        3.0
    );
    let next = sample(&scrape, "invite_rotator_next_rotation_seconds", &[]);
    assert!(next > 300.0 * 86400.0, "next due in {next} s: a year on");
    assert!(!text.contains("group-0"), "no per-group labels");
    assert_eq!((health, why.as_str()), (200, "ok\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_when_the_history_takes_no_writes() {
    let app = due_soon().await;
    let port = free_port();
    append_config(
        &app,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut daemon = app.spawn_daemon_with(&[("FAILPOINTS", "store::health_probe=return")]);

    let url = format!("http://127.0.0.1:{port}/healthz");
    let mut answer = (0, String::new());
    for _ in 0..100 {
        if let Ok(reply) = http().get(&url).send().await {
            answer = (reply.status().as_u16(), reply.text().await.unwrap());
            if !answer.1.contains("starting") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();

    assert_eq!(answer.0, 503, "{answer:?}");
    assert!(answer.1.contains("takes no writes"), "{answer:?}");
}

/// What a webhook receiver saw: (idempotency key, signature, body, answered).
type Seen = Arc<Mutex<Vec<(String, String, String, u16)>>>;

/// A receiver on a free port that answers 500 to its first `failures` requests.
async fn receiver(failures: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let mut seen = seen.lock().unwrap();
                    let status = if seen.len() < failures { 500 } else { 200 };
                    seen.push((
                        header("idempotency-key"),
                        header("x-signature"),
                        body,
                        status,
                    ));
                    StatusCode::from_u16(status).unwrap()
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_its_first_5_deliveries_gets_every_notification_once_across_a_restart() {
    // Arrange: a receiver that fails five times; a signed webhook for both events.
    let app = due_soon().await;
    let (url, seen) = receiver(5).await;
    append_config(
        &app,
        &format!(
            "\n[[hook]]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"IR_TEST_HOOK_SECRET\"\non = [\"success\", \"failure\"]\n"
        ),
    );
    // Retries a few hundred ms apart, so that the restart comes between them.
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    let config = config
        .replace("backoff_initial = \"10ms\"", "backoff_initial = \"400ms\"")
        .replace("backoff_max = \"50ms\"", "backoff_max = \"1s\"");
    std::fs::write(&app.config_path, config).unwrap();
    let env = [("IR_TEST_HOOK_SECRET", "hook-secret-1")];

    // Act: the rotations happen; the daemon is stopped while the receiver
    // still fails, and started again.
    let mut first = app.spawn_daemon_with(&env);
    app.wait_for("three settled rotations", Duration::from_secs(30), |rows| {
        rows.len() == 3 && rows.iter().all(|r| r.status != Status::Pending)
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&first, "TERM");
    assert!(first.wait().await.unwrap().success());
    let first_run_acks = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(.., s)| *s == 200)
        .count();
    let mut second = app.spawn_daemon_with(&env);
    let delivered = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(.., status)| *status == 200)
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delivered(&seen) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:#?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every delivery is recorded as done: the worker has nothing left to send.
    let store = app.store().await;
    let key = hook_key(&app);
    let states = store.deliveries_of(&key).await.unwrap();
    assert!(
        states.iter().all(|(_, state, _)| state == "delivered"),
        "{states:?}"
    );
    signal(&second, "TERM");
    assert!(second.wait().await.unwrap().success());

    // Assert: each rotation acknowledged exactly once, under one key, signed;
    // the restart came while notifications were still undelivered.
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().take(5).all(|(.., s)| *s == 500));
    assert!(
        first_run_acks < 3,
        "every notification went before the restart"
    );
    let ok: Vec<_> = seen.iter().filter(|(.., s)| *s == 200).collect();
    assert_eq!(ok.len(), 3, "{seen:#?}");
    let mut keys: Vec<&str> = ok.iter().map(|(k, ..)| k.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3, "one key per notification");
    for (key, signature, body, _) in &seen {
        assert!(!key.is_empty());
        assert_eq!(
            signature,
            &invite_rotator::hooks::signature("hook-secret-1", body.as_bytes()),
            "the signature verifies"
        );
    }
    let rows = app.history().await;
    for (_, _, body, _) in ok {
        let note: serde_json::Value = serde_json::from_str(body).unwrap();
        let row = rows
            .iter()
            .find(|r| r.id == note["rotation_id"].as_i64().unwrap())
            .unwrap();
        assert_eq!(note["group"], row.group_name.as_str());
        assert_eq!(note["status"], row.status.as_str());
        assert_eq!(note["new_code"].as_str(), row.new_invite_code.as_deref());
        assert_eq!(note["old_code"].as_str(), row.old_invite_code.as_deref());
        assert_eq!(note["event"], format!("rotation.{}", row.status));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_hook_runs_with_the_facts_in_its_environment_and_never_the_daemon_s() {
    // Arrange: a command for successes of group-0 only, writing what it got.
    let app = due_soon().await;
    let out = app.dir.path().join("hook-out.txt");
    append_config(
        &app,
        &format!(
            "\n[[hook]]\nname = \"publish\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"env > {}; echo published\"]\ngroups = [\"group-0\"]\ntimeout = \"5s\"\n",
            out.display()
        ),
    );

    // Act
    let key = hook_key(&app);
    let mut daemon = app.spawn_daemon();
    let store = app.store().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let deliveries = store.deliveries_of(&key).await.unwrap();
        if deliveries.iter().any(|(_, state, _)| state == "delivered") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command never ran: {deliveries:?}\n{}",
            std::fs::read_to_string(app.daemon_log()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&daemon, "TERM");
    assert!(daemon.wait().await.unwrap().success());

    // Assert: the facts are there; the daemon's environment (the token's
    // variable) is not; the output and exit status are recorded.
    let env = std::fs::read_to_string(&out).unwrap();
    let row = app
        .history()
        .await
        .into_iter()
        .find(|r| r.group_name == "group-0")
        .unwrap();
    assert!(env.contains("INVITE_ROTATOR_GROUP=group-0"), "{env}");
    assert!(
        env.contains(&format!(
            "INVITE_ROTATOR_NEW_LINK=https://chat.whatsapp.com/{}",
            row.new_invite_code.unwrap()
        )),
        "{env}"
    );
    assert!(env.contains("INVITE_ROTATOR_IDEMPOTENCY_KEY=invite-rotator-"));
    assert!(!env.contains(crate::common::TOKEN_VAR), "{env}");
    let deliveries = store.deliveries_of(&key).await.unwrap();
    assert_eq!(
        deliveries.len(),
        1,
        "group-0 only, successes only: {deliveries:?}"
    );
    assert_eq!(deliveries[0].1, "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overdue_gauge_follows_missed_fires_and_successes_without_rereading_the_history() {
    // Arrange: two groups rotating every second, the metrics port open.
    let app = spawn_app(
        &[Setup::Admin, Setup::Admin],
        EmulatorOptions::default(),
        Tuning {
            schedule: "* * * * * *",
            ..Tuning::default()
        },
    )
    .await;
    let port = free_port();
    append_config(
        &app,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut daemon = app.spawn_daemon();
    let overdue = || async {
        let (_, text) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        sample(&scrape, "invite_rotator_groups_overdue", &[])
    };
    let wait_for = |want: f64, why: &'static str| {
        let overdue = &overdue;
        async move {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if overdue().await == want {
                    return;
                }
                assert!(tokio::time::Instant::now() < give_up, "{why}: never {want}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    app.wait_for("rotations", Duration::from_secs(20), |rows| {
        rows.iter()
            .filter(|r| r.status == Status::Succeeded)
            .count()
            >= 2
    })
    .await;
    assert_eq!(overdue().await, 0.0, "rotating groups are not overdue");

    // Act and assert: the instance goes offline; two fires later both groups
    // are overdue; back online, their next successes clear the gauge.
    app.emulator.set_connected(crate::common::INSTANCE, false);
    wait_for(2.0, "two missed fires make both groups overdue").await;
    app.emulator.set_connected(crate::common::INSTANCE, true);
    wait_for(0.0, "a success clears a group").await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().await.unwrap().success());
}
