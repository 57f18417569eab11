//! invite-rotator: rotates WhatsApp group invite links through RyzeAPI on a
//! schedule and keeps an audit history of every code.
//!
//! The pieces, each owning one thing:
//! - [`config`]: the TOML file, parsed into validated values;
//! - [`ryzeapi`]: the RyzeAPI client; [`ratelimit`] paces it per token;
//! - [`store`]: the only SQL, the history database;
//! - [`rotation`]: the rotation workflow, top to bottom;
//! - [`engine`]: wires those into rotations of many groups at once, and
//!   settles what a crash left behind ([`owner`] tells whose a row is);
//! - [`hooks`]: tells webhooks and commands of each rotation (the only other
//!   HTTP client); [`metrics`]: `/metrics` and `/healthz`;
//! - [`health`]: whether a group is overdue or failing, for `status`;
//! - [`emulator`]: a RyzeAPI stand-in for trying configs and for tests;
//! - [`commands`]: what each CLI command does;
//! - [`failpoint`]: where the crash tests make the process fail.

pub mod backoff;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod emulator;
pub mod engine;
pub mod exit;
pub mod failpoint;
pub mod health;
pub mod hooks;
pub mod metrics;
pub mod owner;
pub mod ratelimit;
pub mod retention;
pub mod rotation;
pub mod ryzeapi;
pub mod schedule;
pub mod secret;
pub mod signals;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod timers;
pub mod whatsapp;
