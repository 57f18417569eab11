//! The emulator's faults: what a test or a soak makes a call meet, and how
//! each turns the reply.

use super::state::{Body, Reply, Route, error};
use std::time::Duration;

/// A fault for one call. "AfterReset" faults apply the reset (for `Reset`)
/// before failing, which is what makes an outcome truly unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 without doing anything.
    ServerError,
    /// The reset takes effect, then 500.
    ServerErrorAfterReset,
    /// No reply for this long (past the client's timeout), nothing done.
    Stall(Duration),
    /// The reset takes effect, then no reply for this long.
    StallAfterReset(Duration),
    /// The connection is cut before a complete reply, nothing done.
    Drop,
    /// The reset takes effect, then the connection is cut.
    DropAfterReset,
    /// A 200 whose body is an HTML page, nothing done.
    HtmlBody,
    /// The reset takes effect, then a 200 with an HTML page.
    HtmlBodyAfterReset,
    /// A 429 from WhatsApp's own throttling: no rate-limit headers explain it.
    Throttled,
    /// No reply for this long, and the reset takes effect only then, even if
    /// the client has given up: a reset that lands late.
    LateReset(Duration),
    /// A gateway answers 504 at once while the backend applies the reset
    /// this long after: a 5xx whose reset lands late.
    GatewayErrorThenReset(Duration),
    /// The same with a gateway's 503 (not the instance's own "not connected").
    UnavailableThenReset(Duration),
}

impl Fault {
    pub(super) fn resets(self) -> bool {
        matches!(
            self,
            Fault::ServerErrorAfterReset
                | Fault::StallAfterReset(_)
                | Fault::DropAfterReset
                | Fault::HtmlBodyAfterReset
        )
    }
}

/// Turns the reply into the fault's. The reset (if the fault lets it happen)
/// was applied before this.
/// A fault drawn at random among those that can strike `route`. Of the late
/// resets, only the 5xx whose reset lands a quarter of a stall later: within
/// the client's timeout (stalls run past it), which is as long as the
/// workflow waits before reading back.
pub(super) fn random_fault(route: Route, stall: Duration) -> Fault {
    let reset = [
        Fault::GatewayErrorThenReset(stall / 4),
        Fault::UnavailableThenReset(stall / 4),
        Fault::ServerError,
        Fault::ServerErrorAfterReset,
        Fault::Stall(stall),
        Fault::StallAfterReset(stall),
        Fault::Drop,
        Fault::DropAfterReset,
        Fault::HtmlBody,
        Fault::HtmlBodyAfterReset,
        Fault::Throttled,
    ];
    let info = [
        Fault::ServerError,
        Fault::Stall(stall),
        Fault::Drop,
        Fault::HtmlBody,
        Fault::Throttled,
    ];
    let pool: &[Fault] = match route {
        Route::Reset => &reset,
        // The other routes meet a read's faults.
        _ => &info,
    };
    pool[fastrand::usize(..pool.len())]
}

pub(super) fn apply_fault(reply: &mut Reply, fault: Fault) {
    match fault {
        Fault::ServerError | Fault::ServerErrorAfterReset => {
            *reply = error(500, "whatsmeow: internal error")
        }
        Fault::Stall(d) | Fault::StallAfterReset(d) => reply.stall = d,
        Fault::Drop | Fault::DropAfterReset => {
            reply.status = 200;
            reply.body = Body::Cut;
        }
        Fault::HtmlBody | Fault::HtmlBodyAfterReset => {
            reply.status = 200;
            reply.body = Body::Html;
        }
        Fault::Throttled => {
            *reply = error(429, "WhatsApp rate-overlimit");
            reply.omit_rate = true;
        }
        Fault::LateReset(d) => {
            reply.stall = d;
            reply.reset_after = d;
        }
        Fault::GatewayErrorThenReset(d) | Fault::UnavailableThenReset(d) => reply.reset_after = d,
    }
}
