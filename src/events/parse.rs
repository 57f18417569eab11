//! What RyzeAPI sends, parsed at the edge. The envelope is documented; the
//! `group.flow` payload is not, so both plausible shapes are read (whatsmeow's
//! own `GroupInfo` and a flattened one), field names matched without regard
//! to case, and anything else is kept as `unparsed`, never an error that
//! stops anything.
//!
//! The instance's token travels in every envelope (`instanceData.token`): it
//! is dropped here, before anything is stored, logged or quoted, together
//! with any other field named like a token or an authorization. Only its
//! SHA-256 is kept, to tell who sent the event ([`super::authentic`]).

use super::authentic::TokenDigest;
use crate::whatsapp::{InviteCode, Jid};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The most of an event's `data` kept, as JSON text: what invite-rotator
/// reads of an event is a few hundred bytes.
pub const MAX_DATA_BYTES: usize = 8 * 1024;

/// An envelope, token-free.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `event`: `group.flow`, `instance.state`, ...
    pub event: String,
    /// `instanceData.instance`, when given.
    pub instance: Option<String>,
    /// `data`, with every token-like field removed.
    pub data: Value,
    /// The SHA-256 of `instanceData.token`, when given (the token itself is
    /// dropped).
    pub token: Option<TokenDigest>,
}

/// Why a body is not an envelope. Its words never quote the body (it may
/// hold a token); the JSON parser's own error is kept as the source only.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON (said as `serde_json`'s category of error).
    #[error("not JSON ({})", .0.classify_name())]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// No `event`, or not a name (a string of 1 to 64 bytes).
    #[error("no \"event\" name")]
    NoEvent,
}

/// Reads an envelope: a JSON object with a string `event`. The error says
/// why it is not one (never quoting the body).
pub fn envelope(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    let mut value: Value = serde_json::from_slice(body).map_err(EnvelopeError::NotJson)?;
    let Some(object) = value.as_object_mut() else {
        return Err(EnvelopeError::NotAnObject);
    };
    let instance = object
        .get("instanceData")
        .and_then(|d| field(d, "instance"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let event = match object.get("event") {
        Some(Value::String(e)) if !e.is_empty() && e.len() <= 64 => e.clone(),
        _ => return Err(EnvelopeError::NoEvent),
    };
    let token = object
        .get("instanceData")
        .and_then(|d| field(d, "token"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut data = object.remove("data").unwrap_or(Value::Null);
    scrub(&mut data);
    if let Some(token) = token.as_deref().filter(|t| t.len() >= 8) {
        redact(&mut data, token);
    }
    Ok(Envelope {
        event,
        instance,
        data,
        token: token.as_deref().map(TokenDigest::of),
    })
}

/// `classify` for error messages without the input.
trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

/// Removes every field whose name says it holds a credential (`token`,
/// `authorization`, `apikey`, `password`, `secret`), at any depth.
fn scrub(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| {
                let k = k.to_ascii_lowercase();
                ![
                    "token",
                    "authorization",
                    "apikey",
                    "api_key",
                    "password",
                    "secret",
                ]
                .iter()
                .any(|s| k.contains(s))
            });
            map.values_mut().for_each(scrub);
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// Replaces the instance's token wherever it appears inside a string (a
/// field not named like a token that quotes it anyway).
fn redact(value: &mut Value, token: &str) {
    match value {
        Value::String(s) if s.contains(token) => *s = s.replace(token, "[token]"),
        Value::Object(map) => map.values_mut().for_each(|v| redact(v, token)),
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, token)),
        _ => {}
    }
}

/// A field of an object, its name matched without regard to case.
fn field<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    let map = value.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn first<'v>(value: &'v Value, names: &[&str]) -> Option<&'v Value> {
    names.iter().find_map(|n| field(value, n))
}

/// What a `group.flow` event says, as far as invite-rotator cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The group.
    pub group: Jid,
    /// Members removed by someone else.
    pub removed: Vec<String>,
    /// Members who left by themselves.
    pub left: Vec<String>,
    /// A new invite link (the group's link was reset, here or elsewhere).
    pub link: Option<InviteCode>,
    /// When it happened, if said.
    pub at: Option<DateTime<Utc>>,
}

