//! The analog IWF's edge: the thread with the SIP and RTP sockets, the clock
//! and the simulated TDM400P.
//!
//! Every 2 ms the thread takes SIP and RTP in, runs the card to the current
//! millisecond (1 ms steps: tones and caller ID rendered into the line,
//! hardware events and line audio to the core), applies the core's
//! commands, and sends what the core queued. It also plays the simulated
//! far ends' parts: each simulated phone's caller ID decoder (Bell 202 or
//! V.23 FSK, or DTMF, per the port's `cid`) listens to what the phone hears
//! on hook, and the result is `cid_received` in `tandemctl show channels`.
//!
//! `[analog] sim_control = "127.0.0.1:PORT"` opens a UDP socket taking one
//! text command per datagram (reply `ok` or `error: ...`), for tests and
//! demos; see docs/analog.md:
//! `offhook P`, `onhook P`, `wait P MS`, `flash P`, `dtmf P DIGITS`,
//! `pulse P DIGITS`, `answer_after P N`, `echo P on|off`,
//! `dump P FILE` (what phone P heard in the last 20 s, raw s16le 8 kHz),
//! `ring P after|before|none [FILE|-] [ON,OFF,...]` (the exchange rings FXO
//! port P, FILE a raw s16le caller ID spill, the cadence in ms; default the
//! port zone's), `hangup P polarity|loop|busy`,
//! `co_answer P`.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::dsp::dtmf;
use dataplane::dsp::fsk::{
    self, Absence, CallerId, CallerIdDetector, DtmfCidDetector, FskStandard,
};
use dataplane::dsp::tones::{zone_tone, ToneGenerator};
use drivers::analog::conf::PortConf;
use drivers::analog::sim::{self, CidTiming, Disconnect, SimCard};
use drivers::analog::{Command, RingCadence, Signalling};
use drivers::ChanId;
use serde::Serialize;

use super::Iwf;
use crate::analog::config::{AnalogConfig, Card, CidMode, Kind};
use crate::analog::{CidSignalling, HwCommand, HwEvent};

/// What the phone heard, kept for `dump`: 20 s.
const HEARD_KEEP: usize = 20 * 8000;

/// One port in `tandemctl show channels`.
#[derive(Debug, Clone, Serialize)]
pub struct PortStatus {
    /// Always `analog`.
    pub r#type: &'static str,
    /// Card channel.
    pub port: u16,
    /// `fxs` or `fxo`.
    pub kind: &'static str,
    /// Configured extension.
    pub extension: String,
    /// Line signalling state (`idle`, `ringing`, `collecting digits`, `talking`...).
    pub state: &'static str,
    /// Sim FXS: the phone is off hook. Sim FXO: the line is seized.
    pub off_hook: bool,
    /// Sim FXS: the phone's ringer is sounding / FXO: the exchange rings.
    pub ringing: bool,
    /// Sim FXS: ring bursts the phone counted for the current or last call.
    pub rings: u32,
    /// Caller ID standard (`bell202`, `v23`, `dtmf`, `none`).
    pub cid: &'static str,
    /// Sim FXS: the caller ID the phone decoded; FXO: the one the line decoded.
    pub cid_received: Option<CidJson>,
    /// The SIP Call-ID of the port's call.
    pub call: Option<String>,
}

/// A decoded caller ID.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CidJson {
    /// Number, if sent.
    pub number: Option<String>,
    /// Name, if sent.
    pub name: Option<String>,
    /// "P" private / "O" unavailable when the number was withheld.
    pub absent: Option<&'static str>,
}

impl From<&CallerId> for CidJson {
    fn from(c: &CallerId) -> Self {
        CidJson {
            number: c.number.clone(),
            name: c.name.clone(),
            absent: c.number_absent.map(|a| match a {
                Absence::Private => "P",
                Absence::Unavailable => "O",
            }),
        }
    }
}

