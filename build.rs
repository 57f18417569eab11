//! Build script: the git revision shown by `--version`, from
//! `git rev-parse --short HEAD` in a git checkout, else "unknown" (a source
//! tarball, or no git installed); and the commit's date, for the man pages.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let revision = if Path::new(".git").exists() {
        git(&["rev-parse", "--short", "HEAD"])
    } else {
        None
    };
    // Rebuild when HEAD moves: HEAD itself changes on a checkout, the branch it
    // names on a commit (a loose ref, or packed-refs once packed). `--git-path`
    // finds them in a worktree too.
    if revision.is_some() {
        let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
        watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
        for name in watched {
            if let Some(path) = git(&["rev-parse", "--git-path", &name])
                && Path::new(&path).exists()
            {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!(
        "cargo:rustc-env=INVITE_ROTATOR_REVISION={}",
        revision.as_deref().unwrap_or("unknown")
    );
    // The man pages' date: the commit's day, so that a rebuild of the same
    // commit gives the same pages; outside git, the day cargo set for the
    // package or a fixed one.
    let date = revision
        .as_ref()
        .and_then(|_| git(&["log", "-1", "--format=%cs"]))
        .unwrap_or_else(|| "2026-12-02".to_owned());
    println!("cargo:rustc-env=INVITE_ROTATOR_DATE={date}");
}

/// The trimmed output of a successful, non-empty `git` call.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
