//! SIP: the sans-IO signalling core (RFC 3261).
//!
//! Layers, bottom up, none of which touches a socket or reads the clock:
//! - [`message`]: the message codec (parse a datagram into a [`Request`] / [`Response`],
//!   serialise back) and [`uri`]: typed views of URIs, name-addrs, Via and CSeq values.
//! - [`transaction`]: the four RFC 3261 §17 transaction state machines (with RFC 6026's
//!   Accepted state) behind a [`TransactionLayer`] that matches messages to transactions and
//!   runs timers A-M from the `now` it is given ([`timer`]).
//! - [`check`]: the RFC 3261 §8.2 UAS checks (501, 416, 420, 415, 406) applied before
//!   method-specific processing.
//! - [`digest`]: HTTP digest authentication (RFC 2617 / RFC 7616, MD5 and SHA-256) with
//!   stateless, self-validating nonces.
//! - [`registrar`]: REGISTER handling, location bindings and request authentication.
//! - [`stream`]: message framing on TCP/TLS (Content-Length, RFC 5626 keepalives, limits).
//! - [`transport`]: which transport a message uses (Via, URI) and the Via/Contact Tandem writes
//!   for it; reliable transports switch off the transaction retransmission timers.
//!
//! Transport (UDP/TCP sockets) and the run loop live in `control::net`; dialogs and B2BUA legs
//! in `control::call`.

pub mod check;
pub mod client_auth;
pub mod digest;
pub mod message;
pub mod register_client;
pub mod registrar;
pub mod stream;
pub(crate) mod text;
pub mod timer;
pub mod transaction;
pub mod transport;
pub mod uri;

pub use message::{
    new_branch, new_call_id, new_tag, reason_phrase, CSeq, Headers, Message, Method, NameAddr,
    ParseError, Peek, Request, Response, Uri, ValueError, Via,
};
pub use registrar::{Auth, Binding, Registrar};
pub use transaction::{Incoming, TransactionLayer, Transmit, TxError, TxEvent, TxKey};
