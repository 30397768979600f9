//! DTMF across a TDM interworking function: RFC 4733 telephone-events from the
//! engine become in-band tones on the line ([`ToLine`]), and tones heard on the
//! line become telephone-events towards the engine ([`FromLine`]). A B-channel
//! or an analog port has no other way to carry a digit, so every TDM IWF needs
//! both directions; they are written once here, per call, sans-IO: RTP payloads
//! and timestamps or linear line samples go in, tone samples or event payloads
//! come out. Nothing here reads a clock: RTP timestamps are the time base.
//!
//! To the line (RFC 4733 §2.5.2 receive rules): an event is named by its RTP
//! timestamp and code; each update says how long the key has been down so far,
//! and tone is generated up to that duration, so the line carries exactly as
//! much tone as the sender reported, paced by its packets. The end bit closes
//! the event (its two retransmissions are ignored); an event whose end packets
//! were all lost is closed when audio resumes well past its last update.
//! Audio packets that arrive while an event plays are dropped, as the sender's
//! own audio would otherwise double the line time.
//!
//! From the line (RFC 4733 §2.5.1 send rules): the Q.24 detector
//! ([`dataplane::dsp::dtmf::DtmfDetector`]) runs over each block before it is
//! packetised. When a digit begins, the block's packet becomes a
//! telephone-event (marker set, timestamp = the digit's start); each later
//! block of the digit sends an update with the grown duration; when it ends,
//! the end packet goes out three times, one per block interval. Audio is
//! replaced by events while the digit lasts, so the far end does not also hear
//! the tone.

use dataplane::dsp::dtmf::{
    digit_generator, Digit, DtmfDetector, DtmfEvent, EventError, EventPacket, EventRepr,
};
use dataplane::dsp::tones::ToneGenerator;

/// Payload type we offer for telephone-event when we make the offer.
pub const PT_EVENT: u8 = 101;

/// Per-tone level used when an event says volume 0 (RFC 4733 allows 0 dBm0,
/// too hot for a line): the generated pair stays between these bounds.
const LOUDEST_DBM0: f32 = -6.0;
const QUIETEST_DBM0: f32 = -30.0;

/// An update gap after which an event without its end packets is taken as over
/// (in samples: 100 ms).
const LOST_END_GAP: u32 = 800;

/// Longest stretch of tone one update may add (bounds a forged duration jump).
const MAX_STEP: u32 = 8000;

/// A tone being generated for one received event.
#[derive(Debug, Clone)]
struct Playing {
    ts: u32,
    event: u8,
    gen: ToneGenerator,
    /// Samples of tone already put on the line.
    done: u32,
}

/// RFC 4733 events in, in-band tone samples out (the engine -> line direction).
#[derive(Debug, Clone, Default)]
pub struct ToLine {
    cur: Option<Playing>,
    /// The last event closed by its end bit (so its retransmissions are ignored).
    closed: Option<(u32, u8)>,
    /// Digits put on the line so far (for status and tests).
    pub digits: u64,
}

impl ToLine {
    /// A converter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one telephone-event payload with its RTP timestamp; the tone samples
    /// it newly covers are appended to `out`. Events other than the 16 DTMF keys
    /// are ignored.
    pub fn event(&mut self, ts: u32, payload: &[u8], out: &mut Vec<i16>) -> Result<(), EventError> {
        let p = EventPacket::new_checked(payload)?;
        let (code, end, volume, duration) = (p.event(), p.end(), p.volume(), p.duration());
        let Some(digit) = Digit::from_event(code) else {
            return Ok(());
        };
        if self.closed == Some((ts, code)) {
            return Ok(());
        }
        if self
            .cur
            .as_ref()
            .is_some_and(|c| c.ts != ts || c.event != code)
        {
            self.cur = None;
        }
        let cur = self.cur.get_or_insert_with(|| {
            self.digits += 1;
            let level = (-(f32::from(volume)) - 3.0).clamp(QUIETEST_DBM0, LOUDEST_DBM0);
            Playing {
                ts,
                event: code,
                // A tone longer than any key press; the updates decide how much is used.
                gen: digit_generator(digit, level, level - 2.0, 60_000, 0),
                done: 0,
            }
        });
        let target = u32::from(duration);
        if target > cur.done {
            let n = (target - cur.done).min(MAX_STEP) as usize;
            let start = out.len();
            out.resize(start + n, 0);
            cur.gen.fill(&mut out[start..]);
            cur.done += n as u32;
        }
        if end {
            self.closed = Some((ts, code));
            self.cur = None;
        }
        Ok(())
    }

