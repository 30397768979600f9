//! Shared by the ABI tests: finds DAHDI's C header `dahdi/user.h` and
//! compares values of C expressions against ours.
//!
//! The header comes with Debian's `dahdi-source` (a tarball under /usr/src,
//! only its include directory is extracted into a private temporary
//! directory) or `dahdi-dkms` (/usr/src/dahdi-*/include); `DAHDI_INCLUDE`
//! points at another directory holding `dahdi/user.h`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Values that differ from the header's, as `name: ours .., header ..`
/// lines, with the include directory used; `None` (after a `SKIP` line
/// naming `test`) when there is no header or no C compiler. Each check is
/// a C expression and our value, compared as the 32-bit pattern the kernel
/// sees (`(unsigned int)(expr)`).
pub fn mismatches(test: &str, checks: &[(&str, u32)]) -> Option<(PathBuf, Vec<String>)> {
    let tmp = std::env::temp_dir().join(format!("tandem-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temporary directory");
    let result = compare(test, &tmp, checks);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn compare(test: &str, tmp: &Path, checks: &[(&str, u32)]) -> Option<(PathBuf, Vec<String>)> {
    let Some(inc) = find_include(tmp) else {
        eprintln!(
            "SKIP {test}: no DAHDI headers (apt-get install dahdi-source, or set DAHDI_INCLUDE)"
        );
        return None;
    };
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <dahdi/user.h>\nint main(void){\n",
    );
    for (expr, _) in checks {
        c.push_str(&format!("printf(\"%u\\n\", (unsigned int)({expr}));\n"));
    }
    c.push_str("return 0;}\n");
    let src = tmp.join("abi.c");
    let exe = tmp.join("abi");
    std::fs::write(&src, c).expect("write abi.c");
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
            eprintln!("SKIP {test}: no C compiler ({cc}: {e})");
            return None;
        }
    };
    assert!(
        st.status.success(),
        "compiling against {}: {}",
        inc.display(),
        String::from_utf8_lossy(&st.stderr)
    );
    let out = Command::new(&exe).output().expect("run the compiled check");
    let text = String::from_utf8(out.stdout).expect("numbers");
    let got: Vec<u32> = text
        .lines()
        .map(|l| l.trim().parse().expect("an unsigned number"))
        .collect();
    assert_eq!(got.len(), checks.len(), "one line per check");
    let bad = checks
        .iter()
        .zip(&got)
        .filter(|((_, ours), theirs)| ours != *theirs)
        .map(|((name, ours), theirs)| format!("{name}: ours {ours:#x}, header {theirs:#x}"))
        .collect();
    Some((inc, bad))
}

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
