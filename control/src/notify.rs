//! systemd readiness and watchdog notifications (`Type=notify`, `WatchdogSec=`), without
//! libsystemd: the protocol is one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//!
//! [`start`] is what `tandemd` calls once its dataplane workers run: it sends `READY=1` and,
//! when systemd asked for a watchdog (`$WATCHDOG_USEC`, for this PID), starts a thread that
//! sends `WATCHDOG=1` every half interval as long as every dataplane worker thread
//! (`tandem-dp-N`) is alive. A dead worker stops the petting, so systemd restarts the daemon.
//! Outside systemd (no `$NOTIFY_SOCKET`) it does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket file.
    Path(PathBuf),
    /// An abstract-namespace socket (`@name` in `$NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

impl Target {
    /// Parses a `$NOTIFY_SOCKET` value (`None` when empty or relative).
    pub fn parse(v: &str) -> Option<Target> {
        if let Some(name) = v.strip_prefix('@') {
            return Some(Target::Abstract(name.as_bytes().to_vec()));
        }
        v.starts_with('/').then(|| Target::Path(PathBuf::from(v)))
    }

    /// `$NOTIFY_SOCKET`, if set and usable.
    pub fn from_env() -> Option<Target> {
        std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|v| Target::parse(&v))
    }

    /// Sends one notification (`state` is newline-separated `KEY=VALUE` lines).
    pub fn send(&self, state: &str) -> io::Result<()> {
        let s = UnixDatagram::unbound()?;
        match self {
            Target::Path(p) => s.send_to(state.as_bytes(), p).map(|_| ()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(state.as_bytes(), &addr).map(|_| ())
            }
        }
    }
}

/// The watchdog interval systemd asked of this process: `$WATCHDOG_USEC`, if `$WATCHDOG_PID`
/// is unset or names us.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let us: u64 = usec?.trim().parse().ok()?;
    (us > 0).then(|| Duration::from_micros(us))
}

/// How many threads of this process are named `tandem-dp-*` and not dead, from the text of
/// each `/proc/self/task/*/stat` line (the name is in parentheses, the state follows).
pub fn live_workers<'a>(stats: impl IntoIterator<Item = &'a str>) -> usize {
    stats
        .into_iter()
        .filter(|s| {
            let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) else {
                return false;
            };
            let name = &s[open + 1..close];
            let state = s[close + 1..].split_whitespace().next().unwrap_or("X");
            name.starts_with("tandem-dp-") && !matches!(state, "Z" | "X" | "x")
        })
        .count()
}

fn read_task_stats() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Tells systemd the daemon is ready and starts the watchdog thread (see the module
/// documentation). `workers` is the number of dataplane workers that must stay alive.
/// Failures are logged, never fatal: the daemon works without systemd.
pub fn start(workers: usize) {
    let Some(target) = Target::from_env() else {
        return;
    };
    if let Err(e) = target.send("READY=1\nSTATUS=tandemd running") {
        tracing::warn!("sd_notify READY: {e}");
        return;
    }
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    let Some(interval) = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
    else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("tandem-watchdog".into())
        .spawn(move || loop {
            let stats = read_task_stats();
            let live = live_workers(stats.iter().map(String::as_str));
            if live < workers {
                tracing::error!(
                    "watchdog: {live} of {workers} dataplane workers alive; no longer petting"
                );
                let _ = target.send(&format!(
                    "STATUS=dataplane worker died ({live} of {workers} alive)"
                ));
                return;
            }
            if let Err(e) = target.send("WATCHDOG=1") {
                tracing::warn!("sd_notify WATCHDOG: {e}");
            }
            std::thread::sleep(interval / 2);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the watchdog thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_values() {
        assert_eq!(
            Target::parse("/run/systemd/notify"),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            Target::parse("@/org/x"),
            Some(Target::Abstract(b"/org/x".to_vec()))
        );
        assert_eq!(Target::parse(""), None);
        assert_eq!(Target::parse("relative"), None);
    }

    #[test]
    fn watchdog_interval_is_ours_only() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn workers_counted_from_task_stats() {
        let stats = [
            "100 (tandemd) S 1 100",
            "101 (tandem-dp-0) R 1 100",
            "102 (tandem-dp-1) Z 1 100",
            "103 (tokio-runtime-w) S 1 100",
            "garbage",
        ];
        assert_eq!(live_workers(stats), 1);
    }

    #[test]
    fn a_datagram_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("tandem-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        Target::Path(path.clone()).send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn this_process_has_no_dataplane_workers() {
        let stats = read_task_stats();
        assert!(!stats.is_empty());
        assert_eq!(live_workers(stats.iter().map(String::as_str)), 0);
    }
}
