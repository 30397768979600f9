//! `tandemctl`, the command line for a running `tandemd`.
//!
//! `tandemctl show calls|registrations|workers|sip|trunks|spans|channels|stats` (`stats`: every
//! counter of the metrics endpoint in Prometheus text form), `tandemctl hangup CALL-ID`;
//! `--json` prints the daemon's JSON instead of a table; `--socket PATH` picks
//! the daemon (default: the embedded default's management socket).
//!
//! `tandemctl tune check [--config tandem.toml] [--iface IFACE]` needs no daemon: it reads
//! the machine and the configuration and says what to fix for the dataplane cores (exit 1
//! when something should be fixed, 2 when the configuration does not load).
//! `tandemctl tune apply [--config tandem.toml] [--iface IFACE] [--dry-run]` writes the
//! run-time part of those fixes (IRQ affinity, frequency governor) and prints the rest
//! (kernel command line, config); `tandem-tune.service` runs it before `tandemd`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use control::mgmt::{CallInfo, MgmtReply, MgmtRequest, RegistrationInfo, SipStats, WorkerInfo};

#[derive(Parser, Debug)]
#[command(name = "tandemctl", version, about = "Control a running tandemd")]
struct Args {
    /// Management socket of the daemon.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON (for scripts) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show state: calls, registrations, workers, sip, trunks, spans, channels, stats.
    Show {
        #[arg(value_parser = ["calls", "registrations", "workers", "sip", "trunks", "spans", "channels", "stats"])]
        what: String,
    },
    /// Hang up a call by Tandem id (c12) or either leg's SIP Call-ID.
    Hangup { call_id: String },
    /// Machine tuning for the dataplane cores.
    Tune {
        #[command(subcommand)]
        action: TuneCmd,
    },
}

