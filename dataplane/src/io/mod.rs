//! I/O backends: how datagrams get from the NIC to a worker and back.
//!
//! One interface, [`Backend`], behind which the `socket` backend (non-blocking
//! UDP sockets, epoll for readiness, `recvmmsg`/`sendmmsg` batches) works
//! everywhere; `uring` (io_uring multishot receive into a provided-buffer
//! ring, batched sends) and `xdp` (AF_XDP, [`xdp`]) implement the same
//! trait; [`select`] decides which one runs.
//! [`AnyBackend`] is what a worker runs: the backend chosen at start-up.
//!
//! Buffers are the caller's: a [`Batch`] is allocated once per worker and
//! reused every iteration. A backend fills it with received datagrams (each
//! tagged with the [`Token`] of the socket it arrived on and its source); the
//! switch rewrites each datagram in place and sets its [`Tx`]; the backend
//! then sends every datagram that has one. No allocation per packet.
//!
//! All syscalls and all `unsafe` live in [`sys`] and [`uring`].

pub mod select;
pub mod socket;
pub mod sys;
pub mod uring;
pub mod xdp;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use crate::handle::{self, Error};

/// Identifies a socket registered with a backend (chosen by the caller; the
/// worker encodes session slot, side and RTP/RTCP in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u32);

/// Largest datagram a batch slot holds. Voice RTP is < 300 bytes; anything
/// larger than this is truncated by the kernel and dropped as malformed.
pub const MAX_DATAGRAM: usize = 2048;

/// Where a datagram goes out: from which registered socket, to which address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tx {
    pub from: Token,
    pub to: SocketAddr,
}

/// Per-datagram metadata in a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Socket it arrived on.
    pub token: Token,
    /// Source address.
    pub peer: SocketAddr,
    /// Datagram length (0 if it was truncated: treat as malformed).
    pub len: usize,
    /// Set by the switch to forward it; `None` drops it.
    pub tx: Option<Tx>,
}

const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

impl Meta {
    const EMPTY: Meta = Meta {
        token: Token(0),
        peer: UNSPECIFIED,
        len: 0,
        tx: None,
    };
}

/// A reusable batch of datagram buffers.
pub struct Batch {
    data: Box<[u8]>,
    meta: Box<[Meta]>,
    len: usize,
}

impl Batch {
    /// A batch of `capacity` slots of [`MAX_DATAGRAM`] bytes (allocated here, once).
    pub fn new(capacity: usize) -> Batch {
        Batch {
            data: vec![0; capacity * MAX_DATAGRAM].into_boxed_slice(),
            meta: vec![Meta::EMPTY; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No datagrams held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget all datagrams (buffers are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Metadata of datagram `i`. Panics if `i >= len()`.
    pub fn meta(&self, i: usize) -> &Meta {
        &self.meta[..self.len][i]
    }

    /// Bytes of datagram `i`. Panics if `i >= len()`.
    pub fn datagram(&self, i: usize) -> &[u8] {
        let m = self.meta(i);
        &self.data[i * MAX_DATAGRAM..][..m.len]
    }

    /// Metadata and bytes of datagram `i`, mutable. Panics if `i >= len()`.
    pub fn get_mut(&mut self, i: usize) -> (&mut Meta, &mut [u8]) {
        let m = &mut self.meta[..self.len][i];
        let len = m.len;
        (m, &mut self.data[i * MAX_DATAGRAM..][..len])
    }

    /// Append a datagram by copying it (tests and copying backends). Returns
    /// `false` if the batch is full; longer datagrams are truncated to length 0.
    pub fn push(&mut self, token: Token, peer: SocketAddr, bytes: &[u8]) -> bool {
        if self.len == self.capacity() {
            return false;
        }
        let i = self.len;
        let len = if bytes.len() <= MAX_DATAGRAM {
            bytes.len()
        } else {
            0
        };
        self.data[i * MAX_DATAGRAM..][..len].copy_from_slice(&bytes[..len]);
        self.meta[i] = Meta {
            token,
            peer,
            len,
            tx: None,
        };
        self.len += 1;
        true
    }

    /// Free slots `len..capacity` as raw parts for a receiving backend: the
    /// byte region (a whole number of [`MAX_DATAGRAM`] slots) and the metadata.
    /// The backend then calls [`Batch::commit`] with how many it filled.
    pub(crate) fn spare_mut(&mut self) -> (&mut [u8], &mut [Meta]) {
        let start = self.len;
        (
            &mut self.data[start * MAX_DATAGRAM..],
            &mut self.meta[start..],
        )
    }

    /// Mark `n` more slots (filled via [`Batch::spare_mut`]) as held.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.capacity());
    }
}

/// Result of sending a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams that failed (buffer full, unreachable, unknown socket).
    pub failed: usize,
}

/// A relayed RTP stream a backend may forward itself, without the worker
/// (the `xdp` backend's in-kernel fast path): datagrams arriving on socket
/// `rx` from `src` carrying SSRC `in_ssrc` leave from socket `from` to `to`
/// with SSRC `out_ssrc`, sequence number + `seq_delta` and timestamp +
/// `ts_delta` (wrapping), exactly as [`crate::session::OutStream::rewrite`]
/// does for a source it already knows. Anything else still reaches the
/// worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    pub rx: Token,
    pub src: SocketAddr,
    pub from: Token,
    pub to: SocketAddr,
    pub in_ssrc: u32,
    pub out_ssrc: u32,
    pub seq_delta: u16,
    pub ts_delta: u32,
}

/// What a backend forwarded by itself for one offloaded stream since the
/// last read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadCounts {
    pub packets: u64,
    pub bytes: u64,
    /// Sequence number and timestamp of the last packet it sent, if any
    /// since the last read.
    pub last: Option<(u16, u32)>,
}

