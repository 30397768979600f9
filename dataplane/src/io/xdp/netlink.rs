//! rtnetlink requests the XDP backend needs, built and parsed by hand:
//! interface facts (MAC, attached XDP program), attaching/detaching an XDP
//! program the legacy way (`IFLA_XDP`, used to remove a stale program and as
//! a fallback where BPF links are missing), the route to a destination and
//! the kernel's neighbour table.
//!
//! Slow path only (startup, and next-hop misses); one request at a time on a
//! socket owned by the caller.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::frame::Mac;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const IFLA_ADDRESS: u16 = 1;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// NUD states whose link-layer address is usable.
const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// `XDP_FLAGS_*` attach modes.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// An XDP program attached to an interface, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    pub prog_id: u32,
    /// `XDP_ATTACHED_*`: 1 driver, 2 generic (skb), 3 offloaded, 4 several.
    pub mode: u8,
}

/// Facts about an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    pub mac: Mac,
    pub xdp: Option<Attached>,
}

/// The route to a destination: leave through `oif`, to `gateway` if set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub oif: u32,
    pub gateway: Option<IpAddr>,
}

/// An rtnetlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn push_attr(m: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    m.extend_from_slice(&(len as u16).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(data);
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
}

/// Iterate the rtattrs of `b`: (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((ty, data))
    })
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn u32_of(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"))
}

