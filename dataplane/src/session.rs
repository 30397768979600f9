//! The per-worker session table and the state of a media session.
//!
//! A [`Session`] joins two legs (A = caller side, B = callee side). Each leg
//! has an RTP and an RTCP socket (port, port + 1) owned by the worker's I/O
//! backend; the session only keeps their local addresses and identifies them
//! by [`SocketRef`] / [`Token`]. Per leg it keeps:
//! - the remote the signalling announced (`set_remote`) and the address the
//!   first packet from that IP latched (RTP and RTCP separately),
//! - the output stream state ([`OutStream`]): the SSRC this leg's peer sees
//!   from us and the offsets that keep its sequence numbers and timestamps
//!   continuous when the input source changes,
//! - counters.
//!
//! A session whose legs speak different codecs also owns a [`Transcoder`]
//! (built and allocated on the control side, installed by a command); RTP then
//! takes the transcoding path in [`crate::switch`] instead of the relay.
//!
//! [`SessionTable`] is a slab preallocated to `Config::max_sessions_per_worker`
//! slots; a [`SlotId`] carries a generation so a stale command for a reused
//! slot is ignored. Slot ids are handed out on the control side by
//! [`SlotAllocator`] (so `create_session` can answer without a round trip).
//!
//! No I/O, no clock reads, no allocation after construction.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::io::Token;
use crate::media::SessionMedia;
use crate::transcode::Transcoder;
use crate::wire::rtp;
use crate::wire::Ssrc;

pub use crate::handle::{Mode, SessionId, Side};

/// RTP or RTCP (which of a leg's two sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Rtp,
    Rtcp,
}

/// A slot in a worker's session table plus the generation that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId {
    pub index: u32,
    pub generation: u32,
}

/// One of the four sockets of a session slot. Encodes to/from the I/O
/// backend's [`Token`] as `index * 4 + side * 2 + kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketRef {
    pub slot: u32,
    pub side: Side,
    pub kind: Kind,
}

impl SocketRef {
    /// Largest slot index a token can encode.
    pub const MAX_SLOTS: usize = (u32::MAX / 4) as usize;

    /// The backend token for this socket.
    pub const fn token(self) -> Token {
        let side = match self.side {
            Side::A => 0,
            Side::B => 2,
        };
        let kind = match self.kind {
            Kind::Rtp => 0,
            Kind::Rtcp => 1,
        };
        Token(self.slot * 4 + side + kind)
    }

    /// Decode a backend token.
    pub const fn from_token(t: Token) -> SocketRef {
        SocketRef {
            slot: t.0 / 4,
            side: if t.0 & 2 == 0 { Side::A } else { Side::B },
            kind: if t.0 & 1 == 0 { Kind::Rtp } else { Kind::Rtcp },
        }
    }
}

impl Side {
    /// The other leg.
    pub const fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Where the signalling says a leg's media comes from and goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    pub rtp: SocketAddr,
    pub rtcp: SocketAddr,
}

impl Remote {
    /// The only IP media is accepted from.
    pub fn ip(&self) -> IpAddr {
        self.rtp.ip()
    }
}

/// The stream a leg's peer receives from us: output SSRC and the rewrite that
/// keeps sequence numbers and timestamps continuous across input sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutStream {
    /// The SSRC the peer on this leg sees from us.
    pub ssrc: Ssrc,
    /// Input SSRC currently mapped onto `ssrc` (`None` before the first packet).
    pub source: Option<Ssrc>,
    /// Added (wrapping) to the input sequence number.
    pub seq_delta: u16,
    /// Added (wrapping) to the input timestamp.
    pub ts_delta: u32,
    last_seq: u16,
    last_ts: u32,
    /// Last in-order timestamp increment (a packet's duration), 0 if unknown.
    last_step: u32,
    last_at: Option<Instant>,
}

impl OutStream {
    /// A stream that has sent nothing yet.
    pub const fn new(ssrc: Ssrc) -> OutStream {
        OutStream {
            ssrc,
            source: None,
            seq_delta: 0,
            ts_delta: 0,
            last_seq: 0,
            last_ts: 0,
            last_step: 0,
            last_at: None,
        }
    }

