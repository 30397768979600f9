//! The XDP program's in-kernel fast path run on crafted frames through
//! `BPF_PROG_TEST_RUN`: IPv4 and IPv6, hit and miss, source/SSRC/RTCP
//! mismatches passed on, sequence number and timestamp wrap, and the
//! checksums of every rewritten frame verified by a computation written here
//! (not the crate's), also when the input's checksum was unfinished; the
//! hand-over (a pending entry's frames go on to the worker, each with its
//! ticket in the metadata, until promoted on the last ticket). Skips (with a
//! message) without root / bpf().

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use dataplane::io::xdp::bpf::{self, Filter, XDP_PASS, XDP_TX};
use dataplane::io::xdp::frame::{self, Mac};
use dataplane::io::xdp::offload::{self, OffloadMap, Rule};

const PORTS: std::ops::RangeInclusive<u16> = 20_000..=20_009;
const RELAY4: &str = "10.0.0.2";
const RELAY6: &str = "fd00::2";
const MY_MAC: Mac = Mac([2, 0, 0, 0, 0, 2]);
const PEER_IN_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
const PEER_OUT_MAC: Mac = Mac([2, 0, 0, 0, 0, 3]);

struct Rig {
    _xsk: OwnedFd,
    table: OffloadMap,
    prog: OwnedFd,
}

fn rig() -> Option<Rig> {
    let xsk = match bpf::create_xskmap(1) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIP: bpf() unavailable here ({e}): needs root and BPF");
            return None;
        }
    };
    let table = OffloadMap::create(PORTS).expect("offload table");
    let filter = Filter {
        ipv4: Some(RELAY4.parse().unwrap()),
        ipv6: Some(RELAY6.parse().unwrap()),
        ports: PORTS,
    };
    let insns = bpf::program_with_offload(&filter, xsk.as_raw_fd(), Some(table.fd().as_raw_fd()));
    let prog = bpf::load(&insns).expect("verifier accepts the program");
    Some(Rig {
        _xsk: xsk,
        table,
        prog,
    })
}

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: usize) -> Vec<u8> {
    let mut b = vec![0x80, pt];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend((0..payload).map(|i| (i * 7 + 3) as u8));
    b
}

/// A frame from `src` to `dst` carrying `payload` (checksummed by the crate's
/// emitter: the input side only).
fn frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let hl = frame::header_len(&dst);
    let mut f = vec![0u8; hl + payload.len()];
    f[hl..].copy_from_slice(payload);
    frame::emit(&mut f, PEER_IN_MAC, MY_MAC, src, dst, payload.len()).unwrap();
    f
}

/// Independent one's-complement sum.
fn ocsum(chunks: &[&[u8]]) -> u32 {
    let mut acc: u32 = 0;
    for c in chunks {
        let mut i = 0;
        while i + 1 < c.len() {
            acc += u32::from(c[i]) << 8 | u32::from(c[i + 1]);
            i += 2;
        }
        if i < c.len() {
            acc += u32::from(c[i]) << 8;
        }
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// Parsed view of an output frame with its checksums verified.
#[derive(Debug)]
struct Out {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    udp_csum: u16,
    payload: Vec<u8>,
}

fn check(f: &[u8]) -> Out {
    let v6 = f[12..14] == [0x86, 0xdd];
    let (ihl, src_ip, dst_ip, ttl): (usize, IpAddr, IpAddr, u8) = if v6 {
        let s: [u8; 16] = f[22..38].try_into().unwrap();
        let d: [u8; 16] = f[38..54].try_into().unwrap();
        assert_eq!(f[14] >> 4, 6);
        assert_eq!(f[20], 17);
        (40, s.into(), d.into(), f[21])
    } else {
        assert_eq!(f[12..14], [0x08, 0x00]);
        let ip = &f[14..34];
        assert_eq!(ocsum(&[ip]), 0xffff, "IPv4 header checksum");
        let len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert_eq!(len, f.len() - 14, "IPv4 total length");
        let s: [u8; 4] = ip[12..16].try_into().unwrap();
        let d: [u8; 4] = ip[16..20].try_into().unwrap();
        (20, s.into(), d.into(), ip[8])
    };
    let udp = &f[14 + ihl..];
    let ulen = u16::from_be_bytes([udp[4], udp[5]]);
    assert_eq!(usize::from(ulen), udp.len(), "UDP length");
    let csum = u16::from_be_bytes([udp[6], udp[7]]);
    if csum != 0 || v6 {
        let mut pseudo = Vec::new();
        match (src_ip, dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, 17]);
                pseudo.extend_from_slice(&ulen.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&u32::from(ulen).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
            }
            _ => unreachable!(),
        }
        assert_ne!(csum, 0, "a computed UDP checksum is never sent as 0");
        assert_eq!(ocsum(&[&pseudo, udp]), 0xffff, "UDP checksum");
    }
    Out {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        src: SocketAddr::new(src_ip, u16::from_be_bytes([udp[0], udp[1]])),
        dst: SocketAddr::new(dst_ip, u16::from_be_bytes([udp[2], udp[3]])),
        ttl,
        udp_csum: csum,
        payload: udp[8..].to_vec(),
    }
}

