//! Thin, safe wrappers over the Linux syscalls the socket backend uses:
//! `epoll` and `recvmmsg`/`sendmmsg`. The only module of the dataplane with
//! `unsafe`; every block states the invariant it relies on.
//!
//! Memory for the syscalls (`mmsghdr`, `iovec`, `sockaddr_storage` arrays) is
//! preallocated in [`Mmsg`] and rebuilt in place before each call, so the
//! packet path does not allocate. These arrays hold raw pointers, so an
//! [`Mmsg`] is not `Send`: a worker builds its backend on its own thread.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use super::{Batch, Meta, Token, MAX_DATAGRAM};

/// An epoll instance with a preallocated event array (level-triggered).
pub struct Epoll {
    fd: OwnedFd,
    events: Box<[libc::epoll_event]>,
    ready: usize,
}

impl Epoll {
    /// Create an epoll fd that reports up to `max_events` per wait.
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; the flag is a valid constant.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1, is valid and owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)];
        Ok(Epoll {
            fd,
            events: events.into_boxed_slice(),
            ready: 0,
        })
    }

    /// Watch `fd` for readability, reporting `data` when it is readable.
    pub fn add(&self, fd: BorrowedFd<'_>, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: both fds are open for the duration of the call (owned/borrowed),
        // and `ev` is a valid epoll_event the kernel only reads.
        let r = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stop watching `fd`.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: both fds are open; a null event pointer is allowed for
        // EPOLL_CTL_DEL since Linux 2.6.9.
        let r = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout_ms` (0 = poll) for readiness. Returns how many fds
    /// are ready; read them with [`Epoll::data`]. An interrupted wait is 0.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<usize> {
        let max = i32::try_from(self.events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` is a live, writable array of `max` epoll_event
        // entries; the kernel writes at most `max` of them.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                max,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.ready = 0;
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.ready = n as usize;
        Ok(self.ready)
    }

    /// The `data` of the i-th ready fd of the last wait.
    pub fn data(&self, i: usize) -> Option<u64> {
        self.events[..self.ready].get(i).map(|e| e.u64)
    }
}

/// Preallocated scratch for `recvmmsg`/`sendmmsg`.
pub struct Mmsg {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
}

