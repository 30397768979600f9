//! `tandem-bench cps`: SIP call setup rate of `tandemd` as a B2BUA (no media) side by side with
//! Kamailio as a stateful proxy, in one run on the same machine.
//!
//! For each target the bench starts the server itself on free loopback ports (a generated
//! `tandem.toml`, or a generated `kamailio.cfg` with one SIP worker process so both have one
//! control core), registers users 1001-1004 through it (the [`super::ua`] engine), then drives
//! the lean agents of [`super::cpsua`]: a closed window of calls, each INVITE / 100 / 200 /
//! ACK then BYE / 200 at once between two bench users through the target, with no RTP.
//!
//! The bench is one thread: `recvmmsg`/`sendmmsg` batches on the four users' sockets, an
//! epoll wait when idle. `--bench-cpu N` pins it, `--server-cpu N` pins the server (every
//! thread and process, through the affinity mask it inherits; tandemd's dataplane core is
//! set to the same core). Over the placing phase (first INVITE to the last call ended) the
//! bench reads from /proc the CPU time of the server (all threads of the server and of its
//! child processes), of its busiest thread (tandemd's control thread, Kamailio's SIP worker)
//! and of the bench itself. The result per target: call setups per second, call setups per
//! CPU-second of the server, those CPU shares (busiest near 100 %: the server's control core
//! is the limit; bench near 100 %: the bench is), and the tandemd / Kamailio ratios.
//!
//! Kamailio's script (below) is the textbook stateful proxy: `save`/`lookup` on an in-memory
//! location table, `t_relay` for every request, in-dialog requests relayed to their
//! Request-URI (the bench sends every request to its target), no authentication.
//! `tandemd` authenticates every INVITE with digest (a 401 round trip), runs its dialplan,
//! opens a B leg and allocates a media session on the dataplane: it does more per call.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::io::sys::{Epoll, Mmsg};
use dataplane::io::{Batch, Token, Tx, MAX_DATAGRAM};

use super::cpsua::{Lean, LeanConfig};
use super::ua::{Engine, Event, UaConfig};
use super::{cpu, Account, BenchError};

/// A server to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Tandemd,
    Kamailio,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Tandemd => "tandemd",
            Target::Kamailio => "kamailio",
        }
    }
}

/// What a `cps` run needs.
#[derive(Debug, Clone)]
pub struct CpsOptions {
    pub targets: Vec<Target>,
    /// Calls per target.
    pub calls: usize,
    /// Calls in progress at most.
    pub window: usize,
    pub tandemd: PathBuf,
    pub kamailio: PathBuf,
    /// Bound on each target's placing phase.
    pub max_time: Duration,
    pub progress: bool,
    /// Pin the server (every thread and process) to this core.
    pub server_cpu: Option<usize>,
    /// Pin the bench to this core.
    pub bench_cpu: Option<usize>,
}

/// One target's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpsResult {
    pub target: Target,
    pub attempts: u64,
    pub answered: u64,
    pub failed: u64,
    /// Failed attempts by SIP status or reason.
    pub failures_by_code: std::collections::BTreeMap<String, u64>,
    pub completed: u64,
    /// Call setups per second over the placing phase.
    pub setups_per_s: f64,
    pub setup_ms_p50: f64,
    pub setup_ms_p99: f64,
    /// Server CPU (all its threads/processes sampled from /proc), percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// The server's busiest thread or process (tandemd's control thread, Kamailio's SIP
    /// worker), percent of one core: near 100 the server's control core is saturated.
    pub server_busiest_pct: Option<f64>,
    /// Call setups per CPU-second of the server (all its threads/processes), from /proc.
    pub setups_per_server_cpu_s: Option<f64>,
    /// Call setups per CPU-second of the server's busiest thread: per control core.
    pub setups_per_busiest_cpu_s: Option<f64>,
    /// The bench's own CPU, percent of one core (near 100: the bench is the limit).
    pub bench_cpu_pct: Option<f64>,
    /// The cores the server and the bench were pinned to.
    pub server_core: Option<usize>,
    pub bench_core: Option<usize>,
    /// Length of the placing phase (first INVITE to the last call ended), seconds.
    pub wall_s: f64,
    /// Requests (and callee 200s) the bench retransmitted.
    pub retransmissions: u64,
    /// Messages that matched no dialog or broke a rule, by kind.
    pub anomalies: std::collections::BTreeMap<String, u64>,
    /// tandemd / Kamailio in the same run (both targets measured; the same on both entries).
    pub ratios: Option<Ratios>,
}

