//! The configuration: the TOML file parsed into typed, validated values.
//!
//! Everything is checked before anything runs (unknown keys, types, schedules,
//! zones, JIDs, references between tables, tokens) and every problem is
//! reported at once, each naming its key, its line and the bad value.

pub(crate) mod defaults;
mod document;
mod raw;
mod validate;

use crate::schedule::Schedule;
use crate::secret::Token;
use crate::whatsapp::Jid;
use chrono_tz::Tz;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// How to reach RyzeAPI.
    pub api: ApiSettings,
    /// The request budget per token.
    pub rate_limit: RateLimitSettings,
    /// How failed calls are retried.
    pub retry: RetryPolicy,
    /// Where the history lives: a SQLite file, or a PostgreSQL database.
    pub database: Database,
    /// `[ha]`: how nodes sharing a PostgreSQL database take turns.
    pub ha: HaSettings,
    /// `[database] keep_calls`: how long the per-call log and delivered hook
    /// notifications are kept; `None` keeps them for good.
    pub keep_calls: Option<Duration>,
    /// RyzeAPI instances, each with its token.
    pub instances: Vec<Instance>,
    /// The groups to rotate.
    pub groups: std::sync::Arc<[Group]>,
    /// `[metrics] listen`: where `/metrics` and `/healthz` are served (off if none).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[[hook]]`: what is told of each rotation.
    pub hooks: Vec<Hook>,
    /// `[events]`: off when absent.
    pub events: Option<EventsSettings>,
    /// `[join]`: join links that survive rotation; off when absent.
    pub join: Option<JoinSettings>,
    /// `[audit] signing_key_file`: the key that signs the ledger's
    /// checkpoints (none: the hash chain alone).
    pub audit_key: Option<std::sync::Arc<crate::checkpoint::AuditKey>>,
    /// `[console]`: the auditors' read-only console; off when absent.
    pub console: Option<ConsoleSettings>,
    /// Things that are allowed but unwise (an inline token); shown by `check`
    /// and logged at start.
    pub warnings: Vec<String>,
}

pub use crate::store::{Database, PostgresSettings};

/// `[ha]`.
#[derive(Debug, Clone)]
pub struct HaSettings {
    /// `lease`: how long the active node's lease lasts unless renewed.
    pub lease: Duration,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            lease: defaults::HA_LEASE,
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Base URL, such as `https://ryzeapi.cloud/api`; plain http only to loopback.
    pub base_url: reqwest::Url,
    /// Timeout of one HTTP call, connection included.
    pub timeout: Duration,
    /// `proxy`: the proxy for outgoing HTTPS calls (RyzeAPI and webhooks),
    /// reached with CONNECT so that it never sees a request. None: no proxy,
    /// whatever the environment says.
    pub proxy: Option<reqwest::Url>,
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
    /// After a reset whose outcome is unknown (no reply, a 5xx, an unreadable
    /// one), how long to wait before reading the link back: the server may
    /// still be applying it. Not a key of its own: one `api.timeout`.
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
    /// What RyzeAPI's events make it do (`rotate_on`, `event_delay`).
    pub events: EventRules,
}

/// Which events rotate a group, and after what quiet period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRules {
    /// `rotate_on` holds `member_removed`: a member removed by an admin.
    pub on_removed: bool,
    /// `rotate_on` holds `member_left`: a member who left by themselves.
    pub on_left: bool,
    /// `event_delay`: the quiet period after a removal before the rotation;
    /// each further removal starts it again, up to 5 minutes after the first.
    pub delay: Duration,
}

impl Default for EventRules {
    fn default() -> Self {
        EventRules {
            on_removed: true,
            on_left: false,
            delay: defaults::EVENT_DELAY,
        }
    }
}

/// `[events]`: RyzeAPI's events, received by webhook and/or WebSocket.
#[derive(Debug, Clone)]
pub struct EventsSettings {
    /// `listen`: where the webhook receiver listens (none: no webhook).
    pub listen: Option<std::net::SocketAddr>,
    /// `public_url`: what RyzeAPI is told to POST to; its path is the one served.
    pub public_url: Option<reqwest::Url>,
    /// The secret RyzeAPI sends as `Authorization: Bearer <secret>`
    /// (`authorization_env` or `authorization_file`).
    pub secret: Option<Token>,
    /// `websocket`: also connect out to `/ws/{instance}`.
    pub websocket: bool,
    /// `keep`: how long raw events are kept; `None` for good.
    pub keep: Option<Duration>,
    /// `max_rotations_per_hour`: the most rotations removals (and
    /// departures) may cause in one group in any hour; scheduled and
    /// manual rotations are not counted nor held back.
    pub max_rotations_per_hour: u32,
}

/// `[console]`: the auditors' read-only console.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// `listen`: where it listens (loopback unless a token is set).
    pub listen: std::net::SocketAddr,
    /// `token_file`'s token: what signs a browser in (required beyond
    /// loopback).
    pub token: Option<Token>,
}

/// `[join]`: the redirector of join links.
#[derive(Debug, Clone)]
pub struct JoinSettings {
    /// `listen`: where the redirector listens (behind a TLS proxy).
    pub listen: std::net::SocketAddr,
    /// `public_url`: what printed links start with (`{public_url}/j/{slug}`).
    pub public_url: reqwest::Url,
}

impl JoinSettings {
    /// The URL of the link `slug`.
    pub fn link(&self, slug: &str) -> String {
        format!(
            "{}/j/{slug}",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
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
    /// `on` holds `checkpoint`: the ledger's signed checkpoints.
    pub on_checkpoint: bool,
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
    /// Everything wrong with the file, in the order of its lines: syntax
    /// errors, unknown keys, wrong types, missing keys, unacceptable values.
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

/// What the config is loaded for, and so how much of it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `run`, `rotate`, `check`: everything they need is checked. Every token
    /// and secret is read (a missing one is an error), and the history
    /// database must be writable where it is (checked without creating it).
    Run,
    /// `history`, `status`: only read the database. Tokens and secrets are
    /// left unread (they become empty), so an auditor who does not hold
    /// them can still read the history.
    Read,
}

impl Config {
    /// Reads and validates the config at `path` for `purpose`. An inline
    /// `token` in a file that group or others may read gets a warning naming
    /// the file.
    pub fn load(path: &Path, purpose: Purpose) -> Result<Config, ConfigError> {
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
        Config::validate(&text, path, purpose, Some(mode))
    }

    /// Validates config text; `path` names the file in messages and anchors
    /// relative `token_file` paths.
    pub fn parse(text: &str, path: &Path, purpose: Purpose) -> Result<Config, ConfigError> {
        Config::validate(text, path, purpose, None)
    }

    fn validate(
        text: &str,
        path: &Path,
        purpose: Purpose,
        mode: Option<u32>,
    ) -> Result<Config, ConfigError> {
        let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            // The structure cannot be trusted past a syntax error.
            return Err(ConfigError::Invalid(document::syntax_errors(
                &syntax, text, path,
            )));
        }
        let mut reader = document::Reader::new(text, path);
        let raw = raw::read(&mut reader, &doc);
        validate::validate(raw, reader, path, purpose, mode)
    }

    /// The group called `key`, or whose JID is `key`.
    pub fn find_group(&self, key: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.name == key)
            .or_else(|| self.groups.iter().find(|g| g.jid.as_str() == key))
    }
}

#[cfg(test)]
mod tests;
