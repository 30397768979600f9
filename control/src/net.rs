//! The I/O edge of the control plane: sockets, signals, the clock and the run loop.
//!
//! Everything here is glue. It binds the SIP listeners and the management
//! socket, reads the clock, and drives the sans-IO [`Engine`] through its run
//! loop contract: feed input with `now`, drain `poll_transmit`, sleep until
//! `poll_timeout`. The dataplane's event rings are drained on every turn and at
//! least every 20 ms.
//!
//! Every datagram passes the [`Defence`] gate (bans, rate limits, caps, size limits) and the
//! RFC 3261 §8.2 request checks ([`crate::sip::check`]) before the engine sees it; responses
//! the gate or the checks produce are sent from here, statelessly. Every message the engine
//! sends is shown back to the gate so it can close transactions, track dialogs and count
//! failed authentications. The gate's counters are logged every [`STATS_EVERY`] when they
//! change, and at shutdown.
//!
//! [`AaaEdge`] joins the engine's authentication and billing outputs to the world: each
//! [`crate::call::AaaQuery`] goes to the RADIUS task and its verdict comes back through a
//! channel into the run loop; each [`crate::call::Billing`] record is written to Master.csv
//! (append + fsync) and, for answered calls, spooled (append + fsync) as Accounting
//! Start/Stop before it is sent.
//!
//! FastAGI: the engine keeps each `AGI()` session (sans-IO); [`crate::agi::tcp::AgiEdge`]
//! opens the connections it asks for, writes its bytes and feeds back what the server says.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;

mod batch;
mod udp;
use tokio::sync::mpsc;

use crate::aaa::{AcctStatus, AuthOutcome, RadiusHandle};
use crate::call::{AaaSettings, AaaTicket, Billing, Engine, EngineConfig};
use crate::cdr::CsvWriter;
use crate::config::{Config, Transport};
use crate::defence::{Defence, DefenceStats, Verdict};
use crate::mgmt::{self, MgmtCall, MgmtReply, MgmtRequest, WorkerInfo};
use crate::sip::transaction::response_dest;
use crate::sip::transport::Transport as SipTransport;
use crate::sip::{check, Message, Peek, Response};
use crate::streams::{self, StreamSet};

/// How often the dataplane event rings are drained when nothing else happens.
const MEDIA_POLL: Duration = Duration::from_millis(20);
/// How long shutdown waits for BYEs to be answered.
const DRAIN_LIMIT: Duration = Duration::from_secs(4);
/// How often the defence counters are logged (when they changed).
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How many queued datagrams one run-loop turn takes before it sends what they produced.
const RX_BURST: usize = 32;
/// The methods we announce in `Allow` on 501 answers.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER";

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
    /// A TCP/TLS listener or its certificate failed.
    #[error(transparent)]
    Stream(#[from] crate::streams::StreamError),
    /// The `[ng]` control socket could not be bound.
    #[error("cannot listen for ng on udp:{0}: {1}")]
    NgBind(SocketAddr, std::io::Error),
    /// The RADIUS socket or the accounting spool could not be opened.
    #[error("radius: {0}")]
    Radius(crate::aaa::SpoolError),
    /// The CDR file could not be opened.
    #[error("{0}")]
    Cdr(crate::cdr::CdrError),
    /// The `[h323]` listener (or the IWF's SIP socket) could not be bound.
    #[error("cannot start the H.323 gateway on tcp:{0}: {1}")]
    H323(SocketAddr, std::io::Error),
    /// The `[metrics]` TCP listener could not be bound.
    #[error("cannot listen for metrics on tcp:{0}: {1}")]
    MetricsBind(SocketAddr, std::io::Error),
    /// The PSTN interworking function could not start.
    #[error("{0}")]
    Pstn(crate::iwf::pstn::IwfError),
    /// The analog interworking function could not start.
    #[error("{0}")]
    Analog(crate::iwf::analog::IwfError),
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

#[expect(
    clippy::disallowed_methods,
    reason = "the edge owns the wall clock (CDR and accounting times)"
)]
fn wall_time() -> SystemTime {
    SystemTime::now()
}

