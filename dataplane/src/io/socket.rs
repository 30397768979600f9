//! The `socket` backend: non-blocking UDP sockets, level-triggered epoll to
//! find the readable ones, `recvmmsg` to read each in a batch, `sendmmsg` to
//! send runs of datagrams leaving from the same socket.
//!
//! Work per [`Backend::recv`] is bounded: at most one `epoll_wait` plus one
//! `recvmmsg` per ready socket, at most [`PER_SOCKET`] datagrams per socket
//! (so one flooding peer cannot starve the others; level-triggered epoll
//! reports a socket with data left again on the next wait), and never more
//! than the batch capacity.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::Duration;

use super::sys::{Epoll, Mmsg};
use super::{Backend, Batch, SendStats, Token};

/// Most datagrams read from one socket per `recv`.
pub const PER_SOCKET: usize = 16;

/// The socket backend of one worker.
pub struct SocketBackend {
    epoll: Epoll,
    mmsg: Mmsg,
    /// Indexed by token.
    sockets: Box<[Option<UdpSocket>]>,
    /// Scratch: batch indices ordered by sending socket.
    order: Vec<u16>,
    /// `recvmmsg` failures other than "nothing to read".
    pub recv_errors: u64,
}

impl SocketBackend {
    /// A backend for tokens `0..max_sockets` and batches of `batch` datagrams.
    pub fn new(max_sockets: usize, batch: usize) -> io::Result<SocketBackend> {
        let batch = batch.clamp(1, usize::from(u16::MAX));
        Ok(SocketBackend {
            epoll: Epoll::new(batch)?,
            mmsg: Mmsg::new(batch),
            sockets: (0..max_sockets).map(|_| None).collect(),
            order: Vec::with_capacity(batch),
            recv_errors: 0,
        })
    }

    /// Sockets currently registered.
    pub fn registered(&self) -> usize {
        self.sockets.iter().filter(|s| s.is_some()).count()
    }
}

/// Milliseconds for epoll, rounding up so a short non-zero wait still waits.
fn timeout_ms(t: Duration) -> i32 {
    if t.is_zero() {
        return 0;
    }
    let ms = t.as_micros().div_ceil(1000);
    i32::try_from(ms).unwrap_or(i32::MAX)
}

impl Backend for SocketBackend {
    fn register(&mut self, token: Token, socket: UdpSocket) -> io::Result<()> {
        let slot = super::vacant_slot(&mut self.sockets, token)?;
        socket.set_nonblocking(true)?;
        self.epoll.add(socket.as_fd(), u64::from(token.0))?;
        *slot = Some(socket);
        Ok(())
    }

    fn deregister(&mut self, token: Token) {
        if let Some(sock) = self
            .sockets
            .get_mut(token.0 as usize)
            .and_then(Option::take)
        {
            // Closing the fd would also remove it; delete explicitly so a
            // duplicated fd elsewhere can never keep reporting it.
            let _ = self.epoll.delete(sock.as_fd());
            drop(sock);
        }
    }

