//! The AF_XDP backend relaying RTP between two phones over a veth pair in
//! network namespaces (IPv4 and IPv6): every packet delivered, order kept,
//! SSRC/sequence/timestamp rewritten by the switch; SIP, unregistered ports
//! and ping still reach the kernel; the program is attached while the relay
//! runs and gone after it stops. Skips (with a message) without root.

mod xdp_netns;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use dataplane::io::xdp::{
    attached_program, AttachMethod, XdpBackend, XdpConfig, XdpMode, XdpProgram, XdpStats,
};
use dataplane::io::{Backend, Batch, Tx};
use dataplane::session::{Kind, Leg, LegCounters, Session, SocketRef};
use dataplane::switch::{handle_packet, Decision};
use dataplane::wire::{rtp, Pt, Ssrc};
use dataplane::{clock, Mode, SessionId, Side};
use xdp_netns::*;

const PORT_A: u16 = 40_000;
const PORT_B: u16 = 40_002;
const PORTS: std::ops::RangeInclusive<u16> = 40_000..=40_099;
const OUT_A: Ssrc = Ssrc(0xaaaa_0001);
const OUT_B: Ssrc = Ssrc(0xbbbb_0002);
/// Packets per direction.
const N: u32 = 2000;
const WAIT: Duration = Duration::from_secs(10);

struct Report {
    mode: XdpMode,
    zero_copy: bool,
    stats: XdpStats,
    a: LegCounters,
    b: LegCounters,
    attached_during: Option<u32>,
    attached_after: Option<u32>,
}

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// The relay: one session (A on PORT_A, B on PORT_B) switched by the same
/// `handle_packet` the workers use, over the XDP backend, until `stop`.
fn relay(
    v6: bool,
    phone_a: SocketAddr,
    phone_b: SocketAddr,
    ready: mpsc::Sender<UdpSocket>,
    stop: &AtomicBool,
) -> Report {
    let relay_ip = if v6 { RELAY_V6 } else { RELAY_V4 };
    let cfg = XdpConfig {
        interface: "xr0".into(),
        queues: vec![0],
        ipv4: (!v6).then(|| RELAY_V4.parse().unwrap()),
        ipv6: v6.then(|| RELAY_V6.parse().unwrap()),
        ports: PORTS,
        mode: XdpMode::Auto,
        attach: AttachMethod::Link,
        zero_copy: true,
        busy_poll: true,
        offload: false,
    };
    let prog = XdpProgram::attach(&cfg).expect("attach XDP program");
    let mode = prog.mode;
    let mut be = XdpBackend::new(prog, 0, 4, 64).expect("open AF_XDP socket");
    let zero_copy = be.zero_copy();
    let tok = |side| {
        SocketRef {
            slot: 0,
            side,
            kind: Kind::Rtp,
        }
        .token()
    };
    let (la, lb) = (sa(relay_ip, PORT_A), sa(relay_ip, PORT_B));
    be.register(tok(Side::A), UdpSocket::bind(la).unwrap())
        .unwrap();
    be.register(tok(Side::B), UdpSocket::bind(lb).unwrap())
        .unwrap();
    let mut s = Session::new(
        SessionId(1),
        Mode::Relay,
        Leg::new(la, OUT_A),
        Leg::new(lb, OUT_B),
    );
    s.a.set_remote(phone_a, None);
    s.b.set_remote(phone_b, None);
    let attached_during = attached_program("xr0").unwrap();
    // A kernel socket outside the RTP range (SIP).
    ready
        .send(UdpSocket::bind(sa(relay_ip, 5060)).unwrap())
        .unwrap();

    let mut batch = Batch::new(64);
    while !stop.load(Ordering::Relaxed) {
        let now = clock::now();
        let n = be.recv(&mut batch, Duration::from_millis(5)).unwrap();
        for i in 0..n {
            let (meta, buf) = batch.get_mut(i);
            let rx = SocketRef::from_token(meta.token);
            if let Decision::Forward { from, to } =
                handle_packet(&mut s, rx, meta.peer, buf, now).decision
            {
                meta.tx = Some(Tx {
                    from: from.token(),
                    to,
                });
            }
        }
        be.send(&batch);
    }
    let stats = be.stats;
    drop(be);
    Report {
        mode,
        zero_copy,
        stats,
        a: s.a.counters,
        b: s.b.counters,
        attached_during,
        attached_after: detached_within("xr0", Duration::from_secs(5)),
    }
}

