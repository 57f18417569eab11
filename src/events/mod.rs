//! RyzeAPI's events: rotation when it matters. A member removed rotates the
//! group after a quiet period; a link changed elsewhere is recorded the
//! moment it is reported; an instance reported offline is held until it is
//! back. Events are an accelerator, never a dependency: lost, late or
//! malformed events never stop or delay scheduled rotations.
//!
//! The pieces:
//! - [`parse`]: the envelope and `group.flow` in both plausible shapes, the
//!   instance's token dropped before anything else;
//! - [`authentic`]: who sent it: a delivery counts only with the named
//!   instance's own token, for that instance's groups (else it is refused,
//!   counted, and nothing is stored);
//! - [`receiver`]: the webhook (`[events] listen`), and [`websocket`]: the
//!   outgoing connection (`[events] websocket = true`); both hand accepted
//!   events to the [`inbox`], which commits them before they are answered;
//! - [`register`]: tells RyzeAPI where to post, at start and with
//!   `invite-rotator events register`;
//! - [`act`]: reads the inbox and acts: calls for rotations (kept in the
//!   database until served, at most `max_rotations_per_hour` a group),
//!   records outside changes once a read of the live link confirms them
//!   (`links`: where each belongs in the chain of codes), holds instances.

pub(crate) mod act;
pub(crate) mod authentic;
mod confirm;
pub(crate) mod inbox;
mod links;
pub mod parse;
pub(crate) mod receiver;
pub(crate) mod register;
pub(crate) mod websocket;

use crate::config::{Config, EventsSettings, Group};
use crate::daemon::Call;
use crate::engine::Engine;
use crate::listener::Limits;
use crate::metrics::Metrics;
use crate::store::{EventKind, NewEvent, Store};
use chrono::Utc;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

/// The events invite-rotator subscribes to.
pub const SUBSCRIBED: [&str; 2] = ["group.flow", "instance.state"];
/// The label of invite-rotator's webhook at RyzeAPI.
pub const LABEL: &str = "invite-rotator";
/// A `group.flow` whose data repeat within a day is a redelivery (RyzeAPI
/// retries for minutes; a change carries its time in whatsmeow's shape).
pub const FLOW_REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(86_400);
/// An `instance.state` repeats its data each time the state comes back
/// (`disconnected` twice in a day is two reports), and acting on one twice
/// does no harm: only the same report from both channels at once is one.
pub const STATE_REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// What every node gives the events' receivers.
pub struct Receiving {
    /// The daemon's engine: its clients (tokens, rate budgets), for the
    /// WebSocket.
    pub engine: Engine,
    /// The receiver's listener, bound at start (with `listen`).
    pub listener: Option<TcpListener>,
    /// Its defences.
    pub limits: Limits,
    /// Counts events.
    pub metrics: Option<Metrics>,
}

/// What the events' receivers hand on: to keep them on the running
/// config's groups, and to wake the actor when this node stores events.
pub struct Received {
    /// The groups and instances the receivers accept events for.
    pub managed: watch::Sender<Arc<Managed>>,
    /// Notified after each commit of new events.
    pub wake: Arc<Notify>,
}

/// Starts receiving events as `settings` say (every node does: the webhook
/// receiver and the WebSocket feed the shared inbox), each task in `tasks`,
/// ending when `stop` turns true.
pub fn receive(
    settings: &EventsSettings,
    config: &Config,
    store: &Store,
    receiving: Receiving,
    tasks: &mut JoinSet<()>,
    stop: &watch::Receiver<bool>,
) -> Received {
    let (managed_tx, managed) = watch::channel(Arc::new(
        Managed::of(config).reading_with(receiving.engine.clone()),
    ));
    let wake = Arc::new(Notify::new());
    let inbox = inbox::Inbox::start(store.clone(), wake.clone(), managed.clone());
    if let (Some(listener), Some(url), Some(secret)) =
        (receiving.listener, &settings.public_url, &settings.secret)
    {
        let app = receiver::router(
            url.path(),
            secret,
            inbox.clone(),
            managed.clone(),
            receiving.metrics.clone(),
        );
        let serving = crate::listener::serve(listener, app, receiving.limits, stopped(stop));
        tasks.spawn(async move {
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "events: the webhook receiver stopped");
            }
        });
    }
    if settings.websocket {
        for instance in &config.instances {
            let Some(client) = receiving.engine.client(&instance.name) else {
                continue;
            };
            let feed = websocket::Feed {
                client: client.clone(),
                instance: instance.name.clone(),
                inbox: inbox.clone(),
                managed: managed.clone(),
                store: store.clone(),
                retry: config.retry.clone(),
                metrics: receiving.metrics.clone(),
            };
            tasks.spawn(websocket::run(feed, stopped(stop)));
        }
    }
    Received {
        managed: managed_tx,
        wake,
    }
}

