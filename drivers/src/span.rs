//! The span model: an E1 with 31 usable timeslots, B-channels carrying
//! A-law sample streams and one D-channel carrying HDLC frames, plus the
//! span's alarms and its up/down state.
//!
//! Audio moves in 1 ms chunks of [`CHUNK`] samples (the DAHDI granularity)
//! between the line side (`line_rx_chunk` / `line_tx_chunk`, driven by the
//! card or simulator clock) and the user side, which reads and writes whole
//! blocks of a configurable size (default 160 = 20 ms, a multiple of 8).

use std::collections::VecDeque;

use crate::ChanId;

/// Samples per DAHDI chunk (1 ms at 8 kHz).
pub const CHUNK: usize = 8;
/// Default user block size (20 ms).
pub const DEFAULT_BLOCK: usize = 160;
/// Timeslots of an E1 frame (TS0 is framing).
pub const E1_TIMESLOTS: usize = 32;
/// A-law code closest to zero (positive), what an idle B-channel carries.
pub const ALAW_IDLE: u8 = 0xD5;

/// Span alarms as a bit set (DAHDI names in the docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Alarms(pub u8);

impl Alarms {
    /// Loss of signal (part of DAHDI RED).
    pub const LOS: Alarms = Alarms(1);
    /// Alarm indication signal, all ones received (DAHDI BLUE).
    pub const AIS: Alarms = Alarms(2);
    /// Remote alarm indication, far end lost our frame (DAHDI YELLOW).
    pub const RAI: Alarms = Alarms(4);
    /// Loss of frame alignment (part of DAHDI RED).
    pub const LOF: Alarms = Alarms(8);
    /// No alarm.
    pub const NONE: Alarms = Alarms(0);

    /// True if every bit of `o` is set.
    pub fn contains(self, o: Alarms) -> bool {
        self.0 & o.0 == o.0
    }
    /// True if no alarm is set.
    pub fn is_clear(self) -> bool {
        self.0 == 0
    }
    /// Set or clear `o`.
    pub fn set(&mut self, o: Alarms, on: bool) {
        if on {
            self.0 |= o.0
        } else {
            self.0 &= !o.0
        }
    }
    /// From DAHDI `alarms` bits (`DAHDI_SPANSTAT`): LOS 0x100, LFA 0x200,
    /// YELLOW 4, BLUE 0x10; a RED (8) without a reason counts as LOS.
    pub fn from_dahdi(v: u32) -> Self {
        let mut a = Alarms::NONE;
        a.set(Self::LOS, v & 0x100 != 0 || (v & 8 != 0 && v & 0x300 == 0));
        a.set(Self::LOF, v & 0x200 != 0);
        a.set(Self::RAI, v & 4 != 0);
        a.set(Self::AIS, v & 0x10 != 0);
        a
    }

    /// DAHDI `alarms` bits (RED 8, YELLOW 4, BLUE 0x10, LOS 0x100, LFA 0x200).
    pub fn to_dahdi(self) -> u32 {
        let mut v = 0;
        if self.contains(Self::LOS) || self.contains(Self::LOF) {
            v |= 8;
        }
        if self.contains(Self::RAI) {
            v |= 4;
        }
        if self.contains(Self::AIS) {
            v |= 0x10;
        }
        if self.contains(Self::LOS) {
            v |= 0x100;
        }
        if self.contains(Self::LOF) {
            v |= 0x200;
        }
        v
    }
}

/// What a timeslot is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// TS0 framing (never a channel).
    Framing,
    /// A B-channel (A-law voice).
    Bearer,
    /// The D-channel (HDLC).
    DChannel,
    /// Not configured.
    Unused,
}

/// Errors of the span model.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpanError {
    /// Block size not a positive multiple of 8 or above 8192.
    #[error("block size {0} is not a multiple of 8 in 8..=8192")]
    BadBlockSize(usize),
    /// Channel out of 1..=31 or not a B-channel.
    #[error("channel {0} is not a B-channel of this span")]
    NotBearer(u16),
    /// Write of a block whose length differs from the block size.
    #[error("write of {got} samples, block size is {want}")]
    BadWriteLen {
        /// Samples given.
        got: usize,
        /// Block size.
        want: usize,
    },
}

#[derive(Debug)]
struct Bearer {
    rx: VecDeque<u8>,
    tx: VecDeque<u8>,
    underruns: u64,
    overruns: u64,
}

/// One E1 span: B-channel sample buffers, D-channel frame queues, alarms.
#[derive(Debug)]
pub struct Span {
    kinds: [SlotKind; E1_TIMESLOTS],
    bearers: Vec<Option<Bearer>>,
    block: usize,
    max_blocks: usize,
    alarms: Alarms,
    d_rx: VecDeque<Vec<u8>>,
    d_tx: VecDeque<Vec<u8>>,
}

