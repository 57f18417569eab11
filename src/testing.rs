//! A real PostgreSQL for the tests and benchmarks (with the `test-support`
//! feature, which the package's dev-dependency on itself turns on):
//! Debian's `postgresql` package, one throwaway cluster per test binary
//! (initdb and the server in `/tmp/invite-rotator-pg/pg-PID`, swept once
//! that process is gone, on a free port, as the unprivileged
//! `postgres` user when the tests run as root: PostgreSQL refuses root),
//! and a fresh database per test. `INVITE_ROTATOR_TEST_POSTGRES` (an admin
//! URL) uses a server of your own instead.
//!
//! Without PostgreSQL a test prints one line saying what to install and
//! passes; with `INVITE_ROTATOR_REQUIRE_POSTGRES` (or
//! `INVITE_ROTATOR_REQUIRE_PARTS`) set, as `.ci/run` sets it, it fails.

use crate::config::{Database, PostgresSettings};
use sqlx::Connection;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Set by `.ci/run`: every real part a test uses is installed.
pub const REQUIRE_PARTS_VAR: &str = "INVITE_ROTATOR_REQUIRE_PARTS";
/// An admin URL of a server of your own.
pub const SERVER_VAR: &str = "INVITE_ROTATOR_TEST_POSTGRES";
/// Set by `.ci/run`: a test that finds no PostgreSQL fails.
pub const REQUIRE_VAR: &str = "INVITE_ROTATOR_REQUIRE_POSTGRES";

/// The server the tests use: its admin URL (without a database).
struct Server {
    /// `postgres://postgres@127.0.0.1:PORT` (or the variable's URL).
    admin: String,
}

static SERVER: tokio::sync::OnceCell<Result<Server, String>> = tokio::sync::OnceCell::const_new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty database on the test server, as the config would name
/// it; `None` (after one line on stderr) when there is no PostgreSQL here
/// and none is required.
pub async fn database() -> Option<Database> {
    let server = match SERVER.get_or_init(start).await {
        Ok(server) => server,
        Err(why) => {
            let required = std::env::var_os(REQUIRE_VAR).is_some()
                || std::env::var_os(REQUIRE_PARTS_VAR).is_some();
            assert!(
                !required,
                "PostgreSQL is required here ({REQUIRE_VAR}) but {why}"
            );
            eprintln!("skipped: this test needs PostgreSQL; apt-get install postgresql ({why})");
            return None;
        }
    };
    let name = format!(
        "ir_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin =
        sqlx::PgConnection::connect(&format!("{}/postgres?sslmode=disable", server.admin))
            .await
            .expect("the test server takes connections");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("a test database is created");
    let url = format!("{}/{name}?sslmode=disable", server.admin);
    Some(Database::Postgres(PostgresSettings {
        url: reqwest::Url::parse(&url).expect("a valid URL"),
        password: None,
    }))
}

async fn start() -> Result<Server, String> {
    if let Ok(admin) = std::env::var(SERVER_VAR) {
        return Ok(Server {
            admin: admin.trim_end_matches('/').to_owned(),
        });
    }
    let bin = binaries().ok_or("its server binaries (initdb, postgres) are not installed")?;
    let dir = std::env::temp_dir()
        .join("invite-rotator-pg")
        .join(format!("pg-{}", std::process::id()));
    sweep_old_clusters(dir.parent().unwrap_or(Path::new("/tmp")));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let user = unprivileged();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let data = dir.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args(["-D"])
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_user(&mut initdb, user);
    let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port();
    // The server is the child of a thread that lives as long as the test
    // binary: when the binary ends, the kernel stops the server (SIGQUIT).
    let (tx, rx) = std::sync::mpsc::channel();
    let (bin2, data2, dir2) = (bin.clone(), data.clone(), dir.clone());
    std::thread::spawn(move || {
        let mut server = Command::new(bin2.join("postgres"));
        server
            .arg("-D")
            .arg(&data2)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir2)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=64MB",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut server, user);
        // SAFETY: prctl only sets a flag of the child process, between fork and exec.
        unsafe {
            server.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                Ok(())
            });
        }
        match server.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(format!("postgres: {e}")));
            }
        }
    });
    rx.recv().map_err(|e| e.to_string())??;
    let admin = format!("postgres://postgres@127.0.0.1:{port}");
    for _ in 0..200 {
        // Accepting connections is not yet taking them; a connection tells.
        if sqlx::PgConnection::connect(&format!("{admin}/postgres?sslmode=disable"))
            .await
            .is_ok()
        {
            return Ok(Server { admin });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the test server did not start within 10 s".into())
}

/// The newest installed PostgreSQL's programs.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// As root, the `postgres` user's ids (PostgreSQL refuses to run as root).
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: getpwnam reads a NUL-terminated name; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Some((65534, 65534)); // nobody
    }
    // SAFETY: pw is a valid passwd entry (checked non-null above).
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(54_329, |a| a.port())
}

/// Removes clusters left by test binaries that are gone.
fn sweep_old_clusters(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("pg-")) else {
            continue;
        };
        if pid
            .parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
