//! The I/O edge of the control plane: sockets, signals, the clock and the run loop.
//!
//! Everything here is glue. It binds the SIP listeners and the management
//! socket, reads the clock, and drives the sans-IO [`Engine`] through its run
//! loop contract: feed input with `now`, drain `poll_transmit`, sleep until
//! `poll_timeout`. The dataplane's event rings are drained on every turn and at
//! least every 20 ms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::call::{Engine, EngineConfig};
use crate::config::Config;
use crate::mgmt::{self, MgmtCall, MgmtReply, MgmtRequest, WorkerInfo};

/// How often the dataplane event rings are drained when nothing else happens.
const MEDIA_POLL: Duration = Duration::from_millis(20);
/// How long shutdown waits for BYEs to be answered.
const DRAIN_LIMIT: Duration = Duration::from_secs(4);

/// Errors that stop the daemon before it serves.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A SIP listener could not be bound (address in use, not local...).
    #[error("cannot listen on udp:{0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The management socket could not be created.
    #[error("management socket {0}: {1}")]
    Mgmt(String, std::io::Error),
}

#[expect(clippy::disallowed_methods, reason = "the edge owns the clock")]
fn now() -> Instant {
    Instant::now()
}

#[expect(
    clippy::disallowed_methods,
    reason = "the edge owns the wall clock (digest nonces)"
)]
fn wall_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Print what we listen on and how to reach it.
fn banner(cfg: &Config) {
    let sip: Vec<String> = cfg
        .listen
        .iter()
        .map(|l| format!("udp:{}", l.addr))
        .collect();
    let dp = &cfg.dataplane;
    println!("tandemd {} ready", env!("CARGO_PKG_VERSION"));
    println!("  SIP:        {} (realm \"{}\")", sip.join(", "), cfg.realm);
    println!(
        "  media:      {} ports {}-{}, backend {:?}, worker cores {:?}",
        dp.media_ip,
        dp.rtp_ports.start(),
        dp.rtp_ports.end(),
        dp.backend,
        dp.cores
    );
    println!(
        "  management: {} (tandemctl --socket {0} show calls)",
        cfg.mgmt_socket.display()
    );
    match &cfg.dialplan_file {
        Some(f) => println!("  dialplan:   {} context {}", f.display(), cfg.context),
        None => println!(
            "  dialplan:   embedded default (context {}): _1XXX dials the user, 600 echoes",
            cfg.context
        ),
    }
    let addr = cfg.primary_listen().addr;
    if cfg.path.is_none() {
        println!("  users:      1001-1004, password tandem<user> (e.g. 1001 / tandem1001)");
        println!(
            "  try:        register a softphone as sip:1001@{addr} and call 600 (echo) or 1002"
        );
    } else {
        let names: Vec<&str> = cfg.users.iter().map(|u| u.name.as_str()).collect();
        println!("  users:      {}", names.join(", "));
    }
}

/// Run the daemon until SIGTERM/SIGINT; then hang up every call and return.
pub async fn run(cfg: Config, dp: dataplane::Dataplane) -> Result<dataplane::Dataplane, NetError> {
    let mut sockets = Vec::new();
    for l in &cfg.listen {
        let s = UdpSocket::bind(l.addr)
            .await
            .map_err(|e| NetError::Bind(l.addr, e))?;
        sockets.push(Arc::new(s));
    }
    let listener = mgmt::bind(&cfg.mgmt_socket)
        .map_err(|e| NetError::Mgmt(cfg.mgmt_socket.display().to_string(), e))?;

    let (dg_tx, mut dg_rx) = mpsc::channel::<(Vec<u8>, SocketAddr)>(1024);
    for s in &sockets {
        let s = s.clone();
        let tx = dg_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                match s.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx.send((buf[..n].to_vec(), from)).await.is_err() {
                            return;
                        }
                    }
                    // ICMP port unreachable and the like surface here on Linux: keep serving.
                    Err(_) => continue,
                }
            }
        });
    }
    let (mg_tx, mut mg_rx) = mpsc::channel::<MgmtCall>(64);
    let mgmt_task = tokio::spawn(mgmt::serve(listener, mg_tx));

    let secret: [u8; 32] = rand::random();
    let t0 = now();
    let mut engine = Engine::new(
        EngineConfig::from_config(&cfg),
        Arc::new(cfg.dialplan.clone()),
        dp,
        secret,
        t0,
        wall_secs(),
    );
    banner(&cfg);

    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let primary = sockets[0].clone();
    let mut drain_deadline: Option<Instant> = None;

    loop {
        let t = now();
        let next = engine
            .poll_timeout()
            .map_or(t + MEDIA_POLL, |d| d.min(t + MEDIA_POLL));
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
        tokio::select! {
            Some((bytes, from)) = dg_rx.recv() => engine.handle_datagram(&bytes, from, now()),
            Some((req, reply)) = mg_rx.recv() => {
                let r = answer_mgmt(&mut engine, req, now());
                let _ = reply.send(r);
            }
            _ = sleep => engine.handle_timeout(now()),
            _ = recv_signal(&mut sigterm) => start_drain(&mut engine, &mut drain_deadline),
            _ = recv_signal(&mut sigint) => start_drain(&mut engine, &mut drain_deadline),
        }
        engine.handle_media_events(now());
        while let Some(out) = engine.poll_transmit() {
            if let Err(e) = primary.send_to(&out.bytes, out.dest).await {
                tracing::warn!("SIP send to {} failed: {e}", out.dest);
            }
        }
        for line in engine.drain_log() {
            tracing::info!("{line}");
        }
        if let Some(deadline) = drain_deadline {
            if engine.is_drained() || now() >= deadline {
                break;
            }
        }
    }
    mgmt_task.abort();
    let _ = std::fs::remove_file(&cfg.mgmt_socket);
    tracing::info!("tandemd stopped");
    Ok(engine.into_media())
}

async fn recv_signal(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn start_drain(engine: &mut Engine<dataplane::Dataplane>, deadline: &mut Option<Instant>) {
    if deadline.is_some() {
        return;
    }
    tracing::info!("signal received: refusing new calls, hanging up active ones");
    let t = now();
    engine.begin_shutdown(t);
    *deadline = Some(t + DRAIN_LIMIT);
}

fn answer_mgmt(
    engine: &mut Engine<dataplane::Dataplane>,
    req: MgmtRequest,
    now: Instant,
) -> MgmtReply {
    match req {
        MgmtRequest::ShowCalls => MgmtReply::data(engine.calls_info(now)),
        MgmtRequest::ShowRegistrations => MgmtReply::data(engine.registrations_info(now)),
        MgmtRequest::ShowWorkers => {
            let v: Vec<WorkerInfo> = engine
                .worker_stats()
                .into_iter()
                .map(WorkerInfo::from)
                .collect();
            MgmtReply::data(v)
        }
        MgmtRequest::ShowSip => MgmtReply::data(engine.sip_stats()),
        MgmtRequest::Hangup { id } => {
            if engine.hangup_by_id(&id, now) {
                MgmtReply::data(serde_json::json!({ "hungup": id }))
            } else {
                MgmtReply::error(format!("no active call {id}"))
            }
        }
    }
}
