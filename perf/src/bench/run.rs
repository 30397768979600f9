//! The edge of the bench: sockets, the clock, the call scheduler of each mode, and the media
//! thread.
//!
//! Signalling runs on a current-thread tokio runtime: one receive task per local SIP socket
//! feeds a channel; the main loop feeds the [`Engine`], places and hangs up calls on schedule,
//! samples once a second and sleeps until the next deadline. Media runs on its own thread with
//! one UDP socket for every stream (streams are told apart by the gateway's source address):
//! every 20 ms it sends one packet per active stream and in between it receives and measures.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::media::{self, RxStats, TxStream};
use super::report::{
    CpuSummary, MediaSummary, Percentiles, RampStep, RampSummary, Report, Sample, StreamResult,
};
use super::ua::{CallId, Engine, Event, Failure, LegId, UaConfig};
use super::{cpu, quality, BenchError, Mode, Options};

/// The clock of the edge.
#[expect(
    clippy::disallowed_methods,
    reason = "the bench driver is the I/O edge: it owns the clock the sans-IO engine is fed"
)]
fn clock() -> Instant {
    Instant::now()
}

/// Runs a benchmark to completion and returns its report.
pub fn run(opts: Options) -> Result<Report, BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Io {
            what: "tokio runtime".into(),
            source: e,
        })?;
    rt.block_on(run_async(opts))
}

/// Counters the media thread shares with the main loop (for the per-second series).
#[derive(Debug, Default)]
struct MediaCounters {
    sent: AtomicU64,
    received: AtomicU64,
    expected: AtomicU64,
    unmatched: AtomicU64,
}

enum MediaCmd {
    Add {
        remote: SocketAddr,
        id: u32,
        leg: &'static str,
        call: u64,
        dtmf: String,
    },
    /// Ends stream `id` at `remote` (if the gateway reused the address for a newer stream,
    /// that one stays).
    Remove {
        remote: SocketAddr,
        id: u32,
    },
    Stop,
}

/// What the media thread hands back at the end.
struct MediaResult {
    streams: Vec<StreamResult>,
    /// One-way delay histogram, 100 µs buckets.
    delay_hist: Vec<u64>,
    dtmf_events: u64,
}

const DELAY_BUCKET_US: u64 = 100;
const DELAY_BUCKETS: usize = 20_000;
/// Per-stream results kept in the report at most.
const MAX_STREAM_RESULTS: usize = 20_000;

fn local_ips(opts: &Options) -> Result<Vec<IpAddr>, BenchError> {
    let n = if opts.sources > 0 {
        opts.sources
    } else {
        // Keep each source under ~15 requests/s (a call is about 5 requests), so a
        // gateway's per-source rate limit (Tandem: 20/s by default) sees many phones.
        let peak = match opts.mode {
            Mode::Ramp => 250.0,
            Mode::Hold => opts.rate,
            Mode::Burst => opts.calls as f64,
        };
        ((peak * 5.0 / 15.0).ceil() as usize)
            .max(opts.users.len())
            .max(1)
    }
    .min(250);
    if opts.target.ip().is_loopback() {
        if opts.target.ip().is_ipv4() {
            return Ok((0..n)
                .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + k as u8)))
                .collect());
        }
        return Ok(vec![opts.target.ip()]);
    }
    match opts.local_ip {
        Some(ip) => Ok(vec![ip]),
        None => Err(BenchError::Options(format!(
            "target {} is not loopback: give --allow-remote and --local-ip",
            opts.target
        ))),
    }
}

struct CallInfo {
    /// The gateway's media address, the stream id and the media thread.
    caller_remote: Option<(SocketAddr, u32, usize)>,
    answered_at: Option<Instant>,
}

