//! `/metrics` (OpenMetrics text, which Prometheus scrapes) and `/healthz`,
//! served with axum on `[metrics] listen`.

use super::Metrics;
use crate::config::Group;
use crate::store::{Status, Store};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The scheduler loop turns at least every 10 s; this long without a turn
/// means it is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(60);
/// `/healthz` gives the database this long to take its write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the count of unsettled rotations is read.
const REFRESH: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    store: Store,
    /// The last write probe and its result: a flood of `/healthz` requests
    /// costs at most one synced write a second.
    probed: Arc<tokio::sync::Mutex<Option<Probe>>>,
}

/// When the database was last probed, and what was wrong then.
type Probe = (tokio::time::Instant, Option<String>);

/// Serves `/metrics` and `/healthz` on `listener` within `limits` (see
/// [`crate::listener`]) until `shutdown`, and keeps the gauges read from the
/// history (overdue groups of `groups`, unsettled rotations) fresh.
pub(crate) async fn serve(
    listener: TcpListener,
    limits: crate::listener::Limits,
    metrics: Metrics,
    store: Store,
    groups: watch::Receiver<Arc<[Group]>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Shared {
        metrics: metrics.clone(),
        store: store.clone(),
        probed: Arc::default(),
    };
    let refresher = tokio::spawn(refresh(metrics, store, groups));
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .with_state(shared);
    let served = crate::listener::serve(listener, app, limits, shutdown).await;
    refresher.abort();
    served
}

async fn scrape(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    let mut problems = Vec::new();
    // A standby schedules nothing: its scheduler loop is not expected to turn.
    let role = s.metrics.role();
    match s.metrics.since_heartbeat() {
        _ if role == Some("standby") => {}
        None => problems.push("starting: the scheduler loop has not run yet".to_owned()),
        Some(age) if age > STUCK_AFTER => problems.push(format!(
            "the scheduler loop is stuck: last turn {} s ago",
            age.as_secs()
        )),
        Some(_) => {}
    }
    let mut probed = s.probed.lock().await;
    let fresh = probed
        .as_ref()
        .filter(|(at, _)| at.elapsed() < Duration::from_secs(1))
        .map(|(_, problem)| problem.clone());
    let problem = match fresh {
        Some(problem) => problem,
        None => {
            let problem =
                match tokio::time::timeout(PROBE_TIMEOUT, s.store.probe_write(Utc::now())).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("the history database takes no writes: {e}")),
                    Err(_) => Some("the history database did not take a write within 5 s".into()),
                };
            *probed = Some((tokio::time::Instant::now(), problem.clone()));
            problem
        }
    };
    drop(probed);
    problems.extend(problem);
    if problems.is_empty() {
        let body = match role {
            Some(role) => format!("ok\nrole: {role}\n"),
            None => "ok\n".to_owned(),
        };
        (StatusCode::OK, body)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", problems.join("\n")),
        )
    }
}

/// The groups' overdue tracking is set up from the history once, after the
/// daemon has started, and again when a reload changes the groups; from then
/// on every success moves its group on: this process's at once (see
/// [`super::Metrics::rotation`]), any other's (a `rotate`, a settlement)
/// within [`REFRESH`], read by id from where the last look ended. Unsettled
/// rotations are counted every [`REFRESH`] too (an index count).
async fn refresh(metrics: Metrics, store: Store, mut groups: watch::Receiver<Arc<[Group]>>) {
    // Not before the daemon has started: its start-up goes first.
    while metrics.since_heartbeat().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let current = groups.borrow_and_update().clone();
        let started = tokio::time::Instant::now();
        // The cursor first: what settles while the tracking is set up is
        // read at the next look.
        let mut cursor = match store.success_cursor().await {
            Ok(cursor) => cursor,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the history; trying again");
                tokio::time::sleep(REFRESH).await;
                continue;
            }
        };
        match metrics.track(current, &store).await {
            Ok(()) => {
                crate::memory::release_free_memory();
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "metrics: tracking the groups' overdue instants"
                );
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the groups' records"),
        }
        loop {
            match store.rotations_after(cursor.0, &cursor.1).await {
                Ok(rows) => {
                    let mut open = Vec::new();
                    for (id, group, status, at) in rows {
                        cursor.0 = cursor.0.max(id);
                        match status {
                            Status::Succeeded => {
                                metrics.succeeded(&group, at.unwrap_or_else(Utc::now))
                            }
                            Status::Pending | Status::Unknown => open.push(id),
                            Status::Failed => {}
                        }
                    }
                    cursor.1 = open;
                }
                Err(e) => tracing::warn!(error = %e, "metrics: cannot read new rotations"),
            }
            match store.count_unsettled().await {
                Ok(n) => metrics.set_unsettled(n),
                Err(e) => tracing::warn!(error = %e, "metrics: cannot count unsettled rotations"),
            }
            tokio::select! {
                changed = groups.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return,
                },
                () = tokio::time::sleep(REFRESH) => {}
            }
        }
    }
}
