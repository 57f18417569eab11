//! Shutdown from signals: systemd stops services with SIGTERM, people with ^C.

/// Completes on the first SIGTERM or SIGINT. If the handlers cannot be
/// installed (which does not happen on Linux), it waits for ^C alone.
pub async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
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