/// How long shutdown waits for spooled accounting records to be acknowledged (they stay in
/// the spool and are resent by the next start otherwise).
const ACCT_FLUSH: Duration = Duration::from_millis(1500);

/// The RADIUS task and the CDR file, fed from the engine's queues.
struct AaaEdge {
    settings: AaaSettings,
    radius: Option<RadiusHandle>,
    acct: bool,
    cdr: Option<CsvWriter>,
    verdicts: mpsc::UnboundedSender<(AaaTicket, AuthOutcome)>,
}

impl AaaEdge {
    async fn start(
        cfg: &Config,
        verdicts: mpsc::UnboundedSender<(AaaTicket, AuthOutcome)>,
    ) -> Result<AaaEdge, NetError> {
        let mut settings = AaaSettings::default();
        let mut radius = None;
        let mut acct = false;
        if let Some(r) = &cfg.radius {
            let all_loopback = r
                .auth_servers
                .iter()
                .chain(&r.acct_servers)
                .all(|s| s.address.ip().is_loopback());
            let bind: SocketAddr = if all_loopback {
                SocketAddr::from(([127, 0, 0, 1], 0))
            } else {
                SocketAddr::from(([0, 0, 0, 0], 0))
            };
            let h = RadiusHandle::start_with(r.client_config(), bind, r.spool.as_deref())
                .await
                .map_err(NetError::Radius)?;
            if h.spooled() > 0 {
                tracing::info!(
                    "radius: {} accounting record(s) left in the spool, resending in order",
                    h.spooled()
                );
            }
            acct = !r.acct_servers.is_empty();
            settings.radius_digest = r.digest_enabled();
            settings.digest_format = r.digest_format;
            settings.authorize_calls = r.authorize_pstn;
            settings.nas_ip = r.nas_ip.or(match cfg.primary_listen().addr.ip() {
                IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
                _ => None,
            });
            radius = Some(h);
        }
        let cdr = match &cfg.cdr {
            Some(c) => {
                if let Some(dir) = c.csv.parent() {
                    if !dir.as_os_str().is_empty() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                }
                Some(CsvWriter::open(&c.csv).map_err(NetError::Cdr)?)
            }
            None => None,
        };
        settings.billing = acct || cdr.is_some();
        Ok(AaaEdge {
            settings,
            radius,
            acct,
            cdr,
            verdicts,
        })
    }

    /// Hand the engine's Access-Requests to the RADIUS task and its billing records to the
    /// CDR file and the accounting spool.
    fn drain<M: crate::call::Media>(&mut self, engine: &mut Engine<M>) {
        while let Some(q) = engine.poll_aaa() {
            let tx = self.verdicts.clone();
            match self.radius.clone() {
                Some(h) => {
                    tokio::spawn(async move {
                        let out = h.auth(q.attributes, q.password).await;
                        let _ = tx.send((q.ticket, out));
                    });
                }
                None => {
                    let _ = tx.send((q.ticket, AuthOutcome::TimedOut));
                }
            }
        }
        while let Some(b) = engine.poll_billing() {
            let (status, rec) = match &b {
                Billing::Start(r) => (AcctStatus::Start, r),
                Billing::End(r) => (AcctStatus::Stop, r),
            };
            if let (Billing::End(r), Some(w)) = (&b, self.cdr.as_mut()) {
                if let Err(e) = w.write(&r.cdr()) {
                    tracing::error!("CDR for {} lost: {e}", r.uniqueid);
                }
            }
            if !self.acct || rec.answer.is_none() {
                continue;
            }
            let at = match status {
                AcctStatus::Start => rec.answer.unwrap_or(rec.start),
                _ => rec.end.unwrap_or(rec.start),
            };
            let attrs = rec.acct(self.settings.nas_ip).attributes(status, at);
            if let Some(h) = &self.radius {
                if let Err(e) = h.record(attrs) {
                    tracing::error!("accounting {status:?} for {} lost: {e}", rec.uniqueid);
                }
            }
        }
    }

