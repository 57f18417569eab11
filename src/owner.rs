//! Which process wrote a `pending` row, and whether it still runs.
//!
//! A rotation's row is written `pending` before the API is called and settled
//! after. A row whose writer died (kill -9, a crash, a power cut) must be
//! settled from the live link by the next process that meets it; a row whose
//! writer still runs must be left alone. The row names its writer as
//! `<boot id>/<pid>/<start ticks>/<nonce>`: a reused pid has another start
//! time, a reboot another boot id, and the nonce tells this process from an
//! earlier one with the same pid and start time. Linux only.
//!
//! What may be unknown, and how that is read (never as "dead" without proof):
//! the boot id (`/proc/sys` is hidden under systemd's `ProcSubset=pid`) is
//! then `?` and not compared; another user's process may be invisible
//! (`ProtectProc=invisible`): if `kill(pid, 0)` says it exists, its liveness
//! is [`Liveness::Unknown`], and callers fall back to the row's age.
//!
//! Processes sharing one database must share one pid namespace (one host, no
//! containers with their own pids), as they share the file anyway.

use std::sync::OnceLock;

/// What is known of a row's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The writer is this process.
    ThisProcess,
    /// Another process that still runs.
    Alive,
    /// The writer has exited (or the machine rebooted since).
    Dead,
    /// No way to tell (no owner recorded, or its process cannot be seen).
    Unknown,
}

/// This process's name as stored in `rotations.owner`.
pub(crate) fn current() -> &'static str {
    static CURRENT: OnceLock<String> = OnceLock::new();
    CURRENT.get_or_init(|| {
        let pid = std::process::id();
        let boot = boot_id().unwrap_or_else(|| "?".to_owned());
        let start = start_ticks(pid).map_or_else(|| "?".to_owned(), |t| t.to_string());
        format!("{boot}/{pid}/{start}/{:016x}", fastrand::u64(..))
    })
}

/// Whether the process named `owner` (as [`current`] names one) still runs,
/// as seen from a database only this machine uses: another boot id means
/// the machine rebooted since.
pub(crate) fn liveness(owner: Option<&str>) -> Liveness {
    liveness_on(owner, false)
}

/// [`liveness`], for a database `shared` by several machines (PostgreSQL):
/// there another boot id may be another machine, whose processes cannot
/// be seen from here: [`Liveness::Unknown`].
pub(crate) fn liveness_on(owner: Option<&str>, shared: bool) -> Liveness {
    let Some(owner) = owner else {
        return Liveness::Unknown;
    };
    if owner == current() {
        return Liveness::ThisProcess;
    }
    let parts: Vec<&str> = owner.split('/').collect();
    let (boot, pid, start) = match parts.as_slice() {
        [boot, pid, start] | [boot, pid, start, _] => (*boot, *pid, *start),
        _ => return Liveness::Unknown,
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return Liveness::Unknown;
    };
    if let Some(ours) = boot_id()
        && boot != "?"
        && boot != ours
    {
        return if shared {
            Liveness::Unknown
        } else {
            Liveness::Dead
        };
    }
    match start_ticks(pid) {
        // Another process has the pid now.
        Some(now) if start != "?" && now.to_string() != start => Liveness::Dead,
        // The same pid and start time as this process, another nonce: an
        // earlier process before a reboot (boot ids unreadable).
        Some(_) if start != "?" && pid == std::process::id() => Liveness::Dead,
        Some(_) if start != "?" => Liveness::Alive,
        Some(_) => Liveness::Unknown,
        None => match exists(pid) {
            Some(false) => Liveness::Dead,
            _ => Liveness::Unknown,
        },
    }
}

/// Whether a process `pid` exists, by `kill(pid, 0)`: `None` if that cannot tell.
fn exists(pid: u32) -> Option<bool> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists
    // and whether we may signal it.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 {
        return Some(true);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Some(false),
        Some(libc::EPERM) => Some(true),
        _ => None,
    }
}

fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && !s.contains('/'))
    })
    .clone()
}

/// Field 22 of `/proc/<pid>/stat`: the start time, in clock ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after
    // its last ')'. The rest starts at field 3, so field 22 is index 19.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_itself() {
        assert_eq!(liveness(Some(current())), Liveness::ThisProcess);
        assert!(!current().contains('?'), "{}", current());
    }

    #[test]
    fn an_earlier_process_with_this_pid_and_start_time_is_dead() {
        // What a row from before a reboot looks like when boot ids are hidden.
        let pid = std::process::id();
        let start = start_ticks(pid).unwrap();
        assert_eq!(
            liveness(Some(&format!("?/{pid}/{start}/0000000000000001"))),
            Liveness::Dead
        );
    }

    #[test]
    fn without_boot_ids_a_running_process_is_still_told_from_a_gone_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let owner = format!("?/{pid}/{}/00", start_ticks(pid).unwrap());
        assert_eq!(liveness(Some(&owner)), Liveness::Alive);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(liveness(Some(&owner)), Liveness::Dead);
    }

    #[test]
    fn a_running_process_is_alive_and_an_exited_one_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let owner = format!("{}/{pid}/{}", boot_id().unwrap(), start_ticks(pid).unwrap());
        assert_eq!(liveness(Some(&owner)), Liveness::Alive);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(liveness(Some(&owner)), Liveness::Dead);
    }

    #[test]
    fn a_reused_pid_or_another_boot_is_dead() {
        let pid = std::process::id();
        let start = start_ticks(pid).unwrap();
        let boot = boot_id().unwrap();
        assert_eq!(
            liveness(Some(&format!("{boot}/{pid}/{}", start + 1))),
            Liveness::Dead
        );
        assert_eq!(
            liveness(Some(&format!("another-boot/{pid}/{start}"))),
            Liveness::Dead
        );
    }

    #[test]
    fn no_owner_or_a_garbled_one_is_unknown() {
        assert_eq!(liveness(None), Liveness::Unknown);
        assert_eq!(liveness(Some("garbage")), Liveness::Unknown);
        assert_eq!(
            liveness(Some(&format!("?/{}/?", std::process::id()))),
            Liveness::Unknown
        );
        assert_eq!(liveness(Some("a/b/c/d")), Liveness::Unknown);
    }

    #[test]
    fn another_boot_is_a_reboot_on_a_local_database_and_unknown_on_a_shared_one() {
        let Some(ours) = boot_id() else { return };
        let other = if ours.starts_with('0') { "1" } else { "0" };
        let owner = format!("{other}{}/1/1/00", &ours[1..]);
        assert_eq!(liveness(Some(&owner)), Liveness::Dead);
        assert_eq!(liveness_on(Some(&owner), true), Liveness::Unknown);
    }
}
