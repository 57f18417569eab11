//! invite-rotator: rotates WhatsApp group invite links through RyzeAPI on a
//! schedule and keeps an audit history of every code.
//!
//! The modules, each owning one thing, from the bottom up: a module uses
//! only those named before it in this list (`tests/it/architecture.rs`
//! checks that, and fails on an import cycle; docs/design.md explains the
//! layers).
//! - [`whatsapp`]: JIDs and invite codes, parsed at the edge;
//! - [`secret`]: tokens and passwords, hidden from `Debug` and compared in
//!   constant time;
//! - [`clock`]: time as an input (the system's, or tokio's paused one);
//! - `owner`: which process a row belongs to; [`failpoint`]: where the crash
//!   tests make the process fail; `outfile`: files written 0600 through a
//!   rename; [`exit`]: the exit codes; [`memory`]: giving memory back;
//! - [`checkpoint`]: Ed25519 keys and the ledger's signed checkpoints;
//! - [`store`]: the history database, the only code that speaks SQL (with
//!   the ledger entries' canonical format and the database settings);
//! - [`schedule`]: a group's cron schedule and zone;
//! - [`config`]: the TOML file, read key by key into validated values,
//!   every problem reported at once;
//! - [`backoff`]: retry delays; [`timers`]: one timer per group;
//! - [`mask`]: masks tokens and known invite codes in outside text;
//! - [`ratelimit`]: the per-token request budget, shared through the store;
//! - [`ryzeapi`]: the RyzeAPI client (the only code that speaks HTTP to it);
//! - [`emulator`]: a RyzeAPI stand-in for trying configs and for tests;
//! - [`rotation`]: the rotation workflow, top to bottom, and settling one
//!   that was interrupted;
//! - [`listener`]: every listener's connection cap and timeouts; `health`:
//!   what `/healthz` judges; [`metrics`]: `/metrics` and `/healthz`;
//! - [`telemetry`]: logging (journal, terminal or JSON);
//! - [`daemon`]: the schedule loop, catch-up, reloads, the graceful stop;
//! - [`engine`]: rotations of many groups at once, and what a crash left;
//! - [`ha`]: several nodes on one PostgreSQL database, one active (lease
//!   and fencing); `systemd`: readiness and the watchdog; `signals`;
//! - [`hooks`]: webhooks and commands told of each rotation (the outbox);
//! - [`events`]: RyzeAPI's events, authenticated, kept in an inbox,
//!   confirmed through the API and acted on;
//! - [`join`]: join links that survive rotation, and their QR codes;
//! - [`audit`]: the tamper-evident ledger's checks, the signer, bundles;
//! - [`report`]: the history as a table, JSON Lines or CSV, and the times
//!   a reader types;
//! - [`console`]: the auditors' read-only website; `retention`: pruning;
//! - [`node`]: the running node (all of the above that runs), which `run`
//!   and `demo` wire and the tests start in process;
//! - [`cli`]: the command line; [`commands`]: what each command does;
//! - [`testing`] (`test-support` feature): a throwaway PostgreSQL.

#![warn(unreachable_pub)]

pub mod audit;
pub mod backoff;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub(crate) mod console;
pub mod daemon;
pub mod emulator;
pub mod engine;
pub mod events;
pub(crate) mod exit;
pub mod failpoint;
pub(crate) mod ha;
pub(crate) mod health;
pub mod hooks;
pub(crate) mod join;
pub mod listener;
pub mod mask;
pub mod memory;
pub(crate) mod metrics;
pub mod node;
pub(crate) mod outfile;
pub(crate) mod owner;
pub mod ratelimit;
pub(crate) mod report;
pub(crate) mod retention;
pub mod rotation;
pub mod ryzeapi;
pub mod schedule;
pub mod secret;
pub(crate) mod signals;
pub mod store;
pub(crate) mod systemd;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod timers;
pub mod whatsapp;
