//! Telephony cards: the span/channel model, the DAHDI ABI backend and the
//! software card simulator (E1 + TDM400P) with a PSTN exchange simulator.
//!
//! This crate knows nothing about protocols: it moves A-law sample blocks,
//! HDLC frames and hook/ring events. The signalling that gives them meaning
//! (Q.921/Q.931, analog loop start) lives in `control`.
//!
//! - [`span`]: the E1 span model (31 timeslots, B-channel blocks, D-channel
//!   frames, alarms).
//! - [`hdlc`]: HDLC flags, bit stuffing and FCS-16.
//! - [`sim`]: the simulated card, G.704 framing with CRC-4, back-to-back wiring.
//! - [`dahdi`]: the DAHDI user ABI (constants, layouts) and its ioctls.
//! - [`analog`]: FXS/FXO ports, `system.conf` analog lines, the simulated
//!   TDM400P with telephones and a central-office line.
//!
//! Unsafe policy: denied here; allowed only in `dahdi::ioctl`.
#![deny(unsafe_code)]

pub mod analog;
pub mod dahdi;
pub mod hdlc;
pub mod sim;
pub mod span;

/// A span on a telephony card (E1: 31 timeslots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub u16);

/// A channel (timeslot or analog port) number, 1-based as in DAHDI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChanId(pub u16);
