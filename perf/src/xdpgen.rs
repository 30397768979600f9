//! AF_XDP RTP load generator and sink for relay benchmarks on a veth pair
//! (`tandem-xdpgen`).
//!
//! The generator owns one end of a veth pair (in its own network namespace)
//! and one IPv4 address on it. For every relayed call of a mapping file (the
//! format of the rtpengine anchor harness: `a_ip a_port relayA_ip
//! relayA_port b_ip b_port relayB_ip relayB_port`) it runs two streams: A
//! sends to relay A and expects the packets at B, B sends to relay B and
//! expects them at A. Frames (Ethernet/IPv4/UDP/RTP, 172-byte RTP payload as
//! G.711 20 ms) are sent in one of two ways ([`TxMode`]): built straight into
//! the UMEM of an AF_XDP socket and sent from its tx ring in batches
//! (`xsk`), or made in the kernel by an XDP program run over live copies of
//! one template frame with `BPF_PROG_TEST_RUN` and sent with `XDP_TX`
//! (`live`, [`dataplane::io::xdp::live`]: no socket buffer per frame, one
//! system call per few hundred frames); either at a given aggregate rate or
//! flat out, streams taken round-robin. What the relay sends back is redirected to the same socket by Tandem's own XDP
//! program (attached to the generator's interface, filtering the
//! generator's address and port range) and counted per stream: delivered,
//! lost, reordered, misdelivered (arrived at the wrong port), and one-way
//! latency from the send time carried in the payload to the time the
//! generator reads it (so it includes the generator's own receive path).
//!
//! Payload after the 12-byte RTP header: magic `TXG1`, stream id, sequence
//! number, flags (bit 0: sent in the measured window), send time in ns of
//! `CLOCK_MONOTONIC` (`bpf_ktime_get_ns` in live mode), all big-endian.
//!
//! A run is warm-up + measured window + drain: only packets sent in the
//! measured window count, and the drain gives the last of them time to
//! arrive. Relay CPU is sampled over the measured window from
//! `/proc/PID/stat` (utime+stime), `/proc/PID/task/*/schedstat` and the
//! relay core's busy time in `/proc/stat` (which also holds the kernel's
//! softirq work done on that core), plus the on-CPU time of extra kernel
//! threads (the relay interface's threaded-NAPI threads) when given.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::thread::JoinHandleExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::io::xdp::frame::{self, Mac};
use dataplane::io::xdp::netlink::{self, Netlink, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use dataplane::io::xdp::{bpf, live, xsk};
use serde::Serialize;

/// RTP payload bytes (G.711, 20 ms).
pub const RTP_PAYLOAD: usize = 160;
/// UDP payload bytes: RTP header + payload.
pub const UDP_PAYLOAD: usize = 12 + RTP_PAYLOAD;
const MAGIC: [u8; 4] = *b"TXG1";
/// Latency histogram range (1 us buckets); later arrivals land in the last.
const HIST_US: usize = 200_000;

/// Errors of the generator, naming the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("mapping file {0}: {1}")]
    Map(String, String),
    #[error("interface {0}: {1}")]
    Interface(String, std::io::Error),
    #[error("{0}: {1}")]
    Sys(&'static str, std::io::Error),
    #[error("XDP program: {0}")]
    Load(String),
    #[error("config: {0}")]
    Config(String),
}

/// One relayed call: the generator's two endpoints and the relay's two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub a: SocketAddrV4,
    pub relay_a: SocketAddrV4,
    pub b: SocketAddrV4,
    pub relay_b: SocketAddrV4,
}

/// Parse a mapping file's text (one call per line, `#` comments).
pub fn parse_map(text: &str) -> Result<Vec<Call>, String> {
    let mut calls = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 8 {
            return Err(format!("line {}: {} fields, expected 8", n + 1, f.len()));
        }
        let addr = |i: usize| -> Result<SocketAddrV4, String> {
            let ip: Ipv4Addr = f[i]
                .parse()
                .map_err(|_| format!("line {}: bad IPv4 address {:?}", n + 1, f[i]))?;
            let port: u16 = f[i + 1]
                .parse()
                .map_err(|_| format!("line {}: bad port {:?}", n + 1, f[i + 1]))?;
            Ok(SocketAddrV4::new(ip, port))
        };
        calls.push(Call {
            a: addr(0)?,
            relay_a: addr(2)?,
            b: addr(4)?,
            relay_b: addr(6)?,
        });
    }
    Ok(calls)
}

