//! Analog ports (TDM400P-class FXS and FXO modules): the port model, hardware
//! events and commands, DAHDI `system.conf` signalling lines, the DAHDI
//! analog ABI, and the simulated card with telephones and a central office.
//!
//! Naming follows DAHDI: an **FXS port** powers and rings a telephone and is
//! configured with **FXO signalling** (`fxoks=`, `fxols=`, `fxogs=`), because
//! the software on top of it speaks the FXO side of the protocol to the phone;
//! an **FXO port** plugs into an exchange line and uses **FXS signalling**
//! (`fxsks=`, `fxsls=`, `fxsgs=`). [`Signalling::port_kind`] does that swap
//! once, so nothing else has to.
//!
//! The hardware layer reports line facts only ([`Event`]: off hook, flash, a
//! rotary digit, a ring burst, a polarity reversal...) and takes hook, ring
//! and polarity [`Command`]s. What they mean for a call (dial tone, digit
//! collection, answer on ring N, caller ID) is `control::analog`'s business.
//!
//! - [`abi`]: DAHDI hook/event/signalling constants for analog channels.
//! - [`conf`]: `system.conf` analog lines.
//! - [`sim`]: the simulated card, driven in 1 ms steps of virtual time.
//! - [`dahdi`]: the same port operations on a real DAHDI channel.

pub mod abi;
pub mod conf;
pub mod dahdi;
pub mod sim;

use crate::ChanId;

/// Which module a port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// Feeds battery and rings a telephone (TDM400P green S110M module).
    Fxs,
    /// Plugs into an exchange line like a telephone (red X100M module).
    Fxo,
}

/// How the line is seized and released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartType {
    /// Loop start: seized by closing the loop, no disconnect supervision.
    Loop,
    /// Loop start plus a battery-drop pulse when the far end hangs up (DAHDI's default).
    Kewl,
    /// Ground start (some US PBX trunks).
    Ground,
}

/// DAHDI signalling of an analog channel, as written in `system.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signalling {
    /// FXO signalling, loop start (on an FXS port).
    FxoLs,
    /// FXO signalling, ground start (on an FXS port).
    FxoGs,
    /// FXO signalling, kewl start (on an FXS port).
    FxoKs,
    /// FXS signalling, loop start (on an FXO port).
    FxsLs,
    /// FXS signalling, ground start (on an FXO port).
    FxsGs,
    /// FXS signalling, kewl start (on an FXO port).
    FxsKs,
}

impl Signalling {
    /// All six, in `system.conf` key order.
    pub const ALL: [Signalling; 6] = [
        Signalling::FxoLs,
        Signalling::FxoGs,
        Signalling::FxoKs,
        Signalling::FxsLs,
        Signalling::FxsGs,
        Signalling::FxsKs,
    ];

    /// The module this signalling runs on: FXO signalling means an FXS port
    /// and vice versa.
    pub fn port_kind(self) -> PortKind {
        match self {
            Signalling::FxoLs | Signalling::FxoGs | Signalling::FxoKs => PortKind::Fxs,
            Signalling::FxsLs | Signalling::FxsGs | Signalling::FxsKs => PortKind::Fxo,
        }
    }

    /// Start type.
    pub fn start(self) -> StartType {
        match self {
            Signalling::FxoLs | Signalling::FxsLs => StartType::Loop,
            Signalling::FxoGs | Signalling::FxsGs => StartType::Ground,
            Signalling::FxoKs | Signalling::FxsKs => StartType::Kewl,
        }
    }

    /// The `system.conf` key (`fxoks` ...).
    pub fn conf_key(self) -> &'static str {
        match self {
            Signalling::FxoLs => "fxols",
            Signalling::FxoGs => "fxogs",
            Signalling::FxoKs => "fxoks",
            Signalling::FxsLs => "fxsls",
            Signalling::FxsGs => "fxsgs",
            Signalling::FxsKs => "fxsks",
        }
    }

    /// From a `system.conf` key.
    pub fn from_conf_key(key: &str) -> Option<Self> {
        Signalling::ALL.into_iter().find(|s| s.conf_key() == key)
    }

    /// The `DAHDI_SIG_*` value.
    pub fn dahdi_sig(self) -> i32 {
        use abi::sig;
        match self {
            Signalling::FxoLs => sig::FXOLS,
            Signalling::FxoGs => sig::FXOGS,
            Signalling::FxoKs => sig::FXOKS,
            Signalling::FxsLs => sig::FXSLS,
            Signalling::FxsGs => sig::FXSGS,
            Signalling::FxsKs => sig::FXSKS,
        }
    }
}

