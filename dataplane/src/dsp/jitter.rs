//! Adaptive jitter buffer, sans-IO.
//!
//! `put(seq, ts, payload, arrival_ms)` stores a packet; `get(now_ms)`, called
//! once per frame interval by the worker, plays out the next frame, reports
//! it lost (the caller conceals, see [`super::plc`]), or says playout has not
//! started. Time is a caller-supplied millisecond count; media time is the
//! RTP timestamp (8 kHz ticks), kept apart.
//!
//! Adaptation: each packet's transit `arrival - ts/8` is compared with the
//! running minimum transit (which slowly forgets, so a route change is
//! followed); a stochastic quantile tracker follows the 97th percentile of
//! the excess. The target playout delay is that quantile plus a 5 ms
//! margin. When the actual buffering drifts more than half a frame below the
//! target the buffer stretches (one concealed frame without advancing);
//! more than a frame and a half above, it drops one frame. A packet that
//! arrives after its slot was played counts as late and pushes the quantile
//! up at once.
//!
//! Storage is a fixed ring of slots allocated at construction.

/// What `get` hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout<'a> {
    /// Playout has not started (no packet yet, or still filling).
    Waiting,
    /// The frame for RTP time `ts`.
    Frame { ts: u32, payload: &'a [u8] },
    /// No packet for `ts`: conceal it.
    Lost { ts: u32 },
    /// The buffer is growing its delay: conceal one frame, `ts` is not consumed.
    Stretch { ts: u32 },
}

/// Why `put` refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The peer's packet came after its playout time.
    #[error("packet ts {ts} arrived after its playout time")]
    Late { ts: u32 },
    /// The peer sent a payload bigger than the configured slot size.
    #[error("payload of {len} bytes exceeds the {max}-byte slot")]
    TooLarge { len: usize, max: usize },
    /// The peer sent a timestamp too far ahead of playout for the ring.
    #[error("packet ts {ts} is beyond the buffer's span")]
    TooEarly { ts: u32 },
}

/// Buffer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP ticks per frame (160 = 20 ms at 8 kHz).
    pub frame_ticks: u32,
    /// Slots in the ring (frames of look-ahead).
    pub slots: usize,
    /// Largest payload stored.
    pub max_payload: usize,
    /// Lowest and highest target delay, ms.
    pub min_delay_ms: u32,
    pub max_delay_ms: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            frame_ticks: 160,
            slots: 32,
            max_payload: 320,
            min_delay_ms: 10,
            max_delay_ms: 300,
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    /// Frames with no packet at playout time.
    pub lost: u64,
    /// Packets that arrived after their playout (a subset of `lost` slots).
    pub late: u64,
    pub stretched: u64,
    pub dropped: u64,
    /// Sum over played frames of (playout time - arrival time), ms.
    pub buffered_ms_sum: f64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    ts: u32,
    len: usize,
    arrival: u64,
    full: bool,
}

/// The jitter buffer for one stream.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    slots: Vec<Slot>,
    data: Vec<u8>,
    started: bool,
    play_ts: u32,
    first: Option<(u32, u64)>,
    min_transit: f64,
    quantile: f64,
    last_adjust: u64,
    stats: JitterStats,
}

const QUANTILE: f64 = 0.97;

