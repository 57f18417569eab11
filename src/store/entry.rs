//! One ledger entry: the facts of a rotation as they were settled, in the
//! canonical encoding that the hash chain covers (docs/audit.md).
//!
//! The encoding is JSON with the keys in byte order, no whitespace, integers
//! as digits, strings escaped only where JSON requires (`"`, `\` and control
//! characters), UTF-8: what Python's `json.dumps(entry, sort_keys=True,
//! separators=(",", ":"), ensure_ascii=False)` writes, so that an auditor
//! reproduces every hash without this program.

use super::Rotation;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The `prev` of the first entry: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry. The fields are declared in byte order of their names, which
/// is the order serde writes them in: that is what makes the JSON canonical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// When the entry was appended.
    pub at: String,
    /// `attempts`: reset calls made.
    pub attempts: i64,
    /// `scheduled_for`: the due time served (none for manual and outside).
    pub due: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `finished_at`.
    pub finished: Option<String>,
    /// `group_name`.
    pub group: String,
    /// `instance`.
    pub instance: String,
    /// `group_jid`.
    pub jid: String,
    /// `new_invite_code`.
    pub new_code: Option<String>,
    /// `new_invite_link`.
    pub new_link: Option<String>,
    /// `old_invite_code`.
    pub old_code: Option<String>,
    /// The hash of the entry before (hex), [`GENESIS`] for the first.
    pub prev: String,
    /// `id` of the rotation.
    pub rotation: i64,
    /// The entry's number, from 1, without gaps.
    pub seq: i64,
    /// `started_at`.
    pub started: String,
    /// `status`.
    pub status: String,
    /// `trigger`.
    pub trigger: String,
}

/// Why a stored line is not a ledger entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Not JSON with exactly an entry's keys.
    #[error("not a ledger entry: {0}")]
    NotAnEntry(#[source] serde_json::Error),
    /// An entry, but not in the canonical encoding (re-encoded or edited).
    #[error("not in the canonical encoding")]
    NotCanonical,
}

/// The facts an entry records, by name, for reports: `(field, value)`, the
/// value as text (`null` when absent).
pub const FACTS: [&str; 14] = [
    "group", "jid", "instance", "trigger", "due", "started", "finished", "status", "attempts",
    "old_code", "new_code", "new_link", "error", "rotation",
];

impl Entry {
    /// The entry for a rotation's row as it now is.
    pub fn of(row: &Rotation, seq: i64, prev: &str, at: &str) -> Entry {
        Entry {
            at: at.to_owned(),
            attempts: row.attempts,
            due: row.scheduled_for.as_ref().map(|s| s.to_string()),
            error: row.error.clone(),
            finished: row.finished_at.as_ref().map(|s| s.to_string()),
            group: row.group_name.clone(),
            instance: row.instance.clone(),
            jid: row.group_jid.clone(),
            new_code: row.new_invite_code.clone(),
            new_link: row.new_invite_link.clone(),
            old_code: row.old_invite_code.clone(),
            prev: prev.to_owned(),
            rotation: row.id,
            seq,
            started: row.started_at.to_string(),
            status: row.status.as_str().to_owned(),
            trigger: row.trigger.as_str().to_owned(),
        }
    }

    /// The canonical line (no newline).
    pub fn line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Parses a stored line; `Err` says why it is not an entry, or not in
    /// the canonical encoding (a line re-encoded or edited by hand).
    pub fn parse(line: &str) -> Result<Entry, EntryError> {
        let entry: Entry = serde_json::from_str(line).map_err(EntryError::NotAnEntry)?;
        match entry.line() {
            Ok(canonical) if canonical == line => Ok(entry),
            _ => Err(EntryError::NotCanonical),
        }
    }

