//! Interworking functions: the other signalling worlds, each turned into SIP
//! towards the call engine (see [`crate::call::Gateway`]).
//!
//! - [`pstn`]: ISDN PRI spans (`Dial(DAHDI/g1/number)`), the `[pstn]` section.

pub mod pstn;
