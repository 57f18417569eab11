//! Exponential backoff with full jitter: the n-th wait is uniform in
//! `[0, min(backoff_max, backoff_initial × 2^(n-1))]`, so that many rotations
//! failing together do not retry together.

use crate::config::RetryPolicy;
use std::time::Duration;

/// The ceiling of the wait after `failures` failures in a row (1-based).
pub fn ceiling(policy: &RetryPolicy, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    policy
        .backoff_initial
        .saturating_mul(factor)
        .min(policy.backoff_max)
}

/// A wait drawn uniformly below [`ceiling`].
pub fn full_jitter(policy: &RetryPolicy, failures: u32) -> Duration {
    ceiling(policy, failures).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_maximum_and_never_overflow() {
        let p = RetryPolicy {
            max_attempts: 5,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            read_back_delay: Duration::from_secs(30),
        };
        let got: Vec<u64> = (1..=9).map(|n| ceiling(&p, n).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(ceiling(&p, u32::MAX), Duration::from_secs(300));
        for n in 1..50 {
            assert!(full_jitter(&p, n) <= ceiling(&p, n));
        }
    }
}
