//! `join ...`: the join links' commands, as clap sees them.

use super::{ConfigArgs, StatusFormat, parse_absolute};
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;

/// `join ...`.
#[derive(Debug, Subcommand)]
pub enum JoinCommand {
    /// Make a join link that follows GROUP's live invite; prints its URL
    /// ({public_url}/j/{random slug}).
    Create {
        /// The group: its name or JID.
        group: String,
        /// The link's name, for `join list` and `join revoke` (unique)
        /// [default: GROUP-N].
        #[arg(long)]
        name: Option<String>,
        /// When it stops working: a time (2027-01-31, which is its start at
        /// 00:00 UTC; 2027-01-31T18:00 UTC; RFC 3339) or a span from now (30d).
        #[arg(long, value_name = "TIME|SPAN", value_parser = parse_expiry)]
        expires: Option<DateTime<Utc>>,
        /// How many times it works (each a click on its Join button).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_uses: Option<u32>,
        /// Who was given it, or what for.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Also draw it as a QR code: `png` or `svg` (to --output), or
        /// `terminal` (to stdout).
        #[arg(long, value_enum)]
        qr: Option<QrFormat>,
        /// The QR code's file (with `--qr png|svg`): written 0600 (the slug
        /// in it is the credential) to a new file beside it, renamed over it
        /// once the link is made; a symlink there is refused.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// The join links: name, group, URL, uses, limits, state.
    List {
        /// `table` for people, `json` for scripts (JSON Lines).
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Withdraw a join link: it answers 410 from now on (no restart).
    Revoke {
        /// The link's name.
        name: String,
        #[command(flatten)]
        common: ConfigArgs,
    },
}

impl JoinCommand {
    /// Its `--config` and `--log-format`.
    pub fn common(&self) -> &ConfigArgs {
        match self {
            JoinCommand::Create { common, .. }
            | JoinCommand::List { common, .. }
            | JoinCommand::Revoke { common, .. } => common,
        }
    }
}

/// `join create --qr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QrFormat {
    /// A PNG image, for print.
    Png,
    /// An SVG image, for print at any size.
    Svg,
    /// Drawn on the terminal.
    Terminal,
}

/// `join create --expires`: a time as [`parse_time`] takes it, or a span
/// ahead from now (`30d`, `12h`); never in the past.
pub fn parse_expiry(s: &str) -> Result<DateTime<Utc>, ParseExpiryError> {
    let text = || s.to_owned();
    let at = match parse_absolute(s) {
        Some(t) => t,
        None => {
            let span =
                humantime::parse_duration(s).map_err(|source| ParseExpiryError::NotATime {
                    text: text(),
                    source,
                })?;
            let too_long = |source| ParseExpiryError::TooLong {
                text: text(),
                source,
            };
            let span = chrono::Duration::from_std(span).map_err(|e| too_long(Some(e)))?;
            Utc::now()
                .checked_add_signed(span)
                .ok_or_else(|| too_long(None))?
        }
    };
    if at <= Utc::now() {
        return Err(ParseExpiryError::Past { text: text() });
    }
    Ok(at)
}

/// Why a text is not an expiry for [`parse_expiry`] (each holds the text).
#[derive(Debug, thiserror::Error)]
pub enum ParseExpiryError {
    /// Neither a time nor a span.
    #[error(
        "{text:?} is not a time: give a date (2027-01-31), a date and time in UTC (2027-01-31T18:00), RFC 3339 or a span ahead from now (30d, 12h)"
    )]
    NotATime {
        /// The text.
        text: String,
        /// Why it is not a span.
        source: humantime::DurationError,
    },
    /// A span reaching past the latest time there is.
    #[error("{text:?} is too long a span")]
    TooLong {
        /// The text.
        text: String,
        /// When the span does not even fit in a `chrono::Duration`.
        source: Option<chrono::OutOfRangeError>,
    },
    /// A time already past.
    #[error("{text:?} is in the past")]
    Past {
        /// The text.
        text: String,
    },
}
