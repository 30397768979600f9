//! The analog IWF's DAHDI edge (`[analog] card = "dahdi"`): each
//! `[[analog.port]]` is a DAHDI channel opened on `/dev/dahdi/channel`.
//!
//! Port `p` is DAHDI channel `channel_base + p`, or the port's `channel`
//! key. At start every channel is opened and its `system.conf` signalling
//! checked against the port kind (an FXS port needs FXO signalling,
//! `fxoks=`; an FXO port FXS signalling, `fxsks=`); a mismatch is a start-up
//! error naming port, channel and the line to write.
//!
//! The thread then loops every 2 ms: SIP and RTP in; per port the kernel's
//! events (`errno` 500 / `DAHDI_GETEVENT`) to [`Iwf::handle_hw`], every
//! received 20 ms block (160 samples in the channel's law) decoded to
//! [`Iwf::handle_audio`], and for each received block one block written
//! back, so the transmit side runs on the card's clock and never drifts:
//! a caller ID or DTMF spill first, else the call-progress tone the line
//! asked for, else the call's audio from RTP, else silence. The core's
//! [`HwCommand`]s become `DAHDI_HOOK` (ring, ring off, on/off hook),
//! `DAHDI_SETCADENCE`, `DAHDI_SETPOLARITY` and, before a caller ID spill
//! to an on-hook phone, `DAHDI_ONHOOKTRANSFER`. A channel that refuses
//! polarity or on-hook transfer (a channel bank on a CAS span has neither)
//! is logged once per port and the call goes on. Device errors are logged,
//! counted, never fatal.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::codec::g711;
use dataplane::dsp::dtmf;
use dataplane::dsp::fsk;
use dataplane::dsp::tones::{zone_tone, ToneGenerator};
use drivers::analog::dahdi::AnalogChannel;
use drivers::analog::{Command, Event, Hook, PortKind, RingCadence};

use super::edge::{IwfError, PortStatus};
use super::Iwf;
use crate::analog::config::{AnalogConfig, Kind};
use crate::analog::{CidSignalling, HwCommand, HwEvent};

/// Samples (and law octets) per block: 20 ms.
const BLOCK: usize = 160;
/// Kernel buffers per direction (160 ms).
const NUMBUFS: i32 = 8;
/// Blocks written ahead at start so the transmit side never runs dry.
const PRIME_BLOCKS: usize = 2;
/// Call audio kept waiting for the line (RTP arriving in a burst): 400 ms.
const MAX_RTP_SAMPLES: usize = 3200;
/// Call audio queued before it starts playing (60 ms).
const PLAYOUT: usize = 3 * BLOCK;
/// Device errors logged per port before going quiet (they are counted).
const MAX_LOGGED: u64 = 20;

/// One port on its DAHDI channel.
struct DahdiPort {
    /// The configured port number (the core's channel id).
    port: u16,
    kind: Kind,
    zone: String,
    ch: AnalogChannel,
    tone: Option<ToneGenerator>,
    /// Caller ID or DTMF samples to send before anything else.
    spill: VecDeque<i16>,
    /// Call audio from RTP.
    rtp: VecDeque<i16>,
    /// The call audio is playing (the playout buffer had filled).
    playing: bool,
    /// A ring held back until the pre-ring caller ID spill has gone out.
    held_ring: Option<Vec<u32>>,
    /// Ring bursts ended (RINGEROFF) in the current call.
    rings: u32,
    errors: u64,
    /// Polarity / on-hook transfer refused once already (logged once).
    no_polarity: bool,
    no_oht: bool,
}

/// The open DAHDI channels of `[analog]`.
pub(super) struct DahdiCard {
    ports: Vec<DahdiPort>,
    log: VecDeque<String>,
}

impl DahdiCard {
    /// Opens every port's channel on `/dev/dahdi/channel`.
    pub(super) fn open(cfg: &AnalogConfig) -> Result<Self, IwfError> {
        Self::open_at(Path::new(drivers::dahdi::chan::CHANNEL_DEVICE), cfg)
    }

