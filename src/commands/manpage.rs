//! `manpage`: the man pages (roff), from the CLI definition: `invite-rotator(1)`
//! and one page per command (`invite-rotator-run(1)`, ...), each with the
//! sections a reader looks for (EXIT STATUS, FILES, ENVIRONMENT, SIGNALS),
//! so that every page the main one names exists.

use super::{Failure, print_bytes};
use crate::cli::Cli;
use crate::exit::Exit;
use clap::CommandFactory;
use clap_mangen::Man;
use roff::{Roff, bold, roman};
use std::path::Path;

/// The date on every page: the day the build's commit was made (see build.rs).
const DATE: &str = env!("INVITE_ROTATOR_DATE");

pub(super) fn run(dir: Option<&Path>) -> Result<Exit, Failure> {
    let pages =
        pages().map_err(|e| Failure::Runtime(format!("cannot render the man pages: {e}")))?;
    let Some(dir) = dir else {
        // The main page alone, for `man -l -`.
        return print_bytes(&pages[0].1);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", dir.display())))?;
    for (name, page) in &pages {
        let path = dir.join(name);
        // Pages are public (0644), and never written through a symlink.
        crate::outfile::write(&path, page, 0o644, crate::outfile::Replace::Yes)
            .map_err(|e| Failure::Runtime(e.to_string()))?;
        println!("{}", path.display());
    }
    Ok(Exit::Success)
}

/// Every page, the main one first, as `(file name, roff)`.
pub(super) fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut out = vec![render(&cli, None)?];
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(render(sub, Some(sub.get_name()))?);
    }
    Ok(out)
}