/// tandemd's figures over Kamailio's, from one run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Ratios {
    pub setups_per_s: Option<f64>,
    pub setups_per_server_cpu_s: Option<f64>,
    pub setups_per_busiest_cpu_s: Option<f64>,
}

/// The tandemd / Kamailio ratios of `rs`, when both are there.
pub fn ratios(rs: &[CpsResult]) -> Option<Ratios> {
    let a = rs.iter().find(|r| r.target == Target::Tandemd)?;
    let b = rs.iter().find(|r| r.target == Target::Kamailio)?;
    let div = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    Some(Ratios {
        setups_per_s: div(Some(a.setups_per_s), Some(b.setups_per_s)),
        setups_per_server_cpu_s: div(a.setups_per_server_cpu_s, b.setups_per_server_cpu_s),
        setups_per_busiest_cpu_s: div(a.setups_per_busiest_cpu_s, b.setups_per_busiest_cpu_s),
    })
}

/// Runs every target in turn and returns their results.
pub fn run(o: &CpsOptions) -> Result<Vec<CpsResult>, BenchError> {
    if let Some(c) = o.bench_cpu {
        pin_self(c)?;
    }
    let mut out = Vec::new();
    for &t in &o.targets {
        let dir = std::env::temp_dir().join(format!(
            "tandem-bench-cps-{}-{}",
            t.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| io("temporary directory", e))?;
        let server = start(t, o, &dir)?;
        let r = drive(t, o, &server);
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        out.push(r?);
    }
    let rt = ratios(&out);
    for r in &mut out {
        r.ratios = rt;
    }
    Ok(out)
}

/// The human summary: one line per target and the ratios.
pub fn summary(rs: &[CpsResult]) -> String {
    let mut s = String::new();
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |c| format!("{c:.0}%"));
    for r in rs {
        s.push_str(&format!(
            "{:9} {:8.0} call setups/s  ({} of {} answered, {} failed{}; setup p50 {:.1} ms p99 \
             {:.1} ms)\n",
            r.target.name(),
            r.setups_per_s,
            r.answered,
            r.attempts,
            r.failed,
            if r.failures_by_code.is_empty() {
                String::new()
            } else {
                format!(" {:?}", r.failures_by_code)
            },
            r.setup_ms_p50,
            r.setup_ms_p99,
        ));
        s.push_str(&format!(
            "          {} setups per server CPU-second, {} per busiest-thread CPU-second; server \
             CPU {} (busiest thread {}{}), bench CPU {}{}; {} retransmissions{}\n",
            r.setups_per_server_cpu_s
                .map_or("-".to_string(), |v| format!("{v:.0}")),
            r.setups_per_busiest_cpu_s
                .map_or("-".to_string(), |v| format!("{v:.0}")),
            pct(r.server_cpu_pct),
            pct(r.server_busiest_pct),
            r.server_core
                .map_or(String::new(), |c| format!(", pinned to core {c}")),
            pct(r.bench_cpu_pct),
            r.bench_core
                .map_or(String::new(), |c| format!(" on core {c}")),
            r.retransmissions,
            if r.anomalies.is_empty() {
                String::new()
            } else {
                format!("; anomalies {:?}", r.anomalies)
            },
        ));
    }
    if let Some(r) = ratios(rs) {
        for (what, v) in [
            ("", r.setups_per_s),
            (" per server CPU-second", r.setups_per_server_cpu_s),
            (" per busiest-thread CPU-second", r.setups_per_busiest_cpu_s),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("ratio tandemd / kamailio{what}: {v:.2}\n"));
            }
        }
    }
    s
}