/// What the active node gives the events' actor.
pub struct Acting<'a> {
    /// The daemon's engine: its clients and the instances' holds.
    pub engine: &'a Engine,
    /// What the receivers accept events for.
    pub managed: watch::Receiver<Arc<Managed>>,
    /// Notified when this node stores events.
    pub wake: Arc<Notify>,
    /// Where rotations are asked of the daemon.
    pub calls: mpsc::Sender<Call>,
    /// Counts what is done.
    pub metrics: Option<Metrics>,
}

/// Starts acting on the inbox (the active node does) and registering the
/// webhook at every instance, each task in `tasks`, ending when `stop`
/// turns true.
pub fn act(
    settings: &EventsSettings,
    config: &Config,
    store: &Store,
    acting: Acting<'_>,
    tasks: &mut JoinSet<()>,
    stop: &watch::Receiver<bool>,
) {
    if let (Some(url), Some(secret)) = (&settings.public_url, &settings.secret) {
        for instance in &config.instances {
            let Some(client) = acting.engine.client(&instance.name) else {
                continue;
            };
            tasks.spawn(register::until_done(
                client.clone(),
                instance.name.clone(),
                url.clone(),
                secret.clone(),
                store.clone(),
                config.retry.clone(),
                stopped(stop),
            ));
        }
    }
    let actor = act::Actor {
        store: store.clone(),
        max_rotations_per_hour: settings.max_rotations_per_hour,
        holds: acting.engine.holds().clone(),
        retry: config.retry.clone(),
        managed: acting.managed,
        daemon: acting.calls,
        wake: acting.wake,
        metrics: acting.metrics,
        asked: std::sync::Mutex::default(),
        capped: std::sync::Mutex::default(),
        reads: confirm::Reads::default(),
    };
    tasks.spawn(actor.run(stopped(stop)));
}

fn stopped(stop: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// What the running config manages, for telling events apart.
#[derive(Debug, Clone, Default)]
pub struct Managed {
    /// The groups (shared with the config).
    pub groups: std::sync::Arc<[Group]>,
    /// Each group's index in `groups`, by JID.
    pub by_jid: HashMap<String, usize>,
    /// Instance names.
    pub instances: HashSet<String>,
    /// Each instance's token, digested: what an envelope's must match.
    pub tokens: HashMap<String, authentic::TokenDigest>,
    /// What reads a group's live link (the running config's engine), to
    /// confirm a reported link change; none in tests of the receivers.
    pub engine: Option<Engine>,
    /// Masks every configured token and secret in events' data before it
    /// is stored, whatever the envelope says (redaction by
    /// `instanceData.token` trusts the sender); codes are masked where the
    /// data is shown, as the actor reads them from the stored data.
    pub masker: crate::mask::Masker,
}

impl Managed {
    /// From a config.
    pub fn of(config: &Config) -> Managed {
        Managed {
            groups: config.groups.clone(),
            by_jid: config
                .groups
                .iter()
                .enumerate()
                .map(|(i, g)| (g.jid.as_str().to_owned(), i))
                .collect(),
            instances: config.instances.iter().map(|i| i.name.clone()).collect(),
            // A config read without its secrets has no tokens: nothing
            // then is authentic.
            tokens: config
                .instances
                .iter()
                .filter(|i| !i.token.expose().is_empty())
                .map(|i| {
                    let digest = authentic::TokenDigest::of(i.token.expose());
                    (i.name.clone(), digest)
                })
                .collect(),
            engine: None,
            masker: crate::mask::Masker::of(config),
        }
    }

    /// The same, reading live links with `engine` (the config's).
    pub fn reading_with(mut self, engine: Engine) -> Managed {
        self.engine = Some(engine);
        self
    }

    /// The group whose JID is `jid`.
    pub fn group(&self, jid: &str) -> Option<&Group> {
        self.by_jid.get(jid).and_then(|i| self.groups.get(*i))
    }
}

/// What became of a delivery.
#[derive(Debug)]
pub enum Accepted {
    /// To be stored in the inbox.
    Store(NewEvent),
    /// Not stored: an event type not used, or a group not managed.
    Ignored {
        /// The event's name.
        event: String,
        /// Why (`unused`, `unmanaged`).
        kind: &'static str,
    },
    /// Not stored, and answered as refused: the envelope's token is not
    /// the configured token of the instance it speaks for, or that
    /// instance is not the group's.
    Refused {
        /// The event's name.
        event: String,
        /// Why.
        why: authentic::Refusal,
    },
}

impl Accepted {
    /// The event's name, for the metrics.
    pub fn event(&self) -> &str {
        match self {
            Accepted::Store(e) => &e.event,
            Accepted::Ignored { event, .. } | Accepted::Refused { event, .. } => event,
        }
    }

    /// Its kind, for the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Accepted::Store(e) => e.kind.as_str(),
            Accepted::Ignored { kind, .. } => kind,
            Accepted::Refused { why, .. } => why.kind(),
        }
    }
}

