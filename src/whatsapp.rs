//! WhatsApp identifiers, parsed rather than validated: a [`Jid`] names a group for
//! good, an [`InviteCode`] is what a rotation replaces. Both are checked once at
//! the edge (config, API reply) so nothing later meets a malformed one.

use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::OnceLock;

/// The host of every WhatsApp invite link.
pub const INVITE_LINK_PREFIX: &str = "https://chat.whatsapp.com/";

/// A group JID such as `120363406289005073@g.us`: the one identifier that does
/// not change when the invite link is reset.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid(String);

/// The form a group JID has, as errors say it.
const JID_FORM: &str = "a group JID has the form digits@g.us, such as 120363406289005073@g.us";

/// Why a text is not a group JID (each holds the text, trimmed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// An invite link where the JID belongs.
    #[error("{0:?} is an invite link, which changes at every rotation; {JID_FORM}", JID_FORM = JID_FORM)]
    InviteLink(String),
    /// An invite code where the JID belongs.
    #[error("{0:?} looks like an invite code, which changes at every rotation; {JID_FORM}", JID_FORM = JID_FORM)]
    InviteCode(String),
    /// Anything else.
    #[error("{0:?} is not a group JID; {JID_FORM}", JID_FORM = JID_FORM)]
    NotAJid(String),
}

impl Jid {
    /// Parses a group JID: digits, optionally `-digits` (old-style groups), then `@g.us`.
    pub fn parse(s: &str) -> Result<Self, JidError> {
        let s = s.trim();
        if s.contains("chat.whatsapp.com") || s.contains('/') {
            return Err(JidError::InviteLink(s.to_owned()));
        }
        let Some(local) = s.strip_suffix("@g.us") else {
            // Real codes are 22 letters and digits; digits alone are a JID
            // without its domain or a phone number, never a code.
            let code_like = s.len() >= 16 && s.bytes().any(|b| b.is_ascii_alphabetic());
            if !s.contains('@') && code_like && InviteCode::parse(s).is_ok() {
                return Err(JidError::InviteCode(s.to_owned()));
            }
            return Err(JidError::NotAJid(s.to_owned()));
        };
        let mut parts = local.splitn(2, '-');
        let valid =
            parts.all(|p| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_digit()));
        if !valid {
            return Err(JidError::NotAJid(s.to_owned()));
        }
        Ok(Jid(s.to_owned()))
    }

    /// The JID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({})", self.0)
    }
}

/// An invite code as WhatsApp issues it (22 characters today). Validated before
/// it is stored or logged: 1 to 64 characters of `[A-Za-z0-9_-]`, so a hostile
/// or broken reply cannot smuggle control characters or megabytes into the
/// history. It has no `Display`: the text is [`InviteCode::as_str`] (for the
/// history), and logs show a [`fingerprint`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InviteCode(String);

/// The longest code accepted; real codes are 22 characters.
pub const MAX_CODE_LEN: usize = 64;

/// Why a text is not an invite code, or a link is not an invite link
/// (never quoting it: it may come from a hostile reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteCodeError {
    /// No characters.
    #[error("invite code is empty")]
    Empty,
    /// Longer than [`MAX_CODE_LEN`] (its length in bytes).
    #[error("invite code is {0} bytes long (at most {MAX_CODE_LEN})", MAX_CODE_LEN = MAX_CODE_LEN)]
    TooLong(usize),
    /// Characters outside `[A-Za-z0-9_-]`.
    #[error("invite code has characters outside [A-Za-z0-9_-]")]
    Characters,
    /// A link that is not `https://chat.whatsapp.com/...`.
    #[error("invite link is not an https://chat.whatsapp.com/ link")]
    NotALink,
}

impl InviteCode {
    /// Parses a bare invite code.
    pub fn parse(s: &str) -> Result<Self, InviteCodeError> {
        if s.is_empty() {
            return Err(InviteCodeError::Empty);
        }
        if s.len() > MAX_CODE_LEN {
            return Err(InviteCodeError::TooLong(s.len()));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(InviteCodeError::Characters);
        }
        Ok(InviteCode(s.to_owned()))
    }

    /// Takes the code from a link `https://chat.whatsapp.com/<code>` (a
    /// trailing slash, query string or fragment is ignored). Only the code is
    /// kept: whatever else the link held is dropped with it, and
    /// [`InviteCode::link`] rebuilds the one canonical link.
    pub fn from_link(link: &str) -> Result<Self, InviteCodeError> {
        let rest = link
            .strip_prefix(INVITE_LINK_PREFIX)
            .ok_or(InviteCodeError::NotALink)?;
        let code = rest
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        Self::parse(code)
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical link for this code.
    pub fn link(&self) -> String {
        format!("{INVITE_LINK_PREFIX}{}", self.0)
    }
}

/// Never the live code: `{:?}` reaches logs and panic messages.
impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InviteCode({})", fingerprint(&self.0))
    }
}

