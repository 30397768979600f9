//! `tandemctl tune check`: is this machine set up for pinned dataplane cores?
//!
//! The dataplane busy-polls one worker per configured core. It only keeps its latency when
//! those cores run nothing else: isolated from the scheduler (`isolcpus`), without the
//! periodic tick (`nohz_full`) or RCU callbacks (`rcu_nocbs`), at a fixed top frequency
//! (`performance` governor), free of device interrupts (IRQ affinity, no `irqbalance` moving
//! them back), and, for AF_XDP, with one NIC queue per worker whose IRQ sits on that worker's
//! core and enough locked memory for the UMEM.
//!
//! The module is split like the protocol cores: parse functions take the text of `/proc` and
//! `/sys` files (tested with fixture strings below), [`check`] turns a [`Machine`] and a
//! [`Plan`] into [`Finding`]s, each with a severity and the exact command or setting that
//! fixes it; only [`read_machine`] touches the file system.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Fine, or not applicable here.
    Ok,
    /// Worth knowing; nothing to fix.
    Info,
    /// Costs latency or jitter under load.
    Warn,
    /// The dataplane cannot run as configured, or will misbehave.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
        })
    }
}

/// One thing `tune check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// Short area name: `isolation`, `governor`, `irq`...
    pub topic: &'static str,
    pub message: String,
    /// The exact command or setting that fixes it (empty when nothing to do).
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:5}] {}: {}", self.severity, self.topic, self.message)?;
        if !self.fix.is_empty() {
            for (i, l) in self.fix.lines().enumerate() {
                let lead = if i == 0 { "fix:" } else { "    " };
                write!(f, "\n        {lead} {l}")?;
            }
        }
        Ok(())
    }
}

/// One `/proc/interrupts` line with a numeric IRQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqLine {
    pub irq: u32,
    /// Interrupt count per CPU column.
    pub counts: Vec<u64>,
    /// The device names at the end of the line (e.g. `eth0-TxRx-0`).
    pub name: String,
}

/// What `tune check` knows about the machine.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// Logical CPUs (from `/proc/cpuinfo`).
    pub cpus: usize,
    /// `/sys/devices/system/cpu/isolated`.
    pub isolated: Vec<usize>,
    /// `/sys/devices/system/cpu/nohz_full`.
    pub nohz_full: Vec<usize>,
    /// `/proc/cmdline`.
    pub cmdline: String,
    /// `(cpu, scaling_governor)`; empty when there is no cpufreq (VMs, fixed clocks).
    pub governors: Vec<(usize, String)>,
    pub irqbalance_running: bool,
    pub interrupts: Vec<IrqLine>,
    /// `(irq, CPUs)` from `/proc/irq/N/smp_affinity_list`.
    pub irq_affinity: Vec<(u32, Vec<usize>)>,
    /// RLIMIT_MEMLOCK soft limit in bytes (`None`: unlimited).
    pub memlock: Option<u64>,
    /// `HugePages_Total` and `Hugepagesize` (kB) from `/proc/meminfo`.
    pub hugepages: (u64, u64),
    /// The AF_XDP interface, if one was named: (name, RX queue count).
    pub nic: Option<(String, usize)>,
}

/// The dataplane layout from the configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub cores: Vec<usize>,
    /// `xdp` needs NIC queues and locked memory; `socket`/`uring` do not.
    pub xdp: bool,
    /// UMEM bytes per worker the AF_XDP backend locks.
    pub umem_bytes_per_worker: u64,
}

/// A CPU list such as `0-3,8,10-11` (kernel `cpulist` format). Empty text is an empty list.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut out = BTreeSet::new();
    for part in text
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        // `isolcpus=` may start with flags (`managed_irq,domain,2-3`): skip words.
        if part.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
            continue;
        }
        // Ranges may carry a stride (`0-7:2`), rare; take the stride into account.
        let (range, stride) = match part.split_once(':') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .map_err(|_| format!("bad stride in {part}"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (a, b),
            None => (range, range),
        };
        let a: usize = a
            .parse()
            .map_err(|_| format!("bad CPU number in \"{part}\""))?;
        let b: usize = b
            .parse()
            .map_err(|_| format!("bad CPU number in \"{part}\""))?;
        if b < a || b - a > 65_536 || stride == 0 {
            return Err(format!("bad CPU range \"{part}\""));
        }
        out.extend((a..=b).step_by(stride));
    }
    Ok(out.into_iter().collect())
}

