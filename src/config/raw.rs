//! The config file as written: serde structs that mirror the TOML, with spans so
//! that validation errors can name the line. Nothing here is trusted; `mod.rs`
//! turns it into typed, validated values.

use serde::Deserialize;
use toml::Spanned;

/// A string value together with where it stands in the file.
pub type SpannedStr = Spanned<String>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub instance: Vec<Spanned<RawInstance>>,
    #[serde(default)]
    pub group: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub hook: Vec<Spanned<RawHook>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<SpannedStr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    pub name: Option<SpannedStr>,
    pub kind: SpannedStr,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub base_url: Option<SpannedStr>,
    pub timeout: Option<SpannedStr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests_per_minute: Option<Spanned<i64>>,
    pub max_concurrent: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_attempts: Option<Spanned<i64>>,
    pub backoff_initial: Option<SpannedStr>,
    pub backoff_max: Option<SpannedStr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub path: Option<SpannedStr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub timezone: Option<SpannedStr>,
    pub jitter: Option<SpannedStr>,
    pub catch_up: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    pub name: SpannedStr,
    pub token_env: Option<SpannedStr>,
    pub token_file: Option<SpannedStr>,
    /// Allowed with a warning: whoever reads the config reads the token.
    pub token: Option<SpannedStr>,
}

// Hand-written so that an inline token can never reach a log through `{:?}`.
impl std::fmt::Debug for RawInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawInstance")
            .field("name", &self.name)
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: SpannedStr,
    pub instance: SpannedStr,
    pub jid: SpannedStr,
    pub schedule: SpannedStr,
    pub timezone: Option<SpannedStr>,
    pub jitter: Option<SpannedStr>,
    pub catch_up: Option<bool>,
}
