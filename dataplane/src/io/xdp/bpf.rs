//! The XDP program, assembled from eBPF instructions here, and the `bpf(2)`
//! calls that load it, create its XSKMAP, attach it with a BPF link and read
//! back programs attached earlier. No clang, no libbpf, no object files.
//!
//! The program (verifier-checked at load):
//! - Ethernet type IPv4 (header without options, not a fragment) or IPv6
//!   (UDP as the first next header), protocol UDP,
//! - destination address equal to the configured media address of that
//!   family (a family without one is never redirected),
//! - destination port within the RTP port range,
//!
//! goes to `bpf_redirect_map(xskmap, rx_queue_index, XDP_PASS)`: to the AF_XDP
//! socket of that queue's worker, or to the kernel when that queue has none.
//! Everything else (ARP, ND, ICMP, SIP, ssh, IPv4 with options) is
//! `XDP_PASS`ed to the kernel.
//!
//! With the offload table ([`program_with_offload`]), a frame of ours is
//! first looked up by destination port in the table ([`super::offload`]):
//! an enabled entry whose latched source, RTP SSRC and plain RTP header
//! (version 2, no padding/extension/CSRC, not RTCP) match gets its Ethernet,
//! IP and UDP headers, SSRC, sequence number and timestamp rewritten, both
//! checksums recomputed, the entry's counters bumped, and goes back out with
//! `XDP_TX`. Anything else takes the XSKMAP path above. A matching frame of
//! a *pending* entry (being handed over, see [`super::offload`]) goes to the
//! XSKMAP too, with a ticket in its metadata.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Name of the loaded program (kernel truncates to 15 bytes). Used to
/// recognise a stale program of ours left attached by a crashed process.
pub const PROG_NAME: &str = "tandem_xdp";

/// `bpf_prog_type` / `bpf_map_type` / `bpf_attach_type` / commands (uapi).
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_F_MMAPABLE: u32 = 1 << 10;
const BPF_XDP: u32 = 37;
const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_GET_FD_BY_ID: i32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: i32 = 15;
const BPF_PROG_TEST_RUN: i32 = 10;
const BPF_LINK_CREATE: i32 = 28;
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_FUNC_XDP_ADJUST_META: i32 = 54;
/// XDP verdicts.
pub const XDP_PASS: i32 = 2;
pub const XDP_TX: i32 = 3;
pub const XDP_REDIRECT: i32 = 4;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub(crate) code: u8,
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

pub(crate) const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcodes used (class | op | source).
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const ADD64_X: u8 = 0x0f;
const ADD32_X: u8 = 0x0c;
const SUB64_K: u8 = 0x17;
const AND64_K: u8 = 0x57;
const XOR64_K: u8 = 0xa7;
const RSH64_K: u8 = 0x77;
const STX_W: u8 = 0x63;
const STX_H: u8 = 0x6b;
const ST_B: u8 = 0x72;
const ST_H: u8 = 0x6a;
/// BPF_STX | BPF_DW | BPF_ATOMIC (imm BPF_ADD = 0).
const ATOMIC_ADD_DW: u8 = 0xdb;
/// BPF_STX | BPF_W | BPF_ATOMIC (imm BPF_ADD | BPF_FETCH = 1: the old
/// value is loaded into the source register).
const ATOMIC_W: u8 = 0xc3;
const FETCH_ADD: i32 = 1;
const ST_W: u8 = 0x62;
const JNE_X: u8 = 0x5d;
const BE: u8 = 0xdc; // BPF_ALU | BPF_END | BPF_TO_BE
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const LD_DW: u8 = 0x18;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JGT_X: u8 = 0x2d;
const JGT_K: u8 = 0x25;
const JLT_K: u8 = 0xa5;
const JNE32_K: u8 = 0x56;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;

/// What the program matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub ports: RangeInclusive<u16>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Pass,
    V4,
    V6,
    Port,
    Xsk,
    Fast6,
    /// Per-family local labels of the fast path (0: IPv4, 1: IPv6).
    NoCsum(u8),
    Forward(u8),
    Loop(u8),
    Tail(u8),
    Sum(u8),
}

