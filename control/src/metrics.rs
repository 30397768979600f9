//! The Prometheus text metrics endpoint (`[metrics] listen = "127.0.0.1:9090"`, off by default).
//!
//! A tiny HTTP/1.1 server on the control plane's tokio runtime: it answers `GET /metrics` with
//! the counters in the Prometheus text exposition format (version 0.0.4), one request per
//! connection (`Connection: close`). No HTTP library: the request head is read up to
//! [`MAX_HEAD`] bytes within [`READ_TIMEOUT`], its request line parsed by [`parse_request`]
//! (pure, unit tested), and the body rendered by [`render`] (pure) from a [`Snapshot`].
//!
//! The connection task never touches call state: it asks the run loop for a [`Snapshot`]
//! through a channel, the way the management socket does ([`crate::mgmt`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::mgmt::SipStats;

/// Longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8192;
/// A client that has not sent its request head within this is disconnected.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 16;

/// The counters one scrape shows, taken by the run loop.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sip: SipStats,
    /// Calls set up since start (A legs accepted by the call manager).
    pub calls_total: u64,
    /// Registered contacts now.
    pub registrations: u64,
    pub workers: Vec<dataplane::WorkerStats>,
    /// Calls by state (`ringing`, `up`, ...), from the call manager.
    pub calls_by_state: Vec<(String, u64)>,
    /// CPU seconds of each dataplane worker thread (`tandem-dp-N`), by worker index.
    pub worker_cpu_s: Vec<(usize, f64)>,
    /// RADIUS accounting records waiting in the spool (none without `[radius]`).
    pub radius_spooled: Option<u64>,
    /// PRI spans: number, D-channel up, active alarms.
    pub spans: Vec<(u16, bool, Vec<&'static str>)>,
}

/// A request for a snapshot, with the channel for the answer.
pub type MetricsCall = oneshot::Sender<Snapshot>;

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (or `HEAD`).
    Metrics { head_only: bool },
    /// `GET /`: a one-line pointer to `/metrics`.
    Index { head_only: bool },
}

/// Why a request was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The client sent something that is not an HTTP/1.x request line.
    #[error("malformed request line")]
    BadRequest,
    /// The client used a method other than GET/HEAD.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The client asked for a path we do not serve.
    #[error("not found")]
    NotFound,
    /// The client's request head exceeded [`MAX_HEAD`].
    #[error("request head too large")]
    TooLarge,
}

impl HttpError {
    /// Status line code and reason.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            HttpError::BadRequest => (400, "Bad Request"),
            HttpError::MethodNotAllowed => (405, "Method Not Allowed"),
            HttpError::NotFound => (404, "Not Found"),
            HttpError::TooLarge => (431, "Request Header Fields Too Large"),
        }
    }
}

/// Parses the request line of `head` (the bytes up to the blank line).
pub fn parse_request(head: &[u8]) -> Result<Route, HttpError> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .or_else(|| head.iter().position(|&b| b == b'\n'))
        .unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| HttpError::BadRequest)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(HttpError::BadRequest);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(HttpError::MethodNotAllowed),
    };
    let path = target.split(['?', '#']).next().unwrap_or(target);
    match path {
        "/metrics" => Ok(Route::Metrics { head_only }),
        "/" => Ok(Route::Index { head_only }),
        _ => Err(HttpError::NotFound),
    }
}

