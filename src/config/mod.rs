//! The configuration: the TOML file parsed into typed, validated values.
//!
//! Everything is checked before anything runs (unknown keys, types, schedules,
//! zones, JIDs, references between tables, tokens) and every problem is
//! reported at once, each naming its key, its line and the bad value.

mod raw;

use crate::schedule::Schedule;
use crate::secret::Token;
use crate::whatsapp::Jid;
use chrono_tz::Tz;
use raw::{RawConfig, RawGroup, RawInstance, SpannedStr};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path, tokens: Tokens) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, tokens)
    }

    /// Validates config text; `path` names the file in messages and anchors
    /// relative `token_file` paths.
    pub fn parse(text: &str, path: &Path, tokens: Tokens) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut v = Validator {
            text,
            path,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let config = v.config(raw, tokens);
        if v.errors.is_empty() {
            let mut config = config;
            config.warnings = v.warnings;
            Ok(config)
        } else {
            Err(ConfigError::Invalid(v.errors))
        }
    }

    /// The group called `key`, or whose JID is `key`.
    pub fn find_group(&self, key: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.name == key)
            .or_else(|| self.groups.iter().find(|g| g.jid.as_str() == key))
    }
}

/// Collects every error while building a [`Config`]; values that fail are
/// replaced by placeholders so that validation goes on.
struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    errors: Vec<Invalid>,
    warnings: Vec<String>,
}

impl Validator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error<T>(&mut self, key: impl Into<String>, at: &Spanned<T>, message: impl Into<String>) {
        let line = Some(self.line_of(at.span().start));
        self.errors.push(Invalid {
            path: self.path.to_owned(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, value: Option<&SpannedStr>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                let message = format!(
                    "{:?} is not a duration such as \"30s\", \"5m\", \"2h\": {e}",
                    value.get_ref()
                );
                self.error(key, value, message);
                default
            }
        }
    }

    fn positive(&mut self, key: &str, value: Option<&Spanned<i64>>, default: u32) -> u32 {
        let Some(value) = value else { return default };
        match u32::try_from(*value.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => {
                let message = format!(
                    "must be a whole number of at least 1, got {}",
                    value.get_ref()
                );
                self.error(key, value, message);
                default
            }
        }
    }

    fn timezone(&mut self, key: &str, value: &SpannedStr) -> Tz {
        value.get_ref().parse::<Tz>().unwrap_or_else(|_| {
            let message = format!(
                "{:?} is not an IANA time zone such as \"Europe/Berlin\" or \"UTC\"",
                value.get_ref()
            );
            self.error(key, value, message);
            Tz::UTC
        })
    }