fn render(cmd: &clap::Command, command: Option<&str>) -> std::io::Result<(String, Vec<u8>)> {
    let man = Man::new(cmd.clone())
        .title(
            cmd.get_display_name()
                .unwrap_or(cmd.get_name())
                .to_uppercase(),
        )
        .date(DATE)
        .source(format!("invite-rotator {}", env!("CARGO_PKG_VERSION")))
        .manual("invite-rotator manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    sections(command).to_writer(&mut page)?;
    Ok((
        man.get_filename(),
        tidy(&String::from_utf8_lossy(&page)).into_bytes(),
    ))
}

/// What clap_mangen writes, made clean for `mandoc -T lint` and man(7): the
/// `.TH` line first and the apostrophe string defined once after it (each
/// section rendered apart repeats it), no blank lines or `.br` beside a
/// paragraph break, no trailing spaces, text lines wrapped at 80 bytes.
fn tidy(page: &str) -> String {
    const APOSTROPHE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];
    let page = page.replace("\n.br\n\n.br\n", "\n.sp\n");
    let mut out = String::with_capacity(page.len() + 64);
    let mut title = None;
    let mut body = Vec::new();
    for line in page.lines() {
        let line = line.trim_end();
        if APOSTROPHE.contains(&line) || line.is_empty() {
            continue;
        }
        if line.starts_with(".TH ") {
            title = Some(line.to_owned());
            continue;
        }
        body.push(line.to_owned());
    }
    for line in title
        .into_iter()
        .chain(APOSTROPHE.iter().map(|l| (*l).to_owned()))
    {
        out.push_str(&line);
        out.push('\n');
    }
    for line in body {
        if line.starts_with('.') || line.len() <= 80 {
            out.push_str(&line);
            out.push('\n');
            continue;
        }
        // Filled text: a line break is a space, so break at spaces.
        let mut current = String::new();
        for word in line.split(' ') {
            if !current.is_empty() && current.len() + 1 + word.len() > 80 {
                push_text(&mut out, &current);
                current.clear();
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        push_text(&mut out, &current);
    }
    out
}

/// A text line; one that would read as a request (`.`, `'`) is escaped.
fn push_text(out: &mut String, line: &str) {
    if line.starts_with(['.', '\'']) {
        out.push_str("\\&");
    }
    out.push_str(line);
    out.push('\n');
}

/// EXIT STATUS, FILES, ENVIRONMENT, SIGNALS and SEE ALSO of the page of
/// `command` (`None`: the main page).
fn sections(command: Option<&str>) -> Roff {
    let mut r = Roff::new();
    let items = |r: &mut Roff, title: &str, rows: &[(&str, &str)]| {
        if rows.is_empty() {
            return;
        }
        r.control("SH", [title]);
        for (term, text) in rows {
            r.control("TP", []);
            r.text([bold(*term)]);
            r.text([roman(*text)]);
        }
    };
    let exits: &[(&str, &str)] = match command {
        Some("run") => &[
            ("0", "Stopped cleanly after SIGTERM or SIGINT."),
            (
                "1",
                "A runtime error, such as another daemon on the same database.",
            ),
            (
                "78",
                "The configuration is invalid (EX_CONFIG): systemd does not restart on it.",
            ),
        ],
        Some("check") => &[
            ("0", "The configuration is valid."),
            (
                "78",
                "It is not; every problem is listed as FILE:LINE: KEY: message.",
            ),
        ],
        Some("rotate") => &[
            ("0", "Every rotation succeeded."),
            ("1", "A rotation failed, ended unknown, or was skipped."),
            (
                "2",
                "A usage error, such as a group the config does not name.",
            ),
            ("78", "The configuration is invalid."),
        ],
        Some("history") => &[
            ("0", "The history was printed."),
            ("66", "The database does not exist (EX_NOINPUT)."),
            ("78", "The configuration is invalid."),
        ],
        Some("status") => &[
            ("0", "Every group is healthy."),
            ("1", "A group is overdue or failing."),
            ("78", "The configuration is invalid."),
        ],
        Some("db") => &[
            (
                "0",
                "copy: the history was copied, every table's count checked.",
            ),
            (
                "1",
                "copy: it failed (the target already holds rotations, or a count differed); nothing was committed.",
            ),
            (
                "66",
                "copy: the SQLite history named by --from does not exist.",
            ),
            (
                "78",
                "The configuration names no PostgreSQL database (database.url), or is invalid.",
            ),
        ],
        Some("events") => &[
            (
                "0",
                "list: the events were printed (or there are none yet); register: every instance's webhook is registered.",
            ),
            (
                "1",
                "register: an instance could not be registered (each one's error is shown), or a runtime error.",
            ),
            (
                "66",
                "list: the history database does not exist (EX_NOINPUT).",
            ),
            ("78", "The configuration is invalid."),
        ],
        Some("join") => &[
            (
                "0",
                "create: the link was made and its URL printed; list: the links were printed; revoke: the link answers 410 from now on.",
            ),
            (
                "1",
                "create: a link of that name exists; revoke: no such link in use; or a runtime error.",
            ),
            (
                "2",
                "create: a usage error, such as a group the config does not name, or --qr png without --output.",
            ),
            (
                "78",
                "create: the configuration has no [join] (join.public_url); or it is invalid.",
            ),
        ],
        Some("audit") => &[
            (
                "0",
                "keygen: the key was written; verify: the history (or the bundle) is intact; export: the bundle was written.",
            ),
            (
                "1",
                "verify: a discrepancy, named on standard output; export: the history does not verify (nothing signed or written); keygen: the file exists; or a runtime error.",
            ),
            ("2", "A usage error, such as --bundle without --public-key."),
            (
                "66",
                "verify: the database, bundle, key or checkpoint file does not exist (EX_NOINPUT).",
            ),
            (
                "78",
                "export: the configuration has no [audit] signing_key_file; or it is invalid.",
            ),
        ],
        Some(_) => &[
            ("0", "Success."),
            ("1", "An error, described on standard error."),
        ],
        None => &[
            ("0", "Success."),
            ("1", "A rotation failed, or a runtime error."),
            ("2", "A usage error."),
            ("66", "A database named on the command line does not exist."),
            ("78", "The configuration is invalid."),
        ],
    };
    items(&mut r, "EXIT STATUS", exits);
    let reads_config = matches!(
        command,
        None | Some(
            "run" | "check" | "rotate" | "history" | "status" | "events" | "db" | "join" | "audit"
        )
    );
    if reads_config {
        items(
            &mut r,
            "FILES",
            &[
                (
                    "/etc/invite-rotator/config.toml",
                    "The configuration, unless --config or INVITE_ROTATOR_CONFIG names another.",
                ),
                (
                    "/var/lib/invite-rotator/history.db",
                    "The history database (database.path), 0600 in a 0700 directory; history.db.daemon.lock beside it keeps a second daemon off it.",
                ),
            ],
        );
        let mut env = vec![
            (
                "INVITE_ROTATOR_CONFIG",
                "The configuration file, when --config is not given.",
            ),
            (
                "RUST_LOG",
                "Which log lines are written: error, warn, info (the default), debug.",
            ),
            (
                "NO_COLOR",
                "When set, log lines have no colour even on a terminal.",
            ),
            (
                "INVITE_ROTATOR_LOG_CODES",
                "When 1, log lines show whole invite codes instead of fingerprints; for trials against the emulator only.",
            ),
        ];
        if matches!(command, None | Some("run")) {
            env.extend([
                ("JOURNAL_STREAM", "Set by systemd: log entries go to the journal, with structured fields such as GROUP."),
                ("NOTIFY_SOCKET", "Set by systemd: readiness, watchdog and stopping notifications."),
                ("CREDENTIALS_DIRECTORY", "Set by systemd: where a relative token_file or secret_file is read from."),
            ]);
        }
        items(&mut r, "ENVIRONMENT", &env);
    }
    let signals: &[(&str, &str)] = match command {
        None | Some("run") => &[
            (
                "SIGTERM, SIGINT",
                "Stop: no new rotation starts, those in flight get 8 seconds to finish, the rest are recorded; exit 0.",
            ),
            (
                "SIGHUP",
                "Reload the configuration; an invalid one is logged and the running one kept.",
            ),
        ],
        Some("rotate") => &[(
            "SIGTERM, SIGINT",
            "No new rotation starts; those in flight finish and are recorded. A second one aborts.",
        )],
        _ => &[],
    };
    items(&mut r, "SIGNALS", signals);
    r.control("SH", ["SEE ALSO"]);
    let see: Vec<String> = match command {
        Some(_) => vec!["invite-rotator(1)".into()],
        None => {
            let cli = Cli::command();
            cli.get_subcommands()
                .map(|s| format!("invite-rotator-{}(1)", s.get_name()))
                .collect()
        }
    };
    r.text([roman(see.join(", "))]);
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn there_is_a_page_for_the_program_and_for_each_command() {
        let pages = super::pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "invite-rotator.1");
        assert!(names.contains(&"invite-rotator-run.1"), "{names:?}");
        let run = String::from_utf8_lossy(
            &pages
                .iter()
                .find(|(n, _)| n == "invite-rotator-run.1")
                .unwrap()
                .1,
        )
        .into_owned();
        for section in ["EXIT STATUS", "FILES", "ENVIRONMENT", "SIGNALS"] {
            assert!(
                run.contains(&format!(".SH \"{section}\""))
                    || run.contains(&format!(".SH {section}")),
                "{section}:\n{run}"
            );
        }
    }
}
