//! The `xdp` backend: one AF_XDP socket per worker, bound to one NIC queue,
//! fed by a small XDP program that Tandem loads and attaches itself.
//!
//! Layers:
//! - [`bpf`]: the XDP program (assembled from eBPF instructions here) and the
//!   `bpf(2)` calls: load, XSKMAP, BPF link.
//! - [`netlink`]: interface MAC, attached program, legacy attach/detach,
//!   route and neighbour lookups.
//! - [`xsk`]: the AF_XDP socket, its UMEM and rings.
//! - [`frame`]: Ethernet/IP/UDP parse and build with checksums (pure).
//! - [`offload`]: the in-kernel fast path's table (`xdp_offload`): a
//!   latched plain relay stream the worker hands over with
//!   [`Backend::offload`] is forwarded by the program itself (`XDP_TX`)
//!   once the hand-over completes (the entry is pending until the worker
//!   has sent the stream's last frame it was given: order is kept); the
//!   worker reads its counters every [`crate::worker::OFFLOAD_POLL`].
//!
//! Lifecycle: [`XdpProgram::attach`] (once per interface, shared by the
//! workers through an `Arc`) removes a stale program of ours left by a
//! crashed process, loads the program and attaches it with a BPF link, so
//! the kernel detaches it when the last fd closes: on drop, on exit and on
//! `kill -9`. Each worker then opens an [`XdpBackend`] on its own thread for
//! its queue, which puts its socket into the program's XSKMAP.
//!
//! Packet path: the program redirects only UDP to the configured media
//! address in the RTP port range; the backend copies each UDP payload into the
//! worker's [`Batch`] tagged with the token of the registered socket owning
//! that port, learning the sender's MAC on the way. Sending builds
//! Ethernet/IP/UDP in a UMEM frame; the next hop's MAC comes from what was
//! learned, else from the kernel's route and neighbour tables (IPv4 and
//! IPv6, one `RTM_GETNEIGH` per lookup). A datagram whose next hop is unknown
//! (or routed out of another interface) is sent through the registered
//! kernel socket instead, which also makes the kernel resolve the neighbour;
//! lookups are retried after 1, 2, 4 ... 32 packets. Order is kept on first
//! contact: once datagrams to a peer went through the kernel, a MAC learned
//! from the peer's own frames is used only when the kernel's neighbour entry
//! is valid too (so none the kernel still holds while resolving can be
//! overtaken), or after [`CONFIRM_LIMIT`] packets if the kernel never
//! resolves it.
//! The registered sockets stay
//! polled, so anything the program passes to the kernel (another queue,
//! IPv4 options, fragments) is still received.
//!
//! Ports without sockets ([`reserve`]): by default the dataplane binds no
//! kernel socket per media port with this backend (4 per call would cap a
//! usual `RLIMIT_NOFILE` of 20 000 near 4 400 calls); it reserves the RTP
//! range in the namespace instead and registers each port with
//! [`Backend::register_port`]. Such a port receives only what the program
//! redirects (the kernel answers anything else for it with ICMP port
//! unreachable) and sends through a raw socket per worker ([`rawtx`]) where
//! the other ports would use their own socket. When the reservation cannot
//! be made the dataplane binds sockets as before and logs why.
#![allow(unsafe_code)]

pub mod bpf;
pub mod frame;
pub mod live;
pub mod netlink;
pub mod offload;
pub mod peer;
pub mod rawtx;
pub mod reserve;
pub mod xsk;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::sys::{Epoll, Mmsg};
use super::{Backend, Batch, SendStats, Token};
use frame::Mac;
use netlink::Netlink;

/// How to attach the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

/// How the attachment is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMethod {
    /// A BPF link: detached by the kernel when Tandem exits or dies.
    #[default]
    Link,
    /// The legacy netlink attach: survives a crash until the next start
    /// removes it (kernels without XDP links; tests of stale removal).
    Netlink,
}

/// Configuration of the `xdp` backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpConfig {
    /// Interface carrying the media.
    pub interface: String,
    /// NIC queue of each worker (worker `i` binds `queues[i]`).
    pub queues: Vec<u32>,
    /// Media address (IPv4) redirected to the workers, if any.
    pub ipv4: Option<Ipv4Addr>,
    /// Media address (IPv6) redirected to the workers, if any.
    pub ipv6: Option<Ipv6Addr>,
    /// RTP/RTCP port range of this host.
    pub ports: RangeInclusive<u16>,
    pub mode: XdpMode,
    pub attach: AttachMethod,
    /// Ask for zero-copy binding where the driver allows it.
    pub zero_copy: bool,
    /// Preferred busy polling on the sockets.
    pub busy_poll: bool,
    /// Load the in-kernel fast path ([`offload`]): latched plain relay
    /// streams are rewritten and sent back out by the program itself.
    pub offload: bool,
}

