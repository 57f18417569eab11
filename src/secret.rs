//! API tokens, wrapped so that they cannot be printed by accident.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Whether `given` (from outside) is `expected` (a secret), in time that
/// tells nothing about either: both are hashed (SHA-256) and the digests,
/// always 32 bytes, compared in constant time. A plain constant-time
/// comparison of the texts returns at once on a length mismatch, which
/// tells a prober the secret's length. Every comparison of a secret with
/// what a request carries goes through here.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    bool::from(given[..].ct_eq(&expected[..]))
}

/// A RyzeAPI token. `Debug` and `Display` print `[redacted]`; the only way to the
/// text is [`Token::expose`], which the HTTP client calls to build its header.
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    /// Wraps a token; surrounding whitespace (a trailing newline in a file) is dropped.
    pub fn new(text: &str) -> Self {
        Token(SecretString::from(text.trim().to_owned()))
    }

    /// The token's text, for the `token` header only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether two tokens are the same credential (and so share one rate budget).
    pub fn same_as(&self, other: &Token) -> bool {
        same_secret(self.expose().as_bytes(), other.expose().as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_secret_is_equality_whatever_the_lengths() {
        assert!(same_secret(b"Bearer s3cret", b"Bearer s3cret"));
        assert!(same_secret(b"", b""));
        for other in [
            &b""[..],
            b"Bearer",
            b"Bearer s3cre",
            b"Bearer s3cret ",
            b"bearer s3cret",
        ] {
            assert!(!same_secret(other, b"Bearer s3cret"), "{other:?}");
            assert!(!same_secret(b"Bearer s3cret", other), "{other:?}");
        }
    }

    #[test]
    fn a_token_never_shows_in_debug_or_display() {
        let t = Token::new("sk-live-123\n");
        assert_eq!(t.expose(), "sk-live-123");
        assert!(!format!("{t:?} {t}").contains("sk-live"));
    }
}
