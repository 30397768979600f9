//! The transcoding path of a session: decode -> 8 kHz linear -> encode.
//!
//! A session whose two legs speak different codecs (or the same codec at a
//! different ptime or payload type) carries a [`Transcoder`]. Per direction
//! (A -> B and B -> A) it holds the decoder of the receiving leg's codec, the
//! encoder of the sending leg's codec, a linear PCM buffer and the output
//! stream state. An RTP packet from leg X:
//!
//! 1. audio (X's payload type): decoded into the direction's PCM buffer; then
//!    as many packets as the buffer holds whole output packets of Y's ptime
//!    (10/20/30 ms) are encoded with Y's codec and emitted with Y's payload
//!    type, the SSRC Y's peer knows us by, a sequence number that counts
//!    output packets and a timestamp in 8 kHz samples. The buffer keeps the
//!    remainder, so 20 ms in / 30 ms out (and the reverse) repacketises
//!    without gaps;
//! 2. telephone-event (X's `dtmf_pt`, RFC 4733): passed through unchanged but
//!    for the header: payload type remapped to Y's `dtmf_pt` (dropped if Y
//!    has none), SSRC/sequence in Y's output stream, timestamp shifted by the
//!    same offset as the audio so the event lines up with the speech;
//! 3. anything else: dropped (counted as malformed by the worker).
//!
//! Loss: a forward jump of the input timestamp (lost packets) advances the
//! output timestamp by the same amount; buffered samples are kept. A new input
//! SSRC (re-INVITE, another fork) restarts the input mapping and sets the
//! marker on the next output packet.
//!
//! Memory: every codec state and buffer is allocated when the transcoder is
//! built (on the control side, in `Dataplane::set_codec`) and moved to the
//! worker in a command; the packet path never allocates. No clock reads.

use crate::codec::g711::{Law, G711};
use crate::codec::g729::G729A;
use crate::codec::Codec;
use crate::wire::{rtp, Pt, Ssrc};

/// A codec the transcoder can decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law (PCMU).
    Pcmu,
    /// G.711 A-law (PCMA).
    Pcma,
    /// G.729 / Annex A (bitstream compatible), 8 kbit/s.
    G729,
}

impl CodecKind {
    /// The RFC 3551 static payload type.
    pub const fn static_pt(self) -> u8 {
        match self {
            CodecKind::Pcmu => 0,
            CodecKind::Pcma => 8,
            CodecKind::G729 => 18,
        }
    }

    /// Lower-case name as used in config and JSON (`pcmu`, `pcma`, `g729`).
    pub const fn name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "pcmu",
            CodecKind::Pcma => "pcma",
            CodecKind::G729 => "g729",
        }
    }
}

/// What one leg of a session speaks, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LegCodec {
    /// The audio codec.
    pub codec: CodecKind,
    /// Its RTP payload type on this leg.
    pub pt: u8,
    /// Packet duration we send on this leg: 10, 20 or 30 ms.
    pub ptime_ms: u16,
    /// The telephone-event payload type on this leg, if negotiated.
    pub dtmf_pt: Option<u8>,
}

impl LegCodec {
    /// `codec` at its static payload type, 20 ms, no telephone-event.
    pub const fn new(codec: CodecKind) -> LegCodec {
        LegCodec {
            codec,
            pt: codec.static_pt(),
            ptime_ms: 20,
            dtmf_pt: None,
        }
    }

    /// Whether two legs can be joined by the zero-copy relay (no transcoding):
    /// same codec, payload types and packetisation.
    pub fn relay_compatible(&self, other: &LegCodec) -> bool {
        self == other
    }
}

/// Why a leg codec cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// Caller error: ptime other than 10, 20 or 30 ms.
    #[error("ptime {0} ms is not supported for transcoding (10, 20 or 30)")]
    BadPtime(u16),
    /// Caller error: payload type above 127.
    #[error("payload type {0} is out of range (0..=127)")]
    BadPt(u8),
}

