//! `tandem.toml`: loading, validation and the embedded default.
//!
//! One TOML file configures the daemon; it names the dialplan (`extensions.conf`)
//! relative to itself. Every error names `file:line: what is wrong`, and unknown
//! keys or sections are errors (a typo must never be silently ignored). The
//! embedded default (`tandemd` with no arguments) is the TOML text in
//! [`EMBEDDED_DEFAULT`] plus the embedded dialplan: loopback only, demo users
//! 1001-1004 with password `tandem` + name, and a simulated TDM400P analog card (FXS ports
//! 1-4 as extensions 201-204, FXO port 5 to a simulated exchange line).
//!
//! Every key is documented in `docs/config.md`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::dialplan::Dialplan;

/// The embedded default configuration (`tandemd` with no arguments).
/// `cores` is filled in at load time with the machine's last core.
pub const EMBEDDED_DEFAULT: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
realm = "tandem"

[[sip.user]]
name = "1001"
password = "tandem1001"

[[sip.user]]
name = "1002"
password = "tandem1002"

[[sip.user]]
name = "1003"
password = "tandem1003"

[[sip.user]]
name = "1004"
password = "tandem1004"

[dataplane]
backend = "socket"
rtp_ports = "20000-29999"
media_ip = "127.0.0.1"

[dialplan]
context = "default"
[analog]
card = "sim"
[[analog.port]]
port = 1
kind = "fxs"
extension = "201"
callerid_number = "201"
callerid_name = "Analog 201"
[[analog.port]]
port = 2
kind = "fxs"
extension = "202"
callerid_number = "202"
callerid_name = "Analog 202"
[[analog.port]]
port = 3
kind = "fxs"
extension = "203"
callerid_number = "203"
callerid_name = "Analog 203"
[[analog.port]]
port = 4
kind = "fxs"
extension = "204"
callerid_number = "204"
callerid_name = "Analog 204"
[[analog.port]]
port = 5
kind = "fxo"
extension = "200"
"#;

/// A configuration error: where, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

/// SIP transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    /// RFC 3261 §18 over TCP (Content-Length framing, replies on the same connection).
    Tcp,
    /// TCP with TLS (sips:, usually port 5061); needs `tls_certificate` and `tls_private_key`.
    Tls,
}

impl Transport {
    /// The name used in `listen` entries and Via headers (lowercase).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// One `[sip] listen` entry, e.g. `udp:127.0.0.1:5060`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A registered softphone account (`[[sip.user]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
    /// Dialplan context for calls from this user (default: `[dialplan] context`).
    pub context: Option<String>,
    /// Voice codecs allowed on call legs to and from this user, in preference order
    /// (`codecs = ["g729"]`); `None`: any codec Tandem supports.
    pub codecs: Option<Vec<crate::sdp::Codec>>,
    /// `presentation = "restricted"`: this user's calls carry `Privacy: id` (RFC 3323), like
    /// Asterisk's `callingpres`. Default allowed.
    pub presentation_restricted: bool,
    /// `trust_id_inbound = true`: the user's `P-Asserted-Identity` is believed (a provider's
    /// account for a trusted PBX), like Asterisk's `trust_id_inbound`. Default false.
    pub trust_id_inbound: bool,
}

/// How a trunk presents the caller (`[[sip.trunk]] caller_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkCallerId {
    /// The caller's own number goes in From (and P-Asserted-Identity when trusted).
    Pass,
    /// Always the trunk's `from_user`.
    Fixed,
}

/// A SIP trunk to a carrier or another PBX (`[[sip.trunk]]`, docs/sip-trunks.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// `Dial(SIP/<name>/<number>)` sends calls out through it.
    pub name: String,
    /// The provider's SIP address (`host = "192.0.2.1:5060"`).
    pub host: SocketAddr,
    /// Digest user name for REGISTER and challenged INVITEs.
    pub username: String,
    pub password: String,
    /// Only answer challenges of this realm (`None`: any realm).
    pub realm: Option<String>,
    /// Keep a registration at the provider (RFC 3261 §10.2).
    pub register: bool,
    /// Expiry asked for in REGISTER, seconds.
    pub register_expiry: u32,
    /// From user part when the caller's number is not passed (default `username`).
    pub from_user: String,
    /// From host part (default the host's address).
    pub from_domain: String,
    pub caller_id: TrunkCallerId,
    /// Inside our trust domain (RFC 3325): send and believe P-Asserted-Identity.
    pub trust: bool,
    /// Dialplan context for calls that arrive from the trunk.
    pub context: String,
    /// Voice codecs offered to it (`None`: any transcodable codec).
    pub codecs: Option<Vec<crate::sdp::Codec>>,
    /// Where requests go instead of `host` (a carrier's SBC).
    pub outbound_proxy: Option<SocketAddr>,
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (for messages); `None` for the embedded default.
    pub path: Option<PathBuf>,
    pub listen: Vec<Listen>,
    pub realm: String,
    pub users: Vec<User>,
    /// `[[sip.trunk]]`: trunks to providers.
    pub trunks: Vec<Trunk>,
    pub user_agent: String,
    pub dataplane: dataplane::Config,
    pub dialplan: Dialplan,
    pub dialplan_file: Option<PathBuf>,
    /// `[dialplan] sounds`: directory of the sound files Playback/Background/Read play.
    pub sounds: Option<PathBuf>,
    /// `[dialplan] tone_zone`: call-progress tones by country (`us`, `eu`, `uk`, `cn`...).
    pub tone_zone: String,
    pub context: String,
    pub mgmt_socket: PathBuf,
    /// `[dataplane] xdp_offload`: the xdp backend's in-kernel fast path for
    /// plain relayed streams, on by default (applied with
    /// `dataplane::io::xdp::set_offload` before the dataplane starts).
    pub xdp_offload: bool,
    /// `[dataplane] xdp_port_sockets`: bind a kernel socket per media port
    /// with the xdp backend too (off by default: the range is reserved
    /// instead; applied with `dataplane::io::xdp::reserve::set_port_sockets`).
    pub xdp_port_sockets: bool,
    /// `[sip.limits]`: the defence settings (docs/sip-limits.md).
    pub limits: crate::defence::Limits,
    /// `[sip] tls_certificate` / `tls_private_key`: PEM files for `tls:` listeners.
    pub tls: Option<TlsFiles>,
    /// `[ng]`: the rtpengine ng control interface, if enabled.
    pub ng: Option<NgConfig>,
    /// `[radius]`: authentication and accounting servers (paths resolved against the file).
    pub radius: Option<crate::aaa::RadiusConfig>,
    /// `[cdr]`: the Master.csv file (path resolved against the file).
    pub cdr: Option<crate::cdr::CdrConfig>,
    /// `[h323]`: the H.323 interworking function, if enabled.
    pub h323: Option<H323Config>,
    /// `[metrics]`: the Prometheus text endpoint, if enabled (off by default).
    pub metrics: Option<MetricsConfig>,
    /// `[pstn]`: ISDN PRI spans and the exchange simulator (docs/pstn.md); `None`
    /// without the section (no PSTN interworking).
    pub pstn: Option<crate::pstn::config::PstnConfig>,
    /// `[analog]`: the analog card and its FXS/FXO ports (docs/analog.md); `None`
    /// without the section.
    pub analog: Option<crate::analog::config::AnalogConfig>,
}

