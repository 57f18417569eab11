//! `[metrics]` and `[[hook]]`.

use super::Validator;
use super::read_secret_file;
use crate::config::raw::{RawHook, RawMetrics};
use crate::config::{Group, Hook, HookAction, Purpose, defaults};
use crate::secret::Token;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn metrics(&mut self, raw: &RawMetrics) -> Option<SocketAddr> {
        let listen = raw.listen.as_ref()?;
        match listen.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let message = format!(
                    "{:?} is not an address to listen on, such as \"127.0.0.1:9464\"",
                    listen.get_ref()
                );
                self.error("metrics.listen", listen, message);
                None
            }
        }
    }

    pub(super) fn hooks(&mut self, raw: Vec<Spanned<RawHook>>, groups: &[Group]) -> Vec<Hook> {
        let names: HashSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, hook) in raw.into_iter().enumerate() {
            let at = hook.span();
            let hook = hook.into_inner();
            if let Some(h) = self.hook(i, &hook, &names) {
                if let Some(first) = seen.insert(h.key.clone(), i) {
                    self.r.push(
                        format!("hook[{i}]"),
                        Some(at.start),
                        format!("the same target as hook[{first}]"),
                    );
                }
                out.push(h);
            }
        }
        out
    }

    fn hook(&mut self, i: usize, raw: &RawHook, groups: &HashSet<&str>) -> Option<Hook> {
        let key = |k: &str| format!("hook[{i}].{k}");
        let kind = raw.kind.as_ref()?;
        let action = match kind.get_ref().as_str() {
            "webhook" => {
                if let Some(command) = &raw.command {
                    self.error(
                        key("command"),
                        command,
                        "a webhook has a url, not a command",
                    );
                }
                let Some(url) = &raw.url else {
                    self.error(key("url"), kind, "a webhook needs a url");
                    return None;
                };
                let url = self.web_url(&key("url"), url)?;
                let secret = match self.purpose {
                    Purpose::Run => self.hook_secret(i, raw),
                    Purpose::Read => None,
                };
                HookAction::Webhook { url, secret }
            }
            "command" => {
                if let Some(url) = &raw.url {
                    self.error(key("url"), url, "a command hook has a command, not a url");
                }
                let Some(command) = &raw.command else {
                    self.error(key("command"), kind, "a command hook needs a command");
                    return None;
                };
                if command
                    .get_ref()
                    .first()
                    .is_none_or(|c| c.trim().is_empty())
                {
                    self.error(
                        key("command"),
                        command,
                        "give the program and its arguments, such as [\"/usr/local/bin/publish-link\"]",
                    );
                    return None;
                }
                HookAction::Command {
                    argv: command.get_ref().clone(),
                }
            }
            other => {
                let message = format!("{other:?} is not a hook kind: \"webhook\" or \"command\"");
                self.error(key("kind"), kind, message);
                return None;
            }
        };
        let (mut on_success, mut on_failure, mut on_checkpoint) = (false, false, false);
        match &raw.on {
            None => on_success = true,
            Some(on) => {
                for event in on.get_ref() {
                    match event.as_str() {
                        "success" => on_success = true,
                        "failure" => on_failure = true,
                        "checkpoint" => on_checkpoint = true,
                        other => self.error(
                            key("on"),
                            on,
                            format!(
                                "{other:?} is not an event: \"success\", \"failure\" or \"checkpoint\""
                            ),
                        ),
                    }
                }
                if on.get_ref().is_empty() {
                    self.error(
                        key("on"),
                        on,
                        "name at least one of \"success\", \"failure\", \"checkpoint\"",
                    );
                }
            }
        }
        let only = raw.groups.as_ref().map(|list| {
            for g in list.get_ref() {
                if !groups.contains(g.as_str()) {
                    self.error(key("groups"), list, format!("no group is named {g:?}"));
                }
            }
            list.get_ref().clone()
        });
        let timeout = self.duration(
            &key("timeout"),
            raw.timeout.as_ref(),
            defaults::HOOK_TIMEOUT,
        );
        if timeout.is_zero()
            && let Some(at) = &raw.timeout
        {
            self.error(key("timeout"), at, "must be longer than 0s");
        }
        let target = match &action {
            HookAction::Webhook { url, .. } => format!("webhook\0{url}"),
            HookAction::Command { argv } => format!("command\0{}", argv.join("\0")),
        };
        let digest = Sha256::digest(target.as_bytes());
        let hook_key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let name = match &raw.name {
            Some(n) if !n.get_ref().trim().is_empty() => n.get_ref().trim().to_owned(),
            _ => format!("hook[{i}]"),
        };
        Some(Hook {
            name,
            key: hook_key,
            action,
            on_success,
            on_checkpoint,
            on_failure,
            groups: only,
            timeout,
        })
    }

    /// The signing secret of a webhook: `secret_env` or `secret_file`, or none.
    fn hook_secret(&mut self, i: usize, raw: &RawHook) -> Option<Token> {
        let (key, at, text) = match (&raw.secret_env, &raw.secret_file) {
            (None, None) => return None,
            (Some(_), Some(file)) => {
                self.error(
                    format!("hook[{i}].secret_file"),
                    file,
                    "set one of secret_env or secret_file",
                );
                return None;
            }
            (Some(var), None) => {
                let key = format!("hook[{i}].secret_env");
                match std::env::var(var.get_ref()) {
                    Ok(t) => (key, var, t),
                    Err(_) => {
                        let message =
                            format!("environment variable {:?} is not set", var.get_ref());
                        self.error(key, var, message);
                        return None;
                    }
                }
            }
            (None, Some(file)) => {
                let key = format!("hook[{i}].secret_file");
                let path = self.secret_file_path(file.get_ref());
                match read_secret_file(&path) {
                    Ok(t) => (key, file, t),
                    Err(e) => {
                        let message = format!("cannot read secret file {}: {e}", path.display());
                        self.error(key, file, message);
                        return None;
                    }
                }
            }
        };
        let secret = Token::new(&text);
        if secret.expose().is_empty() {
            self.error(key, at, "the secret is empty");
            return None;
        }
        Some(secret)
    }
}
