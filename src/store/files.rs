//! The files of a history database: its directory (0700), the database and
//! every file beside it (0600: they hold live invite codes), the locks
//! beside it, and the check that a path can take a database at all.
//!
//! Everything here is created with its final mode in the same call that
//! creates it: there is no moment when another local user could open it.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether this process could create or write the database at `path`,
/// leaving nothing behind: the nearest existing directory on the way must
/// be writable (to create the rest, the database and the files SQLite keeps
/// beside it), and an existing database must be a writable file. Where the
/// database is still to be made, a directory is made there and removed at
/// once: access(2) answers yes to root everywhere, and to everyone on file
/// systems that take no new entries (`/proc`, `/sys`), so only trying tells.
pub fn preflight(path: &Path) -> Result<(), PreflightError> {
    if path.file_name().is_none() {
        return Err(PreflightError::Directory);
    }
    let dir = parent(path);
    let mut existing = dir.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    let shown = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    let at = shown.to_owned();
    match std::fs::metadata(shown) {
        Ok(m) if !m.is_dir() => return Err(PreflightError::NotADirectory(at)),
        Ok(_) => {}
        Err(source) => return Err(PreflightError::Unreadable { at, source }),
    }
    let making = existing == dir;
    if let Err(source) = may(shown, libc::W_OK | libc::X_OK) {
        return Err(PreflightError::NoAccess { at, making, source });
    }
    match std::fs::symlink_metadata(path) {
        Err(_) => {
            probe(shown).map_err(|source| PreflightError::CannotCreate { at, making, source })
        }
        Ok(_) => {
            let m = std::fs::metadata(path).map_err(PreflightError::CannotRead)?;
            if !m.is_file() {
                return Err(PreflightError::NotAFile);
            }
            may(path, libc::R_OK | libc::W_OK).map_err(PreflightError::CannotWrite)
        }
    }
}

/// Why [`preflight`] says the database cannot be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The path ends in a directory.
    #[error("names a directory, not a database file")]
    Directory,
    /// The nearest existing ancestor is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The nearest existing ancestor cannot be read.
    #[error("cannot read {}: {source}", at.display())]
    Unreadable {
        /// The ancestor.
        at: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No write access to the nearest existing ancestor.
    #[error("{} {}: {source}", if *making { "cannot create files in" } else { "cannot create the directory, for lack of access to" }, at.display())]
    NoAccess {
        /// The ancestor.
        at: PathBuf,
        /// Whether it is the database's own directory.
        making: bool,
        /// Why.
        source: std::io::Error,
    },
    /// The ancestor takes no new entries (a read-only or virtual file system).
    #[error("cannot create {} in {}: {source}", if *making { "the database" } else { "its directory" }, at.display())]
    CannotCreate {
        /// The ancestor.
        at: PathBuf,
        /// Whether it is the database's own directory.
        making: bool,
        /// Why.
        source: std::io::Error,
    },
    /// The existing database cannot be read.
    #[error("cannot read it: {0}")]
    CannotRead(#[source] std::io::Error),
    /// The path exists and is not a file.
    #[error("exists and is not a file")]
    NotAFile,
    /// The existing database cannot be written.
    #[error("cannot write it: {0}")]
    CannotWrite(#[source] std::io::Error),
}

/// Makes a directory in `dir` and removes it: whether `dir` takes new entries.
fn probe(dir: &Path) -> std::io::Result<()> {
    let name = dir.join(format!(
        ".invite-rotator-probe-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&name)?;
    std::fs::remove_dir(&name)
}

/// `faccessat(2)` with the effective ids: what this process may do, read-only
/// file systems included (`EROFS`).
fn may(path: &Path, mode: libc::c_int) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // faccessat only reads it.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The directory of `path` (`.` for a bare file name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Creates the database's directory (0700, and any missing above it) and the
/// database file itself (0600) if missing; tightens an existing file to 0600.
/// Returns whether the database is new (an empty file).
pub(super) fn prepare(path: &Path) -> std::io::Result<bool> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent(path))?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(file.metadata()?.len() == 0)
}

/// The database's real location: symlinks resolved, so that two names of one
/// file lock the same lock files.
pub(super) fn canonical(path: &Path) -> std::io::Result<PathBuf> {
    std::fs::canonicalize(path)
}

/// `<database>.<suffix>`, created 0600 if missing.
fn beside(database: &Path, suffix: &str) -> std::io::Result<(PathBuf, File)> {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    let path = PathBuf::from(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}

/// Makes the files SQLite created beside the database (`-wal`, `-shm`) 0600,
/// whatever the umask was.
pub(super) fn restrict_companions(database: &Path) {
    for suffix in ["-wal", "-shm"] {
        let mut p = database.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("held by another process ({0})")]
    Held(PathBuf),
    /// Still held by another process after the whole wait.
    #[error("another process has held {} for {} s; giving up", .0.display(), .1.as_secs())]
    Timeout(PathBuf, Duration),
    /// The lock file could not be created or locked.
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
}

/// An exclusive lock on `<database>.<suffix>`, taken at once or not at all.
/// Held until the returned file is dropped (or the process ends).
pub(super) fn try_lock(database: &Path, suffix: &str) -> Result<File, LockError> {
    let (path, file) = beside(database, suffix).map_err(|e| LockError::Io(database.into(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held(path)),
        Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(path, e)),
    }
}

/// As [`try_lock`], but waits up to `patience` for another holder to let go,
/// saying once that it waits. Polls with tokio's timer, so a caller that
/// stops caring (a SIGTERM during start-up) simply drops the future.
pub(super) async fn lock_waiting(
    database: &Path,
    suffix: &str,
    why: &str,
    patience: Duration,
) -> Result<File, LockError> {
    let start = tokio::time::Instant::now();
    let mut said = false;
    loop {
        match try_lock(database, suffix) {
            Err(LockError::Held(path)) => {
                if start.elapsed() >= patience {
                    return Err(LockError::Timeout(path, patience));
                }
                if !said {
                    tracing::warn!(lock = %path.display(), "waiting for another process to finish {why}");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_under_a_file_or_a_read_only_directory_fails_the_preflight() {
        let dir = tempfile::tempdir().unwrap();
        assert!(preflight(&dir.path().join("new/deeper/h.db")).is_ok());
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let e = preflight(&file.join("h.db")).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        assert!(
            preflight(dir.path()).is_err(),
            "a directory is not a database"
        );
        assert!(
            !dir.path().join("new").exists(),
            "the preflight creates nothing"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nor leaves its probe behind"
        );
        // No new entry in /proc, whoever asks (root included).
        let e = preflight(Path::new("/proc/x/history.db"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/proc"), "{e}");
    }

    #[test]
    fn files_beside_the_database_are_created_0600_in_a_0700_directory() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state/h.db");
        prepare(&db).unwrap();
        let _lock = try_lock(&db, ".daemon.lock").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("state")), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir.path().join("state/h.db.daemon.lock")), 0o600);
        assert!(matches!(
            try_lock(&db, ".daemon.lock"),
            Err(LockError::Held(_))
        ));
    }
}
