//! Time as an input. The scheduler asks a [`Clock`] for the wall time and waits
//! with tokio's timers, so tests run a week of schedules in milliseconds under
//! tokio's paused clock.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// The wall time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock. The scheduler never sleeps longer than 10 s at a time,
/// so a corrected system clock is followed within 10 s.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that moves with tokio's clock: `origin` plus the tokio time
/// elapsed since it was made. Under `tokio::time::pause` it jumps exactly as far
/// as the runtime advances, which is what the scheduler's tests need.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `origin` now.
    pub fn starting_at(origin: DateTime<Utc>) -> Self {
        TokioClock {
            origin,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.start.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.origin + elapsed
    }
}

/// How long from `now` until `t` (zero if it has passed).
pub fn until(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (t - now).to_std().unwrap_or(Duration::ZERO)
}
