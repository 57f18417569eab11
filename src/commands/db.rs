//! `db copy --from PATH`: moving a SQLite history into the configured
//! PostgreSQL database.

use super::{Failure, history_exists, load_config, table};
use crate::config::{Database, Purpose};
use crate::exit::Exit;
use crate::store::{LockError, Store};
use std::path::Path;

pub(super) async fn copy(config_path: &Path, from: &Path) -> Result<Exit, Failure> {
    // The target's password is read; the instances' tokens are not needed.
    let config = load_config(config_path, Purpose::Read)?;
    if !matches!(config.database, Database::Postgres(_)) {
        return Err(Failure::ConfigLacks(format!(
            "{}: database.url names no PostgreSQL database to copy into",
            config_path.display()
        )));
    }
    if !history_exists(from)? {
        return Err(Failure::NoInput(format!(
            "no SQLite history at {} (--from)",
            from.display()
        )));
    }
    // A daemon still writing to the file would leave its last rotations
    // behind: it must be stopped, and none may start while this copies.
    let _daemon_lock = Store::lock_daemon(from).map_err(|e| match e {
        LockError::Held(_) => Failure::Runtime(format!(
            "a daemon is running on {}: stop it first, so that nothing it writes stays behind",
            from.display()
        )),
        e => Failure::Runtime(format!("cannot lock {}: {e}", from.display())),
    })?;
    let runtime = |e: &dyn std::fmt::Display| Failure::Runtime(e.to_string());
    // Opened as the daemon would: brought to the current schema first.
    let source = Store::open(from).await.map_err(|e| runtime(&e))?;
    let target = Store::connect(&config.database)
        .await
        .map_err(|e| runtime(&e))?;
    if target.holds_rotations().await.map_err(|e| runtime(&e))? {
        return Err(Failure::Runtime(format!(
            "{} already holds rotations: a copy goes into a new, empty database",
            target.name()
        )));
    }
    let copied = target.copy_from(&source).await.map_err(|e| runtime(&e))?;
    let rows: Vec<Vec<String>> = copied
        .iter()
        .map(|(table, n)| vec![(*table).to_owned(), n.to_string()])
        .collect();
    print!("{}", table::render(&["TABLE", "ROWS"], &rows));
    eprintln!(
        "copied {} into {}; every table's count checked",
        from.display(),
        target.name()
    );
    Ok(Exit::Success)
}
