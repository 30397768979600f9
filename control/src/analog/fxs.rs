//! FXS line signalling: the port that feeds a telephone (DAHDI FXO signalling).
//!
//! States: `Idle` (on hook), `Collecting` (dial tone, then digits until the
//! dialplan says complete or the interdigit timer fires), `Routed` (the number
//! went to the call model: ringback, then talk), `Ringing` (incoming call:
//! ringing with the zone cadence, caller ID between the first and second ring
//! or before the first), `Talking`, and `Lockout` (busy/congestion tone until
//! the phone hangs up).

use std::time::{Duration, Instant};

use dataplane::dsp::dtmf::{DtmfDetector, DtmfEvent};

use super::{
    AnalogError, CallInput, CidSignalling, CidStart, HwCommand, HwEvent, LineEvent, Outbox,
    ToneKind,
};

/// What the dialplan says about the digits so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialMatch {
    /// A complete number: route it now.
    Complete,
    /// Could become a number: wait for more digits (or the interdigit timeout).
    MoreDigits,
    /// Can never match: congestion tone.
    NoMatch,
}

/// FXS port configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct FxsConfig {
    /// Ring cadence (ms on/off, repeated), from the zone by default.
    pub cadence: Vec<u32>,
    /// Caller ID signalling; `None` sends none.
    pub cid: Option<CidSignalling>,
    /// When caller ID goes out.
    pub cid_start: CidStart,
    /// Wait for the first digit after dial tone.
    pub first_digit_timeout: Duration,
    /// Wait between digits; when it expires the digits so far are routed.
    pub interdigit_timeout: Duration,
}

impl FxsConfig {
    /// Defaults for a tone zone: the zone's ring cadence, FSK caller ID (Bell
    /// 202 after the first ring in "us", V.23 otherwise), 10 s first digit,
    /// 4 s interdigit.
    pub fn for_zone(zone: &str) -> Result<Self, AnalogError> {
        use dataplane::dsp::fsk::{Format, FskStandard};
        let cadence = match zone {
            "us" => vec![2000, 4000],
            "uk" => vec![400, 200, 400, 2000],
            "eu" | "de" | "fr" | "cn" => vec![1000, 4000],
            "jp" => vec![1000, 2000],
            z => return Err(AnalogError::UnknownZone(z.to_string())),
        };
        let standard = if zone == "us" {
            FskStandard::Bell202
        } else {
            FskStandard::V23
        };
        Ok(FxsConfig {
            cadence,
            cid: Some(CidSignalling::Fsk {
                standard,
                format: Format::Mdmf,
            }),
            cid_start: CidStart::AfterFirstRing,
            first_digit_timeout: Duration::from_secs(10),
            interdigit_timeout: Duration::from_secs(4),
        })
    }
}

#[derive(Debug)]
enum State {
    Idle,
    Collecting {
        digits: String,
        deadline: Instant,
        tone: bool,
    },
    Routed,
    Ringing {
        caller: Option<super::CallerId>,
        bursts: u32,
        cid_sent: bool,
    },
    Talking,
    Lockout,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Collecting { .. } => "collecting digits",
            State::Routed => "routed",
            State::Ringing { .. } => "ringing",
            State::Talking => "talking",
            State::Lockout => "locked out",
        }
    }
}

/// Dialplan callback: is this digit string a number yet?
pub type Dialplan = Box<dyn FnMut(&str) -> DialMatch + Send>;

/// Line signalling for one FXS port.
pub struct FxsLine {
    cfg: FxsConfig,
    dialplan: Dialplan,
    state: State,
    dtmf: DtmfDetector,
    out: Outbox,
}