    /// Rewrite SSRC, sequence number and timestamp of an outgoing packet.
    ///
    /// Same input source: fixed offsets, so gaps and reordering pass through
    /// unchanged. New input source (re-INVITE, another early-media fork): the
    /// sequence continues at last + 1 and the timestamp advances by the wall
    /// time since the last packet in the payload's clock rate (at least one
    /// packet duration), and the marker bit flags the discontinuity.
    pub fn rewrite<T: AsRef<[u8]> + AsMut<[u8]>>(&mut self, p: &mut rtp::Packet<T>, now: Instant) {
        let (in_ssrc, in_seq, in_ts) = (p.ssrc(), p.sequence_number(), p.timestamp());
        if self.source != Some(in_ssrc) {
            if let Some(last_at) = self.last_at {
                let rate = u128::from(p.payload_type().clock_rate());
                let elapsed = now.saturating_duration_since(last_at).as_micros();
                let ticks = u32::try_from(elapsed * rate / 1_000_000).unwrap_or(u32::MAX / 2);
                let step = ticks.max(self.last_step).clamp(1, u32::MAX / 2);
                let out_seq = self.last_seq.wrapping_add(1);
                let out_ts = self.last_ts.wrapping_add(step);
                self.seq_delta = out_seq.wrapping_sub(in_seq);
                self.ts_delta = out_ts.wrapping_sub(in_ts);
                p.set_marker(true);
            }
            // else: the very first packet passes its own seq/ts through.
            self.source = Some(in_ssrc);
        }
        let out_seq = in_seq.wrapping_add(self.seq_delta);
        let out_ts = in_ts.wrapping_add(self.ts_delta);
        if self.last_at.is_none() || (out_seq.wrapping_sub(self.last_seq) as i16) > 0 {
            let in_order = self.last_at.is_some() && out_seq == self.last_seq.wrapping_add(1);
            let step = out_ts.wrapping_sub(self.last_ts);
            if in_order && step > 0 && step < u32::MAX / 2 {
                self.last_step = step;
            }
            self.last_seq = out_seq;
            self.last_ts = out_ts;
            self.last_at = Some(now);
        }
        p.set_ssrc(self.ssrc);
        p.set_sequence_number(out_seq);
        p.set_timestamp(out_ts);
    }

    /// The last packet the peer received on this stream: sequence number,
    /// timestamp, timestamp step (packet duration, 0 if unknown) and when.
    pub fn last_sent(&self) -> Option<(u16, u32, u32, Instant)> {
        self.last_at
            .map(|at| (self.last_seq, self.last_ts, self.last_step, at))
    }

    /// Record packets relayed on this stream by the I/O backend's fast path
    /// (same source, same offsets as [`OutStream::rewrite`]): the newest
    /// it sent had `seq` and `ts`.
    pub fn record_relayed(&mut self, seq: u16, ts: u32, now: Instant) {
        if self.last_at.is_none() || (seq.wrapping_sub(self.last_seq) as i16) > 0 {
            self.last_seq = seq;
            self.last_ts = ts;
        }
        self.last_at = Some(now);
    }

    /// Record a packet a generator (player, digit sender) sent on this
    /// stream in place of relayed media. The next relayed packet then
    /// counts as a new source: it continues at `seq + 1`, its timestamp
    /// advances by the time since, and it carries the marker bit.
    pub fn record_generated(&mut self, seq: u16, ts: u32, step: u32, now: Instant) {
        self.source = None;
        self.last_seq = seq;
        self.last_ts = ts;
        if step > 0 {
            self.last_step = step;
        }
        self.last_at = Some(now);
    }
}

/// Per-leg counters (packets received on the leg / sent out on it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCounters {
    pub rtp_in: u64,
    pub rtcp_in: u64,
    pub sent: u64,
    pub dropped: u64,
}

