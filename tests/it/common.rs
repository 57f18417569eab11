//! The helpers every test module shares: `spawn_app` (an emulator on port 0,
//! a fresh database in a temp dir, and a config that points one at the
//! other), `wait_until`, `free_port`, `fast_api`, and in [`events`] a daemon
//! that receives RyzeAPI's events.

pub mod events;
pub mod node;

use invite_rotator::config::{Config, Database, Purpose};
use invite_rotator::emulator::{Emulator, EmulatorOptions, Membership, RunningEmulator};
use invite_rotator::store::{HistoryQuery, Rotation, Status, Store};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// A token distinctive enough to grep for.
pub const TOKEN: &str = "tok-SECRET-7f3a9c1e";
pub const TOKEN_VAR: &str = "IR_TEST_TOKEN";
pub const INSTANCE: &str = "sales";

pub struct TestApp {
    pub emulator: Emulator,
    /// Held, not read: dropping it stops the emulator.
    #[allow(dead_code)]
    pub server: RunningEmulator,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The SQLite file (on PostgreSQL, where it would be: never created).
    pub db_path: PathBuf,
    /// The history database, as the config names it.
    pub database: Database,
    pub groups: Vec<TestGroup>,
}

/// Which database a test's history is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named test (an `async fn(Backend)`) on SQLite and on a real
/// PostgreSQL: `NAME::on_sqlite`, `NAME::on_postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name($crate::common::Backend::Postgres).await;
            }
        }
    )*};
}
pub(crate) use on_both_backends;

#[derive(Clone, Debug)]
pub struct TestGroup {
    pub name: String,
    pub jid: String,
}

/// How a test group exists on the emulator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Setup {
    Admin,
    Member,
    /// In the config, unknown to the API (left or deleted).
    Gone,
}

/// An emulator that never rate-limits a test (the client paces itself far
/// below this).
pub fn fast_api() -> EmulatorOptions {
    EmulatorOptions {
        requests_per_minute: 60_000,
        ..EmulatorOptions::default()
    }
}

/// Polls `done` every 50 ms until it holds; panics after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + limit;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port free a moment ago, for a config that names its own listener (a
/// subprocess binds it itself). In process, bind port 0 and hand the
/// listener over instead.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

pub fn jid(i: usize) -> String {
    format!("1203634{i:011}@g.us")
}

/// Extra `[api]`/`[retry]`/`[rate_limit]` settings for a test.
pub struct Tuning {
    pub timeout: &'static str,
    pub requests_per_minute: u32,
    pub max_attempts: u32,
    pub max_concurrent: u32,
    pub schedule: &'static str,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            timeout: "2s",
            requests_per_minute: 6000,
            max_attempts: 5,
            max_concurrent: 16,
            schedule: "0 3 * * *",
        }
    }
}

pub async fn spawn_app(setups: &[Setup], options: EmulatorOptions, tuning: Tuning) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = Database::Sqlite(dir.path().join("state/history.db"));
    spawn_app_in(dir, database, setups, options, tuning).await
}

/// As [`spawn_app`], the history on `backend`; `None` (the test then
/// passes, after one line) when PostgreSQL is asked for and not here.
pub async fn spawn_app_on(
    backend: Backend,
    setups: &[Setup],
    options: EmulatorOptions,
    tuning: Tuning,
) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = match backend {
        Backend::Sqlite => Database::Sqlite(dir.path().join("state/history.db")),
        Backend::Postgres => crate::pg::database().await?,
    };
    Some(spawn_app_in(dir, database, setups, options, tuning).await)
}