#[derive(Subcommand, Debug)]
enum TuneCmd {
    /// Check isolation, tick, RCU, governor, IRQs, NIC queues and locked memory against the
    /// configured dataplane cores; print each finding with its fix.
    Check {
        /// Configuration file (default: the embedded default).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// The AF_XDP interface whose queues and IRQs to check.
        #[arg(long, value_name = "IFACE")]
        iface: Option<String>,
        /// Also print the checks that passed.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Apply what can change at run time (IRQ affinity of NIC queues and telephony cards,
    /// CPU frequency governor) and print the kernel command line and settings for the rest.
    Apply {
        /// Configuration file (default: the embedded default).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// The AF_XDP interface whose queue IRQs to place.
        #[arg(long, value_name = "IFACE")]
        iface: Option<String>,
        /// Print the writes without making them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The configuration `tune check`/`tune apply` plan for (the embedded default without
/// `--config`); exit status 2 when it does not load.
fn tune_config(config: Option<&PathBuf>) -> Result<control::config::Config, ExitCode> {
    match config {
        Some(p) => control::config::Config::load(p).map_err(|e| {
            eprintln!("tandemctl: {e}");
            ExitCode::from(2)
        }),
        None => Ok(control::config::Config::embedded_default()),
    }
}

fn tune_plan(cfg: &control::config::Config) -> control::tune::Plan {
    control::tune::Plan {
        cores: cfg.dataplane.cores.clone(),
        xdp: cfg.dataplane.backend == dataplane::Backend::Xdp,
        umem_bytes_per_worker: (dataplane::io::xdp::xsk::FRAMES
            * dataplane::io::xdp::xsk::FRAME_SIZE) as u64,
    }
}

/// `tandemctl tune apply`: the runtime-changeable fixes of `tune check` (IRQ affinity,
/// frequency governor) written, the rest printed (kernel command line, config, limits).
/// Exit 0 when every write took, 1 when one failed, 2 when the config does not load.
fn tune_apply(config: Option<&PathBuf>, iface: Option<&str>, dry_run: bool) -> ExitCode {
    let cfg = match tune_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let findings = control::tune::check(&control::tune::read_machine(iface), &tune_plan(&cfg));
    let writes = control::tune::runtime_writes(&findings);
    let mut failed = 0;
    if dry_run {
        for w in &writes {
            println!("would write {} > {}", w.value, w.path);
        }
    } else {
        let results = control::tune::apply_writes(&writes, std::path::Path::new("/"));
        for (w, r) in writes.iter().zip(results) {
            match r {
                Ok(()) => println!("wrote {} > {}", w.value, w.path),
                Err(e) => {
                    failed += 1;
                    eprintln!("tandemctl tune apply: {e}");
                }
            }
        }
    }
    if writes.is_empty() {
        println!("nothing to change at run time");
    }
    let rest = control::tune::boot_fixes(&findings);
    if !rest.is_empty() {
        println!("still to do by hand (kernel command line, config, limits: then reboot/restart):");
        for f in rest {
            println!("{f}");
        }
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `tandemctl tune check`.
fn tune_check(
    config: Option<&PathBuf>,
    iface: Option<&str>,
    verbose: bool,
    json: bool,
) -> ExitCode {
    let cfg = match tune_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let plan = tune_plan(&cfg);
    let machine = control::tune::read_machine(iface);
    let findings = control::tune::check(&machine, &plan);
    if json {
        let v: Vec<serde_json::Value> = findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "severity": f.severity.to_string().to_lowercase(),
                    "topic": f.topic,
                    "message": f.message,
                    "fix": f.fix,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "tandemctl tune check: {} CPU(s), dataplane cores {} ({}), backend {:?}",
            machine.cpus,
            control::tune::format_cpu_list(&plan.cores),
            cfg.path
                .as_ref()
                .map_or("embedded default".to_string(), |p| p.display().to_string()),
            cfg.dataplane.backend
        );
        for f in &findings {
            if verbose || f.severity != control::tune::Severity::Ok {
                println!("{f}");
            }
        }
    }
    if control::tune::needs_action(&findings) {
        if !json {
            println!("=> some settings need fixing (see above)");
        }
        ExitCode::from(1)
    } else {
        if !json {
            println!("=> the machine is tuned for the dataplane cores");
        }
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Cmd::Tune {
        action:
            TuneCmd::Check {
                config,
                iface,
                verbose,
            },
    } = &args.cmd
    {
        return tune_check(config.as_ref(), iface.as_deref(), *verbose, args.json);
    }
    if let Cmd::Tune {
        action:
            TuneCmd::Apply {
                config,
                iface,
                dry_run,
            },
    } = &args.cmd
    {
        return tune_apply(config.as_ref(), iface.as_deref(), *dry_run);
    }
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(control::config::default_mgmt_socket);
    let req = match &args.cmd {
        Cmd::Show { what } => match what.as_str() {
            "calls" => MgmtRequest::ShowCalls,
            "registrations" => MgmtRequest::ShowRegistrations,
            "workers" => MgmtRequest::ShowWorkers,
            "trunks" => MgmtRequest::ShowTrunks,
            "spans" => MgmtRequest::ShowSpans,
            "channels" => MgmtRequest::ShowChannels,
            "stats" => MgmtRequest::ShowStats,
            _ => MgmtRequest::ShowSip,
        },
        Cmd::Hangup { call_id } => MgmtRequest::Hangup {
            id: call_id.clone(),
        },
        Cmd::Tune { .. } => return ExitCode::from(2),
    };
    let reply = match ask(&socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "tandemctl: {}: {e} (is tandemd running? --socket PATH picks another)",
                socket.display()
            );
            return ExitCode::from(2);
        }
    };
    if !reply.ok {
        eprintln!("tandemctl: {}", reply.error.unwrap_or_default());
        return ExitCode::from(1);
    }
    let data = reply.data.unwrap_or(serde_json::Value::Null);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&data).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match print_table(&req, data) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandemctl: unexpected reply: {e}");
            ExitCode::from(1)
        }
    }
}

fn ask(socket: &PathBuf, req: &MgmtRequest) -> std::io::Result<MgmtReply> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp)?;
    Ok(serde_json::from_str(&resp)?)
}