/// Formats CPUs as a compact kernel cpulist (`1-3,5`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut v: Vec<usize> = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Logical CPUs in `/proc/cpuinfo` (one `processor` line each).
pub fn parse_cpuinfo(text: &str) -> usize {
    text.lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count()
}

/// The value of `name=` on a kernel command line (last occurrence wins, as in the kernel).
pub fn cmdline_param<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .rev()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Numeric IRQ lines of `/proc/interrupts` (per-CPU rows such as `LOC:` are skipped: they
/// cannot be moved).
pub fn parse_interrupts(text: &str) -> Vec<IrqLine> {
    let mut lines = text.lines();
    let ncpu = lines.next().map_or(0, |h| {
        h.split_whitespace()
            .filter(|w| w.starts_with("CPU"))
            .count()
    });
    let mut out = Vec::new();
    for l in lines {
        let Some((irq, rest)) = l.trim_start().split_once(':') else {
            continue;
        };
        let Ok(irq) = irq.trim().parse::<u32>() else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let mut counts = Vec::with_capacity(ncpu);
        for _ in 0..ncpu {
            match words.next().and_then(|w| w.parse().ok()) {
                Some(c) => counts.push(c),
                None => break,
            }
        }
        let tail: Vec<&str> = words.collect();
        // The chip and trigger words come first (`IR-PCI-MSI 524288-edge`); the last word is the
        // device name.
        let name = tail.last().map_or(String::new(), |s| s.to_string());
        out.push(IrqLine { irq, counts, name });
    }
    out
}

/// `Max locked memory` soft limit from `/proc/<pid>/limits`, bytes (`None`: unlimited).
pub fn parse_memlock(limits: &str) -> Result<Option<u64>, String> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .ok_or("no \"Max locked memory\" line")?;
    let soft = line
        .trim_start_matches("Max locked memory")
        .split_whitespace()
        .next()
        .ok_or("empty \"Max locked memory\" line")?;
    if soft == "unlimited" {
        return Ok(None);
    }
    soft.parse()
        .map(Some)
        .map_err(|_| format!("bad locked memory limit \"{soft}\""))
}

/// `(HugePages_Total, Hugepagesize in kB)` from `/proc/meminfo`.
pub fn parse_hugepages(meminfo: &str) -> (u64, u64) {
    let get = |k: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("HugePages_Total:"), get("Hugepagesize:"))
}

/// Device name fragments of telephony cards (DAHDI drivers) in `/proc/interrupts`.
const CARD_IRQ_NAMES: &[&str] = &[
    "dahdi", "wct", "wcte", "wctdm", "opvx", "tor2", "r1t1", "xpp",
];

