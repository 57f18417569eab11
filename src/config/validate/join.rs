//! `[join]`: the redirector of join links.

use super::Validator;
use crate::config::JoinSettings;
use crate::config::raw::RawJoin;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn join(&mut self, raw: Option<Spanned<RawJoin>>) -> Option<JoinSettings> {
        let raw = raw?;
        let at = raw.span();
        let raw = raw.into_inner();
        let listen = match raw.listen.as_ref() {
            Some(l) => {
                let parsed = l.get_ref().parse().ok();
                if parsed.is_none() {
                    let message = format!(
                        "{:?} is not an address to listen on, such as \"127.0.0.1:9466\"",
                        l.get_ref()
                    );
                    self.error("join.listen", l, message);
                }
                parsed
            }
            None => {
                self.r.push(
                    "join.listen",
                    Some(at.start),
                    "missing: where the redirector listens, such as \"127.0.0.1:9466\" (behind a TLS proxy)",
                );
                None
            }
        };
        let public_url = match raw.public_url.as_ref() {
            Some(u) => {
                let url = self.web_url("join.public_url", u)?;
                if url.query().is_some() || url.fragment().is_some() {
                    self.error(
                        "join.public_url",
                        u,
                        "links are {public_url}/j/{slug}: no query, no fragment",
                    );
                    return None;
                }
                Some(url)
            }
            None => {
                self.r.push(
                    "join.public_url",
                    Some(at.start),
                    "missing: what printed links start with, such as \"https://join.example.org\"",
                );
                None
            }
        };
        Some(JoinSettings {
            listen: listen?,
            public_url: public_url?,
        })
    }
}