async fn spawn_app_in(
    dir: tempfile::TempDir,
    database: Database,
    setups: &[Setup],
    options: EmulatorOptions,
    tuning: Tuning,
) -> TestApp {
    let emulator = Emulator::new(options);
    emulator.add_instance(INSTANCE, TOKEN);
    let mut groups = Vec::new();
    for (i, setup) in setups.iter().enumerate() {
        let g = TestGroup {
            name: format!("group-{i}"),
            jid: jid(i),
        };
        match setup {
            Setup::Admin => drop(emulator.add_group(INSTANCE, &g.jid, Membership::Admin)),
            Setup::Member => drop(emulator.add_group(INSTANCE, &g.jid, Membership::Member)),
            Setup::Gone => {}
        }
        groups.push(g);
    }
    let server = emulator.clone().spawn().await.expect("emulator starts");
    let db_path = dir.path().join("state/history.db");
    let database_keys = match &database {
        Database::Sqlite(path) => format!("path = \"{}\"", path.display()),
        Database::Postgres(pg) => format!("url = \"{}\"", pg.url),
    };
    let mut text = format!(
        r#"[api]
base_url = "{base}"
timeout = "{timeout}"

[rate_limit]
requests_per_minute = {rpm}
max_concurrent = {conc}

[retry]
max_attempts = {attempts}
backoff_initial = "10ms"
backoff_max = "50ms"

[database]
{database_keys}

[[instance]]
name = "{INSTANCE}"
token_env = "{TOKEN_VAR}"
"#,
        base = server.base_url(),
        timeout = tuning.timeout,
        rpm = tuning.requests_per_minute,
        conc = tuning.max_concurrent,
        attempts = tuning.max_attempts,
    );
    for g in &groups {
        text.push_str(&format!(
            "\n[[group]]\nname = \"{}\"\ninstance = \"{INSTANCE}\"\njid = \"{}\"\nschedule = \"{}\"\n",
            g.name, g.jid, tuning.schedule
        ));
    }
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, text).expect("config written");
    TestApp {
        emulator,
        server,
        dir,
        config_path,
        db_path,
        database,
        groups,
    }
}

impl TestApp {
    /// Rewrites the config file with `edit` (to add a table or a key).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_path).expect("config reads");
        std::fs::write(&self.config_path, edit(text)).expect("config written");
    }

    /// The config, loaded as the binary would (with the test token in the env).
    pub fn config(&self) -> Config {
        // SAFETY: every test sets this variable to the same value.
        unsafe { std::env::set_var(TOKEN_VAR, TOKEN) };
        Config::load(&self.config_path, Purpose::Run).expect("test config is valid")
    }

    /// The config and an engine on it, as `rotate` builds them.
    pub async fn engine(&self) -> (Config, invite_rotator::engine::Engine) {
        let config = self.config();
        let engine = invite_rotator::engine::Engine::new(&config, self.store().await)
            .expect("engine builds");
        (config, engine)
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.database).await.expect("store opens")
    }

    /// Runs the real binary with this app's config; stdin closed.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    /// As [`TestApp::run`], with extra environment variables (`FAILPOINTS`).
    /// Panics if the output shows the token.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env(TOKEN_VAR, TOKEN)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("binary runs");
        for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !shows_token(bytes),
                "the token appears in the {name} of {args:?}"
            );
        }
        // Logs never show a live code (stdout is the command's output: the
        // history, the table of `rotate`, which are for the operator).
        self.assert_no_code_in(&out.stderr, &format!("the log of {args:?}"));
        out
    }

    /// Starts the daemon (`run`) with this app's config; its log is appended
    /// to [`TestApp::daemon_log`] (a file, so a chatty daemon never blocks on a
    /// full pipe).
    pub fn spawn_daemon(&self) -> tokio::process::Child {
        self.spawn_daemon_with(&[])
    }

    /// As [`TestApp::spawn_daemon`], with extra environment variables.
    pub fn spawn_daemon_with(&self, env: &[(&str, &str)]) -> tokio::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.daemon_log())
            .expect("daemon log opens");
        tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("run")
            .env(TOKEN_VAR, TOKEN)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("daemon starts")
    }

    /// Where [`TestApp::spawn_daemon`] writes the daemon's log.
    pub fn daemon_log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The whole history, read the way an auditor would (read-only, beside a
    /// running daemon). Empty while the daemon is still creating the database.
    pub async fn history(&self) -> Vec<Rotation> {
        if self.database.sqlite_path().is_some_and(|p| !p.exists()) {
            return Vec::new();
        }
        let Ok(store) = Store::connect_read_only(&self.database).await else {
            return Vec::new();
        };
        store
            .history(&HistoryQuery::default())
            .await
            .unwrap_or_default()
    }

    /// Polls the history until `done` holds; panics after `limit`. Polling, not
    /// sleeping: the test goes on as soon as the daemon has done its part.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: std::time::Duration,
        done: impl Fn(&[Rotation]) -> bool,
    ) {
        let give_up = tokio::time::Instant::now() + limit;
        loop {
            if done(&self.history().await) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "gave up waiting for {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The whole history of one group, oldest first.
    pub async fn history_of(&self, store: &Store, group: &TestGroup) -> Vec<Rotation> {
        let q = HistoryQuery {
            group: Some(group.name.clone()),
            ..HistoryQuery::default()
        };
        store.history(&q).await.expect("history reads")
    }

    /// Asserts the history of `group` accounts for every code the API issued:
    /// each code the emulator issued is a `new_invite_code`, in the order
    /// they were issued, none invented, and each succeeded rotation's old
    /// code is the code before it.
    pub async fn assert_chain_complete(&self, store: &Store, group: &TestGroup) {
        let chain = self.emulator.code_chain(&group.jid);
        let mut rows = self.history_of(store, group).await;
        // In the order the codes were issued: a link changed outside while
        // a rotation was in flight is recorded after it, issued before it.
        rows.sort_by(|a, b| (&a.finished_at, a.id).cmp(&(&b.finished_at, b.id)));
        let issued: Vec<String> = rows
            .iter()
            .filter_map(|r| r.new_invite_code.clone())
            .collect();
        assert_eq!(
            issued,
            chain.iter().skip(1).cloned().collect::<Vec<_>>(),
            "{}: history's new codes differ from the codes the API issued",
            group.name
        );
        for r in rows.iter().filter(|r| r.status == Status::Succeeded) {
            let new = r
                .new_invite_code
                .as_ref()
                .expect("a success has a new code");
            let at = chain
                .iter()
                .position(|c| c == new)
                .expect("issued code is in the chain");
            assert_eq!(
                r.old_invite_code.as_ref(),
                Some(&chain[at - 1]),
                "{}: old code is not the one before",
                group.name
            );
        }
    }
}

fn shows_token(bytes: &[u8]) -> bool {
    bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes())
}

