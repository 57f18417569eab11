//! Telling systemd how the daemon is doing (`Type=notify`, `WatchdogSec=`).
//! Without `$NOTIFY_SOCKET` every call is a no-op.

use crate::daemon::Lifecycle;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Watchdog pings go out at most this often, however busy the loop is.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The daemon's [`Lifecycle`] under systemd.
#[derive(Debug)]
pub(crate) struct Systemd {
    watchdog: bool,
    last_ping: Mutex<Option<Instant>>,
}

impl Systemd {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` as systemd set them.
    pub(crate) fn from_env() -> Self {
        let mut usec = 0;
        Systemd {
            watchdog: sd_notify::watchdog_enabled(false, &mut usec),
            last_ping: Mutex::new(None),
        }
    }

    fn notify(state: sd_notify::NotifyState<'_>) {
        if let Err(e) = sd_notify::notify(false, &[state]) {
            tracing::debug!(error = %e, "cannot notify systemd");
        }
    }
}

impl Lifecycle for Systemd {
    fn ready(&self) {
        Self::notify(sd_notify::NotifyState::Ready);
    }

    fn alive(&self) {
        if !self.watchdog {
            return;
        }
        let mut last = self.last_ping.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= PING_EVERY) {
            Self::notify(sd_notify::NotifyState::Watchdog);
            *last = Some(Instant::now());
        }
    }

    fn stopping(&self) {
        Self::notify(sd_notify::NotifyState::Stopping);
    }
}
