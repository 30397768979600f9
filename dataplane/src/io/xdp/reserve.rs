//! Media ports without kernel sockets: reserving the RTP range in the
//! network namespace.
//!
//! With the `xdp` backend the program takes every frame to the media address
//! in the RTP range before the kernel stack sees it, so the relay does not
//! need a kernel socket per media port (4 per call: 40 000 descriptors at
//! 10 000 calls, more than a usual `RLIMIT_NOFILE` allows). What a socket
//! also did was keep the port from anyone else; instead the range is added
//! to `net.ipv4.ip_local_reserved_ports` of the namespace (the sysctl covers
//! IPv4 and IPv6), so the kernel never picks one of these ports for an
//! ephemeral bind or connect. An explicit `bind` by another process still
//! succeeds, but that socket receives nothing through the XDP interface: the
//! program takes those frames first (do not configure another service in
//! the range, as with any RTP range).
//!
//! Frames for those ports that the program does not take (arriving on
//! another interface, IPv4 with options or fragments, a queue without a
//! worker) meet no socket: the kernel answers ICMP port unreachable, as for
//! any closed port, and the relay does not see them. Sending uses the
//! AF_XDP ring, else a raw socket per worker ([`super::rawtx`]) that has the
//! kernel route and resolve the neighbour.
//!
//! The reservation is added on start and the previous value written back on
//! drop (if nobody changed it meanwhile). After a crash the range stays
//! reserved, which only keeps ephemeral ports out of it.
//!
//! When the reservation cannot be made (no write access to the sysctl, a
//! media address left unspecified, `[dataplane] xdp_port_sockets = true`),
//! the relay binds a socket per port as the other backends do, and says why
//! in the log.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The sysctl of the calling thread's network namespace.
pub const SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// Process-wide default of "bind a socket per media port even with xdp"
/// (`[dataplane] xdp_port_sockets`, set before `Dataplane::start`).
static PORT_SOCKETS: AtomicBool = AtomicBool::new(false);

/// Set whether the xdp backend binds a kernel socket per media port anyway.
pub fn set_port_sockets(on: bool) {
    PORT_SOCKETS.store(on, Ordering::Relaxed);
}

/// [`set_port_sockets`]'s value, overridden by the environment variable
/// `TANDEM_XDP_PORT_SOCKETS=0|1` when set (benchmarks, tests).
pub fn port_sockets() -> bool {
    match std::env::var("TANDEM_XDP_PORT_SOCKETS").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => PORT_SOCKETS.load(Ordering::Relaxed),
    }
}

/// Why the reservation was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReserveError {
    /// Host: the sysctl cannot be read or written (no permission, no procfs).
    #[error("{0}: {1}")]
    Sysctl(PathBuf, std::io::Error),
    /// Host: the sysctl holds something that is not a port list.
    #[error("{0} holds {1:?}, not a port list")]
    Format(PathBuf, String),
    /// Host: the written range did not show up when read back.
    #[error("{0} did not take {1}")]
    NotTaken(PathBuf, String),
}

/// The RTP range added to the namespace's reserved ports; the previous
/// value is written back on drop.
#[derive(Debug)]
pub struct PortReservation {
    path: PathBuf,
    previous: String,
    written: String,
}

impl PortReservation {
    /// Add `ports` to the reserved ports of the calling thread's network
    /// namespace.
    pub fn make(ports: RangeInclusive<u16>) -> Result<PortReservation, ReserveError> {
        Self::make_at(Path::new(SYSCTL), ports)
    }

    /// [`PortReservation::make`] on the file `path` (tests).
    pub fn make_at(path: &Path, ports: RangeInclusive<u16>) -> Result<Self, ReserveError> {
        let io = |e| ReserveError::Sysctl(path.to_owned(), e);
        let previous = std::fs::read_to_string(path).map_err(io)?;
        let previous = previous.trim().to_owned();
        let mut list = parse(&previous)
            .ok_or_else(|| ReserveError::Format(path.to_owned(), previous.clone()))?;
        list.push(ports.clone());
        let value = format(&list);
        std::fs::write(path, format!("{value}\n")).map_err(io)?;
        let written = std::fs::read_to_string(path).map_err(io)?;
        let written = written.trim().to_owned();
        let covered = parse(&written).is_some_and(|l| {
            l.iter()
                .any(|r| r.start() <= ports.start() && ports.end() <= r.end())
        });
        if !covered {
            return Err(ReserveError::NotTaken(
                path.to_owned(),
                format!("{}-{}", ports.start(), ports.end()),
            ));
        }
        Ok(PortReservation {
            path: path.to_owned(),
            previous,
            written,
        })
    }
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        // Someone else changed it since: leave theirs.
        let now = std::fs::read_to_string(&self.path).unwrap_or_default();
        if now.trim() != self.written {
            return;
        }
        if let Err(e) = std::fs::write(&self.path, format!("{}\n", self.previous)) {
            tracing::warn!(path = %self.path.display(), error = %e, "restoring reserved ports");
        }
    }
}

/// The dataplane's choice for the xdp backend: the reservation of `ports`
/// (ports then get no sockets), or `None` with the reason (ports get
/// sockets, as with the other backends).
pub fn for_dataplane(
    media_ip: std::net::IpAddr,
    ports: &RangeInclusive<u16>,
) -> Result<PortReservation, String> {
    if port_sockets() {
        return Err("a socket per media port as configured (xdp_port_sockets)".into());
    }
    if media_ip.is_unspecified() {
        return Err(format!(
            "a socket per media port: media_ip {media_ip} is unspecified"
        ));
    }
    PortReservation::make(ports.clone())
        .map_err(|e| format!("a socket per media port: cannot reserve the RTP range ({e})"))
}

/// Parse a port list as the sysctl prints it (`"8080,9000-9010"`, empty
/// for none).
pub fn parse(s: &str) -> Option<Vec<RangeInclusive<u16>>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|item| {
            let item = item.trim();
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some(a..=b)
        })
        .collect()
}

/// Write a port list the way the sysctl takes it.
pub fn format(list: &[RangeInclusive<u16>]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        })
        .collect();
    items.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists() {
        assert_eq!(parse(""), Some(vec![]));
        assert_eq!(parse("\n"), Some(vec![]));
        assert_eq!(
            parse("8080,9000-9010\n"),
            Some(vec![8080..=8080, 9000..=9010])
        );
        assert_eq!(parse("9010-9000"), None);
        assert_eq!(parse("x"), None);
        assert_eq!(parse("70000"), None);
        assert_eq!(format(&[8080..=8080, 20000..=29999]), "8080,20000-29999");
        assert_eq!(format(&[]), "");
    }

    #[test]
    fn reservation_adds_and_restores() {
        let dir = std::env::temp_dir().join(format!("tandem-reserve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ports");
        std::fs::write(&f, "8080\n").unwrap();
        let r = PortReservation::make_at(&f, 20_000..=29_999).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap().trim(),
            "8080,20000-29999"
        );
        drop(r);
        assert_eq!(std::fs::read_to_string(&f).unwrap().trim(), "8080");
        // Changed by someone else meanwhile: left alone.
        let r = PortReservation::make_at(&f, 20_000..=20_001).unwrap();
        std::fs::write(&f, "1\n").unwrap();
        drop(r);
        assert_eq!(std::fs::read_to_string(&f).unwrap().trim(), "1");
        std::fs::write(&f, "junk\n").unwrap();
        let e = PortReservation::make_at(&f, 1..=2).unwrap_err();
        assert!(e.to_string().contains("junk"), "{e}");
        let e = PortReservation::make_at(&dir.join("absent"), 1..=2).unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