/// A line fact reported by the hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// FXS port: the phone went off hook (or answered a ring).
    OffHook,
    /// FXS port: the phone hung up. FXO port: loop current dropped (the far
    /// end hung up on a kewl-start line).
    OnHook,
    /// FXS port: a hook flash.
    Flash,
    /// FXS port: the first break of a rotary digit.
    PulseStart,
    /// FXS port: a complete rotary digit, 0-9.
    PulseDigit(u8),
    /// FXS port: a ring burst of our cadence started.
    RingerOn,
    /// FXS port: a ring burst of our cadence ended.
    RingerOff,
    /// FXO port: the exchange is ringing us (start of a burst).
    RingBegin,
    /// FXO port: a ring burst ended (DAHDI reports RINGOFFHOOK on an
    /// FXS-signalled channel when the ring voltage goes away).
    RingEnd,
    /// FXO port: the line polarity reversed.
    Polarity,
    /// The card lost or regained the port (alarm / no alarm).
    Alarm(bool),
}

impl Event {
    /// From a `DAHDI_GETEVENT` code on a port of `kind`. `None` for codes
    /// with no analog meaning (HDLC errors, timers).
    pub fn from_dahdi(code: i32, kind: PortKind) -> Option<Self> {
        use abi::event as e;
        if code & e::PULSEDIGIT != 0 {
            // DAHDI reports '0' as ten pulses (value 10) or as ASCII '0'.
            let d = code & 0xffff;
            return match d {
                1..=9 => Some(Event::PulseDigit(d as u8)),
                10 | 0x30 => Some(Event::PulseDigit(0)),
                0x31..=0x39 => Some(Event::PulseDigit((d - 0x30) as u8)),
                _ => None,
            };
        }
        Some(match (code, kind) {
            (e::RINGOFFHOOK, PortKind::Fxs) => Event::OffHook,
            (e::RINGBEGIN, PortKind::Fxo) => Event::RingBegin,
            (e::RINGOFFHOOK, PortKind::Fxo) => Event::RingEnd,
            (e::ONHOOK, _) => Event::OnHook,
            (e::WINKFLASH, PortKind::Fxs) => Event::Flash,
            (e::PULSE_START, PortKind::Fxs) => Event::PulseStart,
            (e::RINGERON, PortKind::Fxs) => Event::RingerOn,
            (e::RINGEROFF, PortKind::Fxs) => Event::RingerOff,
            (e::POLARITY, _) => Event::Polarity,
            (e::ALARM, _) => Event::Alarm(true),
            (e::NOALARM, _) => Event::Alarm(false),
            (e::REMOVED, _) => Event::Alarm(true),
            _ => return None,
        })
    }

    /// The `DAHDI_GETEVENT` code DAHDI would report for this event.
    pub fn to_dahdi(self) -> i32 {
        use abi::event as e;
        match self {
            Event::OffHook | Event::RingEnd => e::RINGOFFHOOK,
            Event::RingBegin => e::RINGBEGIN,
            Event::OnHook => e::ONHOOK,
            Event::Flash => e::WINKFLASH,
            Event::PulseStart => e::PULSE_START,
            Event::PulseDigit(d) => e::PULSEDIGIT | if d == 0 { 10 } else { i32::from(d) },
            Event::RingerOn => e::RINGERON,
            Event::RingerOff => e::RINGEROFF,
            Event::Polarity => e::POLARITY,
            Event::Alarm(true) => e::ALARM,
            Event::Alarm(false) => e::NOALARM,
        }
    }
}

/// A ring cadence: alternating ring/silence durations in ms, repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingCadence(pub Vec<u32>);

impl RingCadence {
    /// North America: 2 s ring, 4 s silence.
    pub fn us() -> Self {
        RingCadence(vec![2000, 4000])
    }

    /// Most of Europe (DE, EU): 1 s ring, 4 s silence.
    pub fn eu() -> Self {
        RingCadence(vec![1000, 4000])
    }

    /// UK: 0.4 s ring, 0.2 s, 0.4 s, 2 s.
    pub fn uk() -> Self {
        RingCadence(vec![400, 200, 400, 2000])
    }

    /// The zone's ring cadence (tone zone codes as in `dsp::tones`), `None` if unknown.
    pub fn for_zone(zone: &str) -> Option<Self> {
        Some(match zone {
            "us" => RingCadence::us(),
            "uk" => RingCadence::uk(),
            "eu" | "de" | "fr" | "cn" => RingCadence::eu(),
            "jp" => RingCadence(vec![1000, 2000]),
            _ => return None,
        })
    }

    /// As `struct dahdi_ring_cadence`; `None` with more than 16 entries or a zero.
    pub fn to_dahdi(&self) -> Option<abi::RingCadence> {
        if self.0.len() > 16 || self.0.is_empty() || self.0.contains(&0) {
            return None;
        }
        let mut c = abi::RingCadence::default();
        for (d, &v) in c.ringcadence.iter_mut().zip(&self.0) {
            *d = i32::try_from(v).ok()?;
        }
        Some(c)
    }
}

