//! Analog line signalling (loop start / kewl start) for FXS and FXO ports,
//! sans-IO: hardware events and line audio go in with `now`, hardware
//! commands and call events come out.
//!
//! - [`FxsLine`]: a port that feeds a telephone. Off hook gives dial tone;
//!   DTMF and pulse digits are collected with an interdigit timeout and
//!   offered to a dialplan callback; incoming calls ring the phone with the
//!   zone cadence and send caller ID (after the first ring, or before it with
//!   a polarity reversal); answer, hang-up and hook flash are reported.
//! - [`FxoLine`]: a port that plugs into an exchange line. Ringing is counted
//!   and answered on the configured ring; the caller ID that came before is
//!   decoded from the line audio and handed over with the call; outgoing
//!   calls seize the line and dial DTMF; far-end disconnect is detected by
//!   polarity reversal, loop current drop or busy/congestion tone
//!   ([`progress::BusyDetector`]).
//!
//! Run loop (same contract for both lines): feed [`HwEvent`]s with
//! `handle_hw`, line audio (what the far side sends us, 8 kHz linear) with
//! `handle_audio`, call-model input with `handle_call`, and timer expiry with
//! `handle_timeout`; then drain `poll_command` (for the card) and
//! `poll_event` (for the call model) until both are empty, and sleep until
//! `poll_timeout`. The mapping to hardware lives at the edge: a
//! [`HwCommand::PlayTone`] or [`HwCommand::SendCallerId`] is rendered by the
//! dataplane (`dsp::tones`, `dsp::fsk`), a [`HwCommand::Ring`] becomes
//! `DAHDI_HOOK(DAHDI_RING)` or its simulated twin.

pub mod config;
pub mod fxo;
pub mod fxs;
pub mod progress;

pub use dataplane::dsp::fsk::{CallerId, Format, FskStandard};
pub use dataplane::dsp::tones::ToneKind;
pub use fxo::{FxoConfig, FxoLine};
pub use fxs::{DialMatch, FxsConfig, FxsLine};

use std::collections::VecDeque;

/// A line fact from the hardware (the card's events, protocol-neutral).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwEvent {
    /// FXS: the phone went off hook.
    OffHook,
    /// FXS: the phone hung up. FXO: loop current dropped (far end gone).
    OnHook,
    /// FXS: hook flash.
    Flash,
    /// FXS: the first break of a rotary digit.
    PulseStart,
    /// FXS: a rotary digit 0-9.
    PulseDigit(u8),
    /// FXS: a ring burst started.
    RingerOn,
    /// FXS: a ring burst ended.
    RingerOff,
    /// FXO: the exchange rings us.
    RingBegin,
    /// FXO: a ring burst ended.
    RingEnd,
    /// FXO: line polarity reversed.
    Polarity,
}

impl HwEvent {
    /// The line fact of a card event; `None` for alarms (the edge logs
    /// those, the line state machines have no use for them).
    pub fn from_card(e: drivers::analog::Event) -> Option<HwEvent> {
        use drivers::analog::Event;
        Some(match e {
            Event::OffHook => HwEvent::OffHook,
            Event::OnHook => HwEvent::OnHook,
            Event::Flash => HwEvent::Flash,
            Event::PulseStart => HwEvent::PulseStart,
            Event::PulseDigit(d) => HwEvent::PulseDigit(d),
            Event::RingerOn => HwEvent::RingerOn,
            Event::RingerOff => HwEvent::RingerOff,
            Event::RingBegin => HwEvent::RingBegin,
            Event::RingEnd => HwEvent::RingEnd,
            Event::Polarity => HwEvent::Polarity,
            Event::Alarm(_) => return None,
        })
    }
}

/// What the line asks of the hardware and media path.
#[derive(Debug, Clone, PartialEq)]
pub enum HwCommand {
    /// FXO: seize the line / answer. (FXS ports never go off hook.)
    OffHook,
    /// FXO: release the line. FXS: end the call (kewl start pulse).
    OnHook,
    /// FXS: start ringing with `cadence` (ms on/off, repeated).
    Ring {
        /// Alternating ring/silence durations in ms.
        cadence: Vec<u32>,
    },
    /// FXS: stop ringing.
    RingOff,
    /// FXS: line polarity (true = reversed).
    SetPolarity(bool),
    /// Play a call-progress tone of the line's zone to the line until `StopTone`.
    PlayTone(ToneKind),
    /// Stop any tone.
    StopTone,
    /// FXS: send caller ID on hook (render with `dsp::fsk` or DTMF as `signalling` says).
    SendCallerId {
        /// What to send.
        cid: CallerId,
        /// How.
        signalling: CidSignalling,
    },
    /// FXO: dial these DTMF digits into the line.
    SendDtmf(String),
}

/// What the line tells the call model.
#[derive(Debug, Clone, PartialEq)]
pub enum LineEvent {
    /// FXS: the phone dialled a complete number: route it.
    Dialed {
        /// The digits.
        number: String,
    },
    /// FXS: the phone answered our ring. FXO: the far end answered (polarity).
    Answered,
    /// FXS: the phone hung up.
    HungUp,
    /// FXS: hook flash during a call.
    Flash,
    /// FXO: an inbound call, answered on the configured ring.
    Incoming {
        /// Caller ID decoded before answering, if any.
        caller: Option<CallerId>,
    },
    /// FXO: the far end hung up.
    FarEndDisconnect(Disconnect),
}

/// How an FXO line learnt that the far end hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// Line polarity reversal.
    Polarity,
    /// Loop current drop (kewl start battery pulse).
    LoopCurrent,
    /// Busy or congestion tone in the line audio.
    Tone,
}

/// Call-model input.
#[derive(Debug, Clone, PartialEq)]
pub enum CallInput {
    /// FXS: an incoming call for this phone: ring it and send `caller`.
    Incoming {
        /// Caller ID to present.
        caller: Option<CallerId>,
    },
    /// FXO: place an outgoing call to `number`.
    Dial {
        /// Digits to dial.
        number: String,
    },
    /// FXS: the far end is ringing (play ringback).
    Alerting,
    /// FXS: the far end answered.
    Answered,
    /// The other leg is gone.
    Release,
}

/// How caller ID is signalled on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidSignalling {
    /// FSK with `standard`, message `format`.
    Fsk {
        /// Bell 202 or V.23.
        standard: FskStandard,
        /// SDMF or MDMF.
        format: Format,
    },
    /// DTMF caller ID (`A<number>C`).
    Dtmf,
}

/// When caller ID goes out (FXS) or is expected (FXO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidStart {
    /// After the first ring (Bell, and ETSI "during ringing").
    AfterFirstRing,
    /// Before the first ring, after a polarity reversal (ETSI, DTMF CID).
    BeforeFirstRing,
}

/// Errors of the analog line layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalogError {
    /// The operator configured a tone zone we have no data for.
    #[error("analog port: unknown tone zone {0:?} (known: us uk eu de fr cn jp)")]
    UnknownZone(String),
    /// The caller fed a call input the line cannot take in its state.
    #[error("analog port: {input} not possible while {state}")]
    BadInput {
        /// The input.
        input: &'static str,
        /// The line's state.
        state: &'static str,
    },
}

/// Queued outputs shared by both lines.
#[derive(Debug, Default)]
struct Outbox {
    commands: VecDeque<HwCommand>,
    events: VecDeque<LineEvent>,
}