impl Netlink {
    /// Open an rtnetlink socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket() takes no pointers; constants are valid.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh socket owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a live timeval and the length is its size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(Netlink {
            fd,
            seq: 1,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Send one request (`body` follows the nlmsghdr) and call `each` with
    /// (type, payload) of every reply message until the answer is complete.
    /// An NLMSG_ERROR with a non-zero code becomes an error.
    fn request(
        &mut self,
        ty: u16,
        flags: u16,
        body: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut m = Vec::with_capacity(16 + body.len());
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        // SAFETY: `m` is a live buffer of the given length; a netlink socket
        // with no destination address sends to the kernel.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let ack = flags & NLM_F_ACK != 0;
        loop {
            // SAFETY: `buf` is live and writable for its whole length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut b = &self.buf[..n as usize];
            let mut done = false;
            while b.len() >= 16 {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let mty = u16::from_ne_bytes([b[4], b[5]]);
                let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < 16 || len > b.len() {
                    return Err(invalid("truncated message"));
                }
                let payload = &b[16..len];
                b = &b[len.next_multiple_of(4).min(b.len())..];
                if seq != self.seq {
                    continue;
                }
                match mty {
                    NLMSG_DONE => done = true,
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        done = true;
                    }
                    _ => {
                        each(mty, payload);
                        if !dump && !ack {
                            done = true;
                        }
                    }
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// MAC address and attached XDP program of interface `ifindex`.
    pub fn link(&mut self, ifindex: u32) -> io::Result<LinkInfo> {
        let mut body = ifinfomsg(ifindex);
        // IFLA_EXT_MASK is not needed for these attributes.
        body.truncate(16);
        let mut out: Option<LinkInfo> = None;
        self.request(RTM_GETLINK, 0, &body, |ty, p| {
            if ty != RTM_NEWLINK || p.len() < 16 {
                return;
            }
            let mut info = LinkInfo {
                mac: Mac([0; 6]),
                xdp: None,
            };
            for (t, d) in attrs(&p[16..]) {
                match t {
                    IFLA_ADDRESS if d.len() == 6 => info.mac.0.copy_from_slice(d),
                    IFLA_XDP => {
                        let (mut mode, mut id) = (0u8, 0u32);
                        for (t, d) in attrs(d) {
                            match t {
                                IFLA_XDP_ATTACHED => mode = d.first().copied().unwrap_or(0),
                                IFLA_XDP_PROG_ID => id = u32_of(d).unwrap_or(0),
                                _ => {}
                            }
                        }
                        if mode != 0 {
                            info.xdp = Some(Attached { prog_id: id, mode });
                        }
                    }
                    _ => {}
                }
            }
            out = Some(info);
        })?;
        out.ok_or_else(|| invalid("no RTM_NEWLINK answer"))
    }

    /// Attach program `fd` (or detach, with `fd = -1`) the legacy way.
    pub fn set_xdp(&mut self, ifindex: u32, fd: i32, xdp_flags: u32) -> io::Result<()> {
        let mut body = ifinfomsg(ifindex);
        let mut nested = Vec::new();
        push_attr(&mut nested, IFLA_XDP_FD, &fd.to_ne_bytes());
        push_attr(&mut nested, IFLA_XDP_FLAGS, &xdp_flags.to_ne_bytes());
        push_attr(&mut body, IFLA_XDP | NLA_F_NESTED, &nested);
        self.request(RTM_SETLINK, NLM_F_ACK, &body, |_, _| {})
    }

    /// The kernel's route to `dst`.
    pub fn route(&mut self, dst: IpAddr) -> io::Result<Route> {
        let mut body = vec![0u8; 12];
        body[0] = family(&dst);
        body[1] = if dst.is_ipv4() { 32 } else { 128 };
        push_attr(&mut body, RTA_DST, &ip_bytes(&dst));
        let mut out = None;
        self.request(RTM_GETROUTE, 0, &body, |ty, p| {
            if ty != RTM_NEWROUTE || p.len() < 12 {
                return;
            }
            let mut r = Route {
                oif: 0,
                gateway: None,
            };
            for (t, d) in attrs(&p[12..]) {
                match t {
                    RTA_OIF => r.oif = u32_of(d).unwrap_or(0),
                    RTA_GATEWAY => r.gateway = ip_from(d),
                    _ => {}
                }
            }
            out = Some(r);
        })?;
        out.ok_or_else(|| invalid("no route answer"))
    }

    /// The usable link-layer address of neighbour `ip` on `ifindex`, if the
    /// kernel has one (state REACHABLE, STALE, DELAY, PROBE, PERMANENT or
    /// NOARP: an INCOMPLETE entry, still resolving, is `None`).
    ///
    /// Asks for the one entry (`RTM_GETNEIGH` with `NDA_DST`, kernels >= 4.20),
    /// and falls back to a dump of the family's table where the kernel does
    /// not support the single get. Both work for IPv4 (ARP) and IPv6 (NDP).
    pub fn neighbour(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<Mac>> {
        match self.neighbour_get(ifindex, ip) {
            Ok(m) => Ok(m),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                self.neighbour_dump(ifindex, ip)
            }
            Err(e) => Err(e),
        }
    }

    fn neighbour_get(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<Mac>> {
        let mut body = ndmsg(&ip, ifindex);
        push_attr(&mut body, NDA_DST, &ip_bytes(&ip));
        let mut out = None;
        self.request(RTM_GETNEIGH, 0, &body, |ty, p| {
            if ty == RTM_NEWNEIGH {
                out = parse_neigh(p, ifindex, ip);
            }
        })?;
        Ok(out)
    }

    fn neighbour_dump(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<Mac>> {
        let body = ndmsg(&ip, 0);
        let mut out = None;
        self.request(RTM_GETNEIGH, NLM_F_DUMP, &body, |ty, p| {
            if ty == RTM_NEWNEIGH && out.is_none() {
                out = parse_neigh(p, ifindex, ip);
            }
        })?;
        Ok(out)
    }
}

/// An `ndmsg` header for `ip`'s family (`ifindex` 0: any interface).
fn ndmsg(ip: &IpAddr, ifindex: u32) -> Vec<u8> {
    let mut body = vec![0u8; 12];
    body[0] = family(ip);
    body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    body
}

/// The link-layer address of an `RTM_NEWNEIGH` payload if it is the usable
/// entry of `ip` on `ifindex`.
fn parse_neigh(p: &[u8], ifindex: u32, ip: IpAddr) -> Option<Mac> {
    if p.len() < 12 {
        return None;
    }
    let idx = u32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
    let state = u16::from_ne_bytes([p[8], p[9]]);
    if idx != ifindex || state & NUD_VALID == 0 {
        return None;
    }
    let (mut dst, mut ll) = (None, None);
    for (t, d) in attrs(&p[12..]) {
        match t {
            NDA_DST => dst = ip_from(d),
            NDA_LLADDR if d.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(d);
                ll = Some(Mac(m));
            }
            _ => {}
        }
    }
    if dst == Some(ip) {
        ll
    } else {
        None
    }
}

fn ifinfomsg(ifindex: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b
}

/// Index of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_roundtrip() {
        let mut m = Vec::new();
        push_attr(&mut m, 1, &[1, 2, 3]);
        push_attr(&mut m, 5 | NLA_F_NESTED, &[9, 9, 9, 9]);
        assert_eq!(m.len(), 16);
        let got: Vec<_> = attrs(&m).collect();
        assert_eq!(got, vec![(1, &[1u8, 2, 3][..]), (5, &[9u8, 9, 9, 9][..])]);
        // A length running past the buffer ends the iteration.
        m[8] = 200;
        assert_eq!(attrs(&m).count(), 1);
    }

    #[test]
    fn loopback_has_no_xdp_and_routes_locally() {
        let Ok(mut nl) = Netlink::open() else {
            eprintln!("skipped: no netlink socket");
            return;
        };
        let lo = ifindex("lo").unwrap();
        let info = nl.link(lo).unwrap();
        assert_eq!(info.mac, Mac([0; 6]));
        let r = nl.route("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(r.oif, lo);
        assert_eq!(r.gateway, None);
        // A loopback address has either no neighbour entry (None, not an
        // error) or a NOARP one the kernel made on use, whose address is the
        // loopback's all-zero MAC; never anything else.
        for ip in ["127.0.0.1", "::1"] {
            let n = nl.neighbour(lo, ip.parse().unwrap()).unwrap();
            assert!(
                n.is_none() || n == Some(Mac([0; 6])),
                "neighbour {ip} on lo: {n:?}"
            );
        }
    }

    #[test]
    fn neighbour_payload() {
        let ip: IpAddr = "fd31::3".parse().unwrap();
        let mut p = ndmsg(&ip, 7);
        p[8..10].copy_from_slice(&0x02u16.to_ne_bytes()); // REACHABLE
        push_attr(&mut p, NDA_DST, &ip_bytes(&ip));
        push_attr(&mut p, NDA_LLADDR, &[2, 0, 0, 0, 0, 9]);
        assert_eq!(parse_neigh(&p, 7, ip), Some(Mac([2, 0, 0, 0, 0, 9])));
        assert_eq!(parse_neigh(&p, 8, ip), None, "other interface");
        assert_eq!(parse_neigh(&p, 7, "fd31::1".parse().unwrap()), None);
        p[8..10].copy_from_slice(&0x01u16.to_ne_bytes()); // INCOMPLETE
        assert_eq!(parse_neigh(&p, 7, ip), None, "still resolving");
        assert_eq!(parse_neigh(&p[..8], 7, ip), None, "short");
    }
}