impl Span {
    /// The E1 PRI default: B-channels on 1-15 and 17-31, D on 16.
    pub fn e1_pri() -> Self {
        let mut kinds = [SlotKind::Bearer; E1_TIMESLOTS];
        kinds[0] = SlotKind::Framing;
        kinds[16] = SlotKind::DChannel;
        Self::with_slots(kinds)
    }

    /// A span with an explicit timeslot plan (`kinds[0]` is forced to framing).
    pub fn with_slots(mut kinds: [SlotKind; E1_TIMESLOTS]) -> Self {
        kinds[0] = SlotKind::Framing;
        let bearers = kinds
            .iter()
            .map(|k| {
                (*k == SlotKind::Bearer).then(|| Bearer {
                    rx: VecDeque::new(),
                    tx: VecDeque::new(),
                    underruns: 0,
                    overruns: 0,
                })
            })
            .collect();
        Self {
            kinds,
            bearers,
            block: DEFAULT_BLOCK,
            max_blocks: 4,
            alarms: Alarms::NONE,
            d_rx: VecDeque::new(),
            d_tx: VecDeque::new(),
        }
    }

    /// The timeslot plan.
    pub fn slot_kind(&self, ts: usize) -> SlotKind {
        self.kinds.get(ts).copied().unwrap_or(SlotKind::Unused)
    }

    /// The D-channel timeslot, if any.
    pub fn dchan(&self) -> Option<usize> {
        self.kinds.iter().position(|k| *k == SlotKind::DChannel)
    }