    fn config(&mut self, raw: RawConfig, tokens: Tokens) -> Config {
        let api = ApiSettings {
            base_url: self.base_url(raw.api.base_url.as_ref()),
            timeout: self.duration(
                "api.timeout",
                raw.api.timeout.as_ref(),
                Duration::from_secs(30),
            ),
        };
        if api.timeout.is_zero() {
            if let Some(at) = raw.api.timeout.as_ref() {
                self.error("api.timeout", at, "must be longer than 0s");
            }
        }
        let rate_limit = RateLimitSettings {
            requests_per_minute: self.positive(
                "rate_limit.requests_per_minute",
                raw.rate_limit.requests_per_minute.as_ref(),
                100,
            ),
            max_concurrent: self.positive(
                "rate_limit.max_concurrent",
                raw.rate_limit.max_concurrent.as_ref(),
                16,
            ) as usize,
        };
        let retry = RetryPolicy {
            max_attempts: self.positive("retry.max_attempts", raw.retry.max_attempts.as_ref(), 5),
            backoff_initial: self.duration(
                "retry.backoff_initial",
                raw.retry.backoff_initial.as_ref(),
                Duration::from_secs(2),
            ),
            backoff_max: self.duration(
                "retry.backoff_max",
                raw.retry.backoff_max.as_ref(),
                Duration::from_secs(300),
            ),
        };
        if retry.backoff_max < retry.backoff_initial {
            if let Some(at) = raw.retry.backoff_max.as_ref() {
                self.error(
                    "retry.backoff_max",
                    at,
                    "must not be shorter than retry.backoff_initial",
                );
            }
        }
        let database_path = match raw.database.path {
            Some(p) if p.get_ref().trim().is_empty() => {
                self.error("database.path", &p, "must not be empty");
                PathBuf::new()
            }
            Some(p) => PathBuf::from(p.into_inner()),
            None => PathBuf::from(DEFAULT_DATABASE_PATH),
        };
        let defaults = Defaults {
            timezone: match raw.defaults.timezone.as_ref() {
                Some(tz) => self.timezone("defaults.timezone", tz),
                None => Tz::UTC,
            },
            jitter: self.duration(
                "defaults.jitter",
                raw.defaults.jitter.as_ref(),
                Duration::ZERO,
            ),
            catch_up: raw.defaults.catch_up.unwrap_or(true),
        };
        let instances = self.instances(raw.instance, tokens);
        let groups = self.groups(raw.group, &instances, &defaults);
        Config {
            api,
            rate_limit,
            retry,
            database_path,
            instances,
            groups,
            warnings: Vec::new(),
        }
    }

    fn base_url(&mut self, value: Option<&SpannedStr>) -> reqwest::Url {
        let fallback =
            || reqwest::Url::parse(DEFAULT_BASE_URL).expect("the default base URL is valid");
        let Some(value) = value else {
            return fallback();
        };
        let url = match reqwest::Url::parse(value.get_ref()) {
            Ok(url) => url,
            Err(e) => {
                let message = format!("{:?} is not a URL: {e}", value.get_ref());
                self.error("api.base_url", value, message);
                return fallback();
            }
        };
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let acceptable = match url.scheme() {
            "https" => url.host().is_some(),
            "http" => loopback,
            _ => false,
        };
        if !acceptable || !url.username().is_empty() || url.password().is_some() {
            let message = format!(
                "{:?}: use https (plain http only to loopback, such as the built-in emulator), without credentials in the URL",
                value.get_ref()
            );
            self.error("api.base_url", value, message);
            return fallback();
        }
        url
    }

