//! Relay correctness on real loopback UDP (payload, SSRC/seq/ts
//! continuity, RTCP, latching drops, echo, unsignalled/malformed drops) run
//! against every I/O backend, plus multi-worker sharding: with two workers,
//! each packet is handled by the worker that owns the session's ports.
//!
//! A backend the kernel lacks (io_uring under a seccomp profile, an old
//! kernel) is skipped with a message; `socket` must always run.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use dataplane::wire::{rtcp, rtp, Pt, Ssrc};
use dataplane::{clock, Backend, Config, Dataplane, Event, Mode, Side, WorkerStats};

const WAIT: Duration = Duration::from_secs(3);

fn first_core() -> usize {
    core_affinity::get_core_ids()
        .and_then(|c| c.first().map(|c| c.id))
        .unwrap_or(0)
}

/// Start a one-worker dataplane on `backend`, or `None` (with a message) if
/// the backend is unavailable on this kernel.
fn start(backend: Backend, ports: std::ops::RangeInclusive<u16>) -> Option<Dataplane> {
    start_on(backend, vec![first_core()], ports)
}

fn start_on(
    backend: Backend,
    cores: Vec<usize>,
    ports: std::ops::RangeInclusive<u16>,
) -> Option<Dataplane> {
    let r = Dataplane::start(Config {
        backend,
        cores,
        rtp_ports: ports,
        media_ip: "127.0.0.1".parse().unwrap(),
        media_timeout: Duration::ZERO,
        max_sessions_per_worker: 16,
        xdp: None,
        control_cores: Vec::new(),
    });
    match r {
        Ok(dp) => {
            assert_eq!(dp.backend(), backend, "the requested backend runs");
            Some(dp)
        }
        Err(dataplane::Error::BackendUnavailable(b, why)) if b != Backend::Socket => {
            eprintln!("skipping: backend {b:?} unavailable here: {why}");
            None
        }
        Err(e) => panic!("dataplane starts: {e}"),
    }
}

struct Phone {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Phone {
    fn new() -> Phone {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&rtp, &rtcp] {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        }
        Phone { rtp, rtcp }
    }

    fn rtp_addr(&self) -> SocketAddr {
        self.rtp.local_addr().unwrap()
    }

    fn rtcp_addr(&self) -> SocketAddr {
        self.rtcp.local_addr().unwrap()
    }
}

fn rtcp_of(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port() + 1)
}

fn packet(ssrc: u32, seq: u16, ts: u32, tag: u8) -> Vec<u8> {
    let mut b = vec![0u8; 12 + 160];
    rtp::Repr {
        marker: false,
        payload_type: Pt::PCMA,
        sequence_number: seq,
        timestamp: ts,
        ssrc: Ssrc(ssrc),
    }
    .emit(&mut b)
    .unwrap();
    b[12..].fill(tag);
    b[12] = seq as u8;
    b
}

/// What a phone saw: (ssrc, seq, ts, marker, payload).
#[derive(Debug, Clone, PartialEq)]
struct Got {
    ssrc: Ssrc,
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
    from: SocketAddr,
}

/// Receive one datagram within `within`.
fn recv(sock: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let deadline = clock::now() + within;
    let mut buf = [0u8; 2048];
    while clock::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            return Some((buf[..n].to_vec(), from));
        }
    }
    None
}

fn recv_rtp(sock: &UdpSocket, within: Duration) -> Option<Got> {
    let (b, from) = recv(sock, within)?;
    let p = rtp::Packet::new_checked(&b[..]).expect("relay emits valid RTP");
    Some(Got {
        ssrc: p.ssrc(),
        seq: p.sequence_number(),
        ts: p.timestamp(),
        marker: p.marker(),
        payload: p.payload().to_vec(),
        from,
    })
}

/// Send from `tx` to `to` until `rx` gets something (the worker may not have
/// applied `set_remote` yet). Returns the next free sequence number.
fn establish(tx: &UdpSocket, to: SocketAddr, rx: &UdpSocket, ssrc: u32, mut seq: u16) -> u16 {
    let deadline = clock::now() + WAIT;
    while clock::now() < deadline {
        tx.send_to(&packet(ssrc, seq, u32::from(seq) * 160, 0xee), to)
            .unwrap();
        seq += 1;
        if recv(rx, Duration::from_millis(50)).is_some() {
            // Drain anything else that got through.
            while recv(rx, Duration::from_millis(30)).is_some() {}
            return seq;
        }
    }
    panic!(
        "no media path from {:?} via {to} within {WAIT:?}",
        tx.local_addr()
    );
}