/// One side of a session.
#[derive(Debug, Clone)]
pub struct Leg {
    /// Local RTP address (RTCP is port + 1).
    pub local: SocketAddr,
    /// Signalled remote (from SDP), if known yet.
    pub remote: Option<Remote>,
    /// Source of the first RTP packet from the signalled IP.
    pub latched_rtp: Option<SocketAddr>,
    /// Source of the first RTCP packet from the signalled IP.
    pub latched_rtcp: Option<SocketAddr>,
    /// What this leg's peer receives from us.
    pub out: OutStream,
    pub counters: LegCounters,
}

/// Result of checking a packet's source against a leg's latch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCheck {
    /// From the latched address.
    Accepted,
    /// From the signalled IP, and it just latched the port.
    Latched,
    /// Anything else: no remote yet, another IP, or another port after latching.
    Rejected,
}

impl Leg {
    /// A leg listening on `local` whose peer will see SSRC `out_ssrc`.
    pub const fn new(local: SocketAddr, out_ssrc: Ssrc) -> Leg {
        Leg {
            local,
            remote: None,
            latched_rtp: None,
            latched_rtcp: None,
            out: OutStream::new(out_ssrc),
            counters: LegCounters {
                rtp_in: 0,
                rtcp_in: 0,
                sent: 0,
                dropped: 0,
            },
        }
    }

    /// Apply a signalled remote. A changed address reopens the latch (the peer
    /// moved, e.g. re-INVITE); the same address keeps it.
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp: Option<SocketAddr>) {
        let rtcp = rtcp.unwrap_or_else(|| SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)));
        let new = Remote { rtp, rtcp };
        if self.remote != Some(new) {
            self.latched_rtp = None;
            self.latched_rtcp = None;
        }
        self.remote = Some(new);
    }

    /// Check (and possibly latch) the source of a packet received on this leg.
    pub fn check_source(&mut self, kind: Kind, src: SocketAddr) -> SourceCheck {
        let Some(remote) = self.remote else {
            return SourceCheck::Rejected;
        };
        if src.ip() != remote.ip() {
            return SourceCheck::Rejected;
        }
        let latch = match kind {
            Kind::Rtp => &mut self.latched_rtp,
            Kind::Rtcp => &mut self.latched_rtcp,
        };
        match *latch {
            Some(l) if l == src => SourceCheck::Accepted,
            Some(_) => SourceCheck::Rejected,
            None => {
                *latch = Some(src);
                SourceCheck::Latched
            }
        }
    }

    /// Where to send this leg's RTP or RTCP: the latched source if any
    /// (symmetric RTP, works through NAT), else the signalled address.
    pub fn destination(&self, kind: Kind) -> Option<SocketAddr> {
        match kind {
            Kind::Rtp => self.latched_rtp.or(self.remote.map(|r| r.rtp)),
            Kind::Rtcp => self.latched_rtcp.or(self.remote.map(|r| r.rtcp)),
        }
    }
}

/// A media session.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub mode: Mode,
    pub a: Leg,
    pub b: Leg,
    /// Codec state when the legs speak different codecs (`None`: relay).
    pub transcoder: Option<Box<Transcoder>>,
    /// Time of the last accepted RTP packet on either leg.
    pub last_rtp: Option<Instant>,
    armed_at: Option<Instant>,
    timeout_reported: bool,
    /// Media applications (players, digit detection and sending).
    pub media: SessionMedia,
}

impl Session {
    /// A new session; nothing signalled, timeout not armed.
    pub const fn new(id: SessionId, mode: Mode, a: Leg, b: Leg) -> Session {
        Session {
            id,
            mode,
            a,
            b,
            transcoder: None,
            last_rtp: None,
            armed_at: None,
            timeout_reported: false,
            media: SessionMedia::new(),
        }
    }

    /// A leg by side.
    pub fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// A leg by side, mutable.
    pub fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Start (or restart) the media-timeout watch at `now`.
    pub fn arm(&mut self, now: Instant) {
        self.armed_at = Some(now);
        self.timeout_reported = false;
    }

    /// Whether the watch is armed.
    pub fn armed(&self) -> bool {
        self.armed_at.is_some()
    }

