//! RTP streams of the bench: what each call leg sends every 20 ms and what it measures on
//! what comes back. Sans-IO: packets are built into and parsed from caller buffers, and every
//! function takes the time it needs as an argument.
//!
//! Each sent packet carries real encoded audio (a looped clip encoded once with the dataplane's
//! G.711/G.729 encoders) and an RFC 8285 one-byte header extension (id 1) with the bench's
//! stream id, its own packet counter and the send time in microseconds. A relay that rewrites
//! only the fixed header (as Tandem's switch path does) keeps the extension, so the receiver
//! gets the exact one-way delay; without it (a transcoding path) delay is not measured and
//! loss and jitter still come from the RTP header.
//!
//! Received packets are matched to a stream by their source address (the gateway's media
//! address from SDP). Loss per stream is RFC 3550's: expected = highest extended sequence
//! number - first + 1, lost = expected - received; jitter is the RFC 3550 interarrival jitter
//! (of the path: computed from the send stamps when present).

use dataplane::codec::Codec as _;

use super::ua::Codec;

/// Packetisation interval.
pub const PTIME_MS: u64 = 20;
/// Samples per packet at 8 kHz.
pub const SAMPLES: u32 = 160;
/// The extension element id carrying the bench stamp.
const EXT_ID: u8 = 1;
/// `0xBEDE` one-byte-header extension profile (RFC 8285).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Fixed header + extension header + one 16-byte element padded to 20 bytes.
pub const HEADER_LEN: usize = 12 + 4 + 20;
/// RFC 4733 payload type offered with `--dtmf`.
pub const DTMF_PT: u8 = 101;

/// One second of encoded audio for `codec` (50 payloads of 20 ms): a 440 Hz + 1 kHz tone pair
/// with a slow amplitude envelope, so a decoder sees speech-like level changes.
pub fn clip(codec: Codec) -> Vec<Vec<u8>> {
    let pcm: Vec<i16> = (0..8000)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 2.0 * t).sin();
            let s = (2.0 * std::f64::consts::PI * 440.0 * t).sin() * 0.6
                + (2.0 * std::f64::consts::PI * 1000.0 * t).sin() * 0.3;
            (s * env * 8000.0) as i16
        })
        .collect();
    let mut out = Vec::with_capacity(50);
    match codec {
        Codec::Pcmu | Codec::Pcma => {
            for frame in pcm.chunks(SAMPLES as usize) {
                let mut p = vec![0u8; frame.len()];
                if codec == Codec::Pcmu {
                    dataplane::codec::g711::encode_ulaw(frame, &mut p);
                } else {
                    dataplane::codec::g711::encode_alaw(frame, &mut p);
                }
                out.push(p);
            }
        }
        Codec::G729 => {
            let mut enc = dataplane::codec::g729::G729A::new();
            for frame in pcm.chunks(SAMPLES as usize) {
                let mut p = vec![0u8; 20];
                let mut n = 0;
                for half in frame.chunks(80) {
                    n += enc.encode(half, &mut p[n..]).unwrap_or(0);
                }
                p.truncate(n.max(1));
                out.push(p);
            }
        }
    }
    out
}

/// The sending half of a stream.
#[derive(Debug, Clone)]
pub struct TxStream {
    pub id: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
    count: u32,
    pt: u8,
    /// DTMF digits still to send, and the packet index the next one starts at.
    dtmf: Vec<u8>,
    dtmf_at: u32,
    /// RTP timestamp of the event being sent (all its packets carry the event's start).
    dtmf_ts: u32,
}

impl TxStream {
    pub fn new(id: u32, pt: u8, dtmf: &str) -> TxStream {
        let ssrc = 0x5a5a_0000 ^ id.wrapping_mul(0x9E37_79B9);
        TxStream {
            id,
            ssrc,
            seq: (id.wrapping_mul(7919) & 0x7fff) as u16,
            ts: id.wrapping_mul(104_729),
            count: 0,
            pt,
            dtmf: dtmf.bytes().filter_map(dtmf_event).rev().collect(),
            dtmf_at: 50,
            dtmf_ts: 0,
        }
    }

    /// Packets sent.
    pub fn sent(&self) -> u32 {
        self.count
    }