/// `[h323]`: the H.323 gateway (docs/h323.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H323Config {
    /// H.225.0 call signalling listener (`listen = "127.0.0.1:1720"`).
    pub listen: SocketAddr,
    /// Dialplan context for calls arriving over H.323 (default `from-h323`).
    pub context: String,
    /// Voice codecs allowed on the H.323 side, in preference order (empty: any).
    pub codecs: Vec<crate::sdp::Codec>,
}

/// `[metrics]`: where the Prometheus text endpoint (`GET /metrics`) listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// TCP address (`listen = "127.0.0.1:9090"`).
    pub listen: SocketAddr,
}

/// The PEM files a `tls:` listener serves (`[sip] tls_certificate`, `tls_private_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
}

/// `[ng]`: where the rtpengine "ng" control protocol listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgConfig {
    /// UDP address (`listen = "udp:127.0.0.1:2223"`).
    pub listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    sip: Option<RawSip>,
    dataplane: Option<RawDataplane>,
    dialplan: Option<RawDialplan>,
    mgmt: Option<RawMgmt>,
    ng: Option<RawNg>,
    radius: Option<Spanned<crate::aaa::RadiusConfig>>,
    cdr: Option<Spanned<crate::cdr::CdrConfig>>,
    h323: Option<RawH323>,
    metrics: Option<RawMetrics>,
    pstn: Option<toml::Value>,
    analog: Option<crate::analog::config::RawAnalog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawH323 {
    listen: Spanned<String>,
    context: Option<Spanned<String>>,
    codecs: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNg {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    listen: Option<Vec<Spanned<String>>>,
    realm: Option<Spanned<String>>,
    user_agent: Option<String>,
    #[serde(default)]
    user: Vec<Spanned<RawUser>>,
    #[serde(default)]
    trunk: Vec<Spanned<RawTrunk>>,
    limits: Option<crate::defence::Limits>,
    tls_certificate: Option<Spanned<String>>,
    tls_private_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password: Spanned<String>,
    context: Option<Spanned<String>>,
    codecs: Option<Vec<Spanned<String>>>,
    presentation: Option<Spanned<String>>,
    trust_id_inbound: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrunk {
    name: Spanned<String>,
    host: Spanned<String>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    realm: Option<Spanned<String>>,
    register: Option<bool>,
    register_expiry: Option<Spanned<u32>>,
    from_user: Option<Spanned<String>>,
    from_domain: Option<Spanned<String>>,
    caller_id: Option<Spanned<String>>,
    trust: Option<bool>,
    context: Option<Spanned<String>>,
    codecs: Option<Vec<Spanned<String>>>,
    outbound_proxy: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    backend: Option<Spanned<String>>,
    cores: Option<Spanned<Vec<usize>>>,
    rtp_ports: Option<Spanned<String>>,
    media_ip: Option<Spanned<String>>,
    media_timeout: Option<Spanned<u64>>,
    max_sessions: Option<Spanned<usize>>,
    // The keys of core pinning and of the xdp backend.
    control_cores: Option<Spanned<Vec<usize>>>,
    xdp_interface: Option<Spanned<String>>,
    xdp_queues: Option<Spanned<Vec<u32>>>,
    xdp_zero_copy: Option<Spanned<bool>>,
    xdp_busy_poll: Option<Spanned<bool>>,
    xdp_attach: Option<Spanned<String>>,
    xdp_offload: Option<Spanned<bool>>,
    xdp_port_sockets: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialplan {
    file: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
    sounds: Option<Spanned<String>>,
    tone_zone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMgmt {
    socket: Option<String>,
}

/// Tracks the file text so spans can become line numbers.
struct Source<'a> {
    name: String,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.name.clone(),
            line: self.line_of(span.start),
            msg: msg.into(),
        }
    }
}

/// The default management socket: `/run/tandem/tandemd.sock` for root,
/// `$XDG_RUNTIME_DIR/tandem/tandemd.sock` or `/tmp/tandem-$USER/tandemd.sock` otherwise.
pub fn default_mgmt_socket() -> PathBuf {
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var("HOME").map(|h| h == "/root").unwrap_or(false);
    if is_root && Path::new("/run").is_dir() {
        return PathBuf::from("/run/tandem/tandemd.sock");
    }
    if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
        if !dir.is_empty() {
            return Path::new(&dir).join("tandem/tandemd.sock");
        }
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    PathBuf::from(format!("/tmp/tandem-{user}/tandemd.sock"))
}

fn default_core() -> usize {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    n.saturating_sub(1)
}

impl Config {
    /// The embedded default (no file).
    pub fn embedded_default() -> Config {
        // The embedded text is part of the program and is covered by a unit test.
        match parse_text(EMBEDDED_DEFAULT, "<embedded default>", None) {
            Ok(c) => c,
            Err(e) => panic!("embedded default config is invalid: {e}"),
        }
    }

    /// Load and validate a config file and the dialplan it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            msg: format!("cannot read: {e}"),
        })?;
        parse_text(&text, &path.display().to_string(), Some(path))
    }

    /// The primary SIP listener: the first UDP one (requests Tandem originates
    /// to UDP destinations, and datagram replies, leave from it).
    pub fn primary_listen(&self) -> Listen {
        self.listen
            .iter()
            .copied()
            .find(|l| l.transport == Transport::Udp)
            .unwrap_or(self.listen[0])
    }
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    let (transport, addr) = match s.split_once(':') {
        Some((t, rest)) if t.chars().all(|c| c.is_ascii_alphabetic()) => (t, rest),
        _ => ("udp", s),
    };
    let transport = match transport.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "ws" | "wss" => {
            return Err(format!(
                "listen \"{s}\": transport {transport} is not supported yet (use udp, tcp or tls)"
            ))
        }
        other => {
            return Err(format!(
                "listen \"{s}\": unknown transport \"{other}\" (use udp, tcp or tls)"
            ))
        }
    };
    let addr: SocketAddr = addr.parse().map_err(|_| {
        format!("listen \"{s}\": expected TRANSPORT:IP:PORT, e.g. udp:127.0.0.1:5060")
    })?;
    Ok(Listen { transport, addr })
}

fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("rtp_ports \"{s}\": expected FIRST-LAST, e.g. \"20000-29999\""))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("rtp_ports \"{s}\": bad first port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("rtp_ports \"{s}\": bad last port"))?;
    if a < 1024 || b <= a {
        return Err(format!("rtp_ports \"{s}\": need 1024 <= FIRST < LAST"));
    }
    if b - a < 3 {
        return Err(format!(
            "rtp_ports \"{s}\": need at least 4 ports (two RTP/RTCP pairs)"
        ));
    }
    Ok(a..=b)
}

fn parse_text(text: &str, name: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
    let src = Source {
        name: name.to_string(),
        text,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| src.line_of(s.start)).unwrap_or(0);
        ConfigError {
            file: name.to_string(),
            line,
            msg: e.message().trim().to_string(),
        }
    })?;

    // [sip]
    let sip = raw.sip.unwrap_or(RawSip {
        listen: None,
        realm: None,
        user_agent: None,
        user: Vec::new(),
        trunk: Vec::new(),
        limits: None,
        tls_certificate: None,
        tls_private_key: None,
    });
    let mut listen = Vec::new();
    match &sip.listen {
        Some(list) => {
            for l in list {
                listen.push(parse_listen(l.get_ref()).map_err(|m| src.err(l.span(), m))?);
            }
            if list.is_empty() {
                return Err(ConfigError {
                    file: name.into(),
                    line: 0,
                    msg: "[sip] listen is empty: give at least one, e.g. [\"udp:127.0.0.1:5060\"]"
                        .into(),
                });
            }
        }
        None => listen.push(Listen {
            transport: Transport::Udp,
            addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
        }),
    }
    if !listen.iter().any(|l| l.transport == Transport::Udp) {
        let at = sip
            .listen
            .as_ref()
            .and_then(|l| l.first())
            .map(|l| l.span());
        let msg =
            "[sip] listen needs at least one udp: entry (requests to UDP phones leave from it)";
        return Err(match at {
            Some(sp) => src.err(sp, msg),
            None => ConfigError {
                file: name.into(),
                line: 0,
                msg: msg.into(),
            },
        });
    }
    let base = path.and_then(Path::parent).unwrap_or(Path::new("."));
    let tls = match (&sip.tls_certificate, &sip.tls_private_key) {
        (Some(c), Some(k)) => Some(TlsFiles {
            certificate: base.join(c.get_ref()),
            private_key: base.join(k.get_ref()),
        }),
        (Some(c), None) => {
            return Err(src.err(c.span(), "tls_certificate needs tls_private_key too"))
        }
        (None, Some(k)) => {
            return Err(src.err(k.span(), "tls_private_key needs tls_certificate too"))
        }
        (None, None) => None,
    };
    if tls.is_none() {
        if let Some(l) = sip
            .listen
            .iter()
            .flatten()
            .find(|l| parse_listen(l.get_ref()).is_ok_and(|l| l.transport == Transport::Tls))
        {
            return Err(src.err(
                l.span(),
                "a tls: listener needs [sip] tls_certificate and tls_private_key (PEM files)",
            ));
        }
    }
    let realm = match &sip.realm {
        Some(r) if r.get_ref().is_empty() || r.get_ref().contains('"') => {
            return Err(src.err(r.span(), "realm must be non-empty and contain no '\"'"))
        }
        Some(r) => r.get_ref().clone(),
        None => "tandem".to_string(),
    };
    let mut users = Vec::new();
    let mut seen = HashSet::new();
    for u in &sip.user {
        let raw_user = u.get_ref();
        let uname = raw_user.name.get_ref();
        if uname.is_empty()
            || !uname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        {
            return Err(src.err(
                raw_user.name.span(),
                format!("user name \"{uname}\": use letters, digits and - _ . + only"),
            ));
        }
        if !seen.insert(uname.clone()) {
            return Err(src.err(
                raw_user.name.span(),
                format!("user \"{uname}\" defined twice"),
            ));
        }
        if raw_user.password.get_ref().is_empty() {
            return Err(src.err(
                raw_user.password.span(),
                format!("user \"{uname}\": empty password"),
            ));
        }
        let codecs = match &raw_user.codecs {
            None => None,
            Some(list) => {
                let out = parse_codecs(&src, list, &format!("user \"{uname}\": "))?;
                if out.is_empty() {
                    return Err(src.err(
                        u.span(),
                        format!(
                            "user \"{uname}\": codecs = [] allows no codec; \
                             remove the key to allow all"
                        ),
                    ));
                }
                Some(out)
            }
        };
        users.push(User {
            name: uname.clone(),
            password: raw_user.password.get_ref().clone(),
            context: raw_user.context.as_ref().map(|c| c.get_ref().clone()),
            codecs,
            presentation_restricted: match &raw_user.presentation {
                None => false,
                Some(p) => match p.get_ref().to_ascii_lowercase().as_str() {
                    "allowed" => false,
                    "restricted" => true,
                    other => {
                        return Err(src.err(
                            p.span(),
                            format!(
                                "user \"{uname}\": presentation \"{other}\": \
                                 use \"allowed\" or \"restricted\""
                            ),
                        ))
                    }
                },
            },
            trust_id_inbound: raw_user.trust_id_inbound.unwrap_or(false),
        });
    }

    // [dataplane]
    let dp = raw.dataplane.unwrap_or(RawDataplane {
        backend: None,
        cores: None,
        rtp_ports: None,
        media_ip: None,
        media_timeout: None,
        max_sessions: None,
        control_cores: None,
        xdp_interface: None,
        xdp_queues: None,
        xdp_zero_copy: None,
        xdp_busy_poll: None,
        xdp_attach: None,
        xdp_offload: None,
        xdp_port_sockets: None,
    });
    let backend = match &dp.backend {
        None => dataplane::Backend::Socket,
        Some(b) => match b.get_ref().as_str() {
            "socket" => dataplane::Backend::Socket,
            "uring" => dataplane::Backend::Uring,
            "xdp" => dataplane::Backend::Xdp,
            "auto" => dataplane::Backend::Auto,
            other => {
                return Err(src.err(
                    b.span(),
                    format!("backend \"{other}\": expected socket, uring, xdp or auto"),
                ))
            }
        },
    };
    let ncores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cores = match &dp.cores {
        None => vec![default_core()],
        Some(c) => {
            if c.get_ref().is_empty() {
                return Err(src.err(c.span(), "cores is empty: list at least one core id"));
            }
            let mut set = HashSet::new();
            for &core in c.get_ref() {
                if core >= ncores {
                    return Err(src.err(
                        c.span(),
                        format!(
                            "core {core} does not exist (this machine has cores 0-{})",
                            ncores - 1
                        ),
                    ));
                }
                if !set.insert(core) {
                    return Err(src.err(c.span(), format!("core {core} listed twice")));
                }
            }
            c.get_ref().clone()
        }
    };
    let rtp_ports = match &dp.rtp_ports {
        None => 20000..=29999,
        Some(p) => parse_ports(p.get_ref()).map_err(|m| src.err(p.span(), m))?,
    };
    let per_worker = (rtp_ports.end() - rtp_ports.start() + 1) as usize / cores.len();
    if per_worker < 4 {
        let span = dp.rtp_ports.as_ref().map(|p| p.span()).unwrap_or(0..0);
        return Err(src.err(
            span,
            "rtp_ports too small: each worker needs at least 4 ports",
        ));
    }
    let media_ip: IpAddr = match &dp.media_ip {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(ip) => ip.get_ref().parse().map_err(|_| {
            src.err(
                ip.span(),
                format!("media_ip \"{}\" is not an IP address", ip.get_ref()),
            )
        })?,
    };
    if media_ip.is_unspecified() {
        let span = dp.media_ip.as_ref().map(|p| p.span()).unwrap_or(0..0);
        return Err(src.err(
            span,
            "media_ip must be a concrete address: it goes into SDP",
        ));
    }
    let media_timeout = Duration::from_secs(
        dp.media_timeout
            .as_ref()
            .map(|t| *t.get_ref())
            .unwrap_or(30),
    );
    let max_sessions = match &dp.max_sessions {
        None => 4096,
        Some(m) if *m.get_ref() == 0 || *m.get_ref() > 1 << 20 => {
            return Err(src.err(m.span(), "max_sessions must be between 1 and 1048576"))
        }
        Some(m) => *m.get_ref(),
    };

    let (xdp_settings, control_cores) = parse_pinning(
        &src,
        &dp,
        backend,
        dp.backend.as_ref().map_or(0..0, |b| b.span()),
        &cores,
        dp.cores.as_ref().map_or(0..0, |c| c.span()),
    )?;
    let ng = parse_ng(&src, raw.ng.as_ref())?;
    let metrics = parse_metrics(&src, raw.metrics.as_ref())?;

    // [dialplan]
    let dpl = raw.dialplan.unwrap_or(RawDialplan {
        file: None,
        context: None,
        sounds: None,
        tone_zone: None,
    });
    let (dialplan, dialplan_file) = match &dpl.file {
        None => (Dialplan::embedded_default(), None),
        Some(f) => {
            let base = path.and_then(|p| p.parent()).unwrap_or(Path::new("."));
            let file = base.join(f.get_ref());
            let text = std::fs::read_to_string(&file)
                .map_err(|e| src.err(f.span(), format!("dialplan file {}: {e}", file.display())))?;
            let plan =
                Dialplan::parse(&text, &file.display().to_string()).map_err(|e| ConfigError {
                    file: e.file.clone(),
                    line: e.line,
                    msg: e.msg.clone(),
                })?;
            (plan, Some(file))
        }
    };
    let sounds = dpl.sounds.as_ref().map(|d| {
        let p = Path::new(d.get_ref());
        path.and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .join(p)
    });
    let tone_zone = match &dpl.tone_zone {
        Some(z)
            if !dataplane::dsp::tones::ZONES
                .contains(&z.get_ref().to_ascii_lowercase().as_str()) =>
        {
            return Err(src.err(
                z.span(),
                format!(
                    "tone_zone \"{}\": unknown zone (one of {})",
                    z.get_ref(),
                    dataplane::dsp::tones::ZONES.join(", ")
                ),
            ))
        }
        Some(z) => z.get_ref().to_ascii_lowercase(),
        None => "us".to_string(),
    };
    let context = dpl
        .context
        .as_ref()
        .map(|c| c.get_ref().clone())
        .unwrap_or_else(|| "default".into());
    if !dialplan.has_context(&context) {
        let span = dpl.context.as_ref().map(|c| c.span()).unwrap_or(0..0);
        return Err(src.err(
            span,
            format!("context \"{context}\" is not in the dialplan"),
        ));
    }
    for u in &sip.user {
        if let Some(c) = &u.get_ref().context {
            if !dialplan.has_context(c.get_ref()) {
                return Err(src.err(
                    c.span(),
                    format!("context \"{}\" is not in the dialplan", c.get_ref()),
                ));
            }
        }
    }

    let trunks = parse_trunks(&src, &sip.trunk, &dialplan, &context)?;

    let (radius, cdr) = parse_billing(&src, path, raw.radius, raw.cdr)?;
    let h323 = parse_h323(&src, raw.h323.as_ref(), &dialplan)?;
    let pstn = parse_pstn(&src, raw.pstn, &dialplan)?;
    let analog = parse_analog(&src, raw.analog.as_ref(), &dialplan)?;

    // [mgmt]
    let mgmt_socket = match raw.mgmt.and_then(|m| m.socket) {
        Some(s) => {
            let p = PathBuf::from(s);
            if p.is_relative() {
                path.and_then(|p| p.parent())
                    .unwrap_or(Path::new("."))
                    .join(p)
            } else {
                p
            }
        }
        None => default_mgmt_socket(),
    };

    Ok(Config {
        path: path.map(Path::to_path_buf),
        listen,
        realm,
        users,
        trunks,
        user_agent: sip
            .user_agent
            .unwrap_or_else(|| format!("Tandem/{}", env!("CARGO_PKG_VERSION"))),
        dataplane: dataplane::Config {
            backend,
            cores,
            rtp_ports,
            media_ip,
            media_timeout,
            max_sessions_per_worker: max_sessions,
            xdp: xdp_settings,
            control_cores,
        },
        dialplan,
        dialplan_file,
        sounds,
        tone_zone,
        context,
        mgmt_socket,
        xdp_offload: dp.xdp_offload.as_ref().is_none_or(|v| *v.get_ref()),
        xdp_port_sockets: dp.xdp_port_sockets.as_ref().is_some_and(|v| *v.get_ref()),
        limits: sip.limits.unwrap_or_default(),
        tls,
        ng,
        radius,
        cdr,
        h323,
        metrics,
        pstn,
        analog,
    })
}

