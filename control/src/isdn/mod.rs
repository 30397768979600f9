//! ISDN PRI signalling: Q.921 LAPD ([`lapd`]) and Q.931 call control
//! ([`call`]) for the user (CPE) and network sides, sans-IO.

pub mod call;
pub mod lapd;

pub use call::{CallId, CallState, Pri, PriError, PriEvent, SetupRequest, Timers};
pub use lapd::{Link, LinkConfig, LinkEvent, Side};