    /// Builds the next 20 ms packet into `buf` (cleared first); `send_us` is the send time.
    /// Audio comes from `clip`; while a DTMF digit is due, RFC 4733 event packets replace it.
    pub fn next_packet(&mut self, clip: &[Vec<u8>], send_us: u64, buf: &mut Vec<u8>) {
        buf.clear();
        let (pt, marker, payload) = match self.dtmf_payload() {
            Some((m, p)) => {
                if m {
                    self.dtmf_ts = self.ts;
                }
                (DTMF_PT, m, p.to_vec())
            }
            None => {
                let p = if clip.is_empty() {
                    Vec::new()
                } else {
                    clip[self.count as usize % clip.len()].clone()
                };
                (self.pt, self.count == 0, p)
            }
        };
        buf.push(0x90); // V=2, X=1
        buf.push(pt | if marker { 0x80 } else { 0 });
        buf.extend_from_slice(&self.seq.to_be_bytes());
        let ts = if pt == DTMF_PT { self.dtmf_ts } else { self.ts };
        buf.extend_from_slice(&ts.to_be_bytes());
        buf.extend_from_slice(&self.ssrc.to_be_bytes());
        buf.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
        buf.extend_from_slice(&5u16.to_be_bytes());
        buf.push((EXT_ID << 4) | 15);
        buf.extend_from_slice(&self.id.to_be_bytes());
        buf.extend_from_slice(&self.count.to_be_bytes());
        buf.extend_from_slice(&send_us.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0]);
        buf.extend_from_slice(&payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(SAMPLES);
        self.count += 1;
    }

    /// An RFC 4733 event payload when a digit is due: 5 packets of a 100 ms event (the last 3
    /// with the end bit, as retransmissions), then 200 ms of audio before the next digit.
    fn dtmf_payload(&mut self) -> Option<(bool, [u8; 4])> {
        let digit = *self.dtmf.last()?;
        let k = self.count.checked_sub(self.dtmf_at)?;
        if k >= 15 {
            self.dtmf.pop();
            self.dtmf_at = self.count + 10;
            return None;
        }
        if k >= 5 {
            return None;
        }
        let end = k >= 2;
        let dur = ((k.min(2) + 1) * SAMPLES) as u16;
        let d = dur.to_be_bytes();
        Some((
            k == 0,
            [digit, if end { 0x80 | 10 } else { 10 }, d[0], d[1]],
        ))
    }
}

fn dtmf_event(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'*' => Some(10),
        b'#' => Some(11),
        b'A'..=b'D' => Some(12 + c - b'A'),
        _ => None,
    }
}

/// What a received packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    /// `(stream id, packet counter, send time µs)` from the bench extension, if present.
    pub stamp: Option<(u32, u32, u64)>,
}

/// Parses an RTP packet (`None` for anything else, e.g. RTCP or garbage).
pub fn parse(buf: &[u8]) -> Option<Received> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let pt = buf[1] & 0x7f;
    if (72..=76).contains(&pt) {
        return None; // RTCP
    }
    let seq = u16::from_be_bytes([buf[2], buf[3]]);
    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let cc = (buf[0] & 0x0f) as usize;
    let mut stamp = None;
    if buf[0] & 0x10 != 0 {
        let off = 12 + 4 * cc;
        let hdr = buf.get(off..off + 4)?;
        let words = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
        let ext = buf.get(off + 4..off + 4 + 4 * words)?;
        if u16::from_be_bytes([hdr[0], hdr[1]]) == ONE_BYTE_PROFILE {
            let mut i = 0;
            while i < ext.len() {
                let b = ext[i];
                if b == 0 {
                    i += 1;
                    continue;
                }
                let (id, len) = (b >> 4, (b & 0x0f) as usize + 1);
                if id == 15 {
                    break;
                }
                let Some(v) = ext.get(i + 1..i + 1 + len) else {
                    break;
                };
                if id == EXT_ID && len == 16 {
                    let w = |a: usize| u32::from_be_bytes([v[a], v[a + 1], v[a + 2], v[a + 3]]);
                    let us = ((w(8) as u64) << 32) | w(12) as u64;
                    stamp = Some((w(0), w(4), us));
                }
                i += 1 + len;
            }
        }
    }
    Some(Received { pt, seq, ts, stamp })
}