/// Process-wide default of [`XdpConfig::offload`] for the dataplane's own
/// start-up (`[dataplane] xdp_offload`, set before `Dataplane::start`).
static OFFLOAD_DEFAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Set the default of [`XdpConfig::offload`] used by `Dataplane::start`.
pub fn set_offload(on: bool) {
    OFFLOAD_DEFAULT.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The offload default: [`set_offload`]'s value, overridden by the
/// environment variable `TANDEM_XDP_OFFLOAD=0|1` when set (benchmarks).
pub fn offload_enabled() -> bool {
    match std::env::var("TANDEM_XDP_OFFLOAD").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => OFFLOAD_DEFAULT.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Errors of the `xdp` backend, each naming the step that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdpError {
    /// Operator: bad configuration.
    #[error("xdp config: {0}")]
    Config(String),
    /// Operator/host: the interface does not exist or cannot be queried.
    #[error("xdp interface {0}: {1}")]
    Interface(String, io::Error),
    /// Host: another XDP program (not Tandem's) is attached, or Tandem's is
    /// held by a running process.
    #[error("xdp interface {0} busy: {1}")]
    Busy(String, String),
    /// Host: the kernel refused the program (verifier log included).
    #[error("xdp program load: {0}")]
    Load(String),
    /// Host: a bpf()/netlink/AF_XDP call failed.
    #[error("xdp {0}: {1}")]
    Sys(&'static str, io::Error),
}

impl From<XdpError> for io::Error {
    fn from(e: XdpError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> XdpError {
    move |e| XdpError::Sys(what, e)
}

/// The XDP program attached to one interface, with its XSKMAP. Dropping it
/// (the last `Arc`) detaches the program.
pub struct XdpProgram {
    ifname: String,
    ifindex: u32,
    mac: Mac,
    config: XdpConfig,
    map: OwnedFd,
    /// The fast path's table (when `config.offload` and the kernel has
    /// mmapable arrays).
    offload: Option<offload::OffloadMap>,
    /// Kept for the legacy attach (and as the link's program).
    _prog: OwnedFd,
    link: Option<OwnedFd>,
    /// Flags used for a netlink attach, to detach the same way.
    netlink_flags: Option<u32>,
    /// Mode the program ended up in (`Native` or `Generic`).
    pub mode: XdpMode,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Id of the XDP program attached to `ifname` (in the calling thread's
/// network namespace), if any.
pub fn attached_program(ifname: &str) -> Result<Option<u32>, XdpError> {
    let ifindex =
        netlink::ifindex(ifname).map_err(|e| XdpError::Interface(ifname.to_owned(), e))?;
    let mut nl = Netlink::open().map_err(sys("netlink socket"))?;
    let info = nl
        .link(ifindex)
        .map_err(|e| XdpError::Interface(ifname.to_owned(), e))?;
    Ok(info.xdp.map(|a| a.prog_id))
}

/// Check that the `xdp` backend can run on `ifname` here: the interface
/// exists, AF_XDP sockets can be made, and the kernel accepts our program.
pub fn probe(ifname: &str) -> Result<(), String> {
    netlink::ifindex(ifname).map_err(|e| format!("interface {ifname}: {e}"))?;
    xsk::socket().map_err(|e| format!("AF_XDP socket: {e}"))?;
    let map = bpf::create_xskmap(1).map_err(|e| format!("XSKMAP: {e}"))?;
    let filter = bpf::Filter {
        ipv4: Some(Ipv4Addr::LOCALHOST),
        ipv6: Some(Ipv6Addr::LOCALHOST),
        ports: 1..=2,
    };
    bpf::load(&bpf::program(&filter, map.as_raw_fd()))?;
    Ok(())
}

impl XdpProgram {
    /// Load the program for `config` and attach it to its interface, in the
    /// calling thread's network namespace. A stale program of ours left
    /// attached by a crashed process is removed first; any other program
    /// makes this fail with [`XdpError::Busy`].
    pub fn attach(config: &XdpConfig) -> Result<Arc<XdpProgram>, XdpError> {
        if config.ipv4.is_none() && config.ipv6.is_none() {
            return Err(XdpError::Config("no media address (ipv4 or ipv6)".into()));
        }
        if config.queues.is_empty() {
            return Err(XdpError::Config("no queue ids".into()));
        }
        if config.ports.is_empty() {
            return Err(XdpError::Config("empty port range".into()));
        }
        let name = &config.interface;
        let ifindex = netlink::ifindex(name).map_err(|e| XdpError::Interface(name.clone(), e))?;
        let mut nl = Netlink::open().map_err(sys("netlink socket"))?;
        let info = nl
            .link(ifindex)
            .map_err(|e| XdpError::Interface(name.clone(), e))?;
        if let Some(att) = info.xdp {
            remove_stale(&mut nl, name, ifindex, att)?;
        }

        let entries = config.queues.iter().max().map_or(1, |m| m + 1);
        let map = bpf::create_xskmap(entries).map_err(sys("XSKMAP create"))?;
        let filter = bpf::Filter {
            ipv4: config.ipv4,
            ipv6: config.ipv6,
            ports: config.ports.clone(),
        };
        let table = if config.offload {
            match offload::OffloadMap::create(config.ports.clone()) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(interface = %name, error = %e, "XDP offload table unavailable: no in-kernel fast path");
                    None
                }
            }
        } else {
            None
        };
        let insns = bpf::program_with_offload(
            &filter,
            map.as_raw_fd(),
            table.as_ref().map(|t| t.fd().as_raw_fd()),
        );
        let prog = bpf::load(&insns).map_err(XdpError::Load)?;

        let modes: &[(XdpMode, u32)] = match config.mode {
            XdpMode::Auto => &[
                (XdpMode::Native, netlink::XDP_FLAGS_DRV_MODE),
                (XdpMode::Generic, netlink::XDP_FLAGS_SKB_MODE),
            ],
            XdpMode::Native => &[(XdpMode::Native, netlink::XDP_FLAGS_DRV_MODE)],
            XdpMode::Generic => &[(XdpMode::Generic, netlink::XDP_FLAGS_SKB_MODE)],
        };
        let mut last = None;
        for &(mode, flags) in modes {
            let res = match config.attach {
                AttachMethod::Link => {
                    bpf::link_create(prog.as_fd(), ifindex, flags).map(|l| (Some(l), None))
                }
                AttachMethod::Netlink => nl
                    // XDP_FLAGS_UPDATE_IF_NOEXIST: never replace a program.
                    .set_xdp(ifindex, prog.as_raw_fd(), flags | 1)
                    .map(|()| (None, Some(flags))),
            };
            match res {
                Ok((link, netlink_flags)) => {
                    return Ok(Arc::new(XdpProgram {
                        ifname: name.clone(),
                        ifindex,
                        mac: info.mac,
                        config: config.clone(),
                        map,
                        offload: table,
                        _prog: prog,
                        link,
                        netlink_flags,
                        mode,
                    }))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(XdpError::Sys(
            "attach",
            last.unwrap_or_else(|| io::Error::other("no mode tried")),
        ))
    }

    /// Interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether the program is held by a BPF link (detached on process death).
    pub fn is_link(&self) -> bool {
        self.link.is_some()
    }

    /// Whether the program has the in-kernel fast path.
    pub fn offloads(&self) -> bool {
        self.offload.is_some()
    }

    /// Whether the fast path's entry for local address `local` (a port of
    /// the range) is enabled now.
    pub fn offload_entry_enabled(&self, local: SocketAddr) -> bool {
        self.offload.as_ref().is_some_and(|t| {
            offload::index(t.ports(), local.is_ipv6(), local.port()).is_ok_and(|i| t.enabled(i))
        })
    }
}

fn remove_stale(
    nl: &mut Netlink,
    name: &str,
    ifindex: u32,
    att: netlink::Attached,
) -> Result<(), XdpError> {
    let pname = bpf::prog_name(att.prog_id).map_err(sys("program info"))?;
    if pname.as_deref() != Some(bpf::PROG_NAME) {
        return Err(XdpError::Busy(
            name.to_owned(),
            format!(
                "XDP program {} ({}) is attached and is not Tandem's",
                att.prog_id,
                pname.unwrap_or_default()
            ),
        ));
    }
    let flags = match att.mode {
        1 => netlink::XDP_FLAGS_DRV_MODE,
        2 => netlink::XDP_FLAGS_SKB_MODE,
        _ => 0,
    };
    tracing::warn!(
        interface = name,
        prog_id = att.prog_id,
        "removing stale Tandem XDP program"
    );
    nl.set_xdp(ifindex, -1, flags).map_err(|e| {
        XdpError::Busy(
            name.to_owned(),
            format!(
                "Tandem XDP program {} is held by a running process ({e})",
                att.prog_id
            ),
        )
    })
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        // A link detaches when its fd closes (field drop). A netlink attach
        // must be undone explicitly.
        if let Some(flags) = self.netlink_flags {
            if let Ok(mut nl) = Netlink::open() {
                if let Err(e) = nl.set_xdp(self.ifindex, -1, flags) {
                    tracing::warn!(interface = %self.ifname, error = %e, "XDP detach failed");
                }
            }
        }
    }
}

/// A registered port: its kernel socket (none for a reserved port, see
/// [`reserve`]) and local address.
struct Registered {
    socket: Option<UdpSocket>,
    local: SocketAddr,
}

/// Per-backend counters (read by the owning worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames taken from the rx ring.
    pub rx_frames: u64,
    /// Frames that did not parse or matched no registered socket.
    pub rx_dropped: u64,
    /// Datagrams received through the kernel sockets (passed by the program).
    pub rx_kernel: u64,
    /// Frames sent through the tx ring.
    pub tx_frames: u64,
    /// Datagrams sent through a kernel socket (next hop unknown or elsewhere).
    pub tx_kernel: u64,
}

/// Epoll key of the AF_XDP socket (tokens are u32).
const XSK_KEY: u64 = u64::MAX;
/// Datagrams read per kernel socket per `recv`.
const PER_SOCKET: usize = 16;
/// Largest datagram copied into a batch slot.
const MAX_PAYLOAD: usize = super::MAX_DATAGRAM;

/// Next hop state for a destination IP.
#[derive(Debug, Clone, Copy)]
enum Hop {
    /// Send through the AF_XDP socket to this MAC.
    Mac(Mac),
    /// Not resolvable here (unknown, or another interface): use the kernel
    /// socket; look again after `retry` more packets (the wait doubles up to
    /// [`RETRY_EVERY`] from `backoff`).
    Kernel { retry: u32, backoff: u32 },
    /// Datagrams went through the kernel, and the peer's MAC has since been
    /// learned from its own frames. Keep using the kernel until its
    /// neighbour entry is valid (it has then sent what it held while
    /// resolving, so AF_XDP cannot overtake it), or for at most `left` more
    /// packets (a kernel that never resolves: e.g. the peer ignores ARP/NDP).
    Confirm { mac: Mac, left: u32 },
}

/// Most packets between two kernel lookups for an unresolved next hop.
const RETRY_EVERY: u32 = 32;
/// Packets sent through the kernel while waiting for it to confirm a learned
/// neighbour.
const CONFIRM_LIMIT: u32 = 256;

/// Learn that `ip` sends from `mac` (see [`Hop`]).
fn learn(hops: &mut HashMap<IpAddr, Hop>, ip: IpAddr, mac: Mac) {
    match hops.get_mut(&ip) {
        Some(Hop::Mac(m)) | Some(Hop::Confirm { mac: m, .. }) => *m = mac,
        Some(h @ Hop::Kernel { .. }) => {
            *h = Hop::Confirm {
                mac,
                left: CONFIRM_LIMIT,
            }
        }
        None => {
            // The table allocates on insert, once per peer.
            hops.insert(ip, Hop::Mac(mac));
        }
    }
}

/// The AF_XDP backend of one worker.
///
/// Calling contract: as [`Backend`]; build it on the worker's thread (it holds
/// raw pointers into shared rings and is not `Send`).
pub struct XdpBackend {
    program: Arc<XdpProgram>,
    queue: u32,
    xsk: xsk::Xsk,
    epoll: Epoll,
    mmsg: Mmsg,
    netlink: Netlink,
    sockets: Box<[Option<Registered>]>,
    /// Port -> token + 1 (0: none), per family.
    ports_v4: Box<[u32]>,
    ports_v6: Box<[u32]>,
    hops: HashMap<IpAddr, Hop>,
    /// Scratch: batch indices to send through kernel sockets.
    kernel_tx: Vec<u16>,
    /// The kernel send path of ports without a socket.
    raw: rawtx::RawTx,
    /// Offloaded stream per receiving token.
    installed: Box<[Option<Installed>]>,
    /// Tokens whose pending entry got a ticket in the last receive.
    to_promote: Vec<u32>,
    pub stats: XdpStats,
}

/// An offload entry a token of this backend owns, and its counters as last
/// read (the entry's counters only grow).
#[derive(Debug, Clone, Copy)]
struct Installed {
    index: u32,
    seen: offload::EntryCounts,
    /// Last ticket received while the entry is pending (see
    /// [`offload`]'s hand-over), if not tried yet.
    ticket: Option<u32>,
}

impl XdpBackend {
    /// Open the AF_XDP socket for `queue` of `program`'s interface, for
    /// tokens `0..max_sockets` and batches of `batch` datagrams.
    pub fn new(
        program: Arc<XdpProgram>,
        queue: u32,
        max_sockets: usize,
        batch: usize,
    ) -> Result<XdpBackend, XdpError> {
        let c = &program.config;
        let xsk = xsk::Xsk::open(program.ifindex, queue, c.zero_copy, c.busy_poll)
            .map_err(sys("AF_XDP socket"))?;
        let epoll = Epoll::new(batch.max(1)).map_err(sys("epoll"))?;
        epoll.add(xsk.as_fd(), XSK_KEY).map_err(sys("epoll add"))?;
        bpf::xskmap_set(program.map.as_fd(), queue, xsk.as_fd()).map_err(sys("XSKMAP update"))?;
        let batch = batch.clamp(1, usize::from(u16::MAX));
        Ok(XdpBackend {
            queue,
            xsk,
            epoll,
            mmsg: Mmsg::new(batch),
            netlink: Netlink::open().map_err(sys("netlink socket"))?,
            sockets: (0..max_sockets).map(|_| None).collect(),
            ports_v4: vec![0; 65_536].into_boxed_slice(),
            ports_v6: vec![0; 65_536].into_boxed_slice(),
            hops: HashMap::with_capacity(1024),
            kernel_tx: Vec::with_capacity(batch),
            raw: rawtx::RawTx::new(),
            installed: vec![None; max_sockets].into_boxed_slice(),
            to_promote: Vec::with_capacity(batch),
            stats: XdpStats::default(),
            program,
        })
    }

    /// Whether the stream of socket `rx` is offloaded now (its entry is
    /// enabled in the kernel's table).
    pub fn offloaded(&self, rx: Token) -> bool {
        let (Some(t), Some(Some(i))) = (
            self.program.offload.as_ref(),
            self.installed.get(rx.0 as usize),
        ) else {
            return false;
        };
        t.enabled(i.index)
    }

    /// `local` with an unspecified address replaced by the configured media
    /// address of its family (what frames are sent from).
    fn media_addr(&self, mut local: SocketAddr) -> SocketAddr {
        if local.ip().is_unspecified() {
            let c = &self.program.config;
            match (local, c.ipv4, c.ipv6) {
                (SocketAddr::V4(_), Some(a), _) => local.set_ip(a.into()),
                (SocketAddr::V6(_), _, Some(a)) => local.set_ip(a.into()),
                _ => {}
            }
        }
        local
    }

    /// Counters of `rx`'s entry since the last read (updates the baseline).
    fn take_counts(&mut self, rx: Token) -> super::OffloadCounts {
        let (Some(t), Some(Some(i))) = (
            self.program.offload.as_ref(),
            self.installed.get_mut(rx.0 as usize),
        ) else {
            return super::OffloadCounts::default();
        };
        let now = t.counts(i.index);
        let packets = now.packets.wrapping_sub(i.seen.packets);
        let out = super::OffloadCounts {
            packets,
            bytes: now.bytes.wrapping_sub(i.seen.bytes),
            last: (packets > 0).then_some((now.last_seq, now.last_ts)),
        };
        i.seen = now;
        out
    }

    /// Try to turn on the pending entries that got a ticket (see
    /// [`offload`]): succeeds for those whose last ticket taken is the last
    /// one received; the others wait for their next ticket.
    fn promote(&mut self) {
        let Some(t) = self.program.offload.as_ref() else {
            return;
        };
        if self.to_promote.is_empty() {
            return;
        }
        // "Sent" means handed to the device: a frame still on the tx ring
        // could be overtaken. Wait for the ring to drain.
        if self.xsk.tx_queued() != 0 {
            self.xsk.kick_tx();
            if self.xsk.tx_queued() != 0 {
                return;
            }
        }
        for token in self.to_promote.drain(..) {
            if let Some(Some(i)) = self.installed.get_mut(token as usize) {
                if let Some(ticket) = i.ticket.take() {
                    t.promote(i.index, ticket);
                }
            }
        }
    }

    /// Register `token` for `local`, with its kernel socket if it has one.
    fn add_port(
        &mut self,
        token: Token,
        local: SocketAddr,
        socket: Option<UdpSocket>,
    ) -> io::Result<()> {
        let slot = crate::io::vacant_slot(&mut self.sockets, token)?;
        if let Some(socket) = &socket {
            socket.set_nonblocking(true)?;
            self.epoll.add(socket.as_fd(), u64::from(token.0))?;
        }
        *slot = Some(Registered { socket, local });
        let ports = match local {
            SocketAddr::V4(_) => &mut self.ports_v4,
            SocketAddr::V6(_) => &mut self.ports_v6,
        };
        ports[usize::from(local.port())] = token.0 + 1;
        Ok(())
    }

    /// Whether the socket is bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.xsk.mode == xsk::BindMode::ZeroCopy
    }

    fn receive_xsk(&mut self, batch: &mut Batch) {
        let room = batch.capacity() - batch.len();
        if room == 0 {
            return;
        }
        // Split borrows: the closure needs the tables and the batch.
        let XdpBackend {
            xsk,
            ports_v4,
            ports_v6,
            sockets,
            hops,
            stats,
            installed,
            to_promote,
            ..
        } = self;
        let n = xsk.recv_meta(room, |f, meta| {
            let Ok(p) = frame::parse(f) else {
                stats.rx_dropped += 1;
                return;
            };
            let ports = if p.dst.is_ipv4() {
                &ports_v4
            } else {
                &ports_v6
            };
            let owner = ports
                .get(usize::from(p.dst.port()))
                .and_then(|t| t.checked_sub(1))
                .filter(|&t| {
                    sockets
                        .get(t as usize)
                        .and_then(Option::as_ref)
                        .is_some_and(|r| {
                            r.local.ip().is_unspecified() || r.local.ip() == p.dst.ip()
                        })
                });
            let Some(t) = owner else {
                stats.rx_dropped += 1;
                return;
            };
            if p.payload.len() > MAX_PAYLOAD {
                stats.rx_dropped += 1;
                return;
            }
            // Learn the way back to the sender.
            learn(hops, p.src.ip(), p.src_mac);
            if let Some(ticket) = offload::meta_ticket(&meta) {
                if let Some(Some(i)) = installed.get_mut(t as usize) {
                    if i.ticket.is_some() {
                        i.ticket = Some(ticket);
                    } else if to_promote.len() < to_promote.capacity() {
                        i.ticket = Some(ticket);
                        to_promote.push(t);
                    }
                }
            }
            batch.push(Token(t), p.src, p.payload);
        });
        self.stats.rx_frames += n as u64;
    }

    /// The next-hop MAC for `dst` on our interface, if known.
    fn next_hop(&mut self, dst: IpAddr) -> Option<Mac> {
        let (backoff, confirm) = match self.hops.get_mut(&dst) {
            Some(Hop::Mac(m)) => return Some(*m),
            Some(Hop::Kernel { retry, .. }) if *retry > 0 => {
                *retry -= 1;
                return None;
            }
            Some(Hop::Kernel { backoff, .. }) => (*backoff, None),
            Some(Hop::Confirm { mac, left }) => (1, Some((*mac, *left))),
            None => (1, None),
        };
        let found = self.kernel_neighbour(dst);
        let hop = match (found, confirm) {
            (Some(m), _) => Hop::Mac(m),
            (None, Some((mac, 0))) => Hop::Mac(mac),
            (None, Some((mac, left))) => Hop::Confirm {
                mac,
                left: left - 1,
            },
            (None, None) => Hop::Kernel {
                retry: backoff,
                backoff: (backoff * 2).min(RETRY_EVERY),
            },
        };
        self.hops.insert(dst, hop);
        match hop {
            Hop::Mac(m) => Some(m),
            _ => None,
        }
    }

    /// The kernel's valid neighbour entry for the next hop towards `dst`,
    /// if that next hop is on our interface.
    fn kernel_neighbour(&mut self, dst: IpAddr) -> Option<Mac> {
        let ifindex = self.program.ifindex;
        let r = self.netlink.route(dst).ok()?;
        if r.oif != ifindex {
            return None;
        }
        let via = r.gateway.unwrap_or(dst);
        self.netlink.neighbour(ifindex, via).ok().flatten()
    }
}

/// Milliseconds for epoll, rounding up so a short non-zero wait still waits.
fn timeout_ms(t: Duration) -> i32 {
    if t.is_zero() {
        return 0;
    }
    i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
}

impl Backend for XdpBackend {
    fn register(&mut self, token: Token, socket: UdpSocket) -> io::Result<()> {
        let local = socket.local_addr()?;
        self.add_port(token, local, Some(socket))
    }

    fn register_port(&mut self, token: Token, local: SocketAddr) -> io::Result<()> {
        let c = &self.program.config;
        let served = c.ports.contains(&local.port())
            && match local.ip() {
                IpAddr::V4(a) => c.ipv4 == Some(a),
                IpAddr::V6(a) => c.ipv6 == Some(a),
            };
        if !served {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "port {local} without a socket: not a media address and port the XDP program redirects"
                ),
            ));
        }
        self.raw.prepare(local.ip())?;
        self.add_port(token, local, None)
    }

    fn deregister(&mut self, token: Token) {
        self.unoffload(token);
        let Some(r) = self
            .sockets
            .get_mut(token.0 as usize)
            .and_then(Option::take)
        else {
            return;
        };
        let ports = match r.local {
            SocketAddr::V4(_) => &mut self.ports_v4,
            SocketAddr::V6(_) => &mut self.ports_v6,
        };
        let p = &mut ports[usize::from(r.local.port())];
        if *p == token.0 + 1 {
            *p = 0;
        }
        if let Some(socket) = &r.socket {
            let _ = self.epoll.delete(socket.as_fd());
        }
    }

    fn recv(&mut self, batch: &mut Batch, timeout: Duration) -> io::Result<usize> {
        batch.clear();
        // Everything received before was sent: hand over the streams whose
        // last ticket it held.
        self.promote();
        self.xsk.reclaim();
        self.receive_xsk(batch);
        // Wait only when the fast path had nothing; always look at the kernel
        // sockets (non-blocking) for what the program passed on.
        let wait = if batch.is_empty() {
            timeout_ms(timeout)
        } else {
            0
        };
        let ready = self.epoll.wait(wait)?;
        for i in 0..ready {
            let Some(key) = self.epoll.data(i) else { break };
            if key == XSK_KEY {
                self.receive_xsk(batch);
                continue;
            }
            if batch.len() == batch.capacity() {
                continue;
            }
            let token = Token(key as u32);
            let Some(Some(Registered {
                socket: Some(socket),
                ..
            })) = self.sockets.get(token.0 as usize)
            else {
                continue;
            };
            if let Ok(n) = self.mmsg.recv(socket.as_fd(), batch, token, PER_SOCKET) {
                self.stats.rx_kernel += n as u64;
            }
        }
        Ok(batch.len())
    }

    fn send(&mut self, batch: &Batch) -> SendStats {
        let mut stats = SendStats::default();
        self.xsk.reclaim();
        self.kernel_tx.clear();
        let src_mac = self.program.mac;
        for i in 0..batch.len() {
            let Some(tx) = batch.meta(i).tx else { continue };
            let Some(Some(r)) = self.sockets.get(tx.from.0 as usize) else {
                stats.failed += 1;
                continue;
            };
            // Bound to any: send from the configured media address.
            let src = self.media_addr(r.local);
            let dst = tx.to;
            let Some(dst_mac) = (if src.ip().is_unspecified() || src.is_ipv4() != dst.is_ipv4() {
                None
            } else {
                self.next_hop(dst.ip())
            }) else {
                // Batch capacity is clamped to u16 by the worker's batches.
                self.kernel_tx.push(i as u16);
                continue;
            };
            let payload = batch.datagram(i);
            let hl = frame::header_len(&dst);
            let ok = self.xsk.push_tx(|buf| {
                buf.get_mut(hl..hl + payload.len())?
                    .copy_from_slice(payload);
                frame::emit(buf, src_mac, dst_mac, src, dst, payload.len()).ok()
            });
            if ok {
                stats.sent += 1;
                self.stats.tx_frames += 1;
            } else {
                stats.failed += 1;
            }
        }
        self.xsk.flush_tx();
        // The kernel path, one datagram group per socket.
        let mut k = 0;
        while k < self.kernel_tx.len() {
            let i = usize::from(self.kernel_tx[k]);
            let from = batch.meta(i).tx.map_or(0, |t| t.from.0);
            let Some(Some(r)) = self.sockets.get(from as usize) else {
                stats.failed += 1;
                k += 1;
                continue;
            };
            let ok = match &r.socket {
                Some(socket) => self
                    .mmsg
                    .send(socket.as_fd(), batch, &self.kernel_tx[k..=k])
                    .is_ok_and(|n| n > 0),
                None => {
                    let src = self.media_addr(r.local);
                    let to = batch.meta(i).tx.map(|t| t.to);
                    to.is_some_and(|to| self.raw.send(src, to, batch.datagram(i)).is_ok())
                }
            };
            if ok {
                stats.sent += 1;
                self.stats.tx_kernel += 1;
            } else {
                stats.failed += 1;
            }
            k += 1;
        }
        stats
    }

    fn can_offload(&self) -> bool {
        self.program.offload.is_some()
    }

    fn offload(&mut self, rule: &super::Offload) -> bool {
        let Some(table) = self.program.offload.as_ref() else {
            return false;
        };
        let (Some(Some(rx)), Some(Some(from))) = (
            self.sockets.get(rule.rx.0 as usize),
            self.sockets.get(rule.from.0 as usize),
        ) else {
            return false;
        };
        let (local, out_src) = (self.media_addr(rx.local), self.media_addr(from.local));
        // Only a next hop the AF_XDP path already sends to directly.
        let Some(Hop::Mac(dst_mac)) = self.hops.get(&rule.to.ip()).copied() else {
            return false;
        };
        let r = offload::Rule {
            src: rule.src,
            local,
            out_src,
            out_dst: rule.to,
            src_mac: self.program.mac,
            dst_mac,
            in_ssrc: rule.in_ssrc,
            out_ssrc: rule.out_ssrc,
            seq_delta: rule.seq_delta,
            ts_delta: rule.ts_delta,
        };
        let (Ok(entry), Ok(index)) = (
            offload::encode(&r),
            offload::index(table.ports(), local.is_ipv6(), local.port()),
        ) else {
            return false;
        };
        let Some(slot) = self.installed.get_mut(rule.rx.0 as usize) else {
            return false;
        };
        // A rule replacing one on the same entry keeps the unread counts.
        let seen = match slot {
            Some(i) if i.index == index => i.seen,
            Some(i) => {
                table.disable(i.index);
                table.counts(index)
            }
            None => table.counts(index),
        };
        if !table.install(index, &entry) {
            return false;
        }
        *slot = Some(Installed {
            index,
            seen,
            ticket: None,
        });
        true
    }

    fn unoffload(&mut self, rx: Token) -> super::OffloadCounts {
        match (
            self.program.offload.as_ref(),
            self.installed.get(rx.0 as usize),
        ) {
            (Some(t), Some(Some(i))) => t.disable(i.index),
            _ => return super::OffloadCounts::default(),
        }
        let c = self.take_counts(rx);
        if let Some(s) = self.installed.get_mut(rx.0 as usize) {
            *s = None;
        }
        c
    }

    fn offload_counts(&mut self, rx: Token) -> super::OffloadCounts {
        self.take_counts(rx)
    }
}

impl Drop for XdpBackend {
    fn drop(&mut self) {
        if let Some(t) = self.program.offload.as_ref() {
            for i in self.installed.iter().flatten() {
                t.disable(i.index);
            }
        }
        bpf::xskmap_clear(self.program.map.as_fd(), self.queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_problem() {
        let c = XdpConfig {
            interface: "lo".into(),
            queues: vec![0],
            ipv4: None,
            ipv6: None,
            ports: 20_000..=30_000,
            mode: XdpMode::Generic,
            attach: AttachMethod::Link,
            zero_copy: false,
            busy_poll: false,
            offload: true,
        };
        let e = XdpProgram::attach(&c).unwrap_err();
        assert!(e.to_string().contains("no media address"), "{e}");
        let c = XdpConfig {
            ipv4: Some(Ipv4Addr::LOCALHOST),
            queues: vec![],
            ..c
        };
        assert!(XdpProgram::attach(&c)
            .unwrap_err()
            .to_string()
            .contains("queue"));
        let c = XdpConfig {
            queues: vec![0],
            interface: "no-such-if0".into(),
            ..c
        };
        assert!(matches!(
            XdpProgram::attach(&c),
            Err(XdpError::Interface(_, _))
        ));
        assert!(probe("no-such-if0").is_err());
    }

    #[test]
    fn learning_after_kernel_path_waits_for_the_kernel() {
        let mut hops = HashMap::new();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        learn(&mut hops, ip, mac);
        assert!(matches!(hops[&ip], Hop::Mac(m) if m == mac), "fresh peer");
        hops.insert(
            ip,
            Hop::Kernel {
                retry: 3,
                backoff: 4,
            },
        );
        learn(&mut hops, ip, mac);
        assert!(
            matches!(hops[&ip], Hop::Confirm { mac: m, left: CONFIRM_LIMIT } if m == mac),
            "kernel path used before: confirm first"
        );
        let mac2 = Mac([2, 0, 0, 0, 0, 2]);
        learn(&mut hops, ip, mac2);
        assert!(matches!(hops[&ip], Hop::Confirm { mac: m, .. } if m == mac2));
    }

    #[test]
    fn timeout_rounding() {
        assert_eq!(timeout_ms(Duration::ZERO), 0);
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::from_micros(1500)), 2);
    }
}
