//! From the raw TOML to a [`Config`]: every value checked, every problem
//! collected with its key and line (after those the reading found).

use super::defaults;
use super::document::{Reader, SpannedStr};
use super::raw::{RawConfig, RawGroup, RawInstance};
use super::{
    ApiSettings, Config, ConfigError, Group, Instance, Purpose, RateLimitSettings, RetryPolicy,
};
use crate::schedule::Schedule;
use crate::secret::Token;
use crate::whatsapp::Jid;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

mod audit;
mod database;
mod events;
mod hooks;
mod join;
mod urls;

/// Validates `raw`, read by `reader` from the file at `path` (whose
/// permission bits are `mode` when it was read from disk).
pub(super) fn validate(
    raw: RawConfig,
    reader: Reader<'_>,
    path: &Path,
    purpose: Purpose,
    mode: Option<u32>,
) -> Result<Config, ConfigError> {
    let mut v = Validator {
        r: reader,
        path,
        mode,
        purpose,
        warnings: Vec::new(),
    };
    let mut config = v.config(raw);
    let mut errors = v.r.errors;
    if errors.is_empty() {
        config.warnings = v.warnings;
        Ok(config)
    } else {
        // In the order of the file; those without a line (the file as a whole) last.
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(ConfigError::Invalid(errors))
    }
}

/// Collects every error while building a [`Config`]; values that fail are
/// replaced by placeholders so that validation goes on.
struct Validator<'a> {
    r: Reader<'a>,
    path: &'a Path,
    mode: Option<u32>,
    purpose: Purpose,
    warnings: Vec<String>,
}