/// Receive-side statistics of one stream.
#[derive(Debug, Clone, Default)]
pub struct RxStats {
    pub received: u64,
    first_ext: Option<i64>,
    max_ext: i64,
    /// RFC 3550 jitter in µs (scaled by 16 as in the RFC's integer form).
    jitter16: i64,
    last_transit: Option<i64>,
    pub delay_sum_us: u64,
    pub delay_max_us: u64,
    pub delay_count: u64,
    pub dtmf_events: u32,
    last_dtmf_ts: Option<u32>,
    /// The bench stream id of the sender, from the first stamped packet.
    peer: Option<u32>,
    /// Stamped packets from another bench stream: the gateway forwarded a stale stream into a
    /// recycled port. Not counted in loss, jitter or delay.
    pub misrouted: u64,
}

impl RxStats {
    /// Records `p`, arrived at `arrival_us` (same clock as the send stamps). Returns the number
    /// of newly expected packets (highest sequence advance) for live loss accounting, and the
    /// one-way delay if stamped.
    pub fn record(&mut self, p: &Received, arrival_us: u64) -> (u64, Option<u64>) {
        if let Some((id, _, _)) = p.stamp {
            match self.peer {
                None => self.peer = Some(id),
                Some(peer) if peer != id => {
                    self.misrouted += 1;
                    return (0, None);
                }
                Some(_) => {}
            }
        }
        self.received += 1;
        let seq = p.seq as i64;
        let advanced = match self.first_ext {
            None => {
                self.first_ext = Some(seq);
                self.max_ext = seq;
                1
            }
            Some(_) => {
                // Extend relative to the highest seen so far.
                let base = self.max_ext & !0xffff;
                let mut ext = base | seq;
                if ext - self.max_ext > 0x8000 {
                    ext -= 0x1_0000;
                } else if self.max_ext - ext > 0x8000 {
                    ext += 0x1_0000;
                }
                if ext > self.max_ext {
                    let d = (ext - self.max_ext) as u64;
                    self.max_ext = ext;
                    d
                } else {
                    0
                }
            }
        };
        if p.pt == DTMF_PT {
            if p.payload_is_new_event(&mut self.last_dtmf_ts) {
                self.dtmf_events += 1;
            }
            return (advanced, None);
        }
        // Jitter (RFC 3550 A.8), kept in microseconds rather than timestamp units. With the bench
        // stamp the transit is arrival - actual send time, so the figure is the path's (the
        // gateway's) jitter, not the sending thread's scheduling; without it, arrival - RTP
        // timestamp as the RFC does.
        let transit = match p.stamp {
            Some((_, _, sent)) => arrival_us as i64 - sent as i64,
            None => arrival_us as i64 - p.ts as i64 * 125,
        };
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            self.jitter16 += d - ((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
        let delay = p.stamp.map(|(_, _, sent)| arrival_us.saturating_sub(sent));
        if let Some(d) = delay {
            self.delay_sum_us += d;
            self.delay_max_us = self.delay_max_us.max(d);
            self.delay_count += 1;
        }
        (advanced, delay)
    }

    /// Packets expected from the sequence numbers seen.
    pub fn expected(&self) -> u64 {
        match self.first_ext {
            Some(f) => (self.max_ext - f + 1) as u64,
            None => 0,
        }
    }

    /// Packets lost (never negative: duplicates do not make up for losses elsewhere).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter16 as f64 / 16.0 / 1000.0
    }

    /// Mean one-way delay in milliseconds (`None` without stamps).
    pub fn delay_mean_ms(&self) -> Option<f64> {
        (self.delay_count > 0).then(|| self.delay_sum_us as f64 / self.delay_count as f64 / 1000.0)
    }
}

impl Received {
    /// For telephone-event packets: whether this starts a new event (new RTP timestamp).
    fn payload_is_new_event(&self, last: &mut Option<u32>) -> bool {
        if *last == Some(self.ts) {
            return false;
        }
        *last = Some(self.ts);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_roundtrip_carries_stamp_and_audio() {
        let clip = clip(Codec::Pcmu);
        assert_eq!(clip.len(), 50);
        assert!(clip.iter().all(|p| p.len() == 160));
        let mut tx = TxStream::new(7, 0, "");
        let mut buf = Vec::new();
        tx.next_packet(&clip, 123_456_789, &mut buf);
        assert_eq!(buf.len(), HEADER_LEN + 160);
        let r = parse(&buf).unwrap();
        assert_eq!(r.pt, 0);
        assert_eq!(r.stamp, Some((7, 0, 123_456_789)));
        // The dataplane's own parser agrees on where the payload starts.
        let p = dataplane::wire::rtp::Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload(), &clip[0][..]);
        tx.next_packet(&clip, 123_476_789, &mut buf);
        let r2 = parse(&buf).unwrap();
        assert_eq!(r2.seq, r.seq.wrapping_add(1));
        assert_eq!(r2.ts, r.ts.wrapping_add(160));
    }

