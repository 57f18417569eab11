//! A group's page: its codes as a timeline, and its live code, shown only
//! on a POST from the console's own pages (and logged).

use super::Console;
use super::pages::{PAGE, Shared, failed, not_found, render};
use super::rows::{RowView, link, views};
use crate::store::HistoryQuery;
use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct GroupQuery {
    name: String,
    before: Option<i64>,
}

/// The live code's form: `name=N`.
#[derive(Deserialize)]
pub(super) struct RevealForm {
    name: String,
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    nav: &'static str,
    name: String,
    link: String,
    jid: String,
    instance: String,
    schedule: String,
    timezone: String,
    revealed: Option<String>,
    rows: Vec<RowView>,
    older: Option<i64>,
}

/// `/group?name=N`: its codes as a timeline, newest first, the live code
/// hidden.
pub(super) async fn group(State(console): Shared, Query(q): Query<GroupQuery>) -> Response {
    group_page(&console, &q.name, q.before, false).await
}

/// `POST /reveal` (`name=N`), from the console's own page: the group's
/// page with its live code shown, and the showing logged. From anywhere
/// else (another site's form or image): 403, nothing shown or logged.
pub(super) async fn reveal(
    State(console): Shared,
    headers: HeaderMap,
    Form(form): Form<RevealForm>,
) -> Response {
    if !super::auth::same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "the live code is shown only from the console's own pages\n",
        )
            .into_response();
    }
    group_page(&console, &form.name, None, true).await
}

async fn group_page(console: &Console, name: &str, before: Option<i64>, reveal: bool) -> Response {
    let config = console.config.borrow().clone();
    let Some(g) = config.groups.iter().find(|g| g.name == name) else {
        return not_found().await;
    };
    let query = HistoryQuery {
        group: Some(g.name.clone()),
        limit: Some(PAGE),
        ..HistoryQuery::default()
    };
    let rows = match console.store.history_page(&query, before).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let revealed = if reveal {
        tracing::info!(group = %g.name, "console: the live code was shown");
        match console.store.live_code_of(&g.name).await {
            Ok(code) => Some(code.unwrap_or_else(|| "(none recorded yet)".into())),
            Err(e) => return failed(&e),
        }
    } else {
        None
    };
    let older = (rows.len() as u64 == PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let rows = match views(console, &rows).await {
        Ok(v) => v,
        Err(e) => return failed(&e),
    };
    render(&GroupPage {
        nav: "groups",
        name: g.name.clone(),
        link: link(&g.name),
        jid: g.jid.to_string(),
        instance: g.instance.clone(),
        schedule: g.schedule.as_str().to_owned(),
        timezone: g.timezone.to_string(),
        revealed,
        rows,
        older,
    })
}