/// `[analog]`: validated by [`crate::analog::config::AnalogConfig::from_raw`]; port
/// contexts must exist in the dialplan.
fn parse_analog(
    src: &Source<'_>,
    raw: Option<&crate::analog::config::RawAnalog>,
    dialplan: &Dialplan,
) -> Result<Option<crate::analog::config::AnalogConfig>, ConfigError> {
    use crate::analog::config::AnalogConfig;
    let Some(raw) = raw else { return Ok(None) };
    let cfg = AnalogConfig::from_raw(raw).map_err(|e| src.err(e.span, e.msg))?;
    for p in &cfg.ports {
        if !dialplan.has_context(&p.context) {
            return Err(src.err(
                AnalogConfig::context_span(raw, p.port),
                format!(
                    "analog port {}: context \"{}\" is not in the dialplan",
                    p.port, p.context
                ),
            ));
        }
    }
    Ok(Some(cfg))
}

/// A `codecs = [...]` list, in order, duplicates dropped; `what` prefixes the error
/// (`user "1001": `).
fn parse_codecs(
    src: &Source<'_>,
    list: &[Spanned<String>],
    what: &str,
) -> Result<Vec<crate::sdp::Codec>, ConfigError> {
    let mut out = Vec::new();
    for c in list {
        let name = c.get_ref();
        let codec = match name.to_ascii_lowercase().as_str() {
            "pcmu" | "ulaw" => crate::sdp::Codec::Pcmu,
            "pcma" | "alaw" => crate::sdp::Codec::Pcma,
            "g729" | "g729a" => crate::sdp::Codec::G729,
            _ => {
                return Err(src.err(
                    c.span(),
                    format!("{what}unknown codec \"{name}\" (use pcmu, pcma or g729)"),
                ))
            }
        };
        if !out.contains(&codec) {
            out.push(codec);
        }
    }
    Ok(out)
}

