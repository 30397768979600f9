//! Telephony cards: the span/channel model, the DAHDI ABI backend and the
//! software card simulator (E1 + TDM400P) with a PSTN exchange simulator.
//!
//! This crate knows nothing about protocols: it moves A-law sample blocks,
//! HDLC frames and hook/ring events. The signalling that gives them meaning
//! (Q.921/Q.931, analog loop start) lives in `control`.
//!
//! Unsafe policy: denied here; allowed only in `dahdi::ioctl` once it exists.
#![deny(unsafe_code)]

/// A span on a telephony card (E1: 31 timeslots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub u16);

/// A channel (timeslot or analog port) number, 1-based as in DAHDI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChanId(pub u16);