/// Reads a delivery (`channel`: `webhook` or `websocket`; `instance`: the
/// WebSocket's own instance, which an envelope naming none is about) and
/// decides whether it is stored. Refused unless its `instanceData.token` is
/// the configured token of the instance it speaks for, and that instance is
/// the group's. `Err` when it is not an envelope.
pub fn classify_from(
    body: &[u8],
    channel: &'static str,
    instance: Option<&str>,
    managed: &Managed,
) -> Result<Accepted, parse::EnvelopeError> {
    let envelope = parse::envelope(body)?;
    let ignored = |kind| {
        Ok(Accepted::Ignored {
            event: envelope.event.clone(),
            kind,
        })
    };
    let refused = |why| {
        Ok(Accepted::Refused {
            event: envelope.event.clone(),
            why,
        })
    };
    let speaker = match authentic::speaker(envelope.instance.as_deref(), instance) {
        Ok(speaker) => speaker,
        Err(why) => return refused(why),
    };
    if !authentic::vouched(managed.tokens.get(speaker), envelope.token.as_ref()) {
        return refused(authentic::Refusal::Token);
    }
    let (kind, group_jid) = match envelope.event.as_str() {
        "group.flow" => match parse::group_flow(&envelope.data) {
            Some(flow) => {
                let Some(group) = managed.group(flow.group.as_str()) else {
                    return ignored("unmanaged");
                };
                if group.instance != speaker {
                    return refused(authentic::Refusal::Instance);
                }
                let kind = if !flow.removed.is_empty() {
                    EventKind::MemberRemoved
                } else if !flow.left.is_empty() {
                    EventKind::MemberLeft
                } else if flow.link.is_some() {
                    EventKind::LinkChanged
                } else {
                    EventKind::Other
                };
                (kind, Some(flow.group.as_str().to_owned()))
            }
            None => (EventKind::Unparsed, None),
        },
        "instance.state" => {
            let kind = if parse::instance_state(&envelope.data).is_some() {
                EventKind::State
            } else {
                EventKind::Unparsed
            };
            (kind, None)
        }
        _ => return ignored("unused"),
    };
    Ok(Accepted::Store(new_event(
        channel, speaker, &envelope, kind, group_jid,
    )))
}

/// As [`classify_from`], for a webhook delivery.
pub fn classify(
    body: &[u8],
    channel: &'static str,
    managed: &Managed,
) -> Result<Accepted, parse::EnvelopeError> {
    classify_from(body, channel, None, managed)
}

fn new_event(
    channel: &'static str,
    instance: &str,
    envelope: &parse::Envelope,
    kind: EventKind,
    group_jid: Option<String>,
) -> NewEvent {
    let data = parse::stored_data(&envelope.data);
    // The same event from a retry or from the other channel: one digest (of
    // the whole data, even where what is stored is cut short).
    let digest = Sha256::digest(format!("{instance}\0{}\0{}", envelope.event, envelope.data));
    NewEvent {
        channel,
        instance: instance.to_owned(),
        event: envelope.event.clone(),
        kind,
        group_jid,
        digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
        // A group's change carries its time; a state's data repeat.
        repeat_window: if envelope.event == "instance.state" {
            STATE_REPEAT_WINDOW
        } else {
            FLOW_REPEAT_WINDOW
        },
        data,
        received_at: Utc::now(),
    }
}
