//! `check`: validate the config and show each group's next rotations.

use super::{Failure, load_config, table};
use crate::cli::CheckFormat;
use crate::config::Purpose;
use crate::exit::Exit;
use chrono::{SecondsFormat, Utc};
use std::path::Path;

pub(super) fn run(path: &Path, next: usize, format: CheckFormat) -> Result<Exit, Failure> {
    let config = load_config(path, Purpose::Run)?;
    let now = Utc::now();
    let upcoming = |g: &crate::config::Group| -> Vec<String> {
        g.schedule
            .upcoming(now, g.timezone, next)
            .iter()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false))
            .collect()
    };
    match format {
        CheckFormat::Json => {
            for g in config.groups.iter() {
                println!(
                    "{}",
                    serde_json::json!({ "group": g.name, "next": upcoming(g) })
                );
            }
        }
        CheckFormat::Table => {
            let rows: Vec<Vec<String>> = config
                .groups
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        g.instance.clone(),
                        g.jid.to_string(),
                        g.schedule.as_str().to_owned(),
                        g.timezone.name().to_owned(),
                        upcoming(g).join(", "),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &["GROUP", "INSTANCE", "JID", "SCHEDULE", "TIMEZONE", "NEXT"],
                    &rows
                )
            );
            eprintln!(
                "{}: valid; {} instance(s), {} group(s)",
                path.display(),
                config.instances.len(),
                config.groups.len()
            );
        }
    }
    Ok(Exit::Success)
}
