//! `history`: the audit history as a table, JSON Lines or CSV.
//!
//! JSON Lines and CSV are streamed: each row is written as SQLite reads it,
//! so a million rows cost one row of memory. The table is for people and
//! needs every row to size its columns.

use super::{Failure, open_history, table};
use crate::cli::{HistoryArgs, HistoryFormat};
use crate::exit::Exit;
use crate::store::{HistoryQuery, Rotation, Store, StoreError};
use std::io::{BufWriter, Write};
use std::path::Path;

pub async fn run(config_path: &Path, args: &HistoryArgs) -> Result<Exit, Failure> {
    // An auditor may hold the database but not the tokens: they are not read.
    let store = open_history(config_path, args.database.as_deref()).await?;
    if !store
        .has_history()
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?
    {
        eprintln!("no rotations yet: {} holds no history", store.name());
        return Ok(Exit::Success);
    }
    let query = HistoryQuery {
        group: args.group.clone(),
        since: args.since,
        until: args.until,
        status: args.status,
        limit: args.limit,
    };
    let out = BufWriter::new(std::io::stdout().lock());
    let written = match args.format {
        HistoryFormat::Table => match store.history(&query).await {
            Ok(rows) => write_table(out, &rows).map_err(Trouble::Write),
            Err(e) => Err(Trouble::Read(e)),
        },
        HistoryFormat::Json | HistoryFormat::Csv => write_stream(&store, &query, args.format, out)
            .await
            .map_err(|e| match e {
                Streamed::Read(e) => Trouble::Read(e),
                Streamed::Write(e) => Trouble::Write(e),
            }),
    };
    match written {
        Ok(()) => Ok(Exit::Success),
        // A reader that went away (`| head`) is not an error of ours.
        Err(Trouble::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(Trouble::Write(e)) => Err(Failure::Runtime(format!("cannot write the history: {e}"))),
        Err(Trouble::Read(e)) => Err(Failure::Runtime(e.to_string())),
    }
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
    format: HistoryFormat,
    out: impl Write,
) -> Result<(), Streamed> {
    let written = match format {
        HistoryFormat::Csv => {
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
pub(super) fn write_table(mut out: impl Write, rows: &[Rotation]) -> std::io::Result<()> {
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
