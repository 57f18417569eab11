//! Join links that survive rotation: `GET /j/{slug}` leads to the group's
//! live invite, whatever rotations happened since the link was printed.
//!
//! - An **unlimited** link answers 302 to `https://chat.whatsapp.com/{code}`
//!   (the latest code the history knows, re-read every [`REFRESH`]).
//! - A **limited** link (`max_uses`, or an expiry) shows a page with a Join
//!   button; only its POST spends a use, atomically in the database (so
//!   concurrent clicks on any number of nodes never pass the limit), and
//!   answers 303. Link previews only GET: they spend nothing.
//! - Expired, revoked or used up: 410 with a page that says so; anything
//!   else: 404. Pages in English, Spanish or Portuguese ([`pages`]).
//!
//! Uses of unlimited links are counted in memory and written every
//! [`FLUSH`] and at the stop, so counting never waits for the database.
//! The listener has its own port and serves nothing else (see
//! [`crate::listener`] for its defences). Every node serves the links.

pub(crate) mod pages;
pub(crate) mod qr;
pub(crate) mod slug;

use crate::config::Group;
use crate::engine::Engine;
use crate::listener::{self, Limits};
use crate::ryzeapi::RyzeApi;
use crate::store::{JoinLink, Spent, Store};
use crate::whatsapp::InviteCode;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use pages::Lang;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// How often the links and the live codes are read from the database: a
/// rotation, a revocation or a new link takes effect within this.
pub(crate) const REFRESH: Duration = Duration::from_millis(250);
/// How often counted uses are written.
pub(crate) const FLUSH: Duration = Duration::from_secs(1);

/// What a link answers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// It works.
    Active,
    /// `join revoke` withdrew it.
    Revoked,
    /// Its expiry has passed.
    Expired,
    /// Its uses are spent.
    UsedUp,
}

impl LinkState {
    /// Of `link` at `now`.
    pub(crate) fn of(link: &JoinLink, now: DateTime<Utc>) -> LinkState {
        if link.revoked_at.is_some() {
            LinkState::Revoked
        } else if link
            .expires_at
            .as_ref()
            // An expiry that cannot be read counts as passed.
            .is_some_and(|e| e.time().is_none_or(|e| e <= now))
        {
            LinkState::Expired
        } else if link.max_uses.is_some_and(|m| link.uses >= m) {
            LinkState::UsedUp
        } else {
            LinkState::Active
        }
    }

    /// As `join list` shows it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LinkState::Active => "active",
            LinkState::Revoked => "revoked",
            LinkState::Expired => "expired",
            LinkState::UsedUp => "used up",
        }
    }
}

/// Whether a link is spent by a click (POST) rather than followed by a GET.
fn limited(link: &JoinLink) -> bool {
    link.max_uses.is_some() || link.expires_at.is_some()
}

/// The links and live codes as last read.
#[derive(Default)]
struct Snapshot {
    /// By slug.
    links: HashMap<String, JoinLink>,
    /// Live code by group JID.
    codes: HashMap<String, String>,
}

/// What reads a group's live link through the API: the running config's
/// groups and engine (a reload sends new ones).
pub(crate) struct Reader {
    engine: Engine,
    groups: HashMap<String, Group>,
}

impl Reader {
    /// Of the running config's `groups`, read through `engine`.
    pub(crate) fn new(engine: Engine, groups: &[Group]) -> Reader {
        Reader {
            engine,
            groups: groups
                .iter()
                .map(|g| (g.jid.as_str().to_owned(), g.clone()))
                .collect(),
        }
    }
}

/// The redirector's state, shared by its handlers.
struct Redirector {
    store: Store,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Uses of unlimited links not written yet: link id → (uses, last).
    counted: Mutex<HashMap<i64, (i64, DateTime<Utc>)>>,
    /// To read the live link of a group whose code the history lacks.
    reader: watch::Receiver<Arc<Reader>>,
    /// Codes read from the API (groups the history had none of), and the
    /// groups read once already.
    learned: RwLock<HashMap<String, String>>,
    tried: Mutex<HashMap<String, Instant>>,
    /// Whether the last read of the links worked (its failure is logged
    /// once, not every [`REFRESH`]).
    reading: AtomicBool,
}

