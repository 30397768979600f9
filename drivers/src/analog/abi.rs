//! DAHDI user ABI for analog channels (from `dahdi/user.h`, dahdi-linux
//! 2.11.1, x86_64): hook operations, events, signalling types and the
//! analog-only request numbers. `drivers/tests/analog_dahdi_abi.rs` checks
//! every value against the C header when it is installed.

/// `DAHDI_HOOK` arguments.
pub mod hook {
    #![allow(missing_docs)]
    pub const ONHOOK: i32 = 0;
    pub const OFFHOOK: i32 = 1;
    pub const WINK: i32 = 2;
    pub const FLASH: i32 = 3;
    pub const START: i32 = 4;
    pub const RING: i32 = 5;
    pub const RINGOFF: i32 = 6;
}

/// `DAHDI_GETEVENT` codes (the E1 subset also lives in `dahdi::abi::event`).
pub mod event {
    #![allow(missing_docs)]
    pub const NONE: i32 = 0;
    pub const ONHOOK: i32 = 1;
    pub const RINGOFFHOOK: i32 = 2;
    pub const WINKFLASH: i32 = 3;
    pub const ALARM: i32 = 4;
    pub const NOALARM: i32 = 5;
    pub const DIALCOMPLETE: i32 = 9;
    pub const RINGERON: i32 = 10;
    pub const RINGEROFF: i32 = 11;
    pub const HOOKCOMPLETE: i32 = 12;
    pub const PULSE_START: i32 = 14;
    pub const POLARITY: i32 = 17;
    pub const RINGBEGIN: i32 = 18;
    pub const REMOVED: i32 = 20;
    /// OR'd with the digit (1-10, 10 = '0').
    pub const PULSEDIGIT: i32 = 1 << 16;
    /// OR'd with the digit's ASCII code.
    pub const DTMFDOWN: i32 = 1 << 17;
    /// OR'd with the digit's ASCII code.
    pub const DTMFUP: i32 = 1 << 18;
}

/// Signalling types (`DAHDI_SIG_*`) of analog channels.
pub mod sig {
    #![allow(missing_docs)]
    pub const FXS: i32 = 1 << 13;
    pub const FXO: i32 = 1 << 12;
    pub const FXSLS: i32 = 1 | FXS;
    pub const FXSGS: i32 = 2 | FXS;
    pub const FXSKS: i32 = 4 | FXS;
    pub const FXOLS: i32 = 8 | FXO;
    pub const FXOGS: i32 = 0x10 | FXO;
    pub const FXOKS: i32 = 0x20 | FXO;
}

/// Analog request numbers (`_IOW(0xDA, nr, ..)`).
pub mod req {
    #![allow(missing_docs)]
    pub const SETTONEZONE: u32 = 0x4004_da16;
    pub const SETCADENCE: u32 = 0x4040_da2a;
    pub const ONHOOKTRANSFER: u32 = 0x4004_da33;
    pub const SETPOLARITY: u32 = 0x4004_da5c;
}

/// `struct dahdi_ring_cadence`: up to 16 durations in ms, even positions
/// ring, odd positions silence, 0 ends the list (64 octets).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCadence {
    /// The durations.
    pub ringcadence: [i32; 16],
}
