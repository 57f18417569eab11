//! Every kind of config error: exit 78, a message naming the key, never a panic.

use std::process::Command;

const VALID: &str = r#"
[api]
base_url = "http://127.0.0.1:9/api"

[rate_limit]
requests_per_minute = 100

[database]
path = "/tmp/invite-rotator-config-errors/history.db"

[[instance]]
name = "sales"
token_env = "IR_CFG_ERR_TOKEN"

[[group]]
name = "vip"
instance = "sales"
jid = "120363406289005073@g.us"
schedule = "0 3 * * *"
timezone = "America/Sao_Paulo"
"#;

fn check(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&path)
        .arg("check")
        .env("IR_CFG_ERR_TOKEN", "tok-cfg")
        .env_remove("IR_CFG_ERR_UNSET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

#[test]
fn a_valid_config_checks_out() {
    let (code, stderr) = check(VALID);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn each_config_error_exits_78_naming_its_key() {
    let dup_group = format!(
        "{VALID}\n[[group]]\nname = \"vip\"\ninstance = \"sales\"\njid = \"1203634@g.us\"\nschedule = \"@daily\"\n"
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown key",
            VALID.replace("[rate_limit]", "[rate_limit]\nrequests_per_hour = 5"),
            "requests_per_hour",
        ),
        (
            "wrong type",
            VALID.replace("requests_per_minute = 100", "requests_per_minute = \"100\""),
            "requests_per_minute",
        ),
        (
            "bad cron",
            VALID.replace("0 3 * * *", "0 3 * * * * *"),
            "group[0].schedule",
        ),
        (
            "unknown zone",
            VALID.replace("America/Sao_Paulo", "America/Atlantis"),
            "group[0].timezone",
        ),
        ("duplicate group", dup_group, "group[1].name"),
        (
            "undefined instance",
            VALID.replace("instance = \"sales\"", "instance = \"support\""),
            "group[0].instance",
        ),
        (
            "unset token env",
            VALID.replace("IR_CFG_ERR_TOKEN", "IR_CFG_ERR_UNSET"),
            "instance[0].token_env",
        ),
        (
            "unreadable token file",
            VALID.replace(
                "token_env = \"IR_CFG_ERR_TOKEN\"",
                "token_file = \"/nonexistent/ryze-token\"",
            ),
            "instance[0].token_file",
        ),
        (
            "invite link as JID",
            VALID.replace(
                "120363406289005073@g.us",
                "https://chat.whatsapp.com/AbC123",
            ),
            "group[0].jid",
        ),
        (
            "invite code as JID",
            VALID.replace("120363406289005073@g.us", "AbC123dEf456"),
            "group[0].jid",
        ),
        (
            "zero rate",
            VALID.replace("requests_per_minute = 100", "requests_per_minute = 0"),
            "rate_limit.requests_per_minute",
        ),
        (
            "negative rate",
            VALID.replace("requests_per_minute = 100", "requests_per_minute = -1"),
            "rate_limit.requests_per_minute",
        ),
        (
            "not TOML",
            "[[group]\nname = ".to_owned(),
            "config.toml:1: group: ",
        ),
    ];
    for (what, config, key) in cases {
        let (code, stderr) = check(&config);
        assert_eq!(code, Some(78), "{what}: {stderr}");
        assert!(
            stderr.contains(key),
            "{what}: message does not name {key}: {stderr}"
        );
    }
}

#[test]
fn a_missing_config_file_exits_78_naming_the_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .args(["--config", "/nonexistent/invite-rotator.toml", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/invite-rotator.toml"));
}

#[test]
fn the_example_config_is_valid() {
    // As shipped, but for a database path this user can write.
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
            .unwrap();
    let config = dir.path().join("config.toml");
    let db = dir.path().join("history.db");
    std::fs::write(
        &config,
        example.replace("/var/lib/invite-rotator/history.db", db.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&config)
        .arg("check")
        .env("RYZE_TOKEN_SALES", "tok-example")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_syntax_error_on_a_token_line_does_not_print_the_token() {
    let leaky = VALID.replace(
        "token_env = \"IR_CFG_ERR_TOKEN\"",
        "token = \"sk-LEAK-12345\nother = 1",
    );
    let (code, stderr) = check(&leaky);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("config.toml:13: instance[0].token: "),
        "{stderr}"
    );
    assert!(!stderr.contains("sk-LEAK"), "{stderr}");
    let duplicate = VALID.replace(
        "token_env = \"IR_CFG_ERR_TOKEN\"",
        "token = \"sk-LEAK-12345\"\ntoken = \"sk-LEAK-12345\"",
    );
    let (code, stderr) = check(&duplicate);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(!stderr.contains("sk-LEAK"), "{stderr}");
}

/// `check` or `run` with `config` (the process ends by itself: a config
/// error stops it before anything starts).
fn command(config: &str, command: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_invite-rotator"))
        .arg("--config")
        .arg(&path)
        .arg(command)
        .env("IR_CFG_ERR_TOKEN", "tok-cfg")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

#[test]
fn a_database_under_a_directory_that_cannot_be_created_fails_check_and_run_with_78() {
    // /proc takes no new entries, even from root (whom access(2) lets write
    // anywhere): only trying tells.
    let config = VALID.replace(
        "/tmp/invite-rotator-config-errors/history.db",
        "/proc/x/history.db",
    );
    for cmd in ["check", "run"] {
        let (code, stderr) = command(&config, cmd);
        assert_eq!(code, Some(78), "{cmd}: {stderr}");
        assert!(stderr.contains("database.path"), "{cmd}: {stderr}");
        assert!(stderr.contains("/proc"), "{cmd}: {stderr}");
    }
    assert!(!std::path::Path::new("/proc/x").exists());
}
