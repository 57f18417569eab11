//! Shutdown from signals: systemd stops services with SIGTERM, people with ^C.

use std::future::Future;

/// Completes on the first SIGTERM or SIGINT. The handlers are installed when
/// this is called (not when it is first polled), so a signal that arrives
/// during start-up is not lost. If they cannot be installed (which does not
/// happen on Linux), it waits for ^C alone.
pub(crate) fn shutdown() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// The SIGHUPs to come, listened for from now on: a SIGHUP then no longer
/// ends the process (its default), whenever it comes. `None` if the handler
/// cannot be installed (which does not happen on Linux).
pub(crate) fn hangups() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
