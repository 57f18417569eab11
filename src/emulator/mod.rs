//! A built-in RyzeAPI stand-in: the same routes, token check, per-token
//! sliding-window rate limit with `X-RateLimit-*` headers and 429, the
//! documented error statuses, and fault modes that tests switch on.
//!
//! Operators run it (`invite-rotator emulator`) to try a config without
//! revoking a real link; the tests and the demo run it in-process. It keeps a
//! record of every code it issued, which the tests compare with the history.
//!
//! Its events module ([`events`]) pushes what happens in the groups (members
//! removed, added or gone, links reset here or elsewhere) and to the
//! instances (their connection) to webhooks and WebSockets, as RyzeAPI does.

mod events;
mod faults;
mod http;
mod state;

pub use events::{Delivery, EventShape, OTHER_ADMIN, OWN_ACCOUNT, Webhook};
pub use faults::Fault;
pub use state::{CallEvent, Route};

use state::State;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// The per-token limit, counted over any sliding `window`.
    pub requests_per_minute: u32,
    /// The limit's window: 60 s like the API; tests shorten it to prove
    /// pacing with more calls than one window allows, quickly.
    pub window: Duration,
    /// Added to every reply.
    pub latency: Duration,
    /// Accept unknown instances (claimed by the first token that uses them) and
    /// unknown group JIDs (created, with this account as admin). On for the
    /// `emulator` command, so any config can be tried as it is.
    pub auto_create: bool,
    /// The share of calls (0 to 1) that meet a random fault, on top of any
    /// queued with [`Emulator::push_fault`]; changeable with
    /// [`Emulator::set_fault_rate`]. For soaks and kill tests.
    pub fault_rate: f64,
    /// How long stalls last under `fault_rate`: past the client's timeout
    /// (and at most twice it: a 5xx's late reset lands a quarter of this
    /// after the call, within the timeout the workflow waits before reading back).
    pub fault_stall: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            requests_per_minute: 100,
            window: Duration::from_secs(60),
            latency: Duration::ZERO,
            auto_create: false,
            fault_rate: 0.0,
            fault_stall: Duration::from_secs(35),
        }
    }
}

/// The emulator's state, shared by its server and by whoever set it up.
/// Cloning is shallow.
#[derive(Clone)]
pub struct Emulator {
    state: Arc<Mutex<State>>,
    options: Arc<EmulatorOptions>,
    /// One delivery queue per webhook URL (see [`events`]).
    deliverers: Arc<Mutex<HashMap<String, UnboundedSender<events::Outgoing>>>>,
}

/// A group as a test sets it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Admin: may read and reset the link.
    Admin,
    /// A plain member: sees the group without its link, may not reset it.
    Member,
}

impl Emulator {
    /// An emulator with no instances and no groups.
    pub fn new(options: EmulatorOptions) -> Self {
        let mut state = State::default();
        state.window = options.window;
        state.fault_rate = options.fault_rate;
        state.fault_stall = options.fault_stall;
        Emulator {
            state: Arc::new(Mutex::new(state)),
            options: Arc::new(options),
            deliverers: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Whoever looks sees every late reset whose time has come.
        state.land_late_resets();
        state
    }

    /// Adds an instance owned by `token`.
    pub fn add_instance(&self, name: &str, token: &str) {
        self.state().add_instance(name, token);
    }

    /// Adds a group to `instance`; returns its first invite code.
    pub fn add_group(&self, instance: &str, jid: &str, membership: Membership) -> String {
        self.state()
            .add_group(instance, jid, membership == Membership::Admin)
    }

    /// Marks an instance as (dis)connected from WhatsApp; disconnected ones
    /// answer 503. Reported as `instance.state` (`connected`, `disconnected`).
    pub fn set_connected(&self, instance: &str, connected: bool) {
        let state = if connected {
            "connected"
        } else {
            "disconnected"
        };
        self.set_instance_state(instance, state);
    }

    /// Sets an instance's connection state (`connected`, `disconnected`,
    /// `logged_out`, `temp_banned`, `qr_ready`, `connecting`): only
    /// `connected` serves group calls. Reported as `instance.state`.
    pub fn set_instance_state(&self, instance: &str, state: &str) {
        {
            let mut s = self.state();
            s.set_connected(instance, state == "connected");
            s.instance_state(instance, state);
        }
        self.dispatch();
    }

    /// Adds members to a group (as another admin would), reported as `group.flow`.
    pub fn add_members(&self, jid: &str, members: &[&str]) {
        let members: Vec<String> = members.iter().map(|m| (*m).to_owned()).collect();
        {
            let mut s = self.state();
            if let Some(g) = s.groups.get_mut(jid) {
                g.members.extend(members.iter().cloned());
            }
            s.group_flow(jid, OTHER_ADMIN, events::Change::Added(&members));
        }
        self.dispatch();
    }

    /// Another admin removes `member` from the group, reported as `group.flow`.
    pub fn remove_member(&self, jid: &str, member: &str) {
        let removed = [member.to_owned()];
        {
            let mut s = self.state();
            if let Some(g) = s.groups.get_mut(jid) {
                g.members.remove(member);
            }
            s.group_flow(jid, OTHER_ADMIN, events::Change::Removed(&removed));
        }
        self.dispatch();
    }

    /// `member` leaves the group by themselves, reported as `group.flow`.
    pub fn member_leaves(&self, jid: &str, member: &str) {
        {
            let mut s = self.state();
            if let Some(g) = s.groups.get_mut(jid) {
                g.members.remove(member);
            }
            s.group_flow(jid, member, events::Change::Left(member));
        }
        self.dispatch();
    }

    /// Another admin resets the group's link in WhatsApp itself (not through
    /// this API); returns the new code. Reported as `group.flow`.
    pub fn reset_outside(&self, jid: &str) -> String {
        let code = self.state().new_link(jid, OTHER_ADMIN);
        self.dispatch();
        code
    }

    /// Which `group.flow` shape the events use from now on.
    pub fn set_event_shape(&self, shape: EventShape) {
        self.state().events.shape = shape;
    }

    /// Each delivery is sent `repeats` more times after its 2xx (as RyzeAPI
    /// retries one whose answer it did not get).
    pub fn set_delivery_repeats(&self, repeats: u32) {
        self.state().events.repeats = repeats;
    }

    /// Each delivery waits this long before its first try (RyzeAPI's queue
    /// running late), one after another.
    pub fn set_delivery_delay(&self, delay: Duration) {
        self.state().events.delay = delay;
    }

    /// Every try of every delivery, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().events.deliveries.clone()
    }

