//! I/O backends (to be written).

/// Identifies a socket registered with a backend (chosen by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub u32);