    /// An audio packet with timestamp `ts` arrived: true when it must be dropped
    /// because an event is playing. An event whose updates stopped more than
    /// 100 ms before `ts` (all end packets lost) is closed here.
    pub fn audio(&mut self, ts: u32) -> bool {
        let Some(c) = &self.cur else {
            return false;
        };
        if ts.wrapping_sub(c.ts.wrapping_add(c.done)) as i32 > LOST_END_GAP as i32 {
            self.cur = None;
            return false;
        }
        true
    }

    /// An event is being played.
    pub fn active(&self) -> bool {
        self.cur.is_some()
    }
}

/// One telephone-event packet to send instead of a block's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOut {
    /// RTP timestamp: the digit's start.
    pub ts: u32,
    /// Marker bit (first packet of the event).
    pub marker: bool,
    /// The payload's meaning.
    pub repr: EventRepr,
}

impl EventOut {
    /// The 4-byte payload.
    pub fn payload(&self) -> [u8; 4] {
        let mut b = [0u8; 4];
        // Volume is 0..=63 by construction.
        let _ = self.repr.emit(&mut b);
        b
    }
}

#[derive(Debug, Clone, Copy)]
struct Sending {
    digit: Digit,
    ts: u32,
    /// Samples from the digit's start to the end of the last block sent.
    duration: u32,
    first: bool,
    /// End packets still to send (3 once the digit has ended).
    ends_left: u8,
}

/// Line samples in, telephone-events out (the line -> engine direction).
#[derive(Debug, Clone)]
pub struct FromLine {
    det: DtmfDetector,
    /// Samples fed to the detector so far.
    seen: u64,
    cur: Option<Sending>,
    /// Digits sent so far (for status and tests).
    pub digits: u64,
    /// Volume field of what we send (-dBm0).
    volume: u8,
}

impl Default for FromLine {
    fn default() -> Self {
        Self::new()
    }
}

impl FromLine {
    /// A converter with the default Q.24 detector.
    pub fn new() -> Self {
        Self {
            det: DtmfDetector::new(Default::default()),
            seen: 0,
            cur: None,
            digits: 0,
            volume: 10,
        }
    }

    /// Run the detector over one block of line audio that would be sent as RTP
    /// with timestamp `ts`. `Some` means: send this event packet instead of the
    /// block's audio.
    pub fn block(&mut self, pcm: &[i16], ts: u32) -> Option<EventOut> {
        let block_start = self.seen;
        let mut began = None;
        let mut ended = None;
        self.det.process(pcm, |e| match e {
            DtmfEvent::Begin { digit, at } => began = Some((digit, at)),
            DtmfEvent::End {
                digit, duration, ..
            } => ended = Some((digit, duration)),
        });
        self.seen += pcm.len() as u64;
        let n = pcm.len() as u32;
        if let Some((digit, dur)) = ended {
            if let Some(c) = self
                .cur
                .as_mut()
                .filter(|c| c.digit == digit && c.ends_left == 0)
            {
                c.duration = (dur as u32).max(c.duration);
                c.ends_left = 3;
            }
        }
        if let Some((digit, at)) = began {
            if self.cur.is_none_or(|c| c.ends_left > 0) {
                // A new digit (any end packets of the previous one are cut short).
                let back = block_start.saturating_sub(at) as u32;
                let within = at.saturating_sub(block_start) as u32;
                let start = ts.wrapping_sub(back).wrapping_add(within);
                self.digits += 1;
                self.cur = Some(Sending {
                    digit,
                    ts: start,
                    duration: ts.wrapping_add(n).wrapping_sub(start),
                    first: true,
                    ends_left: 0,
                });
                return self.cur.as_mut().map(|c| emit(c, false, self.volume));
            }
        }
        let volume = self.volume;
        let c = self.cur.as_mut()?;
        if c.ends_left > 0 {
            c.ends_left -= 1;
            let out = emit(c, true, volume);
            if c.ends_left == 0 {
                self.cur = None;
            }
            return Some(out);
        }
        c.duration = ts.wrapping_add(n).wrapping_sub(c.ts);
        Some(emit(c, false, volume))
    }

    /// A digit is being sent (its updates or end packets).
    pub fn active(&self) -> bool {
        self.cur.is_some()
    }
}

fn emit(c: &mut Sending, end: bool, volume: u8) -> EventOut {
    let marker = std::mem::replace(&mut c.first, false);
    EventOut {
        ts: c.ts,
        marker,
        repr: EventRepr {
            event: c.digit.event(),
            end,
            volume,
            duration: c.duration.min(u32::from(u16::MAX)) as u16,
        },
    }
}

