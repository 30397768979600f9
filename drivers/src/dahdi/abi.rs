//! DAHDI user ABI constants and `#[repr(C)]` layouts (from `dahdi/user.h`,
//! dahdi-linux 2.11.1, x86_64). `drivers/tests/dahdi_abi.rs` checks them
//! against the C headers when they are installed.

/// Request numbers (`_IO*('0xDA', nr, type)`), as `u32`.
pub mod req {
    #![allow(missing_docs)]
    pub const GET_BLOCKSIZE: u32 = 0x8004_da01;
    pub const SET_BLOCKSIZE: u32 = 0x4004_da01;
    pub const FLUSH: u32 = 0x4004_da03;
    pub const SYNC: u32 = 0x0000_da04;
    pub const GET_PARAMS: u32 = 0xc088_da05;
    pub const SET_PARAMS: u32 = 0x4088_da05;
    pub const HOOK: u32 = 0x4004_da07;
    pub const GETEVENT: u32 = 0x8004_da08;
    pub const IOMUX: u32 = 0xc004_da09;
    pub const SPANSTAT: u32 = 0xc13a_da0a;
    pub const MAINT: u32 = 0x4008_da0b;
    pub const GETCONF: u32 = 0xc00c_da0c;
    pub const SETCONF: u32 = 0xc00c_da0d;
    pub const SPANCONFIG: u32 = 0x4024_da12;
    pub const CHANCONFIG: u32 = 0x404c_da13;
    pub const GET_BUFINFO: u32 = 0x8018_da1b;
    pub const SET_BUFINFO: u32 = 0x4018_da1b;
    pub const AUDIOMODE: u32 = 0x4004_da20;
    pub const ECHOCANCEL: u32 = 0x4004_da21;
    pub const CHANNO: u32 = 0x8004_da22;
    pub const HDLCRAWMODE: u32 = 0x4004_da24;
    pub const HDLCFCSMODE: u32 = 0x4004_da25;
    pub const SPECIFY: u32 = 0x4004_da26;
    pub const SETLAW: u32 = 0x4004_da27;
    pub const SETLINEAR: u32 = 0x4004_da28;
    pub const GETVERSION: u32 = 0x80a0_da39;
    pub const LOOPBACK: u32 = 0x4004_da3a;
    pub const STARTUP: u32 = 0x4004_da63;
    pub const SHUTDOWN: u32 = 0x4004_da64;
    pub const HDLC_RATE: u32 = 0x4004_da65;
    pub const BUFFER_EVENTS: u32 = 0x4004_da69;
}

/// Events returned by `DAHDI_GETEVENT`.
pub mod event {
    #![allow(missing_docs)]
    pub const NONE: i32 = 0;
    pub const ONHOOK: i32 = 1;
    pub const RINGOFFHOOK: i32 = 2;
    pub const WINKFLASH: i32 = 3;
    pub const ALARM: i32 = 4;
    pub const NOALARM: i32 = 5;
    pub const ABORT: i32 = 6;
    pub const OVERRUN: i32 = 7;
    pub const BADFCS: i32 = 8;
}

/// `errno` meaning "an event is queued" (ELAST in `user.h`).
pub const ELAST: i32 = 500;
/// Signalling type of a `dchan=` channel (HDLC with FCS).
pub const SIG_HDLCFCS: i32 = 0x380;
/// Signalling type of a clear channel (`bchan=`/`clear=`).
pub const SIG_CLEAR: i32 = 0x80;
/// Signalling type of a `hardhdlc=` channel (the card does HDLC).
pub const SIG_HARDHDLC: i32 = 0x8_0080;
/// Buffer policy: start playing/recording at once.
pub const POLICY_IMMEDIATE: i32 = 0;
/// Buffer policy: start when every buffer is full.
pub const POLICY_WHEN_FULL: i32 = 1;
/// Most buffers per direction (`numbufs`).
pub const MAX_NUM_BUFS: i32 = 32;
/// Most buffer space per direction (`numbufs * bufsize`).
pub const MAX_BUF_SPACE: i32 = 32768;
/// Span alarm bits.
pub mod alarm {
    #![allow(missing_docs)]
    pub const RECOVER: i32 = 1;
    pub const LOOPBACK: i32 = 2;
    pub const YELLOW: i32 = 4;
    pub const RED: i32 = 8;
    pub const BLUE: i32 = 0x10;
    pub const NOTOPEN: i32 = 0x20;
}
/// Law values for `DAHDI_SETLAW`.
pub const LAW_ALAW: i32 = 2;
/// `DAHDI_FLUSH` bits: read, write, event.
pub const FLUSH_ALL: i32 = 1 | 2 | 4;