/// Largest number of samples one input packet may decode to (120 ms).
pub const MAX_IN_SAMPLES: usize = 960;
/// Largest output packet (30 ms).
const MAX_OUT_SAMPLES: usize = 240;
/// PCM buffer per direction: one maximal input plus a partial output packet.
const PCM_CAP: usize = MAX_IN_SAMPLES + MAX_OUT_SAMPLES;
/// Largest RTP packet the transcoder emits (header + 30 ms of G.711).
pub const MAX_OUT_PACKET: usize = rtp::HEADER_LEN + MAX_OUT_SAMPLES;
/// A forward timestamp jump larger than this (in samples, 2 s) is treated as
/// a stream restart rather than as loss.
const MAX_GAP: u32 = 16_000;

/// One direction's codec half.
enum Engine {
    G711(G711),
    G729(Box<G729A>),
}

impl Engine {
    fn new(kind: CodecKind) -> Engine {
        match kind {
            CodecKind::Pcmu => Engine::G711(G711::new(Law::Mu)),
            CodecKind::Pcma => Engine::G711(G711::new(Law::A)),
            CodecKind::G729 => Engine::G729(Box::default()),
        }
    }

    fn codec(&mut self) -> &mut dyn Codec {
        match self {
            Engine::G711(c) => c,
            Engine::G729(c) => &mut **c,
        }
    }
}

/// The output stream of one direction.
#[derive(Debug, Clone, Copy)]
struct Out {
    ssrc: Ssrc,
    seq: u16,
    /// Timestamp of the next audio packet.
    ts: u32,
    marker: bool,
}

/// One direction: input leg's decoder, output leg's encoder, PCM buffer.
struct Direction {
    input: LegCodec,
    output: LegCodec,
    dec: Engine,
    enc: Engine,
    pcm: Box<[i16; PCM_CAP]>,
    pending: usize,
    /// Input SSRC and the timestamp expected next from it.
    source: Option<(Ssrc, u32)>,
    out: Out,
}

/// Counters of one transcode step, added up by the worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Samples decoded.
    pub samples: u64,
    /// Packets emitted.
    pub emitted: u64,
}

/// What became of one input packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Consumed; `Work` says how much was done (possibly nothing emitted yet).
    Done(Work),
    /// Not audio nor telephone-event of the leg, or an undecodable payload.
    Rejected,
}

/// Both directions of a transcoding session (see the module docs).
pub struct Transcoder {
    /// `dirs[0]`: A -> B, `dirs[1]`: B -> A.
    dirs: [Direction; 2],
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("a", &self.dirs[0].input)
            .field("b", &self.dirs[1].input)
            .finish()
    }
}

fn check(c: &LegCodec) -> Result<(), TranscodeError> {
    if !matches!(c.ptime_ms, 10 | 20 | 30) {
        return Err(TranscodeError::BadPtime(c.ptime_ms));
    }
    for pt in std::iter::once(c.pt).chain(c.dtmf_pt) {
        if pt > 127 {
            return Err(TranscodeError::BadPt(pt));
        }
    }
    Ok(())
}

impl Transcoder {
    /// Build (and allocate) a transcoder between leg A speaking `a` and leg B
    /// speaking `b`. `ssrc_a`/`ssrc_b` are the SSRCs each leg's peer knows us
    /// by; `seed` picks the initial sequence numbers and timestamps.
    pub fn new(
        a: LegCodec,
        b: LegCodec,
        ssrc_a: Ssrc,
        ssrc_b: Ssrc,
        seed: u32,
    ) -> Result<Transcoder, TranscodeError> {
        check(&a)?;
        check(&b)?;
        let dir = |input: LegCodec, output: LegCodec, ssrc: Ssrc, seed: u32| Direction {
            input,
            output,
            dec: Engine::new(input.codec),
            enc: Engine::new(output.codec),
            pcm: Box::new([0; PCM_CAP]),
            pending: 0,
            source: None,
            out: Out {
                ssrc,
                seq: seed as u16,
                ts: seed.rotate_left(13),
                marker: true,
            },
        };
        Ok(Transcoder {
            dirs: [
                dir(a, b, ssrc_b, seed),
                dir(b, a, ssrc_a, seed.rotate_left(7) ^ 0x5a5a_a5a5),
            ],
        })
    }