    fn recv(&mut self, batch: &mut Batch, timeout: Duration) -> io::Result<usize> {
        batch.clear();
        let ready = self.epoll.wait(timeout_ms(timeout))?;
        for i in 0..ready {
            if batch.len() == batch.capacity() {
                break;
            }
            let Some(token) = self.epoll.data(i) else {
                break;
            };
            let token = Token(token as u32);
            let Some(Some(sock)) = self.sockets.get(token.0 as usize) else {
                continue;
            };
            match self.mmsg.recv(sock.as_fd(), batch, token, PER_SOCKET) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.recv_errors += 1,
            }
        }
        Ok(batch.len())
    }

    fn send(&mut self, batch: &Batch) -> SendStats {
        let mut stats = SendStats::default();
        self.order.clear();
        for i in 0..batch.len() {
            if batch.meta(i).tx.is_some() {
                // Batch capacity is clamped to u16 in `new`.
                self.order.push(i as u16);
            }
        }
        // Group by sending socket, keeping arrival order within a socket
        // (the index is part of the key, so an unstable sort is stable here).
        self.order
            .sort_unstable_by_key(|&i| (batch.meta(usize::from(i)).tx.map_or(0, |t| t.from.0), i));
        let mut start = 0;
        while start < self.order.len() {
            let from = batch
                .meta(usize::from(self.order[start]))
                .tx
                .map_or(0, |t| t.from.0);
            let mut end = start + 1;
            while end < self.order.len()
                && batch
                    .meta(usize::from(self.order[end]))
                    .tx
                    .map_or(0, |t| t.from.0)
                    == from
            {
                end += 1;
            }
            let Some(Some(sock)) = self.sockets.get(from as usize) else {
                stats.failed += end - start;
                start = end;
                continue;
            };
            let mut at = start;
            while at < end {
                match self.mmsg.send(sock.as_fd(), batch, &self.order[at..end]) {
                    Ok(n) if n > 0 => {
                        stats.sent += n;
                        at += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Error (or nothing taken) for datagram `at`: skip it.
                    _ => {
                        stats.failed += 1;
                        at += 1;
                    }
                }
            }
            start = end;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Tx;

    #[test]
    fn timeout_rounding() {
        assert_eq!(timeout_ms(Duration::ZERO), 0);
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::from_millis(1)), 1);
        assert_eq!(timeout_ms(Duration::from_micros(1500)), 2);
    }

    #[test]
    fn receive_and_forward_between_sockets() {
        let mut be = SocketBackend::new(4, 8).unwrap();
        let s0 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s1 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a0, a1) = (s0.local_addr().unwrap(), s1.local_addr().unwrap());
        be.register(Token(0), s0).unwrap();
        be.register(Token(1), s1).unwrap();
        assert!(be
            .register(Token(9), UdpSocket::bind("127.0.0.1:0").unwrap())
            .is_err());
        assert_eq!(be.registered(), 2);

        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        phone
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let pa = phone.local_addr().unwrap();
        phone.send_to(b"to-0", a0).unwrap();
        phone.send_to(b"to-1", a1).unwrap();

        let mut batch = Batch::new(8);
        let mut seen = Vec::new();
        let deadline = std::time::Duration::from_secs(2);
        let t0 = crate::clock::now();
        while seen.len() < 2 && crate::clock::now() - t0 < deadline {
            be.recv(&mut batch, Duration::from_millis(50)).unwrap();
            for i in 0..batch.len() {
                seen.push((
                    batch.meta(i).token,
                    batch.datagram(i).to_vec(),
                    batch.meta(i).peer,
                ));
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (Token(0), b"to-0".to_vec(), pa),
                (Token(1), b"to-1".to_vec(), pa)
            ]
        );

        // Send two datagrams back out of socket 1 and one from an unknown token.
        batch.clear();
        batch.push(Token(0), pa, b"x");
        batch.push(Token(0), pa, b"y");
        batch.push(Token(0), pa, b"z");
        batch.get_mut(0).0.tx = Some(Tx {
            from: Token(1),
            to: pa,
        });
        batch.get_mut(1).0.tx = Some(Tx {
            from: Token(3),
            to: pa,
        });
        batch.get_mut(2).0.tx = Some(Tx {
            from: Token(1),
            to: pa,
        });
        assert_eq!(be.send(&batch), SendStats { sent: 2, failed: 1 });
        let mut buf = [0u8; 16];
        assert_eq!(phone.recv_from(&mut buf).unwrap(), (1, a1));
        assert_eq!(&buf[..1], b"x");
        assert_eq!(phone.recv_from(&mut buf).unwrap(), (1, a1));
        assert_eq!(&buf[..1], b"z");

        // Deregister closes the socket: the port can be bound again.
        be.deregister(Token(0));
        be.deregister(Token(0));
        assert_eq!(be.registered(), 1);
        UdpSocket::bind(a0).unwrap();
    }
}
