//! Network namespaces for the AF_XDP tests: a `relay` namespace and a `peer`
//! namespace joined by a veth pair (`xr0` in the relay, `xp0` at the peer),
//! made with iproute2 and deleted on drop. Code runs inside a namespace on a
//! thread that `setns`-es into it; sockets keep their namespace afterwards,
//! so they can be handed back to any thread.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// Relay addresses.
pub const RELAY_V4: &str = "10.231.0.2";
pub const RELAY_V6: &str = "fd31::2";
/// Phone A and phone B addresses at the peer.
pub const PHONE_A_V4: &str = "10.231.0.1";
pub const PHONE_B_V4: &str = "10.231.0.3";
pub const PHONE_A_V6: &str = "fd31::1";
pub const PHONE_B_V6: &str = "fd31::3";

pub struct Netns {
    pub relay: String,
    pub peer: String,
}

/// Run `ip args...`, true on success.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True if running as root; otherwise print a skip message.
pub fn root_or_skip() -> bool {
    let root = is_root();
    if !root {
        eprintln!("skipped: AF_XDP tests need root");
    }
    root
}

impl Netns {
    /// Create the pair of namespaces (names carry `tag` and the pid), or
    /// print why not and return None (not root, no iproute2, no netns).
    pub fn create(tag: &str) -> Option<Netns> {
        if !is_root() {
            eprintln!("skipped: AF_XDP tests need root (network namespaces, XDP)");
            return None;
        }
        if !ip(&["-V"]) {
            eprintln!("skipped: iproute2 `ip` not found");
            return None;
        }
        let pid = std::process::id();
        let n = Netns {
            relay: format!("tdx-{tag}-r{pid}"),
            peer: format!("tdx-{tag}-p{pid}"),
        };
        let (r, p) = (n.relay.as_str(), n.peer.as_str());
        let steps: &[&[&str]] = &[
            &["netns", "add", r],
            &["netns", "add", p],
            &[
                "link", "add", "xr0", "netns", r, "type", "veth", "peer", "name", "xp0", "netns", p,
            ],
            &["-n", r, "addr", "add", "10.231.0.2/24", "dev", "xr0"],
            &["-n", r, "addr", "add", "fd31::2/64", "dev", "xr0", "nodad"],
            &["-n", p, "addr", "add", "10.231.0.1/24", "dev", "xp0"],
            &["-n", p, "addr", "add", "10.231.0.3/24", "dev", "xp0"],
            &["-n", p, "addr", "add", "fd31::1/64", "dev", "xp0", "nodad"],
            &["-n", p, "addr", "add", "fd31::3/64", "dev", "xp0", "nodad"],
            &["-n", r, "link", "set", "lo", "up"],
            &["-n", p, "link", "set", "lo", "up"],
            &["-n", r, "link", "set", "xr0", "up"],
            &["-n", p, "link", "set", "xp0", "up"],
        ];
        for s in steps {
            if !ip(s) {
                eprintln!(
                    "skipped: `ip {}` failed (no network namespaces here?)",
                    s.join(" ")
                );
                return None; // `n` drops: namespaces made so far are deleted
            }
        }
        Some(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.relay]);
        ip(&["netns", "del", &self.peer]);
    }
}

/// Move the calling thread into namespace `ns`.
pub fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    use std::os::fd::AsRawFd;
    // SAFETY: `f` is an open namespace file for the duration of the call;
    // setns only changes the calling thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Run `f` on a new thread inside namespace `ns` and return its result.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}