/// A tiny assembler: instructions plus forward jumps to labels.
struct Asm {
    code: Vec<Insn>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, i: Insn) {
        self.code.push(i);
    }
    fn jmp(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.code.push(insn(code, dst, src, 0, imm));
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.code.len()));
    }
    fn finish(mut self) -> Vec<Insn> {
        for &(at, to) in &self.fixups {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == to)
                .map_or(at + 1, |&(_, t)| t);
            // Programs are a few hundred instructions: offsets fit in i16.
            self.code[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        self.code
    }
}

/// Assemble the program for `filter`, with `map_fd` the XSKMAP (no
/// in-kernel fast path).
pub fn program(filter: &Filter, map_fd: RawFd) -> Vec<Insn> {
    program_with_offload(filter, map_fd, None)
}

/// Assemble the program for `filter`, with `map_fd` the XSKMAP and
/// `offload_fd`, if any, the offload table ([`super::offload`]) of
/// `filter.ports`: a frame matching an enabled entry is rewritten and sent
/// back out with `XDP_TX`; any other frame of ours goes to the XSKMAP.
pub fn program_with_offload(
    filter: &Filter,
    map_fd: RawFd,
    offload_fd: Option<RawFd>,
) -> Vec<Insn> {
    let mut a = Asm {
        code: Vec::with_capacity(256),
        fixups: Vec::new(),
        labels: Vec::new(),
    };
    let nports = i32::from(*filter.ports.end()) - i32::from(*filter.ports.start()) + 1;
    // r6 = ctx; r2 = data; r3 = data_end.
    a.op(insn(MOV64_X, 6, 1, 0, 0));
    a.op(insn(LDX_W, 2, 1, 0, 0));
    a.op(insn(LDX_W, 3, 1, 4, 0));
    a.op(insn(MOV64_X, 4, 2, 0, 0));
    a.op(insn(ADD64_K, 4, 0, 0, 14));
    a.jmp(JGT_X, 4, 3, 0, Label::Pass);
    a.op(insn(LDX_H, 5, 2, 12, 0));
    // Ethertype loaded little-endian: 0x0800 reads as 0x0008.
    if filter.ipv4.is_some() {
        a.jmp(JEQ_K, 5, 0, 0x0008, Label::V4);
    }
    if filter.ipv6.is_some() {
        a.jmp(JEQ_K, 5, 0, 0xdd86, Label::V6);
    }
    a.jmp(JA, 0, 0, 0, Label::Pass);
    if let Some(ip) = filter.ipv4 {
        a.label(Label::V4);
        a.op(insn(MOV64_X, 4, 2, 0, 0));
        a.op(insn(ADD64_K, 4, 0, 0, 14 + 20 + 8));
        a.jmp(JGT_X, 4, 3, 0, Label::Pass);
        a.op(insn(LDX_B, 5, 2, 14, 0));
        a.jmp(JNE_K, 5, 0, 0x45, Label::Pass);
        a.op(insn(LDX_B, 5, 2, 14 + 9, 0));
        a.jmp(JNE_K, 5, 0, 17, Label::Pass);
        // Flags/fragment offset: MF or an offset means a fragment.
        a.op(insn(LDX_H, 5, 2, 14 + 6, 0));
        a.op(insn(AND64_K, 5, 0, 0, 0xff3f));
        a.jmp(JNE_K, 5, 0, 0, Label::Pass);
        a.op(insn(LDX_W, 5, 2, 14 + 16, 0));
        a.jmp(JNE32_K, 5, 0, i32::from_le_bytes(ip.octets()), Label::Pass);
        a.op(insn(LDX_H, 5, 2, 14 + 20 + 2, 0));
        a.op(insn(BE, 5, 0, 0, 16));
        // r9: offload table base of the family.
        a.op(insn(MOV64_K, 9, 0, 0, 0));
        a.jmp(JA, 0, 0, 0, Label::Port);
    }
    if let Some(ip) = filter.ipv6 {
        a.label(Label::V6);
        a.op(insn(MOV64_X, 4, 2, 0, 0));
        a.op(insn(ADD64_K, 4, 0, 0, 14 + 40 + 8));
        a.jmp(JGT_X, 4, 3, 0, Label::Pass);
        a.op(insn(LDX_B, 5, 2, 14 + 6, 0));
        a.jmp(JNE_K, 5, 0, 17, Label::Pass);
        for (k, w) in ip.octets().chunks_exact(4).enumerate() {
            a.op(insn(LDX_W, 5, 2, 14 + 24 + 4 * k as i16, 0));
            let w = i32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            a.jmp(JNE32_K, 5, 0, w, Label::Pass);
        }
        a.op(insn(LDX_H, 5, 2, 14 + 40 + 2, 0));
        a.op(insn(BE, 5, 0, 0, 16));
        a.op(insn(MOV64_K, 9, 0, 0, nports));
    }
    a.label(Label::Port);
    a.jmp(JLT_K, 5, 0, i32::from(*filter.ports.start()), Label::Pass);
    a.jmp(JGT_K, 5, 0, i32::from(*filter.ports.end()), Label::Pass);
    if let Some(fd) = offload_fd {
        fast_path(&mut a, filter, fd);
    }
    // bpf_redirect_map(map, ctx->rx_queue_index, XDP_PASS)
    a.label(Label::Xsk);
    a.op(insn(LDX_W, 2, 6, 16, 0));
    a.op(insn(LD_DW, 1, PSEUDO_MAP_FD, 0, map_fd));
    a.op(insn(0, 0, 0, 0, 0));
    a.op(insn(MOV64_K, 3, 0, 0, XDP_PASS));
    a.op(insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP));
    a.op(insn(EXIT, 0, 0, 0, 0));
    a.label(Label::Pass);
    a.op(insn(MOV64_K, 0, 0, 0, XDP_PASS));
    a.op(insn(EXIT, 0, 0, 0, 0));
    a.finish()
}