fn wait_stats(dp: &Dataplane, what: &str, pred: impl Fn(&WorkerStats) -> bool) -> WorkerStats {
    wait_worker(dp, 0, what, pred)
}

fn wait_worker(
    dp: &Dataplane,
    w: usize,
    what: &str,
    pred: impl Fn(&WorkerStats) -> bool,
) -> WorkerStats {
    let deadline = clock::now() + WAIT;
    loop {
        let s = dp.stats()[w];
        if pred(&s) {
            return s;
        }
        assert!(
            clock::now() < deadline,
            "{what}: stats never matched, last {s:?}"
        );
        std::thread::yield_now();
    }
}

/// A relay session with both phones signalled and the path open both ways.
fn relay_call(dp: &mut Dataplane) -> (dataplane::Allocated, Phone, Phone, u16, u16) {
    let s = dp.create_session(Mode::Relay).unwrap();
    let (pa, pb) = (Phone::new(), Phone::new());
    dp.set_remote(s.id, Side::A, pa.rtp_addr(), Some(pa.rtcp_addr()))
        .unwrap();
    dp.set_remote(s.id, Side::B, pb.rtp_addr(), Some(pb.rtcp_addr()))
        .unwrap();
    let seq_a = establish(&pa.rtp, s.a, &pb.rtp, 0xa000_0001, 1000);
    let seq_b = establish(&pb.rtp, s.b, &pa.rtp, 0xb000_0001, 50_000);
    (s, pa, pb, seq_a, seq_b)
}

