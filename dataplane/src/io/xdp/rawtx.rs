//! The kernel send path of ports that have no kernel socket
//! ([`super::reserve`]): one raw `IPPROTO_UDP` socket per family and worker,
//! bound to the media address. The backend writes the UDP header (ports,
//! length, checksum) in front of the payload; the kernel adds the IP header,
//! routes the datagram and resolves the neighbour, exactly as a UDP socket's
//! send would (which is what makes the learned-MAC hand-over of
//! [`super::Hop`] work the same with or without port sockets).
//!
//! A raw UDP socket also gets a copy of every UDP datagram the kernel
//! delivers; a socket filter that accepts nothing keeps its queue empty.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use super::frame;

/// UDP header length.
const UDP_LEN: usize = 8;
/// Send buffer of a raw socket (bytes).
const SNDBUF: libc::c_int = 8 << 20;

/// Raw sockets of one worker, made on first use per family.
pub struct RawTx {
    v4: Option<OwnedFd>,
    v6: Option<OwnedFd>,
    /// UDP header + payload scratch.
    buf: Box<[u8]>,
}

impl RawTx {
    pub fn new() -> RawTx {
        RawTx {
            v4: None,
            v6: None,
            buf: vec![0; UDP_LEN + crate::io::MAX_DATAGRAM].into_boxed_slice(),
        }
    }

    /// Make sure the socket sending from `src` (a concrete media address)
    /// exists. Called when a port is registered, so a failure is reported
    /// there and not on the packet path.
    pub fn prepare(&mut self, src: IpAddr) -> io::Result<()> {
        if src.is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "raw send socket: media address is unspecified",
            ));
        }
        let slot = match src {
            IpAddr::V4(_) => &mut self.v4,
            IpAddr::V6(_) => &mut self.v6,
        };
        if slot.is_none() {
            *slot = Some(open(src)?);
        }
        Ok(())
    }

    /// Send `payload` from `src` to `dst` through the kernel.
    pub fn send(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> io::Result<()> {
        let fd = match src {
            SocketAddr::V4(_) => self.v4.as_ref(),
            SocketAddr::V6(_) => self.v6.as_ref(),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no raw send socket"))?;
        let len = UDP_LEN + payload.len();
        let dgram = self
            .buf
            .get_mut(..len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "datagram too long"))?;
        dgram[UDP_LEN..].copy_from_slice(payload);
        frame::emit_udp(dgram, src, dst)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // Raw sockets take port 0 (the protocol is the socket's).
        let mut to = dst;
        to.set_port(0);
        let (ss, sl) = crate::io::sys::sockaddr(to);
        // SAFETY: `dgram` is valid for `len` bytes; `ss` holds a sockaddr of
        // length `sl`; the fd is an open socket we own.
        let r = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                dgram.as_ptr().cast(),
                len,
                libc::MSG_DONTWAIT,
                ptr::from_ref(&ss).cast(),
                sl,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Default for RawTx {
    fn default() -> Self {
        RawTx::new()
    }
}

/// A raw UDP socket bound to `src`, receiving nothing.
fn open(src: IpAddr) -> io::Result<OwnedFd> {
    let family = match src {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Accept nothing: "ret #0".
    let mut drop_all = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: drop_all.as_mut_ptr(),
    };
    // SAFETY: `prog` points at one valid instruction for the call's duration.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            ptr::from_ref(&prog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // One socket sends for every port of the worker, and datagrams waiting
    // for a neighbour count against its send buffer: make it as deep as
    // many per-port sockets' together (needs CAP_NET_ADMIN, which attaching
    // XDP needed too; the default stays otherwise).
    let size: libc::c_int = SNDBUF;
    // SAFETY: a c_int option value of the given length.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            ptr::from_ref(&size).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let (ss, sl) = crate::io::sys::sockaddr(SocketAddr::new(src, 0));
    // SAFETY: `ss` holds a sockaddr of length `sl`.
    let r = unsafe { libc::bind(fd.as_raw_fd(), ptr::from_ref(&ss).cast(), sl) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("bind raw socket to {src}: {e}"),
        ));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_source_is_refused() {
        let mut r = RawTx::new();
        let e = r
            .prepare(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
            .unwrap_err();
        assert!(e.to_string().contains("unspecified"), "{e}");
        let e = r
            .send(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
                b"x",
            )
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    }

    /// Root only (raw sockets): a datagram sent from a port nobody bound
    /// arrives at a UDP socket with that source and a valid checksum.
    #[test]
    fn raw_send_reaches_a_udp_socket() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: raw sockets need root");
            return;
        }
        for ip in ["127.0.0.1", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let rx = std::net::UdpSocket::bind((ip, 0)).unwrap();
            rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut r = RawTx::new();
            r.prepare(ip).unwrap();
            let from = SocketAddr::new(ip, 1);
            r.send(from, rx.local_addr().unwrap(), b"hello").unwrap();
            let mut buf = [0u8; 16];
            let (n, src) = rx.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], src), (&b"hello"[..], from), "{ip}");
        }
    }
}
