//! RyzeAPI: the only module that speaks to it (HTTP, and the events'
//! WebSocket).
//!
//! Two calls matter: `resetLink` (revokes the live invite link and issues a new
//! one; not idempotent) and `group/info` (reads the live link; idempotent). Every
//! reply, odd ones included, becomes a typed [`Call`] whose error says what the
//! caller may do next: give up ([`CallError::Permanent`]), try again
//! ([`CallError::Transient`], [`CallError::RateLimited`]) or find out first
//! ([`CallError::Unknown`]: the reset may have happened).

mod client;
mod events;
mod hold;
mod reply;

pub use client::{Client, MAX_BODY_BYTES, MAX_RATE_WAIT, http_client};
pub use events::{FrameError, Socket, Upgrade};
pub use hold::{Held, Holds};
pub use reply::{parse_info, parse_reset};

use crate::whatsapp::{InviteCode, Jid};
use std::future::Future;
use std::time::Duration;

/// What a successful reset returned. Only the validated code is kept: its
/// link is always rebuilt from it ([`InviteCode::link`]), never taken from
/// the reply, so nothing the API added to a link reaches the history or a
/// hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetReply {
    /// The new, live invite code.
    pub code: InviteCode,
}

/// What `group/info` said of the invite link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The live code; `None` when the reply carries no link (WhatsApp shows the
    /// link only to admins).
    pub code: Option<InviteCode>,
}

/// Why a call did not succeed, and so what may follow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The API refused for a reason that retrying will not change (not admin,
    /// not a member, bad token): fail at once.
    #[error("{0}")]
    Permanent(String),
    /// The call did not take effect (disconnected instance, conflict, network
    /// refused): retry with backoff.
    #[error("{0}")]
    Transient(String),
    /// The rate limit: the token is paused for `wait`, after which a retry may go.
    #[error("{message} (rate limited for {}s)", wait.as_secs())]
    RateLimited {
        /// How long the token is paused.
        wait: Duration,
        /// The API's message.
        message: String,
    },
    /// A reset whose effect is unknown (timeout, dropped connection, 5xx,
    /// unreadable 200): read the live link before any retry.
    #[error("{0}")]
    Unknown(String),
}

impl CallError {
    /// The outcome's name as the call log stores it.
    pub fn outcome(&self) -> &'static str {
        match self {
            CallError::Permanent(_) => "permanent",
            CallError::Transient(_) => "transient",
            CallError::RateLimited { .. } => "rate_limited",
            CallError::Unknown(_) => "unknown",
        }
    }

    /// Its message, to be masked before it is kept (see [`crate::mask`]).
    pub fn message_mut(&mut self) -> &mut String {
        match self {
            CallError::Permanent(m)
            | CallError::Transient(m)
            | CallError::Unknown(m)
            | CallError::RateLimited { message: m, .. } => m,
        }
    }
}

/// One HTTP exchange: its result plus what an audit wants to know of it.
#[derive(Debug, Clone)]
pub struct Call<T> {
    /// The classified result.
    pub result: Result<T, CallError>,
    /// The HTTP status, when a reply arrived.
    pub http_status: Option<u16>,
    /// Time from sending to the end of the body (rate-limit waits excluded).
    pub elapsed: Duration,
}

/// The two RyzeAPI calls the rotation needs, for one instance. [`Client`] is the
/// real thing; tests may script their own.
pub trait RyzeApi: Send + Sync {
    /// `POST /group/resetLink/{instance}`: revokes the live link, issues a new one.
    fn reset_link(&self, jid: &Jid) -> impl Future<Output = Call<ResetReply>> + Send;
    /// `GET /group/info/{instance}`: reads the live link.
    fn group_info(&self, jid: &Jid) -> impl Future<Output = Call<GroupInfo>> + Send;
}