    /// Give the RADIUS task a moment to have the last records acknowledged.
    async fn finish(&self) {
        let Some(h) = &self.radius else { return };
        let deadline = now() + ACCT_FLUSH;
        while h.spooled() > 0 && now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if h.spooled() > 0 {
            tracing::warn!(
                "radius: {} accounting record(s) unacknowledged, kept in the spool for the next start",
                h.spooled()
            );
        }
    }
}

/// Print what we listen on and how to reach it.
fn banner(cfg: &Config) {
    let sip: Vec<String> = cfg
        .listen
        .iter()
        .map(|l| format!("{}:{}", l.transport.name(), l.addr))
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
    if let Some(ng) = &cfg.ng {
        println!("  ng:         udp:{} (rtpengine ng protocol)", ng.listen);
    }
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
    for l in cfg.listen.iter().filter(|l| l.transport == Transport::Udp) {
        let (s, rcvbuf) = udp::bind_sip(l.addr).map_err(|e| NetError::Bind(l.addr, e))?;
        if udp::short(rcvbuf) {
            tracing::warn!(
                "udp:{} receive buffer {rcvbuf} bytes (asked {}): raise net.core.rmem_max \
                 or bursts of requests may be dropped by the kernel",
                l.addr,
                udp::SIP_RCVBUF
            );
        } else {
            tracing::debug!("udp:{} receive buffer {rcvbuf} bytes", l.addr);
        }
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
    let mut streams = StreamSet::new();
    let tls = match &cfg.tls {
        Some(f) => {
            // Outbound TLS (a phone whose connection is gone) trusts our own chain's CA.
            streams = streams.with_tls_client(streams::tls_client_config(&f.certificate)?);
            Some(streams::tls_config(&f.certificate, &f.private_key)?)
        }
        None => None,
    };
    let mut stream_listeners = Vec::new();
    for l in cfg.listen.iter().filter(|l| l.transport != Transport::Udp) {
        let tls = (l.transport == Transport::Tls)
            .then(|| tls.clone())
            .flatten();
        let bound = streams.listen(l.addr, tls, dg_tx.clone()).await?;
        let t = match l.transport {
            Transport::Tls => crate::sip::transport::Transport::Tls,
            _ => crate::sip::transport::Transport::Tcp,
        };
        stream_listeners.push((t, bound));
    }
    let (ng_socket, mut ng_rx) = start_ng(&cfg).await?;
    let mut ng = crate::ng::Ng::new();
    let (mg_tx, mut mg_rx) = mpsc::channel::<MgmtCall>(64);
    let mgmt_task = tokio::spawn(mgmt::serve(listener, mg_tx));
    let (mx_tx, mut mx_rx) = mpsc::channel::<crate::metrics::MetricsCall>(16);
    let mut calls_total = 0u64;
    if let Some(m) = cfg.metrics {
        let l = crate::metrics::bind(m.listen)
            .await
            .map_err(|e| NetError::MetricsBind(m.listen, e))?;
        tracing::info!("metrics on http://{}/metrics", m.listen);
        tokio::spawn(crate::metrics::serve(l, mx_tx));
    }

    let (verdict_tx, mut verdict_rx) = mpsc::unbounded_channel::<(AaaTicket, AuthOutcome)>();
    let mut aaa = AaaEdge::start(&cfg, verdict_tx).await?;
    // FastAGI: the engine holds the sessions, the edge moves their bytes.
    let (agi_tx, mut agi_rx) = mpsc::unbounded_channel();
    let mut agi = crate::agi::tcp::AgiEdge::new(agi_tx);

    let secret: [u8; 32] = rand::random();
    let t0 = now();
    let mut engine = Engine::new(
        {
            let mut ec = EngineConfig::from_config(&cfg);
            if let Some(dir) = &cfg.sounds {
                ec.sounds = Arc::new(load_sounds(dir));
            }
            ec
        },
        Arc::new(cfg.dialplan.clone()),
        dp,
        secret,
        t0,
        wall_secs(),
    );
    engine.set_wall_clock(t0, wall_time());
    for (t, addr) in stream_listeners {
        engine.set_listener(t, addr);
    }
    engine.set_aaa(aaa.settings.clone());
    let _h323 = start_h323(&cfg, &mut engine).await?;
    engine.configure_trunks(&cfg, t0);
    let pstn_iwf = start_pstn(&cfg, &mut engine)?;
    let analog_iwf = start_analog(&cfg, &mut engine)?;
    banner(&cfg);
    {
        let sel = engine.media().selection();
        println!(
            "  dataplane:  backend {} running (configured {}){}",
            format!("{:?}", sel.backend).to_ascii_lowercase(),
            format!("{:?}", sel.requested).to_ascii_lowercase(),
            sel.xdp_mode.as_ref().map_or(String::new(), |m| format!(
                ", xdp {m}, queues {:?}",
                sel.queues
            ))
        );
        for n in &sel.notes {
            println!("  note:       {n}");
        }
    }

    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let primary = sockets[0].clone();
    let mut drain_deadline: Option<Instant> = None;
    let mut batch = batch::UdpBatch::default();
    let mut gate = Gate {
        defence: Defence::new(cfg.limits.clone()),
        server: cfg.user_agent.clone(),
        last_stats: DefenceStats::default(),
        next_stats: t0 + STATS_EVERY,
    };

    loop {
        let t = now();
        let next = engine
            .poll_timeout()
            .map_or(t + MEDIA_POLL, |d| d.min(t + MEDIA_POLL));
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
        tokio::select! {
            Some(first) = dg_rx.recv() => {
                // Take what else is already queued (bounded) so the answers leave in one
                // sendmmsg batch below.
                let mut next = Some(first);
                let mut taken = 0;
                while let Some((bytes, from)) = next.take() {
                    let t = now();
                    match gate.judge(&bytes, from, t) {
                        Judged::Pass(parsed) => engine.handle_parsed(parsed, from, t),
                        Judged::Reply(bytes, dest) => {
                            send(&streams, &mut batch, bytes, dest, &dg_tx);
                        }
                        Judged::Drop => {}
                    }
                    taken += 1;
                    if taken < RX_BURST {
                        next = dg_rx.try_recv().ok();
                    }
                }
            }
            Some((bytes, from)) = ng_rx.recv() => {
                if let Some(reply) = ng.handle(&bytes, engine.media_mut(), now()) {
                    if let Some(s) = &ng_socket {
                        if let Err(e) = s.send_to(&reply, from).await {
                            tracing::warn!("ng reply to {from} failed: {e}");
                        }
                    }
                }
            }
            Some((req, reply)) = mg_rx.recv() => {
                let r = match (&req, &pstn_iwf, &analog_iwf) {
                    (MgmtRequest::ShowStats, _, _) => MgmtReply::data(crate::metrics::render(
                        &metrics_snapshot(&engine, calls_total, &aaa, pstn_iwf.as_ref(), now()),
                    )),
                    (MgmtRequest::ShowSpans, Some(p), _) => MgmtReply::data(p.snapshot().spans),
                    (MgmtRequest::ShowChannels, p, Some(a)) => {
                        analog_channels(p.as_ref(), a)
                    }
                    (MgmtRequest::ShowChannels, Some(p), None) => {
                        MgmtReply::data(p.snapshot().channels)
                    }
                    _ => answer_mgmt(&mut engine, req, now()),
                };
                let _ = reply.send(r);
            }
            Some(reply) = mx_rx.recv() => {
                let snap = metrics_snapshot(&engine, calls_total, &aaa, pstn_iwf.as_ref(), now());
                let _ = reply.send(snap);
            }
            Some((ticket, outcome)) = verdict_rx.recv() => {
                engine.handle_aaa_verdict(ticket, &outcome, now());
            }
            Some((ticket, ev)) = agi_rx.recv() => engine.handle_agi_input(ticket, ev, now()),
            _ = sleep => engine.handle_timeout(now()),
            _ = recv_signal(&mut sigterm) => start_drain(&mut engine, &mut drain_deadline),
            _ = recv_signal(&mut sigint) => start_drain(&mut engine, &mut drain_deadline),
        }
        engine.handle_media_events(now());
        while let Some(out) = engine.poll_transmit() {
            // One look at the sent bytes serves the gate and the transport choice.
            let peek = Peek::new(&out.bytes);
            if let Some(p) = &peek {
                gate.defence.handle_peeked(p, &out.bytes, now());
            }
            let route = SendRoute::of(peek.as_ref());
            send_routed(&streams, &mut batch, out.bytes, out.dest, &dg_tx, route);
        }
        batch.flush(&primary).await;
        aaa.drain(&mut engine);
        while let Some(io) = engine.poll_agi() {
            agi.handle(io);
        }
        for line in engine.drain_log() {
            if let Some(id) = crate::metrics::call_started(&line) {
                calls_total = calls_total.max(id);
            }
            if routine_call_line(&line) {
                tracing::debug!("{line}");
            } else {
                tracing::info!("{line}");
            }
        }
        gate.log(now(), false);
        if let Some(deadline) = drain_deadline {
            if engine.is_drained() || now() >= deadline {
                break;
            }
        }
    }
    gate.log(now(), true);
    if ng_socket.is_some() {
        tracing::info!(
            "ng stats: {}",
            serde_json::to_string(&ng.stats()).unwrap_or_default()
        );
    }
    aaa.finish().await;
    if engine.agi_stats().started > 0 {
        let st = serde_json::to_string(&engine.agi_stats()).unwrap_or_default();
        tracing::info!("agi stats: {st}");
    }
    mgmt_task.abort();
    let _ = std::fs::remove_file(&cfg.mgmt_socket);
    tracing::info!("tandemd stopped");
    Ok(engine.into_media())
}

/// `[h323]`: spawn the H.323 interworking function and register it with the engine as the
/// gateway for `Dial(H323/...)`.
async fn start_h323(
    cfg: &Config,
    engine: &mut Engine<dataplane::Dataplane>,
) -> Result<Option<crate::iwf::h323::net::Handle>, NetError> {
    let Some(h) = &cfg.h323 else { return Ok(None) };
    let handle = crate::iwf::h323::net::spawn(crate::iwf::h323::net::Settings {
        listen: Some(h.listen),
        engine: cfg.primary_listen().addr,
        codecs: h.codecs.clone(),
    })
    .await
    .map_err(|e| NetError::H323(h.listen, e))?;
    println!(
        "  H.323:      tcp:{} (calls in to context {})",
        handle.h225_addr.unwrap_or(h.listen),
        h.context
    );
    engine.add_gateway(crate::call::Gateway {
        tech: "H323".into(),
        addr: handle.sip_addr,
        context: h.context.clone(),
        codecs: h.codecs.clone(),
    });
    Ok(Some(handle))
}

/// Load the sound files of `dir` (`.wav`, `.sln`, `.raw`...) by name without extension.
/// A file that cannot be decoded is logged with what is wrong and skipped.
fn load_sounds(dir: &std::path::Path) -> std::collections::HashMap<String, Arc<[i16]>> {
    let mut out = std::collections::HashMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("sounds directory {}: {e}", dir.display());
            return out;
        }
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let (Some(stem), Some(fmt)) = (
            p.file_stem().and_then(|s| s.to_str()),
            p.extension()
                .and_then(|e| e.to_str())
                .and_then(dataplane::sound::Format::from_extension),
        ) else {
            continue;
        };
        match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| dataplane::sound::decode(&b, fmt).map_err(|e| e.to_string()))
        {
            Ok(samples) => {
                out.insert(stem.to_string(), samples);
            }
            Err(e) => tracing::warn!("sound {}: {e}, skipped", p.display()),
        }
    }
    tracing::info!("{} sounds loaded from {}", out.len(), dir.display());
    out
}