/// How long after a failed read of a group's live link it is tried again.
const RETRY_READ: Duration = Duration::from_secs(60);
/// The longest a visitor waits for that read.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves the join links on `listener` until `stop`, then writes the uses
/// counted so far.
pub(crate) async fn serve(
    listener: TcpListener,
    limits: Limits,
    store: Store,
    reader: watch::Receiver<Arc<Reader>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let redirector = Arc::new(Redirector {
        store,
        snapshot: RwLock::default(),
        counted: Mutex::default(),
        reader,
        learned: RwLock::default(),
        tried: Mutex::default(),
        reading: AtomicBool::new(true),
    });
    redirector.refresh().await;
    let (stop_keeper, mut keeper_stopped) = watch::channel(false);
    let keeper = {
        let r = redirector.clone();
        tokio::spawn(async move {
            let mut refresh = tokio::time::interval(REFRESH);
            let mut flush = tokio::time::interval(FLUSH);
            refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
            flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = keeper_stopped.changed() => break,
                    _ = refresh.tick() => r.refresh().await,
                    _ = flush.tick() => r.flush().await,
                }
            }
        })
    };
    let app = Router::new()
        // Any other method on a link is 404 too, like any other path.
        .route("/j/{slug}", get(show).post(spend).fallback(not_found))
        .fallback(not_found)
        .with_state(redirector.clone());
    let served = listener::serve(listener, app, limits, stop).await;
    stop_keeper.send_replace(true);
    let _ = keeper.await;
    // The uses served until the last connection closed.
    redirector.flush().await;
    let lost: i64 = redirector
        .counted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|(n, _)| n)
        .sum();
    if lost > 0 {
        tracing::error!(
            uses = lost,
            "join links: uses counted but not written at the stop"
        );
    }
    served
}

impl Redirector {
    async fn refresh(&self) {
        let (links, codes) = match (self.store.join_links().await, self.store.join_codes().await) {
            (Ok(links), Ok(codes)) => (links, codes),
            (Err(e), _) | (_, Err(e)) => {
                if self.reading.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "join links: cannot read the links; serving the last known until the database answers");
                }
                return;
            }
        };
        if !self.reading.swap(true, Ordering::Relaxed) {
            tracing::info!("join links: reading the links again");
        }
        let snapshot = Snapshot {
            links: links.into_iter().map(|l| (l.slug.clone(), l)).collect(),
            codes: codes.into_iter().collect(),
        };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes the uses counted so far; they stay counted in memory until
    /// the write has committed (and are written by the next try if it
    /// fails).
    async fn flush(&self) {
        let counted: Vec<(i64, i64, DateTime<Utc>)> = self
            .counted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, (n, at))| (*id, *n, *at))
            .collect();
        if counted.is_empty() {
            return;
        }
        match self.store.add_join_uses(&counted).await {
            Ok(()) => {
                let mut left = self.counted.lock().unwrap_or_else(|p| p.into_inner());
                for (id, n, _) in counted {
                    if let Some(entry) = left.get_mut(&id) {
                        entry.0 -= n;
                        if entry.0 <= 0 {
                            left.remove(&id);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "join links: cannot write the uses counted; kept for the next try")
            }
        }
    }

    fn count(&self, id: i64) {
        let now = Utc::now();
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        let entry = counted.entry(id).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
    }

    /// The live code of group `jid`: the history's, else one read of the
    /// link through the rate budget (once per group; once a minute while
    /// such reads fail).
    async fn code(&self, snapshot: &Snapshot, jid: &str) -> Option<String> {
        if let Some(code) = snapshot.codes.get(jid) {
            return Some(code.clone());
        }
        if let Some(code) = self
            .learned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(jid)
        {
            return Some(code.clone());
        }
        let reader = self.reader.borrow().clone();
        let group = reader.groups.get(jid)?;
        {
            let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
            if tried.get(jid).is_some_and(|at| at.elapsed() < RETRY_READ) {
                return None;
            }
            tried.insert(jid.to_owned(), Instant::now());
        }
        let client = reader.engine.client(&group.instance)?;
        // A visitor waits for this read: bounded, whatever the rate budget says.
        let read = tokio::time::timeout(READ_TIMEOUT, client.group_info(&group.jid)).await;
        let code = read.ok()?.result.ok()?.code?;
        let code = code.as_str().to_owned();
        self.learned
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(jid.to_owned(), code.clone());
        Some(code)
    }
}