async fn run_async(opts: Options) -> Result<Report, BenchError> {
    if opts.rate <= 0.0 || !opts.rate.is_finite() {
        return Err(BenchError::Options("--rate must be > 0".into()));
    }
    if opts.calls == 0 {
        return Err(BenchError::Options("--calls must be > 0".into()));
    }
    if !opts.trunk && opts.users.is_empty() {
        return Err(BenchError::Options(
            "no users (give --users or --trunk)".into(),
        ));
    }
    let ips = local_ips(&opts)?;
    let mut socks = Vec::new();
    let mut locals = Vec::new();
    for ip in &ips {
        let s = UdpSocket::bind(SocketAddr::new(*ip, 0))
            .await
            .map_err(|e| BenchError::Io {
                what: format!("bind SIP socket on {ip}"),
                source: e,
            })?;
        locals.push(s.local_addr().map_err(|e| BenchError::Io {
            what: "SIP socket address".into(),
            source: e,
        })?);
        socks.push(Arc::new(s));
    }
    let media_ip = if opts.target.ip().is_loopback() {
        opts.target.ip()
    } else {
        ips[0]
    };
    // One RTP socket and thread per slice of the streams: a single thread doing a syscall
    // per packet falls behind near 900 calls on a loaded 2-core machine, its receive queue
    // fills and the kernel drops (UdpRcvbufErrors on the bench's socket, measured).
    let nmedia = media_threads(&opts);
    let mut msocks = Vec::with_capacity(nmedia);
    let mut media_addrs = Vec::with_capacity(nmedia);
    for _ in 0..nmedia {
        let s = media_socket(SocketAddr::new(media_ip, 0)).map_err(|e| BenchError::Io {
            what: format!("bind RTP socket on {media_ip}"),
            source: e,
        })?;
        media_addrs.push(s.local_addr().map_err(|e| BenchError::Io {
            what: "RTP socket address".into(),
            source: e,
        })?);
        msocks.push(s);
    }

    let (tx_in, mut rx_in) = tokio::sync::mpsc::channel::<(usize, SocketAddr, Vec<u8>)>(65_536);
    for (i, s) in socks.iter().enumerate() {
        let s = s.clone();
        let tx = tx_in.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                if tx.send((i, from, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }

    let counters = Arc::new(MediaCounters::default());
    let mut media = MediaThreads::default();
    // A stream outliving its call (a BYE that never came) would feed a recycled gateway
    // port: bound every stream's life.
    let max_life = opts.duration + opts.setup_timeout + Duration::from_secs(5);
    for (k, msock) in msocks.into_iter().enumerate() {
        let counters = counters.clone();
        let clip = media::clip(opts.codec);
        let pt = opts.codec.pt();
        let (mtx, mrx) = mpsc::channel::<MediaCmd>();
        let h = std::thread::Builder::new()
            .name(format!("bench-media{k}"))
            .spawn(move || media_loop(msock, mrx, counters, clip, pt, max_life))
            .map_err(|e| BenchError::Io {
                what: "media thread".into(),
                source: e,
            })?;
        media.tx.push(mtx);
        media.threads.push(h);
    }

    let mut engine = Engine::new(UaConfig {
        target: opts.target,
        locals: locals.clone(),
        users: if opts.trunk {
            Vec::new()
        } else {
            opts.users.clone()
        },
        trunk: opts.trunk,
        codec: opts.codec,
        dtmf: !opts.dtmf.is_empty(),
        media: media_addrs,
        setup_timeout: opts.setup_timeout,
    });

    let t0 = clock();
    // Registration (bounded).
    let mut reg_ok = 0usize;
    let mut reg_failed = Vec::new();
    if !opts.trunk {
        engine.register_all(t0);
        let deadline = t0 + Duration::from_secs(10);
        while reg_ok + reg_failed.len() < opts.users.len() && clock() < deadline {
            flush(&mut engine, &socks).await;
            while let Some(ev) = engine.poll_event() {
                match ev {
                    Event::Registered { .. } => reg_ok += 1,
                    Event::RegisterFailed { user, failure } => {
                        reg_failed.push(format!("{}: {failure}", opts.users[user].name))
                    }
                    _ => {}
                }
            }
            let wake = engine.poll_timeout().unwrap_or(deadline).min(deadline);
            tokio::select! {
                Some((i, from, d)) = rx_in.recv() => engine.handle_datagram(i, from, &d, clock()),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            engine.handle_timeout(clock());
        }
        if reg_ok < opts.users.len() {
            media.stop();
            let why = if reg_failed.is_empty() {
                format!("no answer from {} within 10 s", opts.target)
            } else {
                reg_failed.join(", ")
            };
            return Err(BenchError::Register(why));
        }
    }

    // The load phase.
    let start = clock();
    let mut st = State::new(&opts, start);
    let pid_sample = opts.pid.map(cpu::sample);
    let mut last_cpu = pid_sample.clone().unwrap_or_default();
    let mut cpu_samples: Vec<Vec<f64>> = Vec::new();
    let mut last_sample_at = start;
    let mut last_counts = (0u64, 0u64, 0u64, 0u64); // attempts, failures, expected, received
    let nusers = opts.users.len().max(1);
    let mut calls: HashMap<u64, CallInfo> = HashMap::new();
    let mut legs: HashMap<u64, (SocketAddr, u32, usize)> = HashMap::new();
    let mut hangups: BinaryHeap<std::cmp::Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut next_local = 0usize;
    let mut next_stream = 0u32;
    let stop_at =
        start + opts.max_time + opts.duration + opts.setup_timeout + Duration::from_secs(5);
    let interactive = opts.progress && std::io::stderr().is_terminal();

    loop {
        let now = clock();
        // Place calls that are due.
        while let Some(()) = st.due(now, engine.active_calls()) {
            let i = st.attempts;
            let (user, dial) = match (&opts.dial, opts.trunk) {
                (Some(d), true) => (None, d.clone()),
                (Some(d), false) => (Some(i as usize % nusers), d.clone()),
                (None, _) => {
                    let caller = (2 * i as usize) % nusers;
                    let callee = (2 * i as usize + 1) % nusers;
                    (Some(caller), opts.users[callee].name.clone())
                }
            };
            let id = engine.place_call(user, &dial, next_local, now);
            next_local = (next_local + 1) % locals.len();
            calls.insert(
                id.0,
                CallInfo {
                    caller_remote: None,
                    answered_at: None,
                },
            );
            st.placed(now);
        }
        // Hang up calls whose time has come (all of them once the run is over).
        while let Some(std::cmp::Reverse((at, id))) = hangups.peek().copied() {
            if at > now && !st.hang_up_early {
                break;
            }
            hangups.pop();
            if let Some(ci) = calls.get_mut(&id) {
                if let Some(r) = ci.caller_remote.take() {
                    media.remove(r);
                }
            }
            engine.hang_up(CallId(id), now);
        }
        flush(&mut engine, &socks).await;
        while let Some(ev) = engine.poll_event() {
            match ev {
                Event::Answered {
                    call,
                    setup,
                    remote_media,
                } => {
                    st.answered(setup);
                    let slot = engine.media_slot(call.0);
                    if let Some(ci) = calls.get_mut(&call.0) {
                        ci.caller_remote = Some((remote_media, next_stream, slot));
                        ci.answered_at = Some(now);
                    }
                    if opts.media {
                        media.add(
                            slot,
                            MediaCmd::Add {
                                remote: remote_media,
                                id: next_stream,
                                leg: "caller",
                                call: call.0,
                                dtmf: opts.dtmf.clone(),
                            },
                        );
                    }
                    next_stream += 1;
                    hangups.push(std::cmp::Reverse((now + opts.duration, call.0)));
                }
                Event::Failed { call, failure } => {
                    st.failed(failure);
                    if let Some(ci) = calls.remove(&call.0) {
                        if ci.answered_at.is_some() {
                            st.up = st.up.saturating_sub(1);
                        }
                        if let Some(r) = ci.caller_remote {
                            media.remove(r);
                        }
                    }
                }
                Event::Ended { call, by_gateway } => {
                    if let Some(ci) = calls.remove(&call.0) {
                        if let Some(r) = ci.caller_remote {
                            media.remove(r);
                        }
                        if ci.answered_at.is_some() {
                            st.up = st.up.saturating_sub(1);
                            st.completed += 1;
                            if by_gateway {
                                st.dropped += 1;
                            }
                        }
                    }
                }
                Event::Incoming {
                    leg, remote_media, ..
                } => {
                    let slot = engine.media_slot(super::ua::callee_session(leg));
                    legs.insert(leg.0, (remote_media, next_stream, slot));
                    if opts.media {
                        media.add(
                            slot,
                            MediaCmd::Add {
                                remote: remote_media,
                                id: next_stream,
                                leg: "callee",
                                call: leg.0,
                                dtmf: String::new(),
                            },
                        );
                    }
                    next_stream += 1;
                }
                Event::IncomingEnded { leg } => {
                    if let Some(r) = legs.remove(&leg.0) {
                        media.remove(r);
                    }
                    let _ = LegId(leg.0);
                }
                Event::Registered { .. } | Event::RegisterFailed { .. } => {}
            }
        }
        // Once a second: the time series, the ramp decision, the progress line.
        if now >= last_sample_at + Duration::from_secs(1) {
            let secs = now.duration_since(last_sample_at).as_secs_f64();
            let cpu_now = opts.pid.map(cpu::sample).unwrap_or_default();
            let per_core = if opts.pid.is_some() {
                cpu::per_core(&last_cpu, &cpu_now, secs, 100.0)
            } else {
                Vec::new()
            };
            last_cpu = cpu_now;
            let exp = counters.expected.load(Ordering::Relaxed);
            let rcv = counters.received.load(Ordering::Relaxed);
            let d_exp = exp - last_counts.2;
            let d_rcv = rcv - last_counts.3;
            let loss_pct = if d_exp > 0 {
                (d_exp.saturating_sub(d_rcv)) as f64 * 100.0 / d_exp as f64
            } else {
                0.0
            };
            let sample = Sample {
                t_s: now.duration_since(start).as_secs_f64(),
                concurrent: st.up,
                cps: (st.attempts - last_counts.0) as f64 / secs,
                failures: st.failures - last_counts.1,
                loss_pct,
                cpu_pct: per_core.iter().sum(),
                cpu_per_core_pct: per_core.clone(),
            };
            if opts.pid.is_some() {
                cpu_samples.push(per_core);
            }
            last_counts = (st.attempts, st.failures, exp, rcv);
            last_sample_at = now;
            st.on_sample(&sample, &opts, now);
            if opts.progress {
                let line = format!(
                    "t={:5.0}s attempts {:6} up {:5} ended {:6} fail {:4} cps {:6.1} loss {:5.2}% \
                     cpu {:5.1}%{}",
                    sample.t_s,
                    st.attempts,
                    st.up,
                    st.completed,
                    st.failures,
                    sample.cps,
                    sample.loss_pct,
                    sample.cpu_pct,
                    st.ramp_note()
                );
                let mut e = std::io::stderr();
                if interactive {
                    let _ = write!(e, "\r{line}\x1b[K");
                } else {
                    let _ = writeln!(e, "{line}");
                }
                let _ = e.flush();
            }
            st.series.push(sample);
        }
        if st.finished_placing && calls.is_empty() && engine.active_calls() == 0 {
            break;
        }
        if now >= stop_at {
            break;
        }
        // Sleep until the next thing to do.
        let mut wake = last_sample_at + Duration::from_secs(1);
        if let Some(t) = engine.poll_timeout() {
            wake = wake.min(t);
        }
        if let Some(t) = st.next_due() {
            wake = wake.min(t);
        }
        if let Some(std::cmp::Reverse((t, _))) = hangups.peek() {
            wake = wake.min(*t);
        }
        let wake = wake.max(now);
        tokio::select! {
            Some((i, from, d)) = rx_in.recv() => {
                let t = clock();
                engine.handle_datagram(i, from, &d, t);
                // Drain what else is queued before looping (bounded).
                for _ in 0..256 {
                    match rx_in.try_recv() {
                        Ok((i, from, d)) => engine.handle_datagram(i, from, &d, t),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        engine.handle_timeout(clock());
    }
    if interactive {
        eprintln!();
    }
    if !opts.trunk {
        // Leave no binding behind (bounded: one second).
        engine.unregister_all(clock());
        let until = clock() + Duration::from_secs(1);
        while engine.poll_timeout().is_some() && clock() < until {
            flush(&mut engine, &socks).await;
            let wake = engine.poll_timeout().unwrap_or(until).min(until);
            tokio::select! {
                Some((i, from, d)) = rx_in.recv() => engine.handle_datagram(i, from, &d, clock()),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            engine.handle_timeout(clock());
            if engine.registrations_pending() == 0 {
                break;
            }
        }
    }
    let elapsed = clock().duration_since(start);
    let unfinished = calls.len() as u64;
    let mres = media.stop();
    Ok(st.into_report(
        &opts,
        elapsed,
        reg_ok,
        unfinished,
        mres,
        &counters,
        cpu_samples,
        locals.len(),
    ))
}

/// The shared RTP socket, with buffers large enough for a 20 ms round of every stream (the
/// kernel caps them at net.core.rmem_max / wmem_max; raise those for thousands of calls).
fn media_socket(addr: SocketAddr) -> std::io::Result<StdUdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = s.set_recv_buffer_size(16 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Sends everything the engine queued.
async fn flush(engine: &mut Engine, socks: &[Arc<UdpSocket>]) {
    while let Some(t) = engine.poll_transmit() {
        let Some(s) = socks.get(t.local) else {
            continue;
        };
        match s.try_send_to(&t.data, t.to) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = s.send_to(&t.data, t.to).await;
            }
            Err(_) => {}
        }
    }
}

/// The scheduler and tallies of one run.
struct State {
    mode: Mode,
    start: Instant,
    attempts: u64,
    next_at: Instant,
    finished_placing: bool,
    hang_up_early: bool,
    up: u64,
    max_up: u64,
    completed: u64,
    dropped: u64,
    failures: u64,
    by_code: BTreeMap<String, u64>,
    setups_ms: Vec<f64>,
    series: Vec<Sample>,
    last_attempt_at: Instant,
    // Ramp.
    step: u64,
    step_started: Instant,
    step_attempts: u64,
    step_failures: u64,
    step_max_up: u64,
    step_setups: Vec<f64>,
    step_loss: (f64, u64),
    steps: Vec<RampStep>,
    stopped_by: String,
    rate: f64,
    calls: usize,
    max_time: Duration,
}

impl State {
    fn new(opts: &Options, start: Instant) -> State {
        State {
            mode: opts.mode,
            start,
            attempts: 0,
            next_at: start,
            finished_placing: false,
            hang_up_early: false,
            up: 0,
            max_up: 0,
            completed: 0,
            dropped: 0,
            failures: 0,
            by_code: BTreeMap::new(),
            setups_ms: Vec::new(),
            series: Vec::new(),
            last_attempt_at: start,
            step: 0,
            step_started: start,
            step_attempts: 0,
            step_failures: 0,
            step_max_up: 0,
            step_setups: Vec::new(),
            step_loss: (0.0, 0),
            steps: Vec::new(),
            stopped_by: String::new(),
            rate: opts.rate,
            calls: opts.calls,
            max_time: opts.max_time,
        }
    }

    fn current_rate(&self) -> f64 {
        match self.mode {
            Mode::Ramp => self.rate * (self.step + 1) as f64,
            Mode::Hold => self.rate,
            Mode::Burst => 1e6,
        }
    }

    /// Whether a call should be placed now.
    fn due(&mut self, now: Instant, active: usize) -> Option<()> {
        if self.finished_placing {
            return None;
        }
        if now >= self.start + self.max_time {
            self.finish("max-time");
            return None;
        }
        match self.mode {
            Mode::Hold | Mode::Burst => {
                if self.attempts >= self.calls as u64 {
                    self.finish("all calls placed");
                    return None;
                }
            }
            Mode::Ramp => {
                if active >= self.calls {
                    self.finish("concurrency cap (--calls) reached");
                    return None;
                }
            }
        }
        if now < self.next_at {
            return None;
        }
        if self.mode == Mode::Hold && active >= self.calls {
            return None;
        }
        Some(())
    }

    fn next_due(&self) -> Option<Instant> {
        (!self.finished_placing).then_some(self.next_at)
    }

    fn placed(&mut self, now: Instant) {
        self.attempts += 1;
        self.step_attempts += 1;
        self.last_attempt_at = now;
        let interval = Duration::from_secs_f64(1.0 / self.current_rate());
        // Do not build a backlog when the loop falls behind: at most one interval late.
        self.next_at = (self.next_at + interval).max(now.checked_sub(interval).unwrap_or(now));
    }

    fn finish(&mut self, why: &str) {
        if !self.finished_placing {
            self.finished_placing = true;
            if self.stopped_by.is_empty() {
                self.stopped_by = why.to_string();
            }
        }
    }

    fn answered(&mut self, setup: Duration) {
        let ms = setup.as_secs_f64() * 1000.0;
        self.setups_ms.push(ms);
        self.step_setups.push(ms);
        self.up += 1;
        self.max_up = self.max_up.max(self.up);
        self.step_max_up = self.step_max_up.max(self.up);
    }

    fn failed(&mut self, f: Failure) {
        self.failures += 1;
        self.step_failures += 1;
        *self.by_code.entry(f.to_string()).or_insert(0) += 1;
    }

    fn ramp_note(&self) -> String {
        if self.mode == Mode::Ramp && !self.finished_placing {
            format!(" step {} rate {:.0}/s", self.step + 1, self.current_rate())
        } else {
            String::new()
        }
    }

    fn on_sample(&mut self, s: &Sample, opts: &Options, now: Instant) {
        self.step_loss.0 += s.loss_pct;
        self.step_loss.1 += 1;
        if self.mode != Mode::Ramp || self.finished_placing {
            return;
        }
        if now < self.step_started + opts.step {
            return;
        }
        let fail_pct = if self.step_attempts > 0 {
            self.step_failures as f64 * 100.0 / self.step_attempts as f64
        } else {
            0.0
        };
        let loss = if self.step_loss.1 > 0 {
            self.step_loss.0 / self.step_loss.1 as f64
        } else {
            0.0
        };
        let p99 = quality::quantile(&mut self.step_setups, 0.99).unwrap_or(0.0);
        let secs = now.duration_since(self.step_started).as_secs_f64();
        let step = RampStep {
            step: self.step + 1,
            rate: self.current_rate(),
            achieved_cps: self.step_attempts as f64 / secs,
            attempts: self.step_attempts,
            failures: self.step_failures,
            failure_pct: fail_pct,
            loss_pct: loss,
            setup_p99_ms: p99,
            max_concurrent: self.step_max_up,
            passed: fail_pct <= opts.failure_budget_pct
                && loss <= opts.loss_budget_pct
                && p99 <= opts.setup_budget_ms
                // A step that could not reach its rate is saturated: the bench or the gateway
                // cannot go faster.
                && self.step_attempts as f64 / secs >= 0.9 * self.current_rate(),
        };
        let passed = step.passed;
        let why = format!(
            "budget broken at step {} (rate {:.0}/s: failures {:.2}%, loss {:.2}%, setup p99 \
             {:.0} ms, achieved {:.1} cps)",
            step.step,
            step.rate,
            step.failure_pct,
            step.loss_pct,
            step.setup_p99_ms,
            step.achieved_cps
        );
        self.steps.push(step);
        self.step += 1;
        self.step_started = now;
        self.step_attempts = 0;
        self.step_failures = 0;
        self.step_max_up = self.up;
        self.step_setups.clear();
        self.step_loss = (0.0, 0);
        if !passed {
            self.finish(&why);
            self.hang_up_early = true;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn into_report(
        mut self,
        opts: &Options,
        elapsed: Duration,
        reg_ok: usize,
        unfinished: u64,
        m: MediaResult,
        counters: &MediaCounters,
        cpu_samples: Vec<Vec<f64>>,
        sources: usize,
    ) -> Report {
        let placing_secs = self
            .last_attempt_at
            .duration_since(self.start)
            .as_secs_f64()
            .max(1e-3);
        let setup_ms = Percentiles {
            count: self.setups_ms.len() as u64,
            p50: quality::quantile(&mut self.setups_ms, 0.5).unwrap_or(0.0),
            p99: quality::quantile(&mut self.setups_ms, 0.99).unwrap_or(0.0),
            max: quality::quantile(&mut self.setups_ms, 1.0).unwrap_or(0.0),
        };
        let sent = counters.sent.load(Ordering::Relaxed);
        let expected: u64 = m.streams.iter().map(|s| s.expected).sum();
        let lost: u64 = m.streams.iter().map(|s| s.lost).sum();
        let loss_pct = if expected > 0 {
            lost as f64 * 100.0 / expected as f64
        } else {
            0.0
        };
        let jit: Vec<f64> = m.streams.iter().map(|s| s.jitter_ms).collect();
        let hq = |q: f64| hist_quantile(&m.delay_hist, q);
        let delay_p50 = hq(0.5);
        let media = MediaSummary {
            streams: m.streams.len() as u64,
            packets_sent: sent,
            packets_received: counters.received.load(Ordering::Relaxed),
            expected,
            lost,
            loss_pct,
            jitter_ms_mean: if jit.is_empty() {
                0.0
            } else {
                jit.iter().sum::<f64>() / jit.len() as f64
            },
            jitter_ms_max: jit.iter().copied().fold(0.0, f64::max),
            delay_ms_p50: delay_p50,
            delay_ms_p99: hq(0.99),
            delay_ms_max: m.streams.iter().map(|s| s.delay_ms_max).fold(0.0, f64::max),
            unmatched_packets: counters.unmatched.load(Ordering::Relaxed),
            misrouted_packets: m.streams.iter().map(|s| s.misrouted).sum(),
            dtmf_events_received: m.dtmf_events,
        };
        let mean_jitter = media.jitter_ms_mean;
        let quality = quality::estimate(opts.codec, delay_p50, mean_jitter, loss_pct);
        let cpu = opts.pid.map(|pid| {
            let n = cpu_samples.iter().map(Vec::len).max().unwrap_or(0);
            let mut mean = vec![0.0; n];
            let mut peak = vec![0.0f64; n];
            for s in &cpu_samples {
                for (i, v) in s.iter().enumerate() {
                    mean[i] += v / cpu_samples.len() as f64;
                    peak[i] = peak[i].max(*v);
                }
            }
            CpuSummary {
                pid,
                total_mean_pct: mean.iter().sum(),
                per_core_mean_pct: mean,
                per_core_peak_pct: peak,
            }
        });
        let ramp = (self.mode == Mode::Ramp).then(|| {
            let best = self.steps.iter().take_while(|s| s.passed).last();
            RampSummary {
                failure_budget_pct: opts.failure_budget_pct,
                loss_budget_pct: opts.loss_budget_pct,
                setup_budget_ms: opts.setup_budget_ms,
                step_s: opts.step.as_secs_f64(),
                max_concurrent_ok: best.map_or(0, |s| s.max_concurrent),
                max_cps_ok: best.map_or(0.0, |s| s.achieved_cps),
                steps: self.steps.clone(),
            }
        });
        let answered = self.setups_ms.len() as u64;
        Report {
            mode: opts.mode,
            target: opts.target.to_string(),
            codec: opts.codec,
            users: opts.users.iter().map(|u| u.name.clone()).collect(),
            trunk: opts.trunk,
            dial: opts.dial.clone(),
            calls: opts.calls,
            rate: opts.rate,
            duration_s: opts.duration.as_secs_f64(),
            sip_sources: sources,
            registered: reg_ok,
            elapsed_s: elapsed.as_secs_f64(),
            attempts: self.attempts,
            answered,
            failed: self.failures,
            failures_by_code: self.by_code,
            completed: self.completed,
            dropped_by_gateway: self.dropped,
            unfinished,
            attempts_per_s: self.attempts as f64 / placing_secs,
            setup_ms,
            max_concurrent: self.max_up,
            media,
            quality,
            cpu,
            ramp,
            stopped_by: self.stopped_by,
            series: self.series,
            streams: m.streams,
        }
    }
}

fn hist_quantile(h: &[u64], q: f64) -> f64 {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, c) in h.iter().enumerate() {
        acc += c;
        if acc >= want {
            return (i as u64 * DELAY_BUCKET_US + DELAY_BUCKET_US / 2) as f64 / 1000.0;
        }
    }
    (h.len() as u64 * DELAY_BUCKET_US) as f64 / 1000.0
}

struct Stream {
    remote: SocketAddr,
    leg: &'static str,
    call: u64,
    tx: TxStream,
    rx: RxStats,
    next_us: u64,
    started_us: u64,
}

fn finish_stream(s: Stream) -> StreamResult {
    StreamResult {
        id: s.tx.id,
        leg: s.leg.to_string(),
        call: s.call,
        remote: s.remote.to_string(),
        sent: s.tx.sent() as u64,
        received: s.rx.received,
        expected: s.rx.expected(),
        lost: s.rx.lost(),
        jitter_ms: s.rx.jitter_ms(),
        delay_ms_mean: s.rx.delay_mean_ms().unwrap_or(0.0),
        delay_ms_max: s.rx.delay_max_us as f64 / 1000.0,
        dtmf_events: s.rx.dtmf_events,
        misrouted: s.rx.misrouted,
    }
}

/// Calls one media thread carries: a thread sends and receives 2 x 50 packets/s per call
/// with batched syscalls; a few hundred calls per thread keep each well under a core even
/// when the machine is shared.
const CALLS_PER_MEDIA_THREAD: usize = 250;

/// Media threads for a run: `--media-threads`, or one per [`CALLS_PER_MEDIA_THREAD`] calls of
/// the concurrency target (1 to 8).
fn media_threads(opts: &Options) -> usize {
    if opts.media_threads > 0 {
        return opts.media_threads.min(64);
    }
    if !opts.media {
        return 1;
    }
    opts.calls.div_ceil(CALLS_PER_MEDIA_THREAD).clamp(1, 8)
}

/// The media threads and the channel to each.
#[derive(Default)]
struct MediaThreads {
    tx: Vec<mpsc::Sender<MediaCmd>>,
    threads: Vec<std::thread::JoinHandle<MediaResult>>,
}

impl MediaThreads {
    fn add(&self, slot: usize, cmd: MediaCmd) {
        if let Some(t) = self.tx.get(slot) {
            let _ = t.send(cmd);
        }
    }

    fn remove(&self, (remote, id, slot): (SocketAddr, u32, usize)) {
        self.add(slot, MediaCmd::Remove { remote, id });
    }

    /// Stops every thread and merges their results.
    fn stop(self) -> MediaResult {
        for t in &self.tx {
            let _ = t.send(MediaCmd::Stop);
        }
        let mut out = MediaResult {
            streams: Vec::new(),
            delay_hist: vec![0; DELAY_BUCKETS],
            dtmf_events: 0,
        };
        for h in self.threads {
            let Ok(r) = h.join() else { continue };
            let room = MAX_STREAM_RESULTS.saturating_sub(out.streams.len());
            out.streams.extend(r.streams.into_iter().take(room));
            for (a, b) in out.delay_hist.iter_mut().zip(&r.delay_hist) {
                *a += b;
            }
            out.dtmf_events += r.dtmf_events;
        }
        out.streams.sort_by_key(|s| s.id);
        out
    }
}

/// Datagrams per `sendmmsg`/`recvmmsg`.
const MEDIA_BATCH: usize = 64;

/// One media thread: sends every 20 ms for each of its streams and measures what comes back,
/// with `sendmmsg`/`recvmmsg` batches (dataplane's socket layer) on its own socket.
fn media_loop(
    sock: StdUdpSocket,
    rx: mpsc::Receiver<MediaCmd>,
    counters: Arc<MediaCounters>,
    clip: Vec<Vec<u8>>,
    pt: u8,
    max_life: Duration,
) -> MediaResult {
    use dataplane::io::sys::{Epoll, Mmsg};
    use dataplane::io::{Batch, Token, Tx};
    use std::os::fd::AsFd;

    let max_life_us = max_life.as_micros() as u64;
    let epoch = clock();
    let _ = sock.set_nonblocking(true);
    // Readiness wait; without it (cannot happen on Linux) the thread naps 200 us instead.
    let mut epoll = Epoll::new(1)
        .ok()
        .filter(|e| e.add(sock.as_fd(), 0).is_ok());
    let mut mmsg = Mmsg::new(MEDIA_BATCH);
    let mut out = Batch::new(MEDIA_BATCH);
    let mut inb = Batch::new(MEDIA_BATCH);
    let mut idx: Vec<u16> = Vec::with_capacity(MEDIA_BATCH);
    let mut streams: Vec<Stream> = Vec::new();
    let mut index: HashMap<SocketAddr, usize> = HashMap::new();
    let mut results = Vec::new();
    let mut hist = vec![0u64; DELAY_BUCKETS];
    let mut dtmf_events = 0u64;
    let mut buf = Vec::with_capacity(256);
    let mut stopping = false;
    let step_us = media::PTIME_MS * 1000;
    let keep = |s: Stream, results: &mut Vec<StreamResult>, dtmf: &mut u64| {
        *dtmf += s.rx.dtmf_events as u64;
        if results.len() < MAX_STREAM_RESULTS {
            results.push(finish_stream(s));
        }
    };
    // Sends what `out` holds (one sendmmsg per batch; a failed datagram is skipped).
    let flush = |out: &mut Batch, idx: &mut Vec<u16>, mmsg: &mut Mmsg| {
        idx.clear();
        idx.extend(0..out.len() as u16);
        let mut at = 0;
        while at < idx.len() {
            match mmsg.send(sock.as_fd(), out, &idx[at..]) {
                Ok(n) if n > 0 => {
                    counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                    at += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Send buffer full: wait for room rather than drop our own packets.
                    std::thread::sleep(Duration::from_micros(200));
                }
                _ => at += 1,
            }
        }
        out.clear();
    };
    loop {
        loop {
            match rx.try_recv() {
                Ok(MediaCmd::Add {
                    remote,
                    id,
                    leg,
                    call,
                    dtmf,
                }) => {
                    let now_us = epoch.elapsed().as_micros() as u64;
                    if let Some(&i) = index.get(&remote) {
                        // The gateway reused a port for a new leg: close the old stream.
                        let old = streams.swap_remove(i);
                        if let Some(moved) = streams.get(i) {
                            index.insert(moved.remote, i);
                        }
                        index.remove(&remote);
                        keep(old, &mut results, &mut dtmf_events);
                    }
                    index.insert(remote, streams.len());
                    streams.push(Stream {
                        remote,
                        leg,
                        call,
                        tx: TxStream::new(id, pt, &dtmf),
                        rx: RxStats::default(),
                        next_us: now_us,
                        started_us: now_us,
                    });
                }
                Ok(MediaCmd::Remove { remote, id }) => {
                    let current = index.get(&remote).is_some_and(|&i| streams[i].tx.id == id);
                    let found = if current { index.remove(&remote) } else { None };
                    if let Some(i) = found {
                        let old = streams.swap_remove(i);
                        if let Some(moved) = streams.get(i) {
                            index.insert(moved.remote, i);
                        }
                        keep(old, &mut results, &mut dtmf_events);
                    }
                }
                Ok(MediaCmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                    stopping = true;
                    break;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if stopping {
            for s in streams.drain(..) {
                keep(s, &mut results, &mut dtmf_events);
            }
            break;
        }
        let now_us = epoch.elapsed().as_micros() as u64;
        let mut i = 0;
        while i < streams.len() {
            if now_us.saturating_sub(streams[i].started_us) > max_life_us {
                let old = streams.swap_remove(i);
                index.remove(&old.remote);
                if let Some(moved) = streams.get(i) {
                    index.insert(moved.remote, i);
                }
                keep(old, &mut results, &mut dtmf_events);
            } else {
                i += 1;
            }
        }
        let mut next_due = u64::MAX;
        for s in streams.iter_mut() {
            while s.next_us <= now_us {
                if s.next_us + 10 * step_us < now_us {
                    // Far behind (the machine stalled us): skip rather than burst.
                    s.next_us = now_us;
                }
                s.tx.next_packet(&clip, now_us, &mut buf);
                if out.push(Token(0), s.remote, &buf) {
                    let n = out.len() - 1;
                    out.get_mut(n).0.tx = Some(Tx {
                        from: Token(0),
                        to: s.remote,
                    });
                }
                if out.len() == out.capacity() {
                    flush(&mut out, &mut idx, &mut mmsg);
                }
                s.next_us += step_us;
            }
            next_due = next_due.min(s.next_us);
        }
        if !out.is_empty() {
            flush(&mut out, &mut idx, &mut mmsg);
        }
        // Receive until the socket is empty or a send is due (bounded per turn).
        for _ in 0..64 {
            inb.clear();
            let got = mmsg
                .recv(sock.as_fd(), &mut inb, Token(0), MEDIA_BATCH)
                .unwrap_or(0);
            let arrival = epoch.elapsed().as_micros() as u64;
            for k in 0..got {
                let Some(p) = media::parse(inb.datagram(k)) else {
                    continue;
                };
                match index.get(&inb.meta(k).peer) {
                    Some(&i) => {
                        let (adv, delay) = streams[i].rx.record(&p, arrival);
                        counters.received.fetch_add(1, Ordering::Relaxed);
                        counters.expected.fetch_add(adv, Ordering::Relaxed);
                        if let Some(d) = delay {
                            let b = ((d / DELAY_BUCKET_US) as usize).min(DELAY_BUCKETS - 1);
                            hist[b] += 1;
                        }
                    }
                    None => {
                        counters.unmatched.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if got < MEDIA_BATCH || arrival >= next_due {
                break;
            }
        }
        // Sleep until data arrives or the next send (at most 1 ms: commands are polled).
        let now_us = epoch.elapsed().as_micros() as u64;
        if next_due > now_us {
            match epoll.as_mut() {
                Some(e) => {
                    let _ = e.wait(1);
                }
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }
    MediaResult {
        streams: results,
        delay_hist: hist,
        dtmf_events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_histogram_quantiles() {
        let mut h = vec![0u64; 100];
        h[10] = 50; // 1.0-1.1 ms
        h[20] = 49;
        h[90] = 1;
        assert!((hist_quantile(&h, 0.5) - 1.05).abs() < 1e-9);
        assert!((hist_quantile(&h, 0.99) - 2.05).abs() < 1e-9);
        assert!((hist_quantile(&h, 1.0) - 9.05).abs() < 1e-9);
        assert_eq!(hist_quantile(&[0; 4], 0.5), 0.0);
    }

    #[test]
    fn hold_places_exactly_calls_at_rate() {
        let opts = Options {
            calls: 3,
            rate: 10.0,
            ..Options::default()
        };
        let t0 = clock();
        let mut st = State::new(&opts, t0);
        let mut placed = Vec::new();
        let mut t = t0;
        for _ in 0..100 {
            while st.due(t, 0).is_some() {
                st.placed(t);
                placed.push(t.duration_since(t0));
            }
            t += Duration::from_millis(10);
        }
        assert_eq!(placed.len(), 3);
        assert_eq!(placed[1], Duration::from_millis(100));
        assert_eq!(placed[2], Duration::from_millis(200));
        assert!(st.finished_placing);
    }

    #[test]
    fn ramp_stops_at_the_first_step_over_budget() {
        let opts = Options {
            mode: Mode::Ramp,
            calls: 1000,
            rate: 10.0,
            step: Duration::from_secs(2),
            ..Options::default()
        };
        let t0 = clock();
        let mut st = State::new(&opts, t0);
        let mut t = t0;
        let mut sec = t0;
        while !st.finished_placing && t < t0 + Duration::from_secs(60) {
            while st.due(t, 0).is_some() {
                st.placed(t);
                // The third step (30 calls/s) fails 10 % of its calls.
                if st.step == 2 && st.step_attempts % 10 == 0 {
                    st.failed(Failure::Status(503));
                } else {
                    st.answered(Duration::from_millis(5));
                }
            }
            if t >= sec + Duration::from_secs(1) {
                let s = Sample {
                    t_s: 0.0,
                    concurrent: 0,
                    cps: 0.0,
                    failures: 0,
                    loss_pct: 0.0,
                    cpu_pct: 0.0,
                    cpu_per_core_pct: Vec::new(),
                };
                st.on_sample(&s, &opts, t);
                sec = t;
            }
            t += Duration::from_millis(5);
        }
        assert_eq!(st.steps.len(), 3, "{:?}", st.steps);
        assert!(st.steps[0].passed && st.steps[1].passed && !st.steps[2].passed);
        assert!((st.steps[1].rate - 20.0).abs() < 1e-9);
        assert!(st.stopped_by.contains("step 3"), "{}", st.stopped_by);
    }
}
