//! Webhooks: the only HTTP client besides RyzeAPI's. POSTs a notification as
//! JSON, signed `X-Signature: sha256=<hex HMAC-SHA256 of the body>`, with an
//! `Idempotency-Key`. Redirects are not followed (the signature and any secret
//! in the URL stay with the configured host); TLS is always verified.

use super::{Outcome, clip};
use crate::secret::Token;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The HTTP client of every webhook: no proxy but the config's (see
/// [`crate::ryzeapi::http_client`]).
pub fn client(proxy: Option<&reqwest::Url>) -> Result<reqwest::Client, reqwest::Error> {
    crate::ryzeapi::http_client(Duration::from_secs(300), proxy)
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

pub(super) async fn post(
    http: &reqwest::Client,
    url: &reqwest::Url,
    secret: Option<&Token>,
    timeout: Duration,
    idempotency_key: &str,
    note: &impl serde::Serialize,
) -> Outcome {
    let body = match serde_json::to_vec(note) {
        Ok(b) => b,
        Err(e) => {
            return Outcome {
                delivered: false,
                result: None,
                error: Some(format!("cannot encode the notification: {e}")),
                output: None,
            };
        }
    };
    let mut request = http
        .post(url.clone())
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("idempotency-key", idempotency_key)
        .header(
            "user-agent",
            concat!("invite-rotator/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(secret) = secret {
        request = request.header("x-signature", signature(secret.expose(), &body));
    }
    match request.body(body).send().await {
        Ok(mut reply) => {
            let status = reply.status();
            // At most a few KiB of the answer: it only goes into an error.
            let mut body = Vec::new();
            while body.len() < 4096 {
                match reply.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&body);
            Outcome {
                delivered: status.is_success(),
                result: Some(status.as_u16().to_string()),
                error: (!status.is_success()).then(|| format!("HTTP {status}: {}", clip(&text))),
                output: None,
            }
        }
        // The URL may hold a secret (chat webhooks do): never in the error.
        Err(e) => Outcome {
            delivered: false,
            result: None,
            error: Some(describe(&e)),
            output: None,
        },
    }
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
