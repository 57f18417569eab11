//! The process's defences against its surroundings, one test per defect a
//! security and reliability review found, each against the real binary: no
//! proxy from the environment, hostile links stored and printed clean, one
//! daemon per database whatever its name, files 0700/0600 from the start,
//! signals during start-up, bounded secret files, and (with the common
//! helpers) no live code in any log.

use crate::common::{INSTANCE, Setup, TOKEN, TOKEN_VAR, Tuning, signal, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// A stand-in proxy on loopback: counts connections and keeps what each
/// sent first, answering nothing.
struct FakeProxy {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn fake_proxy() -> FakeProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
                    .await
                    .map_or(0, |r| r.unwrap_or(0));
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            });
        }
    });
    FakeProxy { url, seen }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_variables_of_the_environment_carry_no_call_and_no_webhook() {
    // Arrange: every proxy variable names a proxy that records what reaches it.
    let proxy = fake_proxy().await;
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    app.edit_config(|text| {
        format!(
            "{text}\n[[hook]]\nkind = \"webhook\"\nurl = \"{}/hook\"\n",
            receiver.uri()
        )
    });
    let vars: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|v| (v, proxy.url.as_str()))
    // No exception for loopback either (CI machines often set one).
    .chain([("NO_PROXY", ""), ("no_proxy", "")])
    .collect();

    // Act: a rotation by `rotate`, and the daemon delivering its webhook.
    let out = app.run_with(&["rotate", "group-0"], &vars).await;
    let mut daemon = app.spawn_daemon_with(&vars);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the webhook never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();

    // Assert
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(seen.is_empty(), "the proxy saw: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_proxy_only_tunnels_https_and_never_sees_a_request() {
    let proxy = fake_proxy().await;
    // Loopback over plain http (the emulator): never through the proxy.
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    app.edit_config(|text| text.replace("[api]\n", &format!("[api]\nproxy = \"{}\"\n", proxy.url)));
    let out = app.run(&["rotate", "group-0"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(proxy.seen.lock().unwrap().is_empty());

    // HTTPS: a CONNECT tunnel, the request (and its token) inside TLS.
    app.edit_config(|text| {
        let base = text
            .lines()
            .find(|l| l.starts_with("base_url"))
            .unwrap()
            .to_owned();
        text.replace(&base, "base_url = \"https://ryzeapi.invalid/api\"")
            .replace("max_attempts = 5", "max_attempts = 1")
    });
    let _ = app.run(&["rotate", "group-0"]).await;
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|s| s.starts_with("CONNECT ryzeapi.invalid:443 ")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| !s.contains(TOKEN)), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_invite_link_is_stored_rebuilt_and_never_printed_raw() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let jid = "120363406289005073@g.us";
    Mock::given(method("GET"))
        .and(path(format!("/api/group/info/{INSTANCE}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "success": true, "group": {"inviteLink": "https://chat.whatsapp.com/OLDcode1"}
        })))
        .mount(&server)
        .await;
    let hostile = "https://chat.whatsapp.com/NEWcode2?x=\u{1b}[2J\"><script>alert(1)</script>";
    Mock::given(method("POST"))
        .and(path(format!("/api/group/resetLink/{INSTANCE}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "success": true, "groupJid": jid, "inviteCode": "NEWcode2", "inviteLink": hostile
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}/api\"\n[database]\npath = \"{}/h.db\"\n[[instance]]\nname = \"{INSTANCE}\"\ntoken_env = \"{TOKEN_VAR}\"\n[[group]]\nname = \"vip\"\ninstance = \"{INSTANCE}\"\njid = \"{jid}\"\nschedule = \"@daily\"\n",
            server.uri(),
            dir.path().display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env(TOKEN_VAR, TOKEN)
            .output()
            .unwrap()
    };

    assert_eq!(run(&["rotate", "vip"]).status.code(), Some(0));
    let csv = run(&["history", "--format", "csv"]);
    let json = run(&["history", "--format", "json"]);

    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        !csv.contains('\u{1b}') && !csv.contains("<script>"),
        "{csv}"
    );
    let row: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(row["new_invite_link"], "https://chat.whatsapp.com/NEWcode2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_reaching_the_database_through_a_symlink_refuses_to_start() {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let mut first = app.spawn_daemon();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(app.daemon_log())
        .unwrap_or_default()
        .contains("daemon started")
    {
        assert!(tokio::time::Instant::now() < give_up);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alias = app.dir.path().join("alias");
    std::os::unix::fs::symlink(app.db_path.parent().unwrap(), &alias).unwrap();
    let second_config = app.dir.path().join("second.toml");
    let text = std::fs::read_to_string(&app.config_path).unwrap().replace(
        app.db_path.to_str().unwrap(),
        alias.join("history.db").to_str().unwrap(),
    );
    std::fs::write(&second_config, text).unwrap();

    let second = std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&second_config)
        .arg("run")
        .env(TOKEN_VAR, TOKEN)
        .output()
        .unwrap();
    signal(&first, "TERM");
    first.wait().await.unwrap();

    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another invite-rotator daemon is running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_database_directory_is_0700_and_every_file_beside_the_database_0600() {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"));
    cmd.arg("--config")
        .arg(&app.config_path)
        .arg("run")
        .env(TOKEN_VAR, TOKEN)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    // SAFETY: umask(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let mut daemon = cmd.spawn().unwrap();
    let state = app.db_path.parent().unwrap().to_owned();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while !state.join("history.db-wal").exists() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut files: Vec<(String, u32)> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), mode(&p)))
        .collect();
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();

    assert_eq!(mode(&state), 0o700);
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    assert!(files.iter().all(|(_, m)| *m == 0o600), "{files:?}");
    assert!(
        files.iter().any(|(f, _)| f.ends_with(".daemon.lock")),
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_during_start_up_neither_kill_the_daemon_nor_wait_behind_a_lock() {
    // Arrange: another process holds the migration lock of a new database.
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let state = app.db_path.parent().unwrap();
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(&app.db_path, b"").unwrap();
    let lock = std::fs::File::create(format!("{}.migrate.lock", app.db_path.display())).unwrap();
    lock.lock().unwrap();
    let mut daemon = app.spawn_daemon();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(app.daemon_log())
        .unwrap_or_default()
        .contains("waiting for another process to finish migrating")
    {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the wait is not logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Act: a SIGHUP, then a SIGTERM, while it waits.
    signal(&daemon, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "a SIGHUP during start-up ended it"
    );
    let asked = std::time::Instant::now();
    signal(&daemon, "TERM");
    let status = daemon.wait().await.unwrap();

    // Assert
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    drop(lock);
}

#[test]
fn a_secret_file_that_never_ends_is_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\npath = \"{}/h.db\"\n[[instance]]\nname = \"i\"\ntoken = \"t\"\n[[group]]\nname = \"g\"\ninstance = \"i\"\njid = \"1@g.us\"\nschedule = \"@daily\"\n[[hook]]\nkind = \"webhook\"\nurl = \"https://example.org/h\"\nsecret_file = \"/dev/zero\"\n",
            dir.path().display()
        ),
    )
    .unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&config)
        .arg("check")
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hook[0].secret_file") && stderr.contains("larger than"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_codes_reach_the_log_only_with_the_explicit_opt_in() {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&app.config_path)
        .args(["rotate", "group-0"])
        .env(TOKEN_VAR, TOKEN)
        .env("RUST_LOG", "debug")
        .env("INVITE_ROTATOR_LOG_CODES", "1")
        .output()
        .await
        .unwrap();
    let code = app.emulator.current_code(&app.groups[0].jid).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(&code));
    // And without it (the helper checks every log for every issued code).
    assert_eq!(app.run(&["rotate", "group-0"]).await.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_did_not_succeed_is_logged_as_a_warning() {
    let app = spawn_app(
        &[Setup::Member],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;

    let out = app.run(&["rotate", "group-0"]).await;

    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("rotation did not succeed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains(" WARN ") && line.contains("status=failed"),
        "{line}"
    );
}