/// What the software asks of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// FXO port: release the line. FXS port: end the call (kewl start: battery-drop pulse).
    OnHook,
    /// FXO port: seize the line or answer a ring.
    OffHook,
    /// FXO port: a timed hook flash.
    Flash,
    /// FXS port: start ringing with the port's cadence.
    Ring,
    /// FXS port: stop ringing.
    RingOff,
    /// FXS port: set line polarity (true = reversed).
    SetPolarity(bool),
    /// FXS port: the cadence for later `Ring`s.
    SetCadence(RingCadence),
    /// FXS port: allow audio to the on-hook phone for `ms` (caller ID).
    OnHookTransfer(u32),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::OnHook => "on-hook",
            Command::OffHook => "off-hook",
            Command::Flash => "flash",
            Command::Ring => "ring",
            Command::RingOff => "ring-off",
            Command::SetPolarity(_) => "set-polarity",
            Command::SetCadence(_) => "set-cadence",
            Command::OnHookTransfer(_) => "on-hook-transfer",
        }
    }

    /// Which port kind accepts this command (`None`: both).
    fn only_on(&self) -> Option<PortKind> {
        match self {
            Command::OnHook => None,
            Command::OffHook | Command::Flash => Some(PortKind::Fxo),
            Command::Ring
            | Command::RingOff
            | Command::SetPolarity(_)
            | Command::SetCadence(_)
            | Command::OnHookTransfer(_) => Some(PortKind::Fxs),
        }
    }
}

/// Errors of the analog layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalogError {
    /// The caller sent a command the port's module cannot do (ring an FXO port...).
    #[error("channel {chan}: {op} is not possible on an {kind:?} port")]
    WrongPortKind {
        /// The channel.
        chan: u16,
        /// The command.
        op: &'static str,
        /// The port's module.
        kind: PortKind,
    },
    /// The caller named a channel the card does not have.
    #[error("channel {0}: no such analog port")]
    NoSuchPort(u16),
    /// The caller asked for a cadence DAHDI cannot hold.
    #[error("channel {chan}: ring cadence {cadence:?} not representable (1-16 non-zero steps)")]
    BadCadence {
        /// The channel.
        chan: u16,
        /// The cadence.
        cadence: Vec<u32>,
    },
    /// A DAHDI channel's `system.conf` signalling does not suit the port.
    #[error(
        "channel {chan}: signalling {have} ({sigtype:#x}) but the port needs {want}: \
         write \"{line}\" in /etc/dahdi/system.conf and run dahdi_cfg"
    )]
    WrongSignalling {
        /// The channel.
        chan: u16,
        /// `sigtype` from DAHDI_GET_PARAMS.
        sigtype: i32,
        /// Its `system.conf` key, or a description.
        have: &'static str,
        /// What the port kind needs.
        want: &'static str,
        /// The `system.conf` line to write.
        line: String,
    },
    /// The kernel refused an ioctl.
    #[error("channel {chan}: {op}: {err}")]
    Io {
        /// The channel.
        chan: u16,
        /// The operation.
        op: &'static str,
        /// The OS error text.
        err: String,
    },
}

/// Hook state of a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// Loop open.
    On,
    /// Loop closed.
    Off,
}

/// The software's view of one analog port: what it commanded and what the
/// hardware reported. The same model serves the sim card and DAHDI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalogPort {
    chan: ChanId,
    signalling: Signalling,
    /// FXS port: the phone's hook. FXO port: our own hook.
    hook: Hook,
    ringing: bool,
    polarity_reversed: bool,
    cadence: RingCadence,
}

impl AnalogPort {
    /// A port, on hook, not ringing, forward polarity, US cadence.
    pub fn new(chan: ChanId, signalling: Signalling) -> Self {
        AnalogPort {
            chan,
            signalling,
            hook: Hook::On,
            ringing: false,
            polarity_reversed: false,
            cadence: RingCadence::us(),
        }
    }

    /// The channel number.
    pub fn chan(&self) -> ChanId {
        self.chan
    }

    /// The signalling.
    pub fn signalling(&self) -> Signalling {
        self.signalling
    }

    /// The module.
    pub fn kind(&self) -> PortKind {
        self.signalling.port_kind()
    }

    /// FXS port: the phone's hook; FXO port: ours.
    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// FXS port: ringing now.
    pub fn ringing(&self) -> bool {
        self.ringing
    }

    /// Line polarity reversed (FXS: as we set it; FXO: as last reported).
    pub fn polarity_reversed(&self) -> bool {
        self.polarity_reversed
    }

    /// The ring cadence in use.
    pub fn cadence(&self) -> &RingCadence {
        &self.cadence
    }

