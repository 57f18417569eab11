//! The config file as written: one struct per table, read from the document
//! key by key (see [`super::document`]), with spans so that validation can
//! name the line. Nothing here is trusted; [`super::validate`] turns it into
//! typed, validated values. A key that is required but missing is `None`
//! here and already reported.

use super::document::{Reader, SpannedStr, Table};
use toml::Spanned;
use toml::de::DeTable;

#[derive(Debug, Default)]
pub(super) struct RawConfig {
    pub api: RawApi,
    pub rate_limit: RawRateLimit,
    pub retry: RawRetry,
    pub database: RawDatabase,
    pub ha: Option<Spanned<RawHa>>,
    pub defaults: RawDefaults,
    pub instance: Vec<Spanned<RawInstance>>,
    pub group: Vec<Spanned<RawGroup>>,
    pub metrics: RawMetrics,
    pub hook: Vec<Spanned<RawHook>>,
    pub events: Option<Spanned<RawEvents>>,
    pub join: Option<Spanned<RawJoin>>,
    pub audit: RawAudit,
    pub console: Option<Spanned<RawConsole>>,
}

#[derive(Debug, Default)]
pub(super) struct RawAudit {
    pub signing_key_file: Option<SpannedStr>,
}

#[derive(Debug, Default)]
pub(super) struct RawConsole {
    pub listen: Option<SpannedStr>,
    pub token_file: Option<SpannedStr>,
}

#[derive(Debug, Default)]
pub(super) struct RawJoin {
    pub listen: Option<SpannedStr>,
    pub public_url: Option<SpannedStr>,
}

#[derive(Debug, Default)]
pub(super) struct RawEvents {
    pub listen: Option<SpannedStr>,
    pub public_url: Option<SpannedStr>,
    pub authorization_env: Option<SpannedStr>,
    pub authorization_file: Option<SpannedStr>,
    pub websocket: Option<bool>,
    pub keep: Option<SpannedStr>,
    pub max_rotations_per_hour: Option<Spanned<i64>>,
}

#[derive(Debug, Default)]
pub(super) struct RawApi {
    pub base_url: Option<SpannedStr>,
    pub timeout: Option<SpannedStr>,
    pub proxy: Option<SpannedStr>,
}

#[derive(Debug, Default)]
pub(super) struct RawRateLimit {
    pub requests_per_minute: Option<Spanned<i64>>,
    pub max_concurrent: Option<Spanned<i64>>,
}

#[derive(Debug, Default)]
pub(super) struct RawRetry {
    pub max_attempts: Option<Spanned<i64>>,
    pub backoff_initial: Option<SpannedStr>,
    pub backoff_max: Option<SpannedStr>,
}

#[derive(Debug, Default)]
pub(super) struct RawDatabase {
    pub path: Option<SpannedStr>,
    pub url: Option<SpannedStr>,
    pub password_env: Option<SpannedStr>,
    pub password_file: Option<SpannedStr>,
    pub keep_calls: Option<SpannedStr>,
}

#[derive(Debug, Default)]
pub(super) struct RawHa {
    pub lease: Option<SpannedStr>,
}

#[derive(Debug, Default)]
pub(super) struct RawDefaults {
    pub timezone: Option<SpannedStr>,
    pub jitter: Option<SpannedStr>,
    pub catch_up: Option<bool>,
    pub rotate_on: Option<Spanned<Vec<String>>>,
    pub event_delay: Option<SpannedStr>,
}

#[derive(Debug, Default)]
pub(super) struct RawMetrics {
    pub listen: Option<SpannedStr>,
}

pub(super) struct RawInstance {
    pub name: Option<SpannedStr>,
    pub token_env: Option<SpannedStr>,
    pub token_file: Option<SpannedStr>,
    /// Allowed with a warning: whoever reads the config reads the token.
    pub token: Option<SpannedStr>,
    /// How many of `token_env`, `token_file`, `token` the file sets, values
    /// of the wrong type included (those are reported already).
    pub token_sources: usize,
}

// Hand-written so that an inline token can never reach a log through `{:?}`.
impl std::fmt::Debug for RawInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawInstance")
            .field("name", &self.name)
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(super) struct RawGroup {
    pub name: Option<SpannedStr>,
    pub instance: Option<SpannedStr>,
    pub jid: Option<SpannedStr>,
    pub schedule: Option<SpannedStr>,
    pub timezone: Option<SpannedStr>,
    pub jitter: Option<SpannedStr>,
    pub catch_up: Option<bool>,
    pub rotate_on: Option<Spanned<Vec<String>>>,
    pub event_delay: Option<SpannedStr>,
}