/// Write a mapping file text for `calls` calls: the generator at `gen`
/// (A ports `port_base + i`, B ports `port_base + calls + i`), the relay at
/// `relay` with 4 ports per call from `relay_base` (RTP of A, RTCP, RTP of
/// B, RTCP) as `tandem-relay-bench` and `udpfwd` bind them.
pub fn make_map(
    calls: usize,
    gen: Ipv4Addr,
    port_base: u16,
    relay: Ipv4Addr,
    relay_base: u16,
) -> Result<String, String> {
    let last_gen = usize::from(port_base) + 2 * calls;
    let last_relay = usize::from(relay_base) + 4 * calls;
    if last_gen > 65_536 || last_relay > 65_536 {
        return Err(format!("{calls} calls do not fit the port ranges"));
    }
    let mut s = String::new();
    for i in 0..calls {
        let ga = usize::from(port_base) + i;
        let gb = usize::from(port_base) + calls + i;
        let ra = usize::from(relay_base) + 4 * i;
        s.push_str(&format!(
            "{gen} {ga} {relay} {ra} {gen} {gb} {relay} {}\n",
            ra + 2
        ));
    }
    Ok(s)
}

/// How frames are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxMode {
    /// From the tx ring of the AF_XDP socket (copy mode on veth).
    #[default]
    Xsk,
    /// Live frames: `BPF_PROG_TEST_RUN` + `XDP_TX` out of the interface.
    Live,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// The generator's interface (one end of the veth pair).
    pub interface: String,
    /// MAC of the relay's interface (the frames' destination).
    pub relay_mac: Mac,
    pub calls: Vec<Call>,
    /// Aggregate packets/s over all streams; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    /// Frames queued per tx ring flush (xsk) or per kernel batch (live,
    /// at most 256).
    pub batch: usize,
    pub tx: TxMode,
    /// Live mode: frames due within this many us go out together.
    pub tick_us: u64,
    /// Live mode: sleep this long when a receive poll found nothing.
    pub idle_sleep_us: u64,
    /// Live mode: frames sent back to back at most when catching up after
    /// the sending thread was not scheduled.
    pub catch_up: u32,
    /// Kernel threads whose CPU time counts as the relay's (threaded NAPI).
    pub napi_pids: Vec<u32>,
    /// Relay process whose CPU time is sampled.
    pub relay_pid: Option<u32>,
    /// Core the relay runs on (its busy time is sampled).
    pub relay_cpu: Option<usize>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

/// Relay CPU over the measured window.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RelayCpu {
    pub pid: Option<u32>,
    /// On-CPU time of the relay's threads (schedstat).
    pub cpu_s: Option<f64>,
    pub utime_s: Option<f64>,
    pub stime_s: Option<f64>,
    /// `cpu_s` per delivered packet.
    pub ns_per_delivered_pkt: Option<f64>,
    /// Busy time (everything but idle and iowait) of the relay's core.
    pub core_busy_s: Option<f64>,
    /// `core_busy_s` per delivered packet.
    pub core_ns_per_delivered_pkt: Option<f64>,
    /// On-CPU time of the extra kernel threads (`napi_pids`).
    pub napi_cpu_s: Option<f64>,
    /// (`cpu_s` + `napi_cpu_s`) per delivered packet.
    pub ns_per_delivered_pkt_with_napi: Option<f64>,
}

/// Result of a run (one JSON line).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub generator: &'static str,
    /// `xsk` or `live`.
    pub tx: &'static str,
    pub calls: usize,
    pub streams: usize,
    pub duration_s: f64,
    /// Asked aggregate rate (0: flat out).
    pub offered_pps: f64,
    pub sent_pps: f64,
    pub delivered_pps: f64,
    /// Packets sent in the measured window.
    pub sent: u64,
    /// Packets sent in the whole run (warm-up included).
    pub sent_total: u64,
    /// Of those, delivered (each at most once).
    pub received: u64,
    pub loss: f64,
    pub streams_with_loss: u64,
    /// Packets that arrived after a later one of the same stream.
    pub reordered: u64,
    /// Duplicates of a packet already counted.
    pub duplicates: u64,
    /// Packets that arrived at another endpoint than their stream's.
    pub misdelivered: u64,
    /// Frames received that were not ours (wrong magic, unknown stream).
    pub foreign: u64,
    /// Frames the tx ring could not take when due (generator behind).
    pub tx_stalls: u64,
    pub lat_us: Latency,
    pub relay: Vec<RelayCpu>,
    /// Interface counters over the measured window: where the lost packets
    /// went.
    pub hops: Option<Hops>,
    /// Loss over the packets the relay received: the packets the
    /// generator's own interface dropped (its receive ring full, or frames
    /// it could not hand to the relay's end) are taken out of both the sent
    /// and the lost. `None` without a relay pid.
    pub loss_at_relay: Option<f64>,
    /// Whether the AF_XDP socket is in zero-copy mode and the program native.
    pub zero_copy: bool,
    pub xdp_native: bool,
}