/// The in-kernel fast path (see [`super::offload`] for the entry layout).
/// Entered with r5 = destination port (host order, in range), r9 = the
/// family's table base, r6 = ctx; leaves with `XDP_TX` or jumps to
/// [`Label::Xsk`].
fn fast_path(a: &mut Asm, filter: &Filter, table_fd: RawFd) {
    use super::offload::off;
    // key = port - min + base, on the stack; r0 = lookup(table, &key).
    a.op(insn(SUB64_K, 5, 0, 0, i32::from(*filter.ports.start())));
    a.op(insn(ADD64_X, 5, 9, 0, 0));
    a.op(insn(STX_W, 10, 5, -4, 0));
    a.op(insn(LD_DW, 1, PSEUDO_MAP_FD, 0, table_fd));
    a.op(insn(0, 0, 0, 0, 0));
    a.op(insn(MOV64_X, 2, 10, 0, 0));
    a.op(insn(ADD64_K, 2, 0, 0, -4));
    a.op(insn(CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM));
    a.jmp(JEQ_K, 0, 0, 0, Label::Xsk);
    // Off entries are skipped without touching the state word.
    a.op(insn(LDX_W, 1, 0, off::FLAGS, 0));
    a.op(insn(AND64_K, 1, 0, 0, 3));
    a.jmp(JEQ_K, 1, 0, 0, Label::Xsk);
    // Packet pointers again (the call clobbered r2/r3).
    a.op(insn(LDX_W, 2, 6, 0, 0));
    a.op(insn(LDX_W, 3, 6, 4, 0));
    if filter.ipv6.is_some() {
        a.jmp(JNE_K, 9, 0, 0, Label::Fast6);
    }
    if filter.ipv4.is_some() {
        fast_family(a, false);
    }
    if filter.ipv6.is_some() {
        a.label(Label::Fast6);
        fast_family(a, true);
    }
}