pub(super) struct RawHook {
    pub name: Option<SpannedStr>,
    pub kind: Option<SpannedStr>,
    pub url: Option<SpannedStr>,
    pub secret_env: Option<SpannedStr>,
    pub secret_file: Option<SpannedStr>,
    pub command: Option<Spanned<Vec<String>>>,
    pub on: Option<Spanned<Vec<String>>>,
    pub groups: Option<Spanned<Vec<String>>>,
    pub timeout: Option<SpannedStr>,
}

// Hand-written: a webhook URL may carry a secret (chat webhooks do).
impl std::fmt::Debug for RawHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawHook")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Reads every table of `doc`; problems go to `r`.
pub(super) fn read(r: &mut Reader<'_>, doc: &Spanned<DeTable<'_>>) -> RawConfig {
    let mut root = r.root(doc);
    let raw = RawConfig {
        api: api(r, &mut root),
        rate_limit: rate_limit(r, &mut root),
        retry: retry(r, &mut root),
        database: database(r, &mut root),
        ha: ha(r, &mut root),
        defaults: defaults(r, &mut root),
        instance: each(r, &mut root, "instance", instance),
        group: each(r, &mut root, "group", group),
        metrics: metrics(r, &mut root),
        hook: each(r, &mut root, "hook", hook),
        events: events(r, &mut root),
        join: join(r, &mut root),
        audit: audit(r, &mut root),
        console: console(r, &mut root),
    };
    r.finish(root);
    raw
}

/// Reads every `[[name]]` with `one`, keeping each one's span.
fn each<'a, T>(
    r: &mut Reader<'_>,
    root: &mut Table<'a>,
    name: &'static str,
    one: fn(&mut Reader<'_>, &mut Table<'a>) -> T,
) -> Vec<Spanned<T>> {
    r.tables(root, name)
        .into_iter()
        .map(|mut t| {
            let value = one(r, &mut t);
            let span = t.span();
            r.finish(t);
            Spanned::new(span, value)
        })
        .collect()
}

fn api(r: &mut Reader<'_>, root: &mut Table<'_>) -> RawApi {
    let mut t = r.table(root, "api");
    let api = RawApi {
        base_url: r.string(&mut t, "base_url"),
        timeout: r.string(&mut t, "timeout"),
        proxy: r.string(&mut t, "proxy"),
    };
    r.finish(t);
    api
}

fn rate_limit(r: &mut Reader<'_>, root: &mut Table<'_>) -> RawRateLimit {
    let mut t = r.table(root, "rate_limit");
    let rate = RawRateLimit {
        requests_per_minute: r.integer(&mut t, "requests_per_minute"),
        max_concurrent: r.integer(&mut t, "max_concurrent"),
    };
    r.finish(t);
    rate
}

fn retry(r: &mut Reader<'_>, root: &mut Table<'_>) -> RawRetry {
    let mut t = r.table(root, "retry");
    let retry = RawRetry {
        max_attempts: r.integer(&mut t, "max_attempts"),
        backoff_initial: r.string(&mut t, "backoff_initial"),
        backoff_max: r.string(&mut t, "backoff_max"),
    };
    r.finish(t);
    retry
}

fn database(r: &mut Reader<'_>, root: &mut Table<'_>) -> RawDatabase {
    let mut t = r.table(root, "database");
    let database = RawDatabase {
        path: r.string(&mut t, "path"),
        url: r.string(&mut t, "url"),
        password_env: r.string(&mut t, "password_env"),
        password_file: r.string(&mut t, "password_file"),
        keep_calls: r.string(&mut t, "keep_calls"),
    };
    r.finish(t);
    database
}

fn ha(r: &mut Reader<'_>, root: &mut Table<'_>) -> Option<Spanned<RawHa>> {
    let present = root.contains("ha");
    let mut t = r.table(root, "ha");
    let ha = RawHa {
        lease: r.string(&mut t, "lease"),
    };
    let span = t.span();
    r.finish(t);
    present.then(|| Spanned::new(span, ha))
}

