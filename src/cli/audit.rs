//! `audit ...`: the ledger's commands, as clap sees them.

use super::{ConfigArgs, LogArgs, parse_time};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use std::path::PathBuf;

/// `audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write a new Ed25519 signing key for `[audit] signing_key_file` (mode
    /// 0600; an existing file is never overwritten) and print its public
    /// key, which `--public-key FILE` reads back.
    Keygen {
        /// The key's file.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Check the ledger's hash chain, its checkpoints and the rotations
    /// table against each other; name the first discrepancy. Exits 0 when
    /// all holds, 1 otherwise.
    Verify {
        /// A SQLite history to check instead of the config's database (no
        /// config needed).
        #[arg(long, value_name = "PATH", conflicts_with = "bundle")]
        database: Option<PathBuf>,
        /// A bundle from `audit export`, checked offline (needs --public-key).
        #[arg(long, value_name = "FILE", requires = "public_key")]
        bundle: Option<PathBuf>,
        /// The public key checkpoints must be signed with (as `audit keygen`
        /// printed it).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Checkpoints kept outside the database (journal lines, hook
        /// deliveries): the ledger must still reach each one.
        #[arg(long, value_name = "FILE", conflicts_with = "bundle")]
        checkpoint: Vec<PathBuf>,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Write the ledger's entries since TIME (or a span back from now) and
    /// the checkpoints covering them, to a bundle that `audit verify
    /// --bundle` checks offline. Verifies the history and signs its head
    /// first (needs `[audit] signing_key_file`).
    Export {
        /// The first entry's time: RFC 3339, a date, or a span back from now (`30d`).
        #[arg(long, value_name = "TIME|SPAN", value_parser = parse_time)]
        since: DateTime<Utc>,
        /// The bundle's file: written 0600 (it holds codes) to a new file
        /// beside it, then renamed over it; a symlink there is refused.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        common: ConfigArgs,
    },
}

impl AuditCommand {
    /// Its `--config` and `--log-format`; none for `keygen`.
    pub fn common(&self) -> Option<&ConfigArgs> {
        match self {
            AuditCommand::Keygen { .. } => None,
            AuditCommand::Verify { common, .. } | AuditCommand::Export { common, .. } => {
                Some(common)
            }
        }
    }

    /// Its `--log-format`.
    pub fn log(&self) -> &LogArgs {
        match self {
            AuditCommand::Keygen { log, .. } => log,
            AuditCommand::Verify { common, .. } | AuditCommand::Export { common, .. } => {
                &common.log
            }
        }
    }
}