/// Fold the one's-complement sum in `r` to 16 bits (twice: the sums here
/// stay far below 2^32), using `tmp`.
fn fold16(a: &mut Asm, r: u8, tmp: u8) {
    for _ in 0..2 {
        a.op(insn(MOV64_X, tmp, r, 0, 0));
        a.op(insn(RSH64_K, tmp, 0, 0, 16));
        a.op(insn(AND64_K, r, 0, 0, 0xffff));
        a.op(insn(ADD64_X, r, tmp, 0, 0));
    }
}

/// Longest UDP datagram the fast path checksums (in 16-bit words); longer
/// ones go to the worker.
const MAX_SUM_WORDS: i32 = 760;
/// Longest UDP datagram the fast path forwards: the loop above must reach
/// its tail check before its counter runs out.
const MAX_UDP_LEN: i32 = 2 * MAX_SUM_WORDS - 2;

/// Match and rewrite for one family: r0 = entry, r2 = data, r3 = data_end.
///
/// The UDP checksum is computed afresh over the rewritten datagram (not
/// updated incrementally): a frame sent by a local socket over veth may
/// carry the unfinished checksum of `CHECKSUM_PARTIAL`, which an update
/// would turn into a wrong one. The sum is taken over little-endian loads
/// (RFC 1071: byte order independent) with the pseudo-header sum prepared
/// in the same order by [`super::offload::encode`].
fn fast_family(a: &mut Asm, v6: bool) {
    use super::offload;
    use super::offload::off;
    let fam = u8::from(v6);
    let l4: i16 = if v6 { 14 + 40 } else { 14 + 20 };
    // UDP header + the 12-byte RTP header.
    a.op(insn(MOV64_X, 4, 2, 0, 0));
    a.op(insn(ADD64_K, 4, 0, 0, i32::from(l4) + 8 + 12));
    a.jmp(JGT_X, 4, 3, 0, Label::Xsk);
    // The frame ends where the UDP datagram does (no Ethernet padding).
    a.op(insn(LDX_H, 4, 2, l4 + 4, 0));
    a.op(insn(BE, 4, 0, 0, 16));
    a.op(insn(MOV64_X, 5, 2, 0, 0));
    a.op(insn(ADD64_K, 5, 0, 0, i32::from(l4)));
    a.op(insn(ADD64_X, 5, 4, 0, 0));
    a.jmp(JNE_X, 5, 3, 0, Label::Xsk);
    // Source address and port: the latched source.
    let (src_at, words) = if v6 { (14 + 8, 4) } else { (14 + 12, 1) };
    for k in 0..words {
        a.op(insn(LDX_W, 4, 2, src_at + 4 * k, 0));
        a.op(insn(LDX_W, 5, 0, off::MATCH_IP + 4 * k, 0));
        a.jmp(JNE_X, 4, 5, 0, Label::Xsk);
    }
    a.op(insn(LDX_H, 4, 2, l4, 0));
    a.op(insn(LDX_H, 5, 0, off::MATCH_PORT, 0));
    a.jmp(JNE_X, 4, 5, 0, Label::Xsk);
    // RTP version 2, no padding/extension/CSRC; not RTCP (PT 192..=223);
    // the SSRC the rule was made for.
    a.op(insn(LDX_B, 4, 2, l4 + 8, 0));
    a.jmp(JNE_K, 4, 0, 0x80, Label::Xsk);
    a.op(insn(LDX_B, 4, 2, l4 + 9, 0));
    a.op(insn(SUB64_K, 4, 0, 0, 192));
    a.jmp(JLT_K, 4, 0, 32, Label::Xsk);
    a.op(insn(LDX_W, 4, 2, l4 + 16, 0));
    a.op(insn(LDX_W, 5, 0, off::IN_SSRC, 0));
    a.jmp(JNE_X, 4, 5, 0, Label::Xsk);
    // r7 = UDP checksum as received (0: none, IPv4 only).
    a.op(insn(LDX_H, 7, 2, l4 + 6, 0));
    if v6 {
        a.jmp(JEQ_K, 7, 0, 0, Label::Xsk);
    }
    // Longer than the checksum loop sums: the worker's (decided before
    // anything is rewritten).
    a.op(insn(LDX_H, 4, 2, l4 + 4, 0));
    a.op(insn(BE, 4, 0, 0, 16));
    a.jmp(JGT_K, 4, 0, MAX_UDP_LEN, Label::Xsk);
    // The hand-over: one atomic fetch-add on the state word both takes a
    // ticket and reads the state the packet is decided by.
    a.op(insn(MOV64_K, 1, 0, 0, offload::TICKET));
    a.op(insn(ATOMIC_W, 0, 1, off::FLAGS, FETCH_ADD));
    a.op(insn(MOV64_X, 4, 1, 0, 0));
    a.op(insn(AND64_K, 4, 0, 0, 3));
    a.jmp(JEQ_K, 4, 0, offload::ENABLED as i32, Label::Forward(fam));
    a.jmp(JNE_K, 4, 0, offload::PENDING as i32, Label::Xsk);
    // Pending: to the worker, with the ticket in the frame's metadata.
    a.op(insn(MOV64_X, 7, 1, 0, 0));
    a.op(insn(RSH64_K, 7, 0, 0, 2));
    a.op(insn(MOV64_X, 1, 6, 0, 0));
    a.op(insn(MOV64_K, 2, 0, 0, -(offload::META_LEN as i32)));
    a.op(insn(CALL, 0, 0, 0, BPF_FUNC_XDP_ADJUST_META));
    a.jmp(JNE_K, 0, 0, 0, Label::Xsk);
    a.op(insn(LDX_W, 2, 6, 8, 0));
    a.op(insn(LDX_W, 3, 6, 0, 0));
    a.op(insn(MOV64_X, 4, 2, 0, 0));
    a.op(insn(ADD64_K, 4, 0, 0, offload::META_LEN as i32));
    a.jmp(JGT_X, 4, 3, 0, Label::Xsk);
    a.op(insn(ST_W, 2, 0, 0, offload::META_MAGIC as i32));
    a.op(insn(STX_W, 2, 7, 4, 0));
    a.jmp(JA, 0, 0, 0, Label::Xsk);
    a.label(Label::Forward(fam));
    // Sequence number: out = in + delta (mod 2^16).
    a.op(insn(LDX_H, 4, 2, l4 + 10, 0));
    a.op(insn(BE, 4, 0, 0, 16));
    a.op(insn(LDX_W, 5, 0, off::SEQ_DELTA, 0));
    a.op(insn(ADD64_X, 4, 5, 0, 0));
    a.op(insn(AND64_K, 4, 0, 0, 0xffff));
    a.op(insn(STX_W, 0, 4, off::LAST_SEQ, 0));
    a.op(insn(BE, 4, 0, 0, 16));
    a.op(insn(STX_H, 2, 4, l4 + 10, 0));
    // Timestamp: out = in + delta (mod 2^32).
    a.op(insn(LDX_W, 4, 2, l4 + 12, 0));
    a.op(insn(BE, 4, 0, 0, 32));
    a.op(insn(LDX_W, 5, 0, off::TS_DELTA, 0));
    a.op(insn(ADD32_X, 4, 5, 0, 0));
    a.op(insn(STX_W, 0, 4, off::LAST_TS, 0));
    a.op(insn(BE, 4, 0, 0, 32));
    a.op(insn(STX_W, 2, 4, l4 + 12, 0));
    // SSRC.
    a.op(insn(LDX_W, 4, 0, off::OUT_SSRC, 0));
    a.op(insn(STX_W, 2, 4, l4 + 16, 0));
    // Ports.
    a.op(insn(LDX_W, 4, 0, off::PORTS, 0));
    a.op(insn(STX_W, 2, 4, l4, 0));
    // IP header from the template, keeping the length field.
    if v6 {
        a.op(insn(LDX_W, 4, 0, off::IP_HDR, 0));
        a.op(insn(STX_W, 2, 4, 14, 0));
        a.op(insn(ST_B, 2, 0, 14 + 7, i32::from(super::frame::TTL)));
        for k in 0..8 {
            a.op(insn(LDX_W, 4, 0, off::IP_HDR + 8 + 4 * k, 0));
            a.op(insn(STX_W, 2, 4, 14 + 8 + 4 * k, 0));
        }
    } else {
        a.op(insn(LDX_H, 5, 2, 14 + 2, 0));
        for k in 0..5 {
            a.op(insn(LDX_W, 4, 0, off::IP_HDR + 4 * k, 0));
            a.op(insn(STX_W, 2, 4, 14 + 4 * k, 0));
        }
        a.op(insn(STX_H, 2, 5, 14 + 2, 0));
        a.op(insn(BE, 5, 0, 0, 16));
        a.op(insn(LDX_W, 4, 0, off::IP4_SUM, 0));
        a.op(insn(ADD64_X, 4, 5, 0, 0));
        fold16(a, 4, 5);
        a.op(insn(XOR64_K, 4, 0, 0, 0xffff));
        a.op(insn(BE, 4, 0, 0, 16));
        a.op(insn(STX_H, 2, 4, 14 + 10, 0));
    }
    // Ethernet addresses.
    for k in 0..3 {
        a.op(insn(LDX_W, 4, 0, off::ETH + 4 * k, 0));
        a.op(insn(STX_W, 2, 4, 4 * k, 0));
    }
    // UDP checksum over pseudo header + datagram; an IPv4 datagram without
    // one keeps none.
    if !v6 {
        a.jmp(JEQ_K, 7, 0, 0, Label::NoCsum(fam));
    }
    a.op(insn(ST_H, 2, 0, l4 + 6, 0));
    a.op(insn(LDX_W, 8, 0, off::PSEUDO_SUM, 0));
    a.op(insn(LDX_H, 5, 2, l4 + 4, 0));
    a.op(insn(ADD64_X, 8, 5, 0, 0));
    a.op(insn(MOV64_X, 4, 2, 0, 0));
    a.op(insn(ADD64_K, 4, 0, 0, i32::from(l4)));
    a.op(insn(MOV64_K, 1, 0, 0, MAX_SUM_WORDS));
    a.label(Label::Loop(fam));
    a.op(insn(MOV64_X, 5, 4, 0, 0));
    a.op(insn(ADD64_K, 5, 0, 0, 2));
    a.jmp(JGT_X, 5, 3, 0, Label::Tail(fam));
    a.op(insn(LDX_H, 5, 4, 0, 0));
    a.op(insn(ADD64_X, 8, 5, 0, 0));
    a.op(insn(ADD64_K, 4, 0, 0, 2));
    a.op(insn(SUB64_K, 1, 0, 0, 1));
    a.jmp(JNE_K, 1, 0, 0, Label::Loop(fam));
    // Unreachable (MAX_UDP_LEN was checked); the verifier wants an exit.
    a.jmp(JA, 0, 0, 0, Label::Pass);
    a.label(Label::Tail(fam));
    a.op(insn(MOV64_X, 5, 4, 0, 0));
    a.op(insn(ADD64_K, 5, 0, 0, 1));
    a.jmp(JGT_X, 5, 3, 0, Label::Sum(fam));
    a.op(insn(LDX_B, 5, 4, 0, 0));
    a.op(insn(ADD64_X, 8, 5, 0, 0));
    a.label(Label::Sum(fam));
    fold16(a, 8, 5);
    a.op(insn(XOR64_K, 8, 0, 0, 0xffff));
    a.op(insn(JNE_K, 8, 0, 1, 0));
    a.op(insn(MOV64_K, 8, 0, 0, 0xffff));
    a.op(insn(STX_H, 2, 8, l4 + 6, 0));
    a.label(Label::NoCsum(fam));
    // Counters: packets, and RTP bytes (UDP length - 8).
    a.op(insn(LDX_H, 5, 2, l4 + 4, 0));
    a.op(insn(BE, 5, 0, 0, 16));
    a.op(insn(SUB64_K, 5, 0, 0, 8));
    a.op(insn(MOV64_K, 4, 0, 0, 1));
    a.op(insn(ATOMIC_ADD_DW, 0, 4, off::PACKETS, 0));
    a.op(insn(ATOMIC_ADD_DW, 0, 5, off::BYTES, 0));
    a.op(insn(MOV64_K, 0, 0, 0, XDP_TX));
    a.op(insn(EXIT, 0, 0, 0, 0));
}

