//! The per-token request budget: a token bucket of capacity one, refilled every
//! `interval`, that every API call of that token passes through.
//!
//! Invariant: no window of 60 seconds ever holds more than `requests_per_minute`
//! grants. Grants are spaced at least `interval = 60 s × (1 + MARGIN) / rpm`
//! apart, so a 60-second window holds at most `ceil(rpm / (1 + MARGIN))` of
//! them. The 2% margin also absorbs up to ~1.2 s of difference in how long
//! requests take to reach the API, which counts them on arrival. A bucket of
//! capacity `rpm` would let `2 × rpm` through in the first minute; this one
//! never bursts.
//!
//! Waiters are served in arrival order (a fair mutex is held while the head of
//! the queue sleeps), so a burst of due rotations is worked off in due order.
//!
//! A limiter built with [`RateLimiter::shared`] keeps the bucket in the history
//! database instead of memory, so every process using that database (the
//! daemon, a restarted daemon, a `rotate` beside it) draws on one budget per
//! token. If the database cannot be reached the in-memory bucket paces alone.

use crate::secret::Token;
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The longest the API can pause a token; a far-future `X-RateLimit-Reset` is capped.
pub const MAX_RATE_WAIT: Duration = Duration::from_secs(300);

/// No grant of a shared budget is further away than this, whatever its row
/// says: the longest pause plus a minute.
const LONGEST_WAIT: Duration = MAX_RATE_WAIT.saturating_add(Duration::from_secs(60));

/// The share of the budget kept in reserve for arrival jitter.
const MARGIN: f64 = 0.02;
const WINDOW: Duration = Duration::from_secs(60);

/// One token's budget. Shared (`Arc`) by every instance using the token.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    requests_per_minute: u32,
    /// Whether a wait has been explained in the log yet (once per budget).
    explained: AtomicBool,
    /// Held by the caller at the head of the queue; tokio's mutex is FIFO.
    queue: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    shared: Option<Shared>,
}

/// The bucket's row in the history database.
#[derive(Debug)]
struct Shared {
    store: Store,
    /// SHA-256 of the token, so the database never holds the token.
    key: String,
}

