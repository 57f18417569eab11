//! The daemon: every group rotates on its own schedule until shutdown.
//!
//! One loop owns the timer queue. It sleeps until the earliest fire (at most
//! 10 s, so a corrected system clock is followed), starts each due rotation
//! as a task, and `select!`s on shutdown and reloads. Invariants:
//! - a group has at most one rotation in flight: a fire that finds one running
//!   is coalesced into it, not stacked;
//! - fires are started in due order and queue for `max_concurrent` permits
//!   (a fair semaphore), then for the rate budget (a fair queue): none is dropped;
//! - at start, a fire missed while the daemon was down is made up once
//!   (`catch_up`), never for fires before the daemon first saw the group,
//!   nor for one that a later successful rotation (a `rotate`) already served.

use crate::clock::Clock;
use crate::config::{Config, Group};
use crate::store::{Cause, Store, StoreError, Trigger};
use crate::telemetry;
use crate::timers::{self, Timers};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// The longest the loop sleeps without looking at the clock again.
const MAX_NAP: Duration = Duration::from_secs(10);
/// How long in-flight rotations get to finish after a stop is asked for; the
/// rest are cut and recorded, so the process exits within 10 s.
pub const STOP_GRACE: Duration = Duration::from_secs(8);

/// What the daemon does with a due group. [`crate::engine::Engine`] rotates it;
/// tests record the call.
pub trait Rotator: Send + Sync + 'static {
    /// Rotates `group` for `cause` (a fire and its due time, or an event).
    /// Errors are the rotator's to log.
    fn rotate(&self, group: Group, cause: Cause) -> impl Future<Output = ()> + Send;
}

/// Things the daemon tells its supervisor (systemd in production).
pub trait Lifecycle: Send + Sync {
    /// Start-up is over: leftovers settled, catch-ups started, timers set.
    fn ready(&self) {}
    /// The loop is turning (called at least every 10 s).
    fn alive(&self) {}
    /// With each turn: how many groups run, and when the next is due.
    fn turned(&self, _groups: usize, _next_due: Option<DateTime<Utc>>) {}
    /// A stop was asked for.
    fn stopping(&self) {}
}

/// A lifecycle that tells no one.
pub struct Quiet;
impl Lifecycle for Quiet {}

/// A new config to run with, and the rotator built from it.
pub struct Reload<R> {
    /// The new, valid config.
    pub config: Config,
    /// Its rotator.
    pub rotator: R,
}

/// A rotation asked for from outside the schedule: RyzeAPI's events call
/// for it ([`crate::events::act`]).
#[derive(Debug, Clone)]
pub struct Call {
    /// The group.
    pub group: Group,
    /// Its trigger and event.
    pub cause: Cause,
}

/// What reaches the running daemon: new configs, and rotations called for.
pub struct Inputs<R> {
    /// Reloads (SIGHUP).
    pub reloads: mpsc::Receiver<Reload<R>>,
    /// Rotations events call for; one for a group with a rotation in flight
    /// is coalesced into it (it is asked again until served).
    pub calls: mpsc::Receiver<Call>,
}

impl<R> Inputs<R> {
    /// Reloads from `reloads`; no rotation is ever called for.
    pub fn reloads(reloads: mpsc::Receiver<Reload<R>>) -> Inputs<R> {
        let (_, calls) = mpsc::channel(1);
        Inputs { reloads, calls }
    }
}