/// `union bpf_attr`, as bytes: every command here uses a prefix of it.
#[repr(C, align(8))]
pub(crate) struct Attr([u8; 128]);

impl Attr {
    pub(crate) fn new() -> Attr {
        Attr([0; 128])
    }
    pub(crate) fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(crate) fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(crate) fn name(&mut self, at: usize, name: &str) -> &mut Self {
        let n = name.len().min(15);
        self.0[at..at + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
    pub(crate) fn get_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }
}

pub(crate) fn sys_bpf(cmd: i32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a live, 8-aligned, 128-byte buffer, zeroed except for
    // the fields of `cmd`; every pointer stored in it (instructions, license,
    // log, key/value, info) points to memory that outlives this call, as the
    // callers below guarantee. The kernel reads/writes at most `size` bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            mem::size_of::<Attr>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

fn fd_result(r: i64) -> OwnedFd {
    // SAFETY: the bpf() commands that return an fd returned a new, valid fd
    // (r >= 0 checked by sys_bpf) that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// Create an XSKMAP with `entries` slots (one per queue id).
pub fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_XSKMAP)
        .u32(4, 4)
        .u32(8, 4)
        .u32(12, entries.max(1))
        .name(28, "tandem_xsks");
    sys_bpf(BPF_MAP_CREATE, &mut a).map(fd_result)
}

/// Create a `BPF_MAP_TYPE_ARRAY` of `entries` values of `value_size`
/// bytes (u32 keys) that can be `mmap`ed (`BPF_F_MMAPABLE`).
pub fn create_mmapable_array(value_size: u32, entries: u32, name: &str) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_MAP_TYPE_ARRAY)
        .u32(4, 4)
        .u32(8, value_size)
        .u32(12, entries.max(1))
        .u32(16, BPF_F_MMAPABLE)
        .name(28, name);
    sys_bpf(BPF_MAP_CREATE, &mut a).map(fd_result)
}

