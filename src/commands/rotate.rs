//! `rotate`: rotate groups now, through the same engine as the daemon.

use super::{Failure, load_config, table};
use crate::config::{Group, Purpose};
use crate::engine::Engine;
use crate::exit::Exit;
use crate::rotation::RotateError;
use crate::signals;
use crate::store::{Status, Store, Trigger};
use std::path::Path;

pub(super) async fn run(path: &Path, all: bool, keys: &[String]) -> Result<Exit, Failure> {
    if !all && keys.is_empty() {
        return Err(Failure::Usage(
            "name the groups to rotate (by name or JID), or use --all for every group".into(),
        ));
    }
    let config = load_config(path, Purpose::Run)?;
    let groups: Vec<Group> = if all {
        config.groups.to_vec()
    } else {
        let mut picked: Vec<Group> = Vec::new();
        for key in keys {
            let group = config.find_group(key).ok_or_else(|| {
                Failure::Usage(format!(
                    "no group named {key:?} (nor with that JID) in {}",
                    path.display()
                ))
            })?;
            // Naming a group twice must not rotate it twice.
            if !picked.iter().any(|g| g.name == group.name) {
                picked.push(group.clone());
            }
        }
        picked
    };
    let store = Store::connect(&config.database)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let engine = Engine::new(&config, store).map_err(|e| Failure::Runtime(e.to_string()))?;
    // ^C or SIGTERM: no new rotation starts, those in flight finish and are
    // recorded. A second one ends the process at once.
    let stop = async {
        signals::shutdown().await;
        eprintln!("interrupted: finishing the rotations in flight (again to abort them)");
        tokio::spawn(async {
            signals::shutdown().await;
            std::process::exit(130);
        });
    };
    let results = engine
        .rotate_many_until(&groups, Trigger::Manual, stop)
        .await;

    let mut all_ok = true;
    let mut rows = Vec::with_capacity(results.len());
    for (group, result) in groups.iter().zip(results) {
        let row = match result.unwrap_or(Err(RotateError::NotStarted)) {
            Ok(r) => {
                all_ok &= r.status == Status::Succeeded;
                vec![
                    r.group,
                    r.status.as_str().to_owned(),
                    r.attempts.to_string(),
                    r.old_code.unwrap_or_else(|| "-".into()),
                    r.new_code.unwrap_or_else(|| "-".into()),
                    r.error.unwrap_or_default(),
                ]
            }
            Err(e) => {
                all_ok = false;
                let status = match e {
                    RotateError::Busy { .. }
                    | RotateError::NotStarted
                    | RotateError::Fenced
                    | RotateError::Served => "skipped",
                    _ => "not recorded",
                };
                vec![
                    group.name.clone(),
                    status.into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    e.to_string(),
                ]
            }
        };
        rows.push(row);
    }
    print!(
        "{}",
        table::render(
            &["GROUP", "STATUS", "ATTEMPTS", "OLD", "NEW", "ERROR"],
            &rows
        )
    );
    Ok(if all_ok { Exit::Success } else { Exit::Failure })
}