/// Everything wrong (or notable) with `m` for running `plan`.
pub fn check(m: &Machine, plan: &Plan) -> Vec<Finding> {
    let mut f = Vec::new();
    let cores: Vec<usize> = plan.cores.clone();
    let list = format_cpu_list(&cores);
    let housekeeping: Vec<usize> = (0..m.cpus).filter(|c| !cores.contains(c)).collect();
    let mut push = |severity, topic, message: String, fix: String| {
        f.push(Finding {
            severity,
            topic,
            message,
            fix,
        })
    };

    // Cores.
    let missing: Vec<usize> = cores.iter().copied().filter(|&c| c >= m.cpus).collect();
    if !missing.is_empty() {
        push(
            Severity::Error,
            "cores",
            format!(
                "dataplane cores {} do not exist (this machine has CPUs 0-{})",
                format_cpu_list(&missing),
                m.cpus.saturating_sub(1)
            ),
            "set [dataplane] cores in tandem.toml to existing CPUs".into(),
        );
    }
    if housekeeping.is_empty() {
        push(
            Severity::Error,
            "cores",
            format!("every CPU ({list}) is a dataplane core: nothing is left for the kernel and the control plane"),
            "leave at least one CPU (normally CPU 0) out of [dataplane] cores".into(),
        );
    }
    if cores.contains(&0) && m.cpus > 1 {
        push(
            Severity::Warn,
            "cores",
            "CPU 0 is a dataplane core: it takes timers and interrupts that cannot be moved".into(),
            format!(
                "use other CPUs in [dataplane] cores, e.g. cores = [{}]",
                (1..m.cpus).last().unwrap_or(1)
            ),
        );
    }

    // Isolation, tick, RCU.
    let not_isolated: Vec<usize> = cores
        .iter()
        .copied()
        .filter(|c| !m.isolated.contains(c))
        .collect();
    let not_nohz: Vec<usize> = cores
        .iter()
        .copied()
        .filter(|c| !m.nohz_full.contains(c))
        .collect();
    let rcu = cmdline_param(&m.cmdline, "rcu_nocbs")
        .and_then(|v| parse_cpu_list(v).ok())
        .unwrap_or_default();
    let not_rcu: Vec<usize> = cores.iter().copied().filter(|c| !rcu.contains(c)).collect();
    let kernel_line = format!(
        "isolcpus=managed_irq,domain,{list} nohz_full={list} rcu_nocbs={list} irqaffinity={}",
        format_cpu_list(&housekeeping)
    );
    let grub = format!(
        "add to the kernel command line: {kernel_line}\n\
         (Debian: append it to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, reboot)"
    );
    if m.isolated.is_empty() {
        push(
            Severity::Error,
            "isolation",
            format!(
                "no CPU is isolated on this machine (/sys/devices/system/cpu/isolated is empty): \
                 the scheduler runs other tasks on dataplane cores {list}"
            ),
            grub.clone(),
        );
    } else if !not_isolated.is_empty() {
        push(
            Severity::Error,
            "isolation",
            format!(
                "dataplane cores {} are not isolated (isolated: {})",
                format_cpu_list(&not_isolated),
                format_cpu_list(&m.isolated)
            ),
            grub.clone(),
        );
    } else {
        push(
            Severity::Ok,
            "isolation",
            format!("dataplane cores {list} are isolated"),
            String::new(),
        );
    }
    if !not_nohz.is_empty() {
        push(
            Severity::Warn,
            "nohz_full",
            format!(
                "dataplane cores {} still take the scheduler tick (nohz_full: {})",
                format_cpu_list(&not_nohz),
                if m.nohz_full.is_empty() {
                    "none".to_string()
                } else {
                    format_cpu_list(&m.nohz_full)
                }
            ),
            format!("add to the kernel command line: nohz_full={list}"),
        );
    }
    if !not_rcu.is_empty() {
        push(
            Severity::Warn,
            "rcu_nocbs",
            format!(
                "RCU callbacks still run on dataplane cores {}",
                format_cpu_list(&not_rcu)
            ),
            format!("add to the kernel command line: rcu_nocbs={list}"),
        );
    }

    // Frequency governor.
    if m.governors.is_empty() {
        push(
            Severity::Info,
            "governor",
            "no cpufreq on this machine (a VM or a fixed clock): nothing to set".into(),
            String::new(),
        );
    } else {
        for &c in &cores {
            match m.governors.iter().find(|(cpu, _)| *cpu == c) {
                Some((_, g)) if g == "performance" => {}
                Some((_, g)) => push(
                    Severity::Warn,
                    "governor",
                    format!("CPU {c} runs the \"{g}\" frequency governor: its clock drops between bursts"),
                    format!(
                        "echo performance > /sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
                    ),
                ),
                None => {}
            }
        }
    }

    // IRQs.
    if m.irqbalance_running {
        push(
            Severity::Warn,
            "irqbalance",
            "irqbalance is running: it moves device interrupts onto the dataplane cores".into(),
            format!(
                "systemctl disable --now irqbalance\n\
                 (or keep it and set IRQBALANCE_BANNED_CPULIST={list} in /etc/default/irqbalance)"
            ),
        );
    }
    let nic_name = m.nic.as_ref().map(|(n, _)| n.as_str());
    let mut on_cores = Vec::new();
    for l in &m.interrupts {
        let is_nic = nic_name.is_some_and(|n| !n.is_empty() && l.name.starts_with(n));
        let is_card = CARD_IRQ_NAMES
            .iter()
            .any(|c| l.name.to_ascii_lowercase().contains(c));
        if is_nic || is_card {
            continue; // judged below
        }
        let fired_on_core = cores
            .iter()
            .any(|&c| l.counts.get(c).copied().unwrap_or(0) > 0);
        let allowed_on_core = m
            .irq_affinity
            .iter()
            .find(|(irq, _)| *irq == l.irq)
            .is_some_and(|(_, cpus)| cpus.iter().any(|c| cores.contains(c)));
        if fired_on_core && allowed_on_core {
            on_cores.push(l);
        }
    }
    if !on_cores.is_empty() && !housekeeping.is_empty() {
        let hk = format_cpu_list(&housekeeping);
        let names: Vec<String> = on_cores
            .iter()
            .take(12)
            .map(|l| format!("{} ({})", l.irq, l.name))
            .collect();
        let cmds: Vec<String> = on_cores
            .iter()
            .map(|l| format!("echo {hk} > /proc/irq/{}/smp_affinity_list", l.irq))
            .collect();
        push(
            Severity::Warn,
            "irq",
            format!(
                "{} device interrupt(s) fire on dataplane cores {list}: {}{}",
                on_cores.len(),
                names.join(", "),
                if on_cores.len() > 12 { ", ..." } else { "" }
            ),
            cmds.join("\n"),
        );
    }
    for l in &m.interrupts {
        if CARD_IRQ_NAMES
            .iter()
            .any(|c| l.name.to_ascii_lowercase().contains(c))
        {
            let target = cores.first().copied().unwrap_or(0);
            let aff = m.irq_affinity.iter().find(|(irq, _)| *irq == l.irq);
            if aff.map(|(_, c)| c.as_slice()) != Some(&[target][..]) {
                push(
                    Severity::Warn,
                    "irq",
                    format!(
                        "telephony card interrupt {} ({}) is not pinned to dataplane core {target}, \
                         which runs its TDM blocks",
                        l.irq, l.name
                    ),
                    format!("echo {target} > /proc/irq/{}/smp_affinity_list", l.irq),
                );
            }
        }
    }

    // AF_XDP: NIC queues and their IRQs, locked memory.
    if plan.xdp {
        match &m.nic {
            None => push(
                Severity::Warn,
                "nic",
                "backend xdp but no interface given: NIC queues and their IRQs were not checked"
                    .into(),
                "run tandemctl tune check --iface IFACE".into(),
            ),
            Some((name, queues)) => {
                if *queues < cores.len() {
                    push(
                        Severity::Error,
                        "nic",
                        format!(
                            "{name} has {queues} RX queue(s) for {} dataplane workers: some workers get no traffic",
                            cores.len()
                        ),
                        format!("ethtool -L {name} combined {}", cores.len()),
                    );
                } else if *queues > cores.len() {
                    push(
                        Severity::Warn,
                        "nic",
                        format!(
                            "{name} has {queues} RX queues for {} workers: RTP hashed to the extra queues reaches no worker",
                            cores.len()
                        ),
                        format!("ethtool -L {name} combined {}", cores.len()),
                    );
                }
                let qirqs: Vec<&IrqLine> = m
                    .interrupts
                    .iter()
                    .filter(|l| l.name.starts_with(name.as_str()))
                    .collect();
                for (i, l) in qirqs.iter().enumerate() {
                    let want = cores[i % cores.len().max(1)];
                    let aff = m.irq_affinity.iter().find(|(irq, _)| *irq == l.irq);
                    if aff.map(|(_, c)| c.as_slice()) != Some(&[want][..]) {
                        push(
                            Severity::Warn,
                            "irq",
                            format!(
                                "{name} queue IRQ {} ({}) should run on worker core {want}",
                                l.irq, l.name
                            ),
                            format!("echo {want} > /proc/irq/{}/smp_affinity_list", l.irq),
                        );
                    }
                }
            }
        }
        let need = plan.umem_bytes_per_worker * cores.len() as u64;
        match m.memlock {
            None => push(
                Severity::Ok,
                "memlock",
                "locked memory is unlimited (AF_XDP UMEM fits)".into(),
                String::new(),
            ),
            Some(have) if have < need => push(
                Severity::Error,
                "memlock",
                format!(
                    "locked memory limit {} KiB is below the {} KiB the AF_XDP UMEM of {} worker(s) needs",
                    have / 1024,
                    need / 1024,
                    cores.len()
                ),
                "LimitMEMLOCK=infinity in tandemd.service (shell: ulimit -l unlimited)".into(),
            ),
            Some(_) => {}
        }
    }
    if m.hugepages.0 == 0 {
        push(
            Severity::Info,
            "hugepages",
            "no huge pages reserved; Tandem's backends do not need them".into(),
            String::new(),
        );
    } else {
        push(
            Severity::Info,
            "hugepages",
            format!(
                "{} huge pages of {} kB reserved (not used by Tandem's backends)",
                m.hugepages.0, m.hugepages.1
            ),
            String::new(),
        );
    }
    f
}

