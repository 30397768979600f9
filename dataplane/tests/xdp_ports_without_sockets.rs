//! The xdp backend without a kernel socket per media port: a dataplane in a
//! child process whose open-files limit (lowered by the child itself) is far
//! below the 4 sockets per session the other backends need sets up
//! [`SESSIONS`] relay sessions and relays RTP through all of them on a veth
//! pair, both ways (every packet delivered, order kept per stream, SSRC
//! rewritten), the fast path on. The same child with a socket per port
//! (`TANDEM_XDP_PORT_SOCKETS=1`) runs out of descriptors first. The RTP
//! range shows in the namespace's `ip_local_reserved_ports` while the
//! dataplane runs and is gone after it exits. Skips (with a message) without
//! root.

mod xdp_netns;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Lines, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use dataplane::io::xdp::XdpMode;
use dataplane::{clock, Backend, Config, Dataplane, Mode, Side, XdpSettings};
use xdp_netns::*;

const TEST: &str = "xdp_sessions_beyond_the_fd_limit";
/// Environment of the child: what it runs.
const CHILD: &str = "TANDEM_XDP_FD_CHILD";
/// Sessions: 4 ports each, 400 sockets with the other backends.
const SESSIONS: usize = 100;
/// The child's open-files limit.
const NOFILE: u64 = 96;
const PORTS: std::ops::RangeInclusive<u16> = 41_000..=41_999;
/// Packets per stream (each session: one stream each way).
const K: u16 = 10;
const WAIT: Duration = Duration::from_secs(20);
const PHONE_PORT_A: u16 = 6100;
const PHONE_PORT_B: u16 = 6102;

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Child side: lower the limit, start the dataplane in this (relay)
/// namespace, create the sessions and print their addresses; relay until
/// stdin closes.
fn child(mode: &str) {
    let lim = libc::rlimit {
        rlim_cur: NOFILE,
        rlim_max: NOFILE,
    };
    // SAFETY: a valid rlimit value; lowering a limit needs no privilege.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut dp = Dataplane::start(Config {
        backend: Backend::Xdp,
        cores: vec![0],
        rtp_ports: PORTS,
        media_ip: RELAY_V4.parse().unwrap(),
        media_timeout: Duration::ZERO,
        max_sessions_per_worker: SESSIONS + 8,
        xdp: Some(XdpSettings {
            interface: "xr0".into(),
            queues: vec![0],
            zero_copy: false,
            busy_poll: false,
            mode: XdpMode::Auto,
        }),
        control_cores: Vec::new(),
    })
    .expect("start the dataplane");
    for n in &dp.selection().notes {
        println!("note {n}");
    }
    let reserved = std::fs::read_to_string(dataplane::io::xdp::reserve::SYSCTL).unwrap();
    println!("reserved {}", reserved.trim());
    let (a, b) = (sa(PHONE_A_V4, PHONE_PORT_A), sa(PHONE_B_V4, PHONE_PORT_B));
    for i in 0..SESSIONS {
        let s = match dp.create_session(Mode::Relay) {
            Ok(s) => s,
            Err(e) => {
                println!("failed {i} {e}");
                return;
            }
        };
        dp.set_remote(s.id, Side::A, a, None).unwrap();
        dp.set_remote(s.id, Side::B, b, None).unwrap();
        println!("session {} {}", s.a, s.b);
    }
    // A port without a socket receives only once the worker registered it
    // (nothing queues for it before): wait until it has them all.
    let t0 = clock::now();
    while dp.stats()[0].sessions < SESSIONS as u64 && clock::now() - t0 < WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The last session's remotes follow its creation in the command ring.
    std::thread::sleep(Duration::from_millis(200));
    println!("ready");
    std::io::stdout().flush().unwrap();
    if mode == "sockets" {
        return;
    }
    // Relay until the parent closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let st = &dp.stats()[0];
    println!("stats in {} out {}", st.packets_in, st.packets_out);
    dp.shutdown();
}

