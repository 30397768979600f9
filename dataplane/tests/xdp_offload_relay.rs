//! The xdp backend's in-kernel fast path on a veth pair between network
//! namespaces, driven by the real worker: a relayed call (IPv4 and IPv6)
//! whose streams the worker offloads after latching. Every packet is
//! delivered once, in order, with SSRC/sequence/timestamp rewritten as the
//! worker does it; the worker's counters include the packets the kernel
//! forwarded (and show most of them did go through the kernel); deleting
//! the session disables the entries and nothing is relayed any more. Under
//! load (bursts from the first packet, two withdraw/hand-over rounds
//! mid-stream) order still holds: the hand-over waits for the worker.
//! Skips (with a message) without root.

mod xdp_netns;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use dataplane::clock::{self, MonotonicClock};
use dataplane::io::xdp::{bpf, netlink, AttachMethod, XdpBackend, XdpConfig, XdpMode, XdpProgram};
use dataplane::session::SlotAllocator;
use dataplane::wire::{rtp, Pt, Ssrc};
use dataplane::worker::{Command, Counters, LegSetup, Worker, WorkerConfig};
use dataplane::{Mode, SessionId, Side};
use xdp_netns::*;

const PORT_A: u16 = 41_000;
const PORT_B: u16 = 41_002;
const PORTS: std::ops::RangeInclusive<u16> = 41_000..=41_099;
const OUT_A: Ssrc = Ssrc(0xaaaa_0001);
const OUT_B: Ssrc = Ssrc(0xbbbb_0002);
/// Packets per direction sent before the fast path is checked, and in all.
const FIRST: u32 = 20;
const N: u32 = 3000;
const WAIT: Duration = Duration::from_secs(10);

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn rtp_packet(ssrc: u32, k: u32) -> Vec<u8> {
    let mut b = vec![0u8; 12 + 160];
    b[12..16].copy_from_slice(&k.to_be_bytes());
    rtp::Repr {
        marker: false,
        payload_type: Pt::PCMU,
        sequence_number: (64_000 + k) as u16, // wraps during the run
        timestamp: 0xffff_0000u32.wrapping_add(160 * k), // wraps too
        ssrc: Ssrc(ssrc),
    }
    .emit(&mut b)
    .unwrap();
    b
}