    /// True when the session is armed, not yet reported, and has had no RTP
    /// for `timeout` (counted from the later of arming and the last RTP).
    /// A zero `timeout` disables the check.
    pub fn timeout_due(&self, now: Instant, timeout: Duration) -> bool {
        let Some(armed_at) = self.armed_at else {
            return false;
        };
        if self.timeout_reported || timeout.is_zero() {
            return false;
        }
        let since = self.last_rtp.map_or(armed_at, |t| t.max(armed_at));
        now.saturating_duration_since(since) >= timeout
    }

    /// Record that `Event::MediaTimeout` went out, so it fires once.
    pub fn set_timeout_reported(&mut self) {
        self.timeout_reported = true;
    }
}

/// Why a table operation failed (a control-side bug, never network input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The slot index is beyond the table's capacity.
    #[error("session slot {0} is out of range")]
    OutOfRange(u32),
    /// The slot already holds a session.
    #[error("session slot {0} is occupied")]
    Occupied(u32),
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    session: Option<Session>,
}

/// A worker's preallocated session slab.
#[derive(Debug)]
pub struct SessionTable {
    slots: Box<[Slot]>,
    len: usize,
}

impl SessionTable {
    /// A table with `capacity` empty slots (all memory allocated here).
    pub fn with_capacity(capacity: usize) -> SessionTable {
        let slots = (0..capacity)
            .map(|_| Slot {
                generation: 0,
                session: None,
            })
            .collect();
        SessionTable { slots, len: 0 }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Sessions installed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No sessions installed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Install `session` in `slot` with its generation.
    pub fn insert(&mut self, slot: SlotId, session: Session) -> Result<(), TableError> {
        let s = self
            .slots
            .get_mut(slot.index as usize)
            .ok_or(TableError::OutOfRange(slot.index))?;
        if s.session.is_some() {
            return Err(TableError::Occupied(slot.index));
        }
        s.generation = slot.generation;
        s.session = Some(session);
        self.len += 1;
        Ok(())
    }

    /// Remove the session in `slot` if the generation matches.
    pub fn remove(&mut self, slot: SlotId) -> Option<Session> {
        let s = self.slots.get_mut(slot.index as usize)?;
        if s.generation != slot.generation {
            return None;
        }
        let out = s.session.take();
        if out.is_some() {
            self.len -= 1;
        }
        out
    }

    /// The session in `slot` if the generation matches.
    pub fn get_mut(&mut self, slot: SlotId) -> Option<&mut Session> {
        let s = self.slots.get_mut(slot.index as usize)?;
        if s.generation != slot.generation {
            return None;
        }
        s.session.as_mut()
    }

    /// The session currently in slot `index` (packet path: a socket token
    /// names the slot, and sockets only live as long as their session).
    pub fn by_index_mut(&mut self, index: u32) -> Option<&mut Session> {
        self.slots.get_mut(index as usize)?.session.as_mut()
    }
}

/// Control-side allocator of slot ids for one worker's table: a free list plus
/// a generation per slot, bumped on every free.
#[derive(Debug)]
pub struct SlotAllocator {
    free: Vec<u32>,
    generations: Vec<u32>,
}

impl SlotAllocator {
    /// All `capacity` slots free.
    pub fn new(capacity: usize) -> SlotAllocator {
        let cap = u32::try_from(capacity).unwrap_or(u32::MAX);
        SlotAllocator {
            free: (0..cap).rev().collect(),
            generations: vec![0; capacity],
        }
    }

    /// Take a free slot.
    pub fn alloc(&mut self) -> Option<SlotId> {
        let index = self.free.pop()?;
        let generation = self.generations[index as usize];
        Some(SlotId { index, generation })
    }

    /// Return a slot; its next user gets a new generation. Ignores stale ids.
    pub fn free(&mut self, slot: SlotId) {
        if let Some(g) = self.generations.get_mut(slot.index as usize) {
            if *g == slot.generation {
                *g = g.wrapping_add(1);
                self.free.push(slot.index);
            }
        }
    }

