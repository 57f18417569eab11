//! The emulator's events module, as `../shared/ryzeapi/README.md` describes
//! RyzeAPI's: webhooks (upserted by label, at most 3 enabled per instance,
//! `byEvents`), the WebSocket (enabled first), one envelope for both with
//! the instance's token in `instanceData` (as the real one sends it), and
//! `group.flow` in either plausible `data` shape. Deliveries are retried
//! with backoff until a 2xx, like RyzeAPI's queue, and can be repeated after
//! a 2xx, as a retry after a lost answer would.
//!
//! Events are emitted under the state's lock (into an outbox, and straight
//! to open WebSockets) and delivered after it is released.

use super::Emulator;
use super::state::{Reply, State, error};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// The account the instance is logged in as: its resets and removals come
/// from it.
pub const OWN_ACCOUNT: &str = "5511900000000@s.whatsapp.net";
/// Another admin of the groups, for changes made outside invite-rotator.
pub const OTHER_ADMIN: &str = "5511988887777@s.whatsapp.net";
/// The events RyzeAPI knows.
pub(super) const CATALOG: [&str; 6] = [
    "message.exchange",
    "message.status",
    "call.update",
    "group.flow",
    "instance.state",
    "label.update",
];
/// Tries of one delivery before it goes to the dead letters.
const DELIVERY_ATTEMPTS: u32 = 5;
/// The wait after the first failed try; it doubles.
const DELIVERY_BACKOFF: Duration = Duration::from_millis(500);

/// Which `group.flow` `data` shape the emulator sends (the real one is not
/// documented; `../shared/ryzeapi/README.md` gives two plausible ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventShape {
    /// whatsmeow's `events.GroupInfo`: `JID`, `Sender`, `Leave`, `NewInviteLink`...
    #[default]
    GroupInfo,
    /// Flattened: `groupJid`, `action`, `participants`, `inviteLink`...
    Flat,
}

/// A webhook as configured at the emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The upsert key.
    pub label: String,
    /// Whether it is delivered to.
    pub enabled: bool,
    /// Where to.
    pub url: String,
    /// Sent as the `Authorization` header.
    pub authorization: String,
    /// Append the event's name to the URL.
    pub by_events: bool,
    /// The events it wants (all when empty).
    pub events: Vec<String>,
}

/// One try of one delivery, as the emulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event's name.
    pub event: String,
    /// Where it went.
    pub url: String,
    /// The receiver's status; `None` when it could not be reached.
    pub status: Option<u16>,
    /// 1 for the first try.
    pub attempt: u32,
}