    fn instances(&mut self, raw: Vec<Spanned<RawInstance>>, tokens: Tokens) -> Vec<Instance> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, inst) in raw.into_iter().enumerate() {
            let inst = inst.into_inner();
            let name = inst.name.get_ref().trim().to_owned();
            if name.is_empty() || name.chars().any(char::is_control) {
                self.error(
                    format!("instance[{i}].name"),
                    &inst.name,
                    format!("{name:?} is not a usable instance name"),
                );
            } else if let Some(first) = seen.insert(name.clone(), i) {
                self.error(
                    format!("instance[{i}].name"),
                    &inst.name,
                    format!("{name:?} is already defined by instance[{first}]"),
                );
            }
            let token = match tokens {
                Tokens::Resolve => self.token(i, &inst),
                Tokens::Skip => Token::new(""),
            };
            out.push(Instance { name, token });
        }
        out
    }

    fn token(&mut self, i: usize, inst: &RawInstance) -> Token {
        let empty = Token::new("");
        let sources = [
            inst.token_env.is_some(),
            inst.token_file.is_some(),
            inst.token.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            self.error(
                format!("instance[{i}]"),
                &inst.name,
                "set exactly one of token_env, token_file or token",
            );
            return empty;
        }
        let (key, at, text) = if let Some(var) = &inst.token_env {
            let key = format!("instance[{i}].token_env");
            match std::env::var(var.get_ref()) {
                Ok(t) => (key, var, t),
                Err(_) => {
                    let message = format!("environment variable {:?} is not set", var.get_ref());
                    self.error(key, var, message);
                    return empty;
                }
            }
        } else if let Some(file) = &inst.token_file {
            let key = format!("instance[{i}].token_file");
            let path = self.token_file_path(file.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(t) => (key, file, t),
                Err(e) => {
                    let message = format!("cannot read token file {}: {e}", path.display());
                    self.error(key, file, message);
                    return empty;
                }
            }
        } else if let Some(inline) = &inst.token {
            self.warnings.push(format!(
                "{}: instance[{i}].token: the token is written in the config, readable by whoever can read the file; prefer token_env or token_file",
                self.path.display()
            ));
            (
                format!("instance[{i}].token"),
                inline,
                inline.get_ref().clone(),
            )
        } else {
            return empty;
        };
        let token = Token::new(&text);
        // A token must fit in an HTTP header; the message never quotes it.
        if token.expose().is_empty() || !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
            self.error(
                key,
                at,
                "the token is empty or holds spaces or non-ASCII characters",
            );
            return empty;
        }
        token
    }

    /// A relative `token_file` is read from systemd's `$CREDENTIALS_DIRECTORY`
    /// when set (`LoadCredential=`), else beside the config file.
    fn token_file_path(&self, file: &str) -> PathBuf {
        let file = Path::new(file);
        if file.is_absolute() {
            return file.to_owned();
        }
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(file),
            None => self.path.parent().unwrap_or(Path::new(".")).join(file),
        }
    }

    fn groups(
        &mut self,
        raw: Vec<Spanned<RawGroup>>,
        instances: &[Instance],
        defaults: &Defaults,
    ) -> Vec<Group> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut jids: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, g) in raw.into_iter().enumerate() {
            let g = g.into_inner();
            let name = g.name.get_ref().trim().to_owned();
            if name.is_empty() || name.chars().any(char::is_control) {
                self.error(
                    format!("group[{i}].name"),
                    &g.name,
                    format!("{name:?} is not a usable group name"),
                );
            } else if let Some(first) = names.insert(name.clone(), i) {
                self.error(
                    format!("group[{i}].name"),
                    &g.name,
                    format!("{name:?} is already used by group[{first}]"),
                );
            }
            let instance = g.instance.get_ref().trim().to_owned();
            if !instances.iter().any(|x| x.name == instance) {
                self.error(
                    format!("group[{i}].instance"),
                    &g.instance,
                    format!("{instance:?} is not defined by any [[instance]]"),
                );
            }
            let jid = match Jid::parse(g.jid.get_ref()) {
                Ok(jid) => {
                    if let Some(first) = jids.insert(jid.as_str().to_owned(), i) {
                        self.error(
                            format!("group[{i}].jid"),
                            &g.jid,
                            format!("{jid} is already used by group[{first}]; a group must rotate once per fire"),
                        );
                    }
                    jid
                }
                Err(message) => {
                    self.error(format!("group[{i}].jid"), &g.jid, message);
                    continue;
                }
            };
            let schedule = match Schedule::parse(g.schedule.get_ref()) {
                Ok(s) => s,
                Err(message) => {
                    self.error(format!("group[{i}].schedule"), &g.schedule, message);
                    continue;
                }
            };
            let timezone = match g.timezone.as_ref() {
                Some(tz) => self.timezone(&format!("group[{i}].timezone"), tz),
                None => defaults.timezone,
            };
            let jitter = match g.jitter.as_ref() {
                Some(j) => self.duration(&format!("group[{i}].jitter"), Some(j), Duration::ZERO),
                None => defaults.jitter,
            };
            out.push(Group {
                name,
                instance,
                jid,
                schedule,
                timezone,
                jitter,
                catch_up: g.catch_up.unwrap_or(defaults.catch_up),
            });
        }
        out
    }
}

/// `[defaults]`, resolved.
struct Defaults {
    timezone: Tz,
    jitter: Duration,
    catch_up: bool,
}

#[cfg(test)]
mod tests;
