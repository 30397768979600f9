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
//! - `set_codec` tells a leg's negotiated codec (codec, payload type, ptime,
//!   telephone-event type). Once both legs are known and differ, the handle
//!   builds a [`Transcoder`] (all codec state and buffers allocated here, on the
//!   control side) and moves it to the worker; equal legs keep (or go back
//!   to) the zero-copy relay. Legs never given a codec relay as before.
//! - `arm_timeout` starts the media-timeout watch (after answer). A session with
//!   no RTP for `Config::media_timeout` yields `Event::MediaTimeout` once.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::dsp::dtmf::Digit;
use crate::media::{Detector, DigitMode, MediaError, MediaEvent, Op, Source};
use crate::player::Player;
use crate::session::{SlotAllocator, SlotId, SocketRef};
use crate::transcode::{LegCodec, TranscodeError, Transcoder};
use crate::wire::Ssrc;
use crate::worker::{self, Command, Counters, LegSetup, WorkerConfig};

/// Which I/O backend the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Non-blocking UDP sockets with recvmmsg/sendmmsg batches. Works everywhere.
    Socket,
    /// io_uring multishot receive into a provided-buffer ring, batched sends.
    Uring,
    /// AF_XDP: one socket per worker on one NIC queue, fed by Tandem's XDP
    /// program (needs [`Config::xdp`]).
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
    /// The AF_XDP settings (`xdp_*` keys); `None`: the `xdp` backend is not
    /// configured (and `auto` does not try it).
    pub xdp: Option<XdpSettings>,
    /// Cores the control plane runs on: checked to share none with `cores`.
    /// Empty: not configured.
    pub control_cores: Vec<usize>,
}

/// `[dataplane] xdp_*`: where and how the `xdp` backend runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpSettings {
    /// Interface carrying the media (its address is `media_ip`).
    pub interface: String,
    /// NIC queue of each worker: worker `i` (on `cores[i]`) binds `queues[i]`.
    /// Empty: queue `i` for worker `i`.
    pub queues: Vec<u32>,
    /// Ask for zero-copy binding (falls back to copy mode where the driver
    /// cannot).
    pub zero_copy: bool,
    /// Preferred busy polling on the AF_XDP sockets.
    pub busy_poll: bool,
    /// Program attach mode (driver, generic, or driver falling back).
    pub mode: crate::io::xdp::XdpMode,
}

/// What `Dataplane::start` chose and why: the backend asked for, the one
/// running, and one line per fallback or layout warning (also logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub requested: Backend,
    pub backend: Backend,
    /// Why a faster backend was not used, and core layout warnings.
    pub notes: Vec<String>,
    /// NIC queue per worker (xdp only).
    pub queues: Vec<u32>,
    /// Whether the xdp program runs in driver (native) mode, and whether
    /// zero-copy was asked for (xdp only).
    pub xdp_mode: Option<String>,
    /// The control plane's cores, as configured (checked disjoint).
    pub control_cores: Vec<usize>,
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
    /// Relay RTP received on this side only; RTP from the other side is dropped (counted
    /// as `held`). RTCP still flows both ways. A call on hold (RFC 3264 sendonly/recvonly).
    OneWay(Side),
    /// Relay no RTP at all (RFC 3264 inactive); RTCP still flows. Sources still latch.
    Inactive,
}

impl Mode {
    /// Whether RTP received on `side` is forwarded in this mode.
    pub const fn forwards(self, side: Side) -> bool {
        match self {
            Mode::Relay | Mode::Echo => true,
            Mode::OneWay(s) => matches!((s, side), (Side::A, Side::A) | (Side::B, Side::B)),
            Mode::Inactive => false,
        }
    }
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
    /// RTP in a direction the call has on hold ([`Mode::OneWay`], [`Mode::Inactive`]).
    pub held: u64,
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
    /// Sessions currently transcoding (one channel = both directions of one
    /// session).
    pub transcoding_channels: u64,
    /// Total time spent in the transcoding path (decode, buffer, encode,
    /// header), nanoseconds.
    pub codec_ns: u64,
    /// Total samples decoded by the transcoding path (both directions).
    pub codec_samples: u64,
}

