//! More than one machine: every daemon on one PostgreSQL database is a
//! node. One holds the lease and is active: it alone schedules, settles
//! leftovers, rotates and delivers hooks; the others stand by and take the
//! lease over once it has run out (`[ha] lease`, 10 s unless set), or at
//! once when the active node stops cleanly and gives it up. Every node
//! receives RyzeAPI's events into the shared inbox.
//!
//! The lease lives in the database and is timed by the database's clock
//! (nodes' clocks may differ). The active node renews it every third of
//! its length; a renewal that fails or does not answer within that third
//! makes the node stand by at once: it stops starting work before the
//! lease can run out. Its term, which grows with each takeover, fences
//! its writes: the store checks in the same statement that begins a
//! rotation, or records a reset about to be sent, that this node still
//! holds the lease of its term, so a node that was paused or cut off
//! past its lease starts nothing when it wakes.
//!
//! One hole remains, and no lease closes it (RyzeAPI's reset takes no
//! fencing token): a node frozen between its last fenced write and the
//! reset call itself, for longer than the lease, sends that reset when it
//! wakes. The active node meanwhile settled the rotation from the link it
//! read; the reset that lands late is then recorded by the woken node on
//! the same row (see [`crate::rotation`]).

use crate::metrics::Metrics;
use crate::store::{Fence, Fencing, Store};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a node not seen is still listed by `status`, in leases.
pub(crate) const SEEN_WITHIN_LEASES: u32 = 3;
/// Nodes not seen for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(86_400);

/// This process, as a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// `host/pid/nonce`: unique per process, across hosts and restarts.
    pub id: String,
    /// The host's name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

impl Node {
    /// This process.
    pub(crate) fn this_process() -> Node {
        let host = hostname();
        let pid = std::process::id();
        let nonce: String = (0..8)
            .map(|_| char::from(b'a' + fastrand::u8(..26)))
            .collect();
        Node {
            id: format!("{host}/{pid}/{nonce}"),
            host,
            pid,
            started_at: Utc::now(),
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What this node does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Waits for the lease.
    Standby,
    /// Holds the lease of `term` since `since`.
    Active {
        /// The lease's term.
        term: i64,
        /// When this node took it.
        since: DateTime<Utc>,
    },
}

impl Role {
    /// Whether this node is active.
    pub(crate) fn is_active(&self) -> bool {
        matches!(self, Role::Active { .. })
    }

    /// `active` or `standby`.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Role::Active { .. } => "active",
            Role::Standby => "standby",
        }
    }
}

/// Keeps this node's lease (or waits for it) until `stop`; the role is
/// sent on the returned channel as it changes, and set as `store`'s
/// fencing (so the store's writes that begin work check it) and on the
/// metrics. At `stop`, an active node gives the lease up.
pub(crate) fn spawn(
    store: Store,
    node: Arc<Node>,
    lease: Duration,
    metrics: Option<Metrics>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (watch::Receiver<Role>, tokio::task::JoinHandle<()>) {
    store.set_fencing(Fencing::Standby);
    if let Some(m) = &metrics {
        m.set_role(Some(Role::Standby.as_str()));
    }
    let (tx, rx) = watch::channel(Role::Standby);
    let task = tokio::spawn(keep(store, node, lease, metrics, tx, stop));
    (rx, task)
}

async fn keep(
    store: Store,
    node: Arc<Node>,
    lease: Duration,
    metrics: Option<Metrics>,
    roles: watch::Sender<Role>,
    stop: impl Future<Output = ()>,
) {
    let tick = lease / 3;
    tokio::pin!(stop);
    let mut turns: u32 = 0;
    loop {
        let role = roles.borrow().clone();
        let next = match &role {
            Role::Standby => {
                let sent = std::time::Instant::now();
                match tokio::time::timeout(tick, store.acquire_lease(&node.id, lease)).await {
                    Ok(Ok(Some(term))) => {
                        store.set_lease_until(Some(sent + surely_held(lease)));
                        tracing::info!(node = %node.id, term, "became the active node: took the lease");
                        if let Some(m) = &metrics {
                            m.takeover();
                        }
                        Role::Active {
                            term,
                            since: Utc::now(),
                        }
                    }
                    Ok(Ok(None)) => Role::Standby,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "standby: cannot reach the database to take the lease");
                        Role::Standby
                    }
                    Err(_) => Role::Standby,
                }
            }
            Role::Active { term, .. } => {
                let sent = std::time::Instant::now();
                let renewed =
                    tokio::time::timeout(tick, store.renew_lease(&node.id, *term, lease)).await;
                match renewed {
                    Ok(Ok(true)) => {
                        store.set_lease_until(Some(sent + surely_held(lease)));
                        role.clone()
                    }
                    Ok(Ok(false)) => {
                        tracing::warn!(node = %node.id, term, "stepped down: the lease ran out or another node holds it");
                        Role::Standby
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(node = %node.id, term, error = %e, "stepped down: cannot renew the lease, so no new work starts");
                        Role::Standby
                    }
                    Err(_) => {
                        tracing::warn!(node = %node.id, term, "stepped down: renewing the lease took longer than a third of it, so no new work starts");
                        Role::Standby
                    }
                }
            }
        };
        if next != role {
            announce(&store, &node, &metrics, &roles, next.clone());
        }
        let active_since = match &next {
            Role::Active { since, .. } => Some(*since),
            Role::Standby => None,
        };
        // Bounded like the lease calls: a hung report must not keep this
        // node from noticing, a tick later, that its lease is gone.
        let report = store.report_node(
            &node.id,
            &node.host,
            node.pid,
            node.started_at,
            next.as_str(),
            active_since,
        );
        if let Ok(Err(e)) = tokio::time::timeout(tick, report).await {
            tracing::debug!(error = %e, "cannot report this node");
        }
        turns = turns.wrapping_add(1);
        if turns % 1000 == 1 {
            let _ = store.forget_nodes(FORGET_AFTER).await;
        }
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(tick) => {}
        }
    }
    // Stopping: no new work, and the lease goes to a standby at once.
    let last = roles.borrow().clone();
    announce(&store, &node, &metrics, &roles, Role::Standby);
    if let Role::Active { term, .. } = last {
        match store.release_lease(&node.id, term).await {
            Ok(()) => {
                tracing::info!(node = %node.id, term, "gave the lease up: a standby takes over now")
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot give the lease up; a standby takes over when it runs out")
            }
        }
    }
    let stopped = store.report_node(
        &node.id,
        &node.host,
        node.pid,
        node.started_at,
        "stopped",
        None,
    );
    let _ = tokio::time::timeout(tick, stopped).await;
}

fn announce(
    store: &Store,
    node: &Node,
    metrics: &Option<Metrics>,
    roles: &watch::Sender<Role>,
    role: Role,
) {
    store.set_fencing(match &role {
        Role::Active { term, .. } => Fencing::Active(Fence {
            node: node.id.clone(),
            term: *term,
        }),
        Role::Standby => Fencing::Standby,
    });
    if let Some(m) = metrics {
        m.set_role(Some(role.as_str()));
    }
    roles.send_replace(role);
}

/// How long after a successful acquire or renewal was sent the lease surely
/// holds: the database timed it from when the statement ran, later than
/// the sending; a tenth is kept back for the reset's own trip.
fn surely_held(lease: Duration) -> Duration {
    lease - lease / 10
}
