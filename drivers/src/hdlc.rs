//! HDLC framing as used on the ISDN D-channel (Q.921 over TS16 of an E1).
//!
//! [`Encoder`] turns frames into a continuous octet stream: opening/closing
//! flags `0x7E`, zero-bit stuffing after five consecutive ones, the FCS-16
//! (reflected polynomial 0x8408, preset 0xFFFF, complemented, low octet
//! first), bits sent LSB first, and idle flags between frames. [`Decoder`]
//! is the inverse: it hunts for flags, removes stuffing, checks the FCS
//! (residue 0xF0B8) and reports good frames, bad FCS, aborts (seven or more
//! ones) and runts. Both are pure: one octet in or out per call.

use std::collections::VecDeque;

/// The HDLC flag octet.
pub const FLAG: u8 = 0x7E;
/// FCS-16 residue left by a good frame + FCS.
pub const FCS_GOOD: u16 = 0xF0B8;
/// Smallest LAPD frame with its FCS (address 2, control 1, FCS 2).
pub const MIN_FRAME: usize = 5;

/// FCS-16 update over `data` starting from `fcs` (ISO 3309 / RFC 1662).
pub fn fcs16_update(mut fcs: u16, data: &[u8]) -> u16 {
    for &b in data {
        fcs ^= u16::from(b);
        for _ in 0..8 {
            fcs = if fcs & 1 != 0 {
                (fcs >> 1) ^ 0x8408
            } else {
                fcs >> 1
            };
        }
    }
    fcs
}

/// The FCS-16 to transmit after `data` (already complemented).
pub fn fcs16(data: &[u8]) -> u16 {
    !fcs16_update(0xFFFF, data)
}

/// Appends the FCS (low octet first) to `frame`.
pub fn append_fcs(frame: &mut Vec<u8>) {
    let f = fcs16(frame);
    frame.extend_from_slice(&f.to_le_bytes());
}

/// Checks a frame that ends with its 2-octet FCS.
pub fn fcs_ok(frame_with_fcs: &[u8]) -> bool {
    frame_with_fcs.len() >= 2 && fcs16_update(0xFFFF, frame_with_fcs) == FCS_GOOD
}

/// HDLC transmitter: frames in, line octets out.
#[derive(Debug, Default)]
pub struct Encoder {
    queue: VecDeque<Vec<u8>>,
    bits: VecDeque<bool>,
}

impl Encoder {
    /// A new idle encoder (sends flags).
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a frame (without FCS; the encoder appends it).
    pub fn push_frame(&mut self, frame: &[u8]) {
        self.queue.push_back(frame.to_vec());
    }

    /// Frames still waiting to start.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is queued and no frame bits are pending.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.bits.is_empty()
    }

    fn push_octet_raw(&mut self, o: u8) {
        for i in 0..8 {
            self.bits.push_back(o >> i & 1 != 0);
        }
    }

    fn load_frame(&mut self, frame: &[u8]) {
        let mut body = frame.to_vec();
        append_fcs(&mut body);
        let mut ones = 0;
        for o in body {
            for i in 0..8 {
                let bit = o >> i & 1 != 0;
                self.bits.push_back(bit);
                if bit {
                    ones += 1;
                    if ones == 5 {
                        self.bits.push_back(false);
                        ones = 0;
                    }
                } else {
                    ones = 0;
                }
            }
        }
        self.push_octet_raw(FLAG);
    }

    /// The next octet to put on the line (bit 0 goes first).
    pub fn next_octet(&mut self) -> u8 {
        let mut out = 0u8;
        for i in 0..8 {
            if self.bits.is_empty() {
                match self.queue.pop_front() {
                    Some(f) => {
                        // Opening flag: only if the previous bits were not a flag
                        // we just sent (a shared flag is allowed, but keep it simple).
                        self.push_octet_raw(FLAG);
                        self.load_frame(&f);
                    }
                    None => self.push_octet_raw(FLAG),
                }
            }
            if self.bits.pop_front() == Some(true) {
                out |= 1 << i;
            }
        }
        out
    }
}

/// What the receiver found on the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RxEvent {
    /// A good frame, without its FCS.
    Frame(Vec<u8>),
    /// A frame whose FCS did not check (length of frame incl. FCS).
    BadFcs(usize),
    /// Seven or more ones inside a frame.
    Abort,
    /// A frame shorter than [`MIN_FRAME`] or not a whole number of octets.
    Runt(usize),
    /// A frame longer than the configured maximum.
    TooLong,
}

