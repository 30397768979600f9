//! The `[pstn]` section of `tandem.toml`: spans (`[[pstn.span]]`) and the
//! built-in exchange simulator (`[pstn.exchange]`).
//!
//! Parsed from a `toml::Value` by hand so that every unknown key is an error
//! and every error names the key (`pstn.span[0].signalling`) and, when the
//! file text is known ([`PstnConfig::parse_str`] or
//! [`PstnConfigError::locate`]), its `file:line`. Channel plans use DAHDI
//! `system.conf` syntax (`span=`, `bchan=`, `dchan=`, `loadzone=`), given
//! inline (`channels = "bchan=1-15,17-31 dchan=16"`) or read from a
//! `system_conf` file. Every key is documented in `docs/pstn.md`.

use std::path::PathBuf;
use std::time::Duration;

use drivers::SpanId;
use toml::Value;

use super::exchange::{Behaviour, ExchangeConfig, NumberPattern, NumberRule};
use crate::isdn::Side;

/// A `[pstn]` configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {path}: {msg}")]
pub struct PstnConfigError {
    /// File name (`<toml>` until [`PstnConfigError::locate`] names it).
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// The key, e.g. `pstn.span[0].signalling`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub msg: String,
}

impl PstnConfigError {
    fn new(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Self {
            file: "<toml>".into(),
            line: 0,
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Fills in `file` and the line of the offending key in `text` (the
    /// whole `tandem.toml`).
    pub fn locate(mut self, file: &str, text: &str) -> Self {
        self.file = file.to_string();
        self.line = locate_line(text, &self.path);
        self
    }
}

/// Finds the line of a key path such as `pstn.span[1].group` in TOML text
/// written with `[[pstn.span]]` / `[pstn.exchange]` headers.
fn locate_line(text: &str, path: &str) -> usize {
    let rest = path.strip_prefix("pstn.").unwrap_or(path);
    let (header, nth, key) = if let Some(r) = rest.strip_prefix("span[") {
        let (n, k) = r.split_once(']').unwrap_or((r, ""));
        (
            "[[pstn.span]]",
            n.parse::<usize>().unwrap_or(0),
            k.trim_start_matches('.'),
        )
    } else if let Some(r) = rest.strip_prefix("exchange.number[") {
        let (n, k) = r.split_once(']').unwrap_or((r, ""));
        (
            "[[pstn.exchange.number]]",
            n.parse::<usize>().unwrap_or(0),
            k.trim_start_matches('.'),
        )
    } else if let Some(k) = rest.strip_prefix("exchange") {
        ("[pstn.exchange]", 0, k.trim_start_matches('.'))
    } else {
        ("[pstn]", 0, rest)
    };
    let key = key.split(['.', '[']).next().unwrap_or("");
    let mut seen = 0;
    let mut in_block = false;
    let mut header_line = 0;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            if in_block {
                break;
            }
            if t.replace(' ', "") == header {
                if seen == nth {
                    in_block = true;
                    header_line = i + 1;
                }
                seen += 1;
            }
            continue;
        }
        if in_block && !key.is_empty() {
            if let Some(r) = t.strip_prefix(key) {
                if r.trim_start().starts_with('=') {
                    return i + 1;
                }
            }
        }
    }
    header_line
}

/// Which card backend drives a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// The software card (`drivers::sim`), wired to the exchange simulator.
    Sim,
    /// A DAHDI card (`/dev/dahdi/channel`).
    Dahdi,
}

/// PRI signalling role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signalling {
    /// User side (CPE), the usual role towards an exchange.
    PriCpe,
    /// Network side (Tandem plays the exchange).
    PriNet,
}

impl Signalling {
    /// The Q.921/Q.931 side.
    pub fn side(self) -> Side {
        match self {
            Signalling::PriCpe => Side::User,
            Signalling::PriNet => Side::Network,
        }
    }
}

/// Q.931 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchType {
    /// ETSI EuroISDN (ETS 300 102).
    EuroIsdn,
}

/// How outgoing SETUPs name their B-channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelSelection {
    /// Preferred: the far end may assign another channel.
    Preferred,
    /// Exclusive: that channel or the call fails (cause 44).
    Exclusive,
}