    #[test]
    fn g729_clip_is_two_frames_per_packet() {
        let clip = clip(Codec::G729);
        assert_eq!(clip.len(), 50);
        assert!(clip.iter().all(|p| p.len() == 20));
    }

    #[test]
    fn loss_jitter_and_delay_in_virtual_time() {
        let clip = clip(Codec::Pcma);
        let mut tx = TxStream::new(1, 8, "");
        let mut rx = RxStats::default();
        let mut buf = Vec::new();
        let mut new_expected = 0;
        for i in 0..100u64 {
            let sent = 1_000_000 + i * 20_000;
            tx.next_packet(&clip, sent, &mut buf);
            if i % 10 == 3 {
                continue; // 10 % loss
            }
            // Constant 5 ms delay plus +-1 ms alternating jitter.
            let arrival = sent + 5_000 + if i % 2 == 0 { 1_000 } else { 0 };
            let (adv, d) = rx.record(&parse(&buf).unwrap(), arrival);
            new_expected += adv;
            assert!(d.unwrap() >= 5_000);
        }
        assert_eq!(rx.received, 90);
        assert_eq!(rx.expected(), 100);
        assert_eq!(new_expected, 100);
        assert_eq!(rx.lost(), 10);
        let j = rx.jitter_ms();
        assert!(j > 0.5 && j < 1.5, "jitter {j}");
        let m = rx.delay_mean_ms().unwrap();
        assert!((5.3..5.7).contains(&m), "delay {m}");
        assert_eq!(rx.delay_max_us, 6_000);
    }

    #[test]
    fn packets_of_another_stream_are_misrouted_not_loss() {
        let clip = clip(Codec::Pcmu);
        let (mut a, mut b) = (TxStream::new(1, 0, ""), TxStream::new(2, 0, ""));
        let mut rx = RxStats::default();
        let mut buf = Vec::new();
        for i in 0..10u64 {
            a.next_packet(&clip, i * 20_000, &mut buf);
            rx.record(&parse(&buf).unwrap(), i * 20_000 + 100);
            b.next_packet(&clip, 0, &mut buf);
            assert_eq!(
                rx.record(&parse(&buf).unwrap(), i * 20_000 + 200),
                (0, None)
            );
        }
        assert_eq!((rx.received, rx.misrouted, rx.lost()), (10, 10, 0));
        assert_eq!(rx.delay_max_us, 100);
    }

    #[test]
    fn sequence_wrap_is_not_loss() {
        let mut rx = RxStats::default();
        for i in 0..10u32 {
            let p = Received {
                pt: 0,
                seq: 65_530u16.wrapping_add(i as u16),
                ts: i * 160,
                stamp: None,
            };
            rx.record(&p, i as u64 * 20_000);
        }
        assert_eq!(rx.expected(), 10);
        assert_eq!(rx.lost(), 0);
        assert_eq!(rx.delay_mean_ms(), None);
    }

    #[test]
    fn dtmf_digits_become_events() {
        let clip = clip(Codec::Pcmu);
        let mut tx = TxStream::new(2, 0, "1#");
        let mut rx = RxStats::default();
        let mut buf = Vec::new();
        for i in 0..120u64 {
            tx.next_packet(&clip, i * 20_000, &mut buf);
            rx.record(&parse(&buf).unwrap(), i * 20_000 + 1_000);
        }
        assert_eq!(rx.dtmf_events, 2);
        assert_eq!(rx.lost(), 0);
    }

    #[test]
    fn garbage_is_not_rtp() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x80, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        let mut b = vec![0x90u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9];
        b.extend_from_slice(&[0x1f, 1]);
        assert_eq!(parse(&b), None, "extension longer than the datagram");
    }
}
