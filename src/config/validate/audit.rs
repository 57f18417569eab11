//! `[audit]` (the key that signs the ledger's checkpoints) and `[console]`
//! (the auditors' read-only console).

use super::{Validator, read_secret_file};
use crate::audit::AuditKey;
use crate::config::ConsoleSettings;
use crate::config::raw::{RawAudit, RawConsole};
use crate::secret::Token;
use std::sync::Arc;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn audit(&mut self, raw: &RawAudit) -> Option<Arc<AuditKey>> {
        let file = raw.signing_key_file.as_ref()?;
        let path = self.secret_file_path(file.get_ref());
        match AuditKey::load(&path) {
            Ok(key) => Some(Arc::new(key)),
            Err(e) => {
                let message = format!("signing key {}: {e}", path.display());
                self.error("audit.signing_key_file", file, message);
                None
            }
        }
    }

    pub(super) fn console(&mut self, raw: Option<Spanned<RawConsole>>) -> Option<ConsoleSettings> {
        let raw = raw?;
        let at = raw.span();
        let raw = raw.into_inner();
        let token = match &raw.token_file {
            None => None,
            Some(file) => {
                let path = self.secret_file_path(file.get_ref());
                match read_secret_file(&path).map(|t| Token::new(&t)) {
                    Ok(t)
                        if t.expose().len() >= 16
                            && t.expose().bytes().all(|b| b.is_ascii_graphic()) =>
                    {
                        Some(t)
                    }
                    Ok(_) => {
                        self.error(
                            "console.token_file",
                            file,
                            "the token must be at least 16 printable ASCII characters, no spaces",
                        );
                        return None;
                    }
                    Err(e) => {
                        let message = format!("cannot read token file {}: {e}", path.display());
                        self.error("console.token_file", file, message);
                        return None;
                    }
                }
            }
        };
        let listen = match raw.listen.as_ref() {
            Some(l) => match l.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) if !addr.ip().is_loopback() && token.is_none() => {
                    self.error(
                        "console.listen",
                        l,
                        "listening beyond loopback needs console.token_file (browsers sign in with that token)",
                    );
                    return None;
                }
                Ok(addr) => addr,
                Err(_) => {
                    let message = format!(
                        "{:?} is not an address to listen on, such as \"127.0.0.1:9467\"",
                        l.get_ref()
                    );
                    self.error("console.listen", l, message);
                    return None;
                }
            },
            None => {
                self.r.push(
                    "console.listen",
                    Some(at.start),
                    "missing: where the console listens, such as \"127.0.0.1:9467\"",
                );
                return None;
            }
        };
        Some(ConsoleSettings { listen, token })
    }
}
