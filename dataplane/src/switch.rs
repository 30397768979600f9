//! The relay step: one received datagram in, one decision out.
//!
//! [`handle_packet`] is pure: no I/O, no allocation, no clock read (`now` is a
//! parameter). It validates the datagram, checks its source against the
//! receiving leg's latch, picks the output leg (the other one in
//! [`Mode::Relay`], the same one in [`Mode::Echo`]), rewrites the header in
//! place for that leg's output stream, and says which socket to send it from
//! and to where. The worker does the actual send.
//!
//! RTP: SSRC, sequence number and timestamp are rewritten per output leg (see
//! [`crate::session::OutStream`]). RTCP (port + 1, or muxed on the RTP port
//! per RFC 5761): every packet of the compound has its sender/first SSRC set
//! to the output leg's SSRC, an SR's RTP timestamp gets the same offset as the
//! media, and report blocks about the stream we send to the receiving leg are
//! mapped back to the original source's SSRC and sequence numbers.
//!
//! Transcoding sessions (a [`crate::transcode::Transcoder`] installed, relay
//! mode): RTP goes through the transcoder instead of being rewritten in place;
//! it emits zero or more new packets for the other leg through the caller's
//! `emit` callback ([`handle_packet_with`]), and the received datagram itself
//! is not forwarded ([`Decision::Transcoded`]). RTCP keeps the relay path with
//! only the SSRCs rewritten (the output stream of a transcoded direction has
//! its own numbering, so report blocks are not mapped back).

use std::net::SocketAddr;
use std::time::Instant;

use crate::handle::Event;
use crate::session::{Kind, Mode, OutStream, Session, Side, SocketRef, SourceCheck};
use crate::transcode::{Step, Work};
use crate::wire::{rtcp, rtp};

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not valid RTP/RTCP.
    Malformed,
    /// Not from the signalled IP, or not from the latched port.
    WrongSource,
    /// The output leg has no remote address yet.
    NoRemote,
    /// RTP in a direction the call has on hold.
    Held,
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the (rewritten) bytes from socket `from` to `to`.
    Forward { from: SocketRef, to: SocketAddr },
    /// Discard it.
    Drop(DropReason),
    /// Consumed by the transcoder: any packets it produced were handed to
    /// `emit`, to be sent from socket `from` to `to`.
    Transcoded {
        from: SocketRef,
        to: SocketAddr,
        work: Work,
    },
}

/// The decision plus an event for the control plane, if the packet caused one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub event: Option<Event>,
}

impl Outcome {
    const fn drop(reason: DropReason) -> Outcome {
        Outcome {
            decision: Decision::Drop(reason),
            event: None,
        }
    }
}

/// Relay one datagram that arrived on socket `rx` (a socket of `session`)
/// from `src`. `buf` holds exactly the datagram and is rewritten in place.
///
/// For a session that may transcode use [`handle_packet_with`]: here the
/// transcoder's output is discarded.
pub fn handle_packet(
    session: &mut Session,
    rx: SocketRef,
    src: SocketAddr,
    buf: &mut [u8],
    now: Instant,
) -> Outcome {
    handle_packet_with(session, rx, src, buf, now, &mut |_, _, _| {})
}