    /// Slots in use.
    pub fn used(&self) -> usize {
        self.generations.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::wire::Pt;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp_bytes(ssrc: u32, seq: u16, ts: u32) -> [u8; 20] {
        let mut b = [0u8; 20];
        rtp::Repr {
            marker: false,
            payload_type: Pt::PCMU,
            sequence_number: seq,
            timestamp: ts,
            ssrc: Ssrc(ssrc),
        }
        .emit(&mut b)
        .unwrap();
        b
    }

    fn out(s: &mut OutStream, b: &mut [u8], now: Instant) -> (Ssrc, u16, u32, bool) {
        let mut p = rtp::Packet::new_checked(b).unwrap();
        s.rewrite(&mut p, now);
        (p.ssrc(), p.sequence_number(), p.timestamp(), p.marker())
    }

    #[test]
    fn token_roundtrip() {
        for slot in [0, 1, 77, SocketRef::MAX_SLOTS as u32 - 1] {
            for side in [Side::A, Side::B] {
                for kind in [Kind::Rtp, Kind::Rtcp] {
                    let r = SocketRef { slot, side, kind };
                    assert_eq!(SocketRef::from_token(r.token()), r);
                }
            }
        }
        assert_eq!(
            SocketRef {
                slot: 3,
                side: Side::B,
                kind: Kind::Rtcp
            }
            .token(),
            Token(15)
        );
    }

    #[test]
    fn out_stream_continuity_across_source_change() {
        let t0 = clock::now();
        let mut s = OutStream::new(Ssrc(0xaaaa));
        // First source passes seq/ts through, only the SSRC changes.
        for i in 0..3u16 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            let r = out(
                &mut s,
                &mut rtp_bytes(1, 1000 + i, 5000 + 160 * u32::from(i)),
                now,
            );
            assert_eq!(
                r,
                (Ssrc(0xaaaa), 1000 + i, 5000 + 160 * u32::from(i), false)
            );
        }
        // New source 40 ms after the last packet: seq +1, ts + 40 ms (320), marker.
        let now = t0 + Duration::from_millis(80);
        let r = out(&mut s, &mut rtp_bytes(2, 60_000, 9), now);
        assert_eq!(r, (Ssrc(0xaaaa), 1003, 5320 + 320, true));
        // It then continues with the new offsets.
        let r = out(
            &mut s,
            &mut rtp_bytes(2, 60_001, 169),
            now + Duration::from_millis(20),
        );
        assert_eq!(r, (Ssrc(0xaaaa), 1004, 5640 + 160, false));
        // A source change with no time elapsed still advances by one packet (160).
        let r = out(
            &mut s,
            &mut rtp_bytes(3, 7, 7),
            now + Duration::from_millis(20),
        );
        assert_eq!(r, (Ssrc(0xaaaa), 1005, 5800 + 160, true));
        // Reordered (older) packet of the current source keeps its place.
        let r = out(
            &mut s,
            &mut rtp_bytes(3, 6, 7u32.wrapping_sub(160)),
            now + Duration::from_millis(20),
        );
        assert_eq!(r.1, 1004);
        let r = out(
            &mut s,
            &mut rtp_bytes(3, 8, 167),
            now + Duration::from_millis(40),
        );
        assert_eq!((r.1, r.2), (1006, 6120));
    }

    #[test]
    fn out_stream_wraps() {
        let t0 = clock::now();
        let mut s = OutStream::new(Ssrc(9));
        out(&mut s, &mut rtp_bytes(1, 0xffff, u32::MAX - 100), t0);
        let r = out(
            &mut s,
            &mut rtp_bytes(2, 5, 5),
            t0 + Duration::from_millis(20),
        );
        assert_eq!((r.1, r.2), (0, 59));
    }

