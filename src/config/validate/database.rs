//! `[database]`: where the history lives, and how long its call log is kept.

use super::Validator;
use crate::config::document::SpannedStr;
use crate::config::{Purpose, defaults};
use std::path::PathBuf;
use std::time::Duration;

impl Validator<'_> {
    /// `database.path`: for [`Purpose::Run`], a place where the history can
    /// be written (checked without creating anything).
    pub(super) fn database_path(&mut self, value: Option<&SpannedStr>) -> PathBuf {
        let path = match value {
            Some(p) if p.get_ref().trim().is_empty() => {
                self.error("database.path", p, "must not be empty");
                return PathBuf::new();
            }
            Some(p) => PathBuf::from(p.get_ref()),
            None => PathBuf::from(defaults::DATABASE_PATH),
        };
        if self.purpose == Purpose::Run
            && let Err(why) = crate::store::preflight(&path)
        {
            let message = format!("{}: {why}", path.display());
            match value {
                Some(at) => self.error("database.path", at, message),
                // The default path: no line to point at.
                None => self.r.push(
                    "database.path",
                    None,
                    format!("{message} (the default; set database.path)"),
                ),
            }
        }
        path
    }

    /// `database.keep_calls`: a duration, or "forever".
    pub(super) fn keep_calls(&mut self, value: Option<&SpannedStr>) -> Option<Duration> {
        match value {
            Some(v) if v.get_ref().trim() == "forever" => None,
            Some(v) => {
                let keep = self.duration("database.keep_calls", Some(v), defaults::KEEP_CALLS);
                if keep < Duration::from_secs(86_400) {
                    self.error(
                        "database.keep_calls",
                        v,
                        "must be at least a day (\"1d\"), or \"forever\"",
                    );
                }
                Some(keep)
            }
            None => Some(defaults::KEEP_CALLS),
        }
    }
}
