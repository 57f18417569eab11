//! The console's pages: each reads what it shows through the console's
//! read-only store (a page of at most a few hundred rows, found by index)
//! and renders it with its askama template.

use super::rows::{Filters, RowView, link, views};
use super::{Console, store_error};
use crate::report::Format as HistoryFormat;
use crate::store::{HistoryQuery, Status};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{Duration, SecondsFormat, Utc};
use std::sync::Arc;

/// Rows per page.
pub(super) const PAGE: u64 = 50;
/// The most rows a page shows, whatever `limit` asks.
const MAX_PAGE: u64 = 500;

pub(super) type Shared = State<Arc<Console>>;

pub(super) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render\n",
            )
                .into_response()
        }
    }
}

pub(super) fn failed(e: &crate::store::StoreError) -> Response {
    tracing::warn!(error = %e, "console: cannot read the history");
    (StatusCode::SERVICE_UNAVAILABLE, store_error(e)).into_response()
}

struct GroupView {
    name: String,
    link: String,
    last: String,
    last_status: String,
    last_success: String,
    next: String,
    overdue: bool,
    failing: bool,
}

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    nav: &'static str,
    groups: Vec<GroupView>,
    overdue: usize,
    failing: usize,
    chart: String,
    chart_at: String,
}

/// `/`: the groups, as `status` sees them, and the chart.
pub(super) async fn groups(State(console): Shared) -> Response {
    let config = console.config.borrow().clone();
    let names: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
    let records = match console.store.group_records(&names).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let now = Utc::now();
    let stamp = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let groups: Vec<GroupView> = config
        .groups
        .iter()
        .zip(&records)
        .enumerate()
        .map(|(i, (g, r))| {
            let h = crate::health::assess(i, g, r, now);
            GroupView {
                name: g.name.clone(),
                link: link(&g.name),
                last: h
                    .last
                    .map(|l| stamp(l.started_at))
                    .unwrap_or_else(|| "never".into()),
                last_status: h.last.map(|l| l.status.to_string()).unwrap_or_default(),
                last_success: h
                    .last_success_at
                    .map(stamp)
                    .unwrap_or_else(|| "never".into()),
                next: h
                    .next
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "never".into()),
                overdue: h.overdue,
                failing: h.failing,
            }
        })
        .collect();
    let (chart, chart_at) = {
        let cache = console.cache.read().unwrap_or_else(|p| p.into_inner());
        (
            cache.chart.clone(),
            cache.chart_at.map(stamp).unwrap_or_default(),
        )
    };
    render(&GroupsPage {
        nav: "groups",
        overdue: groups.iter().filter(|g| g.overdue).count(),
        failing: groups.iter().filter(|g| g.failing).count(),
        groups,
        chart,
        chart_at,
    })
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage<'a> {
    nav: &'static str,
    f: &'a Filters,
    statuses: [&'static str; 5],
    error: Option<String>,
    query: String,
    rows: Vec<RowView>,
    older: Option<i64>,
}

/// `/history`: the filters, a page of rows, the downloads.
pub(super) async fn history(State(console): Shared, Query(f): Query<Filters>) -> Response {
    let statuses = ["any", "succeeded", "failed", "unknown", "pending"];
    let (rows, older, error) = match f.query() {
        Err(e) => (Vec::new(), None, Some(e.to_string())),
        Ok(mut q) => {
            let page = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
            q.limit = Some(page);
            let rows = match console.store.history_page(&q, f.before).await {
                Ok(r) => r,
                Err(e) => return failed(&e),
            };
            let older = (rows.len() as u64 == page)
                .then(|| rows.last().map(|r| r.id))
                .flatten();
            match views(&console, &rows).await {
                Ok(v) => (v, older, None),
                Err(e) => return failed(&e),
            }
        }
    };
    render(&HistoryPage {
        nav: "history",
        query: f.encoded(),
        f: &f,
        statuses,
        error,
        rows,
        older,
    })
}

/// `/history.csv`: what `history --format csv` prints for the filters.
pub(super) async fn history_csv(State(console): Shared, Query(f): Query<Filters>) -> Response {
    download(&console, &f, HistoryFormat::Csv).await
}

/// `/history.json`: what `history --format json` prints for the filters.
pub(super) async fn history_json(State(console): Shared, Query(f): Query<Filters>) -> Response {
    download(&console, &f, HistoryFormat::Json).await
}

