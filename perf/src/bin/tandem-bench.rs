//! `tandem-bench`: SIP + RTP call load generator (see `perf::bench`).
//!
//! ```text
//! tandem-bench cps [--against tandemd,kamailio] [--calls N] [--window W] [--json FILE]
//!     [--server-cpu CORE] [--bench-cpu CORE]
//! tandem-bench ramp|hold|burst --target HOST:PORT [--users 1001-1004 --password-prefix tandem
//!     | --trunk] --calls N --rate CPS --duration S --codec pcmu|pcma|g729 --json FILE
//!     --chart FILE [--pid PID] [--dial EXT] [--dtmf DIGITS] [--no-media]
//! ```
//! The defaults work against `tandemd` started with no arguments: users 1001-1004 (passwords
//! tandem1001...) call each other through the gateway (1001 -> 1002, 1003 -> 1004).
//!
//! Exit status: 0 when every call succeeded (ramp: when a maximum was found), 1 when some
//! failed, 2 on bad options or when the run could not start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use perf::bench::{self, cps, Account, Codec, Mode, Options};

#[derive(Parser)]
#[command(
    name = "tandem-bench",
    version,
    about = "SIP + RTP call load generator for Tandem"
)]
struct Args {
    /// ramp: raise the rate until the failure budget breaks; hold: N calls at a rate;
    /// burst: N calls at once; cps: call setup rate of tandemd and Kamailio (no media),
    /// each started by the bench, side by side.
    #[arg(value_enum)]
    mode: ModeArg,
    /// The gateway's SIP address.
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: String,
    /// Users to register and call from, FIRST-LAST or a comma list.
    #[arg(long, default_value = "1001-1004")]
    users: String,
    /// Password of user U is PREFIX + U.
    #[arg(long, default_value = "tandem")]
    password_prefix: String,
    /// Act as a trunk: no registration, no digest (use with --dial).
    #[arg(long, conflicts_with_all = ["users", "password_prefix"])]
    trunk: bool,
    /// Dial this number for every call (e.g. 600, the embedded echo test) instead of another
    /// bench user.
    #[arg(long)]
    dial: Option<String>,
    /// hold/burst: calls to place (the concurrency target); ramp: concurrency cap.
    #[arg(long)]
    calls: Option<usize>,
    /// Call attempts per second (ramp: first step and increment).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Seconds each answered call is held.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Ramp: seconds per rate step.
    #[arg(long, default_value_t = 10.0)]
    step: f64,
    /// Hard bound on the placing phase, seconds.
    #[arg(long, default_value_t = 300.0)]
    max_time: f64,
    #[arg(long, value_enum, default_value = "pcmu")]
    codec: CodecArg,
    /// DTMF digits each caller sends (RFC 4733) one second into the call.
    #[arg(long, default_value = "")]
    dtmf: String,
    /// Gateway PID to sample CPU per core from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Local SIP source addresses (127.0.1.x on loopback); 0 = automatic.
    #[arg(long, default_value_t = 0)]
    sources: usize,
    /// Ramp failure budget: max % of failed attempts in a step.
    #[arg(long, default_value_t = 1.0)]
    max_failures: f64,
    /// Ramp budget: max % RTP loss in a step.
    #[arg(long, default_value_t = 1.0)]
    max_loss: f64,
    /// Ramp budget: max p99 setup latency in a step, ms.
    #[arg(long, default_value_t = 1000.0)]
    max_setup_ms: f64,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG chart here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Allow a target outside loopback (needs --local-ip).
    #[arg(long)]
    allow_remote: bool,
    /// Local IP for SIP and RTP with --allow-remote.
    #[arg(long)]
    local_ip: Option<std::net::IpAddr>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
    /// Signalling only: no RTP (measures call setup rate).
    #[arg(long)]
    no_media: bool,
    /// Media threads, each with its own RTP socket; 0 = one per 250 calls (1 to 8).
    #[arg(long, default_value_t = 0)]
    media_threads: usize,
    /// cps: servers to start and measure in turn, comma separated (tandemd, kamailio).
    #[arg(long, default_value = "tandemd,kamailio")]
    against: String,
    /// cps: calls in progress at most.
    #[arg(long, default_value_t = 50)]
    window: usize,
    /// cps: the tandemd binary (default: beside tandem-bench).
    #[arg(long)]
    tandemd: Option<PathBuf>,
    /// cps: the kamailio binary.
    #[arg(long, default_value = "/usr/sbin/kamailio")]
    kamailio: PathBuf,
    /// cps: pin the server (all its threads and processes) to this core.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// cps: pin the bench to this core.
    #[arg(long)]
    bench_cpu: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Ramp,
    Hold,
    Burst,
    Cps,
}

#[derive(Clone, Copy, ValueEnum)]
enum CodecArg {
    Pcmu,
    Pcma,
    G729,
}

