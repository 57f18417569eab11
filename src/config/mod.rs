//! The configuration: the TOML file parsed into typed, validated values.
//!
//! Everything is checked before anything runs (unknown keys, types, schedules,
//! zones, JIDs, references between tables, tokens) and every problem is
//! reported at once, each naming its key, its line and the bad value.

mod raw;
mod validate;

use crate::schedule::Schedule;
use crate::secret::Token;
use crate::whatsapp::Jid;
use chrono_tz::Tz;
use raw::RawConfig;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config is read from when neither `--config` nor
/// `INVITE_ROTATOR_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/invite-rotator/config.toml";
/// RyzeAPI's public base URL.
pub const DEFAULT_BASE_URL: &str = "https://ryzeapi.cloud/api";
/// The history database's default location (systemd's `StateDirectory`).
pub const DEFAULT_DATABASE_PATH: &str = "/var/lib/invite-rotator/history.db";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// How to reach RyzeAPI.
    pub api: ApiSettings,
    /// The request budget per token.
    pub rate_limit: RateLimitSettings,
    /// How failed calls are retried.
    pub retry: RetryPolicy,
    /// Where the history lives.
    pub database_path: PathBuf,
    /// RyzeAPI instances, each with its token.
    pub instances: Vec<Instance>,
    /// The groups to rotate.
    pub groups: Vec<Group>,
    /// `[metrics] listen`: where `/metrics` and `/healthz` are served (off if none).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[[hook]]`: what is told of each rotation.
    pub hooks: Vec<Hook>,
    /// Things that are allowed but unwise (an inline token); shown by `check`
    /// and logged at start.
    pub warnings: Vec<String>,
}

/// `[api]`.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Base URL, such as `https://ryzeapi.cloud/api`; plain http only to loopback.
    pub base_url: reqwest::Url,
    /// Timeout of one HTTP call, connection included.
    pub timeout: Duration,
}

/// `[rate_limit]`.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Calls per minute per token, as the API counts them.
    pub requests_per_minute: u32,
    /// Rotations in flight at once (an addition to the contract).
    pub max_concurrent: usize,
}

/// `[retry]`: exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Reset calls per rotation at most (and reads of the link, counted apart).
    pub max_attempts: u32,
    /// The first backoff's ceiling.
    pub backoff_initial: Duration,
    /// No backoff is longer than this.
    pub backoff_max: Duration,
    /// After a reset that got no reply (timeout, cut connection), how long to
    /// wait before reading the link back: the server may still be working on
    /// it. Not a key of its own: one `api.timeout`.
    pub read_back_delay: Duration,
}

/// One `[[instance]]`.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The RyzeAPI instance name (a path parameter).
    pub name: String,
    /// Its token; instances that share a token share a rate budget.
    pub token: Token,
}

/// One `[[group]]`, with `[defaults]` applied.
#[derive(Debug, Clone)]
pub struct Group {
    /// Unique name, used by the CLI and the history.
    pub name: String,
    /// The instance that administers it.
    pub instance: String,
    /// Its JID.
    pub jid: Jid,
    /// When it rotates.
    pub schedule: Schedule,
    /// The zone the schedule is read in.
    pub timezone: Tz,
    /// The stable per-group delay added to each fire time (at most this much).
    pub jitter: Duration,
    /// Whether a fire missed while the daemon was down is made up at start.
    pub catch_up: bool,
}

/// One `[[hook]]`: told of rotations as they end.
#[derive(Debug, Clone)]
pub struct Hook {
    /// `name`, or `hook[N]`; for logs.
    pub name: String,
    /// A digest of the target (URL or command line): names the hook in the
    /// outbox, so that reordering hooks keeps deliveries with their target.
    pub key: String,
    /// What it does.
    pub action: HookAction,
    /// `on` holds `success`.
    pub on_success: bool,
    /// `on` holds `failure` (failed, or an outcome that stayed unknown).
    pub on_failure: bool,
    /// `groups`: only these (all if none).
    pub groups: Option<Vec<String>>,
    /// `timeout`: of one delivery.
    pub timeout: Duration,
}

