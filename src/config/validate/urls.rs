//! URLs that secrets are sent to (`api.base_url`, webhooks, `events.public_url`)
//! and the proxy they may go through.

use super::Validator;
use crate::config::defaults;
use crate::config::document::SpannedStr;

impl Validator<'_> {
    pub(super) fn base_url(&mut self, value: Option<&SpannedStr>) -> reqwest::Url {
        let fallback =
            || reqwest::Url::parse(defaults::BASE_URL).expect("the default base URL is valid");
        match value {
            Some(value) => self.web_url("api.base_url", value).unwrap_or_else(fallback),
            None => fallback(),
        }
    }

    /// `api.proxy`: `http://` or `https://` host and port, no credentials. It
    /// carries only CONNECT tunnels of HTTPS calls, so it never sees a request.
    pub(super) fn proxy(&mut self, value: &SpannedStr) -> Option<reqwest::Url> {
        let usable = reqwest::Url::parse(value.get_ref()).ok().filter(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.username().is_empty()
                && url.password().is_none()
                && matches!(url.path(), "" | "/")
        });
        if usable.is_none() {
            // Never quoted: it may hold a password.
            self.error(
                "api.proxy",
                value,
                "must be a proxy URL such as \"http://proxy.example.org:3128\", without credentials or a path",
            );
        }
        usable
    }

    /// A URL that secrets may be sent to: https, or plain http to loopback
    /// only; no credentials in it.
    pub(super) fn web_url(&mut self, key: &str, value: &SpannedStr) -> Option<reqwest::Url> {
        let url = match reqwest::Url::parse(value.get_ref()) {
            Ok(url) => url,
            Err(e) => {
                let message = format!("{:?} is not a URL: {e}", value.get_ref());
                self.error(key, value, message);
                return None;
            }
        };
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let acceptable = match url.scheme() {
            "https" => url.host().is_some(),
            "http" => loopback,
            _ => false,
        };
        let credentials = !url.username().is_empty() || url.password().is_some();
        if !acceptable || credentials {
            // Quoted without its credentials: a password is as secret as a token.
            let mut shown = url.clone();
            let _ = shown.set_password(None);
            let _ = shown.set_username("");
            // A webhook's path may be its secret (chat webhooks): host only.
            let host_only = format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or(""));
            let message = format!(
                "{:?}: use https (plain http only to loopback, such as the built-in emulator), without credentials in the URL",
                if key.starts_with("hook") {
                    host_only.as_str()
                } else if credentials {
                    shown.as_str()
                } else {
                    value.get_ref().as_str()
                }
            );
            self.error(key, value, message);
            return None;
        }
        Some(url)
    }
}
