//! The `[analog]` section of `tandem.toml`: the analog card and its ports
//! (`[[analog.port]]`), documented key by key in `docs/analog.md`.
//!
//! Deserialized by serde with unknown keys refused; the raw form keeps byte
//! spans ([`toml::Spanned`]) so that [`AnalogConfig::from_raw`] can report a
//! bad value at its `file:line` (the caller turns the span into a line).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{CidSignalling, CidStart, FxoConfig, FxsConfig};
use dataplane::dsp::fsk::{Format, FskStandard};

/// The card the ports live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    /// The simulated TDM400P (`drivers::analog::sim`): telephones on FXS
    /// ports, a central-office line on FXO ports.
    Sim,
    /// A real card through DAHDI (not driven by tandemd yet).
    Dahdi,
}

/// The module a port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Powers and rings a telephone (DAHDI `fxoks=` signalling).
    Fxs,
    /// Plugs into an exchange line (DAHDI `fxsks=` signalling).
    Fxo,
}

/// How caller ID is sent (FXS) or expected (FXO) on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidMode {
    /// Bell 202 FSK after the first ring.
    Bell202,
    /// ETSI V.23 FSK before the first ring (polarity reversal alerting).
    V23,
    /// DTMF caller ID before the first ring.
    Dtmf,
    /// No caller ID.
    None,
}

impl CidMode {
    /// The line-layer signalling and timing.
    pub fn signalling(self, format: Format) -> (Option<CidSignalling>, CidStart) {
        match self {
            CidMode::Bell202 => (
                Some(CidSignalling::Fsk {
                    standard: FskStandard::Bell202,
                    format,
                }),
                CidStart::AfterFirstRing,
            ),
            CidMode::V23 => (
                Some(CidSignalling::Fsk {
                    standard: FskStandard::V23,
                    format: Format::Mdmf,
                }),
                CidStart::BeforeFirstRing,
            ),
            CidMode::Dtmf => (Some(CidSignalling::Dtmf), CidStart::BeforeFirstRing),
            CidMode::None => (None, CidStart::AfterFirstRing),
        }
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            CidMode::Bell202 => "bell202",
            CidMode::V23 => "v23",
            CidMode::Dtmf => "dtmf",
            CidMode::None => "none",
        }
    }
}

/// DAHDI's channel numbers are below this (`DAHDI_MAX_CHANNELS`).
const MAX_DAHDI_CHANNEL: u16 = 1024;

/// One `[[analog.port]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortConfig {
    /// Card channel number (1-based, as DAHDI numbers them).
    pub port: u16,
    /// FXS or FXO.
    pub kind: Kind,
    /// FXS: the extension that rings it (informational; routing is the
    /// dialplan's `Dial(DAHDI/<port>)`). FXO: the extension inbound calls
    /// dial in `context` (default `s`).
    pub extension: String,
    /// Dialplan context for calls from this port.
    pub context: String,
    /// FXS: the caller ID number presented for calls from the phone.
    pub callerid_number: Option<String>,
    /// FXS: the caller ID name presented for calls from the phone.
    pub callerid_name: Option<String>,
    /// Caller ID standard.
    pub cid: CidMode,
    /// FSK message format (Bell 202 only; V.23 is always MDMF).
    pub cid_format: Format,
    /// Tone zone (dial, ringback, busy tones; ring cadence; busy detection).
    pub zone: String,
    /// FXS ring cadence, ms on/off (default: the zone's).
    pub cadence: Vec<u32>,
    /// FXO: answer on this ring.
    pub answer_on_ring: u32,
    /// FXS: interdigit timeout.
    pub interdigit: Duration,
    /// Sim card, FXS: the simulated phone answers after this many rings (0: never).
    pub sim_answer_after_rings: u32,
    /// Sim card, FXS: the simulated phone echoes what it hears.
    pub sim_echo: bool,
    /// DAHDI card: the DAHDI channel number, when it is not
    /// `channel_base + port` (see [`PortConfig::dahdi_channel`]).
    pub channel: Option<u16>,
}