impl Hook {
    /// Whether this hook wants to hear of a rotation of `group` that ended `succeeded`.
    pub fn wants(&self, group: &str, succeeded: bool) -> bool {
        let event = if succeeded {
            self.on_success
        } else {
            self.on_failure
        };
        event
            && self
                .groups
                .as_ref()
                .is_none_or(|only| only.iter().any(|g| g == group))
    }
}

/// What a hook does.
#[derive(Debug, Clone)]
pub enum HookAction {
    /// POST the rotation as JSON to `url`, signed with `secret` if set.
    Webhook {
        /// Where.
        url: reqwest::Url,
        /// HMAC-SHA256 key of the `X-Signature` header.
        secret: Option<Token>,
    },
    /// Run a program with the rotation in environment variables.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
}

/// What a config file can be wrong about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the line, the key and the value.
        message: String,
    },
    /// Values that parse but are not acceptable; all of them, not just the first.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Invalid>),
}

/// One invalid value.
#[derive(Debug)]
pub struct Invalid {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// The key, such as `group[2].schedule`.
    pub key: String,
    /// What is wrong, quoting the bad value (never a token).
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{line}: {}: {}",
                self.path.display(),
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.path.display(), self.key, self.message),
        }
    }
}

/// Whether [`Config::load`] resolves tokens. `history` reads only the database
/// path and must work for an auditor who does not hold the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    /// Read every token (env var or file); a missing one is an error.
    Resolve,
    /// Leave tokens unread (they become empty).
    Skip,
}

impl Config {
    /// Reads and validates the config at `path`. An inline `token` in a file
    /// that group or others may read gets a warning naming the file.
    pub fn load(path: &Path, tokens: Tokens) -> Result<Config, ConfigError> {
        let read = || -> std::io::Result<(String, u32)> {
            let mut file = std::fs::File::open(path)?;
            let mode = file.metadata()?.permissions().mode();
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            Ok((text, mode))
        };
        let (text, mode) = read().map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| syntax_error(&e, &text, path))?;
        validate::validate(raw, &text, path, tokens, Some(mode))
    }

    /// Validates config text; `path` names the file in messages and anchors
    /// relative `token_file` paths.
    pub fn parse(text: &str, path: &Path, tokens: Tokens) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(&e, text, path))?;
        validate::validate(raw, text, path, tokens, None)
    }

    /// The group called `key`, or whose JID is `key`.
    pub fn find_group(&self, key: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.name == key)
            .or_else(|| self.groups.iter().find(|g| g.jid.as_str() == key))
    }
}

/// A TOML error as line, key and message. toml's own text quotes the source
/// line, which may hold an inline token, so it is never shown.
fn syntax_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let message = e.message().trim_end().to_owned();
    let Some(span) = e.span() else {
        return ConfigError::Syntax {
            path: path.to_owned(),
            message,
        };
    };
    let start = span.start.min(text.len());
    let line = text.as_bytes()[..start]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    // The key of that line (what stands before `=`), never its value.
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.\"'[] ".contains(c))
        });
    // serde quotes the bad value ("invalid type: integer `123`, expected a
    // string"); a token written unquoted would be shown. Keep the kind only.
    let about_token = key.is_some_and(|k| k.trim_matches(['"', '\'']).ends_with("token"))
        || text.get(span).is_some_and(|s| s.contains("token"));
    let message = if about_token {
        without_value(&message)
    } else {
        message
    };
    let message = match key {
        Some(key) => format!("line {line}: {key}: {message}"),
        None => format!("line {line}: {message}"),
    };
    ConfigError::Syntax {
        path: path.to_owned(),
        message,
    }
}

/// A parser message without the value it may quote: "invalid type: integer
/// `123`, expected a string" becomes "invalid type: integer, expected a string".
fn without_value(message: &str) -> String {
    match message.find("expected") {
        Some(at) => {
            let head = message[..at].split(['`', '"']).next().unwrap_or_default();
            match head.trim_end_matches([',', ' ', '\n']) {
                "" => message[at..].to_owned(),
                head => format!("{head}, {}", &message[at..]),
            }
        }
        None => "invalid value (not shown: it may be a token)".to_owned(),
    }
}

#[cfg(test)]
mod tests;