    /// Opens every port's channel through the channel opener at `device`.
    pub(super) fn open_at(device: &Path, cfg: &AnalogConfig) -> Result<Self, IwfError> {
        let mut ports = Vec::with_capacity(cfg.ports.len());
        for p in &cfg.ports {
            let channo = p.dahdi_channel(cfg.channel_base);
            let kind = match p.kind {
                Kind::Fxs => PortKind::Fxs,
                Kind::Fxo => PortKind::Fxo,
            };
            let ch =
                AnalogChannel::open_at(device, channo, kind, BLOCK, NUMBUFS).map_err(|err| {
                    IwfError::Card {
                        port: p.port,
                        kind: kind_name(p.kind),
                        err,
                    }
                })?;
            ports.push(DahdiPort {
                port: p.port,
                kind: p.kind,
                zone: p.zone.clone(),
                ch,
                tone: None,
                spill: VecDeque::new(),
                rtp: VecDeque::new(),
                playing: false,
                held_ring: None,
                rings: 0,
                errors: 0,
                no_polarity: false,
                no_oht: false,
            });
        }
        Ok(DahdiCard {
            ports,
            log: VecDeque::new(),
        })
    }

    fn index(&self, port: u16) -> Option<usize> {
        self.ports.iter().position(|p| p.port == port)
    }

    fn failed(&mut self, i: usize, what: &str, e: &drivers::analog::AnalogError) {
        let p = &mut self.ports[i];
        p.errors += 1;
        if p.errors <= MAX_LOGGED {
            self.log
                .push_back(format!("analog: port {}: {what}: {e}", p.port));
        }
    }

    /// Applies one command to port index `i`'s channel, logging a failure.
    fn hw(&mut self, i: usize, cmd: &Command) -> bool {
        match self.ports[i].ch.command(cmd) {
            Ok(()) => true,
            Err(e) => {
                self.failed(i, "command", &e);
                false
            }
        }
    }

    fn ring(&mut self, i: usize, cadence: Vec<u32>) {
        self.ports[i].rings = 0;
        let c = RingCadence(cadence);
        if c.to_dahdi().is_some() {
            self.hw(i, &Command::SetCadence(c));
        }
        self.hw(i, &Command::Ring);
    }

    /// The core's commands to the channels and the tone/caller ID renderers.
    fn apply_commands(&mut self, iwf: &mut Iwf) {
        while let Some((port, cmd)) = iwf.poll_hw() {
            let Some(i) = self.index(port) else { continue };
            match cmd {
                HwCommand::Ring { cadence } if !self.ports[i].spill.is_empty() => {
                    // Pre-ring caller ID is still going out: ring after it.
                    self.ports[i].held_ring = Some(cadence);
                }
                HwCommand::Ring { cadence } => self.ring(i, cadence),
                HwCommand::RingOff => {
                    self.ports[i].held_ring = None;
                    self.hw(i, &Command::RingOff);
                }
                HwCommand::OnHook => {
                    let p = &mut self.ports[i];
                    p.tone = None;
                    p.spill.clear();
                    p.rtp.clear();
                    p.held_ring = None;
                    self.hw(i, &Command::OnHook);
                }
                HwCommand::OffHook => {
                    self.hw(i, &Command::OffHook);
                }
                HwCommand::SetPolarity(r) => {
                    let p = &mut self.ports[i];
                    if p.no_polarity {
                        continue;
                    }
                    if let Err(e) = p.ch.command(&Command::SetPolarity(r)) {
                        p.no_polarity = true;
                        let msg = format!(
                            "analog: port {}: polarity reversal not available, going on without: {e}",
                            p.port
                        );
                        self.log.push_back(msg);
                    }
                }
                HwCommand::PlayTone(kind) => {
                    let p = &mut self.ports[i];
                    p.tone = zone_tone(&p.zone, kind).map(ToneGenerator::new);
                }
                HwCommand::StopTone => self.ports[i].tone = None,
                HwCommand::SendCallerId { cid, signalling } => {
                    // After the first ring: 500 ms into the silence; before
                    // it (polarity already reversed): 300 ms after it.
                    let pre_ring = self.ports[i].rings == 0;
                    let lead = if pre_ring { 2400 } else { 4000 };
                    let mut pcm = vec![0i16; lead];
                    match signalling {
                        CidSignalling::Fsk { standard, format } => {
                            if let Err(e) = fsk::generate(standard, format, &cid, -13.0, &mut pcm) {
                                self.log.push_back(format!(
                                    "analog: port {port}: caller ID not sent: {e}"
                                ));
                            }
                        }
                        CidSignalling::Dtmf => fsk::dtmf_cid_generate(&cid, -10.0, &mut pcm),
                    }
                    let ms = u32::try_from(pcm.len() / 8 + 200).unwrap_or(u32::MAX);
                    let p = &mut self.ports[i];
                    if p.kind == Kind::Fxs && !p.no_oht {
                        // A real FXS module passes audio to an on-hook
                        // phone only during on-hook transfer.
                        if let Err(e) = p.ch.command(&Command::OnHookTransfer(ms)) {
                            p.no_oht = true;
                            let msg = format!(
                                "analog: port {}: on-hook transfer not available, sending caller ID without: {e}",
                                p.port
                            );
                            self.log.push_back(msg);
                        }
                    }
                    let p = &mut self.ports[i];
                    p.spill.clear();
                    p.spill.extend(pcm);
                }
                HwCommand::SendDtmf(digits) => {
                    let mut pcm = Vec::new();
                    dtmf::generate_digits(&digits, -8.0, 80, 80, &mut pcm);
                    self.ports[i].spill.extend(pcm);
                }
            }
        }
    }