/// [`handle_packet`], and for a transcoding session every packet the
/// transcoder produces is passed to `emit` with the socket to send it from
/// and the destination.
pub fn handle_packet_with(
    session: &mut Session,
    rx: SocketRef,
    src: SocketAddr,
    buf: &mut [u8],
    now: Instant,
    emit: &mut dyn FnMut(SocketRef, SocketAddr, &[u8]),
) -> Outcome {
    // RFC 5761: RTCP may arrive on the RTP port.
    let kind = if rx.kind == Kind::Rtp && rtcp::is_rtcp(buf) {
        Kind::Rtcp
    } else {
        rx.kind
    };
    let valid = match kind {
        Kind::Rtp => rtp::Packet::new_checked(&*buf).is_ok(),
        Kind::Rtcp => rtcp::Compound::new_checked(&*buf).is_ok(),
    };
    let in_side = rx.side;
    if !valid {
        session.leg_mut(in_side).counters.dropped += 1;
        return Outcome::drop(DropReason::Malformed);
    }

    // Latching is per socket: muxed RTCP shares the RTP socket's latch.
    let check = session.leg_mut(in_side).check_source(rx.kind, src);
    if check == SourceCheck::Rejected {
        session.leg_mut(in_side).counters.dropped += 1;
        return Outcome::drop(DropReason::WrongSource);
    }
    let event =
        (check == SourceCheck::Latched && rx.kind == Kind::Rtp).then_some(Event::FirstPacket {
            id: session.id,
            side: in_side,
        });
    match kind {
        Kind::Rtp => {
            session.leg_mut(in_side).counters.rtp_in += 1;
            session.last_rtp = Some(now);
        }
        Kind::Rtcp => session.leg_mut(in_side).counters.rtcp_in += 1,
    }

    if kind == Kind::Rtp && !session.mode.forwards(in_side) {
        session.leg_mut(in_side).counters.dropped += 1;
        return Outcome {
            decision: Decision::Drop(DropReason::Held),
            event,
        };
    }
    let out_side = output_side(session.mode, in_side);
    let Some(to) = session.leg(out_side).destination(kind) else {
        session.leg_mut(in_side).counters.dropped += 1;
        return Outcome {
            decision: Decision::Drop(DropReason::NoRemote),
            event,
        };
    };

    let from = SocketRef {
        slot: rx.slot,
        side: out_side,
        kind,
    };
    if let (Kind::Rtp, Mode::Relay | Mode::OneWay(_), Some(t)) =
        (kind, session.mode, session.transcoder.as_mut())
    {
        let decision = match t.handle_rtp(in_side == Side::A, buf, &mut |b| emit(from, to, b)) {
            Step::Done(work) => {
                session.leg_mut(out_side).counters.sent += work.emitted;
                Decision::Transcoded { from, to, work }
            }
            Step::Rejected => {
                session.leg_mut(in_side).counters.dropped += 1;
                Decision::Drop(DropReason::Malformed)
            }
        };
        return Outcome { decision, event };
    }
    match kind {
        Kind::Rtp => {
            // new_checked succeeded above, so this view cannot fail; re-wrap mutably.
            let mut p = rtp::Packet::new_unchecked(&mut *buf);
            session.leg_mut(out_side).out.rewrite(&mut p, now);
        }
        Kind::Rtcp => {
            let received_on = session.leg(in_side).out;
            rewrite_rtcp(buf, &received_on, &session.leg(out_side).out);
        }
    }
    session.leg_mut(out_side).counters.sent += 1;
    Outcome {
        decision: Decision::Forward { from, to },
        event,
    }
}

/// Rewrite a validated compound RTCP datagram travelling to the leg whose
/// output stream is `to`, having arrived on the leg whose output stream is
/// `received_on` (the stream its peer reports on).
fn rewrite_rtcp(buf: &mut [u8], received_on: &OutStream, to: &OutStream) {
    let Ok(mut c) = rtcp::Compound::new_checked(buf) else {
        return;
    };
    let mut off = 0;
    while let Some(r) = c.packet_range(off) {
        off = r.end;
        let mut p = c.packet_mut(r);
        if let Some(ssrc) = p.ssrc() {
            if let (Some(ts), true) = (p.sr_rtp_timestamp(), to.source == Some(ssrc)) {
                p.set_sr_rtp_timestamp(ts.wrapping_add(to.ts_delta));
            }
            p.set_ssrc(to.ssrc);
        }
        for i in 0..p.report_blocks() {
            if let (true, Some(orig)) = (p.block_ssrc(i) == received_on.ssrc, received_on.source) {
                p.set_block_ssrc(i, orig);
                let ext = p.block_ext_seq(i);
                let low = (ext as u16).wrapping_sub(received_on.seq_delta);
                p.set_block_ext_seq(i, (ext & 0xffff_0000) | u32::from(low));
            }
        }
    }
}

