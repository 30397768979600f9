//! Interworking functions: the other signalling worlds reach the call engine
//! as trusted SIP gateways (see [`crate::call::Gateway`]).
//!
//! Each IWF owns a SIP socket of its own on loopback, speaks plain SIP to the
//! engine on one side and its own protocol on the other, the way a voice
//! gateway sits beside a PBX. The mapping logic is sans-IO; the sockets live in
//! each IWF's `net` module.
//!
//! - [`analog`]: FXS/FXO ports of a TDM400P-class card (`Dial(DAHDI/<port>)`), the `[analog]` section.
//! - [`h323`]: H.323 gateways and terminals (`Dial(H323/number@host)`), the `[h323]` section.
//! - [`dtmf`]: RFC 4733 <-> in-band digits for the TDM IWFs.
//! - [`pstn`]: ISDN PRI spans (`Dial(DAHDI/g1/number)`), the `[pstn]` section.

pub mod analog;
pub mod dtmf;
pub mod h323;
pub mod pstn;
pub mod sipua;
