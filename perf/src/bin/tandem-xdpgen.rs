//! `tandem-xdpgen`: AF_XDP RTP load generator and sink for relay benchmarks
//! on a veth pair (see [`perf::xdpgen`]).
//!
//! ```text
//! tandem-xdpgen mkmap --calls 1000 --gen-ip 10.231.0.1 --relay-ip 10.231.0.2 --out calls.map
//! tandem-xdpgen run --interface xp0 --relay-mac 02:..:.. --map calls.map \
//!     --rate 1000000 --duration 3 --warmup 1 [--tx live|xsk] \
//!     [--pid RELAY_PID --relay-cpu 0 --napi-pid PID ...]
//! tandem-xdpgen peer --interface xr0 --action drop --seconds 6
//! ```
//! `run` prints one JSON line (packets/s, loss, order, latency, relay CPU).
//! `peer` attaches a counting XDP program (drop or pass), prints `ready`,
//! and after `--seconds` one JSON line with the frames it saw.
//! Both must run in the namespace that owns `--interface`, as root.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use dataplane::io::xdp::live::Verdict;
use perf::xdpgen;

#[derive(Parser)]
#[command(name = "tandem-xdpgen", about = "AF_XDP RTP load generator and sink")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Tx {
    /// AF_XDP tx ring.
    Xsk,
    /// BPF_PROG_TEST_RUN live frames + XDP_TX.
    Live,
}

#[derive(Clone, Copy, ValueEnum)]
enum Action {
    Drop,
    Pass,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a mapping file for a static relay on a veth pair.
    Mkmap {
        #[arg(long)]
        calls: usize,
        #[arg(long, default_value = "10.231.0.1")]
        gen_ip: Ipv4Addr,
        /// First generator port (A: base + i, B: base + calls + i).
        #[arg(long, default_value_t = 2000)]
        gen_port_base: u16,
        #[arg(long, default_value = "10.231.0.2")]
        relay_ip: Ipv4Addr,
        /// First relay port (4 per call).
        #[arg(long, default_value_t = 20_000)]
        relay_port_base: u16,
        #[arg(long)]
        out: PathBuf,
    },
    /// Drive the relay of `--map` and print one JSON line.
    Run {
        #[arg(long)]
        interface: String,
        /// MAC of the relay's end of the veth pair.
        #[arg(long)]
        relay_mac: String,
        #[arg(long)]
        map: PathBuf,
        /// Aggregate packets/s (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[arg(long, default_value_t = 0.3)]
        drain: f64,
        /// Frames per tx ring flush (xsk) or kernel batch (live, <= 256).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// How frames are sent.
        #[arg(long, value_enum, default_value_t = Tx::Xsk)]
        tx: Tx,
        /// Live mode: most frames sent back to back when catching up after
        /// the sending thread was not scheduled.
        #[arg(long, default_value_t = 256)]
        catch_up: u32,
        /// Live mode: frames due within this many us go out together.
        #[arg(long, default_value_t = 20)]
        tick_us: u64,
        /// Live mode: sleep (us) when a receive poll found nothing.
        #[arg(long, default_value_t = 50)]
        idle_sleep_us: u64,
        /// Kernel thread (threaded NAPI of the relay's interface) whose CPU
        /// time counts as the relay's; repeatable.
        #[arg(long)]
        napi_pid: Vec<u32>,
        /// Relay process to sample CPU time of.
        #[arg(long)]
        pid: Option<u32>,
        /// Relay core to sample busy time of.
        #[arg(long)]
        relay_cpu: Option<usize>,
    },
    /// Count the frames arriving at an interface (XDP), then drop or pass.
    Peer {
        #[arg(long)]
        interface: String,
        #[arg(long, value_enum, default_value_t = Action::Drop)]
        action: Action,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

fn secs(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("--{what} {s}: {e}"))
}

fn main() -> ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::Mkmap {
            calls,
            gen_ip,
            gen_port_base,
            relay_ip,
            relay_port_base,
            out,
        } => xdpgen::make_map(calls, gen_ip, gen_port_base, relay_ip, relay_port_base).and_then(
            |t| std::fs::write(&out, t).map_err(|e| format!("write {}: {e}", out.display())),
        ),
        Cmd::Run {
            interface,
            relay_mac,
            map,
            rate,
            duration,
            warmup,
            drain,
            batch,
            tx,
            catch_up,
            idle_sleep_us,
            tick_us,
            napi_pid,
            pid,
            relay_cpu,
        } => (|| {
            let cfg = xdpgen::GenConfig {
                interface,
                relay_mac: xdpgen::parse_mac(&relay_mac)?,
                calls: xdpgen::read_map(&map).map_err(|e| e.to_string())?,
                rate: (rate > 0.0).then_some(rate),
                warmup: secs(warmup, "warmup")?,
                duration: secs(duration, "duration")?,
                drain: secs(drain, "drain")?,
                batch,
                tx: match tx {
                    Tx::Xsk => xdpgen::TxMode::Xsk,
                    Tx::Live => xdpgen::TxMode::Live,
                },
                catch_up,
                idle_sleep_us,
                tick_us,
                napi_pids: napi_pid,
                relay_pid: pid,
                relay_cpu,
            };
            let rep = xdpgen::run(&cfg, &dataplane::clock::now).map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string(&rep).map_err(|e| e.to_string())?
            );
            Ok(())
        })(),
        Cmd::Peer {
            interface,
            action,
            seconds,
        } => (|| {
            let verdict = match action {
                Action::Drop => Verdict::Drop,
                Action::Pass => Verdict::Pass,
            };
            let d = secs(seconds, "seconds")?;
            let peer = xdpgen::Peer::attach(&interface, verdict).map_err(|e| e.to_string())?;
            println!("ready native={}", peer.native);
            std::thread::sleep(d);
            let frames = peer.count().map_err(|e| e.to_string())?;
            println!("{{\"frames\":{frames},\"native\":{}}}", peer.native);
            Ok(())
        })(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-xdpgen: {e}");
            ExitCode::FAILURE
        }
    }
}