impl PortConfig {
    /// DAHDI card: the DAHDI channel this port opens: the port's `channel`
    /// key, else `channel_base + port`.
    pub fn dahdi_channel(&self, channel_base: u16) -> u16 {
        self.channel
            .unwrap_or_else(|| channel_base.saturating_add(self.port))
    }

    /// The FXS line configuration.
    pub fn fxs(&self) -> FxsConfig {
        let (cid, cid_start) = self.cid.signalling(self.cid_format);
        FxsConfig {
            cadence: self.cadence.clone(),
            cid,
            cid_start,
            first_digit_timeout: Duration::from_secs(10),
            interdigit_timeout: self.interdigit,
        }
    }

    /// The FXO line configuration.
    pub fn fxo(&self) -> FxoConfig {
        let (cid, _) = self.cid.signalling(self.cid_format);
        FxoConfig {
            answer_on_ring: self.answer_on_ring.max(1),
            cid,
            busy_zone: Some(self.zone.clone()),
            ..FxoConfig::default()
        }
    }
}

/// The validated `[analog]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalogConfig {
    /// The card.
    pub card: Card,
    /// The ports, in channel order.
    pub ports: Vec<PortConfig>,
    /// Sim card: a loopback UDP address taking simulator commands (phones
    /// off hook, exchange rings in...), for tests and demos.
    pub sim_control: Option<SocketAddr>,
    /// DAHDI card: port `p` is DAHDI channel `channel_base + p` unless the
    /// port names its `channel` (default 0: port = DAHDI channel).
    pub channel_base: u16,
}

impl AnalogConfig {
    /// The simulated TDM400P of the embedded default: FXS ports 1-4 as
    /// extensions 201-204 (Bell 202 caller ID, phones answer after two rings
    /// and echo), FXO port 5 to a simulated line (inbound calls dial 200), all in
    /// context `default`.
    pub const EMBEDDED_DEFAULT: &'static str = "\
[analog]
card = \"sim\"
[[analog.port]]
port = 1
kind = \"fxs\"
extension = \"201\"
callerid_number = \"201\"
callerid_name = \"Analog 201\"
[[analog.port]]
port = 2
kind = \"fxs\"
extension = \"202\"
callerid_number = \"202\"
callerid_name = \"Analog 202\"
[[analog.port]]
port = 3
kind = \"fxs\"
extension = \"203\"
callerid_number = \"203\"
callerid_name = \"Analog 203\"
[[analog.port]]
port = 4
kind = \"fxs\"
extension = \"204\"
callerid_number = \"204\"
callerid_name = \"Analog 204\"
[[analog.port]]
port = 5
kind = \"fxo\"
extension = \"200\"
";