impl std::fmt::Debug for FxsLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FxsLine")
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl FxsLine {
    /// A line, idle, with `dialplan` deciding when a number is complete.
    pub fn new(cfg: FxsConfig, dialplan: Dialplan) -> Self {
        FxsLine {
            cfg,
            dialplan,
            state: State::Idle,
            dtmf: DtmfDetector::default(),
            out: Outbox::default(),
        }
    }

    /// The state's name (for `show channels`).
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// A hardware event.
    pub fn handle_hw(&mut self, ev: HwEvent, now: Instant) {
        match (ev, &mut self.state) {
            (HwEvent::OffHook, State::Idle) => {
                self.out
                    .commands
                    .push_back(HwCommand::PlayTone(ToneKind::Dial));
                self.dtmf = DtmfDetector::default();
                self.state = State::Collecting {
                    digits: String::new(),
                    deadline: now + self.cfg.first_digit_timeout,
                    tone: true,
                };
            }
            (HwEvent::OffHook, State::Ringing { .. }) => {
                // Ring trip: the card stops ringing; make sure it does.
                self.out.commands.push_back(HwCommand::RingOff);
                if self.cfg.cid_start == CidStart::BeforeFirstRing {
                    self.out.commands.push_back(HwCommand::SetPolarity(false));
                }
                self.out.events.push_back(LineEvent::Answered);
                self.state = State::Talking;
            }
            (HwEvent::OnHook, State::Idle) => {}
            (HwEvent::OnHook, State::Ringing { .. }) => {}
            (HwEvent::OnHook, st) => {
                let in_call = matches!(st, State::Routed | State::Talking);
                if !matches!(st, State::Talking) {
                    self.out.commands.push_back(HwCommand::StopTone);
                }
                if in_call {
                    self.out.events.push_back(LineEvent::HungUp);
                }
                self.state = State::Idle;
            }
            (HwEvent::Flash, State::Talking | State::Routed) => {
                self.out.events.push_back(LineEvent::Flash);
            }
            (HwEvent::PulseStart, State::Collecting { tone, .. }) if *tone => {
                *tone = false;
                self.out.commands.push_back(HwCommand::StopTone);
            }
            (HwEvent::PulseDigit(d), State::Collecting { .. }) => {
                self.digit(char::from(b'0' + d % 10), now);
            }
            (
                HwEvent::RingerOff,
                State::Ringing {
                    bursts,
                    cid_sent,
                    caller,
                },
            ) => {
                *bursts += 1;
                if *bursts == 1 && !*cid_sent && self.cfg.cid_start == CidStart::AfterFirstRing {
                    *cid_sent = true;
                    if let (Some(c), Some(s)) = (caller.take(), self.cfg.cid) {
                        self.out.commands.push_back(HwCommand::SendCallerId {
                            cid: c,
                            signalling: s,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// Audio from the phone (8 kHz linear): DTMF digits while collecting.
    pub fn handle_audio(&mut self, samples: &[i16], now: Instant) {
        if !matches!(self.state, State::Collecting { .. }) {
            return;
        }
        let mut got = Vec::new();
        self.dtmf.process(samples, |e| {
            if let DtmfEvent::Begin { digit, .. } = e {
                got.push(digit.to_char());
            }
        });
        for c in got {
            if let State::Collecting { tone, .. } = &mut self.state {
                if std::mem::take(tone) {
                    self.out.commands.push_back(HwCommand::StopTone);
                }
            }
            self.digit(c, now);
        }
    }

    fn digit(&mut self, c: char, now: Instant) {
        let State::Collecting {
            digits, deadline, ..
        } = &mut self.state
        else {
            return;
        };
        digits.push(c);
        *deadline = now + self.cfg.interdigit_timeout;
        match (self.dialplan)(digits) {
            DialMatch::Complete => self.route(),
            DialMatch::MoreDigits => {}
            DialMatch::NoMatch => self.lockout(ToneKind::Congestion),
        }
    }

    fn route(&mut self) {
        if let State::Collecting { digits, .. } = &mut self.state {
            let number = std::mem::take(digits);
            self.out.events.push_back(LineEvent::Dialed { number });
            self.state = State::Routed;
        }
    }

    fn lockout(&mut self, tone: ToneKind) {
        self.out.commands.push_back(HwCommand::PlayTone(tone));
        self.state = State::Lockout;
    }

    /// Input from the call model.
    pub fn handle_call(&mut self, input: CallInput, _now: Instant) -> Result<(), AnalogError> {
        match (input, &self.state) {
            (CallInput::Incoming { caller }, State::Idle) => {
                let cadence = self.cfg.cadence.clone();
                if self.cfg.cid_start == CidStart::BeforeFirstRing {
                    // ETSI pre-ring: polarity reversal, the spill, then ringing.
                    // The edge renders the spill before it acts on the Ring.
                    self.out.commands.push_back(HwCommand::SetPolarity(true));
                    if let (Some(c), Some(s)) = (caller.clone(), self.cfg.cid) {
                        self.out.commands.push_back(HwCommand::SendCallerId {
                            cid: c,
                            signalling: s,
                        });
                    }
                }
                self.out.commands.push_back(HwCommand::Ring { cadence });
                self.state = State::Ringing {
                    caller,
                    bursts: 0,
                    cid_sent: self.cfg.cid_start == CidStart::BeforeFirstRing,
                };
                Ok(())
            }
            (CallInput::Alerting, State::Routed) => {
                self.out
                    .commands
                    .push_back(HwCommand::PlayTone(ToneKind::Ringback));
                Ok(())
            }
            (CallInput::Answered, State::Routed) => {
                self.out.commands.push_back(HwCommand::StopTone);
                self.state = State::Talking;
                Ok(())
            }
            (CallInput::Release, State::Ringing { .. }) => {
                self.out.commands.push_back(HwCommand::RingOff);
                self.state = State::Idle;
                Ok(())
            }
            (CallInput::Release, State::Routed | State::Talking) => {
                self.lockout(ToneKind::Busy);
                Ok(())
            }
            (CallInput::Release, _) => Ok(()),
            (i, st) => Err(AnalogError::BadInput {
                input: match i {
                    CallInput::Incoming { .. } => "incoming call",
                    CallInput::Dial { .. } => "dial out (FXO only)",
                    CallInput::Alerting => "alerting",
                    CallInput::Answered => "answered",
                    CallInput::Release => "release",
                },
                state: st.name(),
            }),
        }
    }

    /// Timer expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Collecting {
            digits, deadline, ..
        } = &self.state
        {
            if now >= *deadline {
                if digits.is_empty() {
                    self.lockout(ToneKind::Congestion);
                } else {
                    self.route();
                }
            }
        }
    }

    /// The next timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Collecting { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    /// The next hardware command.
    pub fn poll_command(&mut self) -> Option<HwCommand> {
        self.out.commands.pop_front()
    }

    /// The next call event.
    pub fn poll_event(&mut self) -> Option<LineEvent> {
        self.out.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> FxsLine {
        FxsLine::new(
            FxsConfig::for_zone("us").unwrap(),
            Box::new(|d: &str| match d.len() {
                4 if d.starts_with('1') => DialMatch::Complete,
                _ if d.starts_with('9') => DialMatch::NoMatch,
                _ => DialMatch::MoreDigits,
            }),
        )
    }

    fn cmds(l: &mut FxsLine) -> Vec<HwCommand> {
        std::iter::from_fn(|| l.poll_command()).collect()
    }

    #[test]
    fn pulse_digits_route_on_match_and_timeout() {
        let t0 = Instant::now();
        let mut l = line();
        l.handle_hw(HwEvent::OffHook, t0);
        assert_eq!(cmds(&mut l), vec![HwCommand::PlayTone(ToneKind::Dial)]);
        l.handle_hw(HwEvent::PulseStart, t0);
        assert_eq!(cmds(&mut l), vec![HwCommand::StopTone]);
        for d in [1, 0, 0, 2] {
            l.handle_hw(HwEvent::PulseDigit(d), t0);
        }
        assert_eq!(
            l.poll_event(),
            Some(LineEvent::Dialed {
                number: "1002".into()
            })
        );
        // Partial number: routed when the interdigit timer fires.
        let mut l = line();
        l.handle_hw(HwEvent::OffHook, t0);
        l.handle_hw(HwEvent::PulseDigit(5), t0);
        let dl = l.poll_timeout().unwrap();
        assert_eq!(dl, t0 + Duration::from_secs(4));
        l.handle_timeout(dl - Duration::from_millis(1));
        assert_eq!(l.poll_event(), None);
        l.handle_timeout(dl);
        assert_eq!(
            l.poll_event(),
            Some(LineEvent::Dialed { number: "5".into() })
        );
    }

    #[test]
    fn no_digits_or_no_match_gives_congestion() {
        let t0 = Instant::now();
        let mut l = line();
        l.handle_hw(HwEvent::OffHook, t0);
        l.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(
            cmds(&mut l).last(),
            Some(&HwCommand::PlayTone(ToneKind::Congestion))
        );
        l.handle_hw(HwEvent::OnHook, t0);
        assert_eq!(l.state_name(), "idle");
        l.handle_hw(HwEvent::OffHook, t0);
        l.handle_hw(HwEvent::PulseDigit(9), t0);
        assert_eq!(
            cmds(&mut l).last(),
            Some(&HwCommand::PlayTone(ToneKind::Congestion))
        );
    }

    #[test]
    fn incoming_call_rings_sends_cid_after_first_ring_and_answers() {
        let t0 = Instant::now();
        let mut l = line();
        let cid = super::super::CallerId::with_number("5551234", Some("ALICE"));
        l.handle_call(
            CallInput::Incoming {
                caller: Some(cid.clone()),
            },
            t0,
        )
        .unwrap();
        assert_eq!(
            cmds(&mut l),
            vec![HwCommand::Ring {
                cadence: vec![2000, 4000]
            }]
        );
        l.handle_hw(HwEvent::RingerOn, t0);
        l.handle_hw(HwEvent::RingerOff, t0);
        assert!(matches!(
            cmds(&mut l).as_slice(),
            [HwCommand::SendCallerId { cid: c, .. }] if *c == cid
        ));
        l.handle_hw(HwEvent::RingerOn, t0);
        l.handle_hw(HwEvent::RingerOff, t0);
        assert!(cmds(&mut l).is_empty(), "caller ID only once");
        l.handle_hw(HwEvent::OffHook, t0);
        assert_eq!(l.poll_event(), Some(LineEvent::Answered));
        l.handle_hw(HwEvent::Flash, t0);
        assert_eq!(l.poll_event(), Some(LineEvent::Flash));
        l.handle_hw(HwEvent::OnHook, t0);
        assert_eq!(l.poll_event(), Some(LineEvent::HungUp));
        assert!(l
            .handle_call(CallInput::Answered, t0)
            .is_err_and(|e| e.to_string().contains("idle")));
    }
}