/// The telephone-event payload type of an SDP audio section, if it has one.
pub fn event_pt(m: &crate::sdp::Media) -> Option<u8> {
    m.rtpmaps
        .iter()
        .find(|r| r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == 8000)
        .map(|r| r.pt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::dsp::dtmf::generate_digits;

    fn ev(code: u8, end: bool, duration: u16) -> [u8; 4] {
        EventOut {
            ts: 0,
            marker: false,
            repr: EventRepr {
                event: code,
                end,
                volume: 10,
                duration,
            },
        }
        .payload()
    }

    fn detect(pcm: &[i16]) -> String {
        let mut d = DtmfDetector::new(Default::default());
        let mut s = String::new();
        d.process(pcm, |e| {
            if let DtmfEvent::Begin { digit, .. } = e {
                s.push(digit.to_char());
            }
        });
        s
    }

    #[test]
    fn events_become_tone_of_the_reported_length_and_retransmitted_ends_add_nothing() {
        let mut t = ToLine::new();
        let mut line = Vec::new();
        for (i, d) in "19#".chars().enumerate() {
            let code = Digit::from_char(d).unwrap().event();
            let ts = 10_000 + i as u32 * 4000;
            for k in 1..=5u16 {
                t.event(ts, &ev(code, false, k * 160), &mut line).unwrap();
            }
            for _ in 0..3 {
                t.event(ts, &ev(code, true, 960), &mut line).unwrap();
            }
            assert!(!t.active());
            line.extend(std::iter::repeat_n(0i16, 400));
        }
        assert_eq!(line.len(), 3 * (960 + 400));
        assert_eq!(detect(&line), "19#");
        assert_eq!(t.digits, 3);
    }

    #[test]
    fn audio_is_dropped_during_an_event_and_a_lost_end_is_closed_by_later_audio() {
        let mut t = ToLine::new();
        let mut line = Vec::new();
        t.event(800, &ev(5, false, 160), &mut line).unwrap();
        assert!(t.audio(960), "audio during the event is dropped");
        assert!(
            !t.audio(800 + 160 + 1600),
            "100 ms after the last update: over"
        );
        assert!(!t.active());
        // Non-DTMF events (flash = 16) and short payloads.
        t.event(9000, &ev(16, false, 160), &mut line).unwrap();
        assert!(!t.active());
        assert!(t.event(9000, &[5, 0], &mut line).is_err());
    }

    #[test]
    fn in_band_digits_become_events_with_start_timestamp_updates_and_three_ends() {
        let mut pcm = vec![0i16; 800];
        generate_digits("4*", -12.0, 100, 100, &mut pcm);
        pcm.extend(std::iter::repeat_n(0i16, 800));
        let mut f = FromLine::new();
        let mut events: Vec<(u32, EventOut)> = Vec::new();
        for (i, block) in pcm.chunks(160).enumerate() {
            let ts = 5000 + i as u32 * 160;
            if let Some(e) = f.block(block, ts) {
                events.push((ts, e));
            }
        }
        let digits: Vec<(u8, u32)> = events
            .iter()
            .filter(|(_, e)| e.marker)
            .map(|(_, e)| (e.repr.event, e.ts))
            .collect();
        assert_eq!(digits.len(), 2, "{events:?}");
        assert_eq!(digits[0].0, Digit::from_char('4').unwrap().event());
        assert_eq!(digits[1].0, Digit::from_char('*').unwrap().event());
        // The first digit starts at sample 800 (ts 5800), to within one detector block.
        assert!((digits[0].1 as i64 - 5800).abs() <= 160, "{digits:?}");
        let ends: Vec<&EventOut> = events
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.repr.end)
            .collect();
        assert_eq!(ends.len(), 6, "three end packets per digit");
        for e in &ends {
            let ms = u32::from(e.repr.duration) / 8;
            assert!((80..=130).contains(&ms), "end duration {ms} ms");
        }
        // Updates grow.
        let first: Vec<u16> = events
            .iter()
            .filter(|(_, e)| e.ts == digits[0].1 && !e.repr.end)
            .map(|(_, e)| e.repr.duration)
            .collect();
        assert!(first.windows(2).all(|w| w[1] > w[0]), "{first:?}");
        assert_eq!(f.digits, 2);
        assert!(!f.active());
    }

    #[test]
    fn speech_like_noise_sends_no_event() {
        let mut x = 12345u32;
        let pcm: Vec<i16> = (0..16000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) / 8
            })
            .collect();
        let mut f = FromLine::new();
        assert!(pcm.chunks(160).all(|b| f.block(b, 0).is_none()));
    }
}
