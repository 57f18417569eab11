//! API tokens, wrapped so that they cannot be printed by accident.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

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
        self.expose() == other.expose()
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
    fn a_token_never_shows_in_debug_or_display() {
        let t = Token::new("sk-live-123\n");
        assert_eq!(t.expose(), "sk-live-123");
        assert!(!format!("{t:?} {t}").contains("sk-live"));
    }
}
