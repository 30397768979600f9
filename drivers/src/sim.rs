//! The software card: E1 spans with G.704 framing, wired back to back.
//!
//! A pure, clocked simulation: every call to [`BackToBack::tick`] moves one
//! 125 µs E1 frame (32 octets) in each direction, so 8000 ticks are one
//! second of line time. [`Framer`] builds frames: TS0 alternates the frame
//! alignment signal (FAS, `x0011011`) and the NFAS word (bit 2 = 1, A bit =
//! remote alarm, Sa4-Sa8 = 1), with the CRC-4 multiframe (C1-C4 of the
//! previous sub-multiframe in bit 1 of FAS frames, `001011` + E bits in bit 1
//! of NFAS frames). [`Deframer`] hunts for frame alignment on an octet stream
//! (the simulated line is octet-aligned; bit slips are not modelled), checks
//! CRC-4, and derives LOS, AIS, LOF and RAI. [`E1Port`] joins a framer pair
//! to a [`Span`]: B-channel samples in TS1-15/17-31, and the D-channel as
//! HDLC (flags, stuffing, FCS-16) in TS16.

use crate::hdlc::{self, RxEvent};
use crate::span::{Alarms, SlotKind, Span, CHUNK, E1_TIMESLOTS};
use crate::ChanId;

/// FAS pattern in bits 2-8 of TS0.
pub const FAS: u8 = 0x1B;
/// Multiframe alignment bits in NFAS frames 1,3,5,7,9,11.
const MFAS: [u8; 6] = [0, 0, 1, 0, 1, 1];

/// CRC-4 (x^4 + x + 1) over `bits` of an octet, MSB first.
pub fn crc4_update(mut reg: u8, octet: u8) -> u8 {
    for i in (0..8).rev() {
        let b = octet >> i & 1;
        let fb = (reg >> 3 & 1) ^ b;
        reg = (reg << 1) & 0xF;
        if fb != 0 {
            reg ^= 0x3;
        }
    }
    reg
}

/// E1 transmit framer.
#[derive(Debug)]
pub struct Framer {
    crc4: bool,
    fno: u8,
    reg: u8,
    last_crc: u8,
    /// Send the A bit (remote alarm) to the far end.
    pub rai: bool,
    /// Far-end CRC error to report in the next E bits.
    pub ebit_error: bool,
    /// Send all ones (AIS) instead of frames.
    pub ais: bool,
}

impl Framer {
    /// A framer, with or without CRC-4.
    pub fn new(crc4: bool) -> Self {
        Self {
            crc4,
            fno: 0,
            reg: 0,
            last_crc: 0,
            rai: false,
            ebit_error: false,
            ais: false,
        }
    }

    /// Fills TS0 of `frame` (TS1-31 already set) and advances.
    pub fn frame(&mut self, frame: &mut [u8; E1_TIMESLOTS]) {
        if self.ais {
            *frame = [0xFF; E1_TIMESLOTS];
            return;
        }
        let f = self.fno;
        let ts0 = if f.is_multiple_of(2) {
            let c = if self.crc4 {
                self.last_crc >> (3 - (f % 8) / 2) & 1
            } else {
                1
            };
            (c << 7) | FAS
        } else {
            let b1 = if !self.crc4 {
                1
            } else if f < 12 {
                MFAS[usize::from(f / 2)]
            } else {
                u8::from(!self.ebit_error)
            };
            (b1 << 7) | 0x40 | (u8::from(self.rai) << 5) | 0x1F
        };
        frame[0] = ts0;
        // CRC over the frame with the C bit (bit 1 of FAS frames) set to 0.
        let masked = if f.is_multiple_of(2) { ts0 & 0x7F } else { ts0 };
        self.reg = crc4_update(self.reg, masked);
        for &o in &frame[1..] {
            self.reg = crc4_update(self.reg, o);
        }
        if f % 8 == 7 {
            self.last_crc = self.reg;
            self.reg = 0;
        }
        if f == 15 {
            self.ebit_error = false;
        }
        self.fno = (f + 1) % 16;
    }
}