/// HDLC receiver: line octets in, [`RxEvent`]s out.
#[derive(Debug)]
pub struct Decoder {
    ones: u32,
    in_frame: bool,
    hunting: bool,
    cur: u8,
    nbits: u32,
    buf: Vec<u8>,
    max_len: usize,
    events: VecDeque<RxEvent>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl Decoder {
    /// A receiver accepting frames of at most `max_len` octets incl. FCS.
    pub fn new(max_len: usize) -> Self {
        Self {
            ones: 0,
            in_frame: false,
            hunting: true,
            cur: 0,
            nbits: 0,
            buf: Vec::new(),
            max_len,
            events: VecDeque::new(),
        }
    }

    /// Feeds one line octet (bit 0 first).
    pub fn push_octet(&mut self, o: u8) {
        for i in 0..8 {
            self.push_bit(o >> i & 1 != 0);
        }
    }

    /// Next receiver event.
    pub fn poll_event(&mut self) -> Option<RxEvent> {
        self.events.pop_front()
    }

    fn push_bit(&mut self, bit: bool) {
        if bit {
            self.ones += 1;
            if self.ones == 7 {
                if self.in_frame && !self.hunting && self.buf.len() * 8 + self.nbits as usize > 7 {
                    self.events.push_back(RxEvent::Abort);
                }
                self.in_frame = false;
                self.hunting = true;
            }
            if self.ones >= 7 {
                return;
            }
            self.data_bit(true);
        } else {
            let ones = self.ones;
            self.ones = 0;
            if ones == 6 {
                // Flag 01111110: the previous six ones (already shifted in as
                // data) plus the leading zero belong to the flag.
                self.end_of_frame();
                return;
            }
            if ones == 5 {
                return; // stuffed zero
            }
            self.data_bit(false);
        }
    }

    fn data_bit(&mut self, bit: bool) {
        if self.hunting || !self.in_frame {
            return;
        }
        if bit {
            self.cur |= 1 << self.nbits;
        }
        self.nbits += 1;
        if self.nbits == 8 {
            if self.buf.len() >= self.max_len {
                self.events.push_back(RxEvent::TooLong);
                self.in_frame = false;
                self.hunting = true;
                self.buf.clear();
            } else {
                self.buf.push(self.cur);
            }
            self.cur = 0;
            self.nbits = 0;
        }
    }

    fn end_of_frame(&mut self) {
        // The flag's leading 0 and first 6 ones were stored as data bits: drop
        // 7 bits from the tail.
        if self.in_frame && !self.hunting {
            let total_bits = self.buf.len() * 8 + self.nbits as usize;
            let data_bits = total_bits.saturating_sub(7);
            if data_bits > 0 {
                if !data_bits.is_multiple_of(8) {
                    self.events.push_back(RxEvent::Runt(data_bits / 8));
                } else {
                    let n = data_bits / 8;
                    self.buf.truncate(n);
                    if n < MIN_FRAME {
                        self.events.push_back(RxEvent::Runt(n));
                    } else if fcs_ok(&self.buf) {
                        let mut f = std::mem::take(&mut self.buf);
                        f.truncate(n - 2);
                        self.events.push_back(RxEvent::Frame(f));
                    } else {
                        self.events.push_back(RxEvent::BadFcs(n));
                    }
                }
            }
        }
        self.buf.clear();
        self.cur = 0;
        self.nbits = 0;
        self.in_frame = true;
        self.hunting = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(enc: &mut Encoder, dec: &mut Decoder, octets: usize) -> Vec<RxEvent> {
        for _ in 0..octets {
            dec.push_octet(enc.next_octet());
        }
        std::iter::from_fn(|| dec.poll_event()).collect()
    }

    #[test]
    fn fcs_known_vectors() {
        // CRC-16/X-25 check value of "123456789" is 0x906E (pri-peer --fcs-of).
        assert_eq!(fcs16(b"123456789"), 0x906E);
        // RFC 1662 residue.
        let mut f = b"123456789".to_vec();
        append_fcs(&mut f);
        assert_eq!(&f[9..], &[0x6E, 0x90]);
        assert!(fcs_ok(&f));
        f[3] ^= 1;
        assert!(!fcs_ok(&f));
        // LAPD SABME from the pri-peer README: 02 01 7F.
        let mut s = vec![0x02, 0x01, 0x7F];
        append_fcs(&mut s);
        assert_eq!(fcs16_update(0xFFFF, &s), FCS_GOOD);
    }

    #[test]
    fn idle_is_flags() {
        let mut e = Encoder::new();
        assert_eq!(e.next_octet(), FLAG);
        assert_eq!(e.next_octet(), FLAG);
    }

    #[test]
    fn stuffing_inserted_and_round_trip() {
        let mut e = Encoder::new();
        let mut d = Decoder::default();
        let frames: Vec<Vec<u8>> = vec![
            vec![0x02, 0x01, 0x7F],
            vec![0xFF; 40],
            vec![0x7E, 0x7E, 0x7D, 0x3E, 0x1F, 0xF8],
            (0..=255u8).collect(),
            vec![0x00, 0x01, 0x00, 0x00, 0x08, 0x02, 0x00, 0x01, 0x05],
        ];
        for f in &frames {
            e.push_frame(f);
        }
        let got = run(&mut e, &mut d, 2000);
        let want: Vec<RxEvent> = frames.iter().cloned().map(RxEvent::Frame).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn no_flag_inside_stuffed_bits() {
        // An all-ones frame must never produce six consecutive ones on the line.
        let mut e = Encoder::new();
        e.push_frame(&[0xFF; 16]);
        let mut line = Vec::new();
        let _ = e.next_octet();
        for _ in 0..30 {
            line.push(e.next_octet());
        }
        let bits: Vec<bool> = line
            .iter()
            .flat_map(|o| (0..8).map(move |i| o >> i & 1 != 0))
            .collect();
        // Find the body between the first and the last flag: count max run.
        let mut run = 0;
        let mut max_run_in_data = 0;
        for &b in &bits {
            if b {
                run += 1;
            } else {
                if run < 6 {
                    max_run_in_data = max_run_in_data.max(run);
                }
                run = 0;
            }
        }
        assert_eq!(max_run_in_data, 5);
    }

    #[test]
    fn bad_fcs_and_bit_error_detected() {
        let mut e = Encoder::new();
        let mut d = Decoder::default();
        e.push_frame(&[0x00, 0x01, 0x01, 0x03, 0x42, 0x42]);
        let mut line: Vec<u8> = (0..20).map(|_| e.next_octet()).collect();
        line[4] ^= 0x10;
        for o in line {
            d.push_octet(o);
        }
        let ev: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
        assert!(!ev.is_empty(), "a bit error went unnoticed");
        assert!(!ev.iter().any(|e| matches!(e, RxEvent::Frame(_))), "{ev:?}");
        // The decoder recovers for the next frame.
        e.push_frame(&[0x02, 0x01, 0x73]);
        let ev = run(&mut e, &mut d, 10);
        assert_eq!(ev, vec![RxEvent::Frame(vec![0x02, 0x01, 0x73])]);
    }

    #[test]
    fn abort_and_garbage() {
        let mut d = Decoder::default();
        d.push_octet(FLAG);
        d.push_octet(0x12);
        d.push_octet(0x34);
        d.push_octet(0xFF); // abort
        d.push_octet(0xFF);
        let ev: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
        assert_eq!(ev, vec![RxEvent::Abort]);
        // Runt between flags.
        d.push_octet(FLAG);
        d.push_octet(0x12);
        d.push_octet(FLAG);
        assert_eq!(d.poll_event(), Some(RxEvent::Runt(1)));
        // Pseudo-random garbage never panics and yields no good frame (FCS).
        let mut x: u32 = 0x1234_5678;
        let mut good = 0;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            d.push_octet(x as u8);
            while let Some(ev) = d.poll_event() {
                if matches!(ev, RxEvent::Frame(_)) {
                    good += 1;
                }
            }
        }
        assert!(good <= 1, "{good} random frames passed the FCS");
    }

    #[test]
    fn too_long_frame() {
        let mut e = Encoder::new();
        let mut d = Decoder::new(16);
        e.push_frame(&[0x55; 64]);
        e.push_frame(&[0x02, 0x01, 0x7F]);
        let ev = run(&mut e, &mut d, 120);
        assert_eq!(
            ev,
            vec![RxEvent::TooLong, RxEvent::Frame(vec![0x02, 0x01, 0x7F])]
        );
    }
}