    /// One fact by name (see [`FACTS`]), as JSON text: a string quoted,
    /// `null` when absent.
    pub fn fact(&self, name: &str) -> String {
        let text = |v: &str| serde_json::Value::from(v).to_string();
        let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "null".to_owned(), text);
        match name {
            "group" => text(&self.group),
            "jid" => text(&self.jid),
            "instance" => text(&self.instance),
            "trigger" => text(&self.trigger),
            "due" => opt(&self.due),
            "started" => text(&self.started),
            "finished" => opt(&self.finished),
            "status" => text(&self.status),
            "attempts" => self.attempts.to_string(),
            "old_code" => opt(&self.old_code),
            "new_code" => opt(&self.new_code),
            "new_link" => opt(&self.new_link),
            "error" => opt(&self.error),
            "rotation" => self.rotation.to_string(),
            _ => String::new(),
        }
    }

    /// The first fact in which `self` and `other` differ (ignoring `seq`,
    /// `prev` and `at`), with both values.
    pub fn first_difference(&self, other: &Entry) -> Option<(&'static str, String, String)> {
        FACTS.iter().find_map(|&f| {
            let (a, b) = (self.fact(f), other.fact(f));
            (a != b).then_some((f, a, b))
        })
    }

    /// A digest of the facts alone (what the `rotations` row must still say).
    pub fn facts_digest(&self) -> [u8; 32] {
        Facts {
            rotation: self.rotation,
            group: &self.group,
            jid: &self.jid,
            instance: &self.instance,
            trigger: &self.trigger,
            due: self.due.as_deref(),
            started: &self.started,
            finished: self.finished.as_deref(),
            status: &self.status,
            attempts: self.attempts,
            old_code: self.old_code.as_deref(),
            new_code: self.new_code.as_deref(),
            new_link: self.new_link.as_deref(),
            error: self.error.as_deref(),
        }
        .digest()
    }
}

/// The facts of a rotation, borrowed: from an entry, or straight from a
/// row of `rotations` (without building an entry: `audit verify` digests a
/// million of them).
pub struct Facts<'a> {
    /// `id`.
    pub rotation: i64,
    /// `group_name`.
    pub group: &'a str,
    /// `group_jid`.
    pub jid: &'a str,
    /// `instance`.
    pub instance: &'a str,
    /// `trigger`.
    pub trigger: &'a str,
    /// `scheduled_for`.
    pub due: Option<&'a str>,
    /// `started_at`.
    pub started: &'a str,
    /// `finished_at`.
    pub finished: Option<&'a str>,
    /// `status`.
    pub status: &'a str,
    /// `attempts`.
    pub attempts: i64,
    /// `old_invite_code`.
    pub old_code: Option<&'a str>,
    /// `new_invite_code`.
    pub new_code: Option<&'a str>,
    /// `new_invite_link`.
    pub new_link: Option<&'a str>,
    /// `error`.
    pub error: Option<&'a str>,
}

impl<'a> Facts<'a> {
    /// The facts of a row as it now is.
    pub fn of(row: &'a Rotation) -> Facts<'a> {
        Facts {
            rotation: row.id,
            group: &row.group_name,
            jid: &row.group_jid,
            instance: &row.instance,
            trigger: row.trigger.as_str(),
            due: row.scheduled_for.as_deref(),
            started: &row.started_at,
            finished: row.finished_at.as_deref(),
            status: row.status.as_str(),
            attempts: row.attempts,
            old_code: row.old_invite_code.as_deref(),
            new_code: row.new_invite_code.as_deref(),
            new_link: row.new_invite_link.as_deref(),
            error: row.error.as_deref(),
        }
    }

    /// SHA-256 over every fact, each tagged and length-prefixed (`None`
    /// and `Some("")` differ), without allocating.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.rotation.to_le_bytes());
        h.update(self.attempts.to_le_bytes());
        for text in [
            self.group,
            self.jid,
            self.instance,
            self.trigger,
            self.started,
            self.status,
        ] {
            h.update([1]);
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        for text in [
            self.due,
            self.finished,
            self.old_code,
            self.new_code,
            self.new_link,
            self.error,
        ] {
            match text {
                None => h.update([0]),
                Some(t) => {
                    h.update([1]);
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t.as_bytes());
                }
            }
        }
        h.finalize().into()
    }
}

/// An entry borrowed from its line (a string is copied only when it holds
/// an escape): what `audit verify` reads a million of. The same fields, in
/// the same order, as [`Entry`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRef<'a> {
    #[serde(borrow)]
    at: Cow<'a, str>,
    attempts: i64,
    #[serde(borrow)]
    due: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow)]
    finished: Option<Cow<'a, str>>,
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    instance: Cow<'a, str>,
    #[serde(borrow)]
    jid: Cow<'a, str>,
    #[serde(borrow)]
    new_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    new_link: Option<Cow<'a, str>>,
    #[serde(borrow)]
    old_code: Option<Cow<'a, str>>,
    /// The hash of the entry before (hex).
    #[serde(borrow)]
    pub prev: Cow<'a, str>,
    /// `id` of the rotation.
    pub rotation: i64,
    /// The entry's number.
    pub seq: i64,
    #[serde(borrow)]
    started: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    trigger: Cow<'a, str>,
}

