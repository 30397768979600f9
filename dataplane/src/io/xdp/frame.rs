//! Ethernet/IPv4/IPv6/UDP frames as the AF_XDP socket sees them: parse a
//! received frame down to its UDP payload, and write the headers in front of
//! a payload to send. Pure code: no I/O, no allocation, no `unsafe`.
//!
//! Only what the XDP program redirects is accepted: untagged Ethernet, IPv4
//! without fragmentation (options allowed), IPv6 with UDP as the first next
//! header. The IPv4 header checksum is verified; the UDP checksum is not (a
//! frame sent by a local socket over veth can still carry the unfinished
//! checksum of `CHECKSUM_PARTIAL`, and NICs verify it before XDP anyway).
//! Sent frames carry a complete IPv4 header checksum and a UDP checksum for
//! both families (mandatory for IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_UDP: u8 = 17;
/// TTL / hop limit of frames we send (the Linux default).
pub const TTL: u8 = 64;

/// Why a received frame was not accepted (cheap: no payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than its headers claim.
    #[error("frame truncated")]
    Truncated,
    /// Not IPv4/IPv6 carrying UDP (the XDP program should not redirect it).
    #[error("not UDP over IPv4/IPv6")]
    NotUdp,
    /// An IPv4 fragment (reassembly is the kernel's job).
    #[error("IPv4 fragment")]
    Fragment,
    /// IPv4 header checksum wrong.
    #[error("bad IPv4 header checksum")]
    Checksum,
}

/// The parts of a received UDP frame the relay needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// Ethernet source (the next hop back to `src`).
    pub src_mac: Mac,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parse an Ethernet frame carrying UDP.
pub fn parse(f: &[u8]) -> Result<UdpFrame<'_>, ParseError> {
    if f.len() < ETH_LEN {
        return Err(ParseError::Truncated);
    }
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&f[6..12]);
    let ip = &f[ETH_LEN..];
    let (src_ip, dst_ip, udp): (IpAddr, IpAddr, &[u8]) = match be16(f, 12) {
        ETHERTYPE_IPV4 => {
            if ip.len() < IPV4_LEN {
                return Err(ParseError::Truncated);
            }
            if ip[0] >> 4 != 4 {
                return Err(ParseError::NotUdp);
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(be16(ip, 2));
            if ihl < IPV4_LEN || total < ihl || ip.len() < total {
                return Err(ParseError::Truncated);
            }
            if ip[9] != PROTO_UDP {
                return Err(ParseError::NotUdp);
            }
            if be16(ip, 6) & 0x3fff != 0 {
                return Err(ParseError::Fragment);
            }
            if checksum_fold(sum_words(&ip[..ihl], 0)) != 0 {
                return Err(ParseError::Checksum);
            }
            let s = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let d = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            (s.into(), d.into(), &ip[ihl..total])
        }
        ETHERTYPE_IPV6 => {
            if ip.len() < IPV6_LEN {
                return Err(ParseError::Truncated);
            }
            if ip[0] >> 4 != 6 || ip[6] != PROTO_UDP {
                return Err(ParseError::NotUdp);
            }
            let plen = usize::from(be16(ip, 4));
            if ip.len() < IPV6_LEN + plen {
                return Err(ParseError::Truncated);
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            (
                Ipv6Addr::from(s).into(),
                Ipv6Addr::from(d).into(),
                &ip[IPV6_LEN..IPV6_LEN + plen],
            )
        }
        _ => return Err(ParseError::NotUdp),
    };
    if udp.len() < UDP_LEN {
        return Err(ParseError::Truncated);
    }
    let ulen = usize::from(be16(udp, 4));
    if ulen < UDP_LEN || ulen > udp.len() {
        return Err(ParseError::Truncated);
    }
    Ok(UdpFrame {
        src_mac: Mac(src_mac),
        src: SocketAddr::new(src_ip, be16(udp, 0)),
        dst: SocketAddr::new(dst_ip, be16(udp, 2)),
        payload: &udp[UDP_LEN..ulen],
    })
}

/// Bytes of Ethernet + IP + UDP header in front of the payload for `dst`'s
/// family.
pub const fn header_len(dst: &SocketAddr) -> usize {
    match dst {
        SocketAddr::V4(_) => ETH_LEN + IPV4_LEN + UDP_LEN,
        SocketAddr::V6(_) => ETH_LEN + IPV6_LEN + UDP_LEN,
    }
}

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// Source and destination are of different address families.
    #[error("source and destination address families differ")]
    Family,
    /// The buffer is shorter than headers + payload, or the payload exceeds 64 KiB.
    #[error("frame does not fit")]
    TooLong,
}