/// The leg a packet received on `side` goes out on.
pub const fn output_side(mode: Mode, side: Side) -> Side {
    match mode {
        Mode::Relay | Mode::OneWay(_) | Mode::Inactive => side.other(),
        Mode::Echo => side,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::handle::SessionId;
    use crate::session::Leg;
    use crate::wire::{Pt, Ssrc};
    use std::time::Duration;

    const SLOT: u32 = 7;
    const OUT_A: Ssrc = Ssrc(0xaaaa_0001);
    const OUT_B: Ssrc = Ssrc(0xbbbb_0002);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sock(side: Side, kind: Kind) -> SocketRef {
        SocketRef {
            slot: SLOT,
            side,
            kind,
        }
    }

    /// A relay session: A's phone at 10.0.0.1:4000, B's at 10.0.0.2:6000.
    fn session() -> Session {
        let mut s = Session::new(
            SessionId(42),
            Mode::Relay,
            Leg::new(addr("127.0.0.1:30000"), OUT_A),
            Leg::new(addr("127.0.0.1:30002"), OUT_B),
        );
        s.a.set_remote(addr("10.0.0.1:4000"), None);
        s.b.set_remote(addr("10.0.0.2:6000"), None);
        s
    }

    /// PCMU, 160 bytes of payload would be realistic; 4 is enough here.
    fn rtp(ssrc: u32, seq: u16, ts: u32) -> [u8; 16] {
        let mut b = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x7f, 0xfe, 0x7e];
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

    /// SR from SSRC 0x11111111 with RTP ts 0x1000 and one report block about
    /// `block_ssrc` with extended highest seq 0x0001_0010.
    #[rustfmt::skip]
    fn sr(block_ssrc: u32) -> [u8; 52] {
        let b = block_ssrc.to_be_bytes();
        [
            0x81, 0xc8, 0x00, 0x0c, 0x11, 0x11, 0x11, 0x11,
            0xe0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x10, 0x00,
            0, 0, 0, 5, 0, 0, 3, 0x20,
            b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0x00, 0x01, 0x00, 0x10,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]
    }

    fn fields(b: &[u8]) -> (Ssrc, u16, u32, &[u8]) {
        let p = rtp::Packet::new_checked(b).unwrap();
        (p.ssrc(), p.sequence_number(), p.timestamp(), &b[12..])
    }

    #[test]
    fn relays_both_ways_with_rewrite() {
        let t0 = clock::now();
        let mut s = session();
        let mut b = rtp(0x1111_1111, 100, 8000);
        let o = handle_packet(
            &mut s,
            sock(Side::A, Kind::Rtp),
            addr("10.0.0.1:4000"),
            &mut b,
            t0,
        );
        assert_eq!(
            o.decision,
            Decision::Forward {
                from: sock(Side::B, Kind::Rtp),
                to: addr("10.0.0.2:6000")
            }
        );
        assert_eq!(
            o.event,
            Some(Event::FirstPacket {
                id: SessionId(42),
                side: Side::A
            })
        );
        assert_eq!(
            fields(&b),
            (OUT_B, 100, 8000, &[0xff, 0x7f, 0xfe, 0x7e][..])
        );
        assert_eq!(s.last_rtp, Some(t0));

        // Second packet: no event.
        let mut b = rtp(0x1111_1111, 101, 8160);
        let t1 = t0 + Duration::from_millis(20);
        let o = handle_packet(
            &mut s,
            sock(Side::A, Kind::Rtp),
            addr("10.0.0.1:4000"),
            &mut b,
            t1,
        );
        assert!(matches!(o.decision, Decision::Forward { .. }));
        assert_eq!(o.event, None);
        assert_eq!(fields(&b).0, OUT_B);

        // B -> A, from a NATed port on B's IP: latches and goes out of A's socket.
        let mut b = rtp(0x2222_2222, 5, 50);
        let o = handle_packet(
            &mut s,
            sock(Side::B, Kind::Rtp),
            addr("10.0.0.2:6100"),
            &mut b,
            t1,
        );
        assert_eq!(
            o.decision,
            Decision::Forward {
                from: sock(Side::A, Kind::Rtp),
                to: addr("10.0.0.1:4000")
            }
        );
        assert_eq!(
            o.event,
            Some(Event::FirstPacket {
                id: SessionId(42),
                side: Side::B
            })
        );
        assert_eq!(fields(&b).0, OUT_A);
        // A's media now goes to B's latched port, not the signalled one.
        let mut b = rtp(0x1111_1111, 102, 8320);
        let o = handle_packet(
            &mut s,
            sock(Side::A, Kind::Rtp),
            addr("10.0.0.1:4000"),
            &mut b,
            t1,
        );
        assert_eq!(
            o.decision,
            Decision::Forward {
                from: sock(Side::B, Kind::Rtp),
                to: addr("10.0.0.2:6100")
            }
        );
        assert_eq!(
            (s.a.counters.rtp_in, s.b.counters.sent, s.a.counters.sent),
            (3, 3, 1)
        );
    }

    #[test]
    fn source_change_keeps_output_continuous() {
        let t0 = clock::now();
        let mut s = session();
        let from = addr("10.0.0.1:4000");
        for i in 0..3u16 {
            let mut b = rtp(1, 100 + i, 8000 + 160 * u32::from(i));
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            handle_packet(&mut s, sock(Side::A, Kind::Rtp), from, &mut b, now);
        }
        // Re-INVITE to the same address; the phone restarts its stream.
        let mut b = rtp(2, 40_000, 123_456);
        let now = t0 + Duration::from_millis(60);
        handle_packet(&mut s, sock(Side::A, Kind::Rtp), from, &mut b, now);
        let (ssrc, seq, ts, _) = fields(&b);
        assert_eq!((ssrc, seq, ts), (OUT_B, 103, 8320 + 160));
        assert!(rtp::Packet::new_checked(&b[..]).unwrap().marker());
    }

    #[test]
    fn wrong_sources_are_dropped_and_cannot_steal_the_latch() {
        let t0 = clock::now();
        let mut s = session();
        let a = sock(Side::A, Kind::Rtp);
        // Another IP before latching.
        let mut b = rtp(9, 1, 1);
        let o = handle_packet(&mut s, a, addr("10.6.6.6:4000"), &mut b, t0);
        assert_eq!(o, Outcome::drop(DropReason::WrongSource));
        // Malformed from the right IP does not latch.
        let mut short = [0x80u8, 0, 0, 1];
        let o = handle_packet(&mut s, a, addr("10.0.0.1:1111"), &mut short, t0);
        assert_eq!(o, Outcome::drop(DropReason::Malformed));
        assert_eq!(s.a.latched_rtp, None);
        // The real phone latches; the same IP on another port is then refused.
        let mut b = rtp(1, 1, 1);
        assert!(matches!(
            handle_packet(&mut s, a, addr("10.0.0.1:4000"), &mut b, t0).decision,
            Decision::Forward { .. }
        ));
        let mut b = rtp(9, 1, 1);
        let o = handle_packet(&mut s, a, addr("10.0.0.1:4002"), &mut b, t0);
        assert_eq!(o, Outcome::drop(DropReason::WrongSource));
        assert_eq!(s.a.latched_rtp, Some(addr("10.0.0.1:4000")));
        assert_eq!(s.a.counters.dropped, 3);
        assert_eq!(s.last_rtp, Some(t0));
        // A leg with no signalled remote accepts nothing.
        let mut s = session();
        s.b.remote = None;
        let mut b = rtp(9, 1, 1);
        let o = handle_packet(
            &mut s,
            sock(Side::B, Kind::Rtp),
            addr("10.0.0.2:6000"),
            &mut b,
            t0,
        );
        assert_eq!(o.decision, Decision::Drop(DropReason::WrongSource));
    }

    #[test]
    fn no_remote_on_output_leg() {
        let t0 = clock::now();
        let mut s = session();
        s.b.remote = None;
        let mut b = rtp(1, 1, 1);
        let o = handle_packet(
            &mut s,
            sock(Side::A, Kind::Rtp),
            addr("10.0.0.1:4000"),
            &mut b,
            t0,
        );
        // Dropped, but the source is legitimate: it latches and reports.
        assert_eq!(o.decision, Decision::Drop(DropReason::NoRemote));
        assert_eq!(
            o.event,
            Some(Event::FirstPacket {
                id: SessionId(42),
                side: Side::A
            })
        );
        assert_eq!(b, rtp(1, 1, 1), "a dropped packet is not rewritten");
        assert_eq!(s.b.out.source, None);
    }

    #[test]
    fn echo_returns_to_sender() {
        let t0 = clock::now();
        let mut s = session();
        s.mode = Mode::Echo;
        let mut b = rtp(0x1111_1111, 7, 70);
        let o = handle_packet(
            &mut s,
            sock(Side::A, Kind::Rtp),
            addr("10.0.0.1:4000"),
            &mut b,
            t0,
        );
        assert_eq!(
            o.decision,
            Decision::Forward {
                from: sock(Side::A, Kind::Rtp),
                to: addr("10.0.0.1:4000")
            }
        );
        assert_eq!(fields(&b).0, OUT_A);
    }

    #[test]
    fn hold_modes_drop_rtp_in_the_held_direction_only() {
        let t0 = clock::now();
        let mut s = session();
        let send = |s: &mut Session, side: Side, seq: u16| {
            let from = match side {
                Side::A => addr("10.0.0.1:4000"),
                Side::B => addr("10.0.0.2:6000"),
            };
            let mut b = rtp(0x1111_1111, seq, 70);
            handle_packet(s, sock(side, Kind::Rtp), from, &mut b, t0).decision
        };
        // A holds B with sendonly: A's RTP still reaches B, B's is dropped as held.
        s.mode = Mode::OneWay(Side::A);
        assert!(matches!(send(&mut s, Side::A, 1), Decision::Forward { .. }));
        assert_eq!(send(&mut s, Side::B, 1), Decision::Drop(DropReason::Held));
        // Inactive: nothing either way, yet the sources latched.
        s.mode = Mode::Inactive;
        assert_eq!(send(&mut s, Side::A, 2), Decision::Drop(DropReason::Held));
        assert_eq!(send(&mut s, Side::B, 2), Decision::Drop(DropReason::Held));
        assert_eq!(s.b.latched_rtp, Some(addr("10.0.0.2:6000")));
        // RTCP keeps flowing on hold.
        let mut r = sr(0);
        let o = handle_packet(
            &mut s,
            sock(Side::B, Kind::Rtcp),
            addr("10.0.0.2:6001"),
            &mut r,
            t0,
        );
        assert!(matches!(o.decision, Decision::Forward { .. }), "{o:?}");
        // Resume.
        s.mode = Mode::Relay;
        assert!(matches!(send(&mut s, Side::B, 3), Decision::Forward { .. }));
    }

    #[test]
    fn rtcp_rewritten_and_relayed() {
        let t0 = clock::now();
        let mut s = session();
        // Media both ways first, so offsets exist: A restarts once (seq delta != 0).
        let a_rtp = addr("10.0.0.1:4000");
        let mut b = rtp(0x1111_1111, 100, 0x1000);
        handle_packet(&mut s, sock(Side::A, Kind::Rtp), a_rtp, &mut b, t0);
        let mut b = rtp(0x2222_2222, 500, 0);
        handle_packet(
            &mut s,
            sock(Side::B, Kind::Rtp),
            addr("10.0.0.2:6000"),
            &mut b,
            t0,
        );
        let mut b = rtp(0x2222_2222, 501, 160);
        let t1 = t0 + Duration::from_millis(20);
        handle_packet(
            &mut s,
            sock(Side::B, Kind::Rtp),
            addr("10.0.0.2:6000"),
            &mut b,
            t1,
        );
        let mut b = rtp(0x3333_3333, 9000, 77);
        let t2 = t0 + Duration::from_millis(40);
        handle_packet(
            &mut s,
            sock(Side::B, Kind::Rtp),
            addr("10.0.0.2:6000"),
            &mut b,
            t2,
        );
        assert_eq!(s.a.out.source, Some(Ssrc(0x3333_3333)));
        let a_delta = s.a.out.seq_delta;

        // SR from A (sender 0x11111111) reporting on OUT_A, the stream A gets from us.
        let mut pkt = sr(OUT_A.0);
        let o = handle_packet(
            &mut s,
            sock(Side::A, Kind::Rtcp),
            addr("10.0.0.1:4001"),
            &mut pkt,
            t2,
        );
        assert_eq!(
            o.decision,
            Decision::Forward {
                from: sock(Side::B, Kind::Rtcp),
                to: addr("10.0.0.2:6001")
            }
        );
        assert_eq!(o.event, None);
        let p = rtcp::Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(p.ssrc(), Some(OUT_B));
        // A's stream passes seq/ts through to B (first source), so ts is unchanged.
        assert_eq!(p.sr_rtp_timestamp(), Some(0x1000));
        // The block about OUT_A is mapped back to the source B hears: 0x33333333.
        assert_eq!(p.block_ssrc(0), Ssrc(0x3333_3333));
        assert_eq!(
            p.block_ext_seq(0),
            0x0001_0000 | u32::from(0x0010u16.wrapping_sub(a_delta))
        );
        assert_eq!(s.a.latched_rtcp, Some(addr("10.0.0.1:4001")));

        // rtcp-mux: RTCP on B's RTP port goes out of A's RTCP socket.
        let mut pkt = sr(0x0bad_0bad);
        let o = handle_packet(
            &mut s,
            sock(Side::B, Kind::Rtp),
            addr("10.0.0.2:6000"),
            &mut pkt,
            t2,
        );
        assert_eq!(
            o.decision,
            Decision::Forward {
                from: sock(Side::A, Kind::Rtcp),
                to: addr("10.0.0.1:4001")
            }
        );
        let p = rtcp::Packet::new_checked(&pkt[..]).unwrap();
        assert_eq!(p.ssrc(), Some(OUT_A));
        assert_eq!(
            p.block_ssrc(0),
            Ssrc(0x0bad_0bad),
            "unknown block SSRC left alone"
        );

        // Malformed RTCP is dropped.
        let mut bad = [0x81u8, 0xc8, 0x00, 0x0c, 1, 2, 3, 4];
        let o = handle_packet(
            &mut s,
            sock(Side::A, Kind::Rtcp),
            addr("10.0.0.1:4001"),
            &mut bad,
            t2,
        );
        assert_eq!(o.decision, Decision::Drop(DropReason::Malformed));
    }

    #[test]
    fn sr_timestamp_follows_media_offset() {
        let t0 = clock::now();
        let mut s = session();
        let a_rtp = addr("10.0.0.1:4000");
        let mut b = rtp(0x5555_5555, 10, 1000);
        handle_packet(&mut s, sock(Side::A, Kind::Rtp), a_rtp, &mut b, t0);
        let mut b = rtp(0x1111_1111, 999, 0x0fff_0000);
        let t1 = t0 + Duration::from_millis(20);
        handle_packet(&mut s, sock(Side::A, Kind::Rtp), a_rtp, &mut b, t1);
        let out_ts = fields(&b).2;
        let mut pkt = sr(1);
        handle_packet(
            &mut s,
            sock(Side::A, Kind::Rtcp),
            addr("10.0.0.1:4001"),
            &mut pkt,
            t1,
        );
        let p = rtcp::Packet::new_checked(&pkt[..]).unwrap();
        // SR ts 0x1000 is in the input clock; out = in + the same delta as the RTP.
        assert_eq!(
            p.sr_rtp_timestamp(),
            Some(0x1000u32.wrapping_add(out_ts.wrapping_sub(0x0fff_0000)))
        );
    }
}
