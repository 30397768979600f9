//! DTMF: detection to ITU-T Q.24, generation, and RFC 4733 telephone-events.
//!
//! Detection works on blocks of [`BLOCK`] samples (12.75 ms). Each block is
//! correlated against the eight DTMF frequencies (a DFT at those bins by
//! table: 16 multiply-adds per sample, no dependency chain, compiled for
//! AVX-512 or AVX2 and picked at runtime, see [`super::simd`]; blocks too
//! quiet to hold a tone skip it), then checked for signal level, twist, peak dominance within
//! each group and the share of block energy the two tones carry. A block that
//! passes is confirmed by a frequency-discrimination step (the tone must be
//! closer to the nominal frequency than to probes ±5 % away, on a window
//! whose resolution scales with frequency) which rejects tones more than
//! ~2.5 % off and much speech. A digit starts after two consecutive passing
//! blocks (so ~25 ms minimum) and ends after two failing ones (so a 40 ms
//! pause always separates digits while short drop-outs do not).
//!
//! The RFC 4733 part is a `Packet`/`Repr` pair for the 4-byte payload and an
//! [`EventSender`] state machine that takes RTP timestamps as its clock.

use super::ec::Kernel;
use super::simd::dtmf_correlate;
use super::tones::{Cadence, Segment, ToneGenerator};

/// Detector block length in samples.
pub const BLOCK: usize = 102;
// `analyse` runs three accumulator sets over the block.
const _: () = assert!(BLOCK % 3 == 0);
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// A DTMF digit, stored as its RFC 4733 event code (0-9, * = 10, # = 11, A-D = 12-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    /// From `0-9 * # A-D` (case-insensitive).
    pub fn from_char(c: char) -> Option<Self> {
        Some(Digit(match c.to_ascii_uppercase() {
            d @ '0'..='9' => d as u8 - b'0',
            '*' => 10,
            '#' => 11,
            d @ 'A'..='D' => d as u8 - b'A' + 12,
            _ => return None,
        }))
    }

    /// From an RFC 4733 event code (0-15).
    pub fn from_event(code: u8) -> Option<Self> {
        (code < 16).then_some(Digit(code))
    }

    /// RFC 4733 event code.
    pub fn event(self) -> u8 {
        self.0
    }

    /// The key's character.
    pub fn to_char(self) -> char {
        match self.0 {
            d @ 0..=9 => (b'0' + d) as char,
            10 => '*',
            11 => '#',
            d => (b'A' + d - 12) as char,
        }
    }

    /// (low, high) frequencies in Hz.
    pub fn freqs(self) -> (f32, f32) {
        let (r, c) = self.position();
        (ROWS[r], COLS[c])
    }

    fn position(self) -> (usize, usize) {
        let ch = self.to_char();
        for (r, row) in KEYS.iter().enumerate() {
            if let Some(c) = row.iter().position(|&k| k == ch) {
                return (r, c);
            }
        }
        unreachable!("every code 0-15 is on the keypad")
    }
}

/// All sixteen digits.
pub fn all_digits() -> impl Iterator<Item = Digit> {
    (0..16).map(Digit)
}

/// What the detector saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A digit began at sample index `at` (counted from the detector's start).
    Begin { digit: Digit, at: u64 },
    /// The digit ended at sample `at`, having lasted `duration` samples.
    End {
        digit: Digit,
        at: u64,
        duration: u64,
    },
}

/// Detector thresholds. Q.24 administrations ask for 8 dB normal and 4 dB
/// reverse twist; the defaults add the ±2 dB a 102-sample block's
/// cross-leakage puts on the measured twist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Weakest tone accepted, dBm0 per frequency.
    pub min_level_dbm0: f32,
    /// Normal twist (high group weaker) accepted, dB.
    pub normal_twist_db: f32,
    /// Reverse twist (high group stronger) accepted, dB.
    pub reverse_twist_db: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_level_dbm0: -46.0,
            normal_twist_db: 11.0,
            reverse_twist_db: 6.5,
        }
    }
}

