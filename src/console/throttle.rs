//! Wrong tokens at sign-in, per address: the first [`FREE_FAILURES`] cost
//! nothing; each one after makes the address wait, [`FIRST_WAIT`] doubling
//! up to [`MAX_WAIT`]; while it waits, its sign-ins are answered 429
//! unread. An address with no failure for [`FORGET_AFTER`] starts afresh, a
//! right token clears it. IPv6 addresses count by their /64 (what one host
//! is usually given).
//!
//! The table holds [`MAX_ADDRESSES`] addresses at most: past that, new
//! addresses share one entry, so a flood from many addresses slows itself
//! rather than growing memory. Failures are logged in aggregate (a
//! [`Summary`] at the first failure, then at most one a [`LOG_EVERY`]),
//! never one line each: a flood cannot push the checkpoint lines out of
//! the journal.
//!
//! Time is an argument: the tests step it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Wrong tokens an address may send before it waits.
pub(crate) const FREE_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it.
pub(crate) const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(300);
/// An address with no failure for this long starts afresh.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Addresses remembered at most.
pub(crate) const MAX_ADDRESSES: usize = 4096;
/// At most one summary line this often (and one more when flushed).
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);

/// Who is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4([u8; 4]),
    /// The /64.
    V6([u8; 8]),
    /// The table was full.
    Many,
}

impl Key {
    fn of(ip: Option<IpAddr>) -> Key {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => Key::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Key::V6(prefix)
            }
            None => Key::Many,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            Key::V6(p) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(o))
            }
            Key::Many => f.write_str("(addresses past the table's size)"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// Sign-ins before this are refused.
    until: Instant,
    last: Instant,
}

/// What to log: the failures since the last summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Wrong tokens checked.
    pub(crate) failed: u64,
    /// Sign-ins refused unread while their address waited.
    pub(crate) refused: u64,
    /// Addresses waiting now.
    pub(crate) waiting: usize,
    /// The address with the most failures remembered.
    pub(crate) top: String,
}

/// Failed sign-ins per address (see the module's documentation).
#[derive(Default)]
pub(crate) struct Throttle {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    table: HashMap<Key, Entry>,
    failed: u64,
    refused: u64,
    next_log: Option<Instant>,
}

