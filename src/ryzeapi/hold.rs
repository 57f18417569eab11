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
//! [`REPORTED_TRUST`] counted from the first report. An event is a claim
//! (anyone holding the events secret can send one), so reports alone never
//! hold calls for longer than that between two answers of the API itself:
//! later reports do not restart the window, and once it has run out (or a
//! `connected` event has ended it) no report holds anything again until the
//! API has answered a call. After the window a probe decides, and only the
//! API's own "not connected" extends the hold (doubling, as above). Holds are
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
    /// not even a probe for [`REPORTED_TRUST`] from this report. Only the
    /// first report since the API last answered opens that window; later
    /// ones change nothing. Returns whether the instance's calls are held by
    /// a report now (false: this report was not trusted, the window having
    /// been spent since the API's last answer).
    pub fn hold(&self, instance: &str, initial: Duration, max: Duration) -> bool {
        let hold = self.of(instance);
        let mut hold = hold.lock().unwrap_or_else(|p| p.into_inner());
        if hold.trust_spent {
            return hold.reported_now();
        }
        hold.trust_spent = true;
        hold.reported = Some(Instant::now());
        if hold.until.is_none() {
            let initial = initial.max(Duration::from_millis(1));
            hold.until = Some(Instant::now() + initial);
            hold.wait = (initial * 2).min(max.max(initial));
            hold.since = Some(Utc::now());
            hold.probing = false;
        }
        true
    }

    /// An event said `instance` is connected: its calls go again at once.
    /// A report after this is trusted again only once the API has answered
    /// (a forged `connected` then `disconnected` does not open a new window).
    pub fn release(&self, instance: &str) {
        let hold = self.of(instance);
        let mut hold = hold.lock().unwrap_or_else(|p| p.into_inner());
        *hold = Hold {
            trust_spent: hold.trust_spent,
            ..Hold::default()
        };
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
/// answered; after it, probes decide as usual.
pub const REPORTED_TRUST: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub(crate) struct Hold {
    /// When the report that opened the current window came: the first since
    /// the API last answered (later reports do not move it).
    reported: Option<Instant>,
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
            if let Some(at) = hold.reported.filter(|_| hold.reported_now()) {
                let probe = Utc::now() + (at + REPORTED_TRUST).saturating_duration_since(now);
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
                // A call sent before the hold began: the hold stands as it is.
                (Some(_), false) => return,
            };
            hold.until = Some(Instant::now() + wait);
            hold.wait = (wait * 2).min(self.max);
            hold.probing = false;
            // The API has answered: a later report may open a window again.
            hold.trust_spent = false;
        } else if call.http_status.is_some() {
            if hold.until.is_some() {
                tracing::info!(instance = %self.instance, "instance connected again; calls resume");
            }
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

#[cfg(test)]
mod bound {
    use super::*;
    use crate::whatsapp::InviteCode;

    /// An instance that is connected: every call succeeds.
    #[derive(Default)]
    struct Connected {
        calls: Mutex<Vec<Instant>>,
    }

    impl RyzeApi for Connected {
        async fn reset_link(&self, _jid: &Jid) -> Call<ResetReply> {
            unreachable!("only group/info is called here")
        }

        async fn group_info(&self, _jid: &Jid) -> Call<GroupInfo> {
            self.calls.lock().unwrap().push(Instant::now());
            Call {
                result: Ok(GroupInfo {
                    code: Some(InviteCode::parse("LIVE").unwrap()),
                }),
                http_status: Some(200),
                elapsed: Duration::ZERO,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reports_every_nine_minutes_hold_a_connected_instance_for_ten_minutes_not_for_ever() {
        // Arrange: a connected instance, and a report that it is not every 9 minutes.
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let api = Held::new(Connected::default(), "sales", initial, max, &holds);
        let jid = Jid::parse("120363000000000001@g.us").unwrap();
        let start = Instant::now();

        // Act: two hours; a call tried every minute, a report every 9.
        let mut went = Vec::new();
        for minute in 0..120u64 {
            tokio::time::sleep_until(start + Duration::from_secs(60 * minute)).await;
            if minute % 9 == 0 {
                holds.hold("sales", initial, max);
            }
            let call = api.group_info(&jid).await;
            if call.http_status.is_some() {
                assert!(call.result.is_ok(), "{:?}", call.result);
                went.push(minute);
            }
        }

        // Assert: the first report holds calls for its 10 minutes, no more;
        assert_eq!(went.first(), Some(&10), "{went:?}");
        // a report never holds calls longer than that between two answers;
        let longest = went.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(longest <= 11, "calls held for {longest} minutes: {went:?}");
        // and the connected instance answered most of the two hours.
        assert!(
            went.len() >= 50,
            "{} calls in two hours: {went:?}",
            went.len()
        );
        assert_eq!(api.inner().calls.lock().unwrap().len(), went.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_after_the_bound_or_after_a_connected_report_holds_nothing_until_the_api_answers()
     {
        let holds = Holds::default();
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(300));
        let api = Held::new(Connected::default(), "sales", initial, max, &holds);
        let jid = Jid::parse("120363000000000001@g.us").unwrap();

        assert!(holds.hold("sales", initial, max), "the first report holds");
        tokio::time::advance(REPORTED_TRUST - Duration::from_secs(1)).await;
        assert!(
            holds.hold("sales", initial, max),
            "a report within the bound leaves the first report's hold as it is"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !holds.is_held("sales"),
            "the bound counts from the first report"
        );
        assert!(
            !holds.hold("sales", initial, max),
            "a report after the bound, the API silent since, holds nothing"
        );
        assert!(!holds.is_held("sales"));

        // A forged `connected` then `disconnected` does not open a new window.
        holds.release("sales");
        assert!(!holds.hold("sales", initial, max));
        assert!(!holds.is_held("sales"));

        // Once the API has answered, a report may hold again, bounded anew.
        assert!(api.group_info(&jid).await.result.is_ok());
        assert!(holds.hold("sales", initial, max));
        assert!(holds.is_held("sales"));
        tokio::time::advance(REPORTED_TRUST).await;
        assert!(!holds.is_held("sales"));
    }
}
