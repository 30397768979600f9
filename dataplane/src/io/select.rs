//! Start-up decisions about the I/O layout: which backend runs (`auto`
//! included, with every fallback reason), the NIC queue of each worker under
//! `xdp`, and the checks of the configured cores (they exist, are not shared
//! with the control plane, and are isolated from the scheduler).
//!
//! Pure where it can be: [`check_cores`] takes the facts (available cores,
//! isolation lists) as arguments, so its rules are unit tested; [`choose`]
//! runs the kernel probes of [`super::uring`] and [`super::xdp`].

use std::net::IpAddr;
use std::sync::Arc;

use super::xdp::{self, AttachMethod, XdpConfig, XdpProgram};
use crate::handle::{Backend, Config, Error};

/// The kernel's CPU isolation lists (`isolcpus=`, `nohz_full=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    /// `/sys/devices/system/cpu/isolated`.
    pub isolated: Vec<usize>,
    /// `/sys/devices/system/cpu/nohz_full`.
    pub nohz_full: Vec<usize>,
}

impl Isolation {
    /// Read the lists of this host (missing files: empty lists).
    pub fn from_host() -> Isolation {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| parse_cpu_list(&s))
                .unwrap_or_default()
        };
        Isolation {
            isolated: read("/sys/devices/system/cpu/isolated"),
            nohz_full: read("/sys/devices/system/cpu/nohz_full"),
        }
    }
}

/// Parse a kernel CPU list such as `1-3,5` (empty text: empty list).
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

/// Check the dataplane `cores` against the machine and the control plane's
/// cores. Errors: a core that does not exist, one listed twice, one shared
/// with `control`. Returns warnings: cores not isolated.
pub fn check_cores(
    cores: &[usize],
    control: &[usize],
    available: &[usize],
    iso: &Isolation,
) -> Result<Vec<String>, String> {
    for (i, core) in cores.iter().enumerate() {
        if !available.contains(core) {
            return Err(format!(
                "core {core} does not exist (available cores: {available:?})"
            ));
        }
        if cores[..i].contains(core) {
            return Err(format!("core {core} is listed twice in cores"));
        }
        if control.contains(core) {
            return Err(format!(
                "core {core} is both a dataplane core and a control core: a pinned worker \
                 busy-polls its core, so give the control plane other cores"
            ));
        }
    }
    for core in control {
        if !available.contains(core) {
            return Err(format!(
                "control core {core} does not exist (available cores: {available:?})"
            ));
        }
    }
    let mut notes = Vec::new();
    for core in cores {
        let isolated = iso.isolated.contains(core);
        let nohz = iso.nohz_full.contains(core);
        if !isolated && !nohz {
            notes.push(format!(
                "dataplane core {core} is not isolated (not in isolcpus= or nohz_full=): \
                 other tasks and the timer tick may run there"
            ));
        } else if !nohz {
            notes.push(format!(
                "dataplane core {core} is isolated but not nohz_full: the timer tick still \
                 interrupts it"
            ));
        }
    }
    Ok(notes)
}

/// The backend to run and the reasons behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub backend: Backend,
    pub notes: Vec<String>,
}

/// Why `xdp` cannot run with `cfg` here (`None`: it can).
fn xdp_unavailable(cfg: &Config) -> Option<String> {
    let Some(x) = &cfg.xdp else {
        return Some("xdp: no xdp_interface configured".into());
    };
    if !x.queues.is_empty() && x.queues.len() != cfg.cores.len() {
        return Some(format!(
            "xdp: {} queue id(s) for {} worker core(s): give one per core",
            x.queues.len(),
            cfg.cores.len()
        ));
    }
    xdp::probe(&x.interface)
        .err()
        .map(|why| format!("xdp on {}: {why}", x.interface))
}

/// Resolve `cfg.backend`: an explicit backend must be available (else an
/// error naming why); `auto` takes xdp where an interface is configured and
/// supported, else uring, else socket, noting each reason to fall back.
pub fn choose(cfg: &Config) -> Result<Chosen, Error> {
    let uring = || super::uring::probe().map_err(|why| format!("uring: {why}"));
    match cfg.backend {
        Backend::Socket => Ok(Chosen {
            backend: Backend::Socket,
            notes: Vec::new(),
        }),
        Backend::Uring => uring()
            .map(|()| Chosen {
                backend: Backend::Uring,
                notes: Vec::new(),
            })
            .map_err(|why| Error::BackendUnavailable(Backend::Uring, why)),
        Backend::Xdp => match xdp_unavailable(cfg) {
            None => Ok(Chosen {
                backend: Backend::Xdp,
                notes: Vec::new(),
            }),
            Some(why) => Err(Error::BackendUnavailable(Backend::Xdp, why)),
        },
        Backend::Auto => {
            let mut notes = Vec::new();
            match xdp_unavailable(cfg) {
                None => {
                    return Ok(Chosen {
                        backend: Backend::Xdp,
                        notes,
                    })
                }
                Some(why) => notes.push(format!("auto: not xdp: {why}")),
            }
            match uring() {
                Ok(()) => Ok(Chosen {
                    backend: Backend::Uring,
                    notes,
                }),
                Err(why) => {
                    notes.push(format!("auto: not uring: {why}"));
                    Ok(Chosen {
                        backend: Backend::Socket,
                        notes,
                    })
                }
            }
        }
    }
}

