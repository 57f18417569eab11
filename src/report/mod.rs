//! What the history and the other reports look like as text: aligned
//! tables for people, and the history as JSON Lines or CSV, streamed (the
//! `history` command and the console's downloads write the same bytes),
//! and the times a reader types (`--since 7d`).

pub(crate) mod table;
pub(crate) mod time;

use crate::store::{HistoryQuery, Rotation, Store, StoreError};
use std::io::Write;

/// How the history is written (`history --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// JSON Lines, keys named as the database columns.
    Json,
    /// CSV with a header row of the database column names.
    Csv,
}

/// Why [`write_stream`] stopped.
pub(crate) enum Streamed {
    /// The database failed.
    Read(StoreError),
    /// The output failed.
    Write(std::io::Error),
}

/// Writes the rows of `query` as `history --format json|csv` prints them
/// (the console's downloads are these very bytes), streamed.
pub(crate) async fn write_stream(
    store: &Store,
    query: &HistoryQuery,
    format: Format,
    out: impl Write,
) -> Result<(), Streamed> {
    let written = match format {
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            store
                .each_in_history(query, |r| {
                    csv.serialize(printable_row(r))
                        .map_err(|e| Trouble::Write(e.into()))
                })
                .await
                .and_then(|()| csv.flush().map_err(Trouble::Write))
        }
        _ => {
            let mut out = out;
            store
                .each_in_history(query, |r| {
                    serde_json::to_writer(&mut out, &r)?;
                    out.write_all(b"\n").map_err(Trouble::Write)
                })
                .await
                .and_then(|()| out.flush().map_err(Trouble::Write))
        }
    };
    written.map_err(|e| match e {
        Trouble::Read(e) => Streamed::Read(e),
        Trouble::Write(e) => Streamed::Write(e),
    })
}

/// The row as a CSV cell may hold it (a CSV is opened in terminals and
/// spreadsheets): a cell a spreadsheet would run as a formula (starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`,
/// as OWASP's "CSV injection" advises, and every control character is shown
/// as U+FFFD (see [`table::printable`]). `history --format csv` and the
/// console's download both write through here.
fn printable_row(mut r: Rotation) -> Rotation {
    let clean = |s: &mut String| {
        neutralise(s);
        if let std::borrow::Cow::Owned(c) = table::printable(s) {
            *s = c;
        }
    };
    for s in [
        &mut r.group_name,
        &mut r.group_jid,
        &mut r.instance,
        &mut r.started_at.0,
    ] {
        clean(s);
    }
    for s in [
        r.scheduled_for.as_mut().map(|t| &mut t.0),
        r.finished_at.as_mut().map(|t| &mut t.0),
    ]
    .into_iter()
    .flatten()
    {
        clean(s);
    }
    for s in [
        &mut r.old_invite_code,
        &mut r.new_invite_code,
        &mut r.new_invite_link,
        &mut r.error,
    ]
    .into_iter()
    .flatten()
    {
        clean(s);
    }
    r
}

/// Prefixes `'` to a cell a spreadsheet would take for a formula.
fn neutralise(cell: &mut String) {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.insert(0, '\'');
    }
}

/// What can stop a stream of rows half way.
enum Trouble {
    Read(StoreError),
    Write(std::io::Error),
}

impl From<StoreError> for Trouble {
    fn from(e: StoreError) -> Self {
        Trouble::Read(e)
    }
}

impl From<serde_json::Error> for Trouble {
    fn from(e: serde_json::Error) -> Self {
        Trouble::Write(e.into())
    }
}

/// The rows as an aligned table.
pub(crate) fn write_table(mut out: impl Write, rows: &[Rotation]) -> std::io::Result<()> {
    let dash = || "-".to_owned();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.started_at.to_string(),
                r.group_name.clone(),
                r.trigger.to_string(),
                r.status.to_string(),
                r.attempts.to_string(),
                r.old_invite_code.clone().unwrap_or_else(dash),
                r.new_invite_code.clone().unwrap_or_else(dash),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let headers = [
        "ID", "STARTED", "GROUP", "TRIGGER", "STATUS", "ATTEMPTS", "OLD", "NEW", "ERROR",
    ];
    out.write_all(table::render(&headers, &cells).as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::neutralise;

    #[test]
    fn cells_a_spreadsheet_would_run_get_a_leading_quote_and_no_other_cell_does() {
        for (cell, shown) in [
            ("=1+2", "'=1+2"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("vip=1", "vip=1"),
            ("2026-12-07T00:00:00Z", "2026-12-07T00:00:00Z"),
            ("", ""),
        ] {
            let mut c = cell.to_owned();
            neutralise(&mut c);
            assert_eq!(c, shown);
        }
    }
}
