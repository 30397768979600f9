//! `tandem-bench`: a SIP + RTP call load generator for Tandem (or any SIP B2BUA/PBX).
//!
//! It registers users with digest authentication (or acts as a trunk), places calls at a rate
//! up to a concurrency target, answers the calls the gateway routes back to bench users,
//! sends and receives real G.711/G.729 media (20 ms, both directions, optional RFC 4733 DTMF),
//! holds, hangs up, and reports setup rate and latency, failures by SIP status, concurrency
//! reached, RTP loss, jitter and one-way delay per stream, an E-model MOS estimate and the
//! gateway's CPU per core.
//!
//! Layers:
//! - [`ua`]: the sans-IO SIP engine (registration, caller and callee dialogs, retransmissions),
//!   tested with virtual time;
//! - [`cpsua`]: lean sans-IO callers and callees for `cps` (no message tree, one byte buffer);
//! - [`media`]: RTP packet building/parsing and per-stream receive statistics (sans-IO);
//! - [`quality`]: the simplified G.107 E-model and quantiles; [`cpu`]: `/proc` sampling;
//! - [`report`]: the result, its human summary, JSON and SVG chart;
//! - [`run`]: the edge: sockets, the clock, the call scheduler of each mode and the media
//!   thread.
//!
//! Bounded by construction: every run has a maximum time and a maximum number of attempts, and
//! targets outside loopback are refused unless `--allow-remote` is given.

pub mod cps;
pub mod cpsua;
pub mod cpu;
pub mod media;
pub mod quality;
pub mod report;
pub mod run;
pub mod ua;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use report::Report;
pub use ua::{Account, Codec};

/// What load shape to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Raise the call rate step by step until the failure budget breaks; report the maximum.
    Ramp,
    /// Place `calls` calls at `rate`, hold each for `duration`.
    Hold,
    /// Place `calls` calls at once, hold each for `duration`.
    Burst,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub target: SocketAddr,
    /// Registered users (empty with `trunk`).
    pub users: Vec<Account>,
    pub trunk: bool,
    /// Number to dial for every call (an echo extension, or the trunk's number); `None`: call
    /// another bench user (user 2k calls user 2k+1).
    pub dial: Option<String>,
    /// Hold/burst: calls to place (and the concurrency target). Ramp: concurrency cap.
    pub calls: usize,
    /// Call attempts per second (ramp: the first step's rate and the increment).
    pub rate: f64,
    /// How long each answered call is held.
    pub duration: Duration,
    /// Ramp: length of each rate step.
    pub step: Duration,
    /// Hard bound on the placing phase.
    pub max_time: Duration,
    pub codec: Codec,
    /// DTMF digits each caller sends (RFC 4733) one second into the call; empty: none.
    pub dtmf: String,
    /// Gateway process to sample CPU from.
    pub pid: Option<u32>,
    /// Local SIP source addresses to spread calls over (0: automatic).
    pub sources: usize,
    /// Local IP for SIP and RTP when the target is not loopback.
    pub local_ip: Option<IpAddr>,
    /// Ramp budget: a step fails above this percentage of failed attempts...
    pub failure_budget_pct: f64,
    /// ... or above this RTP loss percentage ...
    pub loss_budget_pct: f64,
    /// ... or above this p99 setup latency.
    pub setup_budget_ms: f64,
    pub setup_timeout: Duration,
    /// Print a live progress line on stderr.
    pub progress: bool,
    /// Send and receive RTP (off: a signalling-only run, for call setup rates).
    pub media: bool,
    /// Media threads, each with its own RTP socket (0: one per 250 calls, 1 to 8).
    pub media_threads: usize,
}

impl Default for Options {
    /// Defaults that work against `tandemd` run with no arguments (the embedded default).
    fn default() -> Options {
        Options {
            mode: Mode::Hold,
            target: SocketAddr::from(([127, 0, 0, 1], 5060)),
            users: (1001..=1004)
                .map(|u| Account {
                    name: u.to_string(),
                    password: format!("tandem{u}"),
                })
                .collect(),
            trunk: false,
            dial: None,
            calls: 10,
            rate: 5.0,
            duration: Duration::from_secs(5),
            step: Duration::from_secs(10),
            max_time: Duration::from_secs(300),
            codec: Codec::Pcmu,
            dtmf: String::new(),
            pid: None,
            sources: 0,
            local_ip: None,
            failure_budget_pct: 1.0,
            loss_budget_pct: 1.0,
            setup_budget_ms: 1000.0,
            setup_timeout: Duration::from_secs(8),
            progress: false,
            media: true,
            media_threads: 0,
        }
    }
}

/// Why a run could not start or finish. Caused by the operator's options or the machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The options are inconsistent.
    #[error("bad options: {0}")]
    Options(String),
    /// A socket could not be opened.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// No user could register: the target is down or the credentials are wrong.
    #[error("registration failed: {0}")]
    Register(String),
}