/// Attach the XDP program for `cfg` (backend already chosen as xdp) and
/// return it with the queue of each worker.
pub fn attach_xdp(cfg: &Config) -> Result<(Arc<XdpProgram>, Vec<u32>), Error> {
    let x = cfg.xdp.as_ref().ok_or_else(|| {
        Error::BackendUnavailable(Backend::Xdp, "no xdp_interface configured".into())
    })?;
    let queues: Vec<u32> = if x.queues.is_empty() {
        (0..cfg.cores.len() as u32).collect()
    } else {
        x.queues.clone()
    };
    let xc = XdpConfig {
        interface: x.interface.clone(),
        queues: queues.clone(),
        ipv4: match cfg.media_ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        },
        ipv6: match cfg.media_ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        },
        ports: cfg.rtp_ports.clone(),
        mode: x.mode,
        attach: AttachMethod::Link,
        zero_copy: x.zero_copy,
        busy_poll: x.busy_poll,
        offload: crate::io::xdp::offload_enabled(),
    };
    let program = XdpProgram::attach(&xc)
        .map_err(|e| Error::BackendUnavailable(Backend::Xdp, e.to_string()))?;
    tracing::info!(
        interface = %x.interface,
        mode = ?program.mode,
        queues = ?queues,
        "XDP program attached"
    );
    Ok((program, queues))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("\n"), Some(vec![]));
        assert_eq!(parse_cpu_list("1-3,5\n"), Some(vec![1, 2, 3, 5]));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("3-1"), None);
    }

    #[test]
    fn core_rules() {
        let avail = [0, 1, 2, 3];
        let none = Isolation::default();
        let e = check_cores(&[5], &[], &avail, &none).unwrap_err();
        assert!(e.contains("core 5 does not exist"), "{e}");
        let e = check_cores(&[1, 1], &[], &avail, &none).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let e = check_cores(&[1, 2], &[0, 2], &avail, &none).unwrap_err();
        assert!(e.contains("core 2 is both"), "{e}");
        let e = check_cores(&[1], &[7], &avail, &none).unwrap_err();
        assert!(e.contains("control core 7"), "{e}");
        let w = check_cores(&[1, 2], &[0], &avail, &none).unwrap();
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("core 1 is not isolated"), "{w:?}");
        let iso = Isolation {
            isolated: vec![1, 2],
            nohz_full: vec![2],
        };
        let w = check_cores(&[1, 2], &[0], &avail, &iso).unwrap();
        assert_eq!(w, vec!["dataplane core 1 is isolated but not nohz_full: the timer tick still interrupts it".to_string()]);
    }

    fn cfg(backend: Backend, xdp: Option<crate::handle::XdpSettings>) -> Config {
        Config {
            backend,
            cores: vec![0],
            rtp_ports: 20_000..=20_099,
            media_ip: "127.0.0.1".parse().unwrap(),
            media_timeout: std::time::Duration::ZERO,
            max_sessions_per_worker: 4,
            xdp,
            control_cores: vec![],
        }
    }

    #[test]
    fn auto_notes_every_fallback() {
        let c = choose(&cfg(Backend::Auto, None)).unwrap();
        assert_ne!(c.backend, Backend::Xdp);
        assert!(
            c.notes[0].contains("not xdp: xdp: no xdp_interface"),
            "{:?}",
            c.notes
        );
        match super::super::uring::probe() {
            Ok(()) => assert_eq!((c.backend, c.notes.len()), (Backend::Uring, 1)),
            Err(_) => {
                assert_eq!(c.backend, Backend::Socket);
                assert!(c.notes[1].contains("not uring"), "{:?}", c.notes);
            }
        }
        let e = choose(&cfg(Backend::Xdp, None)).unwrap_err();
        assert!(e.to_string().contains("no xdp_interface"), "{e}");
        let x = crate::handle::XdpSettings {
            interface: "no-such-if7".into(),
            queues: vec![],
            zero_copy: false,
            busy_poll: false,
            mode: xdp::XdpMode::Generic,
        };
        let e = choose(&cfg(Backend::Xdp, Some(x.clone()))).unwrap_err();
        assert!(e.to_string().contains("no-such-if7"), "{e}");
        let c = choose(&cfg(Backend::Auto, Some(x.clone()))).unwrap();
        assert!(c.notes[0].contains("no-such-if7"), "{:?}", c.notes);
        let two = crate::handle::XdpSettings {
            queues: vec![0, 1],
            ..x
        };
        let e = choose(&cfg(Backend::Xdp, Some(two))).unwrap_err();
        assert!(e.to_string().contains("one per core"), "{e}");
    }
}
