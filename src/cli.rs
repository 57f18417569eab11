//! The command line, as clap sees it. The commands themselves are in [`crate::commands`].

use crate::config::defaults;
use crate::store::Status;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The config file.
    #[arg(long, global = true, env = "INVITE_ROTATOR_CONFIG", default_value = defaults::CONFIG_PATH)]
    pub config: PathBuf,
    /// Log lines as text for people or JSON for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: rotate every group on its schedule until SIGTERM or SIGINT;
    /// SIGHUP reloads the config.
    Run,
    /// The quick tour: the daemon for real against the built-in emulator, then
    /// the history. No config, no network.
    Demo {
        /// How long the daemon runs.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Validate the config (tokens included) and show each group's next rotations.
    Check {
        /// How many upcoming rotation times to show per group.
        #[arg(long, default_value_t = 3)]
        next: usize,
        /// `table` for people, `json` for scripts (JSON Lines).
        #[arg(long, value_enum, default_value_t = CheckFormat::Table)]
        format: CheckFormat,
    },
    /// Rotate groups now, through the same path as the daemon (rate limit,
    /// retries, history). Exit 1 if any rotation did not succeed.
    Rotate {
        /// Every group in the config.
        #[arg(long, conflicts_with = "groups")]
        all: bool,
        /// Groups by name or JID.
        #[arg(required_unless_present = "all")]
        groups: Vec<String>,
    },
    /// Print the audit history, oldest first.
    History(HistoryArgs),
    /// One line per group: its last rotation, when it rotates next, and
    /// whether it is overdue or failing. Exit 1 if any group is.
    Status {
        /// `table` for people, `json` for scripts (JSON Lines).
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
    },
    /// Print a shell completion script to stdout, such as
    /// `invite-rotator completions bash > /usr/share/bash-completion/completions/invite-rotator`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `invite-rotator manpage | man -l -`.
    Manpage,
    /// Run the built-in RyzeAPI emulator, to try a config without touching real
    /// groups. It accepts any instance and group JID; the first token used
    /// for an instance owns it.
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Per-token limit, as the real API counts it.
        #[arg(long, default_value_t = 100)]
        requests_per_minute: u32,
        /// Delay added to every reply, such as `300ms`.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        latency: Duration,
    },
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

/// Output of `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    /// Aligned columns.
    Table,
    /// JSON Lines, keys named as the database columns.
    Json,
    /// CSV with a header row of the database column names.
    Csv,
}

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
    #[arg(long)]
    pub database: Option<PathBuf>,
}

/// An RFC 3339 time, or a span back from now (`7d`, `12h`, `30m`).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let span = humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a span such as 7d or 12h"))?;
    let span = chrono::Duration::from_std(span).map_err(|_| format!("{s:?} is too long a span"))?;
    Utc::now()
        .checked_sub_signed(span)
        .ok_or_else(|| format!("{s:?} is too long a span"))
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of pending, succeeded, failed, unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_spans_back_from_now() {
        let t = parse_time("2026-11-27T03:00:00-03:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-27T06:00:00+00:00");
        let week_ago = parse_time("7d").unwrap();
        let expected = Utc::now() - chrono::Duration::days(7);
        assert!((week_ago - expected).num_seconds().abs() < 5);
        assert!(parse_time("last tuesday").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