/// The running IWF.
#[derive(Debug)]
pub struct AnalogHandle {
    /// Our SIP addresses, one per context: (context, address).
    pub sips: Vec<(String, SocketAddr)>,
    status: Arc<Mutex<Vec<PortStatus>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnalogHandle {
    /// The latest port status.
    pub fn snapshot(&self) -> Vec<PortStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The gateways to register with the engine, one per context
    /// (technology `ANALOG@<context>`).
    pub fn gateways(&self) -> Vec<crate::call::Gateway> {
        self.sips
            .iter()
            .map(|(ctx, addr)| crate::call::Gateway {
                tech: format!("{}@{ctx}", super::TECH),
                addr: *addr,
                context: ctx.clone(),
                codecs: vec![crate::sdp::Codec::Pcmu, crate::sdp::Codec::Pcma],
            })
            .collect()
    }
}

impl Drop for AnalogHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An IWF start-up failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IwfError {
    /// A socket or the thread could not be set up.
    #[error("analog: {what}: {err}")]
    Socket {
        /// Which.
        what: String,
        /// Why.
        err: std::io::Error,
    },
    /// `card = "dahdi"`: a port's DAHDI channel could not be opened or has
    /// the wrong signalling.
    #[error("analog: port {port} ({kind}): {err}")]
    Card {
        /// The configured port.
        port: u16,
        /// `fxs` or `fxo`.
        kind: &'static str,
        /// What failed, naming the DAHDI channel and the ioctl.
        err: drivers::analog::AnalogError,
    },
    /// The line layer refused a port's settings.
    #[error("analog: {0}")]
    Line(#[from] crate::analog::AnalogError),
}

#[expect(
    clippy::disallowed_methods,
    reason = "the IWF thread is an edge: it owns the clock"
)]
pub(super) fn clock() -> Instant {
    Instant::now()
}

/// Starts the IWF thread for `cfg` with SIP towards `engine`.
pub fn spawn(
    cfg: &AnalogConfig,
    dialplan: &crate::dialplan::Dialplan,
    engine: SocketAddr,
) -> Result<AnalogHandle, IwfError> {
    let dahdi = match cfg.card {
        Card::Dahdi => Some(super::dahdi::DahdiCard::open(cfg)?),
        Card::Sim => None,
    };
    let sock = |what: &str| {
        let w = what.to_string();
        move |err| IwfError::Socket {
            what: w.clone(),
            err,
        }
    };
    let bind = |what: &str| -> Result<(UdpSocket, SocketAddr), IwfError> {
        let s = UdpSocket::bind("127.0.0.1:0").map_err(sock(what))?;
        s.set_nonblocking(true).map_err(sock(what))?;
        let a = s.local_addr().map_err(sock(what))?;
        Ok((s, a))
    };
    let mut sip = Vec::new();
    let mut sips = Vec::new();
    for ctx in Iwf::contexts(cfg) {
        let (s, a) = bind("SIP socket")?;
        sip.push(s);
        sips.push((ctx, a));
    }
    let engine = if engine.ip().is_unspecified() {
        SocketAddr::new(sips[0].1.ip(), engine.port())
    } else {
        engine
    };
    let mut rtp = Vec::new();
    let mut media = Vec::new();
    for _ in &cfg.ports {
        let (s, a) = bind("RTP socket")?;
        rtp.push(s);
        media.push(a);
    }
    let control = match cfg.sim_control {
        Some(a) => {
            let s = UdpSocket::bind(a).map_err(sock(&format!("sim_control {a}")))?;
            s.set_nonblocking(true).map_err(sock("sim_control"))?;
            Some(s)
        }
        None => None,
    };
    let iwf = Iwf::new(cfg, dialplan, sips.clone(), engine, media)?;
    let status = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(card) = dahdi {
        let thread = {
            let status = status.clone();
            let stop = stop.clone();
            let cfg = cfg.clone();
            std::thread::Builder::new()
                .name("analog-iwf".into())
                .spawn(move || card.run(iwf, &cfg, sip, rtp, engine, status, stop))
                .map_err(sock("thread"))?
        };
        return Ok(AnalogHandle {
            sips,
            status,
            stop,
            thread: Some(thread),
        });
    }
    let conf: Vec<PortConf> = cfg
        .ports
        .iter()
        .map(|p| PortConf {
            chan: ChanId(p.port),
            signalling: match p.kind {
                Kind::Fxs => Signalling::FxoKs,
                Kind::Fxo => Signalling::FxsKs,
            },
        })
        .collect();
    let mut card = SimCard::new(&conf);
    let mut far = Vec::new();
    for p in &cfg.ports {
        let chan = ChanId(p.port);
        if p.kind == Kind::Fxs {
            if let Ok(ph) = card.phone(chan) {
                ph.answer_after_rings(
                    (p.sim_answer_after_rings > 0).then_some(p.sim_answer_after_rings),
                );
                ph.set_echo(p.sim_echo);
            }
        }
        far.push(FarEnd::new(p.port, p.kind, p.cid, p.zone.clone()));
    }
    let mut edge = Edge {
        iwf,
        card,
        far,
        t0: clock(),
        held: Vec::new(),
    };
    edge.publish(cfg, &status);
    let thread = {
        let status = status.clone();
        let stop = stop.clone();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("analog-iwf".into())
            .spawn(move || edge.run(&cfg, sip, rtp, control, engine, status, stop))
            .map_err(sock("thread"))?
    };
    Ok(AnalogHandle {
        sips,
        status,
        stop,
        thread: Some(thread),
    })
}