/// Streaming DTMF detector. Feed any block sizes; events come out through a
/// callback with sample-accurate (to one block) times.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    /// Per sample: cos and sin of the 8 frequencies, interleaved [n][16].
    table: Box<[[f32; 16]; BLOCK]>,
    /// Correlation build for this CPU.
    kernel: Kernel,
    buf: [f32; BLOCK],
    fill: usize,
    /// Previous and current block, for the frequency check.
    hist: [f32; 2 * BLOCK],
    min_power: f32,
    twist_lo: f32,
    twist_hi: f32,
    /// Sample index of the start of the current block.
    block_start: u64,
    prev_cand: Option<Digit>,
    current: Option<(Digit, u64)>,
    misses: u32,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new(DetectorConfig::default())
    }
}

impl DtmfDetector {
    /// A detector with the given thresholds.
    pub fn new(cfg: DetectorConfig) -> Self {
        let mut table = Box::new([[0f32; 16]; BLOCK]);
        for (n, row) in table.iter_mut().enumerate() {
            for (k, &f) in ROWS.iter().chain(COLS.iter()).enumerate() {
                let w = std::f64::consts::TAU * f64::from(f) / 8000.0 * n as f64;
                row[k] = w.cos() as f32;
                row[8 + k] = w.sin() as f32;
            }
        }
        let a = super::dbm0_to_peak(cfg.min_level_dbm0);
        DtmfDetector {
            table,
            kernel: Kernel::detect(),
            buf: [0.0; BLOCK],
            fill: 0,
            hist: [0.0; 2 * BLOCK],
            // Power of a tone in a block as computed by `analyse`: N * A^2 / 2,
            // with 3 dB allowance for off-bin and partial blocks.
            min_power: BLOCK as f32 * a * a / 2.0 * 0.5,
            twist_lo: 10f32.powf(-cfg.normal_twist_db / 10.0),
            twist_hi: 10f32.powf(cfg.reverse_twist_db / 10.0),
            block_start: 0,
            prev_cand: None,
            current: None,
            misses: 0,
        }
    }

    /// The digit currently held, if any.
    pub fn current(&self) -> Option<Digit> {
        self.current.map(|(d, _)| d)
    }

    /// Process samples; `on_event` is called for each begin/end.
    pub fn process(&mut self, mut samples: &[i16], mut on_event: impl FnMut(DtmfEvent)) {
        while !samples.is_empty() {
            let n = (BLOCK - self.fill).min(samples.len());
            for (d, &s) in self.buf[self.fill..self.fill + n].iter_mut().zip(samples) {
                *d = f32::from(s);
            }
            self.fill += n;
            samples = &samples[n..];
            if self.fill == BLOCK {
                self.fill = 0;
                self.hist.copy_within(BLOCK.., 0);
                self.hist[BLOCK..].copy_from_slice(&self.buf);
                let cand = self.analyse();
                // The frequency check (the costly part) runs only where a
                // digit would start; a held digit continues on the block checks.
                let cand = match cand {
                    Some(d) if self.current.is_none() && self.prev_cand == Some(d) => {
                        let (lo, hi) = d.freqs();
                        (self.on_frequency(lo) && self.on_frequency(hi)).then_some(d)
                    }
                    c => c,
                };
                self.step(cand, &mut on_event);
                self.block_start += BLOCK as u64;
            }
        }
    }

    fn step(&mut self, cand: Option<Digit>, on_event: &mut impl FnMut(DtmfEvent)) {
        match self.current {
            Some((d, start)) => {
                if cand == Some(d) {
                    self.misses = 0;
                } else {
                    self.misses += 1;
                    if self.misses >= 2 {
                        let at = self.block_start - BLOCK as u64;
                        on_event(DtmfEvent::End {
                            digit: d,
                            at,
                            duration: at - start,
                        });
                        self.current = None;
                        self.misses = 0;
                    }
                }
            }
            None => {
                if let Some(d) = cand {
                    if self.prev_cand == Some(d) {
                        let at = self.block_start - BLOCK as u64;
                        self.current = Some((d, at));
                        self.misses = 0;
                        on_event(DtmfEvent::Begin { digit: d, at });
                    }
                }
            }
        }
        self.prev_cand = cand;
    }

