//! Tandem's control plane: signalling and policy.
//!
//! Protocol cores are sans-IO state machines that take bytes or events plus
//! `now` and return bytes to send, events and their next timer:
//! - [`sip`]: message codec, transactions (RFC 3261 timers A-K), digest
//!   authentication and the registrar.
//! - [`sdp`]: session descriptions and RFC 3264 offer/answer.
//! - [`dialplan`]: the Asterisk `extensions.conf` language.
//! - [`call`]: the B2BUA call manager joining an A leg and a B leg.
//! - [`q931`]: the Q.931 message/IE codec; [`isdn`]: Q.921 LAPD and the
//!   ISDN PRI call state machines (user and network side).
//! - [`defence`]: rate limits, bans and caps applied to SIP input before the engine.
//! - [`notify`]: systemd readiness and watchdog datagrams (`tandemd` under `Type=notify`).
//! - [`tune`]: `tandemctl tune check`, the machine's readiness for pinned dataplane cores.
//! - [`analog`]: FXS/FXO loop-start line signalling (dial tone, digits, ringing,
//!   caller ID, answer on ring N, far-end disconnect supervision).
//!
//! Sockets, tokio and the clock live only at the edge: [`net`] (SIP transport
//! and the run loop) and [`mgmt`] (the management socket). [`config`] loads and
//! checks `tandem.toml`.
//!
//! This crate has no unsafe code.
#![forbid(unsafe_code)]

pub mod aaa;
pub mod agi;
pub mod analog;
pub mod call;
pub mod cdr;
pub mod config;
pub mod defence;
pub mod dialplan;
pub mod h323;
pub mod isdn;
pub mod iwf;
pub mod mgmt;
pub mod net;
pub mod ng;
pub mod notify;
pub mod pstn;
pub mod q931;
pub mod sdp;
pub mod sip;
pub mod streams;
pub mod tune;
