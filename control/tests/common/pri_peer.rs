//! libpri's `pri-peer` (`../shared/peers/pri-peer`), the far end of the
//! ISDN interop tests: built once per test binary with the C compiler and
//! `-lpri` (Debian `libpri-dev`) into a private temporary directory, and
//! spawned. Included with `#[path = "common/pri_peer.rs"] mod pri_peer;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::Duration;

const SRC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/pri-peer/pri-peer.c"
);

/// The built `pri-peer`, or `None` after a `SKIP` line naming `test` (no
/// source, no C compiler, no libpri). Built once per test binary: tests run
/// in parallel, and a second link into a path another test is executing
/// fails.
pub fn build(test: &str) -> Option<PathBuf> {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match EXE.get_or_init(build_once) {
        Ok(exe) => Some(exe.clone()),
        Err(why) => {
            eprintln!("SKIP {test}: {why}");
            None
        }
    }
}

fn build_once() -> Result<PathBuf, String> {
    if !Path::new(SRC).exists() {
        return Err(format!("{SRC} not found"));
    }
    let dir = std::env::temp_dir().join(format!("tandem-pri-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = dir.join("pri-peer");
    // Linked under another name and renamed: nobody ever executes a file
    // that is still being written.
    let tmp = dir.join("pri-peer.partial");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-O2", "-std=gnu99", "-o"])
        .arg(&tmp)
        .arg(SRC)
        .arg("-lpri")
        .output()
        .map_err(|e| format!("no C compiler ({cc}: {e})"))?;
    if !out.status.success() {
        return Err(format!(
            "pri-peer build failed (apt-get install libpri-dev): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&tmp, &exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    Ok(exe)
}

/// Spawns `cmd`, retrying briefly while the executable is busy (ETXTBSY: a
/// parallel test's fork may still hold a descriptor of it).
pub fn spawn(cmd: &mut Command) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.expect("spawn pri-peer"),
        }
    }
}