impl Validator<'_> {
    fn error<T>(&mut self, key: impl Into<String>, at: &Spanned<T>, message: impl Into<String>) {
        self.r.push(key, Some(at.span().start), message);
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
        let jitter = self.duration(key, value, defaults::JITTER);
        match value {
            Some(at) if jitter > defaults::MAX_JITTER => {
                self.error(
                    key,
                    at,
                    format!("{:?} is longer than the 24h a jitter may be", at.get_ref()),
                );
                defaults::JITTER
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

    fn config(&mut self, raw: RawConfig) -> Config {
        let api = ApiSettings {
            base_url: self.base_url(raw.api.base_url.as_ref()),
            timeout: self.duration("api.timeout", raw.api.timeout.as_ref(), defaults::TIMEOUT),
            proxy: raw.api.proxy.as_ref().and_then(|p| self.proxy(p)),
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
                defaults::REQUESTS_PER_MINUTE,
            ),
            max_concurrent: self.positive(
                "rate_limit.max_concurrent",
                raw.rate_limit.max_concurrent.as_ref(),
                defaults::MAX_CONCURRENT,
            ) as usize,
        };
        let retry = RetryPolicy {
            max_attempts: self.positive(
                "retry.max_attempts",
                raw.retry.max_attempts.as_ref(),
                defaults::MAX_ATTEMPTS,
            ),
            backoff_initial: self.duration(
                "retry.backoff_initial",
                raw.retry.backoff_initial.as_ref(),
                defaults::BACKOFF_INITIAL,
            ),
            backoff_max: self.duration(
                "retry.backoff_max",
                raw.retry.backoff_max.as_ref(),
                defaults::BACKOFF_MAX,
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
        let database = self.database(&raw.database);
        let ha = self.ha(raw.ha.as_ref(), &database);
        let keep_calls = self.keep_calls(raw.database.keep_calls.as_ref());
        let defaults = Defaults {
            timezone: match raw.defaults.timezone.as_ref() {
                Some(tz) => self.timezone("defaults.timezone", tz),
                None => defaults::TIMEZONE,
            },
            jitter: self.jitter("defaults.jitter", raw.defaults.jitter.as_ref()),
            catch_up: raw.defaults.catch_up.unwrap_or(defaults::CATCH_UP),
            events: self.event_rules(
                "defaults",
                raw.defaults.rotate_on.as_ref(),
                raw.defaults.event_delay.as_ref(),
                crate::config::EventRules::default(),
            ),
        };
        let instances = self.instances(raw.instance);
        if raw.group.is_empty() {
            self.r.push(
                "group",
                None,
                "no [[group]] is defined: there is nothing to rotate",
            );
        }
        let groups = self.groups(raw.group, &instances, &defaults);
        let metrics_listen = self.metrics(&raw.metrics);
        let hooks = self.hooks(raw.hook, &groups);
        let events = self.events(raw.events);
        let join = self.join(raw.join);
        let audit_key = self.audit(&raw.audit);
        let console = self.console(raw.console);
        Config {
            api,
            rate_limit,
            retry,
            database,
            ha,
            keep_calls,
            instances,
            groups: groups.into(),
            metrics_listen,
            hooks,
            events,
            join,
            audit_key,
            console,
            warnings: Vec::new(),
        }
    }

    /// The `name` of `table[i]`, trimmed; reports an empty or control-character
    /// name, or one an earlier entry of the table already has. `None` when
    /// the name is missing (already reported).
    fn unique_name(
        &mut self,
        table: &str,
        i: usize,
        value: Option<&SpannedStr>,
        seen: &mut HashMap<String, usize>,
    ) -> Option<String> {
        let value = value?;
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
        Some(name)
    }

    fn instances(&mut self, raw: Vec<Spanned<RawInstance>>) -> Vec<Instance> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, inst) in raw.into_iter().enumerate() {
            let at = inst.span();
            let inst = inst.into_inner();
            let token = match self.purpose {
                Purpose::Run => self.token(i, &inst, at),
                Purpose::Read => Token::new(""),
            };
            if let Some(name) = self.unique_name("instance", i, inst.name.as_ref(), &mut seen) {
                out.push(Instance { name, token });
            }
        }
        out
    }

    /// The instance's token, from the one place it names.
    fn token(&mut self, i: usize, inst: &RawInstance, at: std::ops::Range<usize>) -> Token {
        let empty = Token::new("");
        if inst.token_sources != 1 {
            self.r.push(
                format!("instance[{i}]"),
                Some(at.start),
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
            let path = self.secret_file_path(file.get_ref());
            match read_secret_file(&path) {
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

    /// A relative `token_file` or `secret_file` is read from systemd's
    /// `$CREDENTIALS_DIRECTORY` when set (`LoadCredential=`), else beside the
    /// config file.
    pub(super) fn secret_file_path(&self, file: &str) -> PathBuf {
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
            let name = self.unique_name("group", i, g.name.as_ref(), &mut names);
            let instance = g.instance.as_ref().map(|v| {
                let instance = v.get_ref().trim().to_owned();
                if !instances.iter().any(|x| x.name == instance) {
                    self.error(
                        format!("group[{i}].instance"),
                        v,
                        format!("{instance:?} is not defined by any [[instance]]"),
                    );
                }
                instance
            });
            let jid = g.jid.as_ref().and_then(|v| match Jid::parse(v.get_ref()) {
                Ok(jid) => {
                    if let Some(first) = jids.insert(jid.as_str().to_owned(), i) {
                        self.error(
                            format!("group[{i}].jid"),
                            v,
                            format!("{jid} is already used by group[{first}]; a group must rotate once per fire"),
                        );
                    }
                    Some(jid)
                }
                Err(message) => {
                    self.error(format!("group[{i}].jid"), v, message.to_string());
                    None
                }
            });
            let schedule = g.schedule.as_ref().and_then(|v| {
                match Schedule::parse_shared(v.get_ref(), &mut schedules) {
                    Ok(s) => Some(s),
                    Err(message) => {
                        self.error(format!("group[{i}].schedule"), v, message.to_string());
                        None
                    }
                }
            });
            let timezone = match g.timezone.as_ref() {
                Some(tz) => self.timezone(&format!("group[{i}].timezone"), tz),
                None => defaults.timezone,
            };
            let jitter = match g.jitter.as_ref() {
                Some(j) => self.jitter(&format!("group[{i}].jitter"), Some(j)),
                None => defaults.jitter,
            };
            let events = self.event_rules(
                &format!("group[{i}]"),
                g.rotate_on.as_ref(),
                g.event_delay.as_ref(),
                defaults.events,
            );
            // A group with anything missing or unusable is reported, not kept.
            let (Some(name), Some(instance), Some(jid), Some(schedule)) =
                (name, instance, jid, schedule)
            else {
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
                events,
            });
        }
        out
    }
}

/// Reads a token or secret file, at most
/// [`defaults::MAX_SECRET_FILE_BYTES`] of it, so that a mistaken
/// `token_file = "/dev/zero"` is an error rather than all memory.
pub(super) fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let limit = defaults::MAX_SECRET_FILE_BYTES;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {limit} bytes, not a secret"
        )));
    }
    Ok(text)
}

/// `[defaults]`, resolved.
struct Defaults {
    timezone: Tz,
    jitter: Duration,
    catch_up: bool,
    events: crate::config::EventRules,
}