    /// Validates the deserialized section.
    pub fn from_raw(raw: &RawAnalog) -> Result<Self, AnalogConfigError> {
        let card = match raw.card.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
            None | Some(("sim", _)) => Card::Sim,
            Some(("dahdi", _)) => Card::Dahdi,
            Some((other, span)) => {
                return Err(AnalogConfigError::new(
                    span,
                    format!("analog.card: unknown card \"{other}\" (use \"sim\" or \"dahdi\")"),
                ))
            }
        };
        let default_zone = raw.zone.as_ref().map(|z| z.get_ref().clone());
        let sim_control = match &raw.sim_control {
            None => None,
            Some(s) => Some(s.get_ref().parse::<SocketAddr>().map_err(|e| {
                AnalogConfigError::new(
                    s.span(),
                    format!(
                        "analog.sim_control: \"{}\": {e} (use \"127.0.0.1:PORT\")",
                        s.get_ref()
                    ),
                )
            })?),
        };
        let channel_base = raw.channel_base.as_ref().map_or(0, |b| *b.get_ref());
        if let Some(b) = raw
            .channel_base
            .as_ref()
            .filter(|b| *b.get_ref() >= MAX_DAHDI_CHANNEL)
        {
            return Err(AnalogConfigError::new(
                b.span(),
                format!(
                    "analog.channel_base {}: use 0-{}",
                    b.get_ref(),
                    MAX_DAHDI_CHANNEL - 1
                ),
            ));
        }
        let mut ports: Vec<PortConfig> = Vec::new();
        for (i, p) in raw.port.iter().enumerate() {
            let span = p.span();
            let r = p.get_ref();
            let what = format!("analog.port[{i}]");
            let err =
                |s: Range<usize>, m: String| AnalogConfigError::new(s, format!("{what}: {m}"));
            let port = *r.port.get_ref();
            if port == 0 || port > 255 {
                return Err(err(r.port.span(), format!("port {port}: use 1-255")));
            }
            if ports.iter().any(|q| q.port == port) {
                return Err(err(
                    r.port.span(),
                    format!("port {port} is configured twice"),
                ));
            }
            let kind = match r.kind.get_ref().as_str() {
                "fxs" => Kind::Fxs,
                "fxo" => Kind::Fxo,
                k => {
                    return Err(err(
                        r.kind.span(),
                        format!(
                            "kind \"{k}\": use \"fxs\" (a telephone) or \"fxo\" (an exchange line)"
                        ),
                    ))
                }
            };
            let zone = r
                .zone
                .as_ref()
                .map(|z| z.get_ref().clone())
                .or_else(|| default_zone.clone())
                .unwrap_or_else(|| "us".into());
            let zone_span = r.zone.as_ref().map_or(span.clone(), |z| z.span());
            let zone_cfg = FxsConfig::for_zone(&zone).map_err(|e| err(zone_span, e.to_string()))?;
            let cid = match r.cid.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
                None if zone == "us" => CidMode::Bell202,
                None => CidMode::V23,
                Some(("bell202" | "bell", _)) => CidMode::Bell202,
                Some(("v23" | "etsi", _)) => CidMode::V23,
                Some(("dtmf", _)) => CidMode::Dtmf,
                Some(("none", _)) => CidMode::None,
                Some((c, s)) => {
                    return Err(err(
                        s,
                        format!("cid \"{c}\": use \"bell202\", \"v23\", \"dtmf\" or \"none\""),
                    ))
                }
            };
            let cid_format = match r
                .cid_format
                .as_ref()
                .map(|c| (c.get_ref().as_str(), c.span()))
            {
                None | Some(("mdmf", _)) => Format::Mdmf,
                Some(("sdmf", _)) => Format::Sdmf,
                Some((f, s)) => {
                    return Err(err(
                        s,
                        format!("cid_format \"{f}\": use \"mdmf\" or \"sdmf\""),
                    ))
                }
            };
            let cadence = match &r.cadence {
                None => zone_cfg.cadence.clone(),
                Some(c) => {
                    let v = c.get_ref().clone();
                    if v.is_empty() || v.len() > 16 || v.len() % 2 != 0 || v.contains(&0) {
                        return Err(err(
                            c.span(),
                            "cadence: give 2 to 16 ms values, on/off pairs, none zero".into(),
                        ));
                    }
                    v
                }
            };
            let answer_on_ring = r.answer_on_ring.as_ref().map_or(2, |a| *a.get_ref());
            if !(1..=10).contains(&answer_on_ring) {
                let s = r.answer_on_ring.as_ref().map_or(span.clone(), |a| a.span());
                return Err(err(s, format!("answer_on_ring {answer_on_ring}: use 1-10")));
            }
            let interdigit_ms = r.interdigit_ms.as_ref().map_or(4000, |a| *a.get_ref());
            if !(500..=30_000).contains(&interdigit_ms) {
                let s = r.interdigit_ms.as_ref().map_or(span.clone(), |a| a.span());
                return Err(err(
                    s,
                    format!("interdigit_ms {interdigit_ms}: use 500-30000"),
                ));
            }
            let number = r.callerid_number.as_ref().map(|n| n.get_ref().clone());
            if let (Some(n), Some(s)) = (&number, &r.callerid_number) {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err(
                        s.span(),
                        format!("callerid_number \"{n}\": digits only"),
                    ));
                }
            }
            let channel = r.channel.as_ref().map(|c| *c.get_ref());
            let dahdi = channel.unwrap_or_else(|| channel_base.saturating_add(port));
            if !(1..MAX_DAHDI_CHANNEL).contains(&dahdi) {
                let s = r.channel.as_ref().map_or(span.clone(), |c| c.span());
                return Err(err(
                    s,
                    format!(
                        "DAHDI channel {dahdi} (channel_base {channel_base} + port {port}, \
                         or the port's channel key): use 1-{}",
                        MAX_DAHDI_CHANNEL - 1
                    ),
                ));
            }
            ports.push(PortConfig {
                port,
                kind,
                extension: r.extension.as_ref().map_or_else(
                    || match kind {
                        Kind::Fxs => port.to_string(),
                        Kind::Fxo => "s".into(),
                    },
                    |e| e.get_ref().clone(),
                ),
                context: r
                    .context
                    .as_ref()
                    .map_or_else(|| "default".into(), |c| c.get_ref().clone()),
                callerid_number: number,
                callerid_name: r.callerid_name.as_ref().map(|n| n.get_ref().clone()),
                cid,
                cid_format,
                zone,
                cadence,
                answer_on_ring,
                interdigit: Duration::from_millis(interdigit_ms),
                sim_answer_after_rings: r.sim_answer_after_rings.unwrap_or(2),
                sim_echo: r.sim_echo.unwrap_or(true),
                channel,
            });
        }
        ports.sort_by_key(|p| p.port);
        if card == Card::Dahdi {
            for (i, a) in ports.iter().enumerate() {
                let ch = a.dahdi_channel(channel_base);
                if let Some(b) = ports[..i]
                    .iter()
                    .find(|b| b.dahdi_channel(channel_base) == ch)
                {
                    return Err(AnalogConfigError::new(
                        raw.channel_base.as_ref().map_or(0..0, |s| s.span()),
                        format!(
                            "analog: ports {} and {} are both DAHDI channel {ch} \
                             (check channel_base and the ports' channel keys)",
                            b.port, a.port
                        ),
                    ));
                }
            }
        }
        Ok(AnalogConfig {
            card,
            ports,
            sim_control,
            channel_base,
        })
    }

    /// Span of the `context` key of port index `i` (for "not in the dialplan").
    pub fn context_span(raw: &RawAnalog, port: u16) -> Range<usize> {
        raw.port
            .iter()
            .find(|p| *p.get_ref().port.get_ref() == port)
            .map_or(0..0, |p| {
                p.get_ref()
                    .context
                    .as_ref()
                    .map_or_else(|| p.span(), |c| c.span())
            })
    }
}

