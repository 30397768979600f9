//! Checks `drivers::analog::abi` (hook operations, events, signalling types,
//! analog request numbers, `struct dahdi_ring_cadence`) and the `system.conf`
//! key -> `DAHDI_SIG_*` mapping against the DAHDI C header `dahdi/user.h`,
//! found as `dahdi_abi.rs` finds it (DAHDI_INCLUDE, dahdi-dkms, or the
//! dahdi-source tarball). Skips with a message without headers or a C compiler.

use std::path::{Path, PathBuf};
use std::process::Command;

use drivers::analog::abi::{event, hook, req, sig, RingCadence};
use drivers::analog::{Event, PortKind, Signalling};

fn find_include(tmp: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DAHDI_INCLUDE") {
        return Some(PathBuf::from(p));
    }
    let entries = std::fs::read_dir("/usr/src").ok()?;
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name()?.to_string_lossy().to_string();
        if name.starts_with("dahdi") && p.join("include/dahdi/user.h").exists() {
            return Some(p.join("include"));
        }
        if name.starts_with("dahdi") && name.ends_with(".tar.bz2") {
            // dahdi-source: extract only the include directory.
            let ok = Command::new("tar")
                .args(["-xjf"])
                .arg(&p)
                .arg("-C")
                .arg(tmp)
                .args(["--wildcards", "*/include/dahdi/*"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                for e in walk(tmp) {
                    if e.ends_with("include/dahdi/user.h") {
                        return e.parent()?.parent().map(Path::to_path_buf);
                    }
                }
            }
        }
    }
    None
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn analog_abi_matches_c_headers() {
    let tmp = std::env::temp_dir().join(format!("tandem-analog-abi-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let Some(inc) = find_include(&tmp) else {
        eprintln!(
            "SKIP analog_dahdi_abi: no DAHDI headers (apt-get install dahdi-source, or set DAHDI_INCLUDE)"
        );
        return;
    };
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
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <dahdi/user.h>\nint main(void){\n",
    );
    for (expr, _) in &checks {
        c.push_str(&format!(
            "printf(\"%lld\\n\", (long long)(unsigned int)({expr}));\n"
        ));
    }
    c.push_str("return 0;}\n");
    let src = tmp.join("abi.c");
    let exe = tmp.join("abi");
    std::fs::write(&src, c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = match Command::new(&cc)
        .arg("-I")
        .arg(&inc)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP analog_dahdi_abi: no C compiler ({cc}: {e})");
            return;
        }
    };
    assert!(
        st.status.success(),
        "compiling against {}: {}",
        inc.display(),
        String::from_utf8_lossy(&st.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let got: Vec<i64> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(got.len(), checks.len());
    let mut bad = Vec::new();
    for ((name, ours), theirs) in checks.iter().zip(&got) {
        // Compare as the 32-bit pattern the kernel sees.
        if (*ours as u32) != (*theirs as u32) {
            bad.push(format!("{name}: ours {ours:#x}, header {theirs:#x}"));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
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