impl JitterBuffer {
    /// A buffer with `cfg` (all memory allocated here).
    pub fn new(cfg: JitterConfig) -> Self {
        let cfg = JitterConfig {
            slots: cfg.slots.max(2),
            frame_ticks: cfg.frame_ticks.max(1),
            ..cfg
        };
        JitterBuffer {
            slots: vec![
                Slot {
                    ts: 0,
                    len: 0,
                    arrival: 0,
                    full: false
                };
                cfg.slots
            ],
            data: vec![0; cfg.slots * cfg.max_payload],
            cfg,
            started: false,
            play_ts: 0,
            first: None,
            min_transit: f64::MAX,
            quantile: 0.0,
            last_adjust: 0,
            stats: JitterStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Current target delay above the minimum transit, ms.
    pub fn target_delay_ms(&self) -> f64 {
        (self.quantile + 5.0).clamp(
            f64::from(self.cfg.min_delay_ms),
            f64::from(self.cfg.max_delay_ms),
        )
    }

    fn frame_ms(&self) -> f64 {
        f64::from(self.cfg.frame_ticks) / 8.0
    }

    /// Store a packet. `seq` is accepted for the caller's bookkeeping; order
    /// is taken from `ts` (one frame per packet).
    pub fn put(
        &mut self,
        _seq: u16,
        ts: u32,
        payload: &[u8],
        arrival_ms: u64,
    ) -> Result<(), PutError> {
        if payload.len() > self.cfg.max_payload {
            return Err(PutError::TooLarge {
                len: payload.len(),
                max: self.cfg.max_payload,
            });
        }
        self.stats.received += 1;
        // Transit relative to the first packet (keeps numbers small).
        let (ts0, t0) = *self.first.get_or_insert((ts, arrival_ms));
        let media_ms = f64::from(ts.wrapping_sub(ts0) as i32) / 8.0;
        let transit = (arrival_ms as f64 - t0 as f64) - media_ms;
        if transit < self.min_transit {
            self.quantile = (self.quantile + transit - self.min_transit).max(0.0);
            self.min_transit = transit;
        } else {
            // Forget the minimum slowly (~1 ms per 5 s of packets at 50/s).
            self.min_transit += 0.004;
        }
        let excess = transit - self.min_transit;
        let step = 0.5;
        if excess > self.quantile {
            self.quantile += step * QUANTILE / (1.0 - QUANTILE) * 0.05;
        } else {
            self.quantile = (self.quantile - step * 0.05).max(0.0);
        }

        if self.started {
            let ahead = ts.wrapping_sub(self.play_ts) as i32;
            if ahead < 0 {
                self.stats.late += 1;
                // Late: raise the target to cover this excess straight away.
                self.quantile = self.quantile.max(excess);
                return Err(PutError::Late { ts });
            }
            if ahead as u64 >= u64::from(self.cfg.frame_ticks) * self.slots.len() as u64 {
                return Err(PutError::TooEarly { ts });
            }
        }
        let idx = (ts / self.cfg.frame_ticks) as usize % self.slots.len();
        self.slots[idx] = Slot {
            ts,
            len: payload.len(),
            arrival: arrival_ms,
            full: true,
        };
        let base = idx * self.cfg.max_payload;
        self.data[base..base + payload.len()].copy_from_slice(payload);
        Ok(())
    }

    /// Play out one frame at `now_ms` (call once per frame interval).
    pub fn get(&mut self, now_ms: u64) -> Playout<'_> {
        let Some((ts0, t0)) = self.first else {
            return Playout::Waiting;
        };
        if !self.started {
            // Start once the first packet has waited the target delay.
            if (now_ms as f64) < t0 as f64 + self.target_delay_ms() {
                return Playout::Waiting;
            }
            self.started = true;
            self.play_ts = ts0;
            self.last_adjust = now_ms;
        }
        // Current buffering of the frame due now, versus the target.
        let media_ms = f64::from(self.play_ts.wrapping_sub(ts0) as i32) / 8.0;
        let offset = now_ms as f64 - t0 as f64 - media_ms - self.min_transit;
        let target = self.target_delay_ms();
        let can_adjust = now_ms >= self.last_adjust + 100;
        if can_adjust && offset < target - self.frame_ms() / 2.0 {
            self.last_adjust = now_ms;
            self.stats.stretched += 1;
            return Playout::Stretch { ts: self.play_ts };
        }
        if can_adjust && offset > target + 1.5 * self.frame_ms() {
            // Drop the frame due now.
            self.last_adjust = now_ms;
            self.stats.dropped += 1;
            let idx = self.index(self.play_ts);
            self.slots[idx].full = false;
            self.play_ts = self.play_ts.wrapping_add(self.cfg.frame_ticks);
        }
        let ts = self.play_ts;
        self.play_ts = ts.wrapping_add(self.cfg.frame_ticks);
        let idx = self.index(ts);
        let slot = self.slots[idx];
        if slot.full && slot.ts == ts {
            self.slots[idx].full = false;
            self.stats.played += 1;
            self.stats.buffered_ms_sum += now_ms.saturating_sub(slot.arrival) as f64;
            let base = idx * self.cfg.max_payload;
            Playout::Frame {
                ts,
                payload: &self.data[base..base + slot.len],
            }
        } else {
            self.stats.lost += 1;
            Playout::Lost { ts }
        }
    }

    fn index(&self, ts: u32) -> usize {
        (ts / self.cfg.frame_ticks) as usize % self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_plays_every_frame() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(jb.get(0), Playout::Waiting);
        let mut played = Vec::new();
        for i in 0..50u32 {
            jb.put(i as u16, 1000 + i * 160, &[i as u8], u64::from(i) * 20)
                .unwrap();
            if let Playout::Frame { ts, payload } = jb.get(u64::from(i) * 20 + 10) {
                played.push((ts, payload[0]));
            }
        }
        assert!(played.len() >= 48, "{}", played.len());
        assert!(played.windows(2).all(|w| w[1].0 == w[0].0 + 160));
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn reordered_packets_are_put_back_in_order() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.put(0, 0, &[0], 0).unwrap();
        jb.put(2, 320, &[2], 1).unwrap();
        jb.put(1, 160, &[1], 2).unwrap();
        let mut got = Vec::new();
        for t in (20..200).step_by(20) {
            if let Playout::Frame { payload, .. } = jb.get(t) {
                got.push(payload[0]);
            }
        }
        assert_eq!(&got[..3], &[0, 1, 2]);
        assert_eq!(jb.put(9, 0, &[0], 300), Err(PutError::Late { ts: 0 }));
        assert!(matches!(
            jb.put(9, 0, &[0; 400], 300),
            Err(PutError::TooLarge { .. })
        ));
    }
}