impl Mmsg {
    /// Scratch for batches of up to `capacity` datagrams.
    pub fn new(capacity: usize) -> Mmsg {
        let capacity = capacity.max(1);
        // SAFETY: mmsghdr, iovec and sockaddr_storage are plain C structs of
        // integers and raw pointers, for which all-zero bytes is a valid value.
        let (hdr, iov, addr) = unsafe {
            (
                mem::zeroed::<libc::mmsghdr>(),
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        Mmsg {
            hdrs: vec![hdr; capacity].into_boxed_slice(),
            iovs: vec![iov; capacity].into_boxed_slice(),
            addrs: vec![addr; capacity].into_boxed_slice(),
        }
    }

    /// Receive up to `max` datagrams from `fd` (non-blocking) into the free
    /// slots of `batch`, tagging them with `token`. Returns how many were
    /// received; `WouldBlock` when none was waiting.
    pub fn recv(
        &mut self,
        fd: BorrowedFd<'_>,
        batch: &mut Batch,
        token: Token,
        max: usize,
    ) -> io::Result<usize> {
        let (data, metas) = batch.spare_mut();
        let n = max.min(metas.len()).min(self.hdrs.len());
        if n == 0 {
            return Ok(0);
        }
        for (i, chunk) in data.chunks_exact_mut(MAX_DATAGRAM).take(n).enumerate() {
            self.iovs[i] = libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = ptr::addr_of_mut!(self.addrs[i]).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: hdrs[..n] each point to one iovec over a distinct, live,
        // writable MAX_DATAGRAM slot of `batch` (borrowed mutably for this
        // whole call) and to a live sockaddr_storage with its true size; the
        // kernel writes only within those bounds. No timeout pointer.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = r as usize;
        for (i, meta) in metas.iter_mut().take(got).enumerate() {
            let h = &self.hdrs[i];
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let len = if truncated {
                0
            } else {
                (h.msg_len as usize).min(MAX_DATAGRAM)
            };
            let peer = from_storage(&self.addrs[i], h.msg_hdr.msg_namelen);
            *meta = Meta {
                token,
                peer: peer.unwrap_or(super::UNSPECIFIED),
                len: if peer.is_some() { len } else { 0 },
                tx: None,
            };
        }
        batch.commit(got);
        Ok(got)
    }

    /// Send the datagrams `idx` of `batch` (all of which must have a `tx`)
    /// from `fd` in one `sendmmsg`. Returns how many the kernel took (at least
    /// 1), or the error of the first one.
    pub fn send(&mut self, fd: BorrowedFd<'_>, batch: &Batch, idx: &[u16]) -> io::Result<usize> {
        let mut n = 0;
        for &i in idx.iter().take(self.hdrs.len()) {
            let i = usize::from(i);
            let Some(tx) = batch.meta(i).tx else { continue };
            let bytes = batch.datagram(i);
            let alen = to_storage(tx.to, &mut self.addrs[n]);
            // The kernel only reads through iov_base for a send.
            self.iovs[n] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let h = &mut self.hdrs[n];
            h.msg_hdr.msg_name = ptr::addr_of_mut!(self.addrs[n]).cast();
            h.msg_hdr.msg_namelen = alen;
            h.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovs[n]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: hdrs[..n] point to live iovecs over datagrams of `batch`
        // (borrowed for the call; sendmmsg only reads them) and to
        // sockaddr_storage entries initialised by `to_storage` with their
        // true length.
        let r = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

/// `addr` as a fresh sockaddr_storage and its length (one-off calls such as
/// `bind` or a single `sendto`).
pub(crate) fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = to_storage(addr, &mut ss);
    (ss, len)
}

/// Write `addr` into `ss`, returning the length of the sockaddr written.
fn to_storage(addr: SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every
            // sockaddr type (that is its purpose), and `ss` is a valid &mut.
            unsafe { ptr::write(ptr::from_mut(ss).cast::<libc::sockaddr_in>(), sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, sockaddr_storage fits and aligns sockaddr_in6.
            unsafe { ptr::write(ptr::from_mut(ss).cast::<libc::sockaddr_in6>(), sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Read the address the kernel wrote into `ss` (`len` bytes). `None` for a
/// family other than IPv4/IPv6 or a short length.
fn from_storage(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(ss.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and length say the kernel wrote a
            // sockaddr_in here, and sockaddr_storage fits and aligns it.
            let sin = unsafe { ptr::read(ptr::from_ref(ss).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { ptr::read(ptr::from_ref(ss).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn sockaddr_roundtrip() {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss = unsafe { mem::zeroed::<libc::sockaddr_storage>() };
        for a in ["127.0.0.1:5004", "[::1]:6000", "[fe80::1%3]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let len = to_storage(a, &mut ss);
            assert_eq!(from_storage(&ss, len), Some(a));
        }
        assert_eq!(from_storage(&ss, 4), None);
    }

    #[test]
    fn epoll_recvmmsg_sendmmsg_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ep = Epoll::new(4).unwrap();
        ep.add(rx.as_fd(), 77).unwrap();
        assert_eq!(ep.wait(0).unwrap(), 0);
        let mut mm = Mmsg::new(8);
        let mut batch = Batch::new(8);
        assert_eq!(
            mm.recv(rx.as_fd(), &mut batch, Token(1), 8)
                .unwrap_err()
                .kind(),
            io::ErrorKind::WouldBlock
        );

        for i in 0..3u8 {
            tx.send_to(&[i; 10], rx.local_addr().unwrap()).unwrap();
        }
        assert_eq!(ep.wait(1000).unwrap(), 1);
        assert_eq!(ep.data(0), Some(77));
        assert_eq!(ep.data(1), None);
        let mut got = 0;
        while got < 3 {
            got += mm.recv(rx.as_fd(), &mut batch, Token(1), 8).unwrap_or(0);
        }
        assert_eq!(batch.len(), 3);
        for i in 0..3 {
            assert_eq!(batch.datagram(i), &[i as u8; 10]);
            assert_eq!(batch.meta(i).peer, tx.local_addr().unwrap());
            assert_eq!(batch.meta(i).token, Token(1));
        }

        // Echo them back with one sendmmsg, skipping the middle one.
        for i in [0, 2] {
            batch.get_mut(i).0.tx = Some(super::super::Tx {
                from: Token(1),
                to: tx.local_addr().unwrap(),
            });
        }
        assert_eq!(mm.send(rx.as_fd(), &batch, &[0, 1, 2]).unwrap(), 2);
        let mut buf = [0u8; 64];
        tx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        assert_eq!(
            tx.recv_from(&mut buf).unwrap(),
            (10, rx.local_addr().unwrap())
        );
        assert_eq!(buf[0], 0);
        assert_eq!(tx.recv_from(&mut buf).unwrap().0, 10);
        assert_eq!(buf[0], 2);
        ep.delete(rx.as_fd()).unwrap();
    }

    #[test]
    fn oversize_datagram_is_marked_truncated() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[1; MAX_DATAGRAM + 100], rx.local_addr().unwrap())
            .unwrap();
        let mut mm = Mmsg::new(1);
        let mut batch = Batch::new(1);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut probe = [0u8; 1];
        rx.peek_from(&mut probe).unwrap();
        assert_eq!(mm.recv(rx.as_fd(), &mut batch, Token(0), 1).unwrap(), 1);
        assert_eq!(batch.meta(0).len, 0);
    }
}
