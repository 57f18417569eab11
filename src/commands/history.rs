//! `history`: the audit history as a table, JSON Lines or CSV.
//!
//! JSON Lines and CSV are streamed: each row is written as SQLite reads it,
//! so a million rows cost one row of memory. The table is for people and
//! needs every row to size its columns.

use super::{Failure, open_history};
use crate::cli::{HistoryArgs, HistoryFormat};
use crate::exit::Exit;
use crate::report::{Streamed, write_stream, write_table};
use crate::store::HistoryQuery;
use std::io::BufWriter;
use std::path::Path;

pub(crate) async fn run(config_path: &Path, args: &HistoryArgs) -> Result<Exit, Failure> {
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
            Ok(rows) => write_table(out, &rows).map_err(Streamed::Write),
            Err(e) => Err(Streamed::Read(e)),
        },
        HistoryFormat::Json | HistoryFormat::Csv => {
            write_stream(&store, &query, args.format, out).await
        }
    };
    match written {
        Ok(()) => Ok(Exit::Success),
        // A reader that went away (`| head`) is not an error of ours.
        Err(Streamed::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(Streamed::Write(e)) => Err(Failure::Runtime(format!("cannot write the history: {e}"))),
        Err(Streamed::Read(e)) => Err(Failure::Runtime(e.to_string())),
    }
}
