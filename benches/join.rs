//! The join links' redirector beside nginx, in one run on this machine:
//! `wrk` (Debian's package) with 16 connections against the release
//! binary's `/j/{slug}` (an unlimited link, 302 to the live invite), then
//! against nginx (Debian's package) answering a fixed 302 on the same
//! machine. Prints requests per second and latency percentiles of both,
//! and checks the uses the daemon recorded after a clean stop: against the
//! requests wrk completed (which leaves out the ones in flight when it
//! stops), and exactly, against a fixed 100,000 requests sent by 16 clients
//! that read every answer. Run: `cargo bench --bench join` (about a minute).

mod common;

use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

type Error = Box<dyn std::error::Error>;

const CONNECTIONS: u32 = 16;
const THREADS: u32 = 2;
const SECONDS: u32 = 10;
const GOAL: f64 = 20_000.0;
/// Requests of the fixed-count phase (a multiple of `CONNECTIONS`).
const EXACT: u64 = 100_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    for program in ["wrk", "nginx"] {
        if which(program).is_none() {
            return Err(format!("this bench needs {program}: apt-get install {program}").into());
        }
    }
    let emulator = Emulator::new(EmulatorOptions::default());
    emulator.add_instance("bench", "bench-token");
    let jid = "120363400000000001@g.us";
    emulator.add_group("bench", jid, Membership::Admin);
    let api = emulator.clone().spawn().await?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\n[database]\npath = \"{}\"\n\
             [join]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             [[instance]]\nname = \"bench\"\ntoken_env = \"IR_BENCH_TOKEN\"\n\
             [[group]]\nname = \"g\"\ninstance = \"bench\"\njid = \"{jid}\"\nschedule = \"0 3 1 1 *\"\n",
            api.base_url(),
            dir.path().join("history.db").display()
        ),
    )?;
    cli(&config, &["rotate", "g"])?;
    let url = cli(&config, &["join", "create", "g", "--name", "bench"])?;
    let url = url.trim();
    let exact_url = cli(&config, &["join", "create", "g", "--name", "exact"])?;
    let exact_url = exact_url.trim().to_owned();
    let code = emulator.code_chain(jid).last().cloned().unwrap_or_default();

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("IR_BENCH_TOKEN", "bench-token")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let http = invite_rotator::ryzeapi::http_client(Duration::from_secs(10), None)?;
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(url).send().await
            && r.status() == reqwest::StatusCode::FOUND
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ready {
        return Err("the redirector never answered 302".into());
    }
    // The readiness probe above was one use.
    let probes = 1u64;

    let nginx_port = free_port()?;
    let nginx = start_nginx(dir.path(), nginx_port, &code)?;
    println!(
        "wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s --latency, machine: {} cores",
        common::cores()
    );
    let ours = wrk(url)?;
    let theirs = wrk(&format!("http://127.0.0.1:{nginx_port}/j/fixed"))?;
    stop_nginx(nginx)?;
    // Exactly EXACT requests on another link, 16 at a time, every answer
    // read: its count after the stop must be exactly that.
    let exact_started = std::time::Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (http, url) = (http.clone(), exact_url.clone());
        clients.spawn(async move {
            let mut found = 0u64;
            for _ in 0..EXACT / u64::from(CONNECTIONS) {
                if let Ok(r) = http.get(&url).send().await
                    && r.status() == reqwest::StatusCode::FOUND
                {
                    found += 1;
                }
            }
            found
        });
    }
    let mut answered = 0;
    while let Some(found) = clients.join_next().await {
        answered += found?;
    }
    let exact_took = exact_started.elapsed();
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()?;
    daemon.wait()?;

    println!(
        "{:<34} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "server", "requests/s", "p50", "p75", "p90", "p99", "non-3xx"
    );
    for (name, r) in [
        ("invite-rotator /j/{slug} (302)", &ours),
        ("nginx, fixed 302", &theirs),
    ] {
        println!(
            "{name:<34} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.rate, r.p50, r.p75, r.p90, r.p99, r.errors
        );
    }
    let share = ours.rate / theirs.rate;
    println!(
        "invite-rotator at {:.0}% of nginx's rate (goal: at least 50%, and {GOAL:.0}/s)",
        share * 100.0
    );
    let listed = cli(&config, &["join", "list", "--format", "json"])?;
    let uses = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["name"] == "bench")
        .and_then(|l| l["uses"].as_u64())
        .unwrap_or(0);
    let completed = ours.requests + probes;
    println!(
        "uses recorded after the stop {uses}; requests wrk completed {} (+{probes} probe); \
         difference {} (requests in flight when wrk stopped: served and counted, not counted by wrk; at most {CONNECTIONS})",
        ours.requests,
        uses.saturating_sub(completed)
    );
    let exact = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["name"] == "exact")
        .and_then(|l| l["uses"].as_u64())
        .unwrap_or(0);
    println!(
        "fixed count: {answered} redirects answered to 16 reqwest clients in {:.1} s; uses recorded after the stop {exact}",
        exact_took.as_secs_f64()
    );
    if exact != answered || answered != EXACT {
        return Err(
            format!("{exact} uses recorded for {answered} redirects ({EXACT} sent)").into(),
        );
    }
    if uses < completed || uses > completed + u64::from(CONNECTIONS) {
        return Err(format!("uses {uses} do not match the {completed} requests served").into());
    }
    if ours.rate < GOAL || share < 0.5 || ours.errors > 0 {
        return Err("below the goal".into());
    }
    Ok(())
}

/// What one wrk run measured.
struct Run {
    rate: f64,
    requests: u64,
    errors: u64,
    p50: String,
    p75: String,
    p90: String,
    p99: String,
}

fn wrk(url: &str) -> Result<Run, Error> {
    let out = Command::new("wrk")
        .args([
            &format!("-t{THREADS}"),
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            url,
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk: {text}").into());
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    let rate = field("Requests/sec:")
        .and_then(|r| r.parse().ok())
        .ok_or("no Requests/sec in wrk's output")?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or("no request count in wrk's output")?;
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let pct = |p: &str| field(p).unwrap_or_else(|| "?".into());
    Ok(Run {
        rate,
        requests,
        errors,
        p50: pct("50%"),
        p75: pct("75%"),
        p90: pct("90%"),
        p99: pct("99%"),
    })
}

/// nginx in the foreground, one worker per core, answering every request
/// with a 302 to the same invite.
fn start_nginx(dir: &Path, port: u16, code: &str) -> Result<std::process::Child, Error> {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir};\n  proxy_temp_path {dir};\n\
               fastcgi_temp_path {dir};\n  uwsgi_temp_path {dir};\n  scgi_temp_path {dir};\n\
               server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{ add_header Cache-Control no-store always; return 302 https://chat.whatsapp.com/{code}; }}\n  }}\n}}\n",
            dir = dir.display()
        ),
    )?;
    let child = Command::new("nginx")
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &conf.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("nginx did not start".into())
}

fn stop_nginx(mut nginx: std::process::Child) -> Result<(), Error> {
    // SIGTERM: the master stops its workers too.
    Command::new("kill")
        .args(["-TERM", &nginx.id().to_string()])
        .status()?;
    nginx.wait()?;
    Ok(())
}

fn cli(config: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("IR_BENCH_TOKEN", "bench-token")
        .env("RUST_LOG", "warn")
        .output()?;
    if !out.status.success() {
        return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
