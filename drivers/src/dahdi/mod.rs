//! The DAHDI backend: the user-space ABI ([`abi`]: request numbers and
//! struct layouts, x86_64, dahdi-linux 2.11), the ioctl calls themselves
//! ([`ioctl`], the only module of this crate with unsafe code) and an open
//! channel ([`chan`]: D-channel frames through the kernel's HDLC/FCS engine,
//! B-channel sample blocks, events).

pub mod abi;
pub mod chan;
pub mod ioctl;

pub use chan::{Channel, ChannelError, ChannelKind, ChannelStats};