/// `[h323]`: the listener, the context it must find in the dialplan, the codecs.
fn parse_h323(
    src: &Source<'_>,
    raw: Option<&RawH323>,
    dialplan: &Dialplan,
) -> Result<Option<H323Config>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let s = raw.listen.get_ref();
    let listen: SocketAddr = s.strip_prefix("tcp:").unwrap_or(s).parse().map_err(|_| {
        src.err(
            raw.listen.span(),
            format!("[h323] listen \"{s}\": expected IP:PORT, e.g. \"127.0.0.1:1720\""),
        )
    })?;
    let context = raw
        .context
        .as_ref()
        .map_or_else(|| "from-h323".to_string(), |c| c.get_ref().clone());
    if !dialplan.has_context(&context) {
        let span = raw.context.as_ref().map_or(raw.listen.span(), |c| c.span());
        return Err(src.err(
            span,
            format!("[h323] context \"{context}\" is not in the dialplan"),
        ));
    }
    let codecs = parse_codecs(src, raw.codecs.as_deref().unwrap_or_default(), "[h323] ")?;
    if raw.codecs.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(src.err(
            raw.listen.span(),
            "[h323] codecs = [] allows no codec; remove the key to allow all",
        ));
    }
    Ok(Some(H323Config {
        listen,
        context,
        codecs,
    }))
}