fn relay_both_ways_with_continuity_and_rtcp(backend: Backend, base: u16) {
    let Some(mut dp) = start(backend, base..=base + 99) else {
        return;
    };
    let (s, pa, pb, seq_a, seq_b) = relay_call(&mut dp);
    assert_eq!(s.a.ip().to_string(), "127.0.0.1");
    assert_eq!(s.a.port() % 2, 0);
    assert_eq!(s.b.port() % 2, 0);

    // A -> B: 20 packets of one stream.
    for i in 0..20u16 {
        pa.rtp
            .send_to(
                &packet(0xa000_0001, seq_a + i, 160 * u32::from(seq_a + i), 1),
                s.a,
            )
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        got.push(recv_rtp(&pb.rtp, WAIT).expect("B receives A's media"));
    }
    let out_ssrc = got[0].ssrc;
    assert_ne!(out_ssrc, Ssrc(0xa000_0001), "SSRC rewritten for leg B");
    for (i, g) in got.iter().enumerate() {
        let i = i as u16;
        assert_eq!(g.from, s.b, "sent from leg B's RTP socket");
        assert_eq!(g.ssrc, out_ssrc);
        assert_eq!(g.seq, got[0].seq.wrapping_add(i));
        assert_eq!(g.ts, got[0].ts.wrapping_add(160 * u32::from(i)));
        assert_eq!(g.payload[0], (seq_a + i) as u8);
        assert!(g.payload[1..].iter().all(|&b| b == 1));
    }

    // A's phone restarts its stream (new SSRC, random seq/ts): B sees no jump.
    let last = got.last().unwrap().clone();
    for i in 0..5u16 {
        pa.rtp
            .send_to(
                &packet(0x5eed_0002, 7 + i, 123_456_789 + 160 * u32::from(i), 2),
                s.a,
            )
            .unwrap();
    }
    let mut after = Vec::new();
    while after.len() < 5 {
        after.push(recv_rtp(&pb.rtp, WAIT).expect("B receives the new stream"));
    }
    assert_eq!(after[0].ssrc, out_ssrc);
    assert_eq!(after[0].seq, last.seq.wrapping_add(1), "sequence continues");
    assert!(after[0].marker, "marker flags the source change");
    let jump = after[0].ts.wrapping_sub(last.ts);
    assert!(
        (160..8000 * 2).contains(&jump),
        "timestamp advances smoothly, jumped {jump}"
    );
    for (i, g) in after.iter().enumerate() {
        assert_eq!(g.seq, after[0].seq.wrapping_add(i as u16));
        assert_eq!(g.ts, after[0].ts.wrapping_add(160 * i as u32));
        assert_eq!(g.payload[1], 2);
    }

    // B -> A.
    for i in 0..10u16 {
        pb.rtp
            .send_to(
                &packet(0xb000_0001, seq_b + i, 160 * u32::from(seq_b + i), 3),
                s.b,
            )
            .unwrap();
    }
    let mut back = Vec::new();
    while back.len() < 10 {
        back.push(recv_rtp(&pa.rtp, WAIT).expect("A receives B's media"));
    }
    let a_ssrc = back[0].ssrc;
    assert_ne!(a_ssrc, out_ssrc, "each output leg has its own SSRC");
    for (i, g) in back.iter().enumerate() {
        assert_eq!((g.from, g.ssrc), (s.a, a_ssrc));
        assert_eq!(g.seq, back[0].seq.wrapping_add(i as u16));
        assert_eq!(g.payload[1], 3);
    }

    // RTCP: an SR from A's RTCP port arrives at B's RTCP port, from leg B's
    // RTCP socket, with the sender SSRC B knows from the RTP.
    #[rustfmt::skip]
    let sr: [u8; 28] = [
        0x80, 0xc8, 0x00, 0x06, 0x5e, 0xed, 0x00, 0x02,
        0xe0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0x5b, 0xcd, 0x15,
        0, 0, 0, 5, 0, 0, 3, 0x20,
    ];
    let deadline = clock::now() + WAIT;
    let got_sr = loop {
        pa.rtcp.send_to(&sr, rtcp_of(s.a)).unwrap();
        if let Some(x) = recv(&pb.rtcp, Duration::from_millis(50)) {
            break x;
        }
        assert!(clock::now() < deadline, "RTCP never relayed");
    };
    assert_eq!(got_sr.1, rtcp_of(s.b));
    let p = rtcp::Packet::new_checked(&got_sr.0[..]).unwrap();
    assert_eq!(p.packet_type(), rtcp::PacketType::SR);
    assert_eq!(p.ssrc(), Some(out_ssrc));
    // SR's RTP ts maps onto B's timeline with the same offset as the media.
    let in_ts = 123_456_789u32;
    assert_eq!(
        p.sr_rtp_timestamp(),
        Some(in_ts.wrapping_add(after[0].ts.wrapping_sub(in_ts)))
    );

    let st = wait_stats(&dp, "counters", |s| s.packets_out >= 36); // 20 + 5 + 10 + SR + warm-up
    assert_eq!(st.sessions, 1);
    assert!(st.packets_in >= st.packets_out);
    assert_eq!(st.drops.malformed, 0);
    assert_eq!(st.drops.tx_error, 0);

    // Both legs reported their first packet.
    let mut firsts = Vec::new();
    while let Some(ev) = dp.poll_event() {
        firsts.push(ev);
    }
    assert!(
        firsts.contains(&Event::FirstPacket {
            id: s.id,
            side: Side::A
        }),
        "{firsts:?}"
    );
    assert!(
        firsts.contains(&Event::FirstPacket {
            id: s.id,
            side: Side::B
        }),
        "{firsts:?}"
    );
    dp.shutdown();
}

fn wrong_source_is_dropped_and_counted(backend: Backend, base: u16) {
    let Some(mut dp) = start(backend, base + 100..=base + 199) else {
        return;
    };
    let (s, pa, pb, seq_a, _) = relay_call(&mut dp);
    let before = wait_stats(&dp, "settled", |_| true).drops.wrong_source;

    // Same IP as phone A but another port: A's port is latched, so refused.
    let intruder = UdpSocket::bind("127.0.0.1:0").unwrap();
    intruder.send_to(&packet(0x0bad, 1, 1, 0x66), s.a).unwrap();
    let mut expected = 1;
    // Another IP altogether (all of 127/8 is loopback on Linux).
    if let Ok(other_ip) = UdpSocket::bind("127.0.0.2:0") {
        other_ip.send_to(&packet(0x0bad, 2, 2, 0x66), s.a).unwrap();
        other_ip.send_to(&packet(0x0bad, 3, 3, 0x66), s.b).unwrap();
        expected += 2;
    } else {
        eprintln!("127.0.0.2 not bindable; skipping the other-IP case");
    }
    let st = wait_stats(&dp, "wrong_source", |s| {
        s.drops.wrong_source >= before + expected
    });
    assert_eq!(st.drops.wrong_source, before + expected);

    // Nothing of the intruders reached either phone; the real phone still works.
    pa.rtp
        .send_to(&packet(0xa000_0001, seq_a, 0, 0x11), s.a)
        .unwrap();
    let g = recv_rtp(&pb.rtp, WAIT).expect("legit media still flows");
    assert_eq!(g.payload[1], 0x11, "first packet at B is the legit one");
    assert!(
        recv(&pa.rtp, Duration::from_millis(100)).is_none(),
        "nothing leaked to A"
    );
}