/// Run `prog` once on the frame `data` (`BPF_PROG_TEST_RUN`): returns the
/// verdict and the frame as the program left it.
pub fn test_run(prog: BorrowedFd<'_>, data: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; data.len() + 256];
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(8, data.len() as u32)
        .u32(12, out.len() as u32)
        .u64(16, data.as_ptr() as u64)
        .u64(24, out.as_mut_ptr() as u64)
        .u32(32, 1);
    sys_bpf(BPF_PROG_TEST_RUN, &mut a)?;
    let ret = u32::from_ne_bytes([a.0[4], a.0[5], a.0[6], a.0[7]]);
    let n = u32::from_ne_bytes([a.0[12], a.0[13], a.0[14], a.0[15]]) as usize;
    out.truncate(n.min(out.len()));
    Ok((ret, out))
}

/// Set `map[queue] = xsk`.
pub fn xskmap_set(map: BorrowedFd<'_>, queue: u32, xsk: BorrowedFd<'_>) -> io::Result<()> {
    let key = queue;
    let value = xsk.as_raw_fd() as u32;
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, std::ptr::addr_of!(key) as u64)
        .u64(16, std::ptr::addr_of!(value) as u64);
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
}

/// Remove `map[queue]` (missing entries are fine).
pub fn xskmap_clear(map: BorrowedFd<'_>, queue: u32) {
    let key = queue;
    let mut a = Attr::new();
    a.u32(0, map.as_raw_fd() as u32)
        .u64(8, std::ptr::addr_of!(key) as u64);
    let _ = sys_bpf(BPF_MAP_DELETE_ELEM, &mut a);
}

