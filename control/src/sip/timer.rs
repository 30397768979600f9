//! Transaction timers (RFC 3261 §17 and Table 4, RFC 6026 §8.4 for L and M).
//!
//! Each state machine owns a [`TimerTable`]: one optional deadline per [`Timer`]. Nothing here
//! reads the clock; deadlines are computed from the `now` handed in by the caller.

use std::time::{Duration, Instant};

/// The RFC 3261 / RFC 6026 transaction timers, by their RFC names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Client INVITE request retransmit (UDP), doubles every time.
    A,
    /// Client INVITE timeout in Calling (64*T1).
    B,
    /// Client INVITE wait for response retransmits in Completed (32 s on UDP).
    D,
    /// Client non-INVITE request retransmit (UDP), doubles up to T2.
    E,
    /// Client non-INVITE timeout (64*T1).
    F,
    /// Server INVITE final response retransmit (UDP), doubles up to T2. Also paces the 2xx
    /// retransmissions this layer does in Accepted.
    G,
    /// Server INVITE wait for ACK in Completed (64*T1).
    H,
    /// Server INVITE wait for ACK retransmits in Confirmed (T4 on UDP).
    I,
    /// Server non-INVITE wait for request retransmits in Completed (64*T1 on UDP).
    J,
    /// Client non-INVITE wait for response retransmits in Completed (T4 on UDP).
    K,
    /// Server INVITE in Accepted: absorb INVITE retransmits, wait for the 2xx ACK (64*T1).
    L,
    /// Client INVITE in Accepted: pass up 2xx retransmits (64*T1).
    M,
}

const ALL: [Timer; 12] = [
    Timer::A,
    Timer::B,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::K,
    Timer::L,
    Timer::M,
];

/// T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE requests and INVITE
/// responses) and T4 (how long the network holds a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: timers B, F, H, J, L, M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D on an unreliable transport: at least 32 s.
    pub fn timer_d(&self) -> Duration {
        Duration::from_secs(32).max(self.t1x64())
    }
}

/// One deadline per timer.
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    slots: [Option<Instant>; 12],
}

fn idx(t: Timer) -> usize {
    ALL.iter().position(|&x| x == t).unwrap_or(0)
}

impl TimerTable {
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.slots[idx(t)] = Some(at);
    }

    pub fn stop(&mut self, t: Timer) {
        self.slots[idx(t)] = None;
    }

    pub fn stop_all(&mut self) {
        self.slots = [None; 12];
    }

    pub fn get(&self, t: Timer) -> Option<Instant> {
        self.slots[idx(t)]
    }

    /// The earliest deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// Takes the earliest timer whose deadline is at or before `now`.
    pub fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.filter(|&at| at <= now).map(|at| (i, at)))
            .min_by_key(|&(_, at)| at)?;
        self.slots[i] = None;
        Some(ALL[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_orders_expiry() {
        let t0 = epoch();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::B, t0 + Duration::from_secs(32));
        t.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(t.take_expired(t0), None);
        let late = t0 + Duration::from_secs(40);
        assert_eq!(t.take_expired(late), Some(Timer::A));
        assert_eq!(t.take_expired(late), Some(Timer::B));
        assert_eq!(t.take_expired(late), None);
        t.set(Timer::K, t0);
        t.stop(Timer::K);
        assert_eq!(t.next_timeout(), None);
        assert_eq!(TimerConfig::default().timer_d(), Duration::from_secs(32));
    }

    /// The test epoch: read once; everything after is virtual time.
    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }
}
