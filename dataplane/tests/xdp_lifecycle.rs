//! The XDP program's lifecycle across process exit and `kill -9`:
//! - held by a BPF link (the default), it is gone as soon as the process
//!   dies, and the next start attaches again;
//! - attached the legacy netlink way, it survives the crash as a stale
//!   program, and the next start removes it and attaches its own;
//! - a program that is not Tandem's is left alone (attach fails: busy);
//! - a running Tandem's program is not stolen by a second start.
//!
//! The crashing process is this test binary re-run on the ignored
//! `child_attach_and_wait` test. Skips (with a message) without root.

mod xdp_netns;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dataplane::clock;
use std::os::fd::AsRawFd;

use dataplane::io::xdp::netlink::{self, Netlink};
use dataplane::io::xdp::{
    attached_program, bpf, AttachMethod, XdpConfig, XdpError, XdpMode, XdpProgram,
};
use xdp_netns::*;

const CHILD_ENV: &str = "TANDEM_XDP_LIFECYCLE_CHILD";

fn config(attach: AttachMethod) -> XdpConfig {
    XdpConfig {
        interface: "xr0".into(),
        queues: vec![0],
        ipv4: Some(RELAY_V4.parse().unwrap()),
        ipv6: None,
        ports: 40_000..=40_099,
        mode: XdpMode::Generic,
        attach,
        zero_copy: false,
        busy_poll: false,
        offload: false,
    }
}

/// Helper process: enter the namespace named in the environment, attach,
/// report the program id on stdout and wait to be killed.
#[test]
#[ignore = "helper process for the lifecycle tests (run by them)"]
fn child_attach_and_wait() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let (ns, method, out) = (
        parts.next().expect("ns"),
        parts.next().expect("method"),
        parts.next().expect("output file"),
    );
    enter(ns);
    let method = if method == "netlink" {
        AttachMethod::Netlink
    } else {
        AttachMethod::Link
    };
    let prog = XdpProgram::attach(&config(method)).expect("child attach");
    let id = attached_program("xr0").unwrap().expect("attached");
    std::fs::write(out, format!("{id}\n")).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let _ = &prog;
    }
}

/// Start the helper and wait for its program id (written to a file: the
/// test harness may capture the helper's stdout).
fn spawn_child(ns: &str, method: &str) -> (Child, u32) {
    let out = std::env::temp_dir().join(format!("{ns}-{method}.id"));
    let _ = std::fs::remove_file(&out);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_attach_and_wait",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{ns}:{method}:{}", out.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = clock::now();
    let id = loop {
        if let Some(id) = std::fs::read_to_string(&out)
            .ok()
            .filter(|s| s.ends_with('\n'))
            .and_then(|s| s.trim().parse().ok())
        {
            break id;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("helper exited before attaching: {st}");
        }
        if clock::now() - t0 > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("helper did not attach in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&out);
    (child, id)
}

/// Poll the attached program of xr0 in `ns` until `want(id)` or 3 s pass.
fn wait_attached(ns: &str, want: impl Fn(Option<u32>) -> bool) -> Option<u32> {
    let t0 = clock::now();
    loop {
        let id = in_ns(ns, || attached_program("xr0").unwrap());
        if want(id) || clock::now() - t0 > Duration::from_secs(3) {
            return id;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn xdp_link_program_gone_after_exit_and_kill() {
    let Some(ns) = Netns::create("lk") else {
        return;
    };
    // Normal exit (drop).
    in_ns(&ns.relay, || {
        let p = XdpProgram::attach(&config(AttachMethod::Link)).unwrap();
        assert!(p.is_link());
        assert!(attached_program("xr0").unwrap().is_some());
        // A second start while this one runs must not steal the interface.
        let e = XdpProgram::attach(&config(AttachMethod::Link)).unwrap_err();
        assert!(matches!(e, XdpError::Busy(..)), "{e}");
        drop(p);
    });
    // The link goes with its last file reference. A child another test
    // forks in this process may hold a copy of that descriptor until it
    // execs (O_CLOEXEC acts only then), so wait for it rather than expect
    // it at once.
    assert_eq!(
        wait_attached(&ns.relay, |i| i.is_none()),
        None,
        "gone after drop"
    );

    // kill -9, then restart.
    let (mut child, id) = spawn_child(&ns.relay, "link");
    assert_eq!(wait_attached(&ns.relay, |i| i == Some(id)), Some(id));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        wait_attached(&ns.relay, |i| i.is_none()),
        None,
        "BPF link released by the kernel when the process died"
    );
    in_ns(&ns.relay, || {
        let p = XdpProgram::attach(&config(AttachMethod::Link)).expect("restart attaches");
        assert!(attached_program("xr0").unwrap().is_some());
        drop(p);
    });
    assert_eq!(
        wait_attached(&ns.relay, |i| i.is_none()),
        None,
        "gone after the restarted one's drop"
    );
}

#[test]
fn xdp_stale_program_removed_on_restart() {
    let Some(ns) = Netns::create("st") else {
        return;
    };
    let (mut child, id) = spawn_child(&ns.relay, "netlink");
    assert_eq!(wait_attached(&ns.relay, |i| i == Some(id)), Some(id));
    child.kill().unwrap();
    child.wait().unwrap();
    // A netlink attachment outlives its process: this is the stale case.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        in_ns(&ns.relay, || attached_program("xr0").unwrap()),
        Some(id),
        "legacy attach survives kill -9"
    );
    in_ns(&ns.relay, || {
        let p = XdpProgram::attach(&config(AttachMethod::Link)).expect("restart attaches");
        let now = attached_program("xr0").unwrap();
        assert!(
            now.is_some() && now != Some(id),
            "stale {id} replaced: {now:?}"
        );
        drop(p);
    });
    assert_eq!(
        wait_attached(&ns.relay, |i| i.is_none()),
        None,
        "gone after exit"
    );

    // Netlink attach detaches on drop too.
    in_ns(&ns.relay, || {
        let p = XdpProgram::attach(&config(AttachMethod::Netlink)).unwrap();
        assert!(!p.is_link());
        assert!(attached_program("xr0").unwrap().is_some());
        drop(p);
        assert_eq!(attached_program("xr0").unwrap(), None);
    });
}

#[test]
fn xdp_foreign_program_left_alone() {
    let Some(ns) = Netns::create("fo") else {
        return;
    };
    in_ns(&ns.relay, || {
        let foreign = bpf::load_named(&bpf::pass_all(), "other_xdp").unwrap();
        let ifindex = netlink::ifindex("xr0").unwrap();
        let mut nl = Netlink::open().unwrap();
        nl.set_xdp(ifindex, foreign.as_raw_fd(), netlink::XDP_FLAGS_SKB_MODE)
            .unwrap();
        let held = attached_program("xr0").unwrap();
        assert!(held.is_some());
        for method in [AttachMethod::Link, AttachMethod::Netlink] {
            let e = XdpProgram::attach(&config(method)).unwrap_err();
            assert!(matches!(e, XdpError::Busy(..)), "{e}");
            assert!(e.to_string().contains("other_xdp"), "{e}");
            assert_eq!(attached_program("xr0").unwrap(), held, "left in place");
        }
        nl.set_xdp(ifindex, -1, netlink::XDP_FLAGS_SKB_MODE)
            .unwrap();
        assert_eq!(attached_program("xr0").unwrap(), None);
    });
}
