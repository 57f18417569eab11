//! The `invite-rotator` binary: parse the command line, start logging, hand over
//! to the library.

use clap::Parser;
use invite_rotator::{cli::Cli, commands, memory, telemetry};
use std::process::ExitCode;

fn main() -> ExitCode {
    memory::limit_arenas();
    let cli = Cli::parse();
    telemetry::init(cli.log_format());
    // Test builds only: failpoints named in FAILPOINTS (see src/failpoint.rs).
    let _failpoints = invite_rotator::failpoint::setup();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let exit = runtime.block_on(commands::dispatch(cli));
    // Work still running now (a DNS lookup on a blocking thread) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    exit.into()
}