    /// Events of every port to the core.
    fn events(&mut self, iwf: &mut Iwf, now: Instant) {
        for i in 0..self.ports.len() {
            for _ in 0..32 {
                let got = self.ports[i].ch.poll_event();
                let (code, ev) = match got {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => {
                        self.failed(i, "events", &e);
                        break;
                    }
                };
                let p = &mut self.ports[i];
                let hw = match ev {
                    Some(Event::Alarm(on)) => {
                        let msg = format!(
                            "analog: port {} (channel {}): {}",
                            p.port,
                            p.ch.channo(),
                            if on { "alarm" } else { "alarm cleared" }
                        );
                        self.log.push_back(msg);
                        continue;
                    }
                    Some(e) => {
                        if e == Event::RingerOff {
                            p.rings += 1;
                        }
                        match HwEvent::from_card(e) {
                            Some(hw) => hw,
                            None => continue,
                        }
                    }
                    None => {
                        tracing::debug!("analog: port {}: DAHDI event {code:#x} ignored", p.port);
                        continue;
                    }
                };
                iwf.handle_hw(p.port, hw, now);
                self.apply_commands(iwf);
            }
        }
    }

    /// The next outgoing block of port index `i`.
    fn next_block(&mut self, i: usize, out: &mut [i16; BLOCK]) {
        let p = &mut self.ports[i];
        out.fill(0);
        if !p.spill.is_empty() {
            for (o, s) in out
                .iter_mut()
                .zip(p.spill.drain(..BLOCK.min(p.spill.len())))
            {
                *o = s;
            }
            if p.spill.is_empty() {
                if let Some(c) = p.held_ring.take() {
                    self.ring(i, c);
                }
            }
            return;
        }
        if let Some(g) = &mut p.tone {
            g.fill(out);
            return;
        }
        // A small playout buffer: start (and restart after running dry)
        // only with PLAYOUT samples queued, so RTP jitter does not cut
        // the call's audio into pieces.
        if !p.playing && p.rtp.len() >= PLAYOUT {
            p.playing = true;
        }
        if p.playing && p.rtp.len() < BLOCK {
            p.playing = false;
        }
        if p.playing {
            for (o, s) in out.iter_mut().zip(p.rtp.drain(..BLOCK)) {
                *o = s;
            }
        }
    }

    fn write(&mut self, i: usize, pcm: &[i16; BLOCK]) {
        let mut law = [0u8; BLOCK];
        if self.ports[i].ch.is_alaw() {
            g711::encode_alaw(pcm, &mut law);
        } else {
            g711::encode_ulaw(pcm, &mut law);
        }
        if let Err(e) = self.ports[i].ch.write_block(&law) {
            self.failed(i, "write", &e);
        }
    }