    /// Check one block; the candidate digit if the block tests pass
    /// (the frequency check is applied by the caller).
    fn analyse(&self) -> Option<Digit> {
        let half = sum_squares(&self.buf[..BLOCK / 2]);
        let energy = half + sum_squares(&self.buf[BLOCK / 2..]);
        // Energy gate: by Cauchy-Schwarz no tone power below can exceed
        // twice the block energy, so a quiet block cannot pass the level
        // test and skips the correlation (most of the cost).
        if 2.0 * energy < self.min_power {
            return None;
        }
        let acc = dtmf_correlate(self.kernel, &self.buf, &self.table[..]);
        let mut p = [0f32; 8];
        for k in 0..8 {
            p[k] = (acc[k] * acc[k] + acc[8 + k] * acc[8 + k]) * (2.0 / BLOCK as f32);
        }
        let (r, pr) = argmax(&p[..4]);
        let (c, pc) = argmax(&p[4..]);
        if pr < self.min_power || pc < self.min_power {
            return None;
        }
        // Twist: high group relative to low group.
        let twist = pc / pr;
        if twist < self.twist_lo || twist > self.twist_hi {
            return None;
        }
        // Each peak dominates its group by 4 dB (sidelobes of a strong tone
        // under 8 dB twist reach -7 dB in the weak group, so no more).
        const DOMINANCE: f32 = 2.5;
        for (i, &v) in p[..4].iter().enumerate() {
            if i != r && v * DOMINANCE > pr {
                return None;
            }
        }
        for (i, &v) in p[4..].iter().enumerate() {
            if i != c && v * DOMINANCE > pc {
                return None;
            }
        }
        // The two tones carry most of the block energy (talk-off).
        if pr + pc < 0.55 * energy {
            return None;
        }
        // The tone fills the block: both halves carry similar energy. Two
        // consecutive full blocks are needed to start a digit, so tones
        // shorter than ~25 ms are rejected whatever their alignment.
        let rest = energy - half;
        if half.min(rest) < 0.5 * half.max(rest) {
            return None;
        }
        Digit::from_char(KEYS[r][c])
    }

    /// Whether the recent signal near `f` is closer to `f` than to `f`±5 %.
    /// The window is 128000/f samples, so ±2.5 % is 0.4 bin at every
    /// frequency: the crossover sits at ~2.5 % off for all eight tones.
    fn on_frequency(&self, f: f32) -> bool {
        let len = ((128_000.0 / f) as usize).min(self.hist.len());
        let x = &self.hist[self.hist.len() - len..];
        let at = goertzel_power(x, f);
        at > goertzel_power(x, f * 0.95) && at > goertzel_power(x, f * 1.05)
    }
}

/// Sum of squares with eight partial sums (vectorises; no add chain).
fn sum_squares(x: &[f32]) -> f32 {
    let (chunks, rest) = x.as_chunks::<8>();
    let mut acc = [0f32; 8];
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k] * c[k];
        }
    }
    let tail: f32 = rest.iter().map(|v| v * v).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

fn argmax(v: &[f32]) -> (usize, f32) {
    let mut best = (0, v[0]);
    for (i, &x) in v.iter().enumerate().skip(1) {
        if x > best.1 {
            best = (i, x);
        }
    }
    best
}