/// Counters kept by the receiver (DAHDI `fascount`, `crc4count`, `ebitcount`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// FAS word errors.
    pub fas_errors: u64,
    /// CRC-4 sub-multiframe errors.
    pub crc4_errors: u64,
    /// E bits received as 0 (far end saw our CRC-4 wrong).
    pub ebit_errors: u64,
    /// Times frame alignment was (re)gained.
    pub alignments: u64,
}

/// E1 receive deframer: octets in, aligned frames and alarms out.
#[derive(Debug)]
pub struct Deframer {
    crc4: bool,
    window: Vec<u8>,
    aligned: Option<usize>,
    frame: [u8; E1_TIMESLOTS],
    pos: usize,
    even: bool,
    bad_fas: u32,
    zero_frames: u32,
    ones_frames: u32,
    mf_pos: Option<u8>,
    mf_hist: u8,
    reg: u8,
    pending_crc: Option<u8>,
    cur_c: u8,
    smf_valid: bool,
    alarms: Alarms,
    /// Set when a CRC-4 error was seen; the paired framer reports it in E bits.
    pub report_ebit: bool,
    /// Counters.
    pub counters: RxCounters,
}

impl Deframer {
    /// A receiver, CRC-4 checking on or off.
    pub fn new(crc4: bool) -> Self {
        Self {
            crc4,
            window: Vec::new(),
            aligned: None,
            frame: [0; E1_TIMESLOTS],
            pos: 0,
            even: true,
            bad_fas: 0,
            zero_frames: 0,
            ones_frames: 0,
            mf_pos: None,
            mf_hist: 0,
            reg: 0,
            pending_crc: None,
            cur_c: 0,
            smf_valid: false,
            alarms: Alarms::LOF,
            report_ebit: false,
            counters: RxCounters::default(),
        }
    }

    /// Current alarms.
    pub fn alarms(&self) -> Alarms {
        self.alarms
    }

    /// Nothing on the line for one frame time (cable pulled): LOS.
    pub fn no_signal(&mut self) {
        self.alarms.set(Alarms::LOS, true);
        self.alarms.set(Alarms::LOF, true);
        self.aligned = None;
        self.window.clear();
    }

    /// Feeds one frame time worth of line octets; returns the aligned frames
    /// completed (zero or one, occasionally two after a slip).
    pub fn push(&mut self, octets: &[u8]) -> Vec<[u8; E1_TIMESLOTS]> {
        if octets.iter().any(|&o| o != 0) {
            self.alarms.set(Alarms::LOS, false);
        }
        let mut out = Vec::new();
        for &o in octets {
            if let Some(f) = self.push_octet(o) {
                out.push(f);
            }
        }
        out
    }

    fn push_octet(&mut self, o: u8) -> Option<[u8; E1_TIMESLOTS]> {
        if self.aligned.is_none() {
            self.window.push(o);
            // FAS at i, NFAS (bit 2) at i+32, FAS at i+64.
            if self.window.len() > 64 {
                let i = self.window.len() - 65;
                let w = &self.window;
                if w[i] & 0x7F == FAS && w[i + 32] & 0x40 != 0 && w[i + 64] & 0x7F == FAS {
                    self.aligned = Some(0);
                    self.counters.alignments += 1;
                    self.alarms.set(Alarms::LOF, false);
                    self.bad_fas = 0;
                    self.pos = 1;
                    self.frame = [0; E1_TIMESLOTS];
                    self.frame[0] = o;
                    self.even = true;
                    self.mf_pos = None;
                    self.mf_hist = 0;
                    self.window.clear();
                    return None;
                }
                if self.window.len() > 4096 {
                    self.window.drain(..2048);
                }
            }
            return None;
        }
        self.frame[self.pos] = o;
        self.pos += 1;
        if self.pos < E1_TIMESLOTS {
            return None;
        }
        self.pos = 0;
        let f = self.frame;
        self.frame_done(&f);
        self.aligned.map(|_| f)
    }

