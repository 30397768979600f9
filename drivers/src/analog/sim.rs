//! The simulated TDM400P-class analog card: simulated telephones on FXS ports
//! and a simulated central-office line on FXO ports, driven by virtual time
//! in 1 ms steps ([`SimCard::step_ms`]).
//!
//! The card plays the part of the hardware plus the DAHDI kernel: it takes
//! [`Command`]s, queues [`Event`]s, and carries linear 8 kHz audio both ways
//! (8 samples per ms). On FXS ports it classifies the phone's loop breaks the
//! way DAHDI does: a short break (≤ [`PULSE_BREAK_MAX_MS`]) is a dial pulse,
//! pulses end in a digit after [`PULSE_AFTER_MS`] of make, a longer break up
//! to [`RX_FLASH_MS`] is a hook flash, and a longer one is on hook. It rings
//! with the port's cadence (RINGERON/RINGEROFF per burst) and stops on ring
//! trip.
//!
//! The far ends are scripted: [`SimPhone`] goes off hook, dials DTMF or pulse,
//! flashes, hangs up, answers after N rings and records what it hears;
//! [`SimCoLine`] rings with a cadence, plays a caller ID spill (samples
//! supplied by the caller, since this crate has no DSP) before or after the
//! first ring, answers, and disconnects by polarity reversal, loop current
//! drop or busy tone.

use std::collections::VecDeque;

use super::{conf::PortConf, AnalogError, AnalogPort, Command, Event, Hook, PortKind};
use crate::ChanId;

/// Samples per 1 ms step.
pub const SAMPLES_PER_MS: usize = 8;
/// Longest loop break counted as a dial pulse.
pub const PULSE_BREAK_MAX_MS: u64 = 120;
/// Make time after the last pulse that completes a digit.
pub const PULSE_AFTER_MS: u64 = 250;
/// Longest loop break counted as a hook flash (DAHDI's rxflashtime).
pub const RX_FLASH_MS: u64 = 1250;
/// Kewl-start battery drop on disconnect.
pub const KEWL_MS: u64 = 500;

/// A two-frequency tone generator (phase continuous), for DTMF and busy tone.
#[derive(Debug, Clone)]
struct Dual {
    f: (f64, f64),
    amp: f64,
    phase: (f64, f64),
}

impl Dual {
    fn new(f1: f64, f2: f64, amp: f64) -> Self {
        Dual {
            f: (f1, f2),
            amp,
            phase: (0.0, 0.0),
        }
    }

    fn next(&mut self) -> i16 {
        let tau = std::f64::consts::TAU;
        let v = self.amp * ((tau * self.phase.0).sin() + (tau * self.phase.1).sin());
        self.phase.0 = (self.phase.0 + self.f.0 / 8000.0).fract();
        self.phase.1 = (self.phase.1 + self.f.1 / 8000.0).fract();
        v.round().clamp(-32768.0, 32767.0) as i16
    }

    fn render(&mut self, n: usize, out: &mut VecDeque<i16>) {
        out.extend((0..n).map(|_| self.next()));
    }
}

/// DTMF frequencies of a key.
fn dtmf_freqs(c: char) -> Option<(f64, f64)> {
    const KEYS: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    const ROW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COL: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let c = c.to_ascii_uppercase();
    KEYS.iter()
        .enumerate()
        .find_map(|(r, k)| k.chars().position(|x| x == c).map(|col| (ROW[r], COL[col])))
}

/// One step of a phone's script.
#[derive(Debug, Clone)]
struct PhoneStep {
    /// Set the loop (true = off hook) at the start of the step.
    loop_closed: Option<bool>,
    /// Audio to speak at the start of the step.
    audio: Vec<i16>,
    /// How long the step lasts.
    hold_ms: u64,
}

/// A simulated telephone on an FXS port.
#[derive(Debug, Clone, Default)]
pub struct SimPhone {
    loop_closed: bool,
    ringer: bool,
    rings: u32,
    answer_after: Option<u32>,
    echo: bool,
    script: VecDeque<PhoneStep>,
    hold: u64,
    mouth: VecDeque<i16>,
    heard: Vec<i16>,
    polarity_reversed: bool,
}

