use super::*;

const VALID: &str = r#"
[api]
base_url = "http://127.0.0.1:9/api"
timeout = "5s"

[rate_limit]
requests_per_minute = 100

[retry]
max_attempts = 3
backoff_initial = "1s"
backoff_max = "1m"

[database]
path = "/tmp/x/history.db"

[defaults]
timezone = "Europe/Berlin"

[[instance]]
name = "sales"
token_env = "IR_CONFIG_TEST_TOKEN"

[[group]]
name = "vip"
instance = "sales"
jid = "120363406289005073@g.us"
schedule = "0 3 * * *"
timezone = "America/Sao_Paulo"
jitter = "10m"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    // SAFETY: the variable is set to the same value by every test in this module.
    unsafe { std::env::set_var("IR_CONFIG_TEST_TOKEN", "tok-config-test") };
    Config::parse(text, Path::new("cfg.toml"), Purpose::Run)
}

fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_valid_config_parses_with_defaults_applied() {
    let c = parse(VALID).unwrap();
    assert_eq!(c.rate_limit.requests_per_minute, 100);
    assert_eq!(c.retry.max_attempts, 3);
    assert_eq!(c.groups[0].timezone, chrono_tz::America::Sao_Paulo);
    assert_eq!(c.groups[0].jitter, Duration::from_secs(600));
    assert_eq!(c.instances[0].token.expose(), "tok-config-test");
    assert!(c.warnings.is_empty());
    assert!(c.find_group("120363406289005073@g.us").is_some());
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let e = error_of(&VALID.replace("timeout = \"5s\"", "timeout = \"5s\"\ntimout = 3"));
    assert!(
        e.contains("cfg.toml:5: api.timout: unknown key; did you mean \"timeout\"?"),
        "{e}"
    );
}

#[test]
fn a_wrong_type_is_named() {
    let e = error_of(&VALID.replace(
        "requests_per_minute = 100",
        "requests_per_minute = \"fast\"",
    ));
    assert!(e.contains("requests_per_minute"), "{e}");
}

#[test]
fn a_bad_cron_names_the_key_line_and_value() {
    let e = error_of(&VALID.replace("0 3 * * *", "0 25 * * *"));
    assert!(
        e.contains("cfg.toml:28: group[0].schedule") && e.contains("0 25 * * *"),
        "{e}"
    );
}

#[test]
fn an_unknown_time_zone_is_named() {
    let e = error_of(&VALID.replace("America/Sao_Paulo", "Mars/Olympus"));
    assert!(
        e.contains("group[0].timezone") && e.contains("Mars/Olympus"),
        "{e}"
    );
    let e = error_of(&VALID.replace("Europe/Berlin", "CEST+2"));
    assert!(e.contains("defaults.timezone"), "{e}");
}

#[test]
fn duplicate_group_names_are_refused() {
    let dup = format!(
        "{VALID}\n[[group]]\nname = \"vip\"\ninstance = \"sales\"\njid = \"1203634@g.us\"\nschedule = \"@daily\"\n"
    );
    let e = error_of(&dup);
    assert!(
        e.contains("group[1].name") && e.contains("already used by group[0]"),
        "{e}"
    );
}

#[test]
fn a_group_on_an_undefined_instance_is_refused() {
    let e = error_of(&VALID.replace("instance = \"sales\"", "instance = \"support\""));
    assert!(
        e.contains("group[0].instance") && e.contains("support"),
        "{e}"
    );
}

#[test]
fn an_unset_token_variable_is_named() {
    let e = error_of(&VALID.replace("IR_CONFIG_TEST_TOKEN", "IR_CONFIG_TEST_UNSET_VAR"));
    assert!(
        e.contains("instance[0].token_env") && e.contains("IR_CONFIG_TEST_UNSET_VAR"),
        "{e}"
    );
}

#[test]
fn an_unreadable_token_file_is_named() {
    let e = error_of(&VALID.replace(
        "token_env = \"IR_CONFIG_TEST_TOKEN\"",
        "token_file = \"/nonexistent/token\"",
    ));
    assert!(
        e.contains("instance[0].token_file") && e.contains("/nonexistent/token"),
        "{e}"
    );
}

#[test]
fn a_token_file_that_never_ends_is_refused_not_read_forever() {
    let e = error_of(&VALID.replace(
        "token_env = \"IR_CONFIG_TEST_TOKEN\"",
        "token_file = \"/dev/zero\"",
    ));
    assert!(
        e.contains("instance[0].token_file") && e.contains("/dev/zero"),
        "{e}"
    );
}

