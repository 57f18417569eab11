//! `[database]`: where the history lives (a SQLite file, or a PostgreSQL
//! database with its password kept out of the URL and TLS that verifies
//! the server), how long its call log is kept, and `[ha]`.

use super::{Validator, read_secret_file};
use crate::config::document::SpannedStr;
use crate::config::raw::{RawDatabase, RawHa};
use crate::config::{Database, HaSettings, PostgresSettings, Purpose, defaults};
use crate::secret::Token;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// `sslmode` values that verify the server's certificate.
const VERIFYING: [&str; 2] = ["verify-full", "verify-ca"];

/// The settings a `database.url` may carry in its query.
const URL_SETTINGS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
];

impl Validator<'_> {
    /// `[database]`: `path` (SQLite) or `url` (PostgreSQL), not both.
    pub(super) fn database(&mut self, raw: &RawDatabase) -> Database {
        match (&raw.path, &raw.url) {
            (Some(_), Some(url)) => {
                self.error(
                    "database.url",
                    url,
                    "set one of database.path (SQLite) and database.url (PostgreSQL)",
                );
                Database::Sqlite(PathBuf::new())
            }
            (_, Some(url)) => self.postgres(raw, url),
            (path, None) => {
                for (key, value) in [
                    ("database.password_env", &raw.password_env),
                    ("database.password_file", &raw.password_file),
                ] {
                    if let Some(v) = value {
                        self.error(key, v, "only with database.url (PostgreSQL)");
                    }
                }
                Database::Sqlite(self.database_path(path.as_ref()))
            }
        }
    }

    /// `database.url` and its password. The URL must hold no password
    /// (it is logged and shown; the error does not quote it), and its TLS
    /// must verify the server: `sslmode` is `verify-full` unless set,
    /// `require` is taken as `verify-full` (libpq's would not verify), and
    /// `disable` is accepted only to a loopback host.
    fn postgres(&mut self, raw: &RawDatabase, value: &SpannedStr) -> Database {
        let key = "database.url";
        let fallback = Database::Sqlite(PathBuf::new());
        let Ok(mut url) = reqwest::Url::parse(value.get_ref()) else {
            self.error(
                key,
                value,
                "is not a URL such as postgres://rotator@db.example.org:5432/rotator",
            );
            return fallback;
        };
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            self.error(
                key,
                value,
                "must start with postgres:// (a PostgreSQL database)",
            );
            return fallback;
        }
        if url.password().is_some() {
            self.error(
                key,
                value,
                "holds a password: give it with database.password_env or database.password_file (the URL is shown in logs)",
            );
            return fallback;
        }
        // A postgres:// URL's host is not parsed as an address by the URL
        // crate (not a special scheme): read it here.
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => {
                d == "localhost"
                    || d.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if url.host().is_none() {
            self.error(key, value, "names no host");
            return fallback;
        }
        // Only settings that neither carry a secret nor move the connection
        // elsewhere: `?password=`, `?host=` or `?hostaddr=` would get
        // around the checks above (the key is named, its value not quoted).
        if let Some((unknown, _)) = url
            .query_pairs()
            .find(|(k, _)| !URL_SETTINGS.contains(&k.as_ref()))
        {
            let message = format!(
                "?{unknown}= is not accepted here (allowed: {}); the host goes before the path, the password in password_env or password_file",
                URL_SETTINGS.join(", ")
            );
            self.error(key, value, message);
            return fallback;
        }
        let given: Option<String> = url
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned());
        let mode = match given.as_deref() {
            None | Some("require") => "verify-full",
            Some(m) if VERIFYING.contains(&m) => m,
            Some("disable") if loopback => "disable",
            Some(other) => {
                let message = format!(
                    "sslmode={other} would not verify the server: use sslmode=verify-full (or verify-ca with sslrootcert), or a loopback host"
                );
                self.error(key, value, message);
                return fallback;
            }
        };
        let others: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "sslmode")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(others)
            .append_pair("sslmode", mode);
        let password = self.database_password(raw);
        Database::Postgres(PostgresSettings { url, password })
    }

    /// `database.password_env` or `database.password_file`; read for every
    /// purpose (reading the history needs it too).
    fn database_password(&mut self, raw: &RawDatabase) -> Option<Token> {
        match (&raw.password_env, &raw.password_file) {
            (None, None) => None,
            (Some(_), Some(file)) => {
                self.error(
                    "database.password_file",
                    file,
                    "set one of password_env and password_file",
                );
                None
            }
            (Some(var), None) => match std::env::var(var.get_ref()) {
                Ok(p) => Some(Token::new(&p)),
                Err(_) => {
                    let message = format!("environment variable {:?} is not set", var.get_ref());
                    self.error("database.password_env", var, message);
                    None
                }
            },
            (None, Some(file)) => {
                let path = self.secret_file_path(file.get_ref());
                match read_secret_file(&path) {
                    Ok(p) => Some(Token::new(&p)),
                    Err(e) => {
                        let message = format!("cannot read password file {}: {e}", path.display());
                        self.error("database.password_file", file, message);
                        None
                    }
                }
            }
        }
    }

    /// `[ha]`: with PostgreSQL only.
    pub(super) fn ha(&mut self, raw: Option<&Spanned<RawHa>>, database: &Database) -> HaSettings {
        let Some(raw) = raw else {
            return HaSettings::default();
        };
        if matches!(database, Database::Sqlite(_)) {
            self.r.push(
                "ha",
                Some(raw.span().start),
                "needs database.url: nodes take turns on a shared PostgreSQL database (one daemon runs on a SQLite file)",
            );
            return HaSettings::default();
        }
        let Some(lease) = raw.get_ref().lease.as_ref() else {
            return HaSettings::default();
        };
        let value = self.duration("ha.lease", Some(lease), defaults::HA_LEASE);
        if !(defaults::HA_LEASE_MIN..=defaults::HA_LEASE_MAX).contains(&value) {
            self.error("ha.lease", lease, "must be between 3s and 5m");
            return HaSettings::default();
        }
        HaSettings { lease: value }
    }

    /// `database.path`: for [`Purpose::Run`], a place where the history can
    /// be written (checked without creating anything).
    fn database_path(&mut self, value: Option<&SpannedStr>) -> PathBuf {
        let path = match value {
            Some(p) if p.get_ref().trim().is_empty() => {
                self.error("database.path", p, "must not be empty");
                return PathBuf::new();
            }
            Some(p) => PathBuf::from(p.get_ref()),
            None => PathBuf::from(defaults::DATABASE_PATH),
        };
        if self.purpose == Purpose::Run
            && let Err(why) = crate::store::preflight(&path)
        {
            let message = format!("{}: {why}", path.display());
            match value {
                Some(at) => self.error("database.path", at, message),
                // The default path: no line to point at.
                None => self.r.push(
                    "database.path",
                    None,
                    format!("{message} (the default; set database.path)"),
                ),
            }
        }
        path
    }

    /// `database.keep_calls`: a duration, or "forever".
    pub(super) fn keep_calls(&mut self, value: Option<&SpannedStr>) -> Option<Duration> {
        match value {
            Some(v) if v.get_ref().trim() == "forever" => None,
            Some(v) => {
                let keep = self.duration("database.keep_calls", Some(v), defaults::KEEP_CALLS);
                if keep < Duration::from_secs(86_400) {
                    self.error(
                        "database.keep_calls",
                        v,
                        "must be at least a day (\"1d\"), or \"forever\"",
                    );
                }
                Some(keep)
            }
            None => Some(defaults::KEEP_CALLS),
        }
    }
}
