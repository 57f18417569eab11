//! The command line, as clap sees it. The commands themselves are in [`crate::commands`].

use crate::config::defaults;
use crate::store::Status;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod audit;
mod join;

pub use audit::AuditCommand;
pub use join::{JoinCommand, ParseExpiryError, QrFormat, parse_expiry};

/// `--version`: the crate's version and the git revision it was built from
/// ("unknown" outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("INVITE_ROTATOR_REVISION"),
    ")"
);

/// Rotates WhatsApp group invite links through RyzeAPI on a schedule and keeps
/// an audit history of every code.
#[derive(Debug, Parser)]
#[command(
    name = "invite-rotator",
    version = VERSION,
    about,
    max_term_width = 100
)]
pub struct Cli {
    /// The config file, for the commands that read one (also accepted after
    /// the command's name).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log lines as text for people or JSON for log shippers (also accepted
    /// after the command's name).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--config` and `--log-format`, for the commands that read the config.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// The config file [default: $INVITE_ROTATOR_CONFIG, else
    /// /etc/invite-rotator/config.toml].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `--log-format`, for the commands that log.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct LogArgs {
    /// Log lines as text for people or JSON for log shippers [default: text;
    /// under systemd, the journal].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

pub use crate::telemetry::LogFormat;

/// The environment variable naming the config when `--config` does not.
pub const CONFIG_VAR: &str = "INVITE_ROTATOR_CONFIG";

impl Cli {
    /// The log format: the command's `--log-format`, else the one before it,
    /// else text.
    pub fn log_format(&self) -> LogFormat {
        let own = match &self.command {
            Command::Run(c)
            | Command::Check { common: c, .. }
            | Command::Rotate { common: c, .. }
            | Command::Status { common: c, .. } => c.log.log_format,
            Command::History(h) => h.common.log.log_format,
            Command::Events(e) => e.common().log.log_format,
            Command::Join(j) => j.common().log.log_format,
            Command::Audit(a) => a.log().log_format,
            Command::Db(DbCommand::Copy { common, .. }) => common.log.log_format,
            Command::Demo { log, .. } | Command::Emulator { log, .. } => log.log_format,
            Command::Completions { .. } | Command::Manpage { .. } => None,
        };
        own.or(self.log_format).unwrap_or(LogFormat::Text)
    }