/// Where a sim span's D-channel goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DChannelLink {
    /// The built-in exchange simulator over the simulated E1.
    Builtin,
    /// An external peer listening on a SOCK_SEQPACKET Unix socket (pri-peer).
    SeqPacket(PathBuf),
    /// An external peer on UDP (`HOST:PORT`).
    Udp(String),
}

/// One `[[pstn.span]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanConfig {
    /// Span number (DAHDI numbering, 1-based).
    pub span: SpanId,
    /// Card backend.
    pub driver: Driver,
    /// PRI role.
    pub signalling: Signalling,
    /// Q.931 variant.
    pub switchtype: SwitchType,
    /// Dial group (`Dial(DAHDI/g<group>/...)`).
    pub group: u16,
    /// Dialplan context for inbound calls.
    pub context: String,
    /// B-channel timeslots (1-31).
    pub bchannels: Vec<u8>,
    /// D-channel timeslot.
    pub dchannel: u8,
    /// Tone zone (`loadzone=`), e.g. `eu`, `de`, `uk`.
    pub loadzone: String,
    /// Audio block size in samples (multiple of 8; default 160 = 20 ms).
    pub blocksize: usize,
    /// Channel selection of outgoing SETUPs.
    pub channel_selection: ChannelSelection,
    /// Where the D-channel goes (sim only).
    pub dchannel_link: DChannelLink,
    /// Calling-number presentation of outgoing SETUPs: `None` follows the SIP
    /// caller's `Privacy` header; `Some` forces it.
    pub presentation: Option<crate::q931::Presentation>,
    /// Calling number sent in outgoing SETUPs instead of the SIP caller's
    /// (a trunk's main number).
    pub calling_number: Option<String>,
    /// DAHDI spans: the global DAHDI channel number of timeslot 0, so that
    /// timeslot `t` is channel `channel_base + t` (default `31 * (span - 1)`,
    /// DAHDI's numbering of E1 spans registered in order).
    pub channel_base: u32,
    /// Overlap receiving: how long after the last digit (SETUP or
    /// INFORMATION without Sending complete) the number counts as complete
    /// (Q.931 T302; default 10 s).
    pub overlap_timeout: Duration,
}

impl SpanConfig {
    /// An E1 PRI span with defaults: sim, CPE, EuroISDN, B 1-15/17-31, D 16.
    pub fn e1(span: u16, group: u16, context: &str) -> Self {
        Self {
            span: SpanId(span),
            driver: Driver::Sim,
            signalling: Signalling::PriCpe,
            switchtype: SwitchType::EuroIsdn,
            group,
            context: context.to_string(),
            bchannels: E1_BCHANNELS.to_vec(),
            dchannel: 16,
            loadzone: "eu".into(),
            blocksize: drivers::span::DEFAULT_BLOCK,
            channel_selection: ChannelSelection::Preferred,
            dchannel_link: DChannelLink::Builtin,
            presentation: None,
            calling_number: None,
            channel_base: 31 * (u32::from(span).max(1) - 1),
            overlap_timeout: Duration::from_secs(10),
        }
    }

    /// The DAHDI channel number of timeslot `ts` of this span.
    pub fn dahdi_channel(&self, ts: u8) -> i32 {
        i32::try_from(self.channel_base + u32::from(ts)).unwrap_or(i32::MAX)
    }
}

/// The E1 default B-channels.
pub const E1_BCHANNELS: [u8; 30] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
    28, 29, 30, 31,
];

/// The whole `[pstn]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PstnConfig {
    /// Spans in file order.
    pub spans: Vec<SpanConfig>,
    /// The exchange simulator behind sim spans with the built-in D-channel.
    pub exchange: ExchangeConfig,
}

impl PstnConfig {
    /// The embedded default: one simulated E1 PRI span (CPE) in group 1,
    /// inbound calls to context `from-pstn`, the demo exchange behind it.
    pub fn embedded_default() -> Self {
        Self {
            spans: vec![SpanConfig::e1(1, 1, "from-pstn")],
            exchange: ExchangeConfig::default(),
        }
    }

