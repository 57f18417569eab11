//! What operators expect of a command-line tool: shell completions, a man
//! page, and a `--version` that says which build it is.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn completions_prints_a_script_for_bash_zsh_and_fish() {
    let bash = stdout_of(&["completions", "bash"]);
    let zsh = stdout_of(&["completions", "zsh"]);
    let fish = stdout_of(&["completions", "fish"]);

    assert!(bash.contains("complete -F _invite__rotator"), "{bash}");
    assert!(
        bash.contains("status") && bash.contains("history"),
        "subcommands are completed"
    );
    assert!(zsh.starts_with("#compdef invite-rotator"), "{zsh}");
    assert!(fish.contains("complete -c invite-rotator"), "{fish}");
    // The bash script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("invite-rotator.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(check.success());
}

#[test]
fn manpage_prints_a_roff_page_that_starts_with_th_and_lists_the_commands() {
    let page = stdout_of(&["manpage"]);

    assert!(page.starts_with(".TH INVITE-ROTATOR 1 "), "{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(
        page.contains("invite\\-rotator\\-status"),
        "status is listed"
    );
}

#[test]
fn version_shows_the_crate_version_and_the_git_revision() {
    let version = stdout_of(&["--version"]);

    // What build.rs saw: the checkout's revision, or "unknown" outside git.
    let revision = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    assert_eq!(
        version.trim(),
        format!("invite-rotator {} ({revision})", env!("CARGO_PKG_VERSION"))
    );
}
