//! Who sent a delivery. The shared `Authorization` secret proves only that
//! the sender knows it (it is registered at every instance, and RyzeAPI
//! shows it to any holder of any instance's token); what proves which
//! instance sent an event is `instanceData.token`, the instance's own token.
//! A delivery counts only if that token is the configured token of the
//! instance it names (or, on a WebSocket, of the connection's own
//! instance), and only for that instance's groups. Tokens are compared as
//! SHA-256 digests, in constant time: neither their bytes nor their length
//! show in the time taken.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a token: what is kept and compared, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether both digests are equal, in constant time.
    pub fn matches(&self, other: &TokenDigest) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// Why a delivery is refused (the metrics' `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `instanceData.token`, a wrong one, or an instance not in the
    /// config (which has no token to match).
    Token,
    /// The envelope's instance is not the group's, or not the WebSocket's.
    Instance,
}

impl Refusal {
    /// The metrics' `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::Token => "refused_token",
            Refusal::Instance => "refused_instance",
        }
    }
}

/// The instance a delivery speaks for: the channel's own (`own`, on a
/// WebSocket), which a named one must equal; else the one it names.
pub(super) fn speaker<'a>(
    named: Option<&'a str>,
    own: Option<&'a str>,
) -> Result<&'a str, Refusal> {
    match (named, own) {
        (Some(named), Some(own)) if named != own => Err(Refusal::Instance),
        (named, own) => named.or(own).ok_or(Refusal::Instance),
    }
}

/// Whether `given` (the envelope's token, digested) is `expected` (the
/// configured token of the instance spoken for); no token, or no
/// configured instance, never is.
pub(super) fn vouched(expected: Option<&TokenDigest>, given: Option<&TokenDigest>) -> bool {
    match (expected, given) {
        (Some(expected), Some(given)) => expected.matches(given),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Purpose};
    use crate::events::{Accepted, Managed, classify_from};

    /// Group `1@g.us` on `sales`; `2@g.us` on `support`.
    fn managed() -> Managed {
        let text = "[[instance]]\nname = \"sales\"\ntoken = \"tok-sales-1234\"\n\
                    [[instance]]\nname = \"support\"\ntoken = \"tok-support-5678\"\n\
                    [[group]]\nname = \"a\"\ninstance = \"sales\"\njid = \"1@g.us\"\nschedule = \"@daily\"\n\
                    [[group]]\nname = \"b\"\ninstance = \"support\"\njid = \"2@g.us\"\nschedule = \"@daily\"\n";
        let config = Config::parse(text, std::path::Path::new("a.toml"), Purpose::Run).unwrap();
        Managed::of(&config)
    }

    fn kind(body: serde_json::Value, own: Option<&str>) -> &'static str {
        let body = body.to_string();
        let accepted = classify_from(body.as_bytes(), "websocket", own, &managed()).unwrap();
        if let Accepted::Store(e) = &accepted {
            assert!(!format!("{e:?}").contains("tok-"), "{e:?}");
        }
        accepted.kind()
    }

    #[test]
    fn an_envelope_counts_only_with_its_instance_s_token_for_its_instance_s_groups() {
        let flow = |jid: &str, named: Option<&str>, token: Option<&str>| {
            let mut data = serde_json::json!({});
            if let Some(named) = named {
                data["instance"] = named.into();
            }
            if let Some(token) = token {
                data["token"] = token.into();
            }
            serde_json::json!({"event": "group.flow", "data": {"JID": jid, "NewInviteLink": "https://chat.whatsapp.com/AbC123"}, "instanceData": data})
        };
        let sales = Some("tok-sales-1234");
        // The webhook: the named instance's token, for its groups.
        assert_eq!(
            kind(flow("1@g.us", Some("sales"), sales), None),
            "link_changed"
        );
        assert_eq!(
            kind(flow("1@g.us", Some("sales"), None), None),
            "refused_token"
        );
        assert_eq!(
            kind(flow("1@g.us", Some("sales"), Some("tok-sales-12345")), None),
            "refused_token"
        );
        assert_eq!(
            kind(flow("1@g.us", Some("ghost"), sales), None),
            "refused_token"
        );
        assert_eq!(
            kind(flow("2@g.us", Some("sales"), sales), None),
            "refused_instance"
        );
        assert_eq!(kind(flow("1@g.us", None, sales), None), "refused_instance");
        // The WebSocket: its own instance, which a named one must equal.
        assert_eq!(
            kind(flow("1@g.us", None, sales), Some("sales")),
            "link_changed"
        );
        assert_eq!(
            kind(flow("1@g.us", None, None), Some("sales")),
            "refused_token"
        );
        assert_eq!(
            kind(
                flow("2@g.us", Some("support"), Some("tok-support-5678")),
                Some("sales")
            ),
            "refused_instance"
        );
        assert_eq!(
            kind(flow("2@g.us", None, sales), Some("sales")),
            "refused_instance"
        );
        // instance.state: the instance spoken for.
        let state = serde_json::json!({"event": "instance.state", "data": {"state": "disconnected"}, "instanceData": {"instance": "support", "token": "tok-sales-1234"}});
        assert_eq!(kind(state, None), "refused_token");
    }

    #[test]
    fn only_the_configured_token_of_the_instance_spoken_for_vouches() {
        let sales = TokenDigest::of("tok-sales-1234");
        assert!(vouched(
            Some(&sales),
            Some(&TokenDigest::of("tok-sales-1234"))
        ));
        assert!(!vouched(
            Some(&sales),
            Some(&TokenDigest::of("tok-sales-123"))
        ));
        assert!(!vouched(Some(&sales), None), "no token");
        assert!(!vouched(None, Some(&sales)), "an instance not configured");
        assert_eq!(format!("{sales:?}"), "TokenDigest(..)");
    }

    #[test]
    fn a_websocket_s_envelope_speaks_for_its_own_instance_only() {
        assert_eq!(speaker(Some("sales"), None), Ok("sales"));
        assert_eq!(speaker(None, Some("sales")), Ok("sales"));
        assert_eq!(speaker(Some("sales"), Some("sales")), Ok("sales"));
        assert_eq!(
            speaker(Some("other"), Some("sales")),
            Err(Refusal::Instance)
        );
        assert_eq!(speaker(None, None), Err(Refusal::Instance));
    }
}