    /// Parses and checks a whole `tandem.toml` text; errors carry `file:line`.
    pub fn parse_str(text: &str, file: &str) -> Result<Self, PstnConfigError> {
        let v: Value = text.parse::<toml::Table>().map(Value::Table).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            PstnConfigError {
                file: file.into(),
                line,
                path: "toml".into(),
                msg: e.message().trim().to_string(),
            }
        })?;
        Self::from_toml(&v).map_err(|e| e.locate(file, text))
    }

    /// Parses the `[pstn]` section from a TOML value: either the whole
    /// document (a table with a `pstn` key) or the `pstn` table itself. No
    /// `pstn` key means no spans. Lines are 0 in errors; use
    /// [`PstnConfigError::locate`] with the file text to fill them in.
    pub fn from_toml(v: &Value) -> Result<Self, PstnConfigError> {
        let Some(root) = v.as_table() else {
            return Err(PstnConfigError::new("pstn", "expected a table"));
        };
        let pstn = match root.get("pstn") {
            Some(p) => p,
            None if root.contains_key("span") || root.contains_key("exchange") => v,
            None => return Ok(Self::default()),
        };
        let Some(t) = pstn.as_table() else {
            return Err(PstnConfigError::new("pstn", "expected a table [pstn]"));
        };
        for k in t.keys() {
            if k != "span" && k != "exchange" {
                return Err(PstnConfigError::new(
                    format!("pstn.{k}"),
                    "unknown key (expected [[pstn.span]] or [pstn.exchange])",
                ));
            }
        }
        let mut cfg = PstnConfig::default();
        if let Some(spans) = t.get("span") {
            let Some(arr) = spans.as_array() else {
                return Err(PstnConfigError::new(
                    "pstn.span",
                    "expected an array of tables: write [[pstn.span]]",
                ));
            };
            for (i, s) in arr.iter().enumerate() {
                let sc = parse_span(s, &format!("pstn.span[{i}]"))?;
                if cfg.spans.iter().any(|o| o.span == sc.span) {
                    return Err(PstnConfigError::new(
                        format!("pstn.span[{i}].span"),
                        format!("span {} is configured twice", sc.span.0),
                    ));
                }
                cfg.spans.push(sc);
            }
        }
        if let Some(x) = t.get("exchange") {
            cfg.exchange = parse_exchange(x)?;
        }
        Ok(cfg)
    }

    /// The spans of dial group `group`.
    pub fn group(&self, group: u16) -> impl Iterator<Item = &SpanConfig> {
        self.spans.iter().filter(move |s| s.group == group)
    }
}