    /// Check `cmd` against the port kind and apply it to the model.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), AnalogError> {
        if let Some(k) = cmd.only_on() {
            if k != self.kind() {
                return Err(AnalogError::WrongPortKind {
                    chan: self.chan.0,
                    op: cmd.name(),
                    kind: self.kind(),
                });
            }
        }
        match cmd {
            Command::OnHook => {
                self.ringing = false;
                if self.kind() == PortKind::Fxo {
                    self.hook = Hook::On;
                }
            }
            Command::OffHook => self.hook = Hook::Off,
            Command::Flash => {}
            Command::Ring => self.ringing = self.hook == Hook::On,
            Command::RingOff => self.ringing = false,
            Command::SetPolarity(r) => self.polarity_reversed = *r,
            Command::SetCadence(c) => {
                if c.to_dahdi().is_none() {
                    return Err(AnalogError::BadCadence {
                        chan: self.chan.0,
                        cadence: c.0.clone(),
                    });
                }
                self.cadence = c.clone();
            }
            Command::OnHookTransfer(_) => {}
        }
        Ok(())
    }

    /// Update the model from a hardware event.
    pub fn observe(&mut self, ev: &Event) {
        match (ev, self.kind()) {
            (Event::OffHook, PortKind::Fxs) => {
                self.hook = Hook::Off;
                // Ring trip: the card stops ringing when the phone answers.
                self.ringing = false;
            }
            (Event::OnHook, PortKind::Fxs) => self.hook = Hook::On,
            (Event::Polarity, PortKind::Fxo) => self.polarity_reversed = !self.polarity_reversed,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalling_swaps_port_kind() {
        assert_eq!(Signalling::FxoKs.port_kind(), PortKind::Fxs);
        assert_eq!(Signalling::FxsKs.port_kind(), PortKind::Fxo);
        assert_eq!(Signalling::from_conf_key("fxols"), Some(Signalling::FxoLs));
        assert_eq!(Signalling::from_conf_key("fxxks"), None);
        for s in Signalling::ALL {
            assert_eq!(Signalling::from_conf_key(s.conf_key()), Some(s));
        }
        assert_eq!(Signalling::FxsGs.start(), StartType::Ground);
    }

    #[test]
    fn events_map_to_and_from_dahdi_codes() {
        let fxs = [
            Event::OffHook,
            Event::OnHook,
            Event::Flash,
            Event::PulseStart,
            Event::PulseDigit(0),
            Event::PulseDigit(7),
            Event::RingerOn,
            Event::RingerOff,
            Event::Alarm(true),
            Event::Alarm(false),
        ];
        for e in fxs {
            assert_eq!(Event::from_dahdi(e.to_dahdi(), PortKind::Fxs), Some(e));
        }
        for e in [
            Event::RingBegin,
            Event::RingEnd,
            Event::Polarity,
            Event::OnHook,
        ] {
            assert_eq!(Event::from_dahdi(e.to_dahdi(), PortKind::Fxo), Some(e));
        }
        // RINGOFFHOOK means "answered" on an FXS port and "a ring burst
        // ended" on an FXO port (RINGBEGIN, 18, marks its start).
        assert_eq!(Event::from_dahdi(2, PortKind::Fxo), Some(Event::RingEnd));
        assert_eq!(Event::from_dahdi(18, PortKind::Fxo), Some(Event::RingBegin));
        assert_eq!(Event::from_dahdi(8, PortKind::Fxs), None);
        assert_eq!(
            Event::from_dahdi(0x10000 | 0x33, PortKind::Fxs),
            Some(Event::PulseDigit(3))
        );
    }

    #[test]
    fn port_rejects_commands_for_the_other_module() {
        let mut fxo = AnalogPort::new(ChanId(2), Signalling::FxsKs);
        assert!(matches!(
            fxo.apply(&Command::Ring),
            Err(AnalogError::WrongPortKind { chan: 2, .. })
        ));
        fxo.apply(&Command::OffHook).unwrap();
        assert_eq!(fxo.hook(), Hook::Off);
        fxo.observe(&Event::Polarity);
        assert!(fxo.polarity_reversed());
        let mut fxs = AnalogPort::new(ChanId(1), Signalling::FxoKs);
        assert!(fxs.apply(&Command::OffHook).is_err());
        fxs.apply(&Command::Ring).unwrap();
        assert!(fxs.ringing());
        fxs.observe(&Event::OffHook);
        assert!(!fxs.ringing(), "ring trip");
        assert!(matches!(
            fxs.apply(&Command::SetCadence(RingCadence(vec![100, 0]))),
            Err(AnalogError::BadCadence { .. })
        ));
        let c = RingCadence::uk().to_dahdi().unwrap();
        assert_eq!(&c.ringcadence[..5], &[400, 200, 400, 2000, 0]);
    }
}
