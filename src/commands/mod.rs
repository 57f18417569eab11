//! What each command does. Each returns an [`Exit`]; messages go to stderr,
//! results to stdout.

mod audit;
mod check;
mod completions;
mod db;
mod demo;
mod emulator;
mod events;
pub(crate) mod history;
mod join;
mod manpage;
mod nodes;
mod rotate;
mod run;

mod status;

use crate::cli::{AuditCommand, Cli, Command, DbCommand, EventsCommand, JoinCommand};
use crate::config::{Config, ConfigError, Purpose};
use crate::exit::Exit;
use crate::report::table;
use std::path::Path;

/// Runs the command `cli` names.
pub async fn dispatch(cli: Cli) -> Exit {
    let config = cli.config_path();
    if config.is_none() && cli.config.is_some() {
        return Failure::Usage("this command reads no config: drop --config".into()).report();
    }
    let config = config.unwrap_or_default();
    let result = match cli.command {
        Command::Check { next, format, .. } => check::run(&config, next, format),
        Command::Rotate { all, groups, .. } => rotate::run(&config, all, &groups).await,
        Command::History(args) => history::run(&config, &args).await,
        Command::Status { format, .. } => status::run(&config, format).await,
        Command::Events(EventsCommand::List { limit, format, .. }) => {
            events::list(&config, limit, format).await
        }
        Command::Events(EventsCommand::Register { .. }) => events::register(&config).await,
        Command::Db(DbCommand::Copy { from, .. }) => db::copy(&config, &from).await,
        Command::Join(JoinCommand::Create {
            group,
            name,
            expires,
            max_uses,
            note,
            qr,
            output,
            ..
        }) => {
            let args = join::Create {
                group,
                name,
                expires,
                max_uses,
                note,
                qr,
                output,
            };
            join::create(&config, args).await
        }
        Command::Join(JoinCommand::List { format, .. }) => join::list(&config, format).await,
        Command::Join(JoinCommand::Revoke { name, .. }) => join::revoke(&config, &name).await,
        Command::Audit(AuditCommand::Keygen { output, .. }) => audit::keygen(&output),
        Command::Audit(AuditCommand::Verify {
            database,
            bundle,
            public_key,
            checkpoint,
            ..
        }) => {
            let args = audit::VerifyArgs {
                database,
                bundle,
                public_key,
                checkpoints: checkpoint,
            };
            audit::verify(&config, args).await
        }
        Command::Audit(AuditCommand::Export { since, output, .. }) => {
            audit::export(&config, since, &output).await
        }
        Command::Completions { shell } => completions::run(shell),
        Command::Manpage { dir } => manpage::run(dir.as_deref()),
        Command::Run(_) => run::run(&config).await,
        Command::Demo { seconds, .. } => demo::run(seconds).await,
        Command::Emulator {
            listen,
            requests_per_minute,
            latency,
            event_shape,
            ..
        } => emulator::run(listen, requests_per_minute, latency, event_shape).await,
    };
    result.unwrap_or_else(|failure| failure.report())
}

/// Why a command stopped.
#[derive(Debug)]
pub enum Failure {
    /// The config is invalid: exit 78.
    Config(ConfigError),
    /// The config lacks what the command needs: exit 78.
    ConfigLacks(String),
    /// The command line asked for something that does not exist: exit 2.
    Usage(String),
    /// A file to read does not exist: exit 66.
    NoInput(String),
    /// Anything else: exit 1.
    Runtime(String),
}

impl Failure {
    fn report(self) -> Exit {
        match self {
            Failure::Config(e) => {
                eprintln!("invalid configuration:\n{e}");
                Exit::Config
            }
            Failure::ConfigLacks(m) => {
                eprintln!("error: {m}");
                Exit::Config
            }
            Failure::Usage(m) => {
                eprintln!("error: {m}");
                Exit::Usage
            }
            Failure::NoInput(m) => {
                eprintln!("error: {m}");
                Exit::NoInput
            }
            Failure::Runtime(m) => {
                eprintln!("error: {m}");
                Exit::Failure
            }
        }
    }
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> Result<Exit, Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Runtime(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(Exit::Success),
    }
}

/// Opens the history read-only for an auditor's command: `--database`
/// (a SQLite file, no config read, so no token needed), else the config's.
/// A SQLite file that does not exist is exit 66: a typo must not pass for
/// an empty history.
async fn open_history(
    config_path: &Path,
    database: Option<&Path>,
) -> Result<crate::store::Store, Failure> {
    let (database, named) = match database {
        Some(p) => (crate::config::Database::Sqlite(p.to_owned()), "--database"),
        None => (
            load_config(config_path, Purpose::Read)?.database,
            "database.path",
        ),
    };
    if let Some(path) = database.sqlite_path()
        && !history_exists(path)?
    {
        return Err(Failure::NoInput(format!(
            "no history database at {} ({named}); the daemon creates it when it first starts",
            path.display()
        )));
    }
    crate::store::Store::connect_read_only(&database)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))
}

/// Whether the history database exists yet. A directory the user may not
/// read is an error, not "no history": the service's 0700 state directory
/// would otherwise pass for an empty history.
fn history_exists(path: &Path) -> Result<bool, Failure> {
    path.try_exists().map_err(|e| {
        Failure::Runtime(format!(
            "cannot read the history database {}: {e} (run as root or the service user)",
            path.display()
        ))
    })
}

/// Loads the config, logging its warnings.
fn load_config(path: &Path, tokens: Purpose) -> Result<Config, Failure> {
    let config = Config::load(path, tokens).map_err(Failure::Config)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}