    fn frame_done(&mut self, f: &[u8; E1_TIMESLOTS]) {
        self.alarms.set(Alarms::LOS, false);
        // AIS: all ones; LOS: all zeros, over 2 frames.
        if f.iter().all(|&o| o == 0xFF) {
            self.ones_frames += 1;
        } else {
            self.ones_frames = 0;
        }
        if f.iter().all(|&o| o == 0) {
            self.zero_frames += 1;
        } else {
            self.zero_frames = 0;
        }
        self.alarms.set(Alarms::AIS, self.ones_frames >= 2);
        if self.zero_frames >= 2 {
            self.alarms.set(Alarms::LOS, true);
        }
        let ts0 = f[0];
        let even = self.even;
        self.even = !self.even;
        let ok = if even {
            ts0 & 0x7F == FAS
        } else {
            ts0 & 0x40 != 0
        };
        if !ok {
            self.counters.fas_errors += 1;
            if even {
                self.bad_fas += 1;
            }
            if self.bad_fas >= 3 {
                self.aligned = None;
                self.alarms.set(Alarms::LOF, true);
                self.window.clear();
            }
            return;
        }
        if even {
            self.bad_fas = 0;
        }
        if !even {
            self.alarms.set(Alarms::RAI, ts0 & 0x20 != 0);
        }
        if self.crc4 {
            self.crc4_frame(f, even);
        }
    }

    fn crc4_frame(&mut self, f: &[u8; E1_TIMESLOTS], even: bool) {
        let b1 = f[0] >> 7;
        let Some(p) = self.mf_pos else {
            // Hunt for 001011 in bit 1 of consecutive NFAS frames.
            if !even {
                self.mf_hist = (self.mf_hist << 1 | b1) & 0x3F;
                if self.mf_hist == 0b001011 {
                    // That NFAS frame was frame 11: the next one is 12, and the
                    // current sub-multiframe started before alignment.
                    self.mf_pos = Some(12);
                    self.reg = 0;
                    self.cur_c = 0;
                    self.pending_crc = None;
                    self.smf_valid = false;
                }
            }
            return;
        };
        if !even && p < 12 && b1 != MFAS[usize::from(p / 2)] {
            self.mf_pos = None;
            self.mf_hist = 0;
            return;
        }
        if !even && p >= 12 && b1 == 0 {
            self.counters.ebit_errors += 1;
        }
        if even {
            self.cur_c = (self.cur_c << 1 | b1) & 0xF;
        }
        self.reg = crc4_update(self.reg, if even { f[0] & 0x7F } else { f[0] });
        for &o in &f[1..] {
            self.reg = crc4_update(self.reg, o);
        }
        if p % 8 == 7 {
            // The C bits of this sub-multiframe check the previous one.
            if let Some(prev) = self.pending_crc {
                if prev != self.cur_c {
                    self.counters.crc4_errors += 1;
                    self.report_ebit = true;
                }
            }
            self.pending_crc = self.smf_valid.then_some(self.reg);
            self.smf_valid = true;
            self.reg = 0;
            self.cur_c = 0;
        }
        self.mf_pos = Some((p + 1) % 16);
    }

    /// True once CRC-4 multiframe alignment is held.
    pub fn multiframe_aligned(&self) -> bool {
        self.mf_pos.is_some()
    }
}

/// One simulated E1 port: a span plus its framer, deframer and HDLC engine.
#[derive(Debug)]
pub struct E1Port {
    /// The span the user side sees.
    pub span: Span,
    /// Transmit framer.
    pub tx: Framer,
    /// Receive deframer.
    pub rx: Deframer,
    hdlc_tx: hdlc::Encoder,
    hdlc_rx: hdlc::Decoder,
    tx_chunks: Vec<[u8; CHUNK]>,
    rx_chunks: Vec<[u8; CHUNK]>,
    fcount: u64,
    rx_index: usize,
    /// D-channel receive errors (bad FCS, aborts, runts).
    pub d_errors: u64,
}

impl E1Port {
    /// An E1 PRI port (B 1-15/17-31, D 16), CRC-4 on or off.
    pub fn new(crc4: bool) -> Self {
        Self {
            span: Span::e1_pri(),
            tx: Framer::new(crc4),
            rx: Deframer::new(crc4),
            hdlc_tx: hdlc::Encoder::new(),
            hdlc_rx: hdlc::Decoder::default(),
            tx_chunks: vec![[0; CHUNK]; E1_TIMESLOTS],
            rx_chunks: vec![[0; CHUNK]; E1_TIMESLOTS],
            fcount: 0,
            rx_index: 0,
            d_errors: 0,
        }
    }