/// Write the Ethernet/IP/UDP headers into `frame[..header_len(&dst)]`, in
/// front of the `payload_len` bytes of payload already at
/// `frame[header_len(&dst)..]`. Returns the frame length.
pub fn emit(
    frame: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddr,
    dst: SocketAddr,
    payload_len: usize,
) -> Result<usize, EmitError> {
    let hl = header_len(&dst);
    let total = hl + payload_len;
    let udp_len = UDP_LEN + payload_len;
    if frame.len() < total || udp_len > usize::from(u16::MAX) - IPV6_LEN {
        return Err(EmitError::TooLong);
    }
    frame[0..6].copy_from_slice(&dst_mac.0);
    frame[6..12].copy_from_slice(&src_mac.0);
    let udp_at = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = &mut frame[ETH_LEN..ETH_LEN + IPV4_LEN];
            ip[0] = 0x45;
            ip[1] = 0;
            // Bound checked above: fits in u16.
            ip[2..4].copy_from_slice(&((IPV4_LEN + udp_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            ip[8] = TTL;
            ip[9] = PROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.ip().octets());
            ip[16..20].copy_from_slice(&d.ip().octets());
            let c = checksum_fold(sum_words(ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            ETH_LEN + IPV4_LEN
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ip = &mut frame[ETH_LEN..ETH_LEN + IPV6_LEN];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            ip[6] = PROTO_UDP;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&s.ip().octets());
            ip[24..40].copy_from_slice(&d.ip().octets());
            ETH_LEN + IPV6_LEN
        }
        _ => return Err(EmitError::Family),
    };
    emit_udp(&mut frame[udp_at..total], src, dst)?;
    Ok(total)
}

/// Write the UDP header (with its checksum) into `udp[..8]`, in front of the
/// payload already at `udp[8..]` (the whole slice is the datagram). For a
/// raw socket, which sends a UDP header and payload the kernel puts an IP
/// header in front of.
pub fn emit_udp(udp: &mut [u8], src: SocketAddr, dst: SocketAddr) -> Result<(), EmitError> {
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(EmitError::Family);
    }
    let udp_len = udp.len();
    if udp_len < UDP_LEN || udp_len > usize::from(u16::MAX) - IPV6_LEN {
        return Err(EmitError::TooLong);
    }
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    // Bound checked above: fits in u16.
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let pseudo = pseudo_header_sum(src.ip(), dst.ip(), udp_len as u32);
    let mut c = checksum_fold(sum_words(udp, pseudo));
    if c == 0 {
        c = 0xffff; // RFC 768: zero means "no checksum".
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// One's complement sum of the big-endian 16-bit words of `b` (odd length
/// padded with zero) added to `acc`, not yet folded.
fn sum_words(b: &[u8], mut acc: u64) -> u64 {
    let mut chunks = b.chunks_exact(2);
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Fold a sum to 16 bits and complement it.
fn checksum_fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn pseudo_header_sum(src: IpAddr, dst: IpAddr, udp_len: u32) -> u64 {
    let mut acc = u64::from(PROTO_UDP) + u64::from(udp_len >> 16) + u64::from(udp_len & 0xffff);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum_words(&s.octets(), acc);
            acc = sum_words(&d.octets(), acc);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            acc = sum_words(&s.octets(), acc);
            acc = sum_words(&d.octets(), acc);
        }
        _ => {}
    }
    acc
}

/// Verify the UDP checksum of a parsed frame (tests; 0 = absent for IPv4).
pub fn udp_checksum_ok(f: &[u8]) -> bool {
    let Ok(p) = parse(f) else { return false };
    let udp_at = header_len(&p.dst) - UDP_LEN;
    let udp = &f[udp_at..udp_at + UDP_LEN + p.payload.len()];
    if matches!(p.dst, SocketAddr::V4(_)) && be16(udp, 6) == 0 {
        return true;
    }
    let pseudo = pseudo_header_sum(p.src.ip(), p.dst.ip(), udp.len() as u32);
    checksum_fold(sum_words(udp, pseudo)) == 0
}

/// Unspecified address of `a`'s family (used when a socket is bound to any).
pub fn unspecified_like(a: &SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv4 UDP frame 10.0.0.1:5000 -> 10.0.0.2:6000, payload "hi"; checksums
    /// computed independently (RFC 1071 sum in Python).
    #[rustfmt::skip]
    const V4_FRAME: [u8; 44] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0xcd,
        10, 0, 0, 1, 10, 0, 0, 2,
        0x13, 0x88, 0x17, 0x70, 0x00, 0x0a, 0x58, 0x76,
        b'h', b'i',
    ];

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn emit_ipv4_matches_fixture() {
        let mut f = [0u8; 64];
        f[42..44].copy_from_slice(b"hi");
        let n = emit(
            &mut f,
            Mac([2, 0, 0, 0, 0, 1]),
            Mac([2, 0, 0, 0, 0, 2]),
            sa("10.0.0.1:5000"),
            sa("10.0.0.2:6000"),
            2,
        )
        .unwrap();
        assert_eq!(&f[..n], &V4_FRAME);
        assert!(udp_checksum_ok(&f[..n]));
    }

    #[test]
    fn parse_ipv4_fixture() {
        let p = parse(&V4_FRAME).unwrap();
        assert_eq!(p.src_mac, Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.src, sa("10.0.0.1:5000"));
        assert_eq!(p.dst, sa("10.0.0.2:6000"));
        assert_eq!(p.payload, b"hi");
        // Ethernet padding after the IP packet is ignored.
        let mut padded = [0u8; 60];
        padded[..44].copy_from_slice(&V4_FRAME);
        assert_eq!(parse(&padded).unwrap().payload, b"hi");
    }

    #[test]
    fn ipv6_roundtrip_with_checksum() {
        let mut f = [0u8; 128];
        let payload = b"rtp-ish payload";
        let hl = header_len(&sa("[fd00::2]:7000"));
        assert_eq!(hl, 62);
        f[hl..hl + payload.len()].copy_from_slice(payload);
        let n = emit(
            &mut f,
            Mac([2, 0, 0, 0, 0, 1]),
            Mac([2, 0, 0, 0, 0, 2]),
            sa("[fd00::1]:5000"),
            sa("[fd00::2]:7000"),
            payload.len(),
        )
        .unwrap();
        assert!(udp_checksum_ok(&f[..n]));
        let p = parse(&f[..n]).unwrap();
        assert_eq!(p.src, sa("[fd00::1]:5000"));
        assert_eq!(p.dst, sa("[fd00::2]:7000"));
        assert_eq!(p.payload, payload);
        f[hl] ^= 1;
        assert!(!udp_checksum_ok(&f[..n]));
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(parse(&V4_FRAME[..20]), Err(ParseError::Truncated));
        let mut bad = V4_FRAME;
        bad[25] ^= 0xff; // header checksum
        assert_eq!(parse(&bad), Err(ParseError::Checksum));
        let mut frag = V4_FRAME;
        frag[20] = 0x20; // MF
        assert_eq!(parse(&frag), Err(ParseError::Fragment));
        let mut arp = V4_FRAME;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp), Err(ParseError::NotUdp));
        let mut tcp = V4_FRAME;
        tcp[23] = 6;
        assert_eq!(parse(&tcp), Err(ParseError::NotUdp));
        let mut ulen = V4_FRAME;
        ulen[39] = 0x40; // UDP length beyond the packet
        assert_eq!(parse(&ulen), Err(ParseError::Truncated));
        let mut f = [0u8; 64];
        assert_eq!(
            emit(
                &mut f,
                Mac([0; 6]),
                Mac([0; 6]),
                sa("10.0.0.1:1"),
                sa("[::1]:1"),
                0
            ),
            Err(EmitError::Family)
        );
        assert_eq!(
            emit(
                &mut f,
                Mac([0; 6]),
                Mac([0; 6]),
                sa("10.0.0.1:1"),
                sa("10.0.0.2:1"),
                30
            ),
            Err(EmitError::TooLong)
        );
    }
}