/// The edge's clock.
#[expect(
    clippy::disallowed_methods,
    reason = "the cps driver is the I/O edge: it owns the clock the sans-IO agents are fed"
)]
fn clock() -> Instant {
    Instant::now()
}

/// Datagrams per `sendmmsg`/`recvmmsg`.
const BATCH: usize = 64;

/// The SIP sockets of the bench users: 127.0.1.k, 4 MiB buffers, non-blocking.
fn sip_sockets(n: usize) -> Result<Vec<UdpSocket>, BenchError> {
    (0..n)
        .map(|k| {
            let addr = SocketAddr::from(([127, 0, 1, 1 + k as u8], 0));
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )
            .map_err(|e| io("SIP socket", e))?;
            let _ = s.set_recv_buffer_size(4 << 20);
            let _ = s.set_send_buffer_size(4 << 20);
            s.bind(&addr.into())
                .map_err(|e| io(&format!("bind SIP socket on {addr}"), e))?;
            s.set_nonblocking(true)
                .map_err(|e| io("SIP socket non-blocking", e))?;
            Ok(s.into())
        })
        .collect()
}

/// Runs the registration engine until every user is registered (or `Unbind` answered),
/// bounded by `limit`.
fn pump(eng: &mut Engine, socks: &[UdpSocket], want: usize, limit: Duration) -> usize {
    let until = clock() + limit;
    let mut ok = 0;
    let mut buf = vec![0u8; 65_536];
    while clock() < until {
        while let Some(t) = eng.poll_transmit() {
            if let Some(s) = socks.get(t.local) {
                let _ = s.send_to(&t.data, t.to);
            }
        }
        while let Some(ev) = eng.poll_event() {
            if matches!(ev, Event::Registered { .. }) {
                ok += 1;
            }
        }
        if ok >= want || (want == 0 && eng.registrations_pending() == 0) {
            break;
        }
        let mut got = false;
        for (i, s) in socks.iter().enumerate() {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                eng.handle_datagram(i, from, &buf[..n], clock());
                got = true;
            }
        }
        eng.handle_timeout(clock());
        if !got {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    ok
}

/// Sends what the agents queued: one `sendmmsg` per socket and batch.
fn send_out(lean: &mut Lean, socks: &[UdpSocket], out: &mut [Batch], mmsg: &mut Mmsg) -> u64 {
    let mut errors = 0;
    let mut idx: Vec<u16> = Vec::with_capacity(BATCH);
    let mut flush = |k: usize, b: &mut Batch, errors: &mut u64| {
        idx.clear();
        idx.extend(0..b.len() as u16);
        let mut at = 0;
        while at < idx.len() {
            match mmsg.send(socks[k].as_fd(), b, &idx[at..]) {
                Ok(n) if n > 0 => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(100));
                }
                _ => {
                    *errors += 1;
                    at += 1;
                }
            }
        }
        b.clear();
    };
    for o in lean.outs() {
        let data = &lean.buf()[o.range.clone()];
        let Some(b) = out.get_mut(o.local) else {
            continue;
        };
        if data.len() > MAX_DATAGRAM {
            if socks[o.local].send_to(data, o.to).is_err() {
                errors += 1;
            }
            continue;
        }
        if b.len() == b.capacity() {
            flush(o.local, b, &mut errors);
        }
        b.push(Token(o.local as u32), o.to, data);
        let n = b.len() - 1;
        b.get_mut(n).0.tx = Some(Tx {
            from: Token(o.local as u32),
            to: o.to,
        });
    }
    for (k, b) in out.iter_mut().enumerate() {
        if !b.is_empty() {
            flush(k, b, &mut errors);
        }
    }
    lean.clear_out();
    errors
}

