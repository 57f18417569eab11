//! `history`: the audit history as a table, JSON Lines or CSV.

use super::{Failure, load_config, table};
use crate::cli::{HistoryArgs, HistoryFormat};
use crate::config::Tokens;
use crate::exit::Exit;
use crate::store::{HistoryQuery, Store};
use std::io::Write;
use std::path::Path;

pub async fn run(config_path: &Path, args: &HistoryArgs) -> Result<Exit, Failure> {
    // An auditor may hold the database but not the tokens: they are not read.
    let path = match &args.database {
        Some(p) => p.clone(),
        None => load_config(config_path, Tokens::Skip)?.database_path,
    };
    if !path.exists() {
        eprintln!("no history yet: {} does not exist", path.display());
        return Ok(Exit::Success);
    }
    let store = Store::open_read_only(&path)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let query = HistoryQuery {
        group: args.group.clone(),
        since: args.since,
        until: args.until,
        status: args.status,
        limit: args.limit,
    };
    let rows = store
        .history(&query)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let out = std::io::stdout().lock();
    write(out, args.format, &rows)
        .map_err(|e| Failure::Runtime(format!("cannot write the history: {e}")))?;
    Ok(Exit::Success)
}

pub(super) fn write(
    mut out: impl Write,
    format: HistoryFormat,
    rows: &[crate::store::Rotation],
) -> std::io::Result<()> {
    match format {
        HistoryFormat::Json => {
            for r in rows {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
        }
        HistoryFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for r in rows {
                w.serialize(r)?;
            }
            w.flush()?;
            return Ok(());
        }
        HistoryFormat::Table => {
            let dash = || "-".to_owned();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.started_at.clone(),
                        r.group_name.clone(),
                        r.trigger.clone(),
                        r.status.clone(),
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
        }
    }
    out.flush()
}