fn print_rows(header: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<width$}", c, width = w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn print_table(req: &MgmtRequest, data: serde_json::Value) -> Result<(), serde_json::Error> {
    match req {
        MgmtRequest::ShowCalls => {
            let calls: Vec<CallInfo> = serde_json::from_value(data)?;
            let mut rows = Vec::new();
            for c in &calls {
                for l in &c.legs {
                    rows.push(vec![
                        c.id.clone(),
                        c.state.clone(),
                        format!("{} -> {}", c.caller, c.exten),
                        format!("{}s", c.duration_s),
                        l.side.clone(),
                        l.state.clone(),
                        l.peer.clone(),
                        format!(
                            "{} <-> {}",
                            l.local_media.clone().unwrap_or("-".into()),
                            l.remote_media.clone().unwrap_or("-".into())
                        ),
                        l.call_id.clone(),
                    ]);
                }
            }
            print_rows(
                &[
                    "CALL",
                    "STATE",
                    "FROM -> TO",
                    "AGE",
                    "LEG",
                    "LEG STATE",
                    "PEER",
                    "MEDIA",
                    "SIP CALL-ID",
                ],
                rows,
            );
            println!("{} active call(s)", calls.len());
        }
        MgmtRequest::ShowRegistrations => {
            let regs: Vec<RegistrationInfo> = serde_json::from_value(data)?;
            let rows = regs
                .iter()
                .map(|r| {
                    vec![
                        r.user.clone(),
                        r.contact.clone(),
                        r.source.clone(),
                        format!("{}s", r.expires_s),
                        r.user_agent.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_rows(
                &["USER", "CONTACT", "SOURCE", "EXPIRES", "USER-AGENT"],
                rows,
            );
        }
        MgmtRequest::ShowWorkers => {
            let ws: Vec<WorkerInfo> = serde_json::from_value(data)?;
            if let Some(w) = ws.first() {
                println!(
                    "backend: {} (configured: {}){}; control cores: {}",
                    w.backend,
                    w.requested_backend,
                    w.xdp_mode
                        .as_ref()
                        .map_or(String::new(), |m| format!(", xdp {m}")),
                    if w.control_cores.is_empty() {
                        "not set".to_string()
                    } else {
                        format!("{:?}", w.control_cores)
                    }
                );
                for n in &w.notes {
                    println!("note: {n}");
                }
            }
            let rows = ws
                .iter()
                .map(|w| {
                    vec![
                        w.worker.to_string(),
                        w.core.to_string(),
                        w.queue.map_or("-".into(), |q| q.to_string()),
                        w.sessions.to_string(),
                        w.packets_in.to_string(),
                        w.packets_out.to_string(),
                        format!(
                            "malformed={} wrong_source={} no_remote={} tx_error={}",
                            w.drops_malformed,
                            w.drops_wrong_source,
                            w.drops_no_remote,
                            w.drops_tx_error
                        ),
                        w.transcoding_channels.to_string(),
                        w.codec_ns_per_channel_second.map_or("-".into(), |ns| {
                            format!("{:.3}% ({} us/s)", ns as f64 / 1e7, ns / 1000)
                        }),
                    ]
                })
                .collect();
            print_rows(
                &[
                    "WORKER",
                    "CORE",
                    "QUEUE",
                    "SESSIONS",
                    "PKTS IN",
                    "PKTS OUT",
                    "DROPS",
                    "TRANSCODING",
                    "CPU/CHANNEL",
                ],
                rows,
            );
        }
        MgmtRequest::ShowStats => {
            let text: String = serde_json::from_value(data)?;
            print!("{text}");
        }
        MgmtRequest::ShowSip => {
            let s: SipStats = serde_json::from_value(data)?;
            print_rows(
                &[
                    "RX",
                    "TX",
                    "PARSE ERRORS",
                    "400 SENT",
                    "DROPPED",
                    "CALLS",
                    "TRANSACTIONS",
                ],
                vec![vec![
                    s.rx.to_string(),
                    s.tx.to_string(),
                    s.parse_errors.to_string(),
                    s.bad_request_sent.to_string(),
                    s.dropped.to_string(),
                    s.active_calls.to_string(),
                    s.transactions.to_string(),
                ]],
            );
        }
        MgmtRequest::Hangup { id } => println!("hung up {id}"),
        MgmtRequest::ShowTrunks => {
            let ts: Vec<control::mgmt::TrunkInfo> = serde_json::from_value(data)?;
            let secs = |v: Option<u64>| v.map_or("-".to_string(), |s| format!("{s}s"));
            let rows = ts
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.host.clone(),
                        t.username.clone(),
                        t.state.clone(),
                        t.last_status.map_or("-".to_string(), |c| c.to_string()),
                        secs(t.expires_s),
                        secs(t.next_register_s),
                        t.context.clone(),
                        format!("{}/{}", t.calls_out, t.calls_in),
                    ]
                })
                .collect();
            print_rows(
                &[
                    "TRUNK", "HOST", "USER", "STATE", "LAST", "EXPIRES", "NEXT", "CONTEXT",
                    "OUT/IN",
                ],
                rows,
            );
        }
        MgmtRequest::ShowSpans | MgmtRequest::ShowChannels => print_pstn(data),
    }
    Ok(())
}

/// `show spans` / `show channels`: one row per object, the JSON keys as columns.
fn print_pstn(data: serde_json::Value) {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = data
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_object().cloned()).collect())
        .unwrap_or_default();
    let Some(first) = rows.first() else {
        println!("(none)");
        return;
    };
    let keys: Vec<String> = first.keys().cloned().collect();
    let header: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
    let cell = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    };
    print_rows(
        &header.iter().map(String::as_str).collect::<Vec<_>>(),
        rows.iter()
            .map(|r| keys.iter().map(|k| cell(r.get(k))).collect())
            .collect(),
    );
}
