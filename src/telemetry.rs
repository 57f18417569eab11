//! Logging, filtered by `RUST_LOG` (default `info`), to one of three places:
//!
//! - under systemd (`$JOURNAL_STREAM` names our stderr), to the journal
//!   itself, with every field a journal field (`journalctl GROUP=vip`) and
//!   the priority following the level;
//! - else to stderr, one line per event, in colour only when stderr is a
//!   terminal and `NO_COLOR` is not set;
//! - or, with `--log-format json`, one JSON object per line on stderr.
//!
//! Times in log fields are written with [`utc`] (RFC 3339, UTC); `status`
//! and `check` show each group's own zone, for people.

use chrono::{DateTime, SecondsFormat, Utc};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (under systemd: journal entries with
    /// structured fields).
    Text,
    /// One JSON object per event.
    Json,
}

/// Where log lines go, as [`init`] decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The systemd journal, natively.
    Journal,
    /// Lines on stderr, coloured or not.
    Stderr {
        /// ANSI colours.
        colour: bool,
    },
    /// JSON lines on stderr.
    Json,
}

/// Where logs should go for `format`, given this process's environment.
pub fn destination(format: LogFormat) -> Destination {
    match format {
        LogFormat::Json => Destination::Json,
        LogFormat::Text if stderr_is_journal() => Destination::Journal,
        LogFormat::Text => Destination::Stderr {
            colour: std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        },
    }
}

/// Installs the global subscriber. Safe to call once per process; if the
/// journal cannot be reached, lines go to stderr without colour.
pub fn init(format: LogFormat) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = |colour: bool| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(colour)
    };
    let registry = tracing_subscriber::registry().with(filter());
    let _ = match destination(format) {
        Destination::Journal => match tracing_journald::layer() {
            Ok(journal) => registry
                .with(
                    journal
                        .with_field_prefix(None)
                        .with_syslog_identifier("invite-rotator".to_owned()),
                )
                .try_init(),
            Err(_) => registry.with(lines(false)).try_init(),
        },
        Destination::Stderr { colour } => registry.with(lines(colour)).try_init(),
        Destination::Json => registry
            .with(lines(false).json().flatten_event(true))
            .try_init(),
    };
}

/// Whether stderr is the stream systemd connected to the journal:
/// `$JOURNAL_STREAM` is `<device>:<inode>` of it (systemd.exec(5)). A child
/// that inherited the variable but not the stream logs to stderr.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let stderr = std::io::stderr();
    let Ok(fd) = stderr.as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// A time as log fields write it: RFC 3339 in UTC (`2026-12-01T21:25:10Z`,
/// milliseconds only when there are fractions of a second).
pub fn utc(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    let format = if t.nanosecond() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Millis
    };
    t.to_rfc3339_opts(format, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn log_times_are_rfc3339_utc() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 21, 25, 10).unwrap();
        assert_eq!(utc(t), "2026-12-01T21:25:10Z");
        assert_eq!(
            utc(t + chrono::Duration::milliseconds(250)),
            "2026-12-01T21:25:10.250Z"
        );
    }
}
