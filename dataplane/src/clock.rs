//! The dataplane's clock edge.
//!
//! Everything else in the dataplane (session, switch, timeouts) takes `now`
//! as a parameter so it can be driven with virtual time in tests. The workers
//! read the monotonic clock here, once per loop iteration (not per packet).

use std::time::Instant;

/// The monotonic clock the workers read.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl MonotonicClock {
    /// Current monotonic time.
    #[expect(
        clippy::disallowed_methods,
        reason = "the dataplane clock edge: workers read time here and pass it down"
    )]
    pub fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Shorthand for `MonotonicClock.now()` (workers, handle, and test epochs).
pub fn now() -> Instant {
    MonotonicClock.now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic() {
        let a = now();
        let b = MonotonicClock.now();
        assert!(b >= a);
    }
}