/// Runs until `shutdown` completes, then lets in-flight rotations finish for up
/// to [`STOP_GRACE`] and records the rest.
pub async fn run<R: Rotator>(
    config: Config,
    rotator: R,
    store: Store,
    clock: Arc<dyn Clock>,
    lifecycle: &dyn Lifecycle,
    shutdown: impl Future<Output = ()>,
    inputs: Inputs<R>,
) -> Result<(), StoreError> {
    let Inputs {
        mut reloads,
        mut calls,
    } = inputs;
    let mut daemon = Daemon::new(config, rotator, store, clock);
    tokio::pin!(shutdown);
    let missed = daemon.start().await?;
    // A stop asked for during start-up: no catch-up starts for it.
    if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
        tracing::info!("stopped during start-up");
        return daemon.stop().await;
    }
    daemon.catch_up(missed);
    lifecycle.ready();
    loop {
        daemon.fire_due();
        lifecycle.alive();
        lifecycle.turned(daemon.groups.len(), daemon.timers.next_at());
        let nap = daemon.timers.nap(daemon.clock.now(), MAX_NAP);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(reload) = reloads.recv() => {
                // Fires that came due during the nap go with the config they were due under.
                daemon.fire_due();
                match daemon.reload(reload).await {
                    Ok(()) => lifecycle.ready(),
                    Err(e) => tracing::error!(error = %e, "reload refused, keeping the running configuration"),
                }
            }
            Some(call) = calls.recv() => daemon.called(call),
            Some(done) = daemon.tasks.join_next_with_id(), if !daemon.tasks.is_empty() => daemon.finished(done),
            () = tokio::time::sleep(nap) => {}
        }
    }
    lifecycle.stopping();
    daemon.stop().await
}

struct Daemon<R> {
    /// The groups (shared with the config: 100,000 groups are not copied);
    /// timers refer to them by index.
    groups: std::sync::Arc<[Group]>,
    max_concurrent: usize,
    rotator: Arc<R>,
    store: Store,
    clock: Arc<dyn Clock>,
    timers: Timers,
    running: HashSet<String>,
    /// Which group each task rotates, so a task that panicked still frees its group.
    task_groups: HashMap<tokio::task::Id, String>,
    tasks: JoinSet<()>,
    permits: Arc<Semaphore>,
    /// Set when a stop is asked for: rotations still waiting for a slot then
    /// never start (a fire left undone is caught up at the next start).
    stopping: Arc<AtomicBool>,
}

