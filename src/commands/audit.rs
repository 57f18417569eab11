//! `audit keygen`, `audit verify`, `audit export`: the tamper-evident
//! ledger's commands (see [`crate::audit`]).

use super::{Failure, load_config, open_history};
use crate::audit::{AuditKey, PublicKey, bundle, verify as check};
use crate::config::Purpose;
use crate::exit::Exit;
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// `audit keygen --output FILE`: a new key, its public half on stdout.
pub(super) fn keygen(output: &Path) -> Result<Exit, Failure> {
    let runtime = |e: crate::audit::KeyError| Failure::Runtime(e.to_string());
    let key = AuditKey::generate().map_err(runtime)?;
    key.write_new(output).map_err(runtime)?;
    let public = key.public_pem().map_err(runtime)?;
    eprintln!(
        "wrote the signing key to {} (mode 0600); set [audit] signing_key_file to it. Its public key, for `audit verify --public-key`:",
        output.display()
    );
    super::print_bytes(public.as_bytes())
}

/// What `audit verify` checks.
#[derive(Debug, Default)]
pub(super) struct VerifyArgs {
    /// `--database`.
    pub database: Option<PathBuf>,
    /// `--bundle`.
    pub bundle: Option<PathBuf>,
    /// `--public-key`.
    pub public_key: Option<PathBuf>,
    /// `--checkpoint`.
    pub checkpoints: Vec<PathBuf>,
}

/// `audit verify`: exit 0 when the history holds, 1 with the first
/// discrepancy named (with `--public-key`, a history without any
/// checkpoint does not hold: nothing in it is signed).
pub(super) async fn verify(config_path: &Path, args: VerifyArgs) -> Result<Exit, Failure> {
    let trusted = args
        .public_key
        .as_deref()
        .map(PublicKey::load)
        .transpose()
        .map_err(|e| Failure::NoInput(e.to_string()))?;
    if let Some(path) = &args.bundle {
        let bytes = std::fs::read(path)
            .map_err(|e| Failure::NoInput(format!("cannot read {}: {e}", path.display())))?;
        let Some(trusted) = &trusted else {
            return Err(Failure::Usage("--bundle needs --public-key".into()));
        };
        // A bundle is UTF-8 text: a byte that breaks it is a change to it.
        let checked = String::from_utf8(bytes)
            .map_err(|_| {
                crate::audit::Discrepancy("the bundle is not UTF-8 text: it was changed".into())
            })
            .and_then(|text| bundle::verify(&text, trusted));
        return Ok(match checked {
            Ok(b) => {
                let entries = b.entries.map_or("no entries".to_owned(), |(a, z)| {
                    format!("entries {a} to {z}")
                });
                println!(
                    "intact: bundle {} holds {entries}, chained, and {} checkpoint(s) signed by the given key cover them",
                    path.display(),
                    b.checkpoints
                );
                Exit::Success
            }
            Err(d) => {
                println!("NOT INTACT: {}: {d}", path.display());
                Exit::Failure
            }
        });
    }
    let mut extra = Vec::new();
    for file in &args.checkpoints {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::NoInput(format!("cannot read {}: {e}", file.display())))?;
        let found = crate::audit::Checkpoint::lines_in(&text);
        if found.is_empty() {
            return Err(Failure::NoInput(format!(
                "{} holds no checkpoint (lines with {{\"at\":…,\"signature\":…}})",
                file.display()
            )));
        }
        extra.extend(found.into_iter().map(str::to_owned));
    }
    let store = open_history(config_path, args.database.as_deref()).await?;
    let outcome = check::database(&store, trusted.as_ref(), &extra)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    Ok(match outcome {
        Ok(v) if trusted.is_some() && v.checkpoints == 0 => {
            println!(
                "NOT INTACT: no checkpoint: nothing in this history is signed by the given key, so nothing in it is protected ({} ledger entries chain, but could have been rewritten whole); the daemon signs the head within 5 minutes of a change and at each stop, `audit export` signs it too",
                v.entries
            );
            Exit::Failure
        }
        Ok(v) => {
            let signed = match &v.last_checkpoint {
                Some((seq, at)) => {
                    format!("; the last checkpoint covers entry {seq} (signed {at})")
                }
                None => {
                    "; no checkpoint (set [audit] signing_key_file to sign the ledger)".to_owned()
                }
            };
            let whose = if trusted.is_some() {
                "signed by the given key"
            } else {
                "signatures whole (give --public-key to check whose)"
            };
            println!(
                "intact: {} ledger entries chained to {}; {} checkpoint(s), {whose}; {} rotations agree with the ledger{signed}",
                v.entries, v.head, v.checkpoints, v.rotations
            );
            Exit::Success
        }
        Err(d) => {
            println!("NOT INTACT: {d}");
            Exit::Failure
        }
    })
}

/// `audit export --since … --output FILE`.
pub(super) async fn export(
    config_path: &Path,
    since: DateTime<Utc>,
    out: &Path,
) -> Result<Exit, Failure> {
    let config = load_config(config_path, Purpose::Read)?;
    let Some(key) = config.audit_key.clone() else {
        return Err(Failure::ConfigLacks(
            "audit export signs what it exports: set [audit] signing_key_file (audit keygen writes a key)"
                .into(),
        ));
    };
    // Verified read-only first: nothing opens the database for writing
    // (which migrates it) before the history is known to hold.
    let runtime = |e: crate::store::StoreError| Failure::Runtime(e.to_string());
    if config
        .database
        .sqlite_path()
        .is_none_or(|p| p.try_exists().unwrap_or(true))
    {
        let reader = Store::connect_read_only(&config.database)
            .await
            .map_err(runtime)?;
        // Without the ledger's tables, the open for writing would create
        // them and enter the history as it now stands, whatever was done to
        // it: that is the daemon's to do at its first start after an
        // upgrade, never an export's (it would sign the result).
        if reader
            .settled_without_ledger()
            .await
            .map_err(runtime)?
            .is_some_and(|n| n > 0)
        {
            eprintln!(
                "error: this history has no ledger: start the daemon once, then export (nothing was exported or signed)"
            );
            return Ok(Exit::Failure);
        }
        if reader.has_ledger().await.map_err(runtime)? {
            let checked = check::database(&reader, Some(&key.public()), &[])
                .await
                .map_err(runtime)?;
            if let Err(d) = checked {
                return Ok(refused(&d));
            }
        }
    }
    let store = Store::connect(&config.database).await.map_err(runtime)?;
    match bundle::export(&store, &key, since, out).await {
        Ok(b) => {
            let entries = b.entries.map_or("no entries".to_owned(), |(a, z)| {
                format!("entries {a} to {z}")
            });
            eprintln!(
                "wrote {} ({entries}, {} checkpoint(s)); check it with `invite-rotator audit verify --bundle {} --public-key FILE`",
                out.display(),
                b.checkpoints,
                out.display()
            );
            Ok(Exit::Success)
        }
        Err(bundle::ExportError::Broken(d)) => Ok(refused(&d)),
        Err(e) => Err(Failure::Runtime(e.to_string())),
    }
}

/// An export refused: the history does not verify.
fn refused(d: &crate::audit::Discrepancy) -> Exit {
    println!("NOT INTACT: {d}");
    eprintln!("error: the history does not verify; nothing was exported or signed");
    Exit::Failure
}