/// Edge state of one port: tone being played, the simulated phone's caller
/// ID decoder and ear.
struct FarEnd {
    chan: u16,
    kind: Kind,
    zone: String,
    tone: Option<ToneGenerator>,
    fsk: Option<CallerIdDetector>,
    dtmf_cid: Option<DtmfCidDetector>,
    cid_received: Option<CallerId>,
    heard: VecDeque<i16>,
    /// A pre-ring caller ID spill is playing: ring only after it.
    spill_until: u64,
    /// Caller ID goes out before the first ring on this port (V.23, DTMF).
    pre_ring_cid: bool,
}

impl FarEnd {
    fn new(chan: u16, kind: Kind, cid: CidMode, zone: String) -> Self {
        let (fsk, dtmf_cid) = match cid {
            CidMode::Bell202 => (Some(CallerIdDetector::new(FskStandard::Bell202)), None),
            CidMode::V23 => (Some(CallerIdDetector::new(FskStandard::V23)), None),
            CidMode::Dtmf => (None, Some(DtmfCidDetector::default())),
            CidMode::None => (None, None),
        };
        FarEnd {
            chan,
            kind,
            zone,
            tone: None,
            fsk,
            dtmf_cid,
            cid_received: None,
            heard: VecDeque::with_capacity(HEARD_KEEP),
            spill_until: 0,
            pre_ring_cid: matches!(cid, CidMode::V23 | CidMode::Dtmf),
        }
    }
}

struct Edge {
    iwf: Iwf,
    card: SimCard,
    far: Vec<FarEnd>,
    t0: Instant,
    /// Rings held back until a pre-ring spill has played: (due ms, chan, cadence).
    held: Vec<(u64, u16, Vec<u32>)>,
}