/// A change in a group, to report as `group.flow`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change<'a> {
    /// Members removed by an admin.
    Removed(&'a [String]),
    /// A member left by themselves.
    Left(&'a str),
    /// Members added.
    Added(&'a [String]),
    /// The link was reset: the new code.
    Link(&'a str),
}

/// The events module's state.
#[derive(Debug, Default)]
pub(super) struct Events {
    pub webhooks: HashMap<String, Vec<Webhook>>,
    /// Instances whose WebSocket is enabled, and the events it wants.
    pub websocket: HashMap<String, Vec<String>>,
    /// Open WebSockets, per instance.
    pub sockets: HashMap<String, Vec<mpsc::UnboundedSender<String>>>,
    /// Emitted, not yet handed to the deliverers.
    pub outbox: Vec<Outgoing>,
    pub shape: EventShape,
    /// `instanceData.baseUrl`.
    pub base_url: String,
    pub deliveries: Vec<Delivery>,
    /// Extra copies of each delivery after its 2xx.
    pub repeats: u32,
    /// How long each delivery waits before its first try (a slow queue).
    pub delay: Duration,
}

/// One delivery to make.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    url: String,
    authorization: String,
    event: String,
    body: String,
}

impl State {
    /// Reports `change` of group `jid`, made by `by`.
    pub(super) fn group_flow(&mut self, jid: &str, by: &str, change: Change<'_>) {
        let Some(instance) = self.groups.get(jid).map(|g| g.instance.clone()) else {
            return;
        };
        let data = flow_data(self.events.shape, jid, by, change);
        self.emit(&instance, "group.flow", data);
    }

    /// Reports the instance's connection `state`.
    pub(super) fn instance_state(&mut self, instance: &str, state: &str) {
        let data = json!({"instance": instance, "state": state});
        self.emit(instance, "instance.state", data);
    }

    /// Sends `data` as `event` of `instance` to its webhooks (through the
    /// outbox) and its open WebSockets.
    fn emit(&mut self, instance: &str, event: &str, data: Value) {
        let token = self
            .instances
            .get(instance)
            .map(|i| i.token.clone())
            .unwrap_or_default();
        let body = json!({
            "event": event,
            "data": data,
            "instanceData": {"baseUrl": self.events.base_url, "instance": instance, "token": token},
        })
        .to_string();
        let wants = |events: &[String]| events.is_empty() || events.iter().any(|e| e == event);
        let hooks = self.events.webhooks.get(instance).into_iter().flatten();
        for hook in hooks.filter(|h| h.enabled && wants(&h.events)) {
            let url = if hook.by_events {
                format!("{}/{event}", hook.url.trim_end_matches('/'))
            } else {
                hook.url.clone()
            };
            self.events.outbox.push(Outgoing {
                url,
                authorization: hook.authorization.clone(),
                event: event.to_owned(),
                body: body.clone(),
            });
        }
        if self
            .events
            .websocket
            .get(instance)
            .is_some_and(|e| wants(e))
            && let Some(sockets) = self.events.sockets.get_mut(instance)
        {
            sockets.retain(|socket| socket.send(body.clone()).is_ok());
        }
    }

    /// `POST /api/events/webhook/{instance}`: upserts by label.
    pub(super) fn set_webhook(&mut self, instance: &str, body: &Value) -> Reply {
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(label), Some(url)) = (text("label"), text("url")) else {
            return error(400, "label and url are required");
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return error(400, "url must be an http(s) URL");
        }
        let events = match events_of(body) {
            Ok(events) => events,
            Err(reply) => return reply,
        };
        let hook = Webhook {
            label,
            enabled: body.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            url,
            authorization: text("authorization").unwrap_or_default(),
            by_events: body
                .get("byEvents")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            events,
        };
        let hooks = self.events.webhooks.entry(instance.to_owned()).or_default();
        let others = hooks
            .iter()
            .filter(|h| h.label != hook.label && h.enabled)
            .count();
        if hook.enabled && others >= 3 {
            return error(400, "At most 3 enabled webhooks per instance");
        }
        hooks.retain(|h| h.label != hook.label);
        hooks.push(hook.clone());
        ok(json!({"success": true, "webhook": hook}))
    }

    /// `GET /api/events/getWebhook/{instance}[?label=]`.
    pub(super) fn get_webhooks(&self, instance: &str, label: Option<&str>) -> Reply {
        let hooks: Vec<&Webhook> = self
            .events
            .webhooks
            .get(instance)
            .into_iter()
            .flatten()
            .filter(|h| label.is_none_or(|l| h.label == l))
            .collect();
        if label.is_some() && hooks.is_empty() {
            return error(404, "Webhook not found");
        }
        ok(json!({"success": true, "webhooks": hooks}))
    }

    /// `POST /api/events/websocket/{instance}`.
    pub(super) fn set_websocket(&mut self, instance: &str, body: &Value) -> Reply {
        let events = match events_of(body) {
            Ok(events) => events,
            Err(reply) => return reply,
        };
        let enabled = body.get("enabled").and_then(Value::as_bool).unwrap_or(true);
        if enabled {
            self.events
                .websocket
                .insert(instance.to_owned(), events.clone());
        } else {
            self.events.websocket.remove(instance);
            self.events.sockets.remove(instance);
        }
        ok(json!({"success": true, "websocket": {"enabled": enabled, "events": events}}))
    }

    /// `POST /api/group/participants/{instance}`: each participant's result;
    /// removals and additions reported as `group.flow`.
    pub(super) fn participants(&mut self, instance: &str, body: &Value, connected: bool) -> Reply {
        let action = body
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(jid) = body.get("identifier").and_then(Value::as_str) else {
            return error(400, "Identifier is required");
        };
        let people: Vec<String> = match body.get("participants").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list
                .iter()
                .filter_map(Value::as_str)
                .map(|p| {
                    if p.contains('@') {
                        p.to_owned()
                    } else {
                        format!("{p}@s.whatsapp.net")
                    }
                })
                .collect(),
            _ => return error(400, "participants is required"),
        };
        if !["add", "remove", "promote", "demote", "approve", "reject"].contains(&action) {
            return error(
                400,
                "action must be add, remove, promote, demote, approve or reject",
            );
        }
        if !connected {
            return error(503, "Instance is not connected to WhatsApp");
        }
        let Some(group) = self.groups.get_mut(jid).filter(|g| g.instance == instance) else {
            return error(404, "Group not found or you are not a member of this group");
        };
        if !group.admin {
            return error(403, "Not authorized to manage participants (must be admin)");
        }
        let mut done = Vec::new();
        let results: Vec<Value> = people
            .iter()
            .map(|p| {
                let member = group.members.contains(p);
                let failure = match action {
                    "remove" if !member => Some("not a participant"),
                    "add" | "approve" if member => Some("already a participant"),
                    "promote" | "demote" if !member => Some("not a participant"),
                    _ => None,
                };
                match failure {
                    Some(e) => json!({"participant": p, "success": false, "error": e}),
                    None => {
                        match action {
                            "remove" => drop(group.members.remove(p)),
                            "add" | "approve" => drop(group.members.insert(p.clone())),
                            _ => {}
                        }
                        done.push(p.clone());
                        json!({"participant": p, "success": true})
                    }
                }
            })
            .collect();
        match action {
            "remove" if !done.is_empty() => {
                self.group_flow(jid, OWN_ACCOUNT, Change::Removed(&done))
            }
            "add" | "approve" if !done.is_empty() => {
                self.group_flow(jid, OWN_ACCOUNT, Change::Added(&done));
            }
            _ => {}
        }
        ok(json!({"success": true, "results": results}))
    }
}

