//! Holds calls back from an instance that is not connected to WhatsApp.
//!
//! A disconnected instance answers 503 (or a 400 saying so) to every call for
//! as long as it takes someone to scan a QR code: minutes or a whole night.
//! Calling on at every fire of every group would spend the token's budget on
//! answers known in advance. So after a "not connected" answer the instance is
//! held: calls fail at once without being sent ([`CallError::Transient`], which
//! is true: nothing happened), until a single probe may go. Each probe that
//! finds it still disconnected doubles the wait, from the retry policy's
//! `backoff_initial` up to `backoff_max`; any other answer releases the hold.
//! An hour disconnected with `backoff_max = "5m"` costs about 20 calls, not
//! one per group per fire per retry.
//!
//! RyzeAPI's `instance.state` events start the same hold without a wasted
//! call, and `connected` releases it at once ([`Holds`]). While the events
//! say the instance is not connected, not even probes go, for up to
//! [`REPORTED_TRUST`]: should the `connected` event be lost, probes resume
//! then, so a lost event never holds calls for longer. Holds are kept per
//! instance name in a registry shared by every engine of the process, so a
//! reload (a new engine) keeps them.

use super::{Call, CallError, GroupInfo, ResetReply, RyzeApi};
use crate::whatsapp::Jid;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A [`RyzeApi`] that holds calls back while its instance is disconnected.
#[derive(Debug)]
pub struct Held<A> {
    inner: A,
    instance: String,
    initial: Duration,
    max: Duration,
    hold: Arc<Mutex<Hold>>,
}

/// Every instance's hold, by name. Cloning is shallow: the engines of one
/// process, and the events that start and end holds, share one registry.
#[derive(Debug, Clone, Default)]
pub struct Holds(Arc<Mutex<HashMap<String, Arc<Mutex<Hold>>>>>);

impl Holds {
    fn of(&self, instance: &str) -> Arc<Mutex<Hold>> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(instance.to_owned()).or_default().clone()
    }

    /// An event said `instance` is not connected: hold its calls as a
    /// "not connected" answer would (probes after `initial`, doubling).
    pub fn hold(&self, instance: &str, initial: Duration, max: Duration) {
        let hold = self.of(instance);
        let mut hold = hold.lock().unwrap_or_else(|p| p.into_inner());
        hold.reported = Some(Instant::now());
        if hold.until.is_none() {
            let initial = initial.max(Duration::from_millis(1));
            hold.until = Some(Instant::now() + initial);
            hold.wait = (initial * 2).min(max.max(initial));
            hold.since = Some(Utc::now());
            hold.probing = false;
        }
    }

    /// An event said `instance` is connected: its calls go again at once.
    pub fn release(&self, instance: &str) {
        let hold = self.of(instance);
        *hold.lock().unwrap_or_else(|p| p.into_inner()) = Hold::default();
    }

    /// Whether `instance`'s calls are held back now: while an event's word
    /// that it is not connected stands, then until the hold's next probe is
    /// due (a call may go then: it is the probe).
    pub fn is_held(&self, instance: &str) -> bool {
        let hold = self.of(instance);
        let hold = hold.lock().unwrap_or_else(|p| p.into_inner());
        hold.reported_now() || hold.until.is_some_and(|until| Instant::now() < until)
    }
}

/// How long an event's word that an instance is not connected stops every
/// call, probes included; after it, probes decide as usual.
pub const REPORTED_TRUST: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub(crate) struct Hold {
    /// When an event last said the instance is not connected.
    reported: Option<Instant>,
    /// No call goes before this (a probe in flight also holds the others).
    until: Option<Instant>,
    /// The wait after the next probe that finds the instance disconnected.
    wait: Duration,
    /// When the instance was first found disconnected.
    since: Option<DateTime<Utc>>,
    /// A probe is out: its answer, not those of calls sent before the hold,
    /// decides the next wait.
    probing: bool,
}

impl Hold {
    /// Whether an event's word that the instance is not connected stands.
    fn reported_now(&self) -> bool {
        self.reported
            .is_some_and(|at| at.elapsed() < REPORTED_TRUST)
    }
}

