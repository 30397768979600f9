//! The dataplane worker: one thread per configured core, pinned to it, that
//! owns a slice of the RTP ports, a session table and an I/O backend.
//!
//! # The packet path
//!
//! ```text
//!  NIC ─▶ kernel UDP socket (one per leg, RTP on an even port, RTCP on +1)
//!       ─▶ epoll reports it readable ─▶ recvmmsg into a preallocated Batch
//!       ─▶ token → (session slot, leg, RTP/RTCP) ─▶ switch::handle_packet:
//!            validate, check source against the leg's latch, pick the output
//!            leg, rewrite SSRC/seq/ts (RTCP: sender SSRC, SR ts, report blocks)
//!            in place, return Forward{from socket, to address} or Drop(reason)
//!       ─▶ sendmmsg, one call per run of datagrams leaving the same socket
//!       ─▶ kernel ─▶ NIC
//! ```
//!
//! A transcoding session (legs with different codecs) takes a side road at the
//! switch: the transcoder decodes the payload, buffers linear PCM and encodes
//! for the other leg; the packets it produces are copied into a second
//! preallocated batch (`generated`) and sent after the received batch. The
//! time spent there is measured with [`crate::clock`] and published as
//! `codec_ns` with the samples decoded, so management can show the CPU cost
//! per transcoding channel.
//!
//! A backend that can forward streams by itself (the `xdp` backend's
//! in-kernel fast path) is offered each latched plain relay stream (no
//! transcoder, no media application, a forwarding mode) after its packet
//! was sent; any command touching the session takes the offer back first,
//! and the next relayed packet offers it again. The packets the backend
//! forwarded are read every [`OFFLOAD_POLL`] into the session's and the
//! worker's counters (and the session's media-timeout clock).
//!
//! Nothing on that path allocates or locks: the batch, the syscall scratch and
//! the session slab are all allocated when the worker starts, and counters are
//! plain integers published to atomics once per iteration.
//!
//! # One iteration (bounded work)
//!
//! 1. Apply at most [`MAX_COMMANDS`] control commands from the command ring.
//! 2. Receive one batch (at most [`BATCH`] datagrams).
//! 3. Switch each datagram, push events (first packet) to the event ring.
//! 4. Send the batch.
//! 5. Check the media timeout of at most [`TIMEOUT_SCAN`] sessions (a cursor
//!    walks the table, so every session is checked every few milliseconds).
//! 6. Publish counters.
//!
//! # Idle policy
//!
//! The worker does not spin. It blocks in `epoll_wait` for at most
//! [`IDLE_WAIT`] (1 ms) when the previous iteration left nothing pending, and
//! polls with a zero timeout while there is more work (a full batch or a full
//! command budget). A datagram wakes it immediately, so the timeout only bounds
//! how late a command or a media-timeout check can be (about 1 ms). An idle
//! worker therefore costs ~1000 wakeups/s instead of a whole core, which
//! matters on small machines (the CI box has 2 cores shared with baresip).
//! A dedicated appliance that wants the lowest latency can switch this to a
//! pure busy poll later (an `IDLE_WAIT` of zero) without changing anything else.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::MonotonicClock;
use crate::handle::{DropCounts, Error, Event};
use crate::io::AnyBackend;
use crate::io::{Backend, Batch, Offload, OffloadCounts, Tx};
use crate::media::{self, MediaEvent, WorkerMedia};
use crate::session::{Kind, Leg, Mode, Session, SessionId, SessionTable, Side, SlotId, SocketRef};
use crate::switch::{self, Decision, DropReason};
use crate::transcode::Transcoder;
use crate::wire::Ssrc;

/// Datagrams per receive batch.
pub const BATCH: usize = 64;
/// Control commands applied per iteration at most.
pub const MAX_COMMANDS: usize = 64;
/// Sessions checked for media timeout per iteration at most.
pub const TIMEOUT_SCAN: usize = 256;
/// Longest `epoll_wait` when idle.
pub const IDLE_WAIT: Duration = Duration::from_millis(1);
/// How often the counters of offloaded streams are read into the sessions.
pub const OFFLOAD_POLL: Duration = Duration::from_millis(100);