    /// Received blocks to the core; one block back for each.
    fn audio(&mut self, iwf: &mut Iwf, now: Instant) {
        let mut law = [0u8; BLOCK];
        let mut pcm = [0i16; BLOCK];
        let mut out = [0i16; BLOCK];
        for i in 0..self.ports.len() {
            for _ in 0..NUMBUFS {
                match self.ports[i].ch.read_block(&mut law) {
                    Ok(Some(n)) if n == BLOCK => {}
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        self.failed(i, "read", &e);
                        break;
                    }
                }
                if self.ports[i].ch.is_alaw() {
                    g711::decode_alaw(&law, &mut pcm);
                } else {
                    g711::decode_ulaw(&law, &mut pcm);
                }
                iwf.handle_audio(self.ports[i].port, &pcm, now);
                self.apply_commands(iwf);
                self.next_block(i, &mut out);
                self.write(i, &out);
            }
        }
    }

    fn publish(&self, iwf: &Iwf, cfg: &AnalogConfig, status: &Mutex<Vec<PortStatus>>) {
        let states = iwf.port_states();
        let mut v = Vec::new();
        for (chan, state, call, line_cid) in states {
            let (Some(p), Some(c)) = (
                self.ports.iter().find(|p| p.port == chan),
                cfg.ports.iter().find(|c| c.port == chan),
            ) else {
                continue;
            };
            let model = p.ch.port();
            v.push(PortStatus {
                r#type: "analog",
                port: chan,
                kind: kind_name(p.kind),
                extension: c.extension.clone(),
                state,
                off_hook: model.hook() == Hook::Off,
                ringing: model.ringing(),
                rings: p.rings,
                cid: c.cid.name(),
                cid_received: line_cid.map(super::edge::CidJson::from),
                call: call.map(str::to_string),
            });
        }
        if let Ok(mut s) = status.lock() {
            *s = v;
        }
    }

    /// The IWF thread's loop on the DAHDI channels.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        mut self,
        mut iwf: Iwf,
        cfg: &AnalogConfig,
        sip: Vec<UdpSocket>,
        rtp: Vec<UdpSocket>,
        engine: SocketAddr,
        status: Arc<Mutex<Vec<PortStatus>>>,
        stop: Arc<AtomicBool>,
    ) {
        let silence = [0i16; BLOCK];
        for i in 0..self.ports.len() {
            if let Err(e) = self.ports[i].ch.flush() {
                self.failed(i, "start", &e);
            }
            for _ in 0..PRIME_BLOCKS {
                self.write(i, &silence);
            }
        }
        let mut buf = vec![0u8; 65_535];
        let mut next_status = super::edge::clock();
        while !stop.load(Ordering::Relaxed) {
            let now = super::edge::clock();
            for (i, s) in sip.iter().enumerate() {
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    iwf.handle_sip(i, &buf[..n], from, now);
                }
            }
            for (i, s) in rtp.iter().enumerate() {
                while let Ok(n) = s.recv(&mut buf) {
                    if let Some((port, pcm)) = iwf.handle_rtp(i, &buf[..n]) {
                        if let Some(j) = self.index(port) {
                            let q = &mut self.ports[j].rtp;
                            q.extend(pcm);
                            let over = q.len().saturating_sub(MAX_RTP_SAMPLES);
                            q.drain(..over);
                        }
                    }
                }
            }
            self.apply_commands(&mut iwf);
            self.events(&mut iwf, now);
            self.audio(&mut iwf, now);
            iwf.handle_timeout(now);
            self.apply_commands(&mut iwf);
            while let Some((i, dest, pkt)) = iwf.poll_rtp() {
                if let Some(s) = rtp.get(i) {
                    let _ = s.send_to(&pkt, dest);
                }
            }
            while let Some((i, m)) = iwf.poll_sip() {
                if let Some(s) = sip.get(i) {
                    let _ = s.send_to(&m, engine);
                }
            }
            while let Some(l) = iwf.poll_log() {
                tracing::info!("{l}");
            }
            while let Some(l) = self.log.pop_front() {
                tracing::warn!("{l}");
            }
            if now >= next_status {
                next_status = now + Duration::from_millis(100);
                self.publish(&iwf, cfg, &status);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Leave no phone ringing and no line seized.
        for i in 0..self.ports.len() {
            let cmd = match self.ports[i].kind {
                Kind::Fxs if self.ports[i].ch.port().ringing() => Command::RingOff,
                Kind::Fxo if self.ports[i].ch.port().hook() == Hook::Off => Command::OnHook,
                _ => continue,
            };
            self.hw(i, &cmd);
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Fxs => "fxs",
        Kind::Fxo => "fxo",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> AnalogConfig {
        #[derive(serde::Deserialize)]
        struct Doc {
            analog: crate::analog::config::RawAnalog,
        }
        let d: Doc = toml::from_str(text).unwrap();
        AnalogConfig::from_raw(&d.analog).unwrap()
    }

    #[test]
    fn open_errors_name_port_and_channel() {
        let c = cfg("[analog]\ncard = \"dahdi\"\nchannel_base = 62\n[[analog.port]]\nport = 1\nkind = \"fxs\"\n");
        let e = DahdiCard::open_at(Path::new("/nonexistent/dahdi/channel"), &c)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("port 1 (fxs)") && e.contains("channel 63") && e.contains("/nonexistent"),
            "{e}"
        );
        let e = DahdiCard::open_at(Path::new("/dev/null"), &c)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("channel 63: DAHDI_SPECIFY"), "{e}");
    }
}