impl Throttle {
    /// `Err(wait)` when `ip` must wait that long before its next sign-in
    /// (counted as refused).
    pub(crate) fn check(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let mut inner = self.lock();
        let key = inner.key(Key::of(ip), now);
        match inner.table.get(&key).copied() {
            Some(e) if e.until > now => {
                inner.refused += 1;
                Err(e.until - now)
            }
            Some(e) if now.saturating_duration_since(e.last) >= FORGET_AFTER => {
                inner.table.remove(&key);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Counts a wrong token from `ip`; a summary to log when one is due.
    pub(crate) fn failed(&self, ip: Option<IpAddr>, now: Instant) -> Option<Summary> {
        let mut inner = self.lock();
        let key = inner.key(Key::of(ip), now);
        let entry = inner.table.entry(key).or_insert(Entry {
            failures: 0,
            until: now,
            last: now,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if let Some(over) = entry.failures.checked_sub(FREE_FAILURES) {
            let wait = FIRST_WAIT
                .saturating_mul(1u32 << over.min(20))
                .min(MAX_WAIT);
            entry.until = now + wait;
        }
        inner.failed += 1;
        if inner.next_log.is_none_or(|at| now >= at) {
            inner.summary(now)
        } else {
            None
        }
    }

    /// A right token from `ip`: it starts afresh.
    pub(crate) fn succeeded(&self, ip: Option<IpAddr>) {
        let key = Key::of(ip);
        self.lock().table.remove(&key);
    }

    /// The summary of what was not logged yet, if anything was counted
    /// (called every [`LOG_EVERY`]).
    pub(crate) fn flush(&self, now: Instant) -> Option<Summary> {
        let mut inner = self.lock();
        if inner.failed + inner.refused == 0 {
            return None;
        }
        inner.summary(now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// `key`, or the shared entry when the table is full of others (after
    /// forgetting whom it may).
    fn key(&mut self, key: Key, now: Instant) -> Key {
        if self.table.contains_key(&key) || self.table.len() < MAX_ADDRESSES {
            return key;
        }
        self.table
            .retain(|_, e| e.until > now || now.saturating_duration_since(e.last) < FORGET_AFTER);
        if self.table.len() < MAX_ADDRESSES {
            key
        } else {
            Key::Many
        }
    }

    fn summary(&mut self, now: Instant) -> Option<Summary> {
        let top = self
            .table
            .iter()
            .max_by_key(|(_, e)| e.failures)
            .map(|(k, _)| k.to_string())
            .unwrap_or_default();
        let summary = Summary {
            failed: std::mem::take(&mut self.failed),
            refused: std::mem::take(&mut self.refused),
            waiting: self.table.values().filter(|e| e.until > now).count(),
            top,
        };
        self.next_log = Some(now + LOG_EVERY);
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_from_one_address_waits_doubling_and_is_logged_in_aggregate() {
        let t = Throttle::default();
        let guesser = ip("203.0.113.7");
        let (mut checked, mut refused, mut lines) = (0, 0, 0);
        // 10,000 guesses over 100 s: one every 10 ms.
        for _ in 0..10_000 {
            let now = Instant::now();
            match t.check(guesser, now) {
                Ok(()) => {
                    checked += 1;
                    lines += usize::from(t.failed(guesser, now).is_some());
                }
                Err(wait) => {
                    assert!(wait <= MAX_WAIT);
                    refused += 1;
                }
            }
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        // 5 free, then one after each wait of 1, 2, 4, 8, 16 and 32 s; the
        // next wait (64 s, from 63 s) outlasts the 100 s.
        assert_eq!(checked, 5 + 6, "{checked}");
        assert_eq!(refused, 10_000 - checked);
        assert_eq!(lines, 2, "the first failure, then one a minute");
        let rest = t.flush(Instant::now()).expect("counted since");
        assert!(rest.refused > 0 && rest.waiting == 1, "{rest:?}");
        assert_eq!(rest.top, "203.0.113.7");
        // Another address is not slowed; the waits stop at the cap.
        assert_eq!(t.check(ip("198.51.100.1"), Instant::now()), Ok(()));
        for _ in 0..20 {
            let now = Instant::now() + MAX_WAIT;
            tokio::time::advance(MAX_WAIT).await;
            assert_eq!(t.check(guesser, now), Ok(()));
            t.failed(guesser, now);
        }
        assert_eq!(t.check(guesser, Instant::now()), Err(MAX_WAIT));
    }

    #[tokio::test(start_paused = true)]
    async fn a_right_token_or_a_quiet_quarter_hour_starts_afresh() {
        let t = Throttle::default();
        let a = ip("2001:db8::1");
        for _ in 0..FREE_FAILURES {
            t.failed(a, Instant::now());
        }
        // The same /64: its sixth failure.
        t.failed(ip("2001:db8::2"), Instant::now());
        assert_eq!(t.check(a, Instant::now()), Err(FIRST_WAIT * 2));
        t.succeeded(a);
        assert_eq!(t.check(a, Instant::now()), Ok(()));
        for _ in 0..=FREE_FAILURES {
            t.failed(a, Instant::now());
        }
        tokio::time::advance(FORGET_AFTER).await;
        assert_eq!(t.check(a, Instant::now()), Ok(()));
        t.failed(a, Instant::now());
        assert_eq!(t.check(a, Instant::now()), Ok(()), "forgotten: 1 failure");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_from_many_addresses_stays_within_the_table() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 1000) {
            let addr = Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
            if t.check(addr, now).is_ok() {
                t.failed(addr, now);
            }
        }
        let inner = t.lock();
        assert_eq!(inner.table.len(), MAX_ADDRESSES + 1);
        let shared = inner.table[&Key::Many];
        assert!(
            shared.until > now,
            "the addresses past the table share a wait"
        );
    }
}
