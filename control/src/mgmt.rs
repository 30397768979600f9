//! The management socket: what `tandemctl` talks to.
//!
//! A Unix stream socket (path from `[mgmt] socket`). The protocol is one JSON
//! object per line each way: a [`MgmtRequest`] in, a [`MgmtReply`] out, then the
//! connection may send another request. Replies are built by the run loop from
//! the call manager's state, so the socket task never touches call state itself.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A request from `tandemctl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum MgmtRequest {
    ShowCalls,
    ShowRegistrations,
    ShowWorkers,
    ShowSip,
    Hangup {
        id: String,
    },
    ShowTrunks,
    /// PRI spans (`[pstn]`): D-channel, alarms, B-channels in use.
    ShowSpans,
    /// PRI B-channels: state, call, numbers.
    ShowChannels,
    /// Every counter of the metrics endpoint, in its Prometheus text form.
    ShowStats,
}

/// The reply: `ok` plus data, or an error message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MgmtReply {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl MgmtReply {
    pub fn data(v: impl Serialize) -> Self {
        match serde_json::to_value(v) {
            Ok(v) => MgmtReply {
                ok: true,
                error: None,
                data: Some(v),
            },
            Err(e) => MgmtReply::error(format!("cannot encode reply: {e}")),
        }
    }
    pub fn error(msg: impl Into<String>) -> Self {
        MgmtReply {
            ok: false,
            error: Some(msg.into()),
            data: None,
        }
    }
}

/// One leg of an active call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LegInfo {
    pub side: String,
    pub call_id: String,
    pub peer: String,
    pub user: String,
    pub state: String,
    pub local_media: Option<String>,
    pub remote_media: Option<String>,
}

/// An active call (`show calls`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallInfo {
    pub id: String,
    pub state: String,
    pub caller: String,
    pub exten: String,
    pub context: String,
    pub duration_s: u64,
    pub answered_s: Option<u64>,
    pub media_session: Option<u32>,
    pub worker: Option<usize>,
    pub legs: Vec<LegInfo>,
}

/// A registered contact (`show registrations`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationInfo {
    pub user: String,
    pub contact: String,
    pub source: String,
    pub expires_s: u64,
    pub user_agent: Option<String>,
}

/// A SIP trunk and its registration (`show trunks`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrunkInfo {
    pub name: String,
    pub host: String,
    pub username: String,
    pub register: bool,
    /// `registered`, `registering`, `rejected`, `unregistered` or `not registering`.
    pub state: String,
    /// Status of the last final response to our REGISTER.
    pub last_status: Option<u16>,
    /// Seconds until the registration lapses.
    pub expires_s: Option<u64>,
    /// Seconds until the next REGISTER (refresh or retry).
    pub next_register_s: Option<u64>,
    pub trust: bool,
    pub context: String,
    pub calls_out: u64,
    pub calls_in: u64,
}

/// A dataplane worker's counters (`show workers`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub worker: usize,
    pub core: usize,
    pub sessions: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub drops_malformed: u64,
    pub drops_wrong_source: u64,
    pub drops_no_remote: u64,
    pub drops_tx_error: u64,
    /// Sessions transcoding now (one channel = both directions of one call).
    #[serde(default)]
    pub transcoding_channels: u64,
    /// Total nanoseconds spent in the transcoding path since start.
    #[serde(default)]
    pub codec_ns: u64,
    /// Total samples decoded by the transcoding path (both directions).
    #[serde(default)]
    pub codec_samples: u64,
    /// CPU cost of one transcoding channel: nanoseconds per second of audio, both
    /// directions (`codec_ns / (codec_samples / 16000)`); `None` before any transcoding.
    /// 1e9 divided by it is the channels one core carries.
    #[serde(default)]
    pub codec_ns_per_channel_second: Option<u64>,
    /// I/O backend running (`Auto` resolved) and the one configured.
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub requested_backend: String,
    /// NIC queue this worker's AF_XDP socket is bound to (xdp only).
    #[serde(default)]
    pub queue: Option<u32>,
    /// XDP attach mode and copy/zero-copy request (xdp only).
    #[serde(default)]
    pub xdp_mode: Option<String>,
    /// The control plane's configured cores.
    #[serde(default)]
    pub control_cores: Vec<usize>,
    /// Why a faster backend was not chosen, and core layout warnings (the
    /// same for every worker).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl WorkerInfo {
    /// Add the dataplane layout: backend choice, queue, fallback reasons.
    pub fn with_selection(mut self, sel: &dataplane::Selection) -> Self {
        self.backend = format!("{:?}", sel.backend).to_ascii_lowercase();
        self.requested_backend = format!("{:?}", sel.requested).to_ascii_lowercase();
        self.queue = sel.queues.get(self.worker).copied();
        self.xdp_mode = sel.xdp_mode.clone();
        self.control_cores = sel.control_cores.clone();
        self.notes = sel.notes.clone();
        self
    }
}

