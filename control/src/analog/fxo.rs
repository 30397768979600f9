//! FXO line signalling: the port that plugs into an exchange line (DAHDI FXS
//! signalling).
//!
//! States: `Idle` (caller ID detection armed: an ETSI or DTMF spill may come
//! before the first ring), `Ringing` (counting bursts; answered on ring N
//! with the caller ID decoded so far; given up when the rings stop),
//! `Seizing` (off hook, waiting for dial tone before dialling), `Talking`
//! (disconnect supervision by polarity reversal, loop current drop and
//! busy/congestion tone).

use std::time::{Duration, Instant};

use dataplane::dsp::fsk::{CallerIdDetector, DtmfCidDetector};

use super::progress::BusyDetector;
use super::{
    AnalogError, CallInput, CallerId, CidSignalling, Disconnect, HwCommand, HwEvent, LineEvent,
    Outbox,
};

/// FXO port configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct FxoConfig {
    /// Answer on this ring (1 = the first).
    pub answer_on_ring: u32,
    /// Caller ID expected on the line; `None` detects none.
    pub cid: Option<CidSignalling>,
    /// The exchange reverses polarity when the far end answers an outgoing call.
    pub answer_on_polarity: bool,
    /// A polarity reversal during a call means the far end hung up.
    pub hangup_on_polarity: bool,
    /// Tone zone for busy/congestion detection (`None`: no tone detection).
    pub busy_zone: Option<String>,
    /// No ring for this long: the caller gave up.
    pub ring_timeout: Duration,
    /// Off hook this long before dialling (dial tone).
    pub dial_delay: Duration,
}

impl Default for FxoConfig {
    fn default() -> Self {
        use dataplane::dsp::fsk::{Format, FskStandard};
        FxoConfig {
            answer_on_ring: 2,
            cid: Some(CidSignalling::Fsk {
                standard: FskStandard::Bell202,
                format: Format::Mdmf,
            }),
            answer_on_polarity: false,
            hangup_on_polarity: true,
            busy_zone: Some("us".into()),
            ring_timeout: Duration::from_secs(8),
            dial_delay: Duration::from_millis(1000),
        }
    }
}

#[derive(Debug)]
enum State {
    Idle,
    /// `in_burst`: a RingBegin not yet followed by its RingEnd. A ring is
    /// counted at its begin, or at its end when the begin was not reported
    /// (DAHDI drops a RINGBEGIN now and then), never twice.
    Ringing {
        rings: u32,
        last: Instant,
        in_burst: bool,
    },
    Seizing {
        number: String,
        at: Instant,
    },
    Talking {
        answered: bool,
    },
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Ringing { .. } => "ringing",
            State::Seizing { .. } => "seizing",
            State::Talking { .. } => "talking",
        }
    }
}

#[derive(Debug)]
enum CidRx {
    Fsk(Box<CallerIdDetector>),
    Dtmf(Box<DtmfCidDetector>),
    None,
}

/// Line signalling for one FXO port.
#[derive(Debug)]
pub struct FxoLine {
    cfg: FxoConfig,
    state: State,
    cid_rx: CidRx,
    caller: Option<CallerId>,
    busy: Option<BusyDetector>,
    out: Outbox,
}

impl FxoLine {
    /// A line, idle.
    pub fn new(cfg: FxoConfig) -> Result<Self, AnalogError> {
        let busy = cfg
            .busy_zone
            .as_deref()
            .map(BusyDetector::for_zone)
            .transpose()?;
        let mut l = FxoLine {
            cfg,
            state: State::Idle,
            cid_rx: CidRx::None,
            caller: None,
            busy,
            out: Outbox::default(),
        };
        l.arm_cid();
        Ok(l)
    }

    fn arm_cid(&mut self) {
        self.cid_rx = match self.cfg.cid {
            Some(CidSignalling::Fsk { standard, .. }) => {
                CidRx::Fsk(Box::new(CallerIdDetector::new(standard)))
            }
            Some(CidSignalling::Dtmf) => CidRx::Dtmf(Box::default()),
            None => CidRx::None,
        };
    }