/// A program that passes every frame to the kernel (tests of coexistence
/// with programs that are not ours).
pub fn pass_all() -> Vec<Insn> {
    vec![insn(MOV64_K, 0, 0, 0, XDP_PASS), insn(EXIT, 0, 0, 0, 0)]
}

/// Load `insns` as an XDP program named [`PROG_NAME`]. On a verifier
/// rejection the error text carries the verifier log.
pub fn load(insns: &[Insn]) -> Result<OwnedFd, String> {
    load_named(insns, PROG_NAME)
}

/// Load `insns` as an XDP program named `name` (at most 15 bytes kept).
pub fn load_named(insns: &[Insn], name: &str) -> Result<OwnedFd, String> {
    const LICENSE: &CStr = c"Apache-2.0";
    // Without a log first (the verifier's log of a long program that passes
    // can overflow the buffer, which fails the load); with one on failure.
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, LICENSE.as_ptr() as u64)
        .name(48, name);
    if let Ok(r) = sys_bpf(BPF_PROG_LOAD, &mut a) {
        return Ok(fd_result(r));
    }
    let mut log = vec![0u8; 1024 * 1024];
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, LICENSE.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64)
        .name(48, name);
    match sys_bpf(BPF_PROG_LOAD, &mut a) {
        Ok(r) => Ok(fd_result(r)),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(format!(
                "BPF_PROG_LOAD: {e}; verifier: {}",
                String::from_utf8_lossy(&log[..end]).trim()
            ))
        }
    }
}