/// The sockets and identity of one leg, handed to the worker at creation.
/// No sockets: the ports are registered with [`Backend::register_port`]
/// (the `xdp` backend with the range reserved, [`crate::io::xdp::reserve`]).
#[derive(Debug)]
pub struct LegSetup {
    pub rtp: Option<UdpSocket>,
    pub rtcp: Option<UdpSocket>,
    /// Local RTP address (RTCP is port + 1).
    pub local: SocketAddr,
    /// The SSRC this leg's peer sees from us.
    pub ssrc: Ssrc,
}

/// Control → worker commands. Slots are allocated on the control side; the
/// generation in [`SlotId`] makes a stale command harmless.
#[derive(Debug)]
pub enum Command {
    /// Install a session and start polling its four sockets.
    Create {
        slot: SlotId,
        id: SessionId,
        mode: Mode,
        a: LegSetup,
        b: LegSetup,
    },
    /// The signalled remote of a leg (SDP).
    SetRemote {
        slot: SlotId,
        side: Side,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
    /// Relay or echo.
    SetMode { slot: SlotId, mode: Mode },
    /// Install (`Some`) or remove (`None`: back to the relay) the session's
    /// transcoder. Built and allocated on the control side.
    SetTranscoder {
        slot: SlotId,
        transcoder: Option<Box<Transcoder>>,
    },
    /// Start the media-timeout watch now.
    ArmTimeout { slot: SlotId },
    /// Remove the session and close its sockets (frees the ports).
    Destroy { slot: SlotId },
    /// A media application request (play, detect or send digits).
    Media { slot: SlotId, op: media::Op },
    /// Where media application events go (sent once, before the first
    /// `Media` command).
    AttachMediaEvents(rtrb::Producer<MediaEvent>),
}

/// A worker's counters, written by the worker once per iteration and read by
/// anyone (management, tests). Relaxed ordering: each value is a monotonic
/// snapshot on its own; no cross-counter consistency is promised.
#[derive(Debug, Default)]
pub struct Counters {
    pub sessions: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub malformed: AtomicU64,
    pub wrong_source: AtomicU64,
    pub no_remote: AtomicU64,
    pub held: AtomicU64,
    pub tx_error: AtomicU64,
    /// Events lost because the event ring was full.
    pub events_dropped: AtomicU64,
    /// Sessions with a transcoder installed (gauge).
    pub transcoding: AtomicU64,
    /// Nanoseconds spent in the transcoding path (monotonic).
    pub codec_ns: AtomicU64,
    /// Samples decoded by the transcoding path (monotonic; 8000 per second of
    /// one direction).
    pub codec_samples: AtomicU64,
    /// Packets the backend forwarded by itself (offloaded streams; also
    /// counted in `packets_in` and `packets_out`).
    pub offloaded: AtomicU64,
}

impl Counters {
    /// Read the drop counters.
    pub fn drops(&self) -> DropCounts {
        DropCounts {
            malformed: self.malformed.load(Ordering::Relaxed),
            wrong_source: self.wrong_source.load(Ordering::Relaxed),
            no_remote: self.no_remote.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            tx_error: self.tx_error.load(Ordering::Relaxed),
        }
    }
}

/// The worker's private copy of its counters (plain integers on the hot path).
#[derive(Debug, Default, Clone, Copy)]
struct Local {
    packets_in: u64,
    packets_out: u64,
    drops: DropCounts,
    events_dropped: u64,
    transcoding: u64,
    codec_ns: u64,
    codec_samples: u64,
    offloaded: u64,
}

/// What a worker needs to start.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub index: usize,
    pub core: usize,
    pub max_sessions: usize,
    pub media_timeout: Duration,
}

/// The worker state (runs on its own thread; public for tests that drive it
/// directly with [`Worker::poll`]).
pub struct Worker<B: Backend> {
    cfg: WorkerConfig,
    backend: B,
    table: SessionTable,
    batch: Batch,
    /// Packets produced by transcoders in this iteration.
    generated: Batch,
    commands: rtrb::Consumer<Command>,
    events: rtrb::Producer<Event>,
    counters: Arc<Counters>,
    local: Local,
    timeout_cursor: usize,
    /// Media applications (players, digits): active list and event ring.
    media: WorkerMedia,
    /// Whether the backend can forward streams by itself.
    offload_on: bool,
    /// The stream the backend forwards, per slot index and receiving side.
    offloaded: Box<[[Option<Offload>; 2]]>,
    /// Legs whose stream to (re)offer to the backend once the batch is sent.
    offload_pending: Vec<(u32, Side)>,
    last_offload_poll: Option<Instant>,
}