/// Registers the bench users through `server`, runs the closed window of calls with the lean
/// agents, unregisters, and measures.
fn drive(t: Target, o: &CpsOptions, server: &Server) -> Result<CpsResult, BenchError> {
    let users = users();
    let socks = sip_sockets(users.len())?;
    let locals: Vec<SocketAddr> = socks
        .iter()
        .map(|s| s.local_addr().map_err(|e| io("SIP socket address", e)))
        .collect::<Result<_, _>>()?;
    // Offered in SDP; nothing is sent to it in a cps run (kept open so nothing bounces).
    let media = UdpSocket::bind("127.0.0.1:0").map_err(|e| io("RTP socket", e))?;
    let media_addr = media
        .local_addr()
        .map_err(|e| io("RTP socket address", e))?;
    let setup_timeout = Duration::from_secs(8);
    let mut reg = Engine::new(UaConfig {
        target: server.sip,
        locals: locals.clone(),
        users: users.clone(),
        trunk: false,
        codec: super::Codec::Pcmu,
        dtmf: false,
        media: vec![media_addr],
        setup_timeout,
    });
    reg.register_all(clock());
    let ok = pump(&mut reg, &socks, users.len(), Duration::from_secs(10));
    if ok < users.len() {
        return Err(BenchError::Register(format!(
            "{}: {ok} of {} users registered within 10 s",
            t.name(),
            users.len()
        )));
    }

    let mut lean = Lean::new(LeanConfig {
        target: server.sip,
        locals: locals.clone(),
        users: users.clone(),
        media: media_addr,
        setup_timeout,
        run: std::process::id(),
    });
    let epoll = Epoll::new(socks.len()).map_err(|e| io("epoll", e))?;
    for (i, s) in socks.iter().enumerate() {
        epoll
            .add(s.as_fd(), i as u64)
            .map_err(|e| io("epoll add", e))?;
    }
    let mut epoll = epoll;
    let mut mmsg = Mmsg::new(BATCH);
    let mut inb = Batch::new(BATCH);
    let mut outb: Vec<Batch> = socks.iter().map(|_| Batch::new(BATCH)).collect();
    let mut send_errors = 0u64;

    let pid = server.child.id();
    let me = std::process::id();
    let start = clock();
    let server0 = cpu::sample_tree(pid);
    let bench0 = cpu::sample(me);
    let place_until = start + o.max_time;
    let stop_at = place_until + setup_timeout * 2;
    let mut placed = 0usize;
    let mut last_progress = start;
    loop {
        let now = clock();
        while lean.active() < o.window && placed < o.calls && now < place_until {
            lean.place_call(now);
            placed += 1;
        }
        lean.handle_timeout(now);
        send_errors += send_out(&mut lean, &socks, &mut outb, &mut mmsg);
        if (placed == o.calls || now >= place_until) && lean.active() == 0 {
            break;
        }
        if now >= stop_at {
            break;
        }
        if o.progress && now >= last_progress + Duration::from_secs(1) {
            last_progress = now;
            let tl = lean.tally();
            eprintln!(
                "{}: t={:4.0}s placed {placed} answered {} failed {} active {}",
                t.name(),
                now.duration_since(start).as_secs_f64(),
                tl.answered,
                tl.failed,
                lean.active()
            );
        }
        let mut got = 0;
        for (i, s) in socks.iter().enumerate() {
            loop {
                inb.clear();
                let n = mmsg
                    .recv(s.as_fd(), &mut inb, Token(i as u32), BATCH)
                    .unwrap_or(0);
                let at = clock();
                for k in 0..n {
                    let peer = inb.meta(k).peer;
                    lean.handle_datagram(i, peer, inb.datagram(k), at);
                }
                got += n;
                if n < BATCH {
                    break;
                }
                send_errors += send_out(&mut lean, &socks, &mut outb, &mut mmsg);
            }
        }
        if got == 0 {
            let wait = lean.poll_timeout().map_or(5, |w| {
                w.saturating_duration_since(now).as_millis().min(5) as i32
            });
            let _ = epoll.wait(wait.max(1));
        }
    }
    let end = clock();
    let server1 = cpu::sample_tree(pid);
    let bench1 = cpu::sample(me);
    let wall = end.duration_since(start).as_secs_f64();

    reg.unregister_all(clock());
    pump(&mut reg, &socks, 0, Duration::from_secs(1));

    let tl = lean.tally();
    let (srv_total, srv_busiest) = cpu::delta_secs(&server0, &server1, 100.0);
    let (bench_total, _) = cpu::delta_secs(&bench0, &bench1, 100.0);
    let mut setups: Vec<u32> = tl.setup_us.clone();
    setups.sort_unstable();
    let q = |p: f64| {
        if setups.is_empty() {
            0.0
        } else {
            let i = ((setups.len() - 1) as f64 * p).round() as usize;
            f64::from(setups[i]) / 1000.0
        }
    };
    let mut anomalies: std::collections::BTreeMap<String, u64> = tl
        .anomalies
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    if send_errors > 0 {
        anomalies.insert("send-errors".into(), send_errors);
    }
    let unfinished = lean.active() as u64;
    if unfinished > 0 {
        anomalies.insert("unfinished-calls".into(), unfinished);
    }
    let pct = |secs: f64| (wall > 0.0).then(|| secs / wall * 100.0);
    Ok(CpsResult {
        target: t,
        attempts: tl.attempts,
        answered: tl.answered,
        failed: tl.failed,
        failures_by_code: tl.failures_by_code.clone(),
        completed: tl.completed,
        setups_per_s: if wall > 0.0 {
            tl.answered as f64 / wall
        } else {
            0.0
        },
        setup_ms_p50: q(0.5),
        setup_ms_p99: q(0.99),
        server_cpu_pct: pct(srv_total).filter(|&c| c > 0.0),
        server_busiest_pct: pct(srv_busiest).filter(|&c| c > 0.0),
        setups_per_server_cpu_s: (srv_total > 0.0).then(|| tl.answered as f64 / srv_total),
        setups_per_busiest_cpu_s: (srv_busiest > 0.0).then(|| tl.answered as f64 / srv_busiest),
        bench_cpu_pct: pct(bench_total),
        server_core: o.server_cpu,
        bench_core: o.bench_cpu,
        wall_s: wall,
        retransmissions: tl.retransmissions,
        anomalies,
        ratios: None,
    })
}

