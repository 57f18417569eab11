//! The shared rate budget's rows: one token bucket per token, so that every
//! process using the database draws on one budget (see [`crate::ratelimit`]).
//! SQL only.

use super::dialect::greatest;
use super::{BUSY_TIMEOUT, Store, StoreError, run};
use std::time::Duration;

/// The reservation of a grant, with the dialect's larger-of and smaller-of
/// (`MAX`/`MIN` on SQLite, `GREATEST`/`LEAST` on PostgreSQL).
macro_rules! reserve_sql {
    ($max:ident, $min:ident) => {
        concat!(
            "INSERT INTO rate_budget (token_key, next_grant_us, reserved_at_us) VALUES ($1, $2 + $3, $2)
             ON CONFLICT (token_key) DO UPDATE SET
                 next_grant_us = ", stringify!($max), "($2,
                     ", stringify!($min), "(rate_budget.next_grant_us - (CASE WHEN rate_budget.reserved_at_us - $2 > $5 THEN rate_budget.reserved_at_us - $2 ELSE 0 END), $2 + $4),
                     ", stringify!($min), "(rate_budget.paused_until_us - (CASE WHEN rate_budget.reserved_at_us - $2 > $5 THEN rate_budget.reserved_at_us - $2 ELSE 0 END), $2 + $4)) + $3,
                 paused_until_us = rate_budget.paused_until_us - (CASE WHEN rate_budget.reserved_at_us - $2 > $5 THEN rate_budget.reserved_at_us - $2 ELSE 0 END),
                 reserved_at_us = CASE WHEN rate_budget.reserved_at_us - $2 > $5 THEN $2 ELSE ", stringify!($max), "(rate_budget.reserved_at_us, $2) END
             RETURNING next_grant_us - $3"
        )
    };
}

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
    /// by that step, so pacing goes on as if the clock had not moved. Whatever
    /// else happened to the row, no grant is further than `longest_wait` away.
    pub async fn reserve_grant(
        &self,
        token_key: &str,
        now_us: i64,
        interval_us: i64,
        longest_wait: Duration,
    ) -> Result<i64, StoreError> {
        let grants: Vec<i64> = run!(self, |c, pg| {
            let sql = if pg {
                reserve_sql!(GREATEST, LEAST)
            } else {
                reserve_sql!(MAX, MIN)
            };
            sqlx::query_scalar(sql)
                .bind(token_key)
                .bind(now_us)
                .bind(interval_us)
                // And whatever else happened to the row, nobody waits longer
                // than `longest_wait`.
                .bind(i64::try_from(longest_wait.as_micros()).unwrap_or(i64::MAX))
                // A reservation can be made with a `now` read before it waited
                // for the store (up to its busy timeout): an earlier `now` than
                // the last reservation's by less than this is that wait, not a
                // clock step.
                .bind(i64::try_from(CLOCK_STEP.as_micros()).unwrap_or(i64::MAX))
                // Run to the end, so that a failed commit is an error (see `begin`).
                .fetch_all(c)
                .await
        })?;
        grants
            .first()
            .copied()
            .ok_or_else(|| StoreError::invalid(&self.name, "the rate budget returned no grant"))
    }

    /// Holds a shared token bucket until `until_us` (the API said its window is spent).
    pub async fn pause_budget(&self, token_key: &str, until_us: i64) -> Result<(), StoreError> {
        run!(self, |c, pg| {
            let sql = if pg {
                pause_sql!(pg)
            } else {
                pause_sql!(sqlite)
            };
            sqlx::query(sql)
                .bind(token_key)
                .bind(until_us)
                .execute(c)
                .await
                .map(drop)
        })
    }
}

/// [`Store::pause_budget`]'s upsert.
macro_rules! pause_sql {
    ($d:ident) => {
        concat!(
            "INSERT INTO rate_budget (token_key, next_grant_us, paused_until_us) VALUES ($1, 0, $2)
             ON CONFLICT (token_key) DO UPDATE
             SET paused_until_us = ",
            greatest!($d),
            "(rate_budget.paused_until_us, $2)"
        )
    };
}
use pause_sql;