    /// Builds the next frame to transmit.
    pub fn tx_frame(&mut self) -> [u8; E1_TIMESLOTS] {
        let k = (self.fcount % CHUNK as u64) as usize;
        let mut f = [0xFFu8; E1_TIMESLOTS];
        for (ts, slot) in f.iter_mut().enumerate().skip(1) {
            match self.span.slot_kind(ts) {
                SlotKind::Bearer => {
                    if k == 0 {
                        self.tx_chunks[ts] = self
                            .span
                            .line_tx_chunk(ChanId(ts as u16))
                            .unwrap_or([0xD5; CHUNK]);
                    }
                    *slot = self.tx_chunks[ts][k];
                }
                SlotKind::DChannel => {
                    if self.hdlc_tx.queued() == 0 {
                        if let Some(fr) = self.span.line_tx_frame() {
                            self.hdlc_tx.push_frame(&fr);
                        }
                    }
                    *slot = self.hdlc_tx.next_octet();
                }
                _ => {}
            }
        }
        self.tx.rai = self.rx.alarms().0 & (Alarms::LOF.0 | Alarms::LOS.0) != 0;
        if self.rx.report_ebit {
            self.tx.ebit_error = true;
            self.rx.report_ebit = false;
        }
        self.tx.frame(&mut f);
        self.fcount += 1;
        f
    }

    /// Takes one frame time of line octets (`None` = no signal).
    pub fn rx_line(&mut self, octets: Option<&[u8]>) {
        let frames = match octets {
            Some(o) => self.rx.push(o),
            None => {
                self.rx.no_signal();
                Vec::new()
            }
        };
        for f in frames {
            self.rx_aligned(&f);
        }
        self.span.set_alarms(self.rx.alarms());
    }