fn rule(v6: bool, local_port: u16, seq_delta: u16, ts_delta: u32) -> Rule {
    let (peer_a, relay, peer_b) = if v6 {
        ("fd00::1", RELAY6, "fd00::3")
    } else {
        ("10.0.0.1", RELAY4, "10.0.0.3")
    };
    Rule {
        src: sa(peer_a, 4000),
        local: sa(relay, local_port),
        out_src: sa(relay, local_port + 2),
        out_dst: sa(peer_b, 6000),
        src_mac: MY_MAC,
        dst_mac: PEER_OUT_MAC,
        in_ssrc: 0x1111_2222,
        out_ssrc: 0xabcd_ef01,
        seq_delta,
        ts_delta,
    }
}

/// Install `rule` and turn it on at once (no hand-over: nothing in flight).
fn install(r: &Rig, rule: &Rule) -> u32 {
    let i = offload::index(&PORTS, rule.local.is_ipv6(), rule.local.port()).unwrap();
    assert!(r.table.install(i, &offload::encode(rule).unwrap()));
    r.table.enable(i);
    i
}

fn run(r: &Rig, f: &[u8]) -> (u32, Vec<u8>) {
    bpf::test_run(r.prog.as_fd(), f).expect("BPF_PROG_TEST_RUN")
}

fn hit(r: &Rig, rule: &Rule, seq: u16, ts: u32, len: usize) -> Out {
    hit_with(r, rule, seq, ts, len, None)
}