    /// The codecs of leg A and leg B.
    pub fn legs(&self) -> (LegCodec, LegCodec) {
        (self.dirs[0].input, self.dirs[1].input)
    }

    /// Transcode one RTP packet `packet` (already validated by the caller as
    /// RTP) received on leg A (`from_a`) or B. Each packet to send on the
    /// other leg is passed to `emit` (valid only during the call).
    pub fn handle_rtp(&mut self, from_a: bool, packet: &[u8], emit: &mut dyn FnMut(&[u8])) -> Step {
        let d = &mut self.dirs[usize::from(!from_a)];
        let Ok(p) = rtp::Packet::new_checked(packet) else {
            return Step::Rejected;
        };
        let pt = p.payload_type().get();
        if pt == d.input.pt {
            d.audio(&p, emit)
        } else if d.input.dtmf_pt == Some(pt) {
            d.event(&p, emit)
        } else {
            Step::Rejected
        }
    }
}

impl Direction {
    fn audio(&mut self, p: &rtp::Packet<&[u8]>, emit: &mut dyn FnMut(&[u8])) -> Step {
        let (ssrc, ts) = (p.ssrc(), p.timestamp());
        let mut gap = 0;
        match self.source {
            Some((s, expected)) if s == ssrc => {
                gap = ts.wrapping_sub(expected);
                if gap >= u32::MAX / 2 {
                    // Late or duplicate packet: its audio is already covered.
                    return Step::Done(Work::default());
                }
                if gap > MAX_GAP {
                    self.out.marker = true;
                    gap = 0;
                }
            }
            _ => self.out.marker = true,
        }
        let room = PCM_CAP - self.pending;
        let n = match self.dec.codec().decode(
            p.payload(),
            &mut self.pcm[self.pending..][..room.min(MAX_IN_SAMPLES)],
        ) {
            Ok(n) => n,
            Err(_) => return Step::Rejected,
        };
        // Lost input: keep the output clock in step with it.
        self.out.ts = self.out.ts.wrapping_add(gap);
        self.source = Some((ssrc, ts.wrapping_add(n as u32)));
        self.pending += n;
        let mut work = Work {
            samples: n as u64,
            emitted: 0,
        };
        let frame = usize::from(self.output.ptime_ms) * 8;
        let mut buf = [0u8; MAX_OUT_PACKET];
        let mut start = 0;
        while self.pending - start >= frame {
            let body = &mut buf[rtp::HEADER_LEN..];
            let Ok(len) = self
                .enc
                .codec()
                .encode(&self.pcm[start..start + frame], body)
            else {
                break;
            };
            self.header(&mut buf, Pt::new(self.output.pt), self.out.ts);
            self.out.ts = self.out.ts.wrapping_add(frame as u32);
            emit(&buf[..rtp::HEADER_LEN + len]);
            work.emitted += 1;
            start += frame;
        }
        self.pcm.copy_within(start..self.pending, 0);
        self.pending -= start;
        Step::Done(work)
    }

