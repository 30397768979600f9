//! Tandem's media path.
//!
//! Layers, from the wire up:
//! - [`wire`]: RTP/RTCP packet views (`Packet`/`Repr` split, no allocation).
//! - [`codec`]: G.711 and G.729 Annex A behind one `Codec` trait.
//! - [`dsp`]: echo cancellation, DTMF, tones, jitter buffer, loss concealment.
//! - [`session`] / [`switch`]: the preallocated session table and the pure
//!   relay step that moves a packet from one leg to the other.
//! - [`transcode`]: the decode -> linear -> encode path between legs that
//!   speak different codecs, with ptime repacketisation.
//! - [`io`]: the I/O backends (`socket`, `uring`, `xdp`) and the start-up
//!   choice between them. The only place with syscalls and `unsafe`.
//! - [`worker`]: a pinned thread per configured core that polls its backend,
//!   applies control commands between batches and reports events.
//! - [`media`] (with [`player`] and [`digits`]): media applications on a
//!   leg: tones and sound playback, digit detection (RFC 4733 and in-band)
//!   and digit sending, for the dialplan and AGI; [`sound`] decodes WAV/raw
//!   sound files for it.
//! - [`clock`]: the edge that reads the monotonic clock for the workers.
//! - [`handle`]: the control plane's side: create/modify/destroy sessions over
//!   `rtrb` SPSC rings, read per-worker counters.
//!
//! Unsafe policy: denied at the crate root; allowed only in `io::sys` (and
//! later `io::uring`, `io::xdp`), where every block carries a `// SAFETY:`.
#![deny(unsafe_code)]

pub mod clock;
pub mod codec;
pub mod digits;
pub mod dsp;
pub mod handle;
pub mod io;
pub mod media;
pub mod player;
pub mod session;
pub mod sound;
pub mod switch;
pub mod transcode;
pub mod wire;
pub mod worker;

pub use handle::{
    Allocated, Backend, Config, Dataplane, DropCounts, Error, Event, Mode, Selection, SessionId,
    Side, WorkerStats, XdpSettings,
};
pub use media::{DigitMode, DigitVia, MediaError, MediaEvent, Source};
pub use transcode::{CodecKind, LegCodec};
