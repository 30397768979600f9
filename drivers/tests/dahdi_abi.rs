//! Checks `drivers::dahdi::abi` against the DAHDI C headers (`dahdi/user.h`).
//!
//! The headers come with Debian's `dahdi-source` (a tarball under
//! /usr/src) or `dahdi-dkms` (/usr/src/dahdi-*/include). Set
//! `DAHDI_INCLUDE` to a directory holding `dahdi/user.h` to point at others.
//! Skips with a message when no header or no C compiler is found.

use std::path::{Path, PathBuf};
use std::process::Command;

use drivers::dahdi::abi::{self, req};

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
fn abi_matches_c_headers() {
    let tmp = std::env::temp_dir().join(format!("tandem-dahdi-abi-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let Some(inc) = find_include(&tmp) else {
        eprintln!(
            "SKIP dahdi_abi: no DAHDI headers (apt-get install dahdi-source, or set DAHDI_INCLUDE)"
        );
        return;
    };
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
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <dahdi/user.h>\nint main(void){\n",
    );
    for (expr, _) in &checks {
        c.push_str(&format!(
            "printf(\"%llu\\n\", (unsigned long long)(unsigned int)({expr}));\n"
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
            eprintln!("SKIP dahdi_abi: no C compiler ({cc}: {e})");
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
    let got: Vec<u64> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(got.len(), checks.len());
    let mut bad = Vec::new();
    for ((name, ours), theirs) in checks.iter().zip(&got) {
        if ours != theirs {
            bad.push(format!("{name}: ours {ours:#x}, header {theirs:#x}"));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
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
