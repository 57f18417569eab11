//! The random part of a join link's URL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes of randomness in a slug: 128 bits, from the operating system.
const BYTES: usize = 16;

/// A new slug: 128 random bits, URL-safe base64 (22 characters), owing
/// nothing to the link's name or group.
pub(crate) fn new() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `s` could be a slug (22 URL-safe base64 characters): anything
/// else is answered 404 without a look at the links.
pub(crate) fn looks_like(s: &str) -> bool {
    s.len() == 22
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_22_url_safe_characters_and_never_repeat() {
        let slugs: std::collections::HashSet<String> = (0..1000).map(|_| new().unwrap()).collect();
        assert_eq!(slugs.len(), 1000);
        assert!(slugs.iter().all(|s| looks_like(s)), "{slugs:?}");
        assert!(!looks_like("short"));
        assert!(!looks_like("../../../../etc/passwd.."));
    }
}