impl WorkerStats {
    /// CPU nanoseconds per second of one transcoding channel (both
    /// directions): `codec_ns` over the channel-seconds of audio processed
    /// (`codec_samples / 16000`). `None` before any transcoding. Divide
    /// 1e9 by it for the channels one core can carry.
    pub fn codec_ns_per_channel_second(&self) -> Option<u64> {
        if self.codec_samples == 0 {
            return None;
        }
        let v = u128::from(self.codec_ns) * 16_000 / u128::from(self.codec_samples);
        Some(u64::try_from(v).unwrap_or(u64::MAX))
    }
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
    /// The codec settings of a leg cannot be transcoded (caller error).
    #[error("codec: {0}")]
    Codec(#[from] TranscodeError),
    /// A media application request cannot be done (caller error).
    #[error("media: {0}")]
    Media(#[from] MediaError),
    /// Socket or thread creation failed.
    #[error("dataplane I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Command ring capacity per worker.
pub const COMMAND_RING: usize = 1024;
/// Event ring capacity per worker.
pub const EVENT_RING: usize = 4096;

/// The control plane's handle: owns the command producers and event consumers.
pub struct Dataplane {
    cfg: Config,
    workers: Vec<WorkerHandle>,
    sessions: HashMap<SessionId, Entry>,
    next_id: u32,
    event_cursor: usize,
    stop: Arc<AtomicBool>,
    ssrc_seed: RandomState,
    selection: Selection,
    /// The attached XDP program (xdp backend): detached when the last
    /// reference (this one, after the workers') drops.
    _xdp: Option<Arc<crate::io::xdp::XdpProgram>>,
    /// The RTP range reserved for the xdp backend's socketless ports.
    _reserved: Option<crate::io::xdp::reserve::PortReservation>,
    /// Media application events per worker (attached on first use).
    media_events: Vec<Option<rtrb::Consumer<MediaEvent>>>,
}

/// Control-side view of one worker.
struct WorkerHandle {
    core: usize,
    commands: rtrb::Producer<Command>,
    events: rtrb::Consumer<Event>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
    slots: SlotAllocator,
    ports: PortPool,
}

/// Where a live session lives.
#[derive(Debug, Clone, Copy)]
struct Entry {
    worker: usize,
    slot: SlotId,
    pairs: [usize; 2],
    /// Output SSRCs of legs A and B.
    ssrcs: [Ssrc; 2],
    /// Negotiated codecs of legs A and B, once known.
    codecs: [Option<LegCodec>; 2],
    /// Whether the worker currently has a transcoder for this session.
    transcoding: bool,
}

/// At most this many pairs per worker keep their bound sockets in the pool (in use or
/// waiting for reuse): two descriptors each, plus the worker's duplicates of the pairs in use.
const KEPT_PAIRS: usize = 1024;
/// A freed pair is reused only after this many other pairs were freed after it (while fresh
/// pairs remain), so a straggler RTP packet of a finished call rarely meets a new one.
const QUARANTINE: usize = 64;

/// A worker's slice of the RTP range: `len` even/odd pairs from `base`.
///
/// Binding is the dear part of a session set-up (socket creation, port hash): the pool keeps
/// the bound RTP/RTCP sockets of up to [`KEPT_PAIRS`] pairs and hands the worker duplicates
/// (`dup`, the same kernel socket). When the worker closes its duplicates the pair stays
/// bound here; its next user gets new duplicates after the datagrams that queued meanwhile
/// are drained. Pairs beyond the cap are bound per session and closed by the worker, as
/// before.
#[derive(Debug)]
struct PortPool {
    base: u16,
    used: Vec<bool>,
    /// Next pair to try: allocation walks forward, so a just-freed port (whose
    /// socket the worker may not have closed yet) is reused last.
    cursor: usize,
    /// The bound sockets the pool keeps, per pair.
    kept: Vec<Option<(UdpSocket, UdpSocket)>>,
    /// How many entries of `kept` are `Some`.
    kept_count: usize,
    /// Free pairs with kept sockets, oldest freed first.
    ready: VecDeque<usize>,
    /// The drain buffers, made on the first reuse and kept: a fresh zeroed 16 KB per reuse
    /// cost more than the rest of the reuse.
    drain: Option<DrainBuf>,
    /// Pairs get no sockets (the xdp backend's reserved range).
    socketless: bool,
}

impl PortPool {
    fn new(base: u16, pairs: usize) -> PortPool {
        PortPool {
            base,
            used: vec![false; pairs],
            cursor: 0,
            kept: (0..pairs).map(|_| None).collect(),
            kept_count: 0,
            ready: VecDeque::new(),
            drain: None,
            socketless: false,
        }
    }

    /// A pair for one leg: its index, sockets (none when `socketless`) and
    /// RTP address.
    #[allow(clippy::type_complexity)]
    fn alloc_leg(
        &mut self,
        ip: IpAddr,
    ) -> Result<(usize, Option<(UdpSocket, UdpSocket)>, SocketAddr), Error> {
        if !self.socketless {
            let (i, rtp, rtcp) = self.alloc(ip)?;
            let local = rtp.local_addr().map_err(Error::Io)?;
            return Ok((i, Some((rtp, rtcp)), local));
        }
        let n = self.used.len();
        let i = (0..n)
            .map(|step| (self.cursor + step) % n)
            .find(|&i| !self.used[i])
            .ok_or(Error::NoPorts)?;
        self.used[i] = true;
        self.cursor = (i + 1) % n;
        // The pool only holds pairs inside the configured u16 range.
        Ok((i, None, SocketAddr::new(ip, self.base + 2 * i as u16)))
    }

    fn free_pairs(&self) -> usize {
        self.used.iter().filter(|u| !**u).count()
    }

    /// Hand out a free pair: a kept one out of quarantine, else the next free pair whose
    /// ports are not in use by anyone (bound now), else the oldest kept one.
    fn alloc(&mut self, ip: IpAddr) -> Result<(usize, UdpSocket, UdpSocket), Error> {
        if self.ready.len() > QUARANTINE {
            if let Some(got) = self.reuse() {
                return Ok(got);
            }
        }
        let n = self.used.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            if self.used[i] || self.kept[i].is_some() {
                continue;
            }
            // The pool only holds pairs inside the configured u16 range.
            let port = self.base + 2 * i as u16;
            let rtp = match UdpSocket::bind((ip, port)) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(bind_error(ip, port, e)),
            };
            let rtcp = match UdpSocket::bind((ip, port + 1)) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(bind_error(ip, port + 1, e)),
            };
            self.used[i] = true;
            self.cursor = (i + 1) % n;
            if self.kept_count < KEPT_PAIRS {
                if let (Ok(r), Ok(c)) = (rtp.try_clone(), rtcp.try_clone()) {
                    self.kept[i] = Some((rtp, rtcp));
                    self.kept_count += 1;
                    return Ok((i, r, c));
                }
            }
            return Ok((i, rtp, rtcp));
        }
        while !self.ready.is_empty() {
            if let Some(got) = self.reuse() {
                return Ok(got);
            }
        }
        Err(Error::NoPorts)
    }