    /// The state's name (for `show channels`).
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// The caller ID decoded for the current or last call.
    pub fn caller(&self) -> Option<&CallerId> {
        self.caller.as_ref()
    }

    /// A hardware event.
    pub fn handle_hw(&mut self, ev: HwEvent, now: Instant) {
        match (ev, &mut self.state) {
            (HwEvent::RingBegin | HwEvent::RingEnd, State::Idle) => {
                self.state = State::Ringing {
                    rings: 1,
                    last: now,
                    in_burst: ev == HwEvent::RingBegin,
                };
                self.maybe_answer();
            }
            (
                HwEvent::RingBegin,
                State::Ringing {
                    rings,
                    last,
                    in_burst,
                },
            ) => {
                *rings += 1;
                *last = now;
                *in_burst = true;
                self.maybe_answer();
            }
            (
                HwEvent::RingEnd,
                State::Ringing {
                    rings,
                    last,
                    in_burst,
                },
            ) => {
                *last = now;
                if !std::mem::replace(in_burst, false) {
                    *rings += 1;
                    self.maybe_answer();
                }
            }
            (HwEvent::Polarity, State::Talking { answered }) => {
                if self.cfg.answer_on_polarity && !*answered {
                    *answered = true;
                    self.out.events.push_back(LineEvent::Answered);
                } else if self.cfg.hangup_on_polarity {
                    self.disconnect(Disconnect::Polarity);
                }
            }
            (HwEvent::OnHook, State::Talking { .. } | State::Seizing { .. }) => {
                self.disconnect(Disconnect::LoopCurrent)
            }
            _ => {}
        }
    }

    fn maybe_answer(&mut self) {
        if let State::Ringing { rings, .. } = self.state {
            if rings >= self.cfg.answer_on_ring.max(1) {
                self.out.commands.push_back(HwCommand::OffHook);
                self.out.events.push_back(LineEvent::Incoming {
                    caller: self.caller.clone(),
                });
                self.start_talking(true);
            }
        }
    }

    fn start_talking(&mut self, answered: bool) {
        if let Some(b) = &mut self.busy {
            b.reset();
        }
        self.state = State::Talking { answered };
    }

    fn disconnect(&mut self, how: Disconnect) {
        self.out.commands.push_back(HwCommand::OnHook);
        self.out.events.push_back(LineEvent::FarEndDisconnect(how));
        self.idle();
    }

    fn idle(&mut self) {
        self.state = State::Idle;
        self.caller = None;
        self.arm_cid();
    }

    /// Audio from the line (8 kHz linear): caller ID before answering, busy
    /// tone during a call.
    pub fn handle_audio(&mut self, samples: &[i16], _now: Instant) {
        match self.state {
            State::Idle | State::Ringing { .. } => {
                let caller = &mut self.caller;
                match &mut self.cid_rx {
                    CidRx::Fsk(d) => d.process(samples, |r| {
                        if let Ok(c) = r {
                            *caller = Some(c);
                        }
                    }),
                    CidRx::Dtmf(d) => d.process(samples, |c| *caller = Some(c)),
                    CidRx::None => {}
                }
            }
            State::Talking { .. } => {
                if self.busy.as_mut().is_some_and(|b| b.process(samples)) {
                    self.disconnect(Disconnect::Tone);
                }
            }
            State::Seizing { .. } => {}
        }
    }