/// [`hit`] with the input's UDP checksum replaced by `csum` (an unfinished
/// `CHECKSUM_PARTIAL` one, as a local sender over veth leaves it).
fn hit_with(r: &Rig, rule: &Rule, seq: u16, ts: u32, len: usize, csum: Option<u16>) -> Out {
    let mut input = frame(rule.src, rule.local, &rtp(0, seq, ts, rule.in_ssrc, len));
    if let Some(c) = csum {
        let at = frame::header_len(&rule.local) - 2;
        input[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let (ret, out) = run(r, &input);
    assert_eq!(ret, XDP_TX as u32, "fast path taken");
    let o = check(&out);
    assert_eq!(o.dst_mac, PEER_OUT_MAC.0);
    assert_eq!(o.src_mac, MY_MAC.0);
    assert_eq!(o.src, rule.out_src);
    assert_eq!(o.dst, rule.out_dst);
    assert_eq!(o.ttl, 64, "TTL/hop limit as the userspace path sets it");
    let p = &o.payload;
    assert_eq!(p.len(), 12 + len);
    assert_eq!(p[0..2], [0x80, 0]);
    assert_eq!(
        u16::from_be_bytes([p[2], p[3]]),
        seq.wrapping_add(rule.seq_delta)
    );
    assert_eq!(
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ts.wrapping_add(rule.ts_delta)
    );
    assert_eq!(
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        rule.out_ssrc
    );
    assert_eq!(&p[12..], &rtp(0, 0, 0, 0, len)[12..], "payload untouched");
    o
}

#[test]
fn ipv4_hit_miss_and_mismatches() {
    let Some(r) = rig() else { return };
    let rule = rule(false, 20_000, 1000, 160_000);
    let i = install(&r, &rule);
    hit(&r, &rule, 1, 160, 160);
    hit(&r, &rule, 2, 320, 161);
    let c = r.table.counts(i);
    assert_eq!((c.packets, c.bytes), (2, 12 + 160 + 12 + 161));
    assert_eq!((c.last_seq, c.last_ts), (1002, 160_320));

    let pass = |f: Vec<u8>, why: &str| {
        let (ret, out) = run(&r, &f);
        assert_eq!(ret, XDP_PASS as u32, "{why}: not the fast path");
        assert_eq!(out, f, "{why}: frame untouched");
    };
    let good = rtp(0, 3, 480, rule.in_ssrc, 160);
    pass(
        frame(sa("10.0.0.1", 4001), rule.local, &good),
        "source port",
    );
    pass(
        frame(sa("10.0.0.9", 4000), rule.local, &good),
        "source address",
    );
    pass(frame(rule.src, sa(RELAY4, 20_001), &good), "no entry");
    pass(
        frame(rule.src, rule.local, &rtp(0, 3, 480, 0x5555_5555, 160)),
        "other SSRC",
    );
    let mut rtcp = rtp(200, 3, 480, rule.in_ssrc, 16);
    rtcp[0] = 0x81;
    pass(frame(rule.src, rule.local, &rtcp), "RTCP");
    pass(
        frame(rule.src, rule.local, &rtp(200, 3, 480, rule.in_ssrc, 16)),
        "muxed RTCP type",
    );
    let mut padded = good.clone();
    padded[0] = 0xa0;
    pass(frame(rule.src, rule.local, &padded), "padding bit");
    pass(frame(rule.src, rule.local, &good[..11]), "short RTP");
    r.table.disable(i);
    pass(frame(rule.src, rule.local, &good), "disabled entry");
    assert_eq!(r.table.counts(i).packets, 2, "misses are not counted");

    // No UDP checksum (IPv4): the output has none either.
    let rule2 = self::rule(false, 20_004, 0, 0);
    install(&r, &rule2);
    let mut f = frame(rule2.src, rule2.local, &rtp(8, 9, 9, rule2.in_ssrc, 20));
    f[34 + 6] = 0;
    f[34 + 7] = 0;
    let (ret, out) = run(&r, &f);
    assert_eq!(ret, XDP_TX as u32);
    assert_eq!(check(&out).udp_csum, 0);
}

#[test]
fn ipv6_hit_with_wrap() {
    let Some(r) = rig() else { return };
    let rule = rule(true, 20_006, 5, 0x20);
    let i = install(&r, &rule);
    hit(&r, &rule, 0xfffe, 0xffff_fff0, 160);
    hit(&r, &rule, 0xffff, 0xffff_fff8, 33);
    let c = r.table.counts(i);
    assert_eq!((c.last_seq, c.last_ts), (4, 0x18));
    // The IPv4 entry of the same port is another slot.
    let (ret, _) = run(
        &r,
        &frame(
            sa("10.0.0.1", 4000),
            sa(RELAY4, 20_006),
            &rtp(0, 1, 1, rule.in_ssrc, 10),
        ),
    );
    assert_eq!(ret, XDP_PASS as u32);
    // A zero UDP checksum is invalid over IPv6: not the fast path.
    let mut f = frame(rule.src, rule.local, &rtp(0, 1, 1, rule.in_ssrc, 10));
    f[54 + 6] = 0;
    f[54 + 7] = 0;
    assert_eq!(run(&r, &f).0, XDP_PASS as u32);
}

#[test]
fn checksums_hold_across_many_values() {
    let Some(r) = rig() else { return };
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for k in 0..300 {
        let v6 = k % 2 == 1;
        let mut rl = rule(v6, 20_002, next() as u16, next() as u32);
        rl.in_ssrc = next() as u32;
        rl.out_ssrc = next() as u32;
        rl.src.set_port(next() as u16 | 1);
        rl.out_dst.set_port(next() as u16 | 1);
        install(&r, &rl);
        let len = (next() % 300) as usize;
        let csum = (k % 4 >= 2).then(|| next() as u16 | 1);
        hit_with(&r, &rl, next() as u16, next() as u32, len, csum);
    }
}

#[test]
fn pending_entry_hands_over_on_the_last_ticket() {
    let Some(r) = rig() else { return };
    for v6 in [false, true] {
        let rule = rule(v6, 20_008, 3, 30);
        let i = offload::index(&PORTS, v6, rule.local.port()).unwrap();
        assert!(r.table.install(i, &offload::encode(&rule).unwrap()));
        assert!(r.table.pending(i));
        let f = frame(rule.src, rule.local, &rtp(0, 7, 70, rule.in_ssrc, 40));
        // Pending: on to the worker (XDP_PASS here: no AF_XDP socket in the
        // map), untouched, with the metadata in front.
        let mut tickets = Vec::new();
        for _ in 0..2 {
            let (ret, out) = run(&r, &f);
            assert_eq!(ret, XDP_PASS as u32, "pending: not forwarded");
            assert_eq!(out.len(), f.len() + offload::META_LEN, "metadata added");
            assert_eq!(&out[offload::META_LEN..], &f[..], "frame untouched");
            let meta: [u8; offload::META_LEN] = out[..offload::META_LEN].try_into().unwrap();
            tickets.push(offload::meta_ticket(&meta).expect("ticket in metadata"));
        }
        assert_eq!(tickets[1], tickets[0] + 1);
        // A frame of another source takes no ticket.
        let other = frame(
            sa(if v6 { "fd00::9" } else { "10.0.0.9" }, 4000),
            rule.local,
            &rtp(0, 7, 70, rule.in_ssrc, 40),
        );
        let (ret, out) = run(&r, &other);
        assert_eq!((ret, out.len()), (XDP_PASS as u32, other.len()));
        assert!(
            !r.table.promote(i, tickets[0]),
            "a later ticket is in flight"
        );
        assert!(r.table.pending(i));
        assert!(r.table.promote(i, tickets[1]));
        assert!(r.table.enabled(i));
        hit(&r, &rule, 8, 80, 40);
        assert_eq!(r.table.counts(i).packets, 1, "only forwarded frames count");
        r.table.disable(i);
        let (ret, out) = run(&r, &f);
        assert_eq!(
            (ret, out.len()),
            (XDP_PASS as u32, f.len()),
            "off: no ticket"
        );
    }
}
