use super::*;
use crate::config::Purpose;
use std::path::Path;

const CODE: &str = "AbCdEfGhIjKlMnOpQrStUv";
const OTHER: &str = "ZyXwVuTsRqPoNmLkJiHgFe";

fn known() -> HashSet<String> {
    [CODE.to_owned()].into()
}

#[test]
fn a_known_code_is_masked_wherever_it_stands_as_a_code() {
    let m = Masker::default();
    for text in [
        format!("new_code={CODE}"),
        format!("\"new_link\":\"https://chat.whatsapp.com/{CODE}\""),
        format!("\"new_link\":\"https:\\/\\/chat.whatsapp.com\\/{CODE}\""),
        format!("chat.whatsapp.com\\u002F{CODE}\\n{CODE}"),
        format!("next=https%3A%2F%2Fchat.whatsapp.com%2F{CODE}"),
        format!("{CODE}-suffix and prefix_{CODE}"),
    ] {
        let masked = m.mask(&text, &known());
        assert!(!masked.contains(CODE), "{text} -> {masked}");
        assert!(masked.contains("[code …"), "{masked}");
    }
}

#[test]
fn unknown_codes_and_longer_words_holding_a_code_stay() {
    let m = Masker::default();
    let text = format!("reported {OTHER}; x{CODE} is another word; 120363406289005073@g.us");
    assert_eq!(m.mask(&text, &known()), text);
}

#[test]
fn the_replacement_matches_the_logs_fingerprint_digest() {
    let masked = Masker::default().mask(CODE, &known());
    let fingerprint = crate::whatsapp::fingerprint(CODE).to_string();
    let hex = fingerprint.rsplit('…').next().unwrap();
    assert_eq!(masked, format!("[code …{hex}]"));
}

#[test]
fn without_the_history_every_code_shaped_word_is_masked() {
    let m = Masker::default();
    let text = format!("{OTHER} and {CODE}, but not 120363406289005073 or short1");
    let masked = m.mask_all_codes(&text);
    assert!(
        !masked.contains(OTHER) && !masked.contains(CODE),
        "{masked}"
    );
    assert!(masked.contains("120363406289005073 or short1"), "{masked}");
}

#[test]
fn candidates_are_the_code_shaped_words() {
    let text = format!("x {CODE}-tail, {OTHER}_{CODE} 1203634062890050731234 short");
    let words = candidates(&text);
    assert!(words.contains(&CODE), "{words:?}");
    assert!(words.contains(&OTHER), "{words:?}");
    assert!(!words.iter().any(|w| w.starts_with("1203")), "{words:?}");
    assert!(!words.contains(&"short"), "{words:?}");
}

#[test]
fn secrets_are_masked_as_substrings_and_as_json_shows_them() {
    let m = Masker::new(["tok-sales-1234", "se\"cret/with\\quote", ""]);
    let text = r#"{"echo":"Bearer tok-sales-1234x","s":"se\"cret/with\\quote"}"#;
    let masked = m.mask(text, &HashSet::new());
    assert_eq!(masked, r#"{"echo":"Bearer [redacted]x","s":"[redacted]"}"#);
    assert!(!format!("{m:?}").contains("tok-sales"));
}

fn config(dir: &Path) -> Config {
    let secret = dir.join("events-secret");
    std::fs::write(&secret, "events-secret-0123456789abcdef\n").unwrap();
    let text = format!(
        r#"
[database]
path = "{db}"

[[instance]]
name = "sales"
token = "tok-sales-0123456789"

[[instance]]
name = "support"
token = "tok-support-0123456789"

[[group]]
name = "vip"
instance = "sales"
jid = "120363406289005073@g.us"
schedule = "0 3 * * *"

[events]
listen = "127.0.0.1:0"
public_url = "https://rotator.example.org/ryze"
authorization_file = "{secret}"

[[hook]]
kind = "webhook"
url = "https://hooks.example.org/in?key=hook-query-key-42"
"#,
        db = dir.join("h.db").display(),
        secret = secret.display(),
    );
    Config::parse(&text, &dir.join("cfg.toml"), Purpose::Run).unwrap()
}

#[test]
fn event_data_quoting_tokens_under_any_name_is_stored_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = Masker::of(&config(dir.path()));
    let data = r#"{"instanceData":{"instance":"sales"},"note":"tok-support-0123456789",
        "nested":{"x":["Bearer events-secret-0123456789abcdef"]},"k":"hook-query-key-42",
        "a":"tok-sales-0123456789"}"#;

    let masked = m.mask(data, &HashSet::new());

    for secret in [
        "tok-support-0123456789",
        "tok-sales-0123456789",
        "events-secret-0123456789abcdef",
        "hook-query-key-42",
    ] {
        assert!(!masked.contains(secret), "{secret} in {masked}");
    }
    assert!(masked.contains(r#""note":"[redacted]""#), "{masked}");
}

#[tokio::test]
async fn the_history_tells_which_codes_to_mask() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.db")).await.unwrap();
    let m = Masker::new(["tok-sales-0123456789"]);
    // Nothing known yet: the reported code stays, for the events' actor.
    let text = format!("https://chat.whatsapp.com/{CODE} tok-sales-0123456789");
    assert_eq!(
        m.mask_known(&store, &text).await,
        format!("https://chat.whatsapp.com/{CODE} [redacted]")
    );

    let new = crate::store::NewRotation {
        group_name: "vip",
        group_jid: "1@g.us",
        instance: "sales",
        cause: crate::store::Cause::manual(),
    };
    let crate::store::Begun::Started(id) = store.begin(&new).await.unwrap() else {
        panic!("not started")
    };
    store.record_old_code(id, Some(CODE)).await.unwrap();

    let mut texts = [text.clone(), format!("{OTHER} {CODE}")];
    m.mask_known_all(&store, &mut texts).await;
    assert!(
        !texts[0].contains(CODE) && !texts[1].contains(CODE),
        "{texts:?}"
    );
    assert!(texts[1].starts_with(OTHER), "{texts:?}");
}