#[derive(Debug)]
struct State {
    /// The earliest instant the next grant may happen.
    next_grant: Instant,
    /// Set by a 429 or `X-RateLimit-Remaining: 0`: nothing goes before it.
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// A budget of `requests_per_minute` calls (at least 1).
    pub fn per_minute(requests_per_minute: u32) -> Self {
        let rpm = f64::from(requests_per_minute.max(1));
        RateLimiter {
            interval: WINDOW.mul_f64((1.0 + MARGIN) / rpm),
            requests_per_minute: requests_per_minute.max(1),
            explained: AtomicBool::new(false),
            queue: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                next_grant: Instant::now(),
                paused_until: None,
            }),
            shared: None,
        }
    }

    /// A budget of `requests_per_minute` for `token`, kept in `store` and so
    /// shared with every process that uses the same database.
    pub fn shared(requests_per_minute: u32, store: Store, token: &Token) -> Self {
        let digest = Sha256::digest(format!("invite-rotator rate budget\0{}", token.expose()));
        let key = digest.iter().map(|b| format!("{b:02x}")).collect();
        RateLimiter {
            shared: Some(Shared { store, key }),
            ..Self::per_minute(requests_per_minute)
        }
    }

    /// The spacing between two grants.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether a reset may be sent now (see [`Store::may_send`]): the
    /// budget's store knows the node's lease.
    pub fn may_send(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| s.store.may_send())
    }

    /// Waits for this caller's turn and returns how long it waited. In memory
    /// it is cancel-safe: a dropped waiter gives its place up and takes no
    /// grant. A shared budget reserves the slot first (in queue order), then
    /// sleeps outside the queue; a dropped waiter's slot goes unused.
    pub async fn acquire(&self) -> Duration {
        let start = Instant::now();
        let head = self.queue.lock().await;
        if let Some(shared) = &self.shared {
            let now_us = chrono::Utc::now().timestamp_micros();
            let interval_us = i64::try_from(self.interval.as_micros())
                .unwrap_or(i64::MAX)
                .max(1);
            match shared
                .store
                .reserve_grant(&shared.key, now_us, interval_us, LONGEST_WAIT)
                .await
            {
                Ok(grant_us) => {
                    drop(head);
                    let wait = Duration::from_micros(u64::try_from(grant_us - now_us).unwrap_or(0));
                    self.explain(wait);
                    tokio::time::sleep(wait).await;
                    return start.elapsed();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "shared rate budget unavailable; pacing in memory")
                }
            }
        }
        loop {
            let now = Instant::now();
            let ready_at = {
                let mut s = self.lock_state();
                let ready_at = s.paused_until.map_or(s.next_grant, |p| p.max(s.next_grant));
                if ready_at <= now {
                    s.next_grant = now + self.interval;
                    s.paused_until = None;
                    return now - start;
                }
                ready_at
            };
            // A pause may arrive while we sleep; the loop looks again on waking.
            self.explain(ready_at - now);
            tokio::time::sleep_until(ready_at).await;
        }
    }

    /// Holds every call of this token back for `wait` (the API said the window
    /// is spent). A later pause extends, an earlier one does not shorten.
    pub async fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        {
            let mut s = self.lock_state();
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        }
        if let Some(shared) = &self.shared {
            let wait_us = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
            let until_us = chrono::Utc::now()
                .timestamp_micros()
                .saturating_add(wait_us);
            if let Err(e) = shared.store.pause_budget(&shared.key, until_us).await {
                tracing::warn!(error = %e, "cannot record the rate-limit pause in the shared budget");
            }
        }
    }

    /// Says once, the first time a call waits, why calls are spaced: so that
    /// rotations taking seconds do not read as slowness.
    fn explain(&self, wait: Duration) {
        if wait >= Duration::from_millis(50) && !self.explained.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "rate budget: {} calls a minute per token, so calls go {:.2} s apart and rotations wait their turn",
                self.requests_per_minute,
                self.interval.as_secs_f64()
            );
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two instants; a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Grants `n` calls from `tasks` concurrent callers; returns each grant's
    /// offset from the start, in grant order.
    async fn grant_times(limiter: Arc<RateLimiter>, n: usize, tasks: usize) -> Vec<Duration> {
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut set = tokio::task::JoinSet::new();
        for t in 0..tasks {
            let (limiter, times) = (limiter.clone(), times.clone());
            let share = n / tasks + usize::from(t < n % tasks);
            set.spawn(async move {
                for _ in 0..share {
                    limiter.acquire().await;
                    times.lock().unwrap().push(Instant::now() - start);
                }
            });
        }
        while set.join_next().await.is_some() {}
        let mut v = Arc::try_unwrap(times).unwrap().into_inner().unwrap();
        v.sort();
        v
    }

    fn max_in_any_window(times: &[Duration], window: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn no_sixty_second_window_holds_more_than_the_limit_even_in_the_first_minute() {
        for rpm in [1, 7, 100, 600] {
            let limiter = Arc::new(RateLimiter::per_minute(rpm));
            let n = rpm as usize * 3 + 5;
            let times = grant_times(limiter, n, 32).await;
            assert_eq!(times.len(), n);
            let peak = max_in_any_window(&times, WINDOW);
            assert!(
                peak <= rpm as usize,
                "rpm {rpm}: {peak} calls in one window"
            );
            // And the budget is used: at least 97% of the limit over the run.
            let span = times[n - 1].as_secs_f64();
            let rate = (n - 1) as f64 / span * 60.0;
            assert!(
                rate >= 0.97 * f64::from(rpm),
                "rpm {rpm}: only {rate:.1}/min"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller_until_it_ends() {
        let limiter = RateLimiter::per_minute(600);
        limiter.acquire().await;
        limiter.pause_for(Duration::from_secs(30)).await;
        limiter.pause_for(Duration::from_secs(5)).await; // does not shorten it
        let waited = limiter.acquire().await;
        assert_eq!(waited, Duration::from_secs(30));
        // After the pause, pacing resumes from the grant, not in a burst.
        let waited = limiter.acquire().await;
        assert_eq!(waited, limiter.interval());
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let limiter = Arc::new(RateLimiter::per_minute(60));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for i in 0..20 {
            let (limiter, order) = (limiter.clone(), order.clone());
            handles.push(tokio::spawn(async move {
                limiter.acquire().await;
                order.lock().unwrap().push(i);
            }));
            // Let task i queue before task i + 1 is spawned.
            tokio::task::yield_now().await;
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn limiters_on_one_database_share_the_budget_of_their_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).await.unwrap();
        let token = Token::new("shared-token");
        // Two processes' worth of limiters at 60/min (one grant every 1.02 s).
        let a = RateLimiter::shared(60, store.clone(), &token);
        let b = RateLimiter::shared(60, store.clone(), &token);
        let other = RateLimiter::shared(60, store.clone(), &Token::new("other-token"));
        let now = chrono::Utc::now().timestamp_micros();
        // Reserve without sleeping: read the grants the bucket hands out.
        let key = |l: &RateLimiter| l.shared.as_ref().unwrap().key.clone();
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&other));
        assert!(!key(&a).contains("shared-token"));
        let g1 = store
            .reserve_grant(&key(&a), now, 1020, LONGEST_WAIT)
            .await
            .unwrap();
        let g2 = store
            .reserve_grant(&key(&b), now, 1020, LONGEST_WAIT)
            .await
            .unwrap();
        let g3 = store
            .reserve_grant(&key(&other), now, 1020, LONGEST_WAIT)
            .await
            .unwrap();
        assert_eq!((g1, g2 - g1, g3), (now, 1020, now));
        store.pause_budget(&key(&a), now + 30_000).await.unwrap();
        let g4 = store
            .reserve_grant(&key(&b), now, 1020, LONGEST_WAIT)
            .await
            .unwrap();
        assert_eq!(g4, now + 30_000);
        // A clock stepped back by a day does not stall the budget: the pause
        // and the pacing go on from the new clock, by as much as was left.
        let yesterday = now - 86_400_000_000;
        let g5 = store
            .reserve_grant(&key(&b), yesterday, 1020, LONGEST_WAIT)
            .await
            .unwrap();
        assert!(g5 - yesterday <= 30_000 + 1020, "{}", g5 - yesterday);
        let g6 = store
            .reserve_grant(&key(&b), yesterday + 1, 1020, LONGEST_WAIT)
            .await
            .unwrap();
        assert_eq!(g6 - g5, 1020, "pacing goes on from the new clock");
        // A `now` read a second before the last reservation's (it waited for
        // the store) is no clock step: nothing shifts.
        let g7 = store
            .reserve_grant(&key(&b), yesterday + 1 - 1_000_000, 1020, LONGEST_WAIT)
            .await
            .unwrap();
        assert_eq!(g7 - g6, 1020, "a lock wait does not shift the bucket back");
    }
}