/// Send a message. A request whose top Via names TCP/TLS goes on a stream connection (opened
/// if needed, see [`StreamSet::send_request`]), never as a datagram. Anything else goes on the
/// TCP/TLS connection to `dest` when there is one, else into `batch`, the UDP datagrams the
/// run loop sends from the primary socket at the end of its turn. Only the start line and
/// the top Via are read ([`Peek`]); a full parse happens only for stream requests.
fn send(
    streams: &StreamSet,
    batch: &mut batch::UdpBatch,
    bytes: Vec<u8>,
    dest: SocketAddr,
    inbound: &mpsc::Sender<(Vec<u8>, SocketAddr)>,
) {
    let route = SendRoute::of(Peek::new(&bytes).as_ref());
    send_routed(streams, batch, bytes, dest, inbound, route);
}

/// What [`send`] needs to know about a message: whether it is a request and whether its top
/// Via names a stream transport (TCP/TLS).
#[derive(Debug, Clone, Copy)]
struct SendRoute {
    request: bool,
    stream_via: bool,
}

impl SendRoute {
    fn of(peek: Option<&Peek<'_>>) -> SendRoute {
        match peek {
            Some(p) => SendRoute {
                request: p.code.is_none(),
                stream_via: SipTransport::of_via_value(p.via).is_reliable(),
            },
            None => SendRoute {
                request: false,
                stream_via: false,
            },
        }
    }
}