/// The free registration slot of `token` in a backend's table: an error
/// naming the token when it is out of range or already registered.
pub(crate) fn vacant_slot<T>(slots: &mut [Option<T>], token: Token) -> io::Result<&mut Option<T>> {
    let slot = slots.get_mut(token.0 as usize).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket token {} out of range", token.0),
        )
    })?;
    if slot.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("socket token {} already registered", token.0),
        ));
    }
    Ok(slot)
}

/// The interface every I/O backend implements.
///
/// Calling contract: a worker owns its backend exclusively, registers the
/// sockets of a session when the session is created and deregisters them when
/// it is destroyed, and alternates `recv` (fills the batch) and `send`.
pub trait Backend {
    /// Take ownership of a bound UDP socket and deliver its datagrams tagged
    /// with `token`.
    fn register(&mut self, token: Token, socket: UdpSocket) -> io::Result<()>;

    /// Deliver datagrams to `local` tagged with `token` without a kernel
    /// socket: only a backend that takes them before the kernel stack can
    /// (`xdp`, with the port range reserved: [`xdp::reserve`]); the others
    /// refuse.
    fn register_port(&mut self, token: Token, local: SocketAddr) -> io::Result<()> {
        let _ = token;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{local}: this backend needs a socket per port"),
        ))
    }

    /// Stop polling the socket and close it (frees the port). Unknown tokens
    /// are ignored.
    fn deregister(&mut self, token: Token);

    /// Clear `batch`, wait up to `timeout` for datagrams, and receive as many
    /// as fit. Returns how many were received (possibly 0 on timeout).
    fn recv(&mut self, batch: &mut Batch, timeout: Duration) -> io::Result<usize>;

    /// Send every datagram of `batch` that has a [`Tx`].
    fn send(&mut self, batch: &Batch) -> SendStats;

    /// Whether [`Backend::offload`] can ever succeed (lets the worker skip
    /// building rules).
    fn can_offload(&self) -> bool {
        false
    }

    /// Forward `rule`'s stream without the worker from now on (replacing
    /// any rule of `rule.rx`). Returns whether it is installed; `false`
    /// leaves the stream to the worker.
    fn offload(&mut self, rule: &Offload) -> bool {
        let _ = rule;
        false
    }

    /// Stop forwarding the stream of socket `rx` by itself; returns what it
    /// forwarded since the last read.
    fn unoffload(&mut self, rx: Token) -> OffloadCounts {
        let _ = rx;
        OffloadCounts::default()
    }

    /// What the stream of socket `rx` forwarded since the last read.
    fn offload_counts(&mut self, rx: Token) -> OffloadCounts {
        let _ = rx;
        OffloadCounts::default()
    }
}

/// Check that `backend` exists on this build and kernel, returning the one
/// to use (without xdp settings: see [`select::choose`] for the full rules).
/// `Auto` is `Uring` when [`uring::probe`] passes, else `Socket`.
pub fn resolve(backend: handle::Backend) -> Result<handle::Backend, Error> {
    let cfg = handle::Config {
        backend,
        cores: vec![0],
        rtp_ports: 0..=0,
        media_ip: std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
        media_timeout: Duration::ZERO,
        max_sessions_per_worker: 1,
        xdp: None,
        control_cores: Vec::new(),
    };
    select::choose(&cfg).map(|c| c.backend)
}

/// What a worker builds on its thread: a plain backend, or its AF_XDP socket
/// on `queue` of the attached program.
#[derive(Debug, Clone)]
pub enum BackendSpec {
    Plain(handle::Backend),
    Xdp {
        program: std::sync::Arc<xdp::XdpProgram>,
        queue: u32,
    },
}

/// The backend a worker runs, fixed at start-up (an enum, so the worker loop
/// is monomorphic; one match per batch call).
pub enum AnyBackend {
    Socket(socket::SocketBackend),
    Uring(Box<uring::UringBackend>),
    Xdp(Box<xdp::XdpBackend>),
}

