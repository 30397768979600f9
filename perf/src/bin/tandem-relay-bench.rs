//! `tandem-relay-bench`: run Tandem's RTP relay as a static relay for the
//! rtpengine side-by-side harness (`scripts/relay-bench.sh`).
//!
//! ```text
//! tandem-relay-bench relay --backend socket|uring --core 0 --calls 1000 --map OUT.map
//! ```
//! With `--gen-ip` (and `--ip` the relay's veth address) the remotes are on a
//! veth peer instead, as `tandem-xdpgen` drives them (`scripts/relay-bench-veth.sh`);
//! `--backend xdp` then runs the AF_XDP backend on `--xdp-interface`.
//! Starts a dataplane with one worker pinned to `--core`, creates `--calls`
//! relay sessions whose remotes are the harness's per-call loopback endpoints
//! (leg A `127.2.x.y:61000`, leg B `127.3.x.y:61002`, as the harness's
//! `rtpbench.py` uses), writes the harness's mapping file (one call per line:
//! `a_ip a_port relayA_ip relayA_port b_ip b_port relayB_ip relayB_port`),
//! prints `ready <pid>` and relays for `--lifetime` seconds (the harness
//! normally stops it earlier with SIGTERM). The load generator (`rtpgen`) then drives it and
//! measures delivery, loss, latency and this process's CPU time.
//!
//! At the end of its lifetime it prints the worker counters to stderr.
//!
//! ```text
//! tandem-relay-bench switch-icount --rounds N
//! ```
//! Runs the relay switch step (no I/O) the way `perf/benches/relay.rs` does:
//! 1000 latched relay sessions, one packet each way per round. A small,
//! deterministic driver for `valgrind --tool=callgrind`: the difference in
//! instructions between two round counts, divided by the extra packets, is
//! the switch step's instructions per packet (setup cancels out).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use dataplane::io::xdp::XdpMode;
use dataplane::{Backend, Config, Dataplane, Error, Mode, Side, XdpSettings};

/// Generator ports of the harness (A side, B side).
const GEN_PORTS: (u16, u16) = (61_000, 61_002);

#[derive(Parser)]
#[command(
    name = "tandem-relay-bench",
    about = "Tandem RTP relay as a static relay for the side-by-side harness"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the relay with N calls and write the mapping file.
    Relay {
        #[arg(long, value_enum, default_value = "socket")]
        backend: BackendArg,
        /// Core the (single) worker is pinned to.
        #[arg(long, default_value_t = 0)]
        core: usize,
        #[arg(long, default_value_t = 1000)]
        calls: usize,
        /// Mapping file to write.
        #[arg(long)]
        map: PathBuf,
        /// Address the relay binds (and the map names).
        #[arg(long, default_value = "127.0.1.1")]
        ip: IpAddr,
        /// First RTP port of the relay's range (4 ports per call are used).
        #[arg(long, default_value_t = 20_000)]
        port_base: u16,
        /// Exit after this many seconds.
        #[arg(long, default_value_t = 600)]
        lifetime: u64,
        /// Interface of the `xdp` backend (its address is `--ip`).
        #[arg(long, default_value = "xr0")]
        xdp_interface: String,
        /// Remote endpoints on one address (a veth peer: `tandem-xdpgen`)
        /// instead of the loopback harness's per-call addresses: call `i`
        /// has A at `gen_ip:gen_port_base+i`, B at
        /// `gen_ip:gen_port_base+calls+i`.
        #[arg(long)]
        gen_ip: Option<Ipv4Addr>,
        #[arg(long, default_value_t = 2000)]
        gen_port_base: u16,
    },
    /// Drive the switch step for callgrind (2000 packets per round).
    SwitchIcount {
        #[arg(long, default_value_t = 10)]
        rounds: u32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Socket,
    Uring,
    Xdp,
    Auto,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Socket => Backend::Socket,
            BackendArg::Uring => Backend::Uring,
            BackendArg::Xdp => Backend::Xdp,
            BackendArg::Auto => Backend::Auto,
        }
    }
}

