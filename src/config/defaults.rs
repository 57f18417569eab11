//! Every default and bound of the config, in one place: what a key is when
//! the file leaves it out, and the limits a value must stay within. The
//! README and `config.example.toml` quote these.

use std::time::Duration;

/// Where the config is read from when neither `--config` nor
/// `INVITE_ROTATOR_CONFIG` says otherwise.
pub(crate) const CONFIG_PATH: &str = "/etc/invite-rotator/config.toml";
/// `api.base_url`: RyzeAPI's public base URL.
pub(crate) const BASE_URL: &str = "https://ryzeapi.cloud/api";
/// `api.timeout`: one HTTP call, connection included.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// `rate_limit.requests_per_minute`: the API's documented limit per token.
pub(crate) const REQUESTS_PER_MINUTE: u32 = 100;
/// `rate_limit.max_concurrent`: rotations in flight at once.
pub(crate) const MAX_CONCURRENT: u32 = 16;
/// `retry.max_attempts`: reset calls per rotation (reads counted apart).
pub(crate) const MAX_ATTEMPTS: u32 = 5;
/// `retry.backoff_initial`: the first backoff's ceiling.
pub(crate) const BACKOFF_INITIAL: Duration = Duration::from_secs(2);
/// `retry.backoff_max`: no backoff is longer.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// `database.path`: systemd's `StateDirectory`.
pub(crate) const DATABASE_PATH: &str = "/var/lib/invite-rotator/history.db";
/// `ha.lease`: how long the active node's lease lasts unless renewed; a
/// standby takes over this long after the active node is gone.
pub(crate) const HA_LEASE: Duration = Duration::from_secs(10);
/// The shortest and longest `ha.lease` accepted.
pub(crate) const HA_LEASE_MIN: Duration = Duration::from_secs(3);
/// See [`HA_LEASE_MIN`].
pub(crate) const HA_LEASE_MAX: Duration = Duration::from_secs(300);
/// `database.keep_calls`: how long the per-call log and delivered hook
/// notifications are kept (rotations are kept for good).
pub(crate) const KEEP_CALLS: Duration = Duration::from_secs(90 * 86_400);
/// `defaults.timezone`.
pub(crate) const TIMEZONE: chrono_tz::Tz = chrono_tz::Tz::UTC;
/// `defaults.jitter`.
pub(crate) const JITTER: Duration = Duration::ZERO;
/// `defaults.catch_up`.
pub(crate) const CATCH_UP: bool = true;
/// The longest jitter accepted: a longer delay is a different schedule.
pub(crate) const MAX_JITTER: Duration = Duration::from_secs(24 * 3600);
/// `hook[].timeout`: one delivery.
pub(crate) const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// The most read of a `token_file` or `secret_file`: a secret is a few dozen
/// bytes, and a mistaken `/dev/zero` must be an error, not all memory.
pub(crate) const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;
/// `events.keep`: how long the raw events are kept.
pub(crate) const EVENTS_KEEP: Duration = Duration::from_secs(30 * 86_400);
/// `defaults.event_delay`: the quiet period after a removal before the
/// group rotates (each further removal starts it again).
pub(crate) const EVENT_DELAY: Duration = Duration::from_secs(30);
/// The longest an event rotation waits after the first removal of a burst,
/// however many follow.
pub(crate) const EVENT_DELAY_CAP: Duration = Duration::from_secs(300);
/// `[events] max_rotations_per_hour`: event-driven rotations of one group
/// in any hour, at most.
pub(crate) const MAX_EVENT_ROTATIONS_PER_HOUR: u32 = 6;
/// The most `max_rotations_per_hour` may be: one a minute.
pub(crate) const MAX_EVENT_ROTATIONS_PER_HOUR_CAP: u32 = 60;
/// The shortest `[events]` authorization secret accepted.
pub(crate) const MIN_EVENTS_SECRET: usize = 16;
