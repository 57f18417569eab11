//! What Prometheus scrapes: counters and gauges kept by the daemon, served by
//! [`server`] on `[metrics] listen` with `/healthz` beside them.
//!
//! No metric has a per-group label: 100,000 groups must not make 100,000
//! series. Names follow Prometheus conventions (`_total` counters, seconds).

mod overdue;
pub(crate) mod server;

use crate::config::Group;
use crate::ryzeapi::{Call, GroupInfo, ResetReply, RyzeApi};
use crate::store::{Status, Trigger};
use crate::whatsapp::Jid;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// `invite_rotator_rotations_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    result: &'static str,
    trigger: &'static str,
}

/// `invite_rotator_events_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    /// `group.flow`, `instance.state`, or `other` (any other name).
    event: &'static str,
    /// What it was: `member_removed`, `member_left`, `link_changed`, `state`,
    /// `unparsed`, `other`, or not stored: `unused`, `unmanaged`,
    /// `refused_token`, `refused_instance`.
    kind: &'static str,
}

/// `invite_rotator_api_calls_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    endpoint: &'static str,
    /// The HTTP status, or `none` when no reply came.
    status: String,
}

/// The daemon's metrics. Cloning is shallow.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    rotations: Family<RotationLabels, Counter>,
    api_calls: Family<CallLabels, Counter>,
    budget_waits: Counter,
    budget_wait_seconds: Counter<f64, AtomicU64>,
    unsettled: Gauge,
    events: Family<EventLabels, Counter>,
    events_backlog: Gauge,
    event_rotations_capped: Counter,
    active: Gauge,
    takeovers: Counter,
    /// `active` or `standby` on PostgreSQL; none on SQLite (one node).
    role: Mutex<Option<&'static str>>,
    groups: Gauge,
    overdue: Gauge,
    next_due_seconds: Gauge<f64, AtomicU64>,
    /// When the scheduler loop last turned.
    heartbeat: Mutex<Option<Instant>>,
    /// Which groups are overdue (see [`overdue`]); none until the groups are
    /// known.
    tracker: Mutex<Option<overdue::Overdue>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("invite_rotator");
        let rotations = Family::<RotationLabels, Counter>::default();
        registry.register(
            "rotations",
            "Rotations ended, by result (succeeded, failed, unknown) and trigger",
            rotations.clone(),
        );
        let api_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "api_calls",
            "RyzeAPI calls, by endpoint and HTTP status (none: no reply)",
            api_calls.clone(),
        );
        let budget_waits = Counter::default();
        registry.register(
            "rate_budget_waits",
            "Calls that waited for their token's rate budget",
            budget_waits.clone(),
        );
        let budget_wait_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "rate_budget_wait_seconds",
            "Time calls spent waiting for the rate budget",
            budget_wait_seconds.clone(),
        );
        let unsettled = Gauge::default();
        registry.register(
            "unsettled_rotations",
            "Rotations pending or unknown in the history (settled from the live link later)",
            unsettled.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "RyzeAPI events received (webhook or WebSocket), by event and kind; unused, unmanaged and refused ones are not stored",
            events.clone(),
        );
        let events_backlog = Gauge::default();
        registry.register(
            "events_backlog",
            "Events stored and not yet acted on",
            events_backlog.clone(),
        );
        let event_rotations_capped = Counter::default();
        registry.register(
            "event_rotations_capped",
            "Times a group's removals reached [events] max_rotations_per_hour (once per group and wait)",
            event_rotations_capped.clone(),
        );
        let active = Gauge::default();
        // One daemon on SQLite is always the active one.
        active.set(1);
        registry.register(
            "active",
            "1 while this node holds the lease and does the work (always, on SQLite), 0 on a standby",
            active.clone(),
        );
        let takeovers = Counter::default();
        registry.register(
            "takeovers",
            "Times this node took the lease (became the active node)",
            takeovers.clone(),
        );
        let groups = Gauge::default();
        registry.register(
            "groups_configured",
            "Groups in the running config",
            groups.clone(),
        );
        let overdue = Gauge::default();
        registry.register(
            "groups_overdue",
            "Groups without a successful rotation within two schedule periods",
            overdue.clone(),
        );
        let next_due_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "next_rotation_seconds",
            "Seconds until the next rotation is due (negative: due now)",
            next_due_seconds.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                rotations,
                api_calls,
                budget_waits,
                budget_wait_seconds,
                unsettled,
                events,
                events_backlog,
                event_rotations_capped,
                active,
                takeovers,
                role: Mutex::new(None),
                groups,
                overdue,
                next_due_seconds,
                heartbeat: Mutex::new(None),
                tracker: Mutex::new(None),
            }),
        }
    }

    /// Counts an ended rotation of `group`; a success moves the group's
    /// overdue instant on.
    pub fn rotation(&self, group: &str, status: Status, trigger: Trigger) {
        self.counted(status, trigger);
        if status == Status::Succeeded {
            self.succeeded(group, Utc::now());
        }
    }

    /// Counts a rotation that ended `status`, without telling the overdue
    /// tracking (a link changed outside serves no schedule).
    pub fn counted(&self, status: Status, trigger: Trigger) {
        let labels = RotationLabels {
            result: status.as_str(),
            trigger: trigger.as_str(),
        };
        self.inner.rotations.get_or_create(&labels).inc();
    }

    /// A rotation of `group` succeeded at `at` (this process's, or another's
    /// found in the history): its overdue instant moves on.
    pub fn succeeded(&self, group: &str, at: DateTime<Utc>) {
        if let Some(tracker) = self.tracker().as_mut() {
            tracker.succeeded(group, at);
        }
    }

    /// Starts tracking `groups` (the running config's) from the history:
    /// each group's latest success, else when the daemon first saw it.
    pub async fn track(
        &self,
        groups: Arc<[Group]>,
        store: &crate::store::Store,
    ) -> Result<(), crate::store::StoreError> {
        let order = overdue::by_name(&groups);
        let mut references: Vec<Option<DateTime<Utc>>> = vec![None; groups.len()];
        store
            .each_overdue_reference(|name, at| {
                if let Some(i) = overdue::find(&groups, &order, name) {
                    references[i] = Some(at);
                }
            })
            .await?;
        *self.tracker() = Some(overdue::Overdue::new(groups, order, &references));
        self.refresh_overdue(Utc::now());
        Ok(())
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Option<overdue::Overdue>> {
        self.inner.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refresh_overdue(&self, now: DateTime<Utc>) {
        if let Some(tracker) = self.tracker().as_mut() {
            let overdue = tracker.at(now);
            self.inner
                .overdue
                .set(i64::try_from(overdue).unwrap_or(i64::MAX));
        }
    }

    /// Counts a call, and the wait before it was sent.
    fn api_call<T>(&self, endpoint: &'static str, call: &Call<T>, waited: Duration) {
        let status = call
            .http_status
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        let labels = CallLabels { endpoint, status };
        self.inner.api_calls.get_or_create(&labels).inc();
        if waited >= Duration::from_millis(1) {
            self.inner.budget_waits.inc();
            self.inner.budget_wait_seconds.inc_by(waited.as_secs_f64());
        }
    }

    /// The scheduler loop turned: `groups` configured, the next due at `next`.
    pub fn turned(&self, groups: usize, next: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        self.refresh_overdue(now);
        *self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.inner
            .groups
            .set(i64::try_from(groups).unwrap_or(i64::MAX));
        let seconds = next.map_or(f64::NAN, |t| (t - now).as_seconds_f64());
        self.inner.next_due_seconds.set(seconds);
    }

    /// Counts an event received.
    pub fn event(&self, event: &str, kind: &'static str) {
        let event = match event {
            "group.flow" => "group.flow",
            "instance.state" => "instance.state",
            _ => "other",
        };
        self.inner
            .events
            .get_or_create(&EventLabels { event, kind })
            .inc();
    }

    /// A group's removals reached the hourly cap of event rotations.
    pub fn event_rotations_capped(&self) {
        self.inner.event_rotations_capped.inc();
    }

    /// Sets the number of events waiting to be acted on.
    pub fn set_events_backlog(&self, events: u64) {
        self.inner
            .events_backlog
            .set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// Sets the number of unsettled rotations.
    pub fn set_unsettled(&self, rows: u64) {
        self.inner
            .unsettled
            .set(i64::try_from(rows).unwrap_or(i64::MAX));
    }

    /// This node's role (`active`, `standby`), with PostgreSQL; `None`
    /// with SQLite, where the one daemon is always active.
    pub fn set_role(&self, role: Option<&'static str>) {
        self.inner.active.set(i64::from(role != Some("standby")));
        *self.inner.role.lock().unwrap_or_else(|p| p.into_inner()) = role;
    }

    /// This node's role, if it is one of several.
    pub fn role(&self) -> Option<&'static str> {
        *self.inner.role.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node took the lease.
    pub fn takeover(&self) {
        self.inner.takeovers.inc();
    }

    /// How long ago the scheduler loop last turned (`None`: not yet).
    pub fn since_heartbeat(&self) -> Option<Duration> {
        self.inner
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        self.refresh_overdue(Utc::now());
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

/// A [`RyzeApi`] that counts its calls (and their waits) into [`Metrics`].
#[derive(Debug)]
pub(crate) struct Observed<A> {
    inner: A,
    metrics: Option<Metrics>,
}

impl<A> Observed<A> {
    /// Counts `inner`'s calls into `metrics`, if any.
    pub(crate) fn new(inner: A, metrics: Option<Metrics>) -> Self {
        Observed { inner, metrics }
    }

    /// The wrapped API.
    pub(crate) fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A: RyzeApi> RyzeApi for Observed<A> {
    async fn reset_link(&self, jid: &Jid) -> Call<ResetReply> {
        let start = Instant::now();
        let call = self.inner.reset_link(jid).await;
        if let Some(m) = &self.metrics {
            m.api_call(
                "resetLink",
                &call,
                start.elapsed().saturating_sub(call.elapsed),
            );
        }
        call
    }

    async fn group_info(&self, jid: &Jid) -> Call<GroupInfo> {
        let start = Instant::now();
        let call = self.inner.group_info(jid).await;
        if let Some(m) = &self.metrics {
            m.api_call("info", &call, start.elapsed().saturating_sub(call.elapsed));
        }
        call
    }
}