/// `[[sip.trunk]]`: every key checked, errors at the offending line.
fn parse_trunks(
    src: &Source<'_>,
    raw: &[Spanned<RawTrunk>],
    dialplan: &Dialplan,
    default_context: &str,
) -> Result<Vec<Trunk>, ConfigError> {
    let mut out: Vec<Trunk> = Vec::new();
    for t in raw {
        let r = t.get_ref();
        let name = r.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(src.err(
                r.name.span(),
                format!("trunk name \"{name}\": use letters, digits and - _ . only"),
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(src.err(r.name.span(), format!("trunk \"{name}\" defined twice")));
        }
        let addr = |s: &Spanned<String>, what: &str| -> Result<SocketAddr, ConfigError> {
            let v = s.get_ref();
            if let Ok(a) = v.parse::<SocketAddr>() {
                return Ok(a);
            }
            if let Ok(ip) = v.parse::<std::net::IpAddr>() {
                return Ok(SocketAddr::new(ip, 5060));
            }
            let (h, port) = v.rsplit_once(':').unwrap_or((v.as_str(), "5060"));
            match (h, port.parse::<u16>()) {
                ("localhost", Ok(p)) => Ok(SocketAddr::from(([127, 0, 0, 1], p))),
                _ => Err(src.err(
                    s.span(),
                    format!(
                        "trunk \"{name}\": {what} \"{v}\": give an IP address and port, \
                         e.g. \"192.0.2.10:5060\""
                    ),
                )),
            }
        };
        let host = addr(&r.host, "host")?;
        let outbound_proxy = match &r.outbound_proxy {
            Some(p) => Some(addr(p, "outbound_proxy")?),
            None => None,
        };
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        let username = text(&r.username).unwrap_or_default();
        let password = text(&r.password).unwrap_or_default();
        let register = r.register.unwrap_or(false);
        if register && (username.is_empty() || password.is_empty()) {
            return Err(src.err(
                t.span(),
                format!("trunk \"{name}\": register = true needs username and password"),
            ));
        }
        if username.contains(['"', '@', ' ', '<', '>']) {
            let sp = r.username.as_ref().map_or(t.span(), |u| u.span());
            return Err(src.err(sp, format!("trunk \"{name}\": bad username")));
        }
        let register_expiry = match &r.register_expiry {
            Some(e) if !(60..=86_400).contains(e.get_ref()) => {
                return Err(src.err(
                    e.span(),
                    format!("trunk \"{name}\": register_expiry must be 60..=86400 seconds"),
                ))
            }
            Some(e) => *e.get_ref(),
            None => 3600,
        };
        let caller_id = match &r.caller_id {
            None => TrunkCallerId::Pass,
            Some(c) => match c.get_ref().to_ascii_lowercase().as_str() {
                "pass" => TrunkCallerId::Pass,
                "fixed" => TrunkCallerId::Fixed,
                other => {
                    return Err(src.err(
                        c.span(),
                        format!(
                            "trunk \"{name}\": caller_id \"{other}\": use \"pass\" or \"fixed\" \
                             (the fixed number is from_user)"
                        ),
                    ))
                }
            },
        };
        let from_user = text(&r.from_user).unwrap_or_else(|| username.clone());
        if caller_id == TrunkCallerId::Fixed && from_user.is_empty() {
            return Err(src.err(
                t.span(),
                format!("trunk \"{name}\": caller_id = \"fixed\" needs from_user"),
            ));
        }
        let context = match &r.context {
            Some(c) if !dialplan.has_context(c.get_ref()) => {
                return Err(src.err(
                    c.span(),
                    format!("context \"{}\" is not in the dialplan", c.get_ref()),
                ))
            }
            Some(c) => c.get_ref().clone(),
            None => default_context.to_string(),
        };
        let codecs = match &r.codecs {
            None => None,
            Some(list) => {
                let v = parse_codecs(src, list, &format!("trunk \"{name}\": "))?;
                if v.is_empty() {
                    return Err(src.err(
                        t.span(),
                        format!("trunk \"{name}\": codecs = [] allows no codec"),
                    ));
                }
                Some(v)
            }
        };
        out.push(Trunk {
            from_domain: text(&r.from_domain).unwrap_or_else(|| host.to_string()),
            name,
            host,
            username,
            password,
            realm: text(&r.realm),
            register,
            register_expiry,
            from_user,
            caller_id,
            trust: r.trust.unwrap_or(false),
            context,
            codecs,
            outbound_proxy,
        });
    }
    Ok(out)
}

/// `[pstn]`: parsed by [`crate::pstn::config::PstnConfig::from_toml`]; errors keep the
/// key's line. Span contexts must exist in the dialplan.
fn parse_pstn(
    src: &Source<'_>,
    raw: Option<toml::Value>,
    dialplan: &Dialplan,
) -> Result<Option<crate::pstn::config::PstnConfig>, ConfigError> {
    let Some(v) = raw else { return Ok(None) };
    let mut doc = toml::Table::new();
    doc.insert("pstn".into(), v);
    let cfg =
        crate::pstn::config::PstnConfig::from_toml(&toml::Value::Table(doc)).map_err(|e| {
            let e = e.locate(&src.name, src.text);
            ConfigError {
                file: e.file,
                line: e.line,
                msg: format!("{}: {}", e.path, e.msg),
            }
        })?;
    for (i, s) in cfg.spans.iter().enumerate() {
        if !dialplan.has_context(&s.context) {
            let e = crate::pstn::config::PstnConfigError {
                file: src.name.clone(),
                line: 0,
                path: format!("pstn.span[{i}].context"),
                msg: String::new(),
            }
            .locate(&src.name, src.text);
            return Err(ConfigError {
                file: e.file,
                line: e.line,
                msg: format!(
                    "{}: context \"{}\" is not in the dialplan",
                    e.path, s.context
                ),
            });
        }
    }
    Ok(Some(cfg))
}

/// `[dataplane] control_cores` and `xdp_*`: checked against `cores` and
/// `backend`.
fn parse_pinning(
    src: &Source<'_>,
    p: &RawDataplane,
    backend: dataplane::Backend,
    backend_span: Range<usize>,
    cores: &[usize],
    cores_span: Range<usize>,
) -> Result<(Option<dataplane::XdpSettings>, Vec<usize>), ConfigError> {
    let ncores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut control = Vec::new();
    if let Some(c) = &p.control_cores {
        for &core in c.get_ref() {
            if core >= ncores {
                return Err(src.err(
                    c.span(),
                    format!(
                        "control core {core} does not exist (this machine has cores 0-{})",
                        ncores - 1
                    ),
                ));
            }
            if cores.contains(&core) {
                return Err(src.err(
                    c.span(),
                    format!(
                        "core {core} is in both cores and control_cores: a dataplane worker                          busy-polls its core; give the control plane other cores"
                    ),
                ));
            }
            if !control.contains(&core) {
                control.push(core);
            }
        }
    }
    let Some(ifname) = &p.xdp_interface else {
        let stray = [
            p.xdp_queues.as_ref().map(|v| ("xdp_queues", v.span())),
            p.xdp_zero_copy
                .as_ref()
                .map(|v| ("xdp_zero_copy", v.span())),
            p.xdp_busy_poll
                .as_ref()
                .map(|v| ("xdp_busy_poll", v.span())),
            p.xdp_attach.as_ref().map(|v| ("xdp_attach", v.span())),
            p.xdp_offload.as_ref().map(|v| ("xdp_offload", v.span())),
            p.xdp_port_sockets
                .as_ref()
                .map(|v| ("xdp_port_sockets", v.span())),
        ];
        if let Some((key, span)) = stray.into_iter().flatten().next() {
            return Err(src.err(
                span,
                format!("{key} is set but xdp_interface is not: name the media interface"),
            ));
        }
        if backend == dataplane::Backend::Xdp {
            return Err(src.err(
                backend_span,
                "backend \"xdp\" needs xdp_interface = \"IFNAME\" (the interface media_ip is on)",
            ));
        }
        return Ok((None, control));
    };
    let name = ifname.get_ref();
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
        return Err(src.err(
            ifname.span(),
            format!("xdp_interface \"{name}\" is not an interface name"),
        ));
    }
    let queues = match &p.xdp_queues {
        None => Vec::new(),
        Some(q) => {
            if q.get_ref().len() != cores.len() {
                return Err(src.err(
                    q.span(),
                    format!(
                        "xdp_queues has {} queue id(s) for {} core(s) (cores at line {}): \
                         give one NIC queue per dataplane core",
                        q.get_ref().len(),
                        cores.len(),
                        src.line_of(cores_span.start)
                    ),
                ));
            }
            for (i, a) in q.get_ref().iter().enumerate() {
                if q.get_ref()[..i].contains(a) {
                    return Err(src.err(q.span(), format!("queue {a} listed twice in xdp_queues")));
                }
            }
            q.get_ref().clone()
        }
    };
    let mode = match &p.xdp_attach {
        None => dataplane::io::xdp::XdpMode::Auto,
        Some(m) => match m.get_ref().as_str() {
            "auto" => dataplane::io::xdp::XdpMode::Auto,
            "native" | "driver" => dataplane::io::xdp::XdpMode::Native,
            "generic" | "skb" => dataplane::io::xdp::XdpMode::Generic,
            other => {
                return Err(src.err(
                    m.span(),
                    format!("xdp_attach \"{other}\": expected auto, native or generic"),
                ))
            }
        },
    };
    Ok((
        Some(dataplane::XdpSettings {
            interface: name.clone(),
            queues,
            zero_copy: p.xdp_zero_copy.as_ref().is_none_or(|z| *z.get_ref()),
            busy_poll: p.xdp_busy_poll.as_ref().is_some_and(|b| *b.get_ref()),
            mode,
        }),
        control,
    ))
}

/// `[ng] listen = "udp:IP:PORT"`.
fn parse_ng(src: &Source<'_>, raw: Option<&RawNg>) -> Result<Option<NgConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let s = raw.listen.get_ref();
    let addr = match s.split_once(':') {
        Some(("udp", a)) => a,
        Some((t, _)) if t.chars().all(|c| c.is_ascii_alphabetic()) => {
            return Err(src.err(
                raw.listen.span(),
                format!("[ng] listen \"{s}\": transport {t} is not supported (use udp:IP:PORT)"),
            ))
        }
        _ => s.as_str(),
    };
    let listen: SocketAddr = addr.parse().map_err(|_| {
        src.err(
            raw.listen.span(),
            format!("[ng] listen \"{s}\": expected udp:IP:PORT, e.g. udp:127.0.0.1:2223"),
        )
    })?;
    Ok(Some(NgConfig { listen }))
}

/// `[metrics] listen = "IP:PORT"` (TCP; `tcp:` or `http://` prefixes accepted).
fn parse_metrics(
    src: &Source<'_>,
    raw: Option<&RawMetrics>,
) -> Result<Option<MetricsConfig>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let s = raw.listen.get_ref();
    let addr = s
        .strip_prefix("tcp:")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let listen: SocketAddr = addr.parse().map_err(|_| {
        src.err(
            raw.listen.span(),
            format!("[metrics] listen \"{s}\": expected IP:PORT, e.g. 127.0.0.1:9090"),
        )
    })?;
    Ok(Some(MetricsConfig { listen }))
}

