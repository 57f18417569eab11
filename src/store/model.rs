//! The values the store reads and writes.

use super::Stamp;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// Why a rotation ran. Stored in `rotations.trigger` by its [`Trigger::as_str`]
/// name, and decoded back into this enum (never compared as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Its cron schedule fired.
    Schedule,
    /// A fire was missed while the daemon was down.
    CatchUp,
    /// `invite-rotator rotate`.
    Manual,
    /// RyzeAPI reported a member removed by an admin (after the quiet period).
    MemberRemoved,
    /// RyzeAPI reported a member who left by themselves (where `rotate_on`
    /// says so).
    MemberLeft,
    /// RyzeAPI reported the link changed elsewhere: recorded as it was
    /// reported, no reset made.
    Outside,
}

impl Trigger {
    /// The name stored in `rotations.trigger`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::Manual => "manual",
            Trigger::MemberRemoved => "member_removed",
            Trigger::MemberLeft => "member_left",
            Trigger::Outside => "outside",
        }
    }

    /// Every trigger, in the order they were added.
    pub const ALL: [Trigger; 6] = [
        Trigger::Schedule,
        Trigger::CatchUp,
        Trigger::Manual,
        Trigger::MemberRemoved,
        Trigger::MemberLeft,
        Trigger::Outside,
    ];

    /// Parses a stored trigger name.
    pub fn parse(s: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where a rotation stands. Stored in `rotations.status` by its
/// [`Status::as_str`] name, and decoded back into this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Written before the API is called; not yet settled.
    Pending,
    /// A new code was issued and recorded.
    Succeeded,
    /// The link was not reset.
    Failed,
    /// A reset may have happened and the truth could not be learned.
    Unknown,
}

impl Status {
    /// The name stored in `rotations.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
        }
    }

    /// Every status.
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Succeeded,
        Status::Failed,
        Status::Unknown,
    ];

    /// Parses a stored or typed status name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// A stored name that is none of the names its column may hold: the
/// schema's CHECK constraints admit only known names, so this means a
/// database edited by hand.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a stored {what} name")]
pub struct UnknownName {
    what: &'static str,
    value: String,
}

/// Decoding a stored name (`TryFrom<String>`, the error an
/// [`UnknownName`]), and `Display` as that name.
macro_rules! decoded_from_text {
    ($($ty:ident: $what:literal),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = $crate::store::UnknownName;
            fn try_from(value: String) -> Result<Self, $crate::store::UnknownName> {
                $ty::parse(&value).ok_or($crate::store::UnknownName::of($what, value))
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
pub(super) use decoded_from_text;
decoded_from_text!(Trigger: "trigger", Status: "status");

impl UnknownName {
    pub(super) fn of(what: &'static str, value: String) -> UnknownName {
        UnknownName { what, value }
    }
}

/// Why a rotation runs, as its row records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    /// `trigger`.
    pub trigger: Trigger,
    /// `scheduled_for`: the due time served (scheduled and caught-up ones).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// `event_id`: the event that called for it (or reported it).
    pub event_id: Option<i64>,
}

impl Cause {
    /// `invite-rotator rotate`.
    pub fn manual() -> Cause {
        Cause {
            trigger: Trigger::Manual,
            scheduled_for: None,
            event_id: None,
        }
    }

    /// A fire of the schedule due at `due` (`Schedule` or `CatchUp`).
    pub fn scheduled(trigger: Trigger, due: DateTime<Utc>) -> Cause {
        Cause {
            trigger,
            scheduled_for: Some(due),
            event_id: None,
        }
    }

    /// The event `event_id` (`MemberRemoved`, `MemberLeft`, `Outside`).
    pub fn event(trigger: Trigger, event_id: i64) -> Cause {
        Cause {
            trigger,
            scheduled_for: None,
            event_id: Some(event_id),
        }
    }
}

/// The row written when a rotation starts.
#[derive(Debug, Clone)]
pub struct NewRotation<'a> {
    /// `group_name`.
    pub group_name: &'a str,
    /// `group_jid`.
    pub group_jid: &'a str,
    /// `instance`.
    pub instance: &'a str,
    /// `trigger`, `scheduled_for`, `event_id`.
    pub cause: Cause,
}

/// How a rotation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// Final status (never `Pending`).
    pub status: Status,
    /// Reset calls made.
    pub attempts: u32,
    /// The code the API issued, if known.
    pub new_code: Option<String>,
    /// Its link.
    pub new_link: Option<String>,
    /// The last error, as the API or the network said it.
    pub error: Option<String>,
}

/// One API call, for the `api_calls` log.
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    /// The rotation it served.
    pub rotation_id: i64,
    /// `resetLink` or `info`.
    pub endpoint: &'a str,
    /// When it was sent.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration: Duration,
    /// The HTTP status, if a reply came.
    pub http_status: Option<u16>,
    /// `success`, `permanent`, `transient`, `rate_limited` or `unknown`.
    pub outcome: &'a str,
    /// The error, if any.
    pub error: Option<String>,
}

/// A row of `rotations`, named as its columns (so JSON output uses those names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Rotation {
    /// `id`.
    pub id: i64,
    /// `group_name`.
    pub group_name: String,
    /// `group_jid`.
    pub group_jid: String,
    /// `instance`.
    pub instance: String,
    /// `trigger`.
    #[sqlx(try_from = "String")]
    pub trigger: Trigger,
    /// `scheduled_for`.
    pub scheduled_for: Option<Stamp>,
    /// `started_at`.
    pub started_at: Stamp,
    /// `finished_at`.
    pub finished_at: Option<Stamp>,
    /// `status`.
    #[sqlx(try_from = "String")]
    pub status: Status,
    /// `attempts`.
    pub attempts: i64,
    /// `old_invite_code`.
    pub old_invite_code: Option<String>,
    /// `new_invite_code`.
    pub new_invite_code: Option<String>,
    /// `new_invite_link`.
    pub new_invite_link: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `event_id`: the event that called for it or reported it (an addition
    /// to the contract, with events).
    pub event_id: Option<i64>,
}

/// A row that may have been left unsettled, with the process that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Leftover {
    /// The row.
    #[sqlx(flatten)]
    pub rotation: Rotation,
    /// `owner`: the writing process (see `owner`: boot, pid and start time); none on old rows.
    pub owner: Option<String>,
    /// `last_reset_at`: when its latest reset call was sent; none before any
    /// (and on rows from before the column).
    pub last_reset_at: Option<Stamp>,
    /// `term`: the lease term its node began it under; none outside nodes.
    pub term: Option<i64>,
}

/// Filters of `history`.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only this group.
    pub group: Option<String>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// Only this status.
    pub status: Option<Status>,
    /// At most this many (the newest).
    pub limit: Option<u64>,
}

/// What the history says about one configured group (for `status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group's name.
    pub group_name: String,
    /// When the daemon first saw it in its config (`groups_seen`); none if
    /// no daemon has run it yet.
    pub first_seen_at: Option<DateTime<Utc>>,
    /// Its latest rotation, whatever its status (`pending` while in flight).
    pub last: Option<LastRotation>,
    /// When its latest succeeded rotation finished.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Whether its latest settled rotation (not `pending`) is `failed` or `unknown`.
    pub failing: bool,
}

/// The latest rotation of a group, in short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRotation {
    /// `started_at`.
    pub started_at: DateTime<Utc>,
    /// `status`.
    pub status: Status,
}