/// Interface counters over the measured window, from `/proc/PID/net/dev`
/// (all interfaces but `lo` of the relay's and the generator's network
/// namespaces: on the bench, the two veth ends). A veth end counts as
/// received drops the frames its XDP program could not redirect to a full
/// AF_XDP ring or send with `XDP_TX`.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
pub struct Hops {
    pub relay_rx: u64,
    pub relay_rx_dropped: u64,
    pub relay_tx: u64,
    pub relay_tx_dropped: u64,
    pub gen_rx: u64,
    pub gen_rx_dropped: u64,
    pub gen_tx: u64,
    pub gen_tx_dropped: u64,
}

/// Sum of (rx packets, rx drops, tx packets, tx drops) over the interfaces
/// of a `/proc/.../net/dev` text, `lo` left out.
pub fn netdev_sum(text: &str) -> (u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() >= 12 {
            t.0 += v[1];
            t.1 += v[3];
            t.2 += v[9];
            t.3 += v[11];
        }
    }
    t
}

fn sample_net(relay_pid: Option<u32>) -> Option<Hops> {
    let relay = std::fs::read_to_string(format!("/proc/{}/net/dev", relay_pid?)).ok()?;
    let gen = std::fs::read_to_string("/proc/self/net/dev").ok()?;
    let (r, g) = (netdev_sum(&relay), netdev_sum(&gen));
    Some(Hops {
        relay_rx: r.0,
        relay_rx_dropped: r.1,
        relay_tx: r.2,
        relay_tx_dropped: r.3,
        gen_rx: g.0,
        gen_rx_dropped: g.1,
        gen_tx: g.2,
        gen_tx_dropped: g.3,
    })
}

/// Per-stream receive state.
#[derive(Debug, Clone, Copy, Default)]
struct Stream {
    /// Measured packets sent.
    sent: u32,
    /// Distinct measured packets received.
    received: u32,
    /// Highest sequence received + 1 (0: none).
    next: u32,
}

/// The XDP side: program attached to the interface, its map and the socket.
struct Port {
    xsk: xsk::Xsk,
    ifindex: u32,
    _map: OwnedFd,
    _link: OwnedFd,
    native: bool,
    mac: Mac,
}

fn open_port(
    interface: &str,
    ip: Ipv4Addr,
    ports: std::ops::RangeInclusive<u16>,
) -> Result<Port, GenError> {
    let ifindex =
        netlink::ifindex(interface).map_err(|e| GenError::Interface(interface.into(), e))?;
    let mut nl = Netlink::open().map_err(|e| GenError::Sys("netlink", e))?;
    let info = nl
        .link(ifindex)
        .map_err(|e| GenError::Interface(interface.into(), e))?;
    let map = bpf::create_xskmap(1).map_err(|e| GenError::Sys("XSKMAP create", e))?;
    let filter = bpf::Filter {
        ipv4: Some(ip),
        ipv6: None,
        ports,
    };
    let prog = bpf::load(&bpf::program(&filter, map.as_raw_fd())).map_err(GenError::Load)?;
    let (link, native) = match bpf::link_create(prog.as_fd(), ifindex, XDP_FLAGS_DRV_MODE) {
        Ok(l) => (l, true),
        Err(_) => (
            bpf::link_create(prog.as_fd(), ifindex, XDP_FLAGS_SKB_MODE)
                .map_err(|e| GenError::Sys("XDP attach", e))?,
            false,
        ),
    };
    let xsk =
        xsk::Xsk::open(ifindex, 0, false, false).map_err(|e| GenError::Sys("AF_XDP socket", e))?;
    bpf::xskmap_set(map.as_fd(), 0, xsk.as_fd()).map_err(|e| GenError::Sys("XSKMAP set", e))?;
    Ok(Port {
        xsk,
        ifindex,
        _map: map,
        _link: link,
        native,
        mac: info.mac,
    })
}

/// Stream `s`'s source and destination (even: A -> relay A, odd: B ->
/// relay B).
fn stream_addrs(calls: &[Call], s: usize) -> (SocketAddrV4, SocketAddrV4) {
    let c = &calls[s / 2];
    if s.is_multiple_of(2) {
        (c.a, c.relay_a)
    } else {
        (c.b, c.relay_b)
    }
}

