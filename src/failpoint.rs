//! Failpoints: named places where a test can make the process fail, to prove
//! that the history survives a crash or a failed write at that exact step.
//!
//! Compiled only with the `failpoints` feature, which `cargo test` turns on
//! (the package is its own dev-dependency with it) and release builds never
//! have: there, [`fails`] is `false` and every point compiles to nothing.
//!
//! Points are set per process through the `FAILPOINTS` environment variable
//! of the [`fail`](https://docs.rs/fail) crate, such as
//! `FAILPOINTS='rotation::after_reset=return'`, or in-process with `fail::cfg`.
//!
//! | point | where |
//! |---|---|
//! | `rotation::after_begin` | the `pending` row is written, nothing sent |
//! | `rotation::before_reset` | the attempt is recorded, the reset not sent |
//! | `rotation::after_reset` | the reset returned; nothing recorded of it |
//! | `rotation::before_settle` | the outcome is known, not yet written |
//! | `store::settle::before_commit` | the outcome is written, not committed |
//! | `store::begin`, `store::settle` | these writes fail (disk full, read-only) |

/// A failpoint set to `return` here makes the process abort, as a crash or
/// a `kill -9` would, with whatever the database holds at this point.
pub fn crash(name: &str) {
    if fails(name) {
        tracing::error!(failpoint = name, "failpoint: aborting the process");
        std::process::abort();
    }
}

/// Whether the failpoint `name` is set to `return` (the caller then fails as
/// the real fault would make it fail).
#[cfg(feature = "failpoints")]
pub fn fails(name: &str) -> bool {
    fail::fail_point!(name, |_| true);
    false
}

/// Whether the failpoint `name` is set: never, in a build without failpoints.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn fails(_name: &str) -> bool {
    false
}

/// Reads `FAILPOINTS` from the environment; the points stay set while the
/// returned value lives. A no-op without the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn setup() -> impl Sized {
    fail::FailScenario::setup()
}

/// Reads `FAILPOINTS` from the environment: a no-op without the feature.
#[cfg(not(feature = "failpoints"))]
pub fn setup() -> impl Sized {}
