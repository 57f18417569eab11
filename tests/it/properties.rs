//! Property tests: the three parsers that meet outside input (the config file,
//! cron schedules read in any zone, the API's replies) never panic, whatever
//! they are given, and what they accept keeps its promises.

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use chrono_tz::{TZ_VARIANTS, Tz};
use invite_rotator::config::{Config, Group, Purpose};
use invite_rotator::ratelimit::RateLimiter;
use invite_rotator::ryzeapi::{CallError, Client, RyzeApi, http_client, parse_info, parse_reset};
use invite_rotator::schedule::Schedule;
use invite_rotator::secret::Token;
use invite_rotator::timers;
use invite_rotator::whatsapp::Jid;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Cases per property unless a property says otherwise.
const CASES: u32 = 512;

/// `n` cases, or `PROPTEST_CASES` when set (for a longer run by hand).
fn cases(n: u32) -> ProptestConfig {
    let from_env = std::env::var("PROPTEST_CASES").ok();
    ProptestConfig {
        cases: from_env.and_then(|v| v.parse().ok()).unwrap_or(n),
        // Failures become named regression tests in this file instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- The config loader ----

/// A token file for the template, so that `Purpose::Run` has something to
/// read without the tests changing the environment.
static TOKEN_FILE: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "tok-properties\n").unwrap();
    (dir, file)
});