    /// The webhooks configured for `instance`.
    pub fn webhooks(&self, instance: &str) -> Vec<Webhook> {
        self.state()
            .events
            .webhooks
            .get(instance)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the WebSocket of `instance` is enabled.
    pub fn websocket_enabled(&self, instance: &str) -> bool {
        self.state().events.websocket.contains_key(instance)
    }

    /// How many WebSockets of `instance` are open.
    pub fn websockets_open(&self, instance: &str) -> usize {
        let mut state = self.state();
        let sockets = state.events.sockets.entry(instance.to_owned()).or_default();
        sockets.retain(|s| !s.is_closed());
        sockets.len()
    }

    /// The members of a group.
    pub fn members(&self, jid: &str) -> Vec<String> {
        self.state()
            .groups
            .get(jid)
            .map(|g| g.members.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Queues a fault for the next call to `route` that passes the token and rate checks.
    pub fn push_fault(&self, route: Route, fault: Fault) {
        self.state().faults.push_back((route, fault));
    }

    /// Changes the share of calls that meet a random fault.
    pub fn set_fault_rate(&self, rate: f64) {
        self.state().fault_rate = rate;
    }

    /// The live code of a group.
    pub fn current_code(&self, jid: &str) -> Option<String> {
        self.state().groups.get(jid).map(|g| g.code.clone())
    }

    /// The group's codes, oldest first: the one it was created with, then one per
    /// reset that took effect.
    pub fn code_chain(&self, jid: &str) -> Vec<String> {
        self.state()
            .groups
            .get(jid)
            .map(|g| g.chain.clone())
            .unwrap_or_default()
    }

    /// Every code any group has had: the ones they were created with and
    /// every one a reset issued.
    pub fn issued_codes(&self) -> Vec<String> {
        self.state()
            .groups
            .values()
            .flat_map(|g| g.chain.iter().cloned())
            .collect()
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<CallEvent> {
        self.state().calls.clone()
    }

    /// Reset calls received for `jid` (whatever their outcome).
    pub fn reset_calls(&self, jid: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.route == Route::Reset && c.jid.as_deref() == Some(jid))
            .count()
    }

    /// How many replies were 429 for the rate limit (not counting injected
    /// WhatsApp throttling).
    pub fn rate_limited(&self) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.status == 429 && c.fault.is_none())
            .count()
    }

    /// How many resets took effect, over all groups.
    pub fn resets_applied(&self) -> usize {
        self.state()
            .groups
            .values()
            .map(|g| g.chain.len() - 1)
            .sum()
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            self.state().events.base_url = format!("http://{addr}");
        }
        axum::serve(listener, http::router(self))
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Serves on a free loopback port in a background task, for tests and the
    /// demo. The server stops when the returned handle is dropped.
    pub async fn spawn(self) -> std::io::Result<RunningEmulator> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(RunningEmulator {
            addr,
            _stop: stop,
            _task: AbortOnDrop(task),
        })
    }
}

/// An emulator serving in the background.
pub struct RunningEmulator {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _task: AbortOnDrop,
}

impl RunningEmulator {
    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `api.base_url` that reaches it.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<std::io::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
