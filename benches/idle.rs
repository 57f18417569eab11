//! The daemon with 100,000 groups, as a whole process: start-up time (until it
//! tells systemd READY=1), CPU while idle, resident memory. Run:
//! `cargo bench --bench idle` (about 2.5 min).
//!
//! Two configs side by side in one run: the groups alone, and the same with
//! `[metrics]` and a hook (what the overdue gauge and the hooks' worker cost).
//! Each is started twice on its own database: a first start (which records
//! 100,000 groups as seen) and a restart. Schedules fire on January 1st
//! only, so nothing rotates during the measurement.

mod common;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GROUPS: usize = 100_000;
const IDLE: Duration = Duration::from_secs(30);
/// After READY=1, before the idle window: one-time work ends here.
const SETTLE: Duration = Duration::from_secs(5);
const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Berlin",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "America/New_York",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut groups = String::new();
    for i in 0..GROUPS {
        groups.push_str(&format!(
            "[[group]]\nname = \"g{i}\"\ninstance = \"bench\"\njid = \"{}@g.us\"\nschedule = \"{} {} 1 1 *\"\ntimezone = \"{}\"\njitter = \"10m\"\n",
            120_363_400_000_000_000u64 + i as u64,
            i % 60,
            (i / 60) % 24,
            ZONES[i % ZONES.len()],
        ));
    }
    println!(
        "groups {GROUPS}, idle window {} s, machine: {} cores",
        IDLE.as_secs(),
        common::cores()
    );
    let extras = [
        ("groups alone", ""),
        (
            "+ metrics, hook",
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[[hook]]\nkind = \"command\"\ncommand = [\"/bin/true\"]\n",
        ),
    ];
    for (i, (setup, extra)) in extras.iter().enumerate() {
        let config = format!(
            "[api]\nbase_url = \"http://127.0.0.1:9/api\"\n[database]\npath = \"{}\"\n\
             [[instance]]\nname = \"bench\"\ntoken_env = \"IR_BENCH_TOKEN\"\n{extra}{groups}",
            dir.path().join(format!("history-{i}.db")).display()
        );
        let config_path = dir.path().join(format!("config-{i}.toml"));
        std::fs::write(&config_path, config)?;
        for run in ["first start", "restart"] {
            measure(&format!("{setup}, {run}"), &config_path, dir.path())?;
        }
    }
    Ok(())
}

fn measure(
    run: &str,
    config: &std::path::Path,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(Duration::from_secs(60)))?;
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("IR_BENCH_TOKEN", "bench-token")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut buf = [0u8; 256];
    loop {
        let n = socket.recv(&mut buf)?;
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    let ready = start.elapsed();
    let pid = child.id();
    // What runs once after READY (the metrics' overdue tracking is set up
    // then), measured apart from the idle window.
    let settling_from = cpu_ticks(pid)?;
    std::thread::sleep(SETTLE);
    let cpu_before = cpu_ticks(pid)?;
    let settling = cpu_before - settling_from;
    std::thread::sleep(IDLE);
    let cpu = cpu_ticks(pid)? - cpu_before;
    let (rss, hwm) = common::memory_kb(pid);
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = child.wait()?;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr)?;
    }
    let ticks_per_s: f64 = 100.0; // CLK_TCK on Linux
    let idle_pct = cpu as f64 / ticks_per_s / IDLE.as_secs_f64() * 100.0;
    println!(
        "{run:<30} start-up {:.2} s   then {:.2} s of CPU in {} s   idle CPU {idle_pct:.3}% of a core ({cpu} ticks in {} s)   RSS {:.1} MB (peak {:.1} MB)   exit {:?}",
        ready.as_secs_f64(),
        settling as f64 / ticks_per_s,
        SETTLE.as_secs(),
        IDLE.as_secs(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        status.code()
    );
    if !stderr.trim().is_empty() {
        println!("  stderr: {}", stderr.trim());
    }
    Ok(())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').ok_or("bad stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}