    /// The oldest freed kept pair, drained, as new duplicates (`None` if it could not be
    /// duplicated: the pair is then let go and its ports bound afresh some later time).
    fn reuse(&mut self) -> Option<(usize, UdpSocket, UdpSocket)> {
        let i = self.ready.pop_front()?;
        let (rtp, rtcp) = self.kept[i].as_ref()?;
        // The syscall scratch is made per reuse (a call set-up, not the packet path): it
        // holds raw pointers, which would make the handle !Send if kept. The buffers are kept.
        let buf = self.drain.get_or_insert_with(DrainBuf::new);
        let mut d = Drainer {
            mmsg: crate::io::sys::Mmsg::new(Drainer::BATCH),
            batch: &mut buf.0,
        };
        d.drain(rtp);
        d.drain(rtcp);
        match (rtp.try_clone(), rtcp.try_clone()) {
            (Ok(r), Ok(c)) => {
                self.used[i] = true;
                Some((i, r, c))
            }
            _ => {
                self.kept[i] = None;
                self.kept_count -= 1;
                None
            }
        }
    }

    fn free(&mut self, i: usize) {
        if let Some(u) = self.used.get_mut(i) {
            if *u && self.kept[i].is_some() {
                self.ready.push_back(i);
            }
            *u = false;
        }
    }
}

/// Scratch to discard the datagrams queued on a kept socket while no session owned it.
struct Drainer<'a> {
    mmsg: crate::io::sys::Mmsg,
    batch: &'a mut crate::io::Batch,
}

/// The datagram buffers a [`Drainer`] reads into, kept by the pool.
struct DrainBuf(crate::io::Batch);

impl DrainBuf {
    fn new() -> DrainBuf {
        DrainBuf(crate::io::Batch::new(Drainer::BATCH))
    }
}

impl std::fmt::Debug for DrainBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DrainBuf")
    }
}

impl Drainer<'_> {
    const BATCH: usize = 8;

    /// Read and drop what `s` holds (non-blocking whatever the socket's mode; bounded).
    fn drain(&mut self, s: &UdpSocket) {
        for _ in 0..512 {
            self.batch.clear();
            match self
                .mmsg
                .recv(s.as_fd(), self.batch, crate::io::Token(0), Self::BATCH)
            {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        self.batch.clear();
    }
}

impl std::fmt::Debug for Drainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drainer")
    }
}