/// The Prometheus text exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut o = String::with_capacity(4096);
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "tandem_build_info",
        "gauge",
        "Build of the running tandemd (always 1).",
    );
    let _ = writeln!(
        o,
        "tandem_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let scalars: [(&str, &str, &str, u64); 10] = [
        (
            "tandem_calls_active",
            "gauge",
            "Calls in the call manager now.",
            s.sip.active_calls,
        ),
        (
            "tandem_calls_total",
            "counter",
            "Calls accepted by the call manager since start.",
            s.calls_total,
        ),
        (
            "tandem_registrations",
            "gauge",
            "Registered contacts now.",
            s.registrations,
        ),
        (
            "tandem_sip_received_total",
            "counter",
            "SIP datagrams received.",
            s.sip.rx,
        ),
        (
            "tandem_sip_sent_total",
            "counter",
            "SIP datagrams sent.",
            s.sip.tx,
        ),
        (
            "tandem_sip_parse_errors_total",
            "counter",
            "SIP messages that failed to parse.",
            s.sip.parse_errors,
        ),
        (
            "tandem_sip_bad_request_sent_total",
            "counter",
            "Malformed requests answered with 400.",
            s.sip.bad_request_sent,
        ),
        (
            "tandem_sip_dropped_total",
            "counter",
            "Malformed messages dropped without a response.",
            s.sip.dropped,
        ),
        (
            "tandem_sip_transactions",
            "gauge",
            "SIP transactions in flight.",
            s.sip.transactions,
        ),
        (
            "tandem_dataplane_workers",
            "gauge",
            "Dataplane worker threads.",
            s.workers.len() as u64,
        ),
    ];
    for (name, kind, help, v) in scalars {
        family(&mut o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }
    type Field = fn(&dataplane::WorkerStats) -> u64;
    let per_worker: [(&str, &str, &str, Field); 4] = [
        (
            "tandem_worker_sessions",
            "gauge",
            "Media sessions on the worker.",
            |w| w.sessions,
        ),
        (
            "tandem_worker_packets_in_total",
            "counter",
            "RTP/RTCP packets received by the worker.",
            |w| w.packets_in,
        ),
        (
            "tandem_worker_packets_out_total",
            "counter",
            "RTP/RTCP packets sent by the worker.",
            |w| w.packets_out,
        ),
        (
            "tandem_worker_transcoding_channels",
            "gauge",
            "Sessions transcoding on the worker.",
            |w| w.transcoding_channels,
        ),
    ];
    for (name, kind, help, f) in per_worker {
        family(&mut o, name, kind, help);
        for w in &s.workers {
            let _ = writeln!(
                o,
                "{name}{{worker=\"{}\",core=\"{}\"}} {}",
                w.worker,
                w.core,
                f(w)
            );
        }
    }
    family(
        &mut o,
        "tandem_worker_drops_total",
        "counter",
        "Packets the worker dropped, by reason.",
    );
    for w in &s.workers {
        for (reason, v) in [
            ("malformed", w.drops.malformed),
            ("wrong_source", w.drops.wrong_source),
            ("no_remote", w.drops.no_remote),
            ("tx_error", w.drops.tx_error),
        ] {
            let _ = writeln!(
                o,
                "tandem_worker_drops_total{{worker=\"{}\",reason=\"{reason}\"}} {v}",
                w.worker
            );
        }
    }
    family(
        &mut o,
        "tandem_calls",
        "gauge",
        "Calls in the call manager now, by state.",
    );
    for (state, n) in &s.calls_by_state {
        let _ = writeln!(o, "tandem_calls{{state=\"{state}\"}} {n}");
    }
    family(
        &mut o,
        "tandem_worker_cpu_seconds_total",
        "counter",
        "CPU time of the dataplane worker thread.",
    );
    for (worker, secs) in &s.worker_cpu_s {
        let _ = writeln!(
            o,
            "tandem_worker_cpu_seconds_total{{worker=\"{worker}\"}} {secs:.2}"
        );
    }
    if let Some(n) = s.radius_spooled {
        family(
            &mut o,
            "tandem_radius_spooled",
            "gauge",
            "RADIUS accounting records waiting in the spool.",
        );
        let _ = writeln!(o, "tandem_radius_spooled {n}");
    }
    family(
        &mut o,
        "tandem_span_up",
        "gauge",
        "PRI span D-channel established (1) or not (0).",
    );
    for (span, up, _) in &s.spans {
        let _ = writeln!(o, "tandem_span_up{{span=\"{span}\"}} {}", u8::from(*up));
    }
    family(
        &mut o,
        "tandem_span_alarm",
        "gauge",
        "PRI span alarm active (LOS, LOF, AIS, RAI).",
    );
    for (span, _, alarms) in &s.spans {
        for a in ["LOS", "LOF", "AIS", "RAI"] {
            let on = alarms.iter().any(|x| x.eq_ignore_ascii_case(a));
            let _ = writeln!(
                o,
                "tandem_span_alarm{{span=\"{span}\",alarm=\"{a}\"}} {}",
                u8::from(on)
            );
        }
    }
    o
}

/// Calls counted by state, states in first-seen order.
pub fn count_states<'a>(states: impl IntoIterator<Item = &'a str>) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for st in states {
        match out.iter_mut().find(|(s, _)| s == st) {
            Some((_, n)) => *n += 1,
            None => out.push((st.to_string(), 1)),
        }
    }
    out
}

/// User plus system CPU seconds from a `/proc/PID/task/TID/stat` line (fields 14 and 15, in
/// USER_HZ = 100 ticks per second, the kernel's fixed ABI for these files); the command name
/// in parentheses may hold spaces, so fields are counted after its closing `)`.
pub fn task_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After `)`: state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds of this process's dataplane worker threads (named `tandem-dp-N`), read from
/// /proc/self/task; empty where /proc is not readable.
pub fn worker_cpu_seconds() -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let Some(idx) = comm
            .trim()
            .strip_prefix("tandem-dp-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(secs) = std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| task_cpu_seconds(&s))
        {
            out.push((idx, secs));
        }
    }
    out.sort_by_key(|&(i, _)| i);
    out
}

/// The id of the call a call-manager log line announces (`call c12: 1001 -> 600 ...`), so
/// the run loop can count calls started without a hook in the call manager (ids are
/// sequential from 1, so the highest seen is the number started).
pub fn call_started(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("call ")?;
    let (id, tail) = rest.split_once(": ")?;
    if !tail.contains(" -> ") {
        return None;
    }
    id.strip_prefix('c').unwrap_or(id).parse().ok()
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections forever; each asks the run loop for a [`Snapshot`] per request.
pub async fn serve(listener: TcpListener, to_loop: mpsc::Sender<MetricsCall>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let tx = to_loop.clone();
        tokio::spawn(async move {
            let _ = handle_conn(stream, tx).await;
            drop(permit);
        });
    }
}