/// SSRC of stream `s`.
fn ssrc(s: u32) -> u32 {
    0x1000_0000u32.wrapping_add(s)
}

/// Load the live-frames generator for every stream of `calls`, sending out
/// of `port`'s interface to `relay_mac`.
fn open_live(
    calls: &[Call],
    port: &Port,
    relay_mac: Mac,
    batch: usize,
) -> Result<live::LiveGen, GenError> {
    let (src, dst) = stream_addrs(calls, 0);
    let hl = frame::header_len(&SocketAddr::V4(dst));
    let mut template = vec![0u8; hl + UDP_PAYLOAD];
    write_payload(&mut template[hl..], 0, 0, false, 0);
    frame::emit(
        &mut template,
        port.mac,
        relay_mac,
        SocketAddr::V4(src),
        SocketAddr::V4(dst),
        UDP_PAYLOAD,
    )
    .map_err(|e| GenError::Config(format!("template frame: {e}")))?;
    let streams: Vec<(SocketAddrV4, SocketAddrV4, u32)> = (0..2 * calls.len())
        .map(|s| {
            let (a, b) = stream_addrs(calls, s);
            (a, b, ssrc(s as u32))
        })
        .collect();
    let mut g = live::LiveGen::new(port.ifindex, template, &streams)
        .map_err(|e| GenError::Load(e.to_string()))?;
    g.batch = batch.clamp(1, live::MAX_BATCH as usize) as u32;
    Ok(g)
}

/// The thread running the live-frames generator; stopped (and joined) by
/// [`LiveSender::stop`] or on drop.
struct LiveSender {
    handle: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    stop: Arc<AtomicBool>,
}