/// `GET` and `HEAD /j/{slug}`.
async fn show(
    State(r): State<Arc<Redirector>>,
    slug: Result<Path<String>, PathRejection>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(slug)) = slug else {
        return not_found().await;
    };
    let lang = language(&headers);
    let snapshot = r.snapshot();
    let Some(link) = slug::looks_like(&slug)
        .then(|| snapshot.links.get(&slug))
        .flatten()
    else {
        return not_found().await;
    };
    if LinkState::of(link, Utc::now()) != LinkState::Active {
        return html(StatusCode::GONE, pages::gone(lang));
    }
    if limited(link) {
        return html(StatusCode::OK, pages::join(lang));
    }
    let Some(code) = r.code(&snapshot, &link.group_jid).await else {
        return html(StatusCode::SERVICE_UNAVAILABLE, pages::unavailable(lang));
    };
    if method == Method::GET && !is_preview(&headers) {
        r.count(link.id);
    }
    redirect(StatusCode::FOUND, &code)
}

/// `POST /j/{slug}`: the Join button.
async fn spend(
    State(r): State<Arc<Redirector>>,
    slug: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(slug)) = slug else {
        return not_found().await;
    };
    let lang = language(&headers);
    let snapshot = r.snapshot();
    let Some(link) = slug::looks_like(&slug)
        .then(|| snapshot.links.get(&slug))
        .flatten()
    else {
        return not_found().await;
    };
    if LinkState::of(link, Utc::now()) != LinkState::Active {
        return html(StatusCode::GONE, pages::gone(lang));
    }
    // Known before a use is spent: a click that cannot be sent on keeps it.
    let Some(code) = r.code(&snapshot, &link.group_jid).await else {
        return html(StatusCode::SERVICE_UNAVAILABLE, pages::unavailable(lang));
    };
    if !limited(link) {
        r.count(link.id);
        return redirect(StatusCode::SEE_OTHER, &code);
    }
    // The time of the spend itself: the read above may have taken a while.
    match r.store.spend_join_link(link.id, Utc::now()).await {
        Ok(Spent::To(_)) => redirect(StatusCode::SEE_OTHER, &code),
        Ok(Spent::Gone) => html(StatusCode::GONE, pages::gone(lang)),
        Err(e) => {
            tracing::warn!(link = %link.name, error = %e, "join links: cannot spend a use");
            html(StatusCode::SERVICE_UNAVAILABLE, pages::unavailable(lang))
        }
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-store")],
        "not found\n",
    )
        .into_response()
}

fn language(headers: &HeaderMap) -> Lang {
    Lang::from_header(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The fetchers of link previews (messaging apps, social sites, mail
/// scanners): their GETs are not uses.
fn is_preview(headers: &HeaderMap) -> bool {
    const PREVIEWERS: [&str; 12] = [
        "whatsapp",
        "telegrambot",
        "slackbot",
        "slack-imgproxy",
        "facebookexternalhit",
        "twitterbot",
        "discordbot",
        "linkedinbot",
        "skypeuripreview",
        "signal",
        "googlebot",
        "bingbot",
    ];
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    PREVIEWERS.iter().any(|p| agent.contains(p))
}

fn redirect(status: StatusCode, code: &str) -> Response {
    // The history holds validated codes; a bad one is never sent on.
    let Ok(code) = InviteCode::parse(code) else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::unavailable(Lang::En),
        );
    };
    (
        status,
        [
            (header::LOCATION, code.link()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                // form-action covers the redirect after the POST too.
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https://chat.whatsapp.com; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}
