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
//! call ([`Holds`]). While the events say the instance is not connected, not
//! even probes go, for up to [`REPORTED_TRUST`] counted from the first report.
//! An event is a claim (anyone holding the events secret can send one), so
//! reports alone are bounded twice. Between two answers of the API only the
//! first report opens a window: later reports do not restart it, and once it
//! has run out (or a `connected` event has ended it) no report holds anything
//! until the API has answered a call. And in any [`REPORTED_PER`] (an hour)
//! reports hold an instance for [`REPORTED_TRUST`] in all, across the API's
//! answers: a window opens only for what is left of that, so answers the
//! attacker can provoke (a probe, a confirming read) do not buy a new 10
//! minutes. This bound, rather than trusting reports again only after the
//! API's own "not connected", keeps a genuine report holding calls without a
//! wasted call (a real disconnect rarely comes twice within the hour's
//! 10 minutes). After the window a probe decides, and only the API's own
//! "not connected" extends the hold (doubling, as above).
//!
//! `connected` ends a hold that only reports started at once. A hold the API
//! itself started ("not connected" answered) only an answer of the API ends:
//! the first `connected` during it makes the next probe due now, keeping the
//! doubling wait, and later ones change nothing, so a stream of forged
//! `connected` costs one call more than the backoff's schedule. Holds are
//! kept per instance name in a registry shared by every engine of the
//! process, so a reload (a new engine) keeps them.

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
    /// "not connected" answer would (probes after `initial`, doubling), and
    /// not even a probe for [`REPORTED_TRUST`] from this report, less what
    /// reports have held it in the last [`REPORTED_PER`]. Only the first
    /// report since the API last answered opens that window; later ones
    /// change nothing. Returns whether the instance's calls are held by a
    /// report now (false: this report was not trusted, the window having been
    /// spent since the API's last answer, or the hour's 10 minutes).
    pub fn hold(&self, instance: &str, initial: Duration, max: Duration) -> bool {
        let hold = self.of(instance);
        let mut hold = hold.lock().unwrap_or_else(|p| p.into_inner());
        if hold.trust_spent {
            return hold.reported_now();
        }
        let now = Instant::now();
        let left = REPORTED_TRUST.saturating_sub(hold.reported_within(now));
        if left.is_zero() {
            return false;
        }
        hold.trust_spent = true;
        hold.windows.push((now, now + left));
        if hold.until.is_none() {
            let initial = initial.max(Duration::from_millis(1));
            hold.until = Some(now + initial);
            hold.wait = (initial * 2).min(max.max(initial));
            hold.since = Some(Utc::now());
            hold.probing = false;
        }
        true
    }

    /// An event said `instance` is connected. A hold that only reports
    /// started ends at once. A hold the API itself started ("not connected"
    /// answered) is a fact an event cannot undo: the first `connected` of
    /// that hold makes its next probe due now, keeping the doubling wait,
    /// and later ones change nothing (a stream of forged `connected` costs
    /// one call more than the backoff, not a call each). Either way a
    /// report's window ends, and a report after this is trusted again only
    /// once the API has answered (a forged `connected` then `disconnected`
    /// does not open a new window). Returns whether the hold has ended
    /// (false: the API's own hold stands).
    pub fn release(&self, instance: &str) -> bool {
        let hold = self.of(instance);
        let mut hold = hold.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        hold.end_report(now);
        if !hold.by_api {
            hold.clear();
            return true;
        }
        if !hold.advanced && !hold.probing {
            hold.advanced = true;
            hold.until = hold.until.map(|until| until.min(now));
        }
        false
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
/// call, probes included, counted from the first report since the API last
/// answered; after it, probes decide as usual. It is also what reports may
/// hold an instance in all within any [`REPORTED_PER`].
pub(super) const REPORTED_TRUST: Duration = Duration::from_secs(600);

/// The rolling span in which reports hold an instance for [`REPORTED_TRUST`]
/// at most, however often the API answers in between.
pub(crate) const REPORTED_PER: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
pub(crate) struct Hold {
    /// The windows in which reports held calls lately (from, to), oldest
    /// first; the last may still run. Kept across the API's answers: they
    /// bound what reports hold within [`REPORTED_PER`].
    windows: Vec<(Instant, Instant)>,
    /// A report has opened a window since the API last answered: no other
    /// report opens one until the API answers a call.
    trust_spent: bool,
    /// No call goes before this (a probe in flight also holds the others).
    until: Option<Instant>,
    /// The wait after the next probe that finds the instance disconnected.
    wait: Duration,
    /// When the instance was first found disconnected.
    since: Option<DateTime<Utc>>,
    /// A probe is out: its answer, not those of calls sent before the hold,
    /// decides the next wait.
    probing: bool,
    /// The API itself has answered "not connected" during this hold: no
    /// event ends it, only an answer of the API.
    by_api: bool,
    /// A `connected` report has made this hold's next probe due already.
    advanced: bool,
}

impl Hold {
    /// When the report window running now ends, if one runs.
    fn reported_until(&self) -> Option<Instant> {
        let now = Instant::now();
        self.windows
            .last()
            .filter(|(from, to)| *from <= now && now < *to)
            .map(|(_, to)| *to)
    }

    /// Whether an event's word that the instance is not connected stands.
    fn reported_now(&self) -> bool {
        self.reported_until().is_some()
    }

    /// How long reports have held calls within the [`REPORTED_PER`] up to
    /// `now`; forgets the windows that ended before it.
    fn reported_within(&mut self, now: Instant) -> Duration {
        let Some(since) = now.checked_sub(REPORTED_PER) else {
            return self
                .windows
                .iter()
                .map(|(f, t)| t.min(&now).saturating_duration_since(*f))
                .sum();
        };
        self.windows.retain(|(_, to)| *to > since);
        self.windows
            .iter()
            .map(|(from, to)| (*to).min(now).saturating_duration_since((*from).max(since)))
            .sum()
    }

    /// Ends the report window running now, if one runs.
    fn end_report(&mut self, now: Instant) {
        if let Some((_, to)) = self.windows.last_mut() {
            *to = (*to).min(now);
        }
    }

    /// Ends the hold itself (what reports held lately is kept).
    fn clear(&mut self) {
        *self = Hold {
            windows: std::mem::take(&mut self.windows),
            trust_spent: self.trust_spent,
            ..Hold::default()
        };
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
            if let Some(to) = hold.reported_until() {
                let probe = Utc::now() + to.saturating_duration_since(now);
                return Err(format!(
                    "instance {:?} is not connected to WhatsApp{since}, as RyzeAPI's events report; not called until it is reported connected (a probe after {} at the latest)",
                    self.instance,
                    probe.to_rfc3339_opts(SecondsFormat::Secs, true)
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
                // A call sent before the hold began: the hold stands as it
                // is, but it is the API's now.
                (Some(_), false) => {
                    hold.by_api = true;
                    return;
                }
            };
            hold.until = Some(Instant::now() + wait);
            hold.wait = (wait * 2).min(self.max);
            hold.probing = false;
            hold.by_api = true;
            // The API has answered: a later report may open a window again
            // (within what is left of the hour's REPORTED_TRUST).
            hold.trust_spent = false;
        } else if call.http_status.is_some() {
            if hold.until.is_some() {
                tracing::info!(instance = %self.instance, "instance connected again; calls resume");
            }
            // The API has answered: its word ends the reports' window and
            // the hold, but what reports held lately still counts.
            hold.end_report(Instant::now());
            hold.clear();
            hold.trust_spent = false;
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
mod tests;
