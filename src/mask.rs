//! Masking outside text before it is stored, logged or shown: hook replies
//! and command output, RyzeAPI's error messages, events' data. A receiver
//! that echoes a notification back, or an API that quotes a request, must
//! not put a live invite code or a token into the journal, the history's
//! error columns or the console's pages.
//!
//! Two things are masked:
//! - every configured token and secret ([`Masker::of`]): matched as
//!   substrings (and in their JSON-escaped form), replaced by `[redacted]`;
//! - every invite code the history knows (issued, revoked or placed as an
//!   outside change), replaced by `[code …xxxxxx]` (6 hex digits of its
//!   SHA-256, as in the logs' fingerprints: enough to match a history row,
//!   useless to join).
//!
//! How codes are found, and why this way: the set of codes grows with every
//! rotation (a million rows is a million codes), so neither a scan of the
//! history nor a copy of it in memory per node is acceptable, and an
//! in-memory set would miss codes another node or the CLI issued. Instead
//! the text's code-shaped words ([`candidates`]: maximal runs of the code's
//! alphabet `[A-Za-z0-9_-]`, and their `[A-Za-z0-9]` parts, 16 to 64
//! characters with a letter) are looked up in the history by one indexed
//! query ([`Store::known_codes`]): a few seeks per text, none when the text
//! has no such word (a removal's JIDs and phone numbers have no letter).
//! Masking every code-shaped word instead would be simpler but would blind
//! the events' actor, which reads the link an event reports from its stored
//! data: an unknown code there is what it acts on (after confirming it with
//! the API), so only codes the history knows are masked. When the history
//! cannot be read, every code-shaped word is masked: losing a request id from
//! an error message costs less than a leaked code.
//!
//! A word is matched as a whole word: where a code stands alone, in
//! `chat.whatsapp.com/<code>`, after a JSON escape (`\/`, `\u002F`, `\n`) or
//! a percent escape (`%2F`). Codes shorter than [`MIN_CODE_LEN`] characters
//! are not looked for (WhatsApp's are 22; a short one would mask words).

use crate::config::{Config, HookAction};
use crate::store::Store;
use crate::whatsapp::MAX_CODE_LEN;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// The shortest code looked for.
pub const MIN_CODE_LEN: usize = 16;
/// What a secret is replaced by.
const REDACTED: &str = "[redacted]";

/// Masks configured secrets and known codes in outside text (see the
/// module's documentation). Cloning is cheap enough to do per reload.
#[derive(Clone, Default)]
pub struct Masker {
    /// The secrets' texts, longest first (a secret inside another is masked
    /// as part of the longer one).
    secrets: Vec<String>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} secrets)", self.secrets.len())
    }
}

