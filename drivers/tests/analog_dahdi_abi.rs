//! Checks `drivers::analog::abi` (hook operations, events, signalling types,
//! analog request numbers, `struct dahdi_ring_cadence`) and the `system.conf`
//! key -> `DAHDI_SIG_*` mapping against the DAHDI C header `dahdi/user.h`,
//! found as `dahdi_abi.rs` finds it (DAHDI_INCLUDE, dahdi-dkms, or the
//! dahdi-source tarball). Skips with a message without headers or a C compiler.

mod common;

use drivers::analog::abi::{event, hook, req, sig, RingCadence};
use drivers::analog::{Event, PortKind, Signalling};

#[test]
fn analog_abi_matches_c_headers() {
    let mut checks: Vec<(&str, i64)> = vec![
        ("DAHDI_ONHOOK", hook::ONHOOK.into()),
        ("DAHDI_OFFHOOK", hook::OFFHOOK.into()),
        ("DAHDI_WINK", hook::WINK.into()),
        ("DAHDI_FLASH", hook::FLASH.into()),
        ("DAHDI_START", hook::START.into()),
        ("DAHDI_RING", hook::RING.into()),
        ("DAHDI_RINGOFF", hook::RINGOFF.into()),
        ("DAHDI_EVENT_NONE", event::NONE.into()),
        ("DAHDI_EVENT_ONHOOK", event::ONHOOK.into()),
        ("DAHDI_EVENT_RINGOFFHOOK", event::RINGOFFHOOK.into()),
        ("DAHDI_EVENT_WINKFLASH", event::WINKFLASH.into()),
        ("DAHDI_EVENT_ALARM", event::ALARM.into()),
        ("DAHDI_EVENT_NOALARM", event::NOALARM.into()),
        ("DAHDI_EVENT_DIALCOMPLETE", event::DIALCOMPLETE.into()),
        ("DAHDI_EVENT_RINGERON", event::RINGERON.into()),
        ("DAHDI_EVENT_RINGEROFF", event::RINGEROFF.into()),
        ("DAHDI_EVENT_HOOKCOMPLETE", event::HOOKCOMPLETE.into()),
        ("DAHDI_EVENT_PULSE_START", event::PULSE_START.into()),
        ("DAHDI_EVENT_POLARITY", event::POLARITY.into()),
        ("DAHDI_EVENT_RINGBEGIN", event::RINGBEGIN.into()),
        ("DAHDI_EVENT_REMOVED", event::REMOVED.into()),
        ("DAHDI_EVENT_PULSEDIGIT", event::PULSEDIGIT.into()),
        ("DAHDI_EVENT_DTMFDOWN", event::DTMFDOWN.into()),
        ("DAHDI_EVENT_DTMFUP", event::DTMFUP.into()),
        ("DAHDI_SIG_FXSLS", sig::FXSLS.into()),
        ("DAHDI_SIG_FXSGS", sig::FXSGS.into()),
        ("DAHDI_SIG_FXSKS", sig::FXSKS.into()),
        ("DAHDI_SIG_FXOLS", sig::FXOLS.into()),
        ("DAHDI_SIG_FXOGS", sig::FXOGS.into()),
        ("DAHDI_SIG_FXOKS", sig::FXOKS.into()),
        ("DAHDI_SETTONEZONE", req::SETTONEZONE.into()),
        ("DAHDI_SETCADENCE", req::SETCADENCE.into()),
        ("DAHDI_ONHOOKTRANSFER", req::ONHOOKTRANSFER.into()),
        ("DAHDI_SETPOLARITY", req::SETPOLARITY.into()),
        ("DAHDI_HOOK", drivers::dahdi::abi::req::HOOK.into()),
        (
            "sizeof(struct dahdi_ring_cadence)",
            std::mem::size_of::<RingCadence>() as i64,
        ),
    ];
    // Each system.conf key's signalling value, and the FXS/FXO swap: the
    // header's FXO signalling bit goes with an FXS port.
    let keys: Vec<(String, i64)> = Signalling::ALL
        .iter()
        .map(|s| {
            (
                format!("DAHDI_SIG_{}", s.conf_key().to_ascii_uppercase()),
                i64::from(s.dahdi_sig()),
            )
        })
        .collect();
    for (k, v) in &keys {
        checks.push((k.as_str(), *v));
    }
    for s in Signalling::ALL {
        let fxo_bit = s.dahdi_sig() & sig::FXO != 0;
        assert_eq!(fxo_bit, s.port_kind() == PortKind::Fxs, "{s:?}");
    }
    // Every event we map round-trips through its DAHDI code.
    assert_eq!(
        Event::from_dahdi(event::RINGOFFHOOK, PortKind::Fxs),
        Some(Event::OffHook)
    );
    let checks: Vec<(&str, u32)> = checks
        .iter()
        // Two's complement: the 32-bit pattern the kernel sees.
        .map(|&(name, v)| (name, v as u32))
        .collect();
    let Some((inc, bad)) = common::mismatches("analog_dahdi_abi", &checks) else {
        return;
    };
    assert!(
        bad.is_empty(),
        "analog ABI mismatches against {}:\n{}",
        inc.display(),
        bad.join("\n")
    );
    eprintln!(
        "analog_dahdi_abi: {} constants match {}",
        checks.len(),
        inc.display()
    );
}
