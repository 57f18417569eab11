//! The TOML file read key by key, so that every problem in it is found in one
//! pass: syntax errors, unknown keys (with the known key they were probably
//! meant to be), values of the wrong type, missing keys. Each becomes an
//! [`Invalid`] naming its line and its key as a path (`group[3].instance`).
//!
//! No value is ever quoted here: a type error says "a string, not an
//! integer", never the integer, which may be a token written unquoted.

use super::Invalid;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A string value together with where it stands in the file.
pub(super) type SpannedStr = Spanned<String>;

/// Collects the problems met while reading one file.
pub(super) struct Reader<'t> {
    text: &'t str,
    path: &'t Path,
    /// Every problem so far, in the order met.
    pub errors: Vec<Invalid>,
}

/// One table of the document, and the keys asked of it so far (whatever is
/// left over at [`Reader::finish`] is unknown).
pub(super) struct Table<'a> {
    /// Its key as a path: `""` for the document itself, `api`, `group[3]`.
    path: String,
    entries: Option<&'a DeTable<'a>>,
    /// Where the table starts, for "missing" errors.
    at: Range<usize>,
    asked: Vec<&'static str>,
}

impl<'a> Table<'a> {
    /// The path of `name` in this table.
    pub(super) fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Where the table starts: the span of its header (or first key).
    pub(super) fn span(&self) -> Range<usize> {
        self.at.clone()
    }

    /// Whether the file sets `name` here, whatever its type.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.entries.is_some_and(|e| e.contains_key(name))
    }

    fn get(&mut self, name: &'static str) -> Option<&'a Spanned<DeValue<'a>>> {
        self.asked.push(name);
        self.entries?.get(name)
    }
}

/// What kind of value this is, for messages ("an integer").
fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a number with a fraction",
        DeValue::Boolean(_) => "true or false",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl<'t> Reader<'t> {
    /// A reader of `text`, the file at `path`.
    pub(super) fn new(text: &'t str, path: &'t Path) -> Self {
        Reader {
            text,
            path,
            errors: Vec::new(),
        }
    }

    /// Records a problem at byte `offset` (its line), or of the whole file.
    pub(super) fn push(
        &mut self,
        key: impl Into<String>,
        offset: Option<usize>,
        message: impl Into<String>,
    ) {
        self.errors.push(Invalid {
            path: self.path.to_owned(),
            line: offset.map(|o| line_of(self.text, o)),
            key: key.into(),
            message: message.into(),
        });
    }

    /// The document's top-level table.
    pub(super) fn root<'a>(&self, doc: &'a Spanned<DeTable<'a>>) -> Table<'a> {
        Table {
            path: String::new(),
            entries: Some(doc.get_ref()),
            at: doc.span(),
            asked: Vec::new(),
        }
    }

    fn wrong_type(&mut self, t: &Table<'_>, name: &str, at: &Spanned<DeValue<'_>>, wanted: &str) {
        let message = format!("must be {wanted}, not {}", kind(at.get_ref()));
        self.push(t.key(name), Some(at.span().start), message);
    }

    /// A string value, if set; a value of another type is reported.
    pub(super) fn string<'a>(
        &mut self,
        t: &mut Table<'a>,
        name: &'static str,
    ) -> Option<SpannedStr> {
        let value = t.get(name)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Spanned::new(value.span(), s.to_string())),
            _ => {
                self.wrong_type(t, name, value, "a string in quotes");
                None
            }
        }
    }

    /// A whole number, if set.
    pub(super) fn integer<'a>(
        &mut self,
        t: &mut Table<'a>,
        name: &'static str,
    ) -> Option<Spanned<i64>> {
        let value = t.get(name)?;
        match value.get_ref() {
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                match i64::from_str_radix(&digits, i.radix()) {
                    Ok(n) => Some(Spanned::new(value.span(), n)),
                    Err(_) => {
                        self.push(
                            t.key(name),
                            Some(value.span().start),
                            "is too large a number",
                        );
                        None
                    }
                }
            }
            _ => {
                self.wrong_type(t, name, value, "a whole number");
                None
            }
        }
    }

    /// `true` or `false`, if set.
    pub(super) fn boolean<'a>(&mut self, t: &mut Table<'a>, name: &'static str) -> Option<bool> {
        let value = t.get(name)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(t, name, value, "true or false");
                None
            }
        }
    }

    /// A list of strings, if set.
    pub(super) fn strings<'a>(
        &mut self,
        t: &mut Table<'a>,
        name: &'static str,
    ) -> Option<Spanned<Vec<String>>> {
        let value = t.get(name)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(t, name, value, "a list of strings, such as [\"a\", \"b\"]");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                other => {
                    let message = format!("must be a string in quotes, not {}", kind(other));
                    self.push(
                        format!("{}[{i}]", t.key(name)),
                        Some(item.span().start),
                        message,
                    );
                    return None;
                }
            }
        }
        Some(Spanned::new(value.span(), out))
    }

    /// The table `[name]` (empty if the file has none).
    pub(super) fn table<'a>(&mut self, t: &mut Table<'a>, name: &'static str) -> Table<'a> {
        let path = t.key(name);
        let value = t.get(name);
        let entries = match value.map(Spanned::get_ref) {
            None => None,
            Some(DeValue::Table(entries)) => Some(entries),
            Some(_) => {
                if let Some(v) = value {
                    self.wrong_type(t, name, v, &format!("a table ([{name}])"));
                }
                None
            }
        };
        Table {
            path,
            entries,
            at: value.map_or(t.at.clone(), Spanned::span),
            asked: Vec::new(),
        }
    }

    /// The array of tables `[[name]]`, each named `name[i]`.
    pub(super) fn tables<'a>(&mut self, t: &mut Table<'a>, name: &'static str) -> Vec<Table<'a>> {
        let Some(value) = t.get(name) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(t, name, value, &format!("a list of tables ([[{name}]])"));
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", t.key(name));
            match item.get_ref() {
                DeValue::Table(entries) => out.push(Table {
                    path,
                    entries: Some(entries),
                    at: item.span(),
                    asked: Vec::new(),
                }),
                other => {
                    let message = format!("must be a table ([[{name}]]), not {}", kind(other));
                    self.push(path, Some(item.span().start), message);
                }
            }
        }
        out
    }

    /// Reports `value` missing from `t` when the file does not set it (a value
    /// of the wrong type was reported already).
    pub(super) fn required<T>(
        &mut self,
        t: &Table<'_>,
        name: &str,
        value: Option<T>,
        what: &str,
    ) -> Option<T> {
        let absent = t.entries.is_none_or(|e| e.get(name).is_none());
        if value.is_none() && absent {
            let message = format!("missing: every [[{}]] needs {what}", base_name(&t.path));
            self.push(t.key(name), Some(t.at.start), message);
        }
        value
    }

    /// Reports every key of `t` that was never asked for, naming the known
    /// key it was probably meant to be.
    pub(super) fn finish(&mut self, t: Table<'_>) {
        let Some(entries) = t.entries else { return };
        for (key, value) in entries.iter() {
            let name: &str = key.get_ref();
            if t.asked.contains(&name) {
                continue;
            }
            let what = if matches!(value.get_ref(), DeValue::Table(_)) {
                "unknown table"
            } else {
                "unknown key"
            };
            let message = match closest(name, &t.asked) {
                Some(known) => format!("{what}; did you mean {known:?}?"),
                None if t.asked.is_empty() => what.to_owned(),
                None => format!("{what}; known keys here: {}", t.asked.join(", ")),
            };
            self.push(t.key(name), Some(key.span().start), message);
        }
    }
}