impl Masker {
    /// A masker of `secrets` (empty ones ignored).
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Masker {
        let mut all = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                continue;
            }
            all.push(secret.to_owned());
            // As a JSON string shows it (a receiver echoing a body).
            if let Ok(json) = serde_json::to_string(secret) {
                let json = &json[1..json.len() - 1];
                if json != secret {
                    all.push(json.to_owned());
                }
            }
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Masker { secrets: all }
    }

    /// A masker of every token and secret `config` holds: the instances'
    /// tokens, the events' secret, the console's token, the database's
    /// password, the webhooks' signing secrets and their URLs' passwords
    /// and query values (chat webhooks carry their credential there).
    pub fn of(config: &Config) -> Masker {
        let mut secrets: Vec<String> = Vec::new();
        secrets.extend(config.instances.iter().map(|i| i.token.expose().to_owned()));
        if let Some(secret) = config.events.as_ref().and_then(|e| e.secret.as_ref()) {
            secrets.push(secret.expose().to_owned());
        }
        if let Some(token) = config.console.as_ref().and_then(|c| c.token.as_ref()) {
            secrets.push(token.expose().to_owned());
        }
        if let crate::config::Database::Postgres(pg) = &config.database
            && let Some(password) = &pg.password
        {
            secrets.push(password.expose().to_owned());
        }
        for hook in &config.hooks {
            if let HookAction::Webhook { url, secret } = &hook.action {
                if let Some(secret) = secret {
                    secrets.push(secret.expose().to_owned());
                }
                if let Some(password) = url.password() {
                    secrets.push(password.to_owned());
                }
                // Short values (`v=1`) would mask ordinary words.
                secrets.extend(
                    url.query_pairs()
                        .map(|(_, v)| v.into_owned())
                        .filter(|v| v.len() >= 8),
                );
            }
        }
        Masker::new(secrets)
    }

    /// `text` without the secrets and without the codes in `known`.
    pub fn mask(&self, text: &str, known: &HashSet<String>) -> String {
        self.mask_where(text, |word| known.contains(word))
    }

    /// `text` without the secrets and without any code-shaped word.
    pub fn mask_all_codes(&self, text: &str) -> String {
        self.mask_where(text, |_| true)
    }

    /// `text` without the secrets and the codes the history in `store`
    /// knows (every code-shaped word if it cannot be read).
    pub async fn mask_known(&self, store: &Store, text: &str) -> String {
        let mut texts = [text.to_owned()];
        self.mask_known_all(store, &mut texts).await;
        let [masked] = texts;
        masked
    }

    /// As [`Masker::mask_known`], for many texts with one lookup.
    pub async fn mask_known_all(&self, store: &Store, texts: &mut [String]) {
        let unsecret: Vec<String> = texts.iter().map(|t| self.without_secrets(t)).collect();
        let words: Vec<&str> = unsecret.iter().flat_map(|t| candidates(t)).collect();
        let known = if words.is_empty() {
            Ok(HashSet::new())
        } else {
            store.known_codes(&words).await
        };
        for (text, unsecret) in texts.iter_mut().zip(&unsecret) {
            *text = match &known {
                Ok(known) => mask_codes(unsecret, |w| known.contains(w)),
                Err(_) => mask_codes(unsecret, |_| true),
            };
        }
    }

    fn mask_where(&self, text: &str, is_code: impl Fn(&str) -> bool) -> String {
        mask_codes(&self.without_secrets(text), is_code)
    }

    fn without_secrets(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

/// The code-shaped words of `text` (see the module's documentation), each
/// as it stands; a run and its parts may both be given.
pub fn candidates(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for (start, end) in runs(text) {
        let run = &text[start..end];
        if code_shaped(run) {
            out.push(run);
        }
        out.extend(
            parts(run)
                .into_iter()
                .map(|(s, e)| &run[s..e])
                .filter(|p| p.len() != run.len() && code_shaped(p)),
        );
    }
    out
}

fn code_shaped(word: &str) -> bool {
    (MIN_CODE_LEN..=MAX_CODE_LEN).contains(&word.len())
        && word.bytes().any(|b| b.is_ascii_alphabetic())
}

fn code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Byte ranges of the `[A-Za-z0-9]` parts of a run.
fn parts(run: &str) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut start = None;
    for (i, b) in run.bytes().enumerate() {
        if b.is_ascii_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            parts.push((s, i));
        }
    }
    if let Some(s) = start {
        parts.push((s, run.len()));
    }
    parts
}

/// Byte ranges of the maximal runs of `[A-Za-z0-9_-]`, escapes (`\x`,
/// `\uXXXX`, `%XX`) counted as separators.
fn runs(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut start = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |from: usize, n: usize| {
            bytes.len() >= from + n && bytes[from..from + n].iter().all(u8::is_ascii_hexdigit)
        };
        let skip = if b == b'\\' && bytes.get(i + 1) == Some(&b'u') && hex(i + 2, 4) {
            6
        } else if b == b'\\' && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            2
        } else if b == b'%' && hex(i + 1, 2) {
            3
        } else if code_byte(b) {
            0
        } else {
            1
        };
        if skip == 0 {
            start.get_or_insert(i);
            i += 1;
        } else {
            if let Some(s) = start.take() {
                runs.push((s, i));
            }
            i += skip;
        }
    }
    if let Some(s) = start {
        runs.push((s, bytes.len()));
    }
    runs
}

/// `text` with every code-shaped word for which `is_code` holds replaced;
/// a run is replaced whole, else its parts.
fn mask_codes(text: &str, is_code: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in runs(text) {
        let run = &text[start..end];
        out.push_str(&text[at..start]);
        at = end;
        if code_shaped(run) && is_code(run) {
            out.push_str(&replacement(run));
            continue;
        }
        let mut from = 0;
        for (s, e) in parts(run) {
            let part = &run[s..e];
            out.push_str(&run[from..s]);
            if code_shaped(part) && is_code(part) {
                out.push_str(&replacement(part));
            } else {
                out.push_str(part);
            }
            from = e;
        }
        out.push_str(&run[from..]);
    }
    out.push_str(&text[at..]);
    out
}

fn replacement(code: &str) -> String {
    let d = Sha256::digest(code.as_bytes());
    format!("[code …{:02x}{:02x}{:02x}]", d[0], d[1], d[2])
}

#[cfg(test)]
mod tests;