impl<B: Backend> Worker<B> {
    /// A worker over `backend` (all per-packet memory is allocated here).
    pub fn new(
        cfg: WorkerConfig,
        backend: B,
        commands: rtrb::Consumer<Command>,
        events: rtrb::Producer<Event>,
        counters: Arc<Counters>,
    ) -> Worker<B> {
        let media = WorkerMedia::new(cfg.max_sessions);
        let offload_on = backend.can_offload();
        Worker {
            offload_on,
            offloaded: vec![[None; 2]; if offload_on { cfg.max_sessions } else { 0 }]
                .into_boxed_slice(),
            offload_pending: Vec::with_capacity(if offload_on { BATCH } else { 0 }),
            last_offload_poll: None,
            table: SessionTable::with_capacity(cfg.max_sessions),
            batch: Batch::new(BATCH),
            generated: Batch::new(BATCH),
            cfg,
            backend,
            commands,
            events,
            counters,
            local: Local::default(),
            timeout_cursor: 0,
            media,
        }
    }

    /// One loop iteration (see the module docs). `timeout` bounds the wait
    /// for datagrams. Returns `true` if work is pending (call again at once).
    pub fn poll(&mut self, timeout: Duration, clock: &MonotonicClock) -> bool {
        let mut pending = false;

        let mut applied = 0;
        while applied < MAX_COMMANDS {
            let Ok(cmd) = self.commands.pop() else { break };
            self.apply(cmd, clock.now());
            applied += 1;
        }
        pending |= applied == MAX_COMMANDS;

        let wait = if pending { Duration::ZERO } else { timeout };
        let received = match self.backend.recv(&mut self.batch, wait) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(worker = self.cfg.index, error = %e, "receive failed");
                0
            }
        };
        pending |= received == self.batch.capacity();

        let now = clock.now();
        if received > 0 {
            self.generated.clear();
            self.switch_batch(now, clock);
            let sent = self.backend.send(&self.batch);
            self.local.packets_out += sent.sent as u64;
            self.local.drops.tx_error += sent.failed as u64;
            if !self.generated.is_empty() {
                let sent = self.backend.send(&self.generated);
                self.local.packets_out += sent.sent as u64;
                self.local.drops.tx_error += sent.failed as u64;
                self.generated.clear();
            }
            if !self.offload_pending.is_empty() {
                self.offer_offloads(now);
            }
        }
        self.tick_media(now);
        if self.offload_on
            && self
                .last_offload_poll
                .is_none_or(|t| now.saturating_duration_since(t) >= OFFLOAD_POLL)
        {
            self.last_offload_poll = Some(now);
            self.poll_offloads(now);
        }
        self.check_timeouts(now);
        self.publish();
        pending
    }

    /// Run until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        let clock = MonotonicClock;
        let mut pending = false;
        while !stop.load(Ordering::Relaxed) {
            pending = self.poll(if pending { Duration::ZERO } else { IDLE_WAIT }, &clock);
        }
    }

    fn apply(&mut self, cmd: Command, now: Instant) {
        // Anything that changes a session ends its offloaded streams first
        // (the next relayed packet offers them again if still plain).
        match &cmd {
            Command::SetRemote { slot, .. }
            | Command::SetMode { slot, .. }
            | Command::SetTranscoder { slot, .. }
            | Command::Media { slot, .. }
            | Command::Destroy { slot } => self.end_offloads(slot.index, now),
            Command::Create { .. } | Command::ArmTimeout { .. } | Command::AttachMediaEvents(_) => {
            }
        }
        match cmd {
            Command::Create {
                slot,
                id,
                mode,
                a,
                b,
            } => self.create(slot, id, mode, a, b),
            Command::SetRemote {
                slot,
                side,
                rtp,
                rtcp,
            } => {
                if let Some(s) = self.table.get_mut(slot) {
                    s.leg_mut(side).set_remote(rtp, rtcp);
                }
            }
            Command::SetMode { slot, mode } => {
                if let Some(s) = self.table.get_mut(slot) {
                    s.mode = mode;
                }
            }
            Command::SetTranscoder { slot, transcoder } => {
                if let Some(s) = self.table.get_mut(slot) {
                    let was = s.transcoder.is_some();
                    // The old transcoder (if any) is freed here, between batches.
                    s.transcoder = transcoder;
                    match (was, s.transcoder.is_some()) {
                        (false, true) => self.local.transcoding += 1,
                        (true, false) => self.local.transcoding -= 1,
                        _ => {}
                    }
                }
            }
            Command::ArmTimeout { slot } => {
                if let Some(s) = self.table.get_mut(slot) {
                    s.arm(now);
                }
            }
            Command::Media { slot, op } => {
                if let Some(s) = self.table.get_mut(slot) {
                    self.media.apply(slot.index, s, op, now);
                }
            }
            Command::AttachMediaEvents(events) => self.media.attach(events),
            Command::Destroy { slot } => {
                if let Some(s) = self.table.remove(slot) {
                    if s.transcoder.is_some() {
                        self.local.transcoding -= 1;
                    }
                    for r in sockets_of(slot.index) {
                        self.backend.deregister(r.token());
                    }
                }
            }
        }
    }

    fn create(&mut self, slot: SlotId, id: SessionId, mode: Mode, a: LegSetup, b: LegSetup) {
        let session = Session::new(
            id,
            mode,
            Leg::new(a.local, a.ssrc),
            Leg::new(b.local, b.ssrc),
        );
        if let Err(e) = self.table.insert(slot, session) {
            tracing::error!(worker = self.cfg.index, error = %e, "create session");
            return;
        }
        let rtcp = |mut l: SocketAddr| {
            l.set_port(l.port().wrapping_add(1));
            l
        };
        let socks = [
            (a.rtp, a.local),
            (a.rtcp, rtcp(a.local)),
            (b.rtp, b.local),
            (b.rtcp, rtcp(b.local)),
        ];
        for (r, (sock, local)) in sockets_of(slot.index).into_iter().zip(socks) {
            let res = match sock {
                Some(sock) => self.backend.register(r.token(), sock),
                None => self.backend.register_port(r.token(), local),
            };
            if let Err(e) = res {
                tracing::error!(worker = self.cfg.index, error = %e, "register media socket");
            }
        }
    }

    fn switch_batch(&mut self, now: Instant, clock: &MonotonicClock) {
        for i in 0..self.batch.len() {
            self.local.packets_in += 1;
            let (meta, bytes) = self.batch.get_mut(i);
            let rx = SocketRef::from_token(meta.token);
            let Some(session) = self.table.by_index_mut(rx.slot) else {
                // A socket outlives its session only inside one iteration's
                // batch after a destroy; nothing to relay to.
                self.local.drops.no_remote += 1;
                continue;
            };
            let muted = session.media.muted();
            let out = if session.transcoder.is_some() {
                // Sent after the received batch; a full generated batch is
                // flushed on the spot.
                let (generated, backend, local) =
                    (&mut self.generated, &mut self.backend, &mut self.local);
                let mut emit = |from: SocketRef, to: SocketAddr, b: &[u8]| {
                    if muted[usize::from(from.side == Side::B)] {
                        // A player or digit sender owns that leg's output.
                        return;
                    }
                    if generated.len() == generated.capacity() {
                        let sent = backend.send(generated);
                        local.packets_out += sent.sent as u64;
                        local.drops.tx_error += sent.failed as u64;
                        generated.clear();
                    }
                    let token = from.token();
                    if generated.push(token, to, b) {
                        let last = generated.len() - 1;
                        generated.get_mut(last).0.tx = Some(Tx { from: token, to });
                    }
                };
                let t0 = clock.now();
                let out = switch::handle_packet_with(session, rx, meta.peer, bytes, now, &mut emit);
                let dt = clock.now().saturating_duration_since(t0);
                if let Decision::Transcoded { work, .. } = out.decision {
                    self.local.codec_samples += work.samples;
                    self.local.codec_ns += u64::try_from(dt.as_nanos()).unwrap_or(u64::MAX);
                }
                out
            } else {
                switch::handle_packet(session, rx, meta.peer, bytes, now)
            };
            let accepted = matches!(
                out.decision,
                Decision::Forward { .. }
                    | Decision::Transcoded { .. }
                    | Decision::Drop(DropReason::NoRemote)
            );
            if accepted && rx.kind == Kind::Rtp && session.media.detecting(rx.side) {
                self.media.inspect(session, rx.side, bytes, now);
            }
            match out.decision {
                Decision::Transcoded { .. } => {}
                Decision::Forward { from, .. }
                    if from.kind == Kind::Rtp && muted[usize::from(from.side == Side::B)] => {}
                Decision::Forward { from, to } => {
                    meta.tx = Some(Tx {
                        from: from.token(),
                        to,
                    });
                    if self.offload_on
                        && from.kind == Kind::Rtp
                        && self.offload_pending.len() < self.offload_pending.capacity()
                        && plain_relay(session, rx.side)
                    {
                        self.offload_pending.push((rx.slot, rx.side));
                    }
                }
                Decision::Drop(DropReason::Malformed) => self.local.drops.malformed += 1,
                Decision::Drop(DropReason::WrongSource) => self.local.drops.wrong_source += 1,
                Decision::Drop(DropReason::NoRemote) => self.local.drops.no_remote += 1,
                Decision::Drop(DropReason::Held) => self.local.drops.held += 1,
            }
            if let Some(ev) = out.event {
                if self.events.push(ev).is_err() {
                    self.local.events_dropped += 1;
                }
            }
        }
    }

    /// Run the media applications (players, digit senders, RFC 4733
    /// timeouts) and send what they generated.
    fn tick_media(&mut self, now: Instant) {
        self.generated.clear();
        let (generated, backend, local) = (&mut self.generated, &mut self.backend, &mut self.local);
        let mut emit = |from: SocketRef, to: SocketAddr, b: &[u8]| {
            if generated.len() == generated.capacity() {
                let sent = backend.send(generated);
                local.packets_out += sent.sent as u64;
                local.drops.tx_error += sent.failed as u64;
                generated.clear();
            }
            let token = from.token();
            if generated.push(token, to, b) {
                let last = generated.len() - 1;
                generated.get_mut(last).0.tx = Some(Tx { from: token, to });
            }
        };
        self.media.tick(now, &mut self.table, &mut emit);
        if !self.generated.is_empty() {
            let sent = self.backend.send(&self.generated);
            self.local.packets_out += sent.sent as u64;
            self.local.drops.tx_error += sent.failed as u64;
            self.generated.clear();
        }
    }

    fn check_timeouts(&mut self, now: Instant) {
        let timeout = self.cfg.media_timeout;
        let cap = self.table.capacity();
        if timeout.is_zero() || cap == 0 || self.table.is_empty() {
            return;
        }
        for _ in 0..TIMEOUT_SCAN.min(cap) {
            let index = self.timeout_cursor;
            self.timeout_cursor = (self.timeout_cursor + 1) % cap;
            let Some(s) = self.table.by_index_mut(index as u32) else {
                continue;
            };
            if s.timeout_due(now, timeout) {
                // Mark it reported only once the event is queued, so a full
                // ring delays the event instead of losing it.
                if self.events.push(Event::MediaTimeout { id: s.id }).is_ok() {
                    s.set_timeout_reported();
                }
            }
        }
    }

    /// Offer the pending legs' streams to the backend (after their packets
    /// were sent, so the fast path cannot overtake them), replacing or
    /// ending rules that no longer match the session.
    fn offer_offloads(&mut self, now: Instant) {
        for k in 0..self.offload_pending.len() {
            let (index, side) = self.offload_pending[k];
            let Some(s) = self.table.by_index_mut(index) else {
                continue;
            };
            let Some(cur) = self.offloaded.get_mut(index as usize) else {
                continue;
            };
            let cur = &mut cur[usize::from(side == Side::B)];
            let rule = offload_rule(index, side, s);
            if rule == *cur {
                continue;
            }
            match rule {
                Some(r) if self.backend.offload(&r) => *cur = Some(r),
                _ => {
                    if let Some(old) = cur.take() {
                        let c = self.backend.unoffload(old.rx);
                        account_offload(s, &old, c, now, &mut self.local);
                    }
                }
            }
        }
        self.offload_pending.clear();
    }

    /// End the offloaded streams of slot `index`, counting what they
    /// forwarded.
    fn end_offloads(&mut self, index: u32, now: Instant) {
        let Some(pair) = self.offloaded.get_mut(index as usize) else {
            return;
        };
        for cur in pair.iter_mut() {
            if let Some(old) = cur.take() {
                let c = self.backend.unoffload(old.rx);
                if let Some(s) = self.table.by_index_mut(index) {
                    account_offload(s, &old, c, now, &mut self.local);
                }
            }
        }
    }

    /// Read what the offloaded streams forwarded into their sessions.
    fn poll_offloads(&mut self, now: Instant) {
        for (index, pair) in self.offloaded.iter().enumerate() {
            for r in pair.iter().flatten() {
                let c = self.backend.offload_counts(r.rx);
                if c.packets == 0 {
                    continue;
                }
                if let Some(s) = self.table.by_index_mut(index as u32) {
                    account_offload(s, r, c, now, &mut self.local);
                }
            }
        }
    }

    fn publish(&self) {
        let c = &self.counters;
        let l = &self.local;
        c.sessions.store(self.table.len() as u64, Ordering::Relaxed);
        c.packets_in.store(l.packets_in, Ordering::Relaxed);
        c.packets_out.store(l.packets_out, Ordering::Relaxed);
        c.malformed.store(l.drops.malformed, Ordering::Relaxed);
        c.wrong_source
            .store(l.drops.wrong_source, Ordering::Relaxed);
        c.no_remote.store(l.drops.no_remote, Ordering::Relaxed);
        c.held.store(l.drops.held, Ordering::Relaxed);
        c.tx_error.store(l.drops.tx_error, Ordering::Relaxed);
        c.events_dropped.store(l.events_dropped, Ordering::Relaxed);
        c.transcoding.store(l.transcoding, Ordering::Relaxed);
        c.codec_ns.store(l.codec_ns, Ordering::Relaxed);
        c.codec_samples.store(l.codec_samples, Ordering::Relaxed);
        c.offloaded.store(l.offloaded, Ordering::Relaxed);
    }
}

