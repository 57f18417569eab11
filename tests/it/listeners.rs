//! Every listener's defences (src/listener.rs), against the real binary: a
//! flood of half-sent requests on the metrics port does not stop rotations.

use crate::common::{Setup, TOKEN, TOKEN_VAR, Tuning, signal, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_sent_requests_on_the_metrics_port_does_not_stop_rotations() {
    use tokio::io::AsyncWriteExt;
    // Arrange: a daemon limited to 1,024 descriptors, rotating every second,
    // with its metrics port open.
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning {
            schedule: "* * * * * *",
            ..Tuning::default()
        },
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    app.edit_config(|text| format!("{text}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let log = std::fs::File::create(app.daemon_log()).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"));
    cmd.arg("--config")
        .arg(&app.config_path)
        .arg("run")
        .env(TOKEN_VAR, TOKEN)
        .stderr(log)
        .kill_on_drop(true);
    // SAFETY: setrlimit(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let mut daemon = cmd.spawn().unwrap();
    let succeeded = || async {
        app.history()
            .await
            .iter()
            .filter(|r| r.status == invite_rotator::store::Status::Succeeded)
            .count()
    };
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while succeeded().await == 0 {
        assert!(tokio::time::Instant::now() < give_up, "no first rotation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // This test holds 1,100 sockets itself.
    invite_rotator::listener::raise_fd_limit();

    // Act: 1,100 connections that each send half a request and wait, all
    // tried at once (one after the other, the ~75 that find the accept
    // queue full waited out their 200 ms each: 15 s of the test).
    let attempts = (0..1100).map(|_| async {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        let mut s = tokio::time::timeout(Duration::from_millis(200), connect)
            .await
            .ok()?
            .ok()?;
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        Some(s)
    });
    let flood: Vec<_> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .flatten()
        .collect();
    // Rotations go on during the flood: two more within 4 s (the daemon
    // rotates every second), watched as they come.
    let before = succeeded().await;
    let during = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut after = succeeded().await;
    while after < before + 2 && tokio::time::Instant::now() < during {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = succeeded().await;
    }
    drop(flood);

    // Assert: rotations went on; the port answers again once the flood goes.
    assert!(
        after >= before + 2,
        "rotations stopped: {before} then {after}"
    );
    let give_up = tokio::time::Instant::now() + Duration::from_secs(15);
    let healthy = loop {
        let probe = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).await.ok()?;
            Some(reply)
        };
        if let Ok(Some(reply)) = tokio::time::timeout(Duration::from_secs(2), probe).await
            && reply.starts_with("HTTP/1.1 200")
        {
            break true;
        }
        if tokio::time::Instant::now() > give_up {
            break false;
        }
    };
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();
    let log = std::fs::read_to_string(app.daemon_log()).unwrap();
    assert!(healthy, "/healthz did not answer after the flood:\n{log}");
    assert!(!log.contains("Too many open files"), "{log}");
}
