//! WhatsApp identifiers, parsed rather than validated: a [`Jid`] names a group for
//! good, an [`InviteCode`] is what a rotation replaces. Both are checked once at
//! the edge (config, API reply) so nothing later meets a malformed one.

use std::fmt;

/// The host of every WhatsApp invite link.
pub const INVITE_LINK_PREFIX: &str = "https://chat.whatsapp.com/";

/// A group JID such as `120363406289005073@g.us`: the one identifier that does
/// not change when the invite link is reset.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid(String);

impl Jid {
    /// Parses a group JID: digits, optionally `-digits` (old-style groups), then `@g.us`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains("chat.whatsapp.com") || s.contains('/') {
            return Err(format!(
                "{s:?} is an invite link, which changes at every rotation; use the group's JID (digits@g.us)"
            ));
        }
        let Some(local) = s.strip_suffix("@g.us") else {
            if !s.contains('@') && InviteCode::parse(s).is_ok() {
                return Err(format!(
                    "{s:?} looks like an invite code, which changes at every rotation; use the group's JID (digits@g.us)"
                ));
            }
            return Err(format!("{s:?} is not a group JID (expected digits@g.us)"));
        };
        let mut parts = local.splitn(2, '-');
        let valid =
            parts.all(|p| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_digit()));
        if !valid {
            return Err(format!("{s:?} is not a group JID (expected digits@g.us)"));
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
/// history.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InviteCode(String);

/// The longest code accepted; real codes are 22 characters.
pub const MAX_CODE_LEN: usize = 64;

impl InviteCode {
    /// Parses a bare invite code.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("invite code is empty".into());
        }
        if s.len() > MAX_CODE_LEN {
            return Err(format!(
                "invite code is {} bytes long (at most {MAX_CODE_LEN})",
                s.len()
            ));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("invite code has characters outside [A-Za-z0-9_-]".into());
        }
        Ok(InviteCode(s.to_owned()))
    }

    /// Takes the code from a link `https://chat.whatsapp.com/<code>` (a query
    /// string or trailing slash is ignored).
    pub fn from_link(link: &str) -> Result<Self, String> {
        let rest = link
            .strip_prefix(INVITE_LINK_PREFIX)
            .or_else(|| link.strip_prefix("http://chat.whatsapp.com/"))
            .ok_or_else(|| "invite link is not a https://chat.whatsapp.com/ link".to_owned())?;
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

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InviteCode({})", self.0)
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
        let e = Jid::parse("https://chat.whatsapp.com/ABCdef123").unwrap_err();
        assert!(e.contains("invite link"), "{e}");
        let e = Jid::parse("ABCdef123XYZ").unwrap_err();
        assert!(e.contains("invite code"), "{e}");
        assert!(Jid::parse("5511999999999@s.whatsapp.net").is_err());
        assert!(Jid::parse("@g.us").is_err());
        assert!(Jid::parse("12a@g.us").is_err());
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
        assert!(InviteCode::from_link("https://evil.example/ABC").is_err());
    }
}