impl AnyBackend {
    /// Build the backend `kind` (already [`resolve`]d) for tokens
    /// `0..max_sockets` and batches of `batch`. Call on the worker thread.
    pub fn new(kind: BackendSpec, max_sockets: usize, batch: usize) -> io::Result<Self> {
        let kind = match kind {
            BackendSpec::Xdp { program, queue } => {
                return xdp::XdpBackend::new(program, queue, max_sockets, batch)
                    .map(|b| AnyBackend::Xdp(Box::new(b)))
                    .map_err(io::Error::from)
            }
            BackendSpec::Plain(k) => k,
        };
        match kind {
            handle::Backend::Uring => {
                uring::UringBackend::new(max_sockets, batch).map(|b| AnyBackend::Uring(Box::new(b)))
            }
            _ => socket::SocketBackend::new(max_sockets, batch).map(AnyBackend::Socket),
        }
    }
}

impl Backend for AnyBackend {
    fn register(&mut self, token: Token, socket: UdpSocket) -> io::Result<()> {
        match self {
            AnyBackend::Socket(b) => b.register(token, socket),
            AnyBackend::Uring(b) => b.register(token, socket),
            AnyBackend::Xdp(b) => b.register(token, socket),
        }
    }
    fn register_port(&mut self, token: Token, local: SocketAddr) -> io::Result<()> {
        match self {
            AnyBackend::Xdp(b) => b.register_port(token, local),
            AnyBackend::Socket(b) => b.register_port(token, local),
            AnyBackend::Uring(b) => b.register_port(token, local),
        }
    }
    fn deregister(&mut self, token: Token) {
        match self {
            AnyBackend::Socket(b) => b.deregister(token),
            AnyBackend::Uring(b) => b.deregister(token),
            AnyBackend::Xdp(b) => b.deregister(token),
        }
    }
    fn recv(&mut self, batch: &mut Batch, timeout: Duration) -> io::Result<usize> {
        match self {
            AnyBackend::Socket(b) => b.recv(batch, timeout),
            AnyBackend::Uring(b) => b.recv(batch, timeout),
            AnyBackend::Xdp(b) => b.recv(batch, timeout),
        }
    }
    fn send(&mut self, batch: &Batch) -> SendStats {
        match self {
            AnyBackend::Socket(b) => b.send(batch),
            AnyBackend::Uring(b) => b.send(batch),
            AnyBackend::Xdp(b) => b.send(batch),
        }
    }
    fn can_offload(&self) -> bool {
        match self {
            AnyBackend::Xdp(b) => b.can_offload(),
            _ => false,
        }
    }
    fn offload(&mut self, rule: &Offload) -> bool {
        match self {
            AnyBackend::Xdp(b) => b.offload(rule),
            _ => false,
        }
    }
    fn unoffload(&mut self, rx: Token) -> OffloadCounts {
        match self {
            AnyBackend::Xdp(b) => b.unoffload(rx),
            _ => OffloadCounts::default(),
        }
    }
    fn offload_counts(&mut self, rx: Token) -> OffloadCounts {
        match self {
            AnyBackend::Xdp(b) => b.offload_counts(rx),
            _ => OffloadCounts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_push_and_access() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut b = Batch::new(2);
        assert!(b.is_empty());
        assert!(b.push(Token(3), peer, &[1, 2, 3]));
        assert!(b.push(Token(4), peer, &[0; MAX_DATAGRAM + 1]));
        assert!(!b.push(Token(5), peer, &[9]));
        assert_eq!(b.len(), 2);
        assert_eq!(b.datagram(0), &[1, 2, 3]);
        assert_eq!(
            b.meta(1).len,
            0,
            "oversize datagram is truncated to nothing"
        );
        let (m, d) = b.get_mut(0);
        d[0] = 7;
        m.tx = Some(Tx {
            from: Token(1),
            to: peer,
        });
        assert_eq!(b.datagram(0), &[7, 2, 3]);
        assert_eq!(b.meta(0).tx.map(|t| t.from), Some(Token(1)));
        b.clear();
        assert_eq!(b.len(), 0);
        assert_eq!(b.spare_mut().1.len(), 2);
    }

    #[test]
    fn resolve_backends() {
        assert_eq!(
            resolve(handle::Backend::Socket).unwrap(),
            handle::Backend::Socket
        );
        assert!(matches!(
            resolve(handle::Backend::Xdp),
            Err(Error::BackendUnavailable(handle::Backend::Xdp, _))
        ));
        let auto = resolve(handle::Backend::Auto).unwrap();
        match uring::probe() {
            Ok(()) => {
                assert_eq!(auto, handle::Backend::Uring);
                assert_eq!(resolve(handle::Backend::Uring).unwrap(), auto);
            }
            Err(_) => {
                assert_eq!(auto, handle::Backend::Socket);
                assert!(matches!(
                    resolve(handle::Backend::Uring),
                    Err(Error::BackendUnavailable(handle::Backend::Uring, _))
                ));
            }
        }
    }
}
