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
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_XDP: u32 = 37;
const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_GET_FD_BY_ID: i32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: i32 = 15;
const BPF_LINK_CREATE: i32 = 28;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;

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
const AND64_K: u8 = 0x57;
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
            // Programs are a few dozen instructions: offsets fit in i16.
            self.code[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        self.code
    }
}

/// Assemble the program for `filter`, with `map_fd` the XSKMAP.
pub fn program(filter: &Filter, map_fd: RawFd) -> Vec<Insn> {
    let mut a = Asm {
        code: Vec::with_capacity(64),
        fixups: Vec::new(),
        labels: Vec::new(),
    };
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
    }
    a.label(Label::Port);
    a.jmp(JLT_K, 5, 0, i32::from(*filter.ports.start()), Label::Pass);
    a.jmp(JGT_K, 5, 0, i32::from(*filter.ports.end()), Label::Pass);
    // bpf_redirect_map(map, ctx->rx_queue_index, XDP_PASS)
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

/// `union bpf_attr`, as bytes: every command here uses a prefix of it.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, at: usize, name: &str) -> &mut Self {
        let n = name.len().min(15);
        self.0[at..at + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

fn sys_bpf(cmd: i32, attr: &mut Attr) -> io::Result<i64> {
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
    let mut log = vec![0u8; 64 * 1024];
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