fn bind_error(ip: IpAddr, port: u16, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("bind media socket {ip}:{port}: {e}"),
    ))
}

/// Split `range` into `workers` equal slices of even/odd port pairs.
fn split_ports(range: &RangeInclusive<u16>, workers: usize) -> Result<Vec<PortPool>, Error> {
    let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
    let first = lo + (lo & 1);
    let pairs = ((hi + 1).saturating_sub(first) / 2) as usize;
    let per = pairs / workers.max(1);
    if per < 2 {
        return Err(Error::Config(format!(
            "rtp_ports {lo}..={hi} holds {pairs} even/odd port pairs; {workers} worker(s) need at \
             least 2 each (one session = two legs); widen the range or use fewer cores"
        )));
    }
    Ok((0..workers)
        // first + 2 * pairs <= hi + 1 <= 65536, and this start is below that.
        .map(|w| PortPool::new((first + (2 * w * per) as u32) as u16, per))
        .collect())
}

impl Dataplane {
    /// Spawn the pinned workers. Fails if a core does not exist, the port range
    /// is too small for the workers, or the backend is unavailable.
    pub fn start(mut cfg: Config) -> Result<Self, Error> {
        if cfg.cores.is_empty() {
            return Err(Error::Config(
                "no dataplane cores configured (cores = [])".into(),
            ));
        }
        if cfg.max_sessions_per_worker == 0 || cfg.max_sessions_per_worker > SocketRef::MAX_SLOTS {
            return Err(Error::Config(format!(
                "max_sessions_per_worker = {} is out of range (1..={})",
                cfg.max_sessions_per_worker,
                SocketRef::MAX_SLOTS
            )));
        }
        let available: Vec<usize> = core_affinity::get_core_ids()
            .ok_or_else(|| Error::Config("cannot list the machine's CPU cores".into()))?
            .into_iter()
            .map(|c| c.id)
            .collect();
        let mut notes = crate::io::select::check_cores(
            &cfg.cores,
            &cfg.control_cores,
            &available,
            &crate::io::select::Isolation::from_host(),
        )
        .map_err(Error::Config)?;
        let requested = cfg.backend;
        let chosen = crate::io::select::choose(&cfg)?;
        cfg.backend = chosen.backend;
        notes.extend(chosen.notes);
        for n in &notes {
            tracing::warn!("dataplane: {n}");
        }
        tracing::info!(requested = ?requested, backend = ?cfg.backend, "dataplane backend selected");
        let (program, queues) = match cfg.backend {
            Backend::Xdp => {
                let (p, q) = crate::io::select::attach_xdp(&cfg)?;
                (Some(p), q)
            }
            _ => (None, Vec::new()),
        };
        // Fail now, not on the first call, if media_ip is not a local address.
        UdpSocket::bind((cfg.media_ip, 0)).map_err(|e| bind_error(cfg.media_ip, 0, e))?;
        // xdp: ports without kernel sockets when the range can be reserved.
        let reserved = match program {
            Some(_) => match crate::io::xdp::reserve::for_dataplane(cfg.media_ip, &cfg.rtp_ports) {
                Ok(r) => Some(r),
                Err(why) => {
                    tracing::warn!("dataplane: xdp ports: {why}");
                    notes.push(format!("xdp ports: {why}"));
                    None
                }
            },
            None => None,
        };
        let selection = Selection {
            requested,
            backend: cfg.backend,
            notes,
            xdp_mode: program.as_ref().map(|p| {
                let zc = cfg.xdp.as_ref().is_some_and(|x| x.zero_copy);
                format!(
                    "{:?}{}",
                    p.mode,
                    if zc { ", zero-copy asked" } else { ", copy" }
                )
            }),
            queues: queues.clone(),
            control_cores: cfg.control_cores.clone(),
        };
        let mut pools = split_ports(&cfg.rtp_ports, cfg.cores.len())?;
        for p in &mut pools {
            p.socketless = reserved.is_some();
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut dp = Dataplane {
            workers: Vec::with_capacity(cfg.cores.len()),
            sessions: HashMap::new(),
            next_id: 1,
            event_cursor: 0,
            stop: Arc::clone(&stop),
            ssrc_seed: RandomState::new(),
            media_events: Vec::new(),
            cfg: cfg.clone(),
            selection,
            _xdp: program.clone(),
            _reserved: reserved,
        };
        for (index, (core, ports)) in cfg.cores.iter().copied().zip(pools).enumerate() {
            let (cmd_tx, cmd_rx) = rtrb::RingBuffer::new(COMMAND_RING);
            let (ev_tx, ev_rx) = rtrb::RingBuffer::new(EVENT_RING);
            let counters = Arc::new(Counters::default());
            let wcfg = WorkerConfig {
                index,
                core,
                max_sessions: cfg.max_sessions_per_worker,
                media_timeout: cfg.media_timeout,
            };
            let spec = match (&program, queues.get(index)) {
                (Some(p), Some(&queue)) => crate::io::BackendSpec::Xdp {
                    program: Arc::clone(p),
                    queue,
                },
                _ => crate::io::BackendSpec::Plain(cfg.backend),
            };
            // On error `dp` drops here, which stops and joins the workers
            // already started.
            let thread = worker::spawn(
                wcfg,
                cmd_rx,
                ev_tx,
                Arc::clone(&counters),
                Arc::clone(&stop),
                spec,
            )?;
            dp.workers.push(WorkerHandle {
                core,
                commands: cmd_tx,
                events: ev_rx,
                counters,
                thread: Some(thread),
                slots: SlotAllocator::new(cfg.max_sessions_per_worker),
                ports,
            });
        }
        Ok(dp)
    }

    /// Pick a worker (least loaded), bind two RTP/RTCP port pairs from its slice,
    /// and install a session in `mode`.
    pub fn create_session(&mut self, mode: Mode) -> Result<Allocated, Error> {
        let mut order: Vec<usize> = (0..self.workers.len()).collect();
        order.sort_by_key(|&w| self.workers[w].slots.used());
        let mut last_err = Error::NoSessionSlots;
        for w in order {
            match self.create_on(w, mode) {
                Ok(a) => return Ok(a),
                Err(e @ (Error::NoPorts | Error::NoSessionSlots)) => {
                    // Out of ports beats out of slots as the reported cause.
                    if matches!(e, Error::NoPorts) || !matches!(last_err, Error::NoPorts) {
                        last_err = e;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    fn create_on(&mut self, w: usize, mode: Mode) -> Result<Allocated, Error> {
        let media_ip = self.cfg.media_ip;
        let id = self.next_session_id();
        let ssrc_a = self.random_ssrc(id, 0);
        let ssrc_b = self.random_ssrc(id, 1);
        let wh = &mut self.workers[w];
        if wh.commands.slots() == 0 {
            return Err(Error::QueueFull(w));
        }
        if wh.ports.free_pairs() < 2 {
            return Err(Error::NoPorts);
        }
        let slot = wh.slots.alloc().ok_or(Error::NoSessionSlots)?;
        let (pa, a_socks, a_local) = match wh.ports.alloc_leg(media_ip) {
            Ok(p) => p,
            Err(e) => {
                wh.slots.free(slot);
                return Err(e);
            }
        };
        let (pb, b_socks, b_local) = match wh.ports.alloc_leg(media_ip) {
            Ok(p) => p,
            Err(e) => {
                wh.ports.free(pa);
                wh.slots.free(slot);
                return Err(e);
            }
        };
        let (a_rtp, a_rtcp) = a_socks.unzip();
        let (b_rtp, b_rtcp) = b_socks.unzip();
        let cmd = Command::Create {
            slot,
            id,
            mode,
            a: LegSetup {
                rtp: a_rtp,
                rtcp: a_rtcp,
                local: a_local,
                ssrc: ssrc_a,
            },
            b: LegSetup {
                rtp: b_rtp,
                rtcp: b_rtcp,
                local: b_local,
                ssrc: ssrc_b,
            },
        };
        if wh.commands.push(cmd).is_err() {
            // The rejected command (and its sockets) is dropped here.
            wh.ports.free(pa);
            wh.ports.free(pb);
            wh.slots.free(slot);
            return Err(Error::QueueFull(w));
        }
        self.sessions.insert(
            id,
            Entry {
                worker: w,
                slot,
                pairs: [pa, pb],
                ssrcs: [ssrc_a, ssrc_b],
                codecs: [None, None],
                transcoding: false,
            },
        );
        self.next_id = id.0.wrapping_add(1);
        Ok(Allocated {
            id,
            worker: w,
            a: a_local,
            b: b_local,
        })
    }

    fn next_session_id(&self) -> SessionId {
        let mut id = self.next_id.max(1);
        while self.sessions.contains_key(&SessionId(id)) {
            id = id.wrapping_add(1).max(1);
        }
        SessionId(id)
    }

    /// A random SSRC per (session, leg): RFC 3550 wants them unpredictable.
    fn random_ssrc(&self, id: SessionId, leg: u32) -> Ssrc {
        let mut h = self.ssrc_seed.build_hasher();
        h.write_u32(id.0);
        h.write_u32(leg);
        Ssrc(h.finish() as u32)
    }

    fn send(&mut self, id: SessionId, make: impl FnOnce(SlotId) -> Command) -> Result<(), Error> {
        let e = *self.sessions.get(&id).ok_or(Error::UnknownSession(id))?;
        let wh = &mut self.workers[e.worker];
        wh.commands
            .push(make(e.slot))
            .map_err(|_| Error::QueueFull(e.worker))
    }

    /// Set the remote RTP (and RTCP; default RTP port + 1) address of a leg, as
    /// announced in SDP. Media is accepted only from this IP.
    pub fn set_remote(
        &mut self,
        id: SessionId,
        side: Side,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), Error> {
        self.send(id, |slot| Command::SetRemote {
            slot,
            side,
            rtp,
            rtcp,
        })
    }

    /// Switch a session between relay and echo.
    pub fn set_mode(&mut self, id: SessionId, mode: Mode) -> Result<(), Error> {
        self.send(id, |slot| Command::SetMode { slot, mode })
    }

    /// Set the negotiated codec of one leg. When both legs have one and they
    /// differ (codec, payload type, ptime or telephone-event type), the session
    /// transcodes between them; when they are equal it relays. Returns whether
    /// the session now transcodes.
    pub fn set_codec(&mut self, id: SessionId, side: Side, codec: LegCodec) -> Result<bool, Error> {
        let e = self
            .sessions
            .get_mut(&id)
            .ok_or(Error::UnknownSession(id))?;
        let i = match side {
            Side::A => 0,
            Side::B => 1,
        };
        let mut codecs = e.codecs;
        codecs[i] = Some(codec);
        let transcoder = match codecs {
            [Some(a), Some(b)] if !a.relay_compatible(&b) => Some(Box::new(Transcoder::new(
                a,
                b,
                e.ssrcs[0],
                e.ssrcs[1],
                e.ssrcs[0].0 ^ e.ssrcs[1].0.rotate_left(16),
            )?)),
            _ => None,
        };
        let want = transcoder.is_some();
        if want || e.transcoding {
            let (worker, slot) = (e.worker, e.slot);
            self.workers[worker]
                .commands
                .push(Command::SetTranscoder { slot, transcoder })
                .map_err(|_| Error::QueueFull(worker))?;
        }
        // Only now: a failed push leaves the previous state in place.
        if let Some(e) = self.sessions.get_mut(&id) {
            e.codecs = codecs;
            e.transcoding = want;
        }
        Ok(want)
    }

    /// Start the media-timeout watch on a session (call answered).
    pub fn arm_timeout(&mut self, id: SessionId) -> Result<(), Error> {
        self.send(id, |slot| Command::ArmTimeout { slot })
    }

    /// Tear a session down and free its ports.
    ///
    /// The worker closes the sockets when it applies the command (within about
    /// a millisecond); the ports return to the pool at once, and allocation
    /// skips any port still bound.
    pub fn destroy(&mut self, id: SessionId) -> Result<(), Error> {
        self.send(id, |slot| Command::Destroy { slot })?;
        if let Some(e) = self.sessions.remove(&id) {
            let wh = &mut self.workers[e.worker];
            wh.ports.free(e.pairs[0]);
            wh.ports.free(e.pairs[1]);
            wh.slots.free(e.slot);
        }
        Ok(())
    }

    /// Next worker event, if any (non-blocking; drains all workers' rings).
    ///
    /// Events of sessions destroyed meanwhile are skipped.
    pub fn poll_event(&mut self) -> Option<Event> {
        let n = self.workers.len();
        for step in 0..n {
            let w = (self.event_cursor + step) % n;
            while let Ok(ev) = self.workers[w].events.pop() {
                let id = match ev {
                    Event::MediaTimeout { id } | Event::FirstPacket { id, .. } => id,
                };
                if self.sessions.get(&id).is_some_and(|e| e.worker == w) {
                    // Next call starts at the next worker: fair between workers.
                    self.event_cursor = (w + 1) % n;
                    return Some(ev);
                }
            }
        }
        None
    }

    /// The backend the workers run (`Auto` resolved to what was chosen).
    pub fn backend(&self) -> Backend {
        self.cfg.backend
    }

    /// The backend asked for, the one running, and every fallback reason and
    /// core layout warning (`tandemctl show workers`).
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Per-worker counters.
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.workers
            .iter()
            .enumerate()
            .map(|(worker, wh)| {
                let c = &wh.counters;
                WorkerStats {
                    worker,
                    core: wh.core,
                    sessions: c.sessions.load(Ordering::Relaxed),
                    packets_in: c.packets_in.load(Ordering::Relaxed),
                    packets_out: c.packets_out.load(Ordering::Relaxed),
                    drops: c.drops(),
                    transcoding_channels: c.transcoding.load(Ordering::Relaxed),
                    codec_ns: c.codec_ns.load(Ordering::Relaxed),
                    codec_samples: c.codec_samples.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Stop and join all workers.
    pub fn shutdown(self) {
        drop(self);
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (i, wh) in self.workers.iter_mut().enumerate() {
            if let Some(t) = wh.thread.take() {
                if t.join().is_err() {
                    tracing::error!(worker = i, "dataplane worker panicked");
                }
            }
        }
    }
}

/// Media applications (see [`crate::media`]): play into a leg, detect and
/// send digits. Each leg uses the codec given by `set_codec` (PCMU, 20 ms,
/// telephone-event 101 if none was), as it is when the request is made.
impl Dataplane {
    /// Play `source` to the party on leg `side` (what that party hears),
    /// replacing a current playback on that leg. While it plays, media
    /// relayed toward that leg is held back. Ends with one
    /// [`MediaEvent::PlaybackDone`].
    pub fn play(&mut self, id: SessionId, side: Side, source: Source) -> Result<(), Error> {
        let codec = self.leg_codec(id, side)?;
        let player = Box::new(Player::new(source, &codec).map_err(MediaError::from)?);
        self.media_command(id, Op::Play { side, player })
    }

    /// Stop the playback on leg `side` (its `PlaybackDone` says not
    /// completed). No effect if nothing plays.
    pub fn stop_play(&mut self, id: SessionId, side: Side) -> Result<(), Error> {
        self.media_command(id, Op::StopPlay { side })
    }

    /// Report the digits leg `side` sends ([`MediaEvent::Digit`]), or stop
    /// with [`DigitMode::Off`].
    pub fn detect_digits(
        &mut self,
        id: SessionId,
        side: Side,
        mode: DigitMode,
    ) -> Result<(), Error> {
        let codec = self.entry(id)?.codecs[side_index(side)];
        let detector = (mode != DigitMode::Off).then(|| Box::new(Detector::new(mode, codec)));
        self.media_command(id, Op::Detect { side, detector })
    }

    /// Send `digit` (`0-9 * # A-D`) held for `duration` into leg `side`: as
    /// RFC 4733 telephone-events when the leg negotiated them (begin,
    /// updates every ptime, the end packet three times), else as in-band
    /// tones in the leg's codec. Digits queue behind each other and behind a
    /// playback; each ends with a [`MediaEvent::DigitSent`].
    pub fn send_digit(
        &mut self,
        id: SessionId,
        side: Side,
        digit: char,
        duration: Duration,
    ) -> Result<(), Error> {
        let d = Digit::from_char(digit).ok_or(MediaError::BadDigit(digit))?;
        let codec = self.leg_codec(id, side)?;
        let ms = u32::try_from(duration.as_millis())
            .unwrap_or(u32::MAX)
            .clamp(40, 8000);
        let player = match codec.dtmf_pt {
            Some(_) => None,
            None => Some(Box::new(
                Player::digit(d, ms, &codec).map_err(MediaError::from)?,
            )),
        };
        self.media_command(
            id,
            Op::SendDigit {
                side,
                digit: d,
                samples: ms * 8,
                pt: codec.dtmf_pt,
                interval: u32::from(codec.ptime_ms) * 8,
                player,
            },
        )
    }

    /// Next media application event, if any (non-blocking). Events of
    /// sessions destroyed meanwhile are skipped.
    pub fn poll_media_event(&mut self) -> Option<MediaEvent> {
        for w in 0..self.media_events.len() {
            let Some(ring) = self.media_events[w].as_mut() else {
                continue;
            };
            while let Ok(ev) = ring.pop() {
                if self
                    .sessions
                    .get(&ev.session())
                    .is_some_and(|e| e.worker == w)
                {
                    return Some(ev);
                }
            }
        }
        None
    }

    fn entry(&self, id: SessionId) -> Result<&Entry, Error> {
        self.sessions.get(&id).ok_or(Error::UnknownSession(id))
    }

    /// The leg's codec; PCMU 20 ms with telephone-event 101 when not set.
    fn leg_codec(&self, id: SessionId, side: Side) -> Result<LegCodec, Error> {
        Ok(
            self.entry(id)?.codecs[side_index(side)].unwrap_or(LegCodec {
                dtmf_pt: Some(crate::media::DEFAULT_DTMF_PT),
                ..LegCodec::new(crate::transcode::CodecKind::Pcmu)
            }),
        )
    }

    fn media_command(&mut self, id: SessionId, op: Op) -> Result<(), Error> {
        let e = *self.entry(id)?;
        if self.media_events.len() <= e.worker {
            self.media_events.resize_with(e.worker + 1, || None);
        }
        let wh = &mut self.workers[e.worker];
        if self.media_events[e.worker].is_none() {
            let (tx, rx) = rtrb::RingBuffer::new(EVENT_RING);
            if wh.commands.slots() < 2 {
                return Err(Error::QueueFull(e.worker));
            }
            wh.commands
                .push(Command::AttachMediaEvents(tx))
                .map_err(|_| Error::QueueFull(e.worker))?;
            self.media_events[e.worker] = Some(rx);
        }
        wh.commands
            .push(Command::Media { slot: e.slot, op })
            .map_err(|_| Error::QueueFull(e.worker))
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("workers", &self.workers.len())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_send() {
        // The control plane may move the handle into its runtime's task.
        fn assert_send<T: Send>() {}
        assert_send::<Dataplane>();
        assert_send::<Error>();
    }

    #[test]
    fn port_pool_keeps_bound_pairs_and_drains_them_before_reuse() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let probe = UdpSocket::bind((ip, 0)).unwrap();
        let base = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        let mut pool = PortPool::new(base, 2);
        let Ok((i, rtp, rtcp)) = pool.alloc(ip) else {
            eprintln!("SKIP: no free pair near {base}");
            return;
        };
        let port = rtp.local_addr().unwrap().port();
        assert_eq!(pool.kept_count, 1);
        // A straggler for the finished call queues on the kept socket.
        let peer = UdpSocket::bind((ip, 0)).unwrap();
        peer.send_to(b"stale", (ip, port)).unwrap();
        drop((rtp, rtcp));
        pool.free(i);
        // The worker closed its duplicates; the pool still holds the ports.
        assert!(UdpSocket::bind((ip, port)).is_err(), "port {port} released");
        let other = pool.alloc(ip).unwrap();
        if other.0 == i {
            eprintln!("SKIP: the second pair is in use by someone else here");
            return;
        }
        // Nothing fresh left: the kept pair comes back, drained.
        let (k, rtp, _rtcp) = pool.alloc(ip).unwrap();
        assert_eq!(k, i);
        assert_eq!(rtp.local_addr().unwrap().port(), port);
        rtp.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            rtp.recv_from(&mut buf).is_err(),
            "stale datagram not drained"
        );
        peer.send_to(b"new", (ip, port)).unwrap();
        rtp.set_nonblocking(false).unwrap();
        rtp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (n, _) = rtp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new");
        assert!(matches!(pool.alloc(ip), Err(Error::NoPorts)));
        drop(other);
    }

    #[test]
    fn port_split() {
        let pools = split_ports(&(10_001..=10_020), 2).unwrap();
        // Pairs start at the first even port: 10002..=10019 -> 9 pairs, 4 each.
        assert_eq!((pools[0].base, pools[0].used.len()), (10_002, 4));
        assert_eq!((pools[1].base, pools[1].used.len()), (10_010, 4));
        let pools = split_ports(&(65_530..=65_535), 1).unwrap();
        assert_eq!((pools[0].base, pools[0].used.len()), (65_530, 3));
        assert!(matches!(
            split_ports(&(10_000..=10_002), 1),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            split_ports(&(10_000..=10_007), 3),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            split_ports(&RangeInclusive::new(10_000, 9_000), 1),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn port_pool_skips_ports_in_use_and_reuses_last() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Find three consecutive free pairs by binding them ourselves first.
        let probe = UdpSocket::bind((ip, 0)).unwrap();
        let base = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        let mut pool = PortPool::new(base, 3);
        let blocker = UdpSocket::bind((ip, base + 1));
        let (i, rtp, rtcp) = pool.alloc(ip).unwrap();
        if blocker.is_ok() {
            assert_eq!(i, 1, "pair 0 has its RTCP port taken");
        }
        assert_eq!(rtp.local_addr().unwrap().port() % 2, 0);
        assert_eq!(
            rtcp.local_addr().unwrap().port(),
            rtp.local_addr().unwrap().port() + 1
        );
        drop((rtp, rtcp));
        pool.free(i);
        let (j, _r, _c) = pool.alloc(ip).unwrap();
        assert_ne!(i, j, "a freed pair is not the next one handed out");
    }
}