/// The program still attached to `ifname` after waiting up to `limit` for
/// it to go: the link is released when its last descriptor closes, and a
/// process a parallel test forks at that moment holds a copy until it execs.
fn detached_within(ifname: &str, limit: Duration) -> Option<u32> {
    let end = std::time::Instant::now() + limit;
    loop {
        let id = attached_program(ifname).unwrap();
        if id.is_none() || std::time::Instant::now() >= end {
            return id;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rtp_packet(ssrc: u32, k: u32) -> Vec<u8> {
    let mut b = vec![0u8; 12 + 160];
    b[12..16].copy_from_slice(&k.to_be_bytes());
    rtp::Repr {
        marker: false,
        payload_type: Pt::PCMU,
        sequence_number: (65_000 + k) as u16, // wraps during the run
        timestamp: 1_000 + 160 * k,
        ssrc: Ssrc(ssrc),
    }
    .emit(&mut b)
    .unwrap();
    b
}

/// Receive `N` packets on `sock` (or until the deadline) and check them:
/// from `relay`, SSRC `ssrc`, sequence +1 and timestamp +160 each time, the
/// payload index in order.
fn receive_and_check(sock: &UdpSocket, relay: SocketAddr, ssrc: Ssrc) -> usize {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut got: Vec<(u16, u32, u32)> = Vec::new();
    let t0 = clock::now();
    while got.len() < N as usize && clock::now() - t0 < WAIT {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(from, relay, "source of relayed packet");
        let p = rtp::Packet::new_checked(&buf[..n]).expect("valid RTP");
        assert_eq!(p.ssrc(), ssrc, "rewritten SSRC");
        assert_eq!(n, 172);
        let k = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
        got.push((p.sequence_number(), p.timestamp(), k));
    }
    for (i, w) in got.windows(2).enumerate() {
        assert_eq!(w[1].2, w[0].2 + 1, "order/loss at {i}: {w:?}");
        assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence at {i}");
        assert_eq!(w[1].1, w[0].1.wrapping_add(160), "timestamp at {i}");
    }
    if let Some(first) = got.first() {
        assert_eq!(first.2, 0, "first packet index");
    }
    got.len()
}

fn relay_scenario(v6: bool, warm_up: bool) {
    let tag = match (v6, warm_up) {
        (false, true) => "r4",
        (true, true) => "r6",
        (false, false) => "c4",
        (true, false) => "c6",
    };
    let Some(ns) = Netns::create(tag) else {
        return;
    };
    let (a_ip, b_ip, relay_ip) = if v6 {
        (PHONE_A_V6, PHONE_B_V6, RELAY_V6)
    } else {
        (PHONE_A_V4, PHONE_B_V4, RELAY_V4)
    };
    let (phone_a, phone_b) = (sa(a_ip, 5000), sa(b_ip, 6000));
    let (sock_a, sock_b, other) = in_ns(&ns.peer, || {
        (
            UdpSocket::bind(phone_a).unwrap(),
            UdpSocket::bind(phone_b).unwrap(),
            UdpSocket::bind(sa(a_ip, 0)).unwrap(),
        )
    });
    deep_rcvbuf(&sock_a);
    deep_rcvbuf(&sock_b);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let report = std::thread::scope(|s| {
        let relay_ns = ns.relay.clone();
        let stop = &stop;
        // A failed check below must not leave the relay running forever.
        let _stop = StopOnDrop(stop);
        let h = s.spawn(move || {
            enter(&relay_ns);
            relay(v6, phone_a, phone_b, tx, stop)
        });
        let sip = rx.recv_timeout(WAIT).expect("relay ready");
        let (ra, rb) = (sa(relay_ip, PORT_A), sa(relay_ip, PORT_B));
        let (got_b, got_a) = std::thread::scope(|s2| {
            let rb_h = s2.spawn(|| receive_and_check(&sock_b, rb, OUT_B));
            let ra_h = s2.spawn(|| receive_and_check(&sock_a, ra, OUT_A));
            // One stray byte from each phone first: the backend learns both
            // MACs from them (the switch drops them as malformed), so no
            // datagram of the stream takes the kernel path while the kernel
            // still resolves the neighbour (that could reorder: module doc).
            // Without it (`warm_up` false), the first datagrams to each
            // phone take the kernel path while the phone's MAC is learned
            // from its own stream: order must still hold.
            if warm_up {
                sock_a.send_to(b"x", ra).unwrap();
                sock_b.send_to(b"x", rb).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
            for k in 0..N {
                sock_a.send_to(&rtp_packet(0x1111, k), ra).unwrap();
                sock_b.send_to(&rtp_packet(0x2222, k), rb).unwrap();
                if k % 16 == 15 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            (rb_h.join().unwrap(), ra_h.join().unwrap())
        });

        // Non-RTP: SIP to the kernel socket, a datagram to an in-range
        // port nobody registered (taken by XDP, dropped by the backend).
        other
            .send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", sa(relay_ip, 5060))
            .unwrap();
        other.send_to(b"stray", sa(relay_ip, 40_050)).unwrap();
        sip.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 64];
        let sip_got = sip.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec());
        let ping_ok = in_ns(&ns.peer, || icmp_echo(relay_ip.parse().unwrap()));
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let r = h.join().expect("relay thread");
        (r, got_a, got_b, sip_got, ping_ok)
    });
    let (r, got_a, got_b, sip_got, ping_ok) = report;
    eprintln!(
        "xdp relay ipv{}: mode {:?}, zero-copy {}, stats {:?}",
        if v6 { 6 } else { 4 },
        r.mode,
        r.zero_copy,
        r.stats
    );
    assert_eq!(got_b, N as usize, "A->B all delivered");
    assert_eq!(got_a, N as usize, "B->A all delivered");
    assert_eq!(r.a.rtp_in, u64::from(N));
    assert_eq!(r.b.rtp_in, u64::from(N));
    assert!(
        r.stats.rx_frames >= u64::from(2 * N + 2 * u32::from(warm_up)),
        "RTP came through the AF_XDP socket: {:?}",
        r.stats
    );
    assert!(
        r.stats.tx_frames > u64::from(N),
        "sent through AF_XDP: {:?}",
        r.stats
    );
    assert!(
        r.stats.rx_dropped >= 1,
        "stray in-range datagram seen by XDP"
    );
    assert_eq!(r.stats.rx_kernel, 0, "no RTP leaked to the kernel path");
    assert_eq!(
        sip_got.expect("SIP datagram reached the kernel socket"),
        b"OPTIONS sip:x SIP/2.0\r\n\r\n"
    );
    assert!(
        ping_ok.expect("raw ICMP socket"),
        "echo request answered through the XDP program"
    );
    assert!(
        r.attached_during.is_some(),
        "program attached while running"
    );
    assert_eq!(r.attached_after, None, "program detached after drop");
}

#[test]
fn xdp_relay_ipv4() {
    relay_scenario(false, true);
}

#[test]
fn xdp_relay_ipv6() {
    relay_scenario(true, true);
}

/// First contact in both directions at once, no warm-up: no datagram the
/// kernel holds while resolving a phone is overtaken by AF_XDP ones.
#[test]
fn xdp_relay_cold_start_keeps_order_ipv4() {
    relay_scenario(false, false);
}

#[test]
fn xdp_relay_cold_start_keeps_order_ipv6() {
    relay_scenario(true, false);
}

#[test]
fn xdp_probe() {
    if !root_or_skip() {
        return;
    }
    assert!(
        dataplane::io::xdp::probe("lo").is_ok(),
        "{:?}",
        dataplane::io::xdp::probe("lo")
    );
    let e = dataplane::io::xdp::probe("no-such-if9").unwrap_err();
    assert!(e.contains("no-such-if9"), "{e}");
}

/// Sending to a peer never heard from: the first datagrams go through the
/// kernel socket (which resolves the neighbour), later ones through AF_XDP
/// once the kernel's neighbour table has the MAC. All arrive, in order.
fn first_contact_scenario(v6: bool) {
    let Some(ns) = Netns::create(if v6 { "n6" } else { "n4" }) else {
        return;
    };
    let (b_ip, relay_ip) = if v6 {
        (PHONE_B_V6, RELAY_V6)
    } else {
        (PHONE_B_V4, RELAY_V4)
    };
    let phone_b = sa(b_ip, 6000);
    let sock_b = in_ns(&ns.peer, || UdpSocket::bind(phone_b).unwrap());
    deep_rcvbuf(&sock_b);
    const M: u32 = 100;
    let from = sa(relay_ip, 40_010);
    let stats = std::thread::scope(|s| {
        let relay_ns = ns.relay.clone();
        let h = s.spawn(move || {
            enter(&relay_ns);
            let cfg = XdpConfig {
                interface: "xr0".into(),
                queues: vec![0],
                ipv4: (!v6).then(|| RELAY_V4.parse().unwrap()),
                ipv6: v6.then(|| RELAY_V6.parse().unwrap()),
                ports: PORTS,
                mode: XdpMode::Generic,
                attach: AttachMethod::Link,
                zero_copy: false,
                busy_poll: false,
                offload: false,
            };
            let prog = XdpProgram::attach(&cfg).unwrap();
            let mut be = XdpBackend::new(prog, 0, 1, 4).unwrap();
            be.register(dataplane::io::Token(0), UdpSocket::bind(from).unwrap())
                .unwrap();
            let mut batch = Batch::new(4);
            for k in 0..M {
                batch.clear();
                batch.push(dataplane::io::Token(0), phone_b, &k.to_be_bytes());
                batch.get_mut(0).0.tx = Some(Tx {
                    from: dataplane::io::Token(0),
                    to: phone_b,
                });
                let st = be.send(&batch);
                assert_eq!(st.sent, 1, "datagram {k}");
                std::thread::sleep(Duration::from_millis(2));
            }
            be.stats
        });
        sock_b
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut buf = [0u8; 64];
        for k in 0..M {
            let t0 = clock::now();
            let (n, src) = loop {
                match sock_b.recv_from(&mut buf) {
                    Ok(r) => break r,
                    // EINTR: signals from the `ip` children of parallel tests.
                    Err(e) if clock::now() - t0 < WAIT => {
                        assert!(e.kind() != std::io::ErrorKind::InvalidInput, "{e}")
                    }
                    Err(e) => panic!("datagram {k} not delivered: {e}"),
                }
            };
            assert_eq!(src, from);
            assert_eq!(&buf[..n], &k.to_be_bytes(), "in order");
        }
        h.join().unwrap()
    });
    eprintln!("first contact ipv{}: {stats:?}", if v6 { 6 } else { 4 });
    assert!(
        stats.tx_kernel >= 1,
        "first datagram via the kernel: {stats:?}"
    );
    // The kernel resolves the neighbour (ARP or NDP) within a few
    // datagrams; the netlink lookup then finds it, for IPv6 as for IPv4.
    assert!(
        stats.tx_frames >= M as u64 / 2,
        "then via AF_XDP: {stats:?}"
    );
    assert_eq!(stats.tx_kernel + stats.tx_frames, u64::from(M));
}

#[test]
fn xdp_first_contact_ipv4() {
    first_contact_scenario(false);
}

#[test]
fn xdp_first_contact_ipv6() {
    first_contact_scenario(true);
}
