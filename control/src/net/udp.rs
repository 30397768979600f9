//! The SIP UDP listener sockets, bound with a large kernel receive buffer.
//!
//! A SIP server takes requests in bursts: a closed window of call set-ups, a trunk's
//! retransmissions after a hiccup, a fleet of phones re-registering after a power cut. The
//! kernel's default receive buffer (`net.core.rmem_default`, 208 KiB on Debian) holds about
//! 90 loopback datagrams of INVITE size (each costs its `skb` truesize, not its length), so a
//! burst of a few hundred overflows it while the run loop is busy, the kernel drops the rest
//! ("receive buffer errors" in `netstat -su`) and each dropped request waits 0.5 s or more
//! for its sender's retransmission. Kamailio and Asterisk size their SIP socket buffers up
//! at start for the same reason.
//!
//! We ask for [`SIP_RCVBUF`]; the kernel caps the request at `net.core.rmem_max` (then
//! doubles it for its own bookkeeping). The size obtained is returned so the daemon can say
//! what it got, and [`short`] tells whether the cap cut it down.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// The receive buffer asked for on every SIP UDP socket: 4 MiB (the kernel reports twice the
/// granted request, 8 MiB, when `net.core.rmem_max` allows it).
pub(super) const SIP_RCVBUF: usize = 4 << 20;

/// Binds a non-blocking UDP socket on `addr` with a receive buffer of [`SIP_RCVBUF`] (or
/// what the kernel grants) and hands it to tokio. Returns the socket and the receive buffer
/// size the kernel reports. Must be called inside the tokio runtime.
pub(super) fn bind_sip(addr: SocketAddr) -> io::Result<(UdpSocket, usize)> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // A refused size is not fatal: the socket still works with the default buffer.
    let _ = s.set_recv_buffer_size(SIP_RCVBUF);
    let got = s.recv_buffer_size().unwrap_or(0);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    let s = UdpSocket::from_std(std::net::UdpSocket::from(s))?;
    Ok((s, got))
}

/// Whether the kernel granted less than [`SIP_RCVBUF`] (it reports twice what it granted).
pub(super) fn short(got: usize) -> bool {
    got < SIP_RCVBUF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sip_socket_gets_a_larger_receive_buffer_than_the_default() {
        let default = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a plain socket");
        let default = socket2::SockRef::from(&default)
            .recv_buffer_size()
            .expect("read SO_RCVBUF");
        let (s, got) = bind_sip("127.0.0.1:0".parse().expect("address")).expect("bind");
        let now = socket2::SockRef::from(&s)
            .recv_buffer_size()
            .expect("read SO_RCVBUF");
        assert_eq!(got, now, "the reported size is the socket's");
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if rmem_max > default {
            assert!(
                got > default,
                "asked {SIP_RCVBUF}, got {got}, default {default}"
            );
        } else {
            eprintln!("skip: net.core.rmem_max {rmem_max} allows no more than the default");
        }
        assert_eq!(short(got), got < SIP_RCVBUF);
        // The socket works: a datagram to itself comes back.
        let a = s.local_addr().expect("local address");
        s.send_to(b"ping", a).await.expect("send");
        let mut buf = [0u8; 8];
        let (n, from) = s.recv_from(&mut buf).await.expect("receive");
        assert_eq!((&buf[..n], from), (&b"ping"[..], a));
    }
}
