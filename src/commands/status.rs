//! `status`: one line per configured group, like `systemctl list-timers`:
//! when it rotates next, its last rotation, and marks for overdue or failing.

use super::nodes::Nodes;
use super::{Failure, history_exists, load_config, table};
use crate::cli::StatusFormat;
use crate::config::Purpose;
use crate::exit::Exit;
use crate::health::{self, Health};
use crate::store::{EventSource, GroupRecord, Store};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// One group in `--format json`. The keys are part of the interface
/// (documented in the README): add, never rename.
#[derive(Serialize)]
struct Line<'a> {
    group: &'a str,
    timezone: &'a str,
    next_due: Option<String>,
    last_started_at: Option<String>,
    last_status: Option<&'static str>,
    last_success_at: Option<String>,
    overdue: bool,
    failing: bool,
    /// With `[events]`: when the webhook of the group's instance was last
    /// registered at RyzeAPI, and why the last try failed if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    events_registered_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events_error: Option<&'a str>,
    /// With `[events]`: when the last event about the group's instance came.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_event_at: Option<&'a str>,
    /// With PostgreSQL: the node that holds the lease (`host pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    active_node: Option<&'a str>,
}

pub(super) async fn run(config_path: &Path, format: StatusFormat) -> Result<Exit, Failure> {
    // Like `history`, `status` needs the groups and the database, not the tokens.
    let config = load_config(config_path, Purpose::Read)?;
    let (records, sources, nodes) = read_records(&config).await?;
    let now = Utc::now();
    let health: Vec<Health> = config
        .groups
        .iter()
        .zip(&records)
        .enumerate()
        .map(|(i, (g, r))| health::assess(i, g, r, now))
        .collect();
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let sources = config.events.is_some().then_some(sources);
    let active_node = nodes.as_ref().and_then(Nodes::active);
    write(
        out,
        format,
        &config.groups,
        &health,
        sources.as_deref(),
        active_node.as_deref(),
        now,
    )
    .map_err(|e| Failure::Runtime(format!("cannot write the status: {e}")))?;
    if let (Some(nodes), StatusFormat::Table) = (&nodes, format) {
        println!("\n{}", nodes.table());
    }
    let overdue = health.iter().filter(|h| h.overdue).count();
    let failing = health.iter().filter(|h| h.failing).count();
    if format == StatusFormat::Table {
        eprintln!(
            "{} group(s): {overdue} overdue, {failing} failing",
            health.len()
        );
    }
    Ok(if health.iter().all(Health::is_healthy) {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// What the history says of each configured group, in config order, and of
/// each instance's events; nothing if the database does not exist yet.
/// Read-only: works beside the daemon and never creates the database.
async fn read_records(
    config: &crate::config::Config,
) -> Result<(Vec<GroupRecord>, Vec<EventSource>, Option<Nodes>), Failure> {
    let names: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
    if let Some(path) = config.database.sqlite_path()
        && !history_exists(path)?
    {
        eprintln!(
            "no history yet: {} does not exist (the daemon creates it when it first starts)",
            path.display()
        );
        let records = names
            .iter()
            .map(|n| GroupRecord {
                group_name: (*n).to_owned(),
                ..GroupRecord::default()
            })
            .collect();
        return Ok((records, Vec::new(), None));
    }
    let store = Store::connect_read_only(&config.database)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let records = store
        .group_records(&names)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    // A history the daemon has not yet upgraded has no events: none shown.
    let sources = store.event_sources().await.unwrap_or_default();
    let nodes = match config.database {
        crate::config::Database::Postgres(_) => Nodes::read(&store, config.ha.lease).await,
        crate::config::Database::Sqlite(_) => None,
    };
    Ok((records, sources, nodes))
}

fn write(
    mut out: impl Write,
    format: StatusFormat,
    groups: &[crate::config::Group],
    health: &[Health],
    sources: Option<&[EventSource]>,
    active_node: Option<&str>,
    now: DateTime<Utc>,
) -> std::io::Result<()> {
    let source = |instance: &str| {
        sources
            .unwrap_or_default()
            .iter()
            .find(|s| s.instance == instance)
    };
    match format {
        StatusFormat::Json => {
            for (g, h) in groups.iter().zip(health) {
                let zoned = |t: DateTime<Utc>| rfc3339(t.with_timezone(&g.timezone));
                let events = source(&g.instance);
                let line = Line {
                    group: &g.name,
                    timezone: g.timezone.name(),
                    next_due: h.next.map(rfc3339),
                    last_started_at: h.last.map(|l| zoned(l.started_at)),
                    last_status: h.last.map(|l| l.status.as_str()),
                    last_success_at: h.last_success_at.map(zoned),
                    overdue: h.overdue,
                    failing: h.failing,
                    events_registered_at: events.and_then(|s| s.registered_at.as_deref()),
                    events_error: events
                        .and_then(|s| s.register_error.as_deref().or(s.websocket_error.as_deref())),
                    last_event_at: events.and_then(|s| s.last_event_at.as_deref()),
                    active_node,
                };
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        StatusFormat::Table => {
            let rows: Vec<Vec<String>> = groups
                .iter()
                .zip(health)
                .map(|(g, h)| row(g.timezone, &g.name, h, now))
                .collect();
            let headers = ["GROUP", "NEXT", "LEFT", "LAST", "PASSED", "RESULT", "MARK"];
            out.write_all(table::render(&headers, &rows).as_bytes())?;
            if let Some(sources) = sources {
                out.write_all(b"\n")?;
                out.write_all(events_table(groups, sources, now).as_bytes())?;
            }
        }
    }
    out.flush()
}

/// Per instance: whether RyzeAPI was told where to post (the webhook), how
/// the WebSocket does, and when the last event came.
fn events_table(
    groups: &[crate::config::Group],
    sources: &[EventSource],
    now: DateTime<Utc>,
) -> String {
    let mut instances: Vec<&str> = groups.iter().map(|g| g.instance.as_str()).collect();
    instances.sort_unstable();
    instances.dedup();
    let ago = |t: Option<&str>| {
        t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(
                || "never".to_owned(),
                |t| format!("{} ago", span(now - t.with_timezone(&Utc))),
            )
    };
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|instance| {
            let s = sources.iter().find(|s| s.instance == *instance);
            let webhook = match s {
                Some(EventSource {
                    register_error: Some(e),
                    ..
                }) => format!("failing: {e}"),
                Some(EventSource {
                    registered_at: Some(t),
                    ..
                }) => format!("registered {}", ago(Some(t))),
                _ => "-".to_owned(),
            };
            let websocket = match s {
                Some(EventSource {
                    websocket_error: Some(e),
                    ..
                }) => format!("down: {e}"),
                Some(EventSource {
                    websocket_at: Some(t),
                    ..
                }) => format!("connected {}", ago(Some(t))),
                _ => "-".to_owned(),
            };
            vec![
                (*instance).to_owned(),
                webhook,
                websocket,
                ago(s.and_then(|s| s.last_event_at.as_deref())),
            ]
        })
        .collect();
    table::render(&["INSTANCE", "WEBHOOK", "WEBSOCKET", "LAST EVENT"], &rows)
}

fn row(tz: Tz, name: &str, h: &Health, now: DateTime<Utc>) -> Vec<String> {
    let dash = || "-".to_owned();
    let (next, left) = h.next.map_or_else(
        || ("never".to_owned(), dash()),
        |t| (people(t), span(t.with_timezone(&Utc) - now)),
    );
    let (last, passed, result) = h.last.map_or_else(
        || ("never".to_owned(), dash(), dash()),
        |l| {
            (
                people(l.started_at.with_timezone(&tz)),
                format!("{} ago", span(now - l.started_at)),
                l.status.as_str().to_owned(),
            )
        },
    );
    let marks: Vec<&str> = [(h.overdue, "overdue"), (h.failing, "failing")]
        .into_iter()
        .filter_map(|(on, mark)| on.then_some(mark))
        .collect();
    vec![
        name.to_owned(),
        next,
        left,
        last,
        passed,
        result,
        marks.join(","),
    ]
}

/// A time for people, in the group's zone: `Sat 2026-11-28 03:07:12 -03`.
fn people<Z: TimeZone>(t: DateTime<Z>) -> String
where
    Z::Offset: std::fmt::Display,
{
    t.format("%a %Y-%m-%d %H:%M:%S %Z").to_string()
}

fn rfc3339<Z: TimeZone>(t: DateTime<Z>) -> String
where
    Z::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A span in its two largest units, as systemd writes them: `2d 4h`,
/// `13h 2min`, `5min 3s`, `12s`.
fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins, secs) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) => format!("{mins}min {secs}s"),
        (0, _, _) => format!("{hours}h {mins}min"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spans_keep_their_two_largest_units() {
        let span = |s| super::span(chrono::Duration::seconds(s));
        assert_eq!(span(12), "12s");
        assert_eq!(span(303), "5min 3s");
        assert_eq!(span(13 * 3600 + 120 + 5), "13h 2min");
        assert_eq!(span(2 * 86_400 + 4 * 3600 + 59), "2d 4h");
        assert_eq!(span(-5), "0s");
    }
}