/// Squared magnitude of the DFT of `x` at `f` Hz (Goertzel).
pub(crate) fn goertzel_power(x: &[f32], f: f32) -> f32 {
    let w = std::f32::consts::TAU * f / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    for &v in x {
        let s0 = v + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// A generator for one digit: `on_ms` of tone, then `off_ms` of silence.
/// `low_dbm0`/`high_dbm0` set each group's level (their difference is the twist).
pub fn digit_generator(
    digit: Digit,
    low_dbm0: f32,
    high_dbm0: f32,
    on_ms: u32,
    off_ms: u32,
) -> ToneGenerator {
    let (lo, hi) = digit.freqs();
    ToneGenerator::new(Cadence::new(
        &[
            Segment::dual(lo, low_dbm0, hi, high_dbm0, on_ms),
            Segment::silence(off_ms),
        ],
        false,
    ))
}

/// Render a digit string into `out` (tone `on_ms`, pause `off_ms`, each
/// group at `dbm0`). Characters that are not DTMF keys are skipped.
pub fn generate_digits(digits: &str, dbm0: f32, on_ms: u32, off_ms: u32, out: &mut Vec<i16>) {
    let per = ((on_ms + off_ms) * 8) as usize;
    for d in digits.chars().filter_map(Digit::from_char) {
        let start = out.len();
        out.resize(start + per, 0);
        digit_generator(d, dbm0, dbm0, on_ms, off_ms).fill(&mut out[start..]);
    }
}

// ---------------------------------------------------------------------------
// RFC 4733 telephone-event payload.

/// Errors decoding a telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The peer sent fewer than 4 bytes.
    #[error("telephone-event payload is {len} bytes, needs 4")]
    Truncated { len: usize },
    /// The caller asked to emit a volume above 63.
    #[error("telephone-event volume {volume} is above 63")]
    Volume { volume: u8 },
}

mod field {
    pub const EVENT: usize = 0;
    pub const FLAGS: usize = 1;
    pub const DURATION: core::ops::Range<usize> = 2..4;
    pub const LEN: usize = 4;
}

/// Read/write view of a 4-byte telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone)]
pub struct EventPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EventPacket<T> {
    /// Wrap without checking (accessors may panic on short buffers).
    pub fn new_unchecked(buffer: T) -> Self {
        EventPacket { buffer }
    }

    /// Wrap after checking the length.
    pub fn new_checked(buffer: T) -> Result<Self, EventError> {
        let len = buffer.as_ref().len();
        if len < field::LEN {
            return Err(EventError::Truncated { len });
        }
        Ok(EventPacket { buffer })
    }

    /// Event code.
    pub fn event(&self) -> u8 {
        self.buffer.as_ref()[field::EVENT]
    }

    /// E bit: end of event.
    pub fn end(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & 0x80 != 0
    }

    /// Volume, 0 to 63 (-dBm0).
    pub fn volume(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS] & 0x3f
    }

    /// Duration in RTP timestamp units.
    pub fn duration(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::DURATION];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EventPacket<T> {
    fn set(&mut self, r: &EventRepr) {
        let b = self.buffer.as_mut();
        b[field::EVENT] = r.event;
        b[field::FLAGS] = (u8::from(r.end) << 7) | (r.volume & 0x3f);
        b[field::DURATION].copy_from_slice(&r.duration.to_be_bytes());
    }
}

/// Meaning of a telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRepr {
    /// Event code (0-15 are DTMF digits).
    pub event: u8,
    /// Last packet(s) of the event.
    pub end: bool,
    /// Power level as -dBm0, 0-63.
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl EventRepr {
    /// Parse a checked packet (the reserved bit is ignored, as RFC 4733 asks).
    pub fn parse<T: AsRef<[u8]>>(p: &EventPacket<T>) -> Self {
        EventRepr {
            event: p.event(),
            end: p.end(),
            volume: p.volume(),
            duration: p.duration(),
        }
    }

    /// Parse raw payload bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, EventError> {
        Ok(Self::parse(&EventPacket::new_checked(b)?))
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        field::LEN
    }

    /// Write into `buf` (at least 4 bytes).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), EventError> {
        if self.volume > 63 {
            return Err(EventError::Volume {
                volume: self.volume,
            });
        }
        let mut p = EventPacket::new_checked(buf)?;
        p.set(self);
        Ok(())
    }

    /// The DTMF digit, if the event is one.
    pub fn digit(&self) -> Option<Digit> {
        Digit::from_event(self.event)
    }
}

/// One telephone-event packet the sender wants on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTx {
    /// RTP timestamp: the event's start.
    pub timestamp: u32,
    /// RTP marker bit (first packet of an event).
    pub marker: bool,
    /// Payload.
    pub payload: EventRepr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Idle,
    /// Sending updates; `next` is when the next update is due.
    Active {
        event: u8,
        volume: u8,
        start: u32,
        next: u32,
        first: bool,
    },
    /// Ended: `left` end packets still to send, the next at `next`.
    Ending {
        event: u8,
        volume: u8,
        start: u32,
        duration: u16,
        left: u8,
        next: u32,
    },
}

/// RFC 4733 sender: begin, duration updates every `interval`, and the final
/// packet sent three times. Time is the RTP timestamp clock, passed in.
///
/// Run loop: call `handle_begin` / `handle_end` on key events, and call
/// `poll_transmit(now)` until it returns `None` whenever `now` reaches
/// `poll_timeout()`.
#[derive(Debug, Clone)]
pub struct EventSender {
    interval: u32,
    state: SendState,
}