/// The harness's endpoint address of call `i` on side A (`127.2.x.y`) or B.
fn endpoint(side: Side, i: usize) -> Ipv4Addr {
    let net = if side == Side::A { 2 } else { 3 };
    Ipv4Addr::new(127, net, ((i >> 8) & 0xff) as u8, (i & 0xff) as u8)
}

/// Retry while a worker's command ring is full (the worker drains it in
/// bounded chunks per iteration).
fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    for _ in 0..10_000 {
        match f() {
            Err(Error::QueueFull(_)) => std::thread::sleep(Duration::from_millis(1)),
            r => return r,
        }
    }
    f()
}

/// Where the relay's remotes are.
struct Remotes {
    /// `None`: the loopback harness's per-call addresses.
    gen_ip: Option<Ipv4Addr>,
    gen_port_base: u16,
}

impl Remotes {
    fn of(&self, calls: usize, i: usize) -> Result<(SocketAddr, SocketAddr), String> {
        let Some(ip) = self.gen_ip else {
            return Ok((
                SocketAddr::new(endpoint(Side::A, i).into(), GEN_PORTS.0),
                SocketAddr::new(endpoint(Side::B, i).into(), GEN_PORTS.1),
            ));
        };
        let port = |k: usize| {
            u16::try_from(usize::from(self.gen_port_base) + k)
                .map_err(|_| format!("generator port of call {i} past 65535"))
        };
        Ok((
            SocketAddr::new(ip.into(), port(i)?),
            SocketAddr::new(ip.into(), port(calls + i)?),
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn relay(
    backend: Backend,
    core: usize,
    calls: usize,
    map: &PathBuf,
    ip: IpAddr,
    port_base: u16,
    lifetime: u64,
    xdp_interface: String,
    remotes: &Remotes,
) -> Result<(), String> {
    let hi = u32::from(port_base) + 4 * calls as u32 + 1000;
    let hi = u16::try_from(hi).map_err(|_| format!("port range past 65535 for {calls} calls"))?;
    let mut dp = Dataplane::start(Config {
        backend,
        cores: vec![core],
        rtp_ports: port_base..=hi,
        media_ip: ip,
        media_timeout: Duration::ZERO,
        max_sessions_per_worker: calls.max(1),
        xdp: matches!(backend, Backend::Xdp).then(|| XdpSettings {
            interface: xdp_interface,
            queues: vec![0],
            zero_copy: false,
            busy_poll: false,
            mode: XdpMode::Auto,
        }),
        control_cores: Vec::new(),
    })
    .map_err(|e| format!("start dataplane: {e}"))?;
    let mut out = String::new();
    out.push_str(&format!(
        "# tandem {:?} backend, {calls} calls\n",
        dp.backend()
    ));
    for i in 0..calls {
        let s = retry(|| dp.create_session(Mode::Relay)).map_err(|e| format!("call {i}: {e}"))?;
        let (a, b) = remotes.of(calls, i)?;
        retry(|| dp.set_remote(s.id, Side::A, a, None)).map_err(|e| e.to_string())?;
        retry(|| dp.set_remote(s.id, Side::B, b, None)).map_err(|e| e.to_string())?;
        out.push_str(&format!(
            "{} {} {} {} {} {} {} {}\n",
            a.ip(),
            a.port(),
            s.a.ip(),
            s.a.port(),
            b.ip(),
            b.port(),
            s.b.ip(),
            s.b.port()
        ));
    }
    std::fs::write(map, out).map_err(|e| format!("write {}: {e}", map.display()))?;
    // Let the worker apply the queued commands before announcing readiness.
    for _ in 0..5000 {
        if dp.stats()[0].sessions as usize == calls {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("ready {} backend={:?}", std::process::id(), dp.backend());
    let _ = std::io::stdout().flush();

    // Sleep in short steps so the counters print soon after the lifetime.
    for _ in 0..lifetime * 10 {
        std::thread::sleep(Duration::from_millis(100));
    }
    for w in dp.stats() {
        eprintln!("{w:?}");
    }
    dp.shutdown();
    Ok(())
}

/// The switch step over 1000 latched relay sessions for `rounds` rounds (plus
/// one latching round). Returns the packets forwarded in the measured rounds.
fn switch_icount(rounds: u32) -> usize {
    use dataplane::session::{Kind, Leg, Session, SessionTable, SlotAllocator, SocketRef};
    use dataplane::switch::{self, Decision};
    use dataplane::wire::{rtp, Pt, Ssrc};
    use dataplane::SessionId;
    use std::hint::black_box;

    const SESSIONS: usize = 1000;
    let mut table = SessionTable::with_capacity(SESSIONS);
    let mut slots = SlotAllocator::new(SESSIONS);
    let mut calls = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let Some(slot) = slots.alloc() else { break };
        let port = 20_000 + 4 * i as u16;
        let local = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let a = Leg::new(local(port), Ssrc(0x1000_0000 + i as u32));
        let b = Leg::new(local(port + 2), Ssrc(0x2000_0000 + i as u32));
        let mut s = Session::new(SessionId(i as u32), Mode::Relay, a, b);
        let pa = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 4000));
        let pb = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6000));
        s.a.set_remote(pa, None);
        s.b.set_remote(pb, None);
        if table.insert(slot, s).is_ok() {
            calls.push((slot.index, pa, pb));
        }
    }
    let mut template = [0xd5u8; 12 + 160];
    let _ = rtp::Repr {
        marker: false,
        payload_type: Pt::PCMA,
        sequence_number: 0,
        timestamp: 0,
        ssrc: Ssrc(0),
    }
    .emit(&mut template);
    let epoch = dataplane::clock::now();
    let mut forwarded = 0;
    // Round 0 latches every leg and is not counted.
    for round in 0..=rounds {
        let now = epoch + Duration::from_millis(20 * u64::from(round));
        let mut buf = template;
        for (i, &(slot, pa, pb)) in calls.iter().enumerate() {
            for (side, src, ssrc) in [
                (Side::A, pa, 0xa000_0000 + i as u32),
                (Side::B, pb, 0xb000_0000 + i as u32),
            ] {
                buf.copy_from_slice(&template);
                let mut p = rtp::Packet::new_unchecked(&mut buf[..]);
                p.set_ssrc(Ssrc(ssrc));
                p.set_sequence_number(round as u16);
                p.set_timestamp(round.wrapping_mul(160));
                let token = SocketRef {
                    slot,
                    side,
                    kind: Kind::Rtp,
                }
                .token();
                let rx = SocketRef::from_token(token);
                let Some(session) = table.by_index_mut(rx.slot) else {
                    continue;
                };
                let out = switch::handle_packet(session, rx, src, black_box(&mut buf[..]), now);
                if round > 0 && matches!(out.decision, Decision::Forward { .. }) {
                    forwarded += 1;
                }
                black_box(&buf);
            }
        }
    }
    forwarded
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Relay {
            backend,
            core,
            calls,
            map,
            ip,
            port_base,
            lifetime,
            xdp_interface,
            gen_ip,
            gen_port_base,
        } => relay(
            backend.into(),
            core,
            calls,
            &map,
            ip,
            port_base,
            lifetime,
            xdp_interface,
            &Remotes {
                gen_ip,
                gen_port_base,
            },
        ),
        Cmd::SwitchIcount { rounds } => {
            let forwarded = switch_icount(rounds);
            println!(
                "rounds={rounds} packets={} forwarded={forwarded}",
                2000 * rounds
            );
            Ok(())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-relay-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