impl SimPhone {
    /// Lift the handset (after what is already scripted).
    pub fn off_hook(&mut self) {
        self.push(Some(true), Vec::new(), 0);
    }

    /// Hang up.
    pub fn on_hook(&mut self) {
        self.push(Some(false), Vec::new(), 0);
    }

    /// Do nothing for `ms`.
    pub fn wait(&mut self, ms: u64) {
        self.push(None, Vec::new(), ms);
    }

    /// A hook flash of `ms` (typ. 500).
    pub fn flash(&mut self, ms: u64) {
        self.push(Some(false), Vec::new(), ms);
        self.push(Some(true), Vec::new(), 0);
    }

    /// Dial by DTMF: 80 ms tones, 80 ms gaps, -7 dBm0-ish per tone.
    /// Characters that are not keys are skipped.
    pub fn dial_dtmf(&mut self, digits: &str) {
        for c in digits.chars() {
            let Some((lo, hi)) = dtmf_freqs(c) else {
                continue;
            };
            let mut q = VecDeque::new();
            Dual::new(lo, hi, 7000.0).render(80 * SAMPLES_PER_MS, &mut q);
            q.extend(std::iter::repeat_n(0, 80 * SAMPLES_PER_MS));
            self.push(None, q.into(), 160);
        }
    }

    /// Dial by rotary pulses (10 pulses/s: 60 ms break, 40 ms make, 700 ms
    /// between digits). Non-digits are skipped.
    pub fn dial_pulse(&mut self, digits: &str) {
        for c in digits.chars() {
            let Some(d) = c.to_digit(10) else { continue };
            let n = if d == 0 { 10 } else { d };
            for _ in 0..n {
                self.push(Some(false), Vec::new(), 60);
                self.push(Some(true), Vec::new(), 40);
            }
            self.push(None, Vec::new(), 700);
        }
    }

    /// Speak `samples` (queued after what is already scripted).
    pub fn say(&mut self, samples: &[i16]) {
        self.push(None, samples.to_vec(), 0);
    }

    /// Answer by itself 500 ms after the `n`th ring burst ends (`None`: never).
    pub fn answer_after_rings(&mut self, n: Option<u32>) {
        self.answer_after = n;
    }

    /// Echo what the phone hears back into the line while off hook.
    pub fn set_echo(&mut self, on: bool) {
        self.echo = on;
    }

    /// Off hook now.
    pub fn is_off_hook(&self) -> bool {
        self.loop_closed
    }

    /// The ringer is sounding now.
    pub fn is_ringing(&self) -> bool {
        self.ringer
    }

    /// Ring bursts heard since the last time the phone was idle.
    pub fn rings(&self) -> u32 {
        self.rings
    }

    /// Line polarity as the phone sees it.
    pub fn polarity_reversed(&self) -> bool {
        self.polarity_reversed
    }

    /// Everything the phone has heard (on or off hook), 8 kHz linear.
    pub fn heard(&self) -> &[i16] {
        &self.heard
    }

    /// Take and clear what the phone has heard.
    pub fn take_heard(&mut self) -> Vec<i16> {
        std::mem::take(&mut self.heard)
    }

    /// Nothing left in the script.
    pub fn idle(&self) -> bool {
        self.script.is_empty() && self.hold == 0 && self.mouth.is_empty()
    }

    fn push(&mut self, loop_closed: Option<bool>, audio: Vec<i16>, hold_ms: u64) {
        self.script.push_back(PhoneStep {
            loop_closed,
            audio,
            hold_ms,
        });
    }

    /// One ms of the script; returns the loop state for this ms.
    fn step(&mut self) -> bool {
        while self.hold == 0 {
            let Some(s) = self.script.pop_front() else {
                break;
            };
            if let Some(l) = s.loop_closed {
                self.loop_closed = l;
            }
            self.mouth.extend(s.audio);
            self.hold = s.hold_ms;
        }
        self.hold = self.hold.saturating_sub(1);
        self.loop_closed
    }

