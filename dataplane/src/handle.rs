//! The control plane's handle on the dataplane.
//!
//! `Dataplane::start` spawns one pinned worker per configured core. Each worker
//! owns a slice of the RTP port range and a preallocated session table. The
//! control plane talks to a worker through a pair of `rtrb` SPSC rings: commands
//! in (create, set remote, set mode, arm timeout, destroy), events out (media
//! timeout, first packet). Counters are per-worker atomics readable at any time.
//!
//! Contract for callers (the call manager in `control`):
//! - One owner: `Dataplane` is the single producer of every command ring and the
//!   single consumer of every event ring, so it is `&mut self` throughout.
//! - `create_session` binds the RTP/RTCP sockets for both legs on the control
//!   side (so a bind failure is an error here, never on a worker) and hands them
//!   to the worker; the returned local addresses go into the SDP.
//! - Media from a leg is accepted only from the IP the signalling announced via
//!   `set_remote` (the port latches on the first packet from that IP).
//! - `arm_timeout` starts the media-timeout watch (after answer). A session with
//!   no RTP for `Config::media_timeout` yields `Event::MediaTimeout` once.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

/// Which I/O backend the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Non-blocking UDP sockets with recvmmsg/sendmmsg batches. Works everywhere.
    Socket,
    /// io_uring multishot receive (not yet available).
    Uring,
    /// AF_XDP (not yet available).
    Xdp,
    /// The fastest backend the machine supports.
    Auto,
}

/// Dataplane configuration (from `[dataplane]` in tandem.toml).
#[derive(Debug, Clone)]
pub struct Config {
    pub backend: Backend,
    /// One pinned worker per listed core id.
    pub cores: Vec<usize>,
    /// RTP ports (even = RTP, odd = RTCP), split evenly between workers.
    pub rtp_ports: RangeInclusive<u16>,
    /// Address the media sockets bind to and the SDP announces.
    pub media_ip: IpAddr,
    /// No RTP for this long on an armed session ends it. Zero disables.
    pub media_timeout: Duration,
    /// Session slots preallocated per worker.
    pub max_sessions_per_worker: usize,
}

/// A media session (two legs: A = caller side, B = callee side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u32);

/// One of the two legs of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

/// What a session does with the media it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A -> B and B -> A, with SSRC/sequence/timestamp continuity per output leg.
    Relay,
    /// Whatever arrives on leg A goes back to leg A's remote (Echo application).
    Echo,
}

/// A freshly created session: where its legs listen (RTP; RTCP is port + 1).
#[derive(Debug, Clone, Copy)]
pub struct Allocated {
    pub id: SessionId,
    pub worker: usize,
    pub a: SocketAddr,
    pub b: SocketAddr,
}

/// Worker -> control notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// No RTP on an armed session for the configured media timeout.
    MediaTimeout { id: SessionId },
    /// The first RTP packet arrived on a leg (and the remote port latched).
    FirstPacket { id: SessionId, side: Side },
}

/// Packets dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Not a valid RTP/RTCP packet.
    pub malformed: u64,
    /// Came from an address other than the one the signalling announced.
    pub wrong_source: u64,
    /// The other leg has no remote address yet.
    pub no_remote: u64,
    /// Sending failed (socket error or full queue).
    pub tx_error: u64,
}

/// A snapshot of one worker's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerStats {
    pub worker: usize,
    pub core: usize,
    pub sessions: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub drops: DropCounts,
}

/// Dataplane errors, each naming what went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration asks for something impossible (operator error).
    #[error("dataplane config: {0}")]
    Config(String),
    /// The configured backend is not available on this machine or build.
    #[error("backend {0:?} is not available: {1}")]
    BackendUnavailable(Backend, String),
    /// No free RTP port pair left in any worker's slice.
    #[error("no free RTP ports left in the configured range")]
    NoPorts,
    /// Every session slot is in use.
    #[error("no free session slot (max_sessions_per_worker reached)")]
    NoSessionSlots,
    /// A command ring is full (the worker is not keeping up).
    #[error("worker {0} command queue is full")]
    QueueFull(usize),
    /// The session id is unknown.
    #[error("unknown media session {0:?}")]
    UnknownSession(SessionId),
    /// Socket or thread creation failed.
    #[error("dataplane I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The control plane's handle: owns the command producers and event consumers.
pub struct Dataplane {
    _private: (),
}

impl Dataplane {
    /// Spawn the pinned workers. Fails if a core does not exist, the port range
    /// is too small for the workers, or the backend is unavailable.
    pub fn start(_cfg: Config) -> Result<Self, Error> {
        Err(Error::Config("dataplane not yet implemented".into()))
    }

    /// Pick a worker (least loaded), bind two RTP/RTCP port pairs from its slice,
    /// and install a session in `mode`.
    pub fn create_session(&mut self, _mode: Mode) -> Result<Allocated, Error> {
        Err(Error::NoSessionSlots)
    }

    /// Set the remote RTP (and RTCP; default RTP port + 1) address of a leg, as
    /// announced in SDP. Media is accepted only from this IP.
    pub fn set_remote(
        &mut self,
        id: SessionId,
        _side: Side,
        _rtp: SocketAddr,
        _rtcp: Option<SocketAddr>,
    ) -> Result<(), Error> {
        Err(Error::UnknownSession(id))
    }

    /// Switch a session between relay and echo.
    pub fn set_mode(&mut self, id: SessionId, _mode: Mode) -> Result<(), Error> {
        Err(Error::UnknownSession(id))
    }

    /// Start the media-timeout watch on a session (call answered).
    pub fn arm_timeout(&mut self, id: SessionId) -> Result<(), Error> {
        Err(Error::UnknownSession(id))
    }

    /// Tear a session down and free its ports.
    pub fn destroy(&mut self, id: SessionId) -> Result<(), Error> {
        Err(Error::UnknownSession(id))
    }

    /// Next worker event, if any (non-blocking; drains all workers' rings).
    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }

    /// Per-worker counters.
    pub fn stats(&self) -> Vec<WorkerStats> {
        Vec::new()
    }

    /// Stop and join all workers.
    pub fn shutdown(self) {}
}