    #[test]
    fn latching() {
        let mut leg = Leg::new(addr("127.0.0.1:30000"), Ssrc(1));
        assert_eq!(
            leg.check_source(Kind::Rtp, addr("10.0.0.1:4000")),
            SourceCheck::Rejected
        );
        assert_eq!(leg.destination(Kind::Rtp), None);
        leg.set_remote(addr("10.0.0.1:4000"), None);
        assert_eq!(leg.destination(Kind::Rtcp), Some(addr("10.0.0.1:4001")));
        assert_eq!(
            leg.check_source(Kind::Rtp, addr("10.0.0.2:4000")),
            SourceCheck::Rejected
        );
        // NAT: the first packet from the signalled IP latches its port.
        assert_eq!(
            leg.check_source(Kind::Rtp, addr("10.0.0.1:5555")),
            SourceCheck::Latched
        );
        assert_eq!(leg.destination(Kind::Rtp), Some(addr("10.0.0.1:5555")));
        assert_eq!(
            leg.check_source(Kind::Rtp, addr("10.0.0.1:5555")),
            SourceCheck::Accepted
        );
        assert_eq!(
            leg.check_source(Kind::Rtp, addr("10.0.0.1:4000")),
            SourceCheck::Rejected
        );
        // RTCP latches separately.
        assert_eq!(
            leg.check_source(Kind::Rtcp, addr("10.0.0.1:5556")),
            SourceCheck::Latched
        );
        // Same remote again keeps the latch; a new one reopens it.
        leg.set_remote(addr("10.0.0.1:4000"), None);
        assert_eq!(leg.latched_rtp, Some(addr("10.0.0.1:5555")));
        leg.set_remote(addr("10.0.0.9:4000"), Some(addr("10.0.0.9:4100")));
        assert_eq!(leg.latched_rtp, None);
        assert_eq!(leg.destination(Kind::Rtcp), Some(addr("10.0.0.9:4100")));
    }

    fn session() -> Session {
        Session::new(
            SessionId(1),
            Mode::Relay,
            Leg::new(addr("127.0.0.1:30000"), Ssrc(1)),
            Leg::new(addr("127.0.0.1:30002"), Ssrc(2)),
        )
    }

    #[test]
    fn media_timeout_fires_once() {
        let t0 = clock::now();
        let ms = Duration::from_millis;
        let mut s = session();
        assert!(!s.timeout_due(t0 + ms(10_000), ms(300)));
        s.arm(t0);
        assert!(!s.timeout_due(t0 + ms(299), ms(300)));
        assert!(s.timeout_due(t0 + ms(300), ms(300)));
        assert!(!s.timeout_due(t0 + ms(300), Duration::ZERO));
        s.last_rtp = Some(t0 + ms(250));
        assert!(!s.timeout_due(t0 + ms(500), ms(300)));
        assert!(s.timeout_due(t0 + ms(550), ms(300)));
        s.set_timeout_reported();
        assert!(!s.timeout_due(t0 + ms(5000), ms(300)));
        // Re-arming restarts the watch.
        s.arm(t0 + ms(5000));
        assert!(!s.timeout_due(t0 + ms(5100), ms(300)));
        assert!(s.timeout_due(t0 + ms(5300), ms(300)));
    }

    #[test]
    fn table_generations() {
        let mut alloc = SlotAllocator::new(2);
        let mut t = SessionTable::with_capacity(2);
        let a = alloc.alloc().unwrap();
        let b = alloc.alloc().unwrap();
        assert!(alloc.alloc().is_none());
        assert_eq!(alloc.used(), 2);
        t.insert(a, session()).unwrap();
        assert_eq!(t.insert(a, session()), Err(TableError::Occupied(a.index)));
        assert_eq!(
            t.insert(
                SlotId {
                    index: 5,
                    generation: 0
                },
                session()
            ),
            Err(TableError::OutOfRange(5))
        );
        t.insert(b, session()).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.remove(a).is_some());
        alloc.free(a);
        alloc.free(a); // stale double free is ignored
        let a2 = alloc.alloc().unwrap();
        assert_eq!(a2.index, a.index);
        assert_ne!(a2.generation, a.generation);
        t.insert(a2, session()).unwrap();
        // The old id no longer reaches the new occupant.
        assert!(t.get_mut(a).is_none());
        assert!(t.remove(a).is_none());
        assert!(t.get_mut(a2).is_some());
        assert!(t.by_index_mut(a2.index).is_some());
        assert_eq!(t.len(), 2);
    }
}
