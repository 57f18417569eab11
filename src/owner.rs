//! Which process wrote a `pending` row, and whether it still runs.
//!
//! A rotation's row is written `pending` before the API is called and settled
//! after. A row whose writer died (kill -9, a crash, a power cut) must be
//! settled from the live link by the next process that meets it; a row whose
//! writer still runs must be left alone. The row names its writer by boot id,
//! pid and the process's start time, so a reused pid or a reboot is never
//! taken for the writer. Linux only: elsewhere, or when `/proc` cannot be
//! read, liveness is [`Liveness::Unknown`] and callers fall back to age.
//!
//! Processes sharing one database must share one pid namespace (one host, no
//! containers with their own pids), as they share the file anyway.

use std::sync::OnceLock;

/// What is known of a row's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The writer is this process, or another that still runs.
    Alive,
    /// The writer has exited (or the machine rebooted since).
    Dead,
    /// No way to tell (no owner recorded, or no `/proc`).
    Unknown,
}

/// This process's name as stored in `rotations.owner`.
pub fn current() -> &'static str {
    static CURRENT: OnceLock<String> = OnceLock::new();
    CURRENT.get_or_init(|| {
        let pid = std::process::id();
        match (boot_id(), start_ticks(pid)) {
            (Some(boot), Some(start)) => format!("{boot}/{pid}/{start}"),
            _ => format!("?/{pid}/?"),
        }
    })
}

/// Whether the process named `owner` (as [`current`] names one) still runs.
pub fn liveness(owner: Option<&str>) -> Liveness {
    let Some(owner) = owner else {
        return Liveness::Unknown;
    };
    if owner == current() {
        return Liveness::Alive;
    }
    let mut parts = owner.split('/');
    let (Some(boot), Some(pid), Some(start), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Liveness::Unknown;
    };
    let (Some(our_boot), Ok(pid)) = (boot_id(), pid.parse::<u32>()) else {
        return Liveness::Unknown;
    };
    if boot == "?" || start == "?" {
        return Liveness::Unknown;
    }
    if boot != our_boot {
        return Liveness::Dead;
    }
    match start_ticks(pid) {
        Some(now) if now.to_string() == start => Liveness::Alive,
        // No such process, or the pid now belongs to a newer one.
        _ if std::path::Path::new("/proc/self/stat").exists() => Liveness::Dead,
        _ => Liveness::Unknown,
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
    fn this_process_is_alive() {
        assert_eq!(liveness(Some(current())), Liveness::Alive);
        assert!(!current().contains('?'), "{}", current());
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
        assert_eq!(liveness(Some("?/12/?")), Liveness::Unknown);
        assert_eq!(liveness(Some("a/b/c/d")), Liveness::Unknown);
    }
}
