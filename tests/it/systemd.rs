//! The shipped unit: `systemd-analyze verify` is clean and the offline security
//! rating is 2.0 or lower. systemd-analyze comes with Debian's `systemd`
//! package, which the project's machines have.

use std::process::Command;

fn analyze(args: &[&str]) -> Option<std::process::Output> {
    Command::new("systemd-analyze").args(args).output().ok()
}

/// The shipped unit with `ExecStart` pointing at the binary under test, so
/// that `verify` can check the command exists.
fn unit_for_test(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/invite-rotator.service"
    ))
    .unwrap();
    let unit = unit.replace(
        "/usr/bin/invite-rotator",
        env!("CARGO_BIN_EXE_invite-rotator"),
    );
    let path = dir.join("invite-rotator.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn the_unit_verifies_cleanly_and_rates_2_0_or_lower() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let unit = unit.to_str().unwrap();
    let verify =
        analyze(&["verify", unit]).expect("systemd-analyze runs (apt-get install systemd)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );

    let security = analyze(&["security", "--offline=true", unit]).unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let level: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for invite-rotator.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(level <= 2.0, "exposure {level}:\n{report}");
}