impl<A: RyzeApi> Held<A> {
    /// Wraps `inner`, the client of `instance`, with its hold in `holds`;
    /// waits between probes double from `initial` up to `max`.
    pub fn new(inner: A, instance: &str, initial: Duration, max: Duration, holds: &Holds) -> Self {
        Held {
            inner,
            instance: instance.to_owned(),
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            hold: holds.of(instance),
        }
    }

    /// The wrapped API.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hold> {
        self.hold.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err` (the reason) when the call must not go; else the call may go,
    /// as the probe if the instance is held.
    fn admit(&self) -> Result<(), String> {
        let mut hold = self.lock();
        let Some(until) = hold.until else {
            return Ok(());
        };
        let now = Instant::now();
        if now < until || hold.reported_now() {
            let next = Utc::now() + (until - now);
            let since = hold.since.map_or_else(String::new, |t| {
                format!(" since {}", t.to_rfc3339_opts(SecondsFormat::Secs, true))
            });
            if hold.reported_now() {
                return Err(format!(
                    "instance {:?} is not connected to WhatsApp{since}, as RyzeAPI's events report; not called until it is reported connected",
                    self.instance
                ));
            }
            return Err(format!(
                "instance {:?} is not connected to WhatsApp{since}; not called (next try after {})",
                self.instance,
                next.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        // This call is the probe; the others wait for its answer (or for the
        // current wait to pass again, should it never answer).
        hold.until = Some(now + hold.wait);
        hold.probing = true;
        Ok(())
    }

    fn answered<T>(&self, call: &Call<T>) {
        // The only 400 and 503 classified transient say "not connected".
        let disconnected = matches!(call.http_status, Some(400 | 503))
            && matches!(call.result, Err(CallError::Transient(_)));
        let mut hold = self.lock();
        if disconnected {
            let wait = match (hold.until, hold.probing) {
                (None, _) => {
                    tracing::warn!(instance = %self.instance, probe_every_max = ?self.max, "instance not connected to WhatsApp; holding its calls back until a probe finds it connected");
                    hold.since = Some(Utc::now());
                    self.initial
                }
                (Some(_), true) => hold.wait,
                // A call sent before the hold began: the hold stands as it is.
                (Some(_), false) => return,
            };
            hold.until = Some(Instant::now() + wait);
            hold.wait = (wait * 2).min(self.max);
            hold.probing = false;
        } else if call.http_status.is_some() && hold.until.is_some() {
            tracing::info!(instance = %self.instance, "instance connected again; calls resume");
            *hold = Hold::default();
        }
    }

    fn refused<T>(reason: String) -> Call<T> {
        Call {
            result: Err(CallError::Transient(reason)),
            http_status: None,
            elapsed: Duration::ZERO,
        }
    }
}

impl<A: RyzeApi> RyzeApi for Held<A> {
    async fn reset_link(&self, jid: &Jid) -> Call<ResetReply> {
        if let Err(reason) = self.admit() {
            return Self::refused(reason);
        }
        let call = self.inner.reset_link(jid).await;
        self.answered(&call);
        call
    }

    async fn group_info(&self, jid: &Jid) -> Call<GroupInfo> {
        if let Err(reason) = self.admit() {
            return Self::refused(reason);
        }
        let call = self.inner.group_info(jid).await;
        self.answered(&call);
        call
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_event_hold_stops_even_probes_until_connected_or_until_its_trust_runs_out() {
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(60));

        holds.hold("sales", initial, max);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(
            holds.is_held("sales"),
            "no probe while the event's word stands"
        );
        holds.release("sales");
        assert!(!holds.is_held("sales"), "connected releases at once");

        holds.hold("sales", initial, max);
        tokio::time::advance(REPORTED_TRUST + Duration::from_secs(1)).await;
        assert!(
            !holds.is_held("sales"),
            "a lost `connected` holds no longer than the trust"
        );
        assert!(!holds.is_held("other"), "holds are per instance");
    }
}