impl LiveSender {
    fn start(g: Arc<live::LiveGen>) -> Result<LiveSender, GenError> {
        live::install_interrupt().map_err(|e| GenError::Sys("signal handler", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("xdpgen-live".into())
            .spawn(move || g.run(&s))
            .map_err(|e| GenError::Sys("live sender thread", e))?;
        Ok(LiveSender {
            handle: Some(handle),
            stop,
        })
    }

    fn stop(&mut self) -> Result<(), GenError> {
        let Some(h) = self.handle.take() else {
            return Ok(());
        };
        self.stop.store(true, Ordering::Release);
        // Signal until the thread has left its system call and seen `stop`.
        while !h.is_finished() {
            live::interrupt(h.as_pthread_t());
            std::thread::sleep(Duration::from_millis(2));
        }
        match h.join() {
            Ok(r) => r.map_err(|e| GenError::Sys("BPF_PROG_TEST_RUN live frames", e)),
            Err(_) => Err(GenError::Config("live sender thread panicked".into())),
        }
    }
}

impl Drop for LiveSender {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Write stream `s`'s packet `seq` (payload only, at `buf[0..UDP_PAYLOAD]`).
fn write_payload(buf: &mut [u8], s: u32, seq: u32, measured: bool, sent_ns: u64) {
    buf[0] = 0x80;
    buf[1] = 0; // PCMU
    buf[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    buf[4..8].copy_from_slice(&seq.wrapping_mul(160).to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc(s).to_be_bytes());
    buf[12..16].copy_from_slice(&MAGIC);
    buf[16..20].copy_from_slice(&s.to_be_bytes());
    buf[20..24].copy_from_slice(&seq.to_be_bytes());
    buf[24..28].copy_from_slice(&u32::from(measured).to_be_bytes());
    buf[28..36].copy_from_slice(&sent_ns.to_be_bytes());
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Stream id, sequence, measured flag and send time of one of our payloads.
fn read_payload(p: &[u8]) -> Option<(u32, u32, bool, u64)> {
    if p.len() < 36 || p[12..16] != MAGIC {
        return None;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&p[28..36]);
    Some((
        be32(p, 16),
        be32(p, 20),
        be32(p, 24) & 1 != 0,
        u64::from_be_bytes(t),
    ))
}

/// CPU counters of the relay at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    sched_ns: Option<u64>,
    ticks: Option<(u64, u64)>,
    core_busy_ticks: Option<u64>,
    napi_ns: Option<u64>,
}

/// First field of a schedstat file: on-CPU ns.
fn schedstat_ns(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second of /proc (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

fn sample_cpu(pid: Option<u32>, core: Option<usize>, napi: &[u32]) -> CpuSample {
    let mut s = CpuSample::default();
    if !napi.is_empty() {
        s.napi_ns = Some(
            napi.iter()
                .filter_map(|p| schedstat_ns(Path::new(&format!("/proc/{p}/schedstat"))))
                .sum(),
        );
    }
    if let Some(pid) = pid {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            let mut sum = 0;
            for t in tasks.flatten() {
                sum += schedstat_ns(&t.path().join("schedstat")).unwrap_or(0);
            }
            s.sched_ns = Some(sum);
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
            if let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                if let (Some(u), Some(st)) = (f.get(11), f.get(12)) {
                    if let (Ok(u), Ok(st)) = (u.parse(), st.parse()) {
                        s.ticks = Some((u, st));
                    }
                }
            }
        }
    }
    if let Some(core) = core {
        if let Ok(text) = std::fs::read_to_string("/proc/stat") {
            let name = format!("cpu{core}");
            for line in text.lines() {
                let mut f = line.split_whitespace();
                if f.next() != Some(name.as_str()) {
                    continue;
                }
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                if v.len() >= 5 {
                    let total: u64 = v.iter().take(8).sum();
                    s.core_busy_ticks = Some(total - v[3] - v[4]);
                }
            }
        }
    }
    s
}

/// Percentile `q` (0..1) of a 1-us histogram holding `n` samples.
fn percentile(hist: &[u32], n: u64, q: f64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let want = ((n as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (us, &c) in hist.iter().enumerate() {
        seen += u64::from(c);
        if seen >= want {
            return Some(us as f64);
        }
    }
    Some((hist.len() - 1) as f64)
}

/// Run the generator on `cfg.interface` (in the calling thread's network
/// namespace) and return the report. `now` reads the clock (the caller's
/// edge: `dataplane::clock::now`).
pub fn run(cfg: &GenConfig, now: &dyn Fn() -> Instant) -> Result<Report, GenError> {
    let Some(first) = cfg.calls.first() else {
        return Err(GenError::Config("no calls".into()));
    };
    let gen_ip = *first.a.ip();
    let mut lo = u16::MAX;
    let mut hi = 0;
    for c in &cfg.calls {
        if *c.a.ip() != gen_ip || *c.b.ip() != gen_ip {
            return Err(GenError::Config(format!(
                "every generator endpoint must use {gen_ip} (one address per run), not {} / {}",
                c.a.ip(),
                c.b.ip()
            )));
        }
        for p in [c.a.port(), c.b.port()] {
            lo = lo.min(p);
            hi = hi.max(p);
        }
    }
    let streams = 2 * cfg.calls.len();
    let stream_count = u32::try_from(streams).map_err(|_| GenError::Config("too many".into()))?;
    // Port -> expected stream + 1 (0: none).
    let mut by_port = vec![0u32; 65_536];
    for (i, c) in cfg.calls.iter().enumerate() {
        by_port[usize::from(c.b.port())] = 2 * i as u32 + 1;
        by_port[usize::from(c.a.port())] = 2 * i as u32 + 2;
    }
    let mut port = open_port(&cfg.interface, gen_ip, lo..=hi)?;
    let src_mac = port.mac;
    let live_gen = match cfg.tx {
        TxMode::Live => Some(Arc::new(open_live(
            &cfg.calls,
            &port,
            cfg.relay_mac,
            cfg.batch,
        )?)),
        TxMode::Xsk => None,
    };
    // Live mode: ns between frames (0: flat out), the sender thread.
    let interval_ns = cfg.rate.map_or(0, |r| (1e9 / r).round().max(1.0) as u64);
    let tick_ns = cfg.tick_us * 1000;
    let mut live_measuring = false;
    let mut sender = match &live_gen {
        Some(g) => {
            g.configure(0, interval_ns, tick_ns)
                .map_err(|e| GenError::Sys("live generator settings", e))?;
            g.set_catch_up(interval_ns * u64::from(cfg.catch_up))
                .map_err(|e| GenError::Sys("live generator settings", e))?;
            Some(LiveSender::start(Arc::clone(g))?)
        }
        None => None,
    };
    let batch = cfg.batch.clamp(1, xsk::RING as usize / 2);

    let mut st = vec![Stream::default(); streams];
    let mut hist = vec![0u32; HIST_US + 1];
    let mut r = Report {
        generator: "tandem-xdpgen",
        tx: match cfg.tx {
            TxMode::Xsk => "xsk",
            TxMode::Live => "live",
        },
        calls: cfg.calls.len(),
        streams,
        duration_s: cfg.duration.as_secs_f64(),
        offered_pps: cfg.rate.unwrap_or(0.0),
        zero_copy: port.xsk.mode == xsk::BindMode::ZeroCopy,
        xdp_native: port.native,
        ..Report::default()
    };
    let mut seq = vec![0u32; streams];
    let mut next_stream: u32 = 0;
    let mut sent_total: u64 = 0;
    let mut lat_n: u64 = 0;

    // The send times are CLOCK_MONOTONIC ns (the clock `Instant` and
    // `bpf_ktime_get_ns` read): the base read once, then `now` offsets.
    let base_ns = live::ktime_ns();
    let start = now();
    let mono = |t: Instant| base_ns + (t - start).as_nanos() as u64;
    let m_start = start + cfg.warmup;
    let m_end = m_start + cfg.duration;
    let rx_end = m_end + cfg.drain;
    let mut cpu0: Option<CpuSample> = None;
    let mut cpu1: Option<CpuSample> = None;
    let (mut net0, mut net1) = (None, None);
    let mut measured_sent: u64 = 0;
    let mut payload = [0u8; UDP_PAYLOAD];

    loop {
        let t = now();
        if t >= rx_end {
            break;
        }
        let measuring = t >= m_start && t < m_end;
        if cpu0.is_none() && t >= m_start {
            cpu0 = Some(sample_cpu(cfg.relay_pid, cfg.relay_cpu, &cfg.napi_pids));
            net0 = sample_net(cfg.relay_pid);
        }
        if t >= m_end && cpu0.is_some() && cpu1.is_none() {
            cpu1 = Some(sample_cpu(cfg.relay_pid, cfg.relay_cpu, &cfg.napi_pids));
            net1 = sample_net(cfg.relay_pid);
        }
        // Receive.
        let rx_now_ns = mono(t);
        let mut got = 0;
        for _ in 0..8 {
            let n = port.xsk.recv(256, |f| {
                let Ok(p) = frame::parse(f) else {
                    r.foreign += 1;
                    return;
                };
                let Some((s, q, measured, sent_ns)) = read_payload(p.payload) else {
                    r.foreign += 1;
                    return;
                };
                let Some(stream) = st.get_mut(s as usize) else {
                    r.foreign += 1;
                    return;
                };
                if by_port[usize::from(p.dst.port())] != s + 1 {
                    r.misdelivered += 1;
                    return;
                }
                if q + 1 > stream.next {
                    stream.next = q + 1;
                } else if q + 1 == stream.next {
                    r.duplicates += 1;
                    return;
                } else {
                    r.reordered += 1;
                }
                if measured {
                    stream.received += 1;
                    let us = rx_now_ns.saturating_sub(sent_ns) / 1000;
                    hist[(us as usize).min(HIST_US)] += 1;
                    lat_n += 1;
                }
            });
            got += n;
            if n < 256 {
                break;
            }
        }
        port.xsk.reclaim();
        if let Some(g) = &live_gen {
            if measuring != live_measuring {
                g.configure(u32::from(measuring), interval_ns, tick_ns)
                    .map_err(|e| GenError::Sys("live generator settings", e))?;
                live_measuring = measuring;
            }
            if t >= m_end {
                if let Some(mut s) = sender.take() {
                    s.stop()?;
                }
            }
            // Leave the core to the sender and the NAPI thread while
            // nothing arrives (the rx ring holds 2 ms at 1 Mpps).
            if got == 0 {
                std::thread::sleep(Duration::from_micros(cfg.idle_sleep_us));
            }
            continue;
        }
        if t >= m_end {
            continue;
        }
        // Send what is due.
        let due = match cfg.rate {
            Some(rate) => {
                let target = ((t - start).as_secs_f64() * rate) as u64;
                target.saturating_sub(sent_total).min(batch as u64) as usize
            }
            None => batch,
        };
        let sent_ns = mono(t);
        let mut pushed = 0;
        for _ in 0..due {
            let s = next_stream as usize;
            let (src, dst) = stream_addrs(&cfg.calls, s);
            let q = seq[s];
            write_payload(&mut payload, next_stream, q, measuring, sent_ns);
            let (src, dst) = (SocketAddr::V4(src), SocketAddr::V4(dst));
            let hl = frame::header_len(&dst);
            let ok = port.xsk.push_tx(|buf| {
                buf.get_mut(hl..hl + UDP_PAYLOAD)?.copy_from_slice(&payload);
                frame::emit(buf, src_mac, cfg.relay_mac, src, dst, UDP_PAYLOAD).ok()
            });
            if !ok {
                r.tx_stalls += 1;
                break;
            }
            seq[s] = q.wrapping_add(1);
            if measuring {
                st[s].sent += 1;
                measured_sent += 1;
            }
            sent_total += 1;
            pushed += 1;
            next_stream = if next_stream + 1 == stream_count {
                0
            } else {
                next_stream + 1
            };
        }
        if pushed > 0 {
            port.xsk.flush_tx();
        } else if port.xsk.tx_queued() > 0 {
            port.xsk.kick_tx();
        }
    }
    let cpu1 = cpu1.unwrap_or_else(|| sample_cpu(cfg.relay_pid, cfg.relay_cpu, &cfg.napi_pids));
    if let Some(mut s) = sender.take() {
        s.stop()?;
    }
    if let Some(g) = &live_gen {
        sent_total = g
            .frames()
            .map_err(|e| GenError::Sys("live generator counter", e))?;
        let sent = g
            .measured_sent()
            .map_err(|e| GenError::Sys("live generator stream map", e))?;
        for (stream, n) in st.iter_mut().zip(sent) {
            stream.sent = n;
        }
        measured_sent = st.iter().map(|s| u64::from(s.sent)).sum();
    }

    let secs = cfg.duration.as_secs_f64();
    r.sent = measured_sent;
    r.sent_total = sent_total;
    r.received = st.iter().map(|s| u64::from(s.received)).sum();
    r.sent_pps = r.sent as f64 / secs;
    r.delivered_pps = r.received as f64 / secs;
    r.loss = if r.sent == 0 {
        0.0
    } else {
        1.0 - r.received as f64 / r.sent as f64
    };
    r.streams_with_loss = st.iter().filter(|s| s.received < s.sent).count() as u64;
    if let (Some(a), Some(b)) = (net0, net1) {
        let d = |x: u64, y: u64| y.saturating_sub(x);
        let h = Hops {
            relay_rx: d(a.relay_rx, b.relay_rx),
            relay_rx_dropped: d(a.relay_rx_dropped, b.relay_rx_dropped),
            relay_tx: d(a.relay_tx, b.relay_tx),
            relay_tx_dropped: d(a.relay_tx_dropped, b.relay_tx_dropped),
            gen_rx: d(a.gen_rx, b.gen_rx),
            gen_rx_dropped: d(a.gen_rx_dropped, b.gen_rx_dropped),
            gen_tx: d(a.gen_tx, b.gen_tx),
            gen_tx_dropped: d(a.gen_tx_dropped, b.gen_tx_dropped),
        };
        let ours = h.gen_rx_dropped + h.gen_tx_dropped;
        let lost = r.sent.saturating_sub(r.received).saturating_sub(ours);
        let base = r.sent.saturating_sub(h.gen_tx_dropped);
        r.loss_at_relay = (base > 0).then(|| lost as f64 / base as f64);
        r.hops = Some(h);
    }
    r.lat_us = Latency {
        p50: percentile(&hist, lat_n, 0.50),
        p90: percentile(&hist, lat_n, 0.90),
        p99: percentile(&hist, lat_n, 0.99),
        p999: percentile(&hist, lat_n, 0.999),
        max: percentile(&hist, lat_n, 1.0),
    };
    if let Some(c0) = cpu0 {
        let per = |s: f64| (r.received > 0).then(|| s * 1e9 / r.received as f64);
        let cpu_s = match (c0.sched_ns, cpu1.sched_ns) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
            _ => None,
        };
        let (utime_s, stime_s) = match (c0.ticks, cpu1.ticks) {
            (Some(a), Some(b)) if cfg.relay_pid.is_some() => (
                Some(b.0.saturating_sub(a.0) as f64 / USER_HZ),
                Some(b.1.saturating_sub(a.1) as f64 / USER_HZ),
            ),
            _ => (None, None),
        };
        let core_busy_s = match (c0.core_busy_ticks, cpu1.core_busy_ticks) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / USER_HZ),
            _ => None,
        };
        let napi_cpu_s = match (c0.napi_ns, cpu1.napi_ns) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
            _ => None,
        };
        let with_napi = cpu_s.map(|c| c + napi_cpu_s.unwrap_or(0.0));
        r.relay.push(RelayCpu {
            pid: cfg.relay_pid,
            cpu_s,
            utime_s,
            stime_s,
            ns_per_delivered_pkt: cpu_s.and_then(per),
            core_busy_s,
            core_ns_per_delivered_pkt: core_busy_s.and_then(per),
            napi_cpu_s,
            ns_per_delivered_pkt_with_napi: with_napi.and_then(per),
        });
    }
    Ok(r)
}

/// A counting XDP program attached to an interface: the far end for
/// measuring the generator alone (drop), or a pass-through that gives a
/// veth end the NAPI that live frames need when no other XDP program is
/// attached (a socket relay).
pub struct Peer {
    counter: live::Counter,
    _link: OwnedFd,
    /// Attached in native (driver) mode.
    pub native: bool,
}

impl Peer {
    /// Attach to `interface` (native mode, else generic).
    pub fn attach(interface: &str, verdict: live::Verdict) -> Result<Peer, GenError> {
        let ifindex =
            netlink::ifindex(interface).map_err(|e| GenError::Interface(interface.into(), e))?;
        let counter = live::Counter::new(verdict).map_err(|e| GenError::Load(e.to_string()))?;
        let (link, native) =
            match bpf::link_create(counter.prog.as_fd(), ifindex, XDP_FLAGS_DRV_MODE) {
                Ok(l) => (l, true),
                Err(_) => (
                    bpf::link_create(counter.prog.as_fd(), ifindex, XDP_FLAGS_SKB_MODE)
                        .map_err(|e| GenError::Sys("XDP attach", e))?,
                    false,
                ),
            };
        Ok(Peer {
            counter,
            _link: link,
            native,
        })
    }

    /// Frames seen so far.
    pub fn count(&self) -> Result<u64, GenError> {
        self.counter
            .count()
            .map_err(|e| GenError::Sys("peer counter", e))
    }
}

/// Read a mapping file.
pub fn read_map(path: &Path) -> Result<Vec<Call>, GenError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| GenError::Map(path.display().to_string(), e.to_string()))?;
    parse_map(&text).map_err(|e| GenError::Map(path.display().to_string(), e))
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<Mac, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("MAC {s:?}: expected 6 colon-separated bytes"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("MAC {s:?}: bad byte {p:?}"))?;
    }
    Ok(Mac(m))
}

