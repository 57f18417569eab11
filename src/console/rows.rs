//! The rows of rotations as the console's tables show them (each group's
//! live code hidden, and until when each issued code lived), and the
//! history's filters that choose them.

use super::Console;
use crate::report::time::{ParseTimeError, parse_time};
use crate::store::{HistoryQuery, Rotation, Status};
use serde::Deserialize;
use std::collections::HashMap;

/// A group's name as a query value.
pub(super) fn link(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect()
}

/// A rotation as the tables show it.
pub(super) struct RowView {
    pub(super) id: i64,
    pub(super) started: String,
    pub(super) group: String,
    pub(super) group_link: String,
    pub(super) trigger: String,
    pub(super) status: String,
    pub(super) attempts: i64,
    pub(super) old_code: String,
    pub(super) old_is_live: bool,
    pub(super) new_code: String,
    pub(super) new_is_live: bool,
    pub(super) lived_until: String,
    pub(super) error: String,
}

/// The rows, newest first, with each group's live code hidden and, for
/// each issued code, until when it lived (the next newer rotation of its
/// group on the page that ended it).
pub(super) async fn views(
    console: &Console,
    rows: &[Rotation],
) -> Result<Vec<RowView>, crate::store::StoreError> {
    let mut live: HashMap<&str, Option<String>> = HashMap::new();
    for r in rows {
        if !live.contains_key(r.group_name.as_str()) {
            live.insert(
                &r.group_name,
                console.store.live_code_of(&r.group_name).await?,
            );
        }
    }
    let mut replaced_at: HashMap<&str, String> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let live_code = live.get(r.group_name.as_str()).cloned().flatten();
        let is_live = |c: &Option<String>| c.is_some() && *c == live_code;
        let lived_until = match (&r.new_invite_code, replaced_at.get(r.group_name.as_str())) {
            (None, _) => String::new(),
            (Some(_), Some(at)) => at.clone(),
            (Some(_), None) if is_live(&r.new_invite_code) => "live now".to_owned(),
            (Some(_), None) => "–".to_owned(),
        };
        if r.new_invite_code.is_some() {
            replaced_at.insert(
                &r.group_name,
                r.finished_at
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            );
        }
        out.push(RowView {
            id: r.id,
            started: r.started_at.to_string(),
            group: r.group_name.clone(),
            group_link: link(&r.group_name),
            trigger: r.trigger.to_string(),
            status: r.status.to_string(),
            attempts: r.attempts,
            old_is_live: is_live(&r.old_invite_code),
            old_code: r.old_invite_code.clone().unwrap_or_default(),
            new_is_live: is_live(&r.new_invite_code),
            new_code: r.new_invite_code.clone().unwrap_or_default(),
            lived_until,
            error: r.error.clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// What is wrong with the history's filters.
#[derive(Debug, thiserror::Error)]
pub(super) enum FilterError {
    /// `since` or `until` is not a time.
    #[error(transparent)]
    Time(#[from] ParseTimeError),
    /// `status` is none of the statuses.
    #[error("{0:?} is not a status")]
    Status(String),
    /// `limit` is not a number.
    #[error("{text:?} is not a number of rows")]
    Limit {
        text: String,
        source: std::num::ParseIntError,
    },
}

/// `history`'s filters, as the form sends them.
#[derive(Deserialize, Default)]
pub(super) struct Filters {
    #[serde(default)]
    pub(super) group: String,
    #[serde(default)]
    pub(super) since: String,
    #[serde(default)]
    pub(super) until: String,
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) limit: String,
    pub(super) before: Option<i64>,
}

impl Filters {
    /// The query they make, or what is wrong with them.
    pub(super) fn query(&self) -> Result<HistoryQuery, FilterError> {
        let time = |s: &str| (!s.is_empty()).then(|| parse_time(s)).transpose();
        let status = match self.status.as_str() {
            "" | "any" => None,
            s => Some(Status::parse(s).ok_or_else(|| FilterError::Status(s.to_owned()))?),
        };
        let limit = match self.limit.as_str() {
            "" => None,
            l => Some(l.parse::<u64>().map_err(|source| FilterError::Limit {
                text: l.to_owned(),
                source,
            })?),
        };
        Ok(HistoryQuery {
            group: (!self.group.is_empty()).then(|| self.group.clone()),
            since: time(&self.since)?,
            until: time(&self.until)?,
            status,
            limit,
        })
    }

    /// The filters as a query string (without `before`).
    pub(super) fn encoded(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("group", &self.group)
            .append_pair("since", &self.since)
            .append_pair("until", &self.until)
            .append_pair("status", &self.status)
            .append_pair("limit", &self.limit)
            .finish()
    }
}