/// The environment variable that lets logs show whole invite codes (`1`);
/// for debugging against the emulator, never in production: the journal is
/// readable by more people than the history database.
pub const LOG_CODES_VAR: &str = "INVITE_ROTATOR_LOG_CODES";

/// A code as logs show it: its first 4 characters and 6 hex digits of its
/// SHA-256 (`AbCd…3f2a1c`), enough to tell codes apart and to match a log
/// line with a history row, useless to join the group. The whole code only
/// with `INVITE_ROTATOR_LOG_CODES=1`.
pub fn fingerprint(code: &str) -> Fingerprint<'_> {
    Fingerprint(code)
}

/// A code, if any, as logs show it: its [`fingerprint`], or `-`.
pub fn shown(code: Option<&str>) -> String {
    code.map_or_else(|| "-".to_owned(), |c| fingerprint(c).to_string())
}

/// See [`fingerprint`].
pub struct Fingerprint<'a>(&'a str);

impl fmt::Display for Fingerprint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        static WHOLE: OnceLock<bool> = OnceLock::new();
        if *WHOLE.get_or_init(|| std::env::var(LOG_CODES_VAR).is_ok_and(|v| v == "1")) {
            return f.write_str(self.0);
        }
        let head: String = self.0.chars().take(4).collect();
        let digest = Sha256::digest(self.0.as_bytes());
        write!(
            f,
            "{head}…{:02x}{:02x}{:02x}",
            digest[0], digest[1], digest[2]
        )
    }
}

impl fmt::Debug for Fingerprint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_jid_parses_and_old_style_jids_too() {
        assert!(Jid::parse("120363406289005073@g.us").is_ok());
        assert!(Jid::parse("5511999999999-1600000000@g.us").is_ok());
    }

    #[test]
    fn an_invite_link_or_code_where_a_jid_belongs_is_named_as_such() {
        let e = Jid::parse("https://chat.whatsapp.com/ABCdef123")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invite link"), "{e}");
        let e = Jid::parse("AbCdEf123456GhIjKl7890")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invite code"), "{e}");
        let e = Jid::parse("12345").unwrap_err().to_string();
        assert!(
            e.contains("is not a group JID") && e.contains("digits@g.us"),
            "{e}"
        );
        assert_eq!(
            e,
            "\"12345\" is not a group JID; a group JID has the form digits@g.us, such as 120363406289005073@g.us"
        );
        assert!(Jid::parse("5511999999999@s.whatsapp.net").is_err());
        assert!(Jid::parse("@g.us").is_err());
        assert!(Jid::parse("12a@g.us").is_err());
    }

    #[test]
    fn logs_and_debug_show_a_fingerprint_never_the_code() {
        let code = InviteCode::parse("AbCdEfGhIjKlMnOpQrStUv").unwrap();
        let shown = fingerprint(code.as_str()).to_string();
        assert!(
            shown.starts_with("AbCd…") && shown.chars().count() == 11,
            "{shown}"
        );
        assert!(!format!("{code:?}").contains(code.as_str()));
        assert_ne!(shown, fingerprint("AbCdOTHER").to_string());
    }

    #[test]
    fn codes_are_taken_from_links_and_hostile_codes_are_refused() {
        let c = InviteCode::from_link("https://chat.whatsapp.com/NEW123XYZ?x=1").unwrap();
        assert_eq!(c.as_str(), "NEW123XYZ");
        assert_eq!(c.link(), "https://chat.whatsapp.com/NEW123XYZ");
        assert!(InviteCode::parse("").is_err());
        assert!(InviteCode::parse("a'; DROP TABLE rotations;--").is_err());
        assert!(InviteCode::parse("abc\n\u{1b}[31m").is_err());
        assert!(InviteCode::parse(&"A".repeat(MAX_CODE_LEN + 1)).is_err());
        assert_eq!(
            InviteCode::parse(&"A".repeat(65)).unwrap_err().to_string(),
            "invite code is 65 bytes long (at most 64)"
        );
        assert_eq!(
            InviteCode::from_link("https://evil.example/ABC")
                .unwrap_err()
                .to_string(),
            "invite link is not an https://chat.whatsapp.com/ link"
        );
        assert!(InviteCode::from_link("http://chat.whatsapp.com/ABC").is_err());
        let c = InviteCode::from_link("https://chat.whatsapp.com/ABC?x=\"><script>").unwrap();
        assert_eq!(c.link(), "https://chat.whatsapp.com/ABC");
    }
}