/// Whether RTP received on `side` of `s` is relayed exactly as the
/// backend's fast path does it: no transcoder, no media application on
/// either leg (players, digits, detection), a mode that forwards it.
fn plain_relay(s: &Session, side: Side) -> bool {
    s.transcoder.is_none() && !s.media.active() && s.mode.forwards(side)
}

/// The fast-path rule for RTP received on `side` of the session in slot
/// `index`, if it is a plain relay with a latched source and a destination.
fn offload_rule(index: u32, side: Side, s: &Session) -> Option<Offload> {
    if !plain_relay(s, side) {
        return None;
    }
    let out_side = switch::output_side(s.mode, side);
    let src = s.leg(side).latched_rtp?;
    let to = s.leg(out_side).destination(Kind::Rtp)?;
    let out = &s.leg(out_side).out;
    let in_ssrc = out.source?;
    let sock = |side| SocketRef {
        slot: index,
        side,
        kind: Kind::Rtp,
    };
    Some(Offload {
        rx: sock(side).token(),
        src,
        from: sock(out_side).token(),
        to,
        in_ssrc: in_ssrc.0,
        out_ssrc: out.ssrc.0,
        seq_delta: out.seq_delta,
        ts_delta: out.ts_delta,
    })
}

/// Count packets the backend forwarded for `rule` as if the worker had.
fn account_offload(
    s: &mut Session,
    rule: &Offload,
    c: OffloadCounts,
    now: Instant,
    local: &mut Local,
) {
    if c.packets == 0 {
        return;
    }
    let in_side = SocketRef::from_token(rule.rx).side;
    let out_side = SocketRef::from_token(rule.from).side;
    s.leg_mut(in_side).counters.rtp_in += c.packets;
    s.leg_mut(out_side).counters.sent += c.packets;
    local.packets_in += c.packets;
    local.packets_out += c.packets;
    local.offloaded += c.packets;
    s.last_rtp = Some(now);
    if let Some((seq, ts)) = c.last {
        s.leg_mut(out_side).out.record_relayed(seq, ts, now);
    }
}