/// Whether any finding needs action (a warning or an error).
pub fn needs_action(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity >= Severity::Warn)
}

/// A setting `tandemctl tune apply` can change at run time: a value written
/// to a file under `/proc/irq` (IRQ affinity) or `/sys/devices/system/cpu`
/// (frequency governor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeWrite {
    /// Absolute path of the file.
    pub path: String,
    /// What is written to it.
    pub value: String,
}

/// The runtime-changeable fixes among `findings` (their `echo VALUE > PATH`
/// lines on IRQ affinity and governor files), in order, each once. The rest
/// (kernel command line, config, NIC queues, limits) needs a reboot or an
/// edit: [`boot_fixes`].
pub fn runtime_writes(findings: &[Finding]) -> Vec<RuntimeWrite> {
    let mut out: Vec<RuntimeWrite> = Vec::new();
    for f in findings.iter().filter(|f| f.severity >= Severity::Warn) {
        for line in f.fix.lines() {
            let Some((value, path)) = line
                .trim()
                .strip_prefix("echo ")
                .and_then(|r| r.split_once(" > "))
            else {
                continue;
            };
            let (value, path) = (value.trim(), path.trim());
            let runtime = (path.starts_with("/proc/irq/") && path.ends_with("/smp_affinity_list"))
                || (path.starts_with("/sys/devices/system/cpu/")
                    && path.ends_with("/cpufreq/scaling_governor"));
            let w = RuntimeWrite {
                path: path.to_string(),
                value: value.to_string(),
            };
            if runtime && !value.is_empty() && !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// The findings that `tune apply` cannot fix at run time (kernel command
/// line, config, limits): everything at warn or worse with a fix that is not
/// only runtime writes.
pub fn boot_fixes(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity >= Severity::Warn && !f.fix.is_empty())
        .filter(|f| {
            runtime_writes(std::slice::from_ref(*f)).len()
                < f.fix.lines().filter(|l| !l.trim().is_empty()).count()
        })
        .collect()
}

/// Performs `writes` below `root` (`/` on the machine; a fixture directory in
/// tests): each value is written to `root` + its path. One result per write,
/// the error naming the file.
pub fn apply_writes(writes: &[RuntimeWrite], root: &std::path::Path) -> Vec<Result<(), String>> {
    writes
        .iter()
        .map(|w| {
            let p = root.join(w.path.trim_start_matches('/'));
            std::fs::write(&p, format!("{}\n", w.value))
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// Reads the machine (the I/O edge of this module). Missing files read as empty: a container
/// or an old kernel simply yields fewer findings.
pub fn read_machine(iface: Option<&str>) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = parse_cpuinfo(&read("/proc/cpuinfo")).max(1);
    let mut governors = Vec::new();
    for c in 0..cpus {
        let g = read(&format!(
            "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
        ));
        if !g.trim().is_empty() {
            governors.push((c, g.trim().to_string()));
        }
    }
    let interrupts = parse_interrupts(&read("/proc/interrupts"));
    let irq_affinity = interrupts
        .iter()
        .filter_map(|l| {
            let t = read(&format!("/proc/irq/{}/smp_affinity_list", l.irq));
            parse_cpu_list(&t).ok().map(|c| (l.irq, c))
        })
        .collect();
    let irqbalance_running = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .any(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "irqbalance")
                })
        })
        .unwrap_or(false);
    let nic = iface.map(|n| {
        let q = std::fs::read_dir(Path::new("/sys/class/net").join(n).join("queues"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                    .count()
            })
            .unwrap_or(0);
        (n.to_string(), q)
    });
    Machine {
        cpus,
        isolated: parse_cpu_list(&read("/sys/devices/system/cpu/isolated")).unwrap_or_default(),
        nohz_full: parse_cpu_list(&read("/sys/devices/system/cpu/nohz_full")).unwrap_or_default(),
        cmdline: read("/proc/cmdline").trim().to_string(),
        governors,
        irqbalance_running,
        interrupts,
        irq_affinity,
        memlock: parse_memlock(&read("/proc/self/limits")).unwrap_or(Some(0)),
        hugepages: parse_hugepages(&read("/proc/meminfo")),
        nic,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn apply_writes_only_the_runtime_fixes_and_lists_the_rest() {
        let f = |severity, topic, fix: &str| Finding {
            severity,
            topic,
            message: String::new(),
            fix: fix.into(),
        };
        let findings =
            vec![
            f(
                Severity::Warn,
                "isolation",
                "add to the kernel command line: isolcpus=1 nohz_full=1 rcu_nocbs=1",
            ),
            f(
                Severity::Warn,
                "governor",
                "echo performance > /sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            ),
            f(
                Severity::Warn,
                "irq",
                "echo 0 > /proc/irq/24/smp_affinity_list\necho 0 > /proc/irq/25/smp_affinity_list",
            ),
            // Not a file tune apply may touch, and an Ok finding: both left alone.
            f(Severity::Warn, "x", "echo 1 > /etc/passwd"),
            f(Severity::Ok, "irq", "echo 0 > /proc/irq/26/smp_affinity_list"),
        ];
        let w = runtime_writes(&findings);
        let paths: Vec<&str> = w.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
                "/proc/irq/24/smp_affinity_list",
                "/proc/irq/25/smp_affinity_list"
            ]
        );
        let rest: Vec<&str> = boot_fixes(&findings).iter().map(|f| f.topic).collect();
        assert_eq!(rest, ["isolation", "x"]);

        let root = std::env::temp_dir().join(format!("tandem-tune-apply-{}", std::process::id()));
        std::fs::create_dir_all(root.join("proc/irq/24")).unwrap();
        std::fs::create_dir_all(root.join("sys/devices/system/cpu/cpu1/cpufreq")).unwrap();
        let r = apply_writes(&w, &root);
        assert!(r[0].is_ok() && r[1].is_ok(), "{r:?}");
        assert!(r[2].as_ref().unwrap_err().contains("proc/irq/25"), "{r:?}");
        assert_eq!(
            std::fs::read_to_string(root.join("proc/irq/24/smp_affinity_list")).unwrap(),
            "0\n"
        );
        assert_eq!(
            std::fs::read_to_string(
                root.join("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor")
            )
            .unwrap(),
            "performance\n"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n\n\
                           processor\t: 1\nvendor_id\t: GenuineIntel\n\nprocessor\t: 2\n\n\
                           processor\t: 3\nflags\t\t: fpu processor_x\n";

    const INTERRUPTS: &str = "           CPU0       CPU1       CPU2       CPU3       \n\
  0:         36          0          0          0   IO-APIC   2-edge      timer\n\
  9:          0          0          0          0   IO-APIC   9-fasteoi   acpi\n\
 24:     120034          0          0        512   PCI-MSI 65536-edge      eth0-TxRx-0\n\
 25:          0      98012          0          0   PCI-MSI 65537-edge      eth0-TxRx-1\n\
 26:          0          0       4411          0   PCI-MSI 524288-edge      nvme0q1\n\
 30:          0          0          0       1000   IO-APIC  17-fasteoi   wcte13xp0\n\
NMI:          0          0          0          0   Non-maskable interrupts\n\
LOC:    1938113    1020033     400321      12345   Local timer interrupts\n";

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max locked memory         8388608              8388608              bytes     \n\
Max address space         unlimited            unlimited            bytes     \n";

    const MEMINFO: &str = "MemTotal:        8041312 kB\nHugePages_Total:       0\n\
                           HugePages_Free:        0\nHugepagesize:       2048 kB\n";

    fn machine() -> Machine {
        let interrupts = parse_interrupts(INTERRUPTS);
        Machine {
            cpus: parse_cpuinfo(CPUINFO),
            isolated: Vec::new(),
            nohz_full: Vec::new(),
            cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet".into(),
            governors: (0..4).map(|c| (c, "schedutil".to_string())).collect(),
            irqbalance_running: true,
            irq_affinity: interrupts
                .iter()
                .map(|l| (l.irq, (0..4).collect()))
                .collect(),
            interrupts,
            memlock: parse_memlock(LIMITS).unwrap(),
            hugepages: parse_hugepages(MEMINFO),
            nic: None,
        }
    }

    fn plan(cores: &[usize], xdp: bool) -> Plan {
        Plan {
            cores: cores.to_vec(),
            xdp,
            umem_bytes_per_worker: 16 << 20,
        }
    }

    fn find<'a>(f: &'a [Finding], topic: &str) -> Vec<&'a Finding> {
        f.iter().filter(|x| x.topic == topic).collect()
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("2-3\n").unwrap(), vec![2, 3]);
        assert_eq!(parse_cpu_list("0,4-6,9").unwrap(), vec![0, 4, 5, 6, 9]);
        assert_eq!(
            parse_cpu_list("managed_irq,domain,2-3").unwrap(),
            vec![2, 3]
        );
        assert_eq!(parse_cpu_list("0-6:3").unwrap(), vec![0, 3, 6]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("1-x").is_err());
        assert_eq!(format_cpu_list(&[5, 1, 2, 3, 9, 10]), "1-3,5,9-10");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn proc_and_sys_fixtures_parse() {
        assert_eq!(parse_cpuinfo(CPUINFO), 4);
        let irqs = parse_interrupts(INTERRUPTS);
        assert_eq!(irqs.len(), 6, "LOC and NMI rows are not movable IRQs");
        assert_eq!(irqs[2].irq, 24);
        assert_eq!(irqs[2].counts, vec![120_034, 0, 0, 512]);
        assert_eq!(irqs[2].name, "eth0-TxRx-0");
        assert_eq!(parse_memlock(LIMITS), Ok(Some(8_388_608)));
        assert_eq!(
            parse_memlock("Max locked memory         unlimited            unlimited  bytes"),
            Ok(None)
        );
        assert!(parse_memlock("nothing").is_err());
        assert_eq!(parse_hugepages(MEMINFO), (0, 2048));
        let cl = "ro isolcpus=managed_irq,domain,2-3 rcu_nocbs=2-3 quiet";
        assert_eq!(cmdline_param(cl, "rcu_nocbs"), Some("2-3"));
        assert_eq!(cmdline_param(cl, "nohz_full"), None);
        assert_eq!(
            cmdline_param("rcu_nocbs=1 x rcu_nocbs=2-3", "rcu_nocbs"),
            Some("2-3")
        );
    }

    #[test]
    fn an_untuned_vm_gets_the_kernel_command_line() {
        let f = check(&machine(), &plan(&[3], false));
        let iso = find(&f, "isolation");
        assert_eq!(iso.len(), 1);
        assert_eq!(iso[0].severity, Severity::Error);
        assert!(iso[0].message.contains("no CPU is isolated"), "{}", iso[0]);
        assert!(
            iso[0]
                .fix
                .contains("isolcpus=managed_irq,domain,3 nohz_full=3 rcu_nocbs=3 irqaffinity=0-2"),
            "{}",
            iso[0]
        );
        assert_eq!(find(&f, "nohz_full")[0].severity, Severity::Warn);
        assert_eq!(find(&f, "rcu_nocbs")[0].severity, Severity::Warn);
        let gov = find(&f, "governor");
        assert_eq!(gov.len(), 1);
        assert!(gov[0]
            .fix
            .contains("echo performance > /sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"));
        assert!(find(&f, "irqbalance")[0]
            .fix
            .contains("systemctl disable --now irqbalance"));
        // eth0-TxRx-0 fired on CPU 3 and may run there; the card IRQ is judged on its own.
        let irq = find(&f, "irq");
        let dev = irq
            .iter()
            .find(|x| x.message.contains("device interrupt"))
            .unwrap();
        assert!(dev.message.contains("24 (eth0-TxRx-0)"), "{dev}");
        assert!(dev
            .fix
            .contains("echo 0-2 > /proc/irq/24/smp_affinity_list"));
        assert!(
            !dev.message.contains("nvme0q1"),
            "nvme never fired on CPU 3"
        );
        let card = irq
            .iter()
            .find(|x| x.message.contains("telephony card"))
            .unwrap();
        assert!(card.fix.contains("echo 3 > /proc/irq/30/smp_affinity_list"));
        assert!(needs_action(&f));
        // Socket backend: memlock is not judged.
        assert!(find(&f, "memlock").is_empty());
    }

    #[test]
    fn a_tuned_machine_is_clean() {
        let mut m = machine();
        m.isolated = vec![2, 3];
        m.nohz_full = vec![2, 3];
        m.cmdline = "ro isolcpus=managed_irq,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3".into();
        m.governors = (0..4).map(|c| (c, "performance".to_string())).collect();
        m.irqbalance_running = false;
        m.irq_affinity = m.interrupts.iter().map(|l| (l.irq, vec![0, 1])).collect();
        // The card IRQ on the first worker core.
        m.irq_affinity.retain(|(irq, _)| *irq != 30);
        m.irq_affinity.push((30, vec![2]));
        m.memlock = None;
        let f = check(&m, &plan(&[2, 3], false));
        assert!(!needs_action(&f), "{f:#?}");
        assert_eq!(find(&f, "isolation")[0].severity, Severity::Ok);
    }

    #[test]
    fn xdp_checks_queues_queue_irqs_and_memlock() {
        let mut m = machine();
        m.nic = Some(("eth0".into(), 1));
        let f = check(&m, &plan(&[2, 3], true));
        let nic = find(&f, "nic");
        assert_eq!(nic[0].severity, Severity::Error);
        assert_eq!(nic[0].fix, "ethtool -L eth0 combined 2");
        let q: Vec<_> = find(&f, "irq")
            .into_iter()
            .filter(|x| x.message.contains("queue IRQ"))
            .collect();
        assert_eq!(q.len(), 2);
        assert!(q[0].fix.contains("echo 2 > /proc/irq/24/smp_affinity_list"));
        assert!(q[1].fix.contains("echo 3 > /proc/irq/25/smp_affinity_list"));
        let mem = find(&f, "memlock");
        assert_eq!(mem[0].severity, Severity::Error);
        assert!(mem[0].message.contains("8192 KiB"), "{}", mem[0]);
        assert!(mem[0].fix.contains("LimitMEMLOCK=infinity"));
    }

    #[test]
    fn impossible_core_layouts_are_errors() {
        let m = machine();
        let f = check(&m, &plan(&[0, 1, 2, 3], false));
        assert!(f
            .iter()
            .any(|x| x.severity == Severity::Error && x.message.contains("nothing is left")));
        assert!(f
            .iter()
            .any(|x| x.message.contains("CPU 0 is a dataplane core")));
        let f = check(&m, &plan(&[7], false));
        assert!(f
            .iter()
            .any(|x| x.severity == Severity::Error && x.message.contains("do not exist")));
    }

    #[test]
    fn findings_print_with_their_fix() {
        let f = Finding {
            severity: Severity::Warn,
            topic: "irq",
            message: "m".into(),
            fix: "a\nb".into(),
        };
        assert_eq!(
            f.to_string(),
            "[WARN ] irq: m\n        fix: a\n             b"
        );
    }
}