struct Fields<'a> {
    path: &'a str,
    t: &'a toml::Table,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, path: &'a str, known: &[&str]) -> Result<Self, PstnConfigError> {
        let Some(t) = v.as_table() else {
            return Err(PstnConfigError::new(path, "expected a table"));
        };
        for k in t.keys() {
            if !known.contains(&k.as_str()) {
                return Err(PstnConfigError::new(
                    format!("{path}.{k}"),
                    format!("unknown key (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(Self { path, t })
    }

    fn err(&self, key: &str, msg: impl Into<String>) -> PstnConfigError {
        PstnConfigError::new(format!("{}.{key}", self.path), msg)
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, PstnConfigError> {
        match self.t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(self.err(key, "expected a string")),
        }
    }

    fn int(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, PstnConfigError> {
        match self.t.get(key) {
            None => Ok(None),
            Some(Value::Integer(n)) if range.contains(n) => Ok(Some(*n)),
            Some(Value::Integer(n)) => Err(self.err(
                key,
                format!("{n} is out of range {}..={}", range.start(), range.end()),
            )),
            Some(_) => Err(self.err(key, "expected an integer")),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, PstnConfigError> {
        match self.t.get(key) {
            None => Ok(None),
            Some(Value::Integer(n)) => Ok(Some(*n as f64)),
            Some(Value::Float(f)) if f.is_finite() => Ok(Some(*f)),
            Some(_) => Err(self.err(key, "expected a number")),
        }
    }
}

fn parse_span(v: &Value, path: &str) -> Result<SpanConfig, PstnConfigError> {
    const KNOWN: &[&str] = &[
        "driver",
        "type",
        "span",
        "signalling",
        "side",
        "switchtype",
        "group",
        "context",
        "channels",
        "system_conf",
        "dchannel",
        "loadzone",
        "blocksize",
        "channel_selection",
        "presentation",
        "calling_number",
        "channel_base",
        "overlap_timeout_ms",
    ];
    let f = Fields::new(v, path, KNOWN)?;
    let span = f
        .int("span", 1..=255)?
        .ok_or_else(|| f.err("span", "missing: the span number, e.g. span = 1"))?;
    let mut sc = SpanConfig::e1(span as u16, 1, "from-pstn");
    if f.t.contains_key("driver") && f.t.contains_key("type") {
        return Err(f.err("type", "give either driver or type, not both"));
    }
    let dkey = if f.t.contains_key("type") {
        "type"
    } else {
        "driver"
    };
    sc.driver = match f.str(dkey)? {
        None | Some("sim") => Driver::Sim,
        Some("dahdi") => Driver::Dahdi,
        Some(o) => return Err(f.err(dkey, format!("unknown driver {o:?} (sim or dahdi)"))),
    };
    if f.t.contains_key("signalling") && f.t.contains_key("side") {
        return Err(f.err("side", "give either signalling or side, not both"));
    }
    sc.signalling = match (f.str("signalling")?, f.str("side")?) {
        (Some("pri_cpe"), _) | (None, Some("user")) | (None, None) => Signalling::PriCpe,
        (Some("pri_net"), _) | (None, Some("network")) => Signalling::PriNet,
        (Some(o), _) => {
            return Err(f.err(
                "signalling",
                format!("unknown signalling {o:?} (pri_cpe or pri_net)"),
            ))
        }
        (None, Some(o)) => {
            return Err(f.err("side", format!("unknown side {o:?} (user or network)")))
        }
    };
    sc.switchtype = match f.str("switchtype")? {
        None | Some("euroisdn") => SwitchType::EuroIsdn,
        Some(o) => {
            return Err(f.err(
                "switchtype",
                format!("unsupported switchtype {o:?} (euroisdn)"),
            ))
        }
    };
    if let Some(g) = f.int("group", 0..=63)? {
        sc.group = g as u16;
    }
    if let Some(c) = f.str("context")? {
        if c.is_empty() {
            return Err(f.err("context", "must not be empty"));
        }
        sc.context = c.to_string();
    }
    if f.t.contains_key("channels") && f.t.contains_key("system_conf") {
        return Err(f.err(
            "system_conf",
            "give either channels or system_conf, not both",
        ));
    }
    let plan = if let Some(c) = f.str("channels")? {
        Some(parse_system_conf(c, sc.span.0).map_err(|m| f.err("channels", m))?)
    } else if let Some(p) = f.str("system_conf")? {
        let text = std::fs::read_to_string(p)
            .map_err(|e| f.err("system_conf", format!("cannot read {p}: {e}")))?;
        Some(
            parse_system_conf(&text, sc.span.0)
                .map_err(|m| f.err("system_conf", format!("{p}: {m}")))?,
        )
    } else {
        None
    };
    if let Some(plan) = plan {
        sc.bchannels = plan.bchannels;
        sc.dchannel = plan.dchannel;
        if let Some(z) = plan.loadzone {
            sc.loadzone = z;
        }
        if let Some(b) = plan.channel_base {
            sc.channel_base = b;
        }
    }
    if let Some(z) = f.str("loadzone")? {
        if dataplane::dsp::tones::zone_tone(z, dataplane::dsp::tones::ToneKind::Busy).is_none() {
            return Err(f.err(
                "loadzone",
                format!(
                    "unknown tone zone {z:?} (one of {})",
                    dataplane::dsp::tones::ZONES.join(", ")
                ),
            ));
        }
        sc.loadzone = z.to_string();
    }
    if let Some(b) = f.int("blocksize", 8..=8192)? {
        if b % 8 != 0 {
            return Err(f.err("blocksize", format!("{b} is not a multiple of 8")));
        }
        sc.blocksize = b as usize;
    }
    sc.channel_selection = match f.str("channel_selection")? {
        None | Some("preferred") => ChannelSelection::Preferred,
        Some("exclusive") => ChannelSelection::Exclusive,
        Some(o) => {
            return Err(f.err(
                "channel_selection",
                format!("unknown {o:?} (preferred or exclusive)"),
            ))
        }
    };
    sc.presentation = match f.str("presentation")? {
        None | Some("sip") => None,
        Some("allowed") => Some(crate::q931::Presentation::Allowed),
        Some("restricted") => Some(crate::q931::Presentation::Restricted),
        Some(o) => {
            return Err(f.err(
                "presentation",
                format!("unknown {o:?} (sip, allowed or restricted)"),
            ))
        }
    };
    if let Some(n) = f.str("calling_number")? {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(f.err("calling_number", format!("{n:?}: expected digits")));
        }
        sc.calling_number = Some(n.to_string());
    }
    if let Some(ms) = f.int("overlap_timeout_ms", 500..=60_000)? {
        sc.overlap_timeout = Duration::from_millis(ms as u64);
    }
    if let Some(b) = f.int("channel_base", 0..=65_000)? {
        if sc.driver != Driver::Dahdi {
            return Err(f.err(
                "channel_base",
                "only dahdi spans have DAHDI channel numbers",
            ));
        }
        sc.channel_base = b as u32;
    }
    if let Some(d) = f.str("dchannel")? {
        if sc.driver != Driver::Sim {
            return Err(f.err("dchannel", "only sim spans take an external D-channel"));
        }
        sc.dchannel_link = if let Some(p) = d.strip_prefix("seqpacket:") {
            DChannelLink::SeqPacket(PathBuf::from(p))
        } else if let Some(a) = d.strip_prefix("udp:") {
            DChannelLink::Udp(a.to_string())
        } else {
            return Err(f.err(
                "dchannel",
                format!("{d:?}: expected seqpacket:/path or udp:HOST:PORT"),
            ));
        };
    }
    Ok(sc)
}

/// A span's channel plan from `system.conf` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    /// B-channel timeslots.
    pub bchannels: Vec<u8>,
    /// D-channel timeslot.
    pub dchannel: u8,
    /// `loadzone=`, if given.
    pub loadzone: Option<String>,
    /// With `span=` lines: the global channel number of the span's timeslot 0.
    pub channel_base: Option<u32>,
}

/// Parses DAHDI `system.conf` syntax for span `span`: `key=value` words
/// separated by blanks or newlines, `#` comments. Channel numbers are global
/// in DAHDI (span n holds channels 31(n-1)+1 ..= 31n on E1), so with `span=`
/// lines present the numbers are taken relative to this span; without
/// them (the inline `channels` form) they are timeslots 1-31 of this span.
/// Keys: `span`, `bchan`, `dchan`, `hardhdlc` (as `dchan`), `loadzone`,
/// `defaultzone`; `echocanceller` is accepted and ignored.
pub fn parse_system_conf(text: &str, span: u16) -> Result<ChannelPlan, String> {
    let mut words = Vec::new();
    for line in text.lines() {
        let l = line.split(['#', ';']).next().unwrap_or("");
        // `bchan = 1-15, 17-31` is valid system.conf too: glue around '=' and ','.
        let l = l.replace(" =", "=").replace("= ", "=").replace(", ", ",");
        words.extend(l.split_whitespace().map(str::to_string));
    }
    let has_spans = words.iter().any(|w| w.starts_with("span="));
    let mut span_order = Vec::new();
    let mut b = Vec::new();
    let mut d = Vec::new();
    let mut zone = None;
    let mut default_zone = None;
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("{w:?} is not key=value"));
        };
        match k {
            "span" => {
                let n = v
                    .split(',')
                    .next()
                    .and_then(|n| n.trim().parse::<u16>().ok())
                    .ok_or_else(|| format!("span={v}: expected span=<number>,..."))?;
                span_order.push(n);
            }
            "bchan" => b.extend(parse_ranges(v)?),
            "dchan" | "hardhdlc" => d.extend(parse_ranges(v)?),
            "loadzone" => zone = Some(v.to_string()),
            "defaultzone" => default_zone = Some(v.to_string()),
            "echocanceller" => {}
            _ => return Err(format!("unknown system.conf key {k:?}")),
        }
    }
    let base = if has_spans {
        let idx = span_order
            .iter()
            .position(|&s| s == span)
            .ok_or_else(|| format!("no span={span} line"))?;
        (idx as u32) * 31
    } else {
        0
    };
    let local = |v: &[u32]| -> Vec<u8> {
        v.iter()
            .filter(|&&c| c > base && c <= base + 31)
            .map(|&c| (c - base) as u8)
            .collect()
    };
    let bchannels = local(&b);
    let dch = local(&d);
    if bchannels.is_empty() {
        return Err(format!("no bchan= channels for span {span}"));
    }
    let [dchannel] = dch[..] else {
        return Err(format!(
            "span {span} needs exactly one dchan= channel, found {}",
            dch.len()
        ));
    };
    if bchannels.contains(&dchannel) {
        return Err(format!("channel {dchannel} is both bchan and dchan"));
    }
    Ok(ChannelPlan {
        bchannels,
        dchannel,
        loadzone: zone.or(default_zone),
        channel_base: has_spans.then_some(base),
    })
}

fn parse_ranges(v: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad channel {part:?}"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad channel {part:?}"))?;
        if a == 0 || b < a || b > 31 * 64 {
            return Err(format!("bad channel range {part:?}"));
        }
        out.extend(a..=b);
    }
    Ok(out)
}