/// The four sockets of a slot.
fn sockets_of(slot: u32) -> [SocketRef; 4] {
    [
        SocketRef {
            slot,
            side: Side::A,
            kind: Kind::Rtp,
        },
        SocketRef {
            slot,
            side: Side::A,
            kind: Kind::Rtcp,
        },
        SocketRef {
            slot,
            side: Side::B,
            kind: Kind::Rtp,
        },
        SocketRef {
            slot,
            side: Side::B,
            kind: Kind::Rtcp,
        },
    ]
}

/// Spawn a worker thread pinned to `cfg.core` running `backend` (resolved).
/// Waits until the thread has pinned itself and built its backend, so any
/// failure is returned here rather than lost on the thread.
pub fn spawn(
    cfg: WorkerConfig,
    commands: rtrb::Consumer<Command>,
    events: rtrb::Producer<Event>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    backend: crate::io::BackendSpec,
) -> Result<JoinHandle<()>, Error> {
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), Error>>(1);
    let name = format!("tandem-dp-{}", cfg.index);
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cfg.core }) {
            let _ = ready_tx.send(Err(Error::Config(format!(
                "cannot pin dataplane worker {} to core {}",
                cfg.index, cfg.core
            ))));
            return;
        }
        let backend = match AnyBackend::new(backend, cfg.max_sessions * 4, BATCH) {
            Ok(b) => b,
            Err(e) => {
                let _ = ready_tx.send(Err(Error::Io(e)));
                return;
            }
        };
        let _ = ready_tx.send(Ok(()));
        tracing::info!(
            worker = cfg.index,
            core = cfg.core,
            "dataplane worker running"
        );
        Worker::new(cfg, backend, commands, events, counters).run(&stop);
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(Error::Config(
                "dataplane worker thread died during startup".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SendStats;
    use crate::session::SlotAllocator;
    use std::io;

    /// A backend with scripted receives and a log of sends.
    #[derive(Default)]
    struct Fake {
        registered: Vec<Token>,
        inbox: Vec<(Token, SocketAddr, Vec<u8>)>,
        sent: Vec<(Tx, Vec<u8>)>,
    }

    use crate::io::Token;

    impl Backend for Fake {
        fn register(&mut self, token: Token, _socket: UdpSocket) -> io::Result<()> {
            self.registered.push(token);
            Ok(())
        }
        fn deregister(&mut self, token: Token) {
            self.registered.retain(|t| *t != token);
        }
        fn recv(&mut self, batch: &mut Batch, _timeout: Duration) -> io::Result<usize> {
            batch.clear();
            for (t, peer, bytes) in self.inbox.drain(..) {
                batch.push(t, peer, &bytes);
            }
            Ok(batch.len())
        }
        fn send(&mut self, batch: &Batch) -> SendStats {
            let mut n = 0;
            for i in 0..batch.len() {
                if let Some(tx) = batch.meta(i).tx {
                    self.sent.push((tx, batch.datagram(i).to_vec()));
                    n += 1;
                }
            }
            SendStats { sent: n, failed: 0 }
        }
    }

    fn leg() -> LegSetup {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = rtp.local_addr().unwrap();
        LegSetup {
            rtp: Some(rtp),
            rtcp: Some(rtcp),
            local,
            ssrc: Ssrc(0x5151),
        }
    }

    #[test]
    fn commands_are_bounded_and_packets_switched() {
        let (mut cmd_tx, cmd_rx) = rtrb::RingBuffer::new(256);
        let (ev_tx, mut ev_rx) = rtrb::RingBuffer::new(16);
        let counters = Arc::new(Counters::default());
        let cfg = WorkerConfig {
            index: 0,
            core: 0,
            max_sessions: 4,
            media_timeout: Duration::from_millis(100),
        };
        let mut w = Worker::new(cfg, Fake::default(), cmd_rx, ev_tx, Arc::clone(&counters));
        let clock = MonotonicClock;
        let mut slots = SlotAllocator::new(4);
        let slot = slots.alloc().unwrap();
        cmd_tx
            .push(Command::Create {
                slot,
                id: SessionId(5),
                mode: Mode::Relay,
                a: leg(),
                b: leg(),
            })
            .unwrap();
        let pa: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let pb: SocketAddr = "10.0.0.2:6000".parse().unwrap();
        cmd_tx
            .push(Command::SetRemote {
                slot,
                side: Side::A,
                rtp: pa,
                rtcp: None,
            })
            .unwrap();
        cmd_tx
            .push(Command::SetRemote {
                slot,
                side: Side::B,
                rtp: pb,
                rtcp: None,
            })
            .unwrap();
        // Flood with harmless commands: only MAX_COMMANDS are applied per poll.
        for _ in 0..MAX_COMMANDS {
            cmd_tx
                .push(Command::SetMode {
                    slot,
                    mode: Mode::Relay,
                })
                .unwrap();
        }
        assert!(w.poll(Duration::ZERO, &clock), "more commands pending");
        assert_eq!(w.backend.registered.len(), 4);
        assert!(!w.poll(Duration::ZERO, &clock));

        let mut pkt = [0u8; 20];
        crate::wire::rtp::Repr {
            marker: false,
            payload_type: crate::wire::Pt::PCMU,
            sequence_number: 1,
            timestamp: 160,
            ssrc: Ssrc(1),
        }
        .emit(&mut pkt)
        .unwrap();
        let rx = SocketRef {
            slot: slot.index,
            side: Side::A,
            kind: Kind::Rtp,
        }
        .token();
        w.backend.inbox.push((rx, pa, pkt.to_vec()));
        w.backend
            .inbox
            .push((rx, "10.9.9.9:1".parse().unwrap(), pkt.to_vec()));
        w.backend.inbox.push((rx, pa, vec![0x80, 0]));
        w.poll(Duration::ZERO, &clock);
        let to_b = SocketRef {
            slot: slot.index,
            side: Side::B,
            kind: Kind::Rtp,
        }
        .token();
        assert_eq!(w.backend.sent.len(), 1);
        assert_eq!(w.backend.sent[0].0, Tx { from: to_b, to: pb });
        assert_eq!(
            ev_rx.pop(),
            Ok(Event::FirstPacket {
                id: SessionId(5),
                side: Side::A
            })
        );
        assert_eq!(counters.packets_in.load(Ordering::Relaxed), 3);
        assert_eq!(counters.packets_out.load(Ordering::Relaxed), 1);
        let d = counters.drops();
        assert_eq!((d.wrong_source, d.malformed), (1, 1));
        assert_eq!(counters.sessions.load(Ordering::Relaxed), 1);

        // Arm, stay silent: one MediaTimeout, then nothing more.
        cmd_tx.push(Command::ArmTimeout { slot }).unwrap();
        let deadline = clock.now() + Duration::from_secs(3);
        let ev = loop {
            w.poll(Duration::from_millis(1), &clock);
            if let Ok(ev) = ev_rx.pop() {
                break ev;
            }
            assert!(clock.now() < deadline, "no media timeout");
        };
        assert_eq!(ev, Event::MediaTimeout { id: SessionId(5) });
        w.poll(Duration::ZERO, &clock);
        assert!(ev_rx.pop().is_err());

        // A stale destroy (old generation) is ignored; the real one removes.
        cmd_tx
            .push(Command::Destroy {
                slot: SlotId {
                    generation: 9,
                    ..slot
                },
            })
            .unwrap();
        w.poll(Duration::ZERO, &clock);
        assert_eq!(w.backend.registered.len(), 4);
        cmd_tx.push(Command::Destroy { slot }).unwrap();
        w.poll(Duration::ZERO, &clock);
        assert!(w.backend.registered.is_empty());
        assert_eq!(counters.sessions.load(Ordering::Relaxed), 0);
    }
}