    /// Input from the call model.
    pub fn handle_call(&mut self, input: CallInput, now: Instant) -> Result<(), AnalogError> {
        match (input, &self.state) {
            (CallInput::Dial { number }, State::Idle) => {
                self.out.commands.push_back(HwCommand::OffHook);
                self.state = State::Seizing { number, at: now };
                Ok(())
            }
            (CallInput::Release, State::Idle) => Ok(()),
            (CallInput::Release, _) => {
                self.out.commands.push_back(HwCommand::OnHook);
                self.idle();
                Ok(())
            }
            (i, st) => Err(AnalogError::BadInput {
                input: match i {
                    CallInput::Incoming { .. } => "ring (FXS only)",
                    CallInput::Dial { .. } => "dial",
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
        match &mut self.state {
            State::Ringing { last, .. } if now >= *last + self.cfg.ring_timeout => self.idle(),
            State::Seizing { number, at } if now >= *at + self.cfg.dial_delay => {
                let n = std::mem::take(number);
                self.out.commands.push_back(HwCommand::SendDtmf(n));
                // Loop start gives no answer signal unless polarity says so.
                let answered = !self.cfg.answer_on_polarity;
                self.start_talking(answered);
            }
            _ => {}
        }
    }

    /// The next timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Ringing { last, .. } => Some(*last + self.cfg.ring_timeout),
            State::Seizing { at, .. } => Some(*at + self.cfg.dial_delay),
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

    /// DAHDI reports each ring burst as RingBegin + RingEnd and sometimes
    /// loses a RingBegin: every ring counts once either way.
    #[test]
    fn ring_begin_and_end_count_one_ring() {
        let t0 = Instant::now();
        let cfg = FxoConfig {
            answer_on_ring: 3,
            cid: None,
            ..FxoConfig::default()
        };
        let mut l = FxoLine::new(cfg).unwrap();
        let at = |s: u64| t0 + Duration::from_secs(s);
        l.handle_hw(HwEvent::RingBegin, at(0));
        l.handle_hw(HwEvent::RingEnd, at(2));
        assert_eq!(l.state_name(), "ringing");
        // Ring 2 lost its begin: its end counts it.
        l.handle_hw(HwEvent::RingEnd, at(8));
        assert_eq!(l.state_name(), "ringing", "two rings so far, answer on 3");
        l.handle_hw(HwEvent::RingBegin, at(12));
        assert_eq!(
            l.poll_command(),
            Some(HwCommand::OffHook),
            "answered at ring 3"
        );
    }

    #[test]
    fn answers_on_ring_n_and_gives_up_when_rings_stop() {
        let t0 = Instant::now();
        let mut l = FxoLine::new(FxoConfig {
            answer_on_ring: 3,
            ..FxoConfig::default()
        })
        .unwrap();
        l.handle_hw(HwEvent::RingBegin, t0);
        l.handle_hw(HwEvent::RingBegin, t0 + Duration::from_secs(6));
        assert_eq!(l.poll_command(), None);
        l.handle_timeout(t0 + Duration::from_secs(14));
        assert_eq!(l.state_name(), "idle");
        for i in 0..3 {
            l.handle_hw(HwEvent::RingBegin, t0 + Duration::from_secs(20 + 6 * i));
        }
        assert_eq!(l.poll_command(), Some(HwCommand::OffHook));
        assert_eq!(l.poll_event(), Some(LineEvent::Incoming { caller: None }));
    }

    #[test]
    fn dial_out_then_far_end_disconnects() {
        let t0 = Instant::now();
        for (ev, how) in [
            (HwEvent::Polarity, Disconnect::Polarity),
            (HwEvent::OnHook, Disconnect::LoopCurrent),
        ] {
            let mut l = FxoLine::new(FxoConfig::default()).unwrap();
            l.handle_call(
                CallInput::Dial {
                    number: "5550100".into(),
                },
                t0,
            )
            .unwrap();
            assert_eq!(l.poll_command(), Some(HwCommand::OffHook));
            let dl = l.poll_timeout().unwrap();
            l.handle_timeout(dl);
            assert_eq!(
                l.poll_command(),
                Some(HwCommand::SendDtmf("5550100".into()))
            );
            l.handle_hw(ev, dl + Duration::from_secs(30));
            assert_eq!(l.poll_command(), Some(HwCommand::OnHook));
            assert_eq!(l.poll_event(), Some(LineEvent::FarEndDisconnect(how)));
        }
    }
}