/// An `[analog]` error: the byte span of the offending value and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct AnalogConfigError {
    /// Byte range in the file text.
    pub span: Range<usize>,
    /// What is wrong and how to fix it.
    pub msg: String,
}

impl AnalogConfigError {
    fn new(span: Range<usize>, msg: String) -> Self {
        Self { span, msg }
    }
}

/// `[analog]` as written (serde, unknown keys refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalog {
    card: Option<Spanned<String>>,
    zone: Option<Spanned<String>>,
    sim_control: Option<Spanned<String>>,
    channel_base: Option<Spanned<u16>>,
    #[serde(default)]
    port: Vec<Spanned<RawPort>>,
}

/// `[[analog.port]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    port: Spanned<u16>,
    kind: Spanned<String>,
    extension: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
    callerid_number: Option<Spanned<String>>,
    callerid_name: Option<Spanned<String>>,
    cid: Option<Spanned<String>>,
    cid_format: Option<Spanned<String>>,
    zone: Option<Spanned<String>>,
    cadence: Option<Spanned<Vec<u32>>>,
    answer_on_ring: Option<Spanned<u32>>,
    interdigit_ms: Option<Spanned<u64>>,
    sim_answer_after_rings: Option<u32>,
    sim_echo: Option<bool>,
    channel: Option<Spanned<u16>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        analog: RawAnalog,
    }

    fn parse(text: &str) -> Result<AnalogConfig, (usize, String)> {
        let d: Doc = toml::from_str(text).map_err(|e| (0, e.message().to_string()))?;
        AnalogConfig::from_raw(&d.analog).map_err(|e| {
            let line = text[..e.span.start].matches('\n').count() + 1;
            (line, e.msg)
        })
    }

    #[test]
    fn embedded_default_has_four_phones_and_a_line() {
        let c = parse(AnalogConfig::EMBEDDED_DEFAULT).unwrap();
        assert_eq!(c.card, Card::Sim);
        assert_eq!(c.ports.len(), 5);
        assert_eq!(c.ports[0].extension, "201");
        assert_eq!(c.ports[0].cid, CidMode::Bell202);
        assert_eq!(c.ports[0].cadence, vec![2000, 4000]);
        assert_eq!(c.ports[4].kind, Kind::Fxo);
        assert_eq!(c.ports[4].extension, "200");
        assert_eq!(c.ports[4].fxo().answer_on_ring, 2);
    }

    #[test]
    fn tandemd_default_carries_this_card() {
        assert!(crate::config::EMBEDDED_DEFAULT.contains(AnalogConfig::EMBEDDED_DEFAULT));
        let c = crate::config::Config::embedded_default();
        assert_eq!(c.analog.map(|a| a.ports.len()), Some(5));
    }

    #[test]
    fn errors_name_the_line() {
        let t = "[analog]\n[[analog.port]]\nport = 1\nkind = \"fxz\"\n";
        let (line, msg) = parse(t).unwrap_err();
        assert_eq!(line, 4);
        assert!(msg.contains("analog.port[0]: kind \"fxz\""), "{msg}");
        let t = "[analog]\n[[analog.port]]\nport = 1\nkind = \"fxs\"\nzone = \"us\"\ncid = \"v23\"\ncadence = [1000]\n";
        let (line, msg) = parse(t).unwrap_err();
        assert_eq!(line, 7, "{msg}");
        let t = "[analog]\n[[analog.port]]\nport = 1\nkind = \"fxs\"\n[[analog.port]]\nport = 1\nkind = \"fxo\"\n";
        assert!(parse(t).unwrap_err().1.contains("twice"));
        let t = "[analog]\ncard = \"sim\"\nbogus = 1\n";
        assert!(parse(t).unwrap_err().1.contains("bogus"));
    }

    #[test]
    fn v23_port_sends_before_the_first_ring() {
        let t = "[analog]\nzone = \"de\"\n[[analog.port]]\nport = 2\nkind = \"fxs\"\n";
        let c = parse(t).unwrap();
        let f = c.ports[0].fxs();
        assert_eq!(c.ports[0].cid, CidMode::V23);
        assert_eq!(f.cid_start, CidStart::BeforeFirstRing);
        assert_eq!(f.cadence, vec![1000, 4000]);
    }

    #[test]
    fn dahdi_channels_from_base_or_port_key() {
        let t = "[analog]\ncard = \"dahdi\"\nchannel_base = 62\n[[analog.port]]\nport = 1\nkind = \"fxs\"\n\
                 [[analog.port]]\nport = 2\nkind = \"fxo\"\nchannel = 70\n";
        let c = parse(t).unwrap();
        assert_eq!(c.card, Card::Dahdi);
        assert_eq!(c.ports[0].dahdi_channel(c.channel_base), 63);
        assert_eq!(c.ports[1].dahdi_channel(c.channel_base), 70);
        // Two ports on one channel, a channel out of DAHDI's range.
        let t = "[analog]\ncard = \"dahdi\"\nchannel_base = 62\n[[analog.port]]\nport = 1\nkind = \"fxs\"\n\
                 [[analog.port]]\nport = 2\nkind = \"fxs\"\nchannel = 63\n";
        let e = parse(t).unwrap_err().1;
        assert!(e.contains("ports 1 and 2 are both DAHDI channel 63"), "{e}");
        let t = "[analog]\ncard = \"dahdi\"\nchannel_base = 1020\n[[analog.port]]\nport = 9\nkind = \"fxs\"\n";
        let e = parse(t).unwrap_err().1;
        assert!(e.contains("DAHDI channel 1029"), "{e}");
        // The sim card ignores the DAHDI numbering.
        let t = "[analog]\n[[analog.port]]\nport = 1\nkind = \"fxs\"\n";
        assert_eq!(parse(t).unwrap().channel_base, 0);
    }
}
