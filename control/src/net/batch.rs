//! Batched UDP sends for the SIP socket: the datagrams one run-loop turn produced leave in
//! one `sendmmsg(2)` call instead of one `sendto(2)` each (the dataplane's `Mmsg` scratch, so
//! this crate stays free of unsafe code).
//!
//! The queue keeps the order the engine produced; a datagram the kernel refuses is logged
//! and skipped (the transaction layer retransmits as it would after a lost datagram), and
//! when the socket's send buffer is full the rest goes one by one through tokio's
//! `send_to`, which waits for room.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use dataplane::io::sys::Mmsg;
use dataplane::io::{Batch, Token, Tx, MAX_DATAGRAM};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// At most this many datagrams per `sendmmsg` call.
const MAX_BATCH: usize = 32;

/// The UDP datagrams of one run-loop turn, in order, and the `sendmmsg` scratch (the
/// dataplane's, which holds the unsafe code).
pub(super) struct UdpBatch {
    queue: Vec<(Vec<u8>, SocketAddr)>,
    batch: Batch,
    mmsg: Mmsg,
}

impl Default for UdpBatch {
    fn default() -> UdpBatch {
        UdpBatch {
            queue: Vec::new(),
            batch: Batch::new(MAX_BATCH),
            mmsg: Mmsg::new(MAX_BATCH),
        }
    }
}

impl UdpBatch {
    pub(super) fn push(&mut self, bytes: Vec<u8>, dest: SocketAddr) {
        self.queue.push((bytes, dest));
    }

    /// Sends everything queued from `udp`, in order, and empties the queue.
    pub(super) async fn flush(&mut self, udp: &UdpSocket) {
        let idx: [u16; MAX_BATCH] = std::array::from_fn(|j| j as u16);
        let mut i = 0;
        while i < self.queue.len() {
            // A run of datagrams that fit the scratch slots.
            self.batch.clear();
            let first = i;
            while let Some((bytes, dest)) = self.queue.get(i) {
                if bytes.len() > MAX_DATAGRAM || !self.batch.push(Token(0), *dest, bytes) {
                    break;
                }
                let last = self.batch.len() - 1;
                self.batch.get_mut(last).0.tx = Some(Tx {
                    from: Token(0),
                    to: *dest,
                });
                i += 1;
            }
            let n = self.batch.len();
            if n == 0 {
                // Larger than a slot: on its own.
                send_one(udp, &self.queue[i]).await;
                i += 1;
                continue;
            }
            let mut k = 0;
            while k < n {
                let (mmsg, batch) = (&mut self.mmsg, &self.batch);
                match udp.try_io(Interest::WRITABLE, || {
                    mmsg.send(udp.as_fd(), batch, &idx[k..n])
                }) {
                    Ok(sent) => k += sent.max(1),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // The send buffer is full: wait for room, one datagram.
                        send_one(udp, &self.queue[first + k]).await;
                        k += 1;
                    }
                    Err(e) => {
                        // sendmmsg fails as a whole only when its first datagram fails.
                        tracing::warn!("SIP send to {} failed: {e}", self.queue[first + k].1);
                        k += 1;
                    }
                }
            }
        }
        self.queue.clear();
        self.batch.clear();
    }
}

async fn send_one(udp: &UdpSocket, (bytes, dest): &(Vec<u8>, SocketAddr)) {
    if let Err(e) = udp.send_to(bytes, *dest).await {
        tracing::warn!("SIP send to {dest} failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_arrives_in_order_to_each_destination() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rx1 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx2 = std::net::UdpSocket::bind("[::1]:0").ok();
        let tx6 = UdpSocket::bind("[::1]:0").await.ok();
        rx1.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut b = UdpBatch::default();
        // More than one sendmmsg call's worth.
        for k in 0..(MAX_BATCH + 5) {
            b.push(format!("m{k}").into_bytes(), rx1.local_addr().unwrap());
        }
        b.flush(&tx).await;
        assert!(b.queue.is_empty());
        let mut buf = [0u8; 64];
        for k in 0..(MAX_BATCH + 5) {
            let (n, from) = rx1.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("m{k}").as_bytes());
            assert_eq!(from, tx.local_addr().unwrap());
        }
        if let (Some(rx2), Some(tx6)) = (rx2, tx6) {
            rx2.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            b.push(b"six".to_vec(), rx2.local_addr().unwrap());
            b.flush(&tx6).await;
            let (n, _) = rx2.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"six");
        } else {
            eprintln!("SKIP (IPv6 part): no ::1 here");
        }
    }

    #[tokio::test]
    async fn a_refused_datagram_is_skipped_and_the_rest_sent() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut b = UdpBatch::default();
        // An IPv6 destination from an IPv4 socket fails (EAFNOSUPPORT/EINVAL).
        b.push(b"bad".to_vec(), "[::1]:9".parse().unwrap());
        b.push(b"good".to_vec(), rx.local_addr().unwrap());
        // Larger than a scratch slot: sent on its own, in order.
        b.push(vec![7u8; MAX_DATAGRAM + 100], rx.local_addr().unwrap());
        b.push(b"after".to_vec(), rx.local_addr().unwrap());
        b.flush(&tx).await;
        let mut buf = [0u8; 4096];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"good");
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(n, MAX_DATAGRAM + 100);
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"after");
    }
}