/// MAC of `interface` in the calling thread's namespace.
pub fn interface_mac(interface: &str) -> Result<Mac, GenError> {
    let ifindex =
        netlink::ifindex(interface).map_err(|e| GenError::Interface(interface.into(), e))?;
    let mut nl = Netlink::open().map_err(|e| GenError::Sys("netlink", e))?;
    Ok(nl
        .link(ifindex)
        .map_err(|e| GenError::Interface(interface.into(), e))?
        .mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netdev_sums_leave_lo_out() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
 rbvr0: 315345106 1473576    0 21070    0     0          0         0 310000000 1452000    0  167    0     0       0          0
";
        assert_eq!(netdev_sum(text), (1_473_576, 21_070, 1_452_000, 167));
        assert_eq!(netdev_sum(""), (0, 0, 0, 0));
    }

    #[test]
    fn map_round_trip() {
        let text = make_map(
            3,
            Ipv4Addr::new(10, 0, 0, 1),
            2000,
            Ipv4Addr::new(10, 0, 0, 2),
            20_000,
        )
        .unwrap();
        let calls = parse_map(&text).unwrap();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[2].a.port(), 2002);
        assert_eq!(calls[2].b.port(), 2005);
        assert_eq!(calls[2].relay_a.port(), 20_008);
        assert_eq!(calls[2].relay_b.port(), 20_010);
        assert!(make_map(40_000, Ipv4Addr::LOCALHOST, 2000, Ipv4Addr::LOCALHOST, 2000).is_err());
    }

    #[test]
    fn map_errors_name_the_line() {
        let e = parse_map("# c\n1.2.3.4 1 1.2.3.4 2 1.2.3.4 3 1.2.3.4\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("7 fields"), "{e}");
        let e = parse_map("1.2.3.4 1 1.2.3.x 2 1.2.3.4 3 1.2.3.4 4\n").unwrap_err();
        assert!(e.contains("bad IPv4"), "{e}");
    }

    #[test]
    fn payload_round_trip_and_foreign() {
        let mut b = [0u8; UDP_PAYLOAD];
        write_payload(&mut b, 7, 70_000, true, 123_456_789);
        assert_eq!(read_payload(&b), Some((7, 70_000, true, 123_456_789)));
        b[12] = b'X';
        assert_eq!(read_payload(&b), None);
        assert_eq!(read_payload(&b[..20]), None);
    }

    #[test]
    fn percentiles_and_mac() {
        let mut h = vec![0u32; 10];
        h[1] = 98;
        h[5] = 1;
        h[9] = 1;
        assert_eq!(percentile(&h, 100, 0.5), Some(1.0));
        assert_eq!(percentile(&h, 100, 0.99), Some(5.0));
        assert_eq!(percentile(&h, 100, 1.0), Some(9.0));
        assert_eq!(percentile(&h, 0, 0.5), None);
        assert_eq!(
            parse_mac("02:0a:ff:00:01:10").unwrap(),
            Mac([2, 10, 255, 0, 1, 16])
        );
        assert!(parse_mac("02:0a").is_err());
    }
}