impl TestApp {
    /// Panics if `bytes` (a log) holds any code the emulator ever issued.
    pub fn assert_no_code_in(&self, bytes: &[u8], what: &str) {
        let text = String::from_utf8_lossy(bytes);
        for code in self.emulator.issued_codes() {
            assert!(
                !text.contains(&code),
                "the live code {code} appears in {what}"
            );
        }
    }
}

impl Drop for TestApp {
    /// Every file a test leaves (the database and its WAL files, daemon logs,
    /// the config) is searched for the token before the directory goes, and
    /// every log for the codes the emulator issued.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let mut dirs = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    assert!(
                        !shows_token(&bytes),
                        "the token appears in {}",
                        path.display()
                    );
                    if path.extension().is_some_and(|e| e == "log") {
                        self.assert_no_code_in(&bytes, &path.display().to_string());
                    }
                }
            }
        }
    }
}

/// Sends a signal to a child process by name (`TERM`, `HUP`).
pub fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("the child is running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "kill -{name} {pid} failed"
    );
}

/// Set by `.ci/run`, which installs every real part the tests use: a test
/// that finds one missing then fails instead of skipping.
pub const REQUIRE_PARTS_VAR: &str = "INVITE_ROTATOR_REQUIRE_PARTS";

/// A program from a Debian package that a test needs (`mandoc`, `zbarimg`):
/// its path, or `None` after one line naming the package to install, so that
/// `cargo test` passes on a bare machine. Under `.ci/run` a missing part fails.
pub fn real_part(program: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os(REQUIRE_PARTS_VAR).is_none(),
            "{program} is missing, and {REQUIRE_PARTS_VAR} says every part is installed (apt-get install {package})"
        );
        eprintln!("skipped: this test needs {program}; apt-get install {package}");
    }
    found
}