    fn set_ringer(&mut self, on: bool) {
        if self.ringer && !on {
            self.rings += 1;
            if self.answer_after.is_some_and(|n| self.rings >= n) && !self.loop_closed {
                self.wait(500);
                self.off_hook();
            }
        }
        self.ringer = on;
    }
}

/// When a CO line sends its caller ID spill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidTiming {
    /// Bell style: 500 ms after the first ring burst.
    AfterFirstRing,
    /// ETSI style: polarity reversal, 300 ms, the spill, 500 ms, then ringing.
    BeforeFirstRing,
}

/// How a CO line clears a call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Disconnect {
    /// Reverse the line polarity.
    PolarityReversal,
    /// Drop battery (loop current) for [`KEWL_MS`].
    LoopCurrentDrop,
    /// Play a busy tone: one or two frequencies (0 = none), on/off in ms.
    BusyTone {
        /// Frequencies in Hz.
        hz: (f64, f64),
        /// Tone on, ms.
        on_ms: u64,
        /// Tone off, ms.
        off_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum CoState {
    Idle,
    /// Ringing: position in the cadence, bursts done.
    Ringing {
        pos: u64,
        bursts: u32,
    },
    /// Waiting before ringing (pre-ring caller ID), ms left.
    PreRing(u64),
    Connected,
    Busy {
        hz: (f64, f64),
        on_ms: u64,
        off_ms: u64,
        t: u64,
    },
    /// Gone (after a polarity or loop drop disconnect) until Tandem hangs up.
    Cleared,
}

/// A simulated central-office line on an FXO port.
#[derive(Debug, Clone)]
pub struct SimCoLine {
    state: CoState,
    cadence: Vec<u64>,
    cid: Option<(Vec<i16>, CidTiming)>,
    /// ms until the CID spill starts (after the first ring).
    cid_in: Option<u64>,
    mouth: VecDeque<i16>,
    heard: Vec<i16>,
    seized: bool,
    pending: VecDeque<Event>,
    busy: Option<Dual>,
    /// ms of battery still off (loop current drop).
    drop_ms: u64,
}

impl Default for SimCoLine {
    fn default() -> Self {
        SimCoLine {
            state: CoState::Idle,
            cadence: vec![2000, 4000],
            cid: None,
            cid_in: None,
            mouth: VecDeque::new(),
            heard: Vec::new(),
            seized: false,
            pending: VecDeque::new(),
            busy: None,
            drop_ms: 0,
        }
    }
}

impl SimCoLine {
    /// Start an incoming call: ring with `cadence` (ms on/off, repeated) and
    /// send `cid` (FSK or DTMF samples, made by the caller) at `timing`.
    pub fn ring_in(&mut self, cadence: &[u32], cid: Option<(Vec<i16>, CidTiming)>) {
        self.cadence = cadence.iter().map(|&c| u64::from(c.max(1))).collect();
        if self.cadence.is_empty() {
            self.cadence = vec![2000, 4000];
        }
        match &cid {
            Some((samples, CidTiming::BeforeFirstRing)) => {
                self.pending.push_back(Event::Polarity);
                self.mouth
                    .extend(std::iter::repeat_n(0, 300 * SAMPLES_PER_MS));
                self.mouth.extend(samples.iter().copied());
                let ms = 300 + samples.len() as u64 / SAMPLES_PER_MS as u64 + 500;
                self.state = CoState::PreRing(ms);
                self.cid = None;
            }
            _ => {
                self.state = CoState::Ringing { pos: 0, bursts: 0 };
                self.cid = cid;
            }
        }
    }

    /// The far end answers our outgoing call (optionally reversing polarity,
    /// as answer supervision).
    pub fn answer(&mut self, reverse_polarity: bool) {
        if reverse_polarity {
            self.pending.push_back(Event::Polarity);
        }
        self.state = CoState::Connected;
    }

    /// The far end hangs up.
    pub fn hang_up(&mut self, how: Disconnect) {
        match how {
            Disconnect::PolarityReversal => {
                self.pending.push_back(Event::Polarity);
                self.state = CoState::Cleared;
            }
            Disconnect::LoopCurrentDrop => {
                self.drop_ms = KEWL_MS;
                self.pending.push_back(Event::OnHook);
                self.state = CoState::Cleared;
            }
            Disconnect::BusyTone { hz, on_ms, off_ms } => {
                self.busy = Some(Dual::new(hz.0, hz.1, 3000.0));
                self.state = CoState::Busy {
                    hz,
                    on_ms,
                    off_ms,
                    t: 0,
                };
            }
        }
    }

    /// Speak into the line.
    pub fn say(&mut self, samples: &[i16]) {
        self.mouth.extend(samples.iter().copied());
    }

    /// Tandem's FXO port has the line seized (off hook).
    pub fn seized(&self) -> bool {
        self.seized
    }

    /// The line is ringing Tandem now.
    pub fn ringing(&self) -> bool {
        matches!(self.state, CoState::Ringing { .. } | CoState::PreRing(_))
    }

    /// Battery is off (loop current drop in progress).
    pub fn battery_off(&self) -> bool {
        self.drop_ms > 0
    }

    /// Everything Tandem sent into the line while it had it seized.
    pub fn heard(&self) -> &[i16] {
        &self.heard
    }

    /// Take and clear what the line heard.
    pub fn take_heard(&mut self) -> Vec<i16> {
        std::mem::take(&mut self.heard)
    }

    fn set_seized(&mut self, off_hook: bool) {
        if off_hook && !self.seized && self.ringing() {
            // Answer: ringing stops, the call is up.
            self.state = CoState::Connected;
            self.cid_in = None;
        }
        if !off_hook {
            self.state = CoState::Idle;
            self.busy = None;
            self.cid_in = None;
        }
        self.seized = off_hook;
    }

    /// One ms: events out, 8 samples into `to_tandem`.
    fn step(&mut self, events: &mut VecDeque<Event>, to_tandem: &mut VecDeque<i16>) {
        events.extend(self.pending.drain(..));
        self.drop_ms = self.drop_ms.saturating_sub(1);
        match &mut self.state {
            CoState::PreRing(ms) => {
                *ms = ms.saturating_sub(1);
                if *ms == 0 {
                    self.state = CoState::Ringing { pos: 0, bursts: 0 };
                }
            }
            CoState::Ringing { pos, bursts } => {
                let period: u64 = self.cadence.iter().sum();
                let t = *pos % period;
                let mut acc = 0;
                for (i, &d) in self.cadence.iter().enumerate() {
                    if t == acc && i % 2 == 0 {
                        events.push_back(Event::RingBegin);
                    }
                    if t == acc + d && i % 2 == 0 {
                        events.push_back(Event::RingEnd);
                        *bursts += 1;
                        if *bursts == 1 && self.cid.is_some() {
                            self.cid_in = Some(500);
                        }
                    }
                    acc += d;
                }
                *pos += 1;
            }
            CoState::Busy {
                on_ms, off_ms, t, ..
            } => {
                let on = *t % (*on_ms + *off_ms).max(1) < *on_ms;
                *t += 1;
                if let Some(g) = &mut self.busy {
                    if on {
                        g.render(SAMPLES_PER_MS, &mut self.mouth);
                    } else {
                        // Keep the oscillator phase running through the gap.
                        let mut sink = VecDeque::new();
                        g.render(SAMPLES_PER_MS, &mut sink);
                        self.mouth.extend(std::iter::repeat_n(0, SAMPLES_PER_MS));
                    }
                }
            }
            CoState::Idle | CoState::Connected | CoState::Cleared => {}
        }
        if let Some(ms) = &mut self.cid_in {
            *ms = ms.saturating_sub(1);
            if *ms == 0 {
                self.cid_in = None;
                if let Some((s, _)) = self.cid.take() {
                    self.mouth.extend(s);
                }
            }
        }
        for _ in 0..SAMPLES_PER_MS {
            to_tandem.push_back(self.mouth.pop_front().unwrap_or(0));
        }
    }
}

/// The far end of a port.
#[derive(Debug, Clone)]
enum FarEnd {
    Phone(SimPhone),
    Line(SimCoLine),
}

/// FXS-port hook detector state (the DAHDI kernel's part).
#[derive(Debug, Clone, Copy, Default)]
struct HookDetector {
    /// Reported state: the phone is off hook.
    off_hook: bool,
    /// ms the loop has been open while reported off hook.
    open_ms: u64,
    /// Pulses counted for the current digit.
    pulses: u8,
    /// ms of make since the last pulse.
    make_ms: u64,
}

/// One port of the card.
#[derive(Debug, Clone)]
struct SimPort {
    port: AnalogPort,
    far: FarEnd,
    hook: HookDetector,
    /// ms into the ring cadence while ringing.
    ring_pos: u64,
    to_far: VecDeque<i16>,
    from_far: VecDeque<i16>,
}

/// The simulated card.
#[derive(Debug, Clone)]
pub struct SimCard {
    ports: Vec<SimPort>,
    events: VecDeque<(ChanId, Event)>,
    now_ms: u64,
}

impl SimCard {
    /// A card with the ports of `conf` (from `system.conf`): a phone on each
    /// FXS port, a CO line on each FXO port.
    pub fn new(conf: &[PortConf]) -> Self {
        let ports = conf
            .iter()
            .map(|c| {
                let port = AnalogPort::new(c.chan, c.signalling);
                let far = match port.kind() {
                    PortKind::Fxs => FarEnd::Phone(SimPhone::default()),
                    PortKind::Fxo => FarEnd::Line(SimCoLine::default()),
                };
                SimPort {
                    port,
                    far,
                    hook: HookDetector::default(),
                    ring_pos: 0,
                    to_far: VecDeque::new(),
                    from_far: VecDeque::new(),
                }
            })
            .collect();
        SimCard {
            ports,
            events: VecDeque::new(),
            now_ms: 0,
        }
    }

    /// Virtual time in ms since the card was made.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn get(&mut self, chan: ChanId) -> Result<&mut SimPort, AnalogError> {
        self.ports
            .iter_mut()
            .find(|p| p.port.chan() == chan)
            .ok_or(AnalogError::NoSuchPort(chan.0))
    }

    /// The port model of `chan`.
    pub fn port(&self, chan: ChanId) -> Result<&AnalogPort, AnalogError> {
        self.ports
            .iter()
            .find(|p| p.port.chan() == chan)
            .map(|p| &p.port)
            .ok_or(AnalogError::NoSuchPort(chan.0))
    }

    /// The phone on FXS port `chan`.
    pub fn phone(&mut self, chan: ChanId) -> Result<&mut SimPhone, AnalogError> {
        let p = self.get(chan)?;
        let kind = p.port.kind();
        match &mut p.far {
            FarEnd::Phone(ph) => Ok(ph),
            FarEnd::Line(_) => Err(AnalogError::WrongPortKind {
                chan: chan.0,
                op: "phone",
                kind,
            }),
        }
    }

    /// The CO line on FXO port `chan`.
    pub fn line(&mut self, chan: ChanId) -> Result<&mut SimCoLine, AnalogError> {
        let p = self.get(chan)?;
        let kind = p.port.kind();
        match &mut p.far {
            FarEnd::Line(l) => Ok(l),
            FarEnd::Phone(_) => Err(AnalogError::WrongPortKind {
                chan: chan.0,
                op: "line",
                kind,
            }),
        }
    }

    /// Apply a command to port `chan`.
    pub fn command(&mut self, chan: ChanId, cmd: &Command) -> Result<(), AnalogError> {
        let p = self.get(chan)?;
        let was_ringing = p.port.ringing();
        p.port.apply(cmd)?;
        match (&mut p.far, cmd) {
            (FarEnd::Phone(ph), Command::Ring) if !was_ringing && p.port.ringing() => {
                p.ring_pos = 0;
                ph.rings = 0;
            }
            (FarEnd::Phone(ph), Command::RingOff | Command::OnHook) => ph.set_ringer(false),
            (FarEnd::Phone(ph), Command::SetPolarity(r)) => ph.polarity_reversed = *r,
            (FarEnd::Line(l), Command::OffHook) => l.set_seized(true),
            (FarEnd::Line(l), Command::OnHook) => l.set_seized(false),
            _ => {}
        }
        Ok(())
    }

    /// The next queued event, card-wide, in order.
    pub fn poll_event(&mut self) -> Option<(ChanId, Event)> {
        self.events.pop_front()
    }

    /// Queue audio towards the far end of `chan`.
    pub fn write(&mut self, chan: ChanId, samples: &[i16]) -> Result<(), AnalogError> {
        self.get(chan)?.to_far.extend(samples.iter().copied());
        Ok(())
    }

    /// Drain the audio that came from the far end of `chan`.
    pub fn read(&mut self, chan: ChanId, out: &mut Vec<i16>) -> Result<(), AnalogError> {
        out.extend(self.get(chan)?.from_far.drain(..));
        Ok(())
    }

    /// Advance virtual time by `ms` 1 ms steps.
    pub fn advance(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step_ms();
        }
    }

    /// One ms of virtual time on every port.
    pub fn step_ms(&mut self) {
        for p in &mut self.ports {
            let chan = p.port.chan();
            let mut evs = VecDeque::new();
            match &mut p.far {
                FarEnd::Phone(ph) => {
                    step_fxs(&mut p.port, &mut p.hook, &mut p.ring_pos, ph, &mut evs);
                    for _ in 0..SAMPLES_PER_MS {
                        let heard = p.to_far.pop_front().unwrap_or(0);
                        ph.heard.push(heard);
                        let mut s = if ph.loop_closed {
                            ph.mouth.pop_front().unwrap_or(0)
                        } else {
                            0
                        };
                        if ph.echo && ph.loop_closed {
                            s = s.saturating_add(heard / 2);
                        }
                        p.from_far.push_back(s);
                    }
                }
                FarEnd::Line(l) => {
                    l.step(&mut evs, &mut p.from_far);
                    for _ in 0..SAMPLES_PER_MS {
                        let s = p.to_far.pop_front().unwrap_or(0);
                        if l.seized {
                            l.heard.push(s);
                        }
                    }
                }
            }
            for e in evs {
                p.port.observe(&e);
                self.events.push_back((chan, e));
            }
        }
        self.now_ms += 1;
    }
}