fn parse_exchange(v: &Value) -> Result<ExchangeConfig, PstnConfigError> {
    const KNOWN: &[&str] = &[
        "echo_delay_ms",
        "echo_erl_db",
        "zone",
        "tone_ms",
        "no_answer_ms",
        "bit_errors_per_64k",
        "number",
    ];
    let f = Fields::new(v, "pstn.exchange", KNOWN)?;
    let mut x = ExchangeConfig::default();
    if let Some(d) = f.int("echo_delay_ms", 0..=500)? {
        x.echo_delay = Duration::from_millis(d as u64);
    }
    if let Some(e) = f.float("echo_erl_db")? {
        if !(0.0..=90.0).contains(&e) {
            return Err(f.err("echo_erl_db", format!("{e} is out of range 0..=90")));
        }
        x.echo_erl_db = e as f32;
    }
    if let Some(z) = f.str("zone")? {
        if dataplane::dsp::tones::zone_tone(z, dataplane::dsp::tones::ToneKind::Busy).is_none() {
            return Err(f.err("zone", format!("unknown tone zone {z:?}")));
        }
        x.zone = z.to_string();
    }
    if let Some(t) = f.int("tone_ms", 0..=600_000)? {
        x.tone_time = Duration::from_millis(t as u64);
    }
    if let Some(t) = f.int("no_answer_ms", 0..=3_600_000)? {
        x.no_answer = Duration::from_millis(t as u64);
    }
    if let Some(b) = f.int("bit_errors_per_64k", 0..=65_536)? {
        x.bit_errors_per_64k = b as u32;
    }
    if let Some(n) = f.t.get("number") {
        let Some(arr) = n.as_array() else {
            return Err(f.err("number", "expected [[pstn.exchange.number]] tables"));
        };
        x.rules.clear();
        for (i, r) in arr.iter().enumerate() {
            let path = format!("pstn.exchange.number[{i}]");
            let g = Fields::new(r, &path, &["match", "action", "after_ms"])?;
            let m = g.str("match")?.ok_or_else(|| {
                g.err(
                    "match",
                    "missing: \"5550100\", \"*8\" (suffix), \"555*\" (prefix) or \"*\"",
                )
            })?;
            let pattern = NumberPattern::parse(m).map_err(|e| g.err("match", e))?;
            let after = Duration::from_millis(g.int("after_ms", 0..=600_000)?.unwrap_or(0) as u64);
            let action = g.str("action")?.ok_or_else(|| {
                g.err(
                    "action",
                    "missing: answer, busy, no_answer, congestion, ring_answer or unallocated",
                )
            })?;
            let behaviour = match action {
                "answer" => Behaviour::Answer,
                "busy" => Behaviour::Busy,
                "no_answer" => Behaviour::NoAnswer,
                "congestion" => Behaviour::Congestion,
                "unallocated" => Behaviour::Unallocated,
                "loopback" => Behaviour::Loopback,
                "ring_answer" => Behaviour::RingThenAnswer(after),
                o => return Err(g.err("action", format!("unknown action {o:?}"))),
            };
            x.rules.push(NumberRule { pattern, behaviour });
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
[sip]
realm = "x"

[[pstn.span]]
driver = "sim"
span = 1
signalling = "pri_cpe"
switchtype = "euroisdn"
group = 1
context = "from-pstn"
channels = "bchan=1-15,17-31 dchan=16 loadzone=de"

[[pstn.span]]
span = 2
signalling = "pri_net"
group = 2
channels = "bchan=1-10 dchan=16"
blocksize = 80
channel_selection = "exclusive"
dchannel = "seqpacket:/run/tandem/span2.sock"

[pstn.exchange]
echo_delay_ms = 24
echo_erl_db = 15

[[pstn.exchange.number]]
match = "*8"
action = "busy"

[[pstn.exchange.number]]
match = "555*"
action = "ring_answer"
after_ms = 3000
"#;

    #[test]
    fn full_section() {
        let c = PstnConfig::parse_str(DOC, "t.toml").unwrap();
        assert_eq!(c.spans.len(), 2);
        let a = &c.spans[0];
        assert_eq!(a.span, SpanId(1));
        assert_eq!(a.bchannels.len(), 30);
        assert_eq!(a.dchannel, 16);
        assert_eq!(a.loadzone, "de");
        assert_eq!(a.signalling.side(), Side::User);
        let b = &c.spans[1];
        assert_eq!(b.signalling, Signalling::PriNet);
        assert_eq!(b.bchannels, (1..=10).collect::<Vec<u8>>());
        assert_eq!(b.blocksize, 80);
        assert_eq!(b.channel_selection, ChannelSelection::Exclusive);
        assert_eq!(
            b.dchannel_link,
            DChannelLink::SeqPacket("/run/tandem/span2.sock".into())
        );
        assert_eq!(c.exchange.echo_delay, Duration::from_millis(24));
        assert_eq!(c.exchange.echo_erl_db, 15.0);
        assert_eq!(c.exchange.rules.len(), 2);
        assert_eq!(
            c.exchange.rules[1].behaviour,
            Behaviour::RingThenAnswer(Duration::from_secs(3))
        );
        assert_eq!(c.group(2).count(), 1);
    }

    #[test]
    fn overlap_timeout() {
        let c = PstnConfig::parse_str("[[pstn.span]]\nspan = 1\n", "t.toml").unwrap();
        assert_eq!(c.spans[0].overlap_timeout, Duration::from_secs(10));
        let c = PstnConfig::parse_str(
            "[[pstn.span]]\nspan = 1\noverlap_timeout_ms = 4000\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.spans[0].overlap_timeout, Duration::from_secs(4));
        let e = PstnConfig::parse_str(
            "[[pstn.span]]\nspan = 1\noverlap_timeout_ms = 100\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.path.as_str()),
            (3, "pstn.span[0].overlap_timeout_ms"),
            "{e}"
        );
    }

    #[test]
    fn no_section_is_empty_and_defaults_are_e1() {
        let c = PstnConfig::parse_str("[sip]\nrealm = \"x\"\n", "t.toml").unwrap();
        assert!(c.spans.is_empty());
        let c = PstnConfig::parse_str("[[pstn.span]]\nspan = 3\n", "t.toml").unwrap();
        assert_eq!(c.spans[0].bchannels, E1_BCHANNELS.to_vec());
        assert_eq!(c.spans[0].driver, Driver::Sim);
        assert_eq!(c.spans[0].blocksize, 160);
        // The pstn table itself is accepted too.
        let v: Value = "[[span]]\nspan = 4\n"
            .parse::<toml::Table>()
            .map(Value::Table)
            .unwrap();
        assert_eq!(PstnConfig::from_toml(&v).unwrap().spans[0].span, SpanId(4));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let bad = DOC.replace("signalling = \"pri_net\"", "signalling = \"pri_nett\"");
        let e = PstnConfig::parse_str(&bad, "t.toml").unwrap_err();
        assert_eq!(e.line, 16, "{e}");
        assert_eq!(e.path, "pstn.span[1].signalling");
        assert!(
            e.to_string()
                .starts_with("t.toml:16: pstn.span[1].signalling:"),
            "{e}"
        );

        let bad = DOC.replace("blocksize = 80", "blocksize = 84");
        let e = PstnConfig::parse_str(&bad, "t.toml").unwrap_err();
        assert_eq!(
            (e.line, e.path.as_str()),
            (19, "pstn.span[1].blocksize"),
            "{e}"
        );

        let bad = DOC.replace("group = 1\n", "group = 1\ncolour = 2\n");
        let e = PstnConfig::parse_str(&bad, "t.toml").unwrap_err();
        assert_eq!(
            (e.line, e.path.as_str()),
            (11, "pstn.span[0].colour"),
            "{e}"
        );

        let bad = DOC.replace("action = \"busy\"", "action = \"bussy\"");
        let e = PstnConfig::parse_str(&bad, "t.toml").unwrap_err();
        assert_eq!(e.path, "pstn.exchange.number[0].action", "{e}");
        assert_eq!(e.line, 29, "{e}");

        let e = PstnConfig::parse_str("[[pstn.span]]\ngroup = 1\n", "t.toml").unwrap_err();
        assert_eq!(e.path, "pstn.span[0].span");
        assert_eq!(e.line, 1);

        let e = PstnConfig::parse_str(
            "[[pstn.span]]\nspan = 1\n[[pstn.span]]\nspan = 1\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!((e.line, e.path.as_str()), (4, "pstn.span[1].span"), "{e}");

        let e = PstnConfig::parse_str(
            "[[pstn.span]]\nspan = 1\ndriver = \"dahdi\"\ndchannel = \"udp:1.2.3.4:5\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");

        // DAHDI channel numbers: E1 numbering by default, channel_base for dahdi only.
        let c = PstnConfig::parse_str(
            "[[pstn.span]]\nspan = 2\ndriver = \"dahdi\"\n\
             [[pstn.span]]\nspan = 3\ndriver = \"dahdi\"\nchannel_base = 100\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.spans[0].dahdi_channel(16), 47);
        assert_eq!(c.spans[1].dahdi_channel(1), 101);
        let e = PstnConfig::parse_str("[[pstn.span]]\nspan = 1\nchannel_base = 5\n", "t.toml")
            .unwrap_err();
        assert_eq!(
            (e.line, e.path.as_str()),
            (3, "pstn.span[0].channel_base"),
            "{e}"
        );
    }

    #[test]
    fn system_conf_syntax() {
        let conf = "# two spans\nspan=1,1,0,ccs,hdb3,crc4\nspan=2,0,0,ccs,hdb3,crc4\n\
                    bchan=1-15,17-31\ndchan=16\nbchan = 32-46, 48-62\nhardhdlc=47\n\
                    echocanceller=mg2,1-15\nloadzone=uk\ndefaultzone=uk\n";
        let p1 = parse_system_conf(conf, 1).unwrap();
        assert_eq!(p1.bchannels.len(), 30);
        assert_eq!(p1.dchannel, 16);
        assert_eq!(p1.loadzone.as_deref(), Some("uk"));
        let p2 = parse_system_conf(conf, 2).unwrap();
        assert_eq!(p2.bchannels, parse_system_conf(conf, 1).unwrap().bchannels);
        assert_eq!(p2.dchannel, 16);
        assert_eq!((p1.channel_base, p2.channel_base), (Some(0), Some(31)));
        assert_eq!(
            parse_system_conf("bchan=1-15 dchan=16", 1)
                .unwrap()
                .channel_base,
            None
        );
        assert!(parse_system_conf(conf, 3).unwrap_err().contains("span=3"));
        assert!(parse_system_conf("bchan=1-16 dchan=16", 1)
            .unwrap_err()
            .contains("both"));
        assert!(parse_system_conf("bchan=1-15", 1)
            .unwrap_err()
            .contains("dchan"));
        assert!(parse_system_conf("bchan=5-1 dchan=16", 1).is_err());
        assert!(parse_system_conf("fxsks=1", 1)
            .unwrap_err()
            .contains("unknown"));
    }
}