fn echo_mode_returns_media_to_sender(backend: Backend, base: u16) {
    let Some(mut dp) = start(backend, base + 200..=base + 299) else {
        return;
    };
    let s = dp.create_session(Mode::Echo).unwrap();
    let pa = Phone::new();
    dp.set_remote(s.id, Side::A, pa.rtp_addr(), None).unwrap();
    let seq = establish(&pa.rtp, s.a, &pa.rtp, 0xeeee_0001, 10);
    for i in 0..5u16 {
        pa.rtp
            .send_to(&packet(0xeeee_0001, seq + i, 0, 0x42), s.a)
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        got.push(recv_rtp(&pa.rtp, WAIT).expect("echo comes back"));
    }
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.from, s.a, "echo is sent from leg A's own socket");
        assert_eq!(g.ssrc, got[0].ssrc);
        assert_ne!(
            g.ssrc,
            Ssrc(0xeeee_0001),
            "the echo does not carry the phone's own SSRC"
        );
        assert_eq!(g.seq, got[0].seq.wrapping_add(i as u16));
        assert_eq!(g.payload[1], 0x42);
    }

    // Switch to relay at runtime: A's media now goes to B.
    let pb = Phone::new();
    dp.set_remote(s.id, Side::B, pb.rtp_addr(), None).unwrap();
    dp.set_mode(s.id, Mode::Relay).unwrap();
    establish(&pa.rtp, s.a, &pb.rtp, 0xeeee_0001, seq + 5);
    while recv(&pa.rtp, Duration::from_millis(30)).is_some() {}
    pa.rtp
        .send_to(&packet(0xeeee_0001, seq + 100, 0, 0x43), s.a)
        .unwrap();
    assert_eq!(
        recv_rtp(&pb.rtp, WAIT).expect("relayed to B").payload[1],
        0x43
    );
    assert!(
        recv(&pa.rtp, Duration::from_millis(100)).is_none(),
        "no more echo"
    );
}

