//! `[events]`, and each group's `rotate_on` and `event_delay`.

use super::{Validator, read_secret_file};
use crate::config::raw::RawEvents;
use crate::config::{EventRules, EventsSettings, Purpose, defaults};
use crate::secret::Token;

use toml::Spanned;

impl Validator<'_> {
    pub(super) fn events(&mut self, raw: Option<Spanned<RawEvents>>) -> Option<EventsSettings> {
        let raw = raw?;
        let at = raw.span();
        let raw = raw.into_inner();
        let listen = raw.listen.as_ref().and_then(|l| {
            let parsed = l.get_ref().parse().ok();
            if parsed.is_none() {
                let message = format!(
                    "{:?} is not an address to listen on, such as \"127.0.0.1:9465\"",
                    l.get_ref()
                );
                self.error("events.listen", l, message);
            }
            parsed
        });
        let public_url = raw.public_url.as_ref().and_then(|u| {
            let url = self.web_url("events.public_url", u)?;
            // The path is served as a route: no segment a router reads as a
            // parameter or a wildcard, no query.
            let odd = url.path_segments().into_iter().flatten().any(|s| {
                s.starts_with(':') || s.starts_with('*') || s.contains(['{', '}'])
            });
            if odd || url.query().is_some() || url.fragment().is_some() {
                self.error(
                    "events.public_url",
                    u,
                    "its path is served as it is: no query, no fragment, and no segment starting with ':' or '*' or holding '{' or '}'",
                );
                return None;
            }
            Some(url)
        });
        let websocket = raw.websocket.unwrap_or(false);
        if raw.listen.is_none() && !websocket {
            self.r.push(
                "events",
                Some(at.start),
                "set listen and public_url (RyzeAPI posts to us), or websocket = true (we connect out)",
            );
        }
        if raw.public_url.is_some() && raw.listen.is_none() {
            self.r.push(
                "events.listen",
                Some(at.start),
                "missing: public_url is served by this daemon's receiver, which listens on listen (such as \"127.0.0.1:9465\", behind a TLS proxy)",
            );
        }
        if raw.listen.is_some() && raw.public_url.is_none() {
            self.r.push(
                "events.public_url",
                Some(at.start),
                "missing: with listen, RyzeAPI must be told where to post (https://.../path)",
            );
        }
        let secret = match self.purpose {
            Purpose::Run => self.events_secret(&raw, at.start),
            Purpose::Read => None,
        };
        let keep = match raw.keep.as_ref() {
            Some(k) if k.get_ref().trim() == "forever" => None,
            Some(k) => {
                let keep = self.duration("events.keep", Some(k), defaults::EVENTS_KEEP);
                // Repeats are told apart for a day: the events must outlive that.
                if keep < std::time::Duration::from_secs(86_400) {
                    self.error("events.keep", k, "must be at least 1d (or \"forever\")");
                }
                Some(keep)
            }
            None => Some(defaults::EVENTS_KEEP),
        };
        let max_rotations_per_hour = self.positive(
            "events.max_rotations_per_hour",
            raw.max_rotations_per_hour.as_ref(),
            defaults::MAX_EVENT_ROTATIONS_PER_HOUR,
        );
        if let Some(value) = raw.max_rotations_per_hour.as_ref()
            && max_rotations_per_hour > defaults::MAX_EVENT_ROTATIONS_PER_HOUR_CAP
        {
            let message = format!(
                "must be at most {} (one a minute), got {max_rotations_per_hour}",
                defaults::MAX_EVENT_ROTATIONS_PER_HOUR_CAP
            );
            self.error("events.max_rotations_per_hour", value, message);
        }
        Some(EventsSettings {
            listen,
            public_url,
            secret,
            websocket,
            keep,
            max_rotations_per_hour,
        })
    }

    /// The webhook's secret: from `authorization_env` or `authorization_file`,
    /// required with `listen`, at least 16 visible characters.
    fn events_secret(&mut self, raw: &RawEvents, at: usize) -> Option<Token> {
        let (key, value, text) = match (&raw.authorization_env, &raw.authorization_file) {
            (None, None) => {
                if raw.listen.is_some() {
                    self.r.push(
                        "events.authorization_env",
                        Some(at),
                        "missing: with listen, set authorization_env or authorization_file (the secret RyzeAPI sends as Bearer)",
                    );
                }
                return None;
            }
            (Some(_), Some(file)) => {
                self.error(
                    "events.authorization_file",
                    file,
                    "set one of authorization_env or authorization_file",
                );
                return None;
            }
            (Some(var), None) => match std::env::var(var.get_ref()) {
                Ok(t) => ("events.authorization_env", var, t),
                Err(_) => {
                    let message = format!("environment variable {:?} is not set", var.get_ref());
                    self.error("events.authorization_env", var, message);
                    return None;
                }
            },
            (None, Some(file)) => {
                let path = self.secret_file_path(file.get_ref());
                match read_secret_file(&path) {
                    Ok(t) => ("events.authorization_file", file, t),
                    Err(e) => {
                        let message = format!("cannot read secret file {}: {e}", path.display());
                        self.error("events.authorization_file", file, message);
                        return None;
                    }
                }
            }
        };
        let secret = Token::new(&text);
        let usable = secret.expose().len() >= defaults::MIN_EVENTS_SECRET
            && secret.expose().bytes().all(|b| b.is_ascii_graphic());
        if !usable {
            self.error(
                key,
                value,
                format!(
                    "the secret must be at least {} visible ASCII characters (it is never shown)",
                    defaults::MIN_EVENTS_SECRET
                ),
            );
            return None;
        }
        Some(secret)
    }

    /// `rotate_on` and `event_delay` of `table` (a group, or `[defaults]`),
    /// over `inherited`.
    pub(super) fn event_rules(
        &mut self,
        table: &str,
        rotate_on: Option<&Spanned<Vec<String>>>,
        delay: Option<&Spanned<String>>,
        inherited: EventRules,
    ) -> EventRules {
        let mut rules = inherited;
        if let Some(on) = rotate_on {
            rules.on_removed = false;
            rules.on_left = false;
            for what in on.get_ref() {
                match what.as_str() {
                    "member_removed" => rules.on_removed = true,
                    "member_left" => rules.on_left = true,
                    other => self.error(
                        format!("{table}.rotate_on"),
                        on,
                        format!("{other:?} is not an event to rotate on: \"member_removed\" or \"member_left\""),
                    ),
                }
            }
        }
        if let Some(d) = delay {
            let key = format!("{table}.event_delay");
            rules.delay = self.duration(&key, Some(d), defaults::EVENT_DELAY);
            if rules.delay > defaults::EVENT_DELAY_CAP {
                self.error(
                    key,
                    d,
                    "must be at most 5m (no event rotation waits longer)",
                );
                rules.delay = defaults::EVENT_DELAY_CAP;
            }
        }
        rules
    }
}