/// Every key the config has, as `(table, key, valid value)`; `[[instance]]`
/// and `[[group]]` are arrays of tables. The instance's token source is one
/// of the three keys, so each of them is tried in turn.
const KEYS: &[(&str, &str, &str)] = &[
    ("api", "base_url", r#""http://127.0.0.1:9/api""#),
    ("api", "timeout", r#""5s""#),
    ("rate_limit", "requests_per_minute", "100"),
    ("rate_limit", "max_concurrent", "4"),
    ("retry", "max_attempts", "3"),
    ("retry", "backoff_initial", r#""1s""#),
    ("retry", "backoff_max", r#""1m""#),
    ("database", "path", r#""/tmp/properties/history.db""#),
    ("defaults", "timezone", r#""Europe/Berlin""#),
    ("defaults", "jitter", r#""1m""#),
    ("defaults", "catch_up", "true"),
    ("[instance]", "name", r#""sales""#),
    ("[instance]", "TOKEN", ""),
    ("[group]", "name", r#""vip""#),
    ("[group]", "instance", r#""sales""#),
    ("[group]", "jid", r#""120363406289005073@g.us""#),
    ("[group]", "schedule", r#""0 3 * * *""#),
    ("[group]", "timezone", r#""America/Sao_Paulo""#),
    ("[group]", "jitter", r#""10m""#),
    ("[group]", "catch_up", "false"),
];

const TOKEN_KEYS: [&str; 3] = ["token_env", "token_file", "token"];

/// A valid config with `key` of `table` set to the TOML text `value` (the
/// token given by `token_key`), everything else valid.
fn config_with(table: &str, key: &str, value: &str, token_key: &str) -> String {
    let token_file = toml::Value::String(TOKEN_FILE.1.display().to_string()).to_string();
    let mut out = String::new();
    let mut current = "";
    for (t, k, v) in KEYS {
        if *t != current {
            current = t;
            out.push_str(&format!("\n[{t}]\n"));
        }
        let (k, v) = if *k == "TOKEN" {
            let v = match token_key {
                "token_env" => r#""PATH""#.to_owned(),
                "token_file" => token_file.clone(),
                _ => r#""tok-inline-properties""#.to_owned(),
            };
            (token_key, v)
        } else {
            (*k, (*v).to_owned())
        };
        let v = if *t == table && k == key { value } else { &v };
        out.push_str(&format!("{k} = {v}\n"));
    }
    out
}

/// A TOML value of any type, written as TOML, on one line.
fn toml_value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        any::<String>().prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    let value = scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    });
    let literal = prop_oneof![
        // Numbers TOML cannot hold, or holds oddly.
        "-?[0-9]{19,40}",
        "[+-]?(0|[1-9][0-9]{0,3})",
        "0x[0-9a-fA-F]{1,20}",
        "[+-]?(inf|nan)",
        "[0-9]{1,3}\\.[0-9]{1,3}e[+-]?[0-9]{1,4}",
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("07:32:00".to_owned()),
    ];
    prop_oneof![4 => value.prop_map(|v| v.to_string()), 1 => literal]
        // An inline table renders as `{ ... }` on one line; anything else that
        // spans lines would move the error away from the key's line.
        .prop_filter("one line", |v| !v.contains('\n'))
}

/// A string value such as the key might hold: durations, schedules, zones,
/// JIDs, URLs, names, paths, numbers, and plain junk.
fn plausible_string() -> impl Strategy<Value = String> {
    let zone = select(TZ_VARIANTS.iter().map(|z| z.name()).collect::<Vec<_>>());
    prop_oneof![
        "[0-9]{0,25}(ns|us|ms|s|m|h|d|w|M|y|years|min|sec)?",
        "-?[0-9]{1,4}(\\.[0-9]{1,3})?[a-z]{0,3}",
        "([0-9]{1,3}[smhd] ?){1,4}",
        cron_text(),
        zone.prop_map(str::to_owned),
        "[A-Za-z]{1,12}/[A-Za-z_+-]{1,14}",
        "(UTC|GMT|Etc/GMT)[+-]?[0-9]{0,3}",
        "[0-9-]{0,40}@(g\\.us|s\\.whatsapp\\.net|)",
        "https://chat\\.whatsapp\\.com/[A-Za-z0-9_-]{0,30}",
        "(https?|ftp|file|ws)://(localhost|127\\.[0-9]{1,3}\\.0\\.1|\\[::1\\]|[a-z.]{1,20}|user:pw@host)(:[0-9]{1,6})?(/[a-z]{0,5})*",
        "[ -~]{0,40}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(CASES))]

    #[test]
    fn any_text_as_a_config_gives_a_config_or_an_error_never_a_panic(text in any::<String>()) {
        for tokens in [Purpose::Read, Purpose::Run] {
            let _ = Config::parse(&text, Path::new("cfg.toml"), tokens);
        }
    }

    #[test]
    fn toml_shaped_text_as_a_config_gives_a_config_or_an_error_never_a_panic(
        text in "(\\[{1,2}[a-z_]{0,12}\\]{1,2}\n|[a-z_]{1,20} = (\"[ -~]{0,20}\"|-?[0-9]{1,25}|true|\\[\\]|\\{\\})\n){0,20}",
    ) {
        for tokens in [Purpose::Read, Purpose::Run] {
            let _ = Config::parse(&text, Path::new("cfg.toml"), tokens);
        }
    }

    #[test]
    fn any_value_for_any_key_is_accepted_or_refused_naming_the_key(
        (table, key, _) in select(KEYS),
        token_key in select(&TOKEN_KEYS[..]),
        value in prop_oneof![toml_value(), plausible_string().prop_map(|s| toml::Value::String(s).to_string())],
    ) {
        let key = if key == "TOKEN" { token_key } else { key };
        let text = config_with(table, key, &value, token_key);
        for tokens in [Purpose::Read, Purpose::Run] {
            if let Err(e) = Config::parse(&text, Path::new("cfg.toml"), tokens) {
                let message = e.to_string();
                // Renaming the instance also leaves the group's reference dangling.
                let named = message.contains(key)
                    || (table == "[instance]" && message.contains("group[0].instance"));
                prop_assert!(named, "{key} = {value}\n{message}");
            }
        }
    }

    #[test]
    fn a_config_error_never_shows_an_inline_token(
        secret in "[!-~]{12,40}".prop_map(|s| format!("SECRET{s}")),
        token_as in 0..3,
        (_, key, _) in select(KEYS),
        value in prop_oneof![toml_value(), plausible_string().prop_map(|s| toml::Value::String(s).to_string())],
    ) {
        // The token written as a string, as a bare word, or as a number.
        let token = match token_as {
            0 => toml::Value::String(secret.clone()).to_string(),
            1 => secret.clone(),
            _ => format!("1{}", secret.bytes().map(|b| b % 10).map(|d| d.to_string()).collect::<String>()),
        };
        let secret_text = if token_as == 2 { token.clone() } else { secret.clone() };
        let mut text = config_with("[instance]", "token", &token, "token");
        if key != "TOKEN" {
            text = text.replacen(&format!("\n{key} = "), &format!("\n{key} = {value}\n#{key} = "), 1);
        }
        for tokens in [Purpose::Read, Purpose::Run] {
            match Config::parse(&text, Path::new("cfg.toml"), tokens) {
                Err(e) => {
                    let shown = format!("{e}\n{e:?}");
                    prop_assert!(!shown.contains(&secret_text), "{shown}");
                }
                Ok(c) => {
                    let shown = format!("{c:?}\n{}", c.warnings.join("\n"));
                    prop_assert!(!shown.contains(&secret_text), "{shown}");
                }
            }
        }
    }
}

// ---- Cron schedules and time zones ----

/// One cron field: numbers (huge ones too), ranges, steps, lists, names and
/// croner's extensions (`L`, `W`, `#`, `?`), and junk.
fn cron_field() -> impl Strategy<Value = String> {
    let name = select(vec![
        "MON", "tue", "Wed", "SUN", "sat", "JAN", "feb", "Dec", "XYZ", "L", "W", "LW", "?", "*",
    ]);
    let atom = prop_oneof![
        Just("*".to_owned()),
        (0u32..70).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
        (0u32..70).prop_map(|n| format!("*/{n}")),
        (0u32..70, 0u32..100).prop_map(|(a, n)| format!("{a}/{n}")),
        (0u32..70, 0u32..70, 0u32..70).prop_map(|(a, b, n)| format!("{a}-{b}/{n}")),
        (0u32..40).prop_map(|n| format!("{n}L")),
        (0u32..40).prop_map(|n| format!("{n}W")),
        (0u32..9, 0u32..7).prop_map(|(d, n)| format!("{d}#{n}")),
        name.prop_map(str::to_owned),
        "[-*/,#LW?0-9A-Za-z]{1,6}",
    ];
    prop::collection::vec(atom, 1..4).prop_map(|v| v.join(","))
}

/// A cron-ish schedule: 1 to 8 fields, or a nickname, or junk.
fn cron_text() -> impl Strategy<Value = String> {
    let nickname = select(vec![
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@reboot",
        "@every 5m",
        "@",
        "@ daily",
    ]);
    prop_oneof![
        6 => (prop::collection::vec(cron_field(), 1..9), "[ \t]{1,2}")
            .prop_map(|(fields, sep)| fields.join(&sep)),
        1 => nickname.prop_map(str::to_owned),
        1 => "@[a-zA-Z ]{0,10}",
        1 => any::<String>(),
    ]
}

/// A schedule that parses: plain valid fields, so most cases reach the
/// time arithmetic.
fn valid_schedule() -> impl Strategy<Value = Schedule> {
    let field = |max: u32| {
        prop_oneof![
            Just("*".to_owned()),
            (0..max).prop_map(|n| n.to_string()),
            (1..max.max(2)).prop_map(|n| format!("*/{n}")),
            (0..max, 0..max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        ]
    };
    let day = (1u32..32).prop_map(|d| d.to_string());
    let fields = (
        prop::option::of(field(60)),
        field(60),
        field(24),
        prop_oneof![Just("*".to_owned()), day, Just("L".to_owned())],
        prop_oneof![Just("*".to_owned()), (1u32..13).prop_map(|m| m.to_string())],
        prop_oneof![
            Just("*".to_owned()),
            (0u32..7).prop_map(|d| d.to_string()),
            Just("5L".to_owned()),
            Just("1#2".to_owned())
        ],
    );
    let text = fields.prop_map(|(s, m, h, dom, mon, dow)| {
        let five = format!("{m} {h} {dom} {mon} {dow}");
        match s {
            Some(s) => format!("{s} {five}"),
            None => five,
        }
    });
    prop_oneof![
        8 => text,
        1 => select(vec!["@yearly", "@monthly", "@weekly", "@daily", "@hourly", "0 0 30 2 *", "0 0 31 4 *"]).prop_map(str::to_owned),
        2 => cron_text(),
    ]
    .prop_filter_map("parses", |t| Schedule::parse(&t).ok())
}

/// Any zone chrono-tz knows.
fn zone() -> impl Strategy<Value = Tz> {
    select(TZ_VARIANTS.to_vec())
}

/// An instant: anywhere chrono can represent, or within days of a typical DST
/// change (late March/April, late September to early November) in 1900-2100.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp();
    let max = DateTime::<Utc>::MAX_UTC.timestamp();
    let near_dst = (
        1900i32..2100,
        select(vec![3u32, 4, 9, 10, 11]),
        1u32..29,
        0u32..24,
        0u32..60,
    )
        .prop_map(|(y, mo, d, h, mi)| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap());
    prop_oneof![
        3 => near_dst,
        1 => (min..=max).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        1 => (-2_208_988_800i64..4_102_444_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        1 => select(vec![DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC, DateTime::UNIX_EPOCH]),
    ]
}

/// A group as the config would build it (jitter at most 24 h).
fn group(schedule: Schedule, timezone: Tz, jitter_s: u64) -> Group {
    Group {
        name: "vip".to_owned(),
        instance: "sales".to_owned(),
        jid: Jid::parse("120363406289005073@g.us").unwrap(),
        schedule,
        timezone,
        jitter: Duration::from_secs(jitter_s),
        catch_up: true,
        events: Default::default(),
    }
}

proptest! {
    #![proptest_config(cases(CASES))]

    #[test]
    fn any_cron_ish_text_parses_or_is_refused_never_a_panic(text in cron_text()) {
        if let Err(message) = Schedule::parse(&text) {
            prop_assert!(!message.to_string().is_empty());
        }
    }

    #[test]
    fn next_after_is_strictly_later_and_last_at_or_before_is_not_later(
        schedule in valid_schedule(),
        tz in zone(),
        at in instant(),
    ) {
        if let Some(next) = schedule.next_after(at, tz) {
            prop_assert!(next.with_timezone(&Utc) > at, "{schedule:?} in {tz}: {next} after {at}");
        }
        if let Some(last) = schedule.last_at_or_before(at, tz) {
            prop_assert!(last.with_timezone(&Utc) <= at, "{schedule:?} in {tz}: {last} for {at}");
        }
    }

    #[test]
    fn upcoming_times_are_after_the_instant_and_strictly_increasing(
        schedule in valid_schedule(),
        tz in zone(),
        at in instant(),
        n in 0usize..6,
    ) {
        let times = schedule.upcoming(at, tz, n);
        prop_assert!(times.len() <= n);
        let mut previous = at;
        for t in times {
            let t = t.with_timezone(&Utc);
            prop_assert!(t > previous, "{schedule:?} in {tz}: {t} after {previous}");
            previous = t;
        }
    }

    #[test]
    fn the_schedulers_fire_helpers_give_a_fire_or_none_never_a_panic(
        schedule in valid_schedule(),
        tz in zone(),
        now in instant(),
        since_back_s in 0i64..10_000_000,
        jitter_s in 0u64..=86_400,
    ) {
        let g = group(schedule, tz, jitter_s);
        if let Some(fire) = timers::next_fire(0, &g, now) {
            prop_assert!(fire.due > now);
            prop_assert!(fire.at >= fire.due);
        }
        if let Some(fire) = timers::upcoming_fire(0, &g, now) {
            prop_assert!(fire.at > now, "{fire:?} for {now}");
        }
        let since = now.checked_sub_signed(ChronoDuration::seconds(since_back_s)).unwrap_or(now);
        if let Some(missed) = timers::missed_fire(&g, since, now) {
            prop_assert!(missed > since && missed <= now, "{missed} not in ({since}, {now}]");
        }
    }
}

#[test]
fn every_zone_gives_next_times_after_the_instant_around_both_dst_changes() {
    let schedules =
        ["30 2 * * *", "*/20 * * * *", "0 0 1 * *"].map(|s| Schedule::parse(s).unwrap());
    // Instants a day either side of the northern and southern DST changes.
    let instants = [
        (2026, 3, 8),
        (2026, 3, 29),
        (2026, 4, 5),
        (2026, 10, 4),
        (2026, 10, 25),
        (2026, 11, 1),
    ]
    .map(|(y, m, d)| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap());
    for tz in TZ_VARIANTS {
        for s in &schedules {
            for start in instants {
                for hours in (0..48).step_by(3) {
                    let at = start + ChronoDuration::hours(hours);
                    let next = s
                        .next_after(at, tz)
                        .expect("these schedules always fire again");
                    assert!(
                        next.with_timezone(&Utc) > at,
                        "{s:?} in {tz}: {next} after {at}"
                    );
                }
            }
        }
    }
}

// ---- API replies ----

fn reply_jid() -> Jid {
    Jid::parse("120363406289005073@g.us").unwrap()
}

/// Whether `code` is an invite code as [`invite_rotator::whatsapp::InviteCode`] promises.
fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A JSON value that might stand where a code, link or JID goes.
fn json_field() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,70}".prop_map(Value::from),
        "https?://chat\\.whatsapp\\.com/[A-Za-z0-9_?#/.-]{0,70}".prop_map(Value::from),
        "(https://[a-z.]{1,12}/)?[ -~]{0,20}".prop_map(Value::from),
        Just(Value::from("120363406289005073@g.us")),
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// A body shaped like the API's replies, each field present or not, of any type.
fn reply_body() -> impl Strategy<Value = Vec<u8>> {
    let fields = (
        prop::option::of(prop_oneof![
            any::<bool>().prop_map(Value::from),
            json_field()
        ]),
        prop::option::of(json_field()),
        prop::option::of(json_field()),
        prop::option::of(json_field()),
        any::<bool>(),
    );
    let json = fields.prop_map(|(success, jid, code, link, nested)| {
        let mut v = json!({});
        let fields = [
            ("success", success),
            ("groupJid", jid),
            ("inviteCode", code),
            ("inviteLink", link),
        ];
        for (k, value) in fields {
            if let Some(value) = value {
                v[k] = value;
            }
        }
        if nested {
            v = json!({ "success": true, "group": v });
        }
        serde_json::to_vec(&v).unwrap()
    });
    prop_oneof![
        3 => json,
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => "[ -~]{0,200}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(cases(CASES * 4))]

    #[test]
    fn any_reset_body_gives_a_valid_code_or_an_unknown_outcome(body in reply_body()) {
        match parse_reset(&reply_jid(), &body) {
            Ok(reply) => {
                prop_assert!(is_code(reply.code.as_str()), "{:?}", reply.code);
            }
            Err(e) => prop_assert!(matches!(e, CallError::Unknown(_)), "{e:?}"),
        }
    }

    #[test]
    fn any_info_body_gives_a_valid_code_no_code_or_a_transient_error(body in reply_body()) {
        match parse_info(&body) {
            Ok(info) => {
                if let Some(code) = info.code {
                    prop_assert!(is_code(code.as_str()), "{code:?}");
                }
            }
            Err(e) => prop_assert!(matches!(e, CallError::Transient(_)), "{e:?}"),
        }
    }
}

/// One reply the fake server gives: status, headers, body.
type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// A server that answers whatever [`Scripted::set`] last put in.
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Option<Reply>>>);

impl wiremock::Respond for Scripted {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let (status, headers, body) = self.0.lock().unwrap().clone().expect("a scripted reply");
        let mut reply = wiremock::ResponseTemplate::new(status).set_body_bytes(body);
        for (name, value) in headers {
            reply = reply.append_header(name.as_str(), value.as_str());
        }
        reply
    }
}

fn header() -> impl Strategy<Value = (String, String)> {
    let name = select(vec![
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "Retry-After",
        "Content-Type",
        "Location",
        "X-Other",
    ]);
    let value = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..5).prop_map(|n| n.to_string()),
        "[0-9]{20,40}",
        " ?[0-9]{1,10}\\.?[0-9]{0,3} ?",
        "[ -~]{0,30}",
        Just("application/json".to_owned()),
        Just("http://127.0.0.1:1/elsewhere".to_owned()),
    ];
    (name.prop_map(str::to_owned), value)
}

/// Statuses a server can send as a final reply (informational 1xx are not replies).
fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => select(vec![200u16, 201, 204, 301, 302, 307, 308, 400, 401, 403, 404, 408, 409, 429, 500, 501, 502, 503, 504]),
        1 => 200u16..=999,
    ]
}

proptest! {
    // Each case is a real HTTP exchange with the client, so fewer of them.
    #![proptest_config(cases(256))]

    #[test]
    fn any_status_headers_and_body_are_classified_never_a_panic(
        status in status(),
        headers in prop::collection::vec(header(), 0..5),
        body in reply_body(),
    ) {
        static SERVER: LazyLock<(tokio::runtime::Runtime, wiremock::MockServer, Scripted, reqwest::Client)> =
            LazyLock::new(|| {
                let rt = tokio::runtime::Runtime::new().unwrap();
                let scripted = Scripted::default();
                let server = rt.block_on(async {
                    let server = wiremock::MockServer::start().await;
                    wiremock::Mock::given(wiremock::matchers::any())
                        .respond_with(scripted.clone())
                        .mount(&server)
                        .await;
                    server
                });
                let http = http_client(Duration::from_secs(10), None).unwrap();
                (rt, server, scripted, http)
            });
        let (rt, server, scripted, http) = &*SERVER;
        *scripted.0.lock().unwrap() = Some((status, headers, body));
        let url = reqwest::Url::parse(&format!("{}/api", server.uri())).unwrap();
        // A limiter per call: a reply may pause its token for minutes.
        let client = || {
            let limiter = Arc::new(RateLimiter::per_minute(6000));
            Client::new(http.clone(), url.clone(), "rotator-1", Token::new("tok-properties"), limiter)
        };

        let (reset, info) = rt.block_on(async {
            (client().reset_link(&reply_jid()).await, client().group_info(&reply_jid()).await)
        });

        for (call_status, ok_code) in [
            (reset.http_status, reset.result.as_ref().ok().map(|r| r.code.clone())),
            (info.http_status, info.result.as_ref().ok().and_then(|i| i.code.clone())),
        ] {
            prop_assert_eq!(call_status, Some(status));
            if let Some(code) = ok_code {
                prop_assert!(is_code(code.as_str()), "{code:?}");
            }
        }
        if !(200..300).contains(&status) {
            prop_assert!(reset.result.is_err() && info.result.is_err(), "HTTP {status} taken as a success");
        }
        if (300..400).contains(&status) {
            prop_assert_eq!(reset.result.unwrap_err().outcome(), "permanent");
        }
    }
}