/// Start the child in the relay namespace; returns it and its stdout lines
/// up to `ready` or `failed` (or its end).
fn spawn_child(ns: &Netns, mode: &str) -> (Child, Lines<BufReader<ChildStdout>>, Vec<String>) {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new("ip")
        .args(["netns", "exec", &ns.relay])
        .arg(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
        .env(CHILD, mode)
        .env(
            "TANDEM_XDP_PORT_SOCKETS",
            if mode == "sockets" { "1" } else { "0" },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let out = c.stdout.take().unwrap();
    let mut lines = Vec::new();
    let mut out = BufReader::new(out).lines();
    for l in out.by_ref() {
        let Ok(l) = l else { break };
        let end = l == "ready" || l.starts_with("failed");
        lines.push(l);
        if end {
            break;
        }
    }
    (c, out, lines)
}

fn rtp(ssrc: u32, seq: u16, session: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&(session as u32).to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// Receive `n` packets on `sock`; check them per relay port (the session's
/// sending leg): payload from that session, sequence numbers consecutive
/// (order kept), one output SSRC per stream that is not the input's; with
/// `every_session`, [`K`] packets from each session.
fn receive(
    sock: &UdpSocket,
    n: usize,
    session_of: &HashMap<SocketAddr, usize>,
    in_ssrc: u32,
    every_session: bool,
) {
    let mut last: HashMap<usize, (u32, u16, u16)> = HashMap::new();
    let mut first: HashMap<usize, u16> = HashMap::new();
    let mut buf = [0u8; 512];
    let t0 = clock::now();
    for got in 0..n {
        let (len, src) = loop {
            match sock.recv_from(&mut buf) {
                Ok(r) => break r,
                Err(e) if clock::now() - t0 < WAIT => {
                    assert!(e.kind() != std::io::ErrorKind::InvalidInput, "{e}")
                }
                Err(e) => {
                    let mut firsts: Vec<u16> = first.values().copied().collect();
                    firsts.sort_unstable();
                    panic!("{got} of {n} packets received: {e}; first sequence numbers: {firsts:?}")
                }
            }
        };
        assert_eq!(len, 12 + 4 + 160, "length");
        let s = *session_of
            .get(&src)
            .unwrap_or_else(|| panic!("from {src}: not a relay leg"));
        let payload_session = u32::from_be_bytes(buf[12..16].try_into().unwrap()) as usize;
        assert_eq!(
            payload_session, s,
            "packet of session {payload_session} sent from {src}"
        );
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes(buf[8..12].try_into().unwrap());
        assert_ne!(ssrc, in_ssrc, "SSRC rewritten");
        first.entry(s).or_insert(seq);
        let e = last.entry(s).or_insert((ssrc, seq.wrapping_sub(1), 0));
        assert_eq!(e.0, ssrc, "session {s}: one output SSRC");
        assert_eq!(seq, e.1.wrapping_add(1), "session {s}: in order");
        e.1 = seq;
        e.2 += 1;
    }
    if !every_session {
        return;
    }
    assert_eq!(last.len(), session_of.len(), "every session delivered");
    assert!(last.values().all(|v| v.2 == K), "K packets per session");
}

#[test]
fn xdp_sessions_beyond_the_fd_limit() {
    if let Ok(mode) = std::env::var(CHILD) {
        child(&mode);
        return;
    }
    let Some(ns) = Netns::create("fd") else {
        return;
    };
    // The fast path sends with XDP_TX: the peer's veth end needs NAPI.
    let _peer_prog = dataplane::io::xdp::peer::attach_pass(
        Some(std::path::Path::new(&format!("/var/run/netns/{}", ns.peer))),
        "xp0",
    )
    .expect("pass program on the peer's veth end");

    // With a socket per port the limit is hit.
    let (mut c, _, lines) = spawn_child(&ns, "sockets");
    let _ = c.wait();
    let failed = lines.iter().find(|l| l.starts_with("failed"));
    assert!(
        failed.is_some_and(|l| l.contains("open files")),
        "sockets per port: expected to run out of descriptors: {lines:?}"
    );

    let (mut c, out, lines) = spawn_child(&ns, "xdp");
    assert_eq!(lines.last().map(String::as_str), Some("ready"), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("note xdp ports")),
        "ports without sockets: {lines:?}"
    );
    let reserved = lines.iter().find(|l| l.starts_with("reserved")).unwrap();
    assert!(reserved.contains("41000-41999"), "{reserved}");
    let mut legs_a = HashMap::new();
    let mut legs_b = HashMap::new();
    for (i, l) in lines
        .iter()
        .filter(|l| l.starts_with("session "))
        .enumerate()
    {
        let mut w = l.split(' ').skip(1);
        legs_a.insert(w.next().unwrap().parse::<SocketAddr>().unwrap(), i);
        legs_b.insert(w.next().unwrap().parse::<SocketAddr>().unwrap(), i);
    }
    assert_eq!(legs_a.len(), SESSIONS);

    let (sock_a, sock_b) = in_ns(&ns.peer, || {
        (
            UdpSocket::bind(sa(PHONE_A_V4, PHONE_PORT_A)).unwrap(),
            UdpSocket::bind(sa(PHONE_B_V4, PHONE_PORT_B)).unwrap(),
        )
    });
    for s in [&sock_a, &sock_b] {
        deep_rcvbuf(s);
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    }
    let mut by_index_a = vec![sa(RELAY_V4, 0); SESSIONS];
    let mut by_index_b = by_index_a.clone();
    for (&addr, &i) in &legs_a {
        by_index_a[i] = addr;
    }
    for (&addr, &i) in &legs_b {
        by_index_b[i] = addr;
    }
    // First contact with phone B (its MAC unknown: the kernel path, a raw
    // socket, resolves it) on session 0 alone, so the burst below does not
    // meet an unresolved neighbour (the kernel queues only so many
    // datagrams for one, sockets or not).
    sock_a
        .send_to(&rtp(0xa000_0000, 99, 0), by_index_a[0])
        .unwrap();
    receive(&sock_b, 1, &legs_b, 0xa000_0000, false);
    for seq in 0..K {
        for i in 0..SESSIONS {
            sock_a
                .send_to(&rtp(0xa000_0000, 100 + seq, i), by_index_a[i])
                .unwrap();
            sock_b
                .send_to(&rtp(0xb000_0000, 500 + seq, i), by_index_b[i])
                .unwrap();
        }
        // Paced: the first packets of each stream (the worker's) and the
        // hand-over to the fast path both happen under way.
        std::thread::sleep(Duration::from_millis(5));
    }
    // A -> relay leg A -> B (from leg B's port), and back.
    receive(
        &sock_b,
        SESSIONS * usize::from(K),
        &legs_b,
        0xa000_0000,
        true,
    );
    receive(
        &sock_a,
        SESSIONS * usize::from(K),
        &legs_a,
        0xb000_0000,
        true,
    );

    drop(c.stdin.take());
    let rest: Vec<String> = out.map_while(Result::ok).collect();
    assert!(c.wait().unwrap().success(), "child: {rest:?}");
    eprintln!("child: {rest:?}");
    let after = in_ns(&ns.relay, || {
        std::fs::read_to_string(dataplane::io::xdp::reserve::SYSCTL).unwrap()
    });
    assert!(!after.contains("41000"), "reservation left behind: {after}");
}
