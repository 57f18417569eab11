//! `[audit]` (the key that signs the ledger's checkpoints) and `[console]`
//! (the auditors' read-only console).

use super::{Validator, read_secret_file};
use crate::checkpoint::AuditKey;
use crate::config::ConsoleSettings;
use crate::config::raw::{RawAudit, RawConsole};
use crate::secret::Token;
use std::sync::Arc;
use toml::Spanned;

/// The least estimated entropy of a console token beyond loopback.
pub(crate) const MIN_TOKEN_BITS: f64 = 128.0;

/// A token's estimated entropy in bits: its length times log2 of the
/// alphabet its character classes span (lower case 26, upper case 26,
/// digits 10, other printable ASCII 32). An estimate from above: it
/// assumes the characters were drawn at random.
pub(crate) fn estimated_bits(token: &str) -> f64 {
    let bytes = token.as_bytes();
    let alphabet: u32 = [
        (bytes.iter().any(u8::is_ascii_lowercase), 26),
        (bytes.iter().any(u8::is_ascii_uppercase), 26),
        (bytes.iter().any(u8::is_ascii_digit), 10),
        (bytes.iter().any(u8::is_ascii_punctuation), 32),
    ]
    .iter()
    .filter(|(used, _)| *used)
    .map(|(_, size)| size)
    .sum();
    token.len() as f64 * f64::from(alphabet.max(1)).log2()
}

/// Too weak to publish: one character repeated, or under
/// [`MIN_TOKEN_BITS`].
fn weak(token: &Token) -> bool {
    let text = token.expose();
    let repeated = text.bytes().all(|b| Some(b) == text.bytes().next());
    repeated || estimated_bits(text) < MIN_TOKEN_BITS
}

impl Validator<'_> {
    pub(super) fn audit(&mut self, raw: &RawAudit) -> Option<Arc<AuditKey>> {
        let file = raw.signing_key_file.as_ref()?;
        let path = self.secret_file_path(file.get_ref());
        match AuditKey::load(&path) {
            Ok(key) => Some(Arc::new(key)),
            Err(e) => {
                let message = format!("signing key {}: {e}", path.display());
                self.error("audit.signing_key_file", file, message);
                None
            }
        }
    }

    pub(super) fn console(&mut self, raw: Option<Spanned<RawConsole>>) -> Option<ConsoleSettings> {
        let raw = raw?;
        let at = raw.span();
        let raw = raw.into_inner();
        let token = match &raw.token_file {
            None => None,
            Some(file) => {
                let path = self.secret_file_path(file.get_ref());
                match read_secret_file(&path).map(|t| Token::new(&t)) {
                    Ok(t)
                        if t.expose().len() >= 16
                            && t.expose().bytes().all(|b| b.is_ascii_graphic()) =>
                    {
                        Some(t)
                    }
                    Ok(_) => {
                        self.error(
                            "console.token_file",
                            file,
                            "the token must be at least 16 printable ASCII characters, no spaces",
                        );
                        return None;
                    }
                    Err(e) => {
                        let message = format!("cannot read token file {}: {e}", path.display());
                        self.error("console.token_file", file, message);
                        return None;
                    }
                }
            }
        };
        let listen = match raw.listen.as_ref() {
            Some(l) => match l.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) if !addr.ip().is_loopback() && token.is_none() => {
                    self.error(
                        "console.listen",
                        l,
                        "listening beyond loopback needs console.token_file (browsers sign in with that token)",
                    );
                    return None;
                }
                Ok(addr) if !addr.ip().is_loopback() && token.as_ref().is_some_and(weak) => {
                    if let Some(file) = &raw.token_file {
                        let message = format!(
                            "listening beyond loopback needs a token of at least {MIN_TOKEN_BITS} bits (estimated as length × log2 of the alphabet its character classes span: lower case 26, upper case 26, digits 10, other printable 32), not one character repeated; make one with `openssl rand -hex 32`"
                        );
                        self.error("console.token_file", file, message);
                    }
                    return None;
                }
                Ok(addr) => addr,
                Err(_) => {
                    let message = format!(
                        "{:?} is not an address to listen on, such as \"127.0.0.1:9467\"",
                        l.get_ref()
                    );
                    self.error("console.listen", l, message);
                    return None;
                }
            },
            None => {
                self.r.push(
                    "console.listen",
                    Some(at.start),
                    "missing: where the console listens, such as \"127.0.0.1:9467\"",
                );
                return None;
            }
        };
        Some(ConsoleSettings { listen, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokens_entropy_is_its_length_times_its_alphabets_bits() {
        // 32 hex digits (`openssl rand -hex 16`): 32 × log2(36).
        let hex = estimated_bits("0123456789abcdef0123456789abcdef");
        assert!((hex - 32.0 * 36f64.log2()).abs() < 1e-9, "{hex}");
        assert!(estimated_bits("0123456789abcdef0123") < MIN_TOKEN_BITS);
        // Every class: log2(94) a character.
        assert!((estimated_bits("aA0!") - 4.0 * 94f64.log2()).abs() < 1e-9);
        assert!(weak(&Token::new(&"x".repeat(64))), "one character repeated");
        assert!(weak(&Token::new("0123456789abcdef0123")));
        assert!(!weak(&Token::new("console-token-5c1e9a7b2d")));
    }
}