fn malformed_and_unsignalled_are_dropped(backend: Backend, base: u16) {
    let Some(mut dp) = start(backend, base + 300..=base + 399) else {
        return;
    };
    let s = dp.create_session(Mode::Relay).unwrap();
    let (pa, pb) = (Phone::new(), Phone::new());
    dp.set_remote(s.id, Side::A, pa.rtp_addr(), None).unwrap();
    // B not signalled yet: A's media is accepted but has nowhere to go.
    let deadline = clock::now() + WAIT;
    loop {
        pa.rtp.send_to(&packet(1, 1, 1, 0), s.a).unwrap();
        if dp.stats()[0].drops.no_remote > 0 {
            break;
        }
        assert!(clock::now() < deadline, "no_remote never counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Garbage from the right source.
    pa.rtp.send_to(&[0x80, 0x00, 0x01], s.a).unwrap();
    pa.rtp.send_to(&[0x40; 20], s.a).unwrap();
    wait_stats(&dp, "malformed", |s| s.drops.malformed >= 2);
    assert!(recv(&pb.rtp, Duration::from_millis(50)).is_none());
}

/// Two workers, sessions on both; media for a session is counted only by the
/// worker that owns its ports, and relayed correctly by each.
fn sharding_two_workers(backend: Backend, base: u16) {
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .take(2)
        .collect();
    if cores.len() < 2 {
        eprintln!("skipping: need 2 cores for the sharding test, have {cores:?}");
        return;
    }
    let Some(mut dp) = start_on(backend, cores, base..=base + 199) else {
        return;
    };
    // Least-loaded placement alternates workers: 4 sessions, 2 on each.
    let mut calls = Vec::new();
    for _ in 0..4 {
        let s = dp.create_session(Mode::Relay).unwrap();
        let (pa, pb) = (Phone::new(), Phone::new());
        dp.set_remote(s.id, Side::A, pa.rtp_addr(), None).unwrap();
        dp.set_remote(s.id, Side::B, pb.rtp_addr(), None).unwrap();
        calls.push((s, pa, pb));
    }
    let per_worker = |w| calls.iter().filter(|c| c.0.worker == w).count();
    assert_eq!((per_worker(0), per_worker(1)), (2, 2));
    // Worker 0 owns the lower half of the range, worker 1 the upper half.
    for (s, _, _) in &calls {
        let upper = s.a.port() >= base + 100;
        assert_eq!(upper, s.worker == 1, "{s:?} port in its worker's slice");
        assert_eq!(s.a.port() >= base + 100, s.b.port() >= base + 100);
    }
    let mut seqs = Vec::new();
    for (s, pa, pb) in &calls {
        seqs.push(establish(&pa.rtp, s.a, &pb.rtp, 0x1000 + s.id.0, 1));
    }
    let st = dp.stats();
    assert_eq!(st[0].sessions, 2);
    assert_eq!(st[1].sessions, 2);

    // Send 30 packets through each session of worker 1 only.
    let (in0, in1) = (st[0].packets_in, st[1].packets_in);
    let out1 = st[1].packets_out;
    let mut expect = 0;
    for ((s, pa, pb), seq) in calls.iter().zip(&seqs) {
        if s.worker != 1 {
            continue;
        }
        for i in 0..30u16 {
            let p = packet(0x1000 + s.id.0, seq + i, 160 * u32::from(seq + i), 9);
            pa.rtp.send_to(&p, s.a).unwrap();
        }
        for i in 0..30u16 {
            let g = recv_rtp(&pb.rtp, WAIT).expect("worker 1 relays");
            assert_eq!(g.from, s.b);
            assert_eq!(g.payload[0], (seq + i) as u8, "in order, intact");
        }
        expect += 30;
    }
    wait_worker(&dp, 1, "worker 1 counted its packets", |w| {
        w.packets_in >= in1 + expect && w.packets_out >= out1 + expect
    });
    assert_eq!(dp.stats()[0].packets_in, in0, "worker 0 saw none of them");
    assert_eq!(dp.stats()[1].packets_in, in1 + expect);

    // And the other way round.
    let st = dp.stats();
    let (in0, in1) = (st[0].packets_in, st[1].packets_in);
    for ((s, pa, pb), seq) in calls.iter().zip(&seqs) {
        if s.worker != 0 {
            continue;
        }
        for i in 0..10u16 {
            pa.rtp
                .send_to(&packet(0x1000 + s.id.0, seq + 100 + i, 0, 5), s.a)
                .unwrap();
        }
        for _ in 0..10 {
            assert_eq!(
                recv_rtp(&pb.rtp, WAIT).expect("worker 0 relays").payload[1],
                5
            );
        }
    }
    wait_worker(&dp, 0, "worker 0 counted", |w| w.packets_in >= in0 + 20);
    assert_eq!(dp.stats()[1].packets_in, in1, "worker 1 saw none of them");
    dp.shutdown();
}

macro_rules! for_backend {
    ($name:ident, $backend:expr, $base:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn relay_both_ways_with_continuity_and_rtcp() {
                super::relay_both_ways_with_continuity_and_rtcp($backend, $base);
            }
            #[test]
            fn wrong_source_is_dropped_and_counted() {
                super::wrong_source_is_dropped_and_counted($backend, $base);
            }
            #[test]
            fn echo_mode_returns_media_to_sender() {
                super::echo_mode_returns_media_to_sender($backend, $base);
            }
            #[test]
            fn malformed_and_unsignalled_are_dropped() {
                super::malformed_and_unsignalled_are_dropped($backend, $base);
            }
            #[test]
            fn sharding_two_workers() {
                super::sharding_two_workers($backend, $base + 400);
            }
        }
    };
}

for_backend!(socket, Backend::Socket, 45_000);
for_backend!(uring, Backend::Uring, 46_000);

#[test]
fn auto_picks_uring_when_the_probe_passes() {
    let dp = Dataplane::start(Config {
        backend: Backend::Auto,
        cores: vec![first_core()],
        rtp_ports: 47_000..=47_099,
        media_ip: "127.0.0.1".parse().unwrap(),
        media_timeout: Duration::ZERO,
        max_sessions_per_worker: 4,
        xdp: None,
        control_cores: Vec::new(),
    })
    .expect("auto always starts");
    match dataplane::io::uring::probe() {
        Ok(()) => assert_eq!(dp.backend(), Backend::Uring),
        Err(why) => {
            eprintln!("io_uring unavailable ({why}): auto fell back to socket");
            assert_eq!(dp.backend(), Backend::Socket);
        }
    }
}
