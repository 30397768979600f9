//! The appliance's unit files pass `systemd-analyze verify`: no unknown key, no bad value, the
//! binaries they start exist. The installed paths (`/usr/local/bin/...`) are pointed at the
//! binaries this build made, in a copy of each unit. A deliberately broken copy shows the
//! check can fail.

use std::path::{Path, PathBuf};
use std::process::Command;

fn units_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd")).to_path_buf()
}

/// `systemd-analyze verify UNIT`: exit status and the diagnostics that name the unit.
fn verify(unit: &Path) -> (bool, Vec<String>) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    let name = unit.file_name().unwrap().to_string_lossy().to_string();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // Other units on the machine may warn too; keep what is about ours.
    let ours = text
        .lines()
        .filter(|l| l.contains(&name))
        .map(str::to_string)
        .collect();
    (out.status.success(), ours)
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: systemd-analyze not installed (apt-get install systemd)");
        return;
    }
    let Some(bin_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.to_path_buf()))
        .filter(|d| d.join("tandemd").exists())
    else {
        eprintln!("SKIP: tandemd not built beside this test (cargo build -p control --release)");
        return;
    };
    let tmp = std::env::temp_dir().join(format!("tandem-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut units = Vec::new();
    for e in std::fs::read_dir(units_dir()).expect("systemd/ directory") {
        let p = e.unwrap().path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        if ["service", "socket", "timer", "target", "path"].contains(&ext) {
            units.push(p);
        }
    }
    assert!(!units.is_empty(), "no unit in systemd/");
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        let local = text.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()));
        let copy = tmp.join(unit.file_name().unwrap());
        std::fs::write(&copy, &local).unwrap();
        let (ok, diags) = verify(&copy);
        assert!(
            ok && diags.is_empty(),
            "{}: systemd-analyze verify: {diags:#?}",
            unit.display()
        );
        // The check bites: an unknown key and a bad value in the same unit are reported.
        let broken = tmp.join(format!(
            "broken-{}",
            unit.file_name().unwrap().to_string_lossy()
        ));
        let bad = local.replacen(
            "[Service]\n",
            "[Service]\nRestartt=always\nTimeoutStopSec=soon\n",
            1,
        );
        if bad != local {
            std::fs::write(&broken, bad).unwrap();
            let (_, diags) = verify(&broken);
            assert!(
                diags.iter().any(|l| l.contains("Restartt")),
                "the broken copy was not flagged: {diags:#?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
