//! `tandemd`, the Tandem daemon.
//!
//! `tandemd` runs the embedded default (loopback only, demo users 1001-1004);
//! `tandemd --config tandem.toml` runs a configuration file;
//! `tandemd --check-config tandem.toml` validates one and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use control::config::Config;

/// mimalloc instead of glibc malloc: a call set-up allocates and frees a few thousand small
/// strings and vectors (parsed headers, built messages), and glibc's `malloc`/`free` were about
/// a fifth of the control thread's instructions per set-up.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "tandemd",
    version,
    about = "Tandem telephony media gateway daemon"
)]
struct Args {
    /// Configuration file (tandem.toml). Without it: the embedded default.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE (and the dialplan it names), print the result and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Log filter (tracing env-filter syntax), e.g. "info" or "control=debug".
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        return match Config::load(path) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} listener(s), {} user(s), dialplan {}, context {})",
                    path.display(),
                    cfg.listen.len(),
                    cfg.users.len(),
                    cfg.dialplan_file
                        .as_ref()
                        .map_or("embedded".to_string(), |f| f.display().to_string()),
                    cfg.context
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let cfg = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => Config::embedded_default(),
    };
    dataplane::io::xdp::set_offload(cfg.xdp_offload);
    dataplane::io::xdp::reserve::set_port_sockets(cfg.xdp_port_sockets);
    let dp = match dataplane::Dataplane::start(cfg.dataplane.clone()) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("tandemd: dataplane: {e}");
            return ExitCode::from(1);
        }
    };
    // systemd: READY=1 and the worker-checking watchdog (no-op outside systemd).
    control::notify::start(cfg.dataplane.cores.len());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandemd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(control::net::run(cfg, dp)) {
        Ok(dp) => {
            dp.shutdown();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandemd: {e}");
            ExitCode::from(1)
        }
    }
}