impl<R: Rotator> Daemon<R> {
    fn new(config: Config, rotator: R, store: Store, clock: Arc<dyn Clock>) -> Self {
        Daemon {
            max_concurrent: config.rate_limit.max_concurrent,
            permits: Arc::new(Semaphore::new(config.rate_limit.max_concurrent)),
            stopping: Arc::new(AtomicBool::new(false)),
            groups: config.groups,
            rotator: Arc::new(rotator),
            store,
            clock,
            timers: Timers::default(),
            running: HashSet::new(),
            task_groups: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Marks the groups seen, sets the timers, and returns the fires missed
    /// while the daemon was down, in due order, for [`Daemon::catch_up`].
    async fn start(&mut self) -> Result<Vec<(DateTime<Utc>, Group)>, StoreError> {
        let now = self.clock.now();
        let names: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        let first_seen = self.store.mark_seen(&names, now).await?;
        let served = self.store.served_until().await?;
        let mut missed: Vec<(DateTime<Utc>, Group)> = self
            .groups
            .iter()
            .filter(|g| g.catch_up)
            .filter_map(|g| {
                let seen = first_seen.get(&g.name).copied().unwrap_or(now);
                let since = served.get(&g.name).map_or(seen, |last| seen.max(*last));
                Some((timers::missed_fire(g, since, now)?, g.clone()))
            })
            .collect();
        missed.sort_by_key(|(due, g)| (*due, g.name.clone()));
        self.timers = Timers::new(&self.groups, now);
        Ok(missed)
    }

    /// Starts the rotations that make up `missed` fires.
    fn catch_up(&mut self, missed: Vec<(DateTime<Utc>, Group)>) {
        for (due, group) in missed {
            tracing::info!(group = %group.name, missed = %telemetry::utc(due), "catching up a rotation missed while the daemon was down");
            self.dispatch(group, Cause::scheduled(Trigger::CatchUp, due));
        }
        tracing::info!(
            groups = self.groups.len(),
            next_due = %self.next_due(),
            catching_up = self.tasks.len(),
            "daemon started"
        );
    }

    /// When the next fire goes, for the log.
    fn next_due(&self) -> String {
        self.timers
            .next_at()
            .map_or_else(|| "never".to_owned(), telemetry::utc)
    }

    /// Starts every fire that is due, in due order, and sets each group's next.
    fn fire_due(&mut self) {
        let now = self.clock.now();
        while let Some(fire) = self.timers.pop_due(now) {
            let Some(group) = self.groups.get(fire.group).cloned() else {
                continue;
            };
            // The next fire still to come: after a clock jump or a stall the
            // fires that went by meanwhile are made up by this one, not replayed.
            let next = timers::next_fire(fire.group, &group, fire.due)
                .filter(|next| next.at > now)
                .or_else(|| timers::upcoming_fire(fire.group, &group, now));
            if let Some(next) = next {
                self.timers.push(next);
            }
            if self.running.contains(&group.name) {
                tracing::info!(group = %group.name, due = %telemetry::utc(fire.due), "previous rotation still running; this fire is coalesced into it");
                continue;
            }
            self.dispatch(group, Cause::scheduled(Trigger::Schedule, fire.due));
        }
    }

    /// A rotation called for: started unless the group has one in flight
    /// (which serves it, or it is asked for again).
    /// The group is taken from the running config (a call made before a
    /// reload names a group as it was).
    fn called(&mut self, call: Call) {
        let Some(group) = self
            .groups
            .iter()
            .find(|g| g.name == call.group.name && g.jid == call.group.jid)
            .cloned()
        else {
            tracing::info!(group = %call.group.name, "a rotation was called for a group no longer configured; dropped");
            return;
        };
        if !self.running.contains(&group.name) {
            tracing::info!(group = %group.name, trigger = %call.cause.trigger, "starting a rotation an event called for");
            self.dispatch(group, call.cause);
        }
    }

    fn dispatch(&mut self, group: Group, cause: Cause) {
        self.running.insert(group.name.clone());
        let name = group.name.clone();
        let (rotator, permits, stopping) = (
            self.rotator.clone(),
            self.permits.clone(),
            self.stopping.clone(),
        );
        let task = self.tasks.spawn(async move {
            // The semaphore is fair: rotations start in the order they were due.
            let _permit = permits.acquire_owned().await;
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            rotator.rotate(group, cause).await;
        });
        self.task_groups.insert(task.id(), name);
    }

    fn finished(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => {
                // A panicking rotation is a bug; its group must not stay blocked.
                tracing::error!(error = %e, "a rotation task failed");
                e.id()
            }
        };
        if let Some(name) = self.task_groups.remove(&id) {
            self.running.remove(&name);
        }
    }

    /// Takes a new config: groups added, removed or rescheduled take effect now.
    async fn reload(&mut self, reload: Reload<R>) -> Result<(), StoreError> {
        let now = self.clock.now();
        let names: Vec<&str> = reload
            .config
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        self.store.mark_seen(&names, now).await?;
        if reload.config.rate_limit.max_concurrent != self.max_concurrent {
            tracing::warn!("rate_limit.max_concurrent changes take effect at the next restart");
        }
        self.groups = reload.config.groups;
        self.rotator = Arc::new(reload.rotator);
        self.timers = Timers::new(&self.groups, now);
        tracing::info!(
            groups = self.groups.len(),
            next_due = %self.next_due(),
            "configuration reloaded"
        );
        Ok(())
    }

    /// No new work; in-flight rotations get [`STOP_GRACE`], then are cut and
    /// recorded: no row is left `pending`.
    async fn stop(mut self) -> Result<(), StoreError> {
        self.stopping.store(true, Ordering::SeqCst);
        let in_flight = self.tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "stopping: letting in-flight rotations finish");
        }
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.shutdown().await;
        }
        // Also after a clean drain: a rotation that panicked leaves its row behind.
        let cut = self.store.record_stopped(self.clock.now()).await?;
        if cut > 0 {
            tracing::warn!(
                cut,
                "stopped with rotations still in flight; recorded as failed or unknown"
            );
        }
        tracing::info!("daemon stopped");
        Ok(())
    }
}

#[cfg(test)]
mod reload_tests;
#[cfg(test)]
mod tests;
