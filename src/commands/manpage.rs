//! `manpage`: the man page (roff), from the CLI definition.

use super::{Failure, print_bytes};
use crate::cli::Cli;
use crate::exit::Exit;
use clap::CommandFactory;

pub fn run() -> Result<Exit, Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Failure::Runtime(format!("cannot render the man page: {e}")))?;
    print_bytes(title_first(&String::from_utf8_lossy(&page)).as_bytes())
}

/// The page with its `.TH` line first, as man(7) pages begin (and as tools
/// that sniff for a man page expect). clap_mangen puts roff's definition of
/// the apostrophe string (`.ie`/`.el ... Aq`) before it; that still comes
/// before any text that uses it.
fn title_first(page: &str) -> String {
    let lines: Vec<&str> = page.lines().collect();
    let Some(title) = lines.iter().position(|l| l.starts_with(".TH ")) else {
        return page.to_owned();
    };
    let mut out = String::with_capacity(page.len() + 1);
    for line in std::iter::once(lines[title])
        .chain(lines[..title].iter().copied())
        .chain(lines[title + 1..].iter().copied())
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_title_line_comes_first_and_nothing_is_lost() {
        let page = ".ie a\n.el b\n.TH x 1\n.SH NAME\n";
        assert_eq!(
            super::title_first(page),
            ".TH x 1\n.ie a\n.el b\n.SH NAME\n"
        );
    }
}
