//! `emulator`: the built-in RyzeAPI stand-in, alone, until SIGTERM or SIGINT.

use super::Failure;
use crate::cli::EventShapeArg;
use crate::emulator::{Emulator, EmulatorOptions, EventShape};
use crate::exit::Exit;
use crate::signals;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

pub(super) async fn run(
    listen: SocketAddr,
    requests_per_minute: u32,
    latency: Duration,
    shape: EventShapeArg,
) -> Result<Exit, Failure> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let emulator = Emulator::new(EmulatorOptions {
        requests_per_minute: requests_per_minute.max(1),
        window: Duration::from_secs(60),
        latency,
        auto_create: true,
        ..EmulatorOptions::default()
    });
    emulator.set_event_shape(match shape {
        EventShapeArg::Whatsmeow => EventShape::GroupInfo,
        EventShapeArg::Flat => EventShape::Flat,
    });
    tracing::info!(
        base_url = %format!("http://{addr}/api"),
        requests_per_minute,
        "RyzeAPI emulator listening; any instance and group JID is accepted, no real link is touched; events: POST /api/group/participants/{{instance}}, /emulator/outside-reset/{{jid}}, /emulator/state/{{instance}}"
    );
    emulator
        .serve(listener, signals::shutdown())
        .await
        .map_err(|e| Failure::Runtime(format!("emulator: {e}")))?;
    Ok(Exit::Success)
}
