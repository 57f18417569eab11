//! The auditors' console: a read-only website over the history, served by
//! `run` on `[console] listen` (every node). Pages: the groups (as `status`
//! sees them, with a chart of rotations per day by result over 90 days),
//! a group's codes as a timeline, the history with `history`'s filters
//! (keyset pages; CSV and JSON Lines downloads byte for byte what
//! `history` prints), this week's failures, events and hook deliveries,
//! and the ledger's state. HTML from askama templates (`templates/`,
//! checked at compile time); no script, no outside resource.
//!
//! It reads through read-only connections of its own, so neither a page
//! nor the hourly verification holds up a rotation. Beyond loopback every
//! request needs the session cookie that signing in with `token_file`'s
//! token sets (HttpOnly, SameSite=Strict); without it the answer is 401
//! and the sign-in form. Only GET (and HEAD) are served, and two POSTs:
//! the sign-in's and the live code's. A live code is shown only when asked
//! for by a POST from the console's own page, and each showing is logged.
//! Wrong tokens slow their address down and are logged once a minute in
//! aggregate.

mod auth;
pub(crate) mod chart;
mod group;
mod pages;
mod rows;
mod throttle;

use crate::audit::PublicKey;
use crate::config::{Config, ConsoleSettings};
use crate::listener::{self, Limits};
use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often the chart is redrawn from the history.
const CHART_EVERY: Duration = Duration::from_secs(60);
/// How often the whole history is verified.
const VERIFY_EVERY: Duration = Duration::from_secs(3600);

/// What the pages share.
struct Console {
    /// Read-only: the pages'.
    store: Store,
    /// The running config (groups, hooks, events), following reloads.
    config: watch::Receiver<Arc<Config>>,
    /// The session cookie's value when a token is set.
    session: Option<String>,
    /// The token, to check a sign-in.
    token: Option<crate::secret::Token>,
    /// Wrong tokens per address.
    throttle: throttle::Throttle,
    /// The chart and the last verification, kept fresh in the background.
    cache: RwLock<Cache>,
}

/// What the background keeps ready, so that no page waits on a scan.
#[derive(Default)]
struct Cache {
    chart: String,
    chart_at: Option<DateTime<Utc>>,
    /// When, and the outcome (`Ok(summary)` or the discrepancy).
    verified: Option<(DateTime<Utc>, Result<String, String>)>,
}

/// Serves the console on `listener` until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    limits: Limits,
    settings: ConsoleSettings,
    config: watch::Receiver<Arc<Config>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let database = config.borrow().database.clone();
    let open = || async {
        Store::connect_read_only(&database)
            .await
            .map_err(std::io::Error::other)
    };
    let console = Arc::new(Console {
        store: open().await?,
        session: settings.token.as_ref().map(auth::session_of),
        token: settings.token.clone(),
        throttle: throttle::Throttle::default(),
        config,
        cache: RwLock::default(),
    });
    let (stopping, stopped) = watch::channel(false);
    let keeper = tokio::spawn(keep_fresh(console.clone(), open().await?, stopped));
    let app = Router::new()
        .route("/", get(pages::groups))
        .route("/group", get(group::group))
        .route("/reveal", post(group::reveal))
        .route("/history", get(pages::history))
        .route("/history.csv", get(pages::history_csv))
        .route("/history.json", get(pages::history_json))
        .route("/failures", get(pages::failures))
        .route("/events", get(pages::events))
        .route("/ledger", get(pages::ledger))
        .route("/signin", get(auth::form).post(auth::sign_in))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(auth::FORM_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            auth::guard,
        ))
        .with_state(console);
    let served = listener::serve(listener, app, limits, stop).await;
    stopping.send_replace(true);
    keeper.abort();
    served
}

/// One line for the wrong tokens counted since the last.
fn log_failures(s: &throttle::Summary) {
    tracing::warn!(
        failed = s.failed,
        refused_while_waiting = s.refused,
        addresses_waiting = s.waiting,
        most_failures_from = %s.top,
        "console: wrong tokens at sign-in (counted since the last such line)"
    );
}

/// Redraws the chart every minute and verifies the history every hour, on
/// a connection of its own (`verifier`); logs the wrong tokens at sign-in
/// not logged yet.
async fn keep_fresh(console: Arc<Console>, verifier: Store, mut stopped: watch::Receiver<bool>) {
    let mut last_verify: Option<tokio::time::Instant> = None;
    loop {
        if let Some(s) = console.throttle.flush(tokio::time::Instant::now()) {
            log_failures(&s);
        }
        match console
            .store
            .rotations_per_day(Utc::now() - chrono::Duration::days(chart::DAYS))
            .await
        {
            Ok(counts) => {
                let svg = chart::svg(&counts, Utc::now());
                let mut cache = console.cache.write().unwrap_or_else(|p| p.into_inner());
                cache.chart = svg;
                cache.chart_at = Some(Utc::now());
            }
            Err(e) => tracing::warn!(error = %e, "console: cannot draw the chart"),
        }
        if last_verify.is_none_or(|t| t.elapsed() >= VERIFY_EVERY) {
            last_verify = Some(tokio::time::Instant::now());
            let outcome = verify(&console, &verifier).await;
            let mut cache = console.cache.write().unwrap_or_else(|p| p.into_inner());
            cache.verified = Some((Utc::now(), outcome));
        }
        tokio::select! {
            () = tokio::time::sleep(CHART_EVERY) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// One verification of the whole history, with the key the config signs with.
async fn verify(console: &Console, store: &Store) -> Result<String, String> {
    let key = console.config.borrow().audit_key.clone();
    let trusted: Option<PublicKey> = key.map(|k| k.public());
    match crate::audit::verify::database(store, trusted.as_ref(), &[]).await {
        Ok(Ok(v)) => Ok(format!(
            "{} entries chained, {} checkpoint(s), {} rotations agree",
            v.entries, v.checkpoints, v.rotations
        )),
        Ok(Err(d)) => {
            tracing::error!(discrepancy = %d, "console: the history does not verify");
            Err(d.to_string())
        }
        Err(e) => Err(store_error(&e)),
    }
}

fn store_error(e: &StoreError) -> String {
    format!("cannot read the history: {e}")
}
