//! Files the commands write where the operator says (`audit export
//! --output`, `join create --qr png --output`, `audit keygen --output`):
//! written 0600 to a temporary file beside the target and renamed over it,
//! never through a symlink (a symlink at the target is refused, its target
//! untouched), and nothing this run did not create is ever removed.

use crate::common::{Setup, TestApp, Tuning, spawn_app};
use crate::join::app_with_join;
use invite_rotator::emulator::EmulatorOptions;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Only the files the test made itself are left in `dir` (no temporary file).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An app with `[audit] signing_key_file` and one rotation entered.
async fn audited_app() -> TestApp {
    let app = spawn_app(
        &[Setup::Admin],
        EmulatorOptions::default(),
        Tuning::default(),
    )
    .await;
    let key = app.dir.path().join("audit.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(["audit", "keygen", "--output"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let path = key.display().to_string();
    app.edit_config(|t| format!("{t}\n[audit]\nsigning_key_file = \"{path}\"\n"));
    let out = app.run(&["rotate", "--all"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    app
}

async fn export(app: &TestApp, to: &Path) -> std::process::Output {
    app.run(&[
        "audit",
        "export",
        "--since",
        "1d",
        "--output",
        to.to_str().unwrap(),
    ])
    .await
}

/// A directory of its own (the outputs' neighbours are checked) with a
/// file `victim` (0644) that a symlink may point at.
fn outputs(app: &TestApp) -> (PathBuf, PathBuf) {
    let dir = app.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let victim = app.dir.path().join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, victim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_over_an_existing_0644_file_leaves_it_0600() {
    let app = audited_app().await;
    let (dir, _) = outputs(&app);
    let bundle = dir.join("bundle.jsonl");
    std::fs::write(&bundle, b"old\n").unwrap();
    std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = export(&app, &bundle).await;

    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(mode(&bundle), 0o600);
    assert!(
        std::fs::read_to_string(&bundle)
            .unwrap()
            .contains("\"seq\"")
    );
    assert_eq!(names(&dir), ["bundle.jsonl"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_onto_a_symlink_is_refused_and_its_target_untouched() {
    let app = audited_app().await;
    let (dir, victim) = outputs(&app);
    let link = dir.join("bundle.jsonl");
    symlink(&victim, &link).unwrap();

    let out = export(&app, &link).await;

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("symlink"), "{stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    assert_eq!(mode(&victim), 0o644);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(names(&dir), ["bundle.jsonl"]);
}

async fn qr(app: &TestApp, name: &str, to: &Path) -> std::process::Output {
    let group = app.groups[0].name.clone();
    app.run(&[
        "join",
        "create",
        &group,
        "--name",
        name,
        "--qr",
        "png",
        "--output",
        to.to_str().unwrap(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qr_code_is_written_0600_even_over_a_0644_file() {
    let (app, _) = app_with_join().await;
    let (dir, _) = outputs(&app);
    let png = dir.join("link.png");

    let out = qr(&app, "first", &png).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(mode(&png), 0o600, "the slug in it is the credential");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));

    std::fs::set_permissions(&png, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = qr(&app, "second", &png).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(mode(&png), 0o600);
    assert_eq!(names(&dir), ["link.png"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qr_code_onto_a_symlink_is_refused_and_its_target_untouched() {
    let (app, _) = app_with_join().await;
    let (dir, victim) = outputs(&app);
    let link = dir.join("link.png");
    symlink(&victim, &link).unwrap();

    let out = qr(&app, "first", &link).await;

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symlink"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    assert_eq!(mode(&victim), 0o644);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(names(&dir), ["link.png"]);
    // Nothing was made: the QR code is written before the link.
    let out = app.run(&["join", "list", "--format", "json"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_link_name_leaves_the_file_that_was_at_the_qr_output() {
    let (app, _) = app_with_join().await;
    let (dir, _) = outputs(&app);
    let png = dir.join("link.png");
    let out = qr(&app, "taken", &dir.join("first.png")).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::write(&png, b"the operator's own file\n").unwrap();
    std::fs::set_permissions(&png, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = qr(&app, "taken", &png).await;

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exists already"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&png).unwrap(), b"the operator's own file\n");
    assert_eq!(mode(&png), 0o644);
    assert_eq!(names(&dir), ["first.png", "link.png"]);
}

#[tokio::test]
async fn keygen_never_overwrites_nor_writes_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let link = dir.path().join("dangling.key");
    symlink(dir.path().join("nowhere"), &link).unwrap();
    let keygen = |to: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
            .args(["audit", "keygen", "--output"])
            .arg(to)
            .output()
            .unwrap()
    };

    assert_eq!(keygen(&victim).status.code(), Some(1));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    let out = keygen(&link);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        !dir.path().join("nowhere").exists(),
        "written through a symlink"
    );
    let key = dir.path().join("new.key");
    assert_eq!(keygen(&key).status.code(), Some(0));
    assert_eq!(mode(&key), 0o600);
    assert_eq!(names(dir.path()), ["dangling.key", "new.key", "victim"]);
}