    fn event(&mut self, p: &rtp::Packet<&[u8]>, emit: &mut dyn FnMut(&[u8])) -> Step {
        let Some(out_pt) = self.output.dtmf_pt else {
            return Step::Done(Work::default());
        };
        let payload = p.payload();
        if payload.len() > MAX_OUT_PACKET - rtp::HEADER_LEN {
            return Step::Rejected;
        }
        // Align with the audio: the input sample at the head of the buffer
        // goes out at `out.ts`.
        let ts = match self.source {
            Some((s, next_in)) if s == p.ssrc() => {
                let head_in = next_in.wrapping_sub(self.pending as u32);
                p.timestamp()
                    .wrapping_sub(head_in)
                    .wrapping_add(self.out.ts)
            }
            _ => self.out.ts,
        };
        let mut buf = [0u8; MAX_OUT_PACKET];
        buf[rtp::HEADER_LEN..][..payload.len()].copy_from_slice(payload);
        let marker = p.marker();
        self.header(&mut buf, Pt::new(out_pt), ts);
        if marker {
            buf[1] |= 0x80;
        }
        emit(&buf[..rtp::HEADER_LEN + payload.len()]);
        Step::Done(Work {
            samples: 0,
            emitted: 1,
        })
    }

    fn header(&mut self, buf: &mut [u8], pt: Pt, ts: u32) {
        let repr = rtp::Repr {
            marker: self.out.marker,
            payload_type: pt,
            sequence_number: self.out.seq,
            timestamp: ts,
            ssrc: self.out.ssrc,
        };
        // `buf` is at least HEADER_LEN long (MAX_OUT_PACKET), so emit cannot fail.
        let _ = repr.emit(&mut buf[..rtp::HEADER_LEN]);
        self.out.seq = self.out.seq.wrapping_add(1);
        self.out.marker = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g711;

    fn pkt(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; rtp::HEADER_LEN + payload.len()];
        rtp::Repr {
            marker: false,
            payload_type: Pt::new(pt),
            sequence_number: seq,
            timestamp: ts,
            ssrc: Ssrc(ssrc),
        }
        .emit(&mut b)
        .unwrap();
        b[rtp::HEADER_LEN..].copy_from_slice(payload);
        b
    }

    fn run(t: &mut Transcoder, from_a: bool, p: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let step = t.handle_rtp(from_a, p, &mut |b| out.push(b.to_vec()));
        assert!(matches!(step, Step::Done(_)), "{step:?}");
        out
    }

