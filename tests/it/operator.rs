//! What a new operator meets in the first hour: logs that a file, a pipe or
//! the journal can read, every config error at once in one form, `check`
//! finding what `run` would trip on, an auditor's typo, help that is whole,
//! man pages that lint clean, and no catch-up right after a manual rotation.

use crate::common::{Setup, TestApp, Tuning, real_part, signal, spawn_app};
use invite_rotator::emulator::EmulatorOptions;
use invite_rotator::store::Trigger;
use std::process::{Command, Output};
use std::time::Duration;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits until the daemon's log holds `needle`.
async fn wait_for_log(app: &TestApp, needle: &str) -> String {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(app.daemon_log()).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "no {needle:?} in the daemon's log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn every_second() -> Tuning {
    Tuning {
        schedule: "* * * * * *",
        ..Tuning::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_have_no_colour_codes_and_rfc3339_utc_times() {
    let app = spawn_app(&[Setup::Admin], EmulatorOptions::default(), every_second()).await;
    let mut daemon = app.spawn_daemon();
    wait_for_log(&app, "rotation").await;
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();

    let log = std::fs::read_to_string(app.daemon_log()).unwrap();
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file:\n{log}");
    let next_due = log
        .split("next_due=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no next_due field:\n{log}"));
    assert!(
        next_due.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(next_due).is_ok(),
        "{next_due}"
    );
    assert!(!log.contains(" UTC") && !log.contains("+00:00"), "{log}");
}

#[test]
fn colour_goes_to_a_terminal_unless_no_color_is_set() {
    // `script` (bsdutils) runs the command on a pseudo-terminal.
    let Some(script) = real_part("script", "bsdutils") else {
        return;
    };
    // `demo` logs; on a terminal, in colour unless NO_COLOR is set.
    let on_tty = |no_color: bool| {
        let command = format!("{} demo --seconds 1", env!("CARGO_BIN_EXE_invite-rotator"));
        let mut cmd = Command::new(&script);
        cmd.args(["-qec", &command, "/dev/null"]);
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    };
    assert!(on_tty(false).contains("\u{1b}["), "no colour on a terminal");
    assert!(!on_tty(true).contains("\u{1b}["), "colour despite NO_COLOR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_the_daemon_logs_to_the_journal_with_a_group_field() {
    use std::os::unix::fs::MetadataExt;
    // journald's socket, owned by this test: only where no journald runs.
    let socket_path = std::path::Path::new("/run/systemd/journal/socket");
    if socket_path.exists() || std::fs::create_dir_all("/run/systemd/journal").is_err() {
        eprintln!(
            "skipped: a journald runs here (or /run is not writable); cannot stand in for it"
        );
        return;
    }
    let Ok(journal) = std::os::unix::net::UnixDatagram::bind(socket_path) else {
        eprintln!("skipped: cannot bind {}", socket_path.display());
        return;
    };
    struct Remove(&'static str);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _cleanup = Remove("/run/systemd/journal/socket");
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let app = spawn_app(&[Setup::Admin], EmulatorOptions::default(), every_second()).await;
    // systemd's JOURNAL_STREAM: the device and inode of our stderr.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(app.daemon_log())
        .unwrap();
    let meta = log.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut daemon = app.spawn_daemon_with(&[("JOURNAL_STREAM", stream.as_str())]);

    let is_rotation = |e: &Entry| {
        e.get("GROUP").map(String::as_str) == Some("group-0")
            && e.get("MESSAGE").map(String::as_str) == Some("rotation")
    };
    let mut entries: Vec<Entry> = Vec::new();
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < give_up && !entries.iter().any(is_rotation) {
        if let Ok(n) = journal.recv(&mut buf) {
            entries.push(journal_entry(&buf[..n]));
        }
    }
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();

    let rotation = entries
        .iter()
        .find(|e| is_rotation(e))
        .unwrap_or_else(|| panic!("no rotation entry with GROUP=group-0:\n{entries:#?}"));
    assert_eq!(rotation["PRIORITY"], "5", "INFO is notice (5)");
    assert_eq!(rotation["SYSLOG_IDENTIFIER"], "invite-rotator");
    assert_eq!(rotation["STATUS"], "succeeded");
    let on_stderr = std::fs::read_to_string(app.daemon_log()).unwrap();
    assert!(
        !on_stderr.contains("rotation"),
        "lines went to the journal, not stderr"
    );
}

type Entry = std::collections::HashMap<String, String>;

/// One datagram of journald's native protocol: `NAME=value` lines, or
/// `NAME`, a newline, a 64-bit little-endian length and the value.
fn journal_entry(mut bytes: &[u8]) -> Entry {
    let mut entry = Entry::new();
    while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'=') {
        let name = String::from_utf8_lossy(&bytes[..end]).into_owned();
        if bytes[end] == b'=' {
            let rest = &bytes[end + 1..];
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            entry.insert(name, String::from_utf8_lossy(&rest[..stop]).into_owned());
            bytes = rest.get(stop + 1..).unwrap_or_default();
        } else {
            let rest = &bytes[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            entry.insert(
                name,
                String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
            );
            bytes = rest.get(8 + len + 1..).unwrap_or_default();
        }
    }
    entry
}

const VALID: &str = r#"
[database]
path = "DB"

[[instance]]
name = "sales"
token = "tok-operator"

[[group]]
name = "vip"
instance = "sales"
jid = "120363406289005073@g.us"
schedule = "0 3 * * *"
"#;

/// `check` on `text` (`DB` replaced by a path in a fresh directory).
fn check(text: &str) -> (Option<i32>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = text.replace("DB", &dir.path().join("state/h.db").display().to_string());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = binary()
        .arg("--config")
        .arg(&path)
        .arg("check")
        .output()
        .unwrap();
    (out.status.code(), stderr(&out), dir)
}

#[test]
fn every_problem_in_the_file_is_reported_at_once_as_file_line_key_message() {
    let text = format!(
        "{VALID}\n[databse]\npath = \"x\"\n\n[[group]]\nname = \"two\"\njid = \"12345\"\nschedule = \"0 25 * * *\"\nschedul = \"x\"\n\n[rate_limit]\nrequests_per_minute = \"many\"\n"
    );

    let (code, stderr, _dir) = check(&text);

    assert_eq!(code, Some(78), "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("config.toml:"))
        .collect();
    for expected in [
        ":15: databse: unknown table; did you mean \"database\"?",
        ":18: group[1].instance: missing: every [[group]] needs name, instance, jid and schedule",
        ":20: group[1].jid: \"12345\" is not a group JID; a group JID has the form digits@g.us, such as 120363406289005073@g.us",
        ":21: group[1].schedule: \"0 25 * * *\" is not a valid cron schedule: hour 25 is out of range 0-23",
        ":22: group[1].schedul: unknown key; did you mean \"schedule\"?",
        ":25: rate_limit.requests_per_minute: must be a whole number, not a string",
    ] {
        assert!(
            problems.iter().any(|p| p.ends_with(expected)),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert_eq!(problems.len(), 6, "{stderr}");
    for p in problems {
        let (file_line, rest) = p.split_once(": ").unwrap();
        assert!(
            file_line.rsplit(':').next().unwrap().parse::<u32>().is_ok(),
            "{p}"
        );
        assert!(rest.split_once(": ").is_some(), "no KEY: in {p}");
    }
}

#[test]
fn a_config_without_groups_is_refused() {
    let (code, stderr, _dir) = check(&VALID[..VALID.find("[[group]]").unwrap()]);

    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("group: no [[group]] is defined"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_database_path_that_cannot_be_created_fails_check_and_run_with_78_creating_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let text = VALID.replace("DB", &blocker.join("state/h.db").display().to_string());
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();

    for command in ["check", "run"] {
        let out = binary()
            .arg("--config")
            .arg(&config)
            .arg(command)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("config.toml:3: database.path: ")
                && stderr(&out).contains("is not a directory"),
            "{command}: {}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a directory");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 2, "nothing created beside the config");
}

#[test]
fn history_of_a_database_that_does_not_exist_exits_66_and_an_empty_one_0() {
    let out = binary()
        .args(["history", "--database", "/no/such/dir/history.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(stderr(&out).contains("no history database at /no/such/dir/history.db"));

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = binary()
        .arg("history")
        .arg("--database")
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_takes_a_plain_date_or_a_utc_time_for_since_and_until() {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    assert_eq!(app.run(&["rotate", "group-0"]).await.status.code(), Some(0));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();

    let out = app
        .run(&[
            "history", "--format", "json", "--since", &today, "--until", &tomorrow,
        ])
        .await;
    let none = app
        .run(&["history", "--format", "json", "--until", &today])
        .await;

    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert_eq!(String::from_utf8_lossy(&none.stdout).lines().count(), 0);
}

#[test]
fn help_is_whole_and_shows_only_the_options_that_apply() {
    let help = |args: &[&str]| {
        String::from_utf8_lossy(&binary().args(args).output().unwrap().stdout).into_owned()
    };

    let status = help(&["status", "-h"]);
    assert!(
        status
            .lines()
            .next()
            .unwrap()
            .ends_with("exits 1 when a group is either"),
        "{status}"
    );
    for command in ["demo", "completions", "manpage", "emulator"] {
        assert!(
            !help(&[command, "--help"]).contains("--config"),
            "{command}"
        );
    }
    for command in ["run", "check", "rotate", "history", "status"] {
        assert!(help(&[command, "--help"]).contains("--config"), "{command}");
    }
    let out = binary().arg("rotate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("or use --all"), "{}", stderr(&out));
    let out = binary()
        .args(["emulator", "--latency", "bogus"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("'--latency <LATENCY>': \"bogus\" is not a duration such as 300ms"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_man_page_passes_mandoc_lint_and_every_page_named_exists() {
    let Some(mandoc) = real_part("mandoc", "mandoc") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .arg("manpage")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(pages.len() >= 10, "{pages:?}");
    for page in &pages {
        let lint = Command::new(&mandoc)
            .args(["-T", "lint"])
            .arg(page)
            .output()
            .unwrap();
        assert!(
            lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
            "{}: {}{}",
            page.display(),
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
        let text = std::fs::read_to_string(page).unwrap();
        for named in text.split("invite\\-rotator\\-").skip(1) {
            let Some(name) = named
                .split("(1)")
                .next()
                .filter(|n| n.chars().all(|c| c.is_ascii_lowercase()))
            else {
                continue;
            };
            assert!(
                dir.path().join(format!("invite-rotator-{name}.1")).exists(),
                "{} names invite-rotator-{name}(1), which does not exist",
                page.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_missed_before_a_manual_rotation_is_not_caught_up() {
    // The first daemon sees the group on a schedule that cannot fire while
    // it runs, and stops. The schedule is then moved to one fire a minute,
    // at the first whole second at least one second after that stop (the
    // daemon keeps no schedule, only when it saw and served each group:
    // the second daemon reads the moved one), so the fire goes by while
    // nothing runs, without waiting for a fire set before the first start.
    use chrono::Timelike;
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning {
            schedule: "0 0 1 1 *",
            ..Tuning::default()
        },
    )
    .await;
    // The daemon sees the group, then stops before the fire.
    let mut daemon = app.spawn_daemon();
    wait_for_log(&app, "daemon started").await;
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();
    let stopped = chrono::Utc::now();
    let fire = (stopped + chrono::Duration::seconds(2))
        .with_nanosecond(0)
        .unwrap();
    app.edit_config(|text| {
        text.replace(
            "schedule = \"0 0 1 1 *\"",
            &format!("schedule = \"{} * * * * *\"", fire.second()),
        )
    });
    // The fire goes by while nothing runs.
    assert_eq!(
        app.emulator.reset_calls(&app.groups[0].jid),
        0,
        "stopped before the fire"
    );
    let fire_went = fire + chrono::Duration::seconds(1);
    while chrono::Utc::now() < fire_went {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Act: a manual rotation, then the daemon again.
    assert_eq!(app.run(&["rotate", "group-0"]).await.status.code(), Some(0));
    std::fs::remove_file(app.daemon_log()).unwrap();
    let mut daemon = app.spawn_daemon();
    let log = wait_for_log(&app, "daemon started").await;
    signal(&daemon, "TERM");
    daemon.wait().await.unwrap();

    // Assert: the fresh link was left alone.
    assert!(log.contains("catching_up=0"), "{log}");
    let rows = app.history().await;
    assert!(
        rows.iter().all(|r| r.trigger != Trigger::CatchUp),
        "{rows:#?}"
    );
    assert_eq!(app.emulator.reset_calls(&app.groups[0].jid), 1);
}