    /// B-channel numbers in order.
    pub fn bearers(&self) -> impl Iterator<Item = ChanId> + '_ {
        (1..E1_TIMESLOTS)
            .filter(|&t| self.kinds[t] == SlotKind::Bearer)
            .map(|t| ChanId(t as u16))
    }

    /// Sets the user block size (multiple of 8, at most 8192) and the number
    /// of blocks buffered before the oldest samples are dropped.
    pub fn set_block_size(&mut self, block: usize, max_blocks: usize) -> Result<(), SpanError> {
        if block == 0 || !block.is_multiple_of(CHUNK) || block > 8192 {
            return Err(SpanError::BadBlockSize(block));
        }
        self.block = block;
        self.max_blocks = max_blocks.max(1);
        Ok(())
    }

    /// Current block size.
    pub fn block_size(&self) -> usize {
        self.block
    }

    /// Current alarms.
    pub fn alarms(&self) -> Alarms {
        self.alarms
    }

    /// Updates the alarms (the framer calls this).
    pub fn set_alarms(&mut self, a: Alarms) {
        self.alarms = a;
    }

    /// A span is up when it has no LOS/LOF/AIS (RAI alone keeps it up).
    pub fn is_up(&self) -> bool {
        self.alarms.0 & (Alarms::LOS.0 | Alarms::LOF.0 | Alarms::AIS.0) == 0
    }

    fn bearer(&mut self, ch: ChanId) -> Result<&mut Bearer, SpanError> {
        self.bearers
            .get_mut(usize::from(ch.0))
            .and_then(|b| b.as_mut())
            .ok_or(SpanError::NotBearer(ch.0))
    }

    /// Line side: 8 received samples for channel `ch`.
    pub fn line_rx_chunk(&mut self, ch: ChanId, chunk: &[u8; CHUNK]) -> Result<(), SpanError> {
        let limit = self.block * self.max_blocks;
        let b = self.bearer(ch)?;
        b.rx.extend(chunk.iter());
        while b.rx.len() > limit {
            b.rx.pop_front();
            b.overruns += 1;
        }
        Ok(())
    }

    /// Line side: the next 8 samples to send on `ch` (idle A-law on underrun).
    pub fn line_tx_chunk(&mut self, ch: ChanId) -> Result<[u8; CHUNK], SpanError> {
        let b = self.bearer(ch)?;
        let mut out = [ALAW_IDLE; CHUNK];
        if b.tx.len() >= CHUNK {
            for o in out.iter_mut() {
                *o = b.tx.pop_front().unwrap_or(ALAW_IDLE);
            }
        } else if !b.tx.is_empty() {
            b.underruns += 1;
            for o in out.iter_mut() {
                *o = b.tx.pop_front().unwrap_or(ALAW_IDLE);
            }
        }
        Ok(out)
    }

    /// User side: one whole received block, when available.
    pub fn read_block(&mut self, ch: ChanId) -> Result<Option<Vec<u8>>, SpanError> {
        let n = self.block;
        let b = self.bearer(ch)?;
        if b.rx.len() < n {
            return Ok(None);
        }
        Ok(Some(b.rx.drain(..n).collect()))
    }

    /// User side: queue one block for transmission.
    pub fn write_block(&mut self, ch: ChanId, block: &[u8]) -> Result<(), SpanError> {
        let want = self.block;
        if block.len() != want {
            return Err(SpanError::BadWriteLen {
                got: block.len(),
                want,
            });
        }
        let limit = want * self.max_blocks;
        let b = self.bearer(ch)?;
        b.tx.extend(block.iter());
        while b.tx.len() > limit {
            b.tx.pop_front();
            b.overruns += 1;
        }
        Ok(())
    }

    /// (underruns, overruns) counters of a B-channel.
    pub fn counters(&mut self, ch: ChanId) -> Result<(u64, u64), SpanError> {
        let b = self.bearer(ch)?;
        Ok((b.underruns, b.overruns))
    }

    /// Line side: a good D-channel frame arrived (without FCS).
    pub fn line_rx_frame(&mut self, frame: Vec<u8>) {
        self.d_rx.push_back(frame);
    }

    /// Line side: the next D-channel frame to transmit.
    pub fn line_tx_frame(&mut self) -> Option<Vec<u8>> {
        self.d_tx.pop_front()
    }

    /// User side: send a D-channel frame (without FCS).
    pub fn send_frame(&mut self, frame: &[u8]) {
        self.d_tx.push_back(frame.to_vec());
    }

    /// User side: next received D-channel frame.
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        self.d_rx.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e1_plan() {
        let s = Span::e1_pri();
        assert_eq!(s.dchan(), Some(16));
        let b: Vec<u16> = s.bearers().map(|c| c.0).collect();
        assert_eq!(b.len(), 30);
        assert!(!b.contains(&16) && !b.contains(&0));
        assert_eq!(s.slot_kind(0), SlotKind::Framing);
        assert_eq!(s.slot_kind(99), SlotKind::Unused);
    }

    #[test]
    fn blocks_from_chunks() {
        let mut s = Span::e1_pri();
        assert_eq!(s.set_block_size(12, 4), Err(SpanError::BadBlockSize(12)));
        s.set_block_size(16, 4).unwrap();
        let ch = ChanId(1);
        s.line_rx_chunk(ch, &[1; 8]).unwrap();
        assert_eq!(s.read_block(ch).unwrap(), None);
        s.line_rx_chunk(ch, &[2; 8]).unwrap();
        let b = s.read_block(ch).unwrap().unwrap();
        assert_eq!(&b[..8], &[1; 8]);
        assert_eq!(&b[8..], &[2; 8]);
        assert_eq!(
            s.line_rx_chunk(ChanId(16), &[0; 8]),
            Err(SpanError::NotBearer(16))
        );
        assert_eq!(
            s.line_rx_chunk(ChanId(40), &[0; 8]),
            Err(SpanError::NotBearer(40))
        );
    }

    #[test]
    fn tx_idle_and_overrun() {
        let mut s = Span::e1_pri();
        s.set_block_size(8, 2).unwrap();
        let ch = ChanId(5);
        assert_eq!(s.line_tx_chunk(ch).unwrap(), [ALAW_IDLE; 8]);
        assert!(matches!(
            s.write_block(ch, &[0; 9]),
            Err(SpanError::BadWriteLen { .. })
        ));
        for i in 0..3u8 {
            s.write_block(ch, &[i; 8]).unwrap();
        }
        // Oldest block dropped.
        assert_eq!(s.line_tx_chunk(ch).unwrap(), [1; 8]);
        assert_eq!(s.line_tx_chunk(ch).unwrap(), [2; 8]);
        assert_eq!(s.counters(ch).unwrap().1, 8);
    }

    #[test]
    fn alarms_map_to_dahdi() {
        let mut s = Span::e1_pri();
        assert!(s.is_up());
        let mut a = Alarms::NONE;
        a.set(Alarms::RAI, true);
        s.set_alarms(a);
        assert!(s.is_up());
        assert_eq!(a.to_dahdi(), 4);
        a.set(Alarms::LOF, true);
        s.set_alarms(a);
        assert!(!s.is_up());
        assert_eq!(a.to_dahdi(), 4 | 8 | 0x200);
        assert_eq!(Alarms::AIS.to_dahdi(), 0x10);
        assert_eq!(Alarms::from_dahdi(a.to_dahdi()), a);
        assert_eq!(Alarms::from_dahdi(0x10), Alarms::AIS);
        assert_eq!(Alarms::from_dahdi(8), Alarms::LOS);
        assert_eq!(Alarms::from_dahdi(0), Alarms::NONE);
    }
}
