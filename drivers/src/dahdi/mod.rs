//! The DAHDI backend: the user-space ABI ([`abi`]: request numbers and
//! struct layouts, x86_64, dahdi-linux 2.11) and the ioctl calls themselves
//! ([`ioctl`], the only module of this crate with unsafe code).

pub mod abi;
pub mod ioctl;
