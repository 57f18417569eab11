//! Turning an HTTP status and body into a classified result. Pure functions, so
//! that every documented and undocumented reply can be tested without a server.

use super::{CallError, GroupInfo, ResetReply};
use crate::whatsapp::{InviteCode, Jid};
use serde_json::Value;
use std::time::Duration;

/// The longest API message kept for the record.
const MAX_MESSAGE_CHARS: usize = 300;

/// The `X-RateLimit-*` headers of one reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RateHeaders {
    /// `X-RateLimit-Limit`.
    pub limit: Option<u64>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u64>,
    /// How long until `X-RateLimit-Reset`, already capped and at least 1 s.
    pub reset_in: Option<Duration>,
}

/// Which call a reply answers; a 5xx means different things for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `resetLink`: not idempotent.
    Reset,
    /// `group/info`: idempotent.
    Info,
}

impl Endpoint {
    /// The error for a reply whose effect cannot be known: for a reset the
    /// link may have changed, for a read nothing happened.
    pub(super) fn unclear(self, message: String) -> CallError {
        match self {
            Endpoint::Reset => CallError::Unknown(message),
            Endpoint::Info => CallError::Transient(message),
        }
    }
}

/// Classifies a non-2xx reply, following the status table of the API notes.
pub(super) fn classify_error(
    endpoint: Endpoint,
    status: u16,
    rate: RateHeaders,
    body: &[u8],
) -> CallError {
    let message = format!("HTTP {status}: {}", error_message(body));
    match status {
        300..=399 => CallError::Permanent(format!(
            "{message} (redirect not followed, so the token never leaves the configured host)"
        )),
        // The instance says it is not connected: nothing happened.
        400 | 503 if is_disconnected(&message) => CallError::Transient(message),
        408 | 409 => CallError::Transient(message),
        429 => match rate.reset_in {
            Some(wait) => CallError::RateLimited { wait, message },
            // WhatsApp's own throttling: the headers do not explain it; back off.
            None => CallError::Transient(message),
        },
        500..=599 if status != 501 => endpoint.unclear(message),
        _ => CallError::Permanent(message),
    }
}

fn is_disconnected(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not connected") || m.contains("disconnected")
}

/// The API's `error.message` (or `message`), cleaned for the record: control
/// characters dropped, length capped. Falls back to a note on the body.
pub(super) fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
    });
    match text {
        Some(t) => clean(t),
        None if body.is_empty() => "empty body".to_owned(),
        None => format!("unreadable body ({} bytes, not the API's JSON)", body.len()),
    }
}

/// Keeps printable characters only and at most [`MAX_MESSAGE_CHARS`] of them.
pub(super) fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// Parses a 2xx reply to `resetLink`. Anything short of a valid new code for
/// the group asked about is [`CallError::Unknown`]: the reset may have happened.
pub fn parse_reset(jid: &Jid, body: &[u8]) -> Result<ResetReply, CallError> {
    let unknown = |why: &str| CallError::Unknown(format!("HTTP 200 but {why}"));
    let v: Value = serde_json::from_slice(body).map_err(|_| unknown("the body is not JSON"))?;
    if v.get("success").and_then(Value::as_bool) == Some(false) {
        return Err(unknown(&format!(
            "success is false: {}",
            error_message(body)
        )));
    }
    if let Some(reply_jid) = v.get("groupJid").and_then(Value::as_str)
        && reply_jid != jid.as_str()
    {
        return Err(unknown(&format!(
            "the reply names another group ({})",
            clean(reply_jid)
        )));
    }
    let link = v.get("inviteLink").and_then(Value::as_str);
    let code = match (v.get("inviteCode").and_then(Value::as_str), link) {
        (Some(code), _) => InviteCode::parse(code),
        (None, Some(link)) => InviteCode::from_link(link),
        (None, None) => return Err(unknown("inviteCode and inviteLink are missing")),
    }
    .map_err(|e| unknown(&e.to_string()))?;
    match link.map(InviteCode::from_link) {
        Some(Ok(linked)) if linked != code => {
            return Err(unknown("inviteLink does not match inviteCode"));
        }
        Some(Err(e)) => return Err(unknown(&e.to_string())),
        _ => {}
    }
    Ok(ResetReply { code })
}