impl<'a> EntryRef<'a> {
    /// Parses `line` and checks that it is canonical, re-encoding it into a
    /// comparison rather than a copy.
    pub fn parse(line: &'a str) -> Result<EntryRef<'a>, EntryError> {
        let entry: EntryRef<'a> = serde_json::from_str(line).map_err(EntryError::NotAnEntry)?;
        let mut same = SameAs {
            rest: line.as_bytes(),
            same: true,
        };
        let written = serde_json::to_writer(&mut same, &entry);
        if written.is_err() || !same.same || !same.rest.is_empty() {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }

    /// Its facts.
    pub fn facts(&self) -> Facts<'_> {
        Facts {
            rotation: self.rotation,
            group: &self.group,
            jid: &self.jid,
            instance: &self.instance,
            trigger: &self.trigger,
            due: self.due.as_deref(),
            started: &self.started,
            finished: self.finished.as_deref(),
            status: &self.status,
            attempts: self.attempts,
            old_code: self.old_code.as_deref(),
            new_code: self.new_code.as_deref(),
            new_link: self.new_link.as_deref(),
            error: self.error.as_deref(),
        }
    }
}

/// A writer that only compares what is written with `rest`.
struct SameAs<'a> {
    rest: &'a [u8],
    same: bool,
}

impl std::io::Write for SameAs<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(rest) if self.same => self.rest = rest,
            _ => self.same = false,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `line` hashes to `stored` (lower-case hex), without allocating.
pub fn hashes_to(line: &str, stored: &str) -> bool {
    let mut hex = [0u8; 64];
    let digest = Sha256::digest(line.as_bytes());
    hex::encode_to_slice(digest, &mut hex).is_ok() && hex.as_slice() == stored.as_bytes()
}

/// The hash of a line: hex SHA-256 of its UTF-8 bytes.
pub fn hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            at: "2026-12-01T00:00:00.000Z".into(),
            attempts: 1,
            due: None,
            error: Some("quote \" back\\slash\nnew line \u{1} é".into()),
            finished: Some("2026-12-01T00:00:00.000Z".into()),
            group: "vip".into(),
            instance: "i1".into(),
            jid: "1203@g.us".into(),
            new_code: Some("B".into()),
            new_link: Some("https://chat.whatsapp.com/B".into()),
            old_code: Some("A".into()),
            prev: GENESIS.into(),
            rotation: 7,
            seq: 1,
            started: "2026-12-01T00:00:00.000Z".into(),
            status: "succeeded".into(),
            trigger: "manual".into(),
        }
    }

    #[test]
    fn keys_are_written_in_byte_order_and_parse_back() {
        let line = sample().line().unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(line.contains(r#""error":"quote \" back\\slash\nnew line \u0001 é""#));
        assert_eq!(Entry::parse(&line).unwrap(), sample());
    }

    #[test]
    fn the_borrowed_entry_reads_and_checks_as_the_owned_one() {
        let line = sample().line().unwrap();
        let borrowed = EntryRef::parse(&line).unwrap();
        assert_eq!(borrowed.facts().digest(), sample().facts_digest());
        assert!(hashes_to(&line, &hash(&line)));
        assert!(!hashes_to(&line, &hash("other")));
        for bad in [
            line.replace(",\"attempts\"", ", \"attempts\""),
            line.replace('}', ",\"extra\":1}"),
            format!("{line} "),
            line[..line.len() - 1].to_owned(),
        ] {
            assert!(EntryRef::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_not_canonical_is_refused() {
        let line = sample().line().unwrap();
        assert!(Entry::parse(&line.replace(",\"attempts\"", ", \"attempts\"")).is_err());
        assert!(Entry::parse(&line.replace('}', ",\"extra\":1}")).is_err());
        assert!(Entry::parse("[]").is_err());
    }

    #[test]
    fn the_first_difference_names_the_fact() {
        let (a, mut b) = (sample(), sample());
        b.new_code = Some("C".into());
        b.seq = 9;
        assert_eq!(
            a.first_difference(&b),
            Some(("new_code", "\"B\"".into(), "\"C\"".into()))
        );
        assert_ne!(a.facts_digest(), b.facts_digest());
        b.new_code = a.new_code.clone();
        assert_eq!(a.first_difference(&b), None);
        assert_eq!(a.facts_digest(), b.facts_digest());
    }
}