impl Edge {
    #[allow(clippy::too_many_arguments)]
    fn run(
        mut self,
        cfg: &AnalogConfig,
        sip: Vec<UdpSocket>,
        rtp: Vec<UdpSocket>,
        control: Option<UdpSocket>,
        engine: SocketAddr,
        status: Arc<Mutex<Vec<PortStatus>>>,
        stop: Arc<AtomicBool>,
    ) {
        let mut buf = vec![0u8; 65_535];
        let mut next_status = clock();
        while !stop.load(Ordering::Relaxed) {
            let now = clock();
            for (i, s) in sip.iter().enumerate() {
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    self.iwf.handle_sip(i, &buf[..n], from, now);
                }
            }
            for (i, s) in rtp.iter().enumerate() {
                while let Ok(n) = s.recv(&mut buf) {
                    if let Some((chan, pcm)) = self.iwf.handle_rtp(i, &buf[..n]) {
                        let _ = self.card.write(ChanId(chan), &pcm);
                    }
                }
            }
            if let Some(c) = &control {
                while let Ok((n, from)) = c.recv_from(&mut buf) {
                    let cmd = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let reply = match self.control(cmd.trim()) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("error: {e}"),
                    };
                    let _ = c.send_to(reply.as_bytes(), from);
                }
            }
            self.apply_commands();
            let target = u64::try_from(now.saturating_duration_since(self.t0).as_millis())
                .unwrap_or(u64::MAX);
            // Catch up at most 200 ms per turn (a stalled thread must not spin forever).
            let mut steps = 0;
            while self.card.now_ms() < target && steps < 200 {
                self.step_ms();
                steps += 1;
            }
            self.iwf.handle_timeout(now);
            self.apply_commands();
            while let Some((i, dest, pkt)) = self.iwf.poll_rtp() {
                if let Some(s) = rtp.get(i) {
                    let _ = s.send_to(&pkt, dest);
                }
            }
            while let Some((i, m)) = self.iwf.poll_sip() {
                if let Some(s) = sip.get(i) {
                    let _ = s.send_to(&m, engine);
                }
            }
            while let Some(l) = self.iwf.poll_log() {
                tracing::info!("{l}");
            }
            if now >= next_status {
                next_status = now + Duration::from_millis(100);
                self.publish(cfg, &status);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.card.now_ms())
    }

    /// One millisecond of the card.
    fn step_ms(&mut self) {
        let ms = self.card.now_ms();
        for f in &mut self.far {
            if let Some(g) = &mut f.tone {
                let mut b = [0i16; sim::SAMPLES_PER_MS];
                g.fill(&mut b);
                let _ = self.card.write(ChanId(f.chan), &b);
            }
        }
        let mut due = Vec::new();
        self.held.retain(|h| {
            if h.0 <= ms {
                due.push(h.clone());
                false
            } else {
                true
            }
        });
        for (_, chan, cadence) in due {
            self.ring(chan, cadence);
        }
        self.card.step_ms();
        let now = self.now();
        while let Some((chan, e)) = self.card.poll_event() {
            let Some(hw) = HwEvent::from_card(e) else {
                continue;
            };
            self.iwf.handle_hw(chan.0, hw, now);
        }
        let mut audio = Vec::new();
        for f in &mut self.far {
            audio.clear();
            let chan = ChanId(f.chan);
            let _ = self.card.read(chan, &mut audio);
            self.iwf.handle_audio(f.chan, &audio, now);
            if f.kind == Kind::Fxs {
                // The simulated phone's ear: caller ID decoder while on hook.
                if let Ok(ph) = self.card.phone(chan) {
                    let heard = ph.take_heard();
                    let on_hook = !ph.is_off_hook();
                    if on_hook {
                        let got = &mut f.cid_received;
                        if let Some(d) = &mut f.fsk {
                            d.process(&heard, |r| {
                                if let Ok(c) = r {
                                    *got = Some(c);
                                }
                            });
                        }
                        if let Some(d) = &mut f.dtmf_cid {
                            d.process(&heard, |c| *got = Some(c));
                        }
                    }
                    if f.heard.len() + heard.len() > HEARD_KEEP {
                        let drop = (f.heard.len() + heard.len() - HEARD_KEEP).min(f.heard.len());
                        f.heard.drain(..drop);
                    }
                    f.heard.extend(heard);
                }
            } else if let Ok(l) = self.card.line(chan) {
                let heard = l.take_heard();
                if f.heard.len() + heard.len() > HEARD_KEEP {
                    let drop = (f.heard.len() + heard.len() - HEARD_KEEP).min(f.heard.len());
                    f.heard.drain(..drop);
                }
                f.heard.extend(heard);
            }
        }
        if self.card.now_ms().is_multiple_of(10) {
            self.iwf.handle_timeout(now);
        }
        self.apply_commands();
    }

    fn ring(&mut self, chan: u16, cadence: Vec<u32>) {
        let c = ChanId(chan);
        let _ = self
            .card
            .command(c, &Command::SetCadence(RingCadence(cadence)));
        let _ = self.card.command(c, &Command::Ring);
    }

    /// The core's commands to the card and the tone/caller ID renderers.
    fn apply_commands(&mut self) {
        while let Some((chan, cmd)) = self.iwf.poll_hw() {
            let c = ChanId(chan);
            let ms = self.card.now_ms();
            let Some(f) = self.far.iter_mut().find(|f| f.chan == chan) else {
                continue;
            };
            match cmd {
                HwCommand::Ring { cadence } if f.spill_until > ms => {
                    self.held.push((f.spill_until + 200, chan, cadence));
                    f.spill_until = 0;
                }
                HwCommand::Ring { cadence } => {
                    if !f.pre_ring_cid {
                        // A new call: forget the last call's caller ID.
                        f.cid_received = None;
                    }
                    f.spill_until = 0;
                    self.ring(chan, cadence);
                }
                HwCommand::RingOff => {
                    self.held.retain(|h| h.1 != chan);
                    let _ = self.card.command(c, &Command::RingOff);
                }
                HwCommand::OnHook => {
                    f.tone = None;
                    let _ = self.card.command(c, &Command::OnHook);
                }
                HwCommand::OffHook => {
                    let _ = self.card.command(c, &Command::OffHook);
                }
                HwCommand::SetPolarity(r) => {
                    let _ = self.card.command(c, &Command::SetPolarity(r));
                }
                HwCommand::PlayTone(kind) => {
                    f.tone = zone_tone(&f.zone, kind).map(ToneGenerator::new);
                }
                HwCommand::StopTone => f.tone = None,
                HwCommand::SendCallerId { cid, signalling } => {
                    f.cid_received = None;
                    // After the first ring: 500 ms into the silence; before
                    // it (polarity already reversed): 300 ms after the reversal.
                    let pre_ring = !self.card.phone(c).is_ok_and(|p| p.rings() > 0);
                    let lead = if pre_ring { 2400 } else { 4000 };
                    let mut pcm = vec![0i16; lead];
                    match signalling {
                        CidSignalling::Fsk { standard, format } => {
                            if let Err(e) = fsk::generate(standard, format, &cid, -13.0, &mut pcm) {
                                tracing::warn!("analog: port {chan}: caller ID not sent: {e}");
                            }
                        }
                        CidSignalling::Dtmf => fsk::dtmf_cid_generate(&cid, -10.0, &mut pcm),
                    }
                    if pre_ring {
                        f.spill_until = ms + pcm.len() as u64 / 8;
                    }
                    let _ = self.card.write(c, &pcm);
                }
                HwCommand::SendDtmf(digits) => {
                    let mut pcm = Vec::new();
                    dtmf::generate_digits(&digits, -8.0, 80, 80, &mut pcm);
                    let _ = self.card.write(c, &pcm);
                }
            }
        }
    }

    fn publish(&mut self, cfg: &AnalogConfig, status: &Mutex<Vec<PortStatus>>) {
        let states = self.iwf.port_states();
        let mut v = Vec::new();
        for ((chan, state, call, line_cid), p) in states.into_iter().zip(&cfg.ports) {
            let c = ChanId(chan);
            let f = self.far.iter().find(|f| f.chan == chan);
            let (off_hook, ringing, rings) = match p.kind {
                Kind::Fxs => self
                    .card
                    .phone(c)
                    .map(|ph| (ph.is_off_hook(), ph.is_ringing(), ph.rings()))
                    .unwrap_or_default(),
                Kind::Fxo => self
                    .card
                    .line(c)
                    .map(|l| (l.seized(), l.ringing(), 0))
                    .unwrap_or_default(),
            };
            let cid_received = match p.kind {
                Kind::Fxs => f.and_then(|f| f.cid_received.as_ref()).map(CidJson::from),
                Kind::Fxo => line_cid.map(CidJson::from),
            };
            v.push(PortStatus {
                r#type: "analog",
                port: chan,
                kind: match p.kind {
                    Kind::Fxs => "fxs",
                    Kind::Fxo => "fxo",
                },
                extension: p.extension.clone(),
                state,
                off_hook,
                ringing,
                rings,
                cid: p.cid.name(),
                cid_received,
                call: call.map(str::to_string),
            });
        }
        if let Ok(mut s) = status.lock() {
            *s = v;
        }
    }

    /// A simulator command (see the module doc).
    fn control(&mut self, line: &str) -> Result<(), String> {
        let mut w = line.split_whitespace();
        let verb = w.next().ok_or("empty command")?;
        let port: u16 = w
            .next()
            .ok_or("missing port")?
            .parse()
            .map_err(|_| "port: not a number")?;
        let c = ChanId(port);
        let arg = w.next();
        let rest: Vec<&str> = w.collect();
        let e = |x: drivers::analog::AnalogError| x.to_string();
        match verb {
            "offhook" => self.card.phone(c).map_err(e)?.off_hook(),
            "onhook" => self.card.phone(c).map_err(e)?.on_hook(),
            "wait" => {
                let ms = arg.and_then(|a| a.parse().ok()).ok_or("wait: give ms")?;
                self.card.phone(c).map_err(e)?.wait(ms)
            }
            "flash" => self.card.phone(c).map_err(e)?.flash(500),
            "dtmf" => self
                .card
                .phone(c)
                .map_err(e)?
                .dial_dtmf(arg.ok_or("dtmf: give digits")?),
            "pulse" => self
                .card
                .phone(c)
                .map_err(e)?
                .dial_pulse(arg.ok_or("pulse: give digits")?),
            "answer_after" => {
                let n: u32 = arg
                    .and_then(|a| a.parse().ok())
                    .ok_or("answer_after: give N")?;
                self.card
                    .phone(c)
                    .map_err(e)?
                    .answer_after_rings((n > 0).then_some(n))
            }
            "echo" => self.card.phone(c).map_err(e)?.set_echo(arg == Some("on")),
            "dump" => {
                let path = arg.ok_or("dump: give a file")?;
                let f = self
                    .far
                    .iter()
                    .find(|f| f.chan == port)
                    .ok_or("no such port")?;
                let bytes: Vec<u8> = f.heard.iter().flat_map(|s| s.to_le_bytes()).collect();
                std::fs::write(path, bytes).map_err(|x| format!("dump {path}: {x}"))?;
            }
            "ring" => {
                let timing = match arg {
                    Some("after") => Some(CidTiming::AfterFirstRing),
                    Some("before") => Some(CidTiming::BeforeFirstRing),
                    Some("none") | None => None,
                    Some(o) => return Err(format!("ring: timing {o}: after|before|none")),
                };
                let cid = match (timing, rest.first()) {
                    (Some(t), Some(path)) if *path != "-" => {
                        let b = std::fs::read(path).map_err(|x| format!("ring {path}: {x}"))?;
                        let pcm: Vec<i16> = b
                            .chunks_exact(2)
                            .map(|x| i16::from_le_bytes([x[0], x[1]]))
                            .collect();
                        Some((pcm, t))
                    }
                    (Some(_), _) => return Err("ring: give the spill file".into()),
                    _ => None,
                };
                let zone = self
                    .far
                    .iter()
                    .find(|f| f.chan == port)
                    .map_or("us".to_string(), |f| f.zone.clone());
                let mut cadence = RingCadence::for_zone(&zone).unwrap_or_else(RingCadence::us);
                if let Some(c) = rest.get(1) {
                    let v: Result<Vec<u32>, _> = c.split(',').map(str::parse).collect();
                    cadence = RingCadence(v.map_err(|_| format!("ring: cadence {c}: ms,ms,..."))?);
                }
                self.card.line(c).map_err(e)?.ring_in(&cadence.0, cid);
            }
            "co_answer" => self.card.line(c).map_err(e)?.answer(false),
            "hangup" => {
                let how = match arg {
                    Some("polarity") => Disconnect::PolarityReversal,
                    Some("loop") => Disconnect::LoopCurrentDrop,
                    Some("busy") => Disconnect::BusyTone {
                        hz: (480.0, 620.0),
                        on_ms: 500,
                        off_ms: 500,
                    },
                    _ => return Err("hangup: polarity|loop|busy".into()),
                };
                self.card.line(c).map_err(e)?.hang_up(how);
            }
            v => return Err(format!("unknown command {v}")),
        }
        Ok(())
    }
}
