//! The house's rules, read off the source: which top-level module of `src/`
//! reaches which (every `crate::` path of production code: comments,
//! strings and `#[cfg(test)]` code left out), no cycle among them, only the
//! commands and `main.rs` reach `commands` and `cli`, and no file over 500
//! lines. `cargo test --test it architecture -- --nocapture` prints the
//! edges (docs/design.md explains the layers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn the_top_level_modules_form_no_cycle_and_only_the_commands_reach_the_cli() {
    let edges = edges();
    for (from, to) in &edges {
        let to: Vec<&str> = to.keys().map(String::as_str).collect();
        println!("{from} -> {}", to.join(", "));
    }
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "modules that import one another (each set a cycle): {}",
        cycles
            .iter()
            .map(|c| c.join(", "))
            .collect::<Vec<_>>()
            .join("; ")
    );
    for (from, to) in &edges {
        for upper in ["commands", "cli"] {
            if from != "commands" && from != "cli" && from != "main" {
                assert!(
                    !to.contains_key(upper),
                    "{from} imports {upper} (in {:?}): only the commands and main.rs may",
                    to[upper]
                );
            }
        }
    }
    // The store depends on nothing above it.
    let store: BTreeSet<&str> = edges["store"].keys().map(String::as_str).collect();
    let allowed = BTreeSet::from(["failpoint", "owner", "secret"]);
    assert!(
        store.is_subset(&allowed),
        "the store reaches {store:?}; only {allowed:?} lie below it"
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_the_reader_ignores_tests_and_comments() {
    // The checks above cannot pass by reading nothing.
    let mut knot = Edges::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        knot.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert("x.rs".into());
    }
    assert_eq!(cycles(&knot), vec![vec!["a", "b", "c"]]);
    let text = "use crate::{store::Store, config};\n// crate::cli\nlet s = \"crate::x\";\n\
                #[cfg(test)]\nmod tests { use crate::commands; }\nfn f() { crate::ha::run() }";
    assert_eq!(
        paths(text),
        BTreeSet::from(["config".to_owned(), "ha".to_owned(), "store".to_owned()])
    );
    let edges = edges();
    assert!(edges.len() > 20, "{} modules read", edges.len());
    assert!(edges["commands"].contains_key("store"));
}

#[test]
fn no_file_in_src_is_over_500_lines() {
    let long: Vec<String> = files(&src())
        .into_iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(&f).unwrap().lines().count();
            (lines > 500).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over 500 lines: {long:?}");
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every top-level module's edges, with the files that make each.
fn edges() -> Edges {
    let src = src();
    let all = files(&src);
    let tests = test_files(&all);
    let mut edges = Edges::new();
    for file in &all {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_owned();
        if top == "lib" {
            continue;
        }
        let from = edges.entry(top.clone()).or_default();
        if tests.iter().any(|t| file.starts_with(t)) {
            continue;
        }
        for to in paths(&std::fs::read_to_string(file).unwrap()) {
            if to != top {
                from.entry(to)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    edges
}

/// Files (and directories) that are `#[cfg(test)] mod name;` modules.
fn test_files(all: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for file in all {
        let text = std::fs::read_to_string(file).unwrap();
        let dir = file.parent().unwrap();
        let stem = file.file_stem().unwrap().to_string_lossy();
        let base = if ["mod", "lib", "main"].contains(&stem.as_ref()) {
            dir.to_owned()
        } else {
            dir.join(stem.as_ref())
        };
        let mut rest = text.as_str();
        while let Some(at) = rest.find("#[cfg(test)]") {
            rest = &rest[at + "#[cfg(test)]".len()..];
            let decl = rest.trim_start();
            let decl = decl.strip_prefix("pub(crate) ").unwrap_or(decl);
            let Some(decl) = decl.strip_prefix("mod ") else {
                continue;
            };
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                out.push(base.join(format!("{name}.rs")));
                out.push(base.join(&name));
            }
        }
    }
    out
}

/// The top-level modules named by `crate::` paths in `text`.
fn paths(text: &str) -> BTreeSet<String> {
    let code = without_tests(&without_comments_and_strings(text));
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let after = rest.trim_start();
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.extend(first_ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.extend(first_ident(&item));
        } else {
            out.extend(first_ident(after));
        }
    }
    out.remove("self");
    out
}

fn first_ident(text: &str) -> Option<String> {
    let id: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!id.is_empty()).then_some(id)
}

/// `text` without `//` and `/* */` comments and with string literals
/// emptied (raw strings included).
fn without_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if text[i..].starts_with("//") {
            i += text[i..].find('\n').unwrap_or(text.len() - i);
        } else if text[i..].starts_with("/*") {
            i += text[i..].find("*/").map_or(text.len() - i, |e| e + 2);
        } else if text[i..].starts_with("r#\"") || text[i..].starts_with("r\"") {
            let hashes = text[i + 1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let open = i + 2 + hashes;
            i = open
                + text[open..]
                    .find(&close)
                    .map_or(text.len() - open, |e| e + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\'', '\\'): skipped so that its quote
            // opens no string. Lifetimes ('a) do not match.
            let end = text[i + 2..].find('\'').map_or(b.len(), |e| i + 2 + e + 1);
            i = end;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `code` without the items under `#[cfg(test)]`.
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let body = rest.find(['{', ';']).unwrap_or(rest.len());
        if rest[body..].starts_with(';') {
            rest = &rest[body + 1..];
            continue;
        }
        let mut depth = 0;
        let mut end = rest.len();
        for (i, c) in rest[body..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = body + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The knots: each set of two or more modules that reach one another
/// (strongly connected components, by Tarjan's algorithm), sorted.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        knots: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.edges.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().rposition(|&x| x == v).unwrap();
                let mut knot: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if knot.len() > 1 {
                    knot.sort();
                    self.knots.push(knot);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        knots: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.knots.sort();
    walk.knots
}