/// Attach `prog` to `ifindex` through a BPF link with `xdp_flags` (mode).
/// The attachment lives as long as the returned fd: closing it, or the
/// process dying, detaches the program.
pub fn link_create(prog: BorrowedFd<'_>, ifindex: u32, xdp_flags: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, BPF_XDP)
        .u32(12, xdp_flags);
    sys_bpf(BPF_LINK_CREATE, &mut a).map(fd_result)
}

/// Name of the loaded program with id `id` (None if it is gone).
pub fn prog_name(id: u32) -> io::Result<Option<String>> {
    let mut a = Attr::new();
    a.u32(0, id);
    let fd = match sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut a) {
        Ok(r) => fd_result(r),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    // struct bpf_prog_info: name[16] at offset 64; 80 bytes is enough.
    let mut info = [0u64; 10];
    let mut a = Attr::new();
    a.u32(0, fd.as_raw_fd() as u32)
        .u32(4, mem::size_of_val(&info) as u32)
        .u64(8, info.as_mut_ptr() as u64);
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
    let bytes: Vec<u8> = info[8..10].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(Some(String::from_utf8_lossy(&bytes[..end]).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter {
            ipv4: Some(Ipv4Addr::new(10, 0, 0, 2)),
            ipv6: Some("fd00::2".parse().unwrap()),
            ports: 20_000..=30_000,
        }
    }

    #[test]
    fn jumps_resolve_inside_the_program() {
        let p = program(&filter(), 7);
        let pass = p.len() - 2;
        for (i, ins) in p.iter().enumerate() {
            let class = ins.code & 0x07;
            if (class == 0x05 || class == 0x06) && ins.code != CALL && ins.code != EXIT {
                let t = i as i64 + 1 + i64::from(ins.off);
                assert!(t > i as i64 && (t as usize) < p.len(), "jump {i} -> {t}");
            }
        }
        assert_eq!(p[pass], insn(MOV64_K, 0, 0, 0, XDP_PASS));
        // The map reference is a two-slot ld_imm64 with the fd.
        let ld = p.iter().position(|i| i.code == LD_DW).unwrap();
        assert_eq!(p[ld].imm, 7);
        assert_eq!(p[ld].regs >> 4, PSEUDO_MAP_FD);
        assert_eq!(p[ld + 1].code, 0);
    }

    #[test]
    fn family_without_address_is_not_matched() {
        let f = Filter {
            ipv6: None,
            ..filter()
        };
        let p = program(&f, 3);
        assert!(!p.iter().any(|i| i.code == JEQ_K && i.imm == 0xdd86));
        assert!(p.iter().any(|i| i.code == JEQ_K && i.imm == 0x0008));
        assert!(p.len() < program(&filter(), 3).len());
    }
}