/// `events` of a config body: names from the catalog (all when empty).
fn events_of(body: &Value) -> Result<Vec<String>, Reply> {
    let events: Vec<String> = match body.get("events") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(_) => return Err(error(400, "events must be a list")),
    };
    match events.iter().find(|e| !CATALOG.contains(&e.as_str())) {
        Some(unknown) => Err(error(400, &format!("Unknown event: {unknown}"))),
        None => Ok(events),
    }
}

fn ok(body: Value) -> Reply {
    let mut reply = error(200, "");
    reply.body = super::state::Body::Json(body);
    reply
}

/// `group.flow` data in `shape`.
fn flow_data(shape: EventShape, jid: &str, by: &str, change: Change<'_>) -> Value {
    let now = chrono::Utc::now();
    let link = |code: &str| format!("https://chat.whatsapp.com/{code}");
    match shape {
        EventShape::GroupInfo => {
            let mut data = json!({
                "JID": jid, "Sender": by,
                "Timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "Join": null, "Leave": null, "Promote": null, "Demote": null, "NewInviteLink": null,
            });
            match change {
                Change::Removed(who) => data["Leave"] = json!(who),
                Change::Left(who) => {
                    data["Sender"] = json!(who);
                    data["Leave"] = json!([who]);
                }
                Change::Added(who) => data["Join"] = json!(who),
                Change::Link(code) => data["NewInviteLink"] = json!(link(code)),
            }
            data
        }
        EventShape::Flat => {
            let (action, participants): (&str, Vec<&str>) = match change {
                Change::Removed(who) => ("remove", who.iter().map(String::as_str).collect()),
                Change::Left(who) => ("leave", vec![who]),
                Change::Added(who) => ("add", who.iter().map(String::as_str).collect()),
                Change::Link(_) => ("link", Vec::new()),
            };
            let mut data = json!({
                "groupJid": jid, "action": action, "participants": participants,
                "author": if matches!(change, Change::Left(_)) { participants[0] } else { by },
                "timestamp": now.timestamp(),
            });
            if let Change::Link(code) = change {
                data["inviteLink"] = json!(link(code));
                data["inviteCode"] = json!(code);
            }
            data
        }
    }
}

impl Emulator {
    /// Hands what was emitted to the deliverers: one per URL, in order.
    pub(super) fn dispatch(&self) {
        let outgoing = std::mem::take(&mut self.state().events.outbox);
        if outgoing.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: nothing could be delivered
        };
        let mut deliverers = self
            .deliverers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for out in outgoing {
            let sender = deliverers.entry(out.url.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                runtime.spawn(deliver(self.clone(), rx));
                tx
            });
            let _ = sender.send(out);
        }
    }
}

/// Delivers each event in turn: tried until a 2xx (backing off, up to
/// [`DELIVERY_ATTEMPTS`] tries), then repeated as configured.
async fn deliver(em: Emulator, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
    let Ok(http) = crate::ryzeapi::http_client(Duration::from_secs(10), None) else {
        return;
    };
    let post = |out: &Outgoing| {
        http.post(&out.url)
            .header(reqwest::header::AUTHORIZATION, &out.authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(out.body.clone())
            .send()
    };
    while let Some(out) = queue.recv().await {
        let delay = em.state().events.delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut wait = DELIVERY_BACKOFF;
        for attempt in 1..=DELIVERY_ATTEMPTS {
            let status = post(&out).await.ok().map(|r| r.status().as_u16());
            let delivered = status.is_some_and(|s| (200..300).contains(&s));
            em.record(&out, status, attempt);
            if delivered {
                let repeats = em.state().events.repeats;
                for repeat in 1..=repeats {
                    let status = post(&out).await.ok().map(|r| r.status().as_u16());
                    em.record(&out, status, attempt + repeat);
                }
                break;
            }
            if attempt < DELIVERY_ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

impl Emulator {
    fn record(&self, out: &Outgoing, status: Option<u16>, attempt: u32) {
        self.state().events.deliveries.push(Delivery {
            event: out.event.clone(),
            url: out.url.clone(),
            status,
            attempt,
        });
    }
}