impl EventSender {
    /// `interval`: timestamp units between packets (160 = 20 ms at 8 kHz).
    pub fn new(interval: u32) -> Self {
        EventSender {
            interval: interval.max(1),
            state: SendState::Idle,
        }
    }

    /// True when nothing is in progress.
    pub fn is_idle(&self) -> bool {
        self.state == SendState::Idle
    }

    /// Start an event at RTP time `now` (replaces an event still being ended).
    pub fn handle_begin(&mut self, event: u8, volume: u8, now: u32) {
        self.state = SendState::Active {
            event,
            volume: volume.min(63),
            start: now,
            next: now,
            first: true,
        };
    }

    /// End the current event at `now`; three end packets follow.
    pub fn handle_end(&mut self, now: u32) {
        if let SendState::Active {
            event,
            volume,
            start,
            ..
        } = self.state
        {
            let duration = now.wrapping_sub(start).min(0xffff) as u16;
            self.state = SendState::Ending {
                event,
                volume,
                start,
                duration,
                left: 3,
                next: now,
            };
        }
    }

    /// When `poll_transmit` next has something, if ever.
    pub fn poll_timeout(&self) -> Option<u32> {
        match self.state {
            SendState::Idle => None,
            SendState::Active { next, .. } | SendState::Ending { next, .. } => Some(next),
        }
    }

    /// The packet due at `now`, if any.
    pub fn poll_transmit(&mut self, now: u32) -> Option<EventTx> {
        let due = |next: u32| (now.wrapping_sub(next) as i32) >= 0;
        match self.state {
            SendState::Idle => None,
            SendState::Active {
                event,
                volume,
                start,
                next,
                first,
            } => {
                if !due(next) {
                    return None;
                }
                let mut elapsed = now.wrapping_sub(start);
                let mut start = start;
                let mut first = first;
                if elapsed > 0xffff {
                    // Long event (RFC 4733 §2.5.1.3): a new segment starts at
                    // start + 0xffff, without the marker bit.
                    start = start.wrapping_add(0xffff);
                    elapsed -= 0xffff;
                    first = false;
                }
                self.state = SendState::Active {
                    event,
                    volume,
                    start,
                    next: now.wrapping_add(self.interval),
                    first: false,
                };
                Some(EventTx {
                    timestamp: start,
                    marker: first,
                    payload: EventRepr {
                        event,
                        end: false,
                        volume,
                        duration: elapsed as u16,
                    },
                })
            }
            SendState::Ending {
                event,
                volume,
                start,
                duration,
                left,
                next,
            } => {
                if !due(next) {
                    return None;
                }
                self.state = if left > 1 {
                    SendState::Ending {
                        event,
                        volume,
                        start,
                        duration,
                        left: left - 1,
                        next: now.wrapping_add(self.interval),
                    }
                } else {
                    SendState::Idle
                };
                Some(EventTx {
                    timestamp: start,
                    marker: false,
                    payload: EventRepr {
                        event,
                        end: true,
                        volume,
                        duration,
                    },
                })
            }
        }
    }
}

/// Receiver side: turns a stream of telephone-event payloads (with their RTP
/// timestamps) into one digit per event, ignoring updates and the repeated
/// end packets.
#[derive(Debug, Clone, Default)]
pub struct EventReceiver {
    last: Option<(u32, u8)>,
    ended: bool,
}

impl EventReceiver {
    /// A fresh receiver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one packet; returns the digit the first time an event is seen.
    pub fn handle(&mut self, timestamp: u32, repr: &EventRepr) -> Option<Digit> {
        let key = (timestamp, repr.event);
        if self.last == Some(key) {
            self.ended |= repr.end;
            return None;
        }
        self.last = Some(key);
        self.ended = repr.end;
        repr.digit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(x: &[i16]) -> Vec<(char, u64)> {
        let mut det = DtmfDetector::default();
        let mut out = Vec::new();
        det.process(x, |e| {
            if let DtmfEvent::Begin { digit, at } = e {
                out.push((digit.to_char(), at));
            }
        });
        out
    }

    #[test]
    fn digit_codes_round_trip() {
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            let d = Digit::from_char(c).unwrap();
            assert_eq!(d.event() as usize, i);
            assert_eq!(d.to_char(), c);
        }
        assert_eq!(Digit::from_char('x'), None);
        assert_eq!(Digit::from_char('5').unwrap().freqs(), (770.0, 1336.0));
    }

