//! invite-rotator: rotates WhatsApp group invite links through RyzeAPI on a
//! schedule and keeps an audit history of every code.
//!
//! The pieces, each owning one thing:
//! - [`config`]: the TOML file, read key by key into validated values, every
//!   problem reported at once;
//! - [`ryzeapi`]: the RyzeAPI client (the only code that speaks HTTP to it);
//!   [`ratelimit`] paces it per token;
//! - [`store`]: the history database, the only code that speaks SQL;
//! - [`rotation`]: the rotation workflow, top to bottom (and settling one
//!   that was interrupted);
//! - [`engine`]: wires those into rotations of many groups at once, and
//!   settles what a crash left behind (`owner` tells whose a row is);
//! - [`daemon`]: the schedule loop over [`timers`] (one per group, each from
//!   its [`schedule`]), catch-up, reloads and the graceful stop;
//! - [`ha`]: more than one node on one PostgreSQL database: the lease that
//!   makes one of them active, and the fencing of its writes;
//! - [`events`]: RyzeAPI's events (a member removed, a link changed
//!   elsewhere, an instance gone offline): received, kept in an inbox and
//!   acted on;
//! - [`join`]: join links that survive rotation: stable URLs served by
//!   their own listener, leading to a group's live invite (QR codes too);
//! - [`audit`]: the tamper-evident ledger (entries chained by SHA-256,
//!   appended by the store with each settlement), signed checkpoints,
//!   `audit verify` and bundles; [`console`]: the auditors' read-only
//!   website over the history;
//! - [`hooks`]: tells webhooks and commands of each rotation; [`metrics`]:
//!   `/metrics` and `/healthz`, served like every listener by [`listener`]
//!   (connection cap, header timeouts, descriptors kept for rotations);
//!   `retention`: prunes the call log; [`mask`]: masks tokens and known
//!   invite codes in outside text before it is stored, logged or shown;
//! - [`emulator`]: a RyzeAPI stand-in for trying configs and for tests;
//! - [`commands`]: what each CLI command does ([`cli`] parses the line);
//!   [`telemetry`] sets up logging (journal, terminal or JSON);
//! - [`whatsapp`]: JIDs and invite codes, parsed at the edge;
//! - [`failpoint`]: where the crash tests make the process fail; `testing`
//!   (with the `test-support` feature): a throwaway PostgreSQL for the tests.

pub mod audit;
pub mod backoff;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod console;
pub mod daemon;
pub mod emulator;
pub mod engine;
pub mod events;
pub mod exit;
pub mod failpoint;
pub mod ha;
pub(crate) mod health;
pub mod hooks;
pub mod join;
pub mod listener;
pub mod mask;
pub mod memory;
pub mod metrics;
pub mod node;
pub(crate) mod outfile;
pub(crate) mod owner;
pub mod ratelimit;
pub mod report;
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