/// A path from the file, relative to the file's directory.
fn resolve(path: Option<&Path>, p: &Path) -> PathBuf {
    if p.is_relative() {
        path.and_then(|p| p.parent())
            .unwrap_or(Path::new("."))
            .join(p)
    } else {
        p.to_path_buf()
    }
}

/// `[radius]` and `[cdr]`: validated, with their paths resolved against the file.
fn parse_billing(
    src: &Source<'_>,
    path: Option<&Path>,
    radius: Option<Spanned<crate::aaa::RadiusConfig>>,
    cdr: Option<Spanned<crate::cdr::CdrConfig>>,
) -> Result<
    (
        Option<crate::aaa::RadiusConfig>,
        Option<crate::cdr::CdrConfig>,
    ),
    ConfigError,
> {
    let radius = match radius {
        None => None,
        Some(r) => {
            let span = r.span();
            let mut r = r.into_inner();
            r.check().map_err(|m| src.err(span.clone(), m))?;
            if r.auth_servers.is_empty() && r.acct_servers.is_empty() {
                return Err(src.err(
                    span,
                    "[radius] names no server: add auth_servers and/or acct_servers                      = [{ address = \"127.0.0.1:1812\", secret = \"...\" }]",
                ));
            }
            r.spool = r.spool.map(|p| resolve(path, &p));
            Some(r)
        }
    };
    let cdr = match cdr {
        None => None,
        Some(c) => {
            let span = c.span();
            let mut c = c.into_inner();
            if c.csv.as_os_str().is_empty() {
                return Err(src.err(span, "[cdr] csv is empty: give a file path"));
            }
            c.csv = resolve(path, &c.csv);
            Some(c)
        }
    };
    Ok((radius, cdr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_text(text, "t.toml", None)
    }

    #[test]
    fn user_codecs() {
        let base = "[[sip.user]]\nname = \"1002\"\npassword = \"a\"\n";
        let c = parse(&format!("{base}codecs = [\"G729\", \"pcmu\"]\n")).unwrap();
        assert_eq!(
            c.users[0].codecs,
            Some(vec![crate::sdp::Codec::G729, crate::sdp::Codec::Pcmu])
        );
        let e = parse(&format!("{base}codecs = [\"pcmu\", \"opus\"]\n")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(":4:") && msg.contains("unknown codec \"opus\""),
            "{msg}"
        );
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        assert_eq!(c.listen[0].addr, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(c.users.len(), 4);
        assert_eq!(c.users[0].password, "tandem1001");
        assert_eq!(c.dataplane.cores.len(), 1);
        assert_eq!(c.context, "default");
    }

    #[test]
    fn sip_limits_table() {
        let c =
            parse("[sip]\n[sip.limits]\nrate_per_sec = 5\nban_secs = 9\nallow = [\"10.0.0.1\"]\n")
                .unwrap();
        assert_eq!(c.limits.rate_per_sec, 5);
        assert_eq!(c.limits.ban_secs, 9);
        assert_eq!(
            c.limits.allow,
            vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(
            c.limits.max_headers,
            crate::defence::Limits::default().max_headers
        );
        let e = parse("[sip]\n[sip.limits]\nrate = 5\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let e = parse("[sip]\nrealm = \"x\"\nlistn = []\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.msg.contains("listn"), "{e}");
        let e = parse("[sip]\n[bogus]\nx = 1\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = parse("[sip]\nlisten = [\"udp:127.0.0.1:99999\"]\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("[dataplane]\nbackend = \"dpdk\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.msg.contains("dpdk"));
        let e = parse("[dataplane]\n\nrtp_ports = \"30000-20000\"\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("[dataplane]\ncores = [9999]\n").unwrap_err();
        assert!(e.msg.contains("9999"));
        let e = parse("[dialplan]\ncontext = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("[[sip.user]]\nname = \"1001\"\npassword = \"a\"\n[[sip.user]]\nname = \"1001\"\npassword = \"b\"\n")
            .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
    }

    #[test]
    fn xdp_and_pinning_keys() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let c = parse(
            "[dataplane]\nbackend = \"auto\"\ncores = [0]\nxdp_interface = \"eth1\"\n\
             xdp_queues = [3]\nxdp_zero_copy = false\nxdp_busy_poll = true\nxdp_attach = \"generic\"\n",
        )
        .unwrap();
        let x = c.dataplane.xdp.unwrap();
        assert_eq!(x.interface, "eth1");
        assert_eq!(x.queues, vec![3]);
        assert!(!x.zero_copy && x.busy_poll);
        assert_eq!(x.mode, dataplane::io::xdp::XdpMode::Generic);
        assert_eq!(c.dataplane.backend, dataplane::Backend::Auto);
        let e = parse("[dataplane]\nbackend = \"xdp\"\ncores = [0]\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.msg.contains("xdp_interface"), "{e}");
        let e = parse("[dataplane]\ncores = [0]\n\nxdp_queues = [0]\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse("[dataplane]\ncores = [0]\nxdp_interface = \"e\"\nxdp_queues = [0, 1]\n")
            .unwrap_err();
        assert!(e.msg.contains("one NIC queue per"), "{e}");
        let e = parse("[dataplane]\ncores = [0]\nxdp_interface = \"e\"\nxdp_attach = \"hw\"\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse("[dataplane]\ncores = [0]\ncontrol_cores = [0]\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.msg.contains("both cores and control_cores"), "{e}");
        let e = parse("[dataplane]\ncores = [0]\ncontrol_cores = [99999]\n").unwrap_err();
        assert!(e.msg.contains("control core 99999"), "{e}");
        if n > 1 {
            let c = parse("[dataplane]\ncores = [1]\ncontrol_cores = [0]\n").unwrap();
            assert_eq!(c.dataplane.control_cores, vec![0]);
        }
        let e = parse("[dataplane]\nxdp_bogus = 1\n").unwrap_err();
        assert!(e.msg.contains("xdp_bogus"), "{e}");
    }

    #[test]
    fn xdp_offload_key() {
        assert!(parse("").unwrap().xdp_offload, "on by default");
        let c = parse("[dataplane]\ncores = [0]\nxdp_interface = \"e\"\nxdp_offload = false\n")
            .unwrap();
        assert!(!c.xdp_offload);
        let e = parse("[dataplane]\ncores = [0]\n\nxdp_offload = true\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(
            e.msg.contains("xdp_offload is set but xdp_interface"),
            "{e}"
        );
    }

    #[test]
    fn xdp_port_sockets_key() {
        assert!(!parse("").unwrap().xdp_port_sockets, "off by default");
        let c = parse("[dataplane]\ncores = [0]\nxdp_interface = \"e\"\nxdp_port_sockets = true\n")
            .unwrap();
        assert!(c.xdp_port_sockets);
        let e = parse("[dataplane]\ncores = [0]\nxdp_port_sockets = true\n").unwrap_err();
        assert!(
            e.msg.contains("xdp_port_sockets is set but xdp_interface"),
            "{e}"
        );
    }

    #[test]
    fn ng_section() {
        let c = parse("[ng]\nlisten = \"udp:127.0.0.1:2223\"\n").unwrap();
        assert_eq!(c.ng.unwrap().listen, "127.0.0.1:2223".parse().unwrap());
        assert!(parse("").unwrap().ng.is_none());
        let e = parse("[ng]\n\nlisten = \"tcp:127.0.0.1:2223\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("[ng]\nlisten = \"udp:nowhere\"\n").unwrap_err();
        assert!(e.msg.contains("udp:IP:PORT"), "{e}");
        let e = parse("[ng]\nlisten = \"udp:127.0.0.1:1\"\nport = 3\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn metrics_section() {
        assert!(parse("").unwrap().metrics.is_none(), "off by default");
        let c = parse("[metrics]\nlisten = \"127.0.0.1:9090\"\n").unwrap();
        assert_eq!(c.metrics.unwrap().listen, "127.0.0.1:9090".parse().unwrap());
        let c = parse("[metrics]\nlisten = \"tcp:[::1]:9091\"\n").unwrap();
        assert_eq!(c.metrics.unwrap().listen, "[::1]:9091".parse().unwrap());
        let e = parse("[metrics]\n\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.msg.contains("IP:PORT"), "{e}");
    }

    #[test]
    fn radius_and_cdr_sections() {
        let c = parse_text(
            "[radius]\nauth_servers = [{ address = \"127.0.0.1:1812\", secret = \"s\" }]\n\
             acct_servers = [{ address = \"127.0.0.1:1813\", secret = \"s\" }]\n\
             spool = \"acct.spool\"\n[cdr]\ncsv = \"cdr/Master.csv\"\n",
            "t.toml",
            Some(Path::new("/etc/tandem/tandem.toml")),
        )
        .unwrap();
        assert!(c.users.is_empty(), "[[sip.user]] may be omitted");
        let r = c.radius.unwrap();
        assert!(r.digest_enabled());
        assert_eq!(r.spool, Some(PathBuf::from("/etc/tandem/acct.spool")));
        assert_eq!(
            c.cdr.unwrap().csv,
            PathBuf::from("/etc/tandem/cdr/Master.csv")
        );
        // Unknown keys keep their line, in the table and in a server entry.
        let e = parse("[sip]\n[radius]\nspool = \"x\"\nspoll = 1\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.msg.contains("spoll"), "{e}");
        let e = parse(
            "[radius]\nauth_servers = [\n { address = \"127.0.0.1:1812\", secet = \"s\" },\n]\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("[cdr]\ncsv = \"a\"\nfile = \"b\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        // Accounting without a spool could lose records.
        let e = parse(
            "[sip]\n[radius]\nacct_servers = [{ address = \"127.0.0.1:1813\", secret = \"s\" }]\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.msg.contains("spool"), "{e}");
        let e = parse("[radius]\nauth_servers = [{ address = \"localhost\", secret = \"s\" }]\n")
            .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn full_example_parses() {
        let c = parse(
            "[sip]\nlisten = [\"udp:127.0.0.1:5070\"]\nrealm = \"r\"\n[[sip.user]]\nname = \"1001\"\npassword = \"s3cret\"\n\
             [dataplane]\nbackend = \"socket\"\ncores = [0]\nrtp_ports = \"30000-30099\"\nmedia_ip = \"127.0.0.1\"\nmedia_timeout = 5\n\
             [mgmt]\nsocket = \"/tmp/x.sock\"\n",
        )
        .unwrap();
        assert_eq!(c.listen[0].addr.port(), 5070);
        assert_eq!(c.dataplane.rtp_ports, 30000..=30099);
        assert_eq!(c.dataplane.media_timeout, Duration::from_secs(5));
        assert_eq!(c.mgmt_socket, PathBuf::from("/tmp/x.sock"));
    }

    #[test]
    fn trunks_and_presentation() {
        let c = parse(
            "[[sip.user]]\nname = \"1003\"\npassword = \"a\"\npresentation = \"restricted\"\n\
             trust_id_inbound = true\n\
             [[sip.trunk]]\nname = \"provider\"\nhost = \"127.0.0.1:5080\"\nusername = \"t1\"\n\
             password = \"p\"\nregister = true\nregister_expiry = 120\ncaller_id = \"fixed\"\n\
             from_user = \"5550000\"\ntrust = true\ncodecs = [\"pcma\"]\n\
             outbound_proxy = \"127.0.0.2\"\n",
        )
        .unwrap();
        assert!(c.users[0].presentation_restricted && c.users[0].trust_id_inbound);
        let t = &c.trunks[0];
        assert_eq!(t.host, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(t.outbound_proxy, Some("127.0.0.2:5060".parse().unwrap()));
        assert_eq!(t.caller_id, TrunkCallerId::Fixed);
        assert_eq!(t.from_user, "5550000");
        assert_eq!(t.from_domain, "127.0.0.1:5080");
        assert_eq!(t.register_expiry, 120);
        assert_eq!(t.context, "default");
        assert_eq!(t.codecs, Some(vec![crate::sdp::Codec::Pcma]));

        let base = "[[sip.trunk]]\nname = \"p\"\nhost = \"127.0.0.1\"\n";
        let c = parse(base).unwrap();
        assert!(!c.trunks[0].register && !c.trunks[0].trust);
        assert_eq!(c.trunks[0].caller_id, TrunkCallerId::Pass);
        for (extra, line, what) in [
            ("regster = true\n", 4, "regster"),
            ("caller_id = \"maybe\"\n", 4, "caller_id"),
            ("register = true\n", 1, "needs username"),
            ("register_expiry = 5\n", 4, "60..=86400"),
            ("context = \"nowhere\"\n", 4, "not in the dialplan"),
            ("codecs = [\"opus\"]\n", 4, "unknown codec"),
        ] {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert_eq!(e.line, line, "{extra}: {e}");
            assert!(e.msg.contains(what), "{extra}: {e}");
        }
        let e = parse("[[sip.trunk]]\nname = \"p\"\nhost = \"carrier.example\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse(&format!("{base}{base}")).unwrap_err();
        assert!(e.msg.contains("twice"), "{e}");
        let e = parse("[[sip.user]]\nname = \"1\"\npassword = \"a\"\npresentation = \"hidden\"\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
    }
}
