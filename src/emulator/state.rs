//! What the emulator knows and decides; no HTTP here.

use super::faults::{Fault, apply_fault, random_fault};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/group/resetLink/{instance}`.
    Reset,
    /// `GET /api/group/info/{instance}`.
    Info,
    /// `POST /api/group/participants/{instance}`.
    Participants,
    /// `POST /api/events/webhook/{instance}` and `GET .../getWebhook/{instance}`.
    Webhook,
    /// `POST /api/events/websocket/{instance}` and the upgrade of `GET /ws/{instance}`.
    WebSocket,
}

/// One call as the emulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// Which route.
    pub route: Route,
    /// The instance in the path.
    pub instance: String,
    /// The identifier asked about.
    pub jid: Option<String>,
    /// The status it answered (200 for faults that cut or stall a 200).
    pub status: u16,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

#[derive(Debug)]
pub(super) struct GroupState {
    pub instance: String,
    pub admin: bool,
    pub code: String,
    pub chain: Vec<String>,
    /// Members' JIDs (this account aside).
    pub members: std::collections::BTreeSet<String>,
}

#[derive(Debug)]
pub(super) struct InstanceState {
    pub token: String,
    pub connected: bool,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// The rate limit's sliding window (60 s, like the API's minute).
    pub window: Duration,
    pub instances: HashMap<String, InstanceState>,
    /// The events module: webhooks, WebSockets, what is to be delivered.
    pub events: super::events::Events,
    pub groups: HashMap<String, GroupState>,
    windows: HashMap<String, VecDeque<Instant>>,
    pub faults: VecDeque<(Route, Fault)>,
    /// Resets that land later than their call was answered: the group and
    /// when. Applied at that time, or by the first call that comes after it,
    /// whichever is first, so that a busy machine cannot land one late.
    late: Vec<(String, Instant)>,
    /// The share of calls meeting a random fault (see `EmulatorOptions`).
    pub fault_rate: f64,
    pub fault_stall: Duration,
    pub calls: Vec<CallEvent>,
}

/// What to answer.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub body: Body,
    pub rate: Option<RateHeaders>,
    /// Answer without `X-RateLimit-*` headers (WhatsApp's own throttling).
    pub omit_rate: bool,
    /// Reset this group after `reset_after`, whether or not the client still waits.
    pub late_reset: Option<String>,
    /// When a late reset lands, from the call's arrival (latency aside).
    pub reset_after: Duration,
    /// Extra delay before answering.
    pub stall: Duration,
}

#[derive(Debug)]
pub(super) enum Body {
    Json(serde_json::Value),
    Html,
    Cut,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RateHeaders {
    pub limit: u32,
    pub remaining: u32,
    pub reset_unix: u64,
}

/// A request reduced to what the emulator needs.
pub(super) struct Request<'a> {
    pub route: Route,
    pub instance: &'a str,
    pub token: Option<&'a str>,
    pub identifier: Option<&'a str>,
}

pub(super) fn error(status: u16, message: &str) -> Reply {
    Reply {
        status,
        body: Body::Json(serde_json::json!({"success": false, "error": {"message": message}})),
        rate: None,
        omit_rate: false,
        late_reset: None,
        reset_after: Duration::ZERO,
        stall: Duration::ZERO,
    }
}

/// A fresh 22-character invite code.
pub(super) fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..22)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

impl State {
    pub(super) fn add_instance(&mut self, name: &str, token: &str) {
        let instance = InstanceState {
            token: token.to_owned(),
            connected: true,
        };
        self.instances.insert(name.to_owned(), instance);
    }

    pub(super) fn add_group(&mut self, instance: &str, jid: &str, admin: bool) -> String {
        let code = new_code();
        let group = GroupState {
            instance: instance.to_owned(),
            admin,
            code: code.clone(),
            chain: vec![code.clone()],
            members: std::collections::BTreeSet::new(),
        };
        self.groups.insert(jid.to_owned(), group);
        code
    }

    pub(super) fn set_connected(&mut self, instance: &str, connected: bool) {
        if let Some(i) = self.instances.get_mut(instance) {
            i.connected = connected;
        }
    }

    /// Decides the reply to `req` (a group route) and applies its effect.
    pub(super) fn handle(&mut self, req: &Request<'_>, limit: u32, auto_create: bool) -> Reply {
        self.serve(req, limit, auto_create, |state, connected| {
            state.decide(req, connected, auto_create)
        })
    }

    /// Authenticates and paces `req` as the API does, then lets `then`
    /// decide (told whether the instance is connected); logs the call and
    /// adds the rate headers.
    pub(super) fn serve(
        &mut self,
        req: &Request<'_>,
        limit: u32,
        auto_create: bool,
        then: impl FnOnce(&mut State, bool) -> (Reply, Option<Fault>),
    ) -> Reply {
        self.land_late_resets();
        let mut reply = match self.authorize(req, limit, auto_create) {
            Err(reply) => (reply, None),
            Ok(connected) => then(self, connected),
        };
        let fault = reply.1;
        self.calls.push(CallEvent {
            route: req.route,
            instance: req.instance.to_owned(),
            jid: req.identifier.map(str::to_owned),
            status: reply.0.status,
            fault,
        });
        if let (Some(token), None, false) = (req.token, reply.0.rate, reply.0.omit_rate) {
            reply.0.rate = Some(self.rate_headers(token, limit));
        }
        reply.0
    }

    /// Authentication, as the API does it: a token, that token known, owning
    /// the instance; then the per-token sliding window (a refused call does
    /// not count). Returns whether the instance is connected.
    fn authorize(
        &mut self,
        req: &Request<'_>,
        limit: u32,
        auto_create: bool,
    ) -> Result<bool, Reply> {
        let Some(token) = req.token.filter(|t| !t.is_empty()) else {
            return Err(error(401, "Missing token"));
        };
        if auto_create && !self.instances.contains_key(req.instance) {
            self.add_instance(req.instance, token);
        }
        if !self.instances.values().any(|i| i.token == token) {
            return Err(error(401, "Invalid token"));
        }
        let Some(instance) = self.instances.get(req.instance) else {
            return Err(error(401, "Invalid instance token"));
        };
        if instance.token != token {
            return Err(error(403, "Token does not own this instance"));
        }
        let connected = instance.connected;
        if let Err(rate) = self.admit(token, limit) {
            let mut reply = error(429, "Rate limit exceeded. Try again later.");
            reply.rate = Some(rate);
            return Err(reply);
        }
        Ok(connected)
    }

    fn decide(
        &mut self,
        req: &Request<'_>,
        connected: bool,
        auto_create: bool,
    ) -> (Reply, Option<Fault>) {
        let Some(jid) = req.identifier.filter(|j| !j.is_empty()) else {
            return (error(400, "Identifier is required"), None);
        };
        if !connected {
            return (error(503, "Instance is not connected to WhatsApp"), None);
        }
        if auto_create && jid.ends_with("@g.us") && !self.groups.contains_key(jid) {
            self.add_group(req.instance, jid, true);
        }
        // Refusals come before faults: a fault is spent only on a call that
        // would otherwise succeed, so a test knows which call it hits.
        let admin = match self.groups.get(jid).filter(|g| g.instance == req.instance) {
            None => {
                return (
                    error(404, "Group not found or you are not a member of this group"),
                    None,
                );
            }
            Some(g) => g.admin,
        };
        if req.route == Route::Reset && !admin {
            return (
                error(
                    403,
                    "Not authorized to reset group invite link (must be admin)",
                ),
                None,
            );
        }
        let fault = self.take_fault(req.route);
        let mut reply = match req.route {
            Route::Reset
                if matches!(
                    fault,
                    Some(
                        Fault::LateReset(_)
                            | Fault::GatewayErrorThenReset(_)
                            | Fault::UnavailableThenReset(_)
                    )
                ) =>
            {
                let mut reply = match fault {
                    Some(Fault::UnavailableThenReset(_)) => {
                        error(503, "Service Temporarily Unavailable")
                    }
                    _ => error(504, "upstream timed out"),
                };
                reply.late_reset = Some(jid.to_owned());
                reply
            }
            // A fault that strikes before the reset: nothing changes.
            Route::Reset if fault.is_some_and(|f| !f.resets()) => error(500, "emulated fault"),
            Route::Reset => {
                let code = self.new_link(jid, super::events::OWN_ACCOUNT);
                reset_ok(jid, &code)
            }
            _ => match self.groups.get(jid) {
                Some(group) => info_ok(jid, group),
                None => error(404, "Group not found or you are not a member of this group"),
            },
        };
        if let Some(f) = fault {
            apply_fault(&mut reply, f);
        }
        (reply, fault)
    }

    /// Queues a reset of `jid` to land at `at`.
    pub(super) fn reset_later(&mut self, jid: &str, at: Instant) {
        self.late.push((jid.to_owned(), at));
    }

    /// Lands every queued reset whose time has come.
    pub(super) fn land_late_resets(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .late
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(jid, _)| jid.clone())
            .collect();
        self.late.retain(|(_, at)| *at > now);
        for jid in due {
            self.new_link(&jid, super::events::OWN_ACCOUNT);
        }
    }

    /// Resets the link of `jid` (by `by`): a new code, in the chain, and
    /// the link change reported as WhatsApp reports it. Returns the code.
    pub(super) fn new_link(&mut self, jid: &str, by: &str) -> String {
        let Some(group) = self.groups.get_mut(jid) else {
            return String::new();
        };
        group.code = new_code();
        group.chain.push(group.code.clone());
        let code = group.code.clone();
        self.group_flow(jid, by, super::events::Change::Link(&code));
        code
    }

    fn take_fault(&mut self, route: Route) -> Option<Fault> {
        if let Some(at) = self.faults.iter().position(|(r, _)| *r == route) {
            return self.faults.remove(at).map(|(_, f)| f);
        }
        (self.fault_rate > 0.0 && fastrand::f64() < self.fault_rate)
            .then(|| random_fault(route, self.fault_stall))
    }

    fn admit(&mut self, token: &str, limit: u32) -> Result<(), RateHeaders> {
        let now = Instant::now();
        let window = self.windows.entry(token.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return Err(rate_headers(window, self.window, limit, now));
        }
        window.push_back(now);
        Ok(())
    }

    fn rate_headers(&mut self, token: &str, limit: u32) -> RateHeaders {
        let window = self.windows.entry(token.to_owned()).or_default();
        rate_headers(window, self.window, limit, Instant::now())
    }
}

fn rate_headers(
    window: &VecDeque<Instant>,
    length: Duration,
    limit: u32,
    now: Instant,
) -> RateHeaders {
    let until_reset = window.front().map_or(Duration::ZERO, |t| {
        (*t + length).saturating_duration_since(now)
    });
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    RateHeaders {
        limit,
        remaining: limit.saturating_sub(u32::try_from(window.len()).unwrap_or(u32::MAX)),
        reset_unix: (now_unix + until_reset).as_secs() + 1,
    }
}

fn reset_ok(jid: &str, code: &str) -> Reply {
    Reply {
        status: 200,
        body: Body::Json(serde_json::json!({
            "success": true,
            "message": "Group invite link reset successfully",
            "groupJid": jid,
            "inviteCode": code,
            "inviteLink": format!("https://chat.whatsapp.com/{code}"),
        })),
        rate: None,
        omit_rate: false,
        late_reset: None,
        reset_after: Duration::ZERO,
        stall: Duration::ZERO,
    }
}

fn info_ok(jid: &str, group: &GroupState) -> Reply {
    let mut detail = serde_json::json!({
        "jid": jid,
        "name": format!("Group {jid}"),
        "participantCount": 42,
        "isSuspended": false,
    });
    // WhatsApp shows the link to admins only.
    if group.admin {
        detail["inviteLink"] = format!("https://chat.whatsapp.com/{}", group.code).into();
    }
    Reply {
        status: 200,
        body: Body::Json(serde_json::json!({"success": true, "group": detail})),
        rate: None,
        omit_rate: false,
        late_reset: None,
        reset_after: Duration::ZERO,
        stall: Duration::ZERO,
    }
}
