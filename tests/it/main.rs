//! The integration tests: one binary, one module per area, helpers in
//! [`common`] (`spawn_app`: an emulator on port 0, a fresh database, a config
//! pointing one at the other).

mod common;

mod architecture;
mod backends;
mod browser;
mod cdp;
mod checkpoints;
mod cli;
mod client;
mod completions_manpage_version;
mod config_errors;
mod console;
mod console_defences;
mod crash;
mod daemon;
mod disconnected;
mod disk_faults;
mod event_edges;
mod event_forgery;
mod event_properties;
mod events;
mod faults;
mod forged_holds;
mod join;
mod laundering;
mod ledger;
mod listeners;
mod masking;
mod nodes;
mod operations;
mod operator;
mod output_files;
mod pg;
mod pg_down;
mod process_defences;
mod properties;
mod rate_limit;
mod retention;
mod scale;
mod security;
mod status;
mod store;
mod systemd;
mod workflow;
