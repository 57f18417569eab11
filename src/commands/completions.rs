//! `completions SHELL`: the shell completion script, from the CLI definition.

use super::{Failure, print_bytes};
use crate::cli::Cli;
use crate::exit::Exit;
use clap::CommandFactory;
use clap_complete::Shell;

pub(super) fn run(shell: Shell) -> Result<Exit, Failure> {
    // Rendered in memory first: clap_complete panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "invite-rotator", &mut script);
    print_bytes(&script)
}