#[test]
fn an_inline_token_is_accepted_with_a_warning_that_does_not_quote_it() {
    let c = parse(&VALID.replace(
        "token_env = \"IR_CONFIG_TEST_TOKEN\"",
        "token = \"inline-secret\"",
    ))
    .unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(!c.warnings[0].contains("inline-secret"));
    assert!(!format!("{c:?}").contains("inline-secret"));
}

#[test]
fn a_token_of_the_wrong_type_is_not_quoted_in_the_error() {
    // Found by tests/properties.rs: serde quotes the bad value, and a numeric
    // token written without quotes is still a token.
    for token in [
        "token = 1397294758555737553",
        "token = [\"inline-secret\"]",
        "token = { x = \"inline-secret\" }",
    ] {
        let text = VALID.replace("token_env = \"IR_CONFIG_TEST_TOKEN\"", token);
        let e = error_of(&text);
        assert!(
            e.contains("cfg.toml:22: instance[0].token: must be a string"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            !e.contains("1397294758555737553") && !e.contains("inline-secret"),
            "{e}"
        );
    }
    let inline = VALID.replace(
        "[[instance]]\nname = \"sales\"\ntoken_env = \"IR_CONFIG_TEST_TOKEN\"",
        "instance = [{ name = \"sales\", token = 1397294758555737553 }]",
    );
    let e = error_of(&inline);
    assert!(!e.contains("1397294758555737553"), "{e}");
}

#[test]
fn an_invite_link_or_code_where_a_jid_belongs_is_refused() {
    let e = error_of(&VALID.replace(
        "120363406289005073@g.us",
        "https://chat.whatsapp.com/NEW123XYZ",
    ));
    assert!(
        e.contains("group[0].jid") && e.contains("invite link"),
        "{e}"
    );
    let e = error_of(&VALID.replace("120363406289005073@g.us", "NEW123XYZabcDEF456ghiJ"));
    assert!(
        e.contains("group[0].jid") && e.contains("invite code"),
        "{e}"
    );
    let e = error_of(&VALID.replace("120363406289005073@g.us", "12345"));
    assert!(
        e.contains("cfg.toml:27: group[0].jid: \"12345\" is not a group JID; a group JID has the form digits@g.us"),
        "{e}"
    );
}

#[test]
fn a_zero_or_negative_rate_is_refused() {
    for bad in ["0", "-5"] {
        let e = error_of(&VALID.replace(
            "requests_per_minute = 100",
            &format!("requests_per_minute = {bad}"),
        ));
        assert!(
            e.contains("rate_limit.requests_per_minute") && e.contains(bad),
            "{e}"
        );
    }
}

#[test]
fn plain_http_is_refused_except_to_loopback() {
    for url in [
        "http://ryzeapi.cloud/api",
        "http://example.org/api",
        // Names that only look like loopback resolve wherever their owner likes.
        "http://127.0.0.1.nip.io/api",
        "http://localhost.example.org/api",
        "http://0.0.0.0:9/api",
        "http://10.0.0.1:9/api",
        "http://[::ffff:127.0.0.1]:9/api",
        "http://[::]:9/api",
        "ftp://127.0.0.1/api",
        "https://user:secret@ryzeapi.cloud/api",
    ] {
        let e = error_of(&VALID.replace("http://127.0.0.1:9/api", url));
        assert!(e.contains("api.base_url"), "{url}: {e}");
        assert!(!e.contains("secret"), "{url}: {e}");
    }
    for url in [
        "http://localhost:9/api",
        "http://127.0.0.1:9/api",
        "http://127.1.2.3:9/api",
        "http://[::1]:9/api",
        "https://ryzeapi.cloud/api",
        "https://example.org:8443/api",
    ] {
        let c = parse(&VALID.replace("http://127.0.0.1:9/api", url));
        assert!(c.is_ok(), "{url}: {c:?}");
    }
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = VALID
        .replace("0 3 * * *", "bad cron")
        .replace("America/Sao_Paulo", "Nowhere/Zone")
        .replace("max_attempts = 3", "max_attempts = 0");
    let ConfigError::Invalid(errors) = parse(&text).unwrap_err() else {
        panic!("expected validation errors")
    };
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"retry.max_attempts"), "{keys:?}");
    assert!(keys.contains(&"group[0].schedule"), "{keys:?}");
    assert!(keys.contains(&"group[0].timezone"), "{keys:?}");
}

