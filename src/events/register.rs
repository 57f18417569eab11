//! Telling RyzeAPI where to post: invite-rotator's webhook (label
//! `invite-rotator`, `public_url`, `Authorization: Bearer <secret>`, the two
//! events it uses) upserted at every instance, at start and with
//! `invite-rotator events register`. A failure is logged, shown in `status`
//! and retried with backoff; it is never fatal: scheduled rotations go on.

use super::{LABEL, SUBSCRIBED};
use crate::config::RetryPolicy;
use crate::ryzeapi::{CallError, Client};
use crate::secret::Token;
use crate::store::Store;
use std::future::Future;

/// Registers the webhook of one instance once; `Err` says why it failed.
/// The outcome is recorded for `status`.
pub(crate) async fn once(
    client: &Client,
    instance: &str,
    url: &reqwest::Url,
    secret: &Token,
    store: &Store,
) -> Result<(), CallError> {
    let authorization = format!("Bearer {}", secret.expose());
    let call = client
        .register_webhook(LABEL, url, &authorization, &SUBSCRIBED)
        .await;
    let result = call.result;
    let error = result.as_ref().err().map(ToString::to_string);
    if let Err(e) = store.record_registration(instance, error.as_deref()).await {
        tracing::warn!(instance, error = %e, "events: cannot record the webhook's registration");
    }
    result
}

/// Registers the webhook of `instance` until it succeeds, backing off as
/// `retry` says (up to `backoff_max` between tries), or until `stop`.
pub(crate) async fn until_done(
    client: Client,
    instance: String,
    url: reqwest::Url,
    secret: Token,
    store: Store,
    retry: RetryPolicy,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut failures = 0;
    loop {
        let attempt = once(&client, &instance, &url, &secret, &store);
        let result = tokio::select! {
            () = &mut stop => return,
            result = attempt => result,
        };
        match result {
            Ok(()) => {
                tracing::info!(instance, url = %url.origin().ascii_serialization(), "events: webhook registered at RyzeAPI");
                return;
            }
            Err(error) => {
                failures += 1;
                let wait = crate::backoff::ceiling(&retry, failures);
                tracing::warn!(instance, %error, retry_in_s = wait.as_secs(), "events: cannot register the webhook; scheduled rotations go on");
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