/// Reads `group.flow` data in either shape; `None` if it is in neither.
pub fn group_flow(data: &Value) -> Option<Flow> {
    let group = first(data, &["JID", "groupJid", "jid", "group"])
        .and_then(Value::as_str)
        .and_then(|j| Jid::parse(j).ok())?;
    let at = field(data, "Timestamp").and_then(timestamp);
    // whatsmeow's GroupInfo: Leave entries are removed unless equal to Sender.
    if field(data, "Leave").is_some()
        || field(data, "Join").is_some()
        || field(data, "NewInviteLink").is_some()
    {
        let sender = field(data, "Sender").and_then(Value::as_str);
        let leave = strings(field(data, "Leave"));
        let (left, removed) = leave.into_iter().partition(|p| Some(p.as_str()) == sender);
        let link = match field(data, "NewInviteLink") {
            None | Some(Value::Null) => None,
            Some(l) => Some(code_of(l)?),
        };
        return Some(Flow {
            group,
            removed,
            left,
            link,
            at,
        });
    }
    // Flattened: an action on participants, or a link.
    let action = field(data, "action").and_then(Value::as_str)?;
    let participants = strings(first(data, &["participants", "participant"]));
    let mut flow = Flow {
        group,
        removed: Vec::new(),
        left: Vec::new(),
        link: None,
        at,
    };
    match action.to_ascii_lowercase().as_str() {
        "remove" | "removed" | "kick" => flow.removed = participants,
        "leave" | "left" => flow.left = participants,
        "add" | "join" | "promote" | "demote" => {}
        "link" | "invite_link" | "link_changed" | "revoke" => {
            let link = first(data, &["inviteLink", "inviteCode", "link", "code"])?;
            flow.link = Some(code_of(link)?);
        }
        _ => return None,
    }
    Some(flow)
}