/// A CPU set holding core `cpu` alone.
fn cpu_set(cpu: usize) -> Result<libc::cpu_set_t, BenchError> {
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if cpu >= max {
        return Err(BenchError::Options(format!(
            "core {cpu} is beyond the largest CPU set ({max} cores)"
        )));
    }
    // SAFETY: cpu_set_t is a plain bit array, for which all-zero bytes is the empty set;
    // CPU_SET writes bit `cpu`, inside the set (checked above).
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    Ok(set)
}

/// Pins the calling thread (the bench's only thread in a cps run) to core `cpu`.
fn pin_self(cpu: usize) -> Result<(), BenchError> {
    let set = cpu_set(cpu)?;
    // SAFETY: `set` is a live, initialised cpu_set_t and the size passed is its size; pid 0
    // is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(io(
            &format!("pin the bench to core {cpu}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn users() -> Vec<Account> {
    (1001..=1004)
        .map(|u| Account {
            name: u.to_string(),
            password: format!("tandem{u}"),
        })
        .collect()
}

fn io(what: &str, source: std::io::Error) -> BenchError {
    BenchError::Io {
        what: what.to_string(),
        source,
    }
}

/// A server the bench started; killed on drop.
struct Server {
    child: Child,
    sip: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL to the server's own process group (Kamailio forks its workers and timers,
        // which outlive a kill of the main process alone): both servers keep no state worth
        // a clean stop here.
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group; the group was
            // made for this child alone (`process_group(0)` at spawn), so nothing else is hit.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BenchError> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| io("free UDP port", e))
}

fn start(t: Target, o: &CpsOptions, dir: &Path) -> Result<Server, BenchError> {
    let port = free_port()?;
    let sip = SocketAddr::from(([127, 0, 0, 1], port));
    let (bin, args, cfg_name, cfg) = match t {
        Target::Tandemd => {
            let cfg = tandemd_config(port, dir, o.server_cpu.unwrap_or(0))?;
            let path = dir.join("tandem.toml");
            (
                o.tandemd.clone(),
                vec!["--config".to_string(), path.display().to_string()],
                "tandem.toml",
                cfg,
            )
        }
        Target::Kamailio => {
            let path = dir.join("kamailio.cfg");
            (
                o.kamailio.clone(),
                vec![
                    "-f".to_string(),
                    path.display().to_string(),
                    "-DD".into(),
                    "-E".into(),
                    "-Y".into(),
                    dir.display().to_string(),
                    "-m".into(),
                    "256".into(),
                    // The same 4 MiB UDP receive buffer tandemd asks for (Kamailio's
                    // auto-probing stops at 256 KiB by default and a window of calls
                    // then overflows it: kernel drops and retransmissions).
                    "-b".into(),
                    "4194304".into(),
                ],
                "kamailio.cfg",
                kamailio_config(port),
            )
        }
    };
    std::fs::write(dir.join(cfg_name), cfg).map_err(|e| io(cfg_name, e))?;
    if !bin.exists() {
        return Err(BenchError::Options(format!(
            "{}: {} not found (build it, or install it: apt-get install kamailio)",
            t.name(),
            bin.display()
        )));
    }
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| io("server log", e))?;
    let mut cmd = Command::new(&bin);
    // Its own process group, killed as a whole on drop.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(core) = o.server_cpu {
        use std::os::unix::process::CommandExt;
        let set = cpu_set(core)?;
        // SAFETY: the closure runs in the child between fork and exec and only makes the
        // async-signal-safe sched_setaffinity system call on a cpu_set_t copied before the
        // fork; every thread and process the server starts inherits the mask.
        unsafe {
            cmd.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| io(&format!("start {}", bin.display()), e))?;
    let server = Server { child, sip };
    if !answers(sip) {
        let tail = std::fs::File::open(dir.join("server.log"))
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        return Err(BenchError::Options(format!(
            "{} did not answer SIP on {sip} within 10 s:\n{tail}",
            t.name()
        )));
    }
    Ok(server)
}

