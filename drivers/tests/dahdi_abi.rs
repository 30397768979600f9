//! Checks `drivers::dahdi::abi` against the DAHDI C headers (`dahdi/user.h`).
//!
//! The headers come with Debian's `dahdi-source` (a tarball under
//! /usr/src) or `dahdi-dkms` (/usr/src/dahdi-*/include). Set
//! `DAHDI_INCLUDE` to a directory holding `dahdi/user.h` to point at others.
//! Skips with a message when no header or no C compiler is found.

mod common;

use drivers::dahdi::abi::{self, req};

#[test]
fn abi_matches_c_headers() {
    let checks: Vec<(&str, u64)> = vec![
        ("DAHDI_GET_BLOCKSIZE", req::GET_BLOCKSIZE.into()),
        ("DAHDI_SET_BLOCKSIZE", req::SET_BLOCKSIZE.into()),
        ("DAHDI_FLUSH", req::FLUSH.into()),
        ("DAHDI_SYNC", req::SYNC.into()),
        ("DAHDI_GET_PARAMS", req::GET_PARAMS.into()),
        ("DAHDI_SET_PARAMS", req::SET_PARAMS.into()),
        ("DAHDI_HOOK", req::HOOK.into()),
        ("DAHDI_GETEVENT", req::GETEVENT.into()),
        ("DAHDI_IOMUX", req::IOMUX.into()),
        ("DAHDI_SPANSTAT", req::SPANSTAT.into()),
        ("DAHDI_MAINT", req::MAINT.into()),
        ("DAHDI_GETCONF", req::GETCONF.into()),
        ("DAHDI_SETCONF", req::SETCONF.into()),
        ("DAHDI_SPANCONFIG", req::SPANCONFIG.into()),
        ("DAHDI_CHANCONFIG", req::CHANCONFIG.into()),
        ("DAHDI_GET_BUFINFO", req::GET_BUFINFO.into()),
        ("DAHDI_SET_BUFINFO", req::SET_BUFINFO.into()),
        ("DAHDI_AUDIOMODE", req::AUDIOMODE.into()),
        ("DAHDI_ECHOCANCEL", req::ECHOCANCEL.into()),
        ("DAHDI_CHANNO", req::CHANNO.into()),
        ("DAHDI_HDLCRAWMODE", req::HDLCRAWMODE.into()),
        ("DAHDI_HDLCFCSMODE", req::HDLCFCSMODE.into()),
        ("DAHDI_SPECIFY", req::SPECIFY.into()),
        ("DAHDI_SETLAW", req::SETLAW.into()),
        ("DAHDI_SETLINEAR", req::SETLINEAR.into()),
        ("DAHDI_GETVERSION", req::GETVERSION.into()),
        ("DAHDI_LOOPBACK", req::LOOPBACK.into()),
        ("DAHDI_STARTUP", req::STARTUP.into()),
        ("DAHDI_SHUTDOWN", req::SHUTDOWN.into()),
        ("DAHDI_HDLC_RATE", req::HDLC_RATE.into()),
        ("DAHDI_BUFFER_EVENTS", req::BUFFER_EVENTS.into()),
        ("DAHDI_EVENT_BADFCS", abi::event::BADFCS as u64),
        ("DAHDI_EVENT_ALARM", abi::event::ALARM as u64),
        ("ELAST", abi::ELAST as u64),
        ("DAHDI_SIG_HDLCFCS", abi::SIG_HDLCFCS as u64),
        ("DAHDI_SIG_CLEAR", abi::SIG_CLEAR as u64),
        ("DAHDI_SIG_HARDHDLC", abi::SIG_HARDHDLC as u64),
        ("DAHDI_POLICY_IMMEDIATE", abi::POLICY_IMMEDIATE as u64),
        ("DAHDI_POLICY_WHEN_FULL", abi::POLICY_WHEN_FULL as u64),
        ("DAHDI_MAX_NUM_BUFS", abi::MAX_NUM_BUFS as u64),
        ("DAHDI_MAX_BUF_SPACE", abi::MAX_BUF_SPACE as u64),
        ("DAHDI_ALARM_RED", abi::alarm::RED as u64),
        ("DAHDI_ALARM_YELLOW", abi::alarm::YELLOW as u64),
        ("DAHDI_ALARM_BLUE", abi::alarm::BLUE as u64),
        ("DAHDI_LAW_ALAW", abi::LAW_ALAW as u64),
        (
            "sizeof(struct dahdi_params)",
            std::mem::size_of::<abi::Params>() as u64,
        ),
        (
            "sizeof(struct dahdi_spaninfo)",
            std::mem::size_of::<abi::SpanInfo>() as u64,
        ),
        (
            "sizeof(struct dahdi_bufferinfo)",
            std::mem::size_of::<abi::BufferInfo>() as u64,
        ),
        (
            "offsetof(struct dahdi_params, chan_alarms)",
            std::mem::offset_of!(abi::Params, chan_alarms) as u64,
        ),
        (
            "offsetof(struct dahdi_spaninfo, alarms)",
            std::mem::offset_of!(abi::SpanInfo, alarms) as u64,
        ),
        (
            "offsetof(struct dahdi_spaninfo, lineconfig)",
            std::mem::offset_of!(abi::SpanInfo, lineconfig) as u64,
        ),
        (
            "offsetof(struct dahdi_spaninfo, spantype)",
            std::mem::offset_of!(abi::SpanInfo, spantype) as u64,
        ),
    ];
    let checks: Vec<(&str, u32)> = checks
        .iter()
        .map(|&(name, v)| {
            let v =
                u32::try_from(v).unwrap_or_else(|_| panic!("{name}: {v:#x} is wider than 32 bits"));
            (name, v)
        })
        .collect();
    let Some((inc, bad)) = common::mismatches("dahdi_abi", &checks) else {
        return;
    };
    assert!(
        bad.is_empty(),
        "ABI mismatches against {}:\n{}",
        inc.display(),
        bad.join("\n")
    );
    eprintln!(
        "dahdi_abi: {} constants/layouts match {}",
        checks.len(),
        inc.display()
    );
}
