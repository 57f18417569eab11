//! The shared rate budget's rows: one token bucket per token, so that every
//! process using the database draws on one budget (see [`crate::ratelimit`]).
//! SQL only.

use super::{BUSY_TIMEOUT, Store, StoreError};
use std::time::Duration;

/// How far back a reservation's clock must be from the last one's to be
/// taken for a clock step rather than for the wait for the store.
const CLOCK_STEP: Duration = BUSY_TIMEOUT.saturating_mul(2);

impl Store {
    /// Takes the next grant of a shared token bucket: returns the Unix
    /// microsecond at which the caller may send, and moves the bucket on by
    /// `interval_us`. One statement, so concurrent processes never share a slot.
    ///
    /// A wall clock stepped back (NTP, a VM resumed) would leave the bucket's
    /// next grant and pause in the future by the size of the step: a
    /// reservation made before the time it last reserved from shifts both back
    /// by that step, so pacing goes on as if the clock had not moved.
    pub async fn reserve_grant(
        &self,
        token_key: &str,
        now_us: i64,
        interval_us: i64,
    ) -> Result<i64, StoreError> {
        let grants: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO rate_budget (token_key, next_grant_us, reserved_at_us) VALUES (?1, ?2 + ?3, ?2)
             ON CONFLICT (token_key) DO UPDATE SET
                 next_grant_us = MAX(?2,
                     MIN(next_grant_us - (CASE WHEN reserved_at_us - ?2 > ?5 THEN reserved_at_us - ?2 ELSE 0 END), ?2 + ?4),
                     MIN(paused_until_us - (CASE WHEN reserved_at_us - ?2 > ?5 THEN reserved_at_us - ?2 ELSE 0 END), ?2 + ?4)) + ?3,
                 paused_until_us = paused_until_us - (CASE WHEN reserved_at_us - ?2 > ?5 THEN reserved_at_us - ?2 ELSE 0 END),
                 reserved_at_us = CASE WHEN reserved_at_us - ?2 > ?5 THEN ?2 ELSE MAX(reserved_at_us, ?2) END
             RETURNING next_grant_us - ?3",
        )
        .bind(token_key.to_owned())
        .bind(now_us)
        .bind(interval_us)
        // And whatever else happened to the row, nobody waits longer than the
        // longest pause plus a minute.
        .bind(
            i64::try_from((crate::ryzeapi::MAX_RATE_WAIT + Duration::from_secs(60)).as_micros())
                .unwrap_or(i64::MAX),
        )
        // A reservation can be made with a `now` read before it waited for
        // the store (up to its busy timeout): an earlier `now` than the last
        // reservation's by less than this is that wait, not a clock step.
        .bind(i64::try_from(CLOCK_STEP.as_micros()).unwrap_or(i64::MAX))
        // Run to the end, so that a failed commit is an error (see `begin`).
        .fetch_all(&mut *self.conn.lock().await)
        .await
        .map_err(|e| self.err(e))?;
        grants.first().copied().ok_or_else(|| StoreError {
            path: self.path.clone(),
            message: "the rate budget returned no grant".into(),
        })
    }

    /// Holds a shared token bucket until `until_us` (the API said its window is spent).
    pub async fn pause_budget(&self, token_key: &str, until_us: i64) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "INSERT INTO rate_budget (token_key, next_grant_us, paused_until_us) VALUES (?1, 0, ?2)
                 ON CONFLICT (token_key) DO UPDATE SET paused_until_us = MAX(paused_until_us, ?2)",
            )
            .bind(token_key.to_owned())
            .bind(until_us),
        )
        .await
    }
}