    fn tone(n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16
            })
            .collect()
    }

    #[test]
    fn pcmu_to_pcma_repacketises_20_to_30() {
        let a = LegCodec::new(CodecKind::Pcmu);
        let b = LegCodec {
            ptime_ms: 30,
            ..LegCodec::new(CodecKind::Pcma)
        };
        let mut t = Transcoder::new(a, b, Ssrc(0xa), Ssrc(0xb), 1).unwrap();
        let mut got = Vec::new();
        let mut seqs = Vec::new();
        let mut tss = Vec::new();
        for i in 0..6u16 {
            let pcm = tone(160, 160 * usize::from(i));
            let mut mu = vec![0u8; 160];
            g711::encode_ulaw(&pcm, &mut mu);
            for o in run(&mut t, true, &pkt(0, 7, i, 160 * u32::from(i), &mu)) {
                let p = rtp::Packet::new_checked(&o[..]).unwrap();
                assert_eq!(p.payload_type(), Pt::PCMA);
                assert_eq!(p.ssrc(), Ssrc(0xb));
                assert_eq!(p.payload().len(), 240);
                seqs.push(p.sequence_number());
                tss.push(p.timestamp());
                got.extend_from_slice(p.payload());
            }
        }
        // 6 x 20 ms in = 4 x 30 ms out, contiguous.
        assert_eq!(seqs.len(), 4);
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1));
        }
        for w in tss.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(240));
        }
        // µ-law -> linear -> A-law matches the direct table conversion.
        let pcm = tone(960, 0);
        let mut mu = vec![0u8; 960];
        g711::encode_ulaw(&pcm, &mut mu);
        let want: Vec<u8> = mu
            .iter()
            .map(|&u| g711::linear_to_alaw(g711::ulaw_to_linear(u)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn pcmu_g729_both_ways_and_dtmf() {
        let a = LegCodec {
            dtmf_pt: Some(101),
            ..LegCodec::new(CodecKind::Pcmu)
        };
        let b = LegCodec {
            dtmf_pt: Some(96),
            ..LegCodec::new(CodecKind::G729)
        };
        let mut t = Transcoder::new(a, b, Ssrc(0xa), Ssrc(0xb), 99).unwrap();
        let mut mu = vec![0u8; 160];
        g711::encode_ulaw(&tone(160, 0), &mut mu);
        let out = run(&mut t, true, &pkt(0, 7, 1, 1000, &mu));
        assert_eq!(out.len(), 1);
        let p = rtp::Packet::new_checked(&out[0][..]).unwrap();
        assert_eq!((p.payload_type(), p.payload().len()), (Pt::G729, 20));
        assert!(p.marker(), "first packet of the stream is marked");
        let audio_ts = p.timestamp();
        // An event 80 samples into that packet's audio keeps its offset.
        let ev = [5u8, 0x0a, 0x00, 0xa0];
        let out = run(&mut t, true, &pkt(101, 7, 2, 1080, &ev));
        let p = rtp::Packet::new_checked(&out[0][..]).unwrap();
        assert_eq!(p.payload_type(), Pt::new(96));
        assert_eq!(p.payload(), &ev);
        assert_eq!(p.timestamp(), audio_ts.wrapping_add(80));
        // B -> A: 20 bytes of G.729 become 160 bytes of PCMU.
        let out = run(&mut t, false, &pkt(18, 9, 1, 0, &out_g729(&tone(160, 0))));
        let p = rtp::Packet::new_checked(&out[0][..]).unwrap();
        assert_eq!(
            (p.payload_type(), p.payload().len(), p.ssrc()),
            (Pt::PCMU, 160, Ssrc(0xa))
        );
        // Unknown payload type is rejected.
        let mut sink = |_: &[u8]| panic!("nothing emitted");
        assert_eq!(
            t.handle_rtp(true, &pkt(13, 7, 3, 1160, &[0]), &mut sink),
            Step::Rejected
        );
        // A bad G.729 length is rejected, not a panic.
        assert_eq!(
            t.handle_rtp(false, &pkt(18, 9, 2, 160, &[0; 7]), &mut sink),
            Step::Rejected
        );
    }

    fn out_g729(pcm: &[i16]) -> Vec<u8> {
        let mut c = G729A::new();
        let mut b = vec![0u8; pcm.len() / 8];
        c.encode(pcm, &mut b).unwrap();
        b
    }

    #[test]
    fn loss_advances_output_clock() {
        let mut t = Transcoder::new(
            LegCodec::new(CodecKind::Pcmu),
            LegCodec::new(CodecKind::Pcma),
            Ssrc(1),
            Ssrc(2),
            0,
        )
        .unwrap();
        let ts_of = |o: &Vec<Vec<u8>>| rtp::Packet::new_checked(&o[0][..]).unwrap().timestamp();
        let t0 = ts_of(&run(&mut t, true, &pkt(0, 7, 1, 0, &[0xff; 160])));
        // Packet 2 lost.
        let t2 = ts_of(&run(&mut t, true, &pkt(0, 7, 3, 320, &[0xff; 160])));
        assert_eq!(t2.wrapping_sub(t0), 320);
        // A duplicate emits nothing.
        assert!(run(&mut t, true, &pkt(0, 7, 3, 320, &[0xff; 160])).is_empty());
    }

    #[test]
    fn rejects_bad_config() {
        let bad = LegCodec {
            ptime_ms: 25,
            ..LegCodec::new(CodecKind::Pcmu)
        };
        assert_eq!(
            Transcoder::new(bad, LegCodec::new(CodecKind::G729), Ssrc(1), Ssrc(2), 0).err(),
            Some(TranscodeError::BadPtime(25))
        );
    }
}