/// One ms of an FXS port: hook classification and ring cadence.
fn step_fxs(
    port: &mut AnalogPort,
    hd: &mut HookDetector,
    ring_pos: &mut u64,
    ph: &mut SimPhone,
    evs: &mut VecDeque<Event>,
) {
    let closed = ph.step();
    if !hd.off_hook {
        if closed {
            hd.off_hook = true;
            *hd = HookDetector {
                off_hook: true,
                ..HookDetector::default()
            };
            ph.set_ringer(false);
            evs.push_back(Event::OffHook);
        }
    } else if !closed {
        hd.open_ms += 1;
        if hd.open_ms >= RX_FLASH_MS {
            hd.off_hook = false;
            hd.pulses = 0;
            ph.rings = 0;
            evs.push_back(Event::OnHook);
        }
    } else {
        if hd.open_ms > 0 {
            if hd.open_ms <= PULSE_BREAK_MAX_MS {
                if hd.pulses == 0 {
                    evs.push_back(Event::PulseStart);
                }
                hd.pulses += 1;
                hd.make_ms = 0;
            } else {
                hd.pulses = 0;
                evs.push_back(Event::Flash);
            }
            hd.open_ms = 0;
        }
        if hd.pulses > 0 {
            hd.make_ms += 1;
            if hd.make_ms >= PULSE_AFTER_MS {
                evs.push_back(Event::PulseDigit(hd.pulses % 10));
                hd.pulses = 0;
            }
        }
    }
    // Ring cadence (the model stops ringing on ring trip via `observe`).
    let ringing = port.ringing() && port.hook() == Hook::On && !hd.off_hook;
    if ringing {
        let cad = &port.cadence().0;
        let period: u64 = cad.iter().map(|&c| u64::from(c)).sum::<u64>().max(1);
        let t = *ring_pos % period;
        let mut acc = 0u64;
        for (i, &d) in cad.iter().enumerate() {
            if t == acc {
                let on = i % 2 == 0;
                ph.set_ringer(on);
                evs.push_back(if on {
                    Event::RingerOn
                } else {
                    Event::RingerOff
                });
            }
            acc += u64::from(d);
        }
        *ring_pos += 1;
    } else if ph.ringer {
        ph.set_ringer(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analog::{conf, Signalling};

    fn card() -> SimCard {
        SimCard::new(&conf::parse("fxoks=1\nfxsks=2\n").unwrap())
    }

    fn events(c: &mut SimCard) -> Vec<(u16, Event)> {
        std::iter::from_fn(|| c.poll_event())
            .map(|(ch, e)| (ch.0, e))
            .collect()
    }

    #[test]
    fn pulse_dialling_flash_and_hang_up() {
        let mut c = card();
        let ph = c.phone(ChanId(1)).unwrap();
        ph.off_hook();
        ph.wait(300);
        ph.dial_pulse("102");
        ph.flash(500);
        ph.wait(300);
        ph.on_hook();
        c.advance(6000);
        let ev: Vec<Event> = events(&mut c).into_iter().map(|(_, e)| e).collect();
        assert_eq!(
            ev,
            vec![
                Event::OffHook,
                Event::PulseStart,
                Event::PulseDigit(1),
                Event::PulseStart,
                Event::PulseDigit(0),
                Event::PulseStart,
                Event::PulseDigit(2),
                Event::Flash,
                Event::OnHook,
            ]
        );
        assert_eq!(c.port(ChanId(1)).unwrap().hook(), Hook::On);
    }

    #[test]
    fn ring_cadence_and_ring_trip() {
        let mut c = card();
        c.phone(ChanId(1)).unwrap().answer_after_rings(Some(2));
        c.command(
            ChanId(1),
            &Command::SetCadence(super::super::RingCadence::eu()),
        )
        .unwrap();
        c.command(ChanId(1), &Command::Ring).unwrap();
        let mut log = Vec::new();
        for _ in 0..12_000 {
            c.step_ms();
            while let Some((_, e)) = c.poll_event() {
                log.push((c.now_ms(), e));
            }
        }
        // 1 s on / 4 s off: on at 1, off at 1001, on at 5001, off at 6001,
        // answered 500 ms later.
        assert_eq!(
            log,
            vec![
                (1, Event::RingerOn),
                (1001, Event::RingerOff),
                (5001, Event::RingerOn),
                (6001, Event::RingerOff),
                (6502, Event::OffHook),
            ]
        );
        assert!(!c.port(ChanId(1)).unwrap().ringing());
        assert!(c.phone(ChanId(1)).unwrap().is_off_hook());
    }

    #[test]
    fn co_line_rings_and_disconnects() {
        let mut c = card();
        assert!(c.command(ChanId(2), &Command::Ring).is_err());
        c.line(ChanId(2)).unwrap().ring_in(&[2000, 4000], None);
        c.advance(7000);
        assert_eq!(
            events(&mut c),
            vec![
                (2, Event::RingBegin),
                (2, Event::RingEnd),
                (2, Event::RingBegin)
            ]
        );
        c.command(ChanId(2), &Command::OffHook).unwrap();
        assert!(c.line(ChanId(2)).unwrap().seized());
        assert!(!c.line(ChanId(2)).unwrap().ringing());
        c.line(ChanId(2))
            .unwrap()
            .hang_up(Disconnect::PolarityReversal);
        c.advance(10);
        assert_eq!(events(&mut c), vec![(2, Event::Polarity)]);
        assert!(c.port(ChanId(2)).unwrap().polarity_reversed());
        assert!(c.phone(ChanId(2)).is_err());
        assert_eq!(c.port(ChanId(2)).unwrap().signalling(), Signalling::FxsKs);
    }
}