async fn handle_conn(
    mut stream: TcpStream,
    to_loop: mpsc::Sender<MetricsCall>,
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let (status, reason, ctype, body, head_only) = match head.and_then(|h| parse_request(&h)) {
        Ok(Route::Metrics { head_only }) => {
            let (tx, rx) = oneshot::channel();
            if to_loop.send(tx).await.is_err() {
                return Ok(());
            }
            let Ok(snap) = rx.await else { return Ok(()) };
            (
                200,
                "OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(&snap),
                head_only,
            )
        }
        Ok(Route::Index { head_only }) => (
            200,
            "OK",
            "text/plain; charset=utf-8",
            "tandemd metrics: GET /metrics\n".to_string(),
            head_only,
        ),
        Err(e) => {
            let (code, reason) = e.status();
            (
                code,
                reason,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
                false,
            )
        }
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads until the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Result<Vec<u8>, HttpError>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            // The peer closed before a blank line: serve what came if it is a request line.
            return Ok(if head.is_empty() {
                Err(HttpError::BadRequest)
            } else {
                Ok(head)
            });
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Ok(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(Err(HttpError::TooLarge));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_stat_cpu_and_state_counts() {
        // A thread name with spaces and a parenthesis; utime 250 + stime 50 ticks.
        let stat = "4242 (tandem dp) x) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(task_cpu_seconds(stat), Some(3.0));
        assert_eq!(task_cpu_seconds("garbage"), None);
        assert_eq!(
            count_states(["ringing", "up", "up"]),
            vec![("ringing".to_string(), 1), ("up".to_string(), 2)]
        );
        let text = render(&Snapshot {
            calls_by_state: count_states(["up"]),
            worker_cpu_s: vec![(0, 1.5)],
            radius_spooled: Some(3),
            spans: vec![(1, false, vec!["LOS"])],
            ..Snapshot::default()
        });
        for line in [
            "tandem_calls{state=\"up\"} 1",
            "tandem_worker_cpu_seconds_total{worker=\"0\"} 1.50",
            "tandem_radius_spooled 3",
            "tandem_span_up{span=\"1\"} 0",
            "tandem_span_alarm{span=\"1\",alarm=\"LOS\"} 1",
            "tandem_span_alarm{span=\"1\",alarm=\"RAI\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Route::Metrics { head_only: false })
        );
        assert_eq!(
            parse_request(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Ok(Route::Metrics { head_only: true })
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n\r\n"),
            Ok(Route::Index { head_only: false })
        );
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Err(HttpError::MethodNotAllowed)
        );
        assert_eq!(
            parse_request(b"GET /secret HTTP/1.1\r\n\r\n"),
            Err(HttpError::NotFound)
        );
        for bad in [
            &b""[..],
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics SIP/2.0\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_request(bad), Err(HttpError::BadRequest), "{bad:?}");
        }
        assert_eq!(HttpError::TooLarge.status().0, 431);
    }

    #[test]
    fn exposition_has_every_family_once_with_values() {
        let mut w = dataplane::WorkerStats {
            worker: 1,
            core: 3,
            sessions: 7,
            packets_in: 1000,
            packets_out: 990,
            ..Default::default()
        };
        w.drops.wrong_source = 4;
        let s = Snapshot {
            sip: SipStats {
                rx: 11,
                tx: 12,
                active_calls: 2,
                ..Default::default()
            },
            calls_total: 5,
            registrations: 3,
            workers: vec![w],
            ..Snapshot::default()
        };
        let text = render(&s);
        for line in [
            "tandem_calls_active 2",
            "tandem_calls_total 5",
            "tandem_registrations 3",
            "tandem_sip_received_total 11",
            "tandem_sip_sent_total 12",
            "tandem_worker_packets_in_total{worker=\"1\",core=\"3\"} 1000",
            "tandem_worker_packets_out_total{worker=\"1\",core=\"3\"} 990",
            "tandem_worker_drops_total{worker=\"1\",reason=\"wrong_source\"} 4",
            "tandem_worker_drops_total{worker=\"1\",reason=\"tx_error\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(text.contains("tandem_build_info{version=\""));
        // Every sample line belongs to a family declared once, before it.
        let mut declared = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "{name} declared twice");
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} sampled before its TYPE");
                let v = l.rsplit(' ').next().unwrap();
                assert!(v.parse::<f64>().is_ok(), "bad value in {l}");
            }
        }
    }

    #[test]
    fn call_start_lines() {
        assert_eq!(
            call_started("call c12: 1001 -> 600 (context default, Call-ID x@y)"),
            Some(12)
        );
        assert_eq!(call_started("call 7: a -> b"), Some(7));
        assert_eq!(call_started("call c12: ended"), None);
        assert_eq!(
            call_started("call c12: dialing SIP/1002 at 127.0.0.1:5"),
            None
        );
        assert_eq!(call_started("calls 1: a -> b"), None);
        assert_eq!(call_started("call x: a -> b"), None);
    }
}