/// [`send`] with the message's [`SendRoute`] already read.
fn send_routed(
    streams: &StreamSet,
    batch: &mut batch::UdpBatch,
    bytes: Vec<u8>,
    dest: SocketAddr,
    inbound: &mpsc::Sender<(Vec<u8>, SocketAddr)>,
    route: SendRoute,
) {
    let SendRoute {
        request,
        stream_via,
    } = route;
    if request && stream_via {
        let parsed = Message::parse(&bytes).ok();
        if let Some((t, fallback)) = parsed
            .as_ref()
            .and_then(crate::sip::transport::stream_request)
        {
            if !streams.send_request(dest, fallback, &bytes, t, inbound) {
                tracing::warn!("SIP {t} request to {dest} not sent: no connection could be queued");
            }
            return;
        }
    }
    // A response whose top Via names a stream transport must go on that connection.
    if streams.open() > 0 && streams.send(dest, &bytes, !request && stream_via) {
        return;
    }
    batch.push(bytes, dest);
}

/// Bind the `[ng]` UDP socket (if configured) and forward its datagrams to
/// the run loop. Without `[ng]` the channel never yields.
async fn start_ng(
    cfg: &Config,
) -> Result<
    (
        Option<Arc<UdpSocket>>,
        mpsc::Receiver<(Vec<u8>, SocketAddr)>,
    ),
    NetError,