fn parse_users(spec: &str, prefix: &str) -> Result<Vec<Account>, String> {
    let mut names = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = match (a.parse(), b.parse()) {
                    (Ok(a), Ok(b)) if a <= b && b - a < 100_000 => (a, b),
                    _ => return Err(format!("--users: bad range \"{part}\" (e.g. 1001-1004)")),
                };
                names.extend((a..=b).map(|u| u.to_string()));
            }
            None => names.push(part.to_string()),
        }
    }
    if names.is_empty() {
        return Err("--users: no user".into());
    }
    Ok(names
        .into_iter()
        .map(|n| Account {
            password: format!("{prefix}{n}"),
            name: n,
        })
        .collect())
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    if (0.0..1e6).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("--{what}: expected seconds >= 0, got {v}"))
    }
}

fn options(a: &Args) -> Result<Options, String> {
    let target: std::net::SocketAddr = match a.target.parse() {
        Ok(t) => t,
        Err(_) => {
            use std::net::ToSocketAddrs;
            a.target
                .to_socket_addrs()
                .ok()
                .and_then(|mut i| i.next())
                .ok_or_else(|| format!("--target {}: expected HOST:PORT", a.target))?
        }
    };
    if !target.ip().is_loopback() && !a.allow_remote {
        return Err(format!(
            "--target {target} is not loopback: tandem-bench only loads loopback (or a \
             namespace you reach over loopback) unless --allow-remote is given"
        ));
    }
    let mode = match a.mode {
        ModeArg::Ramp => Mode::Ramp,
        ModeArg::Hold => Mode::Hold,
        ModeArg::Burst => Mode::Burst,
        // `cps` starts its own servers: see `cps()`.
        ModeArg::Cps => return Err("cps is not a load mode against a target".into()),
    };
    let d = Options::default();
    Ok(Options {
        mode,
        target,
        users: if a.trunk {
            Vec::new()
        } else {
            parse_users(&a.users, &a.password_prefix)?
        },
        trunk: a.trunk,
        dial: match (&a.dial, a.trunk) {
            (None, true) => Some("600".into()),
            (d, _) => d.clone(),
        },
        calls: a
            .calls
            .unwrap_or(if mode == Mode::Ramp { 5000 } else { d.calls }),
        rate: a.rate,
        duration: secs(a.duration, "duration")?,
        step: secs(a.step, "step")?,
        max_time: secs(a.max_time, "max-time")?,
        codec: match a.codec {
            CodecArg::Pcmu => Codec::Pcmu,
            CodecArg::Pcma => Codec::Pcma,
            CodecArg::G729 => Codec::G729,
        },
        dtmf: a.dtmf.clone(),
        pid: a.pid,
        sources: a.sources,
        local_ip: a.local_ip,
        failure_budget_pct: a.max_failures,
        loss_budget_pct: a.max_loss,
        setup_budget_ms: a.max_setup_ms,
        progress: !a.quiet,
        media: !a.no_media,
        media_threads: a.media_threads,
        ..d
    })
}

fn cps(a: &Args) -> ExitCode {
    let mut targets = Vec::new();
    for t in a
        .against
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        targets.push(match t {
            "tandemd" => cps::Target::Tandemd,
            "kamailio" => cps::Target::Kamailio,
            _ => {
                eprintln!("tandem-bench: --against {t}: expected tandemd and/or kamailio");
                return ExitCode::from(2);
            }
        });
    }
    let tandemd = a.tandemd.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.join("tandemd")))
            .unwrap_or_else(|| PathBuf::from("tandemd"))
    });
    let o = cps::CpsOptions {
        targets,
        calls: a.calls.unwrap_or(2000),
        window: a.window.max(1),
        tandemd,
        kamailio: a.kamailio.clone(),
        max_time: Duration::from_secs_f64(a.max_time.clamp(1.0, 3600.0)),
        progress: !a.quiet,
        server_cpu: a.server_cpu,
        bench_cpu: a.bench_cpu,
    };
    let rs = match cps::run(&o) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem-bench: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", cps::summary(&rs));
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&rs).unwrap_or_default();
        if let Err(e) = std::fs::write(p, text) {
            eprintln!("tandem-bench: write {}: {e}", p.display());
            return ExitCode::from(2);
        }
    }
    if rs.iter().all(|r| r.answered > 0 && r.failed == 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if matches!(args.mode, ModeArg::Cps) {
        return cps(&args);
    }
    let opts = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tandem-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mode = opts.mode;
    let report = match bench::run::run(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem-bench: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.summary());
    if let Some(p) = &args.json {
        if let Err(e) = std::fs::write(p, report.json()) {
            eprintln!("tandem-bench: write {}: {e}", p.display());
            return ExitCode::from(2);
        }
    }
    if let Some(p) = &args.chart {
        if let Err(e) = std::fs::write(p, report.svg()) {
            eprintln!("tandem-bench: write {}: {e}", p.display());
            return ExitCode::from(2);
        }
    }
    let ok = match mode {
        Mode::Ramp => report
            .ramp
            .as_ref()
            .is_some_and(|r| r.max_concurrent_ok > 0),
        _ => report.failed == 0 && report.unfinished == 0 && report.answered == report.attempts,
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
