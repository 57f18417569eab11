//! What the benches read off the processes they measure.
#![allow(dead_code)] // each bench uses a different part of this

/// VmRSS and VmHWM of process `pid`, in kB (0 when it cannot be read: the
/// process has exited).
pub fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The cores this machine has, for the numbers' context.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