/// `group` of `group[3]`.
fn base_name(path: &str) -> &str {
    path.split('[').next().unwrap_or(path)
}

/// The known key within two edits of `name`, if one is.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, for short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Every syntax error of `text`, each with its line and, where the line has
/// one, its key as a path. toml's own rendering quotes the source line (which
/// may hold an inline token), so only its message is used, and a message
/// about a line that mentions a token loses any quoted value.
pub(super) fn syntax_errors(errors: &[toml::de::Error], text: &str, path: &Path) -> Vec<Invalid> {
    errors
        .iter()
        .map(|e| {
            let message = e.message().trim_end().replace('\n', "; ");
            let Some(span) = e.span() else {
                return Invalid {
                    path: path.to_owned(),
                    line: None,
                    key: "syntax".into(),
                    message,
                };
            };
            let line = line_of(text, span.start);
            let key = key_path_at(text, line);
            let about_token = key.as_deref().is_some_and(|k| k.ends_with("token"))
                || text.get(span).is_some_and(|s| s.contains("token"));
            Invalid {
                path: path.to_owned(),
                line: Some(line),
                key: key.unwrap_or_else(|| "syntax".into()),
                message: if about_token {
                    without_value(&message)
                } else {
                    message
                },
            }
        })
        .collect()
}

/// The key on 1-based `line` of `text` as a path (`group[2].name`), found by
/// the table headers above it; `None` if the line has no plain `key =`.
fn key_path_at(text: &str, line: usize) -> Option<String> {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut table = String::new();
    for l in text.lines().take(line.saturating_sub(1)) {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_owned();
        }
    }
    let source = text.lines().nth(line - 1)?.trim();
    if let Some(header) = source.strip_prefix('[') {
        // A table header: named by the table.
        let name = header.trim_start_matches('[').split(']').next()?.trim();
        return (!name.is_empty()).then(|| name.to_owned());
    }
    let key = source.split_once('=')?.0.trim();
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.\"'".contains(c));
    if !plain {
        return None;
    }
    let key = key.trim_matches(['"', '\'']);
    Some(if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    })
}

/// A parser message without the value it may quote: "invalid type: integer
/// `123`, expected a string" becomes "invalid type: integer, expected a string".
fn without_value(message: &str) -> String {
    match message.find("expected") {
        Some(at) => {
            let head = message[..at].split(['`', '"']).next().unwrap_or_default();
            match head.trim_end_matches([',', ' ', '\n', ';']) {
                "" => message[at..].to_owned(),
                head => format!("{head}, {}", &message[at..]),
            }
        }
        None => "invalid value (not shown: it may be a token)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_is_matched_to_the_known_one() {
        assert_eq!(closest("databse", &["api", "database"]), Some("database"));
        assert_eq!(closest("schedul", &["name", "schedule"]), Some("schedule"));
        assert_eq!(closest("zzz", &["name", "schedule"]), None);
    }

    #[test]
    fn a_line_is_named_by_its_key_under_its_table_header() {
        let text = "[api]\nx = 1\n[[group]]\nname = 1\n[[group]]\nname = 2\n";
        assert_eq!(key_path_at(text, 2).as_deref(), Some("api.x"));
        assert_eq!(key_path_at(text, 6).as_deref(), Some("group[1].name"));
        assert_eq!(key_path_at(text, 1).as_deref(), Some("api"));
        assert_eq!(key_path_at("[[group]\nx", 1).as_deref(), Some("group"));
        assert_eq!(key_path_at("= 1\n", 1), None);
    }
}