    /// The config file of a command that reads one: its own `--config`,
    /// else the one before the command, else `$INVITE_ROTATOR_CONFIG`, else
    /// the default. `None` for a command that reads no config.
    pub fn config_path(&self) -> Option<PathBuf> {
        let own = match &self.command {
            Command::Run(c)
            | Command::Check { common: c, .. }
            | Command::Rotate { common: c, .. }
            | Command::Status { common: c, .. } => c,
            Command::History(h) => &h.common,
            Command::Events(e) => e.common(),
            Command::Join(j) => j.common(),
            Command::Audit(a) => a.common()?,
            Command::Db(DbCommand::Copy { common, .. }) => common,
            _ => return None,
        };
        Some(
            own.config
                .clone()
                .or_else(|| self.config.clone())
                .or_else(|| std::env::var_os(CONFIG_VAR).map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(defaults::CONFIG_PATH)),
        )
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: rotate every group on its schedule until SIGTERM or SIGINT;
    /// SIGHUP reloads the config.
    Run(ConfigArgs),
    /// The quick tour: the daemon for real against the built-in emulator, then
    /// the history, which is kept for you to read. No config, no network.
    Demo {
        /// How long the daemon runs, in seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Validate the config (tokens and database path included) and show each
    /// group's next rotations.
    Check {
        /// How many upcoming rotation times to show per group.
        #[arg(long, default_value_t = 3)]
        next: usize,
        /// `table` for people, `json` for scripts (JSON Lines).
        #[arg(long, value_enum, default_value_t = CheckFormat::Table)]
        format: CheckFormat,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Rotate groups now, through the same path as the daemon (rate limit,
    /// retries, history); exits 1 when a rotation does not succeed.
    Rotate {
        /// Every group in the config.
        #[arg(long, conflicts_with = "groups")]
        all: bool,
        /// Groups by name or JID.
        groups: Vec<String>,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Print the audit history, oldest first.
    History(HistoryArgs),
    /// One line per group: its last rotation, when it rotates next, and
    /// whether it is overdue or failing; exits 1 when a group is either.
    Status {
        /// `table` for people, `json` for scripts (JSON Lines).
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// RyzeAPI's events: what arrived, and telling RyzeAPI where to post.
    #[command(subcommand)]
    Events(EventsCommand),
    /// The history database itself: moving a SQLite history into PostgreSQL.
    #[command(subcommand)]
    Db(DbCommand),
    /// Join links: stable URLs (served by `run` with `[join]`) that lead to a
    /// group's live invite through every rotation.
    #[command(subcommand)]
    Join(JoinCommand),
    /// The tamper-evident ledger: verify the history, export a bundle for
    /// auditors, make the key that signs checkpoints.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a shell completion script to stdout, such as
    /// `invite-rotator completions bash > invite-rotator.bash`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write every page to a
    /// directory: `invite-rotator manpage | man -l -`.
    Manpage {
        /// Write invite-rotator.1 and a page per command (invite-rotator-run.1,
        /// ...) into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run the built-in RyzeAPI emulator, to try a config without touching real
    /// groups. It accepts any instance and group JID; the first token used
    /// for an instance owns it.
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
        listen: SocketAddr,
        /// Per-token limit, as the real API counts it.
        #[arg(long, default_value_t = 100)]
        requests_per_minute: u32,
        /// Delay added to every reply, such as `300ms`.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        latency: Duration,
        /// The `data` shape of the `group.flow` events it sends: whatsmeow's
        /// `GroupInfo`, or the flattened one (RyzeAPI's is undocumented).
        #[arg(long, value_enum, default_value_t = EventShapeArg::Whatsmeow)]
        event_shape: EventShapeArg,
        #[command(flatten)]
        log: LogArgs,
    },
}

/// `db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy a SQLite history (every table, ids kept) into the configured
    /// PostgreSQL database (`database.url`), which must hold no rotation
    /// yet; the counts of every table are checked before the copy commits.
    Copy {
        /// The SQLite history to copy (such as /var/lib/invite-rotator/history.db).
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        #[command(flatten)]
        common: ConfigArgs,
    },
}

/// `events ...`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The events received, newest last: when, instance, group, kind, and
    /// what was done; `--format json` adds the raw `data` as RyzeAPI sent it
    /// (token removed).
    List {
        /// Only the newest N.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// `table` for people, `json` for scripts (JSON Lines).
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Upsert invite-rotator's webhook (label `invite-rotator`) at RyzeAPI
    /// for every instance, as `run` does at start; exits 1 when any instance
    /// failed.
    Register {
        #[command(flatten)]
        common: ConfigArgs,
    },
}

impl EventsCommand {
    /// Its `--config` and `--log-format`.
    pub fn common(&self) -> &ConfigArgs {
        match self {
            EventsCommand::List { common, .. } | EventsCommand::Register { common } => common,
        }
    }
}

/// `emulator --event-shape`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventShapeArg {
    /// `{"JID": ..., "Sender": ..., "Leave": [...], "NewInviteLink": ...}`.
    Whatsmeow,
    /// `{"groupJid": ..., "action": "remove", "participants": [...], ...}`.
    Flat,
}

/// Output of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Aligned columns.
    Table,
    /// JSON Lines: `{"group": NAME, "next": [RFC 3339 times]}`.
    Json,
}

/// Output of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// Aligned columns.
    Table,
    /// JSON Lines, one object per group (keys in the README).
    Json,
}

pub use crate::report::Format as HistoryFormat;

/// Filters and format of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this group (its name).
    #[arg(long)]
    pub group: Option<String>,
    /// Started at or after: RFC 3339, or a span back from now such as `7d`, `12h`.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Started before: RFC 3339, or a span back from now.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Only rotations in this status.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<Status>,
    /// Only the newest N (still printed oldest first).
    #[arg(long)]
    pub limit: Option<u64>,
    /// `table`, `json` (JSON Lines) or `csv`.
    #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
    pub format: HistoryFormat,
    /// Read this database instead of the config's `database.path` (no config needed).
    #[arg(long, value_name = "PATH")]
    pub database: Option<PathBuf>,
    #[command(flatten)]
    pub common: ConfigArgs,
}

pub use crate::report::time::{ParseTimeError, parse_absolute, parse_time};

/// An address to listen on, such as `127.0.0.1:8080`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, ParseListenError> {
    s.parse().map_err(|source| ParseListenError {
        text: s.to_owned(),
        source,
    })
}

/// Why a flag's text is not an address to listen on.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an address to listen on, such as 127.0.0.1:8080")]
pub struct ParseListenError {
    text: String,
    source: std::net::AddrParseError,
}

/// A duration for a flag: `300ms`, `2s`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, ParseDurationError> {
    humantime::parse_duration(s).map_err(|source| ParseDurationError {
        text: s.to_owned(),
        source,
    })
}

/// Why a flag's text is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a duration such as 300ms, 2s or 1m")]
pub struct ParseDurationError {
    text: String,
    source: humantime::DurationError,
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of pending, succeeded, failed, unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_flag_says_what_was_given_and_what_is_wanted() {
        let said = |e: &dyn std::error::Error| e.to_string();
        assert_eq!(
            said(&parse_listen("x").unwrap_err()),
            "\"x\" is not an address to listen on, such as 127.0.0.1:8080"
        );
        assert_eq!(
            said(&parse_duration("x").unwrap_err()),
            "\"x\" is not a duration such as 300ms, 2s or 1m"
        );
        assert_eq!(
            said(&parse_expiry("2000-01-01").unwrap_err()),
            "\"2000-01-01\" is in the past"
        );
        assert_eq!(
            said(&parse_expiry("x").unwrap_err()),
            "\"x\" is not a time: give a date (2027-01-31), a date and time in UTC (2027-01-31T18:00), RFC 3339 or a span ahead from now (30d, 12h)"
        );
        assert_eq!(
            said(&parse_time("x").unwrap_err()),
            "\"x\" is not a time: give a date (2026-12-01), a date and time in UTC (2026-12-01T10:00), RFC 3339 (2026-12-01T10:00:00-03:00) or a span back from now (7d, 12h)"
        );
        assert_eq!(
            said(&parse_time("300000000y").unwrap_err()),
            "\"300000000y\" is too long a span"
        );
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