    fn rx_aligned(&mut self, f: &[u8; E1_TIMESLOTS]) {
        let idx = self.rx_index;
        self.rx_index = (self.rx_index + 1) % CHUNK;
        for (ts, &o) in f.iter().enumerate().skip(1) {
            match self.span.slot_kind(ts) {
                SlotKind::Bearer => {
                    self.rx_chunks[ts][idx] = o;
                    if idx == CHUNK - 1 {
                        let c = self.rx_chunks[ts];
                        let _ = self.span.line_rx_chunk(ChanId(ts as u16), &c);
                    }
                }
                SlotKind::DChannel => {
                    self.hdlc_rx.push_octet(o);
                    while let Some(ev) = self.hdlc_rx.poll_event() {
                        match ev {
                            RxEvent::Frame(fr) => self.span.line_rx_frame(fr),
                            _ => self.d_errors += 1,
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Line impairments between the two ports of a [`BackToBack`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairments {
    /// Probability (per TS16 octet, in 1/65536) of flipping one bit of it.
    pub dchan_flip_per_64k: u32,
    /// Cable pulled (both directions carry nothing).
    pub cut: bool,
    /// Only the B->A direction is cut (A sees LOS, B keeps frame).
    pub cut_b_to_a: bool,
    /// Drop one octet in the A->B direction on the next tick (a slip).
    pub slip_a_to_b: bool,
}

/// Two simulated E1 ports wired to each other, stepped one frame at a time.
#[derive(Debug)]
pub struct BackToBack {
    /// The "A" end.
    pub a: E1Port,
    /// The "B" end.
    pub b: E1Port,
    /// Line impairments.
    pub imp: Impairments,
    rng: u64,
    frames: u64,
}

impl BackToBack {
    /// Two PRI ports, CRC-4 on or off, seeded impairment generator.
    pub fn new(crc4: bool, seed: u64) -> Self {
        Self {
            a: E1Port::new(crc4),
            b: E1Port::new(crc4),
            imp: Impairments::default(),
            rng: seed | 1,
            frames: 0,
        }
    }

    /// Frames moved so far (8000 per second of line time).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Line time in microseconds.
    pub fn micros(&self) -> u64 {
        self.frames * 125
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn impair(&mut self, f: &mut [u8; E1_TIMESLOTS]) {
        if self.imp.dchan_flip_per_64k > 0
            && (self.rand() & 0xFFFF) < u64::from(self.imp.dchan_flip_per_64k)
        {
            let bit = self.rand() % 8;
            f[16] ^= 1 << bit;
        }
    }

    /// Moves one frame each way.
    pub fn tick(&mut self) {
        let mut fa = self.a.tx_frame();
        let mut fb = self.b.tx_frame();
        self.impair(&mut fa);
        self.impair(&mut fb);
        if self.imp.cut {
            self.a.rx_line(None);
            self.b.rx_line(None);
        } else {
            let mut ab = fa.to_vec();
            if self.imp.slip_a_to_b {
                self.imp.slip_a_to_b = false;
                ab.remove(5);
            }
            self.b.rx_line(Some(&ab));
            if self.imp.cut_b_to_a {
                self.a.rx_line(None);
            } else {
                self.a.rx_line(Some(&fb));
            }
        }
        self.frames += 1;
    }

    /// Runs `n` ticks.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc4_residue() {
        // Appending the CRC (as 4 bits) to the message leaves remainder 0.
        let msg = [0x12u8, 0x34, 0xAB];
        let mut r = 0;
        for &o in &msg {
            r = crc4_update(r, o);
        }
        // Feed the 4 CRC bits: shift them through as the top nibble of an octet
        // followed by 4 more zero bits would change the result, so do it bitwise.
        let mut reg = r;
        for i in (0..4).rev() {
            let b = r >> i & 1;
            let fb = (reg >> 3 & 1) ^ b;
            reg = (reg << 1) & 0xF;
            if fb != 0 {
                reg ^= 3;
            }
        }
        assert_eq!(reg, 0);
        assert_ne!(r, 0);
    }

    #[test]
    fn framer_ts0_words() {
        let mut fr = Framer::new(true);
        let mut words = Vec::new();
        for _ in 0..32 {
            let mut f = [0u8; 32];
            fr.frame(&mut f);
            words.push(f[0]);
        }
        for (i, w) in words.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(w & 0x7F, FAS, "frame {i}");
            } else {
                assert_eq!(w & 0x40, 0x40, "frame {i}");
                assert_eq!(w & 0x1F, 0x1F);
            }
        }
        let mf: Vec<u8> = (0..6).map(|k| words[16 + 2 * k + 1] >> 7).collect();
        assert_eq!(mf, MFAS);
        assert_eq!(words[16 + 13] >> 7, 1, "E bit: no error");
    }

    #[test]
    fn aligns_and_stays_clean() {
        let mut l = BackToBack::new(true, 7);
        l.run(64);
        for p in [&l.a, &l.b] {
            assert!(p.span.is_up(), "{:?}", p.rx.alarms());
            assert!(p.rx.alarms().is_clear());
            assert!(p.rx.multiframe_aligned());
        }
        let c0 = l.b.rx.counters;
        l.run(8000);
        assert_eq!(l.b.rx.counters.crc4_errors, c0.crc4_errors);
        assert_eq!(l.b.rx.counters.crc4_errors, 0);
        assert_eq!(l.b.rx.counters.fas_errors, 0);
        assert_eq!(l.micros(), (8064) * 125);
    }

    #[test]
    fn crc4_error_detected_and_reported_in_ebits() {
        let mut l = BackToBack::new(true, 7);
        l.run(64);
        l.imp.dchan_flip_per_64k = 65536; // every frame: flip a TS16 bit
        l.run(16);
        l.imp.dchan_flip_per_64k = 0;
        l.run(64);
        assert!(l.b.rx.counters.crc4_errors >= 1, "{:?}", l.b.rx.counters);
        assert!(l.a.rx.counters.ebit_errors >= 1, "{:?}", l.a.rx.counters);
        assert!(l.b.span.is_up());
    }

    #[test]
    fn los_raises_rai_at_far_end_then_recovers() {
        let mut l = BackToBack::new(true, 7);
        l.run(64);
        l.imp.cut = true;
        l.run(4);
        assert!(l.a.rx.alarms().contains(Alarms::LOS));
        assert!(l.b.rx.alarms().contains(Alarms::LOS));
        assert!(!l.a.span.is_up());
        l.imp.cut = false;
        l.imp.cut_b_to_a = true;
        l.run(4);
        // B's receiver sees A's A bit (A has lost signal) -> RAI at B.
        assert!(l.a.rx.alarms().contains(Alarms::LOS));
        assert!(
            l.b.rx.alarms().contains(Alarms::RAI),
            "{:?}",
            l.b.rx.alarms()
        );
        assert!(l.b.span.is_up(), "RAI alone keeps the span up");
        l.imp.cut_b_to_a = false;
        l.run(200);
        assert!(l.a.rx.alarms().is_clear(), "{:?}", l.a.rx.alarms());
        assert!(l.b.rx.alarms().is_clear(), "{:?}", l.b.rx.alarms());
    }

    #[test]
    fn ais_detected() {
        let mut l = BackToBack::new(false, 7);
        l.run(64);
        l.a.tx.ais = true;
        l.run(8);
        assert!(
            l.b.rx.alarms().contains(Alarms::AIS),
            "{:?}",
            l.b.rx.alarms()
        );
        assert!(!l.b.span.is_up());
        l.a.tx.ais = false;
        l.run(200);
        assert!(l.b.span.is_up(), "{:?}", l.b.rx.alarms());
    }

    #[test]
    fn slip_realigns() {
        let mut l = BackToBack::new(true, 7);
        l.run(64);
        let n = l.b.rx.counters.alignments;
        l.imp.slip_a_to_b = true;
        l.run(10);
        assert!(l.b.rx.alarms().contains(Alarms::LOF) || l.b.rx.counters.alignments > n);
        l.run(300);
        assert!(l.b.rx.counters.alignments > n);
        assert!(l.b.span.is_up());
    }

    #[test]
    fn bchannel_and_dchannel_cross() {
        let mut l = BackToBack::new(true, 7);
        l.run(64);
        let ramp: Vec<u8> = (0..160).map(|i| i as u8).collect();
        l.a.span.write_block(ChanId(1), &ramp).unwrap();
        l.a.span.write_block(ChanId(31), &ramp).unwrap();
        l.a.span.send_frame(&[0x02, 0x01, 0x7F]);
        l.a.span
            .send_frame(&[0x02, 0x01, 0x00, 0x00, 0xFF, 0x7E, 0x3F]);
        l.b.span.send_frame(&[0x00, 0x01, 0x73]);
        l.run(400);
        // Find the ramp in B's channel 1 stream.
        let mut got = Vec::new();
        while let Some(b) = l.b.span.read_block(ChanId(1)).unwrap() {
            got.extend(b);
        }
        let pos = got.windows(160).position(|w| w == ramp.as_slice());
        assert!(pos.is_some(), "ramp not found on channel 1");
        let mut got31 = Vec::new();
        while let Some(b) = l.b.span.read_block(ChanId(31)).unwrap() {
            got31.extend(b);
        }
        assert!(got31.windows(160).any(|w| w == ramp.as_slice()));
        assert_eq!(l.b.span.recv_frame(), Some(vec![0x02, 0x01, 0x7F]));
        assert_eq!(
            l.b.span.recv_frame(),
            Some(vec![0x02, 0x01, 0x00, 0x00, 0xFF, 0x7E, 0x3F])
        );
        assert_eq!(l.a.span.recv_frame(), Some(vec![0x00, 0x01, 0x73]));
        assert_eq!(l.a.d_errors + l.b.d_errors, 0);
    }

    #[test]
    fn dchannel_bit_errors_drop_frames() {
        let mut l = BackToBack::new(true, 11);
        l.run(64);
        l.imp.dchan_flip_per_64k = 65536;
        for _ in 0..5 {
            l.a.span
                .send_frame(&[0x02, 0x01, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
        }
        l.run(200);
        assert_eq!(l.b.span.recv_frame(), None);
        assert!(l.b.d_errors > 0);
    }
}