fn defaults(r: &mut Reader<'_>, root: &mut Table<'_>) -> RawDefaults {
    let mut t = r.table(root, "defaults");
    let defaults = RawDefaults {
        timezone: r.string(&mut t, "timezone"),
        jitter: r.string(&mut t, "jitter"),
        catch_up: r.boolean(&mut t, "catch_up"),
        rotate_on: r.strings(&mut t, "rotate_on"),
        event_delay: r.string(&mut t, "event_delay"),
    };
    r.finish(t);
    defaults
}

fn events(r: &mut Reader<'_>, root: &mut Table<'_>) -> Option<Spanned<RawEvents>> {
    let present = root.contains("events");
    let mut t = r.table(root, "events");
    let events = RawEvents {
        listen: r.string(&mut t, "listen"),
        public_url: r.string(&mut t, "public_url"),
        authorization_env: r.string(&mut t, "authorization_env"),
        authorization_file: r.string(&mut t, "authorization_file"),
        websocket: r.boolean(&mut t, "websocket"),
        keep: r.string(&mut t, "keep"),
        max_rotations_per_hour: r.integer(&mut t, "max_rotations_per_hour"),
    };
    let span = t.span();
    r.finish(t);
    present.then(|| Spanned::new(span, events))
}

fn join(r: &mut Reader<'_>, root: &mut Table<'_>) -> Option<Spanned<RawJoin>> {
    let present = root.contains("join");
    let mut t = r.table(root, "join");
    let join = RawJoin {
        listen: r.string(&mut t, "listen"),
        public_url: r.string(&mut t, "public_url"),
    };
    let span = t.span();
    r.finish(t);
    present.then(|| Spanned::new(span, join))
}

fn audit(r: &mut Reader<'_>, root: &mut Table<'_>) -> RawAudit {
    let mut t = r.table(root, "audit");
    let audit = RawAudit {
        signing_key_file: r.string(&mut t, "signing_key_file"),
    };
    r.finish(t);
    audit
}

fn console(r: &mut Reader<'_>, root: &mut Table<'_>) -> Option<Spanned<RawConsole>> {
    let present = root.contains("console");
    let mut t = r.table(root, "console");
    let console = RawConsole {
        listen: r.string(&mut t, "listen"),
        token_file: r.string(&mut t, "token_file"),
    };
    let span = t.span();
    r.finish(t);
    present.then(|| Spanned::new(span, console))
}

fn metrics(r: &mut Reader<'_>, root: &mut Table<'_>) -> RawMetrics {
    let mut t = r.table(root, "metrics");
    let metrics = RawMetrics {
        listen: r.string(&mut t, "listen"),
    };
    r.finish(t);
    metrics
}

fn instance(r: &mut Reader<'_>, t: &mut Table<'_>) -> RawInstance {
    let name = r.string(t, "name");
    let token_sources = ["token_env", "token_file", "token"]
        .into_iter()
        .filter(|k| t.contains(k))
        .count();
    RawInstance {
        token_sources,
        name: r.required(t, "name", name, "a name"),
        token_env: r.string(t, "token_env"),
        token_file: r.string(t, "token_file"),
        token: r.string(t, "token"),
    }
}

fn group(r: &mut Reader<'_>, t: &mut Table<'_>) -> RawGroup {
    const NEEDS: &str = "name, instance, jid and schedule";
    let (name, instance, jid, schedule) = (
        r.string(t, "name"),
        r.string(t, "instance"),
        r.string(t, "jid"),
        r.string(t, "schedule"),
    );
    RawGroup {
        name: r.required(t, "name", name, NEEDS),
        instance: r.required(t, "instance", instance, NEEDS),
        jid: r.required(t, "jid", jid, NEEDS),
        schedule: r.required(t, "schedule", schedule, NEEDS),
        timezone: r.string(t, "timezone"),
        jitter: r.string(t, "jitter"),
        catch_up: r.boolean(t, "catch_up"),
        rotate_on: r.strings(t, "rotate_on"),
        event_delay: r.string(t, "event_delay"),
    }
}

fn hook(r: &mut Reader<'_>, t: &mut Table<'_>) -> RawHook {
    let kind = r.string(t, "kind");
    RawHook {
        name: r.string(t, "name"),
        kind: r.required(t, "kind", kind, "a kind (\"webhook\" or \"command\")"),
        url: r.string(t, "url"),
        secret_env: r.string(t, "secret_env"),
        secret_file: r.string(t, "secret_file"),
        command: r.strings(t, "command"),
        on: r.strings(t, "on"),
        groups: r.strings(t, "groups"),
        timeout: r.string(t, "timeout"),
    }
}
