//! The audit trail made provable: a tamper-evident ledger of every settled
//! fact about a rotation, signed checkpoints of its head, and the checks
//! that `audit verify` runs on a database or an exported bundle.
//!
//! - [`entry`]: one ledger entry and its canonical encoding (the store
//!   appends entries in the same transaction as each settlement);
//! - [`checkpoint`]: Ed25519 keys and the signed checkpoints;
//! - `transition`: which restatements of a settled rotation the workflow
//!   makes (any other is tampering);
//! - [`verify`]: the chain, the checkpoints and the `rotations` table
//!   checked against each other, the first discrepancy named;
//! - [`bundle`]: `audit export` and the offline check of its file;
//! - [`signer`]: the daemon's checkpoints (after 100 entries or 5 minutes,
//!   and at stop), published to
//!   the log and the hooks.
//!
//! docs/audit.md describes the encoding for auditors, and
//! docs/verify-ledger.py checks a history without this program.

pub mod bundle;
pub use crate::checkpoint;
pub use crate::store::entry;
pub(crate) mod signer;
pub(crate) mod transition;
pub mod verify;

pub use checkpoint::{AuditKey, Checkpoint, CheckpointError, KeyError, PublicKey};
pub use entry::Entry;
pub use verify::{Discrepancy, Verified};