#[test]
fn history_can_load_the_config_without_the_tokens() {
    let text = VALID.replace("IR_CONFIG_TEST_TOKEN", "IR_CONFIG_TEST_UNSET_VAR");
    let c = Config::parse(&text, Path::new("cfg.toml"), Purpose::Read).unwrap();
    assert_eq!(
        c.database.sqlite_path(),
        Some(PathBuf::from("/tmp/x/history.db").as_path())
    );
}

#[test]
fn a_jitter_longer_than_a_day_is_refused() {
    let e = error_of(&VALID.replace("jitter = \"10m\"", "jitter = \"300000y\""));
    assert!(e.contains("group[0].jitter"), "{e}");
}

#[test]
fn metrics_and_hooks_parse_with_their_defaults() {
    let text = format!(
        "{VALID}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n\
         [[hook]]\nkind = \"webhook\"\nurl = \"https://example.org/h\"\n\
         [[hook]]\nname = \"site\"\nkind = \"command\"\ncommand = [\"/bin/true\"]\non = [\"failure\"]\ngroups = [\"vip\"]\ntimeout = \"5s\"\n"
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let (web, cmd) = (&config.hooks[0], &config.hooks[1]);
    assert_eq!(
        (web.name.as_str(), web.on_success, web.on_failure),
        ("hook[0]", true, false)
    );
    assert_eq!(web.timeout, Duration::from_secs(30));
    assert!(cmd.wants("vip", false) && !cmd.wants("vip", true) && !cmd.wants("other", false));
    assert_ne!(web.key, cmd.key);
}

#[test]
fn bad_hooks_and_metrics_name_each_key_and_never_quote_a_webhook_path() {
    let text = format!(
        "{VALID}\n[metrics]\nlisten = \"localhost\"\n\
         [[hook]]\nkind = \"email\"\n\
         [[hook]]\nkind = \"webhook\"\nurl = \"http://chat.example.org/hooks/SECRET-PATH\"\n\
         [[hook]]\nkind = \"command\"\ncommand = []\n\
         [[hook]]\nkind = \"webhook\"\nurl = \"https://example.org/h\"\non = [\"sometimes\"]\ngroups = [\"nope\"]\nsecret_env = \"IR_UNSET_HOOK_SECRET\"\n"
    );
    let e = error_of(&text);
    for key in [
        "metrics.listen",
        "hook[0].kind",
        "hook[1].url",
        "hook[2].command",
        "hook[3].on",
        "hook[3].groups",
        "hook[3].secret_env",
    ] {
        assert!(e.contains(key), "{key} not named in:\n{e}");
    }
    assert!(!e.contains("SECRET-PATH"), "{e}");
}

#[test]
fn a_database_url_carries_no_password_nor_another_host_in_its_query_and_none_is_quoted() {
    for (url, key) in [
        (
            "postgres://rotator:hunter2@db.example.org/rotator",
            "password",
        ),
        (
            "postgres://rotator@db.example.org/rotator?password=hunter2",
            "?password=",
        ),
        (
            "postgres://rotator@localhost/rotator?sslmode=disable&host=hunter2.example.org",
            "?host=",
        ),
        (
            "postgres://rotator@localhost/rotator?hostaddr=10.9.8.7&x=hunter2",
            "?hostaddr=",
        ),
    ] {
        let text = VALID.replace("path = \"/tmp/x/history.db\"", &format!("url = \"{url}\""));
        let e = error_of(&text);
        assert!(e.contains("database.url") && e.contains(key), "{url}: {e}");
        assert!(!e.contains("hunter2"), "{url}: the value is quoted: {e}");
    }
    let fine = VALID.replace(
        "path = \"/tmp/x/history.db\"",
        "url = \"postgres://rotator@db.example.org/rotator?sslmode=verify-full&application_name=ir\"",
    );
    assert!(parse(&fine).is_ok());
}

#[test]
fn event_rotations_per_hour_default_to_6_and_must_be_1_to_60() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let valid = VALID.replace("/tmp/x/history.db", &db.display().to_string());
    let events = "\n[events]\nwebsocket = true\n";
    let c = parse(&format!("{valid}{events}")).unwrap();
    assert_eq!(c.events.unwrap().max_rotations_per_hour, 6);
    let c = parse(&format!("{valid}{events}max_rotations_per_hour = 2\n")).unwrap();
    assert_eq!(c.events.unwrap().max_rotations_per_hour, 2);
    for bad in ["0", "-1", "61"] {
        let e = error_of(&format!("{valid}{events}max_rotations_per_hour = {bad}\n"));
        assert!(
            e.contains("events.max_rotations_per_hour") && e.contains(bad),
            "{e}"
        );
    }
}