impl From<dataplane::WorkerStats> for WorkerInfo {
    fn from(s: dataplane::WorkerStats) -> Self {
        WorkerInfo {
            worker: s.worker,
            core: s.core,
            sessions: s.sessions,
            packets_in: s.packets_in,
            packets_out: s.packets_out,
            drops_malformed: s.drops.malformed,
            drops_wrong_source: s.drops.wrong_source,
            drops_no_remote: s.drops.no_remote,
            drops_tx_error: s.drops.tx_error,
            transcoding_channels: s.transcoding_channels,
            codec_ns: s.codec_ns,
            codec_samples: s.codec_samples,
            codec_ns_per_channel_second: s.codec_ns_per_channel_second(),
            backend: String::new(),
            requested_backend: String::new(),
            queue: None,
            xdp_mode: None,
            control_cores: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// SIP counters (`show sip`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct SipStats {
    /// Datagrams received on the SIP listeners.
    pub rx: u64,
    /// Datagrams sent.
    pub tx: u64,
    /// Messages that failed to parse.
    pub parse_errors: u64,
    /// Of those, requests answered with 400.
    pub bad_request_sent: u64,
    /// Of those, messages dropped (no response could be formed).
    pub dropped: u64,
    pub active_calls: u64,
    pub transactions: u64,
}

/// A request from a socket connection, with the channel for its reply.
pub type MgmtCall = (MgmtRequest, oneshot::Sender<MgmtReply>);

/// Bind the socket (creating its directory, replacing a stale socket file).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // Refuse to steal the socket of a running daemon.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{}: another tandemd is already listening there",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

/// Accept connections forever, forwarding each request to the run loop.
pub async fn serve(listener: UnixListener, to_engine: mpsc::Sender<MgmtCall>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = to_engine.clone();
        tokio::spawn(async move {
            let _ = handle_conn(stream, tx).await;
        });
    }
}

async fn handle_conn(stream: UnixStream, to_engine: mpsc::Sender<MgmtCall>) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<MgmtRequest>(&line) {
            Err(e) => MgmtReply::error(format!("bad request: {e}")),
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                if to_engine.send((req, tx)).await.is_err() {
                    MgmtReply::error("daemon is shutting down")
                } else {
                    rx.await
                        .unwrap_or_else(|_| MgmtReply::error("daemon is shutting down"))
                }
            }
        };
        let mut out = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
        out.push('\n');
        wr.write_all(out.as_bytes()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: MgmtRequest = serde_json::from_str(r#"{"cmd":"hangup","id":"c1"}"#).unwrap();
        assert_eq!(r, MgmtRequest::Hangup { id: "c1".into() });
        assert_eq!(
            serde_json::to_string(&MgmtRequest::ShowCalls).unwrap(),
            r#"{"cmd":"show_calls"}"#
        );
        assert!(serde_json::from_str::<MgmtRequest>(r#"{"cmd":"reboot"}"#).is_err());
    }
}
