//! From the raw TOML to a [`Config`]: every value checked, every problem
//! collected with its key and line.

use super::raw::{RawConfig, RawGroup, RawInstance, SpannedStr};
use super::{
    ApiSettings, Config, ConfigError, DEFAULT_BASE_URL, DEFAULT_DATABASE_PATH, Group, Instance,
    Invalid, RateLimitSettings, RetryPolicy, Tokens,
};
use crate::schedule::Schedule;
use crate::secret::Token;
use crate::whatsapp::Jid;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

mod hooks;

/// The longest jitter accepted.
const MAX_JITTER: Duration = Duration::from_secs(24 * 3600);

/// Validates `raw`, parsed from `text` (the file at `path`, whose permission
/// bits are `mode` when it was read from disk).
pub(super) fn validate(
    raw: RawConfig,
    text: &str,
    path: &Path,
    tokens: Tokens,
    mode: Option<u32>,
) -> Result<Config, ConfigError> {
    let mut v = Validator {
        text,
        path,
        mode,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let mut config = v.config(raw, tokens);
    if v.errors.is_empty() {
        config.warnings = v.warnings;
        Ok(config)
    } else {
        Err(ConfigError::Invalid(v.errors))
    }
}

/// Collects every error while building a [`Config`]; values that fail are
/// replaced by placeholders so that validation goes on.
struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    mode: Option<u32>,
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

    /// A jitter: a duration of at most a day (a longer delay is a different schedule).
    fn jitter(&mut self, key: &str, value: Option<&SpannedStr>) -> Duration {
        let jitter = self.duration(key, value, Duration::ZERO);
        match value {
            Some(at) if jitter > MAX_JITTER => {
                self.error(
                    key,
                    at,
                    format!("{:?} is longer than the 24h a jitter may be", at.get_ref()),
                );
                Duration::ZERO
            }
            _ => jitter,
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
        if api.timeout.is_zero()
            && let Some(at) = raw.api.timeout.as_ref()
        {
            self.error("api.timeout", at, "must be longer than 0s");
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
            read_back_delay: api.timeout,
        };
        if retry.backoff_max < retry.backoff_initial
            && let Some(at) = raw.retry.backoff_max.as_ref()
        {
            self.error(
                "retry.backoff_max",
                at,
                "must not be shorter than retry.backoff_initial",
            );
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
            jitter: self.jitter("defaults.jitter", raw.defaults.jitter.as_ref()),
            catch_up: raw.defaults.catch_up.unwrap_or(true),
        };
        let instances = self.instances(raw.instance, tokens);
        let groups = self.groups(raw.group, &instances, &defaults);
        let metrics_listen = self.metrics(&raw.metrics);
        let hooks = self.hooks(raw.hook, &groups, tokens);
        Config {
            api,
            rate_limit,
            retry,
            database_path,
            instances,
            groups,
            metrics_listen,
            hooks,
            warnings: Vec::new(),
        }
    }

    fn base_url(&mut self, value: Option<&SpannedStr>) -> reqwest::Url {
        let fallback =
            || reqwest::Url::parse(DEFAULT_BASE_URL).expect("the default base URL is valid");
        match value {
            Some(value) => self.web_url("api.base_url", value).unwrap_or_else(fallback),
            None => fallback(),
        }
    }

    /// A URL that secrets may be sent to: https, or plain http to loopback
    /// only; no credentials in it.
    fn web_url(&mut self, key: &str, value: &SpannedStr) -> Option<reqwest::Url> {
        let url = match reqwest::Url::parse(value.get_ref()) {
            Ok(url) => url,
            Err(e) => {
                let message = format!("{:?} is not a URL: {e}", value.get_ref());
                self.error(key, value, message);
                return None;
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
        let credentials = !url.username().is_empty() || url.password().is_some();
        if !acceptable || credentials {
            // Quoted without its credentials: a password is as secret as a token.
            let mut shown = url.clone();
            let _ = shown.set_password(None);
            let _ = shown.set_username("");
            // A webhook's path may be its secret (chat webhooks): host only.
            let host_only = format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or(""));
            let message = format!(
                "{:?}: use https (plain http only to loopback, such as the built-in emulator), without credentials in the URL",
                if key.starts_with("hook") {
                    host_only.as_str()
                } else if credentials {
                    shown.as_str()
                } else {
                    value.get_ref().as_str()
                }
            );
            self.error(key, value, message);
            return None;
        }
        Some(url)
    }

    /// The `name` of `table[i]`, trimmed; reports an empty or control-character
    /// name, or one an earlier entry of the table already has.
    fn unique_name(
        &mut self,
        table: &str,
        i: usize,
        value: &SpannedStr,
        seen: &mut HashMap<String, usize>,
    ) -> String {
        let key = format!("{table}[{i}].name");
        let name = value.get_ref().trim().to_owned();
        if name.is_empty() || name.chars().any(char::is_control) {
            self.error(key, value, format!("{name:?} is not a usable {table} name"));
        } else if let Some(first) = seen.insert(name.clone(), i) {
            self.error(
                key,
                value,
                format!("{name:?} is already used by {table}[{first}]"),
            );
        }
        name
    }

    fn instances(&mut self, raw: Vec<Spanned<RawInstance>>, tokens: Tokens) -> Vec<Instance> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, inst) in raw.into_iter().enumerate() {
            let inst = inst.into_inner();
            let name = self.unique_name("instance", i, &inst.name, &mut seen);
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
            match read_token_file(&path) {
                Ok(t) => (key, file, t),
                Err(e) => {
                    let message = format!("cannot read token file {}: {e}", path.display());
                    self.error(key, file, message);
                    return empty;
                }
            }
        } else if let Some(inline) = &inst.token {
            let warning = match self.mode {
                Some(mode) if mode & 0o077 != 0 => format!(
                    "{}: instance[{i}].token: the token is written in a config that group or others can read (mode {:04o}); run chmod 600 on it, or use token_env or token_file",
                    self.path.display(),
                    mode & 0o7777
                ),
                _ => format!(
                    "{}: instance[{i}].token: the token is written in the config, readable by whoever can read the file; prefer token_env or token_file",
                    self.path.display()
                ),
            };
            self.warnings.push(warning);
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
        let mut schedules: HashMap<String, Schedule> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, g) in raw.into_iter().enumerate() {
            let g = g.into_inner();
            let name = self.unique_name("group", i, &g.name, &mut names);
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
                    Some(jid)
                }
                Err(message) => {
                    self.error(format!("group[{i}].jid"), &g.jid, message);
                    None
                }
            };
            let schedule = match Schedule::parse_shared(g.schedule.get_ref(), &mut schedules) {
                Ok(s) => Some(s),
                Err(message) => {
                    self.error(format!("group[{i}].schedule"), &g.schedule, message);
                    None
                }
            };
            let timezone = match g.timezone.as_ref() {
                Some(tz) => self.timezone(&format!("group[{i}].timezone"), tz),
                None => defaults.timezone,
            };
            let jitter = match g.jitter.as_ref() {
                Some(j) => self.jitter(&format!("group[{i}].jitter"), Some(j)),
                None => defaults.jitter,
            };
            // A group with an unusable JID or schedule is reported, not kept.
            let (Some(jid), Some(schedule)) = (jid, schedule) else {
                continue;
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

/// The longest token file read; a token is a few dozen bytes.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Reads a token file, at most [`MAX_TOKEN_FILE_BYTES`] of it, so that a
/// mistaken `token_file = "/dev/zero"` is an error rather than all memory.
fn read_token_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_TOKEN_FILE_BYTES} bytes, not a token"
        )));
    }
    Ok(text)
}

/// `[defaults]`, resolved.
struct Defaults {
    timezone: Tz,
    jitter: Duration,
    catch_up: bool,
}