/// Whether `sip` answers an OPTIONS (any response) within 10 s.
fn answers(sip: SocketAddr) -> bool {
    let Ok(probe) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = probe.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(local) = probe.local_addr() else {
        return false;
    };
    let msg = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKcpsprobe\r\n\
         From: <sip:probe@{local}>;tag=p\r\nTo: <sip:{sip}>\r\nCall-ID: cps-probe\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        let _ = probe.send_to(msg.as_bytes(), sip);
        if probe.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

fn tandemd_config(port: u16, dir: &Path, core: usize) -> Result<String, BenchError> {
    // Each call holds two RTP/RTCP port pairs (A and B side) until its session is freed: 10 000
    // ports keep 2 500 calls, far above any window (a small range answers 503 when full).
    let rtp = 20_000;
    let mut cfg = format!("[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\nrealm = \"tandem\"\n");
    for u in users() {
        cfg.push_str(&format!(
            "[[sip.user]]\nname = \"{}\"\npassword = \"{}\"\n",
            u.name, u.password
        ));
    }
    // The bench's sources are trusted (no per-source rate limit) and the caps do not bind.
    let allow: Vec<String> = (1..=4)
        .map(|k| format!("\"127.0.1.{k}\""))
        .chain(["\"127.0.0.1\"".to_string()])
        .collect();
    cfg.push_str(&format!(
        "[sip.limits]\nmax_dialogs = 100000\nmax_transactions = 100000\nallow = [{}]\n",
        allow.join(", ")
    ));
    cfg.push_str(&format!(
        "[dataplane]\nbackend = \"socket\"\ncores = [{core}]\nrtp_ports = \"{rtp}-{}\"\n\
         media_ip = \"127.0.0.1\"\n[mgmt]\nsocket = \"{}\"\n",
        rtp + 9_999,
        dir.join("tandemd.sock").display()
    ));
    Ok(cfg)
}

/// Kamailio 5.6 as a stateful proxy with an in-memory registrar, one SIP worker process.
fn kamailio_config(port: u16) -> String {
    format!(
        r#"#!KAMAILIO
# Generated by tandem-bench cps: a stateful proxy with an in-memory registrar.
debug=1
log_stderror=yes
children=1
listen=udp:127.0.0.1:{port}
disable_tcp=yes
enable_sctp=no
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=off
dns_try_ipv6=no
dns_try_naptr=no

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"

modparam("usrloc", "db_mode", 0)
modparam("tm", "fr_timer", 5000)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        # In-dialog (ACK, BYE): the bench sends every request through us, to its
        # Request-URI (the peer's Contact).
        loose_route();
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (t_check_trans()) {{
        exit;
    }}
    if (is_method("REGISTER")) {{
        save("location");
        exit;
    }}
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_prints_each_target_and_the_ratio() {
        let r = |target, cps| CpsResult {
            target,
            attempts: 100,
            answered: 100,
            failed: 0,
            failures_by_code: Default::default(),
            completed: 100,
            setups_per_s: cps,
            setup_ms_p50: 1.0,
            setup_ms_p99: 2.0,
            server_cpu_pct: Some(50.0),
            server_busiest_pct: Some(40.0),
            setups_per_server_cpu_s: Some(cps * 2.0),
            setups_per_busiest_cpu_s: Some(cps * 2.5),
            bench_cpu_pct: Some(10.0),
            server_core: Some(0),
            bench_core: Some(1),
            wall_s: 1.0,
            retransmissions: 0,
            anomalies: Default::default(),
            ratios: None,
        };
        let s = summary(&[r(Target::Tandemd, 500.0), r(Target::Kamailio, 1000.0)]);
        assert!(s.contains("tandemd        500 call setups/s"), "{s}");
        assert!(s.contains("kamailio      1000 call setups/s"), "{s}");
        assert!(s.contains("ratio tandemd / kamailio: 0.50"), "{s}");
        assert!(s.contains("1000 setups per server CPU-second, 1250 per busiest-thread CPU-second; server CPU 50% (busiest thread 40%, pinned to core 0), bench CPU 10% on core 1"), "{s}");
        assert!(
            s.contains("ratio tandemd / kamailio per server CPU-second: 0.50"),
            "{s}"
        );
        assert!(!summary(&[r(Target::Tandemd, 5.0)]).contains("ratio"));
        let rt = ratios(&[r(Target::Kamailio, 1000.0), r(Target::Tandemd, 500.0)]).unwrap();
        assert_eq!(rt.setups_per_s, Some(0.5));
        assert_eq!(rt.setups_per_busiest_cpu_s, Some(0.5));
        assert_eq!(ratios(&[r(Target::Kamailio, 1000.0)]), None);
    }

    #[test]
    fn configs_name_the_port() {
        assert!(kamailio_config(5999).contains("listen=udp:127.0.0.1:5999"));
        let t = tandemd_config(5998, Path::new("/tmp/x"), 1).unwrap();
        assert!(t.contains("cores = [1]"), "{t}");
        assert!(t.contains("udp:127.0.0.1:5998"));
        assert!(t.contains("\"127.0.1.4\""));
    }
}