    #[test]
    fn detects_generated_string() {
        let mut x = vec![0i16; 800];
        generate_digits("1234567890*#ABCD", -10.0, 50, 50, &mut x);
        x.extend(std::iter::repeat_n(0, 800));
        let got: String = detect(&x).iter().map(|d| d.0).collect();
        assert_eq!(got, "1234567890*#ABCD");
    }

    #[test]
    fn begin_time_is_within_two_blocks() {
        let mut x = vec![0i16; 1000];
        generate_digits("5", -10.0, 60, 60, &mut x);
        let got = detect(&x);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].1 + BLOCK as u64 >= 1000 && got[0].1 <= 1000 + BLOCK as u64,
            "{got:?}"
        );
    }

    #[test]
    fn short_tone_rejected() {
        for off in 0..6u32 {
            let mut x = vec![0i16; 400 + off as usize * 17];
            generate_digits("8", -10.0, 20, 100, &mut x);
            assert!(detect(&x).is_empty(), "20 ms tone at offset {off}");
        }
    }

    #[test]
    fn payload_round_trip() {
        let bytes = [0x05, 0x8a, 0x03, 0x20];
        let r = EventRepr::from_bytes(&bytes).unwrap();
        assert_eq!(
            r,
            EventRepr {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        let mut out = [0u8; 4];
        r.emit(&mut out).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(
            EventRepr::from_bytes(&bytes[..3]),
            Err(EventError::Truncated { len: 3 })
        );
        let bad = EventRepr { volume: 64, ..r };
        assert_eq!(bad.emit(&mut out), Err(EventError::Volume { volume: 64 }));
    }

    #[test]
    fn sender_sequence() {
        let mut s = EventSender::new(160);
        assert_eq!(s.poll_transmit(0), None);
        s.handle_begin(1, 10, 1000);
        let p = s.poll_transmit(1000).unwrap();
        assert!(p.marker && p.timestamp == 1000 && p.payload.duration == 0 && !p.payload.end);
        assert_eq!(s.poll_transmit(1100), None);
        assert_eq!(s.poll_timeout(), Some(1160));
        let p = s.poll_transmit(1160).unwrap();
        assert!(!p.marker && p.payload.duration == 160);
        s.handle_end(1250);
        let mut ends = Vec::new();
        let mut now = 1250;
        while let Some(t) = s.poll_timeout() {
            now = now.max(t);
            ends.push(s.poll_transmit(now).unwrap());
        }
        assert_eq!(ends.len(), 3);
        assert!(ends
            .iter()
            .all(|p| p.payload.end && p.payload.duration == 250 && p.timestamp == 1000));
        assert!(s.is_idle());
    }

    #[test]
    fn sender_long_event_and_wrap() {
        let mut s = EventSender::new(160);
        let t0 = u32::MAX - 100;
        s.handle_begin(11, 0, t0);
        s.poll_transmit(t0).unwrap();
        let p = s.poll_transmit(t0.wrapping_add(0x1_0000)).unwrap();
        assert_eq!(p.timestamp, t0.wrapping_add(0xffff));
        assert!(!p.marker);
        assert_eq!(p.payload.duration, 1);
    }

    #[test]
    fn receiver_dedups() {
        let mut r = EventReceiver::new();
        let mk = |d, e| EventRepr {
            event: 3,
            end: e,
            volume: 10,
            duration: d,
        };
        assert_eq!(r.handle(5, &mk(0, false)).map(|d| d.to_char()), Some('3'));
        assert_eq!(r.handle(5, &mk(160, false)), None);
        assert_eq!(r.handle(5, &mk(320, true)), None);
        assert_eq!(r.handle(5, &mk(320, true)), None);
        assert_eq!(r.handle(900, &mk(0, false)).map(|d| d.to_char()), Some('3'));
    }
}