async fn download(console: &Console, f: &Filters, format: HistoryFormat) -> Response {
    let q = match f.query() {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut body = Vec::new();
    if let Err(crate::report::Streamed::Read(e)) =
        crate::report::write_stream(&console.store, &q, format, &mut body).await
    {
        return failed(&e);
    }
    // What `history` prints, live codes included: the download is the
    // asking, and it is logged as a showing.
    tracing::info!(
        rows = body.iter().filter(|b| **b == b'\n').count(),
        "console: the history was downloaded; the live codes were shown"
    );
    let (kind, name) = match format {
        HistoryFormat::Csv => ("text/csv; charset=utf-8", "history.csv"),
        _ => ("application/x-ndjson", "history.jsonl"),
    };
    (
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "failures.html")]
struct FailuresPage {
    nav: &'static str,
    since: String,
    rows: Vec<RowView>,
}

/// `/failures`: failed and unknown rotations of the last 7 days.
pub(super) async fn failures(State(console): Shared) -> Response {
    let since = Utc::now() - Duration::days(7);
    let mut rows = Vec::new();
    for status in [Status::Failed, Status::Unknown] {
        let q = HistoryQuery {
            since: Some(since),
            status: Some(status),
            limit: Some(MAX_PAGE),
            ..HistoryQuery::default()
        };
        match console.store.history_page(&q, None).await {
            Ok(r) => rows.extend(r),
            Err(e) => return failed(&e),
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.id));
    rows.truncate(MAX_PAGE as usize);
    let rows = match views(&console, &rows).await {
        Ok(v) => v,
        Err(e) => return failed(&e),
    };
    render(&FailuresPage {
        nav: "failures",
        since: since.to_rfc3339_opts(SecondsFormat::Secs, true),
        rows,
    })
}

struct EventView {
    id: i64,
    received: String,
    instance: String,
    group: String,
    kind: String,
    outcome: String,
}

struct DeliveryView {
    created: String,
    hook: String,
    rotation: i64,
    status: String,
    state: String,
    attempts: i64,
    result: String,
    error: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    nav: &'static str,
    events_on: bool,
    events: Vec<EventView>,
    hooks_on: bool,
    deliveries: Vec<DeliveryView>,
}

/// `/events`: RyzeAPI's latest events (never their data) and the latest
/// hook deliveries, their errors masked of secrets and known codes.
pub(super) async fn events(State(console): Shared) -> Response {
    let config = console.config.borrow().clone();
    let events_on = config.events.is_some();
    let hooks_on = !config.hooks.is_empty();
    let events = if events_on {
        match console.store.recent_events(100).await {
            Ok(e) => e,
            Err(e) => return failed(&e),
        }
    } else {
        Vec::new()
    };
    let mut deliveries = match console.store.recent_deliveries(100).await {
        Ok(d) => d,
        Err(e) => return failed(&e),
    };
    // Receivers' words: masked when stored; masked again for rows stored
    // before that (or by an older version).
    let mut errors: Vec<String> = deliveries
        .iter_mut()
        .map(|d| d.last_error.take().unwrap_or_default())
        .collect();
    crate::mask::Masker::of(&config)
        .mask_known_all(&console.store, &mut errors)
        .await;
    for (d, error) in deliveries.iter_mut().zip(errors) {
        d.last_error = Some(error);
    }
    render(&EventsPage {
        nav: "events",
        events_on,
        events: events
            .into_iter()
            .rev()
            .map(|e| EventView {
                id: e.id,
                received: e.received_at.to_string(),
                instance: e.instance,
                group: e.group_jid.unwrap_or_default(),
                kind: e.kind.to_string(),
                outcome: e.outcome.unwrap_or_else(|| "waiting".into()),
            })
            .collect(),
        hooks_on,
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView {
                created: d.created_at.to_string(),
                hook: d.hook_name,
                rotation: d.rotation_id,
                status: d.status,
                state: d.state.to_string(),
                attempts: d.attempts,
                result: d.last_result.unwrap_or_default(),
                error: d.last_error.unwrap_or_default(),
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "ledger.html")]
struct LedgerPage {
    nav: &'static str,
    entries: i64,
    head: String,
    signing: bool,
    key: String,
    checkpoint: String,
    verified_ok: bool,
    verified_state: String,
    verified: String,
}

/// `/ledger`: its head, the last checkpoint, the last verification.
pub(super) async fn ledger(State(console): Shared) -> Response {
    let key = console.config.borrow().audit_key.clone();
    let (head, last) = match (
        console.store.ledger_head().await,
        console.store.last_checkpoint().await,
    ) {
        (Ok(h), Ok(l)) => (h, l),
        (Err(e), _) | (_, Err(e)) => return failed(&e),
    };
    let (entries, head) = head.unwrap_or((0, crate::audit::entry::GENESIS.to_owned()));
    let checkpoint =
        match last.and_then(|(_, line)| crate::audit::Checkpoint::verify(&line, None).ok()) {
            Some(cp) => format!(
                "covers entry {} (hash {}…), signed {} by key {}…",
                cp.seq,
                cp.hash.chars().take(16).collect::<String>(),
                cp.at,
                cp.key.chars().take(16).collect::<String>()
            ),
            None => "none yet".into(),
        };
    let (verified_ok, verified_state, verified) = {
        let cache = console.cache.read().unwrap_or_else(|p| p.into_inner());
        match &cache.verified {
            None => (false, "not yet verified".to_owned(), String::new()),
            Some((at, Ok(summary))) => (
                true,
                String::new(),
                format!(
                    "{summary}; verified {}",
                    at.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
            ),
            Some((at, Err(d))) => (
                false,
                format!("NOT INTACT: {d}"),
                format!("verified {}", at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ),
        }
    };
    render(&LedgerPage {
        nav: "ledger",
        entries,
        head,
        signing: key.is_some(),
        key: key.map(|k| k.public_hex()).unwrap_or_default(),
        checkpoint,
        verified_ok,
        verified_state,
        verified,
    })
}

/// Anything else.
pub(super) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