/// A participant list: strings, or objects with a `jid`/`id`.
fn strings(value: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = value else {
        return match value {
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
    };
    items
        .iter()
        .filter_map(|i| match i {
            Value::String(s) => Some(s.clone()),
            other => first(other, &["jid", "id"])
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
        .collect()
}

/// A code from a link (`https://chat.whatsapp.com/<code>`) or a bare code.
fn code_of(value: &Value) -> Option<InviteCode> {
    let text = value.as_str()?;
    InviteCode::from_link(text)
        .or_else(|_| InviteCode::parse(text))
        .ok()
}

/// Unix seconds (or milliseconds), or RFC 3339.
fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => {
            let n = n.as_i64()?;
            let seconds = if n > 100_000_000_000 { n / 1000 } else { n };
            DateTime::from_timestamp(seconds, 0)
        }
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

/// An instance's connection state, as `instance.state` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connected to WhatsApp: calls may go.
    Connected,
    /// Not connected (disconnected, logged out, banned, waiting for a QR
    /// scan): calls are held back.
    Down,
    /// Another state (`connecting`): nothing changes.
    Other,
}

/// Reads `instance.state` data: `{"state": "..."}` (any case), or a bare string.
pub fn instance_state(data: &Value) -> Option<(State, String)> {
    let state = match data {
        Value::String(s) => s.as_str(),
        other => first(other, &["state", "status", "connection"]).and_then(|s| {
            s.as_str()
                .or_else(|| field(s, "state").and_then(Value::as_str))
        })?,
    };
    let name = state.to_ascii_lowercase();
    let kind = match name.as_str() {
        "connected" | "open" => State::Connected,
        "disconnected" | "logged_out" | "loggedout" | "temp_banned" | "banned" | "qr_ready"
        | "close" | "closed" => State::Down,
        _ => State::Other,
    };
    Some((kind, name))
}

/// `data` as stored: JSON text of at most [`MAX_DATA_BYTES`]. A larger one
/// keeps `truncated_bytes` (its size) and, of an object, the fields that fit
/// (lists cut short), so that the group, the sender and a new link stay
/// readable.
pub fn stored_data(data: &Value) -> String {
    let text = data.to_string();
    if text.len() <= MAX_DATA_BYTES {
        return text;
    }
    let mut kept = Map::from_iter([("truncated_bytes".to_owned(), Value::from(text.len()))]);
    let mut room = MAX_DATA_BYTES / 2;
    if let Value::Object(map) = data {
        for (k, v) in map {
            let fitted = fit(v, room / 2);
            let size = fitted
                .as_ref()
                .map_or(0, |v| v.to_string().len() + k.len() + 4);
            if let Some(v) = fitted.filter(|_| size <= room) {
                room -= size;
                kept.insert(k.clone(), v);
            }
        }
    }
    Value::Object(kept).to_string()
}

/// `value` if its text fits in `room`; a list cut to what fits; else none.
fn fit(value: &Value, room: usize) -> Option<Value> {
    if value.to_string().len() <= room {
        return Some(value.clone());
    }
    let Value::Array(items) = value else {
        return None;
    };
    let mut used = 2;
    let mut out = Vec::new();
    for item in items {
        let size = item.to_string().len() + 1;
        if used + size > room {
            break;
        }
        used += size;
        out.push(item.clone());
    }
    Some(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_token_of_the_envelope_never_survives_parsing() {
        let body = json!({
            "event": "group.flow",
            "data": {"JID": "1@g.us", "token": "x", "nested": {"Authorization": "Bearer y"}},
            "instanceData": {"baseUrl": "https://ryzeapi.cloud", "instance": "sales", "token": "SECRET-TOKEN"}
        })
        .to_string();

        let e = envelope(body.as_bytes()).unwrap();

        assert_eq!(e.instance.as_deref(), Some("sales"));
        let kept = format!("{e:?} {}", stored_data(&e.data));
        assert!(
            !kept.contains("SECRET-TOKEN") && !kept.contains("Bearer y"),
            "{kept}"
        );
    }

    #[test]
    fn the_token_quoted_inside_another_field_is_redacted() {
        let body = json!({
            "event": "group.flow",
            "data": {"JID": "1@g.us", "note": "sent with TOKEN-1234567 by mistake"},
            "instanceData": {"instance": "sales", "token": "TOKEN-1234567"}
        })
        .to_string();

        let e = envelope(body.as_bytes()).unwrap();

        let kept = stored_data(&e.data);
        assert!(!kept.contains("TOKEN-1234567"), "{kept}");
        assert!(kept.contains("[token]"), "{kept}");
    }

    #[test]
    fn data_too_large_keeps_its_size_and_the_fields_that_fit() {
        let members: Vec<String> = (0..20_000)
            .map(|i| format!("5511{i:09}@s.whatsapp.net"))
            .collect();
        let data = json!({
            "JID": "120363406289005073@g.us", "Sender": "5511988887777@s.whatsapp.net",
            "Leave": members, "NewInviteLink": "https://chat.whatsapp.com/AbC123",
            "Blob": "x".repeat(200_000),
        });

        let stored = stored_data(&data);

        assert!(stored.len() <= MAX_DATA_BYTES, "{}", stored.len());
        let back: Value = serde_json::from_str(&stored).unwrap();
        assert!(back["truncated_bytes"].as_u64().unwrap() > MAX_DATA_BYTES as u64);
        let flow = group_flow(&back).expect("still a GroupInfo");
        assert_eq!(flow.group.as_str(), "120363406289005073@g.us");
        assert_eq!(flow.link.unwrap().as_str(), "AbC123");
        assert!(!flow.removed.is_empty());
        assert!(back.get("Blob").is_none());
    }

    #[test]
    fn what_is_not_an_envelope_says_so_without_quoting_it() {
        for body in [&b"{\"event\": 5}"[..], b"[1,2]", b"{\"even", b"SECRET"] {
            let e = envelope(body).unwrap_err().to_string();
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn whatsmeow_group_info_tells_removed_from_left_by_the_sender() {
        let flow = group_flow(&json!({
            "JID": "120363406289005073@g.us",
            "Sender": "5511000000001@s.whatsapp.net",
            "Timestamp": "2026-12-01T10:00:00Z",
            "Join": null,
            "Leave": ["5511000000002@s.whatsapp.net", "5511000000001@s.whatsapp.net"],
            "NewInviteLink": null
        }))
        .unwrap();
        assert_eq!(flow.removed, ["5511000000002@s.whatsapp.net"]);
        assert_eq!(flow.left, ["5511000000001@s.whatsapp.net"]);
        assert_eq!(flow.link, None);
        assert!(flow.at.is_some());
        let link = group_flow(&json!({
            "jid": "1@g.us", "newinvitelink": "https://chat.whatsapp.com/AbC123"
        }))
        .unwrap();
        assert_eq!(link.link.unwrap().as_str(), "AbC123");
    }

    #[test]
    fn the_flattened_shape_reads_actions_links_and_either_timestamp() {
        let removed = group_flow(&json!({
            "groupJid": "1@g.us", "action": "remove",
            "participants": ["5511@s.whatsapp.net"], "timestamp": 1796160000
        }))
        .unwrap();
        assert_eq!(removed.removed.len(), 1);
        assert!(removed.at.is_some());
        let left = group_flow(&json!({"jid": "1@g.us", "action": "leave", "participants": ["x"]}))
            .unwrap();
        assert_eq!(left.left, ["x"]);
        let link =
            group_flow(&json!({"groupJid": "1@g.us", "action": "link", "inviteCode": "NEW1"}))
                .unwrap();
        assert_eq!(link.link.unwrap().as_str(), "NEW1");
        assert!(group_flow(&json!({"groupJid": "1@g.us", "action": "weird"})).is_none());
        assert!(
            group_flow(&json!({"action": "remove"})).is_none(),
            "no group"
        );
        assert!(
            group_flow(
                &json!({"groupJid": "1@g.us", "action": "link", "inviteLink": "http://evil/x"})
            )
            .is_none()
        );
    }

    #[test]
    fn instance_states_hold_or_release() {
        assert_eq!(
            instance_state(&json!({"state": "connected"})).unwrap().0,
            State::Connected
        );
        assert_eq!(
            instance_state(&json!({"State": "logged_out"})).unwrap().0,
            State::Down
        );
        assert_eq!(instance_state(&json!("qr_ready")).unwrap().0, State::Down);
        assert_eq!(
            instance_state(&json!({"state": "connecting"})).unwrap().0,
            State::Other
        );
        assert!(instance_state(&json!({"nothing": 1})).is_none());
    }
}
