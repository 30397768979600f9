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

const NO_DAD: &str = "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad; \
    echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad";

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

/// Gives a test's receiving socket an 8 MiB receive buffer (SO_RCVBUFFORCE,
/// root only; the default ~200 KiB holds only a few hundred small datagrams),
/// so a receiving thread the loaded machine does not schedule for a while
/// loses nothing: a relay test counts every packet.
pub fn deep_rcvbuf(sock: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: a valid socket fd and a c_int option value of the given length.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

/// Sets the flag when dropped: a test thread that panics still stops the
/// worker thread it scoped (else `thread::scope` waits for it forever).
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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
            // No duplicate address detection: addresses (link-local ones
            // too) usable at once, so neighbour discovery is not delayed.
            &["netns", "exec", r, "sh", "-c", NO_DAD],
            &["netns", "exec", p, "sh", "-c", NO_DAD],
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
        // Until link-watch has activated both ends (operstate UP), frames
        // sent are dropped: a first ARP/NDP probe lost there delays the
        // resolution by a second.
        for (ns, dev) in [(r, "xr0"), (p, "xp0")] {
            if !wait_up(ns, dev) {
                eprintln!("skipped: {dev} in {ns} did not come up");
                return None;
            }
        }
        Some(n)
    }
}

/// Wait (up to 5 s) until `dev` in namespace `ns` reports state UP.
pub fn wait_up(ns: &str, dev: &str) -> bool {
    for _ in 0..500 {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "link", "show", dev])
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("state UP")) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
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

/// Send one ICMP (v4) or ICMPv6 echo request to `dst` from the calling
/// thread's namespace over a raw socket, and wait up to 2 s for the reply.
pub fn icmp_echo(dst: std::net::IpAddr) -> std::io::Result<bool> {
    use std::net::IpAddr;
    let v6 = dst.is_ipv6();
    let (fam, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: socket() takes no pointers.
    let fd = unsafe { libc::socket(fam, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by no one else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a live timeval of the given size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let id: u16 = 0x7d31;
    let mut req = [0u8; 16];
    req[0] = if v6 { 128 } else { 8 };
    req[4..6].copy_from_slice(&id.to_be_bytes());
    req[6..8].copy_from_slice(&1u16.to_be_bytes());
    req[8..16].copy_from_slice(b"tandem!!");
    if !v6 {
        // ICMPv6 checksums are filled in by the kernel; ICMP's are ours.
        let mut sum: u32 = req
            .chunks_exact(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        req[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match dst {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe {
                std::ptr::addr_of_mut!(ss)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe {
                std::ptr::addr_of_mut!(ss)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `req` and `ss` are live for the call with the lengths given.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            std::ptr::addr_of!(ss).cast(),
            len as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = [0u8; 1500];
    for _ in 0..32 {
        // SAFETY: `buf` is live and writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Ok(false); // timeout
        }
        let n = n as usize;
        // Raw IPv4 sockets deliver the IP header too.
        let at = if v6 {
            0
        } else {
            usize::from(buf[0] & 0x0f) * 4
        };
        let Some(icmp) = buf.get(at..n) else { continue };
        let reply = if v6 { 129 } else { 0 };
        if icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == id.to_be_bytes() {
            return Ok(true);
        }
    }
    Ok(false)
}