/// Parses a 2xx reply to `group/info`: the link sits under `group`
/// (`inviteCode` when present, else the link's last segment). A reply without a
/// link is valid (non-admins do not see it); one that is not the API's JSON is
/// a transient error.
pub fn parse_info(body: &[u8]) -> Result<GroupInfo, CallError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| CallError::Transient("HTTP 200 but the body is not JSON".to_owned()))?;
    if v.get("success").and_then(Value::as_bool) == Some(false) {
        return Err(CallError::Transient(format!(
            "HTTP 200 but success is false: {}",
            error_message(body)
        )));
    }
    let group = v.get("group").unwrap_or(&v);
    let code = group
        .get("inviteCode")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    let link = group
        .get("inviteLink")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty());
    let code = match (code, link) {
        (Some(code), _) => Some(InviteCode::parse(code)),
        (None, Some(link)) => Some(InviteCode::from_link(link)),
        (None, None) => None,
    }
    .transpose()
    .map_err(|e| CallError::Transient(format!("HTTP 200 but the link is unusable: {e}")))?;
    Ok(GroupInfo { code })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid() -> Jid {
        Jid::parse("120363406289005073@g.us").unwrap()
    }

    #[test]
    fn the_documented_reset_reply_is_accepted_exactly() {
        let body = br#"{"success":true,"message":"Group invite link reset successfully","groupJid":"120363406289005073@g.us","inviteCode":"NEW123XYZ","inviteLink":"https://chat.whatsapp.com/NEW123XYZ"}"#;
        let r = parse_reset(&jid(), body).unwrap();
        assert_eq!(r.code.as_str(), "NEW123XYZ");
        assert_eq!(r.code.link(), "https://chat.whatsapp.com/NEW123XYZ");
    }

    #[test]
    fn a_reset_reply_without_a_usable_code_leaves_the_outcome_unknown() {
        for body in [
            &b"<html><body>502 Bad Gateway</body></html>"[..],
            br#"{"success":true}"#,
            br#"{"success":true,"inviteCode":""}"#,
            br#"{"success":true,"inviteCode":"x'); DROP TABLE rotations;--"}"#,
            br#"{"success":true,"groupJid":"999@g.us","inviteCode":"ABC"}"#,
            br#"{"success":true,"inviteCode":"ABC","inviteLink":"https://chat.whatsapp.com/DEF"}"#,
            br#"{"success":true,"inviteCode":"ABC","inviteLink":"http://chat.whatsapp.com/ABC"}"#,
        ] {
            let e = parse_reset(&jid(), body).unwrap_err();
            assert!(matches!(e, CallError::Unknown(_)), "{e:?}");
        }
    }

    #[test]
    fn a_reset_reply_with_only_a_link_gives_its_code() {
        let r = parse_reset(
            &jid(),
            br#"{"success":true,"inviteLink":"https://chat.whatsapp.com/AbC_12"}"#,
        )
        .unwrap();
        assert_eq!(r.code.as_str(), "AbC_12");
    }

    #[test]
    fn info_reads_the_code_under_group_or_derives_it_from_the_link() {
        let info = parse_info(br#"{"success":true,"group":{"jid":"1@g.us","inviteLink":"https://chat.whatsapp.com/OLD1"}}"#).unwrap();
        assert_eq!(info.code.unwrap().as_str(), "OLD1");
        let info =
            parse_info(br#"{"success":true,"group":{"inviteCode":"OLD2","inviteLink":"x"}}"#)
                .unwrap();
        assert_eq!(info.code.unwrap().as_str(), "OLD2");
        let info =
            parse_info(br#"{"success":true,"group":{"name":"no link for non-admins"}}"#).unwrap();
        assert_eq!(info.code, None);
        assert!(matches!(
            parse_info(b"<html>"),
            Err(CallError::Transient(_))
        ));
    }

    #[test]
    fn statuses_are_classified_as_the_api_notes_say() {
        let none = RateHeaders::default();
        let body = br#"{"success":false,"error":{"message":"m"}}"#;
        let kind = |ep, status| classify_error(ep, status, none, body).outcome();
        for status in [400, 401, 403, 404, 501, 302] {
            assert_eq!(kind(Endpoint::Reset, status), "permanent", "{status}");
        }
        for status in [409, 408] {
            assert_eq!(kind(Endpoint::Reset, status), "transient", "{status}");
        }
        // A 503 of a gateway may hide a reset that lands later; the
        // instance's own "not connected" 503 does not.
        assert_eq!(kind(Endpoint::Reset, 503), "unknown");
        assert_eq!(kind(Endpoint::Info, 503), "transient");
        let offline =
            br#"{"success":false,"error":{"message":"Instance is not connected to WhatsApp"}}"#;
        assert_eq!(
            classify_error(Endpoint::Reset, 503, none, offline).outcome(),
            "transient"
        );
        assert_eq!(kind(Endpoint::Reset, 500), "unknown");
        assert_eq!(kind(Endpoint::Reset, 502), "unknown");
        assert_eq!(kind(Endpoint::Info, 500), "transient");
        let disconnected =
            br#"{"success":false,"error":{"message":"Instance is not connected to WhatsApp"}}"#;
        assert_eq!(
            classify_error(Endpoint::Reset, 400, none, disconnected).outcome(),
            "transient"
        );
    }

    #[test]
    fn a_429_waits_for_the_reset_header_or_backs_off_without_it() {
        let with = RateHeaders {
            reset_in: Some(Duration::from_secs(7)),
            ..RateHeaders::default()
        };
        let e = classify_error(Endpoint::Reset, 429, with, b"{}");
        assert_eq!(e.outcome(), "rate_limited");
        let e = classify_error(Endpoint::Reset, 429, RateHeaders::default(), b"{}");
        assert_eq!(e.outcome(), "transient");
    }

    #[test]
    fn api_messages_are_cleaned_and_capped() {
        let long = format!(
            r#"{{"error":{{"message":"{}\u001b[31m"}}}}"#,
            "x".repeat(10_000)
        );
        let m = error_message(long.as_bytes());
        assert!(m.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(!m.chars().any(char::is_control));
    }
}
