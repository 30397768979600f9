//! A pass-all XDP program for the *other* end of a veth pair: veth hands
//! `XDP_TX` frames (the in-kernel fast path's output) to its peer end only
//! when that end runs NAPI, which an attached XDP program turns on. Real
//! NICs need nothing of the kind. Used by the tests and benchmarks on veth
//! pairs; operators of veth/container deployments attach the equivalent
//! (`tandem-xdpgen peer --action pass`).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use super::{bpf, netlink};

/// Name of the pass-all program (not [`bpf::PROG_NAME`]: Tandem's stale
/// program clean-up leaves it alone).
pub const PASS_NAME: &str = "tandem_peer";

/// Attach a pass-all XDP program (native mode) to `ifname` in the network
/// namespace whose file is `netns` (`/var/run/netns/NAME`), or in the
/// caller's when `None`. The program stays attached as long as the
/// returned link fd is open.
pub fn attach_pass(netns: Option<&Path>, ifname: &str) -> io::Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(ns) = netns {
                let f = std::fs::File::open(ns)?;
                // SAFETY: `f` is an open file for the whole call; setns only
                // moves this (short-lived, scoped) thread into its network
                // namespace.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let prog = bpf::load_named(&bpf::pass_all(), PASS_NAME).map_err(io::Error::other)?;
            let ifindex = netlink::ifindex(ifname)?;
            bpf::link_create(prog.as_fd(), ifindex, netlink::XDP_FLAGS_DRV_MODE)
        })
        .join()
        .map_err(|_| io::Error::other("peer program thread panicked"))?
    })
}
