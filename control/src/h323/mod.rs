//! H.323 signalling: H.225.0 call signalling over TCP with fastStart, H.245
//! tunnelling and UserInputIndication DTMF.
//!
//! Layers, bottom up:
//! - [`tpkt`]: RFC 1006 framing of the TCP stream.
//! - [`crate::q931`]: the Q.931 message (shared with ISDN), parsed with
//!   [`crate::q931::Message::parse_h225`] because the User-user IE has a
//!   two-octet length in H.225.0.
//! - [`per`]: aligned PER (X.691) primitives; [`h225`]: `H323-UserInformation`
//!   (the User-user IE body); [`h245`]: the H.245 messages used inside
//!   fastStart and tunnelling.
//! - [`message`]: one H.225.0 message = Q.931 + decoded UUIE.
//! - [`call`]: the sans-IO call state machine (both directions), the API the
//!   B2BUA drives; [`cause`]: Q.850 <-> SIP status mapping.
//! - [`net`]: the tokio TCP edge that runs a [`call::H323Call`] on a socket.
//!
//! # Why a hand-written PER codec, not rasn
//!
//! The H.225.0/H.245 modules are large (H.225 v7 imports H.235 and H.245,
//! ~6000 lines of ASN.1), need textual rewrites before any compiler accepts
//! them (see h323peer's README), and rasn's PER codec has had a run of
//! extension-addition bugs (librasn/rasn #192, #271, #351). More to the point,
//! a derive-based codec decodes into fixed structs and drops extension
//! additions it does not know, so a decoded message from a newer peer cannot
//! be re-encoded byte exact. H.225 lives in its extension additions
//! (callIdentifier, fastStart, h245Tunnelling are all after `...`). So Tandem
//! models exactly the subset it uses by hand on ~300 lines of X.691
//! primitives ([`per`]): root components are decoded into fields, every
//! extension addition stays as its raw open type and is decoded on demand.
//! The result re-encodes captured messages byte for byte and is checked
//! against an independent PER implementation (h323peer's asn1tools) and
//! Wireshark's dissector.

pub mod call;
pub mod cause;
pub mod h225;
pub mod h245;
pub mod message;
pub mod net;
pub mod per;
pub mod tpkt;

pub use call::{CallEvent, H323Call};
pub use message::H225Message;

/// Errors of the H.323 stack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H323Error {
    /// The peer's TPKT framing was broken.
    #[error(transparent)]
    Tpkt(#[from] tpkt::TpktError),
    /// The peer's Q.931 message was malformed.
    #[error(transparent)]
    Q931(#[from] crate::q931::Q931Error),
    /// The peer's PER encoding was malformed or outside the modelled subset.
    #[error(transparent)]
    Per(per::PerError),
    /// The peer's message lacks something H.225.0 requires.
    #[error("h225: {0}")]
    Missing(&'static str),
    /// The local user asked for something the call state does not allow.
    #[error("h323 call: {0} not allowed in state {1}")]
    ApiMisuse(&'static str, &'static str),
}