/// Receive `want` packets on `sock` (or until the deadline) and check them:
/// from `relay`, SSRC `ssrc`, sequence +1 and timestamp +160 each time,
/// payload indices 0, 1, 2... (so none lost, duplicated or reordered).
fn receive_and_check(sock: &UdpSocket, relay: SocketAddr, ssrc: Ssrc, want: u32) -> u32 {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut prev: Option<(u16, u32)> = None;
    let mut got = 0;
    let t0 = clock::now();
    while got < want && clock::now() - t0 < WAIT {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(from, relay, "source of relayed packet");
        assert_eq!(n, 172);
        let p = rtp::Packet::new_checked(&buf[..n]).expect("valid RTP");
        assert_eq!(p.ssrc(), ssrc, "rewritten SSRC");
        let k = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
        assert_eq!(k, got, "packet index: loss, duplicate or reorder");
        let (seq, ts) = (p.sequence_number(), p.timestamp());
        if let Some((s0, t0)) = prev {
            assert_eq!(seq, s0.wrapping_add(1), "sequence at {k}");
            assert_eq!(ts, t0.wrapping_add(160), "timestamp at {k}");
        } else {
            // The first packet of a fresh output stream keeps its numbers.
            assert_eq!(seq, 64_000, "first sequence number");
            assert_eq!(ts, 0xffff_0000, "first timestamp");
        }
        prev = Some((seq, ts));
        got += 1;
    }
    got
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let t0 = clock::now();
    while clock::now() - t0 < WAIT {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A program that passes everything, attached to the peer's end: veth
/// delivers `XDP_TX` frames only to a peer with NAPI (XDP or GRO) enabled.
fn peer_napi(ns: &str) -> Option<std::os::fd::OwnedFd> {
    in_ns(ns, || {
        let prog = bpf::load_named(&bpf::pass_all(), "tandem_test").ok()?;
        let ifindex = netlink::ifindex("xp0").ok()?;
        bpf::link_create(prog.as_fd(), ifindex, netlink::XDP_FLAGS_DRV_MODE).ok()
    })
}

/// `under_load`: every packet is sent in bursts of 16 from the start (the
/// hand-over happens while frames of the stream are queued for the worker),
/// and the fast path is withdrawn and handed over again twice mid-stream
/// (a same-address `SetRemote`); delivery must stay complete and in order.
fn scenario(v6: bool, under_load: bool) {
    let name = match (v6, under_load) {
        (false, false) => "o4",
        (true, false) => "o6",
        (false, true) => "l4",
        (true, true) => "l6",
    };
    let Some(ns) = Netns::create(name) else {
        return;
    };
    let _peer_prog = peer_napi(&ns.peer).expect("XDP program on the peer's veth end");
    let (a_ip, b_ip, relay_ip) = if v6 {
        (PHONE_A_V6, PHONE_B_V6, RELAY_V6)
    } else {
        (PHONE_A_V4, PHONE_B_V4, RELAY_V4)
    };
    let (phone_a, phone_b) = (sa(a_ip, 5000), sa(b_ip, 6000));
    let (sock_a, sock_b) = in_ns(&ns.peer, || {
        (
            UdpSocket::bind(phone_a).unwrap(),
            UdpSocket::bind(phone_b).unwrap(),
        )
    });
    let (ra, rb) = (sa(relay_ip, PORT_A), sa(relay_ip, PORT_B));
    let counters = Arc::new(Counters::default());
    let stop = AtomicBool::new(false);
    let (prog_tx, prog_rx) = mpsc::channel::<Arc<XdpProgram>>();
    let (mut cmd_tx, cmd_rx) = rtrb::RingBuffer::<Command>::new(16);
    let (ev_tx, _ev_rx) = rtrb::RingBuffer::new(16);
    let slot = SlotAllocator::new(1).alloc().unwrap();

    /// Stops the relay thread however the scope ends (a failed assertion
    /// must not leave the scope waiting for it forever).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop_guard = StopOnDrop(&stop);
        let relay_ns = ns.relay.clone();
        let (stop, wcounters) = (&stop, counters.clone());
        let h = s.spawn(move || {
            enter(&relay_ns);
            let cfg = XdpConfig {
                interface: "xr0".into(),
                queues: vec![0],
                ipv4: (!v6).then(|| RELAY_V4.parse().unwrap()),
                ipv6: v6.then(|| RELAY_V6.parse().unwrap()),
                ports: PORTS,
                mode: XdpMode::Auto,
                attach: AttachMethod::Link,
                zero_copy: false,
                busy_poll: false,
                offload: true,
            };
            let prog = XdpProgram::attach(&cfg).expect("attach XDP program");
            assert!(prog.offloads(), "fast path loaded");
            let be = XdpBackend::new(prog.clone(), 0, 4, 64).expect("AF_XDP socket");
            prog_tx.send(prog).unwrap();
            let wc = WorkerConfig {
                index: 0,
                core: 0,
                max_sessions: 1,
                media_timeout: Duration::ZERO,
            };
            let mut w = Worker::new(wc, be, cmd_rx, ev_tx, wcounters);
            let clock = MonotonicClock;
            while !stop.load(Ordering::Relaxed) {
                w.poll(Duration::from_millis(2), &clock);
            }
        });
        let prog = prog_rx.recv_timeout(WAIT).expect("relay ready");
        let (la, lb) = in_ns(&ns.relay, || {
            (UdpSocket::bind(ra).unwrap(), UdpSocket::bind(rb).unwrap())
        });
        let (la1, lb1) = in_ns(&ns.relay, || {
            (
                UdpSocket::bind(sa(relay_ip, PORT_A + 1)).unwrap(),
                UdpSocket::bind(sa(relay_ip, PORT_B + 1)).unwrap(),
            )
        });
        let leg = |rtp, rtcp, local, ssrc| LegSetup {
            rtp: Some(rtp),
            rtcp: Some(rtcp),
            local,
            ssrc,
        };
        for c in [
            Command::Create {
                slot,
                id: SessionId(7),
                mode: Mode::Relay,
                a: leg(la, la1, ra, OUT_A),
                b: leg(lb, lb1, rb, OUT_B),
            },
            Command::SetRemote {
                slot,
                side: Side::A,
                rtp: phone_a,
                rtcp: None,
            },
            Command::SetRemote {
                slot,
                side: Side::B,
                rtp: phone_b,
                rtcp: None,
            },
        ] {
            cmd_tx.push(c).unwrap();
        }
        assert!(wait_for(|| counters.sessions.load(Ordering::Relaxed) == 1));

        let (got_b, got_a) = std::thread::scope(|s2| {
            let rb_h = s2.spawn(|| receive_and_check(&sock_b, rb, OUT_B, N));
            let ra_h = s2.spawn(|| receive_and_check(&sock_a, ra, OUT_A, N));
            // Warm-up: the backend learns both MACs (the worker drops these).
            sock_a.send_to(b"x", ra).unwrap();
            sock_b.send_to(b"x", rb).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let send = |k| {
                sock_a.send_to(&rtp_packet(0x1111, k), ra).unwrap();
                sock_b.send_to(&rtp_packet(0x2222, k), rb).unwrap();
            };
            let first = if under_load { 0 } else { FIRST };
            for k in 0..first {
                send(k);
                std::thread::sleep(Duration::from_millis(1));
            }
            if !under_load {
                // Both streams latched and relayed by the worker: offloaded now.
                assert!(
                    wait_for(|| prog.offload_entry_enabled(ra) && prog.offload_entry_enabled(rb)),
                    "fast-path entries installed"
                );
            }
            for k in first..N {
                if under_load && (k == N / 3 || k == 2 * N / 3) {
                    // Withdraw both streams mid-burst; the next packets offer
                    // them again.
                    for (side, rtp) in [(Side::A, phone_a), (Side::B, phone_b)] {
                        cmd_tx
                            .push(Command::SetRemote {
                                slot,
                                side,
                                rtp,
                                rtcp: None,
                            })
                            .unwrap();
                    }
                }
                send(k);
                if k % 16 == 15 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            (rb_h.join().unwrap(), ra_h.join().unwrap())
        });
        assert_eq!(got_b, N, "A->B all delivered");
        assert_eq!(got_a, N, "B->A all delivered");
        // The worker's counters include the kernel's packets (read every
        // 100 ms), and most packets went through the kernel.
        assert!(
            wait_for(|| counters.packets_in.load(Ordering::Relaxed) >= u64::from(2 * N + 2)),
            "packets_in {} < {}",
            counters.packets_in.load(Ordering::Relaxed),
            2 * N + 2
        );
        let out = counters.packets_out.load(Ordering::Relaxed);
        assert_eq!(out, u64::from(2 * N), "packets_out counts each once");
        let off = counters.offloaded.load(Ordering::Relaxed);
        eprintln!(
            "xdp offload ipv{}: mode {:?}, {off} of {} packets by the kernel",
            if v6 { 6 } else { 4 },
            prog.mode,
            2 * N
        );
        let want = if under_load { N } else { 2 * (N - FIRST) };
        assert!(off >= u64::from(want), "offloaded {off} < {want}");

        // Delete: entries gone, nothing relayed any more.
        cmd_tx.push(Command::Destroy { slot }).unwrap();
        assert!(wait_for(|| counters.sessions.load(Ordering::Relaxed) == 0));
        assert!(!prog.offload_entry_enabled(ra) && !prog.offload_entry_enabled(rb));
        sock_a.send_to(&rtp_packet(0x1111, N), ra).unwrap();
        sock_b
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 256];
        assert!(
            sock_b.recv_from(&mut buf).is_err(),
            "nothing relayed after delete"
        );
        stop.store(true, Ordering::Relaxed);
        drop(prog);
        h.join().expect("relay thread");
    });
}

#[test]
fn xdp_offload_relay_ipv4() {
    scenario(false, false);
}

#[test]
fn xdp_offload_relay_ipv6() {
    scenario(true, false);
}

#[test]
fn xdp_offload_hand_over_under_load_keeps_order_ipv4() {
    scenario(false, true);
}

#[test]
fn xdp_offload_hand_over_under_load_keeps_order_ipv6() {
    scenario(true, true);
}