> {
    let (tx, rx) = mpsc::channel::<(Vec<u8>, SocketAddr)>(1024);
    let Some(ngc) = cfg.ng else {
        return Ok((None, rx));
    };
    let s = Arc::new(
        UdpSocket::bind(ngc.listen)
            .await
            .map_err(|e| NetError::NgBind(ngc.listen, e))?,
    );
    tracing::info!("ng control protocol on udp:{}", ngc.listen);
    let rs = s.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            match rs.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    if tx.send((buf[..n].to_vec(), from)).await.is_err() {
                        return;
                    }
                }
                Err(_) => continue,
            }
        }
    });
    Ok((Some(s), rx))
}

/// The defence gate and the §8.2 checks, run on each datagram before the engine.
struct Gate {
    defence: Defence,
    server: String,
    last_stats: DefenceStats,
    next_stats: Instant,
}

/// What [`Gate::judge`] decided.
enum Judged {
    /// Hand the datagram to the engine, parsed (once, here).
    Pass(Result<Message, crate::sip::ParseError>),
    /// Send these bytes there; the engine does not see the datagram.
    Reply(Vec<u8>, SocketAddr),
    Drop,
}

impl Gate {
    fn judge(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Judged {
        if self.defence.drop_banned(from, now) {
            return Judged::Drop;
        }
        let parsed = Message::parse(bytes);
        let verdict = self
            .defence
            .handle_datagram(bytes, parsed.as_ref().ok(), from, now);
        for (ip, why) in self.defence.drain_bans() {
            tracing::warn!(
                "sip defence: banned {ip} for {} s ({why})",
                self.defence.limits().ban_secs
            );
        }
        match verdict {
            Verdict::Drop => return Judged::Drop,
            Verdict::Reply(resp) => return self.reply(*resp, from),
            Verdict::Pass => {}
        }
        match &parsed {
            Ok(Message::Request(req)) => {
                if let Some(resp) = check::check_request(req, ALLOW) {
                    tracing::info!(
                        "SIP {} from {from}: refused with {} (RFC 3261 §8.2)",
                        req.method,
                        resp.code
                    );
                    return self.reply(resp, from);
                }
            }
            // A malformed request whose status is not 400 (505 for a bad SIP version): the
            // engine only knows 400, so answer here.
            Err(e) if e.can_respond() && e.status_code() != 400 => {
                return match &e.partial {
                    Some(req) if req.method != crate::sip::Method::Ack => {
                        let code = e.status_code();
                        tracing::info!(
                            "SIP from {from}: malformed request, sent {code}: {}",
                            e.reason
                        );
                        let mut resp = Response::for_request(req, code);
                        resp.set_to_tag(&crate::sip::new_tag());
                        self.reply(resp, from)
                    }
                    _ => Judged::Drop,
                };
            }
            _ => {}
        }
        Judged::Pass(parsed)
    }

    fn reply(&self, mut resp: Response, from: SocketAddr) -> Judged {
        resp.headers.set("Server", self.server.as_str());
        let dest = resp.top_via().map_or(from, |via| response_dest(&via, from));
        Judged::Reply(Message::Response(resp).to_bytes(), dest)
    }

    /// Logs the counters when they changed (at most every [`STATS_EVERY`] unless `force`).
    fn log(&mut self, now: Instant, force: bool) {
        if !force && now < self.next_stats {
            return;
        }
        self.next_stats = now + STATS_EVERY;
        let s = self.defence.defence_stats(now);
        if force || s != self.last_stats {
            tracing::info!(
                "sip defence stats: {}",
                serde_json::to_string(&s).unwrap_or_default()
            );
            self.last_stats = s;
        }
    }
}

/// The engine's lines that every normal call produces after its start line (dialing, bridged,
/// BYE, ended): logged at debug, so a busy gateway logs one info line per call (`call N: A ->
/// B ...`) plus whatever went wrong. At 5 000 calls/s the five lines per call cost about 5 %
/// of the control thread.
fn routine_call_line(line: &str) -> bool {
    let Some(tail) = line
        .strip_prefix("call ")
        .and_then(|r| r.split_once(": "))
        .map(|(_, t)| t)
    else {
        return false;
    };
    tail == "answered, media bridged"
        || tail == "ended"
        || tail.starts_with("dialing ")
        || tail.starts_with("BYE from the ")
}

async fn recv_signal(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// `[pstn]`: start the PSTN interworking function and register it as the `DAHDI`
/// gateway (docs/pstn.md).
fn start_pstn(
    cfg: &Config,
    engine: &mut Engine<dataplane::Dataplane>,
) -> Result<Option<crate::iwf::pstn::IwfHandle>, NetError> {
    let Some(p) = cfg.pstn.as_ref().filter(|p| !p.spans.is_empty()) else {
        return Ok(None);
    };
    let iwf = crate::iwf::pstn::spawn(p, cfg.primary_listen().addr).map_err(NetError::Pstn)?;
    println!(
        "  pstn:       {} span(s), interworking at sip:{} (Dial(DAHDI/g<group>/<number>))",
        p.spans.len(),
        iwf.addr
    );
    engine.add_gateway(iwf.gateway());
    Ok(Some(iwf))
}

/// `[analog]`: start the analog interworking function and register its gateways
/// (`Dial(DAHDI/<port>)`, docs/analog.md).
fn start_analog(
    cfg: &Config,
    engine: &mut Engine<dataplane::Dataplane>,
) -> Result<Option<crate::iwf::analog::AnalogHandle>, NetError> {
    let Some(a) = cfg.analog.as_ref().filter(|a| !a.ports.is_empty()) else {
        return Ok(None);
    };
    let iwf = crate::iwf::analog::spawn(a, &cfg.dialplan, cfg.primary_listen().addr)
        .map_err(NetError::Analog)?;
    println!(
        "  analog:     {} port(s), interworking at {} (Dial(DAHDI/<port>))",
        a.ports.len(),
        iwf.sips
            .iter()
            .map(|(c, s)| format!("sip:{s} ({c})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for gw in iwf.gateways() {
        engine.add_gateway(gw);
    }
    Ok(Some(iwf))
}

/// `show channels`: the PRI B-channels (if any) then the analog ports.
fn analog_channels(
    pstn: Option<&crate::iwf::pstn::IwfHandle>,
    analog: &crate::iwf::analog::AnalogHandle,
) -> MgmtReply {
    let mut v: Vec<serde_json::Value> = pstn
        .map(|p| {
            p.snapshot()
                .channels
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    v.extend(
        analog
            .snapshot()
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok()),
    );
    MgmtReply::data(v)
}

/// The counters of one metrics scrape or `tandemctl show stats`.
fn metrics_snapshot(
    engine: &Engine<dataplane::Dataplane>,
    calls_total: u64,
    aaa: &AaaEdge,
    pstn: Option<&crate::iwf::pstn::IwfHandle>,
    t: Instant,
) -> crate::metrics::Snapshot {
    let calls = engine.calls_info(t);
    crate::metrics::Snapshot {
        sip: engine.sip_stats(),
        calls_total,
        registrations: engine.registrations_info(t).len() as u64,
        workers: engine.worker_stats(),
        calls_by_state: crate::metrics::count_states(calls.iter().map(|c| c.state.as_str())),
        worker_cpu_s: crate::metrics::worker_cpu_seconds(),
        radius_spooled: aaa.radius.as_ref().map(|h| h.spooled() as u64),
        spans: pstn.map_or_else(Vec::new, |p| {
            p.snapshot()
                .spans
                .into_iter()
                .map(|s| (s.span, s.dchannel_up, s.alarms))
                .collect()
        }),
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
            let sel = engine.media().selection().clone();
            let v: Vec<WorkerInfo> = engine
                .worker_stats()
                .into_iter()
                .map(|s| WorkerInfo::from(s).with_selection(&sel))
                .collect();
            MgmtReply::data(v)
        }
        MgmtRequest::ShowSip => MgmtReply::data(engine.sip_stats()),
        MgmtRequest::ShowTrunks => MgmtReply::data(engine.trunks_info(now)),
        MgmtRequest::ShowSpans | MgmtRequest::ShowChannels => {
            MgmtReply::error("no [pstn] spans configured")
        }
        // Answered by the run loop, which holds the RADIUS edge and the spans.
        MgmtRequest::ShowStats => MgmtReply::error("stats are answered by the run loop"),
        MgmtRequest::Hangup { id } => {
            if engine.hangup_by_id(&id, now) {
                MgmtReply::data(serde_json::json!({ "hungup": id }))
            } else {
                MgmtReply::error(format!("no active call {id}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::routine_call_line;

    #[test]
    fn only_the_routine_per_call_lines_go_to_debug() {
        for l in [
            "call 7: dialing SIP/1002 at 127.0.1.2:5060",
            "call 7: answered, media bridged",
            "call 7: BYE from the caller",
            "call 7: ended",
        ] {
            assert!(routine_call_line(l), "{l}");
        }
        for l in [
            "call 7: 1001 -> 1002 (context default, Call-ID x)",
            "call 7: ended unanswered",
            "call 7: callee answered 486",
            "call 7: AGI agi://127.0.0.1/x ended after 3 commands",
            "INVITE from 1.2.3.4: 403 (bad password)",
            "dialing without a call",
        ] {
            assert!(!routine_call_line(l), "{l}");
        }
    }
}
