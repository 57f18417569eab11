//! Security promises that no other test file owns: the warning for a token
//! in a config others can read, TLS verification never switched off, and
//! tokens kept out of panic messages.

use invite_rotator::config::{Config, Purpose};
use invite_rotator::secret::Token;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOKEN: &str = "sk-security-5e4d3c2b1a";

/// A valid config whose instance gets its token by `token_line`.
fn config_text(token_line: &str) -> String {
    format!(
        r#"
[api]
base_url = "http://127.0.0.1:9/api"

[database]
path = "/tmp/invite-rotator-security/history.db"

[[instance]]
name = "sales"
{token_line}

[[group]]
name = "vip"
instance = "sales"
jid = "120363406289005073@g.us"
schedule = "0 3 * * *"
"#
    )
}

/// Writes `text` to a config file of `mode` in a fresh directory.
fn config_file(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    (dir, path)
}

/// `invite-rotator check --config PATH`: exit code and stderr.
fn check(path: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("check")
        .arg("--config")
        .arg(path)
        .env("IR_SECURITY_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(TOKEN), "{stdout}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LOOSE: &str = "group or others can read";

#[test]
fn an_inline_token_in_a_config_others_can_read_is_warned_about_naming_the_file() {
    for mode in [0o644, 0o640, 0o604] {
        // Arrange
        let (_dir, path) = config_file(&config_text(&format!("token = \"{TOKEN}\"")), mode);

        // Act
        let (code, stderr) = check(&path);

        // Assert
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains(LOOSE), "mode {mode:o}: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(stderr.contains("instance[0].token"), "{stderr}");
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }
}

#[test]
fn an_inline_token_in_a_0600_config_gets_no_permissions_warning() {
    let (_dir, path) = config_file(&config_text(&format!("token = \"{TOKEN}\"")), 0o600);

    let (code, stderr) = check(&path);

    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(LOOSE), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

#[test]
fn a_token_from_the_environment_or_a_file_gets_no_warning_whatever_the_config_mode() {
    for token_line in [
        "token_env = \"IR_SECURITY_TOKEN\"",
        "token_file = \"token\"",
    ] {
        let (_dir, path) = config_file(&config_text(token_line), 0o644);

        let (code, stderr) = check(&path);

        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("WARN"), "{token_line}: {stderr}");
    }
}

#[test]
fn the_loader_reports_the_permissions_warning_without_logging_it() {
    // The loader returns warnings; the commands log them (one place, also on reload).
    let (_dir, path) = config_file(&config_text(&format!("token = \"{TOKEN}\"")), 0o644);

    let config = Config::load(&path, Purpose::Run).unwrap();

    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].contains(LOOSE), "{:?}", config.warnings);
    assert!(config.warnings[0].contains("0644"), "{:?}", config.warnings);
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn tls_verification_is_never_switched_off_in_the_source() {
    // reqwest's and rustls' switches for accepting any certificate or host
    // name all start so; none may appear in the daemon's code.
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for forbidden in [
            "danger_accept_invalid",
            "dangerous()",
            "tls_built_in_root_certs(false)",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} contains {forbidden}",
                file.display()
            );
        }
    }
}

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).unwrap_err();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap()
}

/// A failed result, as a call that went wrong would return it.
fn failed<E>(e: E) -> Result<(), E> {
    Err(e)
}

#[test]
fn a_token_never_appears_in_a_panic_message() {
    // Arrange: the token itself, and a config holding it.
    let token = Token::new(TOKEN);
    let (_dir, path) = config_file(&config_text(&format!("token = \"{TOKEN}\"")), 0o600);
    let config = Config::load(&path, Purpose::Run).unwrap();
    assert_eq!(config.instances[0].token.expose(), TOKEN);

    // Act: what `unwrap`, `expect` and `{:?}` in a panic would print.
    let messages = [
        panic_message(|| failed(token.clone()).unwrap()),
        panic_message(|| assert!(token.expose().is_empty(), "token {token:?}")),
        panic_message(|| panic!("{token} {token:?}")),
        panic_message(|| failed(config.instances[0].clone()).unwrap()),
        panic_message(|| failed(config.clone()).expect("config")),
    ];

    // Assert
    for message in messages {
        assert!(!message.contains(TOKEN), "{message}");
        assert!(!message.contains("sk-security"), "{message}");
    }
}
