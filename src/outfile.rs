//! Files written where the operator says (`audit export --output`,
//! `join create --qr png --output`, `audit keygen --output`, `manpage DIR`,
//! the demo's secret): the one way every command writes such a file.
//!
//! The bytes go to a new temporary file beside the target (`O_EXCL`,
//! `O_NOFOLLOW`, created with its final mode: 0600 unless the caller says
//! otherwise), are synced, and the file is then renamed over the target, so
//! the target is either the old file or the whole new one, and a file that
//! was there keeps none of its old mode. A symlink at the target is refused
//! with an error naming it, rather than replaced: writing through it would
//! write wherever it points (a root-run command could be steered onto any
//! file), and silently replacing the link would surprise whoever made it.
//! Nothing but the temporary file is ever removed: a run that fails, or is
//! dropped before [`Output::commit`], leaves the target as it found it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether an existing file at the target may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    /// The command's contract is to (over)write the file.
    Yes,
    /// An existing file is never replaced (`audit keygen`: it may be the key
    /// that signed a history).
    Never,
}

/// A file being written: a temporary file beside its target until
/// [`Output::commit`] puts it in place. Dropped uncommitted, the temporary
/// file is removed and the target is untouched.
#[derive(Debug)]
pub(crate) struct Output {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
    replace: Replace,
}

/// The file mode of files holding secrets or credentials.
pub(crate) const PRIVATE: u32 = 0o600;

/// Why a file could not be written (each names its target).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file system refused.
    #[error("cannot write {target}: {source}")]
    Io {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The temporary file could not be created beside the target.
    #[error("cannot write {target}: cannot create a file in {dir}: {source}")]
    Create {
        target: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The path ends in no file name (`..`, `/`).
    #[error("{target}: names no file")]
    NoFileName { target: PathBuf },
    /// Written to after it was committed.
    #[error("cannot write {target}: already closed")]
    Closed { target: PathBuf },
    /// A symlink is at the target.
    #[error(
        "cannot write {target}: it is a symlink; refused (it would be written in place of the link, not where it points): name the file itself"
    )]
    Symlink { target: PathBuf },
    /// A file is at the target, and [`Replace::Never`].
    #[error("cannot write {target}: it exists already, and is never overwritten")]
    Exists { target: PathBuf },
    /// Something other than a regular file is at the target.
    #[error("cannot write {target}: it exists and is not a regular file")]
    NotAFile { target: PathBuf },
}

impl WriteError {
    /// `source`, met writing `target`.
    pub(crate) fn io(target: &Path, source: std::io::Error) -> WriteError {
        WriteError::Io {
            target: target.to_owned(),
            source,
        }
    }
}

impl Output {
    /// Starts writing `target` (with `mode`): refuses a symlink or anything
    /// but a regular file there (and any file at all with
    /// [`Replace::Never`]), then creates the temporary file beside it.
    pub(crate) fn create(target: &Path, mode: u32, replace: Replace) -> Result<Output, WriteError> {
        check(target, replace)?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = target.file_name().ok_or_else(|| WriteError::NoFileName {
            target: target.to_owned(),
        })?;
        let mut tries = 0;
        loop {
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".{:016x}.tmp", fastrand::u64(..)));
            let temp = dir.join(temp_name);
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp);
            match opened {
                Ok(file) => {
                    let mut out = Output {
                        target: target.to_owned(),
                        temp,
                        file: Some(file),
                        replace,
                    };
                    // The umask may have taken bits the caller asked for.
                    out.file()?
                        .set_permissions(std::fs::Permissions::from_mode(mode))
                        .map_err(|e| out.fail(e))?;
                    return Ok(out);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => {
                    tries += 1;
                }
                Err(source) => {
                    return Err(WriteError::Create {
                        target: target.to_owned(),
                        dir: dir.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    fn file(&mut self) -> Result<&mut File, WriteError> {
        let target = &self.target;
        self.file.as_mut().ok_or_else(|| WriteError::Closed {
            target: target.clone(),
        })
    }

    fn fail(&self, source: std::io::Error) -> WriteError {
        WriteError::io(&self.target, source)
    }

    /// Syncs the file and puts it in place of the target (for
    /// [`Replace::Never`], only if nothing has appeared there meanwhile).
    pub(crate) fn commit(mut self) -> Result<(), WriteError> {
        let file = self.file.take().ok_or_else(|| WriteError::Closed {
            target: self.target.clone(),
        })?;
        file.sync_all().map_err(|e| self.fail(e))?;
        drop(file);
        // Again: a symlink may have been put there while the file was written.
        check(&self.target, self.replace)?;
        match self.replace {
            // rename(2) replaces a name, never what a symlink points at.
            Replace::Yes => std::fs::rename(&self.temp, &self.target).map_err(|e| self.fail(e))?,
            // link(2) fails if the name exists, whatever it is.
            Replace::Never => {
                std::fs::hard_link(&self.temp, &self.target).map_err(|e| self.fail(e))?;
                let _ = std::fs::remove_file(&self.temp);
            }
        }
        // What the temporary name held is the target's now: nothing to remove.
        self.temp = PathBuf::new();
        if let Some(dir) = self.target.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            // The rename itself durable (best effort: some file systems refuse).
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("already closed"))?
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Only the file this run created, and only if it never became the target.
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `target` as [`Output`] does.
pub(crate) fn write(
    target: &Path,
    bytes: &[u8],
    mode: u32,
    replace: Replace,
) -> Result<(), WriteError> {
    let mut out = Output::create(target, mode, replace)?;
    out.write_all(bytes).map_err(|e| out.fail(e))?;
    out.commit()
}

/// Whether `target` may be written: nothing there, or (with
/// [`Replace::Yes`]) a regular file; never a symlink.
fn check(target: &Path, replace: Replace) -> Result<(), WriteError> {
    let named = || target.to_owned();
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WriteError::io(target, e)),
        Ok(m) if m.file_type().is_symlink() => Err(WriteError::Symlink { target: named() }),
        Ok(_) if replace == Replace::Never => Err(WriteError::Exists { target: named() }),
        Ok(m) if !m.is_file() => Err(WriteError::NotAFile { target: named() }),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_file_is_replaced_whole_with_the_asked_mode_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        std::fs::write(&target, b"old old old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();

        write(&target, b"new", PRIVATE, Replace::Yes).unwrap();

        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(names(dir.path()), ["out"]);
    }

    #[test]
    fn a_symlink_is_refused_and_an_uncommitted_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("link");
        symlink(&victim, &link).unwrap();
        let e = write(&link, b"x", PRIVATE, Replace::Yes)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symlink"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

        let target = dir.path().join("kept");
        std::fs::write(&target, b"kept").unwrap();
        let mut out = Output::create(&target, PRIVATE, Replace::Yes).unwrap();
        out.write_all(b"half").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        assert_eq!(names(dir.path()), ["kept", "link", "victim"]);
    }

    #[test]
    fn never_replace_keeps_an_existing_file_and_a_dangling_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("key");
        std::fs::write(&existing, b"the key").unwrap();
        assert!(write(&existing, b"x", PRIVATE, Replace::Never).is_err());
        assert_eq!(std::fs::read(&existing).unwrap(), b"the key");
        let dangling = dir.path().join("dangling");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(write(&dangling, b"x", PRIVATE, Replace::Never).is_err());
        assert!(!dir.path().join("nowhere").exists());
        write(&dir.path().join("new"), b"x", PRIVATE, Replace::Never).unwrap();
        assert_eq!(names(dir.path()), ["dangling", "key", "new"]);
    }
}