/// `struct dahdi_params` (136 octets).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct Params {
    pub channo: i32,
    pub spanno: i32,
    pub chanpos: i32,
    pub sigtype: i32,
    pub sigcap: i32,
    pub rxisoffhook: i32,
    pub rxbits: i32,
    pub txbits: i32,
    pub txhooksig: i32,
    pub rxhooksig: i32,
    pub curlaw: i32,
    pub idlebits: i32,
    pub name: [u8; 40],
    pub prewinktime: i32,
    pub preflashtime: i32,
    pub winktime: i32,
    pub flashtime: i32,
    pub starttime: i32,
    pub rxwinktime: i32,
    pub rxflashtime: i32,
    pub debouncetime: i32,
    pub pulsebreaktime: i32,
    pub pulsemaketime: i32,
    pub pulseaftertime: i32,
    pub chan_alarms: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            channo: 0,
            spanno: 0,
            chanpos: 0,
            sigtype: 0,
            sigcap: 0,
            rxisoffhook: 0,
            rxbits: 0,
            txbits: 0,
            txhooksig: 0,
            rxhooksig: 0,
            curlaw: 0,
            idlebits: 0,
            name: [0; 40],
            prewinktime: 0,
            preflashtime: 0,
            winktime: 0,
            flashtime: 0,
            starttime: 0,
            rxwinktime: 0,
            rxflashtime: 0,
            debouncetime: 0,
            pulsebreaktime: 0,
            pulsemaketime: 0,
            pulseaftertime: 0,
            chan_alarms: 0,
        }
    }
}

/// `struct dahdi_bufferinfo` (24 octets).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct BufferInfo {
    pub txbufpolicy: i32,
    pub rxbufpolicy: i32,
    pub numbufs: i32,
    pub bufsize: i32,
    pub readbufs: i32,
    pub writebufs: i32,
}

/// `struct dahdi_spaninfo` (packed, 314 octets).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct SpanInfo {
    pub spanno: i32,
    pub name: [u8; 20],
    pub desc: [u8; 40],
    pub alarms: i32,
    pub txlevel: i32,
    pub rxlevel: i32,
    pub bpvcount: i32,
    pub crc4count: i32,
    pub ebitcount: i32,
    pub fascount: i32,
    pub fecount: u32,
    pub cvcount: u32,
    pub becount: u32,
    pub prbs: u32,
    pub errsec: u32,
    pub irqmisses: i32,
    pub syncsrc: i32,
    pub numchans: i32,
    pub totalchans: i32,
    pub totalspans: i32,
    pub lbo: i32,
    pub lineconfig: i32,
    pub lboname: [u8; 40],
    pub location: [u8; 40],
    pub manufacturer: [u8; 40],
    pub devicetype: [u8; 40],
    pub irq: i32,
    pub linecompat: i32,
    pub spantype: [u8; 6],
}

impl Default for SpanInfo {
    fn default() -> Self {
        Self {
            spanno: 0,
            name: [0; 20],
            desc: [0; 40],
            alarms: 0,
            txlevel: 0,
            rxlevel: 0,
            bpvcount: 0,
            crc4count: 0,
            ebitcount: 0,
            fascount: 0,
            fecount: 0,
            cvcount: 0,
            becount: 0,
            prbs: 0,
            errsec: 0,
            irqmisses: 0,
            syncsrc: 0,
            numchans: 0,
            totalchans: 0,
            totalspans: 0,
            lbo: 0,
            lineconfig: 0,
            lboname: [0; 40],
            location: [0; 40],
            manufacturer: [0; 40],
            devicetype: [0; 40],
            irq: 0,
            linecompat: 0,
            spantype: [0; 6],
        }
    }
}

/// `_IOC` encoding (Linux generic): dir<<30 | size<<16 | type<<8 | nr.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_measured_tables() {
        assert_eq!(size_of::<Params>(), 136);
        assert_eq!(offset_of!(Params, name), 48);
        assert_eq!(offset_of!(Params, chan_alarms), 132);
        assert_eq!(size_of::<SpanInfo>(), 314);
        assert_eq!(offset_of!(SpanInfo, alarms), 64);
        assert_eq!(offset_of!(SpanInfo, fecount), 92);
        assert_eq!(offset_of!(SpanInfo, lineconfig), 136);
        assert_eq!(offset_of!(SpanInfo, spantype), 308);
        assert_eq!(size_of::<BufferInfo>(), 24);
    }

    #[test]
    fn request_numbers_follow_ioc() {
        const W: u32 = 1;
        const R: u32 = 2;
        assert_eq!(req::SPECIFY, ioc(W, 0xDA, 38, 4));
        assert_eq!(
            req::GET_PARAMS,
            ioc(R | W, 0xDA, 5, size_of::<Params>() as u32)
        );
        assert_eq!(
            req::SPANSTAT,
            ioc(R | W, 0xDA, 10, size_of::<SpanInfo>() as u32)
        );
        assert_eq!(req::GET_BUFINFO, ioc(R, 0xDA, 27, 24));
        assert_eq!(req::SET_BUFINFO, ioc(W, 0xDA, 27, 24));
        assert_eq!(req::SYNC, ioc(0, 0xDA, 4, 0));
    }
}
