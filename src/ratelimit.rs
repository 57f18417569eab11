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

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The share of the budget kept in reserve for arrival jitter.
const MARGIN: f64 = 0.02;
const WINDOW: Duration = Duration::from_secs(60);

/// One token's budget. Shared (`Arc`) by every instance using the token.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    /// Held by the caller at the head of the queue; tokio's mutex is FIFO.
    queue: tokio::sync::Mutex<()>,
    state: Mutex<State>,
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
            queue: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                next_grant: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// The spacing between two grants.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this caller's turn and returns how long it waited. Cancel-safe:
    /// a dropped waiter gives its place up and takes no grant.
    pub async fn acquire(&self) -> Duration {
        let start = Instant::now();
        let _head = self.queue.lock().await;
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
            tokio::time::sleep_until(ready_at).await;
        }
    }

    /// Holds every call of this token back until `until` (the API said the
    /// window is spent). A later pause extends, an earlier one does not shorten.
    pub fn pause_until(&self, until: Instant) {
        let mut s = self.lock_state();
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
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
        let start = Instant::now();
        limiter.pause_until(start + Duration::from_secs(30));
        limiter.pause_until(start + Duration::from_secs(5)); // does not shorten it
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
}
